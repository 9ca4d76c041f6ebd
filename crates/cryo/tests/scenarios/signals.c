/*
 * signals: signal dispositions, the blocked mask, pending signals and the alternate stack.
 * Setup: handlers with different flags and masks (SA_SIGINFO, SA_RESTART, SA_ONSTACK,
 * SA_NODEFER|SA_RESETHAND), SIGHUP ignored; SIGUSR1, SIGINT, SIGRTMIN+2, SIGPIPE blocked;
 * pending: SIGUSR1 raised at the thread (tgkill), SIGINT sent to the process (kill), SIGRTMIN+2
 * queued twice with sigqueue() values 0xc0ffee then 0xbeef; a 64 KiB sigaltstack.
 * After SIGTERM: the kernel's sigaction of every signal 1..64 (handler, flags, restorer, mask)
 * and the blocked mask equal the ones read before READY; the three signals are pending (thread
 * and process lists as in /proc/self/status); the alternate stack is the same. Then the mask is
 * cleared and the handlers must run: SIGUSR1 once with SI_TKILL, SIGINT once with SI_USER,
 * SIGRTMIN+2 twice with SI_QUEUE and the two values in order, all from this pid, the SA_ONSTACK
 * ones on the alternate stack.
 */
#include "scenario.h"
#include <sys/syscall.h>

struct ksigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

#define ALTSTACK_SIZE (64 * 1024)
static char altstack[ALTSTACK_SIZE];

static volatile int usr1_runs, int_runs, rt_runs, usr1_code, int_code, usr1_pid;
static volatile int rt_values[4], rt_codes[4], rt_pids[4], rt_onstack[4], usr1_onstack;

static int on_altstack(void)
{
	char here;
	return &here >= altstack && &here < altstack + ALTSTACK_SIZE;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	usr1_runs++;
	usr1_code = si->si_code;
	usr1_pid = si->si_pid;
	usr1_onstack = on_altstack();
}

static void on_int(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	int_runs++;
	int_code = si->si_code;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	int i = rt_runs++;
	if (i < 4) {
		rt_values[i] = si->si_value.sival_int;
		rt_codes[i] = si->si_code;
		rt_pids[i] = si->si_pid;
		rt_onstack[i] = on_altstack();
	}
}

static void on_plain(int sig)
{
	(void)sig;
}

static void set(int sig, void *handler, int flags, int mask_sig1, int mask_sig2)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (mask_sig1)
		sigaddset(&sa.sa_mask, mask_sig1);
	if (mask_sig2)
		sigaddset(&sa.sa_mask, mask_sig2);
	if (sigaction(sig, &sa, NULL))
		fail("sigaction(%d): %s", sig, strerror(errno));
}

static void read_actions(struct ksigaction *acts)
{
	for (int sig = 1; sig <= 64; sig++) {
		memset(&acts[sig], 0, sizeof(acts[sig]));
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		SYS(syscall(SYS_rt_sigaction, sig, NULL, &acts[sig], 8));
	}
}

static uint64_t read_mask(void)
{
	uint64_t m = 0;
	SYS(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8));
	return m;
}

/* "SigPnd:" / "ShdPnd:" / "SigBlk:" lines of /proc/self/status (not SigQ: it counts per user). */
static void read_status_sigs(char *out, size_t size)
{
	static char st[16384];
	CHECK(read_small_file("/proc/self/status", st, sizeof(st)) > 0, "read /proc/self/status");
	out[0] = 0;
	for (char *l = strtok(st, "\n"); l; l = strtok(NULL, "\n"))
		if (!strncmp(l, "SigPnd:", 7) || !strncmp(l, "ShdPnd:", 7) ||
		    !strncmp(l, "SigBlk:", 7)) {
			strncat(out, l, size - strlen(out) - 2);
			strcat(out, " ");
		}
}

#define BIT(sig) (1ULL << ((sig) - 1))

int main(void)
{
	install_term_handler();
	int rt = SIGRTMIN + 2;
	set(SIGUSR1, on_usr1, SA_SIGINFO | SA_RESTART | SA_ONSTACK, SIGUSR2, SIGHUP);
	set(SIGINT, on_int, SA_SIGINFO, SIGQUIT, 0);
	set(rt, on_rt, SA_SIGINFO | SA_ONSTACK, SIGINT, SIGRTMIN + 5);
	set(SIGUSR2, on_plain, SA_RESTART, 0, 0);
	set(SIGQUIT, on_plain, SA_NODEFER | SA_RESETHAND, SIGUSR1, 0);
	set(SIGRTMAX, on_plain, 0, SIGRTMIN, 0);
	set(SIGHUP, SIG_IGN, 0, 0, 0);

	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
	SYS(sigaltstack(&ss, NULL));

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGINT);
	sigaddset(&block, rt);
	sigaddset(&block, SIGPIPE);
	SYS(sigprocmask(SIG_BLOCK, &block, NULL));

	SYS(raise(SIGUSR1));
	SYS(kill(getpid(), SIGINT));
	SYS(sigqueue(getpid(), rt, (union sigval){ .sival_int = 0xc0ffee }));
	SYS(sigqueue(getpid(), rt, (union sigval){ .sival_int = 0xbeef }));

	static struct ksigaction before[65], after[65];
	read_actions(before);
	uint64_t mask_before = read_mask();
	char st_before[512], st_after[512];
	read_status_sigs(st_before, sizeof(st_before));

	ready();
	wait_term();

	read_actions(after);
	for (int sig = 1; sig <= 64; sig++) {
		struct ksigaction *b = &before[sig], *a = &after[sig];
		CHECK(a->handler == b->handler, "signal %d: handler %p, expected %p", sig, a->handler,
		      b->handler);
		CHECK(a->flags == b->flags, "signal %d: flags %#lx, expected %#lx", sig, a->flags,
		      b->flags);
		CHECK(a->restorer == b->restorer, "signal %d: restorer %p, expected %p", sig,
		      a->restorer, b->restorer);
		CHECK(a->mask == b->mask, "signal %d: sa_mask %#llx, expected %#llx", sig,
		      (unsigned long long)a->mask, (unsigned long long)b->mask);
	}
	uint64_t mask = read_mask();
	CHECK(mask == mask_before, "blocked mask %#llx, expected %#llx", (unsigned long long)mask,
	      (unsigned long long)mask_before);
	read_status_sigs(st_after, sizeof(st_after));
	CHECK(strcmp(st_before, st_after) == 0, "pending/blocked: \"%s\", expected \"%s\"", st_after,
	      st_before);
	sigset_t pend;
	SYS(sigpending(&pend));
	CHECK(sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGINT) && sigismember(&pend, rt),
	      "sigpending lost a signal");
	stack_t cur;
	SYS(sigaltstack(NULL, &cur));
	CHECK(cur.ss_sp == altstack && cur.ss_size == ALTSTACK_SIZE && cur.ss_flags == 0,
	      "sigaltstack is sp=%p size=%zu flags=%d", cur.ss_sp, cur.ss_size, cur.ss_flags);

	/* Deliver. */
	sigset_t none;
	sigemptyset(&none);
	SYS(sigprocmask(SIG_SETMASK, &none, NULL));

	CHECK(usr1_runs == 1, "SIGUSR1 handler ran %d times", usr1_runs);
	CHECK(usr1_code == SI_TKILL, "SIGUSR1 si_code %d, expected SI_TKILL", usr1_code);
	CHECK(usr1_pid == getpid(), "SIGUSR1 si_pid %d, expected %d", usr1_pid, getpid());
	CHECK(usr1_onstack, "SIGUSR1 handler did not run on the alternate stack");
	CHECK(int_runs == 1, "SIGINT handler ran %d times", int_runs);
	CHECK(int_code == SI_USER, "SIGINT si_code %d, expected SI_USER", int_code);
	CHECK(rt_runs == 2, "SIGRTMIN+2 handler ran %d times", rt_runs);
	int want[2] = { 0xc0ffee, 0xbeef };
	for (int i = 0; i < 2; i++) {
		CHECK(rt_values[i] == want[i], "SIGRTMIN+2 #%d value %#x, expected %#x", i,
		      rt_values[i], want[i]);
		CHECK(rt_codes[i] == SI_QUEUE, "SIGRTMIN+2 #%d si_code %d", i, rt_codes[i]);
		CHECK(rt_pids[i] == getpid(), "SIGRTMIN+2 #%d si_pid %d", i, rt_pids[i]);
		CHECK(rt_onstack[i], "SIGRTMIN+2 #%d not on the alternate stack", i);
	}
	return pass();
}
