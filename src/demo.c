/*
 * The demo image: a factory image for the ESP32-S2 laid out like the one
 * ESP-IDF and esptool make (0xFF up to 0x1000, bootloader at 0x1000,
 * partition table at 0x8000, app at 0x10000), generated from a fixed seed
 * so that every run writes and verifies the same bytes.  Segment contents
 * are filler that deflates about as well as real firmware does.
 */

#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chip.h"
#include "demo.h"
#include "digest.h"
#include "image.h"
#include "util.h"

struct demo_seg {
	uint32_t	addr;
	uint32_t	len;
	int		text;	/* rodata-like text, not code-like bytes */
};

/* The bootloader as IDF v4.4 builds it for the S2: DRAM, IRAM, IRAM. */
static const struct demo_seg demo_boot_segs[] = {
	{ 0x3ffe6100, 0x0600, 1 },
	{ 0x4004c000, 0x0900, 0 },
	{ 0x40050000, 0x2800, 0 },
};

/* The app: DROM (descriptor first), DRAM, IROM, DRAM, IRAM. */
static const struct demo_seg demo_app_segs[] = {
	{ 0x3f000020, 0x1e000, 1 },
	{ 0x3ffc3420, 0x02800, 0 },
	{ 0x40080020, 0x70000, 0 },
	{ 0x3ffc5c20, 0x01fe0, 1 },
	{ 0x40024000, 0x0f400, 0 },
};

/* The partition table ESPHome uses on 4 MB S2 boards, minus "eeprom". */
static const struct {
	const char	*label;
	uint8_t		 type, subtype;
	uint32_t	 offset, size;
} demo_parts[] = {
	{ "nvs", IMAGE_PART_DATA, IMAGE_PART_DATA_NVS, 0x9000, 0x5000 },
	{ "otadata", IMAGE_PART_DATA, IMAGE_PART_DATA_OTA, 0xe000, 0x2000 },
	{ "app0", IMAGE_PART_APP, 0x10, 0x10000, 0x1c0000 },
	{ "app1", IMAGE_PART_APP, 0x11, 0x1d0000, 0x1c0000 },
	{ "spiffs", IMAGE_PART_DATA, IMAGE_PART_DATA_SPIFFS, 0x390000,
	    0x70000 },
};

static const char *const demo_words[] = {
	"wifi", "sensor", "connect", "failed", "timeout", "%s: %d", "ok",
	"[%6u][E][%s:%u] %s(): ", "task", "queue", "mqtt", "api", "ota",
	"update", "state", "presence", "distance", "gpio", "uart", "i2c",
	"spi", "nvs", "partition", "reboot", "heap", "free", "component",
	"setup", "loop", "config", "error", "warning", "esp32s2", "lolin",
	"espfleet", "demo", "value", "%08x", "%u.%u.%u", "null", "buffer",
	"socket", "tcp", "udp", "dns", "mdns", "http", "json", "len",
};

/* xorshift32: small and fixed, so the image never changes. */
static uint32_t
demo_rand(uint32_t *s)
{
	uint32_t	x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return (x);
}

/*
 * Fill p with filler: either words and numbers like a rodata section, or
 * code-like bytes from a skewed alphabet; both with back references so
 * that deflate finds about what it finds in a real app.
 */
static void
demo_fill(uint8_t *p, size_t n, uint32_t *s, int text)
{
	const char	*w;
	size_t		 i = 0, len, dist, j;
	uint32_t	 r;

	while (i < n) {
		r = demo_rand(s);
		if (i >= 256 && r % 100 < (text ? 8u : 5u)) {
			len = 4 + (r >> 8) % 24;
			dist = 1 + (r >> 16) % MINIMUM(i, (size_t)16384);
			for (j = 0; j < len && i < n; j++, i++)
				p[i] = p[i - dist];
		} else if (text) {
			w = demo_words[(r >> 8) % nitems(demo_words)];
			len = strlen(w);
			for (j = 0; j < len && i < n; j++)
				p[i++] = (uint8_t)w[j];
			if (i < n)
				p[i++] = (r >> 20) % 4 == 0 ? '\0' : ' ';
		} else {
			/* Opcodes cluster: few distinct high nibbles. */
			p[i++] = (uint8_t)(((r >> 8) & 0x0f) |
			    (((r >> 12) % 5) << 4));
			if (i < n)
				p[i++] = (uint8_t)(r >> 16);
		}
	}
}

/* Bytes an ESP image of these segments takes, digest included. */
static size_t
demo_image_len(const struct demo_seg *segs, size_t nsegs)
{
	size_t	i, off = IMAGE_HEADER_LEN;

	for (i = 0; i < nsegs; i++)
		off += IMAGE_SEG_HEADER_LEN + segs[i].len;
	return ((off | 15) + 1 + IMAGE_DIGEST_LEN);
}

/* Write the app descriptor ESP-IDF puts at the start of the DROM segment. */
static void
demo_app_desc(uint8_t *p)
{
	memset(p, 0, IMAGE_APP_DESC_LEN);
	le32_put(p, IMAGE_APP_DESC_MAGIC);
	memcpy(p + 16, DEMO_VERSION, sizeof DEMO_VERSION);
	memcpy(p + 48, DEMO_PROJECT, sizeof DEMO_PROJECT);
	memcpy(p + 80, DEMO_TIME, sizeof DEMO_TIME);
	memcpy(p + 96, DEMO_DATE, sizeof DEMO_DATE);
	memcpy(p + 112, DEMO_IDF, sizeof DEMO_IDF);
	digest_sha256(DEMO_PROJECT, sizeof DEMO_PROJECT - 1, p + 144);
}

/*
 * Write one ESP image for the ESP32-S2 (DIO, 4 MB, 80 MHz, hash appended)
 * at dst: header, segments, zero padding, checksum, SHA-256.
 */
static size_t
demo_image(uint8_t *dst, const struct demo_seg *segs, size_t nsegs,
    uint32_t entry, uint32_t *s, int app)
{
	size_t	i, j, off, end;
	uint8_t	cs = IMAGE_CHECKSUM_SEED;

	memset(dst, 0, IMAGE_HEADER_LEN);
	dst[0] = IMAGE_MAGIC;
	dst[1] = (uint8_t)nsegs;
	dst[2] = IMAGE_MODE_DIO;
	dst[3] = 0x2f;			/* 4 MB, 80 MHz */
	le32_put(dst + 4, entry);
	dst[8] = 0xee;			/* no WP pin */
	le16_put(dst + 12, 2);		/* chip id: ESP32-S2 */
	le16_put(dst + 17, 0xffff);	/* no maximum revision */
	dst[23] = 1;			/* SHA-256 appended */

	off = IMAGE_HEADER_LEN;
	for (i = 0; i < nsegs; i++) {
		le32_put(dst + off, segs[i].addr);
		le32_put(dst + off + 4, segs[i].len);
		off += IMAGE_SEG_HEADER_LEN;
		demo_fill(dst + off, segs[i].len, s, segs[i].text);
		if (app && i == 0)
			demo_app_desc(dst + off);
		for (j = 0; j < segs[i].len; j++)
			cs ^= dst[off + j];
		off += segs[i].len;
	}
	end = off | 15;
	memset(dst + off, 0, end - off);
	dst[end++] = cs;
	digest_sha256(dst, end, dst + end);
	return (end + IMAGE_DIGEST_LEN);
}

/* Write the partition table with its MD5 entry; the rest stays 0xFF. */
static void
demo_partitions(uint8_t *p)
{
	size_t	i, n;
	uint8_t	*e;

	for (i = 0; i < nitems(demo_parts); i++) {
		e = p + i * IMAGE_PART_ENTRY_LEN;
		memset(e, 0, IMAGE_PART_ENTRY_LEN);
		le16_put(e, IMAGE_PART_MAGIC);
		e[2] = demo_parts[i].type;
		e[3] = demo_parts[i].subtype;
		le32_put(e + 4, demo_parts[i].offset);
		le32_put(e + 8, demo_parts[i].size);
		memcpy(e + 12, demo_parts[i].label,
		    strlen(demo_parts[i].label));
	}
	n = i * IMAGE_PART_ENTRY_LEN;
	e = p + n;
	memset(e, 0xff, 16);
	le16_put(e, IMAGE_PART_MD5_MAGIC);
	digest_md5(p, n, e + 16);
}

/* Build the demo factory image; the caller frees *out. */
int
demo_build(uint8_t **out, size_t *len)
{
	uint8_t		*buf;
	size_t		 total, n;
	uint32_t	 s = 0x5eed1234;

	total = DEMO_APP_OFFSET + demo_image_len(demo_app_segs,
	    nitems(demo_app_segs));
	buf = xmalloc(total);
	memset(buf, 0xff, total);

	n = demo_image(buf + DEMO_BOOT_OFFSET, demo_boot_segs,
	    nitems(demo_boot_segs), 0x4004c1a0, &s, 0);
	if (DEMO_BOOT_OFFSET + n > IMAGE_PART_OFFSET)
		fatalx("%s: bootloader does not fit", __func__);
	demo_partitions(buf + IMAGE_PART_OFFSET);
	demo_image(buf + DEMO_APP_OFFSET, demo_app_segs,
	    nitems(demo_app_segs), 0x40024c80, &s, 1);

	*out = buf;
	*len = total;
	return (0);
}

/* Build the demo image and load it as a job for a 4 MB ESP32-S2. */
int
demo_load(struct image_set **set, char **cause)
{
	struct image_load_opts	 opts;
	uint8_t			*buf;
	size_t			 len;
	int			 error;

	memset(&opts, 0, sizeof opts);
	opts.chip = chip_by_id(CHIP_ESP32S2);
	opts.flash_size = IMAGE_DEFAULT_FLASH;
	demo_build(&buf, &len);
	error = image_load_buffer(set, DEMO_NAME, 0, buf, len, &opts, cause);
	free(buf);
	return (error);
}
