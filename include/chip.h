/*
 * The chip table: what each ESP chip looks like to a flasher (PROTOCOL.md
 * section 4).  Const data and pure lookups only.
 */
#ifndef ESPF_CHIP_H
#define ESPF_CHIP_H

#include <stddef.h>
#include <stdint.h>

enum chip_id {
	CHIP_UNKNOWN = 0,
	CHIP_ESP8266,
	CHIP_ESP32,
	CHIP_ESP32S2,
	CHIP_ESP32S3,
	CHIP_ESP32C3,
	CHIP__MAX
};

struct chip_info {
	enum chip_id	 id;
	const char	*name;		/* "ESP32-S2" */
	const char	*key;		/* "esp32s2", as on command lines */
	uint32_t	 magic[4];	/* READ_REG 0x40001000 values; 0 ends */
	int		 image_chip_id;	/* in image extended header; -1 none */
	uint32_t	 bootloader_offset;
	unsigned	 rom_status_len;
	uint32_t	 efuse_mac0;	/* eFuse words holding the MAC */
	uint32_t	 efuse_mac1;
	uint32_t	 uartdev_buf_no; /* ROM var telling USB-OTG; 0 none */
	uint32_t	 uartdev_usb_otg; /* its value on USB-OTG */
	uint32_t	 spi_base;	/* SPI_MEM1 register block */
	uint8_t		 spi_usr, spi_usr1, spi_usr2, spi_mosi_dlen,
			 spi_miso_dlen, spi_w0; /* offsets from spi_base */
	int		 has_secinfo;	/* ROM answers GET_SECURITY_INFO */
	int		 full_support;	/* espfleet can flash it end to end */
};

#define CHIP_MAGIC_REG		0x40001000u

const struct chip_info	*chip_by_id(enum chip_id);
/* Match a READ_REG 0x40001000 value; NULL if unknown. */
const struct chip_info	*chip_by_magic(uint32_t);
/* Match the chip id of an image's extended header; NULL if unknown. */
const struct chip_info	*chip_by_image_id(int);
/* "esp32s2" or "ESP32-S2"; NULL if unknown. */
const struct chip_info	*chip_by_name(const char *);

/* MAC from the two eFuse words (S2 layout; ESP32 has its own). */
void	chip_mac_from_efuse(const struct chip_info *, uint32_t mac0,
	    uint32_t mac1, uint8_t mac[6]);
/* "7c:df:a1:00:11:22" into buf (>= 18 bytes). */
void	chip_mac_format(const uint8_t mac[6], char *buf, size_t cap);
/* Flash size in bytes from a JEDEC id (mfr | type<<8 | cap<<16); 0 unknown. */
uint32_t chip_flash_size_from_id(uint32_t jedec);
/* ESP32-S2 package name ("ESP32-S2FNR2") from eFuse words 3 and 4. */
const char *chip_s2_package(uint32_t word3, uint32_t word4);
/* ESP32-S2 revision major.minor from eFuse words 3 and 4. */
void	chip_s2_revision(uint32_t word3, uint32_t word4, int *major, int *minor);

/* USB identity of a serial port: what is behind it. */
enum chip_usb_kind {
	USB_KIND_UNKNOWN = 0,
	USB_KIND_S2_ROM,	/* 303a:0002, ESP32-S2 ROM download mode */
	USB_KIND_USB_JTAG,	/* 303a:1001 USB-Serial/JTAG */
	USB_KIND_APP_CDC,	/* 303a:80xx an app's own USB CDC */
	USB_KIND_BRIDGE,	/* CP210x, CH340/CH9102/CH343, FTDI */
	USB_KIND__MAX
};
enum chip_usb_kind	 chip_usb_classify(uint16_t vid, uint16_t pid);
const char		*chip_usb_kind_name(enum chip_usb_kind);
/* Bridge or app name for a VID:PID ("CP2102N", "CH340"), or NULL. */
const char		*chip_usb_product(uint16_t vid, uint16_t pid);

#endif
