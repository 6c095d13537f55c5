#!/bin/sh
# deploy/quickstart against what a user leaves running (issue 17):
#  1. a fresh run starts the cell and the demo VM's checksum matches;
#  2. a re-run over a cell the user changed (node3 in another cell, a VM
#     of theirs on node1 and node2) and a stale vdiskd pid file keeps every
#     daemon and the user's VM as they were, says why the demo cannot run
#     and exits 1;
#  3. after "down", a port held by a process that is not this cell's stops
#     the run, which stops what it had started itself and nothing else.
# Uses the build as it is (CELLMON_NO_BUILD=1), its own run directory and
# ports; everything it starts is stopped on exit, pass or fail.
#
#   tests/integration/test_quickstart.sh SOURCE-DIR BUILD-DIR
set -eu
src=$1
build=$2
qs="$src/deploy/quickstart"
run=$(mktemp -d /tmp/cellmon-qs.XXXXXX)
# fixed ports below the kernel's ephemeral range (32768-60999), so no
# outgoing connection of an earlier test holds one
base=$((20000 + ($$ % 1000) * 8))
export CELLMON_RUN_DIR="$run" CELLMON_BUILD_DIR="$build" CELLMON_NO_BUILD=1
export CELLMON_AGENT_PORT=$base CELLMON_CTL_PORT=$((base + 1))
export CELLMON_NBD_PORT=$((base + 2)) CELLMON_VDISK_ADMIN_PORT=$((base + 3))
export CELLMON_METRICS_PORT=$((base + 4))
ctl="$build/cell-manager/cellctl --manager=127.0.0.1:$CELLMON_CTL_PORT"
foreign=""

cleanup() {
	[ -n "$foreign" ] && kill -KILL "$foreign" 2>/dev/null
	"$qs" down >/dev/null 2>&1 || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*"
	exit 1
}

daemon_pids() {
	for n in vdiskd manager node1 node2 node3; do
		printf '%s=%s ' "$n" "$(cat "$run/$n/pid" 2>/dev/null)"
	done
}

vcpu_pids() {
	$ctl -o json vm info "$1" | sed -n 's/^ *"pid": \([0-9]*\).*/\1/p' |
		tr '\n' ' '
}

echo "== 1. a fresh quickstart"
"$qs" >"$run/out1" 2>&1 || {
	cat "$run/out1"
	fail "the first quickstart failed"
}
grep -q "equals the plain-process run's" "$run/out1" ||
	fail "no checksum line in: $(cat "$run/out1")"
# cellctl needs the admin certificate the quickstart made (TLS)
export CELLMON_CA="$run/ca/ca.crt"
export CELLMON_CERT="$run/ca/certs/admin-quickstart.crt"
export CELLMON_KEY="$run/ca/certs/admin-quickstart.key"
grep -q "the RPC links are mutual TLS" "$run/out1" ||
	fail "the quickstart does not say its links are TLS"
env -u CELLMON_CA -u CELLMON_CERT -u CELLMON_KEY \
	"$build/cell-manager/cellctl" --manager=127.0.0.1:"$CELLMON_CTL_PORT" \
	node list >"$run/plain" 2>&1 && fail "a plain cellctl got in: $(cat "$run/plain")"
# every daemon's /metrics is printed, answers and parses; the disk
# server's counts the demo's NBD reads and writes
[ "$(grep -c '^metrics: http://127.0.0.1:[0-9]*/metrics' "$run/out1")" -eq 5 ] ||
	fail "not 5 metrics URLs in: $(cat "$run/out1")"
for url in $(sed -n 's/^metrics: \(http:[^ ]*\).*/\1/p' "$run/out1"); do
	curl -sf "$url" >"$run/metrics" || fail "$url does not answer"
	/usr/bin/python3 "$src/tests/support/parse_metrics.py" <"$run/metrics" \
		>/dev/null || fail "$url: the exposition does not parse"
done
url=$(sed -n 's/^metrics: \(http:[^ ]*\) (vdiskd)/\1/p' "$run/out1")
for cmd in read write; do
	n=$(curl -sf "$url" |
		sed -n "s/^cellmon_nbd_requests_total{command=\"$cmd\"} //p")
	[ "${n:-0}" -gt 0 ] || fail "vdiskd counted no NBD ${cmd}s: '$n'"
done
before=$(daemon_pids)
echo "daemons: $before"

echo "== 2. a re-run over a cell the user changed"
$ctl cell create web >/dev/null
$ctl cell remove-node local node3 >/dev/null
$ctl cell add-node web node3 >/dev/null
$ctl vm create mine --cell=local --image=testguest --vcpus=2 --start \
	-- sleep 300 >/dev/null
mine=$(vcpu_pids mine)
echo "the user's VM 'mine' runs with pids: $mine"
[ "$(echo "$mine" | wc -w)" -eq 2 ] || fail "'mine' does not run 2 vCPUs"
echo 999999 >"$run/vdiskd/pid" # stale: no such process
rc=0
"$qs" >"$run/out2" 2>&1 || rc=$?
cat "$run/out2"
[ "$rc" -eq 1 ] || fail "the re-run exited $rc, not 1"
for n in vdiskd manager node1 node2 node3; do
	grep -q "$n already running" "$run/out2" ||
		fail "the re-run did not find $n running"
done
grep -q "no placement" "$run/out2" ||
	fail "the re-run did not say why the demo could not run"
grep -q "stopped\|stopping" "$run/out2" && fail "the re-run stopped something"
after=$(daemon_pids)
[ "$after" = "$before" ] ||
	fail "daemons changed: before $before, after $after"
[ "$(vcpu_pids mine)" = "$mine" ] ||
	fail "the user's VM changed: pids $mine, now $(vcpu_pids mine)"
$ctl -o json vm info mine | grep -q '"state": "running"' ||
	fail "the user's VM is no longer running"
$ctl vm info demo >/dev/null 2>&1 && fail "the demo VM that could not run is still recorded"
echo "daemons and the user's VM unchanged: $after"

echo "== 3. a port taken by a process that is not this cell's"
"$qs" down >/dev/null
# A manager of another run directory on this cell's control port.
mkdir -p "$run/other"
setsid "$build/cell-manager/cellmon-manager" --state-dir="$run/other" --insecure=true \
	--agent-listen=127.0.0.1:0 \
	--ctl-listen=127.0.0.1:"$CELLMON_CTL_PORT" \
	>"$run/other.log" 2>&1 </dev/null &
foreign=$!
i=0
until ss -Hltn "sport = :$CELLMON_CTL_PORT" | grep -q LISTEN; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "the other manager did not listen: $(cat "$run/other.log")"
	sleep 0.05
done
rc=0
"$qs" >"$run/out3" 2>&1 || rc=$?
cat "$run/out3"
[ "$rc" -eq 1 ] || fail "the run over a taken port exited $rc, not 1"
grep -q "port $CELLMON_CTL_PORT is taken by" "$run/out3" ||
	fail "the run did not name the taken port"
grep -q "stopped vdiskd" "$run/out3" ||
	fail "the run did not stop the vdiskd it started"
kill -0 "$foreign" 2>/dev/null || fail "the run stopped the other manager"
for n in vdiskd manager node1 node2 node3; do
	if [ -f "$run/$n/pid" ] && kill -0 "$(cat "$run/$n/pid")" 2>/dev/null; then
		fail "$n is still running after the failed run"
	fi
done
echo "PASS"
