/*
 * The DSM's TCP transport: one connection per pair of nodes, the lower id
 * dials the higher, the dialer's first 16 bytes are a hello naming it.
 * Then frames: the 48-byte header of dsm__msg_pack, followed by one page
 * for a GRANT carrying data. TCP_NODELAY; sends are gathered per peer
 * while the node handles one event and flushed with one send() each.
 *
 * Every header is checked before anything is applied: a known type, the
 * sender matching the connection, a known region and a page in range
 * (dsm__deliver), the sender's epoch not below the peer's fence. A
 * malformed frame closes that connection; a stale epoch is refused and
 * logged, and a hello with one is not connected at all. Buffers are
 * allocated when a peer is added, never per message.
 *
 * With cfg.tls the connection is mutual TLS 1.3 from its first byte: the
 * handshake runs non-blocking in the node's loop, each end checks that
 * the other shows a node certificate of the cell's CA with the name it
 * was added under, and only then does the hello go (over TLS). Frames
 * are the same; SSL_read and SSL_write take the place of recv and send
 * on the same buffers (read-ahead on, drained until OpenSSL wants the
 * socket; partial writes on). The dialer keeps its session and resumes
 * it on the next connection to the same peer (no certificate exchange).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cell/endian.h"
#include "cell/log.h"
#include "cell/net.h"
#include "cell/tls.h"
#include "node_int.h"

#define MOD	    "dsm"
#define HELLO_LEN   16
#define HELLO_MAGIC "CMDSM001"

static void peer_read_cb(evutil_socket_t fd, short what, void *arg);
static void peer_write_cb(evutil_socket_t fd, short what, void *arg);
static void dial(struct dsm_node *n, struct dsm_peer *p);
static void tls_step(struct dsm_node *n, struct dsm_peer *p);

static void set_sock_opts(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
}

/* Why the last TLS call on this thread failed, into why; clears the
 * thread's OpenSSL error queue (it must be empty before the next call). */
static const char *tls_why(SSL *ssl, const char *what, char *why, size_t len)
{
	char e[256];

	cell_tls_last_error(ssl, e, sizeof(e));
	ERR_clear_error();
	snprintf(why, len, "%s: %s", what, e[0] ? e : strerror(errno));
	return why;
}

/* SSL_read's or SSL_write's result r as recv's or send's: > 0 bytes, 0
 * closed, or -1 with errno: EAGAIN (wait for the socket), want_read
 * when OpenSSL must read first, EPROTO (a TLS failure). */
static ssize_t tls_result(SSL *ssl, int r, int want_read)
{
	if (r > 0)
		return r;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		errno = want_read;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN: /* close_notify, or EOF (IGNORE_EOF) */
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno && errno != EAGAIN) {
			ERR_clear_error();
			return -1;
		}
		/* fall through */
	default:
		errno = EPROTO;
		return -1;
	}
}

/* recv, or SSL_read on a TLS connection: > 0 bytes, 0 closed, -1 with
 * errno (EAGAIN: nothing now; EPROTO: a TLS failure). */
static ssize_t link_recv(int fd, SSL *ssl, void *buf, size_t len)
{
	if (!ssl)
		return recv(fd, buf, len, 0);
	return tls_result(
		ssl, SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len),
		EAGAIN);
}

/* send, or SSL_write: bytes taken, or -1 with errno (EAGAIN: wait until
 * writable; EINPROGRESS: TLS must read first, the read event comes;
 * EPIPE: closed; EPROTO: a TLS failure). */
static ssize_t link_send(struct dsm_peer *p, const void *buf, size_t len)
{
	ssize_t w;

	if (!p->ssl)
		return send(p->fd, buf, len, MSG_NOSIGNAL);
	w = tls_result(
		p->ssl,
		SSL_write(p->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len),
		EINPROGRESS);
	if (w == 0) {
		errno = EPIPE;
		return -1;
	}
	return w;
}

/* A connection's failure in words: errno's, or OpenSSL's for EPROTO. */
static const char *link_why(SSL *ssl, int err, char *why, size_t len)
{
	if (err == EPROTO && ssl)
		return tls_why(ssl, "TLS", why, len);
	snprintf(why, len, "%s", strerror(err));
	return why;
}

/* The peer's certificate after a handshake: a node's of the cell's CA
 * (cell_tls_check_peer), named `expect` when that is set. 0, or -EACCES
 * with why. */
static int check_cert(struct dsm_node *n, SSL *ssl, const char *expect,
		      char *name, size_t nlen, char *why, size_t wlen)
{
	enum cell_role role;

	if (cell_tls_check_peer(n->cfg.tls, ssl, &role, name, nlen, why, wlen))
		return -EACCES;
	if (role != CELL_ROLE_NODE) {
		snprintf(why, wlen,
			 "a %s certificate ('%s') has no business on a DSM "
			 "link",
			 cell_role_name(role), name);
		return -EACCES;
	}
	if (expect && expect[0] && strcmp(name, expect)) {
		snprintf(why, wlen,
			 "the certificate of node '%s', not of node '%s'", name,
			 expect);
		return -EACCES;
	}
	return 0;
}

/* A DSM connection's SSL: writes taken a record at a time from a
 * buffer that moves (flush_peer), and reads ahead into a buffer of a
 * whole prefetch window, so that a burst of pages is read and
 * installed in one go as over plain TCP (one record per read() would
 * make it a batch of 4 pages). */
static void tls_tune(SSL *ssl)
{
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
				  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_read_ahead(ssl, 1);
	SSL_set_default_read_buffer_len(ssl, DSM_NET_IN_CAP);
}

/* The dialing side tries again, backing off from 50 ms to 2 s. */
static void schedule_retry(struct dsm_node *n, struct dsm_peer *p)
{
	struct timeval tv;

	if (!p->active || n->id > p->id || !p->addr[0])
		return;
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : 50;
	if (p->backoff_ms > 2000)
		p->backoff_ms = 2000;
	tv.tv_sec = p->backoff_ms / 1000;
	tv.tv_usec = (p->backoff_ms % 1000) * 1000;
	evtimer_add(p->ev_retry, &tv);
}

/* Ends p's TLS: the dialer keeps the session of a connection that
 * worked (the peer sent something: it took our certificate) to resume
 * it, saved before the close_notify, which keeps OpenSSL from marking
 * it bad. */
static void tls_end(struct dsm_node *n, struct dsm_peer *p)
{
	if (n->id < p->id && p->rx && SSL_is_init_finished(p->ssl)) {
		SSL_SESSION *s = SSL_get1_session(p->ssl);

		if (s && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(p->sess);
			p->sess = s;
			p->sess_gen = cell_tls_generation(n->cfg.tls);
		} else {
			SSL_SESSION_free(s);
		}
	}
	SSL_shutdown(p->ssl);
	SSL_free(p->ssl);
	ERR_clear_error();
}

static void peer_disconnect(struct dsm_node *n, struct dsm_peer *p,
			    const char *why)
{
	bool was_connected = p->connected;

	if (p->fd < 0)
		return;
	CELL_LOG_RL(CELL_LOG_WARN, MOD,
		    "node %u: connection to node %u closed: %s "
		    "dropped_bytes=%zu",
		    n->id, p->id, why, was_connected ? p->out_len : 0);
	if (p->ev_read)
		event_free(p->ev_read);
	if (p->ev_write)
		event_free(p->ev_write);
	p->ev_read = p->ev_write = NULL;
	if (p->ssl) {
		tls_end(n, p);
		p->ssl = NULL;
	}
	close(p->fd);
	p->fd = -1;
	p->connected = false;
	p->handshaking = false;
	p->rx = false;
	p->write_wants_read = false;
	p->in_len = 0;
	/* A half-sent frame cannot be resumed on a new connection; a
	 * connection that never came up sent nothing, so its queue waits
	 * for the next one. */
	if (was_connected)
		p->out_len = 0;
	n->dirty_peers &= ~((uint64_t)1 << p->id);
	schedule_retry(n, p);
}

static int peer_attach_fd(struct dsm_node *n, struct dsm_peer *p, int fd)
{
	p->fd = fd;
	p->in_len = 0;
	p->ev_read =
		event_new(n->base, fd, EV_READ | EV_PERSIST, peer_read_cb, p);
	p->ev_write = event_new(n->base, fd, EV_WRITE, peer_write_cb, p);
	if (!p->ev_read || !p->ev_write)
		return -ENOMEM;
	event_add(p->ev_read, NULL);
	return 0;
}

/* Checks a header against the connection it came on. */
static int check_header(struct dsm_peer *p, const struct dsm__msg *m)
{
	bool engine = m->type >= DSM_MSG_READ_REQ && m->type < DSM_MSG_MAX;
	bool sync = m->type >= DSM_MSG_LOCK_ACQ && m->type < DSM_MSG_NODE_MAX;

	if (!engine && !sync)
		return -EBADMSG;
	/* from names the sender, except in a request a node passes on to
	 * the page's home (it was not the home, or no longer is:
	 * dsm-protocol.md, "Home move"): there it names the requester,
	 * which must be a peer this node knows, or this node itself (its
	 * own request, passed back to it as the new home) */
	if (m->from != p->id &&
	    (!dsm__msg_forwardable(m->type) || m->from >= DSM_MAX_NODES ||
	     (m->from != p->node->id && !p->node->peers[m->from].active)))
		return -EBADMSG;
	if ((m->flags & DSM_GRANT_DATA) && m->type != DSM_MSG_GRANT)
		return -EBADMSG;
	return 0;
}

static size_t frame_len(const struct dsm__msg *m)
{
	return DSM_MSG_WIRE_LEN +
	       ((m->type == DSM_MSG_GRANT && (m->flags & DSM_GRANT_DATA))
			? DSM_PAGE_SIZE
			: 0);
}

/* Applies every whole frame in p->in. -EBADMSG closes the connection. */
static int consume(struct dsm_node *n, struct dsm_peer *p)
{
	size_t off = 0;

	while (p->in_len - off >= DSM_MSG_WIRE_LEN) {
		struct dsm__msg m;
		size_t len;

		dsm__msg_unpack(p->in + off, &m);
		if (check_header(p, &m)) {
			CELL_LOG_RL(CELL_LOG_WARN, MOD,
				    "node %u: malformed frame from node %u "
				    "type=%u from=%u",
				    n->id, p->id, m.type, m.from);
			n->stats.refused++;
			return -EBADMSG;
		}
		len = frame_len(&m);
		if (p->in_len - off < len)
			break;
		if (m.epoch < p->fence_epoch) {
			dsm__refused(n, p, &m);
		} else {
			dsm__accepted(n, p);
			dsm__deliver(n, &m,
				     len > DSM_MSG_WIRE_LEN
					     ? p->in + off + DSM_MSG_WIRE_LEN
					     : NULL);
		}
		off += len;
	}
	memmove(p->in, p->in + off, p->in_len - off);
	p->in_len -= off;
	return 0;
}

static void peer_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_peer *p = arg;
	struct dsm_node *n = p->node;
	char why[300];
	ssize_t r;

	(void)what;
	if (p->handshaking) {
		tls_step(n, p);
		dsm__after_work(n);
		return;
	}
	for (;;) {
		size_t room = DSM_NET_IN_CAP - p->in_len;

		r = link_recv(fd, p->ssl, p->in + p->in_len, room);
		if (r > 0) {
			/* the peer took this connection: a retry after it
			 * ends starts from the shortest wait again */
			p->rx = true;
			p->backoff_ms = 0;
			p->in_len += (size_t)r;
			if (consume(n, p)) {
				peer_disconnect(n, p, "malformed frame");
				break;
			}
			/* A short read that ended on a frame boundary took
			 * everything there was: stop without the recv() that
			 * would say EAGAIN (the event is level-triggered). A
			 * frame cut short is likely being written: try again,
			 * so a burst of pages goes in as one batch. TLS reads
			 * a record at a time: on while OpenSSL holds bytes
			 * (read ahead) or a frame is cut short. */
			if (!p->in_len && (p->ssl ? !SSL_has_pending(p->ssl)
						  : (size_t)r < room))
				break;
			continue;
		}
		if (r == 0)
			peer_disconnect(n, p,
					p->ssl && !p->rx
						? "closed by peer before "
						  "sending anything (if this "
						  "repeats, it refuses our "
						  "certificate: its log says "
						  "why)"
						: "closed by peer");
		else if (errno != EAGAIN && errno != EINTR)
			peer_disconnect(
				n, p,
				link_why(p->ssl, errno, why, sizeof(why)));
		break;
	}
	/* a write that waited for TLS to read goes on now */
	if (p->write_wants_read) {
		p->write_wants_read = false;
		n->dirty_peers |= (uint64_t)1 << p->id;
	}
	dsm__after_work(n);
}

/* Writes what p has queued, as far as the socket takes it; the rest
 * waits for it to be writable. TLS writes a record (16 KiB) per call:
 * on until everything is written, then one move of what is left. */
static void flush_peer(struct dsm_node *n, struct dsm_peer *p)
{
	char why[300];
	size_t off = 0;
	ssize_t w = 0;

	if (p->fd < 0 || !p->connected || !p->out_len)
		return;
	while (off < p->out_len &&
	       (w = link_send(p, p->out + off, p->out_len - off)) > 0)
		off += (size_t)w;
	if (w < 0 && errno != EAGAIN && errno != EINPROGRESS) {
		peer_disconnect(n, p,
				link_why(p->ssl, errno, why, sizeof(why)));
		return;
	}
	memmove(p->out, p->out + off, p->out_len - off);
	p->out_len -= off;
	/* EINPROGRESS: TLS must read first; the read event goes on */
	p->write_wants_read = p->out_len && w < 0 && errno == EINPROGRESS;
	if (p->out_len && !p->write_wants_read)
		event_add(p->ev_write, NULL);
}

/* The dialer's first bytes on a new connection, ahead of whatever was
 * queued while it was down (send keeps room for them). */
static void put_hello(struct dsm_node *n, struct dsm_peer *p)
{
	uint8_t hello[HELLO_LEN] = HELLO_MAGIC;

	cell_put16(hello + 8, n->id);
	cell_put32(hello + 12, n->epoch);
	memmove(p->out + HELLO_LEN, p->out, p->out_len);
	memcpy(p->out, hello, HELLO_LEN);
	p->out_len += HELLO_LEN;
}

/* p's connection is up, dialed or accepted: said (and a resumed TLS
 * session counted). */
static void link_up(struct dsm_node *n, struct dsm_peer *p)
{
	bool resumed = p->ssl && SSL_session_reused(p->ssl);
	char tls[128] = "";

	p->connected = true;
	n->stats.tls_resumed += resumed;
	if (p->ssl)
		snprintf(tls, sizeof(tls), " (TLS 1.3, certificate of '%s'%s)",
			 p->cert_name, resumed ? ", session resumed" : "");
	if (n->id < p->id)
		CELL_INFO(MOD, "node %u: connected to node %u at %s%s", n->id,
			  p->id, p->addr, tls);
	else
		CELL_INFO(MOD, "node %u: node %u connected%s", n->id, p->id,
			  tls);
}

/* The dialer's connection is up (TCP, or TCP then TLS): hello first. */
static void dialed(struct dsm_node *n, struct dsm_peer *p)
{
	link_up(n, p);
	put_hello(n, p);
}

/* Drives the dialer's TLS handshake one step; at its end checks the
 * peer's certificate and sends the hello. */
static void tls_step(struct dsm_node *n, struct dsm_peer *p)
{
	char why[400];
	int r = SSL_do_handshake(p->ssl);

	if (r != 1) {
		int e = SSL_get_error(p->ssl, r);

		if (e == SSL_ERROR_WANT_READ)
			return; /* the read event is armed */
		if (e == SSL_ERROR_WANT_WRITE) {
			event_add(p->ev_write, NULL);
			return;
		}
		peer_disconnect(
			n, p,
			tls_why(p->ssl, "TLS handshake", why, sizeof(why)));
		return;
	}
	p->handshaking = false;
	if (check_cert(n, p->ssl, p->name, p->cert_name, sizeof(p->cert_name),
		       why, sizeof(why))) {
		n->stats.peers_refused++;
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: refused node %u at %s: %s", n->id, p->id,
			    p->addr, why);
		peer_disconnect(n, p, "its certificate was refused");
		return;
	}
	dialed(n, p);
	flush_peer(n, p);
}

/* TCP is up to a peer that speaks TLS: the client's handshake begins,
 * resuming the last session to that peer if the TLS files are the same
 * (a reload may have revoked a certificate it showed). */
static void tls_begin(struct dsm_node *n, struct dsm_peer *p)
{
	p->ssl = cell_tls_ssl(n->cfg.tls, false);
	if (!p->ssl || !SSL_set_fd(p->ssl, p->fd)) {
		peer_disconnect(n, p, "out of memory for TLS");
		return;
	}
	tls_tune(p->ssl);
	if (p->sess && p->sess_gen == cell_tls_generation(n->cfg.tls))
		SSL_set_session(p->ssl, p->sess);
	p->handshaking = true;
	tls_step(n, p);
}

static void peer_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_peer *p = arg;
	struct dsm_node *n = p->node;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (p->handshaking) {
		tls_step(n, p);
		dsm__after_work(n);
		return;
	}
	if (!p->connected) {
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			peer_disconnect(n, p, strerror(err));
			return;
		}
		if (n->cfg.tls) {
			tls_begin(n, p);
			dsm__after_work(n);
			return;
		}
		dialed(n, p);
	}
	flush_peer(n, p);
	dsm__after_work(n);
}

static void dsm__net_flush(struct dsm_node *n)
{
	while (n->dirty_peers) {
		int id = __builtin_ctzll(n->dirty_peers);

		n->dirty_peers &= n->dirty_peers - 1;
		flush_peer(n, &n->peers[id]);
	}
}

static int append(struct dsm_peer *p, const void *b, size_t len)
{
	if (p->out_len + len > DSM_NET_OUT_CAP)
		return -ENOBUFS;
	memcpy(p->out + p->out_len, b, len);
	p->out_len += len;
	return 0;
}

static int dsm__net_send(struct dsm_node *n, uint16_t to,
			 const struct dsm__msg *m, const void *data)
{
	struct dsm_peer *p = to < DSM_MAX_NODES ? &n->peers[to] : NULL;
	uint8_t hdr[DSM_MSG_WIRE_LEN];

	if (!p || !p->active || !p->out) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: %s to unknown node %u dropped", n->id,
			    dsm__type_name(m->type), to);
		return -ENOTCONN;
	}
	if (p->out_len + DSM_MSG_WIRE_LEN + (data ? DSM_PAGE_SIZE : 0) +
		    HELLO_LEN >
	    DSM_NET_OUT_CAP) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD,
			    "node %u: send buffer to node %u full", n->id, to);
		return -ENOBUFS;
	}
	dsm__msg_pack(m, hdr);
	append(p, hdr, sizeof(hdr));
	if (data)
		append(p, data, DSM_PAGE_SIZE);
	n->dirty_peers |= (uint64_t)1 << to;
	return 0;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_peer *p = arg;

	(void)fd;
	(void)what;
	dial(p->node, p);
}

static void dial(struct dsm_node *n, struct dsm_peer *p)
{
	struct sockaddr_storage ss;
	int sl, fd;

	if (p->fd >= 0 || !p->active)
		return;
	if (cell_parse_hostport(p->addr, &ss, &sl)) {
		CELL_ERROR(MOD, "node %u: bad address '%s' for node %u", n->id,
			   p->addr, p->id);
		return;
	}
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return;
	set_sock_opts(fd);
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)sl) &&
	    errno != EINPROGRESS) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "node %u: connect to %s: %s",
			    n->id, p->addr, strerror(errno));
		close(fd);
		schedule_retry(n, p);
		return;
	}
	if (peer_attach_fd(n, p, fd)) {
		close(fd);
		p->fd = -1;
		return;
	}
	event_add(p->ev_write, NULL);
}

static int peer_init(struct dsm_node *n, uint16_t id)
{
	struct dsm_peer *p = &n->peers[id];

	if (!p->out)
		p->out = malloc(DSM_NET_OUT_CAP);
	if (!p->in)
		p->in = malloc(DSM_NET_IN_CAP);
	if (!p->ev_retry)
		p->ev_retry = evtimer_new(n->base, retry_cb, p);
	if (!p->out || !p->in || !p->ev_retry)
		return -ENOMEM;
	/* The whole receive buffer is used by a window of pages; the send
	 * buffer (4 MiB, for bursts) faults in as far as it is used. */
	dsm__prefault(p->in, DSM_NET_IN_CAP);
	p->node = n;
	p->id = id;
	p->active = true;
	return 0;
}

static int dsm__net_add_peer(struct dsm_node *n, uint16_t id, const char *addr)
{
	struct dsm_peer *p = &n->peers[id];
	int rc = peer_init(n, id);

	if (rc)
		return rc;
	snprintf(p->addr, sizeof(p->addr), "%s", addr ? addr : "");
	/* A connection it dialed in before it was named here shows its
	 * name now. */
	if (p->ssl && p->connected && p->name[0] &&
	    strcmp(p->cert_name, p->name)) {
		n->stats.peers_refused++;
		CELL_WARN(MOD,
			  "node %u: node %u connected with the certificate of "
			  "node '%s', not of node '%s'",
			  n->id, id, p->cert_name, p->name);
		peer_disconnect(n, p, "its certificate was refused");
	}
	if (n->id < id)
		dial(n, p);
	return 0;
}

static void dsm__net_remove_peer(struct dsm_node *n, uint16_t id)
{
	struct dsm_peer *p = &n->peers[id];

	p->active = false;
	peer_disconnect(n, p, "peer removed");
	if (p->ev_retry)
		evtimer_del(p->ev_retry);
}

/* Frees an accepted connection's slot, closing it unless it was bound. */
static void pending_clear(struct dsm_pending *pd, bool close_fd)
{
	if (pd->ev)
		event_free(pd->ev);
	if (close_fd && pd->ssl) {
		SSL_free(pd->ssl);
		ERR_clear_error();
	}
	if (close_fd && pd->fd >= 0)
		close(pd->fd);
	*pd = (struct dsm_pending){.fd = -1};
}

static void pending_refuse(struct dsm_pending *pd, const char *why)
{
	struct dsm_node *n = pd->node;
	char from[64];

	n->stats.peers_refused++;
	CELL_LOG_RL(CELL_LOG_WARN, MOD,
		    "node %u: refused a peer connection from %s: %s", n->id,
		    cell_fd_peer(pd->fd, from, sizeof(from)), why);
	pending_clear(pd, true);
}

static void pending_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for what the accepted connection needs next: to read, or (a
 * TLS handshake's flight that did not fit) to write. */
static int pending_arm(struct dsm_pending *pd, short what)
{
	if (pd->ev && pd->armed == what)
		return 0;
	if (pd->ev)
		event_free(pd->ev);
	pd->armed = what;
	pd->ev = event_new(pd->node->base, pd->fd, what | EV_PERSIST,
			   pending_cb, pd);
	return pd->ev ? event_add(pd->ev, NULL) : -ENOMEM;
}

/* The accepting side's TLS handshake, one step: 1 done (the peer is a
 * node of the cell), 0 more to come, -1 refused (the slot is freed). */
static int pending_tls(struct dsm_pending *pd)
{
	char why[400];
	int r, e;

	if (SSL_is_init_finished(pd->ssl))
		return 1;
	/* A peer without TLS sends its hello first: say so, rather than
	 * OpenSSL's "wrong version number" (a peek, before OpenSSL reads) */
	if (!pd->peeked && recv(pd->fd, why, 8, MSG_PEEK) == 8 &&
	    memcmp(why, HELLO_MAGIC, 8) == 0) {
		pending_refuse(pd, "TLS handshake: a plain hello (the peer "
				   "runs without TLS)");
		return -1;
	}
	pd->peeked = true;
	r = SSL_do_handshake(pd->ssl);
	if (r != 1) {
		e = SSL_get_error(pd->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (pending_arm(pd, e == SSL_ERROR_WANT_READ
						    ? EV_READ
						    : EV_WRITE)) {
				pending_refuse(pd, "out of memory");
				return -1;
			}
			return 0;
		}
		pending_refuse(pd, tls_why(pd->ssl, "TLS handshake", why,
					   sizeof(why)));
		return -1;
	}
	if (check_cert(pd->node, pd->ssl, NULL, pd->cert_name,
		       sizeof(pd->cert_name), why, sizeof(why))) {
		pending_refuse(pd, why);
		return -1;
	}
	if (pending_arm(pd, EV_READ)) {
		pending_refuse(pd, "out of memory");
		return -1;
	}
	return 1;
}

/* An accepted connection: (its TLS handshake, then) its hello, which
 * names the dialer; then it is bound to that peer. */
static void pending_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_pending *pd = arg;
	struct dsm_node *n = pd->node;
	struct dsm_peer *p;
	char why[300];
	ssize_t r = 0;
	uint16_t id;

	(void)what;
	if (pd->ssl && pending_tls(pd) <= 0)
		return;
	while (pd->len < HELLO_LEN) {
		r = link_recv(fd, pd->ssl, pd->hello + pd->len,
			      HELLO_LEN - pd->len);
		if (r <= 0)
			break;
		pd->len += (uint8_t)r;
	}
	if (pd->len < HELLO_LEN) {
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return; /* the rest is on its way */
		pending_refuse(pd, r == 0 ? "closed before its hello"
					  : link_why(pd->ssl, errno, why,
						     sizeof(why)));
		return;
	}
	if (memcmp(pd->hello, HELLO_MAGIC, 8) != 0 ||
	    (id = cell_get16(pd->hello + 8)) >= DSM_MAX_NODES || id >= n->id) {
		/* a TLS handshake record: 22, version 3.x */
		pending_refuse(pd, pd->hello[0] == 22 && pd->hello[1] == 3
					   ? "no valid hello (a TLS "
					     "handshake: the peer runs with "
					     "TLS, this node without)"
					   : "no valid hello");
		return;
	}
	p = &n->peers[id];
	if (pd->ssl && p->name[0] && strcmp(pd->cert_name, p->name)) {
		snprintf(why, sizeof(why),
			 "it says it is node %u ('%s') with the certificate of "
			 "node '%s'",
			 id, p->name, pd->cert_name);
		pending_refuse(pd, why);
		return;
	}
	/* An ended incarnation is not even connected (nor made a peer). */
	if (cell_get32(pd->hello + 12) < p->fence_epoch) {
		n->stats.refused++;
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: refused a connection from node %u: "
			    "epoch %u below fence %u",
			    n->id, id, cell_get32(pd->hello + 12),
			    p->fence_epoch);
		pending_clear(pd, true);
		return;
	}
	if (peer_init(n, id)) {
		pending_clear(pd, true);
		return;
	}
	if (p->fd >= 0)
		peer_disconnect(n, p, "replaced by a new one");
	if (peer_attach_fd(n, p, fd)) {
		pending_clear(pd, true);
		p->fd = -1;
		return;
	}
	p->ssl = pd->ssl;
	snprintf(p->cert_name, sizeof(p->cert_name), "%s", pd->cert_name);
	pending_clear(pd, false);
	link_up(n, p);
	/* Anything queued before the peer dialed in goes out now. */
	n->dirty_peers |= (uint64_t)1 << id;
	/* TLS may hold frames it read with the hello: take them now (the
	 * socket may never say it is readable for them). */
	if (p->ssl)
		peer_read_cb(fd, EV_READ, p);
	else
		dsm__after_work(n);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct dsm_node *n = arg;
	int fd = accept(lfd, NULL, NULL);

	(void)what;
	if (fd < 0)
		return;
	set_sock_opts(fd);
	for (int i = 0; i < DSM_PENDING_SLOTS; i++) {
		struct dsm_pending *pd = &n->pending[i];

		if (pd->fd >= 0)
			continue;
		*pd = (struct dsm_pending){.node = n, .fd = fd};
		if (n->cfg.tls) {
			pd->ssl = cell_tls_ssl(n->cfg.tls, true);
			if (!pd->ssl || !SSL_set_fd(pd->ssl, fd)) {
				pending_refuse(pd, "out of memory for TLS");
				return;
			}
			tls_tune(pd->ssl);
		}
		if (pending_arm(pd, EV_READ))
			pending_refuse(pd, "out of memory");
		return;
	}
	CELL_LOG_RL(CELL_LOG_WARN, MOD,
		    "node %u: %d peer connections wait for their hello: one "
		    "more closed",
		    n->id, DSM_PENDING_SLOTS);
	close(fd);
}

static int dsm__net_listen(struct dsm_node *n, const char *hostport)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int sl, one = 1, rc;

	rc = cell_parse_hostport(hostport, &ss, &sl);
	if (rc)
		return rc;
	n->listen_fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (n->listen_fd < 0)
		return -errno;
	setsockopt(n->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	evutil_make_socket_closeonexec(n->listen_fd);
	if (bind(n->listen_fd, (struct sockaddr *)&ss, (socklen_t)sl) ||
	    listen(n->listen_fd, 64) ||
	    getsockname(n->listen_fd, (struct sockaddr *)&ss, &len)) {
		rc = -errno;
		CELL_ERROR(MOD, "node %u: cannot listen on %s: %s", n->id,
			   hostport, strerror(errno));
		return rc;
	}
	evutil_make_socket_nonblocking(n->listen_fd);
	n->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	n->ev_listen = event_new(n->base, n->listen_fd, EV_READ | EV_PERSIST,
				 accept_cb, n);
	event_add(n->ev_listen, NULL);
	return 0;
}

static void dsm__net_close(struct dsm_node *n)
{
	for (int i = 0; i < DSM_MAX_NODES; i++) {
		struct dsm_peer *p = &n->peers[i];

		p->active = false;
		if (p->fd >= 0) {
			event_free(p->ev_read);
			event_free(p->ev_write);
			if (p->ssl)
				SSL_free(p->ssl);
			p->ssl = NULL;
			close(p->fd);
			p->fd = -1;
		}
		SSL_SESSION_free(p->sess);
		p->sess = NULL;
		if (p->ev_retry)
			event_free(p->ev_retry);
		free(p->out);
		free(p->in);
		p->out = NULL;
		p->in = NULL;
		p->ev_retry = NULL;
	}
	for (int i = 0; i < DSM_PENDING_SLOTS; i++)
		if (n->pending[i].fd >= 0)
			pending_clear(&n->pending[i], true);
	if (n->ev_listen)
		event_free(n->ev_listen);
	n->ev_listen = NULL;
	if (n->listen_fd >= 0)
		close(n->listen_fd);
	n->listen_fd = -1;
}

const struct dsm_transport_ops dsm__tcp_ops = DSM_TRANSPORT_OPS(dsm__net);
