/*
 * The name rule every user-given name follows (cell/util.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cell/util.h"

static void test_name_rule_accepts(void **state)
{
	static const char *const ok[] = {"a",	    "web",    "Web-2", "node1",
					 "d.1_x-y", "9lives", "ABC"};
	char longest[CELL_NAME_MAX + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!cell_name_valid(ok[i]))
			fail_msg("'%s' refused", ok[i]);
	memset(longest, 'x', CELL_NAME_MAX);
	longest[CELL_NAME_MAX] = '\0';
	assert_true(cell_name_valid(longest));
}

static void test_name_rule_refuses(void **state)
{
	static const char *const bad[] = {"",	      "-x",   ".x", "_x",
					  "a/b",      "a b",  "..", "a\n",
					  "\xc3\xa9", "a:ro", "a*", "x/../y"};
	char toolong[CELL_NAME_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cell_name_valid(bad[i]))
			fail_msg("'%s' accepted", bad[i]);
	memset(toolong, 'x', CELL_NAME_MAX + 1);
	toolong[CELL_NAME_MAX + 1] = '\0';
	assert_false(cell_name_valid(toolong));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_rule_accepts),
		cmocka_unit_test(test_name_rule_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
