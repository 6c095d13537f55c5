/*
 * The web view's URLs (web_route.c): what each page is routed to, and
 * the reason each malformed one is refused with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "web_route.h"

static int route(const char *uri, struct web_route *r, char *err)
{
	return web_route(uri, r, err, 256);
}

static void test_pages(void **state)
{
	struct web_route r;
	char err[256];

	(void)state;
	assert_int_equal(route("/", &r, err), 200);
	assert_int_equal(r.target, WEB_ASSET);
	assert_string_equal(r.name, "index.html");
	assert_int_equal(route("/app.js?cache=1", &r, err), 200);
	assert_string_equal(r.name, "app.js");
	assert_int_equal(route("/style.css", &r, err), 200);
	assert_string_equal(r.name, "style.css");
	assert_int_equal(route("/api/status", &r, err), 200);
	assert_int_equal(r.target, WEB_STATUS);
	assert_int_equal(route("/api/nodes", &r, err), 200);
	assert_int_equal(r.target, WEB_NODES);
	assert_int_equal(route("/api/nodes/", &r, err), 200);
	assert_int_equal(r.target, WEB_NODES);
	assert_int_equal(route("/api/nodes/node-1", &r, err), 200);
	assert_int_equal(r.target, WEB_NODE);
	assert_string_equal(r.name, "node-1");
	assert_int_equal(route("/api/cells", &r, err), 200);
	assert_int_equal(r.target, WEB_CELLS);
	assert_int_equal(route("/api/vms", &r, err), 200);
	assert_int_equal(r.target, WEB_VMS);
	assert_int_equal(route("/api/vms/demo", &r, err), 200);
	assert_int_equal(r.target, WEB_VM);
	assert_string_equal(r.name, "demo");
	assert_int_equal(route("/api/vms/demo/pages", &r, err), 200);
	assert_int_equal(r.target, WEB_VM_PAGES);
	assert_string_equal(r.name, "demo");
}

static void test_events_query(void **state)
{
	struct web_route r;
	char err[256];

	(void)state;
	assert_int_equal(route("/api/events", &r, err), 200);
	assert_int_equal(r.target, WEB_EVENTS);
	assert_int_equal(r.after_id, 0);
	assert_int_equal(r.limit, WEB_EVENTS_MAX);
	assert_int_equal(route("/api/events?after_id=41&limit=7", &r, err),
			 200);
	assert_int_equal(r.after_id, 41);
	assert_int_equal(r.limit, 7);
	assert_int_equal(
		route("/api/events?after_id=18446744073709551615", &r, err),
		200);
	assert_true(r.after_id == UINT64_MAX);

	assert_int_equal(
		route("/api/events?after_id=18446744073709551616", &r, err),
		400);
	assert_non_null(strstr(err, "after_id"));
	assert_int_equal(route("/api/events?limit=0", &r, err), 400);
	assert_non_null(strstr(err, "1 to 1000"));
	assert_int_equal(route("/api/events?limit=1001", &r, err), 400);
	assert_int_equal(route("/api/events?limit=-1", &r, err), 400);
	assert_int_equal(route("/api/events?limit=1e3", &r, err), 400);
	assert_int_equal(route("/api/events?limit=", &r, err), 400);
	assert_int_equal(route("/api/events?limit", &r, err), 400);
	assert_non_null(strstr(err, "key=value"));
	assert_int_equal(route("/api/events?=3", &r, err), 400);
	assert_int_equal(route("/api/events?limit=3&", &r, err), 400);
	assert_non_null(strstr(err, "trailing"));
	assert_int_equal(route("/api/events?since=1h", &r, err), 400);
	assert_non_null(strstr(err, "since"));
	/* the other API pages take no parameter */
	assert_int_equal(route("/api/vms?limit=3", &r, err), 400);
	assert_non_null(strstr(err, "takes none"));
}

static void test_refused(void **state)
{
	struct web_route r;
	char err[256], long_name[200], long_path[2000];

	(void)state;
	assert_int_equal(route("", &r, err), 400);
	assert_int_equal(route("api/status", &r, err), 400);
	assert_int_equal(route("http://x/api/status", &r, err), 400);
	assert_int_equal(route("/nope.html", &r, err), 404);
	assert_int_equal(route("/../etc/passwd", &r, err), 404);
	assert_int_equal(route("/api/", &r, err), 404);
	assert_int_equal(route("/api/nope", &r, err), 404);
	assert_non_null(strstr(err, "/api/nope"));
	assert_int_equal(route("/api/status/x", &r, err), 404);
	assert_int_equal(route("/api/vms/demo/pages/x", &r, err), 404);
	assert_int_equal(route("/api/vms/demo/stats", &r, err), 404);
	assert_int_equal(route("/api/nodes/node1/pages", &r, err), 404);
	/* names: the cellmon rule, nothing decoded */
	assert_int_equal(route("/api/vms/-x", &r, err), 400);
	assert_non_null(strstr(err, "valid name"));
	assert_int_equal(route("/api/vms/a%20b", &r, err), 400);
	assert_int_equal(route("/api/vms/..", &r, err), 400);
	assert_int_equal(route("/api/vms//pages", &r, err), 400);
	memset(long_name, 'a', sizeof(long_name));
	memcpy(long_name, "/api/vms/", 9);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(route(long_name, &r, err), 400);
	memset(long_path, 'a', sizeof(long_path));
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	assert_int_equal(route(long_path, &r, err), 400);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(route("/api/status#x", &r, err), 400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages),
		cmocka_unit_test(test_events_query),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
