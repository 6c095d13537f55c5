/*
 * userfaultfd for the DSM node, as thin wrappers of its ioctls: opening
 * one that traps kernel-mode faults too (KVM's), registering a shmem
 * mapping for missing, minor and write-protect faults, reading fault
 * events, and the primitives the engine's env uses to expose a page
 * (UFFDIO_CONTINUE, read-only with MODE_WP; UFFDIO_COPY for runs), to
 * change its protection (UFFDIO_WRITEPROTECT) and to wake waiters. A
 * leaf: it calls nothing else of the DSM. No mprotect, no SIGSEGV.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

/* Newer than Debian 12's kernel headers; the running kernel has them. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

#define NEED_FEATURES                                                 \
	(UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
	 UFFD_FEATURE_WP_UNPOPULATED)

int dsm__uffd_open(char *err, size_t errlen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = NEED_FEATURES};
	int dev, fd;

	/* Through the device (its permission decides), else the syscall,
	 * never with UFFD_USER_MODE_ONLY: KVM faults in kernel mode. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	} else {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	}
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen,
			 "userfaultfd that traps kernel-mode faults is not "
			 "available (%s): run as root, give access to "
			 "/dev/userfaultfd, or set "
			 "vm.unprivileged_userfaultfd=1",
			 strerror(e));
		return -(e == EPERM || e == EACCES ? EPERM : e);
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = errno;

		snprintf(err, errlen,
			 "userfaultfd lacks MINOR_SHMEM, WP_HUGETLBFS_SHMEM or "
			 "WP_UNPOPULATED (kernel 6.4 or later needed): %s",
			 strerror(e));
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int dsm__uffd_register(int uffd, void *base, size_t len)
{
	struct uffdio_register reg = {
		.range = {(unsigned long)base, len},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	return 0;
}

void dsm__uffd_protect(struct dsm_mapping *m, uint32_t page, uint32_t count,
		       bool wp)
{
	struct uffdio_writeprotect w = {
		.range = {(unsigned long)(m->base + (size_t)page * DSM_PAGE),
			  (size_t)count * DSM_PAGE},
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &w) && errno != ENOENT &&
	    errno != ESRCH)
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "writeprotect pages %u+%u: %s",
			    page, count, strerror(errno));
}

/* Maps the page (now in the memfd) into this mapping, read-only unless
 * write; an existing mapping only gets its protection changed. */
void dsm__uffd_install(struct dsm_mapping *m, uint32_t page, bool write)
{
	struct uffdio_continue c = {
		.range = {(unsigned long)(m->base + (size_t)page * DSM_PAGE),
			  DSM_PAGE},
		.mode = write ? 0 : UFFDIO_CONTINUE_MODE_WP,
	};

	if (ioctl(m->uffd, UFFDIO_CONTINUE, &c) == 0)
		return;
	if (errno == EEXIST) {
		dsm__uffd_protect(m, page, 1, !write);
		return;
	}
	if (errno != ESRCH && errno != ENOENT)
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "continue page %u: %s", page,
			    strerror(errno));
}

/* Allocates pages first..first+count-1 in the memfd with src's bytes and
 * maps them here, in one step (no fault in the node's own mapping).
 * Returns the bytes installed: fewer than asked when a page is already
 * in the memfd or mapped here (EEXIST) or the mapping went away. */
int64_t dsm__uffd_copy_run(struct dsm_mapping *m, uint32_t first,
			   const void *src, uint32_t count, bool write)
{
	struct uffdio_copy c = {
		.dst = (unsigned long)(m->base + (size_t)first * DSM_PAGE),
		.src = (unsigned long)src,
		.len = (size_t)count * DSM_PAGE,
		.mode = write ? 0 : UFFDIO_COPY_MODE_WP,
	};

	if (ioctl(m->uffd, UFFDIO_COPY, &c) == 0)
		return (int64_t)c.len;
	return c.copy > 0 ? c.copy : 0;
}

void dsm__uffd_wake(struct dsm_mapping *m, uint32_t page)
{
	struct uffdio_range r = {
		(unsigned long)(m->base + (size_t)page * DSM_PAGE), DSM_PAGE};

	ioctl(m->uffd, UFFDIO_WAKE, &r);
}

int dsm__uffd_read_faults(int uffd, struct dsm__uffd_fault *out, int max,
			  int *nfaults)
{
	struct uffd_msg msgs[16];
	ssize_t n;
	int k = 0;

	if (max > 16)
		max = 16;
	n = read(uffd, msgs, (size_t)max * sizeof(msgs[0]));
	*nfaults = 0;
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
		uint64_t flags = msgs[i].arg.pagefault.flags;

		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		out[k].addr = msgs[i].arg.pagefault.address;
		out[k].write = flags & (UFFD_PAGEFAULT_FLAG_WRITE |
					UFFD_PAGEFAULT_FLAG_WP);
		k++;
	}
	*nfaults = k;
	return (int)(n / (ssize_t)sizeof(msgs[0]));
}
