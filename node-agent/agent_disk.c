/*
 * One VM's open disk (agent_disk.h): the map from the disk server, an
 * NBD connection, and the routing of each block between the server and
 * the node cache.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_disk.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "vdisk/nbdc.h"

#define MAP_TIMEOUT_MS	 2000
#define RECONNECT_FOR_MS 20000	     /* a restarting disk server */
#define PENDING_MAX	 (16u << 20) /* unflushed bytes kept for replay */

/* A write the server acknowledged but no flush has covered yet: kept so
 * it can be sent again if the server restarts before the next flush. */
struct pending {
	struct pending *next;
	uint64_t off;
	uint32_t len;
	uint8_t data[];
};

struct agent_disk {
	struct agent_cache *cache;
	char name[64];
	char export[96]; /* name, or name@epoch */
	bool ro;
	uint64_t size, nblocks;
	char below[96];	    /* "" : do not cache */
	uint8_t *top;	    /* blocks the disk holds itself (atomic bytes) */
	pthread_mutex_t mu; /* one NBD request at a time; guards below */
	int fd;
	char server[160];
	struct pending *pend, **pend_tail;
	uint64_t pend_bytes;
};

static struct cell_tls *disk_tls;

void agent_disk_set_tls(struct cell_tls *t)
{
	disk_tls = t;
}

/* Asks the disk server for the map; fills d and the NBD address. */
static int fetch_map(struct agent_disk *d, const char *admin, char *server,
		     size_t slen, char *err, size_t len)
{
	struct cell_rpc_config cfg = {.types = cellproto_types,
				      .log_module = "agent",
				      .tls = disk_tls};
	Cellmon__DiskRequest q = CELLMON__DISK_REQUEST__INIT;
	Cellmon__DiskMapReply *r = NULL;
	char why[600];
	int rc;

	q.name = d->name;
	rc = cell_rpc_call_sync(admin, &cfg, CELLMON__MSG_TYPE__MSG_DISK_MAP,
				&q.base, CELLMON__MSG_TYPE__MSG_DISK_MAP_REPLY,
				MAP_TIMEOUT_MS, (ProtobufCMessage **)&r, why,
				sizeof(why));
	if (rc) {
		snprintf(err, len, "disk %s: %s", d->name, why);
		return rc;
	}
	d->size = r->size;
	d->nblocks = r->size / AGENT_BLOCK;
	snprintf(d->below, sizeof(d->below), "%s", r->below);
	snprintf(server, slen, "%s", r->server);
	d->top = calloc(d->nblocks / 8 + 1, 1);
	if (!d->top)
		rc = -ENOMEM;
	else if (r->top.len < (d->nblocks + 7) / 8)
		rc = -EPROTO;
	else
		memcpy(d->top, r->top.data, (d->nblocks + 7) / 8);
	if (rc)
		snprintf(err, len, "disk %s: bad map from %s", d->name, admin);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

int agent_disk_open(struct agent_cache *c, const char *admin, const char *name,
		    bool ro, uint64_t epoch, struct agent_disk **out, char *err,
		    size_t len)
{
	struct agent_disk *d = calloc(1, sizeof(*d));
	char server[160];
	uint64_t size = 0;
	int rc;

	if (!d)
		return -ENOMEM;
	d->cache = c;
	d->ro = ro;
	d->fd = -1;
	pthread_mutex_init(&d->mu, NULL);
	snprintf(d->name, sizeof(d->name), "%s", name);
	if (epoch)
		snprintf(d->export, sizeof(d->export), "%s@%llu", name,
			 (unsigned long long)epoch);
	else
		snprintf(d->export, sizeof(d->export), "%s", name);
	d->pend_tail = &d->pend;
	rc = fetch_map(d, admin, server, sizeof(server), err, len);
	snprintf(d->server, sizeof(d->server), "%s", server);
	if (!rc) {
		char why[300];

		d->fd = nbdc_open_tls(server, d->export, &size, disk_tls, why,
				      sizeof(why));
		if (d->fd < 0 || size != d->size) {
			snprintf(err, len,
				 "disk %s: cannot open it over NBD%s at %s: %s",
				 name, disk_tls ? " with TLS" : "", server,
				 d->fd < 0 ? why : "its size changed");
			rc = -EIO;
		}
	}
	if (rc) {
		agent_disk_close(d);
		return rc;
	}
	*out = d;
	return 0;
}

void agent_disk_close(struct agent_disk *d)
{
	if (!d)
		return;
	if (d->fd >= 0) {
		if (!d->ro)
			nbdc_request(d->fd, NBDC_FLUSH, 0, 0, 0, NULL,
				     NBDC_REQUEST_MAGIC);
		nbdc_request(d->fd, NBDC_DISC, 0, 0, 0, NULL,
			     NBDC_REQUEST_MAGIC);
		nbdc_close(d->fd);
	}
	while (d->pend) {
		struct pending *p = d->pend;

		d->pend = p->next;
		free(p);
	}
	pthread_mutex_destroy(&d->mu);
	free(d->top);
	free(d);
}

static void pending_clear(struct agent_disk *d)
{
	while (d->pend) {
		struct pending *p = d->pend;

		d->pend = p->next;
		free(p);
	}
	d->pend_tail = &d->pend;
	d->pend_bytes = 0;
}

/* With d->mu held: a new connection to the same disk, then every
 * acknowledged but unflushed write again, so that a later flush covers
 * them. Retries for RECONNECT_FOR_MS (a disk server restarting). */
static int reconnect(struct agent_disk *d)
{
	struct timespec t0, now;
	unsigned backoff_ms = 50;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		uint64_t size = 0;
		int ok = 1;

		char why[300];

		if (d->fd >= 0)
			nbdc_close(d->fd);
		d->fd = nbdc_open_tls(d->server, d->export, &size, disk_tls,
				      why, sizeof(why));
		if (d->fd >= 0 && size != d->size) {
			nbdc_close(d->fd);
			d->fd = -1;
		}
		for (struct pending *p = d->pend; d->fd >= 0 && p && ok;
		     p = p->next)
			ok = nbdc_request(d->fd, NBDC_WRITE, 0, p->off, p->len,
					  p->data, NBDC_REQUEST_MAGIC) == 0;
		if (d->fd >= 0 && ok) {
			size_t n = 0;

			for (struct pending *p = d->pend; p; p = p->next)
				n++;
			CELL_WARN("agent",
				  "disk %s: reconnected to %s; sent again %zu "
				  "unflushed writes (%llu bytes)",
				  d->name, d->server, n,
				  (unsigned long long)d->pend_bytes);
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 +
			    (now.tv_nsec - t0.tv_nsec) / 1000000 >
		    RECONNECT_FOR_MS)
			return -EIO;
		usleep(backoff_ms * 1000);
		backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
	}
}

uint64_t agent_disk_size(const struct agent_disk *d)
{
	return d->size;
}

bool agent_disk_readonly(const struct agent_disk *d)
{
	return d->ro;
}

/* One request; a lost connection is made again (and the request sent
 * again: reads, writes at an offset and flushes may be repeated). An
 * acknowledged write is kept until a flush covers it; a flush clears. */
static int nbd_io(struct agent_disk *d, uint16_t type, uint64_t off,
		  uint32_t len, void *buf)
{
	int rc;

	pthread_mutex_lock(&d->mu);
	rc = d->fd >= 0 ? nbdc_request(d->fd, type, 0, off, len, buf,
				       NBDC_REQUEST_MAGIC)
			: -ECONNRESET;
	if (rc == -ECONNRESET && reconnect(d) == 0)
		rc = nbdc_request(d->fd, type, 0, off, len, buf,
				  NBDC_REQUEST_MAGIC);
	if (rc == 0 && type == NBDC_FLUSH)
		pending_clear(d);
	if (rc == 0 && type == NBDC_WRITE) {
		struct pending *p = malloc(sizeof(*p) + len);

		if (p) {
			*p = (struct pending){NULL, off, len};
			memcpy(p->data, buf, len);
			*d->pend_tail = p;
			d->pend_tail = &p->next;
			d->pend_bytes += len;
		}
		/* Out of memory, or too much unflushed: flush now, so no
		 * acknowledged write depends on a copy we do not have. */
		if (!p || d->pend_bytes > PENDING_MAX) {
			rc = nbdc_request(d->fd, NBDC_FLUSH, 0, 0, 0, NULL,
					  NBDC_REQUEST_MAGIC);
			if (rc == 0)
				pending_clear(d);
		}
	}
	pthread_mutex_unlock(&d->mu);
	if (rc == -ECONNRESET)
		return -EIO; /* the disk server is gone for good */
	return rc;
}

static int fill_run(void *arg, uint64_t first, uint32_t n, void *buf)
{
	return nbd_io(arg, NBDC_READ, first * AGENT_BLOCK, n * AGENT_BLOCK,
		      buf);
}

static bool own_block(const struct agent_disk *d, uint64_t b)
{
	return __atomic_load_n(&d->top[b / 8], __ATOMIC_ACQUIRE) &
	       (1u << (b % 8));
}

static bool range_ok(const struct agent_disk *d, uint64_t off, uint32_t len)
{
	return off % AGENT_BLOCK == 0 && len % AGENT_BLOCK == 0 &&
	       off <= d->size && len <= d->size - off;
}

/* How block b is read: 0 from the server, 1 through the cache, 2 as
 * zeros. */
static int route(const struct agent_disk *d, uint64_t b)
{
	if (own_block(d, b) || !d->below[0])
		return 0;
	return strcmp(d->below, "zero") == 0 ? 2 : 1;
}

/* Reads are cut into runs of blocks with the same route, each served
 * with one server request (or one cache call). */
int agent_disk_read(struct agent_disk *d, uint64_t off, void *buf, uint32_t len)
{
	uint64_t b = off / AGENT_BLOCK, end = (off + len) / AGENT_BLOCK;
	uint8_t *p = buf;

	if (!range_ok(d, off, len))
		return -EINVAL;
	while (b < end) {
		int how = route(d, b), rc;
		uint32_t n = 1;

		while (b + n < end && n < AGENT_RUN_MAX &&
		       route(d, b + n) == how)
			n++;
		if (how == 0) {
			rc = fill_run(d, b, n, p);
		} else if (how == 2) {
			memset(p, 0, (size_t)n * AGENT_BLOCK);
			agent_cache_note_zero(d->cache, n);
			rc = 0;
		} else {
			rc = agent_cache_read_run(d->cache, d->below, b, n, p,
						  fill_run, d);
		}
		if (rc)
			return rc;
		p += (size_t)n * AGENT_BLOCK;
		b += n;
	}
	return 0;
}

int agent_disk_write(struct agent_disk *d, uint64_t off, const void *buf,
		     uint32_t len)
{
	int rc;

	if (d->ro)
		return -EROFS;
	if (!range_ok(d, off, len))
		return -EINVAL;
	/* Own the blocks first: a read racing this write must not take the
	 * old bytes from below. */
	for (uint64_t b = off / AGENT_BLOCK; b < (off + len) / AGENT_BLOCK; b++)
		__atomic_or_fetch(&d->top[b / 8], (uint8_t)(1u << (b % 8)),
				  __ATOMIC_RELEASE);
	rc = nbd_io(d, NBDC_WRITE, off, len, (void *)buf);
	return rc;
}

int agent_disk_flush(struct agent_disk *d)
{
	return d->ro ? 0 : nbd_io(d, NBDC_FLUSH, 0, 0, NULL);
}
