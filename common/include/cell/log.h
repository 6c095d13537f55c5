/*
 * Logging for every cellmon program and library.
 *
 * One line per event: "2026-11-22T08:40:56.123Z INFO mgr: node up id=n1".
 * The macros test the level before any formatting happens, so a disabled
 * debug line costs one comparison. CELL_LOG_RL is the rate-limited variant
 * for paths an untrusted peer can drive (bad frames, unknown types): each
 * call site keeps its own budget and reports how many lines it suppressed.
 *
 * Libraries only call the macros; the daemon's main() chooses the level and
 * the sink (stderr by default). Thread safety: a line is written with one
 * fwrite-style call under the stdio lock, so lines never interleave.
 */
#ifndef CELL_LOG_H
#define CELL_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

enum cell_log_level {
	CELL_LOG_DEBUG = 0,
	CELL_LOG_INFO,
	CELL_LOG_WARN,
	CELL_LOG_ERROR,
	CELL_LOG_OFF,
};

extern enum cell_log_level cell_log_threshold;

/* Where lines go; NULL restores stderr. The stream is not closed. */
void cell_log_set_stream(FILE *f);
void cell_log_set_level(enum cell_log_level level);
/* "debug", "info", "warn", "error", "off" -> 0, or -EINVAL. */
int cell_log_level_parse(const char *s, enum cell_log_level *out);
const char *cell_log_level_name(enum cell_log_level level);

void cell_log_write(enum cell_log_level level, const char *module,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A per-call-site budget: at most `burst` lines per `interval_ms`. */
struct cell_ratelimit {
	uint64_t window_start_ms;
	uint32_t interval_ms;
	uint32_t burst;
	uint32_t used;
	uint32_t suppressed;
};

/*
 * Returns nonzero when the caller may log now. When a new window opens and
 * lines were suppressed in the last one, *suppressed gets their count.
 */
int cell_ratelimit_allow(struct cell_ratelimit *rl, uint32_t *suppressed);

#define CELL_LOG(level, module, ...)                                    \
	do {                                                            \
		if ((level) >= cell_log_threshold)                      \
			cell_log_write((level), (module), __VA_ARGS__); \
	} while (0)

#define CELL_DEBUG(module, ...) CELL_LOG(CELL_LOG_DEBUG, module, __VA_ARGS__)
#define CELL_INFO(module, ...)	CELL_LOG(CELL_LOG_INFO, module, __VA_ARGS__)
#define CELL_WARN(module, ...)	CELL_LOG(CELL_LOG_WARN, module, __VA_ARGS__)
#define CELL_ERROR(module, ...) CELL_LOG(CELL_LOG_ERROR, module, __VA_ARGS__)

/* At most 5 lines per 5 s from this call site. */
#define CELL_LOG_RL(level, module, ...)                                  \
	do {                                                             \
		static struct cell_ratelimit rl_ = {0, 5000, 5, 0, 0};   \
		uint32_t sup_ = 0;                                       \
		if ((level) >= cell_log_threshold &&                     \
		    cell_ratelimit_allow(&rl_, &sup_)) {                 \
			if (sup_)                                        \
				cell_log_write(                          \
					(level), (module),               \
					"(%u similar lines suppressed)", \
					sup_);                           \
			cell_log_write((level), (module), __VA_ARGS__);  \
		}                                                        \
	} while (0)

#endif
