/*
 * coredump_target READY_FILE DATA_FILE: not a scenario (it does not speak the status
 * protocol); the program tests/crit_core_dump.rs dumps and then opens as a core file in gdb.
 *
 * It makes itself a session leader with no descriptors beyond 0-2 (so cryo can dump it alone),
 * then builds state of every kind gdb can show from a core: initialised and zero-initialised
 * globals, a thread-local per thread, a linked list and a buffer on the heap, a large malloc'd
 * (mmap'd) block, a private mapping of DATA_FILE with one page written and the others not,
 * shared anonymous memory, locals and arguments in nested frames, and vector registers with
 * known values. Then the main thread blocks in pause() four frames deep and a second thread in
 * read() on a pipe, both inside restartable syscalls. READY_FILE gets our pid once the worker
 * sleeps in read(); the main thread then sets xmm9/xmm10 (and, with AVX-512, zmm15, zmm16,
 * zmm31, k1 and k7: see set_avx512) and calls pause(), so the harness waits for
 * /proc/PID/syscall to show pause (34) too. Build with -g -O0.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct node {
	int id;
	double weight;
	char label[16];
	struct node *next;
};

int g_counter = 7;                    /* .data */
long g_zero;                          /* .bss, never written: zero from the core */
long g_set_later;                     /* .bss, written */
const char *g_greeting = "hello from the checkpoint";
__thread int tls_value = 11;
struct node *g_list;
unsigned char *g_heap;
unsigned char *g_big;
unsigned char *g_mapped;
unsigned int *g_shared;
static int g_pipe[2];
static volatile pid_t g_worker_tid;

static struct node *make_list(int n)
{
	struct node *head = NULL;
	for (int i = n; i > 0; i--) {
		struct node *x = malloc(sizeof(*x));
		x->id = i;
		x->weight = i * 1.5;
		snprintf(x->label, sizeof(x->label), "node-%d", i);
		x->next = head;
		head = x;
	}
	return head;
}

static void worker_wait(int id, const char *why)
{
	char byte;
	int got = 0;
	tls_value = 1000 + id;
	g_worker_tid = gettid();
	/* Nothing is ever written to the pipe: read() blocks until the process dies. */
	got = read(g_pipe[0], &byte, 1);
	printf("worker %d woke up (%s): %d\n", id, why, got);
}

static void *worker(void *arg)
{
	worker_wait((int)(intptr_t)arg, "pipe");
	return NULL;
}

static void write_ready(const char *path)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%d\n", getpid());
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, n) != n || close(fd) || rename(tmp, path)) {
		perror("coredump_target: write ready file");
		exit(2);
	}
}

/* AVX-512F usable: the CPU has it and the kernel enabled opmask, ZMM_Hi256 and Hi16_ZMM (and
 * SSE and AVX) in XCR0. */
static int have_avx512(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX512F))
		return 0;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 0xe6) == 0xe6;
}

/* Lane i of zmm r: 0x5a5a000000000000 | r << 8 | i (the harness expects these). */
static uint64_t g_zmm_pattern[3][8];

/* One component each of the AVX-512 state with known, non-zero values: zmm15 (its upper half is
 * in ZMM_Hi256), zmm16 and zmm31 (Hi16_ZMM), k1 and k7 (opmask). The assembler takes the
 * instructions without -mavx512f; they run only when have_avx512(). The registers are not
 * named as clobbers (gcc knows them only with -mavx512f); at -O0 it uses none of them. */
static void set_avx512(void)
{
	int regs[3] = {15, 16, 31};
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < 8; i++)
			g_zmm_pattern[r][i] = 0x5a5a000000000000ull | (uint64_t)regs[r] << 8 | i;
	__asm__ volatile("vmovdqu64 0(%0), %%zmm15\n\t"
			 "vmovdqu64 64(%0), %%zmm16\n\t"
			 "vmovdqu64 128(%0), %%zmm31\n\t"
			 "kmovw %1, %%k1\n\t"
			 "kmovw %2, %%k7"
			 :
			 : "r"(g_zmm_pattern), "r"(0xa5c3), "r"(0x1234)
			 : "xmm15", "memory");
}

static void level3(int depth, const char *tag, const char *ready)
{
	int local3 = depth * 100 + 3;
	const char *where = tag;
	write_ready(ready);
	/* Known values in vector registers; nothing on the way into pause() touches them. */
	__asm__ volatile("movq %0, %%xmm9\n\tmovq %1, %%xmm10"
			 :
			 : "r"(0x1122334455667788ull), "r"(0x0badc0ffee0ddf00ull)
			 : "xmm9", "xmm10");
	if (have_avx512())
		set_avx512();
	for (;;)
		pause();
	(void)local3;
	(void)where;
}

static void level2(int depth, struct node *list, const char *ready)
{
	long local2 = (long)list->id * 1000 + depth;
	char word[8] = "level2";
	level3(depth + 1, word, ready);
	(void)local2;
}

static void level1(int depth, double scale, const char *ready)
{
	double local1 = scale * 2.0;
	struct node *first = g_list;
	level2(depth + 1, first, ready);
	(void)local1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: coredump_target READY_FILE DATA_FILE\n");
		return 2;
	}
	/* Alone: no inherited descriptors, a session of its own. */
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	setsid();

	g_set_later = 0x5eed;
	g_list = make_list(3);
	g_heap = malloc(64);
	for (int i = 0; i < 64; i++)
		g_heap[i] = (unsigned char)(i * 3 + 1);
	g_big = malloc(1 << 20); /* large enough for its own mmap */
	memset(g_big, 0, 1 << 20);
	memcpy(g_big + 100000, "BIGDATA", 8);

	int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror("coredump_target: open data file");
		return 2;
	}
	g_mapped = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (g_mapped == MAP_FAILED) {
		perror("coredump_target: mmap data file");
		return 2;
	}
	/* Page 1 becomes a private copy; pages 0 and 2 stay the file's. */
	memcpy(g_mapped + 4096, "WRITTEN", 8);

	g_shared = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g_shared == MAP_FAILED) {
		perror("coredump_target: mmap shared");
		return 2;
	}
	for (int i = 0; i < 16; i++)
		g_shared[i] = 0xc0de0000u + i;

	if (pipe(g_pipe)) {
		perror("coredump_target: pipe");
		return 2;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, worker, (void *)(intptr_t)2)) {
		fprintf(stderr, "coredump_target: pthread_create failed\n");
		return 2;
	}
	tls_value = 22;
	/* The worker must be asleep in read() (syscall 0) before READY. */
	for (int i = 0; i < 5000; i++) {
		char path[64], state[64] = "";
		usleep(1000);
		if (!g_worker_tid)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)g_worker_tid);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		int in_read = fgets(state, sizeof(state), f) && !strncmp(state, "0 ", 2);
		fclose(f);
		if (in_read)
			break;
	}
	level1(1, 1.25, argv[1]);
	return 0;
}
