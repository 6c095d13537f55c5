/*
 * cellmon-vdiskd's admin RPC, called by the manager (cellctl disk ...)
 * and by agents (DISK_MAP): create, clone (freezes the source), delete,
 * info, list (with the bytes served) and a disk's map. Runs on the main
 * loop thread. A clone or delete waits for nothing but its own disk
 * (vdiskd_export_when_unused), and nothing here holds a lock across disk
 * I/O.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "vdiskd.h"

#define MOD "vdiskd"

static int fill_info(const char *name, Cellmon__DiskInfo *di,
		     struct vdisk_info *vi, char *err, size_t errlen)
{
	int rc = vdisk_info(D.cfg.store, name, vi, err, errlen);

	if (rc)
		return rc;
	cellmon__disk_info__init(di);
	di->name = vi->name;
	di->size = vi->size;
	di->frozen = vi->frozen;
	di->parent = vi->parent;
	di->data_bytes = vi->data_bytes;
	di->journal_bytes = vi->journal_bytes;
	di->chain_depth = vi->chain_depth;
	di->clients = (uint32_t)vdiskd_export_clients(name);
	return 0;
}

static void reply_disk(struct cell_rpc_call *call, const char *name)
{
	Cellmon__DiskReply r = CELLMON__DISK_REPLY__INIT;
	Cellmon__DiskInfo di;
	struct vdisk_info vi;
	char err[600];
	int rc;

	if (name) {
		rc = fill_info(name, &di, &vi, err, sizeof(err));
		if (rc) {
			cell_rpc_reply_error(call, rc, "%s", err);
			return;
		}
		r.disk = &di;
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_DISK_REPLY, &r.base);
}

static void on_disk_create(struct cell_rpc_call *call,
			   const ProtobufCMessage *msg, void *arg)
{
	const Cellmon__DiskRequest *q = (const void *)msg;
	char err[600];
	int rc;

	(void)arg;
	rc = vdisk_create(D.cfg.store, q->name, q->size, q->parent, err,
			  sizeof(err));
	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", err);
		return;
	}
	CELL_INFO(MOD, "created disk %s (%llu bytes, parent %s)", q->name,
		  (unsigned long long)q->size,
		  q->parent[0] ? q->parent : "none");
	reply_disk(call, q->name);
}

static int do_clone(void *arg, char *err, size_t len)
{
	const Cellmon__DiskRequest *q = arg;

	return vdisk_clone(D.cfg.store, q->src, q->name, err, len);
}

static int do_delete(void *arg, char *err, size_t len)
{
	const Cellmon__DiskRequest *q = arg;

	return vdisk_delete(D.cfg.store, q->name, err, len);
}

/* Clone and delete: op on a disk nobody has open, then the answer. */
static void when_unused_reply(struct cell_rpc_call *call,
			      const Cellmon__DiskRequest *q, bool clone)
{
	char err[600];
	int rc = vdiskd_export_when_unused(clone ? q->src : q->name,
					   clone ? do_clone : do_delete,
					   (void *)q, err, sizeof(err));

	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", err);
		return;
	}
	if (clone)
		CELL_INFO(MOD, "cloned disk %s from %s (now frozen)", q->name,
			  q->src);
	else
		CELL_INFO(MOD, "deleted disk %s", q->name);
	reply_disk(call, clone ? q->name : NULL);
}

static void on_disk_clone(struct cell_rpc_call *call,
			  const ProtobufCMessage *msg, void *arg)
{
	(void)arg;
	when_unused_reply(call, (const void *)msg, true);
}

static void on_disk_delete(struct cell_rpc_call *call,
			   const ProtobufCMessage *msg, void *arg)
{
	(void)arg;
	when_unused_reply(call, (const void *)msg, false);
}

static void on_disk_info(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	(void)arg;
	reply_disk(call, ((const Cellmon__DiskRequest *)msg)->name);
}

static void on_disk_map(struct cell_rpc_call *call, const ProtobufCMessage *msg,
			void *arg)
{
	const Cellmon__DiskRequest *q = (const void *)msg;
	Cellmon__DiskMapReply r = CELLMON__DISK_MAP_REPLY__INIT;
	struct vdisk_map map;
	struct vdisk *d;
	char err[600];
	int rc;

	(void)arg;
	d = vdiskd_export_get(NULL, q->name, err, sizeof(err));
	if (!d) {
		cell_rpc_reply_error(call,
				     strstr(err, "no disk") ? -ENOENT : -EIO,
				     "%s", err);
		return;
	}
	rc = vdisk_map_get(d, &map);
	vdiskd_export_put(NULL, d);
	if (rc) {
		cell_rpc_reply_error(call, rc, "map of %s: %s", q->name,
				     strerror(-rc));
		return;
	}
	r.name = q->name;
	r.size = map.size;
	r.below = map.below;
	r.top.data = map.top;
	r.top.len = (map.nblocks + 7) / 8;
	r.server = D.nbd_addr;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_DISK_MAP_REPLY, &r.base);
	vdisk_map_free(&map);
}

static void on_disk_list(struct cell_rpc_call *call,
			 const ProtobufCMessage *msg, void *arg)
{
	Cellmon__DiskListReply r = CELLMON__DISK_LIST_REPLY__INIT;
	Cellmon__DiskInfo *infos = NULL, **ptrs = NULL;
	struct vdisk_info *vis = NULL;
	char **names = NULL, err[600];
	size_t n = 0, k = 0;

	(void)msg;
	(void)arg;
	if (vdisk_list(D.cfg.store, &names, &n, err, sizeof(err))) {
		cell_rpc_reply_error(call, -EIO, "%s", err);
		return;
	}
	infos = calloc(n + 1, sizeof(*infos));
	ptrs = calloc(n + 1, sizeof(*ptrs));
	vis = calloc(n + 1, sizeof(*vis));
	if (!infos || !ptrs || !vis) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (fill_info(names[i], &infos[k], &vis[k], err, sizeof(err)) ==
		    0) {
			ptrs[k] = &infos[k];
			k++;
		} else {
			CELL_WARN(MOD, "disk list: %s", err);
		}
	pthread_mutex_lock(&D.clients_mu);
	r.bytes_read = D.bytes_read;
	r.bytes_written = D.bytes_written;
	for (int i = 0; i < D.cfg.max_clients; i++)
		if (D.clients[i].used) {
			r.bytes_read += __atomic_load_n(
				&D.clients[i].st.bytes_read, __ATOMIC_RELAXED);
			r.bytes_written +=
				__atomic_load_n(&D.clients[i].st.bytes_written,
						__ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&D.clients_mu);
	r.n_disks = k;
	r.disks = ptrs;
	r.server = D.nbd_addr;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_DISK_LIST_REPLY, &r.base);
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(infos);
	free(ptrs);
	free(vis);
}

/* Over TLS a node may read the map of a disk and no more; creating,
 * cloning and deleting are the manager's (cellctl's, through it). */
static bool manager_only(struct cell_rpc_call *call, const char *what)
{
	struct cell_rpc_conn *c = cell_rpc_call_conn(call);

	if (!c || cell_rpc_conn_peer_role(c) != CELL_ROLE_NODE)
		return false;
	CELL_LOG_RL(CELL_LOG_WARN, MOD, "refused disk %s from node %s (%s)",
		    what, cell_rpc_conn_peer_name(c), cell_rpc_conn_peer(c));
	cell_rpc_reply_error(call, -EACCES,
			     "refused: a node may not %s disks (the manager "
			     "does, for cellctl)",
			     what);
	return true;
}

#define MANAGER_ONLY(fn, what)                                       \
	static void mgr_##fn(struct cell_rpc_call *call,             \
			     const ProtobufCMessage *msg, void *arg) \
	{                                                            \
		if (!manager_only(call, what))                       \
			fn(call, msg, arg);                          \
	}

MANAGER_ONLY(on_disk_create, "create")
MANAGER_ONLY(on_disk_clone, "clone")
MANAGER_ONLY(on_disk_delete, "delete")

const struct cell_rpc_method vdiskd_admin_methods[] = {
	{CELLMON__MSG_TYPE__MSG_DISK_CREATE, mgr_on_disk_create},
	{CELLMON__MSG_TYPE__MSG_DISK_CLONE, mgr_on_disk_clone},
	{CELLMON__MSG_TYPE__MSG_DISK_DELETE, mgr_on_disk_delete},
	{CELLMON__MSG_TYPE__MSG_DISK_INFO, on_disk_info},
	{CELLMON__MSG_TYPE__MSG_DISK_LIST, on_disk_list},
	{CELLMON__MSG_TYPE__MSG_DISK_MAP, on_disk_map},
	{0, NULL},
};
