/*
 * libvdisk's open disks (vdisk/vdisk.h for the layout,
 * docs/design/vdisk.md for the write ordering; the store and the journal
 * are vdisk_store.c's and vdisk_journal.c's).
 *
 * In memory a disk is a stack of layers, its own on top, then the frozen
 * disks it was cloned from, then the base image. Each layer has a block
 * map (0: not here, 1: zeros, else 2 + index in its data file) and the
 * CRC32C of every mapped data block. Only the top layer is written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/fault.h"
#include "cell/fault.h"
#include "vdisk_int.h"

/* ---- open: layers, the journal replayed ---- */

static int layer_open(struct vdisk *d, struct layer *l, const char *name,
		      uint64_t size, bool top, char *err, size_t errlen)
{
	char path[4200];
	struct stat st;
	uint64_t data_blocks, keep = 0;
	int jfd, rc;

	snprintf(l->name, sizeof(l->name), "%s", name);
	l->nblocks = size / VDISK_BLOCK;
	l->map = calloc(l->nblocks, sizeof(*l->map));
	l->crc = calloc(l->nblocks, sizeof(*l->crc));
	if (!l->map || !l->crc)
		return vdisk__fail(err, errlen, -ENOMEM,
				   "out of memory for the "
				   "map of '%s'",
				   name);
	vdisk__disk_path(path, sizeof(path), d->store, name, "data");
	l->data_fd = open(path, (top ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (l->data_fd < 0)
		return vdisk__fail(err, errlen, -errno, "%s: %s", path,
				   strerror(errno));
	if (fstat(l->data_fd, &st))
		return vdisk__fail(err, errlen, -errno, "%s: %s", path,
				   strerror(errno));
	data_blocks = (uint64_t)st.st_size / VDISK_BLOCK;
	vdisk__disk_path(path, sizeof(path), d->store, name, "journal");
	jfd = open(path, (top ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (jfd < 0)
		return vdisk__fail(err, errlen, -errno, "%s: %s", path,
				   strerror(errno));
	rc = vdisk__replay(d, l, jfd, data_blocks, &keep, err, errlen);
	if (rc) {
		close(jfd);
		return rc;
	}
	if (!top) {
		close(jfd);
		return 0;
	}
	/* Cut the unflushed tail, so new records follow applied ones. */
	if (fstat(jfd, &st) == 0 && (uint64_t)st.st_size != keep &&
	    (ftruncate(jfd, (off_t)keep) || fdatasync(jfd))) {
		rc = -errno;
		close(jfd);
		return vdisk__fail(err, errlen, rc, "%s: %s", path,
				   strerror(-rc));
	}
	d->journal_fd = jfd;
	d->jend = keep;
	d->data_next = data_blocks;
	return 0;
}

int vdisk_open(const char *store, const char *name, struct vdisk **out,
	       char *err, size_t errlen)
{
	struct vdisk *d = calloc(1, sizeof(*d));
	char cur[VDISK_NAME_MAX + 1];
	struct meta m;
	int rc;

	if (!d)
		return vdisk__fail(err, errlen, -ENOMEM, "out of memory");
	snprintf(d->store, sizeof(d->store), "%s", store);
	d->base_fd = d->journal_fd = -1;
	for (int i = 0; i <= VDISK_MAX_CHAIN; i++)
		d->layers[i].data_fd = -1;
	pthread_rwlock_init(&d->lock, NULL);
	d->jbuf = malloc(JBUF_CAP);
	if (!d->jbuf) {
		rc = vdisk__fail(err, errlen, -ENOMEM, "out of memory");
		goto bad;
	}
	if (!vdisk__name_ok(name)) {
		rc = vdisk__fail(err, errlen, -EINVAL, "bad disk name '%s'",
				 name);
		goto bad;
	}
	snprintf(cur, sizeof(cur), "%s", name);
	for (;;) {
		bool top = d->nlayers == 0;

		rc = vdisk__meta_read(store, cur, &m, err, errlen);
		if (rc)
			goto bad;
		if (top) {
			d->size = m.size;
			d->ro = m.flags & META_FROZEN;
		} else if (!(m.flags & META_FROZEN)) {
			rc = vdisk__fail(err, errlen, -EINVAL,
					 "'%s' is in the chain of '%s' but not "
					 "frozen",
					 cur, name);
			goto bad;
		}
		rc = layer_open(d, &d->layers[d->nlayers], cur, m.size,
				top && !d->ro, err, errlen);
		if (rc)
			goto bad;
		d->layers[d->nlayers].uid = m.uid;
		d->nlayers++;
		if (strncmp(m.parent, "disk:", 5) != 0)
			break;
		if (d->nlayers > VDISK_MAX_CHAIN) {
			rc = vdisk__fail(err, errlen, -ELOOP,
					 "chain of '%s' deeper than %d", name,
					 VDISK_MAX_CHAIN);
			goto bad;
		}
		if (!vdisk__parent_disk(&m, cur)) {
			rc = vdisk__fail(err, errlen, -EINVAL,
					 "bad parent '%s' in the chain of '%s'",
					 m.parent, name);
			goto bad;
		}
	}
	if (strncmp(m.parent, "base:", 5) == 0) {
		char path[4200];
		struct stat st;

		snprintf(path, sizeof(path), "%s/bases/%s.raw", store,
			 m.parent + 5);
		d->base_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (d->base_fd < 0 || fstat(d->base_fd, &st)) {
			rc = vdisk__fail(err, errlen, -ENOENT,
					 "base image %s of '%s' is missing",
					 m.parent + 5, cur);
			goto bad;
		}
		d->base_size = (uint64_t)st.st_size;
		snprintf(d->base_id, sizeof(d->base_id), "%.64s", m.parent + 5);
		if (d->base_size != m.base_size) {
			rc = vdisk__fail(
				err, errlen, -EINVAL,
				"base image %s is %llu bytes, '%s' was "
				"made over %llu",
				m.parent + 5, (unsigned long long)d->base_size,
				cur, (unsigned long long)m.base_size);
			goto bad;
		}
	} else if (m.parent[0]) {
		rc = vdisk__fail(err, errlen, -EINVAL,
				 "'%s': unknown parent '%s'", cur, m.parent);
		goto bad;
	}
	*out = d;
	return 0;
bad:
	vdisk_close(d);
	return rc;
}

void vdisk_close(struct vdisk *d)
{
	if (!d)
		return;
	if (d->journal_fd >= 0 && d->jlen)
		vdisk__full_pwrite(d->journal_fd, d->jbuf, d->jlen, d->jend);
	for (int i = 0; i <= VDISK_MAX_CHAIN; i++) {
		if (d->layers[i].data_fd >= 0)
			close(d->layers[i].data_fd);
		free(d->layers[i].map);
		free(d->layers[i].crc);
	}
	if (d->journal_fd >= 0)
		close(d->journal_fd);
	if (d->base_fd >= 0)
		close(d->base_fd);
	pthread_rwlock_destroy(&d->lock);
	free(d->jbuf);
	free(d);
}

uint64_t vdisk_size(const struct vdisk *d)
{
	return d->size;
}

bool vdisk_readonly(const struct vdisk *d)
{
	return d->ro;
}

/* ---- I/O ---- */

/* Where block b's bytes are: *fd and *off, or fd -1 for zeros. The CRC
 * to check is in *crc when *check. */
static void locate(const struct vdisk *d, uint64_t b, int *fd, uint64_t *off,
		   uint32_t *crc, bool *check)
{
	*check = false;
	for (int i = 0; i < d->nlayers; i++) {
		const struct layer *l = &d->layers[i];
		uint64_t v;

		if (b >= l->nblocks)
			continue;
		v = l->map[b];
		if (v == MAP_NONE)
			continue;
		if (v == MAP_ZERO) {
			*fd = -1;
			return;
		}
		*fd = l->data_fd;
		*off = (v - 2) * VDISK_BLOCK;
		*crc = l->crc[b];
		*check = true;
		return;
	}
	if (d->base_fd >= 0 && (b + 1) * VDISK_BLOCK <= d->base_size) {
		*fd = d->base_fd;
		*off = b * VDISK_BLOCK;
		return;
	}
	*fd = -1;
}

#define RUN_MAX 64 /* blocks per pread of a contiguous run */

/* Reads whole blocks [b, b + n) into buf, merging contiguous runs (up to
 * RUN_MAX blocks) into one pread and checking every data block's CRC. */
static int read_blocks(struct vdisk *d, uint8_t *buf, uint64_t b, uint64_t n)
{
	uint64_t i = 0;

	while (i < n) {
		uint32_t crc[RUN_MAX];
		bool check[RUN_MAX];
		uint64_t off = 0, off2 = 0, run = 1;
		int fd, fd2;

		locate(d, b + i, &fd, &off, &crc[0], &check[0]);
		while (i + run < n && run < RUN_MAX) {
			locate(d, b + i + run, &fd2, &off2, &crc[run],
			       &check[run]);
			if (fd2 != fd ||
			    (fd >= 0 && off2 != off + run * VDISK_BLOCK))
				break;
			run++;
		}
		if (fd < 0) {
			memset(buf + i * VDISK_BLOCK, 0, run * VDISK_BLOCK);
		} else {
			if (vdisk__full_pread(fd, buf + i * VDISK_BLOCK,
					      run * VDISK_BLOCK, off))
				return -EIO;
			for (uint64_t k = 0; k < run; k++)
				if (check[k] &&
				    vdisk_crc32c(0, buf + (i + k) * VDISK_BLOCK,
						 VDISK_BLOCK) != crc[k])
					return -EIO;
		}
		i += run;
	}
	return 0;
}

static int range_ok(const struct vdisk *d, uint64_t off, uint64_t len)
{
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return 0;
}

static void count(uint64_t *ops, uint64_t *bytes, uint64_t len)
{
	__atomic_add_fetch(ops, 1, __ATOMIC_RELAXED);
	if (bytes)
		__atomic_add_fetch(bytes, len, __ATOMIC_RELAXED);
}

int vdisk_read(struct vdisk *d, void *buf, uint64_t off, uint32_t len)
{
	uint64_t first = off / VDISK_BLOCK;
	uint64_t last = (off + len + VDISK_BLOCK - 1) / VDISK_BLOCK;
	uint8_t *tmp;
	int rc;

	if (range_ok(d, off, len))
		return -EINVAL;
	if (len == 0)
		return 0;
	pthread_rwlock_rdlock(&d->lock);
	if (off % VDISK_BLOCK == 0 && len % VDISK_BLOCK == 0) {
		rc = read_blocks(d, buf, first, last - first);
	} else {
		tmp = malloc((last - first) * VDISK_BLOCK);
		rc = tmp ? read_blocks(d, tmp, first, last - first) : -ENOMEM;
		if (!rc)
			memcpy(buf, tmp + off % VDISK_BLOCK, len);
		free(tmp);
	}
	pthread_rwlock_unlock(&d->lock);
	count(&d->st.reads, &d->st.bytes_read, len);
	return rc;
}

/* Writes whole blocks: data appended in one pwrite, then one record per
 * block. Write lock held. */
static int write_blocks(struct vdisk *d, const uint8_t *buf, uint64_t b,
			uint64_t n)
{
	uint64_t idx = d->data_next;
	struct layer *l = &d->layers[0];
	int rc;

	rc = CELL_FAULT("vdisk.data-write");
	if (!rc)
		rc = vdisk__full_pwrite(l->data_fd, buf, n * VDISK_BLOCK,
					idx * VDISK_BLOCK);
	if (rc)
		return rc;
	d->data_next += n;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t crc =
			vdisk_crc32c(0, buf + i * VDISK_BLOCK, VDISK_BLOCK);

		rc = vdisk__journal_add(d, REC_MAP, b + i, idx + i, crc);
		if (rc)
			return rc;
		l->map[b + i] = idx + i + 2;
		l->crc[b + i] = crc;
	}
	return 0;
}

/* A partial block: read it through the chain, patch, write it whole. */
static int patch_block(struct vdisk *d, uint64_t b, size_t at,
		       const uint8_t *src, size_t len)
{
	uint8_t blk[VDISK_BLOCK];
	int rc = read_blocks(d, blk, b, 1);

	if (rc)
		return rc;
	if (src)
		memcpy(blk + at, src, len);
	else
		memset(blk + at, 0, len);
	return write_blocks(d, blk, b, 1);
}

/* Applies a write (src) or a zeroing (src NULL) of [off, off+len). */
static int modify(struct vdisk *d, const uint8_t *src, uint64_t off,
		  uint64_t len, bool fua)
{
	uint64_t b = off / VDISK_BLOCK, end = off + len;
	int rc = 0;

	if (d->ro)
		return -EROFS;
	if (range_ok(d, off, len))
		return -EINVAL;
	pthread_rwlock_wrlock(&d->lock);
	while (!rc && off < end) {
		size_t at = off % VDISK_BLOCK;
		uint64_t whole;

		if (at || end - off < VDISK_BLOCK) {
			size_t n = VDISK_BLOCK - at;

			if (n > end - off)
				n = (size_t)(end - off);
			rc = patch_block(d, b, at, src, n);
			off += n;
			if (src)
				src += n;
			b++;
			continue;
		}
		whole = (end - off) / VDISK_BLOCK;
		if (src) {
			rc = write_blocks(d, src, b, whole);
			src += whole * VDISK_BLOCK;
		} else {
			for (uint64_t i = 0; !rc && i < whole; i++) {
				rc = vdisk__journal_add(d, REC_ZERO, b + i, 0,
							0);
				if (!rc)
					d->layers[0].map[b + i] = MAP_ZERO;
			}
		}
		off += whole * VDISK_BLOCK;
		b += whole;
	}
	if (!rc && fua)
		rc = vdisk__flush_locked(d);
	pthread_rwlock_unlock(&d->lock);
	return rc;
}

int vdisk_write(struct vdisk *d, const void *buf, uint64_t off, uint32_t len,
		bool fua)
{
	int rc = modify(d, buf, off, len, fua);

	if (!rc)
		count(&d->st.writes, &d->st.bytes_written, len);
	return rc;
}

int vdisk_zero(struct vdisk *d, uint64_t off, uint64_t len, bool fua)
{
	int rc = modify(d, NULL, off, len, fua);

	if (!rc)
		count(&d->st.zeroes, NULL, 0);
	return rc;
}

int vdisk_flush(struct vdisk *d)
{
	int rc;

	if (d->ro)
		return 0;
	pthread_rwlock_wrlock(&d->lock);
	/* a test build's slow disk: sleep here, with the disk's lock held */
	rc = CELL_FAULT("vdisk.flush");
	if (!rc)
		rc = vdisk__flush_locked(d);
	pthread_rwlock_unlock(&d->lock);
	if (!rc)
		count(&d->st.flushes, NULL, 0);
	return rc;
}

void vdisk_stats(struct vdisk *d, struct vdisk_stats *out)
{
	const uint64_t *src = (const uint64_t *)&d->st;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- what a caching client needs ---- */

int vdisk_map_get(struct vdisk *d, struct vdisk_map *out)
{
	const struct layer *top = &d->layers[0];
	uint64_t nblocks = d->size / VDISK_BLOCK;

	memset(out, 0, sizeof(*out));
	out->size = d->size;
	out->nblocks = nblocks;
	out->top = calloc((nblocks + 7) / 8 + 1, 1);
	if (!out->top)
		return -ENOMEM;
	pthread_rwlock_rdlock(&d->lock);
	if (d->ro) {
		/* A frozen disk never changes: all of it is "below". */
		if (top->uid)
			snprintf(out->below, sizeof(out->below), "disk:%016llx",
				 (unsigned long long)top->uid);
		else
			memset(out->top, 0xff, (nblocks + 7) / 8);
		pthread_rwlock_unlock(&d->lock);
		return 0;
	}
	for (uint64_t b = 0; b < nblocks && b < top->nblocks; b++)
		if (top->map[b])
			out->top[b / 8] |= (uint8_t)(1u << (b % 8));
	if (d->nlayers > 1 && d->layers[1].uid)
		snprintf(out->below, sizeof(out->below), "disk:%016llx",
			 (unsigned long long)d->layers[1].uid);
	else if (d->nlayers == 1 && d->base_id[0])
		snprintf(out->below, sizeof(out->below), "base:%s", d->base_id);
	else if (d->nlayers == 1)
		snprintf(out->below, sizeof(out->below), "zero");
	pthread_rwlock_unlock(&d->lock);
	return 0;
}

void vdisk_map_free(struct vdisk_map *m)
{
	free(m->top);
	m->top = NULL;
}
