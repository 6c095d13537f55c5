/*
 * Fuzz target: the accepting side of an RPC link with TLS (rpc.c over
 * tls.c), as a daemon runs it. The input is what a client sends, fed in
 * pieces into one end of a socketpair whose other end is a struct
 * cell_rpc_conn with the manager's TLS: malformed records, truncated or
 * mutated ClientHellos, junk after a handshake. The connection must be
 * refused or closed cleanly (the refusal path, its log line and its
 * counters), never crash, leak or answer a request. Built-in seed: the
 * ClientHello of a real OpenSSL client with an admin's certificate,
 * captured through a memory BIO. A CA and certificates are made once
 * per process in a temporary directory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "cell/ca.h"
#include "cell/log.h"
#include "cell/rpc.h"
#include "cell/tls.h"
#include "cell/util.h"
#include "cellproto/cellproto.h"
#include "fuzz.h"

static char dir[64];
static struct cell_tls *server, *client;
static int answered;

static void on_any(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	(void)msg;
	(void)arg;
	answered++; /* no request may get here without a handshake */
	cell_rpc_reply_error(call, -EPERM, "fuzz");
}

static const struct cell_rpc_method methods[] = {
	{CELLMON__MSG_TYPE__MSG_STATUS, on_any}, {0, NULL}};

static void cleanup(void)
{
	cell_tls_free(server);
	cell_tls_free(client);
	cell_remove_tree(dir);
}

static void setup(void)
{
	struct cell_ca_issue m = {.role = CELL_ROLE_MANAGER, .name = "mgr"};
	struct cell_ca_issue a = {.role = CELL_ROLE_ADMIN, .name = "alice"};
	char ca[128], crt[4096], key[4096], acrt[4096], akey[4096], err[600];
	struct cell_tls_config sc = {ca, crt, key, NULL,
				     CELL_ROLE_BIT(CELL_ROLE_ADMIN)};
	struct cell_tls_config cc = {ca, acrt, akey, NULL,
				     CELL_ROLE_BIT(CELL_ROLE_MANAGER)};

	if (server)
		return;
	cell_log_set_level(CELL_LOG_OFF);
	snprintf(dir, sizeof(dir), "/tmp/cellmon-fuzz-tls.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(ca, sizeof(ca), "%s/ca", dir);
	if (cell_ca_init(ca, "fuzz", 0, err, sizeof(err)) ||
	    cell_ca_issue(ca, &m, NULL, crt, key, err, sizeof(err)) ||
	    cell_ca_issue(ca, &a, NULL, acrt, akey, err, sizeof(err))) {
		fprintf(stderr, "fuzz_tls_accept: %s\n", err);
		abort();
	}
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", dir);
	if (cell_tls_new(&sc, &server, err, sizeof(err)) ||
	    cell_tls_new(&cc, &client, err, sizeof(err))) {
		fprintf(stderr, "fuzz_tls_accept: %s\n", err);
		abort();
	}
	atexit(cleanup);
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
	SSL *ssl;
	BIO *in, *out;
	char *p;
	long n;

	if (i != 0)
		return 0;
	setup();
	ssl = cell_tls_ssl(client, false);
	in = BIO_new(BIO_s_mem());
	out = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, in, out);
	SSL_connect(ssl); /* writes the ClientHello, then wants to read */
	n = BIO_get_mem_data(out, &p);
	n = n < 0 ? 0 : (size_t)n > cap ? (long)cap : n;
	memcpy(buf, p, (size_t)n);
	SSL_free(ssl);
	return (size_t)n;
}

static void closed(struct cell_rpc_conn *c, int reason, void *arg)
{
	(void)c;
	(void)reason;
	*(int *)arg = 1;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	struct cell_rpc_config cfg = {.types = cellproto_types,
				      .methods = methods,
				      .max_frame = 4096,
				      .log_module = "fuzz"};
	struct event_base *base;
	struct cell_rpc_conn *c;
	int sv[2], gone = 0;

	setup();
	cfg.tls = server;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	base = event_base_new();
	if (cell_rpc_conn_create(base, sv[0], &cfg, &c)) {
		close(sv[0]);
		close(sv[1]);
		event_base_free(base);
		return 0;
	}
	cell_rpc_conn_set_close_cb(c, closed, &gone);
	fuzz_feed(base, sv[1], data, size, &gone);
	if (!gone)
		cell_rpc_conn_close(c);
	close(sv[1]);
	event_base_free(base);
	/* without a client certificate nothing is a request */
	if (answered)
		abort();
	return 0;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif
