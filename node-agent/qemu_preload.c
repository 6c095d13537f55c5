/*
 * libcellmon-qemu-preload.so: loaded into the QEMU of a qemu-engine VM
 * (LD_PRELOAD, set by engine_qemu.c) so that the guest's RAM is served by
 * the agent's DSM node like a native guest's mapping.
 *
 * The agent creates the VM's region, passes QEMU the region's memfd as
 * fd CELLMON_QEMU_RAM_FD and has QEMU map it as guest RAM
 * (memory-backend-file,share=on,mem-path=/proc/self/fd/N). QEMU reserves
 * the area, then maps the file over it with MAP_FIXED through mmap64.
 * This library wraps mmap64/mmap: when QEMU maps, MAP_SHARED, a file that
 * is the RAM memfd (same device and inode) and of the region's size, it
 * lets the mapping happen, then registers it with a userfaultfd (missing,
 * minor and write-protect faults, kernel-mode faults too: QEMU's own
 * threads fill guest buffers from syscalls) and hands the uffd to the
 * node over CELLMON_HANDOFF for region CELLMON_REGION, waiting for the
 * node's answer (dsm_attach_mapping). The node accepts it only from this
 * VM's QEMU pid. From then on every guest page QEMU or the guest touches
 * is fetched, write-protected and invalidated by the DSM.
 *
 * Limits: one RAM mapping per process (the first that matches); a
 * hand-off that fails makes that mmap fail (QEMU exits with its own
 * message, the reason is on stderr) rather than run the guest on memory
 * the DSM does not serve. A thread watches the hand-off socket: when it
 * closes (the agent died) QEMU is killed, so no guest outlives its agent
 * (the agent also sets the parent-death signal). Other mappings pass
 * through untouched, at the cost of one fstat for shared file mappings.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsm/dsm.h"

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

static struct {
	pthread_mutex_t mu;
	bool ready, done;
	dev_t dev;
	ino_t ino;
	off_t size;
	uint64_t region;
	const char *handoff;
	int sock;
} ram = {.mu = PTHREAD_MUTEX_INITIALIZER, .sock = -1};

static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf),
			 "cellmon-qemu-preload[%d]: ", (int)getpid());

	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", buf);
}

__attribute__((constructor)) static void preload_init(void)
{
	const char *fd = getenv("CELLMON_QEMU_RAM_FD");
	const char *region = getenv("CELLMON_REGION");
	struct stat st;

	ram.handoff = getenv("CELLMON_HANDOFF");
	if (!fd || !region || !ram.handoff) {
		say("CELLMON_QEMU_RAM_FD, CELLMON_REGION or CELLMON_HANDOFF "
		    "is not set; guest RAM is not the DSM's");
		return;
	}
	if (fstat(atoi(fd), &st)) {
		say("fd %s (the RAM memfd): %s", fd, strerror(errno));
		return;
	}
	ram.dev = st.st_dev;
	ram.ino = st.st_ino;
	ram.size = st.st_size;
	ram.region = strtoull(region, NULL, 10);
	ram.ready = true;
}

/* Until the socket closes: then the agent is gone and so is the guest's
 * memory service. */
static void *watch(void *arg)
{
	char b;

	(void)arg;
	while (recv(ram.sock, &b, 1, 0) > 0 || errno == EINTR)
		;
	say("the agent closed the hand-off of region %llu; exiting",
	    (unsigned long long)ram.region);
	kill(getpid(), SIGKILL);
	return NULL;
}

static bool is_ram(int flags, int fd, size_t len)
{
	struct stat st;

	return ram.ready && !ram.done && fd >= 0 && (flags & MAP_SHARED) &&
	       (off_t)len == ram.size && !fstat(fd, &st) &&
	       st.st_dev == ram.dev && st.st_ino == ram.ino;
}

static void *wrap(mmap_fn real, void *addr, size_t len, int prot, int flags,
		  int fd, off_t off)
{
	char err[300];
	pthread_t t;
	void *p = real(addr, len, prot, flags, fd, off);
	int rc;

	if (p == MAP_FAILED || off != 0 || !is_ram(flags, fd, len))
		return p;
	pthread_mutex_lock(&ram.mu);
	if (ram.done) {
		pthread_mutex_unlock(&ram.mu);
		return p;
	}
	rc = dsm_attach_mapping(ram.handoff, ram.region, p, len, &ram.sock, err,
				sizeof(err));
	if (rc) {
		pthread_mutex_unlock(&ram.mu);
		say("guest RAM (%zu bytes at %p): %s", len, p, err);
		munmap(p, len);
		errno = -rc;
		return MAP_FAILED;
	}
	ram.done = true;
	pthread_mutex_unlock(&ram.mu);
	if (pthread_create(&t, NULL, watch, NULL) == 0)
		pthread_detach(t);
	else
		say("no thread to watch the hand-off: QEMU may outlive the "
		    "agent by its parent-death signal only");
	return p; /* silent on success: stderr is QEMU's, for its errors */
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;

	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap64");
	return wrap(real, addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static mmap_fn real;

	if (!real)
		real = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	return wrap(real, addr, len, prot, flags, fd, off);
}
