/*
 * open_files: file descriptors of the kinds the foundation restores. A log opened O_APPEND
 * and written to, a data file open read-write at a chosen offset, a directory, /dev/null and
 * /dev/zero, and a file deleted while open (its contents live only in the fd).
 *
 * After SIGTERM: every fd is at its number with its status flags (O_APPEND kept), its
 * close-on-exec bit and its offset; the directory still resolves relative paths; the devices
 * are the same devices; the deleted file is still deleted (link count 0, "(deleted)" in its
 * /proc link, nothing at its path) and holds its contents.
 */
#include "scenario.h"
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define LOG_FD 10
#define DATA_FD 11
#define DIR_FD 12
#define NULL_FD 13
#define ZERO_FD 14
#define GONE_FD 15
#define GONE_TEXT "only the fd remembers this"

static void put(int fd, int want)
{
	if (fd != want) {
		SYS(dup2(fd, want));
		close(fd);
	}
}

int main(void)
{
	install_term_handler();
	const char *tmp = getenv("CRYO_SCENARIO_TMP");
	CHECK(tmp, "CRYO_SCENARIO_TMP is not set");
	char log[512], data[512], gone[512], sub[512];
	snprintf(log, sizeof(log), "%s/log", tmp);
	snprintf(data, sizeof(data), "%s/data", tmp);
	snprintf(gone, sizeof(gone), "%s/gone", tmp);
	snprintf(sub, sizeof(sub), "%s/dir", tmp);
	SYS(mkdir(sub, 0700));
	int fd = open(sub, O_RDONLY | O_DIRECTORY);
	SYS(fd);
	put(fd, DIR_FD);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	SYS(fd);
	put(fd, LOG_FD);
	SYS(fcntl(LOG_FD, F_SETFD, FD_CLOEXEC));
	SYS(write(LOG_FD, "one\n", 4));
	fd = open(data, O_RDWR | O_CREAT, 0600);
	SYS(fd);
	put(fd, DATA_FD);
	SYS(write(DATA_FD, "0123456789abcdef", 16));
	SYS(lseek(DATA_FD, 5, SEEK_SET));
	fd = open("/dev/null", O_WRONLY);
	SYS(fd);
	put(fd, NULL_FD);
	fd = open("/dev/zero", O_RDONLY);
	SYS(fd);
	put(fd, ZERO_FD);
	fd = open(gone, O_RDWR | O_CREAT, 0640);
	SYS(fd);
	put(fd, GONE_FD);
	SYS(write(GONE_FD, GONE_TEXT, sizeof(GONE_TEXT)));
	SYS(lseek(GONE_FD, 3, SEEK_SET));
	SYS(unlink(gone));
	ready();
	wait_term();

	/* The log: append mode, close-on-exec, and a write lands at the end. */
	int fl = fcntl(LOG_FD, F_GETFL);
	CHECK(fl >= 0 && (fl & O_APPEND) && (fl & O_ACCMODE) == O_WRONLY, "log flags are %#x", fl);
	CHECK(fcntl(LOG_FD, F_GETFD) == FD_CLOEXEC, "log lost close-on-exec");
	/* A write goes to the end, wherever that is now (a copy left running may have written). */
	struct stat before;
	SYS(fstat(LOG_FD, &before));
	SYS(write(LOG_FD, "two\n", 4));
	char buf[64] = { 0 };
	ssize_t n = read_small_file(log, buf, sizeof(buf));
	CHECK(n == before.st_size + 4 && !strncmp(buf, "one\n", 4) && !strcmp(buf + n - 4, "two\n"), "log reads \"%s\"", buf);

	/* The data file: offset and read-write mode. */
	CHECK(lseek(DATA_FD, 0, SEEK_CUR) == 5, "data offset is %ld", (long)lseek(DATA_FD, 0, SEEK_CUR));
	CHECK((fcntl(DATA_FD, F_GETFL) & O_ACCMODE) == O_RDWR, "data file is not read-write");
	CHECK(fcntl(DATA_FD, F_GETFD) == 0, "data file became close-on-exec");
	memset(buf, 0, sizeof(buf));
	CHECK(read(DATA_FD, buf, 3) == 3 && !memcmp(buf, "567", 3), "data reads \"%s\" at 5", buf);

	/* The directory resolves relative paths. */
	int probe = openat(DIR_FD, "probe", O_WRONLY | O_CREAT, 0600);
	CHECK(probe >= 0, "openat in the directory fd: %s", strerror(errno));
	close(probe);
	struct stat st;
	snprintf(buf, sizeof(buf), "%.40s", "probe");
	char probe_path[600];
	snprintf(probe_path, sizeof(probe_path), "%s/probe", sub);
	CHECK(stat(probe_path, &st) == 0, "the file made through the directory fd is not at %s", probe_path);

	/* The devices. */
	CHECK(fstat(NULL_FD, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3,
	      "fd %d is not /dev/null", NULL_FD);
	CHECK(fstat(ZERO_FD, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 5,
	      "fd %d is not /dev/zero", ZERO_FD);
	memset(buf, 1, 8);
	CHECK(read(ZERO_FD, buf, 8) == 8 && !buf[0] && !buf[7], "/dev/zero does not read zeros");

	/* The deleted file. */
	CHECK(fstat(GONE_FD, &st) == 0 && st.st_nlink == 0, "deleted file has %lu links", (unsigned long)st.st_nlink);
	CHECK((st.st_mode & 0777) == 0640, "deleted file mode is %o", st.st_mode & 0777);
	CHECK(access(gone, F_OK) == -1, "deleted file exists again at %s", gone);
	char link[600] = { 0 };
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", GONE_FD);
	CHECK(readlink(self, link, sizeof(link) - 1) > 0 && strstr(link, "(deleted)"), "deleted file's link is %s", link);
	CHECK(lseek(GONE_FD, 0, SEEK_CUR) == 3, "deleted file offset is %ld", (long)lseek(GONE_FD, 0, SEEK_CUR));
	char got[sizeof(GONE_TEXT)] = { 0 };
	CHECK(pread(GONE_FD, got, sizeof(got), 0) == sizeof(got) && !strcmp(got, GONE_TEXT), "deleted file holds \"%s\"", got);
	return pass();
}
