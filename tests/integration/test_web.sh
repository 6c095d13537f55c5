#!/bin/sh
# The manager's web view over a quickstart cell of its own (run
# directory, ports), checked by web_check.py:
#   test_web.sh SOURCE-DIR BUILD-DIR api       the JSON API against
#       cellctl, writes refused, malformed and random requests;
#   test_web.sh SOURCE-DIR BUILD-DIR browser   the page in headless
#       Chromium against cellctl, the heat map of a running VM; exits 77
#       (ctest: skipped) where Chromium or selenium is not installed.
# The screenshots stay in BUILD-DIR/tests/output/. Everything the test
# starts is stopped on exit, pass or fail.
set -eu
src=$1
build=$2
mode=$3
qs="$src/deploy/quickstart"
run=$(mktemp -d /tmp/cellmon-web.XXXXXX)
out="$build/tests/output"
# fixed ports below the kernel's ephemeral range, apart from
# test_quickstart's (20000-28000)
base=$((28000 + ($$ % 500) * 8))
export CELLMON_RUN_DIR="$run" CELLMON_BUILD_DIR="$build" CELLMON_NO_BUILD=1
export CELLMON_AGENT_PORT=$base CELLMON_CTL_PORT=$((base + 1))
export CELLMON_NBD_PORT=$((base + 2)) CELLMON_VDISK_ADMIN_PORT=$((base + 3))
export CELLMON_METRICS_PORT=$((base + 4)) CELLMON_WEB_PORT=$((base + 5))

cleanup() {
	"$qs" down >/dev/null 2>&1 || true
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ "$mode" = browser ]; then
	# skip before starting anything when the browser is missing
	/usr/bin/python3 -c 'import selenium' 2>/dev/null || {
		echo "SKIP: python3-selenium is not installed (deploy/install-deps installs it when the archive can be reached)"
		exit 77
	}
	for exe in /usr/bin/chromium /usr/bin/chromedriver; do
		[ -x "$exe" ] || {
			echo "SKIP: $exe is not installed (Debian's chromium and chromium-driver)"
			exit 77
		}
	done
fi

"$qs" >"$run/qs.out" 2>&1 || {
	cat "$run/qs.out"
	echo "FAIL: the quickstart failed"
	exit 1
}
# cellctl (web_check.py's) with the admin certificate the quickstart made
export CELLMON_CA="$run/ca/ca.crt"
export CELLMON_CERT="$run/ca/certs/admin-quickstart.crt"
export CELLMON_KEY="$run/ca/certs/admin-quickstart.key"
url=$(sed -n 's/^web: \(http:[^ ]*\) .*/\1/p' "$run/qs.out")
[ "$url" = "http://127.0.0.1:$CELLMON_WEB_PORT/" ] || {
	cat "$run/qs.out"
	echo "FAIL: the quickstart printed no web URL (or another: '$url')"
	exit 1
}
mkdir -p "$out"
rc=0
/usr/bin/python3 "$src/tests/integration/web_check.py" "$mode" "$url" \
	$([ "$mode" = browser ] && echo "$out") \
	"$build/cell-manager/cellctl" --manager=127.0.0.1:"$CELLMON_CTL_PORT" || rc=$?
exit $rc
