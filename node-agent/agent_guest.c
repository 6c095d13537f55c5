/*
 * What the agent serves its guests besides memory: a service thread per
 * native vCPU answering lock, barrier and disk requests on a
 * SOCK_SEQPACKET socket (cellguest_wire.h), with dsm_lock/dsm_unlock/
 * dsm_barrier (which block) and the VM's disks; and the lease page, a
 * memfd every guest maps read-only to see when this node's lease ends.
 *
 * A service thread runs until its socket is shut down: RELEASE kills the
 * vCPU processes, cancels the region's waits, shuts the sockets and joins
 * the threads before it destroys the region (agent_vm.c). The lease page
 * is written by the event-loop thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent.h"
#include "agent_disk.h"
#include "cellguest_wire.h"
#include "dsm/dsm.h"

/* A disk request; data for a read lands in out (r->len set). */
static int disk_op(struct agent_vm *vm, const struct cg_req *q, size_t n,
		   const uint8_t *in, uint8_t *out, struct cg_rep *r)
{
	struct agent_disk *d = q->id < vm->ndisks ? vm->disks[q->id] : NULL;

	if (!d)
		return -ENODEV;
	if (q->len > CG_IO_MAX)
		return -EINVAL;
	switch (q->op) {
	case CG_OP_DISK_SIZE:
		r->value = agent_disk_size(d);
		return 0;
	case CG_OP_DISK_READ:
		r->len = q->len;
		return agent_disk_read(d, q->off, out, q->len);
	case CG_OP_DISK_WRITE:
		if (n != sizeof(*q) + q->len)
			return -EBADMSG;
		return agent_disk_write(d, q->off, in, q->len);
	default:
		return agent_disk_flush(d);
	}
}

/* Serves one vCPU's requests (cellguest_wire.h) until its socket closes. */
void *agent_guest_serve(void *arg)
{
	struct agent_vcpu *v = arg;
	struct agent_vm *vm = v->vm;
	size_t cap = sizeof(struct cg_req) + CG_IO_MAX;
	uint8_t *in = malloc(cap), *out = malloc(CG_IO_MAX);
	struct cg_req q;
	ssize_t n;

	while (in && out &&
	       ((n = recv(v->ctl, in, cap, 0)) > 0 ||
		(n < 0 && errno == EINTR))) {
		struct cg_rep r = {0};
		struct iovec iov[2] = {{&r, sizeof(r)}, {out, 0}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

		if (n < (ssize_t)sizeof(q)) {
			r.status = n < 0 ? 0 : -EBADMSG;
			if (n < 0)
				continue;
		} else {
			memcpy(&q, in, sizeof(q));
			if (q.op == CG_OP_LOCK)
				r.status = dsm_lock(vm->region, q.id);
			else if (q.op == CG_OP_UNLOCK)
				r.status = dsm_unlock(vm->region, q.id);
			else if (q.op == CG_OP_BARRIER)
				r.status = dsm_barrier(vm->region, q.id,
						       vm->spec->vcpus);
			else if (q.op >= CG_OP_DISK_SIZE &&
				 q.op <= CG_OP_DISK_FLUSH)
				r.status = disk_op(vm, &q, (size_t)n,
						   in + sizeof(q), out, &r);
			else
				r.status = -EOPNOTSUPP;
		}
		if (r.status)
			r.len = 0;
		iov[1].iov_len = r.len;
		if (sendmsg(v->ctl, &mh, MSG_NOSIGNAL) !=
		    (ssize_t)(sizeof(r) + r.len))
			break;
	}
	free(in);
	free(out);
	return NULL;
}

void agent_vm_lease(struct agent *a, uint64_t expiry_ms)
{
	if (a->lease_page)
		__atomic_store_n(&a->lease_page->expiry_ms, expiry_ms,
				 __ATOMIC_RELEASE);
}

/* The lease page: a memfd every guest maps read-only. */
int agent_guest_lease_create(struct agent *a)
{
	a->lease_fd = memfd_create("cellmon-lease", MFD_CLOEXEC);
	if (a->lease_fd < 0 || ftruncate(a->lease_fd, 4096))
		return -errno;
	a->lease_page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
			     a->lease_fd, 0);
	if (a->lease_page == MAP_FAILED) {
		a->lease_page = NULL;
		return -errno;
	}
	a->lease_page->magic = CG_LEASE_MAGIC;
	return 0;
}
