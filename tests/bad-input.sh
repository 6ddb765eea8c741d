#!/bin/sh
# Bad input, as a table: each case must exit 2 with a message that names
# the problem, and write nothing: after every case each unit's flashK.bin
# is still all 0xFF and espfleet-sim counts nothing written or erased.
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
FW="${ESPF_SHARED:-$top_srcdir/../shared}/firmware"
FACTORY="$FW/factory-screek-humen-sensor-1u-20230704_1.bin"
FLASH_LEN=4194304

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"
[ -r "$FACTORY" ] || skip_all "no factory image in $FW"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-bad.XXXXXX") || exit 1
simpid=""
holder=""
tsock="espfbad$$"
cleanup() {
	[ -n "$holder" ] && kill "$holder" 2>/dev/null
	[ -n "$simpid" ] && kill "$simpid" 2>/dev/null
	[ -n "$TMUX_BIN" ] && "$TMUX_BIN" -L "$tsock" kill-server \
	    >/dev/null 2>&1
	[ -n "$pty" ] && chmod 620 "$pty" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
# Unit records go to the temporary directory, never to $HOME.
XDG_STATE_HOME="$tmp/state"
export XDG_STATE_HOME
trap 'exit 1' INT TERM

# todo_ok STATUS DESC REASON: a check for a reported product bug; a
# failure is "not ok ... # TODO REASON".
todo_ok() {
	if [ "$1" -eq 0 ]; then
		ok 0 "$2"
	else
		tap_n=$((tap_n + 1))
		echo "not ok $tap_n - $2 # TODO $3"
	fi
}

mkdir -p "$tmp/u"
"$SIM" --units 2 --dir "$tmp/u" --profile fast >"$tmp/sim.out" \
    2>"$tmp/sim.err" &
simpid=$!
n=0
while ! grep -q '^ready' "$tmp/sim.out" 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 300 ] && { echo "Bail out! espfleet-sim not ready"; exit 1; }
	sleep 0.1	# polling for "ready", not a wait for an event
done
P0="$tmp/u/tty0"
P1="$tmp/u/tty1"
pty=$(readlink "$P0")

# The inputs.
head -c $FLASH_LEN /dev/zero | tr '\000' '\377' >"$tmp/ff.bin"
mkdir "$tmp/dir.bin"
: >"$tmp/empty.bin"
head -c $((0x1010)) "$FACTORY" >"$tmp/trunc.bin"	# header cut short
head -c 65536 /dev/urandom >"$tmp/garbage.bin"
printf 'X' | dd of="$tmp/garbage.bin" bs=1 seek=4096 conv=notrunc \
    2>/dev/null		# never 0xE9 at the bootloader offset
head -c $((FLASH_LEN + 4096)) /dev/zero >"$tmp/big.bin"
random_data 65536 >"$tmp/data.bin"
echo "not a tty" >"$tmp/plain"

# other_chip OUT: the factory image with its bootloader's chip id set to
# 0 (ESP32) and its appended SHA-256 made right again, so only the chip
# differs.  The bootloader is at 0x1000: a 24-byte header, segments of
# an 8-byte header and data, the checksum padding to 16, the digest.
other_chip() {
	o=4096
	u32() { od -A n -t u4 -j "$1" -N 4 "$FACTORY" | tr -d ' '; }
	nseg=$(od -A n -t u1 -j $((o + 1)) -N 1 "$FACTORY" | tr -d ' ')
	p=$((o + 24))
	i=0
	while [ "$i" -lt "$nseg" ]; do
		p=$((p + 8 + $(u32 $((p + 4)))))
		i=$((i + 1))
	done
	len=$(((p - o + 16) / 16 * 16))
	cp "$FACTORY" "$1"
	printf '\000' | dd of="$1" bs=1 seek=$((o + 12)) conv=notrunc \
	    2>/dev/null
	h=$(dd if="$1" bs=1 skip=$o count=$len 2>/dev/null | sha256sum |
	    cut -c1-64)
	# The 32 digest bytes, one printf(1) octal escape each.
	esc=""
	for b in $(echo "$h" | sed 's/../& /g'); do
		esc="$esc\\$(printf '%03o' "0x$b")"
	done
	printf "$esc" | dd of="$1" bs=1 seek=$((o + len)) conv=notrunc \
	    2>/dev/null
}
other_chip "$tmp/other.bin"
if "$ESPF" inspect "$tmp/other.bin" 2>&1 | grep -q 'ESP32 image (chip id 0)'
then
	:
else
	diag "the other-chip image was not built right:"
	"$ESPF" inspect "$tmp/other.bin" 2>&1 | tail -n 3 | sed 's/^/#   /'
fi

gen=0
# untouched: 0 if both flashes are all 0xFF and the simulator's stats (a
# fresh generation, asked for with SIGUSR1) count no write or erase.
untouched() {
	cmp -s "$tmp/u/flash0.bin" "$tmp/ff.bin" &&
	    cmp -s "$tmp/u/flash1.bin" "$tmp/ff.bin" || return 1
	gen=$((gen + 1))
	kill -USR1 "$simpid"
	n=0
	while ! head -n 1 "$tmp/u/stats" 2>/dev/null |
	    grep -q "stats $gen\$"; do
		n=$((n + 1))
		[ $n -gt 100 ] && return 1
		sleep 0.05	# polling for the new stats file
	done
	awk '$1 == "unit" && ($14 != 0 || $16 != 0) { bad = 1 }
	    END { exit bad }' "$tmp/u/stats"
}

# case NAME FRAGMENT [TODO-REASON] -- ARGS...: run espfleet ARGS; exit
# status 2, FRAGMENT (an extended regex) in its output, nothing written.
# With a TODO-REASON the exit status check is a TODO (a reported bug).
case_() {
	name=$1
	frag=$2
	todo=""
	shift 2
	if [ "$1" != -- ]; then
		todo=$1
		shift
	fi
	shift
	"$@" >"$tmp/case.out" 2>&1 </dev/null
	rc=$?
	msg=$(grep -v -e '^usage:' -e '^  ' "$tmp/case.out" | head -n 3)
	diag "$name: exit $rc: $msg"
	[ $rc -eq 2 ]
	check $? "$name: exit 2 (got $rc)"
	grep -q -E -e "$frag" "$tmp/case.out"
	ok $? "$name: the message says /$frag/"
	untouched
	check $? "$name: nothing written to either unit"
}

# check STATUS DESC: ok, or a TODO when the case names a reported bug.
check() {
	if [ -n "$todo" ]; then
		todo_ok "$1" "$2" "$todo"
	else
		ok "$1" "$2"
	fi
}

F="$ESPF flash --after stay --port $P0 --port $P1"
case_ "image missing" "missing\.bin.*(No such file|not found|cannot open)" \
    -- $F "$tmp/missing.bin"
case_ "image is a directory" "dir\.bin.*directory" -- $F "$tmp/dir.bin"
case_ "image is empty" "empty\.bin.*empty" -- $F "$tmp/empty.bin"
case_ "truncated header" "trunc\.bin.*(cut short|truncated)" \
    -- $F "$tmp/trunc.bin"
case_ "garbage (no 0xE9 at 0x1000)" "garbage\.bin.*(no bootloader|magic)" \
    -- $F "$tmp/garbage.bin"
case_ "image for another chip" "other\.bin.*ESP32.*(image|chip)" \
    -- $F "$tmp/other.bin"
# No unit is identified before the check: it must not claim one is.
grep -q "unit is" "$tmp/case.out"
[ $? -ne 0 ]
ok $? "image for another chip: no claim about the unit (none identified)"
grep -q "this is an ESP32 image; espfleet expects ESP32-S2" "$tmp/case.out"
ok $? "image for another chip: names the image's chip and the target"
case_ "larger than the flash" "big\.bin.*(more than|larger|too big)" \
    -- $F "$tmp/big.bin"
case_ "overlapping regions" "overlap" \
    -- $F 0x10000 "$tmp/data.bin" 0x18000 "$tmp/data.bin"
case_ "unaligned offset" "0x11000|multiple|align" \
    -- $F 0x10800 "$tmp/data.bin"
case_ "malformed offset" "0x1z000.*offset|offset.*0x1z000" \
    -- $F 0x1z000 "$tmp/data.bin"
case_ "port missing" "tty9.*(no such|not found|missing)" \
    -- $ESPF flash --after stay --port "$P0" --port "$tmp/u/tty9" \
    0x10000 "$tmp/data.bin"
case_ "path not a tty" "plain.*not a (serial port|tty|terminal)" \
    -- $ESPF flash --after stay --port "$P0" --port "$tmp/plain" \
    0x10000 "$tmp/data.bin"
case_ "unknown option" "unknown option.*--frobnicate" \
    -- $F --frobnicate 0x10000 "$tmp/data.bin"
case_ "same port twice" "same port" \
    -- $F --port "$P0" 0x10000 "$tmp/data.bin"
case_ "no --port" "--port" -- $ESPF flash 0x10000 "$tmp/data.bin"
case_ "bad --jobs" "--jobs" -- $F --jobs 0 0x10000 "$tmp/data.bin"
case_ "bad --retries (bench)" "--retries takes .* 0 to 10" -- \
    $ESPF --retries 11 "$FACTORY"

# Permission denied: the pty made mode 000.  root bypasses the mode, so
# then the case runs as nobody.
chmod 000 "$pty"
asuser=""
if [ "$(id -u)" = 0 ]; then
	if command -v setpriv >/dev/null 2>&1; then
		asuser="setpriv --reuid=65534 --regid=65534 --clear-groups"
		chmod 755 "$tmp" "$tmp/u"
		chmod 644 "$tmp/data.bin"
		# Records where nobody may write them.
		mkdir -p "$tmp/nstate"
		chmod 777 "$tmp/nstate"
		asuser="$asuser env XDG_STATE_HOME=$tmp/nstate"
		# nobody must be able to reach the program (a build under a
		# 0700 directory is not): otherwise the row cannot be run.
		if ! $asuser $ESPF --version >/dev/null 2>&1; then
			diag "nobody cannot run $ESPF (a parent directory is private): permission case skipped"
			asuser=""
		fi
	fi
fi
if [ "$(id -u)" != 0 ] || [ -n "$asuser" ]; then
	case_ "permission denied" "tty0.*(ermission|access)" \
	    -- $asuser $ESPF flash --after stay --port "$P0" \
	    0x10000 "$tmp/data.bin"
else
	diag "running as root without setpriv(1): permission case skipped"
fi
chmod 620 "$pty"

# The TUI in a terminal too small for it: a clear message and exit 2.
if [ -n "$TMUX_BIN" ] && [ -x "$TMUX_BIN" ]; then
	cmd="$ESPF --simulate 1 --profile fast 2>$tmp/tui.out;"
	cmd="$cmd echo \$? >$tmp/tui.rc; sleep 30"
	"$TMUX_BIN" -L "$tsock" -f /dev/null new-session -d -x 40 -y 10 \
	    "$cmd"
	n=0
	while ! [ -s "$tmp/tui.rc" ] && [ $n -lt 50 ]; do
		n=$((n + 1))
		sleep 0.1	# polling for espfleet to give up
	done
	if [ -s "$tmp/tui.rc" ]; then
		rc=$(cat "$tmp/tui.rc")
	else
		rc=running
	fi
	"$TMUX_BIN" -L "$tsock" capture-pane -p >>"$tmp/tui.out" 2>/dev/null
	"$TMUX_BIN" -L "$tsock" kill-server >/dev/null 2>&1
	diag "40x10 TUI: exit $rc: $(head -n 2 "$tmp/tui.out" 2>/dev/null)"
	[ "$rc" = 2 ]
	ok $? "TUI at 40x10 exits 2 (got $rc)"
	grep -q -E -i "terminal is 40x10.*at least" "$tmp/tui.out" \
	    2>/dev/null
	ok $? "TUI at 40x10 says the terminal is too small"
else
	diag "tmux missing: the too-small-terminal case is skipped"
fi

# A port held by another program (flock(1) on the pty, as esptool and
# espfleet take it): refused before anything is written.  Last, as the
# free unit may be written if it is not.
if flock --help 2>&1 | grep -q -e --no-fork; then
	flock -n --no-fork "$P1" sleep 60 &
	holder=$!
	n=0
	while ! grep -q "FLOCK .* $holder " /proc/locks && [ $n -lt 50 ]; do
		n=$((n + 1))
		sleep 0.1	# until flock(1) holds the lock
	done
	case_ "port held by another process" "tty1.*(in use|busy|locked)" \
	    -- $F 0x10000 "$tmp/data.bin"
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
	holder=""
else
	diag "flock(1) with --no-fork missing: the held-port case is skipped"
fi

done_testing
