/*
 * What bench.c (the controller: loop, commands, set-up) shares with
 * bench-job.c (the flash jobs it runs): the bench context and the few
 * helpers both use.  Not part of the interface; that is include/bench.h.
 */
#ifndef ESPF_BENCH_PRIVATE_H
#define ESPF_BENCH_PRIVATE_H

#include <stdint.h>
#include <stdio.h>

#include "image.h"
#include "job.h"
#include "jobfile.h"
#include "registry.h"
#include "util.h"

struct flog;
struct hotplug;
struct simfleet;
struct ui;

/* A running flash job and what was last copied from it. */
struct bench_job {
	struct job	*job;
	int		 row;
	unsigned	 gen;
	uint64_t	 bytes;
	enum reg_state	 phase;		/* highest reported to the registry */
	int		 told_chip;
	int		 told_mac;
	int		 told_write;
};

/* What the registry does not keep about a row (details view). */
struct bench_row {
	struct job_progress last;	/* its job's last snapshot: the chip,
					   note and boot check for details */
	char		 phase[32];
	char		 error[320];
	char		 holder[128];	/* last "port in use by" warning */
};

struct bench {
	struct reg		*reg;
	struct ui		*ui;
	struct hotplug		*hp;
	struct simfleet		*sf;
	struct image_set	*set;
	struct job_params	 params;
	int			 wake_fd;

	struct bench_job	*jobs;
	size_t			 njobs;
	struct bench_row	*rows;
	int			 nrows;

	FILE			*trace;
	struct flog		*flog;		/* unit records; NULL: none */
	struct jobfile		 jf;		/* --job; jf.path NULL: none */
	int			 locked;	/* --lock: no policy changes */
	int			 interrupted;	/* a signal or q ended it */
	int			 exit_when_done;
	int			 quit;
	unsigned		 sim_units;
};

/* bench.c */
/* One trace line: monotonic microseconds, an event, a slot, a detail. */
void	bench_trace(struct bench *, const char *what, int slot,
	    const char *detail);
/* The extras of row (grown as rows appear). */
struct bench_row *bench_row(struct bench *, int row);
/* Log a warning and show it in the message line. */
void	bench_warn(struct bench *, uint64_t now, const char *fmt, ...)
	    printflike(3, 4);

/* bench-job.c */
/* Carry out what the registry asks for: start and cancel jobs. */
void	bench_job_actions(struct bench *, uint64_t now);
/* Copy every job's snapshot into the registry; reap ended jobs. */
void	bench_job_collect(struct bench *, uint64_t now);
/* Cancel every job, wait for all of them, record their ends. */
void	bench_job_cancel_all(struct bench *);

#endif
