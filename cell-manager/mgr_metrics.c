/*
 * The manager's /metrics (cell/metrics.h), served on metrics_listen when
 * it is set: nodes by state and each node's state and incarnation, cells,
 * VMs by state and each VM's runs, and the node caches as the agents last
 * reported them.
 *
 * Event-loop thread.
 */
#include <stddef.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "cell/metrics.h"
#include "mgr_int.h"

#define MOD "manager"

static const enum mgr_node_state node_states[] = {
	MGR_NODE_UP, MGR_NODE_SUSPECT, MGR_NODE_DOWN, MGR_NODE_UNKNOWN};

/* One sample per node of a uint64_t field of struct mgr_node. */
static const struct {
	const char *name, *help;
	enum cell_metric_type type;
	size_t off;
} node_fields[] = {
	{"cellmon_node_incarnation", "the node's current incarnation",
	 CELL_METRIC_GAUGE, offsetof(struct mgr_node, incarnation)},
	{"cellmon_node_cache_hits_total",
	 "the node's disk cache hits, as last reported", CELL_METRIC_COUNTER,
	 offsetof(struct mgr_node, cache.hits)},
	{"cellmon_node_cache_misses_total",
	 "the node's disk cache misses, as last reported", CELL_METRIC_COUNTER,
	 offsetof(struct mgr_node, cache.misses)},
};

static void nodes(struct cell_metrics *m, struct mgr *g)
{
	size_t n = mgr_members_count(g->members);

	cell_metrics_family(m, "cellmon_nodes", CELL_METRIC_GAUGE,
			    "nodes the manager knows, by state");
	for (size_t s = 0; s < 4; s++) {
		uint64_t k = 0;

		for (size_t i = 0; i < n; i++)
			k += mgr_members_at(g->members, i)->state ==
			     node_states[s];
		cell_metrics_int(m, "cellmon_nodes",
				 CELL_LABELS("state", mgr_node_state_name(
							      node_states[s])),
				 k);
	}
	cell_metrics_family(m, "cellmon_node_up", CELL_METRIC_GAUGE,
			    "1 while the node is up, 0 when suspect or down");
	for (size_t i = 0; i < n; i++) {
		struct mgr_node *x = mgr_members_at(g->members, i);

		cell_metrics_int(m, "cellmon_node_up",
				 CELL_LABELS("node", x->id, "cell", x->cell),
				 x->state == MGR_NODE_UP);
	}
	for (size_t f = 0; f < sizeof(node_fields) / sizeof(node_fields[0]);
	     f++) {
		cell_metrics_family(m, node_fields[f].name, node_fields[f].type,
				    node_fields[f].help);
		for (size_t i = 0; i < n; i++) {
			struct mgr_node *x = mgr_members_at(g->members, i);

			cell_metrics_int(
				m, node_fields[f].name,
				CELL_LABELS("node", x->id),
				*(const uint64_t *)((const char *)x +
						    node_fields[f].off));
		}
	}
}

static void vms(struct cell_metrics *m, struct mgr *g)
{
	static const Cellmon__VmState states[] = {
		CELLMON__VM_STATE__VM_PENDING, CELLMON__VM_STATE__VM_STARTING,
		CELLMON__VM_STATE__VM_RUNNING, CELLMON__VM_STATE__VM_STOPPING,
		CELLMON__VM_STATE__VM_STOPPED, CELLMON__VM_STATE__VM_FAILED,
	};

	cell_metrics_family(m, "cellmon_vms", CELL_METRIC_GAUGE,
			    "VMs by state");
	for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
		uint64_t k = 0;

		for (size_t i = 0; i < g->nvms; i++)
			k += g->vms[i]->state == states[s];
		cell_metrics_int(
			m, "cellmon_vms",
			CELL_LABELS("state", mgr_vm_state_name(states[s])), k);
	}
	cell_metrics_family(m, "cellmon_vm_runs_total", CELL_METRIC_COUNTER,
			    "times the VM was started (restarts included)");
	for (size_t i = 0; i < g->nvms; i++)
		cell_metrics_int(m, "cellmon_vm_runs_total",
				 CELL_LABELS("vm", g->vms[i]->name, "cell",
					     g->vms[i]->spec->cell),
				 g->vms[i]->runs);
}

static void fill(struct cell_metrics *m, void *arg)
{
	struct mgr *g = arg;

	cell_metrics_family(m, "cellmon_manager_info", CELL_METRIC_GAUGE,
			    "1, labelled with the manager's version");
	cell_metrics_int(m, "cellmon_manager_info",
			 CELL_LABELS("version", CELLMON_VERSION), 1);
	cell_metrics_family(m, "cellmon_manager_uptime_seconds",
			    CELL_METRIC_GAUGE,
			    "seconds since the manager started");
	cell_metrics_real(m, "cellmon_manager_uptime_seconds", NULL,
			  (double)(cell_now_ms() - g->start_ms) / 1000);
	cell_metrics_family(m, "cellmon_cells", CELL_METRIC_GAUGE,
			    "cells the manager keeps");
	cell_metrics_int(m, "cellmon_cells", NULL, g->ncells);
	cell_metrics_family(m, "cellmon_lease_grants_total",
			    CELL_METRIC_COUNTER,
			    "leases given to agents (registrations and "
			    "heartbeats)");
	cell_metrics_int(m, "cellmon_lease_grants_total", NULL,
			 g->lease_grants);
	cell_metrics_family(m, "cellmon_events_total", CELL_METRIC_COUNTER,
			    "events of the event log since the manager "
			    "started, by kind (node-fenced: fences, "
			    "vm-refused: placement refusals, ...)");
	for (size_t k = 0; k < MGR_EVENT_KINDS; k++)
		cell_metrics_int(m, "cellmon_events_total",
				 CELL_LABELS("kind", mgr_event_kinds[k]),
				 g->events_by_kind[k]);
	cell_metrics_family(m, "cellmon_placement_refusals_total",
			    CELL_METRIC_COUNTER,
			    "placements refused (starts, restarts, dry runs), "
			    "once for each filter that turned a node away");
	for (int f = 0; f < MGR_PLACE_FILTERS; f++)
		cell_metrics_int(
			m, "cellmon_placement_refusals_total",
			CELL_LABELS("filter", mgr_place_filter_names[f]),
			g->place_refusals[f]);
	cell_metrics_rpc_errors(m, NULL);
	nodes(m, g);
	vms(m, g);
}

int mgr_metrics_start(struct mgr *g)
{
	return cell_metrics_start(g->base, g->cfg.metrics_listen, fill, g, MOD,
				  &g->metrics, g->metrics_addr,
				  sizeof(g->metrics_addr));
}

void mgr_metrics_stop(struct mgr *g)
{
	cell_metrics_server_free(g->metrics);
	g->metrics = NULL;
}
