/*
 * libvdisk: reads and writes through chains, clone and delete rules,
 * refusal of damaged files, journal replay, and crashes at every write
 * and sync step of the journal path (a forked child dies at a fault
 * point; the parent reopens and checks every flushed write).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cell/fault.h"
#include "testsupport.h"
#include "vdisk/vdisk.h"

#define B VDISK_BLOCK

static char store[4096];
static char err[600];

static int setup(void **state)
{
	char *dir = ts_tmpdir("vdisk");

	(void)state;
	snprintf(store, sizeof(store), "%s", dir);
	free(dir);
	assert_int_equal(vdisk_store_init(store, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ts_rmtree(store);
	return 0;
}

static void path_of(char *out, size_t len, const char *name, const char *file)
{
	snprintf(out, len, "%s/disks/%s/%s", store, name, file);
}

static void fill(uint8_t *buf, size_t len, uint32_t tag)
{
	for (size_t i = 0; i < len; i += 4)
		memcpy(buf + i, &tag, 4);
}

static struct vdisk *open_ok(const char *name)
{
	struct vdisk *d = NULL;

	if (vdisk_open(store, name, &d, err, sizeof(err)))
		fail_msg("open %s: %s", name, err);
	return d;
}

static void expect_refused(const char *name, const char *why)
{
	struct vdisk *d = NULL;
	int rc = vdisk_open(store, name, &d, err, sizeof(err));

	if (rc == 0) {
		vdisk_close(d);
		fail_msg("%s: opened a disk with %s", name, why);
	}
	printf("refused (%s): %s\n", why, err);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void test_vdisk_write_read_reopen(void **state)
{
	uint8_t *w = malloc(64 * B), *r = malloc(64 * B);
	struct vdisk *d;

	(void)state;
	assert_int_equal(
		vdisk_create(store, "plain", 1 << 20, NULL, err, sizeof(err)),
		0);
	assert_int_equal(
		vdisk_create(store, "plain", 1 << 20, NULL, err, sizeof(err)),
		-EEXIST);
	assert_int_equal(vdisk_create(store, "bad/name", 1 << 20, NULL, err,
				      sizeof(err)),
			 -EINVAL);
	assert_int_equal(
		vdisk_create(store, "odd", 1000, NULL, err, sizeof(err)),
		-EINVAL);
	d = open_ok("plain");
	/* A new disk reads as zeros. */
	assert_int_equal(vdisk_read(d, r, 0, 8 * B), 0);
	for (size_t i = 0; i < 8 * B; i++)
		assert_int_equal(r[i], 0);
	/* Aligned, unaligned, spanning blocks. */
	fill(w, 64 * B, 0xA1A1A1A1);
	assert_int_equal(vdisk_write(d, w, 0, 16 * B, false), 0);
	fill(w, 3 * B, 0xB2B2B2B2);
	assert_int_equal(vdisk_write(d, w, 5 * B + 100, 2 * B + 7, false), 0);
	assert_int_equal(vdisk_zero(d, 10 * B, 2 * B, false), 0);
	assert_int_equal(vdisk_zero(d, 13 * B + 10, 20, false), 0);
	assert_int_equal(vdisk_read(d, w, (1 << 20) - 10, 20), -EINVAL);
	assert_int_equal(vdisk_write(d, w, (1 << 20), 1, false), -EINVAL);
	assert_int_equal(vdisk_flush(d), 0);
	for (int pass = 0; pass < 2; pass++) {
		assert_int_equal(vdisk_read(d, r, 0, 16 * B), 0);
		for (size_t i = 0; i < 16 * B; i++) {
			uint8_t want = 0xA1;

			if (i >= 5 * B + 100 && i < 7 * B + 107)
				want = 0xB2;
			if ((i >= 10 * B && i < 12 * B) ||
			    (i >= 13 * B + 10 && i < 13 * B + 30))
				want = 0;
			if (r[i] != want)
				fail_msg("pass %d: byte %zu is %02x, want %02x",
					 pass, i, r[i], want);
		}
		vdisk_close(d);
		d = open_ok("plain");
	}
	vdisk_close(d);
	free(w);
	free(r);
}

static void test_vdisk_chain_clone_delete(void **state)
{
	uint8_t *base = malloc(16 * B), r[B], w[B];
	char id[VDISK_ID_LEN + 1], id2[VDISK_ID_LEN + 1], parent[80];
	char bpath[4200];
	struct vdisk_info info;
	struct vdisk *d;
	int fd;

	(void)state;
	for (size_t i = 0; i < 16 * B; i++)
		base[i] = (uint8_t)(i * 7 + 3);
	snprintf(bpath, sizeof(bpath), "%s/base.img", store);
	fd = open(bpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, base, 16 * B), 16 * B);
	close(fd);
	assert_int_equal(vdisk_base_import(store, bpath, id, err, sizeof(err)),
			 0);
	assert_int_equal(vdisk_base_import(store, bpath, id2, err, sizeof(err)),
			 0);
	assert_string_equal(id, id2);
	snprintf(parent, sizeof(parent), "base:%s", id);
	/* Larger than its base: the rest reads as zeros. */
	assert_int_equal(
		vdisk_create(store, "gold", 32 * B, parent, err, sizeof(err)),
		0);
	d = open_ok("gold");
	assert_int_equal(vdisk_read(d, r, 3 * B, B), 0);
	assert_memory_equal(r, base + 3 * B, B);
	assert_int_equal(vdisk_read(d, r, 20 * B, B), 0);
	for (int i = 0; i < (int)B; i++)
		assert_int_equal(r[i], 0);
	fill(w, B, 0x60606060);
	assert_int_equal(vdisk_write(d, w, 3 * B, B, true), 0);
	vdisk_close(d);

	assert_int_equal(vdisk_clone(store, "gold", "vm1", err, sizeof(err)),
			 0);
	assert_int_equal(vdisk_clone(store, "gold", "vm2", err, sizeof(err)),
			 0);
	assert_int_equal(vdisk_info(store, "vm1", &info, err, sizeof(err)), 0);
	assert_true(strcmp(info.parent, "disk:gold") == 0);
	assert_int_equal(info.chain_depth, 1);
	d = open_ok("gold");
	assert_true(vdisk_readonly(d));
	assert_int_equal(vdisk_write(d, w, 0, B, false), -EROFS);
	vdisk_close(d);

	d = open_ok("vm1");
	assert_int_equal(vdisk_read(d, r, 3 * B, B), 0); /* gold's write */
	assert_memory_equal(r, w, B);
	assert_int_equal(vdisk_read(d, r, 4 * B, B), 0); /* the base */
	assert_memory_equal(r, base + 4 * B, B);
	fill(w, B, 0x71717171);
	assert_int_equal(vdisk_write(d, w, 4 * B, B, true), 0);
	assert_int_equal(vdisk_read(d, r, 4 * B, B), 0);
	assert_memory_equal(r, w, B);
	vdisk_close(d);
	d = open_ok("vm2"); /* vm1's write is not vm2's */
	assert_int_equal(vdisk_read(d, r, 4 * B, B), 0);
	assert_memory_equal(r, base + 4 * B, B);
	vdisk_close(d);

	assert_int_equal(vdisk_delete(store, "gold", err, sizeof(err)), -EBUSY);
	printf("delete refused: %s\n", err);
	assert_int_equal(vdisk_delete(store, "vm1", err, sizeof(err)), 0);
	assert_int_equal(vdisk_delete(store, "vm2", err, sizeof(err)), 0);
	assert_int_equal(vdisk_delete(store, "gold", err, sizeof(err)), 0);
	assert_int_equal(vdisk_info(store, "gold", &info, err, sizeof(err)),
			 -ENOENT);
	free(base);
}

/* A disk with two flushed blocks, for damaging. */
static void make_flushed(const char *name)
{
	uint8_t w[2 * B];
	struct vdisk *d;

	assert_int_equal(
		vdisk_create(store, name, 64 * B, NULL, err, sizeof(err)), 0);
	d = open_ok(name);
	fill(w, sizeof(w), 0x5A5A5A5A);
	assert_int_equal(vdisk_write(d, w, 0, 2 * B, false), 0);
	assert_int_equal(vdisk_flush(d), 0);
	vdisk_close(d);
}

/* The map a caching client gets: a disk over a base names the base and
 * marks only its own blocks; a frozen disk is all "below" under its uid;
 * a clone names the frozen disk's uid; a plain disk names "zero". */
static void test_vdisk_map_names_immutable_part(void **state)
{
	uint8_t base[4 * B], w[B];
	char id[VDISK_ID_LEN + 1], parent[80], bpath[4200], frozen[96];
	struct vdisk_map m;
	struct vdisk *d;
	int fd;

	(void)state;
	memset(base, 0x42, sizeof(base));
	snprintf(bpath, sizeof(bpath), "%s/base.img", store);
	fd = open(bpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, base, sizeof(base)), sizeof(base));
	close(fd);
	assert_int_equal(vdisk_base_import(store, bpath, id, err, sizeof(err)),
			 0);
	snprintf(parent, sizeof(parent), "base:%s", id);
	assert_int_equal(
		vdisk_create(store, "top", 8 * B, parent, err, sizeof(err)), 0);
	d = open_ok("top");
	fill(w, B, 5);
	assert_int_equal(vdisk_write(d, w, 3 * B, B, false), 0);
	assert_int_equal(vdisk_map_get(d, &m), 0);
	assert_string_equal(m.below, parent);
	assert_int_equal(m.nblocks, 8);
	assert_int_equal(m.top[0], 1u << 3);
	vdisk_map_free(&m);
	vdisk_close(d);
	/* Freeze it by cloning: the frozen disk is all below. */
	assert_int_equal(vdisk_clone(store, "top", "kid", err, sizeof(err)), 0);
	d = open_ok("top");
	assert_int_equal(vdisk_map_get(d, &m), 0);
	assert_int_equal(strncmp(m.below, "disk:", 5), 0);
	assert_int_equal(m.top[0], 0);
	snprintf(frozen, sizeof(frozen), "%s", m.below);
	vdisk_map_free(&m);
	vdisk_close(d);
	d = open_ok("kid");
	assert_int_equal(vdisk_map_get(d, &m), 0);
	assert_string_equal(m.below, frozen);
	assert_int_equal(m.top[0], 0);
	vdisk_map_free(&m);
	vdisk_close(d);
	/* Two plain disks: "zero" below, different uids never collide. */
	assert_int_equal(vdisk_create(store, "p1", 4 * B, "", err, sizeof(err)),
			 0);
	d = open_ok("p1");
	assert_int_equal(vdisk_map_get(d, &m), 0);
	assert_string_equal(m.below, "zero");
	vdisk_map_free(&m);
	vdisk_close(d);
}

static void test_vdisk_refuses_damaged_files(void **state)
{
	char p[4300], q[4300];
	char id[VDISK_ID_LEN + 1], parent[80];
	uint8_t buf[B];
	struct vdisk *d;
	int fd;

	(void)state;
	make_flushed("m1");
	path_of(p, sizeof(p), "m1", "meta");
	flip_byte(p, 0);
	expect_refused("m1", "bad meta magic");

	make_flushed("m2");
	path_of(p, sizeof(p), "m2", "meta");
	flip_byte(p, 17);
	expect_refused("m2", "bad meta checksum");

	make_flushed("m3");
	path_of(p, sizeof(p), "m3", "meta");
	assert_int_equal(truncate(p, 100), 0);
	expect_refused("m3", "truncated meta");

	/* A record before the flush mark damaged. */
	make_flushed("j1");
	path_of(p, sizeof(p), "j1", "journal");
	flip_byte(p, 9);
	expect_refused("j1", "damaged flushed record");

	/* Data file shorter than the flushed records say. */
	make_flushed("j2");
	path_of(p, sizeof(p), "j2", "data");
	assert_int_equal(truncate(p, B), 0);
	expect_refused("j2", "record past the end of the data");

	/* A flushed data block damaged: the read fails, never wrong bytes. */
	make_flushed("j3");
	path_of(p, sizeof(p), "j3", "data");
	flip_byte(p, B + 5);
	d = open_ok("j3");
	assert_int_equal(vdisk_read(d, buf, 0, B), 0);
	assert_int_equal(vdisk_read(d, buf, B, B), -EIO);
	vdisk_close(d);

	/* A missing base, and a base that changed size. */
	snprintf(p, sizeof(p), "%s/b.img", store);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	memset(buf, 9, B);
	assert_int_equal(write(fd, buf, B), B);
	close(fd);
	assert_int_equal(vdisk_base_import(store, p, id, err, sizeof(err)), 0);
	snprintf(parent, sizeof(parent), "base:%s", id);
	assert_int_equal(
		vdisk_create(store, "b1", 4 * B, parent, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/bases/%s.raw", store, id);
	snprintf(q, sizeof(q), "%s/bases/%s.moved", store, id);
	assert_int_equal(rename(p, q), 0);
	expect_refused("b1", "missing base");
	assert_int_equal(rename(q, p), 0);
	chmod(p, 0644);
	assert_int_equal(truncate(p, 2 * B), 0);
	expect_refused("b1", "resized base");
	assert_int_equal(
		vdisk_create(store, "b2", 4 * B, "base:0123", err, sizeof(err)),
		-EINVAL);
}

static void test_vdisk_unflushed_tail_cut(void **state)
{
	uint8_t w[B], r[B];
	struct vdisk_stats st;
	char p[4300];
	struct vdisk *d;
	int fd;

	(void)state;
	make_flushed("t1"); /* blocks 0, 1 = 0x5A */
	d = open_ok("t1");
	fill(w, B, 0x13131313);
	assert_int_equal(vdisk_write(d, w, 0, B, false), 0);
	vdisk_close(d); /* records written, data never synced */
	/* The unflushed write's data is lost (as a crash may do). */
	path_of(p, sizeof(p), "t1", "data");
	assert_int_equal(truncate(p, 2 * B), 0);
	/* And a torn record at the end of the journal. */
	path_of(p, sizeof(p), "t1", "journal");
	fd = open(p, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "torn", 4), 4);
	close(fd);
	d = open_ok("t1");
	vdisk_stats(d, &st);
	printf("replayed %llu records, dropped %llu\n",
	       (unsigned long long)st.replayed, (unsigned long long)st.dropped);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(vdisk_read(d, r, 0, B), 0);
	fill(w, B, 0x5A5A5A5A);
	assert_memory_equal(r, w, B); /* the flushed value */
	/* New writes go after the cut and survive a reopen. */
	fill(w, B, 0x24242424);
	assert_int_equal(vdisk_write(d, w, 0, B, true), 0);
	vdisk_close(d);
	d = open_ok("t1");
	assert_int_equal(vdisk_read(d, r, 0, B), 0);
	assert_memory_equal(r, w, B);
	vdisk_close(d);
}

/*
 * Crash points. The child writes block (i % NB) with tag i, flushes
 * every third write and reports each flushed i on a pipe, until the fault
 * point kills it. After reopening, every block holds the tag of its last
 * write flushed before the crash or of a later write, whole and never
 * garbage.
 */
#define NB 24

static uint32_t block_tag(const uint8_t *b)
{
	uint32_t t;

	memcpy(&t, b, 4);
	for (size_t i = 4; i < B; i += 4)
		if (memcmp(b + i, &t, 4) != 0)
			return UINT32_MAX; /* torn or garbage */
	return t;
}

static void crash_child(const char *name, int wfd)
{
	uint8_t w[B];
	struct vdisk *d = NULL;

	if (vdisk_open(store, name, &d, err, sizeof(err)))
		_exit(3);
	for (uint32_t i = 1; i < 100000; i++) {
		fill(w, B, i);
		if (vdisk_write(d, w, (uint64_t)(i % NB) * B, B, false))
			_exit(4);
		if (i % 3 == 0) {
			if (vdisk_flush(d))
				_exit(5);
			if (write(wfd, &i, sizeof(i)) != sizeof(i))
				_exit(6);
		}
	}
	_exit(0);
}

static void crash_run(const char *step, int after)
{
	char name[64];
	uint32_t acked = 0, v;
	int pfd[2], status;
	uint8_t r[B];
	struct vdisk *d;
	pid_t pid;

	snprintf(name, sizeof(name), "crash-%s-%d", step, after);
	assert_int_equal(
		vdisk_create(store, name, NB * B, NULL, err, sizeof(err)), 0);
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		char n[16];

		close(pfd[0]);
		snprintf(n, sizeof(n), "%d", after);
		setenv("CELLMON_FAULT", step, 1);
		setenv("CELLMON_FAULT_AFTER", n, 1);
		crash_child(name, pfd[1]);
	}
	close(pfd[1]);
	while (read(pfd[0], &v, sizeof(v)) == sizeof(v))
		acked = v;
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 99)
		fail_msg("%s/%d: child did not die at the fault point "
			 "(status 0x%x)",
			 step, after, status);
	d = open_ok(name);
	for (uint32_t b = 0; b < NB; b++) {
		/* The last write of b at or before the last flush. */
		uint32_t floor = 0;

		for (uint32_t i = 1; i <= acked; i++)
			if (i % NB == b)
				floor = i;
		assert_int_equal(vdisk_read(d, r, (uint64_t)b * B, B), 0);
		v = block_tag(r);
		if (v == UINT32_MAX || v < floor || (v && v % NB != b))
			fail_msg("%s/%d: block %u holds tag %u, last flushed "
				 "write was %u (acked up to %u)",
				 step, after, b, v, floor, acked);
	}
	vdisk_close(d);
}

static void test_vdisk_crash_at_every_step(void **state)
{
	const char *steps[] = {"vdisk.data-write", "vdisk.journal-write",
			       "vdisk.data-sync", "vdisk.mark-write",
			       "vdisk.journal-sync"};
	int runs = 0;

	(void)state;
	if (!cell_fault_points_built()) {
		printf("# SKIP: built without fault points "
		       "(-DCELLMON_FAULT_POINTS=ON, as tests/run builds)\n");
		skip();
	}
	for (int s = 0; s < 5; s++) {
		for (int after = 1; after <= 40; after += 13) {
			crash_run(steps[s], after);
			runs++;
		}
	}
	printf("%d crash runs: every flushed write survived\n", runs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vdisk_write_read_reopen,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdisk_map_names_immutable_part, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vdisk_chain_clone_delete,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_vdisk_refuses_damaged_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vdisk_unflushed_tail_cut,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_vdisk_crash_at_every_step,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
