/*
 * espfleet: pick the subcommand.  "flash" writes units from the command
 * line, "inspect" describes an image; anything else is the bench, the TUI
 * (bench.c): espfleet [options] [IMAGE | OFFSET FILE...].
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "backup.h"
#include "bench.h"
#include "flash.h"
#include "image.h"
#include "report.h"

/* The list of commands. */
static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet [options] [IMAGE | OFFSET FILE...]\n"
	    "       espfleet flash --port PATH [--port PATH]... [options] "
	    "(IMAGE | OFFSET FILE...)\n"
	    "       espfleet inspect [--json] (IMAGE | OFFSET FILE...)\n"
	    "       espfleet report [--json] [LOG]\n"
	    "       espfleet backup --port PATH [IMAGE]\n"
	    "       espfleet restore --mac MAC --port PATH [--from TIME]\n"
	    "       espfleet wipe --port PATH [--no-backup]\n"
	    "       espfleet --version | --help\n"
	    "\n"
	    "commands:\n"
	    "  (none)   the bench: watch ports, flash units as they come\n"
	    "  flash    write and verify firmware on many units in parallel\n"
	    "  inspect  describe what an image holds\n"
	    "  report   summarize the unit records\n"
	    "  backup   keep a unit's settings (nvs, otadata)\n"
	    "  restore  write a unit's kept settings back\n"
	    "  wipe     erase a unit's settings only\n"
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
	if (strcmp(argv[1], "report") == 0)
		return (report_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "backup") == 0)
		return (backup_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "restore") == 0)
		return (backup_restore_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "wipe") == 0)
		return (backup_wipe_main(argc - 1, argv + 1));
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
		return (0);
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		main_usage(stdout);
		return (0);
	}
	return (bench_main(argc, argv));
}
