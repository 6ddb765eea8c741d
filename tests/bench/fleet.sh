#!/bin/sh
# fleet.sh: the fleet benchmark behind "make bench" (not a test).
#
# Flashes one image with "espfleet flash" to 1, 8, 16 and 64 units of
# "espfleet-sim --profile realistic" (BENCH_SIZES overrides the list), one
# espfleet-sim and one espfleet process per size, and prints the figures
# side by side, then one row per target with a verdict.  BENCH_REPEAT=R
# runs each size R times and reports the run with the median verified
# time, with the spread (default 1: the whole bench stays near 3 minutes).
#
# How each figure is taken:
#   wall        espfleet flash from fork to exit (runstat, CLOCK_MONOTONIC)
#   verified    when the last port's MD5 matched: its "resetting" phase
#               event in flash --json, stamped by runstat -t; the rest of
#               the wall time is the reboot and boot check (--boot-wait)
#   slowest     the largest per-port "seconds" of flash --json's results
#   modeled     DIR/stats after SIGTERM: the largest modeled_ms of the units
#               (the device time the realistic profile charges)
#   espf cpu    user + sys of espfleet flash (wait4 rusage, microseconds)
#   prep        the one-time image work (load, digest, deflate) plus process
#               start: "espfleet flash --port MISSING IMAGE" loads and
#               compresses the image exactly as a real run does, then stops
#               at the port check with status 2; median of 3 runs
#   cpu/unit    (espf cpu - prep cpu) / units
#   sim core    espfleet-sim's CPU during the flash (/proc/PID/stat, clock
#               ticks) / wall: the share of one core its single thread used
#   peak rss    espfleet's maxrss; rss/unit = peak / units
#
# espfleet-sim serves every unit from one thread: when that thread nears a
# full core the fleet figure measures the emulator, not espfleet, and the
# output says so.  Exit status: 0 when the figures were measured (whatever
# the verdicts), 1 when a run failed (a unit not verified, the emulator not
# starting).

: "${top_builddir:?run make bench}" "${top_srcdir:?run make bench}"
espfleet=$top_builddir/src/espfleet
sim=$top_builddir/src/espfleet-sim
runstat=$top_builddir/tests/bench/runstat
demoimg=$top_builddir/tests/bench/demoimg
shared=${ESPF_SHARED:-$top_srcdir/../shared}
image=$shared/firmware/factory-screek-humen-sensor-1u-20230704_1.bin
sizes=${BENCH_SIZES:-1 8 16 64}
repeat=${BENCH_REPEAT:-1}
case $repeat in
''|*[!0-9]*|0) echo "bench: BENCH_REPEAT must be a number from 1"; exit 2 ;;
esac
stubjs=tests/interop/node_modules/esptool-js/lib/targets/stub_flasher
stubjs=$stubjs/esp32s2.json

for p in "$espfleet" "$sim" "$runstat" "$demoimg"; do
	[ -x "$p" ] || { echo "bench: $p is not built (run make bench)"; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-bench.XXXXXX") || exit 1
# espfleet keeps its unit records (as a real run does), but here.
XDG_STATE_HOME=$tmp/state
export XDG_STATE_HOME
simpid=
simbg=

# Stop the emulator of the current size (if any) and wait for it.
sim_stop() {
	[ -n "$simpid" ] && kill -TERM "$simpid" 2>/dev/null
	[ -n "$simbg" ] && wait "$simbg" 2>/dev/null
	simpid=
	simbg=
}
trap 'sim_stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for SECONDS COMMAND...: poll COMMAND until it succeeds or time ends.
wait_for() {
	_end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -ge "$_end" ] && return 1
		sleep 0.05
	done
	return 0
}

# User + system clock ticks a process has used so far.
ticks() {
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# One field of a runstat line: stat FILE NAME.
stat_get() {
	awk -v k="$2" '{ for (i = 1; i < NF; i += 2) if ($i == k) print $(i + 1) }' "$1"
}

# From flash --json stamped by runstat -t: the largest per-port "seconds",
# the verified count, and when the last port was verified (its "resetting"
# phase began, or its result came when there was no reset).
json_scan() {
	awk 'function port() {
		return match($0, /"port":"[^"]*"/) ? \
		    substr($0, RSTART, RLENGTH) : ""
	}
	/"event":"phase"/ && /"phase":"resetting"/ { tv[port()] = $1 }
	/"event":"result"/ {
		if (/"status":"verified"/) v++
		if (!(port() in tv)) tv[port()] = $1
		if (match($0, /"seconds":[0-9.eE+-]+/)) {
			s = substr($0, RSTART + 10, RLENGTH - 10) + 0
			if (s > max) max = s
		}
	}
	END {
		for (p in tv)
			if (tv[p] > last) last = tv[p]
		printf "%.3f %d %.3f\n", max, v, last
	}' "$1"
}

# Does the emulator's output say it is ready?  (Called through wait_for.)
# shellcheck disable=SC2317
sim_ready() {
	grep -qs '^ready' "$1"
}

# run_size N [EXTRA FLASH ARGS...]: one emulator with N units, one flash of
# the image to all of them; appends a result line to $tmp/results (or to
# $tmp/results.stub when EXTRA is given).  Returns 1 when the run failed.
run_size() {
	_n=$1
	shift
	runno=$((runno + 1))
	_d=$tmp/run$runno
	_out=$tmp/results$([ $# -gt 0 ] && echo .stub)
	mkdir -p "$_d"
	rm -f "$_d/sim.pid"
	"$runstat" "$_d/sim.stat" "$_d/sim.pid" "$sim" --units "$_n" \
	    --dir "$_d/sim" --profile realistic >"$_d/sim.out" \
	    2>"$_d/sim.err" &
	simbg=$!
	if ! wait_for 120 sim_ready "$_d/sim.out" ||
	    ! wait_for 10 test -s "$_d/sim.pid"; then
		echo "bench: espfleet-sim --units $_n did not get ready in 120 s"
		sed 's/^/bench:   /' "$_d/sim.err" | tail -5
		return 1
	fi
	simpid=$(cat "$_d/sim.pid")
	_ports=
	_k=0
	while [ "$_k" -lt "$_n" ]; do
		_ports="$_ports --port $_d/sim/tty$_k"
		_k=$((_k + 1))
	done
	_load=$(cut -d' ' -f1 /proc/loadavg)
	_t0=$(ticks "$simpid")
	# shellcheck disable=SC2086
	"$runstat" -t "$_d/flash.stat" "$_d/flash.pid" "$espfleet" flash --json \
	    "$@" $_ports "$image" >"$_d/flash.json" 2>"$_d/flash.err"
	_rc=$?
	_t1=$(ticks "$simpid")
	sim_stop
	if [ "$_rc" -ne 0 ]; then
		echo "bench: espfleet flash to $_n units ended with status $_rc"
		grep '"event":"result"' "$_d/flash.json" |
		    grep -v '"status":"verified"' | head -3 |
		    sed 's/^/bench:   /'
		sed 's/^/bench:   /' "$_d/flash.err" | tail -3
		return 1
	fi
	read -r _slow _ver _vtime <<EOF
$(json_scan "$_d/flash.json")
EOF
	_same=0
	_k=0
	while [ "$_k" -lt "$_n" ]; do
		cmp -s -n "$imglen" "$image" "$_d/sim/flash$_k.bin" &&
		    _same=$((_same + 1))
		_k=$((_k + 1))
	done
	if [ "$_ver" -ne "$_n" ] || [ "$_same" -ne "$_n" ]; then
		echo "bench: $_n units: $_ver verified, $_same flash files" \
		    "equal the image"
		return 1
	fi
	_model=$(awk '$1 == "unit" { for (i = 2; i < NF; i++)
		if ($i == "modeled_ms" && $(i + 1) > m) m = $(i + 1) }
		END { printf "%.3f", m / 1000 }' "$_d/sim/stats")
	echo "$_n $(stat_get "$_d/flash.stat" wall)" \
	    "$_slow $_model" \
	    "$(stat_get "$_d/flash.stat" user) $(stat_get "$_d/flash.stat" sys)" \
	    "$(stat_get "$_d/flash.stat" maxrss)" \
	    "$(stat_get "$_d/sim.stat" user) $(stat_get "$_d/sim.stat" sys)" \
	    "$(stat_get "$_d/sim.stat" maxrss)" \
	    "$(awk -v a="$_t0" -v b="$_t1" -v hz="$hz" \
		'BEGIN { printf "%.3f", (b - a) / hz }')" \
	    "$_load $_vtime" >>"$_out"
	rm -rf "$_d/sim"
	return 0
}

# ---------------------------------------------------------------- start
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
nproc=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
echo "bench: espfleet fleet benchmark, espfleet-sim --profile realistic"
echo "bench: machine: $nproc CPUs ($(sed -n 's/^model name[^:]*: //p' \
    /proc/cpuinfo | sort -u | head -1)), $(uname -sr)," \
    "load average before start: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ ! -f "$image" ]; then
	echo "bench: NOTE: the real factory image is missing: $image"
	echo "bench: NOTE: set ESPF_SHARED; using espfleet's generated demo" \
	    "image instead, so the figures are NOT those of the real firmware"
	image=$tmp/espfleet-demo.bin
	"$demoimg" "$image" || exit 1
fi
imglen=$(wc -c <"$image" | tr -d ' ')
echo "bench: image: $image ($imglen bytes)"

# One-time preparation: the same load and deflate, stopped at the port
# check.
for i in 1 2 3; do
	"$runstat" "$tmp/prep$i.stat" "$tmp/prep.pid" "$espfleet" flash \
	    --port "$tmp/no-such-port" "$image" >/dev/null 2>"$tmp/prep.err"
	rc=$?
	if [ "$rc" -ne 2 ] || ! grep -q "no-such-port" "$tmp/prep.err"; then
		echo "bench: the preparation run did not stop at the port" \
		    "check (status $rc):"
		sed 's/^/bench:   /' "$tmp/prep.err"
		exit 1
	fi
	echo "$(stat_get "$tmp/prep$i.stat" wall)" \
	    "$(stat_get "$tmp/prep$i.stat" user)" \
	    "$(stat_get "$tmp/prep$i.stat" sys)" \
	    "$(stat_get "$tmp/prep$i.stat" maxrss)"
done | awk '{ c[NR] = $2 + $3; w[NR] = $1; r[NR] = $4 }
	END {	# the run with the median CPU
		m = 1
		for (i = 1; i <= NR; i++) {
			lo = 0; hi = 0
			for (j = 1; j <= NR; j++) {
				if (c[j] < c[i]) lo++
				if (c[j] > c[i]) hi++
			}
			if (lo <= 1 && hi <= 1) m = i
		}
		printf "%.6f %.6f %d\n", c[m], w[m], r[m]
	}' >"$tmp/prep"
read -r prep_cpu prep_wall prep_rss <"$tmp/prep"
echo "bench: one-time preparation (espfleet flash --port MISSING: load," \
    "digest, deflate, start and exit; median of 3):" \
    "$(awk -v c="$prep_cpu" -v w="$prep_wall" -v r="$prep_rss" 'BEGIN {
	printf "CPU %.3f s, wall %.3f s, peak RSS %.1f MiB", c, w, r / 1024 }')"

failed=0
runno=0
for n in $sizes; do
	r=1
	while [ "$r" -le "$repeat" ]; do
		echo "bench: flashing $n unit(s)$([ "$repeat" -gt 1 ] &&
		    echo ", run $r of $repeat")..."
		run_size "$n" || { failed=1; sim_stop; }
		r=$((r + 1))
	done
done

# The stub, if espfleet has learned it.
stub=
if "$espfleet" flash --help 2>&1 | grep -q -- '--stub'; then
	for f in "$top_srcdir/$stubjs" "$top_builddir/$stubjs"; do
		[ -f "$f" ] && { stub=$f; break; }
	done
	if [ -z "$stub" ]; then
		stub_row="not measured: esptool-js's $stubjs is not installed"
	else
		echo "bench: flashing 1 unit through the stub ($stub)..."
		if run_size 1 --stub "$stub"; then
			stub_row=
		else
			stub_row="not measured: the stub run failed (see above)"
			failed=1
		fi
	fi
else
	stub_row="not measured: the stub path is not implemented yet"
fi

[ -s "$tmp/results" ] || { echo "bench: no size was measured"; exit 1; }

# ---------------------------------------------------------------- report
# results: n wall slowest modeled espf_user espf_sys espf_rss sim_user
#          sim_sys sim_rss sim_window load1 verified
awk -v prep="$prep_cpu" -v nproc="$nproc" -v stub_row="$stub_row" \
    -v stubfile="$tmp/results.stub" '
function verdict(ok) { if (ok) pass++; else miss++; return ok ? "PASS" : "MISS" }
function mib(kb) { return sprintf("%.1fM", kb / 1024) }
function why(i, v) {	# a MISS on a row the host or emulator spoilt says so
	if (bound[i] == "" || v != "MISS")
		return (v)
	return (v " (" substr(bound[i], 1, index(bound[i], ":") - 1) ")")
}
function row(name, measured, target, v) {
	printf "%-46s %-24s %-10s %s\n", name, measured, target, v
}
# Every run of a size is kept; its row is the run with the median
# verified time (the lower one of an even count).
{
	if (!($1 in runs))
		order[++sizes] = $1
	line[$1, ++runs[$1]] = $0
}
END {
	rows = sizes
	for (i = 1; i <= rows; i++) {
		k = order[i]
		m = runs[k]
		for (a = 1; a <= m; a++) {
			split(line[k, a], f, " ")
			v[a] = f[13]
			idx[a] = a
		}
		for (a = 2; a <= m; a++)	# insertion sort by verified time
			for (b = a; b > 1 && v[idx[b - 1]] > v[idx[b]]; b--) {
				t = idx[b]; idx[b] = idx[b - 1]; idx[b - 1] = t
			}
		split(line[k, idx[int((m + 1) / 2)]], f, " ")
		nrun[i] = m; vmin[i] = v[idx[1]]; vmax[i] = v[idx[m]]
		n[i] = f[1]; wall[i] = f[2]; slow[i] = f[3]; model[i] = f[4]
		ecpu[i] = f[5] + f[6]; erss[i] = f[7]; scpu[i] = f[8] + f[9]
		swin[i] = f[11]; load[i] = f[12]; ver[i] = f[13]
		if (n[i] == 1) single = i
	}
	printf "\n%5s %7s %7s %6s %7s %7s %7s %7s %7s %7s %7s %7s %6s " \
	    "%5s %7s %8s %5s\n", "units", "wall_s", "verif_s", "after",
	    "slowest", "wall/u", "fleet/1", "verif/1", "model_s", "ver/md",
	    "espfcpu", "cpu/u", "simcpu", "sim%", "peakrss", "rss/u", "load"
	for (i = 1; i <= rows; i++) {
		core[i] = wall[i] > 0 ? swin[i] / wall[i] : 0
		cpuu[i] = (ecpu[i] - prep) / n[i]
		printf "%5d %7.2f %7.2f %6.2f %7.2f %7.3f %7s %7s %7.2f " \
		    "%7.3f %7.3f %7.4f %6.2f %4.0f%% %7s %8s %5.2f\n", n[i],
		    wall[i], ver[i], wall[i] - ver[i], slow[i], wall[i] / n[i],
		    single ? sprintf("%.3f", wall[i] / wall[single]) : "-",
		    single ? sprintf("%.3f", ver[i] / ver[single]) : "-",
		    model[i], (model[i] > 0 ? ver[i] / model[i] : 0), ecpu[i],
		    cpuu[i], scpu[i],
		    100 * core[i], mib(erss[i]), mib(erss[i] / n[i]), load[i]
		if (core[i] >= 0.8)
			bound[i] = "emulator-bound: espfleet-sim used " \
			    sprintf("%.0f%%", 100 * core[i]) " of one core"
		else if ((ecpu[i] + swin[i]) / wall[i] >= 0.8 * nproc)
			bound[i] = "host-bound: espfleet and espfleet-sim " \
			    "used the CPUs"
		else if (load[i] > nproc)
			bound[i] = "loaded host: 1-min load average " \
			    load[i] " on " nproc " CPUs at start"
	}
	printf "\n  wall_s: espfleet flash, fork to exit.  verif_s: until " \
	    "the last unit was verified (MD5 matched).\n"
	printf "  after: wall_s - verif_s, the reboot and boot check " \
	    "(--boot-wait, 5 s by default).\n"
	printf "  slowest: largest per-port time (--json).  wall/u: " \
	    "wall_s / units.  fleet/1, verif/1: against 1 unit.\n"
	printf "  model_s: largest modeled_ms / 1000 (DIR/stats).  " \
	    "ver/md: verif_s / model_s.\n"
	printf "  espfcpu: espfleet user+sys.  cpu/u: (espfcpu - %.3f s " \
	    "preparation) / units.  simcpu: espfleet-sim user+sys.\n", prep
	printf "  sim%%: espfleet-sim CPU during the flash / wall_s (one " \
	    "thread serves all units).  load: 1-min load at start.\n"
	for (i = 1; i <= rows; i++)
		if (nrun[i] > 1)
			printf "  %d unit(s): median of %d runs; verif_s " \
			    "from %.2f to %.2f s\n", n[i], nrun[i], vmin[i],
			    vmax[i]
	if (rows >= 2 && n[rows] > n[1])
		printf "  espfleet CPU per added unit (slope %d -> %d " \
		    "units): %.4f s; peak RSS per added unit: %.1f KiB\n",
		    n[1], n[rows], (ecpu[rows] - ecpu[1]) / (n[rows] - n[1]),
		    (erss[rows] - erss[1]) / (n[rows] - n[1])
	for (i = 1; i <= rows; i++)
		if (bound[i] != "")
			printf "  NOTE: %d unit(s): %s: %s\n", n[i], bound[i],
			    bound[i] ~ /^loaded/ ? "its times may include " \
			    "waiting for a CPU" : \
			    "this row measures the emulator or the host, " \
			    "not espfleet alone"
	if (single && bound[single] != "")
		printf "  NOTE: the single-unit run is the reference of " \
		    "every fleet/1 ratio and of ver/md\n"

	printf "\n"
	row("target", "measured", "bound", "verdict")
	for (i = 1; i <= rows; i++) {
		if (i == single || !single)
			continue
		r = ver[i] / ver[single]
		row(sprintf("fleet(%d)/single, to last verified%s", n[i],
		    n[i] == 16 ? " [i.2]" : ""),
		    sprintf("%.3f (wall %.3f)", r, wall[i] / wall[single]),
		    "<= 1.10", why(i, verdict(r <= 1.10)))
	}
	if (single) {
		r = model[single] > 0 ? ver[single] / model[single] : 0
		row("single, to verified / modeled device time",
		    sprintf("%.3f (%.2f/%.2f s)", r, ver[single],
		    model[single]), "<= 1.05",
		    why(single, verdict(ver[single] <= 1.05 * model[single])))
	}
	for (i = 1; i <= rows; i++)
		row(sprintf("espfleet CPU/unit beyond preparation, %d", n[i]),
		    sprintf("%.4f s", cpuu[i]), "<= 0.05 s",
		    verdict(cpuu[i] <= 0.05))
	for (i = 1; i <= rows; i++)
		row(sprintf("espfleet peak RSS per unit, %d", n[i]),
		    sprintf("%.1f KiB", erss[i] / n[i]), "none set", "-")
	if (stub_row != "")
		printf "%-46s %s\n", "ROM against stub, 1 unit", stub_row
	else if ((getline sl < stubfile) > 0 && single) {
		split(sl, st, " ")
		row("stub / ROM, 1 unit, to verified",
		    sprintf("%.3f (%.2f/%.2f s)", st[13] / ver[single], st[13],
		    ver[single]), "<= 1.00", verdict(st[13] <= ver[single]))
	}
	printf "%-46s %s\n", "terminal bytes/s, hotplug/auto-flash latency",
	    "bench-tui (printed above, when BENCH_TARGETS ran)"
	printf "\nbench: %d PASS, %d MISS\n", pass, miss
}' "$tmp/results"

exit "$failed"
