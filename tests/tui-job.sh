#!/bin/sh
# "espfleet --job FILE --lock": the header shows the job's name and
# LOCKED, A (arm/disarm auto-flash) is refused with "locked by the job
# file", the units are flashed as the job says and the run ends 2 done;
# a job whose boot check the units do not pass ends them failed with
# "boot check: expected"; a job whose image changed (sha256) exits 2 with
# the message before curses starts.
. "$top_srcdir/tests/tui-common.sh"

tui_altscreen=off
demoimg="$top_builddir/tests/bench/demoimg"
[ -x "$demoimg" ] || skip_all "$demoimg is not built (make check builds it)"
command -v sha256sum >/dev/null 2>&1 || skip_all "sha256sum not found"

mkdir "$tui_tmp/job" || exit 1
"$demoimg" "$tui_tmp/job/factory.bin" || exit 1
sha=$(sha256sum "$tui_tmp/job/factory.bin" | cut -d' ' -f1)

# job_file NAME BOOT_CHECK SHA256 AUTO: a job file beside the image (a
# relative path).
job_file() {
	cat >"$tui_tmp/job/$1.json" <<EOF
{
  "name": "$1",
  "chip": "esp32s2",
  "images": [ { "offset": "0x0", "path": "factory.bin", "sha256": "$3" } ],
  "after": "reboot",
  "boot_check": "$2",
  "retries": 1,
  "auto": $4
}
EOF
}

# The pass: a boot check the simulated units meet.  The job says "auto":
# false, so nothing is flashed until keys ask; A must not arm it, while
# a (select all) and f (flash) still work.
job_file tuijob booted "$sha" false
tui_start 80 24 -- --simulate 2 --profile fast --job "$tui_tmp/job/tuijob.json" \
    --lock --exit-when-done --log "$tui_tmp/units.jsonl"
wait_re "^ tuijob  LOCKED  [0-9.]+ KiB  sha256 [0-9a-f]{12} .*SIMULATED" 20
ok $? "the header shows the job's name and LOCKED"
wait_re " 2 ports +0 active" 20
ok $? "both simulated units are listed"
tui_keys A
wait_re "locked by the job file" 20
ok $? "A is refused: locked by the job file"
tui_screen | grep -q "^ tuijob .*manual *$" &&
    ! tui_snap | grep -q "auto-flash armed"
ok $? "auto-flash stays off, as the job says"
tui_keys a f
wait_re " 2 ports +0 active +2 done +0 failed" 60
ok $? "the header counts reach 2 done"
wait_exit 60
ok $? "espfleet ended by itself"
[ "$tui_status" = 0 ]
ok $? "exit status 0 (got $tui_status)"
tui_snap | grep -q "^2 done, 0 failed$"
ok $? "the summary says 2 done, 0 failed"
n=$(grep -c '"result":"verified"' "$tui_tmp/units.jsonl" 2>/dev/null)
[ "$n" = 2 ]
ok $? "two verified unit records ($n)"
[ "$tui_status" = 0 ] || tui_diag

tui_next b

# A boot check the units cannot meet: each ends failed, saying so.
job_file tuinever "ESPHome 1999.1.1" "$sha" true
tui_start 80 24 -- --simulate 2 --profile fast \
    --job "$tui_tmp/job/tuinever.json" --exit-when-done \
    --log "$tui_tmp/never.jsonl"
wait_exit 60
ok $? "with an unmet boot check espfleet ended by itself"
[ "$tui_status" = 1 ]
ok $? "exit status 1 (got $tui_status)"
tui_snap | grep -q "^0 done, 2 failed$"
ok $? "the summary says 0 done, 2 failed"
# -J joins the summary's lines that the 80 columns wrapped.
tui_tmux capture-pane -p -J -t t -S -500 -E - |
    grep -q '^slot [12] .*: failed: boot check: expected "ESPHome 1999.1.1"'
ok $? "the summary gives the boot check's reason"
n=$(grep '"result":"failed"' "$tui_tmp/never.jsonl" 2>/dev/null |
    grep -c 'boot check: expected')
[ "$n" = 2 ]
ok $? "the records say failed: boot check ($n)"
[ "$tui_status" = 1 ] || tui_diag

# A changed image: refused before curses starts, exit 2, nothing run.
bad=$(echo "$sha" | tr 0-9a-f 1-9a-f0)
job_file tuibad booted "$bad" true
"$espfleet" --simulate 2 --profile fast --job "$tui_tmp/job/tuibad.json" \
    --lock --exit-when-done >"$tui_tmp/out" 2>"$tui_tmp/err" </dev/null
st=$?
[ "$st" = 2 ]
ok $? "a job whose image changed exits 2 (got $st)"
grep -q "factory.bin changed since the job was written: sha256 is $sha, the job says $bad" \
    "$tui_tmp/err"
ok $? "the message names the file and both digests"
[ ! -s "$tui_tmp/out" ] && ! grep -q "$(printf '\033')" "$tui_tmp/err"
ok $? "nothing else was printed, no terminal control sequence"
[ "$st" = 2 ] || sed 's/^/# /' "$tui_tmp/err"

# Settings the job file fixes may not be given again, nor images, and a
# boot check needs a reboot: each exits 2 saying why.
job_file tuiauto booted "$sha" true
"$espfleet" --simulate 1 --job "$tui_tmp/job/tuiauto.json" --no-auto \
    >/dev/null 2>"$tui_tmp/err" </dev/null
st=$?
[ "$st" = 2 ] && grep -q 'fixes "auto"; leave out --no-auto' "$tui_tmp/err"
ok $? "--no-auto with a job that sets auto exits 2 (got $st)"
"$espfleet" --simulate 1 --job "$tui_tmp/job/tuiauto.json" \
    "$tui_tmp/job/factory.bin" >/dev/null 2>"$tui_tmp/err" </dev/null
st=$?
[ "$st" = 2 ] && grep -q "give no IMAGE or OFFSET FILE as well" "$tui_tmp/err"
ok $? "--job with an image as well exits 2 (got $st)"
sed 's/"after": "reboot"/"after": "stay"/' "$tui_tmp/job/tuiauto.json" \
    >"$tui_tmp/job/tuistay.json"
"$espfleet" --simulate 1 --job "$tui_tmp/job/tuistay.json" \
    >/dev/null 2>"$tui_tmp/err" </dev/null
st=$?
[ "$st" = 2 ] && grep -q 'boot check with "after": "stay"' "$tui_tmp/err"
ok $? "a boot check with after stay exits 2 (got $st)"

# --lock without --job is a usage error.
"$espfleet" --simulate 1 --lock >/dev/null 2>"$tui_tmp/err" </dev/null
st=$?
[ "$st" = 2 ] && grep -q "needs --job FILE" "$tui_tmp/err"
ok $? "--lock without --job exits 2 and says why (got $st)"

done_testing
