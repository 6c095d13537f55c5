/*
 * A native guest's confinement (agent_confine.c): prepared by the agent
 * before it forks a vCPU process, applied by the child before exec.
 */
#ifndef AGENT_CONFINE_H
#define AGENT_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct agent;
struct agent_vm;

#define CONFINE_MOUNTS 12
#define CONFINE_LINKS  4

struct confine_mount {
	char src[1200], dst[1300];
	bool dir;
	unsigned long ro_flags; /* the read-only remount's, 0: stays rw */
};

struct confine_link {
	char path[1300], target[256];
};

struct agent_confine {
	bool on;
	uid_t uid;
	gid_t gid;
	int uffd_dev; /* /dev/userfaultfd, opened by the agent */
	char root[1200], old[1300], usr[1300], etc[1300], run[1300];
	char proc[1300];
	struct confine_mount mounts[CONFINE_MOUNTS];
	int nmounts;
	struct confine_link links[CONFINE_LINKS];
	int nlinks;
};

/* Fills c for a vCPU of vm running image, with the hand-off socket at
 * handoff (c->on false when guest_confine is off). 0, or -errno with err
 * saying what is missing. agent_confine_release after the fork. */
int agent_confine_prepare(struct agent *a, const struct agent_vm *vm,
			  const char *image, const char *handoff,
			  struct agent_confine *c, char *err, size_t len);
void agent_confine_release(struct agent_confine *c);
/* In the forked child (parent: the agent's pid): 0, or -1 after writing
 * which step failed to fd 2. Then exec "/image" from "/vm". */
int agent_confine_child(const struct agent_confine *c, pid_t parent);
/* At start: the kernel lets this agent confine guests (a child goes
 * through every step). 0, or -1 after logging why. */
int agent_confine_probe(struct agent *a);

#endif
