/*
 * VM placement (placement.h): filters, then a choice of nodes and a deal
 * of vCPUs over them. No I/O, no allocation beyond a scratch index table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"

enum {
	F_STATE,
	F_CELL,
	F_NODE,
	F_IMAGE,
	F_ANTI,
	F_DSM,
	F_CPUS,
	F_MEMORY,
	F_COUNT,
};

_Static_assert(F_COUNT == MGR_PLACE_FILTERS, "placement.h's filter count");

const char *const mgr_place_filter_names[MGR_PLACE_FILTERS] = {
	"state",	 "cell", "node", "image",
	"anti-affinity", "dsm",	 "cpus", "memory",
};

static const char *const filter_what[F_COUNT] = {
	"not up",
	"outside the cell",
	"not the requested node",
	"without the image",
	"running a VM of the same anti-affinity group",
	"without a DSM address yet",
	"without a free cpu",
	"too small",
};

static uint32_t free_cpus(const struct mgr_place_node *p)
{
	return p->cpus > p->used_cpus ? p->cpus - p->used_cpus : 0;
}

static uint64_t free_mb(const struct mgr_place_node *p)
{
	return p->memory_mb > p->used_mb ? p->memory_mb - p->used_mb : 0;
}

/* The first filter that rejects p, or F_COUNT; memory is checked later
 * because the share depends on how many nodes are used. */
static int rejects(const struct mgr_place_req *q,
		   const struct mgr_place_node *p)
{
	if (!p->up)
		return F_STATE;
	if (!p->in_cell)
		return F_CELL;
	if (q->node && q->node[0] && strcmp(q->node, p->id) != 0)
		return F_NODE;
	if (p->no_image)
		return F_IMAGE;
	if (p->anti_conflict)
		return F_ANTI;
	if (!p->has_dsm)
		return F_DSM;
	if (!free_cpus(p))
		return F_CPUS;
	return F_COUNT;
}

static uint64_t share_mb(const struct mgr_place_req *q, uint32_t k)
{
	uint64_t s = (q->memory_mb + k - 1) / k;

	return s + s * q->headroom_pct / 100;
}

/* Sort context: qsort has no user argument. One thread. */
static const struct mgr_place_node *sort_nodes;

static int by_score(const void *a, const void *b)
{
	const struct mgr_place_node *x = &sort_nodes[*(const size_t *)a];
	const struct mgr_place_node *y = &sort_nodes[*(const size_t *)b];
	uint32_t fx = free_cpus(x), fy = free_cpus(y);

	if (x->has_pages != y->has_pages)
		return x->has_pages ? -1 : 1;
	if (fx != fy)
		return fx > fy ? -1 : 1;
	if (free_mb(x) != free_mb(y))
		return free_mb(x) > free_mb(y) ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Tries k nodes out of the candidates idx[0..c): 0 and out[] filled, or
 * -ENOSPC. idx is sorted by score. */
static int try_k(const struct mgr_place_req *q,
		 const struct mgr_place_node *nodes, const size_t *idx,
		 size_t c, uint32_t k, uint32_t *out)
{
	size_t pick[64];
	uint32_t room[64], have = 0, cpus = 0, v = 0, i;
	uint64_t need = share_mb(q, k);

	for (size_t j = 0; j < c && have < k && have < 64; j++) {
		const struct mgr_place_node *p = &nodes[idx[j]];

		if (free_mb(p) < need)
			continue;
		pick[have] = idx[j];
		room[have] = free_cpus(p);
		cpus += room[have++];
	}
	if (have < k || cpus < q->vcpus)
		return -ENOSPC;
	if (q->pack) {
		for (i = 0; i < k && v < q->vcpus; i++)
			while (room[i] && v < q->vcpus) {
				room[i]--;
				out[v++] = (uint32_t)pick[i];
			}
		return 0;
	}
	for (i = 0; v < q->vcpus; i = (i + 1) % k)
		if (room[i]) {
			room[i]--;
			out[v++] = (uint32_t)pick[i];
		}
	return 0;
}

static void explain(const struct mgr_place_req *q, const unsigned *count,
		    uint32_t cell_cpus, uint64_t need_mb, char *why, size_t len)
{
	size_t off = 0;
	int w;

	w = snprintf(why, len, "no placement for %u vCPU(s), %llu MB", q->vcpus,
		     (unsigned long long)q->memory_mb);
	off = w > 0 && (size_t)w < len ? (size_t)w : len;
	if (cell_cpus < q->vcpus && off < len) {
		w = snprintf(why + off, len - off,
			     "; total: the usable nodes have %u free cpu(s)",
			     cell_cpus);
		off = w > 0 && off + (size_t)w < len ? off + (size_t)w : len;
	}
	for (int f = 0; f < F_COUNT && off < len; f++) {
		if (!count[f])
			continue;
		w = snprintf(why + off, len - off, "; %s: %u node%s %s",
			     mgr_place_filter_names[f], count[f],
			     count[f] == 1 ? "" : "s", filter_what[f]);
		if (f == F_MEMORY && w > 0 && off + (size_t)w < len)
			w += snprintf(why + off + w, len - off - (size_t)w,
				      " (need %llu MB free)",
				      (unsigned long long)need_mb);
		off = w > 0 && off + (size_t)w < len ? off + (size_t)w : len;
	}
}

int mgr_place(const struct mgr_place_req *q, const struct mgr_place_node *nodes,
	      size_t n, uint32_t *out, char *why, size_t len)
{
	return mgr_place_counted(q, nodes, n, out, why, len, NULL);
}

int mgr_place_counted(const struct mgr_place_req *q,
		      const struct mgr_place_node *nodes, size_t n,
		      uint32_t *out, char *why, size_t len,
		      unsigned rejected[MGR_PLACE_FILTERS])
{
	unsigned count[F_COUNT + 1] = {0};
	size_t *idx = calloc(n ? n : 1, sizeof(*idx)), c = 0;
	uint32_t cpus = 0, maxk;
	int rc = -ENOSPC;

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int f = rejects(q, &nodes[i]);

		count[f]++;
		if (f == F_COUNT) {
			idx[c++] = i;
			cpus += free_cpus(&nodes[i]);
		}
	}
	sort_nodes = nodes;
	qsort(idx, c, sizeof(*idx), by_score);
	maxk = q->vcpus < c ? q->vcpus : (uint32_t)c;
	if (maxk > 64)
		maxk = 64;
	if (q->one_node && maxk > 1)
		maxk = 1;
	for (uint32_t t = 1; q->vcpus && t <= maxk && rc; t++) {
		uint32_t k = q->pack ? t : maxk + 1 - t;

		rc = try_k(q, nodes, idx, c, k, out);
	}
	if (rc) {
		/* Nodes that passed every other filter but are short of
		 * memory even for the smallest share. */
		uint64_t need = share_mb(q, maxk ? maxk : 1);

		for (size_t j = 0; j < c; j++)
			if (free_mb(&nodes[idx[j]]) < need)
				count[F_MEMORY]++;
		explain(q, count, cpus, need, why, len);
		if (rejected) {
			memcpy(rejected, count,
			       MGR_PLACE_FILTERS * sizeof(*rejected));
			if (cpus < q->vcpus && !rejected[F_CPUS])
				rejected[F_CPUS] = 1;
		}
	}
	free(idx);
	return rc;
}
