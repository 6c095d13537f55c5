/*
 * spmd: an SPMD integer Jacobi stencil over the VM's memory, Disco's
 * "engineering" workload in miniature. Two N x N grids of uint32 live at
 * the start of guest memory; each vCPU owns a band of rows, every sweep
 * ends in a barrier, and vCPU 0 prints an FNV-1a checksum of the final
 * grid. Integer arithmetic makes the result independent of how rows are
 * split, so any vCPU count (or standalone) prints the same checksum.
 *
 *   spmd [N [ITERATIONS]]      defaults 256 and 20
 *
 * Output (vCPU 0): "spmd: n=N iterations=I vcpus=V checksum=<16 hex>
 * sweeps_s=<seconds>", sweeps_s being the sweeps alone (from the barrier
 * after the grid's first values to the last sweep's).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cellguest.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t init_value(uint32_t i, uint32_t j)
{
	uint32_t x = i * 2654435761u ^ j * 40503u;

	return (x ^ (x >> 15)) & 0xffff;
}

static void sweep(const uint32_t *src, uint32_t *dst, uint32_t n, uint32_t lo,
		  uint32_t hi)
{
	for (uint32_t i = lo; i < hi; i++)
		for (uint32_t j = 0; j < n; j++) {
			size_t k = (size_t)i * n + j;

			if (i == 0 || j == 0 || i == n - 1 || j == n - 1)
				dst[k] = src[k];
			else
				dst[k] = (src[k - n] + src[k + n] + src[k - 1] +
					  src[k + 1]) /
					 4;
		}
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 256;
	uint32_t iters = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 20;
	uint32_t *grid[2], lo, hi;
	double t0;
	unsigned v, nv;
	int rc = cg_init();

	if (rc)
		return 2;
	if (n < 3 || (size_t)n * n * 2 * sizeof(uint32_t) > cg_mem_size()) {
		fprintf(stderr, "spmd: n=%u needs %zu bytes; memory is %zu\n",
			n, (size_t)n * n * 2 * sizeof(uint32_t), cg_mem_size());
		return 2;
	}
	v = cg_vcpu();
	nv = cg_nvcpus();
	grid[0] = cg_mem();
	grid[1] = grid[0] + (size_t)n * n;
	lo = (uint32_t)((uint64_t)n * v / nv);
	hi = (uint32_t)((uint64_t)n * (v + 1) / nv);
	for (uint32_t i = lo; i < hi; i++)
		for (uint32_t j = 0; j < n; j++)
			grid[0][(size_t)i * n + j] = init_value(i, j);
	if (cg_barrier(0))
		return 3;
	t0 = now_s();
	for (uint32_t it = 0; it < iters; it++) {
		sweep(grid[it & 1], grid[(it + 1) & 1], n, lo, hi);
		if (cg_barrier(0))
			return 3;
	}
	if (v == 0) {
		uint64_t h = cg_fnv(CG_FNV_INIT, grid[iters & 1],
				    (size_t)n * n * sizeof(uint32_t));

		printf("spmd: n=%u iterations=%u vcpus=%u checksum=%016llx "
		       "sweeps_s=%.3f\n",
		       n, iters, nv, (unsigned long long)h, now_s() - t0);
	}
	return 0;
}
