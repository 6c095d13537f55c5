/*
 * Fuzz target: cellmon-vdiskd's NBD request parser, exactly as the server
 * runs it. The input is what a client sends (handshake, options,
 * requests), written into one end of a socketpair; nbd_serve() runs on
 * the other end against a small disk; the replies are drained and
 * dropped. Built-in seeds: a GO then reads, writes, a flush, a trim and
 * a disconnect; EXPORT_NAME; LIST then ABORT.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/log.h"
#include "fuzz.h"
#include "nbd.h"
#include "vdisk/vdisk.h"

static struct vdisk *disk;
static char store[256];

static void *get(void *ctx, const char *name, char *err, size_t errlen)
{
	(void)ctx;
	if (strcmp(name, "f") != 0) {
		snprintf(err, errlen, "no such disk");
		return NULL;
	}
	return disk;
}

static void put(void *ctx, void *d)
{
	(void)ctx;
	(void)d;
}

static int list(void *ctx, char ***names, size_t *count)
{
	(void)ctx;
	*names = calloc(1, sizeof(**names));
	(*names)[0] = strdup("f");
	*count = 1;
	return 0;
}

static const struct nbd_exports ex = {&nbd_vdisk_ops, get,  put,
				      list,	      NULL, NULL};

static void cleanup(void)
{
	const char *f[] = {"disks/f/meta",
			   "disks/f/data",
			   "disks/f/journal",
			   "disks/f",
			   "disks",
			   "bases",
			   ""};
	char path[300];

	vdisk_close(disk);
	for (int i = 0; i < 7; i++) {
		snprintf(path, sizeof(path), "%s/%s", store, f[i]);
		if (remove(path) && i < 3)
			perror(path);
	}
}

static void init(void)
{
	char err[300];
	const char *tmp = getenv("TMPDIR");

	cell_log_set_level(CELL_LOG_OFF);
	snprintf(store, sizeof(store), "%s/fuzz-nbd.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(store) || vdisk_store_init(store, err, sizeof(err)) ||
	    vdisk_create(store, "f", 64 * 1024, NULL, err, sizeof(err)) ||
	    vdisk_open(store, "f", &disk, err, sizeof(err))) {
		fprintf(stderr, "fuzz_nbd: cannot set up a disk in %s\n",
			store);
		abort();
	}
	atexit(cleanup);
}

struct feed {
	int fd;
	const uint8_t *data;
	size_t size;
};

static void *writer(void *arg)
{
	struct feed *f = arg;
	size_t off = 0;

	while (off < f->size) {
		ssize_t w =
			send(f->fd, f->data + off, f->size - off, MSG_NOSIGNAL);

		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

static void *drainer(void *arg)
{
	uint8_t buf[65536];

	while (recv(*(int *)arg, buf, sizeof(buf), 0) > 0)
		;
	return NULL;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct nbd_conn_stats st = {0};
	struct feed f;
	pthread_t w, r;
	char err[300];
	int sv[2];

	pthread_once(&once, init);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		abort();
	f = (struct feed){sv[1], data, size};
	pthread_create(&w, NULL, writer, &f);
	pthread_create(&r, NULL, drainer, &sv[1]);
	nbd_serve(sv[0], &ex, &st, err, sizeof(err));
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

/* ---- seeds ---- */

static size_t opt(uint8_t *b, uint32_t o, const void *d, uint32_t len)
{
	memcpy(b, "IHAVEOPT", 8);
	cell_put32(b + 8, o);
	cell_put32(b + 12, len);
	if (len)
		memcpy(b + 16, d, len);
	return 16 + len;
}

static size_t req(uint8_t *b, uint16_t flags, uint16_t type, uint64_t off,
		  uint32_t len)
{
	cell_put32(b, 0x25609513u);
	cell_put16(b + 4, flags);
	cell_put16(b + 6, type);
	cell_put64(b + 8, 7);
	cell_put64(b + 16, off);
	cell_put32(b + 24, len);
	return 28;
}

size_t fuzz_seed(int i, uint8_t *b, size_t cap)
{
	uint8_t go[16] = {0, 0, 0, 1, 'f', 0, 1, 0, 3};
	size_t n = 4;

	if (cap < 4096)
		return 0;
	cell_put32(b, 3);
	switch (i) {
	case 0:
		n += opt(b + n, 7, go, 9);
		n += req(b + n, 0, 0, 0, 4096);
		n += req(b + n, 1, 1, 100, 64);
		memset(b + n, 0xab, 64);
		n += 64;
		n += req(b + n, 0, 3, 0, 0);
		n += req(b + n, 0, 4, 8192, 4096);
		n += req(b + n, 0, 6, 12288, 100);
		n += req(b + n, 0, 0, 65000, 536);
		n += req(b + n, 0, 2, 0, 0);
		return n;
	case 1:
		n += opt(b + n, 1, "f", 1);
		n += req(b + n, 0, 0, 4096, 512);
		n += req(b + n, 0, 2, 0, 0);
		return n;
	case 2:
		n += opt(b + n, 3, NULL, 0);
		n += opt(b + n, 6, go, 9);
		n += opt(b + n, 8, NULL, 0);
		n += opt(b + n, 2, NULL, 0);
		return n;
	}
	return 0;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif
