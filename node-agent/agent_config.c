/*
 * cellmon-agent's configuration: the table of every key (defaults,
 * bounds, help; cell/config.h), and the DSM node configuration it gives.
 * A library of its own so that dsm-bench measures its headline figures
 * with the agent's defaults read from this same table.
 */
#include <stddef.h>
#include <string.h>

#include "cell/config.h"
#include "cell/metrics.h"
#include "cell/log.h"
#include "agent.h"

#define CFG(field) offsetof(struct agent_config, field)
#define STR(field) CFG(field), sizeof(((struct agent_config *)0)->field)

static const char *const qemu_accels[] = {"auto", "kvm", "tcg", NULL};
static const char *const dsm_waits[] = {"adaptive", "fixed", NULL};

const struct cell_config_key agent_config_table[] = {
	{"node_id", CELL_CFG_STRING, STR(node_id), 0, 0, "",
	 "this node's id, " CELL_NAME_RULE "; empty: the host name"},
	{"manager", CELL_CFG_STRING, STR(manager), 0, 0, "127.0.0.1:7400",
	 "the manager's agent address host:port"},
	{"addr", CELL_CFG_STRING, STR(addr), 0, 0, "",
	 "address peers reach this node at; empty: the local address used "
	 "to reach the manager"},
	{"state_dir", CELL_CFG_STRING, STR(state_dir), 0, 0,
	 "/var/lib/cellmon/agent", "directory for agent.state"},
	{"cpus", CELL_CFG_INT, CFG(cpus), 0, 0, 4096, "0",
	 "CPUs offered to the cell; 0: the host's online CPUs"},
	{"memory", CELL_CFG_SIZE, CFG(memory), 0, 0, (int64_t)1 << 50, "0",
	 "memory offered to the cell; 0: the host's MemTotal"},
	{"heartbeat", CELL_CFG_DURATION, CFG(heartbeat_ms), 0, 10, 60000,
	 "250ms", "heartbeat period"},
	{"reconnect_min", CELL_CFG_DURATION, CFG(reconnect_min_ms), 0, 10,
	 60000, "100ms", "first retry delay after losing the manager"},
	{"reconnect_max", CELL_CFG_DURATION, CFG(reconnect_max_ms), 0, 10, 1000,
	 "250ms",
	 "longest retry delay (the delay doubles up to it); at most 1s, well "
	 "under the lease, so a manager that comes back is found at once"},
	{"max_frame", CELL_CFG_SIZE, CFG(max_frame), 0, 4096, 64 << 20, "1M",
	 "largest frame payload accepted"},
	{"dsm_listen", CELL_CFG_STRING, STR(dsm_listen), 0, 0, "0.0.0.0:0",
	 "host:port for DSM page traffic from peers (port 0: any)"},
	{"dsm_window", CELL_CFG_DURATION, CFG(dsm_window_ms), 0, 0, 1000, "0",
	 "DSM time window a node keeps a page before surrendering it"},
	{"dsm_prefetch", CELL_CFG_INT, CFG(dsm_prefetch), 0, 1, 64, "64",
	 "most pages fetched per DSM read miss (1: no prefetch)"},
	{"dsm_wait", CELL_CFG_ENUM, STR(dsm_wait), 0, 0, "adaptive",
	 "how the DSM thread waits for a reply and for more work: adaptive "
	 "(spins or sleeps, whichever this host answers sooner, measured as "
	 "it runs and checked again from time to time) or fixed (spins "
	 "dsm_wait_spin_us and dsm_poll_us, then sleeps)",
	 dsm_waits},
	{"dsm_spin_max", CELL_CFG_INT, CFG(dsm_spin_max_us), 0, 1, 10000, "200",
	 "adaptive waiting: the longest the DSM thread spins in one wait, "
	 "in microseconds"},
	{"dsm_poll_us", CELL_CFG_INT, CFG(dsm_poll_us), 0, 0, 10000, "0",
	 "fixed waiting: microseconds the DSM thread busy-polls for more "
	 "work after serving a peer (0: sleeps at once; polling costs a "
	 "core)"},
	{"dsm_wait_spin_us", CELL_CFG_INT, CFG(dsm_wait_spin_us), 0, 0, 10000,
	 "0",
	 "fixed waiting: microseconds the DSM thread busy-polls for a reply "
	 "to its own request before sleeping (0: sleeps at once; on some "
	 "hosts spinning slows the peers' TLB shootdowns)"},
	{"dsm_timeout", CELL_CFG_DURATION, CFG(dsm_timeout_ms), 0, 0, 600000,
	 "5s",
	 "a DSM page request unanswered this long ends the VM's vCPUs here "
	 "(they are restarted elsewhere); 0: wait for ever"},
	{"image_dir", CELL_CFG_STRING, STR(image_dir), 0, 0,
	 "/usr/lib/cellmon/guests",
	 "directory of guest images: a native VM's image is a program in it, "
	 "a qemu VM's a directory with vmlinuz and initrd.img"},
	{"qemu_binary", CELL_CFG_STRING, STR(qemu_binary), 0, 0,
	 "qemu-system-x86_64",
	 "QEMU for qemu-engine VMs: a path, or a name looked up in PATH"},
	{"qemu_accel", CELL_CFG_ENUM, STR(qemu_accel), 0, 0, "auto",
	 "QEMU accelerator: kvm, tcg, or auto (kvm with hardware "
	 "virtualization, else multi-threaded tcg)",
	 qemu_accels},
	{"qemu_preload", CELL_CFG_STRING, STR(qemu_preload), 0, 0, "",
	 "the library preloaded into QEMU to hand its guest RAM to the DSM; "
	 "empty: libcellmon-qemu-preload.so beside the agent's binary, else "
	 "in /usr/lib/cellmon"},
	{"stop_grace", CELL_CFG_DURATION, CFG(stop_grace_ms), 0, 0, 600000,
	 "2s",
	 "time a stopping vCPU gets (after SIGTERM, or a qemu VM after its "
	 "ACPI power-down) before SIGKILL"},
	{"console_max", CELL_CFG_SIZE, CFG(console_max), 0, 1024, 16 << 20,
	 "64K", "console bytes per vCPU returned by cellctl vm console"},
	{"cache_size", CELL_CFG_SIZE, CFG(cache_size), 0, 0, (int64_t)1 << 40,
	 "64M",
	 "node-wide cache of disk blocks from base images and frozen "
	 "disks (0: off)"},
	{"guest_confine", CELL_CFG_BOOL, CFG(guest_confine), 0, 0, 0, "true",
	 "native guests run confined: a uid of their VM's own, mount "
	 "(only the libraries, the image and the VM directory), network "
	 "(none), IPC and UTS namespaces, rlimits and a seccomp filter; "
	 "needs root. false: as the agent's user, with its view of the host"},
	{"guest_uid_base", CELL_CFG_INT, CFG(guest_uid_base), 0, 1000,
	 4294901759ll, "1879048192",
	 "the first of the 65536 uids guest_confine gives VMs (VM id mod "
	 "65536 added): owned by nobody on the host"},
	CELL_METRICS_LISTEN_KEY(STR(metrics_listen)),
	CELL_TLS_CONFIG_KEYS(CFG(tls)),
	{"log_level", CELL_CFG_ENUM, STR(log_level), 0, 0, "info",
	 "log threshold", cell_config_log_levels},
	{NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

void agent_dsm_config(const struct agent_config *cfg, struct dsm_node_config *c)
{
	memset(c, 0, sizeof(*c));
	c->listen = cfg->dsm_listen;
	c->window_ms = (uint32_t)cfg->dsm_window_ms;
	c->prefetch_max = (uint32_t)cfg->dsm_prefetch;
	c->wait = strcmp(cfg->dsm_wait, "fixed") == 0 ? DSM_WAIT_FIXED
						      : DSM_WAIT_ADAPTIVE;
	c->spin_max_us = (uint32_t)cfg->dsm_spin_max_us;
	c->poll_us = (uint32_t)cfg->dsm_poll_us;
	c->wait_spin_us = (uint32_t)cfg->dsm_wait_spin_us;
	c->request_timeout_ms = (uint32_t)cfg->dsm_timeout_ms;
}
