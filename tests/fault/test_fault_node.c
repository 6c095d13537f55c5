/*
 * Fault injection: nodes die or hang under running VMs (manager, three
 * agents on loopback, real guests), and the cell keeps its promise:
 *
 *  - kill -9 of an agent: the VM that depended on it is restarted on the
 *    surviving nodes and finishes with the right result; the VM that did
 *    not depend on it runs on untouched (one run, right result); the dead
 *    node's vCPU processes were gone before the restart began; detection
 *    and restart times are printed;
 *  - SIGSTOP of an agent for longer than its lease, then SIGCONT: its
 *    guests end themselves when the lease is over (before the manager may
 *    declare the node down), the VM is restarted elsewhere and finishes;
 *    the agent comes back as a new incarnation with no old VMs and a new
 *    DSM epoch, the other nodes having fenced its old one;
 *  - a DSM peer killed in the middle of a fault storm (the SPMD stencil):
 *    nothing hangs; the VM is restarted and its checksum is right;
 *  - kill -9 of the manager: running VMs run on untouched (same vCPU
 *    processes, one run) and finish right under the restarted manager.
 *
 * "No VM on two nodes" is checked, not assumed: the old run's vCPU pids
 * must be gone before the new run's start is recorded.
 *
 * Each VM runs testguest steps: N steps of M ms with a barrier each, and
 * prints a total that depends only on N and the vCPU count.
 *
 * Victims and delays come from a seed printed at the start
 * (CELLMON_FAULT_SEED replays one); CELLMON_SOAK=N repeats the agent kill
 * N times for a longer manual run.
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

#define STEPS	"50"
#define STEP_MS "100"
#define NSTEPS	50

static struct tsc_cluster T;

#define CTL(out, ...) TSC_CTL(&T, out, __VA_ARGS__)

static json_t *ctl_json(const char *a, const char *b, const char *c)
{
	return tsc_ctl_json(CELLCTL_BIN, T.ctl_addr, TSC_WORDS(a, b, c));
}

static const char *node_state(const char *node)
{
	static char s[32];

	return tsc_ctl_field(CELLCTL_BIN, T.ctl_addr, "state",
			     TSC_WORDS("node", "info", node), s, sizeof(s));
}

static int nodes_with_dsm(void)
{
	json_t *j = ctl_json("node", "list", NULL), *n;
	size_t i;
	int k = 0;

	json_array_foreach(json_object_get(j, "nodes"), i, n)
	{
		const char *a =
			json_string_value(json_object_get(n, "dsm_addr"));

		k += a && a[0] &&
		     strcmp(json_string_value(json_object_get(n, "state")),
			    "up") == 0;
	}
	json_decref(j);
	return k;
}

static int setup(void **state)
{
	static const struct tsc_cluster_opts o = {
		.nodes = 3,
		.cell = "c",
		.agent_args = {"--cpus=4", "--reconnect-max=300ms"},
	};

	return tsc_cluster_setup(state, &T, "cellmon-fault", &o);
}

struct vminfo {
	char state[32];
	int runs, restarts;
	char nodes[4][32];
	pid_t pids[4];
	int nvcpus;
};

static bool vm_info(const char *vm, struct vminfo *out)
{
	json_t *j = ctl_json("vm", "info", vm), *v;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (!j)
		return false;
	snprintf(out->state, sizeof(out->state), "%s",
		 json_string_value(json_object_get(j, "state")));
	out->runs = (int)json_integer_value(json_object_get(j, "runs"));
	out->restarts = (int)json_integer_value(json_object_get(j, "restarts"));
	json_array_foreach(json_object_get(j, "vcpus"), i, v)
	{
		if (i >= 4)
			break;
		snprintf(out->nodes[i], sizeof(out->nodes[0]), "%s",
			 json_string_value(json_object_get(v, "node")));
		out->pids[i] =
			(pid_t)json_integer_value(json_object_get(v, "pid"));
		out->nvcpus = (int)i + 1;
	}
	json_decref(j);
	return true;
}

static void start_vm(const char *name, int vcpus, const char *node)
{
	char v[16], n[40];

	snprintf(v, sizeof(v), "--vcpus=%d", vcpus);
	snprintf(n, sizeof(n), "--node=%s", node ? node : "");
	if (node)
		assert_int_equal(CTL(NULL, "vm", "create", name, "--cell=c",
				     "--image=testguest", v, n, "--start", "--",
				     "steps", STEPS, STEP_MS),
				 0);
	else
		assert_int_equal(CTL(NULL, "vm", "create", name, "--cell=c",
				     "--image=testguest", v, "--start", "--",
				     "steps", STEPS, STEP_MS),
				 0);
}

/* Every vCPU has reported a pid. */
static bool wait_pids(const char *vm, struct vminfo *in)
{
	for (int t = 0; t < 100; t++) {
		int n = 0;

		vm_info(vm, in);
		for (int i = 0; i < in->nvcpus; i++)
			n += in->pids[i] > 0;
		if (in->nvcpus && n == in->nvcpus)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/* The process no longer runs: reaped, or a zombie (its parent, a paused
 * agent, may not reap it for a while). */
static bool pid_gone(pid_t p)
{
	char path[64], stat[512], *paren;
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
	f = fopen(path, "r"); /* proc files have no size: not ts_read_file */
	if (!f)
		return true;
	ok = fgets(stat, sizeof(stat), f) != NULL;
	fclose(f);
	paren = ok ? strrchr(stat, ')') : NULL;
	return !paren || paren[2] == 'Z' || paren[2] == 'X';
}

/* Waits for the end of the VM and checks its total. */
static void assert_finished_right(const char *vm, int vcpus)
{
	uint64_t want = 0;
	char line[80], *out = NULL;
	struct vminfo in;

	for (int i = 0; i < 600; i++) {
		vm_info(vm, &in);
		if (strcmp(in.state, "stopped") == 0 ||
		    strcmp(in.state, "failed") == 0)
			break;
		usleep(50 * 1000);
	}
	assert_string_equal(in.state, "stopped");
	for (int v = 0; v < vcpus; v++)
		for (int s = 0; s < NSTEPS; s++)
			want += (uint64_t)s * (uint64_t)v + 1;
	snprintf(line, sizeof(line), "steps=%d total=%llu", NSTEPS,
		 (unsigned long long)want);
	assert_int_equal(CTL(&out, "vm", "console", vm), 0);
	assert_non_null(strstr(out, line));
	free(out);
}

static int node_index(const char *node)
{
	return node[4] - '1';
}

/* Whether agent i's log (1-based) has the text. */
static bool log_has(int i, const char *text)
{
	char path[700];

	snprintf(path, sizeof(path), "%s/agent%d.log", T.dir, i);
	return ts_file_has(path, text);
}

/* The position of the first event of kind about subject in arr (JSON
 * objects from cellctl events), or -1. */
static int event_pos(json_t *arr, const char *kind, const char *subject)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e)
	{
		if (strcmp(json_string_value(json_object_get(e, "kind")),
			   kind) == 0 &&
		    strcmp(json_string_value(json_object_get(e, "subject")),
			   subject) == 0)
			return (int)i;
	}
	return -1;
}

/* A kill -9 of victim's agent under VM vm, in the event log: the node
 * suspect, then down, then its incarnation fenced, then the VM
 * restarted, in that order. */
static void assert_kill_events(json_t *arr, const char *victim, const char *vm,
			       const char *where)
{
	int sus = event_pos(arr, "node-suspect", victim);
	int down = event_pos(arr, "node-down", victim);
	int fence = event_pos(arr, "node-fenced", victim);
	int restart = event_pos(arr, "vm-restart", vm);

	printf("# %s: suspect #%d, down #%d, fenced #%d, restart #%d of %zu\n",
	       where, sus, down, fence, restart, json_array_size(arr));
	assert_true(sus >= 0 && sus < down && down < fence && fence < restart);
}

/* The events a follower (cellctl events --follow -o json) printed: one
 * object per line. */
static json_t *followed(const char *path)
{
	char *text = ts_read_file(path), *line, *save = NULL;
	json_t *arr = json_array();

	for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *e = json_loads(line, 0, NULL);

		if (e)
			json_array_append_new(arr, e);
	}
	free(text);
	return arr;
}

/* kill -9 of an agent under two VMs, one depending on it. */
/* One round: VM dep over two nodes, VM indep on the third; one of dep's
 * nodes (chosen by the seed) is killed after a seeded delay. */
static void kill_agent_round(int round)
{
	struct vminfo dep, ind;
	char victim[32], other[32] = "", survivor[32], dropped[80];
	uint64_t t0, t_down = 0, t_gone = 0, t_restart = 0;
	bool gone = false;
	char dname[32], iname[32], after[32], mgr_opt[200], follow_log[700];
	pid_t follower;
	json_t *j;
	int v = rand() % 2;
	unsigned delay_ms = 200 + (unsigned)(rand() % 800);

	snprintf(dname, sizeof(dname), "dep%d", round);
	snprintf(iname, sizeof(iname), "indep%d", round);
	start_vm(dname, 2, NULL);
	assert_true(wait_pids(dname, &dep));
	snprintf(victim, sizeof(victim), "%s", dep.nodes[v]);
	snprintf(survivor, sizeof(survivor), "%s", dep.nodes[1 - v]);
	for (int i = 1; i <= 3; i++) {
		char n[16];

		snprintf(n, sizeof(n), "node%d", i);
		if (strcmp(n, dep.nodes[0]) && strcmp(n, dep.nodes[1]))
			snprintf(other, sizeof(other), "%s", n);
	}
	assert_true(other[0]);
	start_vm(iname, 1, other);
	assert_true(wait_pids(iname, &ind));
	usleep(delay_ms * 1000);
	printf("# round %d: killing %s (vCPU %d of %s) after %u ms; %s runs "
	       "on %s\n",
	       round, victim, v, dname, delay_ms, iname, other);
	/* the event log from here on, read back and followed live */
	j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr, TSC_WORDS("events"));
	assert_non_null(j);
	snprintf(after, sizeof(after), "%lld",
		 (long long)json_integer_value(json_object_get(j, "last_id")));
	json_decref(j);
	snprintf(mgr_opt, sizeof(mgr_opt), "--manager=%s", T.ctl_addr);
	snprintf(follow_log, sizeof(follow_log), "%s/follow%d.log", T.dir,
		 round);
	{
		char *argv[] = {CELLCTL_BIN, mgr_opt,	   "-o",       "json",
				"events",    "--since=1s", "--follow", NULL};

		follower = ts_spawn(argv, follow_log);
	}
	assert_true(follower > 0);
	usleep(300 * 1000);
	t0 = ts_now_ms();
	ts_stop(T.agents[node_index(victim)], SIGKILL, 5000);
	for (int i = 0; i < 400 && (!gone || !t_down || !t_restart); i++) {
		struct vminfo now;

		if (!gone && pid_gone(dep.pids[v])) {
			gone = true;
			t_gone = ts_now_ms();
		}
		if (!t_down && strcmp(node_state(victim), "down") == 0)
			t_down = ts_now_ms();
		vm_info(dname, &now);
		if (!t_restart && now.restarts == 1 &&
		    strcmp(now.state, "running") == 0)
			t_restart = ts_now_ms();
		usleep(25 * 1000);
	}
	assert_true(gone && t_down && t_restart);
	printf("# detection %llu ms, restart %llu ms after the kill; the dead "
	       "node's vCPU was gone after %llu ms\n",
	       (unsigned long long)(t_down - t0),
	       (unsigned long long)(t_restart - t0),
	       (unsigned long long)(t_gone - t0));
	assert_true(t_gone <= t_restart);
	assert_true(t_down - t0 < 5000);
	assert_true(t_restart - t0 < 10000);
	/* cellctl status: not healthy, and says which node is down */
	j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr, TSC_WORDS("status"));
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "healthy")));
	snprintf(dropped, sizeof(dropped), "node %s is down", victim);
	{
		char *all = json_dumps(json_object_get(j, "problems"), 0);

		printf("# status problems: %s\n", all);
		assert_non_null(strstr(all, dropped));
		free(all);
	}
	json_decref(j);
	/* the same story in the event log, and in the follower's stream */
	usleep(700 * 1000); /* the follower asks every 500 ms */
	ts_stop(follower, SIGTERM, 5000);
	j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr,
			 TSC_WORDS("events", "--since=1m"));
	assert_non_null(j);
	{
		json_t *arr = json_array(), *e;
		size_t k;

		json_array_foreach(
			json_object_get(j, "events"), k,
			e) if (json_integer_value(json_object_get(e, "id")) >
			       atoll(after)) json_array_append(arr, e);
		assert_kill_events(arr, victim, dname, "events");
		json_decref(arr);
	}
	json_decref(j);
	j = followed(follow_log);
	assert_kill_events(j, victim, dname, "events --follow");
	json_decref(j);
	assert_finished_right(dname, 2);
	assert_finished_right(iname, 1);
	vm_info(iname, &ind);
	assert_int_equal(ind.runs, 1);
	assert_int_equal(ind.restarts, 0);
	vm_info(dname, &dep);
	assert_int_equal(dep.restarts, 1);
	for (int i = 0; i < dep.nvcpus; i++)
		assert_string_not_equal(dep.nodes[i], victim);
	/* The survivor that shared the VM with the victim stopped dialing
	 * it when the restart's start told it the victim was down. */
	snprintf(dropped, sizeof(dropped), "DSM peer dropped node=%s", victim);
	assert_true(log_has(node_index(survivor) + 1, dropped));
	/* The node comes back as a new incarnation. */
	tsc_cluster_agent(&T, node_index(victim), NULL);
	for (int i = 0; i < 100 && strcmp(node_state(victim), "up"); i++)
		usleep(100 * 1000);
	assert_string_equal(node_state(victim), "up");
}

/* kill -9 of an agent under two VMs, one depending on it (CELLMON_SOAK=N
 * rounds; one by default). */
static void test_fault_agent_killed_dependents_restart(void **state)
{
	const char *soak = getenv("CELLMON_SOAK");
	int rounds = soak ? atoi(soak) : 1;

	(void)state;
	for (int r = 0; r < (rounds > 0 ? rounds : 1); r++)
		kill_agent_round(r);
}

/* An agent paused past its lease: its guests stop themselves before the
 * manager may restart the VM elsewhere. */
static void test_fault_agent_paused_guests_fenced(void **state)
{
	struct vminfo p1, p2;
	char victim[32] = "node3", other[32] = "node1";
	uint64_t t0, t_gone = 0, t_down = 0, t_restart = 0;
	pid_t agent = T.agents[2];
	json_t *ni = ctl_json("node", "info", victim);
	uint64_t inc = (uint64_t)json_integer_value(
		json_object_get(ni, "incarnation"));
	int dsm_id = (int)json_integer_value(json_object_get(ni, "dsm_id"));
	char fence[160];

	(void)state;
	json_decref(ni);
	assert_true(inc > 0);
	start_vm("paused", 1, victim);
	start_vm("bystander", 1, other);
	assert_true(wait_pids("paused", &p1));
	assert_true(wait_pids("bystander", &p2));
	usleep(300 * 1000);
	t0 = ts_now_ms();
	assert_int_equal(kill(agent, SIGSTOP), 0);
	for (int i = 0; i < 400 && (!t_gone || !t_down || !t_restart); i++) {
		struct vminfo now;

		if (!t_gone && pid_gone(p1.pids[0]))
			t_gone = ts_now_ms();
		if (!t_down && strcmp(node_state(victim), "down") == 0)
			t_down = ts_now_ms();
		vm_info("paused", &now);
		if (!t_restart && now.restarts == 1 &&
		    strcmp(now.state, "running") == 0)
			t_restart = ts_now_ms();
		usleep(25 * 1000);
	}
	kill(agent, SIGCONT);
	printf("# pause: gone=%llu down=%llu restart=%llu (0: not seen)\n",
	       (unsigned long long)(t_gone ? t_gone - t0 : 0),
	       (unsigned long long)(t_down ? t_down - t0 : 0),
	       (unsigned long long)(t_restart ? t_restart - t0 : 0));
	assert_true(t_gone && t_down && t_restart);
	printf("# agent paused: its guest ended itself after %llu ms; node "
	       "down after %llu ms; VM restarted after %llu ms\n",
	       (unsigned long long)(t_gone - t0),
	       (unsigned long long)(t_down - t0),
	       (unsigned long long)(t_restart - t0));
	assert_true(t_gone < t_down);
	assert_true(t_gone <= t_restart);
	assert_finished_right("paused", 1);
	assert_finished_right("bystander", 1);
	vm_info("bystander", &p2);
	assert_int_equal(p2.runs, 1);
	/* Resumed, the agent rejoins as a new incarnation, with a new DSM
	 * epoch; the other nodes fenced the old one when it went down. */
	for (int i = 0; i < 100 && strcmp(node_state(victim), "up"); i++)
		usleep(100 * 1000);
	assert_string_equal(node_state(victim), "up");
	assert_true(log_has(3, "DSM epoch now"));
	/* The node the VM was restarted on had the fence before the VM's
	 * region existed (it came with the start). */
	snprintf(fence, sizeof(fence),
		 "DSM peer fenced node=node3 id=%d: epochs below %llu", dsm_id,
		 (unsigned long long)inc + 1);
	vm_info("paused", &p1);
	assert_true(log_has(node_index(p1.nodes[0]) + 1, fence));
}

/* The checksum spmd prints, run as a plain process. */
static void reference(const char *n, const char *iters, char *out, size_t len)
{
	char *argv[] = {GUEST_IMAGES "/spmd", (char *)n, (char *)iters, NULL};
	char *text = NULL, *p;

	assert_int_equal(ts_run(argv, 60000, &text, true), 0);
	p = strstr(text, "checksum=");
	assert_non_null(p);
	snprintf(out, len, "%.25s", p);
	free(text);
}

/* A DSM peer killed in the middle of a fault storm (the SPMD stencil
 * moving pages every sweep): the faults waiting on it do not hang the
 * VM; it is restarted and computes the right checksum. */
static void test_fault_dsm_peer_killed_mid_storm(void **state)
{
	char want[40], victim[32], *out = NULL;
	struct vminfo in;
	pid_t agent;

	(void)state;
	reference("256", "2500", want, sizeof(want));
	assert_int_equal(CTL(NULL, "vm", "create", "storm", "--cell=c",
			     "--image=spmd", "--vcpus=2", "--memory=16M",
			     "--start", "--", "256", "2500"),
			 0);
	assert_true(wait_pids("storm", &in));
	snprintf(victim, sizeof(victim), "%s", in.nodes[1]);
	usleep(800 * 1000);
	agent = T.agents[node_index(victim)];
	ts_stop(agent, SIGKILL, 5000);
	/* "failed" is passing while the restart is on its way. */
	for (int i = 0; i < 600 && strcmp(in.state, "stopped"); i++) {
		usleep(50 * 1000);
		vm_info("storm", &in);
	}
	assert_string_equal(in.state, "stopped");
	assert_int_equal(in.restarts, 1);
	assert_int_equal(CTL(&out, "vm", "console", "storm"), 0);
	assert_non_null(strstr(out, want));
	free(out);
	tsc_cluster_agent(&T, node_index(victim), NULL);
	for (int i = 0; i < 100 && strcmp(node_state(victim), "up"); i++)
		usleep(100 * 1000);
	assert_string_equal(node_state(victim), "up");
}

/* kill -9 of the manager: running VMs run on (same processes) and finish
 * right; the restarted manager has every VM. */
static void test_fault_manager_killed_vms_run_on(void **state)
{
	struct vminfo before, after;

	(void)state;
	start_vm("orphan", 2, NULL);
	assert_true(wait_pids("orphan", &before));
	ts_stop(T.manager, SIGKILL, 5000);
	usleep(1500 * 1000); /* longer than a lease: agents keep VMs */
	for (int i = 0; i < before.nvcpus; i++)
		assert_false(pid_gone(before.pids[i]));
	tsc_cluster_manager(&T, NULL);
	assert_true(wait_pids("orphan", &after));
	assert_memory_equal(before.pids, after.pids, sizeof(before.pids));
	assert_finished_right("orphan", 2);
	vm_info("orphan", &after);
	assert_int_equal(after.runs, 1);
	assert_int_equal(after.restarts, 0);
}

/* A DSM peer that stops answering while the manager still counts its
 * node in (down_after raised to 60 s): the waiting node ends its vCPU
 * after the agents' dsm_timeout (5 s), the VM is restarted on the nodes
 * that are up, long before the node could be declared down, and its
 * checksum is right. */
static void test_fault_dsm_peer_silent_request_timeout(void **state)
{
	char want[40], victim[32], *out = NULL;
	struct vminfo in;
	uint64_t t0, t_restart = 0;
	pid_t agent;

	(void)state;
	ts_stop(T.manager, SIGTERM, 5000);
	tsc_cluster_manager(&T, "--down-after=60s");
	for (int i = 0; i < 100 && nodes_with_dsm() < 3; i++)
		usleep(100 * 1000);
	reference("256", "4000", want, sizeof(want));
	assert_int_equal(CTL(NULL, "vm", "create", "silent", "--cell=c",
			     "--image=spmd", "--vcpus=2", "--memory=16M",
			     "--start", "--", "256", "4000"),
			 0);
	assert_true(wait_pids("silent", &in));
	snprintf(victim, sizeof(victim), "%s", in.nodes[1]);
	usleep(500 * 1000);
	agent = T.agents[node_index(victim)];
	t0 = ts_now_ms();
	assert_int_equal(kill(agent, SIGSTOP), 0);
	for (int i = 0; i < 600 && !t_restart; i++) {
		vm_info("silent", &in);
		if (in.restarts == 1 && strcmp(in.state, "running") == 0)
			t_restart = ts_now_ms();
		usleep(25 * 1000);
	}
	printf("# DSM peer silent (%s paused, not declared down): VM "
	       "running elsewhere after %llu ms\n",
	       victim, (unsigned long long)(t_restart ? t_restart - t0 : 0));
	assert_true(t_restart);
	assert_string_not_equal(node_state(victim), "down");
	kill(agent, SIGCONT);
	for (int i = 0; i < 600 && strcmp(in.state, "stopped"); i++) {
		usleep(50 * 1000);
		vm_info("silent", &in);
	}
	assert_string_equal(in.state, "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "silent"), 0);
	assert_non_null(strstr(out, want));
	free(out);
}

int main(void)
{
	const char *env = getenv("CELLMON_FAULT_SEED");
	unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
			    : (unsigned)(ts_now_ms() ^ (uint64_t)getpid());
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_agent_killed_dependents_restart),
		cmocka_unit_test(test_fault_agent_paused_guests_fenced),
		cmocka_unit_test(test_fault_dsm_peer_killed_mid_storm),
		cmocka_unit_test(test_fault_manager_killed_vms_run_on),
		cmocka_unit_test(test_fault_dsm_peer_silent_request_timeout),
	};

	/* The victims and delays come from the seed: a failure replays with
	 * CELLMON_FAULT_SEED. CELLMON_SOAK=N repeats the agent kill. */
	printf("# fault seed=%u (replay: CELLMON_FAULT_SEED=%u)\n", seed, seed);
	srand(seed);
	return cmocka_run_group_tests(tests, setup, tsc_cluster_teardown);
}
