/*
 * Request/reply RPC over framed TCP connections, on a libevent loop.
 *
 * Both ends of a connection may send requests: the manager answers the
 * agents' Register and Heartbeat and sends them Commands over the same
 * connection. A side answers the request types listed in its method table
 * (struct cell_rpc_method); the message registry (struct cell_rpc_msgtype)
 * maps every type number to its protobuf-c descriptor so this layer can
 * unpack payloads without knowing any schema.
 *
 * Rules a user can rely on:
 * - Every outgoing request has a timeout. Its callback runs exactly once:
 *   with the reply, with the peer's error, with -ETIMEDOUT, or with
 *   -ECONNRESET when the connection goes away first. If cell_rpc_request()
 *   returns an error the callback never runs.
 * - A handler receives a call object and must answer it exactly once with
 *   cell_rpc_reply() or cell_rpc_reply_error(), now or later. If the
 *   connection closes first, the late answer is dropped and the call freed.
 *   The unpacked request is freed when the handler returns.
 * - Bad input never takes the process down: a bad magic or an oversize or
 *   other-version header closes that connection (with an error reply when
 *   the header is readable); an unknown request type or an undecodable
 *   payload gets an error reply and a rate-limited log line, and the
 *   connection carries on.
 *
 * Threads: a connection and everything on it belong to the thread running
 * its event_base. Callbacks may close the connection they run on.
 */
#ifndef CELL_RPC_H
#define CELL_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>

struct cell_rpc_conn;
struct cell_rpc_call;
struct cell_rpc_listener;

struct cell_rpc_msgtype {
	uint16_t type;
	const char *name;
	const ProtobufCMessageDescriptor *desc;
};

/* Runs for each incoming request of its type; `req` is already unpacked
 * and valid until the handler returns. */
typedef void (*cell_rpc_handler_fn)(struct cell_rpc_call *call,
				    const ProtobufCMessage *req, void *arg);

struct cell_rpc_method {
	uint16_t type;
	cell_rpc_handler_fn fn;
};

struct cell_rpc_config {
	/* Registry of every message type; ends with a NULL desc. */
	const struct cell_rpc_msgtype *types;
	/* Requests this side answers; ends with a NULL fn. May be NULL. */
	const struct cell_rpc_method *methods;
	/* Passed to the handlers. */
	void *arg;
	/* Largest payload accepted; 0 means CELL_FRAME_MAX_DEFAULT. */
	uint32_t max_frame;
	/* Log module name, e.g. "mgr" or "agent". */
	const char *log_module;
	/* Mutual TLS (cell/tls.h) on every connection made or accepted with
	 * this config; NULL: plain TCP. A peer whose certificate the CA
	 * did not sign, that is revoked, or whose role the tls does not
	 * accept is refused at the handshake (connect callbacks see
	 * -EACCES, cell_rpc_conn_error says why). */
	struct cell_tls *tls;
};

/* status 0 with the reply, or -errno with reply NULL and errmsg set. */
typedef void (*cell_rpc_reply_fn)(int status, const ProtobufCMessage *reply,
				  const char *errmsg, void *arg);
/* Called when the peer or the network closes the connection (reason is
 * -errno, 0 for an orderly EOF); never called for cell_rpc_conn_close().
 * The connection is freed right after the callback returns. */
typedef void (*cell_rpc_close_fn)(struct cell_rpc_conn *c, int reason,
				  void *arg);
/* Outcome of cell_rpc_connect(): 0, or -errno after which c is freed when
 * the callback returns. */
typedef void (*cell_rpc_connect_fn)(struct cell_rpc_conn *c, int status,
				    void *arg);
typedef void (*cell_rpc_accept_fn)(struct cell_rpc_conn *c, void *arg);

/* Wraps a connected socket (which the connection then owns). */
int cell_rpc_conn_create(struct event_base *base, int fd,
			 const struct cell_rpc_config *cfg,
			 struct cell_rpc_conn **out);

/* Starts a non-blocking connect to "host:port" ("[v6]:port" too). */
int cell_rpc_connect(struct event_base *base, const char *hostport,
		     const struct cell_rpc_config *cfg, unsigned timeout_ms,
		     cell_rpc_connect_fn cb, void *arg,
		     struct cell_rpc_conn **out);

/* Fails pending requests with -ECONNRESET and frees the connection (at
 * once, or when the callback running on it returns). NULL is a no-op. */
void cell_rpc_conn_close(struct cell_rpc_conn *c);

void cell_rpc_conn_set_close_cb(struct cell_rpc_conn *c, cell_rpc_close_fn cb,
				void *arg);
/* One user pointer per connection, for the owner's bookkeeping. */
void cell_rpc_conn_set_data(struct cell_rpc_conn *c, void *data);
void *cell_rpc_conn_data(const struct cell_rpc_conn *c);
/* The local IP address of a connected socket, without the port.
 * 0 or -errno. */
int cell_rpc_conn_local_ip(const struct cell_rpc_conn *c, char *out,
			   size_t len);
/* "addr:port" of the peer, for logs. */
const char *cell_rpc_conn_peer(const struct cell_rpc_conn *c);
/* Over TLS, once connected: the role and name of the peer's
 * certificate (CELL_ROLE_NONE and "" on a plain connection). */
int cell_rpc_conn_peer_role(const struct cell_rpc_conn *c);
const char *cell_rpc_conn_peer_name(const struct cell_rpc_conn *c);
/* Why the connection failed at the TLS handshake, "" if it did not. */
const char *cell_rpc_conn_error(const struct cell_rpc_conn *c);

int cell_rpc_request(struct cell_rpc_conn *c, uint16_t type,
		     const ProtobufCMessage *msg, uint16_t reply_type,
		     unsigned timeout_ms, cell_rpc_reply_fn cb, void *arg);

/* Answers a call; consumes it. */
void cell_rpc_reply(struct cell_rpc_call *call, uint16_t type,
		    const ProtobufCMessage *msg);
void cell_rpc_reply_error(struct cell_rpc_call *call, int err, const char *fmt,
			  ...) __attribute__((format(printf, 3, 4)));
/*
 * Runs the method for type from methods in this process, as though the
 * request had arrived on a connection: done gets the reply (status 0)
 * or the error (-errno and its message), when the method answers, which
 * may be during this call or later; the call has no connection
 * (cell_rpc_call_conn() is NULL). -ENOSYS (done not called) when
 * methods has no such method, -ENOMEM.
 */
int cell_rpc_call_local(const struct cell_rpc_method *methods, uint16_t type,
			const ProtobufCMessage *req, void *arg,
			cell_rpc_reply_fn done, void *done_arg);
/* The connection a call arrived on, or NULL once it has closed. */
struct cell_rpc_conn *cell_rpc_call_conn(const struct cell_rpc_call *call);

/* The RPC errors this process saw since it started, by kind (for
 * /metrics: cellmon_rpc_errors_total{kind}): */
enum cell_rpc_error_kind {
	CELL_RPC_ERR_UNKNOWN_TYPE, /* a request of a type we do not serve */
	CELL_RPC_ERR_UNDECODABLE,  /* a payload that does not decode */
	CELL_RPC_ERR_BAD_FRAME,	   /* a frame header refused: closed */
	CELL_RPC_ERR_TIMEOUT,	   /* a request of ours not answered */
	CELL_RPC_ERR_CONN_LOST,	   /* ... its connection closed first */
	CELL_RPC_ERR_CONNECT,	   /* a connection that could not be made */
	CELL_RPC_ERR_REPLY_SENT,   /* a method that answered an error */
	CELL_RPC_ERR_REPLY_GOT,	   /* an error reply to a request of ours */
	CELL_RPC_ERR_TLS,	   /* a TLS handshake or peer refused */
	CELL_RPC_ERR_KINDS,
};
extern const char *const cell_rpc_error_names[CELL_RPC_ERR_KINDS];
/* The counts so far (any thread). */
void cell_rpc_errors(uint64_t out[CELL_RPC_ERR_KINDS]);

/* Listens on "host:port" (port 0 picks a free one). */
int cell_rpc_listen(struct event_base *base, const char *hostport,
		    const struct cell_rpc_config *cfg, cell_rpc_accept_fn cb,
		    void *arg, struct cell_rpc_listener **out);
/* The bound port, useful after asking for port 0. */
int cell_rpc_listener_port(const struct cell_rpc_listener *l);
/* The local port of a bound socket, or -errno. */
int cell_socket_port(int fd);
/* hostport ("host:port" as configured, port maybe 0) with the port
 * replaced by the bound one: what to advertise and log. */
void cell_hostport_bound(const char *hostport, int port, char *out, size_t len);
void cell_rpc_listener_free(struct cell_rpc_listener *l);

/*
 * One blocking request on a fresh connection and a private event loop (for
 * cellctl and tests). On success *reply must be freed with
 * protobuf_c_message_free_unpacked(*reply, NULL). On failure returns -errno
 * and err holds a one-line reason that names the address.
 */
int cell_rpc_call_sync(const char *hostport, const struct cell_rpc_config *cfg,
		       uint16_t type, const ProtobufCMessage *msg,
		       uint16_t reply_type, unsigned timeout_ms,
		       ProtobufCMessage **reply, char *err, size_t errlen);

#endif
