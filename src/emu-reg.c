/*
 * The emulator's register map: what READ_REG sees and WRITE_REG changes.
 * eFuse MAC and chip words, straps, FORCE_DOWNLOAD_BOOT, the SPI
 * controller's user command (answered by emu-flash.c) and the S2 RTC
 * watchdog; any other address remembers what was written to it.  Apart
 * from emu.c because it is a table of chip facts, not protocol.
 */
#include "config.h"

#include "chip.h"
#include "emu.h"
#include "util.h"
#include "emu-private.h"

/* SPI user-command register bits (esptool run_spiflash_command). */
#define EMU_SPI_CMD_USR		(1u << 18)
#define EMU_SPI_USR_COMMAND	(1u << 31)
#define EMU_SPI_USR_ADDR	(1u << 30)
#define EMU_SPI_USR_MISO	(1u << 28)
#define EMU_SPI_ADDR_LEN_SHIFT	26

/* ESP32-S2 registers beyond the chip table (PROTOCOL.md 4.2, 5.5). */
#define EMU_S2_EFUSE_BASE	0x3F41A000u
#define EMU_S2_EFUSE_WORD3	0x3F41A050u
#define EMU_S2_EFUSE_WORD4	0x3F41A054u
#define EMU_S2_EFUSE_BLK2_W4	0x3F41A06Cu
#define EMU_S2_STRAP_REG	0x3F404038u
#define EMU_S2_WDTCONFIG0	0x3F408094u
#define EMU_S2_WDTCONFIG1	0x3F408098u
#define EMU_S2_WDTFEED		0x3F4080A8u
#define EMU_S2_WDTWPROTECT	0x3F4080ACu
#define EMU_S2_OPTION1		0x3F408128u
#define EMU_WDT_WKEY		0x50D83AA1u
#define EMU_WDT_EN		(1u << 31)
/* Flash cap 2 (4 MB embedded) in bits 21-24, PSRAM cap 1 in 28-31. */
#define EMU_S2_WORD3		((2u << 21) | (1u << 28))
#define EMU_S2_BLK2_VERSION	(2u << 4)

/* ESP32 registers (esptool targets/esp32.py). */
#define EMU_E32_EFUSE_BASE	0x3FF5A000u
#define EMU_E32_EFUSE_WORD3	0x3FF5A00Cu
#define EMU_E32_EFUSE_WORD5	0x3FF5A014u
#define EMU_E32_APB_DATE	0x3FF6607Cu
#define EMU_E32_UART_CLKDIV	0x3FF40014u
#define EMU_E32_STRAP_REG	0x3FF44038u
#define EMU_E32_APB_HZ		40000000u
/* Package 1 (D0WD) and the revision bits of a v3 chip. */
#define EMU_E32_WORD3		((1u << 9) | (1u << 15))
#define EMU_E32_WORD5		(1u << 20)

/* eFuse MAC words: S2 (and later) layout, or the ESP32 one. */
static uint32_t
emu_reg_efuse_mac(const struct emu *e, int word)
{
	const uint8_t	*m = e->mac;

	if (word == 0)
		return ((uint32_t)m[2] << 24 | (uint32_t)m[3] << 16 |
		    (uint32_t)m[4] << 8 | m[5]);
	return ((uint32_t)m[0] << 8 | m[1]);
}

/* Index of a remembered register, or -1. */
static int
emu_reg_find(const struct emu *e, uint32_t addr)
{
	size_t	i;

	for (i = 0; i < e->nregs; i++)
		if (e->regs[i].addr == addr)
			return ((int)i);
	return (-1);
}

/* Remember a register value (the store holds EMU_NREGS addresses). */
static void
emu_reg_store(struct emu *e, uint32_t addr, uint32_t value)
{
	int	i;

	if ((i = emu_reg_find(e, addr)) >= 0) {
		e->regs[i].value = value;
		return;
	}
	if (e->nregs == EMU_NREGS)
		return;
	e->regs[e->nregs].addr = addr;
	e->regs[e->nregs].value = value;
	e->nregs++;
}

/* Is addr one of the SPI controller's W0..W15 data registers? */
static int
emu_reg_spi_w(const struct emu *e, uint32_t addr, size_t *idx)
{
	uint32_t	w0 = e->chip->spi_base + e->chip->spi_w0;

	if (addr < w0 || addr >= w0 + 64 || addr % 4 != 0)
		return (0);
	*idx = (addr - w0) / 4;
	return (1);
}

/* Registers a write cannot change (ROM, eFuse read registers, straps). */
static int
emu_reg_readonly(const struct emu *e, uint32_t addr)
{
	if (addr == CHIP_MAGIC_REG)
		return (1);
	if (e->chip->id == CHIP_ESP32)
		return ((addr >= EMU_E32_EFUSE_BASE &&
		    addr < EMU_E32_EFUSE_BASE + 0x200) ||
		    addr == EMU_E32_STRAP_REG);
	return ((addr >= EMU_S2_EFUSE_BASE &&
	    addr < EMU_S2_EFUSE_BASE + 0x200) || addr == EMU_S2_STRAP_REG);
}

/* The value a register reads as: remembered writes, then the chip model. */
uint32_t
emu_reg_read(const struct emu *e, uint32_t addr)
{
	const struct chip_info	*c = e->chip;
	size_t			 w;
	int			 i;

	if (emu_reg_spi_w(e, addr, &w))
		return (e->spi_w[w]);
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_OPTION1)
		return ((uint32_t)e->force_dl);	/* FORCE_DOWNLOAD_BOOT */
	if (!emu_reg_readonly(e, addr) && (i = emu_reg_find(e, addr)) >= 0)
		return (e->regs[i].value);
	if (addr == CHIP_MAGIC_REG)
		return (c->magic[0]);
	if (addr == c->efuse_mac0)
		return (emu_reg_efuse_mac(e, 0));
	if (addr == c->efuse_mac1)
		return (emu_reg_efuse_mac(e, 1));
	if (c->id == CHIP_ESP32) {
		switch (addr) {
		case EMU_E32_EFUSE_WORD3:
			return (EMU_E32_WORD3);
		case EMU_E32_EFUSE_WORD5:
			return (EMU_E32_WORD5);
		case EMU_E32_APB_DATE:
			return (0x80000000u);
		case EMU_E32_UART_CLKDIV:
			return (EMU_E32_APB_HZ / e->baud);
		case EMU_E32_STRAP_REG:
			return (0x03);	/* boot:0x3, download */
		}
		return (0);
	}
	if (c->uartdev_buf_no != 0 && addr == c->uartdev_buf_no)
		return (e->link == EMU_LINK_USB ? c->uartdev_usb_otg : 0);
	switch (addr) {
	case EMU_S2_EFUSE_WORD3:
		return (EMU_S2_WORD3);
	case EMU_S2_EFUSE_WORD4:
		return (0);
	case EMU_S2_EFUSE_BLK2_W4:
		return (EMU_S2_BLK2_VERSION);
	case EMU_S2_STRAP_REG:
		return (e->strap);	/* 0: GPIO0 was low, download */
	}
	return (0);
}

/*
 * Run the user command set up in the SPI controller (esptool's
 * run_spiflash_command): the command byte from USR2, an optional address,
 * then MISO data into W0.. little-endian.  Commands without data (WREN,
 * reset 0x66/0x99) change nothing.
 */
static void
emu_reg_spi_exec(struct emu *e)
{
	const struct chip_info	*c = e->chip;
	uint32_t		 usr, usr1, usr2, addr = 0, bits;
	uint8_t			 miso[64];
	size_t			 n = 0, i;
	unsigned		 alen;

	usr = emu_reg_read(e, c->spi_base + c->spi_usr);
	usr1 = emu_reg_read(e, c->spi_base + c->spi_usr1);
	usr2 = emu_reg_read(e, c->spi_base + c->spi_usr2);
	if ((usr & EMU_SPI_USR_COMMAND) == 0)
		return;
	if (usr & EMU_SPI_USR_ADDR) {
		addr = emu_reg_read(e, c->spi_base + 0x04);
		alen = ((usr1 >> EMU_SPI_ADDR_LEN_SHIFT) & 0x3f) + 1;
		/* ESP32 keeps the address in the top bits (ADDR_REG_MSB). */
		if (c->id == CHIP_ESP32 && alen < 32)
			addr >>= 32 - alen;
		addr &= 0xffffff;
	}
	if (usr & EMU_SPI_USR_MISO) {
		bits = (emu_reg_read(e, c->spi_base + c->spi_miso_dlen) &
		    0xffff) + 1;
		n = MINIMUM((bits + 7) / 8, sizeof(miso));
	}
	if (n == 0)
		return;
	emu_flash_miso(e, (uint8_t)(usr2 & 0xff), addr, miso, n);
	for (i = 0; i < n; i++) {
		if (i % 4 == 0)
			e->spi_w[i / 4] = 0;
		e->spi_w[i / 4] |= (uint32_t)miso[i] << (8 * (i % 4));
	}
}

/* Is addr one of the S2 RTC watchdog registers the write key protects? */
static int
emu_reg_wdt(uint32_t addr)
{
	return (addr >= EMU_S2_WDTCONFIG0 && addr <= EMU_S2_WDTFEED);
}

/*
 * WRITE_REG of one register: masked write, SPI command start, and the S2
 * RTC watchdog (unlock with the key, WDT_EN arms a chip reset after the
 * stage-0 timeout in slow-clock ticks).
 */
void
emu_reg_write(struct emu *e, uint32_t addr, uint32_t value, uint32_t mask)
{
	const struct chip_info	*c = e->chip;
	uint32_t		 v, ticks;
	size_t			 w;

	if (emu_reg_readonly(e, addr))
		return;
	v = (emu_reg_read(e, addr) & ~mask) | (value & mask);
	if (emu_reg_spi_w(e, addr, &w)) {
		e->spi_w[w] = v;
		return;
	}
	if (addr == c->spi_base && (v & EMU_SPI_CMD_USR)) {
		emu_reg_spi_exec(e);
		/* Done at once: the next read already sees USR clear. */
		emu_reg_store(e, addr, v & ~EMU_SPI_CMD_USR);
		return;
	}
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_OPTION1) {
		e->force_dl = (int)(v & 1);	/* the only bit modelled */
		return;
	}
	if (c->id == CHIP_ESP32S2 && addr == EMU_S2_WDTWPROTECT) {
		e->wdt_unlocked = v == EMU_WDT_WKEY;
		emu_reg_store(e, addr, v);
		return;
	}
	if (c->id == CHIP_ESP32S2 && emu_reg_wdt(addr)) {
		if (!e->wdt_unlocked)
			return;
		emu_reg_store(e, addr, v);
		if (addr == EMU_S2_WDTCONFIG0 && (v & EMU_WDT_EN)) {
			ticks = emu_reg_read(e, EMU_S2_WDTCONFIG1);
			if (ticks == 0)
				ticks = 1;
			e->wdt_due = e->t +
			    (uint64_t)ticks * 1000000 / EMU_RTC_SLOW_HZ;
		} else if (addr == EMU_S2_WDTCONFIG0)
			e->wdt_due = 0;
		return;
	}
	emu_reg_store(e, addr, v);
}
