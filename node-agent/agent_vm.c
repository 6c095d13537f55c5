/*
 * The VMs of this node. The manager drives them with commands:
 *
 *   PREPARE  create the VM's DSM region (every node of the VM does this
 *            before any vCPU runs, so no fault reaches a node that does
 *            not know the region yet) and check the image
 *   RUN      start this node's vCPUs through the engine
 *   STOP     SIGTERM, SIGKILL after stop_grace;  KILL  SIGKILL now
 *   RELEASE  kill, then drop the region and forget the VM
 *   CONSOLE, STATS  read-only
 *
 * A vCPU that ends is reaped here (SIGCHLD) and reported in the next
 * heartbeat, sent at once; the manager decides what it means for the VM.
 * The region stays until RELEASE: a vCPU that exits early may still be
 * the home of pages the others use.
 *
 * Each native vCPU has a service thread (agent_guest.c) answering its
 * lock, barrier and disk requests. RELEASE ends them in order: kill the
 * processes, cancel the region's waits, shut the sockets, join the
 * threads, destroy the region. The VM's engine is looked up at PREPARE
 * (agent_engine.c) and every vCPU of the VM goes through its ops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "agent_disk.h"
#include "cell/fault.h"
#include "cell/log.h"
#include "dsm/dsm.h"

#define MOD "agent"

/* ---- lookups (event-loop thread, or under vm_mu) ---- */

static struct agent_vm *vm_find(struct agent *a, const char *name,
				uint64_t region)
{
	for (struct agent_vm *vm = a->vms; vm; vm = vm->next)
		if (vm->region_id == region &&
		    (!name || strcmp(vm->name, name) == 0))
			return vm;
	return NULL;
}

/* ---- DSM node ---- */

/* ---- guest service threads ---- */

/* ---- VM records ---- */

static void vm_free(struct agent_vm *vm)
{
	if (!vm)
		return;
	if (vm->grace_timer)
		event_free(vm->grace_timer);
	for (size_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].ctl >= 0)
			close(vm->vcpus[i].ctl);
	agent_nbd_stop(vm); /* QEMU's connections, before the disks close */
	for (size_t i = 0; i < vm->ndisks; i++)
		agent_disk_close(vm->disks[i]);
	free(vm->disks);
	free(vm->vcpus);
	if (vm->spec)
		cellmon__vm_spec__free_unpacked(vm->spec, NULL);
	free(vm);
}

static void signal_vcpus(struct agent_vm *vm, bool hard)
{
	const struct agent_engine_ops *e = vm->engine;

	for (size_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == CELLMON__VCPU_STATE__VCPU_RUNNING &&
		    vm->vcpus[i].pid) {
			if (hard)
				e->kill(&vm->vcpus[i]);
			else
				e->stop(&vm->vcpus[i]);
		}
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_vm *vm = arg;

	(void)fd;
	(void)what;
	CELL_WARN(MOD, "vm %s: vCPUs still running after %lld ms; killing",
		  vm->name, (long long)vm->agent->cfg.stop_grace_ms);
	signal_vcpus(vm, true);
}

/* ---- a VM's files: <state_dir>/vms/<vm id>/run<run>/ ---- */

static void vm_id_dir(const struct agent *a, uint64_t vm_id, char *out,
		      size_t len)
{
	snprintf(out, len, "%s/vms/%llu", a->cfg.state_dir,
		 (unsigned long long)vm_id);
}

static void run_dir(const struct agent *a, uint64_t region, char *out,
		    size_t len)
{
	snprintf(out, len, "%s/vms/%llu/run%u", a->cfg.state_dir,
		 (unsigned long long)agent_region_vm_id(region),
		 (unsigned)(region & 0xffff));
}

/* Makes the run's directory, notes the VM's name beside it for people,
 * and removes the VM's runs here but this one and the one before (kept
 * to show what a restarted VM printed before). 0 or -errno. */
static int make_run_dir(const struct agent *a, const struct agent_vm *vm)
{
	char dir[1100], path[1400];
	unsigned run = (unsigned)(vm->region_id & 0xffff), n;
	struct dirent *de;
	DIR *d;
	int rc = cell_mkdir_p(vm->dir);

	if (rc)
		return rc;
	vm_id_dir(a, agent_region_vm_id(vm->region_id), dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/name", dir);
	cell_write_file_atomic(path, vm->name, strlen(vm->name));
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		char *end;

		if (strncmp(de->d_name, "run", 3) != 0)
			continue;
		n = (unsigned)strtoul(de->d_name + 3, &end, 10);
		if (*end || n == run || n + 1 == run)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		cell_remove_tree(path);
	}
	if (d)
		closedir(d);
	return 0;
}

/* Removes every file of VM vm_id here, unless this agent holds one of
 * its runs. */
static void forget_vm(struct agent *a, uint64_t vm_id, const char *why)
{
	char dir[1100];
	int rc;

	for (struct agent_vm *vm = a->vms; vm; vm = vm->next)
		if (agent_region_vm_id(vm->region_id) == vm_id)
			return;
	vm_id_dir(a, vm_id, dir, sizeof(dir));
	rc = cell_remove_tree(dir);
	if (rc)
		CELL_WARN(MOD, "cannot remove %s: %s", dir, strerror(-rc));
	else
		CELL_INFO(MOD, "removed the files of vm id %llu (%s)",
			  (unsigned long long)vm_id, why);
}

void agent_vm_sweep(struct agent *a, const uint64_t *ids, size_t n)
{
	char dir[1100];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/vms", a->cfg.state_dir);
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		char *end;
		uint64_t id = strtoull(de->d_name, &end, 10);
		bool known = false;

		if (!isdigit((unsigned char)de->d_name[0]) || *end)
			continue;
		for (size_t i = 0; i < n && !known; i++)
			known = ids[i] == id;
		if (!known && id)
			forget_vm(a, id, "deleted while this node was away");
	}
	if (d)
		closedir(d);
}

/* Kills, ends the service threads and drops the region; the VM leaves
 * the list. Processes are reaped by the SIGCHLD handler. */
static void vm_release(struct agent *a, struct agent_vm *vm)
{
	struct agent_vm **pp;

	signal_vcpus(vm, true);
	if (vm->region)
		dsm_region_cancel_waits(vm->region);
	for (size_t i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpus[i].ctl >= 0)
			shutdown(vm->vcpus[i].ctl, SHUT_RDWR);
		if (vm->vcpus[i].has_thread)
			pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].has_thread = false;
	}
	pthread_mutex_lock(&a->vm_mu);
	for (pp = &a->vms; *pp; pp = &(*pp)->next)
		if (*pp == vm) {
			*pp = vm->next;
			break;
		}
	pthread_mutex_unlock(&a->vm_mu);
	dsm_region_destroy(vm->region);
	CELL_INFO(MOD, "vm released name=%s region=%llu", vm->name,
		  (unsigned long long)vm->region_id);
	vm_free(vm);
}

/* The region's home policy for the spec's; -EINVAL for a value this
 * agent does not know. */
static int home_policy(Cellmon__HomePolicy home, enum dsm_home_policy *out)
{
	switch (home) {
	case CELLMON__HOME_POLICY__HOME_DEFAULT:
	case CELLMON__HOME_POLICY__HOME_INTERLEAVE:
		*out = DSM_POLICY_INTERLEAVE;
		return 0;
	case CELLMON__HOME_POLICY__HOME_FIRST_TOUCH:
		*out = DSM_POLICY_FIRST_TOUCH;
		return 0;
	case CELLMON__HOME_POLICY__HOME_ONE:
		*out = DSM_POLICY_ONE;
		return 0;
	default:
		return -EINVAL;
	}
}

/* The engine and home policy of the spec, and whether the engine can run
 * it here (not asked of a node that only homes pages: vcpus_here 0). */
static int check_spec(struct agent *a, const Cellmon__VmSpec *s,
		      size_t vcpus_here, const struct agent_engine_ops **engine,
		      enum dsm_home_policy *home, char *err, size_t len)
{
	char why[200];

	*engine = agent_engine_find(s->engine, why, sizeof(why));
	if (!*engine) {
		snprintf(err, len, "node %s: %s", a->cfg.node_id, why);
		return -EOPNOTSUPP;
	}
	if (home_policy(s->home, home)) {
		snprintf(err, len, "node %s does not know home policy %d",
			 a->cfg.node_id, (int)s->home);
		return -EINVAL;
	}
	if (!vcpus_here || !(*engine)->check)
		return 0;
	return (*engine)->check(a, s, err, len);
}

/* Opens the VM's disks ("NAME" or "NAME:ro") through the node cache. */
static int open_disks(struct agent *a, struct agent_vm *vm,
		      const Cellmon__VmStart *st, char *err, size_t len)
{
	const Cellmon__VmSpec *s = st->spec;

	if (!s->n_disks || !st->n_vcpus) /* a node that only homes pages */
		return 0;
	if (!st->vdiskd[0]) {
		snprintf(err, len,
			 "the VM has disks but no disk server is "
			 "configured at the manager (vdiskd)");
		return -EINVAL;
	}
	vm->disks = calloc(s->n_disks, sizeof(*vm->disks));
	if (!vm->disks)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_disks; i++) {
		char name[80];
		size_t n = strcspn(s->disks[i], ":");
		bool ro = strcmp(s->disks[i] + n, ":ro") == 0;
		int rc;

		snprintf(name, sizeof(name), "%.*s", (int)n, s->disks[i]);
		rc = agent_disk_open(a->cache, st->vdiskd, name, ro,
				     ro ? 0 : st->write_epoch, &vm->disks[i],
				     err, len);
		if (rc)
			return rc;
		vm->ndisks = i + 1;
		CELL_INFO(MOD, "vm %s: disk %zu is %s%s (%llu bytes)", s->name,
			  i, name, ro ? " read-only" : "",
			  (unsigned long long)agent_disk_size(vm->disks[i]));
	}
	return 0;
}

/* On the DSM thread: a page request of this VM went unanswered, so its
 * vCPUs here can never be served again. End them (they are reported
 * "lost" and the manager restarts the VM). The region outlives this: it
 * is destroyed by RELEASE on the event loop, after the callback. */
static void region_failed(struct dsm_region *r, uint16_t peer, void *arg)
{
	struct agent_vm *vm = arg;

	(void)r;
	__atomic_store_n(&vm->dsm_failed, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&vm->agent->vm_mu);
	for (size_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == CELLMON__VCPU_STATE__VCPU_RUNNING &&
		    vm->vcpus[i].pid)
			kill(-vm->vcpus[i].pid, SIGKILL);
	pthread_mutex_unlock(&vm->agent->vm_mu);
	CELL_ERROR(MOD,
		   "vm %s: a DSM request to node %u went unanswered; its "
		   "vCPUs here are ended",
		   vm->name, peer);
}

static int vm_prepare(struct agent *a, const Cellmon__VmStart *st, char *err,
		      size_t len)
{
	uint16_t members[DSM_MAX_NODES];
	struct dsm_region_config rc = {0};
	const struct agent_engine_ops *engine;
	enum dsm_home_policy home;
	struct agent_vm *vm;
	int r;

	if (!st->spec || !st->spec->vcpus || !st->spec->memory_mb ||
	    !cell_name_valid(st->spec->name) || !st->n_members ||
	    st->n_members > DSM_MAX_NODES) {
		snprintf(err, len, "malformed VM start request");
		return -EINVAL;
	}
	if (vm_find(a, st->spec->name, st->region))
		return 0; /* a retried PREPARE */
	if (!a->dsm) {
		snprintf(err, len, "node %s has no DSM node", a->cfg.node_id);
		return -ENODEV;
	}
	if ((r = CELL_FAULT("agent.prepare"))) {
		snprintf(err, len, "node %s: fault point agent.prepare",
			 a->cfg.node_id);
		return r;
	}
	if ((r = check_spec(a, st->spec, st->n_vcpus, &engine, &home, err,
			    len)) ||
	    (r = agent_dsm_add_peers(a, st, err, len)))
		return r;
	/* Before the region exists: a restarted VM's nodes refuse the
	 * failed node's old incarnation from its first page on. */
	agent_dsm_fence(a, st->fences, st->n_fences);
	for (size_t i = 0; i < st->n_members; i++)
		members[i] = (uint16_t)st->members[i]->dsm_id;
	vm = calloc(1, sizeof(*vm));
	if (!vm ||
	    !(vm->spec = (Cellmon__VmSpec *)cellproto_copy(&st->spec->base))) {
		free(vm);
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	vm->agent = a;
	vm->engine = engine;
	vm->region_id = st->region;
	snprintf(vm->name, sizeof(vm->name), "%s", st->spec->name);
	run_dir(a, st->region, vm->dir, sizeof(vm->dir));
	rc.id = st->region;
	rc.size = (size_t)st->spec->memory_mb << 20;
	rc.policy = home;
	rc.home_node = (uint16_t)st->home_dsm_id;
	rc.stripe = engine->stripe_pages;
	rc.members = members;
	rc.nmembers = (uint16_t)st->n_members;
	memcpy(vm->members, members, st->n_members * sizeof(members[0]));
	vm->nmembers = (uint16_t)st->n_members;
	r = open_disks(a, vm, st, err, len);
	if (r) {
		vm_free(vm);
		return r;
	}
	r = make_run_dir(a, vm);
	if (!r)
		r = dsm_region_create(a->dsm, &rc, &vm->region);
	if (r) {
		snprintf(err, len, "cannot create region %llu (%llu MB): %s",
			 (unsigned long long)st->region,
			 (unsigned long long)st->spec->memory_mb, strerror(-r));
		vm_free(vm);
		return r;
	}
	vm->grace_timer = evtimer_new(a->base, grace_cb, vm);
	dsm_region_on_failure(vm->region, region_failed, vm);
	pthread_mutex_lock(&a->vm_mu);
	vm->next = a->vms;
	a->vms = vm;
	pthread_mutex_unlock(&a->vm_mu);
	CELL_INFO(MOD,
		  "vm prepared name=%s region=%llu memory_mb=%llu "
		  "members=%zu engine=%s home=%s",
		  vm->name, (unsigned long long)vm->region_id,
		  (unsigned long long)st->spec->memory_mb, st->n_members,
		  engine->name,
		  cellproto_name(&cellproto_homes, st->spec->home));
	return 0;
}

/* One vCPU as a heartbeat (and the RUN ack) reports it; NULL without
 * memory. */
static Cellmon__VcpuStatus *vcpu_status(const struct agent_vcpu *c)
{
	Cellmon__VcpuStatus *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	cellmon__vcpu_status__init(s);
	s->region = c->vm->region_id;
	s->vcpu = c->index;
	s->state = c->state;
	s->exit_code =
		c->state == CELLMON__VCPU_STATE__VCPU_EXITED ? c->exit_code : 0;
	s->signal = c->signal;
	s->pid = (int32_t)c->pid;
	s->detail = (char *)c->detail; /* lives as long as the VM */
	return s;
}

/* The RUN ack's result: every vCPU of vm here, with its pid. Freed by
 * agent_vm_ack_free(). */
static int run_reply(const struct agent_vm *vm, Cellmon__CommandAck *ack)
{
	Cellmon__VmRunReply *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	cellmon__vm_run_reply__init(r);
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_RUN;
	ack->run = r;
	r->vcpus = calloc(vm->nvcpus + 1, sizeof(*r->vcpus));
	if (!r->vcpus)
		return -ENOMEM;
	for (size_t i = 0; i < vm->nvcpus; i++) {
		r->vcpus[i] = vcpu_status(&vm->vcpus[i]);
		if (!r->vcpus[i])
			return -ENOMEM;
		r->n_vcpus++;
	}
	return 0;
}

/* The vCPU records of st's vCPUs here, none started. */
static int alloc_vcpus(struct agent_vm *vm, const Cellmon__VmStart *st)
{
	vm->vcpus = calloc(st->n_vcpus ? st->n_vcpus : 1, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (size_t i = 0; i < st->n_vcpus; i++)
		vm->vcpus[i] = (struct agent_vcpu){.vm = vm,
						   .index = st->vcpus[i],
						   .ctl = -1,
						   .guest_fd = -1};
	vm->nvcpus = st->n_vcpus;
	return 0;
}

static int vm_run(struct agent *a, const Cellmon__VmStart *st,
		  Cellmon__CommandAck *ack, char *err, size_t len)
{
	struct agent_vm *vm =
		st->spec ? vm_find(a, st->spec->name, st->region) : NULL;
	int sv[2], rc = 0;

	if (!vm) {
		snprintf(err, len, "VM not prepared on %s", a->cfg.node_id);
		return -ENOENT;
	}
	if (vm->vcpus)
		return run_reply(vm, ack); /* a retried RUN */
	if (alloc_vcpus(vm, st))
		return -ENOMEM;
	for (size_t i = 0; i < vm->nvcpus && !rc; i++) {
		struct agent_vcpu *v = &vm->vcpus[i];

		if (v->index >= vm->spec->vcpus) {
			snprintf(err, len, "vCPU %u out of range", v->index);
			rc = -EINVAL;
			break;
		}
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
			rc = -errno;
			snprintf(err, len, "socketpair: %s", strerror(errno));
			break;
		}
		v->ctl = sv[0];
		v->guest_fd = sv[1]; /* the engine passes it on, closes it */
		rc = vm->engine->start(a, v, err, len);
		if (!rc)
			rc = -pthread_create(&v->thread, NULL,
					     agent_guest_serve, v);
		if (!rc)
			v->has_thread = true;
	}
	if (rc) {
		CELL_WARN(MOD, "vm %s: cannot start vCPUs: %s", vm->name, err);
		signal_vcpus(vm, true);
		return rc;
	}
	CELL_INFO(MOD, "vm running name=%s region=%llu vcpus_here=%zu",
		  vm->name, (unsigned long long)vm->region_id, vm->nvcpus);
	return run_reply(vm, ack);
}

/* ---- live migration (engines that can: qemu) ---- */

static bool vm_all_ended(const struct agent_vm *vm);

/* Ends the service threads of the VM's vCPUs here and forgets them:
 * the VM keeps its region and disks (the node homes pages of it). */
static void drop_vcpus(struct agent *a, struct agent_vm *vm)
{
	for (size_t i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpus[i].ctl >= 0)
			shutdown(vm->vcpus[i].ctl, SHUT_RDWR);
		if (vm->vcpus[i].has_thread)
			pthread_join(vm->vcpus[i].thread, NULL);
		if (vm->vcpus[i].ctl >= 0)
			close(vm->vcpus[i].ctl);
	}
	pthread_mutex_lock(&a->vm_mu);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nvcpus = 0;
	pthread_mutex_unlock(&a->vm_mu);
	vm->migrate_addr[0] = '\0';
}

/* The host part of this node's DSM address: where a migration comes. */
static void migrate_host(const struct agent *a, char *out, size_t len)
{
	size_t n = strcspn(a->dsm_addr, ":");

	snprintf(out, len, "%.*s", (int)n, a->dsm_addr);
	if (!out[0] || strcmp(out, "0.0.0.0") == 0)
		snprintf(out, len, "127.0.0.1");
}

static int vm_migrate_in(struct agent *a, const Cellmon__VmStart *st,
			 Cellmon__CommandAck *ack, char *err, size_t len)
{
	struct agent_vm *vm =
		st->spec ? vm_find(a, st->spec->name, st->region) : NULL;
	char host[160];
	int rc = 0;

	if (!vm) {
		snprintf(err, len, "vm %s does not have its memory on %s",
			 st->spec ? st->spec->name : "?", a->cfg.node_id);
		return -ENOENT;
	}
	if (!vm->engine->migrate_in) {
		snprintf(err, len, "engine %s cannot migrate",
			 vm->engine->name);
		return -EOPNOTSUPP;
	}
	if (vm_all_ended(vm))
		drop_vcpus(a, vm); /* an earlier attempt's, ended */
	if (vm->nvcpus && vm->migrate_addr[0]) {
		/* asked again: its VMM waits; have it listen */
		rc = vm->engine->migrate_listen(&vm->vcpus[0], vm->migrate_addr,
						err, len);
		if (rc)
			return rc;
		CELL_INFO(MOD, "vm %s: waiting for its migration on %s",
			  vm->name, vm->migrate_addr);
		rc = run_reply(vm, ack);
		if (!rc)
			ack->run->migrate_addr = vm->migrate_addr;
		return rc;
	}
	if (vm->nvcpus) {
		snprintf(err, len, "vm %s already runs vCPUs on %s", vm->name,
			 a->cfg.node_id);
		return -EBUSY;
	}
	if (!vm->ndisks && (rc = open_disks(a, vm, st, err, len)))
		return rc;
	if (alloc_vcpus(vm, st))
		return -ENOMEM;
	migrate_host(a, host, sizeof(host));
	for (size_t i = 0; i < vm->nvcpus && !rc; i++)
		rc = vm->engine->migrate_in(a, &vm->vcpus[i], host,
					    vm->migrate_addr,
					    sizeof(vm->migrate_addr), err, len);
	if (rc) {
		signal_vcpus(vm, true);
		vm->migrate_addr[0] = '\0';
		return rc;
	}
	/* QEMU starts; the next MIGRATE_IN has it listen (-EAGAIN: ask
	 * again) */
	snprintf(err, len, "QEMU of vm %s is starting on %s", vm->name,
		 a->cfg.node_id);
	return -EAGAIN;
}

static int vm_migrate_out(struct agent *a, struct agent_vm *vm, const char *to,
			  Cellmon__CommandAck *ack, char *err, size_t len)
{
	Cellmon__VmMigrated *m;
	uint32_t down = 0, total = 0;
	int rc;

	if (!vm->engine->migrate_out || !vm->nvcpus ||
	    vm->vcpus[0].state != CELLMON__VCPU_STATE__VCPU_RUNNING) {
		snprintf(err, len, "vm %s has no running vCPUs on %s to move",
			 vm->name, a->cfg.node_id);
		return -EINVAL;
	}
	rc = vm->engine->migrate_out(&vm->vcpus[0], to, &down, &total, err,
				     len);
	if (rc)
		return rc;
	CELL_INFO(MOD, "vm %s: migrated to %s: downtime %u ms, total %u ms",
		  vm->name, to, down, total);
	/* The source QEMU is paused for good: it goes, unreported. */
	vm->engine->kill(&vm->vcpus[0]);
	drop_vcpus(a, vm);
	agent_nbd_stop(vm);
	m = calloc(1, sizeof(*m));
	if (!m)
		return 0; /* moved; the manager learns it from the target */
	cellmon__vm_migrated__init(m);
	m->downtime_ms = down;
	m->total_ms = total;
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_MIGRATED;
	ack->migrated = m;
	return 0;
}

/* ---- console and stats ---- */

static int read_tail(const char *path, size_t max, uint8_t **out, size_t *len,
		     bool *truncated)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size, from;
	ssize_t n;

	*out = NULL;
	*len = 0;
	*truncated = false;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	size = lseek(fd, 0, SEEK_END);
	from = size > (off_t)max ? size - (off_t)max : 0;
	*truncated = from > 0;
	*out = malloc((size_t)(size - from) + 1);
	if (!*out) {
		close(fd);
		return -ENOMEM;
	}
	n = pread(fd, *out, (size_t)(size - from), from);
	close(fd);
	if (n < 0)
		return -errno;
	*len = (size_t)n;
	return 0;
}

/* Reads the consoles from the files, so they outlive the VM's run. */
/* What a CONSOLE ack points to until agent_vm_ack_free(). */
struct console_result {
	Cellmon__VmConsoleReply r;
	Cellmon__VcpuConsole c[256], *p[256];
};

static int vm_console(struct agent *a, const Cellmon__VmTarget *t,
		      Cellmon__CommandAck *ack)
{
	struct console_result *cr;
	Cellmon__VmConsoleReply *r;
	char dir[1100], path[1400];
	struct dirent *de;
	DIR *d;
	unsigned idx;
	int rc = 0;

	if (!cell_name_valid(t->name) || !agent_region_vm_id(t->region))
		return -EINVAL;
	run_dir(a, t->region, dir, sizeof(dir)); /* that run's, not a
						  * namesake's */
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? -ENOENT : -errno;
	cr = calloc(1, sizeof(*cr));
	if (!cr) {
		closedir(d);
		return -ENOMEM;
	}
	r = &cr->r;
	cellmon__vm_console_reply__init(r);
	r->consoles = cr->p;
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_CONSOLE;
	ack->console = r; /* freed by agent_vm_ack_free() */
	while (!rc && (de = readdir(d)) && r->n_consoles < 256) {
		Cellmon__VcpuConsole *e = &cr->c[r->n_consoles];

		char *end;

		if (strncmp(de->d_name, "vcpu", 4) != 0 ||
		    !isdigit((unsigned char)de->d_name[4]))
			continue;
		idx = (unsigned)strtoul(de->d_name + 4, &end, 10);
		if (strcmp(end, ".console") != 0)
			continue;
		cellmon__vcpu_console__init(e);
		e->vcpu = idx;
		e->node = a->cfg.node_id;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = read_tail(path, (size_t)a->cfg.console_max, &e->text.data,
			       &e->text.len, (bool *)&e->truncated);
		cr->p[r->n_consoles++] = e;
	}
	closedir(d);
	return rc;
}

static int vm_stats(struct agent *a, struct agent_vm *vm,
		    Cellmon__CommandAck *ack)
{
	Cellmon__VmNodeStats *r;
	struct dsm_region_stats st;
	int rc = dsm_region_stats(vm->region, &st);

	if (rc)
		return rc;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	cellmon__vm_node_stats__init(r);
	r->node = a->cfg.node_id;
	r->read_faults = st.read_faults;
	r->write_faults = st.write_faults;
	r->local_faults = st.local_faults;
	r->remote_faults = st.remote_faults;
	r->invalidations = st.invalidations;
	r->transfers = st.transfers;
	r->bytes_in = st.transfers * DSM_PAGE;
	r->pages_homed = st.pages_homed;
	r->pushes = st.pushes;
	ack->result_case = CELLMON__COMMAND_ACK__RESULT_STATS;
	ack->stats = r;
	return 0;
}

/* ---- commands ---- */

static int target_command(struct agent *a, const Cellmon__Command *cmd,
			  Cellmon__CommandAck *ack, char *err, size_t len)
{
	const Cellmon__VmTarget *t = cmd->target;
	struct agent_vm *vm;
	int rc = 0;

	if (cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_CONSOLE) {
		rc = vm_console(a, t, ack);
		if (rc == -ENOENT)
			snprintf(err, len, "no console of vm %s on %s", t->name,
				 a->cfg.node_id);
		goto out;
	}
	if (cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_FORGET) {
		if (agent_region_vm_id(t->region))
			forget_vm(a, agent_region_vm_id(t->region),
				  "the VM was deleted");
		goto out;
	}
	vm = vm_find(a, t->name[0] ? t->name : NULL, t->region);
	if (!vm) {
		/* Nothing to stop or release is success: the goal holds. */
		if (cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_STATS ||
		    cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE) {
			snprintf(err, len, "vm %s (region %llu) is not on %s",
				 t->name, (unsigned long long)t->region,
				 a->cfg.node_id);
			rc = -ENOENT;
		}
		goto out;
	}
	switch (cmd->kind) {
	case CELLMON__COMMAND_KIND__CMD_VM_STOP:
		if (!vm->stopping) {
			struct timeval tv = {a->cfg.stop_grace_ms / 1000,
					     (a->cfg.stop_grace_ms % 1000) *
						     1000};

			vm->stopping = true;
			signal_vcpus(vm, false);
			evtimer_add(vm->grace_timer, &tv);
			CELL_INFO(MOD, "vm stopping name=%s", vm->name);
		}
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_KILL:
		signal_vcpus(vm, true);
		CELL_INFO(MOD, "vm killed name=%s", vm->name);
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_RELEASE:
		vm_release(a, vm);
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_OUT:
		rc = vm_migrate_out(a, vm, t->migrate_to, ack, err, len);
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE:
		rc = agent_pages_sample(vm, t->map_only, ack, err, len);
		break;
	default:
		rc = vm_stats(a, vm, ack);
		break;
	}
	if (rc && !err[0])
		snprintf(err, len, "%s", strerror(-rc));
out:
	return rc;
}

void agent_vm_command(struct agent *a, const Cellmon__Command *cmd,
		      Cellmon__CommandAck *ack, char *err, size_t len)
{
	bool has_start = cmd->args_case == CELLMON__COMMAND__ARGS_START;
	bool has_target = cmd->args_case == CELLMON__COMMAND__ARGS_TARGET;
	int rc;

	err[0] = '\0';
	switch (cmd->kind) {
	case CELLMON__COMMAND_KIND__CMD_VM_PREPARE:
	case CELLMON__COMMAND_KIND__CMD_VM_RUN:
	case CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_IN:
		if (!has_start) {
			snprintf(err, len,
				 "VM start request without a VmStart");
			rc = -EBADMSG;
			break;
		}
		rc = cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_PREPARE
			     ? vm_prepare(a, cmd->start, err, len)
		     : cmd->kind == CELLMON__COMMAND_KIND__CMD_VM_RUN
			     ? vm_run(a, cmd->start, ack, err, len)
			     : vm_migrate_in(a, cmd->start, ack, err, len);
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_STOP:
	case CELLMON__COMMAND_KIND__CMD_VM_KILL:
	case CELLMON__COMMAND_KIND__CMD_VM_RELEASE:
	case CELLMON__COMMAND_KIND__CMD_VM_CONSOLE:
	case CELLMON__COMMAND_KIND__CMD_VM_STATS:
	case CELLMON__COMMAND_KIND__CMD_VM_FORGET:
	case CELLMON__COMMAND_KIND__CMD_VM_MIGRATE_OUT:
	case CELLMON__COMMAND_KIND__CMD_VM_PAGES_SAMPLE:
		if (!has_target) {
			snprintf(err, len, "VM command without a VmTarget");
			rc = -EBADMSG;
			break;
		}
		rc = target_command(a, cmd, ack, err, len);
		break;
	case CELLMON__COMMAND_KIND__CMD_VM_PAGES_APPLY: {
		const Cellmon__PageDecisions *d = cmd->decisions;
		struct agent_vm *vm;

		if (cmd->args_case != CELLMON__COMMAND__ARGS_DECISIONS) {
			snprintf(err, len, "page decisions missing");
			rc = -EBADMSG;
			break;
		}
		vm = vm_find(a, d->name[0] ? d->name : NULL, d->region);
		if (!vm) {
			/* an earlier run's (or a deleted VM's): refused */
			snprintf(err, len,
				 "vm %s has no run with region %llu on %s",
				 d->name, (unsigned long long)d->region,
				 a->cfg.node_id);
			rc = -ESTALE;
			break;
		}
		rc = agent_pages_apply(vm, d, ack, err, len);
		break;
	}
	default:
		snprintf(err, len, "unknown command %d", (int)cmd->kind);
		rc = -EOPNOTSUPP;
		break;
	}
	ack->status = rc;
	if (rc && !err[0])
		snprintf(err, len, "%s", strerror(-rc));
	ack->message = err;
	/* A result goes only with success (agent.proto); it stays allocated
	 * until agent_vm_ack_free(). */
	if (rc)
		agent_vm_ack_free(ack);
}

void agent_vm_ack_free(Cellmon__CommandAck *ack)
{
	/* the results share a union: result_case says which is set */
	switch (ack->result_case) {
	case CELLMON__COMMAND_ACK__RESULT_CONSOLE:
		for (size_t i = 0; i < ack->console->n_consoles; i++)
			free(ack->console->consoles[i]->text.data);
		free(ack->console); /* the start of its console_result */
		break;
	case CELLMON__COMMAND_ACK__RESULT_STATS:
		free(ack->stats);
		break;
	case CELLMON__COMMAND_ACK__RESULT_RUN:
		agent_vm_status_free(ack->run->vcpus, ack->run->n_vcpus);
		free(ack->run); /* migrate_addr points into the VM */
		break;
	case CELLMON__COMMAND_ACK__RESULT_MIGRATED:
		free(ack->migrated);
		break;
	case CELLMON__COMMAND_ACK__RESULT_SAMPLE:
	case CELLMON__COMMAND_ACK__RESULT_APPLIED:
		agent_pages_ack_free(ack);
		break;
	default:
		break;
	}
	ack->result_case = CELLMON__COMMAND_ACK__RESULT__NOT_SET;
	ack->console = NULL;
}

/* ---- vCPU ends and status ---- */

static bool vm_all_ended(const struct agent_vm *vm)
{
	for (size_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].state == CELLMON__VCPU_STATE__VCPU_RUNNING)
			return false;
	return true;
}

static bool reap_one(struct agent *a, pid_t pid, int ws)
{
	bool found = false;

	for (struct agent_vm *vm = a->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nvcpus; i++) {
			struct agent_vcpu *v = &vm->vcpus[i];

			if (v->pid != pid ||
			    v->state != CELLMON__VCPU_STATE__VCPU_RUNNING)
				continue;
			pthread_mutex_lock(&a->vm_mu);
			if (WIFEXITED(ws)) {
				v->state = CELLMON__VCPU_STATE__VCPU_EXITED;
				v->exit_code = WEXITSTATUS(ws);
			} else {
				v->state =
					vm->fenced
						? CELLMON__VCPU_STATE__VCPU_FENCED
					: __atomic_load_n(&vm->dsm_failed,
							  __ATOMIC_ACQUIRE)
						? CELLMON__VCPU_STATE__VCPU_LOST
						: CELLMON__VCPU_STATE__VCPU_KILLED;
				v->signal = WTERMSIG(ws);
			}
			pthread_mutex_unlock(&a->vm_mu);
			if (vm->engine->ended &&
			    (v->state != CELLMON__VCPU_STATE__VCPU_EXITED ||
			     v->exit_code))
				vm->engine->ended(v);
			if (vm_all_ended(vm))
				evtimer_del(vm->grace_timer);
			CELL_INFO(MOD, "vcpu ended vm=%s vcpu=%u pid=%d %s=%d",
				  vm->name, v->index, (int)pid,
				  v->state == CELLMON__VCPU_STATE__VCPU_EXITED
					  ? "status"
					  : "signal",
				  v->state == CELLMON__VCPU_STATE__VCPU_EXITED
					  ? v->exit_code
					  : v->signal);
			found = true; /* a qemu VM's vCPUs share one pid */
		}
	return found;
}

static void sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	bool any = false;
	pid_t pid;
	int ws;

	(void)fd;
	(void)what;
	while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
		any |= reap_one(a, pid, ws);
	if (any)
		a->heartbeat_now(a);
}

int agent_vm_status(struct agent *a, Cellmon__VcpuStatus ***out, size_t *n)
{
	size_t k = 0, cap = 0;
	Cellmon__VcpuStatus **v;

	for (struct agent_vm *vm = a->vms; vm; vm = vm->next)
		cap += vm->nvcpus;
	v = calloc(cap + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (struct agent_vm *vm = a->vms; vm; vm = vm->next)
		for (size_t i = 0; i < vm->nvcpus; i++) {
			Cellmon__VcpuStatus *s = vcpu_status(&vm->vcpus[i]);

			if (!s) {
				agent_vm_status_free(v, k);
				return -ENOMEM;
			}
			v[k++] = s;
		}
	*out = v;
	*n = k;
	return 0;
}

void agent_vm_status_free(Cellmon__VcpuStatus **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void agent_vm_fence(struct agent *a)
{
	for (struct agent_vm *vm = a->vms; vm; vm = vm->next) {
		bool any = false;

		for (size_t i = 0; i < vm->nvcpus; i++)
			any |= vm->vcpus[i].state ==
			       CELLMON__VCPU_STATE__VCPU_RUNNING;
		if (!any)
			continue;
		vm->fenced = true;
		signal_vcpus(vm, true);
		CELL_WARN(MOD, "vm %s: vCPUs killed: the node is fenced",
			  vm->name);
	}
}

void agent_vm_discard_all(struct agent *a, const char *why)
{
	if (a->vms)
		CELL_WARN(MOD, "discarding every VM: %s", why);
	while (a->vms)
		vm_release(a, a->vms);
}

int agent_vm_init(struct agent *a)
{
	int rc;

	a->dsm_id = -1;
	a->lease_fd = -1;
	rc = agent_guest_lease_create(a);
	if (rc)
		return rc;
	pthread_mutex_init(&a->vm_mu, NULL);
	a->sigchld = evsignal_new(a->base, SIGCHLD, sigchld_cb, a);
	if (!a->sigchld || event_add(a->sigchld, NULL))
		return -ENOMEM;
	return agent_cache_create((uint64_t)a->cfg.cache_size, &a->cache);
}

/* On shutdown: every VM's vCPUs die with the agent (they could not be
 * served without it), and their regions go. */
void agent_vm_fini(struct agent *a)
{
	while (a->vms)
		vm_release(a, a->vms);
	if (a->sigchld)
		event_free(a->sigchld);
	dsm_node_destroy(a->dsm);
	a->dsm = NULL;
	agent_cache_destroy(a->cache);
	a->cache = NULL;
}
