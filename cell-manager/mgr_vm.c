/*
 * VMs in the manager: records (persisted in the store before any change
 * is acknowledged), placement (placement.c), and the state machine that
 * drives agents.
 *
 *   create            pending (validated; refused if even an empty cell
 *                     could not hold it)
 *   start             place with what the cell has free, then
 *                     starting: PREPARE on every node of the VM (each
 *                     creates the DSM region), then RUN (vCPUs start);
 *                     running when every node acknowledged
 *   heartbeats        carry each vCPU's state: a vCPU that exits non-zero
 *                     or dies of a signal fails the VM; all exiting 0
 *                     stops it
 *   stop              stopping: STOP (SIGTERM, then SIGKILL after the
 *                     agent's grace); stopped when every vCPU has ended
 *   kill              RELEASE everywhere at once; stopped
 *   node down or      failed ("node X is down"), its other nodes released
 *   new incarnation
 *
 * Ending a run ("finish") snapshots the region's counters on every node
 * (vm stats after the end) and then RELEASEs the region everywhere.
 * A region id is (VM id << 16 | run number), so a new run never meets
 * the pages of an old one. vCPUs an agent reports for a region no active
 * VM owns are orphans (e.g. the manager restarted mid-start) and are
 * released.
 *
 * Everything runs on the manager's event-loop thread. A fan-out of one
 * command to several agents ends in one callback; it finds its VM again
 * by id, since the VM may have changed meanwhile.
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "mgr_int.h"
#include "dsm/dsm.h"
#include "placement.h"

#define MOD "mgr"

#define VM_MAX_VCPUS	 256
#define VM_MAX_MEMORY_MB (1ull << 20) /* 1 TiB */
#define HEADROOM_PCT	 10

/* ---- records ---- */

static struct mgr_vm *vm_find(struct mgr *m, const char *name)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (strcmp(m->vms[i]->name, name) == 0)
			return m->vms[i];
	return NULL;
}

static struct mgr_vm *vm_by_id(struct mgr *m, uint64_t id)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (m->vms[i]->id == id)
			return m->vms[i];
	return NULL;
}

static bool vm_active(const struct mgr_vm *vm)
{
	return vm->state == CELLMON__VM_STATE__VM_STARTING ||
	       vm->state == CELLMON__VM_STATE__VM_RUNNING ||
	       vm->state == CELLMON__VM_STATE__VM_STOPPING;
}

static void stats_free(struct mgr_vm *vm)
{
	for (size_t i = 0; i < vm->nstats; i++)
		cellmon__vm_node_stats__free_unpacked(vm->stats[i], NULL);
	free(vm->stats);
	vm->stats = NULL;
	vm->nstats = 0;
}

static void vm_free(struct mgr_vm *vm)
{
	if (!vm)
		return;
	if (vm->spec)
		cellmon__vm_spec__free_unpacked(vm->spec, NULL);
	stats_free(vm);
	free(vm->vcpus);
	free(vm);
}

static int vm_add(struct mgr *m, struct mgr_vm *vm)
{
	if (m->nvms == m->capvms) {
		size_t cap = m->capvms ? m->capvms * 2 : 16;
		struct mgr_vm **v = realloc(m->vms, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		m->vms = v;
		m->capvms = cap;
	}
	m->vms[m->nvms++] = vm;
	return 0;
}

static void vm_remove(struct mgr *m, struct mgr_vm *vm)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (m->vms[i] == vm) {
			memmove(&m->vms[i], &m->vms[i + 1],
				(m->nvms - i - 1) * sizeof(*m->vms));
			m->nvms--;
			break;
		}
	vm_free(vm);
}

/* Writes the record; logs and returns -errno on failure. */
static int vm_persist(struct mgr *m, const struct mgr_vm *vm)
{
	size_t len = cellmon__vm_spec__get_packed_size(vm->spec), off = 0;
	uint8_t *spec = malloc(len ? len : 1);
	char *placement = calloc(vm->nvcpus + 1, CELL_NAME_MAX + 2);
	struct mgr_vm_row row;
	int rc = -ENOMEM;

	if (spec && placement) {
		cellmon__vm_spec__pack(vm->spec, spec);
		for (uint32_t i = 0; i < vm->nvcpus; i++)
			off += (size_t)sprintf(placement + off, "%s%s",
					       i ? "," : "", vm->vcpus[i].node);
		row = (struct mgr_vm_row){vm->id,
					  vm->name,
					  spec,
					  len,
					  vm->state,
					  vm->reason,
					  vm->runs,
					  vm->region,
					  placement,
					  vm->created_ms,
					  vm->state_since_ms,
					  vm->restarts};
		rc = mgr_store_vm_save(m->store, &row);
	}
	if (rc)
		CELL_ERROR(MOD, "cannot persist vm %s: %s", vm->name,
			   strerror(-rc));
	free(spec);
	free(placement);
	return rc;
}

static const char *state_name(Cellmon__VmState s)
{
	return cellproto_name(&cellproto_vm_states, s);
}

static void set_state(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		      const char *reason)
{
	Cellmon__VmState old = vm->state;

	vm->state = s;
	vm->state_since_ms = cell_wall_ms();
	if (reason)
		snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
	vm_persist(m, vm);
	if (s == CELLMON__VM_STATE__VM_FAILED)
		CELL_WARN(MOD, "vm failed name=%s was=%s reason=\"%s\"",
			  vm->name, state_name(old), vm->reason);
	else
		CELL_INFO(MOD, "vm %s name=%s was=%s%s%s%s", state_name(s),
			  vm->name, state_name(old), reason ? " reason=\"" : "",
			  reason ? reason : "", reason ? "\"" : "");
}

/* ---- replies ---- */

static size_t vm_nodes(const struct mgr_vm *vm, const char **out);

/* A VmInfo pointing into vm; free with info_free(). */
static int info_fill(const struct mgr *m, const struct mgr_vm *vm,
		     Cellmon__VmInfo *vi)
{
	cellmon__vm_info__init(vi);
	vi->spec = vm->spec;
	vi->id = vm->id;
	vi->state = vm->state;
	vi->reason = (char *)vm->reason;
	vi->created_ms = vm->created_ms;
	vi->state_since_ms = vm->state_since_ms;
	vi->runs = vm->runs;
	vi->region = vm->region;
	vi->restarts = vm->restarts;
	if (vm->spec->n_disks)
		vi->disk_server = (char *)m->cfg.vdiskd;
	vi->vcpus = calloc(vm->nvcpus + 1, sizeof(*vi->vcpus));
	vi->deps = calloc(vm->nvcpus + 1, sizeof(*vi->deps));
	if (!vi->vcpus || !vi->deps)
		return -ENOMEM;
	vi->n_deps = vm_nodes(vm, (const char **)vi->deps);
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		Cellmon__VcpuInfo *c = calloc(1, sizeof(*c));

		if (!c)
			return -ENOMEM;
		cellmon__vcpu_info__init(c);
		c->vcpu = i;
		c->node = (char *)vm->vcpus[i].node;
		c->state = vm->vcpus[i].state;
		c->exit_code = vm->vcpus[i].exit_code;
		c->signal = vm->vcpus[i].signal;
		c->pid = vm->vcpus[i].pid;
		vi->vcpus[vi->n_vcpus++] = c;
	}
	return 0;
}

static void info_free(Cellmon__VmInfo *vi)
{
	for (size_t i = 0; vi->vcpus && i < vi->n_vcpus; i++)
		free(vi->vcpus[i]);
	free(vi->vcpus);
	free(vi->deps);
}

static void reply_vm(struct mgr *m, struct cell_rpc_call *call,
		     const struct mgr_vm *vm)
{
	Cellmon__VmReply r = CELLMON__VM_REPLY__INIT;
	Cellmon__VmInfo vi;

	if (vm) {
		if (info_fill(m, vm, &vi)) {
			info_free(&vi);
			cell_rpc_reply_error(call, -ENOMEM, "out of memory");
			return;
		}
		r.vm = &vi;
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_REPLY, &r.base);
	if (vm)
		info_free(&vi);
}

/* Answers the cellctl call waiting on vm, if any: with the VM, or with
 * the error when rc is not 0. */
static void answer_waiter(struct mgr *m, struct mgr_vm *vm, int rc)
{
	struct cell_rpc_call *call = vm->waiter;

	if (!call)
		return;
	vm->waiter = NULL;
	if (rc)
		cell_rpc_reply_error(call, rc, "vm %s: %s", vm->name,
				     vm->reason);
	else
		reply_vm(m, call, vm);
}

/* ---- fan-out of one command kind to several nodes ---- */

struct fan;
typedef void (*fan_done_fn)(struct mgr *m, struct mgr_vm *vm, struct fan *f);

struct fan_res {
	char node[CELL_NAME_MAX + 1];
	int status;
	char msg[300];
	ProtobufCMessage *result; /* owned: the ack's console or stats */
};

struct fan {
	struct mgr *m;
	uint64_t vm_id;
	Cellmon__CommandKind kind;
	size_t n, left;
	fan_done_fn done;
	struct cell_rpc_call *call; /* a cellctl call `done` answers, or NULL */
	struct fan_res res[];
};

struct fan_one {
	struct fan *f;
	size_t i;
};

static void fan_finish(struct fan *f)
{
	struct mgr_vm *vm = vm_by_id(f->m, f->vm_id);

	if (f->done)
		f->done(f->m, vm, f);
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
	       kind == CELLMON__COMMAND_KIND__CMD_VM_STATS;
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
	return res ? cellproto_copy(res) : NULL;
}

static void fan_reply(int status, const ProtobufCMessage *msg,
		      const char *errmsg, void *arg)
{
	struct fan_one *o = arg;
	struct fan *f = o->f;
	struct fan_res *r = &f->res[o->i];
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

/* The distinct nodes of a VM's vCPUs, in vCPU order. */
static size_t vm_nodes(const struct mgr_vm *vm, const char **out)
{
	size_t k = 0;

	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		bool seen = false;

		for (size_t j = 0; j < k; j++)
			seen |= strcmp(out[j], vm->vcpus[i].node) == 0;
		if (!seen)
			out[k++] = vm->vcpus[i].node;
	}
	return k;
}

/* Fills the argument of the command to `node` into cmd; what it
 * allocates goes into *own (freed by the caller with free()). */
typedef int (*fan_args_fn)(struct mgr *m, struct mgr_vm *vm, const char *node,
			   Cellmon__Command *cmd, void **own);

/* Sends `kind` to every node of vm (args built per node); `done` runs
 * once all have answered (errors included), possibly before this
 * returns, with `call` (a cellctl call to answer, may be NULL) in the
 * fan. */
static int fan_out_call(struct mgr *m, struct mgr_vm *vm,
			Cellmon__CommandKind kind, fan_args_fn build,
			fan_done_fn done, struct cell_rpc_call *call)
{
	const char **nodes = calloc(vm->nvcpus + 1, sizeof(*nodes));
	size_t n = nodes ? vm_nodes(vm, nodes) : 0;
	struct fan *f =
		nodes ? calloc(1, sizeof(*f) + (n + 1) * sizeof(f->res[0]))
		      : NULL;

	if (!f) {
		free(nodes);
		return -ENOMEM;
	}
	*f = (struct fan){m, vm->id, kind, n, n + 1, done, call};
	for (size_t i = 0; i < n; i++) {
		struct fan_res *r = &f->res[i];
		struct mgr_node *node = mgr_members_find(m->members, nodes[i]);
		Cellmon__Command cmd = CELLMON__COMMAND__INIT;
		struct fan_one *o = calloc(1, sizeof(*o));
		void *own = NULL;
		int rc = o ? 0 : -ENOMEM;

		snprintf(r->node, sizeof(r->node), "%s", nodes[i]);
		if (!rc && !node)
			rc = -ENOENT;
		/* Nothing waits for a node that is not up (placement never
		 * picks one): a suspect node fences itself, and what it
		 * still holds is released as an orphan when it is heard
		 * from again. */
		if (!rc && node->state != MGR_NODE_UP)
			rc = -ENOTCONN;
		if (!rc)
			rc = build(m, vm, nodes[i], &cmd, &own);
		if (!rc) {
			cmd.incarnation = node->incarnation;
			cmd.kind = kind;
			*o = (struct fan_one){f, i};
			rc = mgr_agent_command(m, node, &cmd.base, fan_reply,
					       o);
		}
		free(own);
		if (rc) {
			free(o);
			r->status = rc;
			snprintf(r->msg, sizeof(r->msg), "node %s: %s",
				 nodes[i],
				 rc == -ENOTCONN ? "not connected"
						 : strerror(-rc));
			f->left--;
		}
	}
	free(nodes);
	if (--f->left == 0) /* the extra count keeps f alive until here */
		fan_finish(f);
	return 0;
}

static int fan_out(struct mgr *m, struct mgr_vm *vm, Cellmon__CommandKind kind,
		   fan_args_fn build, fan_done_fn done)
{
	return fan_out_call(m, vm, kind, build, done, NULL);
}

/* The first error of a fan-out as "node: message", or NULL. */
static const struct fan_res *fan_error(const struct fan *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->res[i].status)
			return &f->res[i];
	return NULL;
}

static int build_target(struct mgr *m, struct mgr_vm *vm, const char *node,
			Cellmon__Command *cmd, void **own)
{
	Cellmon__VmTarget *t = malloc(sizeof(*t));

	(void)m;
	(void)node;
	if (!t)
		return -ENOMEM;
	cellmon__vm_target__init(t);
	t->name = (char *)vm->name;
	t->region = vm->region;
	cmd->args_case = CELLMON__COMMAND__ARGS_TARGET;
	cmd->target = t;
	*own = t;
	return 0;
}

/* The VmStart of one node and everything it points to, in one block
 * the caller frees once the command is sent. */
struct start_args {
	Cellmon__VmStart st;
	Cellmon__VmMember mem[DSM_MAX_NODES], *pm[DSM_MAX_NODES];
	Cellmon__DsmFence fences[DSM_MAX_NODES], *fp[DSM_MAX_NODES];
	uint32_t mine[];
};

/* VmStart for one node: members are every node of the VM. */
static int build_start(struct mgr *m, struct mgr_vm *vm, const char *node,
		       Cellmon__Command *cmd, void **own)
{
	const char *nodes[VM_MAX_VCPUS];
	size_t n = vm_nodes(vm, nodes);
	struct start_args *a;
	Cellmon__VmStart *st;

	/* placement keeps VMs on nodes with DSM ids */
	if (n > DSM_MAX_NODES)
		return -E2BIG;
	a = calloc(1, sizeof(*a) + (vm->nvcpus + 1) * sizeof(a->mine[0]));
	if (!a)
		return -ENOMEM;
	st = &a->st;
	cellmon__vm_start__init(st);
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (strcmp(vm->vcpus[i].node, node) == 0)
			a->mine[st->n_vcpus++] = i;
	for (size_t j = 0; j < n; j++) {
		struct mgr_node *mn = mgr_members_find(m->members, nodes[j]);

		cellmon__vm_member__init(&a->mem[j]);
		a->mem[j].node = (char *)nodes[j];
		a->mem[j].dsm_id =
			mn ? (uint32_t)mgr_node_dsm_id(m, mn) : DSM_MAX_NODES;
		a->mem[j].dsm_addr = mn ? mn->dsm_addr : "";
		a->pm[j] = &a->mem[j];
	}
	st->spec = vm->spec;
	st->region = vm->region;
	st->members = a->pm;
	st->n_members = n;
	st->vcpus = a->mine;
	st->home_dsm_id = a->mem[0].dsm_id;
	st->vdiskd = m->cfg.vdiskd;
	st->write_epoch = vm->write_epoch;
	st->n_fences = mgr_dsm_fences(m, mgr_members_find(m->members, node),
				      a->fences, a->fp);
	st->fences = a->fp;
	cmd->args_case = CELLMON__COMMAND__ARGS_START;
	cmd->start = st;
	*own = a;
	return 0;
}

/* ---- ending a run ---- */

static void restart(struct mgr *m, struct mgr_vm *vm);

static void release_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	const struct fan_res *e = fan_error(f);

	if (e && e->status != -ENOTCONN)
		CELL_WARN(MOD, "vm release incomplete node=%s: %s", e->node,
			  e->msg);
	if (!vm)
		return;
	vm->busy = false;
	if (vm->state != CELLMON__VM_STATE__VM_FAILED)
		answer_waiter(m, vm, 0);
	else
		answer_waiter(m, vm, vm->start_err ? vm->start_err : -EIO);
	vm->start_err = 0;
	if (vm->restart_pending)
		restart(m, vm);
}

static void stats_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	if (!vm)
		return;
	stats_free(vm);
	vm->stats = calloc(f->n + 1, sizeof(*vm->stats));
	for (size_t i = 0; vm->stats && i < f->n; i++)
		if (f->res[i].result) {
			vm->stats[vm->nstats++] = (void *)f->res[i].result;
			f->res[i].result = NULL; /* now the VM's */
		}
	if (fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_RELEASE, build_target,
		    release_done))
		release_done(m, vm, f);
}

/* Ends the run in state s: snapshot the counters, release everywhere,
 * then answer the waiting call. */
static void finish(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		   const char *reason)
{
	set_state(m, vm, s, reason);
	vm->busy = true;
	if (fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STATS, build_target,
		    stats_done)) {
		vm->busy = false;
		answer_waiter(m, vm,
			      s == CELLMON__VM_STATE__VM_FAILED ? -EIO : 0);
	}
}

static uint32_t max_restarts(const struct mgr_vm *vm)
{
	return vm->spec->restart ? vm->spec->restart->max_restarts : 3;
}

/* A failure that is a node's, not the guest's (the node went down,
 * restarted, or lost its lease): end the run and, if the policy allows,
 * start it again on the nodes left. */
static void fail_node(struct mgr *m, struct mgr_vm *vm, const char *why)
{
	char reason[300];

	if (vm->state == CELLMON__VM_STATE__VM_STOPPING) {
		/* The operator was stopping it: the node's end ends it. */
		snprintf(reason, sizeof(reason), "stopped (%s)", why);
		vm->busy = false;
		finish(m, vm, CELLMON__VM_STATE__VM_STOPPED, reason);
		return;
	}
	if (vm->restarts < max_restarts(vm)) {
		vm->restart_pending = true;
		snprintf(reason, sizeof(reason), "%s; restarting (%u of %u)",
			 why, vm->restarts + 1, max_restarts(vm));
	} else {
		snprintf(reason, sizeof(reason),
			 "%s; not restarted: %u restarts done (max_restarts); "
			 "start it by hand",
			 why, vm->restarts);
	}
	vm->busy = false;
	finish(m, vm, CELLMON__VM_STATE__VM_FAILED, reason);
}

/* Decides what the vCPU states mean for a running or stopping VM. */
static void evaluate(struct mgr *m, struct mgr_vm *vm)
{
	char why[300];
	uint32_t ended = 0;

	if (vm->busy || (vm->state != CELLMON__VM_STATE__VM_RUNNING &&
			 vm->state != CELLMON__VM_STATE__VM_STOPPING))
		return;
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		const struct mgr_vcpu *c = &vm->vcpus[i];
		bool node_fault = false;

		switch (c->state) {
		case CELLMON__VCPU_STATE__VCPU_LOST:
			snprintf(why, sizeof(why),
				 "vcpu %u on %s was ended: a DSM page request "
				 "went unanswered",
				 i, c->node);
			node_fault = true;
			break;
		case CELLMON__VCPU_STATE__VCPU_FENCED:
			snprintf(why, sizeof(why),
				 "vcpu %u on %s was fenced (its node lost its "
				 "lease)",
				 i, c->node);
			node_fault = true;
			break;
		case CELLMON__VCPU_STATE__VCPU_EXITED:
			snprintf(why, sizeof(why),
				 "vcpu %u on %s exited with status %d", i,
				 c->node, c->exit_code);
			break;
		case CELLMON__VCPU_STATE__VCPU_KILLED:
			snprintf(why, sizeof(why),
				 "vcpu %u on %s was killed by signal %d (%s)",
				 i, c->node, c->signal, strsignal(c->signal));
			break;
		default: /* not ended */
			continue;
		}
		ended++;
		if (vm->state != CELLMON__VM_STATE__VM_RUNNING)
			continue;
		if (node_fault) {
			fail_node(m, vm, why);
			return;
		}
		if (c->state != CELLMON__VCPU_STATE__VCPU_EXITED ||
		    c->exit_code) {
			finish(m, vm, CELLMON__VM_STATE__VM_FAILED, why);
			return;
		}
	}
	if (ended < vm->nvcpus)
		return;
	if (vm->state == CELLMON__VM_STATE__VM_STOPPING)
		finish(m, vm, CELLMON__VM_STATE__VM_STOPPED,
		       "stopped by request");
	else
		finish(m, vm, CELLMON__VM_STATE__VM_STOPPED,
		       "every vCPU exited with status 0");
}

/* ---- starting ---- */

static void fail_start(struct mgr *m, struct mgr_vm *vm, const char *what,
		       const struct fan_res *e)
{
	char why[400];

	snprintf(why, sizeof(why), "%s on %s: %s", what, e->node, e->msg);
	vm->start_err = e->status;
	vm->busy = false;
	finish(m, vm, CELLMON__VM_STATE__VM_FAILED, why);
}

static void run_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	const struct fan_res *e = fan_error(f);

	if (!vm || vm->state != CELLMON__VM_STATE__VM_STARTING)
		return;
	if (e) {
		fail_start(m, vm, "start", e);
		return;
	}
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == CELLMON__VCPU_STATE__VCPU_PLACED)
			vm->vcpus[i].state = CELLMON__VCPU_STATE__VCPU_RUNNING;
	vm->busy = false;
	set_state(m, vm, CELLMON__VM_STATE__VM_RUNNING, "");
	answer_waiter(m, vm, 0);
	evaluate(m, vm); /* vCPUs that ended before every node answered */
}

static void prepare_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	const struct fan_res *e = fan_error(f);

	if (!vm || vm->state != CELLMON__VM_STATE__VM_STARTING)
		return;
	if (e) {
		fail_start(m, vm, "prepare", e);
		return;
	}
	if (fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_RUN, build_start,
		    run_done)) {
		struct fan_res oom = {.status = -ENOMEM,
				      .msg = "out of memory"};

		snprintf(oom.node, sizeof(oom.node), "manager");
		fail_start(m, vm, "start", &oom);
	}
}

/* ---- placement ---- */

/* Fills the candidate table; `empty` ignores what other VMs use. */
static struct mgr_place_node *place_table(struct mgr *m,
					  const Cellmon__VmSpec *s,
					  const struct mgr_vm *self, bool empty,
					  size_t *count)
{
	size_t n = mgr_members_count(m->members);
	struct mgr_place_node *t = calloc(n ? n : 1, sizeof(*t));

	for (size_t i = 0; t && i < n; i++) {
		struct mgr_node *node = mgr_members_at(m->members, i);

		t[i].id = node->id;
		t[i].up = empty || node->state == MGR_NODE_UP;
		t[i].in_cell = strcmp(node->cell, s->cell) == 0;
		t[i].has_dsm = empty || (node->dsm_addr[0] &&
					 mgr_node_dsm_id(m, node) >= 0);
		t[i].cpus = node->cpus;
		t[i].memory_mb = node->memory_mb;
		for (size_t v = 0; !empty && v < m->nvms; v++) {
			const struct mgr_vm *o = m->vms[v];
			const char *nodes[VM_MAX_VCPUS];
			size_t k;
			bool here = false;

			if (o == self || !vm_active(o))
				continue;
			for (uint32_t c = 0; c < o->nvcpus; c++)
				if (strcmp(o->vcpus[c].node, node->id) == 0) {
					t[i].used_cpus++;
					here = true;
				}
			if (!here)
				continue;
			k = vm_nodes(o, nodes);
			t[i].used_mb += (o->spec->memory_mb + k - 1) / k;
			if (s->anti_affinity[0] &&
			    strcmp(s->anti_affinity, o->spec->anti_affinity) ==
				    0)
				t[i].anti_conflict = true;
		}
	}
	*count = n;
	return t;
}

/* hint: obey the spec's node hint (restarts after a node failure go
 * anywhere in the cell). */
static int place_hint(struct mgr *m, const Cellmon__VmSpec *s,
		      const struct mgr_vm *self, bool empty, bool hint,
		      uint32_t *out, const char **names, char *why, size_t len)
{
	struct mgr_place_req q = {s->vcpus, s->memory_mb, hint ? s->node : NULL,
				  s->placement ==
					  CELLMON__PLACEMENT__PLACEMENT_PACK,
				  HEADROOM_PCT};
	size_t n;
	struct mgr_place_node *t = place_table(m, s, self, empty, &n);
	int rc;

	if (!t)
		return -ENOMEM;
	rc = mgr_place(&q, t, n, out, why, len);
	for (uint32_t v = 0; !rc && names && v < s->vcpus; v++)
		names[v] = t[out[v]].id; /* node ids outlive the table */
	free(t);
	return rc;
}

static int place(struct mgr *m, const Cellmon__VmSpec *s,
		 const struct mgr_vm *self, bool empty, uint32_t *out,
		 const char **names, char *why, size_t len)
{
	return place_hint(m, s, self, empty, true, out, names, why, len);
}

/* ---- validation ---- */

/* Whether v is a value of the set; err names the known ones if not (a
 * newer cellctl may send a value this manager does not have). */
static bool known(const struct cellproto_enum *e, int v, char *err, size_t len)
{
	char names[200];

	if (cellproto_known(e, v))
		return true;
	cellproto_names_list(e, names, sizeof(names));
	snprintf(err, len, "unknown %s %d: this manager knows %s", e->what, v,
		 names);
	return false;
}

static bool disk_name_ok(const char *d, size_t n)
{
	if (n == 0 || n > 63 || d[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)d[i]) && !strchr("._-", d[i]))
			return false;
	return true;
}

/* The disk name of spec entry i and whether it is writable. */
static size_t disk_of(const Cellmon__VmSpec *s, size_t i, bool *rw)
{
	size_t n = strcspn(s->disks[i], ":");

	*rw = s->disks[i][n] == '\0';
	return n;
}

const char *mgr_vm_disk_user(struct mgr *m, const char *disk)
{
	for (size_t v = 0; v < m->nvms; v++) {
		const struct mgr_vm *vm = m->vms[v];
		bool rw;

		for (size_t i = 0; vm_active(vm) && i < vm->spec->n_disks;
		     i++) {
			size_t n = disk_of(vm->spec, i, &rw);

			if (strlen(disk) == n &&
			    strncmp(vm->spec->disks[i], disk, n) == 0)
				return vm->name;
		}
	}
	return NULL;
}

/* NFS-style sharing: one active writer per disk, any number of readers.
 * 0, or -EBUSY with the other writer named. */
static int check_writers(struct mgr *m, const struct mgr_vm *self, char *err,
			 size_t len)
{
	for (size_t i = 0; i < self->spec->n_disks; i++) {
		bool rw, orw;
		size_t n = disk_of(self->spec, i, &rw);

		for (size_t v = 0; rw && v < m->nvms; v++) {
			const struct mgr_vm *o = m->vms[v];

			for (size_t j = 0;
			     o != self && vm_active(o) && j < o->spec->n_disks;
			     j++) {
				size_t on = disk_of(o->spec, j, &orw);

				if (orw && on == n &&
				    strncmp(o->spec->disks[j],
					    self->spec->disks[i], n) == 0) {
					snprintf(
						err, len,
						"disk %.*s is written by vm "
						"%s; one writer at a time (use "
						"%.*s:ro to read it)",
						(int)n, self->spec->disks[i],
						o->name, (int)n,
						self->spec->disks[i]);
					return -EBUSY;
				}
			}
		}
	}
	return 0;
}

/* Fills defaults into s and checks it; err says what is wrong. */
static int validate(struct mgr *m, Cellmon__VmSpec *s, char *err, size_t len)
{
	if (!cell_name_valid(s->name)) {
		snprintf(err, len,
			 "invalid VM name '%.64s': use 1-63 of [a-z0-9_.-], "
			 "starting with a letter or digit",
			 s->name);
		return -EINVAL;
	}
	if (!s->cell[0] || !mgr_cell_find(m, s->cell)) {
		snprintf(err, len, "no cell '%.64s'", s->cell);
		return -ENOENT;
	}
	if (s->vcpus == 0 || s->vcpus > VM_MAX_VCPUS) {
		snprintf(err, len, "vcpus must be 1-%d, not %u", VM_MAX_VCPUS,
			 s->vcpus);
		return -EINVAL;
	}
	if (s->memory_mb == 0 || s->memory_mb > VM_MAX_MEMORY_MB) {
		snprintf(err, len,
			 "memory must be 1 MB to %llu MB, not %llu MB",
			 (unsigned long long)VM_MAX_MEMORY_MB,
			 (unsigned long long)s->memory_mb);
		return -EINVAL;
	}
	if (!known(&cellproto_engines, (int)s->engine, err, len) ||
	    !known(&cellproto_placements, (int)s->placement, err, len) ||
	    !known(&cellproto_homes, (int)s->home, err, len))
		return -EINVAL;
	if (!cell_name_valid(s->image)) {
		snprintf(err, len, "invalid image name '%.64s'", s->image);
		return -EINVAL;
	}
	if (s->node[0] && !mgr_members_find(m->members, s->node)) {
		snprintf(err, len, "no node '%.64s'", s->node);
		return -ENOENT;
	}
	for (size_t i = 0; i < s->n_disks; i++) {
		const char *d = s->disks[i];
		size_t n = strcspn(d, ":");

		if (!disk_name_ok(d, n) || (d[n] && strcmp(d + n, ":ro"))) {
			snprintf(err, len,
				 "bad disk '%.80s': NAME or NAME:ro, NAME 1-63 "
				 "of [A-Za-z0-9._-] not starting with '.'",
				 d);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strncmp(s->disks[j], d, n) == 0 &&
			    strcspn(s->disks[j], ":") == n) {
				snprintf(err, len, "disk %.*s given twice",
					 (int)n, d);
				return -EINVAL;
			}
	}
	if (s->n_disks && !m->cfg.vdiskd[0]) {
		snprintf(err, len,
			 "the VM has disks but no disk server is "
			 "configured (manager option vdiskd)");
		return -EINVAL;
	}
	if (s->anti_affinity[0] && !cell_name_valid(s->anti_affinity)) {
		snprintf(err, len, "invalid anti-affinity group '%.64s'",
			 s->anti_affinity);
		return -EINVAL;
	}
	return 0;
}

/* The *_DEFAULT values of a request become what they stand for. */
static int defaults(Cellmon__VmSpec *s)
{
	if (s->engine == CELLMON__ENGINE__ENGINE_DEFAULT)
		s->engine = CELLMON__ENGINE__ENGINE_NATIVE;
	if (s->placement == CELLMON__PLACEMENT__PLACEMENT_DEFAULT)
		s->placement = CELLMON__PLACEMENT__PLACEMENT_SPREAD;
	if (s->home == CELLMON__HOME_POLICY__HOME_DEFAULT)
		s->home = CELLMON__HOME_POLICY__HOME_INTERLEAVE;
	return 0;
}

/* ---- cellctl methods ---- */

static struct mgr_vm *vm_or_error(struct mgr *m, struct cell_rpc_call *call,
				  const char *name)
{
	struct mgr_vm *vm = vm_find(m, name);

	if (!vm)
		cell_rpc_reply_error(call, -ENOENT, "no vm '%.64s'", name);
	return vm;
}

/* A not-persisted VM carrying a plan, for --dry-run answers. */
static void reply_plan(struct mgr *m, struct cell_rpc_call *call,
		       const struct mgr_vm *base, const Cellmon__VmSpec *s,
		       const char **names)
{
	struct mgr_vm plan = {0};

	if (base)
		plan = *base;
	else
		plan.state = CELLMON__VM_STATE__VM_PENDING;
	plan.spec = (Cellmon__VmSpec *)s;
	snprintf(plan.name, sizeof(plan.name), "%s", s->name);
	plan.nvcpus = s->vcpus;
	plan.vcpus = calloc(s->vcpus, sizeof(*plan.vcpus));
	if (!plan.vcpus) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < s->vcpus; i++) {
		snprintf(plan.vcpus[i].node, sizeof(plan.vcpus[0].node), "%s",
			 names[i]);
		plan.vcpus[i].state = CELLMON__VCPU_STATE__VCPU_PLANNED;
	}
	snprintf(plan.reason, sizeof(plan.reason), "dry run: nothing done");
	reply_vm(m, call, &plan);
	free(plan.vcpus);
}

void mgr_vm_create(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	Cellmon__VmSpec *s =
		req->spec ? (Cellmon__VmSpec *)cellproto_copy(&req->spec->base)
			  : NULL;
	uint32_t out[VM_MAX_VCPUS];
	const char *names[VM_MAX_VCPUS];
	struct mgr_vm *vm = NULL;
	char why[600];
	int rc;

	if (!s) {
		cell_rpc_reply_error(call, -EINVAL, "no VM spec");
		return;
	}
	rc = defaults(s);
	if (rc)
		snprintf(why, sizeof(why), "out of memory");
	else
		rc = validate(m, s, why, sizeof(why));
	if (!rc && vm_find(m, s->name)) {
		snprintf(why, sizeof(why), "vm '%s' exists", s->name);
		rc = -EEXIST;
	}
	/* Refuse what even an empty cell could not hold. */
	if (!rc)
		rc = place(m, s, NULL, true, out, names, why, sizeof(why));
	if (!rc && req->dry_run)
		rc = place(m, s, NULL, false, out, names, why, sizeof(why));
	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", why);
		goto out;
	}
	if (req->dry_run) {
		reply_plan(m, call, NULL, s, names);
		goto out;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm || (rc = mgr_store_vm_next_id(m->store, &vm->id))) {
		cell_rpc_reply_error(call, vm ? rc : -ENOMEM,
				     "cannot record the VM");
		goto out;
	}
	snprintf(vm->name, sizeof(vm->name), "%s", s->name);
	vm->spec = s;
	s = NULL;
	vm->state = CELLMON__VM_STATE__VM_PENDING;
	vm->created_ms = vm->state_since_ms = cell_wall_ms();
	rc = vm_persist(m, vm);
	if (!rc)
		rc = vm_add(m, vm);
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot record the VM: %s",
				     strerror(-rc));
		goto out;
	}
	CELL_INFO(MOD,
		  "vm created name=%s id=%llu cell=%s vcpus=%u memory_mb=%llu "
		  "engine=%s image=%s placement=%s home=%s",
		  vm->name, (unsigned long long)vm->id, vm->spec->cell,
		  vm->spec->vcpus, (unsigned long long)vm->spec->memory_mb,
		  cellproto_name(&cellproto_engines, vm->spec->engine),
		  vm->spec->image,
		  cellproto_name(&cellproto_placements, vm->spec->placement),
		  cellproto_name(&cellproto_homes, vm->spec->home));
	reply_vm(m, call, vm);
	vm = NULL;
out:
	vm_free(vm);
	if (s)
		cellmon__vm_spec__free_unpacked(s, NULL);
}

static int start_run(struct mgr *m, struct mgr_vm *vm, const char **names)
{
	struct mgr_vcpu *v = calloc(vm->spec->vcpus, sizeof(*v));
	int rc;

	if (!v)
		return -ENOMEM;
	/* Every run writes its disks under a new epoch: the disk server
	 * then refuses writes from any earlier run still alive somewhere. */
	rc = mgr_store_counter_next(m->store, "next_write_epoch",
				    &vm->write_epoch);
	if (rc) {
		free(v);
		return rc;
	}
	for (uint32_t i = 0; i < vm->spec->vcpus; i++) {
		snprintf(v[i].node, sizeof(v[i].node), "%s", names[i]);
		v[i].state = CELLMON__VCPU_STATE__VCPU_PLACED;
	}
	free(vm->vcpus);
	vm->vcpus = v;
	vm->nvcpus = vm->spec->vcpus;
	vm->runs++;
	vm->region = vm->id << 16 | (vm->runs & 0xffff);
	vm->reason[0] = '\0';
	stats_free(vm);
	vm->busy = true;
	set_state(m, vm, CELLMON__VM_STATE__VM_STARTING, NULL);
	return fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_PREPARE,
		       build_start, prepare_done);
}

/* Starts the VM again after a node failure, placed on what is up now. */
static void restart(struct mgr *m, struct mgr_vm *vm)
{
	uint32_t out[VM_MAX_VCPUS];
	const char *names[VM_MAX_VCPUS];
	char why[600], reason[700];
	int rc;

	vm->restart_pending = false;
	vm->restarts++;
	rc = place_hint(m, vm->spec, vm, false, false, out, names, why,
			sizeof(why));
	if (!rc)
		rc = start_run(m, vm, names);
	if (rc) {
		vm->busy = false;
		snprintf(reason, sizeof(reason), "restart %u failed: %s",
			 vm->restarts, rc == -ENOSPC ? why : strerror(-rc));
		set_state(m, vm, CELLMON__VM_STATE__VM_FAILED, reason);
		return;
	}
	CELL_WARN(MOD, "vm restarted name=%s restart=%u of %u run=%u", vm->name,
		  vm->restarts, max_restarts(vm), vm->runs);
}

void mgr_vm_start(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);
	uint32_t out[VM_MAX_VCPUS];
	const char *names[VM_MAX_VCPUS];
	char why[600];
	int rc;

	if (!vm)
		return;
	if (vm_active(vm) || vm->busy) {
		cell_rpc_reply_error(call, -EBUSY, "vm %s is %s", vm->name,
				     state_name(vm->state));
		return;
	}
	rc = check_writers(m, vm, why, sizeof(why));
	if (!rc)
		rc = place(m, vm->spec, vm, false, out, names, why,
			   sizeof(why));
	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", why);
		return;
	}
	if (req->dry_run) {
		reply_plan(m, call, vm, vm->spec, names);
		return;
	}
	vm->waiter = call;
	vm->restarts = 0; /* an operator's start begins a new count */
	rc = start_run(m, vm, names);
	if (rc) {
		vm->busy = false;
		snprintf(vm->reason, sizeof(vm->reason), "cannot start: %s",
			 strerror(-rc));
		set_state(m, vm, CELLMON__VM_STATE__VM_FAILED, NULL);
		answer_waiter(m, vm, rc);
	}
}

void mgr_vm_stop(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (!vm)
		return;
	if (vm->state != CELLMON__VM_STATE__VM_RUNNING || vm->busy ||
	    vm->waiter) {
		if (!vm_active(vm))
			reply_vm(m, call, vm); /* already stopped: done */
		else
			cell_rpc_reply_error(call, -EBUSY,
					     "vm %s is %s; try again or use "
					     "vm kill",
					     vm->name, state_name(vm->state));
		return;
	}
	vm->waiter = call;
	set_state(m, vm, CELLMON__VM_STATE__VM_STOPPING, NULL);
	if (fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STOP, build_target,
		    NULL))
		finish(m, vm, CELLMON__VM_STATE__VM_FAILED, "cannot send stop");
	evaluate(m, vm);
}

void mgr_vm_kill(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);
	struct cell_rpc_call *old;

	if (!vm)
		return;
	if (!vm_active(vm) && !vm->busy) {
		reply_vm(m, call, vm);
		return;
	}
	/* A start or stop waiting for an answer gets one now. */
	old = vm->waiter;
	vm->waiter = NULL;
	if (old)
		cell_rpc_reply_error(old, -ECANCELED, "vm %s was killed",
				     vm->name);
	vm->waiter = call;
	finish(m, vm, CELLMON__VM_STATE__VM_STOPPED, "killed by request");
}

void mgr_vm_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);
	int rc;

	if (!vm)
		return;
	if (vm_active(vm) || vm->busy) {
		cell_rpc_reply_error(call, -EBUSY,
				     "vm %s is %s; stop or kill it first",
				     vm->name, state_name(vm->state));
		return;
	}
	rc = mgr_store_vm_delete(m->store, vm->id);
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot delete vm %s: %s",
				     vm->name, strerror(-rc));
		return;
	}
	CELL_INFO(MOD, "vm deleted name=%s id=%llu", vm->name,
		  (unsigned long long)vm->id);
	vm_remove(m, vm);
	reply_vm(m, call, NULL);
}

void mgr_vm_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (vm)
		reply_vm(m, call, vm);
}

void mgr_vm_list(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	Cellmon__VmListReply r = CELLMON__VM_LIST_REPLY__INIT;
	Cellmon__VmInfo *infos = calloc(m->nvms + 1, sizeof(*infos));
	Cellmon__VmInfo **ptrs = calloc(m->nvms + 1, sizeof(*ptrs));
	size_t i = 0;
	int rc = infos && ptrs ? 0 : -ENOMEM;

	(void)msg;
	for (i = 0; !rc && i < m->nvms; i++) {
		rc = info_fill(m, m->vms[i], &infos[i]);
		ptrs[i] = &infos[i];
	}
	if (rc) {
		cell_rpc_reply_error(call, rc, "out of memory");
	} else {
		r.n_vms = m->nvms;
		r.vms = ptrs;
		cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_LIST_REPLY,
			       &r.base);
	}
	while (infos && i-- > 0)
		info_free(&infos[i]);
	free(infos);
	free(ptrs);
}

static int by_vcpu(const void *a, const void *b)
{
	const Cellmon__VcpuConsole *x = *(Cellmon__VcpuConsole *const *)a;
	const Cellmon__VcpuConsole *y = *(Cellmon__VcpuConsole *const *)b;

	return x->vcpu < y->vcpu ? -1 : x->vcpu > y->vcpu;
}

static void console_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	struct cell_rpc_call *call = f->call;
	Cellmon__VmConsoleReply r = CELLMON__VM_CONSOLE_REPLY__INIT;
	Cellmon__VmConsoleReply **parts = calloc(f->n + 1, sizeof(*parts));
	size_t total = 0, k = 0;

	(void)m;
	(void)vm;
	for (size_t i = 0; parts && i < f->n; i++) {
		parts[i] = (Cellmon__VmConsoleReply *)f->res[i].result;
		total += parts[i] ? parts[i]->n_consoles : 0;
	}
	r.consoles = calloc(total + f->n + 1, sizeof(*r.consoles));
	for (size_t i = 0; r.consoles && i < f->n; i++)
		for (size_t j = 0; parts[i] && j < parts[i]->n_consoles; j++)
			r.consoles[k++] = parts[i]->consoles[j];
	if (r.consoles)
		qsort(r.consoles, k, sizeof(*r.consoles), by_vcpu);
	r.n_consoles = k;
	if (!call)
		;
	else if (!parts || !r.consoles)
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
	else if (!k && fan_error(f))
		cell_rpc_reply_error(call, fan_error(f)->status, "%s: %s",
				     fan_error(f)->node, fan_error(f)->msg);
	else
		cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_CONSOLE_REPLY,
			       &r.base);
	free(parts); /* the parts are the fan's results, freed with it */
	free(r.consoles);
}

void mgr_vm_console(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (!vm)
		return;
	if (!vm->nvcpus) {
		cell_rpc_reply_error(call, -ENOENT,
				     "vm %s has never run: no console",
				     vm->name);
		return;
	}
	if (fan_out_call(m, vm, CELLMON__COMMAND_KIND__CMD_VM_CONSOLE,
			 build_target, console_done, call))
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
}

static void reply_stats(struct cell_rpc_call *call, const struct mgr_vm *vm,
			Cellmon__VmNodeStats **s, size_t n)
{
	Cellmon__VmStatsReply r = CELLMON__VM_STATS_REPLY__INIT;

	r.name = (char *)vm->name;
	r.nodes = s;
	r.n_nodes = n;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_STATS_REPLY, &r.base);
}

static void live_stats_done(struct mgr *m, struct mgr_vm *vm, struct fan *f)
{
	struct cell_rpc_call *call = f->call;
	Cellmon__VmNodeStats **s = calloc(f->n + 1, sizeof(*s));
	Cellmon__VmNodeStats *errs = calloc(f->n + 1, sizeof(*errs));

	(void)m;
	for (size_t i = 0; s && errs && i < f->n; i++) {
		s[i] = (Cellmon__VmNodeStats *)f->res[i].result;
		if (!s[i]) {
			cellmon__vm_node_stats__init(&errs[i]);
			errs[i].node = f->res[i].node;
			errs[i].error = f->res[i].msg;
		}
	}
	if (call && (!vm || !s || !errs))
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
	else if (call) {
		Cellmon__VmNodeStats **all = calloc(f->n + 1, sizeof(*all));

		for (size_t i = 0; all && i < f->n; i++)
			all[i] = s[i] ? s[i] : &errs[i];
		if (all)
			reply_stats(call, vm, all, f->n);
		else
			cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		free(all);
	}
	free(s); /* the stats are the fan's results, freed with it */
	free(errs);
}

void mgr_vm_stats(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (!vm)
		return;
	if (!vm_active(vm) || vm->state == CELLMON__VM_STATE__VM_STARTING) {
		if (!vm->nvcpus)
			cell_rpc_reply_error(call, -ENOENT,
					     "vm %s has never run: no stats",
					     vm->name);
		else
			reply_stats(call, vm, vm->stats, vm->nstats);
		return;
	}
	if (fan_out_call(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STATS,
			 build_target, live_stats_done, call))
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
}

/* ---- agents' reports ---- */

static void orphan_released(int status, const ProtobufCMessage *msg,
			    const char *errmsg, void *arg)
{
	(void)msg;
	(void)arg;
	if (status)
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "orphan release failed: %s",
			    errmsg);
}

/* Releases a region no active VM owns on node n. */
static void release_orphan(struct mgr *m, struct mgr_node *n, uint64_t region)
{
	Cellmon__VmTarget t = CELLMON__VM_TARGET__INIT;
	Cellmon__Command cmd = CELLMON__COMMAND__INIT;

	t.name = "";
	t.region = region;
	cmd.args_case = CELLMON__COMMAND__ARGS_TARGET;
	cmd.target = &t;
	cmd.incarnation = n->incarnation;
	cmd.kind = CELLMON__COMMAND_KIND__CMD_VM_RELEASE;
	CELL_LOG_RL(CELL_LOG_WARN, MOD,
		    "node %s runs vCPUs of region %llu, which no active VM "
		    "owns; releasing it",
		    n->id, (unsigned long long)region);
	mgr_agent_command(m, n, &cmd.base, orphan_released, NULL);
}

void mgr_vm_heartbeat(struct mgr *m, struct mgr_node *n,
		      Cellmon__VcpuStatus *const *v, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct mgr_vm *vm = NULL;
		struct mgr_vcpu *c;

		for (size_t j = 0; j < m->nvms && !vm; j++)
			if (m->vms[j]->region == v[i]->region &&
			    vm_active(m->vms[j]))
				vm = m->vms[j];
		if (!vm) {
			bool busy = false;

			for (size_t j = 0; j < m->nvms; j++)
				busy |= m->vms[j]->region == v[i]->region &&
					m->vms[j]->busy;
			if (!busy)
				release_orphan(m, n, v[i]->region);
			continue;
		}
		if (v[i]->vcpu >= vm->nvcpus ||
		    strcmp(vm->vcpus[v[i]->vcpu].node, n->id) != 0)
			continue;
		if (!cellproto_known(&cellproto_vcpu_states, v[i]->state)) {
			CELL_LOG_RL(CELL_LOG_WARN, MOD,
				    "node %s reports vcpu %u of vm %s in state "
				    "%d, which this manager does not know; "
				    "ignored",
				    n->id, v[i]->vcpu, vm->name,
				    (int)v[i]->state);
			continue;
		}
		c = &vm->vcpus[v[i]->vcpu];
		c->state = v[i]->state;
		c->exit_code = v[i]->exit_code;
		c->signal = v[i]->signal;
		c->pid = v[i]->pid;
	}
	for (size_t j = 0; j < m->nvms; j++)
		evaluate(m, m->vms[j]);
}

void mgr_vm_node_lost(struct mgr *m, struct mgr_node *n, const char *why)
{
	char reason[300];

	for (size_t j = 0; j < m->nvms; j++) {
		struct mgr_vm *vm = m->vms[j];
		bool dep = false;

		for (uint32_t i = 0; i < vm->nvcpus; i++)
			if (strcmp(vm->vcpus[i].node, n->id) == 0) {
				dep = true;
				if (vm->vcpus[i].state !=
				    CELLMON__VCPU_STATE__VCPU_EXITED)
					vm->vcpus[i].state =
						CELLMON__VCPU_STATE__VCPU_LOST;
			}
		if (!dep || !vm_active(vm))
			continue;
		snprintf(reason, sizeof(reason), "node %s %s", n->id, why);
		fail_node(m, vm, reason);
	}
}

int mgr_node_dsm_id(struct mgr *m, const struct mgr_node *n)
{
	size_t count = mgr_members_count(m->members);

	for (size_t i = 0; i < count && i < DSM_MAX_NODES; i++)
		if (mgr_members_at(m->members, i) == n)
			return (int)i;
	return -1;
}

size_t mgr_dsm_fences(struct mgr *m, const struct mgr_node *n,
		      Cellmon__DsmFence *f, Cellmon__DsmFence **fp)
{
	size_t count = mgr_members_count(m->members), k = 0;

	for (size_t i = 0; i < count && i < DSM_MAX_NODES; i++) {
		const struct mgr_node *p = mgr_members_at(m->members, i);

		if (p == n || !p->incarnation)
			continue;
		cellmon__dsm_fence__init(&f[k]);
		f[k].dsm_id = (uint32_t)i;
		f[k].epoch =
			(uint32_t)p->incarnation + (p->state == MGR_NODE_DOWN);
		f[k].node = (char *)p->id;
		f[k].down = p->state == MGR_NODE_DOWN;
		fp[k] = &f[k];
		k++;
	}
	return k;
}

/* ---- restore ---- */

/* The legacy string field `tag` of a spec stored before protocol 2, as
 * one of e's values; 0 when absent, -EINVAL when it names no value. */
static int legacy_field(const Cellmon__VmSpec *s, uint32_t tag,
			const struct cellproto_enum *e, int *v)
{
	for (unsigned i = 0; i < s->base.n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *u =
			&s->base.unknown_fields[i];
		char name[40];

		if (u->tag != tag ||
		    u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
			continue;
		if (u->len >= sizeof(name))
			return -EINVAL;
		memcpy(name, u->data, u->len);
		name[u->len] = '\0';
		return cellproto_parse(e, name, v);
	}
	return 0;
}

/* A spec stored by a manager of protocol 1 held engine (5), placement
 * (9) and home (11) as strings; they come back as unknown fields and are
 * turned into the enums here, so an upgrade loses none of them. 0, or
 * -EINVAL when one names nothing this manager knows. */
static int spec_upgrade(Cellmon__VmSpec *s)
{
	int e = s->engine, p = s->placement, h = s->home;

	if (legacy_field(s, 5, &cellproto_engines, &e) ||
	    legacy_field(s, 9, &cellproto_placements, &p) ||
	    legacy_field(s, 11, &cellproto_homes, &h))
		return -EINVAL;
	s->engine = (Cellmon__Engine)e;
	s->placement = (Cellmon__Placement)p;
	s->home = (Cellmon__HomePolicy)h;
	/* Not packed again: the next save holds the enums alone. The
	 * message came from unpack with the default allocator. */
	for (unsigned i = 0; i < s->base.n_unknown_fields; i++)
		free(s->base.unknown_fields[i].data);
	free(s->base.unknown_fields);
	s->base.unknown_fields = NULL;
	s->base.n_unknown_fields = 0;
	return defaults(s);
}

static int restore_vm(const struct mgr_vm_row *row, void *arg)
{
	struct mgr *m = arg;
	struct mgr_vm *vm = calloc(1, sizeof(*vm));
	const char *p = row->placement;

	if (!vm)
		return -ENOMEM;
	vm->spec = cellmon__vm_spec__unpack(NULL, row->spec_len, row->spec);
	if (vm->spec && spec_upgrade(vm->spec)) {
		CELL_ERROR(MOD,
			   "stored vm %s names an engine, placement or home "
			   "this manager does not know; skipped",
			   row->name);
		cellmon__vm_spec__free_unpacked(vm->spec, NULL);
		vm->spec = NULL;
		free(vm);
		return 0;
	}
	if (!vm->spec) {
		CELL_ERROR(MOD, "stored vm %s has an unreadable spec; skipped",
			   row->name);
		free(vm);
		return 0;
	}
	vm->id = row->id;
	snprintf(vm->name, sizeof(vm->name), "%s", row->name);
	vm->state = (Cellmon__VmState)row->state;
	snprintf(vm->reason, sizeof(vm->reason), "%s", row->reason);
	vm->runs = row->runs;
	vm->region = row->region;
	vm->created_ms = row->created_ms;
	vm->state_since_ms = row->state_since_ms;
	vm->restarts = row->restarts;
	if (*p) {
		vm->vcpus = calloc(vm->spec->vcpus, sizeof(*vm->vcpus));
		for (uint32_t i = 0; vm->vcpus && *p && i < vm->spec->vcpus;
		     i++) {
			size_t len = strcspn(p, ",");

			snprintf(vm->vcpus[i].node, sizeof(vm->vcpus[0].node),
				 "%.*s", (int)len, p);
			vm->vcpus[i].state = CELLMON__VCPU_STATE__VCPU_UNKNOWN;
			vm->nvcpus = i + 1;
			p += len + (p[len] == ',');
		}
	}
	if (vm_add(m, vm)) {
		vm_free(vm);
		return -ENOMEM;
	}
	/* A start cut short by the restart cannot be finished. */
	if (vm->state == CELLMON__VM_STATE__VM_STARTING)
		set_state(m, vm, CELLMON__VM_STATE__VM_FAILED,
			  "the manager restarted while the VM was starting");
	return 0;
}

int mgr_vm_restore(struct mgr *m)
{
	return mgr_store_vms_load(m->store, restore_vm, m);
}

void mgr_vm_free_all(struct mgr *m)
{
	while (m->nvms)
		vm_remove(m, m->vms[m->nvms - 1]);
	free(m->vms);
	m->vms = NULL;
}
