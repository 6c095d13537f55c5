/*
 * The Prometheus text exposition and its HTTP server (cell/metrics.h).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "cell/http.h"
#include "cell/log.h"
#include "cell/metrics.h"
#include "cell/net.h"
#include "cell/rpc.h"

#define MOD "metrics"

static const char *const type_names[] = {
	[CELL_METRIC_COUNTER] = "counter",
	[CELL_METRIC_GAUGE] = "gauge",
	[CELL_METRIC_HISTOGRAM] = "histogram",
};

/* HELP text: backslash and newline escaped. */
static void escape_help(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

void cell_metrics_escape(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '"')
			evbuffer_add(out, "\\\"", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

void cell_metrics_family(struct cell_metrics *m, const char *name,
			 enum cell_metric_type type, const char *help)
{
	evbuffer_add_printf(m->out, "# HELP %s ", name);
	escape_help(m->out, help);
	evbuffer_add_printf(m->out, "\n# TYPE %s %s\n", name, type_names[type]);
}

/* name{k="v",...,extra_k="extra_v"}, then a space. */
static void series(struct cell_metrics *m, const char *name,
		   const char *const *labels, const char *extra_k,
		   const char *extra_v)
{
	bool any = false;

	evbuffer_add_printf(m->out, "%s", name);
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		evbuffer_add_printf(m->out, "%c%s=\"", any ? ',' : '{',
				    labels[i]);
		cell_metrics_escape(m->out, labels[i + 1]);
		evbuffer_add(m->out, "\"", 1);
		any = true;
	}
	if (extra_k) {
		evbuffer_add_printf(m->out, "%c%s=\"%s\"", any ? ',' : '{',
				    extra_k, extra_v);
		any = true;
	}
	evbuffer_add(m->out, any ? "} " : " ", any ? 2 : 1);
}

void cell_metrics_int(struct cell_metrics *m, const char *name,
		      const char *const *labels, uint64_t v)
{
	series(m, name, labels, NULL, NULL);
	evbuffer_add_printf(m->out, "%llu\n", (unsigned long long)v);
}

/* The shortest decimal that reads back as v ("0.005", not
 * "0.0050000000000000001"); NaN and the infinities as Prometheus
 * writes them. */
static void fmt_real(char *out, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(out, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, len, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

static void real_value(struct cell_metrics *m, double v)
{
	char text[40];

	fmt_real(text, sizeof(text), v);
	evbuffer_add_printf(m->out, "%s\n", text);
}

void cell_metrics_real(struct cell_metrics *m, const char *name,
		       const char *const *labels, double v)
{
	series(m, name, labels, NULL, NULL);
	real_value(m, v);
}

void cell_metrics_histogram(struct cell_metrics *m, const char *name,
			    const char *const *labels, const double *bounds,
			    const uint64_t *counts, size_t n, double sum)
{
	char bucket[160], le[40];
	uint64_t total = 0;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	for (size_t i = 0; i <= n; i++) {
		total += counts[i];
		if (i == n)
			snprintf(le, sizeof(le), "+Inf");
		else
			fmt_real(le, sizeof(le), bounds[i]);
		series(m, bucket, labels, "le", le);
		evbuffer_add_printf(m->out, "%llu\n",
				    (unsigned long long)total);
	}
	snprintf(bucket, sizeof(bucket), "%s_sum", name);
	cell_metrics_real(m, bucket, labels, sum);
	snprintf(bucket, sizeof(bucket), "%s_count", name);
	cell_metrics_int(m, bucket, labels, total);
}

void cell_metrics_rpc_errors(struct cell_metrics *m, const char *const *labels)
{
	uint64_t n[CELL_RPC_ERR_KINDS];
	const char *l[16];
	size_t k = 0;

	cell_rpc_errors(n);
	cell_metrics_family(
		m, "cellmon_rpc_errors_total", CELL_METRIC_COUNTER,
		"RPC errors since the start, by kind (error-replied: "
		"requests answered with an error, error-received: "
		"error answers to ours, timeout, connection-lost, "
		"connect, bad-frame, unknown-type, undecodable, tls: "
		"a handshake or a peer refused)");
	while (labels && labels[k] && k + 3 < sizeof(l) / sizeof(l[0])) {
		l[k] = labels[k];
		k++;
	}
	l[k] = "kind";
	l[k + 2] = NULL;
	for (int e = 0; e < CELL_RPC_ERR_KINDS; e++) {
		l[k + 1] = cell_rpc_error_names[e];
		cell_metrics_int(m, "cellmon_rpc_errors_total", l, n[e]);
	}
}

/* ---- the server ---- */

struct cell_metrics_server {
	struct cell_http_server *http;
	cell_metrics_fill_fn fill;
	void *arg;
};

static void on_request(struct evhttp_request *req, void *arg)
{
	struct cell_metrics_server *s = arg;
	const char *uri = evhttp_request_get_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct cell_metrics m;

	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(h, "Allow", "GET, HEAD");
		evhttp_send_error(req, 405, "only GET /metrics here");
		return;
	}
	/* /metrics, with or without a query string */
	if (!uri || strncmp(uri, "/metrics", 8) != 0 ||
	    (uri[8] && uri[8] != '?')) {
		evhttp_send_error(req, 404, "only /metrics here");
		return;
	}
	m.out = evbuffer_new();
	if (!m.out) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	s->fill(&m, s->arg);
	evhttp_add_header(h, "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", m.out);
	evbuffer_free(m.out);
}

int cell_metrics_serve(struct event_base *base, const char *listen,
		       cell_metrics_fill_fn fill, void *arg,
		       struct cell_metrics_server **out, int *port, char *err,
		       size_t errlen)
{
	struct cell_metrics_server *s = calloc(1, sizeof(*s));
	int rc;

	if (!s) {
		snprintf(err, errlen, "metrics: out of memory");
		return -ENOMEM;
	}
	s->fill = fill;
	s->arg = arg;
	rc = cell_http_serve(base, listen, "metrics_listen", on_request, s,
			     &s->http, port, err, errlen);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void cell_metrics_server_free(struct cell_metrics_server *s)
{
	if (!s)
		return;
	cell_http_server_free(s->http);
	free(s);
}

int cell_metrics_start(struct event_base *base, const char *listen,
		       cell_metrics_fill_fn fill, void *arg, const char *mod,
		       struct cell_metrics_server **out, char *addr,
		       size_t addrlen)
{
	char err[300];
	int port = 0, rc;

	if (!listen[0])
		return 0;
	rc = cell_metrics_serve(base, listen, fill, arg, out, &port, err,
				sizeof(err));
	if (rc) {
		CELL_ERROR(mod, "%s", err);
		return rc;
	}
	cell_hostport_bound(listen, port, addr, addrlen);
	CELL_INFO(mod,
		  "metrics at http://%s/metrics (no authentication: keep "
		  "metrics_listen on loopback or a management network)",
		  addr);
	return 0;
}
