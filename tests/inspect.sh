#!/bin/sh
# "espfleet inspect": what a technician reads about the real factory and
# OTA images and the demo image, --json, and exit status 2 on bad input.
. "$top_srcdir/tests/tap.sh"

espfleet="$top_builddir/src/espfleet"
fw="${ESPF_SHARED:-$top_srcdir/../shared}/firmware"
factory="$fw/factory-screek-humen-sensor-1u-20230704_1.bin"
ota="$fw/ota-screek-humen-sensor-1u-20230704_1.bin"

if [ ! -x "$espfleet" ]; then
	echo "not ok 1 - $espfleet is built and dispatches inspect"
	echo "1..1"
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-inspect.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# run ARGS...: run inspect, output in $tmp/out and $tmp/err, status in $st.
run() {
	"$espfleet" inspect "$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
}
# has FILE REGEX DESC: FILE has a line matching the extended REGEX.
has() {
	grep -Eq -- "$2" "$tmp/$1"
	ok $? "$3"
}
status() {	# status WANT DESC
	[ "$st" -eq "$1" ]
	ok $? "$2 (exit $st)"
}

run "$tmp/missing.bin"
status 2 "missing file: exit 2"
has err 'missing\.bin at 0x0: cannot open it' "missing file: names file and offset"

run 0x1001 "$tmp/missing.bin"
status 2 "unaligned offset: exit 2"
has err 'must be a multiple of 0x1000' "unaligned offset: says why"

run --bogus "$tmp/missing.bin"
status 2 "unknown option: exit 2"
has err 'usage: espfleet inspect' "unknown option: usage"

run --demo
status 0 "demo: exit 0"
has out '^    0x1000 +bootloader$' "demo: bootloader at 0x1000"
has out '^  project: +espfleet-demo$' "demo: project"
has out '^  version: +1\.0\.0$' "demo: version"
has out '^  checksum: +valid$' "demo: checksum valid"
has out '^  nvs +data +nvs +0x9000 +0x5000 +erased$' "demo: nvs row"
has out '^verdict: OK to write to an ESP32-S2 with 4 MB flash$' "demo: verdict"

run --demo --json
status 0 "demo --json: exit 0"
if command -v python3 >/dev/null 2>&1; then
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["apps"][0]["project"] == "espfleet-demo"
assert j["bootloader"]["chip"] == "ESP32-S2"
assert j["bootloader"]["checksum_valid"] is True
assert [p["label"] for p in j["partition_table"]["partitions"]] == \
    ["nvs", "otadata", "app0", "app1", "spiffs"]
assert j["verdict"]["ok"] is True
' "$tmp/out"
	ok $? "demo --json: parses and holds the facts"
else
	has out '"project": ?"espfleet-demo"' "demo --json: project"
fi

if [ ! -r "$factory" ] || [ ! -r "$ota" ]; then
	diag "real firmware not found in $fw: skipping its cases"
	done_testing
	exit
fi

run "$factory"
status 0 "factory: exit 0"
has out '^  file: +.*factory-screek-humen-sensor-1u-20230704_1\.bin$' "factory: file"
has out '^  size: +994112 bytes' "factory: size"
sha=05936919465f8abeca44bc26f83d49cba19abc33fb68c90a590471f4dd8f9ac6
has out "^  sha256: +$sha\$" "factory: sha256"
has out '^bootloader at 0x1000:$' "factory: bootloader at 0x1000"
has out '^  chip: +ESP32-S2 \(chip id 2\)$' "factory: chip"
has out '^  flash mode: +DIO$' "factory: flash mode"
has out '^  flash size: +4 MB$' "factory: flash size"
has out '^  flash freq: +80 MHz$' "factory: flash freq"
has out '^  segments: +3$' "factory: bootloader segments"
has out '^partition table at 0x8000: 6 partitions, MD5 valid$' "factory: partition table"
has out '^  nvs +data +nvs +0x9000 +0x5000 +erased$' "factory: nvs"
has out '^  otadata +data +ota +0xe000 +0x2000 +written$' "factory: otadata"
has out '^  app0 +app +ota_0 +0x10000 +0x1c0000 +written \(part\)$' "factory: app0"
has out '^  app1 +app +ota_1 +0x1d0000 +0x1c0000 +-$' "factory: app1"
has out '^  eeprom +data +0x99 +0x390000 +0x1000 +-$' "factory: eeprom"
has out '^  spiffs +data +spiffs +0x391000 +0xf000 +-$' "factory: spiffs"
has out '^app at 0x10000:$' "factory: app at 0x10000"
has out '^  project: +arduino-lib-builder$' "factory: project"
has out '^  esp-idf: +v4\.4\.4$' "factory: IDF version"
has out '^  built: +Apr 20 2023 ' "factory: build date"
has out '^  esphome: +2023\.6\.3$' "factory: ESPHome version"
has out '^  esphome name: +Screek\.Human_Presence_Sensor' "factory: ESPHome name"
has out '^note: overwrites nvs and otadata: Wi-Fi and settings will be erased' "factory: note"
has out '^verdict: OK to write to an ESP32-S2 with 4 MB flash$' "factory: verdict"

run 0x10000 "$ota"
status 0 "OTA at 0x10000: exit 0"
has out '^  esphome: +2023\.6\.3$' "OTA: ESPHome version"
has out '^note: writes no bootloader or partition table' "OTA: note"

run "$ota"
status 2 "OTA at 0x0: exit 2"
has err 'at 0x0: this is an application image' "OTA at 0x0: says why"
has out '^verdict: refused: ' "OTA at 0x0: verdict refused"

run --chip esp32s3 "$factory"
status 2 "S2 factory image for an ESP32-S3: exit 2"
has err 'not a bootloader' "ESP32-S3: says why"

done_testing
