/*
 * cellmon-vdiskd's offline commands, on the store directly while no
 * server has the disk open: base import, disk create, clone, list, info
 * and delete, with -o json. Exit codes as cellctl's: 0 done, 1 failed,
 * 2 usage, 4 not found, 5 exists or in use.
 */
#include <string.h>

#include <jansson.h>

#include "cell/config.h"
#include "vdiskd.h"

static json_t *info_json(const struct vdisk_info *i)
{
	return json_pack("{s:s, s:I, s:b, s:s, s:I, s:I, s:i}", "name", i->name,
			 "size", (json_int_t)i->size, "frozen", i->frozen,
			 "parent", i->parent, "data_bytes",
			 (json_int_t)i->data_bytes, "journal_bytes",
			 (json_int_t)i->journal_bytes, "chain_depth",
			 (int)i->chain_depth);
}

static void print_info(const struct vdisk_info *i, bool json)
{
	if (json) {
		json_t *j = info_json(i);

		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
		return;
	}
	printf("name:          %s\nsize:          %llu\nfrozen:        %s\n"
	       "parent:        %s\ndata bytes:    %llu\njournal bytes: %llu\n"
	       "chain depth:   %u\n",
	       i->name, (unsigned long long)i->size, i->frozen ? "yes" : "no",
	       i->parent[0] ? i->parent : "(none)",
	       (unsigned long long)i->data_bytes,
	       (unsigned long long)i->journal_bytes, i->chain_depth);
}

static int cmd_list(bool json)
{
	char **names, err[600];
	size_t n;
	json_t *arr = json ? json_array() : NULL;

	if (vdisk_list(D.cfg.store, &names, &n, err, sizeof(err))) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 1;
	}
	if (!json)
		printf("%-24s %14s %-7s %s\n", "NAME", "SIZE", "FROZEN",
		       "PARENT");
	for (size_t k = 0; k < n; k++) {
		struct vdisk_info i;

		if (vdisk_info(D.cfg.store, names[k], &i, err, sizeof(err)) ==
		    0) {
			if (json)
				json_array_append_new(arr, info_json(&i));
			else
				printf("%-24s %14llu %-7s %s\n", i.name,
				       (unsigned long long)i.size,
				       i.frozen ? "yes" : "no",
				       i.parent[0] ? i.parent : "-");
		} else {
			fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		}
		free(names[k]);
	}
	free(names);
	if (json) {
		json_dumpf(arr, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(arr);
	}
	return 0;
}

/* Offline commands. Exit codes as cellctl's: 0 done, 1 failed, 2 usage,
 * 4 not found, 5 exists or in use. */
int vdiskd_offline(int argc, char **argv)
{
	char err[600], id[VDISK_ID_LEN + 1];
	bool json = false;
	int rc = -EINVAL;
	int64_t size;

	/* "-o json" anywhere */
	for (int i = 0; i + 1 < argc; i++) {
		if (strcmp(argv[i], "-o") == 0 &&
		    strcmp(argv[i + 1], "json") == 0) {
			json = true;
			memmove(argv + i, argv + i + 2,
				(size_t)(argc - i - 2) * sizeof(*argv));
			argc -= 2;
			break;
		}
	}
	err[0] = 0;
	if (vdisk_store_init(D.cfg.store, err, sizeof(err))) {
		fprintf(stderr, "cellmon-vdiskd: %s\n", err);
		return 1;
	}
	if (argc == 3 && !strcmp(argv[0], "base") &&
	    !strcmp(argv[1], "import")) {
		rc = vdisk_base_import(D.cfg.store, argv[2], id, err,
				       sizeof(err));
		if (!rc)
			printf(json ? "{\"id\":\"%s\"}\n" : "%s\n", id);
	} else if ((argc == 4 || argc == 5) && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "create")) {
		if (cell_parse_size(argv[3], &size) || size < 0) {
			fprintf(stderr,
				"cellmon-vdiskd: bad size '%s' (bytes, or "
				"with binary K, M, G or T: 4096, 64M, 2G, "
				"1T)\n",
				argv[3]);
			return 2;
		}
		rc = vdisk_create(D.cfg.store, argv[2], (uint64_t)size,
				  argc == 5 ? argv[4] : NULL, err, sizeof(err));
	} else if (argc == 4 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "clone")) {
		rc = vdisk_clone(D.cfg.store, argv[2], argv[3], err,
				 sizeof(err));
	} else if (argc == 2 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "list")) {
		return cmd_list(json);
	} else if (argc == 3 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "info")) {
		struct vdisk_info i;

		rc = vdisk_info(D.cfg.store, argv[2], &i, err, sizeof(err));
		if (!rc)
			print_info(&i, json);
	} else if (argc == 3 && !strcmp(argv[0], "disk") &&
		   !strcmp(argv[1], "delete")) {
		rc = vdisk_delete(D.cfg.store, argv[2], err, sizeof(err));
	} else {
		fprintf(stderr, "cellmon-vdiskd: unknown command (see "
				"--help)\n");
		return 2;
	}
	if (!rc)
		return 0;
	fprintf(stderr, "cellmon-vdiskd: %s\n", err[0] ? err : strerror(-rc));
	return rc == -ENOENT ? 4 : rc == -EEXIST || rc == -EBUSY ? 5 : 1;
}
