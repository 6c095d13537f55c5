/*
 * A small synchronous NBD client (vdisk/nbdc.h): the agents' disk path to
 * cellmon-vdiskd, and the client of the tests and benchmarks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cell/endian.h"
#include "cell/net.h"
#include "cell/tls.h"
#include "vdisk/nbdc.h"

/* The TLS session of each socket that did STARTTLS (nbdc_open_tls),
 * by fd: set before the fd is handed out, cleared by nbdc_close. */
#define NBDC_MAX_FD 4096
/* Writes of up to this much go out in one TLS record with their header */
#define TLS_COALESCE (64u << 10)
static SSL *sessions[NBDC_MAX_FD];

static SSL *session(int fd)
{
	return fd >= 0 && fd < NBDC_MAX_FD
		       ? __atomic_load_n(&sessions[fd], __ATOMIC_ACQUIRE)
		       : NULL;
}

/* A TLS call on a blocking socket that a signal interrupted (the agent's
 * threads see SIGCHLD): OpenSSL says WANT_READ or WANT_WRITE, or
 * SYSCALL, with errno EINTR; the call is made again. A timeout
 * (SO_RCVTIMEO's EAGAIN) is not retried. */
static bool tls_interrupted(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return errno == EINTR &&
	       (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		e == SSL_ERROR_SYSCALL);
}

static int xfer(int fd, void *buf, size_t len, bool send_it)
{
	uint8_t *p = buf;
	SSL *ssl = session(fd);

	while (len && ssl) {
		int n = len > 1u << 30 ? 1 << 30 : (int)len;
		int r = send_it ? SSL_write(ssl, p, n) : SSL_read(ssl, p, n);

		if (r <= 0 && tls_interrupted(ssl, r))
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	while (len) {
		ssize_t r = send_it ? send(fd, p, len, MSG_NOSIGNAL)
				    : recv(fd, p, len, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int nbdc_dial(const char *hostport)
{
	struct sockaddr_storage ss;
	struct timeval tv = {10, 0};
	int fd, one = 1, sslen;

	if (cell_parse_hostport(hostport, &ss, &sslen))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)sslen)) {
		close(fd);
		return -1;
	}
	return fd;
}

int nbdc_connect(const char *hostport, const char *export)
{
	return nbdc_open(hostport, export, NULL);
}

/* NBD_OPT_STARTTLS, its ACK, and the handshake; the server must show a
 * disk server's certificate (the tls says whom it takes). */
static int starttls(int fd, struct cell_tls *tls, char *err, size_t errlen)
{
	uint8_t b[276];
	uint32_t type, len;
	enum cell_role role;
	char name[64];
	SSL *ssl;
	int r;

	memcpy(b, "IHAVEOPT", 8);
	cell_put32(b + 8, 5); /* STARTTLS */
	cell_put32(b + 12, 0);
	if (xfer(fd, b, 16, true) || xfer(fd, b, 20, false)) {
		snprintf(err, errlen, "STARTTLS: the server closed");
		return -1;
	}
	type = cell_get32(b + 12);
	len = cell_get32(b + 16);
	if (len > 256 || xfer(fd, b + 20, len, false) || type != 1) {
		snprintf(err, errlen, "STARTTLS refused by the server: %.*s",
			 (int)(len <= 256 ? len : 0), (const char *)b + 20);
		return -1;
	}
	ssl = cell_tls_ssl(tls, false);
	if (ssl)
		SSL_set_read_ahead(ssl, 1); /* blocking: a record in one recv */
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		snprintf(err, errlen, "STARTTLS: out of memory");
		SSL_free(ssl);
		return -1;
	}
	while ((r = SSL_connect(ssl)) != 1 && tls_interrupted(ssl, r))
		;
	if (r != 1 || cell_tls_check_peer(tls, ssl, &role, name, sizeof(name),
					  err, errlen)) {
		if (!err[0])
			cell_tls_last_error(ssl, err, errlen);
		if (!err[0])
			snprintf(err, errlen, "the TLS handshake failed: %s",
				 errno ? strerror(errno) : "closed");
		SSL_free(ssl);
		return -1;
	}
	__atomic_store_n(&sessions[fd], ssl, __ATOMIC_RELEASE);
	return 0;
}

void nbdc_close(int fd)
{
	SSL *ssl = session(fd);

	if (ssl) {
		__atomic_store_n(&sessions[fd], NULL, __ATOMIC_RELEASE);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
}

int nbdc_open(const char *hostport, const char *export, uint64_t *size)
{
	char err[300];

	return nbdc_open_tls(hostport, export, size, NULL, err, sizeof(err));
}

int nbdc_open_tls(const char *hostport, const char *export, uint64_t *size,
		  struct cell_tls *tls, char *err, size_t errlen)
{
	uint8_t b[256];
	size_t nl = strlen(export);
	int fd;

	err[0] = '\0';
	if (nl > 200)
		return -1;
	fd = nbdc_dial(hostport);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s", hostport);
		return -1;
	}
	if (tls && fd >= NBDC_MAX_FD) {
		snprintf(err, errlen, "fd %d: too many connections", fd);
		goto bad;
	}
	if (xfer(fd, b, 18, false) || memcmp(b, "NBDMAGICIHAVEOPT", 16))
		goto bad;
	cell_put32(b, 3); /* fixed newstyle, no zeroes */
	if (xfer(fd, b, 4, true) || (tls && starttls(fd, tls, err, errlen)))
		goto bad;
	memcpy(b, "IHAVEOPT", 8);
	cell_put32(b + 8, 7); /* GO */
	cell_put32(b + 12, (uint32_t)(4 + nl + 2));
	cell_put32(b + 16, (uint32_t)nl);
	memcpy(b + 20, export, nl);
	cell_put16(b + 20 + nl, 0);
	if (xfer(fd, b, 22 + nl, true))
		goto bad;
	/* Replies until ACK (type 1) or an error. */
	for (;;) {
		uint32_t type, len;

		if (xfer(fd, b, 20, false))
			goto bad;
		type = cell_get32(b + 12);
		len = cell_get32(b + 16);
		if (len > sizeof(b) || xfer(fd, b, len, false))
			goto bad;
		if (type & 0x80000000u) {
			snprintf(err, errlen, "the server refused: %.*s",
				 (int)(len < sizeof(b) ? len : 0), (char *)b);
			goto bad;
		}
		/* NBD_REP_INFO with NBD_INFO_EXPORT: size and flags. */
		if (type == 3 && len >= 12 && cell_get16(b) == 0 && size)
			*size = cell_get64(b + 2);
		if (type == 1)
			return fd;
	}
bad:
	if (!err[0])
		snprintf(err, errlen, "the NBD handshake with %s failed",
			 hostport);
	nbdc_close(fd);
	return -1;
}

/* An NBD error from the wire as -errno: the protocol's values are Linux
 * errno numbers; anything else is an I/O error. */
static int nbd_errno(uint32_t e)
{
	switch (e) {
	case 1:	  /* EPERM */
	case 5:	  /* EIO */
	case 12:  /* ENOMEM */
	case 22:  /* EINVAL */
	case 28:  /* ENOSPC */
	case 75:  /* EOVERFLOW */
	case 95:  /* ENOTSUP */
	case 108: /* ESHUTDOWN */
		return -(int)e;
	default:
		return -EIO;
	}
}

int nbdc_request(int fd, uint16_t type, uint16_t flags, uint64_t off,
		 uint32_t len, void *data, uint32_t magic)
{
	static uint64_t cookie;
	uint8_t h[28], r[16];
	uint64_t id = __atomic_add_fetch(&cookie, 1, __ATOMIC_RELAXED);

	cell_put32(h, magic);
	cell_put16(h + 4, flags);
	cell_put16(h + 6, type);
	cell_put64(h + 8, id);
	cell_put64(h + 16, off);
	cell_put32(h + 24, len);
	if (session(fd) && type == NBDC_WRITE && data && len <= TLS_COALESCE) {
		/* over TLS, the header and its data in one record */
		static __thread uint8_t rec[28 + TLS_COALESCE];

		memcpy(rec, h, 28);
		memcpy(rec + 28, data, len);
		if (xfer(fd, rec, 28 + len, true))
			return -ECONNRESET;
	} else {
		if (xfer(fd, h, 28, true))
			return -ECONNRESET;
		if (type == NBDC_WRITE && data && xfer(fd, data, len, true))
			return -ECONNRESET;
	}
	if (type == NBDC_DISC)
		return 0;
	if (xfer(fd, r, 16, false) || cell_get32(r) != 0x67446698u)
		return -ECONNRESET;
	if (cell_get32(r + 4))
		return nbd_errno(cell_get32(r + 4));
	if (type == NBDC_READ && xfer(fd, data, len, false))
		return -ECONNRESET;
	return 0;
}
