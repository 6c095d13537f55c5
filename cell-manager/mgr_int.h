/*
 * The cell manager's daemon state, shared by its source files:
 *   mgr_main.c   config, start-up, the event loop, the membership tick
 *   mgr_agent.c  the agent-facing methods (Register, Heartbeat) and
 *                commands sent to agents
 *   mgr_ctl.c    the cellctl-facing methods (status, nodes, cells)
 *   mgr_disk.c   disk requests, passed on to cellmon-vdiskd
 *   mgr_vm.c     VMs: records, placement, the state machine and the
 *                commands it sends agents
 * Everything runs on the one event-loop thread.
 */
#ifndef MGR_INT_H
#define MGR_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "cell/rpc.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "membership.h"
#include "store.h"

struct mgr_config {
	char agent_listen[128];
	char ctl_listen[128];
	char state_dir[1024];
	int64_t suspect_after_ms;
	int64_t down_after_ms;
	int64_t lease_ms;
	int64_t tick_ms;
	int64_t command_timeout_ms;
	int64_t max_frame;
	char vdiskd[128];
	char log_level[16];
};

struct mgr_cell {
	char name[CELL_NAME_MAX + 1];
	uint64_t created_ms;
};

/* One vCPU of a VM's current (or last) run. */
struct mgr_vcpu {
	char node[CELL_NAME_MAX + 1];
	Cellmon__VcpuState state;
	int32_t exit_code, signal, pid;
};

struct mgr_vm {
	uint64_t id;
	char name[CELL_NAME_MAX + 1];
	Cellmon__VmSpec *spec; /* owned, unpacked */
	Cellmon__VmState state;
	char reason[300];
	uint32_t runs;
	uint64_t region; /* DSM region of the current run: id << 16 | run */
	uint64_t created_ms, state_since_ms;
	struct mgr_vcpu *vcpus; /* spec->vcpus entries once placed */
	uint32_t nvcpus;
	bool busy;	   /* a start, finish or kill is in flight */
	int start_err;	   /* -errno of a failed start, for the waiting call */
	uint32_t restarts; /* after node failures (persisted) */
	uint64_t write_epoch;	      /* of the current run, for its disks */
	bool restart_pending;	      /* restart once this run is released */
	struct cell_rpc_call *waiter; /* cellctl call answered at the end */
	Cellmon__VmNodeStats **stats; /* last snapshot, taken at the end */
	size_t nstats;
};

struct mgr {
	struct mgr_config cfg;
	struct event_base *base;
	struct mgr_store *store;
	struct mgr_members *members;
	struct mgr_cell *cells;
	size_t ncells, capcells;
	struct cell_rpc_config agent_rpc, ctl_rpc;
	struct cell_rpc_listener *agent_l, *ctl_l;
	char agent_addr[160], ctl_addr[160];
	struct mgr_vm **vms;
	size_t nvms, capvms;
	uint64_t start_ms;
};

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

/* VMs (mgr_vm.c). */
/* cellctl's VM requests. */
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
void mgr_vm_stats(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg);
int mgr_vm_restore(struct mgr *m);
void mgr_vm_free_all(struct mgr *m);
/* vCPU states from a heartbeat of node n. */
void mgr_vm_heartbeat(struct mgr *m, struct mgr_node *n,
		      Cellmon__VcpuStatus *const *v, size_t count);
/* Node n's VMs lost their vCPUs (down, or a new incarnation). */
void mgr_vm_node_lost(struct mgr *m, struct mgr_node *n, const char *why);
/* The name of an active VM that uses disk `disk`, or NULL. */
const char *mgr_vm_disk_user(struct mgr *m, const char *disk);
/* The node's DSM id (its index among known nodes), or -1 past 63. */
int mgr_node_dsm_id(struct mgr *m, const struct mgr_node *n);
/* The DSM fences for n's peers (DsmFence in vm.proto): every other node
 * with a DSM id (the first 64 known nodes). Returns how many. */
size_t mgr_dsm_fences(struct mgr *m, const struct mgr_node *n,
		      Cellmon__DsmFence *f, Cellmon__DsmFence **fp);

void mgr_agent_accept(struct cell_rpc_conn *c, void *arg);
void mgr_ctl_accept(struct cell_rpc_conn *c, void *arg);

/* Persists a node's row (and the counters). Logs on failure. */
int mgr_node_persist(struct mgr *m, const struct mgr_node *n);

struct mgr_cell *mgr_cell_find(struct mgr *m, const char *name);
int mgr_cell_add(struct mgr *m, const char *name, uint64_t created_ms);
void mgr_cell_remove(struct mgr *m, const char *name);

/* Sends a command to a node's agent; cb as for cell_rpc_request. */
int mgr_agent_command(struct mgr *m, struct mgr_node *n,
		      const ProtobufCMessage *cmd, cell_rpc_reply_fn cb,
		      void *arg);

#endif
