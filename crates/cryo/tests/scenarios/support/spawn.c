/*
 * spawn CMD [ARGS...]: not a scenario; a helper of the harness (tests/scenarios.rs).
 *
 * Starts a scenario clean: closes every descriptor above 2 (the test process may hold some
 * without O_CLOEXEC, such as cargo's jobserver pipe, and a scenario must own only the state it
 * sets up), makes itself a session and process group leader (setsid), and execs CMD, so the
 * scenario keeps this process's PID.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: spawn CMD [ARGS...]\n");
		return 2;
	}
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) {
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	}
	if (setsid() < 0) {
		perror("spawn: setsid");
		return 2;
	}
	execvp(argv[1], argv + 1);
	perror("spawn: exec");
	return 127;
}
