/*
 * Everything the bench puts on the screen (ui.h): the table, head and
 * foot, and the log, details and help views.  It reads the registry's
 * snapshots on the main thread, draws line by line over what is there
 * (no clear), and skips lines whose content did not change, so ncurses
 * sends the terminal only the cells that differ.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <curses.h>

#include "chip.h"
#include "hotplug.h"
#include "registry.h"
#include "ui.h"
#include "ui-private.h"
#include "util.h"

/* ============================= Text helpers =========================== */

/*
 * Copy as much of s as fits in w columns into out (cap bytes), with
 * whatever the locale cannot show replaced by '?'; returns the columns
 * used.
 */
static int
ui_draw_fit(const struct ui *ui, const char *s, int w, char *out, size_t cap)
{
	mbstate_t	 mbs;
	wchar_t		 wc;
	size_t		 n, o = 0;
	int		 cw, used = 0;

	memset(&mbs, 0, sizeof(mbs));
	while (*s != '\0' && used < w && o + 8 < cap) {
		if ((unsigned char)*s < 0x80 || !ui->utf8) {
			cw = 1;
			n = 1;
			out[o] = ((unsigned char)*s < 0x20 ||
			    (unsigned char)*s >= 0x7f) ? '?' : *s;
			if (used + cw > w)
				break;
			o++;
		} else {
			n = mbrtowc(&wc, s, MB_CUR_MAX, &mbs);
			if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
				memset(&mbs, 0, sizeof(mbs));
				n = 1;
				cw = 1;
				if (used + cw > w)
					break;
				out[o++] = '?';
			} else {
				cw = wcwidth(wc);
				if (cw < 0)
					cw = 1;
				if (used + cw > w)
					break;
				memcpy(out + o, s, n);
				o += n;
			}
		}
		used += cw;
		s += n;
	}
	out[o] = '\0';
	return (used);
}

/* Columns s would take on screen. */
static int
ui_draw_width(const struct ui *ui, const char *s)
{
	char	buf[UI_TEXT_MAX];

	return (ui_draw_fit(ui, s, UI_TEXT_MAX, buf, sizeof(buf)));
}

/* Draw s at (y, x) in exactly w columns: clipped, then padded. */
static void
ui_draw_text(struct ui *ui, int y, int x, int w, attr_t attr, const char *s)
{
	char	buf[UI_TEXT_MAX];
	int	used;

	if (w <= 0 || x >= ui->cols || y >= ui->lines)
		return;
	if (x + w > ui->cols)
		w = ui->cols - x;
	used = ui_draw_fit(ui, s, w, buf, sizeof(buf));
	attrset(attr);
	mvaddstr(y, x, buf);
	if (used < w)
		mvhline(y, x + used, ' ' | attr, w - used);
	attrset(A_NORMAL);
}

/* Draw s right-aligned so that it ends at column x + w. */
static void
ui_draw_text_right(struct ui *ui, int y, int x, int w, attr_t attr,
    const char *s)
{
	int	sw = ui_draw_width(ui, s);

	if (sw >= w) {
		ui_draw_text(ui, y, x, w, attr, s);
		return;
	}
	ui_draw_text(ui, y, x, w - sw, attr, "");
	ui_draw_text(ui, y, x + w - sw, sw, attr, s);
}

/* "1:05", "12:34", "1:02:03". */
static void
ui_draw_clock(uint64_t ms, char *buf, size_t cap)
{
	uint64_t	s = ms / 1000;

	if (s >= 3600)
		snprintf(buf, cap, "%llu:%02llu:%02llu",
		    (unsigned long long)(s / 3600),
		    (unsigned long long)(s / 60 % 60),
		    (unsigned long long)(s % 60));
	else
		snprintf(buf, cap, "%llu:%02llu", (unsigned long long)(s / 60),
		    (unsigned long long)(s % 60));
}

/* Bytes as "711.1 KiB". */
static void
ui_draw_size(uint64_t n, char *buf, size_t cap)
{
	if (n >= 1024 * 1024)
		snprintf(buf, cap, "%.1f MiB", (double)n / (1024.0 * 1024.0));
	else if (n >= 1024)
		snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
	else
		snprintf(buf, cap, "%llu B", (unsigned long long)n);
}

/* A rate in KiB/s as the table shows it: "45K", "1.2M". */
static void
ui_draw_rate(uint64_t bps, char *buf, size_t cap)
{
	if (bps == 0)
		snprintf(buf, cap, "-");
	else if (bps >= 1000 * 1024)
		snprintf(buf, cap, "%.1fM", (double)bps / (1024.0 * 1024.0));
	else
		snprintf(buf, cap, "%lluK",
		    (unsigned long long)((bps + 512) / 1024));
}

/* The tail of a long string: its last w bytes (locations are ASCII). */
static const char *
ui_draw_tail(const char *s, int w)
{
	size_t	len = strlen(s);

	if (w <= 1 || len <= (size_t)w)
		return (s);
	return (s + len - (size_t)w);
}

/* ================================ Drawing ============================= */

/* Attribute for a state's cell. */
static attr_t
ui_draw_attr(const struct ui *ui, enum reg_state st)
{
	switch (st) {
	case REG_ST_DONE:
		return (ui->color ? COLOR_PAIR(UI_PAIR_DONE) | A_BOLD :
		    A_BOLD);
	case REG_ST_FAILED:
	case REG_ST_GONE:
		return (ui->color ? COLOR_PAIR(UI_PAIR_FAILED) | A_BOLD :
		    A_BOLD | A_UNDERLINE);
	case REG_ST_QUEUED:
	case REG_ST_CONNECTING:
	case REG_ST_WRITING:
	case REG_ST_VERIFYING:
	case REG_ST_REBOOTING:
		return (ui->color ? COLOR_PAIR(UI_PAIR_ACTIVE) : A_NORMAL);
	case REG_ST_WAIT_DL:
		return (ui->color ? COLOR_PAIR(UI_PAIR_WAIT) | A_BOLD :
		    A_BOLD);
	case REG_ST_EMPTY:
		return (A_DIM);
	default:
		return (A_NORMAL);
	}
}

/* Whether a state is drawn as "name + bar" rather than as a sentence. */
static int
ui_draw_has_bar(enum reg_state st)
{
	switch (st) {
	case REG_ST_QUEUED:
	case REG_ST_CONNECTING:
	case REG_ST_WRITING:
	case REG_ST_VERIFYING:
	case REG_ST_REBOOTING:
	case REG_ST_DONE:
		return (1);
	default:
		return (0);
	}
}

/* A progress bar of w cells for percent (eighth blocks in UTF-8). */
static void
ui_draw_bar(const struct ui *ui, int percent, int w, char *buf, size_t cap)
{
	static const char *const eighth[8] = {
		"", "\xe2\x96\x8f", "\xe2\x96\x8e", "\xe2\x96\x8d",
		"\xe2\x96\x8c", "\xe2\x96\x8b", "\xe2\x96\x8a", "\xe2\x96\x89"
	};
	size_t	o = 0;
	int	i, units, full, part;

	buf[0] = '\0';
	if (w <= 0 || cap < 4)
		return;
	percent = MAXIMUM(0, MINIMUM(percent, 100));
	if (!ui->utf8) {
		full = (percent * w + 50) / 100;
		for (i = 0; i < w && o + 1 < cap; i++)
			buf[o++] = i < full ? '#' : '-';
		buf[o] = '\0';
		return;
	}
	units = percent * w * 8 / 100;
	full = units / 8;
	part = units % 8;
	for (i = 0; i < w && o + 4 < cap; i++) {
		if (i < full)
			o += (size_t)snprintf(buf + o, cap - o, "\xe2\x96\x88");
		else if (i == full && part > 0)
			o += (size_t)snprintf(buf + o, cap - o, "%s",
			    eighth[part]);
		else
			o += (size_t)snprintf(buf + o, cap - o,
			    "\xe2\x96\x91");
	}
}

/* Make the slow-field table cover n rows. */
static void
ui_draw_slow_grow(struct ui *ui, int n)
{
	if (n <= ui->nslow)
		return;
	ui->slow = xrealloc(ui->slow, (size_t)n * sizeof(*ui->slow));
	memset(ui->slow + ui->nslow, 0, (size_t)(n - ui->nslow) *
	    sizeof(*ui->slow));
	ui->nslow = n;
}

/* Refresh a row's shown rate and ETA if a second passed or it changed. */
static struct ui_slow *
ui_draw_slow(struct ui *ui, const struct reg_snapshot *s, uint64_t now)
{
	struct ui_slow	*sl;

	ui_draw_slow_grow(ui, s->index + 1);
	sl = &ui->slow[s->index];
	if (sl->t == 0 || sl->state != s->state ||
	    now - sl->t >= UI_SLOW_MS) {
		if (sl->rate != s->rate || sl->eta_ms != s->eta_ms ||
		    sl->state != s->state)
			sl->version++;
		sl->t = now;
		sl->rate = s->rate;
		sl->eta_ms = s->eta_ms;
		sl->state = s->state;
	}
	return (sl);
}

/* The device column: the devnode's base name, or "-" when absent. */
static const char *
ui_draw_devname(const struct reg_snapshot *s)
{
	const char	*p;

	if (s->devnode[0] == '\0')
		return ("-");
	p = strrchr(s->devnode, '/');
	return (p != NULL && p[1] != '\0' ? p + 1 : s->devnode);
}

/* A short location: the part after "-usb-" of a udev ID_PATH. */
static const char *
ui_draw_location(const char *loc)
{
	const char	*p;

	if ((p = strstr(loc, "-usb-")) != NULL && p[5] != '\0')
		return (p + 5);
	return (loc);
}

/* The words in the state column for states without a bar. */
static void
ui_draw_state_words(const struct reg_snapshot *s, char *buf, size_t cap)
{
	switch (s->state) {
	case REG_ST_WAIT_DL:
		snprintf(buf, cap, "wait: %s", REG_WAIT_DL_HINT);
		break;
	case REG_ST_PLUGGED:
		if (s->kind == USB_KIND_S2_ROM)
			snprintf(buf, cap, "plugged, download mode");
		else
			snprintf(buf, cap, "plugged, %s", s->kind_name);
		break;
	default:
		snprintf(buf, cap, "%s", s->state_text);
		break;
	}
}

/* Draw one registry row on line y. */
static void
ui_draw_row(struct ui *ui, int y, const struct reg_snapshot *s,
    const struct ui_slow *sl, int flags)
{
	const struct ui_cols	*c = &ui->c;
	attr_t			 base, st;
	char			 buf[UI_TEXT_MAX], t1[32], t2[32];
	const char		*p;
	int			 x = 0, w;

	base = (flags & UI_LF_CURSOR) ? A_REVERSE : A_NORMAL;
	if (flags & UI_LF_SEL)
		base |= A_BOLD;
	st = ui_draw_attr(ui, s->state) | base;

	snprintf(buf, sizeof(buf), "%c%3d", (flags & UI_LF_SEL) ? '*' : ' ',
	    s->slot);
	ui_draw_text(ui, y, x, c->slot + 1, base, buf);
	x += c->slot + 1;
	if (c->loc > 0) {
		p = ui_draw_tail(ui_draw_location(s->location), c->loc);
		ui_draw_text(ui, y, x, c->loc + 1, base, p);
		x += c->loc + 1;
	}
	ui_draw_text(ui, y, x, c->dev + 1, base, ui_draw_devname(s));
	x += c->dev + 1;
	p = s->chip;
	if (c->chip_short && strncmp(p, "ESP32-", 6) == 0)
		p += 6;
	ui_draw_text(ui, y, x, c->chip + 1, base, p);
	x += c->chip + 1;
	p = s->mac_text;
	if (c->mac_short && strlen(p) > 8)
		p += strlen(p) - 8;
	ui_draw_text(ui, y, x, c->mac + 1, base, p);
	x += c->mac + 1;

	if (ui_draw_has_bar(s->state)) {
		/* Nothing written yet while writing: the ROM is erasing. */
		p = s->state == REG_ST_WRITING && s->bytes_done == 0 ?
		    "erasing" : s->state_name;
		ui_draw_text(ui, y, x, c->state + 1, st, p);
		x += c->state + 1;
		w = c->prog - 5;
		ui_draw_bar(ui, s->percent, w, buf, sizeof(buf));
		ui_draw_text(ui, y, x, w, st, buf);
		snprintf(buf, sizeof(buf), "%4d%%", MAXIMUM(s->percent, 0));
		ui_draw_text(ui, y, x + w, 6, base, buf);
		x += c->prog + 1;
		t1[0] = '\0';
		if (s->state == REG_ST_WRITING || s->state == REG_ST_DONE)
			ui_draw_rate(s->state == REG_ST_DONE ? s->rate : sl->rate,
			    t1, sizeof(t1));
		ui_draw_text_right(ui, y, x, c->rate, base, t1);
		ui_draw_text(ui, y, x + c->rate, 1, base, "");
		x += c->rate + 1;
	} else {
		ui_draw_state_words(s, buf, sizeof(buf));
		w = c->state + c->prog + c->rate + 2;
		ui_draw_text(ui, y, x, w, st, buf);
		ui_draw_text(ui, y, x + w, 1, base, "");
		x += w + 1;
	}

	buf[0] = '\0';
	if (s->t_started != 0) {
		ui_draw_clock(s->elapsed_ms, t1, sizeof(t1));
		if (s->job_active && s->state == REG_ST_WRITING) {
			if (sl->eta_ms >= 0)
				ui_draw_clock((uint64_t)sl->eta_ms, t2, sizeof(t2));
			else
				snprintf(t2, sizeof(t2), "-");
			snprintf(buf, sizeof(buf), "%s/%s", t1, t2);
		} else
			snprintf(buf, sizeof(buf), "%s", t1);
	}
	ui_draw_text(ui, y, x, ui->cols - x, base, buf);
}

/* The title and counts lines. */
static void
ui_draw_head(struct ui *ui, const struct reg *reg)
{
	struct reg_counts	 rc;
	char			 left[UI_TEXT_MAX], right[256], size[32];
	char			 line[UI_TEXT_MAX + 256 + 2];
	int			 w = ui->cols;

	ui_draw_size(ui->info.image_size, size, sizeof(size));
	/* A job file's name (it stands for its images) and lock. */
	if (ui->job_name != NULL)
		snprintf(left, sizeof(left), " %s%s  %s  sha256 %.12s",
		    ui->job_name, ui->info.locked ? "  LOCKED" : "", size,
		    ui->sha256);
	else
		snprintf(left, sizeof(left), " %s  %s  sha256 %.12s",
		    ui->image_name, size, ui->sha256);
	snprintf(right, sizeof(right), "%s%s ",
	    ui->info.simulate > 0 ? "SIMULATED  " : "",
	    reg_get_auto(reg) ? "AUTO" : "manual");
	snprintf(line, sizeof(line), "%s|%s", left, right);
	if (ui->full || strcmp(line, ui->drawn_head[0]) != 0) {
		ui_draw_text(ui, 0, 0, w, A_REVERSE, left);
		ui_draw_text_right(ui, 0, ui_draw_width(ui, left),
		    w - ui_draw_width(ui, left), A_REVERSE | A_BOLD, right);
		snprintf(ui->drawn_head[0], sizeof(ui->drawn_head[0]), "%s",
		    line);
	}

	reg_get_counts(reg, &rc);
	snprintf(left, sizeof(left), " %u port%s  %u active  %u done  "
	    "%u failed", rc.present, rc.present == 1 ? "" : "s", rc.active,
	    rc.done, rc.failed);
	if (rc.waiting > 0)
		snprintf(left + strlen(left), sizeof(left) - strlen(left),
		    "  %u waiting", rc.waiting);
	if (rc.gone > 0)
		snprintf(left + strlen(left), sizeof(left) - strlen(left),
		    "  %u gone", rc.gone);
	/* Once finished units have been unplugged, the day's tally. */
	if (rc.jobs_done + rc.jobs_failed > rc.done + rc.failed)
		snprintf(left + strlen(left), sizeof(left) - strlen(left),
		    "  session %u ok %u failed", rc.jobs_done,
		    rc.jobs_failed);
	snprintf(right, sizeof(right), "%s ", ui->mode != NULL ? ui->mode :
	    "");
	snprintf(line, sizeof(line), "%s|%s", left, right);
	if (ui->full || strcmp(line, ui->drawn_head[1]) != 0) {
		ui_draw_text(ui, 1, 0, ui_draw_width(ui, left), A_BOLD, left);
		ui_draw_text_right(ui, 1, ui_draw_width(ui, left),
		    w - ui_draw_width(ui, left), A_NORMAL, right);
		snprintf(ui->drawn_head[1], sizeof(ui->drawn_head[1]), "%s",
		    line);
	}
	ui->any_active = rc.active > 0;
}

/* The column headings (drawn with the body). */
static void
ui_draw_headings(struct ui *ui)
{
	const struct ui_cols	*c = &ui->c;
	attr_t			 a = A_UNDERLINE | A_BOLD;
	int			 x = 0;

	ui_draw_text(ui, 2, x, c->slot + 1, a, "SLOT");
	x += c->slot + 1;
	if (c->loc > 0) {
		ui_draw_text(ui, 2, x, c->loc + 1, a, "LOCATION");
		x += c->loc + 1;
	}
	ui_draw_text(ui, 2, x, c->dev + 1, a, "DEVICE");
	x += c->dev + 1;
	ui_draw_text(ui, 2, x, c->chip + 1, a, "CHIP");
	x += c->chip + 1;
	ui_draw_text(ui, 2, x, c->mac + 1, a, "MAC");
	x += c->mac + 1;
	ui_draw_text(ui, 2, x, c->state + 1, a, "STATE");
	x += c->state + 1;
	ui_draw_text(ui, 2, x, c->prog + 1, a, "PROGRESS");
	x += c->prog + 1;
	ui_draw_text(ui, 2, x, c->rate + 1, a, "RATE");
	x += c->rate + 1;
	ui_draw_text(ui, 2, x, ui->cols - x, a, "ELAPSED/ETA");
}

/* The table: only lines whose row, generation, clock or marks changed. */
static void
ui_draw_table(struct ui *ui, const struct reg *reg, uint64_t now)
{
	struct reg_snapshot	 s;
	struct ui_line		*lc;
	struct ui_slow		*sl;
	uint64_t		 clock;
	int			 nrows = reg_count(reg), h, i, row, flags;

	if (ui->full)
		ui_draw_headings(ui);
	h = ui_body_lines(ui);
	ui_sel_grow(ui, nrows);
	ui_clamp(ui, nrows);
	for (i = 0; i < h && i < ui->nlc; i++) {
		lc = &ui->lc[i];
		row = ui->top + i;
		if (row >= nrows) {
			if (!ui->full && lc->row == -1)
				continue;
			lc->row = -1;
			if (nrows == 0 && i == 0)
				ui_draw_text(ui, UI_HEAD_LINES, 0, ui->cols, A_DIM,
				    ui->info.simulate > 0 ? " the simulated "
				    "units are being plugged in..." :
				    " no serial ports yet: plug a unit in");
			else
				ui_draw_text(ui, UI_HEAD_LINES + i, 0, ui->cols,
				    A_NORMAL, "");
			continue;
		}
		flags = (row == ui->cursor ? UI_LF_CURSOR : 0) |
		    (ui->sel[row] ? UI_LF_SEL : 0);
		if (!ui->full && lc->row == row && lc->flags == flags &&
		    lc->gen == reg_row_gen(reg, row) &&
		    !(reg_row_state(reg, row) >= REG_ST_QUEUED &&
		    reg_row_state(reg, row) <= REG_ST_REBOOTING))
			continue;
		reg_snapshot(reg, row, now, &s);
		sl = ui_draw_slow(ui, &s, now);
		clock = (s.elapsed_ms / 1000) << 20 | sl->version;
		if (!ui->full && lc->row == row && lc->flags == flags &&
		    lc->gen == s.gen && lc->clock == clock)
			continue;
		ui_draw_row(ui, UI_HEAD_LINES + i, &s, sl, flags);
		lc->row = row;
		lc->gen = s.gen;
		lc->clock = clock;
		lc->flags = flags;
	}
}

/* The event log, oldest first, following the end unless scrolled. */
static void
ui_draw_log(struct ui *ui, const struct reg *reg)
{
	const char	*text;
	uint64_t	 t;
	char		 buf[UI_TEXT_MAX];
	int		 h = ui_body_lines(ui), n = (int)reg_log_count(reg);
	int		 i, k;

	if (ui->log_follow)
		ui->log_top = MAXIMUM(n - h, 0);
	ui_draw_text(ui, 2, 0, ui->cols, A_UNDERLINE | A_BOLD,
	    "EVENT LOG (j/k scroll, G end, l or q back)");
	for (i = 0; i < h; i++) {
		k = ui->log_top + i;
		if (k < n && (text = reg_log_line(reg, (size_t)k, &t)) !=
		    NULL) {
			t = t > ui->t0 ? t - ui->t0 : 0;
			snprintf(buf, sizeof(buf), "%5llu.%01llu  %s",
			    (unsigned long long)(t / 1000),
			    (unsigned long long)(t % 1000 / 100), text);
		} else
			buf[0] = '\0';
		ui_draw_text(ui, UI_HEAD_LINES + i, 0, ui->cols, A_NORMAL, buf);
	}
	ui->drawn_log_gen = reg_log_gen(reg);
}

/* A "name  value" line of the details panel; long values wrap. */
static void
ui_draw_line(struct ui *ui, int *y, int x, int w, const char *name,
    const char *value)
{
	char		 buf[UI_TEXT_MAX], part[UI_TEXT_MAX];
	const char	*p = value;
	size_t		 n, cut;
	int		 first = 1, avail = w - 14;

	if (avail < 10)
		avail = 10;
	do {
		if (*y >= UI_HEAD_LINES + ui_body_lines(ui) - 1)
			return;
		ui_draw_fit(ui, p, avail, part, sizeof(part));
		n = strlen(part);
		if (p[n] != '\0') {
			/* Break after the last space that fits, if any. */
			for (cut = n; cut > 0 && part[cut - 1] != ' '; cut--)
				;
			if (cut > 0)
				n = cut;
			part[n] = '\0';
		}
		snprintf(buf, sizeof(buf), "%-14s%s", first ? name : "", part);
		ui_draw_text(ui, *y, x, w, A_NORMAL, buf);
		(*y)++;
		first = 0;
		p += n;
	} while (*p != '\0' && n > 0);
}

/* The slot's state, its last job and why it failed, if it did. */
static void
ui_draw_job(struct ui *ui, int *y, int x, int w, const struct reg_snapshot *s,
    const struct ui_detail *d)
{
	char	v[UI_TEXT_MAX], t[32];

	/* A failure's reason gets its own line below. */
	snprintf(v, sizeof(v), "%s%s%s", s->state == REG_ST_FAILED ||
	    s->state == REG_ST_GONE ? s->state_name : s->state_text,
	    d->phase[0] != '\0' ? "; job phase " : "", d->phase);
	ui_draw_line(ui, y, x, w, "State", v);
	if (s->reason[0] != '\0' || d->error[0] != '\0')
		ui_draw_line(ui, y, x, w, "Reason", d->error[0] != '\0' ?
		    d->error : s->reason);
	if (d->boot[0] != '\0')
		ui_draw_line(ui, y, x, w, "After reboot", d->boot);
	if (d->note[0] != '\0')
		ui_draw_line(ui, y, x, w, "Note", d->note);
	if (s->t_started != 0) {
		ui_draw_clock(s->elapsed_ms, t, sizeof(t));
		snprintf(v, sizeof(v), "%s, %llu of %llu bytes, attempt %u", t,
		    (unsigned long long)s->bytes_done,
		    (unsigned long long)s->bytes_total, s->attempts);
		ui_draw_line(ui, y, x, w, "Last job", v);
	}
	if (s->moved_from != 0) {
		snprintf(v, sizeof(v), "slot %d (%s there)", s->moved_from,
		    s->unit_last == REG_ST_EMPTY ? "no result" :
		    reg_state_name(s->unit_last));
		ui_draw_line(ui, y, x, w, "Seen before", v);
	}
}

/* The USB side: device node, path, VID:PID and the device's strings. */
static void
ui_draw_port(struct ui *ui, int *y, int x, int w, const struct reg_snapshot *s,
    const struct port_info *pi)
{
	char	v[UI_TEXT_MAX];

	snprintf(v, sizeof(v), "%s", s->present ? s->devnode : "(unplugged)");
	ui_draw_line(ui, y, x, w, "Device", v);
	if (pi != NULL && pi->usb_path[0] != '\0')
		ui_draw_line(ui, y, x, w, "USB path", pi->usb_path);
	snprintf(v, sizeof(v), "%s (%s)", s->vidpid, s->kind_name);
	ui_draw_line(ui, y, x, w, "USB VID:PID", v);
	if (pi == NULL)
		return;
	snprintf(v, sizeof(v), "%s%s%s", s->product,
	    pi->manufacturer[0] != '\0' ? " by " : "", pi->manufacturer);
	ui_draw_line(ui, y, x, w, "Product", v);
	if (pi->serial[0] != '\0')
		ui_draw_line(ui, y, x, w, "USB serial", pi->serial);
}

/* What the last job read from the chip: revision, flash, security. */
static void
ui_draw_unit(struct ui *ui, int *y, int x, int w,
    const struct reg_snapshot *s, const struct ui_detail *d)
{
	char	v[UI_TEXT_MAX];
	size_t	n;

	snprintf(v, sizeof(v), "%s", s->chip[0] != '\0' ? s->chip :
	    "not known yet (a flash job reads it)");
	n = strlen(v);
	if (d->rev_major >= 0 && n < sizeof(v))
		n += (size_t)snprintf(v + n, sizeof(v) - n, " v%d.%d",
		    d->rev_major, d->rev_minor);
	if (d->crystal_mhz != 0 && n < sizeof(v))
		snprintf(v + n, sizeof(v) - n, ", %u MHz crystal",
		    d->crystal_mhz);
	ui_draw_line(ui, y, x, w, "Chip", v);
	ui_draw_line(ui, y, x, w, "MAC", s->has_mac ? s->mac_text :
	    "not known yet");
	if (d->flash_size != 0)
		ui_draw_size(d->flash_size, v, sizeof(v));
	else
		snprintf(v, sizeof(v), "not known yet");
	n = strlen(v);
	if (d->flash_id != 0 && n < sizeof(v))
		snprintf(v + n, sizeof(v) - n, " (JEDEC id 0x%06x)",
		    d->flash_id);
	ui_draw_line(ui, y, x, w, "Flash", v);
	if (d->security[0] != '\0')
		ui_draw_line(ui, y, x, w, "Security", d->security);
	if (d->how[0] != '\0') {
		snprintf(v, sizeof(v), "the %s (into download mode: %s)",
		    d->stub ? "flasher stub" : "ROM loader", d->how);
		ui_draw_line(ui, y, x, w, "Written by", v);
	}
}

/* Everything known about the cursor row, in a box. */
static void
ui_draw_details(struct ui *ui, const struct reg *reg, uint64_t now)
{
	struct reg_snapshot	 s;
	struct ui_detail	 d;
	char			 v[UI_TEXT_MAX];
	int			 top = UI_HEAD_LINES, h = ui_body_lines(ui);
	int			 x = 2, w = ui->cols - 4, y;

	for (y = top; y < top + h; y++)
		ui_draw_text(ui, y, 0, ui->cols, A_NORMAL, "");
	ui_draw_text(ui, 2, 0, ui->cols, A_UNDERLINE | A_BOLD,
	    "UNIT DETAILS (j/k other slot, i or q back)");
	if (h < 3 || w < 20)
		return;
	mvaddch(top, 0, ACS_ULCORNER);
	mvhline(top, 1, ACS_HLINE, ui->cols - 2);
	mvaddch(top, ui->cols - 1, ACS_URCORNER);
	mvvline(top + 1, 0, ACS_VLINE, h - 2);
	mvvline(top + 1, ui->cols - 1, ACS_VLINE, h - 2);
	mvaddch(top + h - 1, 0, ACS_LLCORNER);
	mvhline(top + h - 1, 1, ACS_HLINE, ui->cols - 2);
	mvaddch(top + h - 1, ui->cols - 1, ACS_LRCORNER);
	y = top + 1;
	if (reg_snapshot(reg, ui->cursor, now, &s) != 0) {
		ui_draw_line(ui, &y, x, w, "", "no unit yet");
		return;
	}
	memset(&d, 0, sizeof(d));
	if (ui->detail_cb != NULL)
		ui->detail_cb(ui->detail_arg, ui->cursor, &d);
	snprintf(v, sizeof(v), "%d", s.slot);
	ui_draw_line(ui, &y, x, w, "Slot", v);
	ui_draw_line(ui, &y, x, w, "Location", s.location);
	/* What the technician needs first, above the fold on 80x24. */
	ui_draw_job(ui, &y, x, w, &s, &d);
	ui_draw_port(ui, &y, x, w, &s, reg_row_port(reg, ui->cursor));
	ui_draw_unit(ui, &y, x, w, &s, &d);
	if (d.sim[0] != '\0')
		ui_draw_line(ui, &y, x, w, "Simulated", d.sim);
}

/* The key list. */
static void
ui_draw_help(struct ui *ui)
{
	static const char *const lines[] = {
		"up/down, j/k   move between slots (PgUp/PgDn, g/G)",
		"space          select or unselect the slot, then move down",
		"a              select all slots (again: none); Esc: none",
		"f              flash the selected slots, or the slot under "
		    "the cursor",
		"A              arm or disarm auto-flash: every unit that "
		    "enters download mode is flashed at once",
		"c              cancel the selected slots' jobs",
		"r              retry failed slots (the selected ones, or "
		    "all)",
		"i              details of the slot under the cursor",
		"l              the event log",
		"b              simulated units only: hold BOOT and press RST",
		"q              quit (asks first while jobs run)",
		"^L             repaint the screen",
		"",
		"Rates are KiB/s; ELAPSED/ETA is m:ss since the job was "
		    "queued / left.",
		"On a real ESP32-S2 in app mode: hold BOOT, press and release "
		    "RST, release BOOT.",
		"",
		"Press any key to go back.",
	};
	int	h = ui_body_lines(ui), i;

	ui_draw_text(ui, 2, 0, ui->cols, A_UNDERLINE | A_BOLD, "KEYS");
	for (i = 0; i < h; i++)
		ui_draw_text(ui, UI_HEAD_LINES + i, 0, ui->cols, A_NORMAL,
		    (size_t)i < nitems(lines) ? lines[i] : "");
}

/* The message line and the key line. */
static void
ui_draw_foot(struct ui *ui, uint64_t now)
{
	/* In order of importance: what does not fit is left out. */
	static const char *const items[] = {
		"f flash", "A auto", "c cancel", "r retry", "i info", "l log",
		"b boot", "SPC select", "a all", NULL
	};
	static const char	 tail[] = " ? help  q quit";
	char			 line[UI_KEY_MAX];
	const char		*msg = "";
	attr_t			 a = A_NORMAL;
	size_t			 i, len;

	if (ui->msg[0] != '\0' && (ui->msg_warn || ui->asking ||
	    now - ui->msg_t < UI_MSG_MS))
		msg = ui->msg;
	if (ui->asking)
		a = A_REVERSE | A_BOLD;
	else if (ui->msg_warn)
		a = ui->color ? COLOR_PAIR(UI_PAIR_WARN) | A_BOLD : A_BOLD;
	snprintf(line, sizeof(line), "%d %s", (int)a, msg);
	if (ui->full || strcmp(line, ui->drawn_foot[0]) != 0) {
		ui_draw_text(ui, ui->lines - 2, 0, ui->cols, a, msg);
		snprintf(ui->drawn_foot[0], sizeof(ui->drawn_foot[0]), "%s",
		    line);
	}

	if (ui->asking)
		snprintf(line, sizeof(line), " y quit and cancel the jobs   "
		    "n keep going");
	else if (ui->view != UI_VIEW_TABLE)
		snprintf(line, sizeof(line), " q back   ? help");
	else {
		line[0] = '\0';
		for (i = 0; items[i] != NULL; i++) {
			if (strcmp(items[i], "b boot") == 0 &&
			    ui->info.simulate == 0)
				continue;
			len = strlen(line) + strlen(items[i]) + 2;
			if ((int)(len + sizeof(tail) - 1) > ui->cols)
				continue;
			snprintf(line + strlen(line), sizeof(line) -
			    strlen(line), " %s ", items[i]);
		}
		snprintf(line + strlen(line), sizeof(line) - strlen(line),
		    "%s", tail);
	}
	if (ui->full || strcmp(line, ui->drawn_foot[1]) != 0) {
		ui_draw_text(ui, ui->lines - 1, 0, ui->cols, A_REVERSE, line);
		snprintf(ui->drawn_foot[1], sizeof(ui->drawn_foot[1]), "%s",
		    line);
	}
}

/* Report watched rows that are on screen now. */
static void
ui_draw_watches(struct ui *ui)
{
	struct ui_line	*lc;
	size_t		 i = 0;
	int		 k;

	while (i < ui->nwatch) {
		k = ui->watch[i].row - ui->top;
		lc = k >= 0 && k < ui->nlc ? &ui->lc[k] : NULL;
		if (ui->view == UI_VIEW_TABLE && lc != NULL &&
		    lc->row == ui->watch[i].row &&
		    lc->gen >= ui->watch[i].gen) {
			if (ui->trace_cb != NULL)
				ui->trace_cb(ui->trace_arg, "shown",
				    ui->watch[i].row);
			ui->watch[i] = ui->watch[--ui->nwatch];
			continue;
		}
		i++;
	}
}

/* When to draw next. */
uint64_t
ui_due(struct ui *ui, const struct reg *reg, uint64_t now)
{
	uint64_t	due = UINT64_MAX;

	if (!ui->started)
		return (UINT64_MAX);
	if (ui->urgent || ui->full)
		return (now);
	if (ui->dirty || reg_gen(reg) != ui->drawn_gen ||
	    (ui->view == UI_VIEW_LOG && reg_log_gen(reg) !=
	    ui->drawn_log_gen))
		due = ui->last_frame + UI_FRAME_MS;
	else if (ui->any_active)
		due = ui->last_frame + UI_TICK_MS;
	if (ui->msg[0] != '\0' && !ui->msg_warn && !ui->asking &&
	    ui->msg_t + UI_MSG_MS > ui->last_frame)
		due = MINIMUM(due, ui->msg_t + UI_MSG_MS);
	return (due);
}

/* Draw a frame and send it. */
void
ui_draw(struct ui *ui, const struct reg *reg, uint64_t now)
{
	if (!ui->started)
		return;
	if (ui->trace_cb != NULL)
		ui->trace_cb(ui->trace_arg, "begin", (int)ui->frames + 1);
	if (ui->resized) {
		erase();
		ui->resized = 0;
	}
	if (ui->cols < UI_MIN_COLS || ui->lines < UI_MIN_LINES) {
		if (ui->full)
			erase();
		mvaddnstr(0, 0, "espfleet: the terminal is too small",
		    ui->cols);
		ui->full = 0;
	} else {
		ui_draw_head(ui, reg);
		switch (ui->view) {
		case UI_VIEW_LOG:
			ui_draw_log(ui, reg);
			break;
		case UI_VIEW_DETAILS:
			ui_draw_details(ui, reg, now);
			break;
		case UI_VIEW_HELP:
			if (ui->full)
				ui_draw_help(ui);
			break;
		default:
			ui_draw_table(ui, reg, now);
			break;
		}
		ui_draw_foot(ui, now);
		ui->full = 0;
	}
	wnoutrefresh(stdscr);
	doupdate();
	ui->frames++;
	ui->last_frame = now;
	ui->dirty = ui->urgent = 0;
	ui->drawn_gen = reg_gen(reg);
	if (ui->trace_cb != NULL)
		ui->trace_cb(ui->trace_arg, "frame", (int)ui->frames);
	ui_draw_watches(ui);
}
