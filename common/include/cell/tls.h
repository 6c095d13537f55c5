/*
 * Mutual TLS 1.3 for cellmon's links (tls.c, OpenSSL's libssl): both
 * ends show a certificate from the cell's CA (cell/ca.h), each checks
 * the other's against the CA and its revocation list, and the link then
 * knows who is at the other end: the role and name in the certificate.
 *
 * A struct cell_tls is one end's credentials and rules, shared by every
 * connection it makes or accepts; cell_tls_reload re-reads the CRL (and
 * the certificate and key: rotation) for the connections made after it,
 * which is what a daemon does on SIGHUP.
 */
#ifndef CELL_TLS_H
#define CELL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "cell/config.h"

#include "cell/ca.h"

struct ssl_st;
struct cell_tls;

struct cell_tls_config {
	const char *ca;	  /* the cell's ca.crt */
	const char *cert; /* this end's certificate */
	const char *key;  /* and its key */
	const char *crl;  /* the CA's crl.pem; NULL or "": none */
	/* The roles a peer may have (bit 1 << role); 0: any role of the
	 * cell's CA. */
	unsigned peer_roles;
	/* TLS 1.3 session tickets, so a link that reconnects (the DSM's)
	 * resumes without the certificate exchange. A reload makes new
	 * ticket keys: tickets from before it are not taken. */
	bool resume;
};

#define CELL_ROLE_BIT(r) (1u << (r))

/* Loads the files; a bad or missing one is refused with err naming it.
 * 0 or -errno. */
int cell_tls_new(const struct cell_tls_config *c, struct cell_tls **out,
		 char *err, size_t errlen);
int cell_tls_reload(struct cell_tls *t, char *err, size_t errlen);
/* Counts the reloads: a client keeping sessions to resume drops those
 * from before the last one (the CRL may have changed since). */
unsigned cell_tls_generation(struct cell_tls *t);
void cell_tls_free(struct cell_tls *t);

/* A new SSL for one connection; NULL when out of memory. A blocking
 * user (NBD) may turn on read-ahead on it (SSL_set_read_ahead: a record
 * in one recv); a bufferevent must not: libevent would not see the bytes
 * OpenSSL holds, and the connection stalls. */
struct ssl_st *cell_tls_ssl(struct cell_tls *t, bool server);

/* After the handshake: the peer's role and name (CN). 0, or -EACCES
 * with err saying why the peer is not one this end accepts (no
 * certificate, a role not in peer_roles). */
int cell_tls_check_peer(const struct cell_tls *t, struct ssl_st *ssl,
			enum cell_role *role, char *name, size_t len, char *err,
			size_t errlen);

/* What OpenSSL said about the last failure on this thread, "" if
 * nothing ("certificate verify failed: certificate revoked"). */
void cell_tls_last_error(struct ssl_st *ssl, char *out, size_t len);

/*
 * A daemon's TLS settings, the same keys in each one's config table:
 * tls_ca, tls_cert, tls_key, tls_crl and insecure. Its config struct has
 * a struct cell_tls_settings member; the table gets
 * CELL_TLS_CONFIG_KEYS(offsetof(struct ..., that member)).
 */
struct cell_tls_settings {
	char ca[512], cert[512], key[512], crl[512];
	bool insecure;
};

#define CELL_TLS_CONFIG_KEYS(off)                                             \
	{"tls_ca",                                                            \
	 CELL_CFG_STRING,                                                     \
	 (off) + offsetof(struct cell_tls_settings, ca),                      \
	 512,                                                                 \
	 0,                                                                   \
	 0,                                                                   \
	 "",                                                                  \
	 "the cell's CA certificate (cellctl ca init: DIR/ca.crt); with "     \
	 "tls_cert and tls_key: mutual TLS 1.3 on every link"},               \
		{"tls_cert",                                                  \
		 CELL_CFG_STRING,                                             \
		 (off) + offsetof(struct cell_tls_settings, cert),            \
		 512,                                                         \
		 0,                                                           \
		 0,                                                           \
		 "",                                                          \
		 "this daemon's certificate (cellctl ca issue)"},             \
		{"tls_key",                                                   \
		 CELL_CFG_STRING,                                             \
		 (off) + offsetof(struct cell_tls_settings, key),             \
		 512,                                                         \
		 0,                                                           \
		 0,                                                           \
		 "",                                                          \
		 "its private key"},                                          \
		{"tls_crl",                                                   \
		 CELL_CFG_STRING,                                             \
		 (off) + offsetof(struct cell_tls_settings, crl),             \
		 512,                                                         \
		 0,                                                           \
		 0,                                                           \
		 "",                                                          \
		 "the CA's revocation list (DIR/crl.pem), re-read on "        \
		 "SIGHUP; empty: none"},                                      \
	{                                                                     \
		"insecure", CELL_CFG_BOOL,                                    \
			(off) + offsetof(struct cell_tls_settings, insecure), \
			0, 0, 0, "false",                                     \
			"true: without tls_cert, plain TCP on every link "    \
			"(RPC, DSM, NBD), logged as a warning at start; "     \
			"false: refuse to start without TLS"                  \
	}

/* The TLS of one kind of link from the settings (peer_roles: whom the
 * link takes), or *out NULL for plain TCP when no certificate is set
 * and insecure allows it. 0, or -EINVAL with err saying what is missing
 * or which file is bad. */
int cell_tls_from_settings(const struct cell_tls_settings *s,
			   unsigned peer_roles, struct cell_tls **out,
			   char *err, size_t errlen);

/* The settings' own certificate: its role and name (CN), to check at
 * start that it is the daemon's (a node's id). */
int cell_tls_settings_identity(const struct cell_tls_settings *s,
			       enum cell_role *role, char *name, size_t len,
			       char *err, size_t errlen);

#endif
