/*
 * The DSM node: its thread, API commands, messages and peers. Regions
 * and the fault loop are region.c's, the engine's env ops env.c's.
 *
 * The node thread runs a libevent loop that, after its work, spins for a
 * while waiting for a reply or for more work, then sleeps: how long is
 * learned on this host (wait.c), or fixed by poll_us and wait_spin_us
 * (see node_main).
 *
 * API calls from other threads become commands: queued under mu, the
 * loop woken through a libevent user event, the caller waiting on cv.
 * The engine (proto.c) is only ever entered on the node thread.
 *
 * Messages: dsm__send() queues for a peer through the transport ops, or
 * for this node on a local ring; dsm__deliver() hands what arrives to the
 * engine or the lock service (sync.c); dsm__after_work() ends every batch
 * of work: the local ring, the transport's flush, the staged installs.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	if (m->type == DSM_MSG_NOTE) {
		if (n->note_fn)
			n->note_fn(m->from, m->epoch, (uint8_t)m->node, m->page,
				   m->window, n->note_arg);
		return 0;
	}
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
		rc = dsm__engine_receive(&r->eng, m, data);
	}
	if (rc) {
		n->stats.refused++;
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "refused %s from node %u region=%llu page=%u: %s",
			    dsm__type_name(m->type), m->from,
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
 * The loop's waiting. After a pass that did work, a wait begins: for the
 * reply to a request of ours if one is outstanding, else for more work
 * if the pass served a peer (more tend to follow), else none (sleep).
 * The wait spins (non-blocking passes) for its budget, then sleeps; the
 * next pass that finds work ends it, and under the adaptive policy its
 * gap (begin to work found) goes to that wait's learner (wait.h), which
 * sets the next budgets. Under the fixed policy the budgets are
 * wait_spin_us and poll_us. Spinning saves a wake-up (~5 us here) but
 * can cost the peer more: its write-protects and hole punches send
 * TLB-shootdown IPIs to every CPU that ran its memory, and on some hosts
 * an IPI to a vCPU that is busy spinning took ~47 us against ~6-10 us to
 * an idle one; the learner sees that as longer gaps while spinning. A
 * spinning node yields between passes, so it never holds off a thread
 * woken on its CPU.
 */
enum wait_kind { WAIT_NONE, WAIT_REPLY, WAIT_WORK };

static uint32_t wait_budget(const struct dsm_node *n, enum wait_kind k,
			    bool served)
{
	uint32_t b = 0;

	if (n->cfg.wait == DSM_WAIT_ADAPTIVE)
		return k == WAIT_REPLY	? dsm_wait_budget(&n->reply_wait)
		       : k == WAIT_WORK ? dsm_wait_budget(&n->work_wait)
					: 0;
	if (k == WAIT_REPLY)
		b = n->cfg.wait_spin_us;
	if (served && n->cfg.poll_us > b)
		b = n->cfg.poll_us;
	return b;
}

static const char *mode_name(enum dsm_wait_mode m)
{
	return m == DSM_WAIT_SPIN ? "spin" : "sleep";
}

/* A wait ended: its gap to the learner; a change of mode said. */
static void wait_ended(struct dsm_node *n, enum wait_kind k, uint64_t gap)
{
	struct dsm_wait *w = k == WAIT_REPLY ? &n->reply_wait : &n->work_wait;
	enum dsm_wait_mode before = w->mode;

	if (n->cfg.wait != DSM_WAIT_ADAPTIVE || k == WAIT_NONE)
		return;
	dsm_wait_done(w, gap);
	if (w->mode == before)
		return;
	n->stats.wait_switches++;
	CELL_LOG_RL(CELL_LOG_INFO, MOD,
		    "node %u: waiting for %s: %s (median gap spin %u us, "
		    "sleep %u us; spin bound %u us)",
		    n->id, k == WAIT_REPLY ? "replies" : "work",
		    mode_name(w->mode), w->median[DSM_WAIT_SPIN],
		    w->median[DSM_WAIT_SLEEP], w->bound_us);
}

static void *node_main(void *arg)
{
	struct dsm_node *n = arg;
	enum wait_kind kind = WAIT_NONE;
	uint64_t since = 0, now;
	uint32_t budget = 0;
	bool spin = false;
	sigset_t nopipe;

	/* A write to a peer that went away fails with EPIPE here instead of
	 * killing the process: TLS writes with write(2), which has no
	 * MSG_NOSIGNAL, and SIGPIPE goes to the thread that wrote. */
	sigemptyset(&nopipe);
	sigaddset(&nopipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &nopipe, NULL);

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
		if (n->did_work) {
			wait_ended(n, kind, now - since);
			kind = outstanding(n) ? WAIT_REPLY
			       : n->served    ? WAIT_WORK
					      : WAIT_NONE;
			budget = wait_budget(n, kind, n->served);
			since = now;
		}
		n->did_work = false;
		n->served = false;
		spin = now - since < budget;
	}
	return NULL;
}

static void watch_cb(evutil_socket_t fd, short what, void *arg);

/* "dsm-node 3" in top -H, ps -L and perf (15 characters at most). */
static void name_thread(struct dsm_node *n)
{
	char name[16];

	snprintf(name, sizeof(name), "dsm-node %u", n->id);
	pthread_setname_np(n->thread, name);
}

int dsm_node_create(const struct dsm_node_config *cfg, struct dsm_node **out)
{
	struct dsm_wait_params wp = dsm_wait_defaults;
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
	wp.spin_max_us = cfg->spin_max_us ? cfg->spin_max_us
					  : dsm_wait_defaults.spin_max_us;
	dsm_wait_init(&n->reply_wait, &wp);
	dsm_wait_init(&n->work_wait, &wp);
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cv, NULL);
	n->local = calloc(DSM_LOCAL_RING, sizeof(*n->local));
	n->base = event_base_new();
	if (!n->local || !n->base) {
		rc = -ENOMEM;
		goto err;
	}
	n->ev_cmd = event_new(n->base, -1, 0, cmd_cb, n);
	n->ev_defer = evtimer_new(n->base, dsm__defer_cb, n);
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
	for (int i = 0; i < DSM_PENDING_SLOTS; i++)
		n->pending[i].fd = -1;
	n->tops = cfg->transport == DSM_TRANSPORT_LOOP ? &dsm__loop_ops
						       : &dsm__tcp_ops;
	rc = n->tops->listen(n, cfg->listen ? cfg->listen : "127.0.0.1:0");
	if (rc)
		goto err;
	if (pthread_create(&n->thread, NULL, node_main, n)) {
		rc = -EAGAIN;
		goto err;
	}
	name_thread(n);
	if (cfg->wait == DSM_WAIT_ADAPTIVE)
		CELL_INFO(MOD,
			  "node %u listening port=%d waiting adaptive "
			  "(spin at most %u us)",
			  n->id, n->port, n->reply_wait.p.spin_max_us);
	else
		CELL_INFO(MOD,
			  "node %u listening port=%d waiting fixed "
			  "poll_us=%u wait_spin_us=%u",
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
		else if (dsm__engine_stuck(&r->eng, n->cfg.request_timeout_ms,
					   &page, &home))
			region_fail(n, r, home,
				    "a page request went "
				    "unanswered");
	}
	dsm__after_work(n);
}

static int stop_cmd(struct dsm_node *n, void *arg)
{
	(void)arg;
	n->stopping = true;
	return 0;
}

void dsm_node_destroy(struct dsm_node *n)
{
	if (!n)
		return;
	/* The hand-off thread may wait on the node thread: it goes first. */
	dsm__handoff_close(n);
	dsm__run_on_node(n, stop_cmd, NULL);
	pthread_join(n->thread, NULL);
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		dsm__region_free(n->regions[i]);
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
	const char *name;
};

static int add_peer_cmd(struct dsm_node *n, void *arg)
{
	struct peer_arg *a = arg;
	struct dsm_peer *p = &n->peers[a->id];

	p->last_heard_ms = cell_now_ms(); /* a grace period */
	snprintf(p->name, sizeof(p->name), "%s", a->name ? a->name : "");
	return n->tops->add_peer(n, a->id, a->addr);
}

int dsm_node_add_peer(struct dsm_node *n, uint16_t id, const char *hostport,
		      const char *name)
{
	struct peer_arg a = {id, hostport, 0, name};

	if (name && strlen(name) >= sizeof(n->peers[0].name))
		return -ENAMETOOLONG;

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
	struct dsm_node_stats *st = arg;

	*st = n->stats;
	if (n->cfg.wait == DSM_WAIT_ADAPTIVE) {
		st->reply_wait_mode = (uint8_t)(n->reply_wait.cur + 1);
		st->work_wait_mode = (uint8_t)(n->work_wait.cur + 1);
		st->reply_spin_us = dsm_wait_budget(&n->reply_wait);
		st->work_spin_us = dsm_wait_budget(&n->work_wait);
	}
	return 0;
}

void dsm_node_stats(struct dsm_node *n, struct dsm_node_stats *out)
{
	dsm__run_on_node(n, stats_cmd, out);
}

const char *dsm__type_name(uint8_t type)
{
	static const char *const names[] = {
		[DSM_MSG_LOCK_ACQ - DSM_MSG_LOCK_ACQ] = "LOCK_ACQ",
		[DSM_MSG_LOCK_GRANT - DSM_MSG_LOCK_ACQ] = "LOCK_GRANT",
		[DSM_MSG_LOCK_REL - DSM_MSG_LOCK_ACQ] = "LOCK_REL",
		[DSM_MSG_BARRIER_ENTER - DSM_MSG_LOCK_ACQ] = "BARRIER_ENTER",
		[DSM_MSG_BARRIER_GO - DSM_MSG_LOCK_ACQ] = "BARRIER_GO",
		[DSM_MSG_PING - DSM_MSG_LOCK_ACQ] = "PING",
		[DSM_MSG_PONG - DSM_MSG_LOCK_ACQ] = "PONG",
		[DSM_MSG_NOTE - DSM_MSG_LOCK_ACQ] = "NOTE",
	};

	if (type >= DSM_MSG_LOCK_ACQ && type < DSM_MSG_NODE_MAX)
		return names[type - DSM_MSG_LOCK_ACQ];
	return dsm__msg_name(type);
}

void dsm__refused(struct dsm_node *n, struct dsm_peer *p,
		  const struct dsm__msg *m)
{
	n->stats.refused++;
	if (p->refused_fence == p->fence_epoch &&
	    p->refused_epoch == m->epoch) {
		p->refused_quiet++;
		return;
	}
	CELL_WARN(MOD,
		  "node %u: refusing node %u's messages (first: %s): its "
		  "epoch %u is below its fence %u, %s; said once until that "
		  "changes",
		  n->id, p->id, dsm__type_name(m->type), m->epoch,
		  p->fence_epoch,
		  m->epoch ? "an incarnation that is over"
			   : "it is fenced (its lease is over)");
	p->refused_fence = p->fence_epoch;
	p->refused_epoch = m->epoch;
	p->refused_quiet = 0;
}

void dsm__refusals_over(struct dsm_node *n, struct dsm_peer *p)
{
	CELL_INFO(MOD,
		  "node %u: accepting node %u's messages again (epoch at or "
		  "above %u) after %llu more refused",
		  n->id, p->id, p->fence_epoch,
		  (unsigned long long)p->refused_quiet);
	p->refused_fence = p->refused_epoch = 0;
	p->refused_quiet = 0;
}

void dsm_node_on_note(struct dsm_node *n, dsm_note_fn fn, void *arg)
{
	n->note_fn = fn;
	n->note_arg = arg;
}

struct note_arg {
	uint16_t to;
	uint8_t kind;
	uint32_t a, b;
};

static int note_cmd(struct dsm_node *n, void *arg)
{
	const struct note_arg *na = arg;
	struct dsm__msg m = {.type = DSM_MSG_NOTE,
			     .node = na->kind,
			     .from = n->id,
			     .epoch = n->epoch,
			     .page = na->a,
			     .window = na->b};

	if (na->to >= DSM_MAX_NODES || na->to == n->id ||
	    !n->peers[na->to].active)
		return -ENOENT;
	return dsm__send(n, na->to, &m, NULL);
}

int dsm_node_send_note(struct dsm_node *n, uint16_t to, uint8_t kind,
		       uint32_t a, uint32_t b)
{
	struct note_arg na = {.to = to, .kind = kind, .a = a, .b = b};

	return dsm__run_on_node(n, note_cmd, &na);
}
