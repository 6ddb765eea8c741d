/*
 * Byte transport to one unit: a small vtable with two back ends, real
 * serial ports through libserialport and file descriptors (pseudo-terminals,
 * socketpairs) for emulated units and network bridges.  A port libserialport
 * knows (it has a sysfs entry: USB, PCI, platform UARTs) always goes through
 * libserialport; only what it does not know (a pty given directly, a socat
 * bridge) takes the fd back end.  Every blocking call takes a
 * CLOCK_MONOTONIC deadline and wakes at once on the job's cancel fd.
 */
#ifndef ESPF_TRANSPORT_H
#define ESPF_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct xport;
struct sp_port;

struct xport_ops {
	const char	*name;		/* "libserialport" or "fd" */
	/* Open and lock path; 0 or -errno with *cause set. */
	int	(*open)(struct xport *, const char *, char **);
	void	(*close)(struct xport *);
	/* Bytes read (> 0) as soon as any arrive, or -errno. */
	int	(*read)(struct xport *, void *, size_t, uint64_t);
	/* All len bytes written: 0, or -errno. */
	int	(*write)(struct xport *, const void *, size_t, uint64_t);
	/* Assert (1) or release (0) DTR and RTS together. */
	int	(*set_lines)(struct xport *, int, int);
	/* Assert or release one line (XPORT_DTR or XPORT_RTS) alone. */
	int	(*set_line)(struct xport *, int, int);
	int	(*set_baud)(struct xport *, unsigned);
	/* Discard whatever the unit sent that nobody has read yet. */
	int	(*flush_in)(struct xport *);
};

/* Lines for set_line. */
#define XPORT_DTR	0x1
#define XPORT_RTS	0x2

/* Called with the resulting line state after every DTR/RTS write. */
typedef void (*xport_lines_cb)(void *, int dtr, int rts);

struct xport {
	const struct xport_ops	*ops;
	char			*path;		/* as the user gave it */
	int			 fd;		/* I/O fd, -1 when closed */
	int			 lock_fd;	/* holds the flock, or -1 */
	int			 cancel_fd;	/* readable = cancelled; -1 none */
	struct sp_port		*sp;		/* libserialport back end */
	int			 flags;
#define XPORT_NO_LINES	0x1	/* no modem lines (pty, socket) */
#define XPORT_OWN_FD	0x2	/* close fd on close */
#define XPORT_IS_TTY	0x4	/* termios applies */
	int			 dtr, rts;	/* last line state set */
	unsigned		 baud;
	xport_lines_cb		 lines_cb;
	void			*lines_arg;
};

/* Prepare an unopened transport; cancel_fd may be -1. */
void	xport_init(struct xport *, int cancel_fd);
/*
 * Open path with the right back end: libserialport when it knows the port
 * (it has a sysfs entry), else the fd back end for any other tty, else
 * refuse.  A port libserialport knows but cannot open is an error, never
 * handed to the fd back end.  The port is locked exclusively; -EBUSY says
 * who holds it, -EACCES names the group or udev rule that would let us in.
 */
int	xport_open(struct xport *, const char *path, char **cause);
/* The back end in use: "libserialport", "fd", or "none" when closed. */
const char *xport_backend(const struct xport *);
/*
 * USB vendor and product id of the port as libserialport reports them:
 * 0, or -ENODEV when it is no USB port (or not a libserialport one).
 */
int	xport_usb_id(const struct xport *, uint16_t *vid, uint16_t *pid);
/* Use an already open fd (socketpair or pty) with the fd back end. */
int	xport_open_fd(struct xport *, int fd, const char *name, int own,
	    char **cause);
void	xport_close(struct xport *);
/* Let an in-process emulator see DTR/RTS changes of an fd transport. */
void	xport_set_lines_hook(struct xport *, xport_lines_cb, void *);
/* Can this transport reset the unit (modem lines or a lines hook)? */
int	xport_can_reset(const struct xport *);

int	xport_read(struct xport *, void *, size_t, uint64_t deadline_ms);
int	xport_write(struct xport *, const void *, size_t, uint64_t deadline_ms);
int	xport_set_lines(struct xport *, int dtr, int rts);
/* One line alone (TIOCMBIS/TIOCMBIC), as pyserial's setDTR/setRTS do. */
int	xport_set_dtr(struct xport *, int on);
int	xport_set_rts(struct xport *, int on);
int	xport_set_baud(struct xport *, unsigned);
int	xport_flush_in(struct xport *);
/* Wait ms milliseconds unless cancelled: 0 or -ECANCELED. */
int	xport_pause(struct xport *, unsigned ms);

/*
 * Reset sequences (PROTOCOL.md 8.1), DTR -> GPIO0 and RTS -> EN, both
 * active low, write for write as esptool issues them.  Classic writes one
 * line at a time and re-writes DTR after every RTS write; "tight" sets
 * both lines at once and ends with a lone DTR=0.  Both enter the ROM
 * bootloader; hard reset boots the application (usb: the slower
 * native-USB timing).
 */
int	xport_reset_classic(struct xport *, unsigned delay_ms);
int	xport_reset_tight(struct xport *, unsigned delay_ms);
int	xport_reset_hard(struct xport *, int usb);

/*
 * Check that path names a port before anything is opened: it must exist
 * and be a character device.  0 or -errno with *cause set.
 */
int	xport_check(const char *path, char **cause);
/* Follow path's symbolic links to the device node's own name. */
int	xport_resolve(const char *path, char *out, size_t cap);
/* Process holding path open or locked, or -1: "pid N (comm)" into buf. */
int	xport_holder(const char *path, char *buf, size_t cap);

#endif
