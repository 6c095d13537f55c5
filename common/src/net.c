/*
 * Addresses as people write them ("host:port", "[v6]:port", a name) turned
 * into sockaddrs, for every program and library that dials or listens:
 * the RPC layer, the DSM's TCP transport, the NBD client.
 */
#include <errno.h>
#include <netdb.h>
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
