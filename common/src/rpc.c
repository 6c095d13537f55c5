/*
 * The RPC layer of cell/rpc.h: frames on libevent bufferevents, a request
 * table per connection matched by id, and a method table per daemon.
 *
 * Data model: a connection owns its bufferevent, the list of requests it
 * sent that await replies (struct pending, each with its own timer) and
 * the list of incoming calls not answered yet. Teardown fails every pending
 * request and detaches every call, so nothing dangles after a close.
 *
 * Re-entrancy: user callbacks may close the connection they run on. While
 * this file runs callbacks for a connection it holds c->busy; a close during
 * that time only marks the connection, and the memory (connection and
 * bufferevent) is released when the outermost callback returns.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cell/frame.h"
#include "cell/log.h"
#include "cell/net.h"
#include "cell/rpc.h"
#include "cell/tls.h"

struct pending {
	TAILQ_ENTRY(pending) link;
	struct cell_rpc_conn *conn;
	struct event *timer;
	uint32_t id;
	uint16_t type;
	uint16_t reply_type;
	unsigned timeout_ms;
	cell_rpc_reply_fn cb;
	void *arg;
};

struct cell_rpc_call {
	TAILQ_ENTRY(cell_rpc_call) link;
	struct cell_rpc_conn *conn; /* NULL once the connection closed */
	uint32_t id;
	uint16_t type;
	cell_rpc_reply_fn local; /* cell_rpc_call_local: where replies go */
	void *local_arg;
};

struct cell_rpc_conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct cell_rpc_config cfg;
	char peer[80];
	uint32_t next_id;
	TAILQ_HEAD(, pending) pending;
	TAILQ_HEAD(, cell_rpc_call) calls;
	cell_rpc_close_fn close_cb;
	void *close_arg;
	cell_rpc_connect_fn connect_cb;
	void *connect_arg;
	struct event *connect_timer;
	void *data;
	int busy;	 /* callbacks of ours running on this connection */
	int closed;	 /* torn down; freed when busy drops to 0 */
	int draining;	 /* closing once the output buffer is written */
	int fail_reason; /* reason reported when a drain finishes */
	/* TLS: the SSL (owned by bev), the peer's identity once the
	 * handshake is done, and why it failed */
	SSL *ssl;
	int peer_role;
	char peer_name[64];
	char tls_error[300];
};

struct cell_rpc_listener {
	struct evconnlistener *lev;
	struct event_base *base;
	const struct cell_rpc_config *cfg;
	cell_rpc_accept_fn cb;
	void *arg;
};

const char *const cell_rpc_error_names[CELL_RPC_ERR_KINDS] = {
	[CELL_RPC_ERR_UNKNOWN_TYPE] = "unknown-type",
	[CELL_RPC_ERR_UNDECODABLE] = "undecodable",
	[CELL_RPC_ERR_BAD_FRAME] = "bad-frame",
	[CELL_RPC_ERR_TIMEOUT] = "timeout",
	[CELL_RPC_ERR_CONN_LOST] = "connection-lost",
	[CELL_RPC_ERR_CONNECT] = "connect",
	[CELL_RPC_ERR_REPLY_SENT] = "error-replied",
	[CELL_RPC_ERR_REPLY_GOT] = "error-received",
	[CELL_RPC_ERR_TLS] = "tls",
};

static uint64_t rpc_errors[CELL_RPC_ERR_KINDS];

static void count_error(enum cell_rpc_error_kind k)
{
	__atomic_fetch_add(&rpc_errors[k], 1, __ATOMIC_RELAXED);
}

void cell_rpc_errors(uint64_t out[CELL_RPC_ERR_KINDS])
{
	for (int k = 0; k < CELL_RPC_ERR_KINDS; k++)
		out[k] = __atomic_load_n(&rpc_errors[k], __ATOMIC_RELAXED);
}

static const char *mod(const struct cell_rpc_conn *c)
{
	return c->cfg.log_module ? c->cfg.log_module : "rpc";
}

static uint32_t max_frame(const struct cell_rpc_conn *c)
{
	return c->cfg.max_frame ? c->cfg.max_frame : CELL_FRAME_MAX_DEFAULT;
}

static const struct cell_rpc_msgtype *find_type(const struct cell_rpc_conn *c,
						uint16_t type)
{
	for (const struct cell_rpc_msgtype *t = c->cfg.types; t && t->desc;
	     t++) {
		if (t->type == type)
			return t;
	}
	return NULL;
}

static const struct cell_rpc_method *find_method(const struct cell_rpc_conn *c,
						 uint16_t type)
{
	for (const struct cell_rpc_method *m = c->cfg.methods; m && m->fn;
	     m++) {
		if (m->type == type)
			return m;
	}
	return NULL;
}

static void conn_release(struct cell_rpc_conn *c)
{
	if (!c->closed || c->busy)
		return;
	if (c->bev)
		bufferevent_free(c->bev);
	free(c);
}

/* Tears the connection down once; `notify` runs the owner's close callback. */
static void conn_teardown(struct cell_rpc_conn *c, int reason, int notify)
{
	struct pending *p;
	struct cell_rpc_call *call;
	char why[400] = "connection closed";

	if (c->closed)
		return;
	c->closed = 1;
	c->busy++;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	if (c->connect_timer) {
		event_free(c->connect_timer);
		c->connect_timer = NULL;
	}
	while ((call = TAILQ_FIRST(&c->calls))) {
		TAILQ_REMOVE(&c->calls, call, link);
		call->conn = NULL;
	}
	if (c->tls_error[0])
		snprintf(why, sizeof(why), "TLS with %s refused: %s", c->peer,
			 c->tls_error);
	while ((p = TAILQ_FIRST(&c->pending))) {
		TAILQ_REMOVE(&c->pending, p, link);
		event_free(p->timer);
		count_error(CELL_RPC_ERR_CONN_LOST);
		p->cb(c->tls_error[0] ? -EACCES : -ECONNRESET, NULL, why,
		      p->arg);
		free(p);
	}
	if (notify && c->close_cb)
		c->close_cb(c, reason, c->close_arg);
	c->busy--;
}

void cell_rpc_conn_close(struct cell_rpc_conn *c)
{
	if (!c)
		return;
	conn_teardown(c, 0, 0);
	conn_release(c);
}

/* Queues one frame. msg (protobuf) or raw bytes form the payload. */
static int send_frame(struct cell_rpc_conn *c, uint16_t type, uint8_t flags,
		      uint32_t id, const ProtobufCMessage *msg,
		      const uint8_t *raw, size_t rawlen)
{
	struct evbuffer *out;
	struct evbuffer_iovec iov;
	struct cell_frame_hdr h = {CELL_FRAME_VERSION, flags, type, id, 0};
	size_t len = msg ? protobuf_c_message_get_packed_size(msg) : rawlen;

	if (c->closed)
		return -ENOTCONN;
	if (len > max_frame(c))
		return -EMSGSIZE;
	h.len = (uint32_t)len;
	out = bufferevent_get_output(c->bev);
	if (evbuffer_reserve_space(out, CELL_FRAME_HDR_LEN + len, &iov, 1) < 1)
		return -ENOMEM;
	cell_frame_hdr_pack(&h, iov.iov_base);
	if (msg)
		protobuf_c_message_pack(msg, (uint8_t *)iov.iov_base +
						     CELL_FRAME_HDR_LEN);
	else if (rawlen)
		memcpy((uint8_t *)iov.iov_base + CELL_FRAME_HDR_LEN, raw,
		       rawlen);
	iov.iov_len = CELL_FRAME_HDR_LEN + len;
	if (evbuffer_commit_space(out, &iov, 1) < 0)
		return -ENOMEM;
	return 0;
}

static void send_error(struct cell_rpc_conn *c, uint32_t id, uint16_t type,
		       int err, const char *msg)
{
	uint8_t buf[4 + CELL_FRAME_ERRMSG_MAX];
	size_t n = cell_frame_error_pack(err, msg, buf);

	send_frame(c, type, CELL_FRAME_REPLY | CELL_FRAME_ERROR, id, NULL, buf,
		   n);
}

static void drained_cb(struct bufferevent *bev, void *arg)
{
	struct cell_rpc_conn *c = arg;

	(void)bev;
	conn_teardown(c, c->fail_reason, 1);
	conn_release(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg);

/* Stops reading, lets queued output (an error reply) go out, then closes. */
static void conn_fail(struct cell_rpc_conn *c, int reason)
{
	struct timeval tv = {1, 0};

	if (c->draining || c->closed)
		return;
	c->draining = 1;
	c->fail_reason = reason;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		conn_teardown(c, reason, 1);
		return;
	}
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_setcb(c->bev, NULL, drained_cb, event_cb, c);
}

static void handle_request(struct cell_rpc_conn *c,
			   const struct cell_frame_hdr *h,
			   const uint8_t *payload)
{
	const struct cell_rpc_method *m = find_method(c, h->type);
	const struct cell_rpc_msgtype *t = find_type(c, h->type);
	ProtobufCMessage *req;
	struct cell_rpc_call *call;
	char msg[400];

	/* over TLS a request arrives only after the handshake: without a
	 * role, the peer is one tls_peer_refused turned away */
	if (c->ssl && !c->peer_role) {
		snprintf(msg, sizeof(msg), "refused: %s",
			 c->tls_error[0] ? c->tls_error : "no TLS identity");
		send_error(c, h->id, h->type, EACCES, msg);
		conn_fail(c, -EACCES);
		return;
	}

	if (!m || !t) {
		CELL_LOG_RL(CELL_LOG_WARN, mod(c),
			    "unknown request type=%u peer=%s", h->type,
			    c->peer);
		count_error(CELL_RPC_ERR_UNKNOWN_TYPE);
		snprintf(msg, sizeof(msg), "unknown message type %u", h->type);
		send_error(c, h->id, h->type, ENOSYS, msg);
		return;
	}
	req = protobuf_c_message_unpack(t->desc, NULL, h->len, payload);
	if (!req) {
		CELL_LOG_RL(CELL_LOG_WARN, mod(c),
			    "undecodable payload type=%s len=%u peer=%s",
			    t->name, h->len, c->peer);
		count_error(CELL_RPC_ERR_UNDECODABLE);
		snprintf(msg, sizeof(msg), "cannot decode %s payload", t->name);
		send_error(c, h->id, h->type, EBADMSG, msg);
		return;
	}
	call = calloc(1, sizeof(*call));
	if (!call) {
		send_error(c, h->id, h->type, ENOMEM, "out of memory");
		protobuf_c_message_free_unpacked(req, NULL);
		return;
	}
	call->conn = c;
	call->id = h->id;
	call->type = h->type;
	TAILQ_INSERT_TAIL(&c->calls, call, link);
	m->fn(call, req, c->cfg.arg);
	protobuf_c_message_free_unpacked(req, NULL);
}

static struct pending *take_pending(struct cell_rpc_conn *c, uint32_t id)
{
	struct pending *p;

	TAILQ_FOREACH(p, &c->pending, link)
	{
		if (p->id == id) {
			TAILQ_REMOVE(&c->pending, p, link);
			event_free(p->timer);
			return p;
		}
	}
	return NULL;
}

static void handle_reply(struct cell_rpc_conn *c,
			 const struct cell_frame_hdr *h, const uint8_t *payload)
{
	struct pending *p = take_pending(c, h->id);
	const struct cell_rpc_msgtype *t;
	ProtobufCMessage *reply;
	char msg[CELL_FRAME_ERRMSG_MAX + 1];
	int code;

	if (!p) {
		/* Usually a reply that arrived after its request timed out. */
		CELL_LOG_RL(CELL_LOG_DEBUG, mod(c),
			    "reply for unknown request id=%u type=%u peer=%s",
			    h->id, h->type, c->peer);
		return;
	}
	if (h->flags & CELL_FRAME_ERROR) {
		code = cell_frame_error_unpack(payload, h->len, msg,
					       sizeof(msg));
		count_error(CELL_RPC_ERR_REPLY_GOT);
		p->cb(-code, NULL, msg, p->arg);
	} else if (h->type != p->reply_type || !(t = find_type(c, h->type))) {
		snprintf(msg, sizeof(msg), "expected reply type %u, got %u",
			 p->reply_type, h->type);
		p->cb(-EPROTO, NULL, msg, p->arg);
	} else if (!(reply = protobuf_c_message_unpack(t->desc, NULL, h->len,
						       payload))) {
		count_error(CELL_RPC_ERR_UNDECODABLE);
		snprintf(msg, sizeof(msg), "cannot decode %s reply", t->name);
		p->cb(-EBADMSG, NULL, msg, p->arg);
	} else {
		p->cb(0, reply, NULL, p->arg);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	free(p);
}

/* A header we cannot accept: answer when we can, then close. */
static void stream_error(struct cell_rpc_conn *c, int rc,
			 const struct cell_frame_hdr *h)
{
	char msg[128];

	switch (rc) {
	case -EMSGSIZE:
		snprintf(msg, sizeof(msg),
			 "frame of %u bytes exceeds the cap of %u", h->len,
			 max_frame(c));
		break;
	case -EPROTONOSUPPORT:
		snprintf(msg, sizeof(msg),
			 "frame version %u not supported (speaks %u)",
			 h->version, CELL_FRAME_VERSION);
		break;
	default:
		snprintf(msg, sizeof(msg), "malformed frame header");
		break;
	}
	count_error(CELL_RPC_ERR_BAD_FRAME);
	CELL_LOG_RL(CELL_LOG_WARN, mod(c), "closing connection: %s peer=%s",
		    msg, c->peer);
	if (rc != -EBADMSG && !(h->flags & CELL_FRAME_REPLY))
		send_error(c, h->id, h->type, -rc, msg);
	conn_fail(c, rc);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct cell_rpc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[CELL_FRAME_HDR_LEN], *frame;
	struct cell_frame_hdr h;
	int rc;

	c->busy++;
	while (!c->closed && !c->draining &&
	       evbuffer_get_length(in) >= CELL_FRAME_HDR_LEN) {
		evbuffer_copyout(in, hdr, sizeof(hdr));
		rc = cell_frame_hdr_unpack(hdr, max_frame(c), &h);
		if (rc) {
			stream_error(c, rc, &h);
			break;
		}
		if (evbuffer_get_length(in) < CELL_FRAME_HDR_LEN + h.len)
			break;
		frame = evbuffer_pullup(in, CELL_FRAME_HDR_LEN + h.len);
		if (!frame) {
			conn_fail(c, -ENOMEM);
			break;
		}
		if (h.flags & CELL_FRAME_REPLY)
			handle_reply(c, &h, frame + CELL_FRAME_HDR_LEN);
		else
			handle_request(c, &h, frame + CELL_FRAME_HDR_LEN);
		if (c->closed)
			break;
		evbuffer_drain(in, CELL_FRAME_HDR_LEN + h.len);
	}
	c->busy--;
	conn_release(c);
}

static void set_nodelay(struct bufferevent *bev)
{
	int one = 1;
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void connect_done(struct cell_rpc_conn *c, int status)
{
	cell_rpc_connect_fn cb = c->connect_cb;

	c->connect_cb = NULL;
	if (c->connect_timer) {
		event_free(c->connect_timer);
		c->connect_timer = NULL;
	}
	c->busy++;
	if (status) {
		count_error(CELL_RPC_ERR_CONNECT);
		conn_teardown(c, status, 0);
	} else
		set_nodelay(c->bev);
	if (cb)
		cb(c, status, c->connect_arg);
	c->busy--;
	conn_release(c);
}

/* The handshake failed: what OpenSSL said, logged on the accepting
 * side (a stranger at the door), kept for the connecting one. */
static void tls_failed(struct cell_rpc_conn *c, int sock_err)
{
	unsigned long e;
	size_t off = 0;

	while ((e = bufferevent_get_openssl_error(c->bev)) &&
	       off + 2 < sizeof(c->tls_error)) {
		/* libevent files SSL_get_error's code itself (library 0):
		 * not OpenSSL's word on anything */
		if (!ERR_GET_LIB(e))
			continue;
		if (off)
			c->tls_error[off++] = ';', c->tls_error[off++] = ' ';
		ERR_error_string_n(e, c->tls_error + off,
				   sizeof(c->tls_error) - off);
		off = strlen(c->tls_error);
	}
	if (c->peer_role) {
		/* after the handshake: an error of the link, not a refusal
		 * (kept for the messages of what was pending) */
		return;
	}
	if (!off && sock_err && SSL_get_verify_result(c->ssl) == X509_V_OK) {
		/* the socket failed (a refused or lost TCP connection):
		 * not a TLS matter */
		c->tls_error[0] = '\0';
		return;
	}
	if (!off) {
		long v = SSL_get_verify_result(c->ssl);

		snprintf(c->tls_error, sizeof(c->tls_error), "%s",
			 v != X509_V_OK ? X509_verify_cert_error_string(v)
					: "the TLS handshake failed");
	}
	count_error(CELL_RPC_ERR_TLS);
	if (!c->connect_cb)
		CELL_LOG_RL(CELL_LOG_WARN, mod(c),
			    "refused a TLS connection from %s: %s", c->peer,
			    c->tls_error);
}

/* Handshake done: the peer's certificate verified; its role must be one
 * this end accepts. 1 (and the connection is closed) when it is not. */
static int tls_peer_refused(struct cell_rpc_conn *c)
{
	enum cell_role role;
	char why[200];

	if (!cell_tls_check_peer(c->cfg.tls, c->ssl, &role, c->peer_name,
				 sizeof(c->peer_name), why, sizeof(why))) {
		c->peer_role = (int)role;
		return 0;
	}
	count_error(CELL_RPC_ERR_TLS);
	snprintf(c->tls_error, sizeof(c->tls_error), "%s", why);
	c->peer_name[0] = '\0';
	if (c->connect_cb) {
		connect_done(c, -EACCES);
		return 1;
	}
	/* the accepting side: its first request is answered with why,
	 * then the connection closes (handle_request); nothing else is
	 * read from it */
	CELL_LOG_RL(CELL_LOG_WARN, mod(c), "refused a TLS peer %s: %s", c->peer,
		    why);
	return 1;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cell_rpc_conn *c = arg;
	size_t left = evbuffer_get_length(bufferevent_get_input(bev));
	int err = EVUTIL_SOCKET_ERROR();
	int reason;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->ssl && tls_peer_refused(c))
			return;
		connect_done(c, 0);
		return;
	}
	/* during the handshake, or (TLS 1.3) the server's verdict on our
	 * certificate, which comes after it */
	if (c->ssl && (what & BEV_EVENT_ERROR) && !c->tls_error[0])
		tls_failed(c, err);
	if (c->connect_cb) {
		connect_done(c, (what & BEV_EVENT_TIMEOUT) ? -ETIMEDOUT
				: c->tls_error[0]	   ? -EACCES
				: err			   ? -err
							   : -ECONNREFUSED);
		return;
	}
	if (c->draining) {
		reason = c->fail_reason;
	} else if (what & BEV_EVENT_EOF) {
		reason = 0;
	} else if (what & BEV_EVENT_TIMEOUT) {
		reason = -ETIMEDOUT;
	} else {
		reason = err ? -err : -ECONNRESET;
	}
	if (left && !c->draining)
		CELL_LOG_RL(CELL_LOG_WARN, mod(c),
			    "peer closed mid-frame peer=%s discarded=%zu",
			    c->peer, left);
	conn_teardown(c, reason, 1);
	conn_release(c);
}

static struct cell_rpc_conn *conn_new(struct event_base *base,
				      struct bufferevent *bev,
				      const struct cell_rpc_config *cfg)
{
	struct cell_rpc_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base = base;
	c->bev = bev;
	c->cfg = *cfg;
	c->next_id = 1;
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->calls);
	bufferevent_setcb(bev, read_cb, NULL, event_cb, c);
	return c;
}

int cell_rpc_conn_create(struct event_base *base, int fd,
			 const struct cell_rpc_config *cfg,
			 struct cell_rpc_conn **out)
{
	struct bufferevent *bev;
	struct cell_rpc_conn *c;

	SSL *ssl = NULL;

	evutil_make_socket_nonblocking(fd);
	if (cfg->tls) {
		ssl = cell_tls_ssl(cfg->tls, true);
		bev = ssl ? bufferevent_openssl_socket_new(
				    base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
				    BEV_OPT_CLOSE_ON_FREE)
			  : NULL;
		if (!bev)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!bev)
		return -ENOMEM;
	c = conn_new(base, bev, cfg);
	if (!c) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	cell_fd_peer(fd, c->peer, sizeof(c->peer));
	c->ssl = ssl;
	set_nodelay(bev);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	*out = c;
	return 0;
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_done(arg, -ETIMEDOUT);
}

int cell_rpc_connect(struct event_base *base, const char *hostport,
		     const struct cell_rpc_config *cfg, unsigned timeout_ms,
		     cell_rpc_connect_fn cb, void *arg,
		     struct cell_rpc_conn **out)
{
	struct sockaddr_storage ss;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	struct bufferevent *bev;
	struct cell_rpc_conn *c;
	int sl, rc;

	rc = cell_parse_hostport(hostport, &ss, &sl);
	if (rc)
		return rc;
	SSL *ssl = NULL;

	if (cfg->tls) {
		ssl = cell_tls_ssl(cfg->tls, false);
		bev = ssl ? bufferevent_openssl_socket_new(
				    base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
				    BEV_OPT_CLOSE_ON_FREE)
			  : NULL;
		if (!bev)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!bev)
		return -ENOMEM;
	c = conn_new(base, bev, cfg);
	if (!c) {
		bufferevent_free(bev);
		return -ENOMEM;
	}
	c->ssl = ssl;
	snprintf(c->peer, sizeof(c->peer), "%s", hostport);
	c->connect_cb = cb;
	c->connect_arg = arg;
	c->connect_timer = evtimer_new(base, connect_timeout_cb, c);
	if (!c->connect_timer ||
	    bufferevent_socket_connect(bev, (struct sockaddr *)&ss, sl) < 0) {
		rc = EVUTIL_SOCKET_ERROR() ? -EVUTIL_SOCKET_ERROR() : -EIO;
		if (c->connect_timer)
			event_free(c->connect_timer);
		bufferevent_free(bev);
		free(c);
		return rc;
	}
	evtimer_add(c->connect_timer, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	*out = c;
	return 0;
}

void cell_rpc_conn_set_close_cb(struct cell_rpc_conn *c, cell_rpc_close_fn cb,
				void *arg)
{
	c->close_cb = cb;
	c->close_arg = arg;
}

void cell_rpc_conn_set_data(struct cell_rpc_conn *c, void *data)
{
	c->data = data;
}

void *cell_rpc_conn_data(const struct cell_rpc_conn *c)
{
	return c->data;
}

int cell_rpc_conn_local_ip(const struct cell_rpc_conn *c, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	const void *a;

	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -ENOTCONN;
	if (ss.ss_family == AF_INET6)
		a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
	else
		a = &((struct sockaddr_in *)&ss)->sin_addr;
	if (!inet_ntop(ss.ss_family, a, out, (socklen_t)len))
		return -errno;
	return 0;
}

const char *cell_rpc_conn_peer(const struct cell_rpc_conn *c)
{
	return c->peer;
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct cell_rpc_conn *c = p->conn;
	char msg[160];

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&c->pending, p, link);
	event_free(p->timer);
	snprintf(msg, sizeof(msg), "no reply from %s within %u ms", c->peer,
		 p->timeout_ms);
	c->busy++;
	count_error(CELL_RPC_ERR_TIMEOUT);
	p->cb(-ETIMEDOUT, NULL, msg, p->arg);
	free(p);
	c->busy--;
	conn_release(c);
}

int cell_rpc_request(struct cell_rpc_conn *c, uint16_t type,
		     const ProtobufCMessage *msg, uint16_t reply_type,
		     unsigned timeout_ms, cell_rpc_reply_fn cb, void *arg)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	struct pending *p;
	int rc;

	if (c->closed || c->draining)
		return -ENOTCONN;
	if (timeout_ms == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->timer = evtimer_new(c->base, pending_timeout_cb, p);
	if (!p->timer) {
		free(p);
		return -ENOMEM;
	}
	p->conn = c;
	p->id = c->next_id++;
	if (c->next_id == 0)
		c->next_id = 1;
	p->type = type;
	p->reply_type = reply_type;
	p->timeout_ms = timeout_ms;
	p->cb = cb;
	p->arg = arg;
	rc = send_frame(c, type, 0, p->id, msg, NULL, 0);
	if (rc) {
		event_free(p->timer);
		free(p);
		return rc;
	}
	evtimer_add(p->timer, &tv);
	TAILQ_INSERT_TAIL(&c->pending, p, link);
	return 0;
}

static void call_free(struct cell_rpc_call *call)
{
	if (call->conn)
		TAILQ_REMOVE(&call->conn->calls, call, link);
	free(call);
}

void cell_rpc_reply(struct cell_rpc_call *call, uint16_t type,
		    const ProtobufCMessage *msg)
{
	struct cell_rpc_conn *c = call->conn;
	int rc;

	if (call->local)
		call->local(0, msg, NULL, call->local_arg);
	else if (c) {
		rc = send_frame(c, type, CELL_FRAME_REPLY, call->id, msg, NULL,
				0);
		if (rc == -EMSGSIZE)
			send_error(c, call->id, call->type, EMSGSIZE,
				   "reply exceeds the frame cap");
	}
	call_free(call);
}

void cell_rpc_reply_error(struct cell_rpc_call *call, int err, const char *fmt,
			  ...)
{
	char msg[CELL_FRAME_ERRMSG_MAX];
	va_list ap;

	if (call->conn || call->local) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (call->local)
		call->local(err < 0 ? err : -err, NULL, msg, call->local_arg);
	else if (call->conn) {
		count_error(CELL_RPC_ERR_REPLY_SENT);
		send_error(call->conn, call->id, call->type, err, msg);
	}
	call_free(call);
}

int cell_rpc_call_local(const struct cell_rpc_method *methods, uint16_t type,
			const ProtobufCMessage *req, void *arg,
			cell_rpc_reply_fn done, void *done_arg)
{
	const struct cell_rpc_method *m = methods;
	struct cell_rpc_call *call;

	while (m && m->fn && m->type != type)
		m++;
	if (!m || !m->fn)
		return -ENOSYS;
	call = calloc(1, sizeof(*call));
	if (!call)
		return -ENOMEM;
	call->type = type;
	call->local = done;
	call->local_arg = done_arg;
	m->fn(call, req, arg);
	return 0;
}

int cell_rpc_conn_peer_role(const struct cell_rpc_conn *c)
{
	return c->peer_role;
}

const char *cell_rpc_conn_peer_name(const struct cell_rpc_conn *c)
{
	return c->peer_name;
}

const char *cell_rpc_conn_error(const struct cell_rpc_conn *c)
{
	return c->tls_error;
}

struct cell_rpc_conn *cell_rpc_call_conn(const struct cell_rpc_call *call)
{
	return call->conn;
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	struct cell_rpc_listener *l = arg;
	struct cell_rpc_conn *c;
	int rc;

	(void)lev;
	(void)sa;
	(void)salen;
	rc = cell_rpc_conn_create(l->base, fd, l->cfg, &c);
	if (rc) {
		CELL_LOG_RL(CELL_LOG_ERROR, l->cfg->log_module,
			    "cannot accept connection: %s", strerror(-rc));
		evutil_closesocket(fd);
		return;
	}
	l->cb(c, l->arg);
}

int cell_rpc_listen(struct event_base *base, const char *hostport,
		    const struct cell_rpc_config *cfg, cell_rpc_accept_fn cb,
		    void *arg, struct cell_rpc_listener **out)
{
	struct sockaddr_storage ss;
	struct cell_rpc_listener *l;
	int sl, rc = cell_parse_hostport(hostport, &ss, &sl);

	if (rc)
		return rc;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base = base;
	l->cfg = cfg;
	l->cb = cb;
	l->arg = arg;
	l->lev = evconnlistener_new_bind(base, accept_cb, l,
					 LEV_OPT_CLOSE_ON_FREE |
						 LEV_OPT_REUSEABLE |
						 LEV_OPT_CLOSE_ON_EXEC,
					 128, (struct sockaddr *)&ss, sl);
	if (!l->lev) {
		rc = EVUTIL_SOCKET_ERROR() ? -EVUTIL_SOCKET_ERROR() : -EIO;
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int cell_socket_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int cell_rpc_listener_port(const struct cell_rpc_listener *l)
{
	return cell_socket_port(evconnlistener_get_fd(l->lev));
}

void cell_hostport_bound(const char *hostport, int port, char *out, size_t len)
{
	const char *colon = strrchr(hostport, ':');
	int hl = colon ? (int)(colon - hostport) : (int)strlen(hostport);

	snprintf(out, len, "%.*s:%d", hl, hostport, port);
}

void cell_rpc_listener_free(struct cell_rpc_listener *l)
{
	if (!l)
		return;
	evconnlistener_free(l->lev);
	free(l);
}
