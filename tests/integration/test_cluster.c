/*
 * Integration: the real cellmon-manager, three cellmon-agents and cellctl
 * on ephemeral loopback ports.
 *
 *  - three agents register and show up in `cellctl node list -o json`;
 *  - kill -9 of an agent: declared down within 3 s of its last heartbeat
 *    (the time from the kill is measured and printed);
 *  - the agent restarted: a new incarnation, up again;
 *  - kill -9 of the manager and a restart on the same state: cells are
 *    still there and the nodes come back up, keeping their incarnations;
 *  - the manager paused (SIGSTOP) for twice the lease: no agent fences
 *    (they vouch for each other); resumed (SIGCONT): every agent is
 *    registered again as the incarnation it was;
 *  - cellctl against a dead address: exit code 3 and the address named.
 *
 * Every process is started through tests/support and killed at exit, also
 * when an assertion fails.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "testsupport.h"

struct cluster {
	char *dir;
	char agent_addr[64];
	char ctl_addr[64];
	pid_t manager;
	pid_t agents[3];
};

static struct cluster cl;

static pid_t start_manager(const char *agent_listen, const char *ctl_listen)
{
	char sd[600], al[100], ctl[100], log[600], tls[4][800];
	char *argv[] = {CELLMON_MANAGER_BIN,
			sd,
			al,
			ctl,
			tls[0],
			tls[1],
			tls[2],
			tls[3],
			NULL};

	snprintf(sd, sizeof(sd), "--state-dir=%s/manager", cl.dir);
	snprintf(al, sizeof(al), "--agent-listen=%s", agent_listen);
	snprintf(ctl, sizeof(ctl), "--ctl-listen=%s", ctl_listen);
	snprintf(log, sizeof(log), "%s/manager.log", cl.dir);
	tsc_tls_opts(cl.dir, "manager-manager", tls);
	return ts_spawn(argv, log);
}

static pid_t start_agent(int i)
{
	char id[64], mgr[100], sd[600], log[600], tls[4][800], cert[32];
	char *argv[] = {CELLMON_AGENT_BIN,
			id,
			mgr,
			sd,
			"--reconnect-max=300ms",
			tls[0],
			tls[1],
			tls[2],
			tls[3],
			NULL};

	snprintf(id, sizeof(id), "--node-id=node%d", i + 1);
	snprintf(mgr, sizeof(mgr), "--manager=%s", cl.agent_addr);
	snprintf(sd, sizeof(sd), "--state-dir=%s/agent%d", cl.dir, i + 1);
	snprintf(log, sizeof(log), "%s/agent%d.log", cl.dir, i + 1);
	snprintf(cert, sizeof(cert), "node-node%d", i + 1);
	tsc_tls_opts(cl.dir, cert, tls);
	return ts_spawn(argv, log);
}

static bool addr_file_ready(void)
{
	char sd[600];

	snprintf(sd, sizeof(sd), "%s/manager", cl.dir);
	return ts_manager_addrs(sd, cl.agent_addr, sizeof(cl.agent_addr),
				cl.ctl_addr, sizeof(cl.ctl_addr), 5000);
}

/* Runs cellctl with -o json; returns the parsed output or NULL. */
static json_t *ctl_json(const char *a1, const char *a2, const char *a3,
			const char *a4)
{
	char mgr[100];
	char *argv[] = {CELLCTL_BIN, mgr,	 "-o",	     "json", (char *)a1,
			(char *)a2,  (char *)a3, (char *)a4, NULL};
	char *out = NULL;
	json_t *j = NULL;
	int rc;

	snprintf(mgr, sizeof(mgr), "--manager=%s", cl.ctl_addr);
	rc = ts_run(argv, 5000, &out, false);
	if (rc == 0 && out)
		j = json_loads(out, 0, NULL);
	free(out);
	return j;
}

static json_t *find_node(json_t *list, const char *id)
{
	json_t *nodes = json_object_get(list, "nodes"), *n;
	size_t i;

	json_array_foreach(nodes, i, n)
	{
		if (strcmp(json_string_value(json_object_get(n, "id")), id) ==
		    0)
			return n;
	}
	return NULL;
}

/* State of node `id`, and its incarnation through *inc. */
static const char *node_state(const char *id, long long *inc)
{
	static char state[32];
	json_t *j = ctl_json("node", "list", NULL, NULL), *n;

	strcpy(state, "none");
	n = j ? find_node(j, id) : NULL;
	if (n) {
		snprintf(state, sizeof(state), "%s",
			 json_string_value(json_object_get(n, "state")));
		if (inc)
			*inc = json_integer_value(
				json_object_get(n, "incarnation"));
	}
	json_decref(j);
	return state;
}

static bool all_up(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++) {
		char id[16];

		snprintf(id, sizeof(id), "node%d", i + 1);
		if (strcmp(node_state(id, NULL), "up") != 0)
			return false;
	}
	return true;
}

static int setup(void **state)
{
	(void)state;
	cl.dir = ts_tmpdir("cellmon-it");
	tsc_ca_make(cl.dir);
	cl.manager = start_manager("127.0.0.1:0", "127.0.0.1:0");
	assert_true(cl.manager > 0);
	assert_true(addr_file_ready());
	for (int i = 0; i < 3; i++)
		cl.agents[i] = start_agent(i);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ts_kill_all();
	tsc_ca_forget();
	if (getenv("CELLMON_KEEP_TEST_DIR"))
		fprintf(stderr, "test dir kept: %s\n", cl.dir);
	else
		ts_rmtree(cl.dir);
	free(cl.dir);
	return 0;
}

/* Three agents register and are listed up. */
static void test_cluster_three_agents_up(void **state)
{
	json_t *j;

	(void)state;
	assert_true(ts_wait_for(all_up, NULL, 10000));
	j = ctl_json("node", "list", NULL, NULL);
	assert_non_null(j);
	assert_int_equal(json_array_size(json_object_get(j, "nodes")), 3);
	json_decref(j);
}

struct down_wait {
	const char *id;
};

static bool is_down(void *arg)
{
	return strcmp(node_state(((struct down_wait *)arg)->id, NULL),
		      "down") == 0;
}

/* kill -9 of an agent: down within 3 s of its last heartbeat; restarted,
 * it is a new incarnation and up again. */
static void test_cluster_agent_killed_down_then_new_incarnation(void **state)
{
	struct down_wait w = {"node3"};
	long long inc_before = 0, inc_after = 0;
	uint64_t t0, took;
	char path[600];

	(void)state;
	assert_true(ts_wait_for(all_up, NULL, 10000));
	node_state("node3", &inc_before);
	t0 = ts_now_ms();
	ts_stop(cl.agents[2], SIGKILL, 2000);
	assert_true(ts_wait_for(is_down, &w, 6000));
	took = ts_now_ms() - t0;
	printf("agent kill -9 -> declared down: %llu ms (down_after 3000 ms "
	       "after the last heartbeat, heartbeat 250 ms)\n",
	       (unsigned long long)took);
	/* Not before down_after minus one heartbeat period, not much after
	 * down_after (tick + the polling of this test). */
	assert_true(took >= 2700);
	assert_true(took <= 3600);
	snprintf(path, sizeof(path), "%s/manager.log", cl.dir);
	assert_true(ts_file_has(path, "node down id=node3"));
	assert_string_equal(node_state("node1", NULL), "up");

	cl.agents[2] = start_agent(2);
	assert_true(ts_wait_for(all_up, NULL, 5000));
	node_state("node3", &inc_after);
	printf("node3 incarnation %lld -> %lld\n", inc_before, inc_after);
	assert_true(inc_after > inc_before);
}

static bool cells_back(void *arg)
{
	json_t *j = ctl_json("cell", "info", "c1", NULL);
	bool ok = j && json_array_size(json_object_get(j, "nodes")) == 2;

	ok = ok && strcmp(json_string_value(json_object_get(j, "page_policy")),
			  "migrate") == 0;
	json_decref(j);
	j = ctl_json("cell", "info", "c2", NULL);
	ok = ok && j &&
	     strcmp(json_string_value(json_object_get(j, "page_policy")),
		    "off") == 0;

	(void)arg;
	json_decref(j);
	return ok;
}

/* kill -9 of the manager, restart on the same state: the cells with
 * their members and page policies are there, and the nodes are up again,
 * same incarnations. */
static void test_cluster_manager_killed_state_kept(void **state)
{
	long long inc[3], again[3];
	char agent_listen[64], ctl_listen[64];
	uint64_t t0;
	json_t *j;

	(void)state;
	assert_true(ts_wait_for(all_up, NULL, 10000));
	j = ctl_json("cell", "create", "c1", NULL);
	assert_non_null(j);
	json_decref(j);
	j = ctl_json("cell", "add-node", "c1", "node1");
	json_decref(j);
	j = ctl_json("cell", "add-node", "c1", "node2");
	assert_non_null(j);
	json_decref(j);
	j = ctl_json("cell", "info", "c1", NULL);
	assert_string_equal(
		json_string_value(json_object_get(j, "page_policy")), "all");
	json_decref(j);
	j = ctl_json("cell", "set", "c1", "page-policy=migrate");
	assert_non_null(j);
	assert_string_equal(
		json_string_value(json_object_get(j, "page_policy")),
		"migrate");
	json_decref(j);
	j = ctl_json("cell", "create", "c2", "--page-policy=off");
	assert_non_null(j);
	json_decref(j);
	{
		char mgr[100];
		char *bad[] = {CELLCTL_BIN,	   mgr, "cell", "set", "c1",
			       "page-policy=some", NULL};
		char *none[] = {CELLCTL_BIN,	   mgr, "cell", "set", "nosuch",
				"page-policy=all", NULL};
		char *noarg[] = {CELLCTL_BIN, mgr, "cell", "set", "c1", NULL};
		char *out = NULL;

		snprintf(mgr, sizeof(mgr), "--manager=%s", cl.ctl_addr);
		assert_int_equal(ts_run(bad, 5000, &out, true), 2);
		assert_non_null(strstr(out, "unknown page policy 'some'"));
		free(out);
		assert_int_equal(ts_run(none, 5000, &out, true), 4);
		assert_non_null(strstr(out, "no cell 'nosuch'"));
		free(out);
		assert_int_equal(ts_run(noarg, 5000, NULL, false), 2);
	}
	for (int i = 0; i < 3; i++) {
		char id[16];

		snprintf(id, sizeof(id), "node%d", i + 1);
		node_state(id, &inc[i]);
	}
	snprintf(agent_listen, sizeof(agent_listen), "%s", cl.agent_addr);
	snprintf(ctl_listen, sizeof(ctl_listen), "%s", cl.ctl_addr);
	ts_stop(cl.manager, SIGKILL, 2000);
	cl.manager = start_manager(agent_listen, ctl_listen);
	t0 = ts_now_ms();
	assert_true(ts_wait_for(cells_back, NULL, 5000));
	assert_true(ts_wait_for(all_up, NULL, 5000));
	printf("manager restart -> all nodes up again: %llu ms\n",
	       (unsigned long long)(ts_now_ms() - t0));
	for (int i = 0; i < 3; i++) {
		char id[16];

		snprintf(id, sizeof(id), "node%d", i + 1);
		node_state(id, &again[i]);
		assert_int_equal(again[i], inc[i]);
	}
	/* A clean stop exits 0. */
	for (int i = 0; i < 3; i++) {
		int st = ts_stop(cl.agents[i], SIGTERM, 3000);

		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	int st = ts_stop(cl.manager, SIGTERM, 3000);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* An integer of agent i's (0-based) agent.state, or -1. */
static long long agent_state_int(int i, const char *key)
{
	char path[600];
	json_t *j, *v;
	long long n;

	snprintf(path, sizeof(path), "%s/agent%d/agent.state", cl.dir, i + 1);
	j = json_load_file(path, 0, NULL);
	v = json_object_get(j, key);
	n = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
	json_decref(j);
	return n;
}

/* Whether agent i's agent.state says state `want`. */
static bool agent_in_state(int i, const char *want)
{
	char path[600];
	json_t *j;
	bool ok;

	snprintf(path, sizeof(path), "%s/agent%d/agent.state", cl.dir, i + 1);
	j = json_load_file(path, 0, NULL);
	ok = j &&
	     strcmp(json_string_value(json_object_get(j, "state")), want) == 0;
	json_decref(j);
	return ok;
}

static bool agents_in_state(void *arg)
{
	for (int i = 0; i < 3; i++)
		if (!agent_in_state(i, arg))
			return false;
	return true;
}

/* Every agent holds a lease and stamps its DSM messages with its
 * incarnation again. */
static bool agents_stamp_incarnation(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		if (agent_state_int(i, "dsm_id") < 0 ||
		    agent_state_int(i, "dsm_epoch") !=
			    agent_state_int(i, "incarnation"))
			return false;
	return agents_in_state("registered");
}

/* No agent is fenced: each still stamps its incarnation on its DSM
 * messages. */
static bool none_fenced(void)
{
	for (int i = 0; i < 3; i++)
		if (agent_in_state(i, "fenced") ||
		    agent_state_int(i, "dsm_epoch") !=
			    agent_state_int(i, "incarnation"))
			return false;
	return true;
}

/* A paused manager cannot renew leases, but the agents, none of which
 * hears it, vouch for each other (docs/fault-tolerance.md, peer leases):
 * nobody fences however long the pause lasts (here twice the lease), and
 * when it answers again every agent is registered as the incarnation it
 * was. */
/* Every agent knows the whole cell and can reach every other node over
 * the DSM (so it can ask everyone for votes, and answer them: a node
 * dials only the peers whose address the manager gave it, which comes a
 * heartbeat after they registered; a pause before that leaves a node
 * that nobody can ask and that can ask nobody). */
static bool views_complete(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		if (agent_state_int(i, "view_nodes") != 3 ||
		    agent_state_int(i, "dsm_peers") != 2)
			return false;
	return true;
}

static void test_cluster_manager_paused_agents_keep_running(void **state)
{
	char path[600];

	(void)state;
	assert_true(ts_wait_for(all_up, NULL, 10000));
	assert_true(ts_wait_for(agents_stamp_incarnation, NULL, 8000));
	assert_true(ts_wait_for(views_complete, NULL, 8000));
	kill(cl.manager, SIGSTOP);
	for (int t = 0; t < 40; t++) { /* 4 s, checked every 100 ms */
		usleep(100 * 1000);
		if (!none_fenced()) {
			kill(cl.manager, SIGCONT);
			fail_msg("an agent fenced %d ms into the manager's "
				 "pause",
				 (t + 1) * 100);
		}
	}
	kill(cl.manager, SIGCONT);
	assert_true(ts_wait_for(all_up, NULL, 8000));
	assert_true(ts_wait_for(agents_stamp_incarnation, NULL, 8000));
	snprintf(path, sizeof(path), "%s/agent1.log", cl.dir);
	assert_true(ts_file_has(path, "running on a peer lease"));
	for (int i = 0; i < 3; i++) {
		char *log;

		snprintf(path, sizeof(path), "%s/agent%d.log", cl.dir, i + 1);
		log = ts_read_file(path);
		assert_non_null(log);
		assert_null(strstr(log, "lease expired; fenced"));
		free(log);
	}
}

/* A misuse of cellctl: exit 2 and one line on stderr that contains
 * `names`. */
static void misuse(const char *a, const char *b, const char *c,
		   const char *names)
{
	char *argv[] = {CELLCTL_BIN, "--manager=127.0.0.1:1",
			(char *)a,   (char *)b,
			(char *)c,   NULL};
	char *out = NULL;

	int rc = ts_run(argv, 5000, &out, true);

	if (rc != 2) {
		fail_msg("cellctl %s %s %s exited %d: %s", a ? a : "",
			 b ? b : "", c ? c : "", rc, out);
	}
	if (!strstr(out, names) || strchr(out, '\n') != out + strlen(out) - 1)
		fail_msg("cellctl %s %s %s printed '%s', not one line naming "
			 "'%s'",
			 a ? a : "", b ? b : "", c ? c : "", out, names);
	free(out);
}

/* Every misuse prints one line naming what was wrong and exits 2. */
static void test_cluster_cellctl_misuse_one_line(void **state)
{
	(void)state;
	misuse("--bogus", "status", NULL, "unknown option '--bogus'");
	misuse("node", "list", "--bogus", "unknown option '--bogus'");
	misuse("--bogus=1", "status", NULL, "status takes no option --bogus");
	misuse("status", "extra", NULL, "status takes no arguments");
	misuse("vm", "info", NULL, "vm info takes more arguments");
	misuse(NULL, NULL, NULL, "no command given");
	misuse("node", "frobnicate", NULL, "unknown command 'node frobnicate'");
	misuse("--timeout", NULL, NULL, "--timeout needs a value");
}

/* Runs cellctl against a dead manager: exit 3 means the words parsed
 * (the request was about to go out). */
static int against_dead(const char *const *words, char **out)
{
	char *argv[16] = {CELLCTL_BIN, "--manager=127.0.0.1:1"};
	int n = 2;

	for (; *words && n < 15; words++)
		argv[n++] = (char *)*words;
	argv[n] = NULL;
	return ts_run(argv, 5000, out, true);
}

/* Sizes: 1T is a size for --memory and for disks (binary units, up to
 * the limits the manager checks); a bare number is bytes for a disk and
 * refused for --memory; counts are plain numbers. */
static void test_cluster_cellctl_sizes(void **state)
{
	char *out = NULL;

	(void)state;
	assert_int_equal(
		against_dead((const char *const[]){"vm", "create", "x",
						   "--cell=c", "--image=i",
						   "--memory=1T", NULL},
			     NULL),
		3);
	assert_int_equal(against_dead((const char *const[]){"disk", "create",
							    "d4", "1T", NULL},
				      NULL),
			 3);
	assert_int_equal(against_dead((const char *const[]){"disk", "create",
							    "d5", "4096", NULL},
				      NULL),
			 3);
	assert_int_equal(
		against_dead((const char *const[]){"vm", "create", "x",
						   "--cell=c", "--image=i",
						   "--memory=64", NULL},
			     &out),
		2);
	assert_non_null(strstr(out, "--memory '64' needs a unit"));
	free(out);
	assert_int_equal(
		against_dead((const char *const[]){"vm", "create", "x",
						   "--cell=c", "--image=i",
						   "--vcpus=4K", NULL},
			     &out),
		2);
	assert_non_null(strstr(out, "--vcpus '4K' is not a count"));
	free(out);
}

/* cellctl against a dead manager exits 3 naming the address; usage
 * errors exit 2; unknown names exit 4. */
static void test_cluster_cellctl_errors_exit_codes(void **state)
{
	char *out = NULL;
	char *dead[] = {CELLCTL_BIN, "--manager=127.0.0.1:1", "node", "list",
			NULL};
	char *usage[] = {CELLCTL_BIN, "node", "frobnicate", NULL};
	char mgr[100];
	char *missing[] = {CELLCTL_BIN, mgr, "node", "info", "ghost", NULL};

	(void)state;
	assert_int_equal(ts_run(dead, 5000, &out, true), 3);
	assert_non_null(strstr(out, "127.0.0.1:1"));
	free(out);
	assert_int_equal(ts_run(usage, 5000, NULL, false), 2);
	assert_true(ts_wait_for(all_up, NULL, 10000));
	snprintf(mgr, sizeof(mgr), "--manager=%s", cl.ctl_addr);
	assert_int_equal(ts_run(missing, 5000, &out, true), 4);
	assert_non_null(strstr(out, "ghost"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cluster_three_agents_up,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_cluster_agent_killed_down_then_new_incarnation,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_cluster_manager_killed_state_kept, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_cluster_manager_paused_agents_keep_running, setup,
			teardown),
		cmocka_unit_test(test_cluster_cellctl_misuse_one_line),
		cmocka_unit_test(test_cluster_cellctl_sizes),
		cmocka_unit_test_setup_teardown(
			test_cluster_cellctl_errors_exit_codes, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
