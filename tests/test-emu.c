/*
 * The ROM emulator against requests built with proto.h and framed with
 * slip.h: golden reply bytes, register model, flash semantics, the timing
 * model and its calibration, faults and their parser.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "emu.h"
#include "proto.h"
#include "slip.h"
#include "util.h"
#include "tap.h"

#define MAXWIRE		(SLIP_ENCODED_MAX(PROTO_MAX_REQ))
#define MAXFRAMES	16

static const uint8_t test_mac[6] = { 0x7c, 0xdf, 0xa1, 0x12, 0x34, 0x56 };

/* One emulator with a clock the test moves by hand. */
struct rig {
	struct emu	*e;
	uint64_t	 now;
	uint8_t		 out[65536];	/* bytes of the last exchange */
	size_t		 out_len;
	uint8_t		 frames[MAXFRAMES][256];
	size_t		 flen[MAXFRAMES];
	size_t		 nframes;
};

/* A fresh emulator with optional faults. */
static void
rig_init(struct rig *r, enum chip_id chip, enum emu_profile profile,
    const struct emu_fault *faults, size_t nfaults)
{
	struct emu_config	 cfg;
	char			*cause = NULL;

	memset(r, 0, sizeof(*r));
	memset(&cfg, 0, sizeof(cfg));
	cfg.chip = chip;
	cfg.profile = profile;
	memcpy(cfg.mac, test_mac, 6);
	cfg.seed = 42;
	cfg.faults = faults;
	cfg.nfaults = nfaults;
	r->e = emu_new(&cfg, &cause);
	if (r->e == NULL) {
		printf("Bail out! emu_new: %s\n", cause);
		exit(1);
	}
	r->now = 1000000;
}

/* Split r->out into SLIP frames. */
static void
rig_frames(struct rig *r)
{
	struct slip_dec	d;
	uint8_t		buf[1024];
	size_t		i;

	slip_dec_init(&d, buf, sizeof(buf));
	r->nframes = 0;
	for (i = 0; i < r->out_len; i++) {
		if (slip_dec_byte(&d, r->out[i]) != SLIP_FRAME)
			continue;
		if (r->nframes < MAXFRAMES && d.len <= sizeof(r->frames[0])) {
			memcpy(r->frames[r->nframes], d.buf, d.len);
			r->flen[r->nframes++] = d.len;
		}
	}
}

/* Feed a raw request (unframed) and collect every reply byte, moving the
 * clock to each due time. */
static void
rig_send(struct rig *r, const uint8_t *req, size_t len)
{
	static uint8_t	wire[MAXWIRE];
	size_t		w, n;
	uint64_t	due;

	w = slip_encode(wire, sizeof(wire), req, len);
	emu_feed(r->e, wire, w, r->now);
	r->out_len = 0;
	while (emu_pending(r->e) > 0) {
		due = emu_next_due_us(r->e);
		if (due == UINT64_MAX)
			break;
		if (due > r->now)
			r->now = due;
		n = emu_drain(r->e, r->out + r->out_len,
		    sizeof(r->out) - r->out_len, r->now);
		r->out_len += n;
		if (n == 0 && emu_state(r->e) == EMU_ST_UNPLUGGED)
			break;
	}
	rig_frames(r);
}

/* Send a request and parse the first reply frame (4 status bytes). */
static int
rig_cmd(struct rig *r, const uint8_t *req, size_t len, struct proto_resp *rs)
{
	rig_send(r, req, len);
	if (r->nframes == 0)
		return (-1);
	return (proto_parse_resp(r->frames[0], r->flen[0], 4, rs));
}

/* READ_REG through the wire; returns the value (status must be 0). */
static uint32_t
rig_read_reg(struct rig *r, uint32_t addr)
{
	uint8_t			req[64];
	struct proto_resp	rs;
	size_t			n;

	n = proto_build_read_reg(req, sizeof(req), addr);
	if (rig_cmd(r, req, n, &rs) != 0 || rs.status != 0)
		return (0xdeadbeef);
	return (rs.value);
}

/* WRITE_REG through the wire; 0 when the ROM said OK. */
static int
rig_write_reg(struct rig *r, uint32_t addr, uint32_t value)
{
	uint8_t			req[64];
	struct proto_resp	rs;
	size_t			n;

	n = proto_build_write_reg(req, sizeof(req), addr, value, 0xffffffff,
	    0);
	if (rig_cmd(r, req, n, &rs) != 0)
		return (-1);
	return (rs.status == 0 ? 0 : -1);
}

/* A generic command; returns status << 8 | error, or -1 without reply. */
static int
rig_status(struct rig *r, const uint8_t *req, size_t len)
{
	struct proto_resp	rs;

	if (rig_cmd(r, req, len, &rs) != 0)
		return (-1);
	return (rs.status << 8 | rs.error);
}

/* esptool's run_spiflash_command for S2 or ESP32 register offsets. */
static uint32_t
rig_spi_cmd(struct rig *r, const struct chip_info *c, uint8_t cmd,
    int addr_bits, uint32_t addr, int dummy, int miso_bits)
{
	uint32_t	base = c->spi_base, usr, usr2, v = 0, usr_new;
	int		i;

	usr = rig_read_reg(r, base + c->spi_usr);
	usr2 = rig_read_reg(r, base + c->spi_usr2);
	rig_write_reg(r, base + c->spi_miso_dlen, (uint32_t)miso_bits - 1);
	usr_new = (1u << 31) | (miso_bits > 0 ? 1u << 28 : 0);
	if (addr_bits > 0) {
		usr_new |= 1u << 30;
		rig_write_reg(r, base + c->spi_usr1,
		    (uint32_t)(addr_bits - 1) << 26 | (uint32_t)dummy);
		rig_write_reg(r, base + 0x04, c->id == CHIP_ESP32 ?
		    addr << (32 - addr_bits) : addr);
	}
	if (dummy > 0)
		usr_new |= 1u << 29;
	rig_write_reg(r, base + c->spi_usr, usr_new);
	rig_write_reg(r, base + c->spi_usr2, (7u << 28) | cmd);
	rig_write_reg(r, base + c->spi_w0, 0);
	rig_write_reg(r, base, 1u << 18);
	for (i = 0; i < 10; i++)
		if ((rig_read_reg(r, base) & (1u << 18)) == 0)
			break;
	if (i < 10)
		v = rig_read_reg(r, base + c->spi_w0);
	else
		v = 0xdeadbeef;
	rig_write_reg(r, base + c->spi_usr, usr);
	rig_write_reg(r, base + c->spi_usr2, usr2);
	return (v);
}

/* Deterministic data with a chosen alphabet size (compressibility). */
static void
fill_data(uint8_t *p, size_t len, unsigned alphabet, uint64_t seed)
{
	uint64_t	x;
	size_t		i;

	for (i = 0; i < len; i++) {
		x = seed + i + 0x9e3779b97f4a7c15ULL;
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
		x ^= x >> 31;
		p[i] = (uint8_t)(0x20 + (x >> 16) % alphabet);
	}
}

/*
 * Write img at off the way esptool does to a ROM: FLASH_DEFL_BEGIN with
 * the size rounded to 0x400, 0x400-byte blocks of the zlib stream.
 * Returns how many blocks failed; *data_us gets the modelled time of the
 * FLASH_DEFL_DATA phase.
 */
static int
rig_defl_write(struct rig *r, const uint8_t *img, size_t len, uint32_t off,
    uint64_t *data_us, size_t *zlen_out)
{
	uint8_t		*z, req[PROTO_MAX_REQ];
	uLongf		 zlen;
	size_t		 n, pos, blocks, bl;
	uint32_t	 seq = 0;
	uint64_t	 t0;
	int		 bad = 0;

	zlen = compressBound(len);
	z = xmalloc(zlen);
	if (compress2(z, &zlen, img, len, 9) != Z_OK) {
		free(z);
		return (-1);
	}
	*zlen_out = zlen;
	blocks = (zlen + 0x3ff) / 0x400;
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_DEFL_BEGIN,
	    (uint32_t)((len + 0x3ff) / 0x400 * 0x400), (uint32_t)blocks,
	    0x400, off, 1);
	if (rig_status(r, req, n) != 0)
		bad++;
	t0 = emu_modeled_us(r->e);
	for (pos = 0; pos < zlen; pos += bl) {
		bl = MINIMUM(0x400, zlen - pos);
		n = proto_build_data(req, sizeof(req), PROTO_FLASH_DEFL_DATA,
		    seq++, z + pos, bl);
		if (rig_status(r, req, n) != 0)
			bad++;
	}
	*data_us = emu_modeled_us(r->e) - t0;
	free(z);
	return (bad);
}

/* SPI_FLASH_MD5 of a range as the 32-char string (empty on failure). */
static void
rig_md5(struct rig *r, uint32_t addr, uint32_t size, char out[33])
{
	uint8_t			req[64];
	struct proto_resp	rs;
	size_t			n;

	out[0] = '\0';
	n = proto_build_md5(req, sizeof(req), addr, size);
	if (rig_cmd(r, req, n, &rs) != 0 || rs.status != 0 ||
	    rs.data_len != 32)
		return;
	memcpy(out, rs.data, 32);
	out[32] = '\0';
}

/* Golden bytes: SYNC x8, READ_REG magic, unknown op. */
static void
test_golden(void)
{
	static const uint8_t sync1[] = {
		0xc0, 0x01, 0x08, 0x04, 0x00, 0x07, 0x07, 0x12, 0x20,
		0x00, 0x00, 0x00, 0x00, 0xc0
	};
	static const uint8_t magic[] = {
		0xc0, 0x01, 0x0a, 0x04, 0x00, 0xc6, 0x07, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0xc0
	};
	struct rig		r;
	struct proto_resp	rs;
	uint8_t			req[64];
	size_t			n, i;
	int			all = 1;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	is_int(r.out_len, 8 * sizeof(sync1), "SYNC: 8 replies of 14 bytes");
	for (i = 0; i < 8 && (i + 1) * sizeof(sync1) <= r.out_len; i++)
		all &= memcmp(r.out + i * sizeof(sync1), sync1,
		    sizeof(sync1)) == 0;
	tap_ok(all,
	    "SYNC: each reply is c0 01 08 04 00 07 07 12 20 00 00 00 00 c0");

	n = proto_build_read_reg(req, sizeof(req), CHIP_MAGIC_REG);
	rig_send(&r, req, n);
	tap_ok(r.out_len == sizeof(magic) && memcmp(r.out, magic,
	    sizeof(magic)) == 0, "READ_REG 0x40001000: c0 01 0a 04 00 c6 07 00 "
	    "00 00 00 00 00 c0");
	is_int(rig_read_reg(&r, 0x3FFFFD14), 2,
	    "READ_REG UARTDEV_BUF_NO 0x3FFFFD14 = 2 (USB-OTG)");

	n = proto_build(req, sizeof(req), 0x42, NULL, 0, 0);
	tap_ok(rig_cmd(&r, req, n, &rs) == 0 && rs.op == 0x42 &&
	    rs.status == 1 && rs.error == 0x05 && r.flen[0] == 12 &&
	    r.nframes == 1,
	    "unknown op 0x42: one reply, op echoed, status 01 05, "
	    "4 status bytes");
	n = proto_build(req, sizeof(req), PROTO_ERASE_FLASH, NULL, 0, 0);
	is_int(rig_status(&r, req, n), 0x0105,
	    "stub-only ERASE_FLASH to the ROM: 01 05");
	/* A frame whose size field lies. */
	n = proto_build_read_reg(req, sizeof(req), CHIP_MAGIC_REG);
	req[2] = 9;
	is_int(rig_status(&r, req, n), 0x0105,
	    "size field disagreeing with the frame: 01 05");
	emu_free(r.e);
}

/* eFuse, security info, straps and the register store. */
static void
test_registers(void)
{
	struct rig		 r;
	struct proto_resp	 rs;
	const struct chip_info	*c = chip_by_id(CHIP_ESP32S2);
	uint8_t			 req[64], mac[6], zero[16];
	uint32_t		 w3, w4;
	size_t			 n;
	int			 major = -1, minor = -1;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	chip_mac_from_efuse(c, rig_read_reg(&r, c->efuse_mac0),
	    rig_read_reg(&r, c->efuse_mac1), mac);
	tap_ok(memcmp(mac, test_mac, 6) == 0,
	    "MAC from eFuse words 0x3F41A044/48");
	w3 = rig_read_reg(&r, 0x3F41A050);
	w4 = rig_read_reg(&r, 0x3F41A054);
	is_str(chip_s2_package(w3, w4), "ESP32-S2FNR2",
	    "eFuse words 3/4 give package ESP32-S2FNR2");
	chip_s2_revision(w3, w4, &major, &minor);
	tap_ok(major == 0 && minor == 0, "revision v0.0");

	n = proto_build(req, sizeof(req), PROTO_GET_SECURITY_INFO, NULL, 0, 0);
	tap_ok(rig_cmd(&r, req, n, &rs) == 0 && rs.status == 0 &&
	    rs.data_len == 12 && r.flen[0] == 8 + 12 + 4,
	    "GET_SECURITY_INFO: 12 bytes + 4 status bytes");
	tap_ok(rs.data_len == 12 && memcmp(rs.data,
	    "\0\0\0\0\0\0\0\0\0\0\0\0", 12) == 0,
	    "GET_SECURITY_INFO: flags 0, crypt count 0, key purposes 0");

	tap_ok((rig_read_reg(&r, 0x3F404038) & 0x8) == 0,
	    "GPIO_STRAP_REG bit 3 clear (GPIO0 low at reset)");
	is_int(rig_read_reg(&r, 0x3F408128), 0, "RTC_CNTL_OPTION1 reads 0");
	is_int(rig_read_reg(&r, 0x3FF00000), 0, "unmapped address reads 0");
	rig_write_reg(&r, 0x3FF12340, 0xcafe0001);
	is_int(rig_read_reg(&r, 0x3FF12340), 0xcafe0001,
	    "WRITE_REG stores, READ_REG reads it back");
	n = proto_build_write_reg(req, sizeof(req), 0x3FF12340, 0x0000ff00,
	    0x0000ff00, 0);
	rig_status(&r, req, n);
	is_int(rig_read_reg(&r, 0x3FF12340), 0xcafeff01,
	    "WRITE_REG with a mask changes only the masked bits");
	rig_write_reg(&r, CHIP_MAGIC_REG, 0);
	is_int(rig_read_reg(&r, CHIP_MAGIC_REG), 0x7c6,
	    "the ROM magic cannot be overwritten");
	memset(zero, 0, sizeof(zero));
	n = proto_build(req, sizeof(req), PROTO_WRITE_REG, zero, 12, 0);
	is_int(rig_status(&r, req, n), 0x0105,
	    "WRITE_REG with 12 bytes: 01 05");
	emu_free(r.e);
}

/* RDID, SFDP and reset through the SPI registers (PROTOCOL.md 4.3). */
static void
test_spi(void)
{
	struct rig		 r;
	const struct chip_info	*c = chip_by_id(CHIP_ESP32S2);
	uint32_t		 id;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	id = rig_spi_cmd(&r, c, 0x9F, 0, 0, 0, 24);
	is_int(id, 0x1640C8, "RDID via SPI registers: 0x1640C8 (GD25Q32)");
	is_int(chip_flash_size_from_id(id), 4 * 1024 * 1024,
	    "esptool's decoding of that id: 4 MB");
	rig_write_reg(&r, c->spi_base, 1u << 18);
	is_int(rig_read_reg(&r, c->spi_base) & (1u << 18), 0,
	    "CMD bit 18 reads clear once the command ran");
	is_int(rig_spi_cmd(&r, c, 0x5A, 24, 0, 8, 32), 0x50444653,
	    "SFDP (0x5A at 0) returns the signature 0x50444653");
	rig_spi_cmd(&r, c, 0x66, 0, 0, 0, 0);
	rig_spi_cmd(&r, c, 0x99, 0, 0, 0, 0);
	is_int(rig_spi_cmd(&r, c, 0x9F, 0, 0, 0, 24), 0x1640C8,
	    "flash reset 0x66/0x99 accepted, RDID still answers");
	emu_free(r.e);
}

/* FLASH_BEGIN erase, FLASH_DATA, NOR semantics, errors. */
static void
test_flash_plain(void)
{
	struct rig	 r;
	uint8_t		 req[PROTO_MAX_REQ], blk[0x400], *fl;
	struct emu_stats st;
	size_t		 n, i;
	int		 good;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	fl = emu_flash(r.e);
	tap_ok(fl[0] == 0xff && fl[emu_flash_size(r.e) - 1] == 0xff &&
	    emu_flash_size(r.e) == 4 * 1024 * 1024,
	    "fresh flash: 4 MiB of 0xFF");
	n = proto_build_spi_attach(req, sizeof(req), 0, 1);
	is_int(rig_status(&r, req, n), 0, "SPI_ATTACH (8 bytes) accepted");
	n = proto_build_spi_attach(req, sizeof(req), 0, 0);
	is_int(rig_status(&r, req, n), 0x0105,
	    "SPI_ATTACH with 4 bytes (stub form) to the ROM: 01 05");
	n = proto_build_spi_set_params(req, sizeof(req), 4 * 1024 * 1024);
	is_int(rig_status(&r, req, n), 0, "SPI_SET_PARAMS accepted");

	/* Dirty the area, then FLASH_BEGIN must erase it (and only it). */
	memset(fl + 0xF000, 0x00, 0x4000);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x2000, 8,
	    0x400, 0x10000, 1);
	is_int(rig_status(&r, req, n), 0, "FLASH_BEGIN (20 bytes) accepted");
	good = 1;
	for (i = 0x10000; i < 0x12000; i++)
		good &= fl[i] == 0xff;
	tap_ok(good, "FLASH_BEGIN erased its region before answering");
	tap_ok(fl[0xFFFF] == 0 && fl[0x12000] == 0,
	    "bytes outside the region are left alone");

	memset(blk, 0xF0, sizeof(blk));
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, blk,
	    sizeof(blk));
	is_int(rig_status(&r, req, n), 0, "FLASH_DATA block 0 accepted");
	tap_ok(fl[0x10000] == 0xF0 && fl[0x103FF] == 0xF0 &&
	    fl[0x10400] == 0xff,
	    "block 0 programmed at the region start");

	/* Bad checksum: 01 07, nothing written, then the retry works. */
	memset(blk, 0x0F, sizeof(blk));
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 1, blk,
	    sizeof(blk));
	req[4] ^= 0x55;
	is_int(rig_status(&r, req, n), 0x0107, "bad checksum: status 01 07");
	tap_ok(fl[0x10400] == 0xff, "nothing written on a checksum error");
	req[4] ^= 0x55;
	is_int(rig_status(&r, req, n), 0, "the same block resent: accepted");

	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 5, blk,
	    sizeof(blk));
	is_int(rig_status(&r, req, n), 0x0101, "seq skipping ahead: 01 01");
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 2, blk,
	    sizeof(blk));
	le32_put(req + PROTO_HDR_LEN, 0x3ff);
	is_int(rig_status(&r, req, n), 0x0105,
	    "data length field wrong: 01 05");

	/* NOR: a write without erase ANDs into what is there. */
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0, 1,
	    0x400, 0x10000, 1);
	is_int(rig_status(&r, req, n), 0,
	    "FLASH_BEGIN with erase size 0 (no erase)");
	memset(blk, 0x3C, sizeof(blk));
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, blk,
	    sizeof(blk));
	rig_status(&r, req, n);
	tap_ok(fl[0x10000] == (0xF0 & 0x3C) && fl[0x103FF] == 0x30,
	    "programming over old data gives old AND new (0xF0 & 0x3C = 0x30)");

	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x2000, 8,
	    0x400, 0x3FF000, 1);
	is_int(rig_status(&r, req, n), 0x0101,
	    "FLASH_BEGIN past the end of the 4 MB flash: 01 01");
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 4,
	    0x400, 0x10800, 1);
	is_int(rig_status(&r, req, n), 0x0101,
	    "FLASH_BEGIN at an offset not on a 4 KiB sector: 01 01");
	emu_stats(r.e, &st);
	tap_ok(st.unattached == 0,
	    "no flash command before SPI_ATTACH counted");
	emu_free(r.e);
}

/* Erase timing follows the ROM's sector/block split. */
static void
test_erase_timing(void)
{
	struct rig	r;
	uint8_t		req[64];
	size_t		n;
	uint64_t	t0, t;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_REALISTIC, NULL, 0);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 302 * 4096,
	    0, 0x400, 0, 1);
	t0 = emu_modeled_us(r.e);
	rig_status(&r, req, n);
	t = emu_modeled_us(r.e) - t0;
	/* 16 head sectors + 17 blocks + 14 tail sectors (ROM algorithm). */
	tap_ok(t >= 30 * 50000 + 17 * 250000 && t < 30 * 50000 + 17 * 250000 +
	    20000, "erase of 302 sectors at 0: 30 sector + 17 block erases "
	    "(%llu us)", (unsigned long long)t);
	/* Exactly two blocks at a block boundary: still all sectors. */
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x20000,
	    0, 0x400, 0x10000, 1);
	t0 = emu_modeled_us(r.e);
	rig_status(&r, req, n);
	t = emu_modeled_us(r.e) - t0;
	tap_ok(t >= 32 * 50000 && t < 32 * 50000 + 20000,
	    "erase of 128 KiB at 0x10000: 32 sector erases, as the ROM "
	    "splits it (%llu us)", (unsigned long long)t);
	emu_free(r.e);
}

/* Compressed write, MD5, READ_FLASH_SLOW. */
static void
test_flash_defl(void)
{
	struct rig		 r;
	struct proto_resp	 rs;
	uint8_t			*img, req[64];
	char			 want[33], got[33];
	size_t			 len = 100000, n, zlen, i;
	uint64_t		 us;
	int			 hex = 1;

	img = xmalloc(len);
	fill_data(img, len, 20, 7);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_spi_attach(req, sizeof(req), 0, 1);
	rig_status(&r, req, n);
	is_int(rig_defl_write(&r, img, len, 0x40000, &us, &zlen), 0,
	    "FLASH_DEFL_BEGIN + %zu FLASH_DEFL_DATA blocks accepted",
	    (zlen + 0x3ff) / 0x400);
	tap_ok(memcmp(emu_flash(r.e) + 0x40000, img, len) == 0,
	    "inflated data is in flash");
	digest_md5_hex(img, len, want);
	rig_md5(&r, 0x40000, (uint32_t)len, got);
	is_str(got, want, "SPI_FLASH_MD5 matches the image");
	for (i = 0; i < 32; i++)
		hex &= (got[i] >= '0' && got[i] <= '9') ||
		    (got[i] >= 'a' && got[i] <= 'f');
	tap_ok(hex && r.flen[0] == 44, "MD5 reply: 32 lowercase hex chars, "
	    "size 36, frame 44 bytes");
	is_int(us, 0, "fast profile: no modelled time");

	n = proto_build_read_flash_slow(req, sizeof(req), 0x40000 + 100, 16);
	tap_ok(rig_cmd(&r, req, n, &rs) == 0 && rs.status == 0 &&
	    rs.data_len == 64 && memcmp(rs.data, img + 100, 64) == 0,
	    "READ_FLASH_SLOW of 16 bytes: always 64 bytes of data + status");
	n = proto_build_read_flash_slow(req, sizeof(req), 0, 65);
	is_int(rig_status(&r, req, n), 0x010A,
	    "READ_FLASH_SLOW of 65 bytes: 01 0A");
	n = proto_build_md5(req, sizeof(req), 0x3FF000, 0x2000);
	is_int(rig_status(&r, req, n), 0x0109,
	    "SPI_FLASH_MD5 past the flash end: 01 09");
	emu_free(r.e);

	/* A corrupted zlib stream is reported as a deflate error. */
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_DEFL_BEGIN,
	    0x1000, 1, 0x400, 0, 1);
	rig_status(&r, req, n);
	{
		uint8_t	big[PROTO_MAX_REQ], junk[64];

		memset(junk, 0x33, sizeof(junk));
		n = proto_build_data(big, sizeof(big), PROTO_FLASH_DEFL_DATA,
		    0, junk, sizeof(junk));
		is_int(rig_status(&r, big, n), 0x010B,
		    "FLASH_DEFL_DATA that is not zlib: 01 0B");
	}
	emu_free(r.e);
	free(img);
}

/* FLASH_END, MEM_* and the watchdog reset. */
static void
test_leaving(void)
{
	struct rig	r;
	uint8_t		req[PROTO_MAX_REQ], code[100];
	size_t		n;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_end(req, sizeof(req), PROTO_FLASH_END, 1);
	is_int(rig_status(&r, req, n), 0x0106,
	    "FLASH_END without FLASH_BEGIN: 01 06");
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0, 0, 0x400,
	    0, 1);
	rig_status(&r, req, n);
	n = proto_build_end(req, sizeof(req), PROTO_FLASH_END, 1);
	is_int(rig_status(&r, req, n), 0, "FLASH_END(1) answered");
	tap_ok(emu_state(r.e) == EMU_ST_APP &&
	    emu_reason(r.e) == EMU_RS_RUN_USER_CODE,
	    "FLASH_END(1): state app, reason run-user-code");
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	is_int(r.out_len, 0, "after run-user-code the ROM no longer answers");
	emu_free(r.e);

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_DEFL_BEGIN, 0, 0,
	    0x400, 0, 1);
	rig_status(&r, req, n);
	n = proto_build_end(req, sizeof(req), PROTO_FLASH_DEFL_END, 0);
	is_int(rig_status(&r, req, n), 0, "FLASH_DEFL_END(0) answered");
	{
		struct emu_stats st;

		emu_stats(r.e, &st);
		tap_ok(emu_state(r.e) == EMU_ST_DOWNLOAD && st.resets == 1,
		    "FLASH_DEFL_END(0): rebooted back into download mode");
	}
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	is_int(r.nframes, 8, "after the reboot SYNC is answered again");
	emu_free(r.e);

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	n = proto_build_begin(req, sizeof(req), PROTO_MEM_BEGIN, 100, 1, 0x800,
	    0x20000000, 0);
	is_int(rig_status(&r, req, n), 0x010F,
	    "MEM_BEGIN to an address that is not RAM: 01 0F");
	n = proto_build_begin(req, sizeof(req), PROTO_MEM_BEGIN, 100, 1, 0x800,
	    0x40028000, 0);
	is_int(rig_status(&r, req, n), 0, "MEM_BEGIN at 0x40028000 accepted");
	memset(code, 0x11, sizeof(code));
	n = proto_build_data(req, sizeof(req), PROTO_MEM_DATA, 0, code,
	    sizeof(code));
	is_int(rig_status(&r, req, n), 0, "MEM_DATA accepted");
	n = proto_build_mem_end(req, sizeof(req), 0, 0x400288AC);
	is_int(rig_status(&r, req, n), 0, "MEM_END(0, entry) answered");
	tap_ok(emu_state(r.e) == EMU_ST_RAM && emu_entry(r.e) == 0x400288AC,
	    "then the ROM jumps to the entry: state ram, entry recorded");
	emu_free(r.e);

	/* esptool's watchdog_reset (PROTOCOL.md 5.5). */
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	tap_ok(rig_write_reg(&r, 0x3F4080AC, 0x50D83AA1) == 0 &&
	    rig_write_reg(&r, 0x3F408098, 2000) == 0 &&
	    rig_write_reg(&r, 0x3F408094, 0xD0000102) == 0 &&
	    rig_write_reg(&r, 0x3F4080AC, 0) == 0,
	    "watchdog writes (unlock, timeout, enable, lock) all answered");
	tap_ok(emu_state(r.e) == EMU_ST_DOWNLOAD &&
	    emu_next_due_us(r.e) != UINT64_MAX,
	    "right after the writes the unit is still in download mode");
	r.now += 30000;
	emu_drain(r.e, r.out, sizeof(r.out), r.now);
	tap_ok(emu_state(r.e) == EMU_ST_APP &&
	    emu_reason(r.e) == EMU_RS_WDT_RESET,
	    "2000 slow-clock ticks later: reset, state app, reason watchdog");
	emu_free(r.e);

	/* Locked watchdog registers ignore writes. */
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	rig_write_reg(&r, 0x3F408098, 10);
	rig_write_reg(&r, 0x3F408094, 0xD0000102);
	r.now += 1000000;
	emu_drain(r.e, r.out, sizeof(r.out), r.now);
	tap_ok(emu_state(r.e) == EMU_ST_DOWNLOAD,
	    "WDT_EN without the unlock key does nothing");
	emu_free(r.e);
}

/* Realistic timing: replies wait; fast: none. */
static void
test_timing(void)
{
	struct rig	r;
	uint8_t		req[64], buf[256];
	size_t		n;
	uint64_t	due;

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_REALISTIC, NULL, 0);
	n = proto_build_sync(req, sizeof(req));
	{
		uint8_t	wire[128];
		size_t	w = slip_encode(wire, sizeof(wire), req, n);

		emu_feed(r.e, wire, w, r.now);
	}
	is_int(emu_drain(r.e, buf, sizeof(buf), r.now), 0,
	    "realistic: no SYNC reply at the instant of the request");
	due = emu_next_due_us(r.e);
	tap_ok(due > r.now && due != UINT64_MAX,
	    "realistic: first reply due %llu us later",
	    (unsigned long long)(due - r.now));
	tap_ok(emu_modeled_us(r.e) > 0, "realistic: modelled time %llu us > 0",
	    (unsigned long long)emu_modeled_us(r.e));
	emu_free(r.e);

	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, NULL, 0);
	rig_send(&r, req, n);
	tap_ok(r.nframes == 8 && emu_modeled_us(r.e) == 0,
	    "fast: replies at once, modelled time 0");
	emu_free(r.e);
}

/* ESP32 personality: magic, no GET_SECURITY_INFO, SPI offsets, UART. */
static void
test_esp32(void)
{
	struct rig		 r;
	const struct chip_info	*c = chip_by_id(CHIP_ESP32);
	uint8_t			 req[64];
	size_t			 n;
	uint64_t		 t0, t115, t921;

	rig_init(&r, CHIP_ESP32, EMU_PROFILE_REALISTIC, NULL, 0);
	is_int(rig_read_reg(&r, CHIP_MAGIC_REG), 0x00F01D83,
	    "ESP32: magic 0x00F01D83");
	n = proto_build(req, sizeof(req), PROTO_GET_SECURITY_INFO, NULL, 0, 0);
	is_int(rig_status(&r, req, n), 0x0105,
	    "ESP32: GET_SECURITY_INFO answered like an unknown command");
	is_int(rig_spi_cmd(&r, c, 0x9F, 0, 0, 0, 24), 0x1640C8,
	    "ESP32: RDID at the ESP32 SPI register offsets");
	n = proto_build_sync(req, sizeof(req));
	t0 = emu_modeled_us(r.e);
	rig_send(&r, req, n);
	t115 = emu_modeled_us(r.e) - t0;
	/* 46 request bytes + 8 x 14 reply bytes at 10 bits each. */
	tap_ok(t115 >= (46 + 112) * 10 * 1000000ULL / 115200 &&
	    t115 < (46 + 112) * 10 * 1000000ULL / 115200 + 200,
	    "ESP32 at 115200: SYNC costs its UART wire time (%llu us)",
	    (unsigned long long)t115);
	n = proto_build_change_baud(req, sizeof(req), 921600, 0);
	is_int(rig_status(&r, req, n), 0, "CHANGE_BAUDRATE accepted");
	is_int(emu_baud(r.e), 921600, "UART now at 921600");
	n = proto_build_sync(req, sizeof(req));
	t0 = emu_modeled_us(r.e);
	rig_send(&r, req, n);
	t921 = emu_modeled_us(r.e) - t0;
	tap_ok(t921 * 6 < t115,
	    "at 921600 the same SYNC is 8x quicker (%llu us)",
	    (unsigned long long)t921);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0, 0, 0x400,
	    0, 1);
	is_int(rig_status(&r, req, n), 0x0105,
	    "ESP32 ROM: 20-byte FLASH_BEGIN refused (16 bytes only)");
	emu_free(r.e);
}

/*
 * Calibration: a ROM-path compressed write of the shape of the one public
 * ESP32-S2 native-USB figure (1,235,024 bytes, 816,561 compressed, 26.4 s
 * of block round trips) must come out within 3 % of 26.4 s.
 */
static void
test_calibration(void)
{
	struct rig	 r;
	uint8_t		*img, req[64];
	char		 path[4096], want[33], got[33];
	const char	*shared;
	size_t		 len = 1235024, zlen, n;
	uint64_t	 us;
	FILE		*f;
	long		 fsize;

	img = xmalloc(len);
	fill_data(img, len, 32, 1);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_REALISTIC, NULL, 0);
	n = proto_build_spi_attach(req, sizeof(req), 0, 1);
	rig_status(&r, req, n);
	is_int(rig_defl_write(&r, img, len, 0, &us, &zlen), 0,
	    "realistic: %zu-byte image written (%zu compressed)", len, zlen);
	tap_diag("model: %zu bytes (%zu compressed, %zu blocks) in %.2f s of "
	    "FLASH_DEFL_DATA round trips; public figure 26.4 s for 816561 "
	    "compressed", len, zlen, (zlen + 0x3ff) / 0x400, us / 1e6);
	tap_ok(us > 26400000ULL * 97 / 100 && us < 26400000ULL * 103 / 100,
	    "modelled write time %.2f s is within 3 %% of 26.4 s", us / 1e6);
	digest_md5_hex(img, len, want);
	rig_md5(&r, 0, (uint32_t)len, got);
	is_str(got, want, "and the MD5 matches after the realistic write");
	emu_free(r.e);
	free(img);

	/* The real factory image, for the record (diagnostic only). */
	shared = getenv("ESPF_SHARED");
	snprintf(path, sizeof(path), "%s/firmware/"
	    "factory-screek-humen-sensor-1u-20230704_1.bin",
	    shared != NULL ? shared : "../shared");
	if ((f = fopen(path, "rb")) == NULL) {
		tap_diag("no factory image at %s: skipping its timing", path);
		return;
	}
	fseek(f, 0, SEEK_END);
	fsize = ftell(f);
	rewind(f);
	img = xmalloc((size_t)fsize);
	if (fread(img, 1, (size_t)fsize, f) == (size_t)fsize) {
		rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_REALISTIC, NULL, 0);
		rig_defl_write(&r, img, (size_t)fsize, 0, &us, &zlen);
		tap_diag("factory image: %ld bytes (%zu compressed) modelled "
		    "at %.2f s of block round trips (+ %.2f s erase)", fsize,
		    zlen, us / 1e6, (emu_modeled_us(r.e) - us) / 1e6);
		emu_free(r.e);
	}
	fclose(f);
	free(img);
}

/* Faults: noise, drop, rom-error, bitflip, stall, corrupt, unplug. */
static void
test_faults(void)
{
	struct rig		 r;
	struct emu_fault	 f[2];
	struct emu_stats	 st;
	uint8_t			*img, req[64];
	char			*cause, want[33], got[33];
	size_t			 n, zlen, len = 20000;
	uint64_t		 us;

	img = xmalloc(len);
	fill_data(img, len, 16, 3);

	emu_fault_parse("kind=noise", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	tap_ok(r.out_len > 112 && memcmp(r.out, "ESP-ROM:esp32s2", 15) == 0 &&
	    r.nframes == 8, "noise: boot text first, then the 8 SYNC replies");
	emu_free(r.e);

	emu_fault_parse("kind=drop-reply,op=READ_REG,at=2", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	tap_ok(rig_read_reg(&r, CHIP_MAGIC_REG) == 0x7c6 &&
	    rig_read_reg(&r, CHIP_MAGIC_REG) == 0xdeadbeef &&
	    rig_read_reg(&r, CHIP_MAGIC_REG) == 0x7c6,
	    "drop-reply op=READ_REG at=2: only the second reply is lost");
	emu_free(r.e);

	emu_fault_parse("kind=rom-error,code=0x08,op=FLASH_DEFL_DATA,at=2",
	    &f[0], &cause);
	{
		/* The failed block leaves no trace: resending it works. */
		uint8_t		*z, big[PROTO_MAX_REQ];
		uLongf		 zl = compressBound(len);
		size_t		 pos, bl;
		uint32_t	 seq = 0;
		int		 bad = 0;

		z = xmalloc(zl);
		compress2(z, &zl, img, len, 9);
		rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
		n = proto_build_begin(big, sizeof(big), PROTO_FLASH_DEFL_BEGIN,
		    (uint32_t)((len + 0x3ff) & ~0x3ffu),
		    (uint32_t)((zl + 0x3ff) / 0x400), 0x400, 0x1000, 1);
		rig_status(&r, big, n);
		for (pos = 0; pos < zl; pos += bl) {
			bl = MINIMUM(0x400, zl - pos);
			n = proto_build_data(big, sizeof(big),
			    PROTO_FLASH_DEFL_DATA, seq, z + pos, bl);
			if (rig_status(&r, big, n) == 0x0108) {
				bad++;
				n = proto_build_data(big, sizeof(big),
				    PROTO_FLASH_DEFL_DATA, seq, z + pos, bl);
				if (rig_status(&r, big, n) != 0)
					bad += 100;
			}
			seq++;
		}
		digest_md5_hex(img, len, want);
		rig_md5(&r, 0x1000, (uint32_t)len, got);
		tap_ok(bad == 1 && strcmp(got, want) == 0,
		    "rom-error: the block resent after 01 08 completes the "
		    "image");
		emu_free(r.e);
		free(z);
	}

	emu_fault_parse("kind=bitflip", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	rig_defl_write(&r, img, len, 0, &us, &zlen);
	digest_md5_hex(img, len, want);
	rig_md5(&r, 0, (uint32_t)len, got);
	tap_ok(got[0] != '\0' && strcmp(got, want) != 0,
	    "bitflip: the MD5 no longer matches");
	emu_free(r.e);

	emu_fault_parse("kind=stall,ms=50,op=READ_REG", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	{
		uint8_t	wire[64], buf[64];
		size_t	w;

		n = proto_build_read_reg(req, sizeof(req), CHIP_MAGIC_REG);
		w = slip_encode(wire, sizeof(wire), req, n);
		emu_feed(r.e, wire, w, r.now);
		tap_ok(emu_drain(r.e, buf, sizeof(buf), r.now + 49000) == 0 &&
		    emu_drain(r.e, buf, sizeof(buf), r.now + 50000) == 14,
		    "stall ms=50: the reply leaves 50 ms late");
		emu_stats(r.e, &st);
		tap_ok(st.stall_us == 50000 && st.modeled_us == 0,
		    "stall time is counted apart from modelled time");
	}
	emu_free(r.e);

	emu_fault_parse("kind=corrupt,at=3", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	n = proto_build_read_reg(req, sizeof(req), CHIP_MAGIC_REG);
	rig_send(&r, req, n);
	tap_ok(r.out_len == 14 && r.out[2] == (0x0a ^ 0x01) && r.out[3] == 0x04,
	    "corrupt at=3: the third reply byte has a bit flipped");
	emu_free(r.e);

	emu_fault_parse("kind=corrupt,at=100,dir=in", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	{
		uint8_t	big[PROTO_MAX_REQ], blk[0x400];

		/* 30 wire bytes, then the data of the FLASH_DATA frame. */
		n = proto_build_begin(big, sizeof(big), PROTO_FLASH_BEGIN,
		    0x1000, 4, 0x400, 0, 1);
		rig_status(&r, big, n);
		memset(blk, 0xa5, sizeof(blk));
		n = proto_build_data(big, sizeof(big), PROTO_FLASH_DATA, 0,
		    blk, sizeof(blk));
		tap_ok(rig_status(&r, big, n) == 0x0107 &&
		    rig_status(&r, big, n) == 0,
		    "corrupt dir=in at=100: that FLASH_DATA fails with 01 07, "
		    "its resend passes");
	}
	emu_free(r.e);

	emu_fault_parse("kind=unplug,at=20", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	tap_ok(r.out_len == 20 && emu_state(r.e) == EMU_ST_UNPLUGGED &&
	    emu_reason(r.e) == EMU_RS_UNPLUG,
	    "unplug at=20: 20 bytes leave, then the unit is gone");
	emu_free(r.e);

	emu_fault_parse("kind=unplug,at=100,dir=in", &f[0], &cause);
	rig_init(&r, CHIP_ESP32S2, EMU_PROFILE_FAST, f, 1);
	n = proto_build_sync(req, sizeof(req));
	rig_send(&r, req, n);
	rig_send(&r, req, n);
	tap_ok(emu_state(r.e) == EMU_ST_DOWNLOAD && r.nframes == 8,
	    "unplug dir=in at=100: two SYNCs (92 bytes) still answered");
	rig_send(&r, req, n);
	tap_ok(emu_state(r.e) == EMU_ST_UNPLUGGED && r.out_len == 0,
	    "unplug dir=in at=100: gone during the third SYNC");
	emu_free(r.e);
	free(img);
}

/* The --fault grammar and the flash size parser. */
static void
test_parsers(void)
{
	struct emu_fault	 f;
	char			*cause = NULL;
	uint32_t		 size = 0;
	int			 rc;

	rc = emu_fault_parse("unit=2,kind=drop-reply,op=FLASH_DEFL_DATA,"
	    "at=5,count=2", &f, &cause);
	tap_ok(rc == 0 && f.unit == 2 && f.kind == EMU_FAULT_DROP_REPLY &&
	    f.op == 0x11 && f.at == 5 && f.count == 2,
	    "drop-reply spec parsed");
	rc = emu_fault_parse("kind=rom-error,code=0x08,op=0x11", &f, &cause);
	tap_ok(rc == 0 && f.unit == -1 && f.code == 8 && f.op == 0x11 &&
	    f.at == 1 && f.count == 1, "rom-error spec with defaults");
	rc = emu_fault_parse("kind=unplug,at=0,dir=in", &f, &cause);
	tap_ok(rc == 0 && f.at == 0 && f.dir_in, "unplug at=0 dir=in parsed");

#define BAD(spec, word) do {						\
	cause = NULL;							\
	rc = emu_fault_parse(spec, &f, &cause);				\
	tap_ok(rc == -EINVAL && cause != NULL && strstr(cause, word) != NULL,\
	    "rejected: %s (%s)", spec, cause != NULL ? cause : "-");	\
	free(cause);							\
} while (0)
	BAD("kind=explode", "unknown kind");
	BAD("at=3", "kind= is required");
	BAD("kind=stall", "needs ms=");
	BAD("kind=unplug", "needs at=");
	BAD("kind=rom-error,op=SYNC", "needs code=");
	BAD("kind=noise,color=red", "unknown key");
	BAD("kind=noise,at=1,at=2", "given twice");
	BAD("kind=drop-reply,op=BOGUS", "op 'BOGUS'");
	BAD("kind=unplug,at=5,ms=3", "takes no ms=");
	BAD("kind=stall,ms=-4", "bad value");
	BAD("kind=drop-reply,at=0", "counts from 1");
	BAD("kind", "not key=value");
#undef BAD

	tap_ok(emu_parse_flash_size("4MB", &size, &cause) == 0 &&
	    size == 4 * 1024 * 1024, "flash size 4MB");
	tap_ok(emu_parse_flash_size("512KB", &size, &cause) == 0 &&
	    size == 512 * 1024, "flash size 512KB");
	cause = NULL;
	tap_ok(emu_parse_flash_size("3MB", &size, &cause) == -EINVAL &&
	    cause != NULL, "flash size 3MB rejected");
	free(cause);
	cause = NULL;
	tap_ok(emu_parse_flash_size("32MB", &size, &cause) == -EINVAL,
	    "flash size 32MB rejected");
	free(cause);
}

/* Run every group; the exit status says whether all passed. */
int
main(void)
{
	test_golden();
	test_registers();
	test_spi();
	test_flash_plain();
	test_erase_timing();
	test_flash_defl();
	test_leaving();
	test_timing();
	test_esp32();
	test_calibration();
	test_faults();
	test_parsers();
	return (tap_done());
}
