/*
 * Unit tests of VM placement (cell-manager/placement.c): spread and pack
 * deal vCPUs as documented, every filter keeps its nodes out, and a
 * refusal names the filters that rejected nodes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "placement.h"

#define NODE(name, c, mb)                                                 \
	{                                                                 \
		.id = name, .up = true, .in_cell = true, .has_dsm = true, \
		.cpus = c, .memory_mb = mb                                \
	}

static unsigned nodes_used(const uint32_t *out, uint32_t n)
{
	unsigned mask = 0, k = 0;

	for (uint32_t i = 0; i < n; i++)
		mask |= 1u << out[i];
	for (; mask; mask &= mask - 1)
		k++;
	return k;
}

/* Spread puts 3 vCPUs on 3 different nodes, round-robin. */
static void test_place_spread_three_nodes_one_each(void **state)
{
	struct mgr_place_node n[3] = {NODE("a", 2, 1024), NODE("b", 2, 1024),
				      NODE("c", 2, 1024)};
	struct mgr_place_req q = {.vcpus = 3, .memory_mb = 96};
	uint32_t out[3];
	char why[256];

	(void)state;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	assert_int_equal(nodes_used(out, 3), 3);
}

/* Pack puts 2 vCPUs on one node when one has room, and spills only
 * when it must. */
static void test_place_pack_fills_one_node_first(void **state)
{
	struct mgr_place_node n[3] = {NODE("a", 2, 1024), NODE("b", 4, 1024),
				      NODE("c", 2, 1024)};
	struct mgr_place_req q = {.vcpus = 3, .memory_mb = 96, .pack = true};
	uint32_t out[5];
	char why[256];

	(void)state;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	assert_int_equal(nodes_used(out, 3), 1);
	assert_int_equal(out[0], 1); /* b, the only node with 3 free */
	q.vcpus = 5;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	assert_int_equal(nodes_used(out, 5), 2);
}

/* Down, foreign, anti-affine, DSM-less and image-less nodes are never
 * chosen. */
static void test_place_filters_exclude_nodes(void **state)
{
	struct mgr_place_node n[6] = {NODE("a", 8, 1024), NODE("b", 8, 1024),
				      NODE("c", 8, 1024), NODE("d", 8, 1024),
				      NODE("f", 8, 1024), NODE("e", 8, 1024)};
	struct mgr_place_req q = {.vcpus = 4, .memory_mb = 64};
	uint32_t out[4];
	char why[256];

	(void)state;
	n[0].up = false;
	n[1].in_cell = false;
	n[2].anti_conflict = true;
	n[3].has_dsm = false;
	n[4].no_image = true;
	assert_int_equal(mgr_place(&q, n, 6, out, why, sizeof(why)), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(out[i], 5);
	n[5].no_image = true;
	assert_int_equal(mgr_place(&q, n, 6, out, why, sizeof(why)), -ENOSPC);
	assert_non_null(strstr(why, "image: 2 nodes without the image"));
}

/* A hint keeps every vCPU on the named node. */
static void test_place_node_hint_is_obeyed(void **state)
{
	struct mgr_place_node n[3] = {NODE("a", 4, 1024), NODE("b", 4, 1024),
				      NODE("c", 4, 1024)};
	struct mgr_place_req q = {.vcpus = 3, .memory_mb = 64, .node = "c"};
	uint32_t out[3];
	char why[256];

	(void)state;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(out[i], 2);
}

/* Used cpus and memory count: a full node is skipped, and a VM too large
 * for the cell is refused naming cpus and memory. */
static void test_place_refusal_names_filters(void **state)
{
	struct mgr_place_node n[3] = {NODE("a", 2, 1024), NODE("b", 2, 1024),
				      NODE("c", 2, 1024)};
	struct mgr_place_req q = {.vcpus = 7, .memory_mb = 64};
	uint32_t out[8];
	char why[512];

	(void)state;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), -ENOSPC);
	assert_non_null(strstr(why, "total: the usable nodes have 6 free"));
	n[0].used_cpus = 2;
	n[1].used_mb = 1000;
	n[2].used_mb = 500;
	q.vcpus = 2;
	q.memory_mb = 900;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), -ENOSPC);
	assert_non_null(strstr(why, "cpus: 1 node without a free cpu"));
	assert_non_null(strstr(why, "memory: 1 node too small (need 450 MB"));
	n[2].up = false;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), -ENOSPC);
	assert_non_null(strstr(why, "state: 1 node not up"));
	/* With the memory back, spread over what is left still works. */
	n[1].used_mb = 0;
	n[2].up = true;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	assert_int_equal(nodes_used(out, 2), 2);
	assert_true(out[0] != 0 && out[1] != 0);
}

/* Headroom raises the share each node must have free. */
static void test_place_headroom_counts(void **state)
{
	struct mgr_place_node n[1] = {NODE("a", 4, 1000)};
	struct mgr_place_req q = {.vcpus = 1, .memory_mb = 900};
	uint32_t out[1];
	char why[256];

	(void)state;
	assert_int_equal(mgr_place(&q, n, 1, out, why, sizeof(why)), 0);
	q.headroom_pct = 20;
	assert_int_equal(mgr_place(&q, n, 1, out, why, sizeof(why)), -ENOSPC);
	assert_non_null(strstr(why, "need 1080 MB free"));
}

/* Nodes that already hold the VM's pages are preferred. */
static void test_place_prefers_nodes_with_pages(void **state)
{
	struct mgr_place_node n[3] = {NODE("a", 8, 1024), NODE("b", 2, 1024),
				      NODE("c", 8, 1024)};
	struct mgr_place_req q = {.vcpus = 1, .memory_mb = 64};
	uint32_t out[1];
	char why[256];

	(void)state;
	n[1].has_pages = true;
	assert_int_equal(mgr_place(&q, n, 3, out, why, sizeof(why)), 0);
	assert_int_equal(out[0], 1);
}

/* mgr_place_counted: the filters behind a refusal, by name, with the
 * nodes each turned away; cpus also when the rest are too few. */
static void test_place_refusal_counted_by_filter(void **state)
{
	struct mgr_place_node n[4] = {NODE("a", 2, 1024), NODE("b", 2, 1024),
				      NODE("c", 2, 1024), NODE("d", 2, 1024)};
	struct mgr_place_req q = {.vcpus = 3, .memory_mb = 96};
	unsigned rej[MGR_PLACE_FILTERS];
	uint32_t out[3];
	char why[256];
	int f_state = -1, f_anti = -1, f_cpus = -1;

	(void)state;
	for (int f = 0; f < MGR_PLACE_FILTERS; f++) {
		if (!strcmp(mgr_place_filter_names[f], "state"))
			f_state = f;
		if (!strcmp(mgr_place_filter_names[f], "anti-affinity"))
			f_anti = f;
		if (!strcmp(mgr_place_filter_names[f], "cpus"))
			f_cpus = f;
	}
	assert_true(f_state >= 0 && f_anti >= 0 && f_cpus >= 0);
	n[0].up = false;
	n[1].anti_conflict = true;
	n[2].anti_conflict = true;
	n[3].cpus = 2;
	memset(rej, 0xff, sizeof(rej));
	assert_int_equal(
		mgr_place_counted(&q, n, 4, out, why, sizeof(why), rej),
		-ENOSPC);
	assert_int_equal(rej[f_state], 1);
	assert_int_equal(rej[f_anti], 2);
	assert_int_equal(rej[f_cpus], 1); /* d alone has 2 cpus for 3 */
	for (int f = 0; f < MGR_PLACE_FILTERS; f++)
		if (f != f_state && f != f_anti && f != f_cpus)
			assert_int_equal(rej[f], 0);
	/* a placement that succeeds leaves rejected alone */
	n[1].anti_conflict = n[2].anti_conflict = false;
	memset(rej, 0, sizeof(rej));
	assert_int_equal(
		mgr_place_counted(&q, n, 4, out, why, sizeof(why), rej), 0);
	for (int f = 0; f < MGR_PLACE_FILTERS; f++)
		assert_int_equal(rej[f], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_spread_three_nodes_one_each),
		cmocka_unit_test(test_place_pack_fills_one_node_first),
		cmocka_unit_test(test_place_filters_exclude_nodes),
		cmocka_unit_test(test_place_node_hint_is_obeyed),
		cmocka_unit_test(test_place_refusal_names_filters),
		cmocka_unit_test(test_place_headroom_counts),
		cmocka_unit_test(test_place_prefers_nodes_with_pages),
		cmocka_unit_test(test_place_refusal_counted_by_filter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
