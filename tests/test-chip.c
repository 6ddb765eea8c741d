/*
 * The chip table against PROTOCOL.md section 4 and the USB table against
 * section 8.3, with worked examples for each decoding rule.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "chip.h"
#include "tap.h"
#include "util.h"

/* Magic values, image chip ids and names find the right chip. */
static void
test_lookups(void)
{
	static const uint32_t	c3[] = { 0x6921506F, 0x1B31506F,
				    0x4881606F, 0x4361606F };
	const struct chip_info	*ci;
	size_t			i;
	int			id, bad = 0;

	ci = chip_by_magic(0x000007C6);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S2, "0x000007C6 is ESP32-S2");
	ci = chip_by_magic(0x00F01D83);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32, "0x00F01D83 is ESP32");
	ci = chip_by_magic(0x00000009);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S3, "0x00000009 is ESP32-S3");
	ci = chip_by_magic(0xFFF0C101);
	tap_ok(ci != NULL && ci->id == CHIP_ESP8266, "0xFFF0C101 is ESP8266");
	for (i = 0; i < nitems(c3); i++) {
		ci = chip_by_magic(c3[i]);
		if (ci == NULL || ci->id != CHIP_ESP32C3)
			bad++;
	}
	is_int(bad, 0, "all four ESP32-C3 magics");
	tap_ok(chip_by_magic(0) == NULL, "magic 0 matches nothing");
	tap_ok(chip_by_magic(0x2CE0806F) == NULL, "ESP32-C6 magic: unknown");
	tap_ok(chip_by_magic(0x000007C7) == NULL, "0x000007C7: unknown");

	ci = chip_by_image_id(2);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S2, "image chip id 2: S2");
	ci = chip_by_image_id(0);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32, "image chip id 0: ESP32");
	ci = chip_by_image_id(9);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S3, "image chip id 9: S3");
	ci = chip_by_image_id(5);
	tap_ok(ci != NULL && ci->id == CHIP_ESP32C3, "image chip id 5: C3");
	tap_ok(chip_by_image_id(-1) == NULL, "image chip id -1: none");
	tap_ok(chip_by_image_id(13) == NULL, "image chip id 13 (C6): none");

	ci = chip_by_name("esp32s2");
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S2, "name esp32s2");
	ci = chip_by_name("ESP32-S2");
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S2, "name ESP32-S2");
	ci = chip_by_name("Esp32S2");
	tap_ok(ci != NULL && ci->id == CHIP_ESP32S2, "name Esp32S2 (any case)");
	ci = chip_by_name("esp32");
	tap_ok(ci != NULL && ci->id == CHIP_ESP32, "name esp32 is not S2");
	tap_ok(chip_by_name("esp32s4") == NULL, "esp32s4: unknown");
	tap_ok(chip_by_name(NULL) == NULL, "NULL name: unknown");

	bad = 0;
	for (id = CHIP_UNKNOWN + 1; id < CHIP__MAX; id++) {
		ci = chip_by_id((enum chip_id)id);
		if (ci == NULL || (int)ci->id != id ||
		    chip_by_name(ci->key) != ci)
			bad++;
	}
	is_int(bad, 0, "every chip id has an entry reachable by its key");
	tap_ok(chip_by_id(CHIP_UNKNOWN) == NULL, "CHIP_UNKNOWN has no entry");
}

/* The ESP32-S2 entry holds exactly the facts of PROTOCOL.md 4.2/4.3/5.2. */
static void
test_s2_entry(void)
{
	const struct chip_info	*s2, *e32;

	s2 = chip_by_id(CHIP_ESP32S2);
	e32 = chip_by_id(CHIP_ESP32);
	if (s2 == NULL || e32 == NULL) {
		tap_ok(0, "S2 and ESP32 entries exist");
		return;
	}
	is_str(s2->name, "ESP32-S2", "S2 name");
	is_int(s2->image_chip_id, 2, "S2 image chip id 2");
	is_int(s2->bootloader_offset, 0x1000, "S2 bootloader at 0x1000");
	is_int(s2->rom_status_len, 4, "S2 ROM has 4 status bytes");
	is_int(s2->efuse_mac0, 0x3F41A044, "S2 MAC word 0 address");
	is_int(s2->efuse_mac1, 0x3F41A048, "S2 MAC word 1 address");
	is_int(s2->uartdev_buf_no, 0x3FFFFD14, "S2 UARTDEV_BUF_NO");
	is_int(s2->uartdev_usb_otg, 2, "S2 USB-OTG value 2");
	is_int(s2->spi_base, 0x3F402000, "S2 SPI_MEM1 base");
	tap_ok(s2->spi_usr == 0x18 && s2->spi_usr1 == 0x1C &&
	    s2->spi_usr2 == 0x20 && s2->spi_mosi_dlen == 0x24 &&
	    s2->spi_miso_dlen == 0x28 && s2->spi_w0 == 0x58,
	    "S2 SPI register offsets");
	tap_ok(s2->has_secinfo && s2->full_support, "S2 secinfo, supported");
	is_int(e32->spi_base, 0x3FF42000, "ESP32 SPI base");
	tap_ok(e32->spi_usr == 0x1C && e32->spi_usr1 == 0x20 &&
	    e32->spi_usr2 == 0x24 && e32->spi_mosi_dlen == 0x28 &&
	    e32->spi_miso_dlen == 0x2C && e32->spi_w0 == 0x80,
	    "ESP32 SPI register offsets");
	tap_ok(!e32->has_secinfo && e32->full_support,
	    "ESP32: no secinfo, supported");
	is_int(chip_by_id(CHIP_ESP8266)->rom_status_len, 2,
	    "ESP8266 ROM has 2 status bytes");
	is_int(chip_by_id(CHIP_ESP32S3)->uartdev_buf_no, 0x3FCEF14C,
	    "S3 UARTDEV_BUF_NO");
	is_int(chip_by_id(CHIP_ESP32S3)->uartdev_usb_otg, 3, "S3 OTG value 3");
	is_int(chip_by_id(CHIP_ESP32C3)->bootloader_offset, 0,
	    "C3 bootloader at 0x0");
}

/* MAC decoding: S2 BLOCK1 words 0-1, ESP32 eFuse words 1-2. */
static void
test_mac(void)
{
	static const uint8_t	want_s2[] = { 0x7c, 0xdf, 0xa1, 0x00, 0x11,
				    0x22 };
	static const uint8_t	want_e32[] = { 0x24, 0x0a, 0xc4, 0x12, 0x34,
				    0x56 };
	uint8_t			mac[6];
	char			buf[18], small[9];

	/* S2: mac1 low 16 bits are the first two bytes; high bits ignored. */
	chip_mac_from_efuse(chip_by_id(CHIP_ESP32S2), 0xA1001122, 0xABCD7CDF,
	    mac);
	is_mem(mac, want_s2, 6,
	    "S2 mac0 0xA1001122 mac1 0xABCD7CDF -> 7c:df:a1:00:11:22");
	chip_mac_format(mac, buf, sizeof(buf));
	is_str(buf, "7c:df:a1:00:11:22", "MAC formatted");
	chip_mac_format(mac, small, sizeof(small));
	is_str(small, "7c:df:a1", "short buffer truncates and terminates");

	/*
	 * ESP32: w1 = 0xC4123456 at 0x3FF5A004, w2 = 0x00B5240A at
	 * 0x3FF5A008 (0xB5 is the CRC byte); BE(w2, w1) is
	 * 00 b5 24 0a c4 12 34 56, bytes 2..7 are the MAC.
	 */
	is_int(chip_by_id(CHIP_ESP32)->efuse_mac0, 0x3FF5A004,
	    "ESP32 mac0 is eFuse word 1");
	is_int(chip_by_id(CHIP_ESP32)->efuse_mac1, 0x3FF5A008,
	    "ESP32 mac1 is eFuse word 2");
	chip_mac_from_efuse(chip_by_id(CHIP_ESP32), 0xC4123456, 0x00B5240A,
	    mac);
	is_mem(mac, want_e32, 6, "ESP32 w1 0xC4123456 w2 0x00B5240A -> "
	    "24:0a:c4:12:34:56 (CRC byte dropped)");
}

/* JEDEC id to flash size (PROTOCOL.md 4.3). */
static void
test_flash_size(void)
{
	const uint32_t	M = 1024 * 1024, K = 1024;

	is_int(chip_flash_size_from_id(0x1640C8), 4 * M,
	    "GigaDevice 0x1640C8 -> 4 MiB");
	is_int(chip_flash_size_from_id(0x1840EF), 16 * M,
	    "Winbond 0x1840EF -> 16 MiB");
	is_int(chip_flash_size_from_id(0x120000), 256 * K, "code 0x12 256 KiB");
	is_int(chip_flash_size_from_id(0x154068), 2 * M, "code 0x15 2 MiB");
	is_int(chip_flash_size_from_id(0x1C0000), 256 * M, "code 0x1C 256 MiB");
	is_int(chip_flash_size_from_id(0x20BA20), 64 * M, "code 0x20 64 MiB");
	is_int(chip_flash_size_from_id(0x21BA20), 128 * M,
	    "code 0x21 128 MiB");
	is_int(chip_flash_size_from_id(0x22BA20), 256 * M,
	    "code 0x22 256 MiB");
	is_int(chip_flash_size_from_id(0x32605E), 256 * K,
	    "code 0x32 256 KiB");
	is_int(chip_flash_size_from_id(0x36605E), 4 * M, "code 0x36 4 MiB");
	is_int(chip_flash_size_from_id(0x3A605E), 64 * M, "code 0x3A 64 MiB");
	is_int(chip_flash_size_from_id(0x01841F), 512 * K,
	    "Adesto type 0x84 -> 512 KiB");
	is_int(chip_flash_size_from_id(0x01891F), 16 * M,
	    "Adesto type 0x89 -> 16 MiB");
	is_int(chip_flash_size_from_id(0xFFFFFF), 0, "0xFFFFFF: unknown");
	is_int(chip_flash_size_from_id(0x000000), 0, "0x000000: unknown");
	is_int(chip_flash_size_from_id(0x1D40C8), 0, "code 0x1D: unknown");
	is_int(chip_flash_size_from_id(0x3B40C8), 0, "code 0x3B: unknown");
	is_int(chip_flash_size_from_id(0x11BA20), 0, "code 0x11: unknown");
}

/* S2 package names and revision from eFuse words 3 and 4. */
static void
test_s2_package(void)
{
	int	major = -1, minor = -1;

	is_str(chip_s2_package(0, 0), "ESP32-S2", "no flash, no PSRAM");
	is_str(chip_s2_package(1u << 21, 0), "ESP32-S2FH2", "flash cap 1");
	is_str(chip_s2_package(2u << 21, 0), "ESP32-S2FH4", "flash cap 2");
	is_str(chip_s2_package(1u << 28, 0), "ESP32-S2R2", "PSRAM cap 1");
	is_str(chip_s2_package((1u << 28) | (2u << 21), 0), "ESP32-S2FNR2",
	    "Lolin S2 mini: flash 2 + PSRAM 1 -> ESP32-S2FNR2");
	is_str(chip_s2_package((1u << 28) | (2u << 21) | 0x1FFFFF, 0xF),
	    "ESP32-S2FNR2", "other bits do not change the package");
	is_str(chip_s2_package(3u << 21, 0), "unknown ESP32-S2",
	    "flash cap 3: unknown");

	chip_s2_revision((1u << 18) | (1u << 20), 3u << 4, &major, &minor);
	tap_ok(major == 1 && minor == 11, "major bit 18, minor 8|3 -> v1.11");
	chip_s2_revision(0, 0, &major, &minor);
	tap_ok(major == 0 && minor == 0, "zero eFuses -> v0.0");
	chip_s2_revision(~(3u << 18) & ~(1u << 20), ~(7u << 4), &major,
	    &minor);
	tap_ok(major == 0 && minor == 0, "only the revision bits count");
	chip_s2_revision(3u << 18, 0x7F, &major, &minor);
	tap_ok(major == 3 && minor == 7, "major 3, minor 7 from word 4");
}

/* USB VID:PID classification and product names (PROTOCOL.md 8.3). */
static void
test_usb(void)
{
	static const struct {
		uint16_t		 vid, pid;
		enum chip_usb_kind	 kind;
		const char		*product;
	} t[] = {
		{ 0x303a, 0x0002, USB_KIND_S2_ROM, "ESP32-S2 ROM" },
		{ 0x303a, 0x1001, USB_KIND_USB_JTAG, "USB-Serial/JTAG" },
		{ 0x303a, 0x80c2, USB_KIND_APP_CDC, "Lolin S2 Mini" },
		{ 0x303a, 0x8001, USB_KIND_APP_CDC, NULL },
		{ 0x10c4, 0xea60, USB_KIND_BRIDGE, "CP2102N" },
		{ 0x10c4, 0xea64, USB_KIND_BRIDGE, "CP2102C" },
		{ 0x10c4, 0xea70, USB_KIND_BRIDGE, "CP2105" },
		{ 0x10c4, 0xea71, USB_KIND_BRIDGE, "CP2108" },
		{ 0x1a86, 0x7523, USB_KIND_BRIDGE, "CH340" },
		{ 0x1a86, 0x55d4, USB_KIND_BRIDGE, "CH9102" },
		{ 0x1a86, 0x55d3, USB_KIND_BRIDGE, "CH343" },
		{ 0x0403, 0x6001, USB_KIND_BRIDGE, "FT232R" },
		{ 0x0403, 0x6010, USB_KIND_BRIDGE, "FT2232" },
		{ 0x0403, 0x6014, USB_KIND_BRIDGE, "FT232H" },
		{ 0x0403, 0x6015, USB_KIND_BRIDGE, "FT231X" },
		{ 0x10c4, 0xea61, USB_KIND_UNKNOWN, NULL },
		{ 0x0403, 0x6011, USB_KIND_UNKNOWN, NULL },
		{ 0x046d, 0xc52b, USB_KIND_UNKNOWN, NULL },
		{ 0x0002, 0x303a, USB_KIND_UNKNOWN, NULL },
	};
	const char	*p;
	size_t		 i;
	int		 k;

	for (i = 0; i < nitems(t); i++) {
		is_int(chip_usb_classify(t[i].vid, t[i].pid), t[i].kind,
		    "%04x:%04x kind", t[i].vid, t[i].pid);
		p = chip_usb_product(t[i].vid, t[i].pid);
		if (t[i].product == NULL)
			tap_ok(p == NULL, "%04x:%04x has no product name",
			    t[i].vid, t[i].pid);
		else
			tap_ok(p != NULL && strstr(p, t[i].product) != NULL,
			    "%04x:%04x product \"%s\" names %s", t[i].vid,
			    t[i].pid, p ? p : "(null)", t[i].product);
	}
	for (k = 0; k < USB_KIND__MAX; k++) {
		p = chip_usb_kind_name((enum chip_usb_kind)k);
		tap_ok(p != NULL && *p != '\0', "kind %d has a name (%s)", k,
		    p ? p : "(null)");
	}
	is_str(chip_usb_kind_name(USB_KIND_UNKNOWN), "unknown",
	    "USB_KIND_UNKNOWN is \"unknown\"");
}

/* Run every chip test. */
int
main(void)
{
	test_lookups();
	test_s2_entry();
	test_mac();
	test_flash_size();
	test_s2_package();
	test_usb();
	return (tap_done());
}
