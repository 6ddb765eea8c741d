/*
 * demoimg FILE: write espfleet's generated demo factory image (the one
 * --simulate uses; see include/demo.h) to FILE, so that "make bench" has
 * an image to flash when the real Screek firmware is not available.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

/* Build the demo image and write it to the file named by argv[1]. */
int
main(int argc, char **argv)
{
	uint8_t	*buf = NULL;
	size_t	 len = 0;
	FILE	*f;
	int	 rc;

	if (argc != 2) {
		fprintf(stderr, "usage: demoimg FILE\n");
		return (2);
	}
	if ((rc = demo_build(&buf, &len)) != 0) {
		fprintf(stderr, "demoimg: cannot build the demo image: %s\n",
		    strerror(-rc));
		return (1);
	}
	if ((f = fopen(argv[1], "wb")) == NULL) {
		fprintf(stderr, "demoimg: %s: %s\n", argv[1], strerror(errno));
		free(buf);
		return (1);
	}
	if (fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "demoimg: %s: write failed\n", argv[1]);
		free(buf);
		return (1);
	}
	free(buf);
	return (0);
}
