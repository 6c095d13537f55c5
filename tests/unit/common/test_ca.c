/*
 * The cell's CA (common/src/ca.c): what it issues verifies against its
 * certificate with OpenSSL's own chain check, carries the role and name
 * asked for, stops verifying once revoked (with the CRL it writes), and
 * bad requests change nothing.
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "cell/ca.h"
#include "cell/util.h"

static char dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/cellmon-test-ca.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	strcat(dir, "/ca"); /* made by init */
	return 0;
}

static int teardown(void **state)
{
	char top[256];

	(void)state;
	snprintf(top, sizeof(top), "%.*s", (int)(strlen(dir) - 3), dir);
	return cell_remove_tree(top);
}

static X509 *load_crt(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

/* OpenSSL's verdict on crt against the CA (and its CRL when crl). */
static int verify(const char *crt, bool crl)
{
	char path[300];
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509 *x = load_crt(crt);
	int ok, e;

	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	assert_int_equal(X509_STORE_load_file(st, path), 1);
	if (crl) {
		FILE *f;
		X509_CRL *c;

		snprintf(path, sizeof(path), "%s/crl.pem", dir);
		f = fopen(path, "r");
		assert_non_null(f);
		c = PEM_read_X509_CRL(f, NULL, NULL, NULL);
		fclose(f);
		assert_non_null(c);
		X509_STORE_add_crl(st, c);
		X509_CRL_free(c);
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	}
	assert_non_null(x);
	X509_STORE_CTX_init(ctx, st, x, NULL);
	ok = X509_verify_cert(ctx);
	e = X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(x);
	return ok == 1 ? 0 : e;
}

static void test_ca_issues_roles_that_verify(void **state)
{
	static const enum cell_role roles[] = {CELL_ROLE_NODE, CELL_ROLE_ADMIN,
					       CELL_ROLE_VIEWER, CELL_ROLE_DISK,
					       CELL_ROLE_MANAGER};
	char err[600], crt[4096], key[4096], name[64];
	struct cell_ca_entry *v;
	struct stat st;
	enum cell_role role;
	uint64_t serial;
	size_t n;

	(void)state;
	assert_int_equal(cell_ca_init(dir, "local", 0, err, sizeof(err)), 0);
	snprintf(crt, sizeof(crt), "%s/ca.key", dir);
	assert_int_equal(stat(crt, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		struct cell_ca_issue q = {.role = roles[i], .name = "n1"};

		if (roles[i] == CELL_ROLE_DISK)
			q.sans = "IP:127.0.0.1,DNS:localhost";
		assert_int_equal(cell_ca_issue(dir, &q, &serial, crt, key, err,
					       sizeof(err)),
				 0);
		assert_int_equal(serial, i + 2); /* the CA's is 1 */
		assert_int_equal(verify(crt, true), 0);
		assert_int_equal(stat(key, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_int_equal(cell_cert_identity(crt, &role, name,
						    sizeof(name), err,
						    sizeof(err)),
				 0);
		assert_int_equal(role, roles[i]);
		assert_string_equal(name, "n1");
	}
	assert_int_equal(cell_ca_list(dir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 5);
	assert_int_equal(v[1].role, CELL_ROLE_ADMIN);
	assert_int_equal(v[4].serial, 6);
	assert_int_equal(v[0].revoked, 0);
	free(v);
}

static void test_ca_revoked_fails_with_crl(void **state)
{
	char err[600], a[4096], b[4096];
	struct cell_ca_issue q = {.role = CELL_ROLE_NODE, .name = "node1"};
	struct cell_ca_entry *v;
	uint64_t sa, sb;
	size_t n;

	(void)state;
	assert_int_equal(cell_ca_init(dir, "local", 0, err, sizeof(err)), 0);
	assert_int_equal(cell_ca_issue(dir, &q, &sa, a, NULL, err, sizeof(err)),
			 0);
	q.name = "node2";
	assert_int_equal(cell_ca_issue(dir, &q, &sb, b, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(cell_ca_revoke(dir, sa, err, sizeof(err)), 0);
	assert_int_equal(verify(a, true), X509_V_ERR_CERT_REVOKED);
	assert_int_equal(verify(a, false), 0); /* without the CRL: fine */
	assert_int_equal(verify(b, true), 0);
	assert_int_equal(cell_ca_revoke(dir, sa, err, sizeof(err)), -EALREADY);
	assert_non_null(strstr(err, "revoked already"));
	assert_int_equal(cell_ca_revoke(dir, 99, err, sizeof(err)), -ENOENT);
	assert_int_equal(cell_ca_list(dir, &v, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_true(v[0].revoked > 0);
	assert_int_equal(v[1].revoked, 0);
	free(v);
}

/* Another CA's certificate does not verify against this one. */
static void test_ca_other_ca_refused(void **state)
{
	char err[600], crt[4096], other[300];
	struct cell_ca_issue q = {.role = CELL_ROLE_ADMIN, .name = "eve"};

	(void)state;
	snprintf(other, sizeof(other), "%s-other", dir);
	assert_int_equal(cell_ca_init(dir, "local", 0, err, sizeof(err)), 0);
	assert_int_equal(cell_ca_init(other, "local", 0, err, sizeof(err)), 0);
	assert_int_equal(
		cell_ca_issue(other, &q, NULL, crt, NULL, err, sizeof(err)), 0);
	assert_int_not_equal(verify(crt, false), 0);
	cell_remove_tree(other);
}

static void test_ca_bad_requests_change_nothing(void **state)
{
	char err[600], idx[300], before[512] = "", after[512] = "";
	struct cell_ca_issue q = {.role = CELL_ROLE_NODE, .name = "node1"};
	FILE *f;

	(void)state;
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)),
		-ENOENT); /* no CA yet */
	assert_non_null(strstr(err, "cellctl ca init"));
	assert_int_equal(cell_ca_init(dir, "bad name", 0, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(cell_ca_init(dir, "local", 0, err, sizeof(err)), 0);
	assert_int_equal(cell_ca_init(dir, "local", 0, err, sizeof(err)),
			 -EEXIST);
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)), 0);
	snprintf(idx, sizeof(idx), "%s/index", dir);
	f = fopen(idx, "r");
	assert_non_null(f);
	assert_true(fread(before, 1, sizeof(before) - 1, f) > 0);
	fclose(f);
	q.name = "../x";
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)),
		-EINVAL);
	q.name = "node2";
	q.role = CELL_ROLE_NONE;
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)),
		-EINVAL);
	q.role = CELL_ROLE_NODE;
	q.days = 40000;
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)),
		-EINVAL);
	q.days = 0;
	q.sans = "IP:not-an-address";
	assert_int_equal(
		cell_ca_issue(dir, &q, NULL, NULL, NULL, err, sizeof(err)),
		-EINVAL);
	f = fopen(idx, "r");
	assert_non_null(f);
	assert_true(fread(after, 1, sizeof(after) - 1, f) > 0);
	fclose(f);
	assert_string_equal(before, after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_ca_issues_roles_that_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_revoked_fails_with_crl,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_other_ca_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_ca_bad_requests_change_nothing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
