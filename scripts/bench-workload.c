/* Benchmark workload: holds N MiB of distinct pseudo-random data, says READY on stdout, then
 * sleeps until SIGTERM, when it checks its data and prints PASS or FAIL. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static uint64_t fill(uint64_t *p, size_t n, uint64_t seed, int check) {
	uint64_t x = seed, h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		if (check) { if (p[i] != x) return 0; } else p[i] = x;
		h = (h ^ x) * 1099511628211ull;
	}
	return h;
}

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	size_t n = mib << 17; /* u64 words */
	uint64_t *p = malloc(n * 8);
	if (!p) { perror("malloc"); return 1; }
	uint64_t h = fill(p, n, 0x9e3779b97f4a7c15ull, 0);
	signal(SIGTERM, on_term);
	printf("READY %zu MiB\n", mib);
	fflush(stdout);
	while (!stop) pause();
	uint64_t h2 = fill(p, n, 0x9e3779b97f4a7c15ull, 1);
	printf(h2 == h ? "PASS\n" : "FAIL data changed\n");
	return h2 == h ? 0 : 1;
}
