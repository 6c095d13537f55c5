/*
 * cellctl from tests: run it against a manager's ctl address and read
 * its exit code, its text, or its -o json output. Shared by the
 * integration and fault tests that drive a real cluster.
 */
#ifndef CELL_CTLCLIENT_H
#define CELL_CTLCLIENT_H

#include <jansson.h>
#include <stdbool.h>

/* Runs `cellctl --manager=ctl_addr WORDS...` (NULL-terminated words, at
 * most 20) within 70 s; stdout and stderr into *out when out is not NULL
 * (malloc'd). Returns the exit code, -1 on timeout. */
int tsc_ctl(const char *cellctl, const char *ctl_addr, char **out,
	    const char *const *words);
/* The same with -o json: the parsed output, or NULL (non-zero exit or
 * not JSON). */
json_t *tsc_ctl_json(const char *cellctl, const char *ctl_addr,
		     const char *const *words);

#define TSC_WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The string member `key` of the JSON object from `words` into out
 * ("none" when the command failed). */
const char *tsc_ctl_field(const char *cellctl, const char *ctl_addr,
			  const char *key, const char *const *words, char *out,
			  size_t len);

/* Polls `vm info VM` (ts_wait_for) until the VM is stopped or failed;
 * false after timeout_ms. */
bool tsc_vm_wait_ended(const char *cellctl, const char *ctl_addr,
		       const char *vm, unsigned timeout_ms);

/* A test directory at the end: removed, or kept and named on stderr
 * when CELLMON_KEEP_TEST_DIR is set. Frees dir. */
void tsc_dir_done(char *dir);

#endif
