/*
 * The qemu engine: a VM is an unmodified operating system in one QEMU
 * process (qemu-system-x86_64) on this node, every vCPU of the VM in it
 * (-smp), and its RAM the VM's DSM region.
 *
 * The image is a directory of image_dir holding `vmlinuz` and
 * `initrd.img` (the project builds `linux`: Debian's kernel and a busybox
 * initramfs, guest/linux/); `--kernel` and `--initrd` (absolute paths on
 * this node) take another kernel or initramfs instead of the image's, and
 * with --kernel no image is needed. The VM's arguments (`cellctl vm create ...
 * -- ARGS`) are appended to the kernel command line after
 * "console=ttyS0 quiet panic=-1".
 *
 * Memory: the agent gives QEMU a descriptor of the region's memfd (fd 3)
 * and maps it as guest RAM with memory-backend-file,share=on,
 * mem-path=/proc/self/fd/3; the preload library (qemu_preload.c, set in
 * LD_PRELOAD) hands QEMU's mapping to this node's DSM through the
 * hand-off, which the agent grants to this VM's QEMU pid alone. Never
 * prealloc: that would fault in every page at start.
 *
 * Disks: the VM's disks (opened at PREPARE, agent_disk.c) are NBD exports
 * disk0.. on <run dir>/disks.sock (agent_nbd.c), each a virtio disk.
 *
 * The process: a child of the agent in its own process group, SIGKILL
 * when the agent dies, stdin /dev/null, stdout and stderr appended to
 * <run dir>/qemu.log, the serial console to <run dir>/vcpu0.console
 * (what `vm console` shows), QMP on <run dir>/qmp.sock, no network, no
 * display, no reboot (a guest reboot or panic ends QEMU). It waits on a
 * pipe until the agent has recorded its pid, as native vCPUs do.
 *
 * Every vCPU of the VM shares QEMU's pid: they start, run and end
 * together. Stop asks the guest to power down over QMP (an ACPI power
 * button press) and the agent kills QEMU after stop_grace; a guest that
 * powers off itself ends QEMU with status 0, which ends the VM stopped.
 *
 * Accelerator (qemu_accel): kvm, tcg (multi-threaded), or auto: kvm when
 * /dev/kvm opens and the CPU has hardware virtualization (vmx or svm in
 * /proc/cpuinfo; a software KVM without it is far slower than TCG), else
 * tcg.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "agent_disk.h"
#include "cell/log.h"

#define MOD "agent"

#define MAXARGS 48
#define NENV	5

/* Whether this host runs KVM with hardware virtualization. */
static bool hw_kvm(void)
{
	char line[1024];
	bool hw = false;
	FILE *f;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	f = fopen("/proc/cpuinfo", "r");
	while (f && !hw && fgets(line, sizeof(line), f))
		hw = strncmp(line, "flags", 5) == 0 &&
		     (strstr(line, " vmx") || strstr(line, " svm"));
	if (f)
		fclose(f);
	return hw;
}

/* The -accel argument for this host (qemu_accel), resolved once. */
const char *agent_qemu_accel(struct agent *a)
{
	if (!a->qemu_accel[0])
		snprintf(a->qemu_accel, sizeof(a->qemu_accel), "%s",
			 strcmp(a->cfg.qemu_accel, "kvm") == 0 ? "kvm"
			 : strcmp(a->cfg.qemu_accel, "tcg") == 0 || !hw_kvm()
				 ? "tcg,thread=multi"
				 : "kvm");
	return a->qemu_accel;
}

/* The preload library: qemu_preload, else beside the agent's binary,
 * else where packages install it. */
static void preload_path(const struct agent *a, char *out, size_t len)
{
	char exe[1024];
	ssize_t n;
	char *slash;

	if (a->cfg.qemu_preload[0]) {
		snprintf(out, len, "%s", a->cfg.qemu_preload);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(out, len, "%s/libcellmon-qemu-preload.so",
				 exe);
			if (access(out, R_OK) == 0)
				return;
		}
	}
	snprintf(out, len, "/usr/lib/cellmon/libcellmon-qemu-preload.so");
}

/* qemu_binary as a path: itself when it has a '/', else found in PATH. */
static bool find_binary(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[2048], *save = NULL;

	if (strchr(name, '/')) {
		snprintf(out, len, "%s", name);
		return access(out, X_OK) == 0;
	}
	snprintf(dirs, sizeof(dirs), "%s",
		 path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/%s", d, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

/* The kernel (i 0) or initramfs (i 1) QEMU boots: the spec's own path,
 * else the image's file, else "" (no initramfs: --kernel alone). */
static void boot_file(const struct agent *a, const Cellmon__VmSpec *s, int i,
		      char *out, size_t len)
{
	const char *own = i ? s->initrd : s->kernel;

	if (own[0])
		snprintf(out, len, "%s", own);
	else if (s->image[0])
		snprintf(out, len, "%s/%s/%s", a->cfg.image_dir, s->image,
			 i ? "initrd.img" : "vmlinuz");
	else
		out[0] = 0;
}

static int qemu_check(struct agent *a, const Cellmon__VmSpec *s, char *err,
		      size_t len)
{
	char path[1400], bin[1200];
	struct stat st;

	if ((s->image[0] || !s->kernel[0]) && !cell_name_valid(s->image)) {
		snprintf(err, len, "invalid image name '%.64s'", s->image);
		return -EINVAL;
	}
	if (!find_binary(a->cfg.qemu_binary, bin, sizeof(bin))) {
		snprintf(err, len,
			 "QEMU '%s' not found on %s (install Debian's "
			 "qemu-system-x86, or set qemu_binary)",
			 a->cfg.qemu_binary, a->cfg.node_id);
		return -EOPNOTSUPP; /* the node cannot; the image is fine */
	}
	for (int i = 0; i < 2; i++) {
		const char *own = i ? s->initrd : s->kernel;

		boot_file(a, s, i, path, sizeof(path));
		errno = 0;
		if (own[0] && (stat(path, &st) || !S_ISREG(st.st_mode) ||
			       access(path, R_OK))) {
			snprintf(err, len, "no %s %s on node %s: %s",
				 i ? "initrd" : "kernel", path, a->cfg.node_id,
				 errno ? strerror(errno) : "not a file");
			return -ENOENT;
		}
		if (!own[0] && path[0] && access(path, R_OK)) {
			snprintf(err, len,
				 "image '%s' has no %s in %s (a qemu image is "
				 "a directory with vmlinuz and initrd.img)",
				 s->image, i ? "initrd.img" : "vmlinuz",
				 a->cfg.image_dir);
			return -ENOENT;
		}
	}
	preload_path(a, path, sizeof(path));
	if (access(path, R_OK)) {
		snprintf(err, len,
			 "the QEMU preload library %s is missing (set "
			 "qemu_preload)",
			 path);
		return -EOPNOTSUPP;
	}
	return 0;
}

struct qemu_args {
	char *argv[MAXARGS + 1];
	char buf[MAXARGS][1400];
	int n;
};

static void add(struct qemu_args *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void add(struct qemu_args *q, const char *fmt, ...)
{
	va_list ap;

	if (q->n >= MAXARGS)
		return;
	va_start(ap, fmt);
	vsnprintf(q->buf[q->n], sizeof(q->buf[q->n]), fmt, ap);
	va_end(ap);
	q->argv[q->n] = q->buf[q->n];
	q->n++;
	q->argv[q->n] = NULL;
}

/* The kernel command line: ours, then the VM's arguments. */
static void kernel_cmdline(const Cellmon__VmSpec *s, char *out, size_t len)
{
	size_t off = (size_t)snprintf(out, len, "console=ttyS0 quiet panic=-1");

	for (size_t i = 0; i < s->n_args && off < len; i++)
		off += (size_t)snprintf(out + off, len - off, " %s",
					s->args[i]);
}

/* incoming: "" for a new boot, else the -incoming URI (migration). */
static int start_qemu(struct agent *a, struct agent_vcpu *v,
		      const char *incoming, char *err, size_t len)
{
	struct agent_vm *vm = v->vm;
	const Cellmon__VmSpec *s = vm->spec;
	struct qemu_args *q = calloc(1, sizeof(*q));
	char bin[1200], pre[1200], cpath[1200], lpath[1200], cmdline[1200];
	char env[NENV][1300], *envp[NENV + 1], path[1400];
	int go[2] = {-1, -1}, log = -1, ram = -1, rc = 0;
	pid_t pid, parent = getpid();

	if (!q)
		return -ENOMEM;
	if (!find_binary(a->cfg.qemu_binary, bin, sizeof(bin))) {
		snprintf(err, len, "QEMU '%s' not found", a->cfg.qemu_binary);
		rc = -ENOENT;
		goto out;
	}
	preload_path(a, pre, sizeof(pre));
	agent_console_path(v, cpath, sizeof(cpath));
	snprintf(lpath, sizeof(lpath), "%s/qemu.log", vm->dir);
	kernel_cmdline(s, cmdline, sizeof(cmdline));
	add(q, "%s", bin);
	add(q, "-name");
	add(q, "%s", s->name);
	add(q, "-accel");
	add(q, "%s", agent_qemu_accel(a));
	add(q, "-m");
	add(q, "%lluM", (unsigned long long)s->memory_mb);
	add(q, "-smp");
	add(q, "%u", s->vcpus);
	add(q, "-object");
	add(q,
	    "memory-backend-file,id=ram0,size=%lluM,mem-path=/proc/self/fd/3,"
	    "share=on,prealloc=off",
	    (unsigned long long)s->memory_mb);
	add(q, "-machine");
	add(q, "pc,memory-backend=ram0");
	/* no NIC, no default devices: a network only when asked (none is
	 * offered yet); QEMU's seccomp filter with every optional deny on:
	 * no obsolete calls, no setuid/setgid and friends, no fork or exec,
	 * no changes of its own scheduling or priority */
	add(q, "-nodefaults");
	add(q, "-sandbox");
	add(q, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
	       "resourcecontrol=deny");
	add(q, "-no-user-config");
	add(q, "-display");
	add(q, "none");
	add(q, "-no-reboot");
	add(q, "-serial");
	add(q, "file:%s", cpath);
	add(q, "-qmp");
	add(q, "unix:%s/qmp.sock,server=on,wait=off", vm->dir);
	boot_file(a, s, 0, path, sizeof(path));
	add(q, "-kernel");
	add(q, "%s", path);
	boot_file(a, s, 1, path, sizeof(path));
	if (path[0]) {
		add(q, "-initrd");
		add(q, "%s", path);
	}
	add(q, "-append");
	add(q, "%s", cmdline);
	if (incoming[0]) {
		/* told where over QMP (qemu_migrate_listen), after the
		 * x-ignore-shared capability: RAM is shared memory, the
		 * migration skips it on both sides, pages follow through
		 * the DSM */
		add(q, "-incoming");
		add(q, "%s", incoming);
	}
	/* disk N: the agent's NBD export disk<N> (agent_nbd.c) */
	rc = agent_nbd_start(vm, err, len);
	if (rc)
		goto out;
	for (size_t i = 0; i < vm->ndisks; i++) {
		char sock[1200];

		agent_nbd_path(vm, sock, sizeof(sock));
		add(q, "-drive");
		add(q,
		    "file=nbd+unix:///disk%zu?socket=%s,format=raw,if=virtio%s",
		    i, sock,
		    agent_disk_readonly(vm->disks[i]) ? ",readonly=on" : "");
	}
	snprintf(env[0], sizeof(env[0]), "LD_PRELOAD=%s", pre);
	snprintf(env[1], sizeof(env[1]), "CELLMON_QEMU_RAM_FD=3");
	snprintf(env[2], sizeof(env[2]), "CELLMON_REGION=%llu",
		 (unsigned long long)vm->region_id);
	snprintf(env[3], sizeof(env[3]), "CELLMON_HANDOFF=%s", a->handoff_path);
	snprintf(env[4], sizeof(env[4]), "PATH=/usr/bin:/bin");
	for (int i = 0; i < NENV; i++)
		envp[i] = env[i];
	envp[NENV] = NULL;
	ram = dsm_region_memfd(vm->region);
	log = open(lpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (ram < 0 || log < 0 || pipe2(go, O_CLOEXEC)) {
		rc = ram < 0 ? ram : -errno;
		snprintf(err, len, "cannot prepare QEMU: %s", strerror(-rc));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		snprintf(err, len, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* stdout, stderr: qemu.log; 3: the RAM memfd */
		int fds[3] = {log, log, ram};

		agent_child_exec(go[0], parent, fds, 3, 0, vm->dir, bin,
				 q->argv, envp, NULL);
	}
	setpgid(pid, pid);
	pthread_mutex_lock(&a->vm_mu);
	v->pid = pid;
	v->state = CELLMON__VCPU_STATE__VCPU_RUNNING;
	pthread_mutex_unlock(&a->vm_mu);
	if (write(go[1], "g", 1) != 1)
		kill(pid, SIGKILL);
	CELL_INFO(MOD,
		  "qemu started vm=%s pid=%d vcpus=%u memory_mb=%llu "
		  "accel=%s image=%s kernel=%s initrd=%s",
		  s->name, (int)pid, s->vcpus, (unsigned long long)s->memory_mb,
		  agent_qemu_accel(a), s->image[0] ? s->image : "-",
		  s->kernel[0] ? s->kernel : "(image's)",
		  s->initrd[0] ? s->initrd : "(image's)");
out:
	if (ram >= 0)
		close(ram);
	if (log >= 0)
		close(log);
	if (go[0] >= 0)
		close(go[0]);
	if (go[1] >= 0)
		close(go[1]);
	free(q);
	return rc;
}

static int qemu_start(struct agent *a, struct agent_vcpu *v, char *err,
		      size_t len)
{
	struct agent_vm *vm = v->vm;
	int rc = 0;

	/* no guest service socket: the guest talks to QEMU's devices */
	close(v->guest_fd);
	v->guest_fd = -1;
	if (vm->nvcpus != vm->spec->vcpus) {
		snprintf(err, len,
			 "a qemu VM runs every vCPU on one node; %zu of %u "
			 "were placed here",
			 vm->nvcpus, vm->spec->vcpus);
		return -EINVAL;
	}
	if (v == &vm->vcpus[0])
		return start_qemu(a, v, "", err, len);
	/* the other vCPUs are QEMU's threads: they share its pid */
	pthread_mutex_lock(&a->vm_mu);
	v->pid = vm->vcpus[0].pid;
	v->state = vm->vcpus[0].state;
	pthread_mutex_unlock(&a->vm_mu);
	return rc;
}

/* One QMP command after the capabilities handshake; 0 when QEMU took
 * it. Short timeouts: it runs on the agent's event loop. command is the
 * JSON after "execute": (a quoted name, with arguments if any); answer,
 * if not NULL, gets the text of the reply. */
static int qmp_json(const struct agent_vm *vm, const char *command,
		    char *answer, size_t anslen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {0, 300 * 1000};
	char buf[4096], msg[256];
	int fd, rc = -EIO;
	ssize_t n;

	if ((size_t)snprintf(buf, sizeof(buf), "%s/qmp.sock", vm->dir) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, buf, strlen(buf) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto out;
	if (recv(fd, buf, sizeof(buf) - 1, 0) <= 0) /* the greeting */
		goto out;
	snprintf(msg, sizeof(msg),
		 "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":%s}\n",
		 command);
	if (send(fd, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t)strlen(msg))
		goto out;
	/* two answers: {"return": {}} each (events may come between) */
	for (int answers = 0; answers < 2;) {
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			goto out;
		buf[n] = '\0';
		if (strstr(buf, "\"error\""))
			goto out;
		for (char *p = buf; (p = strstr(p, "\"return\"")); p++)
			answers++;
		if (answer)
			snprintf(answer, anslen, "%s", buf);
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

static int qmp(const struct agent_vm *vm, const char *command)
{
	char json[128];

	snprintf(json, sizeof(json), "\"%s\"", command);
	return qmp_json(vm, json, NULL, 0);
}

/* A free TCP port on host (the kernel's pick; QEMU binds it next). */
static int free_port(const char *host, int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

	if (fd < 0)
		return -errno;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		rc = -EINVAL;
	else if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
		 getsockname(fd, (struct sockaddr *)&sa, &sl))
		rc = -errno;
	close(fd);
	*port = ntohs(sa.sin_port);
	return rc;
}

static int qemu_migrate_in(struct agent *a, struct agent_vcpu *v,
			   const char *host, char *addr, size_t addrlen,
			   char *err, size_t len)
{
	struct agent_vm *vm = v->vm;
	int port = 0, rc;

	if (v != &vm->vcpus[0])
		return qemu_start(a, v, err, len); /* shares QEMU's pid */
	rc = free_port(host, &port);
	if (rc) {
		snprintf(err, len, "no port on %s for the migration: %s", host,
			 strerror(-rc));
		return rc;
	}
	snprintf(addr, addrlen, "%s:%d", host, port);
	return start_qemu(a, v, "defer", err, len);
}

static const char ignore_shared[] =
	"\"migrate-set-capabilities\",\"arguments\":{"
	"\"capabilities\":[{\"capability\":\"x-ignore-shared\","
	"\"state\":true}]}";

static int qemu_migrate_listen(struct agent_vcpu *v, const char *addr,
			       char *err, size_t len)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd),
		 "\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:%s\"}",
		 addr);
	if (qmp_json(v->vm, ignore_shared, NULL, 0) ||
	    qmp_json(v->vm, cmd, NULL, 0)) {
		snprintf(err, len, "QEMU of vm %s does not listen yet",
			 v->vm->name);
		return -EAGAIN;
	}
	return 0;
}

static int qemu_migrate_out(struct agent_vcpu *v, const char *addr,
			    uint32_t *downtime_ms, uint32_t *total_ms,
			    char *err, size_t len)
{
	char cmd[300], ans[4096];
	const char *p;
	int rc;

	rc = qmp_json(v->vm, ignore_shared, NULL, 0);
	snprintf(cmd, sizeof(cmd),
		 "\"migrate\",\"arguments\":{\"uri\":\"tcp:%s\"}", addr);
	if (!rc)
		rc = qmp_json(v->vm, cmd, NULL, 0);
	if (rc) {
		snprintf(err, len, "QMP of vm %s refused the migration",
			 v->vm->name);
		return -EIO;
	}
	/* RAM is skipped: device state only, a few ms; 5 s at most */
	for (int i = 0; i < 500; i++) {
		if (qmp_json(v->vm, "\"query-migrate\"", ans, sizeof(ans)))
			break;
		if (strstr(ans, "\"completed\"")) {
			p = strstr(ans, "\"downtime\":");
			*downtime_ms = p ? (uint32_t)atoi(p + 11) : 0;
			p = strstr(ans, "\"total-time\":");
			*total_ms = p ? (uint32_t)atoi(p + 13) : 0;
			return 0;
		}
		if (strstr(ans, "\"failed\"")) {
			snprintf(err, len,
				 "the migration of vm %s to %s failed",
				 v->vm->name, addr);
			return -EAGAIN; /* the target may not listen yet */
		}
		usleep(10 * 1000);
	}
	snprintf(err, len, "the migration of vm %s to %s did not end",
		 v->vm->name, addr);
	qmp(v->vm, "migrate_cancel");
	return -ETIMEDOUT;
}

static void qemu_stop(struct agent_vcpu *v)
{
	if (v != &v->vm->vcpus[0])
		return;
	if (qmp(v->vm, "system_powerdown"))
		CELL_WARN(MOD,
			  "vm %s: QMP on %s/qmp.sock did not take "
			  "system_powerdown; it is killed after stop_grace",
			  v->vm->name, v->vm->dir);
}

static void qemu_kill(struct agent_vcpu *v)
{
	if (v == &v->vm->vcpus[0])
		kill(-v->pid, SIGKILL);
}

/* The last lines of qemu.log, "a / b", for the VM's reason: QEMU says
 * there why it refused its arguments or stopped. */
static void qemu_ended(struct agent_vcpu *v)
{
	char path[1200], buf[2048], *lines[3] = {NULL};
	int fd, k = 0;
	ssize_t n;
	off_t end;

	v->detail[0] = '\0';
	if (v != &v->vm->vcpus[0])
		return;
	snprintf(path, sizeof(path), "%s/qemu.log", v->vm->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	n = pread(fd, buf, sizeof(buf) - 1,
		  end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1
					       : 0);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* the last two non-empty lines, oldest first */
	for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
		lines[k % 3] = p;
		k++;
	}
	for (int i = k >= 2 ? k - 2 : 0, off = 0; i < k; i++)
		off += snprintf(v->detail + off,
				sizeof(v->detail) - (size_t)off, "%s%s",
				off ? " / " : "QEMU: ", lines[i % 3]);
}

const struct agent_engine_ops agent_qemu_engine = {
	.id = CELLMON__ENGINE__ENGINE_QEMU,
	.name = "qemu",
	.stripe_pages = 64, /* 256 KiB */
	.check = qemu_check,
	.start = qemu_start,
	.stop = qemu_stop,
	.kill = qemu_kill,
	.ended = qemu_ended,
	.migrate_in = qemu_migrate_in,
	.migrate_listen = qemu_migrate_listen,
	.migrate_out = qemu_migrate_out,
};
