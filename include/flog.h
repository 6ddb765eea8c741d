/*
 * Unit records: one JSON Lines record per unit per attempt, appended to
 * $XDG_STATE_HOME/espfleet/units.jsonl (or --log PATH) with a single
 * write() on an O_APPEND descriptor and an fsync, so that a crash, a
 * kill -9 or another espfleet appending to the same file never leaves a
 * partial line.  The consumer (the main thread of "espfleet flash" or of
 * the bench) writes the record when a job ends; workers never do.
 */
#ifndef ESPF_FLOG_H
#define ESPF_FLOG_H

#include <stddef.h>
#include <stdint.h>

struct job_progress;
struct json_object;
struct image_set;
struct flog;

#define FLOG_MAX_REGIONS	16	/* regions kept in one record */
#define FLOG_RECORD_START	"{\"time\":\""	/* every record begins so */

enum flog_result {
	FLOG_VERIFIED,		/* every region written and verified */
	FLOG_FAILED,		/* the job failed; reason says why */
	FLOG_CANCELLED,		/* the operator cancelled it */
	FLOG_INTERRUPTED,	/* a signal (SIGINT/SIGTERM/SIGHUP) ended it */
	FLOG_RESULT__MAX
};

struct flog_region {
	uint32_t	 offset;
	uint64_t	 size;		/* bytes written (padded) */
	char		 md5[33];	/* lowercase hex, of what is written */
	char		 sha256[65];	/* of the file, like sha256sum */
};

/*
 * Everything one record holds.  Strings are sanitized when they go into
 * the record; "" (or 0) means unknown and the field is left out.
 */
struct flog_unit {
	char		 time[32];	/* ISO 8601 UTC: 2026-11-27T16:22:20Z */
	char		 location[128];	/* physical location (USB path) */
	char		 port[256];
	char		 usb_serial[128];
	char		 chip[32];	/* "ESP32-S2FNR2" */
	char		 revision[16];	/* "v0.0" */
	char		 mac[18];	/* "7c:df:a1:00:11:22" */
	uint32_t	 flash_size;	/* bytes */
	char		 flash_id[12];	/* JEDEC id, "0x1640c8" */
	unsigned	 crystal_mhz;
	char		 security[96];	/* GET_SECURITY_INFO in words */
	char		 loader[8];	/* "rom" or "stub": what wrote it */
	char		 image[2048];	/* region file names, ", "-joined */
	char		 image_sha256[65];	/* one file: its sha256sum;
					   more: image_set's identity */
	struct flog_region regions[FLOG_MAX_REGIONS];
	size_t		 nregions;
	uint64_t	 bytes;		/* flash bytes written */
	uint64_t	 bytes_total;	/* flash bytes to write */
	uint64_t	 compressed;	/* deflated bytes of the image set */
	double		 seconds;	/* duration of the attempt */
	enum flog_result result;
	char		 reason[512];	/* why it did not verify */
	char		 rom_status[64]; /* "0x01 0x07" of a failed reply */
	char		 boot[160];	/* boot check, "" if none was made */
};

/*
 * Open (creating it 0600, and its directory 0700) the record file at
 * path, or at the default place when path is NULL.  A symbolic link, or
 * anything but a regular file, is refused.  0 or -errno with *cause set.
 */
int	 flog_open(struct flog **, const char *path, char **cause);
/* Close and free; NULL is fine. */
void	 flog_close(struct flog *);
/* The file's path, as opened. */
const char *flog_path(const struct flog *);
/*
 * Append one record: built whole, written with one write() and made
 * durable with fsync().  0 or -errno with *cause set.
 */
int	 flog_append_job(struct flog *, const struct flog_unit *,
	     char **cause);

/*
 * Fill u from a finished job: the time now, the port, identity, regions,
 * bytes, duration, result (interrupted when the consumer stopped the job
 * for a signal), reason and ROM status.  Fields the job does not know
 * (location, USB serial, revision, boot check) stay "" for the caller.
 */
void	 flog_unit_from_job(struct flog_unit *u, const char *port,
	     const struct job_progress *, const struct image_set *,
	     int interrupted);
/* The record as one line of JSON with its newline; the caller frees. */
char	*flog_unit_json(const struct flog_unit *);
const char *flog_result_name(enum flog_result);
/*
 * Parse one line of a record file.  A cut record followed on the same
 * line by a whole one yields the whole one with *damaged set; NULL when
 * nothing parses (garbage, a cut last line).  The caller puts the object.
 */
struct json_object *flog_parse_line(const char *, size_t, int *damaged);
/* Current UTC time as ISO 8601 with a Z into buf. */
void	 flog_now(char *buf, size_t cap);
/* The sha256 naming a set: its one file's, else the set's identity. */
const char *flog_image_sha256(const struct image_set *);

/*
 * The state directory ($XDG_STATE_HOME/espfleet, else
 * ~/.local/state/espfleet) joined with rel; the caller frees.
 */
int	 flog_state_path(char **out, const char *rel, char **cause);
/* mkdir -p with mode 0700 for every directory it creates. */
int	 flog_mkdirs(const char *dir, char **cause);

#endif
