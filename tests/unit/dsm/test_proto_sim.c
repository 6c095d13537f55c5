/*
 * The DSM coherence engine (dsm/src/proto.c) in an in-process simulation:
 * N nodes, each with a few simulated vCPUs doing random reads and writes
 * of tagged values, messages delivered by a seeded random scheduler that
 * interleaves the per-pair FIFO channels arbitrarily and delays them.
 * Home policies, prefetch windows, the Mirage time window, home moves and
 * pushes vary with the seed.
 *
 * After every step an invariant checker asserts, on what the vCPUs can
 * actually access (not on the engine's own bookkeeping):
 *   - single writer / multiple readers: a page writable on one node is
 *     accessible on no other;
 *   - every accessible copy holds the latest value written (sequential
 *     consistency over the atomic steps of the simulation);
 * and each vCPU checks every value it reads against the latest write.
 * A run that stops making progress (a lost wake-up, a stuck home) fails.
 * The failing seed is printed: DSM_SIM_SEED=N replays it alone.
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
#include "proto.h"

#define MAXN   6
#define MAXP   12
#define MAXV   3
#define POISON 0xA5

enum access { NONE, RO, RW };

struct smsg {
	struct dsm__msg m;
	int has_data;
	uint8_t data[DSM_PAGE_SIZE];
	struct smsg *next;
};

struct chan {
	struct smsg *head, *tail;
	int len;
};

struct vcpu {
	int page;
	int write;
	int blocked; /* waiting for fault_done on `page` */
	int ops_left;
	uint64_t seq;
	int last; /* page of the last access, -1: none */
};

struct snode {
	int id;
	struct dsm__engine r;
	uint8_t mem[MAXP][DSM_PAGE_SIZE];
	enum access acc[MAXP];
	uint64_t deferred_at[MAXP]; /* 0: none */
	struct vcpu v[MAXV];
};

static struct sim {
	int n, npages, nv;
	uint64_t rng;
	uint64_t now;
	uint64_t latest[MAXP];
	struct snode nodes[MAXN];
	struct chan ch[MAXN][MAXN];
	char fail[256];
	long steps;
	long transfers;
	int sequential; /* vCPUs mostly walk pages in order (read-ahead) */
	int trace;	/* page to trace, -1: none */
} S;

static uint64_t rnd(void)
{
	S.rng ^= S.rng << 13;
	S.rng ^= S.rng >> 7;
	S.rng ^= S.rng << 17;
	return S.rng;
}

static void failf(const char *fmt, ...)
{
	va_list ap;

	if (S.fail[0])
		return;
	va_start(ap, fmt);
	vsnprintf(S.fail, sizeof(S.fail), fmt, ap);
	va_end(ap);
}

static uint64_t page_value(const uint8_t *p)
{
	uint64_t a, b;

	memcpy(&a, p, 8);
	memcpy(&b, p + DSM_PAGE_SIZE - 8, 8);
	if (a != b)
		failf("torn page: head %llx tail %llx", (unsigned long long)a,
		      (unsigned long long)b);
	return a;
}

static void set_value(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
	memcpy(p + DSM_PAGE_SIZE - 8, &v, 8);
}

static struct snode *env_node(void *env)
{
	return env;
}

static int env_send(void *env, uint16_t to, const struct dsm__msg *m,
		    const void *data)
{
	struct snode *n = env_node(env);
	struct smsg *s = malloc(sizeof(*s));
	struct chan *c;

	if (to >= S.n) {
		failf("send to unknown node %u", to);
		free(s);
		return -EINVAL;
	}
	if (S.trace >= 0 && (int)m->page == S.trace)
		printf("  %ld:   send %d -> %d %s\n", S.steps, n->id, to,
		       dsm__msg_name(m->type));
	c = &S.ch[n->id][to];
	s->m = *m;
	s->has_data = data != NULL;
	if (data)
		memcpy(s->data, data, DSM_PAGE_SIZE);
	s->next = NULL;
	if (c->tail)
		c->tail->next = s;
	else
		c->head = s;
	c->tail = s;
	c->len++;
	return 0;
}

static const void *env_bytes(void *env, struct dsm__engine *r, uint32_t p)
{
	struct snode *n = env_node(env);

	(void)r;
	if (n->acc[p] == NONE)
		failf("node %d serves page %u it cannot read", n->id, p);
	return n->mem[p];
}

static void env_install(void *env, struct dsm__engine *r, uint32_t p,
			enum dsm__install how, const void *data, bool write)
{
	struct snode *n = env_node(env);

	(void)r;
	switch (how) {
	case DSM_INSTALL_DATA:
		memcpy(n->mem[p], data, DSM_PAGE_SIZE);
		S.transfers++;
		break;
	case DSM_INSTALL_ZERO:
		memset(n->mem[p], 0, DSM_PAGE_SIZE);
		break;
	case DSM_INSTALL_KEEP:
		/* An invalidated page's bytes are gone (poisoned below). */
		if (n->acc[p] == NONE)
			failf("node %d: KEEP install of page %u without bytes",
			      n->id, p);
		break;
	}
	n->acc[p] = write ? RW : RO;
}

static void env_downgrade(void *env, struct dsm__engine *r, uint32_t p,
			  uint32_t count)
{
	struct snode *n = env_node(env);

	(void)r;
	for (uint32_t q = p; q < p + count; q++)
		n->acc[q] = RO;
}

static void env_invalidate(void *env, struct dsm__engine *r, uint32_t p)
{
	struct snode *n = env_node(env);

	(void)r;
	memset(n->mem[p], POISON, DSM_PAGE_SIZE);
	n->acc[p] = NONE;
}

static void env_fault_done(void *env, struct dsm__engine *r, uint32_t p)
{
	struct snode *n = env_node(env);

	(void)r;
	for (int i = 0; i < S.nv; i++) {
		if (n->v[i].blocked && n->v[i].page == (int)p)
			n->v[i].blocked = 0;
	}
}

static void env_defer(void *env, struct dsm__engine *r, uint32_t p,
		      uint64_t when)
{
	(void)r;
	env_node(env)->deferred_at[p] = when ? when : 1;
}

static uint64_t env_now(void *env)
{
	(void)env;
	return S.now;
}

static const struct dsm__env_ops sim_ops = DSM_ENV_OPS(env);

/* Every accessible copy equals the latest value; one writer excludes
 * every other copy. */
static void check_invariants(void)
{
	for (int p = 0; p < S.npages && !S.fail[0]; p++) {
		int writers = 0, readers = 0;

		for (int i = 0; i < S.n; i++) {
			struct snode *n = &S.nodes[i];

			if (n->acc[p] == NONE)
				continue;
			if (n->acc[p] == RW)
				writers++;
			else
				readers++;
			if (page_value(n->mem[p]) != S.latest[p])
				failf("node %d page %d holds %llx, latest is "
				      "%llx",
				      i, p,
				      (unsigned long long)page_value(n->mem[p]),
				      (unsigned long long)S.latest[p]);
		}
		if (writers > 1 || (writers && readers))
			failf("page %d: %d writers and %d readers", p, writers,
			      readers);
	}
}

/* One vCPU step: do its access if allowed, else fault and block. */
/* The page policy's path at a random moment: this node samples what it
 * homes and applies decisions made from the sample (the busiest member
 * gets the home, or every reader a copy and a replica mark, so later
 * read misses broadcast), through the same checks as a real node
 * (dsm__engine_apply drops what no longer holds). */
static void policy_round(struct snode *n, uint64_t x)
{
	struct dsm_page_sample smp[4];
	struct dsm_sample_info info;

	assert_int_equal(dsm__engine_sample(&n->r, smp, 4, &info), 0);
	assert_true(info.count <= 4 && info.count <= info.ranked);
	for (uint32_t k = 0; k < info.count; k++) {
		struct dsm_policy_op op = {.page = smp[k].page};
		uint32_t best = 0;

		assert_int_equal(smp[k].home, n->id);
		for (int i = 0; i < S.n; i++) {
			uint32_t c = smp[k].reads[i] + smp[k].writes[i];

			if (c > best && i != n->id) {
				best = c;
				op.node = (uint16_t)i;
			}
			if (x % 2 && smp[k].reads[i] && i != n->id) {
				struct dsm_policy_op push = {
					.page = smp[k].page,
					.node = (uint16_t)i,
					.push = true};

				dsm__engine_apply(&n->r, &push);
			}
		}
		if (!(x % 2) && best)
			dsm__engine_apply(&n->r, &op);
		if ((x >> 3) % 5 == 0) { /* and now and then unmarks */
			struct dsm_policy_op un = {.page = smp[k].page,
						   .unmark = true};

			dsm__engine_apply(&n->r, &un);
		}
	}
}

static void vcpu_step(struct snode *n, struct vcpu *v)
{
	struct dsm__engine *r = &n->r;
	int rc;

	if (v->page < 0) {
		uint64_t x = rnd();

		v->page = (int)(x % (uint64_t)S.npages);
		if (S.sequential && v->last >= 0 && (x >> 50) % 4)
			v->page = (v->last + 1) % S.npages;
		v->write = (x >> 20) % (S.sequential ? 6 : 3) == 0;
		/* Now and then the policy layer moves a home or pushes. */
		if ((x >> 30) % 40 == 0)
			dsm__engine_move_home(r, (uint32_t)v->page,
					      (uint16_t)((x >> 40) % S.n));
		else if ((x >> 30) % 40 == 1)
			dsm__engine_push(r, (uint32_t)v->page,
					 (uint16_t)((x >> 40) % S.n));
		else if ((x >> 30) % 40 == 2)
			policy_round(n, x >> 40);
	}
	if (n->acc[v->page] == RW || (!v->write && n->acc[v->page] == RO)) {
		if (v->write) {
			uint64_t val = ((uint64_t)n->id << 48) |
				       ((uint64_t)(v - n->v) << 40) | ++v->seq;

			set_value(n->mem[v->page], val);
			S.latest[v->page] = val;
		} else if (page_value(n->mem[v->page]) != S.latest[v->page]) {
			failf("node %d read %llx from page %d, latest %llx",
			      n->id,
			      (unsigned long long)page_value(n->mem[v->page]),
			      v->page, (unsigned long long)S.latest[v->page]);
		}
		v->last = v->page;
		v->page = -1;
		v->ops_left--;
		return;
	}
	if (S.trace == v->page)
		printf("  %ld: node %d faults %s\n", S.steps, n->id,
		       v->write ? "write" : "read");
	rc = dsm__engine_fault(r, (uint32_t)v->page, v->write);
	if (rc < 0)
		failf("fault returned %d", rc);
	else if (rc == 1)
		failf("node %d: engine says page %d is %s but it is not", n->id,
		      v->page, v->write ? "writable" : "readable");
	else
		v->blocked = 1;
}

static int deliver(int from, int to)
{
	struct chan *c = &S.ch[from][to];
	struct smsg *s = c->head;
	int rc;

	c->head = s->next;
	if (!c->head)
		c->tail = NULL;
	c->len--;
	if (S.trace >= 0 && (int)s->m.page == S.trace)
		printf("  %ld: %d -> %d %s flags=%x node=%u acks=%u ver=%llu "
		       "cs=%llx\n",
		       S.steps, from, to, dsm__msg_name(s->m.type), s->m.flags,
		       s->m.node, s->m.acks, (unsigned long long)s->m.version,
		       (unsigned long long)s->m.copyset);
	rc = dsm__engine_receive(&S.nodes[to].r, &s->m,
				 s->has_data ? s->data : NULL);
	if (rc)
		failf("node %d refused %s from %d: %d", to,
		      dsm__msg_name(s->m.type), from, rc);
	free(s);
	return rc;
}

static void drop_all_messages(void)
{
	for (int a = 0; a < MAXN; a++) {
		for (int b = 0; b < MAXN; b++) {
			while (S.ch[a][b].head) {
				struct smsg *s = S.ch[a][b].head;

				S.ch[a][b].head = s->next;
				free(s);
			}
			S.ch[a][b].tail = NULL;
			S.ch[a][b].len = 0;
		}
	}
}

static void setup_sim(uint64_t seed)
{
	uint16_t members[MAXN];
	struct dsm__engine_config c = {0};

	for (int i = 0; i < MAXN; i++)
		dsm__engine_fini(&S.nodes[i].r);
	drop_all_messages();
	memset(&S, 0, sizeof(S));
	S.rng = seed * 0x9E3779B97F4A7C15ull + 1;
	S.trace = getenv("DSM_SIM_TRACE") ? atoi(getenv("DSM_SIM_TRACE")) : -1;
	S.n = 2 + (int)(rnd() % (MAXN - 1));
	S.npages = 1 + (int)(rnd() % MAXP);
	S.nv = 1 + (int)(rnd() % MAXV);
	for (int i = 0; i < S.n; i++)
		members[i] = (uint16_t)i;
	c.id = 7;
	c.npages = (uint32_t)S.npages;
	c.members = members;
	c.nmembers = (uint16_t)S.n;
	c.policy = (enum dsm__home_policy)(rnd() % 3);
	c.home_node = (uint16_t)(rnd() % S.n);
	c.window_ms = rnd() % 3 == 0 ? 2 : 0;
	c.prefetch_max = 1 + (uint32_t)(rnd() % 4);
	/* interleave stripes of 1..3 pages, from the seed itself so that
	 * the random stream (and every older seed's schedule) stays as it
	 * was */
	c.stripe = 1 + (uint32_t)((seed >> 2) % 3);
	c.sample_slots = 4; /* 3 pages per interval: the full table too */
	S.sequential = rnd() % 3 == 0;
	c.ops = &sim_ops;
	for (int i = 0; i < S.n; i++) {
		struct snode *n = &S.nodes[i];

		n->id = i;
		c.self = (uint16_t)i;
		c.env = n;
		assert_int_equal(dsm__engine_init(&n->r, &c), 0);
		for (int p = 0; p < S.npages; p++)
			memset(n->mem[p], POISON, DSM_PAGE_SIZE);
		for (int k = 0; k < S.nv; k++) {
			n->v[k].page = -1;
			n->v[k].last = -1;
			n->v[k].ops_left = 40;
		}
	}
}

static int all_done(void)
{
	for (int i = 0; i < S.n; i++) {
		for (int k = 0; k < S.nv; k++) {
			if (S.nodes[i].v[k].ops_left > 0)
				return 0;
		}
	}
	return 1;
}

/* Picks and runs one step. Returns 0 when nothing can happen. */
static int step(void)
{
	int choices[MAXN * MAXN + MAXN * MAXV + MAXN * MAXP];
	int nc = 0, pick;

	for (int a = 0; a < S.n; a++)
		for (int b = 0; b < S.n; b++)
			if (S.ch[a][b].head)
				choices[nc++] = a * MAXN + b;
	for (int i = 0; i < S.n; i++)
		for (int k = 0; k < S.nv; k++)
			if (!S.nodes[i].v[k].blocked &&
			    S.nodes[i].v[k].ops_left > 0)
				choices[nc++] = 1000 + i * MAXV + k;
	for (int i = 0; i < S.n; i++)
		for (int p = 0; p < S.npages; p++)
			if (S.nodes[i].deferred_at[p] &&
			    S.nodes[i].deferred_at[p] <= S.now)
				choices[nc++] = 2000 + i * MAXP + p;
	if (nc == 0) {
		/* Only the clock can move things on (a time window). */
		for (int i = 0; i < S.n; i++)
			for (int p = 0; p < S.npages; p++)
				if (S.nodes[i].deferred_at[p]) {
					S.now++;
					return 1;
				}
		return 0;
	}
	pick = choices[rnd() % (uint64_t)nc];
	if (pick < 1000) {
		deliver(pick / MAXN, pick % MAXN);
	} else if (pick < 2000) {
		struct snode *n = &S.nodes[(pick - 1000) / MAXV];

		vcpu_step(n, &n->v[(pick - 1000) % MAXV]);
	} else {
		struct snode *n = &S.nodes[(pick - 2000) / MAXP];
		int p = (pick - 2000) % MAXP;

		n->deferred_at[p] = 0;
		dsm__engine_retry(&n->r, (uint32_t)p);
	}
	if (rnd() % 16 == 0)
		S.now++;
	return 1;
}

/* The state of every node, for a failing seed. */
static void dump(void)
{
	for (int i = 0; i < S.n; i++) {
		struct snode *n = &S.nodes[i];

		for (int p = 0; p < S.npages; p++) {
			uint16_t owner;
			uint64_t cs, ver;
			bool busy, home;

			home = dsm__dir_get(&n->r, (uint32_t)p, &owner, &cs,
					    &ver, &busy);
			printf("  node %d page %d: state=%d acc=%d ver=%llu "
			       "pending=%d home=%u",
			       i, p, dsm__page_state(&n->r, (uint32_t)p),
			       n->acc[p],
			       (unsigned long long)dsm__page_version(
				       &n->r, (uint32_t)p),
			       dsm__page_pending(&n->r, (uint32_t)p),
			       dsm__page_home(&n->r, (uint32_t)p));
			if (home)
				printf(" DIR owner=%d copyset=%llx ver=%llu "
				       "busy=%d",
				       owner == DSM_NO_NODE ? -1 : owner,
				       (unsigned long long)cs,
				       (unsigned long long)ver, busy);
			printf("\n");
		}
		for (int k = 0; k < S.nv; k++)
			printf("  node %d vcpu %d: page=%d write=%d blocked=%d "
			       "left=%d\n",
			       i, k, n->v[k].page, n->v[k].write,
			       n->v[k].blocked, n->v[k].ops_left);
	}
}

/* Runs one seed to completion; returns 0 or fails with the seed. */
static int run_seed(uint64_t seed)
{
	setup_sim(seed);
	while (!S.fail[0] && !all_done()) {
		if (!step()) {
			failf("no progress possible (deadlock or lost "
			      "wake-up)");
			break;
		}
		if (++S.steps > 200000) {
			failf("no completion after %ld steps", S.steps);
			break;
		}
		check_invariants();
	}
	/* Let the last DONEs and acks land, then check once more. */
	while (!S.fail[0] && step())
		check_invariants();
	if (S.fail[0])
		dump();
	if (S.fail[0]) {
		printf("FAILED seed=%llu nodes=%d pages=%d vcpus=%d policy=%d "
		       "window=%u prefetch=%u stripe=%u step=%ld: %s\n"
		       "replay: DSM_SIM_SEED=%llu\n",
		       (unsigned long long)seed, S.n, S.npages, S.nv,
		       S.nodes[0].r.cfg.policy, S.nodes[0].r.cfg.window_ms,
		       S.nodes[0].r.cfg.prefetch_max, S.nodes[0].r.cfg.stripe,
		       S.steps, S.fail, (unsigned long long)seed);
		return -1;
	}
	/* No home may be left busy once everything is quiet. */
	for (int i = 0; i < S.n; i++) {
		for (int p = 0; p < S.npages; p++) {
			uint16_t owner;
			uint64_t cs, ver;
			bool busy;

			if (dsm__dir_get(&S.nodes[i].r, (uint32_t)p, &owner,
					 &cs, &ver, &busy) &&
			    busy) {
				printf("FAILED seed=%llu: page %d busy at "
				       "home %d when quiet\n",
				       (unsigned long long)seed, p, i);
				return -1;
			}
		}
	}
	return 0;
}

/* Thousands of random schedules keep SWMR and SC and finish. */
static void test_proto_sim_random_schedules_coherent(void **state)
{
	const char *one = getenv("DSM_SIM_SEED");
	const char *count = getenv("DSM_SIM_SEEDS");
	uint64_t first = 1, n = count ? strtoull(count, NULL, 0) : 3000;
	long total_steps = 0, transfers = 0, readaheads = 0, broadcasts = 0;

	(void)state;
	cell_log_set_level(CELL_LOG_OFF);
	if (one) {
		first = strtoull(one, NULL, 0);
		n = 1;
		cell_log_set_level(CELL_LOG_DEBUG);
	}
	for (uint64_t s = first; s < first + n; s++) {
		assert_int_equal(run_seed(s), 0);
		total_steps += S.steps;
		transfers += S.transfers;
		for (int i = 0; i < S.n; i++) {
			readaheads += (long)S.nodes[i].r.readaheads;
			broadcasts += (long)S.nodes[i].r.broadcasts;
		}
	}
	printf("%llu seeds, %ld steps, %ld page transfers, %ld read-aheads, "
	       "%ld broadcast pushes: coherent\n",
	       (unsigned long long)n, total_steps, transfers, readaheads,
	       broadcasts);
	/* The schedules must reach the read-ahead and broadcast paths to
	 * test them. */
	if (n >= 1000) {
		assert_true(readaheads > 0);
		assert_true(broadcasts > 0);
	}
}

/* The checker itself catches a stale copy (so it can fail). */
static void test_proto_sim_checker_catches_stale_copy(void **state)
{
	(void)state;
	setup_sim(42);
	S.nodes[0].acc[0] = RO;
	set_value(S.nodes[0].mem[0], 1234);
	S.latest[0] = 99;
	check_invariants();
	assert_non_null(strstr(S.fail, "holds"));
	setup_sim(42);
	S.nodes[0].acc[0] = RW;
	S.nodes[1].acc[0] = RO;
	set_value(S.nodes[0].mem[0], 0);
	set_value(S.nodes[1].mem[0], 0);
	check_invariants();
	assert_non_null(strstr(S.fail, "writers"));
}

/* Header fields survive the wire encoding. */
static void test_proto_msg_roundtrip_same(void **state)
{
	struct dsm__msg a = {DSM_MSG_GRANT,
			     0x13,
			     5,
			     7,
			     3,
			     9,
			     1234,
			     88,
			     0x10203040ull,
			     0xdeadbeefcafeull,
			     0x8000000000000001ull},
			b;
	uint8_t wire[DSM_MSG_WIRE_LEN];

	(void)state;
	memset(&b, 0, sizeof(b));
	dsm__msg_pack(&a, wire);
	dsm__msg_unpack(wire, &b);
	assert_int_equal(a.type, b.type);
	assert_int_equal(a.flags, b.flags);
	assert_int_equal(a.from, b.from);
	assert_int_equal(a.node, b.node);
	assert_int_equal(a.acks, b.acks);
	assert_int_equal(a.epoch, b.epoch);
	assert_int_equal(a.page, b.page);
	assert_int_equal(a.window, b.window);
	assert_int_equal(a.region, b.region);
	assert_int_equal(a.version, b.version);
	assert_int_equal(a.copyset, b.copyset);
}

/* Random headers (any type, any field) never crash the engine: fields
 * that would index past its tables are refused before anything is
 * applied. Run under ASan/UBSan in CI. */
static void test_proto_random_messages_no_crash(void **state)
{
	uint8_t wire[DSM_MSG_WIRE_LEN], page[DSM_PAGE_SIZE];
	long refused = 0, taken = 0;

	(void)state;
	cell_log_set_level(CELL_LOG_OFF);
	setup_sim(7);
	memset(page, 0x42, sizeof(page));
	for (int i = 0; i < 200000; i++) {
		struct dsm__msg m;
		struct snode *n = &S.nodes[rnd() % (uint64_t)S.n];

		for (size_t k = 0; k < sizeof(wire); k++)
			wire[k] = (uint8_t)rnd();
		dsm__msg_unpack(wire, &m);
		/* Bias towards plausible values so the engine gets past the
		 * first checks often. */
		if (rnd() % 2) {
			m.type = (uint8_t)(1 + rnd() % (DSM_MSG_MAX - 1));
			m.from = (uint16_t)(rnd() % (uint64_t)S.n);
			m.page = (uint32_t)(rnd() % (uint64_t)S.npages);
			if (rnd() % 2)
				m.node = (uint16_t)(rnd() % (uint64_t)S.n);
			if (rnd() % 2)
				m.acks = (uint16_t)(rnd() % 3);
		}
		if (dsm__engine_receive(&n->r, &m,
					(m.flags & DSM_GRANT_DATA) ? page
								   : NULL))
			refused++;
		else
			taken++;
		drop_all_messages();
	}
	printf("random messages: %ld refused, %ld taken, no crash\n", refused,
	       taken);
	assert_true(refused > 0 && taken > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proto_msg_roundtrip_same),
		cmocka_unit_test(test_proto_sim_checker_catches_stale_copy),
		cmocka_unit_test(test_proto_sim_random_schedules_coherent),
		cmocka_unit_test(test_proto_random_messages_no_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
