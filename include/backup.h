/*
 * Settings: nothing lost.  Before an image overwrites a unit's nvs and
 * otadata partitions (Wi-Fi credentials, which app boots), read them with
 * the ROM's READ_FLASH_SLOW and keep them per MAC under the state
 * directory: backups/<mac>/<UTC-time>-<label>.bin and <UTC-time>.json,
 * files 0600 created with O_EXCL|O_NOFOLLOW, directories 0700.
 * "espfleet restore" writes a backup back and verifies it; "espfleet wipe"
 * erases only nvs and otadata; "espfleet backup" saves without writing.
 */
#ifndef ESPF_BACKUP_H
#define ESPF_BACKUP_H

#include <stddef.h>
#include <stdint.h>

struct loader;
struct job_progress;
struct image_set;

/*
 * A step a flash job's worker runs on a connected, identified and
 * attached unit, before it erases anything: 0 to go on, or -errno with
 * *cause set to fail the job (nothing has been written then).
 */
typedef int (*job_hook_cb)(void *arg, struct loader *l,
	    const struct job_progress *p, char **cause);

#define BACKUP_MAX_PARTS	4	/* nvs, otadata and a spare or two */

/* One partition kept in a backup. */
struct backup_part {
	char		 label[17];	/* sanitized partition label */
	uint8_t		 subtype;	/* IMAGE_PART_DATA_NVS or _OTA */
	uint32_t	 offset;
	uint32_t	 size;
};

/* What backup_hook needs; shared read-only by every job. */
struct backup_params {
	const struct image_set	*set;	/* about to be written; the parts
					   it overwrites are kept */
	const char		*root;	/* NULL: <state dir>/backups */
};

/*
 * The job hook: find nvs and otadata in the image's partition table (or,
 * if it has none, the unit's own at 0x8000), and when the image overwrites
 * them, read them from the unit and keep them, unless they are erased
 * (all 0xFF).  arg: struct backup_params.
 */
int	backup_hook(void *arg, struct loader *, const struct job_progress *,
	    char **cause);

/*
 * The nvs and otadata partitions in a partition table (raw bytes):
 * how many were put in parts (at most max), or -EINVAL with *cause set.
 */
int	backup_find_parts(const uint8_t *, size_t, struct backup_part *,
	    size_t max, char **cause);

/* "espfleet backup --port PATH [--dir DIR] [IMAGE]"; exit status. */
int	backup_main(int argc, char **argv);
/* "espfleet restore --mac MAC --port PATH [--from TIME] [--dir DIR]". */
int	backup_restore_main(int argc, char **argv);
/* "espfleet wipe --port PATH": erase nvs and otadata only. */
int	backup_wipe_main(int argc, char **argv);

#endif
