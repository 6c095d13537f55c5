/*
 * The service socket between a native guest (libcellguest) and its agent:
 * a SOCK_SEQPACKET pair the agent creates per vCPU and hands to the guest
 * as CELLMON_CTL_FD. One request, one reply, in order; the agent serves it
 * on a thread of its own, so a request may block (a lock, a barrier).
 */
#ifndef CELLGUEST_WIRE_H
#define CELLGUEST_WIRE_H

#include <stdint.h>

enum cg_op {
	CG_OP_LOCK = 1,
	CG_OP_UNLOCK = 2,
	CG_OP_BARRIER = 3,    /* count: every vCPU of the VM */
	CG_OP_DISK_SIZE = 4,  /* rep.value: the size in bytes */
	CG_OP_DISK_READ = 5,  /* rep is followed by len bytes */
	CG_OP_DISK_WRITE = 6, /* req is followed by len bytes */
	CG_OP_DISK_FLUSH = 7,
};

/* The most data one request moves; the runtime splits larger I/O. */
#define CG_IO_MAX (64u << 10)

/* Disk offsets and lengths are multiples of 4096. */
struct cg_req {
	uint32_t op; /* enum cg_op */
	uint32_t id; /* lock or barrier id (< 1024), or disk index */
	uint64_t off;
	uint32_t len; /* <= CG_IO_MAX */
	uint32_t pad;
};

struct cg_rep {
	int32_t status; /* 0 or -errno */
	uint32_t len;	/* data bytes that follow */
	uint64_t value;
};

/*
 * The lease page: a read-only shared page (CELLMON_LEASE_FD) where the
 * agent keeps the end of its lease in CLOCK_MONOTONIC milliseconds, 0
 * when it has none. A guest whose agent is paused or cut off must not
 * run on past the lease while the manager restarts its VM elsewhere:
 * the runtime's watchdog ends the process when the lease is over.
 */
struct cg_lease_page {
	uint64_t magic; /* CG_LEASE_MAGIC */
	uint64_t expiry_ms;
};

#define CG_LEASE_MAGIC 0x43454c4c4c454153ull

#endif
