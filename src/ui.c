/*
 * The bench's curses interface (see ui.h).  Everything it shows comes from
 * the registry's snapshots, read on the main thread; it never sees a job
 * or a worker.  Frames are throttled and drawn line by line over what is
 * there (no clear), only for lines whose content changed, and ncurses
 * sends the terminal just the cells that differ: what keeps a bench
 * watched over SSH cheap.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>

#include "chip.h"
#include "hotplug.h"
#include "registry.h"
#include "ui.h"
#include "ui-private.h"
#include "util.h"

/* The one UI whose terminal must be restored if the process exits. */
static struct ui	*ui_active;

static void	ui_restore(struct ui *);

/* ================================ Layout ============================== */

/*
 * Widths for cols columns: the 80-column set first, then extra room to
 * the full chip name, a location column, wider state and device columns,
 * and the rest to the progress bar; narrower terminals shrink the bar and
 * abbreviate chip and MAC.
 */
static void
ui_layout(struct ui *ui)
{
	struct ui_cols	*c = &ui->c;
	int		 extra, add;

	memset(c, 0, sizeof(*c));
	c->slot = 4;
	c->dev = 7;
	c->chip = 8;
	c->chip_short = 1;
	c->mac = 17;
	c->state = 10;
	c->prog = 10;
	c->rate = 5;
	c->time = 11;
	/* Eight columns and seven separators: 79 columns. */
	extra = ui->cols - 79;
	if (extra < 0) {
		add = MINIMUM(-extra, c->prog - 6);
		c->prog -= add;
		extra += add;
		if (extra < 0) {
			c->mac = 8;
			c->mac_short = 1;
			extra += 9;
		}
		if (extra < 0) {
			add = MINIMUM(-extra, 4);
			c->state -= add;
			extra += add;
		}
		if (extra < 0) {
			add = MINIMUM(-extra, 2);
			c->chip -= add;
			extra += add;
		}
		return;
	}
	add = MINIMUM(extra, 4);
	c->chip += add;
	extra -= add;
	if (c->chip >= 12)
		c->chip_short = 0;
	if (extra >= 13) {
		c->loc = 12;
		extra -= 13;
	}
	add = MINIMUM(extra, 6);
	c->state += add;
	extra -= add;
	add = MINIMUM(extra, 5);
	c->dev += add;
	extra -= add;
	if (c->loc > 0) {
		add = MINIMUM(extra, 16);
		c->loc += add;
		extra -= add;
	}
	add = MINIMUM(extra, 2);
	c->rate += add;
	extra -= add;
	c->prog += extra;
}

/* Lines the table (and the log and details views) may use. */
int
ui_body_lines(const struct ui *ui)
{
	int	h = ui->lines - UI_HEAD_LINES - UI_FOOT_LINES;

	return (h > 0 ? h : 0);
}

/* Size the per-line cache to the screen and forget what it held. */
static void
ui_reset_lines(struct ui *ui)
{
	int	i;

	ui->nlc = ui_body_lines(ui);
	free(ui->lc);
	ui->lc = xcalloc(ui->nlc > 0 ? (size_t)ui->nlc : 1, sizeof(*ui->lc));
	for (i = 0; i < ui->nlc; i++)
		ui->lc[i].row = -2;
	memset(ui->drawn_head, 0, sizeof(ui->drawn_head));
	memset(ui->drawn_foot, 0, sizeof(ui->drawn_foot));
	ui->full = 1;
}

/* Take the terminal's new size; everything is drawn again. */
static void
ui_resized(struct ui *ui)
{
	ui->cols = COLS;
	ui->lines = LINES;
	ui_layout(ui);
	ui_reset_lines(ui);
	/* Erased in ui_draw(): getch() would send a blank screen now. */
	ui->resized = 1;
	ui->urgent = 1;
}

/* ============================ Life cycle ============================== */

/* A UI for the image described by info (strings are copied). */
struct ui *
ui_new(const struct ui_info *info)
{
	struct ui	*ui;

	ui = xcalloc(1, sizeof(*ui));
	ui->info = *info;
	ui->image_name = xstrdup(info->image_name != NULL ?
	    info->image_name : "");
	ui->sha256 = xstrdup(info->sha256 != NULL ? info->sha256 : "");
	ui->mode = info->mode != NULL ? xstrdup(info->mode) : NULL;
	ui->job_name = info->job_name != NULL ? xstrdup(info->job_name) :
	    NULL;
	ui->info.job_name = ui->job_name;
	ui->info.image_name = ui->image_name;
	ui->info.sha256 = ui->sha256;
	ui->info.mode = ui->mode;
	ui->saved_stderr = ui->err_fd = -1;
	ui->log_follow = 1;
	return (ui);
}

/* Free a UI (stopping it first if needed). */
void
ui_free(struct ui *ui)
{
	if (ui == NULL)
		return;
	ui_stop(ui);
	free(ui->image_name);
	free(ui->sha256);
	free(ui->mode);
	free(ui->job_name);
	free(ui->sel);
	free(ui->lc);
	free(ui->slow);
	free(ui->watch);
	free(ui);
}

/* Where the details view gets what the registry does not hold. */
void
ui_set_detail(struct ui *ui, ui_detail_cb cb, void *arg)
{
	ui->detail_cb = cb;
	ui->detail_arg = arg;
}

/* Where frame and watch events are reported. */
void
ui_set_trace(struct ui *ui, ui_trace_cb cb, void *arg)
{
	ui->trace_cb = cb;
	ui->trace_arg = arg;
}

/* Restore the terminal if the process exits while curses runs. */
static void
ui_atexit(void)
{
	if (ui_active != NULL)
		ui_restore(ui_active);
}

/* Send stderr to an unlinked temporary file; 0 or -errno. */
static int
ui_capture_stderr(struct ui *ui, char **cause)
{
	const char	*dir;
	char		*path;
	int		 fd, error;

	if ((dir = getenv("TMPDIR")) == NULL || *dir == '\0')
		dir = "/tmp";
	path = xasprintf("%s/espfleet-stderr.XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) == -1) {
		error = errno;
		*cause = xasprintf("cannot create a file in %s for messages "
		    "while the screen is in use: %s (set TMPDIR)", dir,
		    strerror(error));
		free(path);
		return (-error);
	}
	unlink(path);
	free(path);
	fflush(stderr);
	ui->saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	if (ui->saved_stderr == -1 || dup2(fd, STDERR_FILENO) == -1) {
		error = errno;
		close(fd);
		if (ui->saved_stderr != -1)
			close(ui->saved_stderr);
		ui->saved_stderr = -1;
		*cause = xasprintf("cannot redirect stderr: %s",
		    strerror(error));
		return (-error);
	}
	ui->err_fd = fd;
	return (0);
}

/* Put stderr back and show what was written to it meanwhile. */
static void
ui_replay_stderr(struct ui *ui)
{
	char	buf[4096];
	ssize_t	n;
	int	first = 1;

	if (ui->saved_stderr == -1)
		return;
	fflush(stderr);
	dup2(ui->saved_stderr, STDERR_FILENO);
	close(ui->saved_stderr);
	ui->saved_stderr = -1;
	if (lseek(ui->err_fd, 0, SEEK_SET) == 0) {
		while ((n = read(ui->err_fd, buf, sizeof(buf))) > 0) {
			if (first)
				fprintf(stderr, "espfleet: written to stderr "
				    "while the screen was in use:\n");
			first = 0;
			fflush(stderr);
			if (write(STDERR_FILENO, buf, (size_t)n) != n)
				break;
		}
	}
	close(ui->err_fd);
	ui->err_fd = -1;
}

/* Colours, unless the terminal has none or NO_COLOR is set. */
static void
ui_colors(struct ui *ui)
{
	const char	*nc = getenv("NO_COLOR");
	short		 bg = COLOR_BLACK;

	ui->color = 0;
	if ((nc != NULL && *nc != '\0') || !has_colors())
		return;
	if (start_color() == ERR)
		return;
	if (use_default_colors() == OK)
		bg = -1;
	init_pair(UI_PAIR_DONE, COLOR_GREEN, bg);
	init_pair(UI_PAIR_FAILED, COLOR_RED, bg);
	init_pair(UI_PAIR_ACTIVE, COLOR_YELLOW, bg);
	init_pair(UI_PAIR_WAIT, COLOR_CYAN, bg);
	init_pair(UI_PAIR_WARN, COLOR_MAGENTA, bg);
	ui->color = 1;
}

static void	ui_restore(struct ui *);

/* Take the terminal. */
int
ui_start(struct ui *ui, char **cause)
{
	const char	*cs;
	int		 error;

	if (ui->started)
		return (0);
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		*cause = xasprintf("the bench needs a terminal on standard "
		    "input and output; use \"espfleet flash\" in scripts");
		return (-ENOTTY);
	}
	cs = nl_langinfo(CODESET);
	ui->utf8 = cs != NULL && (strcasecmp(cs, "UTF-8") == 0 ||
	    strcasecmp(cs, "utf8") == 0);
	if ((error = ui_capture_stderr(ui, cause)) != 0)
		return (error);
	ui->screen = newterm(NULL, stdout, stdin);
	if (ui->screen == NULL) {
		ui_replay_stderr(ui);
		*cause = xasprintf("cannot start the screen for TERM=%s; set "
		    "TERM to a terminal type this system knows (such as "
		    "xterm or screen)", getenv("TERM") != NULL ?
		    getenv("TERM") : "(unset)");
		return (-ENOTTY);
	}
	set_term(ui->screen);
	ui->started = 1;
	ui_active = ui;
	atexit(ui_atexit);
	/* A window too small to show a fleet: say so instead of starting. */
	if (COLS < UI_START_COLS || LINES < UI_START_LINES) {
		*cause = xasprintf("the terminal is %dx%d, the bench needs at "
		    "least %dx%d: enlarge the window, or use \"espfleet "
		    "flash\"", COLS, LINES, UI_START_COLS, UI_START_LINES);
		ui_restore(ui);
		return (-EINVAL);
	}
	cbreak();
	noecho();
	nonl();
	intrflush(stdscr, FALSE);
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	leaveok(stdscr, TRUE);
	curs_set(0);
	set_escdelay(25);
	ui_colors(ui);
	ui->t0 = util_now_ms();
	ui->cols = COLS;
	ui->lines = LINES;
	ui_layout(ui);
	ui_reset_lines(ui);
	ui->urgent = 1;
	return (0);
}

/* Leave curses and restore stderr (also from the exit handler). */
static void
ui_restore(struct ui *ui)
{
	if (!ui->started)
		return;
	ui->started = 0;
	ui_active = NULL;
	curs_set(1);
	endwin();
	fflush(stdout);
	delscreen(ui->screen);
	ui->screen = NULL;
	ui_replay_stderr(ui);
}

/* Give the terminal back. */
void
ui_stop(struct ui *ui)
{
	ui_restore(ui);
}

/* ============================== Messages ============================== */

/* Show a message; "warning:" ones stay until another replaces them. */
void
ui_message(struct ui *ui, uint64_t now, const char *fmt, ...)
{
	char	raw[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	util_sanitize(ui->msg, sizeof(ui->msg), raw, strlen(raw));
	ui->msg_t = now;
	ui->msg_warn = strncmp(ui->msg, "warning:", 8) == 0;
	ui->dirty = 1;
}

/* Note a change; urgent ones skip the frame throttle. */
void
ui_poke(struct ui *ui, int urgent)
{
	ui->dirty = 1;
	if (urgent)
		ui->urgent = 1;
}

/* Ask to be told when row shows generation gen. */
void
ui_watch(struct ui *ui, int row, uint64_t gen)
{
	ui->watch = xrealloc(ui->watch, (ui->nwatch + 1) *
	    sizeof(*ui->watch));
	ui->watch[ui->nwatch].row = row;
	ui->watch[ui->nwatch].gen = gen;
	ui->nwatch++;
}

/* ============================== Selection ============================= */

/* Make the selection map cover n rows. */
void
ui_sel_grow(struct ui *ui, int n)
{
	if (n <= 0 || (size_t)n <= ui->nsel)
		return;
	ui->sel = xrealloc(ui->sel, (size_t)n);
	memset(ui->sel + ui->nsel, 0, (size_t)n - ui->nsel);
	ui->nsel = (size_t)n;
}

/* Number of selected rows. */
static int
ui_sel_count(const struct ui *ui, int nrows)
{
	int	i, n = 0;

	for (i = 0; i < nrows && (size_t)i < ui->nsel; i++)
		n += ui->sel[i] != 0;
	return (n);
}

/* Forget the selection. */
static void
ui_sel_clear(struct ui *ui)
{
	if (ui->nsel > 0)
		memset(ui->sel, 0, ui->nsel);
}

/* Rows a command applies to. */
size_t
ui_targets(struct ui *ui, const struct reg *reg, enum ui_cmd cmd,
    int **rows)
{
	int	 nrows = reg_count(reg), i, nsel;
	size_t	 n = 0;

	*rows = xcalloc(nrows > 0 ? (size_t)nrows : 1, sizeof(**rows));
	if (nrows == 0)
		return (0);
	ui_sel_grow(ui, nrows);
	nsel = ui_sel_count(ui, nrows);
	for (i = 0; i < nrows; i++) {
		if (cmd == UI_CMD_RETRY) {
			if (reg_row_state(reg, i) != REG_ST_FAILED)
				continue;
			if (nsel > 0 && !ui->sel[i])
				continue;
		} else if (nsel > 0 ? !ui->sel[i] : i != ui->cursor)
			continue;
		(*rows)[n++] = i;
	}
	ui_sel_clear(ui);
	ui->dirty = 1;
	return (n);
}

/* ================================ Input =============================== */

/* Keep the cursor on a row and visible in the table. */
void
ui_clamp(struct ui *ui, int nrows)
{
	int	h = ui_body_lines(ui);

	if (ui->cursor >= nrows)
		ui->cursor = nrows - 1;
	if (ui->cursor < 0)
		ui->cursor = 0;
	if (h <= 0)
		return;
	if (ui->cursor < ui->top)
		ui->top = ui->cursor;
	if (ui->cursor >= ui->top + h)
		ui->top = ui->cursor - h + 1;
	if (ui->top > nrows - h)
		ui->top = nrows - h;
	if (ui->top < 0)
		ui->top = 0;
}

/* Move the cursor by delta rows. */
static void
ui_move(struct ui *ui, int nrows, int delta)
{
	ui->cursor += delta;
	ui_clamp(ui, nrows);
	ui->dirty = ui->urgent = 1;
}

/* Switch views; the body is drawn again from scratch. */
static void
ui_set_view(struct ui *ui, enum ui_view v)
{
	ui->view = v;
	ui->full = 1;
	ui->urgent = 1;
	if (v == UI_VIEW_LOG)
		ui->log_follow = 1;
}

/* Keys of the event log view. */
static void
ui_key_log(struct ui *ui, const struct reg *reg, int key)
{
	int	h = ui_body_lines(ui), n = (int)reg_log_count(reg);

	switch (key) {
	case 'k':
	case KEY_UP:
		ui->log_top--;
		ui->log_follow = 0;
		break;
	case 'j':
	case KEY_DOWN:
		ui->log_top++;
		break;
	case KEY_PPAGE:
		ui->log_top -= h;
		ui->log_follow = 0;
		break;
	case KEY_NPAGE:
	case ' ':
		ui->log_top += h;
		break;
	case 'g':
	case KEY_HOME:
		ui->log_top = 0;
		ui->log_follow = 0;
		break;
	case 'G':
	case KEY_END:
		ui->log_follow = 1;
		break;
	case 'l':
	case 'q':
	case 27:
		ui_set_view(ui, UI_VIEW_TABLE);
		return;
	default:
		return;
	}
	if (ui->log_top >= n - h)
		ui->log_follow = 1;
	if (ui->log_top < 0)
		ui->log_top = 0;
	ui->full = ui->urgent = 1;
}

/* Keys while "quit and cancel them? y/n" is asked. */
static enum ui_cmd
ui_key_ask(struct ui *ui, int key, uint64_t now)
{
	switch (key) {
	case 'y':
	case 'Y':
		ui->asking = 0;
		return (UI_CMD_QUIT);
	case 'n':
	case 'N':
	case 27:
	case 'q':
		ui->asking = 0;
		ui_message(ui, now, "quit cancelled; the jobs go on");
		ui->urgent = 1;
		break;
	default:
		break;
	}
	return (UI_CMD_NONE);
}

/* q: quit at once, or ask first while jobs run. */
static enum ui_cmd
ui_key_quit(struct ui *ui, const struct reg *reg, uint64_t now)
{
	struct reg_counts	c;

	reg_get_counts(reg, &c);
	if (c.active == 0)
		return (UI_CMD_QUIT);
	ui->asking = 1;
	ui_message(ui, now, "%u job%s running: quit and cancel %s? y/n",
	    c.active, c.active == 1 ? "" : "s", c.active == 1 ? "it" : "them");
	ui->urgent = 1;
	return (UI_CMD_NONE);
}

/* Keys of the table (and, for moving, the details view). */
static enum ui_cmd
ui_key_table(struct ui *ui, const struct reg *reg, int key, uint64_t now)
{
	int	nrows = reg_count(reg), h = ui_body_lines(ui), i, all;

	ui_sel_grow(ui, nrows);
	switch (key) {
	case 'k':
	case KEY_UP:
		ui_move(ui, nrows, -1);
		break;
	case 'j':
	case KEY_DOWN:
		ui_move(ui, nrows, 1);
		break;
	case KEY_PPAGE:
		ui_move(ui, nrows, -MAXIMUM(h - 1, 1));
		break;
	case KEY_NPAGE:
		ui_move(ui, nrows, MAXIMUM(h - 1, 1));
		break;
	case 'g':
	case KEY_HOME:
		ui_move(ui, nrows, -nrows);
		break;
	case 'G':
	case KEY_END:
		ui_move(ui, nrows, nrows);
		break;
	case ' ':
		if (nrows > 0 && ui->view == UI_VIEW_TABLE) {
			ui->sel[ui->cursor] = !ui->sel[ui->cursor];
			ui_move(ui, nrows, 1);
		}
		break;
	case 'a':
		all = nrows > 0 && ui_sel_count(ui, nrows) == nrows;
		for (i = 0; i < nrows; i++)
			ui->sel[i] = !all;
		ui->dirty = ui->urgent = 1;
		break;
	case 27:
		if (ui->view != UI_VIEW_TABLE)
			ui_set_view(ui, UI_VIEW_TABLE);
		else {
			ui_sel_clear(ui);
			ui->dirty = ui->urgent = 1;
		}
		break;
	case 'f':
		return (UI_CMD_FLASH);
	case 'c':
		return (UI_CMD_CANCEL);
	case 'r':
		return (UI_CMD_RETRY);
	case 'A':
		return (UI_CMD_AUTO);
	case 'b':
		if (ui->info.simulate > 0)
			return (UI_CMD_BOOT);
		ui_message(ui, now, "b (BOOT+RST) only works on simulated "
		    "units: on a real one hold BOOT and press RST");
		ui->urgent = 1;
		break;
	case 'i':
		ui_set_view(ui, ui->view == UI_VIEW_DETAILS ?
		    UI_VIEW_TABLE : UI_VIEW_DETAILS);
		break;
	case 'l':
		ui_set_view(ui, UI_VIEW_LOG);
		break;
	case '?':
	case 'h':
		ui_set_view(ui, UI_VIEW_HELP);
		break;
	case 'q':
		if (ui->view == UI_VIEW_DETAILS) {
			ui_set_view(ui, UI_VIEW_TABLE);
			break;
		}
		return (ui_key_quit(ui, reg, now));
	default:
		break;
	}
	return (UI_CMD_NONE);
}

/* Read keys until one asks the controller for something. */
enum ui_cmd
ui_input(struct ui *ui, const struct reg *reg, uint64_t now)
{
	enum ui_cmd	cmd;
	int		key;

	if (!ui->started)
		return (UI_CMD_NONE);
	while ((key = getch()) != ERR) {
		if (key == KEY_RESIZE) {
			ui_resized(ui);
			continue;
		}
		if (key == 12) {	/* ^L: repaint everything */
			if (ui->trace_cb != NULL)
				ui->trace_cb(ui->trace_arg, "repaint",
				    (int)ui->frames + 1);
			clearok(curscr, TRUE);
			ui_reset_lines(ui);
			ui->urgent = 1;
			continue;
		}
		if (ui->asking) {
			if ((cmd = ui_key_ask(ui, key, now)) != UI_CMD_NONE)
				return (cmd);
			continue;
		}
		switch (ui->view) {
		case UI_VIEW_HELP:
			ui_set_view(ui, UI_VIEW_TABLE);
			continue;
		case UI_VIEW_LOG:
			ui_key_log(ui, reg, key);
			continue;
		default:
			break;
		}
		if ((cmd = ui_key_table(ui, reg, key, now)) != UI_CMD_NONE) {
			ui->urgent = 1;
			return (cmd);
		}
	}
	return (UI_CMD_NONE);
}
