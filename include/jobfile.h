/*
 * Job files: one JSON file that fixes a production job, so the bench runs
 * the same job every day.
 *
 *	{
 *	  "name": "Screek 1U factory",
 *	  "chip": "esp32s2",
 *	  "images": [ { "offset": "0x0", "path": "factory.bin",
 *	                "sha256": "<64 hex digits>" } ],
 *	  "after": "reboot",
 *	  "boot_check": "ESPHome 2023.6.3",
 *	  "retries": 2,
 *	  "auto": true
 *	}
 *
 * "images" is required and not empty; the rest is optional.  Image paths
 * are relative to the job file's directory.  Loading reads every image
 * and refuses one whose sha256 is not the one the job names; an unknown
 * key or a value of the wrong type is refused by name.  Nothing here
 * touches a device, a terminal or a global.
 */
#ifndef ESPF_JOBFILE_H
#define ESPF_JOBFILE_H

#include <stddef.h>
#include <stdint.h>

#include "loader.h"

#define JOBFILE_MAX_IMAGES	16
#define JOBFILE_MAX_SIZE	(64 * 1024)	/* the JSON file itself */
#define JOBFILE_MAX_RETRIES	10

struct jobfile_image {
	uint32_t	 offset;
	char		 offset_text[16];	/* "0x10000", for image_load */
	char		*path;		/* resolved against the file's dir */
	char		 sha256[65];	/* lowercase hex, as checked */
};

struct jobfile {
	char			*path;		/* the job file, as given */
	char			*name;		/* "" when the file has none */
	char			*chip;		/* NULL: any */
	struct jobfile_image	*images;
	size_t			 nimages;
	int			 has_after;
	enum loader_after	 after;
	char			*boot_check;	/* NULL: no pattern */
	int			 has_retries;
	unsigned		 retries;
	int			 has_auto;
	int			 auto_on;
};

/*
 * Read and check the job file at path into *jf (zeroed first).  0, or a
 * negative errno with *cause naming the file, the key and what to do:
 * -ENOENT and the like when a file cannot be read, -EINVAL for bad
 * content, -EBADMSG when an image's sha256 is not the one written.
 * On failure *jf holds nothing to free.
 */
int	 jobfile_load(const char *path, struct jobfile *jf, char **cause);
/* Free what *jf holds and zero it; a zeroed one is fine. */
void	 jobfile_free(struct jobfile *jf);
/*
 * The OFFSET FILE pairs image_load() takes, in *argv (NULL-terminated;
 * free with jobfile_argv_free).  Returns the count of strings.
 */
int	 jobfile_argv(const struct jobfile *jf, char ***argv);
void	 jobfile_argv_free(char **argv);

#endif
