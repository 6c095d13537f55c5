/*
 * cellmon-vdiskd: serves the disks of a store over NBD, and administers
 * the store offline.
 *
 *   cellmon-vdiskd [--config=FILE] [--key=value...]        serve
 *   cellmon-vdiskd [options] base import PATH
 *   cellmon-vdiskd [options] disk create NAME SIZE [PARENT]
 *   cellmon-vdiskd [options] disk clone SRC NAME
 *   cellmon-vdiskd [options] disk list|info NAME|delete NAME [-o json]
 *   cellmon-vdiskd config show|example
 *
 * One thread per client connection; clients of the same disk share one
 * open struct vdisk (vdiskd_export.c). The admin RPC (vdiskd_admin.c)
 * runs on the main loop, with the NBD accepts. SIGTERM or SIGINT: stop
 * accepting, disconnect the clients, flush and close every disk, exit 0.
 * This file: config, clients, the main loop, main().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "cell/config.h"
#include "cell/metrics.h"
#include "cell/log.h"
#include "cell/net.h"
#include "cell/rpc.h"
#include "cellproto/cellproto.h"
#include "cell/util.h"
#include "vdiskd.h"

#define MOD "vdiskd"

#define CFG(field) offsetof(struct vdiskd_config, field)
#define STR(field) CFG(field), sizeof(((struct vdiskd_config *)0)->field)

static const char *const nbd_tls_modes[] = {"off", "optional", "required",
					    NULL};

static const struct cell_config_key vdiskd_config_table[] = {
	{"listen", CELL_CFG_STRING, STR(listen), 0, 0, "127.0.0.1:10809",
	 "NBD address host:port (10809 is NBD's port; port 0: any)"},
	{"admin_listen", CELL_CFG_STRING, STR(admin_listen), 0, 0,
	 "127.0.0.1:10810",
	 "address host:port the manager sends disk requests to (port 0: "
	 "any)"},
	{"store", CELL_CFG_STRING, STR(store), 0, 0, "/var/lib/cellmon/vdisk",
	 "directory of base images and disks (created if missing)"},
	{"max_clients", CELL_CFG_INT, CFG(max_clients), 0, 1, 4096, "64",
	 "NBD connections served at once; more are refused"},
	CELL_METRICS_LISTEN_KEY(STR(metrics_listen)),
	CELL_TLS_CONFIG_KEYS(CFG(tls)),
	{"nbd_tls", CELL_CFG_ENUM, STR(nbd_tls), 0, 0, "required",
	 "NBD_OPT_STARTTLS with the tls_* certificate, when there is one "
	 "(clients need a node or admin certificate of the cell's CA; the "
	 "agents use their node's): required (every option but STARTTLS "
	 "refused before it), optional, or off",
	 nbd_tls_modes},
	{"log_level", CELL_CFG_ENUM, STR(log_level), 0, 0, "info",
	 "log threshold", cell_config_log_levels},
	{NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

struct vdiskd D = {
	.clients_mu = PTHREAD_MUTEX_INITIALIZER,
	.idle = PTHREAD_COND_INITIALIZER,
};

/* ---- clients ---- */

static void *client_main(void *arg)
{
	struct vdiskd_client *c = arg;
	struct nbd_conn_stats st;
	char err[400];
	struct nbd_exports ex = vdiskd_exports;
	int rc;

	ex.tls = D.nbd_tls;
	ex.tls_required = D.nbd_tls && !strcmp(D.cfg.nbd_tls, "required");
	rc = nbd_serve(c->fd, &ex, &c->st, err, sizeof(err));

	st = c->st;
	if (rc)
		CELL_WARN(MOD, "client %s: %s (after %llu requests)", c->peer,
			  err, (unsigned long long)st.requests);
	else
		CELL_INFO(MOD,
			  "client %s disconnected: %llu requests, %llu "
			  "errors, %llu bytes read, %llu written",
			  c->peer, (unsigned long long)st.requests,
			  (unsigned long long)st.errors,
			  (unsigned long long)st.bytes_read,
			  (unsigned long long)st.bytes_written);
	pthread_mutex_lock(&D.clients_mu);
	D.bytes_read += st.bytes_read;
	D.bytes_written += st.bytes_written;
	nbd_stats_add(&D.gone, &st);
	close(c->fd);
	c->used = false;
	if (--D.nclients == 0)
		pthread_cond_broadcast(&D.idle);
	pthread_mutex_unlock(&D.clients_mu);
	return NULL;
}

static void accept_one(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct vdiskd_client *c = NULL;
	pthread_t t;
	pthread_attr_t attr;
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	int one = 1;

	if (fd < 0)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&D.clients_mu);
	for (int i = 0; i < D.cfg.max_clients && !c; i++)
		if (!D.clients[i].used)
			c = &D.clients[i];
	if (c) {
		c->used = true;
		c->fd = fd;
		memset(&c->st, 0, sizeof(c->st));
		D.nclients++;
	}
	pthread_mutex_unlock(&D.clients_mu);
	if (!c) {
		CELL_WARN(MOD, "refused a client: %lld connections already",
			  (long long)D.cfg.max_clients);
		close(fd);
		return;
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uint8_t *ip = (uint8_t *)&a->sin_addr;

		snprintf(c->peer, sizeof(c->peer), "%u.%u.%u.%u:%u", ip[0],
			 ip[1], ip[2], ip[3], ntohs(a->sin_port));
	} else {
		snprintf(c->peer, sizeof(c->peer), "fd %d", fd);
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, client_main, c)) {
		CELL_ERROR(MOD, "no thread for client %s", c->peer);
		pthread_mutex_lock(&D.clients_mu);
		close(fd);
		c->used = false;
		D.nclients--;
		pthread_mutex_unlock(&D.clients_mu);
	}
	pthread_attr_destroy(&attr);
}

static int listen_on(const char *hostport)
{
	struct sockaddr_storage ss;
	int sl, fd, one = 1;

	if (cell_parse_hostport(hostport, &ss, &sl))
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) || listen(fd, 64)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* <store>/vdiskd.addr: "nbd=host:port" and "admin=host:port", so that
 * tests and scripts may ask for port 0. */
static int write_addr(void)
{
	char path[1100], text[600];
	int rc;

	snprintf(text, sizeof(text), "nbd=%s\nadmin=%s\n%s%s%s", D.nbd_addr,
		 D.admin_addr, D.metrics ? "metrics=" : "", D.metrics_addr,
		 D.metrics ? "\n" : "");
	snprintf(path, sizeof(path), "%s/vdiskd.addr", D.cfg.store);
	rc = cell_write_file_atomic(path, text, strlen(text));
	if (rc)
		CELL_ERROR(MOD, "cannot write %s: %s", path, strerror(-rc));
	return rc;
}

static void admin_accept(struct cell_rpc_conn *c, void *arg)
{
	(void)arg;
	CELL_DEBUG(MOD, "admin connection from %s", cell_rpc_conn_peer(c));
}

/* ---- the main loop ---- */

static void nbd_accept_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	(void)arg;
	accept_one(fd);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	CELL_INFO(MOD, "signal %d: stopping", (int)sig);
	event_base_loopbreak(arg);
}

/* TLS on the admin link, for the manager and the nodes; vdiskd's own
 * certificate must be a disk server's. NBD stays plain for now. */
static int setup_tls(struct cell_tls **out)
{
	struct cell_tls_settings *s = &D.cfg.tls;
	enum cell_role role;
	char err[1300], name[64];
	int rc = cell_tls_from_settings(s,
					CELL_ROLE_BIT(CELL_ROLE_MANAGER) |
						CELL_ROLE_BIT(CELL_ROLE_NODE),
					out, err, sizeof(err));

	if (!rc && *out &&
	    !(rc = cell_tls_settings_identity(s, &role, name, sizeof(name), err,
					      sizeof(err))) &&
	    role != CELL_ROLE_DISK) {
		snprintf(err, sizeof(err),
			 "tls_cert %s is a %s certificate ('%s'), not a disk "
			 "server's (cellctl ca issue DIR --disk-server=NAME)",
			 s->cert, cell_role_name(role), name);
		rc = -EINVAL;
	}
	/* NBD: nodes and admins (qemu-io, nbdinfo with an admin's) */
	if (!rc && *out && strcmp(D.cfg.nbd_tls, "off"))
		rc = cell_tls_from_settings(
			s,
			CELL_ROLE_BIT(CELL_ROLE_NODE) |
				CELL_ROLE_BIT(CELL_ROLE_ADMIN),
			&D.nbd_tls, err, sizeof(err));
	if (rc)
		CELL_ERROR(MOD, "%s", err);
	else if (!*out)
		CELL_WARN(MOD, "insecure: plain TCP on the admin link and NBD "
			       "(no tls_cert)");
	else
		CELL_INFO(MOD,
			  "TLS 1.3 on the admin link as disk server '%s'; NBD "
			  "STARTTLS %s",
			  name, D.cfg.nbd_tls);
	return rc;
}

static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
	char err[600];

	(void)fd;
	(void)what;
	if (!arg)
		return;
	if (cell_tls_reload(arg, err, sizeof(err)) ||
	    (D.nbd_tls && cell_tls_reload(D.nbd_tls, err, sizeof(err))))
		CELL_ERROR(MOD, "SIGHUP: the TLS files stay as they were: %s",
			   err);
	else
		CELL_INFO(MOD, "SIGHUP: TLS certificate, key and CRL re-read "
			       "for new connections");
}

static int serve(void)
{
	struct cell_rpc_config rpc = {
		.types = cellproto_types,
		.methods = vdiskd_admin_methods,
		.log_module = MOD,
	};
	struct cell_tls *tls = NULL;
	struct event *ev_hup = NULL;
	struct cell_rpc_listener *admin = NULL;
	struct event *ev_nbd = NULL, *ev_term = NULL, *ev_int = NULL;
	struct event_base *base = event_base_new();
	char err[600];
	int lfd = -1, rc = 1;

	if (!base)
		return 1;
	if (setup_tls(&tls))
		goto out;
	rpc.tls = tls;
	if (vdisk_store_init(D.cfg.store, err, sizeof(err))) {
		CELL_ERROR(MOD, "%s", err);
		goto out;
	}
	D.clients = calloc((size_t)D.cfg.max_clients, sizeof(*D.clients));
	if (!D.clients)
		goto out;
	lfd = listen_on(D.cfg.listen);
	if (lfd < 0) {
		CELL_ERROR(MOD, "listen on %s: %s", D.cfg.listen,
			   strerror(-lfd));
		goto out;
	}
	rc = cell_rpc_listen(base, D.cfg.admin_listen, &rpc, admin_accept, NULL,
			     &admin);
	if (rc) {
		CELL_ERROR(MOD, "listen on %s: %s", D.cfg.admin_listen,
			   strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = 1;
	cell_hostport_bound(D.cfg.listen, cell_socket_port(lfd), D.nbd_addr,
			    sizeof(D.nbd_addr));
	cell_hostport_bound(D.cfg.admin_listen, cell_rpc_listener_port(admin),
			    D.admin_addr, sizeof(D.admin_addr));
	if (vdiskd_metrics_start(base) || write_addr())
		goto out;
	ev_nbd =
		event_new(base, lfd, EV_READ | EV_PERSIST, nbd_accept_cb, NULL);
	ev_term = evsignal_new(base, SIGTERM, signal_cb, base);
	ev_int = evsignal_new(base, SIGINT, signal_cb, base);
	ev_hup = evsignal_new(base, SIGHUP, hup_cb, tls);
	if (!ev_nbd || !ev_term || !ev_int || !ev_hup)
		goto out;
	event_add(ev_hup, NULL);
	event_add(ev_nbd, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	CELL_INFO(MOD, "serving NBD on %s, admin on %s, store %s, pid %d",
		  D.nbd_addr, D.admin_addr, D.cfg.store, (int)getpid());
	event_base_dispatch(base);
	rc = 0;
out:
	if (lfd >= 0)
		close(lfd);
	pthread_mutex_lock(&D.clients_mu);
	if (D.nclients)
		CELL_INFO(MOD, "disconnecting %d clients", D.nclients);
	for (int i = 0; D.clients && i < D.cfg.max_clients; i++)
		if (D.clients[i].used)
			shutdown(D.clients[i].fd, SHUT_RDWR);
	while (D.nclients > 0)
		pthread_cond_wait(&D.idle, &D.clients_mu);
	pthread_mutex_unlock(&D.clients_mu);
	if (ev_nbd)
		event_free(ev_nbd);
	if (ev_term)
		event_free(ev_term);
	if (ev_int)
		event_free(ev_int);
	if (ev_hup)
		event_free(ev_hup);
	cell_tls_free(D.nbd_tls);
	D.nbd_tls = NULL;
	vdiskd_metrics_stop();
	cell_rpc_listener_free(admin);
	event_base_free(base);
	cell_tls_free(tls);
	free(D.clients);
	if (!rc)
		CELL_INFO(MOD, "stopped");
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cellmon-vdiskd [--config=FILE] [--key=value...]\n"
		"       cellmon-vdiskd [options] base import PATH\n"
		"       cellmon-vdiskd [options] disk create NAME SIZE "
		"[base:ID|disk:NAME]\n"
		"       cellmon-vdiskd [options] disk clone SRC NAME\n"
		"       cellmon-vdiskd [options] disk list|info NAME|delete "
		"NAME [-o json]\n"
		"       cellmon-vdiskd config show|example\n"
		"\n"
		"Without a command, serves the store's disks over NBD (export "
		"name =\n"
		"disk name). The disk and base commands work on the store "
		"directly:\n"
		"run them while no server has the disk open (with a server "
		"running,\n"
		"use cellctl disk ..., which goes through the manager and the "
		"server).\n"
		"Exit codes: 0 ok, 1 failed, 2 usage, 4 not found, 5 exists "
		"or in use.\n\nOptions:\n");
	cell_config_usage(vdiskd_config_table, f);
}

int main(int argc, char **argv)
{
	char err[600];
	int nrest = 0, rc;
	enum cell_log_level lvl;

	signal(SIGPIPE, SIG_IGN);
	if (cell_config_defaults(vdiskd_config_table, &D.cfg, err, sizeof(err)))
		abort();
	rc = cell_config_parse_args(vdiskd_config_table, &D.cfg, argc, argv,
				    &nrest, err, sizeof(err));
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 2;
	}
	if (cell_log_level_parse(D.cfg.log_level, &lvl) == 0)
		cell_log_set_level(lvl);
	if (nrest == 2 && !strcmp(argv[1], "config") &&
	    !strcmp(argv[2], "show")) {
		cell_config_show(vdiskd_config_table, &D.cfg, stdout);
		return 0;
	}
	if (nrest == 2 && !strcmp(argv[1], "config") &&
	    !strcmp(argv[2], "example")) {
		cell_config_example(vdiskd_config_table,
				    "cellmon-vdiskd configuration", stdout);
		return 0;
	}
	if (nrest > 0)
		return vdiskd_offline(nrest, argv + 1);
	return serve();
}
