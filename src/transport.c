/*
 * Byte transport to one unit.  Two back ends share the poll()-based I/O:
 * "libserialport" opens every port libserialport knows (a sysfs entry, as
 * every USB serial port has), "fd" drives what it does not know (a
 * pseudo-terminal given directly, a socat/ser2net bridge) or an already
 * open fd, so emulated units go through the same code.  Every wait polls
 * the port and the job's cancel fd with the time left to the command's
 * deadline.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <libserialport.h>

#include "transport.h"
#include "util.h"

static int	xport_sp_open(struct xport *, const char *, char **);
static void	xport_sp_close(struct xport *);
static int	xport_sp_set_lines(struct xport *, int, int);
static int	xport_sp_set_line(struct xport *, int, int);
static int	xport_sp_set_baud(struct xport *, unsigned);
static int	xport_sp_flush_in(struct xport *);
static int	xport_fd_open(struct xport *, const char *, char **);
static void	xport_fd_close(struct xport *);
static int	xport_fd_set_lines(struct xport *, int, int);
static int	xport_fd_set_line(struct xport *, int, int);
static int	xport_fd_set_baud(struct xport *, unsigned);
static int	xport_fd_flush_in(struct xport *);
static int	xport_io_read(struct xport *, void *, size_t, uint64_t);
static int	xport_io_write(struct xport *, const void *, size_t,
		    uint64_t);

static const struct xport_ops xport_sp_ops = {
	.name = "libserialport",
	.open = xport_sp_open,
	.close = xport_sp_close,
	.read = xport_io_read,
	.write = xport_io_write,
	.set_lines = xport_sp_set_lines,
	.set_line = xport_sp_set_line,
	.set_baud = xport_sp_set_baud,
	.flush_in = xport_sp_flush_in,
};

static const struct xport_ops xport_fd_ops = {
	.name = "fd",
	.open = xport_fd_open,
	.close = xport_fd_close,
	.read = xport_io_read,
	.write = xport_io_write,
	.set_lines = xport_fd_set_lines,
	.set_line = xport_fd_set_line,
	.set_baud = xport_fd_set_baud,
	.flush_in = xport_fd_flush_in,
};

/* The baud rates termios can name, for the fd back end. */
static const struct {
	unsigned	baud;
	speed_t		speed;
} xport_speeds[] = {
	{ 9600, B9600 }, { 19200, B19200 }, { 38400, B38400 },
	{ 57600, B57600 }, { 115200, B115200 }, { 230400, B230400 },
	{ 460800, B460800 }, { 500000, B500000 }, { 576000, B576000 },
	{ 921600, B921600 }, { 1000000, B1000000 }, { 1152000, B1152000 },
	{ 1500000, B1500000 }, { 2000000, B2000000 }, { 3000000, B3000000 },
};

/* ====================== common: waiting, reading, writing ============== */

/* Map errno values that mean "the device went away" to -ENODEV. */
static int
xport_errno(int e)
{
	if (e == EIO || e == ENXIO || e == ENODEV || e == EPIPE ||
	    e == ECONNRESET || e == EBADF)
		return (-ENODEV);
	return (-e);
}

/* Wait for events on the port or for cancellation, until the deadline. */
static int
xport_wait(struct xport *x, short events, uint64_t deadline)
{
	struct pollfd	pfd[2];
	nfds_t		n;
	int		r;

	for (;;) {
		pfd[0].fd = x->fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		n = 1;
		if (x->cancel_fd != -1) {
			pfd[1].fd = x->cancel_fd;
			pfd[1].events = POLLIN;
			pfd[1].revents = 0;
			n = 2;
		}
		r = poll(pfd, n, util_ms_left(deadline));
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return (-errno);
		}
		if (n == 2 && pfd[1].revents != 0)
			return (-ECANCELED);
		if (r == 0)
			return (-ETIMEDOUT);
		if (pfd[0].revents & events)
			return (0);
		if (pfd[0].revents & (POLLHUP | POLLERR | POLLNVAL))
			return (-ENODEV);
		if (util_ms_left(deadline) == 0)
			return (-ETIMEDOUT);
	}
}

/* Read whatever has arrived (at least one byte) before the deadline. */
static int
xport_io_read(struct xport *x, void *buf, size_t len, uint64_t deadline)
{
	ssize_t	n;
	int	error;

	if (len > INT_MAX)
		len = INT_MAX;
	for (;;) {
		if ((error = xport_wait(x, POLLIN, deadline)) != 0)
			return (error);
		n = read(x->fd, buf, len);
		if (n > 0)
			return ((int)n);
		if (n == 0)
			return (-ENODEV);	/* the other end is gone */
		if (errno != EAGAIN && errno != EINTR)
			return (xport_errno(errno));
	}
}

/* Write all of buf before the deadline. */
static int
xport_io_write(struct xport *x, const void *buf, size_t len,
    uint64_t deadline)
{
	const uint8_t	*p = buf;
	ssize_t		 n;
	int		 error;

	while (len > 0) {
		if ((error = xport_wait(x, POLLOUT, deadline)) != 0)
			return (error);
		n = write(x->fd, p, len);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return (xport_errno(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return (0);
}

/* Discard bytes already queued on the fd, whatever kind of fd it is. */
static int
xport_drain(struct xport *x)
{
	uint8_t	buf[512];
	ssize_t	n;

	for (;;) {
		n = read(x->fd, buf, sizeof(buf));
		if (n > 0)
			continue;
		if (n == 0)
			return (-ENODEV);
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return (0);
		return (xport_errno(errno));
	}
}

/* ============================ locking ================================= */

/* Who holds a flock on the inode (dev, ino), from /proc/locks; -1 none. */
static pid_t
xport_lock_holder(dev_t dev, ino_t ino)
{
	FILE		*f;
	char		 line[256], type[16];
	unsigned	 maj, min;
	unsigned long	 inode;
	long		 pid;
	pid_t		 found = -1;

	if ((f = fopen("/proc/locks", "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof(line), f) != NULL) {
		/* "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5 0 EOF" */
		if (sscanf(line, "%*s %15s %*s %*s %ld %x:%x:%lu", type, &pid,
		    &maj, &min, &inode) != 5)
			continue;
		if (strcmp(type, "FLOCK") != 0 || pid <= 0)
			continue;
		if (maj == major(dev) && min == minor(dev) &&
		    inode == (unsigned long)ino) {
			found = (pid_t)pid;
			break;
		}
	}
	fclose(f);
	return (found);
}

/*
 * Does fd N of a process (dir is its /proc/PID/fd), a /dev/ptmx, hold the
 * master of pseudo-terminal number index?  Its fdinfo says ("tty-index:").
 */
static int
xport_is_master(const char *dir, const char *fd, int index)
{
	FILE	*f;
	char	 path[64 + 256 + 16], line[128];
	int	 n, found = 0;

	snprintf(path, sizeof(path), "%sinfo/%s", dir, fd);
	if ((f = fopen(path, "r")) == NULL)
		return (0);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "tty-index: %d", &n) == 1 && n == index) {
			found = 1;
			break;
		}
	}
	fclose(f);
	return (found);
}

/*
 * Another process with the character device rdev open, from /proc; -1.
 * A process that also holds the pseudo-terminal's master is the device
 * itself (an emulator keeping its end alive), not a competing user.
 */
static pid_t
xport_open_holder(dev_t rdev)
{
	DIR		*proc, *fds;
	struct dirent	*pe, *fe;
	struct stat	 st;
	char		 dir[64], link[64 + 256 + 2];
	char		*end;
	long		 pid;
	pid_t		 found = -1;
	int		 pts = -1, has, owns;

	/* Unix98 ptys: majors 136-143, 256 minors each. */
	if (major(rdev) >= 136 && major(rdev) <= 143)
		pts = (int)((major(rdev) - 136) * 256 + minor(rdev));
	if ((proc = opendir("/proc")) == NULL)
		return (-1);
	while (found == -1 && (pe = readdir(proc)) != NULL) {
		pid = strtol(pe->d_name, &end, 10);
		/*
		 * Not us, nor the process that started us: a script that
		 * keeps the port open (and passed it down) is no rival.
		 */
		if (*end != '\0' || pid <= 0 || pid == (long)getpid() ||
		    pid == (long)getppid())
			continue;
		snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
		if ((fds = opendir(dir)) == NULL)
			continue;	/* gone, or not ours to see */
		has = owns = 0;
		while ((fe = readdir(fds)) != NULL) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(link, sizeof(link), "%s/%s", dir, fe->d_name);
			if (stat(link, &st) != 0 || !S_ISCHR(st.st_mode))
				continue;
			if (st.st_rdev == rdev)
				has = 1;
			else if (pts != -1 && st.st_rdev == makedev(5, 2) &&
			    xport_is_master(dir, fe->d_name, pts))
				owns = 1;
		}
		closedir(fds);
		if (has && !owns)
			found = (pid_t)pid;
	}
	closedir(proc);
	return (found);
}

/* Describe the process holding path: "pid 1234, picocom"; -1 if unknown. */
int
xport_holder(const char *path, char *buf, size_t cap)
{
	struct stat	 st;
	pid_t		 pid;
	char		 file[64], comm[64], safe[64];
	FILE		*f;
	size_t		 n = 0;

	if (stat(path, &st) != 0)
		return (-1);
	if ((pid = xport_lock_holder(st.st_dev, st.st_ino)) == -1 &&
	    (pid = xport_open_holder(st.st_rdev)) == -1)
		return (-1);
	snprintf(file, sizeof(file), "/proc/%ld/comm", (long)pid);
	if ((f = fopen(file, "r")) != NULL) {
		n = fread(comm, 1, sizeof(comm) - 1, f);
		fclose(f);
		while (n > 0 && (comm[n - 1] == '\n' || comm[n - 1] == '\0'))
			n--;
	}
	if (n > 0) {
		/* The command name is chosen by that program: untrusted. */
		util_sanitize(safe, sizeof(safe), comm, n);
		snprintf(buf, cap, "pid %ld, %s", (long)pid, safe);
	} else
		snprintf(buf, cap, "pid %ld", (long)pid);
	return ((int)pid);
}

/* The -EBUSY answer, naming the holder when the system can tell. */
static int
xport_busy(const char *path, char **cause)
{
	char	who[128];

	if (xport_holder(path, who, sizeof(who)) != -1)
		*cause = xasprintf("%s is in use by another program (%s); "
		    "close it and retry", path, who);
	else
		*cause = xasprintf("%s is in use by another program; close it "
		    "and retry", path);
	return (-EBUSY);
}

/*
 * The -EACCES answer: name the group that owns the node (the usual fix is
 * joining it) and our udev rule (data/60-espfleet.rules), which hands the
 * units to plugdev instead.
 */
static int
xport_denied(const char *path, int error, char **cause)
{
	struct stat	 st;
	struct group	 gr, *grp = NULL;
	char		 buf[1024], gid[32];
	const char	*name = NULL;

	if (stat(path, &st) == 0) {
		if (getgrgid_r(st.st_gid, &gr, buf, sizeof(buf), &grp) == 0 &&
		    grp != NULL)
			name = grp->gr_name;
		else {
			snprintf(gid, sizeof(gid), "%lu",
			    (unsigned long)st.st_gid);
			name = gid;
		}
	}
	if (name != NULL && st.st_gid != 0)
		*cause = xasprintf("%s: permission denied; add this user to "
		    "group %s, which owns the port (usermod -aG %s USER, then "
		    "log in again), or install espfleet's udev rule "
		    "60-espfleet.rules, which gives ESP32 ports to group "
		    "plugdev, join plugdev and replug the unit", path, name,
		    name);
	else
		*cause = xasprintf("%s: permission denied; install espfleet's "
		    "udev rule 60-espfleet.rules, which gives ESP32 ports to "
		    "group plugdev, join plugdev (usermod -aG plugdev USER, "
		    "then log in again) and replug the unit", path);
	return (-error);
}

/*
 * Refuse a port another program has open without a lock: the replies
 * would be split between us.  -EBUSY naming it, or 0.
 */
static int
xport_unlocked_user(int fd, const char *path, char **cause)
{
	struct stat	 st;
	pid_t		 pid;
	FILE		*f;
	char		 file[64], comm[64], safe[64];
	size_t		 n = 0;

	if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) ||
	    (pid = xport_open_holder(st.st_rdev)) == -1)
		return (0);
	snprintf(file, sizeof(file), "/proc/%ld/comm", (long)pid);
	if ((f = fopen(file, "r")) != NULL) {
		n = fread(comm, 1, sizeof(comm) - 1, f);
		fclose(f);
		while (n > 0 && (comm[n - 1] == '\n' || comm[n - 1] == '\0'))
			n--;
	}
	/* The command name is chosen by that program: untrusted. */
	util_sanitize(safe, sizeof(safe), n > 0 ? comm : "a program",
	    n > 0 ? n : strlen("a program"));
	*cause = xasprintf("%s is in use by %s (pid %ld): close it first",
	    path, safe, (long)pid);
	return (-EBUSY);
}

/* Open path for I/O, never as a controlling terminal, and flock it. */
static int
xport_open_locked(const char *path, int *fdp, int need_tty, char **cause)
{
	int	fd, error;

	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		error = errno;
		if (error == EBUSY)
			return (xport_busy(path, cause));
		if (error == EACCES || error == EPERM)
			return (xport_denied(path, error, cause));
		*cause = xasprintf("%s: cannot open: %s", path,
		    strerror(error));
		return (error == ENOENT ? -ENODEV : -error);
	}
	if (need_tty && !isatty(fd)) {
		close(fd);
		*cause = xasprintf("%s is not a serial port or terminal; give "
		    "a tty such as /dev/ttyACM0 or a pseudo-terminal", path);
		return (-ENOTTY);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		error = errno;
		close(fd);
		if (error == EWOULDBLOCK)
			return (xport_busy(path, cause));
		*cause = xasprintf("%s: cannot lock: %s", path,
		    strerror(error));
		return (-error);
	}
	/* A program that reads the port without locking it (cat, screen). */
	if ((error = xport_unlocked_user(fd, path, cause)) != 0) {
		close(fd);
		return (error);
	}
	*fdp = fd;
	return (0);
}

/*
 * Make the tty exclusive (TIOCEXCL) so that other opens get EBUSY.  A tty
 * that does not know the ioctl (an emulated one) keeps the flock alone.
 */
static int
xport_exclusive(int fd, const char *path, char **cause)
{
	if (ioctl(fd, TIOCEXCL) == -1 && errno != ENOTTY && errno != EINVAL) {
		*cause = xasprintf("%s: cannot get exclusive access: %s", path,
		    strerror(errno));
		return (-errno);
	}
	return (0);
}

/* Turn an absolute path into one without ".", ".." or empty parts. */
static void
xport_normalize(char *path)
{
	char	*out = path, *in = path, *seg;
	size_t	 len;

	while (*in != '\0') {
		while (*in == '/')
			in++;
		seg = in;
		while (*in != '\0' && *in != '/')
			in++;
		len = (size_t)(in - seg);
		if (len == 0 || (len == 1 && seg[0] == '.'))
			continue;
		if (len == 2 && seg[0] == '.' && seg[1] == '.') {
			while (out > path && *--out != '/')
				;
			continue;
		}
		*out++ = '/';
		memmove(out, seg, len);
		out += len;
	}
	if (out == path)
		*out++ = '/';
	*out = '\0';
}

/*
 * Follow the symbolic links of path to the device node's own name
 * (/dev/serial/by-id/... -> /dev/ttyACM0).  Done by hand rather than with
 * realpath(3), which umockdev's preload library breaks.
 */
int
xport_resolve(const char *path, char *out, size_t cap)
{
	char	 link[PATH_MAX], cur[PATH_MAX], *slash;
	ssize_t	 n;
	int	 hops;

	if (path[0] == '/')
		snprintf(cur, sizeof(cur), "%s", path);
	else {
		if (getcwd(cur, sizeof(cur)) == NULL)
			return (-errno);
		if (strlen(cur) + 1 + strlen(path) >= sizeof(cur))
			return (-ENAMETOOLONG);
		strcat(cur, "/");
		strcat(cur, path);
	}
	for (hops = 0; hops < 40; hops++) {
		if ((n = readlink(cur, link, sizeof(link) - 1)) == -1) {
			if (errno != EINVAL)
				return (-errno);
			xport_normalize(cur);
			if (strlen(cur) >= cap)
				return (-ENAMETOOLONG);
			memcpy(out, cur, strlen(cur) + 1);
			return (0);
		}
		link[n] = '\0';
		if (link[0] == '/')
			memcpy(cur, link, (size_t)n + 1);
		else {
			slash = strrchr(cur, '/');
			slash[1] = '\0';
			if (strlen(cur) + (size_t)n >= sizeof(cur))
				return (-ENAMETOOLONG);
			strcat(cur, link);
		}
	}
	return (-ELOOP);
}

/* =========================== public entry points ====================== */

/* Prepare an unopened transport. */
void
xport_init(struct xport *x, int cancel_fd)
{
	memset(x, 0, sizeof(*x));
	x->fd = -1;
	x->lock_fd = -1;
	x->cancel_fd = cancel_fd;
	x->baud = 115200;
}

/* Choose the back end for path, open it and lock it. */
int
xport_open(struct xport *x, const char *path, char **cause)
{
	char		 real[PATH_MAX];
	struct sp_port	*sp;
	int		 error;

	if ((error = xport_resolve(path, real, sizeof(real))) != 0) {
		*cause = xasprintf("%s: %s; check the path and that the unit "
		    "is plugged in", path, strerror(-error));
		return (error == -ENOENT ? -ENODEV : error);
	}
	/*
	 * libserialport finds ports through sysfs by their /dev name: ask
	 * with the name given, then with the resolved one (/dev/serial/by-id
	 * links, bench symlinks).  A port it knows is a real serial port and
	 * is driven by libserialport alone: if it cannot open it, that is
	 * the answer, not a reason to try the port as a plain tty.
	 */
	if (sp_get_port_by_name(path, &sp) == SP_OK ||
	    sp_get_port_by_name(real, &sp) == SP_OK) {
		x->ops = &xport_sp_ops;
		x->sp = sp;
		if ((error = x->ops->open(x, path, cause)) != 0)
			x->ops = NULL;
		return (error);
	}
	/* No sysfs entry: a pty given directly (espfleet-sim) or a bridge. */
	x->ops = &xport_fd_ops;
	if ((error = x->ops->open(x, path, cause)) != 0)
		x->ops = NULL;
	return (error);
}

/* Which back end drives the transport. */
const char *
xport_backend(const struct xport *x)
{
	if (x->ops == NULL)
		return ("none");
	return (x->ops->name);
}

/* The USB ids libserialport read from sysfs for this port. */
int
xport_usb_id(const struct xport *x, uint16_t *vid, uint16_t *pid)
{
	int	v, p;

	if (x->sp == NULL ||
	    sp_get_port_transport(x->sp) != SP_TRANSPORT_USB ||
	    sp_get_port_usb_vid_pid(x->sp, &v, &p) != SP_OK)
		return (-ENODEV);
	*vid = (uint16_t)v;
	*pid = (uint16_t)p;
	return (0);
}

/* Adopt an open fd (socketpair, pty master or slave) as an fd transport. */
int
xport_open_fd(struct xport *x, int fd, const char *name, int own,
    char **cause)
{
	struct termios	tio;
	int		flags;

	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		*cause = xasprintf("%s: %s", name, strerror(errno));
		return (-errno);
	}
	x->ops = &xport_fd_ops;
	x->path = xstrdup(name);
	x->fd = fd;
	x->flags = XPORT_NO_LINES | (own ? XPORT_OWN_FD : 0);
	if (isatty(fd) && tcgetattr(fd, &tio) == 0) {
		x->flags |= XPORT_IS_TTY;
		cfmakeraw(&tio);
		tio.c_cflag |= CLOCAL | CREAD;
		tio.c_cc[VMIN] = 1;
		tio.c_cc[VTIME] = 0;
		cfsetispeed(&tio, B115200);
		cfsetospeed(&tio, B115200);
		if (tcsetattr(fd, TCSANOW, &tio) == -1) {
			*cause = xasprintf("%s: cannot set raw mode: %s", name,
			    strerror(errno));
			free(x->path);
			x->path = NULL;
			x->fd = -1;
			return (-errno);
		}
	}
	return (0);
}

/* Close whichever back end is open; safe on a closed transport. */
void
xport_close(struct xport *x)
{
	if (x->ops != NULL)
		x->ops->close(x);
	free(x->path);
	x->path = NULL;
	x->ops = NULL;
}

/* Install the DTR/RTS hook an in-process emulator listens on. */
void
xport_set_lines_hook(struct xport *x, xport_lines_cb cb, void *arg)
{
	x->lines_cb = cb;
	x->lines_arg = arg;
}

/* True when set_lines reaches the unit: real lines or a hook. */
int
xport_can_reset(const struct xport *x)
{
	return (!(x->flags & XPORT_NO_LINES) || x->lines_cb != NULL);
}

/* Read at least one byte before the deadline. */
int
xport_read(struct xport *x, void *buf, size_t len, uint64_t deadline_ms)
{
	return (x->ops->read(x, buf, len, deadline_ms));
}

/* Write everything before the deadline. */
int
xport_write(struct xport *x, const void *buf, size_t len,
    uint64_t deadline_ms)
{
	return (x->ops->write(x, buf, len, deadline_ms));
}

/* Set DTR and RTS together (1 = asserted = pin low). */
int
xport_set_lines(struct xport *x, int dtr, int rts)
{
	int	error;

	if ((error = x->ops->set_lines(x, dtr, rts)) != 0)
		return (error);
	x->dtr = dtr;
	x->rts = rts;
	return (0);
}

/* Assert or release DTR alone. */
int
xport_set_dtr(struct xport *x, int on)
{
	int	error;

	if ((error = x->ops->set_line(x, XPORT_DTR, on)) != 0)
		return (error);
	x->dtr = on != 0;
	return (0);
}

/* Assert or release RTS alone. */
int
xport_set_rts(struct xport *x, int on)
{
	int	error;

	if ((error = x->ops->set_line(x, XPORT_RTS, on)) != 0)
		return (error);
	x->rts = on != 0;
	return (0);
}

/*
 * esptool's _setRTS: write RTS, then write DTR again unchanged, so that a
 * CDC driver that only sends SET_CONTROL_LINE_STATE on a DTR write
 * (Windows usbser.sys) passes the new RTS on (PROTOCOL.md 8.1).
 */
static int
xport_rts_then_dtr(struct xport *x, int on)
{
	int	error;

	if ((error = xport_set_rts(x, on)) != 0)
		return (error);
	return (xport_set_dtr(x, x->dtr));
}

/* Change the line speed on our side. */
int
xport_set_baud(struct xport *x, unsigned baud)
{
	int	error;

	if ((error = x->ops->set_baud(x, baud)) != 0)
		return (error);
	x->baud = baud;
	return (0);
}

/* Forget unread input. */
int
xport_flush_in(struct xport *x)
{
	return (x->ops->flush_in(x));
}

/* Sleep ms milliseconds, waking early only to report cancellation. */
int
xport_pause(struct xport *x, unsigned ms)
{
	struct pollfd	pfd;
	uint64_t	deadline;
	int		r;

	if (x->cancel_fd == -1) {
		util_sleep_us((uint64_t)ms * 1000);
		return (0);
	}
	deadline = util_now_ms() + ms;
	for (;;) {
		pfd.fd = x->cancel_fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		r = poll(&pfd, 1, util_ms_left(deadline));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == 1)
			return (-ECANCELED);
		return (0);
	}
}

/*
 * esptool's ClassicReset: EN low, then GPIO0 low while EN is released, so
 * the chip samples GPIO0 low and starts the ROM bootloader.  One line per
 * write, DTR re-written after each RTS write; the pauses are the
 * documented pulse widths (PROTOCOL.md 8.1).
 */
int
xport_reset_classic(struct xport *x, unsigned delay_ms)
{
	int	error;

	if ((error = xport_set_dtr(x, 0)) != 0 ||
	    (error = xport_rts_then_dtr(x, 1)) != 0 ||
	    (error = xport_pause(x, 100)) != 0 ||
	    (error = xport_set_dtr(x, 1)) != 0 ||
	    (error = xport_rts_then_dtr(x, 0)) != 0 ||
	    (error = xport_pause(x, delay_ms)) != 0 ||
	    (error = xport_set_dtr(x, 0)) != 0)
		return (error);
	return (0);
}

/*
 * esptool's UnixTightReset: the same pulses with both lines set in one
 * TIOCMSET each, then a lone DTR=0 that some drivers need to let GPIO0 go.
 */
int
xport_reset_tight(struct xport *x, unsigned delay_ms)
{
	int	error;

	if ((error = xport_set_lines(x, 0, 0)) != 0 ||
	    (error = xport_set_lines(x, 1, 1)) != 0 ||
	    (error = xport_set_lines(x, 0, 1)) != 0 ||
	    (error = xport_pause(x, 100)) != 0 ||
	    (error = xport_set_lines(x, 1, 0)) != 0 ||
	    (error = xport_pause(x, delay_ms)) != 0 ||
	    (error = xport_set_lines(x, 0, 0)) != 0 ||
	    (error = xport_set_dtr(x, 0)) != 0)
		return (error);
	return (0);
}

/*
 * Pulse EN with GPIO0 left as it is so the application boots (8.1
 * HardReset), RTS written as esptool's _setRTS does.
 */
int
xport_reset_hard(struct xport *x, int usb)
{
	int	error;

	if ((error = xport_rts_then_dtr(x, 1)) != 0 ||
	    (error = xport_pause(x, usb ? 200 : 100)) != 0 ||
	    (error = xport_rts_then_dtr(x, 0)) != 0)
		return (error);
	if (usb)
		return (xport_pause(x, 200));
	return (0);
}

/* Is path a character device?  Checked before any port is opened. */
int
xport_check(const char *path, char **cause)
{
	struct stat	st;

	if (stat(path, &st) != 0) {
		if (errno == ENOENT) {
			*cause = xasprintf("%s: no such port; check the path "
			    "and that the unit is plugged in", path);
			return (-ENODEV);
		}
		*cause = xasprintf("%s: %s", path, strerror(errno));
		return (-errno);
	}
	if (!S_ISCHR(st.st_mode)) {
		*cause = xasprintf("%s is not a serial port (not a character "
		    "device)", path);
		return (-ENOTTY);
	}
	return (0);
}

/* ======================= libserialport back end ======================== */

/* Translate a libserialport failure into -errno and a cause. */
static int
xport_sp_error(enum sp_return r, const char *path, const char *what,
    char **cause)
{
	char	*msg;
	int	 code;

	if (r == SP_ERR_FAIL) {
		code = sp_last_error_code();
		msg = sp_last_error_message();
		*cause = xasprintf("%s: %s: %s", path, what, msg);
		sp_free_error_message(msg);
		return (code > 0 ? -code : -EIO);
	}
	*cause = xasprintf("%s: %s failed (libserialport error %d)", path,
	    what, (int)r);
	return (r == SP_ERR_MEM ? -ENOMEM : -EINVAL);
}

/*
 * Open a real serial port.  The lock is taken on a guard fd before
 * libserialport touches the port's settings, and held until close.
 */
static int
xport_sp_open(struct xport *x, const char *path, char **cause)
{
	struct termios	tio;
	enum sp_return	r;
	int		error, fd, flags, bits;
	const char	*what;

	if ((error = xport_open_locked(path, &x->lock_fd, 1, cause)) != 0)
		goto fail_free;
	if ((r = sp_open(x->sp, SP_MODE_READ_WRITE)) != SP_OK) {
		/* Say which back end failed: the port is not tried as a tty. */
		error = xport_sp_error(r, path, "libserialport cannot open "
		    "it", cause);
		if (error == -ENOTTY || error == -EINVAL) {
			/* sp_open reads the modem lines (TIOCMGET). */
			free(*cause);
			*cause = xasprintf("%s: libserialport cannot open it: "
			    "the port refuses the modem-control ioctls every "
			    "USB serial port has; unplug and replug the unit",
			    path);
		}
		goto fail_unlock;
	}
	if ((r = sp_get_port_handle(x->sp, &fd)) != SP_OK) {
		error = xport_sp_error(r, path, "no handle", cause);
		goto fail_close;
	}
	x->fd = fd;
	if ((error = xport_exclusive(fd, path, cause)) != 0)
		goto fail_close;
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		error = -errno;
		*cause = xasprintf("%s: %s", path, strerror(errno));
		goto fail_close;
	}
	/* 8N1, no flow control; DTR and RTS stay as the open left them. */
	what = "cannot configure";
	if ((r = sp_set_baudrate(x->sp, (int)x->baud)) != SP_OK ||
	    (r = sp_set_bits(x->sp, 8)) != SP_OK ||
	    (r = sp_set_parity(x->sp, SP_PARITY_NONE)) != SP_OK ||
	    (r = sp_set_stopbits(x->sp, 1)) != SP_OK ||
	    (r = sp_set_xon_xoff(x->sp, SP_XONXOFF_DISABLED)) != SP_OK ||
	    (r = sp_set_cts(x->sp, SP_CTS_IGNORE)) != SP_OK ||
	    (r = sp_set_dsr(x->sp, SP_DSR_IGNORE)) != SP_OK) {
		error = xport_sp_error(r, path, what, cause);
		goto fail_close;
	}
	/*
	 * sp_open leaves VMIN = VTIME = 0, where a read with nothing to read
	 * returns 0 even on a non-blocking fd, which is what a hang-up looks
	 * like: VMIN = 1 makes "nothing yet" EAGAIN and keeps 0 for "gone".
	 */
	if (tcgetattr(fd, &tio) == -1) {
		error = xport_errno(errno);
		*cause = xasprintf("%s: %s: %s", path, what, strerror(errno));
		goto fail_close;
	}
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSANOW, &tio) == -1) {
		error = xport_errno(errno);
		*cause = xasprintf("%s: %s: %s", path, what, strerror(errno));
		goto fail_close;
	}
	/* Start from the lines as the kernel left them (raised on open). */
	if (ioctl(fd, TIOCMGET, &bits) == 0) {
		x->dtr = (bits & TIOCM_DTR) != 0;
		x->rts = (bits & TIOCM_RTS) != 0;
	}
	x->path = xstrdup(path);
	x->flags = XPORT_IS_TTY;
	return (0);

fail_close:
	if (x->fd != -1)
		(void)ioctl(x->fd, TIOCNXCL);
	sp_close(x->sp);
	x->fd = -1;
fail_unlock:
	close(x->lock_fd);
	x->lock_fd = -1;
fail_free:
	sp_free_port(x->sp);
	x->sp = NULL;
	return (error);
}

/* Release the port: exclusive mode off, close, drop the lock. */
static void
xport_sp_close(struct xport *x)
{
	if (x->sp == NULL)
		return;
	if (x->fd != -1)
		(void)ioctl(x->fd, TIOCNXCL);
	sp_close(x->sp);
	sp_free_port(x->sp);
	x->sp = NULL;
	x->fd = -1;
	if (x->lock_fd != -1)
		close(x->lock_fd);
	x->lock_fd = -1;
}

/* DTR and RTS in one TIOCMSET so they never change one after the other. */
static int
xport_sp_set_lines(struct xport *x, int dtr, int rts)
{
	int	bits;

	if (ioctl(x->fd, TIOCMGET, &bits) == -1)
		return (xport_errno(errno));
	bits &= ~(TIOCM_DTR | TIOCM_RTS);
	if (dtr)
		bits |= TIOCM_DTR;
	if (rts)
		bits |= TIOCM_RTS;
	if (ioctl(x->fd, TIOCMSET, &bits) == -1)
		return (xport_errno(errno));
	return (0);
}

/*
 * One line through TIOCMBIS/TIOCMBIC on libserialport's handle, exactly
 * one write per call: sp_set_dtr() re-applies the whole configuration and
 * so writes RTS too, which would put extra edges into a reset sequence.
 */
static int
xport_sp_set_line(struct xport *x, int line, int on)
{
	int	bits;

	bits = line == XPORT_DTR ? TIOCM_DTR : TIOCM_RTS;
	if (ioctl(x->fd, on ? TIOCMBIS : TIOCMBIC, &bits) == -1)
		return (xport_errno(errno));
	return (0);
}

/* Change the speed through libserialport. */
static int
xport_sp_set_baud(struct xport *x, unsigned baud)
{
	if (baud > INT_MAX || sp_set_baudrate(x->sp, (int)baud) != SP_OK)
		return (-EINVAL);
	return (0);
}

/* Flush the kernel's input queue, then whatever raced in. */
static int
xport_sp_flush_in(struct xport *x)
{
	if (sp_flush(x->sp, SP_BUF_INPUT) != SP_OK)
		return (-EIO);
	return (xport_drain(x));
}

/* ============================ fd back end ============================== */

/* Open a tty that libserialport does not know (pty, bridge), raw mode. */
static int
xport_fd_open(struct xport *x, const char *path, char **cause)
{
	int	fd, error;

	if ((error = xport_open_locked(path, &fd, 1, cause)) != 0)
		return (error);
	if ((error = xport_exclusive(fd, path, cause)) != 0) {
		close(fd);
		return (error);
	}
	if ((error = xport_open_fd(x, fd, path, 1, cause)) != 0) {
		(void)ioctl(fd, TIOCNXCL);
		close(fd);
		return (error);
	}
	return (0);
}

/* Close the fd if it is ours; a tty leaves exclusive mode first. */
static void
xport_fd_close(struct xport *x)
{
	if (x->fd == -1)
		return;
	if (x->flags & XPORT_OWN_FD) {
		if (x->flags & XPORT_IS_TTY)
			(void)ioctl(x->fd, TIOCNXCL);
		close(x->fd);
	}
	x->fd = -1;
}

/*
 * A pty or socket has no modem lines (XPORT_NO_LINES); the state is only
 * passed to the hook, which is how an in-process emulator sees resets.
 */
static int
xport_fd_set_lines(struct xport *x, int dtr, int rts)
{
	if (x->lines_cb != NULL)
		x->lines_cb(x->lines_arg, dtr, rts);
	return (0);
}

/* One line of a port without lines: only the hook hears of it. */
static int
xport_fd_set_line(struct xport *x, int line, int on)
{
	if (x->lines_cb != NULL)
		x->lines_cb(x->lines_arg, line == XPORT_DTR ? on != 0 : x->dtr,
		    line == XPORT_RTS ? on != 0 : x->rts);
	return (0);
}

/* Set the termios speed of a tty; other fds have no speed. */
static int
xport_fd_set_baud(struct xport *x, unsigned baud)
{
	struct termios	tio;
	size_t		i;

	if (!(x->flags & XPORT_IS_TTY))
		return (0);
	for (i = 0; i < nitems(xport_speeds); i++) {
		if (xport_speeds[i].baud == baud)
			break;
	}
	if (i == nitems(xport_speeds))
		return (-EINVAL);
	if (tcgetattr(x->fd, &tio) == -1)
		return (xport_errno(errno));
	cfsetispeed(&tio, xport_speeds[i].speed);
	cfsetospeed(&tio, xport_speeds[i].speed);
	if (tcsetattr(x->fd, TCSANOW, &tio) == -1)
		return (xport_errno(errno));
	return (0);
}

/* Flush a tty's input queue, then drain anything still readable. */
static int
xport_fd_flush_in(struct xport *x)
{
	if (x->flags & XPORT_IS_TTY)
		(void)tcflush(x->fd, TCIFLUSH);
	return (xport_drain(x));
}
