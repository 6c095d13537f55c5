/*
 * Rendering of cellctl output: aligned tables and key/value blocks for
 * people, JSON objects (jansson) for scripts. Field names in JSON are the
 * contract documented in docs/operations.md; tables may change.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellctl.h"

static void human_mb(uint64_t mb, char *out, size_t len)
{
	if (mb >= 1024)
		snprintf(out, len, "%.1fG", (double)mb / 1024.0);
	else
		snprintf(out, len, "%lluM", (unsigned long long)mb);
}

static void human_age(uint64_t ms, char *out, size_t len)
{
	if (ms < 10000)
		snprintf(out, len, "%llums", (unsigned long long)ms);
	else if (ms < 600000)
		snprintf(out, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(out, len, "%llum", (unsigned long long)(ms / 60000));
}

void ctl_emit_json(json_t *j)
{
	if (!j) {
		fprintf(stderr, "cellctl: cannot build the JSON output\n");
		return;
	}
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(j);
}

static void ctl_print_nodes(Cellmon__NodeInfo **nodes, size_t n)
{
	printf("%-16s %-8s %11s %-12s %4s %7s %5s %9s  %s\n", "NODE", "STATE",
	       "INCARNATION", "CELL", "CPUS", "MEMORY", "LOAD", "HEARTBEAT",
	       "ADDR");
	for (size_t i = 0; i < n; i++) {
		const Cellmon__NodeInfo *x = nodes[i];
		char mem[32], age[32];

		human_mb(x->capacity ? x->capacity->memory_mb : 0, mem,
			 sizeof(mem));
		human_age(x->heartbeat_age_ms, age, sizeof(age));
		printf("%-16s %-8s %11llu %-12s %4u %7s %5.2f %9s  %s\n", x->id,
		       ctl_node_state_name(x->state),
		       (unsigned long long)x->incarnation,
		       x->cell[0] ? x->cell : "-",
		       x->capacity ? x->capacity->cpus : 0, mem,
		       x->load ? x->load->load1 : 0.0, age, x->addr);
	}
}

static void ctl_print_node(const Cellmon__NodeInfo *n)
{
	char mem[32], freem[32], since[32];

	human_mb(n->capacity ? n->capacity->memory_mb : 0, mem, sizeof(mem));
	human_mb(n->load ? n->load->mem_free_mb : 0, freem, sizeof(freem));
	ctl_iso_time(n->state_since_ms, since, sizeof(since));
	printf("node:          %s\n", n->id);
	printf("state:         %s (since %s)\n", ctl_node_state_name(n->state),
	       since);
	printf("incarnation:   %llu\n", (unsigned long long)n->incarnation);
	printf("cell:          %s\n", n->cell[0] ? n->cell : "-");
	printf("address:       %s\n", n->addr);
	printf("connected:     %s\n", n->connected ? "yes" : "no");
	printf("capacity:      %u cpus, %s memory\n",
	       n->capacity ? n->capacity->cpus : 0, mem);
	if (n->capacity && n->capacity->images_known) {
		printf("images:       ");
		for (size_t i = 0; i < n->capacity->n_images; i++)
			printf(" %s", n->capacity->images[i]);
		printf("%s\n", n->capacity->n_images ? "" : " (none)");
	}
	printf("load:          %.2f (1 min), %s memory free, %u vcpus\n",
	       n->load ? n->load->load1 : 0.0, freem,
	       n->load ? n->load->vcpus : 0);
	printf("heartbeat:     every %u ms, last %llu ms ago\n",
	       n->heartbeat_ms, (unsigned long long)n->heartbeat_age_ms);
	if (n->cache)
		printf("disk cache:    %llu hits, %llu misses, %llu evictions, "
		       "%llu of %llu blocks used, %llu zero reads\n",
		       (unsigned long long)n->cache->hits,
		       (unsigned long long)n->cache->misses,
		       (unsigned long long)n->cache->evictions,
		       (unsigned long long)n->cache->entries,
		       (unsigned long long)n->cache->capacity,
		       (unsigned long long)n->cache->zero_reads);
	if (n->dsm_addr[0])
		printf("dsm:           id %d at %s\n", n->dsm_id, n->dsm_addr);
	else
		printf("dsm:           no address yet (cannot host VMs)\n");
}

static void ctl_print_cells(Cellmon__CellInfo **cells, size_t n)
{
	printf("%-16s %5s %4s  %s\n", "CELL", "NODES", "UP", "MEMBERS");
	for (size_t i = 0; i < n; i++) {
		const Cellmon__CellInfo *c = cells[i];

		printf("%-16s %5zu %4u  ", c->name, c->n_nodes, c->nodes_up);
		for (size_t k = 0; k < c->n_nodes; k++)
			printf("%s%s", k ? "," : "", c->nodes[k]);
		printf("%s\n", c->n_nodes ? "" : "-");
	}
}

static void ctl_print_cell(const Cellmon__CellInfo *c)
{
	char created[32];

	ctl_iso_time(c->created_ms, created, sizeof(created));
	printf("cell:     %s\n", c->name);
	printf("created:  %s\n", created);
	printf("pages:    %s (the page policy of VMs created without one)\n",
	       ctl_page_policy_name((int)c->page_policy));
	printf("nodes:    %zu (%u up)\n", c->n_nodes, c->nodes_up);
	for (size_t k = 0; k < c->n_nodes; k++)
		printf("  - %s\n", c->nodes[k]);
}

static void ctl_print_status(const Cellmon__StatusReply *s)
{
	printf("manager:   %s (version %s, protocol %u)\n", s->ctl_addr,
	       s->version, s->protocol_version);
	printf("uptime:    %llu s\n",
	       (unsigned long long)(s->uptime_ms / 1000));
	printf("epoch:     %llu\n", (unsigned long long)s->epoch);
	printf("nodes:     %u up, %u suspect, %u down\n", s->nodes_up,
	       s->nodes_suspect, s->nodes_down);
	printf("cells:     %u\n", s->cells);
	printf("agents at: %s\n", s->agent_addr);
	printf("state dir: %s\n", s->state_dir);
}

void ctl_render_status(bool json, const ProtobufCMessage *reply, char **args)
{
	(void)args;
	if (json)
		ctl_emit_json(ctl_json_status((const void *)reply));
	else
		ctl_print_status((const void *)reply);
}

void ctl_render_status_health(bool json, const Cellmon__StatusReply *s,
			      const struct ctl_problems *p)
{
	if (json) {
		ctl_emit_json(ctl_json_health(s, p));
		return;
	}
	ctl_print_status(s);
	if (!p->n) {
		printf("health:    healthy%s\n",
		       p->no_disk_server ? " (no disk server configured)" : "");
		return;
	}
	printf("health:    NOT healthy, %zu problem%s:\n", p->n,
	       p->n == 1 ? "" : "s");
	for (size_t i = 0; i < p->n; i++)
		printf("  - %s\n", p->line[i]);
}

void ctl_render_node_list(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__NodeListReply *r = (const void *)reply;

	(void)args;
	if (json)
		ctl_emit_json(ctl_json_nodes(r));
	else
		ctl_print_nodes(r->nodes, r->n_nodes);
}

void ctl_render_node_info(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__NodeInfoReply *r = (const void *)reply;
	Cellmon__NodeInfo empty = CELLMON__NODE_INFO__INIT;
	const Cellmon__NodeInfo *n = r->node ? r->node : &empty;

	(void)args;
	if (json)
		ctl_emit_json(ctl_json_node(n));
	else
		ctl_print_node(n);
}

void ctl_render_node_ping(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__NodePingReply *r = (const void *)reply;

	if (json)
		ctl_emit_json(json_pack("{s:s, s:I, s:I}", "node", args[0],
					"incarnation",
					(json_int_t)r->incarnation, "rtt_us",
					(json_int_t)r->rtt_us));
	else
		printf("%s: incarnation %llu answered in %llu us "
		       "(manager -> agent -> manager)\n",
		       args[0], (unsigned long long)r->incarnation,
		       (unsigned long long)r->rtt_us);
}

void ctl_render_cell_list(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__CellListReply *r = (const void *)reply;

	(void)args;
	if (json)
		ctl_emit_json(ctl_json_cells(r));
	else
		ctl_print_cells(r->cells, r->n_cells);
}

/* CELL_REPLY without a cell answers a delete. */
void ctl_render_cell(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__CellReply *r = (const void *)reply;

	if (!r->cell) {
		if (json)
			ctl_emit_json(json_pack("{s:s}", "deleted", args[0]));
		else
			printf("cell %s deleted\n", args[0]);
	} else if (json) {
		ctl_emit_json(ctl_json_cell(r->cell));
	} else {
		ctl_print_cell(r->cell);
	}
}

static json_t *ctl_disk_json(const Cellmon__DiskInfo *d)
{
	return json_pack("{s:s, s:I, s:b, s:s, s:I, s:I, s:i, s:i}", "name",
			 d->name, "size", (json_int_t)d->size, "frozen",
			 d->frozen, "parent", d->parent, "data_bytes",
			 (json_int_t)d->data_bytes, "journal_bytes",
			 (json_int_t)d->journal_bytes, "chain_depth",
			 (int)d->chain_depth, "clients", (int)d->clients);
}

static void human_bytes(uint64_t b, char *out, size_t len)
{
	const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

void ctl_render_disk_list(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__DiskListReply *r = (const void *)reply;
	json_t *arr;

	(void)args;
	if (json) {
		arr = json_array();
		for (size_t i = 0; i < r->n_disks; i++)
			json_array_append_new(arr, ctl_disk_json(r->disks[i]));
		ctl_emit_json(json_pack(
			"{s:s, s:o, s:I, s:I}", "server", r->server, "disks",
			arr, "bytes_read", (json_int_t)r->bytes_read,
			"bytes_written", (json_int_t)r->bytes_written));
		return;
	}
	printf("%-20s %10s %-6s %7s %10s  %s\n", "DISK", "SIZE", "FROZEN",
	       "CLIENTS", "DATA", "PARENT");
	for (size_t i = 0; i < r->n_disks; i++) {
		const Cellmon__DiskInfo *d = r->disks[i];
		char size[32], data[32];

		human_bytes(d->size, size, sizeof(size));
		human_bytes(d->data_bytes, data, sizeof(data));
		printf("%-20s %10s %-6s %7u %10s  %s\n", d->name, size,
		       d->frozen ? "yes" : "no", d->clients, data,
		       d->parent[0] ? d->parent : "-");
	}
	printf("(disk server: nbd://%s/DISK; %llu bytes read, %llu written "
	       "since it started)\n",
	       r->server, (unsigned long long)r->bytes_read,
	       (unsigned long long)r->bytes_written);
}

/* DISK_REPLY without a disk answers a delete. */
void ctl_render_disk(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__DiskReply *r = (const void *)reply;
	const Cellmon__DiskInfo *d = r->disk;

	if (!d) {
		if (json)
			ctl_emit_json(json_pack("{s:s}", "deleted", args[0]));
		else
			printf("disk %s deleted\n", args[0]);
		return;
	}
	if (json) {
		ctl_emit_json(ctl_disk_json(d));
		return;
	}
	printf("disk:          %s\nsize:          %llu\nfrozen:        %s\n"
	       "parent:        %s\nchain depth:   %u\ndata bytes:    %llu\n"
	       "journal bytes: %llu\nclients:       %u\n",
	       d->name, (unsigned long long)d->size, d->frozen ? "yes" : "no",
	       d->parent[0] ? d->parent : "(none)", d->chain_depth,
	       (unsigned long long)d->data_bytes,
	       (unsigned long long)d->journal_bytes, d->clients);
}
