#!/bin/sh
# "espfleet --simulate 4 --exit-when-done" runs the simulated fleet to its
# end by itself: with no fault, and with the default transient fault,
# every unit ends done and the status is 0; with a lasting fault that unit
# ends failed with its reason, the rest done, and the status is 1.
. "$top_srcdir/tests/tui-common.sh"

tui_altscreen=off

# With --fault none: "4 done" in the header, status 0.  The unit records
# go to the default place, under $XDG_STATE_HOME.
tui_start 80 24 XDG_STATE_HOME=$tui_tmp/state -- \
    --simulate 4 --profile fast --fault none --exit-when-done
wait_for "SIMULATED" 20
ok $? "the header says SIMULATED"
wait_re " 4 ports +0 active +4 done +0 failed" 60
ok $? "the header counts reach 4 done"
wait_exit 60
ok $? "espfleet ended by itself (--exit-when-done)"
[ "$tui_status" = 0 ]
ok $? "exit status 0 when every unit is done (got $tui_status)"
n=$(tui_snap | grep -E -c "^ +[1-4] tty[0-3] .* done +")
[ "$n" -ge 4 ]
ok $? "every slot's row shows done ($n rows)"
tui_snap | grep -q "^4 done, 0 failed$"
ok $? "the summary after the screen says 4 done, 0 failed"
tui_snap | grep -q "AUTO"
ok $? "auto-flash is armed by default in --simulate"
log="$tui_tmp/state/espfleet/units.jsonl"
n=$(grep -c '"result":"verified"' "$log" 2>/dev/null)
[ "$(wc -l <"$log" 2>/dev/null)" -eq 4 ] && [ "$n" = 4 ]
ok $? "the default record file has 4 lines, each verified ($n)"
n=$(grep -c '"location":"[^"]' "$log" 2>/dev/null)
[ "$n" = 4 ]
ok $? "every record names its physical location ($n)"
[ "$tui_status" = 0 ] || tui_diag

tui_next b

# The default fault is transient (one damaged block, sent again): every
# unit still ends done.  A lasting fault (bit flips in one unit's flash)
# ends that unit failed with its reason, and the status is 1.
tui_start 80 24 -- --simulate 4 --profile fast --exit-when-done
wait_re " 4 ports +0 active +4 done +0 failed" 60
ok $? "with the default (transient) fault the header reaches 4 done"
wait_exit 60
ok $? "espfleet ended by itself"
[ "$tui_status" = 0 ]
ok $? "exit status 0 (got $tui_status)"
tui_snap | grep -q "^4 done, 0 failed$"
ok $? "the summary says 4 done, 0 failed"
[ "$tui_status" = 0 ] || tui_diag

tui_next r

# One flipped bit: the MD5 check fails once, and the bench, like "flash",
# writes the unit again (2 retries by default); with --retries 0 it fails.
tui_start 80 24 -- --simulate 2 --profile fast --exit-when-done --no-log \
    --fault unit=1,kind=bitflip,op=FLASH_DEFL_DATA,at=3
wait_exit 60 && [ "$tui_status" = 0 ] &&
    tui_snap | grep -q "^2 done, 0 failed$"
ok $? "one MD5 mismatch is written again by default: 2 done (exit $tui_status)"
[ "$tui_status" = 0 ] || tui_diag
tui_next s
tui_start 80 24 -- --simulate 2 --profile fast --exit-when-done --no-log \
    --retries 0 --fault unit=1,kind=bitflip,op=FLASH_DEFL_DATA,at=3
wait_exit 60 && [ "$tui_status" = 1 ] &&
    tui_snap | grep -q "^1 done, 1 failed$"
ok $? "... and fails with --retries 0 (exit $tui_status)"

tui_next c

tui_start 80 24 -- --simulate 4 --profile fast --exit-when-done \
    --log "$tui_tmp/fault.jsonl" \
    --fault unit=1,kind=bitflip,op=FLASH_DEFL_DATA,count=0
wait_re " 4 ports +0 active +3 done +1 failed" 60
ok $? "with a lasting fault the header ends at 3 done, 1 failed"
wait_exit 60
ok $? "espfleet ended by itself"
[ "$tui_status" = 1 ]
ok $? "exit status 1 when a unit failed (got $tui_status)"
tui_snap | grep -E -q "^ +[1-4] tty[0-3] .* failed: MD5 of flash does"
ok $? "the failed row gives its reason (MD5 mismatch)"
tui_snap | grep -q "^3 done, 1 failed$"
ok $? "the summary says 3 done, 1 failed"
log="$tui_tmp/fault.jsonl"
n=$(grep -c '"result":"verified"' "$log" 2>/dev/null)
[ "$(wc -l <"$log" 2>/dev/null)" -eq 4 ] && [ "$n" = 3 ]
ok $? "--log FILE has 4 records, 3 verified ($n)"
grep '"result":"failed"' "$log" 2>/dev/null | grep -q '"reason":"[^"]*MD5'
ok $? "the failed unit's record gives the MD5 reason"
[ "$tui_status" = 1 ] || tui_diag

tui_next d

# The default record file cannot be made (its directory would be under a
# regular file): a warning in the message line and the event log, and
# the unit is still flashed.
: >"$tui_tmp/notadir"
tui_start 80 24 XDG_STATE_HOME=$tui_tmp/notadir -- \
    --simulate 1 --profile fast --fault none --no-auto
wait_for "no unit records are kept" 20
ok $? "the message line warns that no unit records are kept"
wait_re " 1 port +0 active" 20 && tui_keys f
wait_re " 1 port +0 active +1 done +0 failed" 60
ok $? "the unit is flashed all the same"
# The details view: the job first, then what it read from the chip.
tui_keys i
wait_re "^. +State +done" 20 &&
    wait_re "^. +Last job +[0-9]+:[0-9]+, [0-9]+ of [0-9]+ bytes, attempt 1" 5 &&
    wait_re "^. +Chip +ESP32-S2FNR2 v[0-9]+\.[0-9]+, 40 MHz crystal" 5 &&
    wait_re "^. +Flash +4\.0 MiB \(JEDEC id 0x[0-9a-f]{6}\)" 5 &&
    wait_re "^. +Security +none " 5 &&
    wait_re "^. +Written by +the ROM loader \(into download mode: already" 5
ok $? "details: state, last job, chip, revision, crystal, flash id, security, writer" ||
    tui_screen | sed 's/^/#   /'
tui_keys i l
wait_re "^ +[0-9.]+ +warning: no unit records are kept: .*notadir" 20
ok $? "the event log has the warning"
tui_keys q q
wait_exit 30
[ "$tui_status" = 0 ]
ok $? "exit status 0 (got $tui_status)"
[ "$tui_status" = 0 ] || tui_diag

tui_next t

# --total: the simulated technician swaps each finished unit for a new
# one; the slots clear at once (the job saw the reset through), so 10
# units pass through 2 slots, and the session tally counts them all.
tui_start 80 24 -- --simulate 2 --profile fast --fault none --total 10 \
    --exit-when-done
wait_re "session [0-9]+ ok 0 failed" 60
ok $? "the header shows the session's tally once units were swapped"
wait_exit 120
ok $? "espfleet ended by itself after the last unit"
tui_snap | grep -q "^this session: 10 verified, 0 failed"
ok $? "the summary says this session: 10 verified, 0 failed"
[ "$tui_status" = 0 ] || tui_diag

done_testing
