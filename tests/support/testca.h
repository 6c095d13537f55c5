/*
 * Certificates a cell's CA would never issue, for the tests of TLS
 * refusals (testca.c, OpenSSL): cellctl ca makes only valid ones.
 */
#ifndef CELL_TEST_CA_H
#define CELL_TEST_CA_H

/* Writes CA_DIR/certs/FILE.crt and .key: a certificate of role ou and
 * name cn, signed by the CA in ca_dir, that ended yesterday. Asserts
 * (cmocka) that the CA's files can be read. */
void tca_issue_expired(const char *ca_dir, const char *ou, const char *cn,
		       const char *file);

#endif
