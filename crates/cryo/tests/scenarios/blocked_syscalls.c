/*
 * blocked_syscalls VARIANT: the task is checkpointed while blocked in a system call.
 * VARIANT is one of nanosleep, futex, sigsuspend, poll, read_tty. The main loop blocks in the
 * call with a 1000 s timeout (measured from READY on CLOCK_MONOTONIC); an interruption without
 * SIGTERM (EINTR, as a restore may give) is counted and the call re-entered for the time left.
 * Fails if the call ever returns "done" (timeout, data, futex value changed) before its deadline.
 * After SIGTERM the call must still work: a 50 ms timeout must expire after >= 45 ms (not for
 * sigsuspend/read_tty, which have none), and a SIGALRM from a 100 ms timer must interrupt a 10 s
 * call with EINTR within 5 s. read_tty needs a terminal on stdin, else it prints SKIP.
 */
#include "scenario.h"
#include <linux/futex.h>
#include <poll.h>
#include <termios.h>
#include <sys/syscall.h>
#include <sys/time.h>

static const char *variant;
static volatile sig_atomic_t got_alarm;
static uint32_t futex_word;

static void on_alarm(int sig)
{
	(void)sig;
	got_alarm = 1;
}

enum outcome { DONE, INTERRUPTED };

/* Block in the variant's call for at most timeout_ms (-1: the call has no timeout). */
static enum outcome block(long timeout_ms)
{
	struct timespec ts = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
	long rc;
	if (!strcmp(variant, "nanosleep")) {
		rc = nanosleep(&ts, NULL);
	} else if (!strcmp(variant, "futex")) {
		rc = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
		if (rc < 0 && errno == ETIMEDOUT)
			return DONE;
		if (rc == 0 || errno == EAGAIN)
			fail("futex wait returned %ld (%s) though the word is still 0", rc,
			     strerror(errno));
	} else if (!strcmp(variant, "sigsuspend")) {
		sigset_t m;
		sigemptyset(&m);
		rc = sigsuspend(&m);
	} else if (!strcmp(variant, "poll")) {
		rc = poll(NULL, 0, (int)timeout_ms);
	} else {
		char c;
		rc = read(0, &c, 1);
		if (rc >= 0)
			fail("read from the tty returned %ld", rc);
	}
	if (rc < 0 && errno != EINTR)
		fail("%s: %s", variant, strerror(errno));
	return rc < 0 ? INTERRUPTED : DONE;
}

int main(int argc, char **argv)
{
	variant = argc > 1 ? argv[1] : "";
	const char *known[] = { "nanosleep", "futex", "sigsuspend", "poll", "read_tty" };
	int ok = 0;
	for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		ok |= !strcmp(variant, known[i]);
	if (!ok)
		fail("unknown variant \"%s\"", variant);
	int has_timeout = strcmp(variant, "sigsuspend") && strcmp(variant, "read_tty");
	if (!strcmp(variant, "read_tty") && !isatty(0))
		skip("blocked_syscalls read_tty", "no tty on stdin");

	install_term_handler();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	SYS(sigaction(SIGALRM, &sa, NULL));

	long wakeups = 0;
	int64_t deadline = mono_ns() + 1000LL * 1000000000LL;
	ready();
	while (!got_term) {
		int64_t left_ms = (deadline - mono_ns()) / 1000000;
		CHECK(left_ms > 0, "no SIGTERM within 1000 s");
		enum outcome o = block(has_timeout ? left_ms : -1);
		if (o == DONE && has_timeout && mono_ns() < deadline - 1000000)
			fail("%s returned done %lld ms before its deadline", variant,
			     (long long)((deadline - mono_ns()) / 1000000));
		if (o == INTERRUPTED && !got_term)
			wakeups++;
	}

	/* The call still works: it times out... */
	if (has_timeout) {
		int64_t t0 = mono_ns();
		enum outcome o = block(50);
		int64_t took = (mono_ns() - t0) / 1000000;
		CHECK(o == DONE, "%s(50 ms) was interrupted", variant);
		CHECK(took >= 45 && took < 5000, "%s(50 ms) took %lld ms", variant, (long long)took);
	}
	/* ...and is interrupted by a signal. */
	struct itimerval it = { { 0, 0 }, { 0, 100000 } };
	SYS(setitimer(ITIMER_REAL, &it, NULL));
	int64_t t0 = mono_ns();
	enum outcome o = block(has_timeout ? 10000 : -1);
	int64_t took = (mono_ns() - t0) / 1000000;
	CHECK(o == INTERRUPTED && got_alarm, "%s was not interrupted by SIGALRM", variant);
	CHECK(took < 5000, "%s took %lld ms to see SIGALRM", variant, (long long)took);
	if (!strcmp(variant, "read_tty")) {
		/* The terminal is still this session's controlling terminal, in the foreground. */
		CHECK(tcgetsid(0) == getsid(0), "stdin's session is %d, ours %d", (int)tcgetsid(0), (int)getsid(0));
		CHECK(tcgetpgrp(0) == getpgrp(), "the terminal's foreground group is %d, ours %d", (int)tcgetpgrp(0),
		      (int)getpgrp());
	}
	status_line("INFO %s: %ld spurious wakeups", variant, wakeups);
	return pass();
}
