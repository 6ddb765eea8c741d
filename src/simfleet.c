/*
 * The simulated bench behind "espfleet --simulate N" (see simfleet.h): the
 * emulated units come from sim.c, the USB side (which VID:PID shows up at
 * which location, and when) is modelled here and reported as port_info
 * adds and removes on the main thread.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chip.h"
#include "demo.h"
#include "emu.h"
#include "hotplug.h"
#include "sim.h"
#include "simfleet.h"
#include "util.h"

#define SIMFLEET_POLL_MS	100	/* how often emulator states are read */

/* Where a simulated unit stands, as USB sees it. */
enum simfleet_ust {
	SFU_ABSENT = 0,		/* not plugged in yet */
	SFU_PRESENT,		/* its port is there */
	SFU_AWAY,		/* re-enumerating after a reset */
	SFU_UNPLUGGED		/* gone for good (unplug fault) */
};

struct simfleet_unit {
	enum simfleet_ust	 st;
	uint64_t		 t_next;	/* arrival, or return from AWAY */
	uint64_t		 t_away;	/* when it went away */
	uint64_t		 t_boot;	/* the operator's BOOT+RST; 0 none */
	uint64_t		 gen;		/* emulator generation reported */
	uint64_t		 await_gen;	/* a press not yet applied: the
						   generation it started from */
	uint64_t		 t_swap;	/* the technician swaps it; 0 no */
	unsigned		 want_replaced;	/* swaps asked of the emulator */
	int			 arrive_app;
	int			 faulty;
	int			 present;
	struct port_info	 pi;		/* as last reported */
};

/* Timings of the timeline, per profile (ms). */
struct simfleet_times {
	unsigned		 first;		/* first arrival */
	unsigned		 gap_min, gap_max;	/* between arrivals */
	unsigned		 boot_min, boot_max;	/* BOOT+RST by itself */
	unsigned		 reenum;	/* a reset's USB re-enumeration */
	unsigned		 look_min, look_max;	/* done -> unplugged */
	unsigned		 hand_min, hand_max;	/* -> next one plugged */
};

static const struct simfleet_times simfleet_times[EMU_PROFILE__MAX] = {
	[EMU_PROFILE_FAST] = { 300, 100, 300, 1000, 1500, 50, 50, 150, 50,
	    150 },
	[EMU_PROFILE_REALISTIC] = { 600, 500, 1500, 4000, 6000, 300, 1000,
	    3000, 1500, 4000 },
};

#define SIMFLEET_PRESS_MS	1000	/* a press not applied by then: go on */

struct simfleet {
	struct sim		*sim;
	struct simfleet_unit	*u;
	unsigned		 n;
	unsigned		 total;		/* units to plug in, swaps too */
	unsigned		 plugged;	/* so far, swaps scheduled too */
	const struct simfleet_times *times;
	hotplug_cb		 cb;
	void			*arg;
	char			*dir;
	int			 own_dir;
	struct emu_fault	*faults;
	size_t			 nfaults;
	uint64_t		 rng;
	int			 started;
};

/* Next number of a splitmix64 sequence. */
static uint64_t
simfleet_rand(struct simfleet *sf)
{
	uint64_t	z;

	z = (sf->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31));
}

/* A number in [lo, hi]. */
static unsigned
simfleet_between(struct simfleet *sf, unsigned lo, unsigned hi)
{
	if (hi <= lo)
		return (lo);
	return (lo + (unsigned)(simfleet_rand(sf) % (hi - lo + 1)));
}

/*
 * Choose who arrives running an app (about one in four, at least one
 * when there are two units or more) and, by default, which unit in
 * download mode gets the fault.
 */
static void
simfleet_plan(struct simfleet *sf, enum simfleet_fault fault)
{
	unsigned	k, napp = 0, pick, tries;

	for (k = 0; k < sf->n; k++) {
		sf->u[k].arrive_app = sf->n >= 2 && simfleet_rand(sf) % 4 == 0;
		napp += sf->u[k].arrive_app;
	}
	if (sf->n >= 2 && napp == 0)
		sf->u[simfleet_rand(sf) % sf->n].arrive_app = 1;
	else if (napp == sf->n)
		sf->u[0].arrive_app = 0;
	if (fault != SIMFLEET_FAULT_DEFAULT || sf->n < 2)
		return;
	pick = (unsigned)(simfleet_rand(sf) % sf->n);
	for (tries = 0; tries < sf->n && sf->u[pick].arrive_app; tries++)
		pick = (pick + 1) % sf->n;
	sf->u[pick].faulty = 1;
}

/*
 * The default fault is a transient one, as a bench sees most often: one
 * compressed block arrives damaged (the ROM answers checksum error 0x07)
 * and the flasher must send it again, so the unit still ends done.  A
 * lasting fault (a unit whose flash flips bits) is one --fault away.
 */
static int
simfleet_default_fault(struct simfleet *sf, char **cause)
{
	char	*spec;
	int	 error;
	unsigned k;

	for (k = 0; k < sf->n; k++) {
		if (!sf->u[k].faulty)
			continue;
		spec = xasprintf("unit=%u,kind=rom-error,code=0x07,"
		    "op=FLASH_DEFL_DATA,at=%u", k,
		    2 + (unsigned)(simfleet_rand(sf) % 20));
		sf->faults = xcalloc(1, sizeof(*sf->faults));
		error = emu_fault_parse(spec, &sf->faults[0], cause);
		free(spec);
		if (error != 0)
			return (error);
		sf->nfaults = 1;
	}
	return (0);
}

/*
 * Units that arrive running an app need one in flash: the demo image,
 * written through the shared flash file before the emulators run.
 */
static int
simfleet_preload(struct simfleet *sf, char **cause)
{
	const char	*path;
	uint8_t		*img = NULL;
	size_t		 len = 0, off;
	ssize_t		 w;
	unsigned	 k;
	int		 fd, error = 0;

	for (k = 0; k < sf->n && error == 0; k++) {
		if (!sf->u[k].arrive_app)
			continue;
		if (img == NULL && (error = demo_build(&img, &len)) != 0) {
			*cause = xasprintf("cannot build the demo image for "
			    "the simulated units' apps");
			break;
		}
		path = sim_flash_path(sf->sim, k);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) == -1) {
			error = -errno;
			*cause = xasprintf("cannot open %s: %s", path,
			    strerror(errno));
			break;
		}
		for (off = 0; off < len; off += (size_t)w) {
			if ((w = pwrite(fd, img + off, len - off,
			    (off_t)off)) <= 0) {
				error = w == 0 ? -EIO : -errno;
				*cause = xasprintf("cannot write %s: %s", path,
				    strerror(-error));
				break;
			}
		}
		close(fd);
	}
	free(img);
	return (error);
}

/* New units that arrive running an app hold the demo image too. */
static int
simfleet_swap_app(struct simfleet *sf, char **cause)
{
	uint8_t	*img;
	size_t	 len;
	int	 error;

	if ((error = demo_build(&img, &len)) != 0) {
		*cause = xasprintf("cannot build the demo image for the "
		    "simulated units' apps");
		return (error);
	}
	sim_set_app(sf->sim, img, len);
	free(img);
	return (0);
}

/* Build the units and their ptys. */
struct simfleet *
simfleet_new(const struct simfleet_config *cfg, hotplug_cb cb, void *arg,
    char **cause)
{
	struct simfleet		*sf;
	struct sim_config	 sc;
	const char		*tmp;
	size_t			 i;

	if (cfg->units == 0 || cfg->units > SIM_MAX_UNITS) {
		*cause = xasprintf("--simulate takes 1 to %d units, not %u",
		    SIM_MAX_UNITS, cfg->units);
		return (NULL);
	}
	sf = xcalloc(1, sizeof(*sf));
	sf->n = cfg->units;
	sf->total = MAXIMUM(cfg->total, cfg->units);
	sf->plugged = sf->n;
	sf->u = xcalloc(sf->n, sizeof(*sf->u));
	sf->cb = cb;
	sf->arg = arg;
	sf->times = &simfleet_times[cfg->profile < EMU_PROFILE__MAX ?
	    cfg->profile : EMU_PROFILE_REALISTIC];
	sf->rng = cfg->seed ^ 0x5eedf1ee7ULL;
	simfleet_plan(sf, cfg->fault);
	if (cfg->fault == SIMFLEET_FAULT_DEFAULT &&
	    simfleet_default_fault(sf, cause) != 0)
		goto fail;
	if (cfg->fault == SIMFLEET_FAULT_GIVEN && cfg->nfaults > 0) {
		sf->faults = xcalloc(cfg->nfaults, sizeof(*sf->faults));
		memcpy(sf->faults, cfg->faults, cfg->nfaults *
		    sizeof(*sf->faults));
		sf->nfaults = cfg->nfaults;
		for (i = 0; i < cfg->nfaults; i++) {
			if (cfg->faults[i].unit < 0)
				continue;
			if ((unsigned)cfg->faults[i].unit < sf->n)
				sf->u[cfg->faults[i].unit].faulty = 1;
		}
	}

	if (cfg->dir != NULL)
		sf->dir = xstrdup(cfg->dir);
	else {
		if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
			tmp = "/tmp";
		sf->dir = xasprintf("%s/espfleet-sim.XXXXXX", tmp);
		if (mkdtemp(sf->dir) == NULL) {
			*cause = xasprintf("cannot create a directory in %s "
			    "for the simulated units: %s (set TMPDIR)", tmp,
			    strerror(errno));
			goto fail;
		}
		sf->own_dir = 1;
	}
	memset(&sc, 0, sizeof(sc));
	sc.units = sf->n;
	sc.dir = sf->dir;
	sc.chip = CHIP_ESP32S2;
	sc.profile = cfg->profile;
	sc.seed = cfg->seed;
	sc.faults = sf->faults;
	sc.nfaults = sf->nfaults;
	/* The unit life model: resets boot what is in flash. */
	sc.boot = 1;
	sc.board = EMU_BOARD_PLAIN;
	if ((sf->sim = sim_new(&sc, cause)) == NULL)
		goto fail;
	if (simfleet_preload(sf, cause) != 0)
		goto fail;
	if (sf->total > sf->n && simfleet_swap_app(sf, cause) != 0)
		goto fail;
	return (sf);

fail:
	simfleet_free(sf);
	return (NULL);
}

/* Stop everything and remove what was created on disk. */
void
simfleet_free(struct simfleet *sf)
{
	char		*path;
	unsigned	 k;

	if (sf == NULL)
		return;
	if (sf->sim != NULL) {
		sim_join(sf->sim);
		if (sf->own_dir) {
			for (k = 0; k < sim_units(sf->sim); k++)
				unlink(sim_flash_path(sf->sim, k));
		}
		sim_free(sf->sim);
	}
	if (sf->own_dir) {
		path = xasprintf("%s/stats", sf->dir);
		unlink(path);
		free(path);
		rmdir(sf->dir);
	}
	free(sf->dir);
	free(sf->faults);
	free(sf->u);
	free(sf);
}

/* Start the emulator thread and plan the arrivals. */
int
simfleet_start(struct simfleet *sf, uint64_t now, char **cause)
{
	uint64_t	t;
	unsigned	k;
	int		error;

	if (sf->started)
		return (0);
	if ((error = sim_start(sf->sim, cause)) != 0)
		return (error);
	sf->started = 1;
	t = now + sf->times->first;
	for (k = 0; k < sf->n; k++) {
		sf->u[k].st = SFU_ABSENT;
		sf->u[k].t_next = t;
		t += simfleet_between(sf, sf->times->gap_min,
		    sf->times->gap_max);
		/* Power on into the app: RST alone boots the flash. */
		if (sf->u[k].arrive_app)
			sim_press_rst(sf->sim, k);
	}
	return (0);
}

/* Fill the port unit k shows now (the emulator says which). */
static void
simfleet_port(struct simfleet *sf, unsigned k,
    const struct sim_unit_stats *st, struct port_info *pi)
{
	uint8_t	mac[6];

	memset(pi, 0, sizeof(*pi));
	snprintf(pi->devnode, sizeof(pi->devnode), "%s", sim_tty(sf->sim, k));
	snprintf(pi->location, sizeof(pi->location), "sim-1.%u", k + 1);
	snprintf(pi->usb_path, sizeof(pi->usb_path), "1-1.%u", k + 1);
	pi->vid = st->vid;
	pi->pid = st->pid;
	pi->ifnum = 0;
	if (st->pid == SIMFLEET_PID_ROM) {
		/* Every S2 ROM reports the same serial number. */
		snprintf(pi->serial, sizeof(pi->serial), "0");
		snprintf(pi->manufacturer, sizeof(pi->manufacturer),
		    "Espressif");
		snprintf(pi->product, sizeof(pi->product), "ESP32-S2");
	} else {
		sim_mac(sf->sim, k, mac);
		snprintf(pi->serial, sizeof(pi->serial),
		    "%02X%02X%02X%02X%02X%02X", mac[0], mac[1], mac[2], mac[3],
		    mac[4], mac[5]);
		snprintf(pi->manufacturer, sizeof(pi->manufacturer),
		    "WEMOS.CC");
		snprintf(pi->product, sizeof(pi->product), "LOLIN-S2-MINI");
	}
	pi->kind = chip_usb_classify(pi->vid, pi->pid);
}

/* Report unit k plugged in as what it is now. */
static void
simfleet_add(struct simfleet *sf, unsigned k, const struct sim_unit_stats *st)
{
	struct simfleet_unit	*u = &sf->u[k];

	simfleet_port(sf, k, st, &u->pi);
	u->gen = st->generation;
	u->present = 1;
	u->st = SFU_PRESENT;
	sf->cb(HOTPLUG_ADD, &u->pi, sf->arg);
}

/* Report unit k's port removed, if it was there. */
static void
simfleet_remove(struct simfleet *sf, struct simfleet_unit *u)
{
	if (u->present) {
		u->present = 0;
		sf->cb(HOTPLUG_REMOVE, &u->pi, sf->arg);
	}
}

/* Report unit k's port gone; it comes back after the re-enumeration. */
static void
simfleet_away(struct simfleet *sf, unsigned k, uint64_t now)
{
	struct simfleet_unit	*u = &sf->u[k];

	simfleet_remove(sf, u);
	u->st = SFU_AWAY;
	u->t_away = now;
	u->t_next = now + sf->times->reenum;
}

/* Hold BOOT, press RST: the port drops at once, as a real one does. */
static void
simfleet_press(struct simfleet *sf, unsigned k, uint64_t now)
{
	struct simfleet_unit	*u = &sf->u[k];

	u->t_boot = 0;
	u->await_gen = u->gen;
	sim_press_boot_rst(sf->sim, k);
	simfleet_away(sf, k, now);
}

/*
 * The technician unplugs unit k and plugs a new one in its place after a
 * moment: download mode (BOOT held), or now and then one running an app.
 */
static void
simfleet_swap(struct simfleet *sf, unsigned k, uint64_t now)
{
	struct simfleet_unit	*u = &sf->u[k];

	simfleet_remove(sf, u);
	u->arrive_app = simfleet_rand(sf) % 4 == 0;
	u->t_swap = u->t_boot = u->await_gen = 0;
	u->want_replaced++;
	sim_replace(sf->sim, k, u->arrive_app);
	u->st = SFU_ABSENT;
	u->t_next = now + simfleet_between(sf, sf->times->hand_min,
	    sf->times->hand_max);
}

/* Run one unit's due steps; returns when it next needs a look. */
static uint64_t
simfleet_unit_tick(struct simfleet *sf, unsigned k, uint64_t now)
{
	struct simfleet_unit	*u = &sf->u[k];
	struct sim_unit_stats	 st;

	if (u->t_swap != 0 && now >= u->t_swap)
		simfleet_swap(sf, k, now);
	if (u->st == SFU_UNPLUGGED)
		return (u->t_swap != 0 ? u->t_swap : UINT64_MAX);
	if (u->st != SFU_PRESENT && now < u->t_next)
		return (u->t_next);
	sim_unit_stats(sf->sim, k, &st);
	/* A new unit not swapped in by the emulators' thread yet. */
	if (st.replaced < u->want_replaced)
		return (now + SIMFLEET_POLL_MS / 4);
	if (st.gone || st.state == EMU_ST_UNPLUGGED) {
		simfleet_remove(sf, u);
		u->st = SFU_UNPLUGGED;
		return (UINT64_MAX);
	}
	switch (u->st) {
	case SFU_ABSENT:
		/* An app unit is plugged in once its app is up. */
		if (u->arrive_app && st.pid != SIMFLEET_PID_APP &&
		    now - u->t_next < SIMFLEET_PRESS_MS)
			return (now + SIMFLEET_POLL_MS / 4);
		simfleet_add(sf, k, &st);
		if (st.pid == SIMFLEET_PID_APP)
			u->t_boot = now + simfleet_between(sf,
			    sf->times->boot_min, sf->times->boot_max);
		break;
	case SFU_AWAY:
		/* Back once the reset happened (a press is applied late). */
		if (u->await_gen != 0 && st.generation == u->await_gen &&
		    now - u->t_away < SIMFLEET_PRESS_MS)
			return (now + SIMFLEET_POLL_MS / 4);
		u->await_gen = 0;
		simfleet_add(sf, k, &st);
		break;
	case SFU_PRESENT:
		if (st.generation != u->gen) {
			/* The unit reset: its USB port went and comes back. */
			simfleet_away(sf, k, now);
			return (u->t_next);
		}
		if (u->t_boot != 0 && now >= u->t_boot) {
			if (st.pid == SIMFLEET_PID_APP) {
				simfleet_press(sf, k, now);
				return (u->t_next);
			}
			u->t_boot = 0;
		}
		break;
	default:
		break;
	}
	if (u->t_swap != 0)
		return (MINIMUM(u->t_swap, now + SIMFLEET_POLL_MS));
	if (u->t_boot != 0)
		return (MINIMUM(u->t_boot, now + SIMFLEET_POLL_MS));
	return (now + SIMFLEET_POLL_MS);
}

/* Run what is due. */
uint64_t
simfleet_tick(struct simfleet *sf, uint64_t now)
{
	uint64_t	next = UINT64_MAX, t;
	unsigned	k;

	if (!sf->started)
		return (UINT64_MAX);
	for (k = 0; k < sf->n; k++) {
		t = simfleet_unit_tick(sf, k, now);
		next = MINIMUM(next, t);
	}
	return (next);
}

/* Unit index at a location. */
int
simfleet_find(const struct simfleet *sf, const char *location)
{
	unsigned	k;

	if (strncmp(location, "sim-1.", 6) != 0)
		return (-1);
	k = (unsigned)strtoul(location + 6, NULL, 10);
	if (k == 0 || k > sf->n)
		return (-1);
	return ((int)k - 1);
}

/* The b key: BOOT+RST on a unit running its app. */
int
simfleet_boot(struct simfleet *sf, const char *location, uint64_t now,
    char **cause)
{
	struct simfleet_unit	*u;
	int			 k;

	if ((k = simfleet_find(sf, location)) == -1) {
		*cause = xasprintf("%s is not a simulated unit", location);
		return (-ENOENT);
	}
	u = &sf->u[k];
	if (u->st != SFU_PRESENT) {
		*cause = xasprintf("%s is not plugged in", location);
		return (-ENODEV);
	}
	if (u->pi.pid == SIMFLEET_PID_ROM) {
		*cause = xasprintf("%s is in download mode already", location);
		return (-EALREADY);
	}
	simfleet_press(sf, (unsigned)k, now);
	return (0);
}

/* A unit finished: with a total to reach, swap it after a look. */
void
simfleet_finished(struct simfleet *sf, const char *location, uint64_t now)
{
	int	k;

	if ((k = simfleet_find(sf, location)) == -1 ||
	    sf->plugged >= sf->total || sf->u[k].t_swap != 0)
		return;
	sf->plugged++;
	sf->u[k].t_swap = now + simfleet_between(sf, sf->times->look_min,
	    sf->times->look_max);
}

/* Units plugged in so far, the swaps already decided included. */
unsigned
simfleet_plugged(const struct simfleet *sf)
{
	return (sf->plugged);
}

/*
 * Units still to come or coming back, waiting for their BOOT+RST, or
 * about to be swapped.
 */
unsigned
simfleet_pending(const struct simfleet *sf)
{
	unsigned	k, n = 0;

	for (k = 0; k < sf->n; k++) {
		if (sf->u[k].st == SFU_ABSENT || sf->u[k].st == SFU_AWAY ||
		    sf->u[k].t_boot != 0 || sf->u[k].t_swap != 0)
			n++;
	}
	return (n);
}

/* Number of units. */
unsigned
simfleet_units(const struct simfleet *sf)
{
	return (sf->n);
}

/* A line about unit k for the details view. */
void
simfleet_describe(struct simfleet *sf, int k, char *buf, size_t cap)
{
	struct sim_unit_stats	 st;
	const char		*fault = NULL, *what;
	char			 line[100];
	size_t			 i;

	if (k < 0 || (unsigned)k >= sf->n) {
		snprintf(buf, cap, "?");
		return;
	}
	for (i = 0; i < sf->nfaults && fault == NULL; i++) {
		if (sf->faults[i].unit < 0 || sf->faults[i].unit == k)
			fault = emu_fault_kind_name(sf->faults[i].kind);
	}
	sim_unit_stats(sf->sim, (unsigned)k, &st);
	/* What the emulated unit printed: untrusted like any device text. */
	util_sanitize(line, sizeof(line), st.boot_line,
	    strnlen(st.boot_line, sizeof(st.boot_line)));
	switch (sf->u[k].st) {
	case SFU_ABSENT:
		what = "not plugged in yet";
		break;
	case SFU_AWAY:
		what = "re-enumerating after a reset";
		break;
	case SFU_UNPLUGGED:
		what = "unplugged";
		break;
	default:
		what = st.pid == SIMFLEET_PID_ROM ? "in download mode" :
		    "running an app (b: BOOT+RST)";
		break;
	}
	snprintf(buf, cap, "unit %d %s%s%s%s; %llu commands, %llu bytes "
	    "written%s%s", k, what, fault != NULL ? ", has a fault (" : "",
	    fault != NULL ? fault : "", fault != NULL ? ")" : "",
	    (unsigned long long)st.emu.commands,
	    (unsigned long long)st.emu.flash_written,
	    line[0] != '\0' ? "; last boot: " : "", line);
}
