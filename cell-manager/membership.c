/*
 * The membership state machine of membership.h.
 *
 * Nodes live in an array of pointers (a node's address stays put for the
 * daemon's connection bookkeeping); lookups are linear, which is fine for
 * the tens of nodes a cell manager tracks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membership.h"

struct mgr_members {
	struct mgr_members_config cfg;
	struct cell_clock clock;
	mgr_members_change_fn on_change;
	void *arg;
	struct mgr_node **nodes;
	size_t n, cap;
	uint64_t next_incarnation;
	uint64_t epoch;
};

int mgr_members_create(const struct mgr_members_config *cfg,
		       const struct cell_clock *clock,
		       mgr_members_change_fn on_change, void *arg,
		       struct mgr_members **out)
{
	struct mgr_members *m;

	if (cfg->suspect_after_ms == 0 ||
	    cfg->down_after_ms <= cfg->suspect_after_ms)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->clock = *clock;
	m->on_change = on_change;
	m->arg = arg;
	m->next_incarnation = 1;
	*out = m;
	return 0;
}

void mgr_members_destroy(struct mgr_members *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->nodes[i]);
	free(m->nodes);
	free(m);
}

void mgr_members_set_counters(struct mgr_members *m, uint64_t next_incarnation,
			      uint64_t epoch)
{
	m->next_incarnation = next_incarnation ? next_incarnation : 1;
	m->epoch = epoch;
}

uint64_t mgr_members_next_incarnation(const struct mgr_members *m)
{
	return m->next_incarnation;
}

uint64_t mgr_members_epoch(const struct mgr_members *m)
{
	return m->epoch;
}

uint64_t mgr_members_now(const struct mgr_members *m)
{
	return cell_clock_now(&m->clock);
}

struct mgr_node *mgr_members_find(struct mgr_members *m, const char *id)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->nodes[i]->id, id) == 0)
			return m->nodes[i];
	}
	return NULL;
}

size_t mgr_members_count(const struct mgr_members *m)
{
	return m->n;
}

struct mgr_node *mgr_members_at(struct mgr_members *m, size_t i)
{
	return i < m->n ? m->nodes[i] : NULL;
}

static struct mgr_node *add_node(struct mgr_members *m, const char *id)
{
	struct mgr_node *n;

	if (!cell_name_valid(id))
		return NULL;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct mgr_node **v = realloc(m->nodes, cap * sizeof(*v));

		if (!v)
			return NULL;
		m->nodes = v;
		m->cap = cap;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	strcpy(n->id, id);
	m->nodes[m->n++] = n;
	return n;
}

static void set_state(struct mgr_members *m, struct mgr_node *n,
		      enum mgr_node_state s, uint64_t wall_ms)
{
	enum mgr_node_state old = n->state;

	if (old == s)
		return;
	n->state = s;
	n->state_since_wall_ms = wall_ms;
	if (s == MGR_NODE_DOWN)
		m->epoch++;
	if (m->on_change)
		m->on_change(n, old, m->arg);
}

int mgr_members_restore(struct mgr_members *m, const struct mgr_node *saved)
{
	struct mgr_node *n;

	if (mgr_members_find(m, saved->id))
		return -EEXIST;
	n = add_node(m, saved->id);
	if (!n)
		return cell_name_valid(saved->id) ? -ENOMEM : -EINVAL;
	*n = *saved;
	n->conn = NULL;
	n->last_seen_ms = cell_clock_now(&m->clock);
	if (n->state != MGR_NODE_DOWN)
		n->state = MGR_NODE_SUSPECT;
	return 0;
}

int mgr_members_register(struct mgr_members *m,
			 const struct mgr_registration *r,
			 struct mgr_node **out, int *resumed,
			 uint64_t *old_incarnation)
{
	uint64_t now = cell_clock_now(&m->clock);
	struct mgr_node *n = mgr_members_find(m, r->id);

	if (!cell_name_valid(r->id))
		return -EINVAL;
	if (n && r->other_conn_live && n->state != MGR_NODE_DOWN &&
	    now - n->last_seen_ms < m->cfg.suspect_after_ms &&
	    r->prev_incarnation != n->incarnation)
		return -EEXIST;
	if (!n) {
		n = add_node(m, r->id);
		if (!n)
			return -ENOMEM;
	}
	*old_incarnation = n->incarnation;
	*resumed = r->prev_incarnation != 0 &&
		   r->prev_incarnation == n->incarnation &&
		   n->state != MGR_NODE_DOWN;
	if (!*resumed) {
		n->incarnation = m->next_incarnation++;
		m->epoch++;
	}
	snprintf(n->addr, sizeof(n->addr), "%s", r->addr);
	n->cpus = r->cpus;
	n->memory_mb = r->memory_mb;
	n->heartbeat_ms = r->heartbeat_ms;
	n->last_seen_ms = now;
	if (n->state != MGR_NODE_UP)
		set_state(m, n, MGR_NODE_UP, cell_wall_ms());
	*out = n;
	return 0;
}

int mgr_members_heartbeat(struct mgr_members *m, const char *id,
			  uint64_t incarnation, struct mgr_node **out)
{
	struct mgr_node *n = mgr_members_find(m, id);

	if (!n)
		return -ENOENT;
	if (n->incarnation != incarnation || n->state == MGR_NODE_DOWN)
		return -ESTALE;
	n->last_seen_ms = cell_clock_now(&m->clock);
	set_state(m, n, MGR_NODE_UP, cell_wall_ms());
	*out = n;
	return 0;
}

void mgr_members_tick(struct mgr_members *m)
{
	uint64_t now = cell_clock_now(&m->clock);

	for (size_t i = 0; i < m->n; i++) {
		struct mgr_node *n = m->nodes[i];
		uint64_t quiet = now - n->last_seen_ms;

		if (n->state == MGR_NODE_DOWN)
			continue;
		if (quiet >= m->cfg.down_after_ms &&
		    (!m->cfg.may_declare_down ||
		     m->cfg.may_declare_down(n, m->arg)))
			set_state(m, n, MGR_NODE_DOWN, cell_wall_ms());
		else if (quiet >= m->cfg.suspect_after_ms &&
			 n->state == MGR_NODE_UP)
			set_state(m, n, MGR_NODE_SUSPECT, cell_wall_ms());
	}
}

const char *mgr_node_state_name(enum mgr_node_state s)
{
	switch (s) {
	case MGR_NODE_UP:
		return "up";
	case MGR_NODE_SUSPECT:
		return "suspect";
	case MGR_NODE_DOWN:
		return "down";
	default:
		return "unknown";
	}
}
