/*
 * Unit tests of the node-wide block cache (node-agent/agent_cache.c):
 * hits and misses, LRU eviction at the bound, namespaces kept apart, a
 * failed fill keeps nothing, no caching at size 0, and concurrent misses
 * of one block read it once.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_disk.h"

struct src {
	int fills;
	int fail; /* fail this many fills */
	unsigned delay_us;
	pthread_mutex_t mu;
};

static int fill(void *arg, uint64_t block, void *buf)
{
	struct src *s = arg;

	pthread_mutex_lock(&s->mu);
	s->fills++;
	if (s->fail > 0) {
		s->fail--;
		pthread_mutex_unlock(&s->mu);
		return -EIO;
	}
	pthread_mutex_unlock(&s->mu);
	if (s->delay_us)
		usleep(s->delay_us);
	memset(buf, (int)(block & 0xff), AGENT_BLOCK);
	return 0;
}

static void read_ok(struct agent_cache *c, const char *ns, uint64_t b,
		    struct src *s)
{
	uint8_t buf[AGENT_BLOCK];

	assert_int_equal(agent_cache_read(c, ns, b, buf, fill, s), 0);
	assert_int_equal(buf[0], b & 0xff);
	assert_int_equal(buf[AGENT_BLOCK - 1], b & 0xff);
}

/* Four blocks fit; the fifth evicts the least recently used. */
static void test_cache_lru_bound_and_hits(void **state)
{
	struct agent_cache *c;
	struct agent_cache_stats st;
	struct src s = {.mu = PTHREAD_MUTEX_INITIALIZER};

	(void)state;
	assert_int_equal(agent_cache_create(4 * AGENT_BLOCK, &c), 0);
	for (uint64_t b = 0; b < 4; b++)
		read_ok(c, "base:x", b, &s);
	assert_int_equal(s.fills, 4);
	read_ok(c, "base:x", 0, &s); /* 0 is now the most recent */
	assert_int_equal(s.fills, 4);
	read_ok(c, "base:x", 9, &s); /* evicts 1 */
	assert_int_equal(s.fills, 5);
	read_ok(c, "base:x", 0, &s);
	read_ok(c, "base:x", 2, &s);
	assert_int_equal(s.fills, 5);
	read_ok(c, "base:x", 1, &s);
	assert_int_equal(s.fills, 6);
	agent_cache_stats(c, &st);
	assert_int_equal(st.misses, 6);
	assert_int_equal(st.hits, 3);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.capacity, 4);
	agent_cache_destroy(c);
}

/* The same block number in two namespaces is two entries; a failed fill
 * leaves nothing behind; size 0 caches nothing. */
static void test_cache_namespaces_failures_and_off(void **state)
{
	struct agent_cache *c;
	struct src s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	uint8_t buf[AGENT_BLOCK];

	(void)state;
	assert_int_equal(agent_cache_create(8 * AGENT_BLOCK, &c), 0);
	read_ok(c, "base:a", 3, &s);
	read_ok(c, "disk:b", 3, &s);
	assert_int_equal(s.fills, 2);
	s.fail = 1;
	assert_int_equal(agent_cache_read(c, "base:a", 4, buf, fill, &s), -EIO);
	read_ok(c, "base:a", 4, &s);
	assert_int_equal(s.fills, 4);
	agent_cache_destroy(c);

	assert_int_equal(agent_cache_create(0, &c), 0);
	read_ok(c, "base:a", 1, &s);
	read_ok(c, "base:a", 1, &s);
	assert_int_equal(s.fills, 6);
	agent_cache_destroy(c);
}

struct reader {
	struct agent_cache *c;
	struct src *s;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[AGENT_BLOCK];

	for (uint64_t b = 0; b < 8; b++)
		if (agent_cache_read(r->c, "base:shared", b, buf, fill, r->s) ||
		    buf[0] != b)
			return (void *)1;
	return NULL;
}

/* Four readers missing the same blocks at once: each block is read from
 * the source once. */
static void test_cache_concurrent_misses_fill_once(void **state)
{
	struct agent_cache *c;
	struct agent_cache_stats st;
	struct src s = {.delay_us = 20000, .mu = PTHREAD_MUTEX_INITIALIZER};
	struct reader r;
	pthread_t t[4];
	void *res;

	(void)state;
	assert_int_equal(agent_cache_create(64 * AGENT_BLOCK, &c), 0);
	r = (struct reader){c, &s};
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r),
				 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	assert_int_equal(s.fills, 8);
	agent_cache_stats(c, &st);
	assert_int_equal(st.misses, 8);
	assert_int_equal(st.hits, 24);
	assert_true(st.waits > 0);
	agent_cache_destroy(c);
}

struct run_src {
	int calls, blocks;
	unsigned delay_us;
	pthread_mutex_t mu;
};

static int fill_run(void *arg, uint64_t first, uint32_t n, void *buf)
{
	struct run_src *s = arg;
	uint8_t *p = buf;

	pthread_mutex_lock(&s->mu);
	s->calls++;
	s->blocks += (int)n;
	pthread_mutex_unlock(&s->mu);
	if (s->delay_us)
		usleep(s->delay_us);
	for (uint32_t i = 0; i < n; i++)
		memset(p + (size_t)i * AGENT_BLOCK, (int)((first + i) & 0xff),
		       AGENT_BLOCK);
	return 0;
}

static void check_run(const uint8_t *buf, uint64_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(buf[(size_t)i * AGENT_BLOCK],
				 (first + i) & 0xff);
		assert_int_equal(buf[(size_t)(i + 1) * AGENT_BLOCK - 1],
				 (first + i) & 0xff);
	}
}

/* A run reads each gap between cached blocks with one call. */
static void test_cache_run_fills_gaps_once_each(void **state)
{
	static uint8_t buf[16 * AGENT_BLOCK];
	struct agent_cache *c;
	struct run_src s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct agent_cache_stats st;

	(void)state;
	assert_int_equal(agent_cache_create(64 * AGENT_BLOCK, &c), 0);
	assert_int_equal(agent_cache_read_run(c, "b", 4, 2, buf, fill_run, &s),
			 0);
	assert_int_equal(agent_cache_read_run(c, "b", 10, 1, buf, fill_run, &s),
			 0);
	s.calls = s.blocks = 0;
	/* 0..15 with 4,5 and 10 cached: gaps 0-3, 6-9, 11-15. */
	assert_int_equal(agent_cache_read_run(c, "b", 0, 16, buf, fill_run, &s),
			 0);
	check_run(buf, 0, 16);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.blocks, 13);
	s.calls = 0;
	assert_int_equal(agent_cache_read_run(c, "b", 0, 16, buf, fill_run, &s),
			 0);
	check_run(buf, 0, 16);
	assert_int_equal(s.calls, 0);
	agent_cache_stats(c, &st);
	assert_int_equal(st.misses, 16);
	assert_int_equal(st.hits, 19);
	assert_int_equal(agent_cache_read_run(c, "b", 0, AGENT_RUN_MAX + 1, buf,
					      fill_run, &s),
			 -EINVAL);
	agent_cache_destroy(c);
}

struct run_reader {
	struct agent_cache *c;
	struct run_src *s;
	int bad;
};

static void *run_reader_main(void *arg)
{
	struct run_reader *r = arg;
	static __thread uint8_t buf[8 * AGENT_BLOCK];

	for (uint64_t b = 0; b < 64; b += 8) {
		if (agent_cache_read_run(r->c, "shared", b, 8, buf, fill_run,
					 r->s))
			r->bad = 1;
		for (int i = 0; i < 8; i++)
			if (buf[(size_t)i * AGENT_BLOCK] != ((b + i) & 0xff))
				r->bad = 1;
	}
	return NULL;
}

/* Four readers of the same runs at once: every block is filled once and
 * every reader gets the right bytes. */
static void test_cache_run_concurrent_fill_once(void **state)
{
	struct agent_cache *c;
	struct run_src s = {.delay_us = 5000, .mu = PTHREAD_MUTEX_INITIALIZER};
	struct run_reader r[4];
	pthread_t t[4];

	(void)state;
	assert_int_equal(agent_cache_create(128 * AGENT_BLOCK, &c), 0);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct run_reader){c, &s, 0};
		assert_int_equal(
			pthread_create(&t[i], NULL, run_reader_main, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].bad, 0);
	}
	assert_int_equal(s.blocks, 64);
	agent_cache_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_lru_bound_and_hits),
		cmocka_unit_test(test_cache_namespaces_failures_and_off),
		cmocka_unit_test(test_cache_concurrent_misses_fill_once),
		cmocka_unit_test(test_cache_run_fills_gaps_once_each),
		cmocka_unit_test(test_cache_run_concurrent_fill_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
