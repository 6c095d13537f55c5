#!/bin/sh
# A cell with mutual TLS on its RPC and DSM links (issue 21): the CA from
# cellctl ca, a disk server, a manager and three agents each with its
# own certificate, on loopback. Checks:
#  - an admin runs the cell (cells, disks through the manager to the
#    disk server, a VM spanning the nodes, its memory over TLS DSM
#    links) and is named in the event log;
#  - a viewer reads and is refused a write (exit 7, saying so);
#  - refused at the handshake, each with its reason and exit 7: a node
#    certificate used as cellctl's, another CA's admin, a revoked admin
#    (after the manager re-reads the CRL on SIGHUP); a plain client gets
#    nothing (exit 3);
#  - an agent whose certificate is another node's does not start, and
#    one that skips that check (fault point agent.tls-impostor) is
#    refused by the manager and never becomes a node;
#  - daemons whose certificate is of the wrong role refuse to start, and
#    one without TLS refuses too unless told insecure = true.
# Everything it starts is stopped on exit, pass or fail.
#
#   tests/integration/test_tls_cell.sh BUILD-DIR
set -eu
build=$(cd "$1" && pwd)
run=$(mktemp -d /tmp/cellmon-tls.XXXXXX)
ctl0="$build/cell-manager/cellctl"
pids=""

cleanup() {
	for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*" >&2
	for f in "$run"/*.log; do
		echo "--- $f"
		tail -n 20 "$f"
	done
	exit 1
}

# tls NAME: the daemon options for the certificate certs/NAME.{crt,key}
tls() {
	echo "--tls-ca=$run/ca/ca.crt --tls-cert=$run/ca/certs/$1.crt" \
		"--tls-key=$run/ca/certs/$1.key --tls-crl=$run/ca/crl.pem"
}

# ctl NAME ARGS...: cellctl with certificate NAME (of DIR ca unless
# NAME is other/...), exit code kept in $rc, output in $run/out
ctl() {
	d=$run/ca
	n=$1
	case $n in other/*) d=$run/other n=${n#other/} ;; esac
	shift
	rc=0
	"$ctl0" --manager="$mgr_ctl" --ca="$run/ca/ca.crt" \
		--cert="$d/certs/$n.crt" --key="$d/certs/$n.key" "$@" \
		>"$run/out" 2>&1 || rc=$?
}

addr_of() { # FILE KEY: KEY=VALUE from an addr file, waiting for it
	i=0
	until [ -s "$1" ] && grep -q "^$2=" "$1"; do
		i=$((i + 1))
		[ $i -lt 100 ] || fail "no $2 in $1"
		sleep 0.05
	done
	sed -n "s/^$2=//p" "$1"
}

echo "== the CA"
$ctl0 ca init "$run/ca" --cell=tls >/dev/null
$ctl0 ca init "$run/other" --cell=tls >/dev/null
$ctl0 ca issue "$run/ca" --role=manager --name=mgr --san=IP:127.0.0.1 >/dev/null
$ctl0 ca issue "$run/ca" --disk-server=vdiskd --san=IP:127.0.0.1 >/dev/null
for n in node1 node2 node3; do $ctl0 ca issue "$run/ca" --node=$n >/dev/null; done
$ctl0 ca issue "$run/ca" --admin=alice >/dev/null
$ctl0 ca issue "$run/ca" --admin=bob >/dev/null
$ctl0 ca issue "$run/ca" --viewer=val >/dev/null
$ctl0 ca issue "$run/other" --admin=eve >/dev/null

echo "== wrong roles refuse to start"
rc=0
# shellcheck disable=SC2046
timeout 10 "$build/vdisk/cellmon-vdiskd" --store="$run/x" --listen=127.0.0.1:0 \
	--admin-listen=127.0.0.1:0 $(tls node-node1) >"$run/x.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "not a disk server's" "$run/x.log" ||
	fail "vdiskd started with a node certificate (rc $rc)"
rc=0
# shellcheck disable=SC2046
timeout 10 "$build/cell-manager/cellmon-manager" --state-dir="$run/y" \
	--agent-listen=127.0.0.1:0 --ctl-listen=127.0.0.1:0 \
	$(tls admin-alice) >"$run/y.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "not a manager's" "$run/y.log" ||
	fail "the manager started with an admin certificate (rc $rc)"
rc=0
timeout 10 "$build/cell-manager/cellmon-manager" --state-dir="$run/z" \
	--agent-listen=127.0.0.1:0 --ctl-listen=127.0.0.1:0 \
	>"$run/z.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "no TLS configured" "$run/z.log" ||
	fail "the manager started without TLS and without insecure = true (rc $rc)"
rm -f "$run"/x.log "$run"/y.log "$run"/z.log

echo "== a TLS cell"
mkdir -p "$run/store" "$run/mgr"
# shellcheck disable=SC2046
setsid "$build/vdisk/cellmon-vdiskd" --store="$run/store" --listen=127.0.0.1:0 \
	--admin-listen=127.0.0.1:0 --nbd-tls=required $(tls disk-server-vdiskd) \
	>"$run/vdiskd.log" 2>&1 </dev/null &
pids="$pids $!"
vadmin=$(addr_of "$run/store/vdiskd.addr" admin)
# shellcheck disable=SC2046
setsid "$build/cell-manager/cellmon-manager" --state-dir="$run/mgr" \
	--agent-listen=127.0.0.1:0 --ctl-listen=127.0.0.1:0 \
	--vdiskd="$vadmin" \
	$(tls manager-mgr) >"$run/manager.log" 2>&1 </dev/null &
mgr_pid=$!
pids="$pids $mgr_pid"
mgr_agent=$(addr_of "$run/mgr/manager.addr" agent)
mgr_ctl=$(addr_of "$run/mgr/manager.addr" ctl)
grep -q "TLS 1.3 for agents" "$run/manager.log" || fail "the manager does not say TLS"
for i in 1 2 3; do
	mkdir -p "$run/a$i"
	# shellcheck disable=SC2046
	setsid "$build/node-agent/cellmon-agent" --node-id=node$i \
		--manager="$mgr_agent" --state-dir="$run/a$i" \
		--dsm-listen=127.0.0.1:0 --image-dir="$build/guest/images" \
		$(tls node-node$i) >"$run/agent$i.log" 2>&1 </dev/null &
	pids="$pids $!"
done
i=0
while :; do
	ctl admin-alice -o json node list
	[ "$(grep -c '"state": "up"' "$run/out")" -eq 3 ] &&
		[ "$(grep -c '"dsm_addr": "[^"]' "$run/out")" -eq 3 ] && break
	i=$((i + 1))
	[ $i -lt 100 ] || fail "3 nodes not up over TLS: $(cat "$run/out")"
	sleep 0.1
done
echo "ok 3 agents registered over TLS"

echo "== an admin runs the cell"
ctl admin-alice cell create c1
[ $rc -eq 0 ] || fail "admin cell create: $rc $(cat "$run/out")"
for n in node1 node2 node3; do ctl admin-alice cell add-node c1 $n; done
ctl admin-alice disk create d1 16M
[ $rc -eq 0 ] || fail "admin disk create (manager -> vdiskd over TLS): $(cat "$run/out")"
ctl admin-alice vm create j --cell=c1 --image=spmd --vcpus=3 --memory=4M \
	--placement=spread --start -- 64 10
[ $rc -eq 0 ] || fail "admin vm create: $(cat "$run/out")"
i=0
until ctl admin-alice -o json vm info j &&
	grep -q '"state": "\(stopped\|failed\)"' "$run/out"; do
	i=$((i + 1))
	[ $i -lt 200 ] || fail "the VM did not stop: $(cat "$run/out")"
	sleep 0.1
done
grep -q '"state": "stopped"' "$run/out" || fail "the VM failed: $(cat "$run/out")"
ctl admin-alice vm console j
grep -q "checksum=" "$run/out" || fail "no checksum from the VM: $(cat "$run/out")"
# its memory crossed DSM links that were TLS too, each end named
cat "$run"/agent[123].log >"$run/agents"
grep -q "dsm: node [0-9]*: connected to node [0-9]* at .*(TLS 1.3, certificate of 'node[123]'" "$run/agents" ||
	fail "no DSM link dialed with TLS"
grep -q "dsm: node [0-9]*: node [0-9]* connected (TLS 1.3, certificate of 'node[123]'" "$run/agents" ||
	fail "no DSM link accepted with TLS"
grep -q "dsm: node [0-9]*: connected to node [0-9]* at [^ ]*\$" "$run/agents" &&
	fail "a plain DSM link in a TLS cell"
ctl admin-alice events
grep -q "cell create c1 by admin alice" "$run/out" ||
	fail "the event log does not name the admin: $(cat "$run/out")"
echo "ok an admin created a cell, a disk and a VM over 3 nodes; the log names her"

echo "== a viewer reads, and may not write"
ctl viewer-val node list
[ $rc -eq 0 ] || fail "viewer node list: $rc $(cat "$run/out")"
ctl viewer-val vm delete j
[ $rc -eq 7 ] && grep -q "viewer 'val' may only read" "$run/out" ||
	fail "viewer vm delete: exit $rc, $(cat "$run/out")"
ctl admin-alice vm info j
[ $rc -eq 0 ] || fail "the viewer's refused delete deleted the VM"
ctl admin-alice events
grep -q "vm delete j by viewer val.*refused" "$run/out" ||
	fail "the refused write is not in the event log: $(cat "$run/out")"
echo "ok a viewer's write refused (exit 7) and logged; the VM is still there"

echo "== strangers"
ctl node-node1 node list
[ $rc -eq 7 ] && grep -q "a node certificate ('node1') has no business" "$run/out" ||
	fail "a node certificate as cellctl's: exit $rc, $(cat "$run/out")"
ctl other/admin-eve node list
[ $rc -eq 7 ] && grep -q "not signed by this cell's CA" "$run/out" ||
	fail "another CA's admin: exit $rc, $(cat "$run/out")"
rc=0
"$ctl0" --manager="$mgr_ctl" node list >"$run/out" 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "a plain client: exit $rc, $(cat "$run/out")"
ctl admin-bob node list
[ $rc -eq 0 ] || fail "bob before his revocation: $rc $(cat "$run/out")"
serial=$($ctl0 -o json ca list "$run/ca" | grep -B2 '"name": "bob"' |
	sed -n 's/.*"serial": \([0-9]*\).*/\1/p')
$ctl0 ca revoke "$run/ca" "$serial" >/dev/null
kill -HUP "$mgr_pid"
i=0
while :; do
	ctl admin-bob node list
	[ $rc -eq 7 ] && break
	i=$((i + 1))
	[ $i -lt 50 ] || fail "revoked bob still gets in: exit $rc, $(cat "$run/out")"
	sleep 0.1
done
grep -q "certificate revoked" "$run/out" || fail "no reason for bob: $(cat "$run/out")"
grep -q "SIGHUP: TLS certificate, key and CRL re-read" "$run/manager.log" ||
	fail "the manager did not log the reload"
grep -q "refused a TLS peer" "$run/manager.log" ||
	fail "the manager did not log the refusals"
ctl admin-alice node list
[ $rc -eq 0 ] || fail "alice after the reload: $rc"
echo "ok node-as-admin, another CA, a plain client and (after SIGHUP) a revoked admin refused"

echo "== NBD with STARTTLS (qemu-io, qemu-img, nbdinfo as clients)"
nbd=$(addr_of "$run/store/vdiskd.addr" nbd)
host=${nbd%:*}
port=${nbd##*:}
# GnuTLS's file names, in a directory per client
for who in admin-alice viewer-val; do
	mkdir -p "$run/x509-$who"
	cp "$run/ca/ca.crt" "$run/x509-$who/ca-cert.pem"
	cp "$run/ca/certs/$who.crt" "$run/x509-$who/client-cert.pem"
	cp "$run/ca/certs/$who.key" "$run/x509-$who/client-key.pem"
done
qio() { # WHO ARGS...: qemu-io on disk d1 over NBD with TLS
	w=$1
	shift
	qemu-io --object tls-creds-x509,id=t0,endpoint=client,dir="$run/x509-$w" \
		--image-opts "driver=nbd,server.type=inet,server.host=$host,server.port=$port,export=d1,tls-creds=t0" \
		"$@"
}
qio admin-alice -c 'write -P 0x6b 0 1M' -c 'flush' -c 'read -P 0x6b 0 1M' \
	>"$run/out" 2>&1 || fail "qemu-io over TLS: $(cat "$run/out")"
qemu-img info --object tls-creds-x509,id=t0,endpoint=client,dir="$run/x509-admin-alice" \
	--image-opts "driver=nbd,server.type=inet,server.host=$host,server.port=$port,export=d1,tls-creds=t0" \
	>"$run/out" 2>&1 || fail "qemu-img info over TLS: $(cat "$run/out")"
grep -q "virtual size: 16 MiB" "$run/out" || fail "qemu-img info: $(cat "$run/out")"
nbdinfo "nbds://$host:$port/d1?tls-certificates=$run/x509-admin-alice" \
	>"$run/out" 2>&1 || fail "nbdinfo over TLS: $(cat "$run/out")"
grep -q "export-size: 16777216" "$run/out" || fail "nbdinfo: $(cat "$run/out")"
if qio viewer-val -c 'read 0 4k' >"$run/out" 2>&1; then
	fail "a viewer's certificate read the disk over NBD"
fi
grep -q "has no business" "$run/out" || fail "no reason for the viewer: $(cat "$run/out")"
grep -q "TLS 1.3 on the admin link as disk server 'vdiskd'; NBD STARTTLS required" \
	"$run/vdiskd.log" || fail "vdiskd does not say it requires STARTTLS"
# this disk server requires TLS: a plain client is told so
if qemu-io -f raw -c 'read 0 4k' "nbd://$nbd/d1" >"$run/out" 2>&1; then
	fail "a plain client read from a server that requires TLS"
fi
grep -qi "TLS" "$run/out" || fail "the plain client was not told TLS: $(cat "$run/out")"
# and the agents reach their disks through it: a VM checks what
# qemu-io wrote (0x6b over the first MiB) by writing its own pattern
# and reading it back
ctl admin-alice vm create dio --cell=c1 --image=diskio --memory=8M \
	--node=node2 --disk=d1 --start -- write 0 7
[ $rc -eq 0 ] || fail "a VM with a disk: $(cat "$run/out")"
i=0
until ctl admin-alice -o json vm info dio &&
	grep -q '"state": "\(stopped\|failed\)"' "$run/out"; do
	i=$((i + 1))
	[ $i -lt 200 ] || fail "the disk VM did not end: $(cat "$run/out")"
	sleep 0.1
done
grep -q '"state": "stopped"' "$run/out" || fail "the disk VM failed: $(cat "$run/out")"
ctl admin-alice vm console dio
grep -q "diskio: disk=0 bytes=16777216 checksum=" "$run/out" ||
	fail "the disk VM wrote nothing: $(cat "$run/out")"
grep -q "with TLS" "$run/agent2.log" && fail "agent2 could not open its disk over TLS"
echo "ok qemu-io wrote and read, qemu-img and nbdinfo saw the disk over NBD+TLS; a viewer and a plain client refused; a VM on node2 wrote its disk through the agent's NBD+TLS client"

echo "== impostor agents"
mkdir -p "$run/a4" "$run/a5"
rc=0
# shellcheck disable=SC2046
timeout 10 "$build/node-agent/cellmon-agent" --node-id=node9 \
	--manager="$mgr_agent" --state-dir="$run/a4" --dsm-listen=127.0.0.1:0 \
	$(tls node-node2) >"$run/a4.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "not of node 'node9'" "$run/a4.log" ||
	fail "an agent started with another node's certificate (rc $rc)"
# shellcheck disable=SC2046
CELLMON_FAULT=agent.tls-impostor CELLMON_FAULT_ACTION=error \
	setsid "$build/node-agent/cellmon-agent" --node-id=node9 \
	--manager="$mgr_agent" --state-dir="$run/a5" --dsm-listen=127.0.0.1:0 \
	$(tls node-node2) >"$run/a5.log" 2>&1 </dev/null &
pids="$pids $!"
i=0
until grep -q "cannot speak for node 'node9'" "$run/manager.log"; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "the manager did not refuse the impostor"
	sleep 0.05
done
ctl admin-alice -o json node list
grep -q '"id": "node9"' "$run/out" && fail "the impostor became a node"
[ "$(grep -c '"state": "up"' "$run/out")" -eq 3 ] ||
	fail "the real nodes suffered: $(cat "$run/out")"
echo "ok an agent with node2's certificate claiming node9: refused by itself, and by the manager"
echo "PASS"
