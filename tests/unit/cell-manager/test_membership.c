/*
 * Unit tests of the membership state machine (cell-manager/membership.c),
 * driven by a hand-stepped clock: suspect and down happen exactly at the
 * configured times, without sleeping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "membership.h"

static uint64_t fake_now = 1000;

static uint64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

static const struct cell_clock clock = {fake_clock, NULL};

struct changes {
	int n;
	enum mgr_node_state last_old, last_new;
};

static void on_change(struct mgr_node *n, enum mgr_node_state old, void *arg)
{
	struct changes *c = arg;

	c->n++;
	c->last_old = old;
	c->last_new = n->state;
}

static struct mgr_members *make(struct changes *ch)
{
	struct mgr_members_config cfg = {1000, 3000};
	struct mgr_members *m;

	fake_now = 1000;
	memset(ch, 0, sizeof(*ch));
	assert_int_equal(mgr_members_create(&cfg, &clock, on_change, ch, &m),
			 0);
	return m;
}

static struct mgr_node *reg(struct mgr_members *m, const char *id,
			    uint64_t prev, int live, int *resumed, int *rc)
{
	struct mgr_registration r = {id, "127.0.0.1", 2, 1024, 250, prev, live};
	struct mgr_node *n = NULL;
	uint64_t old;

	*rc = mgr_members_register(m, &r, &n, resumed, &old);
	return n;
}

static void at(struct mgr_members *m, uint64_t t)
{
	fake_now = t;
	mgr_members_tick(m);
}

/* Silence makes a node suspect at exactly suspect_after and down at
 * exactly down_after; a heartbeat in between brings it back up. */
static void test_members_silence_suspect_then_down_on_time(void **state)
{
	struct changes ch;
	struct mgr_members *m = make(&ch);
	struct mgr_node *n, *hb;
	int resumed, rc;

	(void)state;
	n = reg(m, "n1", 0, 0, &resumed, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(n->state, MGR_NODE_UP);
	assert_int_equal(n->incarnation, 1);
	at(m, 1999);
	assert_int_equal(n->state, MGR_NODE_UP);
	at(m, 2000);
	assert_int_equal(n->state, MGR_NODE_SUSPECT);
	assert_int_equal(mgr_members_heartbeat(m, "n1", 1, &hb), 0);
	assert_int_equal(n->state, MGR_NODE_UP);
	assert_int_equal(ch.last_old, MGR_NODE_SUSPECT);
	at(m, 2000 + 2999);
	assert_int_equal(n->state, MGR_NODE_SUSPECT);
	at(m, 2000 + 3000);
	assert_int_equal(n->state, MGR_NODE_DOWN);
	assert_int_equal(ch.last_new, MGR_NODE_DOWN);
	/* up (new), suspect, up, suspect, down */
	assert_int_equal(ch.n, 5);
	mgr_members_destroy(m);
}

/* A down node's incarnation is over: its heartbeats are refused and it
 * comes back only by registering, as a new incarnation. */
static void test_members_down_node_new_incarnation(void **state)
{
	struct changes ch;
	struct mgr_members *m = make(&ch);
	struct mgr_node *n, *hb;
	uint64_t epoch;
	int resumed, rc;

	(void)state;
	n = reg(m, "n1", 0, 0, &resumed, &rc);
	at(m, 5000);
	assert_int_equal(n->state, MGR_NODE_DOWN);
	epoch = mgr_members_epoch(m);
	assert_int_equal(mgr_members_heartbeat(m, "n1", 1, &hb), -ESTALE);
	n = reg(m, "n1", 1, 0, &resumed, &rc);
	assert_int_equal(rc, 0);
	assert_false(resumed);
	assert_int_equal(n->incarnation, 2);
	assert_int_equal(n->state, MGR_NODE_UP);
	assert_true(mgr_members_epoch(m) > epoch);
	assert_int_equal(mgr_members_heartbeat(m, "n1", 1, &hb), -ESTALE);
	assert_int_equal(mgr_members_heartbeat(m, "n1", 2, &hb), 0);
	assert_int_equal(mgr_members_heartbeat(m, "nx", 2, &hb), -ENOENT);
	mgr_members_destroy(m);
}

/* Reconnecting with the current incarnation while not down resumes it;
 * a fresh process (prev 0) gets a new one. */
static void test_members_reconnect_resumes_incarnation(void **state)
{
	struct changes ch;
	struct mgr_members *m = make(&ch);
	struct mgr_node *n;
	int resumed, rc;

	(void)state;
	reg(m, "n1", 0, 0, &resumed, &rc);
	at(m, 2500); /* suspect */
	n = reg(m, "n1", 1, 0, &resumed, &rc);
	assert_true(resumed);
	assert_int_equal(n->incarnation, 1);
	assert_int_equal(n->state, MGR_NODE_UP);
	n = reg(m, "n1", 0, 0, &resumed, &rc);
	assert_false(resumed);
	assert_int_equal(n->incarnation, 2);
	mgr_members_destroy(m);
}

/* A second live agent claiming a fresh node's id is refused; once the
 * first goes quiet (or its connection is gone) the id is taken over. */
static void test_members_duplicate_live_id_refused(void **state)
{
	struct changes ch;
	struct mgr_members *m = make(&ch);
	struct mgr_node *n;
	int resumed, rc;

	(void)state;
	reg(m, "n1", 0, 0, &resumed, &rc);
	reg(m, "n1", 0, 1, &resumed, &rc);
	assert_int_equal(rc, -EEXIST);
	at(m, 2100);
	n = reg(m, "n1", 0, 1, &resumed, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(n->incarnation, 2);
	reg(m, "Bad Id", 0, 0, &resumed, &rc);
	assert_int_equal(rc, -EINVAL);
	mgr_members_destroy(m);
}

/* Restored nodes come back suspect with a full down_after of grace;
 * down ones stay down; counters continue. */
static void test_members_restore_grace_then_down(void **state)
{
	struct changes ch;
	struct mgr_members *m = make(&ch);
	struct mgr_node saved = {0}, *n;
	int resumed, rc;

	(void)state;
	strcpy(saved.id, "n1");
	saved.state = MGR_NODE_UP;
	saved.incarnation = 7;
	fake_now = 50000;
	assert_int_equal(mgr_members_restore(m, &saved), 0);
	strcpy(saved.id, "n2");
	saved.state = MGR_NODE_DOWN;
	assert_int_equal(mgr_members_restore(m, &saved), 0);
	assert_int_equal(mgr_members_restore(m, &saved), -EEXIST);
	mgr_members_set_counters(m, 8, 20);
	n = mgr_members_find(m, "n1");
	assert_int_equal(n->state, MGR_NODE_SUSPECT);
	at(m, 52999);
	assert_int_equal(n->state, MGR_NODE_SUSPECT);
	n = reg(m, "n1", 7, 0, &resumed, &rc);
	assert_true(resumed);
	n = reg(m, "n2", 7, 0, &resumed, &rc);
	assert_false(resumed);
	assert_int_equal(n->incarnation, 8);
	at(m, 60000);
	assert_int_equal(mgr_members_find(m, "n1")->state, MGR_NODE_DOWN);
	mgr_members_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_members_silence_suspect_then_down_on_time),
		cmocka_unit_test(test_members_down_node_new_incarnation),
		cmocka_unit_test(test_members_reconnect_resumes_incarnation),
		cmocka_unit_test(test_members_duplicate_live_id_refused),
		cmocka_unit_test(test_members_restore_grace_then_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
