/* cellctl from tests (ctlclient.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlclient.h"
#include "testsupport.h"

int tsc_ctl(const char *cellctl, const char *ctl_addr, char **out,
	    const char *const *words)
{
	char mgr[128];
	char *argv[24] = {(char *)cellctl, mgr};
	char *tmp = NULL;
	int n = 2, rc;

	snprintf(mgr, sizeof(mgr), "--manager=%s", ctl_addr);
	for (; *words && n < 23; words++)
		argv[n++] = (char *)*words;
	argv[n] = NULL;
	rc = ts_run(argv, 70000, out ? out : &tmp, true);
	free(tmp);
	return rc;
}

json_t *tsc_ctl_json(const char *cellctl, const char *ctl_addr,
		     const char *const *words)
{
	const char *w[24] = {"-o", "json"};
	char *out = NULL;
	json_t *j = NULL;
	int n = 2;

	for (; *words && n < 23; words++)
		w[n++] = *words;
	w[n] = NULL;
	if (tsc_ctl(cellctl, ctl_addr, &out, w) == 0)
		j = json_loads(out, 0, NULL);
	free(out);
	return j;
}

const char *tsc_ctl_field(const char *cellctl, const char *ctl_addr,
			  const char *key, const char *const *words, char *out,
			  size_t len)
{
	json_t *j = tsc_ctl_json(cellctl, ctl_addr, words);
	const char *v = j ? json_string_value(json_object_get(j, key)) : NULL;

	snprintf(out, len, "%s", v ? v : "none");
	json_decref(j);
	return out;
}

struct vm_wait {
	const char *cellctl, *ctl_addr, *vm;
};

static bool vm_ended(void *arg)
{
	const struct vm_wait *w = arg;
	char s[32];

	tsc_ctl_field(w->cellctl, w->ctl_addr, "state",
		      TSC_WORDS("vm", "info", w->vm), s, sizeof(s));
	return strcmp(s, "stopped") == 0 || strcmp(s, "failed") == 0;
}

bool tsc_vm_wait_ended(const char *cellctl, const char *ctl_addr,
		       const char *vm, unsigned timeout_ms)
{
	struct vm_wait w = {cellctl, ctl_addr, vm};

	return ts_wait_for(vm_ended, &w, timeout_ms);
}

void tsc_dir_done(char *dir)
{
	if (!dir)
		return;
	if (getenv("CELLMON_KEEP_TEST_DIR"))
		fprintf(stderr, "test dir kept: %s\n", dir);
	else
		ts_rmtree(dir);
	free(dir);
}
