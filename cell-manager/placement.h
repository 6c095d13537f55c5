/*
 * VM placement: which node runs each vCPU. A pure function over a table
 * of candidate nodes, so unit tests drive it without a manager.
 *
 * Filters, in order, each with a name used in the refusal message:
 *   state          the node is not up
 *   cell           the node is not in the VM's cell
 *   node           a placement hint names another node
 *   anti-affinity  the node runs a VM of the same anti-affinity group
 *   dsm            the node has no DSM address (yet) to share memory
 *   cpus           the node has no free cpu
 *   memory         the node's free memory is below the VM's share on it
 * A VM of M MB over k nodes puts a share of ceil(M/k) MB (its page
 * homes under the interleave policy), plus headroom, on each node.
 *
 * Scores: nodes already holding the VM's pages first; then spread
 * (default) takes as many nodes as there are vCPUs, most free cpus first,
 * and deals the vCPUs round-robin; pack takes as few nodes as possible,
 * the tightest fit first, and fills each before the next.
 */
#ifndef MGR_PLACEMENT_H
#define MGR_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mgr_place_node {
	const char *id;
	bool up;
	bool in_cell;
	bool anti_conflict; /* runs a VM of the same anti-affinity group */
	bool has_dsm;
	bool has_pages; /* the VM's pages already live here */
	bool no_image;	/* the node said it lacks the VM's image */
	uint32_t cpus, used_cpus;
	uint64_t memory_mb, used_mb;
};

struct mgr_place_req {
	uint32_t vcpus;
	uint64_t memory_mb;
	const char *node; /* hint, or NULL / "" */
	bool pack;
	bool one_node;	       /* every vCPU on one node (a VMM process) */
	uint32_t headroom_pct; /* extra memory kept free on each node */
};

/*
 * Places req->vcpus vCPUs: out[v] is the index in nodes[] of vCPU v's
 * node. 0, or -ENOSPC with `why` naming every filter that rejected
 * nodes (e.g. "memory: 2 nodes too small (need 600 MB free)").
 */
int mgr_place(const struct mgr_place_req *req,
	      const struct mgr_place_node *nodes, size_t n, uint32_t *out,
	      char *why, size_t len);

/* The filters by name, in the order above (image after node: the node
 * said it lacks the VM's image). */
#define MGR_PLACE_FILTERS 8
extern const char *const mgr_place_filter_names[MGR_PLACE_FILTERS];
/* mgr_place, and on a refusal rejected[f] is nonzero for each filter f
 * that is a reason for it: the number of nodes it turned away, or for
 * cpus 1 when the nodes let through have too few free cpus together
 * (rejected may be NULL). */
int mgr_place_counted(const struct mgr_place_req *req,
		      const struct mgr_place_node *nodes, size_t n,
		      uint32_t *out, char *why, size_t len,
		      unsigned rejected[MGR_PLACE_FILTERS]);

#endif
