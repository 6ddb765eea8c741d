/*
 * The conversation with a chip's ROM serial bootloader over a transport:
 * sync, chip detection, SPI flash set-up, compressed writes with MD5
 * verification, and the reset that follows (PROTOCOL.md).  One caller-owned
 * struct loader per unit; nothing is shared, so units run in parallel.
 */
#ifndef ESPF_LOADER_H
#define ESPF_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"
#include "slip.h"
#include "proto.h"

struct xport;
struct chip_info;

/*
 * One region to write: the bytes, their zlib stream (deflated once by the
 * caller and shared read-only), and the lowercase MD5 of the bytes.
 */
struct loader_region {
	uint32_t	 offset;
	const uint8_t	*data;
	size_t		 len;
	const uint8_t	*zdata;
	size_t		 zlen;
	char		 md5hex[33];
};

/* Where a write stands, for progress reports. */
enum loader_phase {
	LOADER_PH_ERASING,	/* FLASH_DEFL_BEGIN: the ROM erases */
	LOADER_PH_WRITING,	/* FLASH_DEFL_DATA blocks */
	LOADER_PH_VERIFYING,	/* SPI_FLASH_MD5 */
};

/*
 * Progress: bytes of the region written so far (inflated), of len; addr
 * is the flash address the next block lands at.
 */
typedef void (*loader_progress_cb)(void *, enum loader_phase, uint32_t addr,
	    size_t done, size_t len);

/* What to do after writing. */
enum loader_after {
	LOADER_AFTER_REBOOT,	/* run the new firmware */
	LOADER_AFTER_STAY,	/* stay in download mode */
};

/*
 * How strong the evidence is that the new firmware runs, strongest first
 * (loader_boot_check).  NONE: not checked (--after stay, no reset).
 */
enum loader_boot {
	LOADER_BOOT_NONE = 0,
	LOADER_BOOT_MATCH,	/* ESPHome banner, the image's version */
	LOADER_BOOT_DIFFERS,	/* ESPHome banner, another version */
	LOADER_BOOT_BANNER,	/* an app banner (project and version) */
	LOADER_BOOT_PORT_UP,	/* the app's own USB port came up */
	LOADER_BOOT_SILENT,	/* reset done, the app said nothing */
	LOADER_BOOT_FAILED,	/* ROM boot error, or back in download mode */
	LOADER_BOOT__MAX
};

#define LOADER_BOOT_TEXT	96	/* "booted: ESPHome 2023.6.3 (...)" */

/*
 * Open the port again after it vanished (USB re-enumeration): 0 or -errno;
 * *kind says what the port is now when known (USB_KIND_UNKNOWN if not).
 */
typedef int (*loader_reopen_cb)(void *, struct xport *, const char *path,
	    enum chip_usb_kind *kind, char **cause);

struct loader_boot_opts {
	unsigned		 wait_ms;	/* listen this long; 0: 5000 */
	const char		*esphome;	/* the image's version, or NULL */
	loader_reopen_cb	 reopen;	/* NULL: xport_open() + sysfs */
	void			*reopen_arg;
};

/* --before: how to get the chip into its ROM bootloader. */
enum loader_before {
	LOADER_BEFORE_DEFAULT = 0,	/* the resets the port allows */
	LOADER_BEFORE_NO_RESET,		/* only SYNC */
};

/* Tell an in-process emulator the line coding a host set (1200 bps). */
typedef void (*loader_baud_cb)(void *, unsigned baud);

/* GET_SECURITY_INFO, decoded (PROTOCOL.md 2.2). */
struct loader_security {
	int			 valid;		/* the chip answered */
	uint32_t		 flags;
	uint8_t			 crypt_cnt;	/* SPI_BOOT_CRYPT_CNT */
	uint8_t			 key_purposes[7];
};
#define LOADER_SEC_SECURE_BOOT		(1u << 0)
#define LOADER_SEC_AGGRESSIVE_REVOKE	(1u << 1)
#define LOADER_SEC_DOWNLOAD_MODE	(1u << 2)	/* secure download */
#define LOADER_SEC_KEY_REVOKE0		(1u << 3)
#define LOADER_SEC_KEY_REVOKE1		(1u << 4)
#define LOADER_SEC_KEY_REVOKE2		(1u << 5)
#define LOADER_SEC_SOFT_DIS_JTAG	(1u << 6)
#define LOADER_SEC_HARD_DIS_JTAG	(1u << 7)
#define LOADER_SEC_DIS_USB		(1u << 8)
#define LOADER_SEC_DIS_DL_DCACHE	(1u << 9)
#define LOADER_SEC_DIS_DL_ICACHE	(1u << 10)

/*
 * A flasher stub as esptool and esptool-js ship it (JSON: text,
 * text_start, data, data_start, entry; base64).  Loaded once, shared
 * read-only by every job.
 */
struct loader_stub {
	uint8_t			*text;
	size_t			 text_len;
	uint32_t		 text_start;
	uint8_t			*data;		/* NULL when there is none */
	size_t			 data_len;
	uint32_t		 data_start;
	uint32_t		 entry;
};

#define LOADER_RX_MAX		256	/* largest ROM reply we accept */
#define LOADER_TX_MAX		PROTO_MAX_REQ	/* stub blocks: 16 KiB */

struct loader {
	struct xport		*xp;
	const struct chip_info	*chip;		/* NULL until detected */
	unsigned		 status_len;	/* 4 ROM, 2 stub */
	int			 stub;		/* a flasher stub answered */
	int			 usb_otg;	/* S2 native USB download */
	int			 sdm;		/* secure download mode */
	uint8_t			 mac[6];
	int			 have_mac;
	char			 package[32];	/* "ESP32-S2FNR2" */
	int			 rev_major, rev_minor;
	uint32_t		 flash_id;	/* JEDEC mfr|type<<8|cap<<16 */
	uint32_t		 flash_size;	/* bytes; 0 unknown */
	uint32_t		 secinfo_flags;
	struct loader_security	 sec;		/* decoded GET_SECURITY_INFO */
	unsigned		 crystal_mhz;	/* 40 on the S2; 0 unknown */
	int			 force_dl_cleared; /* FORCE_DOWNLOAD_BOOT was set */
	enum loader_after	 after_done;	/* what loader_finish did */

	/* Getting into download mode (loader_connect). */
	enum loader_before	 before;
	enum chip_usb_kind	 port_kind;	/* UNKNOWN: ask the transport */
	loader_reopen_cb	 reopen;	/* NULL: xport_open() again */
	void			*reopen_arg;
	loader_baud_cb		 baud_cb;
	void			*baud_arg;
	unsigned		 reenum_ms;	/* port must come back: 5000 */
	unsigned		 trick_ms;	/* app reacts to a trick: 1500 */
	char			 how[64];	/* how the ROM was reached */
	int			 need_manual;	/* nothing worked: BOOT + RST */

	/* The last ROM reply that failed, for messages and logs. */
	uint8_t			 last_op;
	uint8_t			 last_status;
	uint8_t			 last_error;
	char			*cause;		/* what went wrong, in words */
	unsigned		 retries;	/* DATA blocks sent again */

	/* Tunables, set by loader_init to esptool's values. */
	unsigned		 sync_ms;	/* one SYNC try: 100 ms */
	unsigned		 default_ms;	/* most commands: 3000 ms */
	unsigned		 connect_attempts; /* 7 */
	unsigned		 block_attempts; /* per DATA block: 3 */

	loader_progress_cb	 progress;
	void			*progress_arg;

	/* Receive state: bytes read but not yet decoded, and the decoder. */
	uint8_t			 rx[1024];
	size_t			 rx_off, rx_len;
	uint8_t			 noise[64];	/* text outside frames */
	size_t			 noise_len;
	uint8_t			 frame[LOADER_RX_MAX];
	struct slip_dec		 dec;
	uint8_t			 tx[LOADER_TX_MAX];
	uint8_t			 wire[SLIP_ENCODED_MAX(LOADER_TX_MAX)];
};

void	loader_init(struct loader *, struct xport *);
void	loader_free(struct loader *);
/* The last error in words, or "" if none. */
const char *loader_cause(const struct loader *);

/*
 * The command layer, for protocol code kept in files of its own
 * (readflash.c).  loader_command sends the request built in l->tx (len
 * bytes) and waits up to timeout_ms for the reply with the same opcode;
 * what names the command in the cause (NULL: the opcode's name), *resp
 * points into l->frame.  loader_send_frame and loader_recv_frame move
 * raw SLIP frames (stub READ_FLASH data and ACKs) through the loader's
 * buffers, so no byte is lost between the two layers.
 */
int	loader_command(struct loader *, size_t len, unsigned timeout_ms,
	    const char *what, struct proto_resp *resp);
int	loader_send_frame(struct loader *, const uint8_t *, size_t len,
	    uint64_t deadline);
int	loader_recv_frame(struct loader *, struct slip_dec *,
	    uint64_t deadline);

/*
 * Get the ROM's attention (PROTOCOL.md 3.1, 8).  A USB-UART bridge (by
 * VID:PID, or an fd transport with a lines hook) is reset with esptool's
 * sequences, Tight(50), Tight(550), Classic(50), Classic(550) cycled over
 * the attempts; a USB-Serial/JTAG port with its own sequence; an ESP32-S2
 * app port with the IDF RTS edge, the Arduino line-state sequence and the
 * 1200-bps touch, each followed by waiting for the same path to come back
 * in download mode.  When nothing works, -ETIMEDOUT, need_manual set and
 * the cause says "hold BOOT, press RST".
 */
int	loader_connect(struct loader *);
/* Chip, secure download mode, MAC, package, revision, USB-OTG. */
int	loader_detect(struct loader *);
/* SPI_ATTACH, flash JEDEC id and size, SPI_SET_PARAMS. */
int	loader_attach(struct loader *);
/* CHANGE_BAUDRATE on UART links when baud > 115200; no-op on USB-OTG. */
int	loader_set_baud(struct loader *, unsigned);
/* Erase and write one region (compressed); index/count name it in errors. */
int	loader_write(struct loader *, const struct loader_region *);
/* SPI_FLASH_MD5 of the region against its md5hex. */
int	loader_verify(struct loader *, const struct loader_region *);
/*
 * Leave download mode or stay.  ESP32-S2 ROM on USB-OTG: clear a sticky
 * FORCE_DOWNLOAD_BOOT (an app's restart into download mode set it), then
 * the RTC watchdog reset; otherwise a hard reset on RTS.
 */
int	loader_finish(struct loader *, enum loader_after);

/*
 * After a reset: read the port for the app's banner (reopening it if it
 * vanished), bounded by wait_ms and cancellable; then, if nothing was
 * decisive, SYNC once to see whether the unit fell back into download mode.
 * *result and text (LOADER_BOOT_TEXT bytes, sanitized) say what was seen.
 * Returns 0, or -ECANCELED.
 */
int	loader_boot_check(struct loader *, const struct loader_boot_opts *,
	    enum loader_boot *result, char *text);
/* "match", "differs", "banner", "port-up", "silent", "failed", "none". */
const char *loader_boot_name(enum loader_boot);

/*
 * After a failed connect that needs a person ("hold BOOT, press RST"):
 * wait up to ms for the ROM, following the port if it vanishes and comes
 * back.  0 once it answers SYNC, -ETIMEDOUT, or -ECANCELED.
 */
int	loader_wait_download(struct loader *, unsigned ms);

/* Decode a GET_SECURITY_INFO payload (12 bytes or more); 0 or -EBADMSG. */
int	loader_security_parse(const uint8_t *, size_t,
	    struct loader_security *);
/* Flash encryption is on when SPI_BOOT_CRYPT_CNT has an odd bit count. */
int	loader_security_encrypted(const struct loader_security *);
/* "secure boot, JTAG disabled, flash encryption (count 1)" or "none". */
void	loader_security_text(const struct loader_security *, char *, size_t);
/*
 * Refuse a unit the image cannot boot on, before anything is written:
 * secure download mode, flash encryption, or secure boot with an unsigned
 * image (unsigned: how many ESP images in the job lack a signature
 * block).  0, or -EPERM with *cause saying why and what to do.
 */
int	loader_security_check(const struct loader_security *,
	    size_t unsigned_images, char **cause);

/* Read a stub JSON file: 0, or -errno with *cause naming what is wrong. */
int	loader_stub_load(const char *path, struct loader_stub *, char **cause);
/* The same from a JSON text already in memory (name is for messages). */
int	loader_stub_parse(const char *json, size_t len, const char *name,
	    struct loader_stub *, char **cause);
void	loader_stub_free(struct loader_stub *);
/*
 * Upload the stub to RAM (MEM_BEGIN/MEM_DATA in 0x1800 blocks, 0x800 on
 * USB-OTG; MEM_END(0, entry)) and wait for its "OHAI"; from then on the
 * loader speaks to the stub: 2 status bytes, 16 KiB blocks (2 KiB on S2
 * USB-OTG), exact sizes, pipelined ACKs.  Call after loader_detect.
 */
int	loader_stub_run(struct loader *, const struct loader_stub *);
/* Stub only: FLASH_DEFL_END(1), answered once the last block is written. */
int	loader_stub_end(struct loader *);

/* Single commands, exposed for the tests and for inspection tools. */
int	loader_read_reg(struct loader *, uint32_t addr, uint32_t *value);
int	loader_write_reg(struct loader *, uint32_t addr, uint32_t value);
int	loader_flash_md5(struct loader *, uint32_t addr, uint32_t size,
	    char hex[33]);
/* Read the flash JEDEC id through the SPI registers (PROTOCOL.md 4.3). */
int	loader_flash_id(struct loader *, uint32_t *id);

/* esptool's per-MB timeouts, in ms (decimal MB, at least 3 s). */
unsigned loader_timeout_per_mb(unsigned ms_per_mb, size_t bytes);

#endif
