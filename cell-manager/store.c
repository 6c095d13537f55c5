/*
 * SQLite persistence for the manager (store.h).
 *
 * Schema version 4 (version 1 lacked vms, version 2 vms.restarts,
 * version 3 cells.page_policy; opening an older file adds them):
 *   meta(key TEXT PRIMARY KEY, value INTEGER)   next_incarnation, epoch,
 *                                               next_vm_id
 *   cells(name TEXT PRIMARY KEY, created_ms INTEGER, page_policy INTEGER)
 *   nodes(id TEXT PRIMARY KEY, addr, cpus, memory_mb, heartbeat_ms,
 *         incarnation, state, state_since_ms, cell REFERENCES cells(name))
 * user_version holds the schema version; a newer one is refused on open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "cell/log.h"
#include "store.h"

#define SCHEMA_VERSION 5

struct mgr_store {
	sqlite3 *db;
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS cells(name TEXT PRIMARY KEY,"
	" created_ms INTEGER NOT NULL,"
	" page_policy INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS nodes(id TEXT PRIMARY KEY,"
	" addr TEXT NOT NULL, cpus INTEGER NOT NULL,"
	" memory_mb INTEGER NOT NULL, heartbeat_ms INTEGER NOT NULL,"
	" incarnation INTEGER NOT NULL, state INTEGER NOT NULL,"
	" state_since_ms INTEGER NOT NULL,"
	" cell TEXT REFERENCES cells(name));"
	"CREATE TABLE IF NOT EXISTS vms(id INTEGER PRIMARY KEY,"
	" name TEXT UNIQUE NOT NULL, spec BLOB NOT NULL,"
	" state INTEGER NOT NULL, reason TEXT NOT NULL,"
	" runs INTEGER NOT NULL, region INTEGER NOT NULL,"
	" placement TEXT NOT NULL, created_ms INTEGER NOT NULL,"
	" state_since_ms INTEGER NOT NULL,"
	" restarts INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY "
	"AUTOINCREMENT,"
	" at_ms INTEGER NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,"
	" detail TEXT NOT NULL);";

static int fail(struct mgr_store *s, const char *what)
{
	CELL_ERROR("store", "%s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

static int exec(struct mgr_store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		CELL_ERROR("store", "%s: %s", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

/* 1 when table has column col, 0 when not, -EIO on error. */
static int has_column(struct mgr_store *s, const char *table, const char *col)
{
	char sql[128];
	sqlite3_stmt *st;
	int found = 0, step;

	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return fail(s, sql);
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		if (strcmp((const char *)sqlite3_column_text(st, 1), col) == 0)
			found = 1;
	sqlite3_finalize(st);
	return step == SQLITE_DONE ? found : fail(s, sql);
}

static int user_version(struct mgr_store *s, int *v)
{
	sqlite3_stmt *st;
	int rc = -EIO;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL))
		return fail(s, "user_version");
	if (sqlite3_step(st) == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

int mgr_store_open(const char *path, struct mgr_store **out, char *err,
		   size_t errlen)
{
	struct mgr_store *s = calloc(1, sizeof(*s));
	int v = 0;

	if (!s)
		return -ENOMEM;
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto err;
	}
	sqlite3_busy_timeout(s->db, 2000);
	if (user_version(s, &v) || v > SCHEMA_VERSION) {
		snprintf(
			err, errlen,
			"%s: schema version %d is newer than this manager's %d "
			"(or the file is not a cellmon database)",
			path, v, SCHEMA_VERSION);
		goto err;
	}
	if (exec(s, "PRAGMA journal_mode=WAL") ||
	    exec(s, "PRAGMA synchronous=FULL") ||
	    exec(s, "PRAGMA foreign_keys=ON") || exec(s, schema) ||
	    (v == 2 && exec(s, "ALTER TABLE vms ADD COLUMN restarts INTEGER "
			       "NOT NULL DEFAULT 0")) ||
	    (has_column(s, "cells", "page_policy") == 0 &&
	     exec(s, "ALTER TABLE cells ADD COLUMN page_policy INTEGER "
		     "NOT NULL DEFAULT 0")) ||
	    exec(s, "PRAGMA user_version=5")) {
		snprintf(err, errlen, "%s: cannot set up the database: %s",
			 path, sqlite3_errmsg(s->db));
		goto err;
	}
	*out = s;
	return 0;
err:
	sqlite3_close(s->db);
	free(s);
	return -EIO;
}

void mgr_store_close(struct mgr_store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s);
}

static int meta_get(struct mgr_store *s, const char *key, uint64_t *v)
{
	sqlite3_stmt *st;
	int rc;

	*v = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1,
			       &st, NULL))
		return fail(s, "meta select");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, "meta");
}

static int meta_set(struct mgr_store *s, const char *key, uint64_t v)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(
		    s->db,
		    "INSERT INTO meta(key,value) VALUES(?,?) ON "
		    "CONFLICT(key) DO UPDATE SET value=excluded.value",
		    -1, &st, NULL))
		return fail(s, "meta insert");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, "meta set");
}

int mgr_store_counters_load(struct mgr_store *s, uint64_t *next_incarnation,
			    uint64_t *epoch)
{
	int rc = meta_get(s, "next_incarnation", next_incarnation);

	return rc ? rc : meta_get(s, "epoch", epoch);
}

static int node_upsert(struct mgr_store *s, const struct mgr_node *n)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(
		    s->db,
		    "INSERT INTO nodes(id,addr,cpus,memory_mb,heartbeat_ms,"
		    "incarnation,state,state_since_ms) VALUES(?,?,?,?,?,?,?,?) "
		    "ON CONFLICT(id) DO UPDATE SET addr=excluded.addr,"
		    "cpus=excluded.cpus,memory_mb=excluded.memory_mb,"
		    "heartbeat_ms=excluded.heartbeat_ms,"
		    "incarnation=excluded.incarnation,state=excluded.state,"
		    "state_since_ms=excluded.state_since_ms",
		    -1, &st, NULL))
		return fail(s, "node insert");
	sqlite3_bind_text(st, 1, n->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, n->addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, n->cpus);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)n->memory_mb);
	sqlite3_bind_int64(st, 5, n->heartbeat_ms);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)n->incarnation);
	sqlite3_bind_int(st, 7, (int)n->state);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)n->state_since_wall_ms);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, "node save");
}

int mgr_store_node_save(struct mgr_store *s, const struct mgr_node *n,
			uint64_t next_incarnation, uint64_t epoch)
{
	int rc = exec(s, "BEGIN IMMEDIATE");

	if (rc)
		return rc;
	rc = node_upsert(s, n);
	if (!rc)
		rc = meta_set(s, "next_incarnation", next_incarnation);
	if (!rc)
		rc = meta_set(s, "epoch", epoch);
	if (!rc)
		return exec(s, "COMMIT");
	exec(s, "ROLLBACK");
	return rc;
}

int mgr_store_nodes_load(struct mgr_store *s, mgr_store_node_fn fn, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0, step;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT id,addr,cpus,memory_mb,heartbeat_ms,"
			       "incarnation,state,state_since_ms,"
			       "coalesce(cell,'') FROM nodes ORDER BY rowid",
			       -1, &st, NULL))
		return fail(s, "nodes select");
	while ((step = sqlite3_step(st)) == SQLITE_ROW && !rc) {
		struct mgr_node n = {0};

		snprintf(n.id, sizeof(n.id), "%s",
			 (const char *)sqlite3_column_text(st, 0));
		snprintf(n.addr, sizeof(n.addr), "%s",
			 (const char *)sqlite3_column_text(st, 1));
		n.cpus = (uint32_t)sqlite3_column_int64(st, 2);
		n.memory_mb = (uint64_t)sqlite3_column_int64(st, 3);
		n.heartbeat_ms = (uint32_t)sqlite3_column_int64(st, 4);
		n.incarnation = (uint64_t)sqlite3_column_int64(st, 5);
		n.state = (enum mgr_node_state)sqlite3_column_int(st, 6);
		n.state_since_wall_ms = (uint64_t)sqlite3_column_int64(st, 7);
		snprintf(n.cell, sizeof(n.cell), "%s",
			 (const char *)sqlite3_column_text(st, 8));
		rc = fn(&n, arg);
	}
	if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
		rc = fail(s, "nodes load");
	sqlite3_finalize(st);
	return rc;
}

/* Runs a one-row statement with text parameters; returns the change count
 * through *changes. */
static int run(struct mgr_store *s, const char *sql, const char *a,
	       const char *b, int *changes)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return fail(s, sql);
	if (a)
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE)
		return fail(s, sql);
	if (changes)
		*changes = sqlite3_changes(s->db);
	return 0;
}

int mgr_store_cell_create(struct mgr_store *s, const char *name,
			  uint64_t created_ms, int page_policy)
{
	char ms[32], sql[96];

	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)created_ms);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO cells(name,created_ms,page_policy) "
		 "VALUES(?,?,%d)",
		 page_policy);
	return run(s, sql, name, ms, NULL);
}

int mgr_store_cell_set_policy(struct mgr_store *s, const char *name,
			      int page_policy)
{
	char sql[96];
	int changes = 0, rc;

	snprintf(sql, sizeof(sql),
		 "UPDATE cells SET page_policy=%d WHERE name=?", page_policy);
	rc = run(s, sql, name, NULL, &changes);
	return !rc && !changes ? -ENOENT : rc;
}

int mgr_store_cell_delete(struct mgr_store *s, const char *name)
{
	int changes = 0, rc;

	rc = run(s, "DELETE FROM cells WHERE name=?", name, NULL, &changes);
	if (rc == -EEXIST)
		return -EBUSY; /* the foreign key: nodes still in it */
	if (!rc && !changes)
		return -ENOENT;
	return rc;
}

int mgr_store_node_set_cell(struct mgr_store *s, const char *node,
			    const char *cell)
{
	int changes = 0, rc;

	rc = run(s, "UPDATE nodes SET cell=nullif(?,'') WHERE id=?", cell, node,
		 &changes);
	if (rc == -EEXIST)
		return -ENOENT; /* foreign key: no such cell */
	if (!rc && !changes)
		return -ENOENT;
	return rc;
}

int mgr_store_cells_load(struct mgr_store *s, mgr_store_cell_fn fn, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0, step;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT name,created_ms,page_policy FROM cells "
			       "ORDER BY name",
			       -1, &st, NULL))
		return fail(s, "cells select");
	while ((step = sqlite3_step(st)) == SQLITE_ROW && !rc)
		rc = fn((const char *)sqlite3_column_text(st, 0),
			(uint64_t)sqlite3_column_int64(st, 1),
			sqlite3_column_int(st, 2), arg);
	if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
		rc = fail(s, "cells load");
	sqlite3_finalize(st);
	return rc;
}

int mgr_store_counter_next(struct mgr_store *s, const char *key, uint64_t *v)
{
	uint64_t next;
	int rc = meta_get(s, key, &next);

	if (rc)
		return rc;
	*v = next ? next : 1;
	return meta_set(s, key, *v + 1);
}

int mgr_store_vm_next_id(struct mgr_store *s, uint64_t *id)
{
	return mgr_store_counter_next(s, "next_vm_id", id);
}

int mgr_store_vm_save(struct mgr_store *s, const struct mgr_vm_row *v)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(
		    s->db,
		    "INSERT INTO vms(id,name,spec,state,reason,runs,region,"
		    "placement,created_ms,state_since_ms,restarts) "
		    "VALUES(?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE "
		    "SET spec=excluded.spec,state=excluded.state,"
		    "reason=excluded.reason,runs=excluded.runs,"
		    "region=excluded.region,placement=excluded.placement,"
		    "state_since_ms=excluded.state_since_ms,"
		    "restarts=excluded.restarts",
		    -1, &st, NULL))
		return fail(s, "vm insert");
	sqlite3_bind_int64(st, 1, (sqlite3_int64)v->id);
	sqlite3_bind_text(st, 2, v->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, v->spec, (int)v->spec_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 4, v->state);
	sqlite3_bind_text(st, 5, v->reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, v->runs);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)v->region);
	sqlite3_bind_text(st, 8, v->placement, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)v->created_ms);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)v->state_since_ms);
	sqlite3_bind_int64(st, 11, v->restarts);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	return rc == SQLITE_DONE ? 0 : fail(s, "vm save");
}

int mgr_store_vm_delete(struct mgr_store *s, uint64_t id)
{
	char text[32];
	int changes = 0, rc;

	snprintf(text, sizeof(text), "%llu", (unsigned long long)id);
	rc = run(s, "DELETE FROM vms WHERE id=?", text, NULL, &changes);
	if (!rc && !changes)
		return -ENOENT;
	return rc;
}

int mgr_store_vms_load(struct mgr_store *s, mgr_store_vm_fn fn, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0, step;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT id,name,spec,state,reason,runs,region,"
			       "placement,created_ms,state_since_ms,restarts "
			       "FROM vms "
			       "ORDER BY id",
			       -1, &st, NULL))
		return fail(s, "vms select");
	while ((step = sqlite3_step(st)) == SQLITE_ROW && !rc) {
		struct mgr_vm_row v;

		v.id = (uint64_t)sqlite3_column_int64(st, 0);
		v.name = (const char *)sqlite3_column_text(st, 1);
		v.spec = sqlite3_column_blob(st, 2);
		v.spec_len = (size_t)sqlite3_column_bytes(st, 2);
		v.state = sqlite3_column_int(st, 3);
		v.reason = (const char *)sqlite3_column_text(st, 4);
		v.runs = (uint32_t)sqlite3_column_int64(st, 5);
		v.region = (uint64_t)sqlite3_column_int64(st, 6);
		v.placement = (const char *)sqlite3_column_text(st, 7);
		v.created_ms = (uint64_t)sqlite3_column_int64(st, 8);
		v.state_since_ms = (uint64_t)sqlite3_column_int64(st, 9);
		v.restarts = (uint32_t)sqlite3_column_int64(st, 10);
		rc = fn(&v, arg);
	}
	if (!rc && step != SQLITE_DONE && step != SQLITE_ROW)
		rc = fail(s, "vms load");
	sqlite3_finalize(st);
	return rc;
}

/* ---- events ---- */

int mgr_store_event_add(struct mgr_store *s, uint64_t at_ms, const char *kind,
			const char *subject, const char *detail, uint64_t keep,
			uint64_t *id)
{
	static const char sql[] =
		"INSERT INTO events(at_ms,kind,subject,detail) VALUES(?,?,?,?)";
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return fail(s, sql);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)at_ms);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(s, sql);
	*id = (uint64_t)sqlite3_last_insert_rowid(s->db);
	/* the retention: now and then, what is past the last `keep` goes */
	if (keep && *id % 64 == 0 && *id > keep) {
		char del[96];

		snprintf(del, sizeof(del),
			 "DELETE FROM events WHERE id <= %llu",
			 (unsigned long long)(*id - keep));
		return exec(s, del);
	}
	return 0;
}

int mgr_store_events_load(struct mgr_store *s, uint64_t after_id,
			  uint64_t since_ms, uint32_t limit,
			  mgr_store_event_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT id,at_ms,kind,subject,detail FROM events"
		" WHERE id > ? AND at_ms >= ? ORDER BY id LIMIT ?";
	sqlite3_stmt *st;
	int step, rc = 0;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return fail(s, sql);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)after_id);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)since_ms);
	sqlite3_bind_int64(st, 3, limit);
	while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
		struct mgr_event e = {
			.id = (uint64_t)sqlite3_column_int64(st, 0),
			.at_ms = (uint64_t)sqlite3_column_int64(st, 1),
			.kind = (const char *)sqlite3_column_text(st, 2),
			.subject = (const char *)sqlite3_column_text(st, 3),
			.detail = (const char *)sqlite3_column_text(st, 4),
		};

		rc = fn(&e, arg);
	}
	sqlite3_finalize(st);
	if (rc)
		return rc;
	return step == SQLITE_DONE ? 0 : fail(s, sql);
}

int mgr_store_events_last(struct mgr_store *s, uint64_t *id)
{
	static const char sql[] = "SELECT COALESCE(MAX(id),0) FROM events";
	sqlite3_stmt *st;
	int rc = -EIO;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL))
		return fail(s, sql);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*id = (uint64_t)sqlite3_column_int64(st, 0);
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc ? fail(s, sql) : 0;
}
