/*
 * libdsm: sequentially consistent distributed shared memory in 4 KiB
 * pages, the emulated cc-NUMA memory of cellmon.
 *
 * A node (struct dsm_node) is one participant: it owns a thread that runs
 * the coherence engine, the transport to its peers and the userfaultfd
 * fault handling. A region is a range of pages shared by a set of member
 * nodes under one id; every member creates it with the same id, size,
 * home policy and member list. Each node keeps its copy of the region in
 * a memfd it owns.
 *
 * Access:
 * - in this process: dsm_region_map() returns a mapping whose faults the
 *   node resolves (userfaultfd on that mapping);
 * - from another process: dsm_node_serve_handoff() listens on a unix
 *   socket; the other process calls dsm_attach(), which maps the memfd,
 *   registers its mapping with userfaultfd and hands the uffd back. The
 *   node then resolves that process's faults. Both paths share one
 *   implementation.
 *
 * Errors are -errno. Every function may be called from any thread except
 * the node's own; calls that talk to the node thread wait for it.
 */
#ifndef DSM_DSM_H
#define DSM_DSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DSM_PAGE 4096u
/* Node ids are 0..DSM_MAX_NODES-1: a copyset is one 64-bit mask. The
 * manager hands out ids below it; further nodes get no DSM id. */
#define DSM_MAX_NODES 64

struct dsm_node;
struct dsm_region;

/* How the node thread waits for a reply and for more work after serving
 * a peer (docs/design/dsm-protocol.md, "Waiting"). */
enum dsm_wait_policy {
	DSM_WAIT_ADAPTIVE = 0, /* spin or sleep by what this host measures */
	DSM_WAIT_FIXED,	       /* poll_us and wait_spin_us as given */
};

enum dsm_transport {
	DSM_TRANSPORT_TCP = 0, /* one TCP connection per pair of nodes */
	DSM_TRANSPORT_LOOP,    /* nodes of this process only (tests) */
};

struct cell_tls;

struct dsm_node_config {
	uint16_t id;	       /* < DSM_MAX_NODES, unique among peers */
	const char *listen;    /* "host:port" for peer traffic; port 0: any */
	uint32_t window_ms;    /* Mirage time window; 0: off */
	uint32_t prefetch_max; /* pages per read miss (1: none; at most 64) */
	uint32_t poll_us;      /* FIXED: busy-poll this long after serving
				* a peer before sleeping */
	uint32_t epoch;	       /* initial epoch stamped on every message */
	enum dsm_transport transport; /* TCP unless set */
	uint32_t request_timeout_ms;  /* page requests unanswered this long
				       * fail their region; 0: no limit */
	uint32_t wait_spin_us;	   /* busy-poll this long for a reply to our own
				    * request before sleeping; 0: sleep at once.
				    * On VMs a spinning thread makes the TLB
				    * shootdowns every downgrade needs slow
				    * (docs/benchmarks.md). */
	enum dsm_wait_policy wait; /* adaptive unless set; poll_us and
				    * wait_spin_us apply only to FIXED */
	uint32_t spin_max_us;	   /* adaptive: the longest spin; 0: 200 */
	/* Mutual TLS 1.3 on every peer connection (TCP transport): each
	 * end shows a node certificate of the cell's CA, and one whose
	 * name is not the peer's (dsm_node_add_peer) is refused. NULL:
	 * plain TCP. Kept by the caller until dsm_node_destroy. */
	struct cell_tls *tls;
};

/*
 * Notes: small messages between nodes for the program the DSM runs in
 * (the agent's peer votes, docs/fault-tolerance.md), over the peer
 * connections and checked like page traffic (a sender below its fence is
 * refused). A note is a kind and two 32-bit values; fn runs on the node
 * thread for each note received, with the sender's id and epoch, and must
 * not block (it may send notes). Set fn before peers may send.
 */
typedef void (*dsm_note_fn)(uint16_t from, uint32_t epoch, uint8_t kind,
			    uint32_t a, uint32_t b, void *arg);

/* Starts a node and its thread. Fails with a clear log line (and
 * -EPERM) when userfaultfd cannot trap kernel-mode faults here. */
int dsm_node_create(const struct dsm_node_config *cfg, struct dsm_node **out);
void dsm_node_on_note(struct dsm_node *n, dsm_note_fn fn, void *arg);
/* Queues a note for peer `to`; from any thread, the note callback too.
 * 0, or -errno (unknown peer, buffer full). */
int dsm_node_send_note(struct dsm_node *n, uint16_t to, uint8_t kind,
		       uint32_t a, uint32_t b);
/* Stops the thread, closes peers and regions. NULL is a no-op. */
void dsm_node_destroy(struct dsm_node *n);
/* The bound peer port (after listen port 0). */
int dsm_node_port(const struct dsm_node *n);

/* Peers may be added and removed at run time. Messages to a peer that is
 * not connected yet wait for the connection. */
/* name: the peer's name in its certificate (the node's id), checked on
 * a TLS connection either way; NULL or "": any node certificate. */
int dsm_node_add_peer(struct dsm_node *n, uint16_t id, const char *hostport,
		      const char *name);
int dsm_node_remove_peer(struct dsm_node *n, uint16_t id);
/* Messages from `peer` stamped with an epoch below `epoch` are refused. */
int dsm_node_fence_peer(struct dsm_node *n, uint16_t peer, uint32_t epoch);
void dsm_node_set_epoch(struct dsm_node *n, uint32_t epoch);

enum dsm_home_policy {
	DSM_POLICY_ONE,	       /* every page homed on home_node */
	DSM_POLICY_INTERLEAVE, /* page i on members[(i / stripe) % nmembers] */
	DSM_POLICY_FIRST_TOUCH,
};

struct dsm_region_config {
	uint64_t id;
	size_t size; /* bytes, a multiple of DSM_PAGE */
	enum dsm_home_policy policy;
	uint16_t home_node;
	const uint16_t *members; /* node ids, including this node */
	uint16_t nmembers;
	/* Interleave (and first touch's starting homes) in units of this
	 * many pages; 0 or 1: page by page. Runs homed on one node let
	 * prefetch and zero fault-around hand out several pages per miss. */
	uint32_t stripe;
};

int dsm_region_create(struct dsm_node *n, const struct dsm_region_config *cfg,
		      struct dsm_region **out);
void dsm_region_destroy(struct dsm_region *r);
size_t dsm_region_size(const struct dsm_region *r);
/* An in-process mapping of the region (created on first call). */
void *dsm_region_map(struct dsm_region *r);
/* A new descriptor (close-on-exec) of the region's memfd, for a process
 * that maps it itself and hands the mapping over with
 * dsm_attach_mapping() (a VMM's guest RAM); -errno on failure. Mapping
 * it without the hand-off bypasses coherence: never do that. */
int dsm_region_memfd(const struct dsm_region *r);

/*
 * A page request of this node that stays unanswered for the node's
 * request_timeout_ms (a peer that stopped answering, a message lost with
 * a connection) fails the region: `fn` runs once, on the node thread,
 * with the node the request went to. The faults waiting on it cannot be
 * resolved any more: the user ends the processes that use the region and
 * destroys it. fn must not call back into libdsm.
 */
typedef void (*dsm_region_failed_fn)(struct dsm_region *r, uint16_t peer,
				     void *arg);
int dsm_region_on_failure(struct dsm_region *r, dsm_region_failed_fn fn,
			  void *arg);

/* Policy mechanisms. */
int dsm_region_move_home(struct dsm_region *r, uint32_t page, uint16_t node);
int dsm_region_push(struct dsm_region *r, uint32_t page, uint16_t node);

struct dsm_page_stats {
	uint32_t read_faults;
	uint32_t write_faults;
	uint32_t invalidations;
	uint32_t transfers;
	uint32_t deferrals;
	uint16_t home;
	uint8_t state; /* 0 invalid, 1 shared, 2 modified */
	/* At the home: requests by member (same order as members). */
	uint32_t requests_by_member[64];
};

/* A snapshot of one page's counters and, at its home, requests by node. */
int dsm_region_page_stats(struct dsm_region *r, uint32_t page,
			  struct dsm_page_stats *out);

/*
 * Page-policy sampling (docs/design/page-policy.md). At a page's home,
 * the node counts the READ_REQs and WRITE_REQs it receives per page and
 * member in a table of fixed size, where it already counts requests (no
 * lock or allocation on that path). dsm_region_sample() runs on the node
 * thread: it returns the pages homed here with the most requests from
 * the other members since the last call (at most max, most first), with
 * the directory's owner and copyset, and starts a new interval.
 */
#define DSM_NO_OWNER 0xffffu
struct dsm_page_sample {
	uint32_t page;
	uint16_t home;	  /* this node */
	uint16_t owner;	  /* the node holding it writable, or DSM_NO_OWNER */
	uint64_t copyset; /* node-id mask of read-only copies */
	uint32_t reads[DSM_MAX_NODES];	/* requests by member (the region's */
	uint32_t writes[DSM_MAX_NODES]; /* member order) this interval */
};
struct dsm_sample_info {
	uint32_t count;	      /* samples written */
	uint32_t ranked;      /* pages with requests from other members */
	uint32_t seen;	      /* pages with any request */
	uint32_t lost;	      /* requests not counted: the table was full */
	uint32_t interval_ms; /* since the last sample */
};
int dsm_region_sample(struct dsm_region *r, struct dsm_page_sample *out,
		      uint32_t max, struct dsm_sample_info *info);

/*
 * Policy decisions, applied in one go on the node thread. Each one:
 *  - moves a page's home to `node` (push and unmark false);
 *  - push: marks `node` as a replica of the page and pushes it a
 *    read-only copy if it has none; from then on a read miss on the
 *    page at this home also pushes it to the other marked readers
 *    without a copy (read broadcast), until unmarked or the home moves;
 *  - unmark: clears the page's replica marks (`node` is not used).
 * A decision is applied only where it still makes sense: this node is
 * the page's home, `node` is another member, and for a push the page has
 * data; any other is dropped, not forced. *applied and *dropped count
 * them.
 */
struct dsm_policy_op {
	uint32_t page;
	uint16_t node;
	bool push;
	bool unmark;
};
int dsm_region_apply(struct dsm_region *r, const struct dsm_policy_op *ops,
		     uint32_t n, uint32_t *applied, uint32_t *dropped);

/* This node's counters for a whole region, summed over its pages. A
 * fault is local when this node is the page's home. */
/* The upper bounds, in microseconds, of the fault-latency histogram's
 * buckets (dsm_region_stats.fault_hist), from 10 us to 100 ms. */
#define DSM_FAULT_BUCKETS 12
extern const uint32_t dsm_fault_bucket_us[DSM_FAULT_BUCKETS];

struct dsm_region_stats {
	uint64_t read_faults, write_faults;
	uint64_t local_faults, remote_faults;
	uint64_t invalidations;
	uint64_t transfers; /* pages of data received */
	uint64_t deferrals;
	uint64_t readaheads;
	uint64_t pushes; /* read-only copies this node pushed as a home */
	uint64_t pages_homed;
	/* The faults that waited for the protocol, by how long: from the
	 * fault's read off the userfaultfd to the grant that answered it
	 * (the install follows at once). fault_hist[i] counts those of at
	 * most dsm_fault_bucket_us[i] (and more than the bucket before), the
	 * last entry the rest; fault_us_sum adds them all up. */
	uint64_t fault_hist[DSM_FAULT_BUCKETS + 1];
	uint64_t fault_us_sum;
};
int dsm_region_stats(struct dsm_region *r, struct dsm_region_stats *out);

/* The region's pages cut into n ranges of range_pages each (the last may
 * be short; ranges past the end are zero): per range, the pages this
 * node is the home of, of them those with read-only copies on two or
 * more nodes, and this node's faults that needed the protocol so far
 * (any home). For a map of where memory lives (cellctl vm pages). */
struct dsm_range_info {
	uint32_t homed, replicated;
	uint64_t faults;
};
int dsm_region_range_map(struct dsm_region *r, uint32_t range_pages,
			 struct dsm_range_info *out, uint32_t n);

struct dsm_node_stats {
	uint64_t faults; /* uffd faults handled */
	uint64_t msgs_sent, msgs_recv;
	uint64_t pages_sent, pages_recv;
	uint64_t refused;	/* bad or stale messages */
	uint64_t peers_refused; /* connections refused: no hello, TLS */
	uint64_t tls_resumed;	/* TLS connections that resumed a session */
	/* adaptive waiting (0 under the fixed policy): the mode each wait
	 * uses now (1 spin, 2 sleep), its spin bound and its switches */
	uint8_t reply_wait_mode, work_wait_mode;
	uint32_t reply_spin_us, work_spin_us;
	uint64_t wait_switches;
};
void dsm_node_stats(struct dsm_node *n, struct dsm_node_stats *out);

/*
 * Locks and barriers: message based, served by a manager node chosen by
 * the id (id % nmembers of the region's member list). A waiter sleeps on
 * a condition variable; nothing spins on DSM memory.
 */
int dsm_lock(struct dsm_region *r, uint32_t lock_id);
int dsm_unlock(struct dsm_region *r, uint32_t lock_id);
/* Returns when `count` callers (on any members) have entered barrier
 * `id`; the id may be used again once it has opened. */
int dsm_barrier(struct dsm_region *r, uint32_t id, uint32_t count);
/* Ends every lock or barrier wait on r with -ECANCELED, now and later:
 * lets the threads that use r return before dsm_region_destroy(). */
int dsm_region_cancel_waits(struct dsm_region *r);

/* Cross-process hand-off (see the file comment). */
int dsm_node_serve_handoff(struct dsm_node *n, const char *unix_path);
/* Decides whether process `pid` (from SO_PEERCRED) may map region `id`:
 * 0 lets it, -errno refuses (the client's dsm_attach() gets the error).
 * Runs on the hand-off thread. Without one, any process that can open
 * the socket may map any region. Set it before serving. */
typedef int (*dsm_handoff_check_fn)(int pid, uint64_t id, void *arg);
void dsm_node_set_handoff_check(struct dsm_node *n, dsm_handoff_check_fn fn,
				void *arg);
/* In the other process: maps region `id` (at `addr` if not NULL, with
 * MAP_FIXED_NOREPLACE) and hands its uffd to the node. *sock is kept
 * open for the life of the mapping; closing it detaches. */
/* An open /dev/userfaultfd for dsm_attach to make its userfaultfd with
 * (USERFAULTFD_IOC_NEW: the permission was checked when it was opened),
 * for a process that may not open it itself (a confined guest); -1:
 * open the device, else the system call, as usual. */
void dsm_attach_uffd_device(int fd);
int dsm_attach(const char *unix_path, uint64_t id, void *addr, void **base,
	       size_t *size, int *sock);
/* As dsm_attach, for a mapping the process already made of its own fd of
 * the region's memfd (a VMM's guest RAM): len must be the region's size.
 * err says what failed. */
int dsm_attach_mapping(const char *unix_path, uint64_t id, void *map,
		       size_t len, int *sock, char *err, size_t errlen);

#endif
