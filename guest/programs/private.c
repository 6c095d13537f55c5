/*
 * private: each vCPU works on its own pages only (Disco's private-memory
 * workload): memory is cut into one slice per vCPU; each vCPU writes a
 * pattern over its slice ROUNDS times and checks it reads back. No page
 * is shared, so after first touch nothing should cross the network.
 *
 *   private [SLICE_KB [ROUNDS]]      defaults 1024 and 8
 *
 * Output: one line per vCPU, "private: vcpu=V slice_kb=K checksum=<hex>";
 * exit 1 if a slice did not read back what was written.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cellguest.h"

int main(int argc, char **argv)
{
	uint64_t kb = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 8;
	uint64_t *slice, words, h = CG_FNV_INIT;
	unsigned v;

	if (cg_init())
		return 2;
	v = cg_vcpu();
	words = kb * 1024 / 8;
	if (!words || words * 8 * cg_nvcpus() > cg_mem_size()) {
		fprintf(stderr, "private: %u slices of %llu KiB do not fit\n",
			cg_nvcpus(), (unsigned long long)kb);
		return 2;
	}
	slice = (uint64_t *)cg_mem() + words * v;
	for (unsigned r = 0; r < rounds; r++) {
		for (uint64_t i = 0; i < words; i++)
			slice[i] = (i * 0x9e3779b97f4a7c15ull) ^ r ^ v;
		for (uint64_t i = 0; i < words; i++)
			if (slice[i] != ((i * 0x9e3779b97f4a7c15ull) ^ r ^ v)) {
				printf("private: vcpu=%u word %llu changed\n",
				       v, (unsigned long long)i);
				return 1;
			}
	}
	h = cg_fnv(h, slice, words * 8);
	printf("private: vcpu=%u slice_kb=%llu checksum=%016llx\n", v,
	       (unsigned long long)kb, (unsigned long long)h);
	return 0;
}
