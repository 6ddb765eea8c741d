#!/bin/sh
# SIGINT, SIGTERM and SIGHUP in the middle of a 16-unit espfleet flash
# (realistic profile, every unit writing): every job cancels within its
# deadline, each port says where it stopped, and the exit status is
# 128 + the signal (130, 143, 129).
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
UNITS=16
# The longest a cancelled job may take to stop: one FLASH_DEFL_DATA block
# in flight runs into esptool's DEFAULT_TIMEOUT (3 s) at worst; plus 2 s
# for thread joins and the summary on a slow sanitizer build.
CANCEL_MS=5000

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-sig.XXXXXX") || exit 1
pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
# Unit records go to the temporary directory, never to $HOME.
XDG_STATE_HOME="$tmp/state"
export XDG_STATE_HOME
trap 'exit 1' INT TERM


# wait_n FILE REGEX COUNT TENTHS: poll until the lines of FILE that match
# come from COUNT different ports (first words).
wait_n() {
	n=0
	while [ "$(grep -E "$2" "$1" 2>/dev/null | awk '{ print $1 }' |
	    sort -u | wc -l)" -lt "$3" ]; do
		n=$((n + 1))
		[ "$n" -gt "$4" ] && return 1
		sleep 0.1	# polling interval, not a wait for an event
	done
	return 0
}

mkdir -p "$tmp/u"
"$SIM" --units $UNITS --dir "$tmp/u" --profile realistic \
    >"$tmp/sim.out" 2>"$tmp/sim.err" &
pids="$pids $!"
wait_n "$tmp/sim.out" '^ready' 1 300 || { echo "Bail out! no sim"; exit 1; }
# 512 KiB that does not compress: about 17 s of writing per unit.
random_data 524288 >"$tmp/data.bin"
ports=""
k=0
while [ $k -lt $UNITS ]; do
	ports="$ports --port $tmp/u/tty$k"
	k=$((k + 1))
done
haslog=0
"$ESPF" flash --log "$tmp/x.log" --help >/dev/null 2>&1 && haslog=1
[ $haslog = 1 ] || diag "espfleet flash has no --log: no records to check"

for sig in INT TERM HUP; do
	case $sig in
	INT) want=130;;
	TERM) want=143;;
	HUP) want=129;;
	esac
	log=""
	[ $haslog = 1 ] && log="--log $tmp/$sig.log"
	"$ESPF" flash $ports $log --after stay 0x10000 "$tmp/data.bin" \
	    >"$tmp/$sig.out" 2>&1 &
	fpid=$!
	pids="$pids $fpid"
	# Every unit past its first few per cent of writing.
	if ! wait_n "$tmp/$sig.out" '^tty[0-9]+: writing +[1-9][0-9]? %' \
	    $UNITS 600; then
		diag "not every unit got to writing:"
		tail -n 20 "$tmp/$sig.out" | sed 's/^/#   /'
	fi
	t0=$(date +%s%N)
	kill -$sig $fpid
	wait $fpid
	rc=$?
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	sed -n '/^$/,$p' "$tmp/$sig.out" >"$tmp/$sig.sum"
	diag "SIG$sig: exit $rc after $ms ms; $(tail -n 1 "$tmp/$sig.sum")"
	head -n 3 "$tmp/$sig.sum" | sed 's/^/#   /'
	[ $ms -lt $CANCEL_MS ]
	ok $? "SIG$sig: every job stopped within $CANCEL_MS ms ($ms ms)"
	[ $rc -eq $want ]
	st=$?
	ok $st "SIG$sig: exit $want (got $rc)"
	n=$(grep -c -E '^tty[0-9]+: cancelled while [a-z]+' "$tmp/$sig.sum")
	[ "$n" -eq $UNITS ]
	ok $? "SIG$sig: every port says where it stopped ($n of $UNITS)"
	re='^tty[0-9]+: cancelled while writing at 0x[0-9a-f]+ \([0-9]+ %\)$'
	n=$(grep -c -E "$re" "$tmp/$sig.sum")
	[ "$n" -eq $UNITS ]
	ok $? "SIG$sig: each gives the address and percent ($n of $UNITS)"
	grep -q "^0 verified, 0 failed, $UNITS cancelled\$" "$tmp/$sig.sum"
	ok $? "SIG$sig: the totals count $UNITS cancelled"
	if [ $haslog = 1 ]; then
		# One JSON record per line; count the ports interrupted.
		n=$(grep -o '"result":"interrupted","port":"[^"]*"' \
		    "$tmp/$sig.log" 2>/dev/null | sort -u | wc -l)
		[ "$n" -eq $UNITS ]
		ok $? "SIG$sig: an interrupted record per unit ($n of $UNITS)"
	fi
done

done_testing
