/*
 * The agent's side of the peer-lease rule (docs/fault-tolerance.md,
 * "Manager outages: peer leases"): when the manager has been silent for
 * `silence` (half the lease), this agent asks every node of its view of
 * the cell for a vote, every heartbeat period, over the DSM peer
 * connections (dsm_node_send_note); a yes counts for the peer lease's
 * length from when the request was sent. It answers others' requests
 * itself: yes only when it does not hear the manager either and the
 * asker's incarnation is not one the manager told it to refuse.
 *
 * The view (which nodes, the refusals) comes with every heartbeat reply
 * (DsmFence: dsm_addr, vouch_min) and goes back with every heartbeat
 * (VouchState, view_nodes), which is how the manager learns that a
 * refusal is in force.
 *
 * Threads: the event loop owns the view and the requests; the DSM node
 * thread runs on_note, which reads vouch_min and last_reply and writes
 * vote_until, all with atomics. A request's send time is stored before
 * the request is queued (through the node thread's command lock), so the
 * answer's handler always sees it.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "cell/clock.h"
#include "cell/log.h"

#define MOD "agent"

enum { NOTE_VOUCH_REQ = 1, NOTE_VOUCH_YES = 2, NOTE_VOUCH_NO = 3 };

static uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* On the DSM thread: a request from a peer, or an answer to ours. */
static void on_note(uint16_t from, uint32_t epoch, uint8_t kind, uint32_t seq,
		    uint32_t b, void *arg)
{
	struct agent *a = arg;
	struct agent_witness *w = &a->witness;
	uint64_t now = cell_now_ms();

	(void)b;
	if (from >= DSM_MAX_NODES)
		return;
	if (kind == NOTE_VOUCH_REQ) {
		bool silent = now - load64(&w->last_reply_ms) >= w->silence_ms;
		bool yes = silent && epoch &&
			   epoch >= __atomic_load_n(&w->vouch_min[from],
						    __ATOMIC_ACQUIRE);

		dsm_node_send_note(a->dsm, from,
				   yes ? NOTE_VOUCH_YES : NOTE_VOUCH_NO, seq,
				   0);
		return;
	}
	if (kind == NOTE_VOUCH_YES) {
		uint64_t sent = load64(&w->sent_ms[seq % AGENT_WITNESS_RING]);
		uint64_t until = sent + w->peer_lease_ms;

		/* an answer to a request too old to remember is dropped */
		if (!sent ||
		    load64(&w->sent_seq[seq % AGENT_WITNESS_RING]) != seq)
			return;
		if (until > load64(&w->vote_until[from]))
			__atomic_store_n(&w->vote_until[from], until,
					 __ATOMIC_RELEASE);
	}
}

void agent_witness_init(struct agent *a)
{
	dsm_node_on_note(a->dsm, on_note, a);
}

void agent_witness_heard(struct agent *a, uint32_t peer_lease_ms)
{
	struct agent_witness *w = &a->witness;

	__atomic_store_n(&w->last_reply_ms, cell_now_ms(), __ATOMIC_RELEASE);
	if (peer_lease_ms)
		w->peer_lease_ms = peer_lease_ms;
	if (w->peer_mode) {
		CELL_INFO(MOD, "manager heard again; back on its lease");
		w->peer_mode = false;
	}
}

void agent_witness_view(struct agent *a, Cellmon__DsmFence *const *f, size_t n)
{
	struct agent_witness *w = &a->witness;

	memset(w->in_view, 0, sizeof(w->in_view));
	w->view = 1; /* this node */
	for (size_t i = 0; i < n; i++) {
		uint32_t id = f[i]->dsm_id;

		if (id >= DSM_MAX_NODES || (int)id == a->dsm_id)
			continue;
		w->in_view[id] = true;
		w->view++;
		__atomic_store_n(&w->vouch_min[id], f[i]->vouch_min,
				 __ATOMIC_RELEASE);
	}
}

size_t agent_witness_report(struct agent *a, Cellmon__VouchState *v,
			    Cellmon__VouchState **vp)
{
	struct agent_witness *w = &a->witness;
	size_t k = 0;

	for (uint32_t id = 0; id < DSM_MAX_NODES; id++) {
		if (!w->in_view[id])
			continue;
		cellmon__vouch_state__init(&v[k]);
		v[k].dsm_id = id;
		v[k].vouch_min =
			__atomic_load_n(&w->vouch_min[id], __ATOMIC_ACQUIRE);
		vp[k] = &v[k];
		k++;
	}
	return k;
}

/* The end of the peer lease: yeses from a quorum of the view (this node
 * one of them) count until the (quorum-1)-th latest vote ends. */
static uint64_t peer_until(struct agent *a)
{
	struct agent_witness *w = &a->witness;
	/* quorum - 1: the others' yeses; never none, so a node that knows
	 * of nobody else (it just joined, or it is alone) holds no peer
	 * lease: a node the manager may still need to declare down cannot
	 * vouch for itself */
	uint32_t need = w->view / 2 ? w->view / 2 : 1;
	uint64_t best[DSM_MAX_NODES];
	uint32_t k = 0;

	for (uint32_t id = 0; id < DSM_MAX_NODES; id++) {
		uint64_t u = load64(&w->vote_until[id]);
		uint32_t j = k;

		if (!w->in_view[id])
			continue;
		/* insertion sort of the view's votes, latest first */
		for (k++; j > 0 && best[j - 1] < u; j--)
			best[j] = best[j - 1];
		best[j] = u;
	}
	return k >= need ? best[need - 1] : 0;
}

uint64_t agent_witness_until(struct agent *a)
{
	return a->dsm && a->dsm_epoch_now ? peer_until(a) : 0;
}

uint64_t agent_witness_tick(struct agent *a)
{
	struct agent_witness *w = &a->witness;
	uint64_t now = cell_now_ms(), until;
	uint32_t seq;

	if (!a->dsm || a->dsm_epoch_now == 0)
		return 0; /* fenced, or no DSM: no votes to ask for */
	if (now - load64(&w->last_reply_ms) < w->silence_ms)
		return peer_until(a);
	seq = ++w->seq;
	__atomic_store_n(&w->sent_seq[seq % AGENT_WITNESS_RING], seq,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&w->sent_ms[seq % AGENT_WITNESS_RING], now,
			 __ATOMIC_RELEASE);
	for (uint32_t id = 0; id < DSM_MAX_NODES; id++)
		if (w->in_view[id] && (a->dsm_peers & (1ull << id)))
			dsm_node_send_note(a->dsm, (uint16_t)id, NOTE_VOUCH_REQ,
					   seq, 0);
	until = peer_until(a);
	if (until > now && !w->peer_mode) {
		CELL_WARN(MOD,
			  "manager silent for %llu ms; running on a peer "
			  "lease (a quorum of %u nodes vouches)",
			  (unsigned long long)(now - load64(&w->last_reply_ms)),
			  w->view / 2 + 1);
		w->peer_mode = true;
	}
	return until;
}
