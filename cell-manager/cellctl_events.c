/*
 * cellctl events: the manager's event log, oldest first, optionally only
 * since a while ago (--since=DURATION), and with --follow the events as
 * they come (a request for what is newer every 500 ms; a manager that
 * goes away is waited for, said once on stderr). Text: one line per
 * event; JSON: one object {"events": [...], "last_id": N}, or with
 * --follow one object per event per line (JSON lines).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cell/clock.h"
#include "cell/config.h"
#include "cellctl.h"

int ctl_build_events(const struct ctl_opts *o, char **args, int nargs,
		     ProtobufCMessage **out)
{
	static const char *const keys[] = {"since", NULL};
	Cellmon__EventsRequest *r = malloc(sizeof(*r));
	int64_t ms;

	(void)args;
	(void)nargs;
	if (!r)
		return -ENOMEM;
	cellmon__events_request__init(r);
	if (ctl_check_keys(o, keys, "events")) {
		free(r);
		return -EINVAL;
	}
	for (int i = 0; i < o->n; i++) {
		if (cell_parse_duration_ms(o->val[i], &ms) || ms < 0) {
			fprintf(stderr,
				"cellctl: --since wants a duration (30s, 10m, "
				"2h), not '%s'\n",
				o->val[i]);
			free(r);
			return -EINVAL;
		}
		r->since_ms = cell_wall_ms() - (uint64_t)ms;
	}
	*out = &r->base;
	return 0;
}

static void print_event(const Cellmon__Event *e)
{
	time_t t = (time_t)(e->at_ms / 1000);
	struct tm tm;
	char when[32];

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%s.%03u  %-13s %-16s %s\n", when, (unsigned)(e->at_ms % 1000),
	       e->kind, e->subject[0] ? e->subject : "-", e->detail);
}

void ctl_render_events(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__EventsReply *r = (const void *)reply;

	(void)args;
	if (json) {
		ctl_emit_json(ctl_json_events(r));
		return;
	}
	for (size_t i = 0; i < r->n_events; i++)
		print_event(r->events[i]);
}

/* Prints the events of r (JSON lines or text); the last id printed. */
static uint64_t print_new(bool json, const Cellmon__EventsReply *r,
			  uint64_t last)
{
	for (size_t i = 0; i < r->n_events; i++) {
		if (json) {
			char *s = json_dumps(ctl_json_event(r->events[i]),
					     JSON_COMPACT);

			if (s)
				puts(s);
			free(s);
		} else {
			print_event(r->events[i]);
		}
		last = r->events[i]->id;
	}
	fflush(stdout);
	return last;
}

int ctl_events_follow(const char *manager, const struct cell_rpc_config *rpc,
		      unsigned timeout_ms, bool json,
		      const ProtobufCMessage *first)
{
	const Cellmon__EventsReply *r0 = (const void *)first;
	uint64_t last =
		r0->n_events ? r0->events[r0->n_events - 1]->id : r0->last_id;
	bool away = false;

	print_new(json, r0, last);
	for (;;) {
		Cellmon__EventsRequest req = CELLMON__EVENTS_REQUEST__INIT;
		ProtobufCMessage *reply = NULL;
		char err[300];
		int rc;

		usleep(500 * 1000);
		req.after_id = last;
		rc = cell_rpc_call_sync(
			manager, rpc, CELLMON__MSG_TYPE__MSG_EVENTS, &req.base,
			CELLMON__MSG_TYPE__MSG_EVENTS_REPLY, timeout_ms, &reply,
			err, sizeof(err));
		if (rc) {
			if (!away)
				fprintf(stderr,
					"cellctl: manager: %s; waiting for "
					"it\n",
					err);
			away = true;
			continue;
		}
		if (away)
			fprintf(stderr, "cellctl: the manager answers again\n");
		away = false;
		last = print_new(json, (const void *)reply, last);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
}
