/*
 * cellctl-facing side of the manager: status, node queries and node ping
 * here, and the table of every cellctl method, whose cell, disk and VM
 * methods live in mgr_cell.c, mgr_disk.c and mgr_vm_ctl.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "mgr_int.h"

#define MOD "mgr"

static void on_status(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		      void *arg)
{
	struct mgr *m = arg;
	Cellmon__StatusReply r = CELLMON__STATUS_REPLY__INIT;

	(void)msg;
	r.protocol_version = CELLPROTO_VERSION;
	r.version = CELLMON_VERSION;
	r.uptime_ms = cell_now_ms() - m->start_ms;
	r.epoch = mgr_members_epoch(m->members);
	for (size_t i = 0; i < mgr_members_count(m->members); i++) {
		switch (mgr_members_at(m->members, i)->state) {
		case MGR_NODE_UP:
			r.nodes_up++;
			break;
		case MGR_NODE_SUSPECT:
			r.nodes_suspect++;
			break;
		default:
			r.nodes_down++;
			break;
		}
	}
	r.cells = (uint32_t)m->ncells;
	r.agent_addr = m->agent_addr;
	r.ctl_addr = m->ctl_addr;
	r.state_dir = m->cfg.state_dir;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_STATUS_REPLY, &r.base);
}

/* A NodeInfo pointing into n; cap, load, cache and images (NULL: the
 * list is left out, as in node list) are the caller's storage. */
static void fill_node(struct mgr *m, struct mgr_node *n, Cellmon__NodeInfo *ni,
		      Cellmon__Capacity *cap, Cellmon__Load *load,
		      Cellmon__CacheStats *cache, char *images[MGR_NODE_IMAGES])
{
	cellmon__node_info__init(ni);
	cellmon__capacity__init(cap);
	cellmon__load__init(load);
	ni->id = n->id;
	ni->addr = n->addr;
	ni->state = (Cellmon__NodeState)n->state;
	ni->incarnation = n->incarnation;
	cap->cpus = n->cpus;
	cap->memory_mb = n->memory_mb;
	cap->images_known = images && n->images_known;
	for (uint32_t i = 0; cap->images_known && i < n->nimages; i++)
		images[cap->n_images++] = n->images[i];
	cap->images = images;
	ni->capacity = cap;
	load->load1 = n->load1;
	load->mem_free_mb = n->mem_free_mb;
	load->vcpus = n->vcpus;
	ni->load = load;
	ni->cell = n->cell;
	ni->heartbeat_age_ms = mgr_members_now(m->members) - n->last_seen_ms;
	ni->state_since_ms = n->state_since_wall_ms;
	ni->heartbeat_ms = n->heartbeat_ms;
	ni->connected = n->conn != NULL;
	ni->dsm_addr = n->dsm_addr;
	ni->dsm_id = mgr_node_dsm_id(m, n);
	cellmon__cache_stats__init(cache);
	cache->hits = n->cache.hits;
	cache->misses = n->cache.misses;
	cache->evictions = n->cache.evictions;
	cache->waits = n->cache.waits;
	cache->zero_reads = n->cache.zero_reads;
	cache->entries = n->cache.entries;
	cache->capacity = n->cache.capacity;
	ni->cache = cache;
}

static void on_node_list(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	struct mgr *m = arg;
	Cellmon__NodeListReply r = CELLMON__NODE_LIST_REPLY__INIT;
	size_t n = mgr_members_count(m->members);
	Cellmon__NodeInfo *infos = calloc(n ? n : 1, sizeof(*infos));
	Cellmon__NodeInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Cellmon__Capacity *caps = calloc(n ? n : 1, sizeof(*caps));
	Cellmon__Load *loads = calloc(n ? n : 1, sizeof(*loads));
	Cellmon__CacheStats *caches = calloc(n ? n : 1, sizeof(*caches));

	(void)msg;
	if (!infos || !ptrs || !caps || !loads || !caches) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		fill_node(m, mgr_members_at(m->members, i), &infos[i], &caps[i],
			  &loads[i], &caches[i], NULL);
		ptrs[i] = &infos[i];
	}
	r.n_nodes = n;
	r.nodes = ptrs;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_NODE_LIST_REPLY, &r.base);
out:
	free(infos);
	free(ptrs);
	free(caps);
	free(loads);
	free(caches);
}

static void on_node_info(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	struct mgr *m = arg;
	const Cellmon__NodeInfoRequest *req = (const void *)msg;
	Cellmon__NodeInfoReply r = CELLMON__NODE_INFO_REPLY__INIT;
	Cellmon__NodeInfo ni;
	Cellmon__Capacity cap;
	Cellmon__Load load;
	Cellmon__CacheStats cache;
	char *images[MGR_NODE_IMAGES];
	struct mgr_node *n = mgr_node_or_error(m, call, req->id);

	if (!n)
		return;
	fill_node(m, n, &ni, &cap, &load, &cache, images);
	r.node = &ni;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_NODE_INFO_REPLY, &r.base);
}

struct ping {
	struct cell_rpc_call *call;
	uint64_t start_us;
	uint64_t incarnation;
};

static void ping_done(int status, const ProtobufCMessage *msg,
		      const char *errmsg, void *arg)
{
	struct ping *p = arg;
	const Cellmon__CommandAck *ack = (const void *)msg;
	Cellmon__NodePingReply r = CELLMON__NODE_PING_REPLY__INIT;

	if (status)
		cell_rpc_reply_error(p->call, status, "agent: %s", errmsg);
	else if (ack->status)
		cell_rpc_reply_error(p->call, ack->status, "agent: %s",
				     ack->message);
	else {
		r.rtt_us = cell_now_us() - p->start_us;
		r.incarnation = p->incarnation;
		cell_rpc_reply(p->call, CELLMON__MSG_TYPE__MSG_NODE_PING_REPLY,
			       &r.base);
	}
	free(p);
}

static void on_node_ping(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	struct mgr *m = arg;
	const Cellmon__NodePingRequest *req = (const void *)msg;
	Cellmon__Command cmd = CELLMON__COMMAND__INIT;
	struct mgr_node *n = mgr_node_or_error(m, call, req->id);
	struct ping *p;
	int rc;

	if (!n)
		return;
	p = calloc(1, sizeof(*p));
	if (!p) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		return;
	}
	p->call = call;
	p->start_us = cell_now_us();
	p->incarnation = n->incarnation;
	cmd.incarnation = n->incarnation;
	cmd.kind = CELLMON__COMMAND_KIND__CMD_PING;
	rc = mgr_agent_command(m, n, &cmd.base, ping_done, p);
	if (rc) {
		free(p);
		cell_rpc_reply_error(call, rc,
				     "node '%s' is not connected (%s)", n->id,
				     mgr_node_state_name(n->state));
	}
}

void mgr_ctl_accept(struct cell_rpc_conn *c, void *arg)
{
	(void)arg;
	CELL_DEBUG(MOD, "cellctl connection peer=%s", cell_rpc_conn_peer(c));
}

/* ---- the cellctl calls that change something, in the event log ---- */

/* The name a request is about: a VM's, a cell's or a disk's. */
static const char *subject_of(const ProtobufCMessage *msg)
{
	if (msg->descriptor == &cellmon__vm_request__descriptor) {
		const Cellmon__VmRequest *r = (const void *)msg;

		return r->name[0] || !r->spec ? r->name : r->spec->name;
	}
	if (msg->descriptor == &cellmon__cell_request__descriptor)
		return ((const Cellmon__CellRequest *)msg)->name;
	if (msg->descriptor == &cellmon__disk_request__descriptor)
		return ((const Cellmon__DiskRequest *)msg)->name;
	return "";
}

/* Who made a call: "admin alice (127.0.0.1:41234)" over TLS, the
 * address alone over plain TCP. */
static void caller(struct cell_rpc_call *call, char *out, size_t len)
{
	struct cell_rpc_conn *c = cell_rpc_call_conn(call);

	if (!c)
		snprintf(out, len, "?");
	else if (cell_rpc_conn_peer_role(c))
		snprintf(out, len, "%s %s (%s)",
			 cell_role_name(cell_rpc_conn_peer_role(c)),
			 cell_rpc_conn_peer_name(c), cell_rpc_conn_peer(c));
	else
		snprintf(out, len, "%s", cell_rpc_conn_peer(c));
}

/* Records a call that changes the cell; 0, or -EACCES (answered) for a
 * viewer, who may only read. */
static int audit(struct mgr *m, struct cell_rpc_call *call,
		 const ProtobufCMessage *msg, const char *what)
{
	struct cell_rpc_conn *c = cell_rpc_call_conn(call);
	const char *subject = subject_of(msg);
	char who[200];

	caller(call, who, sizeof(who));
	if (c && cell_rpc_conn_peer_role(c) == CELL_ROLE_VIEWER) {
		mgr_event(m, "ctl", subject ? subject : "",
			  "%s %s by %s: refused, a viewer may only read", what,
			  subject ? subject : "", who);
		cell_rpc_reply_error(call, -EACCES,
				     "%s: refused: viewer '%s' may only read "
				     "(list, info, stats, console, pages, "
				     "events); ask an admin",
				     what, cell_rpc_conn_peer_name(c));
		return -EACCES;
	}
	mgr_event(m, "ctl", subject ? subject : "", "%s %s by %s", what,
		  subject ? subject : "", who);
	return 0;
}

#define AUDITED(fn, what)                                                \
	static void audited_##fn(struct cell_rpc_call *call,             \
				 const ProtobufCMessage *msg, void *arg) \
	{                                                                \
		if (!audit(arg, call, msg, what))                        \
			fn(call, msg, arg);                              \
	}

AUDITED(mgr_cell_create, "cell create")
AUDITED(mgr_cell_delete, "cell delete")
AUDITED(mgr_cell_add_node, "cell add-node")
AUDITED(mgr_cell_remove_node, "cell remove-node")
AUDITED(mgr_cell_set, "cell set")
AUDITED(mgr_disk_create, "disk create")
AUDITED(mgr_disk_clone, "disk clone")
AUDITED(mgr_disk_delete, "disk delete")
AUDITED(mgr_vm_create, "vm create")
AUDITED(mgr_vm_start, "vm start")
AUDITED(mgr_vm_stop, "vm stop")
AUDITED(mgr_vm_kill, "vm kill")
AUDITED(mgr_vm_delete, "vm delete")
AUDITED(mgr_vm_migrate, "vm migrate")
AUDITED(mgr_vm_set, "vm set")

const struct cell_rpc_method mgr_ctl_methods[] = {
	{CELLMON__MSG_TYPE__MSG_STATUS, on_status},
	{CELLMON__MSG_TYPE__MSG_NODE_LIST, on_node_list},
	{CELLMON__MSG_TYPE__MSG_NODE_INFO, on_node_info},
	{CELLMON__MSG_TYPE__MSG_NODE_PING, on_node_ping},
	{CELLMON__MSG_TYPE__MSG_CELL_CREATE, audited_mgr_cell_create},
	{CELLMON__MSG_TYPE__MSG_CELL_DELETE, audited_mgr_cell_delete},
	{CELLMON__MSG_TYPE__MSG_CELL_INFO, mgr_cell_info},
	{CELLMON__MSG_TYPE__MSG_CELL_ADD_NODE, audited_mgr_cell_add_node},
	{CELLMON__MSG_TYPE__MSG_CELL_REMOVE_NODE, audited_mgr_cell_remove_node},
	{CELLMON__MSG_TYPE__MSG_CELL_LIST, mgr_cell_list},
	{CELLMON__MSG_TYPE__MSG_CELL_SET, audited_mgr_cell_set},
	{CELLMON__MSG_TYPE__MSG_DISK_CREATE, audited_mgr_disk_create},
	{CELLMON__MSG_TYPE__MSG_DISK_CLONE, audited_mgr_disk_clone},
	{CELLMON__MSG_TYPE__MSG_DISK_DELETE, audited_mgr_disk_delete},
	{CELLMON__MSG_TYPE__MSG_DISK_INFO, mgr_disk_info},
	{CELLMON__MSG_TYPE__MSG_DISK_LIST, mgr_disk_list},
	{CELLMON__MSG_TYPE__MSG_VM_CREATE, audited_mgr_vm_create},
	{CELLMON__MSG_TYPE__MSG_VM_START, audited_mgr_vm_start},
	{CELLMON__MSG_TYPE__MSG_VM_STOP, audited_mgr_vm_stop},
	{CELLMON__MSG_TYPE__MSG_VM_KILL, audited_mgr_vm_kill},
	{CELLMON__MSG_TYPE__MSG_VM_DELETE, audited_mgr_vm_delete},
	{CELLMON__MSG_TYPE__MSG_VM_INFO, mgr_vm_info},
	{CELLMON__MSG_TYPE__MSG_VM_LIST, mgr_vm_list},
	{CELLMON__MSG_TYPE__MSG_VM_CONSOLE, mgr_vm_console},
	{CELLMON__MSG_TYPE__MSG_VM_STATS, mgr_vm_stats},
	{CELLMON__MSG_TYPE__MSG_VM_MIGRATE, audited_mgr_vm_migrate},
	{CELLMON__MSG_TYPE__MSG_VM_SET, audited_mgr_vm_set},
	{CELLMON__MSG_TYPE__MSG_VM_PAGES, mgr_vm_pages_info},
	{CELLMON__MSG_TYPE__MSG_EVENTS, mgr_events_rpc},
	{0, NULL},
};
