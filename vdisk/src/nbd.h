/*
 * The NBD server side of cellmon-vdiskd: fixed newstyle handshake and the
 * transmission phase with simple replies, on one blocking socket. Export
 * names are disk names.
 *
 * Options: EXPORT_NAME, GO, INFO, LIST, ABORT; every other option gets
 * NBD_REP_ERR_UNSUP (so clients fall back to simple replies). Commands:
 * READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, DISC, with FUA on writes.
 * A request with a bad magic or a payload larger than NBD_MAX_PAYLOAD
 * closes the connection; a request out of range, with unknown flags or
 * an unknown command gets an error reply and the connection goes on.
 */
#ifndef VDISK_NBD_H
#define VDISK_NBD_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk/vdisk.h"

#define NBD_MAX_PAYLOAD (32u << 20)
/* An export name: a disk name, optionally "@<write epoch>" (vdiskd). */
#define NBD_EXPORT_MAX (VDISK_NAME_MAX + 21)
#define NBD_MAX_OPTION (64u << 10)

struct nbd_exports {
	/* The open disk named `name`, with a reference; NULL and err set
	 * when there is none or it cannot be opened. */
	struct vdisk *(*get)(void *ctx, const char *name, char *err,
			     size_t errlen);
	void (*put)(void *ctx, struct vdisk *d);
	/* Export names for NBD_OPT_LIST; 0 or -errno. */
	int (*list)(void *ctx, char ***names, size_t *count);
	/* Before each request that changes the disk (WRITE, TRIM,
	 * WRITE_ZEROES) of a connection opened as `export`: 0, or -errno
	 * to refuse it (a fenced writer). May be NULL. */
	int (*may_write)(void *ctx, struct vdisk *d, const char *export);
	void *ctx;
};

/* Updated with relaxed atomic adds while serving: another thread may
 * read them with __atomic_load_n at any time. */
struct nbd_conn_stats {
	uint64_t requests, errors;
	uint64_t bytes_read, bytes_written;
};

/*
 * Serves one client on fd until it disconnects or breaks the protocol.
 * Returns 0 after NBD_CMD_DISC or NBD_OPT_ABORT, -errno otherwise (with
 * why in err). Does not close fd.
 */
int nbd_serve(int fd, const struct nbd_exports *ex, struct nbd_conn_stats *st,
	      char *err, size_t errlen);

#endif
