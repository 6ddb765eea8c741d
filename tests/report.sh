#!/bin/sh
# "espfleet report": a crafted record file with three days, every result,
# repeated MACs, a garbage line, a record cut by a killed writer and a
# truncated last line gives the expected totals, in text and --json;
# a missing file, a symlinked file and a bad option are refused.  Then
# "espfleet flash" on emulated units writes the records that report
# reads back: what happened, unit by unit; --no-log writes none, and a
# symlinked --log is refused before any unit is touched.
. "$top_srcdir/tests/tap.sh"

espfleet="$top_builddir/src/espfleet"
if [ ! -x "$espfleet" ]; then
	echo "not ok 1 - $espfleet is built"
	echo "1..1"
	exit 1
fi
SIM="$top_builddir/src/espfleet-sim"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-report.XXXXXX") || exit 1
simpid=""
cleanup() {
	if [ -n "$simpid" ]; then
		kill "$simpid" 2>/dev/null
		wait "$simpid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

A=7c:df:a1:00:00:0a
B=7c:df:a1:00:00:0b
esc=$(printf '\033')
log="$tmp/units.jsonl"
{
	echo '{"time":"2026-11-25T08:00:01Z","result":"verified","mac":"'$A'"}'
	echo '{"time":"2026-11-25T08:01:00Z","result":"failed","mac":"'$B'","reason":"sync failed: no reply"}'
	echo '{"time":"2026-11-25T09:00:00Z","result":"verified","mac":"7c:df:a1:00:00:0c"}'
	echo 'hello, this is not a record'
	echo '{"time":"2026-11-26T10:00:00Z","result":"failed","mac":"'$A'","reason":"sync failed: no reply"}'
	echo '{"time":"2026-11-26T10:05:00Z","result":"cancelled","mac":"7c:df:a1:00:00:0d"}'
	echo '{"time":"2026-11-26T11:00:00Z","result":"interrupted","mac":"'$B'","reason":"interrupted while writing"}'
	echo '{"time":"2026-11-26T12:00:00Z","result":"failed","reason":"MD5 mismatch \u001b[2J"}'
	echo ''
	# A writer killed mid-record, then a whole record on the same line.
	printf '{"time":"2026-11-27T07:5{"time":"2026-11-27T08:00:00Z","result":"verified","mac":"%s"}\n' $A
	# The last line cut short by a crash.
	printf '{"time":"2026-11-27T09:00:00Z","result":"fai'
} >"$log"

"$espfleet" report "$log" >"$tmp/out" 2>"$tmp/err"
ok $? "report exits 0"
line() {	# line TEXT DESC: the output has exactly this line
	grep -Fxq -- "$1" "$tmp/out"
	ok $? "$2" || diag "want: $1"
}
line "$log: 8 records" "8 records counted"
line "skipped: 1 garbage line, 1 cut record, 1 truncated last line (not records)" \
    "garbage, cut record and truncated last line counted and skipped"
line "results: verified 3, failed 3, cancelled 1, interrupted 1" \
    "totals by result"
line "  2026-11-25  3: verified 2, failed 1" "day 1"
line "  2026-11-26  4: failed 2, cancelled 1, interrupted 1" "day 2"
line "  2026-11-27  1: verified 1" "day 3: the record after the cut one counts"
line "      2  sync failed: no reply" "a repeated failure reason is grouped"
line '      1  MD5 mismatch \x1b[2J' "escape sequences in a reason are shown escaped"
line "  $A  3 times: verified 2, failed 1" "unit A flashed 3 times"
line "  $B  2 times: failed 1, interrupted 1" "unit B flashed 2 times"
! grep -q "7c:df:a1:00:00:0c  " "$tmp/out"
ok $? "a unit flashed once is not listed"
! grep -q "$esc" "$tmp/out"
ok $? "no raw escape character reaches the terminal"
[ "$(grep -c 'sync failed' "$tmp/out")" -eq 1 ]
ok $? "failure reasons list failed records only, once each"

# Each flash gives its own MD5: the reasons group with the digests masked.
md5a=0123456789abcdef0123456789abcdef
md5b=fedcba9876543210fedcba9876543210
for d in $md5a $md5b; do
	echo '{"time":"2026-11-27T10:00:00Z","result":"failed","reason":"MD5 of flash does not match the image at 0x0 (4096 bytes): flash '$d', image 00112233445566778899aabbccddeeff"}'
done >"$tmp/md5.jsonl"
"$espfleet" report "$tmp/md5.jsonl" >"$tmp/out" 2>"$tmp/err"
line "      2  MD5 of flash does not match the image at 0x0 (4096 bytes): flash ..., image ..." \
    "two MD5 mismatches with their own digests count as one reason"

"$espfleet" report --json "$log" >"$tmp/json" 2>"$tmp/err"
ok $? "report --json exits 0"
tr -d ' \n' <"$tmp/json" >"$tmp/flat"
has() {	# has TEXT DESC: the flattened JSON holds TEXT
	grep -Fq -- "$1" "$tmp/flat"
	ok $? "$2" || diag "want: $1"
}
has '"records":8,' "json: records"
has '"skipped":{"garbage":1,"cut":1,"truncated_last_line":1}' "json: skipped"
has '"results":{"verified":3,"failed":3,"cancelled":1,"interrupted":1}' \
    "json: results"
has '{"day":"2026-11-26","count":4,"results":{"verified":0,"failed":2,"cancelled":1,"interrupted":1}}' \
    "json: a day"
has '{"reason":"syncfailed:noreply","count":2,' "json: reasons"
has '"repeated_units":[{"mac":"'$A'","count":3,' "json: repeated unit A"
has '{"mac":"'$B'","count":2,' "json: repeated unit B"

# The default file is $XDG_STATE_HOME/espfleet/units.jsonl.
mkdir -p "$tmp/state/espfleet"
cp "$log" "$tmp/state/espfleet/units.jsonl"
XDG_STATE_HOME="$tmp/state" "$espfleet" report >"$tmp/out" 2>"$tmp/err"
ok $? "report without LOG reads the default file"
line "$tmp/state/espfleet/units.jsonl: 8 records" "default file's records"

"$espfleet" report "$tmp/none.jsonl" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "does not exist" "$tmp/err"
ok $? "a missing record file: exit 1 and says so"

ln -s "$log" "$tmp/link.jsonl"
"$espfleet" report "$tmp/link.jsonl" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "symbolic link" "$tmp/err"
ok $? "a symlinked record file is refused"

"$espfleet" report --bogus "$log" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] && grep -q 'unknown option "--bogus"' "$tmp/err"
ok $? "an unknown option: exit 2"

# Records written by "espfleet flash": 3 units verify, one fails.
mkdir -p "$tmp/u"
"$SIM" --dir "$tmp/u" --units 4 --profile fast \
    --fault unit=3,kind=bitflip,at=1,count=1000 \
    >"$tmp/sim.out" 2>"$tmp/sim.err" &
simpid=$!
n=0
while ! grep -q '^ready' "$tmp/sim.out" 2>/dev/null && [ $n -lt 300 ]; do
	n=$((n + 1))
	sleep 0.1	# polling interval, not a wait for an event
done
grep -q '^ready' "$tmp/sim.out"
ok $? "espfleet-sim serves 4 units"
mac3=$(sed -n 's/^unit 3 .* mac //p' "$tmp/sim.out")
random_data 65536 >"$tmp/data.bin"
ports="--port $tmp/u/tty0 --port $tmp/u/tty1 --port $tmp/u/tty2"
ports="$ports --port $tmp/u/tty3"
flog="$tmp/rec/units.jsonl"
"$espfleet" flash $ports --after stay --log "$flog" 0x10000 \
    "$tmp/data.bin" >"$tmp/flash.out" 2>&1
[ $? -eq 1 ]
ok $? "flash: 3 verified, 1 failed (exit 1)"
[ "$(grep -c . "$flog")" -eq 4 ]
ok $? "one record per unit"
"$espfleet" report "$flog" >"$tmp/out" 2>"$tmp/err"
line "results: verified 3, failed 1, cancelled 0, interrupted 0" \
    "report agrees with the flash: 3 verified, 1 failed"
# (the bit flips on every write: the MD5 retry fails too)
grep -q '^      1  MD5 of flash does not match the image at 0x10000 (65536 bytes): flash \.\.\., image \.\.\. (gave up after 2 attempts); the flash does not keep' \
    "$tmp/out"
ok $? "the failure reason is the flash's" || sed 's/^/#   /' "$tmp/out"
grep '"result":"failed"' "$flog" | grep -q "\"mac\":\"$mac3\""
ok $? "the failed record is unit 3's (MAC $mac3)"
grep '"result":"failed"' "$flog" | grep -q "\"port\":\"$tmp/u/tty3\""
ok $? "... on its port"
sha=$(sha256sum "$tmp/data.bin" | cut -d' ' -f1)
md5=$(md5sum "$tmp/data.bin" | cut -d' ' -f1)
[ "$(grep -c "\"regions\":\[{\"offset\":\"0x10000\",\"size\":65536,\"md5\":\"$md5\",\"sha256\":\"$sha\"}\]" "$flog")" -eq 4 ]
ok $? "every record names the region, its size, md5 and sha256"
[ "$(grep -c "\"image\":\"$tmp/data.bin\",\"image_sha256\":\"$sha\"" "$flog")" -eq 4 ]
ok $? "every record names the image and its sha256"
[ "$(grep -c '"chip":"ESP32-S2' "$flog")" -eq 4 ] &&
    [ "$(grep -c '"bytes_total":65536,' "$flog")" -eq 4 ]
ok $? "every record has the chip and the bytes"
m=$(stat -c %a "$flog")
[ "$m" = 600 ] && [ "$(stat -c %a "$tmp/rec")" = 700 ]
ok $? "record file 0600 ($m), its new directory 0700"

XDG_STATE_HOME="$tmp/deflt" "$espfleet" flash $ports --after stay \
    0x10000 "$tmp/data.bin" >"$tmp/flash.out" 2>&1
[ "$(grep -c '"result":' "$tmp/deflt/espfleet/units.jsonl")" -eq 4 ]
ok $? "without --log, records go to \$XDG_STATE_HOME/espfleet/units.jsonl"
XDG_STATE_HOME="$tmp/nolog" "$espfleet" flash $ports --after stay --no-log \
    0x10000 "$tmp/data.bin" >"$tmp/flash.out" 2>&1
[ "$(grep -c . "$flog")" -eq 4 ] && [ ! -e "$tmp/nolog" ]
ok $? "--no-log writes no record"

ln -s "$flog" "$tmp/flog-link.jsonl"
cksum "$tmp/u"/flash*.bin >"$tmp/sums.before"
"$espfleet" flash $ports --after stay --log "$tmp/flog-link.jsonl" 0xf000 \
    "$tmp/data.bin" >"$tmp/flash.out" 2>&1
rc=$?
cksum "$tmp/u"/flash*.bin >"$tmp/sums.after"
[ $rc -eq 2 ] && grep -q "symbolic link" "$tmp/flash.out" &&
    cmp -s "$tmp/sums.before" "$tmp/sums.after"
ok $? "a symlinked --log: exit 2 ($rc), no unit written"

done_testing
