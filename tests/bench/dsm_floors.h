/*
 * The floors dsm-bench prints next to the DSM's figures: what this
 * machine does at best for each step of a fault, and the bare exchanges
 * (a read miss and an upgrade done by hand, with every step the protocol
 * cannot do without and nothing else), all measured in the same run.
 */
#ifndef CELLMON_DSM_FLOORS_H
#define CELLMON_DSM_FLOORS_H

#include <stdbool.h>
#include <stdint.h>

struct pct {
	double p50, p99; /* microseconds */
};

/* The median and 99th percentile of ns[0..n), a calloc()ed array of
 * nanoseconds, which it sorts and frees. */
struct pct percentiles(uint64_t *ns, int n);
uint64_t now_ns(void);
/* Exits with perror() when !ok: the benchmark cannot go on. */
void must(bool ok);
/* A userfaultfd through /dev/userfaultfd, else the syscall. */
int new_uffd(int flags);

/*
 * Where a simulated host runs. With pin_hosts set and two CPUs or more,
 * HOST_LOCAL (node 0 and its application thread, or a bare exchange's
 * client) goes on the first CPU the benchmark may use and HOST_REMOTE
 * (every other node, or the bare server) on the last, so two hosts never
 * share a CPU, as on a real cluster; HOST_ANY gives the calling thread
 * back every CPU it started with. Threads created later inherit it.
 */
enum host_cpu { HOST_ANY, HOST_LOCAL, HOST_REMOTE };
extern bool pin_hosts;
void pin_host(enum host_cpu where);
/* "cpu A and cpu B", or why nothing is pinned. */
const char *pin_desc(void);

/* 4 KiB request / 4 KiB response over loopback TCP, both ends polling. */
struct pct floor_tcp(int samples);
/* A read fault's two frames (48-byte request, 4144-byte page reply)
 * over loopback, both ends polling, plain and under mutual TLS 1.3
 * (cli, srv: the ends' credentials; OpenSSL's record layer as the DSM
 * uses it), in interleaved rounds: what TLS costs the bare exchange. */
struct cell_tls;
void floor_tls(int samples, struct cell_tls *cli, struct cell_tls *srv,
	       struct pct *plain, struct pct *tls);
/* A minor fault resolved by a polling handler with UFFDIO_CONTINUE; with
 * same_cpu, the handler runs on the faulting thread's CPU and yields
 * between polls, as a DSM node's thread does beside its vCPU on a host
 * of one CPU (the benchmark's node 0). */
struct pct floor_uffd(int samples, bool same_cpu);
/* UFFDIO_WRITEPROTECT of one page while the thread that wrote the pages
 * sleeps (!busy) or spins on the other CPU (busy). */
struct pct floor_wp(int samples, bool busy);
/* Pages/s one thread installs with UFFDIO_COPY alone. */
double floor_install(int pages);

enum bare_op {
	BARE_READ,    /* request, downgrade, page back, UFFDIO_CONTINUE */
	BARE_CLEAN,   /* the same from a server that never downgrades */
	BARE_UPGRADE, /* invalidate, punch, ack, write-protect lifted */
};

/* A read miss or a write upgrade with no DSM engine: see dsm_floors.c. */
struct pct floor_bare(int samples, enum bare_op op);

#endif
