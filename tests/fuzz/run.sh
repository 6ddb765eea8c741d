#!/bin/sh
# Build the libFuzzer targets with $CLANG straight from their sources and
# run each for FUZZ_SECONDS on a scratch copy of its seed corpus (the
# repository's corpus is never written).  Prints one TAP line per target
# with execs, coverage and findings; a crash, leak, timeout or OOM fails
# the line and a diag line names the saved input and how to replay it.
#
# Usage: run.sh [-t] [target ...]	(-t: also print a summary table)
# Environment: CLANG, top_srcdir, top_builddir (config.h lives there),
#   FUZZ_SECONDS (20), FUZZ_JOBS (targets run at once; default: CPUs),
#   FUZZ_TIMEOUT (seconds one input may take, 20; a timeout counts only
#   if replaying the input alone times out again, since a loaded host
#   can stall any input).
# Binaries, logs and crash inputs go to $top_builddir/tests/fuzz/.
#
# The seeds in tests/fuzz/corpus/TARGET/ were made for this project with
# its own builders (proto_build_*, slip_encode, demo_build and small
# hand-made images and scripts); no vendor firmware is in them.

: "${top_srcdir:?top_srcdir is not set}"
: "${top_builddir:?top_builddir is not set}"
. "$top_srcdir/tests/tap.sh"

table=0
if [ "${1:-}" = "-t" ]; then
	table=1
	shift
fi
targets=${*:-slip proto image emu}
seconds=${FUZZ_SECONDS:-20}
timeout=${FUZZ_TIMEOUT:-20}
for v in "$seconds" "$timeout"; do
	case $v in
	''|*[!0-9]*|0*)
		echo "Bail out! FUZZ_SECONDS and FUZZ_TIMEOUT must be" \
		    "positive numbers of seconds"
		exit 1
		;;
	esac
done

[ -n "${CLANG:-}" ] ||
    skip_all "no clang (configure found none; install clang to fuzz)"
[ -f "$top_builddir/config.h" ] ||
    skip_all "no config.h in $top_builddir (run configure)"

outdir=$top_builddir/tests/fuzz
mkdir -p "$outdir" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/espf-fuzz.XXXXXX") || exit 1
pids=
# Stop our own fuzzers (their pids are in $work) and the runners, by id.
fuzz_stop() {
	for f in "$work"/*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	[ -n "$pids" ] && kill $pids 2>/dev/null
}
trap 'rm -rf "$work"' EXIT
trap 'fuzz_stop; exit 130' INT
trap 'fuzz_stop; exit 143' TERM

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
CFL="-std=gnu11 -g -O1 -fno-omit-frame-pointer $SAN"
INC="-I$top_srcdir/include -I$top_builddir"
# The harnesses are held to the project's warnings; the modules are
# compiled as they are (their warnings are the gcc build's business).
WARN="-Wall -Wextra -Wno-unused-parameter -Wshadow -Wmissing-prototypes
 -Wstrict-prototypes -Wwrite-strings -Wdeclaration-after-statement -Wvla
 -Wformat=2 -Werror"
LIBS=$(pkg-config --libs zlib nettle 2>/dev/null) || LIBS="-lz -lnettle"

# Can this clang link a fuzzer at all?  If not, there is nothing to test.
cat >"$work/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{ (void)d; (void)n; return 0; }
EOF
if ! "$CLANG" $CFL "$work/probe.c" -o "$work/probe" >"$work/probe.log" \
    2>&1; then
	skip_all "$CLANG cannot link -fsanitize=fuzzer,address,undefined" \
	    "(install the compiler-rt/libFuzzer runtime)"
fi

# The library sources a target is built from (its module first).
fuzz_sources() {
	case $1 in
	slip)	echo "src/slip.c" ;;
	proto)	echo "src/proto.c" ;;
	image)	echo "src/image.c src/util.c src/digest.c src/chip.c" ;;
	emu)	echo "src/emu.c src/emu-boot.c src/emu-fault.c" \
		    "src/emu-flash.c src/emu-reg.c src/emu-rom.c" \
		    "src/emu-stub.c src/image.c src/chip.c src/digest.c" \
		    "src/proto.c src/slip.c src/util.c" ;;
	*)	return 1 ;;
	esac
}

# Extra libFuzzer options per target.
fuzz_options() {
	case $1 in
	emu)	echo "-max_len=16384" ;;
	*)	echo "-max_len=8192" ;;
	esac
}

# Build tests/fuzz/fuzz-$1 unless it is newer than everything it is made
# of.  Writes the reason for a failure to $work/$1.build.
fuzz_build() {
	t=$1
	bin=$outdir/fuzz-$t
	srcs="tests/fuzz/fuzz-$t.c $(fuzz_sources "$t")"
	paths=
	for s in $srcs; do
		paths="$paths $top_srcdir/$s"
	done
	if [ -x "$bin" ]; then
		stale=0
		for p in $paths "$top_srcdir"/include/*.h \
		    "$top_srcdir"/src/*.h "$top_builddir/config.h"; do
			[ -n "$(find "$p" -newer "$bin")" ] && stale=1
		done
		[ $stale -eq 0 ] && return 0
	fi
	# shellcheck disable=SC2086
	"$CLANG" $CFL $WARN $INC -c "$top_srcdir/tests/fuzz/fuzz-$t.c" \
	    -o "$work/$t.o" >"$work/$t.build" 2>&1 || return 1
	# shellcheck disable=SC2086,SC2046
	"$CLANG" $CFL $INC "$work/$t.o" $(for s in $(fuzz_sources "$t"); do
	    echo "$top_srcdir/$s"; done) $LIBS -o "$work/fuzz-$t" \
	    >>"$work/$t.build" 2>&1 || return 1
	mv -f "$work/fuzz-$t" "$bin"
}

# Build and run one target; the outcome goes to $work/$1.res.
fuzz_run() {
	t=$1
	res=$work/$t.res
	log=$outdir/fuzz-$t.log
	art=$outdir/findings/$t
	first=$(fuzz_sources "$t" | cut -d' ' -f1)
	if [ ! -f "$top_srcdir/$first" ]; then
		echo "status=skip" >"$res"
		echo "why=$first is not written yet" >>"$res"
		return
	fi
	if ! fuzz_build "$t"; then
		echo "status=build" >"$res"
		return
	fi
	mkdir -p "$work/corpus/$t" "$art"
	if [ -d "$top_srcdir/tests/fuzz/corpus/$t" ]; then
		cp "$top_srcdir/tests/fuzz/corpus/$t/"* "$work/corpus/$t/" \
		    2>/dev/null
		# Read-only sources (distcheck) must not make the copy so.
		chmod -R u+w "$work/corpus/$t"
	fi
	seeds=$(ls "$work/corpus/$t" | wc -l | tr -d ' ')
	start=$(date +%s)
	# shellcheck disable=SC2046
	UBSAN_OPTIONS=print_stacktrace=1 "$outdir/fuzz-$t" \
	    -max_total_time="$seconds" -print_final_stats=1 \
	    -timeout="$timeout" -rss_limit_mb=2048 $(fuzz_options "$t") \
	    -artifact_prefix="$art/" "$work/corpus/$t" >"$log" 2>&1 &
	echo $! >"$work/$t.pid"
	wait $!
	rc=$?
	rm -f "$work/$t.pid"
	end=$(date +%s)
	{
		echo "rc=$rc"
		echo "secs=$((end - start))"
		echo "seeds=$seeds"
		echo "execs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
		    "$log" | tail -n 1)"
		echo "eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' \
		    "$log" | tail -n 1)"
		echo "cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 |
		    cut -d' ' -f2)"
		echo "ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 |
		    cut -d' ' -f2)"
		echo "corpus=$(ls "$work/corpus/$t" | wc -l | tr -d ' ')"
		echo "seed=$(sed -n 's/^INFO: Seed: *//p' "$log" | head -n 1)"
		artifact=$(sed -n 's/.*Test unit written to //p' "$log" |
		    grep -v '/slow-unit-' | head -n 1)
		echo "artifact=$artifact"
		# A timeout must happen again with the input on its own.
		case $artifact in
		*/timeout-*)
			if "$outdir/fuzz-$t" -timeout="$timeout" "$artifact" \
			    >"$log.replay" 2>&1; then
				echo "spurious=$artifact"
			fi
			;;
		esac
	} >"$res"
}

# Read one field of a result file.
res_get() {
	sed -n "s/^$2=//p" "$work/$1.res" | head -n 1
}

# Run the targets, FUZZ_JOBS at a time.
jobs=${FUZZ_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
n=0
for t in $targets; do
	if ! fuzz_sources "$t" >/dev/null; then
		echo "Bail out! unknown fuzz target \"$t\""
		exit 1
	fi
	fuzz_run "$t" &
	pids="$pids $!"
	n=$((n + 1))
	if [ "$n" -ge "$jobs" ]; then
		wait
		pids=
		n=0
	fi
done
wait
pids=

# Report in target order.
summary=
for t in $targets; do
	status=$(res_get "$t" status)
	case $status in
	skip)
		echo "ok $((tap_n + 1)) - fuzz-$t # SKIP $(res_get "$t" why)"
		tap_n=$((tap_n + 1))
		summary="$summary$t - - - - - skipped
"
		continue
		;;
	build)
		ok 1 "fuzz-$t: builds with $CLANG"
		sed 's/^/# /' "$work/$t.build" | head -n 30
		summary="$summary$t - - - - - build-failed
"
		continue
		;;
	esac
	rc=$(res_get "$t" rc)
	execs=$(res_get "$t" execs)
	eps=$(res_get "$t" eps)
	cov=$(res_get "$t" cov)
	ft=$(res_get "$t" ft)
	secs=$(res_get "$t" secs)
	artifact=$(res_get "$t" artifact)
	spurious=$(res_get "$t" spurious)
	log=$outdir/fuzz-$t.log
	note=
	if [ -n "$spurious" ] && [ -n "$execs" ]; then
		# The fuzzer stopped early, but on nothing the input causes.
		diag "fuzz-$t: $spurious timed out, but not when replayed" \
		    "alone (host load?); replay log: $log.replay"
		note=" (stopped early: 1 timeout that did not reproduce)"
		rc=0
		artifact=
	fi
	if [ "$rc" -eq 0 ] && [ -z "$artifact" ] && [ -n "$execs" ]; then
		desc="fuzz-$t: $execs execs in ${secs}s ($eps/s), cov $cov,"
		desc="$desc ft $ft, corpus $(res_get "$t" seeds) ->"
		ok 0 "$desc $(res_get "$t" corpus), 0 findings$note"
		findings=0
	else
		# The first thing that went wrong: a harness check, a
		# sanitizer report, or libFuzzer's own verdict.
		kind=$(sed -n -E \
		    -e 's/^(fuzz-[a-z]+: .*)/\1/p' \
		    -e 's/.*runtime error: (.*)/UBSan: \1/p' \
		    -e 's/.*ERROR: ([A-Za-z]+): ([a-z-]+).*/\1: \2/p' \
		    "$log" | head -n 1)
		desc="fuzz-$t: 1 finding after ${execs:-?} execs (exit $rc):"
		ok 1 "$desc ${kind:-see the log}"
		if [ -n "$artifact" ]; then
			diag "input: $artifact"
			bytes=$(od -An -tx1 -v "$artifact" | tr -s ' \n' '  ')
			diag "bytes:$(echo "$bytes" | cut -c1-200)"
			diag "replay: $outdir/fuzz-$t $artifact"
			diag "minimise: $outdir/fuzz-$t -minimize_crash=1" \
			    "-runs=20000 -exact_artifact_path=$artifact.min" \
			    "$artifact"
		else
			diag "no input was saved; see the log"
		fi
		diag "seed: $(res_get "$t" seed); log: $log"
		# The report, and the stack frames in this project's code.
		grep -E -e '^(==[0-9]+==|SUMMARY|fuzz-|.*runtime error)' \
		    -e "^ +#[0-9]+ .* in [a-zA-Z_]+ $top_srcdir/" "$log" |
		    head -n 20 | sed 's/^/#   /'
		findings=1
	fi
	row="$t $secs ${execs:--} ${eps:--} ${cov:--} ${ft:--} $findings"
	summary="$summary$row
"
done

if [ $table -eq 1 ]; then
	echo
	printf '%-8s %8s %12s %9s %6s %7s %9s\n' target seconds execs \
	    execs/s cov ft findings
	printf '%s' "$summary" | while read -r t s e r c f x; do
		printf '%-8s %8s %12s %9s %6s %7s %9s\n' "$t" "$s" "$e" "$r" \
		    "$c" "$f" "$x"
	done
fi
done_testing
