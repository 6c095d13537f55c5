/*
 * A DSM node process for the integration tests and the benchmark's
 * multi-process runs.
 *
 *   dsm_node_proc MODE ID NNODES DIR [key=value ...]
 *
 * Every process listens on a free port, writes it to DIR/port.ID, waits
 * for the other NNODES-1 port files and adds them as peers; then all
 * create region 1 (interleaved homes) and run MODE:
 *
 *   stress   2 threads per node, random reads and writes for ops=N each.
 *            Page p holds one 64-bit slot per writer; a writer bumps its
 *            slot (checking it still holds its own last value: no lost
 *            write), a reader checks no slot ever goes backwards. After a
 *            barrier each node writes DIR/hash.ID of the whole region and
 *            checks its own slots hold its final counts.
 *   counter  incr=N increments of one word under dsm_lock; node 0 checks
 *            the total after a barrier and prints it.
 *   pingpong write the same page for secs=S from 2 threads; prints writes
 *            and pages received (window=MS sets the time window).
 *   serve    serve DIR/handoff.ID for other processes, until killed;
 *            churn=1 also writes every page in a loop, so that processes
 *            attached to the other node fault all the time.
 *   attach   (not a node) attach to DIR/handoff.0 and write/verify
 *            pages=N in a loop for secs=S.
 *
 * Exit status 0 when every check held; a failed check prints why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "dsm/dsm.h"

#define MAXW 64

static struct {
	const char *mode;
	int id, nnodes;
	const char *dir;
	long ops, incr, secs, pages, window, poll_us, churn;
	struct dsm_node *node;
	struct dsm_region *r;
	volatile uint64_t *mem;
	size_t npages;
	int failed;
} g;

static long opt(int argc, char **argv, const char *key, long def)
{
	size_t kl = strlen(key);

	for (int i = 5; i < argc; i++)
		if (strncmp(argv[i], key, kl) == 0 && argv[i][kl] == '=')
			return atol(argv[i] + kl + 1);
	return def;
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "node %d FAILED: ", g.id);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	__atomic_store_n(&g.failed, 1, __ATOMIC_SEQ_CST);
}

static int read_port(int id)
{
	char path[512];
	FILE *f;
	int port = 0;

	snprintf(path, sizeof(path), "%s/port.%d", g.dir, id);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &port) != 1)
		port = 0;
	fclose(f);
	return port;
}

static void touch_file(const char *what, int id)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.%d", g.dir, what, id);
	f = fopen(path, "w");
	if (f)
		fclose(f);
}

static int file_exists(const char *what, int id)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.%d", g.dir, what, id);
	return access(path, F_OK) == 0;
}

static int join_cluster(void)
{
	struct dsm_node_config c = {(uint16_t)g.id,	 "127.0.0.1:0",
				    (uint32_t)g.window,	 8,
				    (uint32_t)g.poll_us, 1};
	uint16_t members[64];
	struct dsm_region_config rc = {
		1,	 g.npages * DSM_PAGE, DSM_POLICY_INTERLEAVE, 0,
		members, (uint16_t)g.nnodes};
	char path[512], tmp[512], addr[64];
	FILE *f;
	int rc2;

	if ((rc2 = dsm_node_create(&c, &g.node)))
		return rc2;
	snprintf(tmp, sizeof(tmp), "%s/port.%d.tmp", g.dir, g.id);
	snprintf(path, sizeof(path), "%s/port.%d", g.dir, g.id);
	f = fopen(tmp, "w");
	fprintf(f, "%d\n", dsm_node_port(g.node));
	fclose(f);
	rename(tmp, path);
	for (int i = 0; i < g.nnodes; i++) {
		int port = 0;

		members[i] = (uint16_t)i;
		if (i == g.id)
			continue;
		for (int t = 0; t < 1000 && !(port = read_port(i)); t++)
			usleep(10000);
		if (!port)
			return -ETIMEDOUT;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		dsm_node_add_peer(g.node, (uint16_t)i, addr, NULL);
	}
	if ((rc2 = dsm_region_create(g.node, &rc, &g.r)))
		return rc2;
	g.mem = dsm_region_map(g.r);
	if (!g.mem)
		return -errno;
	/* Messages for a region a node has not created yet are refused, so
	 * every node creates it before anyone sends: a file rendezvous. */
	touch_file("ready", g.id);
	for (int i = 0; i < g.nnodes; i++)
		for (int t = 0; t < 1000 && !file_exists("ready", i); t++)
			usleep(10000);
	return dsm_barrier(g.r, 0, (uint32_t)g.nnodes);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Word w of page p. */
static volatile uint64_t *slot(size_t p, int w)
{
	return g.mem + p * (DSM_PAGE / 8) + w;
}

struct worker {
	int w;		/* writer id: node * 2 + thread */
	uint64_t *mine; /* [page]: my last written value */
	uint64_t *seen; /* [page * MAXW + writer]: highest seen */
	long writes, reads;
};

static void *stress_thread(void *arg)
{
	struct worker *k = arg;
	uint64_t seed = (uint64_t)(k->w + 1) * 0x9E3779B97F4A7C15ull;

	for (long i = 0; i < g.ops && !g.failed; i++) {
		uint64_t x = rnd(&seed);
		size_t p = x % g.npages;

		if ((x >> 32) % 3 == 0) {
			uint64_t v = *slot(p, k->w);

			if (v != k->mine[p])
				fail("lost write: page %zu writer %d holds "
				     "%" PRIu64 ", wrote %" PRIu64,
				     p, k->w, v, k->mine[p]);
			*slot(p, k->w) = ++k->mine[p];
			k->writes++;
			continue;
		}
		for (int w = 0; w < g.nnodes * 2; w++) {
			uint64_t v = *slot(p, w);
			uint64_t *s = &k->seen[p * MAXW + w];

			if (v < *s)
				fail("page %zu writer %d went back from "
				     "%" PRIu64 " to %" PRIu64,
				     p, w, *s, v);
			*s = v;
		}
		k->reads++;
	}
	return NULL;
}

static uint64_t region_hash(void)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < g.npages * DSM_PAGE / 8; i++)
		h = (h ^ g.mem[i]) * 1099511628211ull;
	return h;
}

static int run_stress(void)
{
	struct worker k[2];
	pthread_t t[2];
	char path[512];
	FILE *f;
	uint64_t h;

	for (int i = 0; i < 2; i++) {
		k[i] = (struct worker){g.id * 2 + i, calloc(g.npages, 8),
				       calloc(g.npages * MAXW, 8), 0, 0};
		pthread_create(&t[i], NULL, stress_thread, &k[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	dsm_barrier(g.r, 1, (uint32_t)g.nnodes);
	for (int i = 0; i < 2; i++)
		for (size_t p = 0; p < g.npages; p++)
			if (*slot(p, k[i].w) != k[i].mine[p])
				fail("final: page %zu writer %d holds %" PRIu64
				     ", wrote %" PRIu64,
				     p, k[i].w, *slot(p, k[i].w), k[i].mine[p]);
	h = region_hash();
	snprintf(path, sizeof(path), "%s/hash.%d", g.dir, g.id);
	f = fopen(path, "w");
	fprintf(f, "%016" PRIx64 "\n", h);
	fclose(f);
	printf("node %d: %ld writes %ld reads hash %016" PRIx64 "\n", g.id,
	       k[0].writes + k[1].writes, k[0].reads + k[1].reads, h);
	dsm_barrier(g.r, 2, (uint32_t)g.nnodes);
	for (int i = 0; i < 2; i++) {
		free(k[i].mine);
		free(k[i].seen);
	}
	return g.failed;
}

static int run_counter(void)
{
	for (long i = 0; i < g.incr; i++) {
		dsm_lock(g.r, 1);
		g.mem[0]++;
		dsm_unlock(g.r, 1);
	}
	dsm_barrier(g.r, 1, (uint32_t)g.nnodes);
	if (g.id == 0) {
		printf("counter %" PRIu64 " expected %ld\n", g.mem[0],
		       g.incr * g.nnodes);
		if (g.mem[0] != (uint64_t)(g.incr * g.nnodes))
			fail("counter %" PRIu64 " != %ld", g.mem[0],
			     g.incr * g.nnodes);
	}
	dsm_barrier(g.r, 2, (uint32_t)g.nnodes);
	return g.failed;
}

static void *pingpong_thread(void *arg)
{
	long *writes = arg;
	uint64_t end = cell_now_ms() + (uint64_t)g.secs * 1000;

	while (cell_now_ms() < end) {
		g.mem[g.id]++;
		(*writes)++;
	}
	return NULL;
}

static int run_pingpong(void)
{
	long writes[2] = {0, 0};
	pthread_t t[2];
	struct dsm_node_stats st;

	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, pingpong_thread, &writes[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	dsm_node_stats(g.node, &st);
	printf("node %d: window_ms=%ld writes=%ld pages_received=%" PRIu64 "\n",
	       g.id, g.window, writes[0] + writes[1], st.pages_recv);
	if (writes[0] + writes[1] == 0)
		fail("no progress");
	dsm_barrier(g.r, 1, (uint32_t)g.nnodes);
	return g.failed;
}

/* Keeps taking every page away from the other node (word 0). */
static void *churn_thread(void *arg)
{
	(void)arg;
	for (uint64_t round = 1;; round++)
		for (size_t p = 0; p < g.npages; p++)
			*slot(p, 0) = round;
	return NULL;
}

static int run_serve(void)
{
	char path[512];
	pthread_t t;

	if (g.churn)
		pthread_create(&t, NULL, churn_thread, NULL);
	snprintf(path, sizeof(path), "%s/handoff.%d", g.dir, g.id);
	if (dsm_node_serve_handoff(g.node, path))
		return 1;
	printf("node %d: serving %s\n", g.id, path);
	fflush(stdout);
	for (;;)
		pause();
}

static int run_attach(void)
{
	char path[512];
	void *base;
	size_t size;
	int sock, rc;
	uint64_t end = cell_now_ms() + (uint64_t)g.secs * 1000, rounds = 0;
	volatile uint64_t *m;

	snprintf(path, sizeof(path), "%s/handoff.0", g.dir);
	for (int t = 0; t < 500; t++) {
		rc = dsm_attach(path, 1, NULL, &base, &size, &sock);
		if (rc != -ENOENT && rc != -ECONNREFUSED)
			break;
		usleep(10000);
	}
	if (rc) {
		fprintf(stderr, "attach: %s\n", strerror(-rc));
		return 1;
	}
	m = base;
	printf("attached %zu bytes\n", size);
	fflush(stdout);
	/* Each attacher owns word g.id of every page. */
	while (cell_now_ms() < end) {
		rounds++;
		for (long p = 0; p < g.pages; p++) {
			volatile uint64_t *w = m + p * (DSM_PAGE / 8) + g.id;

			if (rounds > 1 && *w != rounds - 1) {
				fprintf(stderr,
					"attach %d: page %ld holds %" PRIu64
					", expected %" PRIu64 "\n",
					g.id, p, *w, rounds - 1);
				return 1;
			}
			*w = rounds;
		}
	}
	printf("attach %d: %" PRIu64 " rounds ok\n", g.id, rounds);
	return 0;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 5) {
		fprintf(stderr, "usage: %s MODE ID NNODES DIR [key=value...]\n",
			argv[0]);
		return 2;
	}
	g.mode = argv[1];
	g.id = atoi(argv[2]);
	g.nnodes = atoi(argv[3]);
	g.dir = argv[4];
	g.ops = opt(argc, argv, "ops", 20000);
	g.incr = opt(argc, argv, "incr", 10000);
	g.secs = opt(argc, argv, "secs", 10);
	g.pages = opt(argc, argv, "pages", 16);
	g.window = opt(argc, argv, "window", 0);
	g.poll_us = opt(argc, argv, "poll", 20);
	g.churn = opt(argc, argv, "churn", 0);
	g.npages = (size_t)opt(argc, argv, "region_pages", 64);
	cell_log_set_level(strcmp(g.mode, "serve") == 0 ? CELL_LOG_INFO
							: CELL_LOG_WARN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(g.mode, "attach") == 0)
		return run_attach();
	rc = join_cluster();
	if (rc) {
		fprintf(stderr, "node %d: cannot join: %s\n", g.id,
			strerror(-rc));
		return 1;
	}
	if (strcmp(g.mode, "stress") == 0)
		rc = run_stress();
	else if (strcmp(g.mode, "counter") == 0)
		rc = run_counter();
	else if (strcmp(g.mode, "pingpong") == 0)
		rc = run_pingpong();
	else if (strcmp(g.mode, "serve") == 0)
		rc = run_serve();
	else
		rc = 2;
	/* Give the last messages time to leave before the node goes. */
	usleep(100000);
	dsm_node_destroy(g.node);
	return rc;
}
