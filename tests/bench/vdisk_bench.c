/*
 * vdisk-bench: 4 KiB reads and writes through cellmon-vdiskd, through a
 * second cellmon-vdiskd that requires TLS (NBD_OPT_STARTTLS with the
 * certificates of a CA made for the run, the agents' client doing the
 * handshake) and, in the same run with the same client, through qemu-nbd
 * serving a qcow2 overlay over the same raw base. Prints ops/s of each
 * and the ratios (cellmon / qemu-nbd, TLS / plain); never passes or
 * fails on time.
 *
 *   vdisk-bench [--ops=N] [--rounds=N] [--size-mb=N]
 *
 * Patterns, each on a fresh disk over the base (so reads come from the
 * base until written): sequential read, random read, sequential write,
 * random write (each write phase ends with a flush, which is timed). The
 * client is synchronous (one request in flight), so the figures are
 * per-request cost. After a discarded warm-up, each round runs every
 * pattern on both servers, alternating which goes first; the medians
 * over rounds are printed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cell/ca.h"
#include "cell/tls.h"
#include "vdisk/nbdc.h"

#define B 4096u

static int ops = 4000, rounds = 3, size_mb = 64;
static char dir[256], base_path[300], base_id[80];

static void die(const char *what)
{
	fprintf(stderr, "vdisk-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Runs argv, waits; exit status (stdout to out if not NULL). */
static int run(char *const argv[], char *out, size_t outlen)
{
	int p[2];
	pid_t pid;
	int st;

	if (pipe(p))
		die("pipe");
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	if (out) {
		ssize_t n = read(p[0], out, outlen - 1);

		out[n > 0 ? n : 0] = 0;
	}
	close(p[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A server child that dies with us. */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &l))
		die("bind");
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- the client: vdisk/nbdc.h ---- */

static int nbd_open(int port, const char *name, struct cell_tls *tls)
{
	char hp[64], err[300];
	int fd;

	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	fd = nbdc_open_tls(hp, name, NULL, tls, err, sizeof(err));
	if (fd < 0)
		fprintf(stderr, "vdisk-bench: %s\n", err);
	return fd;
}

static void nbd_req(int fd, uint16_t type, uint64_t off, uint32_t len,
		    void *data)
{
	if (nbdc_request(fd, type, 0, off, len, data, NBDC_REQUEST_MAGIC)) {
		fprintf(stderr, "vdisk-bench: request %u at %llu failed\n",
			type, (unsigned long long)off);
		exit(1);
	}
}

/* ---- servers ---- */

struct server {
	const char *label;
	int port;
	pid_t pid;
	int (*fresh)(struct server *s, int n, char *name, size_t len);
	struct cell_tls *tls; /* the client's, for the TLS server */
	const char *store;    /* cellmon: its store under dir */
};

static int wait_port(int port)
{
	for (int i = 0; i < 250; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET};
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		a.sin_port = htons((uint16_t)port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return 0;
		}
		close(fd);
		usleep(20000);
	}
	return -1;
}

/* cellmon-vdiskd: one server; a fresh disk per run. */
static int cellmon_fresh(struct server *s, int n, char *name, size_t len)
{
	char store[300], parent[100];
	char *argv[] = {VDISKD_BIN, store, "disk", "create",
			name,	    "0",   parent, NULL};

	snprintf(name, len, "d%d", n);
	snprintf(store, sizeof(store), "--store=%s/%s", dir, s->store);
	snprintf(parent, sizeof(parent), "base:%s", base_id);
	return run(argv, NULL, 0);
}

/* qemu-nbd: a fresh qcow2 overlay and a server for it per run. */
static int qemu_fresh(struct server *s, int n, char *name, size_t len)
{
	char ov[300], port[16], log[300];
	char *mk[] = {"qemu-img", "create", "-q",  "-f", "qcow2", "-b",
		      base_path,  "-F",	    "raw", ov,	 NULL};
	char *srv[] = {"qemu-nbd", "-f", "qcow2",     "-x", name, "-p",
		       port,	   "-b", "127.0.0.1", "-t", ov,	  NULL};

	snprintf(name, len, "q%d", n);
	snprintf(ov, sizeof(ov), "%s/q%d.qcow2", dir, n);
	snprintf(log, sizeof(log), "%s/qemu-nbd.log", dir);
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	if (run(mk, NULL, 0))
		return -1;
	s->port = free_port();
	snprintf(port, sizeof(port), "%d", s->port);
	s->pid = spawn(srv, log);
	return wait_port(s->port);
}

/* ---- patterns ---- */

enum { SEQ_READ, RAND_READ, SEQ_WRITE, RAND_WRITE, NPAT };
static const char *pat_name[NPAT] = {"sequential read", "random read",
				     "sequential write", "random write"};

static double run_pattern(struct server *s, int pat, int n)
{
	uint64_t blocks = (uint64_t)size_mb * (1u << 20) / B, t0, t;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(n + 1);
	static uint8_t buf[B];
	char name[64];
	int fd;

	if (s->fresh(s, n, name, sizeof(name)))
		die("cannot make a fresh disk");
	fd = nbd_open(s->port, name, s->tls);
	if (fd < 0)
		die("cannot connect");
	memset(buf, 0x5a, sizeof(buf));
	t0 = now_ns();
	for (int i = 0; i < ops; i++) {
		uint64_t b;

		if (pat == SEQ_READ || pat == SEQ_WRITE) {
			b = (uint64_t)i % blocks;
		} else {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			b = rng % blocks;
		}
		nbd_req(fd, pat >= SEQ_WRITE ? 1 : 0, b * B, B, buf);
	}
	if (pat >= SEQ_WRITE)
		nbd_req(fd, 3, 0, 0, NULL);
	t = now_ns() - t0;
	nbd_req(fd, 2, 0, 0, NULL);
	nbdc_close(fd);
	return (double)ops / ((double)t / 1e9);
}

static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double x = v[j];

			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return v[n / 2];
}

static int int_arg(const char *a, const char *key, int *out)
{
	size_t kl = strlen(key);

	if (strncmp(a, key, kl))
		return 0;
	*out = atoi(a + kl);
	if (*out <= 0) {
		fprintf(stderr, "vdisk-bench: bad %s\n", a);
		exit(2);
	}
	return 1;
}

/* A CA for the run, the disk server's certificate and an admin's for
 * the client (the same kind of client the agents are). */
static void make_tls(struct server *s, char *err, size_t errlen)
{
	struct cell_ca_issue srv = {.role = CELL_ROLE_DISK,
				    .name = "vdiskd",
				    .sans = "IP:127.0.0.1"};
	struct cell_ca_issue cli = {.role = CELL_ROLE_ADMIN, .name = "bench"};
	char ca[400], crt[4096], key[4096];
	struct cell_tls_config c = {ca, crt, key, NULL,
				    CELL_ROLE_BIT(CELL_ROLE_DISK)};

	snprintf(ca, sizeof(ca), "%s/ca", dir);
	if (cell_ca_init(ca, "bench", 0, err, errlen) ||
	    cell_ca_issue(ca, &srv, NULL, NULL, NULL, err, errlen) ||
	    cell_ca_issue(ca, &cli, NULL, crt, key, err, errlen)) {
		fprintf(stderr, "vdisk-bench: %s\n", err);
		exit(1);
	}
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", dir);
	if (cell_tls_new(&c, &s->tls, err, errlen)) {
		fprintf(stderr, "vdisk-bench: %s\n", err);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct server cm = {"cellmon-vdiskd", 0,    0,
			    cellmon_fresh,    NULL, "store"};
	struct server ct = {"cellmon-vdiskd TLS", 0,	0,
			    cellmon_fresh,	  NULL, "store-tls"};
	struct server qn = {"qemu-nbd (qcow2)", 0, 0, qemu_fresh, NULL, NULL};
	struct server *all[3] = {&cm, &ct, &qn};
	double r[3][NPAT][16];
	char store[300], log[300], buf[128], err[600];
	char *imp[] = {VDISKD_BIN, store, "base", "import", base_path, NULL};
	int fd, n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			printf("usage: vdisk-bench [--ops=N] [--rounds=N] "
			       "[--size-mb=N]\n");
			return 0;
		}
		if (!int_arg(argv[i], "--ops=", &ops) &&
		    !int_arg(argv[i], "--rounds=", &rounds) &&
		    !int_arg(argv[i], "--size-mb=", &size_mb)) {
			fprintf(stderr, "vdisk-bench: unknown argument %s\n",
				argv[i]);
			return 2;
		}
	}
	if (rounds > 16)
		rounds = 16;
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/vdisk-bench.XXXXXX");
	if (!mkdtemp(dir))
		die("mkdtemp");
	/* The base: random bytes, so nothing compresses or dedups. */
	snprintf(base_path, sizeof(base_path), "%s/base.raw", dir);
	fd = open(base_path, O_WRONLY | O_CREAT, 0644);
	srandom(1);
	for (int i = 0; i < size_mb * 256; i++) {
		uint8_t blk[B];

		for (size_t k = 0; k < B; k++)
			blk[k] = (uint8_t)random();
		if (write(fd, blk, B) != B)
			die("write base");
	}
	close(fd);
	for (int i = 0; i < 2; i++) {
		snprintf(store, sizeof(store), "--store=%s/%s", dir,
			 all[i]->store);
		if (run(imp, base_id, sizeof(base_id)))
			die("base import");
		base_id[strcspn(base_id, "\n")] = 0;
	}
	make_tls(&ct, err, sizeof(err));
	for (int i = 0; i < 2; i++) {
		char addrf[400], ca[400], crt[400], key[400];
		char *srv[] = {VDISKD_BIN, store, "--listen=127.0.0.1:0",
			       "--admin-listen=127.0.0.1:0", "--log-level=warn",
			       /* the plain one: insecure, and ends here */
			       i ? ca : "--insecure=true", i ? crt : NULL, key,
			       "--nbd-tls=required", NULL};

		snprintf(store, sizeof(store), "--store=%s/%s", dir,
			 all[i]->store);
		snprintf(ca, sizeof(ca), "--tls-ca=%s/ca/ca.crt", dir);
		snprintf(crt, sizeof(crt),
			 "--tls-cert=%s/ca/certs/disk-server-vdiskd.crt", dir);
		snprintf(key, sizeof(key),
			 "--tls-key=%s/ca/certs/disk-server-vdiskd.key", dir);
		snprintf(log, sizeof(log), "%s/vdiskd-%s.log", dir,
			 all[i]->store);
		all[i]->pid = spawn(srv, log);
		snprintf(addrf, sizeof(addrf), "%s/%s/vdiskd.addr", dir,
			 all[i]->store);
		for (int t = 0; t < 250 && all[i]->port == 0; t++) {
			FILE *f = fopen(addrf, "r");

			if (f && fgets(buf, sizeof(buf), f) && strchr(buf, ':'))
				all[i]->port = atoi(strrchr(buf, ':') + 1);
			if (f)
				fclose(f);
			usleep(20000);
		}
		if (!all[i]->port)
			die("cellmon-vdiskd did not start");
	}

	/* Warm-up (discarded): the base into the page cache, every server
	 * through its first connections. */
	for (int i = 0; i < 3; i++)
		run_pattern(all[i], SEQ_READ, n++);
	for (int k = 0; k < rounds; k++)
		for (int p = 0; p < NPAT; p++)
			for (int o = 0; o < 3; o++) {
				int which = (o + k + p) % 3;

				r[which][p][k] =
					run_pattern(all[which], p, n++);
			}
	for (int i = 0; i < 3; i++)
		if (all[i]->pid > 0)
			kill(all[i]->pid, SIGTERM);
	for (int i = 0; i < 3; i++)
		if (all[i]->pid > 0)
			waitpid(all[i]->pid, NULL, 0);

	printf("vdisk-bench: %d ops of 4 KiB per run, %d rounds, %d MiB "
	       "disk over a raw base, one request in flight\n",
	       ops, rounds, size_mb);
	printf("%-18s %14s %14s %14s %8s %8s\n", "pattern", "cellmon ops/s",
	       "TLS ops/s", "qemu-nbd ops/s", "cm/qn", "TLS/cm");
	for (int p = 0; p < NPAT; p++) {
		double a = median(r[0][p], rounds), t = median(r[1][p], rounds),
		       b = median(r[2][p], rounds);

		printf("%-18s %14.0f %14.0f %14.0f %8.2f %8.2f\n", pat_name[p],
		       a, t, b, a / b, t / a);
	}
	printf("(medians; cm/qn = cellmon / qemu-nbd, target >= 1.00; "
	       "TLS/cm = the same cellmon-vdiskd with NBD over TLS 1.3 / "
	       "plain, target >= 0.80)\n");
	cell_tls_free(ct.tls);
	if (!getenv("VDISK_BENCH_KEEP")) {
		char *rm[] = {"rm", "-rf", dir, NULL};

		run(rm, NULL, 0);
	}
	return 0;
}
