/*
 * The native engine: each vCPU is a guest program (image_dir/<image>)
 * run as a child of the agent in a process group of its own.
 *
 * The child gets: the guest service socket as fd 3, the agent's lease
 * page (read-only use, cellguest_wire.h) as fd 4, stdout and stderr
 * appended to <vm dir>/vcpu<N>.console, stdin from /dev/null, no other
 * descriptors, no core dumps, at most 64 open files, SIGKILL when the
 * agent dies (a guest cannot run without the agent serving its faults),
 * the CELLMON_* environment of cellguest.h and nothing else, and its VM
 * directory as working directory. Memory is only what the guest maps
 * itself plus the VM's region, which the agent's hand-off check grants
 * to this VM's vCPU processes alone. With guest_confine (the default)
 * the child is confined before exec (agent_confine.c: its VM's own uid,
 * its own root holding its image at /image and its VM directory at /vm,
 * no network, rlimits, seccomp), and gets /dev/userfaultfd as fd 5.
 *
 * The child waits on a pipe until the parent has recorded its pid, so
 * the hand-off check never sees an unknown pid. Between fork and exec it
 * calls only async-signal-safe functions; everything is prepared before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "agent_confine.h"
#include "cell/log.h"

#define MOD "agent"

/* Guest memory sits at the same address in every vCPU. */
#define GUEST_MEM_ADDR 0x200000000000ull

#define NENV 12

static int native_start(struct agent *a, struct agent_vcpu *v, char *err,
			size_t len)
{
	const Cellmon__VmSpec *s = v->vm->spec;
	char path[1200], cpath[1200], env[NENV][1200];
	char *envp[NENV + 1], **argv = NULL;
	int go[2] = {-1, -1}, console = -1, rc = 0;
	pid_t pid, parent = getpid();
	static struct agent_confine conf; /* event-loop thread only */

	snprintf(path, sizeof(path), "%s/%s", a->cfg.image_dir, s->image);
	rc = agent_confine_prepare(a, v->vm, path, a->handoff_path, &conf, err,
				   len);
	if (rc)
		goto out;
	agent_console_path(v, cpath, sizeof(cpath));
	snprintf(env[0], sizeof(env[0]), "CELLMON_VM=%s", s->name);
	snprintf(env[1], sizeof(env[1]), "CELLMON_VCPU=%u", v->index);
	snprintf(env[2], sizeof(env[2]), "CELLMON_NVCPUS=%u", s->vcpus);
	snprintf(env[3], sizeof(env[3]), "CELLMON_REGION=%llu",
		 (unsigned long long)v->vm->region_id);
	snprintf(env[4], sizeof(env[4]), "CELLMON_HANDOFF=%s",
		 conf.on ? "/run/dsm.sock" : a->handoff_path);
	snprintf(env[5], sizeof(env[5]), "CELLMON_MEM_ADDR=%llx",
		 GUEST_MEM_ADDR);
	snprintf(env[6], sizeof(env[6]), "CELLMON_CTL_FD=3");
	snprintf(env[7], sizeof(env[7]), "PATH=/usr/bin:/bin");
	snprintf(env[8], sizeof(env[8]), "CELLMON_NDISKS=%zu", v->vm->ndisks);
	snprintf(env[9], sizeof(env[9]), "CELLMON_LEASE_FD=4");
	/* confined: no userfaultfd but through the device, opened here */
	snprintf(env[10], sizeof(env[10]), "CELLMON_UFFD_FD=5");
	/* A sanitizer build's guests are instrumented too: LeakSanitizer
	 * stops the world with ptrace, which a confined guest is refused */
	snprintf(env[11], sizeof(env[11]), "ASAN_OPTIONS=detect_leaks=0");
	for (int i = 0; i < NENV; i++)
		envp[i] = env[i];
#ifdef __SANITIZE_ADDRESS__
	envp[conf.on ? NENV : NENV - 2] = NULL;
#else
	envp[conf.on ? NENV - 1 : NENV - 2] = NULL;
#endif
	argv = calloc(s->n_args + 2, sizeof(*argv));
	if (!argv) {
		rc = -ENOMEM;
		goto out;
	}
	argv[0] = s->image;
	for (size_t i = 0; i < s->n_args; i++)
		argv[i + 1] = s->args[i];
	console = open(cpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (console < 0 || pipe2(go, O_CLOEXEC)) {
		rc = -errno;
		snprintf(err, len, "cannot open %s: %s", cpath,
			 strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		snprintf(err, len, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		/* stdout, stderr: the console; 3: service; 4: lease page;
		 * 5: /dev/userfaultfd when confined */
		int fds[5] = {console, console, v->guest_fd, a->lease_fd,
			      conf.uffd_dev};

		agent_child_exec(go[0], parent, fds, conf.on ? 5 : 4, 64,
				 v->vm->dir, path, argv, envp, &conf);
	}
	setpgid(pid, pid); /* both sides set it: no race with kill(-pid) */
	pthread_mutex_lock(&a->vm_mu);
	v->pid = pid;
	v->state = CELLMON__VCPU_STATE__VCPU_RUNNING;
	pthread_mutex_unlock(&a->vm_mu);
	if (write(go[1], "g", 1) != 1)
		kill(pid, SIGKILL); /* reaped and reported as killed */
	CELL_INFO(MOD, "vcpu started vm=%s vcpu=%u pid=%d image=%s", s->name,
		  v->index, (int)pid, s->image);
out:
	agent_confine_release(&conf);
	free(argv);
	if (console >= 0)
		close(console);
	if (go[0] >= 0)
		close(go[0]);
	if (go[1] >= 0)
		close(go[1]);
	close(v->guest_fd);
	v->guest_fd = -1;
	return rc;
}

static void native_stop(struct agent_vcpu *v)
{
	kill(-v->pid, SIGTERM);
}

static void native_kill(struct agent_vcpu *v)
{
	kill(-v->pid, SIGKILL);
}

/* The image must be an executable file in image_dir. */
static int native_check(struct agent *a, const Cellmon__VmSpec *s, char *err,
			size_t len)
{
	char path[1200];
	struct stat st;

	if (!cell_name_valid(s->image)) {
		snprintf(err, len, "invalid image name '%.64s'", s->image);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s/%s", a->cfg.image_dir, s->image);
	if (stat(path, &st) || !S_ISREG(st.st_mode) || access(path, X_OK)) {
		snprintf(err, len,
			 "image '%s' not found as an executable in %s",
			 s->image, a->cfg.image_dir);
		return -ENOENT;
	}
	return 0;
}

const struct agent_engine_ops agent_native_engine = {
	.id = CELLMON__ENGINE__ENGINE_NATIVE,
	.name = "native",
	/* 256 KiB, as for qemu VMs: a guest's arrays are runs of pages,
	 * and page-by-page interleave left prefetch and zero fault-around
	 * one page per fault (matmul on 2 nodes: 4,430 remote faults) */
	.stripe_pages = 64,
	.check = native_check,
	.start = native_start,
	.stop = native_stop,
	.kill = native_kill,
};
