/*
 * Native guests confined (guest_confine, on by default): each vCPU
 * process runs
 *
 *   - as a user of its VM's own, guest_uid_base + (VM id % 65536), with
 *     no capability and no supplementary group, which owns no file and
 *     no other process: it cannot signal the agent or another VM's
 *     vCPUs (EPERM);
 *   - in a mount namespace whose root is a small read-only tmpfs holding
 *     only the system's libraries (read-only), its image (/image), its
 *     VM directory (/vm) and the DSM hand-off socket (/run/dsm.sock): no
 *     other host file exists for it (and it cannot mount: no
 *     capability, and seccomp); its /proc shows its uid's processes
 *     alone (hidepid=invisible, subset=pid);
 *   - in a network namespace of its own with nothing in it (not even
 *     loopback up): no TCP or UDP port of the host or the network is
 *     reachable; IPC and UTS namespaces of its own too;
 *   - under rlimits (no core, 64 open files, 256 processes of its user,
 *     files it writes at most 1 GiB) and no_new_privs, with a seccomp
 *     filter that refuses (EPERM) what a guest has no business doing:
 *     mounting, namespaces, ptrace and other processes' memory, kernel
 *     modules and keys, BPF, perf, reboot and clocks, and sockets other
 *     than AF_UNIX.
 *
 * The agent must be root for this (it gives the uid). userfaultfd from a
 * process without CAP_SYS_PTRACE works only through /dev/userfaultfd,
 * whose permission is checked at open: the agent opens it and the guest
 * gets the descriptor (CELLMON_UFFD_FD), as it gets the service socket
 * and the lease page. The hand-off socket is made 0666 (the node's
 * hand-off check admits only this VM's vCPU pids, whatever the uid).
 *
 * Everything is computed before fork (confine_prepare); the child only
 * makes system calls, async-signal-safe, and on a failure writes which
 * step failed to its console and exits 126.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include "agent.h"
#include "agent_confine.h"
#include "cell/log.h"

/* The system's library directories, as they are on the host. */
static const char *const lib_dirs[] = {"/lib", "/lib64", "/usr/lib",
				       "/usr/lib64"};

/* The MS_* flags a bind of path must keep (a user namespace may not
 * drop a locked flag of the mount it binds) plus read-only. */
static unsigned long ro_flags(const char *path)
{
	struct statvfs v;
	unsigned long f =
		MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;

	if (statvfs(path, &v))
		return f;
	if (v.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (v.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (v.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (v.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int add_mount(struct agent_confine *c, const char *src, const char *dst,
		     bool dir, bool ro)
{
	struct confine_mount *m;

	if (c->nmounts >= CONFINE_MOUNTS)
		return -ENOSPC;
	m = &c->mounts[c->nmounts++];
	snprintf(m->src, sizeof(m->src), "%s", src);
	snprintf(m->dst, sizeof(m->dst), "%s%s", c->root, dst);
	m->dir = dir;
	m->ro_flags = ro ? ro_flags(src) : 0;
	return 0;
}

int agent_confine_prepare(struct agent *a, const struct agent_vm *vm,
			  const char *image, const char *handoff,
			  struct agent_confine *c, char *err, size_t len)
{
	uint64_t id = agent_region_vm_id(vm->region_id);
	struct stat st;

	memset(c, 0, sizeof(*c));
	c->uffd_dev = -1;
	if (!a->cfg.guest_confine)
		return 0;
	c->on = true;
	c->uid = (uid_t)(a->cfg.guest_uid_base + (id % 65536));
	c->gid = (gid_t)c->uid;
	snprintf(c->root, sizeof(c->root), "%s/.root", vm->dir);
	if (mkdir(c->root, 0700) && errno != EEXIST) {
		int e = errno;

		snprintf(err, len, "cannot make %s: %s", c->root, strerror(e));
		return -e;
	}
	for (size_t i = 0; i < sizeof(lib_dirs) / sizeof(lib_dirs[0]); i++) {
		if (lstat(lib_dirs[i], &st))
			continue;
		if (S_ISLNK(st.st_mode)) {
			struct confine_link *l = &c->links[c->nlinks++];
			ssize_t n = readlink(lib_dirs[i], l->target,
					     sizeof(l->target) - 1);

			l->target[n > 0 ? n : 0] = '\0';
			snprintf(l->path, sizeof(l->path), "%s%s", c->root,
				 lib_dirs[i]);
		} else if (S_ISDIR(st.st_mode)) {
			add_mount(c, lib_dirs[i], lib_dirs[i], true, true);
		}
	}
	if (!stat("/etc/ld.so.cache", &st))
		add_mount(c, "/etc/ld.so.cache", "/etc/ld.so.cache", false,
			  true);
	add_mount(c, image, "/image", false, true);
	add_mount(c, vm->dir, "/vm", true, false);
	if (add_mount(c, handoff, "/run/dsm.sock", false, false)) {
		snprintf(err, len, "guest_confine: too many mounts");
		return -ENOSPC;
	}
	snprintf(c->old, sizeof(c->old), "%s/.old", c->root);
	snprintf(c->usr, sizeof(c->usr), "%s/usr", c->root);
	snprintf(c->etc, sizeof(c->etc), "%s/etc", c->root);
	snprintf(c->run, sizeof(c->run), "%s/run", c->root);
	snprintf(c->proc, sizeof(c->proc), "%s/proc", c->root);
	c->uffd_dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (c->uffd_dev < 0) {
		int e = errno;

		snprintf(err, len,
			 "guest_confine needs /dev/userfaultfd (a guest "
			 "without privileges can make a userfaultfd only "
			 "through it): %s",
			 strerror(e));
		return -e;
	}
	return 0;
}

void agent_confine_release(struct agent_confine *c)
{
	if (c->uffd_dev >= 0)
		close(c->uffd_dev);
	c->uffd_dev = -1;
}

/* ---- in the child: system calls only ---- */

static void say(const char *what)
{
	char num[12];
	int e = errno, n = sizeof(num);

	num[--n] = '\n';
	do
		num[--n] = (char)('0' + e % 10);
	while ((e /= 10) && n > 0);
	(void)!write(2, "cellmon-agent: guest confinement: ", 34);
	(void)!write(2, what, strlen(what));
	(void)!write(2, " failed, errno ", 15);
	(void)!write(2, num + n, sizeof(num) - (size_t)n);
}

/* An empty file or directory to mount on. */
static int mount_point(const struct confine_mount *m)
{
	int fd;

	if (m->dir)
		return mkdir(m->dst, 0755) && errno != EEXIST ? -1 : 0;
	fd = open(m->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

#define DENY(nr)                                         \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), \
		BPF_STMT(BPF_RET | BPF_K,                \
			 SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

static int seccomp_install(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		/* the x32 ABI's numbers: not this program's */
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		DENY(__NR_mount),
		DENY(__NR_umount2),
		DENY(__NR_pivot_root),
		DENY(__NR_chroot),
		DENY(__NR_unshare),
		DENY(__NR_setns),
		DENY(__NR_ptrace),
		DENY(__NR_process_vm_readv),
		DENY(__NR_process_vm_writev),
		DENY(__NR_kcmp),
		DENY(__NR_init_module),
		DENY(__NR_finit_module),
		DENY(__NR_delete_module),
		DENY(__NR_kexec_load),
		DENY(__NR_kexec_file_load),
		DENY(__NR_bpf),
		DENY(__NR_perf_event_open),
		DENY(__NR_keyctl),
		DENY(__NR_add_key),
		DENY(__NR_request_key),
		DENY(__NR_reboot),
		DENY(__NR_swapon),
		DENY(__NR_swapoff),
		DENY(__NR_settimeofday),
		DENY(__NR_clock_settime),
		DENY(__NR_clock_adjtime),
		DENY(__NR_adjtimex),
		DENY(__NR_acct),
		DENY(__NR_open_by_handle_at),
		DENY(__NR_name_to_handle_at),
		DENY(__NR_fsopen),
		DENY(__NR_fsmount),
		DENY(__NR_move_mount),
		DENY(__NR_open_tree),
		DENY(__NR_mount_setattr),
		DENY(__NR_userfaultfd),	   /* through /dev/userfaultfd only */
		DENY(__NR_io_uring_setup), /* sockets of any family */
		/* socket(domain, ...): AF_UNIX alone (the hand-off) */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 1, 0),
		BPF_STMT(BPF_RET | BPF_K,
			 SECCOMP_RET_ERRNO | (EAFNOSUPPORT & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {(unsigned short)(sizeof(f) / sizeof(f[0])),
				  f};

	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int agent_confine_child(const struct agent_confine *c, pid_t parent)
{
	struct rlimit nproc = {256, 256}, fsize = {1ul << 30, 1ul << 30};

	/* the namespaces and the root, as root (the paths to the VM
	 * directory and the image need not be open to the guest's uid) */
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS))
		return say("mount, network, IPC and UTS namespaces"), -1;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", c->root, "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=64k,mode=0755"))
		return say("the guest's root"), -1;
	if (mkdir(c->old, 0700) || mkdir(c->usr, 0755) || mkdir(c->etc, 0755) ||
	    mkdir(c->run, 0755) || mkdir(c->proc, 0555))
		return say("the guest's root's directories"), -1;
	/* /proc of its own processes alone (its uid's; no /proc/sys and
	 * the like): what the C library and sanitizers read of themselves */
	if (mount("proc", c->proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "hidepid=invisible,subset=pid"))
		return say("the guest's /proc"), -1;
	for (int i = 0; i < c->nlinks; i++)
		if (symlink(c->links[i].target, c->links[i].path))
			return say("a library link"), -1;
	for (int i = 0; i < c->nmounts; i++) {
		const struct confine_mount *m = &c->mounts[i];

		if (mount_point(m) ||
		    mount(m->src, m->dst, NULL, MS_BIND | MS_REC, NULL) ||
		    (m->ro_flags &&
		     mount(NULL, m->dst, NULL, m->ro_flags, NULL)))
			return say(m->dst), -1;
	}
	if (syscall(SYS_pivot_root, c->root, c->old) || chdir("/") ||
	    umount2("/.old", MNT_DETACH) || rmdir("/.old"))
		return say("entering the guest's root"), -1;
	if (mount(NULL, "/", NULL,
		  MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
		return say("the guest's root read-only"), -1;
	if (chdir("/vm"))
		return say("its VM directory"), -1;
	/* then the VM's uid, with no capability left */
	if (setgroups(0, NULL) || setresgid(c->gid, c->gid, c->gid) ||
	    setresuid(c->uid, c->uid, c->uid))
		return say("dropping to the VM's uid"), -1;
	/* a change of uid clears the parent-death signal: set it back,
	 * then check the agent is still there */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		return say("keeping the parent-death signal"), -1;
	if (setrlimit(RLIMIT_NPROC, &nproc) || setrlimit(RLIMIT_FSIZE, &fsize))
		return say("the guest's rlimits"), -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || seccomp_install())
		return say("the seccomp filter"), -1;
	return 0;
}

int agent_confine_probe(struct agent *a)
{
	struct agent_vm vm = {.region_id = 0};
	struct agent_confine c;
	char sock[1300], err[600];
	pid_t parent = getpid(), pid;
	int st = 0, fd;

	if (!a->cfg.guest_confine) {
		CELL_WARN("agent",
			  "guest_confine = false: native guests run as the "
			  "agent's user, with its view of the host and its "
			  "network");
		return 0;
	}
	if (geteuid() != 0) {
		CELL_ERROR("agent",
			   "guest_confine needs the agent to run as root (each "
			   "VM's guests get a uid of their own); set "
			   "guest_confine = false to run native guests as the "
			   "agent's user");
		return -1;
	}
	snprintf(vm.dir, sizeof(vm.dir), "%s/confine-probe", a->cfg.state_dir);
	snprintf(sock, sizeof(sock), "%s/sock", vm.dir);
	if ((mkdir(vm.dir, 0755) && errno != EEXIST) ||
	    (fd = open(sock, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		CELL_ERROR("agent", "cannot make %s: %s", vm.dir,
			   strerror(errno));
		return -1;
	}
	close(fd);
	if (agent_confine_prepare(a, &vm, sock, sock, &c, err, sizeof(err))) {
		CELL_ERROR("agent", "%s", err);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(agent_confine_child(&c, parent) ? 1 : 0);
	}
	agent_confine_release(&c);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st)) {
		CELL_ERROR("agent",
			   "cannot confine native guests on this host (the "
			   "line above says which step failed); set "
			   "guest_confine = false to run them unconfined");
		return -1;
	}
	CELL_INFO("agent",
		  "native guests confined: a uid of their VM's own from %lld, "
		  "mount, network, IPC and UTS namespaces, rlimits, "
		  "seccomp",
		  (long long)a->cfg.guest_uid_base);
	return 0;
}
