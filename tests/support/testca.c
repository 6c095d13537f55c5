/*
 * Certificates the cell's CA would never issue (testca.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "testca.h"

void tca_two_cas(const char *prefix, char *top, char *ca, char *other)
{
	char err[600];

	snprintf(top, 256, "/tmp/%s.XXXXXX", prefix);
	assert_non_null(mkdtemp(top));
	snprintf(ca, 300, "%s/ca", top);
	snprintf(other, 300, "%s/other", top);
	if (cell_ca_init(ca, "t", 0, err, sizeof(err)) ||
	    cell_ca_init(other, "t", 0, err, sizeof(err)))
		fail_msg("cannot make the test CAs: %s", err);
}

void tca_issue(const char *dir, enum cell_role role, const char *name,
	       uint64_t *serial)
{
	struct cell_ca_issue q = {.role = role, .name = name};
	char err[600];

	if (cell_ca_issue(dir, &q, serial, NULL, NULL, err, sizeof(err)))
		fail_msg("issue %s: %s", name, err);
}

static FILE *open_in(const char *dir, const char *file, const char *mode)
{
	char p[600];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, file);
	f = fopen(p, mode);
	if (!f)
		fail_msg("cannot open %s", p);
	return f;
}

static void name_entry(X509 *x, const char *field, const char *value)
{
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), field,
				   MBSTRING_UTF8, (const unsigned char *)value,
				   -1, -1, 0);
}

void tca_issue_expired(const char *ca_dir, const char *ou, const char *cn,
		       const char *file)
{
	char name[300];
	FILE *f;
	EVP_PKEY *cak, *k = EVP_EC_gen("P-256");
	X509 *cax, *x = X509_new();

	f = open_in(ca_dir, "ca.key", "r");
	cak = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	f = open_in(ca_dir, "ca.crt", "r");
	cax = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_true(k && x && cak && cax);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 900);
	X509_gmtime_adj(X509_getm_notBefore(x), -3 * 86400);
	X509_gmtime_adj(X509_getm_notAfter(x), -86400);
	X509_set_pubkey(x, k);
	name_entry(x, "OU", ou);
	name_entry(x, "CN", cn);
	X509_set_issuer_name(x, X509_get_subject_name(cax));
	assert_true(X509_sign(x, cak, EVP_sha256()) > 0);
	snprintf(name, sizeof(name), "certs/%s.crt", file);
	f = open_in(ca_dir, name, "w");
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(name, sizeof(name), "certs/%s.key", file);
	f = open_in(ca_dir, name, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	X509_free(cax);
	EVP_PKEY_free(k);
	EVP_PKEY_free(cak);
}
