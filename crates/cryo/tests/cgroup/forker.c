/*
 * forker NAME DEPTH: not a scenario; the task of tests/cgroup.rs that keeps its cgroup busy.
 *
 * The process joins the cgroup whose cgroup.procs file is in $CRYO_CGROUP_PROCS, says
 * "READY NAME PID" in the status file ($CRYO_SCENARIO_STATUS) and then forks without a pause:
 * each child lives about 2 ms and exits, and the parent reaps the children that have exited
 * now and then (so that some are zombies at any time). DEPTH is ignored. It runs until killed.
 */
#include "scenario.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: forker NAME [DEPTH]\n");
		return 2;
	}
	const char *procs = getenv("CRYO_CGROUP_PROCS");
	if (procs && *procs) {
		int fd = open(procs, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			fail("open %s: %s", procs, strerror(errno));
		char pid[32];
		int n = snprintf(pid, sizeof(pid), "%d", getpid());
		if (write(fd, pid, n) != n)
			fail("join %s: %s", procs, strerror(errno));
		close(fd);
	}
	status_line("READY %s %d", argv[1], getpid());
	for (unsigned long i = 0;; i++) {
		pid_t c = fork();
		if (c == 0) {
			sleep_ms(2);
			_exit(0);
		}
		if (i % 4 == 0)
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
		sleep_ms(1);
	}
}
