/*
 * This node's DSM node in the agent: started once the manager gave the
 * node a DSM id (agent_main.c, after registering), the epoch stamped on
 * its messages (the incarnation, 0 while fenced), the fences the manager
 * hands out (the lowest epoch to accept from each other node, one above a
 * down node's incarnation, which is also dropped as a peer), the peers a
 * VM needs (added at PREPARE), and the hand-off check: only a running
 * vCPU process of the VM that owns a region may map it.
 *
 * Event-loop thread, except handoff_check, which runs on the DSM node's
 * hand-off thread and reads the VM list under vm_mu.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "cell/log.h"
#include "dsm/dsm.h"

#define MOD "agent"

/* The DSM hand-off check: only a vCPU process of the VM that owns a
 * region may map it. Runs on the hand-off thread. */
static int handoff_check(int pid, uint64_t region, void *arg)
{
	struct agent *a = arg;
	int rc = -EACCES;

	pthread_mutex_lock(&a->vm_mu);
	for (struct agent_vm *vm = a->vms; vm && rc; vm = vm->next)
		for (size_t i = 0; vm->region_id == region && i < vm->nvcpus;
		     i++)
			if (vm->vcpus[i].pid == pid &&
			    vm->vcpus[i].state ==
				    CELLMON__VCPU_STATE__VCPU_RUNNING)
				rc = 0;
	pthread_mutex_unlock(&a->vm_mu);
	return rc;
}

int agent_dsm_start(struct agent *a, uint32_t dsm_id)
{
	struct dsm_node_config c;
	char host[128];
	int rc;

	agent_dsm_config(&a->cfg, &c);
	c.id = (uint16_t)dsm_id;
	c.epoch = a->dsm_epoch;
	c.tls = a->tls_dsm;
	if (c.wait == DSM_WAIT_ADAPTIVE && (c.poll_us || c.wait_spin_us))
		CELL_WARN(MOD,
			  "dsm_poll_us and dsm_wait_spin_us are for dsm_wait = "
			  "fixed; with adaptive waiting they are ignored");
	rc = dsm_node_create(&c, &a->dsm);
	if (rc) {
		CELL_ERROR(MOD, "cannot start the DSM node id=%u listen=%s: %s",
			   dsm_id, a->cfg.dsm_listen, strerror(-rc));
		return rc;
	}
	dsm_node_set_handoff_check(a->dsm, handoff_check, a);
	snprintf(a->handoff_path, sizeof(a->handoff_path), "%s/dsm.sock",
		 a->cfg.state_dir);
	rc = dsm_node_serve_handoff(a->dsm, a->handoff_path);
	if (rc) {
		CELL_ERROR(MOD, "cannot serve DSM hand-offs at %s: %s",
			   a->handoff_path, strerror(-rc));
		dsm_node_destroy(a->dsm);
		a->dsm = NULL;
		return rc;
	}
	/* confined guests connect as uids of their own; the hand-off check
	 * admits only a running vCPU of the region's VM, whoever it is */
	if (chmod(a->handoff_path, 0666))
		CELL_WARN(MOD, "cannot open %s to confined guests: %s",
			  a->handoff_path, strerror(errno));
	a->dsm_id = (int)dsm_id;
	a->dsm_epoch_now = a->dsm_epoch;
	/* Peers reach us at the advertised host and the bound port. */
	snprintf(host, sizeof(host), "%s", a->addr);
	snprintf(a->dsm_addr, sizeof(a->dsm_addr), "%s:%d", host,
		 dsm_node_port(a->dsm));
	CELL_INFO(MOD, "DSM node started id=%u epoch=%u addr=%s handoff=%s",
		  dsm_id, a->dsm_epoch, a->dsm_addr, a->handoff_path);
	agent_witness_init(a);
	return 0;
}

void agent_dsm_set_epoch(struct agent *a, uint32_t epoch)
{
	if (!a->dsm || a->dsm_epoch_now == epoch)
		return;
	dsm_node_set_epoch(a->dsm, epoch);
	a->dsm_epoch_now = epoch;
	CELL_INFO(MOD, "DSM epoch now %u%s", epoch,
		  epoch ? "" : " (fenced: peers apply nothing from us)");
}

/* Refuses DSM messages from peer id stamped below epoch. */
static void fence_peer(struct agent *a, uint32_t id, uint32_t epoch,
		       const char *node)
{
	if (id >= DSM_MAX_NODES || (int)id == a->dsm_id ||
	    a->peer_fence[id] == epoch ||
	    dsm_node_fence_peer(a->dsm, (uint16_t)id, epoch))
		return;
	/* Only a change after the first is news: that node's incarnation
	 * ended, or a new one began. */
	if (a->peer_fence[id])
		CELL_INFO(MOD,
			  "DSM peer fenced node=%s id=%u: epochs below %u "
			  "refused",
			  node, id, epoch);
	a->peer_fence[id] = epoch;
}

/* Adds peer id at addr, or re-points it there. 0 or -errno. */
static int peer_ensure(struct agent *a, uint32_t id, const char *addr,
		       const char *node)
{
	int rc;

	if (a->dsm_peers & (1ull << id) && strcmp(a->peer_addr[id], addr) == 0)
		return 0;
	if (a->dsm_peers & (1ull << id))
		dsm_node_remove_peer(a->dsm, (uint16_t)id);
	rc = dsm_node_add_peer(a->dsm, (uint16_t)id, addr, node);
	if (rc)
		return rc;
	a->dsm_peers |= 1ull << id;
	snprintf(a->peer_addr[id], sizeof(a->peer_addr[0]), "%s", addr);
	CELL_INFO(MOD, "DSM peer added node=%s id=%u addr=%s", node, id, addr);
	return 0;
}

void agent_dsm_fence(struct agent *a, Cellmon__DsmFence *const *f, size_t n)
{
	for (size_t i = 0; a->dsm && i < n; i++) {
		uint32_t id = f[i]->dsm_id;

		fence_peer(a, id, f[i]->epoch, f[i]->node);
		/* No more dialing a dead node: it is added again when it
		 * comes back up. */
		if (f[i]->down && id < DSM_MAX_NODES &&
		    a->dsm_peers & (1ull << id)) {
			dsm_node_remove_peer(a->dsm, (uint16_t)id);
			a->dsm_peers &= ~(1ull << id);
			CELL_INFO(MOD, "DSM peer dropped node=%s id=%u: down",
				  f[i]->node, id);
		}
		/* Every node that is up is a peer: it may vouch for us (and
		 * we for it) while the manager is away, agent_witness.c. */
		if (!f[i]->down && id < DSM_MAX_NODES && (int)id != a->dsm_id &&
		    f[i]->dsm_addr[0] &&
		    peer_ensure(a, id, f[i]->dsm_addr, f[i]->node))
			CELL_LOG_RL(CELL_LOG_WARN, MOD,
				    "cannot add DSM peer %s at %s", f[i]->node,
				    f[i]->dsm_addr);
	}
	agent_witness_view(a, f, n);
}

/* Adds (or re-points) the peers a VM needs. */
int agent_dsm_add_peers(struct agent *a, const Cellmon__VmStart *st, char *err,
			size_t len)
{
	for (size_t i = 0; i < st->n_members; i++) {
		const Cellmon__VmMember *m = st->members[i];
		int rc;

		if ((int)m->dsm_id == a->dsm_id)
			continue;
		if (m->dsm_id >= DSM_MAX_NODES || !m->dsm_addr[0]) {
			snprintf(err, len, "member %s has no DSM address",
				 m->node);
			return -EINVAL;
		}
		rc = peer_ensure(a, m->dsm_id, m->dsm_addr, m->node);
		if (rc) {
			snprintf(err, len, "cannot add DSM peer %s at %s: %s",
				 m->node, m->dsm_addr, strerror(-rc));
			return rc;
		}
	}
	return 0;
}
