/*
 * shm_anon: anonymous memory of several kinds, each with a pattern checked after SIGTERM:
 *  - a 4 MiB MAP_SHARED|MAP_ANONYMOUS region;
 *  - 16 pages filled, then mprotect(PROT_NONE): after SIGTERM they must still be PROT_NONE
 *    (in /proc/self/maps and by faulting), and after mprotect(PROT_READ) hold the pattern;
 *  - a guard page: three pages mapped at once, the middle one mprotect(PROT_NONE), so that two
 *    read-write private mappings sit either side of it; addresses and protections must be
 *    unchanged and touching the guard page must still fault.
 */
#include "scenario.h"
#include <setjmp.h>
#include <sys/mman.h>

#define PG 4096
#define SHM_LEN (4UL << 20)
#define NONE_LEN (16 * PG)

static sigjmp_buf segv_jmp;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(segv_jmp, 1);
}

/* Whether reading *p faults. */
static int faults(volatile unsigned char *p)
{
	if (sigsetjmp(segv_jmp, 1))
		return 1;
	(void)*p;
	return 0;
}

static unsigned char pat(int region, size_t i)
{
	return (unsigned char)(region * 77 + i * 3 + (i >> 12) * 5);
}

static void check_pattern(const unsigned char *p, size_t len, int region, const char *what)
{
	for (size_t i = 0; i < len; i++)
		CHECK(p[i] == pat(region, i), "%s: byte %zu is %02x, expected %02x", what, i, p[i],
		      pat(region, i));
}

/*
 * Check that /proc/self/maps has a mapping covering [start, start+len) with the given perms
 * (covering, not equal: the kernel may merge it with a compatible neighbour).
 */
static void check_vma(void *start, size_t len, const char *perms, const char *what)
{
	static char maps[1 << 20];
	unsigned long s = (unsigned long)start, e = s + len;
	CHECK(read_small_file("/proc/self/maps", maps, sizeof(maps)) > 0, "read maps");
	for (char *l = maps; *l;) {
		unsigned long vs, ve;
		char p[8];
		if (sscanf(l, "%lx-%lx %7s", &vs, &ve, p) == 3 && vs <= s && e <= ve) {
			CHECK(strcmp(p, perms) == 0, "%s: mapped %s, expected %s", what, p, perms);
			return;
		}
		char *nl = strchr(l, '\n');
		if (!nl)
			break;
		l = nl + 1;
	}
	fail("%s: %lx-%lx is not mapped", what, s, e);
}

int main(void)
{
	install_term_handler();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	SYS(sigaction(SIGSEGV, &sa, NULL));

	unsigned char *shm = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shm != MAP_FAILED, "mmap shared: %s", strerror(errno));
	for (size_t i = 0; i < SHM_LEN; i++)
		shm[i] = pat(1, i);

	unsigned char *none = mmap(NULL, NONE_LEN, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t i = 0; i < NONE_LEN; i++)
		none[i] = pat(2, i);
	SYS(mprotect(none, NONE_LEN, PROT_NONE));

	unsigned char *guard = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(guard != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t i = 0; i < 3 * PG; i++)
		guard[i] = pat(3, i);
	SYS(mprotect(guard + PG, PG, PROT_NONE));

	ready();
	wait_term();

	check_vma(shm, SHM_LEN, "rw-s", "shared anonymous");
	check_pattern(shm, SHM_LEN, 1, "shared anonymous");

	check_vma(none, NONE_LEN, "---p", "PROT_NONE region");
	CHECK(faults(none) && faults(none + NONE_LEN - 1), "PROT_NONE region is readable");
	SYS(mprotect(none, NONE_LEN, PROT_READ));
	check_pattern(none, NONE_LEN, 2, "PROT_NONE region");

	check_vma(guard, PG, "rw-p", "below guard");
	check_vma(guard + PG, PG, "---p", "guard page");
	check_vma(guard + 2 * PG, PG, "rw-p", "above guard");
	CHECK(faults(guard + PG), "guard page is readable");
	CHECK(!faults(guard) && !faults(guard + 2 * PG), "pages beside the guard fault");
	check_pattern(guard, PG, 3, "below guard");
	SYS(mprotect(guard + PG, PG, PROT_READ));
	check_pattern(guard, 3 * PG, 3, "guard area");
	return pass();
}
