/*
 * Mutual TLS 1.3 (cell/tls.h). One SSL_CTX per end, swapped whole on a
 * reload (the connections already made keep the one they were made
 * with: OpenSSL counts its references).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cell/tls.h"

struct cell_tls {
	/* guards ctx: a reload swaps it while other threads (vdiskd's NBD
	 * clients) may be making connections from it */
	pthread_mutex_t mu;
	SSL_CTX *ctx;
	char ca[1024], cert[1024], key[1024], crl[1024];
	unsigned peer_roles;
	bool resume;
	unsigned generation; /* under mu */
};

static int fail(char *err, size_t errlen, int rc, const char *what,
		const char *path)
{
	unsigned long e = ERR_peek_last_error();
	char why[200] = "";

	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	snprintf(err, errlen, "%s %s%s%s", what, path, why[0] ? ": " : "", why);
	return rc;
}

static int load_crl(X509_STORE *st, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	X509_CRL *crl;
	int ok;

	if (!f) {
		snprintf(err, errlen, "cannot read the CRL %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (!crl)
		return fail(err, errlen, -EINVAL, "not a PEM CRL:", path);
	ok = X509_STORE_add_crl(st, crl);
	X509_CRL_free(crl);
	if (!ok)
		return fail(err, errlen, -EINVAL, "cannot use the CRL", path);
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	return 0;
}

static int make_ctx(struct cell_tls *t, SSL_CTX **out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	int rc;

	if (!ctx)
		return fail(err, errlen, -ENOMEM, "out of memory", "");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* AES-128-GCM first (OpenSSL's default puts AES-256 first): 128-bit
	 * security, and the cheapest per byte with AES-NI, which a page
	 * link and NBD feel (docs/benchmarks.md) */
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
				      "TLS_CHACHA20_POLY1305_SHA256:"
				      "TLS_AES_256_GCM_SHA384");
	/* per connection: cell_tls_ssl */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (t->resume) {
		/* one ticket per handshake; the accepting end needs a
		 * session id context to resume sessions with a client
		 * certificate (the ticket carries it and its verdict) */
		SSL_CTX_set_num_tickets(ctx, 1);
		SSL_CTX_set_session_id_context(
			ctx, (const unsigned char *)"cellmon", 7);
	} else {
		/* both ends check; no tickets to keep */
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	}
	/* a peer that exits without close_notify (cellctl) is an EOF like
	 * any other: the framing catches a cut frame */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_load_verify_file(ctx, t->ca) != 1) {
		rc = fail(err, errlen, -EINVAL,
			  "cannot read the CA certificate", t->ca);
		goto bad;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
		rc = fail(err, errlen, -EINVAL, "cannot read the certificate",
			  t->cert);
		goto bad;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) ==
		    X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, errlen,
				 "the key %s does not match the certificate %s",
				 t->key, t->cert);
			rc = -EINVAL;
		} else {
			rc = fail(err, errlen, -EINVAL, "cannot read the key",
				  t->key);
		}
		goto bad;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		rc = fail(err, errlen, -EINVAL,
			  "the key does not match the certificate", t->cert);
		goto bad;
	}
	if (t->crl[0]) {
		rc = load_crl(SSL_CTX_get_cert_store(ctx), t->crl, err, errlen);
		if (rc)
			goto bad;
	}
	*out = ctx;
	return 0;
bad:
	SSL_CTX_free(ctx);
	return rc;
}

int cell_tls_new(const struct cell_tls_config *c, struct cell_tls **out,
		 char *err, size_t errlen)
{
	struct cell_tls *t;
	int rc;

	if (!c->ca || !c->ca[0] || !c->cert || !c->cert[0] || !c->key ||
	    !c->key[0]) {
		snprintf(err, errlen,
			 "TLS needs the CA certificate, a certificate and its "
			 "key (tls_ca, tls_cert, tls_key)");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->ca, sizeof(t->ca), "%s", c->ca);
	snprintf(t->cert, sizeof(t->cert), "%s", c->cert);
	snprintf(t->key, sizeof(t->key), "%s", c->key);
	snprintf(t->crl, sizeof(t->crl), "%s", c->crl ? c->crl : "");
	t->peer_roles = c->peer_roles;
	t->resume = c->resume;
	rc = make_ctx(t, &t->ctx, err, errlen);
	if (rc) {
		free(t);
		return rc;
	}
	pthread_mutex_init(&t->mu, NULL);
	*out = t;
	return 0;
}

int cell_tls_reload(struct cell_tls *t, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	int rc = make_ctx(t, &ctx, err, errlen);

	if (rc)
		return rc; /* the old files stay in force */
	pthread_mutex_lock(&t->mu);
	SSL_CTX_free(t->ctx); /* connections made from it keep a reference */
	t->ctx = ctx;
	t->generation++;
	pthread_mutex_unlock(&t->mu);
	return 0;
}

unsigned cell_tls_generation(struct cell_tls *t)
{
	unsigned g;

	pthread_mutex_lock(&t->mu);
	g = t->generation;
	pthread_mutex_unlock(&t->mu);
	return g;
}

void cell_tls_free(struct cell_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* The accepting end lets the handshake finish whatever the client's
 * certificate, keeping the verdict (SSL_get_verify_result) for
 * cell_tls_check_peer: the connection then answers the client's first
 * request with why it is refused, instead of an alert the client may
 * never read (TLS 1.3 checks the client after the client has sent). */
static int keep_verdict(int ok, X509_STORE_CTX *ctx)
{
	(void)ok;
	(void)ctx;
	return 1;
}

SSL *cell_tls_ssl(struct cell_tls *t, bool server)
{
	SSL *ssl;

	pthread_mutex_lock(&t->mu);
	ssl = SSL_new(t->ctx);
	pthread_mutex_unlock(&t->mu);

	if (ssl && server) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, keep_verdict);
		SSL_set_accept_state(ssl);
	} else if (ssl) {
		SSL_set_verify(
			ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			NULL);
		SSL_set_connect_state(ssl);
	}
	return ssl;
}

int cell_tls_check_peer(const struct cell_tls *t, SSL *ssl,
			enum cell_role *role, char *name, size_t len, char *err,
			size_t errlen)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	long v = SSL_get_verify_result(ssl);

	*role = CELL_ROLE_NONE;
	name[0] = '\0';
	if (!x) {
		snprintf(err, errlen, "no certificate shown");
		return -EACCES;
	}
	cell_x509_identity(x, role, name, len);
	if (v != X509_V_OK) {
		snprintf(
			err, errlen, "the certificate of '%s': %s", name,
			v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
					v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
					v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
				? "not signed by this cell's CA"
				: X509_verify_cert_error_string(v));
		*role = CELL_ROLE_NONE;
		name[0] = '\0';
		return -EACCES;
	}
	if (!*role) {
		snprintf(err, errlen,
			 "the certificate of '%s' names no cellmon role (its "
			 "OU)",
			 name);
		return -EACCES;
	}
	if (t->peer_roles && !(t->peer_roles & CELL_ROLE_BIT(*role))) {
		snprintf(err, errlen,
			 "a %s certificate ('%s') has no business on this "
			 "link",
			 cell_role_name(*role), name);
		return -EACCES;
	}
	return 0;
}

void cell_tls_last_error(SSL *ssl, char *out, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	out[0] = '\0';
	if (e)
		ERR_error_string_n(e, out, len);
	if (v != X509_V_OK) {
		size_t off = strlen(out);

		snprintf(out + off, len - off, "%s%s", off ? ": " : "",
			 X509_verify_cert_error_string(v));
	}
}

int cell_tls_from_settings(const struct cell_tls_settings *s,
			   unsigned peer_roles, struct cell_tls **out,
			   char *err, size_t errlen)
{
	struct cell_tls_config c = {s->ca,  s->cert,	s->key,
				    s->crl, peer_roles, false};

	*out = NULL;
	if (!s->ca[0] && !s->cert[0] && !s->key[0]) {
		if (s->insecure)
			return 0;
		snprintf(err, errlen,
			 "no TLS configured: set tls_ca, tls_cert and tls_key "
			 "(certificates from cellctl ca), or insecure = true "
			 "for plain TCP");
		return -EINVAL;
	}
	if (!s->ca[0] || !s->cert[0] || !s->key[0]) {
		snprintf(err, errlen,
			 "TLS needs all of tls_ca, tls_cert and "
			 "tls_key (%s missing)",
			 !s->ca[0]     ? "tls_ca"
			 : !s->cert[0] ? "tls_cert"
				       : "tls_key");
		return -EINVAL;
	}
	return cell_tls_new(&c, out, err, errlen);
}

int cell_tls_settings_identity(const struct cell_tls_settings *s,
			       enum cell_role *role, char *name, size_t len,
			       char *err, size_t errlen)
{
	return cell_cert_identity(s->cert, role, name, len, err, errlen);
}
