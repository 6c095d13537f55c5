/*
 * Disks through the manager: cellctl's DISK_* requests go unchanged to
 * the disk server's admin address (config key vdiskd) on a connection of
 * their own, and the server's reply or error comes back to cellctl.
 * Nothing here blocks the manager's loop: connect and request are both
 * asynchronous, bounded by command_timeout.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "mgr_int.h"

#define MOD "mgr"

struct fwd {
	struct mgr *m;
	struct cell_rpc_call *call;
	struct cell_rpc_conn *conn; /* to the disk server */
	uint16_t type, reply_type;
	const ProtobufCMessageDescriptor *desc;
	uint8_t *req; /* packed request */
	size_t len;
};

static void fwd_free(struct fwd *f)
{
	free(f->req);
	free(f);
}

/* Trouble reaching the disk server is not trouble reaching the manager:
 * cellctl must not take it for that (its exit code 3). */
static int server_status(int status)
{
	switch (status) {
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENOTCONN:
	case -EPROTONOSUPPORT:
		return -EHOSTDOWN;
	default:
		return status;
	}
}

static void fwd_reply(int status, const ProtobufCMessage *reply,
		      const char *errmsg, void *arg)
{
	struct fwd *f = arg;

	if (status)
		cell_rpc_reply_error(f->call, server_status(status),
				     "disk server %s: %s", f->m->cfg.vdiskd,
				     errmsg);
	else
		cell_rpc_reply(f->call, f->reply_type, reply);
	cell_rpc_conn_close(f->conn); /* safe from its own callback */
	fwd_free(f);
}

static void fwd_connected(struct cell_rpc_conn *c, int status, void *arg)
{
	struct fwd *f = arg;
	ProtobufCMessage *req;
	int rc;

	if (status) {
		cell_rpc_reply_error(f->call, server_status(status),
				     "disk server %s unreachable: %s",
				     f->m->cfg.vdiskd, strerror(-status));
		fwd_free(f);
		return;
	}
	req = protobuf_c_message_unpack(f->desc, NULL, f->len, f->req);
	if (!req) {
		cell_rpc_reply_error(f->call, -ENOMEM, "out of memory");
		fwd_free(f);
		cell_rpc_conn_close(c);
		return;
	}
	f->conn = c;
	rc = cell_rpc_request(c, f->type, req, f->reply_type,
			      (unsigned)f->m->cfg.command_timeout_ms, fwd_reply,
			      f);
	protobuf_c_message_free_unpacked(req, NULL);
	if (rc) {
		cell_rpc_reply_error(f->call, rc, "disk server %s: %s",
				     f->m->cfg.vdiskd, strerror(-rc));
		cell_rpc_conn_close(c);
		fwd_free(f);
	}
}

static void forward(struct mgr *m, struct cell_rpc_call *call,
		    const ProtobufCMessage *msg, uint16_t type,
		    uint16_t reply_type)
{
	struct cell_rpc_conn *c;
	struct fwd *f;
	int rc;

	if (!m->cfg.vdiskd[0]) {
		cell_rpc_reply_error(call, -ENOTSUP,
				     "no disk server configured (manager "
				     "option vdiskd)");
		return;
	}
	f = calloc(1, sizeof(*f));
	if (f) {
		f->len = protobuf_c_message_get_packed_size(msg);
		f->req = malloc(f->len ? f->len : 1);
	}
	if (!f || !f->req) {
		if (f)
			fwd_free(f);
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		return;
	}
	protobuf_c_message_pack(msg, f->req);
	f->m = m;
	f->call = call;
	f->type = type;
	f->reply_type = reply_type;
	f->desc = msg->descriptor;
	rc = cell_rpc_connect(m->base, m->cfg.vdiskd, &m->disk_rpc,
			      (unsigned)m->cfg.command_timeout_ms,
			      fwd_connected, f, &c);
	if (rc) {
		cell_rpc_reply_error(call, rc, "disk server %s: %s",
				     m->cfg.vdiskd, strerror(-rc));
		fwd_free(f);
	}
}

#define FORWARD(fn, req, reply)                                          \
	void fn(struct cell_rpc_call *call, const ProtobufCMessage *msg, \
		void *arg)                                               \
	{                                                                \
		forward(arg, call, msg, CELLMON__MSG_TYPE__MSG_##req,    \
			CELLMON__MSG_TYPE__MSG_##reply);                 \
	}

FORWARD(mgr_disk_create, DISK_CREATE, DISK_REPLY)
FORWARD(mgr_disk_clone, DISK_CLONE, DISK_REPLY)
/* A disk that a running VM uses is not deleted (the disk server would
 * refuse too while the VM's agent is connected; this names the VM). */
void mgr_disk_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg)
{
	const Cellmon__DiskRequest *q = (const void *)msg;
	const char *vm = mgr_vm_disk_user(arg, q->name);

	if (vm) {
		cell_rpc_reply_error(
			call, -EBUSY,
			"disk %s is in use by vm %s; stop it first", q->name,
			vm);
		return;
	}
	forward(arg, call, msg, CELLMON__MSG_TYPE__MSG_DISK_DELETE,
		CELLMON__MSG_TYPE__MSG_DISK_REPLY);
}
FORWARD(mgr_disk_info, DISK_INFO, DISK_REPLY)
FORWARD(mgr_disk_list, DISK_LIST, DISK_LIST_REPLY)
