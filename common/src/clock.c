/*
 * Monotonic and wall clocks, and the real struct cell_clock. Any thread.
 */
#include <time.h>

#include "cell/clock.h"

static uint64_t ts_to_us(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000u + (uint64_t)ts->tv_nsec / 1000u;
}

uint64_t cell_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts_to_us(&ts);
}

uint64_t cell_now_ms(void)
{
	return cell_now_us() / 1000u;
}

uint64_t cell_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_to_us(&ts) / 1000u;
}

static uint64_t monotonic_now(void *arg)
{
	(void)arg;
	return cell_now_ms();
}

const struct cell_clock cell_clock_monotonic = {monotonic_now, NULL};
