/*
 * ROM-bootloader emulator: one ESP32-S2 (USB-OTG download mode) or ESP32
 * (UART download mode) as a flasher sees it over the wire (PROTOCOL.md
 * sections 1-6 and 11).  Pure: a caller-owned context, no I/O, no globals,
 * no logging.  The caller feeds host bytes with a timestamp and drains the
 * reply bytes that are due; with the realistic profile every reply is due
 * after the device time the real unit would spend on it.
 */
#ifndef ESPF_EMU_H
#define ESPF_EMU_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"

struct emu;

enum emu_profile {
	EMU_PROFILE_FAST = 0,		/* no modelled delays */
	EMU_PROFILE_REALISTIC,		/* link, flash and CPU time */
	EMU_PROFILE__MAX
};

enum emu_link {
	EMU_LINK_DEFAULT = 0,		/* USB for the S2, UART for the ESP32 */
	EMU_LINK_USB,			/* ESP32-S2 ROM USB-OTG CDC */
	EMU_LINK_UART,			/* UART behind a USB bridge */
	EMU_LINK__MAX
};

enum emu_state {
	EMU_ST_DOWNLOAD = 0,		/* ROM download mode, answering */
	EMU_ST_APP,			/* left download mode (see reason) */
	EMU_ST_RAM,			/* jumped into code uploaded to RAM */
	EMU_ST_UNPLUGGED,		/* gone (fault injection) */
	EMU_ST__MAX
};

enum emu_reason {
	EMU_RS_NONE = 0,
	EMU_RS_RUN_USER_CODE,		/* FLASH_END / FLASH_DEFL_END flag 1 */
	EMU_RS_WDT_RESET,		/* RTC watchdog (PROTOCOL.md 5.5) */
	EMU_RS_MEM_ENTRY,		/* MEM_END(0, entry) */
	EMU_RS_UNPLUG,			/* --fault kind=unplug */
	EMU_RS_HARD_RESET,		/* EN pin: RTS, RST button, power on */
	EMU_RS_APP_RESTART,		/* the app restarted into download */
	EMU_RS_SW_RESET,		/* FLASH_END(0), reenum fault */
	EMU_RS__MAX
};

enum emu_fault_kind {
	EMU_FAULT_DROP_REPLY = 0,	/* a reply frame is never sent */
	EMU_FAULT_CORRUPT,		/* one bit of a wire byte flips */
	EMU_FAULT_STALL,		/* a reply comes ms milliseconds late */
	EMU_FAULT_ROM_ERROR,		/* a command fails with a ROM error */
	EMU_FAULT_BITFLIP,		/* a bit flips in flash after a write */
	EMU_FAULT_NOISE,		/* ROM boot text before a reply */
	EMU_FAULT_UNPLUG,		/* the unit disappears */
	EMU_FAULT_REENUM,		/* resets into a new download port */
	EMU_FAULT_SLOW_FLASH,		/* flash program/erase factor x slower */
	EMU_FAULT__MAX
};

/* One fault (grammar in espfleet-sim(1); parsed by emu_fault_parse()). */
struct emu_fault {
	enum emu_fault_kind	 kind;
	int			 unit;	/* -1: every unit (for the caller) */
	int			 op;	/* opcode it applies to; -1 any */
	uint64_t		 at;	/* 1-based; unplug: bytes before */
	uint64_t		 count;	/* how many from at on; 0 = all */
	uint32_t		 ms;	/* stall */
	uint8_t			 code;	/* rom-error */
	int			 dir_in; /* corrupt/unplug: count host bytes */
	uint32_t		 factor; /* slow-flash */
};

/*
 * What pulls the chip's EN and GPIO0 pins, and which reset tricks the app
 * in flash honours (PROTOCOL.md 8.1, 8.2; espfleet-sim(1) BOARDS).
 */
enum emu_board {
	EMU_BOARD_PLAIN = 0,		/* native USB, app ignores the lines */
	EMU_BOARD_BRIDGE,		/* USB-UART bridge, DTR->IO0, RTS->EN */
	EMU_BOARD_IDF_CDC,		/* native USB, ESP-IDF USB-CDC console */
	EMU_BOARD_TINYUSB,		/* native USB, Arduino TinyUSB CDC */
	EMU_BOARD__MAX
};

struct emu_config {
	enum chip_id		 chip;	/* CHIP_ESP32S2 (also 0), CHIP_ESP32 */
	enum emu_link		 link;
	enum emu_profile	 profile;
	uint32_t		 flash_size; /* power of two; 0 = 4 MiB */
	uint8_t			*flash;	/* caller's flash_size bytes, or NULL */
	uint8_t			 mac[6];
	uint32_t		 baud;	/* UART baud at reset; 0 = 115200 */
	uint64_t		 seed;	/* picks bitflip positions */
	const struct emu_fault	*faults; /* copied; unit is not looked at */
	size_t			 nfaults;
	/* Unit life (all 0: the download-mode-only model of before). */
	int			 boot;	/* resets boot what is in flash */
	int			 start_app; /* power on with GPIO0 high (boot) */
	enum emu_board		 board;
	int			 app_silent; /* the app prints nothing here */
	int			 stub_model; /* known stub entries run a stub */
};

/* Counters a test or benchmark may read. */
struct emu_stats {
	uint64_t	 modeled_us;	/* device time of every command */
	uint64_t	 stall_us;	/* extra time from stall faults */
	uint64_t	 commands;	/* frames handled as commands */
	uint64_t	 bytes_in;	/* host bytes fed */
	uint64_t	 bytes_out;	/* bytes drained */
	uint64_t	 dropped;	/* frames ignored, replies lost */
	uint64_t	 noise_in;	/* host bytes outside any frame */
	uint64_t	 resets;	/* reboots back into download mode */
	uint64_t	 flash_written;	/* bytes programmed */
	uint64_t	 flash_erased;	/* bytes erased */
	uint64_t	 unattached;	/* flash commands before SPI_ATTACH */
};

/*
 * New emulator in download mode.  The config (and the faults) are copied;
 * a caller's flash buffer must outlive the emulator and is used as is (the
 * emulator does not clear it), otherwise the emulator allocates one filled
 * with 0xFF.  NULL with *cause set on a bad config.
 */
struct emu	*emu_new(const struct emu_config *, char **cause);
void		 emu_free(struct emu *);

/* Host bytes that arrived at now_us (CLOCK_MONOTONIC microseconds). */
void	 emu_feed(struct emu *, const uint8_t *, size_t, uint64_t now_us);
/* Copy up to cap reply bytes that are due at now_us; returns the count. */
size_t	 emu_drain(struct emu *, uint8_t *, size_t cap, uint64_t now_us);
/* When the next reply byte or internal event is due; UINT64_MAX if none. */
uint64_t emu_next_due_us(const struct emu *);
/* Bytes queued but not drained yet (due or not). */
size_t	 emu_pending(const struct emu *);
/* Record the DTR/RTS line state (true = asserted); for reset models. */
void	 emu_set_lines(struct emu *, int dtr, int rts, uint64_t now_us);
void	 emu_lines(const struct emu *, int *dtr, int *rts);

uint8_t		*emu_flash(struct emu *);
uint32_t	 emu_flash_size(const struct emu *);
/* Device time spent so far (sum of modelled delays; 0 with fast). */
uint64_t	 emu_modeled_us(const struct emu *);
void		 emu_stats(const struct emu *, struct emu_stats *);
enum emu_state	 emu_state(const struct emu *);
enum emu_reason	 emu_reason(const struct emu *);
/* Entry address of MEM_END(0, entry) once in EMU_ST_RAM. */
uint32_t	 emu_entry(const struct emu *);
/* Current UART baud (CHANGE_BAUDRATE changes it). */
uint32_t	 emu_baud(const struct emu *);
/* JEDEC id the flash answers RDID with (mfr | type << 8 | cap << 16). */
uint32_t	 emu_jedec(const struct emu *);
void		 emu_mac(const struct emu *, uint8_t mac[6]);

/*
 * Unit life (only with config.boot).  USB ids of the port the unit shows
 * now: 303a:0002 in ROM download mode, 303a:80c2 for the app (a bridge
 * board: 10c4:ea60 always); -ENODEV once unplugged.
 */
int		 emu_usb_id(const struct emu *, uint16_t *vid, uint16_t *pid);
/*
 * 1 while the flasher stub answers (PROTOCOL.md 9): with config.stub_model
 * a MEM_END(0, entry) to a known stub entry (0x400288AC, 0x400290A4 on the
 * S2) starts it; the state is then EMU_ST_RAM and the unit still listens.
 */
int		 emu_stub(const struct emu *);
/* Changes whenever the port goes away and comes back (re-enumeration). */
uint64_t	 emu_generation(const struct emu *);
/* Hold BOOT, press and release RST: reset into download mode. */
void		 emu_press_boot_rst(struct emu *, uint64_t now_us);
/* Press and release RST alone: boot what is in flash (unless forced). */
void		 emu_press_rst(struct emu *, uint64_t now_us);
/* The host set the CDC line coding (TinyUSB apps: 1200 = to bootloader). */
void		 emu_set_baud_host(struct emu *, uint32_t baud,
		     uint64_t now_us);
/* RTC_CNTL_OPTION1 FORCE_DOWNLOAD_BOOT (sticky across resets). */
int		 emu_force_download(const struct emu *);
/* The last line of the last boot ("" before any): banner or ROM error. */
const char	*emu_boot_line(const struct emu *);
/* 1 when the last boot from flash found a valid image, else 0. */
int		 emu_boot_ok(const struct emu *);

const char	*emu_state_name(enum emu_state);
const char	*emu_board_name(enum emu_board);
/* Parse a board name (plain, bridge, idf-cdc, tinyusb); -1 if unknown. */
int		 emu_board_parse(const char *);
const char	*emu_reason_name(enum emu_reason);
const char	*emu_fault_kind_name(enum emu_fault_kind);
const char	*emu_profile_name(enum emu_profile);

/*
 * Parse one fault spec ("unit=1,kind=drop-reply,op=FLASH_DEFL_DATA,at=3").
 * 0, or -EINVAL with *cause naming the bad part.
 */
int	 emu_fault_parse(const char *spec, struct emu_fault *, char **cause);
/*
 * Parse a flash size ("4MB", "512KB", "4194304"): a power of two from
 * 256 KiB to 16 MiB.  0, or -EINVAL with *cause set.
 */
int	 emu_parse_flash_size(const char *, uint32_t *, char **cause);

#endif
