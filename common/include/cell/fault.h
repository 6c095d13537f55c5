/*
 * Fault points: named places where a test makes a process fail on
 * demand, to test what survives a crash, an error or a stall at exactly
 * that step. Only a test build compiles them in (CMake option
 * CELLMON_FAULT_POINTS, which tests/run turns on); in any other build
 * CELL_FAULT() is the constant 0 and costs nothing.
 *
 * A test arms one point through the environment of the process:
 *   CELLMON_FAULT=NAME           the point, e.g. "vdisk.journal-sync"
 *   CELLMON_FAULT_AFTER=N        fire from its N-th pass on (default 1)
 *   CELLMON_FAULT_ACTION=ACTION  exit (default: _exit(99), as if killed),
 *                                error (CELL_FAULT returns -EIO, and the
 *                                code fails the operation), sleep:MS
 *                                (the thread stalls MS ms, every pass)
 * Points are named "module.step"; docs/operations.md lists them. Any
 * thread may pass a point.
 */
#ifndef CELL_FAULT_H
#define CELL_FAULT_H

#include <stdbool.h>

/* 0, or -EIO when the armed action is error. May not return (exit). */
int cell_fault_point(const char *name);
/* Whether this build has fault points (tests skip without them). */
bool cell_fault_points_built(void);

#ifdef CELLMON_FAULT_POINTS
#define CELL_FAULT(name) cell_fault_point(name)
#else
#define CELL_FAULT(name) 0
#endif

#endif
