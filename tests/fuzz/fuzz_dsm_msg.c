/*
 * Fuzz target: the DSM coherence engine (dsm/src/proto.c) under a hostile
 * peer. One engine, node 0 of a region of 3 members and 16 pages, takes
 * the input as a stream of messages off the wire (48-byte headers as a
 * node unpacks them, a page of data after a GRANT that says it carries
 * one), interleaved with its own read and write faults and deferred
 * retries when a byte says so. Whatever the peers claim (pages out of
 * range, unknown types, nodes that are not members, acks it never
 * asked for, grants out of the blue, directory transfers of nonsense),
 * the engine must refuse or absorb it: no crash, no read out of bounds,
 * nothing sent to a node outside the region.
 */
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "fuzz.h"
#include "proto.h"

#define NPAGES 16

static uint8_t page[DSM_PAGE];
static uint64_t now;

static int f_send(void *env, uint16_t to, const struct dsm__msg *m,
		  const void *data)
{
	(void)env;
	(void)m;
	(void)data;
	if (to > 2)
		abort(); /* only members get messages */
	return 0;
}

static const void *f_bytes(void *env, struct dsm__engine *r, uint32_t p)
{
	(void)env;
	(void)r;
	if (p >= NPAGES)
		abort();
	return page;
}

static void f_install(void *env, struct dsm__engine *r, uint32_t p,
		      enum dsm__install how, const void *data, bool write)
{
	(void)env;
	(void)r;
	(void)write;
	if (p >= NPAGES)
		abort();
	if (how == DSM_INSTALL_DATA && data)
		memcpy(page, data, DSM_PAGE); /* reads it all: ASan checks */
}

static void f_downgrade(void *env, struct dsm__engine *r, uint32_t p,
			uint32_t count)
{
	(void)env;
	(void)r;
	if (p >= NPAGES || count > NPAGES - p)
		abort();
}

static void f_invalidate(void *env, struct dsm__engine *r, uint32_t p)
{
	(void)env;
	(void)r;
	if (p >= NPAGES)
		abort();
}

static void f_fault_done(void *env, struct dsm__engine *r, uint32_t p)
{
	(void)env;
	(void)r;
	if (p >= NPAGES)
		abort();
}

static void f_defer(void *env, struct dsm__engine *r, uint32_t p, uint64_t when)
{
	(void)env;
	(void)r;
	(void)when;
	if (p >= NPAGES)
		abort();
}

static uint64_t f_now(void *env)
{
	(void)env;
	return now;
}

static const struct dsm__env_ops ops = DSM_ENV_OPS(f);

static const uint16_t members[3] = {0, 1, 2};

/* A header the way a peer would send it: from node 1, this region. */
static size_t seed_msg(uint8_t *buf, uint8_t type, uint8_t flags,
		       uint32_t page_no, uint16_t node)
{
	struct dsm__msg m = {.type = type,
			     .flags = flags,
			     .from = 1,
			     .node = node,
			     .epoch = 1,
			     .page = page_no,
			     .region = 7,
			     .version = 1};

	buf[0] = 0; /* a message, not a local fault */
	dsm__msg_pack(&m, buf + 1);
	return 1 + DSM_MSG_WIRE_LEN;
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
	static const uint8_t types[] = {DSM_MSG_READ_REQ,  DSM_MSG_WRITE_REQ,
					DSM_MSG_FWD_READ,  DSM_MSG_INV,
					DSM_MSG_GRANT,	   DSM_MSG_DONE,
					DSM_MSG_MOVE_HOME, DSM_MSG_DIR_XFER};
	size_t n = 0;

	if (i < 0 || (size_t)i >= sizeof(types) || cap < 3 * 49 + 2)
		return 0;
	buf[n++] = 1; /* a local write fault on page 3 */
	buf[n++] = 3;
	n += seed_msg(buf + n, types[i], DSM_GRANT_ZERO | DSM_GRANT_WRITE, 3,
		      0);
	n += seed_msg(buf + n, DSM_MSG_INV_ACK, 0, 3, 0);
	n += seed_msg(buf + n, types[(i + 1) % sizeof(types)], 0, (uint32_t)i,
		      2);
	return n;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct dsm__engine_config c = {.id = 7,
				       .npages = NPAGES,
				       .self = 0,
				       .members = members,
				       .nmembers = 3,
				       .policy = DSM_HOME_INTERLEAVE,
				       .stripe = 2,
				       .prefetch_max = 4,
				       .sample_slots = 8,
				       .ops = &ops};
	struct dsm__engine *e = calloc(1, sizeof(*e));
	size_t at = 0;

	cell_log_set_level(CELL_LOG_OFF); /* refusals are logged: expected */
	if (!e || dsm__engine_init(e, &c)) {
		free(e);
		return 0;
	}
	now = 1000;
	while (at < size) {
		uint8_t op = data[at++];
		struct dsm__msg m;

		now += op & 7;
		if (op % 4 == 1 && at < size) { /* a local fault */
			dsm__engine_fault(e, data[at] % (NPAGES + 2),
					  data[at] & 0x80);
			at++;
			continue;
		}
		if (op % 4 == 2 && at < size) { /* a deferred retry fires */
			dsm__engine_retry(e, data[at++] % NPAGES);
			continue;
		}
		if (size - at < DSM_MSG_WIRE_LEN)
			break;
		dsm__msg_unpack(data + at, &m);
		at += DSM_MSG_WIRE_LEN;
		if (m.type == DSM_MSG_GRANT && (m.flags & DSM_GRANT_DATA)) {
			if (size - at < DSM_PAGE)
				break;
			dsm__engine_receive(e, &m, data + at);
			at += DSM_PAGE;
		} else {
			dsm__engine_receive(e, &m, NULL);
		}
	}
	dsm__engine_fini(e);
	free(e);
	return 0;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif
