/*
 * tui-bytes FILE: read standard input until it ends and append one line
 * "MICROSECONDS BYTES" per read to FILE (CLOCK_MONOTONIC, the clock
 * espfleet's --trace uses), so bench-tui.sh can tell how many bytes a
 * program sent its terminal and when.  tmux pipe-pane feeds it.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* Copy read sizes and times to the file named by argv[1]. */
int
main(int argc, char **argv)
{
	char	 buf[65536];
	FILE	*f;
	ssize_t	 n;

	if (argc != 2) {
		fprintf(stderr, "usage: tui-bytes FILE\n");
		return (2);
	}
	if ((f = fopen(argv[1], "a")) == NULL) {
		fprintf(stderr, "tui-bytes: %s: %s\n", argv[1],
		    strerror(errno));
		return (1);
	}
	setvbuf(f, NULL, _IOLBF, 0);
	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		fprintf(f, "%llu %zd\n", (unsigned long long)util_now_us(), n);
	}
	fclose(f);
	return (0);
}
