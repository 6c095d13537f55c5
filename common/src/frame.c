/*
 * Frame header and error-payload encoding (see cell/frame.h).
 */
#include <errno.h>
#include <string.h>

#include "cell/endian.h"
#include "cell/frame.h"

void cell_frame_hdr_pack(const struct cell_frame_hdr *h,
			 uint8_t out[CELL_FRAME_HDR_LEN])
{
	cell_put16(out, CELL_FRAME_MAGIC);
	out[2] = h->version;
	out[3] = h->flags;
	cell_put16(out + 4, h->type);
	cell_put16(out + 6, 0);
	cell_put32(out + 8, h->id);
	cell_put32(out + 12, h->len);
}

int cell_frame_hdr_unpack(const uint8_t in[CELL_FRAME_HDR_LEN],
			  uint32_t max_payload, struct cell_frame_hdr *h)
{
	if (cell_get16(in) != CELL_FRAME_MAGIC)
		return -EBADMSG;
	h->version = in[2];
	h->flags = in[3];
	h->type = cell_get16(in + 4);
	h->id = cell_get32(in + 8);
	h->len = cell_get32(in + 12);
	if (h->version != CELL_FRAME_VERSION)
		return -EPROTONOSUPPORT;
	if ((h->flags & ~CELL_FRAME_FLAGS_KNOWN) || cell_get16(in + 6) != 0)
		return -EBADMSG;
	if ((h->flags & CELL_FRAME_ERROR) && !(h->flags & CELL_FRAME_REPLY))
		return -EBADMSG;
	if (h->len > max_payload)
		return -EMSGSIZE;
	return 0;
}

size_t cell_frame_error_pack(int code, const char *msg, uint8_t *out)
{
	size_t n = msg ? strnlen(msg, CELL_FRAME_ERRMSG_MAX) : 0;

	cell_put32(out, (uint32_t)(code < 0 ? -code : code));
	if (n)
		memcpy(out + 4, msg, n);
	return 4 + n;
}

int cell_frame_error_unpack(const uint8_t *p, size_t len, char *msg,
			    size_t msglen)
{
	size_t n;
	uint32_t code;

	if (msglen)
		msg[0] = '\0';
	if (len < 4)
		return 0;
	code = cell_get32(p);
	n = len - 4;
	if (msglen) {
		if (n >= msglen)
			n = msglen - 1;
		memcpy(msg, p + 4, n);
		msg[n] = '\0';
		/* The message goes into logs and terminals: no control bytes.
		 */
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
				msg[i] = '?';
		}
	}
	if (code == 0 || code > 4095)
		code = EPROTO;
	return (int)code;
}
