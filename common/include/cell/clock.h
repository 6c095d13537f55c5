/*
 * Time for the control plane.
 *
 * cell_now_ms() reads CLOCK_MONOTONIC; cell_wall_ms() reads the real-time
 * clock (for logs and for timestamps shown to people). Code whose timing is
 * tested (membership, leases) takes a struct cell_clock so tests can drive
 * time by hand instead of sleeping.
 */
#ifndef CELL_CLOCK_H
#define CELL_CLOCK_H

#include <stdint.h>

uint64_t cell_now_ms(void);
uint64_t cell_now_us(void);
uint64_t cell_wall_ms(void);

struct cell_clock {
	/* Returns the current time in ms; never NULL. */
	uint64_t (*now_ms)(void *arg);
	void *arg;
};

/* The real monotonic clock. */
extern const struct cell_clock cell_clock_monotonic;

static inline uint64_t cell_clock_now(const struct cell_clock *c)
{
	return c->now_ms(c->arg);
}

#endif
