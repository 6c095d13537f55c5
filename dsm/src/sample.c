/*
 * Page-policy sampling at a page's home (docs/design/page-policy.md):
 * the requests this home received since the last sample, by page and by
 * member, reads and writes apart, in a table of fixed size made when the
 * engine starts.
 *
 * Counting is one probe of an open-addressed table and two increments,
 * done where the home already counts requests (count_request in
 * proto_home.c), on the node thread like everything in the engine: no
 * lock and no allocation on that path. A page that finds the table full
 * (more distinct pages requested in one interval than 3/4 of its slots)
 * is not counted this interval; the sample says how many were lost.
 *
 * A sample (dsm__engine_sample, also on the node thread: the user's
 * call waits for it there) picks the pages with the most requests from
 * members other than this one, copies their counts and the directory's
 * owner and copyset, and empties the table: counts are per interval, as
 * Disco reset its miss counters after each decision.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_int.h"

#define EMPTY UINT32_MAX

static uint32_t slot_hash(const struct dsm__engine *r, uint32_t page)
{
	return (page * 2654435761u) & (r->iv_slots - 1);
}

int dsm__sample_init(struct dsm__engine *r)
{
	size_t w = 2u * r->cfg.nmembers;
	uint32_t want =
		r->cfg.sample_slots ? r->cfg.sample_slots : DSM_SAMPLE_SLOTS;

	for (r->iv_slots = 4; r->iv_slots < want && r->iv_slots < (1u << 24);)
		r->iv_slots *= 2;
	r->iv_fill = r->iv_slots / 4 * 3;
	r->iv_page = malloc(r->iv_slots * sizeof(*r->iv_page));
	r->iv_count = calloc((size_t)r->iv_slots * w, sizeof(*r->iv_count));
	r->iv_used = malloc(r->iv_fill * sizeof(*r->iv_used));
	if (!r->iv_page || !r->iv_count || !r->iv_used)
		return -ENOMEM;
	memset(r->iv_page, 0xff, r->iv_slots * sizeof(*r->iv_page));
	dsm__prefault(r->iv_count,
		      (size_t)r->iv_slots * w * sizeof(*r->iv_count));
	dsm__prefault(r->iv_used, r->iv_fill * sizeof(*r->iv_used));
	r->iv_n = 0;
	r->iv_lost = 0;
	r->iv_since_ms = r->cfg.ops->now_ms(r->cfg.env);
	return 0;
}

void dsm__sample_fini(struct dsm__engine *r)
{
	free(r->iv_page);
	free(r->iv_count);
	free(r->iv_used);
}

void dsm__sample_count(struct dsm__engine *r, uint32_t p, uint16_t member,
		       bool write)
{
	uint32_t s = slot_hash(r, p);

	while (r->iv_page[s] != p) {
		if (r->iv_page[s] == EMPTY) {
			if (r->iv_n >= r->iv_fill) {
				r->iv_lost++;
				return;
			}
			r->iv_page[s] = p;
			r->iv_used[r->iv_n++] = s;
			break;
		}
		s = (s + 1) & (r->iv_slots - 1);
	}
	r->iv_count[(size_t)s * 2 * r->cfg.nmembers + 2 * member + write]++;
}

/* Requests to slot s from members other than this node. */
static uint64_t remote_score(const struct dsm__engine *r, uint32_t s)
{
	const uint32_t *c = &r->iv_count[(size_t)s * 2 * r->cfg.nmembers];
	uint64_t sum = 0;

	for (uint16_t i = 0; i < r->cfg.nmembers; i++)
		if (r->cfg.members[i] != r->cfg.self)
			sum += (uint64_t)c[2 * i] + c[2 * i + 1];
	return sum;
}

struct ranked {
	uint64_t score;
	uint32_t slot;
};

static int by_score_desc(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

int dsm__engine_sample(struct dsm__engine *r, struct dsm_page_sample *out,
		       uint32_t max, struct dsm_sample_info *info)
{
	struct ranked *rk = malloc((r->iv_n ? r->iv_n : 1) * sizeof(*rk));
	uint32_t n = 0, k = 0;
	uint64_t now = r->cfg.ops->now_ms(r->cfg.env);

	if (!rk)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->iv_n; i++) {
		uint32_t s = r->iv_used[i];
		uint64_t sc = remote_score(r, s);

		if (sc && r->home[r->iv_page[s]] == r->cfg.self)
			rk[n++] = (struct ranked){sc, s};
	}
	qsort(rk, n, sizeof(*rk), by_score_desc);
	for (; k < n && k < max; k++) {
		uint32_t s = rk[k].slot, p = r->iv_page[s];
		const uint32_t *c =
			&r->iv_count[(size_t)s * 2 * r->cfg.nmembers];
		struct dsm_page_sample *o = &out[k];

		o->page = p;
		o->owner = r->dirs[p].owner;
		o->home = r->cfg.self;
		o->copyset = r->dirs[p].copyset;
		for (uint16_t i = 0; i < r->cfg.nmembers; i++) {
			o->reads[i] = c[2 * i];
			o->writes[i] = c[2 * i + 1];
		}
	}
	info->count = k;
	info->ranked = n;
	info->seen = r->iv_n;
	info->lost = r->iv_lost;
	info->interval_ms = now > r->iv_since_ms ? now - r->iv_since_ms : 0;
	free(rk);
	/* a new interval: empty the slots used */
	for (uint32_t i = 0; i < r->iv_n; i++) {
		uint32_t s = r->iv_used[i];

		r->iv_page[s] = EMPTY;
		memset(&r->iv_count[(size_t)s * 2 * r->cfg.nmembers], 0,
		       2u * r->cfg.nmembers * sizeof(*r->iv_count));
	}
	r->iv_n = 0;
	r->iv_lost = 0;
	r->iv_since_ms = now;
	return 0;
}

int dsm__engine_apply(struct dsm__engine *r, const struct dsm_policy_op *op)
{
	struct dsm__dir *d;

	if (op->page >= r->cfg.npages ||
	    (!op->unmark && (op->node >= DSM_MAX_NODES ||
			     !(r->members_mask & (1ull << op->node)) ||
			     op->node == r->cfg.self)))
		return -EINVAL;
	if (r->home[op->page] != r->cfg.self)
		return -ESTALE; /* moved meanwhile */
	d = &r->dirs[op->page];
	if (op->unmark) {
		d->replicas = 0;
		return 0;
	}
	if (!op->push)
		return dsm__engine_move_home(r, op->page, op->node);
	if (d->untouched)
		return -ESTALE; /* nothing to copy */
	d->replicas |= 1ull << op->node;
	if (d->owner == op->node || (d->copyset & (1ull << op->node)))
		return 0; /* marked; it has a copy already */
	return dsm__engine_push(r, op->page, op->node);
}
