/*
 * The ROM loader's commands (PROTOCOL.md sections 2-6): SYNC, registers,
 * FLASH_* and FLASH_DEFL_* writes, MEM_* uploads, SPI setup, MD5, slow
 * reads, baud rate and security info, each answered with the ROM's
 * status bytes and error codes.  Apart from emu.c, which frames requests
 * and queues replies; the stub (emu-stub.c) reuses some of these.
 */
#include "config.h"

#include <string.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "emu.h"
#include "proto.h"
#include "util.h"
#include "emu-private.h"

/* Address ranges a MEM_BEGIN may load into. */
struct emu_rom_range {
	uint32_t	start;
	uint32_t	end;		/* exclusive */
};

static const struct emu_rom_range emu_rom_ram_s2[] = {
	{ 0x3FF9E000, 0x3FFA0000 },	/* RTC fast, data bus */
	{ 0x3FFB0000, 0x40000000 },	/* internal SRAM, data bus */
	{ 0x40020000, 0x40072000 },	/* internal SRAM + RTC fast, instr. */
	{ 0x50000000, 0x50002000 },	/* RTC slow */
};

static const struct emu_rom_range emu_rom_ram_esp32[] = {
	{ 0x3FF80000, 0x3FF82000 },	/* RTC fast, data bus */
	{ 0x3FFAE000, 0x40000000 },	/* internal SRAM, data bus */
	{ 0x40070000, 0x400C2000 },	/* internal SRAM + RTC fast, instr. */
	{ 0x50000000, 0x50002000 },	/* RTC slow */
};

/* SYNC: eight identical replies carrying 0x20120707. */
static void
emu_rom_sync(struct emu *e, const struct proto_req *rq)
{
	int	i;

	if (rq->size != PROTO_SYNC_LEN || le32_get(rq->data) != 0x20120707)
		goto ignore;
	for (i = 4; i < PROTO_SYNC_LEN; i++)
		if (rq->data[i] != 0x55)
			goto ignore;
	e->last_value = PROTO_SYNC_VALUE;
	for (i = 0; i < PROTO_SYNC_REPLIES; i++)
		emu_ok(e, rq->op, NULL, 0);
	return;
ignore:
	/* Not a sync pattern: the ROM's matcher does not answer. */
	e->st.dropped++;
}

/* READ_REG: the value comes back in the header's value field. */
void
emu_rom_read_reg(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->last_value = emu_reg_read(e, le32_get(rq->data));
	emu_ok(e, rq->op, NULL, 0);
}

/* WRITE_REG: one or more (addr, value, mask, delay_us) entries. */
void
emu_rom_write_reg(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	size_t		 off;

	if (rq->size == 0 || rq->size % 16 != 0) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	for (off = 0; off < rq->size; off += 16) {
		emu_reg_write(e, le32_get(d + off), le32_get(d + off + 4),
		    le32_get(d + off + 8));
		e->t += emu_fixed_us(e, le32_get(d + off + 12));
	}
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * Set up the write a FLASH_BEGIN / FLASH_DEFL_BEGIN asks for (size,
 * blocks, block size, offset) and answer it.  The ROM and the stub check
 * the request each their own way, then start the write alike.
 */
void
emu_rom_flash_start(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;

	e->fl_offset = le32_get(d + 12);
	e->fl_size = le32_get(d);
	e->fl_blocks = le32_get(d + 4);
	e->fl_bsize = le32_get(d + 8);
	e->fl_seq = 0;
	e->fl_cursor = e->fl_offset;
	if (rq->op == PROTO_FLASH_DEFL_BEGIN) {
		memset(&e->zs, 0, sizeof(e->zs));
		if (inflateInit(&e->zs) != Z_OK) {
			emu_fail(e, rq->op, PROTO_E_MALLOC);
			return;
		}
		e->fl_zinit = 1;
		e->fl_mode = EMU_FL_DEFL;
	} else
		e->fl_mode = EMU_FL_PLAIN;
	emu_ok(e, rq->op, NULL, 0);
}

/* FLASH_BEGIN / FLASH_DEFL_BEGIN: erase the region now, then expect data. */
static void
emu_rom_flash_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	uint32_t	 size, blocks, bsize, off;

	if (rq->size != 16 && (rq->size != 20 || e->chip->id == CHIP_ESP32)) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	blocks = le32_get(d + 4);
	bsize = le32_get(d + 8);
	off = le32_get(d + 12);
	emu_fl_reset(e);
	/* Encrypted writes and absurd block sizes are not modelled. */
	if ((rq->size == 20 && le32_get(d + 16) != 0) ||
	    (blocks != 0 && (bsize == 0 || bsize > EMU_MAX_BLOCK))) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (size != 0 && !e->attached)
		e->st.unattached++;
	if (emu_flash_erase_area(e, off, size) != 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	emu_rom_flash_start(e, rq);
}

/*
 * Check a _DATA header (len, seq, 0, 0) and the checksum of the data.
 * Returns 0 and the data, or the ROM error code.
 */
int
emu_rom_data_check(struct emu *e, const struct proto_req *rq, uint32_t *seq,
    const uint8_t **data, uint32_t *len)
{
	if (rq->size < PROTO_DATA_HDR_LEN)
		return (PROTO_E_INVALID_MSG);
	*len = le32_get(rq->data);
	*seq = le32_get(rq->data + 4);
	if (*len != (uint32_t)(rq->size - PROTO_DATA_HDR_LEN))
		return (PROTO_E_INVALID_MSG);
	*data = rq->data + PROTO_DATA_HDR_LEN;
	e->t += emu_cost_us(e, EMU_SUM_NS_PER_BYTE, *len);
	if (proto_checksum(*data, *len) != rq->checksum)
		return (PROTO_E_CRC);
	return (0);
}

/*
 * FLASH_DATA: program one block at offset + seq * block size.  A block may
 * be sent again (the host lost the reply); skipping ahead is refused.
 */
static void
emu_rom_flash_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, addr;
	int		 err;

	if ((err = emu_rom_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != EMU_FL_PLAIN) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	if (seq > e->fl_seq || seq >= e->fl_blocks || len > e->fl_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	addr = e->fl_offset + seq * e->fl_bsize;
	if (emu_flash_program(e, addr, data, len) != 0) {
		emu_fail(e, rq->op, PROTO_E_FLASH_WRITE);
		return;
	}
	if (seq == e->fl_seq)
		e->fl_seq++;
	emu_fault_after_write(e, rq->op, addr, len);
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * Inflate one FLASH_DEFL_DATA block into flash at the write cursor with
 * zlib's streaming inflate.  0, or the ROM error code.
 */
int
emu_rom_inflate(struct emu *e, const uint8_t *in, uint32_t len, uint32_t *out)
{
	size_t	made;
	int	zr;

	*out = 0;
	e->zs.next_in = (Bytef *)(uintptr_t)in;
	e->zs.avail_in = len;
	for (;;) {
		e->zs.next_out = e->zbuf;
		e->zs.avail_out = EMU_INFLATE_CHUNK;
		zr = inflate(&e->zs, Z_NO_FLUSH);
		made = EMU_INFLATE_CHUNK - e->zs.avail_out;
		if (made != 0) {
			e->t += emu_cost_us(e, EMU_INFLATE_NS_PER_BYTE, made);
			if (e->stub && (uint64_t)e->fl_cursor + made <=
			    e->chip_size)
				emu_stub_erase_to(e, e->fl_cursor +
				    (uint32_t)made);
			if (emu_flash_program(e, e->fl_cursor, e->zbuf,
			    made) != 0)
				return (PROTO_E_FLASH_WRITE);
			e->fl_cursor += made;
			*out += made;
		}
		if (zr == Z_STREAM_END) {
			e->fl_zend = 1;
			return (0);
		}
		if (zr == Z_BUF_ERROR)
			return (0);	/* no progress: needs the next block */
		if (zr == Z_MEM_ERROR)
			return (PROTO_E_MALLOC);
		if (zr != Z_OK) {
			if (e->zs.msg != NULL &&
			    strcmp(e->zs.msg, "incorrect data check") == 0)
				return (PROTO_E_ADLER);
			return (PROTO_E_DEFLATE);
		}
		if (e->zs.avail_in == 0 && e->zs.avail_out != 0)
			return (0);
	}
}

/* FLASH_DEFL_DATA: the next slice of the zlib stream, in order. */
static void
emu_rom_defl_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, start, made;
	int		 err;

	if ((err = emu_rom_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != EMU_FL_DEFL) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	if (seq != e->fl_seq || len > e->fl_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (e->fl_zerr != 0) {
		emu_fail(e, rq->op, (uint8_t)e->fl_zerr);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	e->fl_seq++;
	if (e->fl_zend)
		made = 0;	/* data after the end of the stream: ignored */
	else {
		start = e->fl_cursor;
		if ((err = emu_rom_inflate(e, data, len, &made)) != 0) {
			e->fl_zerr = err;
			emu_fail(e, rq->op, (uint8_t)err);
			return;
		}
		emu_fault_after_write(e, rq->op, start, made);
	}
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * FLASH_END / FLASH_DEFL_END: flag 0 reboots into download mode, anything
 * else runs the user code (the ROM stops answering).
 */
static void
emu_rom_flash_end(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (e->fl_mode == EMU_FL_NONE) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	emu_fl_reset(e);
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0)
		emu_reboot(e);
	else if (e->boot_model) {
		/* The ROM jumps into the bootloader: no reset, new port. */
		e->reason = EMU_RS_RUN_USER_CODE;
		if (e->link == EMU_LINK_USB)
			e->gen++;
		emu_boot_flash(e, EMU_RS_RUN_USER_CODE);
	} else
		emu_leave(e, EMU_ST_APP, EMU_RS_RUN_USER_CODE);
}

/* Is [addr, addr + size) inside one RAM range of the chip? */
static int
emu_rom_ram_ok(const struct emu *e, uint32_t addr, uint32_t size, int *addr_ok)
{
	const struct emu_rom_range	*r;
	size_t			 i, n;

	r = e->chip->id == CHIP_ESP32 ? emu_rom_ram_esp32 : emu_rom_ram_s2;
	n = e->chip->id == CHIP_ESP32 ? nitems(emu_rom_ram_esp32) :
	    nitems(emu_rom_ram_s2);
	*addr_ok = 0;
	for (i = 0; i < n; i++) {
		if (addr < r[i].start || addr >= r[i].end)
			continue;
		*addr_ok = 1;
		return ((uint64_t)addr + size <= r[i].end);
	}
	return (0);
}

/* MEM_BEGIN: start a RAM upload (a flasher stub, or any code). */
void
emu_rom_mem_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t		*d = rq->data;
	struct emu_ramseg	*s;
	uint32_t		 size, bsize, addr;
	int			 addr_ok;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	bsize = le32_get(d + 8);
	addr = le32_get(d + 12);
	if (!emu_rom_ram_ok(e, addr, size, &addr_ok)) {
		emu_fail(e, rq->op, addr_ok ? PROTO_E_RAM_SIZE :
		    PROTO_E_RAM_ADDR);
		return;
	}
	if (bsize == 0 || bsize > EMU_MAX_BLOCK) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (e->nram == EMU_NRAMSEGS) {
		emu_fail(e, rq->op, PROTO_E_MALLOC);
		return;
	}
	s = &e->ram[e->nram++];
	s->addr = addr;
	s->size = size;
	s->data = xcalloc(1, size);
	e->mem_active = 1;
	e->mem_bsize = bsize;
	e->mem_seq = 0;
	emu_ok(e, rq->op, NULL, 0);
}

/* MEM_DATA: copy one block into the current RAM upload. */
void
emu_rom_mem_data(struct emu *e, const struct proto_req *rq)
{
	struct emu_ramseg	*s;
	const uint8_t		*data;
	uint32_t		 seq, len;
	uint64_t		 off;
	int			 err;

	if ((err = emu_rom_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (!e->mem_active) {
		emu_fail(e, rq->op, PROTO_E_FAILED);
		return;
	}
	s = &e->ram[e->nram - 1];
	off = (uint64_t)seq * e->mem_bsize;
	if (seq > e->mem_seq || len > e->mem_bsize) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	if (off + len > s->size) {
		emu_fail(e, rq->op, PROTO_E_RAM_SIZE);
		return;
	}
	memcpy(s->data + off, data, len);
	if (seq == e->mem_seq)
		e->mem_seq++;
	emu_ok(e, rq->op, NULL, 0);
}

/*
 * MEM_END(no_exec, entry): with no_exec 0 the ROM answers and jumps to
 * entry: a known flasher stub then answers as the stub does (emu-stub.c),
 * any other code leaves the unit silent, as unknown code would.
 */
void
emu_rom_mem_end(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->mem_active = 0;
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0) {
		e->entry = le32_get(rq->data + 4);
		e->stub = 0;	/* whatever ran, this code runs now */
		emu_leave(e, EMU_ST_RAM, EMU_RS_MEM_ENTRY);
		if (emu_stub_entry(e, e->entry))
			emu_stub_start(e);
	}
}

/* SPI_ATTACH: the ROM takes config + 4 zero bytes. */
static void
emu_rom_spi_attach(struct emu *e, const struct proto_req *rq)
{
	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->attached = 1;
	emu_ok(e, rq->op, NULL, 0);
}

/* SPI_SET_PARAMS: id, total size, block, sector, page, status mask. */
void
emu_rom_set_params(struct emu *e, const struct proto_req *rq)
{
	uint32_t	total;

	if (rq->size != 24) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	total = le32_get(rq->data + 4);
	if (total == 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	e->chip_size = total;
	emu_ok(e, rq->op, NULL, 0);
}

/* SPI_FLASH_MD5: 32 lowercase hex characters of the range. */
static void
emu_rom_md5(struct emu *e, const struct proto_req *rq)
{
	uint8_t		md[16];
	char		hex[33];
	uint32_t	addr, size;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	size = le32_get(rq->data + 4);
	if ((uint64_t)addr + size > e->chip_size) {
		emu_fail(e, rq->op, PROTO_E_FLASH_READ);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	emu_flash_md5(e, addr, size, md);
	digest_hex(md, sizeof(md), hex);
	e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE + EMU_MD5_NS_PER_BYTE,
	    size);
	emu_ok(e, rq->op, (const uint8_t *)hex, PROTO_MD5_HEX_LEN);
}

/* READ_FLASH_SLOW: always 64 bytes of data, the host keeps len. */
static void
emu_rom_read_slow(struct emu *e, const struct proto_req *rq)
{
	uint8_t		buf[PROTO_READ_SLOW_BLOCK];
	uint32_t	addr, len, i;

	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	len = le32_get(rq->data + 4);
	if (len > PROTO_READ_SLOW_BLOCK) {
		emu_fail(e, rq->op, PROTO_E_READ_LEN);
		return;
	}
	if ((uint64_t)addr + len > e->chip_size) {
		emu_fail(e, rq->op, PROTO_E_FLASH_READ);
		return;
	}
	if (!e->attached)
		e->st.unattached++;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = e->flash[(addr + i) & e->flash_mask];
	e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE, sizeof(buf));
	emu_ok(e, rq->op, buf, sizeof(buf));
}

/* CHANGE_BAUDRATE: answered at the old rate, then the UART switches. */
static void
emu_rom_baud(struct emu *e, const struct proto_req *rq)
{
	uint32_t	baud;

	if (rq->size != 8) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	baud = le32_get(rq->data);
	if (baud == 0) {
		emu_fail(e, rq->op, PROTO_E_PARAM);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
	/* USB-OTG CDC has no baud rate; the value is only remembered. */
	e->baud = baud;
}

/* GET_SECURITY_INFO (S2): flags, crypt count, 7 key purposes, all 0. */
void
emu_rom_secinfo(struct emu *e, const struct proto_req *rq)
{
	uint8_t	info[PROTO_SECINFO_S2_LEN];

	memset(info, 0, sizeof(info));
	emu_ok(e, rq->op, info, sizeof(info));
}

/* Hand a well-formed request to the ROM's handler for it. */
void
emu_rom_dispatch(struct emu *e, const struct proto_req *rq)
{
	switch (rq->op) {
	case PROTO_SYNC:
		emu_rom_sync(e, rq);
		break;
	case PROTO_READ_REG:
		emu_rom_read_reg(e, rq);
		break;
	case PROTO_WRITE_REG:
		emu_rom_write_reg(e, rq);
		break;
	case PROTO_FLASH_BEGIN:
	case PROTO_FLASH_DEFL_BEGIN:
		emu_rom_flash_begin(e, rq);
		break;
	case PROTO_FLASH_DATA:
		emu_rom_flash_data(e, rq);
		break;
	case PROTO_FLASH_DEFL_DATA:
		emu_rom_defl_data(e, rq);
		break;
	case PROTO_FLASH_END:
	case PROTO_FLASH_DEFL_END:
		emu_rom_flash_end(e, rq);
		break;
	case PROTO_MEM_BEGIN:
		emu_rom_mem_begin(e, rq);
		break;
	case PROTO_MEM_DATA:
		emu_rom_mem_data(e, rq);
		break;
	case PROTO_MEM_END:
		emu_rom_mem_end(e, rq);
		break;
	case PROTO_SPI_ATTACH:
		emu_rom_spi_attach(e, rq);
		break;
	case PROTO_SPI_SET_PARAMS:
		emu_rom_set_params(e, rq);
		break;
	case PROTO_SPI_FLASH_MD5:
		emu_rom_md5(e, rq);
		break;
	case PROTO_READ_FLASH_SLOW:
		emu_rom_read_slow(e, rq);
		break;
	case PROTO_CHANGE_BAUDRATE:
		emu_rom_baud(e, rq);
		break;
	case PROTO_GET_SECURITY_INFO:
		if (e->chip->has_secinfo)
			emu_rom_secinfo(e, rq);
		else
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		break;
	default:
		/* Unknown to the ROM: "invalid message", op echoed. */
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		break;
	}
}
