/*
 * cellmon-manager: start-up, configuration and the event loop.
 *
 * main() parses the config (defaults < --config file < --key=value flags),
 * locks and opens the state directory, restores nodes and cells from
 * SQLite, binds the agent and cellctl listeners, writes the bound addresses
 * to <state_dir>/manager.addr (so tests and scripts can ask for port 0),
 * and runs the libevent loop until SIGINT or SIGTERM. A timer applies the
 * membership timeouts every tick_ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cell/clock.h"
#include "cell/config.h"
#include "cell/metrics.h"
#include "cell/log.h"
#include "cellproto/cellproto.h"
#include "mgr_int.h"

#define MOD	   "mgr"
#define CFG(field) offsetof(struct mgr_config, field)
#define STR(field) CFG(field), sizeof(((struct mgr_config *)0)->field)

static const struct cell_config_key mgr_config_table[] = {
	{"agent_listen", CELL_CFG_STRING, STR(agent_listen), 0, 0,
	 "127.0.0.1:7400", "address:port agents connect to (port 0: any)"},
	{"ctl_listen", CELL_CFG_STRING, STR(ctl_listen), 0, 0, "127.0.0.1:7401",
	 "address:port cellctl connects to (port 0: any)"},
	{"state_dir", CELL_CFG_STRING, STR(state_dir), 0, 0,
	 "/var/lib/cellmon/manager",
	 "directory for manager.db, manager.addr and the lock"},
	{"suspect_after", CELL_CFG_DURATION, CFG(suspect_after_ms), 0, 50,
	 600000, "1s", "silence after which a node is suspect"},
	{"down_after", CELL_CFG_DURATION, CFG(down_after_ms), 0, 100, 3600000,
	 "3s", "silence after which a node is declared down"},
	{"lease", CELL_CFG_DURATION, CFG(lease_ms), 0, 50, 3600000, "2s",
	 "lease granted to agents; must be shorter than down_after"},
	{"peer_lease", CELL_CFG_DURATION, CFG(peer_lease_ms), 0, 50, 3600000,
	 "1s",
	 "how long a peer's vote keeps an agent that does not hear the "
	 "manager running; a node is declared down at least this long "
	 "after a quorum refused it"},
	{"tick", CELL_CFG_DURATION, CFG(tick_ms), 0, 5, 1000, "100ms",
	 "how often membership timeouts are checked"},
	{"command_timeout", CELL_CFG_DURATION, CFG(command_timeout_ms), 0, 10,
	 600000, "2s", "timeout of a command sent to an agent"},
	{"max_frame", CELL_CFG_SIZE, CFG(max_frame), 0, 4096, 64 << 20, "1M",
	 "largest frame payload accepted"},
	{"vdiskd", CELL_CFG_STRING, STR(vdiskd), 0, 0, "",
	 "admin address host:port of cellmon-vdiskd, the disk server; "
	 "empty: no disks"},
	CELL_METRICS_LISTEN_KEY(STR(metrics_listen)),
	CELL_TLS_CONFIG_KEYS(CFG(tls)),
	{"web_listen", CELL_CFG_STRING, STR(web_listen), 0, 0, "",
	 "host:port of the web view (the cell, its VMs and their page heat "
	 "maps at /, the same data as JSON under /api/); empty: off. "
	 "Read-only and without authentication: bind it to loopback or a "
	 "management network"},
	{"events_keep", CELL_CFG_INT, CFG(events_keep), 0, 0, 100000000,
	 "100000",
	 "events the event log keeps (cellctl events); older ones are "
	 "deleted (0: keep all)"},
	{"log_level", CELL_CFG_ENUM, STR(log_level), 0, 0, "info",
	 "log threshold", cell_config_log_levels},
	{"policy_interval", CELL_CFG_DURATION, CFG(policy_interval_ms), 0, 0,
	 3600000, "1s",
	 "how often the page policy samples each running VM's pages and "
	 "decides (0: never, whatever the VMs' page_policy)"},
	{"policy_min_requests", CELL_CFG_INT, CFG(pp_min_requests), 0, 1,
	 1000000, "8",
	 "requests a page needs in an interval before it is moved or "
	 "copied"},
	{"policy_migrate_pct", CELL_CFG_INT, CFG(pp_migrate_pct), 0, 51, 100,
	 "80",
	 "share of a page's requests (percent) from one node that moves "
	 "its home there"},
	{"policy_read_mostly_pct", CELL_CFG_INT, CFG(pp_read_mostly_pct), 0, 0,
	 50, "40",
	 "most writes (percent of a page's requests, copies pushed counting "
	 "as reads) for a page read by several nodes to be replicated on "
	 "them"},
	{"policy_hold", CELL_CFG_DURATION, CFG(pp_hold_ms), 0, 0, 3600000,
	 "10s", "how long a moved page stays where it went"},
	{"policy_ops_per_s", CELL_CFG_INT, CFG(pp_ops_per_s), 0, 1, 1000000,
	 "1000", "most home moves and pushes per VM and second"},
	{NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static int validate(const struct mgr_config *c, char *err, size_t len)
{
	if (c->suspect_after_ms >= c->down_after_ms) {
		snprintf(err, len,
			 "suspect_after (%lldms) must be shorter than "
			 "down_after (%lldms)",
			 (long long)c->suspect_after_ms,
			 (long long)c->down_after_ms);
		return -EINVAL;
	}
	if (c->lease_ms >= c->down_after_ms) {
		snprintf(err, len,
			 "lease (%lldms) must be shorter than "
			 "down_after (%lldms): a node is declared "
			 "down only after its lease expired",
			 (long long)c->lease_ms, (long long)c->down_after_ms);
		return -EINVAL;
	}
	if (c->tick_ms * 2 > c->suspect_after_ms) {
		snprintf(err, len,
			 "tick (%lldms) must be at most half of "
			 "suspect_after",
			 (long long)c->tick_ms);
		return -EINVAL;
	}
	return 0;
}

static void usage(FILE *out)
{
	fputs("usage: cellmon-manager [--config=FILE] [--KEY=VALUE ...]\n"
	      "       cellmon-manager config show|example [--KEY=VALUE ...]\n"
	      "\n"
	      "The cellmon cell manager: tracks nodes (agents register and\n"
	      "heartbeat), detects failures, keeps cells, and serves cellctl.\n"
	      "Logs go to stderr, one line per event.\n"
	      "\n"
	      "Keys (also accepted in the config file as 'key = value'):\n",
	      out);
	cell_config_usage(mgr_config_table, out);
	fputs("\nExit status: 0 after SIGINT/SIGTERM, 1 on a runtime error, 2 "
	      "on a bad\ncommand line or configuration.\n",
	      out);
}

static void on_member_change(struct mgr_node *n, enum mgr_node_state old,
			     void *arg)
{
	struct mgr *m = arg;
	uint64_t quiet = mgr_members_now(m->members) - n->last_seen_ms;

	char kind[32];

	mgr_node_quorum_sync(m, n);
	snprintf(kind, sizeof(kind), "node-%s", mgr_node_state_name(n->state));
	if (n->state == MGR_NODE_UP) {
		CELL_INFO(MOD, "node up id=%s incarnation=%llu was=%s", n->id,
			  (unsigned long long)n->incarnation,
			  mgr_node_state_name(old));
		mgr_event(m, kind, n->id, "up, incarnation %llu (was %s)",
			  (unsigned long long)n->incarnation,
			  mgr_node_state_name(old));
	} else {
		CELL_WARN(MOD, "node %s id=%s incarnation=%llu silent_ms=%llu",
			  mgr_node_state_name(n->state), n->id,
			  (unsigned long long)n->incarnation,
			  (unsigned long long)quiet);
		mgr_event(m, kind, n->id,
			  "%s, incarnation %llu, silent for %llu ms (was %s)",
			  mgr_node_state_name(n->state),
			  (unsigned long long)n->incarnation,
			  (unsigned long long)quiet, mgr_node_state_name(old));
	}
	if (n->state == MGR_NODE_DOWN) {
		/* Its incarnation is over: drop the connection too. */
		if (n->conn)
			cell_rpc_conn_close(n->conn);
		n->conn = NULL;
		n->dsm_addr[0] = '\0';
		mgr_event(
			m, "node-fenced", n->id,
			"incarnation %llu is over: the other nodes refuse its "
			"DSM messages",
			(unsigned long long)n->incarnation);
		mgr_vm_node_lost(m, n, "is down");
	}
	/* Registration persists the node itself; a declared death must
	 * survive a manager restart too. */
	if (n->state == MGR_NODE_DOWN)
		mgr_node_persist(m, n);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mgr *m = arg;

	(void)fd;
	(void)what;
	mgr_members_tick(m->members);
	mgr_vm_tick(m);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct mgr *m = arg;

	(void)what;
	CELL_INFO(MOD, "stopping on signal %d", (int)sig);
	event_base_loopexit(m->base, NULL);
}

static int restore_node(const struct mgr_node *n, void *arg)
{
	struct mgr *m = arg;
	int rc = mgr_members_restore(m->members, n);
	struct mgr_node *r = rc ? NULL : mgr_members_find(m->members, n->id);

	if (rc)
		CELL_WARN(MOD, "skipping stored node id=%s: %s", n->id,
			  strerror(-rc));
	if (r)
		mgr_node_quorum_sync(m, r);
	return 0;
}

static int restore_cell(const char *name, uint64_t created_ms, int page_policy,
			void *arg)
{
	if (page_policy &&
	    !cellproto_known(&cellproto_page_policies, page_policy)) {
		CELL_WARN(MOD,
			  "cell %s: stored page policy %d unknown; using all",
			  name, page_policy);
		page_policy = 0;
	}
	return mgr_cell_add(arg, name, created_ms,
			    (Cellmon__PagePolicy)page_policy);
}

static int open_state(struct mgr *m)
{
	char path[1200], err[600];
	uint64_t next_inc, epoch;
	int fd, rc;

	rc = cell_mkdir_p(m->cfg.state_dir);
	if (rc) {
		CELL_ERROR(MOD, "cannot create state_dir %s: %s",
			   m->cfg.state_dir, strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/manager.lock", m->cfg.state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB)) {
		CELL_ERROR(MOD,
			   "state_dir %s is in use by another manager "
			   "(lock %s: %s)",
			   m->cfg.state_dir, path, strerror(errno));
		return -EBUSY;
	}
	/* The lock fd stays open for the life of the process. */
	snprintf(path, sizeof(path), "%s/manager.db", m->cfg.state_dir);
	rc = mgr_store_open(path, &m->store, err, sizeof(err));
	if (rc) {
		CELL_ERROR(MOD, "cannot open state: %s", err);
		return rc;
	}
	rc = mgr_store_counters_load(m->store, &next_inc, &epoch);
	if (rc)
		return rc;
	mgr_members_set_counters(m->members, next_inc, epoch);
	rc = mgr_store_nodes_load(m->store, restore_node, m);
	if (!rc)
		rc = mgr_store_cells_load(m->store, restore_cell, m);
	if (!rc)
		rc = mgr_vm_restore(m);
	if (!rc)
		rc = mgr_store_events_last(m->store, &m->last_event_id);
	if (rc)
		return rc;
	mgr_event(m, "manager-start", "",
		  "state restored: %zu nodes, %zu cells, %zu VMs",
		  mgr_members_count(m->members), m->ncells, m->nvms);
	CELL_INFO(MOD,
		  "state restored dir=%s nodes=%zu cells=%zu vms=%zu "
		  "epoch=%llu",
		  m->cfg.state_dir, mgr_members_count(m->members), m->ncells,
		  m->nvms, (unsigned long long)epoch);
	return 0;
}

/* Rebuilds "host:port" from the configured host and the bound port. */
static int start_listeners(struct mgr *m)
{
	char path[1200], text[1100];
	int rc;

	rc = cell_rpc_listen(m->base, m->cfg.agent_listen, &m->agent_rpc,
			     mgr_agent_accept, m, &m->agent_l);
	if (rc) {
		CELL_ERROR(MOD, "cannot listen for agents on %s: %s",
			   m->cfg.agent_listen, strerror(-rc));
		return rc;
	}
	rc = cell_rpc_listen(m->base, m->cfg.ctl_listen, &m->ctl_rpc,
			     mgr_ctl_accept, m, &m->ctl_l);
	if (rc) {
		CELL_ERROR(MOD, "cannot listen for cellctl on %s: %s",
			   m->cfg.ctl_listen, strerror(-rc));
		return rc;
	}
	cell_hostport_bound(m->cfg.agent_listen,
			    cell_rpc_listener_port(m->agent_l), m->agent_addr,
			    sizeof(m->agent_addr));
	cell_hostport_bound(m->cfg.ctl_listen, cell_rpc_listener_port(m->ctl_l),
			    m->ctl_addr, sizeof(m->ctl_addr));
	rc = mgr_metrics_start(m);
	if (rc)
		return rc;
	rc = mgr_web_start(m);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/manager.addr", m->cfg.state_dir);
	snprintf(text, sizeof(text), "agent=%s\nctl=%s\n%s%s%s%s%s%s",
		 m->agent_addr, m->ctl_addr, m->metrics ? "metrics=" : "",
		 m->metrics_addr, m->metrics ? "\n" : "", m->web ? "web=" : "",
		 m->web_addr, m->web ? "\n" : "");
	rc = cell_write_file_atomic(path, text, strlen(text));
	if (rc) {
		CELL_ERROR(MOD, "cannot write %s: %s", path, strerror(-rc));
		return rc;
	}
	CELL_INFO(MOD, "listening agents=%s ctl=%s pid=%d version=%s",
		  m->agent_addr, m->ctl_addr, (int)getpid(), CELLMON_VERSION);
	return 0;
}

/* The TLS of each kind of link, from the tls_* keys; plain TCP (a
 * warning) when none is set and insecure allows it. The manager's own
 * certificate must be a manager's. */
static int setup_tls(struct mgr *m)
{
	struct cell_tls_settings *s = &m->cfg.tls;
	enum cell_role role;
	char err[1300], name[64];
	int rc;

	rc = cell_tls_from_settings(s, CELL_ROLE_BIT(CELL_ROLE_NODE),
				    &m->tls_agent, err, sizeof(err));
	if (!rc && m->tls_agent)
		rc = cell_tls_from_settings(
			s,
			CELL_ROLE_BIT(CELL_ROLE_ADMIN) |
				CELL_ROLE_BIT(CELL_ROLE_VIEWER),
			&m->tls_ctl, err, sizeof(err));
	if (!rc && m->tls_agent)
		rc = cell_tls_from_settings(s, CELL_ROLE_BIT(CELL_ROLE_DISK),
					    &m->tls_disk, err, sizeof(err));
	if (!rc && m->tls_agent &&
	    !(rc = cell_tls_settings_identity(s, &role, name, sizeof(name), err,
					      sizeof(err))) &&
	    role != CELL_ROLE_MANAGER) {
		snprintf(err, sizeof(err),
			 "tls_cert %s is a %s certificate ('%s'), not a "
			 "manager's (cellctl ca issue DIR --role=manager "
			 "--name=NAME)",
			 s->cert, cell_role_name(role), name);
		rc = -EINVAL;
	}
	if (rc) {
		CELL_ERROR(MOD, "%s", err);
		return rc;
	}
	if (!m->tls_agent)
		CELL_WARN(MOD,
			  "insecure: plain TCP for agents and cellctl (no "
			  "tls_cert): anyone who reaches %s or %s can "
			  "register a node or change the cell",
			  m->cfg.agent_listen, m->cfg.ctl_listen);
	else
		CELL_INFO(MOD,
			  "TLS 1.3 for agents, cellctl and the disk "
			  "server, as manager '%s'",
			  name);
	return 0;
}

static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mgr *m = arg;
	struct cell_tls *t[3] = {m->tls_agent, m->tls_ctl, m->tls_disk};
	char err[600];

	(void)fd;
	(void)what;
	for (int i = 0; i < 3; i++)
		if (t[i] && cell_tls_reload(t[i], err, sizeof(err))) {
			CELL_ERROR(MOD,
				   "SIGHUP: the TLS files stay as they "
				   "were: %s",
				   err);
			return;
		}
	if (t[0])
		CELL_INFO(MOD, "SIGHUP: TLS certificate, key and CRL re-read "
			       "for new connections");
}

static int run(struct mgr *m)
{
	struct mgr_members_config mc = {
		.suspect_after_ms = (uint64_t)m->cfg.suspect_after_ms,
		.down_after_ms = (uint64_t)m->cfg.down_after_ms,
		.may_declare_down = mgr_node_may_declare_down,
	};
	struct timeval tick = {m->cfg.tick_ms / 1000,
			       (m->cfg.tick_ms % 1000) * 1000};
	struct event *ev_tick, *ev_int, *ev_term, *ev_hup;
	int rc;

	m->start_ms = cell_now_ms();
	m->base = event_base_new();
	if (!m->base)
		return -ENOMEM;
	rc = mgr_members_create(&mc, &cell_clock_monotonic, on_member_change, m,
				&m->members);
	if (rc)
		return rc;
	m->agent_rpc = (struct cell_rpc_config){
		.types = cellproto_types,
		.methods = mgr_agent_methods,
		.arg = m,
		.max_frame = (uint32_t)m->cfg.max_frame,
		.log_module = MOD,
	};
	m->ctl_rpc = m->agent_rpc;
	m->ctl_rpc.methods = mgr_ctl_methods;
	m->disk_rpc = m->ctl_rpc;
	rc = setup_tls(m);
	if (rc)
		return rc;
	m->agent_rpc.tls = m->tls_agent;
	m->ctl_rpc.tls = m->tls_ctl;
	m->disk_rpc.tls = m->tls_disk;
	rc = open_state(m);
	if (!rc)
		rc = start_listeners(m);
	if (rc)
		return rc;
	ev_tick = event_new(m->base, -1, EV_PERSIST, tick_cb, m);
	ev_int = evsignal_new(m->base, SIGINT, signal_cb, m);
	ev_term = evsignal_new(m->base, SIGTERM, signal_cb, m);
	event_add(ev_tick, &tick);
	event_add(ev_int, NULL);
	event_add(ev_term, NULL);
	ev_hup = evsignal_new(m->base, SIGHUP, hup_cb, m);
	event_add(ev_hup, NULL);
	event_base_dispatch(m->base);
	event_free(ev_tick);
	event_free(ev_int);
	event_free(ev_term);
	event_free(ev_hup);
	return 0;
}

static int config_command(int nrest, char **rest, const struct mgr_config *c)
{
	if (nrest == 2 && strcmp(rest[1], "show") == 0) {
		cell_config_show(mgr_config_table, c, stdout);
		return 0;
	}
	if (nrest == 2 && strcmp(rest[1], "example") == 0) {
		cell_config_example(mgr_config_table,
				    "cellmon-manager configuration", stdout);
		return 0;
	}
	fprintf(stderr, "cellmon-manager: usage: config show|example\n");
	return 2;
}

int main(int argc, char **argv)
{
	static struct mgr m;
	char err[600];
	enum cell_log_level lvl;
	int nrest = 0, rc;

	signal(SIGPIPE, SIG_IGN);
	m.send_command = mgr_agent_command;
	if (cell_config_defaults(mgr_config_table, &m.cfg, err, sizeof(err)))
		abort(); /* a bad default is a bug in the table */
	rc = cell_config_parse_args(mgr_config_table, &m.cfg, argc, argv,
				    &nrest, err, sizeof(err));
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc || validate(&m.cfg, err, sizeof(err))) {
		fprintf(stderr, "cellmon-manager: %s\n", err);
		return 2;
	}
	m.cfg.page_policy = (struct mgr_pp_config){
		.min_requests = (uint32_t)m.cfg.pp_min_requests,
		.migrate_pct = (uint32_t)m.cfg.pp_migrate_pct,
		.read_mostly_pct = (uint32_t)m.cfg.pp_read_mostly_pct,
		.hold_ms = (uint32_t)m.cfg.pp_hold_ms,
		.ops_per_s = (uint32_t)m.cfg.pp_ops_per_s,
	};
	if (nrest > 0 && strcmp(argv[1], "config") == 0)
		return config_command(nrest, argv + 1, &m.cfg);
	if (nrest > 0) {
		fprintf(stderr,
			"cellmon-manager: unexpected argument '%s' "
			"(see --help)\n",
			argv[1]);
		return 2;
	}
	cell_log_level_parse(m.cfg.log_level, &lvl);
	cell_log_set_level(lvl);
	rc = run(&m);
	mgr_web_stop(&m);
	mgr_metrics_stop(&m);
	cell_rpc_listener_free(m.agent_l);
	cell_rpc_listener_free(m.ctl_l);
	mgr_vm_free_all(&m);
	mgr_store_close(m.store);
	mgr_members_destroy(m.members);
	cell_tls_free(m.tls_agent);
	cell_tls_free(m.tls_ctl);
	cell_tls_free(m.tls_disk);
	free(m.cells);
	if (m.base)
		event_base_free(m.base);
	if (rc) {
		CELL_ERROR(MOD, "exiting: %s", strerror(-rc));
		return 1;
	}
	CELL_INFO(MOD, "stopped");
	return 0;
}
