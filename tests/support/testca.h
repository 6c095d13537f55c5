/*
 * CAs and certificates for the tests of TLS (testca.c): two CAs to
 * issue from, and certificates a cell's CA would never issue (cellctl
 * ca makes only valid ones).
 */
#ifndef CELL_TEST_CA_H
#define CELL_TEST_CA_H

#include <stddef.h>
#include <stdint.h>

#include "cell/ca.h"

/* A new directory /tmp/PREFIX.XXXXXX into top (256 bytes), holding two
 * CAs: top/ca (ca) and top/other (other), 300 bytes each. Asserts. */
void tca_two_cas(const char *prefix, char *top, char *ca, char *other);
/* Issues ROLE-NAME in CA dir (its serial into *serial, if not NULL).
 * Asserts. */
void tca_issue(const char *dir, enum cell_role role, const char *name,
	       uint64_t *serial);

/* Writes CA_DIR/certs/FILE.crt and .key: a certificate of role ou and
 * name cn, signed by the CA in ca_dir, that ended yesterday. Asserts
 * (cmocka) that the CA's files can be read. */
void tca_issue_expired(const char *ca_dir, const char *ou, const char *cn,
		       const char *file);

#endif
