/*
 * libcellnbdc: a minimal synchronous NBD client (fixed newstyle, GO,
 * simple replies). The agents reach cellmon-vdiskd with it; tests and
 * benchmarks drive cellmon-vdiskd and qemu-nbd with the same code, and it
 * can send what real clients never do (bad magic, out-of-range requests).
 * One request at a time per socket; several sockets may be used from
 * several threads.
 */
#ifndef VDISK_NBDC_H
#define VDISK_NBDC_H

#include <stdint.h>

enum {
	NBDC_READ = 0,
	NBDC_WRITE = 1,
	NBDC_DISC = 2,
	NBDC_FLUSH = 3,
	NBDC_TRIM = 4,
};

#define NBDC_FLAG_FUA	   1u
#define NBDC_REQUEST_MAGIC 0x25609513u

/* A TCP connection to "host:port", before any handshake (10 s send and
 * receive timeouts); -1 on failure. */
int nbdc_dial(const char *hostport);

/* Connects to "host:port" and selects `export` with NBD_OPT_GO. The
 * socket, or -1. nbdc_open also returns the export's size when the
 * server sends it (cellmon-vdiskd and qemu-nbd do), else leaves *size. */
int nbdc_connect(const char *hostport, const char *export);
int nbdc_open(const char *hostport, const char *export, uint64_t *size);

/* nbdc_open over TLS: NBD_OPT_STARTTLS first, then the handshake with
 * tls (cell/tls.h; the server must be a disk server of the cell's CA)
 * and GO inside it. The socket, or -1 with err saying why. A socket
 * from here is closed with nbdc_close. */
struct cell_tls;
int nbdc_open_tls(const char *hostport, const char *export, uint64_t *size,
		  struct cell_tls *tls, char *err, size_t errlen);
/* Closes a socket of nbdc_open/_tls (and its TLS session). */
void nbdc_close(int fd);

/* Sends one request (magic normally NBDC_REQUEST_MAGIC; a WRITE sends
 * len bytes of data) and waits for its simple reply (none for DISC).
 * Returns 0, the reply's NBD error as -errno (-EINVAL, -EPERM, -ENOSPC,
 * ...; a value the protocol does not define is -EIO), or -ECONNRESET when
 * the connection is gone (the server never sends that one). A READ's
 * data lands in data. */
int nbdc_request(int fd, uint16_t type, uint16_t flags, uint64_t off,
		 uint32_t len, void *data, uint32_t magic);

#endif
