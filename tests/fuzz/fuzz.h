/*
 * The fuzz entry point shared by the libFuzzer build and the ctest replay
 * driver (fuzz_replay.c).
 */
#ifndef CELL_FUZZ_H
#define CELL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_one(const uint8_t *data, size_t size);

#endif
