/*
 * Big-endian field access for wire formats (control frames, DSM page
 * messages). Byte by byte, so any alignment works.
 */
#ifndef CELL_ENDIAN_H
#define CELL_ENDIAN_H

#include <stdint.h>

static inline void cell_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void cell_put32(uint8_t *p, uint32_t v)
{
	cell_put16(p, (uint16_t)(v >> 16));
	cell_put16(p + 2, (uint16_t)v);
}

static inline void cell_put64(uint8_t *p, uint64_t v)
{
	cell_put32(p, (uint32_t)(v >> 32));
	cell_put32(p + 4, (uint32_t)v);
}

static inline uint16_t cell_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t cell_get32(const uint8_t *p)
{
	return (uint32_t)cell_get16(p) << 16 | cell_get16(p + 2);
}

static inline uint64_t cell_get64(const uint8_t *p)
{
	return (uint64_t)cell_get32(p) << 32 | cell_get32(p + 4);
}

#endif
