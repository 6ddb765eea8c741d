/*
 * ESP serial bootloader commands (PROTOCOL.md sections 1 and 2): request
 * building and reply parsing with explicit little-endian fields.  Pure:
 * every buffer belongs to the caller; no I/O, no allocation, no globals.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "proto.h"
#include "util.h"

/* Name and plain-words explanation of one error code. */
struct proto_err_desc {
	uint8_t		 code;
	const char	*name;
	const char	*text;
};

static const struct proto_err_desc proto_errs[] = {
	/* ROM codes (second status byte). */
	{ 0x00, "UNDEFINED",
	    "the chip reported an undefined error; reset the unit and retry" },
	{ 0x01, "INVALID_PARAM",
	    "the chip rejected a command parameter (address or size out of "
	    "range for this chip or flash)" },
	{ 0x02, "MALLOC_FAILED",
	    "the chip ran out of memory in its bootloader; reset the unit and "
	    "retry" },
	{ 0x03, "SEND_FAILED",
	    "the chip could not send its answer; check the cable and retry" },
	{ 0x04, "RECV_FAILED",
	    "the chip could not receive the command; check the cable and "
	    "retry" },
	{ 0x05, "INVALID_MESSAGE",
	    "the chip did not understand the command (wrong mode or "
	    "unsupported command)" },
	{ 0x06, "COMMAND_FAILED",
	    "the chip understood the command but could not carry it out" },
	{ 0x07, "INVALID_CRC",
	    "checksum error: data was damaged on the way to the chip (cable, "
	    "hub or noise); retry" },
	{ 0x08, "FLASH_WRITE_ERR",
	    "flash write error: the data read back differs from what was "
	    "written (worn or faulty flash chip)" },
	{ 0x09, "FLASH_READ_ERR",
	    "flash read error: the chip could not read its flash (faulty "
	    "flash chip or wiring)" },
	{ 0x0A, "READ_LENGTH_ERR",
	    "flash read length error: the requested read is too long or past "
	    "the end of the flash" },
	{ 0x0B, "DEFLATE_ERROR",
	    "the chip could not unpack the compressed data (damaged on the "
	    "way); retry" },
	{ 0x0C, "ADLER32_ERROR",
	    "the unpacked data failed its integrity check (damaged on the "
	    "way); retry" },
	{ 0x0D, "DEFLATE_PARAM_ERR",
	    "the chip rejected the compression parameters of the upload" },
	{ 0x0E, "INVALID_RAM_SIZE",
	    "the program sent to the chip's RAM is too big for it" },
	{ 0x0F, "INVALID_RAM_ADDR",
	    "the program sent to the chip's RAM targets an address the chip "
	    "does not have" },
	{ 0x64, "INVALID_PARAMETER",
	    "the chip rejected a parameter (secure download command)" },
	{ 0x65, "INVALID_FORMAT",
	    "the chip rejected the data format (secure download command)" },
	{ 0x66, "DESCRIPTION_TOO_LONG",
	    "the chip rejected an over-long description (secure download "
	    "command)" },
	{ 0x67, "BAD_ENCODING_DESCRIPTION",
	    "the chip rejected an encoding description (secure download "
	    "command)" },
	{ 0x69, "INSUFFICIENT_STORAGE",
	    "the chip has no room left for the request (secure download "
	    "command)" },
	/* Flasher stub codes (first status byte). */
	{ 0xC0, "BAD_DATA_LEN",
	    "the flasher program on the chip got a block of the wrong length; "
	    "retry" },
	{ 0xC1, "BAD_DATA_CHECKSUM",
	    "checksum error: data was damaged on the way to the chip (cable, "
	    "hub or noise); retry" },
	{ 0xC2, "BAD_BLOCKSIZE",
	    "the flasher program on the chip rejected the block size" },
	{ 0xC3, "INVALID_COMMAND",
	    "the flasher program on the chip did not understand the command" },
	{ 0xC4, "FAILED_SPI_OP",
	    "a flash operation failed on the chip (faulty flash chip or "
	    "wiring)" },
	{ 0xC5, "FAILED_SPI_UNLOCK",
	    "the chip could not unlock its flash for writing (write-protected "
	    "or faulty flash chip)" },
	{ 0xC6, "NOT_IN_FLASH_MODE",
	    "the chip got flash data without a preceding begin command; "
	    "retry the whole write" },
	{ 0xC7, "INFLATE_ERROR",
	    "the chip could not unpack the compressed data (damaged on the "
	    "way); retry" },
	{ 0xC8, "NOT_ENOUGH_DATA",
	    "the chip received less data than announced (transfer cut "
	    "short); retry" },
	{ 0xC9, "TOO_MUCH_DATA",
	    "the chip received more data than announced; retry" },
	{ 0xCA, "NAND_PROGRAM_FAILED",
	    "writing the NAND flash failed (faulty flash chip)" },
	{ 0xCB, "NAND_ERASE_FAILED",
	    "erasing the NAND flash failed (faulty flash chip)" },
	{ 0xFF, "CMD_NOT_IMPLEMENTED",
	    "the flasher program on the chip does not implement this "
	    "command" },
};

/* Find the description of an error code; NULL if it is not known. */
static const struct proto_err_desc *
proto_err_find(uint8_t code)
{
	size_t	i;

	for (i = 0; i < nitems(proto_errs); i++) {
		if (proto_errs[i].code == code)
			return (&proto_errs[i]);
	}
	return (NULL);
}

/* XOR checksum of the data part of a _DATA command, seeded with 0xEF. */
uint32_t
proto_checksum(const uint8_t *p, size_t len)
{
	uint8_t	c = PROTO_CHECKSUM_SEED;
	size_t	i;

	for (i = 0; i < len; i++)
		c ^= p[i];
	return (c);
}

/* Header <BBHI> then data; 0 if it does not fit or is too long. */
size_t
proto_build(uint8_t *out, size_t cap, uint8_t op, const uint8_t *data,
    size_t len, uint32_t checksum)
{
	if (len > 0xffff || cap < PROTO_HDR_LEN || len > cap - PROTO_HDR_LEN)
		return (0);
	out[0] = 0x00;
	out[1] = op;
	le16_put(out + 2, (uint16_t)len);
	le32_put(out + 4, checksum);
	if (len != 0)
		memcpy(out + PROTO_HDR_LEN, data, len);
	return (PROTO_HDR_LEN + len);
}

/* A request whose data is n little-endian words. */
static size_t
proto_build_words(uint8_t *out, size_t cap, uint8_t op, const uint32_t *w,
    size_t n)
{
	uint8_t	data[6 * 4];
	size_t	i;

	if (n > nitems(data) / 4)
		return (0);
	for (i = 0; i < n; i++)
		le32_put(data + 4 * i, w[i]);
	return (proto_build(out, cap, op, data, 4 * n, 0));
}

/* SYNC: 07 07 12 20 followed by 32 bytes of 0x55. */
size_t
proto_build_sync(uint8_t *out, size_t cap)
{
	uint8_t	data[PROTO_SYNC_LEN];

	data[0] = 0x07;
	data[1] = 0x07;
	data[2] = 0x12;
	data[3] = 0x20;
	memset(data + 4, 0x55, sizeof(data) - 4);
	return (proto_build(out, cap, PROTO_SYNC, data, sizeof(data), 0));
}

/* READ_REG: one address; the answer comes back in the reply's value. */
size_t
proto_build_read_reg(uint8_t *out, size_t cap, uint32_t addr)
{
	return (proto_build_words(out, cap, PROTO_READ_REG, &addr, 1));
}

/* WRITE_REG: address, value, mask, delay in microseconds. */
size_t
proto_build_write_reg(uint8_t *out, size_t cap, uint32_t addr,
    uint32_t value, uint32_t mask, uint32_t delay_us)
{
	uint32_t	w[4];

	w[0] = addr;
	w[1] = value;
	w[2] = mask;
	w[3] = delay_us;
	return (proto_build_words(out, cap, PROTO_WRITE_REG, w, nitems(w)));
}

/* FLASH_BEGIN / FLASH_DEFL_BEGIN / MEM_BEGIN, with the optional 5th word. */
size_t
proto_build_begin(uint8_t *out, size_t cap, uint8_t op, uint32_t size,
    uint32_t blocks, uint32_t block_size, uint32_t offset, int enc_word)
{
	uint32_t	w[5];

	w[0] = size;
	w[1] = blocks;
	w[2] = block_size;
	w[3] = offset;
	w[4] = 0;	/* not encrypted */
	return (proto_build_words(out, cap, op, w, enc_word ? 5 : 4));
}

/* A _DATA command: length, sequence, two zero words, data; checksummed. */
size_t
proto_build_data(uint8_t *out, size_t cap, uint8_t op, uint32_t seq,
    const uint8_t *data, size_t len)
{
	size_t	total;

	if (len > 0xffff - PROTO_DATA_HDR_LEN)
		return (0);
	total = PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + len;
	if (cap < total)
		return (0);
	out[0] = 0x00;
	out[1] = op;
	le16_put(out + 2, (uint16_t)(PROTO_DATA_HDR_LEN + len));
	le32_put(out + 4, proto_checksum(data, len));
	le32_put(out + 8, (uint32_t)len);
	le32_put(out + 12, seq);
	le32_put(out + 16, 0);
	le32_put(out + 20, 0);
	if (len != 0)
		memcpy(out + PROTO_HDR_LEN + PROTO_DATA_HDR_LEN, data, len);
	return (total);
}

/* FLASH_END / FLASH_DEFL_END: flag 0 reboots, 1 stays (PROTOCOL.md 6.4). */
size_t
proto_build_end(uint8_t *out, size_t cap, uint8_t op, uint32_t flag)
{
	return (proto_build_words(out, cap, op, &flag, 1));
}

/* MEM_END: no_exec (1 = do not run) and the entry point. */
size_t
proto_build_mem_end(uint8_t *out, size_t cap, uint32_t no_exec,
    uint32_t entry)
{
	uint32_t	w[2];

	w[0] = no_exec;
	w[1] = entry;
	return (proto_build_words(out, cap, PROTO_MEM_END, w, nitems(w)));
}

/* SPI_ATTACH: the config word, plus 4 zero bytes when talking to the ROM. */
size_t
proto_build_spi_attach(uint8_t *out, size_t cap, uint32_t config, int rom)
{
	uint32_t	w[2];

	w[0] = config;
	w[1] = 0;
	return (proto_build_words(out, cap, PROTO_SPI_ATTACH, w, rom ? 2 : 1));
}

/* SPI_SET_PARAMS exactly as esptool sends it, only the size varies. */
size_t
proto_build_spi_set_params(uint8_t *out, size_t cap, uint32_t total_size)
{
	uint32_t	w[6];

	w[0] = 0;		/* flash id */
	w[1] = total_size;
	w[2] = 0x10000;		/* block */
	w[3] = 0x1000;		/* sector */
	w[4] = 0x100;		/* page */
	w[5] = 0xffff;		/* status mask */
	return (proto_build_words(out, cap, PROTO_SPI_SET_PARAMS, w,
	    nitems(w)));
}

/* CHANGE_BAUDRATE: new baud, old baud (0 for the ROM). */
size_t
proto_build_change_baud(uint8_t *out, size_t cap, uint32_t new_baud,
    uint32_t old_baud)
{
	uint32_t	w[2];

	w[0] = new_baud;
	w[1] = old_baud;
	return (proto_build_words(out, cap, PROTO_CHANGE_BAUDRATE, w,
	    nitems(w)));
}

/* SPI_FLASH_MD5: address, size, 0, 0. */
size_t
proto_build_md5(uint8_t *out, size_t cap, uint32_t addr, uint32_t size)
{
	uint32_t	w[4];

	w[0] = addr;
	w[1] = size;
	w[2] = 0;
	w[3] = 0;
	return (proto_build_words(out, cap, PROTO_SPI_FLASH_MD5, w,
	    nitems(w)));
}

/* READ_FLASH_SLOW: address and length (at most 64 per command). */
size_t
proto_build_read_flash_slow(uint8_t *out, size_t cap, uint32_t addr,
    uint32_t len)
{
	uint32_t	w[2];

	w[0] = addr;
	w[1] = len;
	return (proto_build_words(out, cap, PROTO_READ_FLASH_SLOW, w,
	    nitems(w)));
}

/* Split a request frame; its size field must match the data exactly. */
int
proto_parse_req(const uint8_t *p, size_t len, struct proto_req *req)
{
	if (len < PROTO_HDR_LEN || p[0] != 0x00)
		return (-EBADMSG);
	if (le16_get(p + 2) != len - PROTO_HDR_LEN)
		return (-EBADMSG);
	req->op = p[1];
	req->size = le16_get(p + 2);
	req->checksum = le32_get(p + 4);
	req->data = p + PROTO_HDR_LEN;
	return (0);
}

/*
 * Split a reply frame into value, payload and status.  ROMs put
 * [status 0/1, error] first; a stub puts its error code (0xC0...) in the
 * first byte, so any first byte other than 0 or 1 is also the error.
 */
int
proto_parse_resp(const uint8_t *p, size_t len, unsigned status_len,
    struct proto_resp *resp)
{
	size_t		size;
	const uint8_t	*st;

	if (status_len < 2 || len < PROTO_HDR_LEN || p[0] != 0x01)
		return (-EBADMSG);
	size = le16_get(p + 2);
	if (size != len - PROTO_HDR_LEN || size < status_len)
		return (-EBADMSG);
	resp->op = p[1];
	resp->value = le32_get(p + 4);
	resp->data = p + PROTO_HDR_LEN;
	resp->data_len = size - status_len;
	st = resp->data + resp->data_len;
	resp->status = st[0];
	resp->error = st[0] > 1 ? st[0] : st[1];
	return (0);
}

/* Build a reply as a chip would: header, payload, status bytes. */
size_t
proto_build_resp(uint8_t *out, size_t cap, uint8_t op, uint32_t value,
    const uint8_t *data, size_t len, unsigned status_len, uint8_t status,
    uint8_t error)
{
	size_t	size;

	if (status_len < 2 || len > 0xffff - status_len)
		return (0);
	size = len + status_len;
	if (cap < PROTO_HDR_LEN || size > cap - PROTO_HDR_LEN)
		return (0);
	out[0] = 0x01;
	out[1] = op;
	le16_put(out + 2, (uint16_t)size);
	le32_put(out + 4, value);
	if (len != 0)
		memcpy(out + PROTO_HDR_LEN, data, len);
	memset(out + PROTO_HDR_LEN + len, 0, status_len);
	out[PROTO_HDR_LEN + len] = status;
	out[PROTO_HDR_LEN + len + 1] = error;
	return (PROTO_HDR_LEN + size);
}

/* Name of an opcode as esptool spells it; "UNKNOWN" otherwise. */
const char *
proto_op_name(uint8_t op)
{
	switch (op) {
	case PROTO_FLASH_BEGIN:
		return ("FLASH_BEGIN");
	case PROTO_FLASH_DATA:
		return ("FLASH_DATA");
	case PROTO_FLASH_END:
		return ("FLASH_END");
	case PROTO_MEM_BEGIN:
		return ("MEM_BEGIN");
	case PROTO_MEM_END:
		return ("MEM_END");
	case PROTO_MEM_DATA:
		return ("MEM_DATA");
	case PROTO_SYNC:
		return ("SYNC");
	case PROTO_WRITE_REG:
		return ("WRITE_REG");
	case PROTO_READ_REG:
		return ("READ_REG");
	case PROTO_SPI_SET_PARAMS:
		return ("SPI_SET_PARAMS");
	case PROTO_SPI_ATTACH:
		return ("SPI_ATTACH");
	case PROTO_READ_FLASH_SLOW:
		return ("READ_FLASH_SLOW");
	case PROTO_CHANGE_BAUDRATE:
		return ("CHANGE_BAUDRATE");
	case PROTO_FLASH_DEFL_BEGIN:
		return ("FLASH_DEFL_BEGIN");
	case PROTO_FLASH_DEFL_DATA:
		return ("FLASH_DEFL_DATA");
	case PROTO_FLASH_DEFL_END:
		return ("FLASH_DEFL_END");
	case PROTO_SPI_FLASH_MD5:
		return ("SPI_FLASH_MD5");
	case PROTO_GET_SECURITY_INFO:
		return ("GET_SECURITY_INFO");
	case PROTO_ERASE_FLASH:
		return ("ERASE_FLASH");
	case PROTO_ERASE_REGION:
		return ("ERASE_REGION");
	case PROTO_READ_FLASH:
		return ("READ_FLASH");
	case PROTO_RUN_USER_CODE:
		return ("RUN_USER_CODE");
	}
	return ("UNKNOWN");
}

/* Short name of a ROM or stub error code; "UNKNOWN" otherwise. */
const char *
proto_err_name(uint8_t code)
{
	const struct proto_err_desc	*e;

	if ((e = proto_err_find(code)) == NULL)
		return ("UNKNOWN");
	return (e->name);
}

/* What an error code means, in words a technician can act on. */
const char *
proto_err_text(uint8_t code)
{
	const struct proto_err_desc	*e;

	if ((e = proto_err_find(code)) == NULL)
		return ("the chip reported an error code this program does not "
		    "know; reset the unit and retry");
	return (e->text);
}
