/*
 * cellctl: the admin CLI, a thin client of the manager's ctl address.
 *
 *   cellctl [OPTIONS] NOUN VERB [ARGS]
 *
 * Each command is one request on a fresh connection (cell_rpc_call_sync).
 * The command table below is the single source of the help text and of
 * argument-count checks. Exit codes are part of the interface (see usage()
 * and docs/operations.md).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/config.h"
#include "cell/log.h"
#include "cell/tls.h"
#include "cellctl.h"

enum {
	EXIT_OK = 0,
	EXIT_ERR = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
	EXIT_NOTFOUND = 4,
	EXIT_CONFLICT = 5,
	EXIT_NOSPACE = 6,
	EXIT_DENIED = 7,
};

struct ctl {
	const char *manager;
	const char *ca, *cert, *key; /* TLS: --ca, --cert, --key */
	bool json;
	unsigned timeout_ms;
	bool timeout_set;
	struct cell_rpc_config rpc;
	struct ctl_opts opts;
};

/* Renders a successful reply: JSON or a table. args are the command's. */
typedef void (*ctl_render_fn)(bool json, const ProtobufCMessage *reply,
			      char **args);

struct ctl_cmd {
	const char *noun;
	const char *verb; /* NULL for a one-word command */
	int nargs;	  /* required; nopt more may follow */
	int nopt;
	const char *args;
	const char *help;
	uint16_t type;
	uint16_t reply_type;
	const ProtobufCMessageDescriptor *req_desc;
	/* The request's fields that take the arguments, in order: string
	 * fields as given, uint64 fields as sizes ("4096", "64M", "2G"). */
	const char *fields[3];
	ctl_render_fn render;
	/* Builds the request instead of `fields` (commands with options);
	 * NULL for the rest, which refuse options. The request is freed
	 * with free(). */
	ctl_build_fn build;
	/* After a success: turns the request into a follow-up one (sets
	 * *type) and returns 1, or returns 0. May be NULL (and then --start
	 * is refused). */
	int (*then)(const struct ctl_opts *o, ProtobufCMessage *req,
		    uint16_t *type);
};

static int exit_code(int rc)
{
	switch (rc) {
	case 0:
		return EXIT_OK;
	case -ENOENT:
		return EXIT_NOTFOUND;
	case -EEXIST:
	case -EBUSY:
		return EXIT_CONFLICT;
	case -ENOSPC:
		return EXIT_NOSPACE;
	case -EACCES:
	case -EPERM:
		return EXIT_DENIED;
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENOTCONN:
	case -EPROTONOSUPPORT:
		return EXIT_UNREACHABLE;
	default:
		return EXIT_ERR;
	}
}

/*
 * Builds the request from the descriptor: every argument goes into the
 * field named for it, so the command table fully describes a command and
 * no per-command client code is needed. -EINVAL with a message for an
 * argument that is not a valid size.
 */
static int build_request(const struct ctl_cmd *cmd, char **args, int nargs,
			 ProtobufCMessage **out)
{
	ProtobufCMessage *req = calloc(1, cmd->req_desc->sizeof_message);

	if (!req)
		return -ENOMEM;
	protobuf_c_message_init(cmd->req_desc, req);
	for (int i = 0; i < nargs; i++) {
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(
				cmd->req_desc, cmd->fields[i]);
		int64_t v;

		if (f && f->type == PROTOBUF_C_TYPE_STRING) {
			*(char **)((char *)req + f->offset) = args[i];
		} else if (f && f->type == PROTOBUF_C_TYPE_UINT64) {
			if (cell_parse_size(args[i], &v) || v < 0) {
				fprintf(stderr,
					"cellctl: '%s' is not a size (bytes, "
					"or with binary K, M, G or T: 4096, "
					"64M, 2G, 1T)\n",
					args[i]);
				free(req);
				return -EINVAL;
			}
			*(uint64_t *)((char *)req + f->offset) = (uint64_t)v;
		} else {
			fprintf(stderr,
				"cellctl: internal error building %s "
				"request\n",
				cmd->req_desc->short_name);
			free(req);
			return -EINVAL;
		}
	}
	*out = req;
	return 0;
}

/*
 * cellctl status: the manager's status, then whether the cell is healthy
 * and, if not, why, from three more requests: the nodes (any not up),
 * the VMs (any failed), the disk server (configured but not answering).
 * A request that fails is itself a problem on the list.
 */
static int status_health(struct ctl *ctl, const ProtobufCMessage *status)
{
	struct ctl_problems p = {0};
	Cellmon__NodeListRequest nreq = CELLMON__NODE_LIST_REQUEST__INIT;
	Cellmon__VmListRequest vreq = CELLMON__VM_LIST_REQUEST__INIT;
	Cellmon__DiskListRequest dreq = CELLMON__DISK_LIST_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	char err[700];
	int rc;

	rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc,
				CELLMON__MSG_TYPE__MSG_NODE_LIST, &nreq.base,
				CELLMON__MSG_TYPE__MSG_NODE_LIST_REPLY,
				ctl->timeout_ms, &reply, err, sizeof(err));
	if (rc)
		ctl_problem(&p, "the node list: %s", err);
	else
		ctl_node_problems(&p, (const void *)reply);
	protobuf_c_message_free_unpacked(reply, NULL);
	reply = NULL;
	rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc,
				CELLMON__MSG_TYPE__MSG_VM_LIST, &vreq.base,
				CELLMON__MSG_TYPE__MSG_VM_LIST_REPLY,
				ctl->timeout_ms, &reply, err, sizeof(err));
	if (rc)
		ctl_problem(&p, "the VM list: %s", err);
	else
		ctl_vm_problems(&p, (const void *)reply);
	protobuf_c_message_free_unpacked(reply, NULL);
	reply = NULL;
	rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc,
				CELLMON__MSG_TYPE__MSG_DISK_LIST, &dreq.base,
				CELLMON__MSG_TYPE__MSG_DISK_LIST_REPLY,
				ctl->timeout_ms, &reply, err, sizeof(err));
	if (rc == -ENOTSUP)
		p.no_disk_server = true;
	else if (rc)
		ctl_problem(&p, "the disk server does not answer: %s", err);
	protobuf_c_message_free_unpacked(reply, NULL);
	ctl_render_status_health(ctl->json, (const void *)status, &p);
	ctl_problems_free(&p);
	return EXIT_OK;
}

static const char *env_or(const char *v, const char *name)
{
	const char *e = getenv(name);

	return v ? v : e && *e ? e : NULL;
}

/* TLS to the manager when a certificate is given (--cert, --key, --ca
 * or CELLMON_CERT, CELLMON_KEY, CELLMON_CA): the manager must show a
 * manager's certificate of the same CA. 0, or -1 after saying why. */
static int setup_tls(struct ctl *ctl)
{
	struct cell_tls_config c = {env_or(ctl->ca, "CELLMON_CA"),
				    env_or(ctl->cert, "CELLMON_CERT"),
				    env_or(ctl->key, "CELLMON_KEY"), NULL,
				    CELL_ROLE_BIT(CELL_ROLE_MANAGER)};
	char err[1300];

	if (!c.ca && !c.cert && !c.key)
		return 0; /* plain TCP */
	if (cell_tls_new(&c, &ctl->rpc.tls, err, sizeof(err))) {
		fprintf(stderr,
			"cellctl: %s (--ca, --cert and --key, or "
			"CELLMON_CA, CELLMON_CERT and CELLMON_KEY)\n",
			err);
		return -1;
	}
	return 0;
}

/* One request; on failure prints the reason and returns the exit code. */
static int run_cmd(struct ctl *ctl, const struct ctl_cmd *cmd, char **args,
		   int nargs)
{
	const struct ctl_opts *o = &ctl->opts;
	ProtobufCMessage *req, *reply = NULL;
	uint16_t type = cmd->type;
	char err[700];
	int rc;

	if (o->follow && cmd->type != CELLMON__MSG_TYPE__MSG_EVENTS) {
		fprintf(stderr, "cellctl: --follow belongs to events\n");
		return EXIT_USAGE;
	}
	if (!cmd->build && (o->n || o->dry_run || o->start || o->nguest)) {
		fprintf(stderr,
			"cellctl: %s%s%s takes no %s%s (see cellctl --help)\n",
			cmd->noun, cmd->verb ? " " : "",
			cmd->verb ? cmd->verb : "",
			o->n	    ? "option --"
			: o->nguest ? "guest arguments"
				    : "option ",
			o->n	     ? o->key[0]
			: o->nguest  ? ""
			: o->dry_run ? "--dry-run"
				     : "--start");
		return EXIT_USAGE;
	}
	if (o->start && !cmd->then) {
		fprintf(stderr, "cellctl: --start belongs to vm create\n");
		return EXIT_USAGE;
	}

	rc = cmd->build ? cmd->build(o, args, nargs, &req)
			: build_request(cmd, args, nargs, &req);
	if (rc)
		return rc == -EINVAL ? EXIT_USAGE : EXIT_ERR;
	/* the certificate files once the command is known to be right: a
	 * usage error is said first */
	if (setup_tls(ctl)) {
		free(req);
		return EXIT_USAGE;
	}
again:
	rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc, type, req,
				cmd->reply_type, ctl->timeout_ms, &reply, err,
				sizeof(err));
	/* A follow-up (vm create --start) goes once, on success. */
	if (!rc && cmd->then && type == cmd->type && cmd->then(o, req, &type)) {
		protobuf_c_message_free_unpacked(reply, NULL);
		reply = NULL;
		goto again;
	}
	free(req);
	if (rc) {
		if (strncmp(err, "cannot reach", 12) == 0)
			fprintf(stderr,
				"cellctl: manager: %s (set --manager "
				"or CELLMON_MANAGER)\n",
				err);
		else
			fprintf(stderr, "cellctl: %s\n", err);
		return exit_code(rc);
	}
	if (o->follow) /* JSON lines from the first reply on */
		return ctl_events_follow(ctl->manager, &ctl->rpc,
					 ctl->timeout_ms, ctl->json, reply);
	if (cmd->type == CELLMON__MSG_TYPE__MSG_STATUS) {
		rc = status_health(ctl, reply);
		protobuf_c_message_free_unpacked(reply, NULL);
		return rc;
	}
	cmd->render(ctl->json, reply, args);
	protobuf_c_message_free_unpacked(reply, NULL);
	return EXIT_OK;
}

#define M(x) CELLMON__MSG_TYPE__MSG_##x
#define D(x) &cellmon__##x##__descriptor

static const struct ctl_cmd commands[] = {
	{"status",
	 NULL,
	 0,
	 0,
	 "",
	 "manager version, uptime, node counts, and whether the cell is "
	 "healthy: if not, why (nodes not up, failed VMs, a disk server that "
	 "does not answer)",
	 M(STATUS),
	 M(STATUS_REPLY),
	 D(status_request),
	 {NULL},
	 ctl_render_status},
	{"events",
	 NULL,
	 0,
	 0,
	 "[--since=DURATION] [--follow]",
	 "the manager's event log, oldest first: node and VM state changes, "
	 "fences, placements, restarts, migrations, page-policy rounds, "
	 "changing cellctl calls with the caller; --since: only that recent; "
	 "--follow: then the new ones as they come",
	 M(EVENTS),
	 M(EVENTS_REPLY),
	 D(events_request),
	 {NULL},
	 ctl_render_events,
	 ctl_build_events,
	 NULL},
	{"node",
	 "list",
	 0,
	 0,
	 "",
	 "every known node with state and incarnation",
	 M(NODE_LIST),
	 M(NODE_LIST_REPLY),
	 D(node_list_request),
	 {NULL},
	 ctl_render_node_list},
	{"node",
	 "info",
	 1,
	 0,
	 "NODE",
	 "one node in detail",
	 M(NODE_INFO),
	 M(NODE_INFO_REPLY),
	 D(node_info_request),
	 {"id"},
	 ctl_render_node_info},
	{"node",
	 "ping",
	 1,
	 0,
	 "NODE",
	 "round trip manager -> agent -> manager (control path)",
	 M(NODE_PING),
	 M(NODE_PING_REPLY),
	 D(node_ping_request),
	 {"id"},
	 ctl_render_node_ping},
	{"cell",
	 "list",
	 0,
	 0,
	 "",
	 "every cell with its nodes",
	 M(CELL_LIST),
	 M(CELL_LIST_REPLY),
	 D(cell_list_request),
	 {NULL},
	 ctl_render_cell_list},
	{"cell",
	 "info",
	 1,
	 0,
	 "CELL",
	 "one cell",
	 M(CELL_INFO),
	 M(CELL_REPLY),
	 D(cell_request),
	 {"name"},
	 ctl_render_cell},
	{"cell",
	 "create",
	 1,
	 0,
	 "CELL [--page-policy=off|migrate|replicate|all]",
	 "create an empty cell; --page-policy: of the VMs created in it "
	 "without one (default all)",
	 M(CELL_CREATE),
	 M(CELL_REPLY),
	 D(cell_request),
	 {NULL},
	 ctl_render_cell,
	 ctl_build_cell_create},
	{"cell",
	 "set",
	 2,
	 0,
	 "CELL page-policy=MODE",
	 "the page policy of VMs created in the cell from now on without "
	 "--page-policy (VMs that exist keep theirs: vm set)",
	 M(CELL_SET),
	 M(CELL_REPLY),
	 D(cell_request),
	 {NULL},
	 ctl_render_cell,
	 ctl_build_cell_set},
	{"cell",
	 "delete",
	 1,
	 0,
	 "CELL",
	 "delete an empty cell",
	 M(CELL_DELETE),
	 M(CELL_REPLY),
	 D(cell_request),
	 {"name"},
	 ctl_render_cell},
	{"cell",
	 "add-node",
	 2,
	 0,
	 "CELL NODE",
	 "put a node in a cell (a node is in at most one cell)",
	 M(CELL_ADD_NODE),
	 M(CELL_REPLY),
	 D(cell_request),
	 {"name", "node"},
	 ctl_render_cell},
	{"cell",
	 "remove-node",
	 2,
	 0,
	 "CELL NODE",
	 "take a node out of its cell",
	 M(CELL_REMOVE_NODE),
	 M(CELL_REPLY),
	 D(cell_request),
	 {"name", "node"},
	 ctl_render_cell},
	{"disk",
	 "list",
	 0,
	 0,
	 "",
	 "every disk of the disk server",
	 M(DISK_LIST),
	 M(DISK_LIST_REPLY),
	 D(disk_list_request),
	 {NULL},
	 ctl_render_disk_list},
	{"disk",
	 "info",
	 1,
	 0,
	 "DISK",
	 "one disk: size, parent, chain, space, clients",
	 M(DISK_INFO),
	 M(DISK_REPLY),
	 D(disk_request),
	 {"name"},
	 ctl_render_disk},
	{"disk",
	 "create",
	 2,
	 1,
	 "DISK SIZE [base:ID|disk:NAME]",
	 "a new disk, empty or over a base image or frozen disk (SIZE 0: "
	 "the parent's)",
	 M(DISK_CREATE),
	 M(DISK_REPLY),
	 D(disk_request),
	 {"name", "size", "parent"},
	 ctl_render_disk},
	{"disk",
	 "clone",
	 2,
	 0,
	 "SRC DISK",
	 "freeze SRC (for good) and make DISK over it",
	 M(DISK_CLONE),
	 M(DISK_REPLY),
	 D(disk_request),
	 {"src", "name"},
	 ctl_render_disk},
	{"disk",
	 "delete",
	 1,
	 0,
	 "DISK",
	 "delete a disk nobody uses and nothing is cloned from",
	 M(DISK_DELETE),
	 M(DISK_REPLY),
	 D(disk_request),
	 {"name"},
	 ctl_render_disk},
	{"cell",
	 "deps",
	 1,
	 0,
	 "CELL",
	 "the VMs of a cell and the nodes each depends on (vCPUs and the only "
	 "copies of its pages) and on the disk server",
	 M(VM_LIST),
	 M(VM_LIST_REPLY),
	 D(vm_list_request),
	 {NULL},
	 ctl_render_cell_deps,
	 ctl_build_vm_list},
#define VM_THEN(verb, n, args, help, type, reply, render, build, then) \
	{                                                              \
		"vm", verb, n, 0, args, help, M(type), M(reply),       \
			D(vm_request), {NULL}, render, build, then     \
	}
#define VM(verb, n, args, help, type, reply, render, build) \
	VM_THEN(verb, n, args, help, type, reply, render, build, NULL)
	VM("list", 0, "", "every VM with its state, cell and nodes", VM_LIST,
	   VM_LIST_REPLY, ctl_render_vm_list, ctl_build_vm_list),
	VM("info", 1, "VM",
	   "one VM: spec, state and reason, placement per vCPU, dependency "
	   "set",
	   VM_INFO, VM_REPLY, ctl_render_vm, ctl_build_vm_request),
	VM_THEN("create", 1,
		"VM --cell=C --image=I [--vcpus=N] [--memory=SIZE] "
		"[--placement=spread|pack] [--node=N] [--anti-affinity=G] "
		"[--home=interleave|first-touch|one] [--home-node=N] "
		"[--engine=native|qemu] [--kernel=PATH [--initrd=PATH]] "
		"[--page-policy=off|migrate|replicate|all] "
		"[--disk=NAME[:ro] ...] [--max-restarts=N] "
		"[--dry-run] [--start] [-- ARGS]",
		"define a VM (pending); --dry-run shows the placement only, "
		"--start starts it",
		VM_CREATE, VM_REPLY, ctl_render_vm, ctl_build_vm_create,
		ctl_vm_then_start),
	VM("start", 1, "VM [--dry-run]",
	   "place and start; returns when every vCPU runs (or the start "
	   "failed)",
	   VM_START, VM_REPLY, ctl_render_vm, ctl_build_vm_request),
	VM("stop", 1, "VM",
	   "SIGTERM every vCPU, SIGKILL after the agent's grace; returns "
	   "when stopped",
	   VM_STOP, VM_REPLY, ctl_render_vm, ctl_build_vm_request),
	VM("kill", 1, "VM", "end every vCPU on every node now", VM_KILL,
	   VM_REPLY, ctl_render_vm, ctl_build_vm_request),
	VM("delete", 1, "VM", "forget a VM that is not running", VM_DELETE,
	   VM_REPLY, ctl_render_vm, ctl_build_vm_request),
	VM("console", 1, "VM", "console output of every vCPU (last run)",
	   VM_CONSOLE, VM_CONSOLE_REPLY, ctl_render_vm_console,
	   ctl_build_vm_request),
	VM("pages", 1, "VM [--svg=FILE]",
	   "what the page policy saw and did this run: moves, pushes, the "
	   "hottest pages of the last round, write-shared pages, the map of "
	   "homes; --svg: the map as a heat map picture in FILE",
	   VM_PAGES, VM_PAGES_REPLY, ctl_render_vm_pages, ctl_build_vm_pages),
	VM("set", 2, "VM page-policy=off|migrate|replicate|all",
	   "change a VM's page policy, running or not (the next sample "
	   "round uses it)",
	   VM_SET, VM_REPLY, ctl_render_vm, ctl_build_vm_set),
	VM("migrate", 1, "VM --to=NODE",
	   "move a running qemu VM's vCPUs to NODE of its cell; its memory "
	   "stays where it is (pages follow on demand); prints the pause",
	   VM_MIGRATE, VM_REPLY, ctl_render_vm, ctl_build_vm_migrate),
	VM("stats", 1, "VM",
	   "memory counters per node: faults by kind, local vs remote, "
	   "transfers, bytes (live, or from the end of the last run)",
	   VM_STATS, VM_STATS_REPLY, ctl_render_vm_stats, ctl_build_vm_request),
	{NULL, NULL, 0, 0, NULL, NULL, 0, 0, NULL, {NULL}, NULL, NULL, NULL},
};

static void usage(FILE *out)
{
	fputs("usage: cellctl [OPTIONS] NOUN VERB [ARGS]\n\n"
	      "Commands:\n",
	      out);
	for (const struct ctl_cmd *c = commands; c->noun; c++) {
		char left[400];

		snprintf(left, sizeof(left), "%s%s%s %s", c->noun,
			 c->verb ? " " : "", c->verb ? c->verb : "", c->args);
		/* Long synopses get a line of their own. */
		if (strlen(left) > 28)
			fprintf(out, "  %s\n  %-28s %s\n", left, "", c->help);
		else
			fprintf(out, "  %-28s %s\n", left, c->help);
	}
	fputs("\nThe cell's certificate authority (local: no manager "
	      "needed):\n"
	      "  ca init DIR [--cell=NAME] [--days=N]\n"
	      "                               make a CA in DIR: ca.key "
	      "(0600), ca.crt, crl.pem\n"
	      "  ca issue DIR --node=ID|--admin=NAME|--viewer=NAME|"
	      "--disk-server=NAME\n"
	      "           [--role=ROLE --name=NAME] [--san=IP:A,DNS:H] "
	      "[--days=N] [--out=PREFIX]\n"
	      "                               a key and certificate with the "
	      "role in it\n"
	      "                               (default DIR/certs/ROLE-NAME."
	      "{crt,key})\n"
	      "  ca revoke DIR SERIAL         revoke it; rewrites DIR/crl.pem\n"
	      "  ca list DIR                  the certificates issued\n",
	      out);
	fputs("\nA command's options are written --key=value.\n"
	      "\nOptions (anywhere on the line):\n"
	      "  --manager=HOST:PORT   manager ctl address (default "
	      "$CELLMON_MANAGER,\n"
	      "                        else 127.0.0.1:7401)\n"
	      "  -o, --output=FORMAT   table (default) or json; json goes to "
	      "stdout,\n"
	      "                        errors always to stderr\n"
	      "  --ca=FILE, --cert=FILE, --key=FILE\n"
	      "                        TLS to the manager: the cell's CA "
	      "certificate and\n"
	      "                        an admin's or viewer's certificate "
	      "and key (default\n"
	      "                        $CELLMON_CA, $CELLMON_CERT, "
	      "$CELLMON_KEY; none: plain TCP)\n"
	      "  --timeout=DURATION    per-request timeout (default 5s; 60s "
	      "for vm\n"
	      "                        create/start/stop/kill/migrate, which "
	      "wait for the VM)\n"
	      "  -h, --help            this text\n"
	      "  --version             print the version\n"
	      "\nExit status:\n"
	      "  0  success\n"
	      "  1  the manager refused or failed the request\n"
	      "  2  usage error (unknown command, wrong arguments)\n"
	      "  3  manager unreachable, timed out, or speaks another "
	      "protocol\n"
	      "  4  the named node, cell, disk, VM or image does not exist "
	      "(an image:\n"
	      "     no node of the VM's cell has it; the VM is not "
	      "recorded)\n"
	      "  5  conflict: already exists, or still in use\n"
	      "  6  no room: placement found no node for the VM (the message\n"
	      "     names each filter that rejected nodes; 'image': nodes of\n"
	      "     the cell that lack it while others have it)\n"
	      "  7  refused: a viewer's write, or TLS refused this "
	      "certificate\n",
	      out);
}

/* Pulls options out of argv; leaves positional words in args. */
static int parse_opts(struct ctl *ctl, int argc, char **argv, char **args,
		      int *nargs)
{
	int64_t ms;

	*nargs = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return 1;
		if (strcmp(a, "--version") == 0)
			return 3;
		if (a[0] != '-' || a[1] == '\0') {
			args[(*nargs)++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			ctl->opts.guest_args = argv + i + 1;
			ctl->opts.nguest = argc - i - 1;
			break;
		}
		if (strcmp(a, "--dry-run") == 0 || strcmp(a, "--start") == 0) {
			*(a[2] == 'd' ? &ctl->opts.dry_run : &ctl->opts.start) =
				true;
			continue;
		}
		if (strcmp(a, "--follow") == 0) {
			ctl->opts.follow = true;
			continue;
		}
		const char *eq = strchr(a, '=');
		size_t n = eq ? (size_t)(eq - a) : strlen(a);
		/* Only cellctl's own options take their value as the next
		 * word; a command's are --key=value, so that an unknown
		 * option never swallows the command after it. */
		bool global = (n == 9 && strncmp(a, "--manager", 9) == 0) ||
			      (n == 2 && strncmp(a, "-o", 2) == 0) ||
			      (n == 8 && strncmp(a, "--output", 8) == 0) ||
			      (n == 9 && strncmp(a, "--timeout", 9) == 0) ||
			      (n == 4 && strncmp(a, "--ca", 4) == 0) ||
			      (n == 6 && strncmp(a, "--cert", 6) == 0) ||
			      (n == 5 && strncmp(a, "--key", 5) == 0);

		if (eq)
			val = eq + 1;
		else if (global && i + 1 < argc)
			val = argv[++i];
		if (!val && global) {
			fprintf(stderr, "cellctl: %s needs a value\n", a);
			return -1;
		}
		if (!val) {
			fprintf(stderr,
				"cellctl: unknown option '%s' (command options "
				"are --key=value; see cellctl --help)\n",
				a);
			return -1;
		}
		if (strncmp(a, "--manager", n) == 0 && n == 9) {
			ctl->manager = val;
		} else if (n == 4 && strncmp(a, "--ca", 4) == 0) {
			ctl->ca = val;
		} else if (n == 6 && strncmp(a, "--cert", 6) == 0) {
			ctl->cert = val;
		} else if (n == 5 && strncmp(a, "--key", 5) == 0) {
			ctl->key = val;
		} else if ((n == 2 && strncmp(a, "-o", 2) == 0) ||
			   (n == 8 && strncmp(a, "--output", 8) == 0)) {
			if (strcmp(val, "json") && strcmp(val, "table")) {
				fprintf(stderr,
					"cellctl: output format '%s' "
					"is not table or json\n",
					val);
				return -1;
			}
			ctl->json = strcmp(val, "json") == 0;
		} else if (n == 9 && strncmp(a, "--timeout", 9) == 0) {
			if (cell_parse_duration_ms(val, &ms) || ms <= 0 ||
			    ms > 3600000) {
				fprintf(stderr, "cellctl: bad timeout '%s'\n",
					val);
				return -1;
			}
			ctl->timeout_ms = (unsigned)ms;
			ctl->timeout_set = true;
		} else if (a[1] == '-' && n > 2 && n - 2 < 48 &&
			   ctl->opts.n < 32) {
			/* A command option; the command checks it. */
			snprintf(ctl->opts.key[ctl->opts.n], 48, "%.*s",
				 (int)(n - 2), a + 2);
			ctl->opts.val[ctl->opts.n++] = val;
		} else {
			fprintf(stderr, "cellctl: unknown option '%.*s'\n",
				(int)n, a);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ctl ctl = {0};
	char **args = calloc((size_t)argc + 1, sizeof(char *));
	const char *env = getenv("CELLMON_MANAGER");
	int nargs, rc;

	if (!args)
		return EXIT_ERR;
	cell_log_set_level(CELL_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error */
	ctl.manager = env && *env ? env : "127.0.0.1:7401";
	ctl.timeout_ms = 5000;
	ctl.rpc = (struct cell_rpc_config){.types = cellproto_types,
					   .log_module = "cellctl"};
	rc = parse_opts(&ctl, argc, argv, args, &nargs);
	if (rc)
		free(args);
	if (rc == 1) {
		usage(stdout);
		return EXIT_OK;
	}
	if (rc == 3) {
		printf("cellctl %s\n", CELLMON_VERSION);
		return EXIT_OK;
	}
	if (rc < 0)
		return EXIT_USAGE;
	if (nargs > 0 && !strcmp(args[0], "ca")) { /* local: no manager */
		rc = ctl_ca_main(&ctl.opts, ctl.json, args + 1, nargs - 1);
		free(args);
		return rc;
	}
	for (const struct ctl_cmd *c = commands; nargs > 0 && c->noun; c++) {
		int words = c->verb ? 2 : 1;

		if (strcmp(args[0], c->noun) != 0 ||
		    (c->verb && (nargs < 2 || strcmp(args[1], c->verb) != 0)))
			continue;
		if (nargs - words < c->nargs ||
		    nargs - words > c->nargs + c->nopt) {
			fprintf(stderr,
				"cellctl: %s%s%s takes %s; usage: cellctl "
				"%s%s%s%s%s\n",
				c->noun, c->verb ? " " : "",
				c->verb ? c->verb : "",
				nargs - words < c->nargs  ? "more arguments"
				: c->nargs + c->nopt == 0 ? "no arguments"
							  : "fewer arguments",
				c->noun, c->verb ? " " : "",
				c->verb ? c->verb : "", c->args[0] ? " " : "",
				c->args);
			free(args);
			cell_tls_free(ctl.rpc.tls);
			return EXIT_USAGE;
		}
		if (!ctl.timeout_set &&
		    (c->type == CELLMON__MSG_TYPE__MSG_VM_CREATE ||
		     c->type == CELLMON__MSG_TYPE__MSG_VM_START ||
		     c->type == CELLMON__MSG_TYPE__MSG_VM_STOP ||
		     c->type == CELLMON__MSG_TYPE__MSG_VM_KILL ||
		     c->type == CELLMON__MSG_TYPE__MSG_VM_MIGRATE))
			ctl.timeout_ms = 60000;
		rc = run_cmd(&ctl, c, args + words, nargs - words);
		free(args);
		cell_tls_free(ctl.rpc.tls);
		return rc;
	}
	if (nargs == 0)
		fprintf(stderr, "cellctl: no command given (see cellctl "
				"--help)\n");
	else
		fprintf(stderr,
			"cellctl: unknown command '%s%s%s' (see "
			"cellctl --help)\n",
			args[0], nargs > 1 ? " " : "",
			nargs > 1 ? args[1] : "");
	free(args);
	cell_tls_free(ctl.rpc.tls);
	return EXIT_USAGE;
}
