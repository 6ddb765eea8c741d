/*
 * What the parts of the ROM-bootloader emulator share: struct emu, the
 * realistic profile figures, the flash geometry, and the functions one
 * part calls in another.  emu.c is the core (time, reply queue, state
 * changes, framing, public API); emu-rom.c answers as the ROM, emu-stub.c
 * as the flasher stub; emu-flash.c is the flash chip, emu-reg.c the
 * register map, emu-boot.c the unit's life across resets, emu-fault.c the
 * fault grammar and where faults strike.  Not part of the emulator's API
 * (include/emu.h).
 */
#ifndef ESPF_EMU_PRIVATE_H
#define ESPF_EMU_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "chip.h"
#include "emu.h"
#include "proto.h"
#include "slip.h"

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

#define EMU_SECTOR		0x1000u
#define EMU_BLOCK		0x10000u
#define EMU_MAX_BLOCK		0x4000u	/* largest FLASH/MEM block accepted */
#define EMU_NREGS		128	/* registers the store remembers */
#define EMU_NRAMSEGS		8	/* MEM_BEGIN segments kept */
#define EMU_INFLATE_CHUNK	4096

/* JEDEC: GigaDevice (0xC8), GD25Qxx memory type 0x40, capacity log2(size). */
#define EMU_JEDEC_MFR		0xC8
#define EMU_JEDEC_TYPE		0x40

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


/* Which flash write is in progress. */
enum emu_flmode {
	EMU_FL_NONE = 0,
	EMU_FL_PLAIN,			/* after FLASH_BEGIN */
	EMU_FL_DEFL			/* after FLASH_DEFL_BEGIN */
};

/* One emulated unit: the chip, its flash and what it is doing. */
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

/* emu.c */
/* Microseconds for bytes at ns_per_byte; 0 with the fast profile. */
uint64_t	emu_cost_us(const struct emu *, uint64_t ns_per_byte,
		    uint64_t bytes);
/* A fixed delay, only with the realistic profile. */
uint64_t	emu_fixed_us(const struct emu *, uint64_t us);
/* Time for bytes to cross the link. */
uint64_t	emu_wire_us(const struct emu *, size_t bytes);
/* Append reply bytes due at due. */
void		emu_queue(struct emu *, const void *, size_t, uint64_t due);
/* Forget queued bytes due after t. */
void		emu_queue_cut(struct emu *, uint64_t t);
/* Success reply with an optional payload. */
void		emu_ok(struct emu *, uint8_t op, const uint8_t *, size_t);
/* Failure reply with exactly this code (ROM or stub layout). */
void		emu_fail_raw(struct emu *, uint8_t op, uint8_t code);
/* Failure reply from a ROM error code (the stub's equivalent). */
void		emu_fail(struct emu *, uint8_t op, uint8_t error);
/* Drop an unfinished compressed write. */
void		emu_fl_reset(struct emu *);
/* Forget everything a reset clears. */
void		emu_clear(struct emu *);
/* Software reset back into download mode. */
void		emu_reboot(struct emu *);
/* Leave download mode for good (the model without config.boot). */
void		emu_leave(struct emu *, enum emu_state, enum emu_reason);
/* The unit disappears. */
void		emu_unplug(struct emu *);

/* emu-flash.c */
/* log2 of the flash size: the JEDEC capacity byte. */
unsigned	emu_flash_size_code(uint32_t size);
/* Program like NOR; -1 past the chip size. */
int		emu_flash_program(struct emu *, uint32_t addr, const uint8_t *,
		    size_t);
/* Erase one sector or block to 0xFF. */
void		emu_flash_erase_span(struct emu *, uint32_t addr,
		    uint32_t size);
/* Erase an area the way the ROM does; -1 when the ROM would refuse. */
int		emu_flash_erase_area(struct emu *, uint32_t start,
		    uint32_t len);
/* MD5 of a flash range. */
void		emu_flash_md5(struct emu *, uint32_t addr, uint32_t size,
		    uint8_t md[16]);
/* Bytes the flash chip shifts out for a SPI user command. */
void		emu_flash_miso(struct emu *, uint8_t cmd, uint32_t addr,
		    uint8_t *out, size_t n);

/* emu-reg.c */
/* The value a register reads as. */
uint32_t	emu_reg_read(const struct emu *, uint32_t addr);
/* WRITE_REG of one register. */
void		emu_reg_write(struct emu *, uint32_t addr, uint32_t value,
		    uint32_t mask);

/* emu-boot.c */
/* Run the app in flash, or fall back into download mode. */
void		emu_boot_flash(struct emu *, enum emu_reason why);
/* A chip reset at time at; the straps pick download mode or flash. */
void		emu_boot_reset(struct emu *, uint64_t at, enum emu_reason why,
		    int gpio0_low);

/* emu-rom.c */
/* Hand a well-formed request to the ROM's handler. */
void		emu_rom_dispatch(struct emu *, const struct proto_req *);
/* READ_REG, WRITE_REG: the stub answers them as the ROM does. */
void		emu_rom_read_reg(struct emu *, const struct proto_req *);
void		emu_rom_write_reg(struct emu *, const struct proto_req *);
/* MEM_BEGIN, MEM_DATA, MEM_END: likewise. */
void		emu_rom_mem_begin(struct emu *, const struct proto_req *);
void		emu_rom_mem_data(struct emu *, const struct proto_req *);
void		emu_rom_mem_end(struct emu *, const struct proto_req *);
/* SPI_SET_PARAMS, GET_SECURITY_INFO: likewise. */
void		emu_rom_set_params(struct emu *, const struct proto_req *);
void		emu_rom_secinfo(struct emu *, const struct proto_req *);
/* Start the write a checked FLASH_BEGIN asks for, and answer it. */
void		emu_rom_flash_start(struct emu *, const struct proto_req *);
/* Check a _DATA header and checksum; 0 or the ROM error code. */
int		emu_rom_data_check(struct emu *, const struct proto_req *,
		    uint32_t *seq, const uint8_t **data, uint32_t *len);
/* Inflate one compressed block into flash; 0 or the ROM error code. */
int		emu_rom_inflate(struct emu *, const uint8_t *, uint32_t len,
		    uint32_t *out);

/* emu-stub.c */
/* A stub's error code for what the ROM would call error. */
uint8_t		emu_stub_code(uint8_t error);
/* Is entry the entry point of a stub this chip is known to run? */
int		emu_stub_entry(const struct emu *, uint32_t entry);
/* The stub is running: send "OHAI". */
void		emu_stub_start(struct emu *);
/* Erase lazily, as the stub does, every sector up to end. */
void		emu_stub_erase_to(struct emu *, uint32_t end);
/* Commands as the stub answers them. */
void		emu_stub_dispatch(struct emu *, const struct proto_req *);
/* A frame while READ_FLASH streams: the host's ACK. */
void		emu_stub_read_ack(struct emu *, const uint8_t *, size_t);

/* emu-fault.c */
/* Does the n-th match of a fault fall in its at/count window? */
int		emu_fault_window(const struct emu_fault *, uint64_t n);
/* Corrupt faults on bytes first.. of one direction: bit 0 flips. */
void		emu_fault_corrupt(struct emu *, int dir_in, uint64_t first,
		    uint8_t *, size_t);
/* Drop, stall or noise faults that strike this reply to op. */
void		emu_fault_reply(struct emu *, uint8_t op, int *drop,
		    int *noise, uint64_t *stall);
/* Apply the bitflip faults matching a write of [addr, addr+len). */
void		emu_fault_after_write(struct emu *, uint8_t op, uint32_t addr,
		    size_t len);
/* A rom-error fault turns the command into a ROM error; 1 if it did. */
int		emu_fault_rom_error(struct emu *, uint8_t op);
/* An unplug or reenum fault ends the command unanswered; 1 if one did. */
int		emu_fault_phase(struct emu *, uint8_t op);

#endif
