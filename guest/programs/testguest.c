/*
 * testguest: behaviours the tests need from a guest.
 *
 *   testguest exit N        vCPU 0 exits with status N, the others 0
 *   testguest crash         vCPU 0 dies of SIGABRT (abort(): sanitizers
 *                           leave it alone), the others wait
 *   testguest sleep SEC     every vCPU sleeps, printing a line each second
 *   testguest counter N     every vCPU adds 1 to a shared counter N times
 *                           under lock 5; vCPU 0 prints the total
 *   testguest steps N MS    N steps of MS ms each; in step s every vCPU
 *                           adds s * vcpu + 1 to its own slot, then a
 *                           barrier; vCPU 0 prints the sum of all slots
 *   testguest attach R      tries to map DSM region R (another VM's)
 *                           through the agent's hand-off: exit 0 when
 *                           refused with EACCES, 1 when it was mapped
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cellguest.h"
#include "dsm/dsm.h"

static int counter(long n)
{
	volatile uint64_t *c = cg_mem();

	for (long i = 0; i < n; i++) {
		if (cg_lock(5))
			return 3;
		(*c)++;
		if (cg_unlock(5))
			return 3;
	}
	if (cg_barrier(2))
		return 3;
	if (cg_vcpu() == 0)
		printf("testguest: counter=%llu\n", (unsigned long long)*c);
	return 0;
}

static int steps(long n, long ms)
{
	volatile uint64_t *slot = (uint64_t *)cg_mem() + 512;
	uint64_t total = 0;

	for (long s = 0; s < n; s++) {
		slot[cg_vcpu() * 8] += (uint64_t)s * cg_vcpu() + 1;
		usleep((useconds_t)ms * 1000);
		if (cg_barrier(3))
			return 3;
	}
	if (cg_vcpu() != 0)
		return 0;
	for (unsigned v = 0; v < cg_nvcpus(); v++)
		total += slot[v * 8];
	printf("testguest: steps=%ld total=%llu\n", n,
	       (unsigned long long)total);
	return 0;
}

static int attach_other(uint64_t region)
{
	const char *path = getenv("CELLMON_HANDOFF");
	void *base;
	size_t size;
	int sock, rc;

	if (!path)
		return 2;
	rc = dsm_attach(path, region, NULL, &base, &size, &sock);
	printf("testguest: attach region %llu: %s\n",
	       (unsigned long long)region, rc ? strerror(-rc) : "mapped");
	return rc == -EACCES ? 0 : 1;
}

int main(int argc, char **argv)
{
	long arg = argc > 2 ? strtol(argv[2], NULL, 10) : 0;

	if (cg_init())
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "exit") == 0)
		return cg_vcpu() == 0 ? (int)arg : 0;
	if (argc > 1 && strcmp(argv[1], "crash") == 0) {
		if (cg_vcpu() == 0)
			abort();
		pause();
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "sleep") == 0) {
		for (long s = 0; s < arg; s++) {
			printf("testguest: vcpu %u awake %ld\n", cg_vcpu(), s);
			sleep(1);
		}
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "counter") == 0)
		return counter(arg);
	if (argc > 3 && strcmp(argv[1], "steps") == 0)
		return steps(arg, strtol(argv[3], NULL, 10));
	if (argc > 2 && strcmp(argv[1], "attach") == 0)
		return attach_other(strtoull(argv[2], NULL, 10));
	fprintf(stderr, "usage: testguest exit N|crash|sleep SEC|counter "
			"N|attach REGION\n");
	return 2;
}
