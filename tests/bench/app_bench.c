/*
 * app-bench: application-level scaling of the DSM, with the agent's
 * defaults (docs/benchmarks.md).
 *
 *   app-bench [--runs=N] [--only=matmul|jacobi] [--json]
 *             [--agent-opt=KEY=VALUE ...]
 *
 * Two workloads, each a native VM on a cluster of 2 nodes:
 *   matmul  C = A x B, 1024 x 1024 doubles, rows of C split between the
 *           vCPUs, checked by vCPU 0 against a serial multiply
 *   jacobi  the SPMD integer Jacobi stencil (spmd), 1024 x 1024, 200
 *           sweeps, bands of rows, a barrier after each sweep
 * in three placements:
 *   1n x 1  one vCPU on node1, every page homed there
 *   1n x 2  two vCPUs on node1, every page homed there: the
 *           shared-memory ceiling of these 2 cores
 *   2n x 1  one vCPU on each node, pages interleaved (the defaults)
 * The placements take turns, N times each (default 3). Printed: the
 * medians of the guest's own time for its parallel part (multiply_s or
 * sweeps_s, printed by vCPU 0), of the whole run (create --start to
 * stopped), and of the remote faults, with the ratios 2n x 1 / 1n x 2
 * (target <= 1.25) and 1n x 1 / 1n x 2 (the speed-up on one node). A run
 * whose guest failed or gave another checksum than the others is
 * reported, not counted. Figures only: it never fails on time.
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
	const char *name, *image, *memory, *time_key, *args[2];
};

static const struct workload work[] = {
	{"matmul", "matmul", "--memory=40M", "multiply_s=", {"1024", NULL}},
	{"jacobi", "spmd", "--memory=16M", "sweeps_s=", {"1024", "200"}},
};
#define NWORK (sizeof(work) / sizeof(work[0]))

struct placement {
	const char *name, *vcpus, *opts[3];
};

static const struct placement places[] = {
	{"1n x 1",
	 "--vcpus=1",
	 {"--node=node1", "--home=one", "--home-node=node1"}},
	{"1n x 2",
	 "--vcpus=2",
	 {"--node=node1", "--home=one", "--home-node=node1"}},
	{"2n x 1", "--vcpus=2", {"--placement=spread", NULL, NULL}},
};
#define NPLACE (sizeof(places) / sizeof(places[0]))

struct sample {
	double guest_s, run_s, remote;
};

struct result {
	struct sample s[MAXRUNS];
	int n, failed;
};

static struct tsc_cluster cl;
static char checksum[NWORK][32]; /* the first run's, per workload */

static double median(const struct result *r, size_t off)
{
	double v[MAXRUNS];

	for (int i = 0; i < r->n; i++)
		v[i] = *(const double *)((const char *)&r->s[i] + off);
	return r->n ? ts_median(v, (size_t)r->n) : 0;
}

/* The word after `key` in text, up to a blank, into out. */
static bool word_after(const char *text, const char *key, char *out, size_t len)
{
	const char *p = text ? strstr(text, key) : NULL;
	size_t n;

	if (!p)
		return false;
	p += strlen(key);
	n = strcspn(p, " \n");
	if (!n || n >= len)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

/* Whether the console of the run that ended has the guest's line with
 * the workload's time and a checksum like the other runs'. */
static bool read_console(size_t w, struct sample *s)
{
	char *out = NULL, t[32], sum[32];
	bool ok = false;

	if (TSC_CTL(&cl, &out, "vm", "console", "ab") == 0 &&
	    word_after(out, work[w].time_key, t, sizeof(t)) &&
	    word_after(out, "checksum=", sum, sizeof(sum))) {
		s->guest_s = strtod(t, NULL);
		if (!checksum[w][0])
			snprintf(checksum[w], sizeof(checksum[w]), "%s", sum);
		ok = strcmp(sum, checksum[w]) == 0;
		if (!ok)
			fprintf(stderr, "# %s: checksum %s, earlier runs %s\n",
				work[w].name, sum, checksum[w]);
	}
	if (!ok)
		fprintf(stderr, "# %s console:\n%s\n", work[w].name,
			out ? out : "");
	free(out);
	return ok;
}

/* One run of workload w in placement p; false when it did not end well. */
static bool run_one(size_t w, const struct placement *p, struct sample *s)
{
	const struct workload *wl = &work[w];
	const char *words[20];
	char img[64], *out = NULL;
	uint64_t t0 = ts_now_ms();
	json_t *j, *n;
	size_t i, k = 0;
	bool ok;

	memset(s, 0, sizeof(*s));
	snprintf(img, sizeof(img), "--image=%s", wl->image);
	words[k++] = "vm";
	words[k++] = "create";
	words[k++] = "ab";
	words[k++] = "--cell=c";
	words[k++] = img;
	words[k++] = wl->memory;
	words[k++] = p->vcpus;
	for (i = 0; i < 3 && p->opts[i]; i++)
		words[k++] = p->opts[i];
	words[k++] = "--start";
	words[k++] = "--";
	for (i = 0; i < 2 && wl->args[i]; i++)
		words[k++] = wl->args[i];
	words[k] = NULL;
	if (tsc_ctl(CELLCTL_BIN, cl.ctl_addr, &out, words) != 0) {
		fprintf(stderr, "app-bench: vm create: %s\n", out);
		free(out);
		tsc_cluster_stop(&cl);
		exit(1);
	}
	free(out);
	ok = tsc_vm_wait_ended(CELLCTL_BIN, cl.ctl_addr, "ab", 600000);
	s->run_s = (double)(ts_now_ms() - t0) / 1000;
	ok = ok && strcmp(tsc_cluster_vm_state(&cl, "ab"), "stopped") == 0;
	j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			 TSC_WORDS("vm", "info", "ab"));
	if (json_integer_value(json_object_get(j, "runs")) != 1)
		ok = false; /* failed and restarted: not a clean run */
	if (!ok)
		fprintf(stderr, "# %s %s failed: %s\n", wl->name, p->name,
			json_string_value(json_object_get(j, "reason")));
	json_decref(j);
	ok = read_console(w, s) && ok;
	j = tsc_ctl_json(CELLCTL_BIN, cl.ctl_addr,
			 TSC_WORDS("vm", "stats", "ab"));
	json_array_foreach(json_object_get(j, "nodes"), i, n) s->remote +=
		(double)json_integer_value(json_object_get(n, "remote_faults"));
	json_decref(j);
	for (int t = 0; t < 500 && TSC_CTL(&cl, NULL, "vm", "delete", "ab");
	     t++)
		usleep(10 * 1000);
	return ok;
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: app-bench [--runs=N (1-%d, default 3)] "
		"[--only=matmul|jacobi] [--json]\n"
		"                 [--agent-opt=KEY=VALUE ...]\n"
		"Runs a 1024 x 1024 matrix multiply and a Jacobi stencil as "
		"native VMs\n"
		"on 1 node x 1 vCPU, 1 node x 2 vCPUs and 2 nodes x 1 vCPU "
		"(the agent's\n"
		"defaults) and prints the medians and ratios "
		"(docs/benchmarks.md).\n"
		"--agent-opt=KEY=VALUE gives every agent --KEY=VALUE (a "
		"baseline:\n"
		"say so when quoting it), e.g. --agent-opt=dsm-window=0.\n",
		MAXRUNS);
}

int main(int argc, char **argv)
{
	static struct tsc_cluster_opts o = {.nodes = 2, .cell = "c"};
	static struct result res[NWORK][NPLACE];
	static char opt[TSC_MAX_ARGS][128];
	const char *only = NULL;
	bool json = false;
	int runs = 3, nargs = 0;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--runs=", 7) == 0)
			runs = atoi(argv[i] + 7);
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--only=matmul") == 0 ||
			 strcmp(argv[i], "--only=jacobi") == 0)
			only = argv[i] + 7;
		else if (strncmp(argv[i], "--agent-opt=", 12) == 0 &&
			 nargs < TSC_MAX_ARGS - 1) {
			snprintf(opt[nargs], sizeof(opt[nargs]), "--%s",
				 argv[i] + 12);
			o.agent_args[nargs] = opt[nargs];
			nargs++;
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "app-bench: unknown argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (runs < 1 || runs > MAXRUNS) {
		fprintf(stderr, "app-bench: --runs wants 1-%d\n", MAXRUNS);
		return 2;
	}
	tsc_cluster_start(&cl, "cellmon-app-bench", &o);
	if (!tsc_cluster_wait_dsm(&cl, 2, 30000)) {
		fprintf(stderr, "app-bench: the nodes' DSM did not come up\n");
		tsc_cluster_stop(&cl);
		return 1;
	}
	for (int r = 0; r < runs; r++)
		for (size_t w = 0; w < NWORK; w++)
			for (size_t p = 0; p < NPLACE; p++) {
				struct result *x = &res[w][p];
				struct sample s;

				if (only && strcmp(only, work[w].name))
					continue;
				if (!run_one(w, &places[p], &s)) {
					x->failed++;
					continue;
				}
				x->s[x->n++] = s;
				if (!json)
					fprintf(stderr,
						"# run %d %-6s %s: guest %.3f "
						"s, run %.2f s, remote faults "
						"%.0f\n",
						r + 1, work[w].name,
						places[p].name, s.guest_s,
						s.run_s, s.remote);
			}
	tsc_cluster_stop(&cl);

	json_t *top = json ? json_array() : NULL;

	if (!json)
		printf("app-bench: 2 nodes, %s, medians of "
		       "%d runs\n"
		       "%-7s %-7s %9s %8s %10s %6s\n",
		       nargs ? "agents changed by --agent-opt"
			     : "the agent's defaults",
		       runs, "work", "place", "guest_s", "run_s", "remote_f",
		       "failed");
	for (size_t w = 0; w < NWORK; w++) {
		double g[NPLACE];

		if (only && strcmp(only, work[w].name))
			continue;
		for (size_t p = 0; p < NPLACE; p++) {
			const struct result *x = &res[w][p];

			g[p] = median(x, offsetof(struct sample, guest_s));
			if (json) {
				json_array_append_new(
					top,
					json_pack("{s:s, s:s, s:f, s:f, s:f, "
						  "s:i, s:i}",
						  "workload", work[w].name,
						  "placement", places[p].name,
						  "guest_s", g[p], "run_s",
						  median(x,
							 offsetof(struct sample,
								  run_s)),
						  "remote_faults",
						  median(x,
							 offsetof(struct sample,
								  remote)),
						  "runs", x->n, "failed",
						  x->failed));
				continue;
			}
			printf("%-7s %-7s %9.3f %8.2f %10.0f %6d\n",
			       work[w].name, places[p].name, g[p],
			       median(x, offsetof(struct sample, run_s)),
			       median(x, offsetof(struct sample, remote)),
			       x->failed);
		}
		if (!json)
			printf("%-7s ratio 2n x 1 / 1n x 2 = %.2f (target <= "
			       "1.25); 1n x 1 / 1n x 2 = %.2f\n",
			       work[w].name, ratio(g[2], g[1]),
			       ratio(g[0], g[1]));
	}
	if (json) {
		char *text = json_dumps(top, JSON_INDENT(2));

		puts(text ? text : "[]");
		free(text);
		json_decref(top);
	}
	return 0;
}
