/*
 * The bench's flash jobs (bench.h): one worker per port, started when the
 * registry asks, their snapshots copied into the registry when a worker
 * wakes the loop, a unit record written when each ends, and the
 * simulated technician told when a unit is finished.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-private.h"
#include "flog.h"
#include "hotplug.h"
#include "image.h"
#include "job.h"
#include "registry.h"
#include "simfleet.h"
#include "transport.h"
#include "ui.h"
#include "util.h"

/* The live job of a row, or NULL. */
static struct bench_job *
bench_job_find(struct bench *b, int row)
{
	size_t	i;

	for (i = 0; i < b->njobs; i++) {
		if (b->jobs[i].row == row)
			return (&b->jobs[i]);
	}
	return (NULL);
}

/* Start a flash job on a row's port. */
static void
bench_job_start(struct bench *b, int row, uint64_t now)
{
	const struct port_info	*pi;
	struct bench_job	*bj;
	struct bench_row	*r;
	struct job		*job;
	char			*cause = NULL;

	if ((pi = reg_row_port(b->reg, row)) == NULL)
		return;
	if (bench_job_find(b, row) != NULL) {
		reg_log(b->reg, now, "slot %d: a job is still running there",
		    row + 1);
		return;
	}
	r = bench_row(b, row);
	r->phase[0] = r->error[0] = '\0';
	r->last.note[0] = r->last.boot[0] = '\0';
	job = job_new(pi->devnode, &b->params, b->wake_fd);
	if (job_start(job, &cause) != 0) {
		snprintf(r->error, sizeof(r->error), "%s", cause != NULL ?
		    cause : "cannot start a worker");
		reg_job_failed(b->reg, row, r->error, now);
		free(cause);
		job_free(job);
		return;
	}
	b->jobs = xrealloc(b->jobs, (b->njobs + 1) * sizeof(*b->jobs));
	bj = &b->jobs[b->njobs++];
	memset(bj, 0, sizeof(*bj));
	bj->job = job;
	bj->row = row;
	bj->gen = (unsigned)-1;
	bj->phase = REG_ST_QUEUED;
	reg_set_job(b->reg, row, job);
	bench_trace(b, "job", row + 1, NULL);
}

/* Carry out what the registry asks for. */
void
bench_job_actions(struct bench *b, uint64_t now)
{
	struct reg_action	 a;
	struct bench_job	*bj;

	while (reg_next_action(b->reg, &a)) {
		switch (a.act) {
		case REG_ACT_START_JOB:
			bench_job_start(b, a.row, now);
			break;
		case REG_ACT_CANCEL_JOB:
			if ((bj = bench_job_find(b, a.row)) != NULL)
				job_cancel(bj->job);
			break;
		case REG_ACT_ENTER_DL:
			if (b->sf == NULL)
				ui_message(b->ui, now, "slot %d: put the unit "
				    "in download mode: %s", a.row + 1,
				    REG_WAIT_DL_HINT);
			else
				ui_message(b->ui, now, "slot %d: press b for "
				    "BOOT+RST (or wait: the simulated "
				    "operator does it)", a.row + 1);
			break;
		case REG_ACT_PORT_GONE:
			reg_log(b->reg, now, "slot %d: the unit went away "
			    "during its job; the job will fail", a.row + 1);
			break;
		case REG_ACT_REAPPEARED:
			reg_log(b->reg, now, "slot %d: the unit is back",
			    a.row + 1);
			break;
		default:
			break;
		}
		ui_poke(b->ui, 0);
	}
}

/* The registry phase a job phase counts as (never going back). */
static enum reg_state
bench_job_phase(const struct job_progress *p)
{
	switch (p->phase) {
	case JOB_PH_ERASING:
	case JOB_PH_WRITING:
		return (REG_ST_WRITING);
	case JOB_PH_VERIFYING:
		/* Verifying one region of several: more writing follows. */
		return (p->region + 1 < p->nregions ? REG_ST_WRITING :
		    REG_ST_VERIFYING);
	case JOB_PH_RESETTING:
	case JOB_PH_DONE:
		return (REG_ST_REBOOTING);
	default:
		return (REG_ST_CONNECTING);
	}
}

/*
 * Append the unit record of a job that ended on row.  Failing to record
 * is said in the event log but changes nothing else.
 */
static void
bench_job_record(struct bench *b, int row, const char *port,
    const struct job_progress *p, uint64_t now)
{
	const struct port_info	*pi;
	struct flog_unit	*u;
	char			*cause = NULL;

	if (b->flog == NULL)
		return;
	u = xmalloc(sizeof(*u));
	flog_unit_from_job(u, port, p, b->set, b->interrupted);
	if ((pi = reg_row_port(b->reg, row)) != NULL) {
		snprintf(u->location, sizeof(u->location), "%s",
		    pi->location);
		snprintf(u->usb_serial, sizeof(u->usb_serial), "%s",
		    pi->serial);
	}
	if (flog_append_job(b->flog, u, &cause) != 0) {
		bench_warn(b, now, "slot %d: %s", row + 1, cause);
		free(cause);
	}
	free(u);
}

/*
 * The job file's boot check: a verified unit whose boot text lacks the
 * pattern is turned into a failed one, here and in its record.
 */
static void
bench_job_boot_check(struct bench *b, struct job_progress *p)
{
	const char	*want = b->jf.boot_check;

	if (want == NULL || p->state != JOB_ST_VERIFIED ||
	    strstr(p->boot, want) != NULL)
		return;
	p->state = JOB_ST_FAILED;
	p->error = -EPROTO;
	snprintf(p->errmsg, sizeof(p->errmsg), "boot check: expected \"%s\", "
	    "saw \"%s\"", want, p->boot[0] != '\0' ? p->boot :
	    "no boot report");
}

/* Tell the simulated technician a unit finished (--total). */
static void
bench_job_sim_finished(struct bench *b, int row, uint64_t now)
{
	const struct port_info	*pi;

	if (b->sf != NULL && (pi = reg_row_port(b->reg, row)) != NULL)
		simfleet_finished(b->sf, pi->location, now);
}

/* Copy one job's snapshot into the registry; 1 when the job ended. */
static int
bench_job_collect_one(struct bench *b, struct bench_job *bj, uint64_t now)
{
	struct job_progress	 p;
	struct bench_row	*r = bench_row(b, bj->row);
	enum reg_state		 ph;
	char			 text[64];

	job_get(bj->job, &p);
	if (p.gen == bj->gen && p.bytes_done == bj->bytes)
		return (0);
	bench_job_boot_check(b, &p);
	bj->gen = p.gen;
	bj->bytes = p.bytes_done;
	if (p.chip[0] != '\0' && (!bj->told_chip ||
	    (p.have_mac && !bj->told_mac))) {
		reg_job_identity(b->reg, bj->row, p.chip, p.have_mac ? p.mac :
		    NULL, now);
		bj->told_chip = 1;
		bj->told_mac = p.have_mac;
	}
	r->last = p;
	snprintf(r->phase, sizeof(r->phase), "%s", job_phase_name(p.phase));
	if (p.state == JOB_ST_RUNNING || p.state == JOB_ST_VERIFIED) {
		ph = bench_job_phase(&p);
		if (ph < bj->phase)
			ph = bj->phase;
		bj->phase = ph;
		reg_job_phase(b->reg, bj->row, ph, p.bytes_done,
		    p.bytes_total, now);
		if (!bj->told_write && p.phase >= JOB_PH_ERASING &&
		    p.phase <= JOB_PH_DONE) {
			bj->told_write = 1;
			bench_trace(b, "write", bj->row + 1, NULL);
		}
	}
	switch (p.state) {
	case JOB_ST_VERIFIED:
		reg_job_done(b->reg, bj->row, now);
		bench_trace(b, "done", bj->row + 1, NULL);
		bench_job_sim_finished(b, bj->row, now);
		break;
	case JOB_ST_FAILED:
	case JOB_ST_CANCELLED:
		snprintf(r->error, sizeof(r->error), "%s", p.errmsg[0] != '\0' ?
		    p.errmsg : job_state_name(p.state));
		reg_job_failed(b->reg, bj->row, r->error, now);
		/* Cancelled: the registry's reason says by whom. */
		if (p.state == JOB_ST_CANCELLED)
			r->error[0] = '\0';
		snprintf(text, sizeof(text), "%s", job_state_name(p.state));
		bench_trace(b, "failed", bj->row + 1, text);
		/* A unit the technician cancelled stays for them. */
		if (p.state == JOB_ST_FAILED)
			bench_job_sim_finished(b, bj->row, now);
		break;
	default:
		return (0);
	}
	bench_job_record(b, bj->row, job_port(bj->job), &p, now);
	r->phase[0] = '\0';
	return (1);
}

/* Copy every job's snapshot in; free the jobs that ended. */
void
bench_job_collect(struct bench *b, uint64_t now)
{
	size_t	i = 0;

	while (i < b->njobs) {
		if (bench_job_collect_one(b, &b->jobs[i], now)) {
			reg_set_job(b->reg, b->jobs[i].row, NULL);
			job_free(b->jobs[i].job);
			b->jobs[i] = b->jobs[--b->njobs];
			continue;
		}
		i++;
	}
}

/*
 * Cancel every job through the registry (the rows say "cancelled by
 * operator"), then wait for all of them; their ends are recorded.
 */
void
bench_job_cancel_all(struct bench *b)
{
	uint64_t	now = util_now_ms();
	size_t		i;

	for (i = 0; i < b->njobs; i++)
		(void)reg_cancel(b->reg, b->jobs[i].row, now, NULL);
	bench_job_actions(b, now);
	for (i = 0; i < b->njobs; i++)
		job_cancel(b->jobs[i].job);
	for (i = 0; i < b->njobs; i++)
		job_join(b->jobs[i].job);
	bench_job_collect(b, util_now_ms());
}
