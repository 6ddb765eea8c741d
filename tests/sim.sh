#!/bin/sh
# espfleet-sim end to end: the stdout contract, ptys behind DIR/ttyK, SYNC
# and eFuse MACs through the ttys, reopening, a compressed write that is in
# DIR/flashK.bin as soon as its reply arrived, SIGUSR1 stats, an unplug
# fault, delays of one unit not holding up another, 64 units, clean exit on
# SIGTERM, refusal of bad options, and with --boot a unit's life: written,
# watchdog reset, booted on a new pty with its banner, BOOT+RST (SIGUSR2).
. "$top_srcdir/tests/tap.sh"

sim="$top_builddir/src/espfleet-sim"
probe="$top_builddir/tests/sim-probe"
[ -x "$sim" ] || skip_all "$sim not built"
[ -x "$probe" ] || skip_all "$probe not built"
[ -e /dev/ptmx ] || skip_all "no /dev/ptmx: pseudo-terminals unavailable"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-sim.XXXXXX") || exit 1
pids=
# Stop every emulator this test started and remove the scratch directory.
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# wait_for SECONDS COMMAND...: poll COMMAND every 50 ms until it succeeds.
wait_for() {
	_deadline=$(($(date +%s) + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$(date +%s)" -lt "$_deadline" ] || return 1
		sleep 0.05
	done
}

# Print a file as TAP diagnostics.
diag_file() {
	sed 's/^/# /' "$1"
}

# start_sim NAME ARGS...: run espfleet-sim in the background, output in
# $tmp/NAME.out and .err; sets $pid and waits for "ready".
start_sim() {
	_name=$1
	shift
	"$sim" "$@" >"$tmp/$_name.out" 2>"$tmp/$_name.err" &
	pid=$!
	pids="$pids $pid"
	wait_for 20 grep -qsx ready "$tmp/$_name.out"
	_rc=$?
	if [ $_rc -ne 0 ]; then
		diag "espfleet-sim $* did not get ready:"
		diag_file "$tmp/$_name.out"
		diag_file "$tmp/$_name.err"
	fi
	return $_rc
}

# stop_sim PID: SIGTERM and the exit status.
stop_sim() {
	kill -TERM "$1"
	wait "$1"
	_rc=$?
	pids=$(echo "$pids" | sed "s/ $1\$//; s/ $1 / /")
	return $_rc
}

# ---- three units, one of them to be unplugged --------------------------
start_sim a --units 3 --dir "$tmp/a" --seed 7 \
    --fault unit=2,kind=unplug,at=1000
ok $? "espfleet-sim --units 3 printed ready"
apid=$pid

n=$(grep -c '^unit [0-9] ' "$tmp/a.out")
[ "$n" -eq 3 ] && [ "$(tail -n 1 "$tmp/a.out")" = ready ]
ok $? "one 'unit K DIR/ttyK mac ...' line per unit, then ready"
awk '$1 == "unit" { if ($3 != dir "/tty" $2 || $4 != "mac" ||
    $5 !~ /^7c:df:a1:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]$/)
    bad = 1 } END { exit bad }' dir="$tmp/a" "$tmp/a.out"
ok $? "lines read 'unit K $tmp/a/ttyK mac 7c:df:a1:xx:xx:xx'"
n=$(awk '$1 == "unit" { print $5 }' "$tmp/a.out" | sort -u | wc -l)
[ "$n" -eq 3 ]
ok $? "three distinct MACs"

links=0
for k in 0 1 2; do
	t=$(readlink "$tmp/a/tty$k")
	case $t in
	/dev/pts/[0-9]*) [ -c "$tmp/a/tty$k" ] && links=$((links + 1)) ;;
	esac
done
[ $links -eq 3 ]
ok $? "DIR/tty0..2 are symlinks to pty slaves"
size=$(wc -c <"$tmp/a/flash0.bin")
ffs=$(LC_ALL=C tr -d '\377' <"$tmp/a/flash0.bin" | wc -c)
[ "$size" -eq 4194304 ] && [ "$ffs" -eq 0 ]
ok $? "DIR/flash0.bin: 4 MiB, all 0xFF"

"$probe" sync "$tmp/a/tty0" "$tmp/a/tty1" "$tmp/a/tty2" >"$tmp/p.out" 2>&1
ok $? "SYNC through each tty: 8 golden replies"
[ $? -eq 0 ] || diag_file "$tmp/p.out"

good=0
for k in 0 1 2; do
	want=$(awk -v k=$k '$1 == "unit" && $2 == k { print $5 }' "$tmp/a.out")
	got=$("$probe" mac "$tmp/a/tty$k" 2>&1)
	if [ "$got" = "$want" ]; then
		good=$((good + 1))
	else
		diag "unit $k: eFuse $got, printed $want"
	fi
done
[ $good -eq 3 ]
ok $? "the MAC in each unit's eFuse words is the printed one"

"$probe" termios "$tmp/a/tty0" >"$tmp/p.out" 2>&1
ok $? "the pty slave is raw (no echo, no canonical mode, no output processing)"
[ $? -eq 0 ] || diag_file "$tmp/p.out"

"$probe" sync "$tmp/a/tty0" >/dev/null 2>&1 &&
    "$probe" sync "$tmp/a/tty0" >"$tmp/p.out" 2>&1
ok $? "closing and reopening a tty keeps working"

"$probe" flash "$tmp/a/tty1" "$tmp/a/flash1.bin" >"$tmp/p.out" 2>&1
ok $? "compressed write: in flash1.bin by its last reply, MD5 matches"
[ $? -eq 0 ] || diag_file "$tmp/p.out"

kill -USR1 "$apid"
wait_for 10 grep -qs '^unit 2 ' "$tmp/a/stats"
ok $? "SIGUSR1 writes DIR/stats"
awk '$1 == "unit" && $2 == 1 && $3 == "modeled_ms" && $7 == "commands" &&
    $8 > 0 { found = 1 } END { exit !found }' "$tmp/a/stats"
ok $? "stats line of unit 1 counts its commands"
wait_for 10 grep -qs '^unit 2 .*modeled_ms' "$tmp/a.err"
ok $? "SIGUSR1 also prints the stats lines on stderr"

"$probe" gone "$tmp/a/tty2" >"$tmp/p.out" 2>&1
ok $? "unplug fault: unit 2's tty hangs up after 1000 reply bytes"
[ $? -eq 0 ] || diag_file "$tmp/p.out"
wait_for 10 test ! -e "$tmp/a/tty2" -a ! -L "$tmp/a/tty2"
ok $? "the unplugged unit's symlink is removed"
"$probe" sync "$tmp/a/tty0" "$tmp/a/tty1" >/dev/null 2>&1
ok $? "the other units still answer"

# The held slave fd keeps the masters quiet between clients: with every
# client gone the emulator must sleep in ppoll, not spin on a hangup.  This
# measures CPU time over a fixed half second (a measurement window, not a
# wait for something to happen).
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}
c0=$(cpu_ticks "$apid")
sleep 0.5
c1=$(cpu_ticks "$apid")
hz=$(getconf CLK_TCK)
[ $(((c1 - c0) * 4)) -lt "$hz" ]
ok $? "idle espfleet-sim used $((c1 - c0)) of $hz ticks in 0.5 s (no spinning)"
stop_sim "$apid"
ok $? "SIGTERM: espfleet-sim exits 0"
left=0
for k in 0 1 2; do
	[ -L "$tmp/a/tty$k" ] && left=$((left + 1))
done
[ $left -eq 0 ]
ok $? "SIGTERM removed the symlinks"
[ -f "$tmp/a/flash0.bin" ] && [ -f "$tmp/a/flash1.bin" ] &&
    [ -f "$tmp/a/flash2.bin" ]
ok $? "the flash files are kept"
grep -q '^unit 2 .* state unplugged reason unplug$' "$tmp/a/stats"
ok $? "final stats: unit 2 unplugged"

# ---- realistic profile: one unit's delay does not hold up another --------
start_sim r --units 2 --dir "$tmp/r" --profile realistic \
    --fault unit=0,kind=stall,ms=3000,op=SYNC
ok $? "realistic profile with a 3 s stall on unit 0 ready"
rpid=$pid
"$probe" sync "$tmp/r/tty0" >"$tmp/slow.out" 2>&1 &
slow=$!
t0=$(date +%s)
"$probe" sync "$tmp/r/tty1" >"$tmp/p.out" 2>&1
rc=$?
t1=$(date +%s)
[ $rc -eq 0 ] && [ $((t1 - t0)) -le 1 ]
ok $? "unit 1 answers within a second while unit 0 is stalled ($((t1 - t0)) s)"
wait $slow
ok $? "unit 0's stalled SYNC replies still arrive"
stop_sim "$rpid"
awk '$1 == "unit" && $2 == 1 && $4 > 0 { found = 1 } END { exit !found }' \
    "$tmp/r/stats"
ok $? "realistic: unit 1 reports modeled_ms > 0 at exit"
awk '$1 == "unit" && $2 == 0 && $6 >= 3000 { found = 1 } END { exit !found }' \
    "$tmp/r/stats"
ok $? "realistic: unit 0 reports its stall apart (stall_ms >= 3000)"

# ---- 64 units ------------------------------------------------------------
start_sim m --units 64 --dir "$tmp/m" --flash-size 256KB --chip esp32
ok $? "64 units (ESP32, 256 KB flash) ready"
mpid=$pid
set --
k=0
while [ $k -lt 64 ]; do
	set -- "$@" "$tmp/m/tty$k"
	k=$((k + 1))
done
"$probe" sync "$@" >"$tmp/p.out" 2>&1
ok $? "all 64 units answer SYNC"
[ "$(wc -c <"$tmp/m/flash63.bin")" -eq 262144 ]
ok $? "flash63.bin is 256 KiB"
stop_sim "$mpid"
ok $? "64 units: SIGTERM exit 0"

# ---- in-process, threaded (espfleet --simulate style) ---------------------
"$probe" inproc >"$tmp/p.out" 2>&1
st=$?
ok $st "sim_start/sim_join in-process: 2 units answer, links removed on exit"
[ $st -eq 0 ] || diag_file "$tmp/p.out"

# ---- unit life (--boot): write, watchdog reset, the app's new port --------
# skip_n N WHY: N TAP lines with the SKIP directive (not passes).
skip_n() {
	_i=0
	while [ $_i -lt "$1" ]; do
		tap_n=$((tap_n + 1))
		echo "ok $tap_n # SKIP $2"
		_i=$((_i + 1))
	done
}
# stats_has DIR PID PATTERN: ask for stats (SIGUSR1), match unit 0's line.
stats_has() {
	kill -USR1 "$2" && grep -q -e "$3" "$1/stats" 2>/dev/null
}
fwdir="${ESPF_SHARED:-$top_srcdir/../shared}/firmware"
factory="$fwdir/factory-screek-humen-sensor-1u-20230704_1.bin"
espf="$top_builddir/src/espfleet"
if [ -r "$factory" ] && [ -x "$espf" ]; then
	start_sim l --units 1 --dir "$tmp/l" --boot
	ok $? "--boot: one unit ready in download mode"
	lpid=$pid
	old=$(readlink "$tmp/l/tty0")
	exec 3<"$tmp/l/tty0"	# a client of the old port, left idle
	"$espf" flash --port "$tmp/l/tty0" --after reboot "$factory" \
	    >"$tmp/l.flash" 2>&1
	ok $? "espfleet wrote the factory image and reset the unit"
	wait_for 10 stats_has "$tmp/l" "$lpid" \
	    'generation 1 usb 303a:80c2 state app reason watchdog-reset$'
	ok $? "stats: generation 1, usb 303a:80c2, state app after the watchdog"
	timeout 5 cat <&3 >/dev/null 2>&1
	rc=$?
	exec 3<&-
	[ $rc -ne 124 ] && [ -L "$tmp/l/tty0" ]
	ok $? "the old pty ($old) hung up; DIR/tty0 links a new one"
	# The banner is on the new port: espfleet's boot check may have read
	# it already ("booted: ESPHome ..."), else the first read shows it.
	if grep -q 'booted: ESPHome 2023.6.3' "$tmp/l.flash"; then
		ok 0 "espfleet read the app's banner: booted: ESPHome 2023.6.3"
	else
		timeout 5 cat "$tmp/l/tty0" >"$tmp/l.banner" 2>/dev/null &
		catpid=$!
		wait_for 5 grep -qs 'ESPHome version 2023.6.3 compiled on' \
		    "$tmp/l.banner"
		ok $? "the app's banner on the new port names ESPHome 2023.6.3"
		kill "$catpid" 2>/dev/null
		wait "$catpid" 2>/dev/null
	fi
	# BOOT+RST (SIGUSR2): back into download mode on a new port.
	kill -USR2 "$lpid"
	wait_for 10 stats_has "$tmp/l" "$lpid" \
	    'generation 2 usb 303a:0002 state download reason hard-reset$'
	ok $? "SIGUSR2 (BOOT+RST): generation 2, 303a:0002, download mode"
	"$probe" sync "$tmp/l/tty0" >"$tmp/p.out" 2>&1
	ok $? "the ROM on the new port answers SYNC"
	stop_sim "$lpid"
	ok $? "--boot: SIGTERM exit 0"
else
	skip_n 8 "no factory image or no src/espfleet"
fi
# A reenum fault: the port goes away at the first SYNC and a new one,
# in download mode, answers the next.
start_sim q --units 1 --dir "$tmp/q" --fault kind=reenum,op=SYNC,at=1
ok $? "--fault kind=reenum,op=SYNC: ready"
qpid=$pid
exec 3<"$tmp/q/tty0"
"$probe" sync "$tmp/q/tty0" >"$tmp/p.out" 2>&1
wait_for 10 stats_has "$tmp/q" "$qpid" \
    'generation 1 usb 303a:0002 state download reason soft-reset$'
ok $? "the first SYNC re-enumerated the unit (generation 1, soft-reset)"
timeout 5 cat <&3 >/dev/null 2>&1
rc=$?
exec 3<&-
[ $rc -ne 124 ]
ok $? "a client of the old pty saw a hangup"
"$probe" sync "$tmp/q/tty0" >"$tmp/p.out" 2>&1
ok $? "the new port answers SYNC"
stop_sim "$qpid"
start_sim w --units 2 --dir "$tmp/w" --boot --board 1=bridge
ok $? "--board 1=bridge: ready"
wpid=$pid
wait_for 10 stats_has "$tmp/w" "$wpid" '^unit 1 .* usb 10c4:ea60 ' &&
    grep -q '^unit 0 .* usb 303a:0002 ' "$tmp/w/stats"
ok $? "unit 1 is a bridge board (10c4:ea60), unit 0 native USB"
stop_sim "$wpid"
start_sim e --units 1 --dir "$tmp/e" --boot --start app
ok $? "--boot --start app with empty flash: ready"
epid=$pid
wait_for 10 stats_has "$tmp/e" "$epid" 'usb 303a:0002 state download'
ok $? "empty flash: the unit boots into download mode"
timeout 5 cat "$tmp/e/tty0" >"$tmp/e.text" 2>/dev/null &
catpid=$!
wait_for 5 grep -qs 'waiting for download' "$tmp/e.text"
ok $? "it prints the ROM's 'waiting for download'"
kill "$catpid" 2>/dev/null
wait "$catpid" 2>/dev/null
grep -q 'invalid header: 0xffffffff' "$tmp/e.text"
ok $? "after 'invalid header: 0xffffffff'"
stop_sim "$epid"

# ---- bad options: exit 2, clear message, nothing created ------------------
# expect_usage DESC PATTERN ARGS...
expect_usage() {
	_desc=$1
	_pat=$2
	shift 2
	"$sim" "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
	_rc=$?
	[ $_rc -eq 2 ] && grep -q -e "$_pat" "$tmp/bad.err"
	ok $? "$_desc: exit 2, stderr says '$_pat' (exit $_rc)"
}
expect_usage "--fault kind=bogus" "unknown kind 'bogus'" \
    --units 1 --dir "$tmp/bad" --fault kind=bogus
expect_usage "--fault without kind" "kind= is required" \
    --units 1 --dir "$tmp/bad" --fault unit=0,at=3
expect_usage "--fault with an unknown key" "unknown key 'shade'" \
    --units 1 --dir "$tmp/bad" --fault unit=0,kind=noise,shade=3
expect_usage "--fault unit=5 with 2 units" "unit=5" \
    --units 2 --dir "$tmp/bad" --fault unit=5,kind=noise
expect_usage "missing --dir" "--dir DIR is required" --units 1
expect_usage "--units 0" "--units '0'" --units 0 --dir "$tmp/bad"
expect_usage "--flash-size 3MB" "flash size '3MB'" \
    --units 1 --dir "$tmp/bad" --flash-size 3MB
expect_usage "--chip esp32c3" "esp32s2 and esp32" \
    --units 1 --dir "$tmp/bad" --chip esp32c3
expect_usage "--board without --boot" "need --boot" \
    --units 1 --dir "$tmp/bad" --board bridge
expect_usage "--board bogus" "--board 'bogus'" \
    --units 1 --dir "$tmp/bad" --boot --board bogus
expect_usage "--board 3=bridge with 2 units" "names unit 3" \
    --units 2 --dir "$tmp/bad" --boot --board 3=bridge
expect_usage "--fault kind=slow-flash without factor" "needs factor=" \
    --units 1 --dir "$tmp/bad" --fault kind=slow-flash
[ ! -e "$tmp/bad" ]
ok $? "nothing was created for the refused command lines"
done_testing
