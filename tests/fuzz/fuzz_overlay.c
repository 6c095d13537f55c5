/*
 * Fuzz target: the copy-on-write disk parser (meta file and journal
 * replay). The input's first 512 bytes become a disk's meta file (all of
 * it when shorter: a truncated meta), the rest its journal; the data file
 * is 8 fixed blocks. The disk is opened and, if that succeeds, every block
 * read and one written: a bad file must be refused or read as an error,
 * never crash or read out of bounds. Built-in seeds: valid disks with
 * flushed and unflushed records, zero records and a torn tail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/log.h"
#include "fuzz.h"
#include "vdisk/vdisk.h"

#define B     4096u
#define NDATA 8

static char store[256], dir[300];

static void put_file(const char *name, const void *data, size_t len)
{
	char path[400];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	close(fd);
}

static void data_block(uint8_t *b, int i)
{
	memset(b, 0x30 + i, B);
}

static void cleanup(void)
{
	const char *f[] = {"disks/o/meta",    "disks/o/data",
			   "disks/o/journal", "disks/o/meta.new",
			   "disks/o",	      "disks",
			   "bases",	      ""};
	char path[400];

	for (int i = 0; i < 8; i++) {
		snprintf(path, sizeof(path), "%s/%s", store, f[i]);
		remove(path);
	}
}

static void init(void)
{
	const char *tmp = getenv("TMPDIR");
	uint8_t *data = malloc(NDATA * B);
	char err[300];

	cell_log_set_level(CELL_LOG_OFF);
	snprintf(store, sizeof(store), "%s/fuzz-overlay.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(store) || vdisk_store_init(store, err, sizeof(err)))
		abort();
	snprintf(dir, sizeof(dir), "%s/disks/o", store);
	if (mkdir(dir, 0755))
		abort();
	for (int i = 0; i < NDATA; i++)
		data_block(data + (size_t)i * B, i);
	put_file("data", data, NDATA * B);
	free(data);
	atexit(cleanup);
}

int fuzz_one(const uint8_t *data, size_t size)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	static uint8_t buf[16 * B];
	struct vdisk *d;
	char err[400];
	size_t m = size < 512 ? size : 512;

	pthread_once(&once, init);
	snprintf(err, sizeof(err), "%s/data", dir);
	if (truncate(err, NDATA * B)) /* drop the last run's writes */
		abort();
	put_file("meta", data, m);
	put_file("journal", data + m, size - m);
	if (vdisk_open(store, "o", &d, err, sizeof(err)))
		return 0;
	for (uint64_t off = 0; off < vdisk_size(d) && off < 64 * B; off += B)
		vdisk_read(d, buf, off, B);
	vdisk_read(d, buf, 100, 2 * B);
	memset(buf, 0x77, B);
	vdisk_write(d, buf, 0, B, false);
	vdisk_close(d);
	return 0;
}

/* ---- seeds: the formats of vdisk.c ---- */

static void meta(uint8_t *b, uint64_t size, const char *parent)
{
	memset(b, 0, 512);
	memcpy(b, "CMVDMETA", 8);
	cell_put32(b + 8, 1);
	cell_put64(b + 16, size);
	memcpy(b + 24, parent, strlen(parent));
	cell_put32(b + 508, vdisk_crc32c(0, b, 508));
}

static size_t rec(uint8_t *b, uint16_t type, uint64_t vb, uint64_t idx)
{
	uint8_t blk[B];

	data_block(blk, (int)idx);
	cell_put32(b, 0x564A524Eu);
	cell_put16(b + 4, type);
	cell_put16(b + 6, 0);
	cell_put64(b + 8, vb);
	cell_put64(b + 16, idx);
	cell_put32(b + 24, type == 1 ? vdisk_crc32c(0, blk, B) : 0);
	cell_put32(b + 28, vdisk_crc32c(0, b, 28));
	return 32;
}

size_t fuzz_seed(int i, uint8_t *b, size_t cap)
{
	size_t n = 512;

	if (cap < 4096 || i > 3)
		return 0;
	meta(b, 16 * B, i == 3 ? "disk:o" : "");
	for (int k = 0; k < 4; k++)
		n += rec(b + n, 1, (uint64_t)k * 2, (uint64_t)k);
	n += rec(b + n, 3, 0, 0);
	if (i >= 1) {
		n += rec(b + n, 2, 3, 0);
		n += rec(b + n, 1, 5, 6);
		n += rec(b + n, 3, 0, 0);
	}
	if (i >= 2) {
		n += rec(b + n, 1, 15, 7);
		memcpy(b + n, "torn", 4);
		n += 4;
	}
	return n;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif
