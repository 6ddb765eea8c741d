#!/bin/sh
# Soak (make soak; not in make check): SOAK_CYCLES flash cycles (default
# 1000) over 8 emulated units in ONE espfleet process, with its open file
# descriptors and resident memory at the start, the middle and the end;
# they must stay flat.
#
# TUI: "espfleet --simulate 8 --profile fast" in tmux with auto-flash;
# each round selects every slot ("a") and presses BOOT+RST ("b"), and
# auto-flash writes all 8 again.  Headless: "espfleet flash --repeat N"
# when espfleet has it; otherwise the gap is reported.
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
UNITS=8
CYCLES=${SOAK_CYCLES:-1000}
ROUNDS=$(((CYCLES + UNITS - 1) / UNITS))
MID=$(((ROUNDS + 1) / 2))
# Flat: no descriptor more at the end than at the start, and resident
# memory grown by at most this many KiB from start to end.
RSS_SLACK_KB=${SOAK_RSS_SLACK_KB:-1024}
TMUX_BIN=${TMUX_BIN:-$(command -v tmux)}

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-soak.XXXXXX") || exit 1
tsock="espfsoak$$"
pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	[ -n "$TMUX_BIN" ] && "$TMUX_BIN" -L "$tsock" kill-server \
	    >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
# Unit records go to the temporary directory, never to $HOME.
XDG_STATE_HOME="$tmp/state"
export XDG_STATE_HOME
trap 'exit 1' INT TERM

# sample PID: "fds N rss K" of a process.
sample() {
	echo "fds $(ls "/proc/$1/fd" 2>/dev/null | wc -l)" \
	    "rss $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status")"
}

# flat NAME START END: the verdict on two samples, as a TAP line.
flat() {
	set -- "$1" $2 $3
	# $2 fds $3 N $4 rss $5 K $6 fds $7 N $8 rss $9 K
	[ "$7" -le "$3" ] && [ $(($9 - $5)) -le $RSS_SLACK_KB ]
	ok $? "$1: flat (fds $3 -> $7, rss $5 -> $9 KiB; slack $RSS_SLACK_KB)"
}

diag "$CYCLES cycles = $ROUNDS rounds of $UNITS units"

# ------------------------------ TUI ------------------------------------
tui_screen() {
	"$TMUX_BIN" -L "$tsock" capture-pane -p 2>/dev/null
}
# tui_wait REGEX TENTHS: poll the header counts until they match.
tui_wait() {
	n=0
	while ! tui_screen | sed -n 2p | grep -q -E "$1"; do
		n=$((n + 1))
		[ $n -gt "$2" ] && return 1
		sleep 0.1	# polling the screen
	done
	return 0
}
if [ -n "$TMUX_BIN" ] && [ -x "$TMUX_BIN" ]; then
	"$TMUX_BIN" -L "$tsock" -f /dev/null new-session -d -x 120 -y 30 \
	    "exec $ESPF --simulate $UNITS --profile fast --fault none"
	tpid=$("$TMUX_BIN" -L "$tsock" display -p '#{pane_pid}')
	all="^ *$UNITS ports +0 active +$UNITS done +0 failed"
	r=0
	bad=0
	t0=$(date +%s)
	while [ $r -lt $ROUNDS ]; do
		if ! tui_wait "$all" 600; then
			diag "round $r did not end: screen:"
			tui_screen | sed 's/^/#   /'
			bad=1
			break
		fi
		r=$((r + 1))
		[ $r -eq 1 ] && s_start=$(sample "$tpid")
		[ $r -eq $MID ] && s_mid=$(sample "$tpid")
		[ $r -eq $ROUNDS ] && { s_end=$(sample "$tpid"); break; }
		"$TMUX_BIN" -L "$tsock" send-keys Escape a b
		# Until the round has started: units active again.
		if ! tui_wait " [1-9][0-9]* active" 100; then
			diag "round $((r + 1)) did not start after BOOT+RST;" \
			    "the end of the event log:"
			"$TMUX_BIN" -L "$tsock" send-keys l
			n=0
			while ! tui_screen | grep -q 'slot [0-9]*:' &&
			    [ $n -lt 20 ]; do
				n=$((n + 1))
				sleep 0.1	# polling for the log view
			done
			tui_screen | grep . | tail -n 6 | sed 's/^/#   /'
			bad=1
			break
		fi
	done
	t1=$(date +%s)
	echo "TUI soak: $r rounds ($((r * UNITS)) flashes) in $((t1 - t0)) s"
	echo "  start  (round 1):      ${s_start:-?}"
	echo "  middle (round $MID):    ${s_mid:-?}"
	echo "  end    (round $ROUNDS):   ${s_end:-?}"
	[ $bad -eq 0 ] && [ $r -eq $ROUNDS ]
	ok $? "TUI: $r of $ROUNDS rounds, every unit done, none failed"
	if [ -n "$s_start" ] && [ -n "$s_end" ]; then
		flat "TUI" "$s_start" "$s_end"
	fi
	"$TMUX_BIN" -L "$tsock" kill-server >/dev/null 2>&1
else
	diag "tmux missing: the TUI soak is skipped"
fi

# ---------------------------- headless ---------------------------------
if "$ESPF" flash --repeat 2 --help >/dev/null 2>&1; then
	mkdir -p "$tmp/u"
	"$SIM" --units $UNITS --dir "$tmp/u" --profile fast \
	    >"$tmp/sim.out" 2>"$tmp/sim.err" &
	pids="$pids $!"
	n=0
	while ! grep -q '^ready' "$tmp/sim.out"; do
		n=$((n + 1))
		[ $n -gt 300 ] && { echo "Bail out! no sim"; exit 1; }
		sleep 0.1	# polling for "ready"
	done
	head -c 262144 /dev/urandom >"$tmp/data.bin"
	ports=""
	k=0
	while [ $k -lt $UNITS ]; do
		ports="$ports --port $tmp/u/tty$k"
		k=$((k + 1))
	done
	: >"$tmp/h.out"	# exists before the first sample
	"$ESPF" flash --repeat $ROUNDS --after stay $ports 0x10000 \
	    "$tmp/data.bin" >"$tmp/h.out" 2>&1 &
	hpid=$!
	pids="$pids $hpid"
	s_start="" s_mid="" s_end=""
	while kill -0 $hpid 2>/dev/null; do
		v=$(grep -c ': verified' "$tmp/h.out")
		[ -z "$s_start" ] && [ "$v" -ge $UNITS ] &&
		    s_start=$(sample $hpid)
		[ -z "$s_mid" ] && [ "$v" -ge $((MID * UNITS)) ] &&
		    s_mid=$(sample $hpid)
		[ "$v" -ge $(((ROUNDS - 1) * UNITS)) ] &&
		    s_end=$(sample $hpid)
		sleep 0.1	# sampling interval
	done
	wait $hpid
	rc=$?
	echo "headless soak: exit $rc, $(grep -c ': verified' "$tmp/h.out")" \
	    "verified lines"
	echo "  start:  ${s_start:-?}"
	echo "  middle: ${s_mid:-?}"
	echo "  end:    ${s_end:-?}"
	ok $rc "headless: espfleet flash --repeat $ROUNDS exits 0"
	if [ -n "$s_start" ] && [ -n "$s_end" ]; then
		flat "headless" "$s_start" "$s_end"
	fi
else
	diag "espfleet flash has no --repeat N: one process cannot flash" \
	    "repeatedly, so the headless soak cannot run (reported gap)"
fi

done_testing
