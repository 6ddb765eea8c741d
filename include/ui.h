/*
 * The bench's terminal interface: a table with one line per registry row,
 * a header with the image and the counts, a footer with the keys, and the
 * event log, unit details and help views.  The only module that includes
 * <curses.h>; it runs on the main thread and only reads the registry.
 *
 * Typical use from the poll loop (bench.c):
 *
 *	ui = ui_new(&info);
 *	ui_start(ui, &cause);		(after setlocale(LC_ALL, ""))
 *	poll STDIN; when readable:
 *		while ((cmd = ui_input(ui, reg, now)) != UI_CMD_NONE)
 *			act on cmd, using ui_targets() for its rows;
 *	if (ui_due(ui, reg, now) <= now) ui_draw(ui, reg, now);
 *	ui_stop(ui);			(endwin, then replay stderr)
 *	ui_free(ui);
 *
 * Drawing is throttled (UI_FRAME_MS between frames) except after a key, a
 * resize or a port event (ui_poke(ui, 1)); only lines whose registry
 * generation or shown clock changed are drawn again, and the screen is
 * never cleared except after a resize.
 */
#ifndef ESPF_UI_H
#define ESPF_UI_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct reg;
struct ui;

#define UI_FRAME_MS	66	/* at most ~15 frames a second */
#define UI_TICK_MS	250	/* clocks of active rows are redrawn at least
				   this often */
#define UI_MIN_COLS	40
#define UI_MIN_LINES	8

/* What a key asks the controller to do; rows come from ui_targets(). */
enum ui_cmd {
	UI_CMD_NONE = 0,
	UI_CMD_FLASH,		/* f: flash the selection or the cursor row */
	UI_CMD_CANCEL,		/* c: cancel them */
	UI_CMD_RETRY,		/* r: retry failed rows */
	UI_CMD_AUTO,		/* A: arm or disarm auto-flash */
	UI_CMD_BOOT,		/* b: BOOT+RST on simulated units */
	UI_CMD_QUIT,		/* q (confirmed if jobs run) */
	UI_CMD__MAX
};

/* What the header shows about the job and the mode. */
struct ui_info {
	const char	*image_name;	/* "espfleet-demo.bin", "3 files" */
	uint64_t	 image_size;	/* bytes written per unit */
	const char	*sha256;	/* hex identity of the whole job */
	unsigned	 simulate;	/* units simulated; 0 = real ports */
	const char	*mode;		/* "simulated, realistic", or NULL */
	const char	*job_name;	/* --job: the job's name, or NULL */
	int		 locked;	/* --lock: "LOCKED" in the header */
};

/* Extra facts about a row the registry does not keep (details view). */
struct ui_detail {
	uint32_t	 flash_size;	/* bytes; 0 unknown */
	uint32_t	 flash_id;	/* JEDEC mfr|type<<8|cap<<16, 0 unknown */
	int		 rev_major;	/* chip revision, -1 unknown */
	int		 rev_minor;
	unsigned	 crystal_mhz;	/* 0 unknown */
	char		 security[96];	/* GET_SECURITY_INFO in words, "" unknown */
	char		 how[64];	/* how download mode was reached */
	int		 stub;		/* the flasher stub did the writing */
	char		 phase[32];	/* job phase, "" when no job */
	char		 note[160];	/* warning that did not fail the job */
	char		 error[320];	/* full reason of the last failure */
	char		 boot[96];	/* what the unit did after its reboot */
	char		 sim[96];	/* simulated unit's state, or "" */
};

/* Fill *out for row; set by the controller (may be NULL). */
typedef void (*ui_detail_cb)(void *, int row, struct ui_detail *out);
/*
 * Trace hook: "begin" (n = frame number) before a frame is drawn, "frame"
 * once it was sent to the terminal, "repaint" (n = the next frame) on ^L,
 * "shown" (n = row) when a watched row change is on screen.
 */
typedef void (*ui_trace_cb)(void *, const char *what, int n);

struct ui	*ui_new(const struct ui_info *);
void		 ui_free(struct ui *);
void		 ui_set_detail(struct ui *, ui_detail_cb, void *);
void		 ui_set_trace(struct ui *, ui_trace_cb, void *);

/*
 * Take the terminal: stderr goes to a temporary file, curses starts.
 * 0, or a negative errno with *cause (not a terminal, no terminfo).
 */
int		 ui_start(struct ui *, char **cause);
/* Give the terminal back, then replay what was written to stderr. */
void		 ui_stop(struct ui *);

/*
 * Read every pending key.  Returns the first command a key produced
 * (call again until UI_CMD_NONE: the rest of the keys wait); moving,
 * selecting and switching views are handled here.
 */
enum ui_cmd	 ui_input(struct ui *, const struct reg *, uint64_t now);
/*
 * The rows a command applies to, in *rows (the caller frees it): the
 * selection, else the cursor row; for UI_CMD_RETRY the failed rows of
 * the selection, else every failed row.  Returns the count.
 */
size_t		 ui_targets(struct ui *, const struct reg *, enum ui_cmd,
		     int **rows);

/* A line for the message area (also used for warnings). */
void		 ui_message(struct ui *, uint64_t now, const char *, ...)
		     printflike(3, 4);
/* Something changed: draw at the next frame, or at once when urgent. */
void		 ui_poke(struct ui *, int urgent);
/*
 * Report (through the trace hook) when row is first drawn with a
 * generation of at least gen.
 */
void		 ui_watch(struct ui *, int row, uint64_t gen);

/* When the next frame is due: <= now draw now, UINT64_MAX never. */
uint64_t	 ui_due(struct ui *, const struct reg *, uint64_t now);
/* Draw what changed and send it to the terminal. */
void		 ui_draw(struct ui *, const struct reg *, uint64_t now);

#endif
