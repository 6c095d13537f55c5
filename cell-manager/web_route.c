/*
 * The web view's URLs (web_route.h). Strict: a name is a cellmon name
 * (CELL_NAME_RULE) with nothing to decode, a parameter is one of the
 * route's with a decimal value, and anything else is refused with what
 * was wrong, never guessed at.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web_route.h"

#define URI_MAX 1024

static const char *const assets[] = {"index.html", "app.js", "style.css", NULL};

/* The path segment at *p (up to '/' or the end) into out; advances *p
 * past it. Its length, or -1 when it is longer than cap - 1. */
static int segment(const char **p, char *out, size_t cap)
{
	size_t n = strcspn(*p, "/");

	if (n >= cap)
		return -1;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return (int)n;
}

static int __attribute__((format(printf, 4, 5)))
bad(char *err, size_t errlen, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return status;
}

/* A decimal value of at most max. */
static bool decimal(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!n || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* The query of /api/events; the rest take none. */
static int query(const char *q, struct web_route *r, char *err, size_t errlen)
{
	while (*q) {
		size_t n = strcspn(q, "&"), k = strcspn(q, "=");
		uint64_t v;
		char key[24];

		if (k >= n || k == 0 || k >= sizeof(key))
			return bad(err, errlen, 400,
				   "malformed parameter: want key=value");
		memcpy(key, q, k);
		key[k] = '\0';
		if (r->target != WEB_EVENTS)
			return bad(err, errlen, 400,
				   "unknown parameter '%s': this page takes "
				   "none",
				   key);
		if (!strcmp(key, "after_id")) {
			if (!decimal(q + k + 1, n - k - 1, UINT64_MAX, &v))
				return bad(err, errlen, 400,
					   "after_id wants a decimal event "
					   "id");
			r->after_id = v;
		} else if (!strcmp(key, "limit")) {
			if (!decimal(q + k + 1, n - k - 1, WEB_EVENTS_MAX,
				     &v) ||
			    v == 0)
				return bad(err, errlen, 400,
					   "limit wants 1 to 1000");
			r->limit = (uint32_t)v;
		} else {
			return bad(err, errlen, 400,
				   "unknown parameter '%s' (events take "
				   "after_id and limit)",
				   key);
		}
		q += n;
		if (*q == '&' && !*++q)
			return bad(err, errlen, 400,
				   "malformed parameter: a trailing '&'");
	}
	return 200;
}

/* /api/<rest>: rest is after "/api/". */
static int api(const char *p, struct web_route *r, char *err, size_t errlen)
{
	char kind[16], sub[16];
	int n = segment(&p, kind, sizeof(kind));

	if (n <= 0)
		return bad(err, errlen, 404, "no such API page");
	if (!strcmp(kind, "status") || !strcmp(kind, "cells") ||
	    !strcmp(kind, "events")) {
		if (*p)
			return bad(err, errlen, 404,
				   "no such API page under "
				   "/api/%s",
				   kind);
		r->target = kind[0] == 's'   ? WEB_STATUS
			    : kind[0] == 'c' ? WEB_CELLS
					     : WEB_EVENTS;
		return 200;
	}
	if (strcmp(kind, "nodes") && strcmp(kind, "vms"))
		return bad(err, errlen, 404, "no such API page /api/%s", kind);
	if (!*p || !strcmp(p, "/")) {
		r->target = kind[0] == 'n' ? WEB_NODES : WEB_VMS;
		return 200;
	}
	p++; /* the '/' */
	n = segment(&p, r->name, sizeof(r->name));
	if (n < 0 || !cell_name_valid(r->name))
		return bad(err, errlen, 400, "not a valid name (%s)",
			   CELL_NAME_RULE);
	r->target = kind[0] == 'n' ? WEB_NODE : WEB_VM;
	if (!*p)
		return 200;
	p++;
	if (r->target == WEB_VM && segment(&p, sub, sizeof(sub)) >= 0 &&
	    !strcmp(sub, "pages") && !*p) {
		r->target = WEB_VM_PAGES;
		return 200;
	}
	return bad(err, errlen, 404, "no such API page under /api/%s", kind);
}

int web_route(const char *uri, struct web_route *r, char *err, size_t errlen)
{
	char path[URI_MAX + 1];
	const char *q;
	size_t n;
	int status;

	memset(r, 0, sizeof(*r));
	r->limit = WEB_EVENTS_MAX;
	if (!uri || uri[0] != '/')
		return bad(err, errlen, 400, "a path starting with '/'");
	n = strcspn(uri, "?#");
	if (n > URI_MAX)
		return bad(err, errlen, 400, "the path is too long");
	memcpy(path, uri, n);
	path[n] = '\0';
	q = uri[n] == '?' ? uri + n + 1 : "";
	if (uri[n] == '#' || strchr(q, '#'))
		return bad(err, errlen, 400,
			   "a fragment is not sent to servers");
	if (!strncmp(path, "/api/", 5)) {
		status = api(path + 5, r, err, errlen);
		return status == 200 ? query(q, r, err, errlen) : status;
	}
	r->target = WEB_ASSET;
	if (!strcmp(path, "/"))
		snprintf(r->name, sizeof(r->name), "index.html");
	else
		for (size_t i = 0; assets[i]; i++)
			if (!strcmp(path + 1, assets[i]))
				snprintf(r->name, sizeof(r->name), "%s",
					 assets[i]);
	if (!r->name[0])
		return bad(err, errlen, 404, "no page %.200s", path);
	/* the page takes no parameters either; a browser's cache-busting
	 * query is harmless there */
	return 200;
}
