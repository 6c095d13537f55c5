/*
 * The HTTP server /metrics and the web view share (cell/http.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "cell/http.h"

struct cell_http_server {
	struct evhttp *http;
};

static int bound_port(struct evhttp_bound_socket *bs)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	evutil_socket_t fd = evhttp_bound_socket_get_fd(bs);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

int cell_http_serve(struct event_base *base, const char *listen,
		    const char *what, cell_http_fn fn, void *arg,
		    struct cell_http_server **out, int *port, char *err,
		    size_t errlen)
{
	struct cell_http_server *s;
	struct evhttp_bound_socket *bs;
	char host[256];
	const char *colon = strrchr(listen, ':');
	long p;
	char *end;

	if (!colon || colon == listen ||
	    (size_t)(colon - listen) >= sizeof(host)) {
		snprintf(err, errlen, "%s '%s': want host:port", what, listen);
		return -EINVAL;
	}
	p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 0 || p > 65535) {
		snprintf(err, errlen, "%s '%s': bad port", what, listen);
		return -EINVAL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	s = calloc(1, sizeof(*s));
	if (!s || !(s->http = evhttp_new(base))) {
		free(s);
		snprintf(err, errlen, "%s: out of memory", what);
		return -ENOMEM;
	}
	/* every method evhttp knows reaches fn, which refuses what it
	 * does not serve with 405 or 403 (a method evhttp refuses would get
	 * a bare 501); one it does not know gets 501 from evhttp */
	evhttp_set_allowed_methods(
		s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
				 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
				 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
				 EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(s->http, 8192);
	evhttp_set_max_body_size(s->http, 0);
	evhttp_set_timeout(s->http, 10);
	evhttp_set_gencb(s->http, fn, arg);
	bs = evhttp_bind_socket_with_handle(s->http, host, (uint16_t)p);
	if (!bs) {
		snprintf(err, errlen, "%s: cannot listen on %s: %s", what,
			 listen, strerror(errno ? errno : EADDRINUSE));
		evhttp_free(s->http);
		free(s);
		return -EADDRINUSE;
	}
	*port = bound_port(bs);
	*out = s;
	return 0;
}

void cell_http_server_free(struct cell_http_server *s)
{
	if (!s)
		return;
	evhttp_free(s->http);
	free(s);
}

void cell_http_reply(struct evhttp_request *req, int status, const char *type,
		     const void *body, size_t len)
{
	struct evbuffer *b = evbuffer_new();
	const char *reason = status < 300    ? "OK"
			     : status == 400 ? "Bad Request"
			     : status == 403 ? "Forbidden"
			     : status == 404 ? "Not Found"
			     : status == 405 ? "Method Not Allowed"
			     : status == 503 ? "Service Unavailable"
					     : "Error";

	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(b, body, len);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", type);
	evhttp_send_reply(req, status, reason, b);
	evbuffer_free(b);
}
