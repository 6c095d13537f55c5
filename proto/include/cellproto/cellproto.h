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

#include "cell/rpc.h"

/* Every message type, ending with an entry whose desc is NULL. */
extern const struct cell_rpc_msgtype cellproto_types[];

/* The registry entry of a type, or NULL. */
const struct cell_rpc_msgtype *cellproto_type_lookup(uint16_t type);

/* A deep copy of any message (through pack and unpack), to keep beyond
 * the life of the buffer it came in; free it with
 * protobuf_c_message_free_unpacked(). NULL when out of memory. */
ProtobufCMessage *cellproto_copy(const ProtobufCMessage *m);

/* The protocol version this build speaks. */
#define CELLPROTO_VERSION CELLMON__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT

#endif
