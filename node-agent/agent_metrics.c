/*
 * The agent's /metrics (cell/metrics.h), served on metrics_listen when it
 * is set: the node's membership state, per VM on this node its DSM
 * counters (the ones `cellctl vm stats` shows, from dsm_region_stats),
 * the DSM node's message counters and waiting, and the node's disk block
 * cache. Every series carries the node's id.
 *
 * Event-loop thread: the fill runs there, and that thread alone changes
 * the VM list (agent_vm.c), so it walks the list without vm_mu; the DSM
 * counters come from the node thread through its command queue.
 */
#include <stdlib.h>
#include <string.h>

#include "cell/log.h"
#include "cell/metrics.h"
#include "agent.h"
#include "agent_disk.h"

#define MOD "agent"

/* One family of one sample per VM: counter or gauge. */
struct vm_family {
	const char *name, *help;
	enum cell_metric_type type;
	size_t off; /* in struct dsm_region_stats */
};

#define VMF(n, t, f, h)                                       \
	{                                                     \
		n, h, t, offsetof(struct dsm_region_stats, f) \
	}

static const struct vm_family vm_families[] = {
	VMF("cellmon_dsm_read_faults_total", CELL_METRIC_COUNTER, read_faults,
	    "read faults of the VM's vCPUs on this node that needed the DSM"),
	VMF("cellmon_dsm_write_faults_total", CELL_METRIC_COUNTER, write_faults,
	    "write faults of the VM's vCPUs on this node that needed the DSM"),
	VMF("cellmon_dsm_local_faults_total", CELL_METRIC_COUNTER, local_faults,
	    "faults this node resolved as the page's home"),
	VMF("cellmon_dsm_remote_faults_total", CELL_METRIC_COUNTER,
	    remote_faults, "faults that went to another node"),
	VMF("cellmon_dsm_invalidations_total", CELL_METRIC_COUNTER,
	    invalidations, "copies of the VM's pages this node gave up"),
	VMF("cellmon_dsm_pages_received_total", CELL_METRIC_COUNTER, transfers,
	    "pages of the VM's data this node received"),
	VMF("cellmon_dsm_deferrals_total", CELL_METRIC_COUNTER, deferrals,
	    "requests this node held back for the time window"),
	VMF("cellmon_dsm_readaheads_total", CELL_METRIC_COUNTER, readaheads,
	    "read-ahead requests this node sent"),
	VMF("cellmon_dsm_pushes_total", CELL_METRIC_COUNTER, pushes,
	    "read-only copies this node pushed to readers as a home"),
	VMF("cellmon_dsm_pages_homed", CELL_METRIC_GAUGE, pages_homed,
	    "pages of the VM whose home is this node"),
};
#define NVMF (sizeof(vm_families) / sizeof(vm_families[0]))

/* A family of one sample labelled with the node. */
static void one(struct cell_metrics *m, const char *node, const char *name,
		enum cell_metric_type type, const char *help, uint64_t v)
{
	cell_metrics_family(m, name, type, help);
	cell_metrics_int(m, name, CELL_LABELS("node", node), v);
}

static void membership(struct cell_metrics *m, struct agent *a)
{
	const char *node = a->cfg.node_id;

	cell_metrics_family(m, "cellmon_agent_info", CELL_METRIC_GAUGE,
			    "1, labelled with the node and the version");
	cell_metrics_int(m, "cellmon_agent_info",
			 CELL_LABELS("node", node, "version", CELLMON_VERSION),
			 1);
	one(m, node, "cellmon_agent_lease_held", CELL_METRIC_GAUGE,
	    "1 while the node holds a lease from the manager", a->has_lease);
	one(m, node, "cellmon_agent_fenced", CELL_METRIC_GAUGE,
	    "1 while the node is fenced (its lease ran out)", a->fenced);
	one(m, node, "cellmon_agent_incarnation", CELL_METRIC_GAUGE,
	    "the node's incarnation (0: not registered)", a->incarnation);
}

#define MAX_VMS 256 /* listed per scrape; more are left out */

static void vms(struct cell_metrics *m, struct agent *a)
{
	static struct dsm_region_stats st[MAX_VMS];
	static const char *name[MAX_VMS];
	double bounds[DSM_FAULT_BUCKETS];
	size_t n = 0;

	for (struct agent_vm *vm = a->vms; vm && n < MAX_VMS; vm = vm->next)
		if (vm->region && dsm_region_stats(vm->region, &st[n]) == 0)
			name[n++] = vm->name;
	for (size_t f = 0; f < NVMF; f++) {
		cell_metrics_family(m, vm_families[f].name, vm_families[f].type,
				    vm_families[f].help);
		for (size_t i = 0; i < n; i++)
			cell_metrics_int(
				m, vm_families[f].name,
				CELL_LABELS("node", a->cfg.node_id, "vm",
					    name[i]),
				*(const uint64_t *)((const char *)&st[i] +
						    vm_families[f].off));
	}
	cell_metrics_family(m, "cellmon_dsm_received_bytes_total",
			    CELL_METRIC_COUNTER,
			    "bytes of the VM's pages this node received");
	for (size_t i = 0; i < n; i++)
		cell_metrics_int(
			m, "cellmon_dsm_received_bytes_total",
			CELL_LABELS("node", a->cfg.node_id, "vm", name[i]),
			st[i].transfers * DSM_PAGE);
	cell_metrics_family(m, "cellmon_dsm_fault_duration_seconds",
			    CELL_METRIC_HISTOGRAM,
			    "how long the VM's faults on this node that needed "
			    "the protocol waited for their grant");
	for (int b = 0; b < DSM_FAULT_BUCKETS; b++)
		bounds[b] = dsm_fault_bucket_us[b] / 1e6;
	for (size_t i = 0; i < n; i++)
		cell_metrics_histogram(
			m, "cellmon_dsm_fault_duration_seconds",
			CELL_LABELS("node", a->cfg.node_id, "vm", name[i]),
			bounds, st[i].fault_hist, DSM_FAULT_BUCKETS,
			(double)st[i].fault_us_sum / 1e6);
}

static void dsm_node(struct cell_metrics *m, struct agent *a)
{
	const char *node = a->cfg.node_id;
	struct dsm_node_stats st;

	if (!a->dsm)
		return;
	dsm_node_stats(a->dsm, &st);
	one(m, node, "cellmon_dsm_messages_sent_total", CELL_METRIC_COUNTER,
	    "DSM messages this node sent to peers", st.msgs_sent);
	one(m, node, "cellmon_dsm_messages_received_total", CELL_METRIC_COUNTER,
	    "DSM messages this node received from peers", st.msgs_recv);
	one(m, node, "cellmon_dsm_messages_refused_total", CELL_METRIC_COUNTER,
	    "DSM messages refused: malformed, from an unknown "
	    "peer or below its fence",
	    st.refused);
	one(m, node, "cellmon_dsm_connections_refused_total",
	    CELL_METRIC_COUNTER,
	    "DSM peer connections refused: no valid hello, a failed TLS "
	    "handshake, a certificate that is not the peer's",
	    st.peers_refused);
	one(m, node, "cellmon_dsm_node_pages_sent_total", CELL_METRIC_COUNTER,
	    "pages of data this node sent, every VM", st.pages_sent);
	one(m, node, "cellmon_dsm_uffd_faults_total", CELL_METRIC_COUNTER,
	    "userfaultfd faults the node thread handled", st.faults);
	if (!st.reply_wait_mode)
		return; /* fixed waiting: nothing learned */
	cell_metrics_family(m, "cellmon_dsm_wait_spinning", CELL_METRIC_GAUGE,
			    "1 while adaptive waiting spins for this kind of "
			    "wait, 0 while it sleeps");
	cell_metrics_int(m, "cellmon_dsm_wait_spinning",
			 CELL_LABELS("node", node, "wait", "reply"),
			 st.reply_wait_mode == 1);
	cell_metrics_int(m, "cellmon_dsm_wait_spinning",
			 CELL_LABELS("node", node, "wait", "work"),
			 st.work_wait_mode == 1);
	cell_metrics_family(m, "cellmon_dsm_wait_spin_bound_seconds",
			    CELL_METRIC_GAUGE,
			    "how long adaptive waiting spins before it sleeps");
	cell_metrics_real(m, "cellmon_dsm_wait_spin_bound_seconds",
			  CELL_LABELS("node", node, "wait", "reply"),
			  st.reply_spin_us / 1e6);
	cell_metrics_real(m, "cellmon_dsm_wait_spin_bound_seconds",
			  CELL_LABELS("node", node, "wait", "work"),
			  st.work_spin_us / 1e6);
	one(m, node, "cellmon_dsm_wait_switches_total", CELL_METRIC_COUNTER,
	    "changes between spinning and sleeping", st.wait_switches);
}

static void cache(struct cell_metrics *m, struct agent *a)
{
	const char *node = a->cfg.node_id;
	struct agent_cache_stats st;

	if (!a->cache)
		return;
	agent_cache_stats(a->cache, &st);
	one(m, node, "cellmon_cache_hits_total", CELL_METRIC_COUNTER,
	    "disk block reads the node cache answered", st.hits);
	one(m, node, "cellmon_cache_misses_total", CELL_METRIC_COUNTER,
	    "disk block reads that went to the disk server", st.misses);
	one(m, node, "cellmon_cache_evictions_total", CELL_METRIC_COUNTER,
	    "blocks the node cache evicted", st.evictions);
	one(m, node, "cellmon_cache_bytes", CELL_METRIC_GAUGE,
	    "bytes of disk blocks in the node cache", st.entries * AGENT_BLOCK);
	one(m, node, "cellmon_cache_capacity_bytes", CELL_METRIC_GAUGE,
	    "the node cache's size", st.capacity * AGENT_BLOCK);
}

static void fill(struct cell_metrics *m, void *arg)
{
	struct agent *a = arg;

	membership(m, a);
	vms(m, a);
	dsm_node(m, a);
	cache(m, a);
	cell_metrics_rpc_errors(m, CELL_LABELS("node", a->cfg.node_id));
}

int agent_metrics_start(struct agent *a)
{
	char addr[160];
	int rc = cell_metrics_start(a->base, a->cfg.metrics_listen, fill, a,
				    MOD, &a->metrics, addr, sizeof(addr));
	const char *colon = strrchr(addr, ':');

	if (!rc && a->metrics)
		a->metrics_port = colon ? atoi(colon + 1) : 0;
	return rc;
}

void agent_metrics_stop(struct agent *a)
{
	cell_metrics_server_free(a->metrics);
	a->metrics = NULL;
}
