/*
 * Log line formatting and the per-call-site rate limiter behind CELL_LOG_RL.
 *
 * Every line is formatted into a stack buffer and written with one fputs
 * under flockfile, so lines from several threads never interleave. Long
 * messages are truncated rather than split.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cell/clock.h"
#include "cell/log.h"

enum cell_log_level cell_log_threshold = CELL_LOG_INFO;
static FILE *log_stream;

static const char *const level_names[] = {"debug", "info", "warn", "error",
					  "off"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR",
					 "OFF"};

void cell_log_set_stream(FILE *f)
{
	log_stream = f;
}

void cell_log_set_level(enum cell_log_level level)
{
	cell_log_threshold = level;
}

int cell_log_level_parse(const char *s, enum cell_log_level *out)
{
	for (int i = 0; i <= CELL_LOG_OFF; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum cell_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *cell_log_level_name(enum cell_log_level level)
{
	if (level > CELL_LOG_OFF)
		return "?";
	return level_names[level];
}

void cell_log_write(enum cell_log_level level, const char *module,
		    const char *fmt, ...)
{
	char line[1024];
	uint64_t now = cell_wall_ms();
	time_t secs = (time_t)(now / 1000);
	struct tm tm;
	size_t n;
	va_list ap;
	FILE *f = log_stream ? log_stream : stderr;

	gmtime_r(&secs, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(
		line + n, sizeof(line) - n,
		".%03uZ %s %s: ", (unsigned)(now % 1000),
		level_tags[level > CELL_LOG_OFF ? CELL_LOG_OFF : level],
		module);
	if (n < sizeof(line)) {
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
	}
	n = strnlen(line, sizeof(line) - 2);
	line[n++] = '\n';
	line[n] = '\0';

	flockfile(f);
	fputs(line, f);
	fflush(f);
	funlockfile(f);
}

int cell_ratelimit_allow(struct cell_ratelimit *rl, uint32_t *suppressed)
{
	uint64_t now = cell_now_ms();

	*suppressed = 0;
	if (now - rl->window_start_ms >= rl->interval_ms ||
	    rl->window_start_ms == 0) {
		*suppressed = rl->suppressed;
		rl->window_start_ms = now ? now : 1;
		rl->used = 0;
		rl->suppressed = 0;
	}
	if (rl->used < rl->burst) {
		rl->used++;
		return 1;
	}
	rl->suppressed++;
	return 0;
}
