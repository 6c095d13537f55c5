/*
 * Integration: VM disks through the agents' node-wide buffer cache, on a
 * real cellmon-vdiskd, manager and two agents (loopback, ephemeral
 * ports), driven through cellctl.
 *
 *  - 4 VMs on one node, each with its own copy-on-write disk over one
 *    base image, read the whole disk: the disk server serves each base
 *    block once (bytes counted by the server), every VM sees the base's
 *    bytes, and the node's cache counts 1 miss and 3 hits per block; a VM
 *    on the second node reads through its own cache (one more copy);
 *  - a VM writes its disk and another VM reads the writes back;
 *  - NFS-style sharing: a writer VM writes a persistent disk and exits; a
 *    reader on the other node that starts afterwards sees the new data,
 *    and again after a second write (close-to-open); a second writer is
 *    refused while one runs, a reader is not; a disk in use by a running
 *    VM cannot be deleted; a VM with a missing disk fails with the reason.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "cell/util.h"
#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

#define BASE_BYTES (4u << 20)

static struct tsc_cluster C;

/* The base image every disk of the tests is made over. */
static struct {
	char base_id[80];
	uint64_t base_fnv;
} T;

#define CTL(out, ...) TSC_CTL(&C, out, __VA_ARGS__)

static json_t *ctl_json(const char *a, const char *b, const char *c)
{
	return tsc_ctl_json(CELLCTL_BIN, C.ctl_addr, TSC_WORDS(a, b, c));
}

static uint64_t bytes_served(void)
{
	json_t *j = ctl_json("disk", "list", NULL);
	uint64_t v;

	assert_non_null(j);
	v = (uint64_t)json_integer_value(json_object_get(j, "bytes_read"));
	json_decref(j);
	return v;
}

static uint64_t cache_stat(const char *node, const char *key)
{
	json_t *j = ctl_json("node", "info", node);
	uint64_t v;

	assert_non_null(j);
	v = (uint64_t)json_integer_value(
		json_object_get(json_object_get(j, "cache"), key));
	json_decref(j);
	return v;
}

static bool wait_ended(const char *vm)
{
	return tsc_vm_wait_ended(CELLCTL_BIN, C.ctl_addr, vm, 30000);
}

/* The console of vm (all vCPUs) into a malloc'd string. */
static char *console(const char *vm)
{
	char *out = NULL;

	assert_int_equal(CTL(&out, "vm", "console", vm), 0);
	return out;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void make_base(struct tsc_cluster *c)
{
	char img[800], st[800], *out = NULL;
	char *argv[] = {VDISKD_BIN, st, "base", "import", img, NULL};
	uint8_t *b = malloc(BASE_BYTES);
	int fd;

	for (size_t i = 0; i < BASE_BYTES; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 13);
	T.base_fnv = fnv(b, BASE_BYTES);
	snprintf(img, sizeof(img), "%s/base.img", c->dir);
	fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, b, BASE_BYTES), BASE_BYTES);
	close(fd);
	free(b);
	snprintf(st, sizeof(st), "--store=%s", c->store);
	assert_int_equal(ts_run(argv, 30000, &out, false), 0);
	snprintf(T.base_id, sizeof(T.base_id), "base:%.64s", out);
	free(out);
}

static int setup(void **state)
{
	static const struct tsc_cluster_opts o = {
		.nodes = 2,
		.cell = "c",
		.vdiskd = true,
		.agent_args = {"--cpus=8", "--cache-size=16M"},
		.before = make_base,
	};

	return tsc_cluster_setup(state, &C, "cellmon-vmdisk", &o);
}

static void run_diskio(const char *vm, const char *node, const char *disk,
		       const char *op, const char *seed)
{
	char n[64], d[64];

	snprintf(n, sizeof(n), "--node=%s", node);
	snprintf(d, sizeof(d), "--disk=%s", disk);
	assert_int_equal(CTL(NULL, "vm", "create", vm, "--cell=c",
			     "--image=diskio", "--memory=8M", n, d, "--start",
			     "--", op, "0", seed),
			 0);
}

static void assert_read_base(const char *vm)
{
	char want[80], *out;

	assert_true(wait_ended(vm));
	assert_string_equal(tsc_cluster_vm_state(&C, vm), "stopped");
	snprintf(want, sizeof(want), "bytes=%u checksum=%016llx", BASE_BYTES,
		 (unsigned long long)T.base_fnv);
	out = console(vm);
	assert_non_null(strstr(out, want));
	free(out);
}

/* 4 VMs on node1 read one base: each block leaves the server once. */
static void test_vm_disk_cache_reads_base_once_per_node(void **state)
{
	char vm[16], disk[16];
	uint64_t before, after;

	(void)state;
	for (int i = 1; i <= 4; i++) {
		snprintf(disk, sizeof(disk), "r%d", i);
		assert_int_equal(
			CTL(NULL, "disk", "create", disk, "0", T.base_id), 0);
	}
	before = bytes_served();
	for (int i = 1; i <= 4; i++) {
		snprintf(vm, sizeof(vm), "reader%d", i);
		snprintf(disk, sizeof(disk), "r%d", i);
		run_diskio(vm, "node1", disk, "read", "0");
	}
	for (int i = 1; i <= 4; i++) {
		snprintf(vm, sizeof(vm), "reader%d", i);
		assert_read_base(vm);
	}
	after = bytes_served();
	printf("# 4 VMs on one node read a %u-byte base; the server sent "
	       "%llu bytes\n",
	       BASE_BYTES, (unsigned long long)(after - before));
	assert_int_equal(after - before, BASE_BYTES);
	/* The heartbeats carry the counters. */
	for (int i = 0; i < 50 && cache_stat("node1", "misses") +
						  cache_stat("node1", "hits") <
					  4 * BASE_BYTES / 4096;
	     i++)
		usleep(100 * 1000);
	assert_int_equal(cache_stat("node1", "misses"), BASE_BYTES / 4096);
	assert_int_equal(cache_stat("node1", "hits"), 3 * BASE_BYTES / 4096);
	/* Node 2 reads through its own cache: one more copy, then none. */
	run_diskio("reader5", "node2", "r1:ro", "read", "0");
	assert_read_base("reader5");
	run_diskio("reader6", "node2", "r2:ro", "read", "0");
	assert_read_base("reader6");
	assert_int_equal(bytes_served() - after, BASE_BYTES);
}

/* Writes land on the disk (not the shared base) and read back. */
static void test_vm_disk_write_then_read_back(void **state)
{
	char *out;
	json_t *j, *v;
	size_t i;

	(void)state;
	assert_int_equal(CTL(NULL, "disk", "create", "w1", "0", T.base_id), 0);
	run_diskio("writer", "node1", "w1", "write", "7");
	assert_true(wait_ended("writer"));
	assert_string_equal(tsc_cluster_vm_state(&C, "writer"), "stopped");
	/* The disk server is in its dependency set. */
	j = ctl_json("vm", "info", "writer");
	assert_string_equal(
		json_string_value(json_object_get(j, "disk_server")), C.admin);
	json_decref(j);
	j = ctl_json("cell", "deps", "c");
	json_array_foreach(json_object_get(j, "vms"), i, v) assert_string_equal(
		json_string_value(json_object_get(v, "disk_server")), C.admin);
	assert_true(i > 0);
	json_decref(j);
	run_diskio("checker", "node1", "w1:ro", "check", "7");
	assert_true(wait_ended("checker"));
	out = console("checker");
	assert_non_null(strstr(out, "check ok"));
	free(out);
	/* Another disk over the same base still reads the base. */
	assert_int_equal(CTL(NULL, "disk", "create", "w2", "0", T.base_id), 0);
	run_diskio("other", "node1", "w2", "read", "0");
	assert_read_base("other");
}

/* One writer, readers elsewhere: a reader that opens after the writer
 * flushed and exited sees the new data, each time. */
static void test_vm_disk_close_to_open_sharing(void **state)
{
	char *out = NULL;

	(void)state;
	assert_int_equal(CTL(NULL, "disk", "create", "shared", "1M"), 0);
	for (int round = 1; round <= 2; round++) {
		char w[16], r[16], seed[8];

		snprintf(w, sizeof(w), "sw%d", round);
		snprintf(r, sizeof(r), "sr%d", round);
		snprintf(seed, sizeof(seed), "%d", round * 11);
		run_diskio(w, "node1", "shared", "write", seed);
		assert_true(wait_ended(w));
		assert_string_equal(tsc_cluster_vm_state(&C, w), "stopped");
		run_diskio(r, "node2", "shared:ro", "check", seed);
		assert_true(wait_ended(r));
		out = console(r);
		assert_non_null(strstr(out, "check ok"));
		free(out);
	}
	/* While a writer runs: a second writer is refused, a reader is not,
	 * and the disk cannot be deleted. */
	assert_int_equal(CTL(NULL, "vm", "create", "holder", "--cell=c",
			     "--image=testguest", "--disk=shared", "--start",
			     "--", "sleep", "300"),
			 0);
	assert_int_equal(CTL(&out, "vm", "create", "second", "--cell=c",
			     "--image=testguest", "--disk=shared", "--start",
			     "--", "sleep", "1"),
			 5);
	assert_non_null(strstr(out, "written by vm holder"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "create", "looker", "--cell=c",
			     "--image=testguest", "--disk=shared:ro", "--start",
			     "--", "exit", "0"),
			 0);
	assert_int_equal(CTL(&out, "disk", "delete", "shared"), 5);
	assert_non_null(strstr(out, "in use by vm holder"));
	free(out);
	assert_int_equal(CTL(NULL, "vm", "kill", "holder"), 0);
	assert_true(wait_ended("looker"));
}

/* A disk that does not exist fails the start with the reason. */
static void test_vm_disk_missing_fails_start(void **state)
{
	char *out = NULL;

	(void)state;
	assert_int_equal(CTL(&out, "vm", "create", "lost", "--cell=c",
			     "--image=diskio", "--disk=nosuch", "--start", "--",
			     "read", "0"),
			 4);
	assert_non_null(strstr(out, "nosuch"));
	free(out);
	assert_string_equal(tsc_cluster_vm_state(&C, "lost"), "failed");
	assert_int_equal(CTL(&out, "vm", "create", "bad", "--cell=c",
			     "--image=diskio", "--disk=../x"),
			 1);
	assert_non_null(strstr(out, "bad disk"));
	free(out);
}

/* VMs, cells, disks and images follow one name rule (cell/util.h), with
 * one message; mixed case is a name like any other (issue 17). */
static void test_vm_disk_one_name_rule(void **state)
{
	static const char *const bad[][7] = {
		{"cell", "create", "a/b"},
		{"disk", "create", "a/b", "1M"},
		{"vm", "create", "a/b", "--cell=c", "--image=diskio"},
		{"vm", "create", "ok", "--cell=c", "--image=../diskio"},
		{"vm", "create", "ok", "--cell=c", "--image=diskio",
		 "--disk=_x"},
	};
	char *out = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *const *a = bad[i];

		assert_int_not_equal(TSC_CTL(&C, &out, a[0], a[1], a[2], a[3],
					     a[4], a[5], a[6]),
				     0);
		if (!strstr(out, CELL_NAME_RULE))
			fail_msg("%s %s %s: no name rule in '%s'", a[0], a[1],
				 a[2], out);
		free(out);
		out = NULL;
	}
	assert_int_equal(CTL(NULL, "cell", "create", "Web-2"), 0);
	assert_int_equal(CTL(NULL, "disk", "create", "Data.1", "1M"), 0);
	assert_int_equal(CTL(NULL, "vm", "create", "Mixed_Case", "--cell=c",
			     "--image=diskio", "--disk=Data.1"),
			 0);
	assert_int_equal(CTL(NULL, "vm", "delete", "Mixed_Case"), 0);
	assert_int_equal(CTL(NULL, "disk", "delete", "Data.1"), 0);
	assert_int_equal(CTL(NULL, "cell", "delete", "Web-2"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_disk_cache_reads_base_once_per_node),
		cmocka_unit_test(test_vm_disk_write_then_read_back),
		cmocka_unit_test(test_vm_disk_close_to_open_sharing),
		cmocka_unit_test(test_vm_disk_missing_fails_start),
		cmocka_unit_test(test_vm_disk_one_name_rule),
	};

	return cmocka_run_group_tests(tests, setup, tsc_cluster_teardown);
}
