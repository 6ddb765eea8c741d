# Shared helpers for shell tests: source it, call ok/skip_all, end with done_testing.
tap_n=0
tap_failed=0
ok() {	# ok STATUS DESCRIPTION; returns 1 when STATUS is not 0
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
		return 1
	fi
}
skip() {	# skip REASON: one test that could not run here, said so
	tap_n=$((tap_n + 1))
	echo "ok $tap_n # SKIP $*"
}
diag() { printf '# %s\n' "$*"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
done_testing() { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }
# random_data LEN: LEN random bytes on stdout that no check takes for an
# app image.  A first byte of 0xE9 (1 in 256 from /dev/urandom) would make
# the image checks see a damaged app at 0x10000, so it is fixed.
random_data() { printf 'R'; head -c $(($1 - 1)) /dev/urandom; }
