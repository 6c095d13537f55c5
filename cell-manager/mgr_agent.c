/*
 * Agent-facing side of the manager: Register and Heartbeat requests from
 * cellmon-agent connections, and Commands sent back to agents.
 *
 * A connection's data pointer is the node it registered as (NULL before
 * Register); node->conn is that node's newest connection. A heartbeat is
 * accepted on any connection as long as (node id, incarnation) is current.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "dsm/dsm.h"
#include "mgr_int.h"

#define MOD "mgr"

static void fill_lease(struct mgr *m, const struct mgr_node *n,
		       Cellmon__Lease *lease)
{
	m->lease_grants++;
	lease->incarnation = n->incarnation;
	lease->lease_ms = (uint32_t)m->cfg.lease_ms;
	lease->epoch = mgr_members_epoch(m->members);
	lease->peer_lease_ms = (uint32_t)m->cfg.peer_lease_ms;
}

static void agent_closed(struct cell_rpc_conn *c, int reason, void *arg)
{
	struct mgr_node *n = cell_rpc_conn_data(c);

	(void)arg;
	if (!n || n->conn != c)
		return;
	n->conn = NULL;
	CELL_INFO(MOD,
		  "agent connection closed node=%s incarnation=%llu "
		  "reason=%s",
		  n->id, (unsigned long long)n->incarnation,
		  reason ? strerror(-reason) : "eof");
}

void mgr_agent_accept(struct cell_rpc_conn *c, void *arg)
{
	(void)arg;
	cell_rpc_conn_set_close_cb(c, agent_closed, NULL);
	CELL_DEBUG(MOD, "agent connection peer=%s", cell_rpc_conn_peer(c));
}

static int check_register(const Cellmon__RegisterRequest *r, char *why,
			  size_t len)
{
	if (r->protocol_version != CELLPROTO_VERSION) {
		snprintf(why, len,
			 "agent speaks protocol %u, manager speaks %u",
			 r->protocol_version, CELLPROTO_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (!cell_name_valid(r->node_id)) {
		snprintf(why, len,
			 "invalid node id '%.64s': use " CELL_NAME_RULE,
			 r->node_id);
		return -EINVAL;
	}
	if (!r->capacity || r->capacity->cpus == 0 ||
	    r->capacity->memory_mb == 0) {
		snprintf(why, len, "capacity missing or zero");
		return -EINVAL;
	}
	return 0;
}

/* Over TLS, a node speaks only for itself: the node id it registers or
 * heartbeats as is its certificate's name. */
static int check_identity(struct cell_rpc_conn *c, const char *node_id,
			  char *why, size_t len)
{
	if (!c || !cell_rpc_conn_peer_role(c) ||
	    !strcmp(cell_rpc_conn_peer_name(c), node_id))
		return 0;
	snprintf(why, len,
		 "the certificate of node '%s' cannot speak for "
		 "node '%.64s'",
		 cell_rpc_conn_peer_name(c), node_id);
	return -EACCES;
}

static void on_register(struct cell_rpc_call *call, const ProtobufCMessage *msg,
			void *arg)
{
	struct mgr *m = arg;
	const Cellmon__RegisterRequest *r = (const void *)msg;
	struct cell_rpc_conn *c = cell_rpc_call_conn(call);
	Cellmon__RegisterReply reply = CELLMON__REGISTER_REPLY__INIT;
	Cellmon__Lease lease = CELLMON__LEASE__INIT;
	struct mgr_node *n = mgr_members_find(m->members, r->node_id);
	struct mgr_registration reg = {0};
	uint64_t old_inc = 0;
	int resumed = 0, rc;
	char why[160];

	rc = check_register(r, why, sizeof(why));
	if (!rc)
		rc = check_identity(c, r->node_id, why, sizeof(why));
	if (rc) {
		CELL_WARN(MOD, "register refused peer=%s: %s",
			  cell_rpc_conn_peer(c), why);
		cell_rpc_reply_error(call, rc, "%s", why);
		return;
	}
	reg.id = r->node_id;
	reg.addr = r->addr;
	reg.cpus = r->capacity->cpus;
	reg.memory_mb = r->capacity->memory_mb;
	reg.heartbeat_ms = r->heartbeat_ms;
	reg.prev_incarnation = r->prev_incarnation;
	reg.other_conn_live = n && n->conn && n->conn != c;
	rc = mgr_members_register(m->members, &reg, &n, &resumed, &old_inc);
	if (rc == -EEXIST) {
		CELL_WARN(MOD,
			  "register refused node=%s peer=%s: id in use by "
			  "a live agent",
			  r->node_id, cell_rpc_conn_peer(c));
		cell_rpc_reply_error(call, rc,
				     "node id '%s' is in use by a live agent",
				     r->node_id);
		return;
	}
	if (rc || mgr_node_persist(m, n)) {
		cell_rpc_reply_error(call, rc ? rc : -EIO,
				     "manager cannot record the node");
		return;
	}
	if (n->conn && n->conn != c)
		cell_rpc_conn_close(n->conn);
	n->conn = c;
	cell_rpc_conn_set_data(c, n);
	if (resumed)
		CELL_INFO(MOD,
			  "node reconnected id=%s incarnation=%llu peer=%s",
			  n->id, (unsigned long long)n->incarnation,
			  cell_rpc_conn_peer(c));
	else
		CELL_INFO(MOD,
			  "node registered id=%s incarnation=%llu "
			  "previous=%llu cpus=%u memory_mb=%llu peer=%s",
			  n->id, (unsigned long long)n->incarnation,
			  (unsigned long long)old_inc, n->cpus,
			  (unsigned long long)n->memory_mb,
			  cell_rpc_conn_peer(c));
	if (r->heartbeat_ms * 2 > (uint64_t)m->cfg.suspect_after_ms)
		CELL_WARN(MOD,
			  "node %s heartbeats every %u ms; suspect_after "
			  "is %lld ms, expect false suspicions",
			  n->id, r->heartbeat_ms,
			  (long long)m->cfg.suspect_after_ms);
	mgr_node_set_capacity(n, r->capacity);
	mgr_node_quorum_sync(m, n);
	if (!resumed && old_inc)
		mgr_vm_node_lost(m, n, "restarted as a new incarnation");
	fill_lease(m, n, &lease);
	reply.protocol_version = CELLPROTO_VERSION;
	rc = mgr_node_dsm_id(m, n);
	reply.dsm_id = rc >= 0 ? (uint32_t)rc : 0;
	reply.has_dsm_id = rc >= 0;
	reply.dsm_epoch = (uint32_t)n->incarnation;
	reply.lease = &lease;
	reply.resumed = resumed;
	reply.vm_ids = calloc(m->nvms + 1, sizeof(*reply.vm_ids));
	reply.vm_ids_known = reply.vm_ids != NULL; /* else: remove nothing */
	for (size_t i = 0; reply.vm_ids && i < m->nvms; i++)
		reply.vm_ids[reply.n_vm_ids++] = m->vms[i]->id;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_REGISTER_REPLY,
		       &reply.base);
	free(reply.vm_ids);
}

static void on_heartbeat(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	struct mgr *m = arg;
	const Cellmon__HeartbeatRequest *hb = (const void *)msg;
	Cellmon__HeartbeatReply reply = CELLMON__HEARTBEAT_REPLY__INIT;
	Cellmon__Lease lease = CELLMON__LEASE__INIT;
	Cellmon__DsmFence fences[DSM_MAX_NODES], *fp[DSM_MAX_NODES];
	struct mgr_node *n;
	char why[200];
	int rc = check_identity(cell_rpc_call_conn(call), hb->node_id, why,
				sizeof(why));

	if (rc) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "heartbeat refused peer=%s: %s",
			    cell_rpc_conn_peer(cell_rpc_call_conn(call)), why);
		cell_rpc_reply_error(call, rc, "%s", why);
		return;
	}
	rc = mgr_members_heartbeat(m->members, hb->node_id, hb->incarnation,
				   &n);
	if (rc) {
		CELL_LOG_RL(CELL_LOG_INFO, MOD,
			    "heartbeat refused node=%.64s incarnation=%llu: %s",
			    hb->node_id, (unsigned long long)hb->incarnation,
			    rc == -ENOENT ? "unknown node"
					  : "incarnation is over");
		cell_rpc_reply_error(call, rc,
				     rc == -ENOENT
					     ? "unknown node; register first"
					     : "incarnation %llu is over; "
					       "register again",
				     (unsigned long long)hb->incarnation);
		return;
	}
	if (hb->load) {
		n->load1 = hb->load->load1;
		n->mem_free_mb = hb->load->mem_free_mb;
		n->vcpus = hb->load->vcpus;
	}
	if (hb->capacity && hb->capacity->cpus && hb->capacity->memory_mb) {
		n->cpus = hb->capacity->cpus;
		n->memory_mb = hb->capacity->memory_mb;
		mgr_node_set_capacity(n, hb->capacity);
	}
	if (hb->dsm_addr)
		snprintf(n->dsm_addr, sizeof(n->dsm_addr), "%s", hb->dsm_addr);
	if (hb->cache) {
		n->cache.hits = hb->cache->hits;
		n->cache.misses = hb->cache->misses;
		n->cache.evictions = hb->cache->evictions;
		n->cache.waits = hb->cache->waits;
		n->cache.zero_reads = hb->cache->zero_reads;
		n->cache.entries = hb->cache->entries;
		n->cache.capacity = hb->cache->capacity;
	}
	mgr_node_quorum_heard(m, n, hb);
	fill_lease(m, n, &lease);
	reply.lease = &lease;
	reply.n_fences = mgr_dsm_fences(m, n, fences, fp);
	reply.fences = fp;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_HEARTBEAT_REPLY,
		       &reply.base);
	mgr_vm_heartbeat(m, n, hb->vcpus, hb->n_vcpus);
}

int mgr_agent_command(struct mgr *m, struct mgr_node *n,
		      const ProtobufCMessage *cmd, cell_rpc_reply_fn cb,
		      void *arg)
{
	if (!n->conn || n->state == MGR_NODE_DOWN)
		return -ENOTCONN;
	return cell_rpc_request(n->conn, CELLMON__MSG_TYPE__MSG_COMMAND, cmd,
				CELLMON__MSG_TYPE__MSG_COMMAND_ACK,
				(unsigned)m->cfg.command_timeout_ms, cb, arg);
}

const struct cell_rpc_method mgr_agent_methods[] = {
	{CELLMON__MSG_TYPE__MSG_REGISTER, on_register},
	{CELLMON__MSG_TYPE__MSG_HEARTBEAT, on_heartbeat},
	{0, NULL},
};
