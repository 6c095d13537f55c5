/*
 * cellmon-agent: the monitor on each host. This file holds its membership
 * side: register with the manager, heartbeat, hold a lease, fence itself
 * when the lease runs out, and reconnect with backoff when the manager is
 * away; and it passes the manager's VM commands to agent_vm.c. Every
 * heartbeat carries the state of each vCPU this node runs.
 *
 * Lease rule: a lease of lease_ms granted in answer to a request counts
 * from the moment the agent *sent* that request, which is no later than
 * when the manager received it; so the agent's lease always ends before
 * the manager could declare the node down (down_after > lease).
 *
 * State, kept in struct agent and mirrored to <state_dir>/agent.state
 * (JSON) on every change:
 *   connecting -> registered (holds a lease) -> fenced (lease expired)
 * and back to registered when a new lease is granted. An "incarnation
 * over" answer makes the agent register again as a new incarnation.
 *
 * The libevent loop thread runs all of this; the agent's other threads
 * (DSM node, hand-off, guest service) are listed in docs/design/threads.md.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cell/clock.h"
#include "cell/config.h"
#include "cell/fault.h"
#include "cell/log.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "agent.h"
#include "agent_confine.h"
#include "agent_disk.h"

#define MOD "agent"

static void start_connect(struct agent *a);
static void send_register(struct agent *a);

static const char *state_name(const struct agent *a)
{
	if (a->stopped)
		return "stopped";
	if (a->fenced)
		return "fenced";
	switch (a->state) {
	case AGENT_CONNECTING:
		return "connecting";
	case AGENT_REGISTERING:
		return "registering";
	default:
		return a->has_lease ? "registered" : "unleased";
	}
}

/* Mirrors the state for operators and tests; failures are only logged. */
static void write_state(struct agent *a)
{
	char path[1100];
	json_t *j;
	char *text;
	int rc;

	j = json_pack("{s:s, s:s, s:I, s:I, s:b, s:s, s:i, s:i, s:I, s:i, s:b, "
		      "s:i, s:i}",
		      "node_id", a->cfg.node_id, "state", state_name(a),
		      "incarnation", (json_int_t)a->incarnation, "epoch",
		      (json_int_t)a->epoch, "has_lease", a->has_lease,
		      "manager", a->cfg.manager, "pid", (int)getpid(), "dsm_id",
		      a->dsm_id, "dsm_epoch", (json_int_t)a->dsm_epoch_now,
		      "view_nodes", (int)a->witness.view, "peer_lease",
		      a->witness.peer_mode, "metrics_port", a->metrics_port,
		      /* the peers it can reach over the DSM (and so ask for
		       * votes): those whose address the manager has given */
		      "dsm_peers", __builtin_popcountll(a->dsm_peers));
	text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!text)
		return;
	snprintf(path, sizeof(path), "%s/agent.state", a->cfg.state_dir);
	rc = cell_write_file_atomic(path, text, strlen(text));
	if (rc)
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "cannot write %s: %s", path,
			    strerror(-rc));
	free(text);
}

static void timer_ms(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

/* The later of the manager's lease and the peer lease: what the node
 * runs on, and what its guests' watchdogs see. */
static uint64_t lease_end(const struct agent *a)
{
	return a->lease_expiry_ms > a->peer_until_ms ? a->lease_expiry_ms
						     : a->peer_until_ms;
}

static void grant_lease(struct agent *a, const Cellmon__Lease *lease,
			uint64_t sent_ms)
{
	bool was_fenced = a->fenced;
	uint64_t now = cell_now_ms();

	/* A lease runs from the request it answers. One that took longer
	 * than itself to come back (a paused manager answering at last) is
	 * already over: taking it would leave the fenced state for an
	 * instant with no lease at all. The next heartbeat's grant is a
	 * fresh one. */
	if (sent_ms + lease->lease_ms <= now) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "lease answering a request sent %llu ms ago is "
			    "already over (lease_ms=%u); not taken",
			    (unsigned long long)(now - sent_ms),
			    lease->lease_ms);
		return;
	}
	a->lease_ms = lease->lease_ms;
	a->epoch = lease->epoch;
	a->lease_expiry_ms = sent_ms + lease->lease_ms;
	a->has_lease = true;
	a->fenced = false;
	a->witness.silence_ms = lease->lease_ms / 2;
	agent_witness_heard(a, lease->peer_lease_ms);
	agent_vm_lease(a, lease_end(a));
	/* Holding a lease, our DSM messages carry our epoch (0 once it
	 * ends, see lease_expired_cb); a no-op unless it changes. */
	agent_dsm_set_epoch(a, a->dsm_epoch);
	timer_ms(a->lease_timer, a->lease_expiry_ms - now);
	if (was_fenced) {
		CELL_INFO(MOD,
			  "lease granted again; leaving fenced state "
			  "incarnation=%llu",
			  (unsigned long long)a->incarnation);
		write_state(a);
	}
}

static void lease_expired_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;

	uint64_t now = cell_now_ms();

	(void)fd;
	(void)what;
	if (!a->has_lease)
		return;
	/* Votes that came in since the last witness tick count too: the
	 * tick runs every heartbeat, and a yes that arrived just after it
	 * would otherwise be seen only after the lease had ended. */
	if (now >= lease_end(a)) {
		uint64_t until = agent_witness_until(a);

		if (until > a->peer_until_ms)
			a->peer_until_ms = until;
		if (now < lease_end(a))
			agent_vm_lease(a, lease_end(a));
	}
	/* libevent's timer clock is coarse and may fire a few ms early;
	 * and a peer lease may hold past the manager's. */
	if (now < lease_end(a)) {
		timer_ms(a->lease_timer, lease_end(a) - now);
		return;
	}
	a->has_lease = false;
	a->fenced = true;
	agent_vm_lease(a, 0);
	CELL_WARN(MOD,
		  "lease expired; fenced incarnation=%llu lease_ms=%u: the "
		  "manager is silent and no quorum of the cell vouches (the "
		  "others still hear it, or too few of them answer; manager "
		  "silent %llu ms, peer lease end %lld ms from now, %u vote "
		  "requests sent)",
		  (unsigned long long)a->incarnation, a->lease_ms,
		  (unsigned long long)(now - __atomic_load_n(
						     &a->witness.last_reply_ms,
						     __ATOMIC_ACQUIRE)),
		  a->peer_until_ms
			  ? (long long)a->peer_until_ms - (long long)now
			  : 0,
		  a->witness.seq);
	/* The manager may restart our VMs elsewhere once the lease is
	 * over: none of them may go on here. */
	agent_vm_fence(a);
	/* Nor may pages be granted from here: epoch 0 is below every
	 * fence. grant_lease stamps the incarnation again. */
	agent_dsm_set_epoch(a, 0);
	write_state(a);
}

static void drop_connection(struct agent *a, const char *why)
{
	unsigned delay = a->backoff_ms;
	unsigned jitter = delay / 5;

	if (a->conn)
		cell_rpc_conn_close(a->conn);
	a->conn = NULL;
	a->state = AGENT_CONNECTING;
	a->hb_outstanding = false;
	evtimer_del(a->hb_timer);
	if (jitter)
		delay = delay - jitter + (unsigned)(random() % (2 * jitter));
	CELL_LOG_RL(CELL_LOG_WARN, MOD,
		    "manager unreachable addr=%s: %s; "
		    "retry_in_ms=%u",
		    a->cfg.manager, why, delay);
	a->backoff_ms = a->backoff_ms * 2 > a->cfg.reconnect_max_ms
				? (unsigned)a->cfg.reconnect_max_ms
				: a->backoff_ms * 2;
	timer_ms(a->retry_timer, delay);
	write_state(a);
}

struct hb_ctx {
	struct agent *a;
	uint64_t sent_ms;
};

static void heartbeat_reply(int status, const ProtobufCMessage *msg,
			    const char *errmsg, void *arg)
{
	struct hb_ctx *ctx = arg;
	struct agent *a = ctx->a;
	const Cellmon__HeartbeatReply *r = (const void *)msg;
	uint64_t sent = ctx->sent_ms;

	free(ctx);
	a->hb_outstanding = false;
	if (status == -ESTALE || status == -ENOENT) {
		CELL_WARN(MOD,
			  "manager ended incarnation=%llu (%s); "
			  "registering as a new incarnation",
			  (unsigned long long)a->incarnation, errmsg);
		agent_vm_discard_all(a, "the manager ended the incarnation");
		a->incarnation = 0;
		a->has_lease = false;
		a->fenced = true;
		evtimer_del(a->lease_timer);
		evtimer_del(a->hb_timer);
		send_register(a);
		return;
	}
	if (status == -ECONNRESET)
		return; /* the close callback handles it */
	if (status) {
		CELL_LOG_RL(CELL_LOG_WARN, MOD, "heartbeat failed: %s", errmsg);
		/* A connection that cannot even renew a lease is treated as
		 * dead (half-open after a partition): start over. */
		if (cell_now_ms() >= a->lease_expiry_ms)
			drop_connection(a, "heartbeats unanswered");
		return;
	}
	uint32_t view = a->witness.view;
	uint64_t peers = a->dsm_peers;

	agent_witness_heard(a, 0);
	if (r->lease)
		grant_lease(a, r->lease, sent);
	agent_dsm_fence(a, r->fences, r->n_fences);
	if (a->witness.view != view || a->dsm_peers != peers)
		write_state(a);
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	Cellmon__HeartbeatRequest hb = CELLMON__HEARTBEAT_REQUEST__INIT;
	Cellmon__Capacity cap = CELLMON__CAPACITY__INIT;
	Cellmon__Load load = CELLMON__LOAD__INIT;
	Cellmon__CacheStats cache = CELLMON__CACHE_STATS__INIT;
	Cellmon__VouchState vouch[DSM_MAX_NODES], *vouchp[DSM_MAX_NODES];
	struct hb_ctx *ctx;
	int rc;

	(void)fd;
	(void)what;
	if (a->state != AGENT_REGISTERED || !a->conn || a->hb_outstanding)
		return;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return;
	ctx->a = a;
	ctx->sent_ms = cell_now_ms();
	hb.node_id = a->cfg.node_id;
	hb.incarnation = a->incarnation;
	agent_capacity(a, &cap);
	hb.capacity = &cap;
	load.load1 = cell_host_load1();
	load.mem_free_mb = cell_host_mem_avail_mb();
	hb.load = &load;
	hb.seq = ++a->hb_seq;
	hb.dsm_addr = a->dsm_addr;
	hb.n_vouching = agent_witness_report(a, vouch, vouchp);
	hb.vouching = vouchp;
	hb.view_nodes = a->witness.view;
	if (agent_vm_status(a, &hb.vcpus, &hb.n_vcpus)) {
		free(ctx);
		return;
	}
	for (size_t i = 0; i < hb.n_vcpus; i++)
		load.vcpus +=
			hb.vcpus[i]->state == CELLMON__VCPU_STATE__VCPU_RUNNING;
	if (a->cache) {
		struct agent_cache_stats cs;

		agent_cache_stats(a->cache, &cs);
		cache.hits = cs.hits;
		cache.misses = cs.misses;
		cache.evictions = cs.evictions;
		cache.waits = cs.waits;
		cache.zero_reads = cs.zero_reads;
		cache.entries = cs.entries;
		cache.capacity = cs.capacity;
		hb.cache = &cache;
	}
	/* A heartbeat is worth waiting for as long as the lease lasts. */
	rc = cell_rpc_request(a->conn, CELLMON__MSG_TYPE__MSG_HEARTBEAT,
			      &hb.base, CELLMON__MSG_TYPE__MSG_HEARTBEAT_REPLY,
			      a->lease_ms ? a->lease_ms : 1000, heartbeat_reply,
			      ctx);
	agent_vm_status_free(hb.vcpus, hb.n_vcpus);
	if (rc) {
		free(ctx);
		return;
	}
	a->hb_outstanding = true;
}

/* Every heartbeat period, connected or not: the peer lease. */
static void witness_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	uint64_t now = cell_now_ms();
	bool peer_mode = a->witness.peer_mode;

	(void)fd;
	(void)what;
	a->peer_until_ms = agent_witness_tick(a);
	if (a->witness.peer_mode != peer_mode)
		write_state(a);
	if (!a->has_lease || a->fenced)
		return;
	/* the guests see the longer end; the lease timer waits for it */
	agent_vm_lease(a, lease_end(a));
	if (lease_end(a) > now)
		timer_ms(a->lease_timer, lease_end(a) - now);
}

/* a->heartbeat_now: agent_vm.c calls it when a vCPU ended. */
static void heartbeat_now(struct agent *a)
{
	heartbeat_cb(-1, 0, a);
}

static void register_reply(int status, const ProtobufCMessage *msg,
			   const char *errmsg, void *arg)
{
	struct hb_ctx *ctx = arg;
	struct agent *a = ctx->a;
	const Cellmon__RegisterReply *r = (const void *)msg;
	struct timeval hb = {a->cfg.heartbeat_ms / 1000,
			     (a->cfg.heartbeat_ms % 1000) * 1000};
	uint64_t sent = ctx->sent_ms;
	bool send_dsm_addr = false;

	free(ctx);
	if (status == -ECONNRESET)
		return;
	if (status || !r->lease) {
		CELL_ERROR(MOD, "registration refused by %s: %s",
			   a->cfg.manager, status ? errmsg : "no lease");
		drop_connection(a, "registration refused");
		return;
	}
	a->state = AGENT_REGISTERED;
	a->backoff_ms = (unsigned)a->cfg.reconnect_min_ms;
	if (a->incarnation && !r->resumed) {
		CELL_WARN(MOD, "incarnation %llu is over; now %llu",
			  (unsigned long long)a->incarnation,
			  (unsigned long long)r->lease->incarnation);
		/* Its VMs were failed or restarted elsewhere. */
		agent_vm_discard_all(a, "the node's incarnation is over");
	}
	a->incarnation = r->lease->incarnation;
	a->dsm_epoch = r->dsm_epoch; /* stamped from grant_lease on */
	CELL_INFO(MOD,
		  "registered node=%s incarnation=%llu resumed=%s "
		  "lease_ms=%u epoch=%llu",
		  a->cfg.node_id, (unsigned long long)a->incarnation,
		  r->resumed ? "yes" : "no", r->lease->lease_ms,
		  (unsigned long long)r->lease->epoch);
	grant_lease(a, r->lease, sent);
	if (r->vm_ids_known)
		agent_vm_sweep(a, r->vm_ids, r->n_vm_ids);
	if (!r->has_dsm_id)
		CELL_WARN(MOD,
			  "the manager gave no DSM id (more than %d "
			  "nodes?); this node cannot run VMs",
			  DSM_MAX_NODES);
	else if (a->dsm_id < 0 && agent_dsm_start(a, r->dsm_id) == 0)
		send_dsm_addr = true; /* peers need it before any VM */
	else if ((uint32_t)a->dsm_id != r->dsm_id)
		CELL_ERROR(MOD,
			   "the manager now gives DSM id %u, this node "
			   "has %d; restart the agent to take it",
			   r->dsm_id, a->dsm_id);
	event_del(a->hb_timer);
	event_add(a->hb_timer, &hb);
	write_state(a);
	if (send_dsm_addr)
		heartbeat_cb(-1, 0, a);
}

static void send_register(struct agent *a)
{
	Cellmon__RegisterRequest req = CELLMON__REGISTER_REQUEST__INIT;
	Cellmon__Capacity cap = CELLMON__CAPACITY__INIT;
	struct hb_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	if (!ctx) {
		drop_connection(a, "out of memory");
		return;
	}
	ctx->a = a;
	ctx->sent_ms = cell_now_ms();
	req.protocol_version = CELLPROTO_VERSION;
	req.node_id = a->cfg.node_id;
	req.addr = a->addr;
	agent_capacity(a, &cap);
	req.capacity = &cap;
	req.prev_incarnation = a->incarnation;
	req.heartbeat_ms = (uint32_t)a->cfg.heartbeat_ms;
	req.agent_version = CELLMON_VERSION;
	a->state = AGENT_REGISTERING;
	rc = cell_rpc_request(a->conn, CELLMON__MSG_TYPE__MSG_REGISTER,
			      &req.base, CELLMON__MSG_TYPE__MSG_REGISTER_REPLY,
			      2000, register_reply, ctx);
	if (rc) {
		free(ctx);
		drop_connection(a, strerror(-rc));
	}
}

static void conn_closed(struct cell_rpc_conn *c, int reason, void *arg)
{
	struct agent *a = arg;

	(void)c;
	a->conn = NULL; /* freed by the RPC layer after this returns */
	CELL_WARN(MOD, "connection to manager lost: %s",
		  reason ? strerror(-reason) : "closed by the manager");
	drop_connection(a, "connection lost");
}

static void connected(struct cell_rpc_conn *c, int status, void *arg)
{
	struct agent *a = arg;

	if (status) {
		a->conn = NULL;
		drop_connection(a, strerror(-status));
		return;
	}
	cell_rpc_conn_set_close_cb(c, conn_closed, a);
	if (a->cfg.addr[0])
		snprintf(a->addr, sizeof(a->addr), "%s", a->cfg.addr);
	else if (cell_rpc_conn_local_ip(c, a->addr, sizeof(a->addr)))
		snprintf(a->addr, sizeof(a->addr), "unknown");
	CELL_INFO(MOD, "connected to manager addr=%s local=%s", a->cfg.manager,
		  a->addr);
	send_register(a);
}

static void start_connect(struct agent *a)
{
	int rc;

	a->state = AGENT_CONNECTING;
	rc = cell_rpc_connect(a->base, a->cfg.manager, &a->rpc, 2000, connected,
			      a, &a->conn);
	if (rc) {
		a->conn = NULL;
		drop_connection(a, strerror(-rc));
	}
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_connect(arg);
}

static void on_command(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		       void *arg)
{
	struct agent *a = arg;
	const Cellmon__Command *cmd = (const void *)msg;
	Cellmon__CommandAck ack = CELLMON__COMMAND_ACK__INIT;
	char why[512] = "";

	if (cmd->incarnation != a->incarnation || a->fenced) {
		ack.status = -ESTALE;
		ack.message = a->fenced ? "node is fenced"
					: "command for another incarnation";
	} else if (cmd->kind != CELLMON__COMMAND_KIND__CMD_PING) {
		agent_vm_command(a, cmd, &ack, why, sizeof(why));
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_COMMAND_ACK, &ack.base);
	agent_vm_ack_free(&ack);
}

static const struct cell_rpc_method agent_methods[] = {
	{CELLMON__MSG_TYPE__MSG_COMMAND, on_command},
	{0, NULL},
};

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;

	(void)what;
	CELL_INFO(MOD, "stopping on signal %d", (int)sig);
	event_base_loopexit(a->base, NULL);
}

static void usage(FILE *out)
{
	fputs("usage: cellmon-agent [--config=FILE] [--KEY=VALUE ...]\n"
	      "       cellmon-agent config show|example [--KEY=VALUE ...]\n"
	      "\n"
	      "The cellmon node agent: registers this host with the manager,\n"
	      "heartbeats, holds a lease and fences itself when the lease\n"
	      "expires; runs the vCPUs the manager places here (native guest\n"
	      "programs from image_dir) with their memory in the DSM, and\n"
	      "keeps their consoles under <state_dir>/vms/. Logs go to\n"
	      "stderr; the current state is mirrored to\n"
	      "<state_dir>/agent.state as JSON.\n"
	      "\n"
	      "Keys (also accepted in the config file as 'key = value'):\n",
	      out);
	cell_config_usage(agent_config_table, out);
	fputs("\nExit status: 0 after SIGINT/SIGTERM, 1 on a runtime error, 2 "
	      "on a bad\ncommand line or configuration.\n",
	      out);
}

/* Fills defaults that depend on the host and checks cross-key rules. */
static int finish_config(struct agent *a, char *err, size_t len)
{
	enum cell_log_level lvl;
	struct agent_config *c = &a->cfg;

	if (!c->node_id[0] && gethostname(c->node_id, sizeof(c->node_id)))
		c->node_id[0] = '\0';
	c->node_id[sizeof(c->node_id) - 1] = '\0';
	if (!cell_name_valid(c->node_id)) {
		snprintf(err, len,
			 "node_id '%s' is invalid: use " CELL_NAME_RULE,
			 c->node_id);
		return -EINVAL;
	}
	if (c->reconnect_min_ms > c->reconnect_max_ms) {
		snprintf(err, len,
			 "reconnect_min must not exceed reconnect_max");
		return -EINVAL;
	}
	cell_log_level_parse(c->log_level, &lvl);
	cell_log_set_level(lvl);
	a->cpus = c->cpus ? (unsigned)c->cpus : cell_host_cpus();
	a->memory_mb = c->memory ? (uint64_t)c->memory >> 20
				 : cell_host_mem_total_mb();
	if (!a->cpus || !a->memory_mb) {
		snprintf(err, len,
			 "cannot read this host's CPUs or memory; set "
			 "cpus and memory");
		return -EINVAL;
	}
	return 0;
}

/* TLS to the manager (its certificate must be a manager's) and to the
 * disk server, from the tls_* keys; this node's certificate must name
 * it (node_id). Plain TCP with a warning when none is set and insecure
 * allows it. */
static int setup_tls(struct agent *a)
{
	struct cell_tls_settings *s = &a->cfg.tls;
	enum cell_role role;
	char err[1300], name[64];
	int rc;

	rc = cell_tls_from_settings(s, CELL_ROLE_BIT(CELL_ROLE_MANAGER),
				    &a->tls_mgr, err, sizeof(err));
	if (!rc && a->tls_mgr)
		rc = cell_tls_from_settings(s, CELL_ROLE_BIT(CELL_ROLE_DISK),
					    &a->tls_disk, err, sizeof(err));
	if (!rc && a->tls_mgr) {
		struct cell_tls_config dc = {s->ca,
					     s->cert,
					     s->key,
					     s->crl,
					     CELL_ROLE_BIT(CELL_ROLE_NODE),
					     true};

		rc = cell_tls_new(&dc, &a->tls_dsm, err, sizeof(err));
	}
	/* fault point agent.tls-impostor (action error): skip this check,
	 * to test that the manager makes it too */
	if (!rc && a->tls_mgr &&
	    !(rc = cell_tls_settings_identity(s, &role, name, sizeof(name), err,
					      sizeof(err))) &&
	    CELL_FAULT("agent.tls-impostor") == 0 &&
	    (role != CELL_ROLE_NODE || strcmp(name, a->cfg.node_id))) {
		snprintf(err, sizeof(err),
			 "tls_cert %s is the certificate of %s '%s', not of "
			 "node '%s' (cellctl ca issue DIR --node=%s)",
			 s->cert, cell_role_name(role), name, a->cfg.node_id,
			 a->cfg.node_id);
		rc = -EINVAL;
	}
	if (rc) {
		CELL_ERROR(MOD, "%s", err);
		return rc;
	}
	if (!a->tls_mgr)
		CELL_WARN(MOD, "insecure: plain TCP to the manager, the disk "
			       "server and the DSM peers (no tls_cert)");
	else
		CELL_INFO(MOD,
			  "TLS 1.3 to the manager, the disk server and the "
			  "DSM peers as node '%s'",
			  name);
	return 0;
}

static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	char err[600];

	(void)fd;
	(void)what;
	if (!a->tls_mgr)
		return;
	if (cell_tls_reload(a->tls_mgr, err, sizeof(err)) ||
	    cell_tls_reload(a->tls_disk, err, sizeof(err)) ||
	    cell_tls_reload(a->tls_dsm, err, sizeof(err)))
		CELL_ERROR(MOD, "SIGHUP: the TLS files stay as they were: %s",
			   err);
	else
		CELL_INFO(MOD, "SIGHUP: TLS certificate, key and CRL re-read "
			       "for new connections");
}

static int run(struct agent *a)
{
	struct event *ev_int, *ev_term, *ev_hup;
	int rc = cell_mkdir_p(a->cfg.state_dir);

	if (rc) {
		CELL_ERROR(MOD, "cannot create state_dir %s: %s",
			   a->cfg.state_dir, strerror(-rc));
		return rc;
	}
	a->base = event_base_new();
	if (!a->base)
		return -ENOMEM;
	rc = setup_tls(a);
	if (!rc && agent_confine_probe(a))
		rc = -EPERM;
	if (rc)
		return rc;
	a->rpc = (struct cell_rpc_config){
		.types = cellproto_types,
		.methods = agent_methods,
		.arg = a,
		.max_frame = (uint32_t)a->cfg.max_frame,
		.log_module = MOD,
		.tls = a->tls_mgr,
	};
	agent_disk_set_tls(a->tls_disk);
	a->hb_timer = event_new(a->base, -1, EV_PERSIST, heartbeat_cb, a);
	a->lease_timer = evtimer_new(a->base, lease_expired_cb, a);
	a->retry_timer = evtimer_new(a->base, retry_cb, a);
	a->witness_timer = event_new(a->base, -1, EV_PERSIST, witness_cb, a);
	ev_int = evsignal_new(a->base, SIGINT, signal_cb, a);
	ev_term = evsignal_new(a->base, SIGTERM, signal_cb, a);
	ev_hup = evsignal_new(a->base, SIGHUP, hup_cb, a);
	event_add(ev_int, NULL);
	event_add(ev_term, NULL);
	event_add(ev_hup, NULL);
	a->backoff_ms = (unsigned)a->cfg.reconnect_min_ms;
	a->witness.silence_ms = 1000; /* half the lease, once one is held */
	a->witness.peer_lease_ms = 1000;
	timer_ms(a->witness_timer,
		 (uint64_t)a->cfg.heartbeat_ms); /* persists */
	CELL_INFO(MOD,
		  "starting node=%s manager=%s cpus=%u memory_mb=%llu "
		  "heartbeat_ms=%lld pid=%d version=%s",
		  a->cfg.node_id, a->cfg.manager, a->cpus,
		  (unsigned long long)a->memory_mb,
		  (long long)a->cfg.heartbeat_ms, (int)getpid(),
		  CELLMON_VERSION);
	a->heartbeat_now = heartbeat_now;
	rc = agent_vm_init(a);
	if (rc) {
		CELL_ERROR(MOD, "cannot set up VM handling: %s", strerror(-rc));
		return rc;
	}
	rc = agent_metrics_start(a);
	if (rc)
		return rc;
	write_state(a);
	start_connect(a);
	event_base_dispatch(a->base);
	a->stopped = true;
	agent_metrics_stop(a);
	agent_vm_fini(a);
	write_state(a);
	cell_rpc_conn_close(a->conn);
	event_free(a->hb_timer);
	event_free(a->lease_timer);
	event_free(a->retry_timer);
	event_free(a->witness_timer);
	event_free(ev_int);
	event_free(ev_term);
	event_free(ev_hup);
	event_base_free(a->base);
	cell_tls_free(a->tls_mgr);
	cell_tls_free(a->tls_disk);
	cell_tls_free(a->tls_dsm); /* after the DSM node (agent_vm_fini) */
	return 0;
}

int main(int argc, char **argv)
{
	static struct agent a;
	char err[600];
	int nrest = 0, rc;

	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)(getpid() ^ cell_now_us()));
	if (cell_config_defaults(agent_config_table, &a.cfg, err, sizeof(err)))
		abort(); /* a bad default is a bug in the table */
	rc = cell_config_parse_args(agent_config_table, &a.cfg, argc, argv,
				    &nrest, err, sizeof(err));
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc || finish_config(&a, err, sizeof(err))) {
		fprintf(stderr, "cellmon-agent: %s\n", err);
		return 2;
	}
	if (nrest == 2 && strcmp(argv[1], "config") == 0 &&
	    strcmp(argv[2], "show") == 0) {
		cell_config_show(agent_config_table, &a.cfg, stdout);
		return 0;
	}
	if (nrest == 2 && strcmp(argv[1], "config") == 0 &&
	    strcmp(argv[2], "example") == 0) {
		cell_config_example(agent_config_table,
				    "cellmon-agent configuration", stdout);
		return 0;
	}
	if (nrest > 0) {
		fprintf(stderr,
			"cellmon-agent: unexpected argument '%s' (see "
			"--help)\n",
			argv[1]);
		return 2;
	}
	rc = run(&a);
	if (rc) {
		CELL_ERROR(MOD, "exiting: %s", strerror(-rc));
		return 1;
	}
	CELL_INFO(MOD, "stopped");
	return 0;
}
