/*
 * shared_tables: children that share kernel objects with their parent, made with clone(2):
 * `files` shares the fd table (CLONE_FILES), `fs` shares cwd, root and umask (CLONE_FS), and
 * `own` shares nothing (a plain fork).
 *
 * After SIGTERM the parent opens a new descriptor at fd 200, changes directory and sets a new
 * umask, then tells each child to look: `files` must see fd 200 (one table), `fs` must see the
 * new cwd and umask (one fs), and `own` must see none of it. Each child also checks that what
 * it had before the checkpoint (a pipe end at a known number) is still there, and `fs` and
 * `own`, whose tables are their own, that they hold as many fds as before (nothing of the
 * restore's own left in them: 51 or 52).
 */
#include "scenario.h"
#include <dirent.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define STACK_BYTES (256 << 10)
#define NEW_FD 200
#define NEW_UMASK 0027

enum kind { FILES, FS, OWN, KINDS };
static const char *names[KINDS] = { "files", "fs", "own" };
static int go[KINDS][2];
static char newdir[512];

/* The fds open in the calling process (the directory stream's own not counted). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}

static int child(void *arg)
{
	enum kind k = (enum kind)(long)arg;
	int fds_before = count_fds();
	char c;
	while (read(go[k][0], &c, 1) != 1)
		if (errno != EINTR)
			return 10;
	int sees_fd = fcntl(NEW_FD, F_GETFD) != -1;
	char cwd[512];
	if (!getcwd(cwd, sizeof(cwd)))
		return 11;
	int sees_cwd = strcmp(cwd, newdir) == 0;
	mode_t m = umask(0);
	umask(m);
	int sees_umask = m == NEW_UMASK;
	if (k != FILES && count_fds() != fds_before)
		return 50 + k;
	switch (k) {
	case FILES:
		return sees_fd && !sees_cwd && !sees_umask ? 0 : 20 + sees_fd + 2 * sees_cwd + 4 * sees_umask;
	case FS:
		return !sees_fd && sees_cwd && sees_umask ? 0 : 30 + sees_fd + 2 * sees_cwd + 4 * sees_umask;
	default:
		return !sees_fd && !sees_cwd && !sees_umask ? 0 : 40 + sees_fd + 2 * sees_cwd + 4 * sees_umask;
	}
}

int main(void)
{
	install_term_handler();
	const char *tmp = getenv("CRYO_SCENARIO_TMP");
	CHECK(tmp, "no CRYO_SCENARIO_TMP");
	snprintf(newdir, sizeof(newdir), "%s/newcwd", tmp);
	SYS(mkdir(newdir, 0700));
	/* Resolve symlinks so getcwd() compares equal. */
	char real[512];
	CHECK(realpath(newdir, real), "realpath %s: %s", newdir, strerror(errno));
	snprintf(newdir, sizeof(newdir), "%s", real);
	umask(022);

	int flags[KINDS] = { CLONE_FILES, CLONE_FS, 0 };
	pid_t pids[KINDS];
	for (int k = 0; k < KINDS; k++) {
		SYS(pipe(go[k]));
		char *stack = malloc(STACK_BYTES);
		CHECK(stack, "malloc");
		pids[k] = SYS(clone(child, stack + STACK_BYTES, flags[k] | SIGCHLD, (void *)(long)k));
	}
	CHECK(fcntl(NEW_FD, F_GETFD) == -1, "fd %d is open already", NEW_FD);
	ready();
	wait_term();

	int fd = SYS(open("/dev/null", O_RDONLY));
	SYS(dup2(fd, NEW_FD));
	close(fd);
	SYS(chdir(newdir));
	umask(NEW_UMASK);
	for (int k = 0; k < KINDS; k++)
		CHECK(write(go[k][1], "g", 1) == 1, "tell %s: %s", names[k], strerror(errno));
	for (int k = 0; k < KINDS; k++) {
		int st;
		CHECK(waitpid(pids[k], &st, 0) == pids[k], "waitpid %s: %s", names[k], strerror(errno));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "child %s: status %#x (20/30/40 + sees fd + 2*sees cwd + 4*sees umask)", names[k], st);
	}
	return pass();
}
