/*
 * timers: interval timers and POSIX timers keep running across checkpoint/restore.
 * setitimer ITIMER_REAL (1000 s, interval 2000 s), ITIMER_VIRTUAL (1100 s, interval 1200 s) and
 * ITIMER_PROF (1300 s, interval 1400 s); timer_create CLOCK_MONOTONIC/SIGEV_SIGNAL SIGUSR1 with
 * value 0x1234 armed at 1000 s with a 500 s interval; a second POSIX timer (CLOCK_REALTIME) left
 * disarmed. After SIGTERM: the intervals are unchanged, every remaining value is > 0, <= the
 * original (+1 s for CPU-time rounding) and >= the original - 120 s, the disarmed timer is still
 * disarmed, the timer ids still work and /proc/self/timers (ids, signals, clocks) reads as
 * before. No timer signal may have fired.
 */
#include "scenario.h"
#include <sys/time.h>

static volatile int fired;

static void on_timer(int sig)
{
	(void)sig;
	fired++;
}

static const struct {
	int which;
	const char *name;
	long value, interval;
} itimers[] = {
	{ ITIMER_REAL, "ITIMER_REAL", 1000, 2000 },
	{ ITIMER_VIRTUAL, "ITIMER_VIRTUAL", 1100, 1200 },
	{ ITIMER_PROF, "ITIMER_PROF", 1300, 1400 },
};

#define SLACK_NS (120LL * 1000000000LL)

static void check_left(const char *what, long long left_ns, long long orig_ns)
{
	CHECK(left_ns > 0, "%s: %lld ns left, timer disarmed or expired", what, left_ns);
	/* The CPU-time itimers round up to the tick: allow 1 s above. */
	CHECK(left_ns <= orig_ns + 1000000000LL, "%s: %lld ns left, more than the %lld ns set", what,
	      left_ns, orig_ns);
	CHECK(left_ns >= orig_ns - SLACK_NS, "%s: only %lld ns left of %lld ns", what, left_ns,
	      orig_ns);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * /proc/self/timers as one line per timer ("ID: 0 signal: ... ClockID: 1"), sorted: the kernel
 * lists timers in an order of its own, which is not part of the state.
 */
static void read_timers(char *out, size_t size)
{
	static char raw[4096];
	char *blocks[16];
	int n = 0;
	CHECK(read_small_file("/proc/self/timers", raw, sizeof(raw)) >= 0, "read /proc/self/timers");
	for (char *p = strstr(raw, "ID:"); p && n < 16; p = strstr(p + 1, "\nID:")) {
		if (*p == '\n')
			*p++ = 0;
		blocks[n++] = p;
	}
	for (int i = 0; i < n; i++) {
		for (char *c = blocks[i]; *c; c++)
			if (*c == '\n')
				*c = ' ';
		for (size_t l = strlen(blocks[i]); l && blocks[i][l - 1] == ' ';)
			blocks[i][--l] = 0;
	}
	qsort(blocks, n, sizeof(blocks[0]), cmp_str);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		strncat(out, blocks[i], size - strlen(out) - 2);
		strcat(out, ";");
	}
}

int main(void)
{
	install_term_handler();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_timer;
	SYS(sigaction(SIGALRM, &sa, NULL));
	SYS(sigaction(SIGVTALRM, &sa, NULL));
	SYS(sigaction(SIGPROF, &sa, NULL));
	SYS(sigaction(SIGUSR1, &sa, NULL));

	for (int i = 0; i < 3; i++) {
		struct itimerval it = { { itimers[i].interval, 0 }, { itimers[i].value, 0 } };
		SYS(setitimer(itimers[i].which, &it, NULL));
	}
	timer_t mono, real;
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGUSR1;
	sev.sigev_value.sival_int = 0x1234;
	SYS(timer_create(CLOCK_MONOTONIC, &sev, &mono));
	sev.sigev_signo = SIGUSR2;
	SYS(timer_create(CLOCK_REALTIME, &sev, &real));
	struct itimerspec its = { { 500, 0 }, { 1000, 0 } };
	SYS(timer_settime(mono, 0, &its, NULL));

	static char timers_before[4096], timers_after[4096];
	read_timers(timers_before, sizeof(timers_before));

	ready();
	wait_term();

	for (int i = 0; i < 3; i++) {
		struct itimerval it;
		SYS(getitimer(itimers[i].which, &it));
		CHECK(it.it_interval.tv_sec == itimers[i].interval && it.it_interval.tv_usec == 0,
		      "%s interval is %ld.%06ld s", itimers[i].name, (long)it.it_interval.tv_sec,
		      (long)it.it_interval.tv_usec);
		check_left(itimers[i].name,
			   it.it_value.tv_sec * 1000000000LL + it.it_value.tv_usec * 1000LL,
			   itimers[i].value * 1000000000LL);
	}
	struct itimerspec cur;
	CHECK(timer_gettime(mono, &cur) == 0, "timer_gettime(monotonic timer): %s", strerror(errno));
	CHECK(cur.it_interval.tv_sec == 500 && cur.it_interval.tv_nsec == 0,
	      "POSIX timer interval %ld.%09ld s", (long)cur.it_interval.tv_sec,
	      (long)cur.it_interval.tv_nsec);
	check_left("POSIX timer", cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec,
		   1000 * 1000000000LL);
	CHECK(timer_gettime(real, &cur) == 0, "timer_gettime(realtime timer): %s", strerror(errno));
	CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0 && cur.it_interval.tv_sec == 0,
	      "disarmed POSIX timer is armed: %ld s", (long)cur.it_value.tv_sec);
	CHECK(timer_getoverrun(mono) == 0, "POSIX timer overrun %d", timer_getoverrun(mono));
	read_timers(timers_after, sizeof(timers_after));
	CHECK(strcmp(timers_before, timers_after) == 0, "/proc/self/timers now:\n%s\nexpected:\n%s",
	      timers_after, timers_before);
	CHECK(fired == 0, "a timer signal fired %d times", fired);
	return pass();
}
