/*
 * The registry's state machine: every transition in its table, driven
 * from a row put in each state through the public API, every event the
 * table does not allow refused without side effects, then the scenarios
 * a bench produces (re-enumeration, a unit moved between ports, unplug
 * during a job, auto-flash).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "hotplug.h"
#include "registry.h"
#include "util.h"

#include "tap.h"

#define LOC	"pci-0000:00:14.0-usb-0:1.4:1.0"
#define LOC2	"pci-0000:00:14.0-usb-0:1.3:1.0"
#define LOC3	"pci-0000:00:14.0-usb-0:1.2:1.0"

static uint64_t	now = 1000000;	/* the test's clock, in ms */
static int	setup_bad;	/* a setup step did not do what it should */

/* Advance the clock a little, as between two real events. */
static void
tick(void)
{
	now += 10;
}

/* A port at loc of the given kind, with a plausible VID:PID. */
static struct port_info
mkport(const char *loc, const char *devnode, enum chip_usb_kind kind)
{
	struct port_info	p;

	memset(&p, 0, sizeof p);
	snprintf(p.location, sizeof p.location, "%s", loc);
	snprintf(p.devnode, sizeof p.devnode, "%s", devnode);
	snprintf(p.usb_path, sizeof p.usb_path, "1-1.4");
	p.ifnum = 0;
	p.kind = kind;
	switch (kind) {
	case USB_KIND_S2_ROM:
		p.vid = 0x303a;
		p.pid = 0x0002;
		snprintf(p.product, sizeof p.product, "ESP32-S2");
		snprintf(p.serial, sizeof p.serial, "0");
		break;
	case USB_KIND_APP_CDC:
		p.vid = 0x303a;
		p.pid = 0x80c2;
		snprintf(p.product, sizeof p.product, "LOLIN-S2-MINI");
		break;
	case USB_KIND_BRIDGE:
		p.vid = 0x10c4;
		p.pid = 0xea60;
		snprintf(p.product, sizeof p.product, "CP2102N");
		break;
	case USB_KIND_USB_JTAG:
		p.vid = 0x303a;
		p.pid = 0x1001;
		break;
	default:
		p.vid = 0x1234;
		p.pid = 0x5678;
		snprintf(p.product, sizeof p.product, "Mystery gadget");
		break;
	}
	return (p);
}

/* Pop one action: its type (row in *row), or -1 if none is pending. */
static int
next_act(struct reg *reg, int *row)
{
	struct reg_action	a;

	if (row != NULL)
		*row = -1;
	if (!reg_next_action(reg, &a))
		return (-1);
	if (row != NULL)
		*row = a.row;
	return ((int)a.act);
}

/* Throw away pending actions. */
static void
drain(struct reg *reg)
{
	while (next_act(reg, NULL) != -1)
		continue;
}

/* Run a setup step; note it if it failed (the case then fails too). */
static void
step(int rc, const char *what)
{
	if (rc < 0) {
		tap_diag("setup step \"%s\" returned %d", what, rc);
		setup_bad = 1;
	}
	tick();
}

/* ====================== The table, case by case ======================= */

enum setup {
	SU_EMPTY,		/* a unit was here and left */
	SU_PLUGGED_ROM,
	SU_PLUGGED_BRIDGE,
	SU_PLUGGED_JTAG,
	SU_PLUGGED_UNKNOWN,
	SU_APP,
	SU_WAIT_DL,
	SU_WAIT_DL_ABSENT,	/* ... and its app port went away */
	SU_QUEUED,
	SU_CONNECTING,
	SU_WRITING,
	SU_VERIFYING,
	SU_REBOOTING,
	SU_REBOOTING_ABSENT,
	SU_DONE,		/* job just ended, ROM port still there */
	SU_DONE_APP,		/* rebooted and came back as the app */
	SU_DONE_ABSENT,		/* rebooted, port not back yet */
	SU_FAILED,		/* job ended in error, port still there */
	SU_FAILED_APP,
	SU_FAILED_ABSENT,
	SU_FAILED_JOB,		/* cancelled, the job has not ended yet */
	SU_GONE_JOB,		/* unplugged while writing, job still on */
	SU_GONE_NOJOB,		/* ... and the job has ended */
	SU__MAX
};

static const struct {
	const char	*name;
	enum reg_state	 state;
	int		 present;
} setups[SU__MAX] = {
	[SU_EMPTY] = { "empty", REG_ST_EMPTY, 0 },
	[SU_PLUGGED_ROM] = { "plugged (ROM)", REG_ST_PLUGGED, 1 },
	[SU_PLUGGED_BRIDGE] = { "plugged (bridge)", REG_ST_PLUGGED, 1 },
	[SU_PLUGGED_JTAG] = { "plugged (USB-JTAG)", REG_ST_PLUGGED, 1 },
	[SU_PLUGGED_UNKNOWN] = { "plugged (unknown)", REG_ST_PLUGGED, 1 },
	[SU_APP] = { "app", REG_ST_APP, 1 },
	[SU_WAIT_DL] = { "wait-dl", REG_ST_WAIT_DL, 1 },
	[SU_WAIT_DL_ABSENT] = { "wait-dl, absent", REG_ST_WAIT_DL, 0 },
	[SU_QUEUED] = { "queued", REG_ST_QUEUED, 1 },
	[SU_CONNECTING] = { "connecting", REG_ST_CONNECTING, 1 },
	[SU_WRITING] = { "writing", REG_ST_WRITING, 1 },
	[SU_VERIFYING] = { "verifying", REG_ST_VERIFYING, 1 },
	[SU_REBOOTING] = { "rebooting", REG_ST_REBOOTING, 1 },
	[SU_REBOOTING_ABSENT] = { "rebooting, absent", REG_ST_REBOOTING, 0 },
	[SU_DONE] = { "done", REG_ST_DONE, 1 },
	[SU_DONE_APP] = { "done, app", REG_ST_DONE, 1 },
	[SU_DONE_ABSENT] = { "done, absent", REG_ST_DONE, 0 },
	[SU_FAILED] = { "failed", REG_ST_FAILED, 1 },
	[SU_FAILED_APP] = { "failed, app", REG_ST_FAILED, 1 },
	[SU_FAILED_ABSENT] = { "failed, absent", REG_ST_FAILED, 0 },
	[SU_FAILED_JOB] = { "failed, job running", REG_ST_FAILED, 1 },
	[SU_GONE_JOB] = { "gone, job running", REG_ST_GONE, 0 },
	[SU_GONE_NOJOB] = { "gone, job ended", REG_ST_GONE, 0 },
};

/* Put row 0 of a fresh registry into a setup, through the public API. */
static int
drive(struct reg *reg, enum setup su)
{
	struct port_info	rom, app, other;

	rom = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	app = mkport(LOC, "/dev/ttyACM1", USB_KIND_APP_CDC);
	setup_bad = 0;
	switch (su) {
	case SU_EMPTY:
		step(reg_port_added(reg, &app, now), "add app");
		step(reg_port_removed(reg, &app, now), "remove app");
		break;
	case SU_PLUGGED_ROM:
		step(reg_port_added(reg, &rom, now), "add rom");
		break;
	case SU_PLUGGED_BRIDGE:
		other = mkport(LOC, "/dev/ttyUSB0", USB_KIND_BRIDGE);
		step(reg_port_added(reg, &other, now), "add bridge");
		break;
	case SU_PLUGGED_JTAG:
		other = mkport(LOC, "/dev/ttyACM0", USB_KIND_USB_JTAG);
		step(reg_port_added(reg, &other, now), "add jtag");
		break;
	case SU_PLUGGED_UNKNOWN:
		other = mkport(LOC, "/dev/ttyACM0", USB_KIND_UNKNOWN);
		step(reg_port_added(reg, &other, now), "add unknown");
		break;
	case SU_APP:
		step(reg_port_added(reg, &app, now), "add app");
		break;
	case SU_WAIT_DL:
	case SU_WAIT_DL_ABSENT:
		step(reg_port_added(reg, &app, now), "add app");
		step(reg_flash(reg, 0, 0, now, NULL), "flash");
		if (su == SU_WAIT_DL_ABSENT)
			step(reg_port_removed(reg, &app, now), "remove app");
		break;
	case SU_QUEUED:
	case SU_CONNECTING:
	case SU_WRITING:
	case SU_VERIFYING:
	case SU_REBOOTING:
	case SU_REBOOTING_ABSENT:
	case SU_DONE:
	case SU_DONE_APP:
	case SU_DONE_ABSENT:
	case SU_FAILED:
	case SU_FAILED_APP:
	case SU_FAILED_ABSENT:
	case SU_FAILED_JOB:
	case SU_GONE_JOB:
	case SU_GONE_NOJOB:
		step(reg_port_added(reg, &rom, now), "add rom");
		step(reg_flash(reg, 0, 0, now, NULL), "flash");
		if (su == SU_QUEUED)
			break;
		step(reg_job_phase(reg, 0, REG_ST_CONNECTING, 0, 4000, now),
		    "connecting");
		if (su == SU_CONNECTING)
			break;
		step(reg_job_phase(reg, 0, REG_ST_WRITING, 1000, 4000, now),
		    "writing");
		if (su == SU_WRITING)
			break;
		if (su == SU_FAILED || su == SU_FAILED_APP ||
		    su == SU_FAILED_ABSENT) {
			step(reg_job_failed(reg, 0, "write failed", now),
			    "job failed");
			if (su == SU_FAILED_ABSENT || su == SU_FAILED_APP)
				step(reg_port_removed(reg, &rom, now),
				    "remove rom");
			if (su == SU_FAILED_APP)
				step(reg_port_added(reg, &app, now),
				    "add app");
			break;
		}
		if (su == SU_FAILED_JOB) {
			step(reg_cancel(reg, 0, now, NULL), "cancel");
			break;
		}
		if (su == SU_GONE_JOB || su == SU_GONE_NOJOB) {
			step(reg_port_removed(reg, &rom, now), "remove rom");
			if (su == SU_GONE_NOJOB)
				step(reg_job_failed(reg, 0, "I/O error", now),
				    "job failed");
			break;
		}
		step(reg_job_phase(reg, 0, REG_ST_VERIFYING, 4000, 4000,
		    now), "verifying");
		if (su == SU_VERIFYING)
			break;
		if (su == SU_DONE) {
			step(reg_job_done(reg, 0, now), "job done");
			break;
		}
		step(reg_job_phase(reg, 0, REG_ST_REBOOTING, 4000, 4000,
		    now), "rebooting");
		if (su == SU_REBOOTING)
			break;
		if (su == SU_REBOOTING_ABSENT) {
			step(reg_port_removed(reg, &rom, now), "remove rom");
			break;
		}
		step(reg_job_done(reg, 0, now), "job done");
		step(reg_port_removed(reg, &rom, now), "remove rom");
		if (su == SU_DONE_APP)
			step(reg_port_added(reg, &app, now), "add app");
		break;
	default:
		setup_bad = 1;
		break;
	}
	drain(reg);
	if (reg_row_state(reg, 0) != setups[su].state) {
		tap_diag("setup %s ended in %s", setups[su].name,
		    reg_state_name(reg_row_state(reg, 0)));
		setup_bad = 1;
	}
	return (!setup_bad);
}

#define T_ARMED	0x1	/* auto-flash armed before the event */
#define T_LATER	0x2	/* the grace time has passed before the event */
#define T_FORCE	0x4	/* flash with REG_FLASH_FORCE */

#define REFUSED	(-1000)	/* any negative return */

/* Fire one event at row 0 the way its real source would. */
static int
fire(struct reg *reg, enum reg_event ev, int flags)
{
	struct port_info	p;
	int			n;

	switch (ev) {
	case REG_EV_ADD_ROM:
		p = mkport(LOC, "/dev/ttyACM9", USB_KIND_S2_ROM);
		return (reg_port_added(reg, &p, now));
	case REG_EV_ADD_APP:
		p = mkport(LOC, "/dev/ttyACM9", USB_KIND_APP_CDC);
		return (reg_port_added(reg, &p, now));
	case REG_EV_ADD_OTHER:
		p = mkport(LOC, "/dev/ttyUSB9", USB_KIND_BRIDGE);
		return (reg_port_added(reg, &p, now));
	case REG_EV_REMOVE:
		p = *reg_row_port(reg, 0);
		return (reg_port_removed(reg, &p, now));
	case REG_EV_FLASH:
		return (reg_flash(reg, 0, (flags & T_FORCE) ? REG_FLASH_FORCE :
		    0, now, NULL));
	case REG_EV_CANCEL:
		return (reg_cancel(reg, 0, now, NULL));
	case REG_EV_ARM:
		/* reg_set_auto() counts the rows it queued: here 0 or 1. */
		n = reg_set_auto(reg, 1, now);
		return (n == 1 ? REG_ACT_START_JOB : n == 0 ? -EINVAL : n);
	case REG_EV_CONNECTING:
		return (reg_job_phase(reg, 0, REG_ST_CONNECTING, 0, 4000,
		    now));
	case REG_EV_WRITING:
		return (reg_job_phase(reg, 0, REG_ST_WRITING, 2000, 4000,
		    now));
	case REG_EV_VERIFYING:
		return (reg_job_phase(reg, 0, REG_ST_VERIFYING, 4000, 4000,
		    now));
	case REG_EV_REBOOTING:
		return (reg_job_phase(reg, 0, REG_ST_REBOOTING, 4000, 4000,
		    now));
	case REG_EV_JOB_DONE:
		return (reg_job_done(reg, 0, now));
	case REG_EV_JOB_FAILED:
		return (reg_job_failed(reg, 0, "flash write failed", now));
	default:
		return (-EINVAL);
	}
}

struct tcase {
	enum setup	 su;
	int		 flags;
	enum reg_event	 ev;
	enum reg_state	 to;
	int		 ret;		/* act, or -errno, or REFUSED */
	int		 present;	/* after the event */
};

#define C(su, fl, ev, to, ret, pr) {					\
	SU_##su, fl, REG_EV_##ev, REG_ST_##to, ret, pr }
#define NONE	REG_ACT_NONE
#define START	REG_ACT_START_JOB
#define ENTER	REG_ACT_ENTER_DL
#define CANCELJ	REG_ACT_CANCEL_JOB
#define BACK	REG_ACT_REAPPEARED
#define LOST	REG_ACT_PORT_GONE

/*
 * Every event a setup accepts, with its outcome.  Any (setup, event)
 * pair missing here must be refused: that is checked after the list.
 */
static const struct tcase cases[] = {
	C(EMPTY, 0, ADD_ROM, PLUGGED, NONE, 1),
	C(EMPTY, T_ARMED, ADD_ROM, QUEUED, START, 1),
	C(EMPTY, 0, ADD_APP, APP, NONE, 1),
	C(EMPTY, 0, ADD_OTHER, PLUGGED, NONE, 1),

	C(PLUGGED_ROM, 0, REMOVE, EMPTY, NONE, 0),
	C(PLUGGED_ROM, 0, FLASH, QUEUED, START, 1),
	C(PLUGGED_ROM, 0, ARM, QUEUED, START, 1),
	C(PLUGGED_BRIDGE, 0, REMOVE, EMPTY, NONE, 0),
	C(PLUGGED_BRIDGE, 0, FLASH, QUEUED, START, 1),
	C(PLUGGED_BRIDGE, 0, ARM, PLUGGED, REFUSED, 1),
	C(PLUGGED_JTAG, 0, REMOVE, EMPTY, NONE, 0),
	C(PLUGGED_JTAG, 0, FLASH, QUEUED, START, 1),
	C(PLUGGED_JTAG, 0, ARM, PLUGGED, REFUSED, 1),
	C(PLUGGED_UNKNOWN, 0, REMOVE, EMPTY, NONE, 0),
	C(PLUGGED_UNKNOWN, 0, FLASH, PLUGGED, -EPERM, 1),
	C(PLUGGED_UNKNOWN, T_FORCE, FLASH, QUEUED, START, 1),
	C(PLUGGED_UNKNOWN, 0, ARM, PLUGGED, REFUSED, 1),

	C(APP, 0, REMOVE, EMPTY, NONE, 0),
	C(APP, 0, FLASH, WAIT_DL, ENTER, 1),
	C(APP, 0, ARM, APP, REFUSED, 1),

	C(WAIT_DL, 0, REMOVE, WAIT_DL, NONE, 0),
	C(WAIT_DL, 0, CANCEL, APP, NONE, 1),
	C(WAIT_DL, 0, FLASH, WAIT_DL, -EINVAL, 1),
	C(WAIT_DL_ABSENT, 0, ADD_ROM, QUEUED, START, 1),
	C(WAIT_DL_ABSENT, 0, ADD_APP, WAIT_DL, NONE, 1),
	C(WAIT_DL_ABSENT, 0, ADD_OTHER, PLUGGED, NONE, 1),
	C(WAIT_DL_ABSENT, 0, CANCEL, EMPTY, NONE, 0),

	C(QUEUED, 0, REMOVE, GONE, LOST, 0),
	C(QUEUED, 0, CONNECTING, CONNECTING, NONE, 1),
	C(QUEUED, 0, WRITING, WRITING, NONE, 1),
	C(QUEUED, 0, VERIFYING, VERIFYING, NONE, 1),
	C(QUEUED, 0, REBOOTING, REBOOTING, NONE, 1),
	C(QUEUED, 0, JOB_DONE, DONE, NONE, 1),
	C(QUEUED, 0, JOB_FAILED, FAILED, NONE, 1),
	C(QUEUED, 0, CANCEL, FAILED, CANCELJ, 1),
	C(QUEUED, 0, FLASH, QUEUED, -EINVAL, 1),

	C(CONNECTING, 0, REMOVE, GONE, LOST, 0),
	C(CONNECTING, 0, CONNECTING, CONNECTING, NONE, 1),
	C(CONNECTING, 0, WRITING, WRITING, NONE, 1),
	C(CONNECTING, 0, VERIFYING, VERIFYING, NONE, 1),
	C(CONNECTING, 0, REBOOTING, REBOOTING, NONE, 1),
	C(CONNECTING, 0, JOB_DONE, DONE, NONE, 1),
	C(CONNECTING, 0, JOB_FAILED, FAILED, NONE, 1),
	C(CONNECTING, 0, CANCEL, FAILED, CANCELJ, 1),

	C(WRITING, 0, REMOVE, GONE, LOST, 0),
	C(WRITING, 0, CONNECTING, WRITING, -EINVAL, 1),
	C(WRITING, 0, WRITING, WRITING, NONE, 1),
	C(WRITING, 0, VERIFYING, VERIFYING, NONE, 1),
	C(WRITING, 0, REBOOTING, REBOOTING, NONE, 1),
	C(WRITING, 0, JOB_DONE, DONE, NONE, 1),
	C(WRITING, 0, JOB_FAILED, FAILED, NONE, 1),
	C(WRITING, 0, CANCEL, FAILED, CANCELJ, 1),

	C(VERIFYING, 0, REMOVE, GONE, LOST, 0),
	C(VERIFYING, 0, WRITING, VERIFYING, -EINVAL, 1),
	C(VERIFYING, 0, VERIFYING, VERIFYING, NONE, 1),
	C(VERIFYING, 0, REBOOTING, REBOOTING, NONE, 1),
	C(VERIFYING, 0, JOB_DONE, DONE, NONE, 1),
	C(VERIFYING, 0, JOB_FAILED, FAILED, NONE, 1),
	C(VERIFYING, 0, CANCEL, FAILED, CANCELJ, 1),

	C(REBOOTING, 0, REMOVE, REBOOTING, NONE, 0),
	C(REBOOTING, 0, REBOOTING, REBOOTING, NONE, 1),
	C(REBOOTING, 0, JOB_DONE, DONE, NONE, 1),
	C(REBOOTING, 0, JOB_FAILED, FAILED, NONE, 1),
	C(REBOOTING, 0, CANCEL, REBOOTING, -EINVAL, 1),
	C(REBOOTING_ABSENT, 0, ADD_ROM, REBOOTING, NONE, 1),
	C(REBOOTING_ABSENT, 0, ADD_APP, REBOOTING, NONE, 1),
	C(REBOOTING_ABSENT, 0, ADD_OTHER, REBOOTING, NONE, 1),
	C(REBOOTING_ABSENT, 0, REBOOTING, REBOOTING, NONE, 0),
	C(REBOOTING_ABSENT, 0, JOB_DONE, DONE, NONE, 0),
	C(REBOOTING_ABSENT, 0, JOB_FAILED, FAILED, NONE, 0),

	C(DONE, 0, REMOVE, DONE, NONE, 0),
	C(DONE, T_LATER, REMOVE, EMPTY, NONE, 0),
	C(DONE, 0, FLASH, QUEUED, START, 1),
	C(DONE, 0, JOB_DONE, DONE, -EINVAL, 1),
	/* Back from its reset: the next removal is the technician's. */
	C(DONE_APP, 0, REMOVE, EMPTY, NONE, 0),
	C(DONE_APP, 0, FLASH, WAIT_DL, ENTER, 1),
	C(DONE_ABSENT, 0, ADD_ROM, DONE, NONE, 1),
	C(DONE_ABSENT, 0, ADD_APP, DONE, NONE, 1),
	C(DONE_ABSENT, 0, ADD_OTHER, DONE, NONE, 1),
	C(DONE_ABSENT, T_LATER, ADD_ROM, PLUGGED, NONE, 1),
	C(DONE_ABSENT, T_LATER | T_ARMED, ADD_ROM, QUEUED, START, 1),
	C(DONE_ABSENT, T_LATER, ADD_APP, APP, NONE, 1),
	C(DONE_ABSENT, T_LATER, ADD_OTHER, PLUGGED, NONE, 1),
	C(DONE_ABSENT, 0, FLASH, DONE, -EPERM, 0),

	C(FAILED, 0, REMOVE, FAILED, NONE, 0),
	C(FAILED, T_LATER, REMOVE, EMPTY, NONE, 0),
	C(FAILED, 0, FLASH, QUEUED, START, 1),
	C(FAILED_APP, 0, REMOVE, FAILED, NONE, 0),
	C(FAILED_APP, 0, FLASH, WAIT_DL, ENTER, 1),
	C(FAILED_ABSENT, 0, ADD_ROM, FAILED, NONE, 1),
	C(FAILED_ABSENT, 0, ADD_APP, FAILED, NONE, 1),
	C(FAILED_ABSENT, 0, ADD_OTHER, FAILED, NONE, 1),
	C(FAILED_ABSENT, T_LATER, ADD_ROM, PLUGGED, NONE, 1),
	C(FAILED_ABSENT, T_LATER | T_ARMED, ADD_ROM, QUEUED, START, 1),
	C(FAILED_ABSENT, T_LATER, ADD_APP, APP, NONE, 1),
	C(FAILED_ABSENT, T_LATER, ADD_OTHER, PLUGGED, NONE, 1),
	C(FAILED_ABSENT, 0, FLASH, FAILED, -EPERM, 0),
	C(FAILED_JOB, 0, REMOVE, FAILED, NONE, 0),
	C(FAILED_JOB, 0, JOB_FAILED, FAILED, NONE, 1),
	C(FAILED_JOB, 0, JOB_DONE, DONE, NONE, 1),
	C(FAILED_JOB, 0, FLASH, FAILED, -EPERM, 1),
	C(FAILED_JOB, 0, WRITING, FAILED, -EINVAL, 1),

	C(GONE_JOB, 0, ADD_ROM, WRITING, BACK, 1),
	C(GONE_JOB, 0, ADD_APP, WRITING, BACK, 1),
	C(GONE_JOB, 0, ADD_OTHER, WRITING, BACK, 1),
	C(GONE_JOB, 0, REBOOTING, REBOOTING, NONE, 0),
	C(GONE_JOB, 0, JOB_DONE, DONE, NONE, 0),
	C(GONE_JOB, 0, JOB_FAILED, GONE, NONE, 0),
	C(GONE_JOB, 0, CANCEL, FAILED, CANCELJ, 0),
	C(GONE_JOB, 0, WRITING, GONE, -EINVAL, 0),
	C(GONE_NOJOB, 0, ADD_ROM, PLUGGED, NONE, 1),
	C(GONE_NOJOB, T_ARMED, ADD_ROM, QUEUED, START, 1),
	C(GONE_NOJOB, 0, ADD_APP, APP, NONE, 1),
	C(GONE_NOJOB, 0, ADD_OTHER, PLUGGED, NONE, 1),
	C(GONE_NOJOB, 0, CANCEL, GONE, -EPERM, 0),
};

/* Run one case on a fresh registry; covered[] collects the rules used. */
static void
run_case(const struct tcase *tc, unsigned char *covered)
{
	struct reg	*reg;
	uint64_t	 gen0;
	int		 ret, act, arow, ok, rule, nrows0;
	int		 want_rule;

	reg = reg_new();
	ok = drive(reg, tc->su);
	if (tc->flags & T_ARMED) {
		if (reg_set_auto(reg, 1, now) != 0) {
			tap_diag("arming queued something in the setup");
			ok = 0;
		}
		drain(reg);
	}
	if (tc->flags & T_LATER)
		now += REG_GRACE_MS + 1;
	gen0 = reg_row_gen(reg, 0);
	nrows0 = reg_count(reg);

	ret = fire(reg, tc->ev, tc->flags);
	rule = reg_last_rule(reg);
	act = next_act(reg, &arow);

	if (tc->ret == REFUSED || tc->ret < 0) {
		want_rule = 0;
		if (tc->ret == REFUSED ? ret >= 0 : ret != tc->ret) {
			tap_diag("returned %d, want %s", ret,
			    tc->ret == REFUSED ? "a refusal" : "the errno");
			ok = 0;
		}
		if (act != -1) {
			tap_diag("a refused event queued %s",
			    reg_act_name((enum reg_act)act));
			ok = 0;
		}
		if (reg_row_gen(reg, 0) != gen0) {
			tap_diag("a refused event changed the row");
			ok = 0;
		}
	} else {
		want_rule = 1;
		if (ret != tc->ret) {
			tap_diag("returned %d, want %d", ret, tc->ret);
			ok = 0;
		}
		if (tc->ret == REG_ACT_NONE ? act != -1 :
		    (act != tc->ret || arow != 0)) {
			tap_diag("action %d (row %d), want %d", act, arow,
			    tc->ret == REG_ACT_NONE ? -1 : tc->ret);
			ok = 0;
		}
	}
	if (want_rule && rule < 0) {
		tap_diag("no rule recorded for an accepted event");
		ok = 0;
	}
	if (!want_rule && rule >= 0) {
		tap_diag("rule %d recorded for a refused event", rule);
		ok = 0;
	}
	if (reg_row_state(reg, 0) != tc->to) {
		tap_diag("state %s, want %s",
		    reg_state_name(reg_row_state(reg, 0)),
		    reg_state_name(tc->to));
		ok = 0;
	}
	if (reg_count(reg) != nrows0) {
		tap_diag("row count changed %d -> %d", nrows0, reg_count(reg));
		ok = 0;
	}
	{
		struct reg_snapshot	s;

		reg_snapshot(reg, 0, now, &s);
		if (s.present != tc->present) {
			tap_diag("present %d, want %d", s.present,
			    tc->present);
			ok = 0;
		}
	}
	if (rule >= 0 && (size_t)rule < reg_rule_count())
		covered[rule] = 1;
	tap_ok(ok, "%s%s%s%s + %s -> %s (%s)", setups[tc->su].name,
	    (tc->flags & T_ARMED) ? ", armed" : "",
	    (tc->flags & T_LATER) ? ", later" : "",
	    (tc->flags & T_FORCE) ? ", forced" : "",
	    reg_event_name(tc->ev), reg_state_name(tc->to),
	    tc->ret >= 0 ? reg_act_name((enum reg_act)tc->ret) : "refused");
	reg_free(reg);
}

/* Whether the case list names this (setup, event) pair. */
static int
listed(enum setup su, enum reg_event ev)
{
	size_t	i;

	for (i = 0; i < nitems(cases); i++) {
		if (cases[i].su == su && cases[i].ev == ev)
			return (1);
	}
	return (0);
}

/* Every case, the refusals the list implies, then rule coverage. */
static void
test_table(void)
{
	unsigned char	*covered;
	struct tcase	 tc;
	size_t		 i, nrules = reg_rule_count();
	int		 su, ev, missing = 0;

	covered = xcalloc(nrules, 1);
	for (i = 0; i < nitems(cases); i++)
		run_case(&cases[i], covered);

	/*
	 * A present port added again under another name means its removal
	 * was missed (tested in test_implicit_remove), so adds are only
	 * refused-or-not on absent rows, where the list names them all.
	 */
	for (su = 0; su < SU__MAX; su++) {
		for (ev = 0; ev < REG_EV__MAX; ev++) {
			if (listed((enum setup)su, (enum reg_event)ev))
				continue;
			if (setups[su].present && (ev == REG_EV_ADD_ROM ||
			    ev == REG_EV_ADD_APP || ev == REG_EV_ADD_OTHER))
				continue;
			tc.su = (enum setup)su;
			tc.flags = 0;
			tc.ev = (enum reg_event)ev;
			tc.to = setups[su].state;
			tc.ret = REFUSED;
			tc.present = setups[su].present;
			run_case(&tc, covered);
		}
	}

	for (i = 0; i < nrules; i++) {
		if (!covered[i]) {
			tap_diag("rule %zu of the table was never exercised",
			    i);
			missing++;
		}
	}
	tap_ok(missing == 0, "every one of the %zu rules was exercised",
	    nrules);
	free(covered);
}

/* ============================= Scenarios ============================== */

/* App mode -> ROM download mode under a new ttyACM number: same row. */
static void
test_reenumeration(void)
{
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 app, rom, other;
	int			 row, arow;

	other = mkport(LOC2, "/dev/ttyACM1", USB_KIND_S2_ROM);
	app = mkport(LOC, "/dev/ttyACM0", USB_KIND_APP_CDC);
	reg_port_added(reg, &app, now);
	tick();
	reg_port_added(reg, &other, now);
	tick();
	row = reg_find(reg, LOC);
	is_int(row, 0, "the first port got row 0");
	is_int(reg_flash(reg, row, 0, now, NULL), REG_ACT_ENTER_DL,
	    "flashing an app asks for download mode");
	reg_snapshot(reg, row, now, &s);
	is_str(s.state_text, "waiting for download mode: hold BOOT, "
	    "press RST", "the row tells the operator what to do");
	drain(reg);

	tick();
	is_int(reg_port_removed(reg, &app, now), REG_ACT_NONE,
	    "the app port leaves");
	tick();
	rom = mkport(LOC, "/dev/ttyACM3", USB_KIND_S2_ROM);
	is_int(reg_port_added(reg, &rom, now), REG_ACT_START_JOB,
	    "it comes back in download mode and the wanted job starts");
	is_int(next_act(reg, &arow), REG_ACT_START_JOB, "action queued");
	is_int(arow, row, "... for the same row");
	is_int(reg_count(reg), 2, "no new row for the new ttyACM number");
	is_int(reg_find(reg, LOC), row, "the location still maps to it");
	is_int(reg_find_devnode(reg, "/dev/ttyACM3"), row,
	    "the row now shows /dev/ttyACM3");
	is_int(reg_find_devnode(reg, "/dev/ttyACM0"), -1,
	    "and no longer /dev/ttyACM0");
	reg_snapshot(reg, row, now, &s);
	is_str(s.devnode, "/dev/ttyACM3", "snapshot devnode");
	is_str(s.vidpid, "303a:0002", "snapshot VID:PID is the ROM's");
	is_int(s.attempts, 1, "one attempt so far");

	/* The job resets the unit (USB-JTAG style): it keeps its job. */
	{
		int	 cookie;

		reg_set_job(reg, row, &cookie);
		reg_job_phase(reg, row, REG_ST_CONNECTING, 0, 100, now);
		tick();
		is_int(reg_port_removed(reg, &rom, now), REG_ACT_PORT_GONE,
		    "the port vanishes during connect: job told");
		drain(reg);
		is_int(reg_row_state(reg, row), REG_ST_GONE, "row is gone");
		tick();
		rom = mkport(LOC, "/dev/ttyACM4", USB_KIND_S2_ROM);
		is_int(reg_port_added(reg, &rom, now), REG_ACT_REAPPEARED,
		    "it comes back: the job gets the new devnode");
		is_int(reg_row_state(reg, row), REG_ST_CONNECTING,
		    "and the row is back to connecting");
		is_str(reg_row_port(reg, row)->devnode, "/dev/ttyACM4",
		    "reg_row_port has the new devnode for the job");
		tap_ok(reg_get_job(reg, row) == &cookie,
		    "the row keeps its job handle");
		reg_job_done(reg, row, now);
		tap_ok(reg_get_job(reg, row) == NULL,
		    "the handle is dropped when the job ends");
	}
	reg_free(reg);
}

/* Run a unit through a full job on a row and identify it by mac. */
static void
flash_unit(struct reg *reg, const char *loc, const char *devnode,
    const uint8_t mac[6], int fail)
{
	struct port_info	p;
	int			row;

	p = mkport(loc, devnode, USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	row = reg_find(reg, loc);
	tick();
	reg_flash(reg, row, 0, now, NULL);
	tick();
	reg_job_phase(reg, row, REG_ST_CONNECTING, 0, 100, now);
	reg_job_identity(reg, row, "ESP32-S2FNR2", mac, now);
	tick();
	if (fail)
		reg_job_failed(reg, row, "MD5 mismatch", now);
	else
		reg_job_done(reg, row, now);
	drain(reg);
	tick();
}

/* A unit moved to another port is recognised by its MAC. */
static void
test_mac(void)
{
	static const uint8_t	 mac[6] = { 0x7c, 0xdf, 0xa1, 0x00, 0x11,
				    0x22 };
	static const uint8_t	 mac2[6] = { 0x7c, 0xdf, 0xa1, 0x00, 0x11,
				    0x33 };
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p;
	int			 a, b;

	flash_unit(reg, LOC, "/dev/ttyACM0", mac, 1);
	a = reg_find(reg, LOC);
	reg_snapshot(reg, a, now, &s);
	is_str(s.mac_text, "7c:df:a1:00:11:22", "the row shows the MAC");
	is_str(s.chip, "ESP32-S2FNR2", "and the chip");
	is_str(s.state_text, "failed: MD5 mismatch", "and why it failed");
	is_int(reg_find_mac(reg, mac), a, "reg_find_mac finds it");

	/* The operator pulls it (the row stays failed: reboot grace). */
	p = *reg_row_port(reg, a);
	now += REG_GRACE_MS + 1;
	reg_port_removed(reg, &p, now);
	is_int(reg_row_state(reg, a), REG_ST_EMPTY,
	    "failed row clears when the unit is unplugged");
	reg_snapshot(reg, a, now, &s);
	tap_ok(!s.has_mac && s.mac_text[0] == '\0' && s.reason[0] == '\0' &&
	    s.attempts == 0, "and forgets the unit");

	/* ... and plugs it into another port. */
	tick();
	p = mkport(LOC2, "/dev/ttyACM5", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	b = reg_find(reg, LOC2);
	tap_ok(b != a && b >= 0, "the other port has its own row");
	reg_flash(reg, b, 0, now, NULL);
	drain(reg);
	is_int(reg_job_identity(reg, b, "ESP32-S2", mac, now), a,
	    "the job's MAC names the slot the unit was at");
	reg_snapshot(reg, b, now, &s);
	is_int(s.moved_from, a + 1, "snapshot: moved from that slot");
	is_int(s.unit_last, REG_ST_FAILED, "snapshot: it failed there");
	is_int(s.attempts, 2, "snapshot: its second attempt");
	is_str(s.mac_text, "7c:df:a1:00:11:22", "the new row shows the MAC");

	/* A unit that vanished mid-job and turns up elsewhere. */
	reg_job_done(reg, b, now);
	tick();
	p = mkport(LOC3, "/dev/ttyACM6", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	a = reg_find(reg, LOC3);
	reg_flash(reg, a, 0, now, NULL);
	reg_job_phase(reg, a, REG_ST_CONNECTING, 0, 100, now);
	reg_job_identity(reg, a, "ESP32-S2", mac2, now);
	reg_job_phase(reg, a, REG_ST_WRITING, 10, 100, now);
	tick();
	reg_port_removed(reg, &p, now);
	reg_job_failed(reg, a, "device disconnected", now);
	drain(reg);
	is_int(reg_row_state(reg, a), REG_ST_GONE, "unit pulled mid-write");
	tick();
	/* It reappears at slot b's port after that unit was unplugged. */
	p = *reg_row_port(reg, b);
	now += REG_GRACE_MS + 1;
	reg_port_removed(reg, &p, now);
	p = mkport(LOC2, "/dev/ttyACM7", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_flash(reg, b, 0, now, NULL);
	drain(reg);
	is_int(reg_job_identity(reg, b, "ESP32-S2", mac2, now), a,
	    "the pulled unit is recognised at its new port");
	is_int(reg_row_state(reg, a), REG_ST_EMPTY,
	    "its old gone row clears: the unit is here now");
	reg_snapshot(reg, b, now, &s);
	is_int(s.unit_last, REG_ST_GONE, "it was gone at the old slot");

	/* Same MAC while the old row still holds a present unit. */
	reg_job_done(reg, b, now);
	tick();
	p = mkport(LOC3, "/dev/ttyACM8", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_flash(reg, a, 0, now, NULL);
	drain(reg);
	is_int(reg_job_identity(reg, a, "ESP32-S2", mac2, now), b,
	    "a clone MAC names the other slot");
	is_int(reg_row_state(reg, b), REG_ST_DONE,
	    "but a row with its unit still plugged is left alone");
	reg_free(reg);
}

/* Done rows clear on unplug; a reboot right after the job does not. */
static void
test_done_clears(void)
{
	static const uint8_t	 mac[6] = { 1, 2, 3, 4, 5, 6 };
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p, app;
	int			 row;

	flash_unit(reg, LOC, "/dev/ttyACM0", mac, 0);
	row = reg_find(reg, LOC);
	is_int(reg_row_state(reg, row), REG_ST_DONE, "unit done");
	/* The hard reset: the ROM port leaves, the app's arrives. */
	p = *reg_row_port(reg, row);
	reg_port_removed(reg, &p, now);
	tick();
	app = mkport(LOC, "/dev/ttyACM1", USB_KIND_APP_CDC);
	reg_port_added(reg, &app, now);
	reg_snapshot(reg, row, now, &s);
	tap_ok(s.state == REG_ST_DONE && s.present &&
	    strcmp(s.devnode, "/dev/ttyACM1") == 0,
	    "the reboot's re-enumeration keeps it done, now on ttyACM1");
	is_str(s.mac_text, "01:02:03:04:05:06", "still showing its MAC");
	now += REG_GRACE_MS + 1;
	reg_port_removed(reg, &app, now);
	reg_snapshot(reg, row, now, &s);
	tap_ok(s.state == REG_ST_EMPTY && !s.present && !s.has_mac &&
	    s.t_started == 0 && s.percent == -1,
	    "unplugging the done unit clears the row");
	tick();
	p = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_snapshot(reg, row, now, &s);
	tap_ok(s.state == REG_ST_PLUGGED && s.attempts == 0 &&
	    s.reason[0] == '\0', "the next unit starts fresh in that slot");
	is_str(s.state_text, "plugged, download mode", "plugged text");
	reg_free(reg);
}

/*
 * A quick technician: the job saw the unit's reset through, so unplugging
 * it right after "done" clears the row, and the next unit, plugged in at
 * once, is flashed (no re-enumeration grace to wait out).
 */
static void
test_quick_swap(void)
{
	struct reg		*reg = reg_new();
	struct port_info	 rom, app;
	struct reg_counts	 c;
	int			 row, arow;

	reg_set_auto(reg, 1, now);
	rom = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	is_int(reg_port_added(reg, &rom, now), REG_ACT_START_JOB,
	    "quick swap: the first unit is queued");
	row = reg_find(reg, LOC);
	drain(reg);
	reg_job_phase(reg, row, REG_ST_WRITING, 50, 100, now);
	tick();
	reg_job_phase(reg, row, REG_ST_REBOOTING, 100, 100, now);
	reg_port_removed(reg, &rom, now);
	tick();
	app = mkport(LOC, "/dev/ttyACM1", USB_KIND_APP_CDC);
	is_int(reg_port_added(reg, &app, now), REG_ACT_NONE,
	    "the reset's return, while rebooting");
	reg_job_done(reg, row, now);
	drain(reg);
	tick();
	reg_port_removed(reg, &app, now);
	is_int(reg_row_state(reg, row), REG_ST_EMPTY,
	    "unplugged right after done: the row clears at once");
	tick();
	rom = mkport(LOC, "/dev/ttyACM2", USB_KIND_S2_ROM);
	is_int(reg_port_added(reg, &rom, now), REG_ACT_START_JOB,
	    "the next unit, plugged in at once, is queued");
	is_int(next_act(reg, &arow), REG_ACT_START_JOB, "its job starts");
	is_int(arow, row, "in the same slot");

	/* The job may end before the hotplug event of the return arrives. */
	reg_job_phase(reg, row, REG_ST_REBOOTING, 100, 100, now);
	reg_port_removed(reg, &rom, now);
	reg_job_done(reg, row, now);
	tick();
	app = mkport(LOC, "/dev/ttyACM3", USB_KIND_APP_CDC);
	reg_port_added(reg, &app, now);
	is_int(reg_row_state(reg, row), REG_ST_DONE,
	    "a return after the job's end keeps the row done");
	tick();
	reg_port_removed(reg, &app, now);
	is_int(reg_row_state(reg, row), REG_ST_EMPTY,
	    "and the removal after it clears the row");
	reg_get_counts(reg, &c);
	tap_ok(c.done == 0 && c.jobs_done == 2 && c.jobs_failed == 0,
	    "the session counts both units, unplugged since (%u done, %u "
	    "jobs done, %u failed)", c.done, c.jobs_done, c.jobs_failed);
	reg_free(reg);
}

/* Unplugged during a job: gone, the job told, and the reason kept. */
static void
test_gone(void)
{
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p;
	int			 arow;

	p = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_flash(reg, 0, 0, now, NULL);
	drain(reg);
	reg_job_phase(reg, 0, REG_ST_WRITING, 100, 1000, now);
	tick();
	is_int(reg_port_removed(reg, &p, now), REG_ACT_PORT_GONE,
	    "unplug mid-write reports the port gone");
	is_int(next_act(reg, &arow), REG_ACT_PORT_GONE, "action queued");
	reg_snapshot(reg, 0, now, &s);
	is_str(s.state_text, "gone: unplugged while writing", "gone text");
	tap_ok(s.job_active, "the job has not ended yet");
	is_int(reg_job_phase(reg, 0, REG_ST_WRITING, 200, 1000, now),
	    -EINVAL, "stale progress from the job is refused");
	is_int(reg_job_failed(reg, 0, "write: No such device", now),
	    REG_ACT_NONE, "the job's failure is taken");
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.state == REG_ST_GONE && !s.job_active &&
	    strcmp(s.reason, "unplugged while writing") == 0,
	    "row stays gone with its reason, job ended");
	is_int(reg_flash(reg, 0, 0, now, NULL), -EINVAL,
	    "a gone row cannot be flashed");
	reg_free(reg);
}

/* A cancel fails the row at once and keeps its reason when the job ends. */
static void
test_cancel(void)
{
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p;
	int			 row;

	p = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_flash(reg, 0, 0, now, NULL);
	drain(reg);
	reg_job_phase(reg, 0, REG_ST_WRITING, 100, 1000, now);
	tick();
	is_int(reg_cancel(reg, 0, now, NULL), REG_ACT_CANCEL_JOB,
	    "cancel while writing asks for the job to stop");
	is_int(next_act(reg, &row), REG_ACT_CANCEL_JOB, "action queued");
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.state == REG_ST_FAILED && s.job_active &&
	    strcmp(s.state_text, "failed: cancelled by operator") == 0,
	    "row fails at once, job still winding down: %s", s.state_text);
	reg_job_failed(reg, 0, "operation cancelled", now);
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.state == REG_ST_FAILED && !s.job_active &&
	    strcmp(s.reason, "cancelled by operator") == 0,
	    "the job's end keeps the operator's reason");
	is_int(reg_flash(reg, 0, 0, now, NULL), REG_ACT_START_JOB,
	    "and the row can be retried");
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.state == REG_ST_QUEUED && s.reason[0] == '\0' &&
	    s.attempts == 2, "retry: queued, reason cleared, attempt 2");
	reg_free(reg);
}

/* Auto-flash: units entering download mode are queued at once. */
static void
test_auto(void)
{
	struct reg		*reg = reg_new();
	struct port_info	 p;
	struct reg_counts	 c;
	char			 loc[64], dev[32];
	int			 i, n, row;

	/* Before arming: two ROM units idle, a bridge, an app, unknown. */
	for (i = 0; i < 2; i++) {
		snprintf(loc, sizeof loc, "usb-0:2.%d", i);
		snprintf(dev, sizeof dev, "/dev/ttyACM%d", i);
		p = mkport(loc, dev, USB_KIND_S2_ROM);
		is_int(reg_port_added(reg, &p, now), REG_ACT_NONE,
		    "unarmed: ROM unit %d waits", i);
	}
	p = mkport("usb-0:2.5", "/dev/ttyUSB0", USB_KIND_BRIDGE);
	reg_port_added(reg, &p, now);
	p = mkport("usb-0:2.6", "/dev/ttyACM6", USB_KIND_APP_CDC);
	reg_port_added(reg, &p, now);
	p = mkport("usb-0:2.7", "/dev/ttyACM7", USB_KIND_UNKNOWN);
	reg_port_added(reg, &p, now);
	is_int(next_act(reg, NULL), -1, "nothing to do yet");

	n = reg_set_auto(reg, 1, now);
	is_int(n, 2, "arming queues the two idle download-mode units");
	is_int(reg_get_auto(reg), 1, "armed");
	for (i = 0; i < 2; i++) {
		is_int(next_act(reg, &row), REG_ACT_START_JOB,
		    "start job %d", i);
		is_int(row, i, "... on row %d", i);
	}
	is_int(next_act(reg, NULL), -1, "bridge, app and unknown untouched");

	/* New units in download mode are queued as they arrive. */
	for (i = 10; i < 13; i++) {
		snprintf(loc, sizeof loc, "usb-0:3.%d", i);
		snprintf(dev, sizeof dev, "/dev/ttyACM%d", i);
		p = mkport(loc, dev, USB_KIND_S2_ROM);
		is_int(reg_port_added(reg, &p, now), REG_ACT_START_JOB,
		    "armed: new ROM unit %d queued at once", i);
	}
	p = mkport("usb-0:3.20", "/dev/ttyACM20", USB_KIND_UNKNOWN);
	is_int(reg_port_added(reg, &p, now), REG_ACT_NONE,
	    "armed: an unknown device is never flashed by itself");
	p = mkport("usb-0:3.21", "/dev/ttyACM21", USB_KIND_APP_CDC);
	is_int(reg_port_added(reg, &p, now), REG_ACT_NONE,
	    "armed: an app is not queued (it is not in download mode)");
	reg_get_counts(reg, &c);
	tap_ok(c.active == 5 && c.idle == 5 && c.unknown == 2 &&
	    c.rows == 10 && c.present == 10, "counts: %u active, %u idle, "
	    "%u unknown, %u rows", c.active, c.idle, c.unknown, c.rows);

	/* Each new unit in a slot is flashed again. */
	row = reg_find(reg, "usb-0:3.10");
	reg_job_done(reg, row, now);
	drain(reg);
	now += REG_GRACE_MS + 1;
	p = *reg_row_port(reg, row);
	reg_port_removed(reg, &p, now);
	tick();
	p = mkport("usb-0:3.10", "/dev/ttyACM30", USB_KIND_S2_ROM);
	is_int(reg_port_added(reg, &p, now), REG_ACT_START_JOB,
	    "armed: the next unit in a done slot is queued too");
	is_int(reg_set_auto(reg, 0, now), 0, "disarm");
	drain(reg);
	p = mkport("usb-0:4.1", "/dev/ttyACM40", USB_KIND_S2_ROM);
	is_int(reg_port_added(reg, &p, now), REG_ACT_NONE,
	    "disarmed: new ROM units wait again");
	reg_free(reg);
}

/* Adds seen twice, missed removals and stale removals. */
static void
test_implicit_remove(void)
{
	struct reg		*reg = reg_new();
	struct port_info	 a, b;
	uint64_t		 gen;

	a = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	reg_port_added(reg, &a, now);
	gen = reg_gen(reg);
	is_int(reg_port_added(reg, &a, now), REG_ACT_NONE,
	    "the same port twice (enumeration + event) is accepted");
	tap_ok(reg_gen(reg) == gen && reg_count(reg) == 1,
	    "... and changes nothing");
	tick();
	b = mkport(LOC, "/dev/ttyACM2", USB_KIND_APP_CDC);
	reg_port_added(reg, &b, now);
	tap_ok(reg_count(reg) == 1 && reg_row_state(reg, 0) == REG_ST_APP &&
	    strcmp(reg_row_port(reg, 0)->devnode, "/dev/ttyACM2") == 0,
	    "a new port at a present location replaces the old one");
	gen = reg_row_gen(reg, 0);
	is_int(reg_port_removed(reg, &a, now), -ENOENT,
	    "the late removal of the old port is ignored");
	tap_ok(reg_row_gen(reg, 0) == gen &&
	    reg_row_state(reg, 0) == REG_ST_APP, "... and changes nothing");
	a = mkport(LOC2, "/dev/ttyACM9", USB_KIND_S2_ROM);
	is_int(reg_port_removed(reg, &a, now), -ENOENT,
	    "a removal at an unknown location is ignored");
	memset(&a, 0, sizeof a);
	is_int(reg_port_added(reg, &a, now), -EINVAL,
	    "a port without location is refused");
	is_int(reg_count(reg), 1, "... without making a row");
	reg_free(reg);
}

/* Snapshot figures: percent, rate, ETA, elapsed. */
static void
test_snapshot(void)
{
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p;
	uint64_t		 t0;

	p = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	reg_port_added(reg, &p, now);
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.slot == 1 && s.index == 0 && s.percent == -1 &&
	    s.rate == 0 && s.eta_ms == -1 && s.t_started == 0 &&
	    strcmp(s.location, LOC) == 0 &&
	    strcmp(s.product, "ESP32-S2") == 0 &&
	    s.kind == USB_KIND_S2_ROM && strcmp(s.state_name, "plugged") == 0,
	    "idle snapshot");
	t0 = now;
	reg_flash(reg, 0, 0, now, NULL);
	now += 500;
	/* The first report already counts bytes (snapshots coalesce). */
	reg_job_phase(reg, 0, REG_ST_WRITING, 20000, 400000, now);
	now += 2000;
	reg_job_phase(reg, 0, REG_ST_WRITING, 120000, 400000, now);
	now += 1000;
	reg_snapshot(reg, 0, now, &s);
	is_int(s.percent, 30, "30%% written");
	is_str(s.state_text, "writing 30%", "writing text");
	is_int(s.rate, 50000, "100000 more bytes in 2 s: 50000 B/s");
	is_int(s.eta_ms, 5600, "280000 bytes left: 5.6 s");
	is_int(s.elapsed_ms, now - t0, "elapsed runs from the queueing");
	tap_ok(s.t_started == t0 && s.job_active, "started time, job on");
	reg_job_phase(reg, 0, REG_ST_VERIFYING, 400000, 400000, now);
	reg_job_done(reg, 0, now);
	t0 = s.elapsed_ms;
	now += 60000;
	reg_snapshot(reg, 0, now, &s);
	tap_ok(s.percent == 100 && s.elapsed_ms == t0 && !s.job_active,
	    "done: 100%%, elapsed frozen at the end");
	reg_free(reg);
}

/* Device text in logs and rows is escaped; the log is bounded. */
static void
test_log(void)
{
	struct reg		*reg = reg_new();
	struct reg_snapshot	 s;
	struct port_info	 p;
	const char		*line;
	size_t			 i;
	uint64_t		 t, g0;
	int			 ctl = 0;

	p = mkport(LOC, "/dev/ttyACM0", USB_KIND_S2_ROM);
	snprintf(p.product, sizeof p.product, "\x1b]0;pwned\x07");
	reg_port_added(reg, &p, now);
	reg_snapshot(reg, 0, now, &s);
	tap_ok(strchr(s.product, 0x1b) == NULL &&
	    strchr(s.product, 0x07) == NULL,
	    "control bytes in an unsanitized port never reach the row");
	reg_log(reg, now, "raw: %s", "\x1b]0;pwned\x07 ok");
	line = reg_log_line(reg, reg_log_count(reg) - 1, &t);
	is_str(line, "raw: \\x1b]0;pwned\\x07 ok",
	    "reg_log() escapes device text");
	is_int(t, now, "log lines carry their time");
	reg_flash(reg, 0, 0, now, NULL);
	reg_job_failed(reg, 0, "ROM said \x1b[2J", now);
	reg_snapshot(reg, 0, now, &s);
	is_str(s.reason, "ROM said \\x1b[2J", "a job's reason is escaped");
	for (i = 0; i < reg_log_count(reg); i++) {
		const char	*q;

		for (q = reg_log_line(reg, i, NULL); *q != '\0'; q++) {
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				ctl++;
		}
	}
	is_int(ctl, 0, "no control byte anywhere in the log");

	g0 = reg_log_gen(reg);
	for (i = 0; i < REG_LOG_MAX + 50; i++)
		reg_log(reg, now + i, "line %zu", i);
	is_int(reg_log_count(reg), REG_LOG_MAX, "the log keeps %d lines",
	    REG_LOG_MAX);
	is_int(reg_log_gen(reg) - g0, REG_LOG_MAX + 50,
	    "log_gen counts every line");
	is_str(reg_log_line(reg, 0, NULL), "line 50", "oldest dropped first");
	is_str(reg_log_line(reg, REG_LOG_MAX - 1, NULL), "line 305",
	    "newest last");
	tap_ok(reg_log_line(reg, REG_LOG_MAX, NULL) == NULL,
	    "out of range is NULL");
	reg_free(reg);
}

/* Only changed rows get a newer generation; actions come out in order. */
static void
test_dirty_and_actions(void)
{
	struct reg		*reg = reg_new();
	struct port_info	 p;
	struct reg_action	 a;
	uint64_t		 seen, g0, g1;
	char			*cause = NULL;
	int			 i;

	for (i = 0; i < 3; i++) {
		char	loc[32], dev[32];

		snprintf(loc, sizeof loc, "usb-0:5.%d", i);
		snprintf(dev, sizeof dev, "/dev/ttyACM%d", i);
		p = mkport(loc, dev, i == 2 ? USB_KIND_UNKNOWN :
		    USB_KIND_S2_ROM);
		reg_port_added(reg, &p, now);
	}
	seen = reg_gen(reg);
	g0 = reg_row_gen(reg, 0);
	reg_flash(reg, 1, 0, now, NULL);
	reg_job_phase(reg, 1, REG_ST_WRITING, 10, 100, now);
	g1 = reg_row_gen(reg, 1);
	tap_ok(g1 > seen && reg_row_gen(reg, 0) == g0 &&
	    reg_row_gen(reg, 2) <= seen,
	    "only the changed row is newer than the last draw");
	seen = reg_gen(reg);
	reg_job_phase(reg, 1, REG_ST_WRITING, 10, 100, now);
	is_int(reg_gen(reg), seen, "identical progress changes nothing");

	reg_flash(reg, 0, 0, now, NULL);
	tap_ok(reg_next_action(reg, &a) && a.row == 1 &&
	    a.act == REG_ACT_START_JOB && reg_next_action(reg, &a) &&
	    a.row == 0 && !reg_next_action(reg, &a), "actions come out FIFO");

	is_int(reg_flash(reg, 2, 0, now, &cause), -EPERM,
	    "flashing an unknown device is refused");
	tap_ok(cause != NULL && strstr(cause, "slot 3") != NULL &&
	    strstr(cause, "1234:5678") != NULL, "with a cause: %s",
	    cause != NULL ? cause : "(none)");
	free(cause);
	cause = NULL;
	is_int(reg_flash(reg, 7, 0, now, &cause), -EINVAL, "bad index");
	tap_ok(cause != NULL, "with a cause: %s", cause ? cause : "(none)");
	free(cause);
	cause = NULL;
	is_int(reg_cancel(reg, 2, now, &cause), -EINVAL,
	    "nothing to cancel on an idle row");
	tap_ok(cause != NULL && strstr(cause, "plugged") != NULL,
	    "with a cause: %s", cause ? cause : "(none)");
	free(cause);
	tap_ok(reg_snapshot(reg, 3, now, &(struct reg_snapshot){ 0 }) ==
	    -EINVAL && reg_row_port(reg, -1) == NULL &&
	    reg_row_state(reg, 9) == REG_ST__MAX, "bad indexes are refused");
	reg_free(reg);
}

/* The table first, then the scenarios. */
int
main(void)
{
	test_table();
	test_reenumeration();
	test_mac();
	test_done_clears();
	test_quick_swap();
	test_gone();
	test_cancel();
	test_auto();
	test_implicit_remove();
	test_snapshot();
	test_log();
	test_dirty_and_actions();
	return (tap_done());
}
