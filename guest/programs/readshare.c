/*
 * readshare: many vCPUs reading one large table, like a raytracer's scene
 * (Disco's read-shared workload). vCPU 0 fills a table of TABLE_KB KiB
 * with a pseudo-random sequence; after a barrier every vCPU walks all of
 * it ROUNDS times along a vCPU-specific stride and checksums what it
 * read; vCPU 0 checks every vCPU saw the same table.
 *
 *   readshare [TABLE_KB [ROUNDS]]      defaults 4096 and 4
 *
 * Output (vCPU 0): "readshare: table_kb=K rounds=R vcpus=V checksum=<hex>";
 * exit 1 when vCPUs disagree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cellguest.h"

#define SLOTS 64 /* result slots, one cache line apart, after the table */

int main(int argc, char **argv)
{
	uint64_t kb = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 4;
	uint64_t *table, *result, words, sum = 0, x = 88172645463325252ull;
	unsigned v, nv;

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
	if (v == 0)
		for (uint64_t i = 0; i < words; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			table[i] = x;
		}
	if (cg_barrier(1))
		return 3;
	/* Every vCPU adds the same words (order does not matter for a
	 * sum), starting at a different place. */
	for (unsigned r = 0; r < rounds; r++)
		for (uint64_t i = 0; i < words; i++)
			sum += table[(i + (uint64_t)v * words / nv) % words];
	result[(v % SLOTS) * 8] = sum;
	if (cg_barrier(1))
		return 3;
	if (v == 0) {
		for (unsigned i = 1; i < nv && i < SLOTS; i++)
			if (result[i * 8] != sum) {
				printf("readshare: vcpu %u read %016llx, "
				       "vcpu 0 read %016llx\n",
				       i, (unsigned long long)result[i * 8],
				       (unsigned long long)sum);
				return 1;
			}
		printf("readshare: table_kb=%llu rounds=%u vcpus=%u "
		       "checksum=%016llx\n",
		       (unsigned long long)kb, rounds, nv,
		       (unsigned long long)sum);
	}
	return 0;
}
