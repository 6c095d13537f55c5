/*
 * Commands to agents, one kind to several nodes at once: the fan-out. A
 * fan sends `kind` to every node it is given (the argument built per node
 * by the caller), collects each node's status, message and result (a copy
 * of the ack's console or stats), and calls `done` once every node has
 * answered or failed, possibly before mgr_fan_out() returns. The fan
 * knows no VM: `tag` is what `done` finds its object again by (a VM id),
 * since the object may have changed or gone meanwhile.
 *
 * A node that is not up gets no command and counts as failed with
 * -ENOTCONN: placement never picks one, a suspect node fences itself,
 * and what it still holds is released as an orphan when it is heard from
 * again (mgr_vm.c).
 *
 * Commands go out through m->send_command (mgr_agent_command in the
 * daemon, a fake in unit tests). Event-loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgr_int.h"

struct fan_one {
	struct mgr_fan *f;
	size_t i;
};

static void fan_finish(struct mgr_fan *f)
{
	if (f->done)
		f->done(f->m, f);
	for (size_t i = 0; i < f->n; i++)
		if (f->res[i].result)
			protobuf_c_message_free_unpacked(f->res[i].result,
							 NULL);
	free(f);
}

/* Whether an answer to `kind` carries a result (agent.proto). */
static bool ack_wants_result(Cellmon__CommandKind kind)
{
	return kind == CELLMON__COMMAND_KIND__CMD_VM_CONSOLE ||
	       kind == CELLMON__COMMAND_KIND__CMD_VM_STATS ||
	       kind == CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE ||
	       kind == CELLMON__COMMAND_KIND__CMD_VM_PAGES_APPLY;
}

/* A copy of the result the ack carries for `kind`, or NULL when it has
 * none (or carries another kind's). */
static ProtobufCMessage *ack_result_copy(const Cellmon__CommandAck *ack,
					 Cellmon__CommandKind kind)
{
	const ProtobufCMessage *res = NULL;

	if (ack->status)
		return NULL;
	if (kind == CELLMON__COMMAND_KIND__CMD_VM_CONSOLE &&
	    ack->result_case == CELLMON__COMMAND_ACK__RESULT_CONSOLE)
		res = &ack->console->base;
	else if (kind == CELLMON__COMMAND_KIND__CMD_VM_STATS &&
		 ack->result_case == CELLMON__COMMAND_ACK__RESULT_STATS)
		res = &ack->stats->base;
	else if ((kind == CELLMON__COMMAND_KIND__CMD_VM_RUN ||
		  kind == CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_IN) &&
		 ack->result_case == CELLMON__COMMAND_ACK__RESULT_RUN)
		res = &ack->run->base;
	else if (kind == CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_OUT &&
		 ack->result_case == CELLMON__COMMAND_ACK__RESULT_MIGRATED)
		res = &ack->migrated->base;
	else if (kind == CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE &&
		 ack->result_case == CELLMON__COMMAND_ACK__RESULT_SAMPLE)
		res = &ack->sample->base;
	else if (kind == CELLMON__COMMAND_KIND__CMD_VM_PAGES_APPLY &&
		 ack->result_case == CELLMON__COMMAND_ACK__RESULT_APPLIED)
		res = &ack->applied->base;
	return res ? cellproto_copy(res) : NULL;
}

static void fan_reply(int status, const ProtobufCMessage *msg,
		      const char *errmsg, void *arg)
{
	struct fan_one *o = arg;
	struct mgr_fan *f = o->f;
	struct mgr_fan_res *r = &f->res[o->i];
	const Cellmon__CommandAck *ack = (const void *)msg;

	free(o);
	if (status) {
		r->status = status;
		snprintf(r->msg, sizeof(r->msg), "%s", errmsg);
	} else {
		r->status = ack->status;
		snprintf(r->msg, sizeof(r->msg), "%s",
			 ack->message ? ack->message : "");
		r->result = ack_result_copy(ack, f->kind);
		if (!r->status && !r->result && ack_wants_result(f->kind)) {
			r->status = -EBADMSG;
			snprintf(r->msg, sizeof(r->msg),
				 "answered without a result");
		}
	}
	if (--f->left == 0)
		fan_finish(f);
}

/* Sends the command to node i of the fan; -errno when it cannot go. */
static int fan_send(struct mgr_fan *f, size_t i, mgr_fan_args_fn build,
		    void *arg)
{
	struct mgr *m = f->m;
	struct mgr_node *node = mgr_members_find(m->members, f->res[i].node);
	Cellmon__Command cmd = CELLMON__COMMAND__INIT;
	struct fan_one *o;
	void *own = NULL;
	int rc;

	if (!node)
		return -ENOENT;
	if (node->state != MGR_NODE_UP)
		return -ENOTCONN;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	rc = build(m, arg, node->id, &cmd, &own);
	if (!rc) {
		cmd.incarnation = node->incarnation;
		cmd.kind = f->kind;
		*o = (struct fan_one){f, i};
		rc = m->send_command(m, node, &cmd.base, fan_reply, o);
	}
	free(own);
	if (rc)
		free(o);
	return rc;
}

int mgr_fan_out(struct mgr *m, const char *const *nodes, size_t n,
		Cellmon__CommandKind kind, mgr_fan_args_fn build, void *arg,
		uint64_t tag, mgr_fan_done_fn done, struct cell_rpc_call *call)
{
	struct mgr_fan *f = calloc(1, sizeof(*f) + (n + 1) * sizeof(f->res[0]));

	if (!f)
		return -ENOMEM;
	*f = (struct mgr_fan){
		.m = m,
		.tag = tag,
		.kind = kind,
		.n = n,
		.left = n + 1, /* the extra count keeps f alive until the end */
		.done = done,
		.call = call,
	};
	for (size_t i = 0; i < n; i++) {
		struct mgr_fan_res *r = &f->res[i];
		int rc;

		snprintf(r->node, sizeof(r->node), "%s", nodes[i]);
		rc = fan_send(f, i, build, arg);
		if (rc) {
			r->status = rc;
			snprintf(r->msg, sizeof(r->msg), "node %s: %s",
				 nodes[i],
				 rc == -ENOTCONN ? "not connected"
						 : strerror(-rc));
			f->left--;
		}
	}
	if (--f->left == 0)
		fan_finish(f);
	return 0;
}

const struct mgr_fan_res *mgr_fan_error(const struct mgr_fan *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->res[i].status)
			return &f->res[i];
	return NULL;
}
