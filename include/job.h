/*
 * Flash jobs: one worker thread per port writes the shared, immutable image
 * set and publishes a progress snapshot under a per-job mutex, waking the
 * consumer (command line or TUI) through a coalescing eventfd.  Nothing here
 * prints: the consumer decides what to show.
 */
#ifndef ESPF_JOB_H
#define ESPF_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "loader.h"

struct image_set;
struct xport;
struct job;

enum job_state {
	JOB_ST_QUEUED,		/* created, worker not started */
	JOB_ST_RUNNING,
	JOB_ST_VERIFIED,	/* every region written and its MD5 matched */
	JOB_ST_FAILED,
	JOB_ST_CANCELLED,
	JOB_ST__MAX
};

enum job_phase {
	JOB_PH_WAITING,
	JOB_PH_OPENING,
	JOB_PH_CONNECTING,
	JOB_PH_IDENTIFYING,
	JOB_PH_CONFIGURING,
	JOB_PH_ERASING,
	JOB_PH_WRITING,
	JOB_PH_VERIFYING,
	JOB_PH_RESETTING,
	JOB_PH_DONE,
	JOB_PH__MAX
};


/* Attempts after a transient failure (--retries): default and limit. */
#define JOB_RETRIES_DEFAULT	2
#define JOB_RETRIES_MAX		10
/* What a consumer may read about a job: a consistent copy. */
struct job_progress {
	enum job_state	 state;
	enum job_phase	 phase;		/* last phase reached */
	uint64_t	 bytes_done;	/* flash bytes written, all regions */
	uint64_t	 bytes_total;
	uint32_t	 addr;		/* flash address being written */
	unsigned	 region;	/* 0-based index being worked on */
	unsigned	 nregions;
	char		 chip[32];	/* "ESP32-S2FNR2", "" until known */
	uint8_t		 mac[6];
	int		 have_mac;
	int		 usb_otg;
	uint32_t	 flash_size;	/* bytes, 0 unknown */
	int		 rev_major;	/* chip revision, -1 unknown */
	int		 rev_minor;
	uint32_t	 flash_id;	/* JEDEC mfr|type<<8|cap<<16, 0 unknown */
	unsigned	 crystal_mhz;	/* 0 unknown */
	struct loader_security sec;	/* GET_SECURITY_INFO (sec.valid) */
	char		 security[96];	/* the flags in words, "" unknown */
	double		 rate;		/* flash bytes/s while writing */
	int		 error;		/* -errno when FAILED/CANCELLED */
	char		 errmsg[320];	/* why it failed, in words */
	char		 note[160];	/* a warning that did not fail it */
	enum loader_boot boot_result;	/* after the reboot; NONE: unchecked */
	char		 boot[LOADER_BOOT_TEXT]; /* "booted: ESPHome 2023.6.3 ..." */
	char		 how[64];	/* how download mode was reached */
	int		 need_manual;	/* failed: "hold BOOT, press RST" */
	int		 stub;		/* the flasher stub did the writing */
	uint64_t	 t_start;	/* ms, CLOCK_MONOTONIC; 0 not yet */
	uint64_t	 t_end;
	unsigned	 gen;		/* changes with every phase or state */
};

/* Open the transport another way (tests: an in-process emulator). */
typedef int (*job_open_cb)(void *, struct xport *, const char *port,
	    char **cause);

struct job_params {
	const struct image_set	*set;		/* shared, read-only */
	unsigned		 baud;		/* 0: 115200 */
	enum loader_after	 after;
	int			 force;		/* write a wrong-chip image */
	job_open_cb		 open_cb;	/* NULL: xport_open(); called again
						   to reopen after a reset */
	void			*open_arg;
	int			 boot_ms;	/* listen after the reboot:
						   0 5000 ms, < 0 no check */
	enum loader_before	 before;	/* --before */
	enum chip_usb_kind	 port_kind;	/* UNKNOWN: from the port */
	loader_baud_cb		 baud_cb;	/* emulator: line coding */
	void			*baud_arg;
	const struct loader_stub *stub;		/* --stub: shared, read-only */
	unsigned		 manual_ms;	/* nothing worked: wait this long
						   for BOOT+RST by hand (0: fail) */
	/*
	 * Run on the identified, attached unit before anything is erased
	 * (backup.h: backup_hook keeps nvs and otadata); NULL: none.  A
	 * non-zero return fails the job with *cause, nothing written.
	 */
	int			(*before_write)(void *, struct loader *,
				    const struct job_progress *, char **);
	void			*before_write_arg;
	unsigned		 retries;	/* --retries: more attempts
						   after a transient failure */
};

/* A non-blocking, close-on-exec eventfd for wake-ups; -errno on failure. */
int		 job_wake_open(void);
/* Consume pending wake-ups (they coalesce into one read). */
void		 job_wake_drain(int);

/* A queued job on port; wake_fd is the consumer's eventfd. */
struct job	*job_new(const char *port, const struct job_params *,
		     int wake_fd);
/* Start the worker with every signal blocked; 0 or -errno. */
int		 job_start(struct job *, char **cause);
/* Ask the worker to stop; blocking I/O returns -ECANCELED at once. */
void		 job_cancel(struct job *);
/* Copy the progress snapshot. */
void		 job_get(struct job *, struct job_progress *);
/* True once the job reached VERIFIED, FAILED or CANCELLED. */
int		 job_done(struct job *);
/* Wait for the worker to end (no-op if never started). */
void		 job_join(struct job *);
/* Join and free. */
void		 job_free(struct job *);
const char	*job_port(const struct job *);

/*
 * ESP images in the set (bootloader, apps) without a secure boot v2
 * signature block: a unit with secure boot refuses such a job.
 */
size_t		 job_unsigned_images(const struct image_set *);

const char	*job_state_name(enum job_state);
const char	*job_phase_name(enum job_phase);

#endif
