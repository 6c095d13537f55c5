/*
 * The Prometheus exposition and its HTTP server (cell/metrics.h): label
 * values with quotes, backslashes and newlines are escaped and read back
 * as given by the Prometheus client's parser; histograms are cumulative
 * with +Inf, _sum and _count; the server answers GET /metrics with the
 * fill function's text, 404 elsewhere, 405 to other methods, and keeps
 * serving after a malformed request.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "cell/metrics.h"
#include "testsupport.h"

static const double bounds[] = {0.00001, 0.0001, 0.001};
static const uint64_t counts[] = {3, 5, 0, 2};

/* A small exposition with a nasty label value. */
static void fill(struct cell_metrics *m, void *arg)
{
	(void)arg;
	cell_metrics_family(m, "cellmon_test_faults_total", CELL_METRIC_COUNTER,
			    "faults \\ taken\nby kind");
	cell_metrics_int(m, "cellmon_test_faults_total",
			 CELL_LABELS("vm", "a\"b\\c\nd", "kind", "read"), 7);
	cell_metrics_int(m, "cellmon_test_faults_total",
			 CELL_LABELS("vm", "plain", "kind", "write"), 0);
	cell_metrics_family(m, "cellmon_test_load", CELL_METRIC_GAUGE,
			    "a gauge");
	cell_metrics_real(m, "cellmon_test_load", NULL, 0.25);
	cell_metrics_family(m, "cellmon_test_latency_seconds",
			    CELL_METRIC_HISTOGRAM, "a histogram");
	cell_metrics_histogram(m, "cellmon_test_latency_seconds",
			       CELL_LABELS("vm", "plain"), bounds, counts, 3,
			       0.0125);
}

static char *text_of(void)
{
	struct cell_metrics m = {evbuffer_new()};
	size_t n;
	char *s;

	assert_non_null(m.out);
	fill(&m, NULL);
	n = evbuffer_get_length(m.out);
	s = malloc(n + 1);
	assert_non_null(s);
	evbuffer_remove(m.out, s, n);
	s[n] = '\0';
	evbuffer_free(m.out);
	return s;
}

static void test_metrics_escaping(void **state)
{
	char *t = text_of();

	(void)state;
	assert_non_null(strstr(t, "# HELP cellmon_test_faults_total faults "
				  "\\\\ taken\\nby kind\n"));
	assert_non_null(
		strstr(t, "# TYPE cellmon_test_faults_total counter\n"));
	assert_non_null(strstr(t, "cellmon_test_faults_total{vm=\"a\\\"b\\\\c"
				  "\\nd\",kind=\"read\"} 7\n"));
	assert_non_null(strstr(t, "cellmon_test_load 0.25\n"));
	free(t);
}

static void test_metrics_histogram_cumulative(void **state)
{
	char *t = text_of();

	(void)state;
	assert_non_null(strstr(t, "cellmon_test_latency_seconds_bucket{vm="
				  "\"plain\",le=\"1e-05\"} 3\n"));
	assert_non_null(strstr(t, "le=\"0.001\"} 8\n"));
	assert_non_null(strstr(t, "le=\"+Inf\"} 10\n"));
	assert_non_null(
		strstr(t, "cellmon_test_latency_seconds_count{vm=\"plain\"} "
			  "10\n"));
	assert_non_null(strstr(t,
			       "cellmon_test_latency_seconds_sum{vm=\"plain\"} "
			       "0.0125\n"));
	free(t);
}

/* The Prometheus client's parser reads it back, labels as given. */
static void test_metrics_parser_reads_it(void **state)
{
	char *t = text_of(), *js = ts_parse_metrics(t);
	json_t *j, *s;
	size_t i;
	bool found = false;

	(void)state;
	assert_non_null(js);
	j = json_loads(js, 0, NULL);
	assert_non_null(j);
	json_array_foreach(json_object_get(j, "samples"), i, s)
	{
		json_t *labels = json_array_get(s, 1);
		const char *vm =
			json_string_value(json_object_get(labels, "vm"));

		if (vm && strcmp(vm, "a\"b\\c\nd") == 0) {
			assert_int_equal(json_real_value(json_array_get(s, 2)),
					 7);
			found = true;
		}
	}
	assert_true(found);
	json_decref(j);
	free(js);
	/* and refuses what breaks the rules: a counter not ending in _total */
	js = ts_parse_metrics("# HELP cellmon_x a\n# TYPE cellmon_x counter\n"
			      "cellmon_x 1\n");
	assert_null(js);
	free(t);
}

struct served {
	struct event_base *base;
	pthread_t thread;
};

static void *loop_main(void *arg)
{
	struct served *s = arg;

	event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void test_metrics_server(void **state)
{
	struct cell_metrics_server *srv = NULL, *two = NULL;
	struct served s;
	char err[200], addr[64], *body = NULL;
	int port = 0, p2 = 0;

	(void)state;
	evthread_use_pthreads();
	s.base = event_base_new();
	assert_non_null(s.base);
	assert_int_equal(cell_metrics_serve(s.base, "127.0.0.1:0", fill, NULL,
					    &srv, &port, err, sizeof(err)),
			 0);
	assert_true(port > 0);
	/* the same port again, or no port: a clear error */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_true(cell_metrics_serve(s.base, addr, fill, NULL, &two, &p2, err,
				       sizeof(err)) < 0);
	assert_non_null(strstr(err, "cannot listen"));
	assert_true(cell_metrics_serve(s.base, "nonsense", fill, NULL, &two,
				       &p2, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "host:port"));
	assert_null(two);
	assert_int_equal(pthread_create(&s.thread, NULL, loop_main, &s), 0);
	assert_int_equal(ts_http_get(port, "/metrics", &body), 200);
	assert_non_null(body);
	assert_non_null(strstr(body, "cellmon_test_load 0.25\n"));
	free(body);
	assert_int_equal(ts_http_get(port, "/metrics?x=1", NULL), 200);
	assert_int_equal(ts_http_get(port, "/", NULL), 404);
	assert_int_equal(ts_http_get(port, "/metricsX", NULL), 404);
	assert_int_equal(ts_http(port,
				 "POST /metrics HTTP/1.0\r\nContent-Length: "
				 "0\r\n\r\n",
				 NULL),
			 405);
	/* garbage: an error or a closed connection, and the server lives */
	assert_true(ts_http(port, "\x01\x02 nonsense\r\n\r\n", NULL) != 200);
	assert_true(ts_http(port, "GET /metrics HTTP/1.0\r\nX: ", NULL) != 200);
	assert_int_equal(ts_http_get(port, "/metrics", NULL), 200);
	event_base_loopbreak(s.base);
	pthread_join(s.thread, NULL);
	cell_metrics_server_free(srv);
	event_base_free(s.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_escaping),
		cmocka_unit_test(test_metrics_histogram_cumulative),
		cmocka_unit_test(test_metrics_parser_reads_it),
		cmocka_unit_test(test_metrics_server),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
