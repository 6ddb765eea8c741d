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

#define LOADER_RX_MAX		256	/* largest ROM reply we accept */
#define LOADER_TX_MAX		(PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + \
				    PROTO_ROM_BLOCK)

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

/* SYNC until the ROM answers (resetting between attempts when possible). */
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
/* Leave download mode (watchdog reset on S2 USB-OTG, else RTS) or stay. */
int	loader_finish(struct loader *, enum loader_after);

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
