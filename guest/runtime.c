/*
 * libcellguest (cellguest.h): reads the environment the agent set, maps
 * the VM's memory through the DSM hand-off, and forwards locks and
 * barriers over the service socket. Standalone mode without an agent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

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

static int call(uint32_t op, unsigned id)
{
	struct cg_req q = {op, id};
	struct cg_rep r;
	ssize_t n;

	if (g.standalone)
		return 0;
	if (g.ctl < 0)
		return -ENOTCONN;
	if (send(g.ctl, &q, sizeof(q), MSG_NOSIGNAL) != sizeof(q))
		return -errno;
	do
		n = recv(g.ctl, &r, sizeof(r), 0);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(r))
		return n < 0 ? -errno : -ECONNRESET;
	return r.status;
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
