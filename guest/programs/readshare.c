/*
 * readshare: many vCPUs reading one large table, like a raytracer's scene
 * (Disco's read-shared workload). vCPU 0 fills a table of TABLE_KB KiB
 * with a pseudo-random sequence; after a barrier every vCPU walks all of
 * it ROUNDS times along a vCPU-specific stride and checksums what it
 * read. With FRAMES > 1 this repeats: before each frame vCPU 0 writes a
 * new scene over the table (an animation), so every reader's copies are
 * invalidated once per frame. vCPU 0 checks every vCPU saw the same
 * table, after each frame and at the end.
 *
 *   readshare [TABLE_KB [ROUNDS [FRAMES]]]      defaults 4096, 4 and 1
 *
 * Output (vCPU 0): "readshare: table_kb=K rounds=R frames=F vcpus=V
 * checksum=<hex>"; exit 1 when vCPUs disagree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cellguest.h"

#define SLOTS 64 /* result slots, one cache line apart, after the table */

/* Every vCPU puts its sum in its slot; after a barrier vCPU 0 compares
 * them (1: they differ, 3: a barrier failed, 0: the same). A second
 * barrier keeps the slots until it has. */
static int check(uint64_t *result, unsigned v, unsigned nv, uint64_t sum,
		 unsigned frame)
{
	result[(v % SLOTS) * 8] = sum;
	if (cg_barrier(1))
		return 3;
	if (v == 0)
		for (unsigned i = 1; i < nv && i < SLOTS; i++)
			if (result[i * 8] != sum) {
				printf("readshare: frame %u: vcpu %u read "
				       "%016llx, vcpu 0 read %016llx\n",
				       frame, i,
				       (unsigned long long)result[i * 8],
				       (unsigned long long)sum);
				return 1;
			}
	return cg_barrier(1) ? 3 : 0;
}

int main(int argc, char **argv)
{
	uint64_t kb = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 4;
	unsigned frames = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 1;
	uint64_t *table, *result, words, sum = 0, x = 88172645463325252ull;
	unsigned v, nv;
	int bad;

	if (cg_init())
		return 2;
	words = kb * 1024 / 8;
	if (!words || (words + SLOTS * 8) * 8 > cg_mem_size()) {
		fprintf(stderr, "readshare: table of %llu KiB does not fit\n",
			(unsigned long long)kb);
		return 2;
	}
	v = cg_vcpu();
	nv = cg_nvcpus();
	table = cg_mem();
	result = table + words;
	for (unsigned f = 0; f < frames; f++) {
		if (v == 0)
			for (uint64_t i = 0; i < words; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				table[i] = x;
			}
		if (cg_barrier(1))
			return 3;
		/* Every vCPU adds the same words (order does not matter
		 * for a sum), starting at a different place. */
		for (unsigned r = 0; r < rounds; r++)
			for (uint64_t i = 0; i < words; i++)
				sum += table[(i + (uint64_t)v * words / nv) %
					     words];
		/* read before rewritten; all saw the same so far */
		if (frames > 1 && f + 1 < frames &&
		    (bad = check(result, v, nv, sum, f)) != 0)
			return bad;
	}
	if ((bad = check(result, v, nv, sum, frames)) != 0)
		return bad;
	if (v == 0) {
		printf("readshare: table_kb=%llu rounds=%u frames=%u "
		       "vcpus=%u checksum=%016llx\n",
		       (unsigned long long)kb, rounds, frames, nv,
		       (unsigned long long)sum);
	}
	return 0;
}
