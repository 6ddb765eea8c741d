#!/bin/sh
# Ports are locked for the whole job: a second espfleet on a port that a
# first one is writing fails at once, saying the port is in use and by
# whom, and the first still verifies; flock(1) or a plain reader (cat)
# holding the port is refused the same way.
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-lock.XXXXXX") || exit 1
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

# wait_for FILE REGEX TENTHS: poll until FILE matches, up to TENTHS/10 s.
wait_for() {
	n=0
	while ! grep -q -E "$2" "$1" 2>/dev/null; do
		n=$((n + 1))
		[ "$n" -gt "$3" ] && return 1
		sleep 0.1	# polling interval, not a wait for an event
	done
	return 0
}

# Realistic timing, so that the first flash of 128 KiB takes seconds.
mkdir -p "$tmp/u"
"$SIM" --units 3 --dir "$tmp/u" --profile realistic >"$tmp/sim.out" \
    2>"$tmp/sim.err" &
pids="$pids $!"
wait_for "$tmp/sim.out" '^ready' 300 || { echo "Bail out! no sim"; exit 1; }
random_data 131072 >"$tmp/data.bin"

# now_ms: the monotonic-enough wall clock in ms.
now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# 1: espfleet against espfleet.
"$ESPF" flash --port "$tmp/u/tty0" --after stay 0x10000 "$tmp/data.bin" \
    >"$tmp/a.out" 2>&1 &
apid=$!
pids="$pids $apid"
wait_for "$tmp/a.out" '^tty0: (erasing|writing)' 300
ok $? "the first espfleet (pid $apid) is writing tty0"
t0=$(now_ms)
"$ESPF" flash --port "$tmp/u/tty0" --after stay 0x10000 "$tmp/data.bin" \
    >"$tmp/b.out" 2>&1
rc=$?
t1=$(now_ms)
sed -n '/^$/,$p' "$tmp/b.out" | sed 's/^/#   second: /'
[ $rc -ne 0 ] && [ $rc -lt 128 ]
ok $? "the second espfleet fails (exit $rc)"
[ $((t1 - t0)) -lt 2000 ]
ok $? "... at once ($((t1 - t0)) ms)"
grep -q -E "tty0.*(in use|busy).*pid $apid" "$tmp/b.out"
ok $? "... saying tty0 is in use, naming the holder (pid $apid)"
grep -q '^tty0: verified' "$tmp/b.out"
[ $? -ne 0 ]
ok $? "... and does not claim tty0 verified"
wait $apid
rc=$?
ok $rc "the first espfleet still verifies (exit $rc)"
grep -q '^tty0: verified' "$tmp/a.out"
ok $? "... tty0: verified"
cmp -s -i 65536:0 -n 131072 "$tmp/u/flash0.bin" "$tmp/data.bin"
ok $? "... and flash0.bin holds the image"

# 2: flock(1) holding tty1.
if flock --help 2>&1 | grep -q -e --no-fork; then
	flock -n --no-fork "$tmp/u/tty1" sleep 60 &
	fpid=$!
	pids="$pids $fpid"
	n=0
	while ! grep -q "FLOCK .* $fpid " /proc/locks && [ $n -lt 50 ]; do
		n=$((n + 1))
		sleep 0.1	# until flock(1) holds the lock
	done
	t0=$(now_ms)
	"$ESPF" flash --port "$tmp/u/tty1" --after stay 0x10000 \
	    "$tmp/data.bin" >"$tmp/c.out" 2>&1
	rc=$?
	t1=$(now_ms)
	sed -n '/^$/,$p' "$tmp/c.out" | sed 's/^/#   vs flock: /'
	[ $rc -ne 0 ] && [ $rc -lt 128 ] && [ $((t1 - t0)) -lt 2000 ]
	ok $? "espfleet vs flock(1): fails at once (exit $rc, $((t1 - t0)) ms)"
	grep -q -E "tty1.*(in use|busy).*pid $fpid" "$tmp/c.out"
	ok $? "... naming flock's pid $fpid"
	kill $fpid 2>/dev/null
	wait $fpid 2>/dev/null
else
	diag "flock(1) with --no-fork missing: skipped"
fi

# 3: cat(1) reading tty2, no lock at all.
cat "$tmp/u/tty2" >/dev/null &
cpid=$!
pids="$pids $cpid"
n=0
while ! ls -l /proc/$cpid/fd 2>/dev/null | grep -q /dev/pts && [ $n -lt 50 ]
do
	n=$((n + 1))
	sleep 0.1	# until cat has the pty open
done
"$ESPF" flash --port "$tmp/u/tty2" --after stay 0x10000 "$tmp/data.bin" \
    >"$tmp/d.out" 2>&1
rc=$?
sed -n '/^$/,$p' "$tmp/d.out" | sed 's/^/#   vs cat: /'
[ $rc -ne 0 ] && [ $rc -lt 128 ] &&
    grep -q -E "tty2.*(in use|busy).*($cpid|cat)" "$tmp/d.out"
ok $? "espfleet vs cat(1) holding tty2: refused, naming cat"
kill $cpid 2>/dev/null
wait $cpid 2>/dev/null

done_testing
