/*
 * A simulated bench for "espfleet --simulate N": N emulated ESP32-S2 units
 * (sim.h, served in-process on pseudo-terminals) that are plugged in over
 * a seeded timeline.  Instead of udev, it reports synthetic port_info adds
 * and removes through the same callback type as hotplug.h, so the registry,
 * the jobs and the TUI run exactly as on a real bench.
 *
 * The timeline: unit K (1-based) sits at location "sim-1.K" and arrives
 * after a seeded pause, either in ROM download mode (303a:0002) or running
 * an app (303a:80c2, "WEMOS.CC": the demo image, preloaded into its flash
 * and booted by the emulator), which needs the BOOT+RST step: done by
 * simfleet_boot() (the b key) or by itself a few seconds later, after which
 * the unit leaves and comes back in download mode at the same location.
 * The USB side follows the emulators' own unit life (sim_config.boot):
 * whenever a unit resets (BOOT+RST, or the watchdog reset a flash job ends
 * with) its port goes away and comes back as what the unit now is, under
 * the same DIR/ttyK.  One unit, chosen by the seed, has a fault unless told
 * otherwise.
 *
 * Main thread only (like hotplug.h); the emulators run in sim.h's thread.
 */
#ifndef ESPF_SIMFLEET_H
#define ESPF_SIMFLEET_H

#include <stddef.h>
#include <stdint.h>

#include "emu.h"
#include "hotplug.h"

#define SIMFLEET_VID		0x303a
#define SIMFLEET_PID_ROM	0x0002
#define SIMFLEET_PID_APP	0x80c2

/* How the fault unit is chosen. */
enum simfleet_fault {
	SIMFLEET_FAULT_DEFAULT = 0,	/* one seeded unit: every flash write
					   gets a bit flipped, so it fails */
	SIMFLEET_FAULT_NONE,		/* no faults */
	SIMFLEET_FAULT_GIVEN		/* only the faults in the config */
};

struct simfleet_config {
	unsigned		 units;		/* 1 .. SIM_MAX_UNITS */
	enum emu_profile	 profile;
	uint64_t		 seed;
	enum simfleet_fault	 fault;
	const struct emu_fault	*faults;	/* SIMFLEET_FAULT_GIVEN */
	size_t			 nfaults;
	const char		*dir;		/* for the ptys; created */
	unsigned		 total;		/* > units: the technician swaps
						   each finished unit for a new
						   one until this many units
						   have been plugged in */
};

struct simfleet;

/*
 * Build the units (nothing is reported yet).  NULL with *cause set on
 * failure.  cb gets every add and remove, with the arg given.
 */
struct simfleet	*simfleet_new(const struct simfleet_config *, hotplug_cb cb,
		     void *arg, char **cause);
/* Start serving the units and the timeline at now; 0 or -errno. */
int		 simfleet_start(struct simfleet *, uint64_t now, char **cause);
/* Stop the emulator thread and remove the ptys' links. */
void		 simfleet_free(struct simfleet *);

/*
 * Run what is due by now (arrivals, BOOT+RST, re-enumerations).  Returns
 * when to call again (UINT64_MAX: only after simfleet_boot()).
 */
uint64_t	 simfleet_tick(struct simfleet *, uint64_t now);
/*
 * BOOT+RST on the unit at location: an app-mode unit leaves and comes
 * back in download mode.  0, or -errno with *cause saying why not.
 */
int		 simfleet_boot(struct simfleet *, const char *location,
		     uint64_t now, char **cause);
/*
 * The unit at location finished (its row went done or failed).  With
 * config.total, the simulated technician looks, unplugs it and plugs a
 * new unit in its place (new MAC, blank flash or an app to replace, as
 * at the start), until total units have come.
 */
void		 simfleet_finished(struct simfleet *, const char *location,
		     uint64_t now);
/* Units plugged in so far (swaps included). */
unsigned	 simfleet_plugged(const struct simfleet *);
/* Units not yet arrived or between a removal and its return. */
unsigned	 simfleet_pending(const struct simfleet *);
unsigned	 simfleet_units(const struct simfleet *);
/* Unit index (0-based) at location, or -1. */
int		 simfleet_find(const struct simfleet *, const char *location);
/* One line about a unit for the details view ("app mode, fault: ..."). */
void		 simfleet_describe(struct simfleet *, int unit, char *,
		     size_t);

#endif
