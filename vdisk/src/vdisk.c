/*
 * libvdisk: the copy-on-write disk format (see vdisk/vdisk.h for the
 * layout and docs/design/vdisk.md for the write ordering).
 *
 * In memory a disk is a stack of layers, its own on top, then the frozen
 * disks it was cloned from, then the base image. Each layer has a block
 * map (0: not here, 1: zeros, else 2 + index in its data file) and the
 * CRC32C of every mapped data block. Only the top layer is written.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cell/endian.h"
#include "cell/fault.h"
#include "vdisk/vdisk.h"

#define META_LEN     512
#define META_MAGIC   "CMVDMETA"
#define META_VERSION 1
#define META_FROZEN  1u
#define PARENT_LEN   96

#define REC_LEN	  32
#define REC_MAGIC 0x564A524Eu /* "VJRN" */
enum { REC_MAP = 1, REC_ZERO = 2, REC_MARK = 3 };

#define MAP_NONE 0
#define MAP_ZERO 1

#define JBUF_CAP (64 * 1024)

struct meta {
	uint32_t flags;
	uint64_t size;
	char parent[PARENT_LEN];
	uint64_t base_size;
	uint64_t uid; /* random at creation; 0 in disks made before it */
};

struct layer {
	char name[VDISK_NAME_MAX + 1];
	uint64_t uid;
	int data_fd;
	uint64_t nblocks;
	uint64_t *map;
	uint32_t *crc;
};

struct vdisk {
	char store[4096];
	uint64_t size;
	bool ro;
	int nlayers; /* layers[0] is this disk */
	struct layer layers[VDISK_MAX_CHAIN + 1];
	int base_fd;
	uint64_t base_size;
	char base_id[VDISK_ID_LEN + 1];
	int journal_fd;
	uint64_t data_next; /* next free block of layers[0]'s data file */
	uint64_t jend;	    /* journal bytes on file */
	uint8_t *jbuf;	    /* records not yet written */
	size_t jlen;
	pthread_rwlock_t lock;
	struct vdisk_stats st; /* counters updated atomically */
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- small file helpers ---- */

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

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	return full_io(fd, (void *)buf, len, off, true);
}

static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	return full_io(fd, buf, len, off, false);
}

static int fsync_dir(const char *dir)
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

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > VDISK_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

static bool id_ok(const char *id)
{
	if (strlen(id) != VDISK_ID_LEN)
		return false;
	for (int i = 0; i < VDISK_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		      (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static void disk_path(char *out, size_t len, const char *store,
		      const char *name, const char *file)
{
	snprintf(out, len, "%s/disks/%s%s%s", store, name, file ? "/" : "",
		 file ? file : "");
}

/* ---- meta ---- */

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

static int meta_read(const char *store, const char *name, struct meta *m,
		     char *err, size_t errlen)
{
	char path[4200];
	uint8_t b[META_LEN];
	struct stat st;
	int fd, rc;

	disk_path(path, sizeof(path), store, name, "meta");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return fail(err, errlen, rc, "no disk named '%s'",
				    name);
		return fail(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fd, &st) == 0 && st.st_size != META_LEN) {
		close(fd);
		return fail(err, errlen, -EINVAL,
			    "%s: %lld bytes, a meta file has %d (truncated "
			    "or not a cellmon disk)",
			    path, (long long)st.st_size, META_LEN);
	}
	rc = full_pread(fd, b, META_LEN, 0);
	close(fd);
	if (rc)
		return fail(err, errlen, rc, "%s: %s", path, strerror(-rc));
	if (memcmp(b, META_MAGIC, 8) != 0)
		return fail(err, errlen, -EINVAL, "%s: bad magic", path);
	if (cell_get32(b + META_LEN - 4) != vdisk_crc32c(0, b, META_LEN - 4))
		return fail(err, errlen, -EINVAL, "%s: bad checksum", path);
	if (cell_get32(b + 8) != META_VERSION)
		return fail(err, errlen, -EINVAL, "%s: version %u unknown",
			    path, cell_get32(b + 8));
	m->flags = cell_get32(b + 12);
	m->size = cell_get64(b + 16);
	memcpy(m->parent, b + 24, PARENT_LEN);
	m->parent[PARENT_LEN - 1] = 0;
	m->base_size = cell_get64(b + 120);
	m->uid = cell_get64(b + 128);
	if (m->size == 0 || m->size % VDISK_BLOCK || m->size > VDISK_MAX_SIZE)
		return fail(err, errlen, -EINVAL, "%s: bad size %llu", path,
			    (unsigned long long)m->size);
	return 0;
}

/* The name of m's parent disk into cur; false if m's parent is not a
 * disk or names none validly. */
static bool parent_disk(const struct meta *m, char cur[VDISK_NAME_MAX + 1])
{
	size_t n;

	if (strncmp(m->parent, "disk:", 5) != 0)
		return false;
	n = strnlen(m->parent + 5, VDISK_NAME_MAX + 1);
	if (n > VDISK_NAME_MAX)
		return false;
	memcpy(cur, m->parent + 5, n + 1);
	return name_ok(cur);
}

/* Replaces dir/meta atomically (write, fsync, rename, fsync dir). */
static int meta_write(const char *dir, const struct meta *m)
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
	rc = full_pwrite(fd, b, META_LEN, 0);
	if (!rc && fsync(fd))
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (!rc)
		rc = fsync_dir(dir);
	return rc;
}

/* ---- store, bases ---- */

int vdisk_store_init(const char *store, char *err, size_t errlen)
{
	char path[4200];
	const char *sub[] = {"", "/bases", "/disks"};

	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s%s", store, sub[i]);
		if (mkdir(path, 0755) && errno != EEXIST)
			return fail(err, errlen, -errno, "mkdir %s: %s", path,
				    strerror(errno));
	}
	return 0;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

int vdisk_base_import(const char *store, const char *path,
		      char id[VDISK_ID_LEN + 1], char *err, size_t errlen)
{
	char tmp[4200], dst[4200];
	uint8_t digest[SHA256_DIGEST_SIZE];
	struct sha256_ctx ctx;
	uint8_t *buf;
	uint64_t total = 0;
	int in, out, rc = 0;

	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s/bases/.import.XXXXXX", store);
	out = mkostemp(tmp, O_CLOEXEC);
	buf = malloc(1 << 20);
	if (out < 0 || !buf) {
		rc = fail(err, errlen, out < 0 ? -errno : -ENOMEM,
			  "%s/bases: %s", store,
			  out < 0 ? strerror(errno) : "out of memory");
		goto done;
	}
	sha256_init(&ctx);
	for (;;) {
		ssize_t r = read(in, buf, 1 << 20);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = fail(err, errlen, -errno, "%s: %s", path,
				  strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		sha256_update(&ctx, (size_t)r, buf);
		rc = full_pwrite(out, buf, (size_t)r, total);
		if (rc) {
			fail(err, errlen, rc, "%s: %s", tmp, strerror(-rc));
			goto done;
		}
		total += (uint64_t)r;
	}
	if (total == 0 || total % VDISK_BLOCK || total > VDISK_MAX_SIZE) {
		rc = fail(err, errlen, -EINVAL,
			  "%s: %llu bytes; a base image must be a non-empty "
			  "multiple of 4096 bytes, at most 4 TiB",
			  path, (unsigned long long)total);
		goto done;
	}
	if (fsync(out)) {
		rc = fail(err, errlen, -errno, "%s: %s", tmp, strerror(errno));
		goto done;
	}
	sha256_digest(&ctx, sizeof(digest), digest);
	hex(digest, sizeof(digest), id);
	snprintf(dst, sizeof(dst), "%s/bases/%s.raw", store, id);
	if (access(dst, F_OK) == 0) {
		unlink(tmp); /* same contents already there */
	} else if (rename(tmp, dst)) {
		rc = fail(err, errlen, -errno, "%s: %s", dst, strerror(errno));
		goto done;
	}
	chmod(dst, 0444);
	snprintf(dst, sizeof(dst), "%s/bases", store);
	rc = fsync_dir(dst);
	if (rc)
		fail(err, errlen, rc, "%s: %s", dst, strerror(-rc));
done:
	if (rc && out >= 0)
		unlink(tmp);
	if (out >= 0)
		close(out);
	close(in);
	free(buf);
	return rc;
}

/* ---- create, clone, delete, list, info ---- */

static int check_parent(const char *store, const char *parent, uint64_t *size,
			uint64_t *base_size, char *err, size_t errlen)
{
	char path[4200];
	struct stat st;
	struct meta pm;
	int rc;

	*base_size = 0;
	if (!parent || !parent[0])
		return 0;
	if (strncmp(parent, "base:", 5) == 0) {
		if (!id_ok(parent + 5))
			return fail(err, errlen, -EINVAL,
				    "'%s' is not a base id (64 hex digits)",
				    parent + 5);
		snprintf(path, sizeof(path), "%s/bases/%s.raw", store,
			 parent + 5);
		if (stat(path, &st))
			return fail(err, errlen, -ENOENT, "no base image %s",
				    parent + 5);
		*base_size = (uint64_t)st.st_size;
		if (*size == 0)
			*size = *base_size;
		return 0;
	}
	if (strncmp(parent, "disk:", 5) == 0) {
		rc = meta_read(store, parent + 5, &pm, err, errlen);
		if (rc)
			return rc;
		if (!(pm.flags & META_FROZEN))
			return fail(err, errlen, -EBUSY,
				    "disk '%s' is not frozen; clone it instead",
				    parent + 5);
		if (*size == 0)
			*size = pm.size;
		if (*size < pm.size)
			return fail(err, errlen, -EINVAL,
				    "size %llu is smaller than its parent's "
				    "%llu",
				    (unsigned long long)*size,
				    (unsigned long long)pm.size);
		return 0;
	}
	return fail(err, errlen, -EINVAL,
		    "parent '%s': want base:<id> or disk:<name>", parent);
}

int vdisk_create(const char *store, const char *name, uint64_t size,
		 const char *parent, char *err, size_t errlen)
{
	char tmp[4200], dst[4200], path[4300];
	struct meta m = {0};
	int rc;

	if (!name_ok(name))
		return fail(err, errlen, -EINVAL,
			    "bad disk name '%s': 1-63 of [A-Za-z0-9._-], not "
			    "starting with '.'",
			    name);
	rc = check_parent(store, parent, &size, &m.base_size, err, errlen);
	if (rc)
		return rc;
	if (size == 0 || size % VDISK_BLOCK || size > VDISK_MAX_SIZE)
		return fail(err, errlen, -EINVAL,
			    "size %llu: want a non-zero multiple of 4096, at "
			    "most 4 TiB",
			    (unsigned long long)size);
	disk_path(dst, sizeof(dst), store, name, NULL);
	if (access(dst, F_OK) == 0)
		return fail(err, errlen, -EEXIST, "disk '%s' exists", name);
	snprintf(tmp, sizeof(tmp), "%s/disks/.new.%s.XXXXXX", store, name);
	if (!mkdtemp(tmp))
		return fail(err, errlen, -errno, "%s/disks: %s", store,
			    strerror(errno));
	m.size = size;
	snprintf(m.parent, sizeof(m.parent), "%s", parent ? parent : "");
	while (!m.uid)
		if (getrandom(&m.uid, sizeof(m.uid), 0) != sizeof(m.uid))
			m.uid = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	rc = meta_write(tmp, &m);
	for (int i = 0; !rc && i < 2; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%s", tmp,
			 i ? "journal" : "data");
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			rc = -errno;
		else
			close(fd);
	}
	if (!rc)
		rc = fsync_dir(tmp);
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (!rc) {
		snprintf(path, sizeof(path), "%s/disks", store);
		rc = fsync_dir(path);
	}
	if (rc) {
		for (int i = 0; i < 3; i++) {
			const char *f[] = {"meta", "data", "journal"};

			snprintf(path, sizeof(path), "%s/%s", tmp, f[i]);
			unlink(path);
		}
		rmdir(tmp);
		return fail(err, errlen, rc, "create '%s': %s", name,
			    strerror(-rc));
	}
	return 0;
}

int vdisk_clone(const char *store, const char *src, const char *name, char *err,
		size_t errlen)
{
	struct meta m;
	struct vdisk *d;
	char dir[4200], parent[PARENT_LEN];
	int rc;

	if (!name_ok(name))
		return fail(err, errlen, -EINVAL, "bad disk name '%s'", name);
	rc = meta_read(store, src, &m, err, errlen);
	if (rc)
		return rc;
	if (!(m.flags & META_FROZEN)) {
		/* Settle its journal (replay, cut the tail) before it can
		 * never change again. */
		rc = vdisk_open(store, src, &d, err, errlen);
		if (rc)
			return rc;
		rc = vdisk_flush(d);
		vdisk_close(d);
		if (rc)
			return fail(err, errlen, rc, "flush '%s': %s", src,
				    strerror(-rc));
		m.flags |= META_FROZEN;
		disk_path(dir, sizeof(dir), store, src, NULL);
		rc = meta_write(dir, &m);
		if (rc)
			return fail(err, errlen, rc, "freeze '%s': %s", src,
				    strerror(-rc));
	}
	snprintf(parent, sizeof(parent), "disk:%s", src);
	return vdisk_create(store, name, 0, parent, err, errlen);
}

int vdisk_list(const char *store, char ***names, size_t *count, char *err,
	       size_t errlen)
{
	char path[4200];
	struct dirent **ents;
	char **out;
	int n, k = 0;

	snprintf(path, sizeof(path), "%s/disks", store);
	n = scandir(path, &ents, NULL, alphasort);
	if (n < 0)
		return fail(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	out = calloc((size_t)n + 1, sizeof(*out));
	for (int i = 0; i < n; i++) {
		if (out && name_ok(ents[i]->d_name))
			out[k++] = strdup(ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	if (!out)
		return fail(err, errlen, -ENOMEM, "out of memory");
	*names = out;
	*count = (size_t)k;
	return 0;
}

int vdisk_delete(const char *store, const char *name, char *err, size_t errlen)
{
	char **names, path[4300], dir[4200], want[PARENT_LEN];
	size_t n;
	struct meta m;
	int rc;

	rc = meta_read(store, name, &m, err, errlen);
	if (rc)
		return rc;
	rc = vdisk_list(store, &names, &n, err, errlen);
	if (rc)
		return rc;
	snprintf(want, sizeof(want), "disk:%s", name);
	for (size_t i = 0; i < n; i++) {
		struct meta c;

		if (!rc && meta_read(store, names[i], &c, NULL, 0) == 0 &&
		    strcmp(c.parent, want) == 0)
			rc = fail(err, errlen, -EBUSY,
				  "disk '%s' is cloned from '%s'; delete it "
				  "first",
				  names[i], name);
		free(names[i]);
	}
	free(names);
	if (rc)
		return rc;
	disk_path(dir, sizeof(dir), store, name, NULL);
	/* meta goes first: a half-deleted disk no longer opens. "fence" is
	 * the disk server's write fence (vdiskd_main.c). */
	for (int i = 0; i < 4; i++) {
		const char *f[] = {"meta", "journal", "data", "fence"};

		snprintf(path, sizeof(path), "%s/%s", dir, f[i]);
		if (unlink(path) && errno != ENOENT)
			return fail(err, errlen, -errno, "%s: %s", path,
				    strerror(errno));
	}
	if (rmdir(dir))
		return fail(err, errlen, -errno, "%s: %s", dir,
			    strerror(errno));
	snprintf(path, sizeof(path), "%s/disks", store);
	return fsync_dir(path);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

int vdisk_info(const char *store, const char *name, struct vdisk_info *out,
	       char *err, size_t errlen)
{
	char path[4200], cur[VDISK_NAME_MAX + 1];
	struct meta m;
	int rc = meta_read(store, name, &m, err, errlen);

	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	out->size = m.size;
	out->frozen = m.flags & META_FROZEN;
	memcpy(out->parent, m.parent, sizeof(out->parent));
	disk_path(path, sizeof(path), store, name, "data");
	out->data_bytes = file_size(path);
	disk_path(path, sizeof(path), store, name, "journal");
	out->journal_bytes = file_size(path);
	while (out->chain_depth < VDISK_MAX_CHAIN && parent_disk(&m, cur)) {
		if (meta_read(store, cur, &m, NULL, 0))
			break;
		out->chain_depth++;
	}
	return 0;
}

/* ---- open: layers and journal replay ---- */

static void rec_pack(uint8_t *b, uint16_t type, uint64_t vblock, uint64_t index,
		     uint32_t crc)
{
	cell_put32(b, REC_MAGIC);
	cell_put16(b + 4, type);
	cell_put16(b + 6, 0);
	cell_put64(b + 8, vblock);
	cell_put64(b + 16, index);
	cell_put32(b + 24, crc);
	cell_put32(b + 28, vdisk_crc32c(0, b, 28));
}

static bool rec_valid(const uint8_t *b)
{
	uint16_t t = cell_get16(b + 4);

	return cell_get32(b) == REC_MAGIC && t >= REC_MAP && t <= REC_MARK &&
	       cell_get32(b + 28) == vdisk_crc32c(0, b, 28);
}

static bool block_checks(int fd, uint64_t index, uint32_t crc, uint8_t *buf)
{
	return full_pread(fd, buf, VDISK_BLOCK, index * VDISK_BLOCK) == 0 &&
	       vdisk_crc32c(0, buf, VDISK_BLOCK) == crc;
}

/*
 * Replays layer l's journal. Records up to the last flush mark are
 * trusted but must point inside the data file; a damaged record there is
 * corruption. After the mark, records apply while they are whole and
 * their data checks; the first that does not ends the journal (an
 * unflushed tail cut by a crash). *keep is the journal length to keep.
 */
static int replay(struct vdisk *d, struct layer *l, int jfd,
		  uint64_t data_blocks, uint64_t *keep, char *err,
		  size_t errlen)
{
	struct stat st;
	uint8_t *j = NULL, *blk = NULL;
	size_t nrec, last_mark = 0, first_bad;
	int rc = 0;

	if (fstat(jfd, &st))
		return fail(err, errlen, -errno, "journal of '%s': %s", l->name,
			    strerror(errno));
	nrec = (size_t)st.st_size / REC_LEN;
	j = malloc(nrec * REC_LEN + 1);
	blk = malloc(VDISK_BLOCK);
	if (!j || !blk) {
		rc = fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (nrec && full_pread(jfd, j, nrec * REC_LEN, 0)) {
		rc = fail(err, errlen, -EIO, "journal of '%s': read error",
			  l->name);
		goto out;
	}
	first_bad = nrec;
	for (size_t i = 0; i < nrec; i++) {
		const uint8_t *r = j + i * REC_LEN;

		if (!rec_valid(r)) {
			if (first_bad == nrec)
				first_bad = i;
			continue;
		}
		if (cell_get16(r + 4) == REC_MARK) {
			if (first_bad < i) {
				rc = fail(err, errlen, -EINVAL,
					  "journal of '%s': record %zu is "
					  "damaged but flushed records follow "
					  "it (corrupt journal)",
					  l->name, first_bad);
				goto out;
			}
			last_mark = i + 1;
		}
	}
	*keep = 0;
	for (size_t i = 0; i < first_bad; i++) {
		const uint8_t *r = j + i * REC_LEN;
		uint16_t type = cell_get16(r + 4);
		uint64_t vb = cell_get64(r + 8), idx = cell_get64(r + 16);
		uint32_t crc = cell_get32(r + 24);
		bool flushed = i < last_mark;

		if (type != REC_MARK && vb >= l->nblocks) {
			if (flushed) {
				rc = fail(err, errlen, -EINVAL,
					  "journal of '%s': record %zu maps "
					  "block %llu of a %llu-block disk",
					  l->name, i, (unsigned long long)vb,
					  (unsigned long long)l->nblocks);
				goto out;
			}
			break;
		}
		if (type == REC_MAP && idx >= data_blocks) {
			if (flushed) {
				rc = fail(err, errlen, -EINVAL,
					  "journal of '%s': record %zu points "
					  "at data block %llu past the end "
					  "(%llu blocks)",
					  l->name, i, (unsigned long long)idx,
					  (unsigned long long)data_blocks);
				goto out;
			}
			break;
		}
		if (type == REC_MAP && !flushed &&
		    !block_checks(l->data_fd, idx, crc, blk))
			break; /* its data never made it to disk */
		if (type == REC_MAP) {
			l->map[vb] = idx + 2;
			l->crc[vb] = crc;
		} else if (type == REC_ZERO) {
			l->map[vb] = MAP_ZERO;
		}
		if (l == &d->layers[0])
			d->st.replayed++;
		*keep = (uint64_t)(i + 1) * REC_LEN;
	}
	if (l == &d->layers[0])
		d->st.dropped = nrec - *keep / REC_LEN;
out:
	free(j);
	free(blk);
	return rc;
}

static int layer_open(struct vdisk *d, struct layer *l, const char *name,
		      uint64_t size, bool top, char *err, size_t errlen)
{
	char path[4200];
	struct stat st;
	uint64_t data_blocks, keep = 0;
	int jfd, rc;

	snprintf(l->name, sizeof(l->name), "%s", name);
	l->nblocks = size / VDISK_BLOCK;
	l->map = calloc(l->nblocks, sizeof(*l->map));
	l->crc = calloc(l->nblocks, sizeof(*l->crc));
	if (!l->map || !l->crc)
		return fail(err, errlen, -ENOMEM,
			    "out of memory for the "
			    "map of '%s'",
			    name);
	disk_path(path, sizeof(path), d->store, name, "data");
	l->data_fd = open(path, (top ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (l->data_fd < 0)
		return fail(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	if (fstat(l->data_fd, &st))
		return fail(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	data_blocks = (uint64_t)st.st_size / VDISK_BLOCK;
	disk_path(path, sizeof(path), d->store, name, "journal");
	jfd = open(path, (top ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (jfd < 0)
		return fail(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	rc = replay(d, l, jfd, data_blocks, &keep, err, errlen);
	if (rc) {
		close(jfd);
		return rc;
	}
	if (!top) {
		close(jfd);
		return 0;
	}
	/* Cut the unflushed tail, so new records follow applied ones. */
	if (fstat(jfd, &st) == 0 && (uint64_t)st.st_size != keep &&
	    (ftruncate(jfd, (off_t)keep) || fdatasync(jfd))) {
		rc = -errno;
		close(jfd);
		return fail(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	d->journal_fd = jfd;
	d->jend = keep;
	d->data_next = data_blocks;
	return 0;
}

int vdisk_open(const char *store, const char *name, struct vdisk **out,
	       char *err, size_t errlen)
{
	struct vdisk *d = calloc(1, sizeof(*d));
	char cur[VDISK_NAME_MAX + 1];
	struct meta m;
	int rc;

	if (!d)
		return fail(err, errlen, -ENOMEM, "out of memory");
	snprintf(d->store, sizeof(d->store), "%s", store);
	d->base_fd = d->journal_fd = -1;
	for (int i = 0; i <= VDISK_MAX_CHAIN; i++)
		d->layers[i].data_fd = -1;
	pthread_rwlock_init(&d->lock, NULL);
	d->jbuf = malloc(JBUF_CAP);
	if (!d->jbuf) {
		rc = fail(err, errlen, -ENOMEM, "out of memory");
		goto bad;
	}
	if (!name_ok(name)) {
		rc = fail(err, errlen, -EINVAL, "bad disk name '%s'", name);
		goto bad;
	}
	snprintf(cur, sizeof(cur), "%s", name);
	for (;;) {
		bool top = d->nlayers == 0;

		rc = meta_read(store, cur, &m, err, errlen);
		if (rc)
			goto bad;
		if (top) {
			d->size = m.size;
			d->ro = m.flags & META_FROZEN;
		} else if (!(m.flags & META_FROZEN)) {
			rc = fail(err, errlen, -EINVAL,
				  "'%s' is in the chain of '%s' but not "
				  "frozen",
				  cur, name);
			goto bad;
		}
		rc = layer_open(d, &d->layers[d->nlayers], cur, m.size,
				top && !d->ro, err, errlen);
		if (rc)
			goto bad;
		d->layers[d->nlayers].uid = m.uid;
		d->nlayers++;
		if (strncmp(m.parent, "disk:", 5) != 0)
			break;
		if (d->nlayers > VDISK_MAX_CHAIN) {
			rc = fail(err, errlen, -ELOOP,
				  "chain of '%s' deeper than %d", name,
				  VDISK_MAX_CHAIN);
			goto bad;
		}
		if (!parent_disk(&m, cur)) {
			rc = fail(err, errlen, -EINVAL,
				  "bad parent '%s' in the chain of '%s'",
				  m.parent, name);
			goto bad;
		}
	}
	if (strncmp(m.parent, "base:", 5) == 0) {
		char path[4200];
		struct stat st;

		snprintf(path, sizeof(path), "%s/bases/%s.raw", store,
			 m.parent + 5);
		d->base_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (d->base_fd < 0 || fstat(d->base_fd, &st)) {
			rc = fail(err, errlen, -ENOENT,
				  "base image %s of '%s' is missing",
				  m.parent + 5, cur);
			goto bad;
		}
		d->base_size = (uint64_t)st.st_size;
		snprintf(d->base_id, sizeof(d->base_id), "%.64s", m.parent + 5);
		if (d->base_size != m.base_size) {
			rc = fail(err, errlen, -EINVAL,
				  "base image %s is %llu bytes, '%s' was "
				  "made over %llu",
				  m.parent + 5,
				  (unsigned long long)d->base_size, cur,
				  (unsigned long long)m.base_size);
			goto bad;
		}
	} else if (m.parent[0]) {
		rc = fail(err, errlen, -EINVAL, "'%s': unknown parent '%s'",
			  cur, m.parent);
		goto bad;
	}
	*out = d;
	return 0;
bad:
	vdisk_close(d);
	return rc;
}

void vdisk_close(struct vdisk *d)
{
	if (!d)
		return;
	if (d->journal_fd >= 0 && d->jlen)
		full_pwrite(d->journal_fd, d->jbuf, d->jlen, d->jend);
	for (int i = 0; i <= VDISK_MAX_CHAIN; i++) {
		if (d->layers[i].data_fd >= 0)
			close(d->layers[i].data_fd);
		free(d->layers[i].map);
		free(d->layers[i].crc);
	}
	if (d->journal_fd >= 0)
		close(d->journal_fd);
	if (d->base_fd >= 0)
		close(d->base_fd);
	pthread_rwlock_destroy(&d->lock);
	free(d->jbuf);
	free(d);
}

uint64_t vdisk_size(const struct vdisk *d)
{
	return d->size;
}

bool vdisk_readonly(const struct vdisk *d)
{
	return d->ro;
}

/* ---- I/O ---- */

/* Where block b's bytes are: *fd and *off, or fd -1 for zeros. The CRC
 * to check is in *crc when *check. */
static void locate(const struct vdisk *d, uint64_t b, int *fd, uint64_t *off,
		   uint32_t *crc, bool *check)
{
	*check = false;
	for (int i = 0; i < d->nlayers; i++) {
		const struct layer *l = &d->layers[i];
		uint64_t v;

		if (b >= l->nblocks)
			continue;
		v = l->map[b];
		if (v == MAP_NONE)
			continue;
		if (v == MAP_ZERO) {
			*fd = -1;
			return;
		}
		*fd = l->data_fd;
		*off = (v - 2) * VDISK_BLOCK;
		*crc = l->crc[b];
		*check = true;
		return;
	}
	if (d->base_fd >= 0 && (b + 1) * VDISK_BLOCK <= d->base_size) {
		*fd = d->base_fd;
		*off = b * VDISK_BLOCK;
		return;
	}
	*fd = -1;
}

#define RUN_MAX 64 /* blocks per pread of a contiguous run */

/* Reads whole blocks [b, b + n) into buf, merging contiguous runs (up to
 * RUN_MAX blocks) into one pread and checking every data block's CRC. */
static int read_blocks(struct vdisk *d, uint8_t *buf, uint64_t b, uint64_t n)
{
	uint64_t i = 0;

	while (i < n) {
		uint32_t crc[RUN_MAX];
		bool check[RUN_MAX];
		uint64_t off = 0, off2 = 0, run = 1;
		int fd, fd2;

		locate(d, b + i, &fd, &off, &crc[0], &check[0]);
		while (i + run < n && run < RUN_MAX) {
			locate(d, b + i + run, &fd2, &off2, &crc[run],
			       &check[run]);
			if (fd2 != fd ||
			    (fd >= 0 && off2 != off + run * VDISK_BLOCK))
				break;
			run++;
		}
		if (fd < 0) {
			memset(buf + i * VDISK_BLOCK, 0, run * VDISK_BLOCK);
		} else {
			if (full_pread(fd, buf + i * VDISK_BLOCK,
				       run * VDISK_BLOCK, off))
				return -EIO;
			for (uint64_t k = 0; k < run; k++)
				if (check[k] &&
				    vdisk_crc32c(0, buf + (i + k) * VDISK_BLOCK,
						 VDISK_BLOCK) != crc[k])
					return -EIO;
		}
		i += run;
	}
	return 0;
}

static int range_ok(const struct vdisk *d, uint64_t off, uint64_t len)
{
	if (off > d->size || len > d->size - off)
		return -EINVAL;
	return 0;
}

static void count(uint64_t *ops, uint64_t *bytes, uint64_t len)
{
	__atomic_add_fetch(ops, 1, __ATOMIC_RELAXED);
	if (bytes)
		__atomic_add_fetch(bytes, len, __ATOMIC_RELAXED);
}

int vdisk_read(struct vdisk *d, void *buf, uint64_t off, uint32_t len)
{
	uint64_t first = off / VDISK_BLOCK;
	uint64_t last = (off + len + VDISK_BLOCK - 1) / VDISK_BLOCK;
	uint8_t *tmp;
	int rc;

	if (range_ok(d, off, len))
		return -EINVAL;
	if (len == 0)
		return 0;
	pthread_rwlock_rdlock(&d->lock);
	if (off % VDISK_BLOCK == 0 && len % VDISK_BLOCK == 0) {
		rc = read_blocks(d, buf, first, last - first);
	} else {
		tmp = malloc((last - first) * VDISK_BLOCK);
		rc = tmp ? read_blocks(d, tmp, first, last - first) : -ENOMEM;
		if (!rc)
			memcpy(buf, tmp + off % VDISK_BLOCK, len);
		free(tmp);
	}
	pthread_rwlock_unlock(&d->lock);
	count(&d->st.reads, &d->st.bytes_read, len);
	return rc;
}

/* Queues a record; writes the queue out when full. Write lock held. */
static int journal_add(struct vdisk *d, uint16_t type, uint64_t vb,
		       uint64_t idx, uint32_t crc)
{
	int rc;

	if (d->jlen + REC_LEN > JBUF_CAP) {
		rc = CELL_FAULT("vdisk.journal-write");
		if (!rc)
			rc = full_pwrite(d->journal_fd, d->jbuf, d->jlen,
					 d->jend);
		if (rc)
			return rc;
		d->jend += d->jlen;
		d->jlen = 0;
	}
	rec_pack(d->jbuf + d->jlen, type, vb, idx, crc);
	d->jlen += REC_LEN;
	return 0;
}

/* Writes whole blocks: data appended in one pwrite, then one record per
 * block. Write lock held. */
static int write_blocks(struct vdisk *d, const uint8_t *buf, uint64_t b,
			uint64_t n)
{
	uint64_t idx = d->data_next;
	struct layer *l = &d->layers[0];
	int rc;

	rc = CELL_FAULT("vdisk.data-write");
	if (!rc)
		rc = full_pwrite(l->data_fd, buf, n * VDISK_BLOCK,
				 idx * VDISK_BLOCK);
	if (rc)
		return rc;
	d->data_next += n;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t crc =
			vdisk_crc32c(0, buf + i * VDISK_BLOCK, VDISK_BLOCK);

		rc = journal_add(d, REC_MAP, b + i, idx + i, crc);
		if (rc)
			return rc;
		l->map[b + i] = idx + i + 2;
		l->crc[b + i] = crc;
	}
	return 0;
}

/* Flush with the write lock held. */
static int flush_locked(struct vdisk *d)
{
	uint8_t mark[REC_LEN];
	int rc;

	if (d->jlen) {
		rc = CELL_FAULT("vdisk.journal-write");
		if (!rc)
			rc = full_pwrite(d->journal_fd, d->jbuf, d->jlen,
					 d->jend);
		if (rc)
			return rc;
		d->jend += d->jlen;
		d->jlen = 0;
	}
	if ((rc = CELL_FAULT("vdisk.data-sync")))
		return rc;
	if (fdatasync(d->layers[0].data_fd))
		return -errno;
	rec_pack(mark, REC_MARK, 0, 0, 0);
	rc = CELL_FAULT("vdisk.mark-write");
	if (!rc)
		rc = full_pwrite(d->journal_fd, mark, REC_LEN, d->jend);
	if (rc)
		return rc;
	d->jend += REC_LEN;
	if ((rc = CELL_FAULT("vdisk.journal-sync")))
		return rc;
	if (fdatasync(d->journal_fd))
		return -errno;
	return 0;
}

/* A partial block: read it through the chain, patch, write it whole. */
static int patch_block(struct vdisk *d, uint64_t b, size_t at,
		       const uint8_t *src, size_t len)
{
	uint8_t blk[VDISK_BLOCK];
	int rc = read_blocks(d, blk, b, 1);

	if (rc)
		return rc;
	if (src)
		memcpy(blk + at, src, len);
	else
		memset(blk + at, 0, len);
	return write_blocks(d, blk, b, 1);
}

/* Applies a write (src) or a zeroing (src NULL) of [off, off+len). */
static int modify(struct vdisk *d, const uint8_t *src, uint64_t off,
		  uint64_t len, bool fua)
{
	uint64_t b = off / VDISK_BLOCK, end = off + len;
	int rc = 0;

	if (d->ro)
		return -EROFS;
	if (range_ok(d, off, len))
		return -EINVAL;
	pthread_rwlock_wrlock(&d->lock);
	while (!rc && off < end) {
		size_t at = off % VDISK_BLOCK;
		uint64_t whole;

		if (at || end - off < VDISK_BLOCK) {
			size_t n = VDISK_BLOCK - at;

			if (n > end - off)
				n = (size_t)(end - off);
			rc = patch_block(d, b, at, src, n);
			off += n;
			if (src)
				src += n;
			b++;
			continue;
		}
		whole = (end - off) / VDISK_BLOCK;
		if (src) {
			rc = write_blocks(d, src, b, whole);
			src += whole * VDISK_BLOCK;
		} else {
			for (uint64_t i = 0; !rc && i < whole; i++) {
				rc = journal_add(d, REC_ZERO, b + i, 0, 0);
				if (!rc)
					d->layers[0].map[b + i] = MAP_ZERO;
			}
		}
		off += whole * VDISK_BLOCK;
		b += whole;
	}
	if (!rc && fua)
		rc = flush_locked(d);
	pthread_rwlock_unlock(&d->lock);
	return rc;
}

int vdisk_write(struct vdisk *d, const void *buf, uint64_t off, uint32_t len,
		bool fua)
{
	int rc = modify(d, buf, off, len, fua);

	if (!rc)
		count(&d->st.writes, &d->st.bytes_written, len);
	return rc;
}

int vdisk_zero(struct vdisk *d, uint64_t off, uint64_t len, bool fua)
{
	int rc = modify(d, NULL, off, len, fua);

	if (!rc)
		count(&d->st.zeroes, NULL, 0);
	return rc;
}

int vdisk_flush(struct vdisk *d)
{
	int rc;

	if (d->ro)
		return 0;
	pthread_rwlock_wrlock(&d->lock);
	/* a test build's slow disk: sleep here, with the disk's lock held */
	rc = CELL_FAULT("vdisk.flush");
	if (!rc)
		rc = flush_locked(d);
	pthread_rwlock_unlock(&d->lock);
	if (!rc)
		count(&d->st.flushes, NULL, 0);
	return rc;
}

void vdisk_stats(struct vdisk *d, struct vdisk_stats *out)
{
	const uint64_t *src = (const uint64_t *)&d->st;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- what a caching client needs ---- */

int vdisk_map_get(struct vdisk *d, struct vdisk_map *out)
{
	const struct layer *top = &d->layers[0];
	uint64_t nblocks = d->size / VDISK_BLOCK;

	memset(out, 0, sizeof(*out));
	out->size = d->size;
	out->nblocks = nblocks;
	out->top = calloc((nblocks + 7) / 8 + 1, 1);
	if (!out->top)
		return -ENOMEM;
	pthread_rwlock_rdlock(&d->lock);
	if (d->ro) {
		/* A frozen disk never changes: all of it is "below". */
		if (top->uid)
			snprintf(out->below, sizeof(out->below), "disk:%016llx",
				 (unsigned long long)top->uid);
		else
			memset(out->top, 0xff, (nblocks + 7) / 8);
		pthread_rwlock_unlock(&d->lock);
		return 0;
	}
	for (uint64_t b = 0; b < nblocks && b < top->nblocks; b++)
		if (top->map[b])
			out->top[b / 8] |= (uint8_t)(1u << (b % 8));
	if (d->nlayers > 1 && d->layers[1].uid)
		snprintf(out->below, sizeof(out->below), "disk:%016llx",
			 (unsigned long long)d->layers[1].uid);
	else if (d->nlayers == 1 && d->base_id[0])
		snprintf(out->below, sizeof(out->below), "base:%s", d->base_id);
	else if (d->nlayers == 1)
		snprintf(out->below, sizeof(out->below), "zero");
	pthread_rwlock_unlock(&d->lock);
	return 0;
}

void vdisk_map_free(struct vdisk_map *m)
{
	free(m->top);
	m->top = NULL;
}
