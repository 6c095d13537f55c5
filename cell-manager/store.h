/*
 * The manager's persistent state in SQLite (<state_dir>/manager.db): nodes
 * with their last incarnation, state and cell, the cells, the VMs,
 * counters (next incarnation, membership epoch, next VM id), and the event
 * log (`cellctl events`). The manager writes
 * through this module before it acknowledges a change, so an acknowledged
 * change survives kill -9 (WAL, synchronous=FULL).
 *
 * Errors come back as -errno (-EIO for SQLite failures) with the SQLite
 * message logged. One thread (the manager's event loop).
 */
#ifndef MGR_STORE_H
#define MGR_STORE_H

#include <stdint.h>

#include "membership.h"

struct mgr_store;

int mgr_store_open(const char *path, struct mgr_store **out, char *err,
		   size_t errlen);
void mgr_store_close(struct mgr_store *s);

/* Counters; a missing key reads as 0. */
int mgr_store_counters_load(struct mgr_store *s, uint64_t *next_incarnation,
			    uint64_t *epoch);

/* Upserts a node and the counters in one transaction. */
int mgr_store_node_save(struct mgr_store *s, const struct mgr_node *n,
			uint64_t next_incarnation, uint64_t epoch);

typedef int (*mgr_store_node_fn)(const struct mgr_node *n, void *arg);
int mgr_store_nodes_load(struct mgr_store *s, mgr_store_node_fn fn, void *arg);

/* -EEXIST if the cell exists. page_policy: a Cellmon__PagePolicy. */
int mgr_store_cell_create(struct mgr_store *s, const char *name,
			  uint64_t created_ms, int page_policy);
/* -ENOENT if missing. */
int mgr_store_cell_set_policy(struct mgr_store *s, const char *name,
			      int page_policy);
/* -ENOENT if missing; -EBUSY if it still has nodes. */
int mgr_store_cell_delete(struct mgr_store *s, const char *name);
/* Sets a node's cell ("" for none). -ENOENT for an unknown node. */
int mgr_store_node_set_cell(struct mgr_store *s, const char *node,
			    const char *cell);

typedef int (*mgr_store_cell_fn)(const char *name, uint64_t created_ms,
				 int page_policy, void *arg);
int mgr_store_cells_load(struct mgr_store *s, mgr_store_cell_fn fn, void *arg);

/* A VM as stored: its spec is a packed cellmon.VmSpec. */
struct mgr_vm_row {
	uint64_t id;
	const char *name;
	const void *spec;
	size_t spec_len;
	int state; /* cellmon.VmState */
	const char *reason;
	uint32_t runs;
	uint64_t region;
	const char *placement; /* node of each vCPU, comma-separated */
	uint64_t created_ms, state_since_ms;
	uint32_t restarts;
};

/* The next value of counter `key` (from 1), never handed out before. */
int mgr_store_counter_next(struct mgr_store *s, const char *key, uint64_t *v);
/* A new VM id, never handed out before (ids name DSM regions). */
int mgr_store_vm_next_id(struct mgr_store *s, uint64_t *id);
/* Upserts by id; -EEXIST when another VM has the name. */
int mgr_store_vm_save(struct mgr_store *s, const struct mgr_vm_row *v);
/* -ENOENT if missing. */
int mgr_store_vm_delete(struct mgr_store *s, uint64_t id);
typedef int (*mgr_store_vm_fn)(const struct mgr_vm_row *v, void *arg);
int mgr_store_vms_load(struct mgr_store *s, mgr_store_vm_fn fn, void *arg);

/* The event log: one row per event, ids rising; kept to the last `keep`
 * (0: all). *id gets the new event's. */
struct mgr_event {
	uint64_t id, at_ms; /* wall clock */
	const char *kind, *subject, *detail;
};
int mgr_store_event_add(struct mgr_store *s, uint64_t at_ms, const char *kind,
			const char *subject, const char *detail, uint64_t keep,
			uint64_t *id);
/* Events with an id above after_id and at or after since_ms, oldest
 * first, at most limit; fn's non-zero return stops and is returned. */
typedef int (*mgr_store_event_fn)(const struct mgr_event *e, void *arg);
int mgr_store_events_load(struct mgr_store *s, uint64_t after_id,
			  uint64_t since_ms, uint32_t limit,
			  mgr_store_event_fn fn, void *arg);
/* The newest event's id (0: none). */
int mgr_store_events_last(struct mgr_store *s, uint64_t *id);

#endif
