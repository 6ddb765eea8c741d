/*
 * Firmware images: the real Screek images parse to the facts in
 * shared/firmware/README.md, the demo image is valid, every refusal
 * happens with a cause naming file, offset and reason, deflated data
 * inflates back, and the parsers stay inside their buffers.
 */

#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "chip.h"
#include "demo.h"
#include "digest.h"
#include "image.h"
#include "util.h"
#include "tap.h"

#define FACTORY	"factory-screek-humen-sensor-1u-20230704_1.bin"
#define OTA	"ota-screek-humen-sensor-1u-20230704_1.bin"
#define FACTORY_SHA256 \
	"05936919465f8abeca44bc26f83d49cba19abc33fb68c90a590471f4dd8f9ac6"
#define FACTORY_MD5	"ec7773367a4fef07dda791b21f51dd82"
#define OTA_SHA256 \
	"8faaa947901a5f560ff7775d94812b178c213d87bef728f4b7a0e20392a6237b"
#define OTA_MD5		"ad344ee80f9d7a922489139fed5be30b"

static char	 tmpdir[256];
static char	*tmpfiles[64];
static size_t	 ntmpfiles;

/* Write a file into the test's temporary directory; returns its path. */
static char *
put_file(const char *name, const void *buf, size_t len)
{
	char	*path;
	FILE	*f;

	path = xasprintf("%s/%s", tmpdir, name);
	if ((f = fopen(path, "wb")) == NULL)
		fatalx("fopen %s", path);
	if (len != 0 && fwrite(buf, 1, len, f) != len)
		fatalx("fwrite %s", path);
	fclose(f);
	if (ntmpfiles < nitems(tmpfiles))
		tmpfiles[ntmpfiles++] = path;
	return (path);
}

/* Remove what put_file made. */
static void
cleanup(void)
{
	size_t	i;

	for (i = 0; i < ntmpfiles; i++) {
		unlink(tmpfiles[i]);
		free(tmpfiles[i]);
	}
	rmdir(tmpdir);
}

/* Load argv for a chip (NULL: none) with force and a flash size (0: 4 MB). */
static int
load(struct image_set **set, int argc, const char **argv, enum chip_id chip,
    int force, uint32_t flash, char **cause)
{
	struct image_load_opts	opts;

	memset(&opts, 0, sizeof opts);
	opts.chip = chip == CHIP_UNKNOWN ? NULL : chip_by_id(chip);
	opts.force = force;
	opts.flash_size = flash;
	*cause = NULL;
	return (image_load(set, argc, (char *const *)argv, &opts, cause));
}

/* Load and expect a refusal with errno err and text in the cause. */
static void
refused(int argc, const char **argv, enum chip_id chip, int force,
    uint32_t flash, int err, const char *text, const char *what)
{
	struct image_set	*set;
	char			*cause;
	int			 rc;

	rc = load(&set, argc, argv, chip, force, flash, &cause);
	is_int(rc, err, "%s: refused", what);
	tap_ok(set == NULL, "%s: no set", what);
	if (!tap_ok(cause != NULL && strstr(cause, text) != NULL,
	    "%s: cause says \"%s\"", what, text))
		tap_diag("  cause: %s", cause ? cause : "(none)");
	else
		tap_diag("  %s", cause);
	free(cause);
	image_free(set);
}

/* Load and expect success. */
static void
accepted(int argc, const char **argv, enum chip_id chip, int force,
    uint32_t flash, const char *what)
{
	struct image_set	*set;
	char			*cause;
	int			 rc;

	rc = load(&set, argc, argv, chip, force, flash, &cause);
	if (!tap_ok(rc == 0 && set != NULL, "%s: accepted", what))
		tap_diag("  rc %d cause: %s", rc, cause ? cause : "(none)");
	free(cause);
	image_free(set);
}

/* Recompute the appended SHA-256 of the ESP image at p after a patch. */
static void
fix_hash(uint8_t *p, size_t avail)
{
	struct image_header	h;

	if (image_parse_header(p, avail, &h) != 0 || h.hash_ok < 0)
		fatalx("fix_hash: no image");
	digest_sha256(p, h.image_len - IMAGE_DIGEST_LEN,
	    p + h.image_len - IMAGE_DIGEST_LEN);
}

/* Inflate every region and compare it and its MD5 with the data. */
static void
check_inflate(const struct image_set *set, const char *what)
{
	const struct image_region	*r;
	uint8_t				*out;
	uLongf				 outlen;
	char				 md5[33];
	size_t				 i;
	int				 zerr;

	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		outlen = r->len + 64;
		out = xmalloc(outlen);
		zerr = uncompress(out, &outlen, r->zdata, r->zlen);
		tap_ok(zerr == Z_OK && outlen == r->len &&
		    memcmp(out, r->data, r->len) == 0,
		    "%s: region 0x%x inflates back to its %zu bytes", what,
		    r->offset, r->len);
		digest_md5_hex(out, outlen, md5);
		is_str(md5, r->md5hex, "%s: MD5 of the inflated data matches",
		    what);
		tap_ok(r->zlen > 2 && r->zdata[0] == 0x78 &&
		    r->zdata[1] == 0xda, "%s: zlib level-9 stream (78 da)",
		    what);
		free(out);
	}
}

/* ========================= Pure parsers ========================= */

/* Offsets as esptool takes them, sector-aligned, strictly parsed. */
static void
test_offsets(void)
{
	static const char *const bad[] = {
		"", "0x", "12ab", "-4096", " 4096", "4096 ", "0x1g", "+4096",
		"0x100000000", "99999999999"
	};
	const char	*why;
	uint32_t	 v;
	size_t		 i;
	int		 ok = 1;

	is_int(image_parse_offset("0x0", &v, &why), 0, "offset 0x0");
	is_int(v, 0, "0x0 is 0");
	is_int(image_parse_offset("0x10000", &v, &why), 0, "offset 0x10000");
	is_int(v, 0x10000, "0x10000 value");
	is_int(image_parse_offset("0X1D0000", &v, &why), 0, "offset 0X1D0000");
	is_int(v, 0x1d0000, "0X1D0000 value");
	is_int(image_parse_offset("65536", &v, &why), 0, "decimal 65536");
	is_int(v, 65536, "65536 value");
	is_int(image_parse_offset("0x1001", &v, &why), -EINVAL,
	    "0x1001 refused");
	tap_ok(why != NULL && strstr(why, "multiple of 0x1000") != NULL,
	    "unaligned offset: says it must be a multiple of 0x1000");
	is_int(image_parse_offset("4097", &v, &why), -EINVAL,
	    "decimal 4097 refused");
	for (i = 0; i < nitems(bad); i++) {
		if (image_parse_offset(bad[i], &v, &why) != -EINVAL ||
		    why == NULL) {
			tap_diag("  \"%s\" was accepted", bad[i]);
			ok = 0;
		}
	}
	tap_ok(ok, "%zu malformed offsets refused", nitems(bad));
}

/* The demo image has the promised layout, and its checksums hold. */
static void
test_demo_parse(const uint8_t *img, size_t len)
{
	struct image_header	 h;
	struct part_table	 pt;
	struct image_app_desc	 d;
	struct image_esphome	 e;
	uint8_t			*again;
	size_t			 len2;

	tap_ok(len >= 600 * 1024 && len <= 900 * 1024,
	    "demo image is %zu bytes (600-900 KB)", len);
	demo_build(&again, &len2);
	tap_ok(len2 == len && memcmp(again, img, len) == 0,
	    "demo image is the same on every build");
	free(again);
	tap_ok(img[0] == 0xff && img[0xfff] == 0xff &&
	    memchr(img, 0x00, 0x1000) == NULL, "demo: 0xFF up to 0x1000");

	is_int(image_parse_header(img + 0x1000, len - 0x1000, &h), 0,
	    "demo bootloader parses");
	is_int(h.chip_id, 2, "demo bootloader chip id 2");
	is_int(h.segment_count, 3, "demo bootloader 3 segments");
	is_str(image_flash_mode_name(h.flash_mode), "DIO", "demo DIO");
	is_int(h.flash_size, 0x400000, "demo 4 MB");
	is_int(h.flash_freq, 80, "demo 80 MHz");
	tap_ok(h.checksum_ok, "demo bootloader checksum valid");
	is_int(h.hash_appended, 1, "demo bootloader hash_appended");
	is_int(h.hash_ok, 1, "demo bootloader SHA-256 valid");
	tap_ok(0x1000 + h.image_len <= 0x8000, "demo bootloader ends before "
	    "0x8000");

	is_int(image_parse_partitions(img + 0x8000, len - 0x8000, &pt), 0,
	    "demo partition table parses");
	is_int(pt.n, 5, "demo 5 partitions");
	tap_ok(pt.has_md5 && pt.md5_ok, "demo partition MD5 valid");
	tap_ok(strcmp(pt.e[0].label, "nvs") == 0 && pt.e[0].offset == 0x9000 &&
	    pt.e[0].size == 0x5000 && pt.e[0].type == 1 &&
	    pt.e[0].subtype == 2, "demo nvs 0x9000+0x5000");
	tap_ok(strcmp(pt.e[1].label, "otadata") == 0 &&
	    pt.e[1].offset == 0xe000 && pt.e[1].size == 0x2000,
	    "demo otadata 0xE000+0x2000");
	tap_ok(strcmp(pt.e[2].label, "app0") == 0 &&
	    pt.e[2].offset == 0x10000 && pt.e[2].size == 0x1c0000 &&
	    pt.e[2].type == 0 && pt.e[2].subtype == 0x10,
	    "demo app0 0x10000+0x1C0000 ota_0");

	is_int(image_parse_header(img + 0x10000, len - 0x10000, &h), 0,
	    "demo app parses");
	tap_ok(h.checksum_ok && h.hash_ok == 1, "demo app checksum and "
	    "SHA-256 valid");
	is_int(0x10000 + h.image_len, len, "demo app ends the image");
	is_int(image_parse_app_desc(img + 0x10000, len - 0x10000, &d), 0,
	    "demo app descriptor");
	is_str(d.project_name, "espfleet-demo", "demo project");
	is_str(d.version, "1.0.0", "demo version");
	is_str(d.idf_ver, "v4.4.4", "demo IDF version");
	is_int(image_find_esphome(img, len, &e), -ENOENT,
	    "demo image is not an ESPHome build");
}

/* The demo loads as a job and deflates like real firmware. */
static void
test_demo_load(void)
{
	struct image_set	*set;
	char			*cause = NULL;
	double			 ratio;

	is_int(demo_load(&set, &cause), 0, "demo loads for a 4 MB ESP32-S2");
	if (set == NULL) {
		tap_diag("  %s", cause ? cause : "");
		free(cause);
		return;
	}
	is_int(set->nregions, 1, "demo: one region");
	is_int(set->regions[0].offset, 0, "demo at 0x0");
	ratio = (double)set->regions[0].zlen / set->regions[0].len;
	tap_ok(ratio > 0.5 && ratio < 0.7, "demo deflates to %.0f%% "
	    "(about 60%%)", ratio * 100);
	check_inflate(set, "demo");
	image_free(set);
}

/* Short and crafted buffers are refused without reading past them. */
static void
test_bounds(const uint8_t *img, size_t len)
{
	struct image_header	 h, full;
	struct part_table	 pt;
	struct image_app_desc	 d;
	uint8_t			*buf, hdr[40];
	size_t			 n, bad = 0;
	uint32_t		 seq;

	image_parse_header(img + 0x1000, len - 0x1000, &full);
	for (n = 0; n < full.image_len; n++) {
		buf = xmalloc(n + 1);	/* exact size: ASan sees overreads */
		memcpy(buf, img + 0x1000, n);
		if (image_parse_header(buf, n, &h) == 0)
			bad++;
		free(buf);
	}
	is_int(bad, 0, "every truncation of the bootloader (0..%u bytes) "
	    "is refused", full.image_len);
	buf = xmalloc(full.image_len);
	memcpy(buf, img + 0x1000, full.image_len);
	is_int(image_parse_header(buf, full.image_len, &h), 0,
	    "the exact bootloader length parses");
	free(buf);

	memcpy(hdr, img + 0x1000, 24);
	hdr[1] = 1;
	le32_put(hdr + 24, 0x3ffe6100);
	le32_put(hdr + 28, 0xfffffff0);		/* segment past the end */
	buf = xmalloc(40);
	memcpy(buf, hdr, 40);
	is_int(image_parse_header(buf, 40, &h), -EBADMSG,
	    "segment length past the end refused");
	tap_ok(strstr(h.why, "runs past the end") != NULL, "why: %s", h.why);
	buf[1] = 17;
	is_int(image_parse_header(buf, 40, &h), -EBADMSG, "17 segments "
	    "refused");
	buf[1] = 0;
	is_int(image_parse_header(buf, 40, &h), -EBADMSG, "0 segments "
	    "refused");
	buf[1] = 2;
	le32_put(buf + 28, 8);		/* 2nd header starts at 40: past end */
	is_int(image_parse_header(buf, 40, &h), -EBADMSG,
	    "segment header past the end refused");
	buf[0] = 0xe8;
	is_int(image_parse_header(buf, 40, &h), -EINVAL, "no 0xE9: not an "
	    "image");
	free(buf);
	is_int(image_parse_header(img, 0, &h), -EINVAL, "empty: not an image");

	for (n = 0, bad = 0; n < 7 * 32; n++) {
		buf = xmalloc(n + 1);
		memcpy(buf, img + 0x8000, n);
		if (image_parse_partitions(buf, n, &pt) == 0)
			bad++;
		free(buf);
	}
	is_int(bad, 0, "every truncation of the partition table before its "
	    "end entry is refused");
	buf = xmalloc(7 * 32);
	memcpy(buf, img + 0x8000, 7 * 32);
	is_int(image_parse_partitions(buf, 7 * 32, &pt), 0,
	    "partition table up to its end entry parses");
	free(buf);

	for (n = 0, bad = 0; n < IMAGE_APP_DESC_OFFSET + IMAGE_APP_DESC_LEN;
	    n++) {
		buf = xmalloc(n + 1);
		memcpy(buf, img + 0x10000, n);
		if (image_parse_app_desc(buf, n, &d) == 0)
			bad++;
		free(buf);
	}
	is_int(bad, 0, "every short app descriptor is refused");

	for (n = 0, bad = 0; n < 64; n++) {
		buf = xmalloc(n + 1);
		memset(buf, 0, n);
		if (n >= 4)
			le32_put(buf, 1);
		if (n >= 32)
			le32_put(buf + 28, 0x4743989a);
		if (image_parse_otadata(buf, n, &seq) == 0 && n < 32)
			bad++;
		free(buf);
	}
	is_int(bad, 0, "short otadata is refused");

	buf = xcalloc(1, 0x2000);
	memset(buf, 0xff, 0x2000);
	is_int(image_parse_otadata(buf, 0x2000, &seq), -ENOENT,
	    "blank otadata: no sequence");
	le32_put(buf + 0x1000, 3);
	le32_put(buf + 0x1000 + 28, (uint32_t)crc32(UINT32_MAX,
	    buf + 0x1000, 4));
	le32_put(buf, 5);
	le32_put(buf + 28, 0x12345678);		/* wrong CRC */
	is_int(image_parse_otadata(buf, 0x2000, &seq), 0,
	    "otadata with one valid entry");
	is_int(seq, 3, "an entry with a wrong CRC does not count");
	le32_put(buf + 28, (uint32_t)crc32(UINT32_MAX, buf, 4));
	image_parse_otadata(buf, 0x2000, &seq);
	is_int(seq, 5, "the highest valid sequence wins");
	le32_put(buf + 24, 3);			/* ESP_OTA_IMG_INVALID */
	image_parse_otadata(buf, 0x2000, &seq);
	is_int(seq, 3, "an INVALID entry does not count");
	free(buf);
}

/*
 * Random damage to the bootloader, app start and partition table, parsed
 * from exact-size copies: whatever the parsers accept must lie inside the
 * buffer (and ASan builds catch any read past it).
 */
static void
test_mutations(const uint8_t *img)
{
	static const struct {
		size_t	off, n;
	} where[] = {
		{ 0x1000, 0x3800 }, { 0x8000, 0x200 }, { 0x10000, 0x400 }
	};
	struct image_header	 h;
	struct part_table	 pt;
	struct image_app_desc	 d;
	struct image_esphome	 e;
	uint8_t			*buf;
	uint32_t		 s = 99, seq;
	size_t			 i, j, k, n, bad = 0, accepted = 0;

	for (i = 0; i < 3000; i++) {
		k = i % nitems(where);
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		n = 1 + s % where[k].n;
		buf = xmalloc(n);
		memcpy(buf, img + where[k].off, n);
		for (j = 0; j < 1 + s % 8; j++) {
			s ^= s << 13;
			s ^= s >> 17;
			s ^= s << 5;
			buf[(s >> 8) % MINIMUM(n, (size_t)64)] = (uint8_t)s;
		}
		if (image_parse_header(buf, n, &h) == 0) {
			accepted++;
			if (h.image_len > n)
				bad++;
			for (j = 0; j < h.segment_count; j++) {
				if ((uint64_t)h.segs[j].offset + h.segs[j].len >
				    n)
					bad++;
			}
		}
		if (image_parse_partitions(buf, n, &pt) == 0 &&
		    pt.n > IMAGE_PART_MAX)
			bad++;
		image_parse_app_desc(buf, n, &d);
		image_find_esphome(buf, n, &e);
		image_parse_otadata(buf, n, &seq);
		free(buf);
	}
	is_int(bad, 0, "3000 damaged buffers: what parses lies inside them "
	    "(%zu headers accepted)", accepted);
}

/* Checksum, digest and table MD5 catch a changed byte. */
static void
test_checksums(const uint8_t *img, size_t len)
{
	struct image_header	 h;
	struct part_table	 pt;
	uint8_t			*buf;

	buf = xmalloc(len);
	memcpy(buf, img, len);
	buf[0x1000 + 24 + 8 + 5] ^= 0x40;	/* a byte of segment 0 */
	fix_hash(buf + 0x1000, len - 0x1000);
	is_int(image_parse_header(buf + 0x1000, len - 0x1000, &h), 0,
	    "patched bootloader still parses");
	tap_ok(!h.checksum_ok, "a changed segment byte fails the checksum");
	tap_ok(h.hash_ok == 1, "... while the (recomputed) digest holds");
	tap_ok(strstr(h.why, "checksum") != NULL, "why: %s", h.why);

	memcpy(buf, img, len);
	image_parse_header(buf + 0x1000, len - 0x1000, &h);
	buf[0x1000 + h.image_len - 1] ^= 0x01;	/* last digest byte */
	image_parse_header(buf + 0x1000, len - 0x1000, &h);
	tap_ok(h.checksum_ok && h.hash_ok == 0,
	    "a changed digest byte fails the SHA-256, not the checksum");

	memcpy(buf, img, len);
	buf[0x8000 + 12] = 'N';			/* nvs -> Nvs */
	is_int(image_parse_partitions(buf + 0x8000, len - 0x8000, &pt),
	    -EBADMSG, "a changed partition label fails the table MD5");
	tap_ok(pt.has_md5 && !pt.md5_ok && pt.n == 5,
	    "... and the entries are still listed");
	free(buf);
}

/* The ESPHome markers are found, bounded and printable-only. */
static void
test_esphome(void)
{
	static const char	 a[] = "xx\0ESPHome version %s\0junk"
	    "ESPHome version 2024.12.0b1 compiled on %s\0"
	    "Project %s version %s\0Project acme.sensor version 2.1\0";
	static const char	 b[] = "\0 (esphome v2023.6.3)\0";
	static const char	 c[] = "ESPHome version 2023\x1b[31m.6\0";
	static const char	 d[] = "ESPHome version "
	    "1234567890.1234567890.1234567890.12\0";
	static const char	 e1[] = "ESPHome version ";
	struct image_esphome	 e;
	uint8_t			*buf;
	size_t			 n, bad = 0;

	is_int(image_find_esphome((const uint8_t *)a, sizeof a, &e), 0,
	    "ESPHome version found past a format string");
	is_str(e.version, "2024.12.0b1", "ESPHome version text");
	is_str(e.name, "acme.sensor", "ESPHome project name");
	is_str(e.project_version, "2.1", "ESPHome project version");
	is_int(image_find_esphome((const uint8_t *)b, sizeof b, &e), 0,
	    "(esphome vX) marker");
	is_str(e.version, "2023.6.3", "version from (esphome vX)");
	is_str(e.name, "", "no project line: empty name");
	is_int(image_find_esphome((const uint8_t *)c, sizeof c, &e), -ENOENT,
	    "escape sequence inside a version: not taken");
	is_int(image_find_esphome((const uint8_t *)d, sizeof d, &e), -ENOENT,
	    "overlong version: not taken");
	is_int(image_find_esphome((const uint8_t *)e1, sizeof e1 - 1, &e),
	    -ENOENT, "marker at the very end: nothing read past it");
	for (n = 0; n < sizeof a; n++) {
		buf = xmalloc(n + 1);
		memcpy(buf, a, n);
		if (image_find_esphome(buf, n, &e) == 0 &&
		    strlen(e.version) >= sizeof e.version)
			bad++;
		free(buf);
	}
	is_int(bad, 0, "every truncation of the ESPHome text stays bounded");
}

/* ========================= Loading ========================= */

/* Every refusal of the brief, each with its cause. */
static void
test_refusals(const uint8_t *img, size_t len)
{
	const char	*argv[6];
	uint8_t		*buf, small[5] = { 1, 2, 3, 4, 5 }, *garbage;
	uint32_t	 s = 12345;
	size_t		 i;
	char		*demo, *dir, *empty, *trunc, *junk, *wrong, *bad, *tiny;
	char		*apponly, *wrongapp, *badpt;
	const char	*exp;
	struct image_set *set;
	char		*cause;

	demo = put_file("demo.bin", img, len);

	argv[0] = xasprintf("%s/no-such-file.bin", tmpdir);
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOENT, "no-such-file.bin at "
	    "0x0: cannot open it", "missing file");
	free((char *)argv[0]);

	dir = xasprintf("%s/adir", tmpdir);
	mkdir(dir, 0700);
	argv[0] = dir;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -EISDIR, "directory",
	    "a directory");
	rmdir(dir);
	free(dir);

	empty = put_file("empty.bin", "", 0);
	argv[0] = empty;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "empty.bin at 0x0: the "
	    "file is empty", "empty file");

	trunc = put_file("trunc.bin", img + 0x1000, 10);
	argv[0] = "0x1000";
	argv[1] = trunc;
	refused(2, argv, CHIP_ESP32S2, 0, 0, -EBADMSG, "header is cut short",
	    "truncated header at 0x1000");
	argv[0] = "0x10000";
	refused(2, argv, CHIP_ESP32S2, 0, 0, -EBADMSG, "trunc.bin at 0x10000: "
	    "the app at 0x10000 is damaged", "truncated header at 0x10000");

	garbage = xmalloc(0x10000);
	for (i = 0; i < 0x10000; i++) {
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		garbage[i] = (uint8_t)s;
	}
	garbage[0x1000] = 0x5a;
	junk = put_file("garbage.bin", garbage, 0x10000);
	argv[0] = junk;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "garbage.bin at 0x0: no "
	    "bootloader at 0x1000", "garbage at 0x0");
	free(garbage);

	/* An ESP32 bootloader: chip id 0, digest recomputed. */
	buf = xmalloc(len);
	memcpy(buf, img, len);
	le16_put(buf + 0x1000 + 12, 0);
	fix_hash(buf + 0x1000, len - 0x1000);
	wrong = put_file("esp32.bin", buf, len);
	argv[0] = wrong;
	exp = "esp32.bin at 0x0: this is an ESP32 image (chip id 0), the unit "
	    "is an ESP32-S2; use the ESP32-S2 build or --force";
	is_int(load(&set, 1, argv, CHIP_ESP32S2, 0, 0, &cause), -ENOEXEC,
	    "ESP32 image for an ESP32-S2 refused");
	tap_ok(cause != NULL && strlen(cause) > strlen(exp) &&
	    strcmp(cause + strlen(cause) - strlen(exp), exp) == 0,
	    "cause: ...%s", exp);
	free(cause);
	accepted(1, argv, CHIP_ESP32S2, 1, 0, "ESP32 image with force");
	refused(1, argv, CHIP_ESP32, 0, 0, -ENOEXEC, "the app at 0x10000 is "
	    "an ESP32-S2 image", "ESP32 bootloader, S2 app, for an ESP32");
	le16_put(buf + 0x10000 + 12, 0);
	fix_hash(buf + 0x10000, len - 0x10000);
	argv[0] = put_file("esp32all.bin", buf, len);
	accepted(1, argv, CHIP_ESP32, 0, 0, "all-ESP32 image for an ESP32");
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "this is an ESP32 "
	    "image (chip id 0)", "all-ESP32 image for an ESP32-S2");

	memcpy(buf, img, len);
	le16_put(buf + 0x10000 + 12, 9);
	fix_hash(buf + 0x10000, len - 0x10000);
	wrongapp = put_file("s3app.bin", buf, len);
	argv[0] = wrongapp;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "the app at 0x10000 is "
	    "an ESP32-S3 image (chip id 9)", "ESP32-S3 app in an S2 image");

	refused(1, (const char *[]){ demo }, CHIP_ESP32S3, 0, 0, -ENOEXEC,
	    "demo.bin at 0x0: not a bootloader (first byte 0xff",
	    "S2 factory image for an ESP32-S3 (bootloader at 0x0)");

	memcpy(buf, img, len);
	buf[0x1000 + 24 + 8 + 5] ^= 0x40;
	fix_hash(buf + 0x1000, len - 0x1000);
	bad = put_file("badsum.bin", buf, len);
	argv[0] = bad;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -EBADMSG, "the bootloader at "
	    "0x1000 fails its checksum", "bad bootloader checksum");
	accepted(1, argv, CHIP_ESP32S2, 1, 0, "bad checksum with force");

	memcpy(buf, img, len);
	buf[len - 1] ^= 0x01;
	argv[0] = put_file("badhash.bin", buf, len);
	refused(1, argv, CHIP_ESP32S2, 0, 0, -EBADMSG, "the app at 0x10000 "
	    "fails its appended SHA-256", "bad app digest");

	memcpy(buf, img, len);
	buf[0x8000 + 12] = 'N';
	badpt = put_file("badpt.bin", buf, len);
	argv[0] = badpt;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -EBADMSG, "the partition table "
	    "at 0x8000 is damaged", "bad partition table MD5");
	free(buf);

	argv[0] = put_file("boot.bin", img + 0x1000, 0x7000);
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "boot.bin at 0x0: this "
	    "is an ESP image (a bootloader?) but the ESP32-S2 reads its "
	    "bootloader at 0x1000", "S2 bootloader at 0x0");
	argv[0] = "0x1000";
	argv[1] = put_file("boot.bin", img + 0x1000, 0x7000);
	accepted(2, argv, CHIP_ESP32S2, 0, 0, "S2 bootloader at 0x1000");

	apponly = put_file("app.bin", img + 0x10000, len - 0x10000);
	argv[0] = apponly;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "app.bin at 0x0: this "
	    "is an application image", "app image at 0x0");
	argv[0] = "0x10000";
	argv[1] = apponly;
	accepted(2, argv, CHIP_ESP32S2, 0, 0, "app image at 0x10000");

	argv[0] = "0x380000";
	argv[1] = demo;
	refused(2, argv, CHIP_ESP32S2, 0, 0, -EFBIG, "past the end of the "
	    "4 MB flash", "demo at 0x380000 on 4 MB");
	accepted(2, argv, CHIP_ESP32S2, 0, 0x800000, "demo at 0x380000 on "
	    "8 MB");
	argv[0] = demo;
	refused(1, argv, CHIP_ESP32S2, 0, 0x80000, -EFBIG, "more than the "
	    "whole 512 KB flash", "file larger than the flash");

	tiny = put_file("tiny.bin", small, sizeof small);
	argv[0] = "0x0";
	argv[1] = demo;
	argv[2] = "0x10000";
	argv[3] = tiny;
	refused(4, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "demo.bin at 0x0 (up to "
	    "0xb1c50) overlaps", "overlapping regions");
	argv[0] = "0x20000";
	argv[1] = tiny;
	argv[2] = "0x20000";
	argv[3] = tiny;
	refused(4, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "overlaps",
	    "two regions at one offset");

	argv[0] = "0x1001";
	argv[1] = tiny;
	refused(2, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "tiny.bin at 0x1001: the "
	    "offset must be a multiple of 0x1000", "unaligned offset");
	argv[0] = "0x1g";
	refused(2, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "tiny.bin at 0x1g: not "
	    "an offset", "malformed offset");
	argv[0] = "0x0";
	argv[1] = demo;
	argv[2] = "0x200000";
	refused(3, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "\"0x200000\" has no "
	    "partner", "odd argument count");
	refused(0, argv, CHIP_ESP32S2, 0, 0, -EINVAL, "no firmware given",
	    "no arguments");
}

/* Padding, digests, order, identity and flash checks of a job. */
static void
test_regions(const uint8_t *img, size_t len)
{
	const char		*argv[4];
	struct image_set	*set, *set2;
	uint8_t			 small[5] = { 1, 2, 3, 4, 5 };
	uint8_t			 padded[8] = {
		1, 2, 3, 4, 5, 0xff, 0xff, 0xff
	};
	char			*demo, *tiny, *cause, md5[33], sha[65];
	const struct image_region *r;

	demo = put_file("demo2.bin", img, len);
	tiny = put_file("tiny2.bin", small, sizeof small);
	argv[0] = "0x200000";
	argv[1] = tiny;
	argv[2] = "0x0";
	argv[3] = demo;
	is_int(load(&set, 4, argv, CHIP_ESP32S2, 0, 0, &cause), 0,
	    "two regions load");
	if (set == NULL) {
		tap_diag("  %s", cause);
		free(cause);
		return;
	}
	is_int(set->nregions, 2, "two regions");
	is_int(set->regions[0].offset, 0, "sorted: 0x0 first");
	r = &set->regions[1];
	is_int(r->offset, 0x200000, "then 0x200000");
	is_int(r->file_len, 5, "5-byte file");
	is_int(r->len, 8, "padded to 8 bytes");
	is_mem(r->data, padded, 8, "padding is 0xFF");
	digest_md5_hex(padded, 8, md5);
	is_str(r->md5hex, md5, "MD5 is over the padded data");
	digest_sha256_hex(small, 5, sha);
	is_str(r->sha256hex, sha, "SHA-256 is over the file");
	is_int(set->total_len, len + 8, "total bytes to write");
	check_inflate(set, "two regions");

	argv[0] = "0x0";
	argv[1] = demo;
	argv[2] = "0x200000";
	argv[3] = tiny;
	is_int(load(&set2, 4, argv, CHIP_ESP32S2, 0, 0, &cause), 0,
	    "same regions in the other order");
	is_str(set->sha256hex, set2->sha256hex,
	    "job identity does not depend on argument order");
	image_free(set2);
	argv[2] = "0x201000";
	is_int(load(&set2, 4, argv, CHIP_ESP32S2, 0, 0, &cause), 0,
	    "same files, another offset");
	tap_ok(strcmp(set->sha256hex, set2->sha256hex) != 0,
	    "job identity changes with an offset");
	image_free(set2);

	is_int(image_check_flash(set, 0x400000, &cause), 0, "fits 4 MB");
	cause = NULL;
	is_int(image_check_flash(set, 0x200000, &cause), -EFBIG,
	    "does not fit 2 MB (ends at 0x200008)");
	tap_ok(cause != NULL && strstr(cause, "tiny2.bin at 0x200000: ends at "
	    "0x200008, past the end of the 2 MB flash") != NULL, "cause: %s",
	    cause ? cause : "(none)");
	free(cause);
	image_free(set);

	is_int(image_load_buffer(&set, "buf", 0x1000, img + 0x1000, 0x7000,
	    &(struct image_load_opts){ chip_by_id(CHIP_ESP32S2), 0, 0 },
	    &cause), 0, "bootloader from memory at 0x1000");
	image_free(set);
	is_int(image_load_buffer(&set, "buf", 0x800, img, 16,
	    &(struct image_load_opts){ NULL, 0, 0 }, &cause), -EINVAL,
	    "unaligned offset from memory refused");
	free(cause);
}

/* ========================= The real firmware ========================= */

/* The vendor images parse to the facts in shared/firmware/README.md. */
static void
test_real(const char *shared)
{
	struct image_set	*set;
	struct image_header	 h;
	struct part_table	 pt;
	struct image_app_desc	 d;
	struct image_esphome	 e;
	const uint8_t		*p;
	const char		*argv[2];
	char			*factory, *ota, *cause;
	size_t			 avail;
	uint32_t		 seq;
	double			 ratio;
	static const struct {
		const char	*label;
		uint8_t		 type, subtype;
		uint32_t	 offset, size;
	} want[] = {
		{ "nvs", 1, 0x02, 0x9000, 0x5000 },
		{ "otadata", 1, 0x00, 0xe000, 0x2000 },
		{ "app0", 0, 0x10, 0x10000, 0x1c0000 },
		{ "app1", 0, 0x11, 0x1d0000, 0x1c0000 },
		{ "eeprom", 1, 0x99, 0x390000, 0x1000 },
		{ "spiffs", 1, 0x82, 0x391000, 0xf000 },
	};
	size_t			 i;
	int			 ok;

	factory = xasprintf("%s/firmware/%s", shared, FACTORY);
	ota = xasprintf("%s/firmware/%s", shared, OTA);
	if (access(factory, R_OK) != 0 || access(ota, R_OK) != 0) {
		tap_diag("real firmware not found under %s/firmware: skipping "
		    "the real-image cases", shared);
		free(factory);
		free(ota);
		return;
	}
	argv[0] = factory;
	is_int(load(&set, 1, argv, CHIP_ESP32S2, 0, 0, &cause), 0,
	    "factory image loads for an ESP32-S2");
	if (set == NULL) {
		tap_diag("  %s", cause);
		free(cause);
		goto out;
	}
	is_int(set->regions[0].len, 994112, "factory: 994112 bytes");
	is_str(set->regions[0].sha256hex, FACTORY_SHA256, "factory SHA-256");
	is_str(set->regions[0].md5hex, FACTORY_MD5, "factory MD5");
	ratio = (double)set->regions[0].zlen / set->regions[0].len;
	tap_ok(ratio > 0.60 && ratio < 0.66, "factory deflates to %zu bytes "
	    "(%.1f%%; README: 626,879)", set->regions[0].zlen, ratio * 100);
	check_inflate(set, "factory");

	p = image_at(set, 0x1000, &avail, NULL);
	is_int(image_parse_header(p, avail, &h), 0, "factory bootloader at "
	    "0x1000 parses");
	is_int(h.segment_count, 3, "bootloader: 3 segments");
	is_int(h.flash_mode, IMAGE_MODE_DIO, "bootloader: DIO");
	is_int(h.size_freq, 0x2f, "bootloader: size/freq byte 0x2F");
	is_int(h.flash_size, 0x400000, "bootloader: 4 MB");
	is_int(h.flash_freq, 80, "bootloader: 80 MHz");
	is_int(h.chip_id, 2, "bootloader: chip id 2 (ESP32-S2)");
	tap_ok(h.checksum_ok && h.hash_ok == 1, "bootloader checksum and "
	    "SHA-256 valid");

	p = image_at(set, 0x8000, &avail, NULL);
	is_int(image_parse_partitions(p, avail, &pt), 0, "partition table "
	    "parses");
	is_int(pt.n, 6, "6 partitions");
	tap_ok(pt.has_md5 && pt.md5_ok, "partition table MD5 valid");
	ok = pt.n == nitems(want);
	for (i = 0; ok && i < nitems(want); i++) {
		if (strcmp(pt.e[i].label, want[i].label) != 0 ||
		    pt.e[i].type != want[i].type ||
		    pt.e[i].subtype != want[i].subtype ||
		    pt.e[i].offset != want[i].offset ||
		    pt.e[i].size != want[i].size) {
			tap_diag("  entry %zu: %s 0x%x+0x%x", i, pt.e[i].label,
			    pt.e[i].offset, pt.e[i].size);
			ok = 0;
		}
	}
	tap_ok(ok, "partitions: nvs, otadata, app0, app1, eeprom, spiffs with "
	    "the README offsets and sizes");

	p = image_at(set, 0xe000, &avail, NULL);
	is_int(image_parse_otadata(p, 0x2000, &seq), 0, "otadata is valid");
	is_int(seq, 1, "otadata sequence 1 (boots app0)");

	p = image_at(set, 0x10000, &avail, NULL);
	is_int(image_parse_header(p, avail, &h), 0, "app at 0x10000 parses");
	is_int(h.chip_id, 2, "app: chip id 2");
	tap_ok(h.checksum_ok && h.hash_ok == 1, "app checksum and SHA-256 "
	    "valid");
	is_int(0x10000 + h.image_len, 0xf2b40, "app ends at 0xF2B40");
	is_int(image_parse_app_desc(p, avail, &d), 0, "app descriptor");
	is_str(d.project_name, "arduino-lib-builder", "app project");
	is_str(d.idf_ver, "v4.4.4", "app ESP-IDF version");
	is_str(d.date, "Apr 20 2023", "app build date");
	is_int(image_find_esphome(p, avail, &e), 0, "ESPHome version found");
	is_str(e.version, "2023.6.3", "ESPHome 2023.6.3");
	is_str(e.name, "Screek.Human_Presence_Sensor", "ESPHome project name");
	image_free(set);

	argv[0] = "0x10000";
	argv[1] = ota;
	is_int(load(&set, 2, argv, CHIP_ESP32S2, 0, 0, &cause), 0,
	    "OTA image loads at 0x10000");
	if (set != NULL) {
		is_str(set->regions[0].sha256hex, OTA_SHA256, "OTA SHA-256");
		is_str(set->regions[0].md5hex, OTA_MD5, "OTA MD5");
		p = set->regions[0].data;
		avail = set->regions[0].len;
		is_int(image_parse_header(p, avail, &h), 0, "OTA header");
		tap_ok(h.chip_id == 2 && h.checksum_ok && h.hash_ok == 1,
		    "OTA: chip id 2, checksum and SHA-256 valid");
		is_int(image_parse_app_desc(p, avail, &d), 0, "OTA descriptor");
		is_str(d.project_name, "arduino-lib-builder", "OTA project");
		is_int(image_find_esphome(p, avail, &e), 0, "OTA ESPHome");
		is_str(e.version, "2023.6.3", "OTA ESPHome 2023.6.3");
		check_inflate(set, "OTA");
		image_free(set);
	} else {
		tap_diag("  %s", cause);
		free(cause);
	}
	argv[0] = ota;
	refused(1, argv, CHIP_ESP32S2, 0, 0, -ENOEXEC, "at 0x0: this is an "
	    "application image", "OTA image at 0x0");
	argv[0] = factory;
	refused(1, argv, CHIP_ESP32S2, 0, 0x80000, -EFBIG, "more than the "
	    "whole 512 KB flash", "factory image on a 512 KB flash");
	refused(1, argv, CHIP_ESP32C3, 0, 0, -ENOEXEC, "not a bootloader",
	    "factory S2 image for an ESP32-C3");
out:
	free(factory);
	free(ota);
}

/* Synthetic cases always; the real-image cases when the files exist. */
int
main(void)
{
	const char	*shared, *top;
	char		*def = NULL;
	uint8_t		*img;
	size_t		 len;

	snprintf(tmpdir, sizeof tmpdir, "%s/espf-image-XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		tap_skip_all("cannot make a temporary directory");

	demo_build(&img, &len);
	test_offsets();
	test_demo_parse(img, len);
	test_demo_load();
	test_bounds(img, len);
	test_mutations(img);
	test_checksums(img, len);
	test_esphome();
	test_refusals(img, len);
	test_regions(img, len);

	shared = getenv("ESPF_SHARED");
	if (shared == NULL && (top = getenv("top_srcdir")) != NULL)
		shared = def = xasprintf("%s/../shared", top);
	if (shared != NULL)
		test_real(shared);
	else
		tap_diag("ESPF_SHARED not set: skipping the real-image cases");
	free(def);
	free(img);
	cleanup();
	return (tap_done());
}
