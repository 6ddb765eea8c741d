/*
 * The flasher stub personality (PROTOCOL.md section 9): once MEM_END jumps
 * to a known stub entry the unit says OHAI and answers as the stub does,
 * with two status bytes, its own error codes, lazy erase, acknowledged
 * writes, ERASE_*, raw MD5 and streamed READ_FLASH.  Apart from the ROM's
 * commands (emu-rom.c) because it is another program on the same chip.
 */
#include "config.h"

#include <stdlib.h>

#include "chip.h"
#include "emu.h"
#include "proto.h"
#include "slip.h"
#include "util.h"
#include "emu-private.h"

/* Stub error codes (PROTOCOL.md 1.5): first status byte, second 0. */
#define EMU_STUB_E_BAD_LEN	0xC0
#define EMU_STUB_E_CHECKSUM	0xC1
#define EMU_STUB_E_BLOCKSIZE	0xC2
#define EMU_STUB_E_SPI		0xC4
#define EMU_STUB_E_NOT_FLASHING	0xC6
#define EMU_STUB_E_INFLATE	0xC7
#define EMU_STUB_E_NOT_ENOUGH	0xC8
#define EMU_STUB_E_TOO_MUCH	0xC9
#define EMU_STUB_E_NOT_IMPL	0xFF

/* A stub's error code for what the ROM would call error. */
uint8_t
emu_stub_code(uint8_t error)
{
	switch (error) {
	case PROTO_E_CRC:
		return (EMU_STUB_E_CHECKSUM);
	case PROTO_E_PARAM:
		return (EMU_STUB_E_BLOCKSIZE);
	case PROTO_E_FAILED:
		return (EMU_STUB_E_NOT_FLASHING);
	case PROTO_E_FLASH_WRITE:
	case PROTO_E_FLASH_READ:
		return (EMU_STUB_E_SPI);
	case PROTO_E_DEFLATE:
	case PROTO_E_ADLER:
		return (EMU_STUB_E_INFLATE);
	default:
		return (EMU_STUB_E_BAD_LEN);
	}
}

/* Is entry the entry point of a flasher stub this chip is known to run? */
int
emu_stub_entry(const struct emu *e, uint32_t entry)
{
	static const uint32_t	s2[] = {
		0x400288AC,	/* esptool legacy stub (LS v1.11.1) */
		0x400290A4,	/* esptool-rs stub (NS v1.2.2), esptool-js */
	};
	size_t			i;

	if (!e->stub_model || e->chip->id != CHIP_ESP32S2)
		return (0);
	for (i = 0; i < nitems(s2); i++)
		if (entry == s2[i])
			return (1);
	return (0);
}

/* Queue one raw SLIP frame (no header): OHAI, READ_FLASH data and MD5. */
static void
emu_stub_frame(struct emu *e, const uint8_t *p, size_t len)
{
	uint8_t	*wire;
	size_t	 w;

	wire = xmalloc(SLIP_ENCODED_MAX(len));
	w = slip_encode(wire, SLIP_ENCODED_MAX(len), p, len);
	e->t += emu_wire_us(e, w);
	emu_queue(e, wire, w, e->t);
	free(wire);
}

/* The stub is running: send "OHAI" once it is up. */
void
emu_stub_start(struct emu *e)
{
	static const uint8_t	ohai[] = { 'O', 'H', 'A', 'I' };

	e->stub = 1;
	e->stub_err = 0;
	e->t += emu_fixed_us(e, EMU_STUB_START_US);
	emu_stub_frame(e, ohai, sizeof(ohai));
}

/* Erase lazily, as the stub does, every sector up to end (exclusive). */
void
emu_stub_erase_to(struct emu *e, uint32_t end)
{
	uint32_t	left;

	while (e->fl_erased < end && e->fl_erased < e->chip_size) {
		left = e->fl_offset + e->fl_size > e->fl_erased ?
		    e->fl_offset + e->fl_size - e->fl_erased : 0;
		if (e->fl_erased % EMU_BLOCK == 0 &&
		    left >= 16 * EMU_SECTOR &&
		    (uint64_t)e->fl_erased + EMU_BLOCK <= e->chip_size) {
			emu_flash_erase_span(e, e->fl_erased, EMU_BLOCK);
			e->fl_erased += EMU_BLOCK;
		} else {
			emu_flash_erase_span(e, e->fl_erased, EMU_SECTOR);
			e->fl_erased += EMU_SECTOR;
		}
	}
}

/* Program with the stub's lazy erase in front; 0 or a stub error. */
static int
emu_stub_program(struct emu *e, uint32_t addr, const uint8_t *p, size_t len)
{
	if ((uint64_t)addr + len > e->chip_size)
		return (EMU_STUB_E_SPI);
	emu_stub_erase_to(e, (uint32_t)(addr + len));
	if (emu_flash_program(e, addr, p, len) != 0)
		return (EMU_STUB_E_SPI);
	return (0);
}

/* SYNC to the stub: the same eight replies, value 0. */
static void
emu_stub_sync(struct emu *e, const struct proto_req *rq)
{
	int	i;

	if (rq->size != PROTO_SYNC_LEN || le32_get(rq->data) != 0x20120707) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	e->last_value = 0;
	for (i = 0; i < PROTO_SYNC_REPLIES; i++)
		emu_ok(e, rq->op, NULL, 0);
}

/*
 * FLASH_BEGIN / FLASH_DEFL_BEGIN to the stub: size is the bytes to write
 * (uncompressed), nothing is erased yet; blocks up to 16 KiB.
 */
static void
emu_stub_flash_begin(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*d = rq->data;
	uint32_t	 size, bsize, off;

	if (rq->size != 16 && rq->size != 20) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	size = le32_get(d);
	bsize = le32_get(d + 8);
	off = le32_get(d + 12);
	emu_fl_reset(e);
	e->stub_err = 0;
	if (bsize > EMU_MAX_BLOCK || (rq->size == 20 && le32_get(d + 16))) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_BLOCKSIZE);
		return;
	}
	if ((uint64_t)off + size > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	e->fl_erased = off - off % EMU_SECTOR;
	emu_rom_flash_start(e, rq);
}

/*
 * FLASH_DATA / FLASH_DEFL_DATA to the stub: checked, acknowledged at once
 * (with the error latched by an earlier block, if any), then written while
 * the host sends the next block.  A block sent again is acknowledged, not
 * written twice.
 */
static void
emu_stub_flash_data(struct emu *e, const struct proto_req *rq)
{
	const uint8_t	*data;
	uint32_t	 seq, len, made, start, room;
	uint64_t	 t_ack, t_done;
	int		 err;

	if ((err = emu_rom_data_check(e, rq, &seq, &data, &len)) != 0) {
		emu_fail(e, rq->op, (uint8_t)err);
		return;
	}
	if (e->fl_mode != (rq->op == PROTO_FLASH_DATA ? EMU_FL_PLAIN :
	    EMU_FL_DEFL)) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_NOT_FLASHING);
		return;
	}
	t_ack = e->t;
	if (e->stub_err == 0 && seq + 1 == e->fl_seq) {
		/* A repeat: its ACK was lost. */
	} else if (e->stub_err == 0 && seq != e->fl_seq)
		e->stub_err = EMU_STUB_E_BLOCKSIZE;
	else if (e->stub_err == 0) {
		e->fl_seq++;
		if (e->fl_mode == EMU_FL_PLAIN) {
			room = e->fl_offset + e->fl_size - e->fl_cursor;
			if (e->fl_cursor >= e->fl_offset + e->fl_size)
				room = 0;
			if (len > room)
				e->stub_err = EMU_STUB_E_TOO_MUCH;
			else if ((err = emu_stub_program(e, e->fl_cursor, data,
			    len)) != 0)
				e->stub_err = (uint8_t)err;
			else {
				emu_fault_after_write(e, rq->op, e->fl_cursor,
				    len);
				e->fl_cursor += len;
			}
		} else if (!e->fl_zend) {
			start = e->fl_cursor;
			err = emu_rom_inflate(e, data, len, &made);
			if (err != 0)
				e->stub_err = err == PROTO_E_FLASH_WRITE ?
				    EMU_STUB_E_SPI : EMU_STUB_E_INFLATE;
			else if (e->fl_cursor > e->fl_offset + e->fl_size)
				e->stub_err = EMU_STUB_E_TOO_MUCH;
			emu_fault_after_write(e, rq->op, start, made);
		}
	}
	t_done = e->t;
	e->t = t_ack;
	if (e->stub_err != 0 && seq + 1 != e->fl_seq)
		emu_fail_raw(e, rq->op, e->stub_err);
	else
		emu_ok(e, rq->op, NULL, 0);
	/* The next command waits until the write is done. */
	e->t = MAXIMUM(e->t, t_done);
}

/*
 * FLASH_END / FLASH_DEFL_END to the stub: 0xC6 outside a write, 0xC8 when
 * bytes are missing, else the latched error; flag 0 then resets back into
 * the ROM (download mode), flag 1 stays in the stub.
 */
static void
emu_stub_flash_end(struct emu *e, const struct proto_req *rq)
{
	uint8_t	code = 0;

	if (rq->size != 4) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (e->fl_mode == EMU_FL_NONE)
		code = EMU_STUB_E_NOT_FLASHING;
	else if (e->stub_err != 0)
		code = e->stub_err;
	else if ((e->fl_mode == EMU_FL_DEFL && e->fl_size != 0 &&
	    !e->fl_zend) || (e->fl_mode == EMU_FL_PLAIN &&
	    e->fl_cursor < e->fl_offset + e->fl_size))
		code = EMU_STUB_E_NOT_ENOUGH;
	if (code != 0) {
		emu_fail_raw(e, rq->op, code);
		return;
	}
	emu_fl_reset(e);
	emu_ok(e, rq->op, NULL, 0);
	if (le32_get(rq->data) == 0) {
		e->t += emu_fixed_us(e, 10000);	/* flush, then reset */
		emu_reboot(e);
		e->state = EMU_ST_DOWNLOAD;
		e->reason = EMU_RS_SW_RESET;
	}
}

/* SPI_FLASH_MD5 from the stub: 16 raw bytes. */
static void
emu_stub_md5(struct emu *e, const struct proto_req *rq)
{
	uint8_t		md[16];
	uint32_t	addr, size;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	addr = le32_get(rq->data);
	size = le32_get(rq->data + 4);
	if ((uint64_t)addr + size > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	emu_flash_md5(e, addr, size, md);
	e->t += emu_cost_us(e, EMU_STUB_MD5_NS_PER_BYTE, size);
	emu_ok(e, rq->op, md, sizeof(md));
}

/* ERASE_FLASH (the whole chip) and ERASE_REGION (4 KiB multiples). */
static void
emu_stub_erase(struct emu *e, const struct proto_req *rq)
{
	uint32_t	off = 0, size = e->chip_size;

	if (rq->op == PROTO_ERASE_REGION) {
		if (rq->size != 8) {
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
			return;
		}
		off = le32_get(rq->data);
		size = le32_get(rq->data + 4);
		if (off % EMU_SECTOR != 0 || size % EMU_SECTOR != 0) {
			emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
			return;
		}
	} else if (rq->size != 0) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	if (emu_flash_erase_area(e, off, size) != 0) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
}

/* Send READ_FLASH packets while fewer than max_in_flight bytes wait. */
static void
emu_stub_read_push(struct emu *e)
{
	uint8_t			 md[16];
	uint32_t		 n, i;

	while (e->rd_sent < e->rd_len &&
	    e->rd_sent - e->rd_acked < e->rd_inflight) {
		n = MINIMUM(e->rd_psize, e->rd_len - e->rd_sent);
		for (i = 0; i < n; i++)
			e->rd_buf[i] = e->flash[(e->rd_off + e->rd_sent + i) &
			    e->flash_mask];
		e->t += emu_cost_us(e, EMU_READ_NS_PER_BYTE, n);
		emu_stub_frame(e, e->rd_buf, n);
		e->rd_sent += n;
	}
	if (e->rd_acked >= e->rd_len) {
		emu_flash_md5(e, e->rd_off, e->rd_len, md);
		emu_stub_frame(e, md, sizeof(md));
		e->rd_active = 0;
		free(e->rd_buf);
		e->rd_buf = NULL;
	}
}

/*
 * READ_FLASH(offset, length, packet size, max in flight): answer, then
 * stream the data (PROTOCOL.md 2.3); the host acknowledges each packet.
 */
static void
emu_stub_read_flash(struct emu *e, const struct proto_req *rq)
{
	uint32_t	off, len, psize, inflight;

	if (rq->size != 16) {
		emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		return;
	}
	off = le32_get(rq->data);
	len = le32_get(rq->data + 4);
	psize = le32_get(rq->data + 8);
	inflight = le32_get(rq->data + 12);
	if ((uint64_t)off + len > e->chip_size) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_SPI);
		return;
	}
	if (psize == 0 || psize > EMU_MAX_BLOCK || inflight == 0) {
		emu_fail_raw(e, rq->op, EMU_STUB_E_BLOCKSIZE);
		return;
	}
	emu_ok(e, rq->op, NULL, 0);
	e->rd_active = 1;
	e->rd_off = off;
	e->rd_len = len;
	e->rd_psize = psize;
	e->rd_inflight = inflight;
	e->rd_sent = e->rd_acked = 0;
	free(e->rd_buf);
	e->rd_buf = xmalloc(psize);
	emu_stub_read_push(e);
}

/* A frame while READ_FLASH streams: the host's u32 bytes-received ACK. */
void
emu_stub_read_ack(struct emu *e, const uint8_t *p, size_t len)
{
	uint32_t	got;

	if (len != 4) {
		e->st.dropped++;
		return;
	}
	got = le32_get(p);
	if (got > e->rd_acked && got <= e->rd_sent)
		e->rd_acked = got;
	emu_stub_read_push(e);
}

/* Commands as the stub answers them. */
void
emu_stub_dispatch(struct emu *e, const struct proto_req *rq)
{
	/* The stub's value field is 0 except for READ_REG. */
	e->last_value = 0;
	switch (rq->op) {
	case PROTO_SYNC:
		emu_stub_sync(e, rq);
		break;
	case PROTO_READ_REG:
		emu_rom_read_reg(e, rq);
		break;
	case PROTO_WRITE_REG:
		emu_rom_write_reg(e, rq);
		break;
	case PROTO_FLASH_BEGIN:
	case PROTO_FLASH_DEFL_BEGIN:
		emu_stub_flash_begin(e, rq);
		break;
	case PROTO_FLASH_DATA:
	case PROTO_FLASH_DEFL_DATA:
		emu_stub_flash_data(e, rq);
		break;
	case PROTO_FLASH_END:
	case PROTO_FLASH_DEFL_END:
		emu_stub_flash_end(e, rq);
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
		if (rq->size != 4 && rq->size != 8)
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		else {
			e->attached = 1;
			emu_ok(e, rq->op, NULL, 0);
		}
		break;
	case PROTO_SPI_SET_PARAMS:
		emu_rom_set_params(e, rq);
		break;
	case PROTO_SPI_FLASH_MD5:
		emu_stub_md5(e, rq);
		break;
	case PROTO_CHANGE_BAUDRATE:
		if (rq->size != 8)
			emu_fail(e, rq->op, PROTO_E_INVALID_MSG);
		else {
			emu_ok(e, rq->op, NULL, 0);
			/* The S2 stub on USB-OTG ignores it. */
			if (e->link != EMU_LINK_USB && le32_get(rq->data))
				e->baud = le32_get(rq->data);
		}
		break;
	case PROTO_GET_SECURITY_INFO:
		emu_rom_secinfo(e, rq);
		break;
	case PROTO_ERASE_FLASH:
	case PROTO_ERASE_REGION:
		emu_stub_erase(e, rq);
		break;
	case PROTO_READ_FLASH:
		emu_stub_read_flash(e, rq);
		break;
	default:
		emu_fail_raw(e, rq->op, EMU_STUB_E_NOT_IMPL);
		break;
	}
}

/* Whether the flasher stub is what answers now. */
int
emu_stub(const struct emu *e)
{
	return (e->stub);
}
