/*
 * The engines this agent can run a VM on, as a table keyed by the spec's
 * Engine value (vm.proto). agent_vm.c looks a VM's engine up once at
 * PREPARE and keeps the ops on the VM; nothing else names an engine. A
 * new engine is an ops struct (agent.h) and a line here.
 */
#define _GNU_SOURCE /* close_range */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "agent_confine.h"
#include "cell/clock.h"

static const struct agent_engine_ops *const engines[] = {
	&agent_native_engine,
	&agent_qemu_engine,
};

const struct agent_engine_ops *agent_engine_find(Cellmon__Engine e, char *err,
						 size_t len)
{
	size_t off = 0, n = sizeof(engines) / sizeof(engines[0]);

	for (size_t i = 0; i < n; i++)
		if (engines[i]->id == e)
			return engines[i];
	off = (size_t)snprintf(err, len, "engine %s (%d) is not available; ",
			       cellproto_name(&cellproto_engines, (int)e),
			       (int)e);
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(err + off, len - off, "%s%s",
					i ? ", " : "this agent has ",
					engines[i]->name);
	return NULL;
}

static int by_name(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The images: the entries of image_dir whose names follow the name rule
 * and that an engine can run: executable regular files (native) and
 * directories with a vmlinuz and an initrd.img (qemu). Unknown when the
 * directory cannot be read or holds more than AGENT_IMAGES_MAX. */
static void scan_images(struct agent *a)
{
	DIR *d = opendir(a->cfg.image_dir);
	struct dirent *de;
	size_t n = 0;
	bool over = false;

	a->images_known = false;
	a->nimages = 0;
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[2200];
		struct stat st;

		if (!cell_name_valid(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", a->cfg.image_dir,
			 de->d_name);
		if (stat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			size_t end = strlen(path);
			bool whole;

			strncat(path, "/vmlinuz", sizeof(path) - end - 1);
			whole = access(path, R_OK) == 0;
			path[end] = '\0';
			strncat(path, "/initrd.img", sizeof(path) - end - 1);
			if (!whole || access(path, R_OK))
				continue;
		} else if (!S_ISREG(st.st_mode) || access(path, X_OK)) {
			continue;
		}
		if (n == AGENT_IMAGES_MAX) {
			over = true;
			break;
		}
		memcpy(a->images[n], de->d_name, strlen(de->d_name) + 1);
		a->image_ptr[n] = a->images[n];
		n++;
	}
	closedir(d);
	if (over)
		return;
	qsort(a->image_ptr, n, sizeof(a->image_ptr[0]), by_name);
	a->nimages = n;
	a->images_known = true;
}

void agent_capacity(struct agent *a, Cellmon__Capacity *cap)
{
	uint64_t now = cell_now_ms();

	if (!a->images_scanned_ms || now - a->images_scanned_ms >= 1000) {
		scan_images(a);
		a->images_scanned_ms = now;
	}
	cap->cpus = a->cpus;
	cap->memory_mb = a->memory_mb;
	cap->images = a->image_ptr;
	cap->n_images = a->nimages;
	cap->images_known = a->images_known;
	cap->qemu_accel = (char *)agent_qemu_accel(a);
}

void agent_child_exec(int go, pid_t parent, const int *fds, int nfds,
		      long max_files, const char *dir, const char *path,
		      char **argv, char **envp,
		      const struct agent_confine *conf)
{
	struct rlimit core = {0, 0},
		      nofile = {(rlim_t)max_files, (rlim_t)max_files};
	int moved[8], devnull;
	char b;

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent || read(go, &b, 1) != 1 || nfds > 8)
		_exit(126);
	/* Out of the way first: the targets 1.. may be any of them now. */
	for (int i = 0; i < nfds; i++)
		if ((moved[i] = fcntl(fds[i], F_DUPFD, 100)) < 0)
			_exit(126);
	devnull = open("/dev/null", O_RDONLY);
	if (devnull < 0 || dup2(devnull, 0) < 0)
		_exit(126);
	for (int i = 0; i < nfds; i++)
		if (dup2(moved[i], i + 1) < 0)
			_exit(126);
	close_range((unsigned)nfds + 1, ~0u, 0);
	setrlimit(RLIMIT_CORE, &core);
	if (max_files)
		setrlimit(RLIMIT_NOFILE, &nofile);
	if (conf && conf->on) {
		/* in its own root, from /vm */
		if (agent_confine_child(conf, parent))
			_exit(126);
		path = "/image";
	} else if (chdir(dir)) {
		_exit(126);
	}
	execve(path, argv, envp);
	_exit(127);
}
