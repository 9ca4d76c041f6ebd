/*
 * creds: credentials of a task that dropped root (needs root, else SKIP).
 * Setup as root: drop CAP_SYS_BOOT and CAP_SYS_MODULE from the bounding set, securebits
 * KEEP_CAPS|NOROOT|NOROOT_LOCKED, groups {1000, 2000, 3000}, gids r/e/s 1000/1000/1002, uids
 * r/e/s 1000/1000/1003; then capset effective = permitted = CHOWN|NET_BIND_SERVICE, inheritable
 * = the same, ambient NET_BIND_SERVICE, and no_new_privs. After SIGTERM every one of these
 * (plus fsuid/fsgid and the whole bounding and ambient sets) must read as before READY.
 * The status file is opened once before dropping root (status_keep_open).
 */
#include "scenario.h"
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

struct creds {
	uid_t uid[3];
	gid_t gid[3];
	int fsuid, fsgid;
	int ngroups;
	gid_t groups[16];
	struct __user_cap_data_struct caps[2];
	uint64_t bounding, ambient;
	int securebits, no_new_privs, keepcaps;
};

static int last_cap(void)
{
	char buf[32];
	if (read_small_file("/proc/sys/kernel/cap_last_cap", buf, sizeof(buf)) <= 0)
		return CAP_LAST_CAP;
	return atoi(buf);
}

static void read_creds(struct creds *c)
{
	memset(c, 0, sizeof(*c));
	SYS(getresuid(&c->uid[0], &c->uid[1], &c->uid[2]));
	SYS(getresgid(&c->gid[0], &c->gid[1], &c->gid[2]));
	c->fsuid = setfsuid(-1);
	c->fsgid = setfsgid(-1);
	c->ngroups = SYS(getgroups(16, c->groups));
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	SYS(syscall(SYS_capget, &h, c->caps));
	for (int cap = 0; cap <= last_cap(); cap++) {
		if (SYS(prctl(PR_CAPBSET_READ, cap, 0, 0, 0)))
			c->bounding |= 1ULL << cap;
		if (SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0)))
			c->ambient |= 1ULL << cap;
	}
	c->securebits = SYS(prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
	c->no_new_privs = SYS(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	c->keepcaps = SYS(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
}

int main(void)
{
	if (geteuid() != 0)
		skip("creds", "needs root");
	install_term_handler();
	status_keep_open();

	SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0));
	SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0));
	SYS(prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0));
	gid_t groups[] = { 1000, 2000, 3000 };
	SYS(setgroups(3, groups));
	SYS(setresgid(1000, 1000, 1002));
	SYS(setresuid(1000, 1000, 1003));

	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	uint32_t set = (1u << CAP_CHOWN) | (1u << CAP_NET_BIND_SERVICE);
	d[0].effective = d[0].permitted = d[0].inheritable = set;
	SYS(syscall(SYS_capset, &h, d));
	SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
	SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));

	struct creds before, after;
	read_creds(&before);
	CHECK(before.uid[0] == 1000 && before.caps[0].permitted == set && before.no_new_privs == 1,
	      "setup did not take");

	ready();
	wait_term();

	read_creds(&after);
	for (int i = 0; i < 3; i++) {
		CHECK(after.uid[i] == before.uid[i], "uid[%d] is %d, expected %d", i, after.uid[i],
		      before.uid[i]);
		CHECK(after.gid[i] == before.gid[i], "gid[%d] is %d, expected %d", i, after.gid[i],
		      before.gid[i]);
	}
	CHECK(after.fsuid == before.fsuid, "fsuid %d, expected %d", after.fsuid, before.fsuid);
	CHECK(after.fsgid == before.fsgid, "fsgid %d, expected %d", after.fsgid, before.fsgid);
	CHECK(after.ngroups == before.ngroups, "%d groups, expected %d", after.ngroups,
	      before.ngroups);
	for (int i = 0; i < before.ngroups; i++)
		CHECK(after.groups[i] == before.groups[i], "group %d is %d, expected %d", i,
		      after.groups[i], before.groups[i]);
	for (int i = 0; i < 2; i++) {
		CHECK(after.caps[i].effective == before.caps[i].effective,
		      "effective caps[%d] %#x, expected %#x", i, after.caps[i].effective,
		      before.caps[i].effective);
		CHECK(after.caps[i].permitted == before.caps[i].permitted,
		      "permitted caps[%d] %#x, expected %#x", i, after.caps[i].permitted,
		      before.caps[i].permitted);
		CHECK(after.caps[i].inheritable == before.caps[i].inheritable,
		      "inheritable caps[%d] %#x, expected %#x", i, after.caps[i].inheritable,
		      before.caps[i].inheritable);
	}
	CHECK(after.bounding == before.bounding, "bounding set %#llx, expected %#llx",
	      (unsigned long long)after.bounding, (unsigned long long)before.bounding);
	CHECK(after.ambient == before.ambient, "ambient set %#llx, expected %#llx",
	      (unsigned long long)after.ambient, (unsigned long long)before.ambient);
	CHECK(after.securebits == before.securebits, "securebits %#x, expected %#x",
	      after.securebits, before.securebits);
	CHECK(after.no_new_privs == before.no_new_privs, "no_new_privs %d, expected %d",
	      after.no_new_privs, before.no_new_privs);
	CHECK(after.keepcaps == before.keepcaps, "keepcaps %d, expected %d", after.keepcaps,
	      before.keepcaps);
	return pass();
}
