/*
 * libvdisk's internals, shared by its files:
 *   vdisk_store.c    the store: bases (named by SHA-256), disks as meta +
 *                    data + journal; create, clone, delete, list, info
 *   vdisk_file.c     file helpers, names, a disk's meta file (a leaf)
 *   vdisk_journal.c  journal records, the replay on open, the flush
 *   vdisk.c          open disks: layers, reads through the chain, writes,
 *                    zeroes, flushes, stats, the map for caching clients
 * The on-disk format is in vdisk/vdisk.h and docs/design/vdisk.md.
 */
#ifndef VDISK_INT_H
#define VDISK_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vdisk/vdisk.h"

#define META_LEN     512
#define META_MAGIC   "CMVDMETA"
#define META_VERSION 1
#define META_FROZEN  1u
#define PARENT_LEN   96

#define REC_LEN	  32
#define REC_MAGIC 0x564A524Eu /* "VJRN" */
enum { REC_MAP = 1, REC_ZERO = 2, REC_MARK = 3 };

#define MAP_NONE 0
#define MAP_ZERO 1

#define JBUF_CAP (64 * 1024)

struct meta {
	uint32_t flags;
	uint64_t size;
	char parent[PARENT_LEN];
	uint64_t base_size;
	uint64_t uid; /* random at creation; 0 in disks made before it */
};

struct layer {
	char name[VDISK_NAME_MAX + 1];
	uint64_t uid;
	int data_fd;
	uint64_t nblocks;
	uint64_t *map;
	uint32_t *crc;
};

struct vdisk {
	char store[4096];
	uint64_t size;
	bool ro;
	int nlayers; /* layers[0] is this disk */
	struct layer layers[VDISK_MAX_CHAIN + 1];
	int base_fd;
	uint64_t base_size;
	char base_id[VDISK_ID_LEN + 1];
	int journal_fd;
	uint64_t data_next; /* next free block of layers[0]'s data file */
	uint64_t jend;	    /* journal bytes on file */
	uint8_t *jbuf;	    /* records not yet written */
	size_t jlen;
	pthread_rwlock_t lock;
	struct vdisk_stats st; /* counters updated atomically */
};

/* vdisk_file.c */
/* Formats err (when not NULL) and returns rc. */
int vdisk__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* All of len bytes at off, or -errno (a read past the end is -EIO). */
int vdisk__full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
int vdisk__full_pread(int fd, void *buf, size_t len, uint64_t off);
bool vdisk__name_ok(const char *name);
void vdisk__disk_path(char *out, size_t len, const char *store,
		      const char *name, const char *file);
int vdisk__meta_read(const char *store, const char *name, struct meta *m,
		     char *err, size_t errlen);
/* The frozen disk m was cloned from, into cur; false for a base. */
bool vdisk__parent_disk(const struct meta *m, char cur[VDISK_NAME_MAX + 1]);
/* Writes meta into dir atomically (temporary file, rename, fsyncs). */
int vdisk__meta_write(const char *dir, const struct meta *m);
int vdisk__fsync_dir(const char *dir);
/* A base image id: VDISK_ID_LEN hex digits. */
bool vdisk__id_ok(const char *id);

/* vdisk_journal.c */
/* Replays layer l's journal (jfd) on open, over data_blocks blocks of
 * data: its maps and CRCs; *keep is the journal length to keep. */
int vdisk__replay(struct vdisk *d, struct layer *l, int jfd,
		  uint64_t data_blocks, uint64_t *keep, char *err,
		  size_t errlen);
/* Queues a record; writes the queue out when full. Write lock held. */
int vdisk__journal_add(struct vdisk *d, uint16_t type, uint64_t vb,
		       uint64_t idx, uint32_t crc);
/* Journal out, data synced, mark written, journal synced. Write lock. */
int vdisk__flush_locked(struct vdisk *d);

#endif
