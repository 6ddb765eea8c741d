/*
 * "espfleet inspect": say what a firmware job would write, in words a
 * technician understands: each file, what is in it (bootloader, partition
 * table, app), which partitions of the unit it overwrites, and whether
 * espfleet would accept it.  Text on stdout, or JSON with --json.
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chip.h"
#include "demo.h"
#include "digest.h"
#include "image.h"
#include "util.h"

#define INSPECT_MAX_APPS	(IMAGE_PART_MAX + 16)

struct inspect_app {
	uint32_t			 addr;
	const struct image_region	*r;
	int				 rc;	/* image_parse_header */
	struct image_header		 h;
	int				 has_desc;
	struct image_app_desc		 d;
	int				 has_esphome;
	struct image_esphome		 e;
};

/* What a partition of the unit goes through when the job is written. */
enum inspect_touch {
	INSPECT_UNTOUCHED = 0,
	INSPECT_ERASED,		/* only 0xFF written over it */
	INSPECT_WRITTEN
};

struct inspect {
	const struct image_set		*set;
	const struct chip_info		*chip;

	const struct image_region	*boot_r;	/* NULL: none */
	uint32_t			 boot_addr;
	int				 boot_rc;
	struct image_header		 boot;

	const struct image_region	*parts_r;	/* NULL: no table */
	int				 parts_rc;
	struct part_table		 pt;
	enum inspect_touch		 touch[IMAGE_PART_MAX];
	int				 partial[IMAGE_PART_MAX];

	struct inspect_app		 apps[INSPECT_MAX_APPS];
	size_t				 napps;

	char				*note;
	uint32_t			 flash_size;	/* for the verdict */
	int				 verdict;	/* 0 or -errno */
	char				*cause;
};

/* Print how to call the command. */
static void
inspect_usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet inspect [--json] [--chip CHIP] FILE\n"
	    "       espfleet inspect [--json] [--chip CHIP] OFFSET FILE "
	    "[OFFSET FILE ...]\n"
	    "       espfleet inspect [--json] [--chip CHIP] --demo\n");
}

/* Sanitize untrusted text (file names, strings from images) for output. */
static const char *
inspect_clean(const char *s, char *buf, size_t cap)
{
	util_sanitize(buf, cap, s, strlen(s));
	return (buf);
}

/* Whether len bytes at p are all 0xFF (erased flash). */
static int
inspect_blank(const uint8_t *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if (p[i] != 0xff)
			return (0);
	}
	return (1);
}

/* Work out what each partition of the table goes through. */
static void
inspect_touch(struct inspect *in)
{
	const struct image_region	*r;
	const struct part_entry		*pe;
	uint64_t			 ps, pe_end, rs, re, lo, hi, covered;
	size_t				 i, j;
	int				 written;

	for (i = 0; i < in->pt.n; i++) {
		pe = &in->pt.e[i];
		ps = pe->offset;
		pe_end = ps + pe->size;
		covered = 0;
		written = 0;
		for (j = 0; j < in->set->nregions; j++) {
			r = &in->set->regions[j];
			rs = r->offset;
			/* The ROM erases whole sectors to the region's end. */
			re = (rs + r->len + IMAGE_SECTOR - 1) &
			    ~(uint64_t)(IMAGE_SECTOR - 1);
			lo = MAXIMUM(ps, rs);
			hi = MINIMUM(pe_end, re);
			if (lo >= hi)
				continue;
			covered += hi - lo;
			hi = MINIMUM(hi, rs + r->len);
			if (lo < hi && !inspect_blank(r->data + (lo - rs),
			    (size_t)(hi - lo)))
				written = 1;
		}
		if (covered == 0)
			continue;
		in->touch[i] = written ? INSPECT_WRITTEN : INSPECT_ERASED;
		in->partial[i] = covered < pe->size;
	}
}

/* Append ", x" or " and x" style to a growing list of names. */
static char *
inspect_join(char *list, const char *item, int last)
{
	char	*s;

	if (list == NULL)
		return (xstrdup(item));
	s = xasprintf("%s%s%s", list, last ? " and " : ", ", item);
	free(list);
	return (s);
}

/* Add a clause to a sentence, "; "-separated. */
static char *
inspect_clause(char *what, const char *clause)
{
	char	*s;

	if (what == NULL)
		return (xstrdup(clause));
	s = xasprintf("%s; %s", what, clause);
	free(what);
	return (s);
}

/*
 * The app partition the bootloader starts after the job: the one otadata
 * names when the job writes a valid otadata, else factory, else ota_0.
 */
static const struct part_entry *
inspect_boot_part(const struct inspect *in, const struct part_entry *otadata)
{
	const struct part_entry	*pe, *factory = NULL, *ota0 = NULL;
	const uint8_t		*p;
	uint32_t		 seq, nota = 0;
	size_t			 i, avail;

	for (i = 0; i < in->pt.n; i++) {
		pe = &in->pt.e[i];
		if (pe->type != IMAGE_PART_APP)
			continue;
		if (pe->subtype == IMAGE_PART_APP_FACTORY && factory == NULL)
			factory = pe;
		if (pe->subtype >= IMAGE_PART_APP_OTA_MIN &&
		    pe->subtype <= IMAGE_PART_APP_OTA_MAX) {
			nota++;
			if (pe->subtype == IMAGE_PART_APP_OTA_MIN &&
			    ota0 == NULL)
				ota0 = pe;
		}
	}
	p = image_at(in->set, otadata->offset, &avail, NULL);
	if (p != NULL && nota != 0 &&
	    image_parse_otadata(p, MINIMUM(avail, (size_t)otadata->size),
	    &seq) == 0) {
		for (i = 0; i < in->pt.n; i++) {
			pe = &in->pt.e[i];
			if (pe->type == IMAGE_PART_APP && pe->subtype ==
			    IMAGE_PART_APP_OTA_MIN + (seq - 1) % nota)
				return (pe);
		}
	}
	return (factory != NULL ? factory : ota0);
}

/* The sentence telling what writing the job does to the unit's data. */
static void
inspect_note(struct inspect *in)
{
	const struct part_entry	*pe, *otadata = NULL, *boot;
	char			*names = NULL, *what = NULL, *s, buf[80];
	size_t			 i, n = 0, k = 0;
	int			 nvs = 0, files = 0, other = 0;

	for (i = 0; i < in->pt.n; i++) {
		pe = &in->pt.e[i];
		if (pe->type == IMAGE_PART_DATA && in->touch[i] != 0)
			n++;
	}
	for (i = 0; i < in->pt.n; i++) {
		pe = &in->pt.e[i];
		if (pe->type != IMAGE_PART_DATA || in->touch[i] == 0)
			continue;
		names = inspect_join(names, inspect_clean(pe->label, buf,
		    sizeof buf), ++k == n);
		if (pe->subtype == IMAGE_PART_DATA_NVS)
			nvs = 1;
		else if (pe->subtype == IMAGE_PART_DATA_OTA)
			otadata = pe;
		else if (pe->subtype >= 0x81 && pe->subtype <= 0x83)
			files = 1;
		else
			other = 1;
	}
	if (names == NULL) {
		if (in->parts_r == NULL &&
		    in->set->regions[0].offset >= IMAGE_APP_ALIGN)
			in->note = xstrdup("writes no bootloader or partition "
			    "table: the unit keeps its own, and its Wi-Fi and "
			    "settings");
		return;
	}
	if (nvs)
		what = inspect_clause(what, "Wi-Fi and settings will be "
		    "erased");
	if (files)
		what = inspect_clause(what, "stored files will be lost");
	if (other && !nvs && !files)
		what = inspect_clause(what, "their data will be replaced");
	if (otadata != NULL &&
	    (boot = inspect_boot_part(in, otadata)) != NULL) {
		s = xasprintf("the unit will start the app in %s",
		    inspect_clean(boot->label, buf, sizeof buf));
		what = inspect_clause(what, s);
		free(s);
	}
	if (what != NULL)
		in->note = xasprintf("overwrites %s: %s", names, what);
	else
		in->note = xasprintf("overwrites %s", names);
	free(names);
	free(what);
}

/* Gather every fact about the set that the output needs. */
static void
inspect_gather(struct inspect *in)
{
	struct inspect_app	*a;
	const uint8_t		*p;
	uint32_t		 addrs[INSPECT_MAX_APPS];
	size_t			 avail, i, n;

	in->boot_addr = in->chip->bootloader_offset;
	p = image_at(in->set, in->boot_addr, &avail, &in->boot_r);
	if (p != NULL && p[0] == IMAGE_MAGIC)
		in->boot_rc = image_parse_header(p, avail, &in->boot);
	else
		in->boot_r = NULL;

	p = image_at(in->set, IMAGE_PART_OFFSET, &avail, &in->parts_r);
	if (p != NULL && avail >= 2 && le16_get(p) == IMAGE_PART_MAGIC) {
		in->parts_rc = image_parse_partitions(p, avail, &in->pt);
		inspect_touch(in);
	} else
		in->parts_r = NULL;

	n = image_app_addrs(in->set, in->boot_addr, addrs, nitems(addrs));
	for (i = 0; i < n; i++) {
		a = &in->apps[in->napps++];
		a->addr = addrs[i];
		p = image_at(in->set, a->addr, &avail, &a->r);
		a->rc = image_parse_header(p, avail, &a->h);
		a->has_desc = image_parse_app_desc(p, avail, &a->d) == 0;
		if (a->rc == 0)
			avail = MINIMUM(avail, (size_t)a->h.image_len);
		a->has_esphome = image_find_esphome(p, avail, &a->e) == 0;
	}
	inspect_note(in);

	in->flash_size = IMAGE_DEFAULT_FLASH;
	if (in->boot_r != NULL && in->boot_rc == 0 && in->boot.flash_size != 0)
		in->flash_size = in->boot.flash_size;
	in->verdict = image_check_flash(in->set, in->flash_size, &in->cause);
	if (in->verdict == 0)
		in->verdict = image_check_chip(in->set, in->chip, 0,
		    &in->cause);
}

/* "ESP32-S2 (chip id 2)" for a chip id from an image header. */
static void
inspect_chip_name(uint16_t id, char *buf, size_t cap)
{
	const struct chip_info	*c = chip_by_image_id(id);

	if (c != NULL)
		snprintf(buf, cap, "%s (chip id %u)", c->name, id);
	else
		snprintf(buf, cap, "unknown (chip id %u)", id);
}

/* "valid", "WRONG (...)" or "none appended" for the integrity lines. */
static const char *
inspect_hash_word(int hash_ok)
{
	if (hash_ok < 0)
		return ("none appended");
	return (hash_ok ? "valid (appended)" : "WRONG: the image is damaged");
}

/* ========================= Text output ========================= */

/* One "  key:  value" line. */
static void
inspect_line(const char *key, const char *fmt, ...) printflike(2, 3);
static void
inspect_line(const char *key, const char *fmt, ...)
{
	va_list	ap;
	char	k[32];

	snprintf(k, sizeof k, "%s:", key);
	printf("  %-12s ", k);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Print the header fields, segments and integrity of one ESP image. */
static void
inspect_text_esp(const struct image_header *h, int rc, int flash)
{
	char		 buf[64];
	const char	*mode;

	inspect_chip_name(h->chip_id, buf, sizeof buf);
	inspect_line("chip", "%s", buf);
	inspect_line("revision", "%u.%u or later", h->min_rev_full / 100,
	    h->min_rev_full % 100);
	if (flash) {
		mode = image_flash_mode_name(h->flash_mode);
		if (mode != NULL)
			inspect_line("flash mode", "%s", mode);
		else
			inspect_line("flash mode", "unknown (0x%02x)",
			    h->flash_mode);
		if (h->flash_size != 0) {
			image_size_name(h->flash_size, buf, sizeof buf);
			inspect_line("flash size", "%s", buf);
		} else
			inspect_line("flash size", "unknown (0x%x)",
			    h->size_freq >> 4);
		if (h->flash_freq != 0)
			inspect_line("flash freq", "%u MHz", h->flash_freq);
		else
			inspect_line("flash freq", "unknown (0x%x)",
			    h->size_freq & 0xf);
	}
	inspect_line("entry", "0x%08x", h->entry);
	inspect_line("segments", "%u", h->segment_count);
	if (rc != 0) {
		inspect_line("damaged", "%s", h->why);
		return;
	}
	if (h->checksum_ok)
		inspect_line("checksum", "valid");
	else
		inspect_line("checksum", "WRONG (stored 0x%02x, computed "
		    "0x%02x): the image is damaged", h->checksum,
		    h->checksum_calc);
	inspect_line("sha256", "%s", inspect_hash_word(h->hash_ok));
}

/* List what sits where in one region. */
static void
inspect_text_contents(const struct inspect *in, const struct image_region *r)
{
	const struct inspect_app	*a;
	char				 buf[128];
	size_t				 i, span;
	int				 any = 0;

	printf("  contains:\n");
	if (r->offset == 0 && in->boot_addr > 0) {
		span = MINIMUM(r->len, (size_t)in->boot_addr);
		if (inspect_blank(r->data, span)) {
			printf("    0x%-8x 0xFF filler (the %s ROM reads the "
			    "bootloader at 0x%x)\n", 0, in->chip->name,
			    in->boot_addr);
			any = 1;
		}
	}
	if (in->boot_r == r) {
		printf("    0x%-8x bootloader\n", in->boot_addr);
		any = 1;
	}
	if (in->parts_r == r) {
		printf("    0x%-8x partition table\n", IMAGE_PART_OFFSET);
		any = 1;
	}
	for (i = 0; i < in->napps; i++) {
		a = &in->apps[i];
		if (a->r != r)
			continue;
		if (a->has_desc)
			printf("    0x%-8x app \"%s\"\n", a->addr,
			    inspect_clean(a->d.project_name, buf, sizeof buf));
		else
			printf("    0x%-8x ESP image\n", a->addr);
		any = 1;
	}
	if (!any)
		printf("    0x%-8x data (no bootloader, partition table or "
		    "app)\n", r->offset);
}

/* The whole report as text. */
static void
inspect_text(const struct inspect *in)
{
	const struct image_set		*set = in->set;
	const struct image_region	*r;
	const struct inspect_app	*a;
	const struct part_entry		*pe;
	char				 buf[128], lab[80], sub[16], tt[32];
	const char			*type;
	size_t				 i;

	printf("%zu file%s, %zu bytes to write (%zu deflated, %zu%%)\n",
	    set->nregions, set->nregions == 1 ? "" : "s", set->total_len,
	    set->total_zlen, set->total_zlen * 100 / set->total_len);
	printf("job sha256:    %s\n", set->sha256hex);
	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		printf("\nfile at 0x%x:\n", r->offset);
		inspect_line("file", "%s", r->name);
		inspect_line("size", "%zu bytes (%.1f KiB)", r->file_len,
		    (double)r->file_len / 1024.0);
		inspect_line("sha256", "%s", r->sha256hex);
		inspect_line("written", "0x%x to 0x%zx (%zu bytes, md5 %s)",
		    r->offset, r->offset + r->len - 1, r->len, r->md5hex);
		inspect_line("deflated", "%zu bytes (%zu%%)", r->zlen,
		    r->zlen * 100 / r->len);
		inspect_text_contents(in, r);
	}

	if (in->boot_r != NULL) {
		printf("\nbootloader at 0x%x:\n", in->boot_addr);
		inspect_text_esp(&in->boot, in->boot_rc, 1);
	}

	if (in->parts_r != NULL) {
		printf("\npartition table at 0x%x: %zu partitions, %s\n",
		    IMAGE_PART_OFFSET, in->pt.n, !in->pt.has_md5 ? "no MD5" :
		    in->pt.md5_ok ? "MD5 valid" : "MD5 WRONG");
		if (in->parts_rc != 0)
			inspect_line("damaged", "%s", in->pt.why);
		printf("  %-16s %-5s %-9s %-10s %-10s %s\n", "label", "type",
		    "subtype", "offset", "size", "this image");
		for (i = 0; i < in->pt.n; i++) {
			pe = &in->pt.e[i];
			type = image_part_type_name(pe->type);
			if (type == NULL) {
				snprintf(tt, sizeof tt, "0x%02x", pe->type);
				type = tt;
			}
			snprintf(buf, sizeof buf, "%s%s",
			    in->touch[i] == INSPECT_UNTOUCHED ? "-" :
			    in->touch[i] == INSPECT_ERASED ? "erased" :
			    "written", in->partial[i] ? " (part)" : "");
			printf("  %-16s %-5s %-9s 0x%-8x 0x%-8x %s\n",
			    inspect_clean(pe->label, lab, sizeof lab), type,
			    image_part_subtype_name(pe->type, pe->subtype,
			    sub, sizeof sub), pe->offset, pe->size, buf);
		}
	}

	for (i = 0; i < in->napps; i++) {
		a = &in->apps[i];
		printf("\n%s at 0x%x:\n", a->has_desc ? "app" : "ESP image",
		    a->addr);
		if (a->has_desc) {
			inspect_line("project", "%s", inspect_clean(
			    a->d.project_name, buf, sizeof buf));
			inspect_line("version", "%s", inspect_clean(
			    a->d.version, buf, sizeof buf));
			inspect_line("esp-idf", "%s", inspect_clean(
			    a->d.idf_ver, buf, sizeof buf));
			inspect_line("built", "%s %s", inspect_clean(
			    a->d.date, lab, sizeof lab), inspect_clean(
			    a->d.time, buf, sizeof buf));
		}
		if (a->has_esphome) {
			inspect_line("esphome", "%s", inspect_clean(
			    a->e.version, buf, sizeof buf));
			if (a->e.name[0] != '\0')
				inspect_line("esphome name", "%s%s%s",
				    inspect_clean(a->e.name, buf, sizeof buf),
				    a->e.project_version[0] != '\0' ?
				    " version " : "", inspect_clean(
				    a->e.project_version, lab, sizeof lab));
		}
		inspect_text_esp(&a->h, a->rc, 0);
	}

	printf("\n");
	if (in->note != NULL)
		printf("note: %s\n", in->note);
	image_size_name(in->flash_size, buf, sizeof buf);
	if (in->verdict == 0)
		printf("verdict: OK to write to an %s with %s flash\n",
		    in->chip->name, buf);
	else
		printf("verdict: refused: %s\n", in->cause);
}

/* ========================= JSON output ========================= */

/* A sanitized JSON string. */
static json_object *
inspect_jstr(const char *s)
{
	char	buf[256];

	return (json_object_new_string(inspect_clean(s, buf, sizeof buf)));
}

/* The header fields of one ESP image as JSON. */
static json_object *
inspect_json_esp(uint32_t addr, const struct image_header *h, int rc)
{
	json_object		*o = json_object_new_object();
	const struct chip_info	*c = chip_by_image_id(h->chip_id);
	const char		*mode = image_flash_mode_name(h->flash_mode);

	json_object_object_add(o, "offset", json_object_new_int64(addr));
	json_object_object_add(o, "chip_id", json_object_new_int(h->chip_id));
	json_object_object_add(o, "chip", c != NULL ?
	    json_object_new_string(c->name) : NULL);
	json_object_object_add(o, "min_revision",
	    json_object_new_int(h->min_rev_full));
	json_object_object_add(o, "flash_mode", mode != NULL ?
	    json_object_new_string(mode) : NULL);
	json_object_object_add(o, "flash_size",
	    json_object_new_int64(h->flash_size));
	json_object_object_add(o, "flash_freq_mhz",
	    json_object_new_int((int)h->flash_freq));
	json_object_object_add(o, "entry", json_object_new_int64(h->entry));
	json_object_object_add(o, "segments",
	    json_object_new_int(h->segment_count));
	json_object_object_add(o, "damaged", rc != 0 ?
	    json_object_new_string(h->why) : NULL);
	json_object_object_add(o, "checksum_valid", rc != 0 ? NULL :
	    json_object_new_boolean(h->checksum_ok));
	json_object_object_add(o, "sha256_valid", rc != 0 || h->hash_ok < 0 ?
	    NULL : json_object_new_boolean(h->hash_ok));
	return (o);
}

/* The whole report as one JSON object. */
static void
inspect_json(const struct inspect *in)
{
	const struct image_set		*set = in->set;
	const struct image_region	*r;
	const struct inspect_app	*a;
	const struct part_entry		*pe;
	json_object			*root, *arr, *o, *e;
	char				 sub[16], hex[65];
	size_t				 i;

	root = json_object_new_object();
	json_object_object_add(root, "sha256",
	    json_object_new_string(set->sha256hex));
	json_object_object_add(root, "bytes",
	    json_object_new_int64((int64_t)set->total_len));
	json_object_object_add(root, "deflated",
	    json_object_new_int64((int64_t)set->total_zlen));
	arr = json_object_new_array();
	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		o = json_object_new_object();
		json_object_object_add(o, "offset",
		    json_object_new_int64(r->offset));
		json_object_object_add(o, "file",
		    json_object_new_string(r->name));
		json_object_object_add(o, "size",
		    json_object_new_int64((int64_t)r->file_len));
		json_object_object_add(o, "written",
		    json_object_new_int64((int64_t)r->len));
		json_object_object_add(o, "deflated",
		    json_object_new_int64((int64_t)r->zlen));
		json_object_object_add(o, "sha256",
		    json_object_new_string(r->sha256hex));
		json_object_object_add(o, "md5",
		    json_object_new_string(r->md5hex));
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "files", arr);

	json_object_object_add(root, "bootloader", in->boot_r == NULL ? NULL :
	    inspect_json_esp(in->boot_addr, &in->boot, in->boot_rc));

	o = NULL;
	if (in->parts_r != NULL) {
		o = json_object_new_object();
		json_object_object_add(o, "offset",
		    json_object_new_int64(IMAGE_PART_OFFSET));
		json_object_object_add(o, "md5_valid", !in->pt.has_md5 ? NULL :
		    json_object_new_boolean(in->pt.md5_ok));
		json_object_object_add(o, "damaged", in->parts_rc == 0 ? NULL :
		    json_object_new_string(in->pt.why));
		arr = json_object_new_array();
		for (i = 0; i < in->pt.n; i++) {
			pe = &in->pt.e[i];
			e = json_object_new_object();
			json_object_object_add(e, "label",
			    inspect_jstr(pe->label));
			json_object_object_add(e, "type",
			    image_part_type_name(pe->type) != NULL ?
			    json_object_new_string(image_part_type_name(
			    pe->type)) : json_object_new_int(pe->type));
			json_object_object_add(e, "subtype",
			    json_object_new_string(image_part_subtype_name(
			    pe->type, pe->subtype, sub, sizeof sub)));
			json_object_object_add(e, "offset",
			    json_object_new_int64(pe->offset));
			json_object_object_add(e, "size",
			    json_object_new_int64(pe->size));
			json_object_object_add(e, "this_image",
			    in->touch[i] == INSPECT_UNTOUCHED ? NULL :
			    json_object_new_string(in->touch[i] ==
			    INSPECT_ERASED ? "erased" : "written"));
			json_object_object_add(e, "partly",
			    json_object_new_boolean(in->partial[i]));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "partitions", arr);
	}
	json_object_object_add(root, "partition_table", o);

	arr = json_object_new_array();
	for (i = 0; i < in->napps; i++) {
		a = &in->apps[i];
		o = inspect_json_esp(a->addr, &a->h, a->rc);
		if (a->has_desc) {
			json_object_object_add(o, "project",
			    inspect_jstr(a->d.project_name));
			json_object_object_add(o, "version",
			    inspect_jstr(a->d.version));
			json_object_object_add(o, "idf_version",
			    inspect_jstr(a->d.idf_ver));
			json_object_object_add(o, "date",
			    inspect_jstr(a->d.date));
			json_object_object_add(o, "time",
			    inspect_jstr(a->d.time));
			digest_hex(a->d.elf_sha256, sizeof a->d.elf_sha256,
			    hex);
			json_object_object_add(o, "elf_sha256",
			    json_object_new_string(hex));
		}
		if (a->has_esphome) {
			e = json_object_new_object();
			json_object_object_add(e, "version",
			    inspect_jstr(a->e.version));
			json_object_object_add(e, "name", a->e.name[0] == '\0' ?
			    NULL : inspect_jstr(a->e.name));
			json_object_object_add(e, "project_version",
			    a->e.project_version[0] == '\0' ? NULL :
			    inspect_jstr(a->e.project_version));
			json_object_object_add(o, "esphome", e);
		}
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "apps", arr);

	json_object_object_add(root, "note", in->note == NULL ? NULL :
	    json_object_new_string(in->note));
	o = json_object_new_object();
	json_object_object_add(o, "chip",
	    json_object_new_string(in->chip->name));
	json_object_object_add(o, "flash_size",
	    json_object_new_int64(in->flash_size));
	json_object_object_add(o, "ok",
	    json_object_new_boolean(in->verdict == 0));
	json_object_object_add(o, "reason", in->verdict == 0 ? NULL :
	    json_object_new_string(in->cause));
	json_object_object_add(root, "verdict", o);

	printf("%s\n", json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

/* ========================= Command ========================= */

/* espfleet inspect [--json] [--chip CHIP] (FILE | OFFSET FILE ... | --demo) */
int
inspect_main(int argc, char **argv)
{
	struct image_load_opts	 opts;
	struct image_set	*set = NULL;
	struct inspect		*in;
	char			**pos, *cause = NULL, buf[256];
	const char		*chipname = "esp32s2";
	int			 i, npos = 0, json = 0, demo = 0, dashdash = 0;
	int			 error, status;

	pos = xcalloc((size_t)argc + 1, sizeof *pos);
	for (i = 1; i < argc; i++) {
		if (dashdash || argv[i][0] != '-' || argv[i][1] == '\0')
			pos[npos++] = argv[i];
		else if (strcmp(argv[i], "--") == 0)
			dashdash = 1;
		else if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "--demo") == 0)
			demo = 1;
		else if (strncmp(argv[i], "--chip=", 7) == 0)
			chipname = argv[i] + 7;
		else if (strcmp(argv[i], "--chip") == 0 && i + 1 < argc)
			chipname = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			inspect_usage(stdout);
			free(pos);
			return (0);
		} else {
			fprintf(stderr, "espfleet inspect: unknown option "
			    "\"%s\"\n", inspect_clean(argv[i], buf,
			    sizeof buf));
			inspect_usage(stderr);
			free(pos);
			return (2);
		}
	}
	if ((demo && npos != 0) || (!demo && npos == 0)) {
		fprintf(stderr, "espfleet inspect: %s\n", demo ?
		    "--demo takes no files" : "no firmware given");
		inspect_usage(stderr);
		free(pos);
		return (2);
	}

	in = xcalloc(1, sizeof *in);
	in->chip = chip_by_name(chipname);
	if (in->chip == NULL) {
		fprintf(stderr, "espfleet inspect: unknown chip \"%s\"; use "
		    "esp32, esp32s2, esp32s3 or esp32c3\n",
		    inspect_clean(chipname, buf, sizeof buf));
		status = 2;
		goto out;
	}

	/* Load leniently: the verdict below applies the real checks. */
	memset(&opts, 0, sizeof opts);
	opts.flash_size = IMAGE_MAX_FLASH;
	if (demo) {
		error = demo_load(&set, &cause);
	} else
		error = image_load(&set, npos, pos, &opts, &cause);
	if (error != 0) {
		fprintf(stderr, "espfleet inspect: %s\n", cause);
		status = 2;
		goto out;
	}
	in->set = set;
	inspect_gather(in);
	if (json)
		inspect_json(in);
	else
		inspect_text(in);
	status = 0;
	if (in->verdict != 0) {
		fprintf(stderr, "espfleet inspect: refused: %s\n", in->cause);
		status = 2;
	}
out:
	fflush(stdout);
	free(in->note);
	free(in->cause);
	free(in);
	image_free(set);
	free(cause);
	free(pos);
	return (status);
}
