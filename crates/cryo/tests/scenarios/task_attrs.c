/*
 * task_attrs: per-task attributes.
 * Setup: RLIMIT_NOFILE soft 512, RLIMIT_STACK soft 6 MiB / hard 64 MiB, RLIMIT_CORE 1 MiB /
 * 2 MiB; nice 5; umask 027; cwd CRYO_SCENARIO_TMP/subdir; personality ADDR_NO_RANDOMIZE|UNAME26;
 * comm "cryo-attrs"; oom_score_adj 123; THP disabled (PR_SET_THP_DISABLE); session and process
 * group leader (setsid when not already one). After SIGTERM: every rlimit (all RLIM_NLIMITS of
 * them), the nice value, the umask, the cwd, the personality, comm, oom_score_adj, THP disable,
 * sid and pgid read as before READY.
 */
#include "scenario.h"
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

struct attrs {
	struct rlimit rl[RLIM_NLIMITS];
	int nice;
	mode_t umask;
	char cwd[4096];
	int persona;
	char comm[17];
	char oom[16];
	pid_t sid, pgid;
	int thp_disabled;
};

static void read_attrs(struct attrs *a)
{
	memset(a, 0, sizeof(*a));
	for (int r = 0; r < RLIM_NLIMITS; r++)
		SYS(getrlimit(r, &a->rl[r]));
	errno = 0;
	a->nice = getpriority(PRIO_PROCESS, 0);
	CHECK(errno == 0, "getpriority: %s", strerror(errno));
	a->umask = umask(0);
	umask(a->umask);
	CHECK(getcwd(a->cwd, sizeof(a->cwd)), "getcwd: %s", strerror(errno));
	a->persona = SYS(personality(0xffffffff));
	SYS(prctl(PR_GET_NAME, a->comm, 0, 0, 0));
	CHECK(read_small_file("/proc/self/oom_score_adj", a->oom, sizeof(a->oom)) > 0,
	      "read oom_score_adj");
	a->oom[strcspn(a->oom, "\n")] = 0;
	a->sid = getsid(0);
	a->pgid = getpgid(0);
	a->thp_disabled = SYS(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0));
}

int main(void)
{
	install_term_handler();

	struct rlimit rl;
	SYS(getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = 512;
	SYS(setrlimit(RLIMIT_NOFILE, &rl));
	rl = (struct rlimit){ 6 << 20, 64 << 20 };
	SYS(setrlimit(RLIMIT_STACK, &rl));
	rl = (struct rlimit){ 1 << 20, 2 << 20 };
	SYS(setrlimit(RLIMIT_CORE, &rl));
	SYS(setpriority(PRIO_PROCESS, 0, 5));
	umask(027);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/subdir", scenario_tmp());
	if (mkdir(dir, 0750) && errno != EEXIST)
		fail("mkdir %s: %s", dir, strerror(errno));
	SYS(chdir(dir));
	SYS(personality(PER_LINUX | ADDR_NO_RANDOMIZE | UNAME26));
	SYS(prctl(PR_SET_NAME, "cryo-attrs", 0, 0, 0));
	SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
	int fd = SYS(open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
	CHECK(write(fd, "123", 3) == 3, "write oom_score_adj: %s", strerror(errno));
	close(fd);
	if (getsid(0) != getpid())
		SYS(setsid());

	struct attrs before, after;
	read_attrs(&before);
	CHECK(before.nice == 5 && before.umask == 027 && before.rl[RLIMIT_NOFILE].rlim_cur == 512 &&
		      before.sid == getpid() && before.thp_disabled == 1,
	      "setup did not take");

	ready();
	wait_term();

	read_attrs(&after);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		CHECK(after.rl[r].rlim_cur == before.rl[r].rlim_cur &&
			      after.rl[r].rlim_max == before.rl[r].rlim_max,
		      "rlimit %d is %llu/%llu, expected %llu/%llu", r,
		      (unsigned long long)after.rl[r].rlim_cur,
		      (unsigned long long)after.rl[r].rlim_max,
		      (unsigned long long)before.rl[r].rlim_cur,
		      (unsigned long long)before.rl[r].rlim_max);
	CHECK(after.nice == before.nice, "nice %d, expected %d", after.nice, before.nice);
	CHECK(after.umask == before.umask, "umask %03o, expected %03o", after.umask, before.umask);
	CHECK(!strcmp(after.cwd, before.cwd), "cwd %s, expected %s", after.cwd, before.cwd);
	CHECK(after.persona == before.persona, "personality %#x, expected %#x", after.persona,
	      before.persona);
	CHECK(!strcmp(after.comm, before.comm), "comm \"%s\", expected \"%s\"", after.comm,
	      before.comm);
	CHECK(!strcmp(after.oom, before.oom), "oom_score_adj %s, expected %s", after.oom,
	      before.oom);
	CHECK(after.sid == before.sid, "sid %d, expected %d", after.sid, before.sid);
	CHECK(after.pgid == before.pgid, "pgid %d, expected %d", after.pgid, before.pgid);
	CHECK(after.thp_disabled == before.thp_disabled, "THP disable %d, expected %d",
	      after.thp_disabled, before.thp_disabled);
	return pass();
}
