/*
 * Request building and reply parsing against golden bytes: the wire
 * traces quoted in PROTOCOL.md sections 1.3 and 3.1, and field layouts
 * worked out by hand from section 2.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"
#include "slip.h"
#include "tap.h"

/* Compare a built frame with the expected bytes, explaining a mismatch. */
static void
test_bytes(const uint8_t *got, size_t gotlen, const uint8_t *want,
    size_t wantlen, const char *what)
{
	size_t	i;

	if (tap_ok(gotlen == wantlen && memcmp(got, want, wantlen) == 0,
	    "%s", what))
		return;
	tap_diag("  length got %zu, want %zu", gotlen, wantlen);
	for (i = 0; i < gotlen && i < wantlen; i++) {
		if (got[i] != want[i]) {
			tap_diag("  first difference at %zu: %02x != %02x", i,
			    got[i], want[i]);
			break;
		}
	}
}

/* SYNC: the 46-byte wire frame of section 3.1. */
static void
test_sync(void)
{
	uint8_t	req[64], wire[128], want[46];
	size_t	n, w;

	want[0] = 0xC0;
	want[1] = 0x00;
	want[2] = 0x08;
	want[3] = 0x24;
	want[4] = 0x00;
	memset(want + 5, 0, 4);
	want[9] = 0x07;
	want[10] = 0x07;
	want[11] = 0x12;
	want[12] = 0x20;
	memset(want + 13, 0x55, 32);
	want[45] = 0xC0;

	n = proto_build_sync(req, sizeof(req));
	is_int(n, 44, "SYNC request is 8 + 36 bytes");
	w = slip_encode(wire, sizeof(wire), req, n);
	test_bytes(wire, w, want, sizeof(want),
	    "SYNC wire frame c0 00 08 24 00 00000000 07071220 55x32 c0");
	is_int(proto_build_sync(req, 43), 0, "SYNC with cap 43: 0");
}

/* Parse one hex-described reply and check every field. */
static void
test_reply(const uint8_t *p, size_t len, unsigned st, uint8_t op,
    uint32_t value, size_t data_len, uint8_t status, uint8_t error,
    const char *what)
{
	struct proto_resp	r;
	int			rc;

	memset(&r, 0xAA, sizeof(r));
	rc = proto_parse_resp(p, len, st, &r);
	tap_ok(rc == 0 && r.op == op && r.value == value &&
	    r.data_len == data_len && r.status == status &&
	    r.error == error && r.data == p + 8, "%s", what);
	if (rc != 0)
		tap_diag("  rc %d", rc);
	else
		tap_diag("  op %02x value %08x data_len %zu status %02x "
		    "error %02x", r.op, r.value, r.data_len, r.status,
		    r.error);
}

/* The real ROM replies quoted in section 1.3. */
static void
test_real_replies(void)
{
	static const uint8_t esp32_sync[] = { 0x01, 0x08, 0x04, 0x00, 0x07,
	    0x07, 0x12, 0x20, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t s2_usb_sync[] = { 0x01, 0x08, 0x04, 0x00, 0x07,
	    0x07, 0x12, 0x20, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t e8266_sync[] = { 0x01, 0x08, 0x02, 0x00, 0x07,
	    0x07, 0x12, 0x20, 0x00, 0x00 };
	static const uint8_t esp32_read_reg[] = { 0x01, 0x0a, 0x04, 0x00,
	    0x00, 0xa0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t s2_mem_end[] = { 0x01, 0x06, 0x04, 0x00, 0xad,
	    0x0b, 0xd0, 0xba, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t docs_read_reg[] = { 0x01, 0x0a, 0x02, 0x00, 0x09,
	    0x00, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t flash_read_err[] = { 0x01, 0x0e, 0x04, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x01, 0x09, 0x00, 0x00 };

	test_reply(esp32_sync, sizeof(esp32_sync), 4, PROTO_SYNC,
	    PROTO_SYNC_VALUE, 0, 0, 0,
	    "ESP32 ROM SYNC reply 01 08 0400 07071220 00000000");
	test_reply(s2_usb_sync, sizeof(s2_usb_sync), 4, PROTO_SYNC,
	    0x20120707, 0, 0, 0, "ESP32-S2 ROM USB SYNC reply");
	test_reply(e8266_sync, sizeof(e8266_sync), 2, PROTO_SYNC,
	    0x20120707, 0, 0, 0, "ESP8266 ROM SYNC reply, 2 status bytes");
	test_reply(esp32_read_reg, sizeof(esp32_read_reg), 4, PROTO_READ_REG,
	    0x0000a000, 0, 0, 0, "ESP32 ROM READ_REG reply value 0xa000");
	test_reply(s2_mem_end, sizeof(s2_mem_end), 4, PROTO_MEM_END,
	    0xBAD00BAD, 0, 0, 0, "S2 ROM MEM_END reply value 0xBAD00BAD");
	test_reply(docs_read_reg, sizeof(docs_read_reg), 2, PROTO_READ_REG,
	    9, 0, 0, 0, "docs READ_REG reply 010a0200 09000000 0000");
	test_reply(flash_read_err, sizeof(flash_read_err), 4,
	    PROTO_READ_FLASH_SLOW, 0, 0, 1, PROTO_E_FLASH_READ,
	    "status bytes 01 09 00 00: failed, FLASH_READ_ERR");
	is_str(proto_err_name(PROTO_E_FLASH_READ), "FLASH_READ_ERR",
	    "0x09 is FLASH_READ_ERR");
}

/* Replies with payload, stub status, and malformed replies. */
static void
test_reply_shapes(void)
{
	uint8_t			buf[64];
	static const uint8_t	md5_hex[] = "0123456789abcdef0123456789abcdef";
	static const uint8_t	stub_crc[] = { 0x01, 0x03, 0x02, 0x00, 0x00,
				    0x00, 0x00, 0x00, 0xC1, 0x00 };
	static const uint8_t	good[] = { 0x01, 0x08, 0x04, 0x00, 0x07,
				    0x07, 0x12, 0x20, 0x00, 0x00, 0x00, 0x00 };
	struct proto_resp	r;
	size_t			n;

	n = proto_build_resp(buf, sizeof(buf), PROTO_SPI_FLASH_MD5, 0,
	    md5_hex, 32, PROTO_ROM_STATUS_LEN, 0, 0);
	is_int(n, 44, "ROM MD5 reply frame is 44 bytes");
	tap_ok(n == 44 && buf[0] == 0x01 && buf[1] == 0x13 && buf[2] == 36 &&
	    buf[3] == 0 && memcmp(buf + 8, md5_hex, 32) == 0 &&
	    buf[40] == 0 && buf[41] == 0 && buf[42] == 0 && buf[43] == 0,
	    "ROM MD5 reply: size 36, hex, then 00 00 00 00");
	tap_ok(proto_parse_resp(buf, n, 4, &r) == 0 && r.data_len == 32 &&
	    memcmp(r.data, md5_hex, 32) == 0 && r.status == 0,
	    "payload before the status bytes is exposed");

	n = proto_build_resp(buf, sizeof(buf), PROTO_FLASH_DATA, 0, NULL, 0,
	    PROTO_ROM_STATUS_LEN, 1, PROTO_E_CRC);
	tap_ok(n == 12 && buf[8] == 1 && buf[9] == 7 && buf[10] == 0 &&
	    buf[11] == 0, "ROM checksum error reply ends 01 07 00 00");
	n = proto_build_resp(buf, sizeof(buf), PROTO_FLASH_DATA, 0, NULL, 0,
	    PROTO_STUB_STATUS_LEN, 0xC1, 0);
	test_bytes(buf, n, stub_crc, sizeof(stub_crc),
	    "stub checksum error reply 01 03 0200 00000000 c1 00");
	test_reply(stub_crc, sizeof(stub_crc), 2, PROTO_FLASH_DATA, 0, 0,
	    0xC1, 0xC1, "stub status C1 00: failed with code 0xC1");
	is_int(proto_build_resp(buf, 11, PROTO_SYNC, 1, NULL, 0, 4, 0, 0), 0,
	    "build_resp with cap short by one: 0");

	memcpy(buf, good, sizeof(good));
	buf[0] = 0x00;
	is_int(proto_parse_resp(buf, sizeof(good), 4, &r), -EBADMSG,
	    "direction 0 is not a reply");
	is_int(proto_parse_resp(good, 7, 4, &r), -EBADMSG,
	    "7-byte frame rejected");
	is_int(proto_parse_resp(good, sizeof(good) - 1, 4, &r), -EBADMSG,
	    "size field 4 with 3 bytes after header rejected");
	memcpy(buf, good, sizeof(good));
	buf[12] = 0;
	is_int(proto_parse_resp(buf, sizeof(good) + 1, 4, &r), -EBADMSG,
	    "size field 4 with 5 bytes after header rejected");
	is_int(proto_parse_resp(stub_crc, sizeof(stub_crc), 4, &r), -EBADMSG,
	    "size 2 shorter than 4 status bytes rejected");
	is_int(proto_parse_resp(good, 8, 4, &r), -EBADMSG,
	    "bare header, size 4, rejected");
}

/* The checksum: seed 0xEF, XOR of the data only. */
static void
test_checksum(void)
{
	uint8_t	ff[0x400];

	memset(ff, 0xFF, sizeof(ff));
	is_int(proto_checksum(NULL, 0), 0xEF, "empty data: 0xEF");
	is_int(proto_checksum((const uint8_t *)"\x01", 1), 0xEE, "01: 0xEE");
	is_int(proto_checksum((const uint8_t *)"\xEF", 1), 0x00, "EF: 0x00");
	is_int(proto_checksum((const uint8_t *)"hello", 5), 0x8D,
	    "\"hello\": 0x8D");
	is_int(proto_checksum(ff, sizeof(ff)), 0xEF, "0x400 x FF: 0xEF");
	is_int(proto_checksum(ff, 3), 0x10, "3 x FF: 0x10");
}

/* FLASH_BEGIN with 16 (ESP32 ROM) and 20 bytes (S2 ROM, stub). */
static void
test_begin(void)
{
	static const uint8_t want16[] = { 0x00, 0x02, 0x10, 0x00, 0, 0, 0, 0,
	    0x00, 0x40, 0x01, 0x00,	/* size 0x14000 */
	    0x50, 0x00, 0x00, 0x00,	/* 80 blocks */
	    0x00, 0x04, 0x00, 0x00,	/* block 0x400 */
	    0x00, 0x00, 0x01, 0x00 };	/* offset 0x10000 */
	uint8_t		buf[64], want20[28];
	size_t		n;

	n = proto_build_begin(buf, sizeof(buf), PROTO_FLASH_BEGIN, 0x14000,
	    80, 0x400, 0x10000, 0);
	test_bytes(buf, n, want16, sizeof(want16), "FLASH_BEGIN, 16 bytes");
	memcpy(want20, want16, sizeof(want16));
	want20[2] = 0x14;
	memset(want20 + 24, 0, 4);
	n = proto_build_begin(buf, sizeof(buf), PROTO_FLASH_BEGIN, 0x14000,
	    80, 0x400, 0x10000, 1);
	test_bytes(buf, n, want20, sizeof(want20),
	    "FLASH_BEGIN with encrypted word 0, 20 bytes");
	n = proto_build_begin(buf, sizeof(buf), PROTO_FLASH_DEFL_BEGIN,
	    0x14000, 80, 0x400, 0x10000, 1);
	tap_ok(n == 28 && buf[1] == 0x10, "FLASH_DEFL_BEGIN opcode 0x10");
	is_int(proto_build_begin(buf, 27, PROTO_FLASH_BEGIN, 0, 0, 0, 0, 1),
	    0, "20-byte BEGIN into 27 bytes: 0");
}

/* _DATA commands: header, len/seq/0/0, data; checksum of data only. */
static void
test_data(void)
{
	static const uint8_t payload[] = { 0x78, 0xDA, 0xC0, 0xDB };
	static const uint8_t want[] = { 0x00, 0x11, 0x14, 0x00,
	    0x56, 0x00, 0x00, 0x00,	/* EF^78^DA^C0^DB = 56 */
	    0x04, 0x00, 0x00, 0x00,	/* len 4 */
	    0x07, 0x00, 0x00, 0x00,	/* seq 7 */
	    0, 0, 0, 0, 0, 0, 0, 0,
	    0x78, 0xDA, 0xC0, 0xDB };
	uint8_t		 buf[PROTO_MAX_REQ];
	uint8_t		 big[0x4000];
	struct proto_req req;
	size_t		 n;

	n = proto_build_data(buf, sizeof(buf), PROTO_FLASH_DEFL_DATA, 7,
	    payload, sizeof(payload));
	test_bytes(buf, n, want, sizeof(want),
	    "FLASH_DEFL_DATA seq 7: size 0x14, checksum 0x56, _DATA header");
	tap_ok(proto_parse_req(buf, n, &req) == 0 &&
	    req.op == PROTO_FLASH_DEFL_DATA && req.size == 20 &&
	    req.checksum == 0x56 && req.data == buf + 8,
	    "the emulator parses it back");

	memset(big, 0xA5, sizeof(big));
	n = proto_build_data(buf, sizeof(buf), PROTO_FLASH_DATA, 0, big,
	    sizeof(big));
	is_int(n, PROTO_MAX_REQ, "16 KiB block fills PROTO_MAX_REQ");
	is_int(proto_build_data(buf, sizeof(buf) - 1, PROTO_FLASH_DATA, 0,
	    big, sizeof(big)), 0, "one byte short: 0");
}

/* The small fixed-layout commands. */
static void
test_small_commands(void)
{
	static const uint8_t read_reg[] = { 0x00, 0x0A, 0x04, 0x00, 0, 0, 0,
	    0, 0x00, 0x10, 0x00, 0x40 };
	static const uint8_t write_reg[] = { 0x00, 0x09, 0x10, 0x00, 0, 0, 0,
	    0, 0xAC, 0x80, 0x40, 0x3F, 0xA1, 0x3A, 0xD8, 0x50,
	    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t attach_rom[] = { 0x00, 0x0D, 0x08, 0x00, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t attach_stub[] = { 0x00, 0x0D, 0x04, 0x00, 0, 0,
	    0, 0, 0x01, 0, 0, 0 };
	static const uint8_t set_params[] = { 0x00, 0x0B, 0x18, 0x00, 0, 0, 0,
	    0, 0, 0, 0, 0, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x01, 0x00,
	    0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00,
	    0x00 };
	static const uint8_t md5[] = { 0x00, 0x13, 0x10, 0x00, 0, 0, 0, 0,
	    0x00, 0x00, 0x01, 0x00, 0x34, 0x12, 0x00, 0x00, 0, 0, 0, 0,
	    0, 0, 0, 0 };
	static const uint8_t slow[] = { 0x00, 0x0E, 0x08, 0x00, 0, 0, 0, 0,
	    0x00, 0x10, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00 };
	static const uint8_t baud[] = { 0x00, 0x0F, 0x08, 0x00, 0, 0, 0, 0,
	    0x00, 0x08, 0x07, 0x00, 0x00, 0xC2, 0x01, 0x00 };
	static const uint8_t mem_end[] = { 0x00, 0x06, 0x08, 0x00, 0, 0, 0, 0,
	    0x00, 0x00, 0x00, 0x00, 0xAC, 0x88, 0x02, 0x40 };
	static const uint8_t end[] = { 0x00, 0x12, 0x04, 0x00, 0, 0, 0, 0,
	    0x01, 0x00, 0x00, 0x00 };
	uint8_t	buf[64];
	size_t	n;

	n = proto_build_read_reg(buf, sizeof(buf), 0x40001000);
	test_bytes(buf, n, read_reg, sizeof(read_reg), "READ_REG 0x40001000");
	n = proto_build_write_reg(buf, sizeof(buf), 0x3F4080AC, 0x50D83AA1,
	    0xFFFFFFFF, 0);
	test_bytes(buf, n, write_reg, sizeof(write_reg),
	    "WRITE_REG WDTWPROTECT unlock");
	n = proto_build_spi_attach(buf, sizeof(buf), 0, 1);
	test_bytes(buf, n, attach_rom, sizeof(attach_rom),
	    "SPI_ATTACH to ROM: 8 bytes");
	n = proto_build_spi_attach(buf, sizeof(buf), 1, 0);
	test_bytes(buf, n, attach_stub, sizeof(attach_stub),
	    "SPI_ATTACH to stub: 4 bytes");
	n = proto_build_spi_set_params(buf, sizeof(buf), 4 * 1024 * 1024);
	test_bytes(buf, n, set_params, sizeof(set_params),
	    "SPI_SET_PARAMS 0, 4 MiB, 0x10000, 0x1000, 0x100, 0xFFFF");
	n = proto_build_md5(buf, sizeof(buf), 0x10000, 0x1234);
	test_bytes(buf, n, md5, sizeof(md5), "SPI_FLASH_MD5 addr, size, 0, 0");
	n = proto_build_read_flash_slow(buf, sizeof(buf), 0x1000, 64);
	test_bytes(buf, n, slow, sizeof(slow), "READ_FLASH_SLOW 0x1000, 64");
	n = proto_build_change_baud(buf, sizeof(buf), 460800, 115200);
	test_bytes(buf, n, baud, sizeof(baud),
	    "CHANGE_BAUDRATE 460800, 115200");
	n = proto_build_mem_end(buf, sizeof(buf), 0, 0x400288AC);
	test_bytes(buf, n, mem_end, sizeof(mem_end), "MEM_END 0, stub entry");
	n = proto_build_end(buf, sizeof(buf), PROTO_FLASH_DEFL_END, 1);
	test_bytes(buf, n, end, sizeof(end), "FLASH_DEFL_END 1 (stay)");
}

/* Request parsing as the emulator does it. */
static void
test_parse_req(void)
{
	uint8_t			buf[64];
	struct proto_req	req;
	size_t			n;

	n = proto_build_read_reg(buf, sizeof(buf), 0x3FFFFD14);
	tap_ok(proto_parse_req(buf, n, &req) == 0 &&
	    req.op == PROTO_READ_REG && req.size == 4 && req.checksum == 0 &&
	    req.data == buf + 8 && req.data[3] == 0x3F,
	    "READ_REG request parsed");
	is_int(proto_parse_req(buf, 7, &req), -EBADMSG, "7 bytes rejected");
	is_int(proto_parse_req(buf, n - 1, &req), -EBADMSG,
	    "size 4 with 3 data bytes rejected");
	is_int(proto_parse_req(buf, n + 1, &req), -EBADMSG,
	    "size 4 with 5 data bytes rejected");
	buf[0] = 0x01;
	is_int(proto_parse_req(buf, n, &req), -EBADMSG,
	    "direction 1 is not a request");
	n = proto_build(buf, sizeof(buf), PROTO_ERASE_FLASH, NULL, 0, 0);
	tap_ok(n == 8 && proto_parse_req(buf, n, &req) == 0 &&
	    req.size == 0 && req.op == 0xD0, "ERASE_FLASH with no data");
}

/* Every opcode has a name; every ROM and stub code a name and a text. */
static void
test_names(void)
{
	static const uint8_t ops[] = { 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	    0x08, 0x09, 0x0A, 0x0B, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13,
	    0x14, 0xD0, 0xD1, 0xD2, 0xD3 };
	static const uint8_t stub[] = { 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5,
	    0xC6, 0xC7, 0xC8, 0xC9, 0xFF };
	size_t	i;
	int	bad = 0;

	for (i = 0; i < sizeof(ops); i++) {
		if (strcmp(proto_op_name(ops[i]), "UNKNOWN") == 0) {
			tap_diag("  op 0x%02x has no name", ops[i]);
			bad++;
		}
	}
	is_int(bad, 0, "all 22 opcodes have names");
	is_str(proto_op_name(PROTO_FLASH_DEFL_DATA), "FLASH_DEFL_DATA",
	    "0x11 FLASH_DEFL_DATA");
	is_str(proto_op_name(PROTO_SPI_FLASH_MD5), "SPI_FLASH_MD5",
	    "0x13 SPI_FLASH_MD5");
	is_str(proto_op_name(0x0C), "UNKNOWN", "0x0C is unknown");
	is_str(proto_op_name(0x42), "UNKNOWN", "0x42 is unknown");

	bad = 0;
	for (i = 0; i <= 0x0F; i++) {
		if (strcmp(proto_err_name((uint8_t)i), "UNKNOWN") == 0 ||
		    strlen(proto_err_text((uint8_t)i)) < 20) {
			tap_diag("  ROM code 0x%02zx lacks name or text", i);
			bad++;
		}
	}
	is_int(bad, 0, "ROM codes 0x00-0x0F have names and texts");
	bad = 0;
	for (i = 0; i < sizeof(stub); i++) {
		if (strcmp(proto_err_name(stub[i]), "UNKNOWN") == 0 ||
		    strlen(proto_err_text(stub[i])) < 20) {
			tap_diag("  stub code 0x%02x lacks name or text",
			    stub[i]);
			bad++;
		}
	}
	is_int(bad, 0, "stub codes 0xC0-0xC9, 0xFF have names and texts");
	is_str(proto_err_name(0x07), "INVALID_CRC", "0x07 INVALID_CRC");
	is_str(proto_err_name(0x05), "INVALID_MESSAGE", "0x05 INVALID_MESSAGE");
	is_str(proto_err_name(0xC1), "BAD_DATA_CHECKSUM",
	    "0xC1 BAD_DATA_CHECKSUM");
	tap_ok(strstr(proto_err_text(0x07), "cable") != NULL,
	    "0x07 text points at the cable");
	tap_ok(strstr(proto_err_text(0x08), "flash chip") != NULL,
	    "0x08 text points at the flash chip");
	tap_ok(strstr(proto_err_text(0x05), "did not understand") != NULL,
	    "0x05 text says the chip did not understand");
	is_str(proto_err_name(0x42), "UNKNOWN", "0x42 error is unknown");
	tap_ok(proto_err_text(0x42) != NULL && *proto_err_text(0x42) != '\0',
	    "unknown error still has a text");
}

/* Run every proto test. */
int
main(void)
{
	test_sync();
	test_real_replies();
	test_reply_shapes();
	test_checksum();
	test_begin();
	test_data();
	test_small_commands();
	test_parse_req();
	test_names();
	return (tap_done());
}
