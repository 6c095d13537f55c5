/*
 * memtest: the Linux guests' memory tester. Writes N MiB with a pattern
 * derived from a seed, reads it back and checks every word, then prints
 * a checksum of the whole. The same program run on the host prints the
 * same checksum, so a test compares a guest's line with the host's:
 *
 *   memtest MIB [SEED]   ->  memtest: mib=MIB seed=SEED checksum=HEX ok
 *
 * Exit 0 when every word read back as written, 1 (with the first bad
 * offset) otherwise, 2 on bad arguments or no memory. Built static, so it
 * runs from the guests' initramfs without a C library there.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	return x ^ (x >> 29);
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
	uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
	uint64_t n, sum = 0xcbf29ce484222325ull;
	uint64_t *m;

	if (mib == 0 || mib > (1ul << 20)) {
		fprintf(stderr, "usage: memtest MIB [SEED] (MIB 1..1048576)\n");
		return 2;
	}
	n = (uint64_t)mib << 17; /* 8-byte words */
	m = malloc(n * sizeof(*m));
	if (!m) {
		fprintf(stderr, "memtest: cannot allocate %lu MiB\n", mib);
		return 2;
	}
	for (uint64_t i = 0; i < n; i++)
		m[i] = word(seed, i);
	for (uint64_t i = 0; i < n; i++) {
		if (m[i] != word(seed, i)) {
			printf("memtest: mib=%lu seed=%llu bad word at byte "
			       "%llu\n",
			       mib, (unsigned long long)seed,
			       (unsigned long long)(i * 8));
			return 1;
		}
		sum = (sum ^ m[i]) * 0x100000001b3ull;
	}
	printf("memtest: mib=%lu seed=%llu checksum=%016llx ok\n", mib,
	       (unsigned long long)seed, (unsigned long long)sum);
	return 0;
}
