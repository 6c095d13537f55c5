/*
 * The engines this agent can run a VM on, as a table keyed by the spec's
 * Engine value (vm.proto). agent_vm.c looks a VM's engine up once at
 * PREPARE and keeps the ops on the VM; nothing else names an engine. A
 * new engine is an ops struct (agent.h) and a line here.
 */
#include <stdio.h>

#include "agent.h"

static const struct agent_engine_ops *const engines[] = {
	&agent_native_engine,
};

const struct agent_engine_ops *agent_engine_find(Cellmon__Engine e, char *err,
						 size_t len)
{
	size_t off = 0, n = sizeof(engines) / sizeof(engines[0]);

	for (size_t i = 0; i < n; i++)
		if (engines[i]->id == e)
			return engines[i];
	off = (size_t)snprintf(err, len, "engine %s (%d) is not available; ",
			       cellproto_name(&cellproto_engines, (int)e),
			       (int)e);
	for (size_t i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(err + off, len - off, "%s%s",
					i ? ", " : "this agent has ",
					engines[i]->name);
	return NULL;
}
