/*
 * The node-wide block cache (agent_disk.h). Entries live in one array;
 * a hash of (namespace id, block) finds them and a doubly linked LRU list
 * orders the valid ones. An entry being filled is LOADING: it is never
 * evicted, and readers of the same block wait on the condition variable
 * instead of reading it from the server again.
 *
 * Namespaces are interned to small ids (a few per node: one per base
 * image or frozen disk in use).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "agent_disk.h"

#define NIL    UINT32_MAX
#define MAX_NS 1024
#define NS_LEN 96

enum { E_FREE, E_LOADING, E_VALID };

struct entry {
	uint32_t ns;
	uint8_t state;
	uint64_t block;
	uint32_t hnext;	     /* hash chain */
	uint32_t prev, next; /* LRU (valid) or free list (next only) */
};

struct agent_cache {
	pthread_mutex_t mu;
	pthread_cond_t filled;
	uint32_t cap;
	struct entry *e;
	uint8_t *data; /* cap blocks */
	uint32_t *bucket, nbuckets;
	uint32_t lru_head, lru_tail; /* head: most recent */
	uint32_t free_head;
	char (*ns)[NS_LEN];
	uint32_t nns;
	struct agent_cache_stats st;
};

int agent_cache_create(uint64_t bytes, struct agent_cache **out)
{
	struct agent_cache *c = calloc(1, sizeof(*c));
	uint64_t cap = bytes / AGENT_BLOCK;

	if (!c)
		return -ENOMEM;
	if (cap > UINT32_MAX / 4)
		cap = UINT32_MAX / 4;
	c->cap = (uint32_t)cap;
	for (c->nbuckets = 64; c->nbuckets < 2 * c->cap; c->nbuckets *= 2)
		;
	c->e = calloc(c->cap + 1, sizeof(*c->e));
	/* Faulted in now, once: a first touch per block on the read path
	 * costs more than the read itself on a virtualized host. */
	c->data = cap ? mmap(NULL, cap * AGENT_BLOCK, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
		      : NULL;
	if (c->data == MAP_FAILED)
		c->data = NULL;
	c->bucket = malloc(c->nbuckets * sizeof(*c->bucket));
	c->ns = calloc(MAX_NS, NS_LEN);
	if (!c->e || (cap && !c->data) || !c->bucket || !c->ns) {
		agent_cache_destroy(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->filled, NULL);
	memset(c->bucket, 0xff, c->nbuckets * sizeof(*c->bucket));
	c->lru_head = c->lru_tail = NIL;
	c->free_head = c->cap ? 0 : NIL;
	for (uint32_t i = 0; i < c->cap; i++)
		c->e[i].next = i + 1 < c->cap ? i + 1 : NIL;
	c->st.capacity = c->cap;
	*out = c;
	return 0;
}

void agent_cache_destroy(struct agent_cache *c)
{
	if (!c)
		return;
	free(c->e);
	if (c->data)
		munmap(c->data, (size_t)c->cap * AGENT_BLOCK);
	free(c->bucket);
	free(c->ns);
	free(c);
}

static uint32_t hash(const struct agent_cache *c, uint32_t ns, uint64_t b)
{
	uint64_t h = (b ^ (uint64_t)ns << 48) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32) & (c->nbuckets - 1);
}

/* The id of namespace s, interned; NIL when the table is full. */
static uint32_t ns_id(struct agent_cache *c, const char *s)
{
	for (uint32_t i = 0; i < c->nns; i++)
		if (strcmp(c->ns[i], s) == 0)
			return i;
	if (c->nns == MAX_NS || strlen(s) >= NS_LEN)
		return NIL;
	strcpy(c->ns[c->nns], s);
	return c->nns++;
}

static uint32_t find(const struct agent_cache *c, uint32_t ns, uint64_t b)
{
	uint32_t i = c->bucket[hash(c, ns, b)];

	while (i != NIL && (c->e[i].ns != ns || c->e[i].block != b))
		i = c->e[i].hnext;
	return i;
}

static void lru_unlink(struct agent_cache *c, uint32_t i)
{
	struct entry *e = &c->e[i];

	if (e->prev != NIL)
		c->e[e->prev].next = e->next;
	else
		c->lru_head = e->next;
	if (e->next != NIL)
		c->e[e->next].prev = e->prev;
	else
		c->lru_tail = e->prev;
}

static void lru_push(struct agent_cache *c, uint32_t i)
{
	c->e[i].prev = NIL;
	c->e[i].next = c->lru_head;
	if (c->lru_head != NIL)
		c->e[c->lru_head].prev = i;
	c->lru_head = i;
	if (c->lru_tail == NIL)
		c->lru_tail = i;
}

static void hash_unlink(struct agent_cache *c, uint32_t i)
{
	uint32_t *p = &c->bucket[hash(c, c->e[i].ns, c->e[i].block)];

	while (*p != i)
		p = &c->e[*p].hnext;
	*p = c->e[i].hnext;
}

/* A slot for a new entry: a free one, else the least recently used
 * valid one; NIL when every slot is being filled. */
static uint32_t take_slot(struct agent_cache *c)
{
	uint32_t i = c->free_head;

	if (i != NIL) {
		c->free_head = c->e[i].next;
		return i;
	}
	i = c->lru_tail;
	if (i == NIL)
		return NIL;
	lru_unlink(c, i);
	hash_unlink(c, i);
	c->st.evictions++;
	c->st.entries--;
	return i;
}

static void free_slot(struct agent_cache *c, uint32_t i)
{
	c->e[i].state = E_FREE;
	c->e[i].next = c->free_head;
	c->free_head = i;
}

/* ---- runs of blocks ---- */

enum { R_HIT, R_MINE, R_OTHER, R_THROUGH };

/* Under the lock: serves what is cached, claims what is missing (as
 * LOADING, ours to fill) and notes what someone else is filling. */
static void run_claim(struct agent_cache *c, uint32_t id, uint64_t first,
		      uint32_t n, uint8_t *buf, uint8_t *what, uint32_t *slot)
{
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = id == NIL ? NIL : find(c, id, first + k);

		if (i != NIL && c->e[i].state == E_VALID) {
			c->st.hits++;
			lru_unlink(c, i);
			lru_push(c, i);
			memcpy(buf + (size_t)k * AGENT_BLOCK,
			       c->data + (size_t)i * AGENT_BLOCK, AGENT_BLOCK);
			what[k] = R_HIT;
			continue;
		}
		if (i != NIL) { /* served by another reader's fill */
			c->st.waits++;
			c->st.hits++;
			what[k] = R_OTHER;
			continue;
		}
		c->st.misses++;
		i = id == NIL ? NIL : take_slot(c);
		what[k] = i == NIL ? R_THROUGH : R_MINE;
		slot[k] = i;
		if (i == NIL)
			continue;
		c->e[i] =
			(struct entry){id, E_LOADING, first + k, NIL, NIL, NIL};
		c->e[i].hnext = c->bucket[hash(c, id, first + k)];
		c->bucket[hash(c, id, first + k)] = i;
	}
}

int agent_cache_read_run(struct agent_cache *c, const char *ns, uint64_t first,
			 uint32_t n, void *buf, agent_cache_fill_run_fn fill,
			 void *arg)
{
	uint8_t what[AGENT_RUN_MAX], *p = buf;
	uint32_t slot[AGENT_RUN_MAX], id;
	int rc = 0;

	if (n > AGENT_RUN_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	id = ns_id(c, ns);
	run_claim(c, id, first, n, p, what, slot);
	pthread_mutex_unlock(&c->mu);
	/* One server read per run of blocks nobody had: ours to fill, or
	 * uncacheable. */
	for (uint32_t k = 0; k < n;) {
		uint32_t len = 1;

		if (what[k] != R_MINE && what[k] != R_THROUGH) {
			k++;
			continue;
		}
		while (k + len < n &&
		       (what[k + len] == R_MINE || what[k + len] == R_THROUGH))
			len++;
		if (!rc)
			rc = fill(arg, first + k, len,
				  p + (size_t)k * AGENT_BLOCK);
		k += len;
	}
	pthread_mutex_lock(&c->mu);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = slot[k];

		if (what[k] != R_MINE)
			continue;
		if (rc) {
			hash_unlink(c, i);
			free_slot(c, i);
			continue;
		}
		memcpy(c->data + (size_t)i * AGENT_BLOCK,
		       p + (size_t)k * AGENT_BLOCK, AGENT_BLOCK);
		c->e[i].state = E_VALID;
		lru_push(c, i);
		c->st.entries++;
	}
	pthread_cond_broadcast(&c->filled);
	/* Blocks someone else was filling: wait for them (or, if that fill
	 * failed, read them ourselves). */
	for (uint32_t k = 0; !rc && k < n; k++) {
		uint32_t i;

		if (what[k] != R_OTHER)
			continue;
		while ((i = find(c, id, first + k)) != NIL &&
		       c->e[i].state == E_LOADING)
			pthread_cond_wait(&c->filled, &c->mu);
		if (i != NIL) {
			memcpy(p + (size_t)k * AGENT_BLOCK,
			       c->data + (size_t)i * AGENT_BLOCK, AGENT_BLOCK);
			continue;
		}
		c->st.hits--; /* that fill failed: ours is a miss after all */
		c->st.misses++;
		pthread_mutex_unlock(&c->mu);
		rc = fill(arg, first + k, 1, p + (size_t)k * AGENT_BLOCK);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* agent_cache_read is a run of one block. */
struct one_fill {
	agent_cache_fill_fn fill;
	void *arg;
};

static int fill_one(void *arg, uint64_t first, uint32_t n, void *buf)
{
	struct one_fill *o = arg;

	(void)n;
	return o->fill(o->arg, first, buf);
}

int agent_cache_read(struct agent_cache *c, const char *ns, uint64_t block,
		     void *buf, agent_cache_fill_fn fill, void *arg)
{
	struct one_fill o = {fill, arg};

	return agent_cache_read_run(c, ns, block, 1, buf, fill_one, &o);
}

void agent_cache_note_zero(struct agent_cache *c, uint32_t n)
{
	pthread_mutex_lock(&c->mu);
	c->st.zero_reads += n;
	pthread_mutex_unlock(&c->mu);
}

void agent_cache_stats(struct agent_cache *c, struct agent_cache_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	pthread_mutex_unlock(&c->mu);
}
