/*
 * ESP serial bootloader commands (PROTOCOL.md sections 1-2): building
 * requests and parsing replies with explicit little-endian fields.  Pure:
 * the caller supplies every buffer; nothing here does I/O or allocates.
 */
#ifndef ESPF_PROTO_H
#define ESPF_PROTO_H

#include <stddef.h>
#include <stdint.h>

enum proto_op {
	PROTO_FLASH_BEGIN = 0x02,
	PROTO_FLASH_DATA = 0x03,
	PROTO_FLASH_END = 0x04,
	PROTO_MEM_BEGIN = 0x05,
	PROTO_MEM_END = 0x06,
	PROTO_MEM_DATA = 0x07,
	PROTO_SYNC = 0x08,
	PROTO_WRITE_REG = 0x09,
	PROTO_READ_REG = 0x0A,
	PROTO_SPI_SET_PARAMS = 0x0B,
	PROTO_SPI_ATTACH = 0x0D,
	PROTO_READ_FLASH_SLOW = 0x0E,
	PROTO_CHANGE_BAUDRATE = 0x0F,
	PROTO_FLASH_DEFL_BEGIN = 0x10,
	PROTO_FLASH_DEFL_DATA = 0x11,
	PROTO_FLASH_DEFL_END = 0x12,
	PROTO_SPI_FLASH_MD5 = 0x13,
	PROTO_GET_SECURITY_INFO = 0x14,
	PROTO_ERASE_FLASH = 0xD0,	/* stub only */
	PROTO_ERASE_REGION = 0xD1,	/* stub only */
	PROTO_READ_FLASH = 0xD2,	/* stub only */
	PROTO_RUN_USER_CODE = 0xD3,	/* stub only */
};

/* ROM error codes (second status byte). */
enum proto_err {
	PROTO_E_UNDEFINED = 0x00,
	PROTO_E_PARAM = 0x01,
	PROTO_E_MALLOC = 0x02,
	PROTO_E_SEND = 0x03,
	PROTO_E_RECV = 0x04,
	PROTO_E_INVALID_MSG = 0x05,
	PROTO_E_FAILED = 0x06,
	PROTO_E_CRC = 0x07,
	PROTO_E_FLASH_WRITE = 0x08,
	PROTO_E_FLASH_READ = 0x09,
	PROTO_E_READ_LEN = 0x0A,
	PROTO_E_DEFLATE = 0x0B,
	PROTO_E_ADLER = 0x0C,
	PROTO_E_DEFLATE_PARAM = 0x0D,
	PROTO_E_RAM_SIZE = 0x0E,
	PROTO_E_RAM_ADDR = 0x0F,
};

#define PROTO_HDR_LEN		8	/* direction, op, size, checksum/value */
#define PROTO_DATA_HDR_LEN	16	/* _DATA: len, seq, 0, 0 */
#define PROTO_SYNC_LEN		36
#define PROTO_SYNC_REPLIES	8	/* the ROM answers one SYNC 8 times */
#define PROTO_SYNC_VALUE	0x20120707u /* value of a ROM SYNC reply */
#define PROTO_CHECKSUM_SEED	0xEF
#define PROTO_ROM_STATUS_LEN	4
#define PROTO_STUB_STATUS_LEN	2
#define PROTO_ROM_BLOCK		0x400	/* FLASH_(DEFL_)DATA block to the ROM */
#define PROTO_READ_SLOW_BLOCK	64
#define PROTO_MD5_HEX_LEN	32
#define PROTO_SECINFO_S2_LEN	12
/* Largest request a flasher sends: header, _DATA header, 16 KiB block. */
#define PROTO_MAX_REQ		(PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + 0x4000)

/* A parsed request (what the emulator receives). */
struct proto_req {
	uint8_t		 op;
	uint16_t	 size;		/* length of data */
	uint32_t	 checksum;
	const uint8_t	*data;		/* points into the frame */
};

/* A parsed reply (what a flasher receives). */
struct proto_resp {
	uint8_t		 op;
	uint32_t	 value;
	const uint8_t	*data;		/* payload before the status bytes */
	size_t		 data_len;
	uint8_t		 status;	/* 0 ok, else failed */
	uint8_t		 error;		/* ROM/stub error code */
};

/* Checksum of the data part of a _DATA command (seed 0xEF, XOR). */
uint32_t	proto_checksum(const uint8_t *, size_t);

/* Generic request: header + data.  Returns length, 0 if cap is short. */
size_t	proto_build(uint8_t *out, size_t cap, uint8_t op, const uint8_t *data,
	    size_t len, uint32_t checksum);
size_t	proto_build_sync(uint8_t *out, size_t cap);
size_t	proto_build_read_reg(uint8_t *out, size_t cap, uint32_t addr);
size_t	proto_build_write_reg(uint8_t *out, size_t cap, uint32_t addr,
	    uint32_t value, uint32_t mask, uint32_t delay_us);
/* FLASH_BEGIN, FLASH_DEFL_BEGIN, MEM_BEGIN; enc_word adds the 5th word. */
size_t	proto_build_begin(uint8_t *out, size_t cap, uint8_t op, uint32_t size,
	    uint32_t blocks, uint32_t block_size, uint32_t offset, int enc_word);
/* FLASH_DATA, FLASH_DEFL_DATA, MEM_DATA with checksum filled in. */
size_t	proto_build_data(uint8_t *out, size_t cap, uint8_t op, uint32_t seq,
	    const uint8_t *data, size_t len);
/* FLASH_END, FLASH_DEFL_END (flag: 0 reboot, 1 stay/run). */
size_t	proto_build_end(uint8_t *out, size_t cap, uint8_t op, uint32_t flag);
size_t	proto_build_mem_end(uint8_t *out, size_t cap, uint32_t no_exec,
	    uint32_t entry);
size_t	proto_build_spi_attach(uint8_t *out, size_t cap, uint32_t config,
	    int rom);
size_t	proto_build_spi_set_params(uint8_t *out, size_t cap,
	    uint32_t total_size);
size_t	proto_build_change_baud(uint8_t *out, size_t cap, uint32_t new_baud,
	    uint32_t old_baud);
size_t	proto_build_md5(uint8_t *out, size_t cap, uint32_t addr, uint32_t size);
size_t	proto_build_read_flash_slow(uint8_t *out, size_t cap, uint32_t addr,
	    uint32_t len);

/* Parse a request frame (SLIP already removed).  0 or -EBADMSG. */
int	proto_parse_req(const uint8_t *, size_t, struct proto_req *);
/*
 * Parse a reply frame with status_len status bytes (4 ROM, 2 stub).
 * 0, or -EBADMSG when it is not a well-formed reply.
 */
int	proto_parse_resp(const uint8_t *, size_t, unsigned status_len,
	    struct proto_resp *);
/*
 * Build a reply (emulator side): header, payload, then status_len status
 * bytes [status, error, 0, 0].  Returns length, 0 if cap is short.
 */
size_t	proto_build_resp(uint8_t *out, size_t cap, uint8_t op, uint32_t value,
	    const uint8_t *data, size_t len, unsigned status_len,
	    uint8_t status, uint8_t error);

/* "FLASH_DEFL_DATA", or "UNKNOWN" for an op not in the enum. */
const char	*proto_op_name(uint8_t op);
/* Short name of a ROM or stub error code: "INVALID_CRC". */
const char	*proto_err_name(uint8_t code);
/* Plain words for a technician: "checksum error: data damaged on the way". */
const char	*proto_err_text(uint8_t code);

#endif
