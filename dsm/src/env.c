/*
 * The coherence engine's environment on a real node (struct
 * dsm__env_ops, proto.h): what the engine's decisions do to memory,
 * the wire and time. Sends go through the node (dsm__send); bytes are
 * read from the region's memfd; installs go in through userfaultfd
 * (uffd.c), batched: pages granted to a node that had no copy are staged
 * and installed together by one UFFDIO_COPY (dsm__stage_flush);
 * invalidation punches the page out of the memfd, which unmaps it from
 * every process at once; deferrals (the time window) wait in a table a
 * timer drains.
 *
 * Node thread only, as the engine itself.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

static struct dsm_region *env_region(void *env)
{
	return env;
}

static int env_send(void *env, uint16_t to, const struct dsm__msg *m,
		    const void *data)
{
	return dsm__send(env_region(env)->node, to, m, data);
}

/*
 * The bytes come from the memfd with pread(), not through the node's own
 * mapping: a page this node wrote through its registered mapping (or got
 * by UFFDIO_COPY) is not mapped there, and reading it would fault it in
 * (a trap per 16 pages, and on a VM with shadow paging a hidden fault per
 * page), only for the mapping to be zapped again at the next invalidation.
 *
 * A holder hands out runs (a prefetch window it downgraded at once): when
 * the page asked for follows the one asked for last, the read-only (S)
 * pages from it on come in with one pread and the next calls take them
 * from r->bytes. Nobody can change an S page while this node holds it,
 * and the node changes a page's bytes or state only by installing or
 * invalidating it, which drops the run.
 */
static const void *env_bytes(void *env, struct dsm__engine *e, uint32_t page)
{
	struct dsm_region *r = env_region(env);
	size_t off = (size_t)page * DSM_PAGE;
	uint32_t want = 1;
	bool next = page == r->bytes_last + 1;
	bool shared = dsm__page_state(e, page) == DSM_S;
	ssize_t got;

	dsm__stage_flush(r->node);
	r->bytes_last = page;
	if (page >= r->bytes_first && page - r->bytes_first < r->bytes_n)
		return r->bytes + (size_t)(page - r->bytes_first) * DSM_PAGE;
	r->bytes_n = 0;
	while (next && shared && want < DSM_STAGE_PAGES &&
	       page + want < r->npages &&
	       dsm__page_state(e, page + want) == DSM_S)
		want++;
	got = pread(r->memfd, r->bytes, (size_t)want * DSM_PAGE, (off_t)off);
	if (got >= (ssize_t)DSM_PAGE) {
		if (shared) { /* an M page may change: not kept */
			r->bytes_first = page;
			r->bytes_n = (uint32_t)(got / DSM_PAGE);
		}
		return r->bytes;
	}
	CELL_LOG_RL(CELL_LOG_WARN, MOD, "pread page %u of region %llu: %s",
		    page, (unsigned long long)r->id,
		    got < 0 ? strerror(errno) : "short read");
	return r->mem + off;
}

static const uint8_t zero_page[DSM_PAGE] __attribute__((aligned(4096)));

/* Maps page (already in the memfd) into every mapping but `skip`. */
static void install_others(struct dsm_region *r, uint32_t page, bool write,
			   int skip)
{
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (i != skip && r->maps[i].uffd >= 0)
			dsm__uffd_install(&r->maps[i], page, write);
}

/* The slow way in: bytes through the node's own mapping, then
 * UFFDIO_CONTINUE everywhere. */
static void install_via_mem(struct dsm_region *r, uint32_t page,
			    const void *src, bool write)
{
	if (src)
		memcpy(r->mem + (size_t)page * DSM_PAGE, src, DSM_PAGE);
	install_others(r, page, write, -1);
}

static int first_map(const struct dsm_region *r)
{
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (r->maps[i].uffd >= 0)
			return i;
	return -1;
}

/*
 * Installs the staged run of pages: one UFFDIO_COPY allocates them in the
 * memfd with their bytes and maps them into the first user mapping (and
 * wakes its waiters); the other mappings pick them up by CONTINUE. Pages
 * the copy did not take (a mapping went away, a page appeared) go in the
 * slow way. Every env op that reads or changes a page, and the node after
 * each batch of work, flushes first, so nobody sees a staged page as
 * anything but installed.
 */
void dsm__stage_flush(struct dsm_node *n)
{
	struct dsm_region *r = n->staged;
	uint32_t done = 0, count;
	int first;

	if (!r)
		return;
	n->staged = NULL;
	count = r->stage_n;
	r->stage_n = 0;
	first = first_map(r);
	if (first >= 0) {
		int64_t got =
			dsm__uffd_copy_run(&r->maps[first], r->stage_first,
					   r->stage, count, r->stage_write);

		done = got > 0 ? (uint32_t)(got / DSM_PAGE) : 0;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t page = r->stage_first + i;

		if (i < done)
			install_others(r, page, r->stage_write, first);
		else
			install_via_mem(r, page,
					r->stage + (size_t)i * DSM_PAGE,
					r->stage_write);
	}
}

/*
 * Exposes a page. When the node had no copy (state I: the page is not in
 * the memfd), the bytes are staged and go in with their neighbours by one
 * UFFDIO_COPY (dsm__stage_flush), which allocates them in the memfd and
 * maps them in one step. Otherwise the bytes go in through the node's own
 * mapping and every mapping gets UFFDIO_CONTINUE.
 */
static void env_install(void *env, struct dsm__engine *e, uint32_t page,
			enum dsm__install how, const void *data, bool write)
{
	struct dsm_region *r = env_region(env);
	struct dsm_node *n = r->node;
	const uint8_t *src = NULL;

	r->bytes_n = 0;
	if (how == DSM_INSTALL_DATA)
		src = data;
	else if (how == DSM_INSTALL_ZERO)
		src = zero_page;
	if (src && dsm__page_state(e, page) == DSM_I && first_map(r) >= 0) {
		if (n->staged &&
		    (n->staged != r || page != r->stage_first + r->stage_n ||
		     write != r->stage_write || r->stage_n == DSM_STAGE_PAGES))
			dsm__stage_flush(n);
		if (!n->staged) {
			n->staged = r;
			r->stage_first = page;
			r->stage_write = write;
		}
		memcpy(r->stage + (size_t)r->stage_n++ * DSM_PAGE, src,
		       DSM_PAGE);
		return;
	}
	dsm__stage_flush(n);
	if (!src) {
		/* KEEP (the engine grants it only to a node in S or M): the
		 * bytes are in place and mapped wherever they were touched;
		 * only the protection changes, which wakes the waiters. A
		 * mapping that never touched the page takes a minor fault
		 * later, resolved as spurious in the fault loop (region.c). */
		for (int i = 0; i < DSM_MAX_MAPS; i++)
			if (r->maps[i].uffd >= 0)
				dsm__uffd_protect(&r->maps[i], page, 1, !write);
		return;
	}
	install_via_mem(r, page, src, write);
}

static void env_downgrade(void *env, struct dsm__engine *e, uint32_t page,
			  uint32_t count)
{
	struct dsm_region *r = env_region(env);

	(void)e;
	dsm__stage_flush(r->node);
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		if (r->maps[i].uffd >= 0)
			dsm__uffd_protect(&r->maps[i], page, count, true);
}

static void env_invalidate(void *env, struct dsm__engine *e, uint32_t page)
{
	struct dsm_region *r = env_region(env);
	size_t off = (size_t)page * DSM_PAGE;

	(void)e;
	r->bytes_n = 0;
	dsm__stage_flush(r->node);
	/* Unmaps the page from every process mapping the memfd; its next
	 * access faults, whoever makes it. */
	if (fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, DSM_PAGE))
		CELL_LOG_RL(CELL_LOG_ERROR, MOD, "punch page %u: %s", page,
			    strerror(errno));
}

/* Only the fault-latency histogram's end: UFFDIO_CONTINUE and
 * UFFDIO_WRITEPROTECT in the install that made the page accessible
 * already woke its waiters, and a fault read after that is resolved as
 * spurious in the fault loop (region.c). */
static void env_fault_done(void *env, struct dsm__engine *e, uint32_t page)
{
	(void)e;
	dsm__fault_answered(env_region(env), page);
}

static void arm_defer_timer(struct dsm_node *n)
{
	uint64_t now = cell_now_ms(), first = UINT64_MAX;
	struct timeval tv;

	for (uint32_t i = 0; i < n->ndefers; i++)
		if (n->defers[i].when_ms < first)
			first = n->defers[i].when_ms;
	if (first == UINT64_MAX)
		return;
	first = first > now ? first - now : 0;
	tv.tv_sec = (time_t)(first / 1000);
	tv.tv_usec = (suseconds_t)(first % 1000) * 1000;
	evtimer_add(n->ev_defer, &tv);
}

static void env_defer(void *env, struct dsm__engine *e, uint32_t page,
		      uint64_t when)
{
	struct dsm_region *r = env_region(env);
	struct dsm_node *n = r->node;

	(void)e;
	if (n->ndefers == DSM_MAX_DEFER) {
		CELL_LOG_RL(CELL_LOG_ERROR, MOD, "deferral table full");
		when = 0;
	}
	if (n->ndefers < DSM_MAX_DEFER)
		n->defers[n->ndefers++] = (struct dsm_defer){r, page, when};
	arm_defer_timer(n);
}

static uint64_t env_now(void *env)
{
	(void)env;
	return cell_now_ms();
}

const struct dsm__env_ops dsm__node_env = DSM_ENV_OPS(env);

void dsm__defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_node *n = arg;
	uint64_t now = cell_now_ms();

	(void)fd;
	(void)what;
	for (uint32_t i = 0; i < n->ndefers;) {
		struct dsm_defer d = n->defers[i];

		if (d.when_ms > now) {
			i++;
			continue;
		}
		n->defers[i] = n->defers[--n->ndefers];
		dsm__engine_retry(&d.r->eng, d.page);
	}
	arm_defer_timer(n);
	dsm__after_work(n);
}
