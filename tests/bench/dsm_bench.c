/*
 * dsm-bench: DSM latencies and throughput on loopback, next to the floors
 * measured in the same run. Prints figures; never passes or fails on
 * time (exit status 1 only if something does not work at all).
 *
 *   dsm-bench [--samples=N] [--sweep-pages=N] [--sweep-runs=N]
 *             [--poll-us=N] [--wait-spin-us=N] [--prefetch=N]
 *             [--only=sweep] [--no-pin] [--json]
 *
 * Floors (dsm_floors.c): the best this machine does for each step alone
 * (TCP and uffd round trips, UFFDIO_COPY installs, a one-page
 * write-protect with the other CPU idle or busy), and the bare exchanges:
 * a read miss (from a home that downgrades, and from one that need not)
 * and an upgrade done by hand with only the steps the protocol cannot do
 * without, waiting as the nodes wait.
 * DSM (node 0 in this process, nodes 1 and 2 in forked processes, all
 * on loopback TCP; node 0's application thread takes the faults):
 *   read fault  remote read miss, data from the home (prefetch off)
 *   upgrade     write to a page shared with one other node
 *   invalidate  write to a page shared with two other nodes
 *   sweep       sequential read of a region homed elsewhere, pages/s,
 *               prefetch off and on; the median of --sweep-runs sweeps
 *   spin        read fault and upgrade again with wait_spin_us=200 (the
 *               nodes spin for replies), as a baseline in the same run
 *   ratio       read fault p50 / (tcp_rtt p50 + uffd_rtt p50); the bare
 *               read miss against the same sum; the read fault and the
 *               upgrade against their bare exchanges (the engine's cost)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cell/log.h"
#include "dsm/dsm.h"
#include "dsm_floors.h"

#define WORDS (DSM_PAGE / 8)

static int samples = 2000;
static int sweep_pages = 8192;
static int sweep_runs = 5;
static unsigned poll_us = 200;
static unsigned wait_spin_us; /* the nodes' wait_spin_us */
static int prefetch_max = 64;

/* ---- DSM: node 0 here, the other nodes in forked processes ---- */

struct cluster {
	int n;
	struct dsm_node *node;
	struct dsm_region *r;
	volatile uint64_t *m;
	size_t pages;
	pid_t pid[3];
	int to[3], from[3];
};

static void rd_all(int fd, void *buf, size_t len)
{
	must(read(fd, buf, len) == (ssize_t)len);
}

static void wr_all(int fd, const void *buf, size_t len)
{
	must(write(fd, buf, len) == (ssize_t)len);
}

static void join(int id, int n, uint32_t prefetch, size_t pages,
		 enum dsm_home_policy pol, uint16_t home, const int *ports,
		 struct dsm_node *node, struct dsm_region **r,
		 volatile uint64_t **m)
{
	uint16_t members[3] = {0, 1, 2};
	struct dsm_region_config rc = {1,    pages * DSM_PAGE, pol,
				       home, members,	       (uint16_t)n};
	char addr[64];

	(void)prefetch;
	for (int j = 0; j < n; j++) {
		if (j == id)
			continue;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports[j]);
		dsm_node_add_peer(node, (uint16_t)j, addr);
	}
	must(dsm_region_create(node, &rc, r) == 0);
	*m = dsm_region_map(*r);
	must(*m != NULL);
}

/* A remote node: obeys 'w' (write every page), 'r' (read every page)
 * and 'q' from the parent, acking each. */
static void remote_main(int id, int n, uint32_t prefetch, size_t pages,
			enum dsm_home_policy pol, uint16_t home, int rfd,
			int wfd)
{
	struct dsm_node_config cfg = {(uint16_t)id,
				      "127.0.0.1:0",
				      0,
				      prefetch,
				      poll_us,
				      1,
				      DSM_TRANSPORT_TCP,
				      0,
				      wait_spin_us};
	struct dsm_node *node;
	struct dsm_region *r;
	volatile uint64_t *m;
	int ports[3], port;
	char c;

	pin_host(HOST_REMOTE);
	must(dsm_node_create(&cfg, &node) == 0);
	port = dsm_node_port(node);
	wr_all(wfd, &port, sizeof(port));
	rd_all(rfd, ports, sizeof(ports));
	join(id, n, prefetch, pages, pol, home, ports, node, &r, &m);
	wr_all(wfd, "k", 1);
	while (read(rfd, &c, 1) == 1 && c != 'q') {
		for (size_t i = 0; i < pages; i++) {
			if (c == 'w')
				m[i * WORDS] = (uint64_t)i;
			else
				(void)m[i * WORDS];
		}
		wr_all(wfd, "k", 1);
	}
	dsm_region_destroy(r);
	dsm_node_destroy(node);
	_exit(0);
}

static void cluster_up(struct cluster *c, int n, uint32_t prefetch,
		       size_t pages, enum dsm_home_policy pol, uint16_t home)
{
	struct dsm_node_config cfg = {
		0, "127.0.0.1:0",     0, prefetch,    poll_us,
		1, DSM_TRANSPORT_TCP, 0, wait_spin_us};
	int ports[3] = {0, 0, 0};
	char k;

	c->n = n;
	c->pages = pages;
	/* Fork before this process has any thread of its own. */
	for (int i = 1; i < n; i++) {
		int down[2], up[2];

		must(pipe(down) == 0 && pipe(up) == 0);
		c->pid[i] = fork();
		must(c->pid[i] >= 0);
		if (c->pid[i] == 0) {
			close(down[1]);
			close(up[0]);
			remote_main(i, n, prefetch, pages, pol, home, down[0],
				    up[1]);
		}
		close(down[0]);
		close(up[1]);
		c->to[i] = down[1];
		c->from[i] = up[0];
	}
	pin_host(HOST_LOCAL); /* the node thread inherits it */
	must(dsm_node_create(&cfg, &c->node) == 0);
	ports[0] = dsm_node_port(c->node);
	for (int i = 1; i < n; i++)
		rd_all(c->from[i], &ports[i], sizeof(int));
	for (int i = 1; i < n; i++)
		wr_all(c->to[i], ports, sizeof(ports));
	join(0, n, prefetch, pages, pol, home, ports, c->node, &c->r, &c->m);
	for (int i = 1; i < n; i++)
		rd_all(c->from[i], &k, 1);
}

static void remote_cmd(struct cluster *c, int i, char cmd)
{
	char k;

	wr_all(c->to[i], &cmd, 1);
	rd_all(c->from[i], &k, 1);
}

static void cluster_down(struct cluster *c)
{
	for (int i = 1; i < c->n; i++) {
		char q = 'q';

		wr_all(c->to[i], &q, 1);
	}
	dsm_region_destroy(c->r);
	dsm_node_destroy(c->node);
	pin_host(HOST_ANY);
	for (int i = 1; i < c->n; i++) {
		waitpid(c->pid[i], NULL, 0);
		close(c->to[i]);
		close(c->from[i]);
	}
}

/* Remote read miss: node 1 owns every page (wrote it); node 0 reads. */
static struct pct dsm_read_fault(void)
{
	struct cluster c;
	uint64_t *ns = calloc((size_t)samples, sizeof(*ns));

	cluster_up(&c, 2, 1, (size_t)samples, DSM_POLICY_ONE, 1);
	remote_cmd(&c, 1, 'w');
	for (int i = 0; i < samples; i++) {
		uint64_t t0 = now_ns(), v;

		v = c.m[(size_t)i * WORDS];
		ns[i] = now_ns() - t0;
		must(v == (uint64_t)i);
	}
	cluster_down(&c);
	return percentiles(ns, samples);
}

/* Write to pages that `sharers` other nodes also read (home node 0). */
static struct pct dsm_upgrade(int sharers)
{
	struct cluster c;
	int n = samples / 2;
	uint64_t *ns = calloc((size_t)n, sizeof(*ns));

	cluster_up(&c, sharers + 1, 1, (size_t)n, DSM_POLICY_ONE, 0);
	for (int i = 0; i < n; i++)
		c.m[(size_t)i * WORDS] = 1;
	for (int s = 1; s <= sharers; s++)
		remote_cmd(&c, s, 'r');
	for (int i = 0; i < n; i++)
		(void)c.m[(size_t)i * WORDS];
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		c.m[(size_t)i * WORDS] = 2;
		ns[i] = now_ns() - t0;
	}
	cluster_down(&c);
	return percentiles(ns, n);
}

/* Sequential read of pages owned by node 1 and homed on node 1. */
static double dsm_sweep(uint32_t prefetch)
{
	struct cluster c;
	uint64_t t0, t1, sum = 0;

	cluster_up(&c, 2, prefetch, (size_t)sweep_pages, DSM_POLICY_ONE, 1);
	remote_cmd(&c, 1, 'w');
	t0 = now_ns();
	for (int i = 0; i < sweep_pages; i++)
		sum += c.m[(size_t)i * WORDS];
	t1 = now_ns();
	cluster_down(&c);
	must(sum == (uint64_t)sweep_pages * (uint64_t)(sweep_pages - 1) / 2);
	return (double)sweep_pages / ((double)(t1 - t0) / 1e9);
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

static double sweep_median(uint32_t prefetch)
{
	double v[64];

	for (int i = 0; i < sweep_runs; i++)
		v[i] = dsm_sweep(prefetch);
	return median(v, sweep_runs);
}

/* The read fault and the one-sharer upgrade under another polling
 * policy (the same run's baselines). */
struct policy_pct {
	struct pct rd, up;
};

static struct policy_pct with_policy(unsigned poll, unsigned spin)
{
	unsigned poll0 = poll_us, spin0 = wait_spin_us;
	struct policy_pct r;

	poll_us = poll;
	wait_spin_us = spin;
	r.rd = dsm_read_fault();
	r.up = dsm_upgrade(1);
	poll_us = poll0;
	wait_spin_us = spin0;
	return r;
}

/* With --json the figures go into this object, printed at the end;
 * without, each is a line of text as it is measured. */
static json_t *report;

/* A latency: key in JSON; label, p50, p99 and an optional note in text. */
static void fig_pct(const char *key, const char *label, struct pct p,
		    const char *note)
{
	if (report) {
		json_object_set_new(report, key,
				    json_pack("{s:f, s:f}", "p50_us", p.p50,
					      "p99_us", p.p99));
		return;
	}
	printf("%-36s p50 %7.1f us  p99 %7.1f us%s%s\n", label, p.p50, p.p99,
	       note ? "   " : "", note ? note : "");
}

/* A rate or a ratio: key in JSON; in text, line is a printf format with
 * one conversion for v. */
static void fig_num(const char *key, const char *line, double v)
{
	if (report)
		json_object_set_new(report, key, json_real(v));
	else
		printf(line, v);
}

/* The sweep with prefetch, its line naming --prefetch. */
static void fig_sweep_on(double v)
{
	char line[128];

	snprintf(line, sizeof(line),
		 "dsm    sequential sweep, prefetch %-3d %%9.0f pages/s"
		 "   (target >= 150000)\n",
		 prefetch_max);
	fig_num("sweep_prefetch_on_pages_per_s", line, v);
}

/* The run's settings: the first line of text, "config" in JSON. */
static void fig_config(bool only_sweep)
{
	if (report) {
		json_object_set_new(
			report, "config",
			json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:s}",
				  "samples", samples, "sweep_pages",
				  sweep_pages, "sweep_runs", sweep_runs,
				  "poll_us", (int)poll_us, "wait_spin_us",
				  (int)wait_spin_us, "prefetch_max",
				  prefetch_max, "placement", pin_desc()));
		json_object_set_new(
			report, "targets",
			json_pack("{s:f, s:f, s:f}", "ratio_read_fault_max",
				  1.25, "upgrade_p50_us_max", 45.0,
				  "sweep_pages_per_s_min", 150000.0));
		return;
	}
	if (only_sweep)
		printf("dsm-bench: sweep_pages=%d sweep_runs=%d poll_us=%u; "
		       "%s\n",
		       sweep_pages, sweep_runs, poll_us, pin_desc());
	else
		printf("dsm-bench: samples=%d sweep_pages=%d sweep_runs=%d "
		       "poll_us=%u wait_spin_us=%u; %s\n",
		       samples, sweep_pages, sweep_runs, poll_us, wait_spin_us,
		       pin_desc());
}

/* Prints the --json object, if there is one. */
static int fig_end(void)
{
	if (report) {
		char *text = json_dumps(report, JSON_INDENT(2) |
							JSON_REAL_PRECISION(6));

		if (!text)
			return 1;
		puts(text);
		free(text);
		json_decref(report);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dsm-bench [--samples=N] [--sweep-pages=N] "
		"[--sweep-runs=N]\n"
		"                 [--poll-us=N] [--wait-spin-us=N] "
		"[--prefetch=N]\n"
		"                 [--only=sweep] [--no-pin] [--json]\n"
		"Prints DSM latencies and sweep throughput on loopback next "
		"to\n"
		"the floors measured in the same run (see "
		"docs/benchmarks.md).\n"
		"  --samples=N      faults per latency figure (default 2000, "
		"min 100,\n"
		"                   max 1000000: each is a 4 KiB page that\n"
		"                   every node and bare server touches)\n"
		"  --sweep-pages=N  pages per sweep (default 8192)\n"
		"  --sweep-runs=N   sweeps per figure, median printed "
		"(default 5, max 64)\n"
		"  --poll-us=N      node poll_us (default 200); the read\n"
		"                   fault and upgrade are also measured with\n"
		"                   0, the agent's default (dsm_poll_us)\n"
		"  --wait-spin-us=N node wait_spin_us (default 0); the read\n"
		"                   fault and upgrade are also measured with\n"
		"                   200 us, the old policy, for comparison\n"
		"  --prefetch=N     prefetch_max of the prefetching sweep "
		"(default 64)\n"
		"  --only=sweep     just the sweep figures\n"
		"  --no-pin         let the scheduler place the nodes; by\n"
		"                   default node 0 (and its application\n"
		"                   thread) runs on the first CPU, the other\n"
		"                   nodes on the last, as separate hosts\n"
		"  --json           print the figures as one JSON object\n"
		"                   (latencies as p50_us/p99_us, rates in\n"
		"                   pages/s, ratios) instead of lines\n");
}

static bool int_arg(const char *a, const char *key, int *out, int lo, int hi)
{
	size_t kl = strlen(key);
	char *end;
	long v;

	if (strncmp(a, key, kl) != 0)
		return false;
	errno = 0;
	v = strtol(a + kl, &end, 10);
	if (errno || end == a + kl || *end || v < lo || v > hi) {
		fprintf(stderr, "dsm-bench: %s wants an integer in %d..%d\n",
			key, lo, hi);
		exit(2);
	}
	*out = (int)v;
	return true;
}

int main(int argc, char **argv)
{
	int p = (int)poll_us, ws = 0;
	bool only_sweep = false, json = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--only=sweep"))
			only_sweep = true;
		else if (!strcmp(argv[i], "--no-pin"))
			pin_hosts = false;
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!int_arg(argv[i], "--samples=", &samples, 1,
				  1000000) &&
			 !int_arg(argv[i], "--sweep-pages=", &sweep_pages, 2,
				  1 << 22) &&
			 !int_arg(argv[i], "--sweep-runs=", &sweep_runs, 1,
				  64) &&
			 !int_arg(argv[i], "--poll-us=", &p, 0, 1000000) &&
			 !int_arg(argv[i], "--wait-spin-us=", &ws, 0,
				  1000000) &&
			 !int_arg(argv[i], "--prefetch=", &prefetch_max, 1,
				  64)) {
			fprintf(stderr, "dsm-bench: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	poll_us = (unsigned)p;
	wait_spin_us = (unsigned)ws;
	if (samples < 100)
		samples = 100;
	cell_log_set_level(CELL_LOG_ERROR);
	if (json) {
		report = json_object();
		must(report != NULL);
	}

	if (only_sweep) {
		double on = sweep_median((uint32_t)prefetch_max);

		fig_config(true);
		fig_sweep_on(on);
		return fig_end();
	}

	struct pct tcp = floor_tcp(samples);
	struct pct uf = floor_uffd(samples);
	double inst = floor_install(sweep_pages);
	struct pct wp_idle = floor_wp(samples, false);
	struct pct wp_busy = floor_wp(samples, true);
	struct pct bare_rd = floor_bare(samples, BARE_READ);
	struct pct bare_clean = floor_bare(samples, BARE_CLEAN);
	struct pct bare_up = floor_bare(samples / 2, BARE_UPGRADE);
	struct pct rd = dsm_read_fault();
	struct pct up1 = dsm_upgrade(1);
	struct pct up2 = dsm_upgrade(2);
	/* Spinning for replies (the old policy); no polling after serving
	 * (the agent's default). */
	struct policy_pct spin = with_policy(poll_us, 200);
	struct policy_pct poll0 = with_policy(0, wait_spin_us);
	double sw_off = sweep_median(1);
	double sw_on = sweep_median((uint32_t)prefetch_max);
	double floors = tcp.p50 + uf.p50;

	fig_config(false);
	fig_pct("floor_tcp_rtt", "floor  tcp 4KiB req/resp rtt", tcp, NULL);
	fig_pct("floor_uffd_rtt", "floor  uffd fault+continue rtt", uf, NULL);
	fig_num("floor_install_pages_per_s",
		"floor  UFFDIO_COPY installs, one thread  %9.0f pages/s"
		"   (bounds the sweep)\n",
		inst);
	fig_pct("floor_wp_other_cpu_idle",
		"floor  write-protect, other CPU idle", wp_idle, NULL);
	fig_pct("floor_wp_other_cpu_busy",
		"floor  write-protect, other CPU busy", wp_busy,
		"(a home's downgrade)");
	fig_pct("floor_bare_read", "floor  bare read miss, no engine", bare_rd,
		"(request, downgrade, page, continue)");
	fig_pct("floor_bare_read_clean", "floor  bare read miss, clean page",
		bare_clean, "(the same, no downgrade)");
	fig_pct("floor_bare_upgrade", "floor  bare upgrade, no engine", bare_up,
		"(invalidate, punch, ack, un-protect)");
	fig_pct("read_fault", "dsm    remote read fault", rd, NULL);
	fig_pct("upgrade_1_sharer", "dsm    write upgrade, 1 sharer", up1,
		"(target <= 45 us p50)");
	fig_pct("invalidation_2_sharers", "dsm    invalidation, 2 sharers", up2,
		NULL);
	fig_pct("spin_read_fault", "spin   read fault, wait_spin 200us",
		spin.rd, "(baseline: spinning for replies)");
	fig_pct("spin_upgrade", "spin   upgrade, wait_spin 200us", spin.up,
		NULL);
	fig_pct("poll0_read_fault", "poll0  read fault, poll_us 0", poll0.rd,
		"(the agent's default)");
	fig_pct("poll0_upgrade", "poll0  upgrade, poll_us 0", poll0.up, NULL);
	fig_num("sweep_prefetch_off_pages_per_s",
		"dsm    sequential sweep, prefetch off %9.0f pages/s\n",
		sw_off);
	fig_sweep_on(sw_on);
	fig_num("ratio_read_fault_to_floors",
		"ratio  read fault p50 / (tcp p50 + uffd p50) = %.2f"
		"   (target <= 1.25)\n",
		rd.p50 / floors);
	fig_num("ratio_bare_read_to_floors",
		"ratio  bare read miss p50 / (tcp p50 + uffd p50) = %.2f"
		"   (the same bound, no engine)\n",
		bare_rd.p50 / floors);
	fig_num("ratio_bare_clean_read_to_floors",
		"ratio  bare clean read miss p50 / (tcp p50 + uffd p50) = %.2f"
		"   (nor any downgrade)\n",
		bare_clean.p50 / floors);
	fig_num("ratio_read_fault_to_bare",
		"ratio  read fault p50 / bare read miss p50 = %.2f"
		"   (the engine's cost)\n",
		rd.p50 / bare_rd.p50);
	fig_num("ratio_upgrade_to_bare",
		"ratio  upgrade p50 / bare upgrade p50 = %.2f\n",
		up1.p50 / bare_up.p50);
	return fig_end();
}
