/*
 * coredump_dead_leader READY_FILE: not a scenario (it does not speak the status protocol); a
 * program tests/crit_core_dump.rs dumps and then opens as a core file in gdb.
 *
 * It makes itself a session leader with no descriptors beyond 0-2 (so cryo can dump it alone),
 * sets globals and a heap block, and starts two threads: a sleeper that blocks in pause() three
 * frames deep and a reader that blocks in read() on a pipe. Once both have said their TIDs, the
 * main thread writes "PID SLEEPER_TID READER_TID" to READY_FILE and calls pthread_exit: the
 * leader is a zombie thread ('Z' in /proc/PID/task/PID/stat) while the process runs on. The
 * harness waits for that and for both threads to sleep in their syscalls. Build with -g -O0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int g_answer;        /* .bss, written by the leader */
char g_note[32];     /* .bss, written by the leader */
long *g_heap;        /* malloc'd by the leader */

static int pipe_fds[2];
static pthread_barrier_t started;
static volatile pid_t sleeper_tid, reader_tid;

static void __attribute__((noinline)) sleeper_inner(int n, const char *tag)
{
	volatile int inner_local = n * 100;
	(void)tag;
	for (;;)
		pause();
	(void)inner_local;
}

static void __attribute__((noinline)) sleeper_outer(int n)
{
	volatile int outer_local = n * 10;
	sleeper_inner(n + 1, "sleeper");
	(void)outer_local;
}

static void *sleeper(void *arg)
{
	(void)arg;
	sleeper_tid = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&started);
	sleeper_outer(2);
	return NULL;
}

static void __attribute__((noinline)) reader_loop(int fd)
{
	char c;
	volatile long got = 0;
	while (read(fd, &c, 1) == 1)
		got++;
}

static void *reader(void *arg)
{
	(void)arg;
	reader_tid = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&started);
	reader_loop(pipe_fds[0]);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s READY_FILE\n", argv[0]);
		return 2;
	}
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	setsid();
	g_answer = 4242;
	strcpy(g_note, "left by the leader");
	g_heap = malloc(4 * sizeof(long));
	if (!g_heap || pipe(pipe_fds))
		return 1;
	for (int i = 0; i < 4; i++)
		g_heap[i] = 11 * (i + 1);
	pthread_barrier_init(&started, NULL, 3);
	pthread_t t;
	if (pthread_create(&t, NULL, sleeper, NULL) || pthread_create(&t, NULL, reader, NULL))
		return 1;
	pthread_barrier_wait(&started);
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return 1;
	fprintf(f, "%d %d %d\n", getpid(), sleeper_tid, reader_tid);
	if (fclose(f) || rename(tmp, argv[1]))
		return 1;
	pthread_exit(NULL);
}
