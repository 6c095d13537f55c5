/*
 * libvdisk: copy-on-write virtual disks at 4 KiB blocks.
 *
 * A store is a directory:
 *   bases/<id>.raw        immutable base images, <id> the SHA-256 of the
 *                         contents (the content id), imported once
 *   disks/<name>/meta     what the disk is: size, parent, frozen flag
 *   disks/<name>/data     appended 4 KiB blocks, never rewritten
 *   disks/<name>/journal  32-byte checksummed records mapping disk blocks
 *                         to data blocks (or to zeros), and flush marks
 *   disks/<name>/fence    cellmon-vdiskd's write fence (optional)
 *
 * A disk's parent is a base image, a frozen disk, or nothing (zeros).
 * A block the disk never wrote reads from its parent, down the chain.
 * Cloning freezes the source: it becomes read-only for good and the base
 * of the new disk (and of any later clone).
 *
 * Durability: a write is durable once a flush (or the write itself with
 * fua) has returned. Reopening after a crash replays the journal: records
 * up to the last flush mark are trusted (their data was synced before the
 * mark was written); later records are applied only while their data
 * block checks against the record's CRC32C, and the journal is cut after
 * the last one applied. Every read of a data block is checked against its
 * CRC32C too, so a damaged block is an I/O error, never wrong bytes.
 * docs/design/vdisk.md has the write ordering.
 *
 * Thread safety: one struct vdisk may be used by several threads; reads
 * run in parallel, writes, zeroes and flushes one at a time.
 */
#ifndef VDISK_VDISK_H
#define VDISK_VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VDISK_BLOCK	4096u
#define VDISK_NAME_MAX	63	     /* CELL_NAME_RULE (cell/util.h) */
#define VDISK_ID_LEN	64	     /* hex SHA-256 */
#define VDISK_MAX_CHAIN 32	     /* disks in a chain above the base */
#define VDISK_MAX_SIZE	(1ull << 42) /* 4 TiB */

struct vdisk;

struct vdisk_info {
	char name[VDISK_NAME_MAX + 1];
	uint64_t size;
	bool frozen;
	/* parent: "" (none), "base:<id>" or "disk:<name>" */
	char parent[96];
	uint64_t data_bytes;	/* size of its data file */
	uint64_t journal_bytes; /* size of its journal */
	uint32_t chain_depth;	/* disks below it in its chain */
};

/* Creates the store's directories if missing. */
int vdisk_store_init(const char *store, char *err, size_t errlen);

/*
 * Copies the raw image at path into the store as a base; its content id
 * (hex SHA-256) goes to id. Importing the same contents twice is a no-op.
 * The size must be a multiple of 4 KiB.
 */
int vdisk_base_import(const char *store, const char *path,
		      char id[VDISK_ID_LEN + 1], char *err, size_t errlen);

/*
 * A new, empty disk. parent: NULL or "" for none, "base:<id>" for a base
 * image (the size may exceed the base's; the rest reads as zeros; 0 takes
 * the base's size), "disk:<name>" for a frozen disk. size: a multiple of
 * 4 KiB, at most VDISK_MAX_SIZE. -EEXIST if the name is taken.
 */
int vdisk_create(const char *store, const char *name, uint64_t size,
		 const char *parent, char *err, size_t errlen);

/* Freezes `src` (if not already) and creates `name` over it. The caller
 * makes sure nobody has src open for writing. */
int vdisk_clone(const char *store, const char *src, const char *name, char *err,
		size_t errlen);

/* Removes a disk; -EBUSY when another disk is cloned from it. */
int vdisk_delete(const char *store, const char *name, char *err, size_t errlen);

/* Names of the store's disks (sorted); free each and the array. */
int vdisk_list(const char *store, char ***names, size_t *count, char *err,
	       size_t errlen);

int vdisk_info(const char *store, const char *name, struct vdisk_info *out,
	       char *err, size_t errlen);

/*
 * Opens a disk and its chain, replaying its journal. Refuses, with err
 * saying why, a bad magic or checksum in the meta file, a journal damaged
 * before its last flush mark, a record pointing past the end of the data,
 * a missing or resized parent. A frozen disk opens read-only.
 */
int vdisk_open(const char *store, const char *name, struct vdisk **out,
	       char *err, size_t errlen);
void vdisk_close(struct vdisk *d);

uint64_t vdisk_size(const struct vdisk *d);
bool vdisk_readonly(const struct vdisk *d);

/* Byte ranges inside the disk; -EINVAL past the end, -EROFS on a frozen
 * disk, -EIO when a block fails its checksum or the file system fails. */
int vdisk_read(struct vdisk *d, void *buf, uint64_t off, uint32_t len);
int vdisk_write(struct vdisk *d, const void *buf, uint64_t off, uint32_t len,
		bool fua);
/* Zeroes a range (NBD WRITE_ZEROES and TRIM): whole blocks are mapped to
 * zeros, partial ones written. */
int vdisk_zero(struct vdisk *d, uint64_t off, uint64_t len, bool fua);
int vdisk_flush(struct vdisk *d);

struct vdisk_stats {
	uint64_t reads, writes, zeroes, flushes;
	uint64_t bytes_read, bytes_written;
	uint64_t replayed, dropped; /* journal records at open */
};
void vdisk_stats(struct vdisk *d, struct vdisk_stats *out);

/*
 * For clients that cache blocks (the agents' node-wide buffer cache): a
 * disk is its own top layer, which changes, over an immutable part that
 * never does. `below` names the immutable part so that equal names mean
 * equal bytes, forever: "base:<content id>", "disk:<uid>" (a frozen disk
 * and everything under it; every disk gets a random uid at creation),
 * "zero" (nothing: unwritten blocks read as zeros), or "" (disks made
 * before uids: do not cache). A block whose bit is clear in `top` reads
 * from the immutable part, as of this call. A frozen disk is all
 * "below" (top all clear).
 */
struct vdisk_map {
	uint64_t size, nblocks;
	char below[96];
	uint8_t *top; /* bit b % 8 of byte b / 8; malloc'd */
};
int vdisk_map_get(struct vdisk *d, struct vdisk_map *out);
void vdisk_map_free(struct vdisk_map *m);

/*
 * Fault points of the write path, in a test build (cell/fault.h):
 * "vdisk.data-write", "vdisk.journal-write", "vdisk.data-sync",
 * "vdisk.mark-write" and "vdisk.journal-sync", each just before that
 * step; the crash tests exit there, as if killed. "vdisk.flush" at the
 * start of every flush (a slow disk, with sleep:MS).
 */

uint32_t vdisk_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
