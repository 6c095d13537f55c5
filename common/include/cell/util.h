/*
 * Small helpers several programs share: name validation, atomic file
 * writes, and reading the host's capacity.
 */
#ifndef CELL_UTIL_H
#define CELL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define CELL_NAME_MAX 63

/* The one rule for every name a user gives: node ids, cells, VMs,
 * images and disks. Returns 1 when s follows it. */
#define CELL_NAME_RULE "1-63 of [A-Za-z0-9_.-], starting with a letter or digit"
int cell_name_valid(const char *s);

/* Writes data to path through a temporary file, fsync and rename, so a
 * reader sees the old or the new content, never a mix. 0 or -errno. */
int cell_write_file_atomic(const char *path, const void *data, size_t len);
/* The same with the file's mode (0600 for a private key). */
int cell_write_file_atomic_mode(const char *path, const void *data, size_t len,
				unsigned mode);

/* mkdir -p with mode 0755. 0 or -errno. */
int cell_mkdir_p(const char *path);

/* rm -r path (symbolic links are removed, not followed). 0 (also when
 * path does not exist) or the first -errno. */
int cell_remove_tree(const char *path);

/* Online CPUs and MemTotal/MemAvailable of this host; 0 when unknown. */
unsigned cell_host_cpus(void);
uint64_t cell_host_mem_total_mb(void);
uint64_t cell_host_mem_avail_mb(void);
double cell_host_load1(void);

#endif
