/*
 * Integration: DSM node processes (dsm_node_proc) on loopback.
 *
 *  - 4 nodes x 2 threads of random tagged reads and writes: no lost write,
 *    no slot going backwards, identical memory everywhere at the end;
 *  - a counter incremented 10,000 times under the DSM lock by 4 nodes
 *    ends at exactly 40,000;
 *  - 2 nodes writing one page for 10 s both make progress, and the time
 *    window cuts the page transfers (both figures printed);
 *  - a process attached through the hand-off is killed in the middle of
 *    a fault storm (the other node keeps taking every page away): the
 *    node logs it and another attached process carries on with correct
 *    data.
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

#include "testsupport.h"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = ts_tmpdir("cellmon-dsm");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ts_kill_all();
	if (getenv("CELLMON_KEEP_TEST_DIR"))
		fprintf(stderr, "test dir kept: %s\n", dir);
	else
		ts_rmtree(dir);
	free(dir);
	return 0;
}

/* Starts one dsm_node_proc; its output goes to DIR/<log>. */
static pid_t spawn_proc(const char *mode, int id, int nnodes, const char *a1,
			const char *a2, const char *log)
{
	char ids[16], nn[16], path[600];
	char *argv[] = {DSM_NODE_PROC_BIN, (char *)mode, ids, nn, dir,
			(char *)a1,	   (char *)a2,	 NULL};

	snprintf(ids, sizeof(ids), "%d", id);
	snprintf(nn, sizeof(nn), "%d", nnodes);
	snprintf(path, sizeof(path), "%s/%s", dir, log);
	return ts_spawn(argv, path);
}

/* Starts `n` node processes in `mode`; returns how many exited 0 within
 * timeout_ms. Their output goes to DIR/out.ID. */
static int run_nodes(const char *mode, int n, const char *extra,
		     unsigned timeout_ms)
{
	pid_t pids[8];
	int ok = 0;

	/* A fresh rendezvous directory for every run: no stale ports. */
	for (int i = 0; i < n; i++) {
		char path[600];

		snprintf(path, sizeof(path), "%s/port.%d", dir, i);
		unlink(path);
		snprintf(path, sizeof(path), "%s/ready.%d", dir, i);
		unlink(path);
		snprintf(path, sizeof(path), "%s/out.%d", dir, i);
		unlink(path);
	}

	for (int i = 0; i < n; i++) {
		char log[32];

		snprintf(log, sizeof(log), "out.%d", i);
		pids[i] = spawn_proc(mode, i, n, extra, NULL, log);
		assert_true(pids[i] > 0);
	}
	/* ts_stop with signal 0 only waits; it kills at the deadline and
	 * forgets the process either way. */
	for (int i = 0; i < n; i++) {
		int st = ts_stop(pids[i], 0, timeout_ms);

		if (st == -1)
			fprintf(stderr, "node %d timed out\n", i);
		else
			ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	ts_kill_all();
	return ok;
}

static char *out_of(int id)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/out.%d", dir, id);
	return ts_read_file(path);
}

static void print_outputs(int n)
{
	for (int i = 0; i < n; i++) {
		char *o = out_of(i);

		printf("--- node %d ---\n%s", i, o ? o : "(none)\n");
		free(o);
	}
}

/* Random tagged traffic from 4 nodes stays coherent. */
static void test_dsm_stress_four_nodes_coherent(void **state)
{
	char first[32] = "";

	(void)state;
	int ok = run_nodes("stress", 4, "ops=20000", 120000);

	print_outputs(4);
	assert_int_equal(ok, 4);
	for (int i = 0; i < 4; i++) {
		char path[600], *h;

		snprintf(path, sizeof(path), "%s/hash.%d", dir, i);
		h = ts_read_file(path);
		assert_non_null(h);
		if (!first[0])
			snprintf(first, sizeof(first), "%s", h);
		assert_string_equal(h, first);
		free(h);
	}
}

/* 4 x 10,000 increments under the DSM lock give exactly 40,000. */
static void test_dsm_lock_counter_exact(void **state)
{
	char *o;

	(void)state;
	int ok = run_nodes("counter", 4, "incr=10000", 240000);

	print_outputs(1);
	assert_int_equal(ok, 4);
	o = out_of(0);
	assert_non_null(strstr(o, "counter 40000 expected 40000"));
	free(o);
}

static long field(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? atol(p + strlen(key)) : -1;
}

/* Two writers on one page make progress; the window cuts transfers. */
static void test_dsm_pingpong_progress_window_cuts_transfers(void **state)
{
	long transfers[2] = {0, 0};
	const char *cfg[2] = {"window=0", "window=5"};

	(void)state;
	for (int c = 0; c < 2; c++) {
		/* dsm_node_proc writes for secs=10 by default. */
		assert_int_equal(run_nodes("pingpong", 2, cfg[c], 60000), 2);
		for (int i = 0; i < 2; i++) {
			char *o = out_of(i);

			printf("%s", o);
			assert_true(field(o, "writes=") > 0);
			transfers[c] += field(o, "pages_received=");
			free(o);
		}
	}
	printf("page transfers in 10 s: %ld without the time window, %ld "
	       "with a 5 ms window\n",
	       transfers[0], transfers[1]);
	assert_true(transfers[1] < transfers[0]);
}

static bool file_has(const char *path, const char *needle)
{
	char *t = ts_read_file(path);
	bool ok = t && strstr(t, needle);

	free(t);
	return ok;
}

static bool attached_twice(void *arg)
{
	char a[600], b[600];

	(void)arg;
	snprintf(a, sizeof(a), "%s/att.1", dir);
	snprintf(b, sizeof(b), "%s/att.2", dir);
	return file_has(a, "attached") && file_has(b, "attached");
}

/* Killing an attached process mid-storm leaves the node and the other
 * attached process working. */
static void test_dsm_attached_process_killed_others_carry_on(void **state)
{
	pid_t nodes[2], att[2];
	char log[600];
	int st;

	(void)state;
	for (int i = 0; i < 2; i++) {
		snprintf(log, sizeof(log), "out.%d", i);
		nodes[i] =
			spawn_proc("serve", i, 2,
				   i == 1 ? "churn=1" : "churn=0", NULL, log);
	}
	/* Attachers use ids 1 and 2 as the word they own in every page. */
	for (int i = 0; i < 2; i++) {
		snprintf(log, sizeof(log), "att.%d", i + 1);
		att[i] = spawn_proc("attach", i + 1, 2,
				    i == 0 ? "secs=30" : "secs=4", "pages=64",
				    log);
	}
	assert_true(ts_wait_for(attached_twice, NULL, 10000));
	usleep(500000);
	ts_stop(att[0], SIGKILL, 2000);
	st = ts_stop(att[1], 0, 20000); /* signal 0: just wait */
	snprintf(log, sizeof(log), "%s/att.2", dir);
	{
		char *o = ts_read_file(log);

		printf("%s", o ? o : "");
		free(o);
	}
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_true(file_has(log, "rounds ok"));
	snprintf(log, sizeof(log), "%s/out.0", dir);
	assert_true(file_has(log, "detached"));
	for (int i = 0; i < 2; i++)
		assert_int_equal(kill(nodes[i], 0), 0); /* still alive */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_dsm_stress_four_nodes_coherent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsm_lock_counter_exact,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_pingpong_progress_window_cuts_transfers, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_attached_process_killed_others_carry_on, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
