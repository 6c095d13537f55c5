/*
 * The export registry of cellmon-vdiskd: every open disk once, shared by
 * its NBD clients (reads in parallel, writes one at a time inside
 * libvdisk), opened by the first client and flushed and closed by the
 * last; and the write fences.
 *
 * Write fences. An agent opens a VM's writable disk as "<name>@<epoch>",
 * the epoch growing with every start of a VM; a disk remembers the
 * highest epoch opened (in disks/<name>/fence, so a restart keeps it).
 * Opening with a lower one is refused, and so is every write of a
 * connection whose epoch has been passed: a writer the manager has given
 * up on (fenced, restarted elsewhere) cannot write any more. A plain name
 * (operators' tools) is not fenced.
 *
 * Locking: exports_mu covers the table (names, states, references) and
 * nothing else: opening, flushing, closing, the fence file's fsync and
 * the admin's clone or delete all run without it, while the slot's state
 * (OPENING, CLOSING, ADMIN) makes anyone who wants that same disk wait on
 * exports_cv. So one disk's slow flush or open never delays another's
 * writes. An export's fence is read atomically by every write; fence_mu
 * serializes the raising of it (file first, then memory).
 *
 * Called from the client threads (through vdiskd_exports) and from the
 * admin RPC on the main thread.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "cell/util.h"
#include "vdiskd.h"

#define MOD "vdiskd"

enum export_state {
	EXPORT_FREE = 0,
	EXPORT_OPENING, /* vdisk_open under way, outside the lock */
	EXPORT_OPEN,	/* d usable, refs clients */
	EXPORT_CLOSING, /* the last client left: flush and close under way */
	EXPORT_ADMIN,	/* reserved by a clone or delete of this name */
};

struct export
{
	char name[VDISK_NAME_MAX + 1];
	enum export_state state;
	struct vdisk *d; /* when OPEN (and while CLOSING) */
	int refs;
	pthread_mutex_t fence_mu;
	uint64_t fence; /* highest write epoch opened; atomic */
};

static pthread_mutex_t exports_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exports_cv = PTHREAD_COND_INITIALIZER;
static struct export exports[VDISKD_MAX_EXPORTS];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_fence_locks(void)
{
	for (int i = 0; i < VDISKD_MAX_EXPORTS; i++)
		pthread_mutex_init(&exports[i].fence_mu, NULL);
}

static int split_export(const char *export, char *name, size_t len,
			uint64_t *epoch)
{
	const char *at = strrchr(export, '@');
	char *end;

	*epoch = 0;
	if (!at) {
		snprintf(name, len, "%s", export);
		return 0;
	}
	if ((size_t)(at - export) >= len || !at[1] || at[1] == '-')
		return -EINVAL;
	errno = 0;
	*epoch = strtoull(at + 1, &end, 10);
	if (*end || errno || !*epoch)
		return -EINVAL;
	snprintf(name, len, "%.*s", (int)(at - export), export);
	return 0;
}

static uint64_t fence_load(const char *name)
{
	char path[1200], text[32];
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/disks/%s/fence", D.cfg.store, name);
	f = fopen(path, "r");
	if (f && fgets(text, sizeof(text), f))
		v = strtoull(text, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static int fence_store(const char *name, uint64_t epoch)
{
	char path[1200], text[32];

	snprintf(path, sizeof(path), "%s/disks/%s/fence", D.cfg.store, name);
	snprintf(text, sizeof(text), "%llu\n", (unsigned long long)epoch);
	return cell_write_file_atomic(path, text, strlen(text));
}

/* The slot holding `name` in any state but FREE, or NULL. exports_mu. */
static struct export *slot_of(const char *name)
{
	for (int i = 0; i < VDISKD_MAX_EXPORTS; i++)
		if (exports[i].state != EXPORT_FREE &&
		    strcmp(exports[i].name, name) == 0)
			return &exports[i];
	return NULL;
}

/* The open export of d, or NULL. exports_mu. */
static struct export *export_of(const struct vdisk *d)
{
	for (int i = 0; i < VDISKD_MAX_EXPORTS; i++)
		if (exports[i].state == EXPORT_OPEN && exports[i].d == d)
			return &exports[i];
	return NULL;
}

/* Waits until no slot holds `name` in a passing state, and returns the
 * open one (or NULL: none). exports_mu held, may be dropped meanwhile. */
static struct export *settled(const char *name)
{
	struct export *e;

	while ((e = slot_of(name)) && e->state != EXPORT_OPEN)
		pthread_cond_wait(&exports_cv, &exports_mu);
	return e;
}

/* A free slot reserved for `name` in state s, or NULL. exports_mu. */
static struct export *reserve(const char *name, enum export_state s)
{
	for (int i = 0; i < VDISKD_MAX_EXPORTS; i++) {
		struct export *e = &exports[i];

		if (e->state != EXPORT_FREE)
			continue;
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->state = s;
		e->d = NULL;
		e->refs = 0;
		return e;
	}
	return NULL;
}

static void release_slot(struct export *e)
{
	pthread_mutex_lock(&exports_mu);
	e->state = EXPORT_FREE;
	e->d = NULL;
	e->refs = 0;
	pthread_cond_broadcast(&exports_cv);
	pthread_mutex_unlock(&exports_mu);
}

static struct vdisk *export_open(const char *name, struct export **out,
				 char *err, size_t errlen)
{
	struct export *e;
	struct vdisk *d = NULL;

	pthread_once(&init_once, init_fence_locks);
	pthread_mutex_lock(&exports_mu);
	e = settled(name);
	if (e) {
		e->refs++;
		*out = e;
		pthread_mutex_unlock(&exports_mu);
		return e->d;
	}
	e = reserve(name, EXPORT_OPENING);
	pthread_mutex_unlock(&exports_mu);
	if (!e) {
		snprintf(err, errlen, "too many open disks");
		return NULL;
	}
	if (vdisk_open(D.cfg.store, name, &d, err, errlen)) {
		release_slot(e);
		return NULL;
	}
	__atomic_store_n(&e->fence, fence_load(name), __ATOMIC_RELEASE);
	pthread_mutex_lock(&exports_mu);
	e->d = d;
	e->refs = 1;
	e->state = EXPORT_OPEN;
	pthread_cond_broadcast(&exports_cv);
	pthread_mutex_unlock(&exports_mu);
	CELL_INFO(MOD, "opened disk %s (%llu bytes%s)", name,
		  (unsigned long long)vdisk_size(d),
		  vdisk_readonly(d) ? ", frozen: read-only" : "");
	*out = e;
	return d;
}

/* Raises the export's fence to epoch, or refuses an epoch below it. */
static int fence_raise(struct export *e, uint64_t epoch, char *err,
		       size_t errlen)
{
	uint64_t cur;
	int rc = 0;

	pthread_mutex_lock(&e->fence_mu);
	cur = __atomic_load_n(&e->fence, __ATOMIC_ACQUIRE);
	if (epoch < cur) {
		snprintf(err, errlen,
			 "disk %s is fenced at write epoch %llu; this writer "
			 "has %llu",
			 e->name, (unsigned long long)cur,
			 (unsigned long long)epoch);
		rc = -EPERM;
	} else if (epoch > cur && fence_store(e->name, epoch) == 0) {
		CELL_INFO(MOD, "disk %s write epoch %llu (was %llu)", e->name,
			  (unsigned long long)epoch, (unsigned long long)cur);
		__atomic_store_n(&e->fence, epoch, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&e->fence_mu);
	return rc;
}

void *vdiskd_export_get(void *ctx, const char *export, char *err, size_t errlen)
{
	char name[VDISK_NAME_MAX + 1];
	uint64_t epoch;
	struct export *e;
	struct vdisk *d;

	(void)ctx;
	if (split_export(export, name, sizeof(name), &epoch)) {
		snprintf(err, errlen, "bad export name '%.80s'", export);
		return NULL;
	}
	d = export_open(name, &e, err, errlen);
	if (!d || !epoch)
		return d;
	if (fence_raise(e, epoch, err, errlen)) {
		CELL_WARN(MOD, "%s", err);
		vdiskd_export_put(NULL, d);
		return NULL;
	}
	return d;
}

static int may_write(void *ctx, void *d, const char *export)
{
	char name[VDISK_NAME_MAX + 1];
	uint64_t epoch;
	struct export *e;
	int rc = 0;

	(void)ctx;
	if (split_export(export, name, sizeof(name), &epoch) || !epoch)
		return 0;
	pthread_mutex_lock(&exports_mu);
	e = export_of(d);
	pthread_mutex_unlock(&exports_mu);
	/* e stays this disk's while the connection holds its reference */
	if (e && epoch < __atomic_load_n(&e->fence, __ATOMIC_ACQUIRE))
		rc = -EPERM;
	if (rc)
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "write to %s refused: epoch %llu is fenced", name,
			    (unsigned long long)epoch);
	return rc;
}

void vdiskd_export_put(void *ctx, void *d)
{
	struct export *e;

	(void)ctx;
	pthread_mutex_lock(&exports_mu);
	e = export_of(d);
	if (!e || --e->refs > 0) {
		pthread_mutex_unlock(&exports_mu);
		return;
	}
	e->state = EXPORT_CLOSING;
	pthread_mutex_unlock(&exports_mu);
	if (vdisk_flush(d))
		CELL_ERROR(MOD, "flush of disk %s on close failed", e->name);
	vdisk_close(d);
	CELL_INFO(MOD, "closed disk %s", e->name);
	release_slot(e);
}

static int export_list(void *ctx, char ***names, size_t *count)
{
	(void)ctx;
	return vdisk_list(D.cfg.store, names, count, NULL, 0);
}

const struct nbd_exports vdiskd_exports = {
	.ops = &nbd_vdisk_ops,
	.get = vdiskd_export_get,
	.put = vdiskd_export_put,
	.list = export_list,
	.may_write = may_write,
	.ctx = NULL,
};

int vdiskd_export_clients(const char *name)
{
	struct export *e;
	int n = 0;

	pthread_mutex_lock(&exports_mu);
	e = slot_of(name);
	if (e && e->state == EXPORT_OPEN)
		n = e->refs;
	pthread_mutex_unlock(&exports_mu);
	return n;
}

int vdiskd_export_when_unused(const char *name,
			      int (*op)(void *arg, char *err, size_t len),
			      void *arg, char *err, size_t len)
{
	struct export *e;
	int rc;

	pthread_mutex_lock(&exports_mu);
	e = settled(name);
	if (e) {
		snprintf(err, len, "disk '%s' is in use by %d client%s", name,
			 e->refs, e->refs == 1 ? "" : "s");
		pthread_mutex_unlock(&exports_mu);
		return -EBUSY;
	}
	e = reserve(name, EXPORT_ADMIN);
	pthread_mutex_unlock(&exports_mu);
	if (!e) {
		snprintf(err, len, "too many open disks");
		return -EBUSY;
	}
	rc = op(arg, err, len);
	release_slot(e);
	return rc;
}
