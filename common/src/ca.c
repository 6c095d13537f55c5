/*
 * A cell's certificate authority (cell/ca.h) on OpenSSL's libcrypto:
 * EC P-256 keys, SHA-256 signatures, X.509 v3 with the extensions a TLS
 * 1.3 peer checks. Issues and revokes hold an flock on the directory's
 * lock file, so two cellctl calls never hand out one serial twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cell/ca.h"
#include "cell/util.h"

#define PATH_LEN 4096
#define CRL_DAYS 30 /* a CRL's nextUpdate; every revoke rewrites it */

static const char *const role_names[CELL_ROLES] = {
	[CELL_ROLE_NONE] = "",
	[CELL_ROLE_NODE] = "node",
	[CELL_ROLE_ADMIN] = "admin",
	[CELL_ROLE_VIEWER] = "viewer",
	[CELL_ROLE_DISK] = "disk-server",
	[CELL_ROLE_MANAGER] = "manager",
};

const char *cell_role_name(enum cell_role r)
{
	return r < CELL_ROLES ? role_names[r] : "";
}

enum cell_role cell_role_parse(const char *s)
{
	for (int r = CELL_ROLE_NODE; s && r < CELL_ROLES; r++)
		if (!strcmp(s, role_names[r]))
			return (enum cell_role)r;
	return CELL_ROLE_NONE;
}

static int __attribute__((format(printf, 4, 5)))
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	unsigned long e = ERR_get_error();
	size_t off;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	off = strlen(err);
	if (e && off + 3 < errlen) {
		snprintf(err + off, errlen - off, " (");
		ERR_error_string_n(e, err + off + 2, errlen - off - 2);
		off = strlen(err);
		if (off + 1 < errlen)
			snprintf(err + off, errlen - off, ")");
	}
	ERR_clear_error();
	return rc;
}

static void path_of(char *out, const char *dir, const char *name)
{
	snprintf(out, PATH_LEN, "%s/%s", dir, name);
}

/* ---- PEM files ---- */

/* Writes what fn puts into a memory BIO to path, atomically, in mode. */
static int write_pem(const char *path, unsigned mode,
		     int (*fn)(BIO *b, void *obj), void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc;

	if (!b)
		return -ENOMEM;
	if (!fn(b, obj)) {
		BIO_free(b);
		return -EIO;
	}
	len = BIO_get_mem_data(b, &data);
	rc = cell_write_file_atomic_mode(path, data, (size_t)len, mode);
	BIO_free(b);
	return rc;
}

static int pem_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int pem_crt(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

static int pem_crl(BIO *b, void *c)
{
	return PEM_write_bio_X509_CRL(b, c);
}

static X509 *read_crt(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

static EVP_PKEY *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

/* ---- certificates ---- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e)
		return 0;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok;
}

/* A certificate for key with the subject's fields, valid from an hour
 * ago (clocks of a cell are not exact) for days. */
static X509 *new_crt(EVP_PKEY *key, uint64_t serial, const char *ou,
		     const char *cn, int days)
{
	X509 *x = X509_new();
	X509_NAME *n;

	if (!x)
		return NULL;
	n = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) ||
	    !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) ||
	    !X509_set_pubkey(x, key) ||
	    !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
					(const unsigned char *)"cellmon", -1,
					-1, 0) ||
	    (ou && !X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8,
					       (const unsigned char *)ou, -1,
					       -1, 0)) ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0)) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int cell_ca_init(const char *dir, const char *cell, int days, char *err,
		 size_t errlen)
{
	char path[PATH_LEN], cn[128];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	struct stat st;
	int rc;

	if (!cell_name_valid(cell))
		return fail(err, errlen, -EINVAL,
			    "cell name '%.64s': use " CELL_NAME_RULE, cell);
	path_of(path, dir, "ca.key");
	if (stat(path, &st) == 0)
		return fail(err, errlen, -EEXIST,
			    "%s exists: %s already holds a CA (nothing "
			    "changed)",
			    path, dir);
	if (mkdir(dir, 0700) && errno != EEXIST)
		return fail(err, errlen, -errno, "cannot make %s: %s", dir,
			    strerror(errno));
	snprintf(cn, sizeof(cn), "cellmon CA of cell %s", cell);
	key = EVP_EC_gen("P-256");
	x = key ? new_crt(key, 1, NULL, cn, days ? days : CELL_CA_DAYS) : NULL;
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
	    !add_ext(x, x, NID_basic_constraints,
		     "critical,CA:TRUE,pathlen:0") ||
	    !add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    !add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		rc = fail(err, errlen, -EIO, "cannot make the CA certificate");
		goto out;
	}
	path_of(path, dir, "ca.key");
	rc = write_pem(path, 0600, pem_key, key);
	if (!rc) {
		path_of(path, dir, "ca.crt");
		rc = write_pem(path, 0644, pem_crt, x);
	}
	if (!rc) {
		path_of(path, dir, "index");
		rc = cell_write_file_atomic(path, "", 0);
	}
	if (rc) {
		rc = fail(err, errlen, rc, "cannot write %s: %s", path,
			  strerror(-rc));
		goto out;
	}
	rc = cell_ca_revoke(dir, 0, err, errlen); /* the empty CRL */
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* ---- the index ---- */

static int read_index(const char *dir, struct cell_ca_entry **out, size_t *n,
		      char *err, size_t errlen)
{
	char path[PATH_LEN], line[256], role[32];
	struct cell_ca_entry *v = NULL, *nv, e;
	size_t cap = 0;
	FILE *f;

	*out = NULL;
	*n = 0;
	path_of(path, dir, "index");
	f = fopen(path, "r");
	if (!f)
		return fail(err, errlen, -errno,
			    "%s: %s (is %s a CA made by cellctl ca init?)",
			    path, strerror(errno), dir);
	while (fgets(line, sizeof(line), f)) {
		memset(&e, 0, sizeof(e));
		if (sscanf(line, "%" SCNu64 " %31s %63s %" SCNd64 " %" SCNd64,
			   &e.serial, role, e.name, &e.not_after,
			   &e.revoked) != 5 ||
		    !(e.role = cell_role_parse(role))) {
			fclose(f);
			free(v);
			return fail(err, errlen, -EBADMSG,
				    "%s: a line that is not serial role name "
				    "not-after revoked: '%.60s'",
				    path, line);
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				fclose(f);
				free(v);
				return fail(err, errlen, -ENOMEM,
					    "out of memory");
			}
			v = nv;
		}
		v[(*n)++] = e;
	}
	fclose(f);
	*out = v;
	return 0;
}

static int write_index(const char *dir, const struct cell_ca_entry *v, size_t n)
{
	char path[PATH_LEN], *buf = malloc(n * 160 + 1);
	size_t off = 0;
	int rc;

	if (!buf)
		return -ENOMEM;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(
			buf + off, 160,
			"%" PRIu64 " %s %s %" PRId64 " %" PRId64 "\n",
			v[i].serial, cell_role_name(v[i].role), v[i].name,
			v[i].not_after, v[i].revoked);
	path_of(path, dir, "index");
	rc = cell_write_file_atomic(path, buf, off);
	free(buf);
	return rc;
}

static int lock_dir(const char *dir)
{
	char path[PATH_LEN];
	int fd;

	path_of(path, dir, "lock");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX)) {
		close(fd);
		return -errno;
	}
	return fd;
}

static int lock_failed(const char *dir, int rc, char *err, size_t errlen)
{
	if (rc == -ENOENT)
		return fail(err, errlen, rc,
			    "no CA in %s (make one with cellctl ca init)", dir);
	return fail(err, errlen, rc, "cannot lock %s/lock: %s", dir,
		    strerror(-rc));
}

/* The CA's key and certificate. */
static int load_ca(const char *dir, EVP_PKEY **key, X509 **crt, char *err,
		   size_t errlen)
{
	char path[PATH_LEN];

	path_of(path, dir, "ca.key");
	*key = read_key(path);
	if (!*key)
		return fail(err, errlen, errno == ENOENT ? -ENOENT : -EIO,
			    "cannot read the CA key %s (is %s a CA made by "
			    "cellctl ca init?)",
			    path, dir);
	path_of(path, dir, "ca.crt");
	*crt = read_crt(path);
	if (!*crt) {
		EVP_PKEY_free(*key);
		return fail(err, errlen, -EIO,
			    "cannot read the CA certificate %s", path);
	}
	return 0;
}

/* ---- issue, revoke, list ---- */

int cell_ca_issue(const char *dir, const struct cell_ca_issue *q,
		  uint64_t *serial, char *crt, char *key, char *err,
		  size_t errlen)
{
	char crt_path[PATH_LEN], key_path[PATH_LEN], san[1200];
	const char *eku;
	struct cell_ca_entry *v = NULL, *nv;
	EVP_PKEY *ca_key = NULL, *k = NULL;
	X509 *ca = NULL, *x = NULL;
	size_t n = 0;
	uint64_t next = 2; /* the CA's own is 1 */
	int lock, rc, days = q->days ? q->days : CELL_CERT_DAYS;

	if (q->role <= CELL_ROLE_NONE || q->role >= CELL_ROLES)
		return fail(err, errlen, -EINVAL, "no role given");
	if (!q->name || !cell_name_valid(q->name))
		return fail(err, errlen, -EINVAL,
			    "name '%.64s': use " CELL_NAME_RULE,
			    q->name ? q->name : "");
	if (days < 1 || days > 36500)
		return fail(err, errlen, -EINVAL, "days %d: 1 to 36500", days);
	if (q->sans && (strlen(q->sans) > 1000 || strpbrk(q->sans, " \n")))
		return fail(err, errlen, -EINVAL,
			    "--san '%.60s': a list like "
			    "IP:127.0.0.1,DNS:host.example",
			    q->sans);
	lock = lock_dir(dir);
	if (lock < 0)
		return lock_failed(dir, lock, err, errlen);
	rc = load_ca(dir, &ca_key, &ca, err, errlen);
	if (!rc)
		rc = read_index(dir, &v, &n, err, errlen);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (v[i].serial >= next)
			next = v[i].serial + 1;
	if (q->out_prefix) {
		snprintf(crt_path, sizeof(crt_path), "%s.crt", q->out_prefix);
		snprintf(key_path, sizeof(key_path), "%s.key", q->out_prefix);
	} else {
		snprintf(crt_path, sizeof(crt_path), "%s/certs", dir);
		if (mkdir(crt_path, 0700) && errno != EEXIST) {
			rc = fail(err, errlen, -errno, "cannot make %s: %s",
				  crt_path, strerror(errno));
			goto out;
		}
		snprintf(crt_path, sizeof(crt_path), "%s/certs/%s-%s.crt", dir,
			 cell_role_name(q->role), q->name);
		snprintf(key_path, sizeof(key_path), "%s/certs/%s-%s.key", dir,
			 cell_role_name(q->role), q->name);
	}
	eku = q->role == CELL_ROLE_ADMIN || q->role == CELL_ROLE_VIEWER
		      ? "clientAuth"
		      : "serverAuth,clientAuth";
	snprintf(san, sizeof(san), "DNS:%s%s%s", q->name, q->sans ? "," : "",
		 q->sans ? q->sans : "");
	k = EVP_EC_gen("P-256");
	x = k ? new_crt(k, next, cell_role_name(q->role), q->name, days) : NULL;
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
	    !add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_ext(x, ca, NID_key_usage, "critical,digitalSignature") ||
	    !add_ext(x, ca, NID_ext_key_usage, eku) ||
	    !add_ext(x, ca, NID_subject_alt_name, san) ||
	    !add_ext(x, ca, NID_subject_key_identifier, "hash") ||
	    !add_ext(x, ca, NID_authority_key_identifier, "keyid:always") ||
	    !X509_sign(x, ca_key, EVP_sha256())) {
		rc = fail(err, errlen, -EINVAL,
			  "cannot make the certificate (is --san '%s' valid?)",
			  q->sans ? q->sans : "");
		goto out;
	}
	rc = write_pem(key_path, 0600, pem_key, k);
	if (rc) {
		rc = fail(err, errlen, rc, "cannot write %s: %s", key_path,
			  strerror(-rc));
		goto out;
	}
	rc = write_pem(crt_path, 0644, pem_crt, x);
	if (rc) {
		rc = fail(err, errlen, rc, "cannot write %s: %s", crt_path,
			  strerror(-rc));
		goto out;
	}
	nv = realloc(v, (n + 1) * sizeof(*v));
	if (!nv) {
		rc = fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	v = nv;
	memset(&v[n], 0, sizeof(v[n]));
	v[n].serial = next;
	v[n].role = q->role;
	snprintf(v[n].name, sizeof(v[n].name), "%s", q->name);
	v[n].not_after = (int64_t)time(NULL) + (int64_t)days * 86400;
	rc = write_index(dir, v, n + 1);
	if (rc) {
		rc = fail(err, errlen, rc, "cannot write %s/index: %s", dir,
			  strerror(-rc));
		goto out;
	}
	if (serial)
		*serial = next;
	if (crt)
		snprintf(crt, PATH_LEN, "%s", crt_path);
	if (key)
		snprintf(key, PATH_LEN, "%s", key_path);
out:
	X509_free(x);
	EVP_PKEY_free(k);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	free(v);
	close(lock);
	return rc;
}

/* The CRL of the index's revoked entries, signed, into dir/crl.pem. */
static int write_crl(const char *dir, const struct cell_ca_entry *v, size_t n,
		     EVP_PKEY *ca_key, X509 *ca, char *err, size_t errlen)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL)),
		  *next = X509_time_adj_ex(NULL, CRL_DAYS, 0, NULL);
	char path[PATH_LEN];
	int rc = 0;

	if (!crl || !now || !next || !X509_CRL_set_version(crl, 1) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) ||
	    !X509_CRL_set1_lastUpdate(crl, now) ||
	    !X509_CRL_set1_nextUpdate(crl, next))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < n; i++) {
		X509_REVOKED *r;
		ASN1_INTEGER *sn;
		ASN1_TIME *when;

		if (!v[i].revoked)
			continue;
		r = X509_REVOKED_new();
		sn = ASN1_INTEGER_new();
		when = ASN1_TIME_set(NULL, (time_t)v[i].revoked);
		if (!r || !sn || !when ||
		    !ASN1_INTEGER_set_uint64(sn, v[i].serial) ||
		    !X509_REVOKED_set_serialNumber(r, sn) ||
		    !X509_REVOKED_set_revocationDate(r, when) ||
		    !X509_CRL_add0_revoked(crl, r)) {
			X509_REVOKED_free(r);
			rc = -ENOMEM;
		}
		ASN1_INTEGER_free(sn);
		ASN1_TIME_free(when);
	}
	if (!rc &&
	    (!X509_CRL_sort(crl) || !X509_CRL_sign(crl, ca_key, EVP_sha256())))
		rc = -EIO;
	if (!rc) {
		path_of(path, dir, "crl.pem");
		rc = write_pem(path, 0644, pem_crl, crl);
	}
	if (rc)
		rc = fail(err, errlen, rc, "cannot write %s/crl.pem", dir);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
	return rc;
}

int cell_ca_revoke(const char *dir, uint64_t serial, char *err, size_t errlen)
{
	struct cell_ca_entry *v = NULL;
	EVP_PKEY *ca_key = NULL;
	X509 *ca = NULL;
	size_t n = 0, i;
	int lock = lock_dir(dir), rc;

	if (lock < 0)
		return lock_failed(dir, lock, err, errlen);
	rc = load_ca(dir, &ca_key, &ca, err, errlen);
	if (!rc)
		rc = read_index(dir, &v, &n, err, errlen);
	if (rc)
		goto out;
	for (i = 0; serial && i < n && v[i].serial != serial; i++)
		;
	if (serial && i == n) {
		rc = fail(err, errlen, -ENOENT,
			  "serial %" PRIu64 ": this CA issued no such "
			  "certificate (cellctl ca list shows them)",
			  serial);
		goto out;
	}
	if (serial && v[i].revoked) {
		rc = fail(err, errlen, -EALREADY,
			  "serial %" PRIu64 " (%s %s) is revoked already",
			  serial, cell_role_name(v[i].role), v[i].name);
		goto out;
	}
	if (serial) {
		v[i].revoked = (int64_t)time(NULL);
		rc = write_index(dir, v, n);
		if (rc) {
			rc = fail(err, errlen, rc, "cannot write %s/index: %s",
				  dir, strerror(-rc));
			goto out;
		}
	}
	rc = write_crl(dir, v, n, ca_key, ca, err, errlen);
out:
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	free(v);
	close(lock);
	return rc;
}

int cell_ca_list(const char *dir, struct cell_ca_entry **out, size_t *n,
		 char *err, size_t errlen)
{
	return read_index(dir, out, n, err, errlen);
}

/* The first entry of nid in name as text, or "". */
static void name_field(X509_NAME *name, int nid, char *out, size_t len)
{
	int i = X509_NAME_get_index_by_NID(name, nid, -1);
	ASN1_STRING *s =
		i < 0 ? NULL
		      : X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	int n = s ? ASN1_STRING_length(s) : 0;

	if (!s || n <= 0 || (size_t)n >= len) {
		out[0] = '\0';
		return;
	}
	memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
	out[n] = '\0';
}

void cell_x509_identity(const void *x509, enum cell_role *role, char *name,
			size_t len)
{
	X509_NAME *subject = X509_get_subject_name(x509);
	char ou[32];

	name_field(subject, NID_organizationalUnitName, ou, sizeof(ou));
	name_field(subject, NID_commonName, name, len);
	*role = cell_role_parse(ou);
}

int cell_cert_identity(const char *crt_path, enum cell_role *role, char *name,
		       size_t len, char *err, size_t errlen)
{
	X509 *x = read_crt(crt_path);

	if (!x)
		return fail(err, errlen, -EIO,
			    "cannot read a certificate from %s", crt_path);
	cell_x509_identity(x, role, name, len);
	X509_free(x);
	return 0;
}
