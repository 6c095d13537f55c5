/*
 * Cross-process access to a region: the node listens on a unix socket.
 *
 *   client -> node   "DSMATTCH" + region id (u64)
 *   node -> client   status (i32) + size (u64), and the memfd (SCM_RIGHTS)
 *   client           maps the memfd, opens a uffd, registers the mapping
 *   client -> node   base address (u64), and the uffd (SCM_RIGHTS)
 *   node -> client   status (i32)
 *
 * From then on the node resolves that process's faults through the uffd,
 * exactly as for its own mapping (dsm__map_add). The client keeps the
 * socket open; when it closes (the process exits, even mid-fault) the
 * node logs it, drops the mapping and carries on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cell/log.h"
#include "node_int.h"

#define MOD   "dsm"
#define MAGIC "DSMATTCH"

struct req {
	char magic[8];
	uint64_t region;
};

struct reply {
	int32_t status;
	uint32_t pad;
	uint64_t value;
};

static int send_fd(int sock, const void *buf, size_t len, int fd)
{
	char ctl[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {(void *)buf, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;

	if (fd >= 0) {
		mh.msg_control = ctl;
		mh.msg_controllen = sizeof(ctl);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -EIO;
}

static int recv_fd(int sock, void *buf, size_t len, int *fd)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {buf, len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl,
			    .msg_controllen = sizeof(ctl)};
	struct cmsghdr *c;
	ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);

	if (fd)
		*fd = -1;
	if (r != (ssize_t)len)
		return r < 0 ? -errno : -EPROTO;
	for (c = CMSG_FIRSTHDR(&mh); c && fd; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}

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

/* One attach, synchronous: the client answers at once or is dropped. */
static void attach(struct dsm_node *n, int sock)
{
	struct timeval tv = {2, 0};
	struct req q;
	struct reply rep = {0};
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct dsm_region *r;
	uint64_t base;
	int uffd = -1, slot, rc;

	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &cl))
		cred.pid = 0;
	rc = recv_fd(sock, &q, sizeof(q), NULL);
	if (rc || memcmp(q.magic, MAGIC, 8) != 0)
		goto drop;
	r = dsm__region_find(n, q.region);
	rep.status = r ? 0 : -ENOENT;
	rep.value = r ? r->size : 0;
	if (send_fd(sock, &rep, sizeof(rep), r ? r->memfd : -1) || !r)
		goto drop;
	rc = recv_fd(sock, &base, sizeof(base), &uffd);
	if (rc || uffd < 0)
		goto drop;
	slot = dsm__map_add(r, (uint8_t *)(uintptr_t)base, uffd, sock,
			    cred.pid);
	rep.status = slot < 0 ? slot : 0;
	send_fd(sock, &rep, sizeof(rep), -1);
	if (slot < 0)
		goto drop;
	r->maps[slot].sock_ev = event_new(n->base, sock, EV_READ | EV_PERSIST,
					  client_gone_cb, &r->maps[slot]);
	event_add(r->maps[slot].sock_ev, NULL);
	CELL_INFO(MOD, "process %d attached to region %llu at %#llx",
		  (int)cred.pid, (unsigned long long)r->id,
		  (unsigned long long)base);
	return;
drop:
	CELL_LOG_RL(CELL_LOG_WARN, MOD, "hand-off from pid %d failed",
		    (int)cred.pid);
	if (uffd >= 0)
		close(uffd);
	close(sock);
}

static void handoff_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	int sock = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	(void)what;
	if (sock >= 0)
		attach(arg, sock);
	dsm__after_work(arg);
}

int dsm__handoff_listen(struct dsm_node *n, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

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
		int rc = -errno;

		close(n->handoff_fd);
		n->handoff_fd = -1;
		return rc;
	}
	snprintf(n->handoff_path, sizeof(n->handoff_path), "%s", path);
	n->ev_handoff = event_new(n->base, n->handoff_fd, EV_READ | EV_PERSIST,
				  handoff_accept_cb, n);
	event_add(n->ev_handoff, NULL);
	return 0;
}

void dsm__handoff_close(struct dsm_node *n)
{
	if (n->handoff_fd < 0)
		return;
	event_free(n->ev_handoff);
	close(n->handoff_fd);
	unlink(n->handoff_path);
	n->handoff_fd = -1;
}

static int handoff_cmd(struct dsm_node *n, void *arg)
{
	return dsm__handoff_listen(n, arg);
}

int dsm_node_serve_handoff(struct dsm_node *n, const char *unix_path)
{
	return dsm__run_on_node(n, handoff_cmd, (void *)unix_path);
}

int dsm_attach(const char *unix_path, uint64_t id, void *addr, void **base,
	       size_t *size, int *sockp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct req q = {MAGIC, id};
	struct reply rep;
	char err[256];
	uint64_t b;
	size_t len = 0;
	void *map = MAP_FAILED;
	int sock, memfd = -1, uffd = -1, rc;

	if (strlen(unix_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, unix_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		goto err;
	}
	rc = send_fd(sock, &q, sizeof(q), -1);
	if (!rc)
		rc = recv_fd(sock, &rep, sizeof(rep), &memfd);
	if (!rc && rep.status)
		rc = rep.status;
	if (rc || memfd < 0) {
		rc = rc ? rc : -EPROTO;
		goto err;
	}
	len = rep.value;
	map = mmap(addr, len, PROT_READ | PROT_WRITE,
		   MAP_SHARED | (addr ? MAP_FIXED_NOREPLACE : 0), memfd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto err;
	}
	uffd = dsm__uffd_open(err, sizeof(err));
	if (uffd < 0) {
		CELL_ERROR(MOD, "%s", err);
		rc = uffd;
		goto err;
	}
	rc = dsm__uffd_register(uffd, map, len);
	b = (uint64_t)(uintptr_t)map;
	if (!rc)
		rc = send_fd(sock, &b, sizeof(b), uffd);
	if (!rc)
		rc = recv_fd(sock, &rep, sizeof(rep), NULL);
	if (!rc)
		rc = rep.status;
	if (rc)
		goto err;
	close(uffd);
	close(memfd);
	*base = map;
	*size = len;
	*sockp = sock;
	return 0;
err:
	if (map != MAP_FAILED)
		munmap(map, len);
	if (uffd >= 0)
		close(uffd);
	if (memfd >= 0)
		close(memfd);
	close(sock);
	return rc;
}
