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
};

#define CELL_ROLE_BIT(r) (1u << (r))

/* Loads the files; a bad or missing one is refused with err naming it.
 * 0 or -errno. */
int cell_tls_new(const struct cell_tls_config *c, struct cell_tls **out,
		 char *err, size_t errlen);
int cell_tls_reload(struct cell_tls *t, char *err, size_t errlen);
void cell_tls_free(struct cell_tls *t);

/* A new SSL for one connection; NULL when out of memory. */
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

#endif
