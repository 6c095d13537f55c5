/*
 * ctest driver for fuzz targets built without libFuzzer.
 *
 *   fuzz_X_replay DIR|- [MUTATIONS [SEED]]
 *
 * Replays every file in DIR (none for "-") and the target's built-in
 * seeds (fuzz_seed), then MUTATIONS (default 2000) mutants of them
 * made by a seeded xorshift generator: bit flips, byte changes, cuts,
 * duplicated slices and inflated length fields. The seed is printed so a
 * failure can be replayed; a crash or sanitizer report fails the test.
 *
 *   fuzz_frame_replay --write-seeds DIR
 *
 * writes the target's built-in seeds (fuzz_seed) into DIR, as a starting
 * corpus for libFuzzer.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"

#define MAXF (64 * 1024)

struct file {
	uint8_t *data;
	size_t len;
};

static uint64_t rng;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t mutate(const struct file *f, uint8_t *out)
{
	size_t n = f->len, ops = 1 + next() % 4;

	memcpy(out, f->data, n);
	for (size_t k = 0; k < ops; k++) {
		size_t at = n ? next() % n : 0;

		switch (next() % 6) {
		case 0: /* bit flip */
			if (n)
				out[at] ^= (uint8_t)(1u << (next() % 8));
			break;
		case 1: /* random byte */
			if (n)
				out[at] = (uint8_t)next();
			break;
		case 2: /* cut the tail */
			n = at;
			break;
		case 3: /* repeat a slice */
			if (n && n * 2 < MAXF) {
				size_t len = 1 + next() % (n - at);

				memmove(out + at + len, out + at, n - at);
				n += len;
			}
			break;
		case 4: /* an inflated length field (bytes 12..15) */
			if (n >= 16)
				out[12 + next() % 4] = (uint8_t)next();
			break;
		case 5: /* an unknown type */
			if (n >= 6)
				out[4 + next() % 2] = (uint8_t)next();
			break;
		}
	}
	return n;
}

static int load_dir(const char *dir, struct file *files, int max)
{
	DIR *d;
	struct dirent *e;
	int n = 0;

	if (strcmp(dir, "-") == 0)
		return 0;
	d = opendir(dir);
	if (!d) {
		perror(dir);
		exit(2);
	}
	while ((e = readdir(d)) && n < max) {
		char path[1024];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		if (!f)
			continue;
		files[n].data = malloc(MAXF);
		files[n].len = fread(files[n].data, 1, MAXF / 2, f);
		fclose(f);
		n++;
	}
	closedir(d);
	return n;
}

static void save(const char *dir, const char *name, const uint8_t *b, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(b, 1, n, f) != n) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	static struct file files[256];
	static uint8_t mut[MAXF];
	long count = 2000;
	int n;

	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
		for (int i = 0;; i++) {
			char name[32];
			size_t len = fuzz_seed(i, mut, MAXF);

			if (!len)
				return 0;
			snprintf(name, sizeof(name), "seed-%d", i);
			save(argv[2], name, mut, len);
		}
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [MUTATIONS [SEED]]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		count = atol(argv[2]);
	rng = argc > 3 ? strtoull(argv[3], NULL, 0)
		       : (uint64_t)time(NULL) * 2654435761u + 1;
	n = load_dir(argv[1], files, 256);
	for (int i = 0; n < 256; i++) {
		files[n].data = malloc(MAXF);
		files[n].len = fuzz_seed(i, files[n].data, MAXF / 2);
		if (files[n].len == 0) {
			free(files[n].data);
			break;
		}
		n++;
	}
	if (n == 0) {
		fprintf(stderr, "%s: empty corpus\n", argv[1]);
		return 2;
	}
	printf("replaying %d corpus files and seeds, then %ld mutants, "
	       "seed=%llu\n",
	       n, count, (unsigned long long)rng);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		fuzz_one(files[i].data, files[i].len);
	for (long i = 0; i < count; i++)
		fuzz_one(mut, mutate(&files[next() % (uint64_t)n], mut));
	printf("done: no crash\n");
	for (int i = 0; i < n; i++)
		free(files[i].data);
	return 0;
}
