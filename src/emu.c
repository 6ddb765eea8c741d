/*
 * ROM-bootloader emulator (PROTOCOL.md sections 1-6 and 11): an ESP32-S2
 * in USB-OTG download mode, or an ESP32 on a UART bridge, down to the bytes
 * of every reply.  Pure: the caller owns the context, feeds host bytes with
 * a timestamp and drains reply bytes when they are due.  No I/O, no
 * globals, no logging.
 *
 * Time: with the realistic profile each command occupies the device for
 * link time (USB or UART) plus ROM CPU and flash time, and its reply is
 * queued with the device time at which its last byte reaches the host.
 * Commands are handled when their frame completes; effects on the flash
 * model are immediate, only the replies wait.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "emu.h"
#include "image.h"
#include "proto.h"
#include "slip.h"
#include "util.h"

/*
 * -- Realistic profile figures (each one is listed in espfleet-sim(1)) --
 *
 * Flash: GigaDevice GD25Q32C datasheet, "Features": page program 0.6 ms
 * typical (256 B), sector erase (4 KiB) 50 ms typical, block erase
 * (32/64 KiB) 0.15/0.25 s typical.  Programming is scaled linearly from
 * the page time, as the ROM writes 32-byte pieces.
 *
 * USB: the ROM's CDC-ACM link is modelled as a per-command turnaround (one
 * 1 ms full-speed frame) plus a per-byte cost.  The per-byte cost is the
 * one fitted figure: it makes a ROM-path compressed write of 1,235,024
 * bytes (816,561 compressed) take 26.4 s of block round trips, the public
 * figure for a real ESP32-S2 on native USB (esptool issue 799).
 */
#define EMU_USB_NS_PER_BYTE	25545	/* fitted: 39.15 KB/s */
#define EMU_USB_TURNAROUND_US	1000	/* one USB full-speed frame */
#define EMU_ROM_CMD_US		20	/* ROM parse and dispatch */
#define EMU_PROG_NS_PER_BYTE	2344	/* tPP 0.6 ms / 256 B */
#define EMU_SECTOR_ERASE_US	50000	/* tSE typ, 4 KiB */
#define EMU_BLOCK_ERASE_US	250000	/* tBE typ, 64 KiB */
#define EMU_INFLATE_NS_PER_BYTE	625	/* ~25 cycles/byte at 40 MHz */
#define EMU_SUM_NS_PER_BYTE	100	/* data checksum, ~4 cycles/byte */
#define EMU_READ_NS_PER_BYTE	400	/* ROM flash read, slow read mode */
#define EMU_MD5_NS_PER_BYTE	450	/* ROM software MD5 at 40 MHz */
#define EMU_REBOOT_US		100000	/* software reset back to the ROM */
#define EMU_RTC_SLOW_HZ		90000	/* S2 RTC slow clock (watchdog ticks) */
#define EMU_BOOT_US		312000	/* reset to app banner ("I (312)") */
#define EMU_IDF_RESTART_US	50000	/* IDF usb_console defers 50 ms */
#define EMU_EN_RC_US		1000	/* EN RC: strap sampled 1 ms later */
#define EMU_STUB_START_US	10000	/* stub init until OHAI */
#define EMU_STUB_MD5_NS_PER_BYTE 150	/* ROM MD5 at the stub's 240 MHz */

/* Stub error codes (PROTOCOL.md 1.5): first status byte, second 0. */
#define EMU_STUB_E_BAD_LEN	0xC0
#define EMU_STUB_E_CHECKSUM	0xC1
#define EMU_STUB_E_BLOCKSIZE	0xC2
#define EMU_STUB_E_SPI		0xC4
#define EMU_STUB_E_NOT_FLASHING	0xC6
#define EMU_STUB_E_INFLATE	0xC7
#define EMU_STUB_E_NOT_ENOUGH	0xC8
#define EMU_STUB_E_TOO_MUCH	0xC9
#define EMU_STUB_E_NOT_IMPL	0xFF

/* USB ids (PROTOCOL.md 8.3). */
#define EMU_VID_ESPRESSIF	0x303a
#define EMU_PID_ROM		0x0002	/* S2 ROM download mode */
#define EMU_PID_APP		0x80c2	/* Lolin S2 mini Arduino app */
#define EMU_VID_SILABS		0x10c4
#define EMU_PID_CP2102		0xea60

/* Strap bit 3: GPIO0 level at the last reset (PROTOCOL.md 5.5). */
#define EMU_STRAP_GPIO0		0x08
#define EMU_BOOTLOADER_OFF	0x1000u

#define EMU_DEFAULT_FLASH	(4u * 1024 * 1024)
#define EMU_DEFAULT_BAUD	115200
#define EMU_SECTOR		0x1000u
#define EMU_BLOCK		0x10000u
#define EMU_MAX_BLOCK		0x4000u	/* largest FLASH/MEM block accepted */
#define EMU_NREGS		128	/* registers the store remembers */
#define EMU_NRAMSEGS		8	/* MEM_BEGIN segments kept */
#define EMU_QUEUE_MAX		(1024 * 1024) /* reply bytes not yet drained */
#define EMU_FRAME_CAP		(PROTO_MAX_REQ + 64)
#define EMU_INFLATE_CHUNK	4096
#define EMU_RESP_MAX		(PROTO_HDR_LEN + PROTO_READ_SLOW_BLOCK + 4)

/* JEDEC: GigaDevice (0xC8), GD25Qxx memory type 0x40, capacity log2(size). */
#define EMU_JEDEC_MFR		0xC8
#define EMU_JEDEC_TYPE		0x40

/* SPI user-command register bits (esptool run_spiflash_command). */
#define EMU_SPI_CMD_USR		(1u << 18)
#define EMU_SPI_USR_COMMAND	(1u << 31)
#define EMU_SPI_USR_ADDR	(1u << 30)
#define EMU_SPI_USR_MISO	(1u << 28)
#define EMU_SPI_ADDR_LEN_SHIFT	26

/* ESP32-S2 registers beyond the chip table (PROTOCOL.md 4.2, 5.5). */
#define EMU_S2_EFUSE_BASE	0x3F41A000u
#define EMU_S2_EFUSE_WORD3	0x3F41A050u
#define EMU_S2_EFUSE_WORD4	0x3F41A054u
#define EMU_S2_EFUSE_BLK2_W4	0x3F41A06Cu
#define EMU_S2_STRAP_REG	0x3F404038u
#define EMU_S2_WDTCONFIG0	0x3F408094u
#define EMU_S2_WDTCONFIG1	0x3F408098u
#define EMU_S2_WDTFEED		0x3F4080A8u
#define EMU_S2_WDTWPROTECT	0x3F4080ACu
#define EMU_S2_OPTION1		0x3F408128u
#define EMU_WDT_WKEY		0x50D83AA1u
#define EMU_WDT_EN		(1u << 31)
/* Flash cap 2 (4 MB embedded) in bits 21-24, PSRAM cap 1 in 28-31. */
#define EMU_S2_WORD3		((2u << 21) | (1u << 28))
#define EMU_S2_BLK2_VERSION	(2u << 4)

/* ESP32 registers (esptool targets/esp32.py). */
#define EMU_E32_EFUSE_BASE	0x3FF5A000u
#define EMU_E32_EFUSE_WORD3	0x3FF5A00Cu
#define EMU_E32_EFUSE_WORD5	0x3FF5A014u
#define EMU_E32_APB_DATE	0x3FF6607Cu
#define EMU_E32_UART_CLKDIV	0x3FF40014u
#define EMU_E32_STRAP_REG	0x3FF44038u
#define EMU_E32_APB_HZ		40000000u
/* Package 1 (D0WD) and the revision bits of a v3 chip. */
#define EMU_E32_WORD3		((1u << 9) | (1u << 15))
#define EMU_E32_WORD5		(1u << 20)

/* The boot text a ROM prints at reset (the noise fault sends it). */
static const char emu_banner_s2[] =
    "ESP-ROM:esp32s2-rc4-20191025\r\n"
    "Build:Oct 25 2019\r\n"
    "rst:0x1 (POWERON),boot:0x0 (DOWNLOAD(USB/UART0/1))\r\n"
    "waiting for download\r\n";
static const char emu_banner_esp32[] =
    "ets Jun  8 2016 00:22:57\r\n\r\n"
    "rst:0x1 (POWERON_RESET),boot:0x3 "
    "(DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\n"
    "waiting for download\r\n";

/* Start of a GD25Q32C-style SFDP table: signature, rev 1.6, one header. */
static const uint8_t emu_sfdp[] = {
	0x53, 0x46, 0x44, 0x50, 0x06, 0x01, 0x00, 0xff,
	0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xff,
};

/* Address ranges a MEM_BEGIN may load into. */
struct emu_range {
	uint32_t	start;
	uint32_t	end;		/* exclusive */
};

static const struct emu_range emu_ram_s2[] = {
	{ 0x3FF9E000, 0x3FFA0000 },	/* RTC fast, data bus */
	{ 0x3FFB0000, 0x40000000 },	/* internal SRAM, data bus */
	{ 0x40020000, 0x40072000 },	/* internal SRAM + RTC fast, instr. */
	{ 0x50000000, 0x50002000 },	/* RTC slow */
};

static const struct emu_range emu_ram_esp32[] = {
	{ 0x3FF80000, 0x3FF82000 },	/* RTC fast, data bus */
	{ 0x3FFAE000, 0x40000000 },	/* internal SRAM, data bus */
	{ 0x40070000, 0x400C2000 },	/* internal SRAM + RTC fast, instr. */
	{ 0x50000000, 0x50002000 },	/* RTC slow */
};

/* Reply bytes that become due together. */
struct emu_seg {
	uint64_t	due_us;
	size_t		len;
};

/* One remembered register write. */
struct emu_reg {
	uint32_t	addr;
	uint32_t	value;
};

/* One MEM_BEGIN upload. */
struct emu_ramseg {
	uint32_t	 addr;
	uint32_t	 size;
	uint8_t		*data;
};

enum emu_flmode {
	EMU_FL_NONE = 0,
	EMU_FL_PLAIN,			/* after FLASH_BEGIN */
	EMU_FL_DEFL			/* after FLASH_DEFL_BEGIN */
};

struct emu {
	const struct chip_info	*chip;
	enum emu_link		 link;
	enum emu_profile	 profile;
	uint8_t			 mac[6];
	uint64_t		 seed;
	struct emu_fault	*faults;
	uint64_t		*fault_seen;	/* matches counted per fault */
	size_t			 nfaults;
	uint64_t		 unplug_in;	/* host bytes before unplug */
	uint64_t		 unplug_out;	/* reply bytes before unplug */

	/* Flash. */
	uint8_t			*flash;
	int			 flash_owned;
	uint32_t		 flash_size;
	uint32_t		 flash_mask;
	uint32_t		 chip_size;	/* as SPI_SET_PARAMS said */
	int			 attached;	/* SPI_ATTACH seen */

	/* Framing. */
	struct slip_dec		 dec;
	uint8_t			*frame;
	size_t			 rx_wire;	/* wire bytes of this frame */

	/* Reply queue: bytes q[q_head..+q_len), segments likewise. */
	uint8_t			*q;
	size_t			 q_head, q_len, q_cap;
	struct emu_seg		*segs;
	size_t			 s_head, s_n, s_cap;

	/* Device. */
	enum emu_state		 state;
	enum emu_reason		 reason;
	uint32_t		 entry;
	uint64_t		 t;		/* device time, this command */
	uint64_t		 busy_until;
	uint64_t		 deaf_until;	/* rebooting: input is lost */
	uint64_t		 wdt_due;	/* 0 when the watchdog is off */
	uint64_t		 stall_cmd;	/* stall in this command */
	uint32_t		 last_value;	/* "value" of a reply */
	uint32_t		 baud, baud0;
	int			 dtr, rts;

	/* Unit life (config.boot). */
	int			 boot_model;
	enum emu_board		 board;
	int			 app_silent;
	uint64_t		 gen;		/* re-enumerations */
	int			 force_dl;	/* RTC_CNTL_OPTION1 bit 0 */
	uint32_t		 strap;		/* GPIO_STRAP_REG */
	int			 en_low;	/* bridge: EN held low */
	uint64_t		 en_sample;	/* bridge: strap sample due */
	uint64_t		 restart_due;	/* app restart pending */
	int			 restart_dl;	/* ... into download mode */
	int			 tusb;		/* TinyUSB line-state step */
	int			 boot_ok;
	char			 boot_line[160];
	uint32_t		 slow;		/* slow-flash factor, 1 none */

	/* Flasher stub (PROTOCOL.md 9). */
	int			 stub_model;	/* config.stub_model */
	int			 stub;		/* the stub answers */
	uint8_t			 stub_err;	/* latched write error */
	uint32_t		 fl_erased;	/* lazy erase: done below */
	int			 rd_active;	/* READ_FLASH streaming */
	uint32_t		 rd_off, rd_len, rd_psize, rd_inflight;
	uint32_t		 rd_sent, rd_acked;
	uint8_t			*rd_buf;

	/* Registers. */
	struct emu_reg		 regs[EMU_NREGS];
	size_t			 nregs;
	uint32_t		 spi_w[16];
	int			 wdt_unlocked;

	/* Flash write in progress. */
	enum emu_flmode		 fl_mode;
	uint32_t		 fl_offset, fl_size, fl_blocks, fl_bsize;
	uint32_t		 fl_seq;	/* next block expected */
	uint32_t		 fl_cursor;	/* DEFL: next flash address */
	int			 fl_zinit, fl_zend, fl_zerr;
	z_stream		 zs;
	uint8_t			*zbuf;

	/* RAM upload. */
	struct emu_ramseg	 ram[EMU_NRAMSEGS];
	size_t			 nram;
	int			 mem_active;
	uint32_t		 mem_bsize, mem_seq;

	struct emu_stats	 st;
};

static const char *emu_state_names[EMU_ST__MAX] = {
	"download", "app", "ram", "unplugged"
};
static const char *emu_reason_names[EMU_RS__MAX] = {
	"none", "run-user-code", "watchdog-reset", "mem-entry", "unplug",
	"hard-reset", "app-restart", "soft-reset"
};
static const char *emu_fault_names[EMU_FAULT__MAX] = {
	"drop-reply", "corrupt", "stall", "rom-error", "bitflip", "noise",
	"unplug", "reenum", "slow-flash"
};
static const char *emu_board_names[EMU_BOARD__MAX] = {
	"plain", "bridge", "idf-cdc", "tinyusb"
};
static const char *emu_profile_names[EMU_PROFILE__MAX] = {
	"fast", "realistic"
};

/* ------------------------------------------------------------------ */
/* Time model                                                          */
/* ------------------------------------------------------------------ */

/* Microseconds for bytes at ns_per_byte; 0 with the fast profile. */
static uint64_t
emu_cost_us(const struct emu *e, uint64_t ns_per_byte, uint64_t bytes)
{
	if (e->profile != EMU_PROFILE_REALISTIC)
		return (0);
	return ((ns_per_byte * bytes + 999) / 1000);
}

/* A fixed delay, only with the realistic profile. */
static uint64_t
emu_fixed_us(const struct emu *e, uint64_t us)
{
	return (e->profile == EMU_PROFILE_REALISTIC ? us : 0);
}

/* Time for bytes to cross the link: USB model or 10 bits a byte on UART. */
static uint64_t
emu_wire_us(const struct emu *e, size_t bytes)
{
	if (e->profile != EMU_PROFILE_REALISTIC)
		return (0);
	if (e->link == EMU_LINK_USB)
		return (emu_cost_us(e, EMU_USB_NS_PER_BYTE, bytes));
	return (((uint64_t)bytes * 10 * 1000000 + e->baud - 1) / e->baud);
}

/* A 64-bit mix (splitmix64) for seeded choices. */
static uint64_t
emu_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return (x ^ (x >> 31));
}

/* ------------------------------------------------------------------ */
/* Reply queue                                                         */
/* ------------------------------------------------------------------ */

/* Append bytes due at due_us; dropped when the host stopped reading. */
static void
emu_queue(struct emu *e, const void *p, size_t len, uint64_t due)
{
	struct emu_seg	*last;
	size_t		 cap;

	if (len == 0)
		return;
	if (e->q_len + len > EMU_QUEUE_MAX) {
		e->st.dropped++;
		return;
	}
	if (e->q_head + e->q_len + len > e->q_cap) {
		memmove(e->q, e->q + e->q_head, e->q_len);
		e->q_head = 0;
		if (e->q_len + len > e->q_cap) {
			cap = MAXIMUM(e->q_cap * 2, e->q_len + len);
			e->q = xrealloc(e->q, cap);
			e->q_cap = cap;
		}
	}
	memcpy(e->q + e->q_head + e->q_len, p, len);
	e->q_len += len;

	if (e->s_n > 0) {
		last = &e->segs[e->s_head + e->s_n - 1];
		if (last->due_us == due) {
			last->len += len;
			return;
		}
	}
	if (e->s_head + e->s_n == e->s_cap) {
		memmove(e->segs, e->segs + e->s_head,
		    e->s_n * sizeof(*e->segs));
		e->s_head = 0;
		if (e->s_n == e->s_cap) {
			cap = e->s_cap * 2;
			e->segs = xrealloc(e->segs, cap * sizeof(*e->segs));
			e->s_cap = cap;
		}
	}
	e->segs[e->s_head + e->s_n].due_us = due;
	e->segs[e->s_head + e->s_n].len = len;
	e->s_n++;
}

/* Forget queued bytes due after t (the chip reset before sending them). */
static void
emu_queue_cut(struct emu *e, uint64_t t)
{
	struct emu_seg	*s;

	while (e->s_n > 0) {
		s = &e->segs[e->s_head + e->s_n - 1];
		if (s->due_us <= t)
			break;
		e->q_len -= s->len;
		e->s_n--;
	}
}

/* Does the n-th (1-based) match of a fault fall in its at/count window? */
static int
emu_fault_window(const struct emu_fault *f, uint64_t n)
{
	if (n < f->at)
		return (0);
	return (f->count == 0 || n - f->at < f->count);
}

/*
 * Queue one reply frame at the end of the command's device time, after
 * its wire time, applying the frame faults (noise, stall, drop).
 */
static void
emu_reply(struct emu *e, uint8_t op, uint32_t value, const uint8_t *data,
    size_t len, uint8_t status, uint8_t error)
{
	uint8_t			 raw[EMU_RESP_MAX];
	uint8_t			 wire[SLIP_ENCODED_MAX(EMU_RESP_MAX)];
	const struct emu_fault	*f;
	const char		*banner;
	size_t			 n, w, i;
	int			 drop = 0, noise = 0;
	uint64_t		 stall = 0;

	n = proto_build_resp(raw, sizeof(raw), op, value, data, len,
	    e->stub ? PROTO_STUB_STATUS_LEN : e->chip->rom_status_len, status,
	    error);
	w = slip_encode(wire, sizeof(wire), raw, n);
	if (n == 0 || w == 0)
		return;		/* cannot happen: payloads are bounded */

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_DROP_REPLY &&
		    f->kind != EMU_FAULT_STALL && f->kind != EMU_FAULT_NOISE)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (!emu_fault_window(f, ++e->fault_seen[i]))
			continue;
		if (f->kind == EMU_FAULT_DROP_REPLY)
			drop = 1;
		else if (f->kind == EMU_FAULT_STALL)
			stall += (uint64_t)f->ms * 1000;
		else
			noise = 1;
	}
	if (noise) {
		banner = e->chip->id == CHIP_ESP32 ? emu_banner_esp32 :
		    emu_banner_s2;
		e->t += emu_wire_us(e, strlen(banner));
		emu_queue(e, banner, strlen(banner), e->t);
	}
	e->t += emu_wire_us(e, w) + stall;
	e->stall_cmd += stall;
	if (!drop)
		emu_queue(e, wire, w, e->t);
}

/* Success reply with an optional payload. */
static void
emu_ok(struct emu *e, uint8_t op, const uint8_t *data, size_t len)
{
	emu_reply(e, op, e->last_value, data, len, 0, 0);
}

/* A stub's error code for what the ROM would call error. */
static uint8_t
emu_stub_code(uint8_t error)
{
	switch (error) {
	case PROTO_E_CRC:
		return (EMU_STUB_E_CHECKSUM);
	case PROTO_E_PARAM:
		return (EMU_STUB_E_BLOCKSIZE);
	case PROTO_E_FAILED:
		return (EMU_STUB_E_NOT_FLASHING);
	case PROTO_E_FLASH_WRITE:
	case PROTO_E_FLASH_READ:
		return (EMU_STUB_E_SPI);
	case PROTO_E_DEFLATE:
	case PROTO_E_ADLER:
		return (EMU_STUB_E_INFLATE);
	default:
		return (EMU_STUB_E_BAD_LEN);
	}
}

/* Failure reply with exactly this code: ROM [1, code], stub [code, 0]. */
static void
emu_fail_raw(struct emu *e, uint8_t op, uint8_t code)
{
	if (e->stub)
		emu_reply(e, op, e->last_value, NULL, 0, code, 0);
	else
		emu_reply(e, op, e->last_value, NULL, 0, 1, code);
}

/* Failure reply: status 1 and a ROM error code (the stub's equivalent). */
static void
emu_fail(struct emu *e, uint8_t op, uint8_t error)
{
	emu_fail_raw(e, op, e->stub ? emu_stub_code(error) : error);
}

/* ------------------------------------------------------------------ */
/* Flash model                                                         */
/* ------------------------------------------------------------------ */

/* log2 of the flash size: the JEDEC capacity byte. */
static unsigned
emu_size_code(uint32_t size)
{
	unsigned	code = 0;

	while ((1u << code) < size)
		code++;
	return (code);
}

/*
 * A slow-flash fault: the flash takes factor times its typical time, in
 * either profile; the extra time counts as stall, not modelled time.
 */
static void
emu_slow(struct emu *e, uint64_t typ_us)
{
	uint64_t	extra;

	if (e->slow <= 1)
		return;
	extra = typ_us * (e->slow - 1);
	e->t += extra;
	e->stall_cmd += extra;
}

static void	emu_stub_erase_to(struct emu *, uint32_t);
static void	emu_stub_start(struct emu *);
static int	emu_stub_entry(const struct emu *, uint32_t);
static void	emu_stub_dispatch(struct emu *, const struct proto_req *);
static void	emu_stub_read_ack(struct emu *, const uint8_t *, size_t);

/* Program like NOR: bits only go from 1 to 0.  -1 past the chip size. */
static int
emu_program(struct emu *e, uint32_t addr, const uint8_t *p, size_t len)
{
	size_t	i;

	if ((uint64_t)addr + len > e->chip_size)
		return (-1);
	for (i = 0; i < len; i++)
		e->flash[(addr + i) & e->flash_mask] &= p[i];
	e->t += emu_cost_us(e, EMU_PROG_NS_PER_BYTE, len);
	emu_slow(e, ((uint64_t)EMU_PROG_NS_PER_BYTE * len + 999) / 1000);
	e->st.flash_written += len;
	return (0);
}

/* Erase one span of the given size (sector or block) to 0xFF. */
static void
emu_erase_span(struct emu *e, uint32_t addr, uint32_t size)
{
	uint32_t	i, a = addr & e->flash_mask;

	if ((uint64_t)a + size <= e->flash_size)
		memset(e->flash + a, 0xff, size);	/* the usual case */
	else {
		for (i = 0; i < size; i++)
			e->flash[(addr + i) & e->flash_mask] = 0xff;
	}
	e->st.flash_erased += size;
	e->t += emu_fixed_us(e, size == EMU_BLOCK ? EMU_BLOCK_ERASE_US :
	    EMU_SECTOR_ERASE_US);
	emu_slow(e, size == EMU_BLOCK ? EMU_BLOCK_ERASE_US :
	    EMU_SECTOR_ERASE_US);
}

/*
 * Erase an area the way the ROM's esp_rom_spiflash_erase_area does: the
 * start must be sector aligned and the end inside the chip size; sectors
 * up to the next 64 KiB boundary, 64 KiB blocks while more than a block
 * remains, then sectors.  -1 when the ROM would refuse.
 */
static int
emu_erase_area(struct emu *e, uint32_t start, uint32_t len)
{
	uint32_t	sector, total, head, per_block;

	if ((uint64_t)start + len > e->chip_size || start % EMU_SECTOR != 0)
		return (-1);
	per_block = EMU_BLOCK / EMU_SECTOR;
	sector = start / EMU_SECTOR;
	total = len / EMU_SECTOR + (len % EMU_SECTOR != 0);
	head = per_block - sector % per_block;
	if (head > total)
		head = total;
	total -= head;
	for (; head > 0; head--, sector++)
		emu_erase_span(e, sector * EMU_SECTOR, EMU_SECTOR);
	for (; total > per_block; total -= per_block, sector += per_block)
		emu_erase_span(e, sector * EMU_SECTOR, EMU_BLOCK);
	for (; total > 0; total--, sector++)
		emu_erase_span(e, sector * EMU_SECTOR, EMU_SECTOR);
	return (0);
}

/* Flip one seeded bit in a range just written (bitflip fault). */
static void
emu_bitflip(struct emu *e, uint32_t addr, size_t len, uint64_t n)
{
	uint64_t	r;

	if (len == 0)
		return;
	r = emu_mix(e->seed ^ emu_mix(n) ^ addr);
	e->flash[(addr + r % len) & e->flash_mask] ^= 1u << ((r >> 32) % 8);
}

/* After a command wrote [addr, addr+len), apply matching bitflip faults. */
static void
emu_after_write(struct emu *e, uint8_t op, uint32_t addr, size_t len)
{
	const struct emu_fault	*f;
	size_t			 i;

	if (len == 0)
		return;
	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_BITFLIP)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (emu_fault_window(f, ++e->fault_seen[i]))
			emu_bitflip(e, addr, len, e->fault_seen[i]);
	}
}

/* ------------------------------------------------------------------ */
/* Registers                                                           */
/* ------------------------------------------------------------------ */

/* eFuse MAC words: S2 (and later) layout, or the ESP32 one. */
static uint32_t
emu_efuse_mac(const struct emu *e, int word)
{
	const uint8_t	*m = e->mac;

	if (word == 0)
		return ((uint32_t)m[2] << 24 | (uint32_t)m[3] << 16 |
		    (uint32_t)m[4] << 8 | m[5]);
	return ((uint32_t)m[0] << 8 | m[1]);
}

/* Index of a remembered register, or -1. */
static int
emu_reg_find(const struct emu *e, uint32_t addr)
{
	size_t	i;

	for (i = 0; i < e->nregs; i++)
		if (e->regs[i].addr == addr)
			return ((int)i);
	return (-1);
}

/* Remember a register value (the store holds EMU_NREGS addresses). */
static void
emu_reg_store(struct emu *e, uint32_t addr, uint32_t value)
{
	int	i;

	if ((i = emu_reg_find(e, addr)) >= 0) {
		e->regs[i].value = value;
		return;
	}
	if (e->nregs == EMU_NREGS)
		return;
	e->regs[e->nregs].addr = addr;
	e->regs[e->nregs].value = value;
	e->nregs++;
}

/* Is addr one of the SPI controller's W0..W15 data registers? */
static int
emu_spi_w(const struct emu *e, uint32_t addr, size_t *idx)
{
	uint32_t	w0 = e->chip->spi_base + e->chip->spi_w0;

	if (addr < w0 || addr >= w0 + 64 || addr % 4 != 0)
		return (0);
	*idx = (addr - w0) / 4;
	return (1);
}

/* Registers a write cannot change (ROM, eFuse read registers, straps). */
static int
emu_reg_readonly(const struct emu *e, uint32_t addr)
{
	if (addr == CHIP_MAGIC_REG)
		return (1);
	if (e->chip->id == CHIP_ESP32)
		return ((addr >= EMU_E32_EFUSE_BASE &&
		    addr < EMU_E32_EFUSE_BASE + 0x200) ||
		    addr == EMU_E32_STRAP_REG);
	return ((addr >= EMU_S2_EFUSE_BASE &&
	    addr < EMU_S2_EFUSE_BASE + 0x200) || addr == EMU_S2_STRAP_REG);
}

/* The value a register reads as: remembered writes, then the chip model. */
static uint32_t
emu_reg_read(const struct emu *e, uint32_t addr)
{
	const struct chip_info	*c = e->chip;
	size_t			 w;
	int			 i;

	if (emu_spi_w(e, addr, &w))
		return (e->spi_w[w]);
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_OPTION1)
		return ((uint32_t)e->force_dl);	/* FORCE_DOWNLOAD_BOOT */
	if (!emu_reg_readonly(e, addr) && (i = emu_reg_find(e, addr)) >= 0)
		return (e->regs[i].value);
	if (addr == CHIP_MAGIC_REG)
		return (c->magic[0]);
	if (addr == c->efuse_mac0)
		return (emu_efuse_mac(e, 0));
	if (addr == c->efuse_mac1)
		return (emu_efuse_mac(e, 1));
	if (c->id == CHIP_ESP32) {
		switch (addr) {
		case EMU_E32_EFUSE_WORD3:
			return (EMU_E32_WORD3);
		case EMU_E32_EFUSE_WORD5:
			return (EMU_E32_WORD5);
		case EMU_E32_APB_DATE:
			return (0x80000000u);
		case EMU_E32_UART_CLKDIV:
			return (EMU_E32_APB_HZ / e->baud);
		case EMU_E32_STRAP_REG:
			return (0x03);	/* boot:0x3, download */
		}
		return (0);
	}
	if (c->uartdev_buf_no != 0 && addr == c->uartdev_buf_no)
		return (e->link == EMU_LINK_USB ? c->uartdev_usb_otg : 0);
	switch (addr) {
	case EMU_S2_EFUSE_WORD3:
		return (EMU_S2_WORD3);
	case EMU_S2_EFUSE_WORD4:
		return (0);
	case EMU_S2_EFUSE_BLK2_W4:
		return (EMU_S2_BLK2_VERSION);
	case EMU_S2_STRAP_REG:
		return (e->strap);	/* 0: GPIO0 was low, download */
	}
	return (0);
}

/* Bytes a flash chip shifts out for a user command (0xFF: nothing). */
static void
emu_spi_miso(struct emu *e, uint8_t cmd, uint32_t addr, uint8_t *out,
    size_t n)
{
	uint32_t	code = emu_size_code(e->flash_size);
	size_t		i;

	memset(out, 0xff, n);
	switch (cmd) {
	case 0x9F:		/* RDID */
		if (n > 0)
			out[0] = EMU_JEDEC_MFR;
		if (n > 1)
			out[1] = EMU_JEDEC_TYPE;
		if (n > 2)
			out[2] = (uint8_t)code;
		break;
	case 0x5A:		/* SFDP */
		for (i = 0; i < n; i++)
			if (addr + i < sizeof(emu_sfdp))
				out[i] = emu_sfdp[addr + i];
		break;
	case 0x03:		/* READ, FAST READ */
	case 0x0B:
		for (i = 0; i < n; i++)
			out[i] = e->flash[(addr + i) & e->flash_mask];
		break;
	case 0x05:		/* status registers: idle, unprotected */
	case 0x35:
	case 0x15:
		memset(out, 0, n);
		break;
	case 0x90:		/* manufacturer / device id */
		if (n > 0)
			out[0] = EMU_JEDEC_MFR;
		if (n > 1)
			out[1] = (uint8_t)(code - 1);
		break;
	case 0xAB:		/* release power-down, device id */
		if (n > 0)
			out[0] = (uint8_t)(code - 1);
		break;
	case 0x4B:		/* unique id */
		for (i = 0; i < n; i++)
			out[i] = e->mac[i % 6] ^ (uint8_t)(0x5a + i);
		break;
	}
}

/*
 * Run the user command set up in the SPI controller (esptool's
 * run_spiflash_command): the command byte from USR2, an optional address,
 * then MISO data into W0.. little-endian.  Commands without data (WREN,
 * reset 0x66/0x99) change nothing.
 */
static void
emu_spi_exec(struct emu *e)
{
	const struct chip_info	*c = e->chip;
	uint32_t		 usr, usr1, usr2, addr = 0, bits;
	uint8_t			 miso[64];
	size_t			 n = 0, i;
	unsigned		 alen;

	usr = emu_reg_read(e, c->spi_base + c->spi_usr);
	usr1 = emu_reg_read(e, c->spi_base + c->spi_usr1);
	usr2 = emu_reg_read(e, c->spi_base + c->spi_usr2);
	if ((usr & EMU_SPI_USR_COMMAND) == 0)
		return;
	if (usr & EMU_SPI_USR_ADDR) {
		addr = emu_reg_read(e, c->spi_base + 0x04);
		alen = ((usr1 >> EMU_SPI_ADDR_LEN_SHIFT) & 0x3f) + 1;
		/* ESP32 keeps the address in the top bits (ADDR_REG_MSB). */
		if (c->id == CHIP_ESP32 && alen < 32)
			addr >>= 32 - alen;
		addr &= 0xffffff;
	}
	if (usr & EMU_SPI_USR_MISO) {
		bits = (emu_reg_read(e, c->spi_base + c->spi_miso_dlen) &
		    0xffff) + 1;
		n = MINIMUM((bits + 7) / 8, sizeof(miso));
	}
	if (n == 0)
		return;
	emu_spi_miso(e, (uint8_t)(usr2 & 0xff), addr, miso, n);
	for (i = 0; i < n; i++) {
		if (i % 4 == 0)
			e->spi_w[i / 4] = 0;
		e->spi_w[i / 4] |= (uint32_t)miso[i] << (8 * (i % 4));
	}
}

/* Is addr one of the S2 RTC watchdog registers the write key protects? */
static int
emu_wdt_reg(uint32_t addr)
{
	return (addr >= EMU_S2_WDTCONFIG0 && addr <= EMU_S2_WDTFEED);
}

/*
 * WRITE_REG of one register: masked write, SPI command start, and the S2
 * RTC watchdog (unlock with the key, WDT_EN arms a chip reset after the
 * stage-0 timeout in slow-clock ticks).
 */
static void
emu_reg_write(struct emu *e, uint32_t addr, uint32_t value, uint32_t mask)
{
	const struct chip_info	*c = e->chip;
	uint32_t		 v, ticks;
	size_t			 w;

	if (emu_reg_readonly(e, addr))
		return;
	v = (emu_reg_read(e, addr) & ~mask) | (value & mask);
	if (emu_spi_w(e, addr, &w)) {
		e->spi_w[w] = v;
		return;
	}
	if (addr == c->spi_base && (v & EMU_SPI_CMD_USR)) {
		emu_spi_exec(e);
		/* Done at once: the next read already sees USR clear. */
		emu_reg_store(e, addr, v & ~EMU_SPI_CMD_USR);
		return;
	}
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_OPTION1) {
		e->force_dl = (int)(v & 1);	/* the only bit modelled */
		return;
	}
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_WDTWPROTECT) {
		e->wdt_unlocked = v == EMU_WDT_WKEY;
		emu_reg_store(e, addr, v);
		return;
	}
	if (c->id == CHIP_ESP32S2 && emu_wdt_reg(addr)) {
		if (!e->wdt_unlocked)
			return;
		emu_reg_store(e, addr, v);
		if (addr == EMU_S2_WDTCONFIG0 && (v & EMU_WDT_EN)) {
			ticks = emu_reg_read(e, EMU_S2_WDTCONFIG1);
			if (ticks == 0)
				ticks = 1;
			e->wdt_due = e->t +
			    (uint64_t)ticks * 1000000 / EMU_RTC_SLOW_HZ;
		} else if (addr == EMU_S2_WDTCONFIG0)
			e->wdt_due = 0;
		return;
	}
	emu_reg_store(e, addr, v);
}

/* ------------------------------------------------------------------ */
/* State changes                                                       */
/* ------------------------------------------------------------------ */

/* Does anything answer the host: the ROM loader or the flasher stub? */
static int
emu_listening(const struct emu *e)
{
	return (e->state == EMU_ST_DOWNLOAD ||
	    (e->state == EMU_ST_RAM && e->stub));
}

/* Drop an unfinished compressed write. */
static void
emu_fl_reset(struct emu *e)
{
	if (e->fl_zinit)
		inflateEnd(&e->zs);
	e->fl_zinit = e->fl_zend = e->fl_zerr = 0;
	e->fl_mode = EMU_FL_NONE;
}

/* Free every RAM upload. */
static void
emu_ram_reset(struct emu *e)
{
	size_t	i;

	for (i = 0; i < e->nram; i++)
		free(e->ram[i].data);
	e->nram = 0;
	e->mem_active = 0;
}

/* Forget everything a reset clears (not the flash, not the RTC bits). */
static void
emu_clear(struct emu *e)
{
	emu_fl_reset(e);
	emu_ram_reset(e);
	e->nregs = 0;
	memset(e->spi_w, 0, sizeof(e->spi_w));
	e->wdt_unlocked = 0;
	e->wdt_due = 0;
	e->attached = 0;
	e->chip_size = e->flash_size;
	e->baud = e->baud0;
	slip_dec_init(&e->dec, e->frame, EMU_FRAME_CAP);
	e->stub = 0;
	e->stub_err = 0;
	e->rd_active = 0;
	free(e->rd_buf);
	e->rd_buf = NULL;
}

/* Software reset back into download mode (FLASH_END flag 0). */
static void
emu_reboot(struct emu *e)
{
	emu_clear(e);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
	e->st.resets++;
}

/* Leave download mode for good (the model without config.boot). */
static void
emu_leave(struct emu *e, enum emu_state state, enum emu_reason reason)
{
	emu_fl_reset(e);
	e->state = state;
	e->reason = reason;
	e->wdt_due = 0;
	/* Whatever ran in RAM (the stub) is gone with the code it leaves. */
	e->stub = 0;
	e->stub_err = 0;
	e->rd_active = 0;
}

/* The unit disappears: nothing more is sent or heard. */
static void
emu_unplug(struct emu *e)
{
	emu_leave(e, EMU_ST_UNPLUGGED, EMU_RS_UNPLUG);
	e->q_len = e->q_head = 0;
	e->s_n = e->s_head = 0;
	e->en_sample = e->restart_due = 0;
}

/* Append printf-style text to a bounded buffer (cut when full). */
static void printflike(3, 4)
emu_text(char *buf, size_t cap, const char *fmt, ...)
{
	va_list	ap;
	size_t	len = strlen(buf);

	if (len + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

/* Remember a boot line (the last one wins) and add it to the text. */
static void printflike(4, 5)
emu_boot_say(struct emu *e, char *buf, size_t cap, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(e->boot_line, sizeof(e->boot_line), fmt, ap);
	va_end(ap);
	emu_text(buf, cap, "%s\r\n", e->boot_line);
}

/* The ROM's reset line: reason code and name, boot mode. */
static void
emu_rst_line(const struct emu *e, enum emu_reason why, int download,
    char *buf, size_t cap)
{
	unsigned	 code = 0x1;
	const char	*name = "POWERON";

	if (why == EMU_RS_WDT_RESET) {
		code = 0x10;
		name = "RTCWDT_RTC_RST";
	} else if (why == EMU_RS_APP_RESTART || why == EMU_RS_SW_RESET) {
		code = 0x3;
		name = "RTC_SW_SYS_RST";
	}
	if (e->chip->id == CHIP_ESP32) {
		/* The ESP32 ROM's names: ..._RESET, software reset 0xC. */
		if (code == 0x10)
			name = "RTCWDT_RTC_RESET";
		else if (code == 0x3) {
			code = 0xc;
			name = "SW_CPU_RESET";
		} else
			name = "POWERON_RESET";
		emu_text(buf, cap, "ets Jun  8 2016 00:22:57\r\n\r\n"
		    "rst:0x%x (%s),boot:%s\r\n", code, name,
		    download ?
		    "0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))" :
		    "0x13 (SPI_FAST_FLASH_BOOT)");
		return;
	}
	emu_text(buf, cap, "ESP-ROM:esp32s2-rc4-20191025\r\nBuild:Oct 25 2019"
	    "\r\nrst:0x%x (%s),boot:%s\r\n", code, name, download ?
	    "0x0 (DOWNLOAD(USB/UART0/1))" : "0x8 (SPI_FAST_FLASH_BOOT)");
}

/* Pick the app partition as the 2nd-stage bootloader does; NULL: none. */
static const struct part_entry *
emu_pick_app(struct emu *e, const struct part_table *pt, char *buf,
    size_t cap)
{
	const struct part_entry	*od = NULL, *factory = NULL, *ota[16];
	uint32_t		 seq;
	size_t			 i, nota = 0, k;

	memset(ota, 0, sizeof(ota));
	for (i = 0; i < pt->n; i++) {
		if (pt->e[i].type == IMAGE_PART_DATA &&
		    pt->e[i].subtype == IMAGE_PART_DATA_OTA && od == NULL)
			od = &pt->e[i];
		if (pt->e[i].type != IMAGE_PART_APP)
			continue;
		if (pt->e[i].subtype == IMAGE_PART_APP_FACTORY &&
		    factory == NULL)
			factory = &pt->e[i];
		if (pt->e[i].subtype >= IMAGE_PART_APP_OTA_MIN &&
		    pt->e[i].subtype <= IMAGE_PART_APP_OTA_MAX) {
			k = pt->e[i].subtype - IMAGE_PART_APP_OTA_MIN;
			if (ota[k] == NULL) {
				ota[k] = &pt->e[i];
				nota++;
			}
		}
	}
	if (od != NULL && nota > 0 && (uint64_t)od->offset + 2 * IMAGE_SECTOR
	    <= e->flash_size && image_parse_otadata(e->flash + od->offset,
	    MINIMUM(od->size, 2 * IMAGE_SECTOR), &seq) == 0) {
		k = (seq - 1) % nota;
		for (i = 0; i < nitems(ota); i++) {
			if (ota[i] != NULL && k-- == 0)
				return (ota[i]);
		}
	}
	if (factory != NULL)
		return (factory);
	for (i = 0; i < nitems(ota); i++) {
		if (ota[i] != NULL) {
			emu_text(buf, cap, "I (60) boot: No factory image, "
			    "trying OTA %zu\r\n", i);
			return (ota[i]);
		}
	}
	emu_boot_say(e, buf, cap, "E (60) boot: No bootable app partitions "
	    "in the partition table");
	return (NULL);
}

/* Check one ESP image in flash the way its loader does; 0 when valid. */
static int
emu_check_image(struct emu *e, uint32_t off, uint32_t size,
    struct image_header *h, char *buf, size_t cap)
{
	int	rc;

	if (off >= e->flash_size)
		size = 0;
	else
		size = MINIMUM(size, e->flash_size - off);
	rc = image_parse_header(e->flash + off, size, h);
	if (rc == -EINVAL) {
		if (off == EMU_BOOTLOADER_OFF)
			emu_boot_say(e, buf, cap, "invalid header: 0x%08x",
			    size >= 4 ? le32_get(e->flash + off) : 0xffffffff);
		else
			emu_boot_say(e, buf, cap, "E (70) esp_image: image at "
			    "0x%x has invalid magic byte (nothing flashed "
			    "here?)", off);
		return (-1);
	}
	if (rc != 0) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: image at 0x%x: "
		    "%s", off, h->why);
		return (-1);
	}
	if (e->chip->image_chip_id >= 0 &&
	    h->chip_id != (uint16_t)e->chip->image_chip_id) {
		emu_boot_say(e, buf, cap, "E (70) boot_comm: mismatch chip "
		    "ID, expected %d, found %u", e->chip->image_chip_id,
		    h->chip_id);
		return (-1);
	}
	if (!h->checksum_ok) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: Checksum failed. "
		    "Calculated 0x%x read 0x%x", h->checksum_calc,
		    h->checksum);
		return (-1);
	}
	if (h->hash_ok == 0) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: Image hash failed "
		    "- image is corrupt");
		return (-1);
	}
	return (0);
}

/*
 * Boot what is in flash: the 2nd-stage bootloader at 0x1000, the
 * partition table at 0x8000, the app otadata or the factory entry picks,
 * its header, checksum and app descriptor.  What the ROM and bootloader
 * print goes to buf, the app's banner to app.  0 when the app runs.
 */
static int
emu_boot_check(struct emu *e, char *buf, size_t cap, char *app,
    size_t appcap)
{
	struct image_header	 h;
	struct part_table	 pt;
	struct image_app_desc	 d;
	struct image_esphome	 eh;
	const struct part_entry	*p;

	if (emu_check_image(e, EMU_BOOTLOADER_OFF,
	    IMAGE_PART_OFFSET - EMU_BOOTLOADER_OFF, &h, buf, cap) != 0)
		return (-1);
	emu_text(buf, cap, "I (29) boot: ESP-IDF 2nd stage bootloader\r\n");
	if (image_parse_partitions(e->flash + IMAGE_PART_OFFSET,
	    IMAGE_PART_MAX_LEN, &pt) != 0 || (pt.has_md5 && !pt.md5_ok)) {
		emu_text(buf, cap, "E (53) boot: Failed to verify partition "
		    "table\r\n");
		emu_boot_say(e, buf, cap, "E (58) boot: load partition table "
		    "error!");
		return (-1);
	}
	if ((p = emu_pick_app(e, &pt, buf, cap)) == NULL)
		return (-1);
	if (emu_check_image(e, p->offset, p->size, &h, buf, cap) != 0)
		goto bad;
	if (image_parse_app_desc(e->flash + p->offset, MINIMUM(p->size,
	    e->flash_size - p->offset), &d) != 0) {
		emu_boot_say(e, buf, cap, "E (75) esp_image: no app descriptor "
		    "(magic 0x%08x) in the image at 0x%x",
		    IMAGE_APP_DESC_MAGIC, p->offset);
		goto bad;
	}
	emu_text(buf, cap, "I (90) boot: Loaded app from partition at offset "
	    "0x%x\r\n", p->offset);
	emu_boot_say(e, app, appcap, "I (312) app_init: Project name:     %s",
	    d.project_name);
	emu_boot_say(e, app, appcap, "I (312) app_init: App version:      %s",
	    d.version);
	emu_boot_say(e, app, appcap, "I (312) app_init: Compile time:     "
	    "%s %s", d.date, d.time);
	emu_boot_say(e, app, appcap, "I (312) app_init: ESP-IDF:          %s",
	    d.idf_ver);
	if (image_find_esphome(e->flash + p->offset, h.image_len, &eh) ==
	    0) {
		emu_boot_say(e, app, appcap, "[I][app:029]: Running through "
		    "setup()...");
		emu_boot_say(e, app, appcap, "[C][app:102]: ESPHome version "
		    "%s compiled on %s, %s", eh.version, d.date, d.time);
	}
	return (0);
bad:
	emu_boot_say(e, buf, cap, "E (80) boot: %s app partition is not "
	    "bootable", p->subtype == IMAGE_PART_APP_FACTORY ? "Factory" :
	    "OTA");
	return (-1);
}

/* Queue text the unit prints, due after the boot time. */
static void
emu_print(struct emu *e, const char *text, uint64_t after_us)
{
	size_t	len = strlen(text);

	if (len == 0)
		return;
	emu_queue(e, text, len, e->t + after_us + emu_wire_us(e, len));
}

/*
 * Run the app in flash, or fall back into download mode printing why.  On
 * native USB the port is new: only the app's own output shows there (none
 * from a silent app); a bridge port also shows the ROM and bootloader.
 */
static void
emu_boot_flash(struct emu *e, enum emu_reason why)
{
	char	text[2048], app[1024];

	text[0] = app[0] = '\0';
	e->boot_line[0] = '\0';
	if (why != EMU_RS_RUN_USER_CODE)
		emu_rst_line(e, why, 0, text, sizeof(text));
	if (emu_boot_check(e, text, sizeof(text), app, sizeof(app)) == 0) {
		e->boot_ok = 1;
		e->state = EMU_ST_APP;
		if (e->app_silent)
			e->boot_line[0] = app[0] = '\0';
		if (e->link == EMU_LINK_USB)
			text[0] = '\0';
		emu_text(text, sizeof(text), "%s", app);
		emu_print(e, text, emu_fixed_us(e, EMU_BOOT_US));
		return;
	}
	/* A bad image: the unit loops back into download mode. */
	e->boot_ok = 0;
	e->state = EMU_ST_DOWNLOAD;
	emu_text(text, sizeof(text), "waiting for download\r\n");
	emu_print(e, text, 0);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
}

/*
 * A chip reset at time at: everything volatile goes, the USB port goes
 * away and comes back (generation), the straps are sampled: GPIO0 low or
 * FORCE_DOWNLOAD_BOOT (S2) -> ROM download mode, else boot from flash.
 */
static void
emu_reset(struct emu *e, uint64_t at, enum emu_reason why, int gpio0_low)
{
	char	text[512];

	emu_queue_cut(e, at);
	emu_clear(e);
	e->t = MAXIMUM(at, e->t);
	e->busy_until = e->t;
	e->en_sample = e->restart_due = 0;
	e->tusb = 0;
	e->st.resets++;
	if (e->link == EMU_LINK_USB)
		e->gen++;	/* a bridge's port never goes away */
	e->reason = why;
	e->strap = gpio0_low ? 0 : EMU_STRAP_GPIO0;
	if (!gpio0_low && !(e->force_dl && e->chip->id == CHIP_ESP32S2)) {
		emu_boot_flash(e, why);
		return;
	}
	e->state = EMU_ST_DOWNLOAD;
	text[0] = '\0';
	emu_rst_line(e, why, 1, text, sizeof(text));
	emu_text(text, sizeof(text), "waiting for download\r\n");
	emu_print(e, text, 0);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
}

/* Apply what is due by now: the EN strap sample, restarts, the watchdog. */
static void
emu_tick(struct emu *e, uint64_t now)
{
	uint64_t	due;

	if (e->state == EMU_ST_UNPLUGGED)
		return;
	if (e->en_sample != 0 && now >= e->en_sample) {
		due = e->en_sample;
		/* GPIO0 low when DTR is asserted and RTS is not. */
		emu_reset(e, due, EMU_RS_HARD_RESET, e->dtr && !e->rts);
	}
	if (e->restart_due != 0 && now >= e->restart_due) {
		due = e->restart_due;
		if (e->restart_dl)
			e->force_dl = 1;
		emu_reset(e, due, EMU_RS_APP_RESTART, 0);
	}
	if (e->wdt_due == 0 || now < e->wdt_due || !emu_listening(e))
		return;
	due = e->wdt_due;
	/* Replies that would have left after the reset never do. */
	emu_queue_cut(e, due);
	if (e->boot_model)
		emu_reset(e, due, EMU_RS_WDT_RESET, 0);
	else
		emu_leave(e, EMU_ST_APP, EMU_RS_WDT_RESET);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */
/* ------------------------------------------------------------------ */

/* SYNC: eight identical replies carrying 0x20120707. */
static void
emu_cmd_sync(struct emu *e, const struct proto_req *rq)
{
	int	i;

	if (rq->size != PROTO_SYNC_LEN || le32_get(rq->data) != 0x20120707)
		goto ignore;
	for (i = 4; i < PROTO_SYNC_LEN; i++)
		if (rq->data[i] != 0x55)
			goto ignore;
	e->last_value = PROTO_SYNC_VALUE;
	for (i = 0; i < PROTO_SYNC_REPLIES; i++)
		emu_ok(e, rq->op, NULL, 0);
	return;
ignore:
	/* Not a sync pattern: the ROM's matcher does not answer. */
	e->st.dropped++;
}

/* READ_REG: the value comes back in the header's value field. */
static void
emu_cmd_read_reg(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->last_value = emu_reg_read(e, le32_get(rq->data));
	emu_ok(e, rq->op, NULL, 0);
}

/* WRITE_REG: one or more (addr, value, mask, delay_us) entries. */
static void
emu_cmd_write_reg(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	size_t		 off;

	if (rq->size == 0 || rq->size % 16 != 0) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	for (off = 0; off < rq->size; off += 16) {
		emu_reg_write(e, le32_get(d + off), le32_get(d + off + 4),
		    le32_get(d + off + 8));
		e->t += emu_fixed_us(e, le32_get(d + off + 12));
	}
	emu_ok(e, rq->op, NULL, 0);
}

/* FLASH_BEGIN / FLASH_DEFL_BEGIN: erase the region now, then expect data. */
static void
emu_cmd_flash_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	uint32_t	 size, blocks, bsize, off;

	if (rq->size != 16 && (rq->size != 20 || e->chip->id == CHIP_ESP32)) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	blocks = le32_get(d + 4);
	bsize = le32_get(d + 8);
	off = le32_get(d + 12);
	emu_fl_reset(e);
	/* Encrypted writes and absurd block sizes are not modelled. */
	if ((rq->size == 20 && le32_get(d + 16) != 0) ||
	    (blocks != 0 && (bsize == 0 || bsize > EMU_MAX_BLOCK))) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (size != 0 && !e->attached)
		e->st.unattached++;
	if (emu_erase_area(e, off, size) != 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	e->fl_offset = off;
	e->fl_size = size;
	e->fl_blocks = blocks;
	e->fl_bsize = bsize;
	e->fl_seq = 0;
	e->fl_cursor = off;
	if (rq->op == PROTO_FLASH_DEFL_BEGIN) {
		memset(&e->zs, 0, sizeof(e->zs));
		if (inflateInit(&e->zs) != Z_OK) {
			emu_fail(e, rq->op, PROTO_E_MALLOC);
			return;
		}
		e->fl_zinit = 1;
		e->fl_mode = EMU_FL_DEFL;
	} else
		e->fl_mode = EMU_FL_PLAIN;
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * Check a _DATA header (len, seq, 0, 0) and the checksum of the data.
 * Returns 0 and the data, or the ROM error code.
 */
static int
emu_data_check(struct emu *e, const struct proto_req *rq, uint32_t *seq,
    const uint8_t **data, uint32_t *len)
{
	if (rq->size < PROTO_DATA_HDR_LEN)
		return (PROTO_E_INVALID_MSG);
	*len = le32_get(rq->data);
	*seq = le32_get(rq->data + 4);
	if (*len != (uint32_t)(rq->size - PROTO_DATA_HDR_LEN))
		return (PROTO_E_INVALID_MSG);
	*data = rq->data + PROTO_DATA_HDR_LEN;
	e->t += emu_cost_us(e, EMU_SUM_NS_PER_BYTE, *len);
	if (proto_checksum(*data, *len) != rq->checksum)
		return (PROTO_E_CRC);
	return (0);
}

/*
 * FLASH_DATA: program one block at offset + seq * block size.  A block may
 * be sent again (the host lost the reply); skipping ahead is refused.
 */
static void
emu_cmd_flash_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, addr;
	int		 err;

	if ((err = emu_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != EMU_FL_PLAIN) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	if (seq > e->fl_seq || seq >= e->fl_blocks || len > e->fl_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	addr = e->fl_offset + seq * e->fl_bsize;
	if (emu_program(e, addr, data, len) != 0) {
		emu_fail(e, rq->op, PROTO_E_FLASH_WRITE);
		return;
	}
	if (seq == e->fl_seq)
		e->fl_seq++;
	emu_after_write(e, rq->op, addr, len);
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * Inflate one FLASH_DEFL_DATA block into flash at the write cursor with
 * zlib's streaming inflate.  0, or the ROM error code.
 */
static int
emu_inflate(struct emu *e, const uint8_t *in, uint32_t len, uint32_t *out)
{
	size_t	made;
	int	zr;

	*out = 0;
	e->zs.next_in = (Bytef *)(uintptr_t)in;
	e->zs.avail_in = len;
	for (;;) {
		e->zs.next_out = e->zbuf;
		e->zs.avail_out = EMU_INFLATE_CHUNK;
		zr = inflate(&e->zs, Z_NO_FLUSH);
		made = EMU_INFLATE_CHUNK - e->zs.avail_out;
		if (made != 0) {
			e->t += emu_cost_us(e, EMU_INFLATE_NS_PER_BYTE, made);
			if (e->stub && (uint64_t)e->fl_cursor + made <=
			    e->chip_size)
				emu_stub_erase_to(e, e->fl_cursor +
				    (uint32_t)made);
			if (emu_program(e, e->fl_cursor, e->zbuf, made) != 0)
				return (PROTO_E_FLASH_WRITE);
			e->fl_cursor += made;
			*out += made;
		}
		if (zr == Z_STREAM_END) {
			e->fl_zend = 1;
			return (0);
		}
		if (zr == Z_BUF_ERROR)
			return (0);	/* no progress: needs the next block */
		if (zr == Z_MEM_ERROR)
			return (PROTO_E_MALLOC);
		if (zr != Z_OK) {
			if (e->zs.msg != NULL &&
			    strcmp(e->zs.msg, "incorrect data check") == 0)
				return (PROTO_E_ADLER);
			return (PROTO_E_DEFLATE);
		}
		if (e->zs.avail_in == 0 && e->zs.avail_out != 0)
			return (0);
	}
}

/* FLASH_DEFL_DATA: the next slice of the zlib stream, in order. */
static void
emu_cmd_defl_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, start, made;
	int		 err;

	if ((err = emu_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != EMU_FL_DEFL) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	if (seq != e->fl_seq || len > e->fl_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (e->fl_zerr != 0) {
		emu_fail(e, rq->op, (uint8_t)e->fl_zerr);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	e->fl_seq++;
	if (e->fl_zend)
		made = 0;	/* data after the end of the stream: ignored */
	else {
		start = e->fl_cursor;
		if ((err = emu_inflate(e, data, len, &made)) != 0) {
			e->fl_zerr = err;
			emu_fail(e, rq->op, (uint8_t)err);
			return;
		}
		emu_after_write(e, rq->op, start, made);
	}
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * FLASH_END / FLASH_DEFL_END: flag 0 reboots into download mode, anything
 * else runs the user code (the ROM stops answering).
 */
static void
emu_cmd_flash_end(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (e->fl_mode == EMU_FL_NONE) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	emu_fl_reset(e);
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0)
		emu_reboot(e);
	else if (e->boot_model) {
		/* The ROM jumps into the bootloader: no reset, new port. */
		e->reason = EMU_RS_RUN_USER_CODE;
		if (e->link == EMU_LINK_USB)
			e->gen++;
		emu_boot_flash(e, EMU_RS_RUN_USER_CODE);
	} else
		emu_leave(e, EMU_ST_APP, EMU_RS_RUN_USER_CODE);
}

/* Is [addr, addr + size) inside one RAM range of the chip? */
static int
emu_ram_ok(const struct emu *e, uint32_t addr, uint32_t size, int *addr_ok)
{
	const struct emu_range	*r;
	size_t			 i, n;

	r = e->chip->id == CHIP_ESP32 ? emu_ram_esp32 : emu_ram_s2;
	n = e->chip->id == CHIP_ESP32 ? nitems(emu_ram_esp32) :
	    nitems(emu_ram_s2);
	*addr_ok = 0;
	for (i = 0; i < n; i++) {
		if (addr < r[i].start || addr >= r[i].end)
			continue;
		*addr_ok = 1;
		return ((uint64_t)addr + size <= r[i].end);
	}
	return (0);
}

/* MEM_BEGIN: start a RAM upload (kept for a later stub model). */
static void
emu_cmd_mem_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t		*d = rq->data;
	struct emu_ramseg	*s;
	uint32_t		 size, bsize, addr;
	int			 addr_ok;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	bsize = le32_get(d + 8);
	addr = le32_get(d + 12);
	if (!emu_ram_ok(e, addr, size, &addr_ok)) {
		emu_fail(e, rq->op, addr_ok ? PROTO_E_RAM_SIZE :
		    PROTO_E_RAM_ADDR);
		return;
	}
	if (bsize == 0 || bsize > EMU_MAX_BLOCK) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (e->nram == EMU_NRAMSEGS) {
		emu_fail(e, rq->op, PROTO_E_MALLOC);
		return;
	}
	s = &e->ram[e->nram++];
	s->addr = addr;
	s->size = size;
	s->data = xcalloc(1, size);
	e->mem_active = 1;
	e->mem_bsize = bsize;
	e->mem_seq = 0;
	emu_ok(e, rq->op, NULL, 0);
}

/* MEM_DATA: copy one block into the current RAM upload. */
static void
emu_cmd_mem_data(struct emu *e, const struct proto_req *rq)
{
	struct emu_ramseg	*s;
	const uint8_t		*data;
	uint32_t		 seq, len;
	uint64_t		 off;
	int			 err;

	if ((err = emu_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (!e->mem_active) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	s = &e->ram[e->nram - 1];
	off = (uint64_t)seq * e->mem_bsize;
	if (seq > e->mem_seq || len > e->mem_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (off + len > s->size) {
		emu_fail(e, rq->op, PROTO_E_RAM_SIZE);
		return;
	}
	memcpy(s->data + off, data, len);
	if (seq == e->mem_seq)
		e->mem_seq++;
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * MEM_END(no_exec, entry): with no_exec 0 the ROM answers and jumps to
 * entry; this model then stops answering (a stub model comes later).
 */
static void
emu_cmd_mem_end(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->mem_active = 0;
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0) {
		e->entry = le32_get(rq->data + 4);
		e->stub = 0;	/* whatever ran, this code runs now */
		emu_leave(e, EMU_ST_RAM, EMU_RS_MEM_ENTRY);
		if (emu_stub_entry(e, e->entry))
			emu_stub_start(e);
	}
}

/* SPI_ATTACH: the ROM takes config + 4 zero bytes. */
static void
emu_cmd_spi_attach(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->attached = 1;
	emu_ok(e, rq->op, NULL, 0);
}

/* SPI_SET_PARAMS: id, total size, block, sector, page, status mask. */
static void
emu_cmd_set_params(struct emu *e, const struct proto_req *rq)
{
	uint32_t	total;

	if (rq->size != 24) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	total = le32_get(rq->data + 4);
	if (total == 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	e->chip_size = total;
	emu_ok(e, rq->op, NULL, 0);
}

/* MD5 of a flash range (wrapping at the physical end like the chip). */
static void
emu_md5_range(struct emu *e, uint32_t addr, uint32_t size, uint8_t md[16])
{
	struct digest_md5_ctx	 ctx;
	uint32_t		 done, n;

	digest_md5_init(&ctx);
	for (done = 0; done < size; done += n) {
		/* Contiguous up to the physical end, then wrapped. */
		n = MINIMUM(size - done,
		    e->flash_size - ((addr + done) & e->flash_mask));
		digest_md5_update(&ctx,
		    e->flash + ((addr + done) & e->flash_mask), n);
	}
	digest_md5_final(&ctx, md);
}

/* SPI_FLASH_MD5: 32 lowercase hex characters of the range. */
static void
emu_cmd_md5(struct emu *e, const struct proto_req *rq)
{
	uint8_t		md[16];
	char		hex[33];
	uint32_t	addr, size;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	size = le32_get(rq->data + 4);
	if ((uint64_t)addr + size > e->chip_size) {
		emu_fail(e, rq->op, PROTO_E_FLASH_READ);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	emu_md5_range(e, addr, size, md);
	digest_hex(md, sizeof(md), hex);
	e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE + EMU_MD5_NS_PER_BYTE,
	    size);
	emu_ok(e, rq->op, (const uint8_t *)hex, PROTO_MD5_HEX_LEN);
}

/* READ_FLASH_SLOW: always 64 bytes of data, the host keeps len. */
static void
emu_cmd_read_slow(struct emu *e, const struct proto_req *rq)
{
	uint8_t		buf[PROTO_READ_SLOW_BLOCK];
	uint32_t	addr, len, i;

	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	len = le32_get(rq->data + 4);
	if (len > PROTO_READ_SLOW_BLOCK) {
		emu_fail(e, rq->op, PROTO_E_READ_LEN);
		return;
	}
	if ((uint64_t)addr + len > e->chip_size) {
		emu_fail(e, rq->op, PROTO_E_FLASH_READ);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = e->flash[(addr + i) & e->flash_mask];
	e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE, sizeof(buf));
	emu_ok(e, rq->op, buf, sizeof(buf));
}

/* CHANGE_BAUDRATE: answered at the old rate, then the UART switches. */
static void
emu_cmd_baud(struct emu *e, const struct proto_req *rq)
{
	uint32_t	baud;

	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	baud = le32_get(rq->data);
	if (baud == 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
	/* USB-OTG CDC has no baud rate; the value is only remembered. */
	e->baud = baud;
}

/* GET_SECURITY_INFO (S2): flags, crypt count, 7 key purposes, all 0. */
static void
emu_cmd_secinfo(struct emu *e, const struct proto_req *rq)
{
	uint8_t	info[PROTO_SECINFO_S2_LEN];

	memset(info, 0, sizeof(info));
	emu_ok(e, rq->op, info, sizeof(info));
}

/* A command may be turned into a ROM error by a rom-error fault. */
static int
emu_rom_error_fault(struct emu *e, uint8_t op)
{
	const struct emu_fault	*f;
	size_t			 i;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_ROM_ERROR)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (emu_fault_window(f, ++e->fault_seen[i])) {
			emu_fail_raw(e, op, f->code);
			return (1);
		}
	}
	return (0);
}

/*
 * Phase faults that end the command without a reply: unplug (the unit is
 * gone) and reenum (it resets into download mode on a new port).
 */
static int
emu_phase_fault(struct emu *e, uint8_t op)
{
	const struct emu_fault	*f;
	size_t			 i;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_REENUM &&
		    (f->kind != EMU_FAULT_UNPLUG || f->op < 0))
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (!emu_fault_window(f, ++e->fault_seen[i]))
			continue;
		if (f->kind == EMU_FAULT_UNPLUG)
			emu_unplug(e);
		else {
			emu_reset(e, e->t, EMU_RS_SW_RESET, 1);
			if (e->link != EMU_LINK_USB)
				e->gen++;	/* a new port, even here */
		}
		return (1);
	}
	return (0);
}

/* Hand a well-formed request to its handler. */
static void
emu_dispatch(struct emu *e, const struct proto_req *rq)
{
	if (e->stub) {
		emu_stub_dispatch(e, rq);
		return;
	}
	switch (rq->op) {
	case PROTO_SYNC:
		emu_cmd_sync(e, rq);
		break;
	case PROTO_READ_REG:
		emu_cmd_read_reg(e, rq);
		break;
	case PROTO_WRITE_REG:
		emu_cmd_write_reg(e, rq);
		break;
	case PROTO_FLASH_BEGIN:
	case PROTO_FLASH_DEFL_BEGIN:
		emu_cmd_flash_begin(e, rq);
		break;
	case PROTO_FLASH_DATA:
		emu_cmd_flash_data(e, rq);
		break;
	case PROTO_FLASH_DEFL_DATA:
		emu_cmd_defl_data(e, rq);
		break;
	case PROTO_FLASH_END:
	case PROTO_FLASH_DEFL_END:
		emu_cmd_flash_end(e, rq);
		break;
	case PROTO_MEM_BEGIN:
		emu_cmd_mem_begin(e, rq);
		break;
	case PROTO_MEM_DATA:
		emu_cmd_mem_data(e, rq);
		break;
	case PROTO_MEM_END:
		emu_cmd_mem_end(e, rq);
		break;
	case PROTO_SPI_ATTACH:
		emu_cmd_spi_attach(e, rq);
		break;
	case PROTO_SPI_SET_PARAMS:
		emu_cmd_set_params(e, rq);
		break;
	case PROTO_SPI_FLASH_MD5:
		emu_cmd_md5(e, rq);
		break;
	case PROTO_READ_FLASH_SLOW:
		emu_cmd_read_slow(e, rq);
		break;
	case PROTO_CHANGE_BAUDRATE:
		emu_cmd_baud(e, rq);
		break;
	case PROTO_GET_SECURITY_INFO:
		if (e->chip->has_secinfo)
			emu_cmd_secinfo(e, rq);
		else
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		break;
	default:
		/* Unknown to the ROM: "invalid message", op echoed. */
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		break;
	}
}

/*
 * One complete frame arrived at now: start the command when the device is
 * free, count request wire time, turnaround and ROM CPU, then handle it.
 */
static void
emu_frame(struct emu *e, const uint8_t *p, size_t len, uint64_t now)
{
	struct proto_req	rq;
	uint64_t		t0;
	size_t			wire = e->rx_wire;

	e->rx_wire = 0;
	if (e->stub && e->rd_active) {
		/* READ_FLASH streaming: frames are the host's ACKs. */
		e->t = MAXIMUM(now, e->busy_until) + emu_wire_us(e, wire);
		emu_stub_read_ack(e, p, len);
		e->busy_until = e->t;
		return;
	}
	if (len < PROTO_HDR_LEN || p[0] != 0x00) {
		e->st.dropped++;	/* not a request: ignored */
		return;
	}
	t0 = MAXIMUM(now, e->busy_until);
	e->t = t0 + emu_wire_us(e, wire) + emu_fixed_us(e, EMU_ROM_CMD_US +
	    (e->link == EMU_LINK_USB ? EMU_USB_TURNAROUND_US : 0));
	e->stall_cmd = 0;
	e->st.commands++;
	if (proto_parse_req(p, len, &rq) != 0)
		emu_fail(e, p[1], PROTO_E_INVALID_MSG); /* size disagrees */
	else if (!emu_phase_fault(e, rq.op) && !emu_rom_error_fault(e, rq.op))
		emu_dispatch(e, &rq);
	e->busy_until = e->t;
	e->st.modeled_us += e->t - t0 - e->stall_cmd;
	e->st.stall_us += e->stall_cmd;
}

/* ------------------------------------------------------------------ */
/* Flasher stub personality (PROTOCOL.md section 9)                    */
/* ------------------------------------------------------------------ */

/* Is entry the entry point of a flasher stub this chip is known to run? */
static int
emu_stub_entry(const struct emu *e, uint32_t entry)
{
	static const uint32_t	s2[] = {
		0x400288AC,	/* esptool legacy stub (LS v1.11.1) */
		0x400290A4,	/* esptool-rs stub (NS v1.2.2), esptool-js */
	};
	size_t			i;

	if (!e->stub_model || e->chip->id != CHIP_ESP32S2)
		return (0);
	for (i = 0; i < nitems(s2); i++)
		if (entry == s2[i])
			return (1);
	return (0);
}

/* Queue one raw SLIP frame (no header): OHAI, READ_FLASH data and MD5. */
static void
emu_raw_frame(struct emu *e, const uint8_t *p, size_t len)
{
	uint8_t	*wire;
	size_t	 w;

	wire = xmalloc(SLIP_ENCODED_MAX(len));
	w = slip_encode(wire, SLIP_ENCODED_MAX(len), p, len);
	e->t += emu_wire_us(e, w);
	emu_queue(e, wire, w, e->t);
	free(wire);
}

/* The stub is running: send "OHAI" once it is up. */
static void
emu_stub_start(struct emu *e)
{
	static const uint8_t	ohai[] = { 'O', 'H', 'A', 'I' };

	e->stub = 1;
	e->stub_err = 0;
	e->t += emu_fixed_us(e, EMU_STUB_START_US);
	emu_raw_frame(e, ohai, sizeof(ohai));
}

/* Erase lazily, as the stub does, every sector up to end (exclusive). */
static void
emu_stub_erase_to(struct emu *e, uint32_t end)
{
	uint32_t	left;

	while (e->fl_erased < end && e->fl_erased < e->chip_size) {
		left = e->fl_offset + e->fl_size > e->fl_erased ?
		    e->fl_offset + e->fl_size - e->fl_erased : 0;
		if (e->fl_erased % EMU_BLOCK == 0 &&
		    left >= 16 * EMU_SECTOR &&
		    (uint64_t)e->fl_erased + EMU_BLOCK <= e->chip_size) {
			emu_erase_span(e, e->fl_erased, EMU_BLOCK);
			e->fl_erased += EMU_BLOCK;
		} else {
			emu_erase_span(e, e->fl_erased, EMU_SECTOR);
			e->fl_erased += EMU_SECTOR;
		}
	}
}

/* Program with the stub's lazy erase in front; 0 or a stub error. */
static int
emu_stub_program(struct emu *e, uint32_t addr, const uint8_t *p, size_t len)
{
	if ((uint64_t)addr + len > e->chip_size)
		return (EMU_STUB_E_SPI);
	emu_stub_erase_to(e, (uint32_t)(addr + len));
	if (emu_program(e, addr, p, len) != 0)
		return (EMU_STUB_E_SPI);
	return (0);
}

/* SYNC to the stub: the same eight replies, value 0. */
static void
emu_stub_sync(struct emu *e, const struct proto_req *rq)
{
	int	i;

	if (rq->size != PROTO_SYNC_LEN || le32_get(rq->data) != 0x20120707) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->last_value = 0;
	for (i = 0; i < PROTO_SYNC_REPLIES; i++)
		emu_ok(e, rq->op, NULL, 0);
}

/*
 * FLASH_BEGIN / FLASH_DEFL_BEGIN to the stub: size is the bytes to write
 * (uncompressed), nothing is erased yet; blocks up to 16 KiB.
 */
static void
emu_stub_flash_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	uint32_t	 size, blocks, bsize, off;

	if (rq->size != 16 && rq->size != 20) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	blocks = le32_get(d + 4);
	bsize = le32_get(d + 8);
	off = le32_get(d + 12);
	emu_fl_reset(e);
	e->stub_err = 0;
	if (bsize > EMU_MAX_BLOCK || (rq->size == 20 && le32_get(d + 16))) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_BLOCKSIZE);
		return;
	}
	if ((uint64_t)off + size > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	e->fl_offset = off;
	e->fl_size = size;
	e->fl_blocks = blocks;
	e->fl_bsize = bsize;
	e->fl_seq = 0;
	e->fl_cursor = off;
	e->fl_erased = off - off % EMU_SECTOR;
	if (rq->op == PROTO_FLASH_DEFL_BEGIN) {
		memset(&e->zs, 0, sizeof(e->zs));
		if (inflateInit(&e->zs) != Z_OK) {
			emu_fail(e, rq->op, PROTO_E_MALLOC);
			return;
		}
		e->fl_zinit = 1;
		e->fl_mode = EMU_FL_DEFL;
	} else
		e->fl_mode = EMU_FL_PLAIN;
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * FLASH_DATA / FLASH_DEFL_DATA to the stub: checked, acknowledged at once
 * (with the error latched by an earlier block, if any), then written while
 * the host sends the next block.  A block sent again is acknowledged, not
 * written twice.
 */
static void
emu_stub_flash_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, made, start, room;
	uint64_t	 t_ack, t_done;
	int		 err;

	if ((err = emu_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != (rq->op == PROTO_FLASH_DATA ? EMU_FL_PLAIN :
	    EMU_FL_DEFL)) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_NOT_FLASHING);
		return;
	}
	t_ack = e->t;
	if (e->stub_err == 0 && seq + 1 == e->fl_seq) {
		/* A repeat: its ACK was lost. */
	} else if (e->stub_err == 0 && seq != e->fl_seq)
		e->stub_err = EMU_STUB_E_BLOCKSIZE;
	else if (e->stub_err == 0) {
		e->fl_seq++;
		if (e->fl_mode == EMU_FL_PLAIN) {
			room = e->fl_offset + e->fl_size - e->fl_cursor;
			if (e->fl_cursor >= e->fl_offset + e->fl_size)
				room = 0;
			if (len > room)
				e->stub_err = EMU_STUB_E_TOO_MUCH;
			else if ((err = emu_stub_program(e, e->fl_cursor, data,
			    len)) != 0)
				e->stub_err = (uint8_t)err;
			else {
				emu_after_write(e, rq->op, e->fl_cursor, len);
				e->fl_cursor += len;
			}
		} else if (!e->fl_zend) {
			start = e->fl_cursor;
			err = emu_inflate(e, data, len, &made);
			if (err != 0)
				e->stub_err = err == PROTO_E_FLASH_WRITE ?
				    EMU_STUB_E_SPI : EMU_STUB_E_INFLATE;
			else if (e->fl_cursor > e->fl_offset + e->fl_size)
				e->stub_err = EMU_STUB_E_TOO_MUCH;
			emu_after_write(e, rq->op, start, made);
		}
	}
	t_done = e->t;
	e->t = t_ack;
	if (e->stub_err != 0 && seq + 1 != e->fl_seq)
		emu_fail_raw(e, rq->op, e->stub_err);
	else
		emu_ok(e, rq->op, NULL, 0);
	/* The next command waits until the write is done. */
	e->t = MAXIMUM(e->t, t_done);
}

/*
 * FLASH_END / FLASH_DEFL_END to the stub: 0xC6 outside a write, 0xC8 when
 * bytes are missing, else the latched error; flag 0 then resets back into
 * the ROM (download mode), flag 1 stays in the stub.
 */
static void
emu_stub_flash_end(struct emu *e, const struct proto_req *rq)
{
	uint8_t	code = 0;

	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (e->fl_mode == EMU_FL_NONE)
		code = EMU_STUB_E_NOT_FLASHING;
	else if (e->stub_err != 0)
		code = e->stub_err;
	else if ((e->fl_mode == EMU_FL_DEFL && e->fl_size != 0 &&
	    !e->fl_zend) || (e->fl_mode == EMU_FL_PLAIN &&
	    e->fl_cursor < e->fl_offset + e->fl_size))
		code = EMU_STUB_E_NOT_ENOUGH;
	if (code != 0) {
		emu_fail_raw(e, rq->op, code);
		return;
	}
	emu_fl_reset(e);
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0) {
		e->t += emu_fixed_us(e, 10000);	/* flush, then reset */
		emu_reboot(e);
		e->state = EMU_ST_DOWNLOAD;
		e->reason = EMU_RS_SW_RESET;
	}
}

/* SPI_FLASH_MD5 from the stub: 16 raw bytes. */
static void
emu_stub_md5(struct emu *e, const struct proto_req *rq)
{
	uint8_t		md[16];
	uint32_t	addr, size;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	size = le32_get(rq->data + 4);
	if ((uint64_t)addr + size > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	emu_md5_range(e, addr, size, md);
	e->t += emu_cost_us(e, EMU_STUB_MD5_NS_PER_BYTE, size);
	emu_ok(e, rq->op, md, sizeof(md));
}

/* ERASE_FLASH (the whole chip) and ERASE_REGION (4 KiB multiples). */
static void
emu_stub_erase(struct emu *e, const struct proto_req *rq)
{
	uint32_t	off = 0, size = e->chip_size;

	if (rq->op == PROTO_ERASE_REGION) {
		if (rq->size != 8) {
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
			return;
		}
		off = le32_get(rq->data);
		size = le32_get(rq->data + 4);
		if (off % EMU_SECTOR != 0 || size % EMU_SECTOR != 0) {
			emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
			return;
		}
	} else if (rq->size != 0) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (emu_erase_area(e, off, size) != 0) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
}

/* Send READ_FLASH packets while fewer than max_in_flight bytes wait. */
static void
emu_stub_read_push(struct emu *e)
{
	uint8_t			 md[16];
	uint32_t		 n, i;

	while (e->rd_sent < e->rd_len &&
	    e->rd_sent - e->rd_acked < e->rd_inflight) {
		n = MINIMUM(e->rd_psize, e->rd_len - e->rd_sent);
		for (i = 0; i < n; i++)
			e->rd_buf[i] = e->flash[(e->rd_off + e->rd_sent + i) &
			    e->flash_mask];
		e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE, n);
		emu_raw_frame(e, e->rd_buf, n);
		e->rd_sent += n;
	}
	if (e->rd_acked >= e->rd_len) {
		emu_md5_range(e, e->rd_off, e->rd_len, md);
		emu_raw_frame(e, md, sizeof(md));
		e->rd_active = 0;
		free(e->rd_buf);
		e->rd_buf = NULL;
	}
}

/*
 * READ_FLASH(offset, length, packet size, max in flight): answer, then
 * stream the data (PROTOCOL.md 2.3); the host acknowledges each packet.
 */
static void
emu_stub_read_flash(struct emu *e, const struct proto_req *rq)
{
	uint32_t	off, len, psize, inflight;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	off = le32_get(rq->data);
	len = le32_get(rq->data + 4);
	psize = le32_get(rq->data + 8);
	inflight = le32_get(rq->data + 12);
	if ((uint64_t)off + len > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	if (psize == 0 || psize > EMU_MAX_BLOCK || inflight == 0) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_BLOCKSIZE);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
	e->rd_active = 1;
	e->rd_off = off;
	e->rd_len = len;
	e->rd_psize = psize;
	e->rd_inflight = inflight;
	e->rd_sent = e->rd_acked = 0;
	free(e->rd_buf);
	e->rd_buf = xmalloc(psize);
	emu_stub_read_push(e);
}

/* A frame while READ_FLASH streams: the host's u32 bytes-received ACK. */
static void
emu_stub_read_ack(struct emu *e, const uint8_t *p, size_t len)
{
	uint32_t	got;

	if (len != 4) {
		e->st.dropped++;
		return;
	}
	got = le32_get(p);
	if (got > e->rd_acked && got <= e->rd_sent)
		e->rd_acked = got;
	emu_stub_read_push(e);
}

/* Commands as the stub answers them. */
static void
emu_stub_dispatch(struct emu *e, const struct proto_req *rq)
{
	/* The stub's value field is 0 except for READ_REG. */
	e->last_value = 0;
	switch (rq->op) {
	case PROTO_SYNC:
		emu_stub_sync(e, rq);
		break;
	case PROTO_READ_REG:
		emu_cmd_read_reg(e, rq);
		break;
	case PROTO_WRITE_REG:
		emu_cmd_write_reg(e, rq);
		break;
	case PROTO_FLASH_BEGIN:
	case PROTO_FLASH_DEFL_BEGIN:
		emu_stub_flash_begin(e, rq);
		break;
	case PROTO_FLASH_DATA:
	case PROTO_FLASH_DEFL_DATA:
		emu_stub_flash_data(e, rq);
		break;
	case PROTO_FLASH_END:
	case PROTO_FLASH_DEFL_END:
		emu_stub_flash_end(e, rq);
		break;
	case PROTO_MEM_BEGIN:
		emu_cmd_mem_begin(e, rq);
		break;
	case PROTO_MEM_DATA:
		emu_cmd_mem_data(e, rq);
		break;
	case PROTO_MEM_END:
		emu_cmd_mem_end(e, rq);
		break;
	case PROTO_SPI_ATTACH:
		if (rq->size != 4 && rq->size != 8)
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		else {
			e->attached = 1;
			emu_ok(e, rq->op, NULL, 0);
		}
		break;
	case PROTO_SPI_SET_PARAMS:
		emu_cmd_set_params(e, rq);
		break;
	case PROTO_SPI_FLASH_MD5:
		emu_stub_md5(e, rq);
		break;
	case PROTO_CHANGE_BAUDRATE:
		if (rq->size != 8)
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		else {
			emu_ok(e, rq->op, NULL, 0);
			/* The S2 stub on USB-OTG ignores it. */
			if (e->link != EMU_LINK_USB && le32_get(rq->data))
				e->baud = le32_get(rq->data);
		}
		break;
	case PROTO_GET_SECURITY_INFO:
		emu_cmd_secinfo(e, rq);
		break;
	case PROTO_ERASE_FLASH:
	case PROTO_ERASE_REGION:
		emu_stub_erase(e, rq);
		break;
	case PROTO_READ_FLASH:
		emu_stub_read_flash(e, rq);
		break;
	default:
		emu_fail_raw(e, rq->op, EMU_STUB_E_NOT_IMPL);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Public interface                                                    */
/* ------------------------------------------------------------------ */

/* Create an emulator in download mode from a config (copied). */
struct emu *
emu_new(const struct emu_config *cfg, char **cause)
{
	struct emu	*e;
	enum chip_id	 id;
	size_t		 i;

	id = cfg->chip == CHIP_UNKNOWN ? CHIP_ESP32S2 : cfg->chip;
	if (id != CHIP_ESP32S2 && id != CHIP_ESP32) {
		*cause = xasprintf("the emulator models the ESP32-S2 and the "
		    "ESP32 only");
		return (NULL);
	}
	if (cfg->flash_size != 0 && (cfg->flash_size < 0x10000 ||
	    (cfg->flash_size & (cfg->flash_size - 1)) != 0)) {
		*cause = xasprintf("flash size %u is not a power of two of "
		    "64 KiB or more", cfg->flash_size);
		return (NULL);
	}
	if (cfg->profile >= EMU_PROFILE__MAX || cfg->link >= EMU_LINK__MAX ||
	    cfg->board >= EMU_BOARD__MAX) {
		*cause = xasprintf("bad emulator profile, link or board");
		return (NULL);
	}

	if (chip_by_id(id) == NULL) {
		*cause = xasprintf("the chip table has no entry for chip %d",
		    (int)id);
		return (NULL);
	}
	e = xcalloc(1, sizeof(*e));
	e->chip = chip_by_id(id);
	e->link = cfg->link;
	if (e->link == EMU_LINK_DEFAULT)
		e->link = id == CHIP_ESP32 ? EMU_LINK_UART : EMU_LINK_USB;
	e->profile = cfg->profile;
	memcpy(e->mac, cfg->mac, sizeof(e->mac));
	e->seed = cfg->seed;
	e->baud0 = e->baud = cfg->baud != 0 ? cfg->baud : EMU_DEFAULT_BAUD;
	e->boot_model = cfg->boot != 0;
	e->board = cfg->board;
	e->app_silent = cfg->app_silent != 0;
	e->stub_model = cfg->stub_model != 0;
	if (e->board == EMU_BOARD_BRIDGE && cfg->link == EMU_LINK_DEFAULT)
		e->link = EMU_LINK_UART;
	e->slow = 1;

	e->unplug_in = e->unplug_out = UINT64_MAX;
	if (cfg->nfaults != 0) {
		e->faults = xcalloc(cfg->nfaults, sizeof(*e->faults));
		memcpy(e->faults, cfg->faults,
		    cfg->nfaults * sizeof(*e->faults));
		e->fault_seen = xcalloc(cfg->nfaults, sizeof(*e->fault_seen));
		e->nfaults = cfg->nfaults;
	}
	for (i = 0; i < e->nfaults; i++) {
		if (e->faults[i].kind == EMU_FAULT_SLOW_FLASH)
			e->slow = MAXIMUM(e->slow, e->faults[i].factor);
		if (e->faults[i].kind != EMU_FAULT_UNPLUG ||
		    e->faults[i].op >= 0)
			continue;
		if (e->faults[i].dir_in)
			e->unplug_in = MINIMUM(e->unplug_in, e->faults[i].at);
		else
			e->unplug_out = MINIMUM(e->unplug_out,
			    e->faults[i].at);
	}

	e->flash_size = cfg->flash_size != 0 ? cfg->flash_size :
	    EMU_DEFAULT_FLASH;
	e->flash_mask = e->flash_size - 1;
	e->chip_size = e->flash_size;
	if (cfg->flash != NULL)
		e->flash = cfg->flash;
	else {
		e->flash = xmalloc(e->flash_size);
		memset(e->flash, 0xff, e->flash_size);
		e->flash_owned = 1;
	}

	e->frame = xmalloc(EMU_FRAME_CAP);
	slip_dec_init(&e->dec, e->frame, EMU_FRAME_CAP);
	e->zbuf = xmalloc(EMU_INFLATE_CHUNK);
	e->q_cap = 4096;
	e->q = xmalloc(e->q_cap);
	e->s_cap = 64;
	e->segs = xcalloc(e->s_cap, sizeof(*e->segs));
	e->state = EMU_ST_DOWNLOAD;
	e->reason = EMU_RS_NONE;
	if (e->boot_model && cfg->start_app) {
		/* Power on with GPIO0 high: boot what is in flash. */
		e->t = 0;
		emu_reset(e, 0, EMU_RS_HARD_RESET, 0);
		e->gen = 0;
		e->st.resets = 0;
	}
	return (e);
}

/* Free an emulator (a caller's flash buffer is left alone). */
void
emu_free(struct emu *e)
{
	if (e == NULL)
		return;
	emu_fl_reset(e);
	emu_ram_reset(e);
	free(e->rd_buf);
	if (e->flash_owned)
		free(e->flash);
	free(e->frame);
	free(e->zbuf);
	free(e->q);
	free(e->segs);
	free(e->faults);
	free(e->fault_seen);
	free(e);
}

/* Feed host bytes: decode SLIP frames and handle each command. */
void
emu_feed(struct emu *e, const uint8_t *p, size_t len, uint64_t now)
{
	const struct emu_fault	*f;
	uint64_t		 n;
	size_t			 i, k;
	uint8_t			 c;

	emu_tick(e, now);
	for (i = 0; i < len; i++) {
		if (emu_listening(e) && e->st.bytes_in >= e->unplug_in)
			emu_unplug(e);
		if (!emu_listening(e) || e->en_low) {
			/* Nobody listens: an app, RAM code, no unit, reset. */
			e->st.bytes_in += len - i;
			return;
		}
		n = ++e->st.bytes_in;
		c = p[i];
		for (k = 0; k < e->nfaults; k++) {
			f = &e->faults[k];
			if (f->kind == EMU_FAULT_CORRUPT && f->dir_in &&
			    emu_fault_window(f, n))
				c ^= 0x01;
		}
		if (now < e->deaf_until)
			continue;	/* rebooting */
		e->rx_wire++;
		if (slip_dec_byte(&e->dec, c) == SLIP_FRAME)
			emu_frame(e, e->dec.buf, e->dec.len, now);
	}
}

/* Copy reply bytes due by now; applies output corruption and unplug. */
size_t
emu_drain(struct emu *e, uint8_t *out, size_t cap, uint64_t now)
{
	const struct emu_fault	*f;
	struct emu_seg		*s;
	size_t			 n = 0, take, j, k;

	emu_tick(e, now);
	while (n < cap && e->s_n > 0 && e->state != EMU_ST_UNPLUGGED) {
		s = &e->segs[e->s_head];
		if (s->due_us > now)
			break;
		if (e->st.bytes_out >= e->unplug_out) {
			emu_unplug(e);
			break;
		}
		take = MINIMUM(s->len, cap - n);
		take = MINIMUM(take, e->unplug_out - e->st.bytes_out);
		memcpy(out + n, e->q + e->q_head, take);
		for (k = 0; k < e->nfaults; k++) {
			f = &e->faults[k];
			if (f->kind != EMU_FAULT_CORRUPT || f->dir_in)
				continue;
			for (j = 0; j < take; j++)
				if (emu_fault_window(f,
				    e->st.bytes_out + j + 1))
					out[n + j] ^= 0x01;
		}
		e->q_head += take;
		e->q_len -= take;
		e->st.bytes_out += take;
		n += take;
		s->len -= take;
		if (s->len == 0) {
			e->s_head++;
			e->s_n--;
		}
		if (e->st.bytes_out >= e->unplug_out) {
			emu_unplug(e);
			break;
		}
	}
	if (e->s_n == 0)
		e->s_head = 0;
	if (e->q_len == 0)
		e->q_head = 0;
	return (n);
}

/* Earliest time something is due: a reply segment or the watchdog. */
uint64_t
emu_next_due_us(const struct emu *e)
{
	uint64_t	due = UINT64_MAX;

	if (e->state == EMU_ST_UNPLUGGED)
		return (due);
	if (e->s_n > 0)
		due = e->segs[e->s_head].due_us;
	if (e->wdt_due != 0 && emu_listening(e))
		due = MINIMUM(due, e->wdt_due);
	if (e->en_sample != 0)
		due = MINIMUM(due, e->en_sample);
	if (e->restart_due != 0)
		due = MINIMUM(due, e->restart_due);
	return (due);
}

/* Bytes still queued. */
size_t
emu_pending(const struct emu *e)
{
	return (e->q_len);
}

/*
 * The Arduino TinyUSB line-state machine (PROTOCOL.md 8.2): (0,1), (1,1),
 * (1,0), (0,0) in a row restarts into the bootloader; anything else out
 * of order starts over.  Repeated states never get here.
 */
static void
emu_tinyusb(struct emu *e, uint64_t now)
{
	int	step;

	if (!e->dtr && e->rts)
		step = 1;
	else if (e->dtr && e->rts)
		step = 2;
	else if (e->dtr && !e->rts)
		step = 3;
	else
		step = 4;
	if (step == 4 && e->tusb == 3) {
		e->tusb = 0;
		e->restart_dl = 1;
		e->restart_due = MAXIMUM(now, 1);
	} else if (step == e->tusb + 1)
		e->tusb = step;
	else
		e->tusb = step == 1 ? 1 : 0;
}

/*
 * New DTR/RTS state (true = asserted = pin low).  With config.boot the
 * board model reacts: a bridge's transistor pair drives EN and GPIO0, an
 * app on native USB may honour the IDF or the Arduino reset trick.
 */
void
emu_set_lines(struct emu *e, int dtr, int rts, uint64_t now_us)
{
	int	odtr = e->dtr, orts = e->rts, en_low;

	emu_tick(e, now_us);
	e->dtr = dtr != 0;
	e->rts = rts != 0;
	if (!e->boot_model || e->state == EMU_ST_UNPLUGGED)
		return;
	if (e->stub && e->link == EMU_LINK_USB && orts && !e->rts) {
		/*
		 * The stub on USB-OTG resets on RTS falling: it clears
		 * FORCE_DOWNLOAD_BOOT and resets the CPU, so the straps
		 * latched at the last chip reset decide (PROTOCOL.md 5.5).
		 */
		e->force_dl = 0;
		emu_reset(e, now_us, EMU_RS_SW_RESET, e->strap == 0);
		return;
	}
	switch (e->board) {
	case EMU_BOARD_BRIDGE:
		/* RTS without DTR pulls EN low; both asserted: no reset. */
		en_low = e->rts && !e->dtr;
		if (en_low && !e->en_low) {
			e->en_low = 1;
			e->en_sample = 0;
			emu_queue_cut(e, now_us);
		} else if (!en_low && e->en_low) {
			/* EN rises through its RC: straps read a bit later. */
			e->en_low = 0;
			e->en_sample = now_us + EMU_EN_RC_US;
		}
		break;
	case EMU_BOARD_IDF_CDC:
		/* RTS falling: DTR asserted = download mode, else reboot. */
		if (e->state == EMU_ST_APP && orts && !e->rts &&
		    e->restart_due == 0) {
			e->restart_dl = e->dtr;
			e->restart_due = MAXIMUM(now_us + emu_fixed_us(e,
			    EMU_IDF_RESTART_US), 1);
		}
		break;
	case EMU_BOARD_TINYUSB:
		if (e->state == EMU_ST_APP && (odtr != e->dtr ||
		    orts != e->rts) && e->restart_due == 0)
			emu_tinyusb(e, now_us);
		break;
	default:
		break;		/* the app ignores the lines */
	}
	emu_tick(e, now_us);
}

/* The CDC line coding a host set; 1200 bps asks a TinyUSB app to restart. */
void
emu_set_baud_host(struct emu *e, uint32_t baud, uint64_t now_us)
{
	emu_tick(e, now_us);
	if (e->boot_model && e->board == EMU_BOARD_TINYUSB &&
	    e->state == EMU_ST_APP && baud == 1200 && e->restart_due == 0) {
		e->restart_dl = 1;
		e->restart_due = MAXIMUM(now_us, 1);
	}
	emu_tick(e, now_us);
}

/* BOOT held while RST is pressed and released: ROM download mode. */
void
emu_press_boot_rst(struct emu *e, uint64_t now_us)
{
	emu_tick(e, now_us);
	if (e->state == EMU_ST_UNPLUGGED)
		return;
	e->en_low = 0;
	emu_reset(e, now_us, EMU_RS_HARD_RESET, 1);
}

/* RST alone: boot from flash (or download mode if forced). */
void
emu_press_rst(struct emu *e, uint64_t now_us)
{
	emu_tick(e, now_us);
	if (e->state == EMU_ST_UNPLUGGED)
		return;
	e->en_low = 0;
	if (e->boot_model)
		emu_reset(e, now_us, EMU_RS_HARD_RESET, 0);
	else {
		emu_queue_cut(e, now_us);
		emu_leave(e, EMU_ST_APP, EMU_RS_HARD_RESET);
	}
}

/* The USB ids the unit shows now. */
int
emu_usb_id(const struct emu *e, uint16_t *vid, uint16_t *pid)
{
	if (e->state == EMU_ST_UNPLUGGED)
		return (-ENODEV);
	if (e->link != EMU_LINK_USB) {
		*vid = EMU_VID_SILABS;
		*pid = EMU_PID_CP2102;
		return (0);
	}
	*vid = EMU_VID_ESPRESSIF;
	*pid = e->state == EMU_ST_APP ? EMU_PID_APP : EMU_PID_ROM;
	return (0);
}

/* Whether the flasher stub is what answers now. */
int
emu_stub(const struct emu *e)
{
	return (e->stub);
}

/* Bumped whenever the port goes away and comes back. */
uint64_t
emu_generation(const struct emu *e)
{
	return (e->gen);
}

/* FORCE_DOWNLOAD_BOOT as it stands. */
int
emu_force_download(const struct emu *e)
{
	return (e->force_dl);
}

/* The last line of the last boot. */
const char *
emu_boot_line(const struct emu *e)
{
	return (e->boot_line);
}

/* Whether the last boot found a valid app. */
int
emu_boot_ok(const struct emu *e)
{
	return (e->boot_ok);
}

/* Name of a board model, as --board spells it. */
const char *
emu_board_name(enum emu_board b)
{
	return (b < EMU_BOARD__MAX ? emu_board_names[b] : "?");
}

/* A board model by name; -1 when unknown. */
int
emu_board_parse(const char *s)
{
	int	i;

	for (i = 0; i < EMU_BOARD__MAX; i++)
		if (strcmp(s, emu_board_names[i]) == 0)
			return (i);
	return (-1);
}

/* The last DTR/RTS state recorded. */
void
emu_lines(const struct emu *e, int *dtr, int *rts)
{
	*dtr = e->dtr;
	*rts = e->rts;
}

/* The flash contents (flash_size bytes). */
uint8_t *
emu_flash(struct emu *e)
{
	return (e->flash);
}

/* Physical flash size in bytes. */
uint32_t
emu_flash_size(const struct emu *e)
{
	return (e->flash_size);
}

/* Device time modelled so far, in microseconds. */
uint64_t
emu_modeled_us(const struct emu *e)
{
	return (e->st.modeled_us);
}

/* Snapshot of the counters. */
void
emu_stats(const struct emu *e, struct emu_stats *st)
{
	*st = e->st;
	st->noise_in = e->dec.noise;
}

/* Where the unit is: download mode, app, RAM code, unplugged. */
enum emu_state
emu_state(const struct emu *e)
{
	return (e->state);
}

/* Why the unit left download mode. */
enum emu_reason
emu_reason(const struct emu *e)
{
	return (e->reason);
}

/* Entry point of the RAM code the unit jumped to. */
uint32_t
emu_entry(const struct emu *e)
{
	return (e->entry);
}

/* Current UART baud rate. */
uint32_t
emu_baud(const struct emu *e)
{
	return (e->baud);
}

/* The JEDEC id the flash chip reports. */
uint32_t
emu_jedec(const struct emu *e)
{
	return (EMU_JEDEC_MFR | EMU_JEDEC_TYPE << 8 |
	    emu_size_code(e->flash_size) << 16);
}

/* The unit's factory MAC. */
void
emu_mac(const struct emu *e, uint8_t mac[6])
{
	memcpy(mac, e->mac, 6);
}

/* Name of a state, for logs and stats files. */
const char *
emu_state_name(enum emu_state s)
{
	return (s < EMU_ST__MAX ? emu_state_names[s] : "?");
}

/* Name of a reason. */
const char *
emu_reason_name(enum emu_reason r)
{
	return (r < EMU_RS__MAX ? emu_reason_names[r] : "?");
}

/* Name of a fault kind, as the --fault grammar spells it. */
const char *
emu_fault_kind_name(enum emu_fault_kind k)
{
	return (k < EMU_FAULT__MAX ? emu_fault_names[k] : "?");
}

/* Name of a profile. */
const char *
emu_profile_name(enum emu_profile p)
{
	return (p < EMU_PROFILE__MAX ? emu_profile_names[p] : "?");
}

/* ------------------------------------------------------------------ */
/* Parsers                                                             */
/* ------------------------------------------------------------------ */

/* A whole unsigned number (decimal or 0x hex); -1 when it is not one. */
static int
emu_parse_u64(const char *s, uint64_t *v)
{
	char			*end;
	unsigned long long	 x;

	if (*s == '\0' || *s == '-' || *s == '+')
		return (-1);
	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return (-1);
	*v = x;
	return (0);
}

/* An opcode by esptool name ("FLASH_DEFL_DATA") or number. */
static int
emu_parse_op(const char *s)
{
	uint64_t	v;
	unsigned	op;

	if (emu_parse_u64(s, &v) == 0)
		return (v <= 0xff ? (int)v : -1);
	for (op = 0; op <= 0xff; op++) {
		if (strcasecmp(s, proto_op_name((uint8_t)op)) == 0 &&
		    strcmp(proto_op_name((uint8_t)op), "UNKNOWN") != 0)
			return ((int)op);
	}
	return (-1);
}

/* Keys each fault kind takes (bit per key, in emu_fault_keys order). */
static const char *emu_fault_keys[] = {
	"unit", "kind", "op", "at", "count", "ms", "code", "dir", "factor"
};
#define EMU_K_UNIT	0x01
#define EMU_K_KIND	0x02
#define EMU_K_OP	0x04
#define EMU_K_AT	0x08
#define EMU_K_COUNT	0x10
#define EMU_K_MS	0x20
#define EMU_K_CODE	0x40
#define EMU_K_DIR	0x80
#define EMU_K_FACTOR	0x100

static const unsigned emu_fault_allowed[EMU_FAULT__MAX] = {
	/* drop-reply */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* corrupt */ EMU_K_UNIT | EMU_K_KIND | EMU_K_AT | EMU_K_COUNT |
	    EMU_K_DIR,
	/* stall */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT | EMU_K_MS,
	/* rom-error */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT | EMU_K_CODE,
	/* bitflip */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* noise */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* unplug */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_DIR,
	/* reenum */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* slow-flash */ EMU_K_UNIT | EMU_K_KIND | EMU_K_FACTOR,
};

/*
 * Parse "key=value,..." into a fault.  Defaults: every unit, any op,
 * at=1, count=1, dir=out.  Required: kind; corrupt and unplug need at,
 * stall needs ms, rom-error needs code.
 */
int
emu_fault_parse(const char *spec, struct emu_fault *f, char **cause)
{
	char		*copy, *item, *save = NULL, *eq;
	unsigned	 seen = 0, bit = 0;
	uint64_t	 v;
	size_t		 k;
	int		 kind = -1, rc = -EINVAL;

	memset(f, 0, sizeof(*f));
	f->unit = -1;
	f->op = -1;
	f->at = 1;
	f->count = 1;
	copy = xstrdup(spec);
	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		if ((eq = strchr(item, '=')) == NULL || eq == item) {
			*cause = xasprintf("--fault '%s': '%s' is not "
			    "key=value", spec, item);
			goto out;
		}
		*eq++ = '\0';
		for (k = 0; k < nitems(emu_fault_keys); k++)
			if (strcmp(item, emu_fault_keys[k]) == 0)
				break;
		if (k == nitems(emu_fault_keys)) {
			*cause = xasprintf("--fault '%s': unknown key '%s' "
			    "(keys: unit, kind, op, at, count, ms, code, dir, "
			    "factor)",
			    spec, item);
			goto out;
		}
		bit = 1u << k;
		if (seen & bit) {
			*cause = xasprintf("--fault '%s': '%s' given twice",
			    spec, item);
			goto out;
		}
		seen |= bit;
		switch (bit) {
		case EMU_K_KIND:
			for (k = 0; k < EMU_FAULT__MAX; k++)
				if (strcmp(eq, emu_fault_names[k]) == 0)
					kind = (int)k;
			if (kind < 0) {
				*cause = xasprintf("--fault '%s': unknown kind "
				    "'%s' (drop-reply, corrupt, stall, "
				    "rom-error, bitflip, noise, unplug, "
				    "reenum, slow-flash)",
				    spec, eq);
				goto out;
			}
			f->kind = (enum emu_fault_kind)kind;
			break;
		case EMU_K_OP:
			if ((f->op = emu_parse_op(eq)) < 0) {
				*cause = xasprintf("--fault '%s': op '%s' is "
				    "neither a command name (FLASH_DEFL_DATA) "
				    "nor a number 0..255", spec, eq);
				goto out;
			}
			break;
		case EMU_K_DIR:
			if (strcmp(eq, "in") != 0 && strcmp(eq, "out") != 0) {
				*cause = xasprintf("--fault '%s': dir must be "
				    "'in' or 'out'", spec);
				goto out;
			}
			f->dir_in = strcmp(eq, "in") == 0;
			break;
		default:
			if (strcmp(eq, "all") == 0 && bit == EMU_K_UNIT)
				break;
			if (emu_parse_u64(eq, &v) != 0 ||
			    (bit == EMU_K_UNIT && v > 65535) ||
			    (bit == EMU_K_MS && (v == 0 || v > 600000)) ||
			    (bit == EMU_K_CODE && (v == 0 || v > 0xff)) ||
			    (bit == EMU_K_FACTOR && (v < 2 || v > 1000))) {
				*cause = xasprintf("--fault '%s': bad value "
				    "'%s' for %s", spec, eq, item);
				goto out;
			}
			if (bit == EMU_K_UNIT)
				f->unit = (int)v;
			else if (bit == EMU_K_AT)
				f->at = v;
			else if (bit == EMU_K_COUNT)
				f->count = v;
			else if (bit == EMU_K_MS)
				f->ms = (uint32_t)v;
			else if (bit == EMU_K_FACTOR)
				f->factor = (uint32_t)v;
			else
				f->code = (uint8_t)v;
			break;
		}
	}
	if (kind < 0) {
		*cause = xasprintf("--fault '%s': kind= is required", spec);
		goto out;
	}
	if (seen & ~emu_fault_allowed[kind]) {
		for (k = 0; k < nitems(emu_fault_keys); k++)
			if (seen & ~emu_fault_allowed[kind] & (1u << k))
				break;
		*cause = xasprintf("--fault '%s': kind=%s takes no %s=", spec,
		    emu_fault_names[kind], emu_fault_keys[k]);
		goto out;
	}
	if ((kind == EMU_FAULT_CORRUPT || kind == EMU_FAULT_UNPLUG) &&
	    (seen & EMU_K_AT) == 0) {
		*cause = xasprintf("--fault '%s': kind=%s needs at=", spec,
		    emu_fault_names[kind]);
		goto out;
	}
	if (kind == EMU_FAULT_SLOW_FLASH && (seen & EMU_K_FACTOR) == 0) {
		*cause = xasprintf("--fault '%s': kind=slow-flash needs "
		    "factor= (2 to 1000)", spec);
		goto out;
	}
	if (kind == EMU_FAULT_UNPLUG && f->op >= 0 && f->at == 0) {
		*cause = xasprintf("--fault '%s': at= counts commands from 1 "
		    "when op= is given", spec);
		goto out;
	}
	if (kind == EMU_FAULT_STALL && (seen & EMU_K_MS) == 0) {
		*cause = xasprintf("--fault '%s': kind=stall needs ms=", spec);
		goto out;
	}
	if (kind == EMU_FAULT_ROM_ERROR && (seen & EMU_K_CODE) == 0) {
		*cause = xasprintf("--fault '%s': kind=rom-error needs code=",
		    spec);
		goto out;
	}
	if (kind != EMU_FAULT_UNPLUG && f->at == 0) {
		*cause = xasprintf("--fault '%s': at= counts from 1", spec);
		goto out;
	}
	rc = 0;
out:
	free(copy);
	return (rc);
}

/* Parse "4MB", "512KB", "16M" or a byte count into a flash size. */
int
emu_parse_flash_size(const char *s, uint32_t *size, char **cause)
{
	char			*end;
	unsigned long long	 v;
	uint64_t		 mult = 1;

	errno = 0;
	if (*s < '0' || *s > '9')
		goto bad;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		goto bad;
	if (strcasecmp(end, "MB") == 0 || strcasecmp(end, "M") == 0 ||
	    strcasecmp(end, "MiB") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(end, "KB") == 0 || strcasecmp(end, "K") == 0 ||
	    strcasecmp(end, "KiB") == 0)
		mult = 1024;
	else if (*end != '\0')
		goto bad;
	if (v > (16ULL << 20) || v * mult < (256ULL << 10) ||
	    v * mult > (16ULL << 20) || ((v * mult) & (v * mult - 1)) != 0)
		goto bad;
	*size = (uint32_t)(v * mult);
	return (0);
bad:
	*cause = xasprintf("flash size '%s' is not one of 256KB, 512KB, 1MB, "
	    "2MB, 4MB, 8MB, 16MB", s);
	return (-EINVAL);
}
