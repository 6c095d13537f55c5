#!/usr/bin/python3
"""Parses a Prometheus text exposition (stdin) with the Prometheus
Python client's parser (Debian's python3-prometheus-client) and checks
cellmon's conventions on top: every family has HELP and TYPE, names are
cellmon_ and snake case, counters end in _total, no series repeats, and
a histogram's buckets never decrease. Prints the samples as JSON, one
object: {"families": {name: type}, "samples": [[name, {labels}, value]]};
exits 1 with the reason on stderr when the text is not valid."""
import json
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

NAME = re.compile(r"^cellmon_[a-z0-9_]+$")


def fail(msg):
    sys.stderr.write("parse_metrics: %s\n" % msg)
    sys.exit(1)


def main():
    text = sys.stdin.read()
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, typ in types.items():
        if name not in helps:
            fail("%s has a TYPE but no HELP" % name)
        if not NAME.match(name):
            fail("%s: not a cellmon_ snake_case name" % name)
        if typ == "counter" and not name.endswith("_total"):
            fail("counter %s does not end in _total" % name)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        fail("the Prometheus parser refused it: %s" % e)
    out = {"families": {}, "samples": []}
    seen = set()
    for f in families:
        out["families"][f.name] = f.type
        last = {}
        for s in f.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in seen:
                fail("series %s%s appears twice" % (s.name, s.labels))
            seen.add(key)
            if s.name.endswith("_bucket"):
                rest = tuple(sorted((k, v) for k, v in s.labels.items()
                                    if k != "le"))
                if s.value < last.get(rest, 0):
                    fail("%s%s: a bucket below the one before"
                         % (s.name, s.labels))
                last[rest] = s.value
            out["samples"].append([s.name, s.labels, s.value])
    if not out["samples"]:
        fail("no samples")
    json.dump(out, sys.stdout)


main()
