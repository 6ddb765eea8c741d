#!/bin/sh
# A lost SSH session: the terminal under the bench goes away in the middle
# of a flash (tmux kill-session hangs up the pane, as sshd does when the
# link drops).  espfleet must take the SIGHUP, cancel every job within its
# deadline and end with status 129, leaving no process behind.
. "$top_srcdir/tests/tap.sh"
[ -n "$TMUX_BIN" ] || skip_all "tmux not installed (apt-get install tmux)"
espfleet="$top_builddir/src/espfleet"
[ -x "$espfleet" ] || skip_all "$espfleet is not built"

sock="espfhup$$"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-hup.XXXXXX") || exit 1
tm() { "$TMUX_BIN" -L "$sock" -f /dev/null "$@"; }
cleanup() {
	tm kill-server >/dev/null 2>&1
	[ -s "$tmp/pid" ] && kill -KILL "$(cat "$tmp/pid")" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# The wrapper shell ignores SIGHUP so that it outlives the terminal and can
# record espfleet's status; espfleet installs its own handler, which
# replaces the inherited "ignore" at start.
cat >"$tmp/run" <<EOS
trap '' HUP
echo \$\$ >"$tmp/pid"
LANG=C.UTF-8 XDG_STATE_HOME="$tmp/state" exec "$espfleet" --simulate 4 \
    --profile realistic --fault none 2>"$tmp/err"
EOS
# exec keeps the pid; the status comes from a second, outer wrapper.
cat >"$tmp/outer" <<EOS
trap '' HUP
sh "$tmp/run"
echo \$? >"$tmp/status"
EOS
tm new-session -d -s t -x 80 -y 24 "sh $tmp/outer"

# Poll (no fixed sleeps) until a unit is writing, then drop the terminal.
i=0
until tm capture-pane -p -t t 2>/dev/null | grep -E -q "writing .* [1-9][0-9]?%"; do
	i=$((i + 1))
	[ $i -lt 600 ] || break
	sleep 0.1
done
[ $i -lt 600 ]
ok $? "a unit is writing"
tm kill-session -t t
t0=$(date +%s)
i=0
until [ -s "$tmp/status" ]; do
	i=$((i + 1))
	[ $i -lt 150 ] || break
	sleep 0.1
done
[ -s "$tmp/status" ]
ok $? "espfleet ended within 15 s of the hang-up ($(( $(date +%s) - t0 )) s)"
st=$(cat "$tmp/status" 2>/dev/null)
[ "$st" = 129 ]
ok $? "exit status 129 (SIGHUP) (got ${st:-none})"
[ -s "$tmp/pid" ] && ! kill -0 "$(cat "$tmp/pid")" 2>/dev/null
ok $? "no espfleet process is left"
grep -q "every job was cancelled" "$tmp/err"
ok $? "it says every job was cancelled (on its standard error)"
[ -s "$tmp/err" ] && diag "$(head -c 400 "$tmp/err")"
done_testing
