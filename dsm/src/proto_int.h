/*
 * What the engine's files share (proto.c: requester, holder, the message
 * entry point; proto_home.c: the directory at a page's home;
 * proto_msg.c: sending, the message pool, the wire header): the per-page
 * records and the helpers both sides send and queue with. Calls go
 * proto.c -> proto_home.c -> proto_msg.c. Not for use outside the
 * engine.
 */
#ifndef DSM_PROTO_INT_H
#define DSM_PROTO_INT_H

#include "proto.h"

struct dsm__page {
	uint8_t state;	     /* enum dsm__page_state */
	uint8_t pending;     /* our request out: 0, DSM_S (read), DSM_M */
	uint8_t got_grant;   /* its GRANT arrived (acks may be missing) */
	uint8_t grant_write; /* ... and it was for M */
	uint8_t has_deferred;
	uint16_t acks_needed;
	uint16_t acks_got;
	uint16_t done_to; /* home running the transaction of our grant */
	uint64_t version;
	uint64_t acquired_ms;
	uint64_t requested_ms;	  /* when our request (pending) went out */
	struct dsm__msg deferred; /* FWD_* or INV held by the time window */
	struct dsm__page_counters c;
};

struct dsm__dir {
	uint16_t owner; /* DSM_NO_NODE when no M holder */
	uint8_t busy;
	uint8_t untouched;
	uint64_t copyset;
	uint64_t replicas; /* readers a read miss also pushes to (policy) */
	uint64_t version;
	uint16_t cur;	      /* requester of the running transaction */
	uint32_t home_seq;    /* moves of this page's home so far */
	int32_t qhead, qtail; /* waiting requests (home) */
};

struct dsm__qent {
	struct dsm__msg m;
	int32_t next;
};

static inline uint64_t bit(uint16_t node)
{
	return (uint64_t)1 << node;
}

static inline int lowest(uint64_t set)
{
	return set ? __builtin_ctzll(set) : -1;
}

/* proto_msg.c */
/* Stamps m with the region and this node's epoch and sends it. */
int dsm__proto_send(struct dsm__engine *r, uint16_t to, struct dsm__msg *m,
		    const void *data);
int dsm__proto_send_simple(struct dsm__engine *r, uint16_t to, uint8_t type,
			   uint32_t page, uint16_t node);
/* Lists of messages in the engine's pool (a home's waiting requests, a
 * requester's parked ones). push: -ENOBUFS when the pool is out. */
int dsm__proto_list_push(struct dsm__engine *r, int32_t *head, int32_t *tail,
			 const struct dsm__msg *m);
bool dsm__proto_list_pop(struct dsm__engine *r, int32_t *head, int32_t *tail,
			 struct dsm__msg *out);

/* proto_home.c */
/* A READ_REQ, WRITE_REQ, MOVE_HOME or PUSH at the page's home. */
void dsm__home_request(struct dsm__engine *r, const struct dsm__msg *m);
/* The requester's DONE: the transaction is over, the next may start. */
void dsm__home_done(struct dsm__engine *r, const struct dsm__msg *m);
/* Whether the page is still inside its holder's time window. */
bool dsm__in_time_window(const struct dsm__engine *r,
			 const struct dsm__page *pg);

#endif
