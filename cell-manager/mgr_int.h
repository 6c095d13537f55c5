/*
 * The cell manager's daemon state, shared by its source files:
 *   mgr_main.c     config, start-up, the event loop, the membership tick
 *   mgr_agent.c    the agent-facing methods (Register, Heartbeat) and
 *                  mgr_agent_command, which sends one command to an agent
 *   mgr_ctl.c      the cellctl method table; status, node queries, ping
 *   mgr_cell.c     cells: records and their cellctl methods
 *   mgr_node.c     node rows in the store, DSM ids and fences
 *   mgr_disk.c     disk requests, passed on to cellmon-vdiskd
 *   mgr_fanout.c   one command kind to several nodes, one callback
 *   mgr_vm.c       VMs: records and the state machine
 *   mgr_vm_place.c the candidate table for placement (placement.c)
 *   mgr_vm_spec.c  what a VM spec may say, its defaults, disk sharing
 *   mgr_vm_ctl.c   cellctl's VM methods
 * Calls go down that list's dependency order, never back up: main ->
 * agent, ctl -> cell, vm_ctl -> vm -> fanout, vm_spec, node; fanout
 * reaches agents only through m->send_command. Everything runs on the
 * one event-loop thread.
 */
#ifndef MGR_INT_H
#define MGR_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "cell/rpc.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "membership.h"
#include "placement.h"
#include "page_policy.h"
#include "quorum.h"
#include "store.h"
#include "dsm/dsm.h" /* DSM_MAX_NODES only */

struct mgr_config {
	char agent_listen[128];
	char ctl_listen[128];
	char state_dir[1024];
	int64_t suspect_after_ms;
	int64_t down_after_ms;
	int64_t lease_ms;
	int64_t peer_lease_ms;
	int64_t tick_ms;
	int64_t command_timeout_ms;
	int64_t max_frame;
	char vdiskd[128];
	char metrics_listen[128];
	char web_listen[128];
	struct cell_tls_settings tls;
	int64_t events_keep;
	char log_level[16];
	/* the page policy (page_policy.h; 0: no sampling at all) */
	int64_t policy_interval_ms;
	int64_t pp_min_requests, pp_migrate_pct, pp_read_mostly_pct;
	int64_t pp_hold_ms, pp_ops_per_s;
	struct mgr_pp_config page_policy; /* the above, as the policy takes */
};

struct mgr_cell {
	char name[CELL_NAME_MAX + 1];
	uint64_t created_ms;
	Cellmon__PagePolicy page_policy; /* for VMs created without one */
};

/* One vCPU of a VM's current (or last) run. */
struct mgr_vcpu {
	char node[CELL_NAME_MAX + 1];
	Cellmon__VcpuState state;
	int32_t exit_code, signal, pid;
	char detail[240]; /* VcpuStatus.detail: the engine's word on its end */
};

struct mgr_vm {
	uint64_t id;
	char name[CELL_NAME_MAX + 1];
	Cellmon__VmSpec *spec; /* owned, unpacked */
	Cellmon__VmState state;
	char reason[512];
	uint32_t runs;
	uint64_t region; /* DSM region of the current run: id << 16 | run */
	uint64_t created_ms, state_since_ms;
	struct mgr_vcpu *vcpus; /* spec->vcpus entries once placed */
	uint32_t nvcpus;
	/* nodes of the run that home pages without running a vCPU (a qemu
	 * VM's cell, a home node): members of its region and of its
	 * dependency set (mgr_vm_nodes) */
	char mem_nodes[DSM_MAX_NODES][CELL_NAME_MAX + 1];
	uint32_t nmem;
	/* a migration in flight (mgr_vm_migrate.c; busy): its target, the
	 * target QEMU's pid and address, attempts, start */
	char migrate_to[CELL_NAME_MAX + 1];
	char migrate_addr[160];
	int32_t migrate_pid;
	uint32_t migrate_tries;
	uint64_t migrate_t0;
	bool busy;	   /* a start, finish or kill is in flight */
	int start_err;	   /* -errno of a failed start, for the waiting call */
	uint32_t restarts; /* after node failures (persisted) */
	uint64_t write_epoch; /* of the current run, for its disks */
	bool restart_pending; /* restart once this run is released */
	uint64_t unreleased;  /* DSM ids of the run's nodes that have not
			       * released it and are not down: a restart
			       * waits for them (no VM runs twice) */
	struct cell_rpc_call *waiter; /* cellctl call answered at the end */
	/* a vm delete that came while the ended run was being released:
	 * done (or refused, if a restart is due) when the release is */
	struct cell_rpc_call *deleter;
	struct mgr_vm_pages *pages;   /* the page policy's (mgr_vm_pages.c) */
	Cellmon__VmNodeStats **stats; /* last snapshot, taken at the end */
	size_t nstats;
};

struct mgr;
struct mgr_fan;

/* The kinds of event (mgr_events.c), counted for /metrics; the last is
 * any other. */
#define MGR_EVENT_KINDS 13
extern const char *const mgr_event_kinds[MGR_EVENT_KINDS];

/* Sends one command to a node's agent; cb as for cell_rpc_request. */
typedef int (*mgr_send_command_fn)(struct mgr *m, struct mgr_node *n,
				   const ProtobufCMessage *cmd,
				   cell_rpc_reply_fn cb, void *arg);

struct mgr {
	struct mgr_config cfg;
	/* every command to an agent goes through here: mgr_agent_command
	 * in the daemon, a fake in unit tests */
	mgr_send_command_fn send_command;
	struct event_base *base;
	struct mgr_store *store;
	struct mgr_members *members;
	struct mgr_quorum quorum; /* fence rounds (quorum.h), by DSM id */
	struct mgr_cell *cells;
	size_t ncells, capcells;
	struct cell_rpc_config agent_rpc, ctl_rpc, disk_rpc;
	/* TLS of each kind of link (NULL: plain): agents (node
	 * certificates), cellctl (admin, viewer), the disk server */
	struct cell_tls *tls_agent, *tls_ctl, *tls_disk;
	struct cell_rpc_listener *agent_l, *ctl_l;
	char agent_addr[160], ctl_addr[160];
	struct mgr_vm **vms;
	size_t nvms, capvms;
	uint64_t start_ms;
	uint64_t last_event_id; /* the event log's newest (mgr_events.c) */
	uint64_t events_by_kind[MGR_EVENT_KINDS]; /* since the start */
	uint64_t lease_grants; /* leases given with register/heartbeat */
	/* placement refusals by filter (placement.h's order) */
	uint64_t place_refusals[MGR_PLACE_FILTERS];
	/* /metrics (mgr_metrics.c), when metrics_listen is set */
	struct cell_metrics_server *metrics;
	char metrics_addr[160];
	/* the web view (mgr_web.c), when web_listen is set */
	struct cell_http_server *web;
	char web_addr[160];
};

/* mgr_events.c: records an event in the log (cellctl events); never
 * fails the caller. */
void mgr_event(struct mgr *m, const char *kind, const char *subject,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void mgr_events_rpc(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg);

/* mgr_metrics.c: serves /metrics on metrics_listen (nothing when it is
 * empty); 0, or -errno after logging why. */
int mgr_metrics_start(struct mgr *m);
void mgr_metrics_stop(struct mgr *m);

/* mgr_web.c: serves the web view and its JSON API on web_listen
 * (nothing when it is empty); 0, or -errno after logging why. */
int mgr_web_start(struct mgr *m);
void mgr_web_stop(struct mgr *m);

extern const struct cell_rpc_method mgr_agent_methods[];
extern const struct cell_rpc_method mgr_ctl_methods[];

/* cellctl's disk requests, passed on to the disk server (mgr_disk.c). */
void mgr_disk_create(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg);
void mgr_disk_clone(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg);
void mgr_disk_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg);
void mgr_disk_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);
void mgr_disk_list(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);

/* ---- mgr_fanout.c ---- */

/* One node's answer to a fan-out. */
struct mgr_fan_res {
	char node[CELL_NAME_MAX + 1];
	int status; /* 0 or -errno: the command's, or why it was not sent */
	char msg[300];
	ProtobufCMessage *result; /* the ack's console, stats or run; the fan
				   * frees it unless `done` takes it (NULL) */
};

typedef void (*mgr_fan_done_fn)(struct mgr *m, struct mgr_fan *f);
/* Fills the argument of the command to `node` into cmd (the oneof);
 * what it allocates goes into *own, freed with free() once sent. */
typedef int (*mgr_fan_args_fn)(struct mgr *m, void *arg, const char *node,
			       Cellmon__Command *cmd, void **own);

struct mgr_fan {
	struct mgr *m;
	uint64_t tag; /* what `done` finds its object by (a VM id) */
	Cellmon__CommandKind kind;
	size_t n, left;
	mgr_fan_done_fn done;
	struct cell_rpc_call *call; /* a cellctl call `done` answers, or NULL */
	struct mgr_fan_res res[];   /* one per node, in the order given */
};

/* Sends `kind` to the n nodes (args built per node by build(arg)); done
 * (may be NULL) runs once all have answered, errors included, possibly
 * before this returns. 0, or -ENOMEM when nothing was sent (done never
 * runs then). */
int mgr_fan_out(struct mgr *m, const char *const *nodes, size_t n,
		Cellmon__CommandKind kind, mgr_fan_args_fn build, void *arg,
		uint64_t tag, mgr_fan_done_fn done, struct cell_rpc_call *call);
/* The first node that failed, or NULL. */
const struct mgr_fan_res *mgr_fan_error(const struct mgr_fan *f);

/* ---- mgr_vm.c: records and the state machine ---- */

#define VM_MAX_VCPUS 256
/* the most mgr_vm_nodes() returns: vCPU nodes and memory nodes */
#define MGR_VM_MAX_NODES (VM_MAX_VCPUS + DSM_MAX_NODES)
#define VM_MAX_MEMORY_MB (1ull << 20) /* 1 TiB */

/* Starting, running or stopping: it holds nodes. */
static inline bool mgr_vm_active(const struct mgr_vm *vm)
{
	return vm->state == CELLMON__VM_STATE__VM_STARTING ||
	       vm->state == CELLMON__VM_STATE__VM_RUNNING ||
	       vm->state == CELLMON__VM_STATE__VM_STOPPING;
}

/* Deletes a VM that is not active nor busy and answers call. */
void mgr_vm_delete_now(struct mgr *m, struct mgr_vm *vm,
		       struct cell_rpc_call *call);

struct mgr_vm *mgr_vm_find(struct mgr *m, const char *name);
struct mgr_vm *mgr_vm_by_id(struct mgr *m, uint64_t id);
const char *mgr_vm_state_name(Cellmon__VmState s);
/* Adds a record to m->vms (not the store). 0 or -ENOMEM. */
int mgr_vm_add(struct mgr *m, struct mgr_vm *vm);
/* Drops the record from m->vms and frees it (not the store). */
void mgr_vm_remove(struct mgr *m, struct mgr_vm *vm);
void mgr_vm_free(struct mgr_vm *vm);
/* Writes the record to the store; logs and returns -errno on failure. */
int mgr_vm_persist(struct mgr *m, const struct mgr_vm *vm);
/* Moves to state s (reason kept when NULL), persists, logs. */
void mgr_vm_set_state(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		      const char *reason);
/* A VmInfo pointing into vm; free with mgr_vm_info_free(). */
int mgr_vm_info_fill(const struct mgr *m, const struct mgr_vm *vm,
		     Cellmon__VmInfo *vi);
void mgr_vm_info_free(Cellmon__VmInfo *vi);
/* Answers call with the VM (NULL: deleted). */
void mgr_vm_reply(struct mgr *m, struct cell_rpc_call *call,
		  const struct mgr_vm *vm);
/* Answers the call waiting on vm, if any: the VM, or rc's error. */
void mgr_vm_answer_waiter(struct mgr *m, struct mgr_vm *vm, int rc);
/* The distinct nodes of a VM's vCPUs, in vCPU order (mgr_vm_place.c). */
size_t mgr_vm_nodes(const struct mgr_vm *vm, const char **out);
/* mgr_vm_place.c: places a spec's vCPUs (names: node ids, per vCPU).
 * `empty` ignores what other VMs use; self is not counted. 0, -ENOSPC
 * with why. The restart variant places on what is up now, ignoring the
 * node hint. */
int mgr_vm_place(struct mgr *m, const Cellmon__VmSpec *s,
		 const struct mgr_vm *self, bool empty, const char **names,
		 char *why, size_t len);
int mgr_vm_place_restart(struct mgr *m, const struct mgr_vm *vm,
			 const char **names, char *why, size_t len);
/* A new run on the nodes named per vCPU: starting, PREPARE everywhere,
 * then RUN; vm->waiter is answered at the end. 0 or -errno (nothing
 * sent). */
int mgr_vm_start_run(struct mgr *m, struct mgr_vm *vm, const char **names);
/* Ends the run in state s: snapshot the counters, release everywhere,
 * then answer the waiting call. */
void mgr_vm_finish(struct mgr *m, struct mgr_vm *vm, Cellmon__VmState s,
		   const char *reason);
/* Decides what the vCPU states mean for a running or stopping VM. */
void mgr_vm_evaluate(struct mgr *m, struct mgr_vm *vm);
/* Has every up node remove the files of vm, which is being deleted; the
 * nodes that are not up do it when they register. 0 or -ENOMEM. */
int mgr_vm_forget(struct mgr *m, struct mgr_vm *vm);
/* Command arguments of vm for a node (mgr_fan_args_fn; arg is the VM):
 * its VmStart (with every vCPU for a migration's target), its VmTarget. */
int mgr_vm_build_start(struct mgr *m, void *arg, const char *node,
		       Cellmon__Command *cmd, void **own);
int mgr_vm_build_target(struct mgr *m, void *arg, const char *node,
			Cellmon__Command *cmd, void **own);
/* mgr_vm_place.c: the run's memory nodes (vm->mem_nodes) from the spec
 * and the cell's nodes that are up now. */
void mgr_vm_choose_mem_nodes(struct mgr *m, struct mgr_vm *vm);
/* Sends a VmTarget command (STOP, KILL, RELEASE, CONSOLE, STATS) to
 * every node of vm; as mgr_fan_out, with f->tag the VM's id. */
int mgr_vm_command(struct mgr *m, struct mgr_vm *vm, Cellmon__CommandKind kind,
		   mgr_fan_done_fn done, struct cell_rpc_call *call);
int mgr_vm_restore(struct mgr *m);
void mgr_vm_free_all(struct mgr *m);
/* vCPU states from a heartbeat of node n. */
void mgr_vm_heartbeat(struct mgr *m, struct mgr_node *n,
		      Cellmon__VcpuStatus *const *v, size_t count);
/* On the manager's tick: restarts that waited for a node whose leases
 * are now over (mgr_node_settled) go ahead. */
void mgr_vm_tick(struct mgr *m);
/* Node n cannot be running anything: down, or silent past its lease with
 * a quorum's refusals at least a peer vote old (quorum.h), as when it
 * may be declared down, down_after aside. */
bool mgr_node_settled(struct mgr *m, const struct mgr_node *n);
/* The images and QEMU accelerator node n reported (register,
 * heartbeat). */
void mgr_node_set_capacity(struct mgr_node *n, const Cellmon__Capacity *cap);
/* Whether a VM may name image on n: true when n did not say. */
bool mgr_node_has_image(const struct mgr_node *n, const char *image);
/* Node n's VMs lost their vCPUs (down, or a new incarnation). */
void mgr_vm_node_lost(struct mgr *m, struct mgr_node *n, const char *why);

/* ---- mgr_vm_pages.c: the page policy's rounds ---- */

/* Starts each running VM's sample round that is due. */
void mgr_vm_pages_tick(struct mgr *m, uint64_t now);
/* The spec's page policy as the policy module's mode. */
enum mgr_pp_mode mgr_vm_page_mode(const Cellmon__VmSpec *s);
/* After the spec's page policy changed. */
void mgr_vm_pages_set_mode(struct mgr_vm *vm);
void mgr_vm_pages_free(struct mgr_vm *vm);

/* ---- mgr_vm_spec.c ---- */

/* Checks a spec with its defaults filled in; err says what is wrong.
 * 0, -EINVAL or -ENOENT (no such cell or node). */
int mgr_vm_spec_check(struct mgr *m, Cellmon__VmSpec *s, char *err, size_t len);
/* The *_DEFAULT values of a request become what they stand for. */
int mgr_vm_spec_defaults(Cellmon__VmSpec *s);
/* Converts a spec stored by a protocol-1 manager (strings in fields 5, 9
 * and 11) and fills defaults. 0, or -EINVAL for a name it cannot map. */
int mgr_vm_spec_upgrade(Cellmon__VmSpec *s);
/* One active writer per disk: 0, or -EBUSY with the other writer named. */
int mgr_vm_check_writers(struct mgr *m, const struct mgr_vm *self, char *err,
			 size_t len);
/* The name of an active VM that uses disk `disk`, or NULL. */
const char *mgr_vm_disk_user(struct mgr *m, const char *disk);

/* ---- mgr_vm_ctl.c: cellctl's VM requests ---- */
void mgr_vm_create(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);
void mgr_vm_start(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg);
void mgr_vm_stop(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg);
void mgr_vm_kill(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg);
void mgr_vm_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);
void mgr_vm_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg);
void mgr_vm_list(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		 void *arg);
void mgr_vm_console(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg);
void mgr_vm_migrate(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg);
void mgr_vm_stats(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg);
/* mgr_vm_pages.c: vm set (the page policy) */
void mgr_vm_set(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		void *arg);
/* ... and vm pages: what the page policy saw and did this run */
void mgr_vm_pages_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		       void *arg);

/* ---- mgr_node.c ---- */

/* Persists a node's row (and the counters). Logs on failure. */
int mgr_node_persist(struct mgr *m, const struct mgr_node *n);
/* The node, or NULL after answering call with -ENOENT. */
struct mgr_node *mgr_node_or_error(struct mgr *m, struct cell_rpc_call *call,
				   const char *id);
/* Tells the quorum a node's incarnation and whether it is down (after
 * registration and every state change); a suspect node's fence round
 * starts, a node heard again ends it. */
void mgr_node_quorum_sync(struct mgr *m, struct mgr_node *n);
/* A heartbeat's report of the refusals its agent holds and its view. */
void mgr_node_quorum_heard(struct mgr *m, const struct mgr_node *n,
			   const Cellmon__HeartbeatRequest *hb);
/* Membership's may_declare_down: the quorum rule (quorum.h). */
bool mgr_node_may_declare_down(const struct mgr_node *n, void *arg);
/* The node's DSM id (its index among known nodes), or -1 past
 * DSM_MAX_NODES. */
int mgr_node_dsm_id(struct mgr *m, const struct mgr_node *n);
/* The DSM fences for n's peers (DsmFence in vm.proto): every other node
 * with a DSM id. Returns how many (at most DSM_MAX_NODES). */
size_t mgr_dsm_fences(struct mgr *m, const struct mgr_node *n,
		      Cellmon__DsmFence *f, Cellmon__DsmFence **fp);

/* ---- mgr_cell.c ---- */

struct mgr_cell *mgr_cell_find(struct mgr *m, const char *name);
/* Adds a record (not the store). 0 or -ENOMEM. page_policy DEFAULT (a
 * cell stored before there were cell policies) is all. */
int mgr_cell_add(struct mgr *m, const char *name, uint64_t created_ms,
		 Cellmon__PagePolicy page_policy);
void mgr_cell_remove(struct mgr *m, const char *name);
void mgr_cell_create(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg);
void mgr_cell_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg);
void mgr_cell_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);
void mgr_cell_add_node(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		       void *arg);
void mgr_cell_remove_node(struct cell_rpc_call *call,
			  const ProtobufCMessage *msg, void *arg);
void mgr_cell_list(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg);
void mgr_cell_set(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg);

/* ---- mgr_agent.c, mgr_ctl.c ---- */

void mgr_agent_accept(struct cell_rpc_conn *c, void *arg);
void mgr_ctl_accept(struct cell_rpc_conn *c, void *arg);

/* Sends a command to a node's agent; cb as for cell_rpc_request. The
 * daemon's m->send_command. */
int mgr_agent_command(struct mgr *m, struct mgr_node *n,
		      const ProtobufCMessage *cmd, cell_rpc_reply_fn cb,
		      void *arg);

#endif
