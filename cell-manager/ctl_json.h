/*
 * The JSON form of the manager's replies (ctl_json.c), shared by cellctl
 * (-o json) and the manager's web API (mgr_web.c). Each function returns
 * a new reference, or NULL when out of memory.
 */
#ifndef CTL_JSON_H
#define CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cellproto/cellproto.h"

const char *ctl_node_state_name(Cellmon__NodeState s);
const char *ctl_vm_state_name(Cellmon__VmState s);
const char *ctl_vcpu_state_name(Cellmon__VcpuState s);
/* A page policy's name; DEFAULT (a reply from before there was one, or
 * a cell stored before cells had one) reads as all. */
const char *ctl_page_policy_name(int page_policy);
/* wall_ms as 2026-12-03T14:05:37Z, "-" for 0. */
void ctl_iso_time(uint64_t wall_ms, char *out, size_t len);

json_t *ctl_json_status(const Cellmon__StatusReply *s);
json_t *ctl_json_node(const Cellmon__NodeInfo *n);
json_t *ctl_json_nodes(const Cellmon__NodeListReply *r); /* {"nodes": [...]} */
json_t *ctl_json_cell(const Cellmon__CellInfo *c);
json_t *ctl_json_cells(const Cellmon__CellListReply *r); /* {"cells": [...]} */
json_t *ctl_json_vm(const Cellmon__VmInfo *v);
json_t *ctl_json_vms(const Cellmon__VmListReply *r); /* {"vms": [...]} */
json_t *ctl_json_vm_pages(const Cellmon__VmPagesReply *r);
json_t *ctl_json_event(const Cellmon__Event *e);
json_t *ctl_json_events(const Cellmon__EventsReply *r);

/* A cell's health: what is wrong, one line each. */
struct ctl_problems {
	char **line;
	size_t n, cap;
	bool no_disk_server; /* none configured: not a problem */
};
void ctl_problem(struct ctl_problems *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Nodes not up (and no node at all); failed VMs. */
void ctl_node_problems(struct ctl_problems *p, const Cellmon__NodeListReply *r);
void ctl_vm_problems(struct ctl_problems *p, const Cellmon__VmListReply *r);
void ctl_problems_free(struct ctl_problems *p);
/* The status with "healthy", "problems" and "disk_server_configured". */
json_t *ctl_json_health(const Cellmon__StatusReply *s,
			const struct ctl_problems *p);

#endif
