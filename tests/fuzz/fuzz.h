/*
 * The fuzz entry point shared by the libFuzzer build and the ctest replay
 * driver (fuzz_replay.c).
 */
#ifndef CELL_FUZZ_H
#define CELL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_one(const uint8_t *data, size_t size);

/* The target's built-in seed i into buf (at most cap bytes); its length,
 * 0 past the last one. The replay driver mutates these as well as the
 * files of its corpus directory. */
size_t fuzz_seed(int i, uint8_t *buf, size_t cap);

/* fuzz_conn.c: writes data in pieces into fd (the far end of a
 * socketpair whose near end is a connection on base), running base and
 * draining fd after each, until *gone or the input is spent. */
struct event_base;
void fuzz_feed(struct event_base *base, int fd, const uint8_t *data,
	       size_t size, const int *gone);

#endif
