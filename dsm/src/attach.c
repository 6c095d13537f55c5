/*
 * The client side of the hand-off (handoff.c has the node's) and the
 * userfaultfd set-up both sides share: opening a uffd that traps
 * kernel-mode faults too, and registering a shmem mapping for missing,
 * minor and write-protect faults. No logging and no libevent: this file
 * is also linked, alone, into the QEMU preload library
 * (node-agent/qemu_preload.c), so errors come back as -errno and text.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "attach.h"
#include "dsm/dsm.h"

/* Newer than Debian 12's kernel headers; the running kernel has them. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

#define NEED_FEATURES                                                 \
	(UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
	 UFFD_FEATURE_WP_UNPOPULATED)

static int uffd_device = -1; /* dsm_attach_uffd_device */

void dsm_attach_uffd_device(int fd)
{
	uffd_device = fd;
}

int dsm__uffd_open(char *err, size_t errlen)
{
	struct uffdio_api api = {.api = UFFD_API, .features = NEED_FEATURES};
	int dev, fd;

	/* Through the device (its permission decides), else the syscall,
	 * never with UFFD_USER_MODE_ONLY: KVM faults in kernel mode. */
	if (uffd_device >= 0) {
		fd = ioctl(uffd_device, USERFAULTFD_IOC_NEW,
			   O_CLOEXEC | O_NONBLOCK);
	} else if ((dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)) >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	} else {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	}
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen,
			 "userfaultfd that traps kernel-mode faults is not "
			 "available (%s): run as root, give access to "
			 "/dev/userfaultfd, or set "
			 "vm.unprivileged_userfaultfd=1",
			 strerror(e));
		return -(e == EPERM || e == EACCES ? EPERM : e);
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = errno;

		snprintf(err, errlen,
			 "userfaultfd lacks MINOR_SHMEM, WP_HUGETLBFS_SHMEM or "
			 "WP_UNPOPULATED (kernel 6.4 or later needed): %s",
			 strerror(e));
		close(fd);
		return -ENOTSUP;
	}
	return fd;
}

int dsm__uffd_register(int uffd, void *base, size_t len)
{
	struct uffdio_register reg = {
		.range = {(unsigned long)base, len},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	return 0;
}

int dsm__send_fd(int sock, const void *buf, size_t len, int fd)
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

int dsm__recv_fd(int sock, void *buf, size_t len, int *fd)
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

/* Connects to the node's hand-off socket and asks for region id: the
 * socket, the region's memfd and its size. */
static int ask(const char *unix_path, uint64_t id, int *sockp, int *memfd,
	       size_t *len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct dsm__attach_req q = {DSM__ATTACH_MAGIC, id};
	struct dsm__attach_reply rep;
	int sock, rc;

	*memfd = -1;
	if (strlen(unix_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, unix_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	rc = connect(sock, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	if (!rc)
		rc = dsm__send_fd(sock, &q, sizeof(q), -1);
	if (!rc)
		rc = dsm__recv_fd(sock, &rep, sizeof(rep), memfd);
	if (!rc && rep.status)
		rc = rep.status;
	if (!rc && *memfd < 0)
		rc = -EPROTO;
	if (rc) {
		if (*memfd >= 0)
			close(*memfd);
		*memfd = -1;
		close(sock);
		return rc;
	}
	*len = rep.value;
	*sockp = sock;
	return 0;
}

/* Registers map (len bytes) with a new uffd, hands the uffd to the node
 * and waits for its answer. */
static int hand_over(int sock, void *map, size_t len, char *err, size_t errlen)
{
	struct dsm__attach_reply rep;
	uint64_t b = (uint64_t)(uintptr_t)map;
	int uffd = dsm__uffd_open(err, errlen), rc;

	if (uffd < 0)
		return uffd;
	rc = dsm__uffd_register(uffd, map, len);
	if (rc)
		snprintf(err, errlen,
			 "cannot register %zu bytes at %p with "
			 "userfaultfd: %s",
			 len, map, strerror(-rc));
	if (!rc)
		rc = dsm__send_fd(sock, &b, sizeof(b), uffd);
	if (!rc)
		rc = dsm__recv_fd(sock, &rep, sizeof(rep), NULL);
	if (!rc)
		rc = rep.status;
	close(uffd);
	return rc;
}

int dsm_attach(const char *unix_path, uint64_t id, void *addr, void **base,
	       size_t *size, int *sockp)
{
	char err[256];
	size_t len = 0;
	void *map;
	int sock, memfd, rc = ask(unix_path, id, &sock, &memfd, &len);

	if (rc)
		return rc;
	map = mmap(addr, len, PROT_READ | PROT_WRITE,
		   MAP_SHARED | (addr ? MAP_FIXED_NOREPLACE : 0), memfd, 0);
	rc = map == MAP_FAILED ? -errno
			       : hand_over(sock, map, len, err, sizeof(err));
	close(memfd);
	if (rc) {
		if (map != MAP_FAILED)
			munmap(map, len);
		close(sock);
		return rc;
	}
	*base = map;
	*size = len;
	*sockp = sock;
	return 0;
}

int dsm_attach_mapping(const char *unix_path, uint64_t id, void *map,
		       size_t len, int *sockp, char *err, size_t errlen)
{
	size_t size = 0;
	int sock, memfd, rc = ask(unix_path, id, &sock, &memfd, &size);

	if (rc) {
		snprintf(err, errlen, "hand-off of region %llu at %s: %s",
			 (unsigned long long)id, unix_path, strerror(-rc));
		return rc;
	}
	close(memfd); /* the caller mapped its own fd of the same file */
	if (len != size) {
		snprintf(err, errlen,
			 "the mapping is %zu bytes, region %llu is %zu", len,
			 (unsigned long long)id, size);
		rc = -EINVAL;
	} else {
		rc = hand_over(sock, map, len, err, errlen);
	}
	if (rc) {
		close(sock);
		return rc;
	}
	*sockp = sock;
	return 0;
}
