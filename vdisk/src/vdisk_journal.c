/*
 * The journal of a disk (libvdisk): fixed 32-byte records (a block mapped
 * to a data index with its CRC32C, a block zeroed, a flush mark), queued
 * in memory and written in order. Replay on open applies every record up
 * to the last flush mark whose blocks check out; the flush writes the
 * queue, syncs the data, writes a mark and syncs the journal, so no write
 * acknowledged before a flush is lost and none after the last mark is
 * half-applied (docs/design/vdisk.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/fault.h"
#include "vdisk_int.h"

static void rec_pack(uint8_t *b, uint16_t type, uint64_t vblock, uint64_t index,
		     uint32_t crc)
{
	cell_put32(b, REC_MAGIC);
	cell_put16(b + 4, type);
	cell_put16(b + 6, 0);
	cell_put64(b + 8, vblock);
	cell_put64(b + 16, index);
	cell_put32(b + 24, crc);
	cell_put32(b + 28, vdisk_crc32c(0, b, 28));
}

static bool rec_valid(const uint8_t *b)
{
	uint16_t t = cell_get16(b + 4);

	return cell_get32(b) == REC_MAGIC && t >= REC_MAP && t <= REC_MARK &&
	       cell_get32(b + 28) == vdisk_crc32c(0, b, 28);
}

static bool block_checks(int fd, uint64_t index, uint32_t crc, uint8_t *buf)
{
	return vdisk__full_pread(fd, buf, VDISK_BLOCK, index * VDISK_BLOCK) ==
		       0 &&
	       vdisk_crc32c(0, buf, VDISK_BLOCK) == crc;
}

/*
 * Replays layer l's journal. Records up to the last flush mark are
 * trusted but must point inside the data file; a damaged record there is
 * corruption. After the mark, records apply while they are whole and
 * their data checks; the first that does not ends the journal (an
 * unflushed tail cut by a crash). *keep is the journal length to keep.
 */
int vdisk__replay(struct vdisk *d, struct layer *l, int jfd,
		  uint64_t data_blocks, uint64_t *keep, char *err,
		  size_t errlen)
{
	struct stat st;
	uint8_t *j = NULL, *blk = NULL;
	size_t nrec, last_mark = 0, first_bad;
	int rc = 0;

	if (fstat(jfd, &st))
		return vdisk__fail(err, errlen, -errno, "journal of '%s': %s",
				   l->name, strerror(errno));
	nrec = (size_t)st.st_size / REC_LEN;
	j = malloc(nrec * REC_LEN + 1);
	blk = malloc(VDISK_BLOCK);
	if (!j || !blk) {
		rc = vdisk__fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (nrec && vdisk__full_pread(jfd, j, nrec * REC_LEN, 0)) {
		rc = vdisk__fail(err, errlen, -EIO,
				 "journal of '%s': read error", l->name);
		goto out;
	}
	first_bad = nrec;
	for (size_t i = 0; i < nrec; i++) {
		const uint8_t *r = j + i * REC_LEN;

		if (!rec_valid(r)) {
			if (first_bad == nrec)
				first_bad = i;
			continue;
		}
		if (cell_get16(r + 4) == REC_MARK) {
			if (first_bad < i) {
				rc = vdisk__fail(
					err, errlen, -EINVAL,
					"journal of '%s': record %zu is "
					"damaged but flushed records follow "
					"it (corrupt journal)",
					l->name, first_bad);
				goto out;
			}
			last_mark = i + 1;
		}
	}
	*keep = 0;
	for (size_t i = 0; i < first_bad; i++) {
		const uint8_t *r = j + i * REC_LEN;
		uint16_t type = cell_get16(r + 4);
		uint64_t vb = cell_get64(r + 8), idx = cell_get64(r + 16);
		uint32_t crc = cell_get32(r + 24);
		bool flushed = i < last_mark;

		if (type != REC_MARK && vb >= l->nblocks) {
			if (flushed) {
				rc = vdisk__fail(
					err, errlen, -EINVAL,
					"journal of '%s': record %zu maps "
					"block %llu of a %llu-block disk",
					l->name, i, (unsigned long long)vb,
					(unsigned long long)l->nblocks);
				goto out;
			}
			break;
		}
		if (type == REC_MAP && idx >= data_blocks) {
			if (flushed) {
				rc = vdisk__fail(
					err, errlen, -EINVAL,
					"journal of '%s': record %zu points "
					"at data block %llu past the end "
					"(%llu blocks)",
					l->name, i, (unsigned long long)idx,
					(unsigned long long)data_blocks);
				goto out;
			}
			break;
		}
		if (type == REC_MAP && !flushed &&
		    !block_checks(l->data_fd, idx, crc, blk))
			break; /* its data never made it to disk */
		if (type == REC_MAP) {
			l->map[vb] = idx + 2;
			l->crc[vb] = crc;
		} else if (type == REC_ZERO) {
			l->map[vb] = MAP_ZERO;
		}
		if (l == &d->layers[0])
			d->st.replayed++;
		*keep = (uint64_t)(i + 1) * REC_LEN;
	}
	if (l == &d->layers[0])
		d->st.dropped = nrec - *keep / REC_LEN;
out:
	free(j);
	free(blk);
	return rc;
}

/* Writes the queued records out, after the ones on file. */
static int queue_out(struct vdisk *d)
{
	int rc = CELL_FAULT("vdisk.journal-write");

	if (!rc)
		rc = vdisk__full_pwrite(d->journal_fd, d->jbuf, d->jlen,
					d->jend);
	if (rc)
		return rc;
	d->jend += d->jlen;
	d->jlen = 0;
	return 0;
}

/* Queues a record; writes the queue out when full. Write lock held. */
int vdisk__journal_add(struct vdisk *d, uint16_t type, uint64_t vb,
		       uint64_t idx, uint32_t crc)
{
	int rc;

	if (d->jlen + REC_LEN > JBUF_CAP && (rc = queue_out(d)))
		return rc;
	rec_pack(d->jbuf + d->jlen, type, vb, idx, crc);
	d->jlen += REC_LEN;
	return 0;
}

/* Flush with the write lock held. */
int vdisk__flush_locked(struct vdisk *d)
{
	uint8_t mark[REC_LEN];
	int rc;

	if (d->jlen && (rc = queue_out(d)))
		return rc;
	if ((rc = CELL_FAULT("vdisk.data-sync")))
		return rc;
	if (fdatasync(d->layers[0].data_fd))
		return -errno;
	rec_pack(mark, REC_MARK, 0, 0, 0);
	rc = CELL_FAULT("vdisk.mark-write");
	if (!rc)
		rc = vdisk__full_pwrite(d->journal_fd, mark, REC_LEN, d->jend);
	if (rc)
		return rc;
	d->jend += REC_LEN;
	if ((rc = CELL_FAULT("vdisk.journal-sync")))
		return rc;
	if (fdatasync(d->journal_fd))
		return -errno;
	return 0;
}
