/*
 * The store of libvdisk: base images named by the SHA-256 of their
 * bytes, imported once and never changed; disks as a directory each
 * (meta, data, journal) over a base or a frozen disk; create, clone
 * (which freezes the source), delete (refused while something is cloned
 * from it), list and info. Every change is made durable (file and
 * directory fsyncs) before it returns. Files and meta: vdisk_file.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/util.h"
#include "vdisk_int.h"

int vdisk_store_init(const char *store, char *err, size_t errlen)
{
	char path[4200];
	const char *sub[] = {"", "/bases", "/disks"};

	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s%s", store, sub[i]);
		if (mkdir(path, 0755) && errno != EEXIST)
			return vdisk__fail(err, errlen, -errno, "mkdir %s: %s",
					   path, strerror(errno));
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
		return vdisk__fail(err, errlen, -errno, "%s: %s", path,
				   strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s/bases/.import.XXXXXX", store);
	out = mkostemp(tmp, O_CLOEXEC);
	buf = malloc(1 << 20);
	if (out < 0 || !buf) {
		rc = vdisk__fail(err, errlen, out < 0 ? -errno : -ENOMEM,
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
			rc = vdisk__fail(err, errlen, -errno, "%s: %s", path,
					 strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		sha256_update(&ctx, (size_t)r, buf);
		rc = vdisk__full_pwrite(out, buf, (size_t)r, total);
		if (rc) {
			vdisk__fail(err, errlen, rc, "%s: %s", tmp,
				    strerror(-rc));
			goto done;
		}
		total += (uint64_t)r;
	}
	if (total == 0 || total % VDISK_BLOCK || total > VDISK_MAX_SIZE) {
		rc = vdisk__fail(
			err, errlen, -EINVAL,
			"%s: %llu bytes; a base image must be a non-empty "
			"multiple of 4096 bytes, at most 4 TiB",
			path, (unsigned long long)total);
		goto done;
	}
	if (fsync(out)) {
		rc = vdisk__fail(err, errlen, -errno, "%s: %s", tmp,
				 strerror(errno));
		goto done;
	}
	sha256_digest(&ctx, sizeof(digest), digest);
	hex(digest, sizeof(digest), id);
	snprintf(dst, sizeof(dst), "%s/bases/%s.raw", store, id);
	if (access(dst, F_OK) == 0) {
		unlink(tmp); /* same contents already there */
	} else if (rename(tmp, dst)) {
		rc = vdisk__fail(err, errlen, -errno, "%s: %s", dst,
				 strerror(errno));
		goto done;
	}
	chmod(dst, 0444);
	snprintf(dst, sizeof(dst), "%s/bases", store);
	rc = vdisk__fsync_dir(dst);
	if (rc)
		vdisk__fail(err, errlen, rc, "%s: %s", dst, strerror(-rc));
done:
	if (rc && out >= 0)
		unlink(tmp);
	if (out >= 0)
		close(out);
	close(in);
	free(buf);
	return rc;
}

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
		if (!vdisk__id_ok(parent + 5))
			return vdisk__fail(
				err, errlen, -EINVAL,
				"'%s' is not a base id (64 hex digits)",
				parent + 5);
		snprintf(path, sizeof(path), "%s/bases/%s.raw", store,
			 parent + 5);
		if (stat(path, &st))
			return vdisk__fail(err, errlen, -ENOENT,
					   "no base image %s", parent + 5);
		*base_size = (uint64_t)st.st_size;
		if (*size == 0)
			*size = *base_size;
		return 0;
	}
	if (strncmp(parent, "disk:", 5) == 0) {
		rc = vdisk__meta_read(store, parent + 5, &pm, err, errlen);
		if (rc)
			return rc;
		if (!(pm.flags & META_FROZEN))
			return vdisk__fail(
				err, errlen, -EBUSY,
				"disk '%s' is not frozen; clone it instead",
				parent + 5);
		if (*size == 0)
			*size = pm.size;
		if (*size < pm.size)
			return vdisk__fail(
				err, errlen, -EINVAL,
				"size %llu is smaller than its parent's "
				"%llu",
				(unsigned long long)*size,
				(unsigned long long)pm.size);
		return 0;
	}
	return vdisk__fail(err, errlen, -EINVAL,
			   "parent '%s': want base:<id> or disk:<name>",
			   parent);
}

int vdisk_create(const char *store, const char *name, uint64_t size,
		 const char *parent, char *err, size_t errlen)
{
	char tmp[4200], dst[4200], path[4300];
	struct meta m = {0};
	int rc;

	if (!vdisk__name_ok(name))
		return vdisk__fail(err, errlen, -EINVAL,
				   "bad disk name '%s': use " CELL_NAME_RULE,
				   name);
	rc = check_parent(store, parent, &size, &m.base_size, err, errlen);
	if (rc)
		return rc;
	if (size == 0 || size % VDISK_BLOCK || size > VDISK_MAX_SIZE)
		return vdisk__fail(
			err, errlen, -EINVAL,
			"size %llu: want a non-zero multiple of 4096, at "
			"most 4 TiB",
			(unsigned long long)size);
	vdisk__disk_path(dst, sizeof(dst), store, name, NULL);
	if (access(dst, F_OK) == 0)
		return vdisk__fail(err, errlen, -EEXIST, "disk '%s' exists",
				   name);
	snprintf(tmp, sizeof(tmp), "%s/disks/.new.%s.XXXXXX", store, name);
	if (!mkdtemp(tmp))
		return vdisk__fail(err, errlen, -errno, "%s/disks: %s", store,
				   strerror(errno));
	m.size = size;
	snprintf(m.parent, sizeof(m.parent), "%s", parent ? parent : "");
	while (!m.uid)
		if (getrandom(&m.uid, sizeof(m.uid), 0) != sizeof(m.uid))
			m.uid = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	rc = vdisk__meta_write(tmp, &m);
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
		rc = vdisk__fsync_dir(tmp);
	if (!rc && rename(tmp, dst))
		rc = -errno;
	if (!rc) {
		snprintf(path, sizeof(path), "%s/disks", store);
		rc = vdisk__fsync_dir(path);
	}
	if (rc) {
		for (int i = 0; i < 3; i++) {
			const char *f[] = {"meta", "data", "journal"};

			snprintf(path, sizeof(path), "%s/%s", tmp, f[i]);
			unlink(path);
		}
		rmdir(tmp);
		return vdisk__fail(err, errlen, rc, "create '%s': %s", name,
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

	if (!vdisk__name_ok(name))
		return vdisk__fail(err, errlen, -EINVAL, "bad disk name '%s'",
				   name);
	rc = vdisk__meta_read(store, src, &m, err, errlen);
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
			return vdisk__fail(err, errlen, rc, "flush '%s': %s",
					   src, strerror(-rc));
		m.flags |= META_FROZEN;
		vdisk__disk_path(dir, sizeof(dir), store, src, NULL);
		rc = vdisk__meta_write(dir, &m);
		if (rc)
			return vdisk__fail(err, errlen, rc, "freeze '%s': %s",
					   src, strerror(-rc));
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
		return vdisk__fail(err, errlen, -errno, "%s: %s", path,
				   strerror(errno));
	out = calloc((size_t)n + 1, sizeof(*out));
	for (int i = 0; i < n; i++) {
		if (out && vdisk__name_ok(ents[i]->d_name))
			out[k++] = strdup(ents[i]->d_name);
		free(ents[i]);
	}
	free(ents);
	if (!out)
		return vdisk__fail(err, errlen, -ENOMEM, "out of memory");
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

	rc = vdisk__meta_read(store, name, &m, err, errlen);
	if (rc)
		return rc;
	rc = vdisk_list(store, &names, &n, err, errlen);
	if (rc)
		return rc;
	snprintf(want, sizeof(want), "disk:%s", name);
	for (size_t i = 0; i < n; i++) {
		struct meta c;

		if (!rc &&
		    vdisk__meta_read(store, names[i], &c, NULL, 0) == 0 &&
		    strcmp(c.parent, want) == 0)
			rc = vdisk__fail(
				err, errlen, -EBUSY,
				"disk '%s' is cloned from '%s'; delete it "
				"first",
				names[i], name);
		free(names[i]);
	}
	free(names);
	if (rc)
		return rc;
	vdisk__disk_path(dir, sizeof(dir), store, name, NULL);
	/* meta goes first: a half-deleted disk no longer opens. "fence" is
	 * the disk server's write fence (vdiskd_main.c). */
	for (int i = 0; i < 4; i++) {
		const char *f[] = {"meta", "journal", "data", "fence"};

		snprintf(path, sizeof(path), "%s/%s", dir, f[i]);
		if (unlink(path) && errno != ENOENT)
			return vdisk__fail(err, errlen, -errno, "%s: %s", path,
					   strerror(errno));
	}
	if (rmdir(dir))
		return vdisk__fail(err, errlen, -errno, "%s: %s", dir,
				   strerror(errno));
	snprintf(path, sizeof(path), "%s/disks", store);
	return vdisk__fsync_dir(path);
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
	int rc = vdisk__meta_read(store, name, &m, err, errlen);

	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	out->size = m.size;
	out->frozen = m.flags & META_FROZEN;
	memcpy(out->parent, m.parent, sizeof(out->parent));
	vdisk__disk_path(path, sizeof(path), store, name, "data");
	out->data_bytes = file_size(path);
	vdisk__disk_path(path, sizeof(path), store, name, "journal");
	out->journal_bytes = file_size(path);
	while (out->chain_depth < VDISK_MAX_CHAIN &&
	       vdisk__parent_disk(&m, cur)) {
		if (vdisk__meta_read(store, cur, &m, NULL, 0))
			break;
		out->chain_depth++;
	}
	return 0;
}
