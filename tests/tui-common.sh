# Shared helpers for the tmux tests of the bench TUI (sourced, not run).
#
# Each test gets a private tmux server (tmux -L espfPID -f /dev/null), runs
# espfleet in a detached session of a fixed size through a wrapper that
# records its exit status and terminal modes, and reads the screen with
# capture-pane, polling every 100 ms up to a deadline: no fixed sleeps.
. "$top_srcdir/tests/tap.sh"

[ -n "$TMUX_BIN" ] || skip_all "tmux not installed (apt-get install tmux)"
command -v "$TMUX_BIN" >/dev/null 2>&1 || skip_all "tmux ($TMUX_BIN) not found"

espfleet="$top_builddir/src/espfleet"
[ -x "$espfleet" ] || skip_all "$espfleet is not built"

tui_sock="espf$$"
tui_tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-tui.XXXXXX") || exit 1
# A terminal type tmux emulates and this system describes.
if infocmp tmux-256color >/dev/null 2>&1; then
	tui_term=tmux-256color
else
	tui_term=screen
fi

tui_tmux() {
	"$TMUX_BIN" -L "$tui_sock" -f /dev/null "$@"
}

tui_cleanup() {
	tui_tmux kill-server >/dev/null 2>&1
	rm -rf "$tui_tmp"
}
trap tui_cleanup EXIT
trap 'exit 1' HUP INT TERM

# tui_start COLS LINES [ENV=VALUE...] -- ARGS...: run espfleet ARGS in a
# COLS x LINES session named "t".  The wrapper waits on a FIFO until the
# session is set up (remain-on-exit; alternate-screen $tui_altscreen, on by
# default; the pane's output piped to $tui_pipe if set), then writes
# $tui_tmp/status and keeps the pane alive (tmux reports no cursor for a
# dead pane) until tui_release.
tui_start() {
	_cols=$1 _lines=$2
	shift 2
	_env="TERM=$tui_term LANG=C.UTF-8"
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		_env="$_env $1"
		shift
	done
	[ "$1" = "--" ] && shift
	mkfifo "$tui_tmp/go" "$tui_tmp/hold" || return 1
	cat >"$tui_tmp/run.sh" <<EOF
read _go <"$tui_tmp/go"
stty -g >"$tui_tmp/stty.before" 2>/dev/null
env $_env "$espfleet" $*
echo \$? >"$tui_tmp/status.tmp"
stty -g >"$tui_tmp/stty.after" 2>/dev/null
mv "$tui_tmp/status.tmp" "$tui_tmp/status"
read _hold <"$tui_tmp/hold"
EOF
	tui_tmux new-session -d -s t -x "$_cols" -y "$_lines" \
	    "sh $tui_tmp/run.sh" || return 1
	tui_tmux set-option -t t remain-on-exit on >/dev/null || return 1
	# Off: the last frame stays (scrolled up by what follows) after exit.
	tui_tmux set-option -t t alternate-screen "${tui_altscreen:-on}" \
	    >/dev/null || return 1
	# What the program writes to the terminal, if asked for (bench).
	if [ -n "$tui_pipe" ]; then
		tui_tmux pipe-pane -o -t t "$tui_pipe" || return 1
	fi
	echo go >"$tui_tmp/go"
}

# Everything the pane shows, with the scrollback, into stdout.
tui_snap() {
	tui_tmux capture-pane -p -t t -S -500 -E - 2>/dev/null
}

# Only what is on screen now.
tui_screen() {
	tui_tmux capture-pane -p -t t 2>/dev/null
}

# wait_for TEXT SECONDS: poll the screen until TEXT (a fixed string) shows.
wait_for() {
	_end=$(($(date +%s) + $2))
	while :; do
		tui_screen | grep -F -q -- "$1" && return 0
		[ "$(date +%s)" -ge "$_end" ] && return 1
		sleep 0.1
	done
}

# wait_re REGEX SECONDS: the same with an extended regular expression,
# scrollback included (the last frame scrolls up when espfleet exits).
wait_re() {
	_end=$(($(date +%s) + $2))
	while :; do
		tui_snap | grep -E -q -- "$1" && return 0
		[ "$(date +%s)" -ge "$_end" ] && return 1
		sleep 0.1
	done
}

# wait_until SECONDS COMMAND...: poll until COMMAND succeeds.
wait_until() {
	_end=$(($(date +%s) + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$(date +%s)" -ge "$_end" ] && return 1
		sleep 0.1
	done
}

# wait_exit SECONDS: wait for espfleet to end; its status goes to $tui_status.
wait_exit() {
	_end=$(($(date +%s) + $1))
	while [ ! -f "$tui_tmp/status" ]; do
		if [ "$(date +%s)" -ge "$_end" ]; then
			tui_status=timeout
			return 1
		fi
		sleep 0.1
	done
	tui_status=$(cat "$tui_tmp/status")
	return 0
}

# Let the wrapper end once espfleet has (it waits for this on a FIFO).
tui_release() {
	[ -f "$tui_tmp/status" ] && echo done >"$tui_tmp/hold"
}

# tui_next NAME: end this session's tmux server and start afresh on a new
# socket for the next tui_start in the same test.
tui_next() {
	tui_tmux kill-server >/dev/null 2>&1
	rm -f "$tui_tmp/status" "$tui_tmp/go" "$tui_tmp/hold" "$tui_tmp/stty."*
	tui_sock="espf$$$1"
}

# Still running?
tui_running() {
	[ ! -f "$tui_tmp/status" ]
}

# tui_keys KEY...: type into the session.
tui_keys() {
	tui_tmux send-keys -t t "$@"
}

# Show the screen in the TAP output, for failures.
tui_diag() {
	tui_screen | sed 's/^/# /'
}
