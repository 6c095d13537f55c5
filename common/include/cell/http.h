/*
 * A small HTTP server on libevent's evhttp, shared by /metrics
 * (cell/metrics.h) and the manager's web view: it parses the listen
 * address, binds, bounds what a request may send (no body, 8 KiB of
 * headers, 10 s), and hands every request to one function.
 */
#ifndef CELL_HTTP_H
#define CELL_HTTP_H

#include <stddef.h>

struct event_base;
struct evhttp_request;
struct cell_http_server;

typedef void (*cell_http_fn)(struct evhttp_request *req, void *arg);

/* Serves listen ("host:port", port 0: any) from base; *port is the port
 * bound. what names the setting in errors ("metrics_listen"). 0, or
 * -errno with err set. */
int cell_http_serve(struct event_base *base, const char *listen,
		    const char *what, cell_http_fn fn, void *arg,
		    struct cell_http_server **out, int *port, char *err,
		    size_t errlen);
/* NULL is a no-op. */
void cell_http_server_free(struct cell_http_server *s);

/* Answers req with status and len bytes of body of the content type. */
void cell_http_reply(struct evhttp_request *req, int status, const char *type,
		     const void *body, size_t len);

#endif
