/*
 * The emulator's flash chip: a GD25Q32C-style NOR part that programs bits
 * from 1 to 0, erases sectors and blocks the way the ROM asks, takes the
 * datasheet's time for both (longer under a slow-flash fault), hashes
 * ranges for the MD5 commands and answers SPI user commands (RDID, SFDP,
 * READ).  Apart from emu.c because the ROM and the stub both write
 * through it and it knows nothing of the protocol.
 */
#include "config.h"

#include <string.h>

#include "digest.h"
#include "emu.h"
#include "util.h"
#include "emu-private.h"

/* Start of a GD25Q32C-style SFDP table: signature, rev 1.6, one header. */
static const uint8_t emu_flash_sfdp[] = {
	0x53, 0x46, 0x44, 0x50, 0x06, 0x01, 0x00, 0xff,
	0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xff,
};

/* log2 of the flash size: the JEDEC capacity byte. */
unsigned
emu_flash_size_code(uint32_t size)
{
	unsigned	code = 0;

	while ((1u << code) < size)
		code++;
	return (code);
}

/*
 * A slow-flash fault: the flash takes factor times its typical time, in
 * either profile; the extra time counts as stall, not modelled time.
 */
static void
emu_flash_slow(struct emu *e, uint64_t typ_us)
{
	uint64_t	extra;

	if (e->slow <= 1)
		return;
	extra = typ_us * (e->slow - 1);
	e->t += extra;
	e->stall_cmd += extra;
}

/* Program like NOR: bits only go from 1 to 0.  -1 past the chip size. */
int
emu_flash_program(struct emu *e, uint32_t addr, const uint8_t *p, size_t len)
{
	size_t	i;

	if ((uint64_t)addr + len > e->chip_size)
		return (-1);
	for (i = 0; i < len; i++)
		e->flash[(addr + i) & e->flash_mask] &= p[i];
	e->t += emu_cost_us(e, EMU_PROG_NS_PER_BYTE, len);
	emu_flash_slow(e, ((uint64_t)EMU_PROG_NS_PER_BYTE * len + 999) / 1000);
	e->st.flash_written += len;
	return (0);
}

/* Erase one span of the given size (sector or block) to 0xFF. */
void
emu_flash_erase_span(struct emu *e, uint32_t addr, uint32_t size)
{
	uint32_t	i, a = addr & e->flash_mask;

	if ((uint64_t)a + size <= e->flash_size)
		memset(e->flash + a, 0xff, size);	/* the usual case */
	else {
		for (i = 0; i < size; i++)
			e->flash[(addr + i) & e->flash_mask] = 0xff;
	}
	e->st.flash_erased += size;
	e->t += emu_fixed_us(e, size == EMU_BLOCK ? EMU_BLOCK_ERASE_US :
	    EMU_SECTOR_ERASE_US);
	emu_flash_slow(e, size == EMU_BLOCK ? EMU_BLOCK_ERASE_US :
	    EMU_SECTOR_ERASE_US);
}

/*
 * Erase an area the way the ROM's esp_rom_spiflash_erase_area does: the
 * start must be sector aligned and the end inside the chip size; sectors
 * up to the next 64 KiB boundary, 64 KiB blocks while more than a block
 * remains, then sectors.  -1 when the ROM would refuse.
 */
int
emu_flash_erase_area(struct emu *e, uint32_t start, uint32_t len)
{
	uint32_t	sector, total, head, per_block;

	if ((uint64_t)start + len > e->chip_size || start % EMU_SECTOR != 0)
		return (-1);
	per_block = EMU_BLOCK / EMU_SECTOR;
	sector = start / EMU_SECTOR;
	total = len / EMU_SECTOR + (len % EMU_SECTOR != 0);
	head = per_block - sector % per_block;
	if (head > total)
		head = total;
	total -= head;
	for (; head > 0; head--, sector++)
		emu_flash_erase_span(e, sector * EMU_SECTOR, EMU_SECTOR);
	for (; total > per_block; total -= per_block, sector += per_block)
		emu_flash_erase_span(e, sector * EMU_SECTOR, EMU_BLOCK);
	for (; total > 0; total--, sector++)
		emu_flash_erase_span(e, sector * EMU_SECTOR, EMU_SECTOR);
	return (0);
}

/* MD5 of a flash range (wrapping at the physical end like the chip). */
void
emu_flash_md5(struct emu *e, uint32_t addr, uint32_t size, uint8_t md[16])
{
	struct digest_md5_ctx	 ctx;
	uint32_t		 done, n;

	digest_md5_init(&ctx);
	for (done = 0; done < size; done += n) {
		/* Contiguous up to the physical end, then wrapped. */
		n = MINIMUM(size - done,
		    e->flash_size - ((addr + done) & e->flash_mask));
		digest_md5_update(&ctx,
		    e->flash + ((addr + done) & e->flash_mask), n);
	}
	digest_md5_final(&ctx, md);
}

/* Bytes a flash chip shifts out for a user command (0xFF: nothing). */
void
emu_flash_miso(struct emu *e, uint8_t cmd, uint32_t addr, uint8_t *out,
    size_t n)
{
	uint32_t	code = emu_flash_size_code(e->flash_size);
	size_t		i;

	memset(out, 0xff, n);
	switch (cmd) {
	case 0x9F:		/* RDID */
		if (n > 0)
			out[0] = EMU_JEDEC_MFR;
		if (n > 1)
			out[1] = EMU_JEDEC_TYPE;
		if (n > 2)
			out[2] = (uint8_t)code;
		break;
	case 0x5A:		/* SFDP */
		for (i = 0; i < n; i++)
			if (addr + i < sizeof(emu_flash_sfdp))
				out[i] = emu_flash_sfdp[addr + i];
		break;
	case 0x03:		/* READ, FAST READ */
	case 0x0B:
		for (i = 0; i < n; i++)
			out[i] = e->flash[(addr + i) & e->flash_mask];
		break;
	case 0x05:		/* status registers: idle, unprotected */
	case 0x35:
	case 0x15:
		memset(out, 0, n);
		break;
	case 0x90:		/* manufacturer / device id */
		if (n > 0)
			out[0] = EMU_JEDEC_MFR;
		if (n > 1)
			out[1] = (uint8_t)(code - 1);
		break;
	case 0xAB:		/* release power-down, device id */
		if (n > 0)
			out[0] = (uint8_t)(code - 1);
		break;
	case 0x4B:		/* unique id */
		for (i = 0; i < n; i++)
			out[i] = e->mac[i % 6] ^ (uint8_t)(0x5a + i);
		break;
	}
}

/* The flash contents (flash_size bytes). */
uint8_t *
emu_flash(struct emu *e)
{
	return (e->flash);
}

/* Physical flash size in bytes. */
uint32_t
emu_flash_size(const struct emu *e)
{
	return (e->flash_size);
}
