#!/bin/sh
# Resizing the terminal in the middle of a flash keeps every row: the
# table re-flows (a LOCATION column appears at 100 columns and goes again
# at 80), all four slots stay on screen, and the flash goes on to the end.
. "$top_srcdir/tests/tui-common.sh"

tui_altscreen=off
rows_visible() {	# every slot's row on screen now (device "-" between
	_s=$(tui_screen)	# an app unit's BOOT+RST and its return)
	for _k in 0 1 2 3; do
		echo "$_s" | grep -E -q \
		    "^ +$((_k + 1)) +(sim-1\.$((_k + 1)) +)?(tty$_k|-) " ||
		    return 1
	done
}

tui_start 80 24 -- --simulate 4 --profile realistic --fault none \
    --exit-when-done
wait_re "^ +4 .*tty3 " 60
ok $? "all four units arrived"
wait_re "writing .* ([1-9]|[1-9][0-9])%" 120
ok $? "a unit is writing, mid-flash"
tui_screen | grep -q "LOCATION"
[ $? -ne 0 ]
ok $? "no LOCATION column at 80x24"

tui_tmux resize-window -t t -x 100 -y 30
wide() {
	tui_screen | grep -E -q "^SLOT LOCATION +DEVICE" && rows_visible
}
wait_until 20 wide
ok $? "at 100x30 the table uses the room: a LOCATION column"
rows_visible
ok $? "at 100x30 all four slots are on screen" || tui_diag
tui_screen | grep -q "sim-1.4"
ok $? "locations are shown at 100x30"
tui_screen | grep -E -q "writing|verifying|rebooting"
ok $? "still mid-flash after the resize"

tui_tmux resize-window -t t -x 80 -y 24
# tmux re-wraps what was on screen at once; the redraw follows.
narrow() {
	tui_screen | grep -E -q "^SLOT DEVICE +CHIP" && rows_visible
}
wait_until 20 narrow
ok $? "back at 80x24 all four slots are on screen" || tui_diag
tui_screen | grep -q "LOCATION"
[ $? -ne 0 ]
ok $? "back at 80x24 the LOCATION column is gone again"
n=$(tui_screen | wc -l)
[ "$n" -eq 24 ]
ok $? "the pane is 24 lines again ($n)"

wait_exit 240
ok $? "the fleet finished after the resizes"
[ "$tui_status" = 0 ]
ok $? "exit status 0 (got $tui_status)"
tui_snap | grep -E -q " 4 ports +0 active +4 done +0 failed"
ok $? "the last frame counts 4 done"
[ "$tui_status" = 0 ] || tui_diag

done_testing
