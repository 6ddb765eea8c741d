/*
 * libFuzzer target for the emulator's command handler (emu.c).  One input
 * is one conversation: either raw host bytes, or a script of valid-ish
 * commands that the harness turns into well-framed requests with correct
 * sizes and checksums (and deflate streams), so that the fuzzer gets past
 * framing into every command.  Bytes are fed in chunks at advancing times
 * and drained into exact-size buffers, into a flash buffer of exactly the
 * configured size, so ASan sees any write outside it.  Then:
 *  - the output is nothing but SLIP frames of replies (PROTOCOL.md 1.3)
 *    with 4 ROM status bytes [0|1, error, 0, 0] and the payload the op
 *    calls for (SYNC value, 32 hex chars of MD5, 64 bytes of a slow read,
 *    12 bytes of security info);
 *  - replies answer requests in order: each reply's op is that of a later
 *    request frame than the last one answered (8 replies for a SYNC);
 *  - the flash is unchanged unless a FLASH_BEGIN or FLASH_DEFL_BEGIN
 *    succeeded, and unless the emulator counted an erase or a write; the
 *    counters agree with what was fed and drained, and the getters with
 *    the config (lines, MAC, JEDEC size, no modelled time with the fast
 *    profile, USB ids);
 *  - with the unit-life model (config.boot) a valid factory image the
 *    harness wrote into flash boots into the app.
 * Faults that corrupt bytes, the realistic profile (which loses input
 * while the chip reboots), the unit-life model (whose boot log prints
 * bytes from flash) and the stub model (2 status bytes, an unsolicited
 * OHAI frame) relax the checks that they legitimately break.
 *
 * Input: byte 0 = config (bit 0 chip, bit 1 link, bits 2-3 flash size,
 * bit 4 faults follow, bit 5 realistic, bit 6 script), byte 1 = feed
 * chunk size, byte 2 = drain size (bit 7: unit-life model, and byte 3
 * says how: bits 0-1 board, bit 2 start the app, bit 3 silent app, bit 4
 * write a factory image whose project name follows as a length byte and
 * that many bytes, bit 5 the flasher-stub model, bit 6 no unit-life model
 * after all); then faults (a count byte and 4 bytes each) when bit 4
 * of byte 0 is set; then the raw bytes or the script.  With bit 7 of byte
 * 0 set the rest is instead a --fault / --flash-size string to parse.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "emu.h"
#include "image.h"
#include "proto.h"
#include "slip.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_MAX_FAULTS		3
#define FUZZ_MAX_RESETS		32	/* host-side resets tracked */
#define FUZZ_REQ_CAP		0x20000	/* > any emulator frame */
#define FUZZ_RESP_CAP		1024	/* more than any reply frame */
#define FUZZ_FLASH_MAX		0x80000	/* largest flash used */
#define FUZZ_SYNC_WORD		0x20120707u
#define FUZZ_WDT_KEY		0x50D83AA1u	/* PROTOCOL.md 5.5 */
#define FUZZ_WDT_CONFIG0	0xD0000102u	/* PROTOCOL.md 5.5 */

/* Bytes of the input not yet used. */
struct fuzz_in {
	const uint8_t	*p;
	size_t		 left;
};

/* A growing byte buffer. */
struct fuzz_buf {
	uint8_t		*p;
	size_t		 len;
	size_t		 cap;
};

/* One conversation with one emulator. */
struct fuzz_run {
	struct emu	*e;
	const struct chip_info *chip;
	uint64_t	 now;
	size_t		 chunk;		/* bytes fed at a time */
	size_t		 drain;		/* drain buffer size */
	struct fuzz_buf	 wire;		/* everything fed */
	struct fuzz_buf	 out;		/* everything drained */
	uint64_t	 fed;
	int		 dtr, rts;	/* lines as last set */
	int		 boot;		/* unit-life model */
	size_t		 resets[FUZZ_MAX_RESETS]; /* wire offsets */
	size_t		 nresets;
	/* Which checks hold for this conversation. */
	int		 framing;	/* output is whole reply frames */
	int		 order;		/* replies follow requests */
	int		 flashchk;	/* no BEGIN, no flash change */
	int		 noise;		/* text between frames ok */
	z_stream	 zs;		/* deflater of this DEFL write */
	int		 zinit;
	int		 zdone;		/* Z_FINISH was used */
	uint32_t	 zseq;
};

/* Report a broken property and abort, so that libFuzzer keeps the input. */
static void
fuzz_fail(const char *what, unsigned long arg)
{
	fprintf(stderr, "fuzz-emu: %s (%lu)\n", what, arg);
	abort();
}

/* malloc that never returns NULL and never gets 0 (a fuzzer cannot OOM). */
static void *
fuzz_alloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		abort();
	return (p);
}

/* Append bytes to a buffer. */
static void
fuzz_buf_add(struct fuzz_buf *b, const uint8_t *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = MAXIMUM(b->cap * 2, b->len + n);
		if ((b->p = realloc(b->p, b->cap)) == NULL)
			abort();
	}
	if (n != 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* Next input byte, 0 when the input is used up. */
static uint8_t
fuzz_u8(struct fuzz_in *in)
{
	if (in->left == 0)
		return (0);
	in->left--;
	return (*in->p++);
}

/* Next input bytes as a little-endian word (missing bytes are 0). */
static uint32_t
fuzz_u32(struct fuzz_in *in)
{
	uint32_t	v = 0;
	int		i;

	for (i = 0; i < 4; i++)
		v |= (uint32_t)fuzz_u8(in) << (8 * i);
	return (v);
}

/* Up to n input bytes; *got says how many there were. */
static const uint8_t *
fuzz_take(struct fuzz_in *in, size_t n, size_t *got)
{
	const uint8_t	*p = in->p;

	*got = MINIMUM(n, in->left);
	in->p += *got;
	in->left -= *got;
	return (p);
}

/* Drain whatever is due now through an exact-size buffer. */
static void
fuzz_drain(struct fuzz_run *r)
{
	uint8_t	*buf;
	size_t	 n;

	buf = fuzz_alloc(r->drain);
	while ((n = emu_drain(r->e, buf, r->drain, r->now)) != 0) {
		if (n > r->drain)
			fuzz_fail("emu_drain returned more than its cap", n);
		fuzz_buf_add(&r->out, buf, n);
	}
	free(buf);
}

/* Feed wire bytes in chunks, a microsecond apart, draining in between. */
static void
fuzz_feed(struct fuzz_run *r, const uint8_t *p, size_t len)
{
	uint8_t	*chunk;
	size_t	 off, n;

	fuzz_buf_add(&r->wire, p, len);
	for (off = 0; off < len; off += n) {
		n = MINIMUM(r->chunk, len - off);
		/* A copy of exactly n bytes: no read past the chunk. */
		chunk = fuzz_alloc(n);
		memcpy(chunk, p + off, n);
		emu_feed(r->e, chunk, n, r->now);
		free(chunk);
		r->fed += n;
		r->now++;
		fuzz_drain(r);
	}
}

/* SLIP-encode one request and feed it. */
static void
fuzz_send(struct fuzz_run *r, const uint8_t *req, size_t len)
{
	uint8_t	*wire;
	size_t	 n;

	if (len == 0)
		return;
	wire = fuzz_alloc(SLIP_ENCODED_MAX(len));
	n = slip_encode(wire, SLIP_ENCODED_MAX(len), req, len);
	fuzz_feed(r, wire, n);
	free(wire);
}

/*
 * The host pressed a button: the chip resets, and its SLIP decoder with
 * it, so the request list restarts decoding here too.
 */
static void
fuzz_reset_mark(struct fuzz_run *r)
{
	if (r->nresets == FUZZ_MAX_RESETS)
		r->order = 0;
	else
		r->resets[r->nresets++] = r->wire.len;
}

/* A register address: the ones the protocol uses, or any. */
static uint32_t
fuzz_reg(const struct fuzz_run *r, struct fuzz_in *in)
{
	const struct chip_info	*c = r->chip;
	uint8_t			 sel = fuzz_u8(in);

	switch (sel % 16) {
	case 0:
		return (CHIP_MAGIC_REG);
	case 1:
		return (c->efuse_mac0);
	case 2:
		return (c->efuse_mac1);
	case 3:
		return (c->uartdev_buf_no);
	case 4:
		return (c->spi_base);
	case 5:
		return (c->spi_base + c->spi_usr);
	case 6:
		return (c->spi_base + c->spi_usr1);
	case 7:
		return (c->spi_base + c->spi_usr2);
	case 8:
		return (c->spi_base + c->spi_miso_dlen);
	case 9:
		return (c->spi_base + c->spi_w0 + 4 * (sel >> 4));
	case 10:
		return (0x3F4080AC);	/* S2 WDTWPROTECT */
	case 11:
		return (0x3F408098);	/* S2 WDTCONFIG1 */
	case 12:
		return (0x3F408094);	/* S2 WDTCONFIG0 */
	case 13:
		return (c->spi_base + 0x04);	/* address register */
	}
	return (fuzz_u32(in));
}

/* A register value: the ones the protocol uses, or any. */
static uint32_t
fuzz_value(struct fuzz_in *in)
{
	switch (fuzz_u8(in) % 12) {
	case 0:
		return (FUZZ_WDT_KEY);
	case 1:
		return (FUZZ_WDT_CONFIG0);
	case 2:
		return (2000);		/* WDT timeout in slow ticks */
	case 3:
		return (1u << 18);	/* SPI CMD_USR */
	case 4:
		return ((1u << 31) | (1u << 28));	/* USR_COMMAND|MISO */
	case 5:
		return (0x9F | (7u << 28));	/* RDID, 8-bit command */
	case 6:
		return (23);		/* 24 MISO bits */
	case 7:
		return (0xffffffffu);
	}
	return (fuzz_u32(in));
}

/* A block size: the ROM's, the stub's, edge cases, or any. */
static uint32_t
fuzz_bsize(struct fuzz_in *in)
{
	static const uint32_t	sizes[] = {
		0x400, 0x100, 0x800, 0x4000, 0x4001, 0, 0x1000
	};
	uint8_t			sel = fuzz_u8(in);

	if (sel < nitems(sizes) * 32)
		return (sizes[sel % nitems(sizes)]);
	return (fuzz_u32(in));
}

/* FLASH_BEGIN or FLASH_DEFL_BEGIN with small, mostly sane fields. */
static void
fuzz_cmd_begin(struct fuzz_run *r, struct fuzz_in *in, uint8_t op)
{
	uint8_t		req[64];
	uint32_t	size, blocks, bsize, offset;
	uint8_t		flags = fuzz_u8(in);
	size_t		n;

	size = (uint32_t)fuzz_u8(in) << 8;
	size |= fuzz_u8(in);
	blocks = fuzz_u8(in) % 20;
	bsize = fuzz_bsize(in);
	offset = (uint32_t)fuzz_u8(in) * 0x1000;
	if (flags & 1)
		offset = fuzz_u32(in);	/* unaligned, past the end */
	n = proto_build_begin(req, sizeof req, op, size, blocks, bsize,
	    offset, r->chip->id != CHIP_ESP32 || (flags & 2));
	if ((flags & 4) && n == PROTO_HDR_LEN + 20)
		le32_put(req + PROTO_HDR_LEN + 16, 1);	/* encrypted */
	fuzz_send(r, req, n);
	if (op == PROTO_FLASH_DEFL_BEGIN) {
		if (r->zinit)
			deflateEnd(&r->zs);
		memset(&r->zs, 0, sizeof r->zs);
		if (deflateInit(&r->zs, 1 + (flags >> 4) % 9) != Z_OK)
			abort();
		r->zinit = 1;
		r->zdone = 0;
		r->zseq = 0;
	}
}

/* A _DATA command with input bytes; optionally a wrong checksum. */
static void
fuzz_cmd_data(struct fuzz_run *r, struct fuzz_in *in, uint8_t op)
{
	const uint8_t	*d;
	uint8_t		*req;
	uint32_t	 seq;
	uint8_t		 flags = fuzz_u8(in);
	size_t		 want, got, n, cap;

	seq = flags & 0x80 ? fuzz_u32(in) : (uint32_t)(flags & 7);
	want = (size_t)fuzz_u8(in) * 4 + (flags & 0x40 ? 0x300 : 0);
	d = fuzz_take(in, want, &got);
	cap = PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + got;
	req = fuzz_alloc(cap);
	n = proto_build_data(req, cap, op, seq, d, got);
	if (flags & 8)
		req[4] ^= 0x5a;
	fuzz_send(r, req, n);
	free(req);
}

/*
 * FLASH_DEFL_DATA: input bytes, maybe repeated, through the run's deflate
 * stream (sync flush, or finish), sent as the next block in sequence.
 */
static void
fuzz_cmd_defl_data(struct fuzz_run *r, struct fuzz_in *in)
{
	const uint8_t	*d;
	uint8_t		*plain, *z, *req;
	uint8_t		 flags = fuzz_u8(in);
	size_t		 want, got, i, reps, zcap, zlen, cap, n;
	uint32_t	 seq;

	want = fuzz_u8(in);
	reps = 1 + (flags & 0x3f);
	d = fuzz_take(in, want, &got);
	if (!r->zinit || r->zdone) {
		/* No stream (or it ended): send plain bytes as the block. */
		fuzz_cmd_data(r, in, PROTO_FLASH_DEFL_DATA);
		return;
	}
	plain = fuzz_alloc(got * reps);
	for (i = 0; i < reps; i++)
		memcpy(plain + i * got, d, got);
	zcap = deflateBound(&r->zs, got * reps) + 64;
	z = fuzz_alloc(zcap);
	r->zs.next_in = plain;
	r->zs.avail_in = (uInt)(got * reps);
	r->zs.next_out = z;
	r->zs.avail_out = (uInt)zcap;
	if (deflate(&r->zs, flags & 0x40 ? Z_FINISH : Z_SYNC_FLUSH) ==
	    Z_STREAM_ERROR)
		abort();
	if (flags & 0x40)
		r->zdone = 1;
	zlen = zcap - r->zs.avail_out;
	seq = flags & 0x80 ? r->zseq + 1 : r->zseq;	/* skip one */
	r->zseq++;
	cap = PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + zlen;
	req = fuzz_alloc(cap);
	n = proto_build_data(req, cap, PROTO_FLASH_DEFL_DATA, seq, z, zlen);
	fuzz_send(r, req, n);
	free(req);
	free(z);
	free(plain);
}

/* MEM_BEGIN at a RAM address the chips have, or any. */
static void
fuzz_cmd_mem_begin(struct fuzz_run *r, struct fuzz_in *in)
{
	static const uint32_t	addrs[] = {
		0x40028000, 0x3FFE2C00, 0x3FFB0000, 0x3FF9E000, 0x50000000,
		0x40070000, 0x3FFAE000, 0x3FF80000
	};
	uint8_t			req[64];
	uint32_t		size, blocks, bsize, addr;
	uint8_t			sel = fuzz_u8(in);
	size_t			n;

	size = (uint32_t)fuzz_u8(in) << 8;
	size |= fuzz_u8(in);
	addr = sel < 0xc0 ? addrs[sel % nitems(addrs)] : fuzz_u32(in);
	blocks = fuzz_u8(in) % 8;
	bsize = fuzz_bsize(in);
	n = proto_build_begin(req, sizeof req, PROTO_MEM_BEGIN, size, blocks,
	    bsize, addr, 0);
	fuzz_send(r, req, n);
}

/* Any op with any payload, built with a correct or a wrong size field. */
static void
fuzz_cmd_raw_frame(struct fuzz_run *r, struct fuzz_in *in)
{
	const uint8_t	*d;
	uint8_t		*req;
	uint8_t		 op = fuzz_u8(in), flags = fuzz_u8(in);
	uint32_t	 checksum = fuzz_u32(in);
	size_t		 got, n;

	d = fuzz_take(in, fuzz_u8(in), &got);
	req = fuzz_alloc(PROTO_HDR_LEN + got);
	n = proto_build(req, PROTO_HDR_LEN + got, op, d, got, checksum);
	if (flags & 1)
		req[2] ^= 1;		/* size disagrees with the frame */
	if (flags & 2)
		req[0] = 0x01;		/* a reply, not a request */
	fuzz_send(r, req, n);
	free(req);
}

/*
 * Walk the lines through states (bit 0 RTS, bit 1 DTR), 1 ms apart: the
 * sequences of PROTOCOL.md 8.1 (classic reset) and 8.2 (Arduino).
 */
static void
fuzz_lines(struct fuzz_run *r, int arduino)
{
	static const uint8_t	classic[] = { 1, 2, 0 };
	static const uint8_t	tinyusb[] = { 1, 3, 2, 0 };
	const uint8_t		*seq = arduino ? tinyusb : classic;
	size_t			 i, n = arduino ? sizeof tinyusb :
				    sizeof classic;

	for (i = 0; i < n; i++) {
		r->rts = (seq[i] & 1) != 0;
		r->dtr = (seq[i] & 2) != 0;
		emu_set_lines(r->e, r->dtr, r->rts, r->now);
		r->now += 1000;
		fuzz_drain(r);
	}
}

/* Run one script command; returns 0 when the input is used up. */
static int
fuzz_script_step(struct fuzz_run *r, struct fuzz_in *in)
{
	uint8_t		 req[128];
	const uint8_t	*d;
	uint32_t	 a, v, m;
	size_t		 n, got;
	uint8_t		 c;

	if (in->left == 0)
		return (0);
	c = fuzz_u8(in);
	switch (c % 24) {
	case 0:
		n = proto_build_sync(req, sizeof req);
		if (c & 0x80)
			req[PROTO_HDR_LEN + 4 + c % 32] ^= 0x01;
		fuzz_send(r, req, n);
		break;
	case 1:
		fuzz_send(r, req, proto_build_read_reg(req, sizeof req,
		    fuzz_reg(r, in)));
		break;
	case 2:
		a = fuzz_reg(r, in);
		v = fuzz_value(in);
		m = c & 0x80 ? fuzz_value(in) : 0xffffffffu;
		n = proto_build_write_reg(req, sizeof req, a, v, m, 0);
		fuzz_send(r, req, n);
		break;
	case 3:
		fuzz_send(r, req, proto_build_spi_attach(req, sizeof req, 0,
		    !(c & 0x80)));
		break;
	case 4:
		fuzz_send(r, req, proto_build_spi_set_params(req, sizeof req,
		    c & 0x80 ? fuzz_u32(in) % 0x2000000 :
		    0x10000u << (fuzz_u8(in) % 9)));
		break;
	case 5:
		fuzz_cmd_begin(r, in, PROTO_FLASH_BEGIN);
		break;
	case 6:
		fuzz_cmd_data(r, in, PROTO_FLASH_DATA);
		break;
	case 7:
		fuzz_cmd_begin(r, in, PROTO_FLASH_DEFL_BEGIN);
		break;
	case 8:
		fuzz_cmd_defl_data(r, in);
		break;
	case 9:
		/* Flag 1 leaves download mode: make it rare. */
		n = proto_build_end(req, sizeof req, c & 0x80 ?
		    PROTO_FLASH_DEFL_END : PROTO_FLASH_END,
		    fuzz_u8(in) == 0xff);
		fuzz_send(r, req, n);
		break;
	case 10:
		a = fuzz_u32(in) % 0x200000;
		v = fuzz_u32(in) % 0x40000;
		fuzz_send(r, req, proto_build_md5(req, sizeof req, a, v));
		break;
	case 11:
		a = fuzz_u32(in);
		v = fuzz_u8(in) % 80;
		n = proto_build_read_flash_slow(req, sizeof req, a, v);
		fuzz_send(r, req, n);
		break;
	case 12:
		fuzz_cmd_mem_begin(r, in);
		break;
	case 13:
		fuzz_cmd_data(r, in, PROTO_MEM_DATA);
		break;
	case 14:
		v = fuzz_u8(in) != 0xff;	/* 0 runs the code: rare */
		a = fuzz_u32(in);
		fuzz_send(r, req, proto_build_mem_end(req, sizeof req, v, a));
		break;
	case 15:
		n = proto_build_change_baud(req, sizeof req, c & 0x80 ?
		    fuzz_u32(in) : 921600, 0);
		fuzz_send(r, req, n);
		break;
	case 16:
		fuzz_send(r, req, proto_build(req, sizeof req,
		    PROTO_GET_SECURITY_INFO, NULL, 0, 0));
		break;
	case 17:
		fuzz_cmd_raw_frame(r, in);
		break;
	case 18:
		/* Raw wire bytes: noise, partial frames, bad escapes. */
		d = fuzz_take(in, fuzz_u8(in), &got);
		fuzz_feed(r, d, got);
		break;
	case 19:
		/* Time passes (the watchdog may fire); lines may change. */
		r->now += (uint64_t)fuzz_u8(in) * 1000;
		r->dtr = (c & 0x20) != 0;
		r->rts = (c & 0x40) != 0;
		emu_set_lines(r->e, r->dtr, r->rts, r->now);
		fuzz_drain(r);
		break;
	case 20:
		/* RST: leaves download mode (or boots flash). */
		emu_press_rst(r->e, r->now);
		fuzz_reset_mark(r);
		fuzz_drain(r);
		break;
	case 21:
		/* BOOT + RST: download mode again, saying so in text. */
		emu_press_boot_rst(r->e, r->now);
		fuzz_reset_mark(r);
		r->noise = 1;
		fuzz_drain(r);
		break;
	case 22:
		emu_set_baud_host(r->e, c & 0x80 ? 1200 : fuzz_u32(in),
		    r->now);
		fuzz_drain(r);
		break;
	default:
		/* A reset sequence: esptool's classic one, or Arduino's. */
		fuzz_lines(r, (c & 0x80) != 0);
		break;
	}
	return (1);
}

/* Op and reply count of each request frame in what was fed. */
struct fuzz_reqs {
	uint8_t		*op;
	size_t		 n;
};

/*
 * Decode the fed wire the way a ROM would, listing the request frames;
 * the decoder starts over where the host reset the chip.
 */
static void
fuzz_requests(const struct fuzz_run *r, struct fuzz_reqs *rq)
{
	const struct fuzz_buf	*wire = &r->wire;
	struct slip_dec		 d;
	uint8_t			*buf;
	size_t			 i, k = 0;

	buf = fuzz_alloc(FUZZ_REQ_CAP);
	rq->op = fuzz_alloc(wire->len);
	rq->n = 0;
	slip_dec_init(&d, buf, FUZZ_REQ_CAP);
	for (i = 0; i < wire->len; i++) {
		for (; k < r->nresets && r->resets[k] == i; k++)
			slip_dec_init(&d, buf, FUZZ_REQ_CAP);
		if (slip_dec_byte(&d, wire->p[i]) != SLIP_FRAME)
			continue;
		if (d.len >= PROTO_HDR_LEN && d.buf[0] == 0x00)
			rq->op[rq->n++] = d.buf[1];
	}
	free(buf);
}

/* Is this a string of lowercase hex digits? */
static int
fuzz_lower_hex(const uint8_t *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			return (0);
	}
	return (1);
}

/* Check one reply: status bytes and the payload its op calls for. */
static void
fuzz_check_reply(const struct proto_resp *rs, const uint8_t *frame,
    size_t len)
{
	const uint8_t	*st = frame + len - PROTO_ROM_STATUS_LEN;
	size_t		 want = 0;

	if (st[0] > 1 || st[2] != 0 || st[3] != 0)
		fuzz_fail("reply status bytes are not [0|1, err, 0, 0]",
		    rs->op);
	if (st[0] == 1) {
		if (rs->data_len != 0)
			fuzz_fail("failed reply carries data", rs->op);
		return;
	}
	if (st[1] != 0)
		fuzz_fail("successful reply with an error code", rs->op);
	switch (rs->op) {
	case PROTO_SYNC:
		if (rs->value != FUZZ_SYNC_WORD)
			fuzz_fail("ROM SYNC reply value is not 0x20120707",
			    rs->value);
		break;
	case PROTO_SPI_FLASH_MD5:
		want = PROTO_MD5_HEX_LEN;
		if (rs->data_len == want &&
		    !fuzz_lower_hex(rs->data, rs->data_len))
			fuzz_fail("MD5 reply is not lowercase hex", 0);
		break;
	case PROTO_READ_FLASH_SLOW:
		want = PROTO_READ_SLOW_BLOCK;
		break;
	case PROTO_GET_SECURITY_INFO:
		want = PROTO_SECINFO_S2_LEN;
		break;
	}
	if (rs->data_len != want)
		fuzz_fail("reply payload length wrong for its op", rs->op);
}

/*
 * Decode everything drained: only complete reply frames, well-formed and
 * (when input reached the emulator unchanged) in request order, with boot
 * text between them only when a noise fault is set.  Returns whether a
 * FLASH_BEGIN or FLASH_DEFL_BEGIN succeeded.
 */
static int
fuzz_check_output(const struct fuzz_run *r)
{
	struct slip_dec		 d;
	struct proto_resp	 rs;
	struct fuzz_reqs	 rq;
	uint8_t			*buf;
	size_t			 i, at = 0, used = 0, end = 0;
	int			 began = 0;

	fuzz_requests(r, &rq);
	buf = fuzz_alloc(FUZZ_RESP_CAP);
	slip_dec_init(&d, buf, FUZZ_RESP_CAP);
	for (i = 0; i < r->out.len; i++) {
		if (slip_dec_byte(&d, r->out.p[i]) != SLIP_FRAME)
			continue;
		end = i + 1;
		if (proto_parse_resp(d.buf, d.len, PROTO_ROM_STATUS_LEN,
		    &rs) != 0) {
			if (!r->framing)
				continue;
			fuzz_fail("emulator sent a malformed reply", i);
		}
		if (!r->framing)
			continue;
		fuzz_check_reply(&rs, d.buf, d.len);
		if ((rs.op == PROTO_FLASH_BEGIN ||
		    rs.op == PROTO_FLASH_DEFL_BEGIN) && rs.status == 0)
			began = 1;
		if (!r->order)
			continue;
		/* The next request with this op that still owes replies. */
		while (at < rq.n && (rq.op[at] != rs.op || used ==
		    (rq.op[at] == PROTO_SYNC ? PROTO_SYNC_REPLIES : 1u))) {
			at++;
			used = 0;
		}
		if (at == rq.n)
			fuzz_fail("reply answers no request sent before it",
			    rs.op);
		used++;
	}
	/* No bad escape, no frame left open, boot text only if asked for. */
	if (r->framing && (d.errors != 0 ||
	    (end < r->out.len &&
	    memchr(r->out.p + end, SLIP_END, r->out.len - end) != NULL) ||
	    (!r->noise && d.noise != 0)))
		fuzz_fail("output is not a sequence of whole frames",
		    d.noise);
	free(buf);
	free(rq.op);
	return (began);
}

/* Faults from the input (kinds, ops and windows all fuzzed). */
static size_t
fuzz_faults(struct fuzz_run *r, struct fuzz_in *in, struct emu_fault *f)
{
	size_t	i, n = fuzz_u8(in) % (FUZZ_MAX_FAULTS + 1);
	uint8_t	b[4];
	int	k;

	for (i = 0; i < n; i++) {
		for (k = 0; k < 4; k++)
			b[k] = fuzz_u8(in);
		memset(&f[i], 0, sizeof f[i]);
		f[i].kind = (enum emu_fault_kind)(b[0] % EMU_FAULT__MAX);
		f[i].unit = -1;
		f[i].op = b[1] == 0xff ? -1 : b[1];
		f[i].at = 1 + b[2] % 32;
		f[i].count = b[3] % 4;
		f[i].ms = b[3];
		f[i].code = (uint8_t)(0x05 + b[2] % 7);
		f[i].dir_in = b[3] & 1;
		f[i].factor = 1 + b[3] % 8;
		/* Flipped or cut bytes break frames by design. */
		if (f[i].kind == EMU_FAULT_CORRUPT ||
		    f[i].kind == EMU_FAULT_UNPLUG)
			r->framing = r->order = r->flashchk = 0;
		/* Boot text; a reset the host cannot see coming. */
		if (f[i].kind == EMU_FAULT_NOISE ||
		    f[i].kind == EMU_FAULT_REENUM)
			r->noise = 1;
		if (f[i].kind == EMU_FAULT_REENUM)
			r->order = 0;
		/* A lost BEGIN reply hides an erase. */
		if (f[i].kind == EMU_FAULT_DROP_REPLY)
			r->flashchk = 0;
	}
	return (n);
}

/*
 * Mode bit 7: the input is text for the --fault and --flash-size parsers
 * (espfleet-sim's command line), which must accept or refuse it cleanly.
 */
static void
fuzz_specs(const uint8_t *p, size_t len)
{
	struct emu_fault	 f;
	char			*s, *cause = NULL;
	uint32_t		 size = 0;
	int			 error;

	s = fuzz_alloc(len + 1);
	memcpy(s, p, len);
	s[len] = '\0';
	error = emu_fault_parse(s, &f, &cause);
	if (error != 0 && (error != -EINVAL || cause == NULL))
		fuzz_fail("emu_fault_parse refused without a cause", 0);
	if (error == 0 && (cause != NULL || f.kind >= EMU_FAULT__MAX ||
	    (f.kind != EMU_FAULT_UNPLUG && f.at == 0) || f.op > 0xff))
		fuzz_fail("emu_fault_parse accepted a bad fault", f.kind);
	free(cause);
	cause = NULL;
	error = emu_parse_flash_size(s, &size, &cause);
	if (error != 0 && (error != -EINVAL || cause == NULL))
		fuzz_fail("emu_parse_flash_size refused without a cause", 0);
	if (error == 0 && (cause != NULL || size < 0x40000 ||
	    size > 0x1000000 || (size & (size - 1)) != 0))
		fuzz_fail("emu_parse_flash_size accepted a bad size", size);
	free(cause);
	free(s);
}

/* Check the getters against the config and what the script did. */
static void
fuzz_getters(const struct fuzz_run *r, const struct emu_config *cfg)
{
	uint8_t	mac[6];
	int	dtr = -1, rts = -1;

	emu_lines(r->e, &dtr, &rts);
	if (dtr != r->dtr || rts != r->rts)
		fuzz_fail("emu_lines differs from the last emu_set_lines", 0);
	emu_mac(r->e, mac);
	if (memcmp(mac, cfg->mac, sizeof mac) != 0)
		fuzz_fail("emu_mac differs from the config", 0);
	if (1u << ((emu_jedec(r->e) >> 16) & 0xff) != cfg->flash_size)
		fuzz_fail("JEDEC capacity byte is not log2 of the flash",
		    emu_jedec(r->e));
	if (cfg->profile == EMU_PROFILE_FAST && emu_modeled_us(r->e) != 0)
		fuzz_fail("fast profile modelled device time",
		    (unsigned long)emu_modeled_us(r->e));
	if (emu_baud(r->e) == 0 || emu_profile_name(cfg->profile) == NULL)
		fuzz_fail("no baud or no profile name", 0);
	(void)emu_entry(r->e);
}

/* The initial flash contents: a pattern that erasing or writing changes. */
static const uint8_t *
fuzz_pattern(void)
{
	static uint8_t	*pat;
	size_t		 i;

	if (pat == NULL) {
		pat = fuzz_alloc(FUZZ_FLASH_MAX);
		for (i = 0; i < FUZZ_FLASH_MAX; i++)
			pat[i] = (uint8_t)(i * 2654435761u >> 24);
	}
	return (pat);
}

/* Write one small ESP image (one segment) at p; returns its length. */
static size_t
fuzz_image(uint8_t *p, uint16_t chip_id, uint32_t load, const uint8_t *seg,
    size_t seglen)
{
	size_t	off, end, i;
	uint8_t	cs = IMAGE_CHECKSUM_SEED;

	memset(p, 0, IMAGE_HEADER_LEN);
	p[0] = IMAGE_MAGIC;
	p[1] = 1;			/* one segment */
	p[2] = IMAGE_MODE_DIO;
	p[3] = 0x0f;			/* 1 MB, 80 MHz */
	le32_put(p + 4, load);		/* entry */
	p[8] = 0xee;			/* no WP pin */
	le16_put(p + 12, chip_id);
	le16_put(p + 17, 0xffff);	/* no maximum revision */
	p[23] = 1;			/* SHA-256 appended */
	off = IMAGE_HEADER_LEN;
	le32_put(p + off, load);
	le32_put(p + off + 4, (uint32_t)seglen);
	off += IMAGE_SEG_HEADER_LEN;
	memcpy(p + off, seg, seglen);
	for (i = 0; i < seglen; i++)
		cs ^= seg[i];
	off += seglen;
	end = off | 15;
	memset(p + off, 0, end - off);
	p[end++] = cs;
	digest_sha256(p, end, p + end);
	return (end + IMAGE_DIGEST_LEN);
}

/*
 * Lay out a factory image in flash (at least 128 KiB) the way ESP-IDF
 * does: bootloader at 0x1000, partition table with its MD5 entry at
 * 0x8000 (nvs, factory app at 0x10000), app with the project name given.
 */
static void
fuzz_factory(uint8_t *flash, uint32_t size, uint16_t chip_id,
    const uint8_t *name, size_t namelen)
{
	uint8_t	seg[256], *e;

	memset(flash, 0xff, size);
	memset(seg, 0x5a, 64);
	fuzz_image(flash + 0x1000, chip_id, 0x3ffe6100, seg, 64);

	e = flash + IMAGE_PART_OFFSET;
	memset(e, 0, 2 * IMAGE_PART_ENTRY_LEN);
	le16_put(e, IMAGE_PART_MAGIC);
	e[2] = IMAGE_PART_DATA;
	e[3] = IMAGE_PART_DATA_NVS;
	le32_put(e + 4, 0x9000);
	le32_put(e + 8, 0x5000);
	memcpy(e + 12, "nvs", 3);
	e += IMAGE_PART_ENTRY_LEN;
	le16_put(e, IMAGE_PART_MAGIC);
	e[2] = IMAGE_PART_APP;
	e[3] = IMAGE_PART_APP_FACTORY;
	le32_put(e + 4, IMAGE_APP_ALIGN);
	le32_put(e + 8, size - IMAGE_APP_ALIGN);
	memcpy(e + 12, "factory", 7);
	e += IMAGE_PART_ENTRY_LEN;
	memset(e, 0xff, 16);
	le16_put(e, IMAGE_PART_MD5_MAGIC);
	digest_md5(flash + IMAGE_PART_OFFSET, 2 * IMAGE_PART_ENTRY_LEN,
	    e + 16);

	/* esp_app_desc_t opens the first segment. */
	memset(seg, 0, sizeof seg);
	le32_put(seg, IMAGE_APP_DESC_MAGIC);
	memcpy(seg + 16, "1.0.0", 5);
	memcpy(seg + 48, name, MINIMUM(namelen, 31));
	memcpy(seg + 80, "12:00:00", 8);
	memcpy(seg + 96, "Jan  1 2024", 11);
	memcpy(seg + 112, "v4.4.4", 6);
	memcpy(seg + IMAGE_APP_DESC_LEN, "ESPHome version 2024.1.0 compiled"
	    " on", 36);
	fuzz_image(flash + IMAGE_APP_ALIGN, chip_id, 0x3f000020, seg,
	    sizeof seg);
}

/* Checks of the unit-life model: ids, boot line, a good image boots. */
static void
fuzz_life(const struct fuzz_run *r, int expect_app)
{
	uint16_t	vid = 0, pid = 0;
	int		error;

	error = emu_usb_id(r->e, &vid, &pid);
	if ((error == -ENODEV) != (emu_state(r->e) == EMU_ST_UNPLUGGED) ||
	    (error != 0 && error != -ENODEV) || (error == 0 && vid == 0))
		fuzz_fail("emu_usb_id disagrees with the state", error);
	if (strlen(emu_boot_line(r->e)) >= 1024 ||
	    (emu_boot_ok(r->e) != 0 && emu_boot_ok(r->e) != 1))
		fuzz_fail("boot line or boot verdict out of range", 0);
	if (expect_app && (emu_boot_ok(r->e) != 1 ||
	    emu_state(r->e) != EMU_ST_APP))
		fuzz_fail("a valid factory image did not boot", 0);
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t	 sizes[] = {
		0x10000, 0x20000, 0x40000, FUZZ_FLASH_MAX
	};
	struct emu_fault	 faults[FUZZ_MAX_FAULTS];
	struct emu_config	 cfg;
	struct emu_stats	 st;
	struct fuzz_run		 r;
	struct fuzz_in		 in;
	const uint8_t		*name = NULL, *want;
	uint8_t			*flash, *orig = NULL, mode, drain;
	uint8_t			 life = 0;
	size_t			 namelen = 0;
	char			*cause = NULL;
	int			 began;

	if (size < 3)
		return (0);
	if (data[0] & 0x80) {
		fuzz_specs(data + 1, size - 1);
		return (0);
	}
	in.p = data;
	in.left = size;
	mode = fuzz_u8(&in);
	memset(&r, 0, sizeof r);
	r.framing = r.order = r.flashchk = 1;
	r.chunk = 1 + fuzz_u8(&in);
	drain = fuzz_u8(&in);
	r.drain = 1 + drain % 128;
	r.now = 1000000;

	memset(&cfg, 0, sizeof cfg);
	cfg.chip = mode & 1 ? CHIP_ESP32 : CHIP_ESP32S2;
	cfg.link = mode & 2 ? EMU_LINK_UART : EMU_LINK_DEFAULT;
	cfg.profile = mode & 0x20 ? EMU_PROFILE_REALISTIC : EMU_PROFILE_FAST;
	cfg.flash_size = sizes[(mode >> 2) & 3];
	memcpy(cfg.mac, "\x7c\xdf\xa1\x00\x11\x22", 6);
	cfg.seed = 1;
	r.chip = chip_by_id(cfg.chip);
	if (drain & 0x80) {
		life = fuzz_u8(&in);
		r.boot = cfg.boot = (life & 0x40) == 0;
		cfg.stub_model = (life & 0x20) != 0;
		cfg.board = (enum emu_board)(life & 3);
		cfg.start_app = (life & 4) != 0;
		cfg.app_silent = (life & 8) != 0;
		if (life & 0x10) {
			name = fuzz_take(&in, fuzz_u8(&in), &namelen);
			cfg.flash_size = MAXIMUM(cfg.flash_size, 0x20000);
		}
		/* The boot log prints bytes from flash: any bytes. */
		r.framing = r.order = 0;
	}
	if (!r.boot)
		life &= ~0x10;	/* a factory image needs the boot model */
	if (mode & 0x10) {
		cfg.faults = faults;
		cfg.nfaults = fuzz_faults(&r, &in, faults);
	}
	if (cfg.profile == EMU_PROFILE_REALISTIC)
		r.order = r.flashchk = 0;  /* input lost while rebooting */

	/* The caller's flash, exactly its size, with a visible pattern. */
	flash = fuzz_alloc(cfg.flash_size);
	if (life & 0x10) {
		fuzz_factory(flash, cfg.flash_size,
		    (uint16_t)MAXIMUM(r.chip->image_chip_id, 0), name,
		    namelen);
		orig = fuzz_alloc(cfg.flash_size);
		memcpy(orig, flash, cfg.flash_size);
		want = orig;
	} else {
		want = fuzz_pattern();
		memcpy(flash, want, cfg.flash_size);
	}
	cfg.flash = flash;

	if ((r.e = emu_new(&cfg, &cause)) == NULL)
		fuzz_fail("emu_new refused a valid config", 0);
	if (emu_flash(r.e) != flash || emu_flash_size(r.e) != cfg.flash_size)
		fuzz_fail("emulator does not use the caller's flash", 0);
	if (r.boot)
		fuzz_life(&r, (life & 0x14) == 0x14 && cfg.nfaults == 0);

	if (mode & 0x40) {
		while (fuzz_script_step(&r, &in))
			;
	} else
		fuzz_feed(&r, in.p, in.left);

	/* Long after: everything still queued becomes due. */
	r.now += 1000000000000ULL;
	fuzz_drain(&r);
	if (emu_pending(r.e) != 0 || emu_next_due_us(r.e) != UINT64_MAX)
		fuzz_fail("bytes still queued after draining at the end", 0);
	emu_stats(r.e, &st);
	if (st.bytes_in != r.fed || st.bytes_out != r.out.len)
		fuzz_fail("byte counters disagree with what was fed/drained",
		    (unsigned long)st.bytes_in);
	if (emu_state_name(emu_state(r.e)) == NULL ||
	    emu_reason_name(emu_reason(r.e)) == NULL)
		fuzz_fail("state or reason without a name", 0);
	if (r.boot)
		fuzz_life(&r, 0);
	if ((emu_stub(r.e) != 0 && emu_stub(r.e) != 1) || (emu_stub(r.e) &&
	    (!cfg.stub_model || emu_state(r.e) != EMU_ST_RAM)))
		fuzz_fail("stub running without the model or outside RAM", 0);

	fuzz_getters(&r, &cfg);
	began = fuzz_check_output(&r);
	/*
	 * A reset drops replies that were not due yet (a stall or slow-flash
	 * fault delays them), so after one a BEGIN may have erased in silence.
	 */
	if (r.nresets != 0 || st.resets != 0 ||
	    emu_reason(r.e) != EMU_RS_NONE)
		r.flashchk = 0;
	if (memcmp(flash, want, cfg.flash_size) != 0) {
		if (st.flash_written == 0 && st.flash_erased == 0)
			fuzz_fail("flash changed, no erase/write counted", 0);
		if (r.framing && r.flashchk && !began)
			fuzz_fail("flash changed without a successful BEGIN",
			    0);
	}

	emu_free(r.e);
	if (r.zinit)
		deflateEnd(&r.zs);
	free(r.wire.p);
	free(r.out.p);
	free(orig);
	free(flash);
	return (0);
}
