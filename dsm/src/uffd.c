/*
 * userfaultfd for the DSM node, as thin wrappers of its ioctls (opening
 * and registering are in attach.c, shared with the hand-off's client):
 * reading fault events, and the primitives the engine's env uses to expose a
 * page (UFFDIO_CONTINUE, read-only with MODE_WP; UFFDIO_COPY for runs), to
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

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

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
