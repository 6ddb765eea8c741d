#!/bin/sh
# q while jobs run asks "N jobs running: quit and cancel them? y/n" first:
# n keeps the jobs going, q then y cancels them and exits, giving the
# terminal back as it was (modes, cursor, main screen).  SIGTERM mid-flash
# does the same without asking and ends with status 143.
. "$top_srcdir/tests/tui-common.sh"

tui_start 80 24 -- --simulate 2 --profile realistic --fault none \
    --log "$tui_tmp/quit.jsonl"
wait_re "writing .* ([1-9]|[1-9][0-9])%" 120
ok $? "a job is writing"

tui_keys q
wait_re "[12] jobs? running: quit and cancel (it|them)\? y/n" 20
ok $? "q asks first while jobs run"
tui_running
ok $? "espfleet still runs while it asks"

tui_keys n
wait_for "quit cancelled; the jobs go on" 20
ok $? "n answers no"
tui_screen | grep -E -q "erasing|writing|verifying|connecting|queued"
ok $? "the jobs go on after n"
tui_running
ok $? "espfleet still runs after n"

tui_keys q
wait_re "running: quit and cancel (it|them)\? y/n" 20
ok $? "q asks again"
tui_keys y
wait_exit 30
ok $? "y quits"
[ "$tui_status" = 1 ]
ok $? "exit status 1: the cancelled units are not flashed (got $tui_status)"
tui_screen | grep -q "cancelled by operator"
ok $? "the summary says the jobs were cancelled by the operator"
tui_screen | grep -E -q "^SLOT DEVICE"
[ $? -ne 0 ]
ok $? "the table is gone: back on the main screen"
[ -s "$tui_tmp/stty.before" ] && cmp -s "$tui_tmp/stty.before" \
    "$tui_tmp/stty.after"
ok $? "the terminal modes are what they were before"
flags=$(tui_tmux display -p -t t '#{alternate_on} #{cursor_flag}')
[ "$flags" = "0 1" ]
ok $? "alternate screen off and cursor visible again ($flags)"
# interrupted_only FILE: records exist and every one says interrupted.
interrupted_only() {
	_n=$(grep -c '"result":"interrupted"' "$1" 2>/dev/null)
	[ "${_n:-0}" -ge 1 ] && [ "$_n" -eq "$(wc -l <"$1")" ]
}
interrupted_only "$tui_tmp/quit.jsonl"
ok $? "the unit records of jobs cancelled by quitting say interrupted"
tui_release

# SIGTERM: the handler only wakes the loop, which cancels and cleans up.
tui_next b
tui_start 80 24 -- --simulate 2 --profile realistic --fault none \
    --log "$tui_tmp/term.jsonl"
wait_re "writing .* ([1-9]|[1-9][0-9])%" 120
ok $? "a job is writing again"
shell=$(tui_tmux display -p -t t '#{pane_pid}')
pid=$(ps -o pid= --ppid "$shell" | tr -d ' ')
[ -n "$pid" ] && kill -TERM "$pid"
ok $? "SIGTERM sent to espfleet (pid $pid)"
wait_exit 30
ok $? "espfleet ended on SIGTERM"
[ "$tui_status" = 143 ]
ok $? "exit status 143 (got $tui_status)"
tui_screen | grep -q "cancelled by operator"
ok $? "its jobs were cancelled"
[ -s "$tui_tmp/stty.before" ] && cmp -s "$tui_tmp/stty.before" \
    "$tui_tmp/stty.after"
ok $? "the terminal modes are restored after SIGTERM"
flags=$(tui_tmux display -p -t t '#{alternate_on} #{cursor_flag}')
[ "$flags" = "0 1" ]
ok $? "main screen and cursor are back after SIGTERM ($flags)"
interrupted_only "$tui_tmp/term.jsonl"
ok $? "the unit records of jobs ended by SIGTERM say interrupted"
tui_release

done_testing
