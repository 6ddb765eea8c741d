/*
 * The chip table (PROTOCOL.md section 4) and the USB identities of the
 * serial ports a flasher meets (section 8.3).  Const data, pure lookups.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "chip.h"
#include "util.h"

static const struct chip_info chip_table[] = {
	{
		.id = CHIP_ESP8266,
		.name = "ESP8266",
		.key = "esp8266",
		.magic = { 0xFFF0C101 },
		.image_chip_id = -1,
		.bootloader_offset = 0x0,
		.rom_status_len = 2,
		/* The 8266 MAC needs three eFuse words and an OUI table. */
		.efuse_mac0 = 0,
		.efuse_mac1 = 0,
		.has_secinfo = 0,
		.full_support = 0,
	},
	{
		.id = CHIP_ESP32,
		.name = "ESP32",
		.key = "esp32",
		.magic = { 0x00F01D83 },
		.image_chip_id = 0,
		.bootloader_offset = 0x1000,
		.rom_status_len = 4,
		/* eFuse words 1 and 2 (base 0x3FF5A000). */
		.efuse_mac0 = 0x3FF5A004,
		.efuse_mac1 = 0x3FF5A008,
		.spi_base = 0x3FF42000,
		.spi_usr = 0x1C,
		.spi_usr1 = 0x20,
		.spi_usr2 = 0x24,
		.spi_mosi_dlen = 0x28,
		.spi_miso_dlen = 0x2C,
		.spi_w0 = 0x80,
		.has_secinfo = 0,
		.full_support = 1,
	},
	{
		.id = CHIP_ESP32S2,
		.name = "ESP32-S2",
		.key = "esp32s2",
		.magic = { 0x000007C6 },
		.image_chip_id = 2,
		.bootloader_offset = 0x1000,
		.rom_status_len = 4,
		.efuse_mac0 = 0x3F41A044,
		.efuse_mac1 = 0x3F41A048,
		.uartdev_buf_no = 0x3FFFFD14,
		.uartdev_usb_otg = 2,
		.spi_base = 0x3F402000,
		.spi_usr = 0x18,
		.spi_usr1 = 0x1C,
		.spi_usr2 = 0x20,
		.spi_mosi_dlen = 0x24,
		.spi_miso_dlen = 0x28,
		.spi_w0 = 0x58,
		.has_secinfo = 1,
		.full_support = 1,
	},
	{
		.id = CHIP_ESP32S3,
		.name = "ESP32-S3",
		.key = "esp32s3",
		.magic = { 0x00000009 },
		.image_chip_id = 9,
		.bootloader_offset = 0x0,
		.rom_status_len = 4,
		.efuse_mac0 = 0x60007044,
		.efuse_mac1 = 0x60007048,
		.uartdev_buf_no = 0x3FCEF14C,
		.uartdev_usb_otg = 3,
		.spi_base = 0x60002000,
		.spi_usr = 0x18,
		.spi_usr1 = 0x1C,
		.spi_usr2 = 0x20,
		.spi_mosi_dlen = 0x24,
		.spi_miso_dlen = 0x28,
		.spi_w0 = 0x58,
		.has_secinfo = 1,
		.full_support = 0,
	},
	{
		.id = CHIP_ESP32C3,
		.name = "ESP32-C3",
		.key = "esp32c3",
		.magic = { 0x6921506F, 0x1B31506F, 0x4881606F, 0x4361606F },
		.image_chip_id = 5,
		.bootloader_offset = 0x0,
		.rom_status_len = 4,
		.efuse_mac0 = 0x60008844,
		.efuse_mac1 = 0x60008848,
		.spi_base = 0x60002000,
		.spi_usr = 0x18,
		.spi_usr1 = 0x1C,
		.spi_usr2 = 0x20,
		.spi_mosi_dlen = 0x24,
		.spi_miso_dlen = 0x28,
		.spi_w0 = 0x58,
		.has_secinfo = 1,
		.full_support = 0,
	},
};

/* One known USB VID:PID. */
struct chip_usb_id {
	uint16_t		 vid;
	uint16_t		 pid;
	enum chip_usb_kind	 kind;
	const char		*product;
};

static const struct chip_usb_id chip_usb_ids[] = {
	{ 0x303a, 0x0002, USB_KIND_S2_ROM, "ESP32-S2 ROM download (USB-OTG)" },
	{ 0x303a, 0x1001, USB_KIND_USB_JTAG, "USB-Serial/JTAG" },
	{ 0x303a, 0x80c2, USB_KIND_APP_CDC, "Lolin S2 Mini (Arduino)" },
	{ 0x10c4, 0xea60, USB_KIND_BRIDGE, "CP2102/CP2104/CP2102N" },
	{ 0x10c4, 0xea64, USB_KIND_BRIDGE, "CP2102C" },
	{ 0x10c4, 0xea70, USB_KIND_BRIDGE, "CP2105" },
	{ 0x10c4, 0xea71, USB_KIND_BRIDGE, "CP2108" },
	{ 0x1a86, 0x7523, USB_KIND_BRIDGE, "CH340" },
	{ 0x1a86, 0x55d4, USB_KIND_BRIDGE, "CH9102" },
	{ 0x1a86, 0x55d3, USB_KIND_BRIDGE, "CH343" },
	{ 0x0403, 0x6001, USB_KIND_BRIDGE, "FT232R" },
	{ 0x0403, 0x6010, USB_KIND_BRIDGE, "FT2232 (ESP-Prog)" },
	{ 0x0403, 0x6014, USB_KIND_BRIDGE, "FT232H" },
	{ 0x0403, 0x6015, USB_KIND_BRIDGE, "FT231X" },
};

#define CHIP_ESPRESSIF_VID	0x303a

/* Table entry for a chip id; NULL for CHIP_UNKNOWN or out of range. */
const struct chip_info *
chip_by_id(enum chip_id id)
{
	size_t	i;

	for (i = 0; i < nitems(chip_table); i++) {
		if (chip_table[i].id == id)
			return (&chip_table[i]);
	}
	return (NULL);
}

/* Chip whose READ_REG 0x40001000 magic is v; NULL if none. */
const struct chip_info *
chip_by_magic(uint32_t v)
{
	size_t	i, j;

	if (v == 0)
		return (NULL);
	for (i = 0; i < nitems(chip_table); i++) {
		for (j = 0; j < nitems(chip_table[i].magic); j++) {
			if (chip_table[i].magic[j] == 0)
				break;
			if (chip_table[i].magic[j] == v)
				return (&chip_table[i]);
		}
	}
	return (NULL);
}

/* Chip whose image extended-header chip id is id; NULL if none. */
const struct chip_info *
chip_by_image_id(int id)
{
	size_t	i;

	if (id < 0)
		return (NULL);
	for (i = 0; i < nitems(chip_table); i++) {
		if (chip_table[i].image_chip_id == id)
			return (&chip_table[i]);
	}
	return (NULL);
}

/* Chip named on a command line, as "esp32s2" or "ESP32-S2". */
const struct chip_info *
chip_by_name(const char *name)
{
	size_t	i;

	if (name == NULL)
		return (NULL);
	for (i = 0; i < nitems(chip_table); i++) {
		if (strcasecmp(chip_table[i].key, name) == 0 ||
		    strcasecmp(chip_table[i].name, name) == 0)
			return (&chip_table[i]);
	}
	return (NULL);
}

/*
 * MAC from the two eFuse words the table names.  S2/S3/C3 keep it in
 * BLOCK1 words 0-1, ESP32 in words 1-2 (bytes 2..7 of big-endian
 * (w2, w1)); with the right words passed both give the same layout:
 * mac1 bits 15..0, then mac0 bits 31..0.  ESP8266 is not decoded.
 */
void
chip_mac_from_efuse(const struct chip_info *ci, uint32_t mac0,
    uint32_t mac1, uint8_t mac[6])
{
	if (ci == NULL || ci->id == CHIP_ESP8266) {
		memset(mac, 0, 6);
		return;
	}
	mac[0] = (mac1 >> 8) & 0xff;
	mac[1] = mac1 & 0xff;
	mac[2] = (mac0 >> 24) & 0xff;
	mac[3] = (mac0 >> 16) & 0xff;
	mac[4] = (mac0 >> 8) & 0xff;
	mac[5] = mac0 & 0xff;
}

/* "7c:df:a1:00:11:22"; truncated (still terminated) if cap is short. */
void
chip_mac_format(const uint8_t mac[6], char *buf, size_t cap)
{
	if (cap == 0)
		return;
	snprintf(buf, cap, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
	    mac[2], mac[3], mac[4], mac[5]);
}

/* Flash size in bytes from a JEDEC RDID word, as esptool decodes it. */
uint32_t
chip_flash_size_from_id(uint32_t jedec)
{
	uint32_t	mfr, code, adesto;

	mfr = jedec & 0xff;
	code = (jedec >> 16) & 0xff;
	if (mfr == 0x1f) {
		/* Adesto: density in type byte bits 4..0, 4 = 512 KiB. */
		adesto = (jedec >> 8) & 0x1f;
		if (adesto >= 4 && adesto <= 9)
			return ((uint32_t)512 * 1024 << (adesto - 4));
	}
	if (code >= 0x12 && code <= 0x1c)
		return ((uint32_t)256 * 1024 << (code - 0x12));
	if (code >= 0x20 && code <= 0x22)
		return ((uint32_t)64 * 1024 * 1024 << (code - 0x20));
	if (code >= 0x32 && code <= 0x3a)
		return ((uint32_t)256 * 1024 << (code - 0x32));
	return (0);
}

/* ESP32-S2 package name from flash and PSRAM capacity in eFuse word 3. */
const char *
chip_s2_package(uint32_t word3, uint32_t word4)
{
	unsigned	flash_cap, psram_cap;

	flash_cap = (word3 >> 21) & 0xf;
	psram_cap = (word3 >> 28) & 0xf;
	switch (flash_cap + 100 * psram_cap) {
	case 0:
		return ("ESP32-S2");
	case 1:
		return ("ESP32-S2FH2");
	case 2:
		return ("ESP32-S2FH4");
	case 100:
		return ("ESP32-S2R2");
	case 102:
		return ("ESP32-S2FNR2");
	}
	return ("unknown ESP32-S2");
}

/* ESP32-S2 chip revision split over eFuse words 3 and 4. */
void
chip_s2_revision(uint32_t word3, uint32_t word4, int *major, int *minor)
{
	*major = (int)((word3 >> 18) & 3);
	*minor = (int)((((word3 >> 20) & 1) << 3) | ((word4 >> 4) & 7));
}

/* Look a VID:PID up in the table of known ports. */
static const struct chip_usb_id *
chip_usb_find(uint16_t vid, uint16_t pid)
{
	size_t	i;

	for (i = 0; i < nitems(chip_usb_ids); i++) {
		if (chip_usb_ids[i].vid == vid && chip_usb_ids[i].pid == pid)
			return (&chip_usb_ids[i]);
	}
	return (NULL);
}

/* What is behind a USB serial port, from its VID:PID alone. */
enum chip_usb_kind
chip_usb_classify(uint16_t vid, uint16_t pid)
{
	const struct chip_usb_id	*u;

	if ((u = chip_usb_find(vid, pid)) != NULL)
		return (u->kind);
	/* Any other Espressif PID is an application's own USB CDC. */
	if (vid == CHIP_ESPRESSIF_VID)
		return (USB_KIND_APP_CDC);
	return (USB_KIND_UNKNOWN);
}

/* Short label of a port kind, for tables and logs. */
const char *
chip_usb_kind_name(enum chip_usb_kind kind)
{
	switch (kind) {
	case USB_KIND_S2_ROM:
		return ("S2 ROM download");
	case USB_KIND_USB_JTAG:
		return ("USB-Serial/JTAG");
	case USB_KIND_APP_CDC:
		return ("app USB CDC");
	case USB_KIND_BRIDGE:
		return ("USB-UART bridge");
	case USB_KIND_UNKNOWN:
	case USB_KIND__MAX:
		break;
	}
	return ("unknown");
}

/* Product name of a known VID:PID, or NULL. */
const char *
chip_usb_product(uint16_t vid, uint16_t pid)
{
	const struct chip_usb_id	*u;

	if ((u = chip_usb_find(vid, pid)) == NULL)
		return (NULL);
	return (u->product);
}
