/*
 * cellctl internals: cellctl.c parses the command line and talks to the
 * manager; cellctl_print.c renders replies as tables for people or as
 * JSON for scripts (stdout carries only data; errors go to stderr).
 */
#ifndef CELLCTL_H
#define CELLCTL_H

#include <stdbool.h>

#include <jansson.h>

#include "cellproto/cellproto.h"
#include "ctl_json.h"

/* Options some commands take (vm create and start); the rest refuse
 * them. */
struct ctl_opts {
	char key[32][48]; /* "cell", "vcpus", ... (without "--") */
	const char *val[32];
	int n;
	bool dry_run;
	bool start;
	bool follow;	   /* --follow (cellctl events) */
	char **guest_args; /* after "--" */
	int nguest;
};

/* Builds a request from the positional args and options. 0, or -EINVAL
 * after printing why (a usage error). */
typedef int (*ctl_build_fn)(const struct ctl_opts *o, char **args, int nargs,
			    ProtobufCMessage **out);
int ctl_build_vm_create(const struct ctl_opts *o, char **args, int nargs,
			ProtobufCMessage **out);
int ctl_build_vm_set(const struct ctl_opts *o, char **args, int nargs,
		     ProtobufCMessage **out);
/* Refuses (printing why) an option of o that is not in allowed (NULL:
 * none allowed). 0 or -EINVAL. */
int ctl_check_keys(const struct ctl_opts *o, const char *const *allowed,
		   const char *cmd);
int ctl_build_events(const struct ctl_opts *o, char **args, int nargs,
		     ProtobufCMessage **out);
int ctl_build_cell_create(const struct ctl_opts *o, char **args, int nargs,
			  ProtobufCMessage **out);
int ctl_build_cell_set(const struct ctl_opts *o, char **args, int nargs,
		       ProtobufCMessage **out);
int ctl_build_vm_migrate(const struct ctl_opts *o, char **args, int nargs,
			 ProtobufCMessage **out);
int ctl_build_vm_request(const struct ctl_opts *o, char **args, int nargs,
			 ProtobufCMessage **out);
/* vm create --start: turns the create request into the start request
 * that follows it; 1 when there is one to send. */
int ctl_vm_then_start(const struct ctl_opts *o, ProtobufCMessage *req,
		      uint16_t *type);
int ctl_build_vm_list(const struct ctl_opts *o, char **args, int nargs,
		      ProtobufCMessage **out);
void ctl_render_cell_deps(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_vm(bool json, const ProtobufCMessage *reply, char **args);
void ctl_render_vm_list(bool json, const ProtobufCMessage *reply, char **args);
void ctl_render_vm_console(bool json, const ProtobufCMessage *reply,
			   char **args);
void ctl_render_vm_stats(bool json, const ProtobufCMessage *reply, char **args);
void ctl_render_vm_pages(bool json, const ProtobufCMessage *reply, char **args);
int ctl_build_vm_pages(const struct ctl_opts *o, char **args, int nargs,
		       ProtobufCMessage **out);
/* cellctl_svg.c: vm pages --svg=FILE (set by the build, NULL: none);
 * writes the map of homes as an SVG heat map. 0 or -errno. */
extern const char *ctl_pages_svg_path;
int ctl_pages_svg(const Cellmon__VmPagesReply *r, const char *path);
/* Prints a JSON value to stdout and frees it (cellctl_print.c); NULL
 * (a failed json_pack) is reported on stderr. */
void ctl_emit_json(json_t *j);
void ctl_render_events(bool json, const ProtobufCMessage *reply, char **args);
/* cellctl ca ... (cellctl_ca.c): args from the verb on; the exit code. */
int ctl_ca_main(const struct ctl_opts *o, bool json, char **args, int nargs);

void ctl_render_status_health(bool json, const Cellmon__StatusReply *s,
			      const struct ctl_problems *p);
/* cellctl events --follow: prints the first reply's events, then what
 * is newer every 500 ms, for ever (JSON: one object per line). */
int ctl_events_follow(const char *manager, const struct cell_rpc_config *rpc,
		      unsigned timeout_ms, bool json,
		      const ProtobufCMessage *first);

/*
 * Renderers, one per reply type: JSON to stdout when json is set, else a
 * table or key/value block. args are the command's arguments.
 */
void ctl_render_status(bool json, const ProtobufCMessage *reply, char **args);
void ctl_render_node_list(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_node_info(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_node_ping(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_cell_list(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_cell(bool json, const ProtobufCMessage *reply, char **args);
void ctl_render_disk_list(bool json, const ProtobufCMessage *reply,
			  char **args);
void ctl_render_disk(bool json, const ProtobufCMessage *reply, char **args);

#endif
