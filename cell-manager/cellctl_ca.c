/*
 * cellctl ca: the cell's certificate authority, kept in a directory of
 * the operator's (cell/ca.h). Local: these commands talk to no manager.
 *
 *   cellctl ca init DIR [--cell=NAME] [--days=N]
 *   cellctl ca issue DIR --node=ID | --admin=NAME | --viewer=NAME |
 *                        --disk-server=NAME | --role=ROLE --name=NAME
 *                        [--san=IP:ADDR,DNS:HOST] [--days=N] [--out=PREFIX]
 *   cellctl ca revoke DIR SERIAL
 *   cellctl ca list DIR
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cell/ca.h"
#include "cellctl.h"

enum { CA_OK = 0, CA_ERR = 1, CA_USAGE = 2, CA_NOTFOUND = 4, CA_CONFLICT = 5 };

static const char *opt(const struct ctl_opts *o, const char *key)
{
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->key[i], key) == 0)
			return o->val[i];
	return NULL;
}

static int code(int rc)
{
	switch (rc) {
	case 0:
		return CA_OK;
	case -EINVAL:
		return CA_USAGE;
	case -ENOENT:
		return CA_NOTFOUND;
	case -EEXIST:
	case -EALREADY:
		return CA_CONFLICT;
	default:
		return CA_ERR;
	}
}

/* --days=N: 0 when absent, -1 (after saying why) when not 1..36500. */
static int days_opt(const struct ctl_opts *o)
{
	const char *s = opt(o, "days");
	char *end;
	long d;

	if (!s)
		return 0;
	d = strtol(s, &end, 10);
	if (*end || end == s || d < 1 || d > 36500) {
		fprintf(stderr, "cellctl: --days=%s: want 1 to 36500\n", s);
		return -1;
	}
	return (int)d;
}

static int ca_init(const struct ctl_opts *o, bool json, const char *dir)
{
	static const char *const keys[] = {"cell", "days", NULL};
	const char *cell = opt(o, "cell") ? opt(o, "cell") : "cell";
	int days = days_opt(o), rc;
	char err[600];

	if (ctl_check_keys(o, keys, "ca init") || days < 0)
		return CA_USAGE;
	rc = cell_ca_init(dir, cell, days, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cellctl: ca init: %s\n", err);
		return code(rc);
	}
	if (json)
		ctl_emit_json(json_pack("{s:s, s:s, s:s+, s:s+, s:s+}", "dir",
					dir, "cell", cell, "ca_crt", dir,
					"/ca.crt", "ca_key", dir, "/ca.key",
					"crl", dir, "/crl.pem"));
	else
		printf("CA of cell %s made in %s: ca.crt (give it to every "
		       "host), ca.key (keep it here, 0600), crl.pem\n",
		       cell, dir);
	return CA_OK;
}

static int ca_issue(const struct ctl_opts *o, bool json, const char *dir)
{
	static const char *const keys[] = {
		"node", "admin", "viewer", "disk-server", "role",
		"name", "san",	 "days",   "out",	  NULL};
	static const char *const shortcuts[] = {"node", "admin", "viewer",
						"disk-server", NULL};
	struct cell_ca_issue q = {0};
	char crt[4096], key[4096], err[600];
	uint64_t serial = 0;
	int given = 0, rc;

	if (ctl_check_keys(o, keys, "ca issue"))
		return CA_USAGE;
	for (int i = 0; shortcuts[i]; i++)
		if (opt(o, shortcuts[i])) {
			q.role = cell_role_parse(shortcuts[i]);
			q.name = opt(o, shortcuts[i]);
			given++;
		}
	if (opt(o, "role") || opt(o, "name")) {
		q.role = cell_role_parse(opt(o, "role"));
		q.name = opt(o, "name");
		given++;
		if (!q.role || !q.name) {
			fprintf(stderr,
				"cellctl: ca issue: --role=ROLE (node, admin, "
				"viewer, disk-server, manager) goes with "
				"--name=NAME\n");
			return CA_USAGE;
		}
	}
	if (given != 1) {
		fprintf(stderr,
			"cellctl: ca issue: say whose certificate, once: "
			"--node=ID, --admin=NAME, --viewer=NAME, "
			"--disk-server=NAME or --role=ROLE --name=NAME\n");
		return CA_USAGE;
	}
	q.sans = opt(o, "san");
	q.out_prefix = opt(o, "out");
	q.days = days_opt(o);
	if (q.days < 0)
		return CA_USAGE;
	rc = cell_ca_issue(dir, &q, &serial, crt, key, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cellctl: ca issue: %s\n", err);
		return code(rc);
	}
	if (json)
		ctl_emit_json(json_pack("{s:I, s:s, s:s, s:s, s:s}", "serial",
					(json_int_t)serial, "role",
					cell_role_name(q.role), "name", q.name,
					"crt", crt, "key", key));
	else
		printf("issued serial %" PRIu64 " to %s %s: %s, %s (0600)\n",
		       serial, cell_role_name(q.role), q.name, crt, key);
	return CA_OK;
}

static int ca_revoke(const struct ctl_opts *o, bool json, const char *dir,
		     const char *serial_s)
{
	char err[600], *end;
	uint64_t serial;
	int rc;

	if (ctl_check_keys(o, NULL, "ca revoke"))
		return CA_USAGE;
	serial = strtoull(serial_s, &end, 10);
	if (*end || end == serial_s || serial < 2) {
		fprintf(stderr,
			"cellctl: ca revoke: '%s' is not the serial of an "
			"issued certificate (cellctl ca list shows them)\n",
			serial_s);
		return CA_USAGE;
	}
	rc = cell_ca_revoke(dir, serial, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cellctl: ca revoke: %s\n", err);
		return code(rc);
	}
	if (json)
		ctl_emit_json(json_pack("{s:I, s:s+}", "revoked",
					(json_int_t)serial, "crl", dir,
					"/crl.pem"));
	else
		printf("revoked serial %" PRIu64 "; %s/crl.pem rewritten: copy "
		       "it to every host and send the daemons SIGHUP\n",
		       serial, dir);
	return CA_OK;
}

static int ca_list(const struct ctl_opts *o, bool json, const char *dir)
{
	struct cell_ca_entry *v;
	char err[600], when[32], gone[32];
	size_t n;
	json_t *arr;
	int rc;

	if (ctl_check_keys(o, NULL, "ca list"))
		return CA_USAGE;
	rc = cell_ca_list(dir, &v, &n, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cellctl: ca list: %s\n", err);
		return code(rc);
	}
	if (json) {
		arr = json_array();
		for (size_t i = 0; arr && i < n; i++) {
			ctl_iso_time((uint64_t)v[i].not_after * 1000, when,
				     sizeof(when));
			ctl_iso_time((uint64_t)v[i].revoked * 1000, gone,
				     sizeof(gone));
			json_array_append_new(
				arr,
				json_pack("{s:I, s:s, s:s, s:s, s:s?}",
					  "serial", (json_int_t)v[i].serial,
					  "role", cell_role_name(v[i].role),
					  "name", v[i].name, "not_after", when,
					  "revoked",
					  v[i].revoked ? gone : NULL));
		}
		ctl_emit_json(json_pack("{s:o}", "certificates", arr));
	} else {
		printf("%-7s %-12s %-20s %-21s %s\n", "SERIAL", "ROLE", "NAME",
		       "NOT AFTER", "REVOKED");
		for (size_t i = 0; i < n; i++) {
			ctl_iso_time((uint64_t)v[i].not_after * 1000, when,
				     sizeof(when));
			ctl_iso_time((uint64_t)v[i].revoked * 1000, gone,
				     sizeof(gone));
			printf("%-7" PRIu64 " %-12s %-20s %-21s %s\n",
			       v[i].serial, cell_role_name(v[i].role),
			       v[i].name, when, v[i].revoked ? gone : "-");
		}
	}
	free(v);
	return CA_OK;
}

int ctl_ca_main(const struct ctl_opts *o, bool json, char **args, int nargs)
{
	const char *verb = nargs > 0 ? args[0] : "";
	int want = !strcmp(verb, "revoke") ? 3 : 2;

	if (strcmp(verb, "init") && strcmp(verb, "issue") &&
	    strcmp(verb, "revoke") && strcmp(verb, "list")) {
		fprintf(stderr,
			"cellctl: ca %s: unknown; the ca commands are "
			"init, issue, revoke and list (see cellctl "
			"--help)\n",
			verb);
		return CA_USAGE;
	}
	if (nargs != want) {
		fprintf(stderr,
			"cellctl: ca %s takes %s; usage: cellctl ca %s %s\n",
			verb,
			nargs < want ? "more arguments" : "fewer arguments",
			verb, want == 3 ? "DIR SERIAL" : "DIR [OPTIONS]");
		return CA_USAGE;
	}
	if (o->dry_run || o->start || o->follow || o->nguest) {
		fprintf(stderr,
			"cellctl: ca %s takes none of --dry-run, "
			"--start, --follow, --\n",
			verb);
		return CA_USAGE;
	}
	if (!strcmp(verb, "init"))
		return ca_init(o, json, args[1]);
	if (!strcmp(verb, "issue"))
		return ca_issue(o, json, args[1]);
	if (!strcmp(verb, "revoke"))
		return ca_revoke(o, json, args[1], args[2]);
	return ca_list(o, json, args[1]);
}
