/*
 * What both sides of the coherence engine (proto.c, proto_home.c) use to
 * talk: sending a message stamped with the region and this node's epoch
 * (through the env's send), the pool of queued messages (a home's
 * waiting requests, a requester's parked ones), and the fixed 48-byte
 * wire header. A leaf: it calls only the env.
 */
#include <errno.h>

#include "cell/endian.h"
#include "cell/log.h"
#include "proto_int.h"

#define MOD "dsm"

int dsm__proto_send(struct dsm__engine *r, uint16_t to, struct dsm__msg *m,
		    const void *data)
{
	m->region = r->cfg.id;
	m->epoch = r->epoch;
	return r->cfg.ops->send(r->cfg.env, to, m, data);
}

int dsm__proto_send_simple(struct dsm__engine *r, uint16_t to, uint8_t type,
			   uint32_t page, uint16_t node)
{
	struct dsm__msg m = {
		.type = type, .from = r->cfg.self, .node = node, .page = page};

	return dsm__proto_send(r, to, &m, NULL);
}

/* Appends m to a list (queue or parked). -ENOBUFS when the pool is out. */
int dsm__proto_list_push(struct dsm__engine *r, int32_t *head, int32_t *tail,
			 const struct dsm__msg *m)
{
	int32_t i = r->queue_free;

	if (i < 0) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD,
			    "request queue full region=%llu page=%u",
			    (unsigned long long)r->cfg.id, m->page);
		return -ENOBUFS;
	}
	r->queue_free = r->queue[i].next;
	r->queue_used++;
	r->queue[i].m = *m;
	r->queue[i].next = -1;
	if (*tail >= 0)
		r->queue[*tail].next = i;
	else
		*head = i;
	*tail = i;
	return 0;
}

bool dsm__proto_list_pop(struct dsm__engine *r, int32_t *head, int32_t *tail,
			 struct dsm__msg *out)
{
	int32_t i = *head;

	if (i < 0)
		return false;
	*out = r->queue[i].m;
	*head = r->queue[i].next;
	if (*head < 0)
		*tail = -1;
	r->queue[i].next = r->queue_free;
	r->queue_free = i;
	r->queue_used--;
	return true;
}

/*
 * Wire layout, big-endian: type(1) flags(1) from(2) node(2) acks(2)
 * epoch(4) page(4) window(4) region(8) version(8) copyset(8) pad(4).
 */
void dsm__msg_pack(const struct dsm__msg *m, uint8_t out[DSM_MSG_WIRE_LEN])
{
	out[0] = m->type;
	out[1] = m->flags;
	cell_put16(out + 2, m->from);
	cell_put16(out + 4, m->node);
	cell_put16(out + 6, m->acks);
	cell_put32(out + 8, m->epoch);
	cell_put32(out + 12, m->page);
	cell_put32(out + 16, m->window);
	cell_put64(out + 20, m->region);
	cell_put64(out + 28, m->version);
	cell_put64(out + 36, m->copyset);
	cell_put32(out + 44, 0);
}

void dsm__msg_unpack(const uint8_t in[DSM_MSG_WIRE_LEN], struct dsm__msg *m)
{
	m->type = in[0];
	m->flags = in[1];
	m->from = cell_get16(in + 2);
	m->node = cell_get16(in + 4);
	m->acks = cell_get16(in + 6);
	m->epoch = cell_get32(in + 8);
	m->page = cell_get32(in + 12);
	m->window = cell_get32(in + 16);
	m->region = cell_get64(in + 20);
	m->version = cell_get64(in + 28);
	m->copyset = cell_get64(in + 36);
}

const char *dsm__msg_name(uint8_t type)
{
	static const char *const names[DSM_MSG_MAX] = {
		[DSM_MSG_READ_REQ] = "READ_REQ",
		[DSM_MSG_WRITE_REQ] = "WRITE_REQ",
		[DSM_MSG_FWD_READ] = "FWD_READ",
		[DSM_MSG_FWD_WRITE] = "FWD_WRITE",
		[DSM_MSG_INV] = "INV",
		[DSM_MSG_INV_ACK] = "INV_ACK",
		[DSM_MSG_GRANT] = "GRANT",
		[DSM_MSG_DONE] = "DONE",
		[DSM_MSG_MOVE_HOME] = "MOVE_HOME",
		[DSM_MSG_PUSH] = "PUSH",
		[DSM_MSG_DIR_XFER] = "DIR_XFER",
		[DSM_MSG_HOME_UPDATE] = "HOME_UPDATE",
	};

	return type < DSM_MSG_MAX && names[type] ? names[type] : "?";
}

bool dsm__msg_forwardable(uint8_t type)
{
	return type == DSM_MSG_READ_REQ || type == DSM_MSG_WRITE_REQ ||
	       type == DSM_MSG_MOVE_HOME || type == DSM_MSG_PUSH;
}
