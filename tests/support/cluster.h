/*
 * A cell on loopback for the integration and fault tests: one manager,
 * N agents (node1..nodeN) and, when asked, cellmon-vdiskd, each with its
 * state and log under the test's directory and every port ephemeral.
 * Every process goes through ts_spawn(), so it dies with the test even
 * when an assertion fails. The binaries are the build's (compile
 * definitions of this library).
 *
 * Every link is mutual TLS, as a deployed cell's: the cluster makes its
 * CA in <dir>/ca (tsc_ca_make) with a certificate for each daemon, and
 * the test's cellctl calls use its admin certificate (CELLMON_CA, _CERT
 * and _KEY in this process's environment).
 *
 * Start-up waits until every node is up with a DSM address, then puts
 * them all in the named cell; with vdiskd, until the manager reaches it.
 * Restarts (a killed manager, agent or disk server) come back at the
 * addresses they had, so the others find them again.
 */
#ifndef CELL_TEST_CLUSTER_H
#define CELL_TEST_CLUSTER_H

#include <stdbool.h>
#include <sys/types.h>

#define TSC_MAX_NODES 4
#define TSC_MAX_ARGS  8

struct tsc_cluster;

struct tsc_cluster_opts {
	int nodes;	  /* agents, 1..TSC_MAX_NODES */
	const char *cell; /* a cell of every node; NULL: none made */
	bool vdiskd;	  /* a disk server, handed to the manager */
	/* extra options, NULL-terminated: every agent's, the manager's */
	const char *agent_args[TSC_MAX_ARGS];
	const char *manager_args[TSC_MAX_ARGS];
	/* runs once the directory exists, before any process starts (an
	 * offline base import into the store, say); may be NULL */
	void (*before)(struct tsc_cluster *c);
};

struct tsc_cluster {
	struct tsc_cluster_opts o;
	char *dir;			   /* the test's directory */
	char agent_addr[64], ctl_addr[64]; /* the manager's, once bound */
	char store[700];		   /* vdiskd's store: <dir>/store */
	char nbd[64], admin[64];	   /* vdiskd's, once bound */
	pid_t manager, vdiskd, agents[TSC_MAX_NODES];
};

/* A test cell's CA in DIR/ca (cellctl ca's layout) with the certificates
 * certs/manager-manager, disk-server-vdiskd, admin-test, viewer-test
 * and node-node1..node-node<TSC_MAX_NODES>; sets CELLMON_CA,
 * CELLMON_CERT and CELLMON_KEY to the admin's, and puts the admin's
 * files in DIR/ca/x509 as qemu's tls-creds-x509 wants them (ca-cert.pem,
 * client-cert.pem, client-key.pem). Asserts. */
void tsc_ca_make(const char *dir);
/* Unsets what tsc_ca_make set, once its directory is gone. */
void tsc_ca_forget(void);
/* The four options (--tls-ca, --tls-cert, --tls-key, --tls-crl) that
 * give a daemon certificate certs/CERT of DIR/ca, into opts. */
void tsc_tls_opts(const char *dir, const char *cert, char opts[4][800]);

/* Makes the directory and starts everything (asserts on failure). */
void tsc_cluster_start(struct tsc_cluster *c, const char *prefix,
		       const struct tsc_cluster_opts *o);
/* Kills every process and removes the directory (kept when
 * CELLMON_KEEP_TEST_DIR is set). */
void tsc_cluster_stop(struct tsc_cluster *c);
/* As cmocka group setup and teardown: setup starts c and keeps it in
 * *state; teardown stops the cluster in *state. */
int tsc_cluster_setup(void **state, struct tsc_cluster *c, const char *prefix,
		      const struct tsc_cluster_opts *o);
int tsc_cluster_teardown(void **state);
/* `vm info VM`'s state ("none" when the command failed); a static
 * buffer, overwritten by the next call. */
const char *tsc_cluster_vm_state(struct tsc_cluster *c, const char *vm);

/* (Re)starts the manager on its state dir, at the agent address it had
 * (the first time: a new one), a new ctl port; extra: one more option or
 * NULL. Waits for its addresses; asserts. */
void tsc_cluster_manager(struct tsc_cluster *c, const char *extra);
/* (Re)starts agent i (0-based, node i+1); env: "KEY=VALUE" strings the
 * agent alone gets (NULL-terminated, or NULL). Returns its pid. */
pid_t tsc_cluster_agent(struct tsc_cluster *c, int i, const char *const *env);
/* Stops agent i (SIGTERM), starts it again with env as above, and waits
 * until its node is up as a new incarnation with a DSM address. */
void tsc_cluster_agent_restart(struct tsc_cluster *c, int i,
			       const char *const *env);
/* (Re)starts the disk server, at the addresses it had; waits until it
 * listens. Returns its pid. */
pid_t tsc_cluster_vdiskd(struct tsc_cluster *c);
/* Waits until n nodes are up with a DSM address. */
bool tsc_cluster_wait_dsm(struct tsc_cluster *c, int n, unsigned timeout_ms);

#define TSC_CTL(c, out, ...) \
	tsc_ctl(CELLCTL_BIN, (c)->ctl_addr, out, TSC_WORDS(__VA_ARGS__))

#endif
