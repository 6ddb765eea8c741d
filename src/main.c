/*
 * espfleet: pick the subcommand.  "flash" writes units from the command
 * line, "inspect" describes an image; the bench (TUI) comes next.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "flash.h"
#include "image.h"

/* The list of commands. */
static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet flash --port PATH [--port PATH]... [options] "
	    "(IMAGE | OFFSET FILE...)\n"
	    "       espfleet inspect [--json] (IMAGE | OFFSET FILE...)\n"
	    "       espfleet --version | --help\n"
	    "\n"
	    "commands:\n"
	    "  flash    write and verify firmware on many units in parallel\n"
	    "  inspect  describe what an image holds\n"
	    "\n"
	    "\"espfleet flash --help\" lists the options of flash; see "
	    "espfleet(1).\n");
}

/* Dispatch on argv[1]; each command gets argv from its own name on. */
int
main(int argc, char **argv)
{
	if (argc < 2) {
		main_usage(stderr);
		return (2);
	}
	if (strcmp(argv[1], "flash") == 0)
		return (flash_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "inspect") == 0)
		return (inspect_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		return (0);
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		main_usage(stdout);
		return (0);
	}
	fprintf(stderr, "espfleet: unknown command \"%s\"\n", argv[1]);
	main_usage(stderr);
	return (2);
}
