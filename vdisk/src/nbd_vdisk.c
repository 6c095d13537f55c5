/*
 * A vdisk (vdisk.h) as the NBD server's disk (nbd.h): what cellmon-vdiskd
 * serves, and what the NBD fuzz target serves.
 */
#include "nbd.h"
#include "vdisk/vdisk.h"

static uint64_t op_size(void *d)
{
	return vdisk_size(d);
}

static bool op_readonly(void *d)
{
	return vdisk_readonly(d);
}

static int op_read(void *d, void *buf, uint64_t off, uint32_t len)
{
	return vdisk_read(d, buf, off, len);
}

static int op_write(void *d, const void *buf, uint64_t off, uint32_t len,
		    bool fua)
{
	return vdisk_write(d, buf, off, len, fua);
}

static int op_flush(void *d)
{
	return vdisk_flush(d);
}

static int op_zero(void *d, uint64_t off, uint64_t len, bool fua)
{
	return vdisk_zero(d, off, len, fua);
}

const struct nbd_disk_ops nbd_vdisk_ops = {
	.size = op_size,
	.readonly = op_readonly,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.zero = op_zero,
	.min_block = 1, /* any offset and length */
};
