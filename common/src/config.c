/*
 * The table-driven config parser described in cell/config.h.
 *
 * Every setter goes through cell_config_set(), so a value from the defaults,
 * a file or the command line meets the same syntax and bounds checks.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cell/config.h"

const char *const cell_config_log_levels[] = {"debug", "info", "warn",
					      "error", "off",  NULL};

static const struct cell_config_key *find_key(const struct cell_config_key *t,
					      const char *name, size_t len)
{
	for (; t->name; t++) {
		if (strlen(t->name) == len && strncmp(t->name, name, len) == 0)
			return t;
	}
	return NULL;
}

static int parse_scaled(const char *s, const char *const *units,
			const int64_t *scale, int64_t *out)
{
	char *end;
	long long v;

	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -EINVAL;
	for (int i = 0; units[i]; i++) {
		if (strcasecmp(end, units[i]) == 0) {
			if (scale[i] && v > INT64_MAX / scale[i])
				return -EINVAL;
			*out = (int64_t)v * scale[i];
			return 0;
		}
	}
	return -EINVAL;
}

int cell_parse_duration_ms(const char *s, int64_t *out)
{
	static const char *const units[] = {"", "ms", "s", "m", NULL};
	static const int64_t scale[] = {1, 1, 1000, 60000};

	return parse_scaled(s, units, scale, out);
}

int cell_parse_size(const char *s, int64_t *out)
{
	static const char *const units[] = {"",	   "K",	  "M",	 "G",	"T",
					    "KiB", "MiB", "GiB", "TiB", NULL};
	static const int64_t scale[] = {
		1,	 1 << 10, 1 << 20, 1 << 30,	    (int64_t)1 << 40,
		1 << 10, 1 << 20, 1 << 30, (int64_t)1 << 40};

	return parse_scaled(s, units, scale, out);
}

int cell_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1", NULL};
	static const char *const no[] = {"false", "no", "off", "0", NULL};

	for (int i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static const char *type_hint(enum cell_config_type type)
{
	switch (type) {
	case CELL_CFG_INT:
		return "an integer";
	case CELL_CFG_BOOL:
		return "true or false";
	case CELL_CFG_STRING:
		return "a string";
	case CELL_CFG_DURATION:
		return "a duration like 250ms or 3s";
	case CELL_CFG_SIZE:
		return "a size like 4096, 64K or 2G";
	case CELL_CFG_ENUM:
		return "one of the listed words";
	}
	return "?";
}

static int set_key(const struct cell_config_key *k, void *cfg,
		   const char *value, char *err, size_t errlen)
{
	char *field = (char *)cfg + k->offset;
	int64_t v = 0;
	int b, rc = 0;

	switch (k->type) {
	case CELL_CFG_ENUM:
		for (int i = 0; k->choices[i]; i++) {
			if (strcmp(value, k->choices[i]) == 0) {
				snprintf(field, k->size, "%s", value);
				return 0;
			}
		}
		snprintf(err, errlen, "%s: '%s' is not one of:", k->name,
			 value);
		for (int i = 0; k->choices[i]; i++) {
			size_t used = strlen(err);

			snprintf(err + used, errlen - used, " %s",
				 k->choices[i]);
		}
		return -EINVAL;
	case CELL_CFG_STRING:
		if (strlen(value) >= k->size) {
			snprintf(err, errlen, "%s: value longer than %zu bytes",
				 k->name, k->size - 1);
			return -ERANGE;
		}
		strcpy(field, value);
		return 0;
	case CELL_CFG_BOOL:
		if (cell_parse_bool(value, &b))
			goto bad;
		*(bool *)field = b;
		return 0;
	case CELL_CFG_INT:
		rc = parse_int(value, &v);
		break;
	case CELL_CFG_DURATION:
		rc = cell_parse_duration_ms(value, &v);
		break;
	case CELL_CFG_SIZE:
		rc = cell_parse_size(value, &v);
		break;
	}
	if (rc)
		goto bad;
	if (v < k->min || v > k->max) {
		snprintf(err, errlen,
			 "%s: %s is out of range [%" PRId64 ", %" PRId64 "]",
			 k->name, value, k->min, k->max);
		return -ERANGE;
	}
	*(int64_t *)field = v;
	return 0;
bad:
	snprintf(err, errlen, "%s: '%s' is not %s", k->name, value,
		 type_hint(k->type));
	return -EINVAL;
}

int cell_config_set(const struct cell_config_key *table, void *cfg,
		    const char *key, const char *value, char *err,
		    size_t errlen)
{
	const struct cell_config_key *k = find_key(table, key, strlen(key));

	if (!k) {
		snprintf(err, errlen, "unknown config key '%s'", key);
		return -ENOENT;
	}
	return set_key(k, cfg, value, err, errlen);
}

int cell_config_defaults(const struct cell_config_key *table, void *cfg,
			 char *err, size_t errlen)
{
	for (const struct cell_config_key *k = table; k->name; k++) {
		int rc = set_key(k, cfg, k->def, err, errlen);

		if (rc)
			return rc;
	}
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int cell_config_load_file(const struct cell_config_key *table, void *cfg,
			  const char *path, char *err, size_t errlen)
{
	char line[1024], msg[512];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *hash;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path,
				 lineno);
			rc = -EINVAL;
			break;
		}
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		s = trim(line);
		if (!*s)
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected 'key = value'",
				 path, lineno);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		rc = cell_config_set(table, cfg, trim(s), trim(eq + 1), msg,
				     sizeof(msg));
		if (rc) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
			break;
		}
	}
	fclose(f);
	return rc;
}

/* Splits "--key=value" or "--key value"; returns how many argv slots it
 * used (1 or 2), or -EINVAL when the value is missing. */
static int split_opt(int argc, char **argv, int i, char *key, size_t keylen,
		     const char **value)
{
	const char *a = argv[i] + 2, *eq = strchr(a, '=');
	size_t n = eq ? (size_t)(eq - a) : strlen(a);

	if (n >= keylen)
		n = keylen - 1;
	memcpy(key, a, n);
	key[n] = '\0';
	/* Accept --heartbeat-ms as well as --heartbeat_ms. */
	for (char *p = key; *p; p++) {
		if (*p == '-')
			*p = '_';
	}
	if (eq) {
		*value = eq + 1;
		return 1;
	}
	if (i + 1 >= argc)
		return -EINVAL;
	*value = argv[i + 1];
	return 2;
}

int cell_config_parse_args(const struct cell_config_key *table, void *cfg,
			   int argc, char **argv, int *nrest, char *err,
			   size_t errlen)
{
	char key[128];
	const char *value;
	int rest = 0, rc, used;

	/* The config file first, so flags override it wherever they are. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "--config", 8) != 0 ||
		    (argv[i][8] != '=' && argv[i][8] != '\0'))
			continue;
		used = split_opt(argc, argv, i, key, sizeof(key), &value);
		if (used < 0) {
			snprintf(err, errlen, "--config needs a file name");
			return -EINVAL;
		}
		rc = cell_config_load_file(table, cfg, value, err, errlen);
		if (rc)
			return rc;
		i += used - 1;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return 1;
		if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == '\0') {
			argv[1 + rest++] = argv[i];
			continue;
		}
		used = split_opt(argc, argv, i, key, sizeof(key), &value);
		if (used < 0) {
			snprintf(err, errlen, "%s needs a value", argv[i]);
			return -EINVAL;
		}
		i += used - 1;
		if (strcmp(key, "config") == 0)
			continue;
		rc = cell_config_set(table, cfg, key, value, err, errlen);
		if (rc)
			return rc;
	}
	*nrest = rest;
	return 0;
}

static void format_value(const struct cell_config_key *k, const void *cfg,
			 FILE *out)
{
	const char *field = (const char *)cfg + k->offset;
	int64_t v;

	switch (k->type) {
	case CELL_CFG_STRING:
	case CELL_CFG_ENUM:
		fputs(field, out);
		return;
	case CELL_CFG_BOOL:
		fputs(*(const bool *)field ? "true" : "false", out);
		return;
	case CELL_CFG_DURATION:
		v = *(const int64_t *)field;
		fprintf(out, "%" PRId64 "ms", v);
		return;
	case CELL_CFG_INT:
	case CELL_CFG_SIZE:
		v = *(const int64_t *)field;
		fprintf(out, "%" PRId64, v);
		return;
	}
}

void cell_config_show(const struct cell_config_key *table, const void *cfg,
		      FILE *out)
{
	for (const struct cell_config_key *k = table; k->name; k++) {
		fprintf(out, "%s = ", k->name);
		format_value(k, cfg, out);
		fputc('\n', out);
	}
}

static void print_bounds(const struct cell_config_key *k, FILE *out)
{
	if (k->type == CELL_CFG_ENUM) {
		fputs(":", out);
		for (int i = 0; k->choices[i]; i++)
			fprintf(out, " %s", k->choices[i]);
		return;
	}
	if (k->type == CELL_CFG_STRING || k->type == CELL_CFG_BOOL)
		return;
	fprintf(out, ", %" PRId64 "..%" PRId64 "%s", k->min, k->max,
		k->type == CELL_CFG_DURATION ? " ms"
		: k->type == CELL_CFG_SIZE   ? " bytes"
					     : "");
}

void cell_config_example(const struct cell_config_key *table, const char *title,
			 FILE *out)
{
	fprintf(out, "# %s\n", title);
	fprintf(out, "# Generated from the daemon's config table; every key is "
		     "shown with its default.\n");
	for (const struct cell_config_key *k = table; k->name; k++) {
		fprintf(out, "\n# %s (%s", k->help, type_hint(k->type));
		print_bounds(k, out);
		fprintf(out, ")\n#%s = %s\n", k->name, k->def);
	}
}

void cell_config_usage(const struct cell_config_key *table, FILE *out)
{
	for (const struct cell_config_key *k = table; k->name; k++) {
		char opt[64];

		snprintf(opt, sizeof(opt), "--%s=VALUE", k->name);
		fprintf(out, "  %-26s %s (default %s%s%s", opt, k->help,
			*k->def ? "" : "'", k->def, *k->def ? "" : "'");
		print_bounds(k, out);
		fputs(")\n", out);
	}
}
