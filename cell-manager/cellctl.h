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
