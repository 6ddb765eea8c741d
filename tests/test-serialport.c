/*
 * The libserialport back end, the one every real USB unit takes, against a
 * umockdev testbed: a USB device 303a:0002 (ESP32-S2 ROM download mode)
 * with a cdc_acm interface and its ttyACM0, whose pty is served by the
 * in-process ROM emulator, and an ioctl handler on /dev/ttyACM0 that plays
 * the modem lines (TIOCMGET/SET/BIS/BIC) a pty lacks, records every line
 * write, and passes every other ioctl through to the pty.  Re-executes
 * itself under umockdev-wrapper (the preload library is what redirects
 * sysfs, /dev and the ioctls to the testbed).
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <umockdev.h>

#include "chip.h"
#include "demo.h"
#include "emu.h"
#include "image.h"
#include "job.h"
#include "loader.h"
#include "transport.h"
#include "util.h"

#include "tap.h"

#define SP_PCI		"/devices/pci0000:00/0000:00:14.0/usb1"
#define SP_DEV		"/dev/ttyACM0"
#define SP_JOB_MS	60000	/* deadline for a whole flash job */
#define SP_MAX_EV	256

extern char	**environ;

/* One modem-line write the ioctl handler saw. */
struct sp_ev {
	char		 op;	/* 'S' TIOCMSET, '+' BIS, '-' BIC */
	int		 which;	/* TIOCM_DTR or _RTS (BIS/BIC) */
	int		 dtr, rts;	/* line state after the write */
	uint64_t	 ms;
};

/*
 * The fake port: the line state the handler keeps, its log, and the
 * emulator behind the pty master.  The handler runs on umockdev's worker
 * thread, the server on its own, the flasher on the main or a job thread:
 * everything here is under mtx.
 */
struct sp_bed {
	pthread_mutex_t	 mtx;
	int		 bits;		/* TIOCM_DTR | TIOCM_RTS */
	struct sp_ev	 ev[SP_MAX_EV];
	int		 nev;
	unsigned	 tiocmget;	/* TIOCMGET calls answered */
	unsigned	 passed;	/* other ioctls passed through */
	struct emu	*emu;
	int		 master;
	int		 stop[2];
	pthread_t	 thread;
};

/* What a reset must look like, write for write (PROTOCOL.md 8.1). */
struct sp_want {
	char	op;
	int	which;		/* 0 for TIOCMSET */
	int	dtr, rts;
};

#define D	TIOCM_DTR
#define R	TIOCM_RTS

/*
 * ClassicReset from (0,0): DTR=0; RTS=1 (DTR re-written); sleep 0.1;
 * DTR=1; RTS=0 (DTR re-written); sleep delay; DTR=0.
 */
static const struct sp_want sp_classic[] = {
	{ '-', D, 0, 0 }, { '+', R, 0, 1 }, { '-', D, 0, 1 },
	{ '+', D, 1, 1 }, { '-', R, 1, 0 }, { '+', D, 1, 0 },
	{ '-', D, 0, 0 },
};
/* UnixTightReset: TIOCMSET (0,0) (1,1) (0,1); (1,0); (0,0); DTR=0. */
static const struct sp_want sp_tight[] = {
	{ 'S', 0, 0, 0 }, { 'S', 0, 1, 1 }, { 'S', 0, 0, 1 },
	{ 'S', 0, 1, 0 }, { 'S', 0, 0, 0 }, { '-', D, 0, 0 },
};
/* HardReset with GPIO0 released: RTS=1 (DTR re-written); RTS=0 (same). */
static const struct sp_want sp_hard[] = {
	{ '+', R, 0, 1 }, { '-', D, 0, 1 }, { '-', R, 0, 0 },
	{ '-', D, 0, 0 },
};

/*
 * TSan builds: libumockdev's worker thread races with the thread that
 * drives the testbed inside umockdev and GLib (g_strdup against free, a
 * GRecMutex cleared while unregister_path unlocks it; no espfleet frame in
 * either stack).  Only these libraries are suppressed; our code, the
 * handler above and the preload library, which wraps our own calls, stay
 * checked.
 */
const char	*__tsan_default_suppressions(void);

/* Suppressions TSan reads at start-up (unused in other builds). */
const char *
__tsan_default_suppressions(void)
{
	return ("race:libumockdev.so\n"
	    "race:libglib-2.0.so\n"
	    "race:libgobject-2.0.so\n");
}

/* Unless umockdev's preload library is in place, run again under it. */
static void
sp_reexec(char **argv)
{
	const char	*pre, *wrapper, *asan;
	char		 self[PATH_MAX], *opts, *args[3];
	ssize_t		 n;

	pre = getenv("LD_PRELOAD");
	if (pre != NULL && strstr(pre, "libumockdev-preload") != NULL)
		return;
	if (getenv("ESPF_SERIALPORT_REEXEC") != NULL) {
		printf("1..1\nnot ok 1 - ran under umockdev-wrapper but "
		    "libumockdev-preload is not in LD_PRELOAD\n");
		exit(1);
	}
	wrapper = getenv("UMOCKDEV_WRAPPER");
	if (wrapper == NULL || *wrapper == '\0' || access(wrapper, X_OK) != 0)
		tap_skip_all("umockdev not installed (no umockdev-wrapper)");
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0)
		self[n] = '\0';
	else
		snprintf(self, sizeof(self), "%s", argv[0]);
	setenv("ESPF_SERIALPORT_REEXEC", "1", 1);
	/* ASan wants to come first in the preload list; umockdev does. */
	asan = getenv("ASAN_OPTIONS");
	opts = xasprintf("%s%sverify_asan_link_order=0",
	    asan != NULL ? asan : "", asan != NULL && *asan != '\0' ? ":" :
	    "");
	setenv("ASAN_OPTIONS", opts, 1);
	free(opts);
	fflush(stdout);
	args[0] = (char *)wrapper;
	args[1] = self;
	args[2] = NULL;
	execv(wrapper, args);
	printf("1..1\nnot ok 1 - exec %s: %s\n", wrapper, strerror(errno));
	exit(1);
}

/* Note one line write and tell the emulator (caller holds the lock). */
static void
sp_record(struct sp_bed *b, char op, int which)
{
	struct sp_ev	*e;
	int		 dtr = (b->bits & TIOCM_DTR) != 0;
	int		 rts = (b->bits & TIOCM_RTS) != 0;

	if (b->nev < SP_MAX_EV) {
		e = &b->ev[b->nev];
		e->op = op;
		e->which = which;
		e->dtr = dtr;
		e->rts = rts;
		e->ms = util_now_ms();
	}
	b->nev++;
	if (b->emu != NULL)
		emu_set_lines(b->emu, dtr, rts, util_now_us());
}

/*
 * umockdev's "handle-ioctl": the modem-control ioctls are answered from
 * the line state kept here; everything else runs on the pty itself.
 */
static gboolean
sp_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer arg)
{
	struct sp_bed		*b = arg;
	UMockdevIoctlData	*data;
	GError			*gerr = NULL;
	unsigned long		 req;
	int			*val, r, e = 0;
	int			 lines = TIOCM_DTR | TIOCM_RTS;

	(void)base;
	req = umockdev_ioctl_client_get_request(client);
	if (req != TIOCMGET && req != TIOCMSET && req != TIOCMBIS &&
	    req != TIOCMBIC) {
		r = umockdev_ioctl_client_execute(client, &e, &gerr);
		if (gerr != NULL) {
			g_error_free(gerr);
			r = -1;
			e = EIO;
		}
		pthread_mutex_lock(&b->mtx);
		b->passed++;
		pthread_mutex_unlock(&b->mtx);
		umockdev_ioctl_client_complete(client, r, e);
		return (TRUE);
	}
	data = umockdev_ioctl_data_resolve(
	    umockdev_ioctl_client_get_arg(client), 0, sizeof(int), &gerr);
	if (data == NULL) {
		if (gerr != NULL)
			g_error_free(gerr);
		umockdev_ioctl_client_complete(client, -1, EFAULT);
		return (TRUE);
	}
	val = (int *)(void *)data->data;
	pthread_mutex_lock(&b->mtx);
	switch (req) {
	case TIOCMGET:
		*val = b->bits;
		b->tiocmget++;
		break;
	case TIOCMSET:
		b->bits = (b->bits & ~lines) | (*val & lines);
		sp_record(b, 'S', 0);
		break;
	case TIOCMBIS:
		b->bits |= *val & lines;
		sp_record(b, '+', *val & lines);
		break;
	case TIOCMBIC:
		b->bits &= ~(*val & lines);
		sp_record(b, '-', *val & lines);
		break;
	}
	pthread_mutex_unlock(&b->mtx);
	umockdev_ioctl_client_complete(client, 0, 0);
	g_object_unref(data);
	return (TRUE);
}

/*
 * The unit: bytes the host writes to ttyACM0 come out of the pty master
 * into the emulator, and its replies go back in.  While nobody has the
 * port open the master hangs up; the thread then idles in short polls.
 */
static void *
sp_serve(void *arg)
{
	struct sp_bed	*b = arg;
	struct pollfd	 pfd[2];
	uint8_t		 buf[4096];
	uint64_t	 due, now;
	ssize_t		 n, w;
	size_t		 len, off;
	int		 timeout;

	for (;;) {
		pthread_mutex_lock(&b->mtx);
		due = emu_next_due_us(b->emu);
		pthread_mutex_unlock(&b->mtx);
		now = util_now_us();
		timeout = -1;
		if (due != UINT64_MAX)
			timeout = due <= now ? 0 :
			    (int)((due - now) / 1000 + 1);
		pfd[0].fd = b->stop[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = b->master;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, timeout) == -1 && errno != EINTR)
			break;
		if (pfd[0].revents != 0)
			break;
		if (pfd[1].revents & POLLIN) {
			n = read(b->master, buf, sizeof(buf));
			if (n > 0) {
				pthread_mutex_lock(&b->mtx);
				emu_feed(b->emu, buf, (size_t)n,
				    util_now_us());
				pthread_mutex_unlock(&b->mtx);
			}
		} else if (pfd[1].revents & (POLLHUP | POLLERR)) {
			/* Port closed: nothing to serve until it reopens. */
			pfd[0].revents = 0;
			if (poll(pfd, 1, 5) > 0)
				break;
		}
		for (;;) {
			pthread_mutex_lock(&b->mtx);
			len = emu_drain(b->emu, buf, sizeof(buf),
			    util_now_us());
			pthread_mutex_unlock(&b->mtx);
			if (len == 0)
				break;
			for (off = 0; off < len; off += (size_t)w) {
				w = write(b->master, buf + off, len - off);
				if (w <= 0)
					break;
			}
			if (off < len)
				break;	/* port closed under us */
		}
	}
	return (NULL);
}

/* Put the ESP32-S2 in ROM download mode with its ttyACM0 into the bed. */
static int
sp_plug(UMockdevTestbed *tb)
{
	GError		*gerr = NULL;
	const char	*rec =
	    "P: " SP_PCI "/1-1\n"
	    "E: SUBSYSTEM=usb\n"
	    "E: DEVTYPE=usb_device\n"
	    "E: DEVNAME=/dev/bus/usb/001/002\n"
	    "A: idVendor=303a\n"
	    "A: idProduct=0002\n"
	    "A: manufacturer=Espressif\n"
	    "A: product=ESP32-S2\n"
	    "A: serial=0\n"
	    "A: busnum=1\n"
	    "A: devnum=2\n"
	    "\n"
	    "P: " SP_PCI "/1-1/1-1:1.0\n"
	    "E: SUBSYSTEM=usb\n"
	    "E: DEVTYPE=usb_interface\n"
	    "E: DRIVER=cdc_acm\n"
	    "A: bInterfaceClass=02\n"
	    "A: bInterfaceNumber=00\n"
	    "\n"
	    "P: " SP_PCI "/1-1/1-1:1.0/tty/ttyACM0\n"
	    "N: ttyACM0\n"
	    "E: SUBSYSTEM=tty\n"
	    "E: DEVNAME=/dev/ttyACM0\n"
	    "E: MAJOR=166\n"
	    "E: MINOR=0\n"
	    "E: ID_PATH=pci-0000:00:14.0-usb-0:1:1.0\n"
	    "E: ID_VENDOR_ID=303a\n"
	    "E: ID_MODEL_ID=0002\n"
	    "E: ID_SERIAL=Espressif_ESP32-S2_0\n"
	    "E: ID_USB_INTERFACE_NUM=00\n"
	    "L: device=../../../1-1:1.0\n";

	if (!umockdev_testbed_add_from_string(tb, rec, &gerr)) {
		tap_diag("umockdev: %s", gerr != NULL ? gerr->message : "?");
		if (gerr != NULL)
			g_error_free(gerr);
		return (-1);
	}
	return (0);
}

/* A fresh emulated S2 behind the pty (link: how its ROM talks). */
static void
sp_new_unit(struct sp_bed *b, enum emu_link link)
{
	struct emu_config	 cfg;
	struct emu		*e;
	char			*cause = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.chip = CHIP_ESP32S2;
	cfg.link = link;
	cfg.profile = EMU_PROFILE_FAST;
	cfg.mac[0] = 0x7c;
	cfg.mac[5] = 0x01;
	if ((e = emu_new(&cfg, &cause)) == NULL) {
		printf("Bail out! emu_new: %s\n", cause != NULL ? cause : "?");
		exit(1);
	}
	pthread_mutex_lock(&b->mtx);
	if (b->emu != NULL)
		emu_free(b->emu);
	b->emu = e;
	pthread_mutex_unlock(&b->mtx);
}

/* Forget the line writes seen so far. */
static void
sp_clear(struct sp_bed *b)
{
	pthread_mutex_lock(&b->mtx);
	b->nev = 0;
	pthread_mutex_unlock(&b->mtx);
}

/* Describe the log from index from on, for a diagnostic. */
static void
sp_dump(struct sp_bed *b, int from)
{
	char	line[1024];
	size_t	len = 0;
	int	i;

	line[0] = '\0';
	for (i = from; i < b->nev && i < SP_MAX_EV && len < 900; i++)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
		    " %c%s(%d,%d)", b->ev[i].op, b->ev[i].which == D ? "DTR" :
		    b->ev[i].which == R ? "RTS" : "", b->ev[i].dtr,
		    b->ev[i].rts);
	tap_diag("  handler saw:%s", line);
}

/* Do the writes from index from on match want exactly (count too)? */
static int
sp_match(struct sp_bed *b, int from, const struct sp_want *want, int n)
{
	int	i, ok;

	pthread_mutex_lock(&b->mtx);
	ok = b->nev - from == n && b->nev <= SP_MAX_EV;
	for (i = 0; ok && i < n; i++) {
		if (b->ev[from + i].op != want[i].op ||
		    b->ev[from + i].which != want[i].which ||
		    b->ev[from + i].dtr != want[i].dtr ||
		    b->ev[from + i].rts != want[i].rts)
			ok = 0;
	}
	if (!ok)
		sp_dump(b, from);
	pthread_mutex_unlock(&b->mtx);
	return (ok);
}

/* Was RTS (EN low: the chip held in reset) never asserted from from on? */
static int
sp_rts_stays_low(struct sp_bed *b, int from)
{
	int	i, ok = 1;

	pthread_mutex_lock(&b->mtx);
	for (i = from; i < b->nev && i < SP_MAX_EV; i++) {
		if (b->ev[i].rts)
			ok = 0;
	}
	if (!ok)
		sp_dump(b, from);
	pthread_mutex_unlock(&b->mtx);
	return (ok);
}

/* Milliseconds between writes i and i + 1 of the log. */
static uint64_t
sp_gap(struct sp_bed *b, int i)
{
	uint64_t	gap = 0;

	pthread_mutex_lock(&b->mtx);
	if (i + 1 < b->nev && i + 1 < SP_MAX_EV)
		gap = b->ev[i + 1].ms - b->ev[i].ms;
	pthread_mutex_unlock(&b->mtx);
	return (gap);
}

/* Run one flash job on ttyACM0 through the real xport_open. */
static int
sp_job(const struct image_set *set, struct job_progress *p)
{
	struct job_params	 params;
	struct job		*j;
	struct pollfd		 pfd;
	uint64_t		 deadline;
	char			*cause = NULL;
	int			 wake;

	if ((wake = job_wake_open()) < 0)
		return (-1);
	memset(&params, 0, sizeof(params));
	params.set = set;
	params.after = LOADER_AFTER_REBOOT;
	params.boot_ms = -1;	/* the emulator boots no app */
	j = job_new(SP_DEV, &params, wake);
	if (job_start(j, &cause) != 0) {
		tap_diag("job_start: %s", cause != NULL ? cause : "?");
		free(cause);
		job_free(j);
		close(wake);
		return (-1);
	}
	deadline = util_now_ms() + SP_JOB_MS;
	while (!job_done(j) && util_ms_left(deadline) > 0) {
		pfd.fd = wake;
		pfd.events = POLLIN;
		(void)poll(&pfd, 1, util_ms_left(deadline));
		job_wake_drain(wake);
	}
	if (!job_done(j))
		job_cancel(j);
	job_get(j, p);
	job_free(j);
	close(wake);
	return (0);
}

/* Does the emulated flash hold every region of the set? */
static int
sp_flash_holds(struct sp_bed *b, const struct image_set *set)
{
	const uint8_t	*flash;
	size_t		 i;
	int		 ok = 1;

	pthread_mutex_lock(&b->mtx);
	flash = emu_flash(b->emu);
	for (i = 0; i < set->nregions; i++) {
		if (set->regions[i].offset + set->regions[i].len >
		    emu_flash_size(b->emu) ||
		    memcmp(flash + set->regions[i].offset,
		    set->regions[i].data, set->regions[i].len) != 0)
			ok = 0;
	}
	pthread_mutex_unlock(&b->mtx);
	return (ok);
}

/* Wait until the emulated unit reaches state want (or 5 s pass). */
static enum emu_state
sp_wait_state(struct sp_bed *b, enum emu_state want)
{
	uint64_t	deadline = util_now_ms() + 5000;
	enum emu_state	st;
	struct pollfd	pfd = { .fd = -1 };

	for (;;) {
		/* The server thread ticks the emulator (watchdog) itself. */
		pthread_mutex_lock(&b->mtx);
		st = emu_state(b->emu);
		pthread_mutex_unlock(&b->mtx);
		if (st == want || util_ms_left(deadline) == 0)
			return (st);
		(void)poll(&pfd, 0, 10);
	}
}

/*
 * Child of the permission check: without umockdev and (as root) as
 * nobody, open a port this user may not open and print what we say.
 */
static int
sp_eacces_child(const char *path)
{
	struct xport	 xp;
	char		*cause = NULL;
	int		 error;

	if (getuid() == 0 && (setgroups(0, NULL) != 0 ||
	    setgid(65534) != 0 || setuid(65534) != 0)) {
		printf("cannot drop privileges: %s\n", strerror(errno));
		return (1);
	}
	xport_init(&xp, -1);
	error = xport_open(&xp, path, &cause);
	printf("open=%d cause=%s\n", error, cause != NULL ? cause : "none");
	if (error == 0)
		xport_close(&xp);
	free(cause);
	return (0);
}

/*
 * A port this user may not open: the message must name the fix (the
 * group owning the node, a udev rule).  root opens anything, so the check
 * runs in a child that drops to nobody first; on a pty chmod 000.
 */
static void
sp_check_denied(void)
{
	struct stat	 st;
	struct group	*gr;
	char		 slave[128], out[1024], want[160], self[PATH_MAX];
	char		*args[4], **env;
	size_t		 i, n = 0, len = 0;
	ssize_t		 r;
	pid_t		 pid;
	int		 m, pfd[2], status;

	if ((m = posix_openpt(O_RDWR | O_NOCTTY)) == -1 || grantpt(m) != 0 ||
	    unlockpt(m) != 0 || ptsname_r(m, slave, sizeof(slave)) != 0) {
		tap_ok(1, "permission denied names the fix # SKIP no pty");
		if (m != -1)
			close(m);
		return;
	}
	/* Give it the group a distribution gives serial ports, if any. */
	if ((gr = getgrnam("dialout")) != NULL ||
	    (gr = getgrnam("uucp")) != NULL)
		(void)chown(slave, (uid_t)-1, gr->gr_gid);
	if (chmod(slave, 0) != 0 || stat(slave, &st) != 0 || pipe(pfd) != 0) {
		tap_ok(1, "permission denied names the fix # SKIP no pty to "
		    "lock up (%s)", strerror(errno));
		if (m != -1)
			close(m);
		return;
	}
	if ((r = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0) {
		tap_ok(1, "permission denied names the fix # SKIP no "
		    "/proc/self/exe");
		close(m);
		return;
	}
	self[r] = '\0';
	/* Group root is no advice to give: then only the udev rule. */
	gr = getgrgid(st.st_gid);
	if (st.st_gid == 0)
		snprintf(want, sizeof(want), "udev rule");
	else
		snprintf(want, sizeof(want), "group %s", gr != NULL ?
		    gr->gr_name : "?");
	/* The child runs without umockdev: the message is no testbed's. */
	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 1, sizeof(*env));
	for (i = 0, n = 0; environ[i] != NULL; i++) {
		if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
		    strncmp(environ[i], "UMOCKDEV_DIR=", 13) != 0)
			env[n++] = environ[i];
	}
	args[0] = (char *)self;
	args[1] = (char *)"--eacces";
	args[2] = slave;
	args[3] = NULL;
	if ((pid = fork()) == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		execve(self, args, env);
		_exit(127);
	}
	close(pfd[1]);
	while (pid > 0 && len < sizeof(out) - 1 &&
	    (r = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	while (len > 0 && out[len - 1] == '\n')
		len--;
	out[len] = '\0';
	close(pfd[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	free(env);
	close(m);
	tap_ok(strncmp(out, "open=-13 ", 9) == 0 &&
	    strstr(out, "permission denied") != NULL &&
	    strstr(out, want) != NULL && strstr(out, "udev rule") != NULL &&
	    strstr(out, "plugdev") != NULL,
	    "a port this user may not open: -EACCES naming the fix (%s, a "
	    "udev rule): %s", want, out);
}

/* Build the bed, then check the libserialport back end end to end. */
int
main(int argc, char **argv)
{
	UMockdevTestbed		*tb;
	UMockdevIoctlBase	*handler;
	struct sp_bed		 b;
	struct xport		 xp;
	struct image_set	*set = NULL;
	struct job_progress	 p;
	GError			*gerr = NULL;
	char			*cause = NULL;
	uint16_t		 vid = 0, pid = 0;
	enum emu_reason		 reason;
	unsigned		 ngets;
	int			 error, from;

	if (argc > 2 && strcmp(argv[1], "--eacces") == 0)
		return (sp_eacces_child(argv[2]));
	sp_reexec(argv);

	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.mtx, NULL);
	/* A tty's open raises DTR and RTS; the fake port starts that way. */
	b.bits = TIOCM_DTR | TIOCM_RTS;
	b.master = -1;
	tb = umockdev_testbed_new();
	if (sp_plug(tb) != 0)
		tap_skip_all("umockdev cannot build the ttyACM0 testbed");
	handler = umockdev_ioctl_base_new();
	g_signal_connect(handler, "handle-ioctl", G_CALLBACK(sp_ioctl), &b);
	if (!umockdev_testbed_attach_ioctl(tb, SP_DEV, handler, &gerr)) {
		tap_diag("attach_ioctl: %s", gerr != NULL ? gerr->message :
		    "?");
		tap_skip_all("umockdev cannot attach an ioctl handler");
	}
	if ((b.master = umockdev_testbed_get_dev_fd(tb, SP_DEV)) < 0)
		tap_skip_all("umockdev gave ttyACM0 no pty");
	sp_new_unit(&b, EMU_LINK_USB);
	if (pipe(b.stop) != 0 ||
	    pthread_create(&b.thread, NULL, sp_serve, &b) != 0)
		tap_skip_all("cannot start the emulator thread");

	/* (a) A USB port libserialport knows is its, with its USB ids. */
	xport_init(&xp, -1);
	error = xport_open(&xp, SP_DEV, &cause);
	is_int(error, 0, "open %s (%s)", SP_DEV, cause ? cause : "ok");
	free(cause), cause = NULL;
	if (error != 0) {
		tap_diag("no point going on without the port");
		goto out;
	}
	is_str(xport_backend(&xp), "libserialport",
	    "the libserialport back end drives a USB ttyACM");
	tap_ok(xport_can_reset(&xp) && !(xp.flags & XPORT_NO_LINES),
	    "... with real modem lines");
	pthread_mutex_lock(&b.mtx);
	ngets = b.tiocmget;
	pthread_mutex_unlock(&b.mtx);
	tap_ok(ngets > 0, "sp_open read the modem lines through the handler "
	    "(%u TIOCMGET)", ngets);
	tap_ok(xp.dtr == 1 && xp.rts == 1,
	    "the transport starts from the lines as the open left them");
	is_int(xport_usb_id(&xp, &vid, &pid), 0,
	    "libserialport reports a USB port");
	tap_ok(vid == 0x303a && pid == 0x0002,
	    "... 303a:0002, ESP32-S2 ROM download mode (%04x:%04x)", vid, pid);

	/* (c) Reset sequences, write for write as the handler saw them. */
	is_int(xport_set_lines(&xp, 0, 0), 0, "release both lines");
	sp_clear(&b);
	is_int(xport_reset_classic(&xp, 50), 0, "classic reset");
	tap_ok(sp_match(&b, 0, sp_classic, (int)nitems(sp_classic)),
	    "... DTR=0, RTS=1, DTR=0, DTR=1, RTS=0, DTR=1, DTR=0 one line "
	    "per TIOCMBIS/TIOCMBIC (ClassicReset)");
	tap_ok(sp_gap(&b, 2) >= 100, "... EN held low 100 ms (%llu)",
	    (unsigned long long)sp_gap(&b, 2));
	tap_ok(sp_gap(&b, 5) >= 50, "... GPIO0 held low the reset delay "
	    "(%llu)", (unsigned long long)sp_gap(&b, 5));
	sp_clear(&b);
	is_int(xport_reset_tight(&xp, 50), 0, "tight reset");
	tap_ok(sp_match(&b, 0, sp_tight, (int)nitems(sp_tight)),
	    "... TIOCMSET (0,0) (1,1) (0,1) (1,0) (0,0), then DTR=0 "
	    "(UnixTightReset)");
	tap_ok(sp_gap(&b, 2) >= 100 && sp_gap(&b, 3) >= 50,
	    "... with the 100 ms and reset-delay pauses (%llu, %llu)",
	    (unsigned long long)sp_gap(&b, 2),
	    (unsigned long long)sp_gap(&b, 3));
	sp_clear(&b);
	is_int(xport_reset_hard(&xp, 1), 0, "hard reset, native USB timing");
	tap_ok(sp_match(&b, 0, sp_hard, (int)nitems(sp_hard)),
	    "... RTS=1 (DTR re-written), RTS=0 (DTR re-written)");
	tap_ok(sp_gap(&b, 1) >= 200, "... EN low 200 ms (%llu)",
	    (unsigned long long)sp_gap(&b, 1));
	{
		int	dtr, rts;

		pthread_mutex_lock(&b.mtx);
		emu_lines(b.emu, &dtr, &rts);
		pthread_mutex_unlock(&b.mtx);
		tap_ok(dtr == 0 && rts == 0,
		    "the unit saw the lines end released");
	}
	xport_close(&xp);
	is_str(xport_backend(&xp), "none", "closed: no back end");

	/* (b) A whole flash job through the real xport_open. */
	if (demo_load(&set, &cause) != 0) {
		tap_diag("demo_load: %s", cause != NULL ? cause : "?");
		free(cause), cause = NULL;
		goto out;
	}
	pthread_mutex_lock(&b.mtx);
	ngets = b.tiocmget;
	from = b.nev;
	pthread_mutex_unlock(&b.mtx);
	if (sp_job(set, &p) != 0)
		tap_diag("the job did not start");
	is_str(job_state_name(p.state), job_state_name(JOB_ST_VERIFIED),
	    "flash the demo image (%zu bytes) over libserialport, every "
	    "region's MD5 verified: %s", set->total_len, p.errmsg);
	pthread_mutex_lock(&b.mtx);
	ngets = b.tiocmget - ngets;
	pthread_mutex_unlock(&b.mtx);
	tap_ok(ngets > 0, "... the job's port was opened by libserialport "
	    "(%u TIOCMGET; the fd back end issues none)", ngets);
	tap_ok(sp_flash_holds(&b, set), "... the unit's flash holds the "
	    "image");
	tap_ok(p.usb_otg && strncmp(p.chip, "ESP32-S2", 8) == 0,
	    "... an ESP32-S2 on USB-OTG (%s)", p.chip);
	is_str(emu_state_name(sp_wait_state(&b, EMU_ST_APP)),
	    emu_state_name(EMU_ST_APP), "... and then left download mode");
	pthread_mutex_lock(&b.mtx);
	reason = emu_reason(b.emu);
	pthread_mutex_unlock(&b.mtx);
	is_str(emu_reason_name(reason), emu_reason_name(EMU_RS_WDT_RESET),
	    "... by the RTC watchdog, as USB-OTG needs (no RTS pulse)");
	tap_ok(sp_rts_stays_low(&b, from), "... so RTS was never asserted "
	    "during the job");

	/*
	 * (d) A unit whose ROM talks UART (the S2 behind a bridge): after
	 * writing, the loader pulses RTS and the handler sees the pulse.
	 */
	sp_new_unit(&b, EMU_LINK_UART);
	if (sp_job(set, &p) != 0)
		tap_diag("the job did not start");
	is_str(job_state_name(p.state), job_state_name(JOB_ST_VERIFIED),
	    "flash a UART-link unit over libserialport: %s", p.errmsg);
	pthread_mutex_lock(&b.mtx);
	from = b.nev - (int)nitems(sp_hard);
	pthread_mutex_unlock(&b.mtx);
	tap_ok(from >= 0 && sp_match(&b, from, sp_hard, (int)nitems(sp_hard)),
	    "... the hard reset after writing arrives: RTS=1, RTS=0 with "
	    "DTR re-written");
	tap_ok(from >= 0 && sp_gap(&b, from + 1) >= 100,
	    "... EN low 100 ms (%llu)",
	    (unsigned long long)(from >= 0 ? sp_gap(&b, from + 1) : 0));

out:
	sp_check_denied();
	if (set != NULL)
		image_free(set);
	if (write(b.stop[1], "x", 1) != 1)
		tap_diag("cannot stop the emulator thread");
	pthread_join(b.thread, NULL);
	close(b.stop[0]);
	close(b.stop[1]);
	umockdev_testbed_detach_ioctl(tb, SP_DEV, NULL);
	g_object_unref(handler);
	g_object_unref(tb);
	emu_free(b.emu);
	pthread_mutex_destroy(&b.mtx);
	return (tap_done());
}
