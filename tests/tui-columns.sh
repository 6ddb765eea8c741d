#!/bin/sh
# At 80x24 every promised column is on screen (slot, device, chip, MAC,
# state, progress bar, rate, elapsed/ETA), with the header (image, size,
# sha256 prefix, counts, AUTO) and the footer's keys; the bar uses block
# glyphs in a UTF-8 locale and '#' otherwise; NO_COLOR turns colours off.
. "$top_srcdir/tests/tui-common.sh"

esc=$(printf '\033')

# run_fleet [ENV=VALUE...]: two fast units to the end, screen kept.
run_fleet() {
	tui_start 80 24 "$@" -- --simulate 2 --profile fast --fault none
	wait_re " [0-9]+ ports? +0 active +2 done +0 failed" 60
}

# The screen with attributes, as SGR sequences.
screen_e() {
	tui_tmux capture-pane -p -e -t t 2>/dev/null
}

# quit_fleet: q (nothing runs, so no question), then let the wrapper end.
quit_fleet() {
	tui_keys q
	wait_exit 30
	tui_release
	tui_tmux kill-server >/dev/null 2>&1
	rm -f "$tui_tmp/status" "$tui_tmp/go" "$tui_tmp/hold"
	tui_sock="$tui_sock.x"
}

run_fleet
ok $? "two units flashed at 80x24"
scr=$(tui_screen)
echo "$scr" | grep -E -q \
    "^SLOT DEVICE +CHIP +MAC +STATE +PROGRESS +RATE +ELAPSED/ETA *$"
ok $? "every column heading is visible, none cut" || tui_diag
mac="7c:df:a1(:[0-9a-f]{2}){3}"
echo "$scr" | grep -E -q \
    "^ +1 tty0 +S2FNR2 +$mac done .* 100% +[0-9.]+[KM] [0-9]+:[0-9]{2} *$"
ok $? "a row shows device, chip, full MAC, state, bar, rate and time" ||
    tui_diag
echo "$scr" |
    grep -E -q "espfleet-demo\.bin +711\.1 KiB +sha256 [0-9a-f]{12} .*AUTO"
ok $? "the header shows image, size, sha256 prefix and AUTO"
echo "$scr" | grep -E -q "[0-9]+ ports? +0 active +2 done +0 failed"
ok $? "the header counts active, done and failed" || tui_diag
echo "$scr" | tail -n 1 | grep -E -q "f flash .*\? help +q quit"
ok $? "the footer lists the keys, help and quit included"
n=$(echo "$scr" | LC_ALL=C.UTF-8 wc -L)
[ "$n" -le 80 ]
ok $? "no line is wider than 80 columns ($n)"
echo "$scr" | grep -F -q "█████"
ok $? "UTF-8 locale: the bar is drawn with block glyphs"
screen_e | grep -q "${esc}\[[0-9;]*3[0-7]m"
ok $? "colours are used when the terminal has them"
quit_fleet
[ "$tui_status" = 0 ]
ok $? "q with nothing running quits at once, status 0 (got $tui_status)"

run_fleet LC_ALL=C LANG=C
ok $? "two units flashed in the C locale"
scr=$(tui_screen)
echo "$scr" | grep -E -q "^ +1 tty0 .* done +##### +100%"
ok $? "C locale: the bar is drawn with #" || tui_diag
echo "$scr" | LC_ALL=C grep -q '[^ -~]'
[ $? -ne 0 ]
ok $? "C locale: only ASCII on screen"
quit_fleet

run_fleet NO_COLOR=1
ok $? "two units flashed with NO_COLOR=1"
screen_e | grep -q "${esc}\[[0-9;]*3[0-7]m"
[ $? -ne 0 ]
ok $? "NO_COLOR: no colour on screen"
screen_e | grep -q "${esc}\[[0-9;]*7m"
ok $? "NO_COLOR: attributes (reverse video) still mark the header"
quit_fleet

done_testing
