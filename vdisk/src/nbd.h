/*
 * An NBD server: fixed newstyle handshake and the transmission phase with
 * simple replies, on one blocking socket, over any disk the caller's ops
 * reach: cellmon-vdiskd's stores (vdiskd_export.c, export names are disk
 * names) and the agent's disks of a qemu VM (node-agent/agent_nbd.c).
 *
 * Options: EXPORT_NAME, GO, INFO, LIST, ABORT, STARTTLS; every other
 * option gets
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

#include <stdbool.h>

#include "cell/util.h"

struct cell_tls;

#define NBD_MAX_PAYLOAD (32u << 20)
/* An export name: a disk name, optionally "@<write epoch>" (vdiskd). */
#define NBD_EXPORT_MAX (CELL_NAME_MAX + 21)
#define NBD_MAX_OPTION (64u << 10)

/* A disk as the server uses it; off and len are inside the disk and, if
 * min_block > 1, multiples of it (the server announces it and refuses
 * other requests). 0 or -errno. */
struct nbd_disk_ops {
	uint64_t (*size)(void *d);
	bool (*readonly)(void *d);
	int (*read)(void *d, void *buf, uint64_t off, uint32_t len);
	int (*write)(void *d, const void *buf, uint64_t off, uint32_t len,
		     bool fua);
	int (*flush)(void *d);
	/* zeros (TRIM and WRITE_ZEROES); NULL: neither is offered */
	int (*zero)(void *d, uint64_t off, uint64_t len, bool fua);
	uint32_t min_block; /* 1, or the smallest request (power of 2) */
};

/* A vdisk (vdisk.h) as such a disk: nbd_vdisk.c, library cellnbdvdisk. */
extern const struct nbd_disk_ops nbd_vdisk_ops;

struct nbd_exports {
	const struct nbd_disk_ops *ops;
	/* The open disk named `name`, with a reference; NULL and err set
	 * when there is none or it cannot be opened. */
	void *(*get)(void *ctx, const char *name, char *err, size_t errlen);
	void (*put)(void *ctx, void *d);
	/* Export names for NBD_OPT_LIST; 0 or -errno. */
	int (*list)(void *ctx, char ***names, size_t *count);
	/* Before each request that changes the disk (WRITE, TRIM,
	 * WRITE_ZEROES) of a connection opened as `export`: 0, or -errno
	 * to refuse it (a fenced writer). May be NULL. */
	int (*may_write)(void *ctx, void *d, const char *export);
	void *ctx;
	/* NBD_OPT_STARTTLS (mutual TLS 1.3 with the cell's certificates,
	 * cell/tls.h) when set; NULL: refused as unsupported. With
	 * tls_required, every option but STARTTLS and ABORT before it is
	 * refused with NBD_REP_ERR_TLS_REQD (EXPORT_NAME: the connection
	 * closes). A client whose certificate the tls does not take gets
	 * NBD_REP_ERR_POLICY with the reason for every option after. */
	struct cell_tls *tls;
	bool tls_required;
};

/* Requests by command, for metrics: read, write, flush, trim (and write
 * zeroes), anything else (refused). */
enum nbd_stat_kind {
	NBD_STAT_READ,
	NBD_STAT_WRITE,
	NBD_STAT_FLUSH,
	NBD_STAT_TRIM,
	NBD_STAT_OTHER,
	NBD_STAT_KINDS
};
extern const char *const nbd_stat_kind_names[NBD_STAT_KINDS];
/* Upper bounds of the service-time buckets, in seconds (from the
 * request's header read to its reply sent). */
#define NBD_LAT_BOUNDS 8
extern const double nbd_lat_bounds_s[NBD_LAT_BOUNDS];

struct nbd_cmd_stats {
	uint64_t requests, errors, bytes;
	uint64_t lat_us;		  /* sum */
	uint64_t lat[NBD_LAT_BOUNDS + 1]; /* per bucket, the last: above */
};

/* Updated with relaxed atomic adds while serving: another thread may
 * read them with __atomic_load_n at any time. */
struct nbd_conn_stats {
	uint64_t requests, errors;
	uint64_t bytes_read, bytes_written;
	struct nbd_cmd_stats cmd[NBD_STAT_KINDS];
};

/* acc += the live counters of st (read with atomic loads). */
void nbd_stats_add(struct nbd_conn_stats *acc, const struct nbd_conn_stats *st);

/*
 * Serves one client on fd until it disconnects or breaks the protocol.
 * Returns 0 after NBD_CMD_DISC or NBD_OPT_ABORT, -errno otherwise (with
 * why in err). Does not close fd.
 */
int nbd_serve(int fd, const struct nbd_exports *ex, struct nbd_conn_stats *st,
	      char *err, size_t errlen);

#endif
