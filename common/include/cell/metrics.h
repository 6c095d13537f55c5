/*
 * Metrics in the Prometheus text exposition format (version 0.0.4), and
 * the small HTTP server that serves them at /metrics (libevent's evhttp).
 *
 * A daemon gives a fill function; on every scrape it writes its families
 * into a struct cell_metrics: cell_metrics_family() for the HELP and
 * TYPE lines, then one sample call per label set. Names follow the
 * Prometheus conventions (a cellmon_ prefix, base units, counters ending
 * in _total); label values are escaped here (backslash, double quote,
 * newline), so any string a user gave (a VM's name) is safe.
 *
 * Event-loop thread: the server runs on the daemon's event base and the
 * fill function on its thread.
 */
#ifndef CELL_METRICS_H
#define CELL_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event_base;

enum cell_metric_type {
	CELL_METRIC_COUNTER,
	CELL_METRIC_GAUGE,
	CELL_METRIC_HISTOGRAM,
};

struct cell_metrics {
	struct evbuffer *out;
};

/* The HELP and TYPE lines of a family (help: one line of text). */
void cell_metrics_family(struct cell_metrics *m, const char *name,
			 enum cell_metric_type type, const char *help);
/* One sample. labels: name, value, name, value, ..., NULL (or NULL for
 * none); label names are the caller's constants, values any text. */
void cell_metrics_int(struct cell_metrics *m, const char *name,
		      const char *const *labels, uint64_t v);
void cell_metrics_real(struct cell_metrics *m, const char *name,
		       const char *const *labels, double v);
/* A histogram's samples: name_bucket{le=...} for each of the n upper
 * bounds (counts[i]: observations in (bounds[i-1], bounds[i]], not
 * cumulative; counts[n]: above the last bound), then le="+Inf",
 * name_sum and name_count. */
void cell_metrics_histogram(struct cell_metrics *m, const char *name,
			    const char *const *labels, const double *bounds,
			    const uint64_t *counts, size_t n, double sum);

/* The process's RPC errors by kind (cell/rpc.h), as the family
 * cellmon_rpc_errors_total{kind}; labels (may be NULL) go before kind. */
void cell_metrics_rpc_errors(struct cell_metrics *m, const char *const *labels);

#define CELL_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Writes s escaped as a label value (backslash, quote, newline) into out:
 * for the tests, and for anything else that prints label values. */
void cell_metrics_escape(struct evbuffer *out, const char *s);

typedef void (*cell_metrics_fill_fn)(struct cell_metrics *m, void *arg);

struct cell_metrics_server;

/* Serves GET /metrics on listen ("host:port", port 0: any) from base;
 * other paths get 404, other methods 405. The port bound goes to *port.
 * 0, or -errno with err set to a line that says what failed. */
int cell_metrics_serve(struct event_base *base, const char *listen,
		       cell_metrics_fill_fn fill, void *arg,
		       struct cell_metrics_server **out, int *port, char *err,
		       size_t errlen);
/* NULL is a no-op. */
void cell_metrics_server_free(struct cell_metrics_server *s);

/* A daemon's metrics_listen: nothing when listen is empty; else serves
 * it, logs the URL (module mod) and writes the bound host:port into addr.
 * 0, or -errno after logging why. */
int cell_metrics_start(struct event_base *base, const char *listen,
		       cell_metrics_fill_fn fill, void *arg, const char *mod,
		       struct cell_metrics_server **out, char *addr,
		       size_t addrlen);

/* The config table entry every daemon has (cell/config.h); the
 * arguments are the field's offset and size. */
#define CELL_METRICS_LISTEN_KEY(...)                                          \
	{                                                                     \
		"metrics_listen", CELL_CFG_STRING, __VA_ARGS__, 0, 0, "",     \
			"host:port for Prometheus metrics at /metrics (port " \
			"0: any); "                                           \
			"empty: off. No authentication: bind it to loopback " \
			"or a "                                               \
			"management network"                                  \
	}

#endif
