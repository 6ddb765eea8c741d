/*
 * Reading a unit's flash on a loader that is connected and attached:
 * through the ROM, READ_FLASH_SLOW, 64 bytes a command (PROTOCOL.md 2.1);
 * through a flasher stub, the streamed READ_FLASH with its MD5 (2.3).
 * Kept apart from loader.c, sharing the loader's receive state.
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
/*
 * Read len bytes of flash at addr with whatever runs on the unit: the
 * stub's READ_FLASH, checked against its MD5, or READ_FLASH_SLOW.  0, or
 * -errno with *cause set (-EBADMSG: a short packet or a wrong digest).
 */
int	readflash(struct loader *, uint32_t addr, uint8_t *buf, size_t len,
	    char **cause);
/*
 * readflash() checked against the chip's SPI_FLASH_MD5 of the range,
 * asked first: an erased range is filled with 0xFF without being read.
 * -EIO when the bytes read do not have the flash's MD5.
 */
int	readflash_checked(struct loader *, uint32_t addr, uint8_t *buf,
	    size_t len, char **cause);

#endif
