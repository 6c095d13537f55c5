/*
 * cellmon-vdiskd with real NBD clients (qemu-io, qemu-img, nbdinfo from
 * Debian's qemu-utils and libnbd-bin) and with a small client of our own
 * for what the real ones never send: malformed requests, and a write +
 * flush loop across a kill -9 of the server.
 *
 * The server runs on an ephemeral loopback port (it writes the address to
 * <store>/vdiskd.addr) and is stopped by the test, also on failure.
 *
 * It runs plain (insecure = true, said explicitly): this is the NBD
 * protocol itself, spoken by clients that are not TLS clients (ours
 * writes raw frames); the same NBD under STARTTLS, with qemu-io,
 * qemu-img and nbdinfo as clients, is test_tls_cell's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/fault.h"
#include "vdisk/nbdc.h"
#include "testsupport.h"

#define B 4096u

static struct {
	char *dir;
	char store[600];
	char log[700];
	char addr[128];
	char uri[256];
	pid_t pid;
} T;

static bool have(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

#define NEED_TOOL(t)                                                      \
	do {                                                              \
		if (!have(t)) {                                           \
			printf("SKIP: %s is not installed (Debian "       \
			       "qemu-utils / libnbd-bin; deploy/install-" \
			       "deps installs them)\n",                   \
			       t);                                        \
			skip();                                           \
		}                                                         \
	} while (0)

static bool addr_ready(void *arg)
{
	char path[700], *s;

	(void)arg;
	snprintf(path, sizeof(path), "%s/vdiskd.addr", T.store);
	s = ts_read_file(path);
	if (!s)
		return false;
	if (strncmp(s, "nbd=", 4) == 0) {
		s[strcspn(s, "\n")] = 0;
		snprintf(T.addr, sizeof(T.addr), "%s", s + 4);
	}
	free(s);
	return T.addr[0] != 0;
}

static void start_server(const char *listen)
{
	char st[700], li[160];
	char *argv[] = {VDISKD_BIN,
			st,
			li,
			"--admin-listen=127.0.0.1:0",
			"--log-level=debug",
			"--insecure=true",
			NULL};
	char path[700];

	snprintf(st, sizeof(st), "--store=%s", T.store);
	snprintf(li, sizeof(li), "--listen=%s", listen);
	snprintf(path, sizeof(path), "%s/vdiskd.addr", T.store);
	unlink(path);
	T.addr[0] = 0;
	T.pid = ts_spawn(argv, T.log);
	assert_true(T.pid > 0);
	assert_true(ts_wait_for(addr_ready, NULL, 5000));
}

/* Runs the offline admin command; returns its exit code. */
static int admin(char **out, ...)
{
	char st[700];
	char *argv[16] = {VDISKD_BIN, st};
	char *o = NULL;
	int n = 2, rc;
	va_list ap;

	snprintf(st, sizeof(st), "--store=%s", T.store);
	va_start(ap, out);
	while (n < 15 && (argv[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	rc = ts_run(argv, 30000, &o, true);
	if (out)
		*out = o;
	else
		free(o);
	return rc;
}

static const char *uri(const char *disk)
{
	snprintf(T.uri, sizeof(T.uri), "nbd://%s/%s", T.addr, disk);
	return T.uri;
}

static int setup(void **state)
{
	(void)state;
	T.dir = ts_tmpdir("vdiskd-it");
	snprintf(T.store, sizeof(T.store), "%s/store", T.dir);
	snprintf(T.log, sizeof(T.log), "%s/vdiskd.log", T.dir);
	start_server("127.0.0.1:0");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (T.pid > 0)
		ts_stop(T.pid, SIGTERM, 5000);
	T.pid = 0;
	ts_kill_all();
	if (getenv("CELLMON_KEEP_TEST_DIR"))
		fprintf(stderr, "test dir kept: %s\n", T.dir);
	else
		ts_rmtree(T.dir);
	free(T.dir);
	return 0;
}

/* qemu-io: exit status and no verification failure in its output. */
static void qemu_io(const char *disk, ...)
{
	char *argv[32] = {"qemu-io", "-f", "raw"};
	char *out = NULL;
	int n = 3, rc;
	va_list ap;

	va_start(ap, disk);
	while (n < 29) {
		char *c = va_arg(ap, char *);

		if (!c)
			break;
		argv[n++] = "-c";
		argv[n++] = c;
	}
	va_end(ap);
	argv[n++] = (char *)uri(disk);
	argv[n] = NULL;
	rc = ts_run(argv, 60000, &out, true);
	if (rc != 0 || strstr(out, "verification failed") ||
	    strstr(out, "failed"))
		fail_msg("qemu-io on %s exited %d:\n%s", disk, rc, out);
	free(out);
}

static void test_vdiskd_qemu_io_patterns(void **state)
{
	(void)state;
	NEED_TOOL("qemu-io");
	assert_int_equal(admin(NULL, "disk", "create", "d1", "16M", NULL), 0);
	qemu_io("d1", "write -P 0xab 0 1M", "write -P 0xcd 1234567 5000",
		"write -z 2M 64k", "write -P 0x5e 8M 4096", "flush", NULL);
	/* A new connection reads back what the first one wrote. */
	qemu_io("d1", "read -P 0xab 0 1M", "read -P 0 1M 185991",
		"read -P 0xcd 1234567 5000", "read -P 0 1239567 8000",
		"read -P 0 2M 64k", "read -P 0x5e 8M 4096", "read -P 0 15M 1M",
		NULL);
	/* Discard (TRIM) then it reads as zeros. */
	qemu_io("d1", "discard 8M 4096", "read -P 0 8M 4096", NULL);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void convert_and_compare(const char *disk, const uint8_t *want,
				size_t len)
{
	char raw[800];
	char *argv[] = {"qemu-img", "convert",	       "-f", "raw", "-O",
			"raw",	    (char *)uri(disk), raw,  NULL};
	char *out = NULL;
	uint8_t *got;
	size_t n;
	int rc;

	snprintf(raw, sizeof(raw), "%s/%s.raw", T.dir, disk);
	rc = ts_run(argv, 60000, &out, true);
	if (rc)
		fail_msg("qemu-img convert %s: %s", disk, out);
	free(out);
	got = read_file(raw, &n);
	assert_int_equal(n, len);
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			fail_msg("%s: byte %zu is %02x, want %02x", disk, i,
				 got[i], want[i]);
	free(got);
	unlink(raw);
}

static void test_vdiskd_convert_base_and_clone(void **state)
{
	size_t len = 2u << 20;
	uint8_t *base = malloc(len), *want = malloc(len);
	char path[700], *id = NULL, parent[100], w[64];
	int fd;

	(void)state;
	NEED_TOOL("qemu-img");
	NEED_TOOL("qemu-io");
	srandom(42);
	for (size_t i = 0; i < len; i++)
		base[i] = (uint8_t)random();
	snprintf(path, sizeof(path), "%s/base.img", T.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, base, len), (ssize_t)len);
	close(fd);
	assert_int_equal(admin(&id, "base", "import", path, NULL), 0);
	id[strcspn(id, "\n")] = 0;
	snprintf(parent, sizeof(parent), "base:%s", id);
	free(id);
	assert_int_equal(
		admin(NULL, "disk", "create", "gold", "0", parent, NULL), 0);
	/* The untouched disk is its base. */
	convert_and_compare("gold", base, len);
	qemu_io("gold", "write -P 0x11 4096 4096", "flush", NULL);
	memcpy(want, base, len);
	memset(want + 4096, 0x11, 4096);
	convert_and_compare("gold", want, len);

	/* A clone reads its base's data until overwritten. */
	assert_int_equal(admin(NULL, "disk", "clone", "gold", "vm1", NULL), 0);
	convert_and_compare("vm1", want, len);
	snprintf(w, sizeof(w), "write -P 0x22 %u 8192", 100 * B);
	qemu_io("vm1", w, "flush", NULL);
	memset(want + 100 * B, 0x22, 8192);
	convert_and_compare("vm1", want, len);
	/* gold is frozen and unchanged; writes to it are refused. */
	memcpy(want + 100 * B, base + 100 * B, 8192);
	convert_and_compare("gold", want, len);
	free(base);
	free(want);
}

static void test_vdiskd_nbdinfo_list(void **state)
{
	char target[300];
	char *argv[] = {"nbdinfo", "--list", target, NULL};
	char *out = NULL;

	(void)state;
	NEED_TOOL("nbdinfo");
	assert_int_equal(admin(NULL, "disk", "create", "alpha", "1M", NULL), 0);
	assert_int_equal(admin(NULL, "disk", "create", "beta", "2M", NULL), 0);
	snprintf(target, sizeof(target), "nbd://%s", T.addr);
	assert_int_equal(ts_run(argv, 30000, &out, true), 0);
	assert_non_null(strstr(out, "export=\"alpha\""));
	assert_non_null(strstr(out, "export=\"beta\""));
	free(out);
}

/* ---- our own client (vdisk/nbdc.h) ---- */

static int nbd_connect(const char *disk)
{
	return nbdc_connect(T.addr, disk);
}

static int request(int fd, uint16_t type, uint16_t flags, uint64_t off,
		   uint32_t len, void *data, uint32_t magic)
{
	return nbdc_request(fd, type, flags, off, len, data, magic);
}

#define REQ_MAGIC 0x25609513u

static bool server_closed(int fd)
{
	uint8_t b;

	return recv(fd, &b, 1, 0) <= 0;
}

static void test_vdiskd_malformed_requests(void **state)
{
	uint8_t buf[B];
	int fd;

	(void)state;
	assert_int_equal(admin(NULL, "disk", "create", "m", "1M", NULL), 0);
	/* An unknown export fails the GO, not the server. */
	assert_int_equal(nbd_connect("nosuch"), -1);

	fd = nbd_connect("m");
	assert_true(fd >= 0);
	/* Errors that keep the connection. */
	assert_int_equal(request(fd, 0, 0, 1 << 20, B, buf, REQ_MAGIC),
			 -EINVAL); /* read past the end */
	assert_int_equal(request(fd, 0, 0, (1 << 20) - 10, 20, buf, REQ_MAGIC),
			 -EINVAL); /* read across the end */
	assert_int_equal(request(fd, 0, 0, 0, 64u << 20, buf, REQ_MAGIC),
			 -EINVAL); /* huge read */
	memset(buf, 7, B);
	assert_int_equal(request(fd, 1, 0, (1 << 20) - 100, B, buf, REQ_MAGIC),
			 -EINVAL); /* write past the end, payload skipped */
	assert_int_equal(request(fd, 99, 0, 0, 0, NULL, REQ_MAGIC),
			 -EINVAL); /* unknown command */
	assert_int_equal(request(fd, 0, 0x100, 0, B, buf, REQ_MAGIC),
			 -EINVAL); /* unknown flag */
	assert_int_equal(request(fd, 4, 0, 1 << 20, B, NULL, REQ_MAGIC),
			 -EINVAL); /* trim past the end */
	/* ...and it still works. */
	assert_int_equal(request(fd, 1, 1, 0, B, buf, REQ_MAGIC), 0);
	assert_int_equal(request(fd, 0, 0, 0, B, buf, REQ_MAGIC), 0);
	assert_int_equal(buf[100], 7);
	/* Bad magic: closed. */
	assert_int_equal(request(fd, 0, 0, 0, B, buf, 0xdeadbeef), -ECONNRESET);
	close(fd);
	/* A write announcing 1 GiB: closed before reading it. */
	fd = nbd_connect("m");
	assert_true(fd >= 0);
	assert_int_equal(request(fd, 1, 0, 0, 1u << 30, NULL, REQ_MAGIC),
			 -ECONNRESET);
	close(fd);
	/* Garbage instead of a request. */
	fd = nbd_connect("m");
	assert_true(fd >= 0);
	assert_int_equal(
		send(fd, "garbage!garbage!garbage!garbage!", 32, MSG_NOSIGNAL),
		32);
	assert_true(server_closed(fd));
	close(fd);
	/* Garbage instead of the handshake's client flags and option. */
	fd = nbdc_dial(T.addr);
	assert_true(fd >= 0);
	assert_int_equal(recv(fd, buf, 18, MSG_WAITALL), 18);
	assert_int_equal(
		send(fd, "\xff\xff\xff\xffgarbage!garbage!", 20, MSG_NOSIGNAL),
		20);
	assert_true(server_closed(fd));
	close(fd);
	/* The server is alive and the data intact. */
	fd = nbd_connect("m");
	assert_true(fd >= 0);
	assert_int_equal(request(fd, 0, 0, 0, B, buf, REQ_MAGIC), 0);
	assert_int_equal(buf[4000], 7);
	request(fd, 2, 0, 0, 0, NULL, REQ_MAGIC);
	close(fd);
	assert_int_equal(kill(T.pid, 0), 0);
}

/*
 * kill -9 of the server in the middle of a write + flush loop: after a
 * restart every write acknowledged by a flush is there (or a later write
 * of the same block, whole).
 */
#define NBLK 32

static void test_vdiskd_kill9_keeps_flushed_writes(void **state)
{
	uint32_t acked = 0, i;
	uint8_t buf[B];
	uint64_t t0;
	int fd;

	(void)state;
	assert_int_equal(admin(NULL, "disk", "create", "k", "1M", NULL), 0);
	fd = nbd_connect("k");
	assert_true(fd >= 0);
	t0 = ts_now_ms();
	for (i = 1;; i++) {
		for (size_t k = 0; k < B; k += 4)
			memcpy(buf + k, &i, 4);
		if (request(fd, 1, 0, (uint64_t)(i % NBLK) * B, B, buf,
			    REQ_MAGIC))
			break;
		if (i % 4 == 0) {
			if (request(fd, 3, 0, 0, 0, NULL, REQ_MAGIC))
				break;
			acked = i;
		}
		if (ts_now_ms() - t0 > 300 && T.pid > 0) {
			kill(T.pid, SIGKILL);
			ts_stop(T.pid, 0, 5000);
			T.pid = 0;
		}
	}
	close(fd);
	printf("server killed after %u writes, %u acknowledged by flush\n", i,
	       acked);
	assert_true(acked > 0);
	start_server(T.addr);
	fd = nbd_connect("k");
	assert_true(fd >= 0);
	for (uint32_t b = 0; b < NBLK; b++) {
		uint32_t floor = 0, v;

		for (uint32_t w = 1; w <= acked; w++)
			if (w % NBLK == b)
				floor = w;
		assert_int_equal(
			request(fd, 0, 0, (uint64_t)b * B, B, buf, REQ_MAGIC),
			0);
		memcpy(&v, buf, 4);
		for (size_t k = 4; k < B; k += 4)
			if (memcmp(buf + k, &v, 4))
				fail_msg("block %u torn", b);
		if (v < floor || (v && v % NBLK != b))
			fail_msg("block %u holds write %u, flushed write was "
				 "%u",
				 b, v, floor);
	}
	close(fd);
}

/* Write fences: a writer opened as "disk@epoch" loses its writes once a
 * higher epoch opened the disk; a lower epoch cannot open it at all, also
 * after a server restart; plain names are not fenced. */
static void test_vdiskd_write_epochs_fence_old_writers(void **state)
{
	uint8_t b[4096];
	int old, cur, plain;

	(void)state;
	memset(b, 0x33, sizeof(b));
	assert_int_equal(admin(NULL, "disk", "create", "f", "1M", NULL), 0);
	old = nbdc_connect(T.addr, "f@5");
	assert_true(old >= 0);
	assert_int_equal(nbdc_request(old, NBDC_WRITE, 0, 0, sizeof(b), b,
				      NBDC_REQUEST_MAGIC),
			 0);
	cur = nbdc_connect(T.addr, "f@7");
	assert_true(cur >= 0);
	/* EPERM for the passed writer; reads still work. */
	assert_int_equal(nbdc_request(old, NBDC_WRITE, 0, 0, sizeof(b), b,
				      NBDC_REQUEST_MAGIC),
			 -EPERM);
	assert_int_equal(nbdc_request(old, NBDC_READ, 0, 0, sizeof(b), b,
				      NBDC_REQUEST_MAGIC),
			 0);
	assert_int_equal(nbdc_request(cur, NBDC_WRITE, 0, 0, sizeof(b), b,
				      NBDC_REQUEST_MAGIC),
			 0);
	assert_true(nbdc_connect(T.addr, "f@6") < 0);
	assert_true(nbdc_connect(T.addr, "f@x") < 0);
	plain = nbdc_connect(T.addr, "f");
	assert_true(plain >= 0);
	assert_int_equal(nbdc_request(plain, NBDC_WRITE, 0, 4096, sizeof(b), b,
				      NBDC_REQUEST_MAGIC),
			 0);
	close(old);
	close(cur);
	close(plain);
	/* The fence outlives the server. */
	ts_stop(T.pid, SIGKILL, 5000);
	start_server(T.addr);
	assert_true(nbdc_connect(T.addr, "f@6") < 0);
	cur = nbdc_connect(T.addr, "f@8");
	assert_true(cur >= 0);
	close(cur);
	/* Deleting the disk removes its fence with it. */
	assert_int_equal(admin(NULL, "disk", "delete", "f", NULL), 0);
}

/* One disk's slow flush (the vdisk.flush fault point stalls every flush
 * 3 s) holds up nothing of another disk: while the last client of disk
 * "slow" leaves and its flush-on-close stalls, a fenced writer of disk
 * "fast" writes, and a third disk opens, each in well under the stall.
 * With the daemon-wide lock held across that flush both waited for it. */
static void test_vdiskd_slow_flush_blocks_no_other_disk(void **state)
{
	uint8_t b[B];
	uint64_t t0, write_ms, open_ms;
	int slow, fast, other;

	(void)state;
	if (!cell_fault_points_built()) {
		printf("# SKIP: built without fault points "
		       "(-DCELLMON_FAULT_POINTS=ON, as tests/run builds)\n");
		skip();
	}
	memset(b, 0x5a, sizeof(b));
	for (const char *const *n =
		     (const char *const[]){"slow", "fast", "other", NULL};
	     *n; n++)
		assert_int_equal(admin(NULL, "disk", "create", *n, "1M", NULL),
				 0);
	ts_stop(T.pid, SIGTERM, 5000);
	setenv("CELLMON_FAULT", "vdisk.flush", 1);
	setenv("CELLMON_FAULT_ACTION", "sleep:3000", 1);
	start_server("127.0.0.1:0");
	unsetenv("CELLMON_FAULT");
	unsetenv("CELLMON_FAULT_ACTION");
	fast = nbdc_connect(T.addr, "fast@3");
	assert_true(fast >= 0);
	slow = nbdc_connect(T.addr, "slow");
	assert_true(slow >= 0);
	assert_int_equal(
		nbdc_request(slow, NBDC_WRITE, 0, 0, B, b, NBDC_REQUEST_MAGIC),
		0);
	/* The last client of "slow" leaves: its flush starts and stalls. */
	nbdc_request(slow, NBDC_DISC, 0, 0, 0, NULL, NBDC_REQUEST_MAGIC);
	close(slow);
	usleep(300 * 1000);
	t0 = ts_now_ms();
	assert_int_equal(
		nbdc_request(fast, NBDC_WRITE, 0, 0, B, b, NBDC_REQUEST_MAGIC),
		0);
	write_ms = ts_now_ms() - t0;
	t0 = ts_now_ms();
	other = nbdc_connect(T.addr, "other");
	open_ms = ts_now_ms() - t0;
	assert_true(other >= 0);
	printf("# during a 3 s flush of another disk: write %llu ms, open "
	       "%llu ms\n",
	       (unsigned long long)write_ms, (unsigned long long)open_ms);
	assert_true(write_ms < 1500);
	assert_true(open_ms < 1500);
	close(other);
	close(fast);
}

/* ---- through the manager: cellctl disk ... ---- */

static pid_t start_manager(const char *vdiskd_admin, char *ctl, size_t len)
{
	char sd[700], vd[200], path[800], addr[160];
	char *argv[] = {MANAGER_BIN,
			sd,
			"--agent-listen=127.0.0.1:0",
			"--ctl-listen=127.0.0.1:0",
			vd,
			"--insecure=true",
			NULL};
	char logp[700];
	pid_t pid;

	snprintf(sd, sizeof(sd), "--state-dir=%s/mgr", T.dir);
	snprintf(vd, sizeof(vd), "--vdiskd=%s", vdiskd_admin);
	snprintf(logp, sizeof(logp), "%s/manager.log", T.dir);
	pid = ts_spawn(argv, logp);
	assert_true(pid > 0);
	snprintf(path, sizeof(path), "%s/mgr", T.dir);
	if (ts_manager_addrs(path, NULL, 0, addr, sizeof(addr), 5000)) {
		snprintf(ctl, len, "--manager=%s", addr);
		return pid;
	}
	fail_msg("manager did not start");
	return -1;
}

static char ctl_addr[200];

/* cellctl with -o json; exit code, stdout+stderr into *out. */
static int cellctl(char **out, ...)
{
	char *argv[16] = {CELLCTL_BIN, ctl_addr};
	int n = 2;
	va_list ap;

	va_start(ap, out);
	while (n < 15 && (argv[n] = va_arg(ap, char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	return ts_run(argv, 30000, out, true);
}

static void test_vdiskd_cellctl_through_manager(void **state)
{
	char path[800], *addrs, *admin, *out = NULL;
	pid_t mgr;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/vdiskd.addr", T.store);
	addrs = ts_read_file(path);
	admin = strstr(addrs, "admin=");
	assert_non_null(admin);
	admin += 6;
	admin[strcspn(admin, "\n")] = 0;
	mgr = start_manager(admin, ctl_addr, sizeof(ctl_addr));
	free(addrs);

	assert_int_equal(cellctl(&out, "disk", "create", "web", "8M", NULL), 0);
	free(out);
	assert_int_equal(cellctl(&out, "disk", "create", "web", "8M", NULL),
			 5); /* exists */
	assert_non_null(strstr(out, "exists"));
	free(out);
	assert_int_equal(cellctl(&out, "disk", "create", "x", "8Q", NULL), 2);
	free(out);
	assert_int_equal(cellctl(&out, "disk", "info", "nosuch", NULL), 4);
	free(out);
	/* A disk with a client is in use: no delete, no clone. */
	fd = nbd_connect("web");
	assert_true(fd >= 0);
	assert_int_equal(
		cellctl(&out, "-o", "json", "disk", "info", "web", NULL), 0);
	assert_non_null(strstr(out, "\"clients\": 1"));
	free(out);
	assert_int_equal(cellctl(&out, "disk", "delete", "web", NULL), 5);
	assert_non_null(strstr(out, "in use"));
	free(out);
	assert_int_equal(cellctl(&out, "disk", "clone", "web", "web2", NULL),
			 5);
	free(out);
	request(fd, 2, 0, 0, 0, NULL, REQ_MAGIC);
	close(fd);
	/* The last client gone, the disk can be cloned, then deleted only
	 * after its clone. */
	for (int i = 0; i < 100; i++) {
		if (cellctl(&out, "disk", "clone", "web", "web2", NULL) == 0)
			break;
		free(out);
		out = NULL;
		usleep(20000);
	}
	assert_non_null(out);
	free(out);
	assert_int_equal(cellctl(&out, "-o", "json", "disk", "list", NULL), 0);
	assert_non_null(strstr(out, "\"name\": \"web2\""));
	assert_non_null(strstr(out, "\"frozen\": true"));
	free(out);
	assert_int_equal(cellctl(&out, "disk", "delete", "web", NULL), 5);
	free(out);
	assert_int_equal(cellctl(&out, "disk", "delete", "web2", NULL), 0);
	free(out);
	assert_int_equal(cellctl(&out, "disk", "delete", "web", NULL), 0);
	free(out);
	/* The disk server gone: cellctl says so, exit 1. */
	ts_stop(T.pid, SIGTERM, 5000);
	T.pid = 0;
	assert_int_equal(cellctl(&out, "disk", "list", NULL), 1);
	assert_non_null(strstr(out, "disk server"));
	printf("without a disk server: %s", out);
	free(out);
	ts_stop(mgr, SIGTERM, 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vdiskd_qemu_io_patterns,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdiskd_convert_base_and_clone, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdiskd_write_epochs_fence_old_writers, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_vdiskd_nbdinfo_list, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_vdiskd_malformed_requests,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdiskd_kill9_keeps_flushed_writes, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_vdiskd_cellctl_through_manager, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdiskd_slow_flush_blocks_no_other_disk, setup,
			teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
