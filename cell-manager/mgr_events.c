/*
 * The manager's event log (`cellctl events`): mgr_event() records one
 * event in the store (a failure is logged, never fatal: the event log
 * must not stop the manager), and MSG_EVENTS answers with the events
 * after an id or since a time. Kept to the last events_keep events.
 *
 * What is recorded: node up, suspect and down, the fence of a node's
 * ended incarnation, VM state changes with their reasons, placements,
 * restarts, migrations, page-policy rounds that decided something, and
 * every cellctl call that changes something, with the caller's address
 * (its identity until cellctl authenticates).
 *
 * Event-loop thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "mgr_int.h"
#include "store.h"

#define MOD	  "manager"
#define REPLY_MAX 1000

const char *const mgr_event_kinds[MGR_EVENT_KINDS] = {
	"node-up",    "node-suspect", "node-down",  "node-fenced",
	"vm-state",   "vm-placed",    "vm-refused", "vm-restart",
	"vm-migrate", "page-policy",  "ctl",	    "manager-start",
	"other",
};

static void count_kind(struct mgr *m, const char *kind)
{
	size_t k = 0;

	while (k < MGR_EVENT_KINDS - 1 && strcmp(mgr_event_kinds[k], kind))
		k++;
	m->events_by_kind[k]++;
}

void mgr_event(struct mgr *m, const char *kind, const char *subject,
	       const char *fmt, ...)
{
	char detail[600];
	uint64_t id;
	va_list ap;

	count_kind(m, kind);
	if (!m->store)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (mgr_store_event_add(m->store, cell_wall_ms(), kind, subject, detail,
				(uint64_t)m->cfg.events_keep, &id))
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "cannot record event %s %s: %s",
			    kind, subject, detail);
	else
		m->last_event_id = id;
}

struct events_out {
	Cellmon__Event *ev, **ptr;
	char **strings; /* every string copied, freed after the reply */
	size_t n, nstr;
};

static char *keep(struct events_out *o, const char *s)
{
	char *c = strdup(s ? s : "");

	if (c)
		o->strings[o->nstr++] = c;
	return c ? c : "";
}

static int add_event(const struct mgr_event *e, void *arg)
{
	struct events_out *o = arg;
	Cellmon__Event *x = &o->ev[o->n];

	cellmon__event__init(x);
	x->id = e->id;
	x->at_ms = e->at_ms;
	x->kind = keep(o, e->kind);
	x->subject = keep(o, e->subject);
	x->detail = keep(o, e->detail);
	o->ptr[o->n++] = x;
	return 0;
}

void mgr_events_rpc(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg)
{
	const Cellmon__EventsRequest *req = (const void *)msg;
	struct mgr *m = arg;
	Cellmon__EventsReply r = CELLMON__EVENTS_REPLY__INIT;
	uint32_t limit =
		req->limit && req->limit < REPLY_MAX ? req->limit : REPLY_MAX;
	struct events_out o = {0};
	int rc;

	o.ev = calloc(limit, sizeof(*o.ev));
	o.ptr = calloc(limit, sizeof(*o.ptr));
	o.strings = calloc((size_t)limit * 3, sizeof(*o.strings));
	if (!o.ev || !o.ptr || !o.strings) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		goto out;
	}
	rc = m->store ? mgr_store_events_load(m->store, req->after_id,
					      req->since_ms, limit, add_event,
					      &o)
		      : 0;
	if (rc) {
		cell_rpc_reply_error(call, -EIO, "cannot read the event log");
		goto out;
	}
	r.events = o.ptr;
	r.n_events = o.n;
	r.last_id = m->last_event_id;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_EVENTS_REPLY, &r.base);
out:
	for (size_t i = 0; i < o.nstr; i++)
		free(o.strings[i]);
	free(o.strings);
	free(o.ptr);
	free(o.ev);
}
