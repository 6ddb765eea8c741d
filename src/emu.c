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
 *
 * This file is the core: the time model, the reply queue, the state
 * changes, framing, and the public interface.  The rest is in parts
 * that share emu-private.h: emu-rom.c (the ROM's commands), emu-stub.c
 * (the flasher stub), emu-flash.c (the flash chip), emu-reg.c (the
 * registers), emu-boot.c (the unit's life across resets) and emu-fault.c
 * (the fault grammar and where faults strike).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "chip.h"
#include "emu.h"
#include "proto.h"
#include "slip.h"
#include "util.h"
#include "emu-private.h"

/* USB ids (PROTOCOL.md 8.3). */
#define EMU_VID_ESPRESSIF	0x303a
#define EMU_PID_ROM		0x0002	/* S2 ROM download mode */
#define EMU_PID_APP		0x80c2	/* Lolin S2 mini Arduino app */
#define EMU_VID_SILABS		0x10c4
#define EMU_PID_CP2102		0xea60

#define EMU_DEFAULT_FLASH	(4u * 1024 * 1024)
#define EMU_DEFAULT_BAUD	115200
#define EMU_QUEUE_MAX		(1024 * 1024) /* reply bytes not yet drained */
#define EMU_FRAME_CAP		(PROTO_MAX_REQ + 64)
#define EMU_RESP_MAX		(PROTO_HDR_LEN + PROTO_READ_SLOW_BLOCK + 4)

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

static const char *emu_state_names[EMU_ST__MAX] = {
	"download", "app", "ram", "unplugged"
};
static const char *emu_reason_names[EMU_RS__MAX] = {
	"none", "run-user-code", "watchdog-reset", "mem-entry", "unplug",
	"hard-reset", "app-restart", "soft-reset"
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
uint64_t
emu_cost_us(const struct emu *e, uint64_t ns_per_byte, uint64_t bytes)
{
	if (e->profile != EMU_PROFILE_REALISTIC)
		return (0);
	return ((ns_per_byte * bytes + 999) / 1000);
}

/* A fixed delay, only with the realistic profile. */
uint64_t
emu_fixed_us(const struct emu *e, uint64_t us)
{
	return (e->profile == EMU_PROFILE_REALISTIC ? us : 0);
}

/* Time for bytes to cross the link: USB model or 10 bits a byte on UART. */
uint64_t
emu_wire_us(const struct emu *e, size_t bytes)
{
	if (e->profile != EMU_PROFILE_REALISTIC)
		return (0);
	if (e->link == EMU_LINK_USB)
		return (emu_cost_us(e, EMU_USB_NS_PER_BYTE, bytes));
	return (((uint64_t)bytes * 10 * 1000000 + e->baud - 1) / e->baud);
}

/* ------------------------------------------------------------------ */
/* Reply queue                                                         */
/* ------------------------------------------------------------------ */

/* Append bytes due at due_us; dropped when the host stopped reading. */
void
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
void
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
	const char		*banner;
	size_t			 n, w;
	int			 drop = 0, noise = 0;
	uint64_t		 stall = 0;

	n = proto_build_resp(raw, sizeof(raw), op, value, data, len,
	    e->stub ? PROTO_STUB_STATUS_LEN : e->chip->rom_status_len, status,
	    error);
	w = slip_encode(wire, sizeof(wire), raw, n);
	if (n == 0 || w == 0)
		return;		/* cannot happen: payloads are bounded */

	emu_fault_reply(e, op, &drop, &noise, &stall);
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
void
emu_ok(struct emu *e, uint8_t op, const uint8_t *data, size_t len)
{
	emu_reply(e, op, e->last_value, data, len, 0, 0);
}

/* Failure reply with exactly this code: ROM [1, code], stub [code, 0]. */
void
emu_fail_raw(struct emu *e, uint8_t op, uint8_t code)
{
	if (e->stub)
		emu_reply(e, op, e->last_value, NULL, 0, code, 0);
	else
		emu_reply(e, op, e->last_value, NULL, 0, 1, code);
}

/* Failure reply: status 1 and a ROM error code (the stub's equivalent). */
void
emu_fail(struct emu *e, uint8_t op, uint8_t error)
{
	emu_fail_raw(e, op, e->stub ? emu_stub_code(error) : error);
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
void
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
void
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
void
emu_reboot(struct emu *e)
{
	emu_clear(e);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
	e->st.resets++;
}

/* Leave download mode for good (the model without config.boot). */
void
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
void
emu_unplug(struct emu *e)
{
	emu_leave(e, EMU_ST_UNPLUGGED, EMU_RS_UNPLUG);
	e->q_len = e->q_head = 0;
	e->s_n = e->s_head = 0;
	e->en_sample = e->restart_due = 0;
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
		emu_boot_reset(e, due, EMU_RS_HARD_RESET, e->dtr && !e->rts);
	}
	if (e->restart_due != 0 && now >= e->restart_due) {
		due = e->restart_due;
		if (e->restart_dl)
			e->force_dl = 1;
		emu_boot_reset(e, due, EMU_RS_APP_RESTART, 0);
	}
	if (e->wdt_due == 0 || now < e->wdt_due || !emu_listening(e))
		return;
	due = e->wdt_due;
	/* Replies that would have left after the reset never do. */
	emu_queue_cut(e, due);
	if (e->boot_model)
		emu_boot_reset(e, due, EMU_RS_WDT_RESET, 0);
	else
		emu_leave(e, EMU_ST_APP, EMU_RS_WDT_RESET);
}

/* ------------------------------------------------------------------ */
/* Frames                                                              */
/* ------------------------------------------------------------------ */

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
	else if (!emu_fault_phase(e, rq.op) &&
	    !emu_fault_rom_error(e, rq.op)) {
		if (e->stub)
			emu_stub_dispatch(e, &rq);
		else
			emu_rom_dispatch(e, &rq);
	}
	e->busy_until = e->t;
	e->st.modeled_us += e->t - t0 - e->stall_cmd;
	e->st.stall_us += e->stall_cmd;
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
		emu_boot_reset(e, 0, EMU_RS_HARD_RESET, 0);
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
	uint64_t	n;
	size_t		i;
	uint8_t		c;

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
		emu_fault_corrupt(e, 1, n, &c, 1);
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
	struct emu_seg	*s;
	size_t		 n = 0, take;

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
		emu_fault_corrupt(e, 0, e->st.bytes_out + 1, out + n, take);
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
		emu_boot_reset(e, now_us, EMU_RS_SW_RESET, e->strap == 0);
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
	emu_boot_reset(e, now_us, EMU_RS_HARD_RESET, 1);
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
		emu_boot_reset(e, now_us, EMU_RS_HARD_RESET, 0);
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
	    emu_flash_size_code(e->flash_size) << 16);
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

/* Name of a profile. */
const char *
emu_profile_name(enum emu_profile p)
{
	return (p < EMU_PROFILE__MAX ? emu_profile_names[p] : "?");
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
