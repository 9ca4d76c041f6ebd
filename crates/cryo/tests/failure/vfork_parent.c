/*
 * vfork_parent: not a scenario; the task of the vfork test of tests/failure.rs.
 *
 * The process (TOP) forks PARENT, which calls vfork(); the vfork child (CHILD) writes
 * "PARENT CHILD\n" on stdout and pauses, so PARENT waits in vfork() until CHILD is killed.
 * Then PARENT reaps CHILD, writes "RELEASED\n" and exits 0; TOP exits with PARENT's status.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(void)
{
	pid_t parent = fork();
	if (parent < 0)
		return 2;
	if (parent == 0) {
		pid_t me = getpid();
		pid_t child = vfork();
		if (child < 0)
			_exit(3);
		if (child == 0) {
			/* Only raw system calls here: the memory is the parent's. */
			char line[64];
			int n = snprintf(line, sizeof(line), "%d %ld\n", me, (long)syscall(SYS_getpid));
			if (write(1, line, n) != n)
				_exit(4);
			for (;;)
				syscall(SYS_pause);
		}
		int st = 0;
		if (waitpid(child, &st, 0) != child)
			_exit(5);
		if (write(1, "RELEASED\n", 9) != 9)
			_exit(6);
		_exit(0);
	}
	int st = 0;
	if (waitpid(parent, &st, 0) != parent)
		return 7;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 8;
}
