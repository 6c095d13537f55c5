/*
 * The cell manager's daemon state, shared by its source files:
 *   mgr_main.c   config, start-up, the event loop, the membership tick
 *   mgr_agent.c  the agent-facing methods (Register, Heartbeat) and
 *                commands sent to agents
 *   mgr_ctl.c    the cellctl-facing methods (status, nodes, cells)
 * Everything runs on the one event-loop thread.
 */
#ifndef MGR_INT_H
#define MGR_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "cell/rpc.h"
#include "cell/util.h"
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
