/*
 * cellmon-agent's state, shared by its files:
 *   agent_main.c     config, start-up, membership (register, heartbeat,
 *                    lease, fencing), the command dispatcher
 *   agent_vm.c       the VMs of this node: records, commands (prepare,
 *                    run, stop, release, console, stats), vCPU ends
 *   agent_dsm.c      the DSM node: start, epoch, fences, peers, hand-off
 *                    check
 *   agent_guest.c    the guest service threads and the lease page
 *   agent_engine.c   the table of engines, looked up by a VM's spec
 *   engine_native.c  the native engine: a guest program per vCPU
 *
 * Threads: the libevent loop runs everything, except the DSM node's own
 * threads and one service thread per native vCPU (agent_guest.c). vm_mu
 * guards what those threads and the DSM hand-off check read: the VM list
 * and each vCPU's pid.
 */
#ifndef AGENT_H
#define AGENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <event2/event.h>

#include "cell/config.h"
#include "cell/rpc.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "dsm/dsm.h"

struct dsm_node;
struct dsm_region;
struct agent_cache;
struct agent_disk;
struct cg_lease_page;

struct agent_config {
	char node_id[CELL_NAME_MAX + 1];
	char manager[256];
	char addr[128];
	char state_dir[1024];
	int64_t cpus;
	int64_t memory;
	int64_t heartbeat_ms;
	int64_t reconnect_min_ms;
	int64_t reconnect_max_ms;
	int64_t max_frame;
	char dsm_listen[128];
	int64_t dsm_window_ms;
	int64_t dsm_prefetch;
	char dsm_wait[16];
	int64_t dsm_spin_max_us;
	int64_t dsm_poll_us;
	int64_t dsm_wait_spin_us;
	int64_t dsm_timeout_ms;
	char image_dir[1024];
	char qemu_binary[512];
	char qemu_accel[8];
	char qemu_preload[1024];
	int64_t stop_grace_ms;
	int64_t console_max;
	int64_t cache_size;
	bool guest_confine;
	int64_t guest_uid_base;
	char metrics_listen[128];
	char log_level[16];
	struct cell_tls_settings tls;
};

/* agent_config.c: every key of the agent's configuration. */
extern const struct cell_config_key agent_config_table[];
/* The DSM node configuration the agent's config gives (all but the id,
 * epoch and transport, which are the caller's). */
void agent_dsm_config(const struct agent_config *cfg,
		      struct dsm_node_config *c);

enum agent_state {
	AGENT_CONNECTING,
	AGENT_REGISTERING,
	AGENT_REGISTERED,
};

struct agent_vm;

struct agent_vcpu {
	struct agent_vm *vm;
	uint32_t index; /* vCPU number in the VM */
	/* under vm_mu: STARTING (not started, or its start failed),
	 * RUNNING, EXITED (exit_code), KILLED (signal), FENCED (killed
	 * because the node lost its lease), LOST (killed because its memory
	 * cannot be served) */
	Cellmon__VcpuState state;
	pid_t pid; /* under vm_mu; 0 when none */
	int exit_code, signal;
	char detail[240]; /* the engine's word on a bad end (ended op) */
	int ctl;	  /* agent's end of the service socket */
	int guest_fd;	  /* guest's end, until the engine starts */
	pthread_t thread; /* serves ctl */
	bool has_thread;
};

struct agent_vm {
	struct agent_vm *next;
	char name[CELL_NAME_MAX + 1];
	const struct agent_engine_ops *engine; /* chosen at PREPARE */
	uint64_t region_id;
	Cellmon__VmSpec *spec; /* a private unpacked copy */
	struct dsm_region *region;
	uint16_t members[DSM_MAX_NODES]; /* the region's, in its order */
	uint16_t nmembers;
	char dir[1100]; /* <state_dir>/vms/<vm id>/run<run> */
	struct agent_vcpu *vcpus;
	size_t nvcpus; /* on this node */
	struct agent_disk **disks;
	size_t ndisks;
	struct agent_nbd *nbd;	/* a qemu VM's disks served to QEMU */
	char migrate_addr[160]; /* where an incoming migration listens */
	bool stopping;
	bool fenced;	/* vCPUs killed for a lost lease */
	int dsm_failed; /* a DSM request timed out (set on the DSM thread) */
	struct event *grace_timer;
	struct agent *agent;
};

#define AGENT_WITNESS_RING 16
#define AGENT_IMAGES_MAX   128 /* listed to the manager; more: unknown */

/* The peer lease (agent_witness.c). Atomics where the DSM thread reads or
 * writes them: vouch_min, last_reply_ms, vote_until, sent_*. */
struct agent_witness {
	bool in_view[DSM_MAX_NODES]; /* the other nodes of the cell */
	uint32_t view;		     /* how many, this one included */
	uint32_t vouch_min[DSM_MAX_NODES];
	uint64_t last_reply_ms; /* the manager's last answer */
	uint64_t vote_until[DSM_MAX_NODES];
	uint64_t sent_ms[AGENT_WITNESS_RING], sent_seq[AGENT_WITNESS_RING];
	uint32_t seq;
	uint32_t peer_lease_ms, silence_ms;
	bool peer_mode; /* said once */
};

struct agent {
	struct agent_config cfg;
	struct event_base *base;
	struct cell_rpc_config rpc;
	/* TLS to the manager and to the disk server (NULL: plain) */
	struct cell_tls *tls_mgr, *tls_disk;
	struct cell_tls *tls_dsm; /* peers: nodes, sessions resumed */
	struct cell_rpc_conn *conn;
	enum agent_state state;
	uint64_t incarnation; /* 0: none */
	uint64_t epoch;
	bool has_lease;
	bool fenced;
	bool stopped;
	uint64_t lease_expiry_ms; /* the manager's lease */
	uint64_t peer_until_ms;	  /* the peer lease (agent_witness.c) */
	struct agent_witness witness;
	struct event *witness_timer;
	uint32_t lease_ms;
	uint64_t hb_seq;
	bool hb_outstanding;
	unsigned backoff_ms;
	unsigned cpus;
	uint64_t memory_mb;
	/* the images in image_dir (agent_engine.c), rescanned at most
	 * once a second for registration and heartbeats */
	char images[AGENT_IMAGES_MAX][CELL_NAME_MAX + 1];
	char *image_ptr[AGENT_IMAGES_MAX];
	size_t nimages;
	bool images_known;
	uint64_t images_scanned_ms;
	char qemu_accel[32]; /* agent_qemu_accel(), resolved once */
	char addr[128];	     /* advertised address */
	struct event *hb_timer, *lease_timer, *retry_timer;
	/* DSM: created once the manager gave this node a DSM id */
	struct dsm_node *dsm;
	int dsm_id;	    /* -1: none yet */
	char dsm_addr[160]; /* advertised host:port */
	char handoff_path[1100];
	uint64_t dsm_peers; /* ids added as peers */
	char peer_addr[DSM_MAX_NODES][160];
	uint32_t peer_fence[DSM_MAX_NODES]; /* lowest DSM epoch accepted */
	uint32_t dsm_epoch;	/* the manager's: this incarnation */
	uint32_t dsm_epoch_now; /* stamped now: 0 while fenced */
	/* the lease page handed to guests (cellguest_wire.h) */
	int lease_fd;
	struct cg_lease_page *lease_page;
	/* the node-wide disk block cache, shared by every VM's disks */
	struct agent_cache *cache;
	/* sends a heartbeat at once (agent_main.c): agent_vm.c calls it
	 * when a vCPU ended, so the manager hears of it without delay */
	void (*heartbeat_now)(struct agent *a);
	/* VMs */
	pthread_mutex_t vm_mu;
	struct agent_vm *vms;
	struct event *sigchld;
	/* /metrics (agent_metrics.c), when metrics_listen is set */
	struct cell_metrics_server *metrics;
	int metrics_port;
};

/* The engine a VM runs on, looked up by its spec's Engine once at
 * PREPARE (agent_engine.c) and kept on the VM. The native engine is a
 * process per vCPU; an engine that runs a VMM process per VM implements
 * the same members. Status needs no member: every engine's vCPUs are
 * processes of the agent, so their end comes from waitpid() (agent_vm.c,
 * SIGCHLD) and is kept in struct agent_vcpu for the heartbeat. */
struct agent_engine_ops {
	Cellmon__Engine id; /* the spec's value that selects it */
	const char *name;   /* for logs and messages */
	/* The interleave unit of its VMs' regions, in pages (0: one): a
	 * guest kernel's allocations are runs of pages, and runs homed on
	 * one node let prefetch and zero fault-around serve several pages
	 * per fault. Every member derives the same value from the spec. */
	uint32_t stripe_pages;
	/* At PREPARE, before the region exists: can this node run the spec
	 * (its image is there, the engine's own limits)? 0, or -errno with
	 * err set to a one-line reason. NULL: anything goes. */
	int (*check)(struct agent *a, const Cellmon__VmSpec *s, char *err,
		     size_t len);
	/* Starts vCPU v of its VM; sets v->pid under vm_mu. 0, or -errno
	 * with err set to a one-line reason. Never NULL. */
	int (*start)(struct agent *a, struct agent_vcpu *v, char *err,
		     size_t len);
	/* Asks the vCPU to end (it may clean up). Never NULL. */
	void (*stop)(struct agent_vcpu *v);
	/* Ends it at once. Never NULL. */
	void (*kill)(struct agent_vcpu *v);
	/* After it ended with a non-zero status or a signal: a one-line
	 * account for the VM's reason (into v->detail). May be NULL. */
	void (*ended)(struct agent_vcpu *v);
	/* Live migration (NULL: the engine cannot). migrate_in starts
	 * vCPU v waiting for the VM's state, to come to host; addr gets
	 * host:port. migrate_listen then has the first vCPU's VMM listen
	 * there (-EAGAIN: not ready yet, ask again). migrate_out sends the
	 * running VM's state (vCPU v is the first here) to addr and
	 * returns once the target runs it (-EAGAIN: the target did not
	 * answer yet), with QEMU's downtime and total in ms. */
	int (*migrate_in)(struct agent *a, struct agent_vcpu *v,
			  const char *host, char *addr, size_t addrlen,
			  char *err, size_t len);
	int (*migrate_listen)(struct agent_vcpu *v, const char *addr, char *err,
			      size_t len);
	int (*migrate_out)(struct agent_vcpu *v, const char *addr,
			   uint32_t *downtime_ms, uint32_t *total_ms, char *err,
			   size_t len);
};

/* Where every engine writes a vCPU's console: <vm dir>/vcpu<N>.console.
 * The agent keeps it and reads it back for cellctl (agent_vm.c). */
static inline void agent_console_path(const struct agent_vcpu *v, char *out,
				      size_t len)
{
	snprintf(out, len, "%s/vcpu%u.console", v->vm->dir, v->index);
}

/* agent_engine.c: the engine for e, or NULL with err naming the engines
 * this agent has. */
const struct agent_engine_ops *agent_engine_find(Cellmon__Engine e, char *err,
						 size_t len);
extern const struct agent_engine_ops agent_native_engine;
extern const struct agent_engine_ops agent_qemu_engine;
/* engine_qemu.c: the -accel QEMU gets here (qemu_accel, resolved). */
const char *agent_qemu_accel(struct agent *a);
/* In an engine's child after fork (async-signal-safe calls only): its
 * own process group, SIGKILL when the agent dies, waits for a byte on go
 * (the agent has recorded its pid), stdin /dev/null, fds[i] as fd i+1
 * and no others, no core dumps, at most max_files open (0: unchanged),
 * dir as working directory, then execve. Never returns. */
/* The VM id a region stands for (vm.proto, VmStart.region: the id above
 * the run's 16 bits). */
static inline uint64_t agent_region_vm_id(uint64_t region)
{
	return region >> 16;
}

struct agent_confine;
void agent_child_exec(int go, pid_t parent, const int *fds, int nfds,
		      long max_files, const char *dir, const char *path,
		      char **argv, char **envp,
		      const struct agent_confine *conf)
	__attribute__((noreturn));
/* Fills cap with this node's cpus, memory and images (pointing into a). */
void agent_capacity(struct agent *a, Cellmon__Capacity *cap);

/* agent_nbd.c: a qemu VM's disks as NBD exports disk0.. on a unix
 * socket (agent_nbd_path) for its QEMU; stop joins every thread. */
int agent_nbd_start(struct agent_vm *vm, char *err, size_t len);
void agent_nbd_stop(struct agent_vm *vm);
void agent_nbd_path(const struct agent_vm *vm, char *out, size_t len);

/* agent_vm.c */
int agent_vm_init(struct agent *a);
void agent_vm_fini(struct agent *a);
/* Handles a CMD_VM_* command: fills ack (status, message, result). */
void agent_vm_command(struct agent *a, const Cellmon__Command *cmd,
		      Cellmon__CommandAck *ack, char *msgbuf, size_t msglen);
/* Removes the files of every VM not in ids (the manager's, at
 * registration) that this agent does not hold. */
void agent_vm_sweep(struct agent *a, const uint64_t *ids, size_t n);
/* Frees what agent_vm_command put in ack->result. */
void agent_vm_ack_free(Cellmon__CommandAck *ack);

/* agent_pages.c: the page policy's sample and decisions (CMD_VM_PAGES_*);
 * results freed by agent_pages_ack_free. */
#define AGENT_PAGE_SAMPLE 4096 /* pages per sample, most remote first */
#define AGENT_MAP_RANGES  256  /* ranges of the map of homes per sample */
int agent_pages_sample(struct agent_vm *vm, bool map_only,
		       Cellmon__CommandAck *ack, char *err, size_t len);
int agent_pages_apply(struct agent_vm *vm, const Cellmon__PageDecisions *d,
		      Cellmon__CommandAck *ack, char *err, size_t len);
void agent_pages_ack_free(Cellmon__CommandAck *ack);
/* The vCPU list for a heartbeat; free with agent_vm_status_free(). */
int agent_vm_status(struct agent *a, Cellmon__VcpuStatus ***out, size_t *n);
void agent_vm_status_free(Cellmon__VcpuStatus **v, size_t n);
/* Publishes the lease end (CLOCK_MONOTONIC ms, 0: none) to guests. */
void agent_vm_lease(struct agent *a, uint64_t expiry_ms);
/* Lease lost: kill every vCPU now; they are reported "fenced". */
void agent_vm_fence(struct agent *a);
/* agent_metrics.c: serves /metrics on metrics_listen (nothing when it
 * is empty); 0, or -errno after logging why. */
int agent_metrics_start(struct agent *a);
void agent_metrics_stop(struct agent *a);

/* Releases every VM (a new incarnation must not carry old VMs). */
void agent_vm_discard_all(struct agent *a, const char *why);
/* agent_guest.c */
/* The service thread of one vCPU (arg: its struct agent_vcpu). */
void *agent_guest_serve(void *arg);
/* Creates the lease page guests map (a->lease_fd, a->lease_page). */
int agent_guest_lease_create(struct agent *a);

/* agent_witness.c */
/* Takes notes on the DSM node (after it started). */
void agent_witness_init(struct agent *a);
/* The manager answered (any reply); its peer-lease length, 0: keep. */
void agent_witness_heard(struct agent *a, uint32_t peer_lease_ms);
/* The view of the cell and the refusals, from a heartbeat reply. */
void agent_witness_view(struct agent *a, Cellmon__DsmFence *const *f, size_t n);
/* The refusals this agent holds, for a heartbeat (v, vp: DSM_MAX_NODES
 * entries). Returns how many. */
size_t agent_witness_report(struct agent *a, Cellmon__VouchState *v,
			    Cellmon__VouchState **vp);
/* Every heartbeat period: asks for votes while the manager is silent;
 * returns the end of the peer lease (0: none). */
uint64_t agent_witness_tick(struct agent *a);
/* The end of the peer lease from the votes received so far (0: none),
 * asking nothing: for the moment a lease would end between ticks. */
uint64_t agent_witness_until(struct agent *a);

/* agent_dsm.c */
/* Adds (or re-points) the DSM peers a VM needs; err says which failed. */
int agent_dsm_add_peers(struct agent *a, const Cellmon__VmStart *st, char *err,
			size_t len);
/* Creates the DSM node with the id the manager gave, stamping
 * a->dsm_epoch. 0 or -errno. */
int agent_dsm_start(struct agent *a, uint32_t dsm_id);
/* Stamps epoch on this node's DSM messages from now on: the incarnation,
 * or 0 while fenced (below every fence, so peers apply nothing). */
void agent_dsm_set_epoch(struct agent *a, uint32_t epoch);
/* Applies the manager's fences (HeartbeatReply.fences). */
void agent_dsm_fence(struct agent *a, Cellmon__DsmFence *const *f, size_t n);

#endif
