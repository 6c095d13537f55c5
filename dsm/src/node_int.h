/*
 * libdsm's node runtime, shared by its files:
 *   node.c     the node thread (libevent loop with a short busy-poll),
 *              commands from API threads, messages in and out, peers
 *   region.c   regions (memfd, mappings), the fault loop, page ops
 *   env.c      the engine's env ops: bytes, staged installs, protection,
 *              invalidation, deferrals
 *   uffd.c     userfaultfd ioctl wrappers: creating, registering, fault
 *              reading, install / protect / copy / wake
 *   net.c      the TCP transport: one connection per peer pair, frames
 *              of a fixed 48-byte header plus an optional page
 *   sync.c     the lock and barrier service
 *   handoff.c  the unix-socket hand-off of memfds and uffds
 *
 * Everything below runs on the node thread unless said otherwise.
 */
#ifndef DSM_NODE_INT_H
#define DSM_NODE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "attach.h"
#include "dsm/dsm.h"
#include "proto.h"
#include "wait.h"

#define DSM_MAX_MAPS	  8
#define DSM_MAX_REGIONS	  16
#define DSM_LOCAL_RING	  256
#define DSM_PREFETCH_MAX  64		   /* prefetch_max is capped here */
#define DSM_STAGE_PAGES	  DSM_PREFETCH_MAX /* pages per batched install */
#define DSM_MAX_DEFER	  1024
#define DSM_MAX_WAITERS	  256
#define DSM_MAX_LOCKS	  1024
#define DSM_LOCK_QUEUE	  (DSM_MAX_NODES * 4)
#define DSM_PENDING_SLOTS 16 /* accepted connections before their hello */
#define DSM_NET_OUT_CAP	  (4u << 20)
/* Room for a prefetch window's worth of page frames per recv(). */
#define DSM_NET_IN_CAP (DSM_PREFETCH_MAX * (DSM_MSG_WIRE_LEN + DSM_PAGE_SIZE))

/* Node-level message types (lock and barrier service), after the
 * engine's. */
enum {
	DSM_MSG_LOCK_ACQ = 32, /* page = lock id, version = token */
	DSM_MSG_LOCK_GRANT,
	DSM_MSG_LOCK_REL,
	DSM_MSG_BARRIER_ENTER, /* page = barrier id, window = count */
	DSM_MSG_BARRIER_GO,
	DSM_MSG_PING, /* liveness, when request_timeout_ms is set */
	DSM_MSG_PONG,
	DSM_MSG_NOTE, /* for the embedding program: node = kind, page = a,
		       * window = b (dsm_node_send_note) */
	DSM_MSG_NODE_MAX,
};

struct dsm_mapping {
	struct dsm_region *region;
	uint8_t *base;
	int uffd;	  /* -1: slot free */
	struct event *ev; /* uffd readable */
	int sock;	  /* hand-off socket of an external mapping, or -1 */
	struct event *sock_ev;
	pid_t pid;
};

struct dsm_lockq {
	uint16_t holder; /* DSM_NO_NODE when free */
	uint32_t holder_token;
	uint16_t qn[DSM_LOCK_QUEUE];
	uint32_t qt[DSM_LOCK_QUEUE];
	uint32_t qhead, qlen;
};

struct dsm_barrier {
	uint32_t arrived;
	uint16_t nodes[DSM_LOCK_QUEUE];
	uint32_t tokens[DSM_LOCK_QUEUE];
};

struct dsm_region {
	struct dsm_node *node;
	struct dsm__engine eng;
	uint64_t id;
	size_t size;
	uint32_t npages;
	uint16_t members[DSM_MAX_NODES];
	uint16_t nmembers;
	int memfd;
	uint8_t *mem; /* the node's own, unregistered mapping */
	/* Pages granted with data while in state I, waiting to go in with
	 * one UFFDIO_COPY: stage_n pages from stage_first (dsm__stage_flush).
	 */
	uint8_t *stage;
	/* env_bytes reads runs of the memfd into bytes (DSM_STAGE_PAGES):
	 * bytes_n pages from bytes_first, 0 when nothing is held; bytes_last
	 * is the page asked for last. */
	uint8_t *bytes;
	uint32_t bytes_first, bytes_n, bytes_last;
	uint32_t stage_first, stage_n;
	bool stage_write;
	struct dsm_mapping maps[DSM_MAX_MAPS];
	void *app_map;	/* in-process registered mapping */
	bool cancelled; /* dsm_region_cancel_waits(): sync calls fail */
	bool failed;	/* a request timed out (dsm_region_on_failure) */
	dsm_region_failed_fn failed_fn;
	void *failed_arg;
	struct dsm_lockq *locks[DSM_MAX_LOCKS];
	struct dsm_barrier *barriers[DSM_MAX_LOCKS];
	/* the fault-latency histogram (dsm_region_stats.fault_hist): per
	 * page, when its fault began waiting (cell_now_us, 0: none) */
	uint64_t *fault_t0;
	uint64_t fault_hist[DSM_FAULT_BUCKETS + 1];
	uint64_t fault_us_sum;
};

/* A fault on page p of r began waiting for the protocol / was answered
 * (region.c): the fault-latency histogram's two ends. */
void dsm__fault_wait(struct dsm_region *r, uint32_t p);
void dsm__fault_answered(struct dsm_region *r, uint32_t p);

struct dsm_peer {
	struct dsm_node *node;
	uint16_t id;
	bool active;
	char addr[128];
	int fd;
	bool connected;
	struct event *ev_read, *ev_write, *ev_retry;
	uint8_t *out;
	size_t out_len;
	uint8_t *in; /* DSM_NET_IN_CAP */
	size_t in_len;
	uint32_t fence_epoch;
	/* refusals below the fence are logged once per (epoch, fence) */
	uint32_t refused_epoch, refused_fence;
	uint64_t refused_quiet; /* refused since that line */
	/* Liveness: deliveries only set `heard` (no clock read on the fault
	 * path); the watch timer turns it into last_heard_ms. */
	bool heard;
	uint64_t last_heard_ms;
	unsigned backoff_ms;
	/* TLS (cfg.tls; net.c): the connection's SSL, set while the
	 * handshake runs and after; the session the dialer resumes on its
	 * next connection (from TLS generation sess_gen); the name the
	 * peer's certificate must have ("" any node's) and the one it had */
	struct ssl_st *ssl;
	bool handshaking;
	bool rx;	       /* received something on this connection */
	bool write_wants_read; /* SSL_write must wait for a read */
	struct ssl_session_st *sess;
	unsigned sess_gen;
	char name[64], cert_name[64];
};

/* An accepted connection before its hello (and its TLS handshake). */
struct dsm_pending {
	struct dsm_node *node;
	int fd;
	struct event *ev;
	short armed; /* EV_READ, or EV_WRITE while the handshake writes */
	struct ssl_st *ssl;
	bool peeked; /* for a plain hello, before the handshake */
	uint8_t hello[16];
	uint8_t len;
	char cert_name[64];
};

struct dsm_local_msg {
	struct dsm__msg m;
	bool has_data;
	uint8_t data[DSM_PAGE_SIZE];
};

struct dsm_defer {
	struct dsm_region *r;
	uint32_t page;
	uint64_t when_ms;
};

struct dsm_waiter {
	bool used;
	bool done;
	int rc;
	uint64_t region; /* whose lock or barrier it waits for */
};

struct dsm_cmd {
	int (*fn)(struct dsm_node *n, void *arg);
	void *arg;
	int rc;
	bool done;
	struct dsm_cmd *next;
};

struct dsm_node {
	struct dsm_node_config cfg;
	uint16_t id;
	uint32_t epoch;
	pthread_t thread;
	struct event_base *base;
	bool stopping;
	bool did_work;
	struct dsm_region *staged; /* the region with staged installs */
	bool served; /* handled a request from a peer in this pass */
	/* adaptive waiting (wait.h): for our replies, for more work */
	struct dsm_wait reply_wait, work_wait;
	/* commands and waiters: under mu, signalled through cv */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct dsm_cmd *cmd_head, *cmd_tail;
	struct event *ev_cmd;
	struct dsm_waiter waiters[DSM_MAX_WAITERS];
	/* regions */
	struct dsm_region *regions[DSM_MAX_REGIONS];
	/* transport */
	int listen_fd;
	int port;
	struct event *ev_listen;
	struct dsm_peer peers[DSM_MAX_NODES];
	uint64_t dirty_peers;
	struct dsm_pending pending[DSM_PENDING_SLOTS];
	/* self-messages */
	struct dsm_local_msg *local;
	uint32_t local_head, local_len;
	/* deferred engine work */
	struct dsm_defer defers[DSM_MAX_DEFER];
	uint32_t ndefers;
	struct event *ev_defer;
	struct event *ev_watch; /* request timeouts, when configured */
	/* hand-off */
	int handoff_fd;
	pthread_t handoff_thread;
	char handoff_path[108];
	dsm_handoff_check_fn handoff_check;
	void *handoff_check_arg;
	struct dsm_node_stats stats;
	dsm_note_fn note_fn; /* set before peers send */
	void *note_arg;
	const struct dsm_transport_ops *tops;
	struct event *ev_inbox; /* loop transport */
	void *inbox;
};

/* node.c */
/* A message below its sender's fence: counted, and said once per sender
 * epoch and fence (then again when either changes). */
void dsm__refused(struct dsm_node *n, struct dsm_peer *p,
		  const struct dsm__msg *m);
/* The first message of p accepted after refusals: says so. */
void dsm__refusals_over(struct dsm_node *n, struct dsm_peer *p);
/* A message of p accepted (every message: one branch). */
static inline void dsm__accepted(struct dsm_node *n, struct dsm_peer *p)
{
	if (p->refused_fence)
		dsm__refusals_over(n, p);
}
/* Every message type's name, the node's own types too. */
const char *dsm__type_name(uint8_t type);
int dsm__run_on_node(struct dsm_node *n, int (*fn)(struct dsm_node *, void *),
		     void *arg);
struct dsm_region *dsm__region_find(struct dsm_node *n, uint64_t id);
int dsm__deliver(struct dsm_node *n, const struct dsm__msg *m,
		 const void *data);
void dsm__after_work(struct dsm_node *n);
int dsm__send(struct dsm_node *n, uint16_t to, const struct dsm__msg *m,
	      const void *data);
int dsm__waiter_get(struct dsm_node *n, uint64_t region);
void dsm__waiter_wake(struct dsm_node *n, uint32_t token, int rc);
int dsm__waiter_wait(struct dsm_node *n, int slot);

/* region.c */
int dsm__map_add(struct dsm_region *r, uint8_t *base, int uffd, int sock,
		 pid_t pid);
void dsm__map_remove(struct dsm_region *r, int slot);
/* Frees a region and everything it holds; NULL is a no-op. */
void dsm__region_free(struct dsm_region *r);

/* env.c */
extern const struct dsm__env_ops dsm__node_env;
/* Installs the staged run of pages (see env.c); every env op that reads
 * or changes a page, and the node after each batch of work, calls it. */
void dsm__stage_flush(struct dsm_node *n);
/* The deferral timer: retries the deferred pages whose time came. */
void dsm__defer_cb(evutil_socket_t fd, short what, void *arg);

/* uffd.c */
struct dsm__uffd_fault {
	uint64_t addr;
	bool write; /* a write or write-protect fault */
};

/* Reads up to max (<= 16) queued events; the page faults among them go
 * to out (*nfaults of them). Returns the events read, 0 when none. */
int dsm__uffd_read_faults(int uffd, struct dsm__uffd_fault *out, int max,
			  int *nfaults);
void dsm__uffd_install(struct dsm_mapping *m, uint32_t page, bool write);
void dsm__uffd_protect(struct dsm_mapping *m, uint32_t page, uint32_t count,
		       bool wp);
void dsm__uffd_wake(struct dsm_mapping *m, uint32_t page);
int64_t dsm__uffd_copy_run(struct dsm_mapping *m, uint32_t first,
			   const void *src, uint32_t count, bool write);

/*
 * A transport moves page messages between nodes. Every member is called
 * on the node thread and must never call back into the engine except
 * through dsm__deliver from its own receive events.
 */
struct dsm_transport_ops {
	/* Starts receiving; sets n->port where that means something.
	 * 0 or -errno. */
	int (*listen)(struct dsm_node *n, const char *addr);
	/* Adds peer `id`, reachable at addr (a backend may ignore it).
	 * Messages for it wait until it is reachable. 0 or -errno. */
	int (*add_peer)(struct dsm_node *n, uint16_t id, const char *addr);
	void (*remove_peer)(struct dsm_node *n, uint16_t id);
	/* Queues m (and one page of data, when non-NULL, copied) for `to`.
	 * 0 or -errno (unknown peer, buffer full). */
	int (*send)(struct dsm_node *n, uint16_t to, const struct dsm__msg *m,
		    const void *data);
	/* Pushes queued messages out; called after each batch of work. */
	void (*flush)(struct dsm_node *n);
	/* Releases everything; the node thread has stopped. */
	void (*close)(struct dsm_node *n);
};

/* A transport's ops table, its functions named PREFIX_listen ...
 * PREFIX_close (every member filled). */
#define DSM_TRANSPORT_OPS(prefix)                                           \
	{                                                                   \
		.listen = prefix##_listen, .add_peer = prefix##_add_peer,   \
		.remove_peer = prefix##_remove_peer, .send = prefix##_send, \
		.flush = prefix##_flush, .close = prefix##_close,           \
	}

/* net.c: TCP, one connection per pair. */
extern const struct dsm_transport_ops dsm__tcp_ops;
/* loop.c: nodes of one process, for deterministic tests. */
extern const struct dsm_transport_ops dsm__loop_ops;

/* sync.c */
int dsm__sync_receive(struct dsm_region *r, const struct dsm__msg *m);
void dsm__sync_free(struct dsm_region *r);

/* handoff.c */
int dsm__handoff_listen(struct dsm_node *n, const char *path);
void dsm__handoff_close(struct dsm_node *n);

#endif
