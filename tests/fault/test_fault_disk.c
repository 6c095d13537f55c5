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
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ctlclient.h"
#include "testsupport.h"

#define ROUNDS "12"

static struct {
	char *dir;
	char nbd[64], admin[64];
	char agent_addr[64], ctl_addr[64];
	pid_t vdiskd;
} T;

#define CTL(out, ...) \
	tsc_ctl(CELLCTL_BIN, T.ctl_addr, out, TSC_WORDS(__VA_ARGS__))

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static pid_t start_vdiskd(void)
{
	char st[700], li[100], ad[100], log[700];
	char *argv[] = {VDISKD_BIN, st, li, ad, NULL};

	snprintf(st, sizeof(st), "--store=%s/store", T.dir);
	snprintf(li, sizeof(li), "--listen=%s", T.nbd);
	snprintf(ad, sizeof(ad), "--admin-listen=%s", T.admin);
	snprintf(log, sizeof(log), "%s/vdiskd.log", T.dir);
	return ts_spawn(argv, log);
}

static bool vdiskd_up(void)
{
	for (int i = 0; i < 250; i++) {
		if (CTL(NULL, "disk", "list") == 0)
			return true;
		usleep(20 * 1000);
	}
	return false;
}

static int setup(void **state)
{
	char sd[700], vd[120], log[700], mgr[100], asd[700], img[700];
	char *margv[] = {MANAGER_BIN,
			 sd,
			 "--agent-listen=127.0.0.1:0",
			 "--ctl-listen=127.0.0.1:0",
			 vd,
			 NULL};
	char *aargv[] = {AGENT_BIN, "--node-id=node1",		mgr, asd,
			 img,	    "--dsm-listen=127.0.0.1:0", NULL};

	(void)state;
	T.dir = ts_tmpdir("cellmon-faultdisk");
	snprintf(T.nbd, sizeof(T.nbd), "127.0.0.1:%d", free_port());
	snprintf(T.admin, sizeof(T.admin), "127.0.0.1:%d", free_port());
	T.vdiskd = start_vdiskd();
	assert_true(T.vdiskd > 0);
	snprintf(sd, sizeof(sd), "--state-dir=%s/manager", T.dir);
	snprintf(vd, sizeof(vd), "--vdiskd=%s", T.admin);
	snprintf(log, sizeof(log), "%s/manager.log", T.dir);
	assert_true(ts_spawn(margv, log) > 0);
	snprintf(sd, sizeof(sd), "%s/manager", T.dir);
	assert_true(ts_manager_addrs(sd, T.agent_addr, sizeof(T.agent_addr),
				     T.ctl_addr, sizeof(T.ctl_addr), 5000));
	snprintf(mgr, sizeof(mgr), "--manager=%s", T.agent_addr);
	snprintf(asd, sizeof(asd), "--state-dir=%s/agent1", T.dir);
	snprintf(img, sizeof(img), "--image-dir=%s", GUEST_IMAGES);
	snprintf(log, sizeof(log), "%s/agent1.log", T.dir);
	assert_true(ts_spawn(aargv, log) > 0);
	assert_true(vdiskd_up());
	for (int i = 0; i < 100; i++) {
		char *out = NULL;
		bool ok =
			CTL(&out, "-o", "json", "node", "info", "node1") == 0 &&
			strstr(out, "\"dsm_addr\": \"1");

		free(out);
		if (ok)
			break;
		usleep(100 * 1000);
	}
	assert_int_equal(CTL(NULL, "cell", "create", "c"), 0);
	assert_int_equal(CTL(NULL, "cell", "add-node", "c", "node1"), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ts_kill_all();
	tsc_dir_done(T.dir);
	return 0;
}

static const char *vm_state(const char *vm)
{
	static char s[32];

	return tsc_ctl_field(CELLCTL_BIN, T.ctl_addr, "state",
			     TSC_WORDS("vm", "info", vm), s, sizeof(s));
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

/* kill -9 of the disk server mid-write: the VM goes on, nothing flushed
 * is lost. */
static void test_fault_disk_server_killed_mid_write(void **state)
{
	char *out = NULL;
	int before;

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
	usleep(300 * 1000);
	T.vdiskd = start_vdiskd();
	assert_true(T.vdiskd > 0);
	assert_true(wait_end("writer"));
	printf("# disk server killed after %d flushed rounds; the VM went on\n",
	       before);
	assert_string_equal(vm_state("writer"), "stopped");
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

	return cmocka_run_group_tests(tests, setup, teardown);
}
