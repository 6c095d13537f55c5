/*
 * The manager's web view (web_listen): the page in cell-manager/web/,
 * compiled in (web_assets.h), and the JSON API it reads (web_route.h).
 * The API's data is cellctl's: each page runs a cellctl method of
 * mgr_ctl_methods in this process (cell_rpc_call_local) and converts the
 * reply with ctl_json.c, the code behind `cellctl ... -o json`, so the
 * two cannot drift apart.
 *
 * Read-only: the view has a viewer's rights and nothing more; any method
 * but GET and HEAD is refused (403 under /api/, 405 for the page). It is
 * plain HTTP without authentication, so like /metrics it belongs on
 * loopback or a management network.
 *
 * Every method the view runs answers before it returns (they read the
 * manager's own state); a reply that came later would find its request
 * answered already (500) and be dropped, never written to a freed one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "cell/http.h"
#include "cell/log.h"
#include "ctl_json.h"
#include "mgr_int.h"
#include "web_assets.h"
#include "web_route.h"

#define MOD "web"

/* A reply as JSON; p: the health problems it shows, for /api/status
 * (NULL elsewhere). */
typedef json_t *(*to_json_fn)(const ProtobufCMessage *reply,
			      struct ctl_problems *p);

struct local {
	bool done, orphan;
	int status;
	to_json_fn conv;
	struct ctl_problems *problems;
	json_t *json;
	char err[256];
};

static void on_local(int status, const ProtobufCMessage *reply,
		     const char *errmsg, void *arg)
{
	struct local *l = arg;

	if (l->orphan) { /* answered later than the view waits */
		free(l);
		return;
	}
	l->done = true;
	l->status = status;
	if (status)
		snprintf(l->err, sizeof(l->err), "%s",
			 errmsg ? errmsg : strerror(-status));
	else if (!(l->json = l->conv(reply, l->problems)))
		l->status = -ENOMEM;
}

/* Runs method type on req; the reply as JSON (conv), or NULL with the
 * status (-errno) and the method's message in err. */
static json_t *run(struct mgr *m, uint16_t type, const ProtobufCMessage *req,
		   to_json_fn conv, struct ctl_problems *p, int *status,
		   char *err, size_t errlen)
{
	struct local *l = calloc(1, sizeof(*l));
	json_t *j;
	int rc;

	if (!l) {
		*status = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->conv = conv;
	l->problems = p;
	rc = cell_rpc_call_local(mgr_ctl_methods, type, req, m, on_local, l);
	if (rc || !l->done) {
		*status = rc ? rc : -EINPROGRESS;
		snprintf(err, errlen, "%s",
			 rc ? strerror(-rc) : "the method did not answer");
		if (rc)
			free(l);
		else
			l->orphan = true;
		return NULL;
	}
	*status = l->status;
	snprintf(err, errlen, "%s", l->err);
	j = l->json;
	free(l);
	return j;
}

/* ---- each reply type as JSON ---- */

static json_t *status_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	json_t *j = ctl_json_health((const void *)r, p);

	/* the disk server is asked by cellctl status, not here */
	if (j) {
		json_object_del(j, "disk_server_configured");
		json_object_set_new(j, "disk_server_checked", json_false());
	}
	return j;
}

static json_t *nodes_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	(void)p;
	return ctl_json_nodes((const void *)r);
}

/* /api/status reads the node and VM lists for their problems only: no
 * JSON of them is built (json_true stands for "read") */
static json_t *node_problems(const ProtobufCMessage *r, struct ctl_problems *p)
{
	ctl_node_problems(p, (const void *)r);
	return json_true();
}

static json_t *vm_problems(const ProtobufCMessage *r, struct ctl_problems *p)
{
	ctl_vm_problems(p, (const void *)r);
	return json_true();
}

static json_t *node_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	const Cellmon__NodeInfoReply *n = (const void *)r;

	(void)p;
	return n->node ? ctl_json_node(n->node) : json_object();
}

static json_t *cells_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	(void)p;
	return ctl_json_cells((const void *)r);
}

static json_t *vms_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	(void)p;
	return ctl_json_vms((const void *)r);
}

static json_t *vm_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	const Cellmon__VmReply *v = (const void *)r;

	(void)p;
	return v->vm ? ctl_json_vm(v->vm) : json_object();
}

static json_t *pages_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	(void)p;
	return ctl_json_vm_pages((const void *)r);
}

static json_t *events_json(const ProtobufCMessage *r, struct ctl_problems *p)
{
	(void)p;
	return ctl_json_events((const void *)r);
}

/* ---- answers ---- */

static void reply_json(struct evhttp_request *req, int code, json_t *j)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char *text =
		j ? json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;

	json_decref(j);
	if (!text) {
		evhttp_send_error(req, 500, "cannot build the JSON");
		return;
	}
	evhttp_add_header(h, "Cache-Control", "no-store");
	cell_http_reply(req, code, "application/json", text, strlen(text));
	free(text);
}

static void reply_error(struct evhttp_request *req, int code, const char *msg)
{
	reply_json(req, code,
		   json_pack("{s:s, s:i}", "error", msg, "status", code));
}

/* An HTTP status for a method's -errno. */
static int http_status(int rc)
{
	switch (rc) {
	case -ENOENT:
		return 404;
	case -EINVAL:
		return 400;
	case -ENOMEM:
	case -EINPROGRESS:
		return 500;
	default:
		return 503;
	}
}

/* /api/status: cellctl status's reply with its health (nodes not up,
 * failed VMs) from the node and VM lists, as `cellctl status -o json`
 * has it; the disk server is not asked (disk_server_checked: false). */
static void serve_status(struct mgr *m, struct evhttp_request *req)
{
	Cellmon__StatusRequest sreq = CELLMON__STATUS_REQUEST__INIT;
	Cellmon__NodeListRequest nreq = CELLMON__NODE_LIST_REQUEST__INIT;
	Cellmon__VmListRequest vreq = CELLMON__VM_LIST_REQUEST__INIT;
	struct ctl_problems p = {0};
	char err[256];
	json_t *j;
	int rc;

	j = run(m, CELLMON__MSG_TYPE__MSG_NODE_LIST, &nreq.base, node_problems,
		&p, &rc, err, sizeof(err));
	if (!j)
		ctl_problem(&p, "the node list: %s", err);
	json_decref(j);
	j = run(m, CELLMON__MSG_TYPE__MSG_VM_LIST, &vreq.base, vm_problems, &p,
		&rc, err, sizeof(err));
	if (!j)
		ctl_problem(&p, "the VM list: %s", err);
	json_decref(j);
	j = run(m, CELLMON__MSG_TYPE__MSG_STATUS, &sreq.base, status_json, &p,
		&rc, err, sizeof(err));
	ctl_problems_free(&p);
	if (j)
		reply_json(req, 200, j);
	else
		reply_error(req, http_status(rc), err);
}

/* The API's pages after /api/status: the cellctl method each runs and
 * how its reply reads as JSON. */
static const struct {
	enum web_target target;
	uint16_t type;
	const ProtobufCMessageDescriptor *req; /* lists: their request */
	to_json_fn conv;
} api_pages[] = {
	{WEB_NODES, CELLMON__MSG_TYPE__MSG_NODE_LIST,
	 &cellmon__node_list_request__descriptor, nodes_json},
	{WEB_NODE, CELLMON__MSG_TYPE__MSG_NODE_INFO, NULL, node_json},
	{WEB_CELLS, CELLMON__MSG_TYPE__MSG_CELL_LIST,
	 &cellmon__cell_list_request__descriptor, cells_json},
	{WEB_VMS, CELLMON__MSG_TYPE__MSG_VM_LIST,
	 &cellmon__vm_list_request__descriptor, vms_json},
	{WEB_VM, CELLMON__MSG_TYPE__MSG_VM_INFO, NULL, vm_json},
	{WEB_VM_PAGES, CELLMON__MSG_TYPE__MSG_VM_PAGES, NULL, pages_json},
	{WEB_EVENTS, CELLMON__MSG_TYPE__MSG_EVENTS, NULL, events_json},
};

/* A page of the API: its method's reply as JSON. */
static void serve_api(struct mgr *m, struct evhttp_request *req,
		      const struct web_route *r)
{
	union {
		Cellmon__NodeListRequest nodes;
		Cellmon__CellListRequest cells;
		Cellmon__VmListRequest vms;
	} list;
	Cellmon__NodeInfoRequest node = CELLMON__NODE_INFO_REQUEST__INIT;
	Cellmon__VmRequest vm = CELLMON__VM_REQUEST__INIT;
	Cellmon__EventsRequest events = CELLMON__EVENTS_REQUEST__INIT;
	char name[sizeof(r->name)], err[256];
	const ProtobufCMessage *msg = &list.nodes.base;
	json_t *j;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(api_pages) / sizeof(api_pages[0]); i++)
		if (api_pages[i].target == r->target)
			break;
	if (i == sizeof(api_pages) / sizeof(api_pages[0])) {
		serve_status(m, req);
		return;
	}
	if (api_pages[i].req) /* a list: its request has no field */
		protobuf_c_message_init(api_pages[i].req, &list);
	memcpy(name, r->name, sizeof(name));
	node.id = name;
	vm.name = name;
	events.after_id = r->after_id;
	events.limit = r->limit;
	if (r->target == WEB_NODE)
		msg = &node.base;
	else if (r->target == WEB_VM || r->target == WEB_VM_PAGES)
		msg = &vm.base;
	else if (r->target == WEB_EVENTS)
		msg = &events.base;
	j = run(m, api_pages[i].type, msg, api_pages[i].conv, NULL, &rc, err,
		sizeof(err));
	if (j)
		reply_json(req, 200, j);
	else
		reply_error(req, http_status(rc), err);
}

static void serve_asset(struct evhttp_request *req, const char *name)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	for (const struct web_asset *a = web_assets; a->name; a++) {
		if (strcmp(a->name, name))
			continue;
		evhttp_add_header(h, "Cache-Control", "no-cache");
		cell_http_reply(req, 200, a->type, a->data, a->len);
		return;
	}
	evhttp_send_error(req, 404, "no such page");
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct mgr *m = arg;
	const char *uri = evhttp_request_get_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	bool api = uri && !strncmp(uri, "/api/", 5);
	struct web_route r;
	char err[256];
	int code;

	/* the page loads nothing from elsewhere and runs no inline code */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'self'; img-src 'self' data:");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(h, "Allow", "GET, HEAD");
		CELL_DEBUG(MOD, "refused a write to %.200s from %s",
			   uri ? uri : "?",
			   evhttp_request_get_host(req)
				   ? evhttp_request_get_host(req)
				   : "?");
		if (api)
			reply_error(req, 403,
				    "the web view is read-only (a viewer's "
				    "rights): change the cell with cellctl");
		else
			evhttp_send_error(req, 405, "only GET here");
		return;
	}
	code = web_route(uri, &r, err, sizeof(err));
	if (code != 200) {
		if (api)
			reply_error(req, code, err);
		else
			evhttp_send_error(req, code, NULL);
		return;
	}
	if (r.target == WEB_ASSET)
		serve_asset(req, r.name);
	else
		serve_api(m, req, &r);
}

int mgr_web_start(struct mgr *m)
{
	char err[300];
	int port = 0, rc;

	if (!m->cfg.web_listen[0])
		return 0;
	rc = cell_http_serve(m->base, m->cfg.web_listen, "web_listen",
			     on_request, m, &m->web, &port, err, sizeof(err));
	if (rc) {
		CELL_ERROR(MOD, "%s", err);
		return rc;
	}
	cell_hostport_bound(m->cfg.web_listen, port, m->web_addr,
			    sizeof(m->web_addr));
	CELL_INFO(MOD,
		  "web view at http://%s/ (read-only, no authentication: "
		  "keep web_listen on loopback or a management network)",
		  m->web_addr);
	return 0;
}

void mgr_web_stop(struct mgr *m)
{
	cell_http_server_free(m->web);
	m->web = NULL;
}
