/*
 * file_mappings: three files in CRYO_SCENARIO_TMP, 16 pages each, filled with a pattern:
 *  - priv: MAP_PRIVATE read-write, every other page modified (COW copies); the file itself must
 *    stay unmodified and the untouched pages must still show the file;
 *  - shared: MAP_SHARED read-write, every third page modified; the file must show the changes;
 *  - gone: MAP_SHARED read-write, then unlinked and modified through the mapping; after restore
 *    the mapping must still hold the data, still be of a deleted file, and the path must not
 *    come back.
 * Mapping addresses must not move (checked against /proc/self/maps).
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGES 16
#define PG 4096
#define LEN (PAGES * PG)

static unsigned char file_byte(int file, size_t off)
{
	return (unsigned char)(file * 31 + off * 13 + (off >> 12));
}

static unsigned char new_byte(int file, size_t off)
{
	return (unsigned char)~file_byte(file, off) ^ 0x5a;
}

static void make_file(const char *path, int file)
{
	int fd = SYS(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	unsigned char buf[LEN];
	for (size_t i = 0; i < LEN; i++)
		buf[i] = file_byte(file, i);
	CHECK(write(fd, buf, LEN) == LEN, "write %s", path);
	close(fd);
}

static unsigned char *map_file(const char *path, int flags)
{
	int fd = SYS(open(path, O_RDWR | O_CLOEXEC));
	void *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, flags, fd, 0);
	CHECK(p != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
	close(fd);
	return p;
}

static int modified(int file, int page)
{
	return file == 0 ? page % 2 == 0 : file == 1 ? page % 3 == 0 : 1;
}

static void check_map(const unsigned char *p, int file, const char *what)
{
	for (size_t i = 0; i < LEN; i++) {
		unsigned char want = modified(file, i / PG) ? new_byte(file, i) : file_byte(file, i);
		CHECK(p[i] == want, "%s: byte %zu is %02x, expected %02x", what, i, p[i], want);
	}
}

/* The /proc/self/maps line of the mapping starting at p, or fail. */
static const char *maps_line(void *p, char *maps, size_t size)
{
	char key[32];
	snprintf(key, sizeof(key), "%lx-", (unsigned long)p);
	CHECK(read_small_file("/proc/self/maps", maps, size) > 0, "read /proc/self/maps");
	for (char *l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, strlen(key)) == 0) {
			char *end = strchr(l, '\n');
			if (end)
				*end = 0;
			return l;
		}
	}
	fail("no mapping starts at %p any more", p);
}

int main(void)
{
	install_term_handler();
	char path[3][4096];
	const char *names[3] = { "priv", "shared", "gone" };
	unsigned char *map[3];
	for (int f = 0; f < 3; f++) {
		snprintf(path[f], sizeof(path[f]), "%s/%s.dat", scenario_tmp(), names[f]);
		make_file(path[f], f);
		map[f] = map_file(path[f], f == 0 ? MAP_PRIVATE : MAP_SHARED);
	}
	SYS(unlink(path[2]));
	for (int f = 0; f < 3; f++)
		for (size_t i = 0; i < LEN; i++)
			if (modified(f, i / PG))
				map[f][i] = new_byte(f, i);
	CHECK(msync(map[1], LEN, MS_SYNC) == 0, "msync: %s", strerror(errno));

	ready();
	wait_term();

	static char maps[1 << 20];
	for (int f = 0; f < 3; f++) {
		check_map(map[f], f, names[f]);
		const char *l = maps_line(map[f], maps, sizeof(maps));
		CHECK(strstr(l, path[f]), "mapping of %s is now: %s", names[f], l);
		CHECK(strstr(l, f == 0 ? " rw-p " : " rw-s "), "protection/flags of %s: %s", names[f], l);
		CHECK((f == 2) == (strstr(l, "(deleted)") != NULL), "deleted state of %s: %s", names[f],
		      l);
	}

	/* The files: priv unmodified, shared modified, gone still gone. */
	unsigned char buf[LEN];
	for (int f = 0; f < 2; f++) {
		int fd = SYS(open(path[f], O_RDONLY | O_CLOEXEC));
		CHECK(pread(fd, buf, LEN, 0) == LEN, "pread %s", path[f]);
		close(fd);
		for (size_t i = 0; i < LEN; i++) {
			unsigned char want =
				f == 1 && modified(f, i / PG) ? new_byte(f, i) : file_byte(f, i);
			CHECK(buf[i] == want, "file %s: byte %zu is %02x, expected %02x", names[f], i,
			      buf[i], want);
		}
	}
	struct stat st;
	CHECK(stat(path[2], &st) == -1 && errno == ENOENT, "unlinked file %s exists again",
	      path[2]);
	return pass();
}
