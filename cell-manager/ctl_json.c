/*
 * The JSON form of the manager's replies, one function per reply type:
 * what `cellctl ... -o json` prints and what the manager's web API
 * serves, from the same code so the two cannot differ. The field names
 * are the contract documented in docs/operations.md. Also the names of
 * the enums and cellctl status's health (the problems a cell has).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_json.h"

static json_t *str_array(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *u32_array(const uint32_t *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

static json_t *ranges_json(const Cellmon__VmPagesReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_ranges; i++) {
		const Cellmon__PageRange *g = r->ranges[i];

		json_array_append_new(
			arr,
			json_pack("{s:i, s:o, s:o, s:i}", "first",
				  (int)g->first, "homed",
				  u32_array(g->homed, g->n_homed), "faults",
				  u32_array(g->faults, g->n_faults),
				  "replicated", (int)g->replicated));
	}
	return arr;
}

const char *ctl_node_state_name(Cellmon__NodeState s)
{
	switch (s) {
	case CELLMON__NODE_STATE__NODE_UP:
		return "up";
	case CELLMON__NODE_STATE__NODE_SUSPECT:
		return "suspect";
	case CELLMON__NODE_STATE__NODE_DOWN:
		return "down";
	case CELLMON__NODE_STATE__NODE_DRAINING:
		return "draining";
	default:
		return "unknown";
	}
}

void ctl_iso_time(uint64_t wall_ms, char *out, size_t len)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	if (!wall_ms) {
		snprintf(out, len, "-");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *ctl_json_node(const Cellmon__NodeInfo *n)
{
	char since[32];
	json_t *o, *images = NULL;

	ctl_iso_time(n->state_since_ms, since, sizeof(since));
	if (n->capacity && n->capacity->images_known) {
		images = json_array();
		for (size_t i = 0; images && i < n->capacity->n_images; i++)
			json_array_append_new(
				images, json_string(n->capacity->images[i]));
	}
	o = json_pack(
		"{s:s, s:s, s:s, s:I, s:s?, s:i, s:I, s:f, s:I, s:i, s:I, "
		"s:s, s:i, s:b, s:s, s:i, s:{s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I}}",
		"id", n->id, "addr", n->addr, "state",
		ctl_node_state_name(n->state), "incarnation",
		(json_int_t)n->incarnation, "cell", n->cell[0] ? n->cell : NULL,
		"cpus", n->capacity ? (int)n->capacity->cpus : 0, "memory_mb",
		(json_int_t)(n->capacity ? n->capacity->memory_mb : 0), "load1",
		n->load ? n->load->load1 : 0.0, "mem_free_mb",
		(json_int_t)(n->load ? n->load->mem_free_mb : 0), "vcpus",
		n->load ? (int)n->load->vcpus : 0, "heartbeat_age_ms",
		(json_int_t)n->heartbeat_age_ms, "state_since", since,
		"heartbeat_ms", (int)n->heartbeat_ms, "connected", n->connected,
		"dsm_addr", n->dsm_addr, "dsm_id", (int)n->dsm_id, "cache",
		"hits", (json_int_t)(n->cache ? n->cache->hits : 0), "misses",
		(json_int_t)(n->cache ? n->cache->misses : 0), "evictions",
		(json_int_t)(n->cache ? n->cache->evictions : 0), "waits",
		(json_int_t)(n->cache ? n->cache->waits : 0), "zero_reads",
		(json_int_t)(n->cache ? n->cache->zero_reads : 0), "entries",
		(json_int_t)(n->cache ? n->cache->entries : 0), "capacity",
		(json_int_t)(n->cache ? n->cache->capacity : 0));
	/* node info only: the images, absent when the node did not say */
	if (o && images)
		json_object_set_new(o, "images", images);
	return o;
}

const char *ctl_page_policy_name(int page_policy)
{
	return cellproto_name(&cellproto_page_policies,
			      page_policy
				      ? page_policy
				      : CELLMON__PAGE_POLICY__PAGE_POLICY_ALL);
}

json_t *ctl_json_cell(const Cellmon__CellInfo *c)
{
	json_t *nodes = json_array();
	char created[32];

	for (size_t i = 0; nodes && i < c->n_nodes; i++)
		json_array_append_new(nodes, json_string(c->nodes[i]));
	ctl_iso_time(c->created_ms, created, sizeof(created));
	return json_pack("{s:s, s:o, s:i, s:s, s:s}", "name", c->name, "nodes",
			 nodes, "nodes_up", (int)c->nodes_up, "created",
			 created, "page_policy",
			 ctl_page_policy_name((int)c->page_policy));
}

json_t *ctl_json_status(const Cellmon__StatusReply *s)
{
	return json_pack(
		"{s:s, s:i, s:I, s:I, s:{s:i, s:i, s:i}, s:i, s:s, "
		"s:s, s:s}",
		"version", s->version, "protocol_version",
		(int)s->protocol_version, "uptime_ms", (json_int_t)s->uptime_ms,
		"epoch", (json_int_t)s->epoch, "nodes", "up", (int)s->nodes_up,
		"suspect", (int)s->nodes_suspect, "down", (int)s->nodes_down,
		"cells", (int)s->cells, "agent_addr", s->agent_addr, "ctl_addr",
		s->ctl_addr, "state_dir", s->state_dir);
}

void ctl_problem(struct ctl_problems *p, const char *fmt, ...)
{
	char line[600], **nl;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (p->n == p->cap) {
		nl = realloc(p->line, (p->cap ? p->cap * 2 : 8) * sizeof(*nl));
		if (!nl)
			return;
		p->line = nl;
		p->cap = p->cap ? p->cap * 2 : 8;
	}
	p->line[p->n] = strdup(line);
	if (p->line[p->n])
		p->n++;
}

void ctl_problems_free(struct ctl_problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->line[i]);
	free(p->line);
}

static const char *node_state_word(Cellmon__NodeState s)
{
	return s == CELLMON__NODE_STATE__NODE_SUSPECT	 ? "suspect"
	       : s == CELLMON__NODE_STATE__NODE_DOWN	 ? "down"
	       : s == CELLMON__NODE_STATE__NODE_DRAINING ? "draining"
							 : "in no known state";
}

void ctl_node_problems(struct ctl_problems *p, const Cellmon__NodeListReply *r)
{
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Cellmon__NodeInfo *n = r->nodes[i];

		if (n->state == CELLMON__NODE_STATE__NODE_UP)
			continue;
		ctl_problem(p,
			    "node %s is %s: no heartbeat for %llu ms "
			    "(incarnation %llu%s%s)",
			    n->id, node_state_word(n->state),
			    (unsigned long long)n->heartbeat_age_ms,
			    (unsigned long long)n->incarnation,
			    n->cell[0] ? ", cell " : "", n->cell);
	}
	if (!r->n_nodes)
		ctl_problem(p, "no node has registered");
}

void ctl_vm_problems(struct ctl_problems *p, const Cellmon__VmListReply *r)
{
	for (size_t i = 0; i < r->n_vms; i++) {
		const Cellmon__VmInfo *v = r->vms[i];

		if (v->state == CELLMON__VM_STATE__VM_FAILED)
			ctl_problem(p, "vm %s failed: %s",
				    v->spec ? v->spec->name : "?",
				    v->reason[0] ? v->reason
						 : "no reason given");
	}
}

const char *ctl_vm_state_name(Cellmon__VmState s)
{
	return cellproto_name(&cellproto_vm_states, s);
}

const char *ctl_vcpu_state_name(Cellmon__VcpuState s)
{
	return cellproto_name(&cellproto_vcpu_states, s);
}

static json_t *spec_json(const Cellmon__VmSpec *s)
{
	json_t *args = json_array();

	for (size_t i = 0; args && i < s->n_args; i++)
		json_array_append_new(args, json_string(s->args[i]));
	json_t *disks = json_array();

	for (size_t i = 0; disks && i < s->n_disks; i++)
		json_array_append_new(disks, json_string(s->disks[i]));
	return json_pack(
		"{s:s, s:s, s:I, s:i, s:s, s:s, s:o, s:s, s:s, s:s, "
		"s:s, s:o, s:s, s:s, s:s}",
		"name", s->name, "cell", s->cell, "memory_mb",
		(json_int_t)s->memory_mb, "vcpus", (int)s->vcpus, "engine",
		cellproto_name(&cellproto_engines, s->engine), "image",
		s->image, "args", args, "node", s->node, "placement",
		cellproto_name(&cellproto_placements, s->placement), "home",
		cellproto_name(&cellproto_homes, s->home), "anti_affinity",
		s->anti_affinity, "disks", disks, "kernel", s->kernel, "initrd",
		s->initrd, "page_policy",
		ctl_page_policy_name((int)s->page_policy));
}

json_t *ctl_json_vm(const Cellmon__VmInfo *v)
{
	json_t *vcpus = json_array(), *deps = json_array(), *o;

	for (size_t i = 0; vcpus && i < v->n_vcpus; i++) {
		const Cellmon__VcpuInfo *c = v->vcpus[i];

		json_array_append_new(
			vcpus, json_pack("{s:i, s:s, s:s, s:i, s:i, s:i}",
					 "vcpu", (int)c->vcpu, "node", c->node,
					 "state", ctl_vcpu_state_name(c->state),
					 "exit_code", c->exit_code, "signal",
					 c->signal, "pid", c->pid));
	}
	for (size_t i = 0; deps && i < v->n_deps; i++)
		json_array_append_new(deps, json_string(v->deps[i]));
	o = json_pack(
		"{s:s, s:I, s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:I, s:i, "
		"s:I, s:i}",
		"name", v->spec ? v->spec->name : "", "id", (json_int_t)v->id,
		"state", ctl_vm_state_name(v->state), "reason", v->reason,
		"spec", v->spec ? spec_json(v->spec) : json_null(), "vcpus",
		vcpus, "deps", deps, "disk_server", v->disk_server,
		"created_ms", (json_int_t)v->created_ms, "state_since_ms",
		(json_int_t)v->state_since_ms, "runs", (int)v->runs, "region",
		(json_int_t)v->region, "restarts", (int)v->restarts);
	if (o && v->accel[0]) /* qemu VMs */
		json_object_set_new(o, "accel", json_string(v->accel));
	return o;
}

/* The map of homes as JSON: one object per range. */

json_t *ctl_json_event(const Cellmon__Event *e)
{
	return json_pack("{s:I, s:I, s:s, s:s, s:s}", "id", (json_int_t)e->id,
			 "at_ms", (json_int_t)e->at_ms, "kind", e->kind,
			 "subject", e->subject, "detail", e->detail);
}

json_t *ctl_json_vm_pages(const Cellmon__VmPagesReply *r)
{
	const char *mode = ctl_page_policy_name((int)r->page_policy);
	json_t *hot = json_array(), *shared = json_array();

	for (size_t i = 0; hot && i < r->n_hot; i++) {
		const Cellmon__PageHeat *h = r->hot[i];

		json_array_append_new(
			hot,
			json_pack("{s:i, s:s, s:o, s:o, s:o, s:o}", "page",
				  (int)h->page, "home", h->home, "nodes",
				  str_array(h->nodes, h->n_nodes), "reads",
				  u32_array(h->reads, h->n_reads), "writes",
				  u32_array(h->writes, h->n_writes), "copies",
				  str_array(h->copies, h->n_copies)));
	}
	for (size_t i = 0; shared && i < r->n_shared; i++) {
		const Cellmon__SharedPage *s = r->shared[i];

		json_array_append_new(
			shared,
			json_pack("{s:i, s:o, s:o, s:o, s:i}", "page",
				  (int)s->page, "writers",
				  str_array(s->writers, s->n_writers),
				  "readers",
				  str_array(s->readers, s->n_readers), "vcpus",
				  u32_array(s->vcpus, s->n_vcpus), "intervals",
				  (int)s->intervals));
	}
	return json_pack(
		"{s:s, s:s, s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:o, s:o, s:i, s:o, s:o}",
		"vm", r->name, "page_policy", mode, "region",
		(json_int_t)r->region, "rounds", (int)r->rounds, "interval_ms",
		(int)r->interval_ms, "moves", (json_int_t)r->moves, "pushes",
		(json_int_t)r->pushes, "applied", (json_int_t)r->applied,
		"dropped", (json_int_t)r->dropped, "limited",
		(json_int_t)r->limited, "held", (json_int_t)r->held, "hot", hot,
		"shared", shared, "range_pages", (int)r->range_pages,
		"map_nodes", str_array(r->map_nodes, r->n_map_nodes), "ranges",
		ranges_json(r));
}

json_t *ctl_json_nodes(const Cellmon__NodeListReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_nodes; i++)
		json_array_append_new(arr, ctl_json_node(r->nodes[i]));
	return json_pack("{s:o}", "nodes", arr);
}

json_t *ctl_json_cells(const Cellmon__CellListReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_cells; i++)
		json_array_append_new(arr, ctl_json_cell(r->cells[i]));
	return json_pack("{s:o}", "cells", arr);
}

json_t *ctl_json_vms(const Cellmon__VmListReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_vms; i++)
		json_array_append_new(arr, ctl_json_vm(r->vms[i]));
	return json_pack("{s:o}", "vms", arr);
}

json_t *ctl_json_events(const Cellmon__EventsReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < r->n_events; i++)
		json_array_append_new(arr, ctl_json_event(r->events[i]));
	return json_pack("{s:o, s:I}", "events", arr, "last_id",
			 (json_int_t)r->last_id);
}

json_t *ctl_json_health(const Cellmon__StatusReply *s,
			const struct ctl_problems *p)
{
	json_t *j = ctl_json_status(s), *arr = json_array();

	for (size_t i = 0; arr && i < p->n; i++)
		json_array_append_new(arr, json_string(p->line[i]));
	json_object_set_new(j, "healthy", json_boolean(p->n == 0));
	json_object_set_new(j, "problems", arr);
	json_object_set_new(j, "disk_server_configured",
			    json_boolean(!p->no_disk_server));
	return j;
}
