/*
 * libFuzzer target for the firmware parsers and checks (image.c).  Every
 * pure parser (ESP image header, partition table, app descriptor, ESPHome
 * strings, otadata, offsets) gets the input; each must stay inside it,
 * return one of its documented codes, keep its promises about what it
 * filled in, and leave only terminated strings.  Then image_load_buffer() loads the bytes
 * the way "espfleet FILE" would: at an offset, for a chip, in a flash size,
 * with or without --force, as chosen by the first input byte.  A loaded set
 * must hold the bytes padded as documented with a deflate stream that
 * inflates back to them; a refusal must name a reason in clean text.
 *
 * Input: byte 0 = mode (bits 0-2 placement, bit 3 force, bits 4-5 chip,
 * bits 6-7 flash size); the rest is the image.  Placement 4 ("merged")
 * reads two le16 lengths, then puts a bootloader at 0x1000, a partition
 * table at 0x8000 and an app at 0x10000 in a 0xFF-filled flash image, so
 * that small inputs reach the checks a whole factory image goes through.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "chip.h"
#include "image.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A region name with an escape sequence: it must never reach a cause. */
#define FUZZ_NAME	"fuzz\033]0;owned\007.bin"

/* Report a broken property and abort, so that libFuzzer keeps the input. */
static void
fuzz_fail(const char *what, long arg)
{
	fprintf(stderr, "fuzz-image: %s (%ld)\n", what, arg);
	abort();
}

/* malloc that never returns NULL and never gets 0 (a fuzzer cannot OOM). */
static void *
fuzz_alloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		abort();
	return (p);
}

/* Whether a fixed-size char array holds a terminated string. */
static int
fuzz_terminated(const char *s, size_t cap)
{
	return (memchr(s, '\0', cap) != NULL);
}

/* Whether a string is printable ASCII without spaces (ESPHome tokens). */
static int
fuzz_token(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s <= 0x20 || *s >= 0x7f)
			return (0);
	}
	return (1);
}

/* Whether user-facing text is free of control bytes (no escapes). */
static int
fuzz_clean_text(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return (0);
	}
	return (1);
}

/* Check the formatting helpers with an exact-size heap buffer. */
static void
fuzz_image_names(uint8_t b0, uint8_t b1, uint32_t bytes)
{
	char		*buf;
	const char	*s;
	size_t		 cap = 1 + b0 % 12;

	buf = fuzz_alloc(cap);
	image_size_name(bytes, buf, cap);
	if (!fuzz_terminated(buf, cap))
		fuzz_fail("image_size_name left no NUL", (long)cap);
	s = image_part_subtype_name(b0, b1, buf, cap);
	if (s == NULL || (s == buf && !fuzz_terminated(buf, cap)))
		fuzz_fail("image_part_subtype_name gave no name", b1);
	free(buf);
	(void)image_part_type_name(b0);
	if ((image_flash_mode_name(b0) == NULL) != (b0 >= IMAGE_MODE__MAX))
		fuzz_fail("image_flash_mode_name wrong for", b0);
	(void)image_flash_size_bytes(b1 >> 4);
	(void)image_flash_freq_mhz(b1 & 0xf);
}

/* Parse the bytes as an ESP image and hold the parser to its comment. */
static void
fuzz_image_header(const uint8_t *p, size_t len)
{
	struct image_header	 h;
	size_t			 i, end = IMAGE_HEADER_LEN;
	int			 error;

	memset(&h, 0xa5, sizeof h);
	error = image_parse_header(p, len, &h);
	if (!fuzz_terminated(h.why, sizeof h.why))
		fuzz_fail("header: why not terminated", error);
	if (error != 0 && error != -EINVAL && error != -EBADMSG)
		fuzz_fail("header: unknown return value", error);
	if ((error == -EINVAL) != (len == 0 || p[0] != IMAGE_MAGIC))
		fuzz_fail("header: -EINVAL is not \"no magic\"", error);
	if (error != 0) {
		if (h.why[0] == '\0')
			fuzz_fail("header: refused without a reason", error);
		return;
	}
	if (h.segment_count == 0 || h.segment_count > IMAGE_MAX_SEGMENTS)
		fuzz_fail("header: accepted segment count", h.segment_count);
	for (i = 0; i < h.segment_count; i++) {
		if (h.segs[i].offset != end + IMAGE_SEG_HEADER_LEN ||
		    h.segs[i].len > len - h.segs[i].offset)
			fuzz_fail("header: segment outside the data", (long)i);
		end = h.segs[i].offset + h.segs[i].len;
	}
	if (h.image_len > len || h.image_len <= end || h.image_len % 16 != 0)
		fuzz_fail("header: image length out of range",
		    (long)h.image_len);
	if (h.checksum != p[(end | 15)] ||
	    h.checksum_ok != (h.checksum == h.checksum_calc))
		fuzz_fail("header: checksum verdict", h.checksum);
	if ((h.hash_appended == 1) != (h.hash_ok != -1) ||
	    h.hash_ok < -1 || h.hash_ok > 1)
		fuzz_fail("header: hash verdict", h.hash_ok);
	if (h.chip_id != le16_get(p + 12) || h.entry != le32_get(p + 4))
		fuzz_fail("header: fields differ from the bytes", 0);
}

/* Parse the bytes as a partition table and check what came out. */
static void
fuzz_image_parts(const uint8_t *p, size_t len)
{
	struct part_table	*pt;
	char			 sub[8];
	size_t			 i;
	int			 error;

	pt = fuzz_alloc(sizeof *pt);
	memset(pt, 0xa5, sizeof *pt);
	error = image_parse_partitions(p, len, pt);
	if (error != 0 && error != -EINVAL && error != -EBADMSG)
		fuzz_fail("parts: unknown return value", error);
	if ((error == -EINVAL) !=
	    (len < 2 || le16_get(p) != IMAGE_PART_MAGIC))
		fuzz_fail("parts: -EINVAL is not \"no table\"", error);
	if (!fuzz_terminated(pt->why, sizeof pt->why) ||
	    (error != 0 && pt->why[0] == '\0'))
		fuzz_fail("parts: no reason, or not terminated", error);
	if (pt->n > IMAGE_PART_MAX || pt->n * IMAGE_PART_ENTRY_LEN > len)
		fuzz_fail("parts: more entries than the data holds",
		    (long)pt->n);
	if (pt->has_md5 != 0 && pt->has_md5 != 1)
		fuzz_fail("parts: has_md5", pt->has_md5);
	for (i = 0; i < pt->n; i++) {
		if (!fuzz_terminated(pt->e[i].label, sizeof pt->e[i].label))
			fuzz_fail("parts: label not terminated", (long)i);
		if (image_part_subtype_name(pt->e[i].type, pt->e[i].subtype,
		    sub, sizeof sub) == NULL)
			fuzz_fail("parts: no subtype name", (long)i);
		(void)image_part_is_app(&pt->e[i]);
	}
	free(pt);
}

/* Parse the app descriptor and the ESPHome strings. */
static void
fuzz_image_desc(const uint8_t *p, size_t len)
{
	struct image_app_desc	d;
	struct image_esphome	e;
	int			error;

	error = image_parse_app_desc(p, len, &d);
	if (error != 0 && error != -EINVAL)
		fuzz_fail("app_desc: unknown return value", error);
	if (error == 0 && (len < IMAGE_APP_DESC_OFFSET + IMAGE_APP_DESC_LEN ||
	    le32_get(p + IMAGE_APP_DESC_OFFSET) != IMAGE_APP_DESC_MAGIC))
		fuzz_fail("app_desc: accepted without its magic", 0);
	if (!fuzz_terminated(d.version, sizeof d.version) ||
	    !fuzz_terminated(d.project_name, sizeof d.project_name) ||
	    !fuzz_terminated(d.time, sizeof d.time) ||
	    !fuzz_terminated(d.date, sizeof d.date) ||
	    !fuzz_terminated(d.idf_ver, sizeof d.idf_ver))
		fuzz_fail("app_desc: field not terminated", 0);

	error = image_find_esphome(p, len, &e);
	if (error != 0 && error != -ENOENT)
		fuzz_fail("esphome: unknown return value", error);
	if (!fuzz_terminated(e.version, sizeof e.version) ||
	    !fuzz_terminated(e.name, sizeof e.name) ||
	    !fuzz_terminated(e.project_version, sizeof e.project_version))
		fuzz_fail("esphome: field not terminated", 0);
	if (error == 0 && (e.version[0] < '0' || e.version[0] > '9' ||
	    strchr(e.version, '.') == NULL || !fuzz_token(e.version) ||
	    !fuzz_token(e.name) || !fuzz_token(e.project_version)))
		fuzz_fail("esphome: not a version or not printable", 0);
}

/* Parse the bytes as the two otadata sectors; a found seq is in one. */
static void
fuzz_image_otadata(const uint8_t *p, size_t len)
{
	uint32_t	seq = 1;
	int		error;

	error = image_parse_otadata(p, len, &seq);
	if (error != 0 && error != -ENOENT)
		fuzz_fail("otadata: unknown return value", error);
	if (error != 0)
		return;
	if (seq == 0 || seq == UINT32_MAX ||
	    ((len < 32 || le32_get(p) != seq) &&
	    (len < IMAGE_SECTOR + 32 || le32_get(p + IMAGE_SECTOR) != seq)))
		fuzz_fail("otadata: sequence number from nowhere", (long)seq);
}

/* Parse the first bytes as an OFFSET argument; accepted ones re-parse. */
static void
fuzz_image_offset(const uint8_t *p, size_t len)
{
	char		 s[24], again[24];
	const char	*why = NULL;
	uint32_t	 v = 0, w = 0;
	int		 error;

	len = MINIMUM(len, sizeof s - 1);
	memcpy(s, p, len);
	s[len] = '\0';
	error = image_parse_offset(s, &v, &why);
	if (error != 0) {
		if (error != -EINVAL || why == NULL || !fuzz_clean_text(why))
			fuzz_fail("offset: refused without a reason", error);
		return;
	}
	if (v % IMAGE_SECTOR != 0)
		fuzz_fail("offset: accepted an unaligned offset", (long)v);
	snprintf(again, sizeof again, "0x%x", v);
	if (image_parse_offset(again, &w, &why) != 0 || w != v)
		fuzz_fail("offset: does not re-parse", (long)v);
}

/* Chip for bits 4-5 of the mode byte; NULL means "do not check". */
static const struct chip_info *
fuzz_image_chip(uint8_t mode)
{
	switch ((mode >> 4) & 3) {
	case 0:
		return (chip_by_id(CHIP_ESP32S2));
	case 1:
		return (chip_by_id(CHIP_ESP32));
	case 2:
		return (NULL);
	}
	return (chip_by_id(CHIP_ESP32C3));
}

/* Flash size for bits 6-7 of the mode byte (0 means the default). */
static uint32_t
fuzz_image_flash(uint8_t mode)
{
	static const uint32_t	sizes[] = {
		0, 0x100000, 0x10000, 0x1000000
	};

	return (sizes[mode >> 6]);
}

/*
 * Lay out a merged factory image: p starts with the bootloader and table
 * lengths (le16 each), then bootloader, table and app bytes.
 */
static uint8_t *
fuzz_image_merged(const uint8_t *p, size_t len, size_t *outlen)
{
	const uint8_t	*boot, *table, *app;
	uint8_t		*buf;
	size_t		 blen, tlen, alen, n;

	if (len < 4)
		return (NULL);
	blen = MINIMUM((size_t)le16_get(p), len - 4);
	tlen = MINIMUM((size_t)le16_get(p + 2), len - 4 - blen);
	alen = len - 4 - blen - tlen;
	boot = p + 4;
	table = boot + blen;
	app = table + tlen;
	/* Each part ends where the next one starts in flash. */
	blen = MINIMUM(blen, (size_t)(IMAGE_PART_OFFSET - 0x1000));
	tlen = MINIMUM(tlen, (size_t)(IMAGE_APP_ALIGN - IMAGE_PART_OFFSET));
	n = alen != 0 ? IMAGE_APP_ALIGN + alen : IMAGE_PART_OFFSET + tlen;
	buf = fuzz_alloc(n);
	memset(buf, 0xff, n);
	memcpy(buf + 0x1000, boot, blen);
	memcpy(buf + IMAGE_PART_OFFSET, table, tlen);
	if (alen != 0)
		memcpy(buf + IMAGE_APP_ALIGN, app, alen);
	*outlen = n;
	return (buf);
}

/* Check a loaded set: bytes, padding, digests, deflate, lookups. */
static void
fuzz_image_check_set(const struct image_set *set, uint32_t offset,
    const uint8_t *p, size_t len, uint32_t flash)
{
	const struct image_region	*r, *rr;
	const uint8_t			*q;
	uint8_t				*inflated;
	uint32_t			 apps[IMAGE_PART_MAX + 16];
	uLongf				 ilen;
	size_t				 i, avail, n;
	char				*cause = NULL;

	if (set->nregions != 1)
		fuzz_fail("set: region count", (long)set->nregions);
	r = &set->regions[0];
	if (r->offset != offset || r->file_len != len || r->len % 4 != 0 ||
	    r->len < len || r->len - len >= 4 || set->total_len != r->len)
		fuzz_fail("set: lengths", (long)r->len);
	if (memcmp(r->data, p, len) != 0)
		fuzz_fail("set: bytes differ from the input", 0);
	for (i = len; i < r->len; i++) {
		if (r->data[i] != 0xff)
			fuzz_fail("set: padding is not 0xFF", (long)i);
	}
	if (strlen(r->md5hex) != 32 || strlen(r->sha256hex) != 64 ||
	    strlen(set->sha256hex) != 64 || !fuzz_clean_text(r->name))
		fuzz_fail("set: digests or name", 0);
	inflated = fuzz_alloc(r->len);
	ilen = r->len;
	if (uncompress(inflated, &ilen, r->zdata, r->zlen) != Z_OK ||
	    ilen != r->len || memcmp(inflated, r->data, r->len) != 0)
		fuzz_fail("set: deflate stream does not inflate back", 0);
	free(inflated);

	/* image_at() sees the file bytes, not the padding. */
	q = image_at(set, offset, &avail, &rr);
	if (q != r->data || avail != len || rr != r)
		fuzz_fail("set: image_at the start", (long)avail);
	q = image_at(set, offset + (uint32_t)len - 1, &avail, NULL);
	if (q != r->data + len - 1 || avail != 1)
		fuzz_fail("set: image_at the last byte", (long)avail);
	if (image_at(set, offset + (uint32_t)len, &avail, NULL) != NULL ||
	    avail != 0)
		fuzz_fail("set: image_at past the end", (long)avail);
	n = image_app_addrs(set, 0x1000, apps, nitems(apps));
	for (i = 0; i < n; i++) {
		if ((i > 0 && apps[i] <= apps[i - 1]) ||
		    image_at(set, apps[i], &avail, NULL) == NULL)
			fuzz_fail("set: app address list", (long)i);
	}
	if (image_check_flash(set, flash, &cause) != 0)
		fuzz_fail("set: loaded but does not fit its flash", 0);
	if (image_check_flash(set, offset + (uint32_t)r->len - 1, &cause) !=
	    -EFBIG || cause == NULL || !fuzz_clean_text(cause))
		fuzz_fail("set: one byte too small a flash accepted", 0);
	free(cause);
}

/* Load the bytes as a job region the way the command line would. */
static void
fuzz_image_load(uint8_t mode, const uint8_t *p, size_t len)
{
	static const uint32_t	 offsets[] = {
		0x0, 0x1000, IMAGE_PART_OFFSET, IMAGE_APP_ALIGN, 0x0, 0x1234,
		0x3ff000
	};
	struct image_load_opts	 opts;
	struct image_set	*set = NULL;
	uint8_t			*merged = NULL;
	uint32_t		 offset, flash;
	char			*cause = NULL;
	int			 error;

	if ((mode & 7) == 7)
		return;
	if ((mode & 7) == 4) {
		if ((merged = fuzz_image_merged(p, len, &len)) == NULL)
			return;
		p = merged;
	}
	offset = offsets[mode & 7];
	memset(&opts, 0, sizeof opts);
	opts.chip = fuzz_image_chip(mode);
	opts.flash_size = fuzz_image_flash(mode);
	opts.force = (mode >> 3) & 1;
	flash = opts.flash_size != 0 ? opts.flash_size : IMAGE_DEFAULT_FLASH;

	error = image_load_buffer(&set, FUZZ_NAME, offset, p, len, &opts,
	    &cause);
	if (error == 0) {
		if (set == NULL || cause != NULL)
			fuzz_fail("load: success without a set", 0);
		if (offset % IMAGE_SECTOR != 0 || len == 0 ||
		    (uint64_t)offset + len > flash)
			fuzz_fail("load: accepted a bad offset or size", 0);
		if (!opts.force && opts.chip != NULL &&
		    image_check_chip(set, opts.chip, 0, &cause) != 0)
			fuzz_fail("load: accepted a set its check refuses", 0);
		fuzz_image_check_set(set, offset, p, len, flash);
		image_free(set);
	} else {
		if (set != NULL || cause == NULL || !fuzz_clean_text(cause))
			fuzz_fail("load: refused without a clean cause", error);
		if (error != -EINVAL && error != -EFBIG &&
		    error != -ENOEXEC && error != -EBADMSG)
			fuzz_fail("load: unexpected error code", error);
		if (opts.force && error != -EINVAL && error != -EFBIG)
			fuzz_fail("load: --force did not force", error);
		free(cause);
	}
	free(merged);
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return (0);
	fuzz_image_header(data + 1, size - 1);
	fuzz_image_parts(data + 1, size - 1);
	fuzz_image_desc(data + 1, size - 1);
	fuzz_image_offset(data + 1, size - 1);
	fuzz_image_otadata(data + 1, size - 1);
	fuzz_image_names(data[0], size > 1 ? data[1] : 0,
	    size > 4 ? le32_get(data + size - 4) : 0);
	fuzz_image_load(data[0], data + 1, size - 1);
	return (0);
}
