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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cell/config.h"
#include "cell/log.h"
#include "cellctl.h"

enum {
	EXIT_OK = 0,
	EXIT_ERR = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
	EXIT_NOTFOUND = 4,
	EXIT_CONFLICT = 5,
};

struct ctl {
	const char *manager;
	bool json;
	unsigned timeout_ms;
	struct cell_rpc_config rpc;
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
					"cellctl: '%s' is not a size (e.g. "
					"4096, 64M, 2G)\n",
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

/* One request; on failure prints the reason and returns the exit code. */
static int run_cmd(struct ctl *ctl, const struct ctl_cmd *cmd, char **args,
		   int nargs)
{
	ProtobufCMessage *req, *reply = NULL;
	char err[700];
	int rc = build_request(cmd, args, nargs, &req);

	if (rc)
		return rc == -EINVAL ? EXIT_USAGE : EXIT_ERR;
	rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc, cmd->type, req,
				cmd->reply_type, ctl->timeout_ms, &reply, err,
				sizeof(err));
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
	 "manager version, uptime and node counts",
	 M(STATUS),
	 M(STATUS_REPLY),
	 D(status_request),
	 {NULL},
	 ctl_render_status},
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
	 "CELL",
	 "create an empty cell",
	 M(CELL_CREATE),
	 M(CELL_REPLY),
	 D(cell_request),
	 {"name"},
	 ctl_render_cell},
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
	{NULL, NULL, 0, 0, NULL, NULL, 0, 0, NULL, {NULL}, NULL},
};

static void usage(FILE *out)
{
	fputs("usage: cellctl [OPTIONS] NOUN VERB [ARGS]\n\n"
	      "Commands:\n",
	      out);
	for (const struct ctl_cmd *c = commands; c->noun; c++) {
		char left[64];

		snprintf(left, sizeof(left), "%s%s%s %s", c->noun,
			 c->verb ? " " : "", c->verb ? c->verb : "", c->args);
		fprintf(out, "  %-28s %s\n", left, c->help);
	}
	fputs("\nOptions (anywhere on the line):\n"
	      "  --manager=HOST:PORT   manager ctl address (default "
	      "$CELLMON_MANAGER,\n"
	      "                        else 127.0.0.1:7401)\n"
	      "  -o, --output=FORMAT   table (default) or json; json goes to "
	      "stdout,\n"
	      "                        errors always to stderr\n"
	      "  --timeout=DURATION    per-request timeout (default 5s)\n"
	      "  -h, --help            this text\n"
	      "  --version             print the version\n"
	      "\nExit status:\n"
	      "  0  success\n"
	      "  1  the manager refused or failed the request\n"
	      "  2  usage error (unknown command, wrong arguments)\n"
	      "  3  manager unreachable, timed out, or speaks another "
	      "protocol\n"
	      "  4  the named node, cell or disk does not exist\n"
	      "  5  conflict: already exists, or still in use\n",
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
		const char *eq = strchr(a, '=');
		size_t n = eq ? (size_t)(eq - a) : strlen(a);

		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		if (!val) {
			fprintf(stderr, "cellctl: %s needs a value\n", a);
			return -1;
		}
		if (strncmp(a, "--manager", n) == 0 && n == 9) {
			ctl->manager = val;
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
	ctl.manager = env && *env ? env : "127.0.0.1:7401";
	ctl.timeout_ms = 5000;
	ctl.rpc = (struct cell_rpc_config){cellproto_types, NULL, NULL, 0,
					   "cellctl"};
	rc = parse_opts(&ctl, argc, argv, args, &nargs);
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
	for (const struct ctl_cmd *c = commands; nargs > 0 && c->noun; c++) {
		int words = c->verb ? 2 : 1;

		if (strcmp(args[0], c->noun) != 0 ||
		    (c->verb && (nargs < 2 || strcmp(args[1], c->verb) != 0)))
			continue;
		if (nargs - words < c->nargs ||
		    nargs - words > c->nargs + c->nopt) {
			fprintf(stderr, "cellctl: usage: cellctl %s%s%s %s\n",
				c->noun, c->verb ? " " : "",
				c->verb ? c->verb : "", c->args);
			free(args);
			return EXIT_USAGE;
		}
		rc = run_cmd(&ctl, c, args + words, nargs - words);
		free(args);
		return rc;
	}
	if (nargs == 0)
		usage(stderr);
	else
		fprintf(stderr,
			"cellctl: unknown command '%s%s%s' (see "
			"cellctl --help)\n",
			args[0], nargs > 1 ? " " : "",
			nargs > 1 ? args[1] : "");
	free(args);
	return EXIT_USAGE;
}
