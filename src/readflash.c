/*
 * Reading flash (readflash.h): the ROM's READ_FLASH_SLOW and the stub's
 * streamed READ_FLASH.  Both receive over the loader's own buffers, so
 * bytes that arrive with a reply are not lost to the next loader command.
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
#include "transport.h"
#include "util.h"

#define READFLASH_MAX_FRAMES	100	/* frames skipped per command */
#define READFLASH_PACKET	0x1000	/* stub packet, as esptool asks */
#define READFLASH_INFLIGHT	64	/* bytes: one packet at a time */

/* Next complete SLIP frame into dec before the deadline: length or -errno. */
static int
readflash_recv(struct loader *l, struct slip_dec *dec, uint64_t deadline)
{
	int	n;

	for (;;) {
		while (l->rx_off < l->rx_len) {
			if (slip_dec_byte(dec, l->rx[l->rx_off++]) ==
			    SLIP_FRAME)
				return ((int)dec->len);
		}
		n = xport_read(l->xp, l->rx, sizeof(l->rx), deadline);
		if (n < 0)
			return (n);
		l->rx_off = 0;
		l->rx_len = (size_t)n;
	}
}

/*
 * Send the request in l->tx (len bytes) and wait for the reply to op,
 * skipping other frames; the reply lands in resp, valid until the next
 * receive.  0, or -errno with *cause naming op and addr.
 */
static int
readflash_cmd(struct loader *l, uint8_t op, uint32_t addr, size_t len,
    struct proto_resp *resp, char **cause)
{
	const char	*name = proto_op_name(op);
	uint64_t	 deadline;
	size_t		 wlen;
	int		 error, i, got;

	deadline = util_now_ms() + l->default_ms;
	if (len == 0 ||
	    (wlen = slip_encode(l->wire, sizeof(l->wire), l->tx, len)) == 0) {
		*cause = xasprintf("%s: request too long", name);
		return (-EMSGSIZE);
	}
	if ((error = xport_write(l->xp, l->wire, wlen, deadline)) != 0)
		goto io;
	for (i = 0; i < READFLASH_MAX_FRAMES; i++) {
		if ((got = readflash_recv(l, &l->dec, deadline)) < 0) {
			error = got;
			goto io;
		}
		if (got < PROTO_HDR_LEN || l->frame[0] != 0x01 ||
		    l->frame[1] != op)
			continue;
		if (proto_parse_resp(l->frame, (size_t)got, l->status_len,
		    resp) != 0) {
			*cause = xasprintf("%s at 0x%x: malformed reply (%d "
			    "bytes)", name, addr, got);
			return (-EBADMSG);
		}
		if (resp->status == 0)
			return (0);
		l->last_op = op;
		l->last_status = resp->status;
		l->last_error = resp->error;
		*cause = xasprintf("%s at 0x%x: %s status 0x%02x %s", name,
		    addr, l->stub ? "stub" : "ROM", resp->error,
		    proto_err_text(resp->error));
		return (-EPROTO);
	}
	*cause = xasprintf("%s at 0x%x: no matching reply among %d frames",
	    name, addr, READFLASH_MAX_FRAMES);
	return (-EPROTO);
io:
	if (error == -ETIMEDOUT)
		*cause = xasprintf("%s at 0x%x: no reply within %u ms", name,
		    addr, l->default_ms);
	else if (error != -ECANCELED)
		*cause = xasprintf("%s at 0x%x: %s", name, addr,
		    strerror(-error));
	else
		*cause = xasprintf("cancelled while reading flash");
	return (error);
}

/* One READ_FLASH_SLOW of n <= 64 bytes at addr. */
static int
readflash_one(struct loader *l, uint32_t addr, uint8_t *buf, size_t n,
    char **cause)
{
	struct proto_resp	resp;
	size_t			len;
	int			error;

	len = proto_build_read_flash_slow(l->tx, sizeof(l->tx), addr,
	    (uint32_t)n);
	if ((error = readflash_cmd(l, PROTO_READ_FLASH_SLOW, addr, len,
	    &resp, cause)) != 0)
		return (error);
	if (resp.data_len < n) {
		*cause = xasprintf("READ_FLASH_SLOW at 0x%x: %zu bytes in the "
		    "reply, %zu asked", addr, resp.data_len, n);
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
	size_t			n;

	le32_put(args, addr);
	le32_put(args + 4, len);
	le32_put(args + 8, READFLASH_PACKET);
	le32_put(args + 12, READFLASH_INFLIGHT);
	n = proto_build(l->tx, sizeof(l->tx), PROTO_READ_FLASH, args,
	    sizeof(args), 0);
	return (readflash_cmd(l, PROTO_READ_FLASH, addr, n, &resp, cause));
}

/* Acknowledge got bytes: a raw frame holding the u32 count. */
static int
readflash_ack(struct loader *l, uint32_t got, uint64_t deadline)
{
	uint8_t	n[4], wire[SLIP_ENCODED_MAX(4)];
	size_t	wlen;

	le32_put(n, got);
	wlen = slip_encode(wire, sizeof(wire), n, sizeof(n));
	return (xport_write(l->xp, wire, wlen, deadline));
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
		if ((n = readflash_recv(l, &dec, util_now_ms() +
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
		if ((error = readflash_ack(l, got, util_now_ms() +
		    l->default_ms)) != 0)
			break;
	}
	if (error == 0 && (n = readflash_recv(l, &dec, util_now_ms() +
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
