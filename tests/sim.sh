#!/bin/sh
# espfleet-sim end to end: the stdout contract, ptys behind DIR/ttyK, SYNC
# and eFuse MACs through the ttys, reopening, a compressed write that is in
# DIR/flashK.bin as soon as its reply arrived, SIGUSR1 stats, an unplug
# fault, delays of one unit not holding up another, 64 units, clean exit on
# SIGTERM, and refusal of bad options.
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
[ ! -e "$tmp/bad" ]
ok $? "nothing was created for the refused command lines"
done_testing
