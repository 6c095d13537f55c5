/* The test NBD client (nbdclient.h). */
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

#include "nbdclient.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int xfer(int fd, void *buf, size_t len, bool send_it)
{
	uint8_t *p = buf;

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
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct timeval tv = {10, 0};
	char host[128];
	char *colon;
	int fd, one = 1;

	snprintf(host, sizeof(host), "%s", hostport);
	colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = 0;
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

int nbdc_connect(const char *hostport, const char *export)
{
	uint8_t b[256];
	size_t nl = strlen(export);
	int fd;

	if (nl > 200)
		return -1;
	fd = nbdc_dial(hostport);
	if (fd < 0)
		return -1;
	if (xfer(fd, b, 18, false) || memcmp(b, "NBDMAGICIHAVEOPT", 16))
		goto bad;
	put32(b, 3); /* fixed newstyle, no zeroes */
	memcpy(b + 4, "IHAVEOPT", 8);
	put32(b + 12, 7); /* GO */
	put32(b + 16, (uint32_t)(4 + nl + 2));
	put32(b + 20, (uint32_t)nl);
	memcpy(b + 24, export, nl);
	put16(b + 24 + nl, 0);
	if (xfer(fd, b, 26 + nl, true))
		goto bad;
	/* Replies until ACK (type 1) or an error. */
	for (;;) {
		uint32_t type, len;

		if (xfer(fd, b, 20, false))
			goto bad;
		type = get32(b + 12);
		len = get32(b + 16);
		if (len > sizeof(b) || xfer(fd, b, len, false) ||
		    (type & 0x80000000u))
			goto bad;
		if (type == 1)
			return fd;
	}
bad:
	close(fd);
	return -1;
}

int nbdc_request(int fd, uint16_t type, uint16_t flags, uint64_t off,
		 uint32_t len, void *data, uint32_t magic)
{
	static uint64_t cookie;
	uint8_t h[28], r[16];

	put32(h, magic);
	put16(h + 4, flags);
	put16(h + 6, type);
	put64(h + 8, ++cookie);
	put64(h + 16, off);
	put32(h + 24, len);
	if (xfer(fd, h, 28, true))
		return -1;
	if (type == NBDC_WRITE && data && xfer(fd, data, len, true))
		return -1;
	if (type == NBDC_DISC)
		return 0;
	if (xfer(fd, r, 16, false) || get32(r) != 0x67446698u)
		return -1;
	if (get32(r + 4))
		return (int)get32(r + 4);
	if (type == NBDC_READ && xfer(fd, data, len, false))
		return -1;
	return 0;
}
