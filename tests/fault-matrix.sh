#!/bin/sh
# Fault matrix: espfleet flash on 8 emulated units at a time, some of them
# with a fault espfleet-sim injects at a seeded random point (every kind the
# simulator knows, each ROM error code 0x05-0x0B).  Every unit must end
# verified with its flash equal to the image, or failed with a specific
# reason; never a false "verified", never a run past the deadline computed
# from esptool's timeout table, never a crash; the units without a fault
# all verify.  Transient faults (a dropped reply, a corrupt byte, a ROM
# checksum error, a re-enumeration) must be recovered by the retries
# (--retries, default 2); a persistent one still fails.
#
# Environment: FM_SEED (default: from the clock; printed), FM_RUNS (at
# least this many runs; more until every kind ran once), FM_MAXF (faulted
# units per run, 1 to this; 8 faults every unit), FM_PAR (runs at once),
# FM_SUMMARY=1 prints the summary table on stdout (make stress).
. "$top_srcdir/tests/tap.sh"

ESPF="$top_builddir/src/espfleet"
SIM="$top_builddir/src/espfleet-sim"
UNITS=8
OFFSET=65536
IMGLEN=65536

[ -x "$ESPF" ] || skip_all "src/espfleet is not built"
[ -x "$SIM" ] || skip_all "src/espfleet-sim is not built"
command -v timeout >/dev/null 2>&1 || skip_all "timeout(1) is missing"

SEED=${FM_SEED:-$(($(date +%s) % 100000))}
RUNS=${FM_RUNS:-6}
MAXF=${FM_MAXF:-3}
PAR=${FM_PAR:-3}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espf-fm.XXXXXX") || exit 1
cleanup() {
	for f in "$tmp"/*.simpid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
# Unit records go to the temporary directory, never to $HOME.
XDG_STATE_HOME="$tmp/state"
export XDG_STATE_HOME
trap 'exit 1' INT TERM

diag "seed $SEED (rerun with FM_SEED=$SEED), runs >= $RUNS, up to" \
    "$MAXF faulted units of $UNITS per run, $PAR runs at once"

# The image: 56 KiB of random bytes and 8 KiB of a pattern, at 0x10000.
# Its content does not steer the faults (the compressed length, 57 blocks,
# does not change); it is kept in the temporary directory only.
random_data $((IMGLEN - 8192)) >"$tmp/img.bin"
i=0
while [ $i -lt 512 ]; do
	printf 'espfleet-fault%02x' $((i % 256))
	i=$((i + 1))
done >>"$tmp/img.bin"
if [ "$(wc -c <"$tmp/img.bin")" -ne $IMGLEN ]; then
	echo "Bail out! the image is not $IMGLEN bytes"
	exit 1
fi

# sim_takes SPEC: 0 if espfleet-sim accepts the fault spec.  A refused
# spec exits 2 before anything is made; an accepted one gets as far as
# the directory, which cannot be made, and exits 1.
sim_takes() {
	"$SIM" --units 1 --dir /proc/espf-no-such/dir --fault "$1" \
	    >/dev/null 2>&1
	[ $? -ne 2 ]
}

# The kinds: name and the spec family the plan below turns into a spec.
KINDS="drop-reply corrupt-out corrupt-in stall-short stall-long"
for c in 05 06 07 08 09 0a 0b; do
	KINDS="$KINDS rom-error-0x$c"
done
KINDS="$KINDS bitflip noise unplug-out unplug-in"
sim_takes "kind=reenum,at=1" && KINDS="$KINDS reenum"
sim_takes "kind=slow-flash,factor=2" && KINDS="$KINDS slow-flash"
sim_takes "kind=unplug,op=FLASH_DEFL_DATA,at=1" &&
    KINDS="$KINDS unplug-phase"
for k in reenum slow-flash unplug-phase; do
	case " $KINDS " in
	*" $k "*) ;;
	*) diag "espfleet-sim has no '$k' fault yet: not in the matrix";;
	esac
done
diag "kinds: $KINDS"

# The plan: one line per faulted unit, "RUN UNIT KIND SPEC", from the
# seed.  Kinds are dealt from a shuffled deck, so every kind runs once
# every len(deck) faults; each run faults 1 to MAXF distinct units.
awk -v seed="$SEED" -v runs="$RUNS" -v maxf="$MAXF" -v units=$UNITS \
    -v kinds="$KINDS" '
function rnd(lo, hi) { return lo + int(rand() * (hi - lo + 1)) }
function pick_op(   n) {
	n = split("- SYNC READ_REG SPI_ATTACH SPI_SET_PARAMS " \
	    "FLASH_DEFL_BEGIN FLASH_DEFL_DATA FLASH_DEFL_DATA SPI_FLASH_MD5",
	    ops, " ")
	return ops[rnd(1, n)]
}
# at= for a fault counted in the replies or requests of op.
function op_at(op) {
	if (op == "-") return rnd(1, 100)
	if (op == "SYNC") return rnd(1, 8)
	if (op == "READ_REG") return rnd(1, 12)
	if (op == "FLASH_DEFL_DATA") return rnd(1, 57)
	return 1
}
function with_op(base,   op) {
	op = pick_op()
	if (op == "-")
		return base ",at=" op_at(op)
	return base ",op=" op ",at=" op_at(op)
}
function spec(kind, u,   b) {
	b = "unit=" u ",kind="
	if (kind == "drop-reply") return with_op(b "drop-reply")
	if (kind == "corrupt-out") return b "corrupt,at=" rnd(1, 1400)
	if (kind == "corrupt-in") return b "corrupt,at=" rnd(1, 68000) ",dir=in"
	if (kind == "stall-short") return with_op(b "stall,ms=" rnd(20, 2000))
	if (kind == "stall-long") return with_op(b "stall,ms=" rnd(3200, 4500))
	if (kind ~ /^rom-error-/)
		return with_op(b "rom-error,code=" substr(kind, 11))
	if (kind == "bitflip") return b "bitflip,at=" rnd(1, 57)
	if (kind == "noise") return with_op(b "noise")
	if (kind == "unplug-out") return b "unplug,at=" rnd(1, 1400)
	if (kind == "unplug-in") return b "unplug,at=" rnd(1, 68000) ",dir=in"
	if (kind == "reenum") return with_op(b "reenum")
	if (kind == "slow-flash") return b "slow-flash,factor=" rnd(2, 20)
	if (kind == "unplug-phase") {
		# The unplug in a phase: when the Nth command OP arrives.
		do op = pick_op(); while (op == "-")
		return b "unplug,op=" op ",at=" op_at(op)
	}
	return b kind
}
function shuffle(   i, j, t) {
	for (i = nk; i > 1; i--) {
		j = rnd(1, i)
		t = deck[i]; deck[i] = deck[j]; deck[j] = t
	}
	top = 0
}
BEGIN {
	srand(seed)
	nk = split(kinds, deck, " ")
	for (i = 1; i <= nk; i++) seen[deck[i]] = 0
	shuffle()
	r = 0
	for (;;) {
		left = 0
		for (k in seen) if (!seen[k]) left++
		if (r >= runs && left == 0) break
		nf = maxf >= units ? units : rnd(1, maxf)
		for (u = 0; u < units; u++) used[u] = 0
		for (f = 0; f < nf; f++) {
			do u = rnd(0, units - 1); while (used[u])
			used[u] = 1
			if (top >= nk) shuffle()
			kind = deck[++top]
			seen[kind]++
			print r, u, kind, spec(kind, u)
		}
		r++
	}
}' >"$tmp/plan" || { echo "Bail out! plan"; exit 1; }
NRUNS=$(($(awk '{ r = $1 } END { print r }' "$tmp/plan") + 1))
diag "$NRUNS runs, $(wc -l <"$tmp/plan") faults"

# Bound for one run, in s, from esptool's timeout table (DEFAULT_TIMEOUT
# 3 s, SYNC 0.1 s, 7 connect attempts of 5 SYNCs with a 50 ms gap; the
# per-MB timeouts are under their 3 s floor for 64 KiB): a fault hit costs
# at most 3 attempts of a 3 s command, one reconnect (5.25 s), plus the
# stall; 20 s for the fault-free part of the run (fast profile, slowest
# sanitizer build).  Units run in parallel: the slowest unit bounds it.
bound() {
	awk -v r="$1" '$1 == r {
		ms = 0
		if (match($4, /ms=[0-9]+/))
			ms = substr($4, RSTART + 3, RLENGTH - 3)
		# slow-flash: one 64 KiB block erase (0.25 s) and 64 KiB of
		# programming (0.15 s) take factor times as long.
		if (match($4, /factor=[0-9]+/))
			ms = substr($4, RSTART + 7, RLENGTH - 7) * 400
		t = 9 + 5.25 + ms / 1000
		if (t > max) max = t
	} END { print int(20 + max + 1) }' "$tmp/plan"
}

# run_one R: one run: the simulator with its faults, espfleet flash under
# timeout(1), then one result line per unit in $tmp/R.res.
run_one() {
	r=$1
	d="$tmp/r$r"
	mkdir -p "$d"
	set -- --units $UNITS --dir "$d" --profile fast --seed $((SEED + r))
	for s in $(awk -v r="$r" '$1 == r { print $4 }' "$tmp/plan"); do
		set -- "$@" --fault "$s"
	done
	"$SIM" "$@" >"$d.simout" 2>"$d.simerr" &
	sp=$!
	echo $sp >"$tmp/r$r.simpid"
	n=0
	while ! grep -q '^ready' "$d.simout" 2>/dev/null; do
		n=$((n + 1))
		if [ $n -gt 300 ] || ! kill -0 $sp 2>/dev/null; then
			echo "run $r setup-failed" >"$tmp/r$r.res"
			kill $sp 2>/dev/null
			return
		fi
		sleep 0.1	# polling for "ready", not a wait for an event
	done
	t=$(bound "$r")
	ports=""
	k=0
	while [ $k -lt $UNITS ]; do
		ports="$ports --port $d/tty$k"
		k=$((k + 1))
	done
	t0=$(date +%s%N)
	timeout -k 5 "$t" "$ESPF" flash $ports --after stay \
	    0x10000 "$tmp/img.bin" >"$d.out" 2>"$d.err"
	rc=$?
	t1=$(date +%s%N)
	kill $sp 2>/dev/null
	wait $sp
	src=$?
	rm -f "$tmp/r$r.simpid"
	san=0
	grep -q -e 'Sanitizer' -e 'runtime error:' "$d.err" && san=1
	{
		echo "run $r rc $rc ms $(((t1 - t0) / 1000000)) bound $t" \
		    "simrc $src san $san"
		sed -n '/^$/,$p' "$d.out" >"$d.sum"
		k=0
		while [ $k -lt $UNITS ]; do
			kind=$(awk -v r="$r" -v u=$k \
			    '$1 == r && $2 == u { print $3 }' "$tmp/plan")
			line=$(grep "^tty$k: " "$d.sum" | head -n 1)
			case "$line" in
			"tty$k: verified ("*) out=verified; why="";;
			"tty$k: failed: "*) out=failed
				why=${line#"tty$k: failed: "};;
			*) out=none; why=$line;;
			esac
			eq=0
			cmp -s -i "$OFFSET:0" -n $IMGLEN "$d/flash$k.bin" \
			    "$tmp/img.bin" && eq=1
			echo "unit $k ${kind:-none} $out $eq $why"
			k=$((k + 1))
		done
	} >"$tmp/r$r.res.tmp"
	mv "$tmp/r$r.res.tmp" "$tmp/r$r.res"
}

r=0
while [ $r -lt "$NRUNS" ]; do
	pids=""
	b=0
	while [ $b -lt "$PAR" ] && [ $r -lt "$NRUNS" ]; do
		run_one $r &
		pids="$pids $!"
		r=$((r + 1))
		b=$((b + 1))
	done
	for p in $pids; do
		wait "$p"
	done
done

# generic REASON: 0 if a failure reason says nothing specific.
generic() {
	[ ${#1} -lt 16 ] && return 0
	echo "$1" | grep -q -i -E \
	    '^(error|failed|unknown( error)?|(i/o|input/output|internal) error)$'
}

false_ok=0
hangs=0
crashes=0
bystander_bad=0
flashes=0
faulted=0
r=0
while [ $r -lt "$NRUNS" ]; do
	res="$tmp/r$r.res"
	specs=$(awk -v r="$r" '$1 == r { printf " %s", $4 }' "$tmp/plan")
	if ! [ -f "$res" ] || grep -q setup-failed "$res"; then
		ok 1 "run $r: espfleet-sim did not start:$specs"
		sed 's/^/#   /' "$tmp/r$r.simerr" 2>/dev/null
		r=$((r + 1))
		continue
	fi
	set -- $(head -n 1 "$res")
	rc=$4 ms=$6 t=$8 simrc=${10} san=${12}
	bad=""
	case $rc in
	0|1) ;;
	124|137) hangs=$((hangs + 1)); bad="$bad hang(rc $rc, >$t s)";;
	*) crashes=$((crashes + 1)); bad="$bad exit-status-$rc";;
	esac
	[ "$san" = 0 ] || { crashes=$((crashes + 1)); bad="$bad sanitizer"; }
	[ "$simrc" = 0 ] || bad="$bad espfleet-sim-exit-$simrc"
	nver=0
	while read -r w k kind out eq why; do
		[ "$w" = unit ] || continue
		flashes=$((flashes + 1))
		[ "$kind" = none ] || faulted=$((faulted + 1))
		echo "$kind $out $why" >>"$tmp/outcomes"
		[ "$out" = verified ] && nver=$((nver + 1))
		if [ "$out" = verified ] && [ "$eq" != 1 ]; then
			false_ok=$((false_ok + 1))
			bad="$bad tty$k:false-OK"
		fi
		if [ "$out" = none ]; then
			bad="$bad tty$k:no-outcome"
		elif [ "$out" = failed ] && generic "$why"; then
			bad="$bad tty$k:vague-reason"
		fi
		if [ "$kind" = none ] && { [ "$out" != verified ] ||
		    [ "$eq" != 1 ]; }; then
			bystander_bad=$((bystander_bad + 1))
			bad="$bad tty$k:unfaulted-not-verified"
		fi
	done <"$res"
	if [ "$rc" = 0 ] && [ $nver -ne $UNITS ]; then
		bad="$bad exit-0-with-failures"
	fi
	if [ "$rc" = 1 ] && [ $nver -eq $UNITS ]; then
		bad="$bad exit-1-all-verified"
	fi
	desc="run $r ($nver/$UNITS verified, exit $rc, $ms ms, bound $t s):"
	[ -z "$bad" ]
	if ! ok $? "$desc$specs"; then
		diag "problems:$bad"
		sed 's/^/#   /' "$tmp/r$r.sum"
		sed 's/^/#   stderr: /' "$tmp/r$r.err" | head -n 20
	fi
	awk '$1 == "unit" && $3 != "none" {
		printf "#   tty%s %s: %s", $2, $3, $4
		for (i = 6; i <= NF; i++) printf " %s", $i
		printf "\n" }' "$res"
	r=$((r + 1))
done

[ $false_ok -eq 0 ]
ok $? "no false verified: $false_ok"
[ $hangs -eq 0 ]
ok $? "no run past its deadline: $hangs"
[ $crashes -eq 0 ]
ok $? "no crash (exit status 0 or 1 only, no sanitizer report): $crashes"
[ $bystander_bad -eq 0 ]
ok $? "units without a fault all verified, byte-equal: $bystander_bad bad"

# Per kind: how many faults ran, verified, failed, and the reasons.
awk '
# Numbers as N, addresses and digests as X; ROM codes (0x05) are kept.
function norm(s,   out) {
	out = ""
	while (match(s, /[0-9a-fx]+/)) {
		t = substr(s, RSTART, RLENGTH)
		out = out substr(s, 1, RSTART - 1)
		if (t ~ /^0x[0-9a-f][0-9a-f]$/ || t !~ /[0-9]/ ||
		    (RSTART > 1 && substr(s, RSTART - 1, 1) ~ /[A-Za-z_]/))
			out = out t
		else if (t ~ /^[0-9]+$/)
			out = out "N"
		else
			out = out "X"
		s = substr(s, RSTART + RLENGTH)
	}
	return out s
}
$1 != "none" {
	n[$1]++
	if ($2 == "verified") v[$1]++
	else {
		f[$1]++
		$1 = ""; $2 = ""
		sub(/^ +/, "")
		w[norm($0)]++
	}
} END {
	printf "kind verified failed\n"
	for (k in n) printf "%s %d %d\n", k, v[k], f[k]
	for (s in w) printf "reason %d %s\n", w[s], s
}' "$tmp/outcomes" >"$tmp/table"
for k in $KINDS; do
	grep -q "^$k " "$tmp/table" && continue
	diag "kind $k never ran"
	ok 1 "every kind ran"
done

summary() {
	echo "fault matrix: seed $SEED, $NRUNS runs, $flashes flashes" \
	    "($faulted faulted)"
	echo "verified: $(awk '$2 == "verified"' "$tmp/outcomes" | wc -l)"
	echo "failed:   $(awk '$2 == "failed"' "$tmp/outcomes" | wc -l)"
	printf '  %-16s %8s %8s\n' kind verified failed
	grep -v -e '^reason ' -e '^kind ' "$tmp/table" | sort |
	    awk '{ printf "  %-16s %8d %8d\n", $1, $2, $3 }'
	echo "failure reasons (numbers as N, addresses and digests as X):"
	grep '^reason ' "$tmp/table" | sort -k2,2nr |
	    awk '{ $1 = ""; printf " %s\n", $0 }'
	echo "false OKs:                $false_ok (must be 0)"
	echo "hangs past deadline:      $hangs (must be 0)"
	echo "crashes:                  $crashes (must be 0)"
	echo "unfaulted units not verified: $bystander_bad (must be 0)"
}
# Transient faults: one dropped FLASH_DEFL_DATA reply (unit 0), one
# corrupt byte in a FLASH_DEFL_DATA reply (unit 1: 1000 bytes of output is
# past identification, in the block replies), a ROM checksum error on a
# block (unit 2) and, if the simulator has it, a re-enumeration in the
# middle of the write (unit 3).  The issue asks for a retry
# count (default 2) that recovers them; with --retries the test uses it.
retries="--retries 2"
"$ESPF" flash --retries 2 --help >/dev/null 2>&1
ok $? "espfleet flash takes --retries N"
d="$tmp/transient"
mkdir -p "$d"
reenum=""
case " $KINDS " in
*" reenum "*) reenum="--fault unit=3,kind=reenum,op=FLASH_DEFL_DATA,at=10";;
esac
"$SIM" --units 5 --dir "$d" --profile fast --seed "$SEED" $reenum \
    --fault unit=4,kind=rom-error,code=0x07,op=FLASH_DEFL_DATA,at=3,count=9 \
    --fault unit=0,kind=drop-reply,op=FLASH_DEFL_DATA,at=5 \
    --fault unit=1,kind=corrupt,at=1000 \
    --fault unit=2,kind=rom-error,code=0x07,op=FLASH_DEFL_DATA,at=3 \
    >"$d.simout" 2>"$d.simerr" &
echo $! >"$tmp/transient.simpid"
n=0
while ! grep -q '^ready' "$d.simout" 2>/dev/null && [ $n -lt 300 ]; do
	n=$((n + 1))
	sleep 0.1	# polling for "ready", not a wait for an event
done
timeout -k 5 40 "$ESPF" flash $retries --port "$d/tty0" --port "$d/tty1" \
    --port "$d/tty2" --port "$d/tty3" --port "$d/tty4" --after stay \
    0x10000 "$tmp/img.bin" \
    >"$d.out" 2>&1
rc=$?
kill "$(cat "$tmp/transient.simpid")" 2>/dev/null
rm -f "$tmp/transient.simpid"
sed -n '/^$/,$p' "$d.out" | sed 's/^/#   /'
# transient_ok K: unit K verified and its flash holds the image.
transient_ok() {
	grep -q "^tty$1: verified (" "$d.out" &&
	    cmp -s -i "$OFFSET:0" -n $IMGLEN "$d/flash$1.bin" "$tmp/img.bin"
}
transient_ok 2
ok $? "a ROM checksum error (0x07) on one block is sent again: verified"
# The block retry recovers these two (the ROM's "bad parameter" answer to
# a block it took before is understood), with or without --retries.
transient_ok 0
ok $? "one dropped FLASH_DEFL_DATA reply is retried: verified"
transient_ok 1
ok $? "one corrupt reply byte is retried: verified"
if [ -n "$reenum" ]; then
	transient_ok 3
	ok $? "a re-enumeration mid-write is retried: verified"
fi
# A checksum error on every try of a block: 3 block tries, 3 attempts.
re="^tty4: failed: FLASH_DEFL_DATA block [0-9]+/57 .*ROM status 0x07"
grep -q -E "$re.* \(gave up after 3 attempts\)$" "$d.out"
ok $? "a persistent fault still fails, naming the 3 attempts"

if [ "${FM_SUMMARY:-0}" = 1 ]; then
	summary
else
	summary | sed 's/^/# /'
fi

done_testing
