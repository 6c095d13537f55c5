/*
 * Fault injection on separate "hosts": deploy/netns-cluster puts the
 * manager, the disk server and three agents in network namespaces of
 * their own, and one agent's link is cut (a partition) and restored.
 *
 *  - the cut-off agent cannot renew its lease and kills its vCPUs before
 *    the manager may declare it down (checked on the old vCPU process);
 *  - the VM that depended on it is restarted on another node and finishes
 *    with the right result; the VM that did not runs on untouched;
 *  - healed, the agent finds its incarnation over, discards its VMs and
 *    comes back as a new incarnation; meanwhile its DSM messages were
 *    stamped 0 (fenced) and the other agents fenced its old epoch.
 *
 *  - node2 cut from the manager only: the others, which hear the manager,
 *    do not vouch for it, so it fences before it is declared down and its
 *    VM restarted elsewhere;
 *  - the manager and node1 cut from node2 and node3: those two are a
 *    quorum of the three, vouch for each other and run on; nobody is
 *    declared down; joined again, every VM is the run it was.
 *
 * Needs root and network namespaces; skips with a message otherwise (the
 * same fencing is tested without namespaces by test_fault_node's paused
 * agent).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testsupport.h"

#define NSTEPS 60

static char *dir;
static bool cluster_up;

static int script(char **out, const char *const *words)
{
	char *argv[24] = {NETNS_SCRIPT};
	int n = 1, rc;
	char *tmp = NULL;

	for (; *words && n < 23; words++)
		argv[n++] = (char *)*words;
	argv[n] = NULL;
	rc = ts_run(argv, 120000, out ? out : &tmp, true);
	free(tmp);
	return rc;
}

#define NS(out, ...) script(out, (const char *const[]){__VA_ARGS__, NULL})

static json_t *ctl_json(const char *a, const char *b, const char *c)
{
	char *out = NULL;
	json_t *j = NULL;

	if (NS(&out, "ctl", "-o", "json", a, b, c) == 0)
		j = json_loads(out, 0, NULL);
	free(out);
	return j;
}

static bool can_use_netns(void)
{
	char *argv[] = {"ip", "netns", "add", "cmprobe-test", NULL};
	char *argv2[] = {"ip", "netns", "delete", "cmprobe-test", NULL};
	char *out = NULL;
	int rc;

	if (geteuid() != 0)
		return false;
	rc = ts_run(argv, 10000, &out, true);
	free(out);
	out = NULL;
	if (rc == 0)
		ts_run(argv2, 10000, &out, true);
	free(out);
	return rc == 0;
}

static int setup(void **state)
{
	char run[700], *out = NULL;

	(void)state;
	dir = ts_tmpdir("cellmon-netns");
	snprintf(run, sizeof(run), "%s/run", dir);
	setenv("CELLMON_RUN_DIR", run, 1);
	setenv("CELLMON_BUILD_DIR", BUILD_DIR, 1);
	setenv("CELLMON_NETNS_PREFIX", "cmft", 1);
	setenv("CELLMON_NETNS_SUBNET", "10.79.0", 1);
	NS(NULL, "down"); /* leftovers of a killed run */
	if (NS(&out, "up", "3") != 0) {
		fprintf(stderr, "netns-cluster up failed:\n%s\n", out);
		free(out);
		return -1;
	}
	free(out);
	cluster_up = true;
	return 0;
}

static int teardown(void **state)
{
	int left = 0;

	(void)state;
	if (cluster_up)
		NS(NULL, "down");
	/* Whatever outlived "down" fails the test (and is killed). */
	if (dir)
		left = ts_kill_matching(dir);
	if (left)
		fprintf(stderr, "netns-cluster down left %d processes\n", left);
	if (dir && !getenv("CELLMON_KEEP_TEST_DIR"))
		ts_rmtree(dir);
	else if (dir)
		fprintf(stderr, "test dir kept: %s\n", dir);
	free(dir);
	return left ? -1 : 0;
}

static const char *state_of(const char *noun, const char *name)
{
	static char s[32];
	json_t *j = ctl_json(noun, "info", name);

	snprintf(s, sizeof(s), "%s",
		 j ? json_string_value(json_object_get(j, "state")) : "none");
	json_decref(j);
	return s;
}

static int vm_int(const char *vm, const char *key)
{
	json_t *j = ctl_json("vm", "info", vm);
	int v = j ? (int)json_integer_value(json_object_get(j, key)) : -1;

	json_decref(j);
	return v;
}

static pid_t vm_pid(const char *vm)
{
	for (int i = 0; i < 100; i++) {
		json_t *j = ctl_json("vm", "info", vm);
		json_t *v = json_array_get(json_object_get(j, "vcpus"), 0);
		pid_t p = (pid_t)json_integer_value(json_object_get(v, "pid"));

		json_decref(j);
		if (p > 0)
			return p;
		usleep(50 * 1000);
	}
	return -1;
}

static bool pid_running(pid_t p)
{
	char path[64], stat[512], *paren;
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
	f = fopen(path, "r");
	if (!f)
		return false;
	ok = fgets(stat, sizeof(stat), f) != NULL;
	fclose(f);
	paren = ok ? strrchr(stat, ')') : NULL;
	return paren && paren[2] != 'Z' && paren[2] != 'X';
}

static void assert_finished_steps(const char *vm, int steps)
{
	char want[64], *out = NULL;

	for (int i = 0; i < 400; i++) {
		const char *s = state_of("vm", vm);

		if (strcmp(s, "stopped") == 0 || strcmp(s, "failed") == 0)
			break;
		usleep(50 * 1000);
	}
	assert_string_equal(state_of("vm", vm), "stopped");
	snprintf(want, sizeof(want), "steps=%d total=%d", steps, steps);
	assert_int_equal(NS(&out, "ctl", "vm", "console", vm), 0);
	assert_non_null(strstr(out, want));
	free(out);
}

static void assert_finished(const char *vm)
{
	assert_finished_steps(vm, NSTEPS);
}

/* Whether the log of a process of the cluster (node1, manager) has text. */
static bool log_has(const char *who, const char *text)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/run/%s/log", dir, who);
	return ts_file_has(path, text);
}

/* After node was cut off (at t0) under vm, whose vCPU was pid old: the
 * vCPU ends before the node is declared down, and vm runs again
 * elsewhere no earlier than that; prints the times (what says which
 * cut). */
static void failover(const char *what, const char *vm, pid_t old,
		     const char *node, uint64_t t0)
{
	uint64_t t_gone = 0, t_down = 0, t_restart = 0;

	for (int i = 0; i < 300 && (!t_gone || !t_down || !t_restart); i++) {
		if (!t_gone && !pid_running(old))
			t_gone = ts_now_ms();
		if (!t_down && strcmp(state_of("node", node), "down") == 0)
			t_down = ts_now_ms();
		if (!t_restart && vm_int(vm, "restarts") == 1 &&
		    strcmp(state_of("vm", vm), "running") == 0)
			t_restart = ts_now_ms();
		usleep(20 * 1000);
	}
	printf("# %s: the cut-off node's vCPU ended after %llu ms, node down "
	       "after %llu ms, VM running elsewhere after %llu ms\n",
	       what, (unsigned long long)(t_gone ? t_gone - t0 : 0),
	       (unsigned long long)(t_down ? t_down - t0 : 0),
	       (unsigned long long)(t_restart ? t_restart - t0 : 0));
	assert_true(t_gone && t_down && t_restart);
	assert_true(t_gone < t_down);
	assert_true(t_gone <= t_restart);
}

/* node2 cut off under a VM: fenced, restarted elsewhere, rejoins. */
static void test_fault_partition_fences_and_restarts(void **state)
{
	uint64_t t0;
	pid_t old;
	json_t *j;
	char node[64];

	(void)state;
	assert_true(cluster_up);
	assert_int_equal(NS(NULL, "ctl", "vm", "create", "cut", "--cell=local",
			    "--image=testguest", "--node=node2", "--start",
			    "--", "steps", "60", "100"),
			 0);
	assert_int_equal(NS(NULL, "ctl", "vm", "create", "calm", "--cell=local",
			    "--image=testguest", "--node=node1", "--start",
			    "--", "steps", "60", "100"),
			 0);
	old = vm_pid("cut");
	assert_true(old > 0 && pid_running(old));
	usleep(300 * 1000);
	t0 = ts_now_ms();
	assert_int_equal(NS(NULL, "partition", "node2"), 0);
	failover("partition", "cut", old, "node2", t0);
	assert_int_equal(NS(NULL, "heal", "node2"), 0);
	assert_finished("cut");
	assert_finished("calm");
	assert_int_equal(vm_int("calm", "runs"), 1);
	for (int i = 0; i < 100 && strcmp(state_of("node", "node2"), "up"); i++)
		usleep(100 * 1000);
	assert_string_equal(state_of("node", "node2"), "up");
	/* Fenced, node2 stamped epoch 0 on its DSM messages; the node the
	 * VM restarted on refused node2's old epoch before the restart. */
	assert_true(log_has("node2", "DSM epoch now 0 (fenced"));
	j = ctl_json("vm", "info", "cut");
	snprintf(node, sizeof(node), "%s",
		 json_string_value(json_object_get(
			 json_array_get(json_object_get(j, "vcpus"), 0),
			 "node")));
	json_decref(j);
	assert_string_not_equal(node, "node2");
	assert_true(log_has(node, "DSM peer fenced node=node2"));
}

static void start_on(const char *vm, const char *node, const char *steps)
{
	char n[32];

	snprintf(n, sizeof(n), "--node=%s", node);
	assert_int_equal(NS(NULL, "ctl", "vm", "create", vm, "--cell=local",
			    "--image=testguest", n, "--start", "--", "steps",
			    steps, "100"),
			 0);
}

/* node2 cut off from the manager only (its links to node1 and node3
 * stay): they still hear the manager, so they refuse to vouch for it and
 * it fences when its lease ends, before the manager declares it down and
 * restarts its VM elsewhere; the others run on. */
static void test_fault_partition_manager_only_fences(void **state)
{
	uint64_t t0;
	pid_t old;

	(void)state;
	assert_true(cluster_up);
	start_on("lone", "node2", "60");
	start_on("calm2", "node1", "60");
	old = vm_pid("lone");
	assert_true(old > 0 && pid_running(old));
	usleep(500 * 1000);
	t0 = ts_now_ms();
	assert_int_equal(NS(NULL, "cut", "manager", "node2"), 0);
	failover("cut from the manager only", "lone", old, "node2", t0);
	assert_int_equal(NS(NULL, "join", "manager", "node2"), 0);
	assert_false(log_has("node2", "running on a peer lease"));
	assert_finished("lone");
	assert_finished("calm2");
	assert_int_equal(vm_int("calm2", "runs"), 1);
	for (int i = 0; i < 100 && strcmp(state_of("node", "node2"), "up"); i++)
		usleep(100 * 1000);
	assert_string_equal(state_of("node", "node2"), "up");
}

/* The manager and node1 cut off from node2 and node3 for 8 s: node2 and
 * node3 are two of three, a quorum, so they vouch for each other and
 * their VMs run on; the manager, with one node of three, cannot declare
 * them down. Joined again, every VM is the run it was and finishes. */
static void test_fault_partition_majority_runs_on(void **state)
{
	static const char *const cuts[][2] = {{"manager", "node2"},
					      {"manager", "node3"},
					      {"node1", "node2"},
					      {"node1", "node3"}};
	pid_t pa, pb;
	uint64_t t0;

	(void)state;
	assert_true(cluster_up);
	start_on("maj2", "node2", "150");
	start_on("maj3", "node3", "150");
	start_on("min1", "node1", "150");
	pa = vm_pid("maj2");
	pb = vm_pid("maj3");
	assert_true(pa > 0 && pb > 0);
	usleep(500 * 1000);
	for (int i = 0; i < 4; i++)
		assert_int_equal(NS(NULL, "cut", cuts[i][0], cuts[i][1]), 0);
	t0 = ts_now_ms();
	while (ts_now_ms() - t0 < 8000) {
		if (!pid_running(pa) || !pid_running(pb))
			break;
		usleep(200 * 1000);
	}
	printf("# node2+node3 cut from the manager and node1: their VMs ran "
	       "%llu ms of 8000; node2 %s, node3 %s at the manager\n",
	       (unsigned long long)(ts_now_ms() - t0),
	       state_of("node", "node2"), state_of("node", "node3"));
	assert_true(pid_running(pa) && pid_running(pb));
	assert_string_not_equal(state_of("node", "node2"), "down");
	assert_string_not_equal(state_of("node", "node3"), "down");
	for (int i = 0; i < 4; i++)
		assert_int_equal(NS(NULL, "join", cuts[i][0], cuts[i][1]), 0);
	assert_true(log_has("node2", "running on a peer lease"));
	assert_finished_steps("maj2", 150);
	assert_finished_steps("maj3", 150);
	assert_finished_steps("min1", 150);
	assert_int_equal(vm_int("maj2", "runs"), 1);
	assert_int_equal(vm_int("maj3", "runs"), 1);
	assert_int_equal(vm_int("maj2", "restarts"), 0);
	assert_int_equal(vm_int("maj3", "restarts"), 0);
}

int main(void)
{
	/* ctest reports exit 77 as skipped (SKIP_RETURN_CODE). */
	if (!can_use_netns()) {
		printf("SKIP: needs root and network namespaces (ip netns); "
		       "the "
		       "same fencing is tested by test_fault_node\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_partition_fences_and_restarts),
		cmocka_unit_test(test_fault_partition_manager_only_fences),
		cmocka_unit_test(test_fault_partition_majority_runs_on),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
