/*
 * The udev watcher: a libudev monitor on the tty subsystem, enabled
 * before the first enumeration, turning each USB serial port into a
 * struct port_info of plain, sanitized strings.  libudev objects are
 * created, used and freed on one thread only (libudev(3)); the watcher
 * checks that it is always called from that thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <libudev.h>

#include "chip.h"
#include "hotplug.h"
#include "util.h"

/* A port reported as added, keyed by its sysfs path. */
struct hotplug_port {
	char		*syspath;
	struct port_info pi;
};

struct hotplug_match {
	uint16_t	 vid;
	uint16_t	 pid;
	int		 any_pid;
};

struct hotplug {
	hotplug_cb		 cb;
	void			*arg;
	struct hotplug_match	*match;
	size_t			 nmatch;

	int			 started;
	pthread_t		 owner;
	struct udev		*udev;
	struct udev_monitor	*mon;

	struct hotplug_port	*ports;
	size_t			 nports;
	size_t			 capports;
};

/* A watcher reporting to cb; udev is not touched until hotplug_start(). */
struct hotplug *
hotplug_new(hotplug_cb cb, void *arg)
{
	struct hotplug	*h;

	h = xcalloc(1, sizeof *h);
	h->cb = cb;
	h->arg = arg;
	return (h);
}

/* Refuse, loudly, any use of the udev objects from a foreign thread. */
static void
hotplug_check_thread(const struct hotplug *h, const char *fn)
{
	if (h->started && !pthread_equal(h->owner, pthread_self()))
		fatalx("%s: libudev objects used outside their thread", fn);
}

/* Parse 1 to 4 hex digits ending at *end; 0 or -EINVAL. */
static int
hotplug_parse_hex16(const char *s, const char *end, uint16_t *out)
{
	unsigned	v = 0;
	const char	*p;
	int		 c;

	if (end - s < 1 || end - s > 4)
		return (-EINVAL);
	for (p = s; p < end; p++) {
		c = (unsigned char)*p;
		if (c >= '0' && c <= '9')
			v = v * 16 + (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = v * 16 + (unsigned)(c - 'A' + 10);
		else
			return (-EINVAL);
	}
	*out = (uint16_t)v;
	return (0);
}

/* Parse "VID:PID" or "VID:*". */
int
hotplug_parse_vidpid(const char *spec, uint16_t *vid, uint16_t *pid,
    int *any_pid)
{
	const char	*colon;

	if (spec == NULL || (colon = strchr(spec, ':')) == NULL)
		return (-EINVAL);
	if (hotplug_parse_hex16(spec, colon, vid) != 0)
		return (-EINVAL);
	if (strcmp(colon + 1, "*") == 0) {
		*pid = 0;
		*any_pid = 1;
		return (0);
	}
	*any_pid = 0;
	return (hotplug_parse_hex16(colon + 1, colon + 1 + strlen(colon + 1),
	    pid));
}

/* Add a --match VID:PID filter. */
int
hotplug_add_match(struct hotplug *h, const char *spec, char **cause)
{
	struct hotplug_match	m;
	char			clean[64];

	if (hotplug_parse_vidpid(spec, &m.vid, &m.pid, &m.any_pid) != 0) {
		if (cause != NULL) {
			util_sanitize(clean, sizeof clean, spec,
			    spec != NULL ? strlen(spec) : 0);
			*cause = xasprintf("--match \"%s\": expected VID:PID "
			    "in hex, like 303a:0002 (or 303a:* for any PID)",
			    clean);
		}
		return (-EINVAL);
	}
	if (h->started) {
		if (cause != NULL)
			*cause = xasprintf("--match %s: the watcher is "
			    "already running", spec);
		return (-EINVAL);
	}
	h->match = xrealloc(h->match, (h->nmatch + 1) * sizeof *h->match);
	h->match[h->nmatch++] = m;
	return (0);
}

/* Whether the filters let this USB device through (no filter: all). */
int
hotplug_matches(const struct hotplug *h, uint16_t vid, uint16_t pid)
{
	size_t	i;

	if (h->nmatch == 0)
		return (1);
	for (i = 0; i < h->nmatch; i++) {
		if (h->match[i].vid == vid &&
		    (h->match[i].any_pid || h->match[i].pid == pid))
			return (1);
	}
	return (0);
}

/* Copy untrusted text (NULL = unknown) into a fixed field. */
static void
hotplug_copy(char *dst, size_t cap, const char *src)
{
	if (src == NULL)
		src = "";
	util_sanitize(dst, cap, src, strlen(src));
}

/* Read a hex sysfs attribute such as idVendor; 0 or -EINVAL. */
static int
hotplug_attr_hex(struct udev_device *d, const char *name, uint16_t *out)
{
	const char	*v;
	size_t		 n;

	if ((v = udev_device_get_sysattr_value(d, name)) == NULL)
		return (-EINVAL);
	n = strcspn(v, " \t\r\n");
	return (hotplug_parse_hex16(v, v + n, out));
}

/* A devnode we are willing to hand on and, later, open. */
static int
hotplug_devnode_ok(const char *s)
{
	const char	*p;

	if (s == NULL || strncmp(s, "/dev/", 5) != 0 ||
	    strlen(s) >= HOTPLUG_DEVNODE_MAX || strstr(s, "..") != NULL)
		return (0);
	for (p = s; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("/._-:+", *p) != NULL))
			return (0);
	}
	return (1);
}

/*
 * Describe a tty device as a port_info: 0 if it is a USB serial port we
 * report, -ENODEV if it is not one (no devnode, not USB, filtered out).
 */
static int
hotplug_describe(const struct hotplug *h, struct udev_device *dev,
    struct port_info *pi)
{
	struct udev_device	*usb, *intf;
	const char		*devnode, *idpath;
	uint16_t		 ifnum;

	memset(pi, 0, sizeof *pi);
	devnode = udev_device_get_devnode(dev);
	if (!hotplug_devnode_ok(devnode))
		return (-ENODEV);
	/* Parents belong to dev and are freed with it. */
	usb = udev_device_get_parent_with_subsystem_devtype(dev, "usb",
	    "usb_device");
	if (usb == NULL)
		return (-ENODEV);
	if (hotplug_attr_hex(usb, "idVendor", &pi->vid) != 0 ||
	    hotplug_attr_hex(usb, "idProduct", &pi->pid) != 0)
		return (-ENODEV);
	if (!hotplug_matches(h, pi->vid, pi->pid))
		return (-ENODEV);

	snprintf(pi->devnode, sizeof pi->devnode, "%s", devnode);
	pi->ifnum = -1;
	intf = udev_device_get_parent_with_subsystem_devtype(dev, "usb",
	    "usb_interface");
	if (intf != NULL &&
	    hotplug_attr_hex(intf, "bInterfaceNumber", &ifnum) == 0)
		pi->ifnum = ifnum;
	hotplug_copy(pi->usb_path, sizeof pi->usb_path,
	    udev_device_get_sysname(usb));
	hotplug_copy(pi->serial, sizeof pi->serial,
	    udev_device_get_sysattr_value(usb, "serial"));
	hotplug_copy(pi->manufacturer, sizeof pi->manufacturer,
	    udev_device_get_sysattr_value(usb, "manufacturer"));
	hotplug_copy(pi->product, sizeof pi->product,
	    udev_device_get_sysattr_value(usb, "product"));

	/* ID_PATH names the physical port; fall back to the USB path. */
	idpath = udev_device_get_property_value(dev, "ID_PATH");
	if (idpath == NULL || *idpath == '\0')
		idpath = udev_device_get_property_value(usb, "ID_PATH");
	if (idpath != NULL && *idpath != '\0')
		hotplug_copy(pi->location, sizeof pi->location, idpath);
	else if (pi->ifnum > 0)
		snprintf(pi->location, sizeof pi->location, "%s/if%d",
		    pi->usb_path, pi->ifnum);
	else
		snprintf(pi->location, sizeof pi->location, "%s",
		    pi->usb_path);
	if (pi->location[0] == '\0')
		return (-ENODEV);

	pi->kind = chip_usb_classify(pi->vid, pi->pid);
	return (0);
}

/* Whether two descriptions of a port say the same thing. */
static int
hotplug_same(const struct port_info *a, const struct port_info *b)
{
	return (strcmp(a->devnode, b->devnode) == 0 &&
	    strcmp(a->location, b->location) == 0 &&
	    strcmp(a->usb_path, b->usb_path) == 0 &&
	    a->vid == b->vid && a->pid == b->pid && a->ifnum == b->ifnum &&
	    strcmp(a->serial, b->serial) == 0 &&
	    strcmp(a->manufacturer, b->manufacturer) == 0 &&
	    strcmp(a->product, b->product) == 0 && a->kind == b->kind);
}

/* Index of a known port by syspath, or -1. */
static ssize_t
hotplug_find(const struct hotplug *h, const char *syspath)
{
	size_t	i;

	for (i = 0; i < h->nports; i++) {
		if (strcmp(h->ports[i].syspath, syspath) == 0)
			return ((ssize_t)i);
	}
	return (-1);
}

/* Report and forget the known port at index i. */
static void
hotplug_drop(struct hotplug *h, size_t i)
{
	struct hotplug_port	gone;

	gone = h->ports[i];
	h->ports[i] = h->ports[--h->nports];
	h->cb(HOTPLUG_REMOVE, &gone.pi, h->arg);
	free(gone.syspath);
}

/* Remember and report a new port. */
static void
hotplug_keep(struct hotplug *h, const char *syspath,
    const struct port_info *pi)
{
	struct hotplug_port	*p;

	if (h->nports == h->capports) {
		h->capports = h->capports ? h->capports * 2 : 32;
		h->ports = xrealloc(h->ports, h->capports * sizeof *h->ports);
	}
	p = &h->ports[h->nports++];
	p->syspath = xstrdup(syspath);
	p->pi = *pi;
	h->cb(HOTPLUG_ADD, &p->pi, h->arg);
}

/*
 * An add (or a port found by enumeration): report it unless it is known
 * as it is; if its syspath is known with other details, the removal was
 * missed, so report that first.  Returns the number of callbacks made.
 */
static int
hotplug_added(struct hotplug *h, struct udev_device *dev)
{
	struct port_info	 pi;
	const char		*syspath;
	ssize_t			 i;
	int			 n = 0;

	if ((syspath = udev_device_get_syspath(dev)) == NULL)
		return (0);
	if (hotplug_describe(h, dev, &pi) != 0)
		return (0);
	if ((i = hotplug_find(h, syspath)) != -1) {
		if (hotplug_same(&h->ports[i].pi, &pi))
			return (0);
		hotplug_drop(h, (size_t)i);
		n++;
	}
	hotplug_keep(h, syspath, &pi);
	return (n + 1);
}

/* A removal: report the port as it was added (sysfs may be gone). */
static int
hotplug_removed(struct hotplug *h, struct udev_device *dev)
{
	const char	*syspath;
	ssize_t		 i;

	if ((syspath = udev_device_get_syspath(dev)) == NULL)
		return (0);
	if ((i = hotplug_find(h, syspath)) == -1)
		return (0);
	hotplug_drop(h, (size_t)i);
	return (1);
}

/* Enumerate the tty subsystem and report what changed; callbacks made. */
int
hotplug_rescan(struct hotplug *h)
{
	struct udev_enumerate	*en;
	struct udev_list_entry	*e;
	struct udev_device	*dev;
	char			**seen = NULL;
	size_t			 nseen = 0, i, j;
	int			 n = 0, error;

	if (!h->started)
		return (-EINVAL);
	hotplug_check_thread(h, __func__);
	if ((en = udev_enumerate_new(h->udev)) == NULL)
		return (-ENOMEM);
	if ((error = udev_enumerate_add_match_subsystem(en, "tty")) < 0 ||
	    (error = udev_enumerate_scan_devices(en)) < 0) {
		udev_enumerate_unref(en);
		return (error);
	}
	udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en)) {
		dev = udev_device_new_from_syspath(h->udev,
		    udev_list_entry_get_name(e));
		if (dev == NULL)
			continue;
		n += hotplug_added(h, dev);
		seen = xrealloc(seen, (nseen + 1) * sizeof *seen);
		seen[nseen++] = xstrdup(udev_device_get_syspath(dev));
		udev_device_unref(dev);
	}
	udev_enumerate_unref(en);

	/* Known ports the scan did not find left without an event. */
	for (i = 0; i < h->nports; /* nothing */) {
		for (j = 0; j < nseen; j++) {
			if (strcmp(seen[j], h->ports[i].syspath) == 0)
				break;
		}
		if (j == nseen) {
			hotplug_drop(h, i);
			n++;
		} else
			i++;
	}
	for (j = 0; j < nseen; j++)
		free(seen[j]);
	free(seen);
	return (n);
}

/* Connect to udev: monitor first, then enumerate. */
int
hotplug_start(struct hotplug *h, char **cause)
{
	int	fd, flags, error, n;

	if (h->started) {
		if (cause != NULL)
			*cause = xasprintf("udev watcher already started");
		return (-EINVAL);
	}
	if ((h->udev = udev_new()) == NULL) {
		error = errno != 0 ? -errno : -ENOMEM;
		if (cause != NULL)
			*cause = xasprintf("udev: cannot start: %s",
			    strerror(-error));
		return (error);
	}
	h->mon = udev_monitor_new_from_netlink(h->udev, "udev");
	if (h->mon == NULL) {
		error = errno != 0 ? -errno : -ENODEV;
		if (cause != NULL)
			*cause = xasprintf("udev monitor: %s; is udevd "
			    "running (is /run/udev there)?", strerror(-error));
		goto fail_udev;
	}
	if ((error = udev_monitor_filter_add_match_subsystem_devtype(h->mon,
	    "tty", NULL)) < 0 ||
	    (error = udev_monitor_enable_receiving(h->mon)) < 0) {
		if (cause != NULL)
			*cause = xasprintf("udev monitor: cannot listen: %s",
			    strerror(-error));
		goto fail_monitor;
	}
	/* A hub full of boards plugged at once: ask for room (may fail). */
	(void)udev_monitor_set_receive_buffer_size(h->mon, 4 * 1024 * 1024);
	fd = udev_monitor_get_fd(h->mon);
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		error = -errno;
		if (cause != NULL)
			*cause = xasprintf("udev monitor: %s",
			    strerror(errno));
		goto fail_monitor;
	}

	h->started = 1;
	h->owner = pthread_self();
	if ((n = hotplug_rescan(h)) < 0) {
		error = n;
		if (cause != NULL)
			*cause = xasprintf("udev: cannot list tty devices: %s",
			    strerror(-error));
		h->started = 0;
		goto fail_monitor;
	}
	return (0);

fail_monitor:
	udev_monitor_unref(h->mon);
	h->mon = NULL;
fail_udev:
	udev_unref(h->udev);
	h->udev = NULL;
	return (error);
}

/* The monitor's fd, for poll(). */
int
hotplug_fd(const struct hotplug *h)
{
	if (!h->started)
		return (-1);
	return (udev_monitor_get_fd(h->mon));
}

/* Drain the monitor and report adds and removes. */
int
hotplug_dispatch(struct hotplug *h)
{
	struct udev_device	*dev;
	const char		*action;
	int			 n = 0, error;

	if (!h->started)
		return (-EINVAL);
	hotplug_check_thread(h, __func__);
	for (;;) {
		errno = 0;
		if ((dev = udev_monitor_receive_device(h->mon)) == NULL)
			break;
		action = udev_device_get_action(dev);
		if (action != NULL && strcmp(action, "add") == 0)
			n += hotplug_added(h, dev);
		else if (action != NULL && strcmp(action, "remove") == 0)
			n += hotplug_removed(h, dev);
		udev_device_unref(dev);
	}
	if (errno == ENOBUFS) {
		/* The kernel dropped events: find out what we missed. */
		if ((error = hotplug_rescan(h)) < 0)
			return (error);
		n += error;
	}
	return (n);
}

/* Ports currently known. */
size_t
hotplug_count(const struct hotplug *h)
{
	return (h->nports);
}

/* Known port i, or NULL. */
const struct port_info *
hotplug_port(const struct hotplug *h, size_t i)
{
	if (i >= h->nports)
		return (NULL);
	return (&h->ports[i].pi);
}

/* Free the watcher and every udev object, on their thread. */
void
hotplug_free(struct hotplug *h)
{
	size_t	i;

	if (h == NULL)
		return;
	hotplug_check_thread(h, __func__);
	if (h->mon != NULL)
		udev_monitor_unref(h->mon);
	if (h->udev != NULL)
		udev_unref(h->udev);
	for (i = 0; i < h->nports; i++)
		free(h->ports[i].syspath);
	free(h->ports);
	free(h->match);
	free(h);
}
