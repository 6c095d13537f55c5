/*
 * The agent's part of the page policy (docs/design/page-policy.md): on
 * CMD_VM_PAGES_SAMPLE it reads what this node, as home, counted for the
 * VM's region since the last sample (dsm_region_sample: on the DSM
 * node's thread, which keeps the counters; nothing is locked on the
 * fault path) and answers with the AGENT_PAGE_SAMPLE pages that had the
 * most remote requests; on CMD_VM_PAGES_APPLY it applies the manager's
 * decisions in one batch (dsm_region_apply), which drops any that no
 * longer hold. A decision names the run's region: one for an earlier
 * run finds no VM and is refused, and commands of a manager this agent
 * no longer follows are refused before they get here (incarnation).
 *
 * Event-loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cell/log.h"
#include "dsm/dsm.h"

#define MOD "agent"

/* One allocation for the whole answer, freed by agent_pages_ack_free:
 * the message first, then its arrays. */
struct sample_result {
	Cellmon__PageSample s;
	uint32_t members[DSM_MAX_NODES];
	uint32_t homed[AGENT_MAP_RANGES], replicated[AGENT_MAP_RANGES];
	uint64_t faults[AGENT_MAP_RANGES];
};

/* The region's range map into r (nothing on error: the sample stands
 * without it). */
static void range_map(struct agent_vm *vm, struct sample_result *r)
{
	uint32_t npages = (uint32_t)(dsm_region_size(vm->region) / DSM_PAGE);
	uint32_t n = npages < AGENT_MAP_RANGES ? npages : AGENT_MAP_RANGES;
	uint32_t per = n ? (npages + n - 1) / n : 0;
	struct dsm_range_info info[AGENT_MAP_RANGES];

	if (!per)
		return;
	n = (npages + per - 1) / per;
	if (dsm_region_range_map(vm->region, per, info, n))
		return;
	for (uint32_t i = 0; i < n; i++) {
		r->homed[i] = info[i].homed;
		r->replicated[i] = info[i].replicated;
		r->faults[i] = info[i].faults;
	}
	r->s.range_pages = per;
	r->s.range_homed = r->homed;
	r->s.n_range_homed = n;
	r->s.range_replicated = r->replicated;
	r->s.n_range_replicated = n;
	r->s.range_faults = r->faults;
	r->s.n_range_faults = n;
}

/* Pages per sample: AGENT_PAGE_SAMPLE, fewer for wide regions, so that
 * the answer stays well under the RPC layer's frame limit (1 MiB by
 * default): about 8 bytes per member per page. */
static uint32_t sample_max(uint16_t nmembers)
{
	uint32_t by_size = (256u << 10) / (8u * nmembers + 24u);

	return by_size < AGENT_PAGE_SAMPLE ? by_size : AGENT_PAGE_SAMPLE;
}

int agent_pages_sample(struct agent_vm *vm, bool map_only,
		       Cellmon__CommandAck *ack, char *err, size_t len)
{
	uint32_t max = sample_max(vm->nmembers ? vm->nmembers : 1);
	struct dsm_page_sample *raw = calloc(max, sizeof(*raw));
	struct dsm_sample_info info = {0};
	struct sample_result *r;
	Cellmon__PageCounts **ptr, *pc;
	uint32_t *counts;
	int rc;

	if (!raw)
		return -ENOMEM;
	if (!vm->region) {
		free(raw);
		snprintf(err, len, "vm %s has no region here", vm->name);
		return -ENOENT;
	}
	/* map only (the VM's policy is off): its counts stay for a round
	 * that decides, should the policy be turned on */
	rc = map_only ? 0 : dsm_region_sample(vm->region, raw, max, &info);
	if (rc) {
		snprintf(err, len, "vm %s: sampling its pages: %s", vm->name,
			 strerror(-rc));
		free(raw);
		return rc;
	}
	r = calloc(1, sizeof(*r) + info.count * (sizeof(*ptr) + sizeof(*pc) +
						 2u * vm->nmembers *
							 sizeof(*counts)));
	if (!r) {
		free(raw);
		return -ENOMEM;
	}
	ptr = (Cellmon__PageCounts **)(r + 1);
	pc = (Cellmon__PageCounts *)(ptr + info.count);
	counts = (uint32_t *)(pc + info.count);
	cellmon__page_sample__init(&r->s);
	r->s.region = vm->region_id;
	r->s.interval_ms = info.interval_ms;
	r->s.seen = info.seen;
	r->s.lost = info.lost;
	for (uint16_t i = 0; i < vm->nmembers; i++)
		r->members[i] = vm->members[i];
	r->s.members = r->members;
	r->s.n_members = vm->nmembers;
	for (uint32_t k = 0; k < info.count; k++) {
		const struct dsm_page_sample *d = &raw[k];
		uint32_t *rd = counts + (size_t)k * 2 * vm->nmembers;
		uint32_t *wr = rd + vm->nmembers;

		cellmon__page_counts__init(&pc[k]);
		pc[k].page = d->page;
		pc[k].owner = d->owner;
		pc[k].copyset = d->copyset;
		for (uint16_t i = 0; i < vm->nmembers; i++) {
			rd[i] = d->reads[i];
			wr[i] = d->writes[i];
		}
		pc[k].reads = rd;
		pc[k].n_reads = vm->nmembers;
		pc[k].writes = wr;
		pc[k].n_writes = vm->nmembers;
		ptr[k] = &pc[k];
	}
	free(raw);
	r->s.pages = ptr;
	r->s.n_pages = info.count;
	range_map(vm, r);
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_SAMPLE;
	ack->sample = &r->s;
	if (info.lost || info.ranked > info.count)
		CELL_LOG_RL(CELL_LOG_INFO, MOD,
			    "vm %s: of %u pages with remote requests in the "
			    "last %u ms, %u reported; %u requests uncounted "
			    "(the sampling table was full)",
			    vm->name, info.ranked, info.interval_ms, info.count,
			    info.lost);
	return 0;
}

int agent_pages_apply(struct agent_vm *vm, const Cellmon__PageDecisions *d,
		      Cellmon__CommandAck *ack, char *err, size_t len)
{
	struct dsm_policy_op *ops =
		calloc(d->n_ops ? d->n_ops : 1, sizeof(*ops));
	Cellmon__PageApplied *res = malloc(sizeof(*res));
	uint32_t applied = 0, dropped = 0, moves = 0, pushes = 0, unmarks = 0;
	int rc;

	if (!ops || !res || !vm->region) {
		free(ops);
		free(res);
		snprintf(err, len, "vm %s: %s", vm->name,
			 vm->region ? "out of memory" : "no region here");
		return vm->region ? -ENOMEM : -ENOENT;
	}
	for (size_t i = 0; i < d->n_ops; i++) {
		const Cellmon__PageOp *o = d->ops[i];

		ops[i] = (struct dsm_policy_op){
			o->page,
			o->node < DSM_MAX_NODES ? (uint16_t)o->node
						: (uint16_t)DSM_MAX_NODES,
			o->push, o->unmark};
		if (o->unmark)
			unmarks++;
		else if (o->push)
			pushes++;
		else
			moves++;
		CELL_DEBUG(MOD, "vm %s: page %u: %s node %u", vm->name, o->page,
			   o->unmark ? "unmark, not"
			   : o->push ? "replica on"
				     : "home to",
			   o->node);
	}
	rc = dsm_region_apply(vm->region, ops, (uint32_t)d->n_ops, &applied,
			      &dropped);
	free(ops);
	if (rc) {
		snprintf(err, len, "vm %s: applying page decisions: %s",
			 vm->name, strerror(-rc));
		free(res);
		return rc;
	}
	CELL_INFO(MOD,
		  "vm %s: page policy: %u home moves, %u replicas and %u "
		  "unmarks asked, %u applied, %u dropped (no longer applied)",
		  vm->name, moves, pushes, unmarks, applied, dropped);
	cellmon__page_applied__init(res);
	res->applied = applied;
	res->dropped = dropped;
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_APPLIED;
	ack->applied = res;
	return 0;
}

void agent_pages_ack_free(Cellmon__CommandAck *ack)
{
	if (ack->result_case == CELLMON__COMMAND_ACK__RESULT_SAMPLE)
		free(ack->sample); /* the start of its sample_result */
	else if (ack->result_case == CELLMON__COMMAND_ACK__RESULT_APPLIED)
		free(ack->applied);
}
