#!/bin/sh
# espfleet flash against espfleet-sim: the real factory image at 0x0 and the
# OTA image at 0x10000 written to 8 emulated units in parallel and compared
# byte for byte; bad input writes nothing (exit 2); a faulty unit fails with
# a reason while the others verify (exit 1); busy ports; --json; Ctrl-C.
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
FW="${ESPF_SHARED:-$top_srcdir/../shared}/firmware"
FACTORY="$FW/factory-screek-humen-sensor-1u-20230704_1.bin"
OTA="$FW/ota-screek-humen-sensor-1u-20230704_1.bin"
FACTORY_LEN=994112
OTA_LEN=928576
FLASH_LEN=4194304

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-flash.XXXXXX") || exit 1
sims=""
cleanup() {
	for p in $sims; do
		kill "$p" 2>/dev/null
	done
	for p in $sims; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# wait_for FILE PATTERN TENTHS: poll until FILE matches, up to TENTHS/10 s.
wait_for() {
	n=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		n=$((n + 1))
		[ "$n" -gt "$3" ] && return 1
		sleep 0.1	# polling interval, not a wait for an event
	done
	return 0
}

# start_sim NAME ARGS...: units in $tmp/NAME; sets $simpid; 0 once "ready".
start_sim() {
	name=$1
	shift
	mkdir -p "$tmp/$name"
	"$SIM" --dir "$tmp/$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	simpid=$!
	sims="$sims $simpid"
	if ! wait_for "$tmp/$name.out" '^ready' 300; then
		diag "espfleet-sim did not get ready:"
		sed 's/^/#   /' "$tmp/$name.err"
		return 1
	fi
	return 0
}

# stop_sim: SIGTERM the last simulator and wait for it.
stop_sim() {
	kill "$simpid" 2>/dev/null
	wait "$simpid" 2>/dev/null
	rest=""
	for p in $sims; do
		[ "$p" != "$simpid" ] && rest="$rest $p"
	done
	sims=$rest
}

# ports NAME FIRST LAST: --port arguments for units FIRST..LAST.
ports() {
	k=$2
	out=""
	while [ "$k" -le "$3" ]; do
		out="$out --port $tmp/$1/tty$k"
		k=$((k + 1))
	done
	echo "$out"
}

# ff N FILE: N bytes of 0xFF.
ff() {
	head -c "$1" /dev/zero | tr '\000' '\377' >"$2"
}

# flash_is FLASHFILE OFFSET IMAGE LEN: the flash holds IMAGE at OFFSET.
flash_is() {
	cmp -s -i "$2:0" -n "$4" "$1" "$3"
}

# Checksums of every flashK.bin of a simulator, to prove nothing changed.
sums() {
	cksum "$tmp/$1"/flash*.bin 2>/dev/null
}

have_fw=1
if [ ! -r "$FACTORY" ] || [ ! -r "$OTA" ]; then
	have_fw=0
	diag "no firmware in $FW: the real-image runs are skipped"
fi

# A small generated image for the runs that need no real firmware.
head -c 65536 /dev/urandom >"$tmp/data.bin"
printf 'espfleet' | dd of="$tmp/data.bin" conv=notrunc 2>/dev/null

start_sim main --units 8 --profile fast
ok $? "espfleet-sim serves 8 fast units"

if [ "$have_fw" = 1 ]; then
	# 1: the factory image at 0x0 on all 8, staying in download mode.
	t0=$(date +%s%N)
	"$ESPF" flash $(ports main 0 7) --after stay "$FACTORY" \
	    >"$tmp/factory.out" 2>&1
	rc=$?
	t1=$(date +%s%N)
	ok $rc "factory image written to 8 units (exit $rc)"
	[ $rc -ne 0 ] && sed 's/^/#   /' "$tmp/factory.out"
	diag "wall time: $(((t1 - t0) / 1000000)) ms"
	grep -q '^8 verified, 0 failed$' "$tmp/factory.out"
	ok $? "the summary says 8 verified, 0 failed"
	n=$(grep -c '^tty[0-7]: verified (ESP32-S2' "$tmp/factory.out")
	[ "$n" -eq 8 ]
	ok $? "every port says verified ($n)"

	# 2: the OTA image at 0x10000 on the same 8, then reboot.
	"$ESPF" flash $(ports main 0 7) --boot-wait 1 0x10000 "$OTA" \
	    >"$tmp/ota.out" 2>&1
	rc=$?
	ok $rc "OTA image written at 0x10000 to the same 8 units (exit $rc)"
	[ $rc -ne 0 ] && sed 's/^/#   /' "$tmp/ota.out"
	stop_sim
	ff "$FLASH_LEN" "$tmp/ff.bin"
	tail_off=$((0x10000 + OTA_LEN))
	bad=""
	k=0
	while [ $k -le 7 ]; do
		f="$tmp/main/flash$k.bin"
		flash_is "$f" 0 "$FACTORY" 65536 &&
		    flash_is "$f" 65536 "$OTA" "$OTA_LEN" &&
		    cmp -s -i "$tail_off:$tail_off" "$f" "$tmp/ff.bin" ||
		    bad="$bad $k"
		k=$((k + 1))
	done
	[ -z "$bad" ]
	ok $? "each flashK.bin: factory head, OTA at 0x10000, 0xFF after \
(bad:${bad:- none})"
else
	stop_sim
fi

# The flasher stub from the esptool-js npm package: the same factory image
# to 8 fresh units, byte for byte, through the stub's protocol.
STUB="$top_srcdir/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher/esp32s2.json"
if [ "$have_fw" = 1 ] && [ -f "$STUB" ]; then
	start_sim stub --units 8 --profile fast
	"$ESPF" flash $(ports stub 0 7) --stub "$STUB" --json --after stay \
	    "$FACTORY" >"$tmp/stub.out" 2>&1
	rc=$?
	ok $rc "--stub: factory image written to 8 units (exit $rc)"
	[ $rc -ne 0 ] && sed 's/^/#   /' "$tmp/stub.out"
	n=$(grep -c '^{"event":"result",.*"status":"verified".*"loader":"stub"' \
	    "$tmp/stub.out")
	[ "$n" -eq 8 ]
	ok $? "... every unit was written by the stub ($n)"
	stop_sim
	bad=""
	k=0
	while [ $k -le 7 ]; do
		flash_is "$tmp/stub/flash$k.bin" 0 "$FACTORY" "$FACTORY_LEN" ||
		    bad="$bad $k"
		k=$((k + 1))
	done
	[ -z "$bad" ]
	ok $? "... each flashK.bin holds it byte for byte (bad:${bad:- none})"
	printf '{"text": "@@@", "text_start": 1, "entry": 2}' >"$tmp/bad.json"
	"$ESPF" flash --port "$tmp/stub/tty0" --stub "$tmp/bad.json" \
	    "$FACTORY" >"$tmp/stub2.out" 2>&1
	rc=$?
	[ $rc -eq 2 ] && grep -q 'not base64' "$tmp/stub2.out"
	ok $? "a broken stub file is exit 2 with the reason (got $rc)"
elif [ "$have_fw" = 1 ]; then
	diag "no esptool-js stub at $STUB (cd tests/interop && npm ci):" \
	    "the --stub runs are skipped"
fi

# Bad input: nothing is written, exit 2.
start_sim bad --units 2 --profile fast
"$ESPF" flash $(ports bad 0 1) "$tmp/missing.bin" >"$tmp/bad1.out" 2>&1
rc=$?
[ $rc -eq 2 ]
ok $? "a missing image is exit 2 (got $rc)"
grep -q 'missing.bin' "$tmp/bad1.out"
ok $? "... and the message names the file"
"$ESPF" flash $(ports bad 0 1) --port "$tmp/bad/tty9" 0x10000 \
    "$tmp/data.bin" >"$tmp/bad2.out" 2>&1
rc=$?
[ $rc -eq 2 ]
ok $? "a missing port is exit 2 (got $rc)"
grep -q 'tty9: no such port' "$tmp/bad2.out"
ok $? "... and the message names the port"
"$ESPF" flash $(ports bad 0 1) --port "$tmp/bad/tty0" 0x10000 \
    "$tmp/data.bin" >"$tmp/bad3.out" 2>&1
rc=$?
[ $rc -eq 2 ]
ok $? "the same port twice is exit 2 (got $rc)"
"$ESPF" flash $(ports bad 0 1) 0x10 "$tmp/data.bin" >"$tmp/bad4.out" 2>&1
rc=$?
[ $rc -eq 2 ]
ok $? "an unaligned offset is exit 2 (got $rc)"
"$ESPF" flash $(ports bad 0 1) --jobs x "$tmp/data.bin" \
    >"$tmp/bad5.out" 2>&1
rc=$?
[ $rc -eq 2 ]
ok $? "a bad --jobs is exit 2 (got $rc)"
stop_sim
ff "$FLASH_LEN" "$tmp/ff.bin"
cmp -s "$tmp/bad/flash0.bin" "$tmp/ff.bin" &&
    cmp -s "$tmp/bad/flash1.bin" "$tmp/ff.bin"
ok $? "no unit was written: both flashes still all 0xFF"

# A faulty unit fails with a reason while the others verify: exit 1.  Its
# flash flips a bit on every write: the MD5 retry (once) cannot help.
start_sim fault --units 4 --profile fast \
    --fault unit=3,kind=bitflip,at=1,count=1000
"$ESPF" flash $(ports fault 0 3) --after stay 0x10000 "$tmp/data.bin" \
    >"$tmp/fault.out" 2>&1
rc=$?
[ $rc -eq 1 ]
ok $? "one faulty unit makes the exit status 1 (got $rc)"
re='^tty3: failed: MD5 of flash does not match the image .*'
grep -q "$re (gave up after 2 attempts); the flash does not keep what is written: try another hub port or cable, else set the unit aside$" \
    "$tmp/fault.out"
ok $? "tty3 failed with the reason, after one more attempt, and what to do"
grep -q '^3 verified, 1 failed$' "$tmp/fault.out"
ok $? "the other 3 verified"

# A port held by another program is refused, naming the holder.
if command -v flock >/dev/null 2>&1 &&
    flock --help 2>&1 | grep -q -e --no-fork; then
	# --no-fork: the pid that locks is the pid that sleeps (and dies).
	flock -n --no-fork "$tmp/fault/tty1" sleep 30 &
	holder=$!
	n=0
	while ! grep -q "FLOCK .* $holder " /proc/locks && [ $n -lt 50 ]; do
		n=$((n + 1))
		sleep 0.1	# until flock(1) holds the lock
	done
	"$ESPF" flash --port "$tmp/fault/tty1" --after stay 0x10000 \
	    "$tmp/data.bin" >"$tmp/busy.out" 2>&1
	rc=$?
	grep -q "tty1 is in use by another program (pid $holder" \
	    "$tmp/busy.out"
	ok $? "a locked port fails as in use, naming pid $holder"
	[ $rc -eq 2 ]
	ok $? "... refused up front: exit 2 (got $rc)"
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
else
	diag "flock(1) with --no-fork missing: busy-port check skipped"
fi

# --json: one object per line, a result per port and a summary.
"$ESPF" flash $(ports fault 0 2) --json --after stay 0x10000 \
    "$tmp/data.bin" >"$tmp/json.out" 2>"$tmp/json.err"
rc=$?
ok $rc "--json run verifies 3 units (exit $rc)"
n=$(grep -c '^{"event":"result",.*"status":"verified"' "$tmp/json.out")
[ "$n" -eq 3 ]
ok $? "3 result events say verified ($n)"
grep -q '^{"event":"summary","verified":3,"failed":0,' "$tmp/json.out"
ok $? "a summary event with the counts"
[ -s "$tmp/json.out" ] && ! grep -qv '^{.*}$' "$tmp/json.out"
ok $? "every line is one JSON object"
if [ -n "$NODE" ] && [ -x "$NODE" ]; then
	"$NODE" -e '
	    const l = require("fs").readFileSync(process.argv[1], "utf8")
		.trim().split("\n");
	    for (const s of l) JSON.parse(s);' "$tmp/json.out"
	ok $? "node parses every line"
fi
stop_sim

# A unit pulled out mid-write, with no retries left: the reason says the
# unit left the bus and what to do (the unit itself may well be fine).
start_sim lost --units 1 --profile fast \
    --fault unit=0,kind=unplug,op=FLASH_DEFL_DATA,at=2
"$ESPF" flash $(ports lost 0 0) --retries 0 --after stay 0x10000 \
    "$tmp/data.bin" >"$tmp/lost.out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "^tty0: failed: .*; the unit left the bus after its write began: check its cable and hub port, plug it back in and flash it again$" \
    "$tmp/lost.out"
ok $? "a unit lost mid-write fails saying what to do (exit $rc)" ||
    sed 's/^/#   /' "$tmp/lost.out"
stop_sim

# Ctrl-C: every port says where it stopped; exit 130.
if [ "$have_fw" = 1 ]; then
	start_sim slow --units 2 --profile realistic
	"$ESPF" flash $(ports slow 0 1) "$FACTORY" >"$tmp/intr.out" 2>&1 &
	fpid=$!
	wait_for "$tmp/intr.out" '^tty[01]: writing' 600
	kill -INT $fpid
	wait $fpid
	rc=$?
	[ $rc -eq 130 ]
	ok $? "Ctrl-C exits 130 (got $rc)"
	# Summary lines: one per port, after the blank line.
	sed -n '/^$/,$p' "$tmp/intr.out" >"$tmp/intr.sum"
	n=$(grep -c '^tty[01]: cancelled while [a-z]*' "$tmp/intr.sum")
	[ "$n" -eq 2 ]
	ok $? "each port says where it stopped ($n of 2)"
	re='^tty[01]: cancelled while writing at 0x[0-9a-f]* ([0-9]* %)$'
	grep -q "$re" "$tmp/intr.sum"
	ok $? "a port that was writing gives the address and percent"
	grep -q '^0 verified, 0 failed, 2 cancelled$' "$tmp/intr.sum"
	ok $? "the totals count 2 cancelled"
	stop_sim
fi

done_testing
