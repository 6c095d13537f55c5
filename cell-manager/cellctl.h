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

json_t *ctl_node_json(const Cellmon__NodeInfo *n);
json_t *ctl_cell_json(const Cellmon__CellInfo *c);
json_t *ctl_status_json(const Cellmon__StatusReply *s);

void ctl_print_nodes(Cellmon__NodeInfo **nodes, size_t n);
void ctl_print_node(const Cellmon__NodeInfo *n);
void ctl_print_cells(Cellmon__CellInfo **cells, size_t n);
void ctl_print_cell(const Cellmon__CellInfo *c);
void ctl_print_status(const Cellmon__StatusReply *s, const char *addr);

/* Prints j to stdout (indented, newline-terminated) and frees it. */
int ctl_emit_json(json_t *j);

const char *ctl_node_state_name(Cellmon__NodeState s);

#endif
