/*
 * shared_files: open files shared by fds and by processes. The parent opens a file twice:
 * `a` (and `b`, a dup of it) and `c`, a second open file of the same file; it moves `a` to
 * offset 100 and `c` to 200, then forks a child, which inherits all three.
 * After the restore, each side moves or changes one open file and the other side must see it:
 *  - the parent moves `a` to 1000 and sets O_APPEND on it: the child reads 1000 at `a` and
 *    at `b` and O_APPEND on `b`, and still 200 at `c`;
 *  - the child moves `c` to 3000: the parent reads 3000 at `c`, and 1000 at `a` and `b`.
 * An fd table shared by nobody, so each process has its own fds naming the same open files.
 */
#include "scenario.h"
#include <sys/wait.h>

static int a, b, c;

/* 1 when fd `fd` is not at `off`. */
static int not_at(int fd, off_t off)
{
	return lseek(fd, 0, SEEK_CUR) != off;
}

static void child_main(int go, int done)
{
	char x;
	/* After the restore: the parent has moved `a` and set O_APPEND on it. */
	while (read(go, &x, 1) != 1)
		if (errno != EINTR)
			_exit(3);
	int bad = 0;
	if (not_at(a, 1000))
		bad = 10;
	else if (not_at(b, 1000))
		bad = 11;
	else if (!(fcntl(b, F_GETFL) & O_APPEND))
		bad = 12;
	else if (not_at(c, 200))
		bad = 13;
	else if (lseek(c, 3000, SEEK_SET) != 3000)
		bad = 14;
	char r = (char)bad;
	if (write(done, &r, 1) != 1)
		_exit(3);
	_exit(bad ? 1 : 0);
}

int main(void)
{
	install_term_handler();
	char path[512];
	snprintf(path, sizeof(path), "%s/shared_files.data", scenario_tmp());
	a = SYS(open(path, O_RDWR | O_CREAT | O_TRUNC, 0600));
	char buf[4096] = { 0 };
	for (int i = 0; i < 2; i++)
		CHECK(write(a, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write %s", path);
	b = SYS(dup(a));
	c = SYS(open(path, O_RDWR));
	CHECK(lseek(a, 100, SEEK_SET) == 100 && lseek(c, 200, SEEK_SET) == 200, "lseek: %s",
	      strerror(errno));

	int go, done;
	pid_t child = fork_with_pipes(child_main, &go, &done);

	ready();
	wait_term();

	CHECK(!not_at(b, 100) && !not_at(c, 200), "before: b at %lld, c at %lld",
	      (long long)lseek(b, 0, SEEK_CUR), (long long)lseek(c, 0, SEEK_CUR));
	CHECK(lseek(a, 1000, SEEK_SET) == 1000, "lseek a: %s", strerror(errno));
	SYS(fcntl(a, F_SETFL, O_APPEND));
	CHECK(write(go, "g", 1) == 1, "tell the child: %s", strerror(errno));
	char r;
	CHECK(read(done, &r, 1) == 1, "child's answer: %s", strerror(errno));
	CHECK(r == 0, "child: check %d failed (10-11: a/b not where the parent moved them, 12: "
		      "O_APPEND not shared, 13: c moved, 14: lseek)", r);
	CHECK(!not_at(c, 3000), "c at %lld, the child moved it to 3000",
	      (long long)lseek(c, 0, SEEK_CUR));
	CHECK(!not_at(a, 1000) && !not_at(b, 1000), "a at %lld, b at %lld, expected 1000",
	      (long long)lseek(a, 0, SEEK_CUR), (long long)lseek(b, 0, SEEK_CUR));
	int st;
	CHECK(waitpid(child, &st, 0) == child, "waitpid %d: %s", child, strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
	return pass();
}
