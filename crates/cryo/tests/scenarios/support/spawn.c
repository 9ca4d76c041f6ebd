/*
 * spawn CMD [ARGS...]: not a scenario; a helper of the harness (tests/scenarios.rs).
 *
 * Starts a scenario clean: closes every descriptor above 2 (the test process may hold some
 * without O_CLOEXEC, such as cargo's jobserver pipe, and a scenario must own only the state it
 * sets up), makes itself a session and process group leader (setsid), and execs CMD, so the
 * scenario keeps this process's PID.
 *
 * spawn --pty CMD [ARGS...]: the same, with a new pseudo-terminal as stdin and controlling
 * terminal (the scenario is the session leader that owns it, as a shell job would be). A child
 * in a session of its own holds the master side open, so the terminal outlives a checkpoint of
 * the scenario and a restored copy can open it again; it leaves when $CRYO_SCENARIO_TMP goes
 * away (the harness removes it) or after an hour.
 *
 * spawn --pidns CMD [ARGS...]: CMD runs as the init (PID 1) of a new pid namespace, session
 * leader there, with a private copy of the mounts and a /proc of its namespace (as a container
 * has); this process stays outside as its parent, waits for it and exits with its exit
 * code (128 + the signal if a signal ended it). The harness finds the init as its only child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Become the controlling terminal's session leader on a new pty; fork the master's keeper. */
static int setup_pty(void)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master)) {
		perror("spawn: posix_openpt");
		return -1;
	}
	const char *name = ptsname(master);
	/* A session leader without a terminal acquires the first one it opens. */
	int slave = name ? open(name, O_RDWR) : -1;
	if (slave < 0) {
		perror("spawn: open pty slave");
		return -1;
	}
	const char *tmp = getenv("CRYO_SCENARIO_TMP");
	pid_t keeper = fork();
	if (keeper < 0) {
		perror("spawn: fork");
		return -1;
	}
	if (keeper == 0) {
		/* Out of the scenario's session, so its hangup does not reach us, and not its child
		 * (a dump takes one process): the intermediate exits at once. */
		setsid();
		if (fork() != 0)
			_exit(0);
		signal(SIGHUP, SIG_IGN);
		close(slave);
		for (int i = 0; i < 36000; i++) {
			struct stat st;
			if (tmp && stat(tmp, &st))
				break;
			usleep(100000);
		}
		_exit(0);
	}
	close(master);
	waitpid(keeper, NULL, 0);
	if (dup2(slave, 0) < 0)
		return -1;
	if (slave != 0)
		close(slave);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || (argc < 3 && (!strcmp(argv[1], "--pty") || !strcmp(argv[1], "--pidns")))) {
		fprintf(stderr, "usage: spawn [--pty|--pidns] CMD [ARGS...]\n");
		return 2;
	}
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) {
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	}
	int pty = !strcmp(argv[1], "--pty");
	if (pty)
		argv++;
	if (!strcmp(argv[1], "--pidns")) {
		argv++;
		if (unshare(CLONE_NEWPID | CLONE_NEWNS)) {
			perror("spawn: unshare(CLONE_NEWPID | CLONE_NEWNS)");
			return 2;
		}
		pid_t init = fork();
		if (init < 0) {
			perror("spawn: fork");
			return 2;
		}
		if (init > 0) {
			int status;
			while (waitpid(init, &status, 0) < 0) {
				if (errno != EINTR) {
					perror("spawn: waitpid");
					return 2;
				}
			}
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
			return WEXITSTATUS(status);
		}
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
			perror("spawn: mount /proc");
			return 2;
		}
	}
	if (setsid() < 0) {
		perror("spawn: setsid");
		return 2;
	}
	if (pty && setup_pty())
		return 2;
	execvp(argv[1], argv + 1);
	perror("spawn: exec");
	return 127;
}
