/*
 * Unit tests of the manager's SQLite store (cell-manager/store.c): what is
 * saved comes back after reopening (nodes, cells, VMs), constraints hold,
 * a schema-1 file is upgraded, and a file that is not a cellmon database
 * is refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cell/log.h"
#include "store.h"
#include "testsupport.h"

struct loaded {
	int nodes, cells;
	struct mgr_node last;
	char cell_names[4][64];
	int policy[4];
};

static int count_node(const struct mgr_node *n, void *arg)
{
	struct loaded *l = arg;

	l->nodes++;
	l->last = *n;
	return 0;
}

static int count_cell(const char *name, uint64_t created, int page_policy,
		      void *arg)
{
	struct loaded *l = arg;

	(void)created;
	l->policy[l->cells % 4] = page_policy;
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
	assert_int_equal(mgr_store_cell_create(s, "c1", 123, 3), 0);
	assert_int_equal(mgr_store_cell_create(s, "c1", 123, 3), -EEXIST);
	assert_int_equal(mgr_store_cell_set_policy(s, "c1", 1), 0);
	assert_int_equal(mgr_store_cell_set_policy(s, "zz", 1), -ENOENT);
	assert_int_equal(mgr_store_node_set_cell(s, "n1", "c1"), 0);
	assert_int_equal(mgr_store_node_set_cell(s, "n1", "nocell"), -ENOENT);
	assert_int_equal(mgr_store_node_set_cell(s, "nonode", "c1"), -ENOENT);
	assert_int_equal(mgr_store_cell_delete(s, "c1"), -EBUSY);
	assert_int_equal(mgr_store_cell_delete(s, "zz"), -ENOENT);
	assert_int_equal(mgr_store_cell_create(s, "c2", 124, 0), 0);
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
	assert_int_equal(l.policy[0], 1); /* set after create: kept */
	assert_string_equal(l.last.cell, "c1");
	assert_string_equal(l.last.addr, "10.0.0.1");
	assert_int_equal(l.last.incarnation, 5);
	assert_int_equal(l.last.state, MGR_NODE_DOWN);
	mgr_store_close(s);
	ts_rmtree(dir);
	free(dir);
}

struct vm_seen {
	int n;
	char name[64], reason[64], placement[128];
	int state;
	uint64_t id, region;
	uint32_t runs;
	size_t spec_len;
	unsigned char spec[16];
};

static int see_vm(const struct mgr_vm_row *v, void *arg)
{
	struct vm_seen *w = arg;

	w->n++;
	snprintf(w->name, sizeof(w->name), "%s", v->name);
	snprintf(w->reason, sizeof(w->reason), "%s", v->reason);
	snprintf(w->placement, sizeof(w->placement), "%s", v->placement);
	w->state = v->state;
	w->id = v->id;
	w->region = v->region;
	w->runs = v->runs;
	w->spec_len = v->spec_len;
	memcpy(w->spec, v->spec, v->spec_len < 16 ? v->spec_len : 16);
	return 0;
}

/* VMs: ids are never reused, a save is an upsert by id, names are
 * unique, delete works, and all of it survives a reopen. */
static void test_store_vms_roundtrip(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256];
	struct mgr_store *s;
	unsigned char spec[5] = {1, 2, 0, 4, 5};
	struct mgr_vm_row r = {0, "vm1", spec, 5, 1, "", 0, 0, "", 10, 10};
	struct vm_seen w = {0};
	uint64_t id1, id2, id3;

	(void)state;
	cell_log_set_level(CELL_LOG_OFF);
	snprintf(path, sizeof(path), "%s/m.db", dir);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_vm_next_id(s, &id1), 0);
	assert_int_equal(mgr_store_vm_next_id(s, &id2), 0);
	assert_true(id2 > id1);
	r.id = id1;
	assert_int_equal(mgr_store_vm_save(s, &r), 0);
	r.state = 3;
	r.runs = 2;
	r.region = id1 << 16 | 2;
	r.reason = "why";
	r.placement = "n1,n2,n1";
	assert_int_equal(mgr_store_vm_save(s, &r), 0);
	r.id = id2; /* another VM, same name */
	assert_int_equal(mgr_store_vm_save(s, &r), -EEXIST);
	assert_int_equal(mgr_store_vm_delete(s, id2), -ENOENT);
	mgr_store_close(s);

	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_vm_next_id(s, &id3), 0);
	assert_true(id3 > id2);
	assert_int_equal(mgr_store_vms_load(s, see_vm, &w), 0);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.id, id1);
	assert_string_equal(w.name, "vm1");
	assert_string_equal(w.reason, "why");
	assert_string_equal(w.placement, "n1,n2,n1");
	assert_int_equal(w.state, 3);
	assert_int_equal(w.runs, 2);
	assert_int_equal(w.region, id1 << 16 | 2);
	assert_int_equal(w.spec_len, 5);
	assert_memory_equal(w.spec, spec, 5);
	assert_int_equal(mgr_store_vm_delete(s, id1), 0);
	w.n = 0;
	assert_int_equal(mgr_store_vms_load(s, see_vm, &w), 0);
	assert_int_equal(w.n, 0);
	mgr_store_close(s);
	ts_rmtree(dir);
	free(dir);
}

/* A schema-1 database (before VMs) opens, gains the vms table, and keeps
 * its nodes. */
static void test_store_schema1_upgraded(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256];
	struct mgr_store *s;
	struct loaded l = {0};
	struct vm_seen w = {0};
	struct mgr_vm_row r = {7, "old", "x", 1, 1, "", 0, 0, "", 1, 1};
	sqlite3 *db;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(
			db,
			"CREATE TABLE meta(key TEXT PRIMARY KEY, value "
			"INTEGER NOT NULL);"
			"CREATE TABLE cells(name TEXT PRIMARY KEY, "
			"created_ms INTEGER NOT NULL);"
			"CREATE TABLE nodes(id TEXT PRIMARY KEY, addr TEXT "
			"NOT NULL, cpus INTEGER NOT NULL, memory_mb "
			"INTEGER NOT NULL, heartbeat_ms INTEGER NOT NULL, "
			"incarnation INTEGER NOT NULL, state INTEGER NOT "
			"NULL, state_since_ms INTEGER NOT NULL, cell TEXT "
			"REFERENCES cells(name));"
			"INSERT INTO nodes VALUES('n9','a',1,1,250,3,1,0,"
			"NULL);"
			"INSERT INTO cells VALUES('oldc',5);"
			"PRAGMA user_version=1;",
			NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_nodes_load(s, count_node, &l), 0);
	assert_int_equal(l.nodes, 1);
	/* its cell gained a page policy, 0: the default */
	l.policy[0] = -1;
	assert_int_equal(mgr_store_cells_load(s, count_cell, &l), 0);
	assert_int_equal(l.cells, 1);
	assert_string_equal(l.cell_names[0], "oldc");
	assert_int_equal(l.policy[0], 0);
	assert_int_equal(mgr_store_vm_save(s, &r), 0);
	assert_int_equal(mgr_store_vms_load(s, see_vm, &w), 0);
	assert_int_equal(w.n, 1);
	mgr_store_close(s);
	ts_rmtree(dir);
	free(dir);
}

/* A schema-2 database (vms without restarts) gains the column and keeps
 * its VMs. */
static void test_store_schema2_upgraded(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256];
	struct mgr_store *s;
	struct vm_seen w = {0};
	struct mgr_vm_row r = {9, "v", "x", 1, 1, "", 0, 0, "", 1, 1, 2};
	sqlite3 *db;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.db", dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(
			db,
			"CREATE TABLE vms(id INTEGER PRIMARY KEY, name TEXT "
			"UNIQUE NOT NULL, spec BLOB NOT NULL, state INTEGER "
			"NOT NULL, reason TEXT NOT NULL, runs INTEGER NOT "
			"NULL, region INTEGER NOT NULL, placement TEXT NOT "
			"NULL, created_ms INTEGER NOT NULL, state_since_ms "
			"INTEGER NOT NULL);"
			"INSERT INTO vms VALUES(3,'old',x'00',5,'r',1,2,'n1',"
			"1,1);"
			"PRAGMA user_version=2;",
			NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_vms_load(s, see_vm, &w), 0);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.name, "old");
	assert_int_equal(mgr_store_vm_save(s, &r), 0);
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

struct events_seen {
	uint64_t ids[300];
	char last_detail[64];
	size_t n;
};

static int see_event(const struct mgr_event *e, void *arg)
{
	struct events_seen *w = arg;

	if (w->n < 300)
		w->ids[w->n++] = e->id;
	snprintf(w->last_detail, sizeof(w->last_detail), "%s", e->detail);
	return 0;
}

/* The event log: ids rise, a reader gets what is after an id or since a
 * time, oldest first, at most its limit; the retention keeps the last
 * `keep`; the events survive a reopen, and the last id is known then. */
static void test_store_events(void **state)
{
	char *dir = ts_tmpdir("storetest"), path[600], err[256], d[32];
	struct mgr_store *s;
	struct events_seen w = {0};
	uint64_t id = 0, last = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/m.db", dir);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_events_last(s, &last), 0);
	assert_int_equal(last, 0);
	for (int i = 1; i <= 200; i++) {
		snprintf(d, sizeof(d), "event %d", i);
		assert_int_equal(mgr_store_event_add(s, 1000 + (uint64_t)i,
						     "test", "x", d, 100, &id),
				 0);
		assert_int_equal(id, (uint64_t)i);
	}
	/* retention: at id 192, everything up to 92 went */
	assert_int_equal(mgr_store_events_load(s, 0, 0, 1000, see_event, &w),
			 0);
	assert_int_equal(w.n, 108);
	assert_int_equal(w.ids[0], 93);
	assert_int_equal(w.ids[107], 200);
	assert_string_equal(w.last_detail, "event 200");
	/* after an id, since a time, a limit */
	memset(&w, 0, sizeof(w));
	assert_int_equal(mgr_store_events_load(s, 195, 0, 1000, see_event, &w),
			 0);
	assert_int_equal(w.n, 5);
	assert_int_equal(w.ids[0], 196);
	memset(&w, 0, sizeof(w));
	assert_int_equal(mgr_store_events_load(s, 0, 1190, 1000, see_event, &w),
			 0);
	assert_int_equal(w.n, 11);
	memset(&w, 0, sizeof(w));
	assert_int_equal(mgr_store_events_load(s, 0, 0, 3, see_event, &w), 0);
	assert_int_equal(w.n, 3);
	mgr_store_close(s);
	assert_int_equal(mgr_store_open(path, &s, err, sizeof(err)), 0);
	assert_int_equal(mgr_store_events_last(s, &last), 0);
	assert_int_equal(last, 200);
	assert_int_equal(
		mgr_store_event_add(s, 5000, "test", "x", "more", 100, &id), 0);
	assert_int_equal(id, 201);
	mgr_store_close(s);
	ts_rmtree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_reopen_keeps_everything),
		cmocka_unit_test(test_store_garbage_file_refused),
		cmocka_unit_test(test_store_vms_roundtrip),
		cmocka_unit_test(test_store_schema1_upgraded),
		cmocka_unit_test(test_store_schema2_upgraded),
		cmocka_unit_test(test_store_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
