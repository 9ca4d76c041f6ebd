/*
 * Workload of scripts/bench-tree.
 *
 *   bench-tree-workload procs N MIB    N processes (the root and N-1 children), each with MIB
 *                                      MiB of its own distinct data
 *   bench-tree-workload threads N      one process with N threads (the main one included)
 *
 * Prints READY once set up. On SIGTERM the root checks its data, tells the others to check
 * theirs, collects the answers and prints PASS or FAIL.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ (i + 1) * 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 29);
}

static uint64_t *fill(uint64_t seed, size_t bytes)
{
	uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(2);
	for (size_t i = 0; i < bytes / 8; i++)
		p[i] = word(seed, i);
	return p;
}

static int check(const uint64_t *p, uint64_t seed, size_t bytes)
{
	for (size_t i = 0; i < bytes / 8; i++)
		if (p[i] != word(seed, i))
			return 1;
	return 0;
}

static pthread_barrier_t end;
static volatile int thread_failed;
static void *thread_main(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg;
	uint64_t mine[64];
	for (int i = 0; i < 64; i++)
		mine[i] = word(seed, i);
	pthread_barrier_wait(&end); /* set up */
	pthread_barrier_wait(&end); /* check now */
	for (int i = 0; i < 64; i++)
		if (mine[i] != word(seed, i))
			thread_failed = 1;
	pthread_barrier_wait(&end); /* done */
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	int n = atoi(argv[2]);
	if (!strcmp(argv[1], "threads")) {
		pthread_barrier_init(&end, NULL, n);
		for (int i = 1; i < n; i++) {
			pthread_t t;
			pthread_attr_t a;
			pthread_attr_init(&a);
			pthread_attr_setstacksize(&a, 64 << 10);
			if (pthread_create(&t, &a, thread_main, (void *)(uintptr_t)i))
				return 3;
		}
		pthread_barrier_wait(&end);
		printf("READY\n");
		fflush(stdout);
		while (!got_term)
			pause();
		pthread_barrier_wait(&end);
		pthread_barrier_wait(&end);
		printf(thread_failed ? "FAIL\n" : "PASS\n");
		return thread_failed;
	}
	size_t bytes = (size_t)atoi(argv[3]) << 20;
	int go[2], up[2];
	if (pipe(go) || pipe(up))
		return 2;
	pid_t *kids = calloc(n, sizeof(pid_t));
	for (int i = 1; i < n; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			uint64_t *p = fill(i, bytes);
			close(go[1]);
			if (write(up[1], "r", 1) != 1)
				_exit(4);
			char c;
			while (read(go[0], &c, 1) != 1)
				;
			_exit(check(p, i, bytes));
		}
	}
	close(go[0]);
	uint64_t *p = fill(0, bytes);
	for (int i = 1; i < n; i++) {
		char c;
		if (read(up[0], &c, 1) != 1)
			return 4;
	}
	printf("READY\n");
	fflush(stdout);
	while (!got_term)
		pause();
	int bad = check(p, 0, bytes);
	for (int i = 1; i < n; i++)
		if (write(go[1], "g", 1) != 1)
			bad = 1;
	for (int i = 1; i < n; i++) {
		int st;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	}
	printf(bad ? "FAIL\n" : "PASS\n");
	return bad;
}
