/*
 * avx_register: vector and general registers must survive checkpoint/restore.
 * One asm block loads known patterns into ymm8..ymm15 (xmm8..xmm15 without AVX) and r12/r13,
 * with AVX-512 also into zmm16..zmm31 (Hi16_ZMM) and k1..k7 (opmask), whose places in the XSAVE
 * area differ between CPUs (AMD's Zen 4 has no MPX gap before them); the VEX loads of ymm8..15
 * zero the upper halves of zmm8..15 (ZMM_Hi256), which must read zero after the restore. It
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
	unsigned char zpat[16][64];
	unsigned char zout[16][64];
	unsigned char zlow[8][64]; /* zmm8..15 after the loop: upper halves zero */
	uint16_t kpat[7];
	uint16_t kout[7];
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

/* AVX-512F usable: CPUID says so and XCR0 enables opmask, ZMM_Hi256 and Hi16_ZMM. */
static int have_avx512(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX512F))
		return 0;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 0xe6) == 0xe6;
}

/* The AVX-512 part: the assembler takes these without -mavx512f (gcc uses none of these
 * registers, so they are not named as clobbers); they run only when have_avx512(). */
#define Z(op, n, i) op " %c[zpat]+64*" #i "(%%rbx), %%zmm" #n "\n\t"
#define ZREGS_IN                                                                                   \
	Z("vmovdqu64", 16, 0) Z("vmovdqu64", 17, 1) Z("vmovdqu64", 18, 2) Z("vmovdqu64", 19, 3)    \
	Z("vmovdqu64", 20, 4) Z("vmovdqu64", 21, 5) Z("vmovdqu64", 22, 6) Z("vmovdqu64", 23, 7)    \
	Z("vmovdqu64", 24, 8) Z("vmovdqu64", 25, 9) Z("vmovdqu64", 26, 10)                         \
	Z("vmovdqu64", 27, 11) Z("vmovdqu64", 28, 12) Z("vmovdqu64", 29, 13)                       \
	Z("vmovdqu64", 30, 14) Z("vmovdqu64", 31, 15) K_IN(1, 0) K_IN(2, 1) K_IN(3, 2) K_IN(4, 3)  \
	K_IN(5, 4) K_IN(6, 5) K_IN(7, 6)
#define K_IN(n, i) "kmovw %c[kpat]+2*" #i "(%%rbx), %%k" #n "\n\t"
#define ZO(dst, n, i) "vmovdqu64 %%zmm" #n ", %c[" dst "]+64*" #i "(%%rbx)\n\t"
#define K_OUT(n, i) "kmovw %%k" #n ", %c[kout]+2*" #i "(%%rbx)\n\t"
#define ZREGS_OUT                                                                                  \
	ZO("zout", 16, 0) ZO("zout", 17, 1) ZO("zout", 18, 2) ZO("zout", 19, 3) ZO("zout", 20, 4)  \
	ZO("zout", 21, 5) ZO("zout", 22, 6) ZO("zout", 23, 7) ZO("zout", 24, 8) ZO("zout", 25, 9)  \
	ZO("zout", 26, 10) ZO("zout", 27, 11) ZO("zout", 28, 12) ZO("zout", 29, 13)                \
	ZO("zout", 30, 14) ZO("zout", 31, 15) ZO("zlow", 8, 0) ZO("zlow", 9, 1) ZO("zlow", 10, 2)  \
	ZO("zlow", 11, 3) ZO("zlow", 12, 4) ZO("zlow", 13, 5) ZO("zlow", 14, 6) ZO("zlow", 15, 7)  \
	K_OUT(1, 0) K_OUT(2, 1) K_OUT(3, 2) K_OUT(4, 3) K_OUT(5, 4) K_OUT(6, 5) K_OUT(7, 6)

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
	  [r12] "i"(offsetof(struct ctx, r12)), [r13] "i"(offsetof(struct ctx, r13)),               \
	  [zpat] "i"(offsetof(struct ctx, zpat)), [zout] "i"(offsetof(struct ctx, zout)),           \
	  [zlow] "i"(offsetof(struct ctx, zlow)), [kpat] "i"(offsetof(struct ctx, kpat)),           \
	  [kout] "i"(offsetof(struct ctx, kout))                                                    \
	: "rax", "rcx", "rdx", "rsi", "rdi", "r11", "r12", "r13", "xmm8", "xmm9", "xmm10",          \
	  "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc"

int main(void)
{
	install_term_handler();
	int avx = have_avx();
	int avx512 = avx && have_avx512();
	static struct ctx ctx;
	struct ctx *c = &ctx;
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	for (int r = 0; r < 8; r++)
		for (int i = 0; i < 32; i += 8) {
			uint64_t v = xorshift64(&seed);
			memcpy(&c->pat[r][i], &v, 8);
		}
	for (int r = 0; r < 16; r++)
		for (int i = 0; i < 64; i += 8) {
			uint64_t v = xorshift64(&seed);
			memcpy(&c->zpat[r][i], &v, 8);
		}
	for (int k = 0; k < 7; k++)
		c->kpat[k] = (uint16_t)xorshift64(&seed) | 1; /* never zero */
	memset(c->zlow, 0xee, sizeof(c->zlow));
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

	if (avx512)
		__asm__ volatile(REGS_IN("vmovdqu", "ymm") ZREGS_IN LOOP REGS_OUT("vmovdqu", "ymm")
				     ZREGS_OUT OPERANDS);
	else if (avx)
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
	for (int r = 0; avx512 && r < 16; r++)
		for (int i = 0; i < 64; i++)
			CHECK(c->zout[r][i] == c->zpat[r][i], "zmm%d byte %d is %02x, expected %02x",
			      r + 16, i, c->zout[r][i], c->zpat[r][i]);
	for (int r = 0; avx512 && r < 8; r++) {
		CHECK(!memcmp(c->zlow[r], c->pat[r], 32), "zmm%d low half is not ymm%d", r + 8, r + 8);
		for (int i = 32; i < 64; i++)
			CHECK(c->zlow[r][i] == 0, "zmm%d byte %d is %02x, expected 0 (ZMM_Hi256)",
			      r + 8, i, c->zlow[r][i]);
	}
	for (int k = 0; avx512 && k < 7; k++)
		CHECK(c->kout[k] == c->kpat[k], "k%d is %#x, expected %#x", k + 1, c->kout[k],
		      c->kpat[k]);
	CHECK(c->r12 == 0x1122334455667788ULL, "r12 is %016llx", (unsigned long long)c->r12);
	CHECK(c->r13 == 0x99aabbccddeeff00ULL, "r13 is %016llx", (unsigned long long)c->r13);
	CHECK((mxcsr_after & ~0x3fu) == (mxcsr & ~0x3fu), "MXCSR is %#x, expected %#x",
	      mxcsr_after, mxcsr);
	CHECK(fpucw_after == fpucw, "x87 control word is %#x, expected %#x", fpucw_after, fpucw);
	CHECK(c->iters > 0, "the syscall loop never ran");
	return pass();
}
