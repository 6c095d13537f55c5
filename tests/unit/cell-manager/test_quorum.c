/*
 * Unit tests of the manager's declare-down quorum (cell-manager/quorum.c):
 * a fence round needs acknowledgements from enough other nodes, each at
 * least the peer vote's length old, for every view of W a node may still
 * hold; a round ends when the node is heard again; a new incarnation
 * starts clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quorum.h"

#define WAIT 1000

static struct mgr_quorum q;

static void cell(uint32_t n)
{
	memset(&q, 0, sizeof(q));
	for (uint32_t i = 0; i < n; i++)
		mgr_quorum_set_node(&q, i, 10 + i, false);
}

/* Node `from` reports refusing `id` (and nothing else). */
static void ack(uint32_t from, uint32_t id, uint32_t view, uint64_t now)
{
	uint32_t v[MGR_QUORUM_MAX] = {0};

	for (uint32_t i = 0; i < q.nodes; i++)
		v[i] = q.incarnation[i];
	v[id] = q.incarnation[id] + 1;
	mgr_quorum_heard(&q, from, v, q.nodes, view, now);
}

/* Three nodes: node 2 goes down only with both others' acks, P old. */
static void test_quorum_three_nodes_need_both_others(void **state)
{
	(void)state;
	cell(3);
	assert_false(mgr_quorum_may_declare(&q, 2, 5000, WAIT)); /* no round */
	mgr_quorum_round_start(&q, 2);
	assert_int_equal(mgr_quorum_vouch_min(&q, 2), 13);
	assert_int_equal(mgr_quorum_vouch_min(&q, 1), 11);
	ack(0, 2, 3, 1000);
	assert_false(mgr_quorum_may_declare(&q, 2, 5000, WAIT));
	ack(1, 2, 3, 1500);
	assert_false(mgr_quorum_may_declare(&q, 2, 2499, WAIT)); /* too new */
	assert_true(mgr_quorum_may_declare(&q, 2, 2500, WAIT));
}

/* Two nodes: the survivor's ack alone is enough (the other cannot hold a
 * peer lease without it); a node alone holds no peer lease (a quorum is
 * two nodes at least), so it is declared down without acks. */
static void test_quorum_two_and_one_node(void **state)
{
	(void)state;
	cell(2);
	mgr_quorum_round_start(&q, 1);
	assert_false(mgr_quorum_may_declare(&q, 1, 1100, WAIT));
	ack(0, 1, 2, 100);
	assert_true(mgr_quorum_may_declare(&q, 1, 1100, WAIT));
	cell(1);
	mgr_quorum_round_start(&q, 0);
	assert_true(mgr_quorum_may_declare(&q, 0, 99999, WAIT));
}

/* The first node to register may still hold a view of itself alone (it
 * never reported a larger one): that view allows no peer lease, so the
 * others' acks decide. */
static void test_quorum_first_node_small_view(void **state)
{
	(void)state;
	cell(3);
	ack(0, 0, 1, 1); /* node 0 last said it knows only itself */
	mgr_quorum_round_start(&q, 0);
	ack(1, 0, 3, 10);
	assert_false(mgr_quorum_may_declare(&q, 0, 5000, WAIT));
	ack(2, 0, 3, 10);
	assert_true(mgr_quorum_may_declare(&q, 0, 5000, WAIT));
}

/* Five nodes, 3 acks of the 4 others suffice; 2 do not. */
static void test_quorum_five_nodes_majority(void **state)
{
	(void)state;
	cell(5);
	mgr_quorum_round_start(&q, 4);
	ack(0, 4, 5, 10);
	ack(1, 4, 5, 10);
	assert_false(mgr_quorum_may_declare(&q, 4, 5000, WAIT));
	ack(2, 4, 5, 10);
	assert_true(mgr_quorum_may_declare(&q, 4, 5000, WAIT));
}

/* A node that still holds a smaller view (nodes joined since it last
 * reported) keeps the check on that view too: 5 nodes now, node 1 last
 * reported a view of 3; acks of 2, 3, 4 are a majority of 5 but miss the
 * view {0, 1, 2} except for node 2: node 1 could hold a quorum there with
 * node 0. With node 0's ack too, every view is covered. */
static void test_quorum_smaller_views_checked(void **state)
{
	(void)state;
	cell(5);
	ack(1, 1, 3, 1); /* node 1 reports its view (3); no round yet */
	mgr_quorum_round_start(&q, 1);
	ack(2, 1, 5, 10);
	ack(3, 1, 5, 10);
	ack(4, 1, 5, 10);
	assert_false(mgr_quorum_may_declare(&q, 1, 5000, WAIT));
	ack(0, 1, 5, 10);
	assert_true(mgr_quorum_may_declare(&q, 1, 5000, WAIT));
}

/* Heard again: the round ends, the refusal is lifted and the old acks no
 * longer count; a new incarnation starts clean too. */
static void test_quorum_round_end_and_new_incarnation(void **state)
{
	(void)state;
	cell(3);
	mgr_quorum_round_start(&q, 0);
	ack(1, 0, 3, 10);
	ack(2, 0, 3, 10);
	mgr_quorum_round_end(&q, 0);
	assert_int_equal(mgr_quorum_vouch_min(&q, 0), 10);
	mgr_quorum_round_start(&q, 0);
	assert_false(mgr_quorum_may_declare(&q, 0, 99999, WAIT));
	ack(1, 0, 3, 10);
	ack(2, 0, 3, 10);
	mgr_quorum_set_node(&q, 0, 20, false);
	assert_false(mgr_quorum_may_declare(&q, 0, 99999, WAIT));
	assert_int_equal(mgr_quorum_vouch_min(&q, 0), 20);
	/* down: refused for good */
	mgr_quorum_set_node(&q, 0, 20, true);
	assert_int_equal(mgr_quorum_vouch_min(&q, 0), 21);
}

/* An ack that does not refuse the round's incarnation does not count. */
static void test_quorum_stale_report_ignored(void **state)
{
	uint32_t v[3] = {10, 11, 12};

	(void)state;
	cell(3);
	mgr_quorum_round_start(&q, 2);
	mgr_quorum_heard(&q, 0, v, 3, 3, 10);
	mgr_quorum_heard(&q, 1, v, 3, 3, 10);
	assert_false(mgr_quorum_may_declare(&q, 2, 99999, WAIT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quorum_three_nodes_need_both_others),
		cmocka_unit_test(test_quorum_two_and_one_node),
		cmocka_unit_test(test_quorum_first_node_small_view),
		cmocka_unit_test(test_quorum_five_nodes_majority),
		cmocka_unit_test(test_quorum_smaller_views_checked),
		cmocka_unit_test(test_quorum_round_end_and_new_incarnation),
		cmocka_unit_test(test_quorum_stale_report_ignored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
