/*
 * The home side of the coherence engine (proto.c has the rest): a page's
 * home keeps its directory entry (struct dsm__dir: owner, copyset,
 * version, busy, a queue of waiting requests) and runs one transaction
 * per page at a time, from the request to the requester's DONE. A read
 * is granted from the home's own copy or forwarded to the owner, which
 * downgrades; a write invalidates the sharers (their acks go to the
 * requester) and is granted or forwarded; a read miss also pushes the
 * neighbouring read-only pages the home holds (prefetch); a home move
 * hands the directory to another node.
 *
 * Entered only from dsm__engine_receive (dsm__home_request,
 * dsm__home_done) and the holder's time-window check; the same thread
 * rules as the engine (proto.h).
 */

#include "cell/log.h"
#include "proto_int.h"

#define MOD "dsm"

static void count_request(struct dsm__engine *r, uint32_t p, uint16_t node,
			  bool write)
{
	uint8_t i = node < DSM_MAX_NODES ? r->member_slot[node] : 0;

	if (!i--)
		return;
	r->req_by_node[(size_t)p * r->cfg.nmembers + i]++;
	dsm__sample_count(r, p, i, write);
}

/* A page prefetch or zero fault-around hands `to` without a request of
 * its own: sampled as its use all the same (the page policy's counts,
 * not req_by_node's). */
static void count_handout(struct dsm__engine *r, uint32_t p, uint16_t to,
			  bool write)
{
	uint8_t i = to < DSM_MAX_NODES ? r->member_slot[to] : 0;

	if (i)
		dsm__sample_count(r, p, (uint16_t)(i - 1), write);
}

/* A GRANT from the home itself (untouched pages, or no data needed). */
static void grant(struct dsm__engine *r, uint32_t p, uint16_t to, uint8_t flags,
		  uint64_t version, uint16_t acks)
{
	struct dsm__msg m = {.type = DSM_MSG_GRANT,
			     .flags = flags,
			     .from = r->cfg.self,
			     .node = r->cfg.self,
			     .acks = acks,
			     .page = p,
			     .version = version};

	dsm__proto_send(r, to, &m, NULL);
}

static void fwd(struct dsm__engine *r, uint32_t p, uint8_t type, uint16_t to,
		uint16_t target, uint64_t new_version, uint64_t req_version,
		uint16_t acks, uint8_t flags)
{
	struct dsm__msg m = {.type = type,
			     .flags = flags,
			     .from = r->cfg.self,
			     .node = target,
			     .acks = acks,
			     .page = p,
			     .version = new_version,
			     .copyset = req_version};

	dsm__proto_send(r, to, &m, NULL);
}

/*
 * Points p at its new home and tells everyone else. Every home pointer
 * carries the move count it was learned at and only a later one replaces
 * it, so stale updates cannot point the page backwards or into a cycle.
 */
static void set_home(struct dsm__engine *r, uint32_t p, uint16_t home)
{
	struct dsm__msg m = {.type = DSM_MSG_HOME_UPDATE,
			     .from = r->cfg.self,
			     .node = home,
			     .page = p};

	r->home[p] = home;
	r->dirs[p].replicas = 0;
	m.window = ++r->dirs[p].home_seq;
	for (uint16_t i = 0; i < r->cfg.nmembers; i++) {
		uint16_t n = r->cfg.members[i];

		if (n != r->cfg.self && n != home)
			dsm__proto_send(r, n, &m, NULL);
	}
}

/* Sends every queued request of p on to its new home. */
static void forward_queue(struct dsm__engine *r, uint32_t p)
{
	struct dsm__dir *d = &r->dirs[p];
	struct dsm__msg m;

	while (dsm__proto_list_pop(r, &d->qhead, &d->qtail, &m))
		dsm__proto_send(r, r->home[p], &m, NULL);
}

/* Untouched page: the target gets it exclusively, zero-filled. Under the
 * first-touch policy the directory goes along with it. */
static void grant_untouched(struct dsm__engine *r, uint32_t p, uint16_t to,
			    uint8_t extra)
{
	struct dsm__dir *d = &r->dirs[p];
	uint8_t flags = DSM_GRANT_ZERO | DSM_GRANT_WRITE | extra;

	d->untouched = 0;
	d->version = 1;
	d->owner = to;
	d->copyset = 0;
	if (r->cfg.policy == DSM_HOME_FIRST_TOUCH && to != r->cfg.self) {
		struct dsm__msg g = {.type = DSM_MSG_GRANT,
				     .flags = flags | DSM_GRANT_NEWHOME,
				     .from = r->cfg.self,
				     .node = to,
				     .page = p,
				     .version = 1,
				     .window = d->home_seq + 1};

		d->busy = 0;
		dsm__proto_send(r, to, &g, NULL);
		set_home(r, p, to);
		forward_queue(r, p);
		return;
	}
	grant(r, p, to, flags, 1, 0);
}

/* A read (or push/prefetch: push set) of p for `to`. Returns false when
 * there was nothing to do (no transaction started). */
static bool home_read(struct dsm__engine *r, uint32_t p, uint16_t to,
		      uint64_t to_version, bool push)
{
	struct dsm__dir *d = &r->dirs[p];
	uint8_t pf = push ? DSM_GRANT_PUSH : 0;
	int src;

	if (d->untouched) {
		if (!push)
			grant_untouched(r, p, to, 0);
		return !push;
	}
	if (d->owner != DSM_NO_NODE) {
		if (d->owner == to) {
			if (push)
				return false;
			grant(r, p, to, DSM_GRANT_WRITE, ++d->version, 0);
			return true;
		}
		fwd(r, p, DSM_MSG_FWD_READ, d->owner, to, d->version,
		    to_version, 0, pf);
		d->copyset = bit(d->owner) | bit(to);
		d->owner = DSM_NO_NODE;
		return true;
	}
	if (d->copyset & bit(to)) {
		if (push)
			return false;
		grant(r, p, to, 0, d->version, 0);
		return true;
	}
	src = (d->copyset & bit(r->cfg.self)) ? r->cfg.self
					      : lowest(d->copyset);
	fwd(r, p, DSM_MSG_FWD_READ, (uint16_t)src, to, d->version, to_version,
	    0, pf);
	d->copyset |= bit(to);
	return true;
}

static void home_write(struct dsm__engine *r, uint32_t p, uint16_t w,
		       uint64_t w_version)
{
	struct dsm__dir *d = &r->dirs[p];
	uint64_t others;
	uint16_t n;
	int src;

	if (d->untouched) {
		grant_untouched(r, p, w, 0);
		return;
	}
	d->version++;
	if (d->owner != DSM_NO_NODE) {
		if (d->owner == w)
			grant(r, p, w, DSM_GRANT_WRITE, d->version, 0);
		else
			fwd(r, p, DSM_MSG_FWD_WRITE, d->owner, w, d->version,
			    w_version, 0, 0);
		d->owner = w;
		return;
	}
	others = d->copyset & ~bit(w);
	n = (uint16_t)__builtin_popcountll(others);
	if (d->copyset & bit(w)) {
		/* Upgrade: w has the bytes; the others ack to w directly. */
		grant(r, p, w, DSM_GRANT_WRITE, d->version, n);
	} else {
		src = (others & bit(r->cfg.self)) ? r->cfg.self
						  : lowest(others);
		others &= ~bit((uint16_t)src);
		fwd(r, p, DSM_MSG_FWD_WRITE, (uint16_t)src, w, d->version,
		    w_version, (uint16_t)(n - 1), 0);
	}
	for (int s; (s = lowest(others)) >= 0; others &= others - 1)
		dsm__proto_send_simple(r, (uint16_t)s, DSM_MSG_INV, p, w);
	d->owner = w;
	d->copyset = 0;
}

static void home_move(struct dsm__engine *r, uint32_t p, uint16_t to)
{
	struct dsm__dir *d = &r->dirs[p];
	struct dsm__msg m = {.type = DSM_MSG_DIR_XFER,
			     .flags = d->untouched,
			     .from = r->cfg.self,
			     .node = d->owner,
			     .page = p,
			     .window = d->home_seq + 1,
			     .version = d->version,
			     .copyset = d->copyset};

	if (to == r->cfg.self || !(r->members_mask & bit(to)))
		return;
	dsm__proto_send(r, to, &m, NULL);
	set_home(r, p, to);
	forward_queue(r, p);
	CELL_DEBUG(MOD, "home moved region=%llu page=%u to=%u",
		   (unsigned long long)r->cfg.id, p, to);
}

/* Whether the Mirage time window still keeps pg here. */
bool dsm__in_time_window(const struct dsm__engine *r,
			 const struct dsm__page *pg)
{
	return r->cfg.window_ms && r->cfg.ops->now_ms(r->cfg.env) <
					   pg->acquired_ms + r->cfg.window_ms;
}

/* Whether prefetch may push page q to `to`: homed here, idle, and not
 * already held by `to`. */
static bool can_push(const struct dsm__engine *r, uint32_t q, uint16_t to)
{
	const struct dsm__dir *d = &r->dirs[q];

	return r->home[q] == r->cfg.self && !d->busy && d->qhead < 0 &&
	       d->owner != to && !(d->copyset & bit(to));
}

/*
 * Read broadcast: a read miss on a page the policy marked for
 * replication also pushes it to every other marked reader without a
 * copy, queued behind the read. The first reader after a write pays the
 * fault; the others find the page there. Nothing for an unmarked page.
 */
static void broadcast(struct dsm__engine *r, uint32_t p, uint16_t reader)
{
	struct dsm__dir *d = &r->dirs[p];
	uint64_t to = d->replicas & r->members_mask &
		      ~(d->copyset | bit(reader) | bit(r->cfg.self));

	if (!to)
		return;
	if (d->owner != DSM_NO_NODE)
		to &= ~bit(d->owner);
	for (int n; (n = lowest(to)) >= 0; to &= to - 1) {
		/* requests come first: pushes never take the queue's
		 * second half */
		if (r->queue_used >= r->queue_slots / 2)
			break;
		struct dsm__msg m = {.type = DSM_MSG_PUSH,
				     .from = r->cfg.self,
				     .node = (uint16_t)n,
				     .page = p};

		if (dsm__proto_list_push(r, &d->qhead, &d->qtail, &m))
			break;
		r->broadcasts++;
	}
}

/*
 * Prefetch: after a read miss on p, pages p+1.. that this home can give
 * right away go to the requester as unsolicited grants.
 *
 * Zero fault-around (zero set): after a write miss on an untouched page
 * p, only the untouched idle pages after it go, to the writer
 * exclusively (zeros, no data on the wire), until the first that does
 * not qualify. A guest that allocates memory writes it in runs; each
 * page so handed out is one fault fewer (on a virtualized host a fault
 * costs two thread wake-ups), and a page the writer never uses costs it
 * one zeroed page of its own region.
 */
static void prefetch(struct dsm__engine *r, uint32_t p, uint16_t to,
		     uint32_t window, bool zero)
{
	for (uint32_t q = p + 1; q < r->cfg.npages && q < p + window; q++) {
		struct dsm__dir *d = &r->dirs[q];

		if ((zero && !d->untouched) || !can_push(r, q, to))
			break;
		d->busy = 1;
		d->cur = to;
		count_handout(r, q, to, zero);
		if (d->untouched) {
			grant_untouched(r, q, to, DSM_GRANT_PUSH);
		} else {
			home_read(r, q, to, 0, true);
			broadcast(r, q, to);
		}
		if (r->home[q] != r->cfg.self)
			break; /* handed to `to` by first touch */
	}
}

/*
 * A read miss on p with a window, at a home that also holds p and the
 * pages after it in M (a writer's pages read by a sequential reader):
 * each FWD_READ to ourselves would downgrade its page alone, one TLB
 * shootdown per page. Instead the run that home_read and prefetch() are
 * about to hand out goes read-only in one call, and the FWD_READs find
 * the pages in S. A page pending, deferred, inside the time window, or
 * one prefetch() would stop at, ends the run.
 */
static void downgrade_run(struct dsm__engine *r, uint32_t p, uint16_t to,
			  uint32_t window)
{
	uint32_t q;

	for (q = p; q < r->cfg.npages && q < p + window; q++) {
		const struct dsm__page *pg = &r->pages[q];

		if (pg->state != DSM_M || pg->pending || pg->has_deferred ||
		    r->dirs[q].owner != r->cfg.self ||
		    dsm__in_time_window(r, pg) ||
		    (q > p && !can_push(r, q, to)))
			break;
	}
	if (q - p < 2)
		return; /* one page: its FWD_READ does it */
	r->cfg.ops->mem_downgrade(r->cfg.env, r, p, q - p);
	for (uint32_t i = p; i < q; i++)
		r->pages[i].state = DSM_S;
}

/* Starts the transaction of request m on an idle page at its home. */
static void home_start(struct dsm__engine *r, const struct dsm__msg *m)
{
	uint32_t p = m->page;
	struct dsm__dir *d = &r->dirs[p];

	d->busy = 1;
	d->cur = m->type == DSM_MSG_PUSH ? m->node : m->from;
	switch (m->type) {
	case DSM_MSG_READ_REQ:
		count_request(r, p, m->from, false);
		if (m->window > 1 && m->from != r->cfg.self)
			downgrade_run(r, p, m->from, m->window);
		home_read(r, p, m->from, m->version, false);
		broadcast(r, p, m->from);
		if (m->window > 1)
			prefetch(r, p, m->from, m->window, false);
		break;
	case DSM_MSG_WRITE_REQ: {
		bool zero = d->untouched;

		count_request(r, p, m->from, true);
		home_write(r, p, m->from, m->version);
		if (zero && m->window > 1 && r->home[p] == r->cfg.self)
			prefetch(r, p, m->from, m->window, true);
		break;
	}
	case DSM_MSG_PUSH:
		if (home_read(r, p, m->node, 0, true)) {
			count_handout(r, p, m->node, false);
			r->pushes++;
		} else {
			d->busy = 0;
		}
		break;
	case DSM_MSG_MOVE_HOME:
		d->busy = 0;
		home_move(r, p, m->node);
		break;
	}
	if (r->home[p] != r->cfg.self)
		d->busy = 0;
}

/* Runs queued requests of p while the page is idle and still ours. */
static void home_drain(struct dsm__engine *r, uint32_t p)
{
	struct dsm__dir *d = &r->dirs[p];
	struct dsm__msg m;

	while (!d->busy && r->home[p] == r->cfg.self &&
	       dsm__proto_list_pop(r, &d->qhead, &d->qtail, &m))
		home_start(r, &m);
	if (r->home[p] != r->cfg.self)
		forward_queue(r, p);
}

void dsm__home_request(struct dsm__engine *r, const struct dsm__msg *m)
{
	uint32_t p = m->page;
	struct dsm__dir *d = &r->dirs[p];

	if (r->home[p] != r->cfg.self) {
		/* Not (or not yet) ours: on to the home we know of. A home
		 * that passed the page on forwards it behind the transfer, so
		 * a request overtaking a transfer bounces at most once. */
		dsm__proto_send(r, r->home[p], (struct dsm__msg *)m, NULL);
		return;
	}
	if (d->busy || d->qhead >= 0) {
		dsm__proto_list_push(r, &d->qhead, &d->qtail, m);
		return;
	}
	home_start(r, m);
}

void dsm__home_done(struct dsm__engine *r, const struct dsm__msg *m)
{
	uint32_t p = m->page;
	struct dsm__dir *d = &r->dirs[p];

	if (r->home[p] != r->cfg.self || !d->busy || d->cur != m->from) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "unexpected DONE region=%llu page=%u from=%u",
			    (unsigned long long)r->cfg.id, p, m->from);
		return;
	}
	d->busy = 0;
	home_drain(r, p);
}
