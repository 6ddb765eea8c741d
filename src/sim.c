/*
 * N emulated units on pseudo-terminals, served by one thread with one
 * ppoll() loop (PROTOCOL.md section 11; contract in espfleet-sim(1)).
 *
 * Per unit: a pty master (ours), the slave held open by us too so the
 * master never sees a hangup when a client closes and reopens DIR/ttyK, a
 * raw termios set from the master side, and the flash file mapped shared
 * as the emulator's flash, so DIR/flashK.bin is current the moment a
 * command has been handled.  Replies wait in the emulator until they are
 * due; the loop sleeps until the earliest due time of any unit, so a slow
 * unit never holds up the others.
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"
#include "sim.h"
#include "util.h"

#define SIM_READ_BUF	65536
#define SIM_OUT_BUF	4096

struct sim_unit {
	unsigned		 index;
	struct emu		*emu;
	int			 master;
	int			 slave;		/* kept open: no hangups */
	char			*tty;		/* DIR/ttyK */
	char			*flash_path;	/* DIR/flashK.bin */
	uint8_t			*flash;		/* shared mapping of the file */
	uint32_t		 flash_size;
	uint8_t			 mac[6];
	uint8_t			 out[SIM_OUT_BUF]; /* drained, not written */
	size_t			 out_off;
	size_t			 out_len;
	int			 linked;	/* DIR/ttyK is ours */
	int			 gone;
	uint64_t		 gen;		/* emu generation of this pty */
	uint64_t		 gen_base;	/* generations of units before */
	struct emu_config	 ec;		/* to build a replacement */
	struct emu_fault	*faults;	/* ec.faults: the slot's */
	unsigned		 replaced;	/* units swapped in so far */
	int			 press;		/* 'b' BOOT+RST, 'r' RST, 'n' new
						   unit, 'a' new unit in its app
						   (atomic) */
	struct sim_unit_stats	 snap;		/* under sim.mtx */
};

struct sim {
	struct sim_unit		*u;
	unsigned		 n;
	char			*dir;
	int			 wake[2];	/* self-pipe: 'q'uit, 's'tats */
	uint64_t		 seed;
	uint8_t			*app;		/* what a new unit's flash holds
						   when it arrives in its app */
	size_t			 app_len;
	int			 stats_stderr;
	unsigned		 stats_gen;
	uint8_t			*rbuf;
	pthread_mutex_t		 mtx;
	pthread_t		 thread;
	int			 started;
	int			 run_rc;
};

/* Espressif OUI 7c:df:a1, then 24 bits that differ for every unit. */
void
sim_mac_for(uint64_t seed, unsigned k, uint8_t mac[6])
{
	uint32_t	low;

	low = (uint32_t)((util_mix64(seed) + k) & 0xffffff);
	mac[0] = 0x7c;
	mac[1] = 0xdf;
	mac[2] = 0xa1;
	mac[3] = (uint8_t)(low >> 16);
	mac[4] = (uint8_t)(low >> 8);
	mac[5] = (uint8_t)low;
}

/* Set *cause to "message: strerror(errno)" and return -errno. */
static int printflike(2, 3)
sim_fail(char **cause, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;
	int	 error = errno;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	*cause = xasprintf("%s: %s", msg, strerror(error));
	free(msg);
	return (-error);
}

/* Close a unit's pty and remove its symlink (the flash file stays). */
static void
sim_unit_close(struct sim_unit *u)
{
	if (u->master >= 0)
		close(u->master);
	if (u->slave >= 0)
		close(u->slave);
	u->master = u->slave = -1;
	if (u->linked)
		unlink(u->tty);
	u->linked = 0;
}

/* Release everything of one unit. */
static void
sim_unit_free(struct sim_unit *u)
{
	if (u->tty == NULL)
		return;		/* never set up */
	sim_unit_close(u);
	emu_free(u->emu);
	free(u->faults);
	if (u->flash != NULL)
		munmap(u->flash, u->flash_size);
	free(u->tty);
	free(u->flash_path);
	u->tty = NULL;
}

/* Open a pty pair in raw mode (set through the master) with its name. */
static int
sim_pty(struct sim_unit *u, char *name, size_t cap, char **cause)
{
	struct termios	tio;
	int		flags;

	if ((u->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
		return (sim_fail(cause, "cannot open a pseudo-terminal (is "
		    "/dev/ptmx there?)"));
	if (grantpt(u->master) != 0 || unlockpt(u->master) != 0)
		return (sim_fail(cause, "cannot set up a pseudo-terminal"));
	if ((errno = ptsname_r(u->master, name, cap)) != 0)
		return (sim_fail(cause, "cannot name a pseudo-terminal"));
	if ((u->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
		return (sim_fail(cause, "cannot open %s", name));
	/* Raw, no echo: on Linux the master's termios is the slave's. */
	if (tcgetattr(u->master, &tio) != 0)
		return (sim_fail(cause, "tcgetattr on the pty of %s", name));
	cfmakeraw(&tio);
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (tcsetattr(u->master, TCSANOW, &tio) != 0)
		return (sim_fail(cause, "tcsetattr on the pty of %s", name));
	flags = fcntl(u->master, F_GETFL);
	if (flags < 0 || fcntl(u->master, F_SETFL, flags | O_NONBLOCK) < 0)
		return (sim_fail(cause, "cannot make the pty of %s "
		    "non-blocking", name));
	return (0);
}

/* Point DIR/ttyK at the slave, replacing a stale symlink only. */
static int
sim_link(struct sim_unit *u, const char *target, char **cause)
{
	struct stat	sb;

	if (lstat(u->tty, &sb) == 0) {
		if (!S_ISLNK(sb.st_mode)) {
			*cause = xasprintf("%s exists and is not a symlink; "
			    "remove it or use another --dir", u->tty);
			return (-EEXIST);
		}
		unlink(u->tty);
	}
	if (symlink(target, u->tty) != 0)
		return (sim_fail(cause, "cannot create %s", u->tty));
	u->linked = 1;
	return (0);
}

/* Create DIR/flashK.bin, map it shared and fill it with 0xFF. */
static int
sim_flash(struct sim_unit *u, char **cause)
{
	void	*p;
	int	 fd, error;

	fd = open(u->flash_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644);
	if (fd < 0)
		return (sim_fail(cause, "cannot create %s", u->flash_path));
	if (ftruncate(fd, u->flash_size) != 0) {
		error = errno;
		close(fd);
		*cause = xasprintf("cannot size %s to %u bytes: %s",
		    u->flash_path, u->flash_size, strerror(error));
		return (-error);
	}
	p = mmap(NULL, u->flash_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0);
	error = errno;
	close(fd);
	if (p == MAP_FAILED) {
		*cause = xasprintf("cannot map %s: %s", u->flash_path,
		    strerror(error));
		return (-error);
	}
	u->flash = p;
	memset(u->flash, 0xff, u->flash_size);
	return (0);
}

/* Set up unit k: pty, symlink, flash file, emulator. */
static int
sim_unit_new(struct sim *s, const struct sim_config *cfg, unsigned k,
    char **cause)
{
	struct sim_unit		*u = &s->u[k];
	struct emu_config	 ec;
	struct emu_fault	*mine;
	char			 pts[128];
	size_t			 i, nmine = 0;
	int			 rc;

	u->index = k;
	u->master = u->slave = -1;
	u->tty = xasprintf("%s/tty%u", s->dir, k);
	u->flash_path = xasprintf("%s/flash%u.bin", s->dir, k);
	u->flash_size = cfg->flash_size != 0 ? cfg->flash_size :
	    4u * 1024 * 1024;
	sim_mac_for(cfg->seed, k, u->mac);

	if ((rc = sim_pty(u, pts, sizeof(pts), cause)) != 0)
		return (rc);
	if ((rc = sim_flash(u, cause)) != 0)
		return (rc);

	mine = u->faults = xcalloc(cfg->nfaults + 1, sizeof(*mine));
	for (i = 0; i < cfg->nfaults; i++)
		if (cfg->faults[i].unit < 0 ||
		    (unsigned)cfg->faults[i].unit == k)
			mine[nmine++] = cfg->faults[i];
	memset(&ec, 0, sizeof(ec));
	ec.chip = cfg->chip;
	ec.profile = cfg->profile;
	ec.flash_size = u->flash_size;
	ec.flash = u->flash;
	memcpy(ec.mac, u->mac, sizeof(ec.mac));
	ec.seed = util_mix64(cfg->seed ^ ((uint64_t)k << 32));
	ec.faults = mine;
	ec.nfaults = nmine;
	ec.boot = cfg->boot;
	ec.start_app = cfg->start_app;
	ec.board = cfg->boards != NULL ? cfg->boards[k] : cfg->board;
	ec.app_silent = cfg->silent != NULL ? cfg->silent[k] :
	    cfg->app_silent;
	ec.stub_model = 1;	/* esptool and esptool-js upload stubs */
	u->ec = ec;
	u->emu = emu_new(&ec, cause);
	if (u->emu == NULL)
		return (-EINVAL);
	u->gen = emu_generation(u->emu);

	/* Last, so a client never finds a link to a unit not yet served. */
	return (sim_link(u, pts, cause));
}

/* Build the whole simulation or nothing. */
struct sim *
sim_new(const struct sim_config *cfg, char **cause)
{
	struct sim	*s;
	struct stat	 sb;
	size_t		 len;
	unsigned	 k, i;

	if (cfg->units == 0 || cfg->units > SIM_MAX_UNITS) {
		*cause = xasprintf("--units %u is out of range (1 to %d)",
		    cfg->units, SIM_MAX_UNITS);
		return (NULL);
	}
	for (i = 0; i < cfg->nfaults; i++) {
		if (cfg->faults[i].unit >= (int)cfg->units) {
			*cause = xasprintf("a --fault names unit=%d, but units "
			    "are numbered 0 to %u", cfg->faults[i].unit,
			    cfg->units - 1);
			return (NULL);
		}
	}
	if (stat(cfg->dir, &sb) != 0) {
		if (errno != ENOENT || mkdir(cfg->dir, 0755) != 0) {
			sim_fail(cause, "cannot use directory %s", cfg->dir);
			return (NULL);
		}
	} else if (!S_ISDIR(sb.st_mode)) {
		*cause = xasprintf("%s is not a directory", cfg->dir);
		return (NULL);
	}

	s = xcalloc(1, sizeof(*s));
	s->dir = xstrdup(cfg->dir);
	len = strlen(s->dir);
	while (len > 1 && s->dir[len - 1] == '/')
		s->dir[--len] = '\0';
	s->stats_stderr = cfg->stats_stderr;
	s->seed = cfg->seed;
	s->rbuf = xmalloc(SIM_READ_BUF);
	pthread_mutex_init(&s->mtx, NULL);
	s->wake[0] = s->wake[1] = -1;
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		sim_fail(cause, "pipe");
		goto fail;
	}
	s->u = xcalloc(cfg->units, sizeof(*s->u));
	s->n = cfg->units;
	for (k = 0; k < s->n; k++) {
		if (sim_unit_new(s, cfg, k, cause) != 0)
			goto fail;
	}
	return (s);

fail:
	sim_free(s);
	return (NULL);
}

/* Tear everything down; symlinks go, flash files stay. */
void
sim_free(struct sim *s)
{
	unsigned	k;

	if (s == NULL)
		return;
	if (s->started)
		sim_join(s);
	for (k = 0; k < s->n; k++)
		sim_unit_free(&s->u[k]);
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->wake[1] >= 0)
		close(s->wake[1]);
	pthread_mutex_destroy(&s->mtx);
	free(s->u);
	free(s->app);
	free(s->rbuf);
	free(s->dir);
	free(s);
}

/* Number of units. */
unsigned
sim_units(const struct sim *s)
{
	return (s->n);
}

/* DIR/ttyK of unit k. */
const char *
sim_tty(const struct sim *s, unsigned k)
{
	return (k < s->n ? s->u[k].tty : NULL);
}

/* DIR/flashK.bin of unit k. */
const char *
sim_flash_path(const struct sim *s, unsigned k)
{
	return (k < s->n ? s->u[k].flash_path : NULL);
}

/* MAC of unit k (a replacement changes it, in the serving thread). */
void
sim_mac(struct sim *s, unsigned k, uint8_t mac[6])
{
	pthread_mutex_lock(&s->mtx);
	memcpy(mac, s->u[k].mac, 6);
	pthread_mutex_unlock(&s->mtx);
}

/* What new units arriving in their app hold in flash (copied). */
void
sim_set_app(struct sim *s, const uint8_t *img, size_t len)
{
	free(s->app);
	s->app = xmalloc(len != 0 ? len : 1);
	memcpy(s->app, img, len);
	s->app_len = len;
}

/* Write one byte to the wake pipe; only async-signal-safe calls. */
static void
sim_poke(struct sim *s, char c)
{
	int	saved = errno;
	ssize_t	r;

	r = write(s->wake[1], &c, 1);
	(void)r;	/* full pipe: a wake-up is pending anyway */
	errno = saved;
}

/* Ask the loop to return. */
void
sim_stop(struct sim *s)
{
	sim_poke(s, 'q');
}

/* Ask the loop to write the stats file. */
void
sim_request_stats(struct sim *s)
{
	sim_poke(s, 's');
}

/* The pty went away (unplug fault): close it, drop the symlink. */
static void
sim_unit_gone(struct sim_unit *u)
{
	sim_unit_close(u);
	u->gone = 1;
	u->out_len = 0;
}

/* Press a button on unit k: the loop applies it on its next round. */
static void
sim_press(struct sim *s, unsigned k, char what)
{
	if (k >= s->n)
		return;
	__atomic_store_n(&s->u[k].press, what, __ATOMIC_RELEASE);
	sim_poke(s, 'p');
}

/* BOOT held, RST pressed and released. */
void
sim_press_boot_rst(struct sim *s, unsigned k)
{
	sim_press(s, k, 'b');
}

/* RST pressed and released. */
void
sim_press_rst(struct sim *s, unsigned k)
{
	sim_press(s, k, 'r');
}

/* Unplug unit k and plug a new one in its place. */
void
sim_replace(struct sim *s, unsigned k, int app)
{
	sim_press(s, k, app ? 'a' : 'n');
}

/*
 * The unit re-enumerated (reset on native USB, reenum fault): the old pty
 * goes away, as a USB port does, and a new one appears behind DIR/ttyK.
 * Clients holding the old one see a hangup.
 */
static void
sim_unit_reenum(struct sim_unit *u)
{
	char	 pts[128], *cause = NULL;

	u->gen = emu_generation(u->emu);
	sim_unit_close(u);
	u->out_len = 0;
	if (sim_pty(u, pts, sizeof(pts), &cause) != 0 ||
	    sim_link(u, pts, &cause) != 0) {
		fprintf(stderr, "espfleet-sim: unit %u: %s\n", u->index,
		    cause);
		free(cause);
		sim_unit_gone(u);
	}
}

/*
 * Swap in a new unit (serving thread): a new MAC, blank flash (or the app
 * image, booted), a new emulator with the slot's faults and a new pty.
 */
static void
sim_unit_replace(struct sim *s, struct sim_unit *u, int app, uint64_t now)
{
	struct emu	*e;
	char		*cause = NULL;
	uint8_t		 mac[6];

	sim_mac_for(s->seed, u->index + s->n * (u->replaced + 1), mac);
	memcpy(u->ec.mac, mac, sizeof(mac));
	u->ec.seed = util_mix64(u->ec.seed);
	if ((e = emu_new(&u->ec, &cause)) == NULL) {
		/* The config built the first unit: cannot happen. */
		fprintf(stderr, "espfleet-sim: unit %u: %s\n", u->index,
		    cause);
		free(cause);
		return;
	}
	u->gen_base += emu_generation(u->emu) + 1;
	emu_free(u->emu);
	u->emu = e;
	memset(u->flash, 0xff, u->flash_size);
	if (app && s->app != NULL) {
		memcpy(u->flash, s->app, MINIMUM(s->app_len,
		    (size_t)u->flash_size));
		emu_press_rst(u->emu, now);
	}
	pthread_mutex_lock(&s->mtx);
	memcpy(u->mac, mac, sizeof(mac));
	u->replaced++;
	pthread_mutex_unlock(&s->mtx);
	u->gone = 0;
	sim_unit_reenum(u);
}

/* Hand whatever the host wrote to the emulator. */
static void
sim_unit_read(struct sim *s, struct sim_unit *u, uint64_t now)
{
	ssize_t	r;

	for (;;) {
		r = read(u->master, s->rbuf, SIM_READ_BUF);
		if (r > 0) {
			emu_feed(u->emu, s->rbuf, (size_t)r, now);
			if (emu_state(u->emu) == EMU_ST_UNPLUGGED)
				return;
			continue;
		}
		/* EAGAIN: all read.  EIO cannot happen while we hold the
		 * slave; treat it like EAGAIN rather than spin on it. */
		return;
	}
}

/* Move due reply bytes from the emulator to the pty. */
static void
sim_unit_pump(struct sim *s, struct sim_unit *u, uint64_t now)
{
	ssize_t	w;
	char	what;

	if ((what = (char)__atomic_exchange_n(&u->press, 0,
	    __ATOMIC_ACQ_REL)) != 0) {
		if (what == 'n' || what == 'a')
			sim_unit_replace(s, u, what == 'a', now);
		else if (u->gone)
			;	/* nothing to press on */
		else if (what == 'b')
			emu_press_boot_rst(u->emu, now);
		else
			emu_press_rst(u->emu, now);
	}
	if (u->gone)
		return;
	/* Resets due by now first: their output belongs to the new port. */
	(void)emu_drain(u->emu, u->out, 0, now);
	if (!u->gone && emu_generation(u->emu) != u->gen &&
	    emu_state(u->emu) != EMU_ST_UNPLUGGED)
		sim_unit_reenum(u);
	while (!u->gone) {
		if (u->out_len == 0) {
			u->out_off = 0;
			u->out_len = emu_drain(u->emu, u->out, sizeof(u->out),
			    now);
			if (u->out_len == 0)
				break;
		}
		w = write(u->master, u->out + u->out_off, u->out_len);
		if (w <= 0)
			break;	/* EAGAIN: the client is not reading yet */
		u->out_off += (size_t)w;
		u->out_len -= (size_t)w;
	}
	if (!u->gone && u->out_len == 0 &&
	    emu_state(u->emu) == EMU_ST_UNPLUGGED)
		sim_unit_gone(u);
}

/* Refresh the snapshot other threads read. */
static void
sim_unit_snap(struct sim *s, struct sim_unit *u)
{
	struct sim_unit_stats	st;

	memset(&st, 0, sizeof(st));
	emu_stats(u->emu, &st.emu);
	st.generation = u->gen_base + emu_generation(u->emu);
	(void)emu_usb_id(u->emu, &st.vid, &st.pid);
	st.boot_ok = emu_boot_ok(u->emu);
	st.force_download = emu_force_download(u->emu);
	st.stub = emu_stub(u->emu);
	snprintf(st.boot_line, sizeof(st.boot_line), "%s",
	    emu_boot_line(u->emu));
	st.state = emu_state(u->emu);
	st.reason = emu_reason(u->emu);
	st.gone = u->gone;
	pthread_mutex_lock(&s->mtx);
	st.replaced = u->replaced;
	u->snap = st;
	pthread_mutex_unlock(&s->mtx);
}

/* Format one stats line of a snapshot. */
static void
sim_stats_line(unsigned k, const struct sim_unit_stats *st, char *buf,
    size_t cap)
{
	snprintf(buf, cap, "unit %u modeled_ms %llu.%03llu stall_ms "
	    "%llu.%03llu commands %llu bytes_in %llu bytes_out %llu "
	    "written %llu erased %llu unattached %llu generation %llu "
	    "usb %04x:%04x state %s reason %s", k,
	    (unsigned long long)(st->emu.modeled_us / 1000),
	    (unsigned long long)(st->emu.modeled_us % 1000),
	    (unsigned long long)(st->emu.stall_us / 1000),
	    (unsigned long long)(st->emu.stall_us % 1000),
	    (unsigned long long)st->emu.commands,
	    (unsigned long long)st->emu.bytes_in,
	    (unsigned long long)st->emu.bytes_out,
	    (unsigned long long)st->emu.flash_written,
	    (unsigned long long)st->emu.flash_erased,
	    (unsigned long long)st->emu.unattached,
	    (unsigned long long)st->generation, st->vid, st->pid,
	    emu_state_name(st->state), emu_reason_name(st->reason));
}

/* Snapshot of unit k, safe from any thread. */
void
sim_unit_stats(struct sim *s, unsigned k, struct sim_unit_stats *st)
{
	pthread_mutex_lock(&s->mtx);
	*st = s->u[k].snap;
	pthread_mutex_unlock(&s->mtx);
}

/* Write DIR/stats through a temporary file and rename(2). */
int
sim_write_stats(struct sim *s, char **cause)
{
	struct sim_unit_stats	 st;
	char			*tmp, *path, line[512];
	FILE			*f;
	unsigned		 k;
	int			 error = 0;

	tmp = xasprintf("%s/.stats.tmp", s->dir);
	path = xasprintf("%s/stats", s->dir);
	if ((f = fopen(tmp, "w")) == NULL) {
		error = errno;
		goto out;
	}
	fprintf(f, "# espfleet-sim stats %u\n", ++s->stats_gen);
	for (k = 0; k < s->n; k++) {
		sim_unit_stats(s, k, &st);
		sim_stats_line(k, &st, line, sizeof(line));
		fprintf(f, "%s\n", line);
		if (s->stats_stderr)
			fprintf(stderr, "%s\n", line);
	}
	if (ferror(f))
		error = EIO;
	if (fclose(f) != 0 && error == 0)
		error = errno;
	if (error == 0 && rename(tmp, path) != 0)
		error = errno;
out:
	if (error != 0) {
		unlink(tmp);
		*cause = xasprintf("cannot write %s: %s", path,
		    strerror(error));
	}
	free(tmp);
	free(path);
	return (-error);
}

/* Drain the wake pipe: returns 1 when asked to stop. */
static int
sim_wake(struct sim *s)
{
	char	 buf[64], *cause;
	ssize_t	 r, i;
	int	 stop = 0, stats = 0;

	while ((r = read(s->wake[0], buf, sizeof(buf))) > 0) {
		for (i = 0; i < r; i++) {
			if (buf[i] == 'q')
				stop = 1;
			else if (buf[i] == 's')
				stats = 1;
		}
	}
	if (stats && sim_write_stats(s, &cause) != 0) {
		fprintf(stderr, "espfleet-sim: %s\n", cause);
		free(cause);
	}
	return (stop);
}

/*
 * The loop: ppoll every live master (POLLOUT only while output waits)
 * and the wake pipe, with a timeout up to the earliest due time.
 */
int
sim_run(struct sim *s)
{
	struct pollfd	*pfd;
	unsigned	*map;
	struct timespec	 ts, *tsp;
	struct sim_unit	*u;
	uint64_t	 now, due, d;
	nfds_t		 n, i;
	unsigned	 k;
	int		 rc = 0, r;

	pfd = xcalloc(s->n + 1, sizeof(*pfd));
	map = xcalloc(s->n + 1, sizeof(*map));
	for (k = 0; k < s->n; k++)
		sim_unit_snap(s, &s->u[k]);
	for (;;) {
		due = UINT64_MAX;
		n = 0;
		pfd[n].fd = s->wake[0];
		pfd[n++].events = POLLIN;
		for (k = 0; k < s->n; k++) {
			u = &s->u[k];
			if (u->gone)
				continue;
			pfd[n].fd = u->master;
			pfd[n].events = POLLIN;
			if (u->out_len > 0)
				pfd[n].events |= POLLOUT;
			else if ((d = emu_next_due_us(u->emu)) < due)
				due = d;
			map[n++] = k;
		}
		tsp = NULL;
		if (due != UINT64_MAX) {
			now = util_now_us();
			d = due > now ? due - now : 0;
			ts.tv_sec = (time_t)(d / 1000000);
			ts.tv_nsec = (long)(d % 1000000) * 1000;
			tsp = &ts;
		}
		r = ppoll(pfd, n, tsp, NULL);
		if (r < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (r > 0 && (pfd[0].revents & POLLIN) && sim_wake(s))
			break;
		now = util_now_us();
		for (i = 1; r > 0 && i < n; i++) {
			if (pfd[i].revents & POLLIN)
				sim_unit_read(s, &s->u[map[i]], now);
		}
		for (k = 0; k < s->n; k++) {
			u = &s->u[k];
			/* A gone unit still takes a replacement. */
			if (u->gone && __atomic_load_n(&u->press,
			    __ATOMIC_ACQUIRE) == 0)
				continue;
			sim_unit_pump(s, u, now);
			sim_unit_snap(s, u);
		}
	}
	free(pfd);
	free(map);
	return (rc);
}

/* Thread body for sim_start(). */
static void *
sim_thread(void *arg)
{
	struct sim	*s = arg;

	s->run_rc = sim_run(s);
	return (NULL);
}

/* Serve from a new thread that has every signal blocked. */
int
sim_start(struct sim *s, char **cause)
{
	sigset_t	all, old;
	int		error;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	error = pthread_create(&s->thread, NULL, sim_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0) {
		*cause = xasprintf("cannot start the simulator thread: %s",
		    strerror(error));
		return (-error);
	}
	s->started = 1;
	return (0);
}

/* Stop the serving thread and wait for it. */
int
sim_join(struct sim *s)
{
	if (!s->started)
		return (0);
	sim_stop(s);
	pthread_join(s->thread, NULL);
	s->started = 0;
	return (s->run_rc);
}
