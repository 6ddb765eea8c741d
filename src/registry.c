/*
 * The device registry: one row per physical USB port, each following the
 * state machine in reg_rules[].  Pure: no I/O, no clock (callers pass
 * `now`), no locks; the main thread owns it.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "hotplug.h"
#include "registry.h"
#include "util.h"

/* ======================== The transition table ======================== */

/*
 * Conditions a rule may require.  Each comes with its opposite so that a
 * rule states exactly what it needs; reg_conditions() sets one of each
 * pair.
 */
#define G_AUTO		0x0001	/* auto-flash armed and no job running */
#define G_NOAUTO	0x0002
#define G_JOB		0x0004	/* a job started and has not ended */
#define G_NOJOB		0x0008
#define G_BACK		0x0010	/* re-added within the grace of a removal */
#define G_NOTBACK	0x0020
#define G_SETTLING	0x0040	/* the job ended within the grace */
#define G_SETTLED	0x0080
#define G_READY		0x0100	/* the port can be flashed as it is */
#define G_APPKIND	0x0200	/* the port is an app's USB CDC */
#define G_ROMKIND	0x0400	/* the port is in ROM download mode */
#define G_PRESENT	0x0800
#define G_ABSENT	0x1000

#define REG_TO_PREV	REG_ST__MAX	/* back to the state before "gone" */
#define REG_F_RESET	0x1		/* forget the previous unit first */

struct reg_rule {
	enum reg_state	 from;
	enum reg_event	 ev;
	int		 guard;		/* G_* that must all hold */
	int		 to;		/* enum reg_state or REG_TO_PREV */
	enum reg_act	 act;
	int		 flags;		/* REG_F_* */
};

#define R(f, e, g, t, a, fl) {						\
	REG_ST_##f, REG_EV_##e, g, t, REG_ACT_##a, fl }
#define S(x)	REG_ST_##x

/*
 * Rules are tried in order; the first for (state, event) whose guard
 * holds wins.  No rule for the pair: the event is refused (-EINVAL);
 * rules but no guard held: refused (-EPERM).
 */
static const struct reg_rule reg_rules[] = {
	/* Nothing plugged in. */
	R(EMPTY, ADD_ROM, G_AUTO, S(QUEUED), START_JOB, 0),
	R(EMPTY, ADD_ROM, G_NOAUTO, S(PLUGGED), NONE, 0),
	R(EMPTY, ADD_APP, 0, S(APP), NONE, 0),
	R(EMPTY, ADD_OTHER, 0, S(PLUGGED), NONE, 0),

	/* Idle: download mode, bridge, USB-JTAG or unknown. */
	R(PLUGGED, REMOVE, 0, S(EMPTY), NONE, 0),
	R(PLUGGED, FLASH, G_READY | G_NOJOB, S(QUEUED), START_JOB, 0),
	R(PLUGGED, ARM, G_ROMKIND | G_NOJOB, S(QUEUED), START_JOB, 0),

	/* An app is running. */
	R(APP, REMOVE, 0, S(EMPTY), NONE, 0),
	R(APP, FLASH, G_NOJOB, S(WAIT_DL), ENTER_DL, 0),

	/* Waiting for the operator to put the unit in download mode. */
	R(WAIT_DL, REMOVE, 0, S(WAIT_DL), NONE, 0),
	R(WAIT_DL, ADD_ROM, 0, S(QUEUED), START_JOB, 0),
	R(WAIT_DL, ADD_APP, 0, S(WAIT_DL), NONE, 0),
	R(WAIT_DL, ADD_OTHER, 0, S(PLUGGED), NONE, REG_F_RESET),
	R(WAIT_DL, CANCEL, G_PRESENT, S(APP), NONE, 0),
	R(WAIT_DL, CANCEL, G_ABSENT, S(EMPTY), NONE, 0),

	/* A job owns the row; phases may be skipped, never reversed. */
	R(QUEUED, REMOVE, 0, S(GONE), PORT_GONE, 0),
	R(QUEUED, CONNECTING, 0, S(CONNECTING), NONE, 0),
	R(QUEUED, WRITING, 0, S(WRITING), NONE, 0),
	R(QUEUED, VERIFYING, 0, S(VERIFYING), NONE, 0),
	R(QUEUED, REBOOTING, 0, S(REBOOTING), NONE, 0),
	R(QUEUED, JOB_DONE, 0, S(DONE), NONE, 0),
	R(QUEUED, JOB_FAILED, 0, S(FAILED), NONE, 0),
	R(QUEUED, CANCEL, 0, S(FAILED), CANCEL_JOB, 0),

	R(CONNECTING, REMOVE, 0, S(GONE), PORT_GONE, 0),
	R(CONNECTING, CONNECTING, 0, S(CONNECTING), NONE, 0),
	R(CONNECTING, WRITING, 0, S(WRITING), NONE, 0),
	R(CONNECTING, VERIFYING, 0, S(VERIFYING), NONE, 0),
	R(CONNECTING, REBOOTING, 0, S(REBOOTING), NONE, 0),
	R(CONNECTING, JOB_DONE, 0, S(DONE), NONE, 0),
	R(CONNECTING, JOB_FAILED, 0, S(FAILED), NONE, 0),
	R(CONNECTING, CANCEL, 0, S(FAILED), CANCEL_JOB, 0),

	R(WRITING, REMOVE, 0, S(GONE), PORT_GONE, 0),
	R(WRITING, WRITING, 0, S(WRITING), NONE, 0),
	R(WRITING, VERIFYING, 0, S(VERIFYING), NONE, 0),
	R(WRITING, REBOOTING, 0, S(REBOOTING), NONE, 0),
	R(WRITING, JOB_DONE, 0, S(DONE), NONE, 0),
	R(WRITING, JOB_FAILED, 0, S(FAILED), NONE, 0),
	R(WRITING, CANCEL, 0, S(FAILED), CANCEL_JOB, 0),

	R(VERIFYING, REMOVE, 0, S(GONE), PORT_GONE, 0),
	R(VERIFYING, VERIFYING, 0, S(VERIFYING), NONE, 0),
	R(VERIFYING, REBOOTING, 0, S(REBOOTING), NONE, 0),
	R(VERIFYING, JOB_DONE, 0, S(DONE), NONE, 0),
	R(VERIFYING, JOB_FAILED, 0, S(FAILED), NONE, 0),
	R(VERIFYING, CANCEL, 0, S(FAILED), CANCEL_JOB, 0),

	/* The unit was told to reboot: its port leaving is expected. */
	R(REBOOTING, REMOVE, 0, S(REBOOTING), NONE, 0),
	R(REBOOTING, ADD_ROM, 0, S(REBOOTING), NONE, 0),
	R(REBOOTING, ADD_APP, 0, S(REBOOTING), NONE, 0),
	R(REBOOTING, ADD_OTHER, 0, S(REBOOTING), NONE, 0),
	R(REBOOTING, REBOOTING, 0, S(REBOOTING), NONE, 0),
	R(REBOOTING, JOB_DONE, 0, S(DONE), NONE, 0),
	R(REBOOTING, JOB_FAILED, 0, S(FAILED), NONE, 0),

	/*
	 * Done: a removal soon after the job is the reboot; later it is the
	 * operator unplugging, which clears the slot.  A port coming back
	 * soon after a removal is the same unit; later it is the next one.
	 */
	R(DONE, REMOVE, G_SETTLING, S(DONE), NONE, 0),
	R(DONE, REMOVE, G_SETTLED, S(EMPTY), NONE, 0),
	R(DONE, ADD_ROM, G_BACK, S(DONE), NONE, 0),
	R(DONE, ADD_APP, G_BACK, S(DONE), NONE, 0),
	R(DONE, ADD_OTHER, G_BACK, S(DONE), NONE, 0),
	R(DONE, ADD_ROM, G_NOTBACK | G_AUTO, S(QUEUED), START_JOB,
	    REG_F_RESET),
	R(DONE, ADD_ROM, G_NOTBACK | G_NOAUTO, S(PLUGGED), NONE, REG_F_RESET),
	R(DONE, ADD_APP, G_NOTBACK, S(APP), NONE, REG_F_RESET),
	R(DONE, ADD_OTHER, G_NOTBACK, S(PLUGGED), NONE, REG_F_RESET),
	R(DONE, FLASH, G_PRESENT | G_READY | G_NOJOB, S(QUEUED), START_JOB, 0),
	R(DONE, FLASH, G_PRESENT | G_APPKIND | G_NOJOB, S(WAIT_DL), ENTER_DL,
	    0),

	/* Failed: like done, plus the end of a cancelled job. */
	R(FAILED, REMOVE, G_SETTLING, S(FAILED), NONE, 0),
	R(FAILED, REMOVE, G_SETTLED, S(EMPTY), NONE, 0),
	R(FAILED, ADD_ROM, G_BACK, S(FAILED), NONE, 0),
	R(FAILED, ADD_APP, G_BACK, S(FAILED), NONE, 0),
	R(FAILED, ADD_OTHER, G_BACK, S(FAILED), NONE, 0),
	R(FAILED, ADD_ROM, G_NOTBACK | G_AUTO, S(QUEUED), START_JOB,
	    REG_F_RESET),
	R(FAILED, ADD_ROM, G_NOTBACK | G_NOAUTO, S(PLUGGED), NONE,
	    REG_F_RESET),
	R(FAILED, ADD_APP, G_NOTBACK, S(APP), NONE, REG_F_RESET),
	R(FAILED, ADD_OTHER, G_NOTBACK, S(PLUGGED), NONE, REG_F_RESET),
	R(FAILED, FLASH, G_PRESENT | G_READY | G_NOJOB, S(QUEUED), START_JOB,
	    0),
	R(FAILED, FLASH, G_PRESENT | G_APPKIND | G_NOJOB, S(WAIT_DL),
	    ENTER_DL, 0),
	R(FAILED, JOB_FAILED, G_JOB, S(FAILED), NONE, 0),
	R(FAILED, JOB_DONE, G_JOB, S(DONE), NONE, 0),

	/*
	 * Gone during a job: if the job still runs, the unit coming back is
	 * the job's (a reset re-enumerated it); otherwise a new unit.
	 */
	R(GONE, ADD_ROM, G_JOB, REG_TO_PREV, REAPPEARED, 0),
	R(GONE, ADD_APP, G_JOB, REG_TO_PREV, REAPPEARED, 0),
	R(GONE, ADD_OTHER, G_JOB, REG_TO_PREV, REAPPEARED, 0),
	R(GONE, ADD_ROM, G_NOJOB | G_AUTO, S(QUEUED), START_JOB, REG_F_RESET),
	R(GONE, ADD_ROM, G_NOJOB | G_NOAUTO, S(PLUGGED), NONE, REG_F_RESET),
	R(GONE, ADD_APP, G_NOJOB, S(APP), NONE, REG_F_RESET),
	R(GONE, ADD_OTHER, G_NOJOB, S(PLUGGED), NONE, REG_F_RESET),
	R(GONE, REBOOTING, G_JOB, S(REBOOTING), NONE, 0),
	R(GONE, JOB_DONE, G_JOB, S(DONE), NONE, 0),
	R(GONE, JOB_FAILED, G_JOB, S(GONE), NONE, 0),
	R(GONE, CANCEL, G_JOB, S(FAILED), CANCEL_JOB, 0),
};

#undef R
#undef S

/* ============================== The rows ============================== */

struct reg_row {
	struct port_info port;		/* last port seen here */
	int		 present;
	enum reg_state	 state;
	enum reg_state	 prev;		/* state before "gone" */
	int		 job_active;
	void		*job;
	char		 chip[REG_CHIP_MAX];
	int		 has_mac;
	uint8_t		 mac[6];
	uint64_t	 bytes_done;
	uint64_t	 bytes_total;
	uint64_t	 bytes_w0;	/* bytes_done when writing began */
	uint64_t	 t_start;	/* job queued */
	uint64_t	 t_write;	/* first writing report */
	uint64_t	 t_progress;	/* last progress report */
	uint64_t	 t_end;		/* job ended (or cancelled) */
	uint64_t	 t_removed;	/* port last removed */
	uint64_t	 t_final;	/* the job reached verifying (or
					   further): its reset may come */
	int		 reset_back;	/* gone and back since t_final: the
					   reset is through, nothing to
					   settle */
	char		 reason[REG_REASON_MAX];
	unsigned	 attempts;
	int		 moved_from;
	enum reg_state	 unit_last;
	uint64_t	 gen;
};

/* A unit remembered by MAC: where it was last and how that went. */
struct reg_unit {
	uint8_t		 mac[6];
	int		 row;
	enum reg_state	 last;
	unsigned	 attempts;
};

struct reg_logent {
	uint64_t	 t;
	char		 text[REG_LOG_LINE];
};

struct reg {
	struct reg_row	*rows;
	int		 nrows;
	int		 caprows;
	int		 auto_on;
	uint64_t	 grace;
	uint64_t	 gen;
	int		 last_rule;
	unsigned	 jobs_done;	/* jobs ended this session */
	unsigned	 jobs_failed;

	struct reg_action *acts;
	size_t		 nacts;
	size_t		 headacts;
	size_t		 capacts;

	struct reg_logent log[REG_LOG_MAX];
	size_t		 log_start;
	size_t		 log_n;
	uint64_t	 log_gen;

	struct reg_unit	*units;
	size_t		 nunits;
	size_t		 unit_next;	/* ring slot to reuse when full */
};

static const char *const reg_state_names[REG_ST__MAX] = {
	[REG_ST_EMPTY] = "empty",
	[REG_ST_PLUGGED] = "plugged",
	[REG_ST_APP] = "app running",
	[REG_ST_WAIT_DL] = "waiting",
	[REG_ST_QUEUED] = "queued",
	[REG_ST_CONNECTING] = "connecting",
	[REG_ST_WRITING] = "writing",
	[REG_ST_VERIFYING] = "verifying",
	[REG_ST_REBOOTING] = "rebooting",
	[REG_ST_DONE] = "done",
	[REG_ST_FAILED] = "failed",
	[REG_ST_GONE] = "gone",
};

static const char *const reg_event_names[REG_EV__MAX] = {
	[REG_EV_ADD_ROM] = "add (download mode)",
	[REG_EV_ADD_APP] = "add (app)",
	[REG_EV_ADD_OTHER] = "add",
	[REG_EV_REMOVE] = "remove",
	[REG_EV_FLASH] = "flash",
	[REG_EV_CANCEL] = "cancel",
	[REG_EV_ARM] = "arm",
	[REG_EV_CONNECTING] = "connecting",
	[REG_EV_WRITING] = "writing",
	[REG_EV_VERIFYING] = "verifying",
	[REG_EV_REBOOTING] = "rebooting",
	[REG_EV_JOB_DONE] = "job done",
	[REG_EV_JOB_FAILED] = "job failed",
};

static const char *const reg_act_names[REG_ACT__MAX] = {
	[REG_ACT_NONE] = "none",
	[REG_ACT_START_JOB] = "start job",
	[REG_ACT_ENTER_DL] = "enter download mode",
	[REG_ACT_CANCEL_JOB] = "cancel job",
	[REG_ACT_REAPPEARED] = "reappeared",
	[REG_ACT_PORT_GONE] = "port gone",
};

/* Short name of a state, for table columns and logs. */
const char *
reg_state_name(enum reg_state st)
{
	if ((unsigned)st >= REG_ST__MAX)
		return ("?");
	return (reg_state_names[st]);
}

/* Name of an event, for logs and test output. */
const char *
reg_event_name(enum reg_event ev)
{
	if ((unsigned)ev >= REG_EV__MAX)
		return ("?");
	return (reg_event_names[ev]);
}

/* Name of an action, for logs and test output. */
const char *
reg_act_name(enum reg_act act)
{
	if ((unsigned)act >= REG_ACT__MAX)
		return ("?");
	return (reg_act_names[act]);
}

/* Number of rules in the transition table. */
size_t
reg_rule_count(void)
{
	return (nitems(reg_rules));
}

/* Index of the rule the last event applied, or -1. */
int
reg_last_rule(const struct reg *reg)
{
	return (reg->last_rule);
}

/* A new, empty registry with auto-flash off. */
struct reg *
reg_new(void)
{
	struct reg	*reg;

	reg = xcalloc(1, sizeof *reg);
	reg->grace = REG_GRACE_MS;
	reg->last_rule = -1;
	return (reg);
}

/* Free a registry; the job handles parked on rows are the caller's. */
void
reg_free(struct reg *reg)
{
	if (reg == NULL)
		return;
	free(reg->rows);
	free(reg->acts);
	free(reg->units);
	free(reg);
}

/* Change how long a removal or re-add counts as the same unit. */
void
reg_set_grace(struct reg *reg, uint64_t ms)
{
	reg->grace = ms;
}

/* Whether row is a valid index. */
static int
reg_row_ok(const struct reg *reg, int row)
{
	return (row >= 0 && row < reg->nrows);
}

/* Stamp a row as changed for the viewers. */
static void
reg_touch(struct reg *reg, struct reg_row *r)
{
	r->gen = ++reg->gen;
}

/* Replace control bytes left in a fixed string and terminate it. */
static void
reg_scrub(char *s, size_t cap)
{
	unsigned char	*p;

	s[cap - 1] = '\0';
	for (p = (unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/* Copy a port, defending against strings that were not sanitized. */
static void
reg_port_copy(struct port_info *dst, const struct port_info *src)
{
	*dst = *src;
	reg_scrub(dst->devnode, sizeof dst->devnode);
	reg_scrub(dst->location, sizeof dst->location);
	reg_scrub(dst->usb_path, sizeof dst->usb_path);
	reg_scrub(dst->serial, sizeof dst->serial);
	reg_scrub(dst->manufacturer, sizeof dst->manufacturer);
	reg_scrub(dst->product, sizeof dst->product);
}

/* ============================ The event log =========================== */

/* Append a line that is already free of control bytes. */
static void
reg_log_put(struct reg *reg, uint64_t now, const char *text)
{
	struct reg_logent	*e;
	size_t			 i;

	if (reg->log_n < REG_LOG_MAX)
		i = (reg->log_start + reg->log_n++) % REG_LOG_MAX;
	else {
		i = reg->log_start;
		reg->log_start = (reg->log_start + 1) % REG_LOG_MAX;
	}
	e = &reg->log[i];
	e->t = now;
	snprintf(e->text, sizeof e->text, "%s", text);
	reg_scrub(e->text, sizeof e->text);
	reg->log_gen++;
}

/* Log a registry message built from our own words and scrubbed fields. */
static void printflike(3, 4)
reg_logx(struct reg *reg, uint64_t now, const char *fmt, ...)
{
	char	buf[REG_LOG_LINE];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	reg_log_put(reg, now, buf);
}

/* Log a line from elsewhere; it may carry device text, so sanitize it. */
void
reg_log(struct reg *reg, uint64_t now, const char *fmt, ...)
{
	char	raw[1024], clean[REG_LOG_LINE];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof raw)
		n = sizeof raw - 1;
	util_sanitize(clean, sizeof clean, raw, (size_t)n);
	reg_log_put(reg, now, clean);
}

/* Number of lines held (at most REG_LOG_MAX). */
size_t
reg_log_count(const struct reg *reg)
{
	return (reg->log_n);
}

/* Line i, oldest first, and its time; NULL when out of range. */
const char *
reg_log_line(const struct reg *reg, size_t i, uint64_t *t_ms)
{
	const struct reg_logent	*e;

	if (i >= reg->log_n)
		return (NULL);
	e = &reg->log[(reg->log_start + i) % REG_LOG_MAX];
	if (t_ms != NULL)
		*t_ms = e->t;
	return (e->text);
}

/* Lines ever logged; grows by one per line. */
uint64_t
reg_log_gen(const struct reg *reg)
{
	return (reg->log_gen);
}

/* ============================== Actions =============================== */

/* Queue an action for the caller. */
static void
reg_push_action(struct reg *reg, enum reg_act act, int row)
{
	if (reg->headacts == reg->nacts)
		reg->headacts = reg->nacts = 0;
	if (reg->nacts == reg->capacts) {
		reg->capacts = reg->capacts ? reg->capacts * 2 : 16;
		reg->acts = xrealloc(reg->acts,
		    reg->capacts * sizeof *reg->acts);
	}
	reg->acts[reg->nacts].act = act;
	reg->acts[reg->nacts].row = row;
	reg->nacts++;
}

/* Pop the oldest queued action. */
int
reg_next_action(struct reg *reg, struct reg_action *out)
{
	if (reg->headacts >= reg->nacts)
		return (0);
	*out = reg->acts[reg->headacts++];
	return (1);
}

/* =============================== Units ================================ */

/* The remembered unit with this MAC, or NULL. */
static struct reg_unit *
reg_unit_find(struct reg *reg, const uint8_t mac[6])
{
	size_t	i;

	for (i = 0; i < reg->nunits; i++) {
		if (memcmp(reg->units[i].mac, mac, 6) == 0)
			return (&reg->units[i]);
	}
	return (NULL);
}

/* Remember a unit, reusing the oldest entry once the table is full. */
static struct reg_unit *
reg_unit_new(struct reg *reg, const uint8_t mac[6])
{
	struct reg_unit	*u;

	if (reg->units == NULL)
		reg->units = xcalloc(REG_UNITS_MAX, sizeof *reg->units);
	if (reg->nunits < REG_UNITS_MAX)
		u = &reg->units[reg->nunits++];
	else {
		u = &reg->units[reg->unit_next];
		reg->unit_next = (reg->unit_next + 1) % REG_UNITS_MAX;
	}
	memset(u, 0, sizeof *u);
	memcpy(u->mac, mac, 6);
	u->last = REG_ST_EMPTY;
	return (u);
}

/* Record how a row's identified unit fared. */
static void
reg_unit_note(struct reg *reg, int row)
{
	struct reg_row	*r = &reg->rows[row];
	struct reg_unit	*u;

	if (!r->has_mac)
		return;
	if ((u = reg_unit_find(reg, r->mac)) == NULL)
		u = reg_unit_new(reg, r->mac);
	u->row = row;
	u->attempts = r->attempts;
	if (r->state == REG_ST_DONE || r->state == REG_ST_FAILED ||
	    r->state == REG_ST_GONE)
		u->last = r->state;
}

/* ============================ Transitions ============================= */

/* Forget the unit a row held (not the port, nor a still-running job). */
static void
reg_row_forget(struct reg_row *r)
{
	r->chip[0] = '\0';
	r->has_mac = 0;
	memset(r->mac, 0, sizeof r->mac);
	r->bytes_done = r->bytes_total = r->bytes_w0 = 0;
	r->t_start = r->t_write = r->t_progress = r->t_end = 0;
	r->t_final = 0;
	r->reset_back = 0;
	r->reason[0] = '\0';
	r->attempts = 0;
	r->moved_from = 0;
	r->unit_last = REG_ST_EMPTY;
	r->prev = REG_ST_EMPTY;
}

/* Which conditions hold for a row right now (one of each G_ pair). */
static int
reg_conditions(const struct reg *reg, const struct reg_row *r, int force,
    uint64_t now)
{
	int	c = 0;

	c |= (reg->auto_on && !r->job_active) ? G_AUTO : G_NOAUTO;
	c |= r->job_active ? G_JOB : G_NOJOB;
	c |= (r->t_removed != 0 && now - r->t_removed < reg->grace) ?
	    G_BACK : G_NOTBACK;
	/*
	 * After a job, a removal may still be the unit's own reset; not once
	 * the job saw that reset through: then it is the technician's hand.
	 */
	c |= (r->t_end != 0 && now - r->t_end < reg->grace &&
	    !r->reset_back) ? G_SETTLING : G_SETTLED;
	c |= r->present ? G_PRESENT : G_ABSENT;
	switch (r->port.kind) {
	case USB_KIND_S2_ROM:
		c |= G_ROMKIND | G_READY;
		break;
	case USB_KIND_USB_JTAG:
	case USB_KIND_BRIDGE:
		c |= G_READY;
		break;
	case USB_KIND_APP_CDC:
		c |= G_APPKIND;
		break;
	default:
		if (force)
			c |= G_READY;
		break;
	}
	return (c);
}

/* A port was added (of whatever kind). */
static int
reg_event_is_add(int ev)
{
	return (ev == REG_EV_ADD_ROM || ev == REG_EV_ADD_APP ||
	    ev == REG_EV_ADD_OTHER);
}

/* Carry out a rule on a row. */
static void
reg_apply(struct reg *reg, int row, const struct reg_rule *rule,
    const char *reason, uint64_t now)
{
	struct reg_row	*r = &reg->rows[row];
	enum reg_state	 from = r->state, to;

	to = rule->to == REG_TO_PREV ? r->prev : (enum reg_state)rule->to;
	if (rule->flags & REG_F_RESET)
		reg_row_forget(r);

	if (to == REG_ST_GONE && from != REG_ST_GONE) {
		r->prev = from;
		snprintf(r->reason, sizeof r->reason, "unplugged while %s",
		    reg_state_name(from));
	}
	if (to == REG_ST_FAILED && from != REG_ST_FAILED) {
		if (rule->act == REG_ACT_CANCEL_JOB)
			reason = "cancelled by operator";
		snprintf(r->reason, sizeof r->reason, "%s",
		    reason != NULL && *reason != '\0' ? reason : "failed");
		reg_scrub(r->reason, sizeof r->reason);
		r->t_end = now;
	}
	if (to == REG_ST_DONE) {
		r->reason[0] = '\0';
		r->t_end = now;
	}
	if (reg_event_is_add(rule->ev) && r->t_final != 0 &&
	    r->t_removed >= r->t_final)
		r->reset_back = 1;
	if (rule->act == REG_ACT_START_JOB) {
		r->job_active = 1;
		r->attempts++;
		r->t_start = now;
		r->t_write = r->t_progress = r->t_end = 0;
		r->t_final = 0;
		r->reset_back = 0;
		r->bytes_done = r->bytes_total = r->bytes_w0 = 0;
		r->reason[0] = '\0';
	}

	if (r->t_final == 0 && (to == REG_ST_VERIFYING ||
	    to == REG_ST_REBOOTING || to == REG_ST_DONE))
		r->t_final = now;
	r->state = to;
	if (to == REG_ST_EMPTY)
		reg_row_forget(r);
	if (to == REG_ST_DONE || to == REG_ST_FAILED || to == REG_ST_GONE)
		reg_unit_note(reg, row);

	if (from != to) {
		if (to == REG_ST_FAILED || to == REG_ST_GONE)
			reg_logx(reg, now, "slot %d: %s -> %s: %s", row + 1,
			    reg_state_name(from), reg_state_name(to),
			    r->reason);
		else if (to == REG_ST_WAIT_DL)
			reg_logx(reg, now, "slot %d: %s -> %s: %s", row + 1,
			    reg_state_name(from), reg_state_name(to),
			    REG_WAIT_DL_HINT);
		else
			reg_logx(reg, now, "slot %d: %s -> %s", row + 1,
			    reg_state_name(from), reg_state_name(to));
	}
	if (rule->act != REG_ACT_NONE)
		reg_push_action(reg, rule->act, row);
	/* A phase repeated by a progress report changes nothing by itself. */
	if (from != to || rule->act != REG_ACT_NONE ||
	    (rule->flags & REG_F_RESET))
		reg_touch(reg, r);
}

/* Run an event through the table for one row. */
static int
reg_dispatch(struct reg *reg, int row, enum reg_event ev, int force,
    const char *reason, uint64_t now)
{
	struct reg_row		*r = &reg->rows[row];
	const struct reg_rule	*rule;
	size_t			 i;
	int			 cond, seen = 0;

	reg->last_rule = -1;
	cond = reg_conditions(reg, r, force, now);
	for (i = 0; i < nitems(reg_rules); i++) {
		rule = &reg_rules[i];
		if (rule->from != r->state || rule->ev != ev)
			continue;
		seen = 1;
		if ((rule->guard & cond) != rule->guard)
			continue;
		reg->last_rule = (int)i;
		reg_apply(reg, row, rule, reason, now);
		return ((int)rule->act);
	}
	return (seen ? -EPERM : -EINVAL);
}

/* ============================ Port events ============================= */

/* Row index for a physical location, or -1. */
int
reg_find(const struct reg *reg, const char *location)
{
	int	i;

	for (i = 0; i < reg->nrows; i++) {
		if (strcmp(reg->rows[i].port.location, location) == 0)
			return (i);
	}
	return (-1);
}

/* Row whose present port has this devnode, or -1. */
int
reg_find_devnode(const struct reg *reg, const char *devnode)
{
	int	i;

	for (i = 0; i < reg->nrows; i++) {
		if (reg->rows[i].present &&
		    strcmp(reg->rows[i].port.devnode, devnode) == 0)
			return (i);
	}
	return (-1);
}

/* Row showing a unit with this MAC, or -1. */
int
reg_find_mac(const struct reg *reg, const uint8_t mac[6])
{
	int	i;

	for (i = 0; i < reg->nrows; i++) {
		if (reg->rows[i].has_mac &&
		    memcmp(reg->rows[i].mac, mac, 6) == 0)
			return (i);
	}
	return (-1);
}

/* Add a row for a location never seen before. */
static int
reg_row_new(struct reg *reg, const struct port_info *pi, uint64_t now)
{
	struct reg_row	*r;

	if (reg->nrows == reg->caprows) {
		reg->caprows = reg->caprows ? reg->caprows * 2 : 16;
		reg->rows = xrealloc(reg->rows,
		    (size_t)reg->caprows * sizeof *reg->rows);
	}
	r = &reg->rows[reg->nrows];
	memset(r, 0, sizeof *r);
	reg_port_copy(&r->port, pi);
	r->port.devnode[0] = '\0';
	r->state = REG_ST_EMPTY;
	r->unit_last = REG_ST_EMPTY;
	r->prev = REG_ST_EMPTY;
	reg->nrows++;
	reg_touch(reg, r);
	reg_logx(reg, now, "slot %d: new port at %s", reg->nrows,
	    r->port.location);
	return (reg->nrows - 1);
}

/* Which add event a port's kind makes. */
static enum reg_event
reg_add_event(enum chip_usb_kind kind)
{
	switch (kind) {
	case USB_KIND_S2_ROM:
		return (REG_EV_ADD_ROM);
	case USB_KIND_APP_CDC:
		return (REG_EV_ADD_APP);
	default:
		return (REG_EV_ADD_OTHER);
	}
}

/* Take a removal as fact, then let the table decide the state. */
static int
reg_remove_row(struct reg *reg, int row, uint64_t now)
{
	struct reg_row	*r = &reg->rows[row];

	r->present = 0;
	r->t_removed = now;
	reg_logx(reg, now, "slot %d: removed %s", row + 1, r->port.devnode);
	reg_touch(reg, r);
	return (reg_dispatch(reg, row, REG_EV_REMOVE, 0, NULL, now));
}

/* A port appeared: find or make its row, then run the add event. */
int
reg_port_added(struct reg *reg, const struct port_info *pi, uint64_t now)
{
	struct reg_row	*r;
	int		 row;

	if (pi->location[0] == '\0' || pi->devnode[0] == '\0')
		return (-EINVAL);
	if ((row = reg_find(reg, pi->location)) == -1)
		row = reg_row_new(reg, pi, now);
	r = &reg->rows[row];
	if (r->present) {
		if (strcmp(r->port.devnode, pi->devnode) == 0) {
			reg->last_rule = -1;
			return (REG_ACT_NONE);	/* seen twice */
		}
		/* The old port's removal was missed; take it as done. */
		(void)reg_remove_row(reg, row, now);
		r = &reg->rows[row];
	}
	reg_port_copy(&r->port, pi);
	r->present = 1;
	reg_logx(reg, now, "slot %d: added %s %04x:%04x %s \"%s\"", row + 1,
	    r->port.devnode, r->port.vid, r->port.pid,
	    chip_usb_kind_name(r->port.kind), r->port.product);
	reg_touch(reg, r);
	return (reg_dispatch(reg, row, reg_add_event(pi->kind), 0, NULL, now));
}

/* A port went away: only the row that shows that very devnode cares. */
int
reg_port_removed(struct reg *reg, const struct port_info *pi, uint64_t now)
{
	struct reg_row	*r;
	int		 row;

	reg->last_rule = -1;
	if ((row = reg_find(reg, pi->location)) == -1)
		return (-ENOENT);
	r = &reg->rows[row];
	if (!r->present || strcmp(r->port.devnode, pi->devnode) != 0)
		return (-ENOENT);	/* stale: the port was replaced */
	return (reg_remove_row(reg, row, now));
}

/* ========================== Operator requests ========================= */

/* Explain a refused operator request in words the operator can act on. */
static void
reg_refusal(const struct reg *reg, int row, enum reg_event ev, int error,
    char **cause)
{
	const struct reg_row	*r = &reg->rows[row];
	const char		*what = ev == REG_EV_FLASH ? "flash" : "cancel";

	if (cause == NULL)
		return;
	if (ev == REG_EV_FLASH && error == -EPERM) {
		if (r->job_active)
			*cause = xasprintf("slot %d: a job is still running "
			    "there; wait for it to end", row + 1);
		else if (!r->present)
			*cause = xasprintf("slot %d: nothing is plugged in "
			    "there", row + 1);
		else
			*cause = xasprintf("slot %d: %04x:%04x (%s) is not "
			    "a known ESP serial port; force it to flash it",
			    row + 1, r->port.vid, r->port.pid,
			    r->port.product[0] != '\0' ? r->port.product :
			    chip_usb_kind_name(r->port.kind));
		return;
	}
	*cause = xasprintf("slot %d: cannot %s while %s", row + 1, what,
	    reg_state_name(r->state));
}

/* The operator asks for a flash (or a retry) of one row. */
int
reg_flash(struct reg *reg, int row, int flags, uint64_t now, char **cause)
{
	int	error;

	if (!reg_row_ok(reg, row)) {
		if (cause != NULL)
			*cause = xasprintf("no slot %d", row + 1);
		return (-EINVAL);
	}
	error = reg_dispatch(reg, row, REG_EV_FLASH, flags & REG_FLASH_FORCE,
	    NULL, now);
	if (error < 0)
		reg_refusal(reg, row, REG_EV_FLASH, error, cause);
	return (error);
}

/* The operator cancels whatever the row is waiting for or doing. */
int
reg_cancel(struct reg *reg, int row, uint64_t now, char **cause)
{
	int	error;

	if (!reg_row_ok(reg, row)) {
		if (cause != NULL)
			*cause = xasprintf("no slot %d", row + 1);
		return (-EINVAL);
	}
	error = reg_dispatch(reg, row, REG_EV_CANCEL, 0, NULL, now);
	if (error < 0)
		reg_refusal(reg, row, REG_EV_CANCEL, error, cause);
	return (error);
}

/* Arm or disarm auto-flash; arming queues idle download-mode units. */
int
reg_set_auto(struct reg *reg, int on, uint64_t now)
{
	int	i, queued = 0, last = -1;

	on = on != 0;
	if (reg->auto_on == on)
		return (0);
	reg->auto_on = on;
	reg->gen++;
	reg_logx(reg, now, "auto-flash %s", on ? "armed" : "disarmed");
	if (!on)
		return (0);
	for (i = 0; i < reg->nrows; i++) {
		if (reg_dispatch(reg, i, REG_EV_ARM, 0, NULL, now) ==
		    REG_ACT_START_JOB) {
			queued++;
			last = reg->last_rule;
		}
	}
	reg->last_rule = last;
	return (queued);
}

/* Whether auto-flash is armed. */
int
reg_get_auto(const struct reg *reg)
{
	return (reg->auto_on);
}

/* ============================= Job reports ============================ */

/* A job moved on to a phase, with its byte counts. */
int
reg_job_phase(struct reg *reg, int row, enum reg_state phase,
    uint64_t bytes_done, uint64_t bytes_total, uint64_t now)
{
	struct reg_row	*r;
	enum reg_event	 ev;
	int		 error;

	if (!reg_row_ok(reg, row))
		return (-EINVAL);
	switch (phase) {
	case REG_ST_CONNECTING:
		ev = REG_EV_CONNECTING;
		break;
	case REG_ST_WRITING:
		ev = REG_EV_WRITING;
		break;
	case REG_ST_VERIFYING:
		ev = REG_EV_VERIFYING;
		break;
	case REG_ST_REBOOTING:
		ev = REG_EV_REBOOTING;
		break;
	default:
		return (-EINVAL);
	}
	if ((error = reg_dispatch(reg, row, ev, 0, NULL, now)) < 0)
		return (error);
	r = &reg->rows[row];
	if (r->state == REG_ST_WRITING && r->t_write == 0) {
		r->t_write = now;
		r->bytes_w0 = bytes_done;
	}
	if (r->bytes_done != bytes_done || r->bytes_total != bytes_total) {
		r->bytes_done = bytes_done;
		r->bytes_total = bytes_total;
		r->t_progress = now;
		reg_touch(reg, r);
	}
	return (error);
}

/* Bookkeeping for any job end, whatever the table made of it. */
static void
reg_job_ended(struct reg *reg, int row, uint64_t now)
{
	struct reg_row	*r = &reg->rows[row];

	if (!r->job_active)
		return;
	r->job_active = 0;
	r->job = NULL;
	if (r->state == REG_ST_DONE)
		reg->jobs_done++;
	else
		reg->jobs_failed++;
	if (r->t_end == 0)
		r->t_end = now;
	reg_unit_note(reg, row);
	reg_touch(reg, r);
}

/* The job finished and verified. */
int
reg_job_done(struct reg *reg, int row, uint64_t now)
{
	int	error;

	if (!reg_row_ok(reg, row))
		return (-EINVAL);
	error = reg_dispatch(reg, row, REG_EV_JOB_DONE, 0, NULL, now);
	reg_job_ended(reg, row, now);
	return (error);
}

/* The job ended in error (reason is shown, so it is sanitized). */
int
reg_job_failed(struct reg *reg, int row, const char *reason, uint64_t now)
{
	char	clean[REG_REASON_MAX];
	int	error;

	if (!reg_row_ok(reg, row))
		return (-EINVAL);
	if (reason == NULL)
		reason = "";
	util_sanitize(clean, sizeof clean, reason, strlen(reason));
	error = reg_dispatch(reg, row, REG_EV_JOB_FAILED, 0, clean, now);
	if (error >= 0 && reg->rows[row].state != REG_ST_FAILED &&
	    clean[0] != '\0')
		reg_logx(reg, now, "slot %d: job ended: %s", row + 1, clean);
	reg_job_ended(reg, row, now);
	return (error);
}

/* The job read the chip and MAC: show them, and recognise a moved unit. */
int
reg_job_identity(struct reg *reg, int row, const char *chip,
    const uint8_t *mac, uint64_t now)
{
	struct reg_row	*r, *o;
	struct reg_unit	*u;
	char		 text[18];
	int		 old = -1;

	if (!reg_row_ok(reg, row))
		return (-EINVAL);
	r = &reg->rows[row];
	if (chip != NULL)
		util_sanitize(r->chip, sizeof r->chip, chip, strlen(chip));
	reg_touch(reg, r);
	if (mac == NULL || (r->has_mac && memcmp(r->mac, mac, 6) == 0))
		return (-1);

	memcpy(r->mac, mac, 6);
	r->has_mac = 1;
	chip_mac_format(mac, text, sizeof text);
	reg_scrub(text, sizeof text);
	if ((u = reg_unit_find(reg, mac)) == NULL) {
		u = reg_unit_new(reg, mac);
		reg_logx(reg, now, "slot %d: unit %s", row + 1, text);
	} else {
		r->attempts += u->attempts;
		r->unit_last = u->last;
		if (u->row != row) {
			old = u->row;
			r->moved_from = old + 1;
			reg_logx(reg, now, "slot %d: unit %s was at slot %d "
			    "(%s)", row + 1, text, old + 1,
			    u->last == REG_ST_EMPTY ? "no result" :
			    reg_state_name(u->last));
		} else
			reg_logx(reg, now, "slot %d: unit %s seen here before "
			    "(%s)", row + 1, text,
			    u->last == REG_ST_EMPTY ? "no result" :
			    reg_state_name(u->last));
	}
	if (old != -1 && reg_row_ok(reg, old)) {
		o = &reg->rows[old];
		if (o->has_mac && memcmp(o->mac, mac, 6) == 0) {
			if (!o->present && !o->job_active) {
				reg_row_forget(o);
				o->state = REG_ST_EMPTY;
				reg_logx(reg, now, "slot %d: cleared, its unit "
				    "is at slot %d now", old + 1, row + 1);
				reg_touch(reg, o);
			} else
				reg_logx(reg, now, "slot %d: shows the same "
				    "MAC %s as slot %d", old + 1, text,
				    row + 1);
		}
	}
	u->row = row;
	u->attempts = r->attempts;
	return (old);
}

/* Park the caller's job handle on a row. */
void
reg_set_job(struct reg *reg, int row, void *job)
{
	if (reg_row_ok(reg, row))
		reg->rows[row].job = job;
}

/* The job handle parked on a row, or NULL. */
void *
reg_get_job(const struct reg *reg, int row)
{
	if (!reg_row_ok(reg, row))
		return (NULL);
	return (reg->rows[row].job);
}

/* ============================== Viewing =============================== */

/* Number of rows (never shrinks). */
int
reg_count(const struct reg *reg)
{
	return (reg->nrows);
}

/* State of a row; REG_ST__MAX for a bad index. */
enum reg_state
reg_row_state(const struct reg *reg, int row)
{
	if (!reg_row_ok(reg, row))
		return (REG_ST__MAX);
	return (reg->rows[row].state);
}

/* The port last seen at a row. */
const struct port_info *
reg_row_port(const struct reg *reg, int row)
{
	if (!reg_row_ok(reg, row))
		return (NULL);
	return (&reg->rows[row].port);
}

/* Current generation: bumped by every change. */
uint64_t
reg_gen(const struct reg *reg)
{
	return (reg->gen);
}

/* Generation of a row's last change; 0 for a bad index. */
uint64_t
reg_row_gen(const struct reg *reg, int row)
{
	if (!reg_row_ok(reg, row))
		return (0);
	return (reg->rows[row].gen);
}

/* The words shown for a row's state. */
static void
reg_state_text(const struct reg_row *r, int percent, char *buf, size_t cap)
{
	switch (r->state) {
	case REG_ST_PLUGGED:
		if (r->port.kind == USB_KIND_S2_ROM)
			snprintf(buf, cap, "plugged, download mode");
		else if (r->port.kind == USB_KIND_UNKNOWN)
			snprintf(buf, cap, "plugged, unknown device");
		else
			snprintf(buf, cap, "plugged");
		break;
	case REG_ST_WAIT_DL:
		snprintf(buf, cap, "waiting for download mode: %s",
		    REG_WAIT_DL_HINT);
		break;
	case REG_ST_WRITING:
		snprintf(buf, cap, "writing %d%%", percent);
		break;
	case REG_ST_FAILED:
	case REG_ST_GONE:
		snprintf(buf, cap, "%s: %s", reg_state_name(r->state),
		    r->reason);
		break;
	default:
		snprintf(buf, cap, "%s", reg_state_name(r->state));
		break;
	}
}

/* Copy a row out for drawing, with the derived figures filled in. */
int
reg_snapshot(const struct reg *reg, int row, uint64_t now,
    struct reg_snapshot *s)
{
	const struct reg_row	*r;
	uint64_t		 span, end;

	if (!reg_row_ok(reg, row))
		return (-EINVAL);
	r = &reg->rows[row];
	memset(s, 0, sizeof *s);
	s->index = row;
	s->slot = row + 1;
	snprintf(s->location, sizeof s->location, "%s", r->port.location);
	if (r->present)
		snprintf(s->devnode, sizeof s->devnode, "%s",
		    r->port.devnode);
	s->present = r->present;
	s->kind = r->port.kind;
	s->kind_name = chip_usb_kind_name(r->port.kind);
	s->vid = r->port.vid;
	s->pid = r->port.pid;
	snprintf(s->vidpid, sizeof s->vidpid, "%04x:%04x", r->port.vid,
	    r->port.pid);
	snprintf(s->product, sizeof s->product, "%s", r->port.product);
	snprintf(s->chip, sizeof s->chip, "%s", r->chip);
	s->has_mac = r->has_mac;
	if (r->has_mac) {
		memcpy(s->mac, r->mac, 6);
		chip_mac_format(r->mac, s->mac_text, sizeof s->mac_text);
	}
	s->state = r->state;
	s->state_name = reg_state_name(r->state);

	switch (r->state) {
	case REG_ST_QUEUED:
	case REG_ST_CONNECTING:
		s->percent = 0;
		break;
	case REG_ST_WRITING:
		s->percent = r->bytes_total == 0 ? 0 :
		    (int)(r->bytes_done * 100 / r->bytes_total);
		if (s->percent > 100)
			s->percent = 100;
		break;
	case REG_ST_VERIFYING:
	case REG_ST_REBOOTING:
	case REG_ST_DONE:
		s->percent = 100;
		break;
	default:
		s->percent = -1;
		break;
	}
	reg_state_text(r, s->percent, s->state_text, sizeof s->state_text);
	s->bytes_done = r->bytes_done;
	s->bytes_total = r->bytes_total;
	s->eta_ms = -1;
	if (r->t_write != 0 && r->t_progress > r->t_write &&
	    r->bytes_done > r->bytes_w0) {
		span = r->t_progress - r->t_write;
		s->rate = (r->bytes_done - r->bytes_w0) * 1000 / span;
		if (r->state == REG_ST_WRITING && s->rate != 0 &&
		    r->bytes_total >= r->bytes_done)
			s->eta_ms = (int64_t)((r->bytes_total -
			    r->bytes_done) * 1000 / s->rate);
	}
	s->t_started = r->t_start;
	if (r->t_start != 0) {
		/* t_end is cleared when a job starts: set, the clock stops. */
		end = r->t_end >= r->t_start && r->t_end != 0 ? r->t_end : now;
		s->elapsed_ms = end > r->t_start ? end - r->t_start : 0;
	}
	snprintf(s->reason, sizeof s->reason, "%s", r->reason);
	s->job_active = r->job_active;
	s->attempts = r->attempts;
	s->moved_from = r->moved_from;
	s->unit_last = r->unit_last;
	s->gen = r->gen;
	return (0);
}

/* Tally the rows by what they are doing. */
void
reg_get_counts(const struct reg *reg, struct reg_counts *c)
{
	const struct reg_row	*r;
	int			 i;

	memset(c, 0, sizeof *c);
	c->jobs_done = reg->jobs_done;
	c->jobs_failed = reg->jobs_failed;
	for (i = 0; i < reg->nrows; i++) {
		r = &reg->rows[i];
		c->rows++;
		if (r->present)
			c->present++;
		if (r->present && r->port.kind == USB_KIND_UNKNOWN)
			c->unknown++;
		switch (r->state) {
		case REG_ST_PLUGGED:
		case REG_ST_APP:
			c->idle++;
			break;
		case REG_ST_WAIT_DL:
			c->waiting++;
			break;
		case REG_ST_QUEUED:
		case REG_ST_CONNECTING:
		case REG_ST_WRITING:
		case REG_ST_VERIFYING:
		case REG_ST_REBOOTING:
			c->active++;
			break;
		case REG_ST_DONE:
			c->done++;
			break;
		case REG_ST_FAILED:
			c->failed++;
			break;
		case REG_ST_GONE:
			c->gone++;
			break;
		default:
			break;
		}
	}
}
