/*
 * The DSM node: its thread, API commands, regions and the engine's env.
 *
 * The node thread runs a libevent loop that busy-polls for poll_us after
 * serving a peer and for wait_spin_us while it waits for a reply (see
 * node_main); otherwise it sleeps at once and leaves the core to the
 * application thread it just woke.
 *
 * API calls from other threads become commands: queued under mu, the
 * loop woken through a libevent user event, the caller waiting on cv.
 * The engine (proto.c) is only ever entered on the node thread.
 *
 * Region memory: a memfd the node owns, mapped once unregistered (mem) to
 * read and write pages, and by every user mapping registered with
 * userfaultfd (maps[]). Invalidation punches the page out of the memfd,
 * which unmaps it from every process at once and frees it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <event2/thread.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;

static void evthread_init(void)
{
	evthread_use_pthreads();
}

/* ---- engine env ---- */

static struct dsm_region *env_region(void *env)
{
	return env;
}

static int env_send(void *env, uint16_t to, const struct dsm__msg *m,
		    const void *data)
{
	return dsm__send(env_region(env)->node, to, m, data);
}

/*
 * The bytes come from the memfd with pread(), not through the node's own
 * mapping: a page this node wrote through its registered mapping (or got
 * by UFFDIO_COPY) is not mapped there, and reading it would fault it in
 * (a trap per 16 pages, and on a VM with shadow paging a hidden fault per
 * page), only for the mapping to be zapped again at the next invalidation.
 *
 * A holder hands out runs (a prefetch window it downgraded at once): when
 * the page asked for follows the one asked for last, the read-only (S)
 * pages from it on come in with one pread and the next calls take them
 * from r->bytes. Nobody can change an S page while this node holds it,
 * and the node changes a page's bytes or state only by installing or
 * invalidating it, which drops the run.
 */
static const void *env_bytes(void *env, struct dsm__region *e, uint32_t page)
{
	struct dsm_region *r = env_region(env);
	size_t off = (size_t)page * DSM_PAGE;
	uint32_t want = 1;
	bool next = page == r->bytes_last + 1;
	bool shared = dsm__page_state(e, page) == DSM_S;
	ssize_t got;

	dsm__stage_flush(r->node);
	r->bytes_last = page;
	if (page >= r->bytes_first && page - r->bytes_first < r->bytes_n)
		return r->bytes + (size_t)(page - r->bytes_first) * DSM_PAGE;
	r->bytes_n = 0;
	while (next && shared && want < DSM_STAGE_PAGES &&
	       page + want < r->npages &&
	       dsm__page_state(e, page + want) == DSM_S)
		want++;
	got = pread(r->memfd, r->bytes, (size_t)want * DSM_PAGE, (off_t)off);
	if (got >= (ssize_t)DSM_PAGE) {
		if (shared) { /* an M page may change: not kept */
			r->bytes_first = page;
			r->bytes_n = (uint32_t)(got / DSM_PAGE);
		}
		return r->bytes;
	}
	CELL_LOG_RL(CELL_LOG_WARN, MOD, "pread page %u of region %llu: %s",
		    page, (unsigned long long)r->id,
		    got < 0 ? strerror(errno) : "short read");
	return r->mem + off;
}

static const uint8_t zero_page[DSM_PAGE] __attribute__((aligned(4096)));

/* Maps page (already in the memfd) into every mapping but `skip`. */
static void install_others(struct dsm_region *r, uint32_t page, bool write,
			   int skip)
{
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (i != skip && r->maps[i].uffd >= 0)
			dsm__uffd_install(&r->maps[i], page, write);
}

/* The slow way in: bytes through the node's own mapping, then
 * UFFDIO_CONTINUE everywhere. */
static void install_via_mem(struct dsm_region *r, uint32_t page,
			    const void *src, bool write)
{
	if (src)
		memcpy(r->mem + (size_t)page * DSM_PAGE, src, DSM_PAGE);
	install_others(r, page, write, -1);
}

static int first_map(const struct dsm_region *r)
{
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (r->maps[i].uffd >= 0)
			return i;
	return -1;
}

/*
 * Installs the staged run of pages: one UFFDIO_COPY allocates them in the
 * memfd with their bytes and maps them into the first user mapping (and
 * wakes its waiters); the other mappings pick them up by CONTINUE. Pages
 * the copy did not take (a mapping went away, a page appeared) go in the
 * slow way. Every env op that reads or changes a page, and the node after
 * each batch of work, flushes first, so nobody sees a staged page as
 * anything but installed.
 */
void dsm__stage_flush(struct dsm_node *n)
{
	struct dsm_region *r = n->staged;
	uint32_t done = 0, count;
	int first;

	if (!r)
		return;
	n->staged = NULL;
	count = r->stage_n;
	r->stage_n = 0;
	first = first_map(r);
	if (first >= 0) {
		int64_t got =
			dsm__uffd_copy_run(&r->maps[first], r->stage_first,
					   r->stage, count, r->stage_write);

		done = got > 0 ? (uint32_t)(got / DSM_PAGE) : 0;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t page = r->stage_first + i;

		if (i < done)
			install_others(r, page, r->stage_write, first);
		else
			install_via_mem(r, page,
					r->stage + (size_t)i * DSM_PAGE,
					r->stage_write);
	}
}

/*
 * Exposes a page. When the node had no copy (state I: the page is not in
 * the memfd), the bytes are staged and go in with their neighbours by one
 * UFFDIO_COPY (dsm__stage_flush), which allocates them in the memfd and
 * maps them in one step. Otherwise the bytes go in through the node's own
 * mapping and every mapping gets UFFDIO_CONTINUE.
 */
static void env_install(void *env, struct dsm__region *e, uint32_t page,
			enum dsm__install how, const void *data, bool write)
{
	struct dsm_region *r = env_region(env);
	struct dsm_node *n = r->node;
	const uint8_t *src = NULL;

	r->bytes_n = 0;
	if (how == DSM_INSTALL_DATA)
		src = data;
	else if (how == DSM_INSTALL_ZERO)
		src = zero_page;
	if (src && dsm__page_state(e, page) == DSM_I && first_map(r) >= 0) {
		if (n->staged &&
		    (n->staged != r || page != r->stage_first + r->stage_n ||
		     write != r->stage_write || r->stage_n == DSM_STAGE_PAGES))
			dsm__stage_flush(n);
		if (!n->staged) {
			n->staged = r;
			r->stage_first = page;
			r->stage_write = write;
		}
		memcpy(r->stage + (size_t)r->stage_n++ * DSM_PAGE, src,
		       DSM_PAGE);
		return;
	}
	dsm__stage_flush(n);
	if (!src) {
		/* KEEP (the engine grants it only to a node in S or M): the
		 * bytes are in place and mapped wherever they were touched;
		 * only the protection changes, which wakes the waiters. A
		 * mapping that never touched the page takes a minor fault
		 * later, resolved as spurious in dsm__uffd_read. */
		for (int i = 0; i < DSM_MAX_MAPS; i++)
			if (r->maps[i].uffd >= 0)
				dsm__uffd_protect(&r->maps[i], page, 1, !write);
		return;
	}
	install_via_mem(r, page, src, write);
}

static void env_downgrade(void *env, struct dsm__region *e, uint32_t page,
			  uint32_t count)
{
	struct dsm_region *r = env_region(env);

	(void)e;
	dsm__stage_flush(r->node);
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (r->maps[i].uffd >= 0)
			dsm__uffd_protect(&r->maps[i], page, count, true);
}

static void env_invalidate(void *env, struct dsm__region *e, uint32_t page)
{
	struct dsm_region *r = env_region(env);
	size_t off = (size_t)page * DSM_PAGE;

	(void)e;
	r->bytes_n = 0;
	dsm__stage_flush(r->node);
	/* Unmaps the page from every process mapping the memfd; its next
	 * access faults, whoever makes it. */
	if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, DSM_PAGE))
		CELL_LOG_RL(CELL_LOG_ERROR, MOD, "punch page %u: %s", page,
			    strerror(errno));
}

/* Nothing to do: UFFDIO_CONTINUE and UFFDIO_WRITEPROTECT in the install
 * that made the page accessible already woke its waiters, and a fault
 * read after that is resolved as spurious in dsm__uffd_read. */
static void env_fault_done(void *env, struct dsm__region *e, uint32_t page)
{
	(void)env;
	(void)e;
	(void)page;
}

static void arm_defer_timer(struct dsm_node *n)
{
	uint64_t now = cell_now_ms(), first = UINT64_MAX;
	struct timeval tv;

	for (uint32_t i = 0; i < n->ndefers; i++)
		if (n->defers[i].when_ms < first)
			first = n->defers[i].when_ms;
	if (first == UINT64_MAX)
		return;
	first = first > now ? first - now : 0;
	tv.tv_sec = (time_t)(first / 1000);
	tv.tv_usec = (suseconds_t)(first % 1000) * 1000;
	evtimer_add(n->ev_defer, &tv);
}

static void env_defer(void *env, struct dsm__region *e, uint32_t page,
		      uint64_t when)
{
	struct dsm_region *r = env_region(env);
	struct dsm_node *n = r->node;

	(void)e;
	if (n->ndefers == DSM_MAX_DEFER) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD, "deferral table full");
		when = 0;
	}
	if (n->ndefers < DSM_MAX_DEFER)
		n->defers[n->ndefers++] = (struct dsm_defer){r, page, when};
	arm_defer_timer(n);
}

static uint64_t env_now(void *env)
{
	(void)env;
	return cell_now_ms();
}

static const struct dsm__env_ops node_env = {
	env_send,	env_bytes,	env_install, env_downgrade,
	env_invalidate, env_fault_done, env_defer,   env_now,
};

static void defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	uint64_t now = cell_now_ms();

	(void)fd;
	(void)what;
	for (uint32_t i = 0; i < n->ndefers;) {
		struct dsm_defer d = n->defers[i];

		if (d.when_ms > now) {
			i++;
			continue;
		}
		n->defers[i] = n->defers[--n->ndefers];
		dsm__region_retry(&d.r->eng, d.page);
	}
	arm_defer_timer(n);
	dsm__after_work(n);
}

/* ---- messages ---- */

int dsm__send(struct dsm_node *n, uint16_t to, const struct dsm__msg *m,
	      const void *data)
{
	struct dsm_local_msg *l;

	n->stats.msgs_sent++;
	if (data)
		n->stats.pages_sent++;
	if (to != n->id)
		return n->tops->send(n, to, m, data);
	if (n->local_len == DSM_LOCAL_RING) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD, "local message ring full");
		return -ENOBUFS;
	}
	l = &n->local[(n->local_head + n->local_len++) % DSM_LOCAL_RING];
	l->m = *m;
	l->has_data = data != NULL;
	if (data)
		memcpy(l->data, data, DSM_PAGE);
	return 0;
}

struct dsm_region *dsm__region_find(struct dsm_node *n, uint64_t id)
{
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		if (n->regions[i] && n->regions[i]->id == id)
			return n->regions[i];
	return NULL;
}

int dsm__deliver(struct dsm_node *n, const struct dsm__msg *m, const void *data)
{
	struct dsm_region *r;
	int rc;

	if (m->from < DSM_MAX_NODES)
		n->peers[m->from].heard = true;
	if (m->type == DSM_MSG_PING || m->type == DSM_MSG_PONG) {
		struct dsm__msg pong = {
			.type = DSM_MSG_PONG, .from = n->id, .epoch = n->epoch};

		return m->type == DSM_MSG_PING
			       ? dsm__send(n, m->from, &pong, NULL)
			       : 0;
	}
	r = dsm__region_find(n, m->region);
	n->stats.msgs_recv++;
	if (data)
		n->stats.pages_recv++;
	if (m->from != n->id && m->type != DSM_MSG_GRANT &&
	    m->type != DSM_MSG_INV_ACK && m->type != DSM_MSG_DONE &&
	    m->type != DSM_MSG_LOCK_GRANT && m->type != DSM_MSG_BARRIER_GO)
		n->served = true;
	if (!r) {
		rc = -ENOENT;
	} else if (m->page >= r->npages) {
		rc = -ERANGE;
	} else if (m->type >= DSM_MSG_LOCK_ACQ) {
		rc = dsm__sync_receive(r, m);
	} else {
		rc = dsm__region_receive(&r->eng, m, data);
	}
	if (rc) {
		n->stats.refused++;
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "refused %s from node %u region=%llu page=%u: %s",
			    dsm__msg_name(m->type), m->from,
			    (unsigned long long)m->region, m->page,
			    strerror(-rc));
	}
	return rc;
}

void dsm__after_work(struct dsm_node *n)
{
	n->did_work = true;
	while (n->local_len) {
		struct dsm_local_msg *l = &n->local[n->local_head];

		n->local_head = (n->local_head + 1) % DSM_LOCAL_RING;
		n->local_len--;
		/* The slot may be reused by sends from this delivery. */
		struct dsm__msg m = l->m;
		static __thread uint8_t page[DSM_PAGE];
		bool has_data = l->has_data;

		if (has_data)
			memcpy(page, l->data, DSM_PAGE);
		dsm__deliver(n, &m, has_data ? page : NULL);
	}
	/* Messages first: a DONE or a read-ahead request should not wait
	 * for the installs, and nobody sees the staged pages before them. */
	n->tops->flush(n);
	dsm__stage_flush(n);
}

/* ---- commands and waiters ---- */

static void cmd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	struct dsm_cmd *c;

	(void)fd;
	(void)what;
	for (;;) {
		pthread_mutex_lock(&n->mu);
		c = n->cmd_head;
		if (c) {
			n->cmd_head = c->next;
			if (!n->cmd_head)
				n->cmd_tail = NULL;
		}
		pthread_mutex_unlock(&n->mu);
		if (!c)
			break;
		c->rc = c->fn(n, c->arg);
		dsm__after_work(n);
		pthread_mutex_lock(&n->mu);
		c->done = true;
		pthread_cond_broadcast(&n->cv);
		pthread_mutex_unlock(&n->mu);
	}
	if (n->stopping)
		event_base_loopbreak(n->base);
}

int dsm__run_on_node(struct dsm_node *n, int (*fn)(struct dsm_node *, void *),
		     void *arg)
{
	struct dsm_cmd c = {fn, arg, 0, false, NULL};

	if (pthread_equal(pthread_self(), n->thread))
		return fn(n, arg);
	pthread_mutex_lock(&n->mu);
	if (n->cmd_tail)
		n->cmd_tail->next = &c;
	else
		n->cmd_head = &c;
	n->cmd_tail = &c;
	event_active(n->ev_cmd, EV_READ, 0);
	while (!c.done)
		pthread_cond_wait(&n->cv, &n->mu);
	pthread_mutex_unlock(&n->mu);
	return c.rc;
}

int dsm__waiter_get(struct dsm_node *n, uint64_t region)
{
	int slot = -EAGAIN;

	pthread_mutex_lock(&n->mu);
	for (int i = 0; i < DSM_MAX_WAITERS; i++) {
		if (!n->waiters[i].used) {
			n->waiters[i] =
				(struct dsm_waiter){true, false, 0, region};
			slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&n->mu);
	return slot;
}

void dsm__waiter_wake(struct dsm_node *n, uint32_t token, int rc)
{
	if (token >= DSM_MAX_WAITERS)
		return;
	pthread_mutex_lock(&n->mu);
	if (n->waiters[token].used) {
		n->waiters[token].done = true;
		n->waiters[token].rc = rc;
		pthread_cond_broadcast(&n->cv);
	}
	pthread_mutex_unlock(&n->mu);
}

int dsm__waiter_wait(struct dsm_node *n, int slot)
{
	int rc;

	pthread_mutex_lock(&n->mu);
	while (!n->waiters[slot].done)
		pthread_cond_wait(&n->cv, &n->mu);
	rc = n->waiters[slot].rc;
	n->waiters[slot].used = false;
	pthread_mutex_unlock(&n->mu);
	return rc;
}

/* ---- the thread ---- */

static uint32_t outstanding(const struct dsm_node *n)
{
	uint32_t k = 0;

	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		if (n->regions[i])
			k += n->regions[i]->eng.npending;
	return k;
}

/*
 * The loop's polling policy. Spin (non-blocking passes) for poll_us after
 * serving a peer's request (more tend to follow), and for wait_spin_us
 * after our last work while a request of ours waits for its reply;
 * otherwise sleep at once, so that the application thread we just woke
 * gets the core. Spinning for replies saves a wake-up (~5 us here) but
 * costs the peer far more on a VM: the peer's write-protects and hole
 * punches send TLB-shootdown IPIs to every CPU that ran its memory, and
 * an IPI to a vCPU that is busy spinning took ~47 us on these machines
 * against ~6-10 us to an idle one, so the default is 0. A spinning node
 * yields between passes, so it never holds off a thread woken on its
 * CPU.
 */
static void *node_main(void *arg)
{
	struct dsm_node *n = arg;
	uint64_t serve_until = 0, last_work = 0, now;
	bool spin = false;

	/* One pass per turn: a blocking one returns after running what
	 * woke it, so the next turn decides afresh (no extra non-blocking
	 * pass before sleeping: each epoll_wait is a syscall, ~1 us here). */
	while (!n->stopping) {
		/* A spinning node yields between passes: a thread woken on
		 * this CPU (a vCPU, the application) runs at once instead of
		 * waiting for the scheduler to preempt the spinner. */
		if (spin)
			sched_yield();
		event_base_loop(n->base, spin ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
		now = cell_now_us();
		if (n->did_work)
			last_work = now;
		if (n->served)
			serve_until = now + n->cfg.poll_us;
		n->did_work = false;
		n->served = false;
		spin = (outstanding(n) &&
			now - last_work < n->cfg.wait_spin_us) ||
		       now < serve_until;
	}
	return NULL;
}

static void watch_cb(evutil_socket_t fd, short what, void *arg);

int dsm_node_create(const struct dsm_node_config *cfg, struct dsm_node **out)
{
	struct dsm_node *n;
	char err[256];
	int fd, rc;

	if (cfg->id >= DSM_MAX_NODES)
		return -EINVAL;
	/* Refuse to start where faults cannot be trapped as needed. */
	fd = dsm__uffd_open(err, sizeof(err));
	if (fd < 0) {
		CELL_ERROR(MOD, "cannot start node %u: %s", cfg->id, err);
		return fd;
	}
	close(fd);
	pthread_once(&evthread_once, evthread_init);
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->cfg = *cfg;
	n->id = cfg->id;
	n->epoch = cfg->epoch;
	n->listen_fd = n->handoff_fd = -1;
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cv, NULL);
	n->local = calloc(DSM_LOCAL_RING, sizeof(*n->local));
	n->base = event_base_new();
	if (!n->local || !n->base) {
		rc = -ENOMEM;
		goto err;
	}
	n->ev_cmd = event_new(n->base, -1, 0, cmd_cb, n);
	n->ev_defer = evtimer_new(n->base, defer_cb, n);
	if (cfg->request_timeout_ms) {
		uint32_t every = cfg->request_timeout_ms / 4;
		struct timeval tv;

		every = every < 50 ? 50 : every > 1000 ? 1000 : every;
		tv = (struct timeval){every / 1000, (every % 1000) * 1000};
		n->ev_watch = event_new(n->base, -1, EV_PERSIST, watch_cb, n);
		if (n->ev_watch)
			event_add(n->ev_watch, &tv);
	}
	for (int i = 0; i < DSM_MAX_NODES; i++)
		n->peers[i].fd = -1;
	for (int i = 0; i < 16; i++)
		n->pending_fds[i] = -1;
	n->tops = cfg->transport == DSM_TRANSPORT_LOOP ? &dsm__loop_ops
						       : &dsm__tcp_ops;
	rc = n->tops->listen(n, cfg->listen ? cfg->listen : "127.0.0.1:0");
	if (rc)
		goto err;
	if (pthread_create(&n->thread, NULL, node_main, n)) {
		rc = -EAGAIN;
		goto err;
	}
	CELL_INFO(MOD, "node %u listening port=%d poll_us=%u wait_spin_us=%u",
		  n->id, n->port, cfg->poll_us, cfg->wait_spin_us);
	*out = n;
	return 0;
err:
	if (n->tops)
		n->tops->close(n);
	if (n->ev_cmd)
		event_free(n->ev_cmd);
	if (n->ev_defer)
		event_free(n->ev_defer);
	if (n->ev_watch)
		event_free(n->ev_watch);
	if (n->base)
		event_base_free(n->base);
	free(n->local);
	free(n);
	return rc;
}

static void region_fail(struct dsm_node *n, struct dsm_region *r, uint16_t peer,
			const char *why)
{
	r->failed = true;
	CELL_ERROR(MOD, "region %llu failed: %s (node %u, %u ms)",
		   (unsigned long long)r->id, why, peer,
		   n->cfg.request_timeout_ms);
	if (r->failed_fn)
		r->failed_fn(r, peer, r->failed_arg);
}

/* A member peer not heard from (pings are answered by its DSM thread)
 * for the timeout, or NO_NODE. */
static uint16_t silent_member(struct dsm_node *n, const struct dsm_region *r,
			      uint64_t now)
{
	for (uint16_t i = 0; i < r->nmembers; i++) {
		const struct dsm_peer *p = &n->peers[r->members[i]];

		if (r->members[i] != n->id && p->active &&
		    now - p->last_heard_ms > n->cfg.request_timeout_ms)
			return r->members[i];
	}
	return DSM_NO_NODE;
}

/* Liveness: pings every peer, and fails the regions that wait on a peer
 * that went silent, or whose page requests went unanswered, for the
 * timeout. A wait for a lock or barrier cannot time out by itself (the
 * other side may just be slow); a silent peer ends it this way. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	struct dsm__msg ping = {.type = DSM_MSG_PING, .from = n->id};
	uint64_t now = cell_now_ms();

	(void)fd;
	(void)what;
	ping.epoch = n->epoch;
	for (uint16_t id = 0; id < DSM_MAX_NODES; id++) {
		struct dsm_peer *p = &n->peers[id];

		if (p->heard) {
			p->heard = false;
			p->last_heard_ms = now;
		}
		if (id != n->id && p->active)
			dsm__send(n, id, &ping, NULL);
	}
	for (int i = 0; i < DSM_MAX_REGIONS; i++) {
		struct dsm_region *r = n->regions[i];
		uint32_t page;
		uint16_t home;

		if (!r || r->failed)
			continue;
		if ((home = silent_member(n, r, now)) != DSM_NO_NODE)
			region_fail(n, r, home, "a member stopped answering");
		else if (dsm__region_stuck(&r->eng, n->cfg.request_timeout_ms,
					   &page, &home))
			region_fail(n, r, home,
				    "a page request went "
				    "unanswered");
	}
	dsm__after_work(n);
}

struct failed_arg {
	struct dsm_region *r;
	dsm_region_failed_fn fn;
	void *arg;
};

static int on_failure_cmd(struct dsm_node *n, void *arg)
{
	struct failed_arg *a = arg;

	(void)n;
	a->r->failed_fn = a->fn;
	a->r->failed_arg = a->arg;
	return 0;
}

int dsm_region_on_failure(struct dsm_region *r, dsm_region_failed_fn fn,
			  void *arg)
{
	struct failed_arg a = {r, fn, arg};

	return dsm__run_on_node(r->node, on_failure_cmd, &a);
}

static int stop_cmd(struct dsm_node *n, void *arg)
{
	(void)arg;
	n->stopping = true;
	return 0;
}

static void region_free(struct dsm_region *r);

void dsm_node_destroy(struct dsm_node *n)
{
	if (!n)
		return;
	/* The hand-off thread may wait on the node thread: it goes first. */
	dsm__handoff_close(n);
	dsm__run_on_node(n, stop_cmd, NULL);
	pthread_join(n->thread, NULL);
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		region_free(n->regions[i]);
	n->tops->close(n);
	event_free(n->ev_cmd);
	event_free(n->ev_defer);
	if (n->ev_watch)
		event_free(n->ev_watch);
	event_base_free(n->base);
	free(n->local);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	free(n);
}

int dsm_node_port(const struct dsm_node *n)
{
	return n->port;
}

struct peer_arg {
	uint16_t id;
	const char *addr;
	uint32_t epoch;
};

static int add_peer_cmd(struct dsm_node *n, void *arg)
{
	struct peer_arg *a = arg;

	n->peers[a->id].last_heard_ms = cell_now_ms(); /* a grace period */
	return n->tops->add_peer(n, a->id, a->addr);
}

int dsm_node_add_peer(struct dsm_node *n, uint16_t id, const char *hostport)
{
	struct peer_arg a = {id, hostport, 0};

	if (id >= DSM_MAX_NODES || id == n->id)
		return -EINVAL;
	return dsm__run_on_node(n, add_peer_cmd, &a);
}

static int remove_peer_cmd(struct dsm_node *n, void *arg)
{
	n->tops->remove_peer(n, ((struct peer_arg *)arg)->id);
	return 0;
}

int dsm_node_remove_peer(struct dsm_node *n, uint16_t id)
{
	struct peer_arg a = {id, NULL, 0};

	if (id >= DSM_MAX_NODES)
		return -EINVAL;
	return dsm__run_on_node(n, remove_peer_cmd, &a);
}

static int fence_cmd(struct dsm_node *n, void *arg)
{
	struct peer_arg *a = arg;

	n->peers[a->id].fence_epoch = a->epoch;
	return 0;
}

int dsm_node_fence_peer(struct dsm_node *n, uint16_t peer, uint32_t epoch)
{
	struct peer_arg a = {peer, NULL, epoch};

	if (peer >= DSM_MAX_NODES)
		return -EINVAL;
	return dsm__run_on_node(n, fence_cmd, &a);
}

static int epoch_cmd(struct dsm_node *n, void *arg)
{
	n->epoch = *(uint32_t *)arg;
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		if (n->regions[i])
			n->regions[i]->eng.epoch = n->epoch;
	return 0;
}

void dsm_node_set_epoch(struct dsm_node *n, uint32_t epoch)
{
	dsm__run_on_node(n, epoch_cmd, &epoch);
}

static int stats_cmd(struct dsm_node *n, void *arg)
{
	*(struct dsm_node_stats *)arg = n->stats;
	return 0;
}

void dsm_node_stats(struct dsm_node *n, struct dsm_node_stats *out)
{
	dsm__run_on_node(n, stats_cmd, out);
}

/* ---- regions ---- */

static void uffd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_mapping *m = arg;

	(void)fd;
	(void)what;
	dsm__uffd_read(m->region, m);
	dsm__after_work(m->region->node);
}

/* Adds a registered mapping; its uffd events start now. Slot or -errno. */
int dsm__map_add(struct dsm_region *r, uint8_t *base, int uffd, int sock,
		 pid_t pid)
{
	dsm__stage_flush(r->node);
	for (int i = 0; i < DSM_MAX_MAPS; i++) {
		struct dsm_mapping *m = &r->maps[i];

		if (m->uffd >= 0)
			continue;
		m->region = r;
		m->base = base;
		m->uffd = uffd;
		m->sock = sock;
		m->pid = pid;
		m->ev = event_new(r->node->base, uffd, EV_READ | EV_PERSIST,
				  uffd_cb, m);
		if (!m->ev) {
			m->uffd = -1;
			return -ENOMEM;
		}
		event_add(m->ev, NULL);
		return i;
	}
	return -ENOSPC;
}

void dsm__map_remove(struct dsm_region *r, int slot)
{
	struct dsm_mapping *m = &r->maps[slot];

	if (m->uffd < 0)
		return;
	dsm__stage_flush(r->node);
	event_free(m->ev);
	if (m->sock_ev)
		event_free(m->sock_ev);
	close(m->uffd);
	if (m->sock >= 0)
		close(m->sock);
	memset(m, 0, sizeof(*m));
	m->uffd = m->sock = -1;
}

static void region_free(struct dsm_region *r)
{
	if (!r)
		return;
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		dsm__map_remove(r, i);
	if (r->app_map)
		munmap(r->app_map, r->size);
	if (r->mem)
		munmap(r->mem, r->size);
	if (r->memfd >= 0)
		close(r->memfd);
	dsm__sync_free(r);
	dsm__region_fini(&r->eng);
	free(r->stage);
	free(r->bytes);
	free(r);
}

static int map_memfd(const char *name, size_t size, int *fd, uint8_t **mem)
{
	*fd = memfd_create(name, MFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)size))
		return -errno;
	*mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (*mem == MAP_FAILED) {
		*mem = NULL;
		return -errno;
	}
	return 0;
}

struct create_arg {
	const struct dsm_region_config *cfg;
	struct dsm_region *r;
};

static int region_create_cmd(struct dsm_node *n, void *arg)
{
	struct create_arg *a = arg;
	const struct dsm_region_config *c = a->cfg;
	struct dsm__region_config ec = {0};
	struct dsm_region *r;
	char name[64];
	int slot = -1, rc;

	if (dsm__region_find(n, c->id))
		return -EEXIST;
	for (int i = 0; i < DSM_MAX_REGIONS && slot < 0; i++)
		if (!n->regions[i])
			slot = i;
	if (slot < 0)
		return -ENOSPC;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->node = n;
	r->id = c->id;
	r->size = c->size;
	r->npages = (uint32_t)(c->size / DSM_PAGE);
	r->nmembers = c->nmembers;
	memcpy(r->members, c->members, c->nmembers * sizeof(uint16_t));
	r->memfd = -1;
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		r->maps[i].uffd = r->maps[i].sock = -1;
	snprintf(name, sizeof(name), "dsm-region-%llu",
		 (unsigned long long)c->id);
	rc = map_memfd(name, c->size, &r->memfd, &r->mem);
	r->stage = aligned_alloc(DSM_PAGE, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	r->bytes = aligned_alloc(DSM_PAGE, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	if (!rc && (!r->stage || !r->bytes))
		rc = -ENOMEM;
	if (!rc) {
		dsm__prefault(r->stage, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
		dsm__prefault(r->bytes, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	}
	ec.id = c->id;
	ec.npages = r->npages;
	ec.self = n->id;
	ec.members = r->members;
	ec.nmembers = r->nmembers;
	ec.policy = (enum dsm__home_policy)c->policy;
	ec.home_node = c->home_node;
	ec.window_ms = n->cfg.window_ms;
	/* A read miss at a home that holds the pages itself turns into one
	 * self-message per prefetched page: keep a burst well inside the
	 * local ring. */
	ec.prefetch_max = n->cfg.prefetch_max ? n->cfg.prefetch_max : 1;
	if (ec.prefetch_max > DSM_PREFETCH_MAX)
		ec.prefetch_max = DSM_PREFETCH_MAX;
	ec.ops = &node_env;
	ec.env = r;
	if (!rc)
		rc = dsm__region_init(&r->eng, &ec);
	if (rc) {
		region_free(r);
		return rc;
	}
	r->eng.epoch = n->epoch;
	n->regions[slot] = r;
	a->r = r;
	CELL_INFO(MOD, "region %llu created pages=%u members=%u policy=%d",
		  (unsigned long long)r->id, r->npages, r->nmembers, c->policy);
	return 0;
}

int dsm_region_create(struct dsm_node *n, const struct dsm_region_config *cfg,
		      struct dsm_region **out)
{
	struct create_arg a = {cfg, NULL};
	bool self = false;
	int rc;

	if (!cfg->size || cfg->size % DSM_PAGE ||
	    cfg->size / DSM_PAGE > UINT32_MAX || !cfg->nmembers ||
	    cfg->nmembers > DSM_MAX_NODES)
		return -EINVAL;
	for (uint16_t i = 0; i < cfg->nmembers; i++)
		self |= cfg->members[i] == n->id;
	if (!self)
		return -EINVAL;
	rc = dsm__run_on_node(n, region_create_cmd, &a);
	if (!rc)
		*out = a.r;
	return rc;
}

static int region_destroy_cmd(struct dsm_node *n, void *arg)
{
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		if (n->regions[i] == arg)
			n->regions[i] = NULL;
	for (uint32_t i = 0; i < n->ndefers;)
		if (n->defers[i].r == arg)
			n->defers[i] = n->defers[--n->ndefers];
		else
			i++;
	region_free(arg);
	return 0;
}

void dsm_region_destroy(struct dsm_region *r)
{
	if (r)
		dsm__run_on_node(r->node, region_destroy_cmd, r);
}

size_t dsm_region_size(const struct dsm_region *r)
{
	return r->size;
}

static int map_cmd(struct dsm_node *n, void *arg)
{
	struct dsm_region *r = arg;
	char err[256];
	uint8_t *base;
	int uffd, rc;

	(void)n;
	if (r->app_map)
		return 0;
	base = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd,
		    0);
	if (base == MAP_FAILED)
		return -errno;
	uffd = dsm__uffd_open(err, sizeof(err));
	if (uffd < 0) {
		CELL_ERROR(MOD, "%s", err);
		munmap(base, r->size);
		return uffd;
	}
	rc = dsm__uffd_register(uffd, base, r->size);
	if (rc >= 0)
		rc = dsm__map_add(r, base, uffd, -1, getpid());
	if (rc < 0) {
		close(uffd);
		munmap(base, r->size);
		return rc;
	}
	r->app_map = base;
	return 0;
}

void *dsm_region_map(struct dsm_region *r)
{
	int rc = dsm__run_on_node(r->node, map_cmd, r);

	if (rc) {
		errno = -rc;
		return NULL;
	}
	return r->app_map;
}

struct page_arg {
	struct dsm_region *r;
	uint32_t page;
	uint16_t node;
	struct dsm_page_stats *st;
	int (*op)(struct dsm__region *e, uint32_t page, uint16_t node);
};

/* Runs an engine policy mechanism (move a home, push a copy). */
static int page_op_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;

	(void)n;
	return a->op(&a->r->eng, a->page, a->node);
}

int dsm_region_move_home(struct dsm_region *r, uint32_t page, uint16_t node)
{
	struct page_arg a = {r, page, node, NULL, dsm__region_move_home};

	return dsm__run_on_node(r->node, page_op_cmd, &a);
}

int dsm_region_push(struct dsm_region *r, uint32_t page, uint16_t node)
{
	struct page_arg a = {r, page, node, NULL, dsm__region_push};

	return dsm__run_on_node(r->node, page_op_cmd, &a);
}

static int page_stats_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;
	struct dsm__region *e = &a->r->eng;
	const struct dsm__page_counters *c;

	(void)n;
	if (a->page >= a->r->npages)
		return -ERANGE;
	c = dsm__page_counters(e, a->page);
	memset(a->st, 0, sizeof(*a->st));
	a->st->read_faults = c->read_faults;
	a->st->write_faults = c->write_faults;
	a->st->invalidations = c->invalidations;
	a->st->transfers = c->transfers;
	a->st->deferrals = c->deferrals;
	a->st->home = dsm__page_home(e, a->page);
	a->st->state = (uint8_t)dsm__page_state(e, a->page);
	if (a->st->home == n->id)
		for (uint16_t i = 0; i < a->r->nmembers; i++)
			a->st->requests_by_member[i] =
				e->req_by_node[(size_t)a->page *
						       a->r->nmembers +
					       i];
	return 0;
}

static int region_stats_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;
	struct dsm_region_stats *st = (void *)a->st;
	const struct dsm__region *e = &a->r->eng;

	memset(st, 0, sizeof(*st));
	for (uint32_t p = 0; p < a->r->npages; p++) {
		const struct dsm__page_counters *c = dsm__page_counters(e, p);
		uint32_t faults = c->read_faults + c->write_faults;
		bool local = dsm__page_home(e, p) == n->id;

		st->read_faults += c->read_faults;
		st->write_faults += c->write_faults;
		st->invalidations += c->invalidations;
		st->transfers += c->transfers;
		st->deferrals += c->deferrals;
		st->local_faults += local ? faults : 0;
		st->remote_faults += local ? 0 : faults;
		st->pages_homed += local;
	}
	st->readaheads = e->readaheads;
	return 0;
}

int dsm_region_stats(struct dsm_region *r, struct dsm_region_stats *out)
{
	struct page_arg a = {r, 0, 0, (void *)out, NULL};

	return dsm__run_on_node(r->node, region_stats_cmd, &a);
}

int dsm_region_page_stats(struct dsm_region *r, uint32_t page,
			  struct dsm_page_stats *out)
{
	struct page_arg a = {r, page, 0, out, NULL};

	return dsm__run_on_node(r->node, page_stats_cmd, &a);
}
