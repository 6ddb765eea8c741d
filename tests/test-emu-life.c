/*
 * A unit's life in the emulator (config.boot): booting what is in flash
 * after a watchdog or hard reset (valid images run and print a banner, bad
 * ones print the ROM's errors and loop into download mode), the board
 * models that get a unit into download mode (bridge transistor pair,
 * ESP-IDF CDC console, Arduino TinyUSB, apps that ignore every trick),
 * the sticky FORCE_DOWNLOAD_BOOT bit, and the reenum, phase-unplug and
 * slow-flash faults.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "emu.h"
#include "image.h"
#include "proto.h"
#include "slip.h"
#include "util.h"
#include "tap.h"

#define FLASH_SIZE	(4u * 1024 * 1024)
#define OPTION1		0x3F408128u
#define STRAP		0x3F404038u
#define APP0		0x10000u
#define APP1		0x1D0000u
#define OTADATA		0xE000u

/* One emulator, its flash, and a clock the test moves by hand. */
struct life {
	struct emu	*e;
	uint8_t		*flash;
	uint64_t	 now;
	char		 text[65536];	/* bytes seen, NUL-terminated */
	size_t		 len;
	uint8_t		 frames[16][128];
	size_t		 flen[16];
	size_t		 nframes;
};

static void	life_run(struct life *, uint64_t);

/* Build an emulator over a flash buffer the test filled. */
static void
life_init(struct life *l, uint8_t *flash, enum emu_board board, int start_app,
    int silent, const struct emu_fault *faults, size_t nfaults)
{
	struct emu_config	 cfg;
	char			*cause = NULL;

	memset(l, 0, sizeof(*l));
	memset(&cfg, 0, sizeof(cfg));
	cfg.chip = CHIP_ESP32S2;
	cfg.profile = EMU_PROFILE_FAST;
	cfg.flash_size = FLASH_SIZE;
	cfg.flash = flash;
	cfg.boot = 1;
	cfg.board = board;
	cfg.start_app = start_app;
	cfg.app_silent = silent;
	cfg.stub_model = 1;
	cfg.faults = faults;
	cfg.nfaults = nfaults;
	l->flash = flash;
	l->e = emu_new(&cfg, &cause);
	if (l->e == NULL) {
		printf("Bail out! emu_new: %s\n", cause);
		exit(1);
	}
	l->now = 1000000;
	life_run(l, l->now);
}

/* Move the clock to now and collect everything due (text and frames). */
static void
life_run(struct life *l, uint64_t until)
{
	struct slip_dec	d;
	uint8_t		buf[4096], fb[1024];
	size_t		n, i, start = l->len;
	uint64_t	due;

	for (;;) {
		due = emu_next_due_us(l->e);
		if (due > until)
			due = until;
		if (due > l->now)
			l->now = due;
		n = emu_drain(l->e, buf, sizeof(buf), l->now);
		if (n > 0 && l->len + n < sizeof(l->text)) {
			memcpy(l->text + l->len, buf, n);
			l->len += n;
			l->text[l->len] = '\0';
		}
		if (n == 0 && l->now >= until)
			break;
		if (n == 0 && emu_next_due_us(l->e) > until) {
			l->now = until;
			(void)emu_drain(l->e, buf, 0, l->now);
			break;
		}
	}
	slip_dec_init(&d, fb, sizeof(fb));
	l->nframes = 0;
	for (i = start; i < l->len; i++) {
		if (slip_dec_byte(&d, (uint8_t)l->text[i]) != SLIP_FRAME)
			continue;
		if (l->nframes < 16 && d.len <= sizeof(l->frames[0])) {
			memcpy(l->frames[l->nframes], d.buf, d.len);
			l->flen[l->nframes++] = d.len;
		}
	}
}

/* Forget the text seen so far. */
static void
life_clear(struct life *l)
{
	l->len = 0;
	l->text[0] = '\0';
}

/* Send one request and run the clock 10 ms on. */
static void
life_send(struct life *l, const uint8_t *req, size_t len)
{
	uint8_t	wire[SLIP_ENCODED_MAX(PROTO_MAX_REQ)];
	size_t	w;

	w = slip_encode(wire, sizeof(wire), req, len);
	emu_feed(l->e, wire, w, l->now);
	life_run(l, l->now + 10000);
}

/* READ_REG; 0xdeadbeef without an OK reply. */
static uint32_t
life_read_reg(struct life *l, uint32_t addr)
{
	uint8_t			req[64];
	struct proto_resp	rs;

	life_send(l, req, proto_build_read_reg(req, sizeof(req), addr));
	if (l->nframes == 0 || proto_parse_resp(l->frames[0], l->flen[0], 4,
	    &rs) != 0 || rs.status != 0)
		return (0xdeadbeef);
	return (rs.value);
}

/* WRITE_REG with a full mask. */
static void
life_write_reg(struct life *l, uint32_t addr, uint32_t value)
{
	uint8_t	req[64];

	life_send(l, req, proto_build_write_reg(req, sizeof(req), addr, value,
	    0xffffffff, 0));
}

/* esptool's watchdog_reset (PROTOCOL.md 5.5), then 100 ms pass. */
static void
life_wdt(struct life *l)
{
	life_write_reg(l, 0x3F4080AC, 0x50D83AA1);
	life_write_reg(l, 0x3F408098, 2000);
	life_write_reg(l, 0x3F408094, 0xD0000102);
	life_write_reg(l, 0x3F4080AC, 0);
	life_run(l, l->now + 100000);
}

/* Set the lines at the current time, then 60 ms pass. */
static void
life_lines(struct life *l, int dtr, int rts)
{
	emu_set_lines(l->e, dtr, rts, l->now);
	life_run(l, l->now + 60000);
}

/* Does the text seen contain s? */
static int
life_saw(const struct life *l, const char *s)
{
	return (memmem(l->text, l->len, s, strlen(s)) != NULL);
}

/* The USB pid the unit shows now (0 when unplugged). */
static unsigned
life_pid(const struct life *l)
{
	uint16_t	vid = 0, pid = 0;

	if (emu_usb_id(l->e, &vid, &pid) != 0)
		return (0);
	return (vid == 0x303a ? pid : 0xffff);
}

/* ---------------------------------------------------------------- */
/* Synthetic images                                                  */
/* ---------------------------------------------------------------- */

/* One-segment ESP image at p; returns its length. */
static size_t
mk_image(uint8_t *p, uint16_t chip_id, const uint8_t *seg, size_t seglen)
{
	size_t		off, i;
	uint8_t		cs = IMAGE_CHECKSUM_SEED;

	memset(p, 0, 24);
	p[0] = IMAGE_MAGIC;
	p[1] = 1;
	p[2] = 2;		/* DIO */
	p[3] = 0x2f;		/* 4 MB, 80 MHz */
	le32_put(p + 4, 0x40022000);
	p[8] = 0xee;
	le16_put(p + 12, chip_id);
	le16_put(p + 17, 0xffff);
	le32_put(p + 24, 0x3ffe0000);
	le32_put(p + 28, (uint32_t)seglen);
	memcpy(p + 32, seg, seglen);
	for (i = 0; i < seglen; i++)
		cs ^= seg[i];
	off = 32 + seglen;
	while ((off & 15) != 15)
		p[off++] = 0;
	p[off++] = cs;
	return (off);
}

/* An app image with an app descriptor and maybe an ESPHome string. */
static size_t
mk_app(uint8_t *p, const char *project, const char *version, int esphome)
{
	uint8_t	seg[512];

	memset(seg, 0, sizeof(seg));
	le32_put(seg, IMAGE_APP_DESC_MAGIC);
	memcpy(seg + 16, version, strlen(version));
	memcpy(seg + 48, project, strlen(project));
	memcpy(seg + 80, "10:11:12", 8);
	memcpy(seg + 96, "Apr 20 2023", 11);
	memcpy(seg + 112, "v4.4.4", 6);
	if (esphome)
		memcpy(seg + 200, "ESPHome version 2023.6.3 compiled on",
		    36);
	return (mk_image(p, 2, seg, sizeof(seg)));
}

/* One partition table entry. */
static void
mk_part(uint8_t *p, uint8_t type, uint8_t subtype, uint32_t off,
    uint32_t size, const char *label)
{
	memset(p, 0, 32);
	p[0] = 0xaa;
	p[1] = 0x50;
	p[2] = type;
	p[3] = subtype;
	le32_put(p + 4, off);
	le32_put(p + 8, size);
	memcpy(p + 12, label, strlen(label));
}

/* A whole flash: bootloader, table (nvs, otadata, ota_0, ota_1), app. */
static void
mk_flash(uint8_t *f)
{
	uint8_t	boot[64], *t = f + 0x8000;

	memset(f, 0xff, FLASH_SIZE);
	memset(boot, 0x5a, sizeof(boot));
	mk_image(f + 0x1000, 2, boot, sizeof(boot));
	mk_part(t, 1, 2, 0x9000, 0x5000, "nvs");
	mk_part(t + 32, 1, 0, OTADATA, 0x2000, "otadata");
	mk_part(t + 64, 0, 0x10, APP0, 0x1C0000, "app0");
	mk_part(t + 96, 0, 0x11, APP1, 0x1C0000, "app1");
	memset(t + 128, 0xff, 32);
	t[128] = t[129] = 0xeb;
	digest_md5(t, 128, t + 128 + 16);
	mk_app(f + APP0, "testproj", "1.2.3", 1);
}

/* ---------------------------------------------------------------- */
/* Tests                                                             */
/* ---------------------------------------------------------------- */

/* A valid image boots after the watchdog reset; bad ones loop. */
static void
test_boot(uint8_t *f)
{
	struct life	l;
	uint8_t		e[32];
	uint64_t	gen;

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	is_int(life_pid(&l), 0x0002, "download mode shows 303a:0002");
	is_int((long long)life_read_reg(&l, STRAP) & 0x8, 0,
	    "GPIO_STRAP says GPIO0 was low");
	gen = emu_generation(l.e);
	life_clear(&l);
	life_wdt(&l);
	is_str(emu_state_name(emu_state(l.e)), "app",
	    "watchdog reset with a valid image: state app");
	is_str(emu_reason_name(emu_reason(l.e)), "watchdog-reset",
	    "reason watchdog-reset");
	is_int(life_pid(&l), 0x80c2, "the app re-enumerates as 303a:80c2");
	tap_ok(emu_generation(l.e) == gen + 1, "generation bumped once");
	tap_ok(life_saw(&l, "app_init: Project name:     testproj\r\n"),
	    "banner: project name from the app descriptor");
	tap_ok(life_saw(&l, "App version:      1.2.3\r\n"),
	    "banner: app version");
	tap_ok(life_saw(&l, "[I][app:029]: Running through setup()...") &&
	    life_saw(&l, "ESPHome version 2023.6.3 compiled on"),
	    "banner: ESPHome lines");
	tap_ok(!life_saw(&l, "ESP-ROM:"), "no ROM text on the new USB port");
	tap_ok(emu_boot_ok(l.e) && strstr(emu_boot_line(l.e),
	    "ESPHome version 2023.6.3") != NULL, "boot_ok and boot_line");
	emu_free(l.e);

	/* Bad app checksum. */
	mk_flash(f);
	f[APP0 + 40] ^= 0x01;
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	is_str(emu_state_name(emu_state(l.e)), "download",
	    "bad app checksum: back in download mode");
	tap_ok(life_saw(&l, "esp_image: Checksum failed.") &&
	    life_saw(&l, "waiting for download"),
	    "the checksum error and 'waiting for download' are printed");
	is_int(life_pid(&l), 0x0002, "the port is the ROM's again");
	tap_ok(!emu_boot_ok(l.e) && strstr(emu_boot_line(l.e),
	    "not bootable") != NULL, "boot_line names the failure");
	is_int((long long)life_read_reg(&l, 0x40001000), 0x000007C6,
	    "and the ROM answers commands");
	emu_free(l.e);

	/* Empty flash. */
	memset(f, 0xff, FLASH_SIZE);
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD &&
	    life_saw(&l, "invalid header: 0xffffffff\r\n") &&
	    life_saw(&l, "rst:0x10 (RTCWDT_RTC_RST),boot:0x8"),
	    "empty flash: 'invalid header: 0xffffffff', download mode");
	emu_free(l.e);

	/* Partition table MD5 wrong. */
	mk_flash(f);
	f[0x8000 + 12] = 'X';
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD &&
	    life_saw(&l, "boot: load partition table error!"),
	    "partition table MD5 mismatch: load partition table error");
	emu_free(l.e);

	/* A bootloader for another chip (ESP32, id 0). */
	mk_flash(f);
	memset(e, 0, sizeof(e));
	mk_image(f + 0x1000, 0, e, sizeof(e));
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD &&
	    life_saw(&l, "mismatch chip ID, expected 2, found 0"),
	    "bootloader for chip id 0: mismatch chip ID");
	emu_free(l.e);

	/* No app descriptor. */
	mk_flash(f);
	memset(e, 0x11, sizeof(e));
	memset(f + APP0, 0xff, 0x1000);
	mk_image(f + APP0, 2, e, sizeof(e));
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD &&
	    life_saw(&l, "no app descriptor"),
	    "an app without 0xABCD5432 descriptor does not boot");
	emu_free(l.e);

	/* otadata seq 2 selects ota_1. */
	mk_flash(f);
	mk_app(f + APP1, "second", "2.0", 0);
	memset(e, 0xff, sizeof(e));
	le32_put(e, 2);
	le32_put(e + 24, 2);	/* VALID */
	le32_put(e + 28, (uint32_t)crc32(UINT32_MAX, e, 4));
	memcpy(f + OTADATA, e, sizeof(e));
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_APP &&
	    life_saw(&l, "Project name:     second\r\n") &&
	    !life_saw(&l, "ESPHome"), "otadata seq 2 boots ota_1");
	/* Its CRC wrong: back to ota_0 (no factory partition). */
	f[OTADATA + 28] ^= 0xff;
	life_clear(&l);
	emu_press_rst(l.e, l.now);
	life_run(&l, l.now + 1000);
	tap_ok(emu_state(l.e) == EMU_ST_APP &&
	    life_saw(&l, "Project name:     testproj\r\n"),
	    "RST with a bad otadata CRC boots ota_0");
	emu_free(l.e);

	/* A silent app: up, but nothing on its port. */
	mk_flash(f);
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 1, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_APP && !life_saw(&l, "app_init") &&
	    !life_saw(&l, "\r\n") &&
	    life_pid(&l) == 0x80c2 && emu_boot_line(l.e)[0] == '\0',
	    "silent app: state app, port 80c2, no text");
	emu_free(l.e);
}

/* The real factory image boots and shows its ESPHome version. */
static void
test_real(uint8_t *f)
{
	struct life	 l;
	const char	*dir;
	char		 path[4096];
	FILE		*fp;
	size_t		 n;

	if ((dir = getenv("ESPF_SHARED")) == NULL)
		dir = "../shared";
	snprintf(path, sizeof(path), "%s/firmware/"
	    "factory-screek-humen-sensor-1u-20230704_1.bin", dir);
	memset(f, 0xff, FLASH_SIZE);
	if ((fp = fopen(path, "rb")) == NULL) {
		/* A TAP SKIP directive per test, not a pass. */
		tap_ok(1, "# SKIP no factory image in %s/firmware", dir);
		tap_ok(1, "# SKIP no factory image in %s/firmware", dir);
		return;
	}
	n = fread(f, 1, FLASH_SIZE, fp);
	fclose(fp);
	tap_ok(n == 994112, "read the factory image");
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_APP &&
	    life_saw(&l, "Project name:     arduino-lib-builder") &&
	    life_saw(&l, "ESPHome version 2023.6.3 compiled on"),
	    "the Screek factory image boots: arduino-lib-builder, "
	    "ESPHome 2023.6.3");
	emu_free(l.e);
}

/* A USB-UART bridge board: DTR/RTS through the transistor pair. */
static void
test_bridge(uint8_t *f)
{
	struct life	l;

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_BRIDGE, 1, 0, NULL, 0);
	tap_ok(emu_state(l.e) == EMU_ST_APP && life_saw(&l,
	    "rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)") &&
	    life_saw(&l, "Project name:     testproj"),
	    "bridge: power on boots the app, the UART shows ROM and app");
	/* esptool ClassicReset: DTR=1 and RTS=0 follow back to back. */
	life_clear(&l);
	life_lines(&l, 0, 1);
	emu_set_lines(l.e, 1, 1, l.now);
	emu_set_lines(l.e, 1, 0, l.now + 20);
	life_run(&l, l.now + 50000);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && life_saw(&l,
	    "rst:0x1 (POWERON),boot:0x0 (DOWNLOAD(USB/UART0/1))\r\n"
	    "waiting for download"),
	    "ClassicReset: EN rises with GPIO0 low -> download mode");
	is_int((long long)life_read_reg(&l, 0x40001000), 0x000007C6,
	    "the ROM answers");
	{
		uint16_t	vid = 0, pid = 0;

		emu_usb_id(l.e, &vid, &pid);
		tap_ok(vid == 0x10c4 && pid == 0xea60 &&
		    emu_generation(l.e) == 0,
		    "a bridge keeps its port (10c4:ea60, generation 0)");
	}
	/* HardReset: RTS pulse with DTR off. */
	life_clear(&l);
	life_lines(&l, 0, 1);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_APP &&
	    life_saw(&l, "Project name:     testproj"),
	    "HardReset (RTS pulse): the app boots");
	/* UnixTightReset. */
	life_lines(&l, 0, 0);
	life_lines(&l, 1, 1);
	life_lines(&l, 0, 1);
	emu_set_lines(l.e, 1, 0, l.now);
	life_run(&l, l.now + 50000);
	life_lines(&l, 0, 0);
	is_str(emu_state_name(emu_state(l.e)), "download",
	    "UnixTightReset also reaches download mode");
	/* EN held low: the chip hears nothing. */
	emu_set_lines(l.e, 0, 1, l.now);
	tap_ok(life_read_reg(&l, 0x40001000) == 0xdeadbeef,
	    "while EN is low the chip does not answer");
	emu_free(l.e);
}

/* An ESP32 on a bridge: its ROM's own reset lines. */
static void
test_esp32(uint8_t *f)
{
	struct emu_config	 cfg;
	struct life		 l;
	char			*cause = NULL;

	memset(f, 0xff, FLASH_SIZE);
	memset(&l, 0, sizeof(l));
	memset(&cfg, 0, sizeof(cfg));
	cfg.chip = CHIP_ESP32;
	cfg.flash_size = FLASH_SIZE;
	cfg.flash = f;
	cfg.boot = 1;
	cfg.start_app = 1;
	cfg.board = EMU_BOARD_BRIDGE;
	if ((l.e = emu_new(&cfg, &cause)) == NULL) {
		printf("Bail out! emu_new: %s\n", cause);
		exit(1);
	}
	l.now = 1000000;
	life_run(&l, l.now);
	tap_ok(life_saw(&l, "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 "
	    "(POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
	    "invalid header: 0xffffffff\r\n") &&
	    emu_state(l.e) == EMU_ST_DOWNLOAD,
	    "ESP32, empty flash: its ROM's POWERON_RESET and invalid header");
	emu_free(l.e);
}

/* An S2 app with the ESP-IDF USB-CDC console; FORCE_DOWNLOAD_BOOT. */
static void
test_idf(uint8_t *f)
{
	struct life	l;
	uint64_t	gen;

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_IDF_CDC, 1, 0, NULL, 0);
	tap_ok(emu_state(l.e) == EMU_ST_APP && life_pid(&l) == 0x80c2,
	    "idf-cdc: starts in its app");
	/* RTS falls with DTR=0: a plain reboot. */
	gen = emu_generation(l.e);
	life_clear(&l);
	life_lines(&l, 0, 1);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_APP &&
	    emu_reason(l.e) == EMU_RS_APP_RESTART &&
	    emu_generation(l.e) == gen + 1 && life_saw(&l, "testproj"),
	    "RTS 1->0 with DTR=0: normal reboot into the app");
	/* ClassicReset: RTS falls while DTR=1. */
	life_lines(&l, 0, 1);
	life_lines(&l, 1, 1);
	life_lines(&l, 1, 0);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && life_pid(&l) == 0x0002,
	    "RTS 1->0 with DTR=1: download mode, 303a:0002");
	is_int((long long)life_read_reg(&l, OPTION1) & 1, 1,
	    "RTC_CNTL_OPTION1 FORCE_DOWNLOAD_BOOT reads 1");
	is_int((long long)life_read_reg(&l, STRAP) & 0x8, 0x8,
	    "GPIO_STRAP says GPIO0 was high");
	/* Lines in download mode do nothing (the ROM ignores them). */
	life_lines(&l, 0, 1);
	life_lines(&l, 0, 0);
	is_str(emu_state_name(emu_state(l.e)), "download",
	    "the ROM ignores the lines");
	/* Sticky: a watchdog reset comes back into download mode. */
	life_clear(&l);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && emu_force_download(l.e) &&
	    life_saw(&l, "boot:0x0 (DOWNLOAD"),
	    "FORCE_DOWNLOAD_BOOT is sticky: the watchdog reset returns to "
	    "download mode");
	/* The host clears it first, as esptool does for the S3. */
	life_write_reg(&l, OPTION1, 0);
	is_int((long long)life_read_reg(&l, OPTION1) & 1, 0,
	    "WRITE_REG OPTION1 = 0 clears it");
	life_clear(&l);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_APP && life_saw(&l, "testproj"),
	    "then the watchdog reset boots the app");
	emu_free(l.e);
}

/* An S2 app with Arduino TinyUSB CDC: the line-state machine and 1200. */
static void
test_tinyusb(uint8_t *f)
{
	struct life	l;

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_TINYUSB, 1, 0, NULL, 0);
	/* UnixTightReset order never passes LINE_1 -> LINE_2. */
	life_lines(&l, 0, 0);
	life_lines(&l, 1, 1);
	life_lines(&l, 0, 1);
	life_lines(&l, 1, 0);
	life_lines(&l, 0, 0);
	is_str(emu_state_name(emu_state(l.e)), "app",
	    "tinyusb: UnixTightReset's order is not honoured");
	/* ClassicReset: (0,1) (1,1) (1,0) (0,0). */
	life_lines(&l, 0, 1);
	life_lines(&l, 1, 1);
	life_lines(&l, 1, 0);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && emu_force_download(l.e) &&
	    emu_reason(l.e) == EMU_RS_APP_RESTART,
	    "ClassicReset's order restarts into download mode, forced");
	emu_free(l.e);

	life_init(&l, f, EMU_BOARD_TINYUSB, 1, 0, NULL, 0);
	emu_set_baud_host(l.e, 9600, l.now);
	is_str(emu_state_name(emu_state(l.e)), "app", "9600 bps: nothing");
	emu_set_baud_host(l.e, 1200, l.now);
	is_str(emu_state_name(emu_state(l.e)), "download",
	    "1200 bps touch: download mode");
	emu_free(l.e);
}

/* An app that ignores every trick: only BOOT+RST helps. */
static void
test_plain(uint8_t *f)
{
	struct life	l;

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_PLAIN, 1, 0, NULL, 0);
	life_lines(&l, 0, 1);
	life_lines(&l, 1, 1);
	life_lines(&l, 1, 0);
	life_lines(&l, 0, 0);
	emu_set_baud_host(l.e, 1200, l.now);
	is_str(emu_state_name(emu_state(l.e)), "app",
	    "plain: the app ignores DTR/RTS and 1200 bps");
	emu_press_boot_rst(l.e, l.now);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && !emu_force_download(l.e),
	    "BOOT+RST: download mode, not forced");
	is_int((long long)life_read_reg(&l, STRAP) & 0x8, 0,
	    "GPIO_STRAP: GPIO0 low (watchdog reset is esptool's choice)");
	emu_free(l.e);
}

/* reenum, unplug in a phase and slow flash. */
static void
test_faults(uint8_t *f)
{
	struct emu_fault	 ft;
	struct emu_stats	 st;
	struct life		 l;
	uint8_t			 req[256], blk[64];
	char			*cause = NULL, spec[64];
	uint64_t		 gen;
	size_t			 n;
	unsigned		 code;
	int			 bad;

	memset(f, 0xff, FLASH_SIZE);
	memset(blk, 0x42, sizeof(blk));
	if (emu_fault_parse("kind=reenum,op=FLASH_DATA,at=2", &ft,
	    &cause) != 0) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, &ft, 1);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 4,
	    0x400, 0x20000, 1);
	life_send(&l, req, n);
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, blk,
	    sizeof(blk));
	life_send(&l, req, n);
	tap_ok(l.nframes == 1, "reenum: block 1 answered");
	gen = emu_generation(l.e);
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 1, blk,
	    sizeof(blk));
	life_send(&l, req, n);
	tap_ok(l.nframes == 0 && emu_generation(l.e) == gen + 1 &&
	    emu_state(l.e) == EMU_ST_DOWNLOAD && life_pid(&l) == 0x0002,
	    "block 2: no reply, a new port in download mode");
	life_send(&l, req, n);
	tap_ok(l.nframes == 1 && l.frames[0][8] == 1,
	    "the write state is gone: FLASH_DATA now fails");
	emu_free(l.e);

	if (emu_fault_parse("kind=unplug,op=FLASH_DATA,at=2", &ft,
	    &cause) != 0) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, &ft, 1);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 4,
	    0x400, 0x20000, 1);
	life_send(&l, req, n);
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, blk,
	    sizeof(blk));
	life_send(&l, req, n);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && l.nframes == 1,
	    "unplug in phase: the first FLASH_DATA is answered");
	life_send(&l, req, n);
	tap_ok(emu_state(l.e) == EMU_ST_UNPLUGGED && l.nframes == 0,
	    "the second FLASH_DATA unplugs the unit");
	emu_free(l.e);

	if (emu_fault_parse("kind=slow-flash,factor=4", &ft, &cause) != 0) {
		printf("Bail out! %s\n", cause);
		exit(1);
	}
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, &ft, 1);
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 4,
	    0x400, 0x20000, 1);
	life_send(&l, req, n);
	emu_stats(l.e, &st);
	is_int((long long)st.stall_us, 3 * 50000,
	    "slow-flash factor 4: a sector erase stalls 3 x 50 ms, even fast");
	is_int((long long)st.modeled_us, 0, "and fast models no time");
	emu_free(l.e);

	/* rom-error with each code the protocol names, 0x05 to 0x0B. */
	bad = 0;
	for (code = 0x05; code <= 0x0B; code++) {
		snprintf(spec, sizeof(spec), "kind=rom-error,op=SPI_ATTACH,"
		    "code=%u", code);
		if (emu_fault_parse(spec, &ft, &cause) != 0) {
			printf("Bail out! %s\n", cause);
			exit(1);
		}
		life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, &ft, 1);
		n = proto_build_spi_attach(req, sizeof(req), 0, 1);
		life_send(&l, req, n);
		if (l.nframes != 1 || l.flen[0] != 12 ||
		    l.frames[0][8] != 1 || l.frames[0][9] != code)
			bad++;
		life_send(&l, req, n);
		if (l.nframes != 1 || l.frames[0][8] != 0)
			bad++;
		emu_free(l.e);
	}
	is_int(bad, 0, "rom-error code=0x05..0x0B: status 01 CODE once, "
	    "then OK");

	tap_ok(emu_fault_parse("kind=slow-flash", &ft, &cause) == -EINVAL &&
	    strstr(cause, "factor=") != NULL, "slow-flash needs factor=");
	free(cause);
	cause = NULL;
	tap_ok(emu_fault_parse("kind=slow-flash,factor=1", &ft, &cause) ==
	    -EINVAL, "factor 1 is refused");
	free(cause);
	cause = NULL;
	tap_ok(emu_fault_parse("kind=reenum,factor=3", &ft, &cause) ==
	    -EINVAL, "reenum takes no factor=");
	free(cause);
	is_str(emu_fault_kind_name(EMU_FAULT_REENUM), "reenum",
	    "kind names: reenum");
	is_str(emu_board_name(EMU_BOARD_TINYUSB), "tinyusb", "board names");
	is_int(emu_board_parse("idf-cdc"), EMU_BOARD_IDF_CDC,
	    "board parse: idf-cdc");
	is_int(emu_board_parse("nope"), -1, "board parse: unknown");
}

/* Upload a (dummy) stub as esptool does: text, then MEM_END(0, entry). */
static void
stub_upload(struct life *l, uint32_t entry)
{
	uint8_t	req[0x900], code[0x800];
	size_t	n;

	memset(code, 0x5a, sizeof(code));
	n = proto_build_begin(req, sizeof(req), PROTO_MEM_BEGIN, sizeof(code),
	    1, 0x800, 0x40028000, 0);
	life_send(l, req, n);
	n = proto_build_data(req, sizeof(req), PROTO_MEM_DATA, 0, code,
	    sizeof(code));
	life_send(l, req, n);
	n = proto_build_mem_end(req, sizeof(req), 0, entry);
	life_send(l, req, n);
}

/* The stub reply of the last exchange: code << 8 | second byte, -1 none. */
static int
stub_status(const struct life *l, size_t k)
{
	const uint8_t	*f = l->frames[k];
	size_t		 size;

	if (k >= l->nframes || l->flen[k] < 10 || f[0] != 0x01)
		return (-1);
	size = le16_get(f + 2);
	if (size + 8 != l->flen[k] || size < 2)
		return (-1);
	return (f[8 + size - 2] << 8 | f[8 + size - 1]);
}

/*
 * The whole life through the stub: app, download mode by the app's own
 * restart, stub, write, RTS through the stub: the new app boots.
 */
static void
test_stub_life(uint8_t *f)
{
	struct life	l;
	uint8_t		req[64];

	mk_flash(f);
	life_init(&l, f, EMU_BOARD_IDF_CDC, 1, 0, NULL, 0);
	life_lines(&l, 0, 1);
	life_lines(&l, 1, 1);
	life_lines(&l, 1, 0);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_DOWNLOAD && emu_force_download(l.e),
	    "idf-cdc app restarted into download mode (forced)");
	stub_upload(&l, 0x400290A4);
	tap_ok(emu_stub(l.e), "the stub runs");
	mk_app(f + APP0, "newproj", "9.9", 0);	/* as if written */
	life_send(&l, req, proto_build_sync(req, sizeof(req)));
	life_clear(&l);
	life_lines(&l, 0, 1);
	life_lines(&l, 0, 0);
	tap_ok(emu_state(l.e) == EMU_ST_APP && !emu_force_download(l.e) &&
	    !emu_stub(l.e) && life_saw(&l, "Project name:     newproj"),
	    "RTS falling through the stub: FORCE_DOWNLOAD_BOOT cleared, the "
	    "new app boots");
	emu_free(l.e);
}

/* The flasher stub: OHAI, 2 status bytes, lazy erase, READ_FLASH... */
static void
test_stub(uint8_t *f)
{
	struct life	 l;
	struct emu_stats st;
	uint8_t		 req[PROTO_MAX_REQ], img[40000], z[48000];
	uint8_t		 md[16];
	uint8_t		*rd;
	uLongf		 zlen = sizeof(z);
	size_t		 n, i, off, got;
	uint64_t	 t0, due;
	int		 bad;

	memset(f, 0x00, FLASH_SIZE);
	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	stub_upload(&l, 0x12345678);
	tap_ok(emu_state(l.e) == EMU_ST_RAM && !emu_stub(l.e) &&
	    l.nframes == 1, "an unknown entry: RAM code, silent");
	emu_free(l.e);

	life_init(&l, f, EMU_BOARD_PLAIN, 0, 0, NULL, 0);
	stub_upload(&l, 0x400290A4);
	tap_ok(l.nframes == 2 && l.flen[1] == 4 &&
	    memcmp(l.frames[1], "OHAI", 4) == 0 && emu_stub(l.e) &&
	    emu_state(l.e) == EMU_ST_RAM,
	    "MEM_END(0, 0x400290A4): the ROM's reply, then OHAI");
	tap_ok(life_saw(&l, "\xc0OHAI\xc0"),
	    "OHAI on the wire: C0 4F 48 41 49 C0");
	life_send(&l, req, proto_build_sync(req, sizeof(req)));
	tap_ok(l.nframes == 8 && l.flen[0] == 10 && le32_get(l.frames[0] + 4)
	    == 0 && stub_status(&l, 0) == 0,
	    "stub SYNC: 8 replies, value 0, 2 status bytes");
	is_int((long long)life_read_reg(&l, 0x40001000), 0xdeadbeef,
	    "(life_read_reg expects 4 status bytes: the stub sends 2)");
	life_send(&l, req, proto_build_read_reg(req, sizeof(req),
	    0x40001000));
	tap_ok(stub_status(&l, 0) == 0 && le32_get(l.frames[0] + 4) ==
	    0x000007C6, "stub READ_REG: the magic, 2 status bytes");

	/* A compressed write at 0x20000, 16 KiB blocks. */
	for (i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)(i * 7 + (i >> 9));
	if (compress2(z, &zlen, img, sizeof(img), 9) != Z_OK) {
		printf("Bail out! compress2\n");
		exit(1);
	}
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_DEFL_BEGIN,
	    sizeof(img), (uint32_t)((zlen + 0x3fff) / 0x4000), 0x4000,
	    0x20000, 1);
	life_send(&l, req, n);
	is_int(stub_status(&l, 0), 0, "FLASH_DEFL_BEGIN: exact size, 16 KiB "
	    "blocks");
	tap_ok(f[0x20000] == 0x00, "nothing erased yet (lazy erase)");
	bad = 0;
	for (off = 0, i = 0; off < zlen; off += 0x4000, i++) {
		n = proto_build_data(req, sizeof(req), PROTO_FLASH_DEFL_DATA,
		    (uint32_t)i, z + off, MINIMUM(0x4000, zlen - off));
		life_send(&l, req, n);
		if (stub_status(&l, 0) != 0)
			bad++;
	}
	is_int(bad, 0, "every FLASH_DEFL_DATA acknowledged");
	tap_ok(memcmp(f + 0x20000, img, sizeof(img)) == 0,
	    "the image is in flash");
	tap_ok(f[0x20000 + sizeof(img)] == 0xff &&
	    f[0x20000 + 0xA000 - 1] == 0xff && f[0x20000 + 0xA000] == 0x00,
	    "lazy erase: up to the end of the last sector written, no more");
	life_send(&l, req, proto_build_end(req, sizeof(req),
	    PROTO_FLASH_DEFL_END, 1));
	is_int(stub_status(&l, 0), 0, "FLASH_DEFL_END(1): OK, stub stays");

	/* MD5: 16 raw bytes. */
	life_send(&l, req, proto_build_md5(req, sizeof(req), 0x20000,
	    sizeof(img)));
	digest_md5(img, sizeof(img), md);
	tap_ok(l.nframes == 1 && l.flen[0] == 26 &&
	    memcmp(l.frames[0] + 8, md, 16) == 0 && stub_status(&l, 0) == 0,
	    "stub SPI_FLASH_MD5: 16 raw bytes (frame of 26)");

	/* A plain write: one sector erased, the next one left alone. */
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 1,
	    0x4000, 0x50000, 1);
	life_send(&l, req, n);
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, img,
	    0x1000);
	life_send(&l, req, n);
	tap_ok(stub_status(&l, 0) == 0 && memcmp(f + 0x50000, img, 0x1000) ==
	    0 && f[0x51000] == 0x00 && f[0x4ffff] == 0x00,
	    "stub FLASH_DATA: written, only its own sector erased");
	life_send(&l, req, proto_build_end(req, sizeof(req), PROTO_FLASH_END,
	    1));
	is_int(stub_status(&l, 0), 0, "FLASH_END(1) after it: OK");

	/* Errors. */
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, img, 64);
	req[8 + 16] ^= 0xff;
	life_send(&l, req, n);
	is_int(stub_status(&l, 0), 0xC100, "bad data checksum: C1 00");
	life_send(&l, req, proto_build_end(req, sizeof(req), PROTO_FLASH_END,
	    1));
	is_int(stub_status(&l, 0), 0xC600, "FLASH_END outside a write: C6 00");
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x1000, 1,
	    0x8000, 0x30000, 1);
	life_send(&l, req, n);
	is_int(stub_status(&l, 0), 0xC200, "block size 0x8000: C2 00");
	life_send(&l, req, proto_build_read_flash_slow(req, sizeof(req), 0,
	    64));
	is_int(stub_status(&l, 0), 0xFF00, "READ_FLASH_SLOW: FF 00 (not in "
	    "the stub)");

	/* ERASE_REGION. */
	le32_put(z, 0x40000);
	le32_put(z + 4, 0x800);
	life_send(&l, req, proto_build(req, sizeof(req), PROTO_ERASE_REGION,
	    z, 8, 0));
	is_int(stub_status(&l, 0), 0xC400, "ERASE_REGION of 0x800: C4 00");
	le32_put(z + 4, 0x2000);
	life_send(&l, req, proto_build(req, sizeof(req), PROTO_ERASE_REGION,
	    z, 8, 0));
	tap_ok(stub_status(&l, 0) == 0 && f[0x40000] == 0xff &&
	    f[0x41fff] == 0xff && f[0x42000] == 0x00 && f[0x3ffff] == 0x00,
	    "ERASE_REGION 0x40000+0x2000: exactly that range is 0xFF");

	/* READ_FLASH: 64-byte packets, one in flight, ACKs, then MD5. */
	le32_put(z, 0x20000);
	le32_put(z + 4, 200);
	le32_put(z + 8, 64);
	le32_put(z + 12, 64);
	life_send(&l, req, proto_build(req, sizeof(req), PROTO_READ_FLASH, z,
	    16, 0));
	tap_ok(l.nframes == 2 && stub_status(&l, 0) == 0 && l.flen[1] == 64,
	    "READ_FLASH: reply, then only the first packet (1 in flight)");
	is_int(le32_get(l.frames[0] + 4), 0,
	    "the stub's value field is 0 (esptool-js checks it)");
	rd = xmalloc(256);
	memcpy(rd, l.frames[1], 64);
	got = 64;
	while (got < 200) {
		le32_put(z + 32, (uint32_t)got);
		n = slip_encode(req, sizeof(req), z + 32, 4);
		emu_feed(l.e, req, n, l.now);
		life_run(&l, l.now + 10000);
		if (l.nframes != 1)
			break;
		memcpy(rd + got, l.frames[0], l.flen[0]);
		got += l.flen[0];
	}
	tap_ok(got == 200 && memcmp(rd, img, 200) == 0,
	    "each ACK brings the next packet: 200 bytes as in flash");
	le32_put(z + 32, 200);
	n = slip_encode(req, sizeof(req), z + 32, 4);
	emu_feed(l.e, req, n, l.now);
	life_run(&l, l.now + 10000);
	digest_md5(img, 200, md);
	tap_ok(l.nframes == 1 && l.flen[0] == 16 &&
	    memcmp(l.frames[0], md, 16) == 0,
	    "after the last ACK: the 16-byte MD5 frame");
	free(rd);

	/* FLASH_BEGIN(0) + FLASH_END(0): back to the ROM. */
	life_send(&l, req, proto_build_begin(req, sizeof(req),
	    PROTO_FLASH_BEGIN, 0, 0, 0x4000, 0, 1));
	life_send(&l, req, proto_build_end(req, sizeof(req), PROTO_FLASH_END,
	    0));
	tap_ok(stub_status(&l, 0) == 0 && !emu_stub(l.e) &&
	    emu_state(l.e) == EMU_ST_DOWNLOAD,
	    "FLASH_END(0): answered, then back in ROM download mode");
	life_run(&l, l.now + 200000);
	life_send(&l, req, proto_build_sync(req, sizeof(req)));
	tap_ok(l.nframes == 8 && l.flen[0] == 12 &&
	    le32_get(l.frames[0] + 4) == 0x20120707,
	    "the ROM again: SYNC value 0x20120707, 4 status bytes");
	emu_free(l.e);

	/* Realistic: the DATA reply comes before the block is written. */
	memset(f, 0xff, FLASH_SIZE);
	{
		struct emu_config	 cfg;
		char			*cause = NULL;

		memset(&l, 0, sizeof(l));
		memset(&cfg, 0, sizeof(cfg));
		cfg.profile = EMU_PROFILE_REALISTIC;
		cfg.stub_model = 1;
		cfg.flash_size = FLASH_SIZE;
		cfg.flash = f;
		l.e = emu_new(&cfg, &cause);
		l.now = 1000000;
	}
	stub_upload(&l, 0x400288AC);
	tap_ok(emu_stub(l.e), "0x400288AC (legacy stub) starts the stub too");
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_BEGIN, 0x10000, 4,
	    0x4000, 0x100000, 1);
	life_send(&l, req, n);
	life_run(&l, l.now + 100000);
	emu_stats(l.e, &st);
	t0 = st.modeled_us;
	n = proto_build_data(req, sizeof(req), PROTO_FLASH_DATA, 0, img,
	    0x4000);
	emu_feed(l.e, z, slip_encode(z, sizeof(z), req, n), l.now);
	due = emu_next_due_us(l.e);
	emu_stats(l.e, &st);
	tap_ok(due - l.now + 150000 < st.modeled_us - t0,
	    "realistic: the ACK (%llu us) leaves before the erase+write is "
	    "done (%llu us of device time)",
	    (unsigned long long)(due - l.now),
	    (unsigned long long)(st.modeled_us - t0));
	emu_free(l.e);
}

/* Without config.boot nothing changes: the watchdog leaves for "app". */
static void
test_legacy(uint8_t *f)
{
	struct emu_config	 cfg;
	struct life		 l;
	char			*cause = NULL;

	memset(f, 0xff, FLASH_SIZE);
	memset(&l, 0, sizeof(l));
	memset(&cfg, 0, sizeof(cfg));
	cfg.flash_size = FLASH_SIZE;
	cfg.flash = f;
	cfg.board = EMU_BOARD_BRIDGE;
	l.e = emu_new(&cfg, &cause);
	l.now = 1000000;
	life_lines(&l, 0, 1);
	life_lines(&l, 0, 0);
	life_wdt(&l);
	tap_ok(emu_state(l.e) == EMU_ST_APP && l.len > 0 &&
	    !life_saw(&l, "invalid header") && emu_generation(l.e) == 0,
	    "boot off: lines ignored, watchdog -> app, no boot text");
	emu_free(l.e);

	/* Without stub_model a stub's entry just runs RAM code. */
	l.e = emu_new(&cfg, &cause);
	life_clear(&l);
	stub_upload(&l, 0x400290A4);
	tap_ok(emu_state(l.e) == EMU_ST_RAM && !emu_stub(l.e) &&
	    !life_saw(&l, "OHAI"), "stub_model off: no stub, no OHAI");
	emu_free(l.e);
}

/* Run every group. */
int
main(void)
{
	uint8_t	*f;

	f = xmalloc(FLASH_SIZE);
	test_boot(f);
	test_real(f);
	test_bridge(f);
	test_esp32(f);
	test_idf(f);
	test_tinyusb(f);
	test_plain(f);
	test_faults(f);
	test_stub(f);
	test_stub_life(f);
	test_legacy(f);
	free(f);
	return (tap_done());
}
