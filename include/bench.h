/*
 * The bench: espfleet's default command.  One poll() loop on the main
 * thread joins the pieces: udev hotplug (or the simulated fleet) feeds the
 * registry, the registry's actions start and cancel flash jobs, the jobs'
 * progress snapshots go back into the registry, and the TUI draws it.
 */
#ifndef ESPF_BENCH_H
#define ESPF_BENCH_H

/*
 * espfleet [options] [IMAGE | OFFSET FILE...]; argv[0] is the program
 * name.  Returns the exit status: 0, 1 (a slot ended failed), 2 (usage
 * or bad input), or 128 + the signal that ended it.
 */
int	bench_main(int argc, char **argv);

#endif
