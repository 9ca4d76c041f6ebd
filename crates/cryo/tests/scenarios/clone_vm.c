/*
 * clone_vm: a child that shares its parent's address space and signal handlers without being
 * a thread of it (clone(2) with CLONE_VM | CLONE_SIGHAND, no CLONE_THREAD), as vfork children
 * and some runtimes make them.
 *
 * The child is a process of its own (its own PID, parent, exit status) that keeps counting in
 * memory it shares with the parent. After SIGTERM the parent checks the two still share one
 * address space and one set of handlers: kcmp says so, a page the parent maps now is seen and
 * written by the child, a handler the parent installs now is the child's too, and the child
 * still counts. Then the child is told to exit with a known status, which the parent collects.
 *
 * The child runs on a stack of its own but shares the parent's TLS (no CLONE_SETTLS): it makes
 * raw syscalls only, never touching errno or anything of libc's.
 */
#include "scenario.h"
#include <linux/kcmp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define STACK_BYTES (64 << 10)
#define CHILD_STATUS 42
#define MAGIC 0x5eed1e55c0ffee00ULL

/* Shared by construction: one address space. */
static volatile uint64_t counter;
static volatile uint64_t *volatile probe;
static volatile uint64_t probe_seen;
static volatile int child_exit;
static char stack[STACK_BYTES] __attribute__((aligned(16)));

static void on_usr1(int sig)
{
	(void)sig;
}

static int child_main(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 1000000 };
	for (;;) {
		counter++;
		uint64_t *p = (uint64_t *)probe;
		if (p && !probe_seen) {
			probe_seen = *p;
			*p = ~*p;
		}
		if (child_exit)
			syscall(SYS_exit, CHILD_STATUS);
		syscall(SYS_nanosleep, &ts, NULL);
	}
	return 0;
}

int main(void)
{
	install_term_handler();
	pid_t child = clone(child_main, stack + sizeof(stack), CLONE_VM | CLONE_SIGHAND | SIGCHLD,
			    NULL);
	CHECK(child > 0, "clone: %s", strerror(errno));
	while (counter < 5)
		sleep_ms(1);
	ready();
	wait_term();

	pid_t me = getpid();
	CHECK(syscall(SYS_kcmp, me, child, KCMP_VM, 0, 0) == 0,
	      "child %d no longer shares the address space", child);
	CHECK(syscall(SYS_kcmp, me, child, KCMP_SIGHAND, 0, 0) == 0,
	      "child %d no longer shares the signal handlers", child);

	uint64_t c0 = counter;
	sleep_ms(50);
	CHECK(counter > c0, "the child stopped counting (%llu)", (unsigned long long)c0);

	/* A page mapped now exists for the child too only if the address space is one. */
	uint64_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(page != MAP_FAILED, "mmap: %s", strerror(errno));
	*page = MAGIC;
	probe = page;
	int64_t deadline = mono_ns() + 5000000000LL;
	while (!probe_seen && mono_ns() < deadline)
		sleep_ms(1);
	CHECK(probe_seen == MAGIC, "the child read %#llx from the new page, not %#llx",
	      (unsigned long long)probe_seen, (unsigned long long)MAGIC);
	CHECK(*page == ~MAGIC, "the child's write to the new page is not seen (%#llx)",
	      (unsigned long long)*page);

	/* One table of handlers: installing one here installs it for the child. */
	struct sigaction sa = { .sa_handler = on_usr1 };
	SYS(sigaction(SIGUSR1, &sa, NULL));
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", child);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "child %d is gone", child);
	char *cgt = strstr(buf, "SigCgt:");
	CHECK(cgt, "no SigCgt in %s", path);
	unsigned long long caught = strtoull(cgt + 7, NULL, 16);
	CHECK(caught & (1ULL << (SIGUSR1 - 1)), "the child does not share the new SIGUSR1 handler");

	child_exit = 1;
	int status;
	CHECK(waitpid(child, &status, __WALL) == child, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_STATUS,
	      "the child ended with status %#x", status);
	return pass();
}
