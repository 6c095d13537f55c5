/*
 * How the node thread waits: spin (non-blocking passes of its loop) or
 * sleep (a blocking pass), chosen by what it measures on this host
 * (docs/design/dsm-protocol.md, "Waiting"). Pure: no clock, no thread;
 * the loop tells it when a wait began and how long it lasted, and asks
 * how long to spin. One waiter for each reason to wait: for the reply
 * to a request of this node's, and for more work after serving a peer.
 *
 * A wait's gap is the time from the moment the loop had nothing to do
 * to the next work it found, as the loop saw it: a sleeping loop's gap
 * includes its wake-up, and a spinning loop's includes whatever its
 * spinning cost the peer that answers. The waiter runs windows of
 * `window` waits in one mode; at the end of each it takes the window's
 * median gap. In its chosen mode it spins up to a bound of twice the
 * last spinning median (at most spin_max_us; none when that median is
 * already past spin_max_us: spinning would not catch the reply), then
 * sleeps. Every probe_every windows it runs one window in the other
 * mode and switches only if that window's median beats the chosen
 * mode's last one by more than hyst_pct percent; a probe that loses
 * doubles the windows until the next (up to probe_max windows), a
 * switch resets it.
 */
#ifndef DSM_WAIT_H
#define DSM_WAIT_H

#include <stdbool.h>
#include <stdint.h>

#define DSM_WAIT_WINDOW_MAX 64

enum dsm_wait_mode {
	DSM_WAIT_SPIN = 0,
	DSM_WAIT_SLEEP = 1,
};

struct dsm_wait_params {
	uint32_t spin_max_us; /* the longest spin; the fixed spin policy's */
	uint32_t window;      /* waits per window, <= DSM_WAIT_WINDOW_MAX */
	uint32_t probe_every; /* windows in the chosen mode before a probe */
	uint32_t probe_max;   /* the longest that interval grows to */
	uint32_t hyst_pct;    /* a probe must win by more than this */
};

/* The defaults: spin_max 200 us, windows of 32, a probe after 4 windows
 * growing to 64, 10 % hysteresis. */
extern const struct dsm_wait_params dsm_wait_defaults;

struct dsm_wait {
	struct dsm_wait_params p;
	enum dsm_wait_mode mode; /* the chosen mode */
	enum dsm_wait_mode cur;	 /* the mode of the window being run */
	uint32_t gaps[DSM_WAIT_WINDOW_MAX], ngaps;
	uint32_t median[2];	  /* the last window's, per mode; 0: none */
	uint32_t bound_us;	  /* spin this long in spin mode */
	uint32_t since_probe;	  /* windows run in the chosen mode */
	uint32_t probe_interval;  /* windows between probes, now */
	uint64_t waits, switches; /* for logs and stats */
};

/* p NULL: the defaults. The first window spins and the second probes
 * sleeping, so a node has measured both within 2 windows. */
void dsm_wait_init(struct dsm_wait *w, const struct dsm_wait_params *p);

/* Microseconds the loop should spin in the wait now beginning before it
 * sleeps; 0: sleep at once. */
uint32_t dsm_wait_budget(const struct dsm_wait *w);

/* A wait ended after gap_us (work found, or the wait abandoned: pass
 * what it lasted). Closes a window when it is full. */
void dsm_wait_done(struct dsm_wait *w, uint64_t gap_us);

#endif
