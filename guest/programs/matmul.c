/*
 * matmul: C = A x B for N x N doubles in the VM's memory, the rows of C
 * split between the vCPUs (the application-level scaling workload of
 * docs/benchmarks.md). A, B and C lie at the start of guest memory; each
 * vCPU fills its band of rows of A and of B, and after a barrier computes
 * its band of C reading all of B, in cache-sized tiles. vCPU 0 then
 * multiplies again alone,
 * into a fourth matrix, and checks that every element of C is the same
 * bit for bit (each element is summed in the same order both times).
 *
 *   matmul [N]      default 1024 (32 MiB of memory for N = 1024)
 *
 * Output (vCPU 0):
 *   "matmul: n=N vcpus=V multiply_s=<seconds> checksum=<16 hex> check=ok"
 * where multiply_s is the parallel multiply alone (first barrier to the
 * last vCPU's end), and the exit status is 1 if the check failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellguest.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Small values with an exact binary fraction: products and sums of a
 * few thousand of them stay exact enough to differ only by bugs. */
static double init_a(uint32_t i, uint32_t j)
{
	return (double)((i * 31u + j * 17u) % 97u) / 64.0;
}

static double init_b(uint32_t i, uint32_t j)
{
	return (double)((i * 13u + j * 7u) % 89u) / 32.0;
}

/*
 * Rows lo..hi of c = a x b, in blocks: TI rows of c at a time take their
 * products from TK rows of b at a time (TK x N doubles, 512 KiB for
 * N = 1024, kept in the core's cache while the TI rows use them). Each
 * element still sums its products in k order, so any split of the rows
 * gives the serial result bit for bit. Unblocked, the multiply streams
 * all of b for every row of c: two nodes on one machine then each
 * stream their own copy of b through the last-level cache they share,
 * and the figure measures that cache, not the DSM.
 */
#define TI 16
#define TK 64

static void multiply(const double *a, const double *b, double *c, uint32_t n,
		     uint32_t lo, uint32_t hi)
{
	for (uint32_t i = lo; i < hi; i++)
		memset(c + (size_t)i * n, 0, (size_t)n * sizeof(*c));
	for (uint32_t ii = lo; ii < hi; ii += TI) {
		uint32_t ie = ii + TI < hi ? ii + TI : hi;

		for (uint32_t kk = 0; kk < n; kk += TK) {
			uint32_t ke = kk + TK < n ? kk + TK : n;

			for (uint32_t i = ii; i < ie; i++) {
				double *ci = c + (size_t)i * n;

				for (uint32_t k = kk; k < ke; k++) {
					double aik = a[(size_t)i * n + k];
					const double *bk = b + (size_t)k * n;

					for (uint32_t j = 0; j < n; j++)
						ci[j] += aik * bk[j];
				}
			}
		}
	}
}

/* vCPU 0's check: a serial product into d, compared with c. */
static int check(const double *a, const double *b, const double *c, double *d,
		 uint32_t n)
{
	multiply(a, b, d, n, 0, n);
	for (size_t k = 0; k < (size_t)n * n; k++)
		if (memcmp(&c[k], &d[k], sizeof(double)) != 0) {
			printf("matmul: c[%zu][%zu] = %.17g, serial %.17g\n",
			       k / n, k % n, c[k], d[k]);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1024;
	size_t nn = (size_t)n * n;
	double *a, *b, *c, *d, t0, t1;
	uint32_t lo, hi;
	unsigned v, nv;

	if (cg_init())
		return 2;
	if (n < 1 || n > 8192 || nn * 4 * sizeof(double) > cg_mem_size()) {
		fprintf(stderr, "matmul: n=%u needs %zu bytes; memory is %zu\n",
			n, nn * 4 * sizeof(double), cg_mem_size());
		return 2;
	}
	v = cg_vcpu();
	nv = cg_nvcpus();
	a = cg_mem();
	b = a + nn;
	c = b + nn;
	d = c + nn;
	lo = (uint32_t)((uint64_t)n * v / nv);
	hi = (uint32_t)((uint64_t)n * (v + 1) / nv);
	for (uint32_t i = lo; i < hi; i++)
		for (uint32_t j = 0; j < n; j++) {
			a[(size_t)i * n + j] = init_a(i, j);
			b[(size_t)i * n + j] = init_b(i, j);
		}
	if (cg_barrier(0))
		return 3;
	t0 = now_s();
	multiply(a, b, c, n, lo, hi);
	if (cg_barrier(0))
		return 3;
	t1 = now_s();
	if (v != 0)
		return 0;
	if (check(a, b, c, d, n))
		return 1;
	printf("matmul: n=%u vcpus=%u multiply_s=%.3f checksum=%016llx "
	       "check=ok\n",
	       n, nv, t1 - t0,
	       (unsigned long long)cg_fnv(CG_FNV_INIT, c, nn * sizeof(*c)));
	return 0;
}
