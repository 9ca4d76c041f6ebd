/*
 * dead_leader: a process whose main thread has called pthread_exit while two other threads run
 * on (its leader is a zombie thread, 'Z' in /proc/PID/stat, until the last thread exits).
 *
 * The harness takes a 'Z' in /proc/PID/stat of the scenario's PID for a dead scenario, so that
 * process is the scenario's child: the scenario (the parent) starts it, says READY once its
 * leader is dead, and on SIGTERM sends SIGTERM on to it (process-directed: only a live thread
 * can take it), then waits for it.
 *
 * The child's main thread fills a heap block and a static array, starts a worker and a ticker,
 * and calls pthread_exit. The ticker blocks SIGTERM and bumps a counter. The worker takes
 * SIGTERM and then checks: the leader is still a zombie thread of the process (three threads
 * in all), both threads still have their TIDs, the ticker still runs (its counter moves) and
 * still blocks SIGTERM while the worker does not, the worker's own count went on, the memory
 * the dead leader wrote is intact. Then it ends the whole process with exit_group(0).
 *
 * Before its leader exits, the child also opens a file at offset 123 and forks a grandchild,
 * which shares that open file. After the restore the worker moves the file to 4567 and tells
 * the grandchild, which must see 4567 (the restore hands it the open file the child has, taken
 * through a live thread, the leader being gone); the worker waits for its verdict.
 *
 * The parent checks the child is still its child with a dead leader, and that it ends with
 * status 0 and can be reaped (no one else holds on to its zombie leader).
 */
#include "scenario.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define HEAP_WORDS (256 << 10)
#define STATIC_WORDS 4096

static uint64_t static_block[STATIC_WORDS];
static uint64_t *heap_block;
static uint64_t heap_hash, static_hash;
static volatile uint64_t ticks;
static volatile uint64_t worker_count;
static volatile pid_t ticker_tid, worker_tid;
static int ready_fd = -1;
/* The open file the child shares with the grandchild, and the pipe that wakes the grandchild. */
static int shared_fd = -1, wake_fd = -1;
static pid_t grandchild;

static pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* The state letter of /proc/self/task/TID/stat, or 0 if there is no such thread. */
static char thread_state(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (read_small_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : 0;
}

/* A hex field ("SigBlk") of /proc/self/task/TID/status. */
static uint64_t status_hex(pid_t tid, const char *key)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "read %s: %s", path, strerror(errno));
	char *p = strstr(buf, key);
	CHECK(p, "no %s in %s", key, path);
	return strtoull(p + strlen(key) + 1, NULL, 16);
}

static int status_threads(void)
{
	char buf[4096];
	CHECK(read_small_file("/proc/self/status", buf, sizeof(buf)) > 0, "read /proc/self/status");
	char *p = strstr(buf, "\nThreads:");
	CHECK(p, "no Threads in /proc/self/status");
	return atoi(p + strlen("\nThreads:"));
}

static void *ticker(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ticker_tid = gettid_raw();
	for (;;) {
		ticks++;
		sleep_ms(1);
	}
	return NULL;
}

static void *worker(void *arg)
{
	pid_t leader = (pid_t)(intptr_t)arg;
	worker_tid = gettid_raw();
	/* READY only once the leader is gone and the ticker runs. */
	while (thread_state(leader) != 'Z' || ticks < 5)
		sleep_ms(1);
	char c = 1;
	if (write(ready_fd, &c, 1) != 1)
		fail("tell the parent: %s", strerror(errno));
	close(ready_fd);

	/* A count in a register or on the worker's stack, and one in memory: they must agree. */
	uint64_t count = 0;
	while (!got_term) {
		count++;
		worker_count++;
		sleep_ms(1);
	}

	CHECK(gettid_raw() == worker_tid, "worker TID %d, was %d", gettid_raw(), worker_tid);
	CHECK(getpid() == leader, "getpid() %d, leader was %d", getpid(), leader);
	char st = thread_state(leader);
	CHECK(st == 'Z', "leader %d is in state %c, not a zombie thread", leader, st ? st : '?');
	CHECK(status_threads() == 3, "%d threads, want 3 (dead leader, worker, ticker)",
	      status_threads());
	st = thread_state(ticker_tid);
	CHECK(st && st != 'Z' && st != 'X', "ticker %d is in state %c", ticker_tid, st ? st : '?');
	uint64_t t0 = ticks;
	sleep_ms(100);
	CHECK(ticks > t0, "the ticker stopped (%llu)", (unsigned long long)t0);
	uint64_t term = 1ULL << (SIGTERM - 1);
	CHECK(status_hex(ticker_tid, "SigBlk:") & term, "the ticker no longer blocks SIGTERM");
	CHECK(!(status_hex(worker_tid, "SigBlk:") & term), "the worker blocks SIGTERM");
	CHECK(fnv1a(heap_block, HEAP_WORDS * 8) == heap_hash, "heap written by the leader changed");
	CHECK(fnv1a(static_block, sizeof(static_block)) == static_hash,
	      "static data written by the leader changed");
	CHECK(count > 0 && count == worker_count, "worker's count %llu, in memory %llu",
	      (unsigned long long)count, (unsigned long long)worker_count);
	CHECK(lseek(shared_fd, 0, SEEK_CUR) == 123, "the shared file is at %lld, not 123",
	      (long long)lseek(shared_fd, 0, SEEK_CUR));
	CHECK(lseek(shared_fd, 4567, SEEK_SET) == 4567, "lseek: %s", strerror(errno));
	CHECK(write(wake_fd, "w", 1) == 1, "wake the grandchild: %s", strerror(errno));
	int ws = 0;
	pid_t got;
	while ((got = waitpid(grandchild, &ws, 0)) < 0 && errno == EINTR)
		;
	CHECK(got == grandchild && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
	      "the grandchild (sharing the open file) ended with status %#x: %s", ws,
	      WIFEXITED(ws) && WEXITSTATUS(ws) == 1 ? "it saw another offset" : "?");
	status_line("INFO child %d: leader dead, %llu ticks, worker counted %llu", leader,
		    (unsigned long long)ticks, (unsigned long long)count);
	syscall(SYS_exit_group, 0);
	return NULL;
}

/* The grandchild: once woken, the open file it shares with the child must be at 4567. */
static void grandchild_main(int wake)
{
	char c;
	while (read(wake, &c, 1) != 1)
		if (errno != EINTR)
			_exit(2);
	_exit(lseek(shared_fd, 0, SEEK_CUR) == 4567 ? 0 : 1);
}

static void child_main(int fd)
{
	ready_fd = fd;
	char path[512];
	snprintf(path, sizeof(path), "%s/dead_leader.shared", scenario_tmp());
	shared_fd = SYS(open(path, O_RDWR | O_CREAT | O_TRUNC, 0600));
	CHECK(lseek(shared_fd, 123, SEEK_SET) == 123, "lseek: %s", strerror(errno));
	int w[2];
	SYS(pipe(w));
	grandchild = SYS(fork());
	if (grandchild == 0) {
		close(w[1]);
		grandchild_main(w[0]);
	}
	close(w[0]);
	wake_fd = w[1];
	uint64_t seed = 0xdead1eade;
	heap_block = malloc(HEAP_WORDS * 8);
	if (!heap_block)
		fail("malloc: %s", strerror(errno));
	for (size_t i = 0; i < HEAP_WORDS; i++)
		heap_block[i] = xorshift64(&seed);
	for (size_t i = 0; i < STATIC_WORDS; i++)
		static_block[i] = xorshift64(&seed);
	heap_hash = fnv1a(heap_block, HEAP_WORDS * 8);
	static_hash = fnv1a(static_block, sizeof(static_block));
	pthread_t t;
	if (pthread_create(&t, NULL, ticker, NULL))
		fail("pthread_create ticker");
	if (pthread_create(&t, NULL, worker, (void *)(intptr_t)getpid()))
		fail("pthread_create worker");
	pthread_exit(NULL);
}

int main(void)
{
	install_term_handler();
	int p[2];
	SYS(pipe(p));
	pid_t child = fork();
	SYS(child);
	if (child == 0) {
		close(p[0]);
		child_main(p[1]);
	}
	close(p[1]);
	char c;
	CHECK(read(p[0], &c, 1) == 1, "the child did not get ready: %s", strerror(errno));
	close(p[0]);
	ready();
	wait_term();

	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "child %d is gone", child);
	char *rp = strrchr(buf, ')');
	char state = '?';
	int ppid = 0;
	CHECK(rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2, "bad stat of the child: %s", buf);
	CHECK(ppid == getpid(), "the child's parent is %d, not %d", ppid, getpid());
	CHECK(state == 'Z', "the child's leader is in state %c, not dead", state);

	SYS(kill(child, SIGTERM));
	int ws = 0;
	pid_t got;
	while ((got = waitpid(child, &ws, 0)) < 0 && errno == EINTR)
		;
	CHECK(got == child, "waitpid(%d): %s", child, strerror(errno));
	CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the child ended with status %#x", ws);
	return pass();
}
