/*
 * Addresses as people write them ("host:port", "[v6]:port", a name) turned
 * into sockaddrs, for every program and library that dials or listens:
 * the RPC layer, the DSM's TCP transport, the NBD client.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "cell/net.h"

int cell_parse_hostport(const char *hostport, struct sockaddr_storage *ss,
			int *sslen)
{
	struct addrinfo hints = {0}, *res = NULL;
	char host[256];
	const char *colon;
	size_t hl;

	*sslen = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)ss,
				       sslen) == 0)
		return 0;
	colon = strrchr(hostport, ':');
	if (!colon || colon == hostport || !colon[1])
		return -EINVAL;
	hl = (size_t)(colon - hostport);
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, hl);
	host[hl] = '\0';
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, colon + 1, &hints, &res) || !res)
		return -EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = (int)res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void cell_format_sockaddr(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%d", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%d", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "local");
	}
}

const char *cell_fd_peer(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		cell_format_sockaddr((struct sockaddr *)&ss, out, len);
	else
		snprintf(out, len, "fd%d", fd);
	return out;
}
