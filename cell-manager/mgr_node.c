/*
 * The manager's nodes beyond membership (membership.c keeps their states
 * and incarnations): their rows in the store, the lookup cellctl's
 * requests share, and their DSM identity. A node's DSM id is its index
 * among known nodes, so only the first DSM_MAX_NODES nodes have one; the
 * fences tell every agent the lowest DSM epoch to accept from each other
 * node (DsmFence in vm.proto, docs/fault-tolerance.md).
 *
 * Called by the agent-facing code, the cellctl methods and the VM state
 * machine; calls only membership and the store. Event-loop thread only.
 */
#include <errno.h>
#include <string.h>

#include "cell/log.h"
#include "dsm/dsm.h"
#include "mgr_int.h"

#define MOD "mgr"

int mgr_node_persist(struct mgr *m, const struct mgr_node *n)
{
	int rc = mgr_store_node_save(m->store, n,
				     mgr_members_next_incarnation(m->members),
				     mgr_members_epoch(m->members));

	if (rc)
		CELL_ERROR(MOD, "cannot persist node id=%s: %s", n->id,
			   strerror(-rc));
	return rc;
}

struct mgr_node *mgr_node_or_error(struct mgr *m, struct cell_rpc_call *call,
				   const char *id)
{
	struct mgr_node *n = mgr_members_find(m->members, id);

	if (!n)
		cell_rpc_reply_error(call, -ENOENT, "no node '%.64s'", id);
	return n;
}

int mgr_node_dsm_id(struct mgr *m, const struct mgr_node *n)
{
	size_t count = mgr_members_count(m->members);

	for (size_t i = 0; i < count && i < DSM_MAX_NODES; i++)
		if (mgr_members_at(m->members, i) == n)
			return (int)i;
	return -1;
}

size_t mgr_dsm_fences(struct mgr *m, const struct mgr_node *n,
		      Cellmon__DsmFence *f, Cellmon__DsmFence **fp)
{
	size_t count = mgr_members_count(m->members), k = 0;

	for (size_t i = 0; i < count && i < DSM_MAX_NODES; i++) {
		const struct mgr_node *p = mgr_members_at(m->members, i);

		if (p == n || !p->incarnation)
			continue;
		cellmon__dsm_fence__init(&f[k]);
		f[k].dsm_id = (uint32_t)i;
		f[k].epoch =
			(uint32_t)p->incarnation + (p->state == MGR_NODE_DOWN);
		f[k].node = (char *)p->id;
		f[k].down = p->state == MGR_NODE_DOWN;
		fp[k] = &f[k];
		k++;
	}
	return k;
}
