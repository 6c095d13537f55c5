/*
 * Internal to libdsm: the hand-off's wire structs and the helpers both
 * of its sides use (attach.c). See handoff.c for the exchange.
 */
#ifndef DSM_ATTACH_H
#define DSM_ATTACH_H

#include <stddef.h>
#include <stdint.h>

#define DSM__ATTACH_MAGIC "DSMATTCH"

struct dsm__attach_req {
	char magic[8];
	uint64_t region;
};

struct dsm__attach_reply {
	int32_t status;
	uint32_t pad;
	uint64_t value;
};

/* One message of len bytes with fd (-1: none) attached. 0 or -EIO. */
int dsm__send_fd(int sock, const void *buf, size_t len, int fd);
/* One message of exactly len bytes; *fd (if fd) the one attached or -1. */
int dsm__recv_fd(int sock, void *buf, size_t len, int *fd);
/* A uffd that traps kernel-mode faults too, or -errno with err set. */
int dsm__uffd_open(char *err, size_t errlen);
/* Registers a shmem mapping for missing, minor and WP faults. */
int dsm__uffd_register(int uffd, void *base, size_t len);

#endif
