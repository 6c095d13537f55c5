/*
 * The disk path of a node (Disco's shared buffer cache, across hosts):
 * guest block requests -> this node's cache -> cellmon-vdiskd over NBD.
 *
 * agent_cache.c: one cache of 4 KiB blocks for every VM on the node,
 * keyed by (namespace, block). A namespace names bytes that never change
 * (vdisk.h, struct vdisk_map: "base:<content id>", "disk:<uid>"), so a
 * block cached for one VM is right for every VM whose disk has the same
 * immutable part below it, and no entry ever needs invalidating. Bounded
 * (LRU), thread-safe (one mutex; the disk path is not the fault path),
 * and two VMs missing the same block at once read it from the server
 * once: the second waits for the first's fill.
 *
 * agent_disk.c: one open disk of one VM. At open it asks the disk server
 * for the disk's map (DISK_MAP) and opens an NBD connection. A block the
 * disk holds itself (its top layer, or written since the open) is read
 * from the server every time; any other block comes from the immutable
 * part and goes through the cache ("zero": nothing below, no I/O at all).
 * That is close-to-open consistency for a disk shared by a writer and
 * readers (docs/design/vdisk.md says exactly what holds).
 *
 * Threads: any; a disk serializes its NBD requests on its own mutex.
 */
struct cell_tls;

#ifndef AGENT_DISK_H
#define AGENT_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_BLOCK 4096u

struct agent_cache;

struct agent_cache_stats {
	uint64_t hits, misses;
	uint64_t evictions;
	uint64_t waits;		    /* readers that waited for another's fill */
	uint64_t zero_reads;	    /* blocks read as zeros, no I/O */
	uint64_t entries, capacity; /* in blocks */
};

/* A cache of `bytes` (rounded down to blocks; 0: no caching, every read
 * goes to the server). 0 or -errno. */
int agent_cache_create(uint64_t bytes, struct agent_cache **out);
void agent_cache_destroy(struct agent_cache *c);

/* Fills buf with block `block` (AGENT_BLOCK bytes); 0 or -errno. */
typedef int (*agent_cache_fill_fn)(void *arg, uint64_t block, void *buf);

/* Block `block` of namespace `ns` into buf: from the cache, or through
 * fill on a miss (then kept). 0 or fill's error (nothing is kept then). */
int agent_cache_read(struct agent_cache *c, const char *ns, uint64_t block,
		     void *buf, agent_cache_fill_fn fill, void *arg);
/* The same for n (<= AGENT_RUN_MAX) consecutive blocks: what is cached
 * is copied, and each run of missing blocks is read with one call of
 * fill (n_blocks at first into buf) and then kept. */
#define AGENT_RUN_MAX 64
typedef int (*agent_cache_fill_run_fn)(void *arg, uint64_t first, uint32_t n,
				       void *buf);
int agent_cache_read_run(struct agent_cache *c, const char *ns, uint64_t first,
			 uint32_t n, void *buf, agent_cache_fill_run_fn fill,
			 void *arg);
/* Counts n blocks read as zeros without any I/O. */
void agent_cache_note_zero(struct agent_cache *c, uint32_t n);
void agent_cache_stats(struct agent_cache *c, struct agent_cache_stats *out);

struct agent_disk;

/*
 * Opens disk `name` of the disk server whose admin address is `admin`
 * (its NBD address comes with the map). ro: the VM only reads it.
 * epoch: the run's write epoch (the disk server refuses writers whose
 * epoch another opener has passed); 0 for none. 0, or -errno with err
 * set (-ENOENT: no such disk).
 */
/* The TLS of the link to the disk server's admin address (NULL: plain);
 * set once at start. */
void agent_disk_set_tls(struct cell_tls *t);
int agent_disk_open(struct agent_cache *c, const char *admin, const char *name,
		    bool ro, uint64_t epoch, struct agent_disk **out, char *err,
		    size_t len);
/* Flushes (when writable) and closes. NULL is a no-op. */
void agent_disk_close(struct agent_disk *d);
uint64_t agent_disk_size(const struct agent_disk *d);
bool agent_disk_readonly(const struct agent_disk *d);
/* off and len multiples of AGENT_BLOCK, inside the disk. 0 or -errno
 * (-EINVAL bad range, -EROFS write to a read-only disk, -EIO server). */
int agent_disk_read(struct agent_disk *d, uint64_t off, void *buf,
		    uint32_t len);
int agent_disk_write(struct agent_disk *d, uint64_t off, const void *buf,
		     uint32_t len);
int agent_disk_flush(struct agent_disk *d);

#endif
