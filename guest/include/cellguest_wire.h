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
	CG_OP_BARRIER = 3, /* count: every vCPU of the VM */
};

struct cg_req {
	uint32_t op; /* enum cg_op */
	uint32_t id; /* lock or barrier id, < 1024 */
};

struct cg_rep {
	int32_t status; /* 0 or -errno */
};

#endif
