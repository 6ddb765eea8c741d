/*
 * The simulated bench's timeline, as the registry sees it: every unit
 * turns up at its own location and pty, the app-mode ones (running the
 * app the emulator booted from flash) come back in download mode after
 * BOOT+RST, by themselves or through simfleet_boot(), the same seed gives
 * the same timeline, and the default fault lands on exactly one unit.
 * The emulators run in their thread, so the loop follows the real clock,
 * sleeping until the fleet's next due time.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "hotplug.h"
#include "simfleet.h"
#include "util.h"
#include "tap.h"

#define MAX_EVENTS	256

struct event {
	enum hotplug_action	 action;
	struct port_info	 pi;
	uint64_t		 t;
};

struct events {
	struct event		 e[MAX_EVENTS];
	int			 n;
	uint64_t		 t0;
};

/* Record what the fleet reports, stamped with the real clock. */
static void
test_cb(enum hotplug_action action, const struct port_info *pi, void *arg)
{
	struct events	*ev = arg;

	if (ev->n == MAX_EVENTS)
		return;
	ev->e[ev->n].action = action;
	ev->e[ev->n].pi = *pi;
	ev->e[ev->n].t = util_now_ms();
	ev->n++;
}

/* A started fleet of fast units with the fault mode given. */
static struct simfleet *
test_fleet(unsigned units, uint64_t seed, enum simfleet_fault fault,
    struct events *ev)
{
	struct simfleet_config	 cfg;
	struct simfleet		*sf;
	char			*cause = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.units = units;
	cfg.profile = EMU_PROFILE_FAST;
	cfg.seed = seed;
	cfg.fault = fault;
	memset(ev, 0, sizeof(*ev));
	sf = simfleet_new(&cfg, test_cb, ev, &cause);
	if (sf == NULL) {
		tap_diag("simfleet_new: %s", cause);
		free(cause);
		return (NULL);
	}
	ev->t0 = util_now_ms();
	if (simfleet_start(sf, ev->t0, &cause) != 0) {
		tap_diag("simfleet_start: %s", cause);
		free(cause);
		simfleet_free(sf);
		return (NULL);
	}
	return (sf);
}

/* Tick the fleet until done() holds or ms pass; 1 if done() held. */
static int
test_run(struct simfleet *sf, struct events *ev, unsigned ms,
    int (*done)(const struct events *, void *), void *arg)
{
	uint64_t	now, next, end = util_now_ms() + ms;

	for (;;) {
		now = util_now_ms();
		next = simfleet_tick(sf, now);
		if (done != NULL && done(ev, arg))
			return (1);
		if (now >= end)
			return (0);
		next = MINIMUM(next, end);
		if (next > now)
			util_sleep_us((next - now) * 1000);
	}
}

/* The first event at location loc with this action from index i on. */
static int
test_find(const struct events *ev, int i, const char *loc,
    enum hotplug_action action)
{
	for (; i < ev->n; i++) {
		if (ev->e[i].action == action &&
		    strcmp(ev->e[i].pi.location, loc) == 0)
			return (i);
	}
	return (-1);
}

/* Until: nothing pending in the fleet passed as arg. */
static int
test_settled(const struct events *ev, void *arg)
{
	(void)ev;
	return (simfleet_pending(arg) == 0);
}

/* Checks on one fleet left to run by itself. */
static void
test_timeline(void)
{
	struct simfleet		*sf;
	struct events		*ev;
	const struct port_info	*pi;
	char			 loc[32], tty[32], text[256], *cause = NULL;
	unsigned		 k, napp = 0, nfault = 0;
	uint64_t		 last = 0;
	int			 i, r, a;

	ev = xcalloc(1, sizeof(*ev));
	if ((sf = test_fleet(4, 1, SIMFLEET_FAULT_DEFAULT, ev)) == NULL) {
		tap_ok(0, "a fleet of 4 starts");
		free(ev);
		return;
	}
	tap_ok(test_run(sf, ev, 15000, test_settled, sf),
	    "every unit arrived and settled within 15 s");
	is_int(simfleet_units(sf), 4, "4 units");
	for (k = 1; k <= 4; k++) {
		snprintf(loc, sizeof(loc), "sim-1.%u", k);
		snprintf(tty, sizeof(tty), "/tty%u", k - 1);
		i = test_find(ev, 0, loc, HOTPLUG_ADD);
		if (!tap_ok(i >= 0, "unit %u is plugged in at %s", k, loc))
			continue;
		pi = &ev->e[i].pi;
		tap_ok(strlen(pi->devnode) > strlen(tty) &&
		    strcmp(pi->devnode + strlen(pi->devnode) - strlen(tty),
		    tty) == 0, "unit %u's device is its pty (%s)", k,
		    pi->devnode);
		tap_ok(ev->e[i].t >= ev->t0 + 300 && ev->e[i].t >= last,
		    "unit %u arrives after the one before (%llu ms)", k,
		    (unsigned long long)(ev->e[i].t - ev->t0));
		last = ev->e[i].t;
		is_int(pi->vid, SIMFLEET_VID, "unit %u is an Espressif device",
		    k);
		if (pi->pid == SIMFLEET_PID_APP) {
			napp++;
			is_int(pi->kind, USB_KIND_APP_CDC, "unit %u arrives "
			    "as its app's USB CDC", k);
			is_str(pi->manufacturer, "WEMOS.CC", "unit %u says "
			    "WEMOS.CC", k);
			r = test_find(ev, i + 1, loc, HOTPLUG_REMOVE);
			a = r < 0 ? -1 : test_find(ev, r + 1, loc,
			    HOTPLUG_ADD);
			if (!tap_ok(r >= 0 && a >= 0, "unit %u leaves and "
			    "comes back by itself (BOOT+RST)", k))
				continue;
			tap_ok(ev->e[r].t - ev->e[i].t >= 1000 &&
			    ev->e[r].t - ev->e[i].t <= 3000, "after 1 to 1.5 s "
			    "(%llu ms; 3 s allowed)",
			    (unsigned long long)(ev->e[r].t - ev->e[i].t));
			tap_ok(ev->e[a].t - ev->e[r].t >= 50, "back after the "
			    "re-enumeration delay (%llu ms)",
			    (unsigned long long)(ev->e[a].t - ev->e[r].t));
			is_int(ev->e[a].pi.pid, SIMFLEET_PID_ROM, "unit %u is "
			    "back in download mode", k);
			is_int(ev->e[a].pi.kind, USB_KIND_S2_ROM, "classified "
			    "as S2 ROM download");
			is_str(ev->e[a].pi.serial, "0", "with the ROM's "
			    "serial number 0");
			is_str(ev->e[a].pi.devnode, pi->devnode, "at the same "
			    "device");
		} else {
			is_int(pi->kind, USB_KIND_S2_ROM, "unit %u arrives in "
			    "download mode", k);
			tap_ok(test_find(ev, i + 1, loc, HOTPLUG_REMOVE) < 0,
			    "and stays (no job reset it)");
			r = simfleet_boot(sf, loc, util_now_ms(), &cause);
			is_int(r, -EALREADY, "BOOT+RST on it is refused");
			tap_ok(cause != NULL && strstr(cause,
			    "download mode already") != NULL, "saying why: %s",
			    cause != NULL ? cause : "(none)");
			free(cause);
			cause = NULL;
		}
		simfleet_describe(sf, (int)k - 1, text, sizeof(text));
		if (strstr(text, "has a fault (rom-error)") != NULL)
			nfault++;
	}
	tap_ok(napp >= 1 && napp < 4, "some units, not all, arrive running "
	    "an app (%u)", napp);
	is_int(nfault, 1, "exactly one unit has the default fault");
	r = simfleet_boot(sf, "sim-1.9", util_now_ms(), &cause);
	is_int(r, -ENOENT, "BOOT+RST at an unknown location is refused");
	free(cause);
	simfleet_free(sf);
	free(ev);
}

/* Until: the event after index *arg is a download-mode add. */
static int
test_back_in_rom(const struct events *ev, void *arg)
{
	int	i;

	for (i = *(int *)arg; i < ev->n; i++)
		if (ev->e[i].action == HOTPLUG_ADD &&
		    ev->e[i].pi.pid == SIMFLEET_PID_ROM)
			return (1);
	return (0);
}

/* Until: an app-mode unit was plugged in. */
static int
test_app_seen(const struct events *ev, void *arg)
{
	int	i;

	for (i = 0; i < ev->n; i++)
		if (ev->e[i].action == HOTPLUG_ADD &&
		    ev->e[i].pi.pid == SIMFLEET_PID_APP) {
			*(int *)arg = i;
			return (1);
		}
	return (0);
}

/* BOOT+RST by hand, before the simulated operator does it. */
static void
test_boot_key(void)
{
	struct simfleet	*sf;
	struct events	*ev;
	char		 text[256], *cause = NULL;
	unsigned	 k, nfault = 0;
	int		 app = -1, r, from;

	ev = xcalloc(1, sizeof(*ev));
	if ((sf = test_fleet(4, 1, SIMFLEET_FAULT_NONE, ev)) == NULL) {
		tap_ok(0, "a fleet without faults starts");
		free(ev);
		return;
	}
	if (!tap_ok(test_run(sf, ev, 10000, test_app_seen, &app),
	    "an app-mode unit arrives"))
		goto out;
	r = simfleet_boot(sf, ev->e[app].pi.location, util_now_ms(), &cause);
	is_int(r, 0, "b on it is taken%s%s", cause != NULL ? ": " : "",
	    cause != NULL ? cause : "");
	free(cause);
	cause = NULL;
	from = ev->n - 1;
	is_int(ev->e[from].action, HOTPLUG_REMOVE, "its port goes away at "
	    "once");
	is_str(ev->e[from].pi.location, ev->e[app].pi.location,
	    "the port of that unit");
	r = simfleet_boot(sf, ev->e[app].pi.location, util_now_ms(), &cause);
	tap_ok(r == -ENODEV, "b again while it re-enumerates is refused "
	    "(%d)", r);
	free(cause);
	tap_ok(test_run(sf, ev, 3000, test_back_in_rom, &from),
	    "it comes back in download mode");
	for (k = 0; k < 4; k++) {
		simfleet_describe(sf, (int)k, text, sizeof(text));
		nfault += strstr(text, "fault") != NULL;
	}
	is_int(nfault, 0, "with --fault none no unit has a fault");
out:
	simfleet_free(sf);
	free(ev);
}

/* The same seed gives the same timeline. */
static void
test_seed(void)
{
	struct simfleet	*sf;
	struct events	*a, *b;
	int		 i, same;

	a = xcalloc(1, sizeof(*a));
	b = xcalloc(1, sizeof(*b));
	if ((sf = test_fleet(6, 42, SIMFLEET_FAULT_DEFAULT, a)) != NULL) {
		test_run(sf, a, 20000, test_settled, sf);
		simfleet_free(sf);
	}
	if ((sf = test_fleet(6, 42, SIMFLEET_FAULT_DEFAULT, b)) != NULL) {
		test_run(sf, b, 20000, test_settled, sf);
		simfleet_free(sf);
	}
	same = a->n == b->n && a->n > 0;
	for (i = 0; same && i < a->n; i++)
		same = a->e[i].action == b->e[i].action &&
		    a->e[i].pi.pid == b->e[i].pi.pid &&
		    strcmp(a->e[i].pi.location, b->e[i].pi.location) == 0;
	tap_ok(same, "seed 42 twice: the same %d events in the same order",
	    a->n);
	free(a);
	free(b);
}

/* Run the checks. */
int
main(void)
{
	test_timeline();
	test_boot_key();
	test_seed();
	return (tap_done());
}
