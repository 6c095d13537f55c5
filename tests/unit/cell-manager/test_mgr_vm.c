/*
 * Unit tests of the manager's VM state machine (cell-manager/mgr_vm.c)
 * with no agents: the manager's m->send_command is a fake that queues
 * every command, and each test answers them by hand (ok, an error, a
 * result), feeds heartbeats and node losses, and checks the states,
 * reasons and the commands that follow. Three nodes in cell "c", a store
 * in a temporary directory, membership on a fixed clock.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cell/log.h"
#include "mgr_int.h"
#include "testsupport.h"

#define MAXQ 64

/* One command the fake agent side received. */
struct sent {
	char node[CELL_NAME_MAX + 1];
	Cellmon__CommandKind kind;
	uint64_t region;
	cell_rpc_reply_fn cb;
	void *arg;
};

static struct fixture {
	struct mgr m;
	char *dir;
	struct sent q[MAXQ];
	int nq;
	int refuse; /* -errno: the fake refuses to send */
} fx;

static uint64_t fixed_now(void *arg)
{
	(void)arg;
	return 1000;
}

static const struct cell_clock fixed_clock = {fixed_now, NULL};

static int fake_send(struct mgr *m, struct mgr_node *n,
		     const ProtobufCMessage *msg, cell_rpc_reply_fn cb,
		     void *arg)
{
	const Cellmon__Command *cmd = (const void *)msg;
	struct sent *s;

	(void)m;
	if (fx.refuse)
		return fx.refuse;
	assert_true(fx.nq < MAXQ);
	s = &fx.q[fx.nq++];
	snprintf(s->node, sizeof(s->node), "%s", n->id);
	s->kind = cmd->kind;
	/* every command carries its typed argument */
	if (cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_PREPARE ||
	    cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_RUN) {
		assert_int_equal(cmd->args_case, CELLMON__COMMAND__ARGS_START);
		s->region = cmd->start->region;
	} else {
		assert_int_equal(cmd->args_case, CELLMON__COMMAND__ARGS_TARGET);
		s->region = cmd->target->region;
	}
	s->cb = cb;
	s->arg = arg;
	return 0;
}

/* How many queued commands are of `kind`. */
static int queued(Cellmon__CommandKind kind)
{
	int k = 0;

	for (int i = 0; i < fx.nq; i++)
		k += fx.q[i].kind == kind;
	return k;
}

/* Answers every queued command of `kind` (in order), node `bad` with
 * status `err`; commands sent meanwhile stay queued. */
static void answer(Cellmon__CommandKind kind, const char *bad, int err)
{
	struct sent now[MAXQ];
	int n = 0, keep = 0;

	for (int i = 0; i < fx.nq; i++) {
		if (fx.q[i].kind == kind)
			now[n++] = fx.q[i];
		else
			fx.q[keep++] = fx.q[i];
	}
	fx.nq = keep;
	for (int i = 0; i < n; i++) {
		Cellmon__CommandAck ack = CELLMON__COMMAND_ACK__INIT;
		Cellmon__VmNodeStats st = CELLMON__VM_NODE_STATS__INIT;

		if (bad && strcmp(now[i].node, bad) == 0) {
			ack.status = err;
			ack.message = "refused by the test";
		} else if (kind == CELLMON__COMMAND_KIND__CMD_VM_STATS) {
			st.node = now[i].node;
			st.read_faults = 7;
			ack.result_case = CELLMON__COMMAND_ACK__RESULT_STATS;
			ack.stats = &st;
		}
		now[i].cb(0, &ack.base, NULL, now[i].arg);
	}
}

/* Answers the end of a run: the stats snapshot, then the release. */
static void answer_end(void)
{
	answer(CELLMON__COMMAND_KIND__CMD_VM_STATS, NULL, 0);
	answer(CELLMON__COMMAND_KIND__CMD_VM_RELEASE, NULL, 0);
}

static void add_node(const char *id)
{
	struct mgr_registration r = {.id = id,
				     .addr = "127.0.0.1:1",
				     .cpus = 4,
				     .memory_mb = 4096,
				     .heartbeat_ms = 250};
	struct mgr_node *n;
	int resumed;
	uint64_t old;

	assert_int_equal(
		mgr_members_register(fx.m.members, &r, &n, &resumed, &old), 0);
	snprintf(n->cell, sizeof(n->cell), "c");
	snprintf(n->dsm_addr, sizeof(n->dsm_addr), "127.0.0.1:2");
}

static int setup(void **state)
{
	struct mgr_members_config mc = {1000, 3000};
	char path[600], err[256];

	(void)state;
	memset(&fx, 0, sizeof(fx));
	cell_log_set_level(CELL_LOG_ERROR);
	fx.dir = ts_tmpdir("mgrvm");
	snprintf(path, sizeof(path), "%s/m.db", fx.dir);
	assert_int_equal(mgr_store_open(path, &fx.m.store, err, sizeof(err)),
			 0);
	assert_int_equal(mgr_members_create(&mc, &fixed_clock, NULL, NULL,
					    &fx.m.members),
			 0);
	fx.m.send_command = fake_send;
	assert_int_equal(mgr_cell_add(&fx.m, "c", 1, 0), 0);
	add_node("n1");
	add_node("n2");
	add_node("n3");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* answer what is still queued, so no fan is left allocated */
	for (int i = 0; fx.nq && i < 100; i++)
		answer(fx.q[0].kind, NULL, 0);
	assert_int_equal(fx.nq, 0);
	mgr_vm_free_all(&fx.m);
	free(fx.m.cells);
	mgr_members_destroy(fx.m.members);
	mgr_store_close(fx.m.store);
	ts_rmtree(fx.dir);
	free(fx.dir);
	return 0;
}

/* A pending VM of `vcpus` vCPUs spread over the cell, recorded. */
static struct mgr_vm *define(const char *name, uint32_t vcpus,
			     uint32_t max_restarts)
{
	struct mgr_vm *vm = calloc(1, sizeof(*vm));
	Cellmon__VmSpec s = CELLMON__VM_SPEC__INIT;
	Cellmon__RestartPolicy rp = CELLMON__RESTART_POLICY__INIT;
	char err[300];

	assert_non_null(vm);
	s.name = (char *)name;
	s.cell = "c";
	s.image = "spmd";
	s.vcpus = vcpus;
	s.memory_mb = 16;
	rp.max_restarts = max_restarts;
	s.restart = &rp;
	vm->spec = (Cellmon__VmSpec *)cellproto_copy(&s.base);
	assert_non_null(vm->spec);
	assert_int_equal(mgr_vm_spec_defaults(vm->spec), 0);
	assert_int_equal(mgr_vm_spec_check(&fx.m, vm->spec, err, sizeof(err)),
			 0);
	assert_int_equal(mgr_store_vm_next_id(fx.m.store, &vm->id), 0);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	vm->state = CELLMON__VM_STATE__VM_PENDING;
	assert_int_equal(mgr_vm_persist(&fx.m, vm), 0);
	assert_int_equal(mgr_vm_add(&fx.m, vm), 0);
	return vm;
}

/* Places and starts vm as `vm start` does; nothing answered yet. */
static void start(struct mgr_vm *vm)
{
	const char *names[VM_MAX_VCPUS];
	char why[300];

	assert_int_equal(mgr_vm_place(&fx.m, vm->spec, vm, false, names, why,
				      sizeof(why)),
			 0);
	assert_int_equal(mgr_vm_start_run(&fx.m, vm, names), 0);
}

/* Starts vm and answers PREPARE and RUN: it runs. */
static void start_ok(struct mgr_vm *vm)
{
	start(vm);
	answer(CELLMON__COMMAND_KIND__CMD_VM_PREPARE, NULL, 0);
	answer(CELLMON__COMMAND_KIND__CMD_VM_RUN, NULL, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_RUNNING);
}

/* A heartbeat from node `id` saying every vCPU of vm there is `st`. */
static void heartbeat(struct mgr_vm *vm, const char *id, Cellmon__VcpuState st,
		      int code)
{
	Cellmon__VcpuStatus v[VM_MAX_VCPUS], *pv[VM_MAX_VCPUS];
	size_t n = 0;

	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		if (strcmp(vm->vcpus[i].node, id) != 0)
			continue;
		cellmon__vcpu_status__init(&v[n]);
		v[n].region = vm->region;
		v[n].vcpu = i;
		v[n].state = st;
		v[n].exit_code = code;
		v[n].pid = 100 + (int)i;
		pv[n] = &v[n];
		n++;
	}
	mgr_vm_heartbeat(&fx.m, mgr_members_find(fx.m.members, id), pv, n);
}

static void heartbeat_all(struct mgr_vm *vm, Cellmon__VcpuState st, int code)
{
	const char *nodes[VM_MAX_VCPUS];
	size_t n = mgr_vm_nodes(vm, nodes);

	for (size_t i = 0; i < n; i++)
		heartbeat(vm, nodes[i], st, code);
}

/* A start sends PREPARE to every node, RUN only after all prepared, and
 * the VM runs once every RUN is acknowledged. */
static void test_mgr_vm_start_prepares_then_runs(void **state)
{
	struct mgr_vm *vm = define("a", 3, 3);

	(void)state;
	start(vm);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_STARTING);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_PREPARE), 3);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_RUN), 0);
	assert_int_equal(fx.q[0].region, vm->id << 16 | 1);
	answer(CELLMON__COMMAND_KIND__CMD_VM_PREPARE, NULL, 0);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_RUN), 3);
	answer(CELLMON__COMMAND_KIND__CMD_VM_RUN, NULL, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_RUNNING);
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		assert_int_equal(vm->vcpus[i].state,
				 CELLMON__VCPU_STATE__VCPU_RUNNING);
	assert_int_equal(fx.nq, 0);
}

/* A PREPARE refused on one node fails the start with that node's word,
 * sends no RUN, and releases the region everywhere. */
static void test_mgr_vm_prepare_error_fails_and_releases(void **state)
{
	struct mgr_vm *vm = define("a", 3, 3);

	(void)state;
	start(vm);
	answer(CELLMON__COMMAND_KIND__CMD_VM_PREPARE, "n2", -ENOENT);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	assert_non_null(strstr(vm->reason, "prepare on n2"));
	assert_non_null(strstr(vm->reason, "refused by the test"));
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_RUN), 0);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_STATS), 3);
	answer(CELLMON__COMMAND_KIND__CMD_VM_STATS, NULL, 0);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_RELEASE), 3);
	answer(CELLMON__COMMAND_KIND__CMD_VM_RELEASE, NULL, 0);
	assert_false(vm->busy);
	assert_false(vm->restart_pending); /* not the node's fault */
}

/* Every vCPU exiting 0 stops the VM and keeps the end-of-run stats. */
static void test_mgr_vm_all_exit_zero_stops(void **state)
{
	struct mgr_vm *vm = define("a", 3, 3);

	(void)state;
	start_ok(vm);
	heartbeat(vm, vm->vcpus[0].node, CELLMON__VCPU_STATE__VCPU_EXITED, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_RUNNING);
	heartbeat_all(vm, CELLMON__VCPU_STATE__VCPU_EXITED, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_STOPPED);
	assert_string_equal(vm->reason, "every vCPU exited with status 0");
	answer_end();
	assert_int_equal(vm->nstats, 3);
	assert_int_equal(vm->stats[0]->read_faults, 7);
}

/* A vCPU exiting non-zero fails the VM as the guest's fault: no restart. */
static void test_mgr_vm_exit_nonzero_fails_without_restart(void **state)
{
	struct mgr_vm *vm = define("a", 2, 3);

	(void)state;
	start_ok(vm);
	heartbeat(vm, vm->vcpus[1].node, CELLMON__VCPU_STATE__VCPU_EXITED, 3);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	assert_non_null(strstr(vm->reason, "exited with status 3"));
	answer_end();
	assert_int_equal(vm->runs, 1);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_PREPARE), 0);
}

/* A fenced vCPU is its node's fault: once the run is released the VM is
 * started again as a new run (new region), up to max_restarts. */
static void test_mgr_vm_fenced_vcpu_restarts_new_run(void **state)
{
	struct mgr_vm *vm = define("a", 2, 1);
	uint64_t first = vm->region;

	(void)state;
	start_ok(vm);
	first = vm->region;
	heartbeat(vm, vm->vcpus[0].node, CELLMON__VCPU_STATE__VCPU_FENCED, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	assert_non_null(strstr(vm->reason, "was fenced"));
	assert_non_null(strstr(vm->reason, "restarting (1 of 1)"));
	answer_end();
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_STARTING);
	assert_int_equal(vm->runs, 2);
	assert_int_not_equal(vm->region, first);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_PREPARE), 2);
	answer(CELLMON__COMMAND_KIND__CMD_VM_PREPARE, NULL, 0);
	answer(CELLMON__COMMAND_KIND__CMD_VM_RUN, NULL, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_RUNNING);
	/* the second loss finds no restarts left */
	heartbeat(vm, vm->vcpus[0].node, CELLMON__VCPU_STATE__VCPU_LOST, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	assert_non_null(strstr(vm->reason, "not restarted"));
	answer_end();
	assert_int_equal(vm->runs, 2);
	assert_int_equal(fx.nq, 0);
}

/* A node declared lost fails the VMs that have vCPUs there and marks
 * them lost; a VM on other nodes keeps running. */
static void test_mgr_vm_node_lost_fails_dependents_only(void **state)
{
	struct mgr_vm *a = define("a", 1, 0), *b;

	(void)state;
	start_ok(a);
	b = define("b", 1, 0);
	start_ok(b);
	assert_string_not_equal(a->vcpus[0].node, b->vcpus[0].node);
	mgr_vm_node_lost(&fx.m,
			 mgr_members_find(fx.m.members, a->vcpus[0].node),
			 "is down");
	assert_int_equal(a->state, CELLMON__VM_STATE__VM_FAILED);
	assert_int_equal(a->vcpus[0].state, CELLMON__VCPU_STATE__VCPU_LOST);
	assert_non_null(strstr(a->reason, "is down"));
	assert_int_equal(b->state, CELLMON__VM_STATE__VM_RUNNING);
}

/* A run's node that could not release it (not up: it may still run the
 * vCPUs, on a peer lease) holds the restart back until it is declared
 * down; the VM then starts again on the nodes that are up. */
static void test_mgr_vm_restart_waits_for_unreleased_node(void **state)
{
	struct mgr_vm *vm = define("a", 2, 3);
	struct mgr_node *n2;
	char other[CELL_NAME_MAX + 1];

	(void)state;
	start_ok(vm);
	/* a copy: the restart replaces the vCPU table */
	snprintf(other, sizeof(other), "%s", vm->vcpus[1].node);
	n2 = mgr_members_find(fx.m.members, other);
	n2->state = MGR_NODE_SUSPECT; /* silent: commands cannot reach it */
	heartbeat(vm, vm->vcpus[0].node, CELLMON__VCPU_STATE__VCPU_LOST, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	answer_end();
	assert_true(vm->restart_pending);
	assert_int_equal(vm->runs, 1); /* not restarted yet */
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_PREPARE), 0);
	n2->state = MGR_NODE_DOWN;
	mgr_vm_node_lost(&fx.m, n2, "is down");
	assert_int_equal(vm->runs, 2);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_STARTING);
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		assert_string_not_equal(vm->vcpus[i].node, other);
}

/* The same node heard again with nothing of the old run: released, and
 * the restart goes ahead. */
static void test_mgr_vm_restart_after_node_reports_release(void **state)
{
	struct mgr_vm *vm = define("a", 2, 3);
	struct mgr_node *n2;

	(void)state;
	start_ok(vm);
	n2 = mgr_members_find(fx.m.members, vm->vcpus[1].node);
	n2->state = MGR_NODE_SUSPECT;
	heartbeat(vm, vm->vcpus[0].node, CELLMON__VCPU_STATE__VCPU_LOST, 0);
	answer_end();
	assert_int_equal(vm->runs, 1);
	n2->state = MGR_NODE_UP;
	/* still holds a vCPU of the run: no */
	heartbeat(vm, n2->id, CELLMON__VCPU_STATE__VCPU_RUNNING, 0);
	assert_int_equal(vm->runs, 1);
	/* reports nothing of it any more: released */
	mgr_vm_heartbeat(&fx.m, n2, NULL, 0);
	assert_int_equal(vm->runs, 2);
}

/* A vCPU state this manager does not know (a newer agent) changes
 * nothing. */
static void test_mgr_vm_unknown_vcpu_state_ignored(void **state)
{
	struct mgr_vm *vm = define("a", 1, 0);

	(void)state;
	start_ok(vm);
	heartbeat(vm, vm->vcpus[0].node, (Cellmon__VcpuState)99, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_RUNNING);
	assert_int_equal(vm->vcpus[0].state, CELLMON__VCPU_STATE__VCPU_RUNNING);
}

/* Stopping sends STOP; the vCPUs' end (any signal) makes it stopped, not
 * failed. */
static void test_mgr_vm_stop_ends_stopped(void **state)
{
	struct mgr_vm *vm = define("a", 2, 3);

	(void)state;
	start_ok(vm);
	mgr_vm_set_state(&fx.m, vm, CELLMON__VM_STATE__VM_STOPPING, NULL);
	assert_int_equal(mgr_vm_command(&fx.m, vm,
					CELLMON__COMMAND_KIND__CMD_VM_STOP,
					NULL, NULL),
			 0);
	assert_int_equal(queued(CELLMON__COMMAND_KIND__CMD_VM_STOP), 2);
	answer(CELLMON__COMMAND_KIND__CMD_VM_STOP, NULL, 0);
	heartbeat_all(vm, CELLMON__VCPU_STATE__VCPU_KILLED, 0);
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_STOPPED);
	assert_string_equal(vm->reason, "stopped by request");
}

/* A command that cannot be sent counts as that node failing: the start
 * fails and names the node. */
static void test_mgr_vm_unsendable_command_fails_start(void **state)
{
	struct mgr_vm *vm = define("a", 1, 3);

	(void)state;
	fx.refuse = -EPIPE;
	start(vm);
	fx.refuse = 0;
	assert_int_equal(vm->state, CELLMON__VM_STATE__VM_FAILED);
	assert_non_null(strstr(vm->reason, "prepare on n"));
}

/* A spec stored by a protocol-1 manager (strings in fields 5, 9, 11)
 * comes back with its placement and home; an unknown name is refused. */
static void test_mgr_vm_spec_upgrade_reads_legacy_strings(void **state)
{
	/* name "x", then field 5 "native", 9 "pack", 11 "one" */
	static const uint8_t v1[] = {0x0a, 1,	 'x', 0x2a, 6,	 'n', 'a', 't',
				     'i',  'v',	 'e', 0x4a, 4,	 'p', 'a', 'c',
				     'k',  0x5a, 3,   'o',  'n', 'e'};
	static const uint8_t bad[] = {0x0a, 1, 'x', 0x4a, 3, 'z', 'i', 'p'};
	Cellmon__VmSpec *s = cellmon__vm_spec__unpack(NULL, sizeof(v1), v1);

	(void)state;
	assert_non_null(s);
	assert_int_equal(mgr_vm_spec_upgrade(s), 0);
	assert_int_equal(s->engine, CELLMON__ENGINE__ENGINE_NATIVE);
	assert_int_equal(s->placement, CELLMON__PLACEMENT__PLACEMENT_PACK);
	assert_int_equal(s->home, CELLMON__HOME_POLICY__HOME_ONE);
	assert_int_equal(s->base.n_unknown_fields, 0);
	cellmon__vm_spec__free_unpacked(s, NULL);
	s = cellmon__vm_spec__unpack(NULL, sizeof(bad), bad);
	assert_non_null(s);
	assert_int_equal(mgr_vm_spec_upgrade(s), -EINVAL);
	cellmon__vm_spec__free_unpacked(s, NULL);
}

/* Enum values outside the sets are refused with the known names. */
static void test_mgr_vm_spec_unknown_enum_refused(void **state)
{
	Cellmon__VmSpec s = CELLMON__VM_SPEC__INIT;
	char err[300];

	(void)state;
	s.name = "a";
	s.cell = "c";
	s.image = "spmd";
	s.vcpus = 1;
	s.memory_mb = 16;
	assert_int_equal(mgr_vm_spec_defaults(&s), 0);
	s.engine = (Cellmon__Engine)9;
	assert_int_equal(mgr_vm_spec_check(&fx.m, &s, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown engine 9"));
	assert_non_null(strstr(err, "native"));
	s.engine = CELLMON__ENGINE__ENGINE_NATIVE;
	s.home = (Cellmon__HomePolicy)7;
	assert_int_equal(mgr_vm_spec_check(&fx.m, &s, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "interleave, first-touch or one"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_mgr_vm_start_prepares_then_runs),
		T(test_mgr_vm_prepare_error_fails_and_releases),
		T(test_mgr_vm_all_exit_zero_stops),
		T(test_mgr_vm_exit_nonzero_fails_without_restart),
		T(test_mgr_vm_fenced_vcpu_restarts_new_run),
		T(test_mgr_vm_node_lost_fails_dependents_only),
		T(test_mgr_vm_unknown_vcpu_state_ignored),
		T(test_mgr_vm_restart_waits_for_unreleased_node),
		T(test_mgr_vm_restart_after_node_reports_release),
		T(test_mgr_vm_stop_ends_stopped),
		T(test_mgr_vm_unsendable_command_fails_start),
		T(test_mgr_vm_spec_upgrade_reads_legacy_strings),
		T(test_mgr_vm_spec_unknown_enum_refused),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
