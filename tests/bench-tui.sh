#!/bin/sh
# bench-tui.sh: what the bench costs a terminal reached over SSH ("make
# bench-tui"; not a test).  16 simulated units flash in the realistic
# profile at 80x24 inside tmux; tmux pipe-pane hands every byte espfleet
# writes to tests/tui-bytes, which stamps it with CLOCK_MONOTONIC, and
# espfleet --trace stamps its own events with the same clock.  Printed,
# each with its target and a verdict:
#
#   terminal bytes/s average  bytes written from the first job's start to
#                             the last job's end, per second (<= 2048)
#   first paint bytes         everything written before the second frame
#                             began: terminal set-up and the first full
#                             screen, no unit yet (<= 6144)
#   full repaint bytes        the frame after ^L once all 16 rows are up
#                             and flashing: every cell sent again, as after
#                             a reconnect or a resize (<= 6144)
#   add to row on screen      from a port add entering espfleet to the end
#                             of the first frame showing that change
#                             (<= 50 ms; max and median over every add)
#   ROM port to first write   from a download-mode port's add to its job
#                             starting FLASH_DEFL_BEGIN, auto-flash armed
#                             (<= 250 ms; an upper bound: the loop notes
#                             the job's erase phase when it wakes)
#
# Exit status: 0 when the figures were measured (whatever the verdict),
# 1 when the run itself failed.
. "$top_srcdir/tests/tui-common.sh"

units=${BENCH_UNITS:-16}
bytes=$tui_tmp/bytes
trace=$tui_tmp/trace
tui_pipe="exec '$top_builddir/tests/tui-bytes' '$bytes'"
if [ ! -x "$top_builddir/tests/tui-bytes" ]; then
	echo "bench-tui: build tests/tui-bytes first (make bench-tui)"
	exit 1
fi

echo "bench-tui: $units simulated units, realistic profile, 80x24," \
    "TERM=$tui_term, LANG=C.UTF-8"
tui_start 80 24 -- --simulate "$units" --profile realistic --exit-when-done \
    --trace "$trace" || exit 1
# Every row up and a unit writing: ask for a full repaint (^L).
if wait_re "^ +$units tty" 300 &&
    wait_re "writing .* ([1-9]|[1-9][0-9])%" 300; then
	tui_keys C-l
else
	echo "bench-tui: the rows never all showed up"
fi
if ! wait_exit 900; then
	echo "bench-tui: espfleet did not finish in 15 minutes"
	tui_diag
	exit 1
fi
tui_tmux pipe-pane -t t		# closes tui-bytes' input: it ends
tui_release
wait_until 10 grep -q " exit " "$trace"
case $tui_status in
0|1)	;;
*)	echo "bench-tui: espfleet ended with status $tui_status"; exit 1 ;;
esac

# One stream, sorted by time: "T bytes N" and "T EVENT SLOT DETAIL".
{
	awk '{ print $1, "bytes", $2 }' "$bytes"
	cat "$trace"
} | sort -n -k1,1 | awk -v units="$units" '
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function verdict(ok) { if (!ok) fails++; return ok ? "PASS" : "FAIL" }
$2 == "bytes" { all[++nb] = $1; len[nb] = $3; total += $3; next }
$2 == "begin" && $3 == 2 && !t_second { t_second = $1 }
$2 == "repaint" && !rp_frame { rp_frame = $3 }
$2 == "begin" && rp_frame && $3 == rp_frame { t_rp = $1 }
$2 == "begin" && rp_frame && $3 == rp_frame + 1 { t_rp_end = $1 }
$2 == "frame" { ft[++frames] = $1 }
$2 == "job" && !t_first_job { t_first_job = $1 }
$2 == "done" || $2 == "failed" { t_last_end = $1 }
$2 == "add" {
	pend_add[$3] = $1
	if ($4 == "rom") rom_add[$3] = $1; else delete rom_add[$3]
}
$2 == "shown" && ($3 in pend_add) {
	lat[++nlat] = ($1 - pend_add[$3]) / 1000; delete pend_add[$3]
}
$2 == "write" && ($3 in rom_add) {
	wl[++nwl] = ($1 - rom_add[$3]) / 1000; delete rom_add[$3]
}
END {
	for (i = 1; i <= nb; i++) {
		if (!t_second || all[i] < t_second)
			first += len[i]
		if (all[i] >= t_first_job && all[i] <= t_last_end)
			flash += len[i]
		if (t_rp && all[i] >= t_rp && (!t_rp_end || all[i] < t_rp_end))
			repaint += len[i]
	}
	secs = (t_last_end - t_first_job) / 1e6
	for (i = 1; i <= frames; i++)
		if (ft[i] >= t_first_job && ft[i] <= t_last_end)
			fw++
	rate = secs > 0 ? flash / secs : 0
	for (i = 1; i <= nlat; i++) if (lat[i] > latmax) latmax = lat[i]
	for (i = 1; i <= nwl; i++) if (wl[i] > wlmax) wlmax = wl[i]
	printf "flash window: %.1f s, %d bytes written to the terminal in " \
	    "it, %d in all\n", secs, flash, total
	printf "terminal bytes/s average: %.0f (target <= 2048) %s\n", rate,
	    verdict(secs > 0 && rate <= 2048)
	printf "first paint bytes: %d (target <= 6144) %s\n", first,
	    verdict(t_second && first <= 6144)
	printf "full repaint bytes, %d rows: %d (target <= 6144) %s\n",
	    units, repaint, verdict(t_rp && repaint <= 6144)
	printf "frames: %d in all, %.1f per second while flashing " \
	    "(at most 15 by design)\n", frames, (secs > 0 ? fw / secs : 0)
	if (nlat > 0)
		printf "add to row on screen: max %.1f ms, median %.1f ms " \
		    "over %d adds (target <= 50 ms) %s\n", latmax,
		    median(lat, nlat), nlat, verdict(latmax <= 50)
	else
		printf "add to row on screen: no measurement %s\n", verdict(0)
	if (nwl > 0)
		printf "ROM port to first write: max %.1f ms, median %.1f ms " \
		    "over %d ports (target <= 250 ms) %s\n", wlmax,
		    median(wl, nwl), nwl, verdict(wlmax <= 250)
	else
		printf "ROM port to first write: no measurement %s\n",
		    verdict(0)
	if (fails)
		printf "verdict: %d of 5 figures over target\n", fails
	else
		printf "verdict: every figure within its target\n"
}'
echo "(espfleet exit status $tui_status: 1 means a unit failed, as the" \
    "simulated fault unit does)"
exit 0
