/*
 * VMs in the manager: records (persisted in the store before any change
 * is acknowledged), placement glue (the pure placement is placement.c),
 * and the state machine that drives agents. cellctl's methods are
 * mgr_vm_ctl.c's, the spec rules mgr_vm_spec.c's; commands go out through
 * mgr_fanout.c.
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
 *   node down or      failed ("node X is down"), its other nodes released,
 *   new incarnation,  then started again on the nodes left (a new run),
 *   a fenced or lost  up to the spec's max_restarts; a guest's own
 *   vCPU              failure is never restarted
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

#define MOD "mgr"

/* ---- records ---- */

struct mgr_vm *mgr_vm_find(struct mgr *m, const char *name)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (strcmp(m->vms[i]->name, name) == 0)
			return m->vms[i];
	return NULL;
}

struct mgr_vm *mgr_vm_by_id(struct mgr *m, uint64_t id)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (m->vms[i]->id == id)
			return m->vms[i];
	return NULL;
}

static void stats_free(struct mgr_vm *vm)
{
	for (size_t i = 0; i < vm->nstats; i++)
		cellmon__vm_node_stats__free_unpacked(vm->stats[i], NULL);
	free(vm->stats);
	vm->stats = NULL;
	vm->nstats = 0;
}

void mgr_vm_free(struct mgr_vm *vm)
{
	if (!vm)
		return;
	if (vm->spec)
		cellmon__vm_spec__free_unpacked(vm->spec, NULL);
	stats_free(vm);
	mgr_vm_pages_free(vm);
	free(vm->vcpus);
	free(vm);
}

int mgr_vm_add(struct mgr *m, struct mgr_vm *vm)
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

void mgr_vm_remove(struct mgr *m, struct mgr_vm *vm)
{
	for (size_t i = 0; i < m->nvms; i++)
		if (m->vms[i] == vm) {
			memmove(&m->vms[i], &m->vms[i + 1],
				(m->nvms - i - 1) * sizeof(*m->vms));
			m->nvms--;
			break;
		}
	mgr_vm_free(vm);
}

/* Writes the record; logs and returns -errno on failure. */
int mgr_vm_persist(struct mgr *m, const struct mgr_vm *vm)
{
	size_t len = cellmon__vm_spec__get_packed_size(vm->spec), off = 0;
	uint8_t *spec = malloc(len ? len : 1);
	char *placement = calloc(vm->nvcpus + vm->nmem + 2, CELL_NAME_MAX + 2);
	struct mgr_vm_row row;
	int rc = -ENOMEM;

	if (spec && placement) {
		cellmon__vm_spec__pack(vm->spec, spec);
		for (uint32_t i = 0; i < vm->nvcpus; i++)
			off += (size_t)sprintf(placement + off, "%s%s",
					       i ? "," : "", vm->vcpus[i].node);
		/* then ";" and the memory nodes, comma-separated */
		for (uint32_t i = 0; i < vm->nmem; i++)
			off += (size_t)sprintf(placement + off, "%s%s",
					       i ? "," : ";", vm->mem_nodes[i]);
		row = (struct mgr_vm_row){
			.id = vm->id,
			.name = vm->name,
			.spec = spec,
			.spec_len = len,
			.state = vm->state,
			.reason = vm->reason,
			.runs = vm->runs,
			.region = vm->region,
			.placement = placement,
			.created_ms = vm->created_ms,
			.state_since_ms = vm->state_since_ms,
			.restarts = vm->restarts,
		};
		rc = mgr_store_vm_save(m->store, &row);
	}
	if (rc)
		CELL_ERROR(MOD, "cannot persist vm %s: %s", vm->name,
			   strerror(-rc));
	free(spec);
	free(placement);
	return rc;
}

const char *mgr_vm_state_name(Cellmon__VmState s)
{
	return cellproto_name(&cellproto_vm_states, s);
}

void mgr_vm_set_state(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		      const char *reason)
{
	Cellmon__VmState old = vm->state;

	vm->state = s;
	vm->state_since_ms = cell_wall_ms();
	if (reason)
		snprintf(vm->reason, sizeof(vm->reason), "%s", reason);
	mgr_vm_persist(m, vm);
	mgr_event(m, "vm-state", vm->name, "%s (was %s)%s%s",
		  mgr_vm_state_name(s), mgr_vm_state_name(old),
		  vm->reason[0] ? ": " : "", vm->reason);
	if (s == CELLMON__VM_STATE__VM_FAILED)
		CELL_WARN(MOD, "vm failed name=%s was=%s reason=\"%s\"",
			  vm->name, mgr_vm_state_name(old), vm->reason);
	else
		CELL_INFO(MOD, "vm %s name=%s was=%s%s%s%s",
			  mgr_vm_state_name(s), vm->name,
			  mgr_vm_state_name(old), reason ? " reason=\"" : "",
			  reason ? reason : "", reason ? "\"" : "");
}

/* ---- replies ---- */

/* A VmInfo pointing into vm; free with mgr_vm_info_free(). */
int mgr_vm_info_fill(const struct mgr *m, const struct mgr_vm *vm,
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
	if (vm->spec->engine == CELLMON__ENGINE__ENGINE_QEMU && vm->nvcpus) {
		const struct mgr_node *n =
			mgr_members_find(m->members, vm->vcpus[0].node);

		vi->accel = n ? (char *)n->qemu_accel : "";
	}
	vi->vcpus = calloc(vm->nvcpus + 1, sizeof(*vi->vcpus));
	vi->deps = calloc(vm->nvcpus + vm->nmem + 1, sizeof(*vi->deps));
	if (!vi->vcpus || !vi->deps)
		return -ENOMEM;
	vi->n_deps = mgr_vm_nodes(vm, (const char **)vi->deps);
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

void mgr_vm_info_free(Cellmon__VmInfo *vi)
{
	for (size_t i = 0; vi->vcpus && i < vi->n_vcpus; i++)
		free(vi->vcpus[i]);
	free(vi->vcpus);
	free(vi->deps);
}

void mgr_vm_reply(struct mgr *m, struct cell_rpc_call *call,
		  const struct mgr_vm *vm)
{
	Cellmon__VmReply r = CELLMON__VM_REPLY__INIT;
	Cellmon__VmInfo vi;

	if (vm) {
		if (mgr_vm_info_fill(m, vm, &vi)) {
			mgr_vm_info_free(&vi);
			cell_rpc_reply_error(call, -ENOMEM, "out of memory");
			return;
		}
		r.vm = &vi;
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_REPLY, &r.base);
	if (vm)
		mgr_vm_info_free(&vi);
}

/* Answers the cellctl call waiting on vm, if any: with the VM, or with
 * the error when rc is not 0. */
void mgr_vm_answer_waiter(struct mgr *m, struct mgr_vm *vm, int rc)
{
	struct cell_rpc_call *call = vm->waiter;

	if (!call)
		return;
	vm->waiter = NULL;
	if (rc)
		cell_rpc_reply_error(call, rc, "vm %s: %s", vm->name,
				     vm->reason);
	else
		mgr_vm_reply(m, call, vm);
}

/* ---- commands to the VM's nodes ---- */

/* Sends kind to every node of vm, the argument built by build(vm);
 * done finds vm again by its id (mgr_fanout.c). */
static int vm_fan_out(struct mgr *m, struct mgr_vm *vm,
		      Cellmon__CommandKind kind, mgr_fan_args_fn build,
		      mgr_fan_done_fn done, struct cell_rpc_call *call)
{
	const char *nodes[MGR_VM_MAX_NODES];
	size_t n = mgr_vm_nodes(vm, nodes);

	return mgr_fan_out(m, nodes, n, kind, build, vm, vm->id, done, call);
}

int mgr_vm_build_target(struct mgr *m, void *arg, const char *node,
			Cellmon__Command *cmd, void **own)
{
	struct mgr_vm *vm = arg;
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

static void forget_done(struct mgr *m, struct mgr_fan *f)
{
	(void)m;
	for (size_t i = 0; i < f->n; i++)
		if (f->res[i].status)
			CELL_WARN(MOD,
				  "vm id %llu: node %s did not remove its "
				  "files: %s (it will when it registers "
				  "again)",
				  (unsigned long long)f->tag, f->res[i].node,
				  f->res[i].msg);
}

int mgr_vm_forget(struct mgr *m, struct mgr_vm *vm)
{
	size_t n = mgr_members_count(m->members), k = 0;
	const char **nodes = calloc(n + 1, sizeof(*nodes));
	int rc;

	if (!nodes)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct mgr_node *node = mgr_members_at(m->members, i);

		if (node->state == MGR_NODE_UP)
			nodes[k++] = node->id;
	}
	/* the target's region names the VM (its id in the high bits); one
	 * that never ran has no files anywhere */
	rc = k && vm->region ? mgr_fan_out(m, nodes, k,
					   CELLMON__COMMAND_KIND__CMD_VM_FORGET,
					   mgr_vm_build_target, vm, vm->id,
					   forget_done, NULL)
			     : 0;
	free(nodes);
	return rc;
}

int mgr_vm_command(struct mgr *m, struct mgr_vm *vm, Cellmon__CommandKind kind,
		   mgr_fan_done_fn done, struct cell_rpc_call *call)
{
	return vm_fan_out(m, vm, kind, mgr_vm_build_target, done, call);
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
int mgr_vm_build_start(struct mgr *m, void *arg, const char *node,
		       Cellmon__Command *cmd, void **own)
{
	struct mgr_vm *vm = arg;
	const char *nodes[MGR_VM_MAX_NODES];
	size_t n = mgr_vm_nodes(vm, nodes);
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
		if (strcmp(vm->vcpus[i].node, node) == 0 ||
		    strcmp(vm->migrate_to, node) == 0) /* all, to migrate */
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
	st->home_dsm_id = a->mem[0].dsm_id; /* vCPU 0's node */
	for (size_t j = 0; vm->spec->home_node[0] && j < n; j++)
		if (strcmp(nodes[j], vm->spec->home_node) == 0)
			st->home_dsm_id = a->mem[j].dsm_id;
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

/* Restarts vm once every node of its last run released it or is down;
 * until then it says which it waits for. */
static void restart_when_released(struct mgr *m, struct mgr_vm *vm)
{
	char names[400] = "";
	size_t off = 0;

	if (!vm->restart_pending || vm->busy)
		return;
	if (!vm->unreleased) {
		restart(m, vm);
		return;
	}
	for (size_t i = 0; i < mgr_members_count(m->members); i++) {
		struct mgr_node *n = mgr_members_at(m->members, i);
		int id = mgr_node_dsm_id(m, n);

		if (id >= 0 && (vm->unreleased & (1ull << id)) &&
		    off < sizeof(names))
			off += (size_t)snprintf(names + off,
						sizeof(names) - off, "%s%s",
						off ? ", " : "", n->id);
	}
	CELL_WARN(MOD,
		  "vm %s: restart waits until %s released run %u or is "
		  "declared down",
		  vm->name, names, vm->runs);
}

static void release_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	const struct mgr_fan_res *e = mgr_fan_error(f);

	if (e && e->status != -ENOTCONN)
		CELL_WARN(MOD, "vm release incomplete node=%s: %s", e->node,
			  e->msg);
	if (!vm)
		return;
	vm->unreleased = 0;
	for (size_t i = 0; i < f->n; i++) {
		struct mgr_node *n =
			mgr_members_find(m->members, f->res[i].node);
		int id = n ? mgr_node_dsm_id(m, n) : -1;

		/* a node not released may still run the vCPUs, unless it
		 * is down (and so fenced) */
		if (f->res[i].status && id >= 0 && n->state != MGR_NODE_DOWN)
			vm->unreleased |= 1ull << id;
	}
	vm->busy = false;
	if (vm->state != CELLMON__VM_STATE__VM_FAILED)
		mgr_vm_answer_waiter(m, vm, 0);
	else
		mgr_vm_answer_waiter(m, vm,
				     vm->start_err ? vm->start_err : -EIO);
	vm->start_err = 0;
	if (vm->deleter) {
		struct cell_rpc_call *call = vm->deleter;

		vm->deleter = NULL;
		if (!vm->restart_pending) {
			mgr_vm_delete_now(m, vm, call); /* frees vm */
			return;
		}
		cell_rpc_reply_error(
			call, -EBUSY,
			"vm %s is being restarted; stop or kill it "
			"first",
			vm->name);
	}
	restart_when_released(m, vm);
}

static void stats_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	if (!vm)
		return;
	stats_free(vm);
	vm->stats = calloc(f->n + 1, sizeof(*vm->stats));
	for (size_t i = 0; vm->stats && i < f->n; i++)
		if (f->res[i].result) {
			vm->stats[vm->nstats++] = (void *)f->res[i].result;
			f->res[i].result = NULL; /* now the VM's */
		}
	if (vm_fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_RELEASE,
		       mgr_vm_build_target, release_done, NULL))
		release_done(m, f); /* f is this VM's too */
}

/* Ends the run in state s: snapshot the counters, release everywhere,
 * then answer the waiting call. */
void mgr_vm_finish(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		   const char *reason)
{
	mgr_vm_set_state(m, vm, s, reason);
	vm->busy = true;
	if (vm_fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STATS,
		       mgr_vm_build_target, stats_done, NULL)) {
		vm->busy = false;
		mgr_vm_answer_waiter(
			m, vm, s == CELLMON__VM_STATE__VM_FAILED ? -EIO : 0);
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
		mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_STOPPED, reason);
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
	mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_FAILED, reason);
}

/* Decides what the vCPU states mean for a running or stopping VM. */
void mgr_vm_evaluate(struct mgr *m, struct mgr_vm *vm)
{
	char why[512];
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
				 "vcpu %u on %s exited with status %d%s%s", i,
				 c->node, c->exit_code,
				 c->detail[0] ? ": " : "", c->detail);
			break;
		case CELLMON__VCPU_STATE__VCPU_KILLED:
			snprintf(why, sizeof(why),
				 "vcpu %u on %s was killed by signal %d "
				 "(%s)%s%s",
				 i, c->node, c->signal, strsignal(c->signal),
				 c->detail[0] ? ": " : "", c->detail);
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
			mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_FAILED, why);
			return;
		}
	}
	if (ended < vm->nvcpus)
		return;
	if (vm->state == CELLMON__VM_STATE__VM_STOPPING)
		mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_STOPPED,
			      "stopped by request");
	else
		mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_STOPPED,
			      "every vCPU exited with status 0");
}

/* ---- starting ---- */

static void fail_start(struct mgr *m, struct mgr_vm *vm, const char *what,
		       const struct mgr_fan_res *e)
{
	char why[400];

	snprintf(why, sizeof(why), "%s on %s: %s", what, e->node, e->msg);
	vm->start_err = e->status;
	vm->busy = false;
	mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_FAILED, why);
}

/* The pids a node's RUN ack reports for the vCPUs placed on it, so that
 * the answer to `vm start` shows them (heartbeats keep them after). */
static void run_pids(struct mgr_vm *vm, const struct mgr_fan_res *r)
{
	const Cellmon__VmRunReply *run = (const void *)r->result;

	for (size_t i = 0; run && i < run->n_vcpus; i++) {
		const Cellmon__VcpuStatus *s = run->vcpus[i];

		if (s->region == vm->region && s->vcpu < vm->nvcpus &&
		    strcmp(vm->vcpus[s->vcpu].node, r->node) == 0)
			vm->vcpus[s->vcpu].pid = s->pid;
	}
}

static void run_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	const struct mgr_fan_res *e = mgr_fan_error(f);

	if (!vm || vm->state != CELLMON__VM_STATE__VM_STARTING)
		return;
	if (e) {
		fail_start(m, vm, "start", e);
		return;
	}
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == CELLMON__VCPU_STATE__VCPU_PLACED)
			vm->vcpus[i].state = CELLMON__VCPU_STATE__VCPU_RUNNING;
	for (size_t i = 0; i < f->n; i++)
		run_pids(vm, &f->res[i]);
	vm->busy = false;
	mgr_vm_set_state(m, vm, CELLMON__VM_STATE__VM_RUNNING, "");
	mgr_vm_answer_waiter(m, vm, 0);
	mgr_vm_evaluate(m,
			vm); /* vCPUs that ended before every node answered */
}

static void prepare_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	const struct mgr_fan_res *e = mgr_fan_error(f);

	if (!vm || vm->state != CELLMON__VM_STATE__VM_STARTING)
		return;
	if (e) {
		fail_start(m, vm, "prepare", e);
		return;
	}
	if (vm_fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_RUN,
		       mgr_vm_build_start, run_done, NULL)) {
		struct mgr_fan_res oom = {.status = -ENOMEM,
					  .msg = "out of memory"};

		snprintf(oom.node, sizeof(oom.node), "manager");
		fail_start(m, vm, "start", &oom);
	}
}

/* ---- validation ---- */

/* ---- cellctl methods ---- */

/* "run 2: vCPUs on node1,node2; memory on node1,node2,node3" */
static void placed_event(struct mgr *m, const struct mgr_vm *vm)
{
	char text[512];
	size_t off = 0;

	off += (size_t)snprintf(text, sizeof(text), "run %u: vCPUs on",
				vm->runs);
	for (size_t i = 0; i < vm->nvcpus && off < sizeof(text); i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%s",
					i ? "," : " ", vm->vcpus[i].node);
	if (vm->nmem && off < sizeof(text))
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"; memory on");
	for (size_t i = 0; i < vm->nmem && off < sizeof(text); i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "%s%s",
					i ? "," : " ", vm->mem_nodes[i]);
	mgr_event(m, "vm-placed", vm->name, "%s", text);
}

int mgr_vm_start_run(struct mgr *m, struct mgr_vm *vm, const char **names)
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
	mgr_vm_choose_mem_nodes(m, vm);
	vm->runs++;
	vm->region = vm->id << 16 | (vm->runs & 0xffff);
	vm->reason[0] = '\0';
	stats_free(vm);
	vm->busy = true;
	placed_event(m, vm);
	mgr_vm_set_state(m, vm, CELLMON__VM_STATE__VM_STARTING, NULL);
	return vm_fan_out(m, vm, CELLMON__COMMAND_KIND__CMD_VM_PREPARE,
			  mgr_vm_build_start, prepare_done, NULL);
}

/* Starts the VM again after a node failure, placed on what is up now. */
static void restart(struct mgr *m, struct mgr_vm *vm)
{
	const char *names[VM_MAX_VCPUS];
	char why[600], reason[700];
	int rc;

	vm->restart_pending = false;
	vm->restarts++;
	rc = mgr_vm_place_restart(m, vm, names, why, sizeof(why));
	if (!rc)
		rc = mgr_vm_start_run(m, vm, names);
	if (rc) {
		vm->busy = false;
		snprintf(reason, sizeof(reason), "restart %u failed: %s",
			 vm->restarts, rc == -ENOSPC ? why : strerror(-rc));
		mgr_vm_set_state(m, vm, CELLMON__VM_STATE__VM_FAILED, reason);
		return;
	}
	CELL_WARN(MOD, "vm restarted name=%s restart=%u of %u run=%u", vm->name,
		  vm->restarts, max_restarts(vm), vm->runs);
	mgr_event(m, "vm-restart", vm->name, "restart %u of %u, run %u",
		  vm->restarts, max_restarts(vm), vm->runs);
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
	m->send_command(m, n, &cmd.base, orphan_released, NULL);
}

void mgr_vm_tick(struct mgr *m)
{
	mgr_vm_pages_tick(m, cell_now_ms());
	for (size_t j = 0; j < m->nvms; j++) {
		struct mgr_vm *vm = m->vms[j];
		uint64_t before = vm->unreleased;

		if (!vm->unreleased || !vm->restart_pending || vm->busy)
			continue;
		for (size_t i = 0; i < mgr_members_count(m->members); i++) {
			struct mgr_node *n = mgr_members_at(m->members, i);
			int id = mgr_node_dsm_id(m, n);

			if (id >= 0 && (vm->unreleased & (1ull << id)) &&
			    mgr_node_settled(m, n))
				vm->unreleased &= ~(1ull << id);
		}
		if (vm->unreleased != before)
			restart_when_released(m, vm);
	}
}

/* Node n, which had not released vm's last run, reports its vCPUs: if
 * none is of that run's region any more, the run is released there. */
static void released_by(struct mgr *m, struct mgr_vm *vm, struct mgr_node *n,
			Cellmon__VcpuStatus *const *v, size_t count)
{
	int id = mgr_node_dsm_id(m, n);

	if (id < 0 || !(vm->unreleased & (1ull << id)))
		return;
	for (size_t i = 0; i < count; i++)
		if (v[i]->region == vm->region)
			return;
	vm->unreleased &= ~(1ull << id);
	CELL_INFO(MOD, "vm %s: node %s released run %u", vm->name, n->id,
		  vm->runs);
	restart_when_released(m, vm);
}

void mgr_vm_heartbeat(struct mgr *m, struct mgr_node *n,
		      Cellmon__VcpuStatus *const *v, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct mgr_vm *vm = NULL;
		struct mgr_vcpu *c;

		for (size_t j = 0; j < m->nvms && !vm; j++)
			if (m->vms[j]->region == v[i]->region &&
			    mgr_vm_active(m->vms[j]))
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
		snprintf(c->detail, sizeof(c->detail), "%s",
			 v[i]->detail ? v[i]->detail : "");
	}
	for (size_t j = 0; j < m->nvms; j++)
		released_by(m, m->vms[j], n, v, count);
	for (size_t j = 0; j < m->nvms; j++)
		mgr_vm_evaluate(m, m->vms[j]);
}

void mgr_vm_node_lost(struct mgr *m, struct mgr_node *n, const char *why)
{
	int id = mgr_node_dsm_id(m, n);
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
		for (uint32_t i = 0; i < vm->nmem; i++)
			dep |= strcmp(vm->mem_nodes[i], n->id) == 0;
		if (dep && mgr_vm_active(vm)) {
			snprintf(reason, sizeof(reason), "node %s %s", n->id,
				 why);
			fail_node(m, vm, reason);
		} else if (id >= 0 && (vm->unreleased & (1ull << id))) {
			/* down (fenced) or a new incarnation: that node runs
			 * nothing of the old run any more */
			vm->unreleased &= ~(1ull << id);
			restart_when_released(m, vm);
		}
	}
}

/* ---- restore ---- */

static int restore_vm(const struct mgr_vm_row *row, void *arg)
{
	struct mgr *m = arg;
	struct mgr_vm *vm = calloc(1, sizeof(*vm));
	const char *p = row->placement;

	if (!vm)
		return -ENOMEM;
	vm->spec = cellmon__vm_spec__unpack(NULL, row->spec_len, row->spec);
	if (vm->spec && mgr_vm_spec_upgrade(vm->spec)) {
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
	/* "vCPU nodes[;memory nodes]", each comma-separated */
	if (*p && *p != ';') {
		vm->vcpus = calloc(vm->spec->vcpus, sizeof(*vm->vcpus));
		for (uint32_t i = 0;
		     vm->vcpus && *p && *p != ';' && i < vm->spec->vcpus; i++) {
			size_t len = strcspn(p, ",;");

			snprintf(vm->vcpus[i].node, sizeof(vm->vcpus[0].node),
				 "%.*s", (int)len, p);
			vm->vcpus[i].state = CELLMON__VCPU_STATE__VCPU_UNKNOWN;
			vm->nvcpus = i + 1;
			p += len + (p[len] == ',');
		}
	}
	p += strcspn(p, ";");
	while (*p == ';' || *p == ',') {
		size_t len = strcspn(++p, ",");

		if (len && vm->nmem < DSM_MAX_NODES)
			snprintf(vm->mem_nodes[vm->nmem++],
				 sizeof(vm->mem_nodes[0]), "%.*s", (int)len, p);
		p += len;
	}
	if (mgr_vm_add(m, vm)) {
		mgr_vm_free(vm);
		return -ENOMEM;
	}
	/* A start cut short by the restart cannot be finished. */
	if (vm->state == CELLMON__VM_STATE__VM_STARTING)
		mgr_vm_set_state(
			m, vm, CELLMON__VM_STATE__VM_FAILED,
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
		mgr_vm_remove(m, m->vms[m->nvms - 1]);
	free(m->vms);
	m->vms = NULL;
}
