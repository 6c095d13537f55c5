/*
 * The DSM node's adaptive waiting (dsm/src/wait.c) on a scripted host.
 * The learner has no clock: the node loop measures each wait's gap and
 * reports it. Here a scripted host plays the loop: it asks for the spin
 * budget, decides from the host's reply times whether the reply came
 * while spinning or only after a sleep, advances its own clock by that
 * gap and reports it. The host's reply times (with some noise) are the
 * script: fast replies that spinning does not slow (spinning must win),
 * replies that spinning slows (sleeping must win), equal ones (no
 * flapping), replies too slow to catch (no spinning), and a host that
 * changes half way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wait.h"

struct host {
	uint32_t spin_us;  /* reply time seen by a spinning node */
	uint32_t sleep_us; /* seen by a sleeping one: reply + wake-up */
	uint32_t noise;	   /* +- this many us, pseudo-random */
	uint64_t clock_us, seed;
	uint64_t spun, slept; /* waits that ended in each way */
};

/* -noise..+noise, pseudo-random */
static int64_t jitter(struct host *h)
{
	h->seed = h->seed * 6364136223846793005ull + 1442695040888963407ull;
	if (!h->noise)
		return 0;
	return (int64_t)((h->seed >> 33) % (2 * h->noise + 1)) -
	       (int64_t)h->noise;
}

/* One wait: caught while spinning if the reply comes within the budget,
 * else the node spun its budget (if any), slept, and was woken by the
 * reply, or at once if the reply came while it was going to sleep. */
static void one_wait(struct dsm_wait *w, struct host *h)
{
	uint32_t budget = dsm_wait_budget(w);
	int64_t spin = (int64_t)h->spin_us + jitter(h);
	int64_t sleep = (int64_t)h->sleep_us + jitter(h);
	int64_t gap;

	if (budget && spin <= (int64_t)budget) {
		gap = spin;
		h->spun++;
	} else {
		gap = sleep > (int64_t)budget ? sleep : (int64_t)budget;
		h->slept++;
	}
	h->clock_us += (uint64_t)gap;
	dsm_wait_done(w, (uint64_t)gap);
}

static void run(struct dsm_wait *w, struct host *h, int waits)
{
	h->spun = h->slept = 0;
	for (int i = 0; i < waits; i++)
		one_wait(w, h);
}

/* Replies in ~30 us whether the node spins or not; a wake-up costs 8 us
 * more: spinning wins, and nearly every wait is caught spinning. */
static void test_wait_fast_replies_spin(void **state)
{
	struct dsm_wait w;
	struct host h = {30, 38, 3, 0, 1, 0, 0};

	(void)state;
	dsm_wait_init(&w, NULL);
	run(&w, &h, 4000);
	assert_int_equal(w.mode, DSM_WAIT_SPIN);
	assert_true(h.spun > h.slept * 9); /* probes and their backoff */
	/* the bound covers the replies and is twice their median */
	assert_in_range(w.bound_us, 54, 66);
	assert_int_equal(w.switches, 0);
}

/* Spinning makes the peer's TLB shootdowns slow (replies ~75 us while
 * spinning, ~45 us with a sleep and its wake-up): sleeping wins within
 * the first two windows and stays. */
static void test_wait_spin_slows_replies_sleep(void **state)
{
	struct dsm_wait w;
	struct host h = {75, 45, 4, 0, 2, 0, 0};
	uint32_t window = dsm_wait_defaults.window;

	(void)state;
	dsm_wait_init(&w, NULL);
	run(&w, &h, (int)(2 * window));
	assert_int_equal(w.mode, DSM_WAIT_SLEEP);
	assert_int_equal(w.switches, 1);
	run(&w, &h, 4000);
	assert_int_equal(w.mode, DSM_WAIT_SLEEP);
	assert_int_equal(w.switches, 1);
	assert_true(h.slept > h.spun * 9);
}

/* The same reply time both ways, noisy: the hysteresis keeps the first
 * choice; no flapping over 20,000 waits. */
static void test_wait_equal_does_not_flap(void **state)
{
	struct dsm_wait w;
	struct host h = {40, 40, 4, 0, 3, 0, 0};

	(void)state;
	dsm_wait_init(&w, NULL);
	run(&w, &h, 20000);
	assert_true(w.switches <= 1);
	/* probes that lose back off to one in probe_max windows */
	assert_int_equal(w.probe_interval, dsm_wait_defaults.probe_max);
}

/* Replies take 800 us, past spin_max: spinning cannot catch them, so
 * the spin bound drops to 0 (no core burnt for nothing). */
static void test_wait_slow_replies_no_spin(void **state)
{
	struct dsm_wait w;
	struct host h = {800, 806, 10, 0, 4, 0, 0};

	(void)state;
	dsm_wait_init(&w, NULL);
	run(&w, &h, (int)dsm_wait_defaults.window);
	assert_int_equal(w.bound_us, 0);
	assert_int_equal(dsm_wait_budget(&w), 0);
	run(&w, &h, 2000);
	assert_int_equal(dsm_wait_budget(&w), 0);
	assert_int_equal(h.spun, 0);
}

/* A host where spinning wins turns into one where it slows the peer (a
 * VM moved to busier hardware): the next probe finds it, within
 * probe_max + 2 windows; and back again. */
static void test_wait_host_changes(void **state)
{
	struct dsm_wait w;
	struct host h = {30, 38, 2, 0, 5, 0, 0};
	uint32_t window = dsm_wait_defaults.window;
	int limit = (int)((dsm_wait_defaults.probe_max + 2) * window);

	(void)state;
	dsm_wait_init(&w, NULL);
	run(&w, &h, 20000); /* probes backed off to the longest interval */
	assert_int_equal(w.mode, DSM_WAIT_SPIN);
	h.spin_us = 90;
	h.sleep_us = 50;
	for (int i = 0; i < limit && w.mode == DSM_WAIT_SPIN; i++)
		one_wait(&w, &h);
	assert_int_equal(w.mode, DSM_WAIT_SLEEP);
	/* a switch resets the probe interval */
	assert_int_equal(w.probe_interval, dsm_wait_defaults.probe_every);
	h.spin_us = 30;
	h.sleep_us = 38;
	for (int i = 0; i < limit && w.mode == DSM_WAIT_SLEEP; i++)
		one_wait(&w, &h);
	assert_int_equal(w.mode, DSM_WAIT_SPIN);
	assert_int_equal(w.switches, 2);
}

/* Parameters: a window bigger than the ring is cut to the default; the
 * fixed spin bound is what spin_max says; a gap of hours is capped. */
static void test_wait_params(void **state)
{
	struct dsm_wait_params p = dsm_wait_defaults;
	struct dsm_wait w;

	(void)state;
	p.window = DSM_WAIT_WINDOW_MAX + 1;
	p.spin_max_us = 50;
	p.probe_every = 0;
	dsm_wait_init(&w, &p);
	assert_int_equal(w.p.window, dsm_wait_defaults.window);
	assert_int_equal(w.p.probe_every, 1);
	assert_int_equal(dsm_wait_budget(&w), 50);
	for (uint32_t i = 0; i < w.p.window; i++)
		dsm_wait_done(&w, 3600ull * 1000000ull);
	assert_int_equal(w.median[DSM_WAIT_SPIN], 10000000);
	assert_int_equal(w.bound_us, 0);
	/* tiny gaps give the smallest bound, not 0 */
	dsm_wait_init(&w, &p);
	for (uint32_t i = 0; i < w.p.window; i++)
		dsm_wait_done(&w, 1);
	assert_int_equal(w.bound_us, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wait_fast_replies_spin),
		cmocka_unit_test(test_wait_spin_slows_replies_sleep),
		cmocka_unit_test(test_wait_equal_does_not_flap),
		cmocka_unit_test(test_wait_slow_replies_no_spin),
		cmocka_unit_test(test_wait_host_changes),
		cmocka_unit_test(test_wait_params),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
