/*
 * cellctl's VM methods: create (validated, placed on an empty cell to
 * refuse what could never run, recorded as pending), start (placed on
 * what the cell has free; the call is answered when the VM runs or its
 * start failed), stop, kill, delete, info, list, console and stats. A
 * --dry-run create or start answers the plan and changes nothing.
 *
 * The state machine they drive is mgr_vm.c's; the spec rules are
 * mgr_vm_spec.c's. Event-loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "mgr_int.h"

#define MOD "mgr"

static struct mgr_vm *vm_or_error(struct mgr *m, struct cell_rpc_call *call,
				  const char *name)
{
	struct mgr_vm *vm = mgr_vm_find(m, name);

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
	mgr_vm_reply(m, call, &plan);
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
	const char *names[VM_MAX_VCPUS];
	struct mgr_vm *vm = NULL;
	const struct mgr_cell *cell;
	char why[600];
	int rc;

	if (!s) {
		cell_rpc_reply_error(call, -EINVAL, "no VM spec");
		return;
	}
	cell = s->cell ? mgr_cell_find(m, s->cell) : NULL;
	if (s->page_policy == CELLMON__PAGE_POLICY__PAGE_POLICY_DEFAULT && cell)
		s->page_policy = cell->page_policy;
	rc = mgr_vm_spec_defaults(s);
	if (rc)
		snprintf(why, sizeof(why), "out of memory");
	else
		rc = mgr_vm_spec_check(m, s, why, sizeof(why));
	if (!rc && mgr_vm_find(m, s->name)) {
		snprintf(why, sizeof(why), "vm '%s' exists", s->name);
		rc = -EEXIST;
	}
	/* Refuse what even an empty cell could not hold. */
	if (!rc)
		rc = mgr_vm_place(m, s, NULL, true, names, why, sizeof(why));
	if (!rc && req->dry_run)
		rc = mgr_vm_place(m, s, NULL, false, names, why, sizeof(why));
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
	rc = mgr_vm_persist(m, vm);
	if (!rc)
		rc = mgr_vm_add(m, vm);
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
	mgr_vm_reply(m, call, vm);
	vm = NULL;
out:
	mgr_vm_free(vm);
	if (s)
		cellmon__vm_spec__free_unpacked(s, NULL);
}

void mgr_vm_start(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);
	const char *names[VM_MAX_VCPUS];
	char why[600];
	int rc;

	if (!vm)
		return;
	if (mgr_vm_active(vm) || vm->busy) {
		cell_rpc_reply_error(call, -EBUSY, "vm %s is %s", vm->name,
				     mgr_vm_state_name(vm->state));
		return;
	}
	rc = mgr_vm_check_writers(m, vm, why, sizeof(why));
	if (!rc)
		rc = mgr_vm_place(m, vm->spec, vm, false, names, why,
				  sizeof(why));
	if (rc) {
		if (!req->dry_run)
			mgr_event(m, "vm-refused", vm->name, "not started: %s",
				  why);
		cell_rpc_reply_error(call, rc, "%s", why);
		return;
	}
	if (req->dry_run) {
		reply_plan(m, call, vm, vm->spec, names);
		return;
	}
	vm->waiter = call;
	vm->restarts = 0; /* an operator's start begins a new count */
	rc = mgr_vm_start_run(m, vm, names);
	if (rc) {
		vm->busy = false;
		snprintf(vm->reason, sizeof(vm->reason), "cannot start: %s",
			 strerror(-rc));
		mgr_vm_set_state(m, vm, CELLMON__VM_STATE__VM_FAILED, NULL);
		mgr_vm_answer_waiter(m, vm, rc);
	}
}

/* A VM that has never run has nothing to stop or kill: says so (exit 1
 * in cellctl) instead of answering as if it had done something. */
static bool never_started(struct cell_rpc_call *call, const struct mgr_vm *vm,
			  const char *verb)
{
	if (vm->state != CELLMON__VM_STATE__VM_PENDING || vm->busy)
		return false;
	cell_rpc_reply_error(call, -EINVAL,
			     "vm %s has never been started: nothing to %s "
			     "(vm start starts it)",
			     vm->name, verb);
	return true;
}

void mgr_vm_stop(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (!vm || never_started(call, vm, "stop"))
		return;
	if (vm->state != CELLMON__VM_STATE__VM_RUNNING || vm->busy ||
	    vm->waiter) {
		if (!mgr_vm_active(vm))
			mgr_vm_reply(m, call, vm); /* already stopped: done */
		else
			cell_rpc_reply_error(call, -EBUSY,
					     "vm %s is %s; try again or use "
					     "vm kill",
					     vm->name,
					     mgr_vm_state_name(vm->state));
		return;
	}
	vm->waiter = call;
	mgr_vm_set_state(m, vm, CELLMON__VM_STATE__VM_STOPPING, NULL);
	if (mgr_vm_command(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STOP, NULL,
			   NULL))
		mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_FAILED,
			      "cannot send stop");
	mgr_vm_evaluate(m, vm);
}

void mgr_vm_kill(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);
	struct cell_rpc_call *old;

	if (!vm || never_started(call, vm, "kill"))
		return;
	if (!mgr_vm_active(vm) && !vm->busy) {
		mgr_vm_reply(m, call, vm);
		return;
	}
	/* A start or stop waiting for an answer gets one now. */
	old = vm->waiter;
	vm->waiter = NULL;
	if (old)
		cell_rpc_reply_error(old, -ECANCELED, "vm %s was killed",
				     vm->name);
	vm->waiter = call;
	mgr_vm_finish(m, vm, CELLMON__VM_STATE__VM_STOPPED,
		      "killed by request");
}

void mgr_vm_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (!vm)
		return;
	if (mgr_vm_active(vm)) {
		cell_rpc_reply_error(call, -EBUSY,
				     "vm %s is %s; stop or kill it first",
				     vm->name, mgr_vm_state_name(vm->state));
		return;
	}
	if (vm->busy) {
		/* its run just ended and is being released: the delete
		 * goes through when that is done (mgr_vm.c) */
		if (vm->deleter) {
			cell_rpc_reply_error(call, -EBUSY,
					     "vm %s is being deleted already",
					     vm->name);
			return;
		}
		vm->deleter = call;
		return;
	}
	mgr_vm_delete_now(m, vm, call);
}

void mgr_vm_delete_now(struct mgr *m, struct mgr_vm *vm,
		       struct cell_rpc_call *call)
{
	int rc = mgr_store_vm_delete(m->store, vm->id);

	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot delete vm %s: %s",
				     vm->name, strerror(-rc));
		return;
	}
	CELL_INFO(MOD, "vm deleted name=%s id=%llu", vm->name,
		  (unsigned long long)vm->id);
	if (mgr_vm_forget(m, vm))
		CELL_WARN(MOD,
			  "vm %s: out of memory telling the nodes to "
			  "remove its files; they will when they register",
			  vm->name);
	mgr_vm_remove(m, vm);
	mgr_vm_reply(m, call, NULL);
}

void mgr_vm_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = vm_or_error(m, call, req->name);

	if (vm)
		mgr_vm_reply(m, call, vm);
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
		rc = mgr_vm_info_fill(m, m->vms[i], &infos[i]);
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
		mgr_vm_info_free(&infos[i]);
	free(infos);
	free(ptrs);
}

static int by_vcpu(const void *a, const void *b)
{
	const Cellmon__VcpuConsole *x = *(Cellmon__VcpuConsole *const *)a;
	const Cellmon__VcpuConsole *y = *(Cellmon__VcpuConsole *const *)b;

	return x->vcpu < y->vcpu ? -1 : x->vcpu > y->vcpu;
}

static void console_done(struct mgr *m, struct mgr_fan *f)
{
	struct cell_rpc_call *call = f->call;
	Cellmon__VmConsoleReply r = CELLMON__VM_CONSOLE_REPLY__INIT;
	Cellmon__VmConsoleReply **parts = calloc(f->n + 1, sizeof(*parts));
	size_t total = 0, k = 0;

	(void)m;
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
	else if (!k && mgr_fan_error(f))
		cell_rpc_reply_error(call, mgr_fan_error(f)->status, "%s: %s",
				     mgr_fan_error(f)->node,
				     mgr_fan_error(f)->msg);
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
	if (mgr_vm_command(m, vm, CELLMON__COMMAND_KIND__CMD_VM_CONSOLE,
			   console_done, call))
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

static void live_stats_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	struct cell_rpc_call *call = f->call;
	Cellmon__VmNodeStats **s = calloc(f->n + 1, sizeof(*s));
	Cellmon__VmNodeStats *errs = calloc(f->n + 1, sizeof(*errs));

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
	if (!mgr_vm_active(vm) || vm->state == CELLMON__VM_STATE__VM_STARTING) {
		if (!vm->nvcpus)
			cell_rpc_reply_error(call, -ENOENT,
					     "vm %s has never run: no stats",
					     vm->name);
		else
			reply_stats(call, vm, vm->stats, vm->nstats);
		return;
	}
	if (mgr_vm_command(m, vm, CELLMON__COMMAND_KIND__CMD_VM_STATS,
			   live_stats_done, call))
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
}
