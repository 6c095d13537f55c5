/*
 * cellmon-vdiskd: serves the disks of a store over NBD, and administers
 * the store offline.
 *
 *   cellmon-vdiskd [--config=FILE] [--key=value...]        serve
 *   cellmon-vdiskd [options] base import PATH
 *   cellmon-vdiskd [options] disk create NAME SIZE [PARENT]
 *   cellmon-vdiskd [options] disk clone SRC NAME
 *   cellmon-vdiskd [options] disk list|info NAME|delete NAME [-o json]
 *   cellmon-vdiskd config show|example
 *
 * One thread per client connection; clients of the same disk share one
 * open struct vdisk (reads in parallel, writes one at a time). SIGTERM or
 * SIGINT: stop accepting, disconnect the clients, flush and close every
 * disk, exit 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "cell/config.h"
#include "cell/log.h"
#include "cell/net.h"
#include "cell/rpc.h"
#include "cellproto/cellproto.h"
#include "cell/util.h"
#include "nbd.h"
#include "vdisk/vdisk.h"

#define MOD	    "vdiskd"
#define MAX_EXPORTS 256

struct vdiskd_config {
	char listen[128];
	char admin_listen[128];
	char store[1024];
	int64_t max_clients;
	char log_level[16];
};

#define CFG(field) offsetof(struct vdiskd_config, field)
#define STR(field) CFG(field), sizeof(((struct vdiskd_config *)0)->field)

static const struct cell_config_key vdiskd_config_table[] = {
	{"listen", CELL_CFG_STRING, STR(listen), 0, 0, "127.0.0.1:10809",
	 "NBD address host:port (10809 is NBD's port; port 0: any)"},
	{"admin_listen", CELL_CFG_STRING, STR(admin_listen), 0, 0,
	 "127.0.0.1:10810",
	 "address host:port the manager sends disk requests to (port 0: "
	 "any)"},
	{"store", CELL_CFG_STRING, STR(store), 0, 0, "/var/lib/cellmon/vdisk",
	 "directory of base images and disks (created if missing)"},
	{"max_clients", CELL_CFG_INT, CFG(max_clients), 0, 1, 4096, "64",
	 "NBD connections served at once; more are refused"},
	{"log_level", CELL_CFG_ENUM, STR(log_level), 0, 0, "info",
	 "log threshold", cell_config_log_levels},
	{NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

struct export
{
	char name[VDISK_NAME_MAX + 1];
	struct vdisk *d;
	int refs;
	uint64_t fence; /* highest write epoch opened (disks/<name>/fence) */
};

struct client {
	int fd;
	char peer[64];
	bool used;
	struct nbd_conn_stats st; /* live, see nbd.h */
};

static struct {
	struct vdiskd_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct export exports[MAX_EXPORTS];
	struct client *clients;
	int nclients;
	uint64_t bytes_read, bytes_written; /* of clients gone, under lock */
	char nbd_addr[160], admin_addr[160];
} D = {.lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* ---- exports: open disks shared by their clients ---- */

/*
 * Write fences. An agent opens a VM's writable disk as "<name>@<epoch>",
 * the epoch growing with every start of a VM; a disk remembers the
 * highest epoch opened (in disks/<name>/fence, so a restart keeps it).
 * Opening with a lower one is refused, and so is every write of a
 * connection whose epoch has been passed: a writer the manager has given
 * up on (fenced, restarted elsewhere) cannot write any more. A plain name
 * (operators' tools) is not fenced.
 */
static int split_export(const char *export, char *name, size_t len,
			uint64_t *epoch)
{
	const char *at = strrchr(export, '@');
	char *end;

	*epoch = 0;
	if (!at) {
		snprintf(name, len, "%s", export);
		return 0;
	}
	if ((size_t)(at - export) >= len || !at[1] || at[1] == '-')
		return -EINVAL;
	errno = 0;
	*epoch = strtoull(at + 1, &end, 10);
	if (*end || errno || !*epoch)
		return -EINVAL;
	snprintf(name, len, "%.*s", (int)(at - export), export);
	return 0;
}

static uint64_t fence_load(const char *name)
{
	char path[1200], text[32];
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/disks/%s/fence", D.cfg.store, name);
	f = fopen(path, "r");
	if (f && fgets(text, sizeof(text), f))
		v = strtoull(text, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static int fence_store(const char *name, uint64_t epoch)
{
	char path[1200], text[32];

	snprintf(path, sizeof(path), "%s/disks/%s/fence", D.cfg.store, name);
	snprintf(text, sizeof(text), "%llu\n", (unsigned long long)epoch);
	return cell_write_file_atomic(path, text, strlen(text));
}

static struct export *export_of(struct vdisk *d)
{
	for (int i = 0; i < MAX_EXPORTS; i++)
		if (D.exports[i].d == d)
			return &D.exports[i];
	return NULL;
}

static struct vdisk *export_open(const char *name, char *err, size_t errlen);
static void export_put(void *ctx, struct vdisk *d);

static struct vdisk *export_get(void *ctx, const char *export, char *err,
				size_t errlen)
{
	char name[VDISK_NAME_MAX + 1];
	uint64_t epoch;
	struct export *e;
	struct vdisk *d;

	(void)ctx;
	if (split_export(export, name, sizeof(name), &epoch)) {
		snprintf(err, errlen, "bad export name '%.80s'", export);
		return NULL;
	}
	d = export_open(name, err, errlen);
	if (!d || !epoch)
		return d;
	pthread_mutex_lock(&D.lock);
	e = export_of(d);
	if (epoch < e->fence) {
		snprintf(err, errlen,
			 "disk %s is fenced at write epoch %llu; this writer "
			 "has %llu",
			 name, (unsigned long long)e->fence,
			 (unsigned long long)epoch);
		pthread_mutex_unlock(&D.lock);
		CELL_WARN(MOD, "%s", err);
		export_put(NULL, d);
		return NULL;
	}
	if (epoch > e->fence && fence_store(name, epoch) == 0) {
		CELL_INFO(MOD, "disk %s write epoch %llu (was %llu)", name,
			  (unsigned long long)epoch,
			  (unsigned long long)e->fence);
		e->fence = epoch;
	}
	pthread_mutex_unlock(&D.lock);
	return d;
}

static int may_write(void *ctx, struct vdisk *d, const char *export)
{
	char name[VDISK_NAME_MAX + 1];
	uint64_t epoch;
	struct export *e;
	int rc = 0;

	(void)ctx;
	if (split_export(export, name, sizeof(name), &epoch) || !epoch)
		return 0;
	pthread_mutex_lock(&D.lock);
	e = export_of(d);
	if (e && epoch < e->fence)
		rc = -EPERM;
	pthread_mutex_unlock(&D.lock);
	if (rc)
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "write to %s refused: epoch %llu is fenced", name,
			    (unsigned long long)epoch);
	return rc;
}

static struct vdisk *export_open(const char *name, char *err, size_t errlen)
{
	struct export *free_slot = NULL;
	struct vdisk *d = NULL;

	pthread_mutex_lock(&D.lock);
	for (int i = 0; i < MAX_EXPORTS; i++) {
		struct export *e = &D.exports[i];

		if (e->d && strcmp(e->name, name) == 0) {
			e->refs++;
			d = e->d;
			goto out;
		}
		if (!e->d && !free_slot)
			free_slot = e;
	}
	if (!free_slot) {
		snprintf(err, errlen, "too many open disks");
		goto out;
	}
	if (vdisk_open(D.cfg.store, name, &d, err, errlen)) {
		d = NULL;
		goto out;
	}
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
	free_slot->d = d;
	free_slot->refs = 1;
	free_slot->fence = fence_load(name);
	CELL_INFO(MOD, "opened disk %s (%llu bytes%s)", name,
		  (unsigned long long)vdisk_size(d),
		  vdisk_readonly(d) ? ", frozen: read-only" : "");
out:
	pthread_mutex_unlock(&D.lock);
	return d;
}

/* The last client of a disk flushes and closes it. */
static void export_put(void *ctx, struct vdisk *d)
{
	(void)ctx;
	pthread_mutex_lock(&D.lock);
	for (int i = 0; i < MAX_EXPORTS; i++) {
		struct export *e = &D.exports[i];

		if (e->d != d || --e->refs > 0)
			continue;
		if (vdisk_flush(d))
			CELL_ERROR(MOD, "flush of disk %s on close failed",
				   e->name);
		vdisk_close(d);
		CELL_INFO(MOD, "closed disk %s", e->name);
		e->d = NULL;
	}
	pthread_mutex_unlock(&D.lock);
}

static int export_list(void *ctx, char ***names, size_t *count)
{
	(void)ctx;
	return vdisk_list(D.cfg.store, names, count, NULL, 0);
}

static const struct nbd_exports exports_ops = {export_get, export_put,
					       export_list, may_write, NULL};

/* ---- clients ---- */

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct nbd_conn_stats st;
	char err[400];
	int rc = nbd_serve(c->fd, &exports_ops, &c->st, err, sizeof(err));

	st = c->st;
	if (rc)
		CELL_WARN(MOD, "client %s: %s (after %llu requests)", c->peer,
			  err, (unsigned long long)st.requests);
	else
		CELL_INFO(MOD,
			  "client %s disconnected: %llu requests, %llu "
			  "errors, %llu bytes read, %llu written",
			  c->peer, (unsigned long long)st.requests,
			  (unsigned long long)st.errors,
			  (unsigned long long)st.bytes_read,
			  (unsigned long long)st.bytes_written);
	pthread_mutex_lock(&D.lock);
	D.bytes_read += st.bytes_read;
	D.bytes_written += st.bytes_written;
	close(c->fd);
	c->used = false;
	if (--D.nclients == 0)
		pthread_cond_broadcast(&D.idle);
	pthread_mutex_unlock(&D.lock);
	return NULL;
}

static void accept_one(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct client *c = NULL;
	pthread_t t;
	pthread_attr_t attr;
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	int one = 1;

	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&D.lock);
	for (int i = 0; i < D.cfg.max_clients && !c; i++)
		if (!D.clients[i].used)
			c = &D.clients[i];
	if (c) {
		c->used = true;
		c->fd = fd;
		memset(&c->st, 0, sizeof(c->st));
		D.nclients++;
	}
	pthread_mutex_unlock(&D.lock);
	if (!c) {
		CELL_WARN(MOD, "refused a client: %lld connections already",
			  (long long)D.cfg.max_clients);
		close(fd);
		return;
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uint8_t *ip = (uint8_t *)&a->sin_addr;

		snprintf(c->peer, sizeof(c->peer), "%u.%u.%u.%u:%u", ip[0],
			 ip[1], ip[2], ip[3], ntohs(a->sin_port));
	} else {
		snprintf(c->peer, sizeof(c->peer), "fd %d", fd);
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, client_main, c)) {
		CELL_ERROR(MOD, "no thread for client %s", c->peer);
		pthread_mutex_lock(&D.lock);
		close(fd);
		c->used = false;
		D.nclients--;
		pthread_mutex_unlock(&D.lock);
	}
	pthread_attr_destroy(&attr);
}

static int listen_on(const char *hostport)
{
	struct sockaddr_storage ss;
	int sl, fd, one = 1;

	if (cell_parse_hostport(hostport, &ss, &sl))
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) || listen(fd, 64)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* <store>/vdiskd.addr: "nbd=host:port" and "admin=host:port", so that
 * tests and scripts may ask for port 0. */
static int write_addr(void)
{
	char path[1100], text[400];
	int rc;

	snprintf(text, sizeof(text), "nbd=%s\nadmin=%s\n", D.nbd_addr,
		 D.admin_addr);
	snprintf(path, sizeof(path), "%s/vdiskd.addr", D.cfg.store);
	rc = cell_write_file_atomic(path, text, strlen(text));
	if (rc)
		CELL_ERROR(MOD, "cannot write %s: %s", path, strerror(-rc));
	return rc;
}

/* ---- admin requests (from the manager), on the main thread ---- */

static int open_clients(const char *name)
{
	for (int i = 0; i < MAX_EXPORTS; i++)
		if (D.exports[i].d && strcmp(D.exports[i].name, name) == 0)
			return D.exports[i].refs;
	return 0;
}

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
	di->clients = (uint32_t)open_clients(name);
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
		pthread_mutex_lock(&D.lock);
		rc = fill_info(name, &di, &vi, err, sizeof(err));
		pthread_mutex_unlock(&D.lock);
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

static int do_clone(const Cellmon__DiskRequest *q, char *err, size_t len)
{
	return vdisk_clone(D.cfg.store, q->src, q->name, err, len);
}

static int do_delete(const Cellmon__DiskRequest *q, char *err, size_t len)
{
	return vdisk_delete(D.cfg.store, q->name, err, len);
}

/* Runs op unless disk `name` has NBD clients (-EBUSY). It holds the
 * export lock: no client opens the disk while it is frozen or removed. */
static int when_unused(const char *name,
		       int (*op)(const Cellmon__DiskRequest *, char *, size_t),
		       const Cellmon__DiskRequest *q, char *err, size_t len)
{
	int rc, users;

	pthread_mutex_lock(&D.lock);
	users = open_clients(name);
	if (users) {
		snprintf(err, len, "disk '%s' is in use by %d client%s", name,
			 users, users == 1 ? "" : "s");
		rc = -EBUSY;
	} else {
		rc = op(q, err, len);
	}
	pthread_mutex_unlock(&D.lock);
	return rc;
}

static void on_disk_clone(struct cell_rpc_call *call,
			  const ProtobufCMessage *msg, void *arg)
{
	const Cellmon__DiskRequest *q = (const void *)msg;
	char err[600];
	int rc = when_unused(q->src, do_clone, q, err, sizeof(err));

	(void)arg;
	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", err);
		return;
	}
	CELL_INFO(MOD, "cloned disk %s from %s (now frozen)", q->name, q->src);
	reply_disk(call, q->name);
}

static void on_disk_delete(struct cell_rpc_call *call,
			   const ProtobufCMessage *msg, void *arg)
{
	const Cellmon__DiskRequest *q = (const void *)msg;
	char err[600];
	int rc = when_unused(q->name, do_delete, q, err, sizeof(err));

	(void)arg;
	if (rc) {
		cell_rpc_reply_error(call, rc, "%s", err);
		return;
	}
	CELL_INFO(MOD, "deleted disk %s", q->name);
	reply_disk(call, NULL);
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
	d = export_get(NULL, q->name, err, sizeof(err));
	if (!d) {
		cell_rpc_reply_error(call,
				     strstr(err, "no disk") ? -ENOENT : -EIO,
				     "%s", err);
		return;
	}
	rc = vdisk_map_get(d, &map);
	export_put(NULL, d);
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
	pthread_mutex_lock(&D.lock);
	for (size_t i = 0; i < n; i++)
		if (fill_info(names[i], &infos[k], &vis[k], err, sizeof(err)) ==
		    0) {
			ptrs[k] = &infos[k];
			k++;
		} else {
			CELL_WARN(MOD, "disk list: %s", err);
		}
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
	pthread_mutex_unlock(&D.lock);
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

static const struct cell_rpc_method admin_methods[] = {
	{CELLMON__MSG_TYPE__MSG_DISK_CREATE, on_disk_create},
	{CELLMON__MSG_TYPE__MSG_DISK_CLONE, on_disk_clone},
	{CELLMON__MSG_TYPE__MSG_DISK_DELETE, on_disk_delete},
	{CELLMON__MSG_TYPE__MSG_DISK_INFO, on_disk_info},
	{CELLMON__MSG_TYPE__MSG_DISK_LIST, on_disk_list},
	{CELLMON__MSG_TYPE__MSG_DISK_MAP, on_disk_map},
	{0, NULL},
};

static void admin_accept(struct cell_rpc_conn *c, void *arg)
{
	(void)arg;
	CELL_DEBUG(MOD, "admin connection from %s", cell_rpc_conn_peer(c));
}

/* ---- the main loop ---- */

static void nbd_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	accept_one(fd);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	CELL_INFO(MOD, "signal %d: stopping", (int)sig);
	event_base_loopbreak(arg);
}

static int serve(void)
{
	struct cell_rpc_config rpc = {cellproto_types, admin_methods, NULL, 0,
				      MOD};
	struct cell_rpc_listener *admin = NULL;
	struct event *ev_nbd = NULL, *ev_term = NULL, *ev_int = NULL;
	struct event_base *base = event_base_new();
	char err[600];
	int lfd = -1, rc = 1;

	if (!base)
		return 1;
	if (vdisk_store_init(D.cfg.store, err, sizeof(err))) {
		CELL_ERROR(MOD, "%s", err);
		goto out;
	}
	D.clients = calloc((size_t)D.cfg.max_clients, sizeof(*D.clients));
	if (!D.clients)
		goto out;
	lfd = listen_on(D.cfg.listen);
	if (lfd < 0) {
		CELL_ERROR(MOD, "listen on %s: %s", D.cfg.listen,
			   strerror(-lfd));
		goto out;
	}
	rc = cell_rpc_listen(base, D.cfg.admin_listen, &rpc, admin_accept, NULL,
			     &admin);
	if (rc) {
		CELL_ERROR(MOD, "listen on %s: %s", D.cfg.admin_listen,
			   strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = 1;
	cell_hostport_bound(D.cfg.listen, cell_socket_port(lfd), D.nbd_addr,
			    sizeof(D.nbd_addr));
	cell_hostport_bound(D.cfg.admin_listen, cell_rpc_listener_port(admin),
			    D.admin_addr, sizeof(D.admin_addr));
	if (write_addr())
		goto out;
	ev_nbd =
		event_new(base, lfd, EV_READ | EV_PERSIST, nbd_accept_cb, NULL);
	ev_term = evsignal_new(base, SIGTERM, signal_cb, base);
	ev_int = evsignal_new(base, SIGINT, signal_cb, base);
	if (!ev_nbd || !ev_term || !ev_int)
		goto out;
	event_add(ev_nbd, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	CELL_INFO(MOD, "serving NBD on %s, admin on %s, store %s, pid %d",
		  D.nbd_addr, D.admin_addr, D.cfg.store, (int)getpid());
	event_base_dispatch(base);
	rc = 0;
out:
	if (lfd >= 0)
		close(lfd);
	pthread_mutex_lock(&D.lock);
	if (D.nclients)
		CELL_INFO(MOD, "disconnecting %d clients", D.nclients);
	for (int i = 0; D.clients && i < D.cfg.max_clients; i++)
		if (D.clients[i].used)
			shutdown(D.clients[i].fd, SHUT_RDWR);
	while (D.nclients > 0)
		pthread_cond_wait(&D.idle, &D.lock);
	pthread_mutex_unlock(&D.lock);
	if (ev_nbd)
		event_free(ev_nbd);
	if (ev_term)
		event_free(ev_term);
	if (ev_int)
		event_free(ev_int);
	cell_rpc_listener_free(admin);
	event_base_free(base);
	free(D.clients);
	if (!rc)
		CELL_INFO(MOD, "stopped");
	return rc;
}

/* ---- offline administration ---- */

static json_t *info_json(const struct vdisk_info *i)
{
	return json_pack("{s:s, s:I, s:b, s:s, s:I, s:I, s:i}", "name", i->name,
			 "size", (json_int_t)i->size, "frozen", i->frozen,
			 "parent", i->parent, "data_bytes",
			 (json_int_t)i->data_bytes, "journal_bytes",
			 (json_int_t)i->journal_bytes, "chain_depth",
			 (int)i->chain_depth);
}

static void print_info(const struct vdisk_info *i, bool json)
{
	if (json) {
		json_t *j = info_json(i);

		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
		return;
	}
	printf("name:          %s\nsize:          %llu\nfrozen:        %s\n"
	       "parent:        %s\ndata bytes:    %llu\njournal bytes: %llu\n"
	       "chain depth:   %u\n",
	       i->name, (unsigned long long)i->size, i->frozen ? "yes" : "no",
	       i->parent[0] ? i->parent : "(none)",
	       (unsigned long long)i->data_bytes,
	       (unsigned long long)i->journal_bytes, i->chain_depth);
}

static int cmd_list(bool json)
{
	char **names, err[600];
	size_t n;
	json_t *arr = json ? json_array() : NULL;

	if (vdisk_list(D.cfg.store, &names, &n, err, sizeof(err))) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 1;
	}
	if (!json)
		printf("%-24s %14s %-7s %s\n", "NAME", "SIZE", "FROZEN",
		       "PARENT");
	for (size_t k = 0; k < n; k++) {
		struct vdisk_info i;

		if (vdisk_info(D.cfg.store, names[k], &i, err, sizeof(err)) ==
		    0) {
			if (json)
				json_array_append_new(arr, info_json(&i));
			else
				printf("%-24s %14llu %-7s %s\n", i.name,
				       (unsigned long long)i.size,
				       i.frozen ? "yes" : "no",
				       i.parent[0] ? i.parent : "-");
		} else {
			fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		}
		free(names[k]);
	}
	free(names);
	if (json) {
		json_dumpf(arr, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(arr);
	}
	return 0;
}

/* Offline commands. Exit codes as cellctl's: 0 done, 1 failed, 2 usage,
 * 4 not found, 5 exists or in use. */
static int admin(int argc, char **argv)
{
	char err[600], id[VDISK_ID_LEN + 1];
	bool json = false;
	int rc = -EINVAL;
	int64_t size;

	/* "-o json" anywhere */
	for (int i = 0; i + 1 < argc; i++) {
		if (strcmp(argv[i], "-o") == 0 &&
		    strcmp(argv[i + 1], "json") == 0) {
			json = true;
			memmove(argv + i, argv + i + 2,
				(size_t)(argc - i - 2) * sizeof(*argv));
			argc -= 2;
			break;
		}
	}
	err[0] = 0;
	if (vdisk_store_init(D.cfg.store, err, sizeof(err))) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 1;
	}
	if (argc == 3 && !strcmp(argv[0], "base") &&
	    !strcmp(argv[1], "import")) {
		rc = vdisk_base_import(D.cfg.store, argv[2], id, err,
				       sizeof(err));
		if (!rc)
			printf(json ? "{\"id\":\"%s\"}\n" : "%s\n", id);
	} else if ((argc == 4 || argc == 5) && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "create")) {
		if (cell_parse_size(argv[3], &size) || size < 0) {
			fprintf(stderr,
				"cellmon-vdiskd: bad size '%s' (e.g. 4096, "
				"64M, 2G)\n",
				argv[3]);
			return 2;
		}
		rc = vdisk_create(D.cfg.store, argv[2], (uint64_t)size,
				  argc == 5 ? argv[4] : NULL, err, sizeof(err));
	} else if (argc == 4 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "clone")) {
		rc = vdisk_clone(D.cfg.store, argv[2], argv[3], err,
				 sizeof(err));
	} else if (argc == 2 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "list")) {
		return cmd_list(json);
	} else if (argc == 3 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "info")) {
		struct vdisk_info i;

		rc = vdisk_info(D.cfg.store, argv[2], &i, err, sizeof(err));
		if (!rc)
			print_info(&i, json);
	} else if (argc == 3 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "delete")) {
		rc = vdisk_delete(D.cfg.store, argv[2], err, sizeof(err));
	} else {
		fprintf(stderr, "cellmon-vdiskd: unknown command (see "
				"--help)\n");
		return 2;
	}
	if (!rc)
		return 0;
	fprintf(stderr, "cellmon-vdiskd: %s\n", err[0] ? err : strerror(-rc));
	return rc == -ENOENT ? 4 : rc == -EEXIST || rc == -EBUSY ? 5 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cellmon-vdiskd [--config=FILE] [--key=value...]\n"
		"       cellmon-vdiskd [options] base import PATH\n"
		"       cellmon-vdiskd [options] disk create NAME SIZE "
		"[base:ID|disk:NAME]\n"
		"       cellmon-vdiskd [options] disk clone SRC NAME\n"
		"       cellmon-vdiskd [options] disk list|info NAME|delete "
		"NAME [-o json]\n"
		"       cellmon-vdiskd config show|example\n"
		"\n"
		"Without a command, serves the store's disks over NBD (export "
		"name =\n"
		"disk name). The disk and base commands work on the store "
		"directly:\n"
		"run them while no server has the disk open (with a server "
		"running,\n"
		"use cellctl disk ..., which goes through the manager and the "
		"server).\n"
		"Exit codes: 0 ok, 1 failed, 2 usage, 4 not found, 5 exists "
		"or in use.\n\nOptions:\n");
	cell_config_usage(vdiskd_config_table, f);
}

int main(int argc, char **argv)
{
	char err[600];
	int nrest = 0, rc;
	enum cell_log_level lvl;

	signal(SIGPIPE, SIG_IGN);
	if (cell_config_defaults(vdiskd_config_table, &D.cfg, err, sizeof(err)))
		abort();
	rc = cell_config_parse_args(vdiskd_config_table, &D.cfg, argc, argv,
				    &nrest, err, sizeof(err));
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 2;
	}
	if (cell_log_level_parse(D.cfg.log_level, &lvl) == 0)
		cell_log_set_level(lvl);
	if (nrest == 2 && !strcmp(argv[1], "config") &&
	    !strcmp(argv[2], "show")) {
		cell_config_show(vdiskd_config_table, &D.cfg, stdout);
		return 0;
	}
	if (nrest == 2 && !strcmp(argv[1], "config") &&
	    !strcmp(argv[2], "example")) {
		cell_config_example(vdiskd_config_table,
				    "cellmon-vdiskd configuration", stdout);
		return 0;
	}
	if (nrest > 0)
		return admin(nrest, argv + 1);
	return serve();
}
