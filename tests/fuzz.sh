#!/bin/sh
# make check's short fuzzing run: every libFuzzer target for FUZZ_SECONDS
# (15 by default) on its seed corpus; "make fuzz" runs them for longer.
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
export FUZZ_SECONDS
exec sh "$top_srcdir/tests/fuzz/run.sh"
