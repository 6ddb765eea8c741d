#!/bin/sh
# Soak (make soak; not in make check): SOAK_CYCLES flash cycles (default
# 1000) over 8 emulated units in ONE espfleet process, with its open file
# descriptors and resident memory at the start, the middle and the end;
# they must stay flat.
#
# TUI: "espfleet --simulate 8 --profile fast --total N" in tmux: the
# simulated technician unplugs every finished unit and plugs a new one
# (new MAC, blank flash) into its slot, auto-flash writes it, until N
# units have passed through the one bench process.  Headless: "espfleet
# flash --repeat N/8" over 8 emulated units in one flash process.
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
	    "rss $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null)"
}

# peak "fds A rss B" "fds C rss D": the larger of each.
peak() {
	[ -z "$1" ] && { echo "$2"; return; }
	set -- $1 $2
	echo "fds $(($2 > $6 ? $2 : $6)) rss $(($4 > $8 ? $4 : $8))"
}

# flat NAME START END [FD_SLACK]: the verdict on two samples, as a TAP line.
flat() {
	fs=${4:-0}
	set -- "$1" $2 $3
	# $2 fds $3 N $4 rss $5 K $6 fds $7 N $8 rss $9 K
	[ $# -eq 9 ] && [ "$7" -le $(($3 + fs)) ] &&
	    [ $(($9 - $5)) -le $RSS_SLACK_KB ]
	ok $? "$1: flat (fds $3 -> $7, slack $fs; rss $5 -> $9 KiB, slack $RSS_SLACK_KB)"
}

diag "$CYCLES cycles = $ROUNDS rounds of $UNITS units"

# ------------------------------ TUI ------------------------------------
# done_count: units verified so far, from the bench's trace.
done_count() {
	grep -c '^[0-9]* done ' "$tmp/trace" 2>/dev/null
}
if [ -n "$TMUX_BIN" ] && [ -x "$TMUX_BIN" ]; then
	: >"$tmp/trace"
	"$TMUX_BIN" -L "$tsock" -f /dev/null new-session -d -x 120 -y 30 \
	    "exec $ESPF --simulate $UNITS --profile fast --fault none \
	    --total $CYCLES --exit-when-done --trace $tmp/trace"
	"$TMUX_BIN" -L "$tsock" set-option -g remain-on-exit on >/dev/null
	tpid=$("$TMUX_BIN" -L "$tsock" display -p '#{pane_pid}')
	# Jobs open and close ports all the time, so each third of the run
	# is summed up by its peaks: a leak raises the last third's.
	t0=$(date +%s)
	last=0
	stuck=0
	p1="" p2="" p3=""
	while kill -0 "$tpid" 2>/dev/null; do
		v=$(done_count)
		s_now=$(sample "$tpid")
		case $s_now in
		*"rss "[0-9]*) ;;
		*) break ;;	# it has exited (a zombie until reaped)
		esac
		if [ "$v" -lt $((CYCLES / 3)) ]; then
			p1=$(peak "$p1" "$s_now")
		elif [ "$v" -lt $((2 * CYCLES / 3)) ]; then
			p2=$(peak "$p2" "$s_now")
		else
			p3=$(peak "$p3" "$s_now")
		fi
		# No unit verified for 60 s: report the screen and stop.
		if [ "$v" -eq "$last" ]; then
			stuck=$((stuck + 1))
		else
			stuck=0
			last=$v
		fi
		if [ $stuck -gt 600 ]; then
			diag "no unit verified for 60 s after $v; screen:"
			"$TMUX_BIN" -L "$tsock" capture-pane -p |
			    sed 's/^/#   /'
			break
		fi
		sleep 0.1	# sampling interval
	done
	t1=$(date +%s)
	v=$(done_count)
	"$TMUX_BIN" -L "$tsock" capture-pane -p -S -40 >"$tmp/screen"
	echo "TUI soak: $v units verified in one bench process in" \
	    "$((t1 - t0)) s; peaks per third of the run:"
	echo "  start  (units 1-$((CYCLES / 3))):  ${p1:-?}"
	echo "  middle (to unit $((2 * CYCLES / 3))):  ${p2:-?}"
	echo "  end    (to unit $CYCLES):  ${p3:-?}"
	grep 'this session' "$tmp/screen" | sed 's/^/  /'
	[ "$v" -eq "$CYCLES" ]
	ok $? "TUI: $v of $CYCLES flash cycles verified"
	grep -q "^this session: $CYCLES verified, 0 failed" "$tmp/screen"
	ok $? "TUI: the bench's own tally says $CYCLES verified, 0 failed"
	if [ -n "$p1" ] && [ -n "$p3" ]; then
		# Peaks wobble by a port or two; a leak of one descriptor
		# per unit would add a third of the cycles.
		flat "TUI" "$p1" "$p3" 4
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
	random_data 262144 >"$tmp/data.bin"
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
		# One "PORT: verified (chip, MAC...)" line per flash.
		v=$(grep -c ': verified (' "$tmp/h.out")
		[ -z "$s_start" ] && [ "$v" -ge $UNITS ] &&
		    s_start=$(sample $hpid)
		[ -z "$s_mid" ] && [ "$v" -ge $((MID * UNITS)) ] &&
		    s_mid=$(sample $hpid)
		# The last sample taken while it still runs.
		if [ "$v" -ge $(((ROUNDS - 1) * UNITS)) ]; then
			s_now=$(sample $hpid)
			case $s_now in
			*"rss "[0-9]*) s_end=$s_now ;;
			esac
		fi
		sleep 0.1	# sampling interval
	done
	wait $hpid
	rc=$?
	echo "headless soak: exit $rc, $(grep -c ': verified (' "$tmp/h.out")" \
	    "flashes verified"
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
