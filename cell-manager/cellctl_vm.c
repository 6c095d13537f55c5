/*
 * cellctl's VM commands: the request builders that take options
 * (vm create --cell=... -- guest args) and the renderers of VM replies.
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/config.h"
#include "cellctl.h"

static const char *opt(const struct ctl_opts *o, const char *key)
{
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->key[i], key) == 0)
			return o->val[i];
	return NULL;
}

/* --KEY=NAME as a value of the set e; says what is known if not. */
static int opt_enum(const struct ctl_opts *o, const char *key,
		    const struct cellproto_enum *e, int *v)
{
	const char *s = opt(o, key);
	char names[200];

	if (!s || cellproto_parse(e, s, v) == 0)
		return 0;
	cellproto_names_list(e, names, sizeof(names));
	fprintf(stderr, "cellctl: unknown %s '%s' for --%s; use %s\n", e->what,
		s, key, names);
	return -EINVAL;
}

/* A whole number 0..max, digits only. 0 or -EINVAL. */
static int parse_count(const char *s, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static const char *const create_keys[] = {
	"cell",		 "vcpus",  "memory",	   "image",
	"engine",	 "node",   "placement",	   "home",
	"anti-affinity", "disk",   "max-restarts", "home-node",
	"kernel",	 "initrd", "page-policy",  NULL,
};

int ctl_check_keys(const struct ctl_opts *o, const char *const *allowed,
		   const char *cmd)
{
	for (int i = 0; i < o->n; i++) {
		bool ok = false;

		for (int k = 0; allowed && allowed[k]; k++)
			ok |= strcmp(o->key[i], allowed[k]) == 0;
		if (!ok) {
			fprintf(stderr, "cellctl: %s takes no --%s option\n",
				cmd, o->key[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static Cellmon__VmRequest *new_request(char *name)
{
	Cellmon__VmRequest *r = calloc(1, sizeof(*r));

	if (r) {
		cellmon__vm_request__init(r);
		r->name = name;
	}
	return r;
}

/* A create request in one allocation, so free() of the request frees it
 * all (the strings point into argv). */
struct create_req {
	Cellmon__VmRequest r; /* first: the request's address */
	Cellmon__VmSpec s;
	Cellmon__RestartPolicy rp;
	char *disks[32];
};

int ctl_build_vm_create(const struct ctl_opts *o, char **args, int nargs,
			ProtobufCMessage **out)
{
	struct create_req *cr;
	Cellmon__VmRequest *r;
	Cellmon__VmSpec *s;
	const char *v;
	int64_t n;
	int e = 0, p = 0, h = 0, pp = 0; /* the *_DEFAULT values */

	if (nargs != 1 || ctl_check_keys(o, create_keys, "vm create"))
		return -EINVAL;
	if (!opt(o, "cell") || (!opt(o, "image") && !opt(o, "kernel"))) {
		fprintf(stderr, "cellctl: vm create needs --cell=CELL and "
				"--image=IMAGE (or, engine qemu, "
				"--kernel=PATH)\n");
		return -EINVAL;
	}
	cr = calloc(1, sizeof(*cr));
	if (!cr)
		return -ENOMEM;
	r = &cr->r;
	s = &cr->s;
	cellmon__vm_request__init(r);
	cellmon__vm_spec__init(s);
	r->name = args[0];
	r->spec = s;
	r->dry_run = o->dry_run;
	s->name = args[0];
	s->cell = (char *)opt(o, "cell");
	s->image = opt(o, "image") ? (char *)opt(o, "image") : "";
	if (opt(o, "kernel"))
		s->kernel = (char *)opt(o, "kernel");
	if (opt(o, "initrd"))
		s->initrd = (char *)opt(o, "initrd");
	s->vcpus = 1;
	s->memory_mb = 64;
	if ((v = opt(o, "vcpus"))) {
		if (parse_count(v, 1 << 20, &n) || n <= 0) {
			fprintf(stderr,
				"cellctl: --vcpus '%s' is not a count\n", v);
			goto bad;
		}
		s->vcpus = (uint32_t)n;
	}
	if ((v = opt(o, "memory"))) {
		/* Sizes as everywhere (binary K, M, G, T); a bare number
		 * would be bytes, never what is meant for memory. */
		bool bare = v[0] && v[strspn(v, "0123456789")] == '\0';

		if (bare || cell_parse_size(v, &n) || n <= 0) {
			fprintf(stderr,
				"cellctl: --memory '%s' %s (e.g. 64M, 1G, "
				"1T: binary units)\n",
				v, bare ? "needs a unit" : "is not a size");
			goto bad;
		}
		s->memory_mb = ((uint64_t)n + (1 << 20) - 1) >> 20;
	}
	if ((v = opt(o, "max-restarts"))) {
		if (parse_count(v, 1000, &n)) {
			fprintf(stderr,
				"cellctl: --max-restarts '%s' is not 0-1000\n",
				v);
			goto bad;
		}
		cellmon__restart_policy__init(&cr->rp);
		cr->rp.max_restarts = (uint32_t)n;
		s->restart = &cr->rp;
	}
	if (opt_enum(o, "engine", &cellproto_engines, &e) ||
	    opt_enum(o, "placement", &cellproto_placements, &p) ||
	    opt_enum(o, "home", &cellproto_homes, &h) ||
	    opt_enum(o, "page-policy", &cellproto_page_policies, &pp))
		goto bad;
	s->page_policy = (Cellmon__PagePolicy)pp;
	s->engine = (Cellmon__Engine)e;
	s->placement = (Cellmon__Placement)p;
	s->home = (Cellmon__HomePolicy)h;
	if ((v = opt(o, "node")))
		s->node = (char *)v;
	if ((v = opt(o, "anti-affinity")))
		s->anti_affinity = (char *)v;
	if ((v = opt(o, "home-node"))) {
		if (h != CELLMON__HOME_POLICY__HOME_DEFAULT &&
		    h != CELLMON__HOME_POLICY__HOME_ONE) {
			fprintf(stderr, "cellctl: --home-node goes with "
					"--home=one only\n");
			goto bad;
		}
		s->home_node = (char *)v;
		s->home = CELLMON__HOME_POLICY__HOME_ONE;
	}
	s->args = o->guest_args;
	s->n_args = (size_t)o->nguest;
	/* --disk may be given several times: disks 0, 1, ... in order
	 * (options are at most 32). */
	s->disks = cr->disks;
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->key[i], "disk") == 0)
			s->disks[s->n_disks++] = (char *)o->val[i];
	*out = &r->base;
	return 0;
bad:
	free(cr);
	return -EINVAL;
}

int ctl_vm_then_start(const struct ctl_opts *o, ProtobufCMessage *req,
		      uint16_t *type)
{
	Cellmon__VmRequest *r = (Cellmon__VmRequest *)req;

	if (!o->start || o->dry_run)
		return 0;
	r->spec = NULL; /* in the same allocation as r */
	*type = CELLMON__MSG_TYPE__MSG_VM_START;
	return 1;
}

int ctl_build_vm_migrate(const struct ctl_opts *o, char **args, int nargs,
			 ProtobufCMessage **out)
{
	static const char *const keys[] = {"to", NULL};
	Cellmon__VmRequest *r;

	if (nargs != 1 || ctl_check_keys(o, keys, "vm migrate"))
		return -EINVAL;
	if (!opt(o, "to")) {
		fprintf(stderr, "cellctl: vm migrate needs --to=NODE\n");
		return -EINVAL;
	}
	r = new_request(args[0]);
	if (!r)
		return -ENOMEM;
	r->to_node = (char *)opt(o, "to");
	*out = &r->base;
	return 0;
}

/* WHAT set NAME page-policy=MODE: the mode, or -EINVAL after saying
 * why. */
static int page_policy_setting(const struct ctl_opts *o, const char *what,
			       char **args, int nargs, int *v)
{
	char names[200];

	if (ctl_check_keys(o, NULL, what))
		return -EINVAL;
	if (nargs != 2 || strncmp(args[1], "page-policy=", 12) != 0) {
		fprintf(stderr,
			"cellctl: %s %s page-policy=MODE (the one setting it "
			"can change)\n",
			what, strncmp(what, "vm", 2) ? "CELL" : "VM");
		return -EINVAL;
	}
	if (cellproto_parse(&cellproto_page_policies, args[1] + 12, v)) {
		cellproto_names_list(&cellproto_page_policies, names,
				     sizeof(names));
		fprintf(stderr, "cellctl: unknown page policy '%s'; use %s\n",
			args[1] + 12, names);
		return -EINVAL;
	}
	return 0;
}

static Cellmon__CellRequest *new_cell_request(char *name)
{
	Cellmon__CellRequest *r = calloc(1, sizeof(*r));

	if (r) {
		cellmon__cell_request__init(r);
		r->name = name;
	}
	return r;
}

/* cell create CELL [--page-policy=MODE] */
int ctl_build_cell_create(const struct ctl_opts *o, char **args, int nargs,
			  ProtobufCMessage **out)
{
	static const char *const keys[] = {"page-policy", NULL};
	Cellmon__CellRequest *r;
	int pp = 0;

	if (nargs != 1 || ctl_check_keys(o, keys, "cell create") ||
	    opt_enum(o, "page-policy", &cellproto_page_policies, &pp))
		return -EINVAL;
	if (!(r = new_cell_request(args[0])))
		return -ENOMEM;
	r->page_policy = (Cellmon__PagePolicy)pp;
	*out = &r->base;
	return 0;
}

/* cell set CELL page-policy=MODE */
int ctl_build_cell_set(const struct ctl_opts *o, char **args, int nargs,
		       ProtobufCMessage **out)
{
	Cellmon__CellRequest *r;
	int v;

	if (page_policy_setting(o, "cell set", args, nargs, &v))
		return -EINVAL;
	if (!(r = new_cell_request(args[0])))
		return -ENOMEM;
	r->page_policy = (Cellmon__PagePolicy)v;
	*out = &r->base;
	return 0;
}

/* vm set VM KEY=VALUE: page-policy=off|migrate|replicate|all */
int ctl_build_vm_set(const struct ctl_opts *o, char **args, int nargs,
		     ProtobufCMessage **out)
{
	Cellmon__VmRequest *r;
	int v;

	if (page_policy_setting(o, "vm set", args, nargs, &v))
		return -EINVAL;
	r = new_request(args[0]);
	if (!r)
		return -ENOMEM;
	r->page_policy = (Cellmon__PagePolicy)v;
	*out = &r->base;
	return 0;
}

int ctl_build_vm_request(const struct ctl_opts *o, char **args, int nargs,
			 ProtobufCMessage **out)
{
	Cellmon__VmRequest *r;

	if (ctl_check_keys(o, NULL, "this command"))
		return -EINVAL;
	if (o->nguest) {
		fprintf(stderr, "cellctl: guest arguments after -- belong to "
				"vm create\n");
		return -EINVAL;
	}
	r = new_request(nargs > 0 ? args[0] : "");
	if (!r)
		return -ENOMEM;
	r->dry_run = o->dry_run;
	*out = &r->base;
	return 0;
}

/* vm pages VM [--svg=FILE] */
int ctl_build_vm_pages(const struct ctl_opts *o, char **args, int nargs,
		       ProtobufCMessage **out)
{
	static const char *const keys[] = {"svg", NULL};
	Cellmon__VmRequest *r;

	if (ctl_check_keys(o, keys, "vm pages"))
		return -EINVAL;
	ctl_pages_svg_path = opt(o, "svg");
	if (ctl_pages_svg_path && !ctl_pages_svg_path[0]) {
		fprintf(stderr, "cellctl: --svg wants a file name\n");
		return -EINVAL;
	}
	r = new_request(nargs > 0 ? args[0] : "");
	if (!r)
		return -ENOMEM;
	*out = &r->base;
	return 0;
}

/* ---- rendering ---- */

static void print_vcpus(const Cellmon__VmInfo *v)
{
	printf("%-5s %-16s %-8s %7s  %s\n", "VCPU", "NODE", "STATE", "PID",
	       "END");
	for (size_t i = 0; i < v->n_vcpus; i++) {
		const Cellmon__VcpuInfo *c = v->vcpus[i];
		char end[64] = "", pid[16] = "-"; /* no pid reported yet */

		if (c->state == CELLMON__VCPU_STATE__VCPU_EXITED)
			snprintf(end, sizeof(end), "status %d", c->exit_code);
		else if (c->state == CELLMON__VCPU_STATE__VCPU_KILLED)
			snprintf(end, sizeof(end), "signal %d (%s)", c->signal,
				 strsignal(c->signal));
		if (c->pid > 0)
			snprintf(pid, sizeof(pid), "%d", c->pid);
		printf("%-5u %-16s %-8s %7s  %s\n", c->vcpu, c->node,
		       ctl_vcpu_state_name(c->state), pid, end);
	}
}

void ctl_render_vm(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__VmReply *r = (const void *)reply;
	const Cellmon__VmInfo *v = r->vm;
	const Cellmon__VmSpec *s;

	if (!v) {
		if (json)
			ctl_emit_json(json_pack("{s:s}", "deleted", args[0]));
		else
			printf("vm %s deleted\n", args[0]);
		return;
	}
	if (json) {
		json_t *o = ctl_json_vm(v);

		if (o && r->migrate_ms) /* after vm migrate */
			json_object_set_new(o, "migration",
					    json_pack("{s:i, s:i}", "pause_ms",
						      (int)r->pause_ms,
						      "migrate_ms",
						      (int)r->migrate_ms));
		ctl_emit_json(o);
		return;
	}
	if (r->migrate_ms)
		printf("migrated: guest paused %u ms (QEMU's downtime), %u ms "
		       "in all\n",
		       r->pause_ms, r->migrate_ms);
	s = v->spec;
	printf("vm:        %s (id %llu)\nstate:     %s%s%s%s\n", s->name,
	       (unsigned long long)v->id, ctl_vm_state_name(v->state),
	       v->reason[0] ? " (" : "", v->reason, v->reason[0] ? ")" : "");
	printf("cell:      %s\nvcpus:     %u\nmemory:    %llu MB\n"
	       "engine:    %s\nimage:     %s",
	       s->cell, s->vcpus, (unsigned long long)s->memory_mb,
	       cellproto_name(&cellproto_engines, s->engine), s->image);
	for (size_t i = 0; i < s->n_args; i++)
		printf(" %s", s->args[i]);
	if (s->kernel[0])
		printf("\nkernel:    %s", s->kernel);
	if (s->initrd[0])
		printf("\ninitrd:    %s", s->initrd);
	if (v->accel[0])
		printf("\naccel:     %s", v->accel);
	printf("\nrestarts:  %u of %u after node failures\n", v->restarts,
	       s->restart ? s->restart->max_restarts : 3);
	printf("placement: %s%s%s%s%s\nhome:      %s\npages:     %s (page "
	       "policy)\nruns:      %u\n",
	       cellproto_name(&cellproto_placements, s->placement),
	       s->node[0] ? ", node " : "", s->node,
	       s->anti_affinity[0] ? ", anti-affinity " : "", s->anti_affinity,
	       cellproto_name(&cellproto_homes, s->home),
	       ctl_page_policy_name((int)s->page_policy), v->runs);
	printf("disks:     ");
	for (size_t i = 0; i < s->n_disks; i++)
		printf("%s%zu=%s", i ? " " : "", i, s->disks[i]);
	printf("%s\n", s->n_disks ? "" : "(none)");
	printf("deps:      ");
	for (size_t i = 0; i < v->n_deps; i++)
		printf("%s%s", i ? " " : "", v->deps[i]);
	printf("%s", v->n_deps ? "" : "(none: not placed)");
	if (v->disk_server[0])
		printf(", disk server %s", v->disk_server);
	printf("\n");
	if (v->n_vcpus)
		print_vcpus(v);
}

void ctl_render_vm_list(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__VmListReply *r = (const void *)reply;

	(void)args;
	if (json) {
		ctl_emit_json(ctl_json_vms(r));
		return;
	}
	printf("%-16s %-9s %-10s %5s %8s %-10s %-24s %s\n", "VM", "STATE",
	       "CELL", "VCPUS", "MEMORY", "IMAGE", "NODES", "REASON");
	for (size_t i = 0; i < r->n_vms; i++) {
		const Cellmon__VmInfo *v = r->vms[i];
		char nodes[256] = "-", mem[32];
		size_t off = 0;

		for (size_t d = 0; d < v->n_deps && off < sizeof(nodes); d++)
			off += (size_t)snprintf(nodes + off,
						sizeof(nodes) - off, "%s%s",
						d ? "," : "", v->deps[d]);
		snprintf(mem, sizeof(mem), "%lluM",
			 (unsigned long long)v->spec->memory_mb);
		printf("%-16s %-9s %-10s %5u %8s %-10s %-24s %s\n",
		       v->spec->name, ctl_vm_state_name(v->state),
		       v->spec->cell, v->spec->vcpus, mem, v->spec->image,
		       nodes, v->reason);
	}
}

void ctl_render_vm_console(bool json, const ProtobufCMessage *reply,
			   char **args)
{
	const Cellmon__VmConsoleReply *r = (const void *)reply;

	(void)args;
	if (json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr && i < r->n_consoles; i++) {
			const Cellmon__VcpuConsole *c = r->consoles[i];
			const char *text =
				c->text.len ? (const char *)c->text.data : "";

			json_array_append_new(
				arr, json_pack("{s:i, s:s, s:s%, s:b}", "vcpu",
					       (int)c->vcpu, "node", c->node,
					       "text", text, c->text.len,
					       "truncated", c->truncated));
		}
		ctl_emit_json(json_pack("{s:o}", "consoles", arr));
		return;
	}
	for (size_t i = 0; i < r->n_consoles; i++) {
		const Cellmon__VcpuConsole *c = r->consoles[i];

		printf("--- vcpu %u on %s%s ---\n", c->vcpu, c->node,
		       c->truncated ? " (older output dropped)" : "");
		if (!c->text.len)
			continue;
		fwrite(c->text.data, 1, c->text.len, stdout);
		if (c->text.data[c->text.len - 1] != '\n')
			putchar('\n');
	}
}

static void print_stats_row(const char *node, const uint64_t v[9])
{
	printf("%-16s %9llu %9llu %9llu %9llu %9llu %9llu %11llu %7llu %7llu\n",
	       node, (unsigned long long)v[0], (unsigned long long)v[1],
	       (unsigned long long)v[2], (unsigned long long)v[3],
	       (unsigned long long)v[4], (unsigned long long)v[5],
	       (unsigned long long)v[6], (unsigned long long)v[7],
	       (unsigned long long)v[8]);
}

void ctl_render_vm_stats(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__VmStatsReply *r = (const void *)reply;
	uint64_t t[9] = {0};

	(void)args;
	if (json) {
		json_t *arr = json_array();

		for (size_t i = 0; arr && i < r->n_nodes; i++) {
			const Cellmon__VmNodeStats *s = r->nodes[i];

			json_array_append_new(
				arr,
				json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
					  "s:I, s:I, s:I, s:s}",
					  "node", s->node, "read_faults",
					  (json_int_t)s->read_faults,
					  "write_faults",
					  (json_int_t)s->write_faults,
					  "local_faults",
					  (json_int_t)s->local_faults,
					  "remote_faults",
					  (json_int_t)s->remote_faults,
					  "invalidations",
					  (json_int_t)s->invalidations,
					  "transfers", (json_int_t)s->transfers,
					  "bytes_in", (json_int_t)s->bytes_in,
					  "pages_homed",
					  (json_int_t)s->pages_homed, "pushes",
					  (json_int_t)s->pushes, "error",
					  s->error));
		}
		ctl_emit_json(
			json_pack("{s:s, s:o}", "vm", r->name, "nodes", arr));
		return;
	}
	printf("%-16s %9s %9s %9s %9s %9s %9s %11s %7s %7s\n", "NODE",
	       "RD_FAULT", "WR_FAULT", "LOCAL", "REMOTE", "INVAL", "TRANSFER",
	       "BYTES_IN", "HOMED", "PUSHED");
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Cellmon__VmNodeStats *s = r->nodes[i];
		uint64_t v[9] = {
			s->read_faults,	  s->write_faults,  s->local_faults,
			s->remote_faults, s->invalidations, s->transfers,
			s->bytes_in,	  s->pages_homed,   s->pushes};

		if (s->error[0]) {
			printf("%-16s (%s)\n", s->node, s->error);
			continue;
		}
		print_stats_row(s->node, v);
		for (int k = 0; k < 9; k++)
			t[k] += v[k];
	}
	print_stats_row("total", t);
}

int ctl_build_vm_list(const struct ctl_opts *o, char **args, int nargs,
		      ProtobufCMessage **out)
{
	Cellmon__VmListRequest *r;

	(void)args;
	(void)nargs;
	if (ctl_check_keys(o, NULL, "this command") || o->nguest || o->dry_run)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	cellmon__vm_list_request__init(r);
	*out = &r->base;
	return 0;
}

/* One line per key of by (a node or a disk server): the VMs on it. */
static void print_affected(json_t *by, const char *prefix)
{
	const char *key;
	json_t *list;

	json_object_foreach(by, key, list)
	{
		char what[200];

		snprintf(what, sizeof(what), "%s%s", prefix, key);
		printf("%-28s ", what);
		for (size_t k = 0; k < json_array_size(list); k++)
			printf("%s%s", k ? "," : "",
			       json_string_value(json_array_get(list, k)));
		printf("\n");
	}
}

/* cell deps CELL: which VMs depend on which nodes of the cell, and on
 * the disk server. */
void ctl_render_cell_deps(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__VmListReply *r = (const void *)reply;
	json_t *vms = json_array(), *nodes = json_object();
	json_t *servers = json_object();

	for (size_t i = 0; i < r->n_vms; i++) {
		const Cellmon__VmInfo *v = r->vms[i];
		json_t *deps = json_array();

		if (strcmp(v->spec->cell, args[0]) != 0)
			continue;
		for (size_t d = 0; d < v->n_deps; d++) {
			json_t *on = json_object_get(nodes, v->deps[d]);

			json_array_append_new(deps, json_string(v->deps[d]));
			/* Only VMs that run now are affected by a failure. */
			if (v->state < CELLMON__VM_STATE__VM_STARTING ||
			    v->state > CELLMON__VM_STATE__VM_STOPPING)
				continue;
			if (!on) {
				on = json_array();
				json_object_set_new(nodes, v->deps[d], on);
			}
			json_array_append_new(on, json_string(v->spec->name));
		}
		if (v->disk_server[0] &&
		    v->state >= CELLMON__VM_STATE__VM_STARTING &&
		    v->state <= CELLMON__VM_STATE__VM_STOPPING) {
			json_t *on = json_object_get(servers, v->disk_server);

			if (!on) {
				on = json_array();
				json_object_set_new(servers, v->disk_server,
						    on);
			}
			json_array_append_new(on, json_string(v->spec->name));
		}
		json_array_append_new(
			vms,
			json_pack("{s:s, s:s, s:o, s:s}", "vm", v->spec->name,
				  "state", ctl_vm_state_name(v->state), "deps",
				  deps, "disk_server", v->disk_server));
	}
	if (json) {
		ctl_emit_json(json_pack("{s:s, s:o, s:o, s:o}", "cell", args[0],
					"vms", vms, "affected_by_node", nodes,
					"affected_by_disk_server", servers));
		return;
	}
	printf("%-16s %-9s %s\n", "VM", "STATE", "DEPENDS ON");
	for (size_t i = 0; i < json_array_size(vms); i++) {
		json_t *v = json_array_get(vms, i),
		       *d = json_object_get(v, "deps");
		const char *ds;

		printf("%-16s %-9s ",
		       json_string_value(json_object_get(v, "vm")),
		       json_string_value(json_object_get(v, "state")));
		for (size_t k = 0; k < json_array_size(d); k++)
			printf("%s%s", k ? "," : "",
			       json_string_value(json_array_get(d, k)));
		printf("%s", json_array_size(d) ? "" : "-");
		ds = json_string_value(json_object_get(v, "disk_server"));
		printf("%s%s\n", ds && ds[0] ? " + disk server " : "",
		       ds ? ds : "");
	}
	printf("\n%-28s %s\n", "NODE OR DISK SERVER",
	       "RUNNING VMS AFFECTED IF IT FAILS");
	print_affected(nodes, "");
	print_affected(servers, "disk server ");
	json_decref(vms);
	json_decref(nodes);
	json_decref(servers);
}

static void print_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", v[i]);
	printf("%s", n ? "" : "-");
}

#define MAP_ROWS  16 /* rows of the text map; ranges are merged to fit */
#define MAP_NODES 64 /* nodes a region can have (DSM_MAX_NODES) */

/* The map of homes as a table of at most MAP_ROWS rows. */
static void print_map(const Cellmon__VmPagesReply *r)
{
	size_t per = (r->n_ranges + MAP_ROWS - 1) / MAP_ROWS;
	size_t nn = r->n_map_nodes < MAP_NODES ? r->n_map_nodes : MAP_NODES;

	printf("\nwhere its memory lives (pages homed on each node | each "
	       "node's faults in the last round | pages with copies on two "
	       "or more nodes):\n%-15s",
	       "PAGES");
	for (size_t k = 0; k < nn; k++)
		printf(" %10.10s", r->map_nodes[k]);
	printf(" |");
	for (size_t k = 0; k < nn; k++)
		printf(" %10.10s", r->map_nodes[k]);
	printf(" | REPLICATED\n");
	for (size_t i = 0; i < r->n_ranges; i += per) {
		uint64_t homed[MAP_NODES] = {0}, faults[MAP_NODES] = {0};
		uint64_t repl = 0, pages = 0;
		char span[32];

		for (size_t j = i; j < i + per && j < r->n_ranges; j++) {
			const Cellmon__PageRange *g = r->ranges[j];

			for (size_t k = 0; k < nn; k++) {
				homed[k] += k < g->n_homed ? g->homed[k] : 0;
				faults[k] += k < g->n_faults ? g->faults[k] : 0;
			}
			repl += g->replicated;
		}
		for (size_t k = 0; k < nn; k++)
			pages += homed[k];
		/* up to the next row's first page; the last row ends where
		 * its pages do */
		snprintf(span, sizeof(span), "%u-%llu", r->ranges[i]->first,
			 i + per < r->n_ranges
				 ? (unsigned long long)r->ranges[i + per]
						   ->first -
					   1
				 : (unsigned long long)(r->ranges[i]->first +
							(pages ? pages : 1) -
							1));
		printf("%-15s", span);
		for (size_t k = 0; k < nn; k++)
			printf(" %10llu", (unsigned long long)homed[k]);
		printf(" |");
		for (size_t k = 0; k < nn; k++)
			printf(" %10llu", (unsigned long long)faults[k]);
		printf(" | %llu\n", (unsigned long long)repl);
	}
}

void ctl_render_vm_pages(bool json, const ProtobufCMessage *reply, char **args)
{
	const Cellmon__VmPagesReply *r = (const void *)reply;
	const char *mode = ctl_page_policy_name((int)r->page_policy);
	int rc;

	(void)args;
	if (ctl_pages_svg_path) {
		rc = ctl_pages_svg(r, ctl_pages_svg_path);
		if (rc) {
			fprintf(stderr, "cellctl: cannot write %s: %s\n",
				ctl_pages_svg_path, strerror(-rc));
			exit(1);
		}
		if (!json) {
			printf("wrote %s: %zu ranges of %u pages\n",
			       ctl_pages_svg_path, r->n_ranges, r->range_pages);
			return;
		}
	}
	if (json) {
		ctl_emit_json(ctl_json_vm_pages(r));
		return;
	}
	printf("vm %s: page policy %s; %u sample rounds this run (the last "
	       "covered %u ms)\n",
	       r->name, mode, r->rounds, r->interval_ms);
	printf("decided: %llu home moves, %llu pushes; the nodes applied "
	       "%llu, dropped %llu (changed meanwhile); %llu over the rate "
	       "limit, %llu held after a move\n",
	       (unsigned long long)r->moves, (unsigned long long)r->pushes,
	       (unsigned long long)r->applied, (unsigned long long)r->dropped,
	       (unsigned long long)r->limited, (unsigned long long)r->held);
	if (r->n_hot) {
		printf("\nhottest pages of the last round (requests at the "
		       "home, reads/writes by node):\n%-10s %-12s %-40s %s\n",
		       "PAGE", "HOME", "REQUESTS", "COPIES");
		for (size_t i = 0; i < r->n_hot; i++) {
			const Cellmon__PageHeat *h = r->hot[i];
			char req[400];
			size_t off = 0;

			req[0] = 0;
			for (size_t k = 0; k < h->n_nodes && off < sizeof(req);
			     k++)
				off += (size_t)snprintf(
					req + off, sizeof(req) - off,
					"%s%s %u/%u", k ? " " : "", h->nodes[k],
					k < h->n_reads ? h->reads[k] : 0,
					k < h->n_writes ? h->writes[k] : 0);
			printf("%-10u %-12s %-40s ", h->page, h->home, req);
			print_names(h->copies, h->n_copies);
			printf("\n");
		}
	}
	if (r->n_shared) {
		printf("\nwrite-shared pages, left where they are:\n%-10s "
		       "%-20s %-20s %-12s %s\n",
		       "PAGE", "WRITERS", "READERS", "VCPUS", "ROUNDS");
		for (size_t i = 0; i < r->n_shared; i++) {
			const Cellmon__SharedPage *s = r->shared[i];
			char v[200];
			size_t off = 0;

			v[0] = 0;
			for (size_t k = 0; k < s->n_vcpus && off < sizeof(v);
			     k++)
				off += (size_t)snprintf(
					v + off, sizeof(v) - off, "%s%u",
					k ? "," : "", s->vcpus[k]);
			printf("%-10u ", s->page);
			print_names(s->writers, s->n_writers);
			printf(" ");
			print_names(s->readers, s->n_readers);
			printf(" %-12s %u\n", v[0] ? v : "-", s->intervals);
		}
		printf("(vCPUs that share written pages run faster on one "
		       "node: vm create --placement=pack, or --node)\n");
	}
	if (r->n_ranges)
		print_map(r);
	if (!r->n_hot && !r->n_shared && !r->n_ranges)
		printf("(nothing sampled yet: the VM is not running, or no "
		       "round has answered)\n");
}
