/*
 * The DSM coherence engine: a pure state machine, shared by the real node
 * (node.c, userfaultfd + TCP) and the in-process simulation in the unit
 * tests. It never touches memory, sockets or clocks itself: everything
 * goes through struct dsm__env_ops, so a test can run N nodes in one
 * process and schedule their messages at random.
 *
 * Protocol (docs/design/dsm-protocol.md has the full story): home-based
 * directory, write-invalidate MSI, single writer / multiple readers,
 * sequential consistency. The home of a page serializes transactions on
 * it: a page is "busy" from the start of a transaction until the
 * requester's DONE, and requests arriving meanwhile wait in the home's
 * queue. Data moves at most requester -> home -> holder -> requester.
 *
 * Assumption: messages between one pair of nodes arrive in the order sent
 * (one TCP connection per pair); messages of different pairs may
 * interleave in any order.
 *
 * Threads: one engine instance (struct dsm__engine) is driven by one
 * thread at a time. No allocation after dsm__engine_init.
 */
#ifndef DSM_PROTO_H
#define DSM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsm/dsm.h" /* DSM_PAGE, DSM_MAX_NODES */

#define DSM_PAGE_SIZE DSM_PAGE
#define DSM_NO_NODE   0xffffu

enum dsm__msg_type {
	DSM_MSG_READ_REQ = 1, /* requester -> home */
	DSM_MSG_WRITE_REQ,    /* requester -> home */
	DSM_MSG_FWD_READ,     /* home -> holder: send a copy to requester */
	DSM_MSG_FWD_WRITE,    /* home -> holder: hand over and invalidate */
	DSM_MSG_INV,	      /* home -> sharer: invalidate, ack requester */
	DSM_MSG_INV_ACK,      /* sharer -> requester */
	DSM_MSG_GRANT,	      /* home or holder -> requester (maybe data) */
	DSM_MSG_DONE,	      /* requester -> home: transaction over */
	DSM_MSG_MOVE_HOME,    /* anyone -> home: move the directory */
	DSM_MSG_PUSH,	      /* anyone -> home: give `node` a copy */
	DSM_MSG_DIR_XFER,     /* old home -> new home: the directory */
	DSM_MSG_HOME_UPDATE,  /* old home -> everyone: new home of page */
	DSM_MSG_MAX
};

enum dsm__grant_flags {
	DSM_GRANT_DATA = 0x01,	  /* 4 KiB of data follow */
	DSM_GRANT_ZERO = 0x02,	  /* untouched page: zeros */
	DSM_GRANT_NEWHOME = 0x04, /* the requester is now the page's home */
	DSM_GRANT_PUSH = 0x08,	  /* unsolicited read-only copy */
	DSM_GRANT_WRITE = 0x10,	  /* M (writable), else S */
};

/*
 * The fixed binary header of page traffic (36 bytes on the wire, see
 * dsm__msg_pack). DSM_GRANT with DSM_GRANT_DATA is followed by one page.
 */
struct dsm__msg {
	uint8_t type;
	uint8_t flags;
	uint16_t from;
	uint16_t node;	/* requester / target / new home, by type */
	uint16_t acks;	/* GRANT, FWD_WRITE: INV_ACKs to expect */
	uint32_t epoch; /* sender's epoch */
	uint32_t page;
	uint32_t window; /* READ_REQ: prefetch window */
	uint64_t region;
	uint64_t version; /* data version (see proto.c) */
	uint64_t copyset; /* DIR_XFER only */
};

#define DSM_MSG_WIRE_LEN 48u
void dsm__msg_pack(const struct dsm__msg *m, uint8_t out[DSM_MSG_WIRE_LEN]);
void dsm__msg_unpack(const uint8_t in[DSM_MSG_WIRE_LEN], struct dsm__msg *m);
const char *dsm__msg_name(uint8_t type);
/* Whether a message of this type may reach a page's home through
 * another node (a request it passes on), its `from` still naming the
 * requester: READ_REQ, WRITE_REQ, MOVE_HOME, PUSH. */
bool dsm__msg_forwardable(uint8_t type);

enum dsm__page_state { DSM_I = 0, DSM_S = 1, DSM_M = 2 };

/* How mem_install gets the bytes. */
enum dsm__install {
	DSM_INSTALL_DATA, /* copy `data` in */
	DSM_INSTALL_ZERO, /* zero-fill */
	DSM_INSTALL_KEEP, /* bytes held at this version (state S or M) */
};

struct dsm__engine;

/* An env ops table whose functions are named PREFIX_send ... PREFIX_now
 * (the node's env.c and the simulation's). */
#define DSM_ENV_OPS(prefix)                                                 \
	{                                                                   \
		.send = prefix##_send, .mem_bytes = prefix##_bytes,         \
		.mem_install = prefix##_install,                            \
		.mem_downgrade = prefix##_downgrade,                        \
		.mem_invalidate = prefix##_invalidate,                      \
		.fault_done = prefix##_fault_done, .defer = prefix##_defer, \
		.now_ms = prefix##_now,                                     \
	}

struct dsm__env_ops {
	/* Queues m (and data, one page, when non-NULL) to node `to`, which may
	 * be this node. Must not call back into the engine. 0 or -errno. */
	int (*send)(void *env, uint16_t to, const struct dsm__msg *m,
		    const void *data);
	/* This node's bytes of the page (state S or M), valid until the next
	 * env call: send copies them, so a grant costs no copy of its own. */
	const void *(*mem_bytes)(void *env, struct dsm__engine *r,
				 uint32_t page);
	/* Makes the page readable (and writable if `write`) with the given
	 * bytes. Wakes nobody: fault_done does that. */
	void (*mem_install)(void *env, struct dsm__engine *r, uint32_t page,
			    enum dsm__install how, const void *data,
			    bool write);
	/* M -> S for pages page..page+count-1: drop write access, keep the
	 * bytes readable. One call for a run (one TLB shootdown). */
	void (*mem_downgrade)(void *env, struct dsm__engine *r, uint32_t page,
			      uint32_t count);
	/* -> I: make the page unreadable; its bytes may go (no KEEP install
	 * ever relies on them: a node in I asks with version 0). */
	void (*mem_invalidate)(void *env, struct dsm__engine *r, uint32_t page);
	/* The fault on this page is resolved (state now S or M). */
	void (*fault_done)(void *env, struct dsm__engine *r, uint32_t page);
	/* Call dsm__engine_retry(r, page) again at or after `when_ms`. */
	void (*defer)(void *env, struct dsm__engine *r, uint32_t page,
		      uint64_t when_ms);
	uint64_t (*now_ms)(void *env);
};

enum dsm__home_policy {
	DSM_HOME_ONE,	      /* every page on home_node */
	DSM_HOME_INTERLEAVE,  /* page i on members[(i / stripe) % n] */
	DSM_HOME_FIRST_TOUCH, /* the first node to touch a page */
};

struct dsm__page_counters {
	uint32_t read_faults;
	uint32_t write_faults;
	uint32_t invalidations; /* INV or FWD_WRITE received */
	uint32_t transfers;	/* pages of data received */
	uint32_t deferrals;	/* requests held back by the time window */
};

struct dsm__engine_config {
	uint64_t id;
	uint32_t npages;
	uint16_t self;
	const uint16_t *members; /* nodes sharing the region, incl. self */
	uint16_t nmembers;
	enum dsm__home_policy policy;
	uint16_t home_node;    /* DSM_HOME_ONE */
	uint32_t stripe;       /* pages per interleave unit; 0: 1 */
	uint32_t window_ms;    /* Mirage time window; 0: off */
	uint32_t prefetch_max; /* pages per read miss, 1: off */
	uint32_t queue_slots;  /* home request queue size; 0: default */
	/* page-policy sampling table (a power of two; 0: DSM_SAMPLE_SLOTS):
	 * 3/4 of it is how many distinct pages one interval counts */
	uint32_t sample_slots;
	const struct dsm__env_ops *ops;
	void *env;
};

struct dsm__page;
struct dsm__dir;
struct dsm__qent;

struct dsm__engine {
	struct dsm__engine_config cfg; /* cfg.members points at members */
	uint16_t members[DSM_MAX_NODES];
	uint64_t members_mask;
	uint8_t member_slot[DSM_MAX_NODES]; /* node id -> member index + 1,
					     * 0: not a member */
	struct dsm__page *pages;
	struct dsm__dir *dirs;
	uint16_t *home;
	struct dsm__qent *queue;
	int32_t queue_free;
	uint32_t queue_used, queue_slots;
	uint32_t epoch;
	/* adaptive prefetch */
	uint32_t last_miss;
	uint32_t window;
	uint64_t readaheads; /* windows requested before the reader missed */
	uint64_t pushes;     /* copies this home pushed (policy, broadcast) */
	uint64_t broadcasts; /* of them, queued by a read miss (broadcast) */
	/* home-side request counts by requester: [page][member index] */
	uint32_t *req_by_node;
	/* page-policy sampling (sample.c): this interval's requests by
	 * page, [slot][member index][read, write] */
	uint32_t *iv_page;  /* iv_slots: the slot's page or ~0 */
	uint32_t *iv_count; /* iv_slots * 2 * nmembers */
	uint32_t *iv_used;  /* slots in use, iv_fill at most */
	uint32_t iv_slots, iv_fill, iv_n, iv_lost;
	uint64_t iv_since_ms;
	uint32_t npending; /* pages with a request of ours out */
};

int dsm__engine_init(struct dsm__engine *r, const struct dsm__engine_config *c);
void dsm__engine_fini(struct dsm__engine *r);

/* Writes a zero into every page of buf (len bytes, zeroed or not yet
 * initialised), so that later use takes no page fault: memory used on
 * the fault path is faulted in when it is allocated. */
void dsm__prefault(void *buf, size_t len);

/* A fault on `page` by this node; `write` for a write or WP fault.
 * Returns 1 if the page already allows the access (spurious fault), 0 if
 * a request is under way (fault_done follows), -errno on error. */
int dsm__engine_fault(struct dsm__engine *r, uint32_t page, bool write);

/* A request of ours that has waited at least limit_ms: 1 with its page
 * and the page's home (where it went), else 0. */
int dsm__engine_stuck(const struct dsm__engine *r, uint64_t limit_ms,
		      uint32_t *page, uint16_t *home);

/* An incoming message (already checked for region, range and epoch).
 * data is the page for DSM_GRANT with DSM_GRANT_DATA. 0 or -errno. */
int dsm__engine_receive(struct dsm__engine *r, const struct dsm__msg *m,
			const void *data);

/* Re-runs deferred work on a page (see env defer). */
void dsm__engine_retry(struct dsm__engine *r, uint32_t page);

/* Policy mechanisms: ask the page's home to move it / push a copy. */
int dsm__engine_move_home(struct dsm__engine *r, uint32_t page, uint16_t node);
int dsm__engine_push(struct dsm__engine *r, uint32_t page, uint16_t node);

/*
 * Page-policy sampling (sample.c): the pages homed here with the most
 * requests from other members since the last sample, at most `max`,
 * most first; then a new interval starts.
 */
#define DSM_SAMPLE_SLOTS 16384u /* default sample_slots */
int dsm__engine_sample(struct dsm__engine *r, struct dsm_page_sample *out,
		       uint32_t max, struct dsm_sample_info *info);
/* A policy decision, if it still applies here (dsm_region_apply): 0
 * once sent, -ESTALE when it no longer does, -EINVAL when it never
 * could. */
int dsm__engine_apply(struct dsm__engine *r, const struct dsm_policy_op *op);
int dsm__sample_init(struct dsm__engine *r);
void dsm__sample_fini(struct dsm__engine *r);
void dsm__sample_count(struct dsm__engine *r, uint32_t p, uint16_t member,
		       bool write);

/* Introspection for tests, stats and the invariant checker. */
enum dsm__page_state dsm__page_state(const struct dsm__engine *r,
				     uint32_t page);
uint64_t dsm__page_version(const struct dsm__engine *r, uint32_t page);
bool dsm__page_pending(const struct dsm__engine *r, uint32_t page);
uint16_t dsm__page_home(const struct dsm__engine *r, uint32_t page);
const struct dsm__page_counters *dsm__page_counters(const struct dsm__engine *r,
						    uint32_t page);
/* Directory at this node (valid when it is the page's home): owner or
 * DSM_NO_NODE, copyset, version, busy. Returns false if not home. */
bool dsm__dir_get(const struct dsm__engine *r, uint32_t page, uint16_t *owner,
		  uint64_t *copyset, uint64_t *version, bool *busy);

#endif
