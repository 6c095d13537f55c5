/*
 * A cell's own certificate authority (ca.c, OpenSSL): the CA that
 * `cellctl ca` keeps in a directory of the operator's, the certificates
 * it issues with the holder's role in them, and the revocation list the
 * daemons read. The directory:
 *
 *   ca.key      the CA's private key (EC P-256), mode 0600
 *   ca.crt      its self-signed certificate
 *   crl.pem     the revocation list, signed by the CA, rewritten on
 *               every revoke
 *   index       one line per certificate issued: serial, role, name,
 *               not-after and revocation time (Unix seconds, 0: none)
 *   certs/      ROLE-NAME.crt and ROLE-NAME.key (0600) unless the
 *               caller names another place
 *
 * A certificate's subject is O=cellmon, OU=<role>, CN=<name>: the role
 * is what a link checks (a node may register, an admin may change the
 * cell, a viewer may only look), the name what it is checked against
 * (a node's id).
 */
#ifndef CELL_CA_H
#define CELL_CA_H

#include <stddef.h>
#include <stdint.h>

enum cell_role {
	CELL_ROLE_NONE,
	CELL_ROLE_NODE,	  /* an agent: registers as the node it names */
	CELL_ROLE_ADMIN,  /* cellctl with every right */
	CELL_ROLE_VIEWER, /* cellctl that may only read */
	CELL_ROLE_DISK,	  /* the disk server, vdiskd */
	CELL_ROLE_MANAGER,
	CELL_ROLES,
};

/* "node", "admin", "viewer", "disk-server", "manager" ("" for NONE). */
const char *cell_role_name(enum cell_role r);
/* CELL_ROLE_NONE for a name that is not a role. */
enum cell_role cell_role_parse(const char *s);

#define CELL_CA_DAYS   3650 /* a CA's validity by default */
#define CELL_CERT_DAYS 365  /* an issued certificate's */

/* Makes a CA in dir (created 0700 when missing) for the cell named
 * cell. -EEXIST when dir already holds one (nothing is changed). */
int cell_ca_init(const char *dir, const char *cell, int days, char *err,
		 size_t errlen);

struct cell_ca_issue {
	enum cell_role role;
	const char *name; /* CN: a node's id, an admin's name, ... */
	/* extra subjectAltName entries, "IP:127.0.0.1,DNS:host" (NULL:
	 * only DNS:name) */
	const char *sans;
	int days; /* 0: CELL_CERT_DAYS */
	/* where to write PREFIX.crt and PREFIX.key (NULL: the CA's
	 * certs/ROLE-NAME) */
	const char *out_prefix;
};

/* Issues a key and certificate; *serial is its serial, crt and key
 * (each at least 4096 bytes, may be NULL) the files written. */
int cell_ca_issue(const char *dir, const struct cell_ca_issue *req,
		  uint64_t *serial, char *crt, char *key, char *err,
		  size_t errlen);

/* Revokes the certificate of that serial: marks it in the index and
 * rewrites crl.pem. -ENOENT when the CA never issued it, -EALREADY when
 * it was revoked before. */
int cell_ca_revoke(const char *dir, uint64_t serial, char *err, size_t errlen);

struct cell_ca_entry {
	uint64_t serial;
	enum cell_role role;
	char name[64];
	int64_t not_after, revoked; /* Unix seconds; revoked 0: not */
};

/* The certificates the CA issued, oldest first (free *out). */
int cell_ca_list(const char *dir, struct cell_ca_entry **out, size_t *n,
		 char *err, size_t errlen);

/* The role and name (CN) of a certificate file's subject, for checks and
 * tests; the TLS links read them off the peer's certificate the same
 * way (cell_cert_identity_x509 in ca.c). */
int cell_cert_identity(const char *crt_path, enum cell_role *role, char *name,
		       size_t len, char *err, size_t errlen);

/* The role (OU) and name (CN) of an OpenSSL X509 (passed as void * so
 * this header needs no OpenSSL): what cell_cert_identity and the TLS
 * links read. */
void cell_x509_identity(const void *x509, enum cell_role *role, char *name,
			size_t len);

#endif
