/*
 * "espfleet report [--json] [LOG]": what the unit records say: totals by
 * result and by day, failure reasons grouped and counted, and the units
 * (by MAC) flashed more than once.  Lines that are not records (garbage,
 * a record cut by a killed writer, a truncated last line) are counted and
 * skipped, and the report says so.
 */
#ifndef ESPF_REPORT_H
#define ESPF_REPORT_H

/* argv[0] is "report"; returns the exit status. */
int	report_main(int argc, char **argv);

#endif
