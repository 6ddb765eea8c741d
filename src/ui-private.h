/*
 * What ui.c (life cycle, layout, input) and ui-draw.c (everything put on
 * the screen) share: the ui context itself and the few helpers both use.
 * Not part of the interface; that is include/ui.h.
 */
#ifndef ESPF_UI_PRIVATE_H
#define ESPF_UI_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <curses.h>

#include "registry.h"
#include "ui.h"

#define UI_MSG_MS	10000	/* plain messages fade after this */
#define UI_SLOW_MS	1000	/* rate and ETA change at most this often */
#define UI_HEAD_LINES	3	/* title, counts, column headings */
#define UI_FOOT_LINES	2	/* message, keys */
#define UI_TEXT_MAX	1024	/* one screen line, in bytes */
#define UI_START_COLS	60	/* smallest terminal the bench starts in; */
#define UI_START_LINES	16	/* later it shrinks down to UI_MIN_* */
#define UI_KEY_MAX	(UI_TEXT_MAX + 260)	/* what a drawn line was */

enum ui_view {
	UI_VIEW_TABLE = 0,
	UI_VIEW_LOG,
	UI_VIEW_DETAILS,
	UI_VIEW_HELP
};

enum ui_pair {
	UI_PAIR_DONE = 1,
	UI_PAIR_FAILED,
	UI_PAIR_ACTIVE,
	UI_PAIR_WAIT,
	UI_PAIR_WARN
};

/* Column widths for the current terminal width; 0 hides a column. */
struct ui_cols {
	int	 slot, loc, dev, chip, mac, state, prog, rate, time;
	int	 chip_short;	/* drop the "ESP32-" of chip names */
	int	 mac_short;	/* last three octets only */
};

/* What a table line shows now, to skip lines that would not change. */
struct ui_line {
	int		 row;		/* -1 blank, -2 never drawn */
	uint64_t	 gen;
	uint64_t	 clock;		/* shown seconds + slow-field version */
	int		 flags;
#define UI_LF_CURSOR	0x1
#define UI_LF_SEL	0x2
};

/* Rate and ETA as shown, refreshed at most every UI_SLOW_MS. */
struct ui_slow {
	uint64_t	 t;
	uint64_t	 rate;
	int64_t		 eta_ms;
	enum reg_state	 state;
	unsigned	 version;
};

struct ui_watch {
	int		 row;
	uint64_t	 gen;
};

struct ui {
	struct ui_info	 info;
	char		*image_name;
	char		*sha256;
	char		*mode;
	char		*job_name;

	SCREEN		*screen;
	int		 started;
	int		 saved_stderr;	/* the real stderr while curses runs */
	int		 err_fd;	/* where stderr goes meanwhile */

	int		 utf8;
	int		 color;
	int		 cols, lines;
	struct ui_cols	 c;

	enum ui_view	 view;
	int		 cursor;
	int		 top;
	unsigned char	*sel;
	size_t		 nsel;
	int		 asking;	/* "quit and cancel them? y/n" */

	char		 msg[256];
	uint64_t	 msg_t;
	int		 msg_warn;

	int		 full;		/* repaint every line */
	int		 resized;	/* erase before the next frame */
	int		 dirty;
	int		 urgent;
	uint64_t	 t0;
	uint64_t	 last_frame;
	unsigned	 frames;
	uint64_t	 drawn_gen;
	uint64_t	 drawn_log_gen;
	int		 any_active;

	char		 drawn_head[2][UI_KEY_MAX];
	char		 drawn_foot[2][UI_KEY_MAX];
	struct ui_line	*lc;		/* one per table line */
	int		 nlc;
	struct ui_slow	*slow;		/* one per registry row */
	int		 nslow;

	int		 log_top;
	int		 log_follow;

	struct ui_watch	*watch;
	size_t		 nwatch;

	ui_detail_cb	 detail_cb;
	void		*detail_arg;
	ui_trace_cb	 trace_cb;
	void		*trace_arg;
};

/* Lines of the body: the terminal less the head and foot lines. */
int	ui_body_lines(const struct ui *);
/* Make the selection hold n rows. */
void	ui_sel_grow(struct ui *, int n);
/* Keep the cursor within nrows and the top line showing it. */
void	ui_clamp(struct ui *, int nrows);

#endif
