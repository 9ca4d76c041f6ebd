/*
 * Shared helpers of the cryo scenario programs (see DESIGN.md section 7).
 *
 * Status protocol: the harness passes the path of a status file in CRYO_SCENARIO_STATUS. The
 * scenario appends one line per event, each written with a single write(2) on a descriptor
 * opened with O_APPEND:
 *
 *   READY                 state is set up; the harness may checkpoint from now on
 *   PASS                  after SIGTERM: every check passed (exit status 0)
 *   FAIL <reason>         a check failed (exit status 1)
 *   SKIP <name>: <reason> the scenario cannot run here (exit status 0)
 *   INFO <text>           anything else worth showing; the harness only prints it
 *
 * By default the file is opened anew for each line, so no descriptor of it is open while the
 * task is checkpointed. A scenario that drops the privilege to open it (creds) calls
 * status_keep_open() first and keeps one O_APPEND descriptor across checkpoint/restore.
 * Without CRYO_SCENARIO_STATUS the lines go to stdout (for running a scenario by hand).
 *
 * SIGTERM (installed by ready_handlers(), without SA_RESTART, so blocking calls see EINTR) only
 * sets got_term; each scenario's main loop keeps working until then, then verifies.
 */
#ifndef CRYO_SCENARIO_H
#define CRYO_SCENARIO_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;
__attribute__((unused)) static int status_fd = -1;

__attribute__((unused)) static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

/* Open the status file once and keep the descriptor (O_APPEND) for every later line. */
__attribute__((unused)) static void status_keep_open(void)
{
	const char *path = getenv("CRYO_SCENARIO_STATUS");
	if (path)
		status_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

__attribute__((unused)) static void status_line(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	/* One event, one line. */
	for (int i = 0; i < n; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	buf[n++] = '\n';

	const char *path = getenv("CRYO_SCENARIO_STATUS");
	int fd = status_fd;
	int opened = 0;
	if (fd < 0 && path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		opened = fd >= 0;
	}
	if (fd < 0)
		fd = 1;
	if (write(fd, buf, n) != n)
		perror("write status");
	if (opened)
		close(fd);
}

/* Install the SIGTERM handler (no SA_RESTART). */
__attribute__((unused)) static void install_term_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL)) {
		perror("sigaction SIGTERM");
		exit(2);
	}
}

__attribute__((unused)) static void ready(void)
{
	status_line("READY");
}

__attribute__((unused)) static int pass(void)
{
	status_line("PASS");
	return 0;
}

__attribute__((unused, noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	char buf[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	status_line("FAIL %s", buf);
	exit(1);
}

__attribute__((unused, noreturn)) static void skip(const char *name, const char *reason)
{
	status_line("SKIP %s: %s", name, reason);
	exit(0);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail(__VA_ARGS__);                                                         \
	} while (0)

/* Fail with errno if a call returned -1 (or any negative value). */
#define SYS(call)                                                                                  \
	({                                                                                         \
		long __r = (long)(call);                                                           \
		if (__r < 0)                                                                       \
			fail("%s: %s (line %d)", #call, strerror(errno), __LINE__);                \
		__r;                                                                               \
	})

__attribute__((unused)) static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((unused)) static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Wait for SIGTERM, sleeping in short steps. */
__attribute__((unused)) static void wait_term(void)
{
	while (!got_term)
		sleep_ms(10);
}

/* 64-bit FNV-1a over a byte range. */
__attribute__((unused)) static uint64_t fnv1a(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

__attribute__((unused)) static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Read a whole small file (e.g. under /proc) into buf; returns length or -1. */
__attribute__((unused)) static ssize_t read_small_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off + 1 < size) {
		ssize_t n = read(fd, buf + off, size - 1 - off);
		if (n <= 0)
			break;
		off += n;
	}
	close(fd);
	buf[off] = 0;
	return off;
}

/* The per-run scratch directory given by the harness (CRYO_SCENARIO_TMP), or /tmp. */
__attribute__((unused)) static const char *scenario_tmp(void)
{
	const char *t = getenv("CRYO_SCENARIO_TMP");
	return t && *t ? t : "/tmp";
}

/* Fork a child that runs `body(from_parent, to_parent)`, the ends of two pipes, and must not
 * return; the parent gets the other ends in *to_child and *from_child. Returns the child's pid. */
__attribute__((unused)) static pid_t fork_with_pipes(void (*body)(int from_parent, int to_parent),
						     int *to_child, int *from_child)
{
	int down[2], up[2];
	SYS(pipe(down));
	SYS(pipe(up));
	pid_t pid = SYS(fork());
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		body(down[0], up[1]);
		_exit(99);
	}
	close(down[0]);
	close(up[1]);
	*to_child = down[1];
	*from_child = up[0];
	return pid;
}

/* Pid, parent, process group, session and state of a process, from /proc/PID/stat. */
struct proc_ids {
	int pid, ppid, pgrp, sid;
	char state;
};

/* Every process below `root` (not root itself, zombies too), found through
 * /proc/PID/task/PID/children, sorted by pid; returns how many. At most `max`. */
__attribute__((unused)) static int snapshot_tree(struct proc_ids *out, int max, int root)
{
	int n = 0, ntodo = 0, todo_max = max + 1;
	int *todo = calloc(todo_max, sizeof(int));
	CHECK(todo, "calloc");
	todo[ntodo++] = root;
	while (ntodo) {
		int pid = todo[--ntodo];
		char path[64], buf[4096];
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		CHECK(read_small_file(path, buf, sizeof(buf)) > 0, "read %s", path);
		char *rp = strrchr(buf, ')');
		struct proc_ids p = { .pid = pid };
		CHECK(rp && sscanf(rp + 2, "%c %d %d %d", &p.state, &p.ppid, &p.pgrp, &p.sid) == 4,
		      "parse %s", path);
		if (pid != root) {
			CHECK(n < max, "more than %d processes", max);
			out[n++] = p;
		}
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
		CHECK(read_small_file(path, buf, sizeof(buf)) >= 0, "read %s", path);
		for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n")) {
			CHECK(ntodo < todo_max, "more than %d processes", max);
			todo[ntodo++] = atoi(s);
		}
	}
	free(todo);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j - 1].pid > out[j].pid; j--) {
			struct proc_ids t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

/* Two snapshots of a tree must hold the same processes with the same parent, group, session
 * and zombie state. */
__attribute__((unused)) static void check_same_tree(const struct proc_ids *before, int n,
						     const struct proc_ids *after, int m)
{
	CHECK(m == n, "%d processes below the root, not %d", m, n);
	for (int i = 0; i < n; i++) {
		const struct proc_ids *b = &before[i], *a = &after[i];
		CHECK(a->pid == b->pid, "pid %d is gone (found %d)", b->pid, a->pid);
		CHECK(a->ppid == b->ppid && a->pgrp == b->pgrp && a->sid == b->sid &&
			      (a->state == 'Z') == (b->state == 'Z'),
		      "pid %d: parent %d group %d session %d state %c, was %d %d %d %c", a->pid,
		      a->ppid, a->pgrp, a->sid, a->state, b->ppid, b->pgrp, b->sid, b->state);
	}
}

#endif
