/*
 * Reading flash against a scripted peer on a socketpair: the ROM's
 * READ_FLASH_SLOW (64 data bytes a reply, the first len kept) and the
 * stub's streamed READ_FLASH (the request's four words, one ACK per
 * packet with the count so far, the MD5 checked), and what each refuses:
 * a wrong digest, a short packet, a failed status, silence; and the
 * checked read: MD5 first, erased flash not read, damaged bytes refused.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "loader.h"
#include "proto.h"
#include "readflash.h"
#include "slip.h"
#include "tap.h"
#include "transport.h"
#include "util.h"

#define T_ADDR		0x9000
#define T_LEN		5000	/* one full 4 KiB packet and 904 bytes */

struct peer {
	int		 fd;		/* the unit's end */
	struct xport	 xp;
	struct loader	 l;
};

/* A loader on one end of a socketpair, as the ROM (stub 0) or a stub. */
static int
peer_open(struct peer *p, int stub)
{
	char	*cause = NULL;
	int	 sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return (-1);
	p->fd = sv[1];
	xport_init(&p->xp, -1);
	if (xport_open_fd(&p->xp, sv[0], "peer", 1, &cause) != 0) {
		tap_diag("xport_open_fd: %s", cause);
		free(cause);
		close(sv[0]);
		close(sv[1]);
		return (-1);
	}
	loader_init(&p->l, &p->xp);
	p->l.stub = stub;
	p->l.status_len = stub ? 2 : 4;
	p->l.default_ms = 300;
	return (0);
}

/* Close both ends. */
static void
peer_close(struct peer *p)
{
	loader_free(&p->l);
	xport_close(&p->xp);
	close(p->fd);
}

/* Send one SLIP frame from the unit's end. */
static void
peer_frame(struct peer *p, const uint8_t *data, size_t len)
{
	uint8_t	*wire;
	size_t	 w;

	wire = xmalloc(SLIP_ENCODED_MAX(len));
	w = slip_encode(wire, SLIP_ENCODED_MAX(len), data, len);
	if (write(p->fd, wire, w) != (ssize_t)w)
		tap_diag("peer write: %s", strerror(errno));
	free(wire);
}

/* Send a reply to op with status and error, and data. */
static void
peer_reply(struct peer *p, uint8_t op, const uint8_t *data, size_t len,
    uint8_t status, uint8_t error)
{
	uint8_t	out[128];
	size_t	n;

	n = proto_build_resp(out, sizeof(out), op, 0, data, len,
	    p->l.status_len, status, error);
	peer_frame(p, out, n);
}

/* The frames the host sent, decoded; returns how many (at most max). */
static size_t
peer_sent(struct peer *p, uint8_t (*frames)[64], size_t *lens, size_t max)
{
	struct slip_dec	dec;
	uint8_t		buf[4096], fbuf[64];
	ssize_t		n, i;
	size_t		k = 0;

	slip_dec_init(&dec, fbuf, sizeof(fbuf));
	while ((n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		for (i = 0; i < n; i++) {
			if (slip_dec_byte(&dec, buf[i]) != SLIP_FRAME ||
			    k == max)
				continue;
			memcpy(frames[k], fbuf, dec.len);
			lens[k++] = dec.len;
		}
	}
	return (k);
}

/* Some flash: bytes no SLIP escape hides, and the escapes themselves. */
static void
fill(uint8_t *buf, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 8));
	buf[10] = 0xc0;
	buf[11] = 0xdb;
}

/* The stub's whole answer: reply, packets, digest (md5 NULL: the right one). */
static void
stub_answer(struct peer *p, const uint8_t *flash, size_t len, size_t short_by,
    const uint8_t *md5)
{
	uint8_t	right[16];
	size_t	off, n;

	peer_reply(p, PROTO_READ_FLASH, NULL, 0, 0, 0);
	for (off = 0; off < len; off += n) {
		n = MINIMUM(len - off, 0x1000);
		peer_frame(p, flash + off, off + n >= len ? n - short_by : n);
	}
	digest_md5(flash, len, right);
	peer_frame(p, md5 != NULL ? md5 : right, 16);
}

/* One way the stub's answer goes wrong, and what the host must say. */
struct stub_fault {
	const char	*what;
	enum { STUB_ANSWER, STUB_FAILS, STUB_STOPS } how;
	size_t		 short_by;	/* bytes missing from the last packet */
	int		 bad_md5;
	int		 error;
	const char	*cause;
};

/* Run one stub_fault against a fresh peer. */
static void
test_stub_fault(const struct stub_fault *c, const uint8_t *flash)
{
	static uint8_t	 got[T_LEN];
	uint8_t		 bad[16];
	struct peer	 p;
	char		*cause = NULL;
	int		 error;

	if (peer_open(&p, 1) != 0) {
		tap_ok(0, "socketpair for the stub");
		return;
	}
	memset(bad, 0x5a, sizeof(bad));
	if (c->how == STUB_ANSWER)
		stub_answer(&p, flash, T_LEN, c->short_by,
		    c->bad_md5 ? bad : NULL);
	else
		peer_reply(&p, PROTO_READ_FLASH, NULL, 0,
		    c->how == STUB_FAILS, c->how == STUB_FAILS ? 0xc1 : 0);
	error = readflash(&p.l, T_ADDR, got, T_LEN, &cause);
	tap_ok(error == c->error && cause != NULL &&
	    strstr(cause, c->cause) != NULL, "stub: %s (%s)", c->what, cause);
	peer_close(&p);
	free(cause);
}

/* The stub's READ_FLASH, and each way its stream can go wrong. */
static void
test_stub_read(void)
{
	static uint8_t	 flash[T_LEN], got[T_LEN];
	static const struct stub_fault cases[] = {
		{ "a wrong digest is refused", STUB_ANSWER, 0, 1, -EBADMSG,
		    "MD5 differs" },
		{ "a short packet is refused", STUB_ANSWER, 4, 0, -EBADMSG,
		    "900 bytes, 904 expected" },
		{ "a failed status is -EPROTO", STUB_FAILS, 0, 0, -EPROTO,
		    "stub status 0xc1" },
		{ "a stream that stops is a timeout", STUB_STOPS, 0, 0,
		    -ETIMEDOUT, "no data within 300 ms" },
	};
	uint8_t		 frames[8][64];
	size_t		 lens[8], n, i;
	struct peer	 p;
	char		*cause = NULL;
	int		 error;

	fill(flash, sizeof(flash));
	if (peer_open(&p, 1) != 0) {
		tap_ok(0, "socketpair for the stub");
		return;
	}
	stub_answer(&p, flash, sizeof(flash), 0, NULL);
	error = readflash(&p.l, T_ADDR, got, sizeof(got), &cause);
	tap_ok(error == 0, "stub: READ_FLASH of %d bytes (%s)", T_LEN,
	    cause != NULL ? cause : "ok");
	tap_ok(memcmp(got, flash, sizeof(flash)) == 0,
	    "... the bytes are the unit's, escapes included");
	n = peer_sent(&p, frames, lens, 8);
	tap_ok(n == 3, "... one request and two ACKs (%zu frames)", n);
	tap_ok(n >= 1 && lens[0] == PROTO_HDR_LEN + 16 &&
	    frames[0][1] == PROTO_READ_FLASH &&
	    le32_get(frames[0] + 8) == T_ADDR &&
	    le32_get(frames[0] + 12) == T_LEN &&
	    le32_get(frames[0] + 16) == 0x1000 &&
	    le32_get(frames[0] + 20) == 64,
	    "... asked as esptool asks: offset, length, 0x1000, 64");
	tap_ok(n == 3 && lens[1] == 4 && le32_get(frames[1]) == 4096 &&
	    lens[2] == 4 && le32_get(frames[2]) == T_LEN,
	    "... each ACK a raw u32 of the bytes so far (4096, %d)", T_LEN);
	peer_close(&p);
	free(cause);
	for (i = 0; i < nitems(cases); i++)
		test_stub_fault(&cases[i], flash);
}

/* The ROM's READ_FLASH_SLOW: 64 bytes a command. */
static void
test_rom_read(void)
{
	static uint8_t	 flash[T_LEN];
	uint8_t		 got[100], frames[8][64];
	size_t		 lens[8], n;
	struct peer	 p;
	char		*cause = NULL;
	int		 error;

	fill(flash, sizeof(flash));
	if (peer_open(&p, 0) != 0) {
		tap_ok(0, "socketpair for the ROM");
		return;
	}
	/* Each reply carries 64 bytes; the host keeps the first len. */
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash, 64, 0, 0);
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash + 64, 64, 0, 0);
	error = readflash(&p.l, T_ADDR, got, sizeof(got), &cause);
	tap_ok(error == 0 && memcmp(got, flash, sizeof(got)) == 0,
	    "ROM: 100 bytes in two READ_FLASH_SLOW (%s)",
	    cause != NULL ? cause : "ok");
	n = peer_sent(&p, frames, lens, 8);
	tap_ok(n == 2 && frames[0][1] == PROTO_READ_FLASH_SLOW &&
	    le32_get(frames[0] + 8) == T_ADDR &&
	    le32_get(frames[0] + 12) == 64 &&
	    le32_get(frames[1] + 8) == T_ADDR + 64 &&
	    le32_get(frames[1] + 12) == 36,
	    "... asked for 64 bytes, then the 36 left (%zu frames)", n);
	peer_close(&p);
}

/* The ROM's SPI_FLASH_MD5 reply: 32 lowercase hex digits of data. */
static void
peer_md5(struct peer *p, const uint8_t *data, size_t len)
{
	char	hex[33];

	digest_md5_hex(data, len, hex);
	peer_reply(p, PROTO_SPI_FLASH_MD5, (const uint8_t *)hex, 32, 0, 0);
}

/*
 * readflash_checked through the ROM: the MD5 is asked first; erased flash
 * is not read; bytes read that do not have the flash's MD5 are refused.
 */
static void
test_checked(void)
{
	static uint8_t	 flash[T_LEN];
	uint8_t		 ff[100], got[100], frames[8][64];
	size_t		 lens[8], n;
	struct peer	 p;
	char		*cause = NULL;
	int		 error;

	fill(flash, sizeof(flash));
	memset(ff, 0xff, sizeof(ff));
	if (peer_open(&p, 0) != 0) {
		tap_ok(0, "socketpair for the ROM");
		return;
	}
	peer_md5(&p, ff, sizeof(ff));
	error = readflash_checked(&p.l, T_ADDR, got, sizeof(got), &cause);
	n = peer_sent(&p, frames, lens, 8);
	tap_ok(error == 0 && memcmp(got, ff, sizeof(got)) == 0 && n == 1 &&
	    frames[0][1] == PROTO_SPI_FLASH_MD5,
	    "checked: erased flash is known by its MD5, not read (%zu "
	    "command)", n);
	peer_close(&p);

	if (peer_open(&p, 0) != 0)
		return;
	peer_md5(&p, flash, sizeof(got));
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash, 64, 0, 0);
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash + 64, 64, 0, 0);
	error = readflash_checked(&p.l, T_ADDR, got, sizeof(got), &cause);
	tap_ok(error == 0 && memcmp(got, flash, sizeof(got)) == 0,
	    "checked: bytes with the flash's MD5 are read (%s)",
	    cause != NULL ? cause : "ok");
	peer_close(&p);

	if (peer_open(&p, 0) != 0)
		return;
	peer_md5(&p, flash, sizeof(got));
	flash[70] ^= 0x01;	/* one bit damaged on the way */
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash, 64, 0, 0);
	peer_reply(&p, PROTO_READ_FLASH_SLOW, flash + 64, 64, 0, 0);
	error = readflash_checked(&p.l, T_ADDR, got, sizeof(got), &cause);
	tap_ok(error == -EIO && cause != NULL &&
	    strstr(cause, "differ from the flash") != NULL,
	    "checked: a bit damaged on the way is refused (%s)", cause);
	free(cause);
	peer_close(&p);
}

int
main(void)
{
	test_stub_read();
	test_rom_read();
	test_checked();
	return (tap_done());
}
