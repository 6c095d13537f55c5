/*
 * What a VM spec may say: the checks of a new spec (names, cell, sizes,
 * the closed sets of vm.proto, disks, the disk server), the defaults the
 * manager fills in for *_DEFAULT values, the disk-sharing rule (one
 * active writer per disk, any number of readers), and the upgrade of
 * specs stored by a protocol-1 manager, whose engine, placement and home
 * were strings.
 *
 * Pure functions of the spec and the manager's records; called by the
 * cellctl VM methods, restore and the disk methods. Event-loop thread.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgr_int.h"

/* Whether v is a value of the set; err names the known ones if not (a
 * newer cellctl may send a value this manager does not have). */
static bool known(const struct cellproto_enum *e, int v, char *err, size_t len)
{
	char names[200];

	if (cellproto_known(e, v))
		return true;
	cellproto_names_list(e, names, sizeof(names));
	snprintf(err, len, "unknown %s %d: this manager knows %s", e->what, v,
		 names);
	return false;
}

/* The first n bytes of d as a disk name. */
static bool disk_name_ok(const char *d, size_t n)
{
	char name[CELL_NAME_MAX + 1];

	if (n > CELL_NAME_MAX)
		return false;
	memcpy(name, d, n);
	name[n] = '\0';
	return cell_name_valid(name);
}

/* The disk name of spec entry i and whether it is writable. */
static size_t disk_of(const Cellmon__VmSpec *s, size_t i, bool *rw)
{
	size_t n = strcspn(s->disks[i], ":");

	*rw = s->disks[i][n] == '\0';
	return n;
}

const char *mgr_vm_disk_user(struct mgr *m, const char *disk)
{
	for (size_t v = 0; v < m->nvms; v++) {
		const struct mgr_vm *vm = m->vms[v];
		bool rw;

		for (size_t i = 0; mgr_vm_active(vm) && i < vm->spec->n_disks;
		     i++) {
			size_t n = disk_of(vm->spec, i, &rw);

			if (strlen(disk) == n &&
			    strncmp(vm->spec->disks[i], disk, n) == 0)
				return vm->name;
		}
	}
	return NULL;
}

/* NFS-style sharing: one active writer per disk, any number of readers.
 * 0, or -EBUSY with the other writer named. */
int mgr_vm_check_writers(struct mgr *m, const struct mgr_vm *self, char *err,
			 size_t len)
{
	for (size_t i = 0; i < self->spec->n_disks; i++) {
		bool rw, orw;
		size_t n = disk_of(self->spec, i, &rw);

		for (size_t v = 0; rw && v < m->nvms; v++) {
			const struct mgr_vm *o = m->vms[v];

			for (size_t j = 0; o != self && mgr_vm_active(o) &&
					   j < o->spec->n_disks;
			     j++) {
				size_t on = disk_of(o->spec, j, &orw);

				if (orw && on == n &&
				    strncmp(o->spec->disks[j],
					    self->spec->disks[i], n) == 0) {
					snprintf(
						err, len,
						"disk %.*s is written by vm "
						"%s; one writer at a time (use "
						"%.*s:ro to read it)",
						(int)n, self->spec->disks[i],
						o->name, (int)n,
						self->spec->disks[i]);
					return -EBUSY;
				}
			}
		}
	}
	return 0;
}

/* A qemu VM's --kernel and --initrd: absolute paths of files on the
 * nodes (each node checks the file at PREPARE), plain enough to be
 * logged as they are. */
static int boot_file_check(const Cellmon__VmSpec *s, char *err, size_t len)
{
	const char *what[2] = {"kernel", "initrd"};
	const char *path[2] = {s->kernel, s->initrd};

	if ((s->kernel[0] || s->initrd[0]) &&
	    s->engine != CELLMON__ENGINE__ENGINE_QEMU) {
		snprintf(err, len, "--kernel and --initrd go with engine qemu");
		return -EINVAL;
	}
	if (s->initrd[0] && !s->kernel[0] && !s->image[0]) {
		snprintf(err, len, "--initrd needs --kernel or --image");
		return -EINVAL;
	}
	for (int i = 0; i < 2; i++) {
		const char *p = path[i];
		size_t n = strlen(p);
		bool bad = n && (p[0] != '/' || n > 1000 || strstr(p, "/../") ||
				 (n >= 3 && strcmp(p + n - 3, "/..") == 0));

		for (const char *c = p; !bad && *c; c++)
			bad = (unsigned char)*c < 0x20 || *c == 0x7f;
		if (bad) {
			snprintf(err, len,
				 "bad %s path '%.200s': an absolute path "
				 "on the nodes, without '..' or control "
				 "characters",
				 what[i], p);
			return -EINVAL;
		}
	}
	return 0;
}

/* Fills defaults into s and checks it; err says what is wrong. */
int mgr_vm_spec_check(struct mgr *m, Cellmon__VmSpec *s, char *err, size_t len)
{
	if (!cell_name_valid(s->name)) {
		snprintf(err, len,
			 "invalid VM name '%.64s': use " CELL_NAME_RULE,
			 s->name);
		return -EINVAL;
	}
	if (!s->cell[0] || !mgr_cell_find(m, s->cell)) {
		snprintf(err, len, "no cell '%.64s'", s->cell);
		return -ENOENT;
	}
	if (s->vcpus == 0 || s->vcpus > VM_MAX_VCPUS) {
		snprintf(err, len, "vcpus must be 1-%d, not %u", VM_MAX_VCPUS,
			 s->vcpus);
		return -EINVAL;
	}
	if (s->memory_mb == 0 || s->memory_mb > VM_MAX_MEMORY_MB) {
		snprintf(err, len,
			 "memory must be 1 MB to %llu MB, not %llu MB",
			 (unsigned long long)VM_MAX_MEMORY_MB,
			 (unsigned long long)s->memory_mb);
		return -EINVAL;
	}
	if (!known(&cellproto_engines, (int)s->engine, err, len) ||
	    !known(&cellproto_placements, (int)s->placement, err, len) ||
	    !known(&cellproto_homes, (int)s->home, err, len) ||
	    !known(&cellproto_page_policies, (int)s->page_policy, err, len))
		return -EINVAL;
	if ((s->image[0] || !s->kernel[0]) && !cell_name_valid(s->image)) {
		snprintf(err, len,
			 "invalid image name '%.64s': use " CELL_NAME_RULE,
			 s->image);
		return -EINVAL;
	}
	if (boot_file_check(s, err, len))
		return -EINVAL;
	if (s->node[0] && !mgr_members_find(m->members, s->node)) {
		snprintf(err, len, "no node '%.64s'", s->node);
		return -ENOENT;
	}
	for (size_t i = 0; i < s->n_disks; i++) {
		const char *d = s->disks[i];
		size_t n = strcspn(d, ":");

		if (!disk_name_ok(d, n) || (d[n] && strcmp(d + n, ":ro"))) {
			snprintf(err, len,
				 "bad disk '%.80s': NAME or NAME:ro, "
				 "NAME " CELL_NAME_RULE,
				 d);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strncmp(s->disks[j], d, n) == 0 &&
			    strcspn(s->disks[j], ":") == n) {
				snprintf(err, len, "disk %.*s given twice",
					 (int)n, d);
				return -EINVAL;
			}
	}
	if (s->n_disks && !m->cfg.vdiskd[0]) {
		snprintf(err, len,
			 "the VM has disks but no disk server is "
			 "configured (manager option vdiskd)");
		return -EINVAL;
	}
	if (s->home_node[0]) {
		const struct mgr_node *hn =
			mgr_members_find(m->members, s->home_node);

		if (s->home != CELLMON__HOME_POLICY__HOME_ONE) {
			snprintf(err, len, "home_node goes with home one only");
			return -EINVAL;
		}
		if (!hn) {
			snprintf(err, len, "no node '%.64s' (home node)",
				 s->home_node);
			return -ENOENT;
		}
		if (strcmp(hn->cell, s->cell) != 0) {
			snprintf(err, len, "home node %s is not in cell %s",
				 hn->id, s->cell);
			return -EINVAL;
		}
	}
	if (s->anti_affinity[0] && !cell_name_valid(s->anti_affinity)) {
		snprintf(err, len, "invalid anti-affinity group '%.64s'",
			 s->anti_affinity);
		return -EINVAL;
	}
	return 0;
}

/* The *_DEFAULT values of a request become what they stand for. */
int mgr_vm_spec_defaults(Cellmon__VmSpec *s)
{
	if (s->engine == CELLMON__ENGINE__ENGINE_DEFAULT)
		s->engine = CELLMON__ENGINE__ENGINE_NATIVE;
	if (s->placement == CELLMON__PLACEMENT__PLACEMENT_DEFAULT)
		s->placement = CELLMON__PLACEMENT__PLACEMENT_SPREAD;
	if (s->home == CELLMON__HOME_POLICY__HOME_DEFAULT)
		s->home = CELLMON__HOME_POLICY__HOME_INTERLEAVE;
	if (s->page_policy == CELLMON__PAGE_POLICY__PAGE_POLICY_DEFAULT)
		s->page_policy = CELLMON__PAGE_POLICY__PAGE_POLICY_ALL;
	return 0;
}

/* The legacy string field `tag` of a spec stored before protocol 2, as
 * one of e's values; 0 when absent, -EINVAL when it names no value. */
static int legacy_field(const Cellmon__VmSpec *s, uint32_t tag,
			const struct cellproto_enum *e, int *v)
{
	for (unsigned i = 0; i < s->base.n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *u =
			&s->base.unknown_fields[i];
		char name[40];

		if (u->tag != tag ||
		    u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
			continue;
		/* the data is the field's bytes after the tag: a one-byte
		 * length (names are short), then the string */
		if (u->len < 1 || u->data[0] >= sizeof(name) ||
		    u->data[0] != u->len - 1)
			return -EINVAL;
		memcpy(name, u->data + 1, u->len - 1);
		name[u->len - 1] = '\0';
		return cellproto_parse(e, name, v);
	}
	return 0;
}

/* A spec stored by a manager of protocol 1 held engine (5), placement
 * (9) and home (11) as strings; they come back as unknown fields and are
 * turned into the enums here, so an upgrade loses none of them. 0, or
 * -EINVAL when one names nothing this manager knows. */
int mgr_vm_spec_upgrade(Cellmon__VmSpec *s)
{
	int e = s->engine, p = s->placement, h = s->home;

	if (legacy_field(s, 5, &cellproto_engines, &e) ||
	    legacy_field(s, 9, &cellproto_placements, &p) ||
	    legacy_field(s, 11, &cellproto_homes, &h))
		return -EINVAL;
	s->engine = (Cellmon__Engine)e;
	s->placement = (Cellmon__Placement)p;
	s->home = (Cellmon__HomePolicy)h;
	/* Not packed again: the next save holds the enums alone. The
	 * message came from unpack with the default allocator. */
	for (unsigned i = 0; i < s->base.n_unknown_fields; i++)
		free(s->base.unknown_fields[i].data);
	free(s->base.unknown_fields);
	s->base.unknown_fields = NULL;
	s->base.n_unknown_fields = 0;
	return mgr_vm_spec_defaults(s);
}
