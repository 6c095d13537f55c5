/*
 * The page policy (cell-manager/page_policy.c) on scripted samples: a
 * dominant remote user gets the home once and not again within the hold
 * time; a read-mostly page read by several members is replicated, and
 * again after a write took the copies; a write-shared page is left and
 * noted; the rate limit holds; a member that is not up is never a
 * target; the modes and the minimum count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "page_policy.h"

static struct mgr_pp_config cfg;

static struct mgr_pp_vm *vm_new(enum mgr_pp_mode mode, uint16_t members)
{
	struct mgr_pp_vm *v = malloc(sizeof(*v));

	assert_non_null(v);
	mgr_pp_config_defaults(&cfg);
	mgr_pp_vm_init(v, mode, members, 1000);
	return v;
}

static struct mgr_pp_sample page(uint32_t pg, uint64_t copies)
{
	struct mgr_pp_sample s;

	memset(&s, 0, sizeof(s));
	s.page = pg;
	s.copies = copies;
	return s;
}

/* Member 2 makes 90 of 100 requests on a page homed on member 0. */
static void test_pp_dominant_user_migrates_once(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 3);
	struct mgr_pp_sample s = page(7, 0);
	struct mgr_pp_decision d[8];

	(void)state;
	s.reads[2] = 60;
	s.writes[2] = 30;
	s.reads[0] = 10;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 2000, d, 8), 1);
	assert_int_equal(d[0].page, 7);
	assert_int_equal(d[0].target, 2);
	assert_false(d[0].push);
	/* the same counts again (the move still under way, or back at
	 * member 0): held, for hold_ms */
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 3000, d, 8), 0);
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 11999, d, 8), 0);
	assert_int_equal(v->held_back, 2);
	/* once the hold is over it may move again */
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 12001, d, 8), 1);
	/* at its new home, the same user is the home: no move (member 0,
	 * its other reader, is marked a replica) */
	assert_int_equal(mgr_pp_decide(v, &cfg, 2, &s, 1, 30000, d, 8), 1);
	assert_true(d[0].push);
	assert_int_equal(d[0].target, 0);
	assert_int_equal(v->moves, 2);
	free(v);
}

/* 79 % is not dominant (migrate_pct 80); a page shared below
 * min_requests is left; a page whose one user is remote moves with any
 * count. */
static void test_pp_thresholds(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 2);
	struct mgr_pp_sample s[2] = {page(1, 0), page(2, 0)};
	struct mgr_pp_decision d[8];

	(void)state;
	s[0].writes[1] = 79;
	s[0].reads[0] = 21;
	s[1].reads[1] = 6; /* min_requests is 8 */
	s[1].reads[0] = 1;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 2000, d, 8), 0);
	s[1].reads[1] = 7; /* 7 of 8: 87 % */
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 3000, d, 8), 1);
	assert_int_equal(d[0].page, 2);
	s[0] = page(3, 0);
	s[0].writes[1] = 1; /* its only user, once */
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 1, 4000, d, 8), 1);
	assert_int_equal(d[0].page, 3);
	assert_int_equal(d[0].target, 1);
	free(v);
}

/* Read by members 0 (home), 1 and 2, never written: 1 and 2 marked as
 * replicas (the home copies it to them, and again on the first read miss
 * after a write); no decision again while it stays read-mostly; an
 * unmark once it is written too often. */
static void test_pp_read_shared_replicates(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 3);
	struct mgr_pp_sample s = page(5, 0);
	struct mgr_pp_decision d[8];
	uint32_t n;

	(void)state;
	s.reads[0] = 10;
	s.reads[1] = 12;
	s.reads[2] = 9;
	n = mgr_pp_decide(v, &cfg, 0, &s, 1, 2000, d, 8);
	assert_int_equal(n, 2);
	for (uint32_t i = 0; i < n; i++) {
		assert_true(d[i].push);
		assert_int_equal(d[i].page, 5);
		assert_int_not_equal(d[i].target, 0);
	}
	assert_int_not_equal(d[0].target, d[1].target);
	/* they have their copies (the sample shows the copyset) */
	s = page(5, 0x6);
	s.reads[0] = 3;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 3000, d, 8), 0);
	/* one write by the home invalidated them; the page is still
	 * read-mostly on average and its readers stay marked at the home,
	 * which copies it again on their next read miss: nothing to say */
	s = page(5, 0x0);
	s.writes[0] = 1;
	s.reads[1] = 1;
	s.reads[2] = 1;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 4000, d, 8), 0);
	/* written steadily now: no longer read-mostly, its marks cleared */
	s = page(5, 0x0);
	s.writes[0] = 40;
	s.reads[1] = 1;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 5000, d, 8), 1);
	assert_true(d[0].unmark);
	assert_int_equal(d[0].page, 5);
	assert_int_equal(v->pushes, 2);
	assert_int_equal(v->unmarks, 1);
	/* read by the home and one other (which wrote once): the other is
	 * marked, the home's own read misses broadcast to it; once the
	 * other is its only user, the home moves there */
	s = page(6, 0x0);
	s.reads[1] = 10;
	s.reads[0] = 10;
	s.writes[1] = 1;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 6000, d, 8), 1);
	assert_true(d[0].push && d[0].target == 1);
	s = page(6, 0x0);
	s.reads[1] = 10;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, 7000, d, 8), 1);
	assert_false(d[0].push); /* its only user: migrate */
	free(v);
}

/* A scene rewritten every frame by member 1 and read by 0, 2 and 3,
 * homed on 0: replicated on 2 and 3, then its home moves to its one
 * writer, where its readers are marked again (marks stay at a home). */
static void test_pp_single_writer_gets_home(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 4);
	struct mgr_pp_sample s = page(8, 0);
	struct mgr_pp_decision d[8];
	uint32_t n;

	(void)state;
	s.writes[1] = 10;
	s.reads[0] = 10;
	s.reads[2] = 10;
	s.reads[3] = 10;
	n = mgr_pp_decide(v, &cfg, 0, &s, 1, 2000, d, 8);
	assert_int_equal(n, 2); /* 2 and 3 (1 only writes) */
	assert_true(d[0].push && d[1].push);
	assert_int_equal(d[0].target + d[1].target, 5);
	n = mgr_pp_decide(v, &cfg, 0, &s, 1, 3000, d, 8);
	assert_int_equal(n, 1);
	assert_false(d[0].push || d[0].unmark);
	assert_int_equal(d[0].target, 1);
	/* sampled at its new home: 0, 2 and 3 marked there */
	s.reads[1] = 0;
	n = mgr_pp_decide(v, &cfg, 1, &s, 1, 4000, d, 8);
	assert_int_equal(n, 3);
	for (uint32_t i = 0; i < n; i++)
		assert_true(d[i].push && d[i].target != 1);
	assert_int_equal(v->moves, 1);
	free(v);
}

/* A counter written by members 0, 1 and 2 alike: left, and noted with
 * the members involved. */
static void test_pp_write_shared_left(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 3);
	struct mgr_pp_sample s = page(9, 0);
	struct mgr_pp_decision d[8];

	(void)state;
	s.writes[0] = 30;
	s.writes[1] = 35;
	s.writes[2] = 33;
	s.reads[1] = 2;
	for (uint64_t t = 2000; t < 6000; t += 1000)
		assert_int_equal(mgr_pp_decide(v, &cfg, 0, &s, 1, t, d, 8), 0);
	assert_int_equal(v->nshared, 1);
	assert_int_equal(v->shared[0].page, 9);
	assert_int_equal(v->shared[0].writers, 0x7);
	assert_int_equal(v->shared[0].intervals, 4);
	assert_int_equal(v->left, 4);
	assert_int_equal(v->moves + v->pushes, 0);
	free(v);
}

/* 100 pages each wanting a move, 10 ops per second: 10 now, none a
 * moment later, 5 after half a second. */
static void test_pp_rate_limit(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 2);
	struct mgr_pp_sample *s = calloc(100, sizeof(*s));
	struct mgr_pp_decision d[100];

	(void)state;
	cfg.ops_per_s = 10;
	for (uint32_t i = 0; i < 100; i++) {
		s[i] = page(i, 0);
		s[i].reads[1] = 50;
	}
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 100, 2000, d, 100), 10);
	for (uint32_t i = 0; i < 10; i++)
		assert_int_equal(d[i].page, i); /* hottest first */
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s + 10, 90, 2001, d, 100),
			 0);
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s + 10, 90, 2501, d, 100),
			 5);
	assert_true(v->limited >= 2);
	free(s);
	free(v);
}

/* The dominant user is down: no move; a down reader gets no copy. */
static void test_pp_down_member_never_target(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 3);
	struct mgr_pp_sample s[2] = {page(1, 0), page(2, 0)};
	struct mgr_pp_decision d[8];

	(void)state;
	v->up[2] = false;
	s[0].reads[2] = 100;
	s[1].reads[0] = 10;
	s[1].reads[1] = 10;
	s[1].reads[2] = 10;
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 2000, d, 8), 1);
	assert_true(d[0].push);
	assert_int_equal(d[0].page, 2);
	assert_int_equal(d[0].target, 1);
	free(v);
}

/* off decides nothing; migrate never pushes; replicate never moves. */
static void test_pp_modes(void **state)
{
	struct mgr_pp_sample s[2] = {page(1, 0), page(2, 0)};
	struct mgr_pp_decision d[8];
	struct mgr_pp_vm *v;

	(void)state;
	s[0].reads[1] = 100;				    /* wants a move */
	s[1].reads[0] = s[1].reads[1] = s[1].reads[2] = 10; /* copies */
	v = vm_new(MGR_PP_OFF, 3);
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 2000, d, 8), 0);
	free(v);
	v = vm_new(MGR_PP_MIGRATE, 3);
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 2000, d, 8), 1);
	assert_false(d[0].push);
	free(v);
	v = vm_new(MGR_PP_REPLICATE, 3);
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 2, 2000, d, 8), 2);
	assert_true(d[0].push && d[1].push);
	free(v);
	assert_int_equal(mgr_pp_mode_parse("all"), MGR_PP_ALL);
	assert_int_equal(mgr_pp_mode_parse("replicate"), MGR_PP_REPLICATE);
	assert_int_equal(mgr_pp_mode_parse("sometimes"), -1);
	assert_string_equal(mgr_pp_mode_name(MGR_PP_MIGRATE), "migrate");
}

/* The output bound is respected and nothing past it is counted. */
static void test_pp_output_bound(void **state)
{
	struct mgr_pp_vm *v = vm_new(MGR_PP_ALL, 2);
	struct mgr_pp_sample s[4];
	struct mgr_pp_decision d[2];

	(void)state;
	for (uint32_t i = 0; i < 4; i++) {
		s[i] = page(i, 0);
		s[i].writes[1] = 40;
	}
	assert_int_equal(mgr_pp_decide(v, &cfg, 0, s, 4, 2000, d, 2), 2);
	assert_int_equal(v->moves, 2);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pp_dominant_user_migrates_once),
		cmocka_unit_test(test_pp_thresholds),
		cmocka_unit_test(test_pp_read_shared_replicates),
		cmocka_unit_test(test_pp_single_writer_gets_home),
		cmocka_unit_test(test_pp_write_shared_left),
		cmocka_unit_test(test_pp_rate_limit),
		cmocka_unit_test(test_pp_down_member_never_target),
		cmocka_unit_test(test_pp_modes),
		cmocka_unit_test(test_pp_output_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
