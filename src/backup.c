/*
 * Settings backup, restore and wipe (backup.h).  The partitions come from
 * the image's partition table or the unit's own (read at 0x8000); the
 * bytes from the ROM's READ_FLASH_SLOW or the stub's READ_FLASH, checked
 * against the chip's MD5 (readflash.h); the writes through the same
 * loader_write/loader_verify path as "espfleet flash", from image sets
 * built with image_load_buffer (content checks off: settings are no ESP
 * image).  Backup files are never opened through a symbolic link.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "backup.h"
#include "chip.h"
#include "digest.h"
#include "flog.h"
#include "image.h"
#include "job.h"
#include "loader.h"
#include "readflash.h"
#include "transport.h"
#include "util.h"

#define BACKUP_EXIT_USAGE	2
#define BACKUP_FILE_MAX		(1u << 20)	/* a settings partition */

/* A unit we talk to directly (backup, restore, wipe commands). */
struct backup_session {
	struct xport	 xp;
	struct loader	 l;
	int		 open;
};

/* What one backup holds in memory. */
struct backup_set {
	struct backup_part	 parts[BACKUP_MAX_PARTS];
	uint8_t			*data[BACKUP_MAX_PARTS];
	size_t			 n;
};

static const struct option backup_options[] = {
	{ "after", required_argument, NULL, 'a' },
	{ "dir", required_argument, NULL, 'd' },
	{ "from", required_argument, NULL, 'F' },
	{ "help", no_argument, NULL, 'h' },
	{ "mac", required_argument, NULL, 'm' },
	{ "no-backup", no_argument, NULL, 'n' },
	{ "port", required_argument, NULL, 'p' },
	{ NULL, 0, NULL, 0 }
};

/* The nvs and otadata partitions of a raw partition table. */
int
backup_find_parts(const uint8_t *tbl, size_t len, struct backup_part *parts,
    size_t max, char **cause)
{
	struct part_table	*pt;
	struct part_entry	*e;
	size_t			 i, n = 0;

	pt = xmalloc(sizeof(*pt));
	if (image_parse_partitions(tbl, len, pt) != 0 || pt->n == 0) {
		*cause = xasprintf("no valid partition table at 0x%x%s%s",
		    IMAGE_PART_OFFSET, pt->why[0] != '\0' ? ": " : "",
		    pt->why);
		free(pt);
		return (-EINVAL);
	}
	for (i = 0; i < pt->n && n < max; i++) {
		e = &pt->e[i];
		if (e->type != IMAGE_PART_DATA ||
		    (e->subtype != IMAGE_PART_DATA_NVS &&
		    e->subtype != IMAGE_PART_DATA_OTA) ||
		    e->size == 0 || e->size > BACKUP_FILE_MAX)
			continue;
		memset(&parts[n], 0, sizeof(parts[n]));
		util_sanitize(parts[n].label, sizeof(parts[n].label),
		    e->label, strlen(e->label));
		/* The label names files: keep it to a safe alphabet. */
		if (strspn(parts[n].label, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		    strlen(parts[n].label) || parts[n].label[0] == '\0')
			snprintf(parts[n].label, sizeof(parts[n].label),
			    "part%u", (unsigned)i);
		parts[n].subtype = e->subtype;
		parts[n].offset = e->offset;
		parts[n].size = e->size;
		n++;
	}
	free(pt);
	return ((int)n);
}

/* MAC as 12 lowercase hex digits (a directory name); -1 if not a MAC. */
static int
backup_mac_name(const char *s, char out[13])
{
	size_t	n = 0;

	for (; *s != '\0'; s++) {
		if (*s == ':' || *s == '-')
			continue;
		if (n == 12 || !((*s >= '0' && *s <= '9') ||
		    (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
			return (-1);
		out[n++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
	}
	out[n] = '\0';
	return (n == 12 ? 0 : -1);
}

/* Backups root: given, or <state dir>/backups. */
static int
backup_root(const char *root, char **out, char **cause)
{
	if (root != NULL) {
		*out = xstrdup(root);
		return (0);
	}
	return (flog_state_path(out, "backups", cause));
}

/* "20261127T163300.123Z": sorts by time, no colons in file names. */
static void
backup_stamp(char *buf, size_t cap)
{
	struct timespec	ts;
	struct tm	tm;
	char		s[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y%m%dT%H%M%S", &tm);
	snprintf(buf, cap, "%.15s.%03dZ", s,
	    (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Create dir/name 0600, never through a link nor over a file; write. */
static int
backup_write_file(const char *dir, const char *name, const void *data,
    size_t len, char **cause)
{
	const uint8_t	*p = data;
	char		*path;
	ssize_t		 n;
	int		 fd, error = 0;

	path = xasprintf("%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1) {
		error = -errno;
		*cause = xasprintf("cannot create backup file %s: %s", path,
		    strerror(errno));
		goto out;
	}
	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			error = -errno;
			*cause = xasprintf("cannot write backup file %s: %s",
			    path, strerror(errno));
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (error == 0 && fsync(fd) != 0) {
		error = -errno;
		*cause = xasprintf("cannot sync backup file %s: %s", path,
		    strerror(errno));
	}
	close(fd);
out:
	free(path);
	return (error);
}

/* Read a whole (small) file without following links; NULL on error. */
static uint8_t *
backup_read_file(const char *path, size_t *len, char **cause)
{
	struct stat	 st;
	uint8_t		*buf;
	ssize_t		 n;
	size_t		 off = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		*cause = xasprintf("cannot open %s: %s", path,
		    errno == ELOOP ? "it is a symbolic link" :
		    strerror(errno));
		return (NULL);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > BACKUP_FILE_MAX) {
		*cause = xasprintf("%s is not a backup file (not a regular "
		    "file, or too large)", path);
		close(fd);
		return (NULL);
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (off < (size_t)st.st_size) {
		n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			*cause = xasprintf("cannot read %s: %s", path,
			    n == 0 ? "file shrank" : strerror(errno));
			free(buf);
			close(fd);
			return (NULL);
		}
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	*len = off;
	return (buf);
}

/* Free what a backup set holds. */
static void
backup_set_free(struct backup_set *bs)
{
	size_t	i;

	for (i = 0; i < bs->n; i++)
		free(bs->data[i]);
	bs->n = 0;
}

/* Read every part of bs from the unit. */
static int
backup_read_parts(struct loader *l, struct backup_set *bs, char **cause)
{
	char	*why = NULL;
	size_t	 i;
	int	 error;

	for (i = 0; i < bs->n; i++) {
		bs->data[i] = xmalloc(bs->parts[i].size);
		if ((error = readflash_checked(l, bs->parts[i].offset,
		    bs->data[i], bs->parts[i].size, &why)) != 0) {
			*cause = xasprintf("backing up %s: %s",
			    bs->parts[i].label, why);
			free(why);
			return (error);
		}
	}
	return (0);
}

/*
 * Keep bs under root/<mac>/: one file per part and a JSON manifest, the
 * manifest last so that a backup without one was never finished.
 */
static int
backup_save(const char *root, const uint8_t mac[6], const char *chip,
    const char *image_sha256, const struct backup_set *bs, char *stamp,
    size_t stampcap, char **cause)
{
	struct json_object	*o, *a, *e;
	char			 macs[18], name[13], md5[33], off[16];
	char			*dir, *file;
	const char		*text;
	size_t			 i;
	int			 error;

	chip_mac_format(mac, macs, sizeof(macs));
	(void)backup_mac_name(macs, name);
	dir = xasprintf("%s/%s", root, name);
	if ((error = flog_mkdirs(dir, cause)) != 0)
		goto out;
	backup_stamp(stamp, stampcap);
	o = json_object_new_object();
	json_object_object_add(o, "mac", json_object_new_string(macs));
	json_object_object_add(o, "time", json_object_new_string(stamp));
	if (chip != NULL && chip[0] != '\0')
		json_object_object_add(o, "chip", json_object_new_string(chip));
	if (image_sha256 != NULL && image_sha256[0] != '\0')
		json_object_object_add(o, "image_sha256",
		    json_object_new_string(image_sha256));
	a = json_object_new_array();
	for (i = 0; i < bs->n && error == 0; i++) {
		file = xasprintf("%s-%s.bin", stamp, bs->parts[i].label);
		error = backup_write_file(dir, file, bs->data[i],
		    bs->parts[i].size, cause);
		digest_md5_hex(bs->data[i], bs->parts[i].size, md5);
		snprintf(off, sizeof(off), "0x%x", bs->parts[i].offset);
		e = json_object_new_object();
		json_object_object_add(e, "label",
		    json_object_new_string(bs->parts[i].label));
		json_object_object_add(e, "offset",
		    json_object_new_string(off));
		json_object_object_add(e, "size",
		    json_object_new_int64(bs->parts[i].size));
		json_object_object_add(e, "md5", json_object_new_string(md5));
		json_object_object_add(e, "file", json_object_new_string(file));
		json_object_array_add(a, e);
		free(file);
	}
	json_object_object_add(o, "parts", a);
	if (error == 0) {
		text = json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
		file = xasprintf("%s.json", stamp);
		error = backup_write_file(dir, file, text, strlen(text), cause);
		free(file);
	}
	json_object_put(o);
out:
	free(dir);
	return (error);
}

/* Does the image set write any byte of part? */
static int
backup_overlaps(const struct image_set *set, const struct backup_part *p)
{
	const struct image_region	*r;
	size_t				 i;

	for (i = 0; i < set->nregions; i++) {
		r = &set->regions[i];
		if ((uint64_t)r->offset < (uint64_t)p->offset + p->size &&
		    (uint64_t)p->offset < (uint64_t)r->offset + r->len)
			return (1);
	}
	return (0);
}

/* The unit's own partition parts, read from its flash at 0x8000. */
static int
backup_unit_parts(struct loader *l, struct backup_part *parts, size_t max,
    char **cause)
{
	uint8_t	*tbl;
	int	 n;

	tbl = xmalloc(IMAGE_PART_MAX_LEN);
	if ((n = readflash(l, IMAGE_PART_OFFSET, tbl, IMAGE_PART_MAX_LEN,
	    cause)) == 0)
		n = backup_find_parts(tbl, IMAGE_PART_MAX_LEN, parts, max,
		    cause);
	free(tbl);
	return (n);
}

/* Is every byte of every part 0xFF (erased flash)? */
static int
backup_blank(const struct backup_set *bs)
{
	size_t	i, k;

	for (i = 0; i < bs->n; i++) {
		for (k = 0; k < bs->parts[i].size; k++) {
			if (bs->data[i][k] != 0xff)
				return (0);
		}
	}
	return (1);
}

/*
 * Keep the unit's nvs and otadata that set is about to overwrite, filed
 * under root (NULL: the state directory); *bytes is 0 when it touches
 * none, and stamp names the backup otherwise.
 */
static int
backup_for_image(struct loader *l, const struct image_set *set,
    const char *root_arg, const char *chip, char *stamp, size_t stampcap,
    size_t *bytes, char **cause)
{
	struct backup_part	 parts[BACKUP_MAX_PARTS];
	struct backup_set	 bs;
	const uint8_t		*tbl;
	char			*root = NULL;
	size_t			 avail, i;
	int			 n = -EINVAL, error;

	*bytes = 0;
	if (!l->have_mac) {
		*cause = xasprintf("settings backup: the unit's MAC is "
		    "unknown, so the backup could not be filed (use "
		    "--no-backup to write anyway)");
		return (-EINVAL);
	}
	/* The image's table says where settings are; else the unit's. */
	tbl = image_at(set, IMAGE_PART_OFFSET, &avail, NULL);
	if (tbl != NULL)
		n = backup_find_parts(tbl, avail, parts, nitems(parts), cause);
	if (n < 0) {
		free(*cause);
		*cause = NULL;
		n = backup_unit_parts(l, parts, nitems(parts), cause);
		if (n == -EINVAL) {
			/* No table on the unit either: no settings to lose. */
			free(*cause);
			*cause = NULL;
			return (0);
		}
		if (n < 0)
			return (n);
	}
	memset(&bs, 0, sizeof(bs));
	for (i = 0; i < (size_t)n; i++) {
		if (backup_overlaps(set, &parts[i])) {
			bs.parts[bs.n++] = parts[i];
			*bytes += parts[i].size;
		}
	}
	if (bs.n == 0)
		return (0);
	if ((error = backup_root(root_arg, &root, cause)) == 0 &&
	    (error = backup_read_parts(l, &bs, cause)) == 0) {
		/* Erased settings: nothing to lose, no backup to clutter. */
		if (backup_blank(&bs))
			*bytes = 0;
		else
			error = backup_save(root, l->mac, chip,
			    flog_image_sha256(set), &bs, stamp, stampcap,
			    cause);
	}
	backup_set_free(&bs);
	free(root);
	return (error);
}

/* The job hook: keep what the image is about to overwrite. */
int
backup_hook(void *arg, struct loader *l, const struct job_progress *p,
    char **cause)
{
	const struct backup_params	*bp = arg;
	char				 stamp[40];
	size_t				 bytes;

	return (backup_for_image(l, bp->set, bp->root, p != NULL ? p->chip :
	    l->package, stamp, sizeof(stamp), &bytes, cause));
}

/* ============================ commands ================================ */

/* Open, sync, identify and attach the unit on port. */
static int
backup_session_open(struct backup_session *s, const char *port,
    char **cause)
{
	char	mac[18];
	int	error;

	memset(s, 0, sizeof(*s));
	xport_init(&s->xp, -1);
	if ((error = xport_open(&s->xp, port, cause)) != 0)
		return (error);
	s->open = 1;
	loader_init(&s->l, &s->xp);
	if ((error = loader_connect(&s->l)) != 0 ||
	    (error = loader_detect(&s->l)) != 0 ||
	    (error = loader_attach(&s->l)) != 0) {
		*cause = xasprintf("%s: %s", port, loader_cause(&s->l));
		return (error);
	}
	if (s->l.sdm) {
		*cause = xasprintf("%s: the unit is in secure download mode: "
		    "its flash cannot be read", port);
		return (-EPERM);
	}
	mac[0] = '\0';
	if (s->l.have_mac)
		chip_mac_format(s->l.mac, mac, sizeof(mac));
	printf("%s: %s%s%s\n", port, s->l.package, mac[0] ? ", MAC " : "",
	    mac);
	fflush(stdout);
	return (0);
}

/* Leave the unit as asked and close the port. */
static void
backup_session_close(struct backup_session *s, enum loader_after after,
    int ok)
{
	if (!s->open)
		return;
	if (ok)
		(void)loader_finish(&s->l, after);
	loader_free(&s->l);
	xport_close(&s->xp);
	s->open = 0;
}

/* Write one buffer at offset through the flash path, then verify it. */
static int
backup_write(struct loader *l, const char *name, uint32_t offset,
    const uint8_t *data, size_t len, char **cause)
{
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct loader_region	 r;
	const struct image_region *ir;
	int			 error;

	memset(&opts, 0, sizeof(opts));
	opts.force = 1;		/* settings are not an ESP image */
	if ((error = image_load_buffer(&set, name, offset, data, len, &opts,
	    cause)) != 0)
		return (error);
	ir = &set->regions[0];
	memset(&r, 0, sizeof(r));
	r.offset = ir->offset;
	r.data = ir->data;
	r.len = ir->len;
	r.zdata = ir->zdata;
	r.zlen = ir->zlen;
	memcpy(r.md5hex, ir->md5hex, sizeof(r.md5hex));
	if ((error = loader_write(l, &r)) != 0 ||
	    (error = loader_verify(l, &r)) != 0)
		*cause = xasprintf("%s at 0x%x: %s", name, offset,
		    loader_cause(l));
	image_free(set);
	return (error);
}

/* The options every command shares. */
struct backup_opts {
	const char		*port;
	const char		*dir;
	const char		*mac;
	const char		*from;
	enum loader_after	 after;
	int			 no_backup;
	int			 argc;
	char			**argv;
};

/* Parse the options of cmd; -1 on bad usage (said), 1 for --help. */
static int
backup_getopt(const char *cmd, const char *usage, int argc, char **argv,
    struct backup_opts *o)
{
	int	ch;

	memset(o, 0, sizeof(*o));
	o->after = LOADER_AFTER_REBOOT;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", backup_options,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (strcmp(optarg, "reboot") == 0)
				o->after = LOADER_AFTER_REBOOT;
			else if (strcmp(optarg, "stay") == 0)
				o->after = LOADER_AFTER_STAY;
			else {
				fprintf(stderr, "espfleet %s: --after takes "
				    "reboot or stay, not \"%s\"\n", cmd,
				    optarg);
				goto bad;
			}
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'F':
			o->from = optarg;
			break;
		case 'h':
			printf("%s", usage);
			return (1);
		case 'm':
			o->mac = optarg;
			break;
		case 'n':
			o->no_backup = 1;
			break;
		case 'p':
			o->port = optarg;
			break;
		default:
			fprintf(stderr, "espfleet %s: unknown option \"%s\"\n",
			    cmd, argv[optind - 1]);
			goto bad;
		}
	}
	o->argc = argc - optind;
	o->argv = argv + optind;
	if (o->port == NULL) {
		fprintf(stderr, "espfleet %s: no --port given: name the "
		    "unit's serial port, e.g. --port /dev/ttyACM0\n", cmd);
		goto bad;
	}
	return (0);
bad:
	fprintf(stderr, "%s", usage);
	return (-1);
}

/* "backup DIR/<mac>/STAMP.json: N bytes read in T s". */
static void
backup_say(const char *root_arg, const uint8_t mac[6], const char *stamp,
    size_t bytes, uint64_t t0)
{
	char	*root = NULL, *cause = NULL, macs[18], name[13];

	if (backup_root(root_arg, &root, &cause) != 0) {
		free(cause);
		return;
	}
	chip_mac_format(mac, macs, sizeof(macs));
	(void)backup_mac_name(macs, name);
	printf("backup %s/%s/%s.json: %zu bytes read in %.1f s\n", root, name,
	    stamp, bytes, (double)(util_now_ms() - t0) / 1000.0);
	free(root);
}

/* Read and keep the parts on an open session; prints where they went. */
static int
backup_take(struct backup_session *s, const struct backup_part *parts,
    size_t n, const char *dir, const char *sha, char **cause)
{
	struct backup_set	 bs;
	char			*root = NULL, stamp[40];
	uint64_t		 t0;
	size_t			 i, bytes = 0;
	int			 error;

	memset(&bs, 0, sizeof(bs));
	for (i = 0; i < n && i < BACKUP_MAX_PARTS; i++) {
		bs.parts[bs.n++] = parts[i];
		bytes += parts[i].size;
	}
	if ((error = backup_root(dir, &root, cause)) != 0)
		return (error);
	t0 = util_now_ms();
	if ((error = backup_read_parts(&s->l, &bs, cause)) == 0)
		error = backup_save(root, s->l.mac, s->l.package, sha, &bs,
		    stamp, sizeof(stamp), cause);
	if (error == 0)
		backup_say(dir, s->l.mac, stamp, bytes, t0);
	backup_set_free(&bs);
	free(root);
	return (error);
}

/* espfleet backup --port PATH [--dir DIR] [IMAGE]. */
int
backup_main(int argc, char **argv)
{
	static const char	 usage[] = "usage: espfleet backup --port PATH "
	    "[--dir DIR] [--after reboot|stay] [IMAGE]\n";
	struct backup_opts	 o;
	struct backup_session	 s;
	struct backup_part	 parts[BACKUP_MAX_PARTS];
	struct image_set	*set = NULL;
	struct image_load_opts	 lo;
	char			*cause = NULL, stamp[40];
	size_t			 bytes;
	uint64_t		 t0;
	int			 n, status = 1;

	if ((n = backup_getopt("backup", usage, argc, argv, &o)) != 0)
		return (n > 0 ? 0 : BACKUP_EXIT_USAGE);
	if (o.argc > 1) {
		fprintf(stderr, "espfleet backup: give at most one image\n%s",
		    usage);
		return (BACKUP_EXIT_USAGE);
	}
	memset(&lo, 0, sizeof(lo));
	lo.force = 1;
	if (o.argc == 1 && image_load(&set, 1, o.argv, &lo, &cause) != 0) {
		fprintf(stderr, "espfleet backup: %s\n", cause);
		free(cause);
		return (BACKUP_EXIT_USAGE);
	}
	if (backup_session_open(&s, o.port, &cause) != 0)
		goto out;
	t0 = util_now_ms();
	if (set != NULL) {
		/* What "espfleet flash IMAGE" would keep first. */
		if (backup_for_image(&s.l, set, o.dir, s.l.package, stamp,
		    sizeof(stamp), &bytes, &cause) != 0)
			goto out;
		if (bytes == 0)
			printf("%s: the image leaves nvs and otadata alone, "
			    "or they are erased: nothing to keep\n", o.port);
		else
			backup_say(o.dir, s.l.mac, stamp, bytes, t0);
		status = 0;
		goto out;
	}
	if ((n = backup_unit_parts(&s.l, parts, nitems(parts), &cause)) < 0)
		goto out;
	if (n == 0)
		printf("%s: no nvs or otadata partition: nothing to keep\n",
		    o.port);
	if (n == 0 || backup_take(&s, parts, (size_t)n, o.dir, NULL,
	    &cause) == 0)
		status = 0;
out:
	if (cause != NULL)
		fprintf(stderr, "espfleet backup: %s\n", cause);
	backup_session_close(&s, o.after, status == 0);
	image_free(set);
	free(cause);
	return (status);
}

/* The manifest to restore: --from's prefix, else the latest. */
static char *
backup_pick(const char *dir, const char *from, char **cause)
{
	DIR		*d;
	struct dirent	*de;
	char		*best = NULL;
	size_t		 len;

	if ((d = opendir(dir)) == NULL) {
		*cause = xasprintf("no backup for that MAC: cannot open %s: %s",
		    dir, strerror(errno));
		return (NULL);
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (from != NULL && strncmp(de->d_name, from,
		    strlen(from)) != 0)
			continue;
		if (best == NULL || strcmp(de->d_name, best) > 0) {
			free(best);
			best = xstrdup(de->d_name);
		}
	}
	closedir(d);
	if (best == NULL)
		*cause = xasprintf("no backup%s%s in %s", from ? " from " : "",
		    from ? from : "", dir);
	return (best);
}

/* Load a manifest's parts from dir, checking each file's size and md5. */
static int
backup_load(const char *dir, const char *manifest, struct backup_set *bs,
    char **cause)
{
	struct json_object	*o = NULL, *a, *e, *v;
	char			*path, *text, md5[33];
	const char		*file, *off, *label, *sum;
	size_t			 len, i;
	uint32_t		 offset;
	const char		*why;
	int			 error = -EINVAL;

	memset(bs, 0, sizeof(*bs));
	path = xasprintf("%s/%s", dir, manifest);
	text = (char *)backup_read_file(path, &len, cause);
	if (text == NULL)
		goto out;
	if ((o = json_tokener_parse(text)) == NULL ||
	    !json_object_object_get_ex(o, "parts", &a) ||
	    !json_object_is_type(a, json_type_array)) {
		*cause = xasprintf("%s is not a backup manifest", path);
		goto out;
	}
	for (i = 0; i < json_object_array_length(a); i++) {
		if (bs->n == BACKUP_MAX_PARTS)
			break;
		e = json_object_array_get_idx(a, i);
		file = json_object_object_get_ex(e, "file", &v) ?
		    json_object_get_string(v) : NULL;
		off = json_object_object_get_ex(e, "offset", &v) ?
		    json_object_get_string(v) : NULL;
		label = json_object_object_get_ex(e, "label", &v) ?
		    json_object_get_string(v) : "";
		sum = json_object_object_get_ex(e, "md5", &v) ?
		    json_object_get_string(v) : NULL;
		if (file == NULL || off == NULL || sum == NULL ||
		    strchr(file, '/') != NULL ||
		    image_parse_offset(off, &offset, &why) != 0) {
			*cause = xasprintf("%s: part %zu is malformed", path,
			    i);
			goto out;
		}
		free(path);
		path = xasprintf("%s/%s", dir, file);
		bs->data[bs->n] = backup_read_file(path, &len, cause);
		if (bs->data[bs->n] == NULL)
			goto out;
		digest_md5_hex(bs->data[bs->n], len, md5);
		bs->parts[bs->n].offset = offset;
		bs->parts[bs->n].size = (uint32_t)len;
		snprintf(bs->parts[bs->n].label, sizeof(bs->parts[0].label),
		    "%s", label);
		bs->n++;
		if (strcmp(md5, sum) != 0) {
			*cause = xasprintf("%s: md5 %s, the manifest says %s: "
			    "the backup is damaged", path, md5, sum);
			goto out;
		}
	}
	error = bs->n > 0 ? 0 : -EINVAL;
	if (error != 0)
		*cause = xasprintf("%s/%s lists no part", dir, manifest);
out:
	json_object_put(o);
	free(text);
	free(path);
	if (error != 0)
		backup_set_free(bs);
	return (error);
}

/* espfleet restore --mac MAC --port PATH [--from TIME] [--dir DIR]. */
int
backup_restore_main(int argc, char **argv)
{
	static const char	 usage[] = "usage: espfleet restore --mac MAC "
	    "--port PATH [--from TIME] [--dir DIR]\n"
	    "                        [--after reboot|stay]\n";
	struct backup_opts	 o;
	struct backup_session	 s;
	struct backup_set	 bs;
	char			 name[13], unit[18], unitname[13];
	char			*root = NULL, *dir = NULL, *pick = NULL;
	char			*cause = NULL;
	size_t			 i;
	int			 n, status = BACKUP_EXIT_USAGE;

	memset(&s, 0, sizeof(s));
	memset(&bs, 0, sizeof(bs));
	if ((n = backup_getopt("restore", usage, argc, argv, &o)) != 0)
		return (n > 0 ? 0 : BACKUP_EXIT_USAGE);
	if (o.mac == NULL || backup_mac_name(o.mac, name) != 0 ||
	    o.argc != 0) {
		fprintf(stderr, "espfleet restore: %s\n%s", o.mac == NULL ?
		    "no --mac given: name the unit whose backup to write" :
		    o.argc != 0 ? "unexpected arguments" :
		    "--mac takes a MAC like 7c:df:a1:00:11:22", usage);
		return (BACKUP_EXIT_USAGE);
	}
	if (backup_root(o.dir, &root, &cause) != 0)
		goto out;
	dir = xasprintf("%s/%s", root, name);
	/* Everything is checked before the unit is touched. */
	if ((pick = backup_pick(dir, o.from, &cause)) == NULL ||
	    backup_load(dir, pick, &bs, &cause) != 0)
		goto out;
	status = 1;
	if (backup_session_open(&s, o.port, &cause) != 0)
		goto out;
	chip_mac_format(s.l.mac, unit, sizeof(unit));
	if (!s.l.have_mac || backup_mac_name(unit, unitname) != 0 ||
	    strcmp(unitname, name) != 0) {
		cause = xasprintf("the unit on %s is %s, not %s: nothing "
		    "written", o.port, s.l.have_mac ? unit : "of unknown MAC",
		    o.mac);
		status = BACKUP_EXIT_USAGE;
		goto out;
	}
	for (i = 0; i < bs.n; i++) {
		if (backup_write(&s.l, bs.parts[i].label, bs.parts[i].offset,
		    bs.data[i], bs.parts[i].size, &cause) != 0)
			goto out;
		printf("%s: restored %s at 0x%x (%u bytes), verified\n",
		    o.port, bs.parts[i].label, bs.parts[i].offset,
		    bs.parts[i].size);
	}
	printf("%s: restored %s/%s\n", o.port, dir, pick);
	status = 0;
out:
	if (cause != NULL)
		fprintf(stderr, "espfleet restore: %s\n", cause);
	backup_session_close(&s, o.after, status == 0);
	backup_set_free(&bs);
	free(cause);
	free(pick);
	free(dir);
	free(root);
	return (status);
}

/* espfleet wipe --port PATH [--no-backup]: erase nvs and otadata. */
int
backup_wipe_main(int argc, char **argv)
{
	static const char	 usage[] = "usage: espfleet wipe --port PATH "
	    "[--no-backup] [--dir DIR] [--after reboot|stay]\n";
	struct backup_opts	 o;
	struct backup_session	 s;
	struct backup_part	 parts[BACKUP_MAX_PARTS];
	uint8_t			*ff;
	char			*cause = NULL;
	uint64_t		 t0;
	int			 n, i, status = 1;

	if ((n = backup_getopt("wipe", usage, argc, argv, &o)) != 0)
		return (n > 0 ? 0 : BACKUP_EXIT_USAGE);
	if (o.argc != 0) {
		fprintf(stderr, "espfleet wipe: unexpected arguments\n%s",
		    usage);
		return (BACKUP_EXIT_USAGE);
	}
	if (backup_session_open(&s, o.port, &cause) != 0)
		goto out;
	if ((n = backup_unit_parts(&s.l, parts, nitems(parts), &cause)) < 0)
		goto out;
	if (n == 0) {
		printf("%s: no nvs or otadata partition: nothing to wipe\n",
		    o.port);
		status = 0;
		goto out;
	}
	/* Settings are easy to lose: keep them first unless told not to. */
	if (!o.no_backup && backup_take(&s, parts, (size_t)n, o.dir, NULL,
	    &cause) != 0)
		goto out;
	t0 = util_now_ms();
	for (i = 0; i < n; i++) {
		ff = xmalloc(parts[i].size);
		memset(ff, 0xff, parts[i].size);
		if (backup_write(&s.l, parts[i].label, parts[i].offset, ff,
		    parts[i].size, &cause) != 0) {
			free(ff);
			goto out;
		}
		free(ff);
		printf("%s: wiped %s at 0x%x (%u bytes)\n", o.port,
		    parts[i].label, parts[i].offset, parts[i].size);
	}
	printf("%s: settings wiped in %.1f s\n", o.port,
	    (double)(util_now_ms() - t0) / 1000.0);
	status = 0;
out:
	if (cause != NULL)
		fprintf(stderr, "espfleet wipe: %s\n", cause);
	backup_session_close(&s, o.after, status == 0);
	free(cause);
	return (status);
}
