/*
 * tree: a small process tree. The parent forks a worker that runs a second thread, shares 1 MiB
 * of MAP_SHARED|MAP_ANONYMOUS memory with it, talks to it through two pipes (one left holding
 * unread data across the checkpoint), and keeps a zombie child it has not waited for.
 *
 * After SIGTERM the parent checks: the worker has the same PID and parent, its thread still
 * runs (a counter it bumps in the shared memory keeps moving), memory written by one process is
 * seen by the other (so it is still one object), the unread pipe data is intact, a request/reply
 * round trip through the pipes works, the zombies are still there with their exit status
 * (one exited with 42, one was killed by SIGUSR2), and a child stopped by SIGSTOP is still
 * stopped and ends normally once continued, and a child the worker made with CLONE_PARENT is still
 * this process's child.
 */
#include "scenario.h"
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define SHM_BYTES (1 << 20)
#define PARKED "parked-in-the-pipe"

struct shared {
	volatile uint64_t thread_ticks;
	volatile uint64_t from_parent;
	volatile uint64_t from_worker;
	volatile uint64_t sibling_pid;
	uint64_t pattern[SHM_BYTES / 8 - 4];
};

static struct shared *shm;

static void *ticker(void *arg)
{
	(void)arg;
	for (;;) {
		shm->thread_ticks++;
		sleep_ms(2);
	}
	return NULL;
}

static int sibling_main(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return 0;
}

static void worker(int req, int rep)
{
	/* A sibling made with CLONE_PARENT: its parent is the worker's parent. */
	static char stack[64 << 10];
	long sib = clone(sibling_main, stack + sizeof(stack), CLONE_PARENT | SIGCHLD, NULL);
	if (sib < 0)
		_exit(6);
	shm->sibling_pid = sib;
	pthread_t t;
	if (pthread_create(&t, NULL, ticker, NULL))
		_exit(3);
	for (;;) {
		uint64_t v;
		if (read(req, &v, sizeof(v)) != sizeof(v))
			_exit(4);
		shm->from_worker = v + 1;
		v = v * 2;
		if (write(rep, &v, sizeof(v)) != sizeof(v))
			_exit(5);
	}
}

int main(void)
{
	install_term_handler();
	shm = mmap(NULL, SHM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shm != MAP_FAILED, "mmap: %s", strerror(errno));
	uint64_t seed = 0x5eed;
	for (size_t i = 0; i < sizeof(shm->pattern) / 8; i++)
		shm->pattern[i] = xorshift64(&seed);
	uint64_t pattern_hash = fnv1a(shm->pattern, sizeof(shm->pattern));

	int req[2], rep[2], parked[2];
	SYS(pipe(req));
	SYS(pipe(rep));
	SYS(pipe(parked));
	pid_t zombie = fork();
	SYS(zombie);
	if (zombie == 0)
		_exit(42);
	pid_t killed = fork();
	SYS(killed);
	if (killed == 0) {
		signal(SIGUSR2, SIG_DFL);
		raise(SIGUSR2);
		_exit(1);
	}
	/* A child stopped by SIGSTOP (SIGTSTP would be discarded: the group is orphaned): it must stay stopped, and carry on when continued. */
	pid_t stopped = fork();
	SYS(stopped);
	if (stopped == 0) {
		raise(SIGSTOP);
		_exit(7);
	}
	pid_t w = fork();
	SYS(w);
	if (w == 0) {
		close(req[1]);
		close(rep[0]);
		worker(req[0], rep[1]);
	}
	close(req[0]);
	close(rep[1]);
	SYS(write(parked[1], PARKED, sizeof(PARKED)));
	/* The zombie stays one: nobody waits for it until the check. */
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	SYS(waitid(P_PID, zombie, &si, WEXITED | WNOWAIT));
	SYS(waitid(P_PID, killed, &si, WEXITED | WNOWAIT));
	SYS(waitid(P_PID, stopped, &si, WSTOPPED | WNOWAIT));
	while (shm->thread_ticks < 5 || !shm->sibling_pid)
		sleep_ms(1);
	ready();
	wait_term();

	/* The worker and its thread. */
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", w);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "worker %d is gone", w);
	char *rp = strrchr(buf, ')');
	int ppid = 0;
	char state = '?';
	CHECK(rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2, "bad stat of worker: %s", buf);
	CHECK(ppid == getpid(), "worker's parent is %d, not %d", ppid, getpid());
	CHECK(state != 'Z' && state != 'T', "worker is in state %c", state);
	uint64_t t0 = shm->thread_ticks;
	sleep_ms(100);
	CHECK(shm->thread_ticks > t0, "the worker's thread stopped ticking (%llu)", (unsigned long long)t0);
	CHECK(fnv1a(shm->pattern, sizeof(shm->pattern)) == pattern_hash, "shared memory content changed");

	/* Sharing and pipes: a round trip. */
	uint64_t v = 21, r = 0;
	shm->from_parent = 7;
	SYS(write(req[1], &v, sizeof(v)));
	CHECK(read(rep[0], &r, sizeof(r)) == sizeof(r), "no reply from the worker: %s", strerror(errno));
	CHECK(r == 42, "worker replied %llu", (unsigned long long)r);
	CHECK(shm->from_worker == 22, "worker's write to shared memory not seen (%llu): not shared any more",
	      (unsigned long long)shm->from_worker);

	/* The data left in a pipe. */
	char got[sizeof(PARKED)] = { 0 };
	int fl = fcntl(parked[0], F_GETFL);
	fcntl(parked[0], F_SETFL, fl | O_NONBLOCK);
	CHECK(read(parked[0], got, sizeof(got)) == sizeof(got) && !memcmp(got, PARKED, sizeof(got)),
	      "data parked in the pipe is gone or changed");

	/* The zombie. */
	int st = 0;
	CHECK(waitpid(zombie, &st, WNOHANG) == zombie, "zombie %d is not waitable", zombie);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42, "zombie's status is %#x", st);
	CHECK(waitpid(killed, &st, WNOHANG) == killed, "killed zombie %d is not waitable", killed);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR2, "killed zombie's status is %#x", st);

	/* The CLONE_PARENT sibling is this process's child. */
	pid_t sib = (pid_t)shm->sibling_pid;
	snprintf(path, sizeof(path), "/proc/%d/stat", sib);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "CLONE_PARENT child %d is gone", sib);
	rp = strrchr(buf, ')');
	CHECK(rp && sscanf(rp + 2, "%c %d", &state, &ppid) == 2 && ppid == getpid() && state != 'Z',
	      "CLONE_PARENT child: state %c, parent %d", state, ppid);
	SYS(kill(sib, SIGKILL));
	CHECK(waitpid(sib, &st, 0) == sib && WIFSIGNALED(st), "CLONE_PARENT child: status %#x", st);

	/* The stopped child. */
	snprintf(path, sizeof(path), "/proc/%d/stat", stopped);
	CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "stopped child %d is gone", stopped);
	rp = strrchr(buf, ')');
	CHECK(rp && sscanf(rp + 2, "%c", &state) == 1 && state == 'T', "stopped child is in state %c",
	      state);
	sleep_ms(50);
	CHECK(waitpid(stopped, &st, WNOHANG | WUNTRACED) != stopped || WIFSTOPPED(st),
	      "stopped child ended while stopped: %#x", st);
	SYS(kill(stopped, SIGCONT));
	CHECK(waitpid(stopped, &st, 0) == stopped, "waitpid stopped child: %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "continued child's status is %#x", st);

	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
	return pass();
}
