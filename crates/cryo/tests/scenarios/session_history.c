/*
 * session_history: trees whose sessions and parents changed over time, the shapes CRIU cannot
 * restore (zdtm's session02 and session03, manual there): sessions whose leader has exited
 * with members under several parents, members moved to subreapers when their parents exited,
 * processes forked with CLONE_PARENT, zombies.
 *
 * Every process below the root runs a command loop on a socketpair: fork a child (optionally
 * with CLONE_PARENT), setsid, become or stop being a subreaper, reap a child, answer a ping,
 * or exit. The
 * root (a subreaper, as in session03) plays
 *   - the history of zdtm's session02, step by step, and
 *   - a random history from a fixed seed (forks of recent processes, setsid, subreaper
 *     changes, exits with status 0 (left as zombies) or 2 (reaped when the root is the parent)).
 *
 * At READY the root records pid, parent, group, session and state of every process below it
 * (from /proc); after SIGTERM they must all be the same, and every live process must still
 * answer on its socket.
 */
#include "scenario.h"
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MAX_PROCS 64
#define RANDOM_STEPS 50

enum op { OP_FORK, OP_SETSID, OP_SUBREAPER, OP_PING, OP_WAIT, OP_EXIT };

struct cmd {
	int op, arg1, arg2;
};

/* Socket ends: the root talks on ctl[i], process i listens on sk[i]. */
static int ctl[MAX_PROCS], sk[MAX_PROCS];
static pid_t pids[MAX_PROCS];
static int dead[MAX_PROCS], reaped[MAX_PROCS];
static int nprocs;

static void serve(int me);

/* Fork process `id` (fork, or clone with CLONE_PARENT); returns its pid. */
static pid_t make(int id, int clone_parent)
{
	long pid = syscall(SYS_clone, (clone_parent ? CLONE_PARENT : 0) | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid == 0)
		serve(id);
	return pid;
}

static void serve(int me)
{
	/* The root's ends are the root's. */
	for (int i = 0; i < MAX_PROCS; i++)
		if (ctl[i] >= 0)
			close(ctl[i]);
	for (;;) {
		struct cmd c;
		int st = 0;
		if (read(sk[me], &c, sizeof(c)) != sizeof(c))
			_exit(10);
		switch (c.op) {
		case OP_FORK:
			st = make(c.arg1, c.arg2);
			break;
		case OP_SETSID:
			st = setsid() < 0 ? -1 : 0;
			break;
		case OP_SUBREAPER:
			st = prctl(PR_SET_CHILD_SUBREAPER, c.arg1, 0, 0, 0);
			break;
		case OP_PING:
			st = getpid();
			break;
		case OP_WAIT:
			st = waitpid(c.arg1, NULL, 0) == c.arg1 ? 0 : -1;
			break;
		case OP_EXIT:
			if (write(sk[me], &st, sizeof(st)) != sizeof(st))
				_exit(11);
			_exit(c.arg1);
		}
		if (write(sk[me], &st, sizeof(st)) != sizeof(st))
			_exit(11);
	}
}

/* Send a command to process `id` and return its answer. */
static int send_cmd(int id, int op, int arg1, int arg2)
{
	struct cmd c = { op, arg1, arg2 };
	int st;
	CHECK(write(ctl[id], &c, sizeof(c)) == sizeof(c), "command to %d: %s", id, strerror(errno));
	CHECK(read(ctl[id], &st, sizeof(st)) == sizeof(st), "answer of %d: %s", id, strerror(errno));
	return st;
}

static int new_proc(int parent, int clone_parent)
{
	CHECK(nprocs < MAX_PROCS, "too many processes");
	int id = nprocs++;
	int st;
	if (parent == 0) {
		/* Process 0 is the root itself. */
		st = fork();
		if (st == 0)
			serve(id);
	} else {
		st = send_cmd(parent, OP_FORK, id, clone_parent);
	}
	CHECK(st > 0, "fork by %d failed", parent);
	pids[id] = st;
	return id;
}

static void do_setsid(int id)
{
	CHECK(send_cmd(id, OP_SETSID, 0, 0) == 0, "setsid of %d failed", id);
}

static void do_subreaper(int id, int on)
{
	CHECK(send_cmd(id, OP_SUBREAPER, on, 0) == 0, "subreaper of %d failed", id);
}

/* The root reaps its children that exited with status 2 (as session03's root does); the others
 * stay zombies. */
static void reap_status_2(void)
{
	for (int i = 1; i < nprocs; i++) {
		siginfo_t si = { 0 };
		if (!dead[i] || reaped[i])
			continue;
		/* ECHILD: not the root's child (now). */
		if (waitid(P_PID, pids[i], &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			continue;
		if (si.si_code == CLD_EXITED && si.si_status == 2) {
			CHECK(waitpid(pids[i], NULL, 0) == pids[i], "reap %d", pids[i]);
			reaped[i] = 1;
		}
	}
}

/* Process `parent` reaps process `id`. */
static void do_wait(int parent, int id)
{
	CHECK(send_cmd(parent, OP_WAIT, pids[id], 0) == 0, "%d cannot reap %d", parent, id);
	reaped[id] = 1;
}

static void do_exit(int id, int status)
{
	send_cmd(id, OP_EXIT, status, 0);
	dead[id] = 1;
	/* Until it is gone, its children are not moved to their new parent. */
	for (int i = 0; i < 1000; i++) {
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", pids[id]);
		if (read_small_file(path, buf, sizeof(buf)) <= 0)
			break;
		char *rp = strrchr(buf, ')');
		if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
			break;
		usleep(1000);
	}
	reap_status_2();
}

/* zdtm's session02, with process 0 a child of the root. */
static void session02(void)
{
	int p0 = new_proc(0, 0);
	do_subreaper(p0, 1);
	do_setsid(p0);
	int p1 = new_proc(p0, 0);
	int p2 = new_proc(p1, 0);
	do_setsid(p2);
	int p3 = new_proc(p2, 1);
	do_exit(p2, 0);
	do_wait(p1, p2);
	int p4 = new_proc(p3, 0);
	int p5 = new_proc(p4, 0);
	new_proc(p5, 0);
	int p7 = new_proc(p5, 0);
	do_setsid(p7);
	new_proc(p7, 1);
	int p9 = new_proc(p7, 1);
	do_exit(p7, 0);
	do_wait(p5, p7);
	new_proc(p9, 0);
	do_subreaper(p1, 1);
	do_exit(p9, 0);
	do_wait(p5, p9);
	do_subreaper(p1, 0);
	do_exit(p4, 0);
	do_wait(p3, p4);
	do_setsid(p1);
	do_setsid(p5);
}

/* A random history under a new child of the root, the same each run. */
static void random_history(void)
{
	int first = new_proc(0, 0);
	srand48(20261129);
	for (int step = 0; step < RANDOM_STEPS && nprocs < MAX_PROCS; step++) {
		long r = lrand48() % 31;
		int n = nprocs - first;
		int id;
		if (r < 10) {
			/* Fork: one of the most recent live processes. */
			id = first + n - 1 - lrand48() % (n < 4 ? n : 4);
			while (id > first && dead[id])
				id--;
			if (dead[id])
				continue;
			new_proc(id, lrand48() % 2 && id != first);
			continue;
		}
		id = first + lrand48() % n;
		if (dead[id])
			continue;
		if (r < 14) {
			if (id != first)
				do_exit(id, lrand48() % 2 ? 2 : 0);
		} else if (r < 24) {
			do_subreaper(id, lrand48() % 2);
		} else if (getsid(pids[id]) != pids[id]) {
			do_setsid(id);
		}
	}
}


int main(void)
{
	install_term_handler();
	SYS(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
	for (int i = 0; i < MAX_PROCS; i++) {
		int sv[2];
		SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
		ctl[i] = sv[0];
		sk[i] = sv[1];
	}
	/* Index 0 is the root: it forks by itself. */
	nprocs = 1;
	pids[0] = getpid();
	session02();
	random_history();

	static struct proc_ids before[MAX_PROCS], after[MAX_PROCS];
	int n = snapshot_tree(before, MAX_PROCS, getpid());
	int zombies = 0;
	for (int i = 0; i < n; i++)
		zombies += before[i].state == 'Z';
	status_line("INFO %d processes below the root, %d of them zombies", n, zombies);
	ready();
	wait_term();

	int m = snapshot_tree(after, MAX_PROCS, getpid());
	check_same_tree(before, n, after, m);
	/* Every live process still runs its loop and answers. */
	for (int i = 1; i < nprocs; i++)
		if (!dead[i])
			CHECK(send_cmd(i, OP_PING, 0, 0) == pids[i], "process %d (pid %d) does not answer",
			      i, pids[i]);
	for (int i = 0; i < n; i++)
		kill(after[i].pid, SIGKILL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return pass();
}
