#!/bin/sh
# Settings backup, restore and wipe on an emulated unit: known nvs and
# otadata written first; "espfleet backup" with the factory image keeps
# exactly those bytes (files 0600, directories 0700, a manifest with md5s);
# after the factory image overwrote them, "espfleet restore" puts them back
# byte for byte; "espfleet wipe" erases nvs and otadata only (after a
# backup unless --no-backup); restore refuses another unit's MAC, a damaged
# backup and a manifest reached through a symbolic link, writing nothing.
# Through esptool-js's flasher stub, the backup before the write reads
# the same bytes with the stub's streamed READ_FLASH.
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
FW="${ESPF_SHARED:-$top_srcdir/../shared}/firmware"
FACTORY="$FW/factory-screek-humen-sensor-1u-20230704_1.bin"
NVS=36864	# 0x9000, 0x5000 bytes (the Screek image's table)
NVS_LEN=20480
OTAD=57344	# 0xe000, 0x2000 bytes
OTAD_LEN=8192
APP=65536	# 0x10000: where the untouched rest begins

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"
[ -r "$FACTORY" ] || skip_all "no factory image in $FW"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-backup.XXXXXX") || exit 1
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
XDG_STATE_HOME="$tmp/state"
export XDG_STATE_HOME

mkdir -p "$tmp/u"
"$SIM" --dir "$tmp/u" --units 2 --profile fast >"$tmp/sim.out" \
    2>"$tmp/sim.err" &
simpid=$!
n=0
while ! grep -q '^ready' "$tmp/sim.out" 2>/dev/null && [ $n -lt 300 ]; do
	n=$((n + 1))
	sleep 0.1	# polling interval, not a wait for an event
done
grep -q '^ready' "$tmp/sim.out"
ok $? "espfleet-sim serves 2 units" || { done_testing; exit 1; }
port="$tmp/u/tty0"
flash="$tmp/u/flash0.bin"
mac=$(sed -n 's/^unit 0 .* mac //p' "$tmp/sim.out")
mac1=$(sed -n 's/^unit 1 .* mac //p' "$tmp/sim.out")
macdir="$XDG_STATE_HOME/espfleet/backups/$(echo "$mac" | tr -d :)"

# region FILE OFFSET LEN WANT: FILE holds WANT's first LEN bytes at OFFSET.
region() {
	cmp -s -i "$2:0" -n "$3" "$1" "$4"
}
# rest_same A B: A and B agree outside nvs and otadata.
rest_same() {
	cmp -s -n "$NVS" "$1" "$2" && cmp -s -i "$APP" "$1" "$2" &&
	    cmp -s -i "$((NVS + NVS_LEN))" -n "$((OTAD - NVS - NVS_LEN))" \
	    "$1" "$2"
}
head -c "$NVS_LEN" /dev/zero | tr '\000' '\377' >"$tmp/ff.bin"
head -c "$NVS_LEN" /dev/urandom >"$tmp/nvs.bin"
head -c "$OTAD_LEN" /dev/urandom >"$tmp/otadata.bin"
head -c "$NVS_LEN" /dev/urandom >"$tmp/nvs2.bin"

# cmds K: the commands unit K has answered so far (espfleet-sim's stats,
# written on SIGUSR1; the first line counts the writes).
cmds() {
	_g=$(sed -n 's/^# espfleet-sim stats //p' "$tmp/u/stats" 2>/dev/null)
	kill -USR1 "$simpid"
	_n=0
	while [ "$(sed -n 's/^# espfleet-sim stats //p' "$tmp/u/stats" \
	    2>/dev/null)" = "$_g" ] && [ $_n -lt 200 ]; do
		_n=$((_n + 1))
		sleep 0.05	# polling interval, not a wait for an event
	done
	sed -n "s/^unit $1 .* commands \([0-9]*\) .*/\1/p" "$tmp/u/stats"
}
c0=$(cmds 0)
"$ESPF" backup --port "$port" --after stay "$FACTORY" >"$tmp/out" 2>&1 &&
    grep -q "or they are erased: nothing to keep" "$tmp/out" &&
    [ ! -e "$macdir" ]
ok $? "a blank unit: its erased settings are not kept"
c1=$(cmds 0)
# 28 KiB of nvs and otadata are 448 READ_FLASH_SLOW; their MD5s are 2.
[ -n "$c0" ] && [ -n "$c1" ] && [ $((c1 - c0)) -lt 150 ]
ok $? "... found erased by their MD5, not read: $((c1 - c0)) commands"
"$ESPF" flash --port "$port" --after stay --no-log "$FACTORY" \
    >"$tmp/out" 2>&1 && [ ! -e "$macdir" ]
ok $? "flashing a blank unit keeps no backup of its erased settings"
"$ESPF" flash --port "$port" --after stay --no-log --no-backup 0x9000 \
    "$tmp/nvs.bin" 0xe000 "$tmp/otadata.bin" >"$tmp/out" 2>&1 &&
    [ ! -e "$macdir" ]
ok $? "known nvs and otadata written; --no-backup keeps none"

# "espfleet flash" keeps the settings before the factory image erases them.
"$ESPF" flash --port "$port" --after stay --no-log "$FACTORY" \
    >"$tmp/out" 2>&1
ok $? "flash the factory image over them (with the backup)" ||
    sed 's/^/#   /' "$tmp/out"
set -- "$macdir"/*.json
first=$(basename "$1" .json)
[ $# -eq 1 ] && [ -f "$1" ]
ok $? "one manifest under backups/<mac>/ ($first)"
cmp -s "$macdir/$first-nvs.bin" "$tmp/nvs.bin" &&
    cmp -s "$macdir/$first-otadata.bin" "$tmp/otadata.bin"
ok $? "the backup holds exactly the unit's nvs and otadata"
grep -q "\"md5\":\"$(md5sum <"$tmp/nvs.bin" | cut -d' ' -f1)\"" "$1" &&
    grep -q '"offset":"0x9000"' "$1" && grep -q '"offset":"0xe000"' "$1" &&
    grep -q "\"mac\":\"$mac\"" "$1"
ok $? "the manifest names MAC, offsets and md5"
grep -q "\"image_sha256\":\"$(sha256sum <"$FACTORY" | cut -d' ' -f1)\"" "$1"
ok $? "the manifest names the image it was kept for"
head -c 4096 "$FACTORY" >"$tmp/small.bin"
"$ESPF" backup --port "$port" --after stay "$tmp/small.bin" >"$tmp/out" 2>&1 &&
    grep -q "leaves nvs and otadata alone" "$tmp/out"
ok $? "an image that does not reach nvs or otadata: nothing kept"
set -- "$macdir"/*.json
[ $# -eq 1 ]
ok $? "... and no backup made ($# manifests)"
modes=$(stat -c %a "$macdir"/* | sort -u | tr '\n' ' ')
[ "$modes" = "600 " ] && [ "$(stat -c %a "$macdir")" = 700 ] &&
    [ "$(stat -c %a "$XDG_STATE_HOME/espfleet/backups")" = 700 ]
ok $? "backup files 0600 ($modes), directories 0700"

# The factory image overwrote the settings...
! region "$flash" "$NVS" "$NVS_LEN" "$tmp/nvs.bin"
ok $? "the factory image overwrote nvs"
cp "$flash" "$tmp/factory-state.bin"

# ... and restore puts them back, byte for byte.
"$ESPF" restore --mac "$mac" --port "$port" --after stay >"$tmp/out" 2>&1
ok $? "restore --mac $mac" || sed 's/^/#   /' "$tmp/out"
region "$flash" "$NVS" "$NVS_LEN" "$tmp/nvs.bin"
ok $? "the unit's nvs equals the original byte for byte"
region "$flash" "$OTAD" "$OTAD_LEN" "$tmp/otadata.bin"
ok $? "the unit's otadata equals the original byte for byte"
rest_same "$flash" "$tmp/factory-state.bin"
ok $? "the rest of the flash is untouched"

# Wipe: nvs and otadata only, after keeping them.
"$ESPF" flash --port "$port" --after stay --no-log --no-backup 0x9000 \
    "$tmp/nvs2.bin" >"$tmp/out" 2>&1
cp "$flash" "$tmp/before-wipe.bin"
"$ESPF" wipe --port "$port" --after stay >"$tmp/out" 2>&1
ok $? "wipe" || sed 's/^/#   /' "$tmp/out"
region "$flash" "$NVS" "$NVS_LEN" "$tmp/ff.bin" &&
    region "$flash" "$OTAD" "$OTAD_LEN" "$tmp/ff.bin"
ok $? "nvs and otadata are all 0xFF"
rest_same "$flash" "$tmp/before-wipe.bin"
ok $? "everything else is untouched"
set -- "$macdir"/*.json
[ $# -eq 2 ]
ok $? "wipe kept a backup first ($# manifests)"
"$ESPF" wipe --port "$port" --after stay --no-backup >"$tmp/out" 2>&1
set -- "$macdir"/*.json
[ $# -eq 2 ]
ok $? "wipe --no-backup keeps none"

"$ESPF" restore --mac "$mac" --port "$port" --after stay >"$tmp/out" 2>&1
region "$flash" "$NVS" "$NVS_LEN" "$tmp/nvs2.bin"
ok $? "restore takes the latest backup (the one before the wipe)"
"$ESPF" restore --mac "$mac" --port "$port" --after stay --from "$first" \
    >"$tmp/out" 2>&1
region "$flash" "$NVS" "$NVS_LEN" "$tmp/nvs.bin"
ok $? "restore --from $first takes that one"

# Refusals: exit 2 and nothing written.
cp "$flash" "$tmp/snap.bin"
"$ESPF" restore --mac "$mac1" --port "$port" --after stay >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 2 ] && cmp -s "$flash" "$tmp/snap.bin"
ok $? "no backup for that MAC: exit 2 ($rc), nothing written"
mkdir -p "$(dirname "$macdir")/$(echo "$mac1" | tr -d :)"
cp "$macdir/$first"* "$(dirname "$macdir")/$(echo "$mac1" | tr -d :)/"
"$ESPF" restore --mac "$mac1" --port "$port" --after stay >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "is $mac, not $mac1: nothing written" "$tmp/out" &&
    cmp -s "$flash" "$tmp/snap.bin"
ok $? "another unit's backup is refused: exit 2 ($rc), nothing written"
"$ESPF" restore --mac nonsense --port "$port" >"$tmp/out" 2>&1
[ $? -eq 2 ]
ok $? "a malformed --mac: exit 2"
printf 'X' | dd of="$macdir/$first-nvs.bin" bs=1 seek=100 conv=notrunc \
    2>/dev/null
"$ESPF" restore --mac "$mac" --port "$port" --from "$first" \
    --after stay >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "damaged" "$tmp/out" && cmp -s "$flash" "$tmp/snap.bin"
ok $? "a damaged backup is refused: exit 2 ($rc), nothing written"
ln -s "$macdir/$first.json" "$macdir/29991231T000000.000Z.json"
"$ESPF" restore --mac "$mac" --port "$port" --after stay >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "symbolic link" "$tmp/out" &&
    cmp -s "$flash" "$tmp/snap.bin"
ok $? "a manifest reached through a link is refused: exit 2 ($rc)"

# "flash --stub": the stub's READ_FLASH keeps the settings first.
STUB="$top_srcdir/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher/esp32s2.json"
dir1="$(dirname "$macdir")/$(echo "$mac1" | tr -d :)"
if [ -f "$STUB" ]; then
	head -c "$NVS_LEN" /dev/urandom >"$tmp/nvs3.bin"
	head -c "$OTAD_LEN" /dev/urandom >"$tmp/otadata3.bin"
	"$ESPF" flash --port "$tmp/u/tty1" --after stay --no-log --no-backup \
	    0x9000 "$tmp/nvs3.bin" 0xe000 "$tmp/otadata3.bin" >"$tmp/out" 2>&1
	before=$(ls "$dir1"/*.json 2>/dev/null | wc -l)
	"$ESPF" flash --port "$tmp/u/tty1" --after stay --no-log \
	    --stub "$STUB" --json "$FACTORY" >"$tmp/out" 2>&1
	rc=$?
	grep -q '"loader":"stub"' "$tmp/out" && [ $rc -eq 0 ]
	ok $? "flash --stub over known settings: verified by the stub" ||
	    sed 's/^/#   /' "$tmp/out"
	last=$(ls "$dir1"/*.json 2>/dev/null | tail -n 1)
	last=$(basename "$last" .json)
	after=$(ls "$dir1"/*.json 2>/dev/null | wc -l)
	[ "$after" -eq $((before + 1)) ] &&
	    cmp -s "$dir1/$last-nvs.bin" "$tmp/nvs3.bin" &&
	    cmp -s "$dir1/$last-otadata.bin" "$tmp/otadata3.bin"
	ok $? "... after keeping nvs and otadata read through the stub" \
"($before -> $after manifests)"
	region "$tmp/u/flash1.bin" 0 "$APP" "$FACTORY"
	ok $? "... and the factory image is on the unit"
else
	skip "no esptool-js stub at $STUB (cd tests/interop && npm ci)"
fi

done_testing
