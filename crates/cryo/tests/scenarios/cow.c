/*
 * cow: forked workers sharing the parent's memory copy-on-write. The parent fills 256 MiB of
 * private anonymous memory with distinct pages, then forks WORKERS workers. Each worker
 * rewrites a few pages of its own (those are no longer shared) and waits on a pipe.
 *
 * At READY the parent records the total PSS of the tree (its own and every worker's
 * /proc/PID/smaps_rollup). After SIGTERM it measures again: the ratio after/before must be at
 * most 1.1, so pages that were shared before a checkpoint must be shared after the restore
 * (restoring each worker's copy separately gives about WORKERS + 1 times the memory). Then the
 * workers are told to check their memory (the parent's pages plus their own changes), and the
 * parent checks its own.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define SHARED_BYTES (256UL << 20)
#define PAGE 4096UL
#define WORKERS 2
#define OWN_PAGES 64

static unsigned char *mem;

static uint64_t page_word(uint64_t page, uint64_t word, uint64_t salt)
{
	uint64_t x = (page + 1) * 0x9e3779b97f4a7c15ULL ^ (word + 1) * 0xbf58476d1ce4e5b9ULL ^ salt;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebULL;
}

static void fill_page(uint64_t page, uint64_t salt)
{
	uint64_t *w = (uint64_t *)(mem + page * PAGE);
	for (uint64_t i = 0; i < PAGE / 8; i++)
		w[i] = page_word(page, i, salt);
}

/* The page a worker changed has its own salt; every other one is the parent's. */
static int check_memory(int worker)
{
	for (uint64_t p = 0; p < SHARED_BYTES / PAGE; p++) {
		uint64_t salt = 0;
		if (worker > 0 && p % (SHARED_BYTES / PAGE / OWN_PAGES) == (uint64_t)worker)
			salt = (uint64_t)worker;
		const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
		for (uint64_t i = 0; i < PAGE / 8; i++)
			if (w[i] != page_word(p, i, salt))
				return (int)(p + 1);
	}
	return 0;
}

static void worker_main(int worker, int go)
{
	for (uint64_t n = 0; n < OWN_PAGES; n++)
		fill_page(n * (SHARED_BYTES / PAGE / OWN_PAGES) + (uint64_t)worker, (uint64_t)worker);
	char c;
	/* The parent writes one byte per worker once it has measured. */
	while (read(go, &c, 1) != 1)
		if (errno != EINTR)
			_exit(3);
	_exit(check_memory(worker) ? 1 : 0);
}

/* Total PSS in KiB of the given processes. */
static long tree_pss_kib(const pid_t *pids, int n)
{
	long total = 0;
	char path[64], buf[4096];
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pids[i]);
		CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "read %s", path);
		char *pss = strstr(buf, "\nPss:");
		CHECK(pss, "no Pss in %s", path);
		total += strtol(pss + 5, NULL, 10);
	}
	return total;
}

int main(void)
{
	install_term_handler();
	mem = mmap(NULL, SHARED_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	for (uint64_t p = 0; p < SHARED_BYTES / PAGE; p++)
		fill_page(p, 0);
	int pipefd[2];
	SYS(pipe(pipefd));
	pid_t pids[WORKERS + 1];
	pids[0] = getpid();
	for (int w = 1; w <= WORKERS; w++) {
		pid_t pid = SYS(fork());
		if (pid == 0) {
			close(pipefd[1]);
			worker_main(w, pipefd[0]);
		}
		pids[w] = pid;
	}
	close(pipefd[0]);
	/* Let the workers write their own pages before measuring. */
	sleep_ms(300);
	long before = tree_pss_kib(pids, WORKERS + 1);
	status_line("INFO tree PSS before: %ld KiB", before);
	CHECK(before < (long)(SHARED_BYTES >> 10) * 3 / 2,
	      "the memory is not shared to begin with (PSS %ld KiB)", before);
	ready();
	wait_term();
	long after = tree_pss_kib(pids, WORKERS + 1);
	status_line("INFO tree PSS after: %ld KiB (ratio %.3f)", after, (double)after / before);
	for (int w = 1; w <= WORKERS; w++)
		CHECK(write(pipefd[1], "g", 1) == 1, "tell the workers: %s", strerror(errno));
	int bad = check_memory(0);
	CHECK(!bad, "parent page %d changed", bad - 1);
	for (int w = 1; w <= WORKERS; w++) {
		int st;
		CHECK(waitpid(pids[w], &st, 0) == pids[w], "waitpid %d: %s", pids[w], strerror(errno));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d: status %#x", w, st);
	}
	CHECK(after * 10 <= before * 11, "PSS grew from %ld to %ld KiB: pages are no longer shared",
	      before, after);
	return pass();
}
