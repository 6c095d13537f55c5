/*
 * The frame: how every control-plane message crosses a byte stream.
 *
 *   0      2       3       4       6          8       12      16
 *   +------+-------+-------+-------+----------+-------+-------+---------+
 *   |magic |version| flags | type  | reserved |  id   |  len  | payload |
 *   +------+-------+-------+-------+----------+-------+-------+---------+
 *
 * All fields big-endian. magic is 0xCE11; version is CELL_FRAME_VERSION;
 * type names the protobuf message in the payload (MsgType in
 * proto/common.proto; proto/cellproto.c maps each to its message);
 * id pairs a reply with its request; len is the payload length and is
 * checked against the receiver's cap before any payload byte is buffered
 * or allocated. An error reply (flags REPLY|ERROR) carries a 4-byte errno
 * code and a short UTF-8 message instead of a protobuf payload, so the
 * framing layer can report errors without knowing any message schema.
 *
 * Pure functions, any thread. docs/design/rpc.md has the full story.
 */
#ifndef CELL_FRAME_H
#define CELL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CELL_FRAME_MAGIC       0xCE11u
#define CELL_FRAME_VERSION     1u
#define CELL_FRAME_HDR_LEN     16u
#define CELL_FRAME_MAX_DEFAULT (1u << 20) /* 1 MiB payload cap */
#define CELL_FRAME_ERRMSG_MAX  512u

enum cell_frame_flags {
	CELL_FRAME_REPLY = 0x01, /* answers request `id` */
	CELL_FRAME_ERROR = 0x02, /* with REPLY: payload is code + message */
};
#define CELL_FRAME_FLAGS_KNOWN (CELL_FRAME_REPLY | CELL_FRAME_ERROR)

struct cell_frame_hdr {
	uint8_t version;
	uint8_t flags;
	uint16_t type;
	uint32_t id;
	uint32_t len;
};

void cell_frame_hdr_pack(const struct cell_frame_hdr *h,
			 uint8_t out[CELL_FRAME_HDR_LEN]);

/*
 * Decodes and checks a header. Returns 0; -EBADMSG for a bad magic, unknown
 * flags or nonzero reserved bits; -EPROTONOSUPPORT for another version;
 * -EMSGSIZE when len exceeds max_payload. *h is filled in every case but
 * the bad magic, so the caller can answer request h->id with an error.
 */
int cell_frame_hdr_unpack(const uint8_t in[CELL_FRAME_HDR_LEN],
			  uint32_t max_payload, struct cell_frame_hdr *h);

/*
 * Error payloads. pack writes at most 4 + CELL_FRAME_ERRMSG_MAX bytes and
 * returns the length. unpack returns the positive errno code (0 if the
 * payload is too short) and copies the message, NUL-terminated.
 */
size_t cell_frame_error_pack(int code, const char *msg, uint8_t *out);
int cell_frame_error_unpack(const uint8_t *p, size_t len, char *msg,
			    size_t msglen);

#endif
