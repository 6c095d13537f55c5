/*
 * Unit tests of the manager's SQLite store (cell-manager/store.c): what is
 * saved comes back after reopening, constraints hold, and a file that is
 * not a cellmon database is refused.
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
#include "store.h"
#include "testsupport.h"

struct loaded {
	int nodes, cells;
	struct mgr_node last;
	char cell_names[4][64];
};

static int count_node(const struct mgr_node *n, void *arg)
{
	struct loaded *l = arg;

	l->nodes++;
	l->last = *n;
	return 0;
}

static int count_cell(const char *name, uint64_t created, void *arg)
{
	struct loaded *l = arg;

	(void)created;
	snprintf(l->cell_names[l->cells++ % 4], 64, "%s", name);
	return 0;
}

/* Nodes, cells, memberships and counters survive close + reopen. */
static void test_store_reopen_keeps_everything(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256];
	struct mgr_store *s;
	struct mgr_node n = {0};
	struct loaded l = {0};
	uint64_t inc, epoch;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.db", dir);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	strcpy(n.id, "n1");
	strcpy(n.addr, "10.0.0.1");
	n.cpus = 4;
	n.memory_mb = 2048;
	n.incarnation = 5;
	n.state = MGR_NODE_DOWN;
	assert_int_equal(mgr_store_node_save(s, &n, 6, 9), 0);
	assert_int_equal(mgr_store_cell_create(s, "c1", 123), 0);
	assert_int_equal(mgr_store_cell_create(s, "c1", 123), -EEXIST);
	assert_int_equal(mgr_store_node_set_cell(s, "n1", "c1"), 0);
	assert_int_equal(mgr_store_node_set_cell(s, "n1", "nocell"), -ENOENT);
	assert_int_equal(mgr_store_node_set_cell(s, "nonode", "c1"), -ENOENT);
	assert_int_equal(mgr_store_cell_delete(s, "c1"), -EBUSY);
	assert_int_equal(mgr_store_cell_delete(s, "zz"), -ENOENT);
	assert_int_equal(mgr_store_cell_create(s, "c2", 124), 0);
	assert_int_equal(mgr_store_cell_delete(s, "c2"), 0);
	mgr_store_close(s);

	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_counters_load(s, &inc, &epoch), 0);
	assert_int_equal(inc, 6);
	assert_int_equal(epoch, 9);
	assert_int_equal(mgr_store_nodes_load(s, count_node, &l), 0);
	assert_int_equal(mgr_store_cells_load(s, count_cell, &l), 0);
	assert_int_equal(l.nodes, 1);
	assert_int_equal(l.cells, 1);
	assert_string_equal(l.cell_names[0], "c1");
	assert_string_equal(l.last.cell, "c1");
	assert_string_equal(l.last.addr, "10.0.0.1");
	assert_int_equal(l.last.incarnation, 5);
	assert_int_equal(l.last.state, MGR_NODE_DOWN);
	mgr_store_close(s);
	ts_rmtree(dir);
	free(dir);
}

/* A file that is not SQLite is refused with a message, not overwritten. */
static void test_store_garbage_file_refused(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256] = "";
	struct mgr_store *s = NULL;
	FILE *f;
	char *after;

	(void)state;
	cell_log_set_level(CELL_LOG_OFF);
	snprintf(path, sizeof(path), "%s/m.db", dir);
	f = fopen(path, "w");
	for (int i = 0; i < 200; i++)
		fputs("this is not a database, it is a text file\n", f);
	fclose(f);
	assert_int_not_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_null(s);
	assert_non_null(strstr(err, path));
	after = ts_read_file(path);
	assert_non_null(after);
	assert_non_null(strstr(after, "not a database"));
	free(after);
	ts_rmtree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_reopen_keeps_everything),
		cmocka_unit_test(test_store_garbage_file_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
