/*
 * The boot check after the reset (loader.h): listen to the port the unit
 * comes back on and say how strongly its first words prove that the new
 * image runs, from "booted: ESPHome 2023.6.3" down to "boot failed:
 * <last line>".  Apart from loader.c because it reads app text, not ROM
 * replies.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "loader.h"
#include "loader-private.h"
#include "transport.h"
#include "util.h"

#define LOADER_BOOT_WAIT_MS	5000	/* default listening window */
#define LOADER_BOOT_MORE_MS	1500	/* IDF banner seen: ESPHome's? */
#define LOADER_LINE_MAX		160

/* What the boot check has heard so far. */
struct loader_boot_scan {
	const char	*esphome;	/* the image's version, or NULL */
	char		 project[40];	/* "Project name:" */
	char		 appver[32];	/* "App version:" */
	char		 last[72];	/* last non-empty line (sanitized) */
	int		 app_seen;	/* app_init/cpu_start seen */
	enum loader_boot result;
	char		*text;		/* LOADER_BOOT_TEXT bytes */
};

/* Lines a ROM or second-stage bootloader prints when a boot fails. */
static const char *const loader_boot_errors[] = {
	"invalid header",
	"Checksum failure",
	"checksum mismatch",
	"ets_main.c",
	"waiting for download",
	"No bootable app",
	"invalid magic",
	"is not bootable",
	"Image validation failed",
	"Invalid chip id",
	"Checksum failed",
	"partition table error",
};

/* Name of a boot-check result, for JSON and logs. */
const char *
loader_boot_name(enum loader_boot b)
{
	static const char *const names[LOADER_BOOT__MAX] = {
		[LOADER_BOOT_NONE] = "none",
		[LOADER_BOOT_MATCH] = "match",
		[LOADER_BOOT_DIFFERS] = "differs",
		[LOADER_BOOT_BANNER] = "banner",
		[LOADER_BOOT_PORT_UP] = "port-up",
		[LOADER_BOOT_SILENT] = "silent",
		[LOADER_BOOT_FAILED] = "failed",
	};

	if ((unsigned)b >= LOADER_BOOT__MAX)
		return ("unknown");
	return (names[b]);
}

/* Copy the value after "key" (spaces skipped, up to a space if word). */
static int
loader_boot_value(const char *line, const char *key, int word, char *out,
    size_t cap)
{
	const char	*p;
	size_t		 n;

	if ((p = strstr(line, key)) == NULL)
		return (0);
	p += strlen(key);
	while (*p == ' ' || *p == '\t')
		p++;
	n = word ? strcspn(p, " \t") : strlen(p);
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0)
		return (0);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return (1);
}

/*
 * Look at one sanitized line.  Returns 1 when it settles the question (an
 * ESPHome banner or a boot error), 0 otherwise.
 */
static int
loader_boot_line(struct loader_boot_scan *s, const char *line)
{
	char	ver[32];
	size_t	i;

	if (*line == '\0')
		return (0);
	snprintf(s->last, sizeof(s->last), "%.*s", (int)sizeof(s->last) - 1,
	    line);
	if (loader_boot_value(line, "ESPHome version ", 1, ver,
	    sizeof(ver))) {
		if (s->esphome == NULL || *s->esphome == '\0') {
			s->result = LOADER_BOOT_BANNER;
			snprintf(s->text, LOADER_BOOT_TEXT,
			    "booted: ESPHome %s", ver);
		} else if (strcmp(ver, s->esphome) == 0) {
			s->result = LOADER_BOOT_MATCH;
			snprintf(s->text, LOADER_BOOT_TEXT, "booted: ESPHome "
			    "%s (matches image)", ver);
		} else {
			s->result = LOADER_BOOT_DIFFERS;
			snprintf(s->text, LOADER_BOOT_TEXT, "booted, but "
			    "ESPHome %s differs from the image's %s", ver,
			    s->esphome);
		}
		return (1);
	}
	/* The app has started: its own later errors are not boot errors. */
	if (strstr(line, "app_init:") != NULL ||
	    strstr(line, "cpu_start:") != NULL)
		s->app_seen = 1;
	for (i = 0; i < nitems(loader_boot_errors); i++) {
		if (strstr(line, loader_boot_errors[i]) != NULL ||
		    (i == 0 && !s->app_seen && strncmp(line, "E (", 3) == 0)) {
			s->result = LOADER_BOOT_FAILED;
			snprintf(s->text, LOADER_BOOT_TEXT,
			    "boot failed: %.80s", line);
			return (1);
		}
	}
	(void)(loader_boot_value(line, "Project name:", 0, s->project,
	    sizeof(s->project)) ||
	    loader_boot_value(line, "App version:", 0, s->appver,
	    sizeof(s->appver)));
	if (s->project[0] != '\0' && s->appver[0] != '\0' &&
	    s->result != LOADER_BOOT_BANNER) {
		s->result = LOADER_BOOT_BANNER;
		snprintf(s->text, LOADER_BOOT_TEXT, "booted: %s %s",
		    s->project, s->appver);
	}
	return (0);
}

/* Feed raw bytes into the line buffer; 1 when a line settled it. */
static int
loader_boot_bytes(struct loader_boot_scan *s, uint8_t *line, size_t *len,
    const uint8_t *p, size_t n)
{
	char	clean[4 * LOADER_LINE_MAX + 1];
	size_t	i;

	for (i = 0; i < n; i++) {
		if (p[i] != '\n' && p[i] != '\r' && *len < LOADER_LINE_MAX) {
			line[(*len)++] = p[i];
			continue;
		}
		if (p[i] != '\n' && p[i] != '\r')
			line[(*len)++ - 1] = p[i];	/* overlong: cut */
		util_sanitize(clean, sizeof(clean), line, *len);
		*len = 0;
		if (loader_boot_line(s, clean))
			return (1);
	}
	return (0);
}

/* Listen to the freshly reset unit and say how sure we are it booted. */
int
loader_boot_check(struct loader *l, const struct loader_boot_opts *o,
    enum loader_boot *result, char *text)
{
	struct loader_boot_scan	 s;
	enum chip_usb_kind	 kind = USB_KIND_UNKNOWN;
	uint8_t			 line[LOADER_LINE_MAX], buf[256];
	uint64_t		 deadline;
	size_t			 len = 0;
	int			 n, error, vanished = 0, port_up = 0;
	int			 open = 1, settled = 0;

	memset(&s, 0, sizeof(s));
	s.esphome = o->esphome;
	s.text = text;
	text[0] = '\0';
	deadline = util_now_ms() + (o->wait_ms != 0 ? o->wait_ms :
	    LOADER_BOOT_WAIT_MS);
	/* Bytes already read past the last reply come first. */
	if (l->rx_off < l->rx_len)
		settled = loader_boot_bytes(&s, line, &len, l->rx + l->rx_off,
		    l->rx_len - l->rx_off);
	l->rx_off = l->rx_len = 0;
	while (!settled) {
		n = xport_read(l->xp, buf, sizeof(buf), deadline);
		if (n == -ECANCELED)
			return (n);
		if (n == -ENODEV && !vanished) {
			vanished = 1;
			error = loader_reopen(l, o->reopen != NULL ? o->reopen :
			    l->reopen, o->reopen != NULL ? o->reopen_arg :
			    l->reopen_arg, deadline, &kind);
			if (error == -ECANCELED)
				return (error);
			if (error != 0) {
				open = 0;
				break;
			}
			port_up = kind == USB_KIND_APP_CDC;
			continue;
		}
		if (n < 0)
			break;
		settled = loader_boot_bytes(&s, line, &len, buf, (size_t)n);
		/* An IDF banner: give ESPHome's own line a moment. */
		if (!settled && s.result == LOADER_BOOT_BANNER)
			deadline = MINIMUM(deadline, util_now_ms() +
			    LOADER_BOOT_MORE_MS);
	}
	if (!settled && len > 0) {
		/* A last line without its newline. */
		settled = loader_boot_bytes(&s, line, &len,
		    (const uint8_t *)"\n", 1);
	}
	if (settled || s.result == LOADER_BOOT_BANNER) {
		*result = s.result;
		return (0);
	}
	/* Nothing decisive: is it answering SYNC, back in download mode? */
	if (open && (error = loader_flush(l)) == 0) {
		l->stub = 0;
		if ((error = loader_sync_once(l)) == 0 ||
		    (error != -ECANCELED &&
		    (error = loader_sync_once(l)) == 0)) {
			*result = LOADER_BOOT_FAILED;
			if (s.last[0] != '\0')
				snprintf(text, LOADER_BOOT_TEXT, "boot failed: "
				    "back in download mode after \"%.50s\"",
				    s.last);
			else
				snprintf(text, LOADER_BOOT_TEXT, "boot failed: "
				    "the unit came back in download mode");
			loader_clear(l);
			return (0);
		}
		loader_clear(l);
		if (error == -ECANCELED)
			return (error);
	}
	if (port_up) {
		*result = LOADER_BOOT_PORT_UP;
		snprintf(text, LOADER_BOOT_TEXT, "booted: app USB port up");
	} else if (vanished && !open) {
		*result = LOADER_BOOT_SILENT;
		snprintf(text, LOADER_BOOT_TEXT, "rebooted, the port has not "
		    "come back");
	} else {
		*result = LOADER_BOOT_SILENT;
		snprintf(text, LOADER_BOOT_TEXT, "rebooted, app silent on USB");
	}
	return (0);
}

