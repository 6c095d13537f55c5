/*
 * The DSM coherence engine (proto.h): a node's pages as requester and
 * holder, and the entry point of every message; the home's directory is
 * in proto_home.c.
 *
 * Per page, every node keeps a struct dsm__page (its state I/S/M, the
 * version of the bytes it holds or last held, a pending request) and the
 * page's home keeps a struct dsm__dir (owner, copyset, version, busy, a
 * queue of waiting requests).
 *
 * Versions: dir.version names the content of a page. It grows by one with
 * every write grant; a node's page.version is the version of the bytes it
 * holds. Content of a version is frozen once its writer loses M, so a
 * requester whose version equals the current one gets a grant without
 * data (DSM_INSTALL_KEEP). A node without a copy asks with version 0,
 * which matches nothing: every invalidation comes with a write grant that
 * moved the version past the bytes it dropped, so keeping them would never
 * pay (the simulation never found a case), and a grant can only keep bytes
 * the requester still maps.
 *
 * Transactions: one per page at a time at its home, from the request to
 * the requester's DONE. Exactly one GRANT answers each transaction and
 * exactly one DONE answers each GRANT, which is what keeps the busy flag
 * honest even when grants are unsolicited (push, prefetch).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "proto_int.h"

#define MOD "dsm"

static uint16_t initial_home(const struct dsm__engine_config *c, uint32_t p)
{
	switch (c->policy) {
	case DSM_HOME_ONE:
		return c->home_node;
	default:
		/* First touch starts from the interleaved home, which hands the
		 * directory to the first toucher. */
		return c->members[(p / (c->stripe ? c->stripe : 1)) %
				  c->nmembers];
	}
}

void dsm__prefault(void *buf, size_t len)
{
	volatile uint8_t *b = buf;

	for (size_t off = 0; off < len; off += 4096)
		b[off] = 0;
	if (len)
		b[len - 1] = 0;
}

int dsm__engine_init(struct dsm__engine *r, const struct dsm__engine_config *c)
{
	uint32_t slots = c->queue_slots ? c->queue_slots : 4096;

	memset(r, 0, sizeof(*r));
	if (!c->npages || !c->nmembers || c->nmembers > DSM_MAX_NODES ||
	    c->self >= DSM_MAX_NODES || !c->ops)
		return -EINVAL;
	r->cfg = *c;
	/* The caller's member list need not outlive this call. */
	memcpy(r->members, c->members, c->nmembers * sizeof(*r->members));
	r->cfg.members = r->members;
	for (uint16_t i = 0; i < c->nmembers; i++) {
		if (c->members[i] >= DSM_MAX_NODES)
			return -EINVAL;
		r->members_mask |= bit(c->members[i]);
		r->member_slot[c->members[i]] = (uint8_t)(i + 1);
	}
	if (!(r->members_mask & bit(c->self)) ||
	    (c->policy == DSM_HOME_ONE &&
	     !(r->members_mask & bit(c->home_node))))
		return -EINVAL;
	r->pages = calloc(c->npages, sizeof(*r->pages));
	r->dirs = calloc(c->npages, sizeof(*r->dirs));
	r->home = calloc(c->npages, sizeof(*r->home));
	r->queue = calloc(slots, sizeof(*r->queue));
	r->req_by_node = calloc((size_t)c->npages * c->nmembers,
				sizeof(*r->req_by_node));
	if (!r->pages || !r->dirs || !r->home || !r->queue || !r->req_by_node ||
	    dsm__sample_init(r)) {
		dsm__engine_fini(r);
		return -ENOMEM;
	}
	/* calloc hands out untouched zero pages: without this, a sweep took
	 * a page fault every ~30 pages in its own bookkeeping. */
	dsm__prefault(r->pages, c->npages * sizeof(*r->pages));
	dsm__prefault(r->req_by_node, (size_t)c->npages * c->nmembers *
					      sizeof(*r->req_by_node));
	for (uint32_t p = 0; p < c->npages; p++) {
		struct dsm__dir *d = &r->dirs[p];

		r->home[p] = initial_home(c, p);
		d->owner = DSM_NO_NODE;
		d->untouched = 1;
		d->qhead = d->qtail = -1;
	}
	for (uint32_t i = 0; i < slots; i++)
		r->queue[i].next = i + 1 < slots ? (int32_t)(i + 1) : -1;
	r->queue_free = 0;
	r->queue_used = 0;
	r->queue_slots = slots;
	r->window = 1;
	r->last_miss = UINT32_MAX;
	return 0;
}

void dsm__engine_fini(struct dsm__engine *r)
{
	free(r->pages);
	free(r->dirs);
	free(r->home);
	free(r->queue);
	free(r->req_by_node);
	dsm__sample_fini(r);
	memset(r, 0, sizeof(*r));
}

/* The holder side of FWD_READ, FWD_WRITE and INV. */
static void holder_apply(struct dsm__engine *r, const struct dsm__msg *m)
{
	uint32_t p = m->page;
	struct dsm__page *pg = &r->pages[p];
	const void *data = NULL;
	struct dsm__msg g = {.type = DSM_MSG_GRANT,
			     .from = r->cfg.self,
			     .node = m->from,
			     .page = p};
	bool keep = m->copyset == pg->version;

	if (m->type == DSM_MSG_INV) {
		r->cfg.ops->mem_invalidate(r->cfg.env, r, p);
		pg->state = DSM_I;
		pg->c.invalidations++;
		dsm__proto_send_simple(r, m->node, DSM_MSG_INV_ACK, p, m->node);
		return;
	}
	if (pg->state == DSM_I) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD,
			    "%s for a page not held region=%llu page=%u",
			    dsm__msg_name(m->type),
			    (unsigned long long)r->cfg.id, p);
		return;
	}
	/* Writes must stop before the bytes are copied: a write landing
	 * between the copy and the downgrade would be lost. */
	if (pg->state == DSM_M) {
		r->cfg.ops->mem_downgrade(r->cfg.env, r, p, 1);
		pg->state = DSM_S;
	}
	if (!keep)
		data = r->cfg.ops->mem_bytes(r->cfg.env, r, p);
	g.flags = keep ? 0 : DSM_GRANT_DATA;
	if (m->type == DSM_MSG_FWD_READ) {
		g.flags |= m->flags & DSM_GRANT_PUSH;
		g.version = pg->version;
		dsm__proto_send(r, m->node, &g, data);
		return;
	}
	g.flags |= DSM_GRANT_WRITE;
	g.version = m->version;
	g.acks = m->acks;
	dsm__proto_send(r, m->node, &g, data);
	r->cfg.ops->mem_invalidate(r->cfg.env, r, p);
	pg->state = DSM_I;
	pg->c.invalidations++;
}

static void holder_msg(struct dsm__engine *r, const struct dsm__msg *m)
{
	struct dsm__page *pg = &r->pages[m->page];

	if (pg->state != DSM_I && !pg->has_deferred &&
	    dsm__in_time_window(r, pg)) {
		pg->deferred = *m;
		pg->has_deferred = 1;
		pg->c.deferrals++;
		r->cfg.ops->defer(r->cfg.env, r, m->page,
				  pg->acquired_ms + r->cfg.window_ms);
		return;
	}
	holder_apply(r, m);
}

void dsm__engine_retry(struct dsm__engine *r, uint32_t page)
{
	struct dsm__page *pg;
	uint64_t until;

	if (page >= r->cfg.npages)
		return;
	pg = &r->pages[page];
	if (!pg->has_deferred)
		return;
	until = pg->acquired_ms + r->cfg.window_ms;
	if (r->cfg.ops->now_ms(r->cfg.env) < until) {
		r->cfg.ops->defer(r->cfg.env, r, page, until);
		return;
	}
	pg->has_deferred = 0;
	holder_apply(r, &pg->deferred);
}

/* The pending request of p is satisfied: expose, wake, tell the home.
 * unprotect: a write grant whose page is still read-only. */
static void complete(struct dsm__engine *r, uint32_t p, bool unprotect)
{
	struct dsm__page *pg = &r->pages[p];

	if (pg->grant_write && unprotect && pg->state != DSM_M)
		r->cfg.ops->mem_install(r->cfg.env, r, p, DSM_INSTALL_KEEP,
					NULL, true);
	if (pg->grant_write || pg->state == DSM_I)
		pg->state = pg->grant_write ? DSM_M : DSM_S;
	pg->pending = 0;
	pg->got_grant = 0;
	r->npending--;
	pg->acquired_ms = r->cfg.ops->now_ms(r->cfg.env);
	dsm__proto_send_simple(r, pg->done_to, DSM_MSG_DONE, p, r->cfg.self);
	r->cfg.ops->fault_done(r->cfg.env, r, p);
}

static enum dsm__install install_how(uint8_t flags)
{
	if (flags & DSM_GRANT_DATA)
		return DSM_INSTALL_DATA;
	if (flags & DSM_GRANT_ZERO)
		return DSM_INSTALL_ZERO;
	return DSM_INSTALL_KEEP;
}

/* A KEEP grant must find the bytes it relies on. */
static int check_keep(struct dsm__engine *r, const struct dsm__msg *m)
{
	const struct dsm__page *pg = &r->pages[m->page];
	bool write = m->flags & DSM_GRANT_WRITE;
	uint64_t base = write ? m->version - 1 : m->version;

	if (install_how(m->flags) != DSM_INSTALL_KEEP ||
	    (pg->state != DSM_I && pg->version == base) ||
	    (write && pg->state == DSM_M))
		return 0;
	CELL_LOG_RL(CELL_LOG_ERROR, MOD,
		    "grant without data but local version %llu != %llu "
		    "region=%llu page=%u",
		    (unsigned long long)pg->version, (unsigned long long)base,
		    (unsigned long long)r->cfg.id, m->page);
	return -EPROTO;
}

static void take_home(struct dsm__engine *r, const struct dsm__msg *m)
{
	struct dsm__dir *d = &r->dirs[m->page];

	r->home[m->page] = r->cfg.self;
	d->home_seq = m->window;
	d->owner = r->cfg.self;
	d->copyset = 0;
	d->version = m->version;
	d->untouched = 0;
	d->busy = 1;
	d->cur = r->cfg.self;
}

static void read_ahead(struct dsm__engine *r, uint32_t page);

/* A pushed or prefetched copy: never the answer to our own request
 * (that one still comes), but it may wake readers now. Always DONE. */
static void grant_pushed(struct dsm__engine *r, const struct dsm__msg *m,
			 const void *data)
{
	struct dsm__page *pg = &r->pages[m->page];
	bool write = m->flags & DSM_GRANT_WRITE;

	if (pg->state == DSM_I) {
		r->cfg.ops->mem_install(r->cfg.env, r, m->page,
					install_how(m->flags), data, write);
		pg->state = write ? DSM_M : DSM_S;
		pg->version = m->version;
		pg->acquired_ms = r->cfg.ops->now_ms(r->cfg.env);
	}
	dsm__proto_send_simple(r, m->node, DSM_MSG_DONE, m->page, r->cfg.self);
	r->cfg.ops->fault_done(r->cfg.env, r, m->page);
	read_ahead(r, m->page);
}

/*
 * Every grant without DSM_GRANT_PUSH answers the one request this node
 * has out on the page. It may find the page already readable (pushed, or
 * an upgrade): the bytes stay, the version and mode are the grant's.
 */
static int on_grant(struct dsm__engine *r, const struct dsm__msg *m,
		    const void *data)
{
	uint32_t p = m->page;
	struct dsm__page *pg = &r->pages[p];
	bool write = m->flags & DSM_GRANT_WRITE;
	bool ready = pg->acks_got >= m->acks;
	int rc = check_keep(r, m);

	if (rc)
		return rc;
	if (m->flags & DSM_GRANT_DATA)
		pg->c.transfers++;
	if (m->flags & DSM_GRANT_NEWHOME)
		take_home(r, m);
	if (m->flags & DSM_GRANT_PUSH) {
		grant_pushed(r, m, data);
		return 0;
	}
	if (!pg->pending || pg->got_grant) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD,
			    "grant without a request region=%llu page=%u",
			    (unsigned long long)r->cfg.id, p);
		return -EPROTO;
	}
	/* Readable now; writable only once every other copy is gone. */
	if (pg->state == DSM_I || (install_how(m->flags) != DSM_INSTALL_KEEP))
		r->cfg.ops->mem_install(r->cfg.env, r, p, install_how(m->flags),
					data, write && ready);
	else if (write && ready && pg->state != DSM_M)
		r->cfg.ops->mem_install(r->cfg.env, r, p, DSM_INSTALL_KEEP,
					NULL, true);
	if (pg->state == DSM_I)
		pg->state = DSM_S;
	pg->version = m->version;
	pg->got_grant = 1;
	pg->done_to = m->node;
	pg->grant_write = write;
	pg->acks_needed = m->acks;
	if (ready)
		complete(r, p, false);
	return 0;
}

static int on_ack(struct dsm__engine *r, const struct dsm__msg *m)
{
	struct dsm__page *pg = &r->pages[m->page];

	if (!pg->pending) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "INV_ACK without a request region=%llu page=%u",
			    (unsigned long long)r->cfg.id, m->page);
		return -EPROTO;
	}
	pg->acks_got++;
	if (pg->got_grant && pg->acks_got >= pg->acks_needed)
		complete(r, m->page, true);
	return 0;
}

static void on_dir_xfer(struct dsm__engine *r, const struct dsm__msg *m)
{
	struct dsm__dir *d = &r->dirs[m->page];

	r->home[m->page] = r->cfg.self;
	d->home_seq = m->window;
	d->owner = m->node;
	d->copyset = m->copyset;
	d->replicas = 0; /* the policy marks them again at the new home */
	d->version = m->version;
	d->untouched = m->flags & 1;
	d->busy = 0;
}

static bool member(const struct dsm__engine *r, uint16_t node)
{
	return node < DSM_MAX_NODES && (r->members_mask & bit(node));
}

/* Fields a message type relies on must name members and stay in bounds,
 * whoever sent it: nothing is applied otherwise. */
static int check_fields(const struct dsm__engine *r, const struct dsm__msg *m)
{
	switch (m->type) {
	case DSM_MSG_FWD_READ:
	case DSM_MSG_FWD_WRITE:
	case DSM_MSG_INV:
	case DSM_MSG_MOVE_HOME:
	case DSM_MSG_PUSH:
	case DSM_MSG_HOME_UPDATE:
	case DSM_MSG_GRANT:
		if (!member(r, m->node))
			return -EINVAL;
		break;
	case DSM_MSG_DIR_XFER:
		if ((m->node != DSM_NO_NODE && !member(r, m->node)) ||
		    (m->copyset & ~r->members_mask))
			return -EINVAL;
		break;
	}
	if (m->acks > r->cfg.nmembers)
		return -EINVAL;
	return 0;
}

int dsm__engine_receive(struct dsm__engine *r, const struct dsm__msg *m,
			const void *data)
{
	if (m->page >= r->cfg.npages || !member(r, m->from))
		return -ERANGE;
	if (check_fields(r, m))
		return -EINVAL;
	switch (m->type) {
	case DSM_MSG_READ_REQ:
	case DSM_MSG_WRITE_REQ:
	case DSM_MSG_MOVE_HOME:
	case DSM_MSG_PUSH:
		dsm__home_request(r, m);
		return 0;
	case DSM_MSG_FWD_READ:
	case DSM_MSG_FWD_WRITE:
	case DSM_MSG_INV:
		holder_msg(r, m);
		return 0;
	case DSM_MSG_INV_ACK:
		return on_ack(r, m);
	case DSM_MSG_GRANT:
		if ((m->flags & DSM_GRANT_DATA) && !data)
			return -EINVAL;
		return on_grant(r, m, data);
	case DSM_MSG_DONE:
		dsm__home_done(r, m);
		return 0;
	case DSM_MSG_DIR_XFER:
		on_dir_xfer(r, m);
		return 0;
	case DSM_MSG_HOME_UPDATE:
		if (m->window > r->dirs[m->page].home_seq) {
			r->dirs[m->page].home_seq = m->window;
			r->home[m->page] = m->node;
		}
		return 0;
	}
	return -EBADMSG;
}

/*
 * The prefetch window of a read miss. A miss at the end of the last
 * window is sequential and doubles the window (up to prefetch_max); a
 * miss inside the last window hit a page whose push is still on its way
 * (the reader overtook the pushes), so it asks for that page alone and
 * keeps the window; anything else starts over at 1.
 */
static uint32_t read_window(struct dsm__engine *r, uint32_t page)
{
	uint32_t max = r->cfg.prefetch_max ? r->cfg.prefetch_max : 1;

	if (r->last_miss != UINT32_MAX && page > r->last_miss &&
	    page < r->last_miss + r->window)
		return 1;
	if (r->last_miss != UINT32_MAX && page == r->last_miss + r->window)
		r->window = r->window * 2 > max ? max : r->window * 2;
	else
		r->window = 1;
	r->last_miss = page;
	return r->window;
}

/* Sends this node's request for `page`; the caller checked that the page
 * lacks the access and has no request out. */
static int request(struct dsm__engine *r, uint32_t page, bool write,
		   uint32_t window)
{
	struct dsm__page *pg = &r->pages[page];
	struct dsm__msg m = {.type = write ? DSM_MSG_WRITE_REQ
					   : DSM_MSG_READ_REQ,
			     .from = r->cfg.self,
			     .page = page,
			     .window = window,
			     .version = pg->state == DSM_I ? 0 : pg->version};

	r->npending++;
	pg->pending = write ? DSM_M : DSM_S;
	pg->requested_ms = r->cfg.ops->now_ms(r->cfg.env);
	pg->got_grant = 0;
	pg->acks_got = 0;
	pg->acks_needed = 0;
	return dsm__proto_send(r, r->home[page], &m, NULL);
}

int dsm__engine_fault(struct dsm__engine *r, uint32_t page, bool write)
{
	struct dsm__page *pg;

	if (page >= r->cfg.npages)
		return -ERANGE;
	pg = &r->pages[page];
	if (pg->state == DSM_M || (!write && pg->state == DSM_S))
		return 1;
	if (pg->pending)
		return 0; /* coalesced: fault_done wakes every waiter */
	if (write) {
		pg->c.write_faults++;
		/* the window only ever extends over untouched pages
		 * (prefetch with zero set, proto_home.c) */
		return request(r, page, true, r->cfg.prefetch_max);
	}
	pg->c.read_faults++;
	return request(r, page, false, read_window(r, page));
}

/*
 * Read-ahead: a sequential reader whose window has reached prefetch_max
 * would stop at the end of each window, fault, and wait a round trip
 * (and the wake-ups of both node threads) for the next one. When the
 * prefetched page half-way through such a window arrives, the next
 * window is requested as if that miss had already happened, so pages
 * keep flowing while the reader works through this window. The request
 * is an ordinary READ_REQ: the reader's fault on that page, if it comes
 * first, is coalesced with it.
 */
static void read_ahead(struct dsm__engine *r, uint32_t page)
{
	uint32_t max = r->cfg.prefetch_max;
	uint32_t next = r->last_miss + r->window;

	if (max <= 1 || r->window != max || r->last_miss == UINT32_MAX ||
	    page != r->last_miss + r->window / 2 || next >= r->cfg.npages)
		return;
	if (r->pages[next].state != DSM_I || r->pages[next].pending)
		return;
	r->last_miss = next;
	r->readaheads++;
	request(r, next, false, max);
}

/* MOVE_HOME and PUSH: a request to the page's home about `node`. */
static int home_op(struct dsm__engine *r, uint8_t type, uint32_t page,
		   uint16_t node)
{
	struct dsm__msg m = {
		.type = type, .from = r->cfg.self, .node = node, .page = page};

	if (page >= r->cfg.npages || node >= DSM_MAX_NODES ||
	    !(r->members_mask & bit(node)))
		return -EINVAL;
	return dsm__proto_send(r, r->home[page], &m, NULL);
}

int dsm__engine_move_home(struct dsm__engine *r, uint32_t page, uint16_t node)
{
	return home_op(r, DSM_MSG_MOVE_HOME, page, node);
}

int dsm__engine_push(struct dsm__engine *r, uint32_t page, uint16_t node)
{
	return home_op(r, DSM_MSG_PUSH, page, node);
}

enum dsm__page_state dsm__page_state(const struct dsm__engine *r, uint32_t page)
{
	return (enum dsm__page_state)r->pages[page].state;
}

uint64_t dsm__page_version(const struct dsm__engine *r, uint32_t page)
{
	return r->pages[page].version;
}

bool dsm__page_pending(const struct dsm__engine *r, uint32_t page)
{
	return r->pages[page].pending != 0;
}

uint16_t dsm__page_home(const struct dsm__engine *r, uint32_t page)
{
	return r->home[page];
}

const struct dsm__page_counters *dsm__page_counters(const struct dsm__engine *r,
						    uint32_t page)
{
	return &r->pages[page].c;
}

bool dsm__dir_get(const struct dsm__engine *r, uint32_t page, uint16_t *owner,
		  uint64_t *copyset, uint64_t *version, bool *busy)
{
	const struct dsm__dir *d = &r->dirs[page];

	if (r->home[page] != r->cfg.self)
		return false;
	*owner = d->owner;
	*copyset = d->copyset;
	*version = d->version;
	*busy = d->busy;
	return true;
}

int dsm__engine_stuck(const struct dsm__engine *r, uint64_t limit_ms,
		      uint32_t *page, uint16_t *home)
{
	uint64_t now;

	if (!r->npending)
		return 0;
	now = r->cfg.ops->now_ms(r->cfg.env);
	for (uint32_t p = 0; p < r->cfg.npages; p++) {
		const struct dsm__page *pg = &r->pages[p];

		if (pg->pending && now - pg->requested_ms >= limit_ms) {
			*page = p;
			*home = r->home[p];
			return 1;
		}
	}
	return 0;
}
