/*
 * sessions: sessions and process groups that the kernel only lets a process get at fork or
 * set for itself, in the shapes CRIU's session00 test builds and the ones CRIU cannot restore
 * (its TODO row W33). The root is a child subreaper; every other process sleeps.
 *
 *   newsid    its own session
 *   changesid its own session, made after forking a child that stays in the root's session
 *   double    two generations that left the root's session after forking, and a grandchild
 *             still in it
 *   deadsess  a session whose leader exited: its two children were adopted by the root, one
 *             in the leader's group, one in a group of its own
 *   deadgrp   a process group whose leader exited: its child was adopted by the root
 *
 * At READY the root records pid, parent, group and session of every process below it (from
 * /proc); after SIGTERM they must all be the same, and the dead leaders must still be gone.
 */
#include "scenario.h"
#include <sys/prctl.h>
#include <sys/wait.h>

#define MAX_PROCS 32

static void sleep_forever(void)
{
	for (;;)
		pause();
}

/* Fork a child that runs fn and never returns; returns the child's pid. */
static pid_t spawn(void (*fn)(void))
{
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		fn();
		sleep_forever();
	}
	return pid;
}

static int sync_pipe[2];

/* Tell the root one more process is set up. */
static void done(void)
{
	if (write(sync_pipe[1], "x", 1) != 1)
		_exit(5);
}

static void stay(void)
{
	done();
}

static void newsid(void)
{
	if (setsid() < 0)
		_exit(6);
	done();
}

static void changesid(void)
{
	spawn(stay);
	if (setsid() < 0)
		_exit(6);
	done();
}

static void double_inner(void)
{
	spawn(stay);
	if (setsid() < 0)
		_exit(6);
	done();
}

static void double_outer(void)
{
	spawn(double_inner);
	if (setsid() < 0)
		_exit(6);
	done();
}

static void own_group(void)
{
	if (setpgid(0, 0) < 0)
		_exit(7);
	done();
}

/* The session leader forks its members and exits; the root adopts them. */
static void deadsess(void)
{
	if (setsid() < 0)
		_exit(6);
	spawn(stay);
	spawn(own_group);
	_exit(0);
}

/* The group leader forks a member and exits. */
static void deadgrp(void)
{
	if (setpgid(0, 0) < 0)
		_exit(7);
	spawn(stay);
	_exit(0);
}

int main(void)
{
	install_term_handler();
	SYS(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
	SYS(pipe(sync_pipe));
	spawn(newsid);
	spawn(changesid);
	spawn(double_outer);
	pid_t dead_sess = spawn(deadsess);
	pid_t dead_grp = spawn(deadgrp);
	/* newsid 1, changesid 2, double 3, the three adopted ones. */
	for (int i = 0; i < 9; i++) {
		char c;
		CHECK(read(sync_pipe[0], &c, 1) == 1, "a child failed to set up: %s", strerror(errno));
	}
	int st;
	CHECK(waitpid(dead_sess, &st, 0) == dead_sess && WIFEXITED(st) && !WEXITSTATUS(st),
	      "session leader: %#x", st);
	CHECK(waitpid(dead_grp, &st, 0) == dead_grp && WIFEXITED(st) && !WEXITSTATUS(st),
	      "group leader: %#x", st);

	struct proc_ids before[MAX_PROCS], after[MAX_PROCS];
	int n = snapshot_tree(before, MAX_PROCS, getpid());
	CHECK(n == 9, "%d processes below the root, not 9", n);
	int in_dead_sess = 0, in_dead_grp = 0;
	for (int i = 0; i < n; i++) {
		in_dead_sess += before[i].sid == dead_sess;
		in_dead_grp += before[i].pgrp == dead_grp;
	}
	CHECK(in_dead_sess == 2 && in_dead_grp == 1, "setup: %d in the dead session, %d in the dead group",
	      in_dead_sess, in_dead_grp);
	ready();
	wait_term();

	int m = snapshot_tree(after, MAX_PROCS, getpid());
	check_same_tree(before, n, after, m);
	CHECK(kill(dead_sess, 0) < 0 && errno == ESRCH, "the dead session leader %d is back", dead_sess);
	CHECK(kill(dead_grp, 0) < 0 && errno == ESRCH, "the dead group leader %d is back", dead_grp);
	for (int i = 0; i < n; i++)
		kill(after[i].pid, SIGKILL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return pass();
}
