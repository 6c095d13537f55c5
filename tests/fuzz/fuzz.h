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

#endif
