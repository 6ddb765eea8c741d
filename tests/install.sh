#!/bin/bash
# What "make install" adds for a Debian bench host: the udev rules cover
# every USB identity espfleet flashes, give plugdev and the seat access and
# keep ModemManager away; the bash completion loads and completes.
. "$top_srcdir/tests/tap.sh"
rules="$top_srcdir/data/60-espfleet.rules"
comp="$top_srcdir/data/espfleet.bash-completion"

# Every VID:PID espfleet knows as an ESP port or a bridge (PROTOCOL.md 8.3).
for id in 303a:0002 303a:1001 303a:80c2 10c4:ea60 10c4:ea64 1a86:7523 \
    1a86:55d4 1a86:55d3 0403:6001 0403:6010 0403:6014 0403:6015; do
	vid=${id%:*} pid=${id#*:}
	found=1
	while IFS= read -r line; do
		case $line in \#*|"") continue ;; esac
		v=$(printf '%s\n' "$line" | sed -n 's/.*ATTRS{idVendor}=="\([^"]*\)".*/\1/p')
		p=$(printf '%s\n' "$line" | sed -n 's/.*ATTRS{idProduct}=="\([^"]*\)".*/\1/p')
		[ -n "$v" ] || continue
		# shellcheck disable=SC2254
		case $vid in $v) case $pid in $p) found=0 ;; esac ;; esac
	done <"$rules"
	ok $found "udev rules match $id"
done
grep -q '^ENV{ID_MM_DEVICE_IGNORE}="1"' "$rules"
ok $? "matched ports carry ID_MM_DEVICE_IGNORE=1 (ModemManager keeps away)"
grep -q 'GROUP="plugdev"' "$rules" && grep -q 'TAG+="uaccess"' "$rules"
ok $? "ttys go to the plugdev group and the local seat (uaccess)"
grep -q '^ACTION=="remove", GOTO="espfleet_end"' "$rules"
ok $? "remove events are left alone"
# Unknown devices must not be matched.
! grep -q 'idVendor}=="1234"' "$rules"
ok $? "an unrelated vendor is not matched"

bash -n "$comp"
ok $? "bash completion parses"
out=$(bash -c '. "$1"; COMP_WORDS=(espfleet fl); COMP_CWORD=1; _espfleet;
    printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" 2>&1)
printf '%s\n' "$out" | grep -qx flash &&
    ! printf '%s\n' "$out" | grep -qx -e inspect -e report
ok $? "espfleet fl<TAB> completes to flash, and only to flash"
out=$(bash -c '. "$1"; COMP_WORDS=(espfleet flash --af); COMP_CWORD=2; _espfleet;
    printf "%s\n" "${COMPREPLY[@]}"' _ "$comp")
printf '%s\n' "$out" | grep -qx -- --after
ok $? "espfleet flash --af<TAB> completes to --after"
out=$(bash -c '. "$1"; COMP_WORDS=(espfleet-sim --profile r); COMP_CWORD=2;
    _espfleet_sim; printf "%s\n" "${COMPREPLY[@]}"' _ "$comp")
printf '%s\n' "$out" | grep -qx realistic
ok $? "espfleet-sim --profile r<TAB> completes to realistic"
done_testing
