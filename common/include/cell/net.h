/*
 * Network addresses shared by every program (common/src/net.c).
 */
#ifndef CELL_NET_H
#define CELL_NET_H

struct sockaddr_storage;

/* "host:port" -> sockaddr, numeric or via getaddrinfo. 0 or -EINVAL. */
int cell_parse_hostport(const char *hostport, struct sockaddr_storage *ss,
			int *sslen);

#endif
