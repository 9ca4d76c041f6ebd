/*
 * cgroup_tree NAME DEPTH: not a scenario of tests/scenarios.rs; the task tests/cgroup.rs puts in
 * a cgroup and dumps with `cryo dump --cgroup` / `--freeze-cgroup`.
 *
 * The process joins the cgroup whose cgroup.procs file is in $CRYO_CGROUP_PROCS (if set), then
 * makes a chain of DEPTH processes: NAME forks NAME.1, which forks NAME.1.1, and so on. With
 * $CRYO_CGROUP_OUTSIDE set (a cgroup.procs path), the last of the chain moves itself there: a
 * descendant outside the dumped cgroup.
 *
 * Each process fills 1 MiB of heap with a pattern of its own, then counts in a loop, and says
 * "READY <role> <pid>" in the status file ($CRYO_SCENARIO_STATUS, protocol of scenario.h). After
 * SIGTERM each checks that its pattern is intact, that its counter moved since READY, that its
 * parent is the one it had (not checked for the first of the chain, which a restore re-parents),
 * says "PASS <role>" or "FAIL <role>: why", waits for its child (which gets its own SIGTERM
 * from the harness) and exits 0 only if the child exited 0 too.
 */
#include "scenario.h"
#include <sys/wait.h>

#define BUF_BYTES (1 << 20)

static void join(const char *procs_file)
{
	if (!procs_file || !*procs_file)
		return;
	int fd = open(procs_file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open %s: %s", procs_file, strerror(errno));
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d", getpid());
	if (write(fd, pid, n) != n)
		fail("join %s: %s", procs_file, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: cgroup_tree NAME DEPTH\n");
		return 2;
	}
	install_term_handler();
	join(getenv("CRYO_CGROUP_PROCS"));
	char role[128];
	snprintf(role, sizeof(role), "%s", argv[1]);
	int depth = atoi(argv[2]);
	int level = 0;
	pid_t child = -1;
	for (;;) {
		if (level + 1 >= depth) {
			child = -1;
			break;
		}
		child = fork();
		if (child < 0)
			fail("%s: fork: %s", role, strerror(errno));
		if (child > 0)
			break;
		level++;
		size_t len = strlen(role);
		snprintf(role + len, sizeof(role) - len, ".1");
	}
	if (level + 1 == depth && depth > 1)
		join(getenv("CRYO_CGROUP_OUTSIDE"));

	uint64_t seed = fnv1a(role, strlen(role)) | 1;
	uint64_t *buf = malloc(BUF_BYTES);
	CHECK(buf, "%s: malloc", role);
	for (size_t i = 0; i < BUF_BYTES / 8; i++)
		buf[i] = xorshift64(&seed);
	uint64_t hash = fnv1a(buf, BUF_BYTES);
	pid_t parent = getppid();
	volatile uint64_t ticks = 0;
	while (ticks < 3) {
		ticks++;
		sleep_ms(1);
	}
	uint64_t at_ready = ticks;
	status_line("READY %s %d", role, getpid());
	while (!got_term) {
		ticks++;
		sleep_ms(2);
	}

	char why[256] = "";
	if (fnv1a(buf, BUF_BYTES) != hash)
		snprintf(why, sizeof(why), "heap pattern changed");
	else if (ticks <= at_ready)
		snprintf(why, sizeof(why), "counter did not move (%llu)", (unsigned long long)ticks);
	else if (level > 0 && getppid() != parent)
		snprintf(why, sizeof(why), "parent is %d, not %d", getppid(), parent);
	if (*why) {
		status_line("FAIL %s: %s", role, why);
		return 1;
	}
	status_line("PASS %s", role);
	if (child > 0) {
		int st = 0, reaped = 0;
		/* The harness sends the child its SIGTERM too; give it time to check itself. */
		for (int i = 0; i < 3000 && !reaped; i++) {
			pid_t r = waitpid(child, &st, WNOHANG);
			if (r == child) {
				reaped = 1;
				break;
			}
			if (r < 0) {
				status_line("FAIL %s: wait for child %d: %s", role, child, strerror(errno));
				return 1;
			}
			sleep_ms(10);
		}
		if (!reaped) {
			status_line("FAIL %s: child %d did not end", role, child);
			return 1;
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			status_line("FAIL %s: child %d ended with status %#x", role, child, st);
			return 1;
		}
	}
	return 0;
}
