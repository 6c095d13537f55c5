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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/log.h"
#include "cell/net.h"
#include "node_int.h"

#define MOD	      "dsm"
#define HELLO_LEN     16
#define HELLO_MAGIC   "CMDSM001"
#define PENDING_SLOTS 16

static void peer_read_cb(evutil_socket_t fd, short what, void *arg);
static void peer_write_cb(evutil_socket_t fd, short what, void *arg);
static void dial(struct dsm_node *n, struct dsm_peer *p);

static void set_sock_opts(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
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
	close(p->fd);
	p->fd = -1;
	p->connected = false;
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
	ssize_t r;

	(void)what;
	for (;;) {
		size_t room = DSM_NET_IN_CAP - p->in_len;

		r = recv(fd, p->in + p->in_len, room, 0);
		if (r > 0) {
			p->in_len += (size_t)r;
			if (consume(n, p)) {
				peer_disconnect(n, p, "malformed frame");
				break;
			}
			/* A short read that ended on a frame boundary took
			 * everything there was: stop without the recv() that
			 * would say EAGAIN (the event is level-triggered). A
			 * frame cut short is likely being written: try again,
			 * so a burst of pages goes in as one batch. */
			if ((size_t)r < room && !p->in_len)
				break;
			continue;
		}
		if (r == 0)
			peer_disconnect(n, p, "closed by peer");
		else if (errno != EAGAIN && errno != EINTR)
			peer_disconnect(n, p, strerror(errno));
		break;
	}
	dsm__after_work(n);
}

static void flush_peer(struct dsm_node *n, struct dsm_peer *p)
{
	ssize_t w;

	if (p->fd < 0 || !p->connected || !p->out_len)
		return;
	w = send(p->fd, p->out, p->out_len, MSG_NOSIGNAL);
	if (w < 0) {
		if (errno == EAGAIN)
			event_add(p->ev_write, NULL);
		else
			peer_disconnect(n, p, strerror(errno));
		return;
	}
	memmove(p->out, p->out + w, p->out_len - (size_t)w);
	p->out_len -= (size_t)w;
	if (p->out_len)
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

static void peer_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_peer *p = arg;
	struct dsm_node *n = p->node;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (!p->connected) {
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			peer_disconnect(n, p, strerror(err));
			return;
		}
		p->connected = true;
		p->backoff_ms = 0;
		put_hello(n, p);
		CELL_INFO(MOD, "node %u: connected to node %u at %s", n->id,
			  p->id, p->addr);
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

/* An accepted connection: wait for its hello, then bind it to its peer. */
static void pending_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	uint8_t hello[HELLO_LEN];
	ssize_t r = recv(fd, hello, sizeof(hello), MSG_PEEK);
	int slot = -1;
	uint16_t id;

	(void)what;
	for (int i = 0; i < PENDING_SLOTS; i++)
		if (n->pending_fds[i] == fd)
			slot = i;
	if (r > 0 && r < HELLO_LEN)
		return; /* the rest is on its way */
	if (slot >= 0) {
		event_free(n->pending_ev[slot]);
		n->pending_fds[slot] = -1;
	}
	if (r != HELLO_LEN || memcmp(hello, HELLO_MAGIC, 8) != 0 ||
	    (id = (uint16_t)(hello[8] << 8 | hello[9])) >= DSM_MAX_NODES ||
	    id >= n->id) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: refused a peer connection without a "
			    "valid hello",
			    n->id);
		close(fd);
		return;
	}
	recv(fd, hello, sizeof(hello), 0); /* consumed: a close is a FIN */
	/* An ended incarnation is not even connected (nor made a peer). */
	if (cell_get32(hello + 12) < n->peers[id].fence_epoch) {
		n->stats.refused++;
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "node %u: refused a connection from node %u: "
			    "epoch %u below fence %u",
			    n->id, id, cell_get32(hello + 12),
			    n->peers[id].fence_epoch);
		close(fd);
		return;
	}
	if (peer_init(n, id)) {
		close(fd);
		return;
	}
	if (n->peers[id].fd >= 0)
		peer_disconnect(n, &n->peers[id], "replaced by a new one");
	if (peer_attach_fd(n, &n->peers[id], fd)) {
		close(fd);
		n->peers[id].fd = -1;
		return;
	}
	n->peers[id].connected = true;
	/* Anything queued before the peer dialed in goes out now. */
	n->dirty_peers |= (uint64_t)1 << id;
	CELL_INFO(MOD, "node %u: node %u connected", n->id, id);
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
	for (int i = 0; i < PENDING_SLOTS; i++) {
		if (n->pending_fds[i] >= 0)
			continue;
		n->pending_fds[i] = fd;
		n->pending_ev[i] = event_new(n->base, fd, EV_READ | EV_PERSIST,
					     pending_cb, n);
		event_add(n->pending_ev[i], NULL);
		return;
	}
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
			close(p->fd);
			p->fd = -1;
		}
		if (p->ev_retry)
			event_free(p->ev_retry);
		free(p->out);
		free(p->in);
		p->out = NULL;
		p->in = NULL;
		p->ev_retry = NULL;
	}
	for (int i = 0; i < PENDING_SLOTS; i++) {
		if (n->pending_fds[i] >= 0) {
			event_free(n->pending_ev[i]);
			close(n->pending_fds[i]);
			n->pending_fds[i] = -1;
		}
	}
	if (n->ev_listen)
		event_free(n->ev_listen);
	n->ev_listen = NULL;
	if (n->listen_fd >= 0)
		close(n->listen_fd);
	n->listen_fd = -1;
}

const struct dsm_transport_ops dsm__tcp_ops = DSM_TRANSPORT_OPS(dsm__net);
