/*
 * Fault injection: kill -9 of the disk server under a VM that writes and
 * flushes its disk, round after round; the server is started again on the
 * same store and address.
 *
 *  - the VM does not notice: the agent reconnects and sends again every
 *    write the old server acknowledged but no flush had covered, so the
 *    VM finishes every round (stopped, not failed);
 *  - afterwards the disk holds exactly the last round's pattern: no write
 *    acknowledged after a flush was lost, and none was torn.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

#define ROUNDS "12"

static struct tsc_cluster T;

#define CTL(out, ...) TSC_CTL(&T, out, __VA_ARGS__)

static int setup(void **state)
{
	static const struct tsc_cluster_opts o = {
		.nodes = 1, .cell = "c", .vdiskd = true};

	return tsc_cluster_setup(state, &T, "cellmon-faultdisk", &o);
}

static bool wait_end(const char *vm)
{
	return tsc_vm_wait_ended(CELLCTL_BIN, T.ctl_addr, vm, 60000);
}

/* The rounds the VM has flushed so far, from its console. */
static int rounds_flushed(const char *vm)
{
	char *out = NULL;
	int n = 0;

	if (CTL(&out, "vm", "console", vm) == 0)
		for (char *p = out; (p = strstr(p, " flushed ")); p++)
			n++;
	free(out);
	return n;
}

/* cellctl status's verdict: healthy or not, and whether a problem line
 * has text. */
static bool status_says(const char *text, bool *healthy)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, T.ctl_addr, TSC_WORDS("status"));
	json_t *p;
	size_t i;
	bool found = false;

	assert_non_null(j);
	*healthy = json_is_true(json_object_get(j, "healthy"));
	json_array_foreach(json_object_get(j, "problems"), i, p)
	{
		printf("# status: %s\n", json_string_value(p));
		if (text && strstr(json_string_value(p), text))
			found = true;
	}
	json_decref(j);
	return found;
}

/* kill -9 of the disk server mid-write: the VM goes on, nothing flushed
 * is lost; cellctl status says the disk server does not answer, and is
 * healthy again once it is back. */
static void test_fault_disk_server_killed_mid_write(void **state)
{
	char *out = NULL;
	int before;
	bool healthy;

	(void)state;
	assert_int_equal(CTL(NULL, "disk", "create", "data", "8M"), 0);
	assert_int_equal(CTL(NULL, "vm", "create", "writer", "--cell=c",
			     "--image=diskio", "--disk=data", "--start", "--",
			     "loop", "0", "100", ROUNDS),
			 0);
	for (int i = 0; i < 400 && rounds_flushed("writer") < 3; i++)
		usleep(10 * 1000);
	before = rounds_flushed("writer");
	assert_true(before >= 3);
	ts_stop(T.vdiskd, SIGKILL, 5000);
	assert_true(status_says("the disk server does not answer", &healthy));
	assert_false(healthy);
	usleep(300 * 1000);
	tsc_cluster_vdiskd(&T); /* the same store and addresses */
	assert_false(status_says(NULL, &healthy));
	assert_true(healthy);
	assert_true(wait_end("writer"));
	printf("# disk server killed after %d flushed rounds; the VM went on\n",
	       before);
	assert_string_equal(tsc_cluster_vm_state(&T, "writer"), "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "writer"), 0);
	assert_non_null(strstr(out, "rounds=" ROUNDS " done"));
	free(out);
	/* The disk holds the last round's pattern (seed 100 + 11). */
	assert_int_equal(CTL(NULL, "vm", "create", "reader", "--cell=c",
			     "--image=diskio", "--disk=data:ro", "--start",
			     "--", "check", "0", "111"),
			 0);
	assert_true(wait_end("reader"));
	assert_int_equal(CTL(&out, "vm", "console", "reader"), 0);
	assert_non_null(strstr(out, "check ok"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_disk_server_killed_mid_write),
	};

	return cmocka_run_group_tests(tests, setup, tsc_cluster_teardown);
}
