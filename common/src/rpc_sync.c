/*
 * cell_rpc_call_sync(): one request on its own connection and its own
 * event loop, for cellctl and tests. The reply is re-packed and unpacked
 * once more so the caller owns a copy that outlives the RPC callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/rpc.h"

struct sync_call {
	const char *hostport;
	uint16_t type, reply_type;
	const ProtobufCMessage *msg;
	unsigned timeout_ms;
	int done;
	int status;
	int conn_gone; /* a failed connect freed the connection */
	ProtobufCMessage *reply;
	char *err;
	size_t errlen;
};

static void sync_reply_cb(int status, const ProtobufCMessage *reply,
			  const char *errmsg, void *arg)
{
	struct sync_call *s = arg;
	size_t len;
	uint8_t *buf;

	s->done = 1;
	s->status = status;
	if (status) {
		snprintf(s->err, s->errlen, "%s", errmsg ? errmsg : "");
		return;
	}
	len = protobuf_c_message_get_packed_size(reply);
	buf = malloc(len ? len : 1);
	if (!buf) {
		s->status = -ENOMEM;
		snprintf(s->err, s->errlen, "out of memory");
		return;
	}
	protobuf_c_message_pack(reply, buf);
	s->reply = protobuf_c_message_unpack(reply->descriptor, NULL, len, buf);
	free(buf);
	if (!s->reply) {
		s->status = -ENOMEM;
		snprintf(s->err, s->errlen, "out of memory");
	}
}

/* The peer closed the connection (or it broke): it is freed once this
 * returns, so the caller must not close it again. */
static void sync_closed_cb(struct cell_rpc_conn *c, int reason, void *arg)
{
	struct sync_call *s = arg;

	(void)c;
	s->conn_gone = 1;
	if (!s->done) {
		s->done = 1;
		s->status = reason ? reason : -ECONNRESET;
		snprintf(s->err, s->errlen, "%s closed the connection",
			 s->hostport);
	}
}

static void sync_connect_cb(struct cell_rpc_conn *c, int status, void *arg)
{
	struct sync_call *s = arg;
	int rc;

	if (status) {
		s->done = 1;
		s->conn_gone = 1;
		s->status = status;
		if (cell_rpc_conn_error(c)[0])
			snprintf(s->err, s->errlen, "TLS with %s refused: %s",
				 s->hostport, cell_rpc_conn_error(c));
		else
			snprintf(s->err, s->errlen, "cannot reach %s: %s",
				 s->hostport, strerror(-status));
		return;
	}
	cell_rpc_conn_set_close_cb(c, sync_closed_cb, s);
	rc = cell_rpc_request(c, s->type, s->msg, s->reply_type, s->timeout_ms,
			      sync_reply_cb, s);
	if (rc) {
		s->done = 1;
		s->status = rc;
		snprintf(s->err, s->errlen, "cannot send to %s: %s",
			 s->hostport, strerror(-rc));
	}
}

int cell_rpc_call_sync(const char *hostport, const struct cell_rpc_config *cfg,
		       uint16_t type, const ProtobufCMessage *msg,
		       uint16_t reply_type, unsigned timeout_ms,
		       ProtobufCMessage **reply, char *err, size_t errlen)
{
	struct sync_call s = {.hostport = hostport,
			      .type = type,
			      .reply_type = reply_type,
			      .msg = msg,
			      .timeout_ms = timeout_ms,
			      .err = err,
			      .errlen = errlen};
	struct event_base *base = event_base_new();
	struct cell_rpc_conn *c = NULL;
	int rc;

	*reply = NULL;
	if (!base) {
		snprintf(err, errlen, "cannot create event loop");
		return -ENOMEM;
	}
	rc = cell_rpc_connect(base, hostport, cfg, timeout_ms, sync_connect_cb,
			      &s, &c);
	if (rc) {
		snprintf(err, errlen, "cannot reach %s: %s", hostport,
			 rc == -EINVAL ? "not a host:port address"
				       : strerror(-rc));
		event_base_free(base);
		return rc;
	}
	while (!s.done)
		event_base_loop(base, EVLOOP_ONCE);
	if (!s.conn_gone)
		cell_rpc_conn_close(c);
	event_base_free(base);
	*reply = s.reply;
	return s.status;
}
