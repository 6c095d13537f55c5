/*
 * The qemu engine end to end (issue 18): Linux VMs under QEMU's TCG (no
 * /dev/kvm needed) whose RAM is the VM's DSM region, on a two-node cell.
 *
 * - every page homed on the other node: the guest's memory tester prints
 *   the checksum the same program computes on the host, and the faults
 *   are remote in vm stats;
 * - vm stop is an ACPI power-down the guest obeys (stopped, status 0);
 * - kill -9 of QEMU fails the VM with the signal in its reason;
 * - kill -9 of the agent leaves no QEMU running;
 * - bad input: an image that is not there or has no initrd (refused
 *   before it is recorded), a kernel QEMU cannot load (failed, QEMU's own
 *   words in the reason), an agent without QEMU (the start fails naming
 *   it), an unknown accelerator (the agent does not start);
 * - --kernel/--initrd boot files named by path, and their bad input.
 *
 * Skips, saying why, when the linux image was not built (deploy/
 * install-deps fetches its packages) or QEMU is not installed.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

static struct tsc_cluster cl;
static char images[700], image_arg[800], why_skip[300];

#define CTL(out, ...) TSC_CTL(&cl, out, __VA_ARGS__)

static json_t *vm_json(const char *name)
{
	return tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			    TSC_WORDS("vm", "info", name));
}

static const char *want_vm, *want_text;

static bool vm_ended(void *arg)
{
	json_t *j = vm_json(want_vm);
	const char *s = j ? json_string_value(json_object_get(j, "state")) : "";
	bool ok = s && (strcmp(s, "stopped") == 0 || strcmp(s, "failed") == 0);

	(void)arg;
	json_decref(j);
	return ok;
}

/* Waits until the VM stopped or failed; returns its state (static). */
static const char *wait_end(const char *vm, unsigned ms)
{
	static char state[32];
	json_t *j;

	want_vm = vm;
	ts_wait_for(vm_ended, NULL, ms);
	j = vm_json(vm);
	snprintf(state, sizeof(state), "%s",
		 j ? json_string_value(json_object_get(j, "state")) : "none");
	json_decref(j);
	return state;
}

static bool console_has(void *arg)
{
	char *out = NULL;
	bool ok;

	(void)arg;
	ok = CTL(&out, "vm", "console", want_vm) == 0 &&
	     strstr(out, want_text) != NULL;
	free(out);
	return ok;
}

static bool wait_console(const char *vm, const char *text, unsigned ms)
{
	want_vm = vm;
	want_text = text;
	return ts_wait_for(console_has, NULL, ms);
}

static const char *reason_of(const char *vm)
{
	static char reason[600];
	json_t *j = vm_json(vm);

	snprintf(reason, sizeof(reason), "%s",
		 j ? json_string_value(json_object_get(j, "reason")) : "");
	json_decref(j);
	return reason;
}

static pid_t pid_of(const char *vm)
{
	json_t *j = vm_json(vm);
	pid_t pid = (pid_t)json_integer_value(json_object_get(
		json_array_get(json_object_get(j, "vcpus"), 0), "pid"));

	json_decref(j);
	return pid;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The agents' image_dir: the built linux image, and two bad ones. */
static void make_images(void)
{
	char path[900];

	snprintf(path, sizeof(path), "%s/linux", images);
	assert_int_equal(symlink(GUEST_IMAGES "/linux", path), 0);
	snprintf(path, sizeof(path), "%s/bogus", images);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/bogus/vmlinuz", images);
	write_file(path, "not a kernel\n");
	snprintf(path, sizeof(path), "%s/bogus/initrd.img", images);
	write_file(path, "not an initrd\n");
	snprintf(path, sizeof(path), "%s/noinitrd", images);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/noinitrd/vmlinuz", images);
	write_file(path, "a kernel without its initrd\n");
}

#define BASE_BYTES (1u << 20)
static char base_id[80], base_md5[40];

/* A 1 MiB base image in the disk server's store, before it starts; its
 * md5 as the host computes it. */
static void make_base(struct tsc_cluster *c)
{
	char img[800], st[800], cmd[900], *out = NULL;
	char *argv[] = {VDISKD_BIN, st, "base", "import", img, NULL};
	uint8_t *b = malloc(BASE_BYTES);
	FILE *f;

	for (size_t i = 0; i < BASE_BYTES; i++)
		b[i] = (uint8_t)(i * 2654435761u >> 13);
	snprintf(img, sizeof(img), "%s/base.img", c->dir);
	f = fopen(img, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, BASE_BYTES, f), BASE_BYTES);
	fclose(f);
	free(b);
	snprintf(st, sizeof(st), "--store=%s", c->store);
	assert_int_equal(ts_run(argv, 30000, &out, false), 0);
	snprintf(base_id, sizeof(base_id), "base:%.64s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "md5sum %s", img);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%32s", base_md5), 1);
	pclose(f);
}

static int setup(void **state)
{
	static struct tsc_cluster_opts o = {
		.nodes = 2, .cell = "c", .vdiskd = true, .before = make_base};
	char *dir;

	(void)state;
	if (access(GUEST_IMAGES "/linux/vmlinuz", R_OK) ||
	    access(GUEST_IMAGES "/linux/initrd.img", R_OK)) {
		snprintf(why_skip, sizeof(why_skip),
			 "the linux guest image was not built (%s/linux): "
			 "deploy/install-deps fetches its packages",
			 GUEST_IMAGES);
		return 0;
	}
	if (system("command -v qemu-system-x86_64 >/dev/null") != 0) {
		snprintf(why_skip, sizeof(why_skip),
			 "qemu-system-x86_64 is not installed (Debian's "
			 "qemu-system-x86; deploy/install-deps installs it)");
		return 0;
	}
	dir = ts_tmpdir("cellmon-qemu-img");
	snprintf(images, sizeof(images), "%s", dir);
	free(dir);
	make_images();
	snprintf(image_arg, sizeof(image_arg), "--image-dir=%s", images);
	o.agent_args[0] = image_arg;
	o.agent_args[1] = "--cpus=8"; /* four VMs on one node at once */
	tsc_cluster_start(&cl, "cellmon-qemu", &o);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (why_skip[0])
		return 0;
	tsc_cluster_stop(&cl);
	ts_rmtree(images);
	return 0;
}

#define NEED_QEMU()                                       \
	do {                                              \
		if (why_skip[0]) {                        \
			printf("# SKIP: %s\n", why_skip); \
			skip();                           \
		}                                         \
	} while (0)

/* What memtest prints on the host for the same size and seed. */
static char *host_checksum(const char *mib)
{
	char *argv[] = {MEMTEST_BIN, (char *)mib, NULL}, *out = NULL, *nl;

	assert_int_equal(ts_run(argv, 30000, &out, false), 0);
	nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
	return out;
}

/* All of a Linux VM's pages homed on the other node (and kept there:
 * page policy off): it boots, and its memory tester gets the host's
 * checksum through remote faults. */
static void test_qemu_remote_pages_checksum(void **state)
{
	char *want, *out = NULL;
	json_t *j, *nodes, *n;
	size_t i;
	uint64_t t0 = ts_now_ms();
	long long remote = -1, local = -1, homed1 = -1, homed2 = -1;

	(void)state;
	NEED_QEMU();
	want = host_checksum("32");
	assert_int_equal(CTL(&out, "vm", "create", "far", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--node=node1", "--home-node=node2",
			     "--page-policy=off", "--start", "--",
			     "cellmon.job=memtest:32"),
			 0);
	free(out);
	assert_string_equal(wait_end("far", 180000), "stopped");
	j = vm_json("far");
	/* the accelerator QEMU got on node1 is shown */
	if (!json_string_value(json_object_get(j, "accel")) ||
	    !json_string_value(json_object_get(j, "accel"))[0])
		fail_msg("vm info shows no accelerator");
	printf("# accel: %s\n", json_string_value(json_object_get(j, "accel")));
	json_decref(j);
	printf("# boot + memtest 32 MiB with every page on node2: %llu ms\n",
	       (unsigned long long)(ts_now_ms() - t0));
	assert_int_equal(CTL(&out, "vm", "console", "far"), 0);
	if (!strstr(out, want))
		fail_msg("the guest did not print the host's '%s':\n%s", want,
			 out);
	free(out);
	j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			 TSC_WORDS("vm", "stats", "far"));
	nodes = json_object_get(j, "nodes");
	json_array_foreach(nodes, i, n)
	{
		const char *id = json_string_value(json_object_get(n, "node"));
		long long h =
			json_integer_value(json_object_get(n, "pages_homed"));

		if (strcmp(id, "node1") == 0) {
			remote = json_integer_value(
				json_object_get(n, "remote_faults"));
			local = json_integer_value(
				json_object_get(n, "local_faults"));
			homed1 = h;
		} else if (strcmp(id, "node2") == 0) {
			homed2 = h;
		}
	}
	json_decref(j);
	printf("# remote faults on node1: %lld, local %lld\n", remote, local);
	/* the 32 MiB tested, 8192 pages, in runs of at most dsm_prefetch
	 * (64) per fault (zero fault-around), and not one page local */
	assert_true(remote >= 8192 / 64);
	assert_int_equal(local, 0);
	assert_int_equal(homed1, 0);
	assert_int_equal(homed2, 256 * 256); /* 256 MiB of 4 KiB pages */
	free(want);
	assert_int_equal(CTL(NULL, "vm", "delete", "far"), 0);
}

/* vm stop presses the ACPI power button; the guest powers off. */
static void test_qemu_stop_is_acpi_powerdown(void **state)
{
	json_t *j, *c;

	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(NULL, "vm", "create", "sh", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--start", "--", "cellmon.job=shell"),
			 0);
	assert_true(wait_console("sh", "cellmon-guest: shell", 180000));
	assert_int_equal(CTL(NULL, "vm", "stop", "sh"), 0);
	j = vm_json("sh");
	c = json_array_get(json_object_get(j, "vcpus"), 0);
	assert_string_equal(json_string_value(json_object_get(j, "state")),
			    "stopped");
	/* powered off by the guest, not killed after the grace */
	assert_string_equal(json_string_value(json_object_get(c, "state")),
			    "exited");
	assert_int_equal(json_integer_value(json_object_get(c, "exit_code")),
			 0);
	json_decref(j);
	assert_int_equal(CTL(NULL, "vm", "delete", "sh"), 0);
}

/* Whether QEMU pid's command line has the word w. */
static bool qemu_has_arg(pid_t pid, const char *w)
{
	char path[64], buf[16384];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		if (!strcmp(buf + i, w))
			return true;
	return false;
}

/* kill -9 of QEMU: the VM fails and says so. (It ran under QEMU's
 * seccomp sandbox, with no network device.) */
static void test_qemu_killed_fails_vm(void **state)
{
	pid_t pid;

	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(NULL, "vm", "create", "k9", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--start", "--", "cellmon.job=shell"),
			 0);
	pid = pid_of("k9");
	assert_true(pid > 0);
	assert_true(qemu_has_arg(pid, "-sandbox"));
	assert_true(qemu_has_arg(pid, "on,obsolete=deny,elevateprivileges=deny,"
				      "spawn=deny,resourcecontrol=deny"));
	assert_true(qemu_has_arg(pid, "-nodefaults"));
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_string_equal(wait_end("k9", 10000), "failed");
	if (!strstr(reason_of("k9"), "killed by signal 9"))
		fail_msg("reason: %s", reason_of("k9"));
	assert_int_equal(CTL(NULL, "vm", "delete", "k9"), 0);
}

static pid_t gone_pid;

static bool pid_gone(void *arg)
{
	(void)arg;
	return kill(gone_pid, 0) && errno == ESRCH;
}

/* kill -9 of the agent: its QEMU goes too (parent-death signal, and the
 * preload library sees the hand-off close). */
static void test_qemu_agent_killed_leaves_no_qemu(void **state)
{
	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(NULL, "vm", "create", "orphan", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--node=node2", "--max-restarts=0", "--start",
			     "--", "cellmon.job=shell"),
			 0);
	gone_pid = pid_of("orphan");
	assert_true(gone_pid > 0);
	ts_stop(cl.agents[1], SIGKILL, 5000);
	assert_true(ts_wait_for(pid_gone, NULL, 5000));
	assert_true(tsc_cluster_agent(&cl, 1, NULL) > 0);
	assert_true(tsc_cluster_wait_dsm(&cl, 2, 15000));
	assert_string_equal(wait_end("orphan", 15000), "failed");
	assert_int_equal(CTL(NULL, "vm", "delete", "orphan"), 0);
}

/* A guest writes a pattern to its virtio disk and syncs: once the VM is
 * stopped the disk server has it (qemu-io over NBD reads it back), and a
 * second VM given the disk read-only sees it. */
static void test_qemu_disk_write_then_read_back(void **state)
{
	char uri[300], creds[900], *out = NULL;
	char *qio[] = {"qemu-io", "--object",	       creds, "--image-opts",
		       "-c",	  "read -P 0x5a 0 1M", uri,   NULL};

	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(NULL, "disk", "create", "d1", "4M"), 0);
	assert_int_equal(CTL(NULL, "vm", "create", "dw", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--disk=d1", "--start", "--",
			     "cellmon.job=disk-write:5a"),
			 0);
	assert_string_equal(wait_end("dw", 180000), "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "dw"), 0);
	if (!strstr(out,
		    "wrote 0x5a over 1 MiB of /dev/vda, synced (status 0)"))
		fail_msg("console:\n%s", out);
	free(out);
	/* the disk server takes NBD over TLS only: the test's admin
	 * certificate, as the cell's CA issued it */
	snprintf(creds, sizeof(creds),
		 "tls-creds-x509,id=t0,endpoint=client,dir=%s/ca/x509", cl.dir);
	snprintf(uri, sizeof(uri),
		 "driver=nbd,server.type=inet,server.host=%.*s,server.port=%s,"
		 "export=d1,tls-creds=t0",
		 (int)(strrchr(cl.nbd, ':') - cl.nbd), cl.nbd,
		 strrchr(cl.nbd, ':') + 1);
	if (ts_run(qio, 30000, &out, true) != 0 ||
	    strstr(out, "verification failed"))
		fail_msg("qemu-io on %s: %s", uri, out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "create", "dr", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--disk=d1:ro", "--start", "--",
			     "cellmon.job=disk-read"),
			 0);
	assert_string_equal(wait_end("dr", 180000), "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "dr"), 0);
	if (!strstr(out, "/dev/vda starts with 5a5a5a5a"))
		fail_msg("console:\n%s", out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "dw"), 0);
	assert_int_equal(CTL(NULL, "vm", "delete", "dr"), 0);
	assert_int_equal(CTL(NULL, "disk", "delete", "d1"), 0);
}

/* Whether vm's dependency set names node. */
static bool depends_on(const char *vm, const char *node)
{
	json_t *j = vm_json(vm), *d;
	size_t i;
	bool found = false;

	json_array_foreach(json_object_get(j, "deps"), i, d) found |=
		strcmp(json_string_value(d), node) == 0;
	json_decref(j);
	return found;
}

static bool second_run_up(void *arg)
{
	json_t *j = vm_json("ha");
	bool ok = j && json_integer_value(json_object_get(j, "runs")) == 2 &&
		  strcmp(json_string_value(json_object_get(j, "state")),
			 "running") == 0;

	(void)arg;
	json_decref(j);
	return ok;
}

/* Fault containment: a qemu VM whose pages are interleaved over both
 * nodes loses node2 (its agent killed): the run ends and the VM restarts
 * on node1 with every page there, from its disk. */
static void test_qemu_restarted_when_a_page_node_dies(void **state)
{
	char *out = NULL;

	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(NULL, "disk", "create", "hd", "4M"), 0);
	assert_int_equal(CTL(NULL, "vm", "create", "ha", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--node=node1", "--disk=hd", "--start", "--",
			     "cellmon.job=shell"),
			 0);
	if (!depends_on("ha", "node2"))
		fail_msg("node2 homes pages but is not a dependency");
	assert_true(wait_console("ha", "cellmon-guest: shell", 180000));
	ts_stop(cl.agents[1], SIGKILL, 5000);
	assert_true(ts_wait_for(second_run_up, NULL, 30000));
	assert_true(wait_console("ha", "cellmon-guest: shell", 180000));
	if (depends_on("ha", "node2"))
		fail_msg("the restarted run still depends on node2");
	assert_int_equal(CTL(&out, "vm", "stats", "ha"), 0);
	printf("# after the restart:\n%s", out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "kill", "ha"), 0);
	assert_int_equal(CTL(NULL, "vm", "delete", "ha"), 0);
	assert_int_equal(CTL(NULL, "disk", "delete", "hd"), 0);
	assert_true(tsc_cluster_agent(&cl, 1, NULL) > 0);
	assert_true(tsc_cluster_wait_dsm(&cl, 2, 15000));
}

static uint64_t bytes_served(void)
{
	json_t *j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
				 TSC_WORDS("disk", "list"));
	uint64_t v =
		(uint64_t)json_integer_value(json_object_get(j, "bytes_read"));

	json_decref(j);
	return v;
}

/* Disco's shared buffer cache: four Linux VMs on node1, each reading all
 * of its own clone of one base, get the base's bytes from the disk
 * server once. */
static void test_qemu_clones_read_base_once(void **state)
{
	char vm[16], disk[16], disk_arg[32], want[80], *out = NULL;
	uint64_t before, after;

	(void)state;
	NEED_QEMU();
	for (int i = 1; i <= 4; i++) {
		snprintf(disk, sizeof(disk), "c%d", i);
		assert_int_equal(
			CTL(NULL, "disk", "create", disk, "0", base_id), 0);
	}
	before = bytes_served();
	for (int i = 1; i <= 4; i++) {
		snprintf(vm, sizeof(vm), "clone%d", i);
		snprintf(disk_arg, sizeof(disk_arg), "--disk=c%d", i);
		assert_int_equal(CTL(NULL, "vm", "create", vm, "--cell=c",
				     "--engine=qemu", "--image=linux",
				     "--memory=256M", "--node=node1",
				     "--home-node=node1", disk_arg, "--start",
				     "--", "cellmon.job=disk-sum"),
				 0);
	}
	snprintf(want, sizeof(want), "/dev/vda md5 %s", base_md5);
	for (int i = 1; i <= 4; i++) {
		snprintf(vm, sizeof(vm), "clone%d", i);
		assert_string_equal(wait_end(vm, 300000), "stopped");
		assert_int_equal(CTL(&out, "vm", "console", vm), 0);
		if (!strstr(out, want))
			fail_msg("%s did not print '%s':\n%s", vm, want, out);
		free(out);
	}
	after = bytes_served();
	printf("# 4 VMs on node1 read all of a %u-byte base; the server "
	       "sent %llu bytes\n",
	       BASE_BYTES, (unsigned long long)(after - before));
	assert_int_equal(after - before, BASE_BYTES);
	for (int i = 1; i <= 4; i++) {
		snprintf(vm, sizeof(vm), "clone%d", i);
		snprintf(disk, sizeof(disk), "c%d", i);
		assert_int_equal(CTL(NULL, "vm", "delete", vm), 0);
		assert_int_equal(CTL(NULL, "disk", "delete", disk), 0);
	}
}

/* vm migrate in the middle of a memory test: the vCPUs move to node2
 * without their memory (pages follow through the DSM), the guest is
 * paused a few ms and the test ends on node2 with the host's checksum. */
static void test_qemu_migrate_mid_memtest(void **state)
{
	char *want, *out = NULL;
	json_t *j;

	(void)state;
	NEED_QEMU();
	want = host_checksum("96");
	assert_int_equal(CTL(NULL, "vm", "create", "mv", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--node=node1", "--start", "--",
			     "cellmon.job=memtest:96"),
			 0);
	assert_true(wait_console("mv", "cellmon-guest: up", 180000));
	/* bad targets first: not a node, the node it is on */
	assert_int_equal(CTL(&out, "vm", "migrate", "mv", "--to=ghost"), 4);
	free(out);
	assert_int_equal(CTL(&out, "vm", "migrate", "mv", "--to=node1"), 1);
	assert_non_null(strstr(out, "runs on node1 already"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "migrate", "mv", "--to=node2"), 0);
	printf("# %s",
	       strstr(out, "migrated:") ? strstr(out, "migrated:") : out);
	free(out);
	j = vm_json("mv");
	assert_string_equal(
		json_string_value(json_object_get(
			json_array_get(json_object_get(j, "vcpus"), 0),
			"node")),
		"node2");
	json_decref(j);
	assert_string_equal(wait_end("mv", 300000), "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "mv"), 0);
	if (!strstr(out, want))
		fail_msg("no '%s' after the move:\n%s", want, out);
	free(out);
	assert_int_equal(CTL(&out, "vm", "stats", "mv"), 0);
	printf("# faults, with the move:\n%s", out);
	free(out);
	free(want);
	assert_int_equal(CTL(NULL, "vm", "delete", "mv"), 0);
}

/* Images that are not there, not whole, or not a kernel. */
static void test_qemu_bad_images(void **state)
{
	char *out = NULL;

	(void)state;
	NEED_QEMU();
	assert_int_equal(CTL(&out, "vm", "create", "x1", "--cell=c",
			     "--engine=qemu", "--image=nosuch",
			     "--memory=256M"),
			 4);
	assert_non_null(strstr(out, "no image 'nosuch'"));
	free(out);
	/* a directory without initrd.img is no image: not listed */
	assert_int_equal(CTL(&out, "vm", "create", "x2", "--cell=c",
			     "--engine=qemu", "--image=noinitrd",
			     "--memory=256M", "--start"),
			 4);
	if (!strstr(out, "no image 'noinitrd'"))
		fail_msg("cellctl said: %s", out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "create", "x3", "--cell=c",
			     "--engine=qemu", "--image=bogus", "--memory=256M",
			     "--start"),
			 0);
	assert_string_equal(wait_end("x3", 30000), "failed");
	if (!strstr(reason_of("x3"), "QEMU: "))
		fail_msg("no word of QEMU's in the reason: %s",
			 reason_of("x3"));
	printf("# reason: %s\n", reason_of("x3"));
	assert_int_equal(CTL(NULL, "vm", "delete", "x3"), 0);
}

/* --kernel and --initrd instead of an image: the files of the built
 * image, named by path, boot the memory tester to the host's checksum.
 * A relative path, a kernel for a native VM and --initrd alone are
 * refused before anything is recorded; a kernel that is not on the node
 * fails the start with the path in the reason. */
static void test_qemu_own_kernel_and_initrd(void **state)
{
	char *want, *out = NULL;

	(void)state;
	NEED_QEMU();
	want = host_checksum("8");
	assert_int_equal(
		CTL(&out, "vm", "create", "own", "--cell=c", "--engine=qemu",
		    "--kernel=" GUEST_IMAGES "/linux/vmlinuz",
		    "--initrd=" GUEST_IMAGES "/linux/initrd.img",
		    "--memory=256M", "--start", "--", "cellmon.job=memtest:8"),
		0);
	free(out);
	assert_string_equal(wait_end("own", 180000), "stopped");
	assert_int_equal(CTL(&out, "vm", "console", "own"), 0);
	if (!strstr(out, want))
		fail_msg("the guest did not print the host's '%s':\n%s", want,
			 out);
	free(out);
	assert_int_equal(CTL(&out, "vm", "info", "own"), 0);
	assert_non_null(strstr(out, "kernel:    " GUEST_IMAGES "/linux/"));
	free(out);
	free(want);
	assert_int_equal(CTL(NULL, "vm", "delete", "own"), 0);

	assert_int_equal(CTL(&out, "vm", "create", "rel", "--cell=c",
			     "--engine=qemu", "--kernel=boot/vmlinuz"),
			 1); /* the manager refuses */
	assert_non_null(strstr(out, "bad kernel path 'boot/vmlinuz'"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "create", "nat", "--cell=c",
			     "--image=linux", "--kernel=/boot/vmlinuz"),
			 1);
	assert_non_null(strstr(out, "go with engine qemu"));
	free(out);
	assert_int_equal(CTL(&out, "vm", "info", "rel"), 4);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "create", "gone", "--cell=c",
			     "--engine=qemu", "--kernel=/nonexistent/vmlinuz",
			     "--memory=256M"),
			 0);
	assert_int_not_equal(CTL(&out, "vm", "start", "gone"), 0);
	if (!strstr(out, "no kernel /nonexistent/vmlinuz"))
		fail_msg("cellctl said: %s", out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "gone"), 0);
}

/* An agent whose QEMU is not there refuses the VM naming it; an unknown
 * accelerator stops the agent at start-up. */
static void test_qemu_agent_config_errors(void **state)
{
	char *bad_accel[] = {AGENT_BIN, "--qemu-accel=warp", "--state-dir=/x",
			     NULL};
	char *out = NULL;
	char arg[] = "--qemu-binary=/nonexistent/qemu-system-x86_64";

	(void)state;
	NEED_QEMU();
	assert_int_equal(ts_run(bad_accel, 5000, &out, true), 2);
	if (!strstr(out, "warp") || !strstr(out, "tcg"))
		fail_msg("agent said: %s", out);
	free(out);
	/* node2 again, without QEMU */
	cl.o.agent_args[2] = arg;
	tsc_cluster_agent_restart(&cl, 1, NULL);
	cl.o.agent_args[2] = NULL;
	assert_int_equal(CTL(&out, "vm", "create", "noq", "--cell=c",
			     "--engine=qemu", "--image=linux", "--memory=256M",
			     "--node=node2", "--start"),
			 1);
	if (!strstr(out, "not found on node2"))
		fail_msg("cellctl said: %s", out);
	free(out);
	assert_int_equal(CTL(NULL, "vm", "delete", "noq"), 0);
	tsc_cluster_agent_restart(&cl, 1, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qemu_remote_pages_checksum),
		cmocka_unit_test(test_qemu_stop_is_acpi_powerdown),
		cmocka_unit_test(test_qemu_killed_fails_vm),
		cmocka_unit_test(test_qemu_agent_killed_leaves_no_qemu),
		cmocka_unit_test(test_qemu_disk_write_then_read_back),
		cmocka_unit_test(test_qemu_clones_read_base_once),
		cmocka_unit_test(test_qemu_migrate_mid_memtest),
		cmocka_unit_test(test_qemu_restarted_when_a_page_node_dies),
		cmocka_unit_test(test_qemu_bad_images),
		cmocka_unit_test(test_qemu_own_kernel_and_initrd),
		cmocka_unit_test(test_qemu_agent_config_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
