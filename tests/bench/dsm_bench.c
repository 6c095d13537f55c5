/*
 * dsm-bench: DSM latencies and throughput on loopback, next to the floors
 * measured in the same run. Prints figures; never passes or fails on
 * time (exit status 1 only if something does not work at all).
 *
 *   dsm-bench [--samples=N] [--sweep-pages=N] [--sweep-runs=N]
 *             [--wait=adaptive|fixed] [--poll-us=N] [--wait-spin-us=N]
 *             [--prefetch=N] [--window-ms=N]
 *             [--only=sweep|threads|metrics|tls]
 *             [--no-pin] [--json]
 *
 * The DSM's headline lines run with the agent's defaults, read from the
 * agent's own config table (node-agent/agent_config.c); the options
 * change them. The fixed waiting policies are the same run's baselines:
 * sleep (never spin) and spin (200 us for replies and for more work).
 *
 * Floors (dsm_floors.c): the best this machine does for each step alone
 * (TCP and uffd round trips, the latter also with the handler on the
 * faulting thread's CPU, UFFDIO_COPY installs, a one-page
 * write-protect with the other CPU idle or busy), and the bare exchanges:
 * a read miss (from a home that downgrades, and from one that need not)
 * and an upgrade done by hand with only the steps the protocol cannot do
 * without, waiting as the nodes wait.
 * DSM (node 0 in this process, nodes 1 and 2 in forked processes, all
 * on loopback TCP; node 0's application threads take the faults). The
 * latencies read every other page, so that a miss is never sequential
 * and prefetch (which only grows on sequential misses) fetches one page:
 *   read fault  first access: a page node 1 wrote, read by node 0
 *   steady      a page node 0 held, taken by node 1's write, read again
 *               (the common case in a running VM)
 *   upgrade     write to a page shared with one other node
 *   invalidate  write to a page shared with two other nodes
 *   metrics     the steady read fault with a thread reading the region's
 *               and the node's counters 100 times a second (what the
 *               agent's /metrics reads) and without, interleaved
 *   tls         the steady read fault and the sweep with every peer link
 *               under mutual TLS 1.3 (node certificates of a CA made for
 *               the run, as an agent with tls_cert has) and plain,
 *               interleaved: what TLS costs the DSM
 *   threads     1, 2 and 4 threads of node 0 faulting at once (steady
 *               read faults, each thread its own pages): faults/s, p99
 *   sweep       sequential read of a region homed elsewhere, pages/s,
 *               prefetch off and the default's; the median of
 *               --sweep-runs sweeps
 *   ratio       the defaults against the best fixed policy, and against
 *               (tcp_rtt p50 + uffd_rtt p50); the bare read miss against
 *               the same sum; the read fault and the upgrade against
 *               their bare exchanges (the engine's cost)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include <jansson.h>

#include "agent.h"
#include "cell/ca.h"
#include "cell/config.h"
#include "cell/log.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "dsm/dsm.h"
#include "dsm_floors.h"

#define WORDS (DSM_PAGE / 8)

static int samples = 2000;
static int sweep_pages = 8192;
static int sweep_runs = 5;
/* The agent's defaults (or what the options made of them), and the
 * configuration of the cluster being started: its copy or a baseline. */
static struct dsm_node_config defaults, run_cfg;
static const char *defaults_desc = "the agent's defaults";
/* TLS for the clusters started while run_tls is set: a CA made for the
 * run in tls_dir, node certificates b0..b2; each process loads its own
 * node's (after the fork) once. */
static bool run_tls;
static char tls_dir[64];
static struct cell_tls *tls_of[3];

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

static void join(int id, int n, size_t pages, enum dsm_home_policy pol,
		 uint16_t home, const int *ports, struct dsm_node *node,
		 struct dsm_region **r, volatile uint64_t **m)
{
	uint16_t members[3] = {0, 1, 2};
	struct dsm_region_config rc = {1,    pages * DSM_PAGE, pol,
				       home, members,	       (uint16_t)n};
	char addr[64], name[16];

	for (int j = 0; j < n; j++) {
		if (j == id)
			continue;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports[j]);
		snprintf(name, sizeof(name), "b%d", j);
		dsm_node_add_peer(node, (uint16_t)j, addr,
				  run_tls ? name : NULL);
	}
	must(dsm_region_create(node, &rc, r) == 0);
	*m = dsm_region_map(*r);
	must(*m != NULL);
}

static void tls_fail(const char *what, const char *err)
{
	fprintf(stderr, "dsm-bench: %s: %s\n", what, err);
	exit(1);
}

static void tls_setup(void)
{
	char err[600];

	snprintf(tls_dir, sizeof(tls_dir), "/tmp/dsm-bench-ca.XXXXXX");
	must(mkdtemp(tls_dir) != NULL);
	strcat(tls_dir, "/ca");
	if (cell_ca_init(tls_dir, "bench", 0, err, sizeof(err)))
		tls_fail("cannot make a CA", err);
	for (int i = 0; i < 3; i++) {
		char name[16];
		struct cell_ca_issue q = {.role = CELL_ROLE_NODE, .name = name};

		snprintf(name, sizeof(name), "b%d", i);
		if (cell_ca_issue(tls_dir, &q, NULL, NULL, NULL, err,
				  sizeof(err)))
			tls_fail("cannot issue a node certificate", err);
	}
}

static void tls_cleanup(void)
{
	char *slash = strrchr(tls_dir, '/');

	if (!slash)
		return;
	*slash = '\0';
	cell_remove_tree(tls_dir);
}

static struct cell_tls *node_tls(int id)
{
	char ca[128], crt[128], key[128], err[600];
	struct cell_tls_config tc = {
		ca, crt, key, NULL, CELL_ROLE_BIT(CELL_ROLE_NODE), true};

	if (tls_of[id])
		return tls_of[id];
	snprintf(ca, sizeof(ca), "%s/ca.crt", tls_dir);
	snprintf(crt, sizeof(crt), "%s/certs/node-b%d.crt", tls_dir, id);
	snprintf(key, sizeof(key), "%s/certs/node-b%d.key", tls_dir, id);
	if (cell_tls_new(&tc, &tls_of[id], err, sizeof(err)))
		tls_fail("cannot load a node certificate", err);
	return tls_of[id];
}

/* Node id's configuration: run_cfg with its id, on loopback. */
static struct dsm_node_config node_cfg(int id, uint32_t prefetch)
{
	struct dsm_node_config c = run_cfg;

	c.tls = run_tls ? node_tls(id) : NULL;

	c.id = (uint16_t)id;
	c.listen = "127.0.0.1:0";
	c.epoch = 1;
	c.transport = DSM_TRANSPORT_TCP;
	c.request_timeout_ms = 0;
	c.prefetch_max = prefetch;
	return c;
}

/* A remote node: obeys 'w' (write every page), 'r' (read every page)
 * and 'q' from the parent, acking each. */
static void remote_main(int id, int n, uint32_t prefetch, size_t pages,
			enum dsm_home_policy pol, uint16_t home, int rfd,
			int wfd)
{
	struct dsm_node_config cfg = node_cfg(id, prefetch);
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
	join(id, n, pages, pol, home, ports, node, &r, &m);
	wr_all(wfd, "k", 1);
	while (read(rfd, &c, 1) == 1 && c != 'q') {
		for (size_t i = 0; i < pages; i++) {
			if (c == 'w')
				m[i * WORDS] = (uint64_t)i + (uint64_t)c;
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
	struct dsm_node_config cfg = node_cfg(0, prefetch);
	int ports[3] = {0, 0, 0};
	char k;

	c->n = n;
	c->pages = pages;
	/* Fork before this process has any thread of its own. */
	for (int i = 1; i < n; i++) {
		int down[2], up[2];

		must(pipe(down) == 0 && pipe(up) == 0);
		fflush(NULL);
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
	join(0, n, pages, pol, home, ports, c->node, &c->r, &c->m);
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

/* Reads pages first, first + 2, ... (n of them), each timed into ns
 * (if not NULL), checking each holds what node 1's last write wrote. */
static void read_every_other(struct cluster *c, size_t first, int n,
			     uint64_t *ns)
{
	for (int i = 0; i < n; i++) {
		size_t pg = first + 2 * (size_t)i;
		uint64_t t0 = now_ns(), v;

		v = c->m[pg * WORDS];
		if (ns)
			ns[i] = now_ns() - t0;
		must(v == (uint64_t)pg + 'w');
	}
}

/* Remote read misses: node 1 wrote every page (homed on node 1); node 0
 * reads every other one, n in all, timed into ns: the first access
 * (!steady), or again after node 1's second write took its copies
 * (steady). */
/* A scraper as the agent's /metrics runs one (dsm_region_stats and
 * dsm_node_stats through the node thread's command queue), every
 * scrape_ms while it runs. */
struct scraper {
	struct cluster *c;
	volatile bool stop;
	unsigned scrape_ms;
};

static void *scraper_main(void *arg)
{
	struct scraper *s = arg;

	while (!s->stop) {
		struct dsm_region_stats rs;
		struct dsm_node_stats ns;

		dsm_region_stats(s->c->r, &rs);
		dsm_node_stats(s->c->node, &ns);
		usleep(s->scrape_ms * 1000);
	}
	return NULL;
}

/* As dsm_read_fault, with a scraper every scrape_ms (0: none). */
static void dsm_read_fault_scraped(bool steady, int n, uint64_t *ns,
				   unsigned scrape_ms)
{
	struct cluster c;
	struct scraper sc = {&c, false, scrape_ms};
	pthread_t t;

	cluster_up(&c, 2, run_cfg.prefetch_max, 2 * (size_t)n, DSM_POLICY_ONE,
		   1);
	remote_cmd(&c, 1, 'w');
	if (steady) {
		read_every_other(&c, 0, n, NULL);
		remote_cmd(&c, 1, 'w');
	}
	if (scrape_ms)
		must(pthread_create(&t, NULL, scraper_main, &sc) == 0);
	read_every_other(&c, 0, n, ns);
	if (scrape_ms) {
		sc.stop = true;
		pthread_join(t, NULL);
	}
	cluster_down(&c);
}

static void dsm_read_fault(bool steady, int n, uint64_t *ns)
{
	dsm_read_fault_scraped(steady, n, ns, 0);
}

/* Writes to n pages that `sharers` other nodes also read (home node 0),
 * timed into ns. */
static void dsm_upgrade(int sharers, int n, uint64_t *ns)
{
	struct cluster c;

	cluster_up(&c, sharers + 1, run_cfg.prefetch_max, (size_t)n,
		   DSM_POLICY_ONE, 0);
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
	must(sum == (uint64_t)sweep_pages * (uint64_t)(sweep_pages - 1) / 2 +
			    (uint64_t)sweep_pages * 'w');
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

/* The latencies of one configuration: the defaults or a baseline. */
struct lat {
	struct pct rd, steady, up;
};

#define ROUNDS 5

static uint64_t *ns_array(int n)
{
	uint64_t *ns = calloc((size_t)n, sizeof(*ns));

	must(ns != NULL);
	return ns;
}

/*
 * The latencies of ncfg configurations, measured in ROUNDS interleaved
 * rounds (each configuration in turn, each round starting with another)
 * so that a slow spell of this shared machine falls on all of them
 * alike; each is a new cluster (new nodes learning their waiting) of
 * `samples` faults.
 */
static void latencies(const struct dsm_node_config *cfg, int ncfg,
		      struct lat *out)
{
	int n = samples * ROUNDS, nu = samples / 2 * ROUNDS;
	uint64_t *rd[3], *st[3], *up[3];

	must(ncfg <= 3);
	for (int k = 0; k < ncfg; k++) {
		rd[k] = ns_array(n);
		st[k] = ns_array(n);
		up[k] = ns_array(nu);
	}
	/* a first cluster warms the machine up, untimed */
	dsm_read_fault(false, samples, rd[0]);
	/* round i starts with configuration i: none is always first */
	for (int i = 0; i < ROUNDS; i++)
		for (int j = 0; j < ncfg; j++) {
			int k = (i + j) % ncfg;

			run_cfg = cfg[k];
			dsm_read_fault(false, samples, rd[k] + i * samples);
			dsm_read_fault(true, samples, st[k] + i * samples);
			dsm_upgrade(1, samples / 2, up[k] + i * (samples / 2));
		}
	run_cfg = defaults;
	for (int k = 0; k < ncfg; k++) {
		out[k].rd = percentiles(rd[k], n);
		out[k].steady = percentiles(st[k], n);
		out[k].up = percentiles(up[k], nu);
	}
}

/* The invalidation of two sharers' copies, under the defaults. */
static struct pct dsm_invalidation(void)
{
	uint64_t *ns = ns_array(samples / 2);

	dsm_upgrade(2, samples / 2, ns);
	return percentiles(ns, samples / 2);
}

/* The steady read fault with and without a scraper every 10 ms (100
 * scrapes a second; Prometheus's default is one in 15 s), in ROUNDS
 * interleaved rounds: what serving /metrics costs the fault path. */
static void metrics_cost(struct pct *off, struct pct *on)
{
	int n = samples * ROUNDS;
	uint64_t *a = ns_array(n), *b = ns_array(n);

	for (int i = 0; i < ROUNDS; i++) {
		dsm_read_fault_scraped(true, samples, a + i * samples, 0);
		dsm_read_fault_scraped(true, samples, b + i * samples, 10);
	}
	*off = percentiles(a, n);
	*on = percentiles(b, n);
}

/* The steady read fault and the sweep under TLS and plain, in ROUNDS
 * interleaved rounds (the sweep: a run of each per round, medians). */
struct tls_cost {
	struct pct plain, tls;
	double sweep_plain, sweep_tls;
	struct pct floor_plain, floor_tls; /* the bare exchange */
};

static struct tls_cost tls_cost(void)
{
	int n = samples * ROUNDS;
	uint64_t *a = ns_array(n), *b = ns_array(n);
	double sa[ROUNDS], sb[ROUNDS];
	struct tls_cost r;

	if (!tls_dir[0])
		tls_setup();
	floor_tls(samples, node_tls(0), node_tls(1), &r.floor_plain,
		  &r.floor_tls);
	for (int i = 0; i < ROUNDS; i++) {
		bool tls_first = i & 1;

		for (int k = 0; k < 2; k++) {
			run_tls = tls_first == (k == 0);
			dsm_read_fault(true, samples,
				       (run_tls ? b : a) + i * samples);
			*(run_tls ? &sb[i] : &sa[i]) =
				dsm_sweep(defaults.prefetch_max);
		}
	}
	run_tls = false;
	r.plain = percentiles(a, n);
	r.tls = percentiles(b, n);
	r.sweep_plain = median(sa, ROUNDS);
	r.sweep_tls = median(sb, ROUNDS);
	return r;
}

/* ---- several threads of node 0 faulting at once ---- */

struct fault_thread {
	struct cluster *c;
	pthread_barrier_t *go;
	size_t first;
	int n;
	uint64_t *ns;
};

static void *fault_thread_main(void *arg)
{
	struct fault_thread *t = arg;

	pthread_barrier_wait(t->go);
	read_every_other(t->c, t->first, t->n, t->ns);
	return NULL;
}

struct curve {
	double faults_per_s;
	struct pct lat;
};

/* Steady read faults (as dsm_read_fault(true)) by nthreads threads, each
 * on its own pages, 2 x samples faults in all; the threads run where
 * node 0 runs. */
static struct curve dsm_threads(int nthreads)
{
	int per = 2 * samples / nthreads, total = per * nthreads;
	struct fault_thread t[8];
	pthread_t tid[8];
	pthread_barrier_t go;
	struct cluster c;
	uint64_t *ns = calloc((size_t)total, sizeof(*ns)), t0, t1;
	struct curve r;

	must(ns != NULL && nthreads <= 8);
	cluster_up(&c, 2, run_cfg.prefetch_max, 2 * (size_t)total,
		   DSM_POLICY_ONE, 1);
	remote_cmd(&c, 1, 'w');
	read_every_other(&c, 0, total, NULL);
	remote_cmd(&c, 1, 'w');
	must(pthread_barrier_init(&go, NULL, (unsigned)nthreads + 1) == 0);
	for (int i = 0; i < nthreads; i++) {
		t[i] = (struct fault_thread){&c, &go,
					     2 * (size_t)per * (size_t)i, per,
					     ns + (size_t)per * (size_t)i};
		must(pthread_create(&tid[i], NULL, fault_thread_main, &t[i]) ==
		     0);
	}
	pthread_barrier_wait(&go);
	t0 = now_ns();
	for (int i = 0; i < nthreads; i++)
		pthread_join(tid[i], NULL);
	t1 = now_ns();
	pthread_barrier_destroy(&go);
	cluster_down(&c);
	r.faults_per_s = (double)total / ((double)(t1 - t0) / 1e9);
	r.lat = percentiles(ns, total);
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

/* The sweep with the default prefetch, its line naming it. */
static void fig_sweep_on(double v)
{
	char line[128];

	snprintf(line, sizeof(line),
		 "dsm    sequential sweep, prefetch %-3u %%9.0f pages/s"
		 "   (target >= 300000)\n",
		 defaults.prefetch_max);
	fig_num("sweep_prefetch_default_pages_per_s", line, v);
}

static const char *wait_name(const struct dsm_node_config *c)
{
	return c->wait == DSM_WAIT_FIXED ? "fixed" : "adaptive";
}

/* The run's settings: the first line of text, "config" in JSON. */
static void fig_config(void)
{
	if (report) {
		json_object_set_new(
			report, "config",
			json_pack("{s:i, s:i, s:i, s:s, s:s, s:i, s:i, s:i, "
				  "s:i, s:i, s:s}",
				  "samples", samples, "sweep_pages",
				  sweep_pages, "sweep_runs", sweep_runs,
				  "source", defaults_desc, "wait",
				  wait_name(&defaults), "spin_max_us",
				  (int)defaults.spin_max_us, "poll_us",
				  (int)defaults.poll_us, "wait_spin_us",
				  (int)defaults.wait_spin_us, "prefetch_max",
				  (int)defaults.prefetch_max, "window_ms",
				  (int)defaults.window_ms, "placement",
				  pin_desc()));
		json_object_set_new(
			report, "targets",
			json_pack("{s:f, s:f, s:f, s:f}",
				  "ratio_read_fault_to_best_fixed_max", 1.05,
				  "ratio_read_fault_to_floors_max", 1.4,
				  "upgrade_p50_us_max", 45.0,
				  "sweep_pages_per_s_min", 300000.0));
		return;
	}
	printf("dsm-bench: samples=%d sweep_pages=%d sweep_runs=%d; %s\n",
	       samples, sweep_pages, sweep_runs, pin_desc());
	printf("config: %s: wait %s", defaults_desc, wait_name(&defaults));
	if (defaults.wait == DSM_WAIT_FIXED)
		printf(" (poll_us %u, wait_spin_us %u)", defaults.poll_us,
		       defaults.wait_spin_us);
	else
		printf(" (spin at most %u us)", defaults.spin_max_us);
	printf(", prefetch %u, window %u ms\n", defaults.prefetch_max,
	       defaults.window_ms);
}

/* The curve of 1, 2 and 4 faulting threads. */
static void fig_threads(const struct curve *thr)
{
	for (int i = 0; i < 3; i++) {
		static const char *const keys[] = {"threads_1", "threads_2",
						   "threads_4"};
		int k = 1 << i;

		if (report) {
			json_object_set_new(
				report, keys[i],
				json_pack("{s:f, s:f, s:f}", "faults_per_s",
					  thr[i].faults_per_s, "p50_us",
					  thr[i].lat.p50, "p99_us",
					  thr[i].lat.p99));
			continue;
		}
		printf("thr    %d faulting thread%s %9.0f faults/s  p50 %7.1f "
		       "us  p99 %7.1f us\n",
		       k, k > 1 ? "s" : " ", thr[i].faults_per_s,
		       thr[i].lat.p50, thr[i].lat.p99);
	}
}

/* The steady read fault without and with a scraper, and their ratio. */
static void fig_metrics(struct pct off, struct pct on)
{
	fig_pct("metrics_off_read_fault_steady",
		"metr   steady read fault, no scraper", off, NULL);
	fig_pct("metrics_on_read_fault_steady",
		"metr   steady read fault, scraped 100/s", on,
		"(what /metrics reads)");
	fig_num("ratio_metrics_on_to_off",
		"ratio  scraped / not scraped read fault p50 = %.3f"
		"   (target < 1.02)\n",
		on.p50 / off.p50);
}

static void fig_tls(const struct tls_cost *t)
{
	fig_pct("floor_tls_exchange", "floor  tls 48B req / 4KiB reply rtt",
		t->floor_tls, "(polling, no DSM)");
	fig_pct("floor_tls_plain_exchange",
		"floor  tcp 48B req / 4KiB reply rtt", t->floor_plain,
		"(the same, plain)");
	fig_num("ratio_floor_tls_to_plain",
		"ratio  floor TLS / plain exchange p50 = %.3f"
		"   (what TLS costs a bare exchange here)\n",
		t->floor_tls.p50 / t->floor_plain.p50);
	fig_pct("tls_read_fault_steady", "tls    steady read fault, TLS links",
		t->tls, "(mutual TLS 1.3, AES-GCM)");
	fig_pct("tls_plain_read_fault_steady",
		"tls    steady read fault, plain", t->plain,
		"(same run, interleaved)");
	fig_num("ratio_tls_to_plain_read_fault",
		"ratio  TLS / plain steady read fault p50 = %.3f"
		"   (target <= 1.15)\n",
		t->tls.p50 / t->plain.p50);
	fig_num("tls_sweep_pages_per_s",
		"tls    sequential sweep, TLS links  %9.0f pages/s\n",
		t->sweep_tls);
	fig_num("tls_plain_sweep_pages_per_s",
		"tls    sequential sweep, plain      %9.0f pages/s\n",
		t->sweep_plain);
	fig_num("ratio_tls_to_plain_sweep",
		"ratio  TLS / plain sweep pages/s = %.3f\n",
		t->sweep_tls / t->sweep_plain);
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
		"                 [--wait=adaptive|fixed] [--poll-us=N] "
		"[--wait-spin-us=N]\n"
		"                 [--prefetch=N] [--window-ms=N] "
		"[--only=sweep|threads|metrics|tls]\n"
		"                 [--no-pin] [--json]\n"
		"Prints DSM latencies and sweep throughput on loopback next "
		"to\n"
		"the floors measured in the same run (see "
		"docs/benchmarks.md).\n"
		"The DSM runs with the agent's defaults (its config table);\n"
		"the fixed waiting policies, sleep and spin, are measured "
		"too,\n"
		"as baselines. These options change the defaults:\n"
		"  --wait=MODE      adaptive or fixed (agent's dsm_wait)\n"
		"  --poll-us=N      fixed: spin after serving (dsm_poll_us)\n"
		"  --wait-spin-us=N fixed: spin for replies "
		"(dsm_wait_spin_us)\n"
		"  --prefetch=N     pages per read miss, 1..64 "
		"(dsm_prefetch)\n"
		"  --window-ms=N    time window, 0..1000 (dsm_window)\n"
		"Other options:\n"
		"  --samples=N      faults per latency figure (default 2000, "
		"min 100,\n"
		"                   max 1000000: each is a 4 KiB page that\n"
		"                   every node and bare server touches)\n"
		"  --sweep-pages=N  pages per sweep (default 8192)\n"
		"  --sweep-runs=N   sweeps per figure, median printed "
		"(default 5, max 64)\n"
		"  --only=sweep     just the sweep figures\n"
		"  --only=threads   just the curve of faulting threads\n"
		"  --only=metrics   just the cost of a /metrics scraper\n"
		"  --only=tls       just the cost of TLS on the peer links\n"
		"  --no-pin         let the scheduler place the nodes; by\n"
		"                   default node 0 (and its application\n"
		"                   threads) runs on the first CPU, the other\n"
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

/* The agent's defaults, from its config table. */
static void agent_defaults(void)
{
	static struct agent_config acfg;
	char err[256];

	if (cell_config_defaults(agent_config_table, &acfg, err, sizeof(err))) {
		fprintf(stderr, "dsm-bench: the agent's defaults: %s\n", err);
		exit(1);
	}
	agent_dsm_config(&acfg, &defaults);
	run_cfg = defaults;
}

static double better(double a, double b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	/* -1: the agent's */
	int p = -1, ws = -1, pf = -1, win = -1, wait = -1;
	bool only_sweep = false, only_threads = false, json = false;
	bool only_metrics = false, only_tls = false;
	bool changed;

	agent_defaults();
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--only=sweep"))
			only_sweep = true;
		else if (!strcmp(argv[i], "--only=threads"))
			only_threads = true;
		else if (!strcmp(argv[i], "--only=metrics"))
			only_metrics = true;
		else if (!strcmp(argv[i], "--only=tls"))
			only_tls = true;
		else if (!strcmp(argv[i], "--no-pin"))
			pin_hosts = false;
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--wait=adaptive"))
			wait = (int)DSM_WAIT_ADAPTIVE;
		else if (!strcmp(argv[i], "--wait=fixed"))
			wait = (int)DSM_WAIT_FIXED;
		else if (!int_arg(argv[i], "--samples=", &samples, 1,
				  1000000) &&
			 !int_arg(argv[i], "--sweep-pages=", &sweep_pages, 2,
				  1 << 22) &&
			 !int_arg(argv[i], "--sweep-runs=", &sweep_runs, 1,
				  64) &&
			 !int_arg(argv[i], "--poll-us=", &p, 0, 10000) &&
			 !int_arg(argv[i], "--wait-spin-us=", &ws, 0, 10000) &&
			 !int_arg(argv[i], "--prefetch=", &pf, 1, 64) &&
			 !int_arg(argv[i], "--window-ms=", &win, 0, 1000)) {
			fprintf(stderr, "dsm-bench: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	changed = wait >= 0 || p >= 0 || ws >= 0 || pf >= 0 || win >= 0;
	if (wait >= 0)
		defaults.wait = (enum dsm_wait_policy)wait;
	if (p >= 0)
		defaults.poll_us = (uint32_t)p;
	if (ws >= 0)
		defaults.wait_spin_us = (uint32_t)ws;
	if (pf >= 0)
		defaults.prefetch_max = (uint32_t)pf;
	if (win >= 0)
		defaults.window_ms = (uint32_t)win;
	if (changed)
		defaults_desc = "the agent's defaults changed by options";
	run_cfg = defaults;
	if (samples < 100)
		samples = 100;
	cell_log_set_level(CELL_LOG_ERROR);
	if (json) {
		report = json_object();
		must(report != NULL);
	}

	if (only_sweep) {
		double on = sweep_median(defaults.prefetch_max);

		fig_config();
		fig_sweep_on(on);
		return fig_end();
	}
	if (only_metrics) {
		struct pct off, on;

		metrics_cost(&off, &on);
		fig_config();
		fig_metrics(off, on);
		return fig_end();
	}
	if (only_tls) {
		struct tls_cost t = tls_cost();

		tls_cleanup();
		fig_config();
		fig_tls(&t);
		return fig_end();
	}
	if (only_threads) {
		struct curve thr[3] = {dsm_threads(1), dsm_threads(2),
				       dsm_threads(4)};

		fig_config();
		fig_threads(thr);
		return fig_end();
	}

	struct dsm_node_config sleep_cfg = defaults, spin_cfg = defaults;

	sleep_cfg.wait = spin_cfg.wait = DSM_WAIT_FIXED;
	sleep_cfg.poll_us = sleep_cfg.wait_spin_us = 0;
	spin_cfg.poll_us = spin_cfg.wait_spin_us = 200;

	struct pct tcp = floor_tcp(samples);
	struct pct uf = floor_uffd(samples, false);
	struct pct uf1 = floor_uffd(samples, true);
	double inst = floor_install(sweep_pages);
	struct pct wp_idle = floor_wp(samples, false);
	struct pct wp_busy = floor_wp(samples, true);
	struct pct bare_rd = floor_bare(samples, BARE_READ);
	struct pct bare_clean = floor_bare(samples, BARE_CLEAN);
	struct pct bare_up = floor_bare(samples / 2, BARE_UPGRADE);
	struct dsm_node_config cfgs[3] = {defaults, sleep_cfg, spin_cfg};
	struct lat l[3];

	latencies(cfgs, 3, l);

	struct lat def = l[0], sleep = l[1], spin = l[2];
	struct pct up2 = dsm_invalidation();
	struct curve thr[3] = {dsm_threads(1), dsm_threads(2), dsm_threads(4)};
	struct pct m_off, m_on;

	metrics_cost(&m_off, &m_on);

	struct tls_cost tc = tls_cost();

	tls_cleanup();

	double sw_off = sweep_median(1);
	double sw_on = sweep_median(defaults.prefetch_max);
	double floors = tcp.p50 + uf.p50;
	double best_rd = better(sleep.rd.p50, spin.rd.p50);
	double best_st = better(sleep.steady.p50, spin.steady.p50);
	double best_up = better(sleep.up.p50, spin.up.p50);

	fig_config();
	fig_pct("floor_tcp_rtt", "floor  tcp 4KiB req/resp rtt", tcp, NULL);
	fig_pct("floor_uffd_rtt", "floor  uffd fault+continue rtt", uf, NULL);
	fig_pct("floor_uffd_rtt_same_cpu",
		"floor  uffd rtt, handler on its CPU", uf1,
		"(as node 0 and its faulting thread)");
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
	fig_pct("read_fault", "dsm    remote read fault, first access", def.rd,
		NULL);
	fig_pct("read_fault_steady", "dsm    remote read fault, steady",
		def.steady, "(held, taken by a write, read again)");
	fig_pct("upgrade_1_sharer", "dsm    write upgrade, 1 sharer", def.up,
		"(target <= 45 us p50)");
	fig_pct("invalidation_2_sharers", "dsm    invalidation, 2 sharers", up2,
		NULL);
	fig_pct("sleep_read_fault", "sleep  read fault, first access", sleep.rd,
		"(baseline: fixed, never spins)");
	fig_pct("sleep_read_fault_steady", "sleep  read fault, steady",
		sleep.steady, NULL);
	fig_pct("sleep_upgrade", "sleep  write upgrade, 1 sharer", sleep.up,
		NULL);
	fig_pct("spin_read_fault", "spin   read fault, first access", spin.rd,
		"(baseline: fixed, spins 200 us)");
	fig_pct("spin_read_fault_steady", "spin   read fault, steady",
		spin.steady, NULL);
	fig_pct("spin_upgrade", "spin   write upgrade, 1 sharer", spin.up,
		NULL);
	fig_threads(thr);
	fig_metrics(m_off, m_on);
	fig_tls(&tc);
	fig_num("sweep_prefetch_off_pages_per_s",
		"dsm    sequential sweep, prefetch off %9.0f pages/s\n",
		sw_off);
	fig_sweep_on(sw_on);
	fig_num("ratio_read_fault_steady_to_best_fixed",
		"ratio  steady read fault p50 / best fixed policy's = %.2f"
		"   (target <= 1.05)\n",
		def.steady.p50 / best_st);
	fig_num("ratio_read_fault_to_best_fixed",
		"ratio  first read fault p50 / best fixed policy's = %.2f"
		"   (target <= 1.05)\n",
		def.rd.p50 / best_rd);
	fig_num("ratio_upgrade_to_best_fixed",
		"ratio  upgrade p50 / best fixed policy's = %.2f"
		"   (target <= 1.05)\n",
		def.up.p50 / best_up);
	fig_num("ratio_read_fault_steady_to_floors",
		"ratio  steady read fault p50 / (tcp p50 + uffd p50) = %.2f"
		"   (target <= 1.4)\n",
		def.steady.p50 / floors);
	fig_num("ratio_read_fault_to_floors",
		"ratio  first read fault p50 / (tcp p50 + uffd p50) = %.2f"
		"   (target <= 1.4)\n",
		def.rd.p50 / floors);
	fig_num("ratio_bare_read_to_floors",
		"ratio  bare read miss p50 / (tcp p50 + uffd p50) = %.2f"
		"   (the same bound, no engine)\n",
		bare_rd.p50 / floors);
	fig_num("ratio_bare_clean_read_to_floors",
		"ratio  bare clean read miss p50 / (tcp p50 + uffd p50) = %.2f"
		"   (nor any downgrade)\n",
		bare_clean.p50 / floors);
	fig_num("ratio_read_fault_to_bare",
		"ratio  first read fault p50 / bare read miss p50 = %.2f"
		"   (the engine's cost)\n",
		def.rd.p50 / bare_rd.p50);
	fig_num("ratio_upgrade_to_bare",
		"ratio  upgrade p50 / bare upgrade p50 = %.2f\n",
		def.up.p50 / bare_up.p50);
	return fig_end();
}
