/*
 * The lock and barrier service. Each lock or barrier id has a manager
 * node, members[id % nmembers] of the region; requests are messages to
 * it and grants are messages back, naming the waiter's token (its slot
 * in the node's waiter table). Waiting threads sleep on the node's
 * condition variable: nothing spins on DSM memory.
 *
 * Message fields: window = lock or barrier id, acks = barrier count,
 * version = token. Lock grants are FIFO per lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

static uint16_t manager_of(const struct dsm_region *r, uint32_t id)
{
	return r->members[id % r->nmembers];
}

static int send_sync(struct dsm_region *r, uint16_t to, uint8_t type,
		     uint32_t id, uint16_t count, uint32_t token)
{
	struct dsm__msg m = {.type = type,
			     .from = r->node->id,
			     .acks = count,
			     .epoch = r->node->epoch,
			     .window = id,
			     .region = r->id,
			     .version = token};

	return dsm__send(r->node, to, &m, NULL);
}

static struct dsm_lockq *lock_get(struct dsm_region *r, uint32_t id)
{
	if (!r->locks[id]) {
		r->locks[id] = calloc(1, sizeof(*r->locks[id]));
		if (r->locks[id])
			r->locks[id]->holder = DSM_NO_NODE;
	}
	return r->locks[id];
}

static int on_lock_acq(struct dsm_region *r, const struct dsm__msg *m)
{
	struct dsm_lockq *l = lock_get(r, m->window);

	if (!l)
		return -ENOMEM;
	if (l->holder == DSM_NO_NODE) {
		l->holder = m->from;
		l->holder_token = (uint32_t)m->version;
		return send_sync(r, m->from, DSM_MSG_LOCK_GRANT, m->window, 0,
				 (uint32_t)m->version);
	}
	if (l->qlen == DSM_LOCK_QUEUE)
		return -ENOBUFS;
	l->qn[(l->qhead + l->qlen) % DSM_LOCK_QUEUE] = m->from;
	l->qt[(l->qhead + l->qlen) % DSM_LOCK_QUEUE] = (uint32_t)m->version;
	l->qlen++;
	return 0;
}

static int on_lock_rel(struct dsm_region *r, const struct dsm__msg *m)
{
	struct dsm_lockq *l = r->locks[m->window];

	if (!l || l->holder != m->from)
		return -EPERM;
	if (!l->qlen) {
		l->holder = DSM_NO_NODE;
		return 0;
	}
	l->holder = l->qn[l->qhead];
	l->holder_token = l->qt[l->qhead];
	l->qhead = (l->qhead + 1) % DSM_LOCK_QUEUE;
	l->qlen--;
	return send_sync(r, l->holder, DSM_MSG_LOCK_GRANT, m->window, 0,
			 l->holder_token);
}

static int on_barrier(struct dsm_region *r, const struct dsm__msg *m)
{
	struct dsm_barrier *b = r->barriers[m->window];

	if (!b)
		b = r->barriers[m->window] = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (b->arrived == DSM_LOCK_QUEUE || m->acks == 0)
		return -EINVAL;
	b->nodes[b->arrived] = m->from;
	b->tokens[b->arrived++] = (uint32_t)m->version;
	if (b->arrived < m->acks)
		return 0;
	for (uint32_t i = 0; i < b->arrived; i++)
		send_sync(r, b->nodes[i], DSM_MSG_BARRIER_GO, m->window, 0,
			  b->tokens[i]);
	b->arrived = 0;
	return 0;
}

int dsm__sync_receive(struct dsm_region *r, const struct dsm__msg *m)
{
	if (m->window >= DSM_MAX_LOCKS)
		return -ERANGE;
	switch (m->type) {
	case DSM_MSG_LOCK_ACQ:
		return on_lock_acq(r, m);
	case DSM_MSG_LOCK_REL:
		return on_lock_rel(r, m);
	case DSM_MSG_BARRIER_ENTER:
		return on_barrier(r, m);
	case DSM_MSG_LOCK_GRANT:
	case DSM_MSG_BARRIER_GO:
		dsm__waiter_wake(r->node, (uint32_t)m->version, 0);
		return 0;
	}
	return -EBADMSG;
}

void dsm__sync_free(struct dsm_region *r)
{
	for (int i = 0; i < DSM_MAX_LOCKS; i++) {
		free(r->locks[i]);
		free(r->barriers[i]);
		r->locks[i] = NULL;
		r->barriers[i] = NULL;
	}
}

struct sync_arg {
	struct dsm_region *r;
	uint8_t type;
	uint32_t id;
	uint16_t count;
	uint32_t token;
};

static int sync_cmd(struct dsm_node *n, void *arg)
{
	struct sync_arg *a = arg;

	(void)n;
	if (a->r->cancelled)
		return -ECANCELED;
	return send_sync(a->r, manager_of(a->r, a->id), a->type, a->id,
			 a->count, a->token);
}

/* Sends a request and, for acquire and barrier, sleeps until answered. */
static int sync_call(struct dsm_region *r, uint8_t type, uint32_t id,
		     uint16_t count)
{
	struct sync_arg a = {r, type, id, count, 0};
	bool wait = type != DSM_MSG_LOCK_REL;
	int slot = 0, rc;

	if (id >= DSM_MAX_LOCKS)
		return -ERANGE;
	if (wait) {
		slot = dsm__waiter_get(r->node, r->id);
		if (slot < 0)
			return slot;
		a.token = (uint32_t)slot;
	}
	rc = dsm__run_on_node(r->node, sync_cmd, &a);
	if (rc) {
		if (wait) {
			dsm__waiter_wake(r->node, (uint32_t)slot, rc);
			dsm__waiter_wait(r->node, slot);
		}
		return rc;
	}
	return wait ? dsm__waiter_wait(r->node, slot) : 0;
}

int dsm_lock(struct dsm_region *r, uint32_t lock_id)
{
	return sync_call(r, DSM_MSG_LOCK_ACQ, lock_id, 0);
}

int dsm_unlock(struct dsm_region *r, uint32_t lock_id)
{
	return sync_call(r, DSM_MSG_LOCK_REL, lock_id, 0);
}

int dsm_barrier(struct dsm_region *r, uint32_t id, uint32_t count)
{
	if (count == 0 || count > DSM_LOCK_QUEUE)
		return -EINVAL;
	return sync_call(r, DSM_MSG_BARRIER_ENTER, id, (uint16_t)count);
}

/* On the node thread: later sync calls fail, and every thread waiting
 * for one of this region's locks or barriers wakes with -ECANCELED. */
static int cancel_cmd(struct dsm_node *n, void *arg)
{
	struct dsm_region *r = arg;

	r->cancelled = true;
	pthread_mutex_lock(&n->mu);
	for (int i = 0; i < DSM_MAX_WAITERS; i++) {
		struct dsm_waiter *w = &n->waiters[i];

		if (w->used && !w->done && w->region == r->id) {
			w->done = true;
			w->rc = -ECANCELED;
		}
	}
	pthread_cond_broadcast(&n->cv);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

int dsm_region_cancel_waits(struct dsm_region *r)
{
	return dsm__run_on_node(r->node, cancel_cmd, r);
}
