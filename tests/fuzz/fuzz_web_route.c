/*
 * Fuzz target: the web view's URL parser (web_route.c), which every
 * request to the manager's web_listen goes through before anything else
 * reads it. The input is a request target as sent. It must be refused
 * (400 or 404) or routed, never crash or read past its end, and a route
 * it accepts must hold what the handlers rely on: a valid name for the
 * pages that take one, a limit of 1 to 1000, a known asset.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "web_route.h"

static const char *const seeds[] = {
	"/",
	"/app.js?v=3",
	"/api/status",
	"/api/nodes/node1",
	"/api/vms/demo/pages",
	"/api/events?after_id=12&limit=50",
	"/api/events?limit=1000&after_id=18446744073709551615",
	"/api/vms/a.b-c_d/",
	"/api/events?limit=&&x",
};

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
	size_t n;

	if (i < 0 || (size_t)i >= sizeof(seeds) / sizeof(seeds[0]))
		return 0;
	n = strlen(seeds[i]);
	n = n < cap ? n : cap;
	memcpy(buf, seeds[i], n);
	return n;
}

int fuzz_one(const uint8_t *data, size_t size)
{
	char *uri = malloc(size + 1), err[256];
	struct web_route r;
	int code;

	if (!uri)
		return 0;
	memcpy(uri, data, size);
	uri[size] = '\0';
	code = web_route(uri, &r, err, sizeof(err));
	if (code != 200 && code != 400 && code != 404)
		abort();
	if (code != 200 && (!err[0] || strlen(err) >= sizeof(err)))
		abort();
	if (code == 200) {
		if ((r.target == WEB_NODE || r.target == WEB_VM ||
		     r.target == WEB_VM_PAGES) &&
		    !cell_name_valid(r.name))
			abort();
		if (r.limit < 1 || r.limit > WEB_EVENTS_MAX)
			abort();
		if (r.target == WEB_ASSET && strcmp(r.name, "index.html") &&
		    strcmp(r.name, "app.js") && strcmp(r.name, "style.css"))
			abort();
	}
	free(uri);
	return 0;
}

#ifdef CELLMON_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_one(data, size);
}
#endif
