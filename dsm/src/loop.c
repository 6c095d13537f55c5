/*
 * The loop transport: nodes of one process exchange page messages
 * through per-node inboxes, with no sockets, so tests can run several
 * real nodes (threads, userfaultfd, regions) deterministic in everything
 * but thread timing. A process-wide registry maps node ids to nodes; a
 * send copies the message into the target's inbox under its lock and
 * wakes the target's loop (libevent's cross-thread event_active). The
 * same checks as on TCP apply on receipt: the sender must be a known
 * peer and its epoch not below the fence.
 *
 * Allocation: one malloc per message. Fine for tests; the TCP transport
 * is the one for the fault path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

struct loop_msg {
	struct loop_msg *next;
	struct dsm__msg m;
	bool has_data;
	uint8_t data[DSM_PAGE_SIZE];
};

struct loop_inbox {
	pthread_mutex_t mu;
	struct loop_msg *head, *tail;
};

static pthread_mutex_t hub_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dsm_node *hub[DSM_MAX_NODES];

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	struct loop_inbox *in = n->inbox;
	struct loop_msg *q;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&in->mu);
	q = in->head;
	in->head = in->tail = NULL;
	pthread_mutex_unlock(&in->mu);
	while (q) {
		struct loop_msg *next = q->next;
		struct dsm_peer *p = &n->peers[q->m.from];

		if (!p->active) {
			n->stats.refused++;
			CELL_LOG_RL(CELL_LOG_WARN, MOD,
				    "node %u: message from unknown node %u",
				    n->id, q->m.from);
		} else if (q->m.epoch < p->fence_epoch) {
			dsm__refused(n, p, &q->m);
		} else {
			dsm__accepted(n, p);
			dsm__deliver(n, &q->m, q->has_data ? q->data : NULL);
		}
		free(q);
		q = next;
	}
	dsm__after_work(n);
}

static int loop_listen(struct dsm_node *n, const char *addr)
{
	struct loop_inbox *in;

	(void)addr;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	pthread_mutex_init(&in->mu, NULL);
	n->ev_inbox = event_new(n->base, -1, 0, inbox_cb, n);
	if (!n->ev_inbox) {
		free(in);
		return -ENOMEM;
	}
	n->inbox = in;
	pthread_mutex_lock(&hub_mu);
	if (hub[n->id]) {
		pthread_mutex_unlock(&hub_mu);
		return -EADDRINUSE;
	}
	hub[n->id] = n;
	pthread_mutex_unlock(&hub_mu);
	n->port = 0;
	return 0;
}

static int loop_add_peer(struct dsm_node *n, uint16_t id, const char *addr)
{
	(void)addr;
	n->peers[id].id = id;
	n->peers[id].active = true;
	return 0;
}

static void loop_remove_peer(struct dsm_node *n, uint16_t id)
{
	n->peers[id].active = false;
}

static int loop_send(struct dsm_node *n, uint16_t to, const struct dsm__msg *m,
		     const void *data)
{
	struct loop_msg *q;
	struct loop_inbox *in;
	struct dsm_node *t;

	if (to >= DSM_MAX_NODES || !n->peers[to].active)
		return -ENOTCONN;
	q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->m = *m;
	q->has_data = data != NULL;
	if (data)
		memcpy(q->data, data, DSM_PAGE_SIZE);
	pthread_mutex_lock(&hub_mu);
	t = hub[to];
	if (!t) {
		/* Not there (yet): like a TCP peer that has not connected,
		 * but nothing will flush it later, so it is dropped. */
		pthread_mutex_unlock(&hub_mu);
		free(q);
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: %s to absent node %u dropped", n->id,
			    dsm__type_name(m->type), to);
		return -ENOTCONN;
	}
	in = t->inbox;
	pthread_mutex_lock(&in->mu);
	if (in->tail)
		in->tail->next = q;
	else
		in->head = q;
	in->tail = q;
	pthread_mutex_unlock(&in->mu);
	event_active(t->ev_inbox, EV_READ, 0);
	pthread_mutex_unlock(&hub_mu);
	return 0;
}

static void loop_flush(struct dsm_node *n)
{
	(void)n;
}

static void loop_close(struct dsm_node *n)
{
	struct loop_inbox *in = n->inbox;

	pthread_mutex_lock(&hub_mu);
	if (hub[n->id] == n)
		hub[n->id] = NULL;
	pthread_mutex_unlock(&hub_mu);
	if (n->ev_inbox)
		event_free(n->ev_inbox);
	n->ev_inbox = NULL;
	if (!in)
		return;
	while (in->head) {
		struct loop_msg *q = in->head;

		in->head = q->next;
		free(q);
	}
	pthread_mutex_destroy(&in->mu);
	free(in);
	n->inbox = NULL;
}

const struct dsm_transport_ops dsm__loop_ops = DSM_TRANSPORT_OPS(loop);
