/*
 * vm migrate: a running qemu VM's vCPUs move to another node of its cell
 * without copying its memory. The target must already home pages of the
 * VM (a member of its region: every up node of the cell for an
 * interleaved qemu VM), so its DSM node has the region and the target
 * QEMU maps it there; pages then follow on demand.
 *
 *   1. MIGRATE_IN to the target: its agent starts a QEMU waiting for the
 *      VM's state (-incoming defer) and answers -EAGAIN; asked again
 *      (every 100 ms, 50 times) it has it listen (x-ignore-shared) once
 *      QEMU's QMP answers, and answers its pid and address;
 *   2. MIGRATE_OUT to the source: its agent has QEMU send the device
 *      state there (RAM is shared memory and skipped) and answers with
 *      QEMU's downtime once the target runs the guest; the source QEMU
 *      is then killed and the source keeps homing its pages. The target
 *      may not listen yet: -EAGAIN is retried every 100 ms, 50 times.
 *   3. The vCPUs are recorded on the target and the caller gets the VM
 *      with the pause (QEMU's downtime) and the whole move's time.
 *
 * A failure before the source answered leaves the VM running where it
 * was; the target's waiting QEMU is killed. The VM is busy throughout.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "mgr_int.h"

#define MOD	 "mgr"
#define RETRY_MS 100
#define RETRIES	 50

struct retry {
	struct mgr *m;
	uint64_t id;
	bool in; /* MIGRATE_IN again, else MIGRATE_OUT */
	struct event *ev;
};

static void send_out(struct mgr *m, struct mgr_vm *vm);
static void send_in(struct mgr *m, struct mgr_vm *vm);

/* Ends the move: answers the caller, the VM no longer busy. */
static void finish(struct mgr *m, struct mgr_vm *vm, int rc, const char *why,
		   uint32_t pause_ms)
{
	struct cell_rpc_call *call = vm->waiter;
	Cellmon__VmReply r = CELLMON__VM_REPLY__INIT;
	Cellmon__VmInfo vi;

	vm->busy = false;
	vm->waiter = NULL;
	if (rc) {
		CELL_WARN(MOD, "vm %s: migration to %s failed: %s", vm->name,
			  vm->migrate_to, why);
		mgr_event(m, "vm-migrate", vm->name, "to %s failed: %s",
			  vm->migrate_to, why);
		if (call)
			cell_rpc_reply_error(
				call, rc, "vm %s: migration to %s failed: %s",
				vm->name, vm->migrate_to, why);
		vm->migrate_to[0] = '\0';
		return;
	}
	vm->migrate_to[0] = '\0';
	if (!call)
		return;
	if (mgr_vm_info_fill(m, vm, &vi)) {
		mgr_vm_info_free(&vi);
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		return;
	}
	r.vm = &vi;
	r.pause_ms = pause_ms;
	r.migrate_ms = (uint32_t)(cell_now_ms() - vm->migrate_t0);
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_VM_REPLY, &r.base);
	mgr_vm_info_free(&vi);
}

/* The target's waiting QEMU, when the move failed after it started. */
static void kill_target(struct mgr *m, struct mgr_vm *vm)
{
	const char *nodes[1] = {vm->migrate_to};

	mgr_fan_out(m, nodes, 1, CELLMON__COMMAND_KIND__CMD_VM_KILL,
		    mgr_vm_build_target, vm, vm->id, NULL, NULL);
}

static int build_out(struct mgr *m, void *arg, const char *node,
		     Cellmon__Command *cmd, void **own)
{
	struct mgr_vm *vm = arg;
	int rc = mgr_vm_build_target(m, arg, node, cmd, own);

	if (!rc)
		cmd->target->migrate_to = vm->migrate_addr;
	return rc;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct retry *r = arg;
	struct mgr_vm *vm = mgr_vm_by_id(r->m, r->id);

	(void)fd;
	(void)what;
	event_free(r->ev);
	if (vm && vm->migrate_to[0]) {
		if (r->in)
			send_in(r->m, vm);
		else
			send_out(r->m, vm);
	}
	free(r);
}

/* Asks again in RETRY_MS (the target is starting); false when it cannot
 * or the attempts are used up. */
static bool retry(struct mgr *m, struct mgr_vm *vm, bool in)
{
	struct timeval tv = {0, RETRY_MS * 1000};
	struct retry *r;

	if (++vm->migrate_tries >= RETRIES || !(r = calloc(1, sizeof(*r))))
		return false;
	*r = (struct retry){m, vm->id, in, NULL};
	r->ev = evtimer_new(m->base, retry_cb, r);
	if (r->ev && !evtimer_add(r->ev, &tv))
		return true;
	if (r->ev)
		event_free(r->ev);
	free(r);
	return false;
}

static void out_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	const struct mgr_fan_res *e = mgr_fan_error(f);
	const Cellmon__VmMigrated *mig = (const void *)f->res[0].result;

	if (!vm || !vm->migrate_to[0])
		return;
	if (e && e->status == -EAGAIN && retry(m, vm, false))
		return;
	if (e) {
		kill_target(m, vm);
		finish(m, vm, e->status, e->msg, 0);
		return;
	}
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		snprintf(vm->vcpus[i].node, sizeof(vm->vcpus[i].node), "%s",
			 vm->migrate_to);
		vm->vcpus[i].pid = vm->migrate_pid;
		vm->vcpus[i].state = CELLMON__VCPU_STATE__VCPU_RUNNING;
	}
	mgr_vm_persist(m, vm);
	CELL_INFO(MOD, "vm %s: migrated to %s in %llu ms (guest paused %u ms)",
		  vm->name, vm->migrate_to,
		  (unsigned long long)(cell_now_ms() - vm->migrate_t0),
		  mig ? mig->downtime_ms : 0);
	mgr_event(m, "vm-migrate", vm->name,
		  "to %s in %llu ms, guest paused %u ms", vm->migrate_to,
		  (unsigned long long)(cell_now_ms() - vm->migrate_t0),
		  mig ? mig->downtime_ms : 0);
	finish(m, vm, 0, "", mig ? mig->downtime_ms : 0);
}

static void send_out(struct mgr *m, struct mgr_vm *vm)
{
	const char *nodes[1] = {vm->vcpus[0].node};

	if (mgr_fan_out(m, nodes, 1, CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_OUT,
			build_out, vm, vm->id, out_done, NULL)) {
		kill_target(m, vm);
		finish(m, vm, -ENOMEM, "out of memory", 0);
	}
}

static void in_done(struct mgr *m, struct mgr_fan *f)
{
	struct mgr_vm *vm = mgr_vm_by_id(m, f->tag);
	const struct mgr_fan_res *e = mgr_fan_error(f);
	const Cellmon__VmRunReply *run = (const void *)f->res[0].result;

	if (!vm || !vm->migrate_to[0])
		return;
	if (e && e->status == -EAGAIN && retry(m, vm, true))
		return;
	if (e) {
		kill_target(m, vm);
		finish(m, vm, e->status, e->msg, 0);
		return;
	}
	if (!run || !run->migrate_addr || !run->migrate_addr[0] ||
	    !run->n_vcpus) {
		kill_target(m, vm);
		finish(m, vm, -EPROTO, "the target gave no address", 0);
		return;
	}
	snprintf(vm->migrate_addr, sizeof(vm->migrate_addr), "%s",
		 run->migrate_addr);
	vm->migrate_pid = run->vcpus[0]->pid;
	vm->migrate_tries = 0;
	send_out(m, vm);
}

static void send_in(struct mgr *m, struct mgr_vm *vm)
{
	const char *nodes[1] = {vm->migrate_to};

	if (mgr_fan_out(m, nodes, 1, CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_IN,
			mgr_vm_build_start, vm, vm->id, in_done, NULL))
		finish(m, vm, -ENOMEM, "out of memory", 0);
}

/* Why vm cannot move to node now, or NULL. */
static const char *refusal(struct mgr *m, const struct mgr_vm *vm,
			   const struct mgr_node *n, char *why, size_t len)
{
	const char *nodes[MGR_VM_MAX_NODES];
	size_t k = mgr_vm_nodes(vm, nodes);
	bool member = false;

	if (vm->spec->engine != CELLMON__ENGINE__ENGINE_QEMU)
		return "only qemu VMs migrate (a native VM's vCPUs are "
		       "processes)";
	if (vm->state != CELLMON__VM_STATE__VM_RUNNING || vm->busy) {
		snprintf(why, len, "it is %s%s", mgr_vm_state_name(vm->state),
			 vm->busy ? " and busy" : "");
		return why;
	}
	if (strcmp(n->cell, vm->spec->cell) != 0) {
		snprintf(why, len, "%s is not in cell %s", n->id,
			 vm->spec->cell);
		return why;
	}
	if (n->state != MGR_NODE_UP) {
		snprintf(why, len, "%s is not up", n->id);
		return why;
	}
	if (strcmp(vm->vcpus[0].node, n->id) == 0) {
		snprintf(why, len, "it runs on %s already", n->id);
		return why;
	}
	for (size_t i = 0; i < k; i++)
		member |= strcmp(nodes[i], n->id) == 0;
	if (!member) {
		snprintf(why, len,
			 "%s homes none of its pages (its region is on %s%s): "
			 "only a node of its memory can take its vCPUs",
			 n->id, nodes[0], k > 1 ? " ..." : "");
		return why;
	}
	if (!mgr_node_has_image(n, vm->spec->image)) {
		snprintf(why, len, "%s has no image '%s'", n->id,
			 vm->spec->image);
		return why;
	}
	(void)m;
	return NULL;
}

void mgr_vm_migrate(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg)
{
	struct mgr *m = arg;
	const Cellmon__VmRequest *req = (const void *)msg;
	struct mgr_vm *vm = mgr_vm_find(m, req->name);
	struct mgr_node *n = mgr_members_find(m->members, req->to_node);
	const char *no;
	char why[300];

	if (!vm) {
		cell_rpc_reply_error(call, -ENOENT, "no vm '%.64s'", req->name);
		return;
	}
	if (!n) {
		cell_rpc_reply_error(call, -ENOENT, "no node '%.64s'",
				     req->to_node);
		return;
	}
	no = refusal(m, vm, n, why, sizeof(why));
	if (no) {
		cell_rpc_reply_error(call, -EINVAL,
				     "vm %s cannot migrate to %s: %s", vm->name,
				     n->id, no);
		return;
	}
	snprintf(vm->migrate_to, sizeof(vm->migrate_to), "%s", n->id);
	vm->migrate_tries = 0;
	vm->migrate_t0 = cell_now_ms();
	vm->busy = true;
	vm->waiter = call;
	CELL_INFO(MOD, "vm %s: migrating from %s to %s", vm->name,
		  vm->vcpus[0].node, n->id);
	send_in(m, vm);
}
