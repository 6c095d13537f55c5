/*
 * NBD server: handshake and transmission (see nbd.h). Every length a
 * client sends is checked before anything is allocated or read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cell/clock.h"
#include "cell/endian.h"
#include "cell/tls.h"
#include "nbd.h"

#define NBD_MAGIC	  0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC	  0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC	  0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY  0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE	  (1u << 0)
#define NBD_FLAG_NO_ZEROES	  (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES	  (1u << 1)

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
};

#define NBD_REP_ACK	     1u
#define NBD_REP_SERVER	     2u
#define NBD_REP_INFO	     3u
#define NBD_REP_ERR_UNSUP    (0x80000000u + 1)
#define NBD_REP_ERR_POLICY   (0x80000000u + 2)
#define NBD_REP_ERR_TLS_REQD (0x80000000u + 5)
#define NBD_REP_ERR_INVALID  (0x80000000u + 3)
#define NBD_REP_ERR_UNKNOWN  (0x80000000u + 6)

#define NBD_INFO_EXPORT	    0
#define NBD_INFO_BLOCK_SIZE 3

#define NBD_FLAG_HAS_FLAGS	   (1u << 0)
#define NBD_FLAG_READ_ONLY	   (1u << 1)
#define NBD_FLAG_SEND_FLUSH	   (1u << 2)
#define NBD_FLAG_SEND_FUA	   (1u << 3)
#define NBD_FLAG_SEND_TRIM	   (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN	   (1u << 8)

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};

#define NBD_CMD_FLAG_FUA     (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

#define NBD_EPERM     1
#define NBD_EIO	      5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75

struct conn {
	int fd;
	SSL *ssl;		       /* after STARTTLS */
	uint8_t rec[16 + (64u << 10)]; /* a small reply's one TLS record */
	/* why the TLS peer is not one we take ("" when it is) */
	char tls_refused[300];
	const struct nbd_exports *ex;
	struct nbd_conn_stats *st;
	void *disk;
	const struct nbd_disk_ops *ops;
	char export[NBD_EXPORT_MAX + 1];
	bool no_zeroes;
	uint8_t *buf; /* NBD_MAX_PAYLOAD */
	char *err;
	size_t errlen;
	int last_rc; /* of the last reply sent */
};

static int cfail(struct conn *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cfail(struct conn *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (c->err && c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int tls_fail(struct conn *c, const char *what)
{
	char why[300];

	cell_tls_last_error(c->ssl, why, sizeof(why));
	return cfail(c, -EPROTO, "TLS %s: %s", what,
		     why[0] ? why : "the client closed the connection");
}

/* A TLS call a signal interrupted (SIGHUP's reload; a socket with a
 * timeout is not restarted): made again. */
static bool tls_interrupted(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return errno == EINTR &&
	       (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		e == SSL_ERROR_SYSCALL);
}

/* SSL_write of all of buf (partial writes are off): 1, or <= 0. */
static int tls_write(SSL *ssl, const void *buf, int len)
{
	int r;

	while ((r = SSL_write(ssl, buf, len)) <= 0 && tls_interrupted(ssl, r))
		;
	return r;
}

static int recv_all(struct conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len && c->ssl) {
		int r = SSL_read(c->ssl, p,
				 len > 1u << 30 ? 1 << 30 : (int)len);

		if (r <= 0 && tls_interrupted(c->ssl, r))
			continue;
		if (r <= 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN)
			return cfail(c, -ECONNRESET,
				     "client closed the connection");
		if (r <= 0)
			return tls_fail(c, "receive");
		p += r;
		len -= (size_t)r;
	}
	while (len) {
		ssize_t r = recv(c->fd, p, len, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return cfail(c, -errno, "receive: %s", strerror(errno));
		if (r == 0)
			return cfail(c, -ECONNRESET,
				     "client closed the "
				     "connection");
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Reads and drops len bytes (a payload we refuse but must skip). */
static int skip(struct conn *c, uint64_t len)
{
	uint8_t tmp[4096];

	while (len) {
		size_t n = len > sizeof(tmp) ? sizeof(tmp) : (size_t)len;
		int rc = recv_all(c, tmp, n);

		if (rc)
			return rc;
		len -= n;
	}
	return 0;
}

static int send_iov(struct conn *c, struct iovec *iov, int n)
{
	/* over TLS a reply goes out as one record when it is small (its
	 * header and its data: one encryption, one send); a blocking
	 * SSL_write writes all of it or fails */
	if (c->ssl) {
		size_t total = 0, off = 0;

		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		if (n > 1 && total <= sizeof(c->rec)) {
			for (int i = 0; i < n; i++) {
				memcpy(c->rec + off, iov[i].iov_base,
				       iov[i].iov_len);
				off += iov[i].iov_len;
			}
			return tls_write(c->ssl, c->rec, (int)total) > 0
				       ? 0
				       : tls_fail(c, "send");
		}
	}
	for (; c->ssl && n > 0; iov++, n--)
		if (iov->iov_len &&
		    tls_write(c->ssl, iov->iov_base, (int)iov->iov_len) <= 0)
			return tls_fail(c, "send");
	while (n > 0) {
		ssize_t w = writev(c->fd, iov, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return cfail(c, -errno, "send: %s", strerror(errno));
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int send_all(struct conn *c, const void *buf, size_t len)
{
	struct iovec iov = {(void *)buf, len};

	return send_iov(c, &iov, 1);
}

/* ---- handshake ---- */

static int opt_reply(struct conn *c, uint32_t opt, uint32_t type,
		     const void *data, uint32_t len)
{
	uint8_t h[20];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, len}};

	cell_put64(h, NBD_REP_MAGIC);
	cell_put32(h + 8, opt);
	cell_put32(h + 12, type);
	cell_put32(h + 16, len);
	return send_iov(c, iov, len ? 2 : 1);
}

static int opt_error(struct conn *c, uint32_t opt, uint32_t type,
		     const char *msg)
{
	return opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint16_t tflags(const struct conn *c, void *d)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
		     NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;

	if (c->ops->zero)
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
	if (c->ops->readonly(d))
		f |= NBD_FLAG_READ_ONLY;
	return f;
}

static int opt_list(struct conn *c, uint32_t len)
{
	char **names;
	size_t n;
	int rc;

	if (len)
		return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
				 "LIST takes no data");
	rc = c->ex->list(c->ex->ctx, &names, &n);
	if (rc)
		return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_UNSUP,
				 "cannot list disks");
	for (size_t i = 0; i < n; i++) {
		uint8_t b[4 + NBD_EXPORT_MAX];
		uint32_t l = (uint32_t)strnlen(names[i], NBD_EXPORT_MAX);

		cell_put32(b, l);
		memcpy(b + 4, names[i], l);
		if (!rc)
			rc = opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, b,
				       4 + l);
		free(names[i]);
	}
	free(names);
	return rc ? rc : opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* INFO or GO: data is name length, name, info count, info types.
 * Returns 1 when GO selected an export. */
static int opt_go(struct conn *c, uint32_t opt, const uint8_t *data,
		  uint32_t len)
{
	char name[NBD_EXPORT_MAX + 1], why[300];
	uint32_t nl;
	uint16_t ninfo;
	uint8_t info[14];
	bool want_bs = false;
	void *d;
	int rc;

	if (len < 6 || (nl = cell_get32(data)) > len - 6 ||
	    (ninfo = cell_get16(data + 4 + nl), len != 6 + nl + 2u * ninfo))
		return opt_error(c, opt, NBD_REP_ERR_INVALID,
				 "malformed INFO/GO request");
	if (nl > NBD_EXPORT_MAX || nl == 0)
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");
	memcpy(name, data + 4, nl);
	name[nl] = 0;
	for (uint16_t i = 0; i < ninfo; i++)
		want_bs |= cell_get16(data + 6 + nl + 2u * i) ==
			   NBD_INFO_BLOCK_SIZE;
	d = c->ex->get(c->ex->ctx, name, why, sizeof(why));
	if (!d)
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, why);
	cell_put16(info, NBD_INFO_EXPORT);
	cell_put64(info + 2, c->ops->size(d));
	cell_put16(info + 10, tflags(c, d));
	rc = opt_reply(c, opt, NBD_REP_INFO, info, 12);
	if (!rc && want_bs) {
		/* min_block (1: any offset and length); 4 KiB preferred */
		cell_put16(info, NBD_INFO_BLOCK_SIZE);
		cell_put32(info + 2, c->ops->min_block);
		cell_put32(info + 6,
			   c->ops->min_block > 4096 ? c->ops->min_block : 4096);
		cell_put32(info + 10, NBD_MAX_PAYLOAD);
		rc = opt_reply(c, opt, NBD_REP_INFO, info, 14);
	}
	if (!rc)
		rc = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
	if (rc || opt == NBD_OPT_INFO) {
		c->ex->put(c->ex->ctx, d);
		return rc;
	}
	c->disk = d;
	snprintf(c->export, sizeof(c->export), "%s", name);
	return 1;
}

static int opt_export_name(struct conn *c, const uint8_t *data, uint32_t len)
{
	char name[NBD_EXPORT_MAX + 1], why[300];
	uint8_t out[10 + 124] = {0};

	if (len == 0 || len > NBD_EXPORT_MAX)
		return cfail(c, -ENOENT, "EXPORT_NAME of %u bytes", len);
	memcpy(name, data, len);
	name[len] = 0;
	c->disk = c->ex->get(c->ex->ctx, name, why, sizeof(why));
	if (!c->disk)
		return cfail(c, -ENOENT, "export '%s': %s", name, why);
	snprintf(c->export, sizeof(c->export), "%s", name);
	cell_put64(out, c->ops->size(c->disk));
	cell_put16(out + 8, tflags(c, c->disk));
	return send_all(c, out, c->no_zeroes ? 10 : sizeof(out));
}

/* NBD_OPT_STARTTLS: ACK in the clear, then the TLS handshake on the
 * same socket; the rest of the session is inside it. A client whose
 * certificate we do not take stays connected and is told why at every
 * option (NBD_REP_ERR_POLICY). */
static int opt_starttls(struct conn *c, uint32_t len)
{
	enum cell_role role;
	char name[64];
	int rc;

	if (len)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "STARTTLS takes no data");
	if (!c->ex->tls)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
				 "TLS is not configured on this server");
	if (c->ssl)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "TLS is on already");
	rc = opt_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
	if (rc)
		return rc;
	c->ssl = cell_tls_ssl(c->ex->tls, true);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
		return cfail(c, -ENOMEM, "TLS: out of memory");
	SSL_set_read_ahead(c->ssl, 1); /* blocking: a record in one recv */
	while ((rc = SSL_accept(c->ssl)) != 1 && tls_interrupted(c->ssl, rc))
		;
	if (rc != 1)
		return tls_fail(c, "handshake");
	/* on a refusal, tls_refused says why (it stays "" otherwise) */
	cell_tls_check_peer(c->ex->tls, c->ssl, &role, name, sizeof(name),
			    c->tls_refused, sizeof(c->tls_refused));
	return 0;
}

static int handshake(struct conn *c)
{
	uint8_t b[18], *data = NULL;
	uint32_t cflags;
	int rc;

	cell_put64(b, NBD_MAGIC);
	cell_put64(b + 8, NBD_OPTS_MAGIC);
	cell_put16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	rc = send_all(c, b, 18);
	if (!rc)
		rc = recv_all(c, b, 4);
	if (rc)
		return rc;
	cflags = cell_get32(b);
	if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return cfail(c, -EPROTO, "unknown client flags 0x%x", cflags);
	c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
	data = malloc(NBD_MAX_OPTION);
	if (!data)
		return cfail(c, -ENOMEM, "out of memory");
	for (;;) {
		uint32_t opt, len;
		const char *deny;

		rc = recv_all(c, b, 16);
		if (rc)
			break;
		if (cell_get64(b) != NBD_OPTS_MAGIC) {
			rc = cfail(c, -EPROTO, "bad option magic");
			break;
		}
		opt = cell_get32(b + 8);
		len = cell_get32(b + 12);
		if (len > NBD_MAX_OPTION) {
			rc = cfail(c, -EPROTO, "option %u of %u bytes", opt,
				   len);
			break;
		}
		rc = recv_all(c, data, len);
		if (rc)
			break;
		/* a TLS peer we do not take, or no TLS where it is required:
		 * every option but ABORT (and STARTTLS) is refused with why */
		deny = c->ssl && c->tls_refused[0] ? c->tls_refused
		       : !c->ssl && c->ex->tls_required &&
				       opt != NBD_OPT_STARTTLS
			       ? "TLS required: send NBD_OPT_STARTTLS first"
			       : NULL;
		if (deny && opt != NBD_OPT_ABORT) {
			if (opt == NBD_OPT_EXPORT_NAME) {
				/* no way to answer it: close */
				rc = cfail(c, -EACCES, "refused: %s", deny);
				break;
			}
			rc = opt_error(c, opt,
				       c->ssl ? NBD_REP_ERR_POLICY
					      : NBD_REP_ERR_TLS_REQD,
				       deny);
			if (rc)
				break;
			continue;
		}
		switch (opt) {
		case NBD_OPT_STARTTLS:
			rc = opt_starttls(c, len);
			break;
		case NBD_OPT_EXPORT_NAME:
			rc = opt_export_name(c, data, len);
			free(data);
			return rc ? rc : 1;
		case NBD_OPT_ABORT:
			opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			free(data);
			return 0;
		case NBD_OPT_LIST:
			rc = opt_list(c, len);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = opt_go(c, opt, data, len);
			if (rc == 1) {
				free(data);
				return 1;
			}
			break;
		default:
			rc = opt_error(c, opt, NBD_REP_ERR_UNSUP,
				       "option not supported");
			break;
		}
		if (rc)
			break;
	}
	free(data);
	return rc;
}

/* ---- transmission ---- */

static uint32_t nbd_errno(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case -EINVAL:
		return NBD_EINVAL;
	case -EROFS:
	case -EPERM:
		return NBD_EPERM;
	case -ENOSPC:
		return NBD_ENOSPC;
	case -ENOMEM:
		return NBD_ENOMEM;
	case -EOVERFLOW:
		return NBD_EOVERFLOW;
	default:
		return NBD_EIO;
	}
}

static int reply(struct conn *c, uint64_t cookie, int rc, const void *data,
		 uint32_t len)
{
	uint8_t h[16];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, len}};

	cell_put32(h, NBD_SIMPLE_REPLY);
	cell_put32(h + 4, nbd_errno(rc));
	cell_put64(h + 8, cookie);
	c->last_rc = rc;
	__atomic_fetch_add(&c->st->requests, 1, __ATOMIC_RELAXED);
	if (rc)
		__atomic_fetch_add(&c->st->errors, 1, __ATOMIC_RELAXED);
	return send_iov(c, iov, !rc && len ? 2 : 1);
}

const char *const nbd_stat_kind_names[NBD_STAT_KINDS] = {
	"read", "write", "flush", "trim", "other"};
const double nbd_lat_bounds_s[NBD_LAT_BOUNDS] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1};

static void add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* The request just answered, by command, with its service time. */
static void count_cmd(struct conn *c, uint16_t type, uint32_t len, uint64_t t0)
{
	enum nbd_stat_kind k =
		type == NBD_CMD_READ	? NBD_STAT_READ
		: type == NBD_CMD_WRITE ? NBD_STAT_WRITE
		: type == NBD_CMD_FLUSH ? NBD_STAT_FLUSH
		: type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES
			? NBD_STAT_TRIM
			: NBD_STAT_OTHER;
	struct nbd_cmd_stats *s = &c->st->cmd[k];
	uint64_t us = cell_now_us() - t0;
	size_t b = 0;

	while (b < NBD_LAT_BOUNDS && (double)us / 1e6 > nbd_lat_bounds_s[b])
		b++;
	add(&s->requests, 1);
	if (c->last_rc)
		add(&s->errors, 1);
	else if (k == NBD_STAT_READ || k == NBD_STAT_WRITE)
		add(&s->bytes, len);
	add(&s->lat_us, us);
	add(&s->lat[b], 1);
}

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void nbd_stats_add(struct nbd_conn_stats *acc, const struct nbd_conn_stats *st)
{
	acc->requests += load(&st->requests);
	acc->errors += load(&st->errors);
	acc->bytes_read += load(&st->bytes_read);
	acc->bytes_written += load(&st->bytes_written);
	for (int k = 0; k < NBD_STAT_KINDS; k++) {
		const struct nbd_cmd_stats *s = &st->cmd[k];
		struct nbd_cmd_stats *a = &acc->cmd[k];

		a->requests += load(&s->requests);
		a->errors += load(&s->errors);
		a->bytes += load(&s->bytes);
		a->lat_us += load(&s->lat_us);
		for (int b = 0; b <= NBD_LAT_BOUNDS; b++)
			a->lat[b] += load(&s->lat[b]);
	}
}

static bool in_range(struct conn *c, uint64_t off, uint64_t len)
{
	uint64_t size = c->ops->size(c->disk);
	uint64_t mask = c->ops->min_block - 1;

	return off <= size && len <= size - off && !(off & mask) &&
	       !(len & mask);
}

static int may_write(struct conn *c)
{
	return c->ex->may_write
		       ? c->ex->may_write(c->ex->ctx, c->disk, c->export)
		       : 0;
}

static int transmission(struct conn *c)
{
	uint8_t h[28];
	int rc;

	for (;;) {
		uint16_t flags, type;
		uint64_t cookie, off, t0;
		uint32_t len;
		bool fua;

		rc = recv_all(c, h, sizeof(h));
		if (rc)
			return rc;
		t0 = cell_now_us();
		if (cell_get32(h) != NBD_REQUEST_MAGIC)
			return cfail(c, -EPROTO, "bad request magic 0x%08x",
				     cell_get32(h));
		flags = cell_get16(h + 4);
		type = cell_get16(h + 6);
		cookie = cell_get64(h + 8);
		off = cell_get64(h + 16);
		len = cell_get32(h + 24);
		fua = flags & NBD_CMD_FLAG_FUA;
		if (type == NBD_CMD_WRITE && len > NBD_MAX_PAYLOAD)
			return cfail(c, -EPROTO, "write of %u bytes (max %u)",
				     len, NBD_MAX_PAYLOAD);
		if (flags & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE)) {
			if (type == NBD_CMD_WRITE && (rc = skip(c, len)))
				return rc;
			rc = reply(c, cookie, -EINVAL, NULL, 0);
			if (rc)
				return rc;
			continue;
		}
		switch (type) {
		case NBD_CMD_READ:
			if (len > NBD_MAX_PAYLOAD || !in_range(c, off, len))
				rc = -EINVAL;
			else
				rc = c->ops->read(c->disk, c->buf, off, len);
			if (!rc)
				__atomic_fetch_add(&c->st->bytes_read, len,
						   __ATOMIC_RELAXED);
			rc = reply(c, cookie, rc, c->buf, len);
			break;
		case NBD_CMD_WRITE:
			rc = recv_all(c, c->buf, len);
			if (rc)
				return rc;
			if (!in_range(c, off, len))
				rc = -EINVAL;
			else if (!(rc = may_write(c)))
				rc = c->ops->write(c->disk, c->buf, off, len,
						   fua);
			if (!rc)
				__atomic_fetch_add(&c->st->bytes_written, len,
						   __ATOMIC_RELAXED);
			rc = reply(c, cookie, rc, NULL, 0);
			break;
		case NBD_CMD_DISC:
			return 0;
		case NBD_CMD_FLUSH:
			rc = reply(c, cookie, c->ops->flush(c->disk), NULL, 0);
			break;
		case NBD_CMD_TRIM:
		case NBD_CMD_WRITE_ZEROES:
			rc = !c->ops->zero || !in_range(c, off, len)
				     ? -EINVAL
				     : may_write(c);
			if (!rc)
				rc = c->ops->zero(c->disk, off, len, fua);
			rc = reply(c, cookie, rc, NULL, 0);
			break;
		default:
			rc = reply(c, cookie, -EINVAL, NULL, 0);
			break;
		}
		count_cmd(c, type, len, t0);
		if (rc)
			return rc;
	}
}

int nbd_serve(int fd, const struct nbd_exports *ex, struct nbd_conn_stats *st,
	      char *err, size_t errlen)
{
	struct conn c = {.fd = fd,
			 .ex = ex,
			 .ops = ex->ops,
			 .st = st,
			 .err = err,
			 .errlen = errlen};
	int rc;

	if (err && errlen)
		err[0] = 0;
	rc = handshake(&c);
	if (rc == 1) {
		c.buf = malloc(NBD_MAX_PAYLOAD);
		rc = c.buf ? transmission(&c)
			   : cfail(&c, -ENOMEM, "out of memory");
		free(c.buf);
		ex->put(ex->ctx, c.disk);
	}
	if (c.ssl) {
		if (!rc)
			SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	return rc;
}
