/*
 * Fault injection: the manager away while a VM spanning three nodes runs
 * (docs/fault-tolerance.md, "Manager outages: peer leases").
 *
 *  - kill -9 of the manager for 1 s, 10 s and 60 s, then a restart on the
 *    same state; SIGSTOP for 10 s, then SIGCONT. Throughout, every vCPU
 *    process of the VM lives on (checked every 250 ms) and no agent
 *    fences; after it, every node is up within 2 s (measured), the VM is
 *    the same run with the same vCPU processes, no restart, and it
 *    finishes with the right result.
 *
 * Every process is started through tests/support and killed at exit.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

#define STEP_MS 100

static struct tsc_cluster T;

#define CTL(out, ...) TSC_CTL(&T, out, __VA_ARGS__)

static int setup(void **state)
{
	static const struct tsc_cluster_opts o = {
		.nodes = 3,
		.cell = "c",
		.agent_args = {"--cpus=4"},
	};

	return tsc_cluster_setup(state, &T, "cellmon-mgrout", &o);
}

/* The VM's vCPU pids, by vCPU (0 when it has none yet); how many. */
static int vm_pids(const char *vm, pid_t *pids, int max, json_t **info)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr,
				 TSC_WORDS("vm", "info", vm)),
	       *v;
	size_t i;
	int n = 0;

	json_array_foreach(json_object_get(j, "vcpus"), i, v)
	{
		pid_t p = (pid_t)json_integer_value(json_object_get(v, "pid"));

		if ((int)i < max)
			pids[i] = p;
		n += p > 0;
	}
	if (info)
		*info = j;
	else
		json_decref(j);
	return n;
}

static bool alive(pid_t p)
{
	return p > 0 && kill(p, 0) == 0;
}

static bool all_up(void *arg)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr,
				 TSC_WORDS("node", "list")),
	       *n;
	size_t i;
	int up = 0;

	(void)arg;
	json_array_foreach(json_object_get(j, "nodes"), i, n) up +=
		strcmp(json_string_value(json_object_get(n, "state")), "up") ==
		0;
	json_decref(j);
	return up == 3;
}

/* No agent log says it fenced. */
static void assert_nobody_fenced(void)
{
	for (int i = 1; i <= 3; i++) {
		char path[800], *log;

		snprintf(path, sizeof(path), "%s/agent%d.log", T.dir, i);
		log = ts_read_file(path);
		assert_non_null(log);
		if (strstr(log, "lease expired; fenced"))
			fail_msg("agent%d fenced during the outage", i);
		free(log);
	}
}

/* Every agent knows all three nodes and can reach the two others over
 * the DSM, so each can ask them for votes and answer theirs. */
static bool views_complete(void *arg)
{
	(void)arg;
	for (int i = 1; i <= 3; i++) {
		char path[800];
		json_t *j;
		bool ok;

		snprintf(path, sizeof(path), "%s/agent%d/agent.state", T.dir,
			 i);
		j = json_load_file(path, 0, NULL);
		ok = j &&
		     json_integer_value(json_object_get(j, "view_nodes")) ==
			     3 &&
		     json_integer_value(json_object_get(j, "dsm_peers")) == 2;
		json_decref(j);
		if (!ok)
			return false;
	}
	return true;
}

/* The manager away for ms (killed, or paused when pause), under a VM of
 * three vCPUs that runs past it. */
static void outage(const char *vm, unsigned ms, bool pause)
{
	char steps[16], want[80], *out = NULL;
	unsigned nsteps = ms / STEP_MS + 40;
	pid_t before[3], after[3];
	uint64_t t0, up_ms, total = 0;
	json_t *info;

	snprintf(steps, sizeof(steps), "%u", nsteps);
	assert_true(ts_wait_for(views_complete, NULL, 10000));
	assert_int_equal(CTL(NULL, "vm", "create", vm, "--cell=c",
			     "--image=testguest", "--vcpus=3", "--start", "--",
			     "steps", steps, "100"),
			 0);
	for (int i = 0; i < 200 && vm_pids(vm, before, 3, NULL) < 3; i++)
		usleep(20 * 1000);
	assert_int_equal(vm_pids(vm, before, 3, NULL), 3);
	if (pause)
		kill(T.manager, SIGSTOP);
	else
		ts_stop(T.manager, SIGKILL, 5000);
	t0 = ts_now_ms();
	while (ts_now_ms() - t0 < ms) {
		usleep(250 * 1000);
		for (int v = 0; v < 3; v++)
			if (!alive(before[v])) {
				if (pause)
					kill(T.manager, SIGCONT);
				fail_msg(
					"%s: vcpu %d (pid %d) ended %llu ms "
					"into the manager's outage",
					vm, v, (int)before[v],
					(unsigned long long)(ts_now_ms() - t0));
			}
	}
	t0 = ts_now_ms();
	if (pause)
		kill(T.manager, SIGCONT);
	else
		tsc_cluster_manager(&T, NULL);
	assert_true(ts_wait_for(all_up, NULL, 10000));
	up_ms = ts_now_ms() - t0;
	printf("# %s: manager %s for %u ms; every node up %llu ms after it "
	       "was back\n",
	       vm, pause ? "paused" : "killed", ms, (unsigned long long)up_ms);
	assert_true(up_ms <= 2000);
	assert_nobody_fenced();
	/* a restarted manager knows the pids from the next heartbeats */
	for (int i = 0; i < 100 && vm_pids(vm, after, 3, NULL) < 3; i++)
		usleep(20 * 1000);
	assert_int_equal(vm_pids(vm, after, 3, &info), 3);
	assert_memory_equal(before, after, sizeof(before));
	assert_string_equal(json_string_value(json_object_get(info, "state")),
			    "running");
	assert_int_equal(json_integer_value(json_object_get(info, "runs")), 1);
	assert_int_equal(json_integer_value(json_object_get(info, "restarts")),
			 0);
	json_decref(info);
	assert_true(tsc_vm_wait_ended(CELLCTL_BIN, T.ctl_addr, vm,
				      nsteps * STEP_MS + 30000));
	assert_string_equal(tsc_cluster_vm_state(&T, vm), "stopped");
	for (unsigned v = 0; v < 3; v++)
		for (unsigned s = 0; s < nsteps; s++)
			total += (uint64_t)s * v + 1;
	snprintf(want, sizeof(want), "steps=%u total=%llu", nsteps,
		 (unsigned long long)total);
	assert_int_equal(CTL(&out, "vm", "console", vm), 0);
	assert_non_null(strstr(out, want));
	free(out);
}

/* kill -9 for 1 s: shorter than the lease. */
static void test_fault_manager_killed_1s_vms_run_on(void **state)
{
	(void)state;
	outage("k1", 1000, false);
}

/* kill -9 for 10 s: five leases. */
static void test_fault_manager_killed_10s_vms_run_on(void **state)
{
	(void)state;
	outage("k10", 10000, false);
}

/* kill -9 for 60 s. */
static void test_fault_manager_killed_60s_vms_run_on(void **state)
{
	(void)state;
	outage("k60", 60000, false);
}

/* SIGSTOP for 10 s: a hung manager, whose connections stay open. */
static void test_fault_manager_paused_10s_vms_run_on(void **state)
{
	(void)state;
	outage("p10", 10000, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_manager_killed_1s_vms_run_on),
		cmocka_unit_test(test_fault_manager_killed_10s_vms_run_on),
		cmocka_unit_test(test_fault_manager_paused_10s_vms_run_on),
		cmocka_unit_test(test_fault_manager_killed_60s_vms_run_on),
	};

	return cmocka_run_group_tests(tests, setup, tsc_cluster_teardown);
}
