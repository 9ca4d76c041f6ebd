/*
 * reaper OUT CMD [ARGS...]: not a scenario; a helper of the harness (tests/scenarios.rs).
 *
 * Becomes a child subreaper (PR_SET_CHILD_SUBREAPER), runs CMD (cryo restore -d), and reaps CMD
 * and every task reparented to it (the restored tree), appending one line per reaped task to OUT:
 *   cmd PID STATUS     for CMD itself
 *   exit PID STATUS    for any other task
 * where STATUS is the raw wait status in decimal. Exits 0 when it has no children left. This gives
 * the harness the exit status of restored tasks without waitpid() in Rust.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void record(const char *out, const char *kind, pid_t pid, int status)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%s %d %d\n", kind, pid, status);
	int fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, n) != n)
		perror("reaper: write");
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: reaper OUT CMD [ARGS...]\n");
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
		perror("reaper: PR_SET_CHILD_SUBREAPER");
		return 2;
	}
	pid_t cmd = fork();
	if (cmd < 0) {
		perror("reaper: fork");
		return 2;
	}
	if (cmd == 0) {
		execvp(argv[2], argv + 2);
		perror("reaper: exec");
		_exit(127);
	}
	for (;;) {
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		record(argv[1], pid == cmd ? "cmd" : "exit", pid, status);
	}
	return 0;
}
