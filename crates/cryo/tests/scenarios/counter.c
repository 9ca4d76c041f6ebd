/*
 * counter: a busy loop increments a counter in a local and in a global variable and checks on
 * every step that they agree, that the counter only grows, and that CLOCK_MONOTONIC never goes
 * back by more than 3 s. After SIGTERM: the counter kept growing after READY (so the restored task
 * ran), and glibc's rseq area is still registered with the kernel (re-registering the same area
 * must fail with EBUSY), which covers rseq/TLS restore.
 */
#include "scenario.h"
#include <sched.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

static volatile uint64_t g_counter;

int main(void)
{
	install_term_handler();
	uint64_t local = 0;
	int64_t last = mono_ns();

	/* Count a little before READY so that "kept growing" is measurable. */
	while (local < 1000000) {
		local++;
		g_counter++;
	}
	uint64_t at_ready = local;
	ready();

	while (!got_term) {
		uint64_t before = g_counter;
		local++;
		g_counter++;
		CHECK(g_counter == before + 1, "global counter jumped from %llu to %llu",
		      (unsigned long long)before, (unsigned long long)g_counter);
		CHECK(local == g_counter, "local %llu != global %llu", (unsigned long long)local,
		      (unsigned long long)g_counter);
		if ((local & 0xffff) == 0) {
			int64_t now = mono_ns();
			CHECK(now >= last - 3000000000LL, "CLOCK_MONOTONIC went back by %lld ns",
			      (long long)(last - now));
			if (now > last)
				last = now;
			sched_yield();
		}
	}

	CHECK(local > at_ready, "counter did not grow after READY (%llu)", (unsigned long long)local);
	CHECK(local == g_counter, "local %llu != global %llu at the end", (unsigned long long)local,
	      (unsigned long long)g_counter);

	if (__rseq_size > 0) {
		struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
		long rc = syscall(SYS_rseq, rs, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
		CHECK(rc == -1 && errno == EBUSY,
		      "rseq area of glibc is no longer registered (re-register gave %ld, %s)", rc,
		      strerror(errno));
		CHECK((int)rs->cpu_id >= 0, "rseq cpu_id is %d", (int)rs->cpu_id);
	}
	return pass();
}
