/*
 * READ_FLASH_SLOW (readflash.h): the request from proto.c, SLIP framing,
 * and a receive loop over the loader's own buffers, so bytes that arrive
 * with a reply are not lost to the next loader command.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "loader.h"
#include "proto.h"
#include "readflash.h"
#include "slip.h"
#include "transport.h"
#include "util.h"

#define READFLASH_MAX_FRAMES	100	/* frames skipped per command */

/* Next complete SLIP frame before the deadline: its length, or -errno. */
static int
readflash_recv(struct loader *l, uint64_t deadline)
{
	int	n;

	for (;;) {
		while (l->rx_off < l->rx_len) {
			if (slip_dec_byte(&l->dec, l->rx[l->rx_off++]) ==
			    SLIP_FRAME)
				return ((int)l->dec.len);
		}
		n = xport_read(l->xp, l->rx, sizeof(l->rx), deadline);
		if (n < 0)
			return (n);
		l->rx_off = 0;
		l->rx_len = (size_t)n;
	}
}

/* One READ_FLASH_SLOW of n <= 64 bytes at addr. */
static int
readflash_one(struct loader *l, uint32_t addr, uint8_t *buf, size_t n,
    char **cause)
{
	struct proto_resp	 resp;
	uint64_t		 deadline;
	size_t			 len, wlen;
	int			 error, i, got;

	deadline = util_now_ms() + l->default_ms;
	len = proto_build_read_flash_slow(l->tx, sizeof(l->tx), addr,
	    (uint32_t)n);
	if (len == 0 ||
	    (wlen = slip_encode(l->wire, sizeof(l->wire), l->tx, len)) == 0) {
		*cause = xasprintf("READ_FLASH_SLOW: request too long");
		return (-EMSGSIZE);
	}
	if ((error = xport_write(l->xp, l->wire, wlen, deadline)) != 0)
		goto io;
	for (i = 0; i < READFLASH_MAX_FRAMES; i++) {
		if ((got = readflash_recv(l, deadline)) < 0) {
			error = got;
			goto io;
		}
		if (got < PROTO_HDR_LEN || l->frame[0] != 0x01 ||
		    l->frame[1] != PROTO_READ_FLASH_SLOW)
			continue;
		if (proto_parse_resp(l->frame, (size_t)got, l->status_len,
		    &resp) != 0) {
			*cause = xasprintf("READ_FLASH_SLOW at 0x%x: malformed "
			    "reply (%d bytes)", addr, got);
			return (-EBADMSG);
		}
		if (resp.status != 0) {
			l->last_op = PROTO_READ_FLASH_SLOW;
			l->last_status = resp.status;
			l->last_error = resp.error;
			*cause = xasprintf("READ_FLASH_SLOW at 0x%x: ROM "
			    "status 0x%02x %s", addr, resp.error,
			    proto_err_text(resp.error));
			return (-EPROTO);
		}
		if (resp.data_len < n) {
			*cause = xasprintf("READ_FLASH_SLOW at 0x%x: %zu bytes "
			    "in the reply, %zu asked", addr, resp.data_len, n);
			return (-EBADMSG);
		}
		memcpy(buf, resp.data, n);
		return (0);
	}
	*cause = xasprintf("READ_FLASH_SLOW at 0x%x: no matching reply among "
	    "%d frames", addr, READFLASH_MAX_FRAMES);
	return (-EPROTO);
io:
	if (error == -ETIMEDOUT)
		*cause = xasprintf("READ_FLASH_SLOW at 0x%x: no reply within "
		    "%u ms", addr, l->default_ms);
	else if (error != -ECANCELED)
		*cause = xasprintf("READ_FLASH_SLOW at 0x%x: %s", addr,
		    strerror(-error));
	else
		*cause = xasprintf("cancelled while reading flash");
	return (error);
}

/* Read len bytes of flash at addr, 64 bytes a command. */
int
readflash_slow(struct loader *l, uint32_t addr, uint8_t *buf, size_t len,
    char **cause)
{
	size_t	off, n;
	int	error;

	if (l->stub) {
		*cause = xasprintf("READ_FLASH_SLOW: a flasher stub does not "
		    "have it");
		return (-ENOTSUP);
	}
	for (off = 0; off < len; off += n) {
		n = MINIMUM(len - off, PROTO_READ_SLOW_BLOCK);
		if ((error = readflash_one(l, addr + (uint32_t)off, buf + off,
		    n, cause)) != 0)
			return (error);
	}
	return (0);
}
