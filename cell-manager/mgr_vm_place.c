/*
 * Where a VM's vCPUs are (mgr_vm_nodes) and where they go, as the
 * manager sees it: the candidate table
 * (every node with its state, cell, DSM address and what the other
 * active VMs use) handed to the pure placement (placement.c). Used by
 * the cellctl methods (create, start, dry runs) and by restarts, which
 * ignore the spec's node hint.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgr_int.h"
#include "placement.h"

#define HEADROOM_PCT 10

static size_t add_node(const char **out, size_t k, const char *node)
{
	for (size_t j = 0; j < k; j++)
		if (strcmp(out[j], node) == 0)
			return k;
	out[k] = node;
	return k + 1;
}

/* The distinct nodes of a VM's vCPUs, in vCPU order, then its memory
 * nodes. */
size_t mgr_vm_nodes(const struct mgr_vm *vm, const char **out)
{
	size_t k = 0;

	for (uint32_t i = 0; i < vm->nvcpus; i++)
		k = add_node(out, k, vm->vcpus[i].node);
	for (uint32_t i = 0; i < vm->nmem; i++)
		k = add_node(out, k, vm->mem_nodes[i]);
	return k;
}

void mgr_vm_choose_mem_nodes(struct mgr *m, struct mgr_vm *vm)
{
	const Cellmon__VmSpec *s = vm->spec;
	size_t n = mgr_members_count(m->members);

	vm->nmem = 0;
	if (s->home_node[0])
		snprintf(vm->mem_nodes[vm->nmem++], sizeof(vm->mem_nodes[0]),
			 "%s", s->home_node);
	if (s->engine != CELLMON__ENGINE__ENGINE_QEMU ||
	    s->home == CELLMON__HOME_POLICY__HOME_ONE)
		return;
	/* a qemu VM's pages are spread over its cell, as on a cc-NUMA
	 * machine whose memory is on every node */
	for (size_t i = 0; i < n && vm->nmem < DSM_MAX_NODES; i++) {
		struct mgr_node *node = mgr_members_at(m->members, i);

		if (strcmp(node->cell, s->cell) == 0 &&
		    node->state == MGR_NODE_UP && node->dsm_addr[0] &&
		    mgr_node_dsm_id(m, node) >= 0)
			snprintf(vm->mem_nodes[vm->nmem++],
				 sizeof(vm->mem_nodes[0]), "%s", node->id);
	}
}

/* Fills the candidate table; `empty` ignores what other VMs use. */
static struct mgr_place_node *place_table(struct mgr *m,
					  const Cellmon__VmSpec *s,
					  const struct mgr_vm *self, bool empty,
					  size_t *count)
{
	size_t n = mgr_members_count(m->members);
	struct mgr_place_node *t = calloc(n ? n : 1, sizeof(*t));

	for (size_t i = 0; t && i < n; i++) {
		struct mgr_node *node = mgr_members_at(m->members, i);

		t[i].id = node->id;
		t[i].up = empty || node->state == MGR_NODE_UP;
		t[i].in_cell = strcmp(node->cell, s->cell) == 0;
		t[i].no_image = !mgr_node_has_image(node, s->image);
		t[i].has_dsm = empty || (node->dsm_addr[0] &&
					 mgr_node_dsm_id(m, node) >= 0);
		t[i].cpus = node->cpus;
		t[i].memory_mb = node->memory_mb;
		for (size_t v = 0; !empty && v < m->nvms; v++) {
			const struct mgr_vm *o = m->vms[v];
			const char *nodes[MGR_VM_MAX_NODES];
			size_t k;
			bool here = false;

			if (o == self || !mgr_vm_active(o))
				continue;
			for (uint32_t c = 0; c < o->nvcpus; c++)
				if (strcmp(o->vcpus[c].node, node->id) == 0) {
					t[i].used_cpus++;
					here = true;
				}
			if (!here)
				continue;
			k = mgr_vm_nodes(o, nodes);
			t[i].used_mb += (o->spec->memory_mb + k - 1) / k;
			if (s->anti_affinity[0] &&
			    strcmp(s->anti_affinity, o->spec->anti_affinity) ==
				    0)
				t[i].anti_conflict = true;
		}
	}
	*count = n;
	return t;
}

/* hint: obey the spec's node hint (restarts after a node failure go
 * anywhere in the cell). */
static int place_hint(struct mgr *m, const Cellmon__VmSpec *s,
		      const struct mgr_vm *self, bool empty, bool hint,
		      const char **names, char *why, size_t len)
{
	uint32_t out[VM_MAX_VCPUS];
	unsigned rejected[MGR_PLACE_FILTERS] = {0};
	struct mgr_place_req q = {
		.vcpus = s->vcpus,
		.memory_mb = s->memory_mb,
		.node = hint ? s->node : NULL,
		.pack = s->placement == CELLMON__PLACEMENT__PLACEMENT_PACK,
		.one_node = s->engine == CELLMON__ENGINE__ENGINE_QEMU,
		.headroom_pct = HEADROOM_PCT,
	};
	size_t n;
	struct mgr_place_node *t = place_table(m, s, self, empty, &n);
	int rc;

	if (!t)
		return -ENOMEM;
	rc = mgr_place_counted(&q, t, n, out, why, len, rejected);
	/* each refusal counts once for every filter that turned a node
	 * away (/metrics: cellmon_placement_refusals_total{filter}) */
	for (int f = 0; rc == -ENOSPC && f < MGR_PLACE_FILTERS; f++)
		m->place_refusals[f] += rejected[f] > 0;
	for (uint32_t v = 0; !rc && names && v < s->vcpus; v++)
		names[v] = t[out[v]].id; /* node ids outlive the table */
	free(t);
	return rc;
}

/* -ENOENT when every node of the cell listed its images and none has the
 * spec's: the image does not exist there, which no amount of room would
 * change (exit 4 in cellctl, and the VM is not recorded). */
static int image_check(struct mgr *m, const Cellmon__VmSpec *s, char *why,
		       size_t len)
{
	size_t n = mgr_members_count(m->members), off;
	const struct mgr_node *first = NULL; /* a node that listed them */

	for (size_t i = 0; i < n; i++) {
		const struct mgr_node *node = mgr_members_at(m->members, i);

		if (strcmp(node->cell, s->cell) != 0)
			continue;
		if (mgr_node_has_image(node, s->image)) /* or did not say */
			return 0;
		if (!first)
			first = node;
	}
	if (!first)
		return 0;
	off = (size_t)snprintf(why, len,
			       "no image '%s' on any node of cell %s (%s has:",
			       s->image, s->cell, first->id);
	for (uint32_t k = 0; k < first->nimages && off < len; k++)
		off += (size_t)snprintf(why + off, len - off, " %s",
					first->images[k]);
	if (off < len)
		snprintf(why + off, len - off, ")");
	return -ENOENT;
}

int mgr_vm_place(struct mgr *m, const Cellmon__VmSpec *s,
		 const struct mgr_vm *self, bool empty, const char **names,
		 char *why, size_t len)
{
	int rc = image_check(m, s, why, len);

	return rc ? rc : place_hint(m, s, self, empty, true, names, why, len);
}

int mgr_vm_place_restart(struct mgr *m, const struct mgr_vm *vm,
			 const char **names, char *why, size_t len)
{
	return place_hint(m, vm->spec, vm, false, false, names, why, len);
}
