/*
 * Regions on a node: creating one (its memfd, the node's own unregistered
 * mapping, the engine instance), destroying it, mapping it in this
 * process, the API's page operations and statistics, and the fault loop:
 * every mapping registered with userfaultfd (maps[], this process's or a
 * handed-off process's) has an event on its uffd whose faults go to the
 * engine.
 *
 * Region memory: a memfd the node owns, mapped once unregistered (mem) to
 * read and write pages, and by every user mapping registered with
 * userfaultfd. Invalidation punches the page out of the memfd (env.c).
 *
 * API functions (dsm_region_*) run on any thread but the node's and
 * become commands on the node thread (dsm__run_on_node); the rest runs on
 * the node thread.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cell/clock.h"
#include "cell/fault.h"
#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

/* Handles every queued fault event of one mapping: each goes to the
 * engine, which asks the page's home, or answers at once when the page
 * is already allowed (installed while the fault was queued). */
static void region_faults(struct dsm_region *r, struct dsm_mapping *m)
{
	struct dsm__uffd_fault f[16];
	int nread = 16, n;

	dsm__stage_flush(r->node); /* a staged page is an installed one */
	/* Until a short read: that one drained the queue (the event is
	 * level-triggered, later faults fire it again). */
	while (nread == 16 &&
	       (nread = dsm__uffd_read_faults(m->uffd, f, 16, &n)) > 0) {
		for (int i = 0; i < n; i++) {
			uint32_t page =
				(uint32_t)((f[i].addr -
					    (uint64_t)(uintptr_t)m->base) /
					   DSM_PAGE);
			int rc;

			r->node->stats.faults++;
			rc = dsm__engine_fault(&r->eng, page, f[i].write);
			if (rc == 0)
				dsm__fault_wait(r, page);
			if (rc == 1) {
				dsm__uffd_install(
					m, page,
					dsm__page_state(&r->eng, page) ==
						DSM_M);
				dsm__uffd_wake(m, page);
			} else if (rc < 0) {
				CELL_LOG_RL(CELL_LOG_ERROR, MOD,
					    "fault on page %u: %s", page,
					    strerror(-rc));
			}
		}
	}
}

const uint32_t dsm_fault_bucket_us[DSM_FAULT_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000,
};

void dsm__fault_wait(struct dsm_region *r, uint32_t p)
{
	if (p < r->npages && !r->fault_t0[p])
		r->fault_t0[p] = cell_now_us();
}

void dsm__fault_answered(struct dsm_region *r, uint32_t p)
{
	uint64_t us;
	int b = 0;

	if (p >= r->npages || !r->fault_t0[p])
		return; /* a prefetched page nobody waited for */
	us = cell_now_us() - r->fault_t0[p];
	r->fault_t0[p] = 0;
	while (b < DSM_FAULT_BUCKETS && us > dsm_fault_bucket_us[b])
		b++;
	r->fault_hist[b]++;
	r->fault_us_sum += us;
}

static void uffd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_mapping *m = arg;

	(void)fd;
	(void)what;
	region_faults(m->region, m);
	dsm__after_work(m->region->node);
}

/* Adds a registered mapping; its uffd events start now. Slot or -errno. */
int dsm__map_add(struct dsm_region *r, uint8_t *base, int uffd, int sock,
		 pid_t pid)
{
	dsm__stage_flush(r->node);
	for (int i = 0; i < DSM_MAX_MAPS; i++) {
		struct dsm_mapping *m = &r->maps[i];

		if (m->uffd >= 0)
			continue;
		m->region = r;
		m->base = base;
		m->uffd = uffd;
		m->sock = sock;
		m->pid = pid;
		m->ev = event_new(r->node->base, uffd, EV_READ | EV_PERSIST,
				  uffd_cb, m);
		if (!m->ev) {
			m->uffd = -1;
			return -ENOMEM;
		}
		event_add(m->ev, NULL);
		return i;
	}
	return -ENOSPC;
}

void dsm__map_remove(struct dsm_region *r, int slot)
{
	struct dsm_mapping *m = &r->maps[slot];

	if (m->uffd < 0)
		return;
	dsm__stage_flush(r->node);
	event_free(m->ev);
	if (m->sock_ev)
		event_free(m->sock_ev);
	close(m->uffd);
	if (m->sock >= 0)
		close(m->sock);
	memset(m, 0, sizeof(*m));
	m->uffd = m->sock = -1;
}

void dsm__region_free(struct dsm_region *r)
{
	if (!r)
		return;
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		dsm__map_remove(r, i);
	if (r->app_map)
		munmap(r->app_map, r->size);
	if (r->mem)
		munmap(r->mem, r->size);
	if (r->memfd >= 0)
		close(r->memfd);
	dsm__sync_free(r);
	dsm__engine_fini(&r->eng);
	free(r->stage);
	free(r->bytes);
	free(r->fault_t0);
	free(r);
}

static int map_memfd(const char *name, size_t size, int *fd, uint8_t **mem)
{
	*fd = memfd_create(name, MFD_CLOEXEC);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)size))
		return -errno;
	*mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (*mem == MAP_FAILED) {
		*mem = NULL;
		return -errno;
	}
	return 0;
}

struct create_arg {
	const struct dsm_region_config *cfg;
	struct dsm_region *r;
};

static int region_create_cmd(struct dsm_node *n, void *arg)
{
	struct create_arg *a = arg;
	const struct dsm_region_config *c = a->cfg;
	struct dsm__engine_config ec = {0};
	struct dsm_region *r;
	char name[64];
	int slot = -1, rc;

	if (dsm__region_find(n, c->id))
		return -EEXIST;
	for (int i = 0; i < DSM_MAX_REGIONS && slot < 0; i++)
		if (!n->regions[i])
			slot = i;
	if (slot < 0)
		return -ENOSPC;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->node = n;
	r->id = c->id;
	r->size = c->size;
	r->npages = (uint32_t)(c->size / DSM_PAGE);
	r->nmembers = c->nmembers;
	memcpy(r->members, c->members, c->nmembers * sizeof(uint16_t));
	r->memfd = -1;
	for (int i = 0; i < DSM_MAX_MAPS; i++)
		r->maps[i].uffd = r->maps[i].sock = -1;
	snprintf(name, sizeof(name), "dsm-region-%llu",
		 (unsigned long long)c->id);
	rc = map_memfd(name, c->size, &r->memfd, &r->mem);
	r->stage = aligned_alloc(DSM_PAGE, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	r->bytes = aligned_alloc(DSM_PAGE, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	r->fault_t0 = calloc(r->npages ? r->npages : 1, sizeof(*r->fault_t0));
	if (!rc && (!r->stage || !r->bytes || !r->fault_t0))
		rc = -ENOMEM;
	if (!rc) {
		dsm__prefault(r->stage, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
		dsm__prefault(r->bytes, (size_t)DSM_STAGE_PAGES * DSM_PAGE);
	}
	ec.id = c->id;
	ec.npages = r->npages;
	ec.self = n->id;
	ec.members = r->members;
	ec.nmembers = r->nmembers;
	ec.policy = (enum dsm__home_policy)c->policy;
	ec.home_node = c->home_node;
	ec.stripe = c->stripe;
	ec.window_ms = n->cfg.window_ms;
	/* A read miss at a home that holds the pages itself turns into one
	 * self-message per prefetched page: keep a burst well inside the
	 * local ring. */
	ec.prefetch_max = n->cfg.prefetch_max ? n->cfg.prefetch_max : 1;
	if (ec.prefetch_max > DSM_PREFETCH_MAX)
		ec.prefetch_max = DSM_PREFETCH_MAX;
	ec.ops = &dsm__node_env;
	ec.env = r;
	if (!rc)
		rc = dsm__engine_init(&r->eng, &ec);
	if (!rc) /* a test build's region that cannot be made */
		rc = CELL_FAULT("dsm.region-create");
	if (rc) {
		dsm__region_free(r);
		return rc;
	}
	r->eng.epoch = n->epoch;
	n->regions[slot] = r;
	a->r = r;
	CELL_INFO(MOD, "region %llu created pages=%u members=%u policy=%d",
		  (unsigned long long)r->id, r->npages, r->nmembers, c->policy);
	return 0;
}

int dsm_region_create(struct dsm_node *n, const struct dsm_region_config *cfg,
		      struct dsm_region **out)
{
	struct create_arg a = {cfg, NULL};
	bool self = false;
	int rc;

	if (!cfg->size || cfg->size % DSM_PAGE ||
	    cfg->size / DSM_PAGE > UINT32_MAX || !cfg->nmembers ||
	    cfg->nmembers > DSM_MAX_NODES)
		return -EINVAL;
	for (uint16_t i = 0; i < cfg->nmembers; i++)
		self |= cfg->members[i] == n->id;
	if (!self)
		return -EINVAL;
	rc = dsm__run_on_node(n, region_create_cmd, &a);
	if (!rc)
		*out = a.r;
	return rc;
}

static int region_destroy_cmd(struct dsm_node *n, void *arg)
{
	for (int i = 0; i < DSM_MAX_REGIONS; i++)
		if (n->regions[i] == arg)
			n->regions[i] = NULL;
	for (uint32_t i = 0; i < n->ndefers;)
		if (n->defers[i].r == arg)
			n->defers[i] = n->defers[--n->ndefers];
		else
			i++;
	dsm__region_free(arg);
	return 0;
}

void dsm_region_destroy(struct dsm_region *r)
{
	if (r)
		dsm__run_on_node(r->node, region_destroy_cmd, r);
}

size_t dsm_region_size(const struct dsm_region *r)
{
	return r->size;
}

static int map_cmd(struct dsm_node *n, void *arg)
{
	struct dsm_region *r = arg;
	char err[256];
	uint8_t *base;
	int uffd, rc;

	(void)n;
	if (r->app_map)
		return 0;
	base = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd,
		    0);
	if (base == MAP_FAILED)
		return -errno;
	uffd = dsm__uffd_open(err, sizeof(err));
	if (uffd < 0) {
		CELL_ERROR(MOD, "%s", err);
		munmap(base, r->size);
		return uffd;
	}
	rc = dsm__uffd_register(uffd, base, r->size);
	if (rc >= 0)
		rc = dsm__map_add(r, base, uffd, -1, getpid());
	if (rc < 0) {
		close(uffd);
		munmap(base, r->size);
		return rc;
	}
	r->app_map = base;
	return 0;
}

void *dsm_region_map(struct dsm_region *r)
{
	int rc = dsm__run_on_node(r->node, map_cmd, r);

	if (rc) {
		errno = -rc;
		return NULL;
	}
	return r->app_map;
}

struct page_arg {
	struct dsm_region *r;
	uint32_t page;
	uint16_t node;
	struct dsm_page_stats *st;
	int (*op)(struct dsm__engine *e, uint32_t page, uint16_t node);
};

/* Runs an engine policy mechanism (move a home, push a copy). */
static int page_op_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;

	(void)n;
	return a->op(&a->r->eng, a->page, a->node);
}

int dsm_region_move_home(struct dsm_region *r, uint32_t page, uint16_t node)
{
	struct page_arg a = {r, page, node, NULL, dsm__engine_move_home};

	return dsm__run_on_node(r->node, page_op_cmd, &a);
}

int dsm_region_push(struct dsm_region *r, uint32_t page, uint16_t node)
{
	struct page_arg a = {r, page, node, NULL, dsm__engine_push};

	return dsm__run_on_node(r->node, page_op_cmd, &a);
}

struct sample_arg {
	struct dsm_region *r;
	struct dsm_page_sample *out;
	uint32_t max;
	struct dsm_sample_info *info;
	const struct dsm_policy_op *ops;
	uint32_t applied, dropped;
};

static int sample_cmd(struct dsm_node *n, void *arg)
{
	struct sample_arg *a = arg;

	(void)n;
	return dsm__engine_sample(&a->r->eng, a->out, a->max, a->info);
}

int dsm_region_sample(struct dsm_region *r, struct dsm_page_sample *out,
		      uint32_t max, struct dsm_sample_info *info)
{
	struct sample_arg a = {.r = r, .out = out, .max = max, .info = info};

	return dsm__run_on_node(r->node, sample_cmd, &a);
}

static int apply_cmd(struct dsm_node *n, void *arg)
{
	struct sample_arg *a = arg;

	for (uint32_t i = 0; i < a->max; i++) {
		/* each decision sends at most one message to this node
		 * itself (to the home, which is here): let them run before
		 * the local ring fills */
		if (n->local_len >= DSM_LOCAL_RING / 2)
			dsm__after_work(n);
		if (dsm__engine_apply(&a->r->eng, &a->ops[i]) == 0)
			a->applied++;
		else
			a->dropped++;
	}
	return 0;
}

int dsm_region_apply(struct dsm_region *r, const struct dsm_policy_op *ops,
		     uint32_t n, uint32_t *applied, uint32_t *dropped)
{
	struct sample_arg a = {.r = r, .max = n, .ops = ops};
	int rc = dsm__run_on_node(r->node, apply_cmd, &a);

	if (applied)
		*applied = a.applied;
	if (dropped)
		*dropped = a.dropped;
	return rc;
}

static int page_stats_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;
	struct dsm__engine *e = &a->r->eng;
	const struct dsm__page_counters *c;

	(void)n;
	if (a->page >= a->r->npages)
		return -ERANGE;
	c = dsm__page_counters(e, a->page);
	memset(a->st, 0, sizeof(*a->st));
	a->st->read_faults = c->read_faults;
	a->st->write_faults = c->write_faults;
	a->st->invalidations = c->invalidations;
	a->st->transfers = c->transfers;
	a->st->deferrals = c->deferrals;
	a->st->home = dsm__page_home(e, a->page);
	a->st->state = (uint8_t)dsm__page_state(e, a->page);
	if (a->st->home == n->id)
		for (uint16_t i = 0; i < a->r->nmembers; i++)
			a->st->requests_by_member[i] =
				e->req_by_node[(size_t)a->page *
						       a->r->nmembers +
					       i];
	return 0;
}

static int region_stats_cmd(struct dsm_node *n, void *arg)
{
	struct page_arg *a = arg;
	struct dsm_region_stats *st = (void *)a->st;
	const struct dsm__engine *e = &a->r->eng;

	memset(st, 0, sizeof(*st));
	for (uint32_t p = 0; p < a->r->npages; p++) {
		const struct dsm__page_counters *c = dsm__page_counters(e, p);
		uint32_t faults = c->read_faults + c->write_faults;
		bool local = dsm__page_home(e, p) == n->id;

		st->read_faults += c->read_faults;
		st->write_faults += c->write_faults;
		st->invalidations += c->invalidations;
		st->transfers += c->transfers;
		st->deferrals += c->deferrals;
		st->local_faults += local ? faults : 0;
		st->remote_faults += local ? 0 : faults;
		st->pages_homed += local;
	}
	st->readaheads = e->readaheads;
	st->pushes = e->pushes;
	memcpy(st->fault_hist, a->r->fault_hist, sizeof(st->fault_hist));
	st->fault_us_sum = a->r->fault_us_sum;
	return 0;
}

struct map_arg {
	struct dsm_region *r;
	uint32_t range_pages, n;
	struct dsm_range_info *out;
};

static int range_map_cmd(struct dsm_node *n, void *arg)
{
	struct map_arg *a = arg;
	const struct dsm__engine *e = &a->r->eng;

	(void)n;
	memset(a->out, 0, a->n * sizeof(*a->out));
	for (uint32_t p = 0; p < a->r->npages; p++) {
		const struct dsm__page_counters *c = dsm__page_counters(e, p);
		uint32_t i = p / a->range_pages;
		uint64_t copies, version;
		uint16_t owner;
		bool busy;

		if (i >= a->n)
			break;
		a->out[i].faults += (uint64_t)c->read_faults + c->write_faults;
		if (!dsm__dir_get(e, p, &owner, &copies, &version, &busy))
			continue; /* not homed here */
		a->out[i].homed++;
		if (__builtin_popcountll(copies) >= 2)
			a->out[i].replicated++;
	}
	return 0;
}

int dsm_region_range_map(struct dsm_region *r, uint32_t range_pages,
			 struct dsm_range_info *out, uint32_t n)
{
	struct map_arg a = {r, range_pages, n, out};

	if (!range_pages || !n)
		return -EINVAL;
	return dsm__run_on_node(r->node, range_map_cmd, &a);
}

int dsm_region_memfd(const struct dsm_region *r)
{
	/* the memfd never changes once the region exists */
	int fd = fcntl(r->memfd, F_DUPFD_CLOEXEC, 0);

	return fd < 0 ? -errno : fd;
}

int dsm_region_stats(struct dsm_region *r, struct dsm_region_stats *out)
{
	struct page_arg a = {r, 0, 0, (void *)out, NULL};

	return dsm__run_on_node(r->node, region_stats_cmd, &a);
}

int dsm_region_page_stats(struct dsm_region *r, uint32_t page,
			  struct dsm_page_stats *out)
{
	struct page_arg a = {r, page, 0, out, NULL};

	return dsm__run_on_node(r->node, page_stats_cmd, &a);
}

struct failed_arg {
	struct dsm_region *r;
	dsm_region_failed_fn fn;
	void *arg;
};

static int on_failure_cmd(struct dsm_node *n, void *arg)
{
	struct failed_arg *a = arg;

	(void)n;
	a->r->failed_fn = a->fn;
	a->r->failed_arg = a->arg;
	return 0;
}

int dsm_region_on_failure(struct dsm_region *r, dsm_region_failed_fn fn,
			  void *arg)
{
	struct failed_arg a = {r, fn, arg};

	return dsm__run_on_node(r->node, on_failure_cmd, &a);
}
