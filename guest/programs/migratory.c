/*
 * migratory: a working set that moves from vCPU to vCPU (Disco's
 * migratory sharing): in phase p, vCPU p mod N alone reads and updates
 * every word of a WS_KB KiB set ROUNDS times, then all meet at a
 * barrier; after PHASES phases vCPU 0 prints a checksum of the set.
 * The result does not depend on the vCPU count or placement.
 *
 *   migratory [WS_KB [PHASES [ROUNDS]]]      defaults 1024, 12 and 4
 *
 * Output (vCPU 0): "migratory: ws_kb=K phases=P rounds=R checksum=<hex>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cellguest.h"

int main(int argc, char **argv)
{
	uint64_t kb = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	unsigned phases = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 12;
	unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 4;
	uint64_t *ws, words;
	unsigned v, nv;

	if (cg_init())
		return 2;
	words = kb * 1024 / 8;
	if (!words || words * 8 > cg_mem_size()) {
		fprintf(stderr, "migratory: a set of %llu KiB does not fit\n",
			(unsigned long long)kb);
		return 2;
	}
	v = cg_vcpu();
	nv = cg_nvcpus();
	ws = cg_mem();
	for (unsigned p = 0; p < phases; p++) {
		if (p % nv == v)
			for (unsigned r = 0; r < rounds; r++)
				for (uint64_t i = 0; i < words; i++)
					ws[i] = ws[i] * 6364136223846793005ull +
						i + p;
		if (cg_barrier(1))
			return 3;
	}
	if (v == 0)
		printf("migratory: ws_kb=%llu phases=%u rounds=%u "
		       "checksum=%016llx\n",
		       (unsigned long long)kb, phases, rounds,
		       (unsigned long long)cg_fnv(CG_FNV_INIT, ws, words * 8));
	return 0;
}
