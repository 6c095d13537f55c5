/*
 * The DSM's peer links under mutual TLS (dsm/src/net.c with cfg.tls):
 * two nodes with node certificates of the cell's CA share memory and
 * pass notes, and a dialer that reconnects resumes its session; every
 * stranger is refused before its first message is applied, with a log
 * line at the refusing node that names the reason: a certificate of
 * another CA, an admin's certificate, a revoked one, an expired one, a
 * node certificate
 * with a name that is not the peer's (either end), a plain dialer at a
 * TLS node and a TLS dialer at a plain one.
 *
 * Node 0 dials node 1 (the lower id dials), so node 1 is the accepting
 * end in every case.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/ca.h"
#include "cell/log.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "dsm/dsm.h"
#include "testca.h"
#include "testsupport.h"

#define PAGES 4

static char top[256], ca[300], other[300], logpath[320];
static FILE *log_file;
static bool in_child;

/* A failure: cmocka's, or in a forked case (below) the child's exit. */
#define CHECK(cond, ...)                       \
	do {                                   \
		if (cond)                      \
			break;                 \
		if (!in_child)                 \
			fail_msg(__VA_ARGS__); \
		fprintf(stderr, __VA_ARGS__);  \
		fputc('\n', stderr);           \
		_exit(1);                      \
	} while (0)

struct end {
	struct cell_tls *tls;
	struct dsm_node *n;
	atomic_int notes;
};

static int setup(void **state)
{
	char err[600];
	uint64_t serial;

	(void)state;
	tca_two_cas("cellmon-test-dsm-tls", top, ca, other);
	tca_issue(ca, CELL_ROLE_NODE, "na", NULL);
	tca_issue(ca, CELL_ROLE_NODE, "nb", NULL);
	tca_issue(ca, CELL_ROLE_NODE, "nc", NULL);
	tca_issue(ca, CELL_ROLE_ADMIN, "alice", NULL);
	tca_issue(ca, CELL_ROLE_NODE, "nr", &serial);
	tca_issue(other, CELL_ROLE_NODE, "na", NULL);
	tca_issue_expired(ca, "node", "nx", "node-nx");
	if (cell_ca_revoke(ca, serial, err, sizeof(err)))
		return -1;
	/* the nodes' log lines, to find each refusal's */
	snprintf(logpath, sizeof(logpath), "%s/log", top);
	log_file = fopen(logpath, "w+");
	if (!log_file)
		return -1;
	setvbuf(log_file, NULL, _IOLBF, 0);
	cell_log_set_stream(log_file);
	cell_log_set_level(CELL_LOG_INFO);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cell_log_set_stream(stderr);
	fclose(log_file);
	return getenv("CELLMON_KEEP_TEST_DIR") ? 0 : cell_remove_tree(top);
}

static void on_note(uint16_t from, uint32_t epoch, uint8_t kind, uint32_t a,
		    uint32_t b, void *arg)
{
	struct end *e = arg;

	(void)from;
	(void)epoch;
	(void)kind;
	(void)b;
	if (a == 42)
		atomic_fetch_add(&e->notes, 1);
}

/* Node id with the certificate ROLE-NAME of CA dir (NULL: plain TCP). */
static void start(struct end *e, uint16_t id, const char *dir, const char *cert)
{
	struct dsm_node_config c = {.id = id,
				    .listen = "127.0.0.1:0",
				    .prefetch_max = 1,
				    .epoch = 1};
	char cac[400], crt[400], key[400], crl[400], err[600];

	memset(e, 0, sizeof(*e));
	if (dir) {
		struct cell_tls_config tc = {
			cac, crt, key, crl, CELL_ROLE_BIT(CELL_ROLE_NODE),
			true};

		snprintf(cac, sizeof(cac), "%s/ca.crt", dir);
		snprintf(crt, sizeof(crt), "%s/certs/%s.crt", dir, cert);
		snprintf(key, sizeof(key), "%s/certs/%s.key", dir, cert);
		snprintf(crl, sizeof(crl), "%s/crl.pem", dir);
		if (access(crl, R_OK))
			tc.crl = NULL;
		CHECK(!cell_tls_new(&tc, &e->tls, err, sizeof(err)),
		      "TLS for %s: %s", cert, err);
		c.tls = e->tls;
	}
	CHECK(!dsm_node_create(&c, &e->n), "node %u does not start", id);
	dsm_node_on_note(e->n, on_note, e);
}

static void stop(struct end *e)
{
	dsm_node_destroy(e->n);
	cell_tls_free(e->tls);
}

/* Each end adds the other under its name; the acceptor (1) first, so
 * the dialer's connection finds the name set. */
static void link_pair(struct end *e, const char *name0, const char *name1)
{
	char addr[64];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", dsm_node_port(e[0].n));
	CHECK(!dsm_node_add_peer(e[1].n, 0, addr, name0), "add peer 0");
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", dsm_node_port(e[1].n));
	CHECK(!dsm_node_add_peer(e[0].n, 1, addr, name1), "add peer 1");
}

static bool note_arrived(void *arg)
{
	struct end *e = arg;

	return atomic_load(&e->notes) > 0;
}

static uint64_t refused_of(struct end *e)
{
	struct dsm_node_stats st;

	dsm_node_stats(e->n, &st);
	return st.peers_refused;
}

struct refusal {
	struct end *e;
	int at; /* the end that must refuse */
};

static bool refused(void *arg)
{
	struct refusal *r = arg;

	return refused_of(&r->e[r->at]) > 0;
}

static void clear_log(void)
{
	CHECK(!ftruncate(fileno(log_file), 0), "truncate the log");
	rewind(log_file);
}

/* The log holds a line with both a and b. */
static bool logged(const char *a, const char *b)
{
	char *s = ts_read_file(logpath);
	bool ok = false;

	for (char *line = s ? strtok(s, "\n") : NULL; line && !ok;
	     line = strtok(NULL, "\n"))
		ok = strstr(line, a) && strstr(line, b);
	free(s);
	return ok;
}

static void test_dsm_tls_pair_shares_memory_and_resumes(void **state)
{
	uint16_t members[2] = {0, 1};
	struct dsm_region_config rc = {
		7, PAGES * DSM_PAGE, DSM_POLICY_ONE, 1, members, 2, 0};
	struct dsm_region *r[2];
	volatile uint64_t *m[2];
	struct dsm_node_stats st[2];
	struct end e[2];
	char addr[64];

	(void)state;
	start(&e[0], 0, ca, "node-na");
	start(&e[1], 1, ca, "node-nb");
	link_pair(e, "na", "nb");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dsm_region_create(e[i].n, &rc, &r[i]), 0);
		m[i] = dsm_region_map(r[i]);
	}
	/* writes at one end are read at the other, both ways, a page of
	 * data crossing the TLS link each time */
	for (uint64_t k = 1; k <= 200; k++) {
		m[k & 1][(k % PAGES) * (DSM_PAGE / 8)] = k;
		assert_int_equal(m[1 - (k & 1)][(k % PAGES) * (DSM_PAGE / 8)],
				 k);
	}
	assert_int_equal(dsm_node_send_note(e[0].n, 1, 1, 42, 0), 0);
	assert_true(ts_wait_for(note_arrived, &e[1], 5000));
	assert_true(logged("connected to node 1", "certificate of 'nb'"));
	assert_true(logged("node 0 connected", "certificate of 'na'"));

	/* the dialer reconnects: the session is resumed, and the pages are
	 * still coherent */
	assert_int_equal(dsm_node_remove_peer(e[0].n, 1), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", dsm_node_port(e[1].n));
	assert_int_equal(dsm_node_add_peer(e[0].n, 1, addr, "nb"), 0);
	for (uint64_t k = 201; k <= 260; k++) {
		m[k & 1][(k % PAGES) * (DSM_PAGE / 8)] = k;
		assert_int_equal(m[1 - (k & 1)][(k % PAGES) * (DSM_PAGE / 8)],
				 k);
	}
	dsm_node_stats(e[0].n, &st[0]);
	dsm_node_stats(e[1].n, &st[1]);
	assert_int_equal(st[0].peers_refused + st[1].peers_refused, 0);
	assert_int_equal(st[0].tls_resumed, 1);
	assert_int_equal(st[1].tls_resumed, 1);
	assert_true(logged("connected to node 1", "session resumed"));
	for (int i = 0; i < 2; i++)
		dsm_region_destroy(r[i]);
	stop(&e[0]);
	stop(&e[1]);
}

struct stranger {
	const char *what;
	/* each end's CA ("ca", "other", or "plain": no TLS) and
	 * certificate; the dialer is end 0 */
	const char *dir0, *cert0, *dir1, *cert1;
	const char *name0, *name1; /* names each end expects of the other */
	int at;			   /* the end that refuses */
	const char *reason;	   /* in its log line */
};

static const char *dir_of(const char *which)
{
	return strcmp(which, "plain") == 0   ? NULL
	       : strcmp(which, "other") == 0 ? other
					     : ca;
}

/* One case, in a child: the stranger dials (or is dialed), is refused
 * by the end the case says with its reason in the log, and nothing it
 * sends is applied. */
static void stranger_case(const struct stranger *c)
{
	const char *d0 = dir_of(c->dir0), *d1 = dir_of(c->dir1);
	struct end e[2];
	struct refusal rf = {e, c->at};

	start(&e[0], 0, d0, c->cert0);
	start(&e[1], 1, d1, c->cert1);
	link_pair(e, c->name0, c->name1);
	/* nothing gets through: not the note, whatever the retries */
	CHECK(!dsm_node_send_note(e[0].n, 1, 1, 42, 0), "note");
	CHECK(ts_wait_for(refused, &rf, 5000), "%s: node %d refused nothing",
	      c->what, c->at);
	usleep(300 * 1000);
	CHECK(atomic_load(&e[1].notes) == 0, "%s: the note was delivered",
	      c->what);
	CHECK(logged(c->at ? "refused a peer connection from 127.0.0.1"
			   : "refused node 1 at 127.0.0.1",
		     c->reason),
	      "%s: no log line with '%s' in:\n%s", c->what, c->reason,
	      ts_read_file(logpath));
	stop(&e[0]);
	stop(&e[1]);
}

static void test_dsm_tls_strangers_refused(void **state)
{
	static const struct stranger cases[] = {
		/* its own check fails first: it tells with an alert */
		{"another CA's node", "other", "node-na", "ca", "node-nb", "na",
		 "nb", 1, "tlsv1 alert unknown ca"},
		{"an admin", "ca", "admin-alice", "ca", "node-nb", "na", "nb",
		 1, "admin certificate ('alice') has no business"},
		{"a revoked node", "ca", "node-nr", "ca", "node-nb", "nr", "nb",
		 1, "certificate revoked"},
		{"an expired node", "ca", "node-nx", "ca", "node-nb", "nx",
		 "nb", 1, "'nx': certificate has expired"},
		{"a node claiming another's id", "ca", "node-nc", "ca",
		 "node-nb", "na", "nb", 1,
		 "it says it is node 0 ('na') with the certificate of node "
		 "'nc'"},
		{"an acceptor with another node's certificate", "ca", "node-na",
		 "ca", "node-nc", "na", "nb", 0,
		 "the certificate of node 'nc', not of node 'nb'"},
		{"a plain dialer", "plain", NULL, "ca", "node-nb", "na", "nb",
		 1, "a plain hello (the peer runs without TLS)"},
		{"a TLS dialer at a plain node", "ca", "node-na", "plain", NULL,
		 "na", "nb", 1, "the peer runs with TLS, this node without"},
	};

	(void)state;
	/* Each case in a child of its own: the refusal log lines are rate
	 * limited per call site, and the cases would share the budget. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = -1;
		pid_t pid;

		print_message("%s\n", cases[i].what);
		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			in_child = true;
			clear_log();
			stranger_case(&cases[i]);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			fail_msg("%s: failed (status %d)", cases[i].what, st);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsm_tls_pair_shares_memory_and_resumes),
		cmocka_unit_test(test_dsm_tls_strangers_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
