/*
 * The node thread's waiting policy (wait.h). Node thread only; no
 * clock of its own, so tests script the gaps.
 */
#include <string.h>

#include "wait.h"

#define MIN_BOUND_US 10u       /* never spin for less than a pass or two */
#define GAP_CAP_US   10000000u /* longer gaps count as 10 s */

const struct dsm_wait_params dsm_wait_defaults = {
	.spin_max_us = 200,
	.window = 32,
	.probe_every = 4,
	.probe_max = 64,
	.hyst_pct = 10,
};

void dsm_wait_init(struct dsm_wait *w, const struct dsm_wait_params *p)
{
	memset(w, 0, sizeof(*w));
	w->p = p ? *p : dsm_wait_defaults;
	if (!w->p.window || w->p.window > DSM_WAIT_WINDOW_MAX)
		w->p.window = dsm_wait_defaults.window;
	if (!w->p.probe_every)
		w->p.probe_every = 1;
	if (w->p.probe_max < w->p.probe_every)
		w->p.probe_max = w->p.probe_every;
	w->mode = w->cur = DSM_WAIT_SPIN;
	w->bound_us = w->p.spin_max_us;
	w->probe_interval = w->p.probe_every;
	/* the first window ends in a probe */
	w->since_probe = w->probe_interval - 1;
}

uint32_t dsm_wait_budget(const struct dsm_wait *w)
{
	return w->cur == DSM_WAIT_SPIN ? w->bound_us : 0;
}

static uint32_t median(const uint32_t *v, uint32_t n)
{
	uint32_t s[DSM_WAIT_WINDOW_MAX];

	memcpy(s, v, n * sizeof(*v));
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && s[j - 1] > s[j]; j--) {
			uint32_t t = s[j];

			s[j] = s[j - 1];
			s[j - 1] = t;
		}
	return s[n / 2];
}

/* The spin bound from the last spinning window's median: twice it,
 * within [MIN_BOUND_US, spin_max_us]; none if the median itself is past
 * spin_max_us. */
static uint32_t learn_bound(const struct dsm_wait *w, uint32_t med)
{
	uint64_t b = 2ull * med;

	if (med > w->p.spin_max_us)
		return 0;
	if (b < MIN_BOUND_US)
		b = MIN_BOUND_US;
	return b > w->p.spin_max_us ? w->p.spin_max_us : (uint32_t)b;
}

static void end_window(struct dsm_wait *w)
{
	uint32_t med = median(w->gaps, w->ngaps);
	enum dsm_wait_mode other;

	w->ngaps = 0;
	/* a median of 0 us is a real one: keep 0 for "none" */
	w->median[w->cur] = med ? med : 1;
	if (w->cur == DSM_WAIT_SPIN)
		w->bound_us = learn_bound(w, med);
	if (w->cur != w->mode) {
		/* a probe: switch only on a clear win */
		uint64_t probe =
			(uint64_t)w->median[w->cur] * (100u + w->p.hyst_pct);
		uint64_t chosen = (uint64_t)w->median[w->mode] * 100u;

		if (probe < chosen) {
			w->mode = w->cur;
			w->switches++;
			w->probe_interval = w->p.probe_every;
		} else if (w->probe_interval < w->p.probe_max) {
			w->probe_interval *= 2;
			if (w->probe_interval > w->p.probe_max)
				w->probe_interval = w->p.probe_max;
		}
		w->since_probe = 0;
		w->cur = w->mode;
		return;
	}
	other = w->mode == DSM_WAIT_SPIN ? DSM_WAIT_SLEEP : DSM_WAIT_SPIN;
	if (++w->since_probe >= w->probe_interval)
		w->cur = other;
}

void dsm_wait_done(struct dsm_wait *w, uint64_t gap_us)
{
	w->gaps[w->ngaps++] =
		gap_us > GAP_CAP_US ? GAP_CAP_US : (uint32_t)gap_us;
	w->waits++;
	if (w->ngaps >= w->p.window)
		end_window(w);
}
