/*
 * The type-number -> descriptor registry of libcellproto (cellproto.h).
 * Adding a message: give it a number in common.proto's MsgType and a line
 * here; the fuzz target and every daemon then know it. Also the names of
 * vm.proto's enums (cellproto_name() and friends), kept in the same order
 * as the .proto values.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellproto/cellproto.h"

#define T(num, name, desc)                            \
	{                                             \
		CELLMON__MSG_TYPE__##num, name, &desc \
	}

const struct cell_rpc_msgtype cellproto_types[] = {
	T(MSG_REGISTER, "Register", cellmon__register_request__descriptor),
	T(MSG_REGISTER_REPLY, "RegisterReply",
	  cellmon__register_reply__descriptor),
	T(MSG_HEARTBEAT, "Heartbeat", cellmon__heartbeat_request__descriptor),
	T(MSG_HEARTBEAT_REPLY, "HeartbeatReply",
	  cellmon__heartbeat_reply__descriptor),
	T(MSG_COMMAND, "Command", cellmon__command__descriptor),
	T(MSG_COMMAND_ACK, "CommandAck", cellmon__command_ack__descriptor),
	T(MSG_STATUS, "Status", cellmon__status_request__descriptor),
	T(MSG_STATUS_REPLY, "StatusReply", cellmon__status_reply__descriptor),
	T(MSG_NODE_LIST, "NodeList", cellmon__node_list_request__descriptor),
	T(MSG_NODE_LIST_REPLY, "NodeListReply",
	  cellmon__node_list_reply__descriptor),
	T(MSG_NODE_INFO, "NodeInfo", cellmon__node_info_request__descriptor),
	T(MSG_NODE_INFO_REPLY, "NodeInfoReply",
	  cellmon__node_info_reply__descriptor),
	T(MSG_NODE_PING, "NodePing", cellmon__node_ping_request__descriptor),
	T(MSG_NODE_PING_REPLY, "NodePingReply",
	  cellmon__node_ping_reply__descriptor),
	T(MSG_CELL_CREATE, "CellCreate", cellmon__cell_request__descriptor),
	T(MSG_CELL_DELETE, "CellDelete", cellmon__cell_request__descriptor),
	T(MSG_CELL_INFO, "CellInfo", cellmon__cell_request__descriptor),
	T(MSG_CELL_ADD_NODE, "CellAddNode", cellmon__cell_request__descriptor),
	T(MSG_CELL_REMOVE_NODE, "CellRemoveNode",
	  cellmon__cell_request__descriptor),
	T(MSG_CELL_REPLY, "CellReply", cellmon__cell_reply__descriptor),
	T(MSG_CELL_LIST, "CellList", cellmon__cell_list_request__descriptor),
	T(MSG_CELL_SET, "CellSet", cellmon__cell_request__descriptor),
	T(MSG_CELL_LIST_REPLY, "CellListReply",
	  cellmon__cell_list_reply__descriptor),
	T(MSG_DISK_CREATE, "DiskCreate", cellmon__disk_request__descriptor),
	T(MSG_DISK_CLONE, "DiskClone", cellmon__disk_request__descriptor),
	T(MSG_DISK_DELETE, "DiskDelete", cellmon__disk_request__descriptor),
	T(MSG_DISK_INFO, "DiskInfo", cellmon__disk_request__descriptor),
	T(MSG_DISK_REPLY, "DiskReply", cellmon__disk_reply__descriptor),
	T(MSG_DISK_LIST, "DiskList", cellmon__disk_list_request__descriptor),
	T(MSG_DISK_LIST_REPLY, "DiskListReply",
	  cellmon__disk_list_reply__descriptor),
	T(MSG_VM_CREATE, "VmCreate", cellmon__vm_request__descriptor),
	T(MSG_VM_START, "VmStart", cellmon__vm_request__descriptor),
	T(MSG_VM_STOP, "VmStop", cellmon__vm_request__descriptor),
	T(MSG_VM_KILL, "VmKill", cellmon__vm_request__descriptor),
	T(MSG_VM_DELETE, "VmDelete", cellmon__vm_request__descriptor),
	T(MSG_VM_INFO, "VmInfo", cellmon__vm_request__descriptor),
	T(MSG_VM_REPLY, "VmReply", cellmon__vm_reply__descriptor),
	T(MSG_VM_LIST, "VmList", cellmon__vm_list_request__descriptor),
	T(MSG_VM_LIST_REPLY, "VmListReply", cellmon__vm_list_reply__descriptor),
	T(MSG_VM_CONSOLE, "VmConsole", cellmon__vm_request__descriptor),
	T(MSG_VM_CONSOLE_REPLY, "VmConsoleReply",
	  cellmon__vm_console_reply__descriptor),
	T(MSG_VM_STATS, "VmStats", cellmon__vm_request__descriptor),
	T(MSG_VM_MIGRATE, "VmMigrate", cellmon__vm_request__descriptor),
	T(MSG_VM_SET, "VmSet", cellmon__vm_request__descriptor),
	T(MSG_VM_PAGES, "VmPages", cellmon__vm_request__descriptor),
	T(MSG_VM_PAGES_REPLY, "VmPagesReply",
	  cellmon__vm_pages_reply__descriptor),
	T(MSG_EVENTS, "Events", cellmon__events_request__descriptor),
	T(MSG_EVENTS_REPLY, "EventsReply", cellmon__events_reply__descriptor),
	T(MSG_VM_STATS_REPLY, "VmStatsReply",
	  cellmon__vm_stats_reply__descriptor),
	T(MSG_DISK_MAP, "DiskMap", cellmon__disk_request__descriptor),
	T(MSG_DISK_MAP_REPLY, "DiskMapReply",
	  cellmon__disk_map_reply__descriptor),
	{0, NULL, NULL},
};

const struct cell_rpc_msgtype *cellproto_type_lookup(uint16_t type)
{
	for (const struct cell_rpc_msgtype *t = cellproto_types; t->desc; t++) {
		if (t->type == type)
			return t;
	}
	return NULL;
}

ProtobufCMessage *cellproto_copy(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *c;

	if (!buf)
		return NULL;
	protobuf_c_message_pack(m, buf);
	c = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	return c;
}

#define ENUM(var, what_, ...)                                         \
	static const char *const var##_names[] = {__VA_ARGS__};       \
	const struct cellproto_enum var = {                           \
		.what = what_,                                        \
		.names = var##_names,                                 \
		.count = (int)(sizeof(var##_names) / sizeof(char *)), \
	}

ENUM(cellproto_engines, "engine", NULL, "native", "qemu");
ENUM(cellproto_placements, "placement", NULL, "spread", "pack");
ENUM(cellproto_homes, "home", NULL, "interleave", "first-touch", "one");
ENUM(cellproto_page_policies, "page policy", NULL, "off", "migrate",
     "replicate", "all");
ENUM(cellproto_vm_states, "VM state", "unknown", "pending", "starting",
     "running", "stopping", "stopped", "failed");
ENUM(cellproto_vcpu_states, "vCPU state", "unknown", "planned", "placed",
     "starting", "running", "exited", "killed", "fenced", "lost");

bool cellproto_known(const struct cellproto_enum *e, int v)
{
	return v >= 0 && v < e->count && e->names[v];
}

const char *cellproto_name(const struct cellproto_enum *e, int v)
{
	return cellproto_known(e, v) ? e->names[v] : "unknown";
}

int cellproto_parse(const struct cellproto_enum *e, const char *s, int *v)
{
	for (int i = 0; i < e->count; i++)
		if (e->names[i] && strcmp(e->names[i], s) == 0) {
			*v = i;
			return 0;
		}
	return -EINVAL;
}

void cellproto_names_list(const struct cellproto_enum *e, char *out, size_t len)
{
	size_t off = 0;
	int n = 0, k = 0;

	for (int i = 0; i < e->count; i++)
		n += e->names[i] != NULL;
	out[0] = '\0';
	for (int i = 0; i < e->count && off < len; i++) {
		if (!e->names[i])
			continue;
		k++;
		off += (size_t)snprintf(out + off, len - off, "%s%s",
					k == 1	 ? ""
					: k == n ? " or "
						 : ", ",
					e->names[i]);
	}
}
