/*
 * The test cluster (cluster.h): argv building, start-up order and the
 * waits. Assertions are cmocka's, so a setup that cannot start the cell
 * fails the test that asked for it.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cell/ca.h"
#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

/* Appends the NULL-terminated extras to argv at *n (bounded by max). */
static void add_args(char **argv, int *n, int max, const char *const *extra)
{
	for (int i = 0; extra && extra[i] && *n < max - 1; i++)
		argv[(*n)++] = (char *)extra[i];
	argv[*n] = NULL;
}

/* Copies CA/from to CA/x509/to (the directory made when missing). */
static void copy_as(const char *ca, const char *from, const char *to)
{
	char src[900], dst[900], *text;
	FILE *f;

	snprintf(dst, sizeof(dst), "%s/x509", ca);
	mkdir(dst, 0700);
	snprintf(src, sizeof(src), "%s/%s", ca, from);
	snprintf(dst, sizeof(dst), "%s/x509/%s", ca, to);
	text = ts_read_file(src);
	f = fopen(dst, "w");
	if (!text || !f || fputs(text, f) < 0 || fclose(f))
		fail_msg("cannot copy %s to %s", src, dst);
	free(text);
}

void tsc_ca_make(const char *dir)
{
	static const struct {
		enum cell_role role;
		const char *name;
	} daemons[] = {{CELL_ROLE_MANAGER, "manager"},
		       {CELL_ROLE_DISK, "vdiskd"},
		       {CELL_ROLE_ADMIN, "test"},
		       {CELL_ROLE_VIEWER, "test"}};
	char ca[800], err[600], crt[900], key[900], node[16];
	struct cell_ca_issue q = {.sans = "IP:127.0.0.1"};
	size_t nd = sizeof(daemons) / sizeof(daemons[0]);

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	if (cell_ca_init(ca, "test", 0, err, sizeof(err)))
		fail_msg("cannot make the test cell's CA: %s", err);
	/* the daemons', then node1..node<TSC_MAX_NODES> */
	for (size_t i = 0; i < nd + TSC_MAX_NODES; i++) {
		if (i >= nd)
			snprintf(node, sizeof(node), "node%zu", i - nd + 1);
		q.role = i < nd ? daemons[i].role : CELL_ROLE_NODE;
		q.name = i < nd ? daemons[i].name : node;
		if (cell_ca_issue(ca, &q, NULL, NULL, NULL, err, sizeof(err)))
			fail_msg("cannot issue %s: %s", q.name, err);
	}
	/* the admin's files as qemu's NBD client (GnuTLS) reads them */
	copy_as(ca, "ca.crt", "ca-cert.pem");
	copy_as(ca, "certs/admin-test.crt", "client-cert.pem");
	copy_as(ca, "certs/admin-test.key", "client-key.pem");
	snprintf(crt, sizeof(crt), "%s/ca.crt", ca);
	setenv("CELLMON_CA", crt, 1);
	snprintf(crt, sizeof(crt), "%s/certs/admin-test.crt", ca);
	snprintf(key, sizeof(key), "%s/certs/admin-test.key", ca);
	setenv("CELLMON_CERT", crt, 1);
	setenv("CELLMON_KEY", key, 1);
}

void tsc_ca_forget(void)
{
	unsetenv("CELLMON_CA");
	unsetenv("CELLMON_CERT");
	unsetenv("CELLMON_KEY");
}

void tsc_tls_opts(const char *dir, const char *cert, char opts[4][800])
{
	snprintf(opts[0], 800, "--tls-ca=%s/ca/ca.crt", dir);
	snprintf(opts[1], 800, "--tls-cert=%s/ca/certs/%s.crt", dir, cert);
	snprintf(opts[2], 800, "--tls-key=%s/ca/certs/%s.key", dir, cert);
	snprintf(opts[3], 800, "--tls-crl=%s/ca/crl.pem", dir);
}

/* Appends a daemon's TLS options (certs/CERT) to argv at *n. */
static void add_tls(struct tsc_cluster *c, const char *cert, char **argv,
		    int *n, char opts[4][800])
{
	tsc_tls_opts(c->dir, cert, opts);
	for (int i = 0; i < 4; i++)
		argv[(*n)++] = opts[i];
}

void tsc_cluster_manager(struct tsc_cluster *c, const char *extra)
{
	char sd[800], log[800], al[100], vd[100], tls[4][800];
	char *argv[12 + TSC_MAX_ARGS] = {MANAGER_BIN, sd, al,
					 "--ctl-listen=127.0.0.1:0"};
	int n = 4;

	snprintf(sd, sizeof(sd), "%s/manager/manager.addr", c->dir);
	unlink(sd); /* a restart must not read the old addresses */
	snprintf(sd, sizeof(sd), "--state-dir=%s/manager", c->dir);
	snprintf(al, sizeof(al), "--agent-listen=%s",
		 c->agent_addr[0] ? c->agent_addr : "127.0.0.1:0");
	if (c->o.vdiskd) {
		snprintf(vd, sizeof(vd), "--vdiskd=%s", c->admin);
		argv[n++] = vd;
	}
	if (extra)
		argv[n++] = (char *)extra;
	add_tls(c, "manager-manager", argv, &n, tls);
	add_args(argv, &n, (int)(sizeof(argv) / sizeof(argv[0])),
		 c->o.manager_args);
	snprintf(log, sizeof(log), "%s/manager.log", c->dir);
	c->manager = ts_spawn(argv, log);
	assert_true(c->manager > 0);
	snprintf(sd, sizeof(sd), "%s/manager", c->dir);
	assert_true(ts_manager_addrs(sd, c->agent_addr, sizeof(c->agent_addr),
				     c->ctl_addr, sizeof(c->ctl_addr), 5000));
}

pid_t tsc_cluster_agent(struct tsc_cluster *c, int i, const char *const *env)
{
	char id[40], mgr[100], sd[800], img[800], log[800], tls[4][800];
	char cert[32];
	char *argv[12 + TSC_MAX_ARGS] = {
		AGENT_BIN, id, mgr, sd, img, "--dsm-listen=127.0.0.1:0"};
	int n = 6;
	pid_t pid;

	snprintf(id, sizeof(id), "--node-id=node%d", i + 1);
	snprintf(mgr, sizeof(mgr), "--manager=%s", c->agent_addr);
	snprintf(sd, sizeof(sd), "--state-dir=%s/agent%d", c->dir, i + 1);
	snprintf(img, sizeof(img), "--image-dir=%s", GUEST_IMAGES);
	snprintf(log, sizeof(log), "%s/agent%d.log", c->dir, i + 1);
	snprintf(cert, sizeof(cert), "node-node%d", i + 1);
	add_tls(c, cert, argv, &n, tls);
	add_args(argv, &n, (int)(sizeof(argv) / sizeof(argv[0])),
		 c->o.agent_args);
	/* The child inherits the environment at fork: set, spawn, unset. */
	for (int k = 0; env && env[k]; k++)
		putenv((char *)env[k]);
	pid = ts_spawn(argv, log);
	for (int k = 0; env && env[k]; k++) {
		char key[64];

		snprintf(key, sizeof(key), "%.*s", (int)strcspn(env[k], "="),
			 env[k]);
		unsetenv(key);
	}
	c->agents[i] = pid;
	return pid;
}

struct node_wait {
	struct tsc_cluster *c;
	char node[16];
	long long old_incarnation;
};

static bool node_renewed(void *arg)
{
	struct node_wait *w = arg;
	json_t *j = tsc_ctl_json(CELLCTL_BIN, w->c->ctl_addr,
				 TSC_WORDS("node", "info", w->node));
	const char *st = json_string_value(json_object_get(j, "state"));
	const char *dsm = json_string_value(json_object_get(j, "dsm_addr"));
	bool ok = st && strcmp(st, "up") == 0 && dsm && dsm[0] &&
		  json_integer_value(json_object_get(j, "incarnation")) !=
			  w->old_incarnation;

	json_decref(j);
	return ok;
}

void tsc_cluster_agent_restart(struct tsc_cluster *c, int i,
			       const char *const *env)
{
	struct node_wait w = {.c = c};
	json_t *j;

	snprintf(w.node, sizeof(w.node), "node%d", i + 1);
	j = tsc_ctl_json(CELLCTL_BIN, c->ctl_addr,
			 TSC_WORDS("node", "info", w.node));
	w.old_incarnation =
		json_integer_value(json_object_get(j, "incarnation"));
	json_decref(j);
	ts_stop(c->agents[i], SIGTERM, 5000);
	assert_true(tsc_cluster_agent(c, i, env) > 0);
	assert_true(ts_wait_for(node_renewed, &w, 10000));
}

static bool vdiskd_listening(void *arg)
{
	struct tsc_cluster *c = arg;
	char path[800], *s;
	bool ok;

	snprintf(path, sizeof(path), "%s/vdiskd.addr", c->store);
	s = ts_read_file(path);
	ok = s && sscanf(s, "nbd=%63s admin=%63s", c->nbd, c->admin) == 2;
	free(s);
	return ok;
}

pid_t tsc_cluster_vdiskd(struct tsc_cluster *c)
{
	char st[800], li[100], ad[100], log[800], tls[4][800];
	char *argv[10] = {VDISKD_BIN, st, li, ad};
	int n = 4;

	snprintf(st, sizeof(st), "%s/vdiskd.addr", c->store);
	unlink(st);
	snprintf(st, sizeof(st), "--store=%s", c->store);
	snprintf(li, sizeof(li), "--listen=%s",
		 c->nbd[0] ? c->nbd : "127.0.0.1:0");
	snprintf(ad, sizeof(ad), "--admin-listen=%s",
		 c->admin[0] ? c->admin : "127.0.0.1:0");
	snprintf(log, sizeof(log), "%s/vdiskd.log", c->dir);
	add_tls(c, "disk-server-vdiskd", argv, &n, tls);
	argv[n] = NULL;
	c->vdiskd = ts_spawn(argv, log);
	assert_true(c->vdiskd > 0);
	assert_true(ts_wait_for(vdiskd_listening, c, 5000));
	return c->vdiskd;
}

struct dsm_wait {
	struct tsc_cluster *c;
	int n;
};

static bool dsm_up(void *arg)
{
	struct dsm_wait *w = arg;
	json_t *j = tsc_ctl_json(CELLCTL_BIN, w->c->ctl_addr,
				 TSC_WORDS("node", "list")),
	       *node;
	size_t i;
	int k = 0;

	json_array_foreach(json_object_get(j, "nodes"), i, node)
	{
		const char *a =
			json_string_value(json_object_get(node, "dsm_addr"));
		const char *s =
			json_string_value(json_object_get(node, "state"));

		k += a && a[0] && s && strcmp(s, "up") == 0;
	}
	json_decref(j);
	return k >= w->n;
}

bool tsc_cluster_wait_dsm(struct tsc_cluster *c, int n, unsigned timeout_ms)
{
	struct dsm_wait w = {c, n};

	return ts_wait_for(dsm_up, &w, timeout_ms);
}

static bool disks_reachable(void *arg)
{
	struct tsc_cluster *c = arg;

	return TSC_CTL(c, NULL, "disk", "list") == 0;
}

void tsc_cluster_start(struct tsc_cluster *c, const char *prefix,
		       const struct tsc_cluster_opts *o)
{
	memset(c, 0, sizeof(*c));
	c->o = *o;
	assert_true(o->nodes >= 1 && o->nodes <= TSC_MAX_NODES);
	c->dir = ts_tmpdir(prefix);
	tsc_ca_make(c->dir);
	snprintf(c->store, sizeof(c->store), "%s/store", c->dir);
	if (o->before)
		o->before(c);
	if (o->vdiskd)
		tsc_cluster_vdiskd(c);
	tsc_cluster_manager(c, NULL);
	for (int i = 0; i < o->nodes; i++)
		assert_true(tsc_cluster_agent(c, i, NULL) > 0);
	/* The DSM addresses arrive with the first heartbeats. */
	assert_true(tsc_cluster_wait_dsm(c, o->nodes, 10000));
	if (o->cell) {
		assert_int_equal(TSC_CTL(c, NULL, "cell", "create", o->cell),
				 0);
		for (int i = 0; i < o->nodes; i++) {
			char node[16];

			snprintf(node, sizeof(node), "node%d", i + 1);
			assert_int_equal(TSC_CTL(c, NULL, "cell", "add-node",
						 o->cell, node),
					 0);
		}
	}
	if (o->vdiskd)
		assert_true(ts_wait_for(disks_reachable, c, 5000));
}

void tsc_cluster_stop(struct tsc_cluster *c)
{
	ts_kill_all();
	tsc_ca_forget();
	tsc_dir_done(c->dir);
	c->dir = NULL;
}

int tsc_cluster_setup(void **state, struct tsc_cluster *c, const char *prefix,
		      const struct tsc_cluster_opts *o)
{
	tsc_cluster_start(c, prefix, o);
	*state = c;
	return 0;
}

int tsc_cluster_teardown(void **state)
{
	tsc_cluster_stop(*state);
	return 0;
}

const char *tsc_cluster_vm_state(struct tsc_cluster *c, const char *vm)
{
	static char s[32];

	return tsc_ctl_field(CELLCTL_BIN, c->ctl_addr, "state",
			     TSC_WORDS("vm", "info", vm), s, sizeof(s));
}
