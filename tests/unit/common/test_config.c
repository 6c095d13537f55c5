/*
 * Unit tests of the table-driven config parser (common/config.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/config.h"
#include "testsupport.h"

struct tcfg {
	char name[16];
	int64_t count;
	int64_t period_ms;
	int64_t size;
	bool flag;
	char level[8];
};

#define F(x) offsetof(struct tcfg, x)
static const struct cell_config_key table[] = {
	{"name", CELL_CFG_STRING, F(name), 16, 0, 0, "alpha", "a name"},
	{"count", CELL_CFG_INT, F(count), 0, 1, 10, "3", "a count"},
	{"period", CELL_CFG_DURATION, F(period_ms), 0, 10, 60000, "250ms",
	 "a period"},
	{"size", CELL_CFG_SIZE, F(size), 0, 0, 1 << 30, "64K", "a size"},
	{"flag", CELL_CFG_BOOL, F(flag), 0, 0, 0, "false", "a flag"},
	{"level", CELL_CFG_ENUM, F(level), 8, 0, 0, "info", "a level",
	 cell_config_log_levels},
	{NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

static char err[256];

/* Defaults are parsed with the same syntax as files. */
static void test_config_defaults_applied(void **state)
{
	struct tcfg c;

	(void)state;
	assert_int_equal(cell_config_defaults(table, &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "alpha");
	assert_int_equal(c.count, 3);
	assert_int_equal(c.period_ms, 250);
	assert_int_equal(c.size, 65536);
	assert_false(c.flag);
}

/* Bounds, syntax and unknown keys are refused with a message naming the
 * key; the field keeps its old value. */
static void test_config_bad_values_refused(void **state)
{
	struct tcfg c;

	(void)state;
	cell_config_defaults(table, &c, err, sizeof(err));
	assert_int_equal(
		cell_config_set(table, &c, "count", "11", err, sizeof(err)),
		-ERANGE);
	assert_non_null(strstr(err, "count"));
	assert_non_null(strstr(err, "[1, 10]"));
	assert_int_equal(c.count, 3);
	assert_int_equal(
		cell_config_set(table, &c, "count", "3x", err, sizeof(err)),
		-EINVAL);
	assert_int_equal(
		cell_config_set(table, &c, "period", "5ms", err, sizeof(err)),
		-ERANGE);
	assert_int_equal(
		cell_config_set(table, &c, "period", "1h", err, sizeof(err)),
		-EINVAL);
	assert_int_equal(
		cell_config_set(table, &c, "period", "-5", err, sizeof(err)),
		-EINVAL);
	assert_int_equal(
		cell_config_set(table, &c, "flag", "maybe", err, sizeof(err)),
		-EINVAL);
	assert_int_equal(cell_config_set(table, &c, "name",
					 "much-too-long-name", err,
					 sizeof(err)),
			 -ERANGE);
	assert_int_equal(
		cell_config_set(table, &c, "nope", "1", err, sizeof(err)),
		-ENOENT);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(
		cell_config_set(table, &c, "period", "2m", err, sizeof(err)),
		-ERANGE);
	assert_int_equal(
		cell_config_set(table, &c, "period", "3s", err, sizeof(err)),
		0);
	assert_int_equal(c.period_ms, 3000);
	assert_int_equal(
		cell_config_set(table, &c, "size", "2M", err, sizeof(err)), 0);
	assert_int_equal(c.size, 2 << 20);
}

static char *write_tmp(const char *dir, const char *text)
{
	static char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/test.conf", dir);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* A file is read with comments and blanks; an error names file:line. */
/* One size syntax everywhere: bytes, or binary K, M, G, T (also KiB ...
 * TiB); nothing else. */
static void test_config_sizes_binary_up_to_tebibytes(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(cell_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(cell_parse_size("64M", &v), 0);
	assert_int_equal(v, 64ll << 20);
	assert_int_equal(cell_parse_size("1T", &v), 0);
	assert_int_equal(v, 1ll << 40);
	assert_int_equal(cell_parse_size("4TiB", &v), 0);
	assert_int_equal(v, 4ll << 40);
	assert_int_equal(cell_parse_size("1P", &v), -EINVAL);
	assert_int_equal(cell_parse_size("", &v), -EINVAL);
	assert_int_equal(cell_parse_size("-1M", &v), -EINVAL);
	assert_int_equal(cell_parse_size("9999999999T", &v), -EINVAL);
}

static void test_config_file_errors_located(void **state)
{
	char *dir = ts_tmpdir("cfgtest");
	struct tcfg c;
	char *path;

	(void)state;
	cell_config_defaults(table, &c, err, sizeof(err));
	path = write_tmp(dir, "# comment\n\nname = beta # trailing\n"
			      "count=7\nflag = yes\n");
	assert_int_equal(
		cell_config_load_file(table, &c, path, err, sizeof(err)), 0);
	assert_string_equal(c.name, "beta");
	assert_int_equal(c.count, 7);
	assert_true(c.flag);
	path = write_tmp(dir, "count = 2\n\nbogus line\n");
	assert_int_equal(
		cell_config_load_file(table, &c, path, err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "test.conf:3:"));
	assert_int_equal(cell_config_load_file(table, &c, "/nonexistent/x", err,
					       sizeof(err)),
			 -ENOENT);
	ts_rmtree(dir);
	free(dir);
}

/* --config is loaded first; flags override it wherever they stand;
 * dashes equal underscores; other words are left for the caller. */
static void test_config_args_override_file(void **state)
{
	char *dir = ts_tmpdir("cfgtest");
	char *path = write_tmp(dir, "count = 7\nperiod = 1s\n");
	char cfgarg[700];
	struct tcfg c;
	int nrest = -1;

	(void)state;
	snprintf(cfgarg, sizeof(cfgarg), "--config=%s", path);
	char *argv[] = {"prog",	    "--count=9", "show",  cfgarg,
			"--period", "20ms",	 "extra", NULL};
	cell_config_defaults(table, &c, err, sizeof(err));
	assert_int_equal(cell_config_parse_args(table, &c, 7, argv, &nrest, err,
						sizeof(err)),
			 0);
	assert_int_equal(c.count, 9);
	assert_int_equal(c.period_ms, 20);
	assert_int_equal(nrest, 2);
	assert_string_equal(argv[1], "show");
	assert_string_equal(argv[2], "extra");

	char *bad[] = {"prog", "--count", NULL};
	assert_int_equal(cell_config_parse_args(table, &c, 2, bad, &nrest, err,
						sizeof(err)),
			 -EINVAL);
	char *help[] = {"prog", "--help", NULL};
	assert_int_equal(cell_config_parse_args(table, &c, 2, help, &nrest, err,
						sizeof(err)),
			 1);
	ts_rmtree(dir);
	free(dir);
}

/* The generated example, uncommented, loads back to the defaults, and
 * show output loads back to the same values. */
static void test_config_example_roundtrips(void **state)
{
	char *dir = ts_tmpdir("cfgtest");
	char path[600], line[512], *shown1, *shown2;
	size_t len;
	struct tcfg c, d;
	FILE *f, *in, *out;

	(void)state;
	snprintf(path, sizeof(path), "%s/example.conf", dir);
	f = open_memstream(&shown1, &len);
	cell_config_example(table, "test", f);
	fclose(f);
	in = fmemopen(shown1, strlen(shown1), "r");
	out = fopen(path, "w");
	while (fgets(line, sizeof(line), in))
		fputs(line[0] == '#' && strchr(line, '=') ? line + 1 : line,
		      out);
	fclose(in);
	fclose(out);
	free(shown1);
	memset(&c, 0x5a, sizeof(c));
	assert_int_equal(
		cell_config_load_file(table, &c, path, err, sizeof(err)), 0);
	cell_config_defaults(table, &d, err, sizeof(err));
	f = open_memstream(&shown1, &len);
	cell_config_show(table, &c, f);
	fclose(f);
	f = open_memstream(&shown2, &len);
	cell_config_show(table, &d, f);
	fclose(f);
	assert_string_equal(shown1, shown2);
	free(shown1);
	free(shown2);
	ts_rmtree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_applied),
		cmocka_unit_test(test_config_bad_values_refused),
		cmocka_unit_test(test_config_sizes_binary_up_to_tebibytes),
		cmocka_unit_test(test_config_file_errors_located),
		cmocka_unit_test(test_config_args_override_file),
		cmocka_unit_test(test_config_example_roundtrips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
