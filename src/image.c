/*
 * Firmware images.  The first half holds the pure parsers: they take a
 * pointer and a length, never read past it, never allocate and keep no
 * state, so a fuzzer can call them on arbitrary bytes.  The second half
 * loads OFFSET FILE pairs into an immutable struct image_set (padded,
 * deflated once, digested) and refuses, with a cause naming the file, the
 * offset and the reason, anything that would leave a unit unbootable.
 */

#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "image.h"
#include "util.h"

/* ========================= Pure parsers ========================= */

/* Parse a flash offset, hex (0x...) or decimal, strictly; no alignment. */
static int
image_parse_number(const char *s, uint32_t *out)
{
	uint64_t	 v = 0;
	unsigned	 base = 10, d;
	const char	*p = s;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	if (*p == '\0')
		return (-EINVAL);
	for (; *p != '\0'; p++) {
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return (-EINVAL);
		v = v * base + d;
		if (v > UINT32_MAX)
			return (-ERANGE);
	}
	*out = (uint32_t)v;
	return (0);
}

/* Parse an OFFSET argument as esptool takes it, sector-aligned for the ROM. */
int
image_parse_offset(const char *s, uint32_t *out, const char **why)
{
	uint32_t	v;
	int		error;

	error = image_parse_number(s, &v);
	if (error == -ERANGE) {
		*why = "the offset is past the 4 GiB flash address space";
		return (-EINVAL);
	}
	if (error != 0) {
		*why = "not an offset (write it as 0x10000 or 65536)";
		return (-EINVAL);
	}
	if (v % IMAGE_SECTOR != 0) {
		*why = "the offset must be a multiple of 0x1000 "
		    "(the ROM writes whole 4 KiB flash sectors)";
		return (-EINVAL);
	}
	*out = v;
	*why = NULL;
	return (0);
}

/* Name of a flash mode byte, or NULL when it is not one. */
const char *
image_flash_mode_name(unsigned mode)
{
	static const char *const names[] = {
		"QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ"
	};

	if (mode >= nitems(names))
		return (NULL);
	return (names[mode]);
}

/* Flash size for the high nibble of header byte 3 (1 MB .. 128 MB). */
uint32_t
image_flash_size_bytes(unsigned code)
{
	if (code > 7)
		return (0);
	return (0x100000u << code);
}

/* Flash clock for the low nibble of header byte 3 (ESP32, S2, S3, C3). */
unsigned
image_flash_freq_mhz(unsigned code)
{
	switch (code) {
	case 0x0:
		return (40);
	case 0x1:
		return (26);
	case 0x2:
		return (20);
	case 0xf:
		return (80);
	}
	return (0);
}

/* Say a byte count the way flash chips are sold: "4 MB", "512 KB". */
void
image_size_name(uint32_t bytes, char *buf, size_t cap)
{
	if (bytes != 0 && bytes % 0x100000 == 0)
		snprintf(buf, cap, "%u MB", bytes / 0x100000);
	else if (bytes != 0 && bytes % 0x400 == 0)
		snprintf(buf, cap, "%u KB", bytes / 0x400);
	else
		snprintf(buf, cap, "%u bytes", bytes);
}

/*
 * Parse an ESP image (magic 0xE9) at the start of buf: header, extended
 * header, segment table, the checksum in the last byte of the 16-byte
 * padded block after the segments, and the appended SHA-256.  Returns 0
 * when the structure is whole (integrity is in checksum_ok and hash_ok),
 * -EINVAL when buf is not an ESP image, -EBADMSG when it is a damaged one;
 * h->why says what was wrong and the fields read so far stay filled in.
 */
int
image_parse_header(const uint8_t *buf, size_t len, struct image_header *h)
{
	size_t		 off, i, j;
	uint32_t	 seglen;
	uint8_t		 cs = IMAGE_CHECKSUM_SEED, digest[IMAGE_DIGEST_LEN];

	memset(h, 0, sizeof *h);
	h->hash_ok = -1;
	if (len == 0 || buf[0] != IMAGE_MAGIC) {
		if (len == 0)
			snprintf(h->why, sizeof h->why, "no data");
		else
			snprintf(h->why, sizeof h->why, "first byte is 0x%02x, "
			    "not the ESP image magic 0xE9", buf[0]);
		return (-EINVAL);
	}
	if (len < IMAGE_HEADER_LEN) {
		snprintf(h->why, sizeof h->why, "the %d-byte image header is "
		    "cut short (%zu bytes)", IMAGE_HEADER_LEN, len);
		return (-EBADMSG);
	}
	h->segment_count = buf[1];
	h->flash_mode = buf[2];
	h->size_freq = buf[3];
	h->flash_size = image_flash_size_bytes(buf[3] >> 4);
	h->flash_freq = image_flash_freq_mhz(buf[3] & 0xf);
	h->entry = le32_get(buf + 4);
	h->wp_pin = buf[8];
	h->chip_id = le16_get(buf + 12);
	h->min_rev = buf[14];
	h->min_rev_full = le16_get(buf + 15);
	h->max_rev_full = le16_get(buf + 17);
	h->hash_appended = buf[23];

	if (h->segment_count == 0 || h->segment_count > IMAGE_MAX_SEGMENTS) {
		snprintf(h->why, sizeof h->why, "%u segments (an image has "
		    "1 to %d)", h->segment_count, IMAGE_MAX_SEGMENTS);
		return (-EBADMSG);
	}
	off = IMAGE_HEADER_LEN;
	for (i = 0; i < h->segment_count; i++) {
		if (len - off < IMAGE_SEG_HEADER_LEN) {
			snprintf(h->why, sizeof h->why, "segment %zu header at "
			    "0x%zx is past the end of the data (0x%zx bytes)",
			    i, off, len);
			return (-EBADMSG);
		}
		h->segs[i].load_addr = le32_get(buf + off);
		seglen = le32_get(buf + off + 4);
		off += IMAGE_SEG_HEADER_LEN;
		if (seglen > len - off) {
			snprintf(h->why, sizeof h->why, "segment %zu (0x%x "
			    "bytes at 0x%zx) runs past the end of the data "
			    "(0x%zx bytes)", i, seglen, off, len);
			return (-EBADMSG);
		}
		h->segs[i].len = seglen;
		h->segs[i].offset = (uint32_t)off;
		for (j = 0; j < seglen; j++)
			cs ^= buf[off + j];
		off += seglen;
	}

	/* esptool pads with zeros so the checksum ends a 16-byte block. */
	off |= 15;
	if (off >= len) {
		snprintf(h->why, sizeof h->why, "the checksum byte at 0x%zx is "
		    "past the end of the data (0x%zx bytes)", off, len);
		return (-EBADMSG);
	}
	h->checksum = buf[off];
	h->checksum_calc = cs;
	h->checksum_ok = (h->checksum == cs);
	off++;

	if (h->hash_appended == 1) {
		if (len - off < IMAGE_DIGEST_LEN) {
			snprintf(h->why, sizeof h->why, "the appended SHA-256 "
			    "at 0x%zx is past the end of the data (0x%zx "
			    "bytes)", off, len);
			return (-EBADMSG);
		}
		memcpy(h->hash, buf + off, IMAGE_DIGEST_LEN);
		digest_sha256(buf, off, digest);
		h->hash_ok = (memcmp(digest, h->hash, IMAGE_DIGEST_LEN) == 0);
		off += IMAGE_DIGEST_LEN;
	}
	h->image_len = (uint32_t)off;
	if (!h->checksum_ok)
		snprintf(h->why, sizeof h->why, "checksum 0x%02x stored, "
		    "0x%02x computed", h->checksum, h->checksum_calc);
	else if (h->hash_ok == 0)
		snprintf(h->why, sizeof h->why, "the appended SHA-256 does not "
		    "match the image");
	return (0);
}

/* Copy a fixed-size, maybe unterminated, string field; dst has n + 1. */
static void
image_copy_field(char *dst, const uint8_t *src, size_t n)
{
	size_t	i;

	for (i = 0; i < n && src[i] != '\0'; i++)
		dst[i] = (char)src[i];
	dst[i] = '\0';
}

/*
 * Parse a partition table (at 0x8000 in flash): 32-byte entries with magic
 * AA 50, an optional MD5 entry (EB EB) over the entries before it, and an
 * end entry of 0xFF.  Returns 0 for a whole table, -EINVAL if buf does not
 * start with one, -EBADMSG if it is damaged (entries so far stay in pt).
 */
int
image_parse_partitions(const uint8_t *buf, size_t len, struct part_table *pt)
{
	const uint8_t		*e;
	struct part_entry	*pe;
	size_t			 off, max;
	uint16_t		 magic;
	uint8_t			 md5[16];
	int			 damaged = 0;

	memset(pt, 0, sizeof *pt);
	if (len < 2 || le16_get(buf) != IMAGE_PART_MAGIC) {
		snprintf(pt->why, sizeof pt->why, "no partition table "
		    "(no AA 50 entry)");
		return (-EINVAL);
	}
	max = MINIMUM(len, (size_t)IMAGE_PART_MAX_LEN);
	for (off = 0; off < IMAGE_PART_MAX_LEN; off += IMAGE_PART_ENTRY_LEN) {
		if (max - off < IMAGE_PART_ENTRY_LEN) {
			snprintf(pt->why, sizeof pt->why, "the table is cut "
			    "short at 0x%zx", max);
			return (-EBADMSG);
		}
		e = buf + off;
		magic = le16_get(e);
		if (magic == IMAGE_PART_END_MAGIC)
			break;
		if (magic == IMAGE_PART_MD5_MAGIC) {
			digest_md5(buf, off, md5);
			pt->has_md5 = 1;
			pt->md5_ok = (memcmp(md5, e + 16, sizeof md5) == 0);
			if (!pt->md5_ok && !damaged) {
				snprintf(pt->why, sizeof pt->why, "the MD5 "
				    "entry does not match the %zu entries "
				    "before it", pt->n);
				damaged = 1;
			}
			continue;
		}
		if (magic != IMAGE_PART_MAGIC) {
			snprintf(pt->why, sizeof pt->why, "entry at 0x%zx has "
			    "magic %02x %02x, not AA 50", off, e[0], e[1]);
			return (-EBADMSG);
		}
		pe = &pt->e[pt->n++];
		pe->type = e[2];
		pe->subtype = e[3];
		pe->offset = le32_get(e + 4);
		pe->size = le32_get(e + 8);
		image_copy_field(pe->label, e + 12, 16);
		pe->flags = le32_get(e + 28);
		if ((uint64_t)pe->offset + pe->size >
		    (uint64_t)UINT32_MAX + 1 && !damaged) {
			snprintf(pt->why, sizeof pt->why, "entry %zu ends past "
			    "the 4 GiB flash address space", pt->n - 1);
			damaged = 1;
		}
	}
	return (damaged ? -EBADMSG : 0);
}

/* Name of a partition type, NULL for one ESP-IDF does not define. */
const char *
image_part_type_name(uint8_t type)
{
	switch (type) {
	case IMAGE_PART_APP:
		return ("app");
	case IMAGE_PART_DATA:
		return ("data");
	case 0x02:
		return ("bootloader");
	case 0x03:
		return ("partition_table");
	}
	return (NULL);
}

/* Subtype name as partition CSV files write it; "0x99" when unknown. */
const char *
image_part_subtype_name(uint8_t type, uint8_t sub, char *buf, size_t cap)
{
	static const char *const data[] = {
		"ota", "phy", "nvs", "coredump", "nvs_keys", "efuse",
		"undefined"
	};
	static const char *const data80[] = {
		"esphttpd", "fat", "spiffs", "littlefs"
	};

	if (type == IMAGE_PART_APP) {
		if (sub == IMAGE_PART_APP_FACTORY)
			return ("factory");
		if (sub >= IMAGE_PART_APP_OTA_MIN &&
		    sub <= IMAGE_PART_APP_OTA_MAX) {
			snprintf(buf, cap, "ota_%u",
			    (unsigned)(sub - IMAGE_PART_APP_OTA_MIN));
			return (buf);
		}
		if (sub == IMAGE_PART_APP_TEST)
			return ("test");
	} else if (type == IMAGE_PART_DATA) {
		if (sub < nitems(data))
			return (data[sub]);
		if (sub >= 0x80 && sub - 0x80 < (int)nitems(data80))
			return (data80[sub - 0x80]);
	}
	snprintf(buf, cap, "0x%02x", sub);
	return (buf);
}

/* Whether a partition holds an application the bootloader may start. */
int
image_part_is_app(const struct part_entry *pe)
{
	return (pe->type == IMAGE_PART_APP &&
	    (pe->subtype == IMAGE_PART_APP_FACTORY ||
	    (pe->subtype >= IMAGE_PART_APP_OTA_MIN &&
	    pe->subtype <= IMAGE_PART_APP_TEST)));
}

/*
 * Read the app descriptor of an app image that starts at app[0]: it is the
 * start of the first segment, at +0x20.  Returns -EINVAL if it is not there.
 */
int
image_parse_app_desc(const uint8_t *app, size_t len, struct image_app_desc *d)
{
	const uint8_t	*p;

	memset(d, 0, sizeof *d);
	if (len < IMAGE_APP_DESC_OFFSET + IMAGE_APP_DESC_LEN ||
	    app[0] != IMAGE_MAGIC)
		return (-EINVAL);
	p = app + IMAGE_APP_DESC_OFFSET;
	if (le32_get(p) != IMAGE_APP_DESC_MAGIC)
		return (-EINVAL);
	d->secure_version = le32_get(p + 4);
	image_copy_field(d->version, p + 16, 32);
	image_copy_field(d->project_name, p + 48, 32);
	image_copy_field(d->time, p + 80, 16);
	image_copy_field(d->date, p + 96, 16);
	image_copy_field(d->idf_ver, p + 112, 32);
	memcpy(d->elf_sha256, p + 144, sizeof d->elf_sha256);
	return (0);
}

/* Characters of an ESPHome version: 2023.6.3, 2024.12.0b1, 2023.7.0-dev. */
static int
image_is_version_char(uint8_t c)
{
	return ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '+' ||
	    c == '_');
}

/* Characters of a project name: printable, no space, not a format. */
static int
image_is_name_char(uint8_t c)
{
	return (c > 0x20 && c < 0x7f && c != '%');
}

/*
 * Copy the run of accepted characters at p into out (cap bytes with NUL).
 * Returns its length, or 0 when it is empty, too long, or (version) does
 * not look like one: starts with a digit and has a dot.
 */
static size_t
image_token(const uint8_t *p, size_t avail, char *out, size_t cap,
    int version)
{
	size_t	n = 0;
	int	dot = 0;

	while (n < avail && (version ? image_is_version_char(p[n]) :
	    image_is_name_char(p[n]))) {
		if (p[n] == '.')
			dot = 1;
		if (++n >= cap)
			return (0);
	}
	if (n == 0)
		return (0);
	if (version && (!dot || p[0] < '0' || p[0] > '9'))
		return (0);
	memcpy(out, p, n);
	out[n] = '\0';
	return (n);
}

/* Find the version after the first marker occurrence that has one. */
static int
image_esphome_version(const uint8_t *buf, size_t len, const char *marker,
    char *out, size_t cap)
{
	const uint8_t	*p = buf, *hit;
	size_t		 mlen = strlen(marker);

	while ((hit = memmem(p, len - (size_t)(p - buf), marker, mlen)) !=
	    NULL) {
		p = hit + mlen;
		if (image_token(p, len - (size_t)(p - buf), out, cap, 1) != 0)
			return (0);
	}
	return (-ENOENT);
}

/*
 * Find what an ESPHome build says about itself: "ESPHome version X
 * compiled on", else "(esphome vX)", and the project line "Project NAME
 * version V" when the YAML has one.  Bounded and printable-only; returns
 * -ENOENT when buf holds no ESPHome version.
 */
int
image_find_esphome(const uint8_t *buf, size_t len, struct image_esphome *e)
{
	static const char	 proj[] = "Project ", ver[] = " version ";
	const uint8_t		*p = buf, *hit, *q;
	size_t			 n, left;

	memset(e, 0, sizeof *e);
	if (image_esphome_version(buf, len, "ESPHome version ", e->version,
	    sizeof e->version) != 0 &&
	    image_esphome_version(buf, len, "(esphome v", e->version,
	    sizeof e->version) != 0)
		return (-ENOENT);

	while ((hit = memmem(p, len - (size_t)(p - buf), proj,
	    sizeof proj - 1)) != NULL) {
		p = hit + sizeof proj - 1;
		q = p;
		left = len - (size_t)(q - buf);
		n = image_token(q, left, e->name, sizeof e->name, 0);
		if (n == 0)
			continue;
		q += n;
		left -= n;
		if (left < sizeof ver - 1 || memcmp(q, ver, sizeof ver - 1))
			continue;
		q += sizeof ver - 1;
		left -= sizeof ver - 1;
		if (image_token(q, left, e->project_version,
		    sizeof e->project_version, 0) != 0)
			return (0);
	}
	e->name[0] = '\0';
	e->project_version[0] = '\0';
	return (0);
}

/*
 * Read the otadata partition: two 4 KiB sectors, each starting with an
 * entry {ota_seq, seq_label[20], ota_state, crc}; an entry counts when its
 * CRC-32 of ota_seq holds and its state is not INVALID (3) or ABORTED (4).
 * Returns 0 and the highest valid sequence number (the bootloader starts
 * ota_[(seq - 1) % number of OTA partitions]), or -ENOENT if none is valid.
 */
int
image_parse_otadata(const uint8_t *buf, size_t len, uint32_t *seq)
{
	const uint8_t	*e;
	uint32_t	 s, state, crc;
	size_t		 i;
	int		 found = 0;

	*seq = 0;
	for (i = 0; i < 2; i++) {
		if (len < i * IMAGE_SECTOR + IMAGE_OTADATA_ENTRY_LEN)
			break;
		e = buf + i * IMAGE_SECTOR;
		s = le32_get(e);
		state = le32_get(e + 24);
		crc = le32_get(e + 28);
		if (s == 0 || s == UINT32_MAX || state == 3 || state == 4)
			continue;
		/* ESP-IDF's crc32_le(UINT32_MAX, ...) is zlib's crc32. */
		if ((uint32_t)crc32(UINT32_MAX, e, 4) != crc)
			continue;
		if (!found || s > *seq)
			*seq = s;
		found = 1;
	}
	return (found ? 0 : -ENOENT);
}

/* ========================= Image sets ========================= */

/* Free a set and everything in it; NULL is fine. */
void
image_free(struct image_set *set)
{
	size_t	i;

	if (set == NULL)
		return;
	for (i = 0; i < set->nregions; i++) {
		free(set->regions[i].path);
		free(set->regions[i].name);
		free(set->regions[i].data);
		free(set->regions[i].zdata);
	}
	free(set->regions);
	free(set);
}

/* A printable copy of a path or other untrusted text. */
static char *
image_clean(const char *s)
{
	size_t	 len = strlen(s), cap = len * 4 + 1;
	char	*out = xmalloc(cap);

	util_sanitize(out, cap, s, len);
	return (out);
}

/* File bytes of the set at a flash address: pointer, count to file end. */
const uint8_t *
image_at(const struct image_set *set, uint32_t addr, size_t *avail,
    const struct image_region **rp)
{
	const struct image_region	*r;
	size_t				 i;

	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		if (addr >= r->offset && addr - r->offset < r->file_len) {
			*avail = r->file_len - (addr - r->offset);
			if (rp != NULL)
				*rp = r;
			return (r->data + (addr - r->offset));
		}
	}
	*avail = 0;
	if (rp != NULL)
		*rp = NULL;
	return (NULL);
}

/* Add addr to a sorted list of unique addresses. */
static size_t
image_add_addr(uint32_t *list, size_t n, size_t max, uint32_t addr)
{
	size_t	i;

	for (i = 0; i < n && list[i] < addr; i++)
		/* nothing */;
	if ((i < n && list[i] == addr) || n == max)
		return (n);
	memmove(list + i + 1, list + i, (n - i) * sizeof *list);
	list[i] = addr;
	return (n + 1);
}

/*
 * Flash addresses where the set puts an app image: region starts on 64 KiB
 * that hold an ESP image (other than the bootloader), and the app
 * partitions of a partition table at 0x8000 that the set writes an image to.
 */
size_t
image_app_addrs(const struct image_set *set, uint32_t boot_offset,
    uint32_t *list, size_t max)
{
	const struct image_region	*r;
	const uint8_t			*p;
	struct part_table		*pt;
	size_t				 i, n = 0, avail;

	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		if (r->offset != boot_offset &&
		    r->offset % IMAGE_APP_ALIGN == 0 &&
		    r->data[0] == IMAGE_MAGIC)
			n = image_add_addr(list, n, max, r->offset);
	}
	p = image_at(set, IMAGE_PART_OFFSET, &avail, NULL);
	if (p == NULL)
		return (n);
	pt = xmalloc(sizeof *pt);
	image_parse_partitions(p, avail, pt);
	for (i = 0; i < pt->n; i++) {
		if (!image_part_is_app(&pt->e[i]) ||
		    pt->e[i].offset == boot_offset)
			continue;
		p = image_at(set, pt->e[i].offset, &avail, NULL);
		if (p != NULL && p[0] == IMAGE_MAGIC)
			n = image_add_addr(list, n, max, pt->e[i].offset);
	}
	free(pt);
	return (n);
}

/* Refuse an image for the wrong chip or with broken integrity. */
static int
image_check_esp(const struct image_region *r, uint32_t addr,
    const char *what, const struct image_header *h,
    const struct chip_info *chip, char **cause)
{
	const struct chip_info	*ic;
	char			 subj[64];

	if (strcmp(what, "bootloader") == 0 || addr == r->offset)
		snprintf(subj, sizeof subj, "this is");
	else
		snprintf(subj, sizeof subj, "the %s at 0x%x is", what, addr);

	if (chip->image_chip_id >= 0 && h->chip_id != chip->image_chip_id) {
		ic = chip_by_image_id(h->chip_id);
		if (ic != NULL)
			*cause = xasprintf("%s at 0x%x: %s an %s image (chip "
			    "id %u), the unit is an %s; use the %s build or "
			    "--force", r->name, r->offset, subj, ic->name,
			    h->chip_id, chip->name, chip->name);
		else
			*cause = xasprintf("%s at 0x%x: %s an image for chip "
			    "id %u, which espfleet does not know, the unit is "
			    "an %s; use the %s build or --force", r->name,
			    r->offset, subj, h->chip_id, chip->name,
			    chip->name);
		return (-ENOEXEC);
	}
	if (!h->checksum_ok) {
		*cause = xasprintf("%s at 0x%x: the %s at 0x%x fails its "
		    "checksum (stored 0x%02x, computed 0x%02x): the file is "
		    "damaged; get a fresh copy or use --force", r->name,
		    r->offset, what, addr, h->checksum, h->checksum_calc);
		return (-EBADMSG);
	}
	if (h->hash_ok == 0) {
		*cause = xasprintf("%s at 0x%x: the %s at 0x%x fails its "
		    "appended SHA-256 digest: the file is damaged; get a fresh "
		    "copy or use --force", r->name, r->offset, what, addr);
		return (-EBADMSG);
	}
	return (0);
}

/* Check what the set writes at the chip's bootloader offset. */
static int
image_check_boot(const struct image_set *set, const struct chip_info *chip,
    char **cause)
{
	const struct image_region	*r;
	const uint8_t			*p;
	struct image_header		*h;
	struct image_app_desc		 d;
	uint32_t			 bo = chip->bootloader_offset;
	size_t				 avail;
	int				 error;

	p = image_at(set, bo, &avail, &r);
	if (p == NULL)
		return (0);
	if (r->offset < bo && r->data[0] == IMAGE_MAGIC &&
	    image_parse_app_desc(r->data, r->file_len, &d) == 0) {
		*cause = xasprintf("%s at 0x%x: this is an application image, "
		    "not a factory image with a bootloader; it belongs at "
		    "0x%x (give \"0x%x %s\") or use --force", r->name,
		    r->offset, IMAGE_APP_ALIGN, IMAGE_APP_ALIGN, r->name);
		return (-ENOEXEC);
	}
	if (r->offset < bo && r->data[0] == IMAGE_MAGIC &&
	    p[0] != IMAGE_MAGIC) {
		*cause = xasprintf("%s at 0x%x: this is an ESP image (a "
		    "bootloader?) but the %s reads its bootloader at 0x%x; "
		    "give \"0x%x %s\" or use --force", r->name, r->offset,
		    chip->name, bo, bo, r->name);
		return (-ENOEXEC);
	}
	if (p[0] != IMAGE_MAGIC) {
		if (r->offset == bo)
			*cause = xasprintf("%s at 0x%x: not a bootloader "
			    "(first byte 0x%02x, an ESP image starts with "
			    "0xE9); the "
			    "%s reads its bootloader here; use --force to "
			    "write it anyway", r->name, r->offset, p[0],
			    chip->name);
		else
			*cause = xasprintf("%s at 0x%x: no bootloader at 0x%x "
			    "(file offset 0x%x holds 0x%02x, not the ESP image "
			    "magic 0xE9): this is not a factory image for the "
			    "%s; use --force to write it anyway", r->name,
			    r->offset, bo, bo - r->offset, p[0], chip->name);
		return (-ENOEXEC);
	}
	h = xmalloc(sizeof *h);
	error = image_parse_header(p, avail, h);
	if (error != 0) {
		*cause = xasprintf("%s at 0x%x: the bootloader at 0x%x is "
		    "damaged: %s; get a fresh copy or use --force", r->name,
		    r->offset, bo, h->why);
		error = -EBADMSG;
	} else if (image_parse_app_desc(p, avail, &d) == 0) {
		*cause = xasprintf("%s at 0x%x: the image at 0x%x is an "
		    "application, not a bootloader; apps belong at 0x%x; use "
		    "--force to write it anyway", r->name, r->offset, bo,
		    IMAGE_APP_ALIGN);
		error = -ENOEXEC;
	} else
		error = image_check_esp(r, bo, "bootloader", h, chip, cause);
	free(h);
	return (error);
}

/* Check a partition table the set writes at 0x8000, if it has one. */
static int
image_check_parts(const struct image_set *set, char **cause)
{
	const struct image_region	*r;
	const uint8_t			*p;
	struct part_table		*pt;
	size_t				 avail;
	int				 error = 0;

	p = image_at(set, IMAGE_PART_OFFSET, &avail, &r);
	if (p == NULL || avail < 2 || le16_get(p) != IMAGE_PART_MAGIC)
		return (0);
	pt = xmalloc(sizeof *pt);
	if (image_parse_partitions(p, avail, pt) != 0) {
		*cause = xasprintf("%s at 0x%x: the partition table at 0x%x is "
		    "damaged (%s): the unit would not boot; get a fresh copy "
		    "or use --force", r->name, r->offset, IMAGE_PART_OFFSET,
		    pt->why);
		error = -EBADMSG;
	}
	free(pt);
	return (error);
}

/* Check one app image the set writes at addr. */
static int
image_check_app(const struct image_set *set, uint32_t addr,
    const struct chip_info *chip, char **cause)
{
	const struct image_region	*r;
	const uint8_t			*p;
	struct image_header		*h;
	size_t				 avail;
	int				 error;

	p = image_at(set, addr, &avail, &r);
	if (p == NULL)
		return (0);
	h = xmalloc(sizeof *h);
	error = image_parse_header(p, avail, h);
	if (error != 0) {
		*cause = xasprintf("%s at 0x%x: the app at 0x%x is damaged: "
		    "%s; get a fresh copy or use --force", r->name, r->offset,
		    addr, h->why);
		error = -EBADMSG;
	} else
		error = image_check_esp(r, addr, "app", h, chip, cause);
	free(h);
	return (error);
}

/*
 * Refuse a set that would not boot on this chip: no bootloader (or one for
 * another chip, or a damaged one) where the ROM reads it, a damaged
 * partition table, an app for another chip or a damaged app.  With force
 * every one of these is accepted.  Returns 0 or a negative errno + cause.
 */
int
image_check_chip(const struct image_set *set, const struct chip_info *chip,
    int force, char **cause)
{
	uint32_t	 apps[IMAGE_PART_MAX + 16];
	size_t		 i, n;
	int		 error;

	if (force)
		return (0);
	if ((error = image_check_boot(set, chip, cause)) != 0)
		return (error);
	if ((error = image_check_parts(set, cause)) != 0)
		return (error);
	n = image_app_addrs(set, chip->bootloader_offset, apps, nitems(apps));
	for (i = 0; i < n; i++) {
		if ((error = image_check_app(set, apps[i], chip, cause)) != 0)
			return (error);
	}
	return (0);
}

/* Refuse regions that do not fit a flash of flash_size bytes. */
int
image_check_flash(const struct image_set *set, uint32_t flash_size,
    char **cause)
{
	const struct image_region	*r;
	char				 sz[32];
	size_t				 i;

	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		if ((uint64_t)r->offset + r->len <= flash_size)
			continue;
		image_size_name(flash_size, sz, sizeof sz);
		*cause = xasprintf("%s at 0x%x: ends at 0x%llx, past the end "
		    "of the %s flash (0x%x bytes)", r->name, r->offset,
		    (unsigned long long)r->offset + r->len, sz, flash_size);
		return (-EFBIG);
	}
	return (0);
}

/* Read one regular, non-empty file of at most limit bytes into r. */
static int
image_read_file(struct image_region *r, uint32_t limit, char **cause)
{
	struct stat	 st;
	size_t		 want, got = 0;
	ssize_t		 n;
	char		 sz[32];
	int		 fd, error;

	/* O_NONBLOCK so a FIFO cannot hang us before fstat says what it is. */
	fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		error = errno;
		*cause = xasprintf("%s at 0x%x: cannot open it: %s", r->name,
		    r->offset, strerror(error));
		return (-error);
	}
	if (fstat(fd, &st) == -1) {
		error = -errno;
		*cause = xasprintf("%s at 0x%x: cannot stat it: %s", r->name,
		    r->offset, strerror(-error));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		*cause = xasprintf("%s at 0x%x: this is a directory, not a "
		    "firmware file", r->name, r->offset);
		error = -EISDIR;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*cause = xasprintf("%s at 0x%x: not a regular file; give a "
		    "firmware .bin file", r->name, r->offset);
		error = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > limit) {
		image_size_name(limit, sz, sizeof sz);
		*cause = xasprintf("%s at 0x%x: the file is %lld bytes, more "
		    "than the whole %s flash", r->name, r->offset,
		    (long long)st.st_size, sz);
		error = -EFBIG;
		goto out;
	}
	want = (size_t)st.st_size;
	r->data = xmalloc(want + 3);	/* room to pad to 4 */
	while (got < want) {
		n = read(fd, r->data + got, want - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error = -errno;
			*cause = xasprintf("%s at 0x%x: read error: %s",
			    r->name, r->offset, strerror(-error));
			goto out;
		}
		if (n == 0)
			break;		/* it shrank: take what is there */
		got += (size_t)n;
	}
	if (got == 0) {
		*cause = xasprintf("%s at 0x%x: the file is empty", r->name,
		    r->offset);
		error = -EINVAL;
		goto out;
	}
	r->file_len = got;
	error = 0;
out:
	close(fd);
	return (error);
}

/* Order regions by offset, for the overlap check and a stable identity. */
static int
image_cmp_region(const void *a, const void *b)
{
	const struct image_region	*ra = a, *rb = b;

	if (ra->offset != rb->offset)
		return (ra->offset < rb->offset ? -1 : 1);
	return (0);
}

/* Pad, digest and deflate one region, once, for every worker. */
static void
image_prepare(struct image_region *r)
{
	uLongf	zlen;
	int	zerr;

	r->len = (r->file_len + 3) & ~(size_t)3;
	memset(r->data + r->file_len, 0xff, r->len - r->file_len);
	digest_md5_hex(r->data, r->len, r->md5hex);
	digest_sha256_hex(r->data, r->file_len, r->sha256hex);

	zlen = compressBound((uLong)r->len);
	r->zdata = xmalloc(zlen);
	zerr = compress2(r->zdata, &zlen, r->data, (uLong)r->len, 9);
	if (zerr != Z_OK)
		fatalx("compress2: %s", zError(zerr));
	r->zdata = xrealloc(r->zdata, zlen);
	r->zlen = zlen;
}

/*
 * The job's identity: SHA-256 over, for each region in offset order, its
 * offset and file length (le32 each) and the file's SHA-256.
 */
static void
image_identity(struct image_set *set)
{
	uint8_t	*buf, *p;
	size_t	 i;

	buf = xmalloc(set->nregions * 40);
	for (i = 0, p = buf; i < set->nregions; i++, p += 40) {
		le32_put(p, set->regions[i].offset);
		le32_put(p + 4, (uint32_t)set->regions[i].file_len);
		digest_sha256(set->regions[i].data,
		    set->regions[i].file_len, p + 8);
	}
	digest_sha256_hex(buf, set->nregions * 40, set->sha256hex);
	free(buf);
}

/* Sort, check and prepare a set whose regions hold their file bytes. */
static int
image_finish(struct image_set *set, const struct image_load_opts *opts,
    char **cause)
{
	struct image_region	*a, *b;
	uint32_t		 flash;
	size_t			 i;
	int			 error;

	flash = opts->flash_size != 0 ? opts->flash_size : IMAGE_DEFAULT_FLASH;
	qsort(set->regions, set->nregions, sizeof *set->regions,
	    image_cmp_region);
	for (i = 0; i < set->nregions; i++)
		set->regions[i].len = (set->regions[i].file_len + 3) &
		    ~(size_t)3;
	for (i = 0; i + 1 < set->nregions; i++) {
		a = &set->regions[i];
		b = &set->regions[i + 1];
		if ((uint64_t)a->offset + a->len > b->offset) {
			*cause = xasprintf("%s at 0x%x (up to 0x%llx) overlaps "
			    "%s at 0x%x; regions must not overlap", a->name,
			    a->offset, (unsigned long long)a->offset + a->len,
			    b->name, b->offset);
			return (-EINVAL);
		}
	}
	if ((error = image_check_flash(set, flash, cause)) != 0)
		return (error);
	for (i = 0; i < set->nregions; i++) {
		image_prepare(&set->regions[i]);
		set->total_len += set->regions[i].len;
		set->total_zlen += set->regions[i].zlen;
	}
	if (opts->chip != NULL && (error = image_check_chip(set, opts->chip,
	    opts->force, cause)) != 0)
		return (error);
	image_identity(set);
	return (0);
}

/*
 * Load a job from the command line: one FILE (written at 0x0) or OFFSET
 * FILE pairs.  Every refusal names the file, the offset and the reason.
 * Returns 0 and an immutable set, or a negative errno and *cause: -ENOENT
 * and the like from the OS, -EISDIR, -EINVAL (arguments, empty file,
 * overlap), -EFBIG (does not fit the flash), -ENOEXEC (wrong chip or kind
 * of image), -EBADMSG (damaged image).
 */
int
image_load(struct image_set **out, int argc, char *const *argv,
    const struct image_load_opts *opts, char **cause)
{
	struct image_set	*set;
	struct image_region	*r;
	const char		*why, *off;
	char			*name;
	uint32_t		 limit;
	size_t			 i, n;
	int			 error;

	*out = NULL;
	if (argc < 1) {
		*cause = xasprintf("no firmware given: name a file, or OFFSET "
		    "FILE pairs (e.g. 0x0 factory.bin)");
		return (-EINVAL);
	}
	if (argc > 1 && argc % 2 != 0) {
		name = image_clean(argv[argc - 1]);
		*cause = xasprintf("firmware is one FILE or OFFSET FILE pairs; "
		    "\"%s\" has no partner", name);
		free(name);
		return (-EINVAL);
	}
	limit = opts->flash_size != 0 ? opts->flash_size : IMAGE_DEFAULT_FLASH;
	n = argc == 1 ? 1 : (size_t)argc / 2;
	set = xcalloc(1, sizeof *set);
	set->regions = xcalloc(n, sizeof *set->regions);
	for (i = 0; i < n; i++) {
		r = &set->regions[set->nregions++];
		off = argc == 1 ? "0x0" : argv[2 * i];
		r->path = xstrdup(argc == 1 ? argv[0] : argv[2 * i + 1]);
		r->name = image_clean(r->path);
		if (image_parse_offset(off, &r->offset, &why) != 0) {
			name = image_clean(off);
			*cause = xasprintf("%s at %s: %s", r->name, name, why);
			free(name);
			error = -EINVAL;
			goto fail;
		}
		if ((error = image_read_file(r, limit, cause)) != 0)
			goto fail;
	}
	if ((error = image_finish(set, opts, cause)) != 0)
		goto fail;
	*out = set;
	return (0);
fail:
	image_free(set);
	return (error);
}

/* Load a job of one region from memory (the demo image, fuzzers, tests). */
int
image_load_buffer(struct image_set **out, const char *name, uint32_t offset,
    const uint8_t *buf, size_t len, const struct image_load_opts *opts,
    char **cause)
{
	struct image_set	*set;
	struct image_region	*r;
	int			 error;

	*out = NULL;
	set = xcalloc(1, sizeof *set);
	set->regions = xcalloc(1, sizeof *set->regions);
	set->nregions = 1;
	r = &set->regions[0];
	r->offset = offset;
	r->path = xstrdup(name);
	r->name = image_clean(name);
	if (offset % IMAGE_SECTOR != 0) {
		*cause = xasprintf("%s at 0x%x: the offset must be a multiple "
		    "of 0x1000", r->name, offset);
		error = -EINVAL;
		goto fail;
	}
	if (len == 0) {
		*cause = xasprintf("%s at 0x%x: the image is empty", r->name,
		    offset);
		error = -EINVAL;
		goto fail;
	}
	if (len > IMAGE_MAX_FLASH) {
		*cause = xasprintf("%s at 0x%x: %zu bytes is more than any "
		    "flash holds", r->name, offset, len);
		error = -EFBIG;
		goto fail;
	}
	r->data = xmalloc(len + 3);
	memcpy(r->data, buf, len);
	r->file_len = len;
	if ((error = image_finish(set, opts, cause)) != 0)
		goto fail;
	*out = set;
	return (0);
fail:
	image_free(set);
	return (error);
}
