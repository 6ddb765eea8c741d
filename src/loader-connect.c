/*
 * Into download mode (loader.h, PROTOCOL.md 3 and 8): the SYNC exchange,
 * the DTR/RTS reset sequences of USB-UART bridges and USB-Serial/JTAG,
 * the tricks that make an ESP32-S2 app on native USB restart into its
 * ROM (the IDF console's RTS edge, the Arduino line-state sequence, the
 * 1200-bps touch) and following the port that comes back; and, where
 * nothing works, waiting for the person to hold BOOT and press RST.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "loader.h"
#include "loader-private.h"
#include "proto.h"
#include "slip.h"
#include "transport.h"
#include "util.h"

#define LOADER_SYNC_TRIES	5	/* SYNCs per connect attempt */
#define LOADER_SYNC_GAP_MS	50	/* pause after a failed SYNC */
#define LOADER_REOPEN_GAP_MS	100	/* between tries to reopen a port */

/*
 * One SYNC: the first reply must come within sync_ms, then all seven
 * copies the ROM sends after it (PROTOCOL.md 3.1), each within the
 * default timeout.  The first reply also tells ROM (4 status bytes,
 * non-zero value) from a running stub (2 bytes, value 0).
 */
int
loader_sync_once(struct loader *l)
{
	uint64_t	deadline;
	size_t		len;
	unsigned	got = 0, timeout;
	int		error, n;

	loader_clear(l);
	len = proto_build_sync(l->tx, sizeof(l->tx));
	timeout = l->sync_ms;
	deadline = util_now_ms() + timeout;
	if ((error = loader_send(l, len, deadline)) != 0)
		return (loader_io_fail(l, error, timeout));
	while (got < PROTO_SYNC_REPLIES) {
		if ((n = loader_recv(l, deadline)) < 0) {
			if (n == -ETIMEDOUT && got > 0)
				return (loader_fail(l, n, "SYNC: only %u of "
				    "the %d replies arrived", got,
				    PROTO_SYNC_REPLIES));
			return (loader_io_fail(l, n, timeout));
		}
		if (n < PROTO_HDR_LEN || l->frame[0] != 0x01 ||
		    l->frame[1] != PROTO_SYNC)
			continue;
		if (got == 0) {
			l->status_len = le16_get(l->frame + 2) >=
			    PROTO_ROM_STATUS_LEN ? PROTO_ROM_STATUS_LEN :
			    PROTO_STUB_STATUS_LEN;
			l->stub = le32_get(l->frame + 4) == 0;
		}
		got++;
		timeout = l->default_ms;
		deadline = util_now_ms() + timeout;
	}
	return (0);
}

/* What the transport says the port is, from its USB ids. */
static enum chip_usb_kind
loader_connect_xport_kind(const struct xport *xp)
{
	uint16_t	vid, pid;

	if (xport_usb_id(xp, &vid, &pid) != 0)
		return (USB_KIND_UNKNOWN);
	return (chip_usb_classify(vid, pid));
}

/*
 * The port vanished (re-enumeration after the reset): close it and try to
 * open the same path again until the deadline.  0 once open, -ETIMEDOUT,
 * or -ECANCELED.
 */
int
loader_reopen(struct loader *l, loader_reopen_cb reopen, void *arg,
    uint64_t deadline, enum chip_usb_kind *kind)
{
	struct xport	*xp = l->xp;
	char		*path, *cause = NULL;
	int		 cancel_fd = xp->cancel_fd, error;

	path = xstrdup(xp->path != NULL ? xp->path : "");
	xport_close(xp);
	l->rx_off = l->rx_len = 0;
	slip_dec_init(&l->dec, l->frame, sizeof(l->frame));
	for (;;) {
		*kind = USB_KIND_UNKNOWN;
		xport_init(xp, cancel_fd);
		if (reopen != NULL)
			error = reopen(arg, xp, path, kind, &cause);
		else if ((error = xport_open(xp, path, &cause)) == 0)
			*kind = loader_connect_xport_kind(xp);
		free(cause);
		cause = NULL;
		if (error == 0)
			break;
		if (util_ms_left(deadline) == 0) {
			error = -ETIMEDOUT;
			break;
		}
		if ((error = xport_pause(xp, MINIMUM(LOADER_REOPEN_GAP_MS,
		    util_ms_left(deadline)))) != 0)
			break;
	}
	free(path);
	return (error);
}

/* esptool's USBJTAGSerialReset for USB-Serial/JTAG ports (PROTOCOL 8.1). */
static int
loader_connect_usb_jtag(struct loader *l)
{
	struct xport	*x = l->xp;
	int		 error;

	if ((error = xport_set_rts(x, 0)) != 0 ||
	    (error = xport_set_dtr(x, 0)) != 0 ||
	    (error = xport_pause(x, 100)) != 0 ||
	    (error = xport_set_dtr(x, 1)) != 0 ||
	    (error = xport_set_rts(x, 0)) != 0 ||
	    (error = xport_pause(x, 100)) != 0 ||
	    (error = xport_set_rts(x, 1)) != 0 ||
	    (error = xport_set_dtr(x, 0)) != 0 ||
	    (error = xport_set_rts(x, 1)) != 0 ||
	    (error = xport_pause(x, 100)) != 0 ||
	    (error = xport_set_dtr(x, 0)) != 0 ||
	    (error = xport_set_rts(x, 0)) != 0)
		return (error);
	return (0);
}

/*
 * Reset strategy for a 0-based attempt on a bridge: esptool's POSIX order
 * (PROTOCOL 8.1), cycled.  Names it in l->how.
 */
static int
loader_connect_bridge(struct loader *l, unsigned attempt)
{
	unsigned	delay;
	int		tight;

	delay = attempt % 2 == 0 ? 50 : 550;
	tight = (attempt / 2) % 2 == 0;
	snprintf(l->how, sizeof(l->how), "%s reset (%u ms)", tight ?
	    "tight" : "classic", delay);
	if (tight)
		return (xport_reset_tight(l->xp, delay));
	return (xport_reset_classic(l->xp, delay));
}

/* What kind of port this is: preset, from its USB ids, or a guess. */
static enum chip_usb_kind
loader_connect_port_kind(struct loader *l)
{
	enum chip_usb_kind	kind;

	if (l->port_kind != USB_KIND_UNKNOWN)
		return (l->port_kind);
	if ((kind = loader_connect_xport_kind(l->xp)) != USB_KIND_UNKNOWN)
		return (kind);
	/* An fd transport with a lines hook: an emulated bridge board. */
	if (l->xp->lines_cb != NULL)
		return (USB_KIND_BRIDGE);
	return (USB_KIND_UNKNOWN);
}

/* Up to tries SYNCs with esptool's pause between them. */
static int
loader_connect_sync(struct loader *l, unsigned tries)
{
	unsigned	try;
	int		error = -ETIMEDOUT, perr;

	for (try = 0; try < tries; try++) {
		if ((error = loader_flush(l)) != 0)
			return (loader_io_fail(l, error, 0));
		if ((error = loader_sync_once(l)) == 0)
			return (0);
		if (error == -ECANCELED || error == -ENODEV)
			return (loader_prefix(l, error, "SYNC"));
		if ((perr = xport_pause(l->xp, LOADER_SYNC_GAP_MS)) != 0)
			return (loader_io_fail(l, perr, 0));
	}
	return (error);
}

/*
 * After an app trick: if the port vanishes within trick_ms, wait up to
 * reenum_ms for the same path to come back, then SYNC.  0 when the ROM
 * answers, -ETIMEDOUT when not, -ECANCELED.
 */
static int
loader_connect_after_trick(struct loader *l)
{
	enum chip_usb_kind	 kind;
	uint8_t			 buf[256];
	uint64_t		 deadline;
	int			 n, error;

	deadline = util_now_ms() + l->trick_ms;
	for (;;) {
		n = xport_read(l->xp, buf, sizeof(buf), deadline);
		if (n == -ECANCELED)
			return (loader_io_fail(l, n, 0));
		if (n == -ENODEV) {
			error = loader_reopen(l, l->reopen, l->reopen_arg,
			    util_now_ms() + l->reenum_ms, &kind);
			if (error == -ECANCELED)
				return (loader_io_fail(l, error, 0));
			if (error != 0)
				return (loader_fail(l, -ENODEV, "the port went "
				    "away after %s and did not come back "
				    "within %u ms", l->how, l->reenum_ms));
			break;
		}
		if (n < 0)
			break;	/* still there (USB persist?): SYNC */
	}
	return (loader_connect_sync(l, LOADER_SYNC_TRIES));
}

/*
 * The ESP32-S2 app tricks (PROTOCOL.md 8.2), in order; lines ones only if
 * the port has modem lines.  0 once the ROM answers.
 */
static int
loader_connect_app_tricks(struct loader *l)
{
	struct xport	*x = l->xp;
	unsigned	 baud;
	int		 error;

	if (xport_can_reset(x)) {
		/* ESP-IDF console: RTS falls while DTR is asserted. */
		snprintf(l->how, sizeof(l->how), "the IDF console's RTS edge");
		if ((error = xport_set_lines(x, 1, 1)) != 0 ||
		    (error = xport_pause(x, 10)) != 0 ||
		    (error = xport_set_lines(x, 1, 0)) != 0 ||
		    (error = xport_pause(x, 10)) != 0 ||
		    (error = xport_set_lines(x, 0, 0)) != 0)
			return (loader_io_fail(l, error, 0));
		if ((error = loader_connect_after_trick(l)) != -ETIMEDOUT)
			return (error);
		/* Arduino TinyUSB: (0,1) (1,1) (1,0) (0,0). */
		x = l->xp;
		snprintf(l->how, sizeof(l->how), "the Arduino line-state "
		    "sequence");
		if ((error = xport_set_lines(x, 0, 1)) != 0 ||
		    (error = xport_set_lines(x, 1, 1)) != 0 ||
		    (error = xport_set_lines(x, 1, 0)) != 0 ||
		    (error = xport_set_lines(x, 0, 0)) != 0)
			return (loader_io_fail(l, error, 0));
		if ((error = loader_connect_after_trick(l)) != -ETIMEDOUT)
			return (error);
	}
	/* Arduino: SET_LINE_CODING with 1200 bps. */
	x = l->xp;
	snprintf(l->how, sizeof(l->how), "the 1200-bps touch");
	baud = x->baud != 0 ? x->baud : 115200;
	if ((error = xport_set_baud(x, 1200)) != 0)
		return (loader_io_fail(l, error, 0));
	if (l->baud_cb != NULL)
		l->baud_cb(l->baud_arg, 1200);
	if ((error = xport_pause(x, 50)) != 0)
		return (loader_io_fail(l, error, 0));
	/* The port may be gone already; the reopened one starts afresh. */
	(void)xport_set_baud(x, baud);
	return (loader_connect_after_trick(l));
}

/* Wait for someone to put the unit into download mode by hand. */
int
loader_wait_download(struct loader *l, unsigned ms)
{
	uint64_t	deadline = util_now_ms() + ms;
	unsigned	trick = l->trick_ms;
	int		error;

	l->trick_ms = 500;
	do {
		snprintf(l->how, sizeof(l->how), "BOOT and RST by hand");
		error = loader_connect_after_trick(l);
	} while ((error == -ETIMEDOUT || error == -ENODEV) &&
	    util_ms_left(deadline) > 0);
	l->trick_ms = trick;
	if (error == 0)
		l->need_manual = 0;
	return (error == -ENODEV ? -ETIMEDOUT : error);
}

/* The failure when nothing got the ROM's attention. */
static int
loader_connect_fail(struct loader *l, const char *tried)
{
	char	text[4 * sizeof(l->noise) + 1];

	l->need_manual = 1;
	if (l->noise_len > 0) {
		/* What the unit printed is its own text: untrusted. */
		util_sanitize(text, sizeof(text), l->noise, l->noise_len);
		return (loader_fail(l, -ETIMEDOUT, "no answer to SYNC (%s); "
		    "the unit printed \"%s\" instead: it is not in download "
		    "mode; hold BOOT, press RST, release BOOT", tried, text));
	}
	return (loader_fail(l, -ETIMEDOUT, "no answer to SYNC (%s): the unit "
	    "is not in download mode; hold BOOT, press RST, release BOOT",
	    tried));
}

/* Get the ROM's attention: resets and tricks as the port allows. */
int
loader_connect(struct loader *l)
{
	enum chip_usb_kind	 kind;
	unsigned		 attempt;
	char			 tried[96];
	int			 error = -ETIMEDOUT, reset;

	l->noise_len = 0;
	l->need_manual = 0;
	snprintf(l->how, sizeof(l->how), "already in download mode");
	kind = loader_connect_port_kind(l);
	reset = l->before == LOADER_BEFORE_DEFAULT && xport_can_reset(l->xp);
	if (l->before == LOADER_BEFORE_DEFAULT && kind == USB_KIND_APP_CDC) {
		/* An app's own port: the ROM is not there yet. */
		if ((error = loader_connect_app_tricks(l)) == 0)
			return (0);
		if (error != -ETIMEDOUT)
			return (error);
		return (loader_connect_fail(l, "the IDF RTS edge, the Arduino "
		    "line-state sequence and the 1200-bps touch were "
		    "ignored"));
	}
	for (attempt = 0; attempt < l->connect_attempts; attempt++) {
		if (reset && kind == USB_KIND_USB_JTAG) {
			snprintf(l->how, sizeof(l->how), "USB-Serial/JTAG "
			    "reset");
			error = loader_connect_usb_jtag(l);
		} else if (reset && kind == USB_KIND_BRIDGE)
			error = loader_connect_bridge(l, attempt);
		else if (reset && attempt > 0 && kind == USB_KIND_UNKNOWN)
			error = loader_connect_bridge(l, attempt - 1);
		else
			error = 0;
		if (error != 0)
			return (loader_io_fail(l, error, 0));
		if ((error = loader_connect_sync(l, LOADER_SYNC_TRIES)) == 0)
			return (0);
		if (error != -ETIMEDOUT && error != -EPROTO &&
		    error != -EBADMSG)
			return (error);
		/* An S2 app on the ROM's own PID (Arduino's default). */
		if (attempt == 0 && kind == USB_KIND_S2_ROM &&
		    l->before == LOADER_BEFORE_DEFAULT) {
			if ((error = loader_connect_app_tricks(l)) == 0)
				return (0);
			if (error != -ETIMEDOUT)
				return (error);
			return (loader_connect_fail(l, "not in download mode, "
			    "and the app ignored the IDF, Arduino and "
			    "1200-bps tricks"));
		}
	}
	if (l->before == LOADER_BEFORE_NO_RESET)
		snprintf(tried, sizeof(tried), "%u attempts, --before "
		    "no-reset", l->connect_attempts);
	else if (!reset)
		snprintf(tried, sizeof(tried), "%u attempts; the port has no "
		    "modem lines to reset the unit", l->connect_attempts);
	else
		snprintf(tried, sizeof(tried), "%u attempts with esptool's "
		    "reset sequences", l->connect_attempts);
	return (loader_connect_fail(l, tried));
}
