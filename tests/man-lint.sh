#!/bin/sh
# The manual pages must be clean under mandoc -Tlint, style messages included.
# Only "referenced manual not found" (and the mandoc.db notice) are dropped:
# they say which other pages happen to be installed on this machine.
. "$top_srcdir/tests/tap.sh"
[ -n "$MANDOC" ] || skip_all "mandoc not installed (apt-get install mandoc)"
for page in "$top_srcdir"/man/*.1; do
	out=$("$MANDOC" -Tlint -W style "$page" 2>&1 |
	    grep -v -e 'referenced manual not found' -e 'mandoc.db')
	[ -z "$out" ] || diag "$out"
	[ -z "$out" ]
	ok $? "mandoc -Tlint $(basename "$page")"
done
done_testing
