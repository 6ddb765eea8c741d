/*
 * The device registry: one row per physical USB port, and the state
 * machine each row follows from "plugged" to "done".
 *
 * Pure and single-threaded (the main thread owns it; no locks, no I/O):
 * events go in through the reg_port_*, reg_job_* and operator functions,
 * with the current CLOCK_MONOTONIC time in ms as `now`; actions for the
 * caller ("start a job on row 3") come out through reg_next_action().
 * Workers never call in here; the main loop copies their progress in.
 *
 * A row belongs to a physical location (struct port_info.location), not
 * to a /dev name: a unit that re-enumerates (app -> ROM download mode,
 * or rebooting) under another ttyACM number keeps its row, its history
 * and its job.  Rows are never deleted, so an index stays valid for the
 * registry's lifetime and the slot number shown is index + 1.  Once a
 * job has read a unit's MAC, the row shows it, and the same unit turning
 * up at another port is recognised by it.
 *
 * States and what moves them (the full table is in registry.c):
 *
 *   empty      slot known, nothing plugged in
 *   plugged    present and idle: ROM download mode, a bridge, USB-JTAG,
 *              or an unknown device (listed, never flashed by itself)
 *   app        an app's own USB CDC (303a:80xx): not in download mode
 *   wait-dl    flash wanted, waiting for download mode: "hold BOOT,
 *              press RST" (ENTER_DL asks the unit to reboot into it)
 *   queued .. rebooting   a flash job owns the row
 *   done, failed          the job's end; they clear when the unit is
 *              unplugged, so the next unit starts fresh in that slot
 *   gone       unplugged while a job owned it
 *
 * Removals and re-adds within the grace time (REG_GRACE_MS) of a job's
 * end are taken as the unit rebooting, not as a new unit; unless the job
 * saw its reset through (the port went and came back while verifying or
 * rebooting): then the next removal is the technician unplugging it, and
 * the row clears at once for the next unit.
 */
#ifndef ESPF_REGISTRY_H
#define ESPF_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"
#include "hotplug.h"
#include "util.h"

#define REG_GRACE_MS	5000	/* default re-enumeration grace */
#define REG_REASON_MAX	128
#define REG_CHIP_MAX	32
#define REG_TEXT_MAX	160
#define REG_LOG_MAX	256	/* lines kept in the event log */
#define REG_LOG_LINE	200	/* bytes per log line, NUL included */
#define REG_UNITS_MAX	4096	/* units remembered by MAC */
#define REG_WAIT_DL_HINT "hold BOOT, press RST"

enum reg_state {
	REG_ST_EMPTY = 0,
	REG_ST_PLUGGED,
	REG_ST_APP,
	REG_ST_WAIT_DL,
	REG_ST_QUEUED,
	REG_ST_CONNECTING,
	REG_ST_WRITING,
	REG_ST_VERIFYING,
	REG_ST_REBOOTING,
	REG_ST_DONE,
	REG_ST_FAILED,
	REG_ST_GONE,
	REG_ST__MAX
};

enum reg_event {
	REG_EV_ADD_ROM = 0,	/* port added in ROM download mode */
	REG_EV_ADD_APP,		/* port added, an app's USB CDC */
	REG_EV_ADD_OTHER,	/* port added: bridge, USB-JTAG, unknown */
	REG_EV_REMOVE,		/* port removed */
	REG_EV_FLASH,		/* operator: flash this unit (also retry) */
	REG_EV_CANCEL,		/* operator: cancel */
	REG_EV_ARM,		/* auto-flash switched on */
	REG_EV_CONNECTING,	/* job: phase reports */
	REG_EV_WRITING,
	REG_EV_VERIFYING,
	REG_EV_REBOOTING,
	REG_EV_JOB_DONE,	/* job: finished, verified */
	REG_EV_JOB_FAILED,	/* job: ended in error (or after a cancel) */
	REG_EV__MAX
};

/* What the caller must do; each names a row. */
enum reg_act {
	REG_ACT_NONE = 0,
	REG_ACT_START_JOB,	/* start a flash job on the row's port */
	REG_ACT_ENTER_DL,	/* optional: try to reboot the app into
				   download mode (DTR/RTS); the operator was
				   told "hold BOOT, press RST" anyway */
	REG_ACT_CANCEL_JOB,	/* cancel the row's job; the job still
				   reports its end with reg_job_failed() */
	REG_ACT_REAPPEARED,	/* the job's unit is back under a new devnode
				   (reg_row_port()); hand it to the job */
	REG_ACT_PORT_GONE,	/* the job's unit vanished */
	REG_ACT__MAX
};

struct reg_action {
	enum reg_act	 act;
	int		 row;
};

/* A row, copied for drawing; every string is safe to print. */
struct reg_snapshot {
	int		 index;		/* 0-based row index */
	int		 slot;		/* index + 1, as shown */
	char		 location[HOTPLUG_LOCATION_MAX];
	char		 devnode[HOTPLUG_DEVNODE_MAX];	/* "" while absent */
	int		 present;
	enum chip_usb_kind kind;	/* of the port last seen here */
	const char	*kind_name;	/* chip_usb_kind_name() */
	uint16_t	 vid;
	uint16_t	 pid;
	char		 vidpid[10];	/* "303a:0002" */
	char		 product[HOTPLUG_STR_MAX];
	char		 chip[REG_CHIP_MAX];	/* "ESP32-S2FNR2"; "" until a
						   job says */
	int		 has_mac;
	uint8_t		 mac[6];
	char		 mac_text[18];	/* "7c:df:a1:00:11:22" or "" */
	enum reg_state	 state;
	const char	*state_name;	/* short: "writing" */
	char		 state_text[REG_TEXT_MAX]; /* "writing 42%",
						     "failed: reason" */
	int		 percent;	/* 0-100; -1 when no progress applies */
	uint64_t	 bytes_done;
	uint64_t	 bytes_total;
	uint64_t	 rate;		/* bytes/s while writing; 0 unknown */
	int64_t		 eta_ms;	/* -1 unknown */
	uint64_t	 t_started;	/* job queued (ms, monotonic); 0 */
	uint64_t	 elapsed_ms;	/* since t_started, frozen at the end */
	char		 reason[REG_REASON_MAX];	/* failed/gone, or "" */
	int		 job_active;	/* a job has started and not ended */
	unsigned	 attempts;	/* flash jobs started for this unit */
	int		 moved_from;	/* slot the unit was seen at before
					   (by MAC); 0 none */
	enum reg_state	 unit_last;	/* that earlier visit's outcome
					   (DONE/FAILED/GONE); EMPTY none */
	uint64_t	 gen;		/* generation of the last change */
};

/* Counts for a header line. */
struct reg_counts {
	unsigned	 rows;
	unsigned	 present;
	unsigned	 idle;		/* plugged or app */
	unsigned	 waiting;	/* wait-dl */
	unsigned	 active;	/* queued .. rebooting */
	unsigned	 done;
	unsigned	 failed;
	unsigned	 gone;
	unsigned	 unknown;	/* present unknown devices */
	/* The whole session, units since unplugged included: */
	unsigned	 jobs_done;	/* jobs that ended verified */
	unsigned	 jobs_failed;	/* ... in error, cancelled or gone */
};

#define REG_FLASH_FORCE	0x1	/* reg_flash(): allow an unknown device */

struct reg;

struct reg	*reg_new(void);
void		 reg_free(struct reg *);
/* Set the re-enumeration grace (ms); REG_GRACE_MS by default. */
void		 reg_set_grace(struct reg *, uint64_t ms);

/*
 * Hotplug events.  Both return the action recorded (REG_ACT_NONE = 0 or
 * more) or a negative errno: -EINVAL when the table has no transition
 * for the row's state, -EPERM when it has but its condition failed,
 * -ENOENT for a removal of a port the registry does not show.  An add
 * of the same devnode twice is accepted and changes nothing.
 */
int		 reg_port_added(struct reg *, const struct port_info *,
		     uint64_t now);
int		 reg_port_removed(struct reg *, const struct port_info *,
		     uint64_t now);

/*
 * Operator requests; same returns, with *cause (if not NULL) set to a
 * message naming the slot and what to do when refused.  reg_flash()
 * also serves as retry (failed/done rows).  Unknown devices need
 * REG_FLASH_FORCE.
 */
int		 reg_flash(struct reg *, int row, int flags, uint64_t now,
		     char **cause);
int		 reg_cancel(struct reg *, int row, uint64_t now,
		     char **cause);
/*
 * Arm (1) or disarm (0) auto-flash: while armed, a unit that enters ROM
 * download mode is queued at once.  Arming also queues idle units that
 * are already in download mode.  Returns the number of rows queued.
 */
int		 reg_set_auto(struct reg *, int on, uint64_t now);
int		 reg_get_auto(const struct reg *);

/*
 * Job reports, copied in by the main loop from the job's progress
 * snapshot.  Phases may be skipped (snapshots coalesce) but never go
 * back.  phase is REG_ST_CONNECTING, _WRITING, _VERIFYING or _REBOOTING.
 * Whatever the row's state, reg_job_done() and reg_job_failed() mark
 * the job ended (so a new one may start).
 */
int		 reg_job_phase(struct reg *, int row, enum reg_state phase,
		     uint64_t bytes_done, uint64_t bytes_total, uint64_t now);
int		 reg_job_done(struct reg *, int row, uint64_t now);
int		 reg_job_failed(struct reg *, int row, const char *reason,
		     uint64_t now);
/*
 * The job identified the unit: chip as text ("ESP32-S2FNR2", sanitized
 * here), mac may be NULL.  If the same MAC was
 * seen at another slot, the row records it (moved_from, unit_last,
 * attempts carry over) and the old row, if nothing is plugged there,
 * is cleared.  Returns the old row's index, -1 if none, or -EINVAL.
 */
int		 reg_job_identity(struct reg *, int row, const char *chip,
		     const uint8_t *mac, uint64_t now);
/* An opaque job handle the caller may park on the row (NULL clears). */
void		 reg_set_job(struct reg *, int row, void *job);
void		*reg_get_job(const struct reg *, int row);

/* Pop the oldest pending action: 1 if one was stored in *out, else 0. */
int		 reg_next_action(struct reg *, struct reg_action *out);

/* Rows. */
int		 reg_count(const struct reg *);
int		 reg_find(const struct reg *, const char *location);
int		 reg_find_devnode(const struct reg *, const char *devnode);
int		 reg_find_mac(const struct reg *, const uint8_t mac[6]);
enum reg_state	 reg_row_state(const struct reg *, int row);
/* The port last seen at the row (devnode kept while absent); or NULL. */
const struct port_info *reg_row_port(const struct reg *, int row);
/* Fill *out for drawing; 0, or -EINVAL for a bad index. */
int		 reg_snapshot(const struct reg *, int row, uint64_t now,
		     struct reg_snapshot *out);
void		 reg_get_counts(const struct reg *, struct reg_counts *);

/*
 * Change tracking for redraws: every change bumps the registry's
 * generation and stamps the row with it, so a viewer that remembers the
 * generation it last drew redraws rows whose stamp is newer.  Adding a
 * row bumps it too (reg_count() grows).
 */
uint64_t	 reg_gen(const struct reg *);
uint64_t	 reg_row_gen(const struct reg *, int row);

/* State names: short ("writing") for tables, and the event names. */
const char	*reg_state_name(enum reg_state);
const char	*reg_event_name(enum reg_event);
const char	*reg_act_name(enum reg_act);

/*
 * The event log: the last REG_LOG_MAX lines, oldest first, each stamped
 * with the `now` it was logged at.  reg_log_gen() counts lines ever
 * logged, so a viewer knows when there is something new.  reg_log()
 * lets other modules add a line; its text is sanitized.  A line's
 * pointer is good until the next line is logged.
 */
void		 reg_log(struct reg *, uint64_t now, const char *fmt, ...)
		     printflike(3, 4);
size_t		 reg_log_count(const struct reg *);
const char	*reg_log_line(const struct reg *, size_t i, uint64_t *t_ms);
uint64_t	 reg_log_gen(const struct reg *);

/*
 * The transition table, for tests and help screens: how many rules, and
 * which one the last event used (-1 when it was refused or no table
 * lookup was involved).
 */
size_t		 reg_rule_count(void);
int		 reg_last_rule(const struct reg *);

#endif
