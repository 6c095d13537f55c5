/*
 * The web view's files (cell-manager/web/), compiled into the manager by
 * web/embed.cmake.
 */
#ifndef WEB_ASSETS_H
#define WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *name; /* "index.html" */
	const char *type; /* its Content-Type */
	const unsigned char *data;
	size_t len;
};

/* Ends with an entry whose name is NULL. */
extern const struct web_asset web_assets[];

#endif
