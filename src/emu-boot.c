/*
 * The emulated unit's life across resets: a chip reset samples the straps
 * and either waits for download or boots what is in flash the way the ROM
 * and the 2nd-stage bootloader do (image headers, partition table,
 * otadata, app descriptor), printing their lines and the app's banner.
 * Apart from emu.c because it reads images, not requests.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "chip.h"
#include "emu.h"
#include "image.h"
#include "util.h"
#include "emu-private.h"

/* Strap bit 3: GPIO0 level at the last reset (PROTOCOL.md 5.5). */
#define EMU_STRAP_GPIO0		0x08
#define EMU_BOOTLOADER_OFF	0x1000u

/* Append printf-style text to a bounded buffer (cut when full). */
static void printflike(3, 4)
emu_boot_text(char *buf, size_t cap, const char *fmt, ...)
{
	va_list	ap;
	size_t	len = strlen(buf);

	if (len + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

/* Remember a boot line (the last one wins) and add it to the text. */
static void printflike(4, 5)
emu_boot_say(struct emu *e, char *buf, size_t cap, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(e->boot_line, sizeof(e->boot_line), fmt, ap);
	va_end(ap);
	emu_boot_text(buf, cap, "%s\r\n", e->boot_line);
}

/* The ROM's reset line: reason code and name, boot mode. */
static void
emu_boot_rst_line(const struct emu *e, enum emu_reason why, int download,
    char *buf, size_t cap)
{
	unsigned	 code = 0x1;
	const char	*name = "POWERON";

	if (why == EMU_RS_WDT_RESET) {
		code = 0x10;
		name = "RTCWDT_RTC_RST";
	} else if (why == EMU_RS_APP_RESTART || why == EMU_RS_SW_RESET) {
		code = 0x3;
		name = "RTC_SW_SYS_RST";
	}
	if (e->chip->id == CHIP_ESP32) {
		/* The ESP32 ROM's names: ..._RESET, software reset 0xC. */
		if (code == 0x10)
			name = "RTCWDT_RTC_RESET";
		else if (code == 0x3) {
			code = 0xc;
			name = "SW_CPU_RESET";
		} else
			name = "POWERON_RESET";
		emu_boot_text(buf, cap, "ets Jun  8 2016 00:22:57\r\n\r\n"
		    "rst:0x%x (%s),boot:%s\r\n", code, name,
		    download ?
		    "0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))" :
		    "0x13 (SPI_FAST_FLASH_BOOT)");
		return;
	}
	emu_boot_text(buf, cap, "ESP-ROM:esp32s2-rc4-20191025\r\n"
	    "Build:Oct 25 2019\r\nrst:0x%x (%s),boot:%s\r\n", code, name,
	    download ?
	    "0x0 (DOWNLOAD(USB/UART0/1))" : "0x8 (SPI_FAST_FLASH_BOOT)");
}

/* Pick the app partition as the 2nd-stage bootloader does; NULL: none. */
static const struct part_entry *
emu_boot_pick_app(struct emu *e, const struct part_table *pt, char *buf,
    size_t cap)
{
	const struct part_entry	*od = NULL, *factory = NULL, *ota[16];
	uint32_t		 seq;
	size_t			 i, nota = 0, k;

	memset(ota, 0, sizeof(ota));
	for (i = 0; i < pt->n; i++) {
		if (pt->e[i].type == IMAGE_PART_DATA &&
		    pt->e[i].subtype == IMAGE_PART_DATA_OTA && od == NULL)
			od = &pt->e[i];
		if (pt->e[i].type != IMAGE_PART_APP)
			continue;
		if (pt->e[i].subtype == IMAGE_PART_APP_FACTORY &&
		    factory == NULL)
			factory = &pt->e[i];
		if (pt->e[i].subtype >= IMAGE_PART_APP_OTA_MIN &&
		    pt->e[i].subtype <= IMAGE_PART_APP_OTA_MAX) {
			k = pt->e[i].subtype - IMAGE_PART_APP_OTA_MIN;
			if (ota[k] == NULL) {
				ota[k] = &pt->e[i];
				nota++;
			}
		}
	}
	if (od != NULL && nota > 0 && (uint64_t)od->offset + 2 * IMAGE_SECTOR
	    <= e->flash_size && image_parse_otadata(e->flash + od->offset,
	    MINIMUM(od->size, 2 * IMAGE_SECTOR), &seq) == 0) {
		k = (seq - 1) % nota;
		for (i = 0; i < nitems(ota); i++) {
			if (ota[i] != NULL && k-- == 0)
				return (ota[i]);
		}
	}
	if (factory != NULL)
		return (factory);
	for (i = 0; i < nitems(ota); i++) {
		if (ota[i] != NULL) {
			emu_boot_text(buf, cap, "I (60) boot: No factory "
			    "image, trying OTA %zu\r\n", i);
			return (ota[i]);
		}
	}
	emu_boot_say(e, buf, cap, "E (60) boot: No bootable app partitions "
	    "in the partition table");
	return (NULL);
}

/* Check one ESP image in flash the way its loader does; 0 when valid. */
static int
emu_boot_check_image(struct emu *e, uint32_t off, uint32_t size,
    struct image_header *h, char *buf, size_t cap)
{
	int	rc;

	if (off >= e->flash_size)
		size = 0;
	else
		size = MINIMUM(size, e->flash_size - off);
	rc = image_parse_header(e->flash + off, size, h);
	if (rc == -EINVAL) {
		if (off == EMU_BOOTLOADER_OFF)
			emu_boot_say(e, buf, cap, "invalid header: 0x%08x",
			    size >= 4 ? le32_get(e->flash + off) : 0xffffffff);
		else
			emu_boot_say(e, buf, cap, "E (70) esp_image: image at "
			    "0x%x has invalid magic byte (nothing flashed "
			    "here?)", off);
		return (-1);
	}
	if (rc != 0) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: image at 0x%x: "
		    "%s", off, h->why);
		return (-1);
	}
	if (e->chip->image_chip_id >= 0 &&
	    h->chip_id != (uint16_t)e->chip->image_chip_id) {
		emu_boot_say(e, buf, cap, "E (70) boot_comm: mismatch chip "
		    "ID, expected %d, found %u", e->chip->image_chip_id,
		    h->chip_id);
		return (-1);
	}
	if (!h->checksum_ok) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: Checksum failed. "
		    "Calculated 0x%x read 0x%x", h->checksum_calc,
		    h->checksum);
		return (-1);
	}
	if (h->hash_ok == 0) {
		emu_boot_say(e, buf, cap, "E (70) esp_image: Image hash failed "
		    "- image is corrupt");
		return (-1);
	}
	return (0);
}

/*
 * Boot what is in flash: the 2nd-stage bootloader at 0x1000, the
 * partition table at 0x8000, the app otadata or the factory entry picks,
 * its header, checksum and app descriptor.  What the ROM and bootloader
 * print goes to buf, the app's banner to app.  0 when the app runs.
 */
static int
emu_boot_check(struct emu *e, char *buf, size_t cap, char *app,
    size_t appcap)
{
	struct image_header	 h;
	struct part_table	 pt;
	struct image_app_desc	 d;
	struct image_esphome	 eh;
	const struct part_entry	*p;

	if (emu_boot_check_image(e, EMU_BOOTLOADER_OFF,
	    IMAGE_PART_OFFSET - EMU_BOOTLOADER_OFF, &h, buf, cap) != 0)
		return (-1);
	emu_boot_text(buf, cap, "I (29) boot: ESP-IDF 2nd stage "
	    "bootloader\r\n");
	if (image_parse_partitions(e->flash + IMAGE_PART_OFFSET,
	    IMAGE_PART_MAX_LEN, &pt) != 0 || (pt.has_md5 && !pt.md5_ok)) {
		emu_boot_text(buf, cap, "E (53) boot: Failed to verify "
		    "partition table\r\n");
		emu_boot_say(e, buf, cap, "E (58) boot: load partition table "
		    "error!");
		return (-1);
	}
	if ((p = emu_boot_pick_app(e, &pt, buf, cap)) == NULL)
		return (-1);
	if (emu_boot_check_image(e, p->offset, p->size, &h, buf, cap) != 0)
		goto bad;
	if (image_parse_app_desc(e->flash + p->offset, MINIMUM(p->size,
	    e->flash_size - p->offset), &d) != 0) {
		emu_boot_say(e, buf, cap, "E (75) esp_image: no app descriptor "
		    "(magic 0x%08x) in the image at 0x%x",
		    IMAGE_APP_DESC_MAGIC, p->offset);
		goto bad;
	}
	emu_boot_text(buf, cap, "I (90) boot: Loaded app from partition at "
	    "offset 0x%x\r\n", p->offset);
	emu_boot_say(e, app, appcap, "I (312) app_init: Project name:     %s",
	    d.project_name);
	emu_boot_say(e, app, appcap, "I (312) app_init: App version:      %s",
	    d.version);
	emu_boot_say(e, app, appcap, "I (312) app_init: Compile time:     "
	    "%s %s", d.date, d.time);
	emu_boot_say(e, app, appcap, "I (312) app_init: ESP-IDF:          %s",
	    d.idf_ver);
	if (image_find_esphome(e->flash + p->offset, h.image_len, &eh) ==
	    0) {
		emu_boot_say(e, app, appcap, "[I][app:029]: Running through "
		    "setup()...");
		emu_boot_say(e, app, appcap, "[C][app:102]: ESPHome version "
		    "%s compiled on %s, %s", eh.version, d.date, d.time);
	}
	return (0);
bad:
	emu_boot_say(e, buf, cap, "E (80) boot: %s app partition is not "
	    "bootable", p->subtype == IMAGE_PART_APP_FACTORY ? "Factory" :
	    "OTA");
	return (-1);
}

/* Queue text the unit prints, due after the boot time. */
static void
emu_boot_print(struct emu *e, const char *text, uint64_t after_us)
{
	size_t	len = strlen(text);

	if (len == 0)
		return;
	emu_queue(e, text, len, e->t + after_us + emu_wire_us(e, len));
}

/*
 * Run the app in flash, or fall back into download mode printing why.  On
 * native USB the port is new: only the app's own output shows there (none
 * from a silent app); a bridge port also shows the ROM and bootloader.
 */
void
emu_boot_flash(struct emu *e, enum emu_reason why)
{
	char	text[2048], app[1024];

	text[0] = app[0] = '\0';
	e->boot_line[0] = '\0';
	if (why != EMU_RS_RUN_USER_CODE)
		emu_boot_rst_line(e, why, 0, text, sizeof(text));
	if (emu_boot_check(e, text, sizeof(text), app, sizeof(app)) == 0) {
		e->boot_ok = 1;
		e->state = EMU_ST_APP;
		if (e->app_silent)
			e->boot_line[0] = app[0] = '\0';
		if (e->link == EMU_LINK_USB)
			text[0] = '\0';
		emu_boot_text(text, sizeof(text), "%s", app);
		emu_boot_print(e, text, emu_fixed_us(e, EMU_BOOT_US));
		return;
	}
	/* A bad image: the unit loops back into download mode. */
	e->boot_ok = 0;
	e->state = EMU_ST_DOWNLOAD;
	emu_boot_text(text, sizeof(text), "waiting for download\r\n");
	emu_boot_print(e, text, 0);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
}

/*
 * A chip reset at time at: everything volatile goes, the USB port goes
 * away and comes back (generation), the straps are sampled: GPIO0 low or
 * FORCE_DOWNLOAD_BOOT (S2) -> ROM download mode, else boot from flash.
 */
void
emu_boot_reset(struct emu *e, uint64_t at, enum emu_reason why, int gpio0_low)
{
	char	text[512];

	emu_queue_cut(e, at);
	emu_clear(e);
	e->t = MAXIMUM(at, e->t);
	e->busy_until = e->t;
	e->en_sample = e->restart_due = 0;
	e->tusb = 0;
	e->st.resets++;
	if (e->link == EMU_LINK_USB)
		e->gen++;	/* a bridge's port never goes away */
	e->reason = why;
	e->strap = gpio0_low ? 0 : EMU_STRAP_GPIO0;
	if (!gpio0_low && !(e->force_dl && e->chip->id == CHIP_ESP32S2)) {
		emu_boot_flash(e, why);
		return;
	}
	e->state = EMU_ST_DOWNLOAD;
	text[0] = '\0';
	emu_boot_rst_line(e, why, 1, text, sizeof(text));
	emu_boot_text(text, sizeof(text), "waiting for download\r\n");
	emu_boot_print(e, text, 0);
	e->deaf_until = e->t + emu_fixed_us(e, EMU_REBOOT_US);
}

/* The last line of the last boot. */
const char *
emu_boot_line(const struct emu *e)
{
	return (e->boot_line);
}

/* Whether the last boot found a valid app. */
int
emu_boot_ok(const struct emu *e)
{
	return (e->boot_ok);
}
