/*
 * Network addresses shared by every program (common/src/net.c).
 */
#ifndef CELL_NET_H
#define CELL_NET_H

#include <stddef.h>

struct sockaddr;
struct sockaddr_storage;

/* "host:port" -> sockaddr, numeric or via getaddrinfo. 0 or -EINVAL. */
int cell_parse_hostport(const char *hostport, struct sockaddr_storage *ss,
			int *sslen);

/* "1.2.3.4:5", "[::1]:5" or "local" (a unix socket), for log lines. */
void cell_format_sockaddr(const struct sockaddr *sa, char *out, size_t len);
/* The address at the other end of connected socket fd, as above, or
 * "fdN" when the socket cannot say; returns out. */
const char *cell_fd_peer(int fd, char *out, size_t len);

#endif
