/*
 * Unit records (flog.h): a JSON object per attempt, serialized whole with
 * json-c and appended with one write() on an O_APPEND|O_NOFOLLOW
 * descriptor, then fsync'd.  O_APPEND makes each write land at the end of
 * the file as a unit, also between several processes on a local file
 * system, so records never interleave or end half-written.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "chip.h"
#include "flog.h"
#include "image.h"
#include "job.h"
#include "proto.h"
#include "util.h"

#define FLOG_DEFAULT_NAME	"units.jsonl"

struct flog {
	int	 fd;
	char	*path;
};

static const char *const flog_result_names[FLOG_RESULT__MAX] = {
	"verified", "failed", "cancelled", "interrupted"
};

/* The word a record uses for a result. */
const char *
flog_result_name(enum flog_result r)
{
	if ((unsigned)r >= FLOG_RESULT__MAX)
		return ("unknown");
	return (flog_result_names[r]);
}

/* Wall-clock UTC time in ISO 8601 (records are read by people). */
void
flog_now(char *buf, size_t cap)
{
	struct timespec	ts;
	struct tm	tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && cap > 0)
		buf[0] = '\0';
}

/* The state directory joined with rel, following the XDG rules. */
int
flog_state_path(char **out, const char *rel, char **cause)
{
	const char	*xdg, *home;

	*out = NULL;
	xdg = getenv("XDG_STATE_HOME");
	/* XDG: a relative value is invalid and must be ignored. */
	if (xdg != NULL && xdg[0] == '/') {
		*out = xasprintf("%s/espfleet%s%s", xdg, *rel ? "/" : "", rel);
		return (0);
	}
	home = getenv("HOME");
	if (home == NULL || home[0] != '/') {
		*cause = xasprintf("neither XDG_STATE_HOME nor HOME is set to "
		    "an absolute path: set one, or name the file");
		return (-ENOENT);
	}
	*out = xasprintf("%s/.local/state/espfleet%s%s", home, *rel ? "/" : "",
	    rel);
	return (0);
}

/* Create dir and its missing parents, each 0700; existing ones stay. */
int
flog_mkdirs(const char *dir, char **cause)
{
	struct stat	 st;
	char		*p, *s;
	int		 error = 0;

	if (dir[0] == '\0')
		return (0);
	p = xstrdup(dir);
	for (s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		if (s[-1] == '/') {
			if (*s == '\0')
				break;
			continue;
		}
		*s = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			error = -errno;
			*cause = xasprintf("cannot create directory %s: %s", p,
			    strerror(errno));
			goto out;
		}
		if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
			error = -ENOTDIR;
			*cause = xasprintf("%s is not a directory", p);
			goto out;
		}
		if (dir[s - p] == '\0')
			break;
		*s = '/';
	}
out:
	free(p);
	return (error);
}

/* Create path's parent directories (0700) when they are missing. */
static int
flog_make_parent(const char *path, char **cause)
{
	char	*dir, *slash;
	int	 error = 0;

	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		error = flog_mkdirs(dir, cause);
	}
	free(dir);
	return (error);
}

/* Open the record file without following a link; regular files only. */
int
flog_open(struct flog **out, const char *path, char **cause)
{
	struct stat	 st;
	struct flog	*f;
	char		*p = NULL;
	int		 fd, error;

	*out = NULL;
	if (path == NULL) {
		if ((error = flog_state_path(&p, FLOG_DEFAULT_NAME,
		    cause)) != 0)
			return (error);
	} else
		p = xstrdup(path);
	if ((error = flog_make_parent(p, cause)) != 0)
		goto fail;
	/* O_NONBLOCK: a FIFO planted here must not hang us; O_RDWR: we
	 * read the last byte to see whether a killed writer cut a line. */
	fd = open(p, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK, 0600);
	if (fd == -1) {
		error = -errno;
		if (errno == ELOOP)
			*cause = xasprintf("record file %s is a symbolic link; "
			    "records are never written through a link: name "
			    "the real file with --log", p);
		else if (errno == ENXIO) {	/* a FIFO nobody reads */
			error = -EINVAL;
			*cause = xasprintf("record file %s is not a regular "
			    "file: name a file with --log", p);
		} else
			*cause = xasprintf("cannot open record file %s: %s",
			    p, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		error = -EINVAL;
		*cause = xasprintf("record file %s is not a regular file: "
		    "name a file with --log", p);
		goto fail;
	}
	(void)fcntl(fd, F_SETFL, O_APPEND);
	f = xcalloc(1, sizeof(*f));
	f->fd = fd;
	f->path = p;
	*out = f;
	return (0);
fail:
	free(p);
	return (error);
}

/* Close the record file. */
void
flog_close(struct flog *f)
{
	if (f == NULL)
		return;
	close(f->fd);
	free(f->path);
	free(f);
}

/* The path the record file was opened with. */
const char *
flog_path(const struct flog *f)
{
	return (f->path);
}

/* Add a sanitized string member unless it is empty. */
static void
flog_add_str(struct json_object *o, const char *key, const char *val)
{
	char	*buf;
	size_t	 len, cap;

	if (val == NULL || val[0] == '\0')
		return;
	len = strlen(val);
	cap = len * 4 + 1;	/* every byte may become \xNN */
	buf = xmalloc(cap);
	util_sanitize(buf, cap, val, len);
	json_object_object_add(o, key, json_object_new_string(buf));
	free(buf);
}

/* What the job read from the chip, as "flash --json" names it. */
static void
flog_unit_identity(struct flog_unit *u, const struct job_progress *p)
{
	if (p->rev_major >= 0 && p->chip[0] != '\0')
		snprintf(u->revision, sizeof(u->revision), "v%d.%d",
		    p->rev_major, p->rev_minor);
	if (p->flash_id != 0)
		snprintf(u->flash_id, sizeof(u->flash_id), "0x%06x",
		    p->flash_id);
	u->crystal_mhz = p->crystal_mhz;
	if (p->sec.valid)
		snprintf(u->security, sizeof(u->security), "%s", p->security);
	if (p->chip[0] != '\0')
		snprintf(u->loader, sizeof(u->loader), "%s", p->stub ? "stub" :
		    "rom");
}

/* The record as a single JSON line, newline included. */
char *
flog_unit_json(const struct flog_unit *u)
{
	struct json_object	*o, *a, *r;
	char			 off[16], now[32], secs[32];
	size_t			 i;
	char			*line;

	o = json_object_new_object();
	/* Always first: readers find a record's start by it. */
	if (u->time[0] != '\0')
		snprintf(now, sizeof(now), "%s", u->time);
	else
		flog_now(now, sizeof(now));
	flog_add_str(o, "time", now);
	json_object_object_add(o, "result",
	    json_object_new_string(flog_result_name(u->result)));
	flog_add_str(o, "location", u->location);
	flog_add_str(o, "port", u->port);
	flog_add_str(o, "usb_serial", u->usb_serial);
	flog_add_str(o, "chip", u->chip);
	flog_add_str(o, "revision", u->revision);
	flog_add_str(o, "mac", u->mac);
	if (u->flash_size != 0)
		json_object_object_add(o, "flash_size",
		    json_object_new_int64(u->flash_size));
	flog_add_str(o, "flash_id", u->flash_id);
	if (u->crystal_mhz != 0)
		json_object_object_add(o, "crystal_mhz",
		    json_object_new_int((int)u->crystal_mhz));
	flog_add_str(o, "security", u->security);
	flog_add_str(o, "loader", u->loader);
	flog_add_str(o, "image", u->image);
	flog_add_str(o, "image_sha256", u->image_sha256);
	a = json_object_new_array();
	for (i = 0; i < u->nregions && i < FLOG_MAX_REGIONS; i++) {
		r = json_object_new_object();
		snprintf(off, sizeof(off), "0x%x", u->regions[i].offset);
		json_object_object_add(r, "offset",
		    json_object_new_string(off));
		json_object_object_add(r, "size",
		    json_object_new_int64((int64_t)u->regions[i].size));
		flog_add_str(r, "md5", u->regions[i].md5);
		flog_add_str(r, "sha256", u->regions[i].sha256);
		json_object_array_add(a, r);
	}
	json_object_object_add(o, "regions", a);
	json_object_object_add(o, "bytes",
	    json_object_new_int64((int64_t)u->bytes));
	json_object_object_add(o, "bytes_total",
	    json_object_new_int64((int64_t)u->bytes_total));
	json_object_object_add(o, "compressed_bytes",
	    json_object_new_int64((int64_t)u->compressed));
	/* Milliseconds are enough, and print as written. */
	snprintf(secs, sizeof(secs), "%.3f", u->seconds);
	json_object_object_add(o, "seconds",
	    json_object_new_double_s(u->seconds, secs));
	flog_add_str(o, "reason", u->reason);
	flog_add_str(o, "rom_status", u->rom_status);
	flog_add_str(o, "boot", u->boot);
	line = xasprintf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return (line);
}

/*
 * Does the file end inside a line?  Linux cuts a write() short when
 * SIGKILL arrives between two pages, so a killed writer can leave a
 * fragment; the next record then starts on a line of its own.
 */
static int
flog_ends_open(int fd)
{
	struct stat	st;
	char		c;

	if (fstat(fd, &st) != 0 || st.st_size == 0)
		return (0);
	if (pread(fd, &c, 1, st.st_size - 1) != 1)
		return (0);
	return (c != '\n');
}

/* One write() for the whole line, then fsync. */
int
flog_append_job(struct flog *f, const struct flog_unit *u, char **cause)
{
	char	*line, *buf;
	size_t	 len;
	ssize_t	 n;
	int	 error = 0;

	line = flog_unit_json(u);
	/*
	 * Between espfleet processes, the lock makes the look at the last
	 * byte and the write one step; the kernel drops it if we are killed.
	 */
	while (flock(f->fd, LOCK_EX) == -1 && errno == EINTR)
		;
	if (flog_ends_open(f->fd)) {
		buf = xasprintf("\n%s", line);
		free(line);
		line = buf;
	}
	len = strlen(line);
	do
		n = write(f->fd, line, len);
	while (n == -1 && errno == EINTR);
	(void)flock(f->fd, LOCK_UN);
	if (n == -1) {
		error = -errno;
		*cause = xasprintf("cannot write record to %s: %s", f->path,
		    strerror(errno));
	} else if ((size_t)n != len) {
		/* Disk full: the line is cut; say so rather than retry. */
		error = -ENOSPC;
		*cause = xasprintf("record to %s cut short (%zd of %zu bytes): "
		    "is the disk full?", f->path, n, len);
	} else if (fsync(f->fd) != 0) {
		error = -errno;
		*cause = xasprintf("cannot sync record file %s: %s", f->path,
		    strerror(errno));
	}
	free(line);
	return (error);
}

/*
 * Parse one line of a record file.  A line that is a cut record followed
 * by a whole one (a writer killed mid-write, then another appending) gives
 * the whole one and sets *damaged; NULL when nothing in it parses.
 */
struct json_object *
flog_parse_line(const char *line, size_t len, int *damaged)
{
	struct json_object	*o;
	const char		*s, *last = NULL;
	char			*copy;

	*damaged = 0;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	copy = xmalloc(len + 1);
	memcpy(copy, line, len);
	copy[len] = '\0';
	o = json_tokener_parse(copy);
	if (o != NULL && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	if (o == NULL) {
		*damaged = 1;
		for (s = copy + 1; (s = strstr(s, FLOG_RECORD_START)) != NULL;
		    s++)
			last = s;
		if (last != NULL && (o = json_tokener_parse(last)) != NULL &&
		    !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
	}
	free(copy);
	return (o);
}

/* "ROM status 0x01 0x07" style text from a failure message, if any. */
static void
flog_rom_status(const char *msg, char *buf, size_t cap)
{
	const char	*s;
	unsigned	 code;

	buf[0] = '\0';
	/* loader.c words a failed reply "...: ROM status 0x07 ...". */
	if ((s = strstr(msg, "ROM status 0x")) == NULL &&
	    (s = strstr(msg, "stub status 0x")) == NULL)
		return;
	s = strstr(s, "0x");
	if (sscanf(s, "0x%2x", &code) == 1)
		snprintf(buf, cap, "0x%02x %s", code, proto_err_name(
		    (uint8_t)code));
}

/* One file: the sha256sum people know; several: the set's identity. */
const char *
flog_image_sha256(const struct image_set *set)
{
	if (set->nregions == 1)
		return (set->regions[0].sha256hex);
	return (set->sha256hex);
}

/* Fill a record from a finished job and the image set it wrote. */
void
flog_unit_from_job(struct flog_unit *u, const char *port,
    const struct job_progress *p, const struct image_set *set,
    int interrupted)
{
	const struct image_region	*r;
	size_t				 i, len;

	memset(u, 0, sizeof(*u));
	flog_now(u->time, sizeof(u->time));
	snprintf(u->port, sizeof(u->port), "%s", port != NULL ? port : "");
	snprintf(u->chip, sizeof(u->chip), "%s", p->chip);
	if (p->have_mac)
		chip_mac_format(p->mac, u->mac, sizeof(u->mac));
	u->flash_size = p->flash_size;
	flog_unit_identity(u, p);
	if (set != NULL) {
		for (i = 0; i < set->nregions; i++) {
			r = &set->regions[i];
			len = strlen(u->image);
			snprintf(u->image + len, sizeof(u->image) - len,
			    "%s%s", i > 0 ? ", " : "", r->name);
			if (i >= FLOG_MAX_REGIONS)
				continue;
			u->regions[i].offset = r->offset;
			u->regions[i].size = r->len;
			memcpy(u->regions[i].md5, r->md5hex,
			    sizeof(u->regions[i].md5));
			memcpy(u->regions[i].sha256, r->sha256hex,
			    sizeof(u->regions[i].sha256));
			u->nregions = i + 1;
		}
		snprintf(u->image_sha256, sizeof(u->image_sha256), "%s",
		    flog_image_sha256(set));
		u->compressed = set->total_zlen;
	}
	u->bytes = p->bytes_done;
	u->bytes_total = p->bytes_total;
	if (p->t_start != 0 && p->t_end >= p->t_start)
		u->seconds = (double)(p->t_end - p->t_start) / 1000.0;
	switch (p->state) {
	case JOB_ST_VERIFIED:
		u->result = FLOG_VERIFIED;
		break;
	case JOB_ST_CANCELLED:
		u->result = interrupted ? FLOG_INTERRUPTED : FLOG_CANCELLED;
		snprintf(u->reason, sizeof(u->reason), "%s while %s",
		    interrupted ? "interrupted" : "cancelled",
		    job_phase_name(p->phase));
		break;
	default:
		u->result = interrupted ? FLOG_INTERRUPTED : FLOG_FAILED;
		snprintf(u->reason, sizeof(u->reason), "%s", p->errmsg[0] !=
		    '\0' ? p->errmsg : job_state_name(p->state));
		break;
	}
	flog_rom_status(p->errmsg, u->rom_status, sizeof(u->rom_status));
	snprintf(u->boot, sizeof(u->boot), "%s", p->boot);
}
