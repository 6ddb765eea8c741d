/*
 * The udev watcher: finds USB serial ports, and tells the caller when one
 * appears or goes away.
 *
 * Everything here runs on the thread that called hotplug_start(): libudev
 * objects are tied to the thread that made them (libudev(3)), so they
 * never leave this module.  What leaves it is a struct port_info of plain,
 * sanitized strings, copied, safe to hand to any thread.
 *
 * Typical use from the main loop:
 *
 *	h = hotplug_new(port_cb, reg);
 *	hotplug_add_match(h, "303a:0002", &cause);	(optional, repeatable)
 *	hotplug_start(h, &cause);	(reports ports already plugged in)
 *	poll() on hotplug_fd(h); when readable: hotplug_dispatch(h);
 *	hotplug_free(h);
 */
#ifndef ESPF_HOTPLUG_H
#define ESPF_HOTPLUG_H

#include <stddef.h>
#include <stdint.h>

#include "chip.h"

#define HOTPLUG_DEVNODE_MAX	64
#define HOTPLUG_LOCATION_MAX	128
#define HOTPLUG_STR_MAX		64

/*
 * One serial port and the USB device behind it.  All strings are
 * NUL-terminated and safe to print: device-controlled text (serial,
 * manufacturer, product) went through util_sanitize(), so control bytes
 * and escape sequences arrive as \xNN.  Empty string = not known.
 */
struct port_info {
	char		 devnode[HOTPLUG_DEVNODE_MAX];	/* "/dev/ttyACM0" */
	/*
	 * The identity of the physical port: udev's ID_PATH
	 * ("pci-0000:00:14.0-usb-0:1.4:1.0") when udev set it, otherwise
	 * the USB device's sysfs name ("1-1.4", "1-1.4/if2" for a tty on a
	 * non-zero interface).  Stays the same when a unit re-enumerates.
	 */
	char		 location[HOTPLUG_LOCATION_MAX];
	char		 usb_path[HOTPLUG_STR_MAX];	/* "1-1.4" */
	uint16_t	 vid;
	uint16_t	 pid;
	int		 ifnum;		/* bInterfaceNumber; -1 unknown */
	char		 serial[HOTPLUG_STR_MAX];
	char		 manufacturer[HOTPLUG_STR_MAX];
	char		 product[HOTPLUG_STR_MAX];
	enum chip_usb_kind kind;	/* chip_usb_classify(vid, pid) */
};

enum hotplug_action {
	HOTPLUG_ADD,
	HOTPLUG_REMOVE
};

/*
 * Called on the owning thread from hotplug_start(), hotplug_dispatch()
 * and hotplug_rescan().  The port_info is only valid during the call.
 * A removal carries the port_info that was reported when it was added.
 */
typedef void (*hotplug_cb)(enum hotplug_action, const struct port_info *,
    void *arg);

struct hotplug;

/* A watcher that reports to cb; nothing is opened until hotplug_start(). */
struct hotplug	*hotplug_new(hotplug_cb cb, void *arg);

/*
 * Only report ports whose USB device is VID:PID ("303a:0002", hex, 1 to
 * 4 digits each; "303a:*" for any PID of a vendor).  Repeatable; with no
 * match every USB serial port is reported.  Must come before
 * hotplug_start().  -EINVAL (with *cause) on a malformed spec.
 */
int		 hotplug_add_match(struct hotplug *, const char *spec,
		     char **cause);

/* Parse "VID:PID" ("303a:*" gives *any_pid = 1); 0 or -EINVAL. */
int		 hotplug_parse_vidpid(const char *spec, uint16_t *vid,
		     uint16_t *pid, int *any_pid);

/* Whether the match list lets VID:PID through. */
int		 hotplug_matches(const struct hotplug *, uint16_t vid,
		     uint16_t pid);

/*
 * Connect to udev: enable the monitor FIRST, then enumerate the tty
 * subsystem, so that a port plugged in during start-up is reported by
 * one or the other (duplicates are dropped).  Every port already present
 * is reported through the callback before this returns.  Binds the
 * watcher to the calling thread.  0 or a negative errno with *cause.
 */
int		 hotplug_start(struct hotplug *, char **cause);

/* The fd to poll() for POLLIN; -1 before hotplug_start(). */
int		 hotplug_fd(const struct hotplug *);

/*
 * Read every pending udev event and report adds and removes.  Never
 * blocks.  Returns the number of callbacks made, or a negative errno.
 * If the kernel dropped events (socket buffer overrun) it rescans.
 */
int		 hotplug_dispatch(struct hotplug *);

/*
 * Enumerate again and report the difference from what was last
 * reported: removals for ports that vanished unseen, adds for new ones.
 * Returns the number of callbacks made, or a negative errno.
 */
int		 hotplug_rescan(struct hotplug *);

/* Ports currently known (reported added and not yet removed). */
size_t		 hotplug_count(const struct hotplug *);
const struct port_info *hotplug_port(const struct hotplug *, size_t);

/* Release everything; on the thread that called hotplug_start(). */
void		 hotplug_free(struct hotplug *);

#endif
