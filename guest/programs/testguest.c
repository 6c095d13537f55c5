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
 *   testguest escape FILE PORT PID
 *                           vCPU 0 tries what a confined guest may not:
 *                           read FILE (a host file) and /etc/passwd,
 *                           write into its VM directory, reach TCP PORT
 *                           on 127.0.0.1, read /proc/PID/environ and
 *                           signal PID (another VM's vCPU) and its
 *                           agent; prints its uid and a
 *                           line per try; exit 0 when all were refused
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
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

/* One try: rc < 0 (errno set) is refused, as it should be. */
static int tried(const char *what, int rc)
{
	if (rc < 0) {
		printf("testguest: escape: %s: refused (%s)\n", what,
		       strerror(errno));
		return 0;
	}
	printf("testguest: escape: %s: ALLOWED\n", what);
	return 1;
}

static int try_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	if (fd < 0)
		return -1;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc;
}

static int escape(int argc, char **argv)
{
	char what[600];
	int bad = 0;

	if (argc < 3)
		return 2;
	printf("testguest: escape: uid=%u gid=%u\n", (unsigned)getuid(),
	       (unsigned)getgid());
	snprintf(what, sizeof(what), "open %s", argv[0]);
	bad += tried(what, open(argv[0], O_RDONLY));
	bad += tried("open /etc/passwd", open("/etc/passwd", O_RDONLY));
	bad += tried("create /vm/x",
		     open("/vm/x", O_WRONLY | O_CREAT | O_EXCL, 0644));
	snprintf(what, sizeof(what), "connect 127.0.0.1:%s", argv[1]);
	bad += tried(what, try_connect(atoi(argv[1])));
	snprintf(what, sizeof(what), "open /proc/%s/environ", argv[2]);
	bad += tried(what, open(what + 5, O_RDONLY));
	snprintf(what, sizeof(what), "signal pid %s", argv[2]);
	bad += tried(what, kill((pid_t)atoi(argv[2]), SIGTERM));
	bad += tried("signal the agent", kill(getppid(), SIGTERM));
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	long arg = argc > 2 ? strtol(argv[2], NULL, 10) : 0;

	if (cg_init())
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && strcmp(argv[1], "escape") == 0)
		return cg_vcpu() == 0 ? escape(argc - 2, argv + 2) : 0;
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
