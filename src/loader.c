/*
 * The ROM bootloader conversation (PROTOCOL.md): every command gets one
 * CLOCK_MONOTONIC deadline, replies are matched by opcode, and failures
 * come back as -errno with a sentence in l->cause that names the command
 * and says what the ROM answered, in words.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "loader.h"
#include "proto.h"
#include "slip.h"
#include "transport.h"
#include "util.h"

/* ESP32-S2 registers (PROTOCOL.md 4.2 and 5.5). */
#define S2_EFUSE_WORD3		0x3F41A050u
#define S2_EFUSE_WORD4		0x3F41A054u
#define S2_GPIO_STRAP		0x3F404038u
#define S2_RTC_OPTION1		0x3F408128u
#define S2_WDT_CONFIG0		0x3F408094u
#define S2_WDT_CONFIG1		0x3F408098u
#define S2_WDT_WPROTECT		0x3F4080ACu
#define S2_WDT_WKEY		0x50D83AA1u

/* SPI user-command bits (PROTOCOL.md 4.3). */
#define SPI_CMD_USR		(1u << 18)
#define SPI_USR_COMMAND		(1u << 31)
#define SPI_USR_MISO		(1u << 28)
#define SPI_FLASH_RDID		0x9F
#define SPI_POLL_READS		10

#define LOADER_MAX_FRAMES	100	/* frames per command, at most */
#define LOADER_SYNC_TRIES	5	/* SYNCs per connect attempt */
#define LOADER_SYNC_GAP_MS	50	/* pause after a failed SYNC */
#define LOADER_DRAIN_MS		200	/* repeated "invalid" replies */
#define LOADER_BAUD_SETTLE_MS	50	/* after CHANGE_BAUDRATE */

/* ============================ errors ================================== */

/* Replace l->cause with a formatted sentence and return error. */
static int printflike(3, 4)
loader_fail(struct loader *l, int error, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	free(l->cause);
	l->cause = s;
	return (error);
}

/* Forget the previous failure: a command that works leaves no cause. */
static void
loader_clear(struct loader *l)
{
	free(l->cause);
	l->cause = NULL;
}

/* Put "what: " in front of the current cause and return error. */
static int
loader_prefix(struct loader *l, int error, const char *what)
{
	char	*s;

	s = xasprintf("%s: %s", what, l->cause != NULL ? l->cause : "failed");
	free(l->cause);
	l->cause = s;
	return (error);
}

/* Set the cause for a transport failure while talking about op. */
static int
loader_io_fail(struct loader *l, int error, unsigned timeout_ms)
{
	switch (error) {
	case -ETIMEDOUT:
		return (loader_fail(l, error, "no reply from the chip within "
		    "%u ms", timeout_ms));
	case -ECANCELED:
		return (loader_fail(l, error, "cancelled"));
	case -ENODEV:
		return (loader_fail(l, error, "the port went away (unit "
		    "unplugged or reset?)"));
	default:
		return (loader_fail(l, error, "%s", strerror(-error)));
	}
}

/* Was this failure the ROM saying it does not know the command? */
static int
loader_unsupported(const struct loader *l, int error)
{
	return (error == -ENOTSUP || (error == -EPROTO &&
	    l->last_status == 1 && l->last_error == PROTO_E_INVALID_MSG));
}

/* esptool's timeout_per_mb(): ms per decimal MB, never under 3 s. */
unsigned
loader_timeout_per_mb(unsigned ms_per_mb, size_t bytes)
{
	uint64_t	ms;

	ms = (uint64_t)ms_per_mb * bytes / 1000000;
	if (ms < 3000)
		ms = 3000;
	if (ms > 0x7fffffff)
		ms = 0x7fffffff;
	return ((unsigned)ms);
}

/* ======================= framing and commands ========================= */

/* Set up a loader over an open transport, with esptool's tunables. */
void
loader_init(struct loader *l, struct xport *xp)
{
	memset(l, 0, sizeof(*l));
	l->xp = xp;
	l->status_len = PROTO_ROM_STATUS_LEN;
	l->sync_ms = 100;
	l->default_ms = 3000;
	l->connect_attempts = 7;
	l->block_attempts = 3;
	slip_dec_init(&l->dec, l->frame, sizeof(l->frame));
}

/* Free what the loader allocated (the cause); the transport is not ours. */
void
loader_free(struct loader *l)
{
	free(l->cause);
	l->cause = NULL;
}

/* The last failure in words. */
const char *
loader_cause(const struct loader *l)
{
	return (l->cause != NULL ? l->cause : "");
}

/* Forget every byte received so far, ours and the kernel's. */
static int
loader_flush(struct loader *l)
{
	l->rx_off = l->rx_len = 0;
	slip_dec_init(&l->dec, l->frame, sizeof(l->frame));
	return (xport_flush_in(l->xp));
}

/* Next complete SLIP frame before the deadline: its length, or -errno. */
static int
loader_recv(struct loader *l, uint64_t deadline)
{
	size_t	noise;
	uint8_t	c;
	int	n;

	for (;;) {
		while (l->rx_off < l->rx_len) {
			c = l->rx[l->rx_off++];
			noise = l->dec.noise;
			if (slip_dec_byte(&l->dec, c) == SLIP_FRAME)
				return ((int)l->dec.len);
			/* Keep the start of any text outside frames. */
			if (l->dec.noise != noise &&
			    l->noise_len < sizeof(l->noise))
				l->noise[l->noise_len++] = c;
		}
		n = xport_read(l->xp, l->rx, sizeof(l->rx), deadline);
		if (n < 0)
			return (n);
		l->rx_off = 0;
		l->rx_len = (size_t)n;
	}
}

/* SLIP-encode the len-byte request in l->tx and write it. */
static int
loader_send(struct loader *l, size_t len, uint64_t deadline)
{
	size_t	n;

	if (len == 0 ||
	    (n = slip_encode(l->wire, sizeof(l->wire), l->tx, len)) == 0)
		return (-EMSGSIZE);
	return (xport_write(l->xp, l->wire, n, deadline));
}

/* Swallow the copies of an "invalid message" reply the ROM repeats. */
static void
loader_drain_invalid(struct loader *l)
{
	uint64_t	deadline;
	int		i;

	deadline = util_now_ms() + LOADER_DRAIN_MS;
	for (i = 0; i < PROTO_SYNC_REPLIES - 1; i++) {
		if (loader_recv(l, deadline) < 0)
			break;
	}
	(void)loader_flush(l);
}

/*
 * Send the request built in l->tx and wait for the reply with the same
 * opcode, skipping anything else (PROTOCOL.md 1.4).  what names the
 * command in the cause (NULL: the opcode's name).  On success *resp
 * points into l->frame.
 */
static int
loader_command(struct loader *l, size_t len, unsigned timeout_ms,
    const char *what, struct proto_resp *resp)
{
	uint8_t		 op = l->tx[1];
	uint64_t	 deadline;
	int		 error, n, i;

	if (what == NULL)
		what = proto_op_name(op);
	loader_clear(l);
	deadline = util_now_ms() + timeout_ms;
	l->last_op = op;
	l->last_status = l->last_error = 0;
	if ((error = loader_send(l, len, deadline)) != 0) {
		loader_io_fail(l, error, timeout_ms);
		return (loader_prefix(l, error, what));
	}
	for (i = 0; i < LOADER_MAX_FRAMES; i++) {
		if ((n = loader_recv(l, deadline)) < 0) {
			loader_io_fail(l, n, timeout_ms);
			return (loader_prefix(l, n, what));
		}
		if (n < PROTO_HDR_LEN || l->frame[0] != 0x01)
			continue;
		if (l->frame[1] != op) {
			/* Another opcode with error 0x05: "not supported". */
			if (n >= PROTO_HDR_LEN + 2 &&
			    l->frame[PROTO_HDR_LEN] != 0 &&
			    l->frame[PROTO_HDR_LEN + 1] ==
			    PROTO_E_INVALID_MSG) {
				l->last_status = l->frame[PROTO_HDR_LEN];
				l->last_error = PROTO_E_INVALID_MSG;
				loader_drain_invalid(l);
				return (loader_fail(l, -ENOTSUP, "%s: the chip "
				    "does not support this command", what));
			}
			continue;
		}
		if (proto_parse_resp(l->frame, (size_t)n, l->status_len,
		    resp) != 0)
			return (loader_fail(l, -EBADMSG, "%s: malformed reply "
			    "(%d bytes)", what, n));
		if (resp->status != 0) {
			l->last_status = resp->status;
			l->last_error = resp->error;
			if (resp->status == 1 &&
			    resp->error == PROTO_E_INVALID_MSG)
				loader_drain_invalid(l);
			return (loader_fail(l, -EPROTO, "%s: %s status 0x%02x "
			    "%s", what, l->stub ? "stub" : "ROM", resp->error,
			    proto_err_text(resp->error)));
		}
		return (0);
	}
	return (loader_fail(l, -EPROTO, "%s: no matching reply among %d "
	    "frames", what, LOADER_MAX_FRAMES));
}

/* READ_REG: the register's value comes back in the reply header. */
int
loader_read_reg(struct loader *l, uint32_t addr, uint32_t *value)
{
	struct proto_resp	resp;
	size_t			len;
	int			error;

	len = proto_build_read_reg(l->tx, sizeof(l->tx), addr);
	if ((error = loader_command(l, len, l->default_ms, NULL, &resp)) != 0)
		return (error);
	*value = resp.value;
	return (0);
}

/* WRITE_REG with a full mask and no delay. */
int
loader_write_reg(struct loader *l, uint32_t addr, uint32_t value)
{
	struct proto_resp	resp;
	size_t			len;

	len = proto_build_write_reg(l->tx, sizeof(l->tx), addr, value,
	    0xffffffffu, 0);
	return (loader_command(l, len, l->default_ms, NULL, &resp));
}

/* ============================== sync ================================== */

/*
 * One SYNC: the first reply must come within sync_ms, then all seven
 * copies the ROM sends after it (PROTOCOL.md 3.1), each within the
 * default timeout.  The first reply also tells ROM (4 status bytes,
 * non-zero value) from a running stub (2 bytes, value 0).
 */
static int
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

/* One reset strategy per attempt, esptool's POSIX order (PROTOCOL 8.1). */
static int
loader_reset_into_rom(struct loader *l, unsigned attempt)
{
	unsigned	delay;

	delay = (attempt - 1) % 2 == 0 ? 50 : 550;
	if (((attempt - 1) / 2) % 2 == 0)
		return (xport_reset_tight(l->xp, delay));
	return (xport_reset_classic(l->xp, delay));
}

/*
 * Get the ROM's attention.  The first attempt only syncs (a unit in USB
 * download mode is already listening and a reset could drop it out);
 * later attempts reset into the bootloader first when the port can.
 */
int
loader_connect(struct loader *l)
{
	unsigned	attempt, try;
	char		text[4 * sizeof(l->noise) + 1];
	int		error = -ETIMEDOUT;

	l->noise_len = 0;
	for (attempt = 0; attempt < l->connect_attempts; attempt++) {
		if (attempt > 0 && xport_can_reset(l->xp)) {
			error = loader_reset_into_rom(l, attempt);
			if (error != 0)
				return (loader_io_fail(l, error, 0));
		}
		for (try = 0; try < LOADER_SYNC_TRIES; try++) {
			if ((error = loader_flush(l)) != 0)
				return (loader_io_fail(l, error, 0));
			error = loader_sync_once(l);
			if (error == 0)
				return (0);
			if (error == -ECANCELED || error == -ENODEV)
				return (loader_prefix(l, error, "SYNC"));
			if ((error = xport_pause(l->xp,
			    LOADER_SYNC_GAP_MS)) != 0)
				return (loader_io_fail(l, error, 0));
		}
	}
	if (l->noise_len > 0) {
		/* What the unit printed is its own text: untrusted. */
		util_sanitize(text, sizeof(text), l->noise, l->noise_len);
		return (loader_fail(l, -ETIMEDOUT, "no answer to SYNC after "
		    "%u attempts; the unit printed \"%s\" instead: it is not "
		    "in download mode or cannot answer; hold BOOT (GPIO0), "
		    "press RESET, release BOOT and retry", l->connect_attempts,
		    text));
	}
	return (loader_fail(l, -ETIMEDOUT, "no answer to SYNC after %u "
	    "attempts: the unit is not in download mode; hold BOOT (GPIO0), "
	    "press RESET, release BOOT and retry", l->connect_attempts));
}

/* ============================ detection =============================== */

/*
 * GET_SECURITY_INFO: flags (and on S3 and later a chip id).  The ESP32
 * ROM does not know the command; that is not an error here.
 */
static int
loader_security_info(struct loader *l, const struct chip_info **chip)
{
	struct proto_resp	resp;
	size_t			len;
	int			error;

	*chip = NULL;
	len = proto_build(l->tx, sizeof(l->tx), PROTO_GET_SECURITY_INFO, NULL,
	    0, 0);
	error = loader_command(l, len, l->default_ms, NULL, &resp);
	if (error == -EPROTO || error == -ENOTSUP)
		return (0);
	if (error != 0)
		return (error);
	if (resp.data_len >= PROTO_SECINFO_S2_LEN) {
		l->secinfo_flags = le32_get(resp.data);
		l->sdm = (l->secinfo_flags & (1u << 2)) != 0;
	}
	if (resp.data_len >= 20)
		*chip = chip_by_image_id((int)le32_get(resp.data + 12));
	return (0);
}

/* Which chip, its MAC and package, and whether the link is USB-OTG. */
int
loader_detect(struct loader *l)
{
	const struct chip_info	*chip;
	uint32_t		 magic, mac0, mac1, w3, w4, v;
	int			 error;

	if ((error = loader_security_info(l, &chip)) != 0)
		return (error);
	if (chip == NULL) {
		error = loader_read_reg(l, CHIP_MAGIC_REG, &magic);
		if (error != 0 && loader_unsupported(l, error)) {
			l->sdm = 1;
			l->chip = chip_by_id(CHIP_ESP32S2);
		} else if (error != 0)
			return (error);
		else if ((chip = chip_by_magic(magic)) == NULL)
			return (loader_fail(l, -ENOTSUP, "unknown chip (magic "
			    "0x%08x at 0x%08x); espfleet knows ESP8266, ESP32 "
			    "and ESP32-S2/S3/C3", magic, CHIP_MAGIC_REG));
	}
	if (chip != NULL)
		l->chip = chip;
	if (l->sdm)
		return (loader_fail(l, -ENOTSUP, "%s in Secure Download Mode: "
		    "the ROM refuses to read flash back, so espfleet cannot "
		    "verify a write; disable secure download mode or flash "
		    "it with a signed-update tool", l->chip->name));
	if (!l->stub)
		l->status_len = l->chip->rom_status_len;

	if (l->chip->efuse_mac0 != 0) {
		if ((error = loader_read_reg(l, l->chip->efuse_mac0,
		    &mac0)) != 0 ||
		    (error = loader_read_reg(l, l->chip->efuse_mac1,
		    &mac1)) != 0)
			return (error);
		chip_mac_from_efuse(l->chip, mac0, mac1, l->mac);
		l->have_mac = 1;
	}
	if (l->chip->id == CHIP_ESP32S2) {
		if ((error = loader_read_reg(l, S2_EFUSE_WORD3, &w3)) != 0 ||
		    (error = loader_read_reg(l, S2_EFUSE_WORD4, &w4)) != 0)
			return (error);
		snprintf(l->package, sizeof(l->package), "%s",
		    chip_s2_package(w3, w4));
		chip_s2_revision(w3, w4, &l->rev_major, &l->rev_minor);
	} else
		snprintf(l->package, sizeof(l->package), "%s", l->chip->name);
	if (l->chip->uartdev_buf_no != 0) {
		if ((error = loader_read_reg(l, l->chip->uartdev_buf_no,
		    &v)) != 0)
			return (error);
		l->usb_otg = (v & 0xff) == l->chip->uartdev_usb_otg;
	}
	if (!l->chip->full_support)
		return (loader_fail(l, -ENOTSUP, "%s is not supported yet: "
		    "espfleet writes ESP32-S2 units", l->chip->name));
	return (0);
}

/* ========================== SPI flash set-up ========================== */

/* RDID (0x9F) as a user SPI command through the chip's registers. */
int
loader_flash_id(struct loader *l, uint32_t *id)
{
	const struct chip_info	*c = l->chip;
	uint32_t		 base, usr, usr2, cmd;
	int			 error, i;

	if (c == NULL || c->spi_base == 0)
		return (loader_fail(l, -ENOTSUP, "no SPI registers known for "
		    "this chip"));
	base = c->spi_base;
	if ((error = loader_read_reg(l, base + c->spi_usr, &usr)) != 0 ||
	    (error = loader_read_reg(l, base + c->spi_usr2, &usr2)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_miso_dlen,
	    24 - 1)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_usr,
	    SPI_USR_COMMAND | SPI_USR_MISO)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_usr2,
	    (7u << 28) | SPI_FLASH_RDID)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_w0, 0)) != 0 ||
	    (error = loader_write_reg(l, base, SPI_CMD_USR)) != 0)
		return (loader_prefix(l, error, "reading the flash id"));
	for (i = 0; i < SPI_POLL_READS; i++) {
		if ((error = loader_read_reg(l, base, &cmd)) != 0)
			return (loader_prefix(l, error,
			    "reading the flash id"));
		if ((cmd & SPI_CMD_USR) == 0)
			break;
	}
	if (i == SPI_POLL_READS)
		return (loader_fail(l, -ETIMEDOUT, "reading the flash id: SPI "
		    "command did not complete in time"));
	if ((error = loader_read_reg(l, base + c->spi_w0, id)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_usr, usr)) != 0 ||
	    (error = loader_write_reg(l, base + c->spi_usr2, usr2)) != 0)
		return (loader_prefix(l, error, "reading the flash id"));
	*id &= 0xffffff;
	return (0);
}

/* Attach the SPI flash, learn its size, and tell the ROM about it. */
int
loader_attach(struct loader *l)
{
	struct proto_resp	resp;
	size_t			len;
	int			error;

	if (!l->stub) {
		len = proto_build_spi_attach(l->tx, sizeof(l->tx), 0, 1);
		if ((error = loader_command(l, len, l->default_ms, NULL,
		    &resp)) != 0)
			return (error);
	}
	if ((error = loader_flash_id(l, &l->flash_id)) != 0)
		return (error);
	l->flash_size = chip_flash_size_from_id(l->flash_id);
	/* Unknown ids get esptool's default of 4 MB for the ROM. */
	len = proto_build_spi_set_params(l->tx, sizeof(l->tx),
	    l->flash_size != 0 ? l->flash_size : 4 * 1024 * 1024);
	return (loader_command(l, len, l->default_ms, NULL, &resp));
}

/* Faster UART for the data; USB-OTG has no baud rate to change. */
int
loader_set_baud(struct loader *l, unsigned baud)
{
	struct proto_resp	resp;
	size_t			len;
	int			error;

	if (baud <= 115200 || l->usb_otg || baud == l->xp->baud)
		return (0);
	len = proto_build_change_baud(l->tx, sizeof(l->tx), baud,
	    l->stub ? l->xp->baud : 0);
	if ((error = loader_command(l, len, l->default_ms, NULL, &resp)) != 0)
		return (error);
	if ((error = xport_set_baud(l->xp, baud)) != 0)
		return (loader_fail(l, error, "cannot set %u baud on the port: "
		    "%s", baud, strerror(-error)));
	/* esptool lets the chip settle 50 ms on the new rate (PROTOCOL 7). */
	if ((error = xport_pause(l->xp, LOADER_BAUD_SETTLE_MS)) != 0 ||
	    (error = loader_flush(l)) != 0)
		return (loader_io_fail(l, error, 0));
	return (0);
}

/* ============================== writing =============================== */

/* Report progress if anyone listens. */
static void
loader_progress(struct loader *l, enum loader_phase ph, uint32_t addr,
    size_t done, size_t len)
{
	if (l->progress != NULL)
		l->progress(l->progress_arg, ph, addr, done, len);
}

/*
 * Inflate one compressed block to count the bytes it will write: the ROM
 * answers only after writing them, so the block's timeout follows the
 * inflated size (as esptool does), and progress is in flash bytes.
 */
static int
loader_inflate_count(z_stream *zs, const uint8_t *in, size_t len,
    size_t *out, int *end)
{
	uint8_t	scratch[8192];
	int	zr;

	*out = 0;
	zs->next_in = (Bytef *)(uintptr_t)in;
	zs->avail_in = (uInt)len;
	for (;;) {
		zs->next_out = scratch;
		zs->avail_out = sizeof(scratch);
		zr = inflate(zs, Z_NO_FLUSH);
		*out += sizeof(scratch) - zs->avail_out;
		if (zr == Z_STREAM_END) {
			*end = 1;
			return (zs->avail_in == 0 ? 0 : -EINVAL);
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return (-EINVAL);
		if (zs->avail_out != 0 || zr == Z_BUF_ERROR)
			break;
	}
	return (zs->avail_in == 0 ? 0 : -EINVAL);
}

/* Is a failed block worth sending again? */
static int
loader_retryable(int error)
{
	return (error == -ETIMEDOUT || error == -EPROTO || error == -EBADMSG);
}

/*
 * FLASH_DEFL_BEGIN (the ROM erases the rounded size first), then the zlib
 * stream in 0x400-byte blocks, each retried up to block_attempts times.
 * No FLASH_DEFL_END: it would make the ROM leave download mode.
 */
int
loader_write(struct loader *l, const struct loader_region *r)
{
	struct proto_resp	 resp;
	z_stream		 zs;
	char			 what[96];
	const uint8_t		*chunk;
	size_t			 len, clen, inflated, done = 0, erase;
	uint32_t		 seq, nblocks, addr;
	unsigned		 attempt, timeout;
	int			 error, end = 0, enc;

	if (r->zlen == 0 || r->len == 0)
		return (loader_fail(l, -EINVAL, "region at 0x%x is empty",
		    r->offset));
	nblocks = (uint32_t)((r->zlen + PROTO_ROM_BLOCK - 1) /
	    PROTO_ROM_BLOCK);
	/* The ROM takes the erase size; a stub takes the exact length. */
	erase = l->stub ? r->len : (r->len + PROTO_ROM_BLOCK - 1) /
	    PROTO_ROM_BLOCK * PROTO_ROM_BLOCK;
	/* The 5th (encrypted) word: any stub, and ROMs after the ESP32. */
	enc = l->stub || (l->chip->id != CHIP_ESP32 &&
	    l->chip->id != CHIP_ESP8266);
	loader_progress(l, LOADER_PH_ERASING, r->offset, 0, r->len);
	len = proto_build_begin(l->tx, sizeof(l->tx), PROTO_FLASH_DEFL_BEGIN,
	    (uint32_t)erase, nblocks, PROTO_ROM_BLOCK, r->offset, enc);
	timeout = loader_timeout_per_mb(30000, erase);
	snprintf(what, sizeof(what), "FLASH_DEFL_BEGIN at 0x%x (%zu bytes)",
	    r->offset, erase);
	if ((error = loader_command(l, len, timeout, what, &resp)) != 0)
		return (error);

	memset(&zs, 0, sizeof(zs));
	if (inflateInit(&zs) != Z_OK)
		return (loader_fail(l, -ENOMEM, "zlib: cannot initialise"));
	for (seq = 0; seq < nblocks; seq++) {
		chunk = r->zdata + (size_t)seq * PROTO_ROM_BLOCK;
		clen = MINIMUM(PROTO_ROM_BLOCK,
		    r->zlen - (size_t)seq * PROTO_ROM_BLOCK);
		addr = r->offset + (uint32_t)done;
		if (end || loader_inflate_count(&zs, chunk, clen, &inflated,
		    &end) != 0 || done + inflated > r->len) {
			error = loader_fail(l, -EINVAL, "region at 0x%x: the "
			    "compressed data is damaged at block %u; reload "
			    "the image", r->offset, seq + 1);
			goto out;
		}
		len = proto_build_data(l->tx, sizeof(l->tx),
		    PROTO_FLASH_DEFL_DATA, seq, chunk, clen);
		timeout = loader_timeout_per_mb(40000, inflated);
		snprintf(what, sizeof(what), "FLASH_DEFL_DATA block %u/%u at "
		    "0x%x", seq + 1, nblocks, addr);
		for (attempt = 0; attempt < l->block_attempts; attempt++) {
			if (attempt > 0) {
				/* Drop a late reply to the failed try. */
				if ((error = loader_flush(l)) != 0) {
					loader_io_fail(l, error, 0);
					loader_prefix(l, error, what);
					goto out;
				}
				l->retries++;
			}
			error = loader_command(l, len, timeout, what, &resp);
			if (error == 0 || !loader_retryable(error))
				break;
		}
		if (error != 0)
			goto out;
		done += inflated;
		loader_progress(l, LOADER_PH_WRITING,
		    r->offset + (uint32_t)done, done, r->len);
	}
	if (!end || done != r->len)
		error = loader_fail(l, -EINVAL, "region at 0x%x: the "
		    "compressed data holds %zu bytes, not %zu; reload the image",
		    r->offset, done, r->len);
out:
	inflateEnd(&zs);
	return (error);
}

/* SPI_FLASH_MD5: the ROM sends 32 hex digits, a stub 16 raw bytes. */
int
loader_flash_md5(struct loader *l, uint32_t addr, uint32_t size,
    char hex[33])
{
	struct proto_resp	resp;
	size_t			len, i;
	int			error;

	len = proto_build_md5(l->tx, sizeof(l->tx), addr, size);
	if ((error = loader_command(l, len, loader_timeout_per_mb(8000, size),
	    NULL, &resp)) != 0)
		return (error);
	if (l->stub && resp.data_len >= 16) {
		digest_hex(resp.data, 16, hex);
		return (0);
	}
	if (resp.data_len < PROTO_MD5_HEX_LEN)
		return (loader_fail(l, -EBADMSG, "SPI_FLASH_MD5: short reply "
		    "(%zu bytes)", resp.data_len));
	for (i = 0; i < PROTO_MD5_HEX_LEN; i++) {
		hex[i] = (char)resp.data[i];
		if (hex[i] >= 'A' && hex[i] <= 'F')
			hex[i] = (char)(hex[i] - 'A' + 'a');
		if (!((hex[i] >= '0' && hex[i] <= '9') ||
		    (hex[i] >= 'a' && hex[i] <= 'f')))
			return (loader_fail(l, -EBADMSG, "SPI_FLASH_MD5: the "
			    "reply is not a hex digest"));
	}
	hex[PROTO_MD5_HEX_LEN] = '\0';
	return (0);
}

/* MD5 of len bytes of 0xFF: what an erased but unwritten region gives. */
static void
loader_md5_erased(size_t len, char hex[33])
{
	struct digest_md5_ctx	ctx;
	uint8_t			ff[4096], sum[16];
	size_t			n;

	memset(ff, 0xff, sizeof(ff));
	digest_md5_init(&ctx);
	while (len > 0) {
		n = MINIMUM(len, sizeof(ff));
		digest_md5_update(&ctx, ff, n);
		len -= n;
	}
	digest_md5_final(&ctx, sum);
	digest_hex(sum, sizeof(sum), hex);
}

/* Compare the flash's MD5 of the region with the image's. */
int
loader_verify(struct loader *l, const struct loader_region *r)
{
	char	hex[33], erased[33];
	int	error;

	loader_progress(l, LOADER_PH_VERIFYING, r->offset, r->len, r->len);
	if ((error = loader_flash_md5(l, r->offset, (uint32_t)r->len,
	    hex)) != 0)
		return (error);
	if (strcmp(hex, r->md5hex) == 0)
		return (0);
	loader_md5_erased(r->len, erased);
	if (strcmp(hex, erased) == 0)
		return (loader_fail(l, -EIO, "write failed, the flash region "
		    "is empty (0x%x, %zu bytes all 0xFF)", r->offset, r->len));
	return (loader_fail(l, -EIO, "MD5 of flash does not match the image "
	    "at 0x%x (%zu bytes): flash %s, image %s", r->offset, r->len, hex,
	    r->md5hex));
}

/* =============================== after ================================ */

/*
 * The ESP32-S2 ROM cannot be reset over its own USB, so arm the RTC
 * watchdog with esptool's exact writes (PROTOCOL.md 5.5).  The chip may
 * reset before it answers the last write, so that answer is optional.
 */
static int
loader_s2_watchdog_reset(struct loader *l)
{
	int	error;

	if ((error = loader_write_reg(l, S2_WDT_WPROTECT, S2_WDT_WKEY)) != 0 ||
	    (error = loader_write_reg(l, S2_WDT_CONFIG1, 2000)) != 0 ||
	    (error = loader_write_reg(l, S2_WDT_CONFIG0,
	    (1u << 31) | (5u << 28) | (1u << 8) | 2)) != 0)
		return (loader_prefix(l, error, "watchdog reset"));
	(void)loader_write_reg(l, S2_WDT_WPROTECT, 0);
	return (0);
}

/* Boot the new firmware (or stay in download mode). */
int
loader_finish(struct loader *l, enum loader_after after)
{
	uint32_t	strap, option1;
	int		error;

	if (after == LOADER_AFTER_STAY)
		return (0);
	if (l->chip != NULL && l->chip->id == CHIP_ESP32S2 && l->usb_otg &&
	    !l->stub) {
		if ((error = loader_read_reg(l, S2_GPIO_STRAP, &strap)) != 0 ||
		    (error = loader_read_reg(l, S2_RTC_OPTION1, &option1)) != 0)
			return (loader_prefix(l, error, "reset"));
		/* GPIO0 low at reset and no forced download boot. */
		if ((strap & 0x8) == 0 && (option1 & 0x1) == 0)
			return (loader_s2_watchdog_reset(l));
	}
	if (!xport_can_reset(l->xp))
		return (loader_fail(l, -ENOTSUP, "not reset: %s has no modem "
		    "lines; power-cycle the unit to run the new firmware",
		    l->xp->path));
	if ((error = xport_reset_hard(l->xp, l->usb_otg)) != 0) {
		loader_io_fail(l, error, 0);
		return (loader_prefix(l, error, "hard reset"));
	}
	return (0);
}
