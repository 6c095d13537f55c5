/*
 * Fuzz target: the frame decoder and payload unpacking, exactly as a
 * daemon runs them. The input is written into one end of a socketpair
 * whose other end is a struct cell_rpc_conn that answers every request
 * type of the registry (with an error: handlers are not under test), so
 * header checks, buffering, type dispatch and protobuf unpacking all see
 * the bytes.
 *
 * With -DCELLMON_FUZZ=ON and clang this links libFuzzer. Otherwise
 * fuzz_replay.c supplies main(): it replays the corpus and a seeded,
 * bounded set of mutations of it under ctest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cell/frame.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "fuzz.h"

static int handled;

static void on_any(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	(void)arg;
	/* Re-encode the decoded message so sanitizers see any bad field. */
	handled += protobuf_c_message_get_packed_size(msg) > 0;
	cell_rpc_reply_error(call, -EPERM, "fuzz");
}

static struct cell_rpc_method methods[64];

static void init_methods(void)
{
	size_t n = 0;

	if (methods[0].fn)
		return;
	for (const struct cell_rpc_msgtype *t = cellproto_types;
	     t->desc && n + 1 < sizeof(methods) / sizeof(methods[0]); t++)
		methods[n++] = (struct cell_rpc_method){t->type, on_any};
}

static void closed(struct cell_rpc_conn *c, int reason, void *arg)
{
	(void)c;
	(void)reason;
	*(int *)arg = 1;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct cell_rpc_config cfg = {cellproto_types, methods, NULL, 4096,
				      "fuzz"};
	struct event_base *base;
	struct cell_rpc_conn *c;
	int sv[2], gone = 0;

	init_methods();
	cell_log_set_level(CELL_LOG_OFF);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	base = event_base_new();
	if (cell_rpc_conn_create(base, sv[0], &cfg, &c)) {
		close(sv[0]);
		close(sv[1]);
		event_base_free(base);
		return 0;
	}
	cell_rpc_conn_set_close_cb(c, closed, &gone);
	fuzz_feed(base, sv[1], data, size, &gone);
	if (!gone)
		cell_rpc_conn_close(c);
	close(sv[1]);
	event_base_free(base);
	return 0;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif

/* ---- built-in seeds: valid frames (the checked-in corpus in
 * tests/fuzz/corpus/frame was written from these) ---- */

static size_t put_frame(uint8_t *buf, uint16_t type, uint8_t flags, uint32_t id,
			const ProtobufCMessage *msg)
{
	struct cell_frame_hdr h = {CELL_FRAME_VERSION, flags, type, id, 0};
	size_t n = msg ? protobuf_c_message_pack(msg, buf + CELL_FRAME_HDR_LEN)
		       : 0;

	h.len = (uint32_t)n;
	cell_frame_hdr_pack(&h, buf);
	return CELL_FRAME_HDR_LEN + n;
}

/* Register; two heartbeats; a cell change; three queries back to back;
 * an error reply. */
size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
	Cellmon__RegisterRequest reg = CELLMON__REGISTER_REQUEST__INIT;
	Cellmon__Capacity capy = CELLMON__CAPACITY__INIT;
	Cellmon__HeartbeatRequest hb = CELLMON__HEARTBEAT_REQUEST__INIT;
	Cellmon__CellRequest cell = CELLMON__CELL_REQUEST__INIT;
	Cellmon__NodeInfoRequest ni = CELLMON__NODE_INFO_REQUEST__INIT;
	struct cell_frame_hdr h = {CELL_FRAME_VERSION,
				   CELL_FRAME_REPLY | CELL_FRAME_ERROR,
				   CELLMON__MSG_TYPE__MSG_STATUS_REPLY, 9, 0};
	size_t n;

	if (cap < 4096)
		return 0;
	capy.cpus = 2;
	capy.memory_mb = 1024;
	switch (i) {
	case 0:
		reg.protocol_version = 1;
		reg.node_id = "node1";
		reg.addr = "127.0.0.1";
		reg.capacity = &capy;
		reg.heartbeat_ms = 250;
		return put_frame(buf, CELLMON__MSG_TYPE__MSG_REGISTER, 0, 1,
				 &reg.base);
	case 1:
		hb.node_id = "node1";
		hb.incarnation = 3;
		hb.capacity = &capy;
		n = put_frame(buf, CELLMON__MSG_TYPE__MSG_HEARTBEAT, 0, 2,
			      &hb.base);
		return n + put_frame(buf + n, CELLMON__MSG_TYPE__MSG_HEARTBEAT,
				     0, 3, &hb.base);
	case 2:
		cell.name = "c1";
		cell.node = "node1";
		return put_frame(buf, CELLMON__MSG_TYPE__MSG_CELL_ADD_NODE, 0,
				 4, &cell.base);
	case 3:
		ni.id = "node2";
		n = put_frame(buf, CELLMON__MSG_TYPE__MSG_NODE_INFO, 0, 5,
			      &ni.base);
		n += put_frame(buf + n, CELLMON__MSG_TYPE__MSG_STATUS, 0, 6,
			       NULL);
		return n + put_frame(buf + n, CELLMON__MSG_TYPE__MSG_NODE_LIST,
				     0, 7, NULL);
	case 4:
		h.len = (uint32_t)cell_frame_error_pack(
			2, "no such thing", buf + CELL_FRAME_HDR_LEN);
		cell_frame_hdr_pack(&h, buf);
		return CELL_FRAME_HDR_LEN + h.len;
	}
	return 0;
}
