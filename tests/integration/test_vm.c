/*
 * Integration: VMs with the native engine on a real manager and three
 * agents (loopback, ephemeral ports), driven through cellctl.
 *
 *  - the SPMD guest with 3 vCPUs spread over 3 nodes prints the checksum
 *    of the same program run as a plain process; packed on one node, the
 *    same checksum;
 *  - 4 vCPUs on 3 nodes add to one counter under a guest lock: exact;
 *  - a VM larger than the cell is refused (exit 6) naming the filter, and
 *    bad input (unknown cell, zero or absurd memory, duplicate name, zero
 *    vCPUs) gets a clear error and leaves no VM behind;
 *  - vm kill ends every vCPU process on every node; vm stop too;
 *  - a guest cannot map another VM's memory;
 *  - a guest that crashes (abort) marks the VM failed with the signal, and
 *    one exiting non-zero with the status;
 *  - kill -9 of the manager and a restart: the VM record is kept and the
 *    running VM keeps running (same vCPU pids).
 *
 * Every process is started through tests/support and killed at exit.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cell/fault.h"
#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

static struct tsc_cluster cl;

/* cellctl with up to 12 words; returns its exit code, output in *out. */

#define CTL(out, ...) TSC_CTL(&cl, out, __VA_ARGS__)

static json_t *vm_json(const char *name)
{
	return tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			    TSC_WORDS("vm", "info", name));
}

static char want_state[32], want_vm[64];

static bool vm_in_state(void *arg)
{
	json_t *j = vm_json(want_vm);
	bool ok = j && strcmp(json_string_value(json_object_get(j, "state")),
			      want_state) == 0;

	(void)arg;
	json_decref(j);
	return ok;
}

static bool wait_vm(const char *name, const char *state, unsigned ms)
{
	snprintf(want_vm, sizeof(want_vm), "%s", name);
	snprintf(want_state, sizeof(want_state), "%s", state);
	return ts_wait_for(vm_in_state, NULL, ms);
}

static int setup(void **state)
{
	static const struct tsc_cluster_opts o = {
		.nodes = 3,
		.cell = "c1",
		.agent_args = {"--cpus=4", "--reconnect-max=300ms",
			       "--stop-grace=1s",
			       "--metrics-listen=127.0.0.1:0"},
		.manager_args = {"--metrics-listen=127.0.0.1:0"},
	};

	return tsc_cluster_setup(state, &cl, "cellmon-vm", &o);
}

/* The checksum line's value in text, or "". */
static const char *checksum_of(const char *text)
{
	static char sum[32];
	const char *p = text ? strstr(text, "checksum=") : NULL;

	sum[0] = '\0';
	if (p)
		sscanf(p, "checksum=%31[0-9a-f]", sum);
	return sum;
}

static char *reference_checksum(void)
{
	char *argv[] = {GUEST_IMAGES "/spmd", "128", "10", NULL};
	char *out = NULL, *sum;

	assert_int_equal(ts_run(argv, 30000, &out, true), 0);
	sum = strdup(checksum_of(out));
	free(out);
	assert_true(strlen(sum) == 16);
	return sum;
}

static size_t deps_count(const char *vm)
{
	json_t *j = vm_json(vm);
	size_t n = json_array_size(json_object_get(j, "deps"));

	json_decref(j);
	return n;
}

static void run_spmd(const char *name, const char *placement, const char *want)
{
	char *out = NULL;

	assert_int_equal(CTL(&out, "vm", "create", name, "--cell=c1",
			     "--image=spmd", "--vcpus=3", "--memory=8M",
			     placement, "--start", "--", "128", "10"),
			 0);
	free(out);
	assert_true(wait_vm(name, "stopped", 30000));
	assert_int_equal(CTL(&out, "vm", "console", name), 0);
	assert_string_equal(checksum_of(out), want);
	free(out);
}

static long long stats_sum(const char *vm, const char *key);

/* Spread over 3 nodes and packed on one: both give the reference. */
static void test_vm_spmd_checksum_spread_and_packed(void **state)
{
	char *ref = reference_checksum(), *out = NULL;

	(void)state;
	run_spmd("spread", "--placement=spread", ref);
	assert_int_equal(deps_count("spread"), 3);
	run_spmd("packed", "--placement=pack", ref);
	assert_int_equal(deps_count("packed"), 1);
	/* The spread run moved pages between nodes (its grids are one
	 * interleave stripe, homed on one node: the others fault them in) */
	assert_true(stats_sum("spread", "remote_faults") > 0);
	(void)out;
	free(ref);
}

/* vm pages --svg: from one reply, the JSON and the picture: the SVG is
 * well-formed XML with one square per range of the map, each coloured
 * for (and naming) the node that homes most of that range. */
static void check_svg(const char *vm)
{
	char path[700], opt[720], want[200], py[900];
	char *argv[] = {"/usr/bin/python3", "-c", py, NULL};
	char *svg, *out = NULL;
	json_t *j, *names, *g;
	size_t i, n = 0;

	snprintf(path, sizeof(path), "%s/%s.svg", cl.dir, vm);
	snprintf(opt, sizeof(opt), "--svg=%s", path);
	assert_int_equal(CTL(&out, "-o", "json", "vm", "pages", vm, opt), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	free(out);
	svg = ts_read_file(path);
	assert_non_null(svg);
	names = json_object_get(j, "map_nodes");
	json_array_foreach(json_object_get(j, "ranges"), i, g)
	{
		json_t *homed = json_object_get(g, "homed");
		size_t best = 0, k;
		json_t *h;

		json_array_foreach(
			homed, k,
			h) if (json_integer_value(h) >
			       json_integer_value(json_array_get(homed, best)))
			best = k;
		snprintf(want, sizeof(want),
			 "data-first=\"%lld\" data-home=\"%s\"",
			 (long long)json_integer_value(
				 json_object_get(g, "first")),
			 json_string_value(json_array_get(names, best)));
		if (!strstr(svg, want))
			fail_msg("the svg has no '%s'", want);
		n++;
	}
	assert_true(n > 0);
	for (char *p = svg; (p = strstr(p, "class=\"range\"")); p++)
		n--;
	assert_int_equal(n, 0); /* one square per range, no more */
	snprintf(py, sizeof(py),
		 "import xml.etree.ElementTree as E; E.parse('%s')", path);
	assert_int_equal(ts_run(argv, 30000, NULL, true), 0);
	printf("# %s: %zu ranges drawn\n", path,
	       json_array_size(json_object_get(j, "ranges")));
	free(svg);
	json_decref(j);
}

/* Pages node n homes for vm, live (vm stats), or -1. */
static long long homed_on(const char *vm, const char *node)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("vm", "stats", vm)),
	       *n;
	long long h = -1;
	size_t i;

	json_array_foreach(
		json_object_get(j, "nodes"), i,
		n) if (strcmp(json_string_value(json_object_get(n, "node")),
			      node) == 0) h =
		json_integer_value(json_object_get(n, "pages_homed"));
	json_decref(j);
	return h;
}

/* Pages vm pages' map says node homes for vm (-1: no map). */
static long long map_homed_on(const char *vm, const char *node)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("vm", "pages", vm)),
	       *n, *g;
	long long sum = -1;
	size_t i, k = SIZE_MAX;

	json_array_foreach(json_object_get(j, "map_nodes"), i,
			   n) if (strcmp(json_string_value(n), node) == 0) k =
		i;
	json_array_foreach(json_object_get(j, "ranges"), i, g)
	{
		if (sum < 0)
			sum = 0;
		sum += json_integer_value(
			json_array_get(json_object_get(g, "homed"), k));
	}
	json_decref(j);
	return k == SIZE_MAX ? -1 : sum;
}

/* The page policy end to end: a vCPU on node1 working on a 2 MiB slice
 * of a VM whose every page is homed on node2. With the default policy
 * (all) the homes of the pages it uses move to node1 within a few
 * sample intervals; with --page-policy=off none moves; vm set turns it
 * on for the running VM. The guest checks its slice itself. */
static void test_vm_page_policy_moves_homes_to_user(void **state)
{
	char *out = NULL;
	long long h = -1;
	uint64_t t0;

	(void)state;
	assert_int_equal(CTL(&out, "vm", "create", "pp", "--cell=c1",
			     "--image=private", "--memory=8M", "--node=node1",
			     "--home-node=node2", "--start", "--", "2048",
			     "100000000"),
			 0);
	free(out);
	assert_int_equal(CTL(&out, "vm", "create", "ppoff", "--cell=c1",
			     "--image=private", "--memory=8M", "--node=node1",
			     "--home-node=node2", "--page-policy=off",
			     "--start", "--", "2048", "100000000"),
			 0);
	free(out);
	t0 = ts_now_ms();
	while (ts_now_ms() - t0 < 20000 && (h = homed_on("pp", "node1")) < 512)
		usleep(200 * 1000);
	printf("# pages homed on node1 after %llu ms: %lld (slice: 512)\n",
	       (unsigned long long)(ts_now_ms() - t0), h);
	assert_true(h >= 512);
	assert_int_equal(homed_on("ppoff", "node1"), 0);
	/* vm pages' map says the same, for the off VM too (its rounds only
	 * keep the map) */
	for (uint64_t t1 = ts_now_ms();
	     map_homed_on("pp", "node1") < 512 && ts_now_ms() - t1 < 5000;)
		usleep(200 * 1000);
	assert_true(map_homed_on("pp", "node1") >= 512);
	for (uint64_t t1 = ts_now_ms();
	     map_homed_on("ppoff", "node2") < 2048 && ts_now_ms() - t1 < 5000;)
		usleep(200 * 1000);
	assert_int_equal(map_homed_on("ppoff", "node2"), 2048); /* 8 MiB */
	assert_int_equal(map_homed_on("ppoff", "node1"), 0);
	/* vm pages says what was done, in text and JSON */
	assert_int_equal(CTL(&out, "vm", "pages", "pp"), 0);
	assert_non_null(strstr(out, "page policy all"));
	assert_non_null(strstr(out, "where its memory lives"));
	free(out);
	{
		json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
					 TSC_WORDS("vm", "pages", "pp"));

		assert_true(json_integer_value(json_object_get(j, "moves")) >=
			    512);
		assert_true(json_integer_value(json_object_get(j, "applied")) >=
			    512);
		assert_true(json_integer_value(json_object_get(j, "rounds")) >=
			    1);
		json_decref(j);
		j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("vm", "pages", "ppoff"));
		assert_int_equal(
			json_integer_value(json_object_get(j, "moves")), 0);
		json_decref(j);
	}
	check_svg("pp");
	assert_int_equal(CTL(NULL, "vm", "pages", "nosuch"), 4);
	assert_int_equal(CTL(&out, "vm", "info", "ppoff"), 0);
	assert_non_null(strstr(out, "pages:     off"));
	free(out);
	/* turned on while it runs */
	assert_int_equal(CTL(&out, "vm", "set", "ppoff", "page-policy=all"), 0);
	assert_non_null(strstr(out, "pages:     all"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "set", "ppoff", "page-policy=some"),
			 2);
	assert_int_equal(CTL(NULL, "vm", "set", "nosuch", "page-policy=all"),
			 4);
	t0 = ts_now_ms();
	while (ts_now_ms() - t0 < 20000 &&
	       (h = homed_on("ppoff", "node1")) < 512)
		usleep(200 * 1000);
	assert_true(h >= 512);
	/* a VM created without --page-policy gets its cell's */
	assert_int_equal(
		CTL(&out, "cell", "set", "c1", "page-policy=replicate"), 0);
	assert_non_null(strstr(out, "pages:    replicate"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "create", "ppcell", "--cell=c1",
			     "--image=private"),
			 0);
	assert_non_null(strstr(out, "pages:     replicate"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "ppcell"), 0);
	assert_int_equal(CTL(NULL, "cell", "set", "c1", "page-policy=all"), 0);
	for (int i = 0; i < 2; i++) {
		const char *vm = i ? "ppoff" : "pp";

		assert_int_equal(CTL(NULL, "vm", "stop", vm), 0);
		assert_int_equal(CTL(&out, "vm", "console", vm), 0);
		if (strstr(out, "changed"))
			fail_msg("vm %s's guest saw its slice change:\n%s", vm,
				 out);
		free(out);
		assert_int_equal(CTL(NULL, "vm", "delete", vm), 0);
	}
}

/* key of vm stats summed over the VM's nodes. */
static long long stats_sum(const char *vm, const char *key)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("vm", "stats", vm)),
	       *n;
	long long s = 0;
	size_t i;

	json_array_foreach(json_object_get(j, "nodes"), i, n) s +=
		json_integer_value(json_object_get(n, key));
	json_decref(j);
	return s;
}

static long long pages_field(const char *vm, const char *key)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("vm", "pages", vm));
	long long v = json_integer_value(json_object_get(j, key));

	json_decref(j);
	return v;
}

/* Remote faults per page of data received over a window of 2 s of vm's
 * run (a frame moves the same pages whatever the policy did, so this
 * does not depend on how fast each VM runs). */
static double faults_per_transfer(const char *vm, long long *transfers)
{
	long long f0 = stats_sum(vm, "remote_faults"),
		  t0 = stats_sum(vm, "transfers");

	usleep(2000 * 1000);
	*transfers = stats_sum(vm, "transfers") - t0;
	return *transfers ? (double)(stats_sum(vm, "remote_faults") - f0) /
				    (double)*transfers
			  : 0;
}

/* A scene read by vCPUs on three nodes and rewritten by vCPU 0 before
 * each frame (readshare with frames), with the policy on and off at
 * once. On: its pages are replicated on the readers (vm pages counts the
 * pushes, the homes push copies) and, once the policy has run, the
 * readers' copies arrive ahead of their faults: remote faults per page
 * moved fall to under 2/3 of the off VM's. Both guests check after
 * every frame that all vCPUs read the same scene (a guest that finds
 * otherwise exits 1 and fails its VM): both are still in their first
 * run when stopped. */
static void test_vm_page_policy_replicates_read_shared(void **state)
{
	char *out = NULL;
	const char *vm[2] = {"rson", "rsoff"};
	double rate[2];
	long long moved[2];

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(
			CTL(&out, "vm", "create", vm[i], "--cell=c1",
			    "--image=readshare", "--vcpus=3", "--memory=4M",
			    "--placement=spread",
			    i ? "--page-policy=off" : "--page-policy=all",
			    "--start", "--", "256", "2", "100000"),
			0);
		free(out);
	}
	assert_true(wait_vm("rson", "running", 10000));
	assert_true(wait_vm("rsoff", "running", 10000));
	for (uint64_t t0 = ts_now_ms();
	     pages_field("rson", "rounds") < 3 && ts_now_ms() - t0 < 30000;)
		usleep(200 * 1000);
	for (int i = 0; i < 2; i++)
		rate[i] = faults_per_transfer(vm[i], &moved[i]);
	printf("# remote faults per page received: policy all %.3f (%lld "
	       "pages), off %.3f (%lld pages); %lld replica marks, %lld "
	       "copies pushed\n",
	       rate[0], moved[0], rate[1], moved[1],
	       pages_field("rson", "pushes"), stats_sum("rson", "pushes"));
	assert_true(moved[0] > 0 && moved[1] > 0);
	/* off: a fault for every few pages (prefetch brings runs of the
	 * scene when a reader's misses are sequential); on: the pushes
	 * arrive ahead of the faults. 0.20 against 0.41 here. */
	assert_true(rate[1] > 0.2);
	assert_true(rate[0] < rate[1] * 2 / 3);
	assert_true(pages_field("rson", "pushes") > 0);
	assert_true(stats_sum("rson", "pushes") > 0);
	assert_int_equal(stats_sum("rsoff", "pushes"), 0);
	for (int i = 0; i < 2; i++) {
		json_t *j = vm_json(vm[i]);
		bool ok = strcmp(json_string_value(json_object_get(j, "state")),
				 "running") == 0 &&
			  json_integer_value(json_object_get(j, "runs")) == 1;

		json_decref(j);
		assert_int_equal(CTL(&out, "vm", "console", vm[i]), 0);
		if (!ok || strstr(out, "read "))
			fail_msg("vm %s failed or its readers disagreed:\n%s",
				 vm[i], out);
		free(out);
		assert_int_equal(CTL(NULL, "vm", "stop", vm[i]), 0);
		assert_int_equal(CTL(NULL, "vm", "delete", vm[i]), 0);
	}
}

/* 4 vCPUs on 3 nodes, 500 locked increments each: exactly 2000. */
static void test_vm_lock_counter_exact(void **state)
{
	char *out = NULL;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "count", "--cell=c1",
			     "--image=testguest", "--vcpus=4", "--start", "--",
			     "counter", "500"),
			 0);
	assert_true(wait_vm("count", "stopped", 60000));
	assert_int_equal(CTL(&out, "vm", "console", "count"), 0);
	assert_non_null(strstr(out, "testguest: counter=2000\n"));
	free(out);
}

/* A counter page written under a lock by vCPUs on three nodes is
 * write-shared: the page policy leaves it where it is and vm pages
 * lists it with its writers; the count is exact. */
static void test_vm_write_shared_counter_left(void **state)
{
	char *out = NULL;
	json_t *j, *shared, *e = NULL, *it;
	size_t i;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "wsc", "--cell=c1",
			     "--image=testguest", "--vcpus=3", "--start", "--",
			     "counter", "5000"),
			 0);
	assert_true(wait_vm("wsc", "stopped", 120000));
	assert_int_equal(CTL(&out, "vm", "console", "wsc"), 0);
	assert_non_null(strstr(out, "testguest: counter=15000\n"));
	free(out);
	j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			 TSC_WORDS("vm", "pages", "wsc"));
	printf("# rounds %lld, moves %lld, write-shared pages %zu\n",
	       json_integer_value(json_object_get(j, "rounds")),
	       json_integer_value(json_object_get(j, "moves")),
	       json_array_size(json_object_get(j, "shared")));
	shared = json_object_get(j, "shared");
	json_array_foreach(
		shared, i,
		it) if (json_integer_value(json_object_get(it, "page")) == 0)
		e = it;
	if (json_integer_value(json_object_get(j, "rounds")) < 1)
		fail_msg("no sample round ran in the counter's run");
	assert_non_null(e); /* the counter's page */
	assert_true(json_array_size(json_object_get(e, "writers")) >= 2);
	assert_true(json_array_size(json_object_get(e, "vcpus")) >= 2);
	json_decref(j);
	assert_int_equal(CTL(&out, "vm", "pages", "wsc"), 0);
	assert_non_null(strstr(out, "write-shared pages"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "wsc"), 0);
}

static bool has_vm(const char *name)
{
	char *out = NULL;
	bool found;

	assert_int_equal(CTL(&out, "vm", "list"), 0);
	found = strstr(out, name) != NULL;
	free(out);
	return found;
}

/* The metrics port an agent wrote in its agent.state; 0 if none. */
static int agent_metrics_port(int i)
{
	char path[700];
	json_t *j;
	int port;

	snprintf(path, sizeof(path), "%s/agent%d/agent.state", cl.dir, i + 1);
	j = json_load_file(path, 0, NULL);
	port = (int)json_integer_value(json_object_get(j, "metrics_port"));
	json_decref(j);
	return port;
}

/* The port of the manager's "metrics=host:port" line in manager.addr. */
static int manager_metrics_port(void)
{
	char path[700], *text, *p;
	int port = 0;

	snprintf(path, sizeof(path), "%s/manager/manager.addr", cl.dir);
	text = ts_read_file(path);
	p = text ? strstr(text, "\nmetrics=") : NULL;
	if (p && (p = strchr(p + 1, ':')))
		port = atoi(p + 1);
	free(text);
	return port;
}

/* GET /metrics on port, parsed (parse_metrics.py): its JSON. */
static json_t *scrape(int port)
{
	char *body = NULL, *js;
	json_t *j;

	assert_true(port > 0);
	assert_int_equal(ts_http_get(port, "/metrics", &body), 200);
	js = ts_parse_metrics(body);
	if (!js)
		fail_msg("the exposition did not parse:\n%s", body);
	j = json_loads(js, 0, NULL);
	assert_non_null(j);
	free(js);
	free(body);
	return j;
}

/* The value of sample `name` with label key=val (and no other condition)
 * summed over matches; -1 when none matches. */
static double sample_sum(json_t *j, const char *name, const char *key,
			 const char *val)
{
	double sum = -1;
	size_t i;
	json_t *s;

	json_array_foreach(json_object_get(j, "samples"), i, s)
	{
		const char *v = json_string_value(
			json_object_get(json_array_get(s, 1), key));

		if (strcmp(json_string_value(json_array_get(s, 0)), name) ||
		    (key && (!v || strcmp(v, val))))
			continue;
		sum = (sum < 0 ? 0 : sum) +
		      json_real_value(json_array_get(s, 2));
	}
	return sum;
}

/* Too large for the cell: exit 6 and the filter named; bad input: clear
 * errors; nothing is left behind. */
static void test_vm_bad_input_refused_nothing_left(void **state)
{
	char *out = NULL;
	json_t *j;

	(void)state;
	assert_int_equal(CTL(&out, "vm", "create", "huge", "--cell=c1",
			     "--image=spmd", "--vcpus=13"),
			 6);
	assert_non_null(strstr(out, "total: the usable nodes have 12 free"));
	free(out);
	/* counted by the filter that refused it */
	j = scrape(manager_metrics_port());
	assert_true(sample_sum(j, "cellmon_placement_refusals_total", "filter",
			       "cpus") >= 1);
	assert_true(sample_sum(j, "cellmon_placement_refusals_total", "filter",
			       "anti-affinity") == 0);
	json_decref(j);
	assert_int_equal(CTL(&out, "vm", "create", "fat", "--cell=c1",
			     "--image=spmd", "--memory=2T"),
			 1);
	assert_non_null(strstr(out, "memory must be"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "create", "nocell", "--cell=nope",
			     "--image=spmd"),
			 4);
	assert_non_null(strstr(out, "no cell 'nope'"));
	free(out);
	/* an image no node of the cell has: not found, not recorded */
	assert_int_equal(CTL(&out, "vm", "create", "ghost", "--cell=c1",
			     "--image=nosuch", "--start"),
			 4);
	assert_non_null(
		strstr(out, "no image 'nosuch' on any node of cell c1"));
	assert_non_null(strstr(out, " spmd"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "create", "zero", "--cell=c1",
			     "--image=spmd", "--memory=0"),
			 2);
	assert_int_equal(CTL(NULL, "vm", "create", "zero", "--cell=c1",
			     "--image=spmd", "--vcpus=0"),
			 2);
	assert_int_equal(CTL(&out, "vm", "create", "Bad/Name", "--cell=c1",
			     "--image=spmd"),
			 1);
	free(out);
	assert_int_equal(
		CTL(NULL, "vm", "create", "dup", "--cell=c1", "--image=spmd"),
		0);
	assert_int_equal(
		CTL(&out, "vm", "create", "dup", "--cell=c1", "--image=spmd"),
		5);
	assert_non_null(strstr(out, "exists"));
	free(out);
	/* a pending VM has nothing to stop or kill: said, not done */
	assert_int_equal(CTL(&out, "vm", "stop", "dup"), 1);
	assert_non_null(strstr(out, "never been started: nothing to stop"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "kill", "dup"), 1);
	assert_non_null(strstr(out, "nothing to kill"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "start", "nosuchvm"), 4);
	free(out);
	assert_false(has_vm("huge"));
	assert_false(has_vm("fat"));
	assert_false(has_vm("nocell"));
	assert_false(has_vm("zero"));
	assert_false(has_vm("ghost"));
	assert_int_equal(CTL(NULL, "vm", "delete", "dup"), 0);
	assert_false(has_vm("dup"));
}

/* The pids of a VM's vCPUs once every one is reported running. */
static int vm_pids(const char *name, pid_t *pids, int max)
{
	json_t *j = vm_json(name), *v;
	size_t i;
	int n = 0;

	json_array_foreach(json_object_get(j, "vcpus"), i, v)
	{
		pid_t pid =
			(pid_t)json_integer_value(json_object_get(v, "pid"));

		if (pid > 0 && n < max)
			pids[n++] = pid;
	}
	json_decref(j);
	return n;
}

static bool pids_gone(pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (kill(pids[i], 0) == 0 || errno != ESRCH)
			return false;
	return true;
}

static int wait_pids(const char *name, pid_t *pids, int want)
{
	int n = 0;

	for (int t = 0; t < 100 && n < want; t++) {
		n = vm_pids(name, pids, want);
		if (n < want)
			usleep(50 * 1000);
	}
	return n;
}

/* How many lines of a vCPU table say "running" with a pid; fails the
 * test on a running vCPU shown without one. */
static int running_pids_shown(const char *out)
{
	int n = 0;

	for (const char *l = out; l && *l;
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned vcpu;
		char node[64], st[32], pid[32];

		if (sscanf(l, "%u %63s %31s %31s", &vcpu, node, st, pid) != 4 ||
		    strcmp(st, "running") != 0)
			continue;
		if (atoi(pid) <= 0)
			fail_msg("vCPU %u on %s is running with pid '%s':\n%s",
				 vcpu, node, pid, out);
		n++;
	}
	return n;
}

/* vm kill and vm stop end every vCPU process on every node. */
static void test_vm_kill_and_stop_end_every_vcpu(void **state)
{
	pid_t pids[3];
	char *out = NULL;
	int i;

	(void)state;
	assert_int_equal(CTL(&out, "vm", "create", "sleeper", "--cell=c1",
			     "--image=testguest", "--vcpus=3", "--start", "--",
			     "sleep", "300"),
			 0);
	/* The answer to --start already shows each running vCPU's pid
	 * (issue 17: it said '-' until the next heartbeat). */
	assert_int_equal(running_pids_shown(out), 3);
	free(out);
	out = NULL;
	assert_int_equal(deps_count("sleeper"), 3);
	assert_int_equal(wait_pids("sleeper", pids, 3), 3);
	assert_false(pids_gone(pids, 3));
	assert_int_equal(CTL(&out, "vm", "kill", "sleeper"), 0);
	assert_non_null(strstr(out, "killed by request"));
	free(out);
	for (i = 0; i < 100 && !pids_gone(pids, 3); i++)
		usleep(20 * 1000);
	assert_true(pids_gone(pids, 3));
	/* Again with stop, through SIGTERM. */
	assert_int_equal(CTL(NULL, "vm", "start", "sleeper"), 0);
	assert_int_equal(wait_pids("sleeper", pids, 3), 3);
	assert_int_equal(CTL(&out, "vm", "stop", "sleeper"), 0);
	assert_non_null(strstr(out, "stopped"));
	free(out);
	for (i = 0; i < 100 && !pids_gone(pids, 3); i++)
		usleep(20 * 1000);
	assert_true(pids_gone(pids, 3));
}

/* A guest cannot map another VM's memory: the agent's hand-off check
 * refuses it (the guest exits 0 only on EACCES). */
static void test_vm_guest_cannot_map_other_vm(void **state)
{
	json_t *j;
	char region[32], *out = NULL;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "victim", "--cell=c1",
			     "--image=testguest", "--node=node2", "--start",
			     "--", "sleep", "300"),
			 0);
	j = vm_json("victim");
	snprintf(region, sizeof(region), "%lld",
		 (long long)json_integer_value(json_object_get(j, "region")));
	json_decref(j);
	assert_int_equal(CTL(NULL, "vm", "create", "thief", "--cell=c1",
			     "--image=testguest", "--node=node2", "--start",
			     "--", "attach", region),
			 0);
	assert_true(wait_vm("thief", "stopped", 10000));
	assert_int_equal(CTL(&out, "vm", "console", "thief"), 0);
	assert_non_null(strstr(out, "Permission denied"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "kill", "victim"), 0);
}

/* A native guest is confined (guest_confine, the default): from its VM's
 * own uid, in its own root and network, it cannot read a host file
 * (the agent's state file; /etc/passwd), write into its VM directory,
 * connect to a port on the host (the manager's), see another VM's vCPU
 * in /proc or signal it or its agent; each try fails, and the other
 * VM's vCPU is still running. */
static void test_vm_guest_confined(void **state)
{
	struct tsc_cluster *c = &cl;
	json_t *j, *vcpus;
	char file[900], port[16], pid[16], uid[64], *out = NULL;
	long long region;
	bool stopped;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "neighbour", "--cell=c1",
			     "--image=testguest", "--node=node2", "--start",
			     "--", "sleep", "300"),
			 0);
	j = vm_json("neighbour");
	vcpus = json_object_get(j, "vcpus");
	snprintf(pid, sizeof(pid), "%lld",
		 (long long)json_integer_value(
			 json_object_get(json_array_get(vcpus, 0), "pid")));
	json_decref(j);
	assert_true(atoi(pid) > 0);
	snprintf(file, sizeof(file), "%s/agent2/agent.state", c->dir);
	assert_int_equal(access(file, R_OK), 0);
	snprintf(port, sizeof(port), "%s", strrchr(c->ctl_addr, ':') + 1);
	assert_int_equal(CTL(NULL, "vm", "create", "escapee", "--cell=c1",
			     "--image=testguest", "--node=node2", "--start",
			     "--", "escape", file, port, pid),
			 0);
	stopped = wait_vm("escapee", "stopped", 10000);
	j = vm_json("escapee");
	region = (long long)json_integer_value(json_object_get(j, "region"));
	json_decref(j);
	assert_int_equal(CTL(&out, "vm", "console", "escapee"), 0);
	if (!stopped)
		fail_msg("the escapee did not stop with status 0:\n%s", out);
	snprintf(uid, sizeof(uid), "uid=%lld gid=%lld",
		 1879048192ll + (region >> 16) % 65536,
		 1879048192ll + (region >> 16) % 65536);
	if (!strstr(out, uid) || strstr(out, "ALLOWED") ||
	    !strstr(out, "open /etc/passwd: refused") ||
	    !strstr(out, "create /vm/x: refused") ||
	    !strstr(out, "connect 127.0.0.1:") ||
	    !strstr(out, "/environ: refused (No such file") ||
	    !strstr(out, "signal the agent: refused (Operation not "
			 "permitted)"))
		fail_msg("want every escape refused as %s:\n%s", uid, out);
	free(out);
	assert_string_equal(tsc_cluster_vm_state(c, "neighbour"), "running");
	assert_int_equal(CTL(NULL, "vm", "kill", "neighbour"), 0);
}

/* A vCPU dying of a signal (SIGABRT) fails the VM with the reason; the others
 * are ended too. */
static void test_vm_guest_crash_marks_failed(void **state)
{
	json_t *j;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "crasher", "--cell=c1",
			     "--image=testguest", "--vcpus=2", "--start", "--",
			     "crash"),
			 0);
	assert_true(wait_vm("crasher", "failed", 10000));
	j = vm_json("crasher");
	assert_non_null(strstr(json_string_value(json_object_get(j, "reason")),
			       "killed by signal 6"));
	json_decref(j);
	/* An exit status other than 0 fails it too. */
	assert_int_equal(CTL(NULL, "vm", "create", "exiter", "--cell=c1",
			     "--image=testguest", "--start", "--", "exit", "7"),
			 0);
	assert_true(wait_vm("exiter", "failed", 10000));
	j = vm_json("exiter");
	assert_non_null(strstr(json_string_value(json_object_get(j, "reason")),
			       "exited with status 7"));
	json_decref(j);
}

/* kill -9 of the manager: the restarted manager still has the VM, and the
 * VM kept running (same vCPU processes). */
static void test_vm_manager_restart_keeps_vm_running(void **state)
{
	pid_t before[2], after[2];

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "survivor", "--cell=c1",
			     "--image=testguest", "--vcpus=2", "--start", "--",
			     "sleep", "300"),
			 0);
	assert_int_equal(wait_pids("survivor", before, 2), 2);
	ts_stop(cl.manager, SIGKILL, 5000);
	tsc_cluster_manager(&cl, NULL);
	assert_true(tsc_cluster_wait_dsm(&cl, 3, 10000));
	assert_true(wait_vm("survivor", "running", 5000));
	assert_int_equal(wait_pids("survivor", after, 2), 2);
	assert_memory_equal(before, after, sizeof(before));
	assert_false(pids_gone(before, 2));
	assert_int_equal(CTL(NULL, "vm", "kill", "survivor"), 0);
}

/* A node whose agent refuses PREPARE (the agent.prepare fault point of a
 * test build) fails the start: cellctl exits 1, the VM is failed with the
 * node and its reason, no vCPU runs anywhere, and once the node is fixed
 * the same VM starts. */
static void test_vm_prepare_refused_fails_with_node_reason(void **state)
{
	const char *const env[] = {"CELLMON_FAULT=agent.prepare",
				   "CELLMON_FAULT_ACTION=error", NULL};
	json_t *j;
	char *out = NULL;
	pid_t none[3];
	int rc;

	(void)state;
	if (!cell_fault_points_built()) {
		printf("# SKIP: built without fault points "
		       "(-DCELLMON_FAULT_POINTS=ON, as tests/run builds)\n");
		skip();
	}
	tsc_cluster_agent_restart(&cl, 2, env);
	rc = CTL(&out, "vm", "create", "refused", "--cell=c1",
		 "--image=testguest", "--vcpus=3", "--start", "--", "sleep",
		 "300");
	if (rc != 1)
		fail_msg("cellctl exit %d: %s", rc, out);
	assert_non_null(strstr(out, "fault point agent.prepare"));
	free(out);
	j = vm_json("refused");
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")),
			    "failed");
	assert_non_null(strstr(json_string_value(json_object_get(j, "reason")),
			       "prepare on node3"));
	json_decref(j);
	assert_int_equal(vm_pids("refused", none, 3), 0);
	tsc_cluster_agent_restart(&cl, 2, NULL);
	assert_int_equal(CTL(NULL, "vm", "start", "refused"), 0);
	assert_true(wait_vm("refused", "running", 5000));
	assert_int_equal(CTL(NULL, "vm", "kill", "refused"), 0);
}

/* Run r of VM id on agent i (0-based): its directory exists. */
static bool run_dir_on(int i, long long id, int r)
{
	char path[1200];

	snprintf(path, sizeof(path), "%s/agent%d/vms/%lld/run%d", cl.dir, i + 1,
		 id, r);
	return access(path, F_OK) == 0;
}

static long long vm_id;

static bool no_files_anywhere(void *arg)
{
	char path[1200];

	(void)arg;
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/agent%d/vms/%lld", cl.dir,
			 i + 1, vm_id);
		if (access(path, F_OK) == 0)
			return false;
	}
	return true;
}

/* A 3-vCPU testguest VM `name` run to its end; its id. */
static long long run_to_end(const char *name)
{
	json_t *j;
	long long id;

	assert_int_equal(CTL(NULL, "vm", "create", name, "--cell=c1",
			     "--image=testguest", "--vcpus=3", "--start", "--",
			     "sleep", "1"),
			 0);
	assert_true(wait_vm(name, "stopped", 10000));
	j = vm_json(name);
	id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	return id;
}

/* Consoles belong to one run of one VM (by id), and deleting a VM
 * removes its files on every node: at once on the nodes that are up,
 * and on a node that was away when it registers again. A new VM of the
 * same name shows only its own runs (issue 17: a new `w` showed a
 * deleted `w`'s vCPU 1 console). */
static void test_vm_delete_removes_files_on_every_node(void **state)
{
	char *out = NULL;

	(void)state;
	vm_id = run_to_end("w");
	for (int i = 0; i < 3; i++)
		if (!run_dir_on(i, vm_id, 1))
			fail_msg("no run directory of vm %lld on node%d", vm_id,
				 i + 1);
	/* a second run keeps the first (the run before), shows its own */
	assert_int_equal(CTL(NULL, "vm", "start", "w"), 0);
	assert_true(wait_vm("w", "stopped", 10000));
	assert_true(run_dir_on(0, vm_id, 1) && run_dir_on(0, vm_id, 2));
	assert_int_equal(CTL(&out, "vm", "console", "w"), 0);
	assert_non_null(strstr(out, "testguest: vcpu 2 awake 0"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "w"), 0);
	assert_true(ts_wait_for(no_files_anywhere, NULL, 5000));

	/* node3 is away (killed) when the next one is deleted */
	vm_id = run_to_end("w");
	assert_true(run_dir_on(2, vm_id, 1));
	ts_stop(cl.agents[2], SIGKILL, 5000);
	assert_int_equal(CTL(NULL, "vm", "delete", "w"), 0);
	assert_true(run_dir_on(2, vm_id, 1));
	assert_true(tsc_cluster_agent(&cl, 2, NULL) > 0);
	assert_true(tsc_cluster_wait_dsm(&cl, 3, 15000));
	assert_true(ts_wait_for(no_files_anywhere, NULL, 5000));
}

/* vm delete right after the VM stopped on its own: while the manager
 * still releases the run on the nodes, the delete waits for that instead
 * of being refused; five times over. */
static void test_vm_delete_right_after_stop(void **state)
{
	char *out = NULL;

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(CTL(NULL, "vm", "create", "quick", "--cell=c1",
				     "--image=testguest", "--vcpus=3",
				     "--placement=spread", "--start", "--",
				     "exit", "0"),
				 0);
		assert_true(wait_vm("quick", "stopped", 10000));
		if (CTL(&out, "vm", "delete", "quick") != 0)
			fail_msg("delete %d after stopped: %s", i, out);
		free(out);
		out = NULL;
		assert_int_equal(CTL(NULL, "vm", "info", "quick"), 4);
	}
}

/* While a VM runs on three nodes, each agent's /metrics has its DSM
 * counters (labelled with the VM and the node), which pass the
 * Prometheus parser and never exceed what `vm stats` says just after
 * (the counters only grow); the manager's /metrics counts the nodes up
 * and the VM running. */
static void test_vm_metrics_match_stats(void **state)
{
	static const char *const keys[][2] = {
		{"cellmon_dsm_remote_faults_total", "remote_faults"},
		{"cellmon_dsm_pages_received_total", "transfers"},
		{"cellmon_dsm_read_faults_total", "read_faults"},
	};
	double got[3] = {0, 0, 0}, waited = 0, waited_s = 0;
	json_t *j;

	(void)state;
	assert_int_equal(CTL(NULL, "vm", "create", "met", "--cell=c1",
			     "--image=readshare", "--vcpus=3", "--memory=4M",
			     "--placement=spread", "--start", "--", "256", "2",
			     "100000"),
			 0);
	assert_true(wait_vm("met", "running", 10000));
	usleep(1000 * 1000);
	for (int i = 0; i < 3; i++) {
		j = scrape(agent_metrics_port(i));
		for (int k = 0; k < 3; k++) {
			double v = sample_sum(j, keys[k][0], "vm", "met");

			assert_true(v >= 0); /* every node has the series */
			got[k] += v;
		}
		assert_true(sample_sum(j, "cellmon_agent_lease_held", NULL,
				       NULL) == 1);
		waited += sample_sum(j,
				     "cellmon_dsm_fault_duration_seconds_count",
				     "vm", "met");
		waited_s +=
			sample_sum(j, "cellmon_dsm_fault_duration_seconds_sum",
				   "vm", "met");
		json_decref(j);
	}
	/* the fault-latency histogram saw the faults that waited, and
	 * their mean is a DSM fault's (microseconds, not seconds) */
	printf("# faults that waited: %.0f, mean %.1f us\n", waited,
	       waited > 0 ? 1e6 * waited_s / waited : 0);
	assert_true(waited > 0);
	assert_true(waited_s > 0 && waited_s / waited < 0.05);
	for (int k = 0; k < 3; k++) {
		long long st = stats_sum("met", keys[k][1]);

		printf("# %s: metrics %.0f, vm stats %lld\n", keys[k][0],
		       got[k], st);
		assert_true(got[k] > 0);
		assert_true(got[k] <= (double)st);
	}
	j = scrape(manager_metrics_port());
	assert_true(sample_sum(j, "cellmon_nodes", "state", "up") == 3);
	assert_true(sample_sum(j, "cellmon_vms", "state", "running") >= 1);
	assert_true(sample_sum(j, "cellmon_vm_runs_total", "vm", "met") == 1);
	assert_true(sample_sum(j, "cellmon_lease_grants_total", NULL, NULL) >
		    0);
	assert_true(sample_sum(j, "cellmon_events_total", "kind",
			       "vm-placed") >= 1);
	/* every kind of RPC error has its series, from 0 */
	assert_true(sample_sum(j, "cellmon_rpc_errors_total", "kind",
			       "timeout") >= 0);
	assert_true(sample_sum(j, "cellmon_rpc_errors_total", "kind",
			       "unknown-type") >= 0);
	json_decref(j);
	assert_int_equal(CTL(NULL, "vm", "kill", "met"), 0);
	assert_true(wait_vm("met", "stopped", 10000) ||
		    wait_vm("met", "failed", 1000));
	assert_int_equal(CTL(NULL, "vm", "delete", "met"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_spmd_checksum_spread_and_packed),
		cmocka_unit_test(test_vm_lock_counter_exact),
		cmocka_unit_test(test_vm_page_policy_moves_homes_to_user),
		cmocka_unit_test(test_vm_write_shared_counter_left),
		cmocka_unit_test(test_vm_page_policy_replicates_read_shared),
		cmocka_unit_test(test_vm_metrics_match_stats),
		cmocka_unit_test(test_vm_delete_right_after_stop),
		cmocka_unit_test(test_vm_bad_input_refused_nothing_left),
		cmocka_unit_test(test_vm_kill_and_stop_end_every_vcpu),
		cmocka_unit_test(test_vm_guest_crash_marks_failed),
		cmocka_unit_test(test_vm_guest_cannot_map_other_vm),
		cmocka_unit_test(test_vm_guest_confined),
		cmocka_unit_test(test_vm_manager_restart_keeps_vm_running),
		cmocka_unit_test(
			test_vm_prepare_refused_fails_with_node_reason),
		cmocka_unit_test(test_vm_delete_removes_files_on_every_node),
	};

	return cmocka_run_group_tests(tests, setup, tsc_cluster_teardown);
}
