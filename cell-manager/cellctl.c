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

struct ctl_cmd {
	const char *noun;
	const char *verb;
	int nargs;
	const char *args;
	const char *help;
	int (*fn)(struct ctl *ctl, const struct ctl_cmd *cmd, char **args);
	uint16_t type; /* request type, for the cell commands */
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

/* One request; on failure prints the reason and returns the exit code. */
static int call(struct ctl *ctl, uint16_t type, const ProtobufCMessage *req,
		uint16_t reply_type, ProtobufCMessage **reply)
{
	char err[700];
	int rc = cell_rpc_call_sync(ctl->manager, &ctl->rpc, type, req,
				    reply_type, ctl->timeout_ms, reply, err,
				    sizeof(err));

	if (!rc)
		return EXIT_OK;
	if (strncmp(err, "cannot reach", 12) == 0)
		fprintf(stderr,
			"cellctl: %s (set --manager or "
			"CELLMON_MANAGER)\n",
			err);
	else
		fprintf(stderr, "cellctl: %s\n", err);
	return exit_code(rc);
}

static int cmd_status(struct ctl *ctl, const struct ctl_cmd *cmd, char **args)
{
	Cellmon__StatusRequest req = CELLMON__STATUS_REQUEST__INIT;
	ProtobufCMessage *msg;
	int rc = call(ctl, CELLMON__MSG_TYPE__MSG_STATUS, &req.base,
		      CELLMON__MSG_TYPE__MSG_STATUS_REPLY, &msg);

	(void)cmd;
	(void)args;
	if (rc)
		return rc;
	if (ctl->json)
		ctl_emit_json(ctl_status_json((void *)msg));
	else
		ctl_print_status((void *)msg, ctl->manager);
	protobuf_c_message_free_unpacked(msg, NULL);
	return EXIT_OK;
}

static int cmd_node_list(struct ctl *ctl, const struct ctl_cmd *cmd,
			 char **args)
{
	Cellmon__NodeListRequest req = CELLMON__NODE_LIST_REQUEST__INIT;
	Cellmon__NodeListReply *r;
	ProtobufCMessage *msg;
	int rc = call(ctl, CELLMON__MSG_TYPE__MSG_NODE_LIST, &req.base,
		      CELLMON__MSG_TYPE__MSG_NODE_LIST_REPLY, &msg);

	(void)cmd;
	(void)args;
	if (rc)
		return rc;
	r = (void *)msg;
	if (ctl->json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < r->n_nodes; i++)
			json_array_append_new(arr, ctl_node_json(r->nodes[i]));
		ctl_emit_json(json_pack("{s:o}", "nodes", arr));
	} else {
		ctl_print_nodes(r->nodes, r->n_nodes);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return EXIT_OK;
}

static int cmd_node_info(struct ctl *ctl, const struct ctl_cmd *cmd,
			 char **args)
{
	Cellmon__NodeInfoRequest req = CELLMON__NODE_INFO_REQUEST__INIT;
	Cellmon__NodeInfoReply *r;
	ProtobufCMessage *msg;
	int rc;

	(void)cmd;
	req.id = args[0];
	rc = call(ctl, CELLMON__MSG_TYPE__MSG_NODE_INFO, &req.base,
		  CELLMON__MSG_TYPE__MSG_NODE_INFO_REPLY, &msg);
	if (rc)
		return rc;
	r = (void *)msg;
	if (!r->node) {
		fprintf(stderr, "cellctl: manager sent no node\n");
		rc = EXIT_ERR;
	} else if (ctl->json) {
		ctl_emit_json(ctl_node_json(r->node));
	} else {
		ctl_print_node(r->node);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

static int cmd_node_ping(struct ctl *ctl, const struct ctl_cmd *cmd,
			 char **args)
{
	Cellmon__NodePingRequest req = CELLMON__NODE_PING_REQUEST__INIT;
	Cellmon__NodePingReply *r;
	ProtobufCMessage *msg;
	int rc;

	(void)cmd;
	req.id = args[0];
	rc = call(ctl, CELLMON__MSG_TYPE__MSG_NODE_PING, &req.base,
		  CELLMON__MSG_TYPE__MSG_NODE_PING_REPLY, &msg);
	if (rc)
		return rc;
	r = (void *)msg;
	if (ctl->json)
		ctl_emit_json(json_pack("{s:s, s:I, s:I}", "node", args[0],
					"incarnation",
					(json_int_t)r->incarnation, "rtt_us",
					(json_int_t)r->rtt_us));
	else
		printf("%s: incarnation %llu answered in %llu us "
		       "(manager -> agent -> manager)\n",
		       args[0], (unsigned long long)r->incarnation,
		       (unsigned long long)r->rtt_us);
	protobuf_c_message_free_unpacked(msg, NULL);
	return EXIT_OK;
}

static int cmd_cell_list(struct ctl *ctl, const struct ctl_cmd *cmd,
			 char **args)
{
	Cellmon__CellListRequest req = CELLMON__CELL_LIST_REQUEST__INIT;
	Cellmon__CellListReply *r;
	ProtobufCMessage *msg;
	int rc = call(ctl, CELLMON__MSG_TYPE__MSG_CELL_LIST, &req.base,
		      CELLMON__MSG_TYPE__MSG_CELL_LIST_REPLY, &msg);

	(void)cmd;
	(void)args;
	if (rc)
		return rc;
	r = (void *)msg;
	if (ctl->json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < r->n_cells; i++)
			json_array_append_new(arr, ctl_cell_json(r->cells[i]));
		ctl_emit_json(json_pack("{s:o}", "cells", arr));
	} else {
		ctl_print_cells(r->cells, r->n_cells);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return EXIT_OK;
}

/* create, delete, info, add-node, remove-node: one request shape. */
static int cmd_cell(struct ctl *ctl, const struct ctl_cmd *cmd, char **args)
{
	Cellmon__CellRequest req = CELLMON__CELL_REQUEST__INIT;
	Cellmon__CellReply *r;
	ProtobufCMessage *msg;
	int rc;

	req.name = args[0];
	if (cmd->nargs > 1)
		req.node = args[1];
	rc = call(ctl, cmd->type, &req.base, CELLMON__MSG_TYPE__MSG_CELL_REPLY,
		  &msg);
	if (rc)
		return rc;
	r = (void *)msg;
	if (!r->cell) {
		if (ctl->json)
			ctl_emit_json(json_pack("{s:s}", "deleted", args[0]));
		else
			printf("cell %s deleted\n", args[0]);
	} else if (ctl->json) {
		ctl_emit_json(ctl_cell_json(r->cell));
	} else {
		ctl_print_cell(r->cell);
	}
	protobuf_c_message_free_unpacked(msg, NULL);
	return EXIT_OK;
}

static const struct ctl_cmd commands[] = {
	{"status", NULL, 0, "", "manager version, uptime and node counts",
	 cmd_status, 0},
	{"node", "list", 0, "", "every known node with state and incarnation",
	 cmd_node_list, 0},
	{"node", "info", 1, "NODE", "one node in detail", cmd_node_info, 0},
	{"node", "ping", 1, "NODE",
	 "round trip manager -> agent -> manager (control path)", cmd_node_ping,
	 0},
	{"cell", "list", 0, "", "every cell with its nodes", cmd_cell_list, 0},
	{"cell", "info", 1, "CELL", "one cell", cmd_cell,
	 CELLMON__MSG_TYPE__MSG_CELL_INFO},
	{"cell", "create", 1, "CELL", "create an empty cell", cmd_cell,
	 CELLMON__MSG_TYPE__MSG_CELL_CREATE},
	{"cell", "delete", 1, "CELL", "delete an empty cell", cmd_cell,
	 CELLMON__MSG_TYPE__MSG_CELL_DELETE},
	{"cell", "add-node", 2, "CELL NODE",
	 "put a node in a cell (a node is in at most one cell)", cmd_cell,
	 CELLMON__MSG_TYPE__MSG_CELL_ADD_NODE},
	{"cell", "remove-node", 2, "CELL NODE", "take a node out of its cell",
	 cmd_cell, CELLMON__MSG_TYPE__MSG_CELL_REMOVE_NODE},
	{NULL, NULL, 0, NULL, NULL, NULL, 0},
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
	      "  4  the named node or cell does not exist\n"
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
		if (nargs - words != c->nargs) {
			fprintf(stderr, "cellctl: usage: cellctl %s%s%s %s\n",
				c->noun, c->verb ? " " : "",
				c->verb ? c->verb : "", c->args);
			free(args);
			return EXIT_USAGE;
		}
		rc = c->fn(&ctl, c, args + words);
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
