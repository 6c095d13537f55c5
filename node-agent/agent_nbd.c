/*
 * A qemu VM's disks, served to its QEMU over NBD on a unix socket in the
 * run's directory (disks.sock, mode 0600): export "disk<N>" is the VM's
 * disk N as the agent opened it at PREPARE (agent_disk.c), so every read
 * of a base or frozen block goes through the node's shared cache and the
 * disk server is asked once per node (Disco's shared buffer cache), and
 * a FLUSH the guest's kernel sends is answered once the disk server has
 * made the data durable (agent_disk_flush); FUA is a write then a flush.
 * Requests are 4 KiB aligned (announced as the minimum block size; QEMU
 * aligns smaller guest requests itself).
 *
 * Threads: one accepting per VM, one per connection (QEMU opens one per
 * drive); agent_nbd_stop() shuts the sockets and joins them all before
 * the disks close.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "agent_disk.h"
#include "cell/log.h"
#include "nbd.h"

#define MOD	 "agent"
#define MAXCONNS 64

struct agent_nbd {
	struct agent_vm *vm;
	int listen_fd;
	pthread_t accept_thread;
	pthread_mutex_t mu;
	int conn_fd[MAXCONNS];
	pthread_t conn_thread[MAXCONNS];
	bool conn_used[MAXCONNS];
	bool stopping;
	struct nbd_conn_stats st;
};

struct conn_arg {
	struct agent_nbd *n;
	int slot;
};

static uint64_t op_size(void *d)
{
	return agent_disk_size(d);
}

static bool op_readonly(void *d)
{
	return agent_disk_readonly(d);
}

static int op_read(void *d, void *buf, uint64_t off, uint32_t len)
{
	return agent_disk_read(d, off, buf, len);
}

static int op_write(void *d, const void *buf, uint64_t off, uint32_t len,
		    bool fua)
{
	int rc = agent_disk_write(d, off, buf, len);

	return rc || !fua ? rc : agent_disk_flush(d);
}

static int op_flush(void *d)
{
	return agent_disk_flush(d);
}

static const struct nbd_disk_ops disk_ops = {
	.size = op_size,
	.readonly = op_readonly,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.zero = NULL, /* no TRIM: blocks below are shared */
	.min_block = AGENT_BLOCK,
};

static void *get(void *ctx, const char *name, char *err, size_t errlen)
{
	struct agent_vm *vm = ctx;
	char *end;
	unsigned long i;

	if (strncmp(name, "disk", 4) != 0 ||
	    (i = strtoul(name + 4, &end, 10), *end) || i >= vm->ndisks) {
		snprintf(err, errlen,
			 "vm %s has no export '%.80s' (disk0..%zu)", vm->name,
			 name, vm->ndisks ? vm->ndisks - 1 : 0);
		return NULL;
	}
	return vm->disks[i];
}

static void put(void *ctx, void *d)
{
	(void)ctx;
	(void)d; /* the VM owns its disks */
}

static int list(void *ctx, char ***names, size_t *count)
{
	struct agent_vm *vm = ctx;
	char **v = calloc(vm->ndisks + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < vm->ndisks; i++)
		if (asprintf(&v[i], "disk%zu", i) < 0)
			v[i] = NULL;
	*names = v;
	*count = vm->ndisks;
	return 0;
}

static void *serve(void *arg)
{
	struct conn_arg *ca = arg;
	struct agent_nbd *n = ca->n;
	struct nbd_exports ex = {.ops = &disk_ops,
				 .get = get,
				 .put = put,
				 .list = list,
				 .ctx = n->vm};
	char err[300];
	int fd = n->conn_fd[ca->slot];

	free(ca);
	if (nbd_serve(fd, &ex, &n->st, err, sizeof(err)) && !n->stopping)
		CELL_WARN(MOD, "vm %s: QEMU's disk connection ended: %s",
			  n->vm->name, err);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct agent_nbd *n = arg;
	int fd;

	while ((fd = accept4(n->listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 ||
	       errno == EINTR || errno == ECONNABORTED) {
		struct conn_arg *ca;
		int slot = -1;

		if (fd < 0)
			continue;
		pthread_mutex_lock(&n->mu);
		for (int i = 0; i < MAXCONNS && slot < 0 && !n->stopping; i++)
			if (!n->conn_used[i])
				slot = i;
		ca = slot >= 0 ? malloc(sizeof(*ca)) : NULL;
		if (ca) {
			*ca = (struct conn_arg){n, slot};
			n->conn_fd[slot] = fd;
			n->conn_used[slot] =
				pthread_create(&n->conn_thread[slot], NULL,
					       serve, ca) == 0;
			if (!n->conn_used[slot])
				free(ca);
		}
		if (!ca || !n->conn_used[slot])
			close(fd);
		pthread_mutex_unlock(&n->mu);
	}
	return NULL;
}

void agent_nbd_path(const struct agent_vm *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/disks.sock", vm->dir);
}

int agent_nbd_start(struct agent_vm *vm, char *err, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct agent_nbd *n;
	char path[1200];

	if (!vm->ndisks || vm->nbd)
		return 0;
	agent_nbd_path(vm, path, sizeof(path));
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, len, "disk socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->vm = vm;
	pthread_mutex_init(&n->mu, NULL);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	n->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (n->listen_fd < 0 ||
	    bind(n->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    chmod(path, 0600) || listen(n->listen_fd, 8) ||
	    pthread_create(&n->accept_thread, NULL, accept_loop, n)) {
		int e = errno;

		snprintf(err, len, "cannot serve the disks on %s: %s", path,
			 strerror(e));
		if (n->listen_fd >= 0)
			close(n->listen_fd);
		pthread_mutex_destroy(&n->mu);
		free(n);
		return -e;
	}
	vm->nbd = n;
	return 0;
}

void agent_nbd_stop(struct agent_vm *vm)
{
	struct agent_nbd *n = vm->nbd;
	char path[1200];

	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = true;
	for (int i = 0; i < MAXCONNS; i++)
		if (n->conn_used[i])
			shutdown(n->conn_fd[i], SHUT_RDWR);
	pthread_mutex_unlock(&n->mu);
	shutdown(n->listen_fd, SHUT_RDWR);
	pthread_join(n->accept_thread, NULL);
	for (int i = 0; i < MAXCONNS; i++)
		if (n->conn_used[i]) {
			pthread_join(n->conn_thread[i], NULL);
			close(n->conn_fd[i]);
		}
	close(n->listen_fd);
	agent_nbd_path(vm, path, sizeof(path));
	unlink(path);
	CELL_INFO(MOD,
		  "vm %s: disks served to QEMU: %llu requests, %llu "
		  "bytes read, %llu written",
		  vm->name, (unsigned long long)n->st.requests,
		  (unsigned long long)n->st.bytes_read,
		  (unsigned long long)n->st.bytes_written);
	pthread_mutex_destroy(&n->mu);
	free(n);
	vm->nbd = NULL;
}
