/*
 * A minimal synchronous NBD client for tests and benchmarks: the same
 * code drives cellmon-vdiskd and qemu-nbd, and it can send what real
 * clients never do (bad magic, out-of-range requests).
 */
#ifndef CELL_NBDCLIENT_H
#define CELL_NBDCLIENT_H

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

/* A TCP connection to "host:port" (IPv4), before any handshake; -1 on
 * failure. */
int nbdc_dial(const char *hostport);

/* Connects to "host:port" (IPv4) and selects `export` with NBD_OPT_GO.
 * The socket (10 s receive timeout), or -1. */
int nbdc_connect(const char *hostport, const char *export);

/* Sends one request (magic normally NBDC_REQUEST_MAGIC; a WRITE sends
 * len bytes of data) and waits for its simple reply (none for DISC).
 * Returns the reply's NBD error (0 ok, 22 EINVAL...), or -1 when the
 * connection is gone. A READ's data lands in data. */
int nbdc_request(int fd, uint16_t type, uint16_t flags, uint64_t off,
		 uint32_t len, void *data, uint32_t magic);

#endif
