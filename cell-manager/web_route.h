/*
 * The web view's URLs (web_route.c): a request's path and query as what
 * to serve, with no I/O, so it is unit-tested and fuzzed on its own.
 *
 *   /  /index.html  /app.js  /style.css     the page (WEB_ASSET)
 *   /api/status                             status and health
 *   /api/nodes  /api/nodes/ID               node list, node info
 *   /api/cells                              cell list
 *   /api/vms  /api/vms/NAME                 VM list, VM info
 *   /api/vms/NAME/pages                     where the VM's memory lives
 *   /api/events?after_id=N&limit=N          the event log, oldest first
 */
#ifndef WEB_ROUTE_H
#define WEB_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "cell/util.h"

enum web_target {
	WEB_ASSET,
	WEB_STATUS,
	WEB_NODES,
	WEB_NODE,
	WEB_CELLS,
	WEB_VMS,
	WEB_VM,
	WEB_VM_PAGES,
	WEB_EVENTS,
};

#define WEB_EVENTS_MAX 1000 /* most events one request returns */

struct web_route {
	enum web_target target;
	/* WEB_NODE, WEB_VM, WEB_VM_PAGES: the name; WEB_ASSET: the file */
	char name[CELL_NAME_MAX + 1];
	uint64_t after_id; /* WEB_EVENTS */
	uint32_t limit;	   /* WEB_EVENTS: 1..WEB_EVENTS_MAX */
};

/* uri: a request's path with its query, as sent. 200 with r filled, or
 * the status to answer (400: malformed, 404: no such page) with why in
 * err. */
int web_route(const char *uri, struct web_route *r, char *err, size_t errlen);

#endif
