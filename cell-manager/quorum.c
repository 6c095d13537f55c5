/*
 * Fence rounds and the declare-down quorum (quorum.h). Why the checks are
 * these: a node N holds a peer lease on yeses from more than half of its
 * view of W, itself included, and from at least one other node; N may be
 * declared down only when every such quorum must contain an acknowledger whose
 * yes to N, if any, was given before its acknowledgement, itself at least
 * wait_ms (the peer vote's length) old.
 */
#include <string.h>

#include "quorum.h"

void mgr_quorum_set_node(struct mgr_quorum *q, uint32_t id,
			 uint32_t incarnation, bool down)
{
	if (id >= MGR_QUORUM_MAX)
		return;
	if (q->incarnation[id] != incarnation) {
		/* a new incarnation: nothing of the old one's round applies */
		q->round[id] = 0;
		memset(q->ack_ms[id], 0, sizeof(q->ack_ms[id]));
	}
	q->incarnation[id] = incarnation;
	q->down[id] = down;
	if (id >= q->nodes)
		q->nodes = id + 1;
}

void mgr_quorum_round_start(struct mgr_quorum *q, uint32_t id)
{
	if (id >= q->nodes || q->round[id])
		return;
	q->round[id] = q->incarnation[id] + 1;
	memset(q->ack_ms[id], 0, sizeof(q->ack_ms[id]));
}

void mgr_quorum_round_end(struct mgr_quorum *q, uint32_t id)
{
	if (id >= q->nodes)
		return;
	q->round[id] = 0;
	memset(q->ack_ms[id], 0, sizeof(q->ack_ms[id]));
}

uint32_t mgr_quorum_vouch_min(const struct mgr_quorum *q, uint32_t id)
{
	if (id >= q->nodes)
		return 0;
	if (q->down[id] || q->round[id])
		return q->incarnation[id] + 1;
	return q->incarnation[id];
}

void mgr_quorum_heard(struct mgr_quorum *q, uint32_t from,
		      const uint32_t *vouch_min, uint32_t count,
		      uint32_t view_nodes, uint64_t now_ms)
{
	if (from >= q->nodes)
		return;
	if (view_nodes)
		q->view[from] = view_nodes;
	for (uint32_t id = 0; id < count && id < q->nodes; id++)
		if (id != from && q->round[id] && !q->ack_ms[id][from] &&
		    vouch_min[id] >= q->round[id])
			q->ack_ms[id][from] = now_ms ? now_ms : 1;
}

/* The smallest view of W any node may still act on: what it last
 * reported, else the view it had when it joined (its own id + 1). */
static uint32_t smallest_view(const struct mgr_quorum *q)
{
	uint32_t k = q->nodes;

	for (uint32_t i = 0; i < q->nodes; i++) {
		uint32_t v = q->view[i] ? q->view[i] : i + 1;

		if (v < k)
			k = v;
	}
	return k;
}

bool mgr_quorum_may_declare(const struct mgr_quorum *q, uint32_t id,
			    uint64_t now_ms, uint64_t wait_ms)
{
	uint32_t kmin = smallest_view(q);

	if (id >= q->nodes || !q->round[id])
		return false;
	if (kmin < id + 1)
		kmin = id + 1; /* a view always holds its own node */
	for (uint32_t k = kmin; k <= q->nodes; k++) {
		/* a quorum is at least two nodes (agent_witness.c) */
		uint32_t acks = 0, quorum = k / 2 + 1 < 2 ? 2 : k / 2 + 1;

		if (quorum > k)
			continue; /* nobody can hold a peer lease in it */
		for (uint32_t x = 0; x < k; x++)
			acks += x != id && q->ack_ms[id][x] &&
				now_ms >= q->ack_ms[id][x] + wait_ms;
		/* every quorum of this view (N in it) meets an acknowledger */
		if (acks + quorum <= k)
			return false;
	}
	return true;
}
