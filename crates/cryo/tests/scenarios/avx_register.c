/*
 * avx_register: vector and general registers must survive checkpoint/restore.
 * One asm block loads known patterns into ymm8..ymm15 (xmm8..xmm15 without AVX) and r12/r13,
 * writes READY with a raw write(2), then loops doing raw getppid() and nanosleep(200 us) syscalls
 * until SIGTERM sets got_term, and stores the registers back. No C code runs between the load
 * and the store except the SIGTERM handler (whose register state the kernel saves). MXCSR
 * (rounding toward zero) and the x87 control word (53-bit precision) are set before and checked
 * after too.
 */
#include "scenario.h"
#include <cpuid.h>
#include <stddef.h>

struct ctx {
	unsigned char pat[8][32];
	unsigned char out[8][32];
	long fd;
	const char *msg;
	long msg_len;
	struct timespec ts;
	long iters;
	volatile sig_atomic_t *term;
	uint64_t r12, r13;
};

static int have_avx(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_AVX) || !(c & bit_OSXSAVE))
		return 0;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 6) == 6;
}

#define REGS_IN(mov, w)                                                                            \
	mov " 0(%%rbx), %%" w "8\n\t" mov " 32(%%rbx), %%" w "9\n\t" mov " 64(%%rbx), %%" w          \
	    "10\n\t" mov " 96(%%rbx), %%" w "11\n\t" mov " 128(%%rbx), %%" w "12\n\t" mov            \
	    " 160(%%rbx), %%" w "13\n\t" mov " 192(%%rbx), %%" w "14\n\t" mov " 224(%%rbx), %%" w    \
	    "15\n\t"
#define REGS_OUT(mov, w)                                                                           \
	mov " %%" w "8, 256(%%rbx)\n\t" mov " %%" w "9, 288(%%rbx)\n\t" mov " %%" w                  \
	    "10, 320(%%rbx)\n\t" mov " %%" w "11, 352(%%rbx)\n\t" mov " %%" w                        \
	    "12, 384(%%rbx)\n\t" mov " %%" w "13, 416(%%rbx)\n\t" mov " %%" w                        \
	    "14, 448(%%rbx)\n\t" mov " %%" w "15, 480(%%rbx)\n\t"

/* READY via write(fd), close(fd), then syscalls until *term. */
#define LOOP                                                                                       \
	"movabs $0x1122334455667788, %%r12\n\t"                                                    \
	"movabs $0x99aabbccddeeff00, %%r13\n\t"                                                    \
	"mov $1, %%eax\n\t"                                                                        \
	"mov %c[fd](%%rbx), %%rdi\n\t"                                                             \
	"mov %c[msg](%%rbx), %%rsi\n\t"                                                            \
	"mov %c[len](%%rbx), %%rdx\n\t"                                                            \
	"syscall\n\t"                                                                              \
	"mov $3, %%eax\n\t"                                                                        \
	"mov %c[fd](%%rbx), %%rdi\n\t"                                                             \
	"syscall\n\t"                                                                              \
	"1:\n\t"                                                                                   \
	"mov $110, %%eax\n\t"                                                                      \
	"syscall\n\t"                                                                              \
	"mov $35, %%eax\n\t"                                                                       \
	"lea %c[ts](%%rbx), %%rdi\n\t"                                                             \
	"xor %%esi, %%esi\n\t"                                                                     \
	"syscall\n\t"                                                                              \
	"incq %c[iters](%%rbx)\n\t"                                                                \
	"mov %c[term](%%rbx), %%rax\n\t"                                                           \
	"mov (%%rax), %%eax\n\t"                                                                   \
	"test %%eax, %%eax\n\t"                                                                    \
	"jz 1b\n\t"                                                                                \
	"mov %%r12, %c[r12](%%rbx)\n\t"                                                            \
	"mov %%r13, %c[r13](%%rbx)\n\t"

#define OPERANDS                                                                                   \
	:: "b"(c), [fd] "i"(offsetof(struct ctx, fd)), [msg] "i"(offsetof(struct ctx, msg)),         \
	  [len] "i"(offsetof(struct ctx, msg_len)), [ts] "i"(offsetof(struct ctx, ts)),             \
	  [iters] "i"(offsetof(struct ctx, iters)), [term] "i"(offsetof(struct ctx, term)),         \
	  [r12] "i"(offsetof(struct ctx, r12)), [r13] "i"(offsetof(struct ctx, r13))                \
	: "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "xmm8", "xmm9", "xmm10",          \
	  "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc"

int main(void)
{
	install_term_handler();
	int avx = have_avx();
	static struct ctx ctx;
	struct ctx *c = &ctx;
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	for (int r = 0; r < 8; r++)
		for (int i = 0; i < 32; i += 8) {
			uint64_t v = xorshift64(&seed);
			memcpy(&c->pat[r][i], &v, 8);
		}
	const char *path = getenv("CRYO_SCENARIO_STATUS");
	c->fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : dup(1);
	CHECK(c->fd >= 0, "open status: %s", strerror(errno));
	c->msg = "READY\n";
	c->msg_len = 6;
	c->ts.tv_nsec = 200000;
	c->term = &got_term;

	unsigned mxcsr = 0x1f80 | 0x6000, fpucw = 0x027f;
	__asm__ volatile("ldmxcsr %0" ::"m"(mxcsr));
	__asm__ volatile("fldcw %0" ::"m"(fpucw));

	if (avx)
		__asm__ volatile(REGS_IN("vmovdqu", "ymm") LOOP REGS_OUT("vmovdqu", "ymm") OPERANDS);
	else
		__asm__ volatile(REGS_IN("movdqu", "xmm") LOOP REGS_OUT("movdqu", "xmm") OPERANDS);

	unsigned mxcsr_after = 0;
	unsigned short fpucw_after = 0;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr_after));
	__asm__ volatile("fnstcw %0" : "=m"(fpucw_after));

	int width = avx ? 32 : 16;
	for (int r = 0; r < 8; r++)
		for (int i = 0; i < width; i++)
			CHECK(c->out[r][i] == c->pat[r][i], "%s%d byte %d is %02x, expected %02x",
			      avx ? "ymm" : "xmm", r + 8, i, c->out[r][i], c->pat[r][i]);
	CHECK(c->r12 == 0x1122334455667788ULL, "r12 is %016llx", (unsigned long long)c->r12);
	CHECK(c->r13 == 0x99aabbccddeeff00ULL, "r13 is %016llx", (unsigned long long)c->r13);
	CHECK((mxcsr_after & ~0x3fu) == (mxcsr & ~0x3fu), "MXCSR is %#x, expected %#x",
	      mxcsr_after, mxcsr);
	CHECK(fpucw_after == fpucw, "x87 control word is %#x, expected %#x", fpucw_after, fpucw);
	CHECK(c->iters > 0, "the syscall loop never ran");
	return pass();
}
