/*
 * libcellguest (cellguest.h): reads the environment the agent set, maps
 * the VM's memory through the DSM hand-off, and forwards locks and
 * barriers over the service socket. Standalone mode without an agent.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cellguest.h"
#include "cellguest_wire.h"
#include "dsm/dsm.h"

static struct {
	unsigned vcpu, nvcpus;
	const char *vm;
	void *mem;
	size_t size;
	int ctl;     /* service socket, -1 standalone */
	int handoff; /* hand-off socket, kept open while mapped */
	int standalone;
	unsigned ndisks;
	uint8_t io[sizeof(struct cg_req) + CG_IO_MAX];
} g = {.ctl = -1, .handoff = -1};

static int env_u64(const char *name, int base, uint64_t *out)
{
	const char *s = getenv(name);
	char *end;

	if (!s || !*s)
		return -ENOENT;
	errno = 0;
	*out = strtoull(s, &end, base);
	if (errno || *end) {
		fprintf(stderr, "cellguest: bad %s='%s'\n", name, s);
		return -EINVAL;
	}
	return 0;
}

static int init_standalone(void)
{
	uint64_t mb = 64;

	if (env_u64("CELLMON_MEM_MB", 10, &mb) == -EINVAL || !mb)
		return -EINVAL;
	g.standalone = 1;
	g.vcpu = 0;
	g.nvcpus = 1;
	g.vm = "standalone";
	g.size = (size_t)mb << 20;
	g.mem = mmap(NULL, g.size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g.mem == MAP_FAILED) {
		fprintf(stderr, "cellguest: cannot map %llu MB: %s\n",
			(unsigned long long)mb, strerror(errno));
		return -ENOMEM;
	}
	return 0;
}

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Ends this vCPU once the agent's lease is over (cellguest_wire.h): the
 * manager may be starting the VM elsewhere. */
static void *watchdog(void *arg)
{
	const struct cg_lease_page *p = arg;

	for (;;) {
		uint64_t end = __atomic_load_n(&p->expiry_ms, __ATOMIC_ACQUIRE);

		if (end == 0 || mono_ms() > end) {
			static const char msg[] =
				"cellguest: the node's lease is over; this "
				"vCPU stops\n";

			if (write(2, msg, sizeof(msg) - 1) < 0)
				_exit(137);
			kill(getpid(), SIGKILL);
		}
		usleep(20 * 1000);
	}
	return NULL;
}

static int start_watchdog(void)
{
	uint64_t fd;
	void *p;
	pthread_t t;

	if (env_u64("CELLMON_LEASE_FD", 10, &fd))
		return 0; /* an agent without a lease page */
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, (int)fd, 0);
	if (p == MAP_FAILED ||
	    ((const struct cg_lease_page *)p)->magic != CG_LEASE_MAGIC) {
		fprintf(stderr, "cellguest: bad lease page on fd %llu\n",
			(unsigned long long)fd);
		return -EINVAL;
	}
	if (pthread_create(&t, NULL, watchdog, p))
		return -EAGAIN;
	pthread_detach(t);
	return 0;
}

int cg_init(void)
{
	uint64_t region, vcpu, nvcpus, addr, fd;
	const char *handoff = getenv("CELLMON_HANDOFF");
	int rc;

	if (!getenv("CELLMON_REGION"))
		return init_standalone();
	if ((rc = env_u64("CELLMON_REGION", 10, &region)) ||
	    (rc = env_u64("CELLMON_VCPU", 10, &vcpu)) ||
	    (rc = env_u64("CELLMON_NVCPUS", 10, &nvcpus)) ||
	    (rc = env_u64("CELLMON_MEM_ADDR", 16, &addr)) ||
	    (rc = env_u64("CELLMON_CTL_FD", 10, &fd)) || !handoff) {
		fprintf(stderr, "cellguest: incomplete CELLMON_* environment; "
				"run me through cellmon-agent\n");
		return rc ? rc : -EINVAL;
	}
	if (!nvcpus || vcpu >= nvcpus) {
		fprintf(stderr, "cellguest: vcpu %llu of %llu is impossible\n",
			(unsigned long long)vcpu, (unsigned long long)nvcpus);
		return -EINVAL;
	}
	g.vcpu = (unsigned)vcpu;
	g.nvcpus = (unsigned)nvcpus;
	g.ctl = (int)fd;
	g.vm = getenv("CELLMON_VM") ? getenv("CELLMON_VM") : "?";
	rc = start_watchdog();
	if (rc)
		return rc;
	if (env_u64("CELLMON_NDISKS", 10, &fd) == 0)
		g.ndisks = (unsigned)fd;
	/* a confined guest: the agent opened /dev/userfaultfd for it */
	if (env_u64("CELLMON_UFFD_FD", 10, &fd) == 0)
		dsm_attach_uffd_device((int)fd);
	rc = dsm_attach(handoff, region, (void *)(uintptr_t)addr, &g.mem,
			&g.size, &g.handoff);
	if (rc) {
		fprintf(stderr,
			"cellguest: cannot attach region %llu via %s: "
			"%s\n",
			(unsigned long long)region, handoff, strerror(-rc));
		return rc;
	}
	return 0;
}

unsigned cg_vcpu(void)
{
	return g.vcpu;
}

unsigned cg_nvcpus(void)
{
	return g.nvcpus;
}

const char *cg_vm_name(void)
{
	return g.vm;
}

void *cg_mem(void)
{
	return g.mem;
}

size_t cg_mem_size(void)
{
	return g.size;
}

int cg_standalone(void)
{
	return g.standalone;
}

/* One request (with `out` data) and its reply (data into `in`, at most
 * inlen bytes). Returns the status; *value gets rep.value. */
static int call_io(const struct cg_req *q, const void *out, void *in,
		   size_t inlen, uint64_t *value)
{
	struct cg_rep r;
	struct iovec iov[2];
	struct msghdr mh = {.msg_iov = iov};
	size_t qlen = sizeof(*q) + (out ? q->len : 0);
	ssize_t n;

	if (g.ctl < 0)
		return -ENOTCONN;
	memcpy(g.io, q, sizeof(*q));
	if (out)
		memcpy(g.io + sizeof(*q), out, q->len);
	if (send(g.ctl, g.io, qlen, MSG_NOSIGNAL) != (ssize_t)qlen)
		return -errno;
	iov[0] = (struct iovec){&r, sizeof(r)};
	iov[1] = (struct iovec){in, inlen};
	mh.msg_iovlen = in ? 2 : 1;
	do
		n = recvmsg(g.ctl, &mh, 0);
	while (n < 0 && errno == EINTR);
	if (n < (ssize_t)sizeof(r))
		return n < 0 ? -errno : -ECONNRESET;
	if (!r.status && r.len != (size_t)n - sizeof(r))
		return -EPROTO;
	if (value)
		*value = r.value;
	return r.status;
}

static int call(uint32_t op, unsigned id)
{
	struct cg_req q = {.op = op, .id = id};

	if (g.standalone)
		return 0;
	return call_io(&q, NULL, NULL, 0, NULL);
}

unsigned cg_disk_count(void)
{
	return g.ndisks;
}

int64_t cg_disk_size(unsigned disk)
{
	struct cg_req q = {.op = CG_OP_DISK_SIZE, .id = disk};
	uint64_t v = 0;
	int rc = disk < g.ndisks ? call_io(&q, NULL, NULL, 0, &v) : -ENODEV;

	return rc ? rc : (int64_t)v;
}

/* Splits I/O into requests of at most CG_IO_MAX. */
static int disk_io(uint32_t op, unsigned disk, uint64_t off, void *buf,
		   size_t len)
{
	uint8_t *p = buf;

	if (disk >= g.ndisks)
		return -ENODEV;
	if (off % 4096 || len % 4096)
		return -EINVAL;
	while (len) {
		uint32_t n = len > CG_IO_MAX ? CG_IO_MAX : (uint32_t)len;
		struct cg_req q = {.op = op, .id = disk, .off = off, .len = n};
		int rc = op == CG_OP_DISK_READ ? call_io(&q, NULL, p, n, NULL)
					       : call_io(&q, p, NULL, 0, NULL);

		if (rc)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int cg_disk_read(unsigned disk, uint64_t off, void *buf, size_t len)
{
	return disk_io(CG_OP_DISK_READ, disk, off, buf, len);
}

int cg_disk_write(unsigned disk, uint64_t off, const void *buf, size_t len)
{
	return disk_io(CG_OP_DISK_WRITE, disk, off, (void *)buf, len);
}

int cg_disk_flush(unsigned disk)
{
	struct cg_req q = {.op = CG_OP_DISK_FLUSH, .id = disk};

	return disk < g.ndisks ? call_io(&q, NULL, NULL, 0, NULL) : -ENODEV;
}

int cg_lock(unsigned id)
{
	return call(CG_OP_LOCK, id);
}

int cg_unlock(unsigned id)
{
	return call(CG_OP_UNLOCK, id);
}

int cg_barrier(unsigned id)
{
	return call(CG_OP_BARRIER, id);
}

uint64_t cg_fnv(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
