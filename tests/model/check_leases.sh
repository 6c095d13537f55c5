#!/bin/sh
# Model check of the lease rule (docs/model/leases.pml) with spin: the rule
# as built must hold in every run of the model ("errors: 0"), at the
# model's own times and at the defaults' proportions, and each of three
# deliberately broken rules must be caught ("errors: 1" or more), so the
# check is shown to be able to fail. Exit 77 (ctest: skipped) without spin
# (Debian's spin; deploy/install-deps installs it).
#
#   tests/model/check_leases.sh MODEL WORKDIR
set -eu
model=$1
work=$2
if ! command -v spin >/dev/null 2>&1; then
	echo "SKIP: spin is not installed (Debian package spin; deploy/install-deps installs it)"
	exit 77
fi
mkdir -p "$work"
cd "$work"
fails=0

# run NAME EXPECT DEFINES...: EXPECT is "holds" or "caught".
run() {
	name=$1
	expect=$2
	shift 2
	rm -f pan pan.* ./*.trail
	spin -a "$@" "$model" >spin.out 2>&1 || { cat spin.out; exit 1; }
	cc -O2 -w -DSAFETY -DNOREDUCE -o pan pan.c
	./pan -m200000 >pan.out 2>&1 || true
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | head -n 1)
	states=$(sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' pan.out | head -n 1)
	if [ -z "$errors" ]; then
		echo "FAIL $name: no verdict from pan"
		cat pan.out
		fails=$((fails + 1))
		return
	fi
	if [ "$expect" = holds ] && [ "$errors" -eq 0 ]; then
		echo "ok   $name: holds ($states states)"
	elif [ "$expect" = caught ] && [ "$errors" -gt 0 ]; then
		echo "ok   $name: the broken rule is caught ($errors error, $(grep -m1 'assertion violated' pan.out | cut -c1-60)...)"
	else
		echo "FAIL $name: expected it to be $expect, pan says errors: $errors"
		fails=$((fails + 1))
	fi
}

run "rule as built" holds
run "rule as built, defaults' proportions" holds -DL=4 -DP=2 -DDOWNT=6
run "vouching for whoever asks" caught -DBROKEN_VOUCH
run "down on one acknowledgement" caught -DBROKEN_QUORUM
run "no wait after the acknowledgements" caught -DBROKEN_NOWAIT
if [ "$fails" -ne 0 ]; then
	echo "$fails model check(s) failed"
	exit 1
fi
echo "model checks: 5 passed, 0 failed"
