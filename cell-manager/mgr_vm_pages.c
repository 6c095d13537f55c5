/*
 * The manager's page-policy loop (docs/design/page-policy.md). Every
 * policy_interval, for each running VM (with its page policy off too:
 * then the round only keeps the map of where its memory lives, and
 * decides nothing), every node of the run is asked for its sample
 * (CMD_VM_PAGES_SAMPLE: the pages it homes with the most remote requests in the
 * interval); when all have answered, the pure policy (page_policy.c) decides
 * per home, and each home gets its decisions in one CMD_VM_PAGES_APPLY. One
 * round per VM is in flight at a time; a round whose VM started another
 * run meanwhile is dropped (its decisions would name the old region and
 * be refused anyway).
 *
 * Event-loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "mgr_int.h"
#include "page_policy.h"

#define MOD	      "manager"
#define MAX_DECISIONS 4096 /* per home and round */
#define HOT_MAX	      32   /* pages vm pages shows from the last round */

struct hot_page {
	uint32_t page;
	uint16_t home; /* member index */
	uint64_t copies, score;
	uint32_t reads[MGR_PP_MEMBERS], writes[MGR_PP_MEMBERS];
};

/* One range of the map, as one home reported it. */
struct map_cell {
	uint32_t homed, replicated, faults_round;
	uint64_t faults_total;
};

struct mgr_vm_pages {
	struct mgr_pp_vm pp;
	/* the map of homes: nranges x nmembers cells, from the last round */
	struct map_cell *map;
	uint32_t range_pages, nranges;
	uint64_t region; /* the run pp was made for */
	uint16_t members[DSM_MAX_NODES];
	uint16_t nmembers;
	uint64_t last_ms;
	bool inflight;
	uint64_t applied, dropped; /* what the agents reported */
	uint32_t rounds, interval_ms;
	struct hot_page hot[HOT_MAX]; /* the last round's, hottest first */
	uint32_t nhot;
};

/* Keeps the HOT_MAX pages with most remote requests of this round. */
static void note_hot(struct mgr_vm_pages *p, uint16_t home,
		     const struct mgr_pp_sample *s)
{
	uint64_t score = 0;
	uint32_t k;

	for (uint16_t i = 0; i < p->nmembers; i++)
		if (i != home)
			score += (uint64_t)s->reads[i] + s->writes[i];
	for (k = p->nhot; k > 0 && p->hot[k - 1].score < score; k--)
		;
	if (k >= HOT_MAX)
		return;
	if (p->nhot < HOT_MAX)
		p->nhot++;
	memmove(&p->hot[k + 1], &p->hot[k],
		(p->nhot - 1 - k) * sizeof(p->hot[0]));
	p->hot[k] = (struct hot_page){.page = s->page,
				      .home = home,
				      .copies = s->copies,
				      .score = score};
	memcpy(p->hot[k].reads, s->reads, sizeof(s->reads));
	memcpy(p->hot[k].writes, s->writes, sizeof(s->writes));
}

/* A round's decisions, by home node, for the APPLY fan. */
struct apply_batch {
	struct mgr_vm *vm;
	size_t n;
	char node[DSM_MAX_NODES][CELL_NAME_MAX + 1];
	Cellmon__PageDecisions d[DSM_MAX_NODES];
	Cellmon__PageOp **ptr[DSM_MAX_NODES]; /* k each, then the ops */
};

enum mgr_pp_mode mgr_vm_page_mode(const Cellmon__VmSpec *s)
{
	switch (s->page_policy) {
	case CELLMON__PAGE_POLICY__PAGE_POLICY_OFF:
		return MGR_PP_OFF;
	case CELLMON__PAGE_POLICY__PAGE_POLICY_MIGRATE:
		return MGR_PP_MIGRATE;
	case CELLMON__PAGE_POLICY__PAGE_POLICY_REPLICATE:
		return MGR_PP_REPLICATE;
	default:
		return MGR_PP_ALL;
	}
}

void mgr_vm_pages_free(struct mgr_vm *vm)
{
	if (vm->pages)
		free(vm->pages->map);
	free(vm->pages);
	vm->pages = NULL;
}

void mgr_vm_pages_set_mode(struct mgr_vm *vm)
{
	if (vm->pages)
		vm->pages->pp.mode = mgr_vm_page_mode(vm->spec);
}

static int member_index(const struct mgr_vm_pages *p, uint32_t dsm_id)
{
	for (uint16_t i = 0; i < p->nmembers; i++)
		if (p->members[i] == dsm_id)
			return i;
	return -1;
}

/* The state for this run, made at its first sample (which names the
 * region's members in order). */
static struct mgr_vm_pages *
run_state(struct mgr_vm *vm, const Cellmon__PageSample *s, uint64_t now)
{
	struct mgr_vm_pages *p = vm->pages;

	if (p && p->region == vm->region)
		return p;
	if (!s->n_members || s->n_members > DSM_MAX_NODES)
		return NULL;
	uint64_t last = p ? p->last_ms : now;

	if (!p && !(p = vm->pages = calloc(1, sizeof(*p))))
		return NULL;
	free(p->map); /* an earlier run's (the tick's marker has none) */
	memset(p, 0, sizeof(*p));
	p->last_ms = last;
	p->region = vm->region;
	p->nmembers = (uint16_t)s->n_members;
	for (size_t i = 0; i < s->n_members; i++)
		p->members[i] = (uint16_t)s->members[i];
	mgr_pp_vm_init(&p->pp, mgr_vm_page_mode(vm->spec), p->nmembers, now);
	return p;
}

static int build_apply(struct mgr *m, void *arg, const char *node,
		       Cellmon__Command *cmd, void **own)
{
	struct apply_batch *b = arg;

	(void)m;
	*own = NULL;
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->node[i], node) == 0) {
			cmd->args_case = CELLMON__COMMAND__ARGS_DECISIONS;
			cmd->decisions = &b->d[i];
			return 0;
		}
	return -ENOENT;
}

static void apply_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	uint64_t applied = 0, dropped = 0;

	for (size_t i = 0; i < f->n; i++) {
		const Cellmon__PageApplied *a = (const void *)f->res[i].result;

		if (f->res[i].status)
			CELL_INFO(MOD,
				  "vm id %llu: node %s did not apply page "
				  "decisions: %s",
				  (unsigned long long)f->tag, f->res[i].node,
				  f->res[i].msg);
		else if (a) {
			applied += a->applied;
			dropped += a->dropped;
		}
	}
	if (vm && vm->pages) {
		vm->pages->applied += applied;
		vm->pages->dropped += dropped;
		vm->pages->inflight = false;
	}
}

/* Keeps one node's part of the map from its sample (a map of another
 * shape than the one kept starts it again). */
static void note_map(struct mgr_vm_pages *p, int member,
		     const Cellmon__PageSample *s)
{
	uint32_t n = (uint32_t)s->n_range_homed;

	if (member < 0 || !s->range_pages || !n || s->n_range_replicated != n ||
	    s->n_range_faults != n)
		return;
	if (!p->map || p->range_pages != s->range_pages || p->nranges != n) {
		free(p->map);
		p->map = calloc((size_t)n * p->nmembers, sizeof(*p->map));
		if (!p->map)
			return;
		p->range_pages = s->range_pages;
		p->nranges = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct map_cell *c = &p->map[(size_t)i * p->nmembers + member];
		uint64_t t = s->range_faults[i];

		c->homed = s->range_homed[i];
		c->replicated = s->range_replicated[i];
		c->faults_round = t >= c->faults_total
					  ? (uint32_t)(t - c->faults_total)
					  : 0;
		c->faults_total = t;
	}
}

/* Converts one home's sample and decides; the decisions go into b. */
static void decide_home(struct mgr *m, struct mgr_vm *vm,
			struct mgr_vm_pages *p, const char *node,
			const Cellmon__PageSample *s, uint64_t now,
			struct apply_batch *b)
{
	struct mgr_node *n = mgr_members_find(m->members, node);
	int id = n ? mgr_node_dsm_id(m, n) : -1;
	int home = id >= 0 ? member_index(p, (uint32_t)id) : -1;
	struct mgr_pp_sample *ps;
	struct mgr_pp_decision *d;
	uint32_t k;

	note_map(p, home, s);
	if (home < 0 || !s->n_pages || b->n >= DSM_MAX_NODES)
		return;
	ps = calloc(s->n_pages, sizeof(*ps));
	d = calloc(MAX_DECISIONS, sizeof(*d));
	if (!ps || !d) {
		free(ps);
		free(d);
		return;
	}
	for (size_t j = 0; j < s->n_pages; j++) {
		const Cellmon__PageCounts *c = s->pages[j];

		ps[j].page = c->page;
		for (uint16_t i = 0; i < p->nmembers; i++) {
			if (c->copyset & (1ull << p->members[i]))
				ps[j].copies |= 1ull << i;
			ps[j].reads[i] = i < c->n_reads ? c->reads[i] : 0;
			ps[j].writes[i] = i < c->n_writes ? c->writes[i] : 0;
		}
		note_hot(p, (uint16_t)home, &ps[j]);
	}
	k = mgr_pp_decide(&p->pp, &m->cfg.page_policy, (uint16_t)home, ps,
			  (uint32_t)s->n_pages, now, d, MAX_DECISIONS);
	if (k && (b->ptr[b->n] = malloc(k * (sizeof(Cellmon__PageOp *) +
					     sizeof(Cellmon__PageOp))))) {
		Cellmon__PageDecisions *pd = &b->d[b->n];
		Cellmon__PageOp *ops = (Cellmon__PageOp *)(b->ptr[b->n] + k);

		snprintf(b->node[b->n], sizeof(b->node[b->n]), "%s", node);
		cellmon__page_decisions__init(pd);
		pd->name = vm->name;
		pd->region = vm->region;
		pd->ops = b->ptr[b->n];
		pd->n_ops = k;
		for (uint32_t i = 0; i < k; i++) {
			Cellmon__PageOp *o = &ops[i];

			cellmon__page_op__init(o);
			o->page = d[i].page;
			o->node = p->members[d[i].target];
			o->push = d[i].push;
			o->unmark = d[i].unmark;
			b->ptr[b->n][i] = o;
			CELL_DEBUG(MOD, "vm %s: page %u: %s %s", vm->name,
				   o->page,
				   o->unmark ? "unreplicate, not"
				   : o->push ? "replica on"
					     : "home to",
				   mgr_members_at(m->members, o->node)
					   ? mgr_members_at(m->members, o->node)
						     ->id
					   : "?");
		}
		b->n++;
	}
	free(ps);
	free(d);
}

static void sample_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	struct mgr_vm_pages *p = NULL;
	struct apply_batch *b;
	const char *nodes[DSM_MAX_NODES];
	uint64_t now = cell_now_ms();
	uint64_t moves0, pushes0;

	if (!vm || vm->state != CELLMON__VM_STATE__VM_RUNNING)
		return;
	for (size_t i = 0; i < f->n && !p; i++) {
		const Cellmon__PageSample *s = (const void *)f->res[i].result;

		if (s && s->region == vm->region)
			p = run_state(vm, s, now);
	}
	if (!p) {
		if (vm->pages)
			vm->pages->inflight = false;
		return;
	}
	p->inflight = false;
	p->rounds++;
	p->nhot = 0;
	for (size_t i = 0; i < f->n; i++) {
		const Cellmon__PageSample *s = (const void *)f->res[i].result;

		if (s && s->region == vm->region && s->interval_ms)
			p->interval_ms = s->interval_ms;
	}
	for (uint16_t i = 0; i < p->nmembers; i++) {
		const struct mgr_node *n =
			mgr_members_at(m->members, p->members[i]);

		p->pp.up[i] = n && n->state == MGR_NODE_UP;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return;
	b->vm = vm;
	moves0 = p->pp.moves;
	pushes0 = p->pp.pushes;
	for (size_t i = 0; i < f->n; i++) {
		const Cellmon__PageSample *s = (const void *)f->res[i].result;

		if (s && s->region == vm->region)
			decide_home(m, vm, p, f->res[i].node, s, now, b);
	}
	if (p->pp.moves != moves0 || p->pp.pushes != pushes0) {
		CELL_INFO(MOD,
			  "vm %s: page policy: %llu home moves, %llu pushes "
			  "(%llu and %llu so far)",
			  vm->name, (unsigned long long)(p->pp.moves - moves0),
			  (unsigned long long)(p->pp.pushes - pushes0),
			  (unsigned long long)p->pp.moves,
			  (unsigned long long)p->pp.pushes);
		mgr_event(m, "page-policy", vm->name,
			  "%llu home moves, %llu pushes (%llu and %llu so far)",
			  (unsigned long long)(p->pp.moves - moves0),
			  (unsigned long long)(p->pp.pushes - pushes0),
			  (unsigned long long)p->pp.moves,
			  (unsigned long long)p->pp.pushes);
	}
	for (size_t i = 0; i < b->n; i++)
		nodes[i] = b->node[i];
	if (b->n) {
		p->inflight = true;
		if (mgr_fan_out(m, nodes, b->n,
				CELLMON__COMMAND_KIND__CMD_VM_PAGES_APPLY,
				build_apply, b, vm->id, apply_done, NULL))
			p->inflight = false;
	}
	for (size_t i = 0; i < b->n; i++)
		free(b->ptr[i]);
	free(b); /* the commands are packed when sent */
}

/* The sample command: the map alone while the VM's policy is off. */
static int build_sample(struct mgr *m, void *arg, const char *node,
			Cellmon__Command *cmd, void **own)
{
	struct mgr_vm *vm = arg;
	int rc = mgr_vm_build_target(m, vm, node, cmd, own);

	if (!rc)
		cmd->target->map_only =
			mgr_vm_page_mode(vm->spec) == MGR_PP_OFF;
	return rc;
}

void mgr_vm_pages_tick(struct mgr *m, uint64_t now)
{
	if (!m->cfg.policy_interval_ms)
		return;
	for (size_t i = 0; i < m->nvms; i++) {
		struct mgr_vm *vm = m->vms[i];
		const char *nodes[MGR_VM_MAX_NODES];
		size_t n;

		if (vm->state != CELLMON__VM_STATE__VM_RUNNING || vm->busy)
			continue;
		if (vm->pages &&
		    (vm->pages->inflight ||
		     now < vm->pages->last_ms +
				     (uint64_t)m->cfg.policy_interval_ms))
			continue;
		if (!vm->pages) {
			/* made at the first answer; until then a marker */
			vm->pages = calloc(1, sizeof(*vm->pages));
			if (!vm->pages)
				continue;
		}
		vm->pages->last_ms = now;
		vm->pages->inflight = true;
		n = mgr_vm_nodes(vm, nodes);
		if (mgr_fan_out(m, nodes, n,
				CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE,
				build_sample, vm, vm->id, sample_done, NULL))
			vm->pages->inflight = false;
	}
}

void mgr_vm_set(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = mgr_vm_find(m, req->name);
	Cellmon__PagePolicy old;

	if (!vm) {
		cell_rpc_reply_error(call, -ENOENT, "no vm '%.64s'", req->name);
		return;
	}
	if (req->page_policy == CELLMON__PAGE_POLICY__PAGE_POLICY_DEFAULT ||
	    !cellproto_known(&cellproto_page_policies, (int)req->page_policy)) {
		cell_rpc_reply_error(call, -EINVAL,
				     "vm set: no page policy given (off, "
				     "migrate, replicate or all)");
		return;
	}
	old = vm->spec->page_policy;
	vm->spec->page_policy = req->page_policy;
	if (mgr_vm_persist(m, vm)) {
		vm->spec->page_policy = old;
		cell_rpc_reply_error(call, -EIO,
				     "vm %s: the new page policy could not be "
				     "stored; it is unchanged",
				     vm->name);
		return;
	}
	mgr_vm_pages_set_mode(vm);
	CELL_INFO(
		MOD, "vm %s: page policy %s (was %s)", vm->name,
		cellproto_name(&cellproto_page_policies, (int)req->page_policy),
		cellproto_name(&cellproto_page_policies, old ? (int)old : 4));
	mgr_vm_reply(m, call, vm);
}

/* ---- vm pages ---- */

static const char *member_name(struct mgr *m, const struct mgr_vm_pages *p,
			       uint16_t i)
{
	const struct mgr_node *n =
		i < p->nmembers ? mgr_members_at(m->members, p->members[i])
				: NULL;

	return n ? n->id : "?";
}

/* Names of the members in mask, into a NULL-free array from pool. */
static size_t names_of(struct mgr *m, const struct mgr_vm_pages *p,
		       uint64_t mask, char **out)
{
	size_t n = 0;

	for (uint16_t i = 0; i < p->nmembers; i++)
		if (mask & (1ull << i))
			out[n++] = (char *)member_name(m, p, i);
	return n;
}

void mgr_vm_pages_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		       void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = mgr_vm_find(m, req->name);
	struct mgr_vm_pages *p;
	Cellmon__VmPagesReply r = CELLMON__VM_PAGES_REPLY__INIT;
	Cellmon__PageHeat *heat, **heatp;
	Cellmon__SharedPage *sh, **shp;
	Cellmon__PageRange *rg = NULL, **rgp = NULL;
	uint32_t *rnums = NULL;
	char **names;
	uint32_t *nums, *vcpus;
	size_t nn = 0, nv = 0, nx = 0;

	if (!vm) {
		cell_rpc_reply_error(call, -ENOENT, "no vm '%.64s'", req->name);
		return;
	}
	p = vm->pages && vm->pages->region == vm->region ? vm->pages : NULL;
	r.name = vm->name;
	r.page_policy = vm->spec->page_policy;
	r.region = vm->region;
	if (!p) {
		cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_PAGES_REPLY,
			       &r.base);
		return;
	}
	heat = calloc(p->nhot + 1, sizeof(*heat));
	heatp = calloc(p->nhot + 1, sizeof(*heatp));
	sh = calloc(p->pp.nshared + 1, sizeof(*sh));
	shp = calloc(p->pp.nshared + 1, sizeof(*shp));
	names = calloc((2u * p->nhot + 2u * p->pp.nshared + 2) * p->nmembers +
			       1,
		       sizeof(*names));
	nums = calloc((size_t)2 * p->nhot * p->nmembers + 1, sizeof(*nums));
	vcpus = calloc((size_t)p->pp.nshared * vm->nvcpus + 1, sizeof(*vcpus));
	if (!heat || !heatp || !sh || !shp || !names || !nums || !vcpus) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		goto out;
	}
	r.rounds = p->rounds;
	r.interval_ms = p->interval_ms;
	r.moves = p->pp.moves;
	r.pushes = p->pp.pushes;
	r.applied = p->applied;
	r.dropped = p->dropped;
	r.limited = p->pp.limited;
	r.held = p->pp.held_back;
	for (uint32_t k = 0; k < p->nhot; k++) {
		const struct hot_page *h = &p->hot[k];
		Cellmon__PageHeat *e = &heat[k];

		cellmon__page_heat__init(e);
		e->page = h->page;
		e->home = (char *)member_name(m, p, h->home);
		e->nodes = names + nn;
		e->n_nodes = names_of(m, p, ~0ull, names + nn);
		nn += e->n_nodes;
		e->reads = nums + nx;
		e->writes = nums + nx + p->nmembers;
		e->n_reads = e->n_writes = p->nmembers;
		for (uint16_t i = 0; i < p->nmembers; i++) {
			e->reads[i] = h->reads[i];
			e->writes[i] = h->writes[i];
		}
		nx += 2u * p->nmembers;
		e->copies = names + nn;
		e->n_copies = names_of(m, p, h->copies, names + nn);
		nn += e->n_copies;
		heatp[k] = e;
	}
	r.hot = heatp;
	r.n_hot = p->nhot;
	for (uint32_t k = 0; k < p->pp.nshared; k++) {
		const struct mgr_pp_shared *s = &p->pp.shared[k];
		Cellmon__SharedPage *e = &sh[k];

		cellmon__shared_page__init(e);
		e->page = s->page;
		e->intervals = s->intervals;
		e->writers = names + nn;
		e->n_writers = names_of(m, p, s->writers, names + nn);
		nn += e->n_writers;
		e->readers = names + nn;
		e->n_readers = names_of(m, p, s->readers, names + nn);
		nn += e->n_readers;
		e->vcpus = vcpus + nv;
		for (uint32_t c = 0; c < vm->nvcpus; c++)
			for (size_t w = 0; w < e->n_writers + e->n_readers; w++)
				if (strcmp(vm->vcpus[c].node,
					   w < e->n_writers
						   ? e->writers[w]
						   : e->readers
							     [w -
							      e->n_writers]) ==
				    0) {
					e->vcpus[e->n_vcpus++] = c;
					break;
				}
		nv += e->n_vcpus;
		shp[k] = e;
	}
	r.shared = shp;
	r.n_shared = p->pp.nshared;
	if (p->map) {
		rg = calloc(p->nranges, sizeof(*rg));
		rgp = calloc(p->nranges, sizeof(*rgp));
		rnums = calloc((size_t)2 * p->nranges * p->nmembers,
			       sizeof(*rnums));
		r.map_nodes = names + nn;
		r.n_map_nodes = names_of(m, p, ~0ull, names + nn);
		nn += r.n_map_nodes;
	}
	if (rg && rgp && rnums) {
		for (uint32_t i = 0; i < p->nranges; i++) {
			Cellmon__PageRange *e = &rg[i];
			const struct map_cell *c =
				&p->map[(size_t)i * p->nmembers];

			cellmon__page_range__init(e);
			e->first = i * p->range_pages;
			e->homed = rnums + (size_t)2 * i * p->nmembers;
			e->faults = e->homed + p->nmembers;
			e->n_homed = e->n_faults = p->nmembers;
			for (uint16_t k = 0; k < p->nmembers; k++) {
				e->homed[k] = c[k].homed;
				e->faults[k] = c[k].faults_round;
				e->replicated += c[k].replicated;
			}
			rgp[i] = e;
		}
		r.range_pages = p->range_pages;
		r.ranges = rgp;
		r.n_ranges = p->nranges;
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_PAGES_REPLY, &r.base);
out:
	free(rg);
	free(rgp);
	free(rnums);
	free(heat);
	free(heatp);
	free(sh);
	free(shp);
	free(names);
	free(nums);
	free(vcpus);
}
