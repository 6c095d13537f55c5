/*
 * diskio: a guest that uses its disks (vm create --disk). vCPU 0 does
 * the work; other vCPUs exit at once.
 *
 *   diskio read D           read all of disk D; print its checksum
 *   diskio write D SEED     write a pattern made from SEED over all of
 *                           disk D, flush; print the pattern's checksum
 *   diskio check D SEED     read disk D and compare it with the pattern;
 *                           exit 1 at the first difference
 *   diskio loop D SEED N    N rounds: write the pattern of SEED+r over
 *                           all of disk D and flush, printing each
 *                           round; exit 3 on any I/O error
 *
 * Output: "diskio: disk=D bytes=N checksum=<16 hex>" (read, write) or
 * "diskio: disk=D check ok" / "... differs at byte N".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellguest.h"

#define CHUNK (256u << 10)

static uint64_t buf[CHUNK / 8], want[CHUNK / 8];

static void pattern(uint64_t *p, uint64_t off, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len / 8; i++) {
		uint64_t w = (off + i * 8) / 8;

		p[i] = (w * 0x9e3779b97f4a7c15ull) ^ seed;
	}
}

static int loop(unsigned d, uint64_t seed, long rounds, int64_t size)
{
	for (long r = 0; r < rounds; r++) {
		for (uint64_t off = 0; off < (uint64_t)size; off += CHUNK) {
			size_t n = (uint64_t)size - off < CHUNK
					   ? (size_t)(size - off)
					   : CHUNK;
			int rc;

			pattern(buf, off, n, seed + (uint64_t)r);
			rc = cg_disk_write(d, off, buf, n);
			if (rc) {
				printf("diskio: round %ld write error %d\n", r,
				       rc);
				return 3;
			}
		}
		if (cg_disk_flush(d)) {
			printf("diskio: round %ld flush failed\n", r);
			return 3;
		}
		printf("diskio: round %ld flushed seed=%llu\n", r,
		       (unsigned long long)(seed + (uint64_t)r));
	}
	printf("diskio: disk=%u rounds=%ld done\n", d, rounds);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned d = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 0;
	uint64_t h = CG_FNV_INIT;
	int64_t size;
	int rc = 0;

	if (cg_init())
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cg_vcpu() != 0)
		return 0;
	if (argc < 3 || d >= cg_disk_count()) {
		fprintf(stderr,
			"diskio: usage: diskio read|write|check DISK "
			"[SEED] (the VM has %u disks)\n",
			cg_disk_count());
		return 2;
	}
	size = cg_disk_size(d);
	if (size < 0) {
		fprintf(stderr, "diskio: disk %u: error %d\n", d, (int)size);
		return 2;
	}
	if (strcmp(argv[1], "loop") == 0)
		return loop(d, seed, argc > 4 ? strtol(argv[4], NULL, 10) : 1,
			    size);
	for (uint64_t off = 0; off < (uint64_t)size && !rc; off += CHUNK) {
		size_t n = (uint64_t)size - off < CHUNK ? (size_t)(size - off)
							: CHUNK;

		if (strcmp(argv[1], "write") == 0) {
			pattern(buf, off, n, seed);
			rc = cg_disk_write(d, off, buf, n);
		} else {
			rc = cg_disk_read(d, off, buf, n);
		}
		if (!rc && strcmp(argv[1], "check") == 0) {
			pattern(want, off, n, seed);
			for (size_t i = 0; i < n / 8; i++)
				if (buf[i] != want[i]) {
					printf("diskio: disk=%u differs at "
					       "byte "
					       "%llu\n",
					       d,
					       (unsigned long long)(off +
								    i * 8));
					return 1;
				}
		}
		h = cg_fnv(h, buf, n);
	}
	if (!rc && strcmp(argv[1], "write") == 0)
		rc = cg_disk_flush(d);
	if (rc) {
		printf("diskio: disk=%u I/O error %d\n", d, rc);
		return 3;
	}
	if (strcmp(argv[1], "check") == 0)
		printf("diskio: disk=%u check ok\n", d);
	else
		printf("diskio: disk=%u bytes=%lld checksum=%016llx\n", d,
		       (long long)size, (unsigned long long)h);
	return 0;
}
