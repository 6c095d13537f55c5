/*
 * libcellproto: the generated protobuf-c messages of the .proto files in proto/
 * and the registry that maps each frame type number to its message descriptor.
 * Both daemons and cellctl hand cellproto_types to the RPC layer
 * (cell/rpc.h), so every side decodes a type number the same way.
 */
#ifndef CELLPROTO_H
#define CELLPROTO_H

#include "common.pb-c.h"
#include "agent.pb-c.h"
#include "ctl.pb-c.h"
#include "disk.pb-c.h"
#include "vm.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

#include "cell/rpc.h"

/* Every message type, ending with an entry whose desc is NULL. */
extern const struct cell_rpc_msgtype cellproto_types[];

/* The registry entry of a type, or NULL. */
const struct cell_rpc_msgtype *cellproto_type_lookup(uint16_t type);

/* A deep copy of any message (through pack and unpack), to keep beyond
 * the life of the buffer it came in; free it with
 * protobuf_c_message_free_unpacked(). NULL when out of memory. */
ProtobufCMessage *cellproto_copy(const ProtobufCMessage *m);

/* The closed sets of vm.proto (engine, placement, home policy, VM and
 * vCPU states) as text, for what a person reads or types: cellctl's
 * options and output, log lines. Code compares the enum values; only
 * these tables turn them into words. Every set's values run from 0. */
struct cellproto_enum {
	const char *what;	  /* "engine": names the set in messages */
	const char *const *names; /* by value; NULL: no name (a DEFAULT) */
	int count;
};

extern const struct cellproto_enum cellproto_engines, cellproto_placements,
	cellproto_homes, cellproto_page_policies, cellproto_vm_states,
	cellproto_vcpu_states;

/* The name of value v, or "unknown" when v has none (a value from a newer
 * peer, or a DEFAULT). */
const char *cellproto_name(const struct cellproto_enum *e, int v);
/* Whether v is a named value of the set. */
bool cellproto_known(const struct cellproto_enum *e, int v);
/* Name -> value: 0, or -EINVAL when s names no value. */
int cellproto_parse(const struct cellproto_enum *e, const char *s, int *v);
/* "a, b or c": every name of the set, for error messages. */
void cellproto_names_list(const struct cellproto_enum *e, char *out,
			  size_t len);

/* The protocol version this build speaks. */
#define CELLPROTO_VERSION CELLMON__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT

#endif
