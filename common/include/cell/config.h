/*
 * Table-driven configuration shared by the daemons.
 *
 * Each daemon has one config struct and one table of struct cell_config_key
 * describing every field: name, type, bounds, default and a line of help.
 * The same table drives defaults, the config file parser ("key = value"
 * lines, '#' comments), "--key=value" overrides on the command line,
 * validation, "config show" and the commented example file in deploy/.
 *
 * Values are checked against the bounds when they are set; an error message
 * names the key, the value and the accepted range. Not thread-safe: configs
 * are parsed in main() before any thread starts.
 */
#ifndef CELL_CONFIG_H
#define CELL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cell_config_type {
	CELL_CFG_INT,	   /* int64_t, decimal */
	CELL_CFG_BOOL,	   /* bool: true/false/yes/no/on/off/1/0 */
	CELL_CFG_STRING,   /* char[size], NUL-terminated */
	CELL_CFG_DURATION, /* int64_t milliseconds: "250ms", "3s", "2m", "500"
			    */
	CELL_CFG_SIZE,	   /* int64_t bytes: "4096", "64K", "2M", "1G" */
	CELL_CFG_ENUM,	   /* char[size], one of choices */
};

struct cell_config_key {
	const char *name;
	enum cell_config_type type;
	size_t offset; /* offsetof() the field in the config struct */
	size_t size;   /* CELL_CFG_STRING: buffer size, else unused */
	int64_t min;   /* numeric types: inclusive bounds */
	int64_t max;
	const char *def; /* default, in the same syntax as the file */
	const char *help;
	const char *const *choices; /* CELL_CFG_ENUM: NULL-terminated */
};

/* The choices of a log_level key, for CELL_CFG_ENUM. */
extern const char *const cell_config_log_levels[];

/* Fills every field from its default. Returns 0, or -EINVAL if a default
 * is itself invalid (a programming error; err says which). */
int cell_config_defaults(const struct cell_config_key *table, void *cfg,
			 char *err, size_t errlen);

/* Sets one key from text. -ENOENT for an unknown key, -EINVAL for a bad
 * value, -ERANGE out of bounds; err always explains. */
int cell_config_set(const struct cell_config_key *table, void *cfg,
		    const char *key, const char *value, char *err,
		    size_t errlen);

/* Reads a file of "key = value" lines. Errors carry "path:line: ". */
int cell_config_load_file(const struct cell_config_key *table, void *cfg,
			  const char *path, char *err, size_t errlen);

/*
 * Parses a daemon's argv: "--config=FILE" or "--config FILE" (loaded first,
 * wherever it appears), then every "--key=value" or "--key value" in order.
 * Arguments that do not start with "--" are left for the caller: their
 * indexes are moved to the front of argv and their count returned through
 * *nrest. "--help" and "-h" return 1 without error. Returns 0, 1 or -errno.
 */
int cell_config_parse_args(const struct cell_config_key *table, void *cfg,
			   int argc, char **argv, int *nrest, char *err,
			   size_t errlen);

/* "key = value" for every key, in table order, as a loadable file. */
void cell_config_show(const struct cell_config_key *table, const void *cfg,
		      FILE *out);

/* A commented example file: help, bounds and default of every key. */
void cell_config_example(const struct cell_config_key *table, const char *title,
			 FILE *out);

/* The "--key=VALUE  help (default ...)" lines of a --help text. */
void cell_config_usage(const struct cell_config_key *table, FILE *out);

/* Text parsers used by the table, exposed for CLI flags. 0 or -EINVAL. */
int cell_parse_duration_ms(const char *s, int64_t *out);
int cell_parse_size(const char *s, int64_t *out);
int cell_parse_bool(const char *s, int *out);

#endif
