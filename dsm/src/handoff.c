/*
 * Cross-process access to a region: the node listens on a unix socket.
 *
 *   client -> node   "DSMATTCH" + region id (u64)
 *   node -> client   status (i32) + size (u64), and the memfd (SCM_RIGHTS)
 *   client           maps the memfd, opens a uffd, registers the mapping
 *   client -> node   base address (u64), and the uffd (SCM_RIGHTS)
 *   node -> client   status (i32)
 *
 * The exchange runs on a hand-off thread of its own, so a slow or hostile
 * client never holds up the node thread that serves faults.
 *
 * From then on the node resolves that process's faults through the uffd,
 * exactly as for its own mapping (dsm__map_add). The client keeps the
 * socket open; when it closes (the process exits, even mid-fault) the
 * node logs it, drops the mapping and carries on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cell/log.h"
#include "node_int.h"

#define MOD "dsm"

static void client_gone_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dsm_mapping *m = arg;
	struct dsm_region *r = m->region;
	char b;

	(void)what;
	if (recv(fd, &b, 1, MSG_DONTWAIT) == 0 || errno != EAGAIN) {
		CELL_INFO(MOD, "process %d detached from region %llu",
			  (int)m->pid, (unsigned long long)r->id);
		dsm__map_remove(r, (int)(m - r->maps));
	}
}

struct lookup {
	uint64_t id;
	int memfd; /* a dup, owned by the hand-off thread */
	size_t size;
	uint8_t *base;
	int uffd, sock;
	pid_t pid;
};

static int lookup_cmd(struct dsm_node *n, void *arg)
{
	struct lookup *l = arg;
	struct dsm_region *r = dsm__region_find(n, l->id);

	if (!r)
		return -ENOENT;
	l->memfd = fcntl(r->memfd, F_DUPFD_CLOEXEC, 0);
	l->size = r->size;
	return l->memfd < 0 ? -errno : 0;
}

/* On the node thread: the mapping starts taking faults. */
static int add_cmd(struct dsm_node *n, void *arg)
{
	struct lookup *l = arg;
	struct dsm_region *r = dsm__region_find(n, l->id);
	int slot;

	if (!r)
		return -ENOENT;
	slot = dsm__map_add(r, l->base, l->uffd, l->sock, l->pid);
	if (slot < 0)
		return slot;
	r->maps[slot].sock_ev =
		event_new(n->base, l->sock, EV_READ | EV_PERSIST,
			  client_gone_cb, &r->maps[slot]);
	event_add(r->maps[slot].sock_ev, NULL);
	CELL_INFO(MOD, "process %d attached to region %llu at %p", (int)l->pid,
		  (unsigned long long)r->id, (void *)l->base);
	return 0;
}

/*
 * One attach, on the hand-off thread: the exchange blocks (a client gets
 * 2 s per step), so it must not run on the node thread, which serves
 * faults. Only the region lookup and the final registration run there.
 */
static void attach(struct dsm_node *n, int sock)
{
	struct timeval tv = {2, 0};
	struct lookup l = {.memfd = -1, .uffd = -1, .sock = sock};
	struct dsm__attach_req q;
	struct dsm__attach_reply rep = {0};
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	uint64_t base;
	int rc;

	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	l.pid = getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl)
			? 0
			: cred.pid;
	if (dsm__recv_fd(sock, &q, sizeof(q), NULL) ||
	    memcmp(q.magic, DSM__ATTACH_MAGIC, 8))
		goto drop;
	l.id = q.region;
	rep.status = n->handoff_check ? n->handoff_check((int)l.pid, l.id,
							 n->handoff_check_arg)
				      : 0;
	if (rep.status)
		CELL_LOG_RL(CELL_LOG_WARN, MOD,
			    "hand-off of region %llu to pid %d refused: %s",
			    (unsigned long long)l.id, (int)l.pid,
			    strerror(-rep.status));
	else
		rep.status = dsm__run_on_node(n, lookup_cmd, &l);
	rep.value = l.size;
	rc = dsm__send_fd(sock, &rep, sizeof(rep), l.memfd);
	if (l.memfd >= 0)
		close(l.memfd);
	if (rc || rep.status)
		goto drop;
	if (dsm__recv_fd(sock, &base, sizeof(base), &l.uffd) || l.uffd < 0)
		goto drop;
	l.base = (uint8_t *)(uintptr_t)base;
	rep.status = dsm__run_on_node(n, add_cmd, &l);
	dsm__send_fd(sock, &rep, sizeof(rep), -1);
	if (rep.status)
		goto drop;
	return; /* the mapping owns sock and uffd now */
drop:
	CELL_LOG_RL(CELL_LOG_WARN, MOD, "hand-off from pid %d failed",
		    (int)l.pid);
	if (l.uffd >= 0)
		close(l.uffd);
	close(sock);
}

static void *handoff_main(void *arg)
{
	struct dsm_node *n = arg;
	int sock;

	/* Ends when dsm__handoff_close shuts the listening socket down. */
	while ((sock = accept4(n->handoff_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 ||
	       errno == EINTR || errno == ECONNABORTED) {
		if (sock >= 0)
			attach(n, sock);
	}
	return NULL;
}

/* Called on an API thread, never the node thread. */
int dsm__handoff_listen(struct dsm_node *n, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (n->handoff_fd >= 0)
		return -EBUSY;
	strcpy(sa.sun_path, path);
	unlink(path);
	n->handoff_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (n->handoff_fd < 0)
		return -errno;
	if (bind(n->handoff_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(n->handoff_fd, 16)) {
		rc = -errno;
		goto err;
	}
	snprintf(n->handoff_path, sizeof(n->handoff_path), "%s", path);
	rc = -pthread_create(&n->handoff_thread, NULL, handoff_main, n);
	if (!rc)
		return 0;
err:
	close(n->handoff_fd);
	n->handoff_fd = -1;
	return rc;
}

/* Before the node thread stops: the hand-off thread may be waiting on
 * it. An attach in progress finishes within its timeouts. */
void dsm__handoff_close(struct dsm_node *n)
{
	if (n->handoff_fd < 0)
		return;
	shutdown(n->handoff_fd, SHUT_RDWR);
	pthread_join(n->handoff_thread, NULL);
	close(n->handoff_fd);
	unlink(n->handoff_path);
	n->handoff_fd = -1;
}

void dsm_node_set_handoff_check(struct dsm_node *n, dsm_handoff_check_fn fn,
				void *arg)
{
	n->handoff_check = fn;
	n->handoff_check_arg = arg;
}

int dsm_node_serve_handoff(struct dsm_node *n, const char *unix_path)
{
	if (pthread_equal(pthread_self(), n->thread))
		return -EDEADLK;
	return dsm__handoff_listen(n, unix_path);
}
