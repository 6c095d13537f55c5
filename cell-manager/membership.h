/*
 * Membership: which nodes exist, which incarnation each one is, and whether
 * it is up, suspect or down. A pure state machine: it reads time only from
 * the struct cell_clock it was given and does no I/O, so tests drive it
 * step by step without sleeping. The manager persists what it decides.
 *
 * Rules:
 * - A registration gets a new incarnation unless it names the node's
 *   current incarnation and the node is not down (a reconnect, e.g. after
 *   a manager restart). A down node's incarnation is over for good.
 * - A heartbeat renews a node only for its current incarnation; any other
 *   gets -ESTALE and the agent must register again.
 * - mgr_members_tick() marks a node suspect after suspect_after_ms and
 *   down after down_after_ms without a heartbeat.
 * - The epoch grows on every new incarnation and every node declared down.
 *
 * One thread (the manager's event loop).
 */
#ifndef MGR_MEMBERSHIP_H
#define MGR_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cell/clock.h"
#include "cell/util.h"

enum mgr_node_state {
	MGR_NODE_UNKNOWN = 0,
	MGR_NODE_UP = 1,
	MGR_NODE_SUSPECT = 2,
	MGR_NODE_DOWN = 3,
};

#define MGR_NODE_IMAGES 128

struct mgr_node {
	char id[CELL_NAME_MAX + 1];
	char addr[128];
	char cell[CELL_NAME_MAX + 1]; /* "" when in no cell */
	uint32_t cpus;
	uint64_t memory_mb;
	double load1;
	uint64_t mem_free_mb;
	uint32_t vcpus;
	uint32_t heartbeat_ms;
	enum mgr_node_state state;
	uint64_t incarnation;
	uint64_t last_seen_ms;	      /* member clock */
	uint64_t state_since_wall_ms; /* for people */
	void *conn;	    /* the daemon's live connection, or NULL */
	char dsm_addr[160]; /* the agent's DSM host:port ("" until known) */
	/* its disk block cache, from the last heartbeat */
	struct {
		uint64_t hits, misses, evictions, waits, zero_reads;
		uint64_t entries, capacity;
	} cache;
	/* the images a VM can name there (Capacity.images), sorted; not
	 * known until the agent says, and then no filter applies */
	bool images_known;
	uint32_t nimages;
	char qemu_accel[32]; /* Capacity.qemu_accel */
	char images[MGR_NODE_IMAGES][CELL_NAME_MAX + 1];
};

struct mgr_node;

struct mgr_members_config {
	uint64_t suspect_after_ms;
	uint64_t down_after_ms;
	/* Silent for down_after, may n be declared down now? NULL: yes.
	 * Called on every tick until it says yes (the manager's quorum
	 * rule, quorum.h); arg is the on_change arg. */
	bool (*may_declare_down)(const struct mgr_node *n, void *arg);
};

/* Runs on every state change, after the node was updated. */
typedef void (*mgr_members_change_fn)(struct mgr_node *n,
				      enum mgr_node_state old, void *arg);

struct mgr_members;

int mgr_members_create(const struct mgr_members_config *cfg,
		       const struct cell_clock *clock,
		       mgr_members_change_fn on_change, void *arg,
		       struct mgr_members **out);
void mgr_members_destroy(struct mgr_members *m);

/* Counters restored from the store at start-up. */
void mgr_members_set_counters(struct mgr_members *m, uint64_t next_incarnation,
			      uint64_t epoch);
uint64_t mgr_members_next_incarnation(const struct mgr_members *m);
uint64_t mgr_members_epoch(const struct mgr_members *m);

/*
 * Adds a node loaded from the store. A node that was down stays down; any
 * other comes back suspect, as if last heard from now, so it has the full
 * down_after_ms to re-register before it is declared down.
 */
int mgr_members_restore(struct mgr_members *m, const struct mgr_node *saved);

struct mgr_registration {
	const char *id;
	const char *addr;
	uint32_t cpus;
	uint64_t memory_mb;
	uint32_t heartbeat_ms;
	uint64_t prev_incarnation;
	/* The node id has a live connection other than this one. */
	int other_conn_live;
};

/*
 * Registers a node. *resumed says whether the incarnation was kept;
 * *old_incarnation is the one it had (0 for a new node). -EEXIST when
 * another live agent, heard from within suspect_after_ms, holds the id.
 */
int mgr_members_register(struct mgr_members *m,
			 const struct mgr_registration *r,
			 struct mgr_node **out, int *resumed,
			 uint64_t *old_incarnation);

/*
 * A heartbeat from (id, incarnation). 0 and *out on success; -ENOENT for
 * an unknown node; -ESTALE when the incarnation is not current or the node
 * was declared down.
 */
int mgr_members_heartbeat(struct mgr_members *m, const char *id,
			  uint64_t incarnation, struct mgr_node **out);

/* Applies the timeouts; call often (the manager's tick). */
void mgr_members_tick(struct mgr_members *m);

struct mgr_node *mgr_members_find(struct mgr_members *m, const char *id);
size_t mgr_members_count(const struct mgr_members *m);
/* The i-th node in registration order, i < count. */
struct mgr_node *mgr_members_at(struct mgr_members *m, size_t i);
uint64_t mgr_members_now(const struct mgr_members *m);

const char *mgr_node_state_name(enum mgr_node_state s);

#endif
