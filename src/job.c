/*
 * Flash jobs: a worker thread per port runs open, sync, detect, configure,
 * write and verify every region, and reset, publishing a progress snapshot
 * under the job's mutex (held for a few stores, never across I/O) and
 * poking the consumer's eventfd.  Cancellation is an eventfd the transport
 * polls next to the port, so a blocked read returns at once.
 */
#include "config.h"

#include <sys/eventfd.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chip.h"
#include "image.h"
#include "job.h"
#include "loader.h"
#include "transport.h"
#include "util.h"

/* How long a port that went away may take to come back (--retries). */
#define JOB_REAPPEAR_MS	5000

struct job {
	char			*port;
	struct job_params	 params;
	struct loader_region	*regions;	/* views into params.set */
	size_t			 nregions;
	int			 wake_fd;	/* the consumer's */
	int			 cancel_fd;	/* ours */
	atomic_int		 cancelled;
	pthread_t		 thread;
	int			 started;
	int			 joined;

	pthread_mutex_t		 mtx;		/* guards prog */
	struct job_progress	 prog;

	char			 esphome[32];	/* version in the image, or "" */
	size_t			 unsigned_images; /* ESP images, no signature */

	/* Worker-only bookkeeping. */
	uint64_t		 region_base;	/* bytes of earlier regions */
	uint64_t		 t_data;	/* when writing data began */
	uint64_t		 data_base;	/* bytes done at t_data */
};

/* Open the consumer's wake-up eventfd. */
int
job_wake_open(void)
{
	int	fd;

	if ((fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		return (-errno);
	return (fd);
}

/* Read the eventfd counter back to zero. */
void
job_wake_drain(int fd)
{
	uint64_t	n;

	while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		;
}

/* Poke the consumer; a full counter or EAGAIN still means "woken". */
static void
job_wake(struct job *j)
{
	uint64_t	one = 1;

	if (j->wake_fd != -1)
		(void)write(j->wake_fd, &one, sizeof(one));
}

/* Name of a state, for text and JSON. */
const char *
job_state_name(enum job_state st)
{
	static const char *const names[JOB_ST__MAX] = {
		[JOB_ST_QUEUED] = "queued",
		[JOB_ST_RUNNING] = "running",
		[JOB_ST_VERIFIED] = "verified",
		[JOB_ST_FAILED] = "failed",
		[JOB_ST_CANCELLED] = "cancelled",
	};

	if ((unsigned)st >= JOB_ST__MAX)
		return ("unknown");
	return (names[st]);
}

/* Name of a phase, for text and JSON. */
const char *
job_phase_name(enum job_phase ph)
{
	static const char *const names[JOB_PH__MAX] = {
		[JOB_PH_WAITING] = "waiting",
		[JOB_PH_OPENING] = "opening",
		[JOB_PH_CONNECTING] = "connecting",
		[JOB_PH_IDENTIFYING] = "identifying",
		[JOB_PH_CONFIGURING] = "configuring",
		[JOB_PH_ERASING] = "erasing",
		[JOB_PH_WRITING] = "writing",
		[JOB_PH_VERIFYING] = "verifying",
		[JOB_PH_RESETTING] = "resetting",
		[JOB_PH_DONE] = "done",
	};

	if ((unsigned)ph >= JOB_PH__MAX)
		return ("unknown");
	return (names[ph]);
}

/*
 * Does the ESP image at addr carry a secure boot v2 signature block (magic
 * 0xE7, version 2 RSA or 3 ECDSA) on the 4 KiB boundary after it?  -1 when
 * no ESP image starts at addr.
 */
static int
job_image_signed(const struct image_set *set, uint32_t addr)
{
	struct image_header	 h;
	const uint8_t		*p;
	size_t			 avail, sig;

	if ((p = image_at(set, addr, &avail, NULL)) == NULL ||
	    image_parse_header(p, avail, &h) != 0)
		return (-1);
	sig = ((size_t)h.image_len + IMAGE_SECTOR - 1) & ~(size_t)
	    (IMAGE_SECTOR - 1);
	return (sig + 4 <= avail && p[sig] == 0xe7 && (p[sig + 1] == 0x02 ||
	    p[sig + 1] == 0x03) && p[sig + 2] == 0 && p[sig + 3] == 0);
}

/* How many of the job's ESP images (bootloader, apps) are unsigned. */
size_t
job_unsigned_images(const struct image_set *set)
{
	uint32_t	addrs[IMAGE_PART_MAX + 2];
	size_t		i, n, k, count = 0;

	n = image_app_addrs(set, 0x1000, addrs, IMAGE_PART_MAX);
	addrs[n++] = 0x1000;		/* the S2 bootloader */
	for (i = 0; i < set->nregions; i++) {
		for (k = 0; k < n; k++)
			if (addrs[k] == set->regions[i].offset)
				break;
		if (k == n && n < nitems(addrs))
			addrs[n++] = set->regions[i].offset;
	}
	for (i = 0; i < n; i++) {
		for (k = 0; k < i; k++)
			if (addrs[k] == addrs[i])
				break;
		if (k == i && job_image_signed(set, addrs[i]) == 0)
			count++;
	}
	return (count);
}

/* Create a queued job; the image set must outlive it. */
struct job *
job_new(const char *port, const struct job_params *params, int wake_fd)
{
	const struct image_set	*set = params->set;
	struct image_esphome	 esp;
	struct job		*j;
	size_t			 i;

	j = xcalloc(1, sizeof(*j));
	j->port = xstrdup(port);
	j->params = *params;
	j->wake_fd = wake_fd;
	j->cancel_fd = -1;
	atomic_init(&j->cancelled, 0);
	pthread_mutex_init(&j->mtx, NULL);
	j->nregions = set->nregions;
	j->regions = xcalloc(set->nregions, sizeof(*j->regions));
	for (i = 0; i < set->nregions; i++) {
		j->regions[i].offset = set->regions[i].offset;
		j->regions[i].data = set->regions[i].data;
		j->regions[i].len = set->regions[i].len;
		j->regions[i].zdata = set->regions[i].zdata;
		j->regions[i].zlen = set->regions[i].zlen;
		memcpy(j->regions[i].md5hex, set->regions[i].md5hex,
		    sizeof(j->regions[i].md5hex));
	}
	/* The ESPHome version the app in the image will announce. */
	for (i = 0; i < set->nregions && j->esphome[0] == '\0'; i++) {
		if (image_find_esphome(set->regions[i].data,
		    set->regions[i].len, &esp) == 0 && esp.version[0] != '\0')
			snprintf(j->esphome, sizeof(j->esphome), "%s",
			    esp.version);
	}
	j->prog.state = JOB_ST_QUEUED;
	j->prog.phase = JOB_PH_WAITING;
	j->prog.rev_major = j->prog.rev_minor = -1;
	j->unsigned_images = job_unsigned_images(set);
	j->prog.bytes_total = set->total_len;
	j->prog.nregions = (unsigned)set->nregions;
	return (j);
}

/* The port this job writes. */
const char *
job_port(const struct job *j)
{
	return (j->port);
}

/* Copy the snapshot under the lock. */
void
job_get(struct job *j, struct job_progress *out)
{
	pthread_mutex_lock(&j->mtx);
	*out = j->prog;
	pthread_mutex_unlock(&j->mtx);
}

/* Has the job reached an end state? */
int
job_done(struct job *j)
{
	int	done;

	pthread_mutex_lock(&j->mtx);
	done = j->prog.state == JOB_ST_VERIFIED ||
	    j->prog.state == JOB_ST_FAILED ||
	    j->prog.state == JOB_ST_CANCELLED;
	pthread_mutex_unlock(&j->mtx);
	return (done);
}

/* Enter a phase and tell the consumer. */
static void
job_phase(struct job *j, enum job_phase ph)
{
	pthread_mutex_lock(&j->mtx);
	if (j->prog.phase != ph) {
		j->prog.phase = ph;
		j->prog.gen++;
	}
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
}

/* Loader progress: flash bytes of the current region, as they land. */
static void
job_progress_cb(void *arg, enum loader_phase lph, uint32_t addr,
    size_t done, size_t len)
{
	struct job	*j = arg;
	enum job_phase	 ph;
	uint64_t	 now, total;

	ph = lph == LOADER_PH_ERASING ? JOB_PH_ERASING :
	    lph == LOADER_PH_WRITING ? JOB_PH_WRITING : JOB_PH_VERIFYING;
	now = util_now_ms();
	total = j->region_base + done;
	if (lph == LOADER_PH_ERASING && j->t_data == 0) {
		/* The rate counts from the first erase: what a user waits. */
		j->t_data = now;
		j->data_base = total;
	}
	pthread_mutex_lock(&j->mtx);
	if (j->prog.phase != ph)
		j->prog.gen++;
	j->prog.phase = ph;
	j->prog.addr = addr;
	j->prog.bytes_done = total;
	if (lph == LOADER_PH_WRITING && now > j->t_data)
		j->prog.rate = (double)(total - j->data_base) * 1000.0 /
		    (double)(now - j->t_data);
	pthread_mutex_unlock(&j->mtx);
	(void)len;
	job_wake(j);
}

/* Record the end state with a reason (NULL for success). */
static void
job_end(struct job *j, int error, const char *why)
{
	pthread_mutex_lock(&j->mtx);
	if (error == 0) {
		j->prog.state = JOB_ST_VERIFIED;
		j->prog.phase = JOB_PH_DONE;
	} else if (error == -ECANCELED || atomic_load(&j->cancelled))
		j->prog.state = JOB_ST_CANCELLED;
	else
		j->prog.state = JOB_ST_FAILED;
	j->prog.error = error;
	if (why != NULL)
		snprintf(j->prog.errmsg, sizeof(j->prog.errmsg), "%s", why);
	j->prog.t_end = util_now_ms();
	j->prog.gen++;
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
}

/* Publish what detection learned about the unit. */
static void
job_identity(struct job *j, const struct loader *l)
{
	pthread_mutex_lock(&j->mtx);
	snprintf(j->prog.chip, sizeof(j->prog.chip), "%s", l->package);
	memcpy(j->prog.mac, l->mac, sizeof(j->prog.mac));
	j->prog.have_mac = l->have_mac;
	j->prog.usb_otg = l->usb_otg;
	j->prog.flash_size = l->flash_size;
	if (l->chip != NULL) {
		j->prog.rev_major = l->rev_major;
		j->prog.rev_minor = l->rev_minor;
	}
	j->prog.flash_id = l->flash_id;
	j->prog.crystal_mhz = l->crystal_mhz;
	j->prog.sec = l->sec;
	if (l->sec.valid)
		loader_security_text(&l->sec, j->prog.security,
		    sizeof(j->prog.security));
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
}

/* Add a warning that does not fail the job. */
static void
job_note(struct job *j, const char *note)
{
	size_t	len;

	pthread_mutex_lock(&j->mtx);
	len = strlen(j->prog.note);
	snprintf(j->prog.note + len, sizeof(j->prog.note) - len, "%s%s",
	    len > 0 ? "; " : "", note);
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
}

/*
 * Refuse a unit the image does not suit, before anything is erased: the
 * wrong chip (unless forced) or a flash too small for the last region.
 */
static int
job_check_unit(struct job *j, struct loader *l, char **cause)
{
	int	error;

	if ((error = loader_security_check(&l->sec, j->unsigned_images,
	    cause)) != 0)
		return (error);
	if ((error = image_check_chip(j->params.set, l->chip,
	    j->params.force, cause)) != 0)
		return (error);
	if (l->flash_size != 0 &&
	    (error = image_check_flash(j->params.set, l->flash_size,
	    cause)) != 0)
		return (error);
	return (0);
}

/* Reopen through the job's own open hook; the kind from its USB ids. */
static int
job_reopen_cb(void *arg, struct xport *xp, const char *path,
    enum chip_usb_kind *kind, char **cause)
{
	struct job	*j = arg;
	uint16_t	 vid, pid;
	int		 error;

	(void)path;
	*kind = USB_KIND_UNKNOWN;
	error = j->params.open_cb(j->params.open_arg, xp, j->port, cause);
	if (error == 0 && xport_usb_id(xp, &vid, &pid) == 0)
		*kind = chip_usb_classify(vid, pid);
	return (error);
}

/* After the reboot: how sure are we the new firmware runs? */
static void
job_boot_check(struct job *j, struct loader *l)
{
	struct loader_boot_opts	 o;
	enum loader_boot	 result = LOADER_BOOT_NONE;
	char			 text[LOADER_BOOT_TEXT];

	memset(&o, 0, sizeof(o));
	o.wait_ms = (unsigned)j->params.boot_ms;
	o.esphome = j->esphome;
	if (j->params.open_cb != NULL) {
		o.reopen = job_reopen_cb;
		o.reopen_arg = j;
	}
	if (loader_boot_check(l, &o, &result, text) != 0) {
		job_note(j, "cancelled during the boot check");
		return;
	}
	pthread_mutex_lock(&j->mtx);
	j->prog.boot_result = result;
	snprintf(j->prog.boot, sizeof(j->prog.boot), "%s", text);
	j->prog.gen++;
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
}

/* The consumer's step before erasing (settings backup); ends the job on
 * failure, before anything is written. */
static int
job_before_write(struct job *j, struct loader *l)
{
	struct job_progress	 p;
	char			*cause = NULL;
	int			 error;

	job_get(j, &p);
	error = j->params.before_write(j->params.before_write_arg, l, &p,
	    &cause);
	if (error != 0) {
		job_end(j, error, cause != NULL ? cause : strerror(-error));
		free(cause);
	}
	return (error);
}

/* Set up a loader over xp with the job's hooks and tunables. */
static void
job_loader_init(struct job *j, struct loader *l, struct xport *xp)
{
	loader_init(l, xp);
	l->progress = job_progress_cb;
	l->progress_arg = j;
	l->before = j->params.before;
	l->port_kind = j->params.port_kind;
	l->baud_cb = j->params.baud_cb;
	l->baud_arg = j->params.baud_arg;
	if (j->params.open_cb != NULL) {
		l->reopen = job_reopen_cb;
		l->reopen_arg = j;
	}
}

/*
 * Is a failed region worth another attempt (--retries)?  Transient: a
 * timeout, a lost or damaged reply, the port gone (re-enumerated), a ROM
 * checksum error.  An MD5 mismatch once (flash can be flaky; a fault that
 * persists fails again).  Refusals and cancellation never.
 */
static int
job_transient(const struct loader *l, int error, unsigned *md5_tries)
{
	if (error == -ETIMEDOUT || error == -ENODEV || error == -EBADMSG)
		return (1);
	if (error == -EPROTO && l->last_status != 0 &&
	    l->last_error == PROTO_E_CRC)
		return (1);
	if (error == -EIO && (*md5_tries)++ == 0)
		return (1);
	return (0);
}

/*
 * Before another attempt: close the port, open the same path again (it
 * may be re-enumerating: wait for it up to JOB_REAPPEAR_MS), connect,
 * identify and attach as the first time.  0, or -errno with *cause.
 */
static int
job_reconnect(struct job *j, struct loader *l, struct xport *xp,
    char **cause)
{
	struct pollfd	pfd;
	uint64_t	deadline;
	unsigned	retries = l->retries;
	char		*why = NULL;
	int		error;

	loader_free(l);
	xport_close(xp);
	job_phase(j, JOB_PH_OPENING);
	deadline = util_now_ms() + JOB_REAPPEAR_MS;
	for (;;) {
		xport_init(xp, j->cancel_fd);
		if (j->params.open_cb != NULL)
			error = j->params.open_cb(j->params.open_arg, xp,
			    j->port, &why);
		else
			error = xport_open(xp, j->port, &why);
		if (error == 0)
			break;
		if (util_ms_left(deadline) == 0 || error == -EBUSY ||
		    error == -EACCES) {
			*cause = xasprintf("reconnecting: %s", why != NULL ?
			    why : strerror(-error));
			free(why);
			return (error);
		}
		free(why);
		why = NULL;
		/* Wait for the port to come back, or for a cancel. */
		pfd.fd = j->cancel_fd;
		pfd.events = POLLIN;
		if (poll(&pfd, j->cancel_fd != -1 ? 1 : 0, 100) > 0 ||
		    atomic_load(&j->cancelled)) {
			*cause = xstrdup("cancelled");
			return (-ECANCELED);
		}
	}
	job_loader_init(j, l, xp);
	l->retries = retries;
	job_phase(j, JOB_PH_CONNECTING);
	if ((error = loader_connect(l)) == 0 &&
	    (error = loader_detect(l)) == 0 &&
	    (j->params.stub == NULL ||
	    (error = loader_stub_run(l, j->params.stub)) == 0) &&
	    (error = loader_attach(l)) == 0)
		error = loader_set_baud(l, j->params.baud);
	if (error != 0)
		*cause = xasprintf("reconnecting: %s", loader_cause(l));
	return (error);
}

/* The phase the job has reached, read under its lock. */
static enum job_phase
job_phase_get(struct job *j)
{
	enum job_phase	ph;

	pthread_mutex_lock(&j->mtx);
	ph = j->prog.phase;
	pthread_mutex_unlock(&j->mtx);
	return (ph);
}

/*
 * End a failed job with the loader's cause first (the row shows its
 * start), how many attempts it took, and what to do where the cause
 * alone does not say it.
 */
static void
job_fail(struct job *j, const struct loader *l, int error, unsigned attempts)
{
	char		 tries[48] = "", msg[640];
	const char	*advice = "";

	if (attempts > 1)
		snprintf(tries, sizeof(tries), " (gave up after %u attempts)",
		    attempts);
	/* The chip's own MD5 disagrees: the flash did not keep the data. */
	if (error == -EIO)
		advice = "; the flash does not keep what is written: try "
		    "another hub port or cable, else set the unit aside";
	/* Lost mid-write: the unit itself may well be fine. */
	else if ((error == -ETIMEDOUT || error == -ENODEV) &&
	    job_phase_get(j) >= JOB_PH_ERASING)
		advice = error == -ENODEV ? "; the unit left the bus after "
		    "its write began: check its cable and hub port, plug it "
		    "back in and flash it again" : "; the unit stopped "
		    "answering after its write began: unplug it, plug it "
		    "back in and flash it again";
	snprintf(msg, sizeof(msg), "%s%s%s", loader_cause(l), tries, advice);
	job_end(j, error, msg);
}

/* Everything one unit goes through, on the worker thread. */
static void *
job_main(void *arg)
{
	struct job	*j = arg;
	struct xport	 xp;
	struct loader	 l;
	char		*cause = NULL, *why = NULL, note[160], msg[640];
	size_t		 i;
	unsigned	 attempts = 1, md5_tries = 0;
	int		 error;

	pthread_mutex_lock(&j->mtx);
	j->prog.state = JOB_ST_RUNNING;
	j->prog.t_start = util_now_ms();
	j->prog.gen++;
	pthread_mutex_unlock(&j->mtx);

	job_phase(j, JOB_PH_OPENING);
	xport_init(&xp, j->cancel_fd);
	if (j->params.open_cb != NULL)
		error = j->params.open_cb(j->params.open_arg, &xp, j->port,
		    &cause);
	else
		error = xport_open(&xp, j->port, &cause);
	if (error != 0) {
		job_end(j, error, cause != NULL ? cause : strerror(-error));
		free(cause);
		return (NULL);
	}
	job_loader_init(j, &l, &xp);

	job_phase(j, JOB_PH_CONNECTING);
	error = loader_connect(&l);
	pthread_mutex_lock(&j->mtx);
	snprintf(j->prog.how, sizeof(j->prog.how), "%s", l.how);
	j->prog.need_manual = l.need_manual;
	if (l.need_manual && j->params.manual_ms > 0)
		snprintf(j->prog.note, sizeof(j->prog.note), "%s",
		    "waiting: hold BOOT, press RST, release BOOT");
	j->prog.gen++;
	pthread_mutex_unlock(&j->mtx);
	job_wake(j);
	if (error == -ETIMEDOUT && l.need_manual && j->params.manual_ms > 0) {
		/* The row shows the instruction; go on once the ROM is up. */
		if ((error = loader_wait_download(&l,
		    j->params.manual_ms)) == -ETIMEDOUT) {
			snprintf(note, sizeof(note), "the unit did not come up "
			    "in download mode within %u s; hold BOOT, press "
			    "RST, release BOOT and retry",
			    j->params.manual_ms / 1000);
			job_end(j, error, note);
			goto out;
		} else if (error != 0)
			goto fail;
		pthread_mutex_lock(&j->mtx);
		snprintf(j->prog.how, sizeof(j->prog.how), "%s", l.how);
		j->prog.need_manual = 0;
		j->prog.note[0] = '\0';
		j->prog.gen++;
		pthread_mutex_unlock(&j->mtx);
		job_wake(j);
	}
	if (error != 0)
		goto fail;
	job_phase(j, JOB_PH_IDENTIFYING);
	error = loader_detect(&l);
	job_identity(j, &l);
	if (error != 0)
		goto fail;
	job_phase(j, JOB_PH_CONFIGURING);
	if (j->params.stub != NULL) {
		if ((error = loader_stub_run(&l, j->params.stub)) != 0)
			goto fail;
		pthread_mutex_lock(&j->mtx);
		j->prog.stub = 1;
		pthread_mutex_unlock(&j->mtx);
	}
	if ((error = loader_attach(&l)) != 0)
		goto fail;
	job_identity(j, &l);
	if ((error = job_check_unit(j, &l, &cause)) != 0) {
		job_end(j, error, cause);
		free(cause);
		goto out;
	}
	if ((error = loader_set_baud(&l, j->params.baud)) != 0)
		goto fail;
	if (j->params.before_write != NULL &&
	    job_before_write(j, &l) != 0)
		goto out;

	for (i = 0; i < j->nregions; i++) {
		pthread_mutex_lock(&j->mtx);
		j->prog.region = (unsigned)i;
		pthread_mutex_unlock(&j->mtx);
		if ((error = loader_write(&l, &j->regions[i])) != 0 ||
		    (error = loader_verify(&l, &j->regions[i])) != 0) {
			/* --retries: reconnect and write this region again. */
			if (attempts > j->params.retries ||
			    !job_transient(&l, error, &md5_tries))
				goto fail;
			attempts++;
			free(why);
			why = xstrdup(loader_cause(&l));
			if ((error = job_reconnect(j, &l, &xp, &cause)) != 0) {
				/* The cause first: the row shows its start. */
				snprintf(msg, sizeof(msg), "%s (gave up after %u "
				    "attempts; the attempt before: %s)", cause,
				    attempts, why);
				job_end(j, error, msg);
				free(cause);
				goto out;
			}
			i--;
			continue;
		}
		j->region_base += j->regions[i].len;
	}
	/* A stub answers FLASH_DEFL_END(1) once everything is written. */
	if ((error = loader_stub_end(&l)) != 0)
		goto fail;

	if (l.retries > 0) {
		snprintf(note, sizeof(note), "%u block%s had to be sent again "
		    "(check the cable and hub)", l.retries,
		    l.retries == 1 ? "" : "s");
		job_note(j, note);
	}
	job_phase(j, JOB_PH_RESETTING);
	/* Everything is written and verified: a failed reset is a note. */
	error = loader_finish(&l, j->params.after);
	if (error == -ECANCELED)
		job_note(j, "cancelled before the reset: the unit is still in "
		    "download mode");
	else if (error != 0)
		job_note(j, loader_cause(&l));
	else if (j->params.after == LOADER_AFTER_REBOOT &&
	    j->params.boot_ms >= 0)
		job_boot_check(j, &l);
	job_end(j, 0, NULL);
	goto out;

fail:
	job_fail(j, &l, error, attempts);
out:
	free(why);
	loader_free(&l);
	xport_close(&xp);
	return (NULL);
}

/* Create the cancel eventfd and the worker, which inherits no signals. */
int
job_start(struct job *j, char **cause)
{
	sigset_t	all, old;
	int		error;

	if (j->started)
		return (0);
	if (atomic_load(&j->cancelled))
		return (-ECANCELED);
	if ((j->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		error = -errno;
		*cause = xasprintf("%s: eventfd: %s", j->port, strerror(errno));
		return (error);
	}
	/* Signals belong to the consumer's poll loop, never to workers. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&j->thread, NULL, job_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		*cause = xasprintf("%s: cannot start a worker: %s", j->port,
		    strerror(error));
		close(j->cancel_fd);
		j->cancel_fd = -1;
		return (-error);
	}
	j->started = 1;
	return (0);
}

/*
 * Stop the job: a running worker sees the eventfd in its next (or
 * current) poll; a job that never started ends here as cancelled.
 */
void
job_cancel(struct job *j)
{
	uint64_t	one = 1;

	atomic_store(&j->cancelled, 1);
	if (j->cancel_fd != -1)
		(void)write(j->cancel_fd, &one, sizeof(one));
	if (!j->started) {
		pthread_mutex_lock(&j->mtx);
		if (j->prog.state == JOB_ST_QUEUED) {
			j->prog.state = JOB_ST_CANCELLED;
			j->prog.error = -ECANCELED;
			snprintf(j->prog.errmsg, sizeof(j->prog.errmsg),
			    "cancelled before it started");
			j->prog.gen++;
		}
		pthread_mutex_unlock(&j->mtx);
		job_wake(j);
	}
}

/* Wait for the worker thread to finish. */
void
job_join(struct job *j)
{
	if (j->started && !j->joined) {
		pthread_join(j->thread, NULL);
		j->joined = 1;
	}
}

/* Join the worker and free the job. */
void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	job_join(j);
	if (j->cancel_fd != -1)
		close(j->cancel_fd);
	pthread_mutex_destroy(&j->mtx);
	free(j->regions);
	free(j->port);
	free(j);
}
