/*
 * Reading a unit's flash through the ROM: READ_FLASH_SLOW, 64 bytes a
 * command (PROTOCOL.md 2.1), on a loader that is connected and attached.
 * Kept apart from loader.c, with the loader's receive state, so that it
 * can move there as loader_read_flash_slow() without changing callers.
 */
#ifndef ESPF_READFLASH_H
#define ESPF_READFLASH_H

#include <stddef.h>
#include <stdint.h>

struct loader;

/*
 * Read len bytes of flash at addr into buf, one command per 64 bytes,
 * each with its own deadline.  0, or -errno with *cause set (-EPROTO: the
 * ROM refused, -ENOTSUP: a stub, which has no READ_FLASH_SLOW).
 */
int	readflash_slow(struct loader *, uint32_t addr, uint8_t *buf,
	    size_t len, char **cause);

#endif
