/*
 * Mutual TLS on the RPC layer (common/src/tls.c, rpc.c) with
 * certificates of the cell's CA (ca.c): a server that takes admins and
 * viewers answers them and knows who they are; a node certificate, a
 * certificate of another CA, a revoked one, an expired one, a plain
 * client and a client that wants another role of the server are each
 * refused with a reason; the refusals are counted.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/thread.h>

#include "cell/ca.h"
#include "cell/log.h"
#include "cell/rpc.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "testca.h"

#define T_ASK	CELLMON__MSG_TYPE__MSG_NODE_INFO
#define T_REPLY CELLMON__MSG_TYPE__MSG_NODE_INFO_REPLY

static char top[256], ca[300], other[300];
static struct event_base *base;
static struct cell_rpc_listener *lis;
static struct cell_tls *server_tls;
static pthread_t thr;
static int port;

/* Answers with "ROLE:NAME" of the certificate the call came with. */
static void on_ask(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct cell_rpc_conn *c = cell_rpc_call_conn(call);
	Cellmon__NodeInfoReply r = CELLMON__NODE_INFO_REPLY__INIT;
	Cellmon__NodeInfo n = CELLMON__NODE_INFO__INIT;
	char who[100];

	(void)msg;
	(void)arg;
	snprintf(who, sizeof(who), "%s:%s",
		 cell_role_name(cell_rpc_conn_peer_role(c)),
		 cell_rpc_conn_peer_name(c));
	n.id = who;
	r.node = &n;
	cell_rpc_reply(call, T_REPLY, &r.base);
}

static const struct cell_rpc_method methods[] = {{T_ASK, on_ask}, {0, NULL}};
static struct cell_rpc_config scfg = {
	.types = cellproto_types, .methods = methods, .log_module = "test"};

static void on_accept(struct cell_rpc_conn *c, void *arg)
{
	(void)c;
	(void)arg;
}

static void *serve(void *arg)
{
	(void)arg;
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void path(char *out, const char *dir, const char *file)
{
	snprintf(out, 400, "%s/certs/%s", dir, file);
}

static int setup(void **state)
{
	char err[600], crt[400], key[400], crl[400], ca_crt[400];
	struct cell_tls_config tc;
	struct cell_ca_entry *v;
	size_t n;

	(void)state;
	cell_log_set_level(CELL_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN); /* as the daemons and cellctl do */
	evthread_use_pthreads();
	tca_two_cas("cellmon-test-tls", top, ca, other);
	tca_issue(ca, CELL_ROLE_MANAGER, "mgr", NULL);
	tca_issue(ca, CELL_ROLE_ADMIN, "alice", NULL);
	tca_issue(ca, CELL_ROLE_VIEWER, "grafana", NULL);
	tca_issue(ca, CELL_ROLE_NODE, "node1", NULL);
	tca_issue(ca, CELL_ROLE_ADMIN, "bob", NULL);
	tca_issue(other, CELL_ROLE_ADMIN, "eve", NULL);
	tca_issue_expired(ca, "admin", "old", "admin-old");
	cell_ca_list(ca, &v, &n, err, sizeof(err));
	assert_string_equal(v[4].name, "bob");
	if (cell_ca_revoke(ca, v[4].serial, err, sizeof(err)))
		return -1;
	free(v);
	snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", ca);
	snprintf(crl, sizeof(crl), "%s/crl.pem", ca);
	path(crt, ca, "manager-mgr.crt");
	path(key, ca, "manager-mgr.key");
	tc = (struct cell_tls_config){ca_crt, crt, key, crl,
				      CELL_ROLE_BIT(CELL_ROLE_ADMIN) |
					      CELL_ROLE_BIT(CELL_ROLE_VIEWER)};
	if (cell_tls_new(&tc, &server_tls, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	scfg.tls = server_tls;
	base = event_base_new();
	if (cell_rpc_listen(base, "127.0.0.1:0", &scfg, on_accept, NULL, &lis))
		return -1;
	port = cell_rpc_listener_port(lis);
	return pthread_create(&thr, NULL, serve, NULL);
}

static int teardown(void **state)
{
	(void)state;
	event_base_loopexit(base, NULL);
	pthread_join(thr, NULL);
	cell_rpc_listener_free(lis);
	event_base_free(base);
	cell_tls_free(server_tls);
	return cell_remove_tree(top);
}

/* One call with the certificate dir/certs/FILE.{crt,key}; the server
 * must show role server_role. status, and the reply's id in who. */
static int ask(const char *dir, const char *file, unsigned server_role,
	       char *who, size_t wlen, char *err, size_t errlen)
{
	char crt[400], key[400], ca_crt[400], name[100], addr[64];
	struct cell_tls_config tc = {ca_crt, crt, key, NULL, server_role};
	struct cell_rpc_config cfg = {.types = cellproto_types,
				      .log_module = "client"};
	struct cell_tls *t = NULL;
	Cellmon__NodeInfoRequest req = CELLMON__NODE_INFO_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int rc;

	snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", ca);
	snprintf(name, sizeof(name), "%s.crt", file);
	path(crt, dir, name);
	snprintf(name, sizeof(name), "%s.key", file);
	path(key, dir, name);
	if (file[0]) {
		rc = cell_tls_new(&tc, &t, err, errlen);
		assert_int_equal(rc, 0);
		cfg.tls = t;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	req.id = "x";
	rc = cell_rpc_call_sync(addr, &cfg, T_ASK, &req.base, T_REPLY, 2000,
				&reply, err, errlen);
	who[0] = '\0';
	if (!rc)
		snprintf(who, wlen, "%s",
			 ((Cellmon__NodeInfoReply *)reply)->node->id);
	protobuf_c_message_free_unpacked(reply, NULL);
	cell_tls_free(t);
	return rc;
}

#define MGR CELL_ROLE_BIT(CELL_ROLE_MANAGER)

static void test_tls_admin_and_viewer_answered(void **state)
{
	char who[100], err[700];

	(void)state;
	assert_int_equal(
		ask(ca, "admin-alice", MGR, who, sizeof(who), err, sizeof(err)),
		0);
	assert_string_equal(who, "admin:alice");
	assert_int_equal(ask(ca, "viewer-grafana", MGR, who, sizeof(who), err,
			     sizeof(err)),
			 0);
	assert_string_equal(who, "viewer:grafana");
}

static void test_tls_strangers_refused(void **state)
{
	static const struct {
		const char *dir, *file, *why;
	} bad[] = {
		/* a role this server does not take */
		{ca, "node-node1",
		 "a node certificate ('node1') has no business"},
		{other, "admin-eve", "not signed by this cell's CA"},
		{ca, "admin-bob", "'bob': certificate revoked"},
		{ca, "admin-old", "'old': certificate has expired"},
	};
	uint64_t e0[CELL_RPC_ERR_KINDS], e1[CELL_RPC_ERR_KINDS];
	char who[100], err[700];
	int rc;

	(void)state;
	cell_rpc_errors(e0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = ask(bad[i].dir, bad[i].file, MGR, who, sizeof(who), err,
			 sizeof(err));
		printf("# %s: %d %s\n", bad[i].file, rc, err);
		assert_int_equal(rc, -EACCES);
		assert_non_null(strstr(err, bad[i].why));
		assert_string_equal(who, "");
	}
	/* a plain client gets nothing either */
	rc = ask(ca, "", 0, who, sizeof(who), err, sizeof(err));
	printf("# plain: %d %s\n", rc, err);
	assert_int_not_equal(rc, 0);
	cell_rpc_errors(e1);
	/* the server counted each refusal (the client's side counts its
	 * own failed connects) */
	assert_true(e1[CELL_RPC_ERR_TLS] >= e0[CELL_RPC_ERR_TLS] + 4);
}

/* The client checks the server too: a server that is not the role the
 * client wants is left at the handshake, with the reason. */
static void test_tls_client_checks_server_role(void **state)
{
	char who[100], err[700];
	int rc;

	(void)state;
	rc = ask(ca, "admin-alice", CELL_ROLE_BIT(CELL_ROLE_DISK), who,
		 sizeof(who), err, sizeof(err));
	assert_int_equal(rc, -EACCES);
	assert_non_null(strstr(err, "manager certificate ('mgr')"));
	assert_non_null(strstr(err, "TLS with 127.0.0.1"));
}

/* Files that are missing or do not belong together are refused when
 * the TLS is set up, naming the file. */
static void test_tls_bad_files_refused(void **state)
{
	char crt[400], key[400], ca_crt[400], err[600];
	struct cell_tls_config tc = {ca_crt, crt, key, NULL, 0};
	struct cell_tls *t = NULL;

	(void)state;
	snprintf(ca_crt, sizeof(ca_crt), "%s/ca.crt", ca);
	path(crt, ca, "admin-alice.crt");
	path(key, ca, "viewer-grafana.key");
	assert_int_equal(cell_tls_new(&tc, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not match"));
	path(key, ca, "nope.key");
	assert_int_equal(cell_tls_new(&tc, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "nope.key"));
	tc.key = "";
	assert_int_equal(cell_tls_new(&tc, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tls_key"));
	assert_null(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_admin_and_viewer_answered),
		cmocka_unit_test(test_tls_strangers_refused),
		cmocka_unit_test(test_tls_client_checks_server_role),
		cmocka_unit_test(test_tls_bad_files_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
