/*
 * Fault points (cell/fault.h). The environment is read at every pass, so
 * a test may arm a point in its own process with setenv() between two
 * calls; the pass count is per process, across every point.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cell/fault.h"

bool cell_fault_points_built(void)
{
#ifdef CELLMON_FAULT_POINTS
	return true;
#else
	return false;
#endif
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int cell_fault_point(const char *name)
{
	static long hits;
	const char *f = getenv("CELLMON_FAULT");
	const char *after = getenv("CELLMON_FAULT_AFTER");
	const char *action = getenv("CELLMON_FAULT_ACTION");

	if (!f || strcmp(f, name) != 0)
		return 0;
	if (__atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) <
	    (after ? atol(after) : 1))
		return 0;
	if (action && strcmp(action, "error") == 0)
		return -EIO;
	if (action && strncmp(action, "sleep:", 6) == 0) {
		sleep_ms(atol(action + 6));
		return 0;
	}
	_exit(99);
}
