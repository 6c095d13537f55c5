/*
 * dsm-bench's floors, each measured in the run that prints it (see
 * dsm_floors.h). The first four time one mechanism alone at its best
 * (polling, so no wake-up is paid); the bare exchanges chain the
 * mechanisms a read miss or an upgrade cannot do without, with the
 * waiting done as a DSM node does it, and nothing else: they are what any
 * protocol built on userfaultfd and TCP pays on this machine, and the
 * distance from them to the DSM's figures is the engine's own cost.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "cell/tls.h"
#include "dsm/dsm.h"
#include "dsm_floors.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct pct percentiles(uint64_t *ns, int n)
{
	struct pct r;

	qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
	r.p50 = (double)ns[n / 2] / 1000.0;
	r.p99 = (double)ns[(n * 99) / 100] / 1000.0;
	free(ns);
	return r;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void must(bool ok)
{
	if (!ok) {
		perror("dsm-bench");
		exit(1);
	}
}

/* A userfaultfd for the floors: through /dev/userfaultfd when it opens,
 * else the syscall (as the DSM node does). */
int new_uffd(int flags)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd;

	if (dev < 0)
		return (int)syscall(SYS_userfaultfd, O_CLOEXEC | flags);
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | flags);
	close(dev);
	return fd;
}

/* A memfd of len bytes, a mapping of it that a new uffd (uffd_flags,
 * features) watches in mode, and, when own is asked for, a second mapping
 * that nothing watches (where a handler puts the bytes). */
struct watched {
	int memfd, uffd;
	size_t len;
	uint8_t *map, *own;
};

static void watch_memfd(struct watched *w, size_t len, int uffd_flags,
			uint64_t features, uint64_t mode, bool own)
{
	struct uffdio_api api = {.api = UFFD_API, .features = features};

	w->len = len;
	w->uffd = new_uffd(uffd_flags);
	w->memfd = memfd_create("dsm-bench", MFD_CLOEXEC);
	must(w->uffd >= 0 && w->memfd >= 0 &&
	     !ioctl(w->uffd, UFFDIO_API, &api) &&
	     !ftruncate(w->memfd, (off_t)len));
	w->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, w->memfd,
		      0);
	w->own = own ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
			    w->memfd, 0)
		     : NULL;
	must(w->map != MAP_FAILED && w->own != MAP_FAILED);
	struct uffdio_register reg = {.range = {(unsigned long)w->map, len},
				      .mode = mode};
	must(ioctl(w->uffd, UFFDIO_REGISTER, &reg) == 0);
}

static void unwatch_memfd(struct watched *w)
{
	munmap(w->map, w->len);
	if (w->own)
		munmap(w->own, w->len);
	close(w->memfd);
	close(w->uffd);
}

/* ---- where the simulated hosts run ---- */

bool pin_hosts = true;
static cpu_set_t start_cpus;
static int first_cpu = -1, last_cpu = -1;
static char pin_text[64];

static void pin_init(void)
{
	if (first_cpu >= 0)
		return;
	must(sched_getaffinity(0, sizeof(start_cpus), &start_cpus) == 0);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &start_cpus)) {
			if (first_cpu < 0)
				first_cpu = c;
			last_cpu = c;
		}
}

void pin_host(enum host_cpu where)
{
	cpu_set_t one;

	pin_init();
	if (!pin_hosts || first_cpu == last_cpu)
		return;
	if (where == HOST_ANY) {
		must(sched_setaffinity(0, sizeof(start_cpus), &start_cpus) ==
		     0);
		return;
	}
	CPU_ZERO(&one);
	CPU_SET(where == HOST_LOCAL ? first_cpu : last_cpu, &one);
	must(sched_setaffinity(0, sizeof(one), &one) == 0);
}

const char *pin_desc(void)
{
	pin_init();
	if (!pin_hosts)
		return "not pinned (--no-pin)";
	if (first_cpu == last_cpu)
		return "not pinned (one CPU)";
	snprintf(pin_text, sizeof(pin_text),
		 "node 0 on cpu %d, other nodes on cpu %d", first_cpu,
		 last_cpu);
	return pin_text;
}

/* ---- floor: TCP 4 KiB request/response, both ends polling ---- */

static int tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &sl))
		return -1;
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (struct sockaddr *)&sa, sizeof(sa)))
		return -1;
	*b = accept(l, NULL, NULL);
	close(l);
	setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return *b < 0 ? -1 : 0;
}

/* How a floor's end waits for its peer: spinning on the socket, spinning
 * but yielding the CPU between tries (as a polling DSM node does), or
 * asleep in the call. */
enum wait_how { SPIN, SPIN_YIELD, SLEEP };

/* Sends or receives len bytes. Exits when the peer has gone. */
static void xfer(int fd, void *buf, size_t len, bool send_it, enum wait_how how)
{
	int flags = how == SLEEP ? 0 : MSG_DONTWAIT;
	size_t done = 0;

	while (done < len) {
		ssize_t r = send_it ? send(fd, (char *)buf + done, len - done,
					   flags)
				    : recv(fd, (char *)buf + done, len - done,
					   flags);

		if (r > 0)
			done += (size_t)r;
		else if (r == 0 || (errno != EAGAIN && errno != EINTR))
			exit(1);
		else if (how == SPIN_YIELD)
			sched_yield();
	}
}

struct echo {
	int fd, rounds;
};

static void *tcp_echo(void *arg)
{
	struct echo *e = arg;
	static char buf[DSM_PAGE];

	for (int i = 0; i < e->rounds; i++) {
		xfer(e->fd, buf, sizeof(buf), false, SPIN);
		xfer(e->fd, buf, sizeof(buf), true, SPIN);
	}
	return NULL;
}

struct pct floor_tcp(int samples)
{
	static char buf[DSM_PAGE];
	uint64_t *ns = calloc((size_t)samples, sizeof(*ns));
	pthread_t t;
	int a, b;

	if (tcp_pair(&a, &b))
		exit(1);
	struct echo e = {b, samples + 100};

	pthread_create(&t, NULL, tcp_echo, &e);
	for (int i = 0; i < samples + 100; i++) {
		uint64_t t0 = now_ns();

		xfer(a, buf, sizeof(buf), true, SPIN);
		xfer(a, buf, sizeof(buf), false, SPIN);
		if (i >= 100)
			ns[i - 100] = now_ns() - t0;
	}
	pthread_join(t, NULL);
	close(a);
	close(b);
	return percentiles(ns, samples);
}

/* ---- floor: a read fault's two frames, plain and under TLS ---- */

#define REQ_LEN	  48
#define REPLY_LEN (48 + DSM_PAGE)

/* Sends or receives len bytes through ssl (NULL: the socket), polling. */
static void xfer_tls(SSL *ssl, int fd, void *buf, size_t len, bool send_it)
{
	size_t done = 0;

	if (!ssl) {
		xfer(fd, buf, len, send_it, SPIN);
		return;
	}
	while (done < len) {
		int r = send_it ? SSL_write(ssl, (char *)buf + done,
					    (int)(len - done))
				: SSL_read(ssl, (char *)buf + done,
					   (int)(len - done));
		int e = r > 0 ? 0 : SSL_get_error(ssl, r);

		if (r > 0)
			done += (size_t)r;
		else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			exit(1);
	}
}

struct tls_echo {
	int fd, rounds;
	SSL *ssl;
	struct cell_tls *srv;
};

static void *tls_echo(void *arg)
{
	struct tls_echo *e = arg;
	static char buf[REPLY_LEN];

	if (e->srv) {
		e->ssl = cell_tls_ssl(e->srv, true);
		must(e->ssl && SSL_set_fd(e->ssl, e->fd) &&
		     SSL_do_handshake(e->ssl) == 1);
		SSL_set_read_ahead(e->ssl, 1);
		SSL_set_mode(e->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	}
	fcntl(e->fd, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < e->rounds; i++) {
		xfer_tls(e->ssl, e->fd, buf, REQ_LEN, false);
		xfer_tls(e->ssl, e->fd, buf, REPLY_LEN, true);
	}
	return NULL;
}

/* One connection of n exchanges timed into ns, TLS when cli is set. */
static void tls_round(int n, struct cell_tls *cli, struct cell_tls *srv,
		      uint64_t *ns)
{
	static char buf[REPLY_LEN];
	struct tls_echo e;
	SSL *ssl = NULL;
	pthread_t t;
	int a, b;

	if (tcp_pair(&a, &b))
		exit(1);
	e = (struct tls_echo){b, n + 100, NULL, cli ? srv : NULL};
	pthread_create(&t, NULL, tls_echo, &e);
	if (cli) {
		ssl = cell_tls_ssl(cli, false);
		must(ssl && SSL_set_fd(ssl, a) && SSL_do_handshake(ssl) == 1);
		SSL_set_read_ahead(ssl, 1);
		SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	}
	fcntl(a, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < n + 100; i++) {
		uint64_t t0 = now_ns();

		xfer_tls(ssl, a, buf, REQ_LEN, true);
		xfer_tls(ssl, a, buf, REPLY_LEN, false);
		if (i >= 100)
			ns[i - 100] = now_ns() - t0;
	}
	pthread_join(t, NULL);
	SSL_free(ssl);
	SSL_free(e.ssl);
	close(a);
	close(b);
}

void floor_tls(int samples, struct cell_tls *cli, struct cell_tls *srv,
	       struct pct *plain, struct pct *tls)
{
	enum { ROUNDS = 5 };
	int per = samples / ROUNDS > 0 ? samples / ROUNDS : 1;
	uint64_t *a = calloc((size_t)(per * ROUNDS), sizeof(*a));
	uint64_t *b = calloc((size_t)(per * ROUNDS), sizeof(*b));

	must(a && b);
	for (int i = 0; i < ROUNDS; i++) {
		tls_round(per, NULL, NULL, a + i * per);
		tls_round(per, cli, srv, b + i * per);
	}
	*plain = percentiles(a, per * ROUNDS);
	*tls = percentiles(b, per * ROUNDS);
}

/* ---- floor: uffd fault resolved by a polling handler ---- */

struct uffd_floor {
	struct watched w;
	volatile bool stop, yield;
};

static void *uffd_handler(void *arg)
{
	struct uffd_floor *u = arg;
	struct uffd_msg msg;

	while (!u->stop) {
		if (read(u->w.uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			if (u->yield)
				sched_yield();
			continue;
		}
		struct uffdio_continue c = {
			.range = {msg.arg.pagefault.address & ~(DSM_PAGE - 1ul),
				  DSM_PAGE}};
		ioctl(u->w.uffd, UFFDIO_CONTINUE, &c);
	}
	return NULL;
}

struct pct floor_uffd(int samples, bool same_cpu)
{
	struct uffd_floor u = {.yield = same_cpu};
	uint64_t *ns = calloc((size_t)samples, sizeof(*ns));
	pthread_t t;

	must(ns != NULL);
	if (same_cpu)
		pin_host(HOST_LOCAL); /* the handler thread inherits it */
	watch_memfd(&u.w, (size_t)samples * DSM_PAGE, O_NONBLOCK,
		    UFFD_FEATURE_MINOR_SHMEM, UFFDIO_REGISTER_MODE_MINOR, true);
	memset(u.w.own, 1, u.w.len); /* pages in the page cache: minor faults */
	pthread_create(&t, NULL, uffd_handler, &u);
	for (int i = 0; i < samples; i++) {
		uint64_t t0 = now_ns();

		(void)*(volatile uint8_t *)(u.w.map + (size_t)i * DSM_PAGE);
		ns[i] = now_ns() - t0;
	}
	u.stop = true;
	pthread_join(t, NULL);
	unwatch_memfd(&u.w);
	if (same_cpu)
		pin_host(HOST_ANY);
	return percentiles(ns, samples);
}

/* ---- floor: write-protecting a page another thread wrote ---- */

struct wp_floor {
	struct watched w;
	volatile bool busy, stop;
};

static void *wp_writer(void *arg)
{
	struct wp_floor *w = arg;

	memset(w->w.map, 1, w->w.len);
	while (!w->stop)
		if (!w->busy)
			usleep(1000);
	return NULL;
}

/* UFFDIO_WRITEPROTECT of one page (what a home's downgrade does) while
 * the thread that wrote the pages sleeps, or spins on the other CPU: the
 * TLB shootdown's IPI costs what the target CPU is doing. */
struct pct floor_wp(int samples, bool busy)
{
	struct wp_floor w = {.busy = busy};
	uint64_t *ns = calloc((size_t)samples, sizeof(*ns));
	pthread_t t;

	must(ns != NULL);
	watch_memfd(&w.w, (size_t)samples * DSM_PAGE, O_NONBLOCK,
		    UFFD_FEATURE_WP_HUGETLBFS_SHMEM, UFFDIO_REGISTER_MODE_WP,
		    false);
	pthread_create(&t, NULL, wp_writer, &w);
	usleep(100 * 1000); /* the writer has written every page */
	for (int i = 0; i < samples; i++) {
		struct uffdio_writeprotect p = {
			.range = {(unsigned long)(w.w.map +
						  (size_t)i * DSM_PAGE),
				  DSM_PAGE},
			.mode = UFFDIO_WRITEPROTECT_MODE_WP};
		uint64_t t0 = now_ns();

		must(ioctl(w.w.uffd, UFFDIO_WRITEPROTECT, &p) == 0);
		ns[i] = now_ns() - t0;
	}
	w.stop = true;
	pthread_join(t, NULL);
	unwatch_memfd(&w.w);
	return percentiles(ns, samples);
}

/* ---- floor: installing pages with UFFDIO_COPY, no faults, no network --- */

double floor_install(int pages)
{
	static uint8_t src[DSM_PAGE] __attribute__((aligned(4096)));
	size_t n = (size_t)pages;
	struct watched w;
	uint64_t t0, t1;

	watch_memfd(&w, n * DSM_PAGE, 0, UFFD_FEATURE_MINOR_SHMEM,
		    UFFDIO_REGISTER_MODE_MISSING, false);
	t0 = now_ns();
	for (size_t i = 0; i < n; i++) {
		struct uffdio_copy c = {(unsigned long)(w.map + i * DSM_PAGE),
					(unsigned long)src, DSM_PAGE, 0, 0};

		must(ioctl(w.uffd, UFFDIO_COPY, &c) == 0);
	}
	t1 = now_ns();
	unwatch_memfd(&w);
	return (double)n / ((double)(t1 - t0) / 1e9);
}

/* ---- floor: the bare exchanges, no DSM engine ---- */

/*
 * A read miss by hand: the faulting thread's handler, asleep in read()
 * on the uffd as a node sleeps while it waits, sends the page number (8
 * bytes) over loopback TCP to a server process that polls, as a node
 * that has just served a peer does. The server write-protects the page
 * in its own mapping, where it wrote it (a home's downgrade), reads it
 * with pread() and sends the 4 KiB back; the handler, asleep in recv(),
 * receives them into the memfd and maps them with UFFDIO_CONTINUE.
 * An upgrade by hand: the handler of a write-protect fault sends the
 * page number, the server punches the page out of its memfd (an
 * invalidation) and sends it back as the ack, and the handler lifts the
 * write-protect. No directory, versions, DONE, epoll or framing: what
 * is left is what any protocol on userfaultfd and TCP pays here. A read
 * of a clean page skips the write-protect, as a read from a home that
 * only reads the page would.
 */
struct bare {
	enum bare_op op;
	int fd, n;
	struct watched w;
};

static void bare_server(int fd, enum bare_op op, int n)
{
	static uint8_t page[DSM_PAGE];
	struct watched w;
	uint64_t pg;

	watch_memfd(&w, (size_t)n * DSM_PAGE, O_NONBLOCK,
		    UFFD_FEATURE_WP_HUGETLBFS_SHMEM, UFFDIO_REGISTER_MODE_WP,
		    false);
	for (size_t i = 0; i < w.len; i += DSM_PAGE)
		w.map[i] = (uint8_t)(i / DSM_PAGE); /* mapped writable */
	for (;;) {
		off_t off;

		xfer(fd, &pg, sizeof(pg), false, SPIN_YIELD);
		if (pg >= (uint64_t)n)
			break;
		off = (off_t)(pg * DSM_PAGE);
		if (op == BARE_UPGRADE) {
			must(fallocate(w.memfd,
				       FALLOC_FL_PUNCH_HOLE |
					       FALLOC_FL_KEEP_SIZE,
				       off, DSM_PAGE) == 0);
			xfer(fd, &pg, sizeof(pg), true, SPIN_YIELD);
			continue;
		}
		struct uffdio_writeprotect wp = {
			.range = {(unsigned long)w.map + (unsigned long)off,
				  DSM_PAGE},
			.mode = UFFDIO_WRITEPROTECT_MODE_WP};
		if (op == BARE_READ)
			must(ioctl(w.uffd, UFFDIO_WRITEPROTECT, &wp) == 0);
		must(pread(w.memfd, page, DSM_PAGE, off) == DSM_PAGE);
		xfer(fd, page, DSM_PAGE, true, SPIN_YIELD);
	}
	_exit(0);
}

static void *bare_handler(void *arg)
{
	struct bare *b = arg;
	struct uffd_msg msg;

	for (int done = 0; done < b->n;) {
		must(read(b->w.uffd, &msg, sizeof(msg)) == sizeof(msg));
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t pg =
			(msg.arg.pagefault.address - (uintptr_t)b->w.map) /
			DSM_PAGE;
		unsigned long at = (unsigned long)(b->w.map + pg * DSM_PAGE);

		xfer(b->fd, &pg, sizeof(pg), true, SLEEP);
		if (b->op == BARE_UPGRADE) {
			struct uffdio_writeprotect wp = {{at, DSM_PAGE}, 0};

			xfer(b->fd, &pg, sizeof(pg), false, SLEEP);
			must(ioctl(b->w.uffd, UFFDIO_WRITEPROTECT, &wp) == 0);
		} else {
			struct uffdio_continue c = {.range = {at, DSM_PAGE}};

			xfer(b->fd, b->w.own + pg * DSM_PAGE, DSM_PAGE, false,
			     SLEEP);
			must(ioctl(b->w.uffd, UFFDIO_CONTINUE, &c) == 0);
		}
		done++;
	}
	return NULL;
}

/* The client's memfd, its two mappings and its uffd (blocking reads):
 * missing and minor faults for a read miss; for an upgrade, every page
 * present and write-protected. */
static void bare_client_setup(struct bare *b)
{
	size_t len = (size_t)b->n * DSM_PAGE;

	if (b->op != BARE_UPGRADE) {
		watch_memfd(&b->w, len, 0,
			    UFFD_FEATURE_MINOR_SHMEM |
				    UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
			    UFFDIO_REGISTER_MODE_MISSING |
				    UFFDIO_REGISTER_MODE_MINOR,
			    true);
		return;
	}
	watch_memfd(&b->w, len, 0, UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
		    UFFDIO_REGISTER_MODE_WP, true);
	struct uffdio_writeprotect wp = {{(unsigned long)b->w.map, len},
					 UFFDIO_WRITEPROTECT_MODE_WP};

	memset(b->w.own, 0, len);
	for (size_t i = 0; i < len; i += DSM_PAGE)
		(void)*(volatile uint8_t *)(b->w.map + i);
	must(ioctl(b->w.uffd, UFFDIO_WRITEPROTECT, &wp) == 0);
}

struct pct floor_bare(int samples, enum bare_op op)
{
	uint64_t *ns = calloc((size_t)samples, sizeof(*ns));
	struct bare b = {.op = op, .n = samples};
	uint64_t quit = UINT64_MAX;
	int srv;
	pthread_t t;
	pid_t pid;

	must(ns != NULL && tcp_pair(&b.fd, &srv) == 0);
	fflush(NULL);
	pid = fork();
	must(pid >= 0);
	if (pid == 0) {
		pin_host(HOST_REMOTE);
		close(b.fd);
		bare_server(srv, op, samples);
	}
	close(srv);
	pin_host(HOST_LOCAL);
	bare_client_setup(&b);
	must(pthread_create(&t, NULL, bare_handler, &b) == 0);
	for (int i = 0; i < samples; i++) {
		volatile uint8_t *p = b.w.map + (size_t)i * DSM_PAGE;
		uint64_t t0 = now_ns();
		uint8_t v = 1;

		if (op == BARE_UPGRADE)
			*p = 1;
		else
			v = *p;
		ns[i] = now_ns() - t0;
		must(v == (op == BARE_UPGRADE ? 1 : (uint8_t)i));
	}
	pthread_join(t, NULL);
	xfer(b.fd, &quit, sizeof(quit), true, SLEEP);
	waitpid(pid, NULL, 0);
	pin_host(HOST_ANY);
	close(b.fd);
	unwatch_memfd(&b.w);
	return percentiles(ns, samples);
}
