/*
 * "espfleet flash": check the image set and every port, then write all
 * ports in parallel through job.c and report progress as text lines (not
 * a terminal), a live view of one line per port (a terminal) or JSON Lines
 * (--json).  The main thread only polls the jobs' wake eventfd and the
 * signal self-pipe; workers never print.
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "chip.h"
#include "backup.h"
#include "flash.h"
#include "flog.h"
#include "image.h"
#include "job.h"
#include "sigwake.h"
#include "transport.h"
#include "util.h"

#define FLASH_LINE_MS	500	/* progress lines: <= 2/s per port */
#define FLASH_DRAW_MS	100	/* live view: at most 10 redraws/s */
#define FLASH_EXIT_USAGE 2
#define FLASH_EXIT_INTR	130

/*
 * The signal handler's only state: a flag and the write end of the
 * self-pipe the poll loop watches.
 */

struct flash_port {
	char		*path;		/* as given */
	char		*name;		/* short and sanitized, for output */
	struct job	*job;
	int		 started;
	char		*start_error;	/* the worker could not start */
	unsigned	 last_gen;	/* snapshot gen last reported */
	uint64_t	 last_bytes;
	uint64_t	 last_line;	/* ms of the last progress line */
	int		 told_identity;
	int		 told_end;
	int		 recorded;	/* its unit record is written */
	struct xport	 xp;		/* opened and locked up front */
	int		 xp_open;	/* xp not yet taken by the job */
};

struct flash_ctx {
	struct flash_port	*ports;
	size_t			 nports;
	struct flog		*flog;		/* unit records; NULL: --no-log */
	size_t			 name_width;
	struct image_set	*set;
	unsigned		 jobs;
	int			 json;
	int			 live;		/* stdout is a terminal */
	int			 wake_fd;
	int			 interrupted;
	int			 rows_drawn;
	uint64_t		 last_draw;
	int			 dirty;
};

static const struct option flash_options[] = {
	{ "after", required_argument, NULL, 'a' },
	{ "baud", required_argument, NULL, 'b' },
	{ "before", required_argument, NULL, 'B' },
	{ "boot-wait", required_argument, NULL, 'w' },
	{ "chip", required_argument, NULL, 'c' },
	{ "force", no_argument, NULL, 'f' },
	{ "help", no_argument, NULL, 'h' },
	{ "jobs", required_argument, NULL, 'j' },
	{ "json", no_argument, NULL, 'J' },
	{ "log", required_argument, NULL, 'L' },
	{ "no-backup", no_argument, NULL, 'K' },
	{ "no-log", no_argument, NULL, 'N' },
	{ "port", required_argument, NULL, 'p' },
	{ "repeat", required_argument, NULL, 'R' },
	{ "retries", required_argument, NULL, 'r' },
	{ "stub", required_argument, NULL, 'S' },
	{ NULL, 0, NULL, 0 }
};

/* Print the synopsis of the flash command. */
static void
flash_usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet flash --port PATH [--port PATH]... [--jobs N] "
	    "[--baud RATE]\n"
	    "                      [--before default-reset|no-reset] "
	    "[--after reboot|stay]\n"
	    "                      [--boot-wait SECONDS] [--stub FILE] [--json] "
	    "[--force]\n"
	    "                      [--chip CHIP (default esp32s2)] "
	    "[--repeat N] [--retries N]\n"
	    "                      [--log PATH | --no-log] [--no-backup] "
	    "(IMAGE | OFFSET FILE...)\n");
}

/* Report bad usage or input: text on stderr, plus an event with --json. */
static void printflike(2, 3)
flash_bad(int json, const char *fmt, ...)
{
	struct json_object	*o;
	va_list			 ap;
	char			*msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	fprintf(stderr, "espfleet flash: %s\n", msg);
	if (json) {
		o = json_object_new_object();
		json_object_object_add(o, "event",
		    json_object_new_string("error"));
		json_object_object_add(o, "message",
		    json_object_new_string(msg));
		printf("%s\n", json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		fflush(stdout);
	}
	free(msg);
}

/* ============================ validation ============================== */

/*
 * Check every port before any is opened: each must exist as a character
 * device, and none may be given twice.  Prints every problem.
 */
static int
flash_check_ports(char **paths, size_t n, int json)
{
	struct stat	*st;
	char		*cause;
	size_t		 i, k;
	int		 bad = 0;

	st = xcalloc(n, sizeof(*st));
	for (i = 0; i < n; i++) {
		cause = NULL;
		if (xport_check(paths[i], &cause) != 0 ||
		    stat(paths[i], &st[i]) != 0) {
			flash_bad(json, "%s", cause != NULL ? cause :
			    strerror(errno));
			free(cause);
			bad = 1;
			continue;
		}
		for (k = 0; k < i; k++) {
			if (S_ISCHR(st[k].st_mode) &&
			    st[k].st_rdev == st[i].st_rdev) {
				flash_bad(json, "%s and %s are the same port; "
				    "give each unit once", paths[k], paths[i]);
				bad = 1;
				break;
			}
		}
	}
	free(st);
	return (bad ? -EINVAL : 0);
}

/* Before a --repeat round: forget the last round's jobs and reports. */
static void
flash_round_reset(struct flash_ctx *ctx)
{
	struct flash_port	*fp;
	size_t			 i;

	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		job_free(fp->job);
		fp->job = NULL;
		free(fp->start_error);
		fp->start_error = NULL;
		fp->started = fp->told_identity = fp->told_end = 0;
		fp->recorded = 0;
		fp->last_gen = (unsigned)-1;
		fp->last_bytes = fp->last_line = 0;
	}
	ctx->rows_drawn = 0;
	ctx->dirty = 1;
}

/*
 * Open and lock every port before any job starts, so that a port in use
 * or out of reach is bad input and no unit is written.  -EINVAL after
 * naming each port that failed.
 */
static int
flash_open_ports(struct flash_ctx *ctx, int json)
{
	struct flash_port	*fp;
	char			*cause;
	size_t			 i;
	int			 bad = 0;

	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		cause = NULL;
		xport_init(&fp->xp, -1);
		if (xport_open(&fp->xp, fp->path, &cause) != 0) {
			flash_bad(json, "%s", cause != NULL ? cause :
			    "cannot open");
			free(cause);
			bad = 1;
			continue;
		}
		fp->xp_open = 1;
	}
	return (bad ? -EINVAL : 0);
}

/*
 * job_params.open_cb, with the job's own port entry as its argument (so a
 * worker touches no other entry): the first open takes the transport
 * opened up front; later opens, after a re-enumeration, open the path.
 */
static int
flash_open_cb(void *arg, struct xport *xp, const char *port, char **cause)
{
	struct flash_port	*fp = arg;
	int			 cancel_fd = xp->cancel_fd;

	if (fp->xp_open && strcmp(fp->path, port) == 0) {
		*xp = fp->xp;
		xp->cancel_fd = cancel_fd;
		fp->xp_open = 0;
		return (0);
	}
	return (xport_open(xp, port, cause));
}

/*
 * The chip an image set is built for, from the ESP image headers it
 * carries (the bootloader where a chip's ROM reads it, else any region
 * that starts with an image); NULL if it does not say.
 */
static const struct chip_info *
flash_guess_chip(const struct image_set *set,
    const struct image_region **where)
{
	const struct chip_info	*c;
	struct image_header	*h;
	const uint8_t		*p;
	size_t			 avail, i;
	int			 id;

	h = xmalloc(sizeof(*h));
	for (id = CHIP_UNKNOWN + 1; id < CHIP__MAX; id++) {
		c = chip_by_id((enum chip_id)id);
		if (c == NULL || !c->full_support || c->image_chip_id < 0)
			continue;
		p = image_at(set, c->bootloader_offset, &avail, where);
		if (p != NULL && image_parse_header(p, avail, h) == 0 &&
		    h->chip_id == c->image_chip_id)
			goto found;
	}
	for (i = 0; i < set->nregions; i++) {
		if (image_parse_header(set->regions[i].data,
		    set->regions[i].len, h) != 0)
			continue;
		*where = &set->regions[i];
		if ((c = chip_by_image_id(h->chip_id)) != NULL)
			goto found;
	}
	c = NULL;
found:
	free(h);
	return (c);
}

/* Short display names: the base name, or the path when two clash. */
static void
flash_names(struct flash_ctx *ctx)
{
	const char	*base;
	char		 buf[PATH_MAX * 4 + 1];
	size_t		 i, k, len;
	int		 clash;

	for (i = 0; i < ctx->nports; i++) {
		base = strrchr(ctx->ports[i].path, '/');
		base = base != NULL && base[1] != '\0' ? base + 1 :
		    ctx->ports[i].path;
		clash = 0;
		for (k = 0; k < ctx->nports; k++) {
			const char *other = strrchr(ctx->ports[k].path, '/');

			other = other != NULL && other[1] != '\0' ? other + 1 :
			    ctx->ports[k].path;
			if (k != i && strcmp(base, other) == 0)
				clash = 1;
		}
		if (clash)
			base = ctx->ports[i].path;
		util_sanitize(buf, sizeof(buf), base, strlen(base));
		ctx->ports[i].name = xstrdup(buf);
		len = strlen(buf);
		if (len > ctx->name_width)
			ctx->name_width = len;
	}
}

/* ============================== output ================================ */

/* Percent of the job's bytes written. */
static int
flash_percent(const struct job_progress *p)
{
	if (p->bytes_total == 0)
		return (0);
	return ((int)(p->bytes_done * 100 / p->bytes_total));
}

/* Where a cancelled job stopped, in words. */
static void
flash_cancel_text(const struct job_progress *p, char *buf, size_t cap)
{
	switch (p->phase) {
	case JOB_PH_WAITING:
		snprintf(buf, cap, "cancelled before it started");
		break;
	case JOB_PH_ERASING:
	case JOB_PH_WRITING:
	case JOB_PH_VERIFYING:
		snprintf(buf, cap, "cancelled while %s at 0x%x (%d %%)",
		    job_phase_name(p->phase), p->addr, flash_percent(p));
		break;
	default:
		snprintf(buf, cap, "cancelled while %s",
		    job_phase_name(p->phase));
		break;
	}
}

/* One line of text for the state of a job. */
static void
flash_describe(const struct job_progress *p, char *buf, size_t cap)
{
	switch (p->state) {
	case JOB_ST_QUEUED:
		snprintf(buf, cap, "queued");
		return;
	case JOB_ST_VERIFIED:
		snprintf(buf, cap, "verified");
		return;
	case JOB_ST_FAILED:
		snprintf(buf, cap, "failed: %s", p->errmsg);
		return;
	case JOB_ST_CANCELLED:
		flash_cancel_text(p, buf, cap);
		return;
	default:
		break;
	}
	switch (p->phase) {
	case JOB_PH_ERASING:
		snprintf(buf, cap, "erasing at 0x%x (region %u/%u)", p->addr,
		    p->region + 1, p->nregions);
		break;
	case JOB_PH_WRITING:
		snprintf(buf, cap, "writing %3d %% %llu/%llu bytes at 0x%x, "
		    "%.1f KiB/s", flash_percent(p),
		    (unsigned long long)p->bytes_done,
		    (unsigned long long)p->bytes_total, p->addr,
		    p->rate / 1024.0);
		break;
	case JOB_PH_VERIFYING:
		snprintf(buf, cap, "verifying region %u/%u", p->region + 1,
		    p->nregions);
		break;
	default:
		snprintf(buf, cap, "%s", job_phase_name(p->phase));
		break;
	}
}

/* "ESP32-S2FNR2, MAC 7c:df:a1:00:11:22, USB-OTG, 4 MB flash". */
static void
flash_identity(const struct job_progress *p, char *buf, size_t cap)
{
	char	mac[18] = "";

	if (p->have_mac)
		chip_mac_format(p->mac, mac, sizeof(mac));
	snprintf(buf, cap, "%s%s%s%s", p->chip, p->have_mac ? ", MAC " : "",
	    mac, p->usb_otg ? ", USB-OTG" : "");
}

/* Write one JSON Lines event and free it. */
static void
flash_json_emit(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* A JSON event about a port, with the fields every event shares. */
static struct json_object *
flash_json_event(const char *event, const struct flash_port *fp,
    const struct job_progress *p)
{
	struct json_object	*o;

	o = json_object_new_object();
	json_object_object_add(o, "event", json_object_new_string(event));
	json_object_object_add(o, "port", json_object_new_string(fp->path));
	json_object_object_add(o, "state",
	    json_object_new_string(job_state_name(p->state)));
	json_object_object_add(o, "phase",
	    json_object_new_string(job_phase_name(p->phase)));
	json_object_object_add(o, "bytes_done",
	    json_object_new_int64((int64_t)p->bytes_done));
	json_object_object_add(o, "bytes_total",
	    json_object_new_int64((int64_t)p->bytes_total));
	json_object_object_add(o, "percent",
	    json_object_new_int(flash_percent(p)));
	json_object_object_add(o, "addr", json_object_new_int64(p->addr));
	json_object_object_add(o, "rate",
	    json_object_new_int64((int64_t)p->rate));
	return (o);
}

/* The JSON result event of a finished port. */
static void
flash_json_result(const struct flash_port *fp, const struct job_progress *p)
{
	struct json_object	*o;
	char			 mac[18], text[400];

	o = flash_json_event("result", fp, p);
	json_object_object_add(o, "status",
	    json_object_new_string(job_state_name(p->state)));
	if (p->state == JOB_ST_CANCELLED) {
		flash_cancel_text(p, text, sizeof(text));
		json_object_object_add(o, "reason",
		    json_object_new_string(text));
	} else if (p->state != JOB_ST_VERIFIED || fp->start_error != NULL)
		json_object_object_add(o, "reason", json_object_new_string(
		    fp->start_error != NULL ? fp->start_error : p->errmsg));
	if (p->chip[0] != '\0')
		json_object_object_add(o, "chip",
		    json_object_new_string(p->chip));
	if (p->have_mac) {
		chip_mac_format(p->mac, mac, sizeof(mac));
		json_object_object_add(o, "mac", json_object_new_string(mac));
	}
	json_object_object_add(o, "usb_otg",
	    json_object_new_boolean(p->usb_otg));
	if (p->flash_size != 0)
		json_object_object_add(o, "flash_size",
		    json_object_new_int64(p->flash_size));
	if (p->rev_major >= 0) {
		snprintf(text, sizeof(text), "v%d.%d", p->rev_major,
		    p->rev_minor);
		json_object_object_add(o, "revision",
		    json_object_new_string(text));
	}
	if (p->flash_id != 0) {
		snprintf(text, sizeof(text), "0x%06x", p->flash_id);
		json_object_object_add(o, "flash_id",
		    json_object_new_string(text));
	}
	if (p->crystal_mhz != 0)
		json_object_object_add(o, "crystal_mhz",
		    json_object_new_int((int)p->crystal_mhz));
	if (p->sec.valid) {
		json_object_object_add(o, "security_flags",
		    json_object_new_int64(p->sec.flags));
		json_object_object_add(o, "security",
		    json_object_new_string(p->security));
	}
	if (p->chip[0] != '\0')
		json_object_object_add(o, "loader",
		    json_object_new_string(p->stub ? "stub" : "rom"));
	if (p->how[0] != '\0')
		json_object_object_add(o, "download_mode",
		    json_object_new_string(p->how));
	if (p->need_manual)
		json_object_object_add(o, "needs_boot_button",
		    json_object_new_boolean(1));
	if (p->note[0] != '\0')
		json_object_object_add(o, "note",
		    json_object_new_string(p->note));
	if (p->boot_result != LOADER_BOOT_NONE) {
		json_object_object_add(o, "boot_check",
		    json_object_new_string(loader_boot_name(p->boot_result)));
		json_object_object_add(o, "boot",
		    json_object_new_string(p->boot));
	}
	if (p->t_start != 0 && p->t_end >= p->t_start)
		json_object_object_add(o, "seconds", json_object_new_double(
		    (double)(p->t_end - p->t_start) / 1000.0));
	flash_json_emit(o);
}

/* Text mode: the lines one port's new snapshot deserves. */
static void
flash_lines(struct flash_port *fp, const struct job_progress *p,
    uint64_t now, int changed)
{
	char	text[512];

	if (!fp->told_identity && p->chip[0] != '\0') {
		fp->told_identity = 1;
		flash_identity(p, text, sizeof(text));
		printf("%s: %s\n", fp->name, text);
	}
	if (!changed && now - fp->last_line < FLASH_LINE_MS)
		return;
	if (!changed && p->bytes_done == fp->last_bytes)
		return;
	flash_describe(p, text, sizeof(text));
	printf("%s: %s\n", fp->name, text);
	if (p->note[0] != '\0' && p->state == JOB_ST_VERIFIED)
		printf("%s: note: %s\n", fp->name, p->note);
	fp->last_line = now;
	fp->last_bytes = p->bytes_done;
}

/* JSON mode: the events one port's new snapshot deserves. */
static void
flash_events(struct flash_port *fp, const struct job_progress *p,
    uint64_t now, int changed)
{
	struct json_object	*o;
	char			 mac[18];

	if (!fp->told_identity && p->chip[0] != '\0') {
		fp->told_identity = 1;
		o = flash_json_event("identified", fp, p);
		json_object_object_add(o, "chip",
		    json_object_new_string(p->chip));
		if (p->have_mac) {
			chip_mac_format(p->mac, mac, sizeof(mac));
			json_object_object_add(o, "mac",
			    json_object_new_string(mac));
		}
		json_object_object_add(o, "usb_otg",
		    json_object_new_boolean(p->usb_otg));
		flash_json_emit(o);
	}
	if (p->state == JOB_ST_VERIFIED || p->state == JOB_ST_FAILED ||
	    p->state == JOB_ST_CANCELLED) {
		if (!fp->told_end)
			flash_json_result(fp, p);
		fp->told_end = 1;
		return;
	}
	if (!changed && (now - fp->last_line < FLASH_LINE_MS ||
	    p->bytes_done == fp->last_bytes))
		return;
	flash_json_emit(flash_json_event(changed ? "phase" : "progress", fp,
	    p));
	fp->last_line = now;
	fp->last_bytes = p->bytes_done;
}

/* Terminal width for the live view. */
static size_t
flash_columns(void)
{
	struct winsize	ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
		return (ws.ws_col);
	return (80);
}

/*
 * Live view: rewrite one row per port in place (cursor up, then each row
 * cleared and redrawn), in a single write so it does not flicker.
 */
static void
flash_draw(struct flash_ctx *ctx)
{
	struct job_progress	 p;
	char			*buf, text[512], row[1024];
	size_t			 i, cap, len = 0, cols;
	int			 n;

	cols = flash_columns();
	cap = ctx->nports * (sizeof(row) + 16) + 32;
	buf = xmalloc(cap);
	if (ctx->rows_drawn > 0)
		len += (size_t)snprintf(buf + len, cap - len, "\033[%dA",
		    ctx->rows_drawn);
	for (i = 0; i < ctx->nports; i++) {
		job_get(ctx->ports[i].job, &p);
		flash_describe(&p, text, sizeof(text));
		n = snprintf(row, sizeof(row), "%-*s %s%s%s",
		    (int)ctx->name_width, ctx->ports[i].name, text,
		    p.chip[0] != '\0' && p.state == JOB_ST_RUNNING ? "  " : "",
		    p.state == JOB_ST_RUNNING ? p.chip : "");
		if (n > 0 && (size_t)n >= cols)
			row[cols - 1] = '\0';
		len += (size_t)snprintf(buf + len, cap - len, "\r\033[K%s\n",
		    row);
	}
	(void)fwrite(buf, 1, len, stdout);
	fflush(stdout);
	free(buf);
	ctx->rows_drawn = (int)ctx->nports;
	ctx->last_draw = util_now_ms();
	ctx->dirty = 0;
}

/* Look at every job's snapshot and report what changed. */
static void
flash_report(struct flash_ctx *ctx, int final)
{
	struct flash_port	*fp;
	struct job_progress	 p;
	uint64_t		 now;
	size_t			 i;
	int			 changed;

	now = util_now_ms();
	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		job_get(fp->job, &p);
		changed = p.gen != fp->last_gen;
		if (changed || p.bytes_done != fp->last_bytes)
			ctx->dirty = 1;
		if (ctx->json)
			flash_events(fp, &p, now, changed);
		else if (!ctx->live)
			flash_lines(fp, &p, now, changed);
		else if (changed)
			fp->last_bytes = p.bytes_done;
		fp->last_gen = p.gen;
	}
	if (ctx->live && ctx->dirty &&
	    (final || now - ctx->last_draw >= FLASH_DRAW_MS))
		flash_draw(ctx);
	fflush(stdout);
}

/* ============================== running =============================== */

/* Start queued jobs while fewer than --jobs are running. */
static void
flash_schedule(struct flash_ctx *ctx)
{
	struct flash_port	*fp;
	size_t			 i, running = 0;
	char			*cause;

	if (ctx->interrupted)
		return;
	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		if (fp->started && !job_done(fp->job))
			running++;
	}
	for (i = 0; i < ctx->nports && running < ctx->jobs; i++) {
		fp = &ctx->ports[i];
		if (fp->started || fp->start_error != NULL)
			continue;
		cause = NULL;
		if (job_start(fp->job, &cause) != 0) {
			fp->start_error = cause != NULL ? cause :
			    xstrdup("cannot start a worker");
			job_cancel(fp->job);
			continue;
		}
		fp->started = 1;
		running++;
	}
}

/*
 * Append the unit record (flog.h) of every port whose job ended and has
 * none yet.  Failing to record is said but does not fail the units.
 */
static void
flash_record(struct flash_ctx *ctx)
{
	struct flash_port	*fp;
	struct flog_unit	*u;
	struct job_progress	 p;
	char			*cause;
	size_t			 i;

	if (ctx->flog == NULL)
		return;
	u = xmalloc(sizeof(*u));
	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		if (fp->recorded || !job_done(fp->job))
			continue;
		fp->recorded = 1;
		job_get(fp->job, &p);
		flog_unit_from_job(u, fp->path, &p, ctx->set,
		    ctx->interrupted);
		if (fp->start_error != NULL) {
			u->result = FLOG_FAILED;
			snprintf(u->reason, sizeof(u->reason), "%s",
			    fp->start_error);
		}
		cause = NULL;
		if (flog_append_job(ctx->flog, u, &cause) != 0) {
			flash_bad(ctx->json, "%s", cause);
			free(cause);
		}
	}
	free(u);
}

/* Have all jobs ended? */
static int
flash_all_done(struct flash_ctx *ctx)
{
	size_t	i;

	for (i = 0; i < ctx->nports; i++) {
		if (!job_done(ctx->ports[i].job))
			return (0);
	}
	return (1);
}

/* Ctrl-C or SIGTERM: cancel every job, running or queued. */
static void
flash_interrupt(struct flash_ctx *ctx)
{
	size_t	i;

	if (ctx->interrupted)
		return;
	ctx->interrupted = 1;
	for (i = 0; i < ctx->nports; i++)
		job_cancel(ctx->ports[i].job);
}

/* Poll the wake eventfd and the signal pipe until every job has ended. */
static int
flash_loop(struct flash_ctx *ctx)
{
	struct pollfd	pfd[2];
	int		timeout;

	for (;;) {
		flash_schedule(ctx);
		flash_report(ctx, 0);
		flash_record(ctx);
		if (flash_all_done(ctx))
			break;
		pfd[0].fd = ctx->wake_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = sigwake_fd();
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		/* Wake in time for throttled lines and redraws. */
		timeout = ctx->live ? FLASH_DRAW_MS : FLASH_LINE_MS;
		if (poll(pfd, 2, timeout) == -1 && errno != EINTR)
			return (-errno);
		if ((pfd[1].revents & POLLIN) && sigwake_drain() != 0)
			flash_interrupt(ctx);
		if (sigwake_caught())
			flash_interrupt(ctx);
		if (pfd[0].revents & POLLIN)
			job_wake_drain(ctx->wake_fd);
	}
	flash_report(ctx, 1);
	return (0);
}

/* The final word per port, the totals, and the exit status. */
static int
flash_summary(struct flash_ctx *ctx)
{
	struct flash_port	*fp;
	struct job_progress	 p;
	struct json_object	*o;
	char			 text[512], id[128];
	size_t			 i, verified = 0, failed = 0;
	size_t			 cancelled = 0, bootfail = 0;
	int			 status;

	if (!ctx->json)
		printf("\n");
	for (i = 0; i < ctx->nports; i++) {
		fp = &ctx->ports[i];
		job_get(fp->job, &p);
		if (p.boot_result == LOADER_BOOT_FAILED)
			bootfail++;
		if (p.state == JOB_ST_VERIFIED)
			verified++;
		else if (p.state == JOB_ST_CANCELLED && fp->start_error == NULL)
			cancelled++;
		else
			failed++;
		if (ctx->json) {
			if (!fp->told_end)
				flash_json_result(fp, &p);
			fp->told_end = 1;
			continue;
		}
		if (fp->start_error != NULL)
			snprintf(text, sizeof(text), "failed: %s",
			    fp->start_error);
		else
			flash_describe(&p, text, sizeof(text));
		if (p.state == JOB_ST_VERIFIED) {
			flash_identity(&p, id, sizeof(id));
			printf("%s: verified (%s; %llu bytes in %.1f s)\n",
			    fp->name, id, (unsigned long long)p.bytes_total,
			    (double)(p.t_end - p.t_start) / 1000.0);
			if (p.boot[0] != '\0')
				printf("%s: %s\n", fp->name, p.boot);
			if (p.note[0] != '\0')
				printf("%s: note: %s\n", fp->name, p.note);
		} else
			printf("%s: %s\n", fp->name, text);
	}
	if (ctx->interrupted)
		status = sigwake_caught() > 0 ? 128 + sigwake_caught() :
		    FLASH_EXIT_INTR;	/* the shell's 128 + signal number */
	else
		status = verified == ctx->nports && bootfail == 0 ? 0 : 1;
	if (ctx->json) {
		o = json_object_new_object();
		json_object_object_add(o, "event",
		    json_object_new_string("summary"));
		json_object_object_add(o, "verified",
		    json_object_new_int((int)verified));
		json_object_object_add(o, "failed",
		    json_object_new_int((int)failed));
		json_object_object_add(o, "cancelled",
		    json_object_new_int((int)cancelled));
		json_object_object_add(o, "exit", json_object_new_int(status));
		flash_json_emit(o);
	} else if (cancelled > 0)
		printf("%zu verified, %zu failed, %zu cancelled\n", verified,
		    failed, cancelled);
	else
		printf("%zu verified, %zu failed\n", verified, failed);
	fflush(stdout);
	return (status);
}

/* The what-will-happen line before the jobs start (text modes). */
static void
flash_announce(struct flash_ctx *ctx)
{
	const struct image_region	*r;
	size_t				 i;

	if (ctx->json)
		return;
	for (i = 0; i < ctx->set->nregions; i++) {
		r = &ctx->set->regions[i];
		printf("0x%06x %s: %zu bytes (%zu compressed), md5 %s\n",
		    r->offset, r->name, r->len, r->zlen, r->md5hex);
	}
	printf("writing %zu bytes to %zu port%s, %u at a time\n",
	    ctx->set->total_len, ctx->nports, ctx->nports == 1 ? "" : "s",
	    ctx->jobs);
	fflush(stdout);
}

/* espfleet flash [options] (IMAGE | OFFSET FILE...). */
int
flash_main(int argc, char **argv)
{
	struct flash_ctx	 ctx;
	struct job_params	 params;
	struct image_load_opts	 opts;
	const struct chip_info	*chip, *target;
	const struct image_region *where = NULL;
	char			**paths = NULL, *cause = NULL;
	size_t			 npaths = 0, i;
	long long		 v;
	int			 ch, status = FLASH_EXIT_USAGE, force = 0;
	unsigned		 repeat = 1, round;
	enum loader_after	 after;
	int			 json = 0, no_log = 0, no_backup = 0;
	struct backup_params	 bp;
	const char		*log_path = NULL;
	struct loader_stub	 stub;
	const char		*stub_path = NULL;

	memset(&ctx, 0, sizeof(ctx));
	memset(&params, 0, sizeof(params));
	memset(&stub, 0, sizeof(stub));
	target = chip_by_id(CHIP_ESP32S2);
	params.after = LOADER_AFTER_REBOOT;
	params.retries = JOB_RETRIES_DEFAULT;
	ctx.wake_fd = -1;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", flash_options,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (strcmp(optarg, "reboot") == 0)
				params.after = LOADER_AFTER_REBOOT;
			else if (strcmp(optarg, "stay") == 0)
				params.after = LOADER_AFTER_STAY;
			else {
				flash_bad(json, "--after takes reboot or stay, "
				    "not \"%s\"", optarg);
				goto usage;
			}
			break;
		case 'b':
			if ((v = util_number(optarg, 1200, 5000000)) == -1) {
				flash_bad(json, "--baud takes a rate from 1200 "
				    "to 5000000, not \"%s\"", optarg);
				goto usage;
			}
			params.baud = (unsigned)v;
			break;
		case 'B':
			if (strcmp(optarg, "default-reset") == 0)
				params.before = LOADER_BEFORE_DEFAULT;
			else if (strcmp(optarg, "no-reset") == 0)
				params.before = LOADER_BEFORE_NO_RESET;
			else {
				flash_bad(json, "--before takes default-reset or "
				    "no-reset, not \"%s\"", optarg);
				goto usage;
			}
			break;
		case 'c':
			target = chip_by_name(optarg);
			if (target == NULL || !target->full_support) {
				flash_bad(json, "--chip takes a chip espfleet "
				    "can flash (esp32s2), not \"%s\"", optarg);
				goto usage;
			}
			break;
		case 'f':
			force = 1;
			break;
		case 'S':
			stub_path = optarg;
			break;
		case 'w':
			if ((v = util_number(optarg, 0, 60)) == -1) {
				flash_bad(json, "--boot-wait takes seconds from "
				    "0 (no boot check) to 60, not \"%s\"",
				    optarg);
				goto usage;
			}
			params.boot_ms = v == 0 ? -1 : (int)v * 1000;
			break;
		case 'h':
			flash_usage(stdout);
			status = 0;
			goto out;
		case 'j':
			if ((v = util_number(optarg, 1, 4096)) == -1) {
				flash_bad(json, "--jobs takes a number of "
				    "ports from 1 to 4096, not \"%s\"", optarg);
				goto usage;
			}
			ctx.jobs = (unsigned)v;
			break;
		case 'J':
			json = 1;
			break;
		case 'L':
			log_path = optarg;
			break;
		case 'N':
			no_log = 1;
			break;
		case 'K':
			no_backup = 1;
			break;
		case 'r':
			if ((v = util_number(optarg, 0, JOB_RETRIES_MAX)) ==
			    -1) {
				flash_bad(json, "--retries takes a number of "
				    "attempts after a transient failure, 0 to "
				    "%d, not \"%s\"", JOB_RETRIES_MAX, optarg);
				goto usage;
			}
			params.retries = (unsigned)v;
			break;
		case 'R':
			if ((v = util_number(optarg, 1, 1000000)) == -1) {
				flash_bad(json, "--repeat takes a number of "
				    "rounds from 1 to 1000000, not \"%s\"",
				    optarg);
				goto usage;
			}
			repeat = (unsigned)v;
			break;
		case 'p':
			paths = xrealloc(paths, (npaths + 1) * sizeof(*paths));
			paths[npaths++] = optarg;
			break;
		default:
			flash_bad(json, "unknown option \"%s\"",
			    argv[optind - 1]);
			goto usage;
		}
	}
	argc -= optind;
	argv += optind;
	if (npaths == 0) {
		flash_bad(json, "no --port given: name each unit's serial "
		    "port, e.g. --port /dev/ttyACM0");
		goto usage;
	}
	if (argc == 0) {
		flash_bad(json, "no firmware given: name a file, or OFFSET "
		    "FILE pairs (e.g. 0x0 factory.bin)");
		goto usage;
	}

	/* Everything is checked before any port is opened. */
	if (stub_path != NULL) {
		if (loader_stub_load(stub_path, &stub, &cause) != 0) {
			flash_bad(json, "%s", cause);
			goto out;
		}
		params.stub = &stub;
	}
	memset(&opts, 0, sizeof(opts));
	opts.force = force;
	if (image_load(&ctx.set, argc, argv, &opts, &cause) != 0) {
		flash_bad(json, "%s", cause);
		goto out;
	}
	/*
	 * No unit is identified yet: an image whose headers name another
	 * chip than the target is refused as such, and the image is checked
	 * against the target, so an image with no usable header (cut short,
	 * garbage) is refused here, before any port is opened.
	 */
	chip = flash_guess_chip(ctx.set, &where);
	if (chip != NULL && chip != target && !force) {
		flash_bad(json, "%s: this is an %s image; espfleet expects %s "
		    "(use --chip or --force)", where != NULL ? where->name :
		    "the image", chip->name, target->name);
		goto out;
	}
	if (image_check_chip(ctx.set, target, force, &cause) != 0) {
		flash_bad(json, "%s", cause);
		goto out;
	}
	if (flash_check_ports(paths, npaths, json) != 0)
		goto out;
	/* A --log that cannot be used is bad input; the default, a warning. */
	if (!no_log && flog_open(&ctx.flog, log_path, &cause) != 0) {
		if (log_path != NULL) {
			flash_bad(json, "%s", cause);
			goto out;
		}
		fprintf(stderr, "espfleet flash: warning: %s; no unit records "
		    "are kept (--log PATH or --no-log)\n", cause);
		free(cause);
		cause = NULL;
	}

	ctx.json = json;
	ctx.live = !json && isatty(STDOUT_FILENO);
	ctx.nports = npaths;
	if (ctx.jobs == 0 || ctx.jobs > npaths)
		ctx.jobs = (unsigned)npaths;
	if ((ctx.wake_fd = job_wake_open()) < 0) {
		flash_bad(json, "eventfd: %s", strerror(-ctx.wake_fd));
		status = 1;
		goto out;
	}
	if (sigwake_install() != 0) {
		flash_bad(json, "pipe: %s", strerror(errno));
		status = 1;
		goto out;
	}
	after = params.after;
	params.set = ctx.set;
	params.force = force;
	params.open_cb = flash_open_cb;
	/* Keep the settings the image is about to overwrite. */
	memset(&bp, 0, sizeof(bp));
	bp.set = ctx.set;
	if (!no_backup) {
		params.before_write = backup_hook;
		params.before_write_arg = &bp;
	}
	ctx.ports = xcalloc(npaths, sizeof(*ctx.ports));
	for (i = 0; i < npaths; i++)
		ctx.ports[i].path = paths[i];
	if (flash_open_ports(&ctx, json) != 0) {
		sigwake_remove();
		goto out;
	}
	flash_names(&ctx);
	for (round = 1; round <= repeat; round++) {
		/*
		 * --repeat: every round but the last leaves the units in
		 * download mode (--after stay) for the next one.
		 */
		params.after = round < repeat ? LOADER_AFTER_STAY : after;
		flash_round_reset(&ctx);
		for (i = 0; i < npaths; i++) {
			params.open_arg = &ctx.ports[i];
			ctx.ports[i].job = job_new(paths[i], &params,
			    ctx.wake_fd);
		}
		flash_announce(&ctx);
		if (flash_loop(&ctx) != 0)
			flash_interrupt(&ctx);
		for (i = 0; i < ctx.nports; i++)
			job_join(ctx.ports[i].job);
		flash_record(&ctx);
		status = flash_summary(&ctx);
		if (repeat > 1 && !json)
			printf("round %u/%u: %s\n", round, repeat,
			    status == 0 ? "every unit verified" :
			    "not every unit verified; stopping");
		fflush(stdout);
		if (status != 0)
			break;
	}
	sigwake_remove();
	goto out;

usage:
	flash_usage(stderr);
	status = FLASH_EXIT_USAGE;
out:
	for (i = 0; ctx.ports != NULL && i < ctx.nports; i++) {
		if (ctx.ports[i].xp_open)
			xport_close(&ctx.ports[i].xp);
		if (ctx.ports[i].job != NULL)
			job_free(ctx.ports[i].job);
		free(ctx.ports[i].name);
		free(ctx.ports[i].start_error);
	}
	free(ctx.ports);
	if (ctx.wake_fd >= 0)
		close(ctx.wake_fd);
	image_free(ctx.set);
	loader_stub_free(&stub);
	flog_close(ctx.flog);
	free(cause);
	free(paths);
	return (status);
}
