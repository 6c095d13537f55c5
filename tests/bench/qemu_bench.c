/*
 * qemu-bench: what a Linux VM costs on cellmon's DSM, against QEMU with
 * its own RAM, measured in one run on this machine.
 *
 *   qemu-bench [--runs=N] [--mib=M] [--only=memory|disk|migration] [--json]
 *
 * Four configurations boot the `linux` image (256 MiB, one vCPU, the
 * accelerator the agent picks: TCG without hardware virtualization) and
 * run its memory tester over M MiB (default 64), N times each (default
 * 3):
 *   alone      qemu-system-x86_64 by itself, RAM its own (the baseline)
 *   local      a cellmon qemu VM, every page homed on its node (page
 *              policy off: the pages stay there)
 *   default    a cellmon qemu VM as a user gets it: pages interleaved
 *              over the cell's two nodes, page policy all
 *   remote     a cellmon qemu VM, every page homed on the other node
 *              (page policy off)
 * and prints for each the medians of: boot (start to the guest's first
 * line, "cellmon-guest: up"), the memory test (as the guest times it) and
 * the whole run (start to the VM's end), with the ratios to `alone`, and
 * the DSM faults of one run. Then the disk path: the guest reads all of
 * a 32 MiB virtio disk (`cellmon.job=disk-time`, timed by the guest)
 * from QEMU alone on qemu-nbd serving the raw file, and from a cellmon
 * VM whose disk is a clone of the same bytes imported as a base (through
 * the agent's NBD export and the node cache to cellmon-vdiskd), both
 * warm (one untimed read first): once with O_DIRECT (the disk path
 * alone) and once through the guest's page cache (each block read also
 * lands in a guest page touched for the first time: on cellmon a DSM
 * fault); and the live migration of a running VM. --only runs one part.
 * Figures only: it never fails on time.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

#define MAXRUNS 20

enum { C_ALONE, C_LOCAL, C_DEFAULT, C_REMOTE, C_COUNT };

static const char *const cname[C_COUNT] = {"alone", "local", "default",
					   "remote"};

struct sample {
	double boot_s, test_s, total_s;
	double cached_s; /* disk runs: the buffered read */
};

struct result {
	struct sample s[MAXRUNS];
	int n;
	long long local_faults, remote_faults;
};

static struct tsc_cluster cl;
static char tmp[700];
static int mib = 64;

#define DISK_MIB 32 /* within the agents' default 64M cache */
static char base_id[80], base_img[800];

static double median(const struct result *r, size_t off)
{
	double v[MAXRUNS];

	for (int i = 0; i < r->n; i++)
		v[i] = *(const double *)((const char *)&r->s[i] + off);
	return ts_median(v, (size_t)r->n);
}

/* The guest's "memtest took X s", or -1. */
static double test_time(const char *console)
{
	const char *p = console ? strstr(console, "memtest took ") : NULL;

	return p ? strtod(p + strlen("memtest took "), NULL) : -1;
}

static bool has_up(const char *path)
{
	char *text = ts_read_file(path);
	bool up = text && strstr(text, "cellmon-guest: up");

	free(text);
	return up;
}

/* A 64 MiB base image in the disk server's store (before it starts),
 * its bytes also in base_img for qemu-nbd. */
static void make_base(struct tsc_cluster *c)
{
	char st[800], *out = NULL;
	char *argv[] = {VDISKD_BIN, st, "base", "import", base_img, NULL};
	uint8_t *b = malloc(1 << 20);
	FILE *f;

	snprintf(base_img, sizeof(base_img), "%s/base.img", c->dir);
	f = fopen(base_img, "w");
	for (size_t m = 0; f && b && m < DISK_MIB; m++) {
		for (size_t i = 0; i < (1u << 20); i++)
			b[i] = (uint8_t)((m << 20 | i) * 2654435761u >> 13);
		fwrite(b, 1, 1 << 20, f);
	}
	if (f)
		fclose(f);
	free(b);
	snprintf(st, sizeof(st), "--store=%s", c->store);
	if (ts_run(argv, 60000, &out, false) == 0)
		snprintf(base_id, sizeof(base_id), "base:%.64s", out);
	free(out);
}

/* The guest's "read N MiB of /dev/vda in X s (O_DIRECT)" (the disk
 * path alone) or, cached, "... into the page cache in X s" (also one new
 * guest page touched per block read), or -1. */
static double read_time(const char *console, bool cached)
{
	const char *key = cached ? "MiB of /dev/vda into the page cache in "
				 : "MiB of /dev/vda in ";
	const char *p = console ? strstr(console, key) : NULL;

	return p ? strtod(p + strlen(key), NULL) : -1;
}

/* QEMU by itself, with the same kernel, initrd and command line. */
static struct sample run_alone_job(const char *job, const char *drive)
{
	char con[800], serial[900], append[200];
	char *argv[] = {"qemu-system-x86_64",
			"-accel",
			"tcg,thread=multi",
			"-m",
			"256M",
			"-smp",
			"1",
			"-nodefaults",
			"-no-user-config",
			"-display",
			"none",
			"-no-reboot",
			"-serial",
			serial,
			"-kernel",
			GUEST_IMAGES "/linux/vmlinuz",
			"-initrd",
			GUEST_IMAGES "/linux/initrd.img",
			"-append",
			append,
			drive ? "-drive" : NULL,
			(char *)drive,
			NULL};
	struct sample s = {0};
	uint64_t t0 = ts_now_ms(), up = 0;
	char *text;
	pid_t pid;
	int ws;

	if (access("/dev/kvm", R_OK | W_OK) == 0 &&
	    system("grep -qE ' (vmx|svm)' /proc/cpuinfo") == 0)
		argv[2] = "kvm";
	snprintf(con, sizeof(con), "%s/alone.console", tmp);
	unlink(con);
	snprintf(serial, sizeof(serial), "file:%s", con);
	snprintf(append, sizeof(append), "console=ttyS0 quiet panic=-1 %s",
		 job);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &ws, WNOHANG) == 0) {
		if (!up && has_up(con))
			up = ts_now_ms();
		usleep(10 * 1000);
	}
	s.total_s = (double)(ts_now_ms() - t0) / 1000;
	if (!up && has_up(con))
		up = ts_now_ms();
	s.boot_s = up ? (double)(up - t0) / 1000 : -1;
	text = ts_read_file(con);
	s.test_s = drive ? read_time(text, false) : test_time(text);
	s.cached_s = drive ? read_time(text, true) : -1;
	free(text);
	return s;
}

static struct sample run_alone(void)
{
	char job[64];

	snprintf(job, sizeof(job), "cellmon.job=memtest:%d", mib);
	return run_alone_job(job, NULL);
}

/* QEMU alone reading the raw file from qemu-nbd over a unix socket. */
static struct sample disk_alone(void)
{
	char sock[800], drive[1000];
	char *argv[] = {"qemu-nbd", "-f", "raw", "-x",	   "d",
			"-t",	    "-k", sock,	 base_img, NULL};
	pid_t nbd;
	struct sample t;

	snprintf(sock, sizeof(sock), "%s/nbd.sock", tmp);
	nbd = ts_spawn(argv, NULL);
	for (int i = 0; i < 500 && access(sock, F_OK); i++)
		usleep(10 * 1000);
	snprintf(drive, sizeof(drive),
		 "file=nbd+unix:///d?socket=%s,format=raw,if=virtio", sock);
	t = run_alone_job("cellmon.job=disk-time", drive);
	ts_stop(nbd, SIGTERM, 5000);
	unlink(sock);
	return t;
}

static json_t *vm_json(const char *name)
{
	return tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			    TSC_WORDS("vm", "info", name));
}

static const char *vm_state(const char *name)
{
	static char st[32];
	json_t *j = vm_json(name);

	snprintf(st, sizeof(st), "%s",
		 j ? json_string_value(json_object_get(j, "state")) : "none");
	json_decref(j);
	return st;
}

static void delete_vm(const char *name)
{
	for (int k = 0; k < 500 && strcmp(vm_state(name), "none") != 0; k++) {
		TSC_CTL(&cl, NULL, "vm", "delete", name);
		usleep(10 * 1000);
	}
}

/* A cellmon qemu VM on node1 reading all of its disk (a clone of the
 * base): the guest's time. */
static struct sample disk_vm(int r)
{
	char disk[16], arg[32], con[1000], *out;
	struct sample t = {.test_s = -1, .cached_s = -1};
	long long id;
	json_t *j;

	snprintf(disk, sizeof(disk), "dc%d", r);
	snprintf(arg, sizeof(arg), "--disk=%s", disk);
	TSC_CTL(&cl, NULL, "disk", "create", disk, "0", base_id);
	delete_vm("dv");
	if (TSC_CTL(&cl, NULL, "vm", "create", "dv", "--cell=c",
		    "--engine=qemu", "--image=linux", "--memory=256M",
		    "--node=node1", "--home-node=node1", arg, "--start", "--",
		    "cellmon.job=disk-time") != 0)
		return t;
	j = vm_json("dv");
	id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	while (strcmp(vm_state("dv"), "stopped") != 0 &&
	       strcmp(vm_state("dv"), "failed") != 0)
		usleep(20 * 1000);
	snprintf(con, sizeof(con), "%s/agent1/vms/%lld/run1/vcpu0.console",
		 cl.dir, id);
	out = ts_read_file(con);
	t.test_s = read_time(out, false);
	t.cached_s = read_time(out, true);
	free(out);
	delete_vm("dv");
	TSC_CTL(&cl, NULL, "disk", "delete", disk);
	return t;
}

/* A cellmon qemu VM on node1 with the home options given. */
static struct sample run_vm(int c, struct result *r)
{
	long long lf = 0, rf = 0;
	char job[64], con[1000], *out = NULL;
	const char *home = c == C_LOCAL	   ? "--home-node=node1"
			   : c == C_REMOTE ? "--home-node=node2"
					   : "--home=interleave";
	struct sample s = {0};
	uint64_t t0 = ts_now_ms(), up = 0;
	long long id;
	json_t *j, *n;
	size_t i;

	snprintf(job, sizeof(job), "cellmon.job=memtest:%d", mib);
	/* the last run's VM: deletable once its nodes released it */
	for (int k = 0; k < 500 && strcmp(vm_state("b"), "none") != 0; k++) {
		TSC_CTL(&cl, NULL, "vm", "delete", "b");
		usleep(10 * 1000);
	}
	/* local and remote measure where the pages are put: the page
	 * policy would move them; default is what a user gets */
	if (TSC_CTL(&cl, &out, "vm", "create", "b", "--cell=c", "--engine=qemu",
		    "--image=linux", "--memory=256M", "--node=node1", home,
		    c == C_DEFAULT ? "--page-policy=all" : "--page-policy=off",
		    "--start", "--", job) != 0) {
		fprintf(stderr, "qemu-bench: vm create: %s\n", out);
		exit(1);
	}
	free(out);
	j = vm_json("b");
	id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	snprintf(con, sizeof(con), "%s/agent1/vms/%lld/run1/vcpu0.console",
		 cl.dir, id);
	for (;;) {
		const char *st = vm_state("b");

		if (!up && has_up(con))
			up = ts_now_ms();
		if (strcmp(st, "stopped") == 0 || strcmp(st, "failed") == 0)
			break;
		usleep(10 * 1000);
	}
	s.total_s = (double)(ts_now_ms() - t0) / 1000;
	s.boot_s = up ? (double)(up - t0) / 1000 : -1;
	out = ts_read_file(con);
	s.test_s = test_time(out);
	free(out);
	j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			 TSC_WORDS("vm", "stats", "b"));
	json_array_foreach(json_object_get(j, "nodes"), i, n)
	{
		lf += json_integer_value(json_object_get(n, "local_faults"));
		rf += json_integer_value(json_object_get(n, "remote_faults"));
	}
	json_decref(j);
	/* the last run whose counters the manager still had at its end
	 * (an agent's final report may come after the VM stopped) */
	if (lf + rf > 0) {
		r->local_faults = lf;
		r->remote_faults = rf;
	}
	return s;
}

/* A running VM on node1 (pages interleaved) migrated node1 -> node2 ->
 * node1 ... `runs` times: the medians of the guest's pause (QEMU's
 * downtime) and of the whole move, as vm migrate reports them. */
static void migrations(int runs, double *pause_ms, double *move_ms)
{
	struct result p = {0}, t = {0};
	char *out = NULL;
	long long id;
	json_t *j;
	char con[1000];

	TSC_CTL(&cl, NULL, "vm", "create", "mig", "--cell=c", "--engine=qemu",
		"--image=linux", "--memory=256M", "--node=node1", "--start",
		"--", "cellmon.job=shell");
	j = vm_json("mig");
	id = json_integer_value(json_object_get(j, "id"));
	json_decref(j);
	snprintf(con, sizeof(con), "%s/agent1/vms/%lld/run1/vcpu0.console",
		 cl.dir, id);
	for (int i = 0; i < 3000 && !has_up(con); i++)
		usleep(10 * 1000);
	for (int r = 0; r < runs && r < MAXRUNS; r++) {
		const char *to = r % 2 ? "--to=node1" : "--to=node2";
		json_t *mj;

		j = NULL;
		if (TSC_CTL(&cl, &out, "-o", "json", "vm", "migrate", "mig",
			    to) == 0)
			j = json_loads(out, 0, NULL);
		free(out);
		out = NULL;
		mj = json_object_get(j, "migration");
		p.s[p.n++].boot_s = (double)json_integer_value(
			json_object_get(mj, "pause_ms"));
		t.s[t.n++].boot_s = (double)json_integer_value(
			json_object_get(mj, "migrate_ms"));
		json_decref(j);
	}
	TSC_CTL(&cl, NULL, "vm", "kill", "mig");
	for (int k = 0; k < 500 && strcmp(vm_state("mig"), "none") != 0; k++) {
		TSC_CTL(&cl, NULL, "vm", "delete", "mig");
		usleep(10 * 1000);
	}
	*pause_ms = median(&p, offsetof(struct sample, boot_s));
	*move_ms = median(&t, offsetof(struct sample, boot_s));
}

int main(int argc, char **argv)
{
	static struct tsc_cluster_opts o = {
		.nodes = 2, .cell = "c", .vdiskd = true, .before = make_base};
	struct result res[C_COUNT] = {0};
	int runs = 3;
	bool json = false, part[3] = {true, true, true};
	char *dir;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--runs=", 7) == 0)
			runs = atoi(argv[i] + 7);
		else if (strncmp(argv[i], "--mib=", 6) == 0)
			mib = atoi(argv[i] + 6);
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--only=memory") == 0 ||
			 strcmp(argv[i], "--only=disk") == 0 ||
			 strcmp(argv[i], "--only=migration") == 0)
			for (int k = 0; k < 3; k++)
				part[k] = argv[i][7] == "mdi"[k];
		else {
			fprintf(stderr,
				"usage: qemu-bench [--runs=N (1-%d)] "
				"[--mib=M (1-192)] "
				"[--only=memory|disk|migration] [--json]\n",
				MAXRUNS);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (runs < 1 || runs > MAXRUNS || mib < 1 || mib > 192) {
		fprintf(stderr, "qemu-bench: --runs 1-%d, --mib 1-192\n",
			MAXRUNS);
		return 2;
	}
	if (access(GUEST_IMAGES "/linux/initrd.img", R_OK)) {
		fprintf(stderr,
			"qemu-bench: no linux image in %s/linux "
			"(deploy/install-deps, then build)\n",
			GUEST_IMAGES);
		return 1;
	}
	dir = ts_tmpdir("cellmon-qemu-bench");
	snprintf(tmp, sizeof(tmp), "%s", dir);
	free(dir);
	tsc_cluster_start(&cl, "cellmon-qemu-bench", &o);
	/* interleaved: the configurations see the same machine state */
	for (int r = 0; part[0] && r < runs; r++)
		for (int c = 0; c < C_COUNT; c++) {
			struct result *x = &res[c];

			x->s[x->n++] =
				c == C_ALONE ? run_alone() : run_vm(c, x);
			if (!json)
				fprintf(stderr,
					"# run %d %-8s boot %.2f s, memtest "
					"%.2f s, total %.2f s\n",
					r + 1, cname[c], x->s[x->n - 1].boot_s,
					x->s[x->n - 1].test_s,
					x->s[x->n - 1].total_s);
		}
	double pause_ms = -1, move_ms = -1, d_alone, d_vm, c_alone, c_vm;
	struct result da = {0}, dv = {0};

	/* the disk path, warm: one untimed read each first */
	if (part[1]) {
		disk_alone();
		disk_vm(0);
	}
	for (int r = 0; part[1] && r < runs; r++) {
		da.s[da.n++] = disk_alone();
		dv.s[dv.n++] = disk_vm(r + 1);
		if (!json)
			fprintf(stderr,
				"# run %d disk: qemu-nbd %.2f s (cached "
				"%.2f s), cellmon %.2f s (cached %.2f s)\n",
				r + 1, da.s[da.n - 1].test_s,
				da.s[da.n - 1].cached_s, dv.s[dv.n - 1].test_s,
				dv.s[dv.n - 1].cached_s);
	}
	d_alone = median(&da, offsetof(struct sample, test_s));
	d_vm = median(&dv, offsetof(struct sample, test_s));
	c_alone = median(&da, offsetof(struct sample, cached_s));
	c_vm = median(&dv, offsetof(struct sample, cached_s));
	if (part[2])
		migrations(2 * runs + 1, &pause_ms, &move_ms);
	tsc_cluster_stop(&cl);
	ts_rmtree(tmp);
	if (json) {
		json_t *top = json_object(), *arr = json_array();

		for (int c = 0; c < C_COUNT; c++)
			json_array_append_new(
				arr,
				json_pack(
					"{s:s, s:f, s:f, s:f, s:I, s:I}",
					"config", cname[c], "boot_s",
					median(&res[c],
					       offsetof(struct sample, boot_s)),
					"memtest_s",
					median(&res[c],
					       offsetof(struct sample, test_s)),
					"total_s",
					median(&res[c], offsetof(struct sample,
								 total_s)),
					"local_faults",
					(json_int_t)res[c].local_faults,
					"remote_faults",
					(json_int_t)res[c].remote_faults));
		json_object_set_new(top, "runs", json_integer(runs));
		json_object_set_new(top, "mib", json_integer(mib));
		json_object_set_new(top, "configs", arr);
		json_object_set_new(top, "disk",
				    json_pack("{s:i, s:f, s:f, s:f, s:f}",
					      "mib", DISK_MIB, "qemu_nbd_s",
					      d_alone, "cellmon_s", d_vm,
					      "qemu_nbd_cached_s", c_alone,
					      "cellmon_cached_s", c_vm));
		json_object_set_new(top, "migration",
				    json_pack("{s:f, s:f, s:i}", "pause_ms",
					      pause_ms, "move_ms", move_ms,
					      "moves", 2 * runs + 1));
		json_dumpf(top, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(top);
		return 0;
	}
	if (part[0]) {
		printf("qemu-bench: linux image, 256 MiB, 1 vCPU, memtest %d "
		       "MiB, medians of %d runs\n",
		       mib, runs);
		printf("%-8s %8s %8s %8s %9s %9s %9s %9s\n", "config", "boot_s",
		       "test_s", "total_s", "boot_x", "test_x", "local_f",
		       "remote_f");
	}
	for (int c = 0; part[0] && c < C_COUNT; c++) {
		double b = median(&res[c], offsetof(struct sample, boot_s));
		double t = median(&res[c], offsetof(struct sample, test_s));
		double a = median(&res[c], offsetof(struct sample, total_s));
		double b0 = median(&res[0], offsetof(struct sample, boot_s));
		double t0 = median(&res[0], offsetof(struct sample, test_s));

		printf("%-8s %8.2f %8.2f %8.2f %8.2fx %8.2fx %9lld %9lld\n",
		       cname[c], b, t, a, b0 > 0 ? b / b0 : 0,
		       t0 > 0 ? t / t0 : 0, res[c].local_faults,
		       res[c].remote_faults);
	}
	if (part[0])
		printf("(boot: start to the guest's first line; test: the "
		       "guest's own timing of memtest; x: ratio to alone; "
		       "faults: one run)\n");
	if (part[1]) {
		printf("guest reads a %d MiB virtio disk (warm), O_DIRECT, "
		       "4 passes: "
		       "QEMU on qemu-nbd %.2f s (%.0f MiB/s), cellmon (agent, "
		       "node cache, vdiskd) %.2f s (%.0f MiB/s): %.2fx of "
		       "qemu-nbd's rate (medians)\n",
		       DISK_MIB, d_alone,
		       d_alone > 0 ? 4 * DISK_MIB / d_alone : 0, d_vm,
		       d_vm > 0 ? 4 * DISK_MIB / d_vm : 0,
		       d_vm > 0 && d_alone > 0 ? d_alone / d_vm : 0);
		printf("the same through the guest's page cache (new guest "
		       "pages: DSM faults on cellmon): %.2f s against %.2f s: "
		       "%.2fx\n",
		       c_alone, c_vm,
		       c_vm > 0 && c_alone > 0 ? c_alone / c_vm : 0);
	}
	if (part[2])
		printf("vm migrate node1 <-> node2, %d moves of a running 256 "
		       "MiB VM: pause %.0f ms (QEMU's downtime), move %.0f ms "
		       "(medians)\n",
		       2 * runs + 1, pause_ms, move_ms);
	return 0;
}
