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
#include <unistd.h>

#include "agent_disk.h"
#include "cellproto/cellproto.h"
#include "vdisk/nbdc.h"

#define MAP_TIMEOUT_MS 2000

struct agent_disk {
	struct agent_cache *cache;
	char name[64];
	bool ro;
	uint64_t size, nblocks;
	char below[96];	    /* "" : do not cache */
	uint8_t *top;	    /* blocks the disk holds itself (atomic bytes) */
	pthread_mutex_t mu; /* one NBD request at a time */
	int fd;
};

/* Asks the disk server for the map; fills d and the NBD address. */
static int fetch_map(struct agent_disk *d, const char *admin, char *server,
		     size_t slen, char *err, size_t len)
{
	struct cell_rpc_config cfg = {cellproto_types, NULL, NULL, 0, "agent"};
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
		    bool ro, struct agent_disk **out, char *err, size_t len)
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
	rc = fetch_map(d, admin, server, sizeof(server), err, len);
	if (!rc) {
		d->fd = nbdc_open(server, name, &size);
		if (d->fd < 0 || size != d->size) {
			snprintf(err, len,
				 "disk %s: cannot open it over NBD at %s", name,
				 server);
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
		close(d->fd);
	}
	pthread_mutex_destroy(&d->mu);
	free(d->top);
	free(d);
}

uint64_t agent_disk_size(const struct agent_disk *d)
{
	return d->size;
}

static int nbd_io(struct agent_disk *d, uint16_t type, uint64_t off,
		  uint32_t len, void *buf)
{
	int rc;

	pthread_mutex_lock(&d->mu);
	rc = nbdc_request(d->fd, type, 0, off, len, buf, NBDC_REQUEST_MAGIC);
	pthread_mutex_unlock(&d->mu);
	if (rc < 0)
		return -EIO; /* the connection is gone */
	return rc ? -rc : 0;
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
			for (uint32_t i = 0; i < n; i++)
				agent_cache_note_zero(d->cache);
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
