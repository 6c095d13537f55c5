/*
 * The manager's side of the peer-lease rule (docs/fault-tolerance.md,
 * "Manager outages: peer leases"): fence rounds and the quorum that lets
 * a node be declared down. A pure module: nodes are DSM ids (0 ..
 * DSM_MAX_NODES-1, W in registration order), time is passed in, nothing
 * is sent or logged. Unit tests in tests/unit/cell-manager/test_quorum.c.
 *
 *   round     started when node N turns suspect: every other agent is
 *             told to refuse N's incarnation (mgr_quorum_vouch_min) and
 *             reports in its heartbeats the refusals it holds
 *             (mgr_quorum_heard); the first report of each is its
 *             acknowledgement. Ended (refusal lifted) when N is heard
 *             again before it is declared down.
 *   declare   N may be declared down once, for every view of W a node
 *             may hold, the acknowledgements at least wait_ms old and a
 *             quorum of that view cannot miss each other
 *             (mgr_quorum_may_declare).
 */
#ifndef MGR_QUORUM_H
#define MGR_QUORUM_H

#include <stdbool.h>
#include <stdint.h>

#define MGR_QUORUM_MAX 64 /* DSM_MAX_NODES */

struct mgr_quorum {
	uint32_t nodes;			/* |W| */
	uint32_t round[MGR_QUORUM_MAX]; /* refused incarnation+1, 0 */
	uint64_t ack_ms[MGR_QUORUM_MAX][MGR_QUORUM_MAX]; /* [N][x], 0 */
	uint32_t view[MGR_QUORUM_MAX]; /* |W| a node last reported, 0 */
	bool down[MGR_QUORUM_MAX];     /* declared down: refused for good */
	uint32_t incarnation[MGR_QUORUM_MAX];
};

/* Node id's current incarnation (its DSM epoch); ids below nodes. */
void mgr_quorum_set_node(struct mgr_quorum *q, uint32_t id,
			 uint32_t incarnation, bool down);
/* Starts a fence round for id's current incarnation (no-op if on). */
void mgr_quorum_round_start(struct mgr_quorum *q, uint32_t id);
/* Ends it: id was heard again. */
void mgr_quorum_round_end(struct mgr_quorum *q, uint32_t id);
/* The lowest incarnation of id the other agents may vouch for. */
uint32_t mgr_quorum_vouch_min(const struct mgr_quorum *q, uint32_t id);
/* A heartbeat of node `from` reporting, per id, the lowest incarnation
 * it vouches for (vouch_min[id], count entries) and the size of its view
 * of W; received at now_ms. */
void mgr_quorum_heard(struct mgr_quorum *q, uint32_t from,
		      const uint32_t *vouch_min, uint32_t count,
		      uint32_t view_nodes, uint64_t now_ms);
/* Whether id may be declared down now: every acknowledgement counted is
 * at least wait_ms old. */
bool mgr_quorum_may_declare(const struct mgr_quorum *q, uint32_t id,
			    uint64_t now_ms, uint64_t wait_ms);

#endif
