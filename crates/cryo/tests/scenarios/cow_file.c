/*
 * cow_file: private copies of a file's pages shared by a parent and its forked child. A file of
 * PAGES pages (in CRYO_SCENARIO_TMP) is mapped MAP_PRIVATE twice:
 *  - rw: read-write, the whole file. Page i belongs to class i % 8, which says who wrote it
 *    (see `want`): the parent before the fork (a private copy the child inherits and shares),
 *    the child or the parent after the fork, both, or nobody (the file's page).
 *  - ro: read-only, from page RO_OFF of the file. The parent writes its even pages before the
 *    fork (with PROT_WRITE for a moment); after the fork the child rewrites page 2 and the
 *    parent page 1, each opening the mapping for writing for a moment.
 * Before READY and after the restore, every page the parent wrote before the fork and nobody
 * wrote after must be the same physical page in both processes (/proc/PID/pagemap PFNs): the
 * restore must keep them shared. Then both check every byte of both mappings: a page only the
 * parent changed after the fork must show the file in the child, and the reverse, and the file
 * itself must be unchanged.
 *
 * Built with COW_FILE_DELETED (cow_file_deleted.c), the file is unlinked once mapped and kept
 * open: it must come back as one file (a ghost) for both mappings of both processes and the
 * fd, and the pages must stay shared all the same.
 */
#include "scenario.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096UL
#define PAGES 64
#define RO_OFF 16
#define RO_PAGES 16

/* Who wrote a page: salts of the contents. */
#define FILE_SALT 0
#define PARENT_BEFORE 1
#define CHILD_AFTER 2
#define PARENT_AFTER 3

static unsigned char *rw, *ro;

static uint64_t word(uint64_t page, uint64_t w, uint64_t salt)
{
	uint64_t x = (page + 1) * 0x9e3779b97f4a7c15ULL ^ (w + 1) * 0xbf58476d1ce4e5b9ULL ^
		     (salt + 1) * 0xd6e8feb86659fd93ULL;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebULL;
}

/* Fill `p` as file page `page` with `salt`. */
static void fill(unsigned char *p, uint64_t page, uint64_t salt)
{
	uint64_t *w = (uint64_t *)p;
	for (uint64_t i = 0; i < PG / 8; i++)
		w[i] = word(page, i, salt);
}

/* 1 when `p` is not file page `page` filled with `salt`. */
static int differs(const unsigned char *p, uint64_t page, uint64_t salt)
{
	const uint64_t *w = (const uint64_t *)p;
	for (uint64_t i = 0; i < PG / 8; i++)
		if (w[i] != word(page, i, salt))
			return 1;
	return 0;
}

/*
 * Page classes of rw (i % 8): 0 nobody, 1 parent before, 2 parent before + child after,
 * 3 parent before + parent after, 4 child after, 5 parent after, 6 parent before + both
 * after, 7 parent before, read by both after.
 */
static int before(int i)
{
	int c = i % 8;
	return c == 1 || c == 2 || c == 3 || c == 6 || c == 7;
}
static int child_after(int i)
{
	int c = i % 8;
	return c == 2 || c == 4 || c == 6;
}
static int parent_after(int i)
{
	int c = i % 8;
	return c == 3 || c == 5 || c == 6;
}

/* The salt page i of rw holds in the parent (child = 0) or the child. */
static uint64_t want_rw(int i, int child)
{
	if (child && child_after(i))
		return CHILD_AFTER;
	if (!child && parent_after(i))
		return PARENT_AFTER;
	return before(i) ? PARENT_BEFORE : FILE_SALT;
}

/* The salt page i of ro holds. */
static uint64_t want_ro(int i, int child)
{
	if (child && i == 2)
		return CHILD_AFTER;
	if (!child && i == 1)
		return PARENT_AFTER;
	return i % 2 == 0 ? PARENT_BEFORE : FILE_SALT;
}

static int check_maps(int child)
{
	for (int i = 0; i < PAGES; i++)
		if (differs(rw + i * PG, i, want_rw(i, child)))
			return i + 1;
	for (int i = 0; i < RO_PAGES; i++)
		if (differs(ro + i * PG, RO_OFF + i, want_ro(i, child)))
			return 1000 + i;
	return 0;
}

/* The pagemap word of `addr` in `pid`. */
static uint64_t pagemap_word(pid_t pid, const void *addr)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = SYS(open(path, O_RDONLY | O_CLOEXEC));
	uint64_t w = 0;
	CHECK(pread(fd, &w, 8, (off_t)((uintptr_t)addr / PG * 8)) == 8, "read %s: %s", path,
	      strerror(errno));
	close(fd);
	return w;
}

#define PM_PRESENT (1ULL << 63)
#define PM_PFN ((1ULL << 55) - 1)

/* Every page the parent wrote before the fork and nobody after is one page in both. */
static void check_shared(pid_t child, const char *when)
{
	int n = 0;
	for (int i = 0; i < PAGES + RO_PAGES; i++) {
		const unsigned char *p;
		if (i < PAGES) {
			if (!before(i) || child_after(i) || parent_after(i))
				continue;
			p = rw + i * PG;
		} else {
			int r = i - PAGES;
			if (r % 2 || r == 2)
				continue;
			p = ro + r * PG;
		}
		uint64_t mine = pagemap_word(getpid(), p), theirs = pagemap_word(child, p);
		CHECK(mine & PM_PRESENT, "%s: parent page at %p not present", when, (void *)p);
		if (!(mine & PM_PFN))
			skip("cow_file", "pagemap shows no PFNs here");
		CHECK((mine & PM_PFN) == (theirs & PM_PFN) && (theirs & PM_PRESENT),
		      "%s: page %d at %p is not shared (parent pfn %#llx, child %#llx)", when, i,
		      (void *)p, (unsigned long long)(mine & PM_PFN),
		      (unsigned long long)(theirs & PM_PFN));
		n++;
	}
	status_line("INFO %s: %d private file pages shared by parent and child", when, n);
}

static void child_main(int go, int done)
{
	for (int i = 0; i < PAGES; i++)
		if (child_after(i))
			fill(rw + i * PG, i, CHILD_AFTER);
	if (mprotect(ro, RO_PAGES * PG, PROT_READ | PROT_WRITE))
		_exit(3);
	fill(ro + 2 * PG, RO_OFF + 2, CHILD_AFTER);
	if (mprotect(ro, RO_PAGES * PG, PROT_READ))
		_exit(3);
	if (write(done, "c", 1) != 1)
		_exit(3);
	char c;
	/* The parent writes one byte once it has compared the pages. */
	while (read(go, &c, 1) != 1)
		if (errno != EINTR)
			_exit(3);
	int bad = check_maps(1);
	if (bad)
		status_line("INFO child: page %d is wrong", bad - 1);
	_exit(bad ? 1 : 0);
}

int main(void)
{
	install_term_handler();
	char path[512];
	snprintf(path, sizeof(path), "%s/cow_file.data", scenario_tmp());
	int fd = SYS(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	unsigned char page[PG];
	for (int i = 0; i < PAGES; i++) {
		fill(page, i, FILE_SALT);
		CHECK(write(fd, page, PG) == (ssize_t)PG, "write %s", path);
	}
	rw = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(rw != MAP_FAILED, "mmap rw: %s", strerror(errno));
	ro = mmap(NULL, RO_PAGES * PG, PROT_READ, MAP_PRIVATE, fd, RO_OFF * PG);
	CHECK(ro != MAP_FAILED, "mmap ro: %s", strerror(errno));
#ifdef COW_FILE_DELETED
	/* Only the fd and the mappings hold the file now. */
	SYS(unlink(path));
	int kept = fd;
#else
	close(fd);
#endif

	for (int i = 0; i < PAGES; i++)
		if (before(i))
			fill(rw + i * PG, i, PARENT_BEFORE);
	SYS(mprotect(ro, RO_PAGES * PG, PROT_READ | PROT_WRITE));
	for (int i = 0; i < RO_PAGES; i += 2)
		fill(ro + i * PG, RO_OFF + i, PARENT_BEFORE);
	SYS(mprotect(ro, RO_PAGES * PG, PROT_READ));

	int go, done;
	pid_t child = fork_with_pipes(child_main, &go, &done);
	char c;
	CHECK(read(done, &c, 1) == 1, "child did not get ready: %s", strerror(errno));
	close(done);
	for (int i = 0; i < PAGES; i++)
		if (parent_after(i))
			fill(rw + i * PG, i, PARENT_AFTER);
	SYS(mprotect(ro, RO_PAGES * PG, PROT_READ | PROT_WRITE));
	fill(ro + 1 * PG, RO_OFF + 1, PARENT_AFTER);
	SYS(mprotect(ro, RO_PAGES * PG, PROT_READ));
	/* Both read the class-7 pages (the child's read is its check, later). */
	volatile uint64_t sum = 0;
	for (int i = 7; i < PAGES; i += 8)
		sum += rw[i * PG];
	(void)sum;

	check_shared(child, "before");
	ready();
	wait_term();
	check_shared(child, "after");

	CHECK(write(go, "g", 1) == 1, "tell the child: %s", strerror(errno));
	int bad = check_maps(0);
	CHECK(!bad, "parent: page %d is wrong", bad - 1);
	int st;
	CHECK(waitpid(child, &st, 0) == child, "waitpid %d: %s", child, strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
#ifdef COW_FILE_DELETED
	fd = kept;
#else
	fd = SYS(open(path, O_RDONLY | O_CLOEXEC));
#endif
	for (int i = 0; i < PAGES; i++) {
		CHECK(pread(fd, page, PG, (off_t)(i * PG)) == (ssize_t)PG, "read %s", path);
		CHECK(!differs(page, i, FILE_SALT), "the file changed at page %d", i);
	}
	close(fd);
	return pass();
}
