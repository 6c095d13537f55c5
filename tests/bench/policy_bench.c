/*
 * policy-bench: Disco's page-policy experiment on cellmon, one run on
 * this machine (docs/design/page-policy.md).
 *
 *   policy-bench [--runs=N] [--only=WORKLOAD] [--json]
 *
 * Three workloads, each a native VM of 3 vCPUs spread over 3 nodes with
 * its pages interleaved (the default), run with the page policy off and
 * with it on (all), the two taking turns, N times each (default 3):
 *   readshare  a 1 MiB scene read twice by every vCPU per frame, 120
 *              frames, vCPU 0 writing a new scene before each
 *   private    each vCPU writes and checks its own 2 MiB slice 600 times
 *   migratory  a 1 MiB working set updated by one vCPU per phase,
 *              phases, moving from vCPU to vCPU (48 phases)
 * and prints the medians of the run time (create --start to stopped),
 * the remote faults and bytes moved of the run, the home moves the
 * policy made and the copies the homes pushed (replicas), with the
 * change from off to all. Every guest
 * checks its own results; a run whose guest failed is reported, not
 * counted. Figures only: it never fails on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster.h"
#include "ctlclient.h"
#include "testsupport.h"

#define MAXRUNS 20

struct workload {
	const char *name, *image, *args[3];
};

static const struct workload work[] = {
	{"readshare", "readshare", {"1024", "2", "120"}},
	{"private", "private", {"2048", "600", NULL}},
	{"migratory", "migratory", {"1024", "48", "4"}},
};
#define NWORK (sizeof(work) / sizeof(work[0]))

struct sample {
	double time_s;
	double remote, bytes, moves, pushes;
};

struct result {
	struct sample s[MAXRUNS];
	int n, failed;
};

static struct tsc_cluster cl;

static double median(const struct result *r, size_t off)
{
	double v[MAXRUNS];

	for (int i = 0; i < r->n; i++)
		v[i] = *(const double *)((const char *)&r->s[i] + off);
	return ts_median(v, (size_t)r->n);
}

static json_t *ctl_json(const char *verb, const char *vm)
{
	return tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			    TSC_WORDS("vm", verb, vm));
}

static const char *state_of(const char *vm)
{
	static char st[32];
	json_t *j = ctl_json("info", vm);

	snprintf(st, sizeof(st), "%s",
		 j ? json_string_value(json_object_get(j, "state")) : "none");
	json_decref(j);
	return st;
}

/* One run of workload w; false when the guest did not end well. */
static bool run_one(const struct workload *w, bool on, struct sample *s)
{
	char img[64], *out = NULL;
	uint64_t t0 = ts_now_ms();
	json_t *j, *n;
	size_t i;
	bool ok;

	snprintf(img, sizeof(img), "--image=%s", w->image);
	if (TSC_CTL(&cl, &out, "vm", "create", "pb", "--cell=c", img,
		    "--vcpus=3", "--memory=16M", "--placement=spread",
		    on ? "--page-policy=all" : "--page-policy=off", "--start",
		    "--", w->args[0], w->args[1], w->args[2]) != 0) {
		fprintf(stderr, "policy-bench: vm create: %s\n", out);
		exit(1);
	}
	free(out);
	while (strcmp(state_of("pb"), "stopped") != 0 &&
	       strcmp(state_of("pb"), "failed") != 0)
		usleep(20 * 1000);
	s->time_s = (double)(ts_now_ms() - t0) / 1000;
	ok = strcmp(state_of("pb"), "stopped") == 0;
	j = ctl_json("info", "pb");
	if (json_integer_value(json_object_get(j, "runs")) != 1)
		ok = false; /* failed and restarted: not a clean run */
	json_decref(j);
	if (!ok) {
		j = ctl_json("info", "pb");
		fprintf(stderr, "# %s failed: %s\n", w->name,
			json_string_value(json_object_get(j, "reason")));
		json_decref(j);
		TSC_CTL(&cl, &out, "vm", "console", "pb");
		fprintf(stderr, "# console:\n%s\n", out ? out : "");
		free(out);
	}
	*s = (struct sample){.time_s = s->time_s};
	j = ctl_json("stats", "pb");
	json_array_foreach(json_object_get(j, "nodes"), i, n)
	{
		s->remote += (double)json_integer_value(
			json_object_get(n, "remote_faults"));
		s->bytes += (double)json_integer_value(
			json_object_get(n, "bytes_in"));
		s->pushes += (double)json_integer_value(
			json_object_get(n, "pushes"));
	}
	json_decref(j);
	j = ctl_json("pages", "pb");
	s->moves = (double)json_integer_value(json_object_get(j, "moves"));
	json_decref(j);
	for (int k = 0; k < 500 && strcmp(state_of("pb"), "none") != 0; k++) {
		TSC_CTL(&cl, NULL, "vm", "delete", "pb");
		usleep(10 * 1000);
	}
	return ok;
}

static double change(double off, double on)
{
	return off > 0 ? 100.0 * (on - off) / off : 0;
}

int main(int argc, char **argv)
{
	static struct tsc_cluster_opts o = {.nodes = 3, .cell = "c"};
	struct result res[NWORK][2] = {0};
	int runs = 3;
	bool json = false;
	const char *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--runs=", 7) == 0)
			runs = atoi(argv[i] + 7);
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strncmp(argv[i], "--only=", 7) == 0)
			only = argv[i] + 7;
		else {
			fprintf(stderr,
				"usage: policy-bench [--runs=N (1-%d)] "
				"[--only=readshare|private|migratory] "
				"[--json]\n",
				MAXRUNS);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (runs < 1 || runs > MAXRUNS) {
		fprintf(stderr, "policy-bench: --runs 1-%d\n", MAXRUNS);
		return 2;
	}
	tsc_cluster_start(&cl, "cellmon-policy-bench", &o);
	for (int r = 0; r < runs; r++)
		for (size_t w = 0; w < NWORK; w++)
			for (int on = 0; on < 2; on++) {
				struct result *x = &res[w][on];
				struct sample s;

				if (only && strcmp(only, work[w].name))
					continue;
				if (!run_one(&work[w], on, &s)) {
					x->failed++;
					fprintf(stderr,
						"# run %d %s policy %s: the "
						"guest failed\n",
						r + 1, work[w].name,
						on ? "all" : "off");
					continue;
				}
				x->s[x->n++] = s;
				if (!json)
					fprintf(stderr,
						"# run %d %-9s policy %-3s "
						"%.2f s, remote faults %.0f, "
						"%.0f bytes in, %.0f moves, "
						"%.0f pushes\n",
						r + 1, work[w].name,
						on ? "all" : "off", s.time_s,
						s.remote, s.bytes, s.moves,
						s.pushes);
			}
	tsc_cluster_stop(&cl);
	if (json) {
		json_t *arr = json_array();

		for (size_t w = 0; w < NWORK; w++)
			for (int on = 0; on < 2; on++) {
				const struct result *x = &res[w][on];

				if (only && strcmp(only, work[w].name))
					continue;
				json_array_append_new(
					arr,
					json_pack("{s:s, s:s, s:f, s:f, s:f, "
						  "s:f, s:f, s:i, s:i}",
						  "workload", work[w].name,
						  "policy", on ? "all" : "off",
						  "time_s",
						  median(x,
							 offsetof(struct sample,
								  time_s)),
						  "remote_faults",
						  median(x,
							 offsetof(struct sample,
								  remote)),
						  "bytes_in",
						  median(x,
							 offsetof(struct sample,
								  bytes)),
						  "moves",
						  median(x,
							 offsetof(struct sample,
								  moves)),
						  "pushes",
						  median(x,
							 offsetof(struct sample,
								  pushes)),
						  "runs", x->n, "failed",
						  x->failed));
			}
		json_dumpf(arr, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(arr);
		return 0;
	}
	printf("policy-bench: 3 vCPUs on 3 nodes, pages interleaved, page "
	       "policy off against all, medians of %d runs\n",
	       runs);
	printf("%-10s %-6s %8s %12s %12s %8s %8s\n", "workload", "policy",
	       "time_s", "remote_f", "bytes_in", "moves", "pushes");
	for (size_t w = 0; w < NWORK; w++) {
		double t[2], f[2];

		if (only && strcmp(only, work[w].name))
			continue;
		for (int on = 0; on < 2; on++) {
			const struct result *x = &res[w][on];

			t[on] = median(x, offsetof(struct sample, time_s));
			f[on] = median(x, offsetof(struct sample, remote));
			printf("%-10s %-6s %8.2f %12.0f %12.0f %8.0f %8.0f%s\n",
			       work[w].name, on ? "all" : "off", t[on], f[on],
			       median(x, offsetof(struct sample, bytes)),
			       median(x, offsetof(struct sample, moves)),
			       median(x, offsetof(struct sample, pushes)),
			       x->failed ? "  (some runs failed)" : "");
		}
		printf("%-10s change: run time %+.0f %%, remote faults %+.0f "
		       "%%\n",
		       work[w].name, change(t[0], t[1]), change(f[0], f[1]));
	}
	return 0;
}
