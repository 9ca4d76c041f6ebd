/*
 * heap_hash: 256 MiB of malloc'd heap filled with xorshift64 output, and 1 MiB grown with sbrk()
 * filled with a pattern. FNV-1a hashes of both are taken before READY and compared after SIGTERM,
 * as are the addresses (the heap block and the program break must not move).
 */
#include "scenario.h"

#define HEAP_BYTES (256UL << 20)
#define BRK_BYTES (1UL << 20)

/* FNV-1a over 64-bit words: the heap is big, hashing bytes would be slow. */
static uint64_t hash_words(const uint64_t *w, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= w[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int main(void)
{
	install_term_handler();

	uint64_t *heap = malloc(HEAP_BYTES);
	CHECK(heap, "malloc of %lu bytes failed", HEAP_BYTES);
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	for (size_t i = 0; i < HEAP_BYTES / 8; i++)
		heap[i] = xorshift64(&seed);
	uint64_t heap_hash = hash_words(heap, HEAP_BYTES / 8);

	unsigned char *brk_area = sbrk(BRK_BYTES);
	CHECK(brk_area != (void *)-1, "sbrk: %s", strerror(errno));
	for (size_t i = 0; i < BRK_BYTES; i++)
		brk_area[i] = (unsigned char)(i * 7 + (i >> 12));
	uint64_t brk_hash = fnv1a(brk_area, BRK_BYTES);
	void *brk_end = sbrk(0);

	ready();
	wait_term();

	CHECK(sbrk(0) == brk_end, "program break moved from %p to %p", brk_end, sbrk(0));
	uint64_t h = fnv1a(brk_area, BRK_BYTES);
	CHECK(h == brk_hash, "brk area hash %016llx, expected %016llx", (unsigned long long)h,
	      (unsigned long long)brk_hash);
	h = hash_words(heap, HEAP_BYTES / 8);
	if (h != heap_hash) {
		seed = 0x9e3779b97f4a7c15ULL;
		for (size_t i = 0; i < HEAP_BYTES / 8; i++)
			if (heap[i] != xorshift64(&seed))
				fail("heap hash %016llx, expected %016llx; first bad word at offset %zu",
				     (unsigned long long)h, (unsigned long long)heap_hash, i * 8);
		fail("heap hash %016llx, expected %016llx", (unsigned long long)h,
		     (unsigned long long)heap_hash);
	}
	return pass();
}
