/*
 * Two DSM nodes in one process, over loopback TCP and over the in-process
 * loop transport, each resolving the
 * faults of its own userfaultfd-registered mapping: coherence both ways,
 * per-page counters, home moves and pushes through the public API, and
 * hostile peer traffic (a stale epoch is refused and counted; a malformed
 * frame closes that connection; the region stays intact and the real
 * peer reconnects).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/endian.h"
#include "cell/fault.h"
#include "cell/log.h"
#include "dsm/dsm.h"
#include "proto.h"
#include "testsupport.h"

#define PAGES 32
#define WORDS (DSM_PAGE / 8)

struct pair {
	struct dsm_node *n[2];
	struct dsm_region *r[2];
	volatile uint64_t *m[2];
};

static int setup_with(void **state, enum dsm_transport transport,
		      enum dsm_home_policy policy)
{
	struct pair *p = calloc(1, sizeof(*p));
	uint16_t members[2] = {0, 1};
	struct dsm_region_config rc = {9, PAGES * DSM_PAGE, policy,
				       1, members,	    2};
	char addr[64];

	cell_log_set_level(CELL_LOG_ERROR);
	for (int i = 0; i < 2; i++) {
		struct dsm_node_config c = {
			(uint16_t)i, "127.0.0.1:0", 0, 4, 20, 1, transport, 0};

		assert_int_equal(dsm_node_create(&c, &p->n[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d",
			 dsm_node_port(p->n[1 - i]));
		assert_int_equal(dsm_node_add_peer(p->n[i], (uint16_t)(1 - i),
						   addr, NULL),
				 0);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dsm_region_create(p->n[i], &rc, &p->r[i]), 0);
		p->m[i] = dsm_region_map(p->r[i]);
		assert_non_null((void *)p->m[i]);
	}
	*state = p;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, DSM_TRANSPORT_TCP, DSM_POLICY_INTERLEAVE);
}

static int setup_loop(void **state)
{
	return setup_with(state, DSM_TRANSPORT_LOOP, DSM_POLICY_INTERLEAVE);
}

/* Every page homed on node 1: node 0's sequential misses prefetch. */
static int setup_home1(void **state)
{
	return setup_with(state, DSM_TRANSPORT_TCP, DSM_POLICY_ONE);
}

static int teardown(void **state)
{
	struct pair *p = *state;

	for (int i = 0; i < 2; i++) {
		dsm_region_destroy(p->r[i]);
		dsm_node_destroy(p->n[i]);
	}
	free(p);
	return 0;
}

/* A region the node cannot make (the dsm.region-create fault point in
 * a test build) fails with the error and leaves nothing behind: the same
 * id is made right after, and the pair still shares memory through it. */
static void test_dsm_node_region_create_error_leaves_nothing(void **state)
{
	struct pair *p = *state;
	uint16_t members[2] = {0, 1};
	struct dsm_region_config rc = {.id = 10,
				       .size = PAGES * DSM_PAGE,
				       .policy = DSM_POLICY_INTERLEAVE,
				       .members = members,
				       .nmembers = 2};
	struct dsm_region *r[2] = {NULL, NULL};
	volatile uint64_t *m[2];

	if (!cell_fault_points_built()) {
		printf("# SKIP: built without fault points "
		       "(-DCELLMON_FAULT_POINTS=ON, as tests/run builds)\n");
		skip();
	}
	setenv("CELLMON_FAULT", "dsm.region-create", 1);
	setenv("CELLMON_FAULT_ACTION", "error", 1);
	assert_int_equal(dsm_region_create(p->n[0], &rc, &r[0]), -EIO);
	unsetenv("CELLMON_FAULT");
	unsetenv("CELLMON_FAULT_ACTION");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dsm_region_create(p->n[i], &rc, &r[i]), 0);
		m[i] = dsm_region_map(r[i]);
		assert_non_null((void *)m[i]);
	}
	m[0][5 * WORDS] = 77;
	assert_int_equal(m[1][5 * WORDS], 77);
	for (int i = 0; i < 2; i++)
		dsm_region_destroy(r[i]);
}

/* Writes on either node are read back on the other, for every page. */
static void test_dsm_node_writes_seen_both_ways(void **state)
{
	struct pair *p = *state;
	struct dsm_page_stats st;

	for (int round = 0; round < 3; round++) {
		int w = round % 2;

		for (int pg = 0; pg < PAGES; pg++)
			p->m[w][pg * WORDS + 7] = (uint64_t)(round * 1000 + pg);
		for (int pg = 0; pg < PAGES; pg++)
			assert_int_equal(p->m[1 - w][pg * WORDS + 7],
					 round * 1000 + pg);
	}
	/* Page 1 is homed on node 1; node 0 faulted on it. */
	assert_int_equal(dsm_region_page_stats(p->r[0], 1, &st), 0);
	assert_int_equal(st.home, 1);
	assert_true(st.write_faults >= 1);
	assert_true(st.transfers >= 1);
	assert_int_equal(dsm_region_page_stats(p->r[1], 1, &st), 0);
	assert_true(st.requests_by_member[0] >= 1);
	assert_int_equal(dsm_region_page_stats(p->r[0], PAGES, &st), -ERANGE);
}

/*
 * Versions: a node that still holds the bytes gets write access without
 * them (an upgrade moves no data); a node whose copy was invalidated gets
 * the bytes again, and the new ones.
 */
static void test_dsm_node_upgrade_moves_no_data(void **state)
{
	struct pair *p = *state;
	struct dsm_page_stats st0, st1;

	p->m[1][WORDS + 3] = 11; /* page 1: homed on node 1, M there */
	assert_int_equal(p->m[0][WORDS + 3], 11);
	assert_int_equal(dsm_region_page_stats(p->r[0], 1, &st0), 0);
	assert_int_equal(st0.transfers, 1);
	p->m[0][WORDS + 3] = 12; /* upgrade: node 1's copy goes */
	assert_int_equal(dsm_region_page_stats(p->r[0], 1, &st0), 0);
	assert_int_equal(st0.transfers, 1);
	assert_int_equal(st0.state, 2);
	assert_int_equal(dsm_region_page_stats(p->r[1], 1, &st1), 0);
	assert_int_equal(st1.invalidations, 1);
	assert_int_equal(st1.transfers, 0);
	assert_int_equal(p->m[1][WORDS + 3], 12);
	assert_int_equal(dsm_region_page_stats(p->r[1], 1, &st1), 0);
	assert_int_equal(st1.transfers, 1);
}

/*
 * A holder reads the runs it hands out in one go (env_bytes); a page it
 * wrote since must come out new. Node 1 (home and writer of every page)
 * serves node 0's sequential reads, a window at a time, three times over.
 */
static void test_dsm_node_prefetched_runs_are_current(void **state)
{
	struct pair *p = *state;
	struct dsm_region_stats rs;

	for (uint64_t round = 1; round <= 3; round++) {
		for (int pg = 0; pg < PAGES; pg++)
			p->m[1][pg * WORDS + 5] = round * 100 + (uint64_t)pg;
		for (int pg = 0; pg < PAGES; pg++)
			assert_int_equal(p->m[0][pg * WORDS + 5],
					 round * 100 + (uint64_t)pg);
	}
	/* Single pages out of the last run read, each rewritten first. */
	for (int pg = PAGES - 1; pg >= PAGES - 8; pg--) {
		p->m[1][pg * WORDS + 5] = 7;
		assert_int_equal(p->m[0][pg * WORDS + 5], 7);
	}
	assert_int_equal(dsm_region_stats(p->r[0], &rs), 0);
	/* Fewer faults than pages read: the windows did arrive. */
	assert_true(rs.read_faults < 3 * PAGES + 8);
	assert_int_equal(rs.transfers, 3 * PAGES + 8);
}

/* Waits until page pg is in `state` on node i's copy. */
static void wait_state(struct pair *p, int i, uint32_t pg, uint8_t state)
{
	struct dsm_page_stats st;

	for (int t = 0; t < 400; t++) {
		assert_int_equal(dsm_region_page_stats(p->r[i], pg, &st), 0);
		if (st.state == state)
			return;
		usleep(5000);
	}
	fail_msg("page %u on node %d: state %u, not %u", pg, i, st.state,
		 state);
}

/* Zero fault-around (every page homed on node 1, prefetch 4): a write
 * miss on an untouched page also hands the writer the next untouched
 * pages, exclusively; writing them then faults nowhere, at the home
 * itself (pages 0..3) as at the other node (8..11). A page already
 * touched ends the run: it is never handed out as zeros. */
static void test_dsm_node_zero_fault_around(void **state)
{
	struct pair *p = *state;
	struct dsm_page_stats st;

	p->m[1][0] = 1;
	for (uint32_t pg = 1; pg < 4; pg++) {
		wait_state(p, 1, pg, 2);
		p->m[1][pg * WORDS] = pg + 1;
		assert_int_equal(dsm_region_page_stats(p->r[1], pg, &st), 0);
		assert_int_equal(st.write_faults, 0);
	}
	dsm_region_page_stats(p->r[1], 4, &st);
	assert_int_equal(st.state, 0); /* the window ended at 4 pages */

	p->m[1][10 * WORDS] = 77; /* touched: stops node 0's run at 10 */
	p->m[0][8 * WORDS] = 8;
	wait_state(p, 0, 9, 2);
	p->m[0][9 * WORDS] = 9;
	assert_int_equal(dsm_region_page_stats(p->r[0], 9, &st), 0);
	assert_int_equal(st.write_faults, 0);
	assert_int_equal(st.transfers, 0); /* zeros: no data came */
	dsm_region_page_stats(p->r[0], 10, &st);
	assert_int_equal(st.state, 0);
	assert_int_equal(p->m[0][10 * WORDS], 77);
	for (uint32_t pg = 0; pg < 4; pg++)
		assert_int_equal(p->m[0][pg * WORDS], pg + 1);
	assert_int_equal(p->m[1][8 * WORDS], 8);
	assert_int_equal(p->m[1][9 * WORDS], 9);
}

/* Sampling at the home (every page on node 1): node 0's read requests
 * are counted by page and member, reads apart from writes, and a sample
 * starts a new interval. Decisions apply only where they still hold: a
 * move from a node that is no longer the home, a push to a node that
 * has a copy, and a target that is not another member are dropped. */
static void test_dsm_node_sample_and_apply(void **state)
{
	struct pair *p = *state;
	struct dsm_page_sample smp[8];
	struct dsm_sample_info info;
	struct dsm_page_stats st;
	uint32_t applied, dropped;

	for (uint64_t round = 1; round <= 5; round++) {
		p->m[1][8 * WORDS] = round;
		p->m[1][16 * WORDS] = round;
		assert_int_equal(p->m[0][8 * WORDS], round);
		assert_int_equal(p->m[0][16 * WORDS], round);
	}
	assert_int_equal(dsm_region_sample(p->r[0], smp, 8, &info), 0);
	assert_int_equal(info.count, 0); /* node 0 homes nothing */
	assert_int_equal(dsm_region_sample(p->r[1], smp, 8, &info), 0);
	assert_int_equal(info.count, 2);
	assert_int_equal(info.lost, 0);
	for (int k = 0; k < 2; k++) {
		assert_true(smp[k].page == 8 || smp[k].page == 16);
		assert_int_equal(smp[k].home, 1);
		assert_int_equal(smp[k].reads[0], 5); /* member 0: node 0 */
		assert_int_equal(smp[k].writes[0], 0);
		assert_true(smp[k].writes[1] >= 4); /* node 1's upgrades */
		assert_true(smp[k].copyset & 1);    /* node 0 holds a copy */
	}
	assert_int_equal(dsm_region_sample(p->r[1], smp, 8, &info), 0);
	assert_int_equal(info.count, 0); /* a new interval */

	struct dsm_policy_op ops[] = {
		{.page = 8, .node = 0},		       /* move: applied */
		{.page = 16, .node = 0, .push = true}, /* has a copy: marked */
		{.page = 16, .node = 1},	       /* to itself: dropped */
		{.page = 16, .node = 7},	       /* no such member */
		{.page = 9999, .node = 0},	       /* no such page */
	};
	assert_int_equal(dsm_region_apply(p->r[1], ops, 5, &applied, &dropped),
			 0);
	assert_int_equal(applied, 2);
	assert_int_equal(dropped, 3);
	for (int t = 0; t < 400; t++) {
		dsm_region_page_stats(p->r[1], 8, &st);
		if (st.home == 0)
			break;
		usleep(5000);
	}
	assert_int_equal(st.home, 0);
	/* node 1 is not the home any more: its old decision is dropped */
	assert_int_equal(dsm_region_apply(p->r[1], ops, 1, &applied, &dropped),
			 0);
	assert_int_equal(applied, 0);
	/* a write invalidates node 0's copy of 16; a push brings it back
	 * before node 0 faults */
	p->m[1][16 * WORDS] = 99;
	struct dsm_policy_op push = {.page = 16, .node = 0, .push = true};

	assert_int_equal(
		dsm_region_apply(p->r[1], &push, 1, &applied, &dropped), 0);
	assert_int_equal(applied, 1);
	wait_state(p, 0, 16, 1);
	dsm_region_page_stats(p->r[0], 16, &st);
	uint32_t faults = st.read_faults;

	assert_int_equal(p->m[0][16 * WORDS], 99);
	dsm_region_page_stats(p->r[0], 16, &st);
	assert_int_equal(st.read_faults, faults); /* no fault: pushed */
	assert_int_equal(p->m[0][8 * WORDS], 5);
	/* unmarking needs no member; a page not homed here is dropped */
	struct dsm_policy_op un[] = {{.page = 16, .node = 9, .unmark = true},
				     {.page = 8, .unmark = true}};

	assert_int_equal(dsm_region_apply(p->r[1], un, 2, &applied, &dropped),
			 0);
	assert_int_equal(applied, 1);
	assert_int_equal(dropped, 1);
}

struct mover {
	struct dsm_region *r;
	uint16_t to;
};

static void *move_all(void *arg)
{
	struct mover *mv = arg;

	for (uint32_t pg = 0; pg < PAGES; pg++)
		dsm_region_move_home(mv->r, pg, mv->to);
	return NULL;
}

/* Homes moving back and forth while the other node reads: requests that
 * reach a node that is no longer the home are passed on to the new one
 * over TCP with the requester in `from` (a frame the transport once
 * refused as malformed, closing the connection and losing the request).
 * Every read sees the latest write and nothing is refused. */
static void test_dsm_node_requests_follow_moving_homes(void **state)
{
	struct pair *p = *state;
	struct dsm_node_stats st[2];

	for (uint64_t round = 1; round <= 40; round++) {
		struct mover mv = {p->r[round % 2],
				   (uint16_t)(round % 2 ? 0 : 1)};
		pthread_t t;

		for (int pg = 0; pg < PAGES; pg++)
			p->m[1][pg * WORDS + 3] = round * 1000 + (uint64_t)pg;
		assert_int_equal(pthread_create(&t, NULL, move_all, &mv), 0);
		for (int pg = 0; pg < PAGES; pg++)
			assert_int_equal(p->m[0][pg * WORDS + 3],
					 round * 1000 + (uint64_t)pg);
		pthread_join(t, NULL);
	}
	dsm_node_stats(p->n[0], &st[0]);
	dsm_node_stats(p->n[1], &st[1]);
	assert_int_equal(st[0].refused, 0);
	assert_int_equal(st[1].refused, 0);
}

/* An interleaved region with a stripe homes runs of pages on one node:
 * pages 0-3 on node 0, 4-7 on node 1, 8-11 on node 0 again. */
static void test_dsm_node_interleave_stripe(void **state)
{
	struct pair *p = *state;
	uint16_t members[2] = {0, 1};
	struct dsm_region_config rc = {.id = 11,
				       .size = PAGES * DSM_PAGE,
				       .policy = DSM_POLICY_INTERLEAVE,
				       .members = members,
				       .nmembers = 2,
				       .stripe = 4};
	struct dsm_region *r[2];
	struct dsm_page_stats st;

	for (int i = 0; i < 2; i++)
		assert_int_equal(dsm_region_create(p->n[i], &rc, &r[i]), 0);
	for (uint32_t pg = 0; pg < 12; pg++) {
		assert_int_equal(dsm_region_page_stats(r[0], pg, &st), 0);
		assert_int_equal(st.home, (pg / 4) % 2);
	}
	for (int i = 0; i < 2; i++)
		dsm_region_destroy(r[i]);
}

/* A moved home is seen by both nodes; a pushed copy arrives unasked. */
static void test_dsm_node_move_home_and_push(void **state)
{
	struct pair *p = *state;
	struct dsm_page_stats st;

	p->m[1][3 * WORDS] = 33; /* page 3: home node 1, now M on node 1 */
	assert_int_equal(dsm_region_move_home(p->r[0], 3, 0), 0);
	/* Both nodes learn the new home (the transfer is asynchronous). */
	for (int i = 0; i < 2; i++) {
		for (int t = 0; t < 400; t++) {
			dsm_region_page_stats(p->r[i], 3, &st);
			if (st.home == 0)
				break;
			usleep(5000);
		}
		assert_int_equal(st.home, 0);
	}
	assert_int_equal(p->m[0][3 * WORDS], 33);

	p->m[1][5 * WORDS] = 55;
	assert_int_equal(dsm_region_push(p->r[1], 5, 0), 0);
	for (int t = 0; t < 200; t++) {
		dsm_region_page_stats(p->r[0], 5, &st);
		if (st.state == 1)
			break;
		usleep(5000);
	}
	assert_int_equal(st.state, 1);
	assert_int_equal(st.read_faults, 0);
	assert_int_equal(p->m[0][5 * WORDS], 55);
	dsm_region_page_stats(p->r[0], 5, &st);
	assert_int_equal(st.read_faults, 0); /* no fault: it was pushed */
	assert_int_equal(dsm_region_move_home(p->r[0], 3, 40), -EINVAL);
}

static int raw_peer(int port, uint32_t epoch)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port)};
	uint8_t hello[16] = "CMDSM001";
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	hello[9] = 0; /* claims to be node 0 */
	cell_put32(hello + 12, epoch);
	assert_int_equal(write(fd, hello, sizeof(hello)), 16);
	return fd;
}

/* Stale epochs are refused; a malformed frame closes the connection;
 * the region is intact and the real peer comes back. */
static void test_dsm_node_hostile_frames_refused(void **state)
{
	struct pair *p = *state;
	struct dsm_node_stats before, after;
	struct dsm__msg m = {.type = DSM_MSG_INV,
			     .from = 0,
			     .node = 0,
			     .epoch = 0,
			     .page = 2,
			     .region = 9};
	uint8_t wire[DSM_MSG_WIRE_LEN], junk[DSM_MSG_WIRE_LEN];
	char c;
	int fd;

	p->m[0][2 * WORDS] = 22; /* page 2 home node 0, M at node 0 */
	assert_int_equal(p->m[1][2 * WORDS], 22);
	dsm_node_stats(p->n[1], &before);
	assert_int_equal(dsm_node_fence_peer(p->n[1], 0, 1), 0);
	fd = raw_peer(dsm_node_port(p->n[1]), 1); /* frames stamped 0 */
	dsm__msg_pack(&m, wire);
	assert_int_equal(write(fd, wire, sizeof(wire)), (ssize_t)sizeof(wire));
	usleep(100000);
	dsm_node_stats(p->n[1], &after);
	/* at least the impostor's hello; the real node 0's pings (and a
	 * DONE still on its way) are refused too while the fence is up,
	 * which under ASan's pace can fall inside this window */
	assert_true(after.refused >= before.refused + 1);
	/* Not applied: node 1 still reads page 2 without a fault. */
	assert_int_equal(p->m[1][2 * WORDS], 22);

	/* A request passed on by a node that is not the page's home names
	 * its requester, not the sender; one naming a node unknown here is
	 * malformed: the connection closes. */
	m = (struct dsm__msg){.type = DSM_MSG_READ_REQ,
			      .from = 5,
			      .epoch = 1,
			      .page = 2,
			      .region = 9};
	dsm__msg_pack(&m, wire);
	assert_int_equal(write(fd, wire, sizeof(wire)), (ssize_t)sizeof(wire));
	assert_int_equal(read(fd, &c, 1), 0); /* closed by node 1 */
	close(fd);
	fd = raw_peer(dsm_node_port(p->n[1]), 1);

	memset(junk, 0xEE, sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(read(fd, &c, 1), 0); /* closed by node 1 */
	close(fd);
	assert_int_equal(dsm_node_fence_peer(p->n[1], 0, 0), 0);
	/* Node 0 lost its connection to the impostor's hello and redials;
	 * traffic then flows again, with the data intact. */
	usleep(300000);
	p->m[1][2 * WORDS] = 23;
	assert_int_equal(p->m[0][2 * WORDS], 23);
	for (int pg = 0; pg < PAGES; pg++)
		assert_int_equal(p->m[0][pg * WORDS + 7], 0);
}

/* A peer whose hello carries an epoch below its fence (an incarnation
 * that ended) is not connected at all; the real peer carries on. */
static void test_dsm_node_stale_hello_refused(void **state)
{
	struct pair *p = *state;
	struct dsm_node_stats before, after;
	char c;
	int fd;

	p->m[0][4 * WORDS] = 44;
	dsm_node_stats(p->n[1], &before);
	assert_int_equal(dsm_node_fence_peer(p->n[1], 0, 7), 0);
	struct timeval tv = {2, 0};

	fd = raw_peer(dsm_node_port(p->n[1]), 6);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(read(fd, &c, 1), 0); /* closed by node 1 */
	close(fd);
	dsm_node_stats(p->n[1], &after);
	/* at least the impostor's hello; the real node 0's pings (and a
	 * DONE still on its way) are refused too while the fence is up,
	 * which under ASan's pace can fall inside this window */
	assert_true(after.refused >= before.refused + 1);
	/* The real node 0 is at epoch 1 < 7 too: its frames are refused
	 * from now on, so lower the fence back before checking it works. */
	assert_int_equal(dsm_node_fence_peer(p->n[1], 0, 0), 0);
	assert_int_equal(p->m[1][4 * WORDS], 44);
}

/* A mapping attached through the hand-off (here from this very process)
 * is coherent with the other node; destroying a node that serves
 * hand-offs returns (teardown). */
static void test_dsm_node_attached_mapping_coherent(void **state)
{
	struct pair *p = *state;
	char path[600], *dir = ts_tmpdir("dsm-handoff");
	volatile uint64_t *a;
	void *base;
	size_t size;
	int sock;

	snprintf(path, sizeof(path), "%s/h.sock", dir);
	assert_int_equal(dsm_node_serve_handoff(p->n[0], path), 0);
	assert_int_equal(dsm_attach(path, 99, NULL, &base, &size, &sock),
			 -ENOENT);
	assert_int_equal(dsm_attach(path, 9, NULL, &base, &size, &sock), 0);
	assert_int_equal(size, PAGES * DSM_PAGE);
	a = base;
	a[4 * WORDS + 1] = 41;
	assert_int_equal(p->m[1][4 * WORDS + 1], 41);
	p->m[1][4 * WORDS + 1] = 42;
	assert_int_equal(a[4 * WORDS + 1], 42);
	assert_int_equal(p->m[0][4 * WORDS + 1], 42);
	close(sock);
	munmap(base, size);
	ts_rmtree(dir);
	free(dir);
}

static int refuse_region_9(int pid, uint64_t id, void *arg)
{
	(void)arg;
	return pid > 0 && id == 9 ? -EACCES : 0;
}

/* A hand-off check that refuses makes dsm_attach() fail with its error
 * and maps nothing. */
static void test_dsm_node_handoff_check_refuses(void **state)
{
	struct pair *p = *state;
	char path[600], *dir = ts_tmpdir("dsm-handoff");
	void *base = NULL;
	size_t size = 0;
	int sock = -1;

	snprintf(path, sizeof(path), "%s/h.sock", dir);
	dsm_node_set_handoff_check(p->n[0], refuse_region_9, NULL);
	assert_int_equal(dsm_node_serve_handoff(p->n[0], path), 0);
	assert_int_equal(dsm_attach(path, 9, NULL, &base, &size, &sock),
			 -EACCES);
	assert_null(base);
	ts_rmtree(dir);
	free(dir);
}

static void *barrier_thread(void *arg)
{
	return (void *)(intptr_t)dsm_barrier(arg, 3, 3);
}

/* A thread stuck in a barrier that can never open returns -ECANCELED
 * after dsm_region_cancel_waits(), and later calls fail at once. */
static void test_dsm_node_cancel_waits_wakes_barrier(void **state)
{
	struct pair *p = *state;
	pthread_t t;
	void *rc;

	assert_int_equal(pthread_create(&t, NULL, barrier_thread, p->r[0]), 0);
	usleep(50 * 1000);
	assert_int_equal(dsm_region_cancel_waits(p->r[0]), 0);
	assert_int_equal(pthread_join(t, &rc), 0);
	assert_int_equal((intptr_t)rc, -ECANCELED);
	assert_int_equal(dsm_lock(p->r[0], 1), -ECANCELED);
	/* The other node's region is untouched. */
	assert_int_equal(dsm_lock(p->r[1], 1), 0);
	assert_int_equal(dsm_unlock(p->r[1], 1), 0);
}

/* Region stats add up the per-page counters: node 0 reading every page
 * faults once per page, half of them on pages it homes. */
static void test_dsm_node_region_stats_sum_pages(void **state)
{
	struct pair *p = *state;
	struct dsm_region_stats st;
	uint64_t sum = 0;

	for (int pg = 0; pg < PAGES; pg++)
		p->m[1][pg * WORDS] = (uint64_t)pg;
	for (int pg = 0; pg < PAGES; pg++)
		sum += p->m[0][pg * WORDS];
	assert_int_equal(sum, PAGES * (PAGES - 1) / 2);
	assert_int_equal(dsm_region_stats(p->r[0], &st), 0);
	assert_int_equal(st.pages_homed, PAGES / 2);
	assert_true(st.read_faults >= 1);
	assert_int_equal(st.local_faults + st.remote_faults,
			 st.read_faults + st.write_faults);
	assert_true(st.transfers >= PAGES / 2);
}

struct failure {
	pthread_mutex_t mu;
	int calls;
	uint16_t peer;
};

static void on_failed(struct dsm_region *r, uint16_t peer, void *arg)
{
	struct failure *f = arg;

	(void)r;
	pthread_mutex_lock(&f->mu);
	f->calls++;
	f->peer = peer;
	pthread_mutex_unlock(&f->mu);
}

/* A child process that maps region `id` through the hand-off and reads
 * its first page (as a vCPU would); exits 0 if the read returns. */
static pid_t fork_reader(const char *path, uint64_t id)
{
	pid_t kid = fork();

	if (kid == 0) {
		void *base;
		size_t size;
		int sock;

		if (dsm_attach(path, id, NULL, &base, &size, &sock))
			_exit(2);
		(void)*(volatile uint64_t *)base;
		_exit(0);
	}
	return kid;
}

/* A peer that stops answering: node 0 refuses everything node 1 sends
 * (a fence far ahead), so a read of a page homed on node 1 is never
 * answered; after the request timeout the region fails, once, naming
 * node 1. The reader is a process of its own (as vCPUs are): it is still
 * stuck, and killing it is how the agent ends such a VM. */
static void test_dsm_node_request_timeout_fails_region(void **state)
{
	uint16_t members[2] = {0, 1};
	struct dsm_region_config rc = {21, 4 * DSM_PAGE, DSM_POLICY_ONE,
				       1,  members,	 2};
	struct dsm_node *n[2];
	struct dsm_region *r[2];
	struct failure f = {.mu = PTHREAD_MUTEX_INITIALIZER};
	char addr[64], path[600], *dir = ts_tmpdir("dsm-timeout");
	pid_t kid;
	int calls = 0, status;

	(void)state;
	cell_log_set_level(CELL_LOG_OFF);
	for (int i = 0; i < 2; i++) {
		struct dsm_node_config c = {
			(uint16_t)i, "127.0.0.1:0",	0,  1, 0,
			1,	     DSM_TRANSPORT_TCP, 300};

		assert_int_equal(dsm_node_create(&c, &n[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d",
			 dsm_node_port(n[1 - i]));
		assert_int_equal(
			dsm_node_add_peer(n[i], (uint16_t)(1 - i), addr, NULL),
			0);
		assert_int_equal(dsm_region_create(n[i], &rc, &r[i]), 0);
	}
	assert_int_equal(dsm_region_on_failure(r[0], on_failed, &f), 0);
	snprintf(path, sizeof(path), "%s/h.sock", dir);
	assert_int_equal(dsm_node_serve_handoff(n[0], path), 0);
	assert_int_equal(dsm_node_fence_peer(n[0], 1, 1000), 0);
	kid = fork_reader(path, 21);
	assert_true(kid > 0);
	for (int i = 0; i < 100 && !calls; i++) {
		usleep(20 * 1000);
		pthread_mutex_lock(&f.mu);
		calls = f.calls;
		pthread_mutex_unlock(&f.mu);
	}
	assert_int_equal(calls, 1);
	assert_int_equal(f.peer, 1);
	usleep(500 * 1000); /* still once */
	pthread_mutex_lock(&f.mu);
	assert_int_equal(f.calls, 1);
	pthread_mutex_unlock(&f.mu);
	assert_int_equal(waitpid(kid, &status, WNOHANG), 0); /* still stuck */
	kill(kid, SIGKILL);
	assert_int_equal(waitpid(kid, &status, 0), kid);
	assert_true(WIFSIGNALED(status));
	dsm_region_destroy(r[0]);
	dsm_region_destroy(r[1]);
	dsm_node_destroy(n[0]);
	dsm_node_destroy(n[1]);
	ts_rmtree(dir);
	free(dir);
	cell_log_set_level(CELL_LOG_ERROR);
}

struct counter_arg {
	struct dsm_region *r;
	volatile uint64_t *m;
};

static void *count_thread(void *arg)
{
	struct counter_arg *a = arg;

	for (int i = 0; i < 500; i++) {
		assert_int_equal(dsm_lock(a->r, 7), 0);
		a->m[9 * WORDS]++;
		assert_int_equal(dsm_unlock(a->r, 7), 0);
	}
	return NULL;
}

/* Two threads on each of two nodes, 500 locked increments each: 2,000. */
static void test_dsm_node_lock_counter_exact(void **state)
{
	struct pair *p = *state;
	struct counter_arg a[2] = {{p->r[0], p->m[0]}, {p->r[1], p->m[1]}};
	pthread_t t[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, count_thread, &a[i % 2]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(p->m[0][9 * WORDS], 2000);
	assert_int_equal(p->m[1][9 * WORDS], 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_dsm_node_writes_seen_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_upgrade_moves_no_data, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_prefetched_runs_are_current, setup_home1,
			teardown),
		cmocka_unit_test_setup_teardown(test_dsm_node_zero_fault_around,
						setup_home1, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_requests_follow_moving_homes, setup_home1,
			teardown),
		cmocka_unit_test_setup_teardown(test_dsm_node_interleave_stripe,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsm_node_sample_and_apply,
						setup_home1, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_move_home_and_push, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_hostile_frames_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_lock_counter_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_attached_mapping_coherent, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_handoff_check_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_cancel_waits_wakes_barrier, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_region_stats_sum_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_region_create_error_leaves_nothing, setup,
			teardown),
		cmocka_unit_test(test_dsm_node_request_timeout_fails_region),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_stale_hello_refused, setup, teardown),
		/* The same behaviour over the in-process loop transport. */
		cmocka_unit_test_setup_teardown(
			test_dsm_node_writes_seen_both_ways, setup_loop,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_move_home_and_push, setup_loop, teardown),
		cmocka_unit_test_setup_teardown(
			test_dsm_node_lock_counter_exact, setup_loop, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
