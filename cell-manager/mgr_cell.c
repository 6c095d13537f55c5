/*
 * Cells: the named sets of nodes that contain a VM's faults. The records
 * (m->cells, loaded from the store at start) and cellctl's cell methods:
 * create, delete (only when empty), info, list, add-node, remove-node
 * and set (the page policy of VMs created in it without one). A node is in at
 * most one cell; every change is written to the store before it is applied in
 * memory and acknowledged.
 *
 * Called by the cellctl method table (mgr_ctl.c), start-up (mgr_main.c)
 * and VM validation; calls the store and membership. Event-loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/clock.h"
#include "cell/log.h"
#include "mgr_int.h"

#define MOD "mgr"

struct mgr_cell *mgr_cell_find(struct mgr *m, const char *name)
{
	for (size_t i = 0; i < m->ncells; i++) {
		if (strcmp(m->cells[i].name, name) == 0)
			return &m->cells[i];
	}
	return NULL;
}

int mgr_cell_add(struct mgr *m, const char *name, uint64_t created_ms,
		 Cellmon__PagePolicy page_policy)
{
	if (m->ncells == m->capcells) {
		size_t cap = m->capcells ? m->capcells * 2 : 8;
		struct mgr_cell *v = realloc(m->cells, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		m->cells = v;
		m->capcells = cap;
	}
	snprintf(m->cells[m->ncells].name, sizeof(m->cells[0].name), "%s",
		 name);
	m->cells[m->ncells].page_policy =
		page_policy ? page_policy
			    : CELLMON__PAGE_POLICY__PAGE_POLICY_ALL;
	m->cells[m->ncells++].created_ms = created_ms;
	return 0;
}

void mgr_cell_remove(struct mgr *m, const char *name)
{
	struct mgr_cell *c = mgr_cell_find(m, name);

	if (!c)
		return;
	*c = m->cells[--m->ncells];
}

/* ---- cellctl methods ---- */

/* A CellInfo for cell c; names points into the nodes (caller frees). */
static int fill_cell(struct mgr *m, const struct mgr_cell *c,
		     Cellmon__CellInfo *ci)
{
	size_t n = mgr_members_count(m->members), k = 0;

	cellmon__cell_info__init(ci);
	ci->name = (char *)c->name;
	ci->created_ms = c->created_ms;
	ci->page_policy = c->page_policy;
	ci->nodes = calloc(n ? n : 1, sizeof(char *));
	if (!ci->nodes)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct mgr_node *node = mgr_members_at(m->members, i);

		if (strcmp(node->cell, c->name) != 0)
			continue;
		ci->nodes[k++] = node->id;
		if (node->state == MGR_NODE_UP)
			ci->nodes_up++;
	}
	ci->n_nodes = k;
	return 0;
}

static void reply_cell(struct mgr *m, struct cell_rpc_call *call,
		       const struct mgr_cell *c)
{
	Cellmon__CellReply r = CELLMON__CELL_REPLY__INIT;
	Cellmon__CellInfo ci;

	if (c) {
		if (fill_cell(m, c, &ci)) {
			cell_rpc_reply_error(call, -ENOMEM, "out of memory");
			return;
		}
		r.cell = &ci;
	}
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_CELL_REPLY, &r.base);
	if (c)
		free(ci.nodes);
}

static struct mgr_cell *cell_or_error(struct mgr *m, struct cell_rpc_call *call,
				      const char *name)
{
	struct mgr_cell *c = mgr_cell_find(m, name);

	if (!c)
		cell_rpc_reply_error(call, -ENOENT, "no cell '%.64s'", name);
	return c;
}

void mgr_cell_create(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg)
{
	struct mgr *m = arg;
	const Cellmon__CellRequest *req = (const void *)msg;
	uint64_t now = cell_wall_ms();
	Cellmon__PagePolicy pp;
	int rc;

	if (!cell_name_valid(req->name)) {
		cell_rpc_reply_error(
			call, -EINVAL,
			"invalid cell name '%.64s': use " CELL_NAME_RULE,
			req->name);
		return;
	}
	if (req->page_policy &&
	    !cellproto_known(&cellproto_page_policies, (int)req->page_policy)) {
		cell_rpc_reply_error(call, -EINVAL, "unknown page policy %d",
				     (int)req->page_policy);
		return;
	}
	if (mgr_cell_find(m, req->name)) {
		cell_rpc_reply_error(call, -EEXIST, "cell '%s' exists",
				     req->name);
		return;
	}
	pp = req->page_policy ? req->page_policy
			      : CELLMON__PAGE_POLICY__PAGE_POLICY_ALL;
	rc = mgr_store_cell_create(m->store, req->name, now, (int)pp);
	if (!rc)
		rc = mgr_cell_add(m, req->name, now, pp);
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot create cell '%s': %s",
				     req->name, strerror(-rc));
		return;
	}
	CELL_INFO(MOD, "cell created name=%s page_policy=%s", req->name,
		  cellproto_name(&cellproto_page_policies, (int)pp));
	reply_cell(m, call, mgr_cell_find(m, req->name));
}

void mgr_cell_delete(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		     void *arg)
{
	struct mgr *m = arg;
	const Cellmon__CellRequest *req = (const void *)msg;
	struct mgr_cell *c = cell_or_error(m, call, req->name);
	Cellmon__CellInfo ci;
	int rc;

	if (!c)
		return;
	if (fill_cell(m, c, &ci) == 0) {
		size_t n = ci.n_nodes;

		free(ci.nodes);
		if (n) {
			cell_rpc_reply_error(call, -EBUSY,
					     "cell '%s' still has %zu node(s); "
					     "remove them first",
					     c->name, n);
			return;
		}
	}
	rc = mgr_store_cell_delete(m->store, req->name);
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot delete cell '%s': %s",
				     req->name, strerror(-rc));
		return;
	}
	mgr_cell_remove(m, req->name);
	CELL_INFO(MOD, "cell deleted name=%s", req->name);
	reply_cell(m, call, NULL);
}

void mgr_cell_info(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct mgr *m = arg;
	const Cellmon__CellRequest *req = (const void *)msg;
	struct mgr_cell *c = cell_or_error(m, call, req->name);

	if (c)
		reply_cell(m, call, c);
}

/* add-node and remove-node: both change one node's cell, store first. */
static void set_node_cell(struct mgr *m, struct cell_rpc_call *call,
			  const Cellmon__CellRequest *req, bool add)
{
	struct mgr_cell *c = cell_or_error(m, call, req->name);
	struct mgr_node *n;
	bool member;
	int rc;

	if (!c || !(n = mgr_node_or_error(m, call, req->node)))
		return;
	member = strcmp(n->cell, c->name) == 0;
	if (add && member) {
		reply_cell(m, call, c);
		return;
	}
	if (add && n->cell[0]) {
		cell_rpc_reply_error(call, -EBUSY,
				     "node '%s' is in cell '%s'; remove it "
				     "there first",
				     n->id, n->cell);
		return;
	}
	if (!add && !member) {
		cell_rpc_reply_error(call, -ENOENT,
				     "node '%s' is not in cell '%s'", n->id,
				     c->name);
		return;
	}
	rc = mgr_store_node_set_cell(m->store, n->id, add ? c->name : "");
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot %s node: %s",
				     add ? "add" : "remove", strerror(-rc));
		return;
	}
	snprintf(n->cell, sizeof(n->cell), "%s", add ? c->name : "");
	CELL_INFO(MOD, "node %s cell node=%s cell=%s",
		  add ? "added to" : "removed from", n->id, c->name);
	reply_cell(m, call, c);
}

void mgr_cell_add_node(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		       void *arg)
{
	set_node_cell(arg, call, (const void *)msg, true);
}

void mgr_cell_remove_node(struct cell_rpc_call *call,
			  const ProtobufCMessage *msg, void *arg)
{
	set_node_cell(arg, call, (const void *)msg, false);
}

void mgr_cell_list(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		   void *arg)
{
	struct mgr *m = arg;
	Cellmon__CellListReply r = CELLMON__CELL_LIST_REPLY__INIT;
	Cellmon__CellInfo *infos = calloc(m->ncells + 1, sizeof(*infos));
	Cellmon__CellInfo **ptrs = calloc(m->ncells + 1, sizeof(*ptrs));
	size_t i = 0;

	(void)msg;
	if (!infos || !ptrs) {
		cell_rpc_reply_error(call, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < m->ncells; i++) {
		if (fill_cell(m, &m->cells[i], &infos[i])) {
			cell_rpc_reply_error(call, -ENOMEM, "out of memory");
			goto out;
		}
		ptrs[i] = &infos[i];
	}
	r.n_cells = m->ncells;
	r.cells = ptrs;
	cell_rpc_reply(call, CELLMON__MSG_TYPE__MSG_CELL_LIST_REPLY, &r.base);
out:
	while (infos && i-- > 0)
		free(infos[i].nodes);
	free(infos);
	free(ptrs);
}

/* cell set CELL page-policy=MODE: VMs created in the cell from now on
 * without --page-policy get MODE; VMs that exist keep theirs (vm set). */
void mgr_cell_set(struct cell_rpc_call *call, const ProtobufCMessage *msg,
		  void *arg)
{
	struct mgr *m = arg;
	const Cellmon__CellRequest *req = (const void *)msg;
	struct mgr_cell *c = cell_or_error(m, call, req->name);
	int rc;

	if (!c)
		return;
	if (req->page_policy == CELLMON__PAGE_POLICY__PAGE_POLICY_DEFAULT ||
	    !cellproto_known(&cellproto_page_policies, (int)req->page_policy)) {
		cell_rpc_reply_error(call, -EINVAL,
				     "cell set needs a page policy "
				     "(off, migrate, replicate or all)");
		return;
	}
	rc = mgr_store_cell_set_policy(m->store, c->name,
				       (int)req->page_policy);
	if (rc) {
		cell_rpc_reply_error(call, rc, "cannot change cell '%s': %s",
				     c->name, strerror(-rc));
		return;
	}
	c->page_policy = req->page_policy;
	CELL_INFO(
		MOD, "cell page policy name=%s page_policy=%s", c->name,
		cellproto_name(&cellproto_page_policies, (int)c->page_policy));
	reply_cell(m, call, c);
}
