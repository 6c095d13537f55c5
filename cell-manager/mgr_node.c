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
		f[k].dsm_addr = (char *)p->dsm_addr;
		f[k].vouch_min = mgr_quorum_vouch_min(&m->quorum, (uint32_t)i);
		fp[k] = &f[k];
		k++;
	}
	return k;
}

void mgr_node_quorum_sync(struct mgr *m, struct mgr_node *n)
{
	int id = mgr_node_dsm_id(m, n);

	if (id < 0)
		return;
	mgr_quorum_set_node(&m->quorum, (uint32_t)id, (uint32_t)n->incarnation,
			    n->state == MGR_NODE_DOWN);
	if (n->state == MGR_NODE_SUSPECT)
		mgr_quorum_round_start(&m->quorum, (uint32_t)id);
	else if (n->state == MGR_NODE_UP)
		mgr_quorum_round_end(&m->quorum, (uint32_t)id);
}

void mgr_node_quorum_heard(struct mgr *m, const struct mgr_node *n,
			   const Cellmon__HeartbeatRequest *hb)
{
	uint32_t v[MGR_QUORUM_MAX];
	int id = mgr_node_dsm_id(m, n);

	if (id < 0)
		return;
	for (uint32_t i = 0; i < MGR_QUORUM_MAX; i++)
		v[i] = 0;
	for (size_t i = 0; i < hb->n_vouching; i++)
		if (hb->vouching[i]->dsm_id < MGR_QUORUM_MAX)
			v[hb->vouching[i]->dsm_id] = hb->vouching[i]->vouch_min;
	mgr_quorum_heard(&m->quorum, (uint32_t)id, v, MGR_QUORUM_MAX,
			 hb->view_nodes, mgr_members_now(m->members));
}

/* Whether a quorum has refused n's peer lease long enough ago. */
static bool quorum_refused(struct mgr *m, const struct mgr_node *n)
{
	int id = mgr_node_dsm_id(m, n);
	/* the peer vote's length, and a tenth for clocks that run apart */
	uint64_t wait = (uint64_t)m->cfg.peer_lease_ms +
			(uint64_t)m->cfg.peer_lease_ms / 10;

	if (id < 0)
		return true; /* no DSM id: it cannot hold a peer lease */
	return mgr_quorum_may_declare(&m->quorum, (uint32_t)id,
				      mgr_members_now(m->members), wait);
}

bool mgr_node_may_declare_down(const struct mgr_node *n, void *arg)
{
	struct mgr *m = arg;
	bool ok = quorum_refused(m, n);

	if (!ok)
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %s silent but not declared down: no quorum "
			    "of the cell has refused its peer lease yet",
			    n->id);
	return ok;
}

bool mgr_node_settled(struct mgr *m, const struct mgr_node *n)
{
	uint64_t silent = mgr_members_now(m->members) - n->last_seen_ms;

	if (n->state == MGR_NODE_DOWN)
		return true;
	if (n->state != MGR_NODE_SUSPECT || silent < (uint64_t)m->cfg.lease_ms)
		return false;
	return quorum_refused(m, n);
}

void mgr_node_set_capacity(struct mgr_node *n, const Cellmon__Capacity *cap)
{
	snprintf(n->qemu_accel, sizeof(n->qemu_accel), "%s",
		 cap->qemu_accel ? cap->qemu_accel : "");
	n->nimages = 0;
	n->images_known = cap->images_known && cap->n_images <= MGR_NODE_IMAGES;
	for (size_t i = 0; n->images_known && i < cap->n_images; i++)
		if (cell_name_valid(cap->images[i]))
			memcpy(n->images[n->nimages++], cap->images[i],
			       strlen(cap->images[i]) + 1);
}

bool mgr_node_has_image(const struct mgr_node *n, const char *image)
{
	if (!image[0] || !n->images_known) /* none asked for, or not said */
		return true;
	for (uint32_t i = 0; i < n->nimages; i++)
		if (strcmp(n->images[i], image) == 0)
			return true;
	return false;
}
