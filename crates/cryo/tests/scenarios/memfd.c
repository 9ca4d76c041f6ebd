/*
 * memfd: memfds and shared anonymous memory that a parent and its forked child share.
 *  - memfd "cryo-data": 5 pages + 123 bytes, data in pages 0-1 and 4-5, a hole in pages 2-3,
 *    file position 777, seals F_SEAL_SHRINK|F_SEAL_GROW added after sizing; mapped MAP_SHARED
 *    (whole) in the parent and the child, and MAP_PRIVATE (2 pages) in the parent with a private
 *    copy of page 0;
 *  - memfd "cryo-fd-only": only an fd, O_APPEND, made without MFD_ALLOW_SEALING, position at
 *    its end;
 *  - memfd "cryo-map-only": one page mapped MAP_SHARED, its fd closed;
 *  - memfd "cryo-future": one page mapped MAP_SHARED writable, then sealed with
 *    F_SEAL_FUTURE_WRITE|F_SEAL_SEAL (the mapping stays writable, no new one may be);
 *  - a MAP_SHARED|MAP_ANONYMOUS region of 3 pages.
 * After SIGTERM both processes check contents, names (readlink /proc/self/fd/N), seals (and
 * that they hold), positions, flags and the hole; then the child writes a pattern into the
 * memfd mappings and the anonymous region and the parent must see it, and the other way round
 * (synchronised with pipes). The parent collects the child's verdict (its exit status).
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PG 4096UL
#define A_SIZE (5 * PG + 123)
#define A_MAP (6 * PG)
#define A_POS 777
#define ANON_LEN (3 * PG)
#define B_DATA "hello from the fd-only memfd"

#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static int fd_a, fd_b, fd_d;
static unsigned char *map_a, *priv_a, *map_c, *map_d, *anon;
static int p2c[2], c2p[2];

static unsigned char pat(int salt, size_t i)
{
	return (unsigned char)(salt * 31 + i * 7 + (i >> 12) * 13 + 1);
}

static int a_has_data(size_t i)
{
	return i < 2 * PG || (i >= 4 * PG && i < A_SIZE);
}

/* Checks common to both processes; `who` names the process in failures. */
static void check_state(const char *who)
{
	char path[64], link[256];
	ssize_t n;

	/* Names. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_a);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "%s: readlink fd a: %s", who, strerror(errno));
	link[n] = 0;
	CHECK(strcmp(link, "/memfd:cryo-data (deleted)") == 0, "%s: fd a is %s", who, link);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_b);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "%s: readlink fd b: %s", who, strerror(errno));
	link[n] = 0;
	CHECK(strcmp(link, "/memfd:cryo-fd-only (deleted)") == 0, "%s: fd b is %s", who, link);

	/* Positions and flags. */
	CHECK(lseek(fd_a, 0, SEEK_CUR) == A_POS, "%s: fd a at %ld", who, (long)lseek(fd_a, 0, SEEK_CUR));
	CHECK(lseek(fd_b, 0, SEEK_CUR) == (off_t)strlen(B_DATA), "%s: fd b at %ld", who,
	      (long)lseek(fd_b, 0, SEEK_CUR));
	int fl = SYS(fcntl(fd_a, F_GETFL));
	CHECK((fl & (O_ACCMODE | O_APPEND)) == O_RDWR, "%s: fd a flags %#x", who, fl);
	fl = SYS(fcntl(fd_b, F_GETFL));
	CHECK((fl & (O_ACCMODE | O_APPEND)) == (O_RDWR | O_APPEND), "%s: fd b flags %#x", who, fl);
	CHECK(SYS(fcntl(fd_a, F_GETFD)) == 0, "%s: fd a is close-on-exec", who);
	CHECK(SYS(fcntl(fd_b, F_GETFD)) == FD_CLOEXEC, "%s: fd b is not close-on-exec", who);

	/* Sizes and seals, and that the seals hold. */
	struct stat st;
	SYS(fstat(fd_a, &st));
	CHECK(st.st_size == (off_t)A_SIZE, "%s: memfd a is %ld bytes", who, (long)st.st_size);
	int seals = SYS(fcntl(fd_a, F_GET_SEALS));
	CHECK(seals == (F_SEAL_SHRINK | F_SEAL_GROW), "%s: memfd a seals %#x", who, seals);
	CHECK(ftruncate(fd_a, PG) < 0 && errno == EPERM, "%s: memfd a shrinks", who);
	CHECK(ftruncate(fd_a, 8 * PG) < 0 && errno == EPERM, "%s: memfd a grows", who);
	seals = SYS(fcntl(fd_b, F_GET_SEALS));
	CHECK(seals == F_SEAL_SEAL, "%s: memfd b seals %#x", who, seals);
	CHECK(fcntl(fd_b, F_ADD_SEALS, F_SEAL_GROW) < 0 && errno == EPERM, "%s: memfd b sealable",
	      who);
	seals = SYS(fcntl(fd_d, F_GET_SEALS));
	CHECK(seals == (F_SEAL_FUTURE_WRITE | F_SEAL_SEAL), "%s: memfd d seals %#x", who, seals);
	void *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd_d, 0);
	CHECK(w == MAP_FAILED && errno == EPERM, "%s: memfd d maps writable again", who);
	CHECK(pwrite(fd_d, "x", 1, 0) < 0 && errno == EPERM, "%s: memfd d writable", who);

	/* Contents of memfd b, read with a file description of its own. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_b);
	int rb = SYS(open(path, O_RDONLY | O_CLOEXEC));
	char buf[64] = { 0 };
	n = read(rb, buf, sizeof(buf) - 1);
	CHECK(n == (ssize_t)strlen(B_DATA) && strcmp(buf, B_DATA) == 0, "%s: memfd b holds '%s'",
	      who, buf);
	close(rb);

	/* The hole of memfd a is still a hole. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_a);
	int ra = SYS(open(path, O_RDONLY | O_CLOEXEC));
	off_t hole = lseek(ra, 0, SEEK_HOLE), data = lseek(ra, 2 * PG, SEEK_DATA);
	CHECK(hole == (off_t)(2 * PG) && data == (off_t)(4 * PG),
	      "%s: memfd a: first hole at %ld, data again at %ld", who, (long)hole, (long)data);
	/* read(2) of a hole allocates nothing (touching it through the mapping would). */
	static unsigned char zeros[2 * PG];
	CHECK(pread(ra, zeros, sizeof(zeros), 2 * PG) == (ssize_t)sizeof(zeros), "%s: pread hole", who);
	for (size_t i = 0; i < sizeof(zeros); i++)
		CHECK(zeros[i] == 0, "%s: memfd a hole byte %zu is %02x", who, i, zeros[i]);
	close(ra);

	/* Contents through the mappings (not the hole: a fault there would fill it). */
	for (size_t i = 0; i < A_MAP; i++) {
		if (i >= 2 * PG && i < 4 * PG)
			continue;
		unsigned char want = a_has_data(i) ? pat(1, i) : 0;
		CHECK(map_a[i] == want, "%s: memfd a byte %zu is %02x, expected %02x", who, i, map_a[i],
		      want);
	}
	for (size_t i = 0; i < PG; i++)
		CHECK(map_c[i] == pat(3, i), "%s: memfd c byte %zu is %02x", who, i, map_c[i]);
	for (size_t i = 0; i < PG; i++)
		CHECK(map_d[i] == pat(5, i), "%s: memfd d byte %zu is %02x", who, i, map_d[i]);
	for (size_t i = 0; i < ANON_LEN; i++)
		CHECK(anon[i] == pat(4, i), "%s: anon byte %zu is %02x", who, i, anon[i]);
}

static void wait_byte(int fd, const char *who)
{
	char c;
	for (;;) {
		ssize_t n = read(fd, &c, 1);
		if (n == 1)
			return;
		if (n < 0 && errno == EINTR)
			continue;
		fail("%s: read sync pipe: %s", who, n == 0 ? "EOF" : strerror(errno));
	}
}

/* The writes of one side: its salt in page 1 of memfd a, page 0 of c and page `anon_page`. */
static void write_side(int salt, size_t a_page, size_t anon_page)
{
	for (size_t i = 0; i < PG; i++) {
		map_a[a_page * PG + i] = pat(salt, i);
		map_c[i] = pat(salt + 1, i);
		map_d[i] = pat(salt + 3, i);
		anon[anon_page * PG + i] = pat(salt + 2, i);
	}
}

static void check_side(int salt, size_t a_page, size_t anon_page, const char *who)
{
	for (size_t i = 0; i < PG; i++) {
		CHECK(map_a[a_page * PG + i] == pat(salt, i), "%s: memfd a page %zu not shared", who,
		      a_page);
		CHECK(map_c[i] == pat(salt + 1, i), "%s: memfd c not shared", who);
		CHECK(map_d[i] == pat(salt + 3, i), "%s: memfd d not shared", who);
		CHECK(anon[anon_page * PG + i] == pat(salt + 2, i), "%s: anon page %zu not shared", who,
		      anon_page);
	}
}

static void child_main(void)
{
	close(p2c[1]);
	close(c2p[0]);
	wait_byte(p2c[0], "child");
	check_state("child");
	write_side(20, 1, 0);
	CHECK(write(c2p[1], "w", 1) == 1, "child: write sync: %s", strerror(errno));
	wait_byte(p2c[0], "child");
	check_side(40, 4, 1, "child");
	exit(0);
}

int main(void)
{
	install_term_handler();

	fd_a = SYS(memfd_create("cryo-data", MFD_ALLOW_SEALING));
	SYS(ftruncate(fd_a, A_SIZE));
	SYS(fcntl(fd_a, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW));
	map_a = mmap(NULL, A_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd_a, 0);
	CHECK(map_a != MAP_FAILED, "mmap memfd a: %s", strerror(errno));
	for (size_t i = 0; i < A_SIZE; i++)
		if (a_has_data(i))
			map_a[i] = pat(1, i);
	SYS(lseek(fd_a, A_POS, SEEK_SET));
	priv_a = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_a, 0);
	CHECK(priv_a != MAP_FAILED, "mmap memfd a private: %s", strerror(errno));
	for (size_t i = 0; i < PG; i++)
		priv_a[i] = pat(2, i);

	fd_b = SYS(memfd_create("cryo-fd-only", MFD_CLOEXEC));
	CHECK(write(fd_b, B_DATA, strlen(B_DATA)) == (ssize_t)strlen(B_DATA), "write b");
	SYS(fcntl(fd_b, F_SETFL, O_APPEND));

	int fd_c = SYS(memfd_create("cryo-map-only", 0));
	SYS(ftruncate(fd_c, PG));
	map_c = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd_c, 0);
	CHECK(map_c != MAP_FAILED, "mmap memfd c: %s", strerror(errno));
	close(fd_c);
	for (size_t i = 0; i < PG; i++)
		map_c[i] = pat(3, i);

	fd_d = SYS(memfd_create("cryo-future", MFD_ALLOW_SEALING));
	SYS(ftruncate(fd_d, PG));
	map_d = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd_d, 0);
	CHECK(map_d != MAP_FAILED, "mmap memfd d: %s", strerror(errno));
	for (size_t i = 0; i < PG; i++)
		map_d[i] = pat(5, i);
	if (fcntl(fd_d, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0)
		skip("memfd", "no F_SEAL_FUTURE_WRITE (Linux 5.1)");

	anon = mmap(NULL, ANON_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(anon != MAP_FAILED, "mmap anon: %s", strerror(errno));
	for (size_t i = 0; i < ANON_LEN; i++)
		anon[i] = pat(4, i);

	SYS(pipe(p2c));
	SYS(pipe(c2p));
	pid_t child = SYS(fork());
	if (child == 0)
		child_main();
	close(p2c[0]);
	close(c2p[1]);

	ready();
	wait_term();

	check_state("parent");
	for (size_t i = 0; i < 2 * PG; i++) {
		unsigned char want = i < PG ? pat(2, i) : pat(1, i);
		CHECK(priv_a[i] == want, "parent: private map of memfd a byte %zu is %02x, expected %02x",
		      i, priv_a[i], want);
	}
	CHECK(write(p2c[1], "c", 1) == 1, "parent: write sync: %s", strerror(errno));
	wait_byte(c2p[0], "parent");
	check_side(20, 1, 0, "parent");
	write_side(40, 4, 1);
	CHECK(write(p2c[1], "w", 1) == 1, "parent: write sync: %s", strerror(errno));
	int st;
	CHECK(waitpid(child, &st, 0) == child, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "child failed (status %#x; its FAIL line says why)", st);
	return pass();
}
