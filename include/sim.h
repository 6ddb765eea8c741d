/*
 * Serve N emulated units (emu.h) on pseudo-terminals from one thread with
 * one poll loop: DIR/ttyK is a symlink to unit K's pty slave and
 * DIR/flashK.bin is its whole flash, mapped shared so it is current as soon
 * as a command is handled.  Used by espfleet-sim and, in-process, by
 * espfleet --simulate.
 */
#ifndef ESPF_SIM_H
#define ESPF_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"
#include "emu.h"

#define SIM_MAX_UNITS	256

struct sim;

struct sim_config {
	unsigned		 units;		/* 1 .. SIM_MAX_UNITS */
	const char		*dir;		/* created if missing */
	enum chip_id		 chip;		/* CHIP_ESP32S2 or CHIP_ESP32 */
	uint32_t		 flash_size;	/* 0 = 4 MiB */
	enum emu_profile	 profile;
	uint64_t		 seed;		/* MACs and fault choices */
	const struct emu_fault	*faults;	/* unit -1 = every unit */
	size_t			 nfaults;
	int			 stats_stderr;	/* also print stats lines */
	/* Unit life (emu_config.boot and friends; 0: download mode only). */
	int			 boot;		/* resets boot from flash */
	int			 start_app;	/* units power on into their app */
	enum emu_board		 board;
	int			 app_silent;
	/* Per unit, overriding the two above: NULL, or units entries. */
	const enum emu_board	*boards;
	const int		*silent;
};

/* A consistent snapshot of one unit, readable from any thread. */
struct sim_unit_stats {
	struct emu_stats	 emu;
	enum emu_state		 state;
	enum emu_reason		 reason;
	int			 gone;		/* pty closed (unplug fault) */
	uint64_t		 generation;	/* new pty each re-enumeration */
	uint16_t		 vid, pid;	/* what the port shows now */
	int			 boot_ok;	/* last boot found a valid app */
	int			 force_download; /* FORCE_DOWNLOAD_BOOT */
	int			 stub;		/* the flasher stub answers */
	unsigned		 replaced;	/* units swapped in (sim_replace) */
	char			 boot_line[160]; /* emu_boot_line(), raw */
};

/*
 * Create the ptys, symlinks and flash files of every unit.  NULL with
 * *cause set (naming the path and what to do) on failure; nothing is left
 * behind then.
 */
struct sim	*sim_new(const struct sim_config *, char **cause);
/* Stop serving, remove the symlinks; the flash files stay. */
void		 sim_free(struct sim *);

unsigned	 sim_units(const struct sim *);
/* "DIR/ttyK" and "DIR/flashK.bin" as built from the configured DIR. */
const char	*sim_tty(const struct sim *, unsigned);
const char	*sim_flash_path(const struct sim *, unsigned);
void		 sim_mac(struct sim *, unsigned, uint8_t mac[6]);
/* The MAC of unit k for a seed (7c:df:a1 and 24 bits from seed + k). */
void		 sim_mac_for(uint64_t seed, unsigned k, uint8_t mac[6]);

/* Serve until sim_stop(): 0, or -errno if poll itself fails. */
int		 sim_run(struct sim *);
/* Make sim_run() return soon; async-signal-safe, any thread. */
void		 sim_stop(struct sim *);
/* Ask sim_run() to write DIR/stats; async-signal-safe, any thread. */
void		 sim_request_stats(struct sim *);
/*
 * Press BOOT+RST (download mode) or RST alone on unit k; any thread and
 * async-signal-safe: sim_run() applies it on its next round.
 */
void		 sim_press_boot_rst(struct sim *, unsigned);
void		 sim_press_rst(struct sim *, unsigned);
/*
 * The technician swaps unit k for a new one (any thread, async-signal-
 * safe): the port goes, and a unit with a new MAC and blank flash comes
 * in download mode; with app, its flash holds sim_set_app()'s image and
 * it arrives running it.  The slot's faults stay (a bad cable or port).
 * sim_unit_stats().replaced counts the swaps done.
 */
void		 sim_replace(struct sim *, unsigned, int app);
/* The image new units arriving in their app hold; before sim_start(). */
void		 sim_set_app(struct sim *, const uint8_t *, size_t);
/* Run sim_run() in its own thread (all signals blocked there). */
int		 sim_start(struct sim *, char **cause);
/* Stop and join the thread of sim_start(); returns sim_run()'s result. */
int		 sim_join(struct sim *);

/* Snapshot of unit k (updated after every poll round). */
void		 sim_unit_stats(struct sim *, unsigned,
		    struct sim_unit_stats *);
/*
 * Write DIR/stats atomically, one line per unit:
 * "unit K modeled_ms M stall_ms S commands C bytes_in I bytes_out O
 * written W erased E unattached U generation G usb VVVV:PPPP state STATE
 * reason REASON" (see
 * espfleet-sim(1)).  0 or -errno.
 */
int		 sim_write_stats(struct sim *, char **cause);

#endif
