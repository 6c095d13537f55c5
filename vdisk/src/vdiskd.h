/*
 * cellmon-vdiskd's state, shared by its files:
 *   vdiskd_main.c     config, NBD clients (a thread each), the main loop,
 *                     main()
 *   vdiskd_export.c   the export registry: open disks shared by their
 *                     clients, and the write fences
 *   vdiskd_admin.c    the admin RPC the manager calls (main loop thread)
 *   vdiskd_offline.c  the offline commands (base import, disk ...)
 *
 * Locks (docs/design/threads.md): exports_mu covers the export table
 * alone and is never held across disk I/O; clients_mu covers the client
 * table and the byte counters of clients gone. Neither is taken while
 * holding the other. Each export's fence_mu orders the writes of its
 * fence file.
 */
#ifndef VDISKD_H
#define VDISKD_H

#include "cell/tls.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cell/rpc.h"
#include "nbd.h"
#include "vdisk/vdisk.h"

#define VDISKD_MAX_EXPORTS 256

struct vdiskd_config {
	char listen[128];
	char admin_listen[128];
	char store[1024];
	int64_t max_clients;
	char metrics_listen[128];
	char log_level[16];
	struct cell_tls_settings tls; /* the admin link and NBD */
	char nbd_tls[16];	      /* off, optional, required */
};

struct vdiskd_client {
	int fd;
	char peer[64];
	bool used;
	struct nbd_conn_stats st; /* live, see nbd.h */
};

struct vdiskd {
	struct vdiskd_config cfg;
	pthread_mutex_t clients_mu;
	pthread_cond_t idle; /* nclients reached 0 */
	struct vdiskd_client *clients;
	int nclients;
	uint64_t bytes_read, bytes_written; /* of clients gone */
	struct nbd_conn_stats gone;	    /* the same, all of them */
	char nbd_addr[160], admin_addr[160];
	/* /metrics (vdiskd_metrics.c), when metrics_listen is set */
	struct cell_metrics_server *metrics;
	char metrics_addr[160];
	/* NBD_OPT_STARTTLS (nbd_tls), NULL: not offered */
	struct cell_tls *nbd_tls;
};

extern struct vdiskd D;

/* vdiskd_metrics.c: serves /metrics on metrics_listen (nothing when it
 * is empty); 0, or -errno after logging why. */
struct event_base;
int vdiskd_metrics_start(struct event_base *base);
void vdiskd_metrics_stop(void);

/* vdiskd_export.c */
extern const struct nbd_exports vdiskd_exports;
/* The disk (a struct vdisk) named by an export ("NAME" or "NAME@EPOCH",
 * fenced), with a reference; NULL with err set. */
void *vdiskd_export_get(void *ctx, const char *export, char *err,
			size_t errlen);
/* Drops a reference; the last one flushes and closes the disk. */
void vdiskd_export_put(void *ctx, void *d);
/* NBD clients that have disk `name` open now. */
int vdiskd_export_clients(const char *name);
/* Runs op(arg) unless the disk has NBD clients (-EBUSY, err says so);
 * no client can open it meanwhile. Other disks are not held up. */
int vdiskd_export_when_unused(const char *name,
			      int (*op)(void *arg, char *err, size_t len),
			      void *arg, char *err, size_t len);

/* vdiskd_admin.c */
extern const struct cell_rpc_method vdiskd_admin_methods[];

/* vdiskd_offline.c: the offline commands; an exit code. */
int vdiskd_offline(int argc, char **argv);

#endif
