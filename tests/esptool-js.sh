#!/bin/sh
# Interop: Espressif's esptool-js, unchanged, writes the real factory image to
# an espfleet-sim unit over the ROM loader protocol; the unit's flash must then
# hold the image byte for byte, with 0xFF after it.  Then again through the
# flasher stub, as esptool-js's main() uploads and runs it.
. "$top_srcdir/tests/tap.sh"

fw_name=factory-screek-humen-sensor-1u-20230704_1.bin
fw="$ESPF_SHARED/firmware/$fw_name"
sim="$top_builddir/src/espfleet-sim"
flash_timeout=300
ready_timeout=20

[ -n "$NODE" ] ||
    skip_all "node not found by configure (install nodejs, re-run configure)"
mods=
for d in "$ESPF_NODE_MODULES" "$top_srcdir/tests/interop/node_modules"; do
	if [ -n "$d" ] && [ -f "$d/esptool-js/package.json" ]; then
		mods=$d
		break
	fi
done
[ -n "$mods" ] || skip_all "esptool-js not installed (run:" \
    "npm ci --prefix $top_srcdir/tests/interop, or set ESPF_NODE_MODULES)"
[ -d "$ESPF_SHARED/firmware" ] || skip_all "no firmware directory at" \
    "$ESPF_SHARED/firmware (set ESPF_SHARED)"
[ -f "$fw" ] || skip_all "factory image $fw missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-esptooljs.XXXXXX") || exit 1
simpid=
flashpid=
# Stop the flasher and the emulator if they still run; remove the scratch dir.
cleanup() {
	if [ -n "$flashpid" ]; then
		kill "$flashpid" 2>/dev/null
		wait "$flashpid" 2>/dev/null
	fi
	if [ -n "$simpid" ]; then
		kill "$simpid" 2>/dev/null
		wait "$simpid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

# Print a file as TAP diagnostics.
diag_file() {
	sed 's/^/# /' "$1"
}

mkdir "$tmp/sim"
"$sim" --units 1 --dir "$tmp/sim" --profile fast \
    >"$tmp/sim.out" 2>"$tmp/sim.err" &
simpid=$!

# Wait for "ready", giving up when the emulator exits or the deadline passes.
deadline=$(($(date +%s) + ready_timeout))
up=1
while :; do
	if grep -qsx ready "$tmp/sim.out"; then
		up=0
		break
	fi
	kill -0 "$simpid" 2>/dev/null || break
	[ "$(date +%s)" -lt "$deadline" ] || break
	sleep 0.05
done
ok $up "espfleet-sim printed ready"
if [ $up -ne 0 ]; then
	diag "sim stdout:"; diag_file "$tmp/sim.out"
	diag "sim stderr:"; diag_file "$tmp/sim.err"
	done_testing
	exit 1
fi
port=$(awk '$1 == "unit" && $2 == 0 { print $3 }' "$tmp/sim.out")
mac=$(awk '$1 == "unit" && $2 == 0 && $4 == "mac" { print tolower($5) }' \
    "$tmp/sim.out")
[ -n "$port" ] && [ -e "$port" ] && [ -n "$mac" ]
ok $? "unit 0 has a tty ($port) and a MAC ($mac)"

t0=$(date +%s)
# In the background so that a signal to this script is handled at once.
timeout "$flash_timeout" "$NODE" "$top_srcdir/tests/interop/flash.mjs" \
    --port "$port" --image "$fw" --address 0 --modules "$mods" \
    --trace "$tmp/trace.log" >"$tmp/flash.out" 2>&1 &
flashpid=$!
wait "$flashpid"
rc=$?
flashpid=
t1=$(date +%s)
# esptool-js lines already carry "# "; prefix anything else (node errors).
sed '/^#/!s/^/# /' "$tmp/flash.out"
diag "flash.mjs exit $rc after $((t1 - t0)) s"
ok $rc "esptool-js detectChip + writeFlash (ROM path, compressed) exit 0"
if [ $rc -ne 0 ]; then
	# Keep the wire trace for the report; show its last command headers.
	keep="$top_builddir/tests/esptool-js.trace"
	cp "$tmp/trace.log" "$keep" 2>/dev/null &&
	    diag "full esptool-js wire trace kept in $keep"
	diag "last trace lines (hex dump bodies left out):"
	grep -v '^    ' "$tmp/trace.log" | tail -n 40 | sed 's/^/# /'
	diag "sim stderr:"; diag_file "$tmp/sim.err"
fi

grep -q '^# esptool-js 0\.7\.' "$tmp/flash.out"
ok $? "the esptool-js in use is 0.7.x"
grep -qx '# ESP32-S2' "$tmp/flash.out" &&
    grep -q '^# Chip is ESP32-S2' "$tmp/flash.out"
ok $? "esptool-js detected the chip as ESP32-S2"
got_mac=$(sed -n 's/^# MAC: //p' "$tmp/flash.out" | tr 'A-F' 'a-f')
[ -n "$got_mac" ] && [ "$got_mac" = "$mac" ]
ok $? "esptool-js read MAC ${got_mac:-none}, the sim printed $mac"
grep -qx '# IS_STUB false, FLASH_WRITE_SIZE 0x[0-9a-f]*' "$tmp/flash.out" &&
    ! grep -q 'Uploading stub' "$tmp/flash.out"
ok $? "esptool-js stayed on the ROM path (no stub upload)"
grep -qx "# flash.mjs: SPI_FLASH_MD5 matches the image" "$tmp/flash.out"
ok $? "SPI_FLASH_MD5 (sent by esptool-js) matches the image"

# Stop the emulator so its flash file is complete, then compare.
kill "$simpid"
wait "$simpid"
diag "espfleet-sim exit status after SIGTERM: $?"
simpid=

flash="$tmp/sim/flash0.bin"
size=$(wc -c <"$fw")
fsize=$(wc -c <"$flash" 2>/dev/null || echo 0)
[ "$fsize" -ge "$size" ]
ok $? "flash0.bin ($fsize bytes) holds at least the image ($size bytes)"
cmp -n "$size" "$fw" "$flash" >"$tmp/cmp.out" 2>&1
rc=$?
[ $rc -eq 0 ] || diag_file "$tmp/cmp.out"
ok $rc "flash0.bin[0, $size) equals $fw_name byte for byte"
rest=$(tail -c +"$((size + 1))" "$flash" 2>/dev/null |
    LC_ALL=C tr -d '\377' | wc -c)
[ "$fsize" -gt "$size" ] && [ "$rest" -eq 0 ]
ok $? "flash0.bin after the image is all 0xFF\
 ($((fsize - size)) bytes, $rest not 0xFF)"

# ---- the stub path: esptool-js's own main(), runStub() and "OHAI" --------
mkdir "$tmp/ssim"
"$sim" --units 1 --dir "$tmp/ssim" --profile fast \
    >"$tmp/ssim.out" 2>"$tmp/ssim.err" &
simpid=$!
deadline=$(($(date +%s) + ready_timeout))
up=1
while :; do
	if grep -qsx ready "$tmp/ssim.out"; then
		up=0
		break
	fi
	kill -0 "$simpid" 2>/dev/null || break
	[ "$(date +%s)" -lt "$deadline" ] || break
	sleep 0.05	# polling for "ready"
done
ok $up "a second espfleet-sim printed ready"
sport=$(awk '$1 == "unit" && $2 == 0 { print $3 }' "$tmp/ssim.out")
timeout "$flash_timeout" "$NODE" "$top_srcdir/tests/interop/flash.mjs" \
    --port "$sport" --image "$fw" --address 0 --modules "$mods" --stub \
    --trace "$tmp/strace.log" >"$tmp/sflash.out" 2>&1 &
flashpid=$!
wait "$flashpid"
rc=$?
flashpid=
grep -v '^# Debug: ' "$tmp/sflash.out" | sed '/^#/!s/^/# /'
ok $rc "esptool-js main() + writeFlash through the stub exit 0"
grep -q '^# Uploading stub' "$tmp/sflash.out" &&
    grep -q '^# Stub running' "$tmp/sflash.out" &&
    grep -q '^# IS_STUB true' "$tmp/sflash.out"
ok $? "esptool-js uploaded its stub and got OHAI (IS_STUB true)"
grep -qx "# flash.mjs: stub SPI_FLASH_MD5 matches the image" \
    "$tmp/sflash.out"
ok $? "the stub's 16-byte SPI_FLASH_MD5 matches the image"
grep -q "^# flash.mjs: stub READ_FLASH of [0-9]* bytes matches" \
    "$tmp/sflash.out"
ok $? "READ_FLASH streamed through the stub matches the image"
kill "$simpid"
wait "$simpid"
simpid=
cmp -n "$size" "$fw" "$tmp/ssim/flash0.bin" >"$tmp/cmp.out" 2>&1
rc=$?
[ $rc -eq 0 ] || diag_file "$tmp/cmp.out"
ok $rc "stub path: flash0.bin equals $fw_name byte for byte"

done_testing
