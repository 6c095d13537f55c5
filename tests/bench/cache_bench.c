/*
 * cache-bench: the effect of the agents' node-wide buffer cache. N VMs on
 * one node each read all of their own copy-on-write disk, every disk over
 * the same base image, through the agent's disk path (node-agent/
 * agent_disk.c, the code that serves guests' block requests), once with
 * the cache off (the baseline) and once with it on, in the same run
 * against one cellmon-vdiskd. Prints the bytes the disk server sent
 * (counted by the server) and the time, per round and as medians, and
 * the ratios. Never passes or fails.
 *
 *   cache-bench [--vms=N] [--size-mb=S] [--rounds=R]
 *
 * Each VM is a thread with its own NBD connection, as each VM's disk has
 * in the agent; the guest-to-agent socket hop is not part of it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_disk.h"
#include "cellproto/cellproto.h"
#include "testsupport.h"

static int nvms = 4, size_mb = 32, rounds = 3;
static char store[700], admin[64], base_id[80];
static struct cell_rpc_config rpc = {cellproto_types, NULL, NULL, 0, "bench"};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "cache-bench: %s\n", what);
	ts_kill_all();
	exit(1);
}

static uint64_t served(void)
{
	Cellmon__DiskListRequest q = CELLMON__DISK_LIST_REQUEST__INIT;
	Cellmon__DiskListReply *r;
	char err[300];
	uint64_t v;

	if (cell_rpc_call_sync(admin, &rpc, CELLMON__MSG_TYPE__MSG_DISK_LIST,
			       &q.base, CELLMON__MSG_TYPE__MSG_DISK_LIST_REPLY,
			       5000, (ProtobufCMessage **)&r, err, sizeof(err)))
		die(err);
	v = r->bytes_read;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return v;
}

static void disk_create(const char *name)
{
	Cellmon__DiskRequest q = CELLMON__DISK_REQUEST__INIT;
	ProtobufCMessage *r;
	char err[300];

	q.name = (char *)name;
	q.parent = base_id;
	if (cell_rpc_call_sync(admin, &rpc, CELLMON__MSG_TYPE__MSG_DISK_CREATE,
			       &q.base, CELLMON__MSG_TYPE__MSG_DISK_REPLY, 5000,
			       &r, err, sizeof(err)))
		die(err);
	protobuf_c_message_free_unpacked(r, NULL);
}

struct vm {
	struct agent_cache *cache;
	char disk[32];
	int rc;
};

static void *vm_main(void *arg)
{
	struct vm *v = arg;
	struct agent_disk *d;
	char err[300];
	uint8_t *buf = malloc(64 << 10);

	v->rc = buf ? agent_disk_open(v->cache, admin, v->disk, true, 0, &d,
				      err, sizeof(err))
		    : -ENOMEM;
	if (v->rc) {
		free(buf);
		return NULL;
	}
	for (uint64_t off = 0; off < agent_disk_size(d) && !v->rc;
	     off += 64 << 10)
		v->rc = agent_disk_read(d, off, buf, 64 << 10);
	agent_disk_close(d);
	free(buf);
	return NULL;
}

struct result {
	uint64_t bytes, ns;
};

/* parallel: the VMs read at once; else one after another (VMs booted
 * at different times from one base). */
static struct result run_once(int round, bool cached, bool parallel)
{
	struct agent_cache *c;
	struct vm *vms = calloc((size_t)nvms, sizeof(*vms));
	pthread_t *t = calloc((size_t)nvms, sizeof(*t));
	struct result r;
	uint64_t b0, t0;

	if (!vms || !t ||
	    agent_cache_create(cached ? (uint64_t)size_mb << 21 : 0, &c))
		die("out of memory");
	for (int i = 0; i < nvms; i++) {
		snprintf(vms[i].disk, sizeof(vms[i].disk), "r%d%c%c%d", round,
			 cached ? 'c' : 'u', parallel ? 'p' : 's', i);
		disk_create(vms[i].disk);
		vms[i].cache = c;
	}
	b0 = served();
	t0 = now_ns();
	for (int i = 0; i < nvms; i++) {
		pthread_create(&t[i], NULL, vm_main, &vms[i]);
		if (!parallel)
			pthread_join(t[i], NULL);
	}
	for (int i = 0; i < nvms; i++) {
		if (parallel)
			pthread_join(t[i], NULL);
		if (vms[i].rc)
			die("a VM's read failed");
	}
	r.ns = now_ns() - t0;
	r.bytes = served() - b0;
	agent_cache_destroy(c);
	free(vms);
	free(t);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

static void setup(void)
{
	char *dir = ts_tmpdir("cache-bench"), img[800], st[800], *out = NULL;
	char *imp[] = {VDISKD_BIN, st, "base", "import", img, NULL};
	/* plain NBD: the cache's figures, not TLS's (vdisk-bench has
	 * those) */
	char *srv[] = {VDISKD_BIN,
		       st,
		       "--listen=127.0.0.1:0",
		       "--admin-listen=127.0.0.1:0",
		       "--insecure=true",
		       NULL};
	size_t len = (size_t)size_mb << 20;
	uint8_t *b = malloc(len);
	char *addr;
	int fd;

	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(img, sizeof(img), "%s/base.img", dir);
	snprintf(st, sizeof(st), "--store=%s", store);
	for (size_t i = 0; b && i < len; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 11);
	fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (!b || fd < 0 || write(fd, b, len) != (ssize_t)len)
		die("cannot write the base image");
	close(fd);
	free(b);
	if (ts_run(imp, 60000, &out, false) != 0)
		die("base import failed");
	snprintf(base_id, sizeof(base_id), "base:%.64s", out);
	free(out);
	snprintf(img, sizeof(img), "%s/vdiskd.log", dir);
	if (ts_spawn(srv, img) < 0)
		die("cannot start cellmon-vdiskd");
	snprintf(img, sizeof(img), "%s/vdiskd.addr", store);
	for (int i = 0; i < 250 && !admin[0]; i++) {
		addr = ts_read_file(img);
		if (addr && strstr(addr, "admin="))
			sscanf(strstr(addr, "admin="), "admin=%63s", admin);
		free(addr);
		usleep(20000);
	}
	if (!admin[0])
		die("cellmon-vdiskd did not start");
	free(dir);
}

static int arg_int(const char *a, const char *name, int *v, int lo, int hi)
{
	size_t n = strlen(name);
	char *end;
	long x;

	if (strncmp(a, name, n) != 0)
		return 0;
	x = strtol(a + n, &end, 10);
	if (*end || x < lo || x > hi) {
		fprintf(stderr, "cache-bench: %s wants %d..%d\n", name, lo, hi);
		exit(2);
	}
	*v = (int)x;
	return 1;
}

static void measure(bool parallel)
{
	uint64_t ub[16], cb[16], ut[16], ct[16];
	uint64_t mub, mcb, mut, mct;

	printf("%s:\n", parallel ? "VMs reading at the same time"
				 : "VMs reading one after another");
	for (int r = 0; r < rounds; r++) {
		struct result u, c;

		/* Alternate the order: neither mode always runs second. */
		if (r % 2) {
			c = run_once(r, true, parallel);
			u = run_once(r, false, parallel);
		} else {
			u = run_once(r, false, parallel);
			c = run_once(r, true, parallel);
		}
		ub[r] = u.bytes;
		cb[r] = c.bytes;
		ut[r] = u.ns;
		ct[r] = c.ns;
		printf("  round %d: uncached %llu bytes from the server in "
		       "%.1f ms; cached %llu bytes in %.1f ms\n",
		       r + 1, (unsigned long long)u.bytes, u.ns / 1e6,
		       (unsigned long long)c.bytes, c.ns / 1e6);
	}
	mub = median(ub, rounds);
	mcb = median(cb, rounds);
	mut = median(ut, rounds);
	mct = median(ct, rounds);
	printf("  median: server bytes uncached %llu, cached %llu (%.2fx "
	       "fewer)\n",
	       (unsigned long long)mub, (unsigned long long)mcb,
	       mcb ? (double)mub / (double)mcb : 0.0);
	printf("  median: time uncached %.1f ms, cached %.1f ms (cached "
	       "takes %.2fx the time)\n",
	       mut / 1e6, mct / 1e6, mut ? (double)mct / (double)mut : 0.0);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			puts("usage: cache-bench [--vms=N (4)] [--size-mb=S "
			     "(32)] [--rounds=R (3)]\n"
			     "N VMs read their own disk over one base, with "
			     "the "
			     "node cache off and on;\nprints the bytes the "
			     "disk "
			     "server sent and the time.");
			return 0;
		}
		if (!arg_int(argv[i], "--vms=", &nvms, 1, 64) &&
		    !arg_int(argv[i], "--size-mb=", &size_mb, 1, 1024) &&
		    !arg_int(argv[i], "--rounds=", &rounds, 1, 15)) {
			fprintf(stderr,
				"cache-bench: unknown argument '%s' "
				"(see --help)\n",
				argv[i]);
			return 2;
		}
	}
	setup();
	printf("cache-bench: %d VMs, each reading its own %d MiB disk over "
	       "one base\n",
	       nvms, size_mb);
	measure(false);
	measure(true);
	ts_kill_all();
	return 0;
}
