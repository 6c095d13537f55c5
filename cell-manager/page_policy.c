/*
 * The page policy (page_policy.h): what to do with each sampled page,
 * with hysteresis and a rate limit. Tables are open-addressed by page
 * and of fixed size; a full table errs on the side of doing nothing (a
 * page that cannot be recorded as held is not moved).
 */
#include <string.h>

#include "page_policy.h"

void mgr_pp_config_defaults(struct mgr_pp_config *c)
{
	c->min_requests = 8;
	c->migrate_pct = 80;
	c->read_mostly_pct = 40;
	c->hold_ms = 10000;
	c->ops_per_s = 1000;
}

void mgr_pp_vm_init(struct mgr_pp_vm *v, enum mgr_pp_mode mode,
		    uint16_t members, uint64_t now_ms)
{
	memset(v, 0, sizeof(*v));
	v->mode = mode;
	v->members = members > MGR_PP_MEMBERS ? MGR_PP_MEMBERS : members;
	for (uint16_t i = 0; i < v->members; i++)
		v->up[i] = true;
	v->tokens_ms = now_ms;
	v->tokens = -1; /* filled at the first decision */
}

static const char *const mode_names[] = {"off", "migrate", "replicate", "all"};

int mgr_pp_mode_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, mode_names[i]) == 0)
			return i;
	return -1;
}

const char *mgr_pp_mode_name(enum mgr_pp_mode m)
{
	return (unsigned)m < 4 ? mode_names[m] : "?";
}

static uint32_t slot_of(uint32_t page, uint32_t size)
{
	return (page * 2654435761u) & (size - 1);
}

/* ---- held pages ---- */

static bool is_held(const struct mgr_pp_vm *v, uint32_t page, uint64_t now)
{
	uint32_t s = slot_of(page, MGR_PP_HELD);

	for (uint32_t k = 0; k < MGR_PP_HELD && v->held_page[s]; k++) {
		if (v->held_page[s] == page + 1)
			return v->held_until[s] > now;
		s = (s + 1) & (MGR_PP_HELD - 1);
	}
	return false;
}

/* Records page as held until `until` in the first free or expired slot
 * of its chain (the caller found it not held: an older entry further
 * along is expired, and the new one is found first); false when the
 * table has no room (then it must not move). */
static bool hold(struct mgr_pp_vm *v, uint32_t page, uint64_t now,
		 uint64_t until)
{
	uint32_t s = slot_of(page, MGR_PP_HELD);

	for (uint32_t k = 0; k < MGR_PP_HELD; k++) {
		if (!v->held_page[s] || v->held_page[s] == page + 1 ||
		    v->held_until[s] <= now) {
			v->held_page[s] = page + 1;
			v->held_until[s] = until;
			return true;
		}
		s = (s + 1) & (MGR_PP_HELD - 1);
	}
	return false;
}

/* ---- read-mostly pages ---- */

/* The slot of page in the replica table, or -1; with add, a free one
 * for it (or -1 when full). */
static int repl_slot(struct mgr_pp_vm *v, uint32_t page, bool add)
{
	uint32_t s = slot_of(page, MGR_PP_REPL);
	int free_slot = -1;

	for (uint32_t k = 0; k < MGR_PP_REPL; k++) {
		if (v->repl_page[s] == page + 1)
			return (int)s;
		if (!v->repl_page[s]) {
			if (free_slot < 0)
				free_slot = (int)s;
			break;
		}
		if (v->repl_page[s] == UINT32_MAX && free_slot < 0)
			free_slot = (int)s; /* a tombstone */
		s = (s + 1) & (MGR_PP_REPL - 1);
	}
	if (!add || free_slot < 0)
		return -1;
	v->repl_page[free_slot] = page + 1;
	v->repl_readers[free_slot] = v->repl_marked[free_slot] = 0;
	v->repl_reads[free_slot] = v->repl_writes[free_slot] = 0;
	return free_slot;
}

static void repl_drop(struct mgr_pp_vm *v, uint32_t page)
{
	int s = repl_slot(v, page, false);

	if (s >= 0)
		v->repl_page[s] = UINT32_MAX; /* keeps chains whole */
}

/* ---- write-shared notes ---- */

static void note_shared(struct mgr_pp_vm *v, uint32_t page, uint64_t writers,
			uint64_t readers, uint64_t now)
{
	struct mgr_pp_shared *e = NULL;

	for (uint32_t i = 0; i < v->nshared && !e; i++)
		if (v->shared[i].page == page)
			e = &v->shared[i];
	if (!e && v->nshared < MGR_PP_SHARED)
		e = &v->shared[v->nshared++];
	if (!e) { /* full: the one seen longest ago gives way */
		e = &v->shared[0];
		for (uint32_t i = 1; i < v->nshared; i++)
			if (v->shared[i].seen_ms < e->seen_ms)
				e = &v->shared[i];
		e->intervals = 0;
	}
	if (e->page != page || !e->intervals)
		*e = (struct mgr_pp_shared){.page = page};
	e->writers |= writers;
	e->readers |= readers;
	e->seen_ms = now;
	e->intervals++;
}

/* ---- the budget ---- */

static void refill(struct mgr_pp_vm *v, const struct mgr_pp_config *c,
		   uint64_t now)
{
	double cap = c->ops_per_s;

	if (v->tokens < 0) {
		v->tokens = cap;
	} else if (now > v->tokens_ms) {
		v->tokens += cap * (double)(now - v->tokens_ms) / 1000.0;
		if (v->tokens > cap)
			v->tokens = cap;
	}
	v->tokens_ms = now;
}

static bool take(struct mgr_pp_vm *v)
{
	if (v->tokens < 1) {
		v->limited++;
		return false;
	}
	v->tokens -= 1;
	return true;
}

/* ---- deciding ---- */

struct tally {
	uint64_t total, writes;
	uint64_t writers, readers; /* masks */
	uint16_t top;		   /* member with most requests */
	uint64_t top_count;
};

static void tally(const struct mgr_pp_vm *v, const struct mgr_pp_sample *p,
		  struct tally *t)
{
	memset(t, 0, sizeof(*t));
	for (uint16_t i = 0; i < v->members; i++) {
		uint64_t c = (uint64_t)p->reads[i] + p->writes[i];

		t->total += c;
		t->writes += p->writes[i];
		if (p->writes[i])
			t->writers |= 1ull << i;
		if (p->reads[i])
			t->readers |= 1ull << i;
		if (c > t->top_count) {
			t->top_count = c;
			t->top = i;
		}
	}
}

static int popcount(uint64_t x)
{
	return __builtin_popcountll(x);
}

/* Marks every up reader of tracked page slot rs but the home that is
 * not marked yet (the home copies it to those without a copy). */
static uint32_t mark_readers(struct mgr_pp_vm *v, uint16_t home, int rs,
			     uint32_t page, struct mgr_pp_decision *out,
			     uint32_t room)
{
	uint32_t n = 0;

	if (v->repl_home[rs] != home) { /* moved: its marks went with it */
		v->repl_home[rs] = home;
		v->repl_marked[rs] = 0;
	}
	for (uint16_t i = 0; i < v->members && n < room; i++) {
		uint64_t b = 1ull << i;

		if (i == home || !(v->repl_readers[rs] & b) ||
		    (v->repl_marked[rs] & b) || !v->up[i])
			continue;
		if (!take(v))
			break;
		out[n++] = (struct mgr_pp_decision){page, i, true, false};
		v->repl_marked[rs] |= b;
		v->pushes++;
	}
	return n;
}

/* Moves page's home to member `to` unless held or over budget; true when
 * decided. */
static bool move_home(struct mgr_pp_vm *v, const struct mgr_pp_config *c,
		      uint32_t page, uint16_t to, uint64_t now,
		      struct mgr_pp_decision *out)
{
	if (is_held(v, page, now)) {
		v->held_back++;
		return false;
	}
	if (!take(v))
		return false;
	if (!hold(v, page, now, now + c->hold_ms)) {
		v->tokens += 1; /* not spent */
		return false;
	}
	*out = (struct mgr_pp_decision){page, to, false, false};
	v->moves++;
	return true;
}

uint32_t mgr_pp_decide(struct mgr_pp_vm *v, const struct mgr_pp_config *c,
		       uint16_t home, const struct mgr_pp_sample *s, uint32_t n,
		       uint64_t now_ms, struct mgr_pp_decision *out,
		       uint32_t max)
{
	uint32_t k = 0;

	if (v->mode == MGR_PP_OFF || home >= v->members)
		return 0;
	refill(v, c, now_ms);
	for (uint32_t j = 0; j < n && k < max; j++) {
		const struct mgr_pp_sample *p = &s[j];
		struct tally t;
		bool read_mostly;
		int rs;

		tally(v, p, &t);
		read_mostly = t.total &&
			      t.writes * 100 <=
				      (uint64_t)c->read_mostly_pct * t.total;
		rs = repl_slot(v, p->page, false);
		/* migrate: one member, not the home, makes nearly all of
		 * enough requests, or all of them (its only user: a DSM page
		 * faults again only when another node took it, so a page
		 * used by one node shows one request per use) */
		if ((v->mode & MGR_PP_MIGRATE) && t.top != home &&
		    (t.top_count == t.total ||
		     (t.total >= c->min_requests &&
		      t.top_count * 100 >=
			      (uint64_t)c->migrate_pct * t.total))) {
			if (!v->up[t.top])
				continue;
			if (move_home(v, c, p->page, t.top, now_ms, &out[k])) {
				k++;
				repl_drop(v, p->page);
			} else if (v->tokens < 1) {
				break;
			}
			continue;
		}
		/* leave: written, used by two or more members, no member
		 * dominant: write-shared (a page tracked as read-mostly is
		 * judged on its average below) */
		if (rs < 0 && t.writers &&
		    popcount(t.writers | t.readers) >= 2 && !read_mostly) {
			note_shared(v, p->page, t.writers, t.readers, now_ms);
			repl_drop(v, p->page);
			v->left++;
			continue;
		}
		if (!(v->mode & MGR_PP_REPLICATE))
			continue;
		/* replicate: read-mostly, two or more readers, or a page
		 * tracked as such that is still read-mostly */
		if (rs >= 0) {
			uint32_t r = (uint32_t)(t.total - t.writes);

			v->repl_reads[rs] -= v->repl_reads[rs] / 8;
			v->repl_reads[rs] += r;
			v->repl_writes[rs] -= v->repl_writes[rs] / 8;
			v->repl_writes[rs] += (uint32_t)t.writes;
			if ((uint64_t)v->repl_writes[rs] * 100 >
			    (uint64_t)c->read_mostly_pct *
				    (v->repl_reads[rs] + v->repl_writes[rs])) {
				/* written too often: no more copies */
				if (v->repl_marked[rs] &&
				    v->repl_home[rs] == home) {
					out[k++] = (struct mgr_pp_decision){
						p->page, 0, false, true};
					v->unmarks++;
				}
				repl_drop(v, p->page);
				continue;
			}
			v->repl_readers[rs] |= t.readers;
			/* one writer: the home goes to it */
			if ((v->mode & MGR_PP_MIGRATE) &&
			    popcount(t.writers) == 1) {
				uint16_t w =
					(uint16_t)__builtin_ctzll(t.writers);

				if (w != home && v->up[w] &&
				    move_home(v, c, p->page, w, now_ms,
					      &out[k])) {
					k++;
					continue;
				}
			}
			k += mark_readers(v, home, rs, p->page, out + k,
					  max - k);
			continue;
		}
		/* two readers or more (the home's own read misses count:
		 * they broadcast too) */
		if (!read_mostly || t.total < c->min_requests ||
		    popcount(t.readers) < 2)
			continue;
		rs = repl_slot(v, p->page, true);
		if (rs < 0)
			continue; /* the table is full: nothing to track it by
				   */
		v->repl_readers[rs] = t.readers;
		v->repl_reads[rs] = (uint32_t)(t.total - t.writes);
		v->repl_writes[rs] = (uint32_t)t.writes;
		v->repl_home[rs] = home;
		k += mark_readers(v, home, rs, p->page, out + k, max - k);
	}
	return k;
}
