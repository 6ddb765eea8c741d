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
#include "loader-private.h"
#include "proto.h"
#include "slip.h"
#include "transport.h"
#include "util.h"

/* ESP32-S2 registers (PROTOCOL.md 4.2 and 5.5). */
#define S2_EFUSE_WORD3		0x3F41A050u
#define S2_EFUSE_WORD4		0x3F41A054u
#define S2_GPIO_STRAP		0x3F404038u
#define S2_RTC_OPTION1		0x3F408128u
#define S2_FORCE_DL_BOOT	0x1u	/* RTC_CNTL_OPTION1 bit 0 */
#define S2_WDT_CONFIG0		0x3F408094u
#define S2_WDT_CONFIG1		0x3F408098u
#define S2_WDT_WPROTECT		0x3F4080ACu
#define S2_WDT_WKEY		0x50D83AA1u

#define ESP32_UART_CLKDIV	0x3FF40014u	/* esptool targets/esp32.py */

/* SPI user-command bits (PROTOCOL.md 4.3). */
#define SPI_CMD_USR		(1u << 18)
#define SPI_USR_COMMAND		(1u << 31)
#define SPI_USR_MISO		(1u << 28)
#define SPI_FLASH_RDID		0x9F
#define SPI_POLL_READS		10

#define LOADER_MAX_FRAMES	100	/* frames per command, at most */
#define LOADER_DRAIN_MS		200	/* repeated "invalid" replies */
#define LOADER_BAUD_SETTLE_MS	50	/* after CHANGE_BAUDRATE */
#define LOADER_STUB_BLOCK	0x4000	/* stub FLASH_DEFL_DATA block */

/* ============================ errors ================================== */

/* Replace l->cause with a formatted sentence and return error. */
int printflike(3, 4)
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
void
loader_clear(struct loader *l)
{
	free(l->cause);
	l->cause = NULL;
}

/* Put "what: " in front of the current cause and return error. */
int
loader_prefix(struct loader *l, int error, const char *what)
{
	char	*s;

	s = xasprintf("%s: %s", what, l->cause != NULL ? l->cause : "failed");
	free(l->cause);
	l->cause = s;
	return (error);
}

/* Set the cause for a transport failure while talking about op. */
int
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
	l->reenum_ms = 5000;
	l->trick_ms = 1500;
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
int
loader_flush(struct loader *l)
{
	l->rx_off = l->rx_len = 0;
	slip_dec_init(&l->dec, l->frame, sizeof(l->frame));
	return (xport_flush_in(l->xp));
}

/*
 * Next complete SLIP frame into dec before the deadline: its length, or
 * -errno.  Text outside frames is kept for messages.
 */
int
loader_recv_frame(struct loader *l, struct slip_dec *dec, uint64_t deadline)
{
	size_t	noise;
	uint8_t	c;
	int	n;

	for (;;) {
		while (l->rx_off < l->rx_len) {
			c = l->rx[l->rx_off++];
			noise = dec->noise;
			if (slip_dec_byte(dec, c) == SLIP_FRAME)
				return ((int)dec->len);
			/* Keep the start of any text outside frames. */
			if (dec->noise != noise &&
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

/* Next complete reply frame into l->frame: its length, or -errno. */
int
loader_recv(struct loader *l, uint64_t deadline)
{
	return (loader_recv_frame(l, &l->dec, deadline));
}

/* SLIP-encode the len bytes in buf and write them as one frame. */
int
loader_send_frame(struct loader *l, const uint8_t *buf, size_t len,
    uint64_t deadline)
{
	size_t	n;

	if (len == 0 ||
	    (n = slip_encode(l->wire, sizeof(l->wire), buf, len)) == 0)
		return (-EMSGSIZE);
	return (xport_write(l->xp, l->wire, n, deadline));
}

/* SLIP-encode the len-byte request in l->tx and write it. */
int
loader_send(struct loader *l, size_t len, uint64_t deadline)
{
	return (loader_send_frame(l, l->tx, len, deadline));
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
int
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

/* ============================ detection =============================== */

/* Decode the payload: u32 flags, u8 crypt count, u8 key purposes[7]. */
int
loader_security_parse(const uint8_t *p, size_t len,
    struct loader_security *sec)
{
	memset(sec, 0, sizeof(*sec));
	if (len < PROTO_SECINFO_S2_LEN)
		return (-EBADMSG);
	sec->valid = 1;
	sec->flags = le32_get(p);
	sec->crypt_cnt = p[4];
	memcpy(sec->key_purposes, p + 5, sizeof(sec->key_purposes));
	return (0);
}

/* An odd number of bits set in the crypt count: encryption is on. */
int
loader_security_encrypted(const struct loader_security *sec)
{
	unsigned	c = sec->crypt_cnt & 0x7, n = 0;

	for (; c != 0; c >>= 1)
		n += c & 1;
	return (sec->valid && (n & 1) != 0);
}

/* The flags in words, for the details view and the records. */
void
loader_security_text(const struct loader_security *sec, char *buf,
    size_t cap)
{
	static const char *const names[] = {
		"secure boot", "aggressive key revocation",
		"secure download mode", "key 0 revoked", "key 1 revoked",
		"key 2 revoked", "JTAG soft-disabled", "JTAG disabled",
		"USB disabled", "download D-cache disabled",
		"download I-cache disabled",
	};
	size_t	i, len = 0;

	buf[0] = '\0';
	if (!sec->valid) {
		snprintf(buf, cap, "unknown");
		return;
	}
	for (i = 0; i < nitems(names); i++) {
		if ((sec->flags & (1u << i)) == 0 || len >= cap)
			continue;
		len += (size_t)snprintf(buf + len, cap - len, "%s%s",
		    len > 0 ? ", " : "", names[i]);
	}
	if (loader_security_encrypted(sec) && len < cap)
		len += (size_t)snprintf(buf + len, cap - len, "%sflash "
		    "encryption (count 0x%x)", len > 0 ? ", " : "",
		    sec->crypt_cnt);
	if (len == 0)
		snprintf(buf, cap, "none");
}

/* Would the unit refuse to run what we write?  Say so before writing. */
int
loader_security_check(const struct loader_security *sec,
    size_t unsigned_images, char **cause)
{
	if (!sec->valid)
		return (0);
	if (sec->flags & LOADER_SEC_DOWNLOAD_MODE) {
		*cause = xasprintf("the unit is in secure download mode: its "
		    "ROM will not read flash back, so a write cannot be "
		    "verified; flash it with a signed-update tool");
		return (-EPERM);
	}
	if (loader_security_encrypted(sec)) {
		*cause = xasprintf("flash encryption is enabled on the unit "
		    "(SPI_BOOT_CRYPT_CNT 0x%x): a plaintext image written "
		    "over the ROM will not boot; write encrypted images with "
		    "the unit's key instead", sec->crypt_cnt);
		return (-EPERM);
	}
	if ((sec->flags & LOADER_SEC_SECURE_BOOT) && unsigned_images > 0) {
		*cause = xasprintf("secure boot is enabled on the unit and %zu "
		    "image%s in the job %s no signature block: the unit "
		    "would refuse to boot it; sign the images with the "
		    "unit's key", unsigned_images, unsigned_images == 1 ? "" :
		    "s", unsigned_images == 1 ? "has" : "have");
		return (-EPERM);
	}
	return (0);
}

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
	if (loader_security_parse(resp.data, resp.data_len, &l->sec) == 0) {
		l->secinfo_flags = l->sec.flags;
		l->sdm = (l->sec.flags & LOADER_SEC_DOWNLOAD_MODE) != 0;
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
	/* The S2 runs from a 40 MHz crystal, esptool reads nothing. */
	if (l->chip->id == CHIP_ESP32S2)
		l->crystal_mhz = 40;
	else if (l->chip->id == CHIP_ESP32) {
		/* UART clock divider at the known baud (esptool). */
		if ((error = loader_read_reg(l, ESP32_UART_CLKDIV, &v)) != 0)
			return (error);
		l->crystal_mhz = (uint64_t)(l->xp->baud != 0 ? l->xp->baud :
		    115200) * (v & 0xfffff) / 1000000 > 33 ? 40 : 26;
	}
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
 * After a DATA block got no (or a damaged) reply: send READ_REG and wait
 * for its answer.  The loader answers commands in order, so every late
 * reply to the block arrives before it and none is left to be taken for
 * the reply to the next command.  *late is the status of the last late
 * reply to op (0 OK, else the ROM/stub status), -1 when none came.
 */
static int
loader_settle(struct loader *l, uint8_t op, int *late)
{
	struct proto_resp	resp;
	uint8_t			req[64];
	uint64_t		deadline;
	size_t			len;
	int			error, n, i;

	*late = -1;
	len = proto_build_read_reg(req, sizeof(req), CHIP_MAGIC_REG);
	deadline = util_now_ms() + l->default_ms;
	if ((error = loader_send_frame(l, req, len, deadline)) != 0)
		return (loader_io_fail(l, error, l->default_ms));
	for (i = 0; i < LOADER_MAX_FRAMES; i++) {
		if ((n = loader_recv(l, deadline)) < 0)
			return (loader_io_fail(l, n, l->default_ms));
		if (n < PROTO_HDR_LEN || l->frame[0] != 0x01 ||
		    proto_parse_resp(l->frame, (size_t)n, l->status_len,
		    &resp) != 0)
			continue;
		if (l->frame[1] == op)
			*late = resp.status == 0 ? 0 : resp.error;
		else if (l->frame[1] == PROTO_READ_REG)
			return (0);
	}
	return (loader_fail(l, -EPROTO, "no reply to READ_REG among %d "
	    "frames", LOADER_MAX_FRAMES));
}

/*
 * Send one DATA block (in l->tx) until it is taken, at most block_attempts
 * times.  esptool sends a block again after a timeout; here a timeout or
 * a damaged reply is first settled (loader_settle): a late OK means the
 * block was taken and is not sent again.  The ROM answers a block whose
 * seq it already took with status 1, error 0x01 (a bad parameter: it
 * expects seq + 1) and keeps its state, so that answer to a block sent
 * again after an unanswered try means the first try was taken (its reply
 * was lost): the previous block was confirmed and this is the newest seq
 * sent, so the ROM can only be expecting the next one.  A stub simply
 * ACKs a repeated block.  A wrong guess cannot pass unnoticed: the next
 * block would be refused and the region's MD5 is checked afterwards.
 */
static int
loader_data_block(struct loader *l, size_t len, unsigned timeout,
    const char *what)
{
	struct proto_resp	resp;
	unsigned		attempt = 0;
	int			error, late, again = 0;
	uint8_t			op = l->tx[1];

	for (;;) {
		error = loader_command(l, len, timeout, what, &resp);
		if (error == 0)
			return (0);
		if (again && error == -EPROTO && !l->stub &&
		    l->last_status == 1 && l->last_error == PROTO_E_PARAM) {
			loader_clear(l);
			return (0);	/* taken by the unanswered try */
		}
		if (!loader_retryable(error) ||
		    ++attempt >= l->block_attempts)
			return (error);
		again = 0;
		if (error == -ETIMEDOUT || error == -EBADMSG) {
			if ((error = loader_settle(l, op, &late)) != 0)
				return (loader_prefix(l, error, what));
			if (late == 0) {
				loader_clear(l);
				return (0);	/* the late reply was OK */
			}
			again = late < 0;
		} else if ((error = loader_flush(l)) != 0) {
			/* A ROM status: the block was not taken. */
			loader_io_fail(l, error, 0);
			return (loader_prefix(l, error, what));
		}
		l->retries++;
	}
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
	size_t			 bsize;
	uint32_t		 seq, nblocks, addr, v;
	unsigned		 timeout, prev_timeout = 0;
	int			 error, end = 0, enc;

	if (r->zlen == 0 || r->len == 0)
		return (loader_fail(l, -EINVAL, "region at 0x%x is empty",
		    r->offset));
	/* Stub: 16 KiB blocks, 2 KiB on S2 USB-OTG (PROTOCOL.md 5.1). */
	bsize = !l->stub ? PROTO_ROM_BLOCK : l->usb_otg ? LOADER_USB_BLOCK :
	    LOADER_STUB_BLOCK;
	nblocks = (uint32_t)((r->zlen + bsize - 1) / bsize);
	/* The ROM takes the erase size; a stub takes the exact length. */
	erase = l->stub ? r->len : (r->len + PROTO_ROM_BLOCK - 1) /
	    PROTO_ROM_BLOCK * PROTO_ROM_BLOCK;
	/* The 5th (encrypted) word: any stub, and ROMs after the ESP32. */
	enc = l->stub || (l->chip->id != CHIP_ESP32 &&
	    l->chip->id != CHIP_ESP8266);
	loader_progress(l, LOADER_PH_ERASING, r->offset, 0, r->len);
	len = proto_build_begin(l->tx, sizeof(l->tx), PROTO_FLASH_DEFL_BEGIN,
	    (uint32_t)erase, nblocks, (uint32_t)bsize, r->offset, enc);
	/* The ROM erases now; a stub erases while it writes. */
	timeout = l->stub ? l->default_ms : loader_timeout_per_mb(30000,
	    erase);
	snprintf(what, sizeof(what), "FLASH_DEFL_BEGIN at 0x%x (%zu bytes)",
	    r->offset, erase);
	if ((error = loader_command(l, len, timeout, what, &resp)) != 0)
		return (error);

	memset(&zs, 0, sizeof(zs));
	if (inflateInit(&zs) != Z_OK)
		return (loader_fail(l, -ENOMEM, "zlib: cannot initialise"));
	for (seq = 0; seq < nblocks; seq++) {
		chunk = r->zdata + (size_t)seq * bsize;
		clen = MINIMUM(bsize, r->zlen - (size_t)seq * bsize);
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
		if (l->stub) {
			/*
			 * The stub ACKs a block at once and writes it while
			 * the next arrives: this reply waits for the previous
			 * block's write (and its erase, up to 64 KiB per
			 * 32 KiB inflated), as esptool reckons.
			 */
			v = prev_timeout;
			prev_timeout = loader_timeout_per_mb(40000, inflated) +
			    loader_timeout_per_mb(30000, (inflated / 0x8000 +
			    1) * 0x10000);
			timeout = MAXIMUM(v, l->default_ms);
		}
		snprintf(what, sizeof(what), "FLASH_DEFL_DATA block %u/%u at "
		    "0x%x", seq + 1, nblocks, addr);
		if ((error = loader_data_block(l, len, timeout, what)) != 0)
			goto out;
		done += inflated;
		loader_progress(l, LOADER_PH_WRITING,
		    r->offset + (uint32_t)done, done, r->len);
	}
	if (!end || done != r->len) {
		error = loader_fail(l, -EINVAL, "region at 0x%x: the "
		    "compressed data holds %zu bytes, not %zu; reload the image",
		    r->offset, done, r->len);
		goto out;
	}
	if (l->stub) {
		/* Answered only once the last block is really written. */
		len = proto_build_read_reg(l->tx, sizeof(l->tx),
		    CHIP_MAGIC_REG);
		snprintf(what, sizeof(what), "waiting for the stub to write "
		    "the last block at 0x%x", r->offset + (uint32_t)done);
		error = loader_command(l, len, MAXIMUM(prev_timeout,
		    l->default_ms), what, &resp);
	}
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

	l->after_done = after;
	if (after == LOADER_AFTER_STAY)
		return (0);
	if (l->chip != NULL && l->chip->id == CHIP_ESP32S2 && l->usb_otg) {
		if ((error = loader_read_reg(l, S2_GPIO_STRAP, &strap)) != 0 ||
		    (error = loader_read_reg(l, S2_RTC_OPTION1, &option1)) != 0)
			return (loader_prefix(l, error, "reset"));
		/*
		 * An app that restarted into download mode left the sticky
		 * FORCE_DOWNLOAD_BOOT bit set: any reset would come back
		 * here.  Clear it (esptool does so for the S3) and let the
		 * watchdog boot the app; an RTS pulse does not reach the
		 * ROM over its own USB.
		 */
		if ((option1 & S2_FORCE_DL_BOOT) != 0) {
			if ((error = loader_write_reg(l, S2_RTC_OPTION1,
			    option1 & ~S2_FORCE_DL_BOOT)) != 0)
				return (loader_prefix(l, error, "clearing "
				    "FORCE_DOWNLOAD_BOOT before the reset"));
			l->force_dl_cleared = 1;
			return (loader_s2_watchdog_reset(l));
		}
		/* GPIO0 low at reset: only the watchdog gets out. */
		if ((strap & 0x8) == 0)
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
