/*
 * Unit tests of the RPC layer (common/rpc.c) over socketpairs on one event
 * loop: frames split across reads or packed several per read, oversize
 * and garbage input, unknown types, undecodable payloads, replies matched
 * by id out of order, request timeouts and closes with requests pending.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/frame.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "testsupport.h"

#define T_ECHO	 CELLMON__MSG_TYPE__MSG_NODE_INFO
#define T_REPLY	 CELLMON__MSG_TYPE__MSG_NODE_INFO_REPLY
#define T_DEFER	 CELLMON__MSG_TYPE__MSG_NODE_PING
#define T_DREPLY CELLMON__MSG_TYPE__MSG_NODE_PING_REPLY

struct server {
	struct cell_rpc_call *deferred[4];
	int ndeferred;
	int echoes;
	int closed;
	int close_reason;
};

/* Answers NodeInfo(id) with a node whose id echoes the request. */
static void on_echo(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		    void *arg)
{
	struct server *s = arg;
	const Cellmon__NodeInfoRequest *req = (const void *)msg;
	Cellmon__NodeInfoReply r = CELLMON__NODE_INFO_REPLY__INIT;
	Cellmon__NodeInfo n = CELLMON__NODE_INFO__INIT;

	s->echoes++;
	n.id = req->id;
	r.node = &n;
	cell_rpc_reply(call, T_REPLY, &r.base);
}

/* Keeps NodePing calls to answer later (or never). */
static void on_defer(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg)
{
	struct server *s = arg;

	(void)msg;
	s->deferred[s->ndeferred++] = call;
}

static const struct cell_rpc_method methods[] = {
	{T_ECHO, on_echo},
	{T_DEFER, on_defer},
	{0, NULL},
};

struct fixture {
	struct event_base *base;
	struct server srv;
	struct cell_rpc_config scfg, ccfg;
	struct cell_rpc_conn *server;
	int raw;	    /* the client end as a plain socket */
	uint8_t rbuf[8192]; /* bytes read from raw, not yet consumed */
	size_t rhave;
};

static void on_server_close(struct cell_rpc_conn *c, int reason, void *arg)
{
	struct server *s = arg;

	(void)c;
	s->closed = 1;
	s->close_reason = reason;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int sv[2];

	cell_log_set_level(CELL_LOG_ERROR);
	f->base = event_base_new();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f->scfg = (struct cell_rpc_config){cellproto_types, methods, &f->srv,
					   256, "test"};
	f->ccfg = (struct cell_rpc_config){cellproto_types, NULL, NULL, 0,
					   "test"};
	assert_int_equal(
		cell_rpc_conn_create(f->base, sv[0], &f->scfg, &f->server), 0);
	cell_rpc_conn_set_close_cb(f->server, on_server_close, &f->srv);
	f->raw = sv[1];
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f->srv.closed)
		cell_rpc_conn_close(f->server);
	if (f->raw >= 0)
		close(f->raw);
	event_base_free(f->base);
	free(f);
	return 0;
}

static void spin(struct fixture *f, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		event_base_loop(f->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

/* Packs a request frame with payload msg (or raw bytes). */
static size_t frame(uint8_t *buf, uint16_t type, uint32_t id,
		    const ProtobufCMessage *msg, const void *raw, size_t rawlen)
{
	struct cell_frame_hdr h = {CELL_FRAME_VERSION, 0, type, id, 0};
	size_t n = msg ? protobuf_c_message_pack(msg, buf + CELL_FRAME_HDR_LEN)
		       : rawlen;

	if (raw)
		memcpy(buf + CELL_FRAME_HDR_LEN, raw, rawlen);
	h.len = (uint32_t)n;
	cell_frame_hdr_pack(&h, buf);
	return CELL_FRAME_HDR_LEN + n;
}

static size_t echo_frame(uint8_t *buf, uint32_t id, const char *text)
{
	Cellmon__NodeInfoRequest req = CELLMON__NODE_INFO_REQUEST__INIT;

	req.id = (char *)text;
	return frame(buf, T_ECHO, id, &req.base, NULL, 0);
}

/* Reads one whole frame from the raw socket within 1 s. Returns the
 * payload length or -1 (EOF or timeout). */
static int read_frame(struct fixture *f, struct cell_frame_hdr *h,
		      uint8_t *payload)
{
	uint8_t *buf = f->rbuf;
	uint64_t end = ts_now_ms() + 1000;

	fcntl(f->raw, F_SETFL, O_NONBLOCK);
	while (ts_now_ms() < end) {
		ssize_t n = 0;
		size_t used;

		if (f->rhave >= CELL_FRAME_HDR_LEN &&
		    cell_frame_hdr_unpack(buf, sizeof(f->rbuf), h) == 0 &&
		    f->rhave >= CELL_FRAME_HDR_LEN + h->len) {
			used = CELL_FRAME_HDR_LEN + h->len;
			memcpy(payload, buf + CELL_FRAME_HDR_LEN, h->len);
			memmove(buf, buf + used, f->rhave - used);
			f->rhave -= used;
			return (int)h->len;
		}
		spin(f, 1);
		n = read(f->raw, buf + f->rhave, sizeof(f->rbuf) - f->rhave);
		if (n == 0)
			return -1;
		if (n > 0)
			f->rhave += (size_t)n;
	}
	return -1;
}

static char *reply_id(const uint8_t *payload, int len)
{
	Cellmon__NodeInfoReply *r =
		cellmon__node_info_reply__unpack(NULL, (size_t)len, payload);
	char *id;

	assert_non_null(r);
	assert_non_null(r->node);
	id = strdup(r->node->id);
	cellmon__node_info_reply__free_unpacked(r, NULL);
	return id;
}

/* A frame written one byte at a time is decoded once, whole. */
static void test_rpc_frame_split_across_reads_decoded(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[256], payload[4096];
	struct cell_frame_hdr h;
	size_t n = echo_frame(buf, 7, "split");
	char *id;
	int len;

	for (size_t i = 0; i < n; i++) {
		assert_int_equal(write(f->raw, buf + i, 1), 1);
		spin(f, 1);
	}
	len = read_frame(f, &h, payload);
	assert_true(len > 0);
	assert_int_equal(h.id, 7);
	assert_true(h.flags & CELL_FRAME_REPLY);
	id = reply_id(payload, len);
	assert_string_equal(id, "split");
	free(id);
	assert_int_equal(f->srv.echoes, 1);
}

/* Three frames in one write get three replies, in order. */
static void test_rpc_frames_several_per_read_all_answered(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[512], payload[4096];
	struct cell_frame_hdr h;
	size_t n = 0;

	n += echo_frame(buf + n, 1, "a");
	n += echo_frame(buf + n, 2, "b");
	n += echo_frame(buf + n, 3, "c");
	assert_int_equal(write(f->raw, buf, n), (ssize_t)n);
	for (uint32_t id = 1; id <= 3; id++) {
		int len = read_frame(f, &h, payload);
		char *s;

		assert_true(len > 0);
		assert_int_equal(h.id, id);
		s = reply_id(payload, len);
		assert_int_equal(s[0], 'a' + (int)id - 1);
		free(s);
	}
	assert_int_equal(f->srv.echoes, 3);
}

/* An oversize length is refused before the payload arrives: an error
 * reply, then the connection closes. */
static void test_rpc_oversize_frame_closes(void **state)
{
	struct fixture *f = *state;
	struct cell_frame_hdr h = {CELL_FRAME_VERSION, 0, T_ECHO, 9, 1 << 30};
	uint8_t buf[CELL_FRAME_HDR_LEN], payload[4096];
	char msg[128];
	int len;

	cell_frame_hdr_pack(&h, buf);
	assert_int_equal(write(f->raw, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	len = read_frame(f, &h, payload);
	assert_true(len >= 4);
	assert_int_equal(h.id, 9);
	assert_true(h.flags & CELL_FRAME_ERROR);
	assert_int_equal(
		cell_frame_error_unpack(payload, (size_t)len, msg, sizeof(msg)),
		EMSGSIZE);
	spin(f, 20);
	assert_int_equal(f->srv.closed, 1);
	assert_int_equal(f->srv.close_reason, -EMSGSIZE);
	assert_int_equal(f->srv.echoes, 0);
}

/* Garbage bytes close the connection without a reply or a handler call. */
static void test_rpc_garbage_closes(void **state)
{
	struct fixture *f = *state;
	const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct cell_frame_hdr h;
	uint8_t payload[4096];

	assert_int_equal(write(f->raw, junk, sizeof(junk)),
			 (ssize_t)sizeof(junk));
	assert_int_equal(read_frame(f, &h, payload), -1);
	assert_int_equal(f->srv.closed, 1);
	assert_int_equal(f->srv.close_reason, -EBADMSG);
	assert_int_equal(f->srv.echoes, 0);
}

/* An unknown type and an undecodable payload get error replies and the
 * connection keeps serving. */
static void test_rpc_unknown_and_invalid_get_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[512], payload[4096];
	const uint8_t bad[] = {0x0a, 0x50, 'x'}; /* length past the end */
	struct cell_frame_hdr h;
	char msg[128];
	uint64_t e0[CELL_RPC_ERR_KINDS], e1[CELL_RPC_ERR_KINDS];
	size_t n;
	int len;
	char *id;

	cell_rpc_errors(e0);
	n = frame(buf, 999, 5, NULL, "", 0);
	assert_int_equal(write(f->raw, buf, n), (ssize_t)n);
	len = read_frame(f, &h, payload);
	assert_true(len >= 4);
	assert_int_equal(h.id, 5);
	assert_int_equal(
		cell_frame_error_unpack(payload, (size_t)len, msg, sizeof(msg)),
		ENOSYS);
	assert_non_null(strstr(msg, "999"));

	n = frame(buf, T_ECHO, 6, NULL, bad, sizeof(bad));
	assert_int_equal(write(f->raw, buf, n), (ssize_t)n);
	len = read_frame(f, &h, payload);
	assert_int_equal(h.id, 6);
	assert_int_equal(
		cell_frame_error_unpack(payload, (size_t)len, msg, sizeof(msg)),
		EBADMSG);

	n = echo_frame(buf, 8, "still-here");
	assert_int_equal(write(f->raw, buf, n), (ssize_t)n);
	len = read_frame(f, &h, payload);
	assert_int_equal(h.id, 8);
	id = reply_id(payload, len);
	assert_string_equal(id, "still-here");
	free(id);
	assert_int_equal(f->srv.closed, 0);
	/* counted by kind (/metrics: cellmon_rpc_errors_total) */
	cell_rpc_errors(e1);
	assert_true(e1[CELL_RPC_ERR_UNKNOWN_TYPE] ==
		    e0[CELL_RPC_ERR_UNKNOWN_TYPE] + 1);
	assert_true(e1[CELL_RPC_ERR_UNDECODABLE] ==
		    e0[CELL_RPC_ERR_UNDECODABLE] + 1);
	assert_true(e1[CELL_RPC_ERR_TIMEOUT] == e0[CELL_RPC_ERR_TIMEOUT]);
}

struct result {
	int done;
	int status;
	char text[128];
};

static void on_reply(int status, const ProtobufCMessage *msg,
		     const char *errmsg, void *arg)
{
	struct result *r = arg;

	r->done++;
	r->status = status;
	if (status)
		snprintf(r->text, sizeof(r->text), "%s", errmsg);
	else
		snprintf(r->text, sizeof(r->text), "%llu",
			 (unsigned long long)((const Cellmon__NodePingReply *)
						      msg)
				 ->rtt_us);
}

static struct cell_rpc_conn *client(struct fixture *f)
{
	struct cell_rpc_conn *c;

	assert_int_equal(cell_rpc_conn_create(f->base, f->raw, &f->ccfg, &c),
			 0);
	f->raw = -1; /* owned by c now */
	return c;
}

static void answer(struct cell_rpc_call *call, uint64_t value)
{
	Cellmon__NodePingReply r = CELLMON__NODE_PING_REPLY__INIT;

	r.rtt_us = value;
	cell_rpc_reply(call, T_DREPLY, &r.base);
}

/* Replies answered out of order reach the right callbacks, once each. */
static void test_rpc_replies_out_of_order_matched(void **state)
{
	struct fixture *f = *state;
	struct cell_rpc_conn *c = client(f);
	Cellmon__NodePingRequest req = CELLMON__NODE_PING_REQUEST__INIT;
	struct result a = {0}, b = {0};

	req.id = "x";
	assert_int_equal(cell_rpc_request(c, T_DEFER, &req.base, T_DREPLY, 1000,
					  on_reply, &a),
			 0);
	assert_int_equal(cell_rpc_request(c, T_DEFER, &req.base, T_DREPLY, 1000,
					  on_reply, &b),
			 0);
	spin(f, 10);
	assert_int_equal(f->srv.ndeferred, 2);
	answer(f->srv.deferred[1], 222);
	answer(f->srv.deferred[0], 111);
	spin(f, 10);
	assert_int_equal(a.done, 1);
	assert_int_equal(b.done, 1);
	assert_string_equal(a.text, "111");
	assert_string_equal(b.text, "222");
	cell_rpc_conn_close(c);
}

/* An unanswered request times out once; closing the connection fails the
 * other pending request with -ECONNRESET; late answers are dropped. */
static void test_rpc_timeout_and_close_fail_pending(void **state)
{
	struct fixture *f = *state;
	struct cell_rpc_conn *c = client(f);
	Cellmon__NodePingRequest req = CELLMON__NODE_PING_REQUEST__INIT;
	struct result a = {0}, b = {0};
	uint64_t start = ts_now_ms(), e0[CELL_RPC_ERR_KINDS],
		 e1[CELL_RPC_ERR_KINDS];

	cell_rpc_errors(e0);
	req.id = "x";
	assert_int_equal(cell_rpc_request(c, T_DEFER, &req.base, T_DREPLY, 50,
					  on_reply, &a),
			 0);
	assert_int_equal(cell_rpc_request(c, T_DEFER, &req.base, T_DREPLY,
					  60000, on_reply, &b),
			 0);
	while (!a.done && ts_now_ms() - start < 2000)
		spin(f, 1);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.status, -ETIMEDOUT);
	assert_int_equal(b.done, 0);
	cell_rpc_conn_close(c);
	assert_int_equal(b.done, 1);
	assert_int_equal(b.status, -ECONNRESET);
	cell_rpc_errors(e1);
	assert_true(e1[CELL_RPC_ERR_TIMEOUT] == e0[CELL_RPC_ERR_TIMEOUT] + 1);
	assert_true(e1[CELL_RPC_ERR_CONN_LOST] ==
		    e0[CELL_RPC_ERR_CONN_LOST] + 1);
	spin(f, 10);
	assert_int_equal(f->srv.closed, 1);
	/* The server answers after the peer left: dropped, no crash. */
	answer(f->srv.deferred[0], 1);
	answer(f->srv.deferred[1], 2);
	assert_int_equal(a.done, 1);
	assert_int_equal(b.done, 1);
}

/* An error reply reaches the caller with the peer's code and message. */
static void test_rpc_error_reply_delivered(void **state)
{
	struct fixture *f = *state;
	struct cell_rpc_conn *c = client(f);
	Cellmon__StatusRequest req = CELLMON__STATUS_REQUEST__INIT;
	struct result a = {0};

	/* The server has no Status method. */
	assert_int_equal(cell_rpc_request(c, CELLMON__MSG_TYPE__MSG_STATUS,
					  &req.base,
					  CELLMON__MSG_TYPE__MSG_STATUS_REPLY,
					  1000, on_reply, &a),
			 0);
	for (int i = 0; i < 200 && !a.done; i++)
		spin(f, 1);
	assert_int_equal(a.done, 1);
	assert_int_equal(a.status, -ENOSYS);
	assert_non_null(strstr(a.text, "unknown message type"));
	cell_rpc_conn_close(c);
}

static void *accept_read_close(void *arg)
{
	int lfd = *(int *)arg, fd = accept(lfd, NULL, NULL);
	char b[64];

	if (fd >= 0) {
		(void)!read(fd, b, sizeof(b)); /* the request, unanswered */
		close(fd);
	}
	return NULL;
}

/* A synchronous call whose peer closes the connection without answering
 * fails with a message; the connection, freed when it closed, is not
 * touched again (ASan caught cellctl doing so). */
static void test_rpc_call_sync_peer_closes(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	Cellmon__NodePingRequest req = CELLMON__NODE_PING_REQUEST__INIT;
	struct cell_rpc_config cfg = {.types = cellproto_types};
	ProtobufCMessage *reply = NULL;
	char addr[64], err[200];
	pthread_t t;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), rc;

	(void)state;
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	assert_int_equal(pthread_create(&t, NULL, accept_read_close, &lfd), 0);
	req.id = "x";
	rc = cell_rpc_call_sync(addr, &cfg, T_DEFER, &req.base, T_DREPLY, 5000,
				&reply, err, sizeof(err));
	pthread_join(t, NULL);
	close(lfd);
	assert_int_not_equal(rc, 0);
	assert_null(reply);
	assert_true(err[0] != '\0');
}

struct local_seen {
	int calls, status;
	char id[32], err[64];
	int had_conn;
};

static void on_local(int status, const ProtobufCMessage *reply,
		     const char *errmsg, void *arg)
{
	struct local_seen *l = arg;

	l->calls++;
	l->status = status;
	if (reply)
		snprintf(l->id, sizeof(l->id), "%s",
			 ((const Cellmon__NodeInfoReply *)reply)->node->id);
	if (errmsg)
		snprintf(l->err, sizeof(l->err), "%s", errmsg);
}

/* Fails a NodeInfo call, and notes whether it had a connection. */
static void on_refuse(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		      void *arg)
{
	struct local_seen *l = arg;

	(void)msg;
	l->had_conn = cell_rpc_call_conn(call) != NULL;
	cell_rpc_reply_error(call, ENOENT, "no node '%s'", "x");
}

/* cell_rpc_call_local: the method's reply or error reaches the callback,
 * the deferred one when it is answered, an unknown type none. */
static void test_rpc_call_local(void **state)
{
	struct server srv = {0};
	struct local_seen l = {0}, e = {0};
	const struct cell_rpc_method refuse[] = {{T_ECHO, on_refuse},
						 {0, NULL}};
	Cellmon__NodeInfoRequest req = CELLMON__NODE_INFO_REQUEST__INIT;

	(void)state;
	req.id = "node7";
	assert_int_equal(cell_rpc_call_local(methods, T_ECHO, &req.base, &srv,
					     on_local, &l),
			 0);
	assert_int_equal(l.calls, 1);
	assert_int_equal(l.status, 0);
	assert_string_equal(l.id, "node7");
	assert_int_equal(srv.echoes, 1);

	e.had_conn = -1;
	assert_int_equal(cell_rpc_call_local(refuse, T_ECHO, &req.base, &e,
					     on_local, &e),
			 0);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.status, -ENOENT); /* positive or not: -errno */
	assert_string_equal(e.err, "no node 'x'");
	assert_int_equal(e.had_conn, 0);

	memset(&l, 0, sizeof(l));
	assert_int_equal(cell_rpc_call_local(methods, T_DEFER, &req.base, &srv,
					     on_local, &l),
			 0);
	assert_int_equal(l.calls, 0);
	assert_int_equal(srv.ndeferred, 1);
	cell_rpc_reply_error(srv.deferred[0], -ETIMEDOUT, "later");
	assert_int_equal(l.calls, 1);
	assert_int_equal(l.status, -ETIMEDOUT);

	memset(&l, 0, sizeof(l));
	assert_int_equal(cell_rpc_call_local(methods,
					     CELLMON__MSG_TYPE__MSG_STATUS,
					     &req.base, &srv, on_local, &l),
			 -ENOSYS);
	assert_int_equal(l.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_rpc_frame_split_across_reads_decoded, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_rpc_frames_several_per_read_all_answered, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_rpc_oversize_frame_closes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rpc_garbage_closes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_rpc_unknown_and_invalid_get_errors, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_rpc_replies_out_of_order_matched, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_rpc_timeout_and_close_fail_pending, setup,
			teardown),
		cmocka_unit_test(test_rpc_call_sync_peer_closes),
		cmocka_unit_test(test_rpc_call_local),
		cmocka_unit_test_setup_teardown(test_rpc_error_reply_delivered,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
