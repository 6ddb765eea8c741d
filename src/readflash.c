/*
 * Reading flash (readflash.h): the ROM's READ_FLASH_SLOW and the stub's
 * streamed READ_FLASH, on the loader's command layer and its receive
 * buffers, so bytes that arrive with a reply are not lost to the next
 * loader command.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "loader.h"
#include "proto.h"
#include "readflash.h"
#include "slip.h"
#include "util.h"

#define READFLASH_PACKET	0x1000	/* stub packet, as esptool asks */
#define READFLASH_INFLIGHT	64	/* bytes: one packet at a time */

/* One READ_FLASH_SLOW of n <= 64 bytes at addr. */
static int
readflash_one(struct loader *l, uint32_t addr, uint8_t *buf, size_t n,
    char **cause)
{
	struct proto_resp	resp;
	char			what[40];
	size_t			len;
	int			error;

	snprintf(what, sizeof(what), "READ_FLASH_SLOW at 0x%x", addr);
	len = proto_build_read_flash_slow(l->tx, sizeof(l->tx), addr,
	    (uint32_t)n);
	if ((error = loader_command(l, len, l->default_ms, what,
	    &resp)) != 0) {
		*cause = xstrdup(loader_cause(l));
		return (error);
	}
	if (resp.data_len < n) {
		*cause = xasprintf("%s: %zu bytes in the reply, %zu asked",
		    what, resp.data_len, n);
		return (-EBADMSG);
	}
	memcpy(buf, resp.data, n);
	return (0);
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

/* Send the stub's READ_FLASH request and wait for its plain reply. */
static int
readflash_stream_start(struct loader *l, uint32_t addr, uint32_t len,
    char **cause)
{
	struct proto_resp	resp;
	uint8_t			args[16];
	char			what[40];
	size_t			n;
	int			error;

	snprintf(what, sizeof(what), "READ_FLASH at 0x%x", addr);
	le32_put(args, addr);
	le32_put(args + 4, len);
	le32_put(args + 8, READFLASH_PACKET);
	le32_put(args + 12, READFLASH_INFLIGHT);
	n = proto_build(l->tx, sizeof(l->tx), PROTO_READ_FLASH, args,
	    sizeof(args), 0);
	if ((error = loader_command(l, n, l->default_ms, what, &resp)) != 0)
		*cause = xstrdup(loader_cause(l));
	return (error);
}

/* Acknowledge got bytes: a raw frame holding the u32 count. */
static int
readflash_ack(struct loader *l, uint32_t got)
{
	uint8_t	n[4];

	le32_put(n, got);
	return (loader_send_frame(l, n, sizeof(n), util_now_ms() +
	    l->default_ms));
}

/*
 * The stub's READ_FLASH (PROTOCOL.md 2.3): packets of raw data, each
 * acknowledged with the count so far, then the MD5 of all of it, which
 * is checked.  Packets are larger than the loader's reply buffer, so
 * they are decoded into one of their own.
 */
static int
readflash_stream(struct loader *l, uint32_t addr, uint8_t *buf, size_t len,
    char **cause)
{
	struct slip_dec	 dec;
	uint8_t		*pkt, md5[16];
	uint32_t	 got = 0, want;
	int		 error, n;

	if (len > UINT32_MAX - addr) {
		*cause = xasprintf("READ_FLASH: %zu bytes at 0x%x end past "
		    "4 GiB", len, addr);
		return (-EINVAL);
	}
	if ((error = readflash_stream_start(l, addr, (uint32_t)len,
	    cause)) != 0)
		return (error);
	pkt = xmalloc(READFLASH_PACKET);
	slip_dec_init(&dec, pkt, READFLASH_PACKET);
	while (got < len) {
		want = (uint32_t)MINIMUM(len - got, READFLASH_PACKET);
		if ((n = loader_recv_frame(l, &dec, util_now_ms() +
		    l->default_ms)) < 0) {
			error = n;
			break;
		}
		if ((uint32_t)n != want) {
			*cause = xasprintf("READ_FLASH at 0x%x: a packet of %d "
			    "bytes, %u expected", addr + got, n, want);
			error = -EBADMSG;
			break;
		}
		memcpy(buf + got, pkt, want);
		got += want;
		if ((error = readflash_ack(l, got)) != 0)
			break;
	}
	if (error == 0 && (n = loader_recv_frame(l, &dec, util_now_ms() +
	    l->default_ms)) != 16) {
		error = n < 0 ? n : -EBADMSG;
		if (n >= 0)
			*cause = xasprintf("READ_FLASH at 0x%x: a digest of %d "
			    "bytes, 16 expected", addr, n);
	}
	if (error == 0) {
		digest_md5(buf, len, md5);
		if (memcmp(md5, pkt, sizeof(md5)) != 0) {
			*cause = xasprintf("READ_FLASH at 0x%x: %zu bytes "
			    "read, but their MD5 differs from the stub's",
			    addr, len);
			error = -EBADMSG;
		}
	}
	free(pkt);
	if (error == -ETIMEDOUT)
		*cause = xasprintf("READ_FLASH at 0x%x: no data within %u ms",
		    addr + got, l->default_ms);
	else if (error == -ECANCELED)
		*cause = xasprintf("cancelled while reading flash");
	else if (error < 0 && error != -EBADMSG && error != -EPROTO)
		*cause = xasprintf("READ_FLASH at 0x%x: %s", addr + got,
		    strerror(-error));
	return (error);
}

/* Read flash through whatever runs on the unit: ROM or stub. */
int
readflash(struct loader *l, uint32_t addr, uint8_t *buf, size_t len,
    char **cause)
{
	if (l->stub)
		return (readflash_stream(l, addr, buf, len, cause));
	return (readflash_slow(l, addr, buf, len, cause));
}

/*
 * Ask the chip for the MD5 of the range first: an erased range (the MD5
 * of all 0xFF) is not read at all, which spares a blank unit's 28 KiB of
 * settings some 450 READ_FLASH_SLOW round trips; and the bytes read must
 * have that MD5, as READ_FLASH_SLOW carries no checksum of its own.
 */
int
readflash_checked(struct loader *l, uint32_t addr, uint8_t *buf, size_t len,
    char **cause)
{
	char	want[33], got[33];
	int	error;

	if (len > UINT32_MAX) {
		*cause = xasprintf("%zu bytes at 0x%x: too long", len, addr);
		return (-EINVAL);
	}
	if ((error = loader_flash_md5(l, addr, (uint32_t)len, want)) != 0) {
		*cause = xstrdup(loader_cause(l));
		return (error);
	}
	memset(buf, 0xff, len);
	digest_md5_hex(buf, len, got);
	if (strcmp(want, got) == 0)
		return (0);
	if ((error = readflash(l, addr, buf, len, cause)) != 0)
		return (error);
	digest_md5_hex(buf, len, got);
	if (strcmp(want, got) != 0) {
		*cause = xasprintf("the %zu bytes read at 0x%x differ from the "
		    "flash (MD5 %s, read %s): damaged on the way; nothing was "
		    "written, try again", len, addr, want, got);
		return (-EIO);
	}
	return (0);
}
