/*
 * libcellguest: the runtime of a native cellmon guest, Disco's
 * SPLASHOS-style library OS in miniature. A guest program is an ordinary
 * executable that calls cg_init() first; the agent starts one process per
 * vCPU and tells it, through the environment, who it is and where its
 * VM's memory lives:
 *
 *   CELLMON_VM, CELLMON_VCPU, CELLMON_NVCPUS   names and numbers
 *   CELLMON_REGION, CELLMON_HANDOFF            the DSM region and the
 *                                              agent's hand-off socket
 *   CELLMON_MEM_ADDR                           where to map it (hex)
 *   CELLMON_CTL_FD                             the agent's service socket
 *   CELLMON_NDISKS                             how many disks it has
 *   CELLMON_LEASE_FD                           the agent's lease page: a
 *                                              watchdog thread ends the
 *                                              process when the node's
 *                                              lease is over
 *
 * The guest's memory is the VM's DSM region mapped at the same address in
 * every vCPU, so pointers into it mean the same thing on every node.
 * Locks and barriers are requests to the agent (message based: nothing
 * spins on guest memory). Console output is stdout and stderr, which the
 * agent keeps. The exit status becomes the VM's state.
 *
 * Without CELLMON_REGION the program runs standalone: one vCPU, private
 * anonymous memory of CELLMON_MEM_MB (default 64) MB, locks and barriers
 * that return at once. Tests use this for reference results and benchmarks
 * for a plain-process baseline.
 *
 * Functions return 0 or -errno. One thread per vCPU process.
 */
#ifndef CELLGUEST_H
#define CELLGUEST_H

#include <stddef.h>
#include <stdint.h>

/* Attaches the VM's memory; prints why on stderr and returns -errno on
 * failure (the guest should then exit non-zero). */
int cg_init(void);

unsigned cg_vcpu(void);
unsigned cg_nvcpus(void);
const char *cg_vm_name(void);
/* The VM's memory (zeroed when the VM starts). */
void *cg_mem(void);
size_t cg_mem_size(void);
int cg_standalone(void);

/* Lock `id` (< 1024) of the VM; FIFO among waiters. */
int cg_lock(unsigned id);
int cg_unlock(unsigned id);
/* Returns when every vCPU of the VM has entered barrier `id` (< 1024);
 * the same id may be used again. */
int cg_barrier(unsigned id);

/*
 * Disks (vm create --disk), numbered in the order given. Offsets and
 * lengths are multiples of 4096. Reads of blocks that come from a base
 * image go through the node's shared cache; writes go to the disk server
 * and are durable after cg_disk_flush(). -EROFS on a read-only disk.
 */
unsigned cg_disk_count(void);
int64_t cg_disk_size(unsigned disk);
int cg_disk_read(unsigned disk, uint64_t off, void *buf, size_t len);
int cg_disk_write(unsigned disk, uint64_t off, const void *buf, size_t len);
int cg_disk_flush(unsigned disk);

/* 64-bit FNV-1a over len bytes, continuing from h (start with
 * CG_FNV_INIT): the checksum the shipped guests print. */
#define CG_FNV_INIT 0xcbf29ce484222325ull
uint64_t cg_fnv(uint64_t h, const void *p, size_t len);

#endif
