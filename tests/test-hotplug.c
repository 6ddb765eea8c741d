/*
 * hotplug.c against a umockdev testbed: USB devices with tty children
 * appear and vanish, and what reaches the registry through the watcher's
 * callback is checked.  Re-executes itself under umockdev-wrapper (the
 * preload library is what redirects libudev to the testbed).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libudev.h>
#include <umockdev.h>

#include "chip.h"
#include "hotplug.h"
#include "registry.h"
#include "util.h"

#include "tap.h"

#define PCI	"/devices/pci0000:00/0000:00:14.0"
#define WAIT_MS	5000		/* deadline for an event to arrive */

/*
 * Whether umockdev_testbed_add_from_string() sends the add uevent itself
 * (0.17.16 does; the docs of some versions say it does not).  Probed.
 */
static int	hp_announces;

struct hp_test {
	struct reg		*reg;
	unsigned		 adds;
	unsigned		 removes;
	struct port_info	 last;	/* last port added */
};

/*
 * TSan builds: libumockdev's testbed races with its own worker thread
 * ("umockdev-testbed-worker": g_malloc()/free() in the main thread
 * against g_strdup() there; no espfleet frame in either stack).  Only
 * umockdev uses GLib here, so reports through these libraries are
 * umockdev's; the preload library, which wraps our own calls, stays
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
hp_reexec(char **argv)
{
	const char	*pre, *wrapper, *asan;
	char		 self[PATH_MAX], *opts;
	char		*args[3];

	pre = getenv("LD_PRELOAD");
	if (pre != NULL && strstr(pre, "libumockdev-preload") != NULL)
		return;
	if (getenv("ESPF_HOTPLUG_REEXEC") != NULL) {
		/* Re-executing again would loop until E2BIG. */
		printf("1..1\nnot ok 1 - ran under umockdev-wrapper but "
		    "libumockdev-preload is not in LD_PRELOAD\n");
		exit(1);
	}
	wrapper = getenv("UMOCKDEV_WRAPPER");
	if (wrapper == NULL || *wrapper == '\0' || access(wrapper, X_OK) != 0)
		tap_skip_all("umockdev not installed (no umockdev-wrapper)");
	if (realpath("/proc/self/exe", self) == NULL)
		snprintf(self, sizeof self, "%s", argv[0]);
	setenv("ESPF_HOTPLUG_REEXEC", "1", 1);
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

/* The watcher's callback: feed the registry, as main.c does. */
static void
hp_cb(enum hotplug_action action, const struct port_info *pi, void *arg)
{
	struct hp_test	*t = arg;

	if (action == HOTPLUG_ADD) {
		t->adds++;
		t->last = *pi;
		reg_port_added(t->reg, pi, util_now_ms());
	} else {
		t->removes++;
		reg_port_removed(t->reg, pi, util_now_ms());
	}
}

/*
 * Put a USB device at port ("1-1.4" on bus 1), with one interface and a
 * tty child, into the testbed, and send the tty's add uevent.  idpath
 * NULL leaves ID_PATH unset.  Returns the tty's syspath (free it).
 */
static char *
hp_plug(UMockdevTestbed *tb, const char *port, uint16_t vid, uint16_t pid,
    const char *product, const char *tty, const char *idpath)
{
	GError	*err = NULL;
	char	*rec, *syspath, *idline;

	idline = idpath != NULL ? xasprintf("E: ID_PATH=%s\n", idpath) :
	    xstrdup("");
	rec = xasprintf(
	    "P: " PCI "/usb1/%s\n"
	    "E: SUBSYSTEM=usb\n"
	    "E: DEVTYPE=usb_device\n"
	    "A: idVendor=%04x\n"
	    "A: idProduct=%04x\n"
	    "A: serial=0\n"
	    "A: manufacturer=Espressif\n"
	    "A: product=%s\n"
	    "\n"
	    "P: " PCI "/usb1/%s/%s:1.0\n"
	    "E: SUBSYSTEM=usb\n"
	    "E: DEVTYPE=usb_interface\n"
	    "A: bInterfaceNumber=00\n"
	    "\n"
	    "P: " PCI "/usb1/%s/%s:1.0/tty/%s\n"
	    "N: %s\n"
	    "E: SUBSYSTEM=tty\n"
	    "E: DEVNAME=/dev/%s\n"
	    "%s"
	    "L: device=../../../%s:1.0\n",
	    port, vid, pid, product, port, port, port, port, tty, tty, tty,
	    idline, port);
	if (!umockdev_testbed_add_from_string(tb, rec, &err)) {
		tap_diag("umockdev: %s", err != NULL ? err->message : "?");
		if (err != NULL)
			g_error_free(err);
	}
	free(rec);
	free(idline);
	syspath = xasprintf("/sys" PCI "/usb1/%s/%s:1.0/tty/%s", port, port,
	    tty);
	if (!hp_announces)
		umockdev_testbed_uevent(tb, syspath, "add");
	return (syspath);
}

/* Unplug: the remove uevent first, then the device goes from sysfs. */
static void
hp_unplug(UMockdevTestbed *tb, const char *port, const char *tty)
{
	char	*tsys, *isys, *usys;

	usys = xasprintf("/sys" PCI "/usb1/%s", port);
	isys = xasprintf("%s/%s:1.0", usys, port);
	tsys = xasprintf("%s/tty/%s", isys, tty);
	umockdev_testbed_uevent(tb, tsys, "remove");
	/* Child first: each removal also drops its /sys/bus link. */
	umockdev_testbed_remove_device(tb, tsys);
	umockdev_testbed_remove_device(tb, isys);
	umockdev_testbed_remove_device(tb, usys);
	free(tsys);
	free(isys);
	free(usys);
}

/* The ID_PATH udev would give a tty on interface 0 at port "1-1.4". */
static char *
hp_idpath(const char *port)
{
	return (xasprintf("pci-0000:00:14.0-usb-0:%s:1.0",
	    strchr(port, '-') + 1));
}

struct hp_want {
	const char	*location;
	enum reg_state	 state;
	const char	*devnode;	/* NULL: any */
	int		 rows;		/* reg_count() at least; 0 any */
};

/* Whether the registry shows what w asks for. */
static int
hp_holds(const struct hp_test *t, const struct hp_want *w)
{
	const struct port_info	*pi;
	int			 row;

	if (w->rows != 0 && reg_count(t->reg) < w->rows)
		return (0);
	if (w->location == NULL)
		return (1);
	if ((row = reg_find(t->reg, w->location)) == -1)
		return (0);
	if (reg_row_state(t->reg, row) != w->state)
		return (0);
	pi = reg_row_port(t->reg, row);
	return (w->devnode == NULL || strcmp(pi->devnode, w->devnode) == 0);
}

/* Dispatch udev events until the registry shows w, or the deadline. */
static int
hp_wait(struct hotplug *h, struct hp_test *t, const struct hp_want *w)
{
	struct pollfd	pfd;
	uint64_t	deadline;
	int		left;

	deadline = util_now_ms() + WAIT_MS;
	for (;;) {
		if (hotplug_dispatch(h) < 0)
			return (0);
		if (hp_holds(t, w))
			return (1);
		if ((left = util_ms_left(deadline)) == 0)
			return (0);
		pfd.fd = hotplug_fd(h);
		pfd.events = POLLIN;
		(void)poll(&pfd, 1, left);
	}
}

/* Find out whether add_from_string() announces devices by itself. */
static void
hp_probe(UMockdevTestbed *tb)
{
	struct udev		*u;
	struct udev_monitor	*m;
	struct udev_device	*d;
	struct pollfd		 pfd;
	GError			*err = NULL;

	u = udev_new();
	m = udev_monitor_new_from_netlink(u, "udev");
	udev_monitor_filter_add_match_subsystem_devtype(m, "tty", NULL);
	udev_monitor_enable_receiving(m);
	/* A tty without a devnode: the watcher ignores it later. */
	if (!umockdev_testbed_add_from_string(tb,
	    "P: /devices/virtual/tty/ttyprobe\nE: SUBSYSTEM=tty\n", &err)) {
		tap_diag("umockdev: %s", err->message);
		g_error_free(err);
	}
	/* The send is synchronous: it is queued by now if it happened. */
	pfd.fd = udev_monitor_get_fd(m);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 500) > 0 &&
	    (d = udev_monitor_receive_device(m)) != NULL) {
		hp_announces = 1;
		udev_device_unref(d);
	}
	udev_monitor_unref(m);
	udev_unref(u);
	tap_diag("umockdev add_from_string %s the add uevent",
	    hp_announces ? "sends" : "does not send");
}

/*
 * How many uevents may be pending at once: umockdev stands in for the
 * netlink socket with an AF_UNIX datagram socket, whose queue holds
 * net.unix.max_dgram_qlen datagrams (10 in a fresh namespace), and its
 * sender aborts when that is full.  Real netlink has no such limit.
 */
static int
hp_burst(int *qlen)
{
	FILE	*f;
	int	 n = 10;

	if ((f = fopen("/proc/sys/net/unix/max_dgram_qlen", "r")) != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = 10;
		fclose(f);
	}
	*qlen = n;
	n -= 2;		/* headroom */
	return (n < 1 ? 1 : n > 32 ? 32 : n);
}

/* "VID:PID" parsing for --match. */
static void
test_parse(void)
{
	static const struct {
		const char	*s;
		int		 ok;
		uint16_t	 vid, pid;
		int		 any;
	} v[] = {
		{ "303a:0002", 1, 0x303a, 0x0002, 0 },
		{ "303A:2", 1, 0x303a, 0x0002, 0 },
		{ "10c4:EA60", 1, 0x10c4, 0xea60, 0 },
		{ "303a:*", 1, 0x303a, 0, 1 },
		{ "303a", 0, 0, 0, 0 },
		{ "303a:", 0, 0, 0, 0 },
		{ ":0002", 0, 0, 0, 0 },
		{ "303a:12345", 0, 0, 0, 0 },
		{ "3g3a:0002", 0, 0, 0, 0 },
		{ "303a:0002 ", 0, 0, 0, 0 },
		{ "", 0, 0, 0, 0 },
	};
	struct hotplug	*h;
	char		*cause = NULL;
	uint16_t	 vid, pid;
	size_t		 i;
	int		 any, rc;

	for (i = 0; i < nitems(v); i++) {
		vid = pid = 0xffff;
		any = -1;
		rc = hotplug_parse_vidpid(v[i].s, &vid, &pid, &any);
		if (v[i].ok)
			tap_ok(rc == 0 && vid == v[i].vid && pid == v[i].pid &&
			    any == v[i].any, "parse \"%s\"", v[i].s);
		else
			is_int(rc, -EINVAL, "reject \"%s\"", v[i].s);
	}
	h = hotplug_new(hp_cb, NULL);
	is_int(hotplug_add_match(h, "0x303a:2", &cause), -EINVAL,
	    "--match with a bad spec is refused");
	tap_ok(cause != NULL && strstr(cause, "0x303a:2") != NULL &&
	    strstr(cause, "303a:0002") != NULL, "and the cause names it and "
	    "shows the form: %s", cause != NULL ? cause : "(none)");
	free(cause);
	tap_ok(hotplug_matches(h, 0x1234, 0x5678),
	    "without a match every device passes");
	hotplug_add_match(h, "303a:*", NULL);
	hotplug_add_match(h, "10c4:ea60", NULL);
	tap_ok(hotplug_matches(h, 0x303a, 0x80c2) &&
	    hotplug_matches(h, 0x10c4, 0xea60) &&
	    !hotplug_matches(h, 0x10c4, 0xea70) &&
	    !hotplug_matches(h, 0x1a86, 0x7523), "match list filters");
	is_int(hotplug_fd(h), -1, "no fd before start");
	hotplug_free(h);
}

/* Child mode's callback: the ports themselves do not matter there. */
static void
hp_nop_cb(enum hotplug_action action, const struct port_info *pi, void *arg)
{
}

/* Called from another thread: must die, not corrupt libudev. */
static void *
hp_foreign(void *arg)
{
	hotplug_dispatch(arg);
	return (NULL);
}

/*
 * Child mode (a fresh exec, so no threads inherited, which TSan needs):
 * start a watcher here, then use it from another thread.  Exits 1 by
 * fatalx() if the check works; 0 if the foreign call went through.
 */
static int
hp_foreign_main(void)
{
	struct hotplug	*h;
	pthread_t	 thr;

	h = hotplug_new(hp_nop_cb, NULL);
	if (hotplug_start(h, NULL) != 0)
		return (2);
	if (pthread_create(&thr, NULL, hp_foreign, h) == 0)
		pthread_join(thr, NULL);
	return (0);
}

/* The thread check: a fresh copy of this test tries it and must die. */
static void
test_thread_check(void)
{
	char	 self[PATH_MAX], buf[512], *args[3];
	size_t	 len = 0;
	ssize_t	 n;
	pid_t	 pid;
	int	 status = -1, fds[2];

	if (realpath("/proc/self/exe", self) == NULL || pipe(fds) != 0) {
		tap_ok(0, "thread check: cannot run a child: %s",
		    strerror(errno));
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == 0) {
		dup2(fds[1], STDERR_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		args[0] = self;
		args[1] = (char *)"--foreign-thread";
		args[2] = NULL;
		execv(self, args);
		_exit(3);
	}
	close(fds[1]);
	while (len < sizeof buf - 1 &&
	    (n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fds[0]);
	if (pid > 0)
		(void)waitpid(pid, &status, 0);
	tap_ok(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
	    strstr(buf, "outside their thread") != NULL,
	    "using the watcher from another thread is fatal");
	if (!(WIFEXITED(status) && WEXITSTATUS(status) == 1))
		tap_diag("child status 0x%x, said: %s", status, buf);
}

/* Re-exec under umockdev, then plug, unplug and re-plug a bench. */
int
main(int argc, char **argv)
{
	UMockdevTestbed		*tb;
	GError			*err = NULL;
	struct hp_test		 t;
	struct hp_want		 w;
	struct hotplug		*h, *h2;
	struct reg_snapshot	 s;
	const struct port_info	*pi;
	char			*cause = NULL, *sp, *id[8], port[32], tty[32];
	char			 loc[128], dev[64];
	int			 row, i, ok, nrows, ctl, burst, qlen;
	size_t			 k;

	hp_reexec(argv);
	if (argc > 1 && strcmp(argv[1], "--foreign-thread") == 0)
		return (hp_foreign_main());
	test_parse();

	tb = umockdev_testbed_new();
	hp_probe(tb);
	memset(&t, 0, sizeof t);
	t.reg = reg_new();
	for (i = 0; i < 8; i++) {
		snprintf(port, sizeof port, "1-%d", i + 1);
		id[i] = hp_idpath(port);
	}

	/* Already plugged in at start, plus a tty that is not USB. */
	free(hp_plug(tb, "1-1", 0x303a, 0x0002, "ESP32-S2", "ttyACM0",
	    id[0]));
	if (!umockdev_testbed_add_from_string(tb,
	    "P: /devices/platform/serial8250/tty/ttyS0\n"
	    "N: ttyS0\nE: SUBSYSTEM=tty\nE: DEVNAME=/dev/ttyS0\n", &err)) {
		tap_diag("umockdev: %s", err->message);
		g_error_free(err);
	}
	h = hotplug_new(hp_cb, &t);
	is_int(hotplug_start(h, &cause), 0, "watcher starts: %s",
	    cause != NULL ? cause : "ok");
	free(cause);
	tap_ok(hotplug_fd(h) >= 0, "it has a monitor fd to poll");
	is_int(t.adds, 1, "the unit present at start is reported once");
	is_int(hotplug_count(h), 1, "the non-USB ttyS0 is not reported");
	pi = hotplug_port(h, 0);
	tap_ok(pi != NULL && pi->vid == 0x303a && pi->pid == 0x0002 &&
	    pi->kind == USB_KIND_S2_ROM && pi->ifnum == 0 &&
	    strcmp(pi->devnode, "/dev/ttyACM0") == 0 &&
	    strcmp(pi->location, id[0]) == 0 &&
	    strcmp(pi->usb_path, "1-1") == 0 && strcmp(pi->serial, "0") == 0 &&
	    strcmp(pi->manufacturer, "Espressif") == 0 &&
	    strcmp(pi->product, "ESP32-S2") == 0,
	    "port_info from the USB parent: VID:PID, serial, strings, "
	    "interface, ID_PATH location");
	row = reg_find(t.reg, id[0]);
	tap_ok(row >= 0 && reg_row_state(t.reg, row) == REG_ST_PLUGGED,
	    "the registry shows it plugged, in download mode");

	/*
	 * An add event for an app-mode unit, after a second add event for
	 * the unit already known (as when enumeration and the monitor both
	 * see one plugged in during start-up); events arrive in order.
	 */
	umockdev_testbed_uevent(tb, "/sys" PCI "/usb1/1-1/1-1:1.0/tty/ttyACM0",
	    "add");
	free(hp_plug(tb, "1-2", 0x303a, 0x80c2, "LOLIN-S2-MINI", "ttyACM1",
	    id[1]));
	w = (struct hp_want){ id[1], REG_ST_APP, "/dev/ttyACM1", 0 };
	tap_ok(hp_wait(h, &t, &w), "an add event reaches the registry");
	is_int(t.last.kind, USB_KIND_APP_CDC, "303a:80c2 is an app's CDC");
	is_int(t.adds, 2, "the repeated add of a known port is dropped");

	/* ... and its removal. */
	hp_unplug(tb, "1-2", "ttyACM1");
	w = (struct hp_want){ id[1], REG_ST_EMPTY, NULL, 0 };
	tap_ok(hp_wait(h, &t, &w), "a remove event reaches the registry");
	is_int(t.removes, 1, "one removal reported");
	is_int(hotplug_count(h), 1, "the watcher forgot the port");

	/* App mode -> ROM download mode, under a new ttyACM number. */
	free(hp_plug(tb, "1-3", 0x303a, 0x80c2, "LOLIN-S2-MINI", "ttyACM2",
	    id[2]));
	w = (struct hp_want){ id[2], REG_ST_APP, "/dev/ttyACM2", 0 };
	ok = hp_wait(h, &t, &w);
	row = reg_find(t.reg, id[2]);
	nrows = reg_count(t.reg);
	tap_ok(ok && reg_flash(t.reg, row, 0, util_now_ms(), NULL) ==
	    REG_ACT_ENTER_DL, "an app unit on 1-3: flash asks for download "
	    "mode");
	hp_unplug(tb, "1-3", "ttyACM2");
	free(hp_plug(tb, "1-3", 0x303a, 0x0002, "ESP32-S2", "ttyACM3",
	    id[2]));
	w = (struct hp_want){ id[2], REG_ST_QUEUED, "/dev/ttyACM3", 0 };
	tap_ok(hp_wait(h, &t, &w), "it comes back as ttyACM3 in download "
	    "mode and its job is queued");
	is_int(reg_find(t.reg, id[2]), row, "same row as before");
	is_int(reg_count(t.reg), nrows, "no new row");
	is_int(reg_find_devnode(t.reg, "/dev/ttyACM2"), -1,
	    "ttyACM2 is not shown any more");

	/* A CP210x bridge and an unknown device. */
	free(hp_plug(tb, "1-4", 0x10c4, 0xea60, "CP2102N USB to UART",
	    "ttyUSB0", id[3]));
	w = (struct hp_want){ id[3], REG_ST_PLUGGED, "/dev/ttyUSB0", 0 };
	tap_ok(hp_wait(h, &t, &w) && t.last.kind == USB_KIND_BRIDGE,
	    "10c4:ea60 is classified as a USB-UART bridge");
	free(hp_plug(tb, "1-5", 0x1234, 0x5678, "Gadget", "ttyACM5", id[4]));
	w = (struct hp_want){ id[4], REG_ST_PLUGGED, "/dev/ttyACM5", 0 };
	tap_ok(hp_wait(h, &t, &w) && t.last.kind == USB_KIND_UNKNOWN,
	    "1234:5678 is classified unknown");
	row = reg_find(t.reg, id[4]);
	is_int(reg_flash(t.reg, row, 0, util_now_ms(), NULL), -EPERM,
	    "and is not flashed without force");

	/* A product string carrying an OSC title sequence. */
	free(hp_plug(tb, "1-6", 0x303a, 0x0002, "\033]0;pwned\007", "ttyACM6",
	    id[5]));
	w = (struct hp_want){ id[5], REG_ST_PLUGGED, "/dev/ttyACM6", 0 };
	ok = hp_wait(h, &t, &w);
	is_str(t.last.product, "\\x1b]0;pwned\\x07",
	    "the OSC sequence arrives escaped");
	row = reg_find(t.reg, id[5]);
	reg_snapshot(t.reg, row >= 0 ? row : 0, util_now_ms(), &s);
	tap_ok(ok && strchr(s.product, '\033') == NULL &&
	    strchr(s.product, '\007') == NULL, "and the row holds no ESC/BEL");
	for (ctl = 0, k = 0; k < reg_log_count(t.reg); k++) {
		if (strpbrk(reg_log_line(t.reg, k, NULL), "\033\007") != NULL)
			ctl++;
	}
	is_int(ctl, 0, "nor does the event log");

	/* Without ID_PATH the USB path is the location. */
	free(hp_plug(tb, "1-7", 0x303a, 0x0002, "ESP32-S2", "ttyACM7", NULL));
	w = (struct hp_want){ "1-7", REG_ST_PLUGGED, "/dev/ttyACM7", 0 };
	tap_ok(hp_wait(h, &t, &w), "no ID_PATH: located at the USB path 1-7");

	/* A port that vanished without an event is found by a rescan. */
	sp = xasprintf("/sys" PCI "/usb1/1-7/1-7:1.0/tty/ttyACM7");
	umockdev_testbed_remove_device(tb, sp);
	free(sp);
	hotplug_dispatch(h);
	row = reg_find(t.reg, "1-7");
	is_int(reg_row_state(t.reg, row), REG_ST_PLUGGED,
	    "no event, no change");
	tap_ok(hotplug_rescan(h) == 1 &&
	    reg_row_state(t.reg, row) == REG_ST_EMPTY,
	    "a rescan reports the missed removal");

	/*
	 * 32 units plugged in at once: as many uevents queued unread as the
	 * emulated socket can hold, the watcher draining only between
	 * bursts, never waiting for any one unit.
	 */
	nrows = reg_count(t.reg);
	burst = hp_burst(&qlen);
	tap_diag("32 units in bursts of %d uevents (max_dgram_qlen %d)",
	    burst, qlen);
	for (i = 0; i < 32; i++) {
		snprintf(port, sizeof port, "1-8.%d.%d", i / 8 + 1, i % 8 + 1);
		snprintf(tty, sizeof tty, "ttyACM%d", 100 + i);
		sp = hp_idpath(port);
		free(hp_plug(tb, port, 0x303a, 0x0002, "ESP32-S2", tty, sp));
		free(sp);
		if ((i + 1) % burst == 0)
			hotplug_dispatch(h);
	}
	w = (struct hp_want){ NULL, REG_ST_EMPTY, NULL, nrows + 32 };
	ok = hp_wait(h, &t, &w);
	for (i = 0; i < 32; i++) {
		snprintf(port, sizeof port, "1-8.%d.%d", i / 8 + 1, i % 8 + 1);
		snprintf(dev, sizeof dev, "/dev/ttyACM%d", 100 + i);
		snprintf(loc, sizeof loc, "pci-0000:00:14.0-usb-0:%s:1.0",
		    port + 2);
		row = reg_find(t.reg, loc);
		if (row < 0 || reg_row_state(t.reg, row) != REG_ST_PLUGGED ||
		    reg_find_devnode(t.reg, dev) != row) {
			tap_diag("unit %d (%s, %s) missing", i, loc, dev);
			ok = 0;
		}
	}
	tap_ok(ok && reg_count(t.reg) == nrows + 32,
	    "32 units added at once all appear, each in its own row");

	/* A watcher started now finds all of them by enumeration. */
	{
		struct hp_test	t2;

		memset(&t2, 0, sizeof t2);
		t2.reg = reg_new();
		h2 = hotplug_new(hp_cb, &t2);
		is_int(hotplug_start(h2, NULL), 0, "another watcher starts");
		tap_ok(hotplug_count(h2) == hotplug_count(h) &&
		    t2.adds == hotplug_count(h) &&
		    reg_count(t2.reg) == (int)hotplug_count(h) &&
		    hotplug_count(h) >= 32 + 5, "it enumerates all %zu ports "
		    "present, the 32 new ones included", hotplug_count(h));
		hotplug_free(h2);
		reg_free(t2.reg);
	}

	/* --match: a second watcher that only wants the bridge. */
	{
		struct hp_test	t2;

		memset(&t2, 0, sizeof t2);
		t2.reg = reg_new();
		h2 = hotplug_new(hp_cb, &t2);
		hotplug_add_match(h2, "10c4:ea60", NULL);
		is_int(hotplug_start(h2, NULL), 0, "second watcher starts");
		tap_ok(t2.adds == 1 && hotplug_count(h2) == 1 &&
		    hotplug_port(h2, 0)->vid == 0x10c4 &&
		    reg_count(t2.reg) == 1, "--match 10c4:ea60 sees only "
		    "the bridge (%u ports)", t2.adds);
		is_int(hotplug_add_match(h2, "303a:0002", NULL), -EINVAL,
		    "--match after start is refused");
		hotplug_free(h2);
		reg_free(t2.reg);
	}

	test_thread_check();

	hotplug_free(h);
	reg_free(t.reg);
	for (i = 0; i < 8; i++)
		free(id[i]);
	g_object_unref(tb);
	return (tap_done());
}
