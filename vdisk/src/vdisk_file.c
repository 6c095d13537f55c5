/*
 * The files under libvdisk: whole-buffer reads and writes at an offset,
 * directory fsyncs, the names a store allows, where a disk's files live,
 * and a disk's meta file (size, flags, parent, uid) read and written
 * atomically. A leaf of the library: the store, the journal and the open
 * disk all build on it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/util.h"
#include "vdisk_int.h"

int vdisk__fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* All of len bytes at off, or -errno; a read past the end of the file
 * is -EIO. */
static int full_io(int fd, void *buf, size_t len, uint64_t off, bool write)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = write ? pwrite(fd, p, len, (off_t)off)
				  : pread(fd, p, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int vdisk__full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	return full_io(fd, (void *)buf, len, off, true);
}

int vdisk__full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	return full_io(fd, buf, len, off, false);
}

int vdisk__fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

bool vdisk__name_ok(const char *name)
{
	return cell_name_valid(name);
}

bool vdisk__id_ok(const char *id)
{
	if (strlen(id) != VDISK_ID_LEN)
		return false;
	for (int i = 0; i < VDISK_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

void vdisk__disk_path(char *out, size_t len, const char *store,
		      const char *name, const char *file)
{
	snprintf(out, len, "%s/disks/%s%s%s", store, name, file ? "/" : "",
		 file ? file : "");
}

static void meta_pack(const struct meta *m, uint8_t out[META_LEN])
{
	memset(out, 0, META_LEN);
	memcpy(out, META_MAGIC, 8);
	cell_put32(out + 8, META_VERSION);
	cell_put32(out + 12, m->flags);
	cell_put64(out + 16, m->size);
	memcpy(out + 24, m->parent, strnlen(m->parent, PARENT_LEN - 1));
	cell_put64(out + 120, m->base_size);
	cell_put64(out + 128, m->uid);
	cell_put32(out + META_LEN - 4, vdisk_crc32c(0, out, META_LEN - 4));
}

int vdisk__meta_read(const char *store, const char *name, struct meta *m,
		     char *err, size_t errlen)
{
	char path[4200];
	uint8_t b[META_LEN];
	struct stat st;
	int fd, rc;

	vdisk__disk_path(path, sizeof(path), store, name, "meta");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return vdisk__fail(err, errlen, rc,
					   "no disk named '%s'", name);
		return vdisk__fail(err, errlen, rc, "%s: %s", path,
				   strerror(-rc));
	}
	if (fstat(fd, &st) == 0 && st.st_size != META_LEN) {
		close(fd);
		return vdisk__fail(
			err, errlen, -EINVAL,
			"%s: %lld bytes, a meta file has %d (truncated "
			"or not a cellmon disk)",
			path, (long long)st.st_size, META_LEN);
	}
	rc = vdisk__full_pread(fd, b, META_LEN, 0);
	close(fd);
	if (rc)
		return vdisk__fail(err, errlen, rc, "%s: %s", path,
				   strerror(-rc));
	if (memcmp(b, META_MAGIC, 8) != 0)
		return vdisk__fail(err, errlen, -EINVAL, "%s: bad magic", path);
	if (cell_get32(b + META_LEN - 4) != vdisk_crc32c(0, b, META_LEN - 4))
		return vdisk__fail(err, errlen, -EINVAL, "%s: bad checksum",
				   path);
	if (cell_get32(b + 8) != META_VERSION)
		return vdisk__fail(err, errlen, -EINVAL,
				   "%s: version %u unknown", path,
				   cell_get32(b + 8));
	m->flags = cell_get32(b + 12);
	m->size = cell_get64(b + 16);
	memcpy(m->parent, b + 24, PARENT_LEN);
	m->parent[PARENT_LEN - 1] = 0;
	m->base_size = cell_get64(b + 120);
	m->uid = cell_get64(b + 128);
	if (m->size == 0 || m->size % VDISK_BLOCK || m->size > VDISK_MAX_SIZE)
		return vdisk__fail(err, errlen, -EINVAL, "%s: bad size %llu",
				   path, (unsigned long long)m->size);
	return 0;
}

/* The name of m's parent disk into cur; false if m's parent is not a
 * disk or names none validly. */
bool vdisk__parent_disk(const struct meta *m, char cur[VDISK_NAME_MAX + 1])
{
	size_t n;

	if (strncmp(m->parent, "disk:", 5) != 0)
		return false;
	n = strnlen(m->parent + 5, VDISK_NAME_MAX + 1);
	if (n > VDISK_NAME_MAX)
		return false;
	memcpy(cur, m->parent + 5, n + 1);
	return vdisk__name_ok(cur);
}

/* Replaces dir/meta atomically (write, fsync, rename, fsync dir). */
int vdisk__meta_write(const char *dir, const struct meta *m)
{
	char path[4200], tmp[4200];
	uint8_t b[META_LEN];
	int fd, rc;

	meta_pack(m, b);
	snprintf(path, sizeof(path), "%s/meta", dir);
	snprintf(tmp, sizeof(tmp), "%s/meta.new", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = vdisk__full_pwrite(fd, b, META_LEN, 0);
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (!rc)
		rc = vdisk__fsync_dir(dir);
	return rc;
}
