/*
 * What loader.c shares with loader-connect.c (into download mode),
 * loader-boot.c (the boot check) and loader-stub.c (the flasher stub):
 * the cause helpers, the receive and send layer under loader_command, and
 * the port handling the boot check reuses.  Not part of the loader's API.
 */
#ifndef ESPF_LOADER_PRIVATE_H
#define ESPF_LOADER_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"
#include "loader.h"
#include "util.h"

#define LOADER_USB_BLOCK	0x800	/* S2 USB-OTG: stub and MEM blocks */

/* Replace l->cause with a formatted sentence and return error. */
int	loader_fail(struct loader *, int error, const char *fmt, ...)
	    printflike(3, 4);
/* Forget the previous failure. */
void	loader_clear(struct loader *);
/* Put "what: " in front of the current cause and return error. */
int	loader_prefix(struct loader *, int error, const char *what);
/* The cause for a transport failure (timeout_ms for the message). */
int	loader_io_fail(struct loader *, int error, unsigned timeout_ms);
/* Forget every byte received so far, ours and the kernel's. */
int	loader_flush(struct loader *);
/* Next reply frame into l->frame: its length, or -errno. */
int	loader_recv(struct loader *, uint64_t deadline);
/* SLIP-encode the request in l->tx and write it. */
int	loader_send(struct loader *, size_t len, uint64_t deadline);
/*
 * Open the port again through reopen (NULL: xport_open) until deadline;
 * *kind says what came back.
 */
int	loader_reopen(struct loader *, loader_reopen_cb reopen, void *arg,
	    uint64_t deadline, enum chip_usb_kind *kind);
/* One SYNC: 0 when the ROM or a stub answered. */
int	loader_sync_once(struct loader *);

#endif
