/*
 * The transport over a real pseudo-terminal: back-end choice, exclusive
 * locking with the holder named, raw bytes both ways, deadlines,
 * cancellation, the lines hook and the reset sequences, flushing, hang-up.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libserialport.h>

#include "tap.h"
#include "transport.h"
#include "util.h"

struct lines_log {
	int	n;
	int	dtr[16], rts[16];
};

/* Record each DTR/RTS change the transport reports. */
static void
test_lines_cb(void *arg, int dtr, int rts)
{
	struct lines_log	*log = arg;

	if (log->n < 16) {
		log->dtr[log->n] = dtr;
		log->rts[log->n] = rts;
	}
	log->n++;
}

/* Open a pty master and return it; the slave's path goes into path. */
static int
test_pty(char *path, size_t cap)
{
	int	m;

	if ((m = posix_openpt(O_RDWR | O_NOCTTY)) == -1 || grantpt(m) != 0 ||
	    unlockpt(m) != 0) {
		tap_diag("posix_openpt: %s", strerror(errno));
		return (-1);
	}
	snprintf(path, cap, "%s", ptsname(m));
	return (m);
}

/* Read exactly n bytes from fd within 2 s. */
static int
test_read_all(int fd, uint8_t *buf, size_t n)
{
	struct pollfd	pfd;
	uint64_t	deadline = util_now_ms() + 2000;
	size_t		got = 0;
	ssize_t		r;

	while (got < n) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, util_ms_left(deadline)) <= 0)
			return (-1);
		if ((r = read(fd, buf + got, n - got)) <= 0)
			return (-1);
		got += (size_t)r;
	}
	return (0);
}

/* Does the lines log hold exactly this sequence of (dtr, rts)? */
static int
test_lines_are(const struct lines_log *log, const int *seq, int n)
{
	int	i;

	if (log->n != n)
		return (0);
	for (i = 0; i < n; i++) {
		if (log->dtr[i] != seq[2 * i] || log->rts[i] != seq[2 * i + 1])
			return (0);
	}
	return (1);
}

/*
 * Child side, run under umockdev-run: a sysfs entry makes libserialport
 * know /dev/ttyACM0, but with no ioctl handler its pty refuses the modem
 * ioctls, so sp_open fails; the transport must say so and not quietly
 * drive the port as a plain tty (tests/test-serialport covers the port
 * with working modem lines).
 */
static int
test_umockdev_child(void)
{
	struct sp_port	*sp;
	struct xport	 xp;
	char		*cause = NULL;
	int		 known, error;

	known = sp_get_port_by_name("/dev/ttyACM0", &sp) == SP_OK;
	if (known)
		sp_free_port(sp);
	xport_init(&xp, -1);
	error = xport_open(&xp, "/dev/ttyACM0", &cause);
	/* One line: the parent puts it into a TAP description. */
	printf("known=%d open=%d backend=%s cause=%s\n", known, error,
	    xport_backend(&xp), cause != NULL ? cause : "none");
	if (error == 0)
		xport_close(&xp);
	free(cause);
	return (0);
}

/* Run this program under umockdev-run with an emulated ttyACM0. */
static void
test_umockdev(const char *self)
{
	const char	*srcdir = getenv("top_srcdir");
	char		 dev[1024], out[512];
	int		 pfd[2], status;
	ssize_t		 n;
	size_t		 len = 0;
	pid_t		 pid;

	if (srcdir == NULL)
		srcdir = ".";
	snprintf(dev, sizeof(dev), "%s/tests/acm0.umockdev", srcdir);
	if (access(dev, R_OK) != 0 || pipe(pfd) != 0) {
		tap_ok(1, "serial port that is a pty underneath # SKIP no %s",
		    dev);
		return;
	}
	if ((pid = fork()) == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		/* umockdev preloads itself; let an ASan build accept that. */
		setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
		execlp("umockdev-run", "umockdev-run", "--device", dev, "--",
		    self, "--umockdev", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (len < sizeof(out) - 1 &&
	    (n = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	while (len > 0 && out[len - 1] == '\n')
		len--;
	out[len] = '\0';
	close(pfd[0]);
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		tap_ok(1, "serial port that is a pty underneath # SKIP "
		    "umockdev-run is not installed");
		return;
	}
	tap_ok(strstr(out, "known=1 open=-25 backend=none") != NULL &&
	    strstr(out, "libserialport cannot open it") != NULL,
	    "a port libserialport knows but cannot open (umockdev) is an "
	    "error, not handed to the fd back end: %s", out);
}

/* Run every transport check over one pseudo-terminal. */
int
main(int argc, char **argv)
{
	/* (dtr, rts) after each line write, re-writes included. */
	static const int	 classic[] = { 0, 0, 0, 1, 0, 1, 1, 1, 1, 0,
				     1, 0, 0, 0 };
	static const int	 tight[] = { 0, 0, 1, 1, 0, 1, 1, 0, 0, 0,
				     0, 0 };
	static const int	 hard[] = { 0, 1, 0, 1, 0, 0, 0, 0 };
	struct xport		 xp, xp2;
	struct lines_log	 log;
	char			 tmpl[] = "/tmp/espf-xport-XXXXXX"; /* depth 2 */
	char			 slave[256], link[300], file[300];
	char			*cause = NULL;
	uint8_t			 buf[64];
	uint8_t			 wire[] = { 0xc0, 0x0d, 0x0a, 0x11, 0x13,
				     0x03, 0xdb, 0x7f, 0xff, 0xc0 };
	uint64_t		 t0, one = 1;
	int			 m, efd, error, fd;

	if (argc > 1 && strcmp(argv[1], "--umockdev") == 0)
		return (test_umockdev_child());
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(tmpl) == NULL)
		tap_skip_all("cannot make a temporary directory");
	if ((m = test_pty(slave, sizeof(slave))) == -1)
		tap_skip_all("no pseudo-terminals here");
	snprintf(link, sizeof(link), "%s/tty0", tmpl);
	snprintf(file, sizeof(file), "%s/plain", tmpl);
	if (symlink(slave, link) != 0 ||
	    (fd = open(file, O_CREAT | O_WRONLY, 0600)) == -1)
		tap_skip_all("cannot populate the temporary directory");
	close(fd);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	/* Symbolic links, relative ones too, resolve to the device node. */
	{
		char	dir[300], l2[340], l3[340], res[256], rel[300];

		snprintf(dir, sizeof(dir), "%s/serial/by-id", tmpl);
		snprintf(l2, sizeof(l2), "%s/usb-Espressif-if00", dir);
		snprintf(l3, sizeof(l3), "%s/serial/again", tmpl);
		snprintf(res, sizeof(res), "%s/serial", tmpl);
		/* From TMP/serial/by-id up to / (TMP is /tmp/X), then down. */
		snprintf(rel, sizeof(rel), "../../../..%s", slave);
		if (mkdir(res, 0700) != 0 || mkdir(dir, 0700) != 0 ||
		    symlink(rel, l2) != 0 ||
		    symlink("./by-id/../by-id//usb-Espressif-if00", l3) != 0)
			tap_diag("cannot make the link chain");
		is_int(xport_resolve(l3, res, sizeof(res)), 0,
		    "resolve a chain of relative links");
		is_str(res, slave, "... to the pty itself");
		unlink(l3);
		unlink(l2);
		rmdir(dir);
		snprintf(dir, sizeof(dir), "%s/serial", tmpl);
		rmdir(dir);
	}

	/* Checks done before anything is opened. */
	is_int(xport_check(link, &cause), 0, "a pty symlink passes the check");
	free(cause), cause = NULL;
	is_int(xport_check("/nonexistent/ttyUSB9", &cause), -ENODEV,
	    "a missing port is -ENODEV");
	tap_ok(cause != NULL && strstr(cause, "no such port") != NULL,
	    "... with a cause: %s", cause ? cause : "(none)");
	free(cause), cause = NULL;
	is_int(xport_check(file, &cause), -ENOTTY,
	    "a regular file is refused by the check");
	free(cause), cause = NULL;

	/* A pty is not a libserialport port: the fd back end takes it. */
	xport_init(&xp, efd);
	error = xport_open(&xp, link, &cause);
	is_int(error, 0, "open the pty through its symlink (%s)",
	    cause ? cause : "ok");
	if (error != 0)
		return (tap_done());
	is_str(xp.ops->name, "fd", "the fd back end was chosen");
	tap_ok(xp.flags & XPORT_NO_LINES, "it knows it has no modem lines");
	tap_ok(!xport_can_reset(&xp), "so it cannot reset the unit");

	/* A second opener is refused and told who holds the port. */
	xport_init(&xp2, -1);
	error = xport_open(&xp2, link, &cause);
	is_int(error, -EBUSY, "a second open of the same port is -EBUSY");
	snprintf((char *)buf, sizeof(buf), "(pid %ld", (long)getpid());
	tap_ok(cause != NULL && strstr(cause, "is in use by another program") &&
	    strstr(cause, (char *)buf) != NULL &&
	    strstr(cause, "close it and retry") != NULL,
	    "... naming the holder: %s", cause ? cause : "(none)");
	free(cause), cause = NULL;
	if (error == 0)
		xport_close(&xp2);

	/* Bytes go through untouched in raw mode, both ways. */
	if (write(m, wire, sizeof(wire)) != (ssize_t)sizeof(wire))
		tap_diag("write to master failed");
	memset(buf, 0, sizeof(buf));
	t0 = util_now_ms();
	error = 0;
	{
		size_t	got = 0;
		int	n;

		while (got < sizeof(wire) && (n = xport_read(&xp, buf + got,
		    sizeof(buf) - got, t0 + 2000)) > 0)
			got += (size_t)n;
		is_int(got, sizeof(wire), "read every byte the unit sent");
	}
	is_mem(buf, wire, sizeof(wire), "CR, LF, XON, XOFF, ^C unchanged");
	is_int(xport_write(&xp, wire, sizeof(wire), util_now_ms() + 2000), 0,
	    "write to the unit");
	memset(buf, 0, sizeof(buf));
	tap_ok(test_read_all(m, buf, sizeof(wire)) == 0 &&
	    memcmp(buf, wire, sizeof(wire)) == 0,
	    "the unit got the bytes unchanged (no echo, no CRLF mapping)");

	/* Deadlines and cancellation. */
	t0 = util_now_ms();
	error = xport_read(&xp, buf, sizeof(buf), t0 + 150);
	t0 = util_now_ms() - t0;
	is_int(error, -ETIMEDOUT, "a silent unit times out");
	tap_ok(t0 >= 140 && t0 < 1000, "... at the deadline (%llu ms)",
	    (unsigned long long)t0);
	if (write(efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		tap_diag("eventfd write failed");
	t0 = util_now_ms();
	error = xport_read(&xp, buf, sizeof(buf), t0 + 5000);
	t0 = util_now_ms() - t0;
	is_int(error, -ECANCELED, "cancel wakes a blocked read");
	tap_ok(t0 < 100, "... at once (%llu ms)", (unsigned long long)t0);
	is_int(xport_pause(&xp, 5000), -ECANCELED, "and a reset pause");
	if (write(m, "x", 1) != 1)
		tap_diag("write to master failed");
	is_int(xport_read(&xp, buf, sizeof(buf), util_now_ms() + 1000),
	    -ECANCELED, "cancel wins over data waiting");
	if (read(efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		tap_diag("eventfd read failed");

	/* The lines hook sees the reset sequences of PROTOCOL.md 8.1. */
	memset(&log, 0, sizeof(log));
	xport_set_lines_hook(&xp, test_lines_cb, &log);
	tap_ok(xport_can_reset(&xp), "with a lines hook it can reset");
	is_int(xport_reset_classic(&xp, 0), 0, "classic reset");
	tap_ok(test_lines_are(&log, classic, 7),
	    "... changes through (0,1) (1,1) (1,0) (0,0), the sequence "
	    "Arduino's CDC watches for, DTR re-written after each RTS");
	memset(&log, 0, sizeof(log));
	is_int(xport_reset_tight(&xp, 0), 0, "tight reset");
	tap_ok(test_lines_are(&log, tight, 6),
	    "... is (0,0) (1,1) (0,1) (1,0) (0,0), then DTR=0");
	memset(&log, 0, sizeof(log));
	is_int(xport_reset_hard(&xp, 0), 0, "hard reset");
	tap_ok(test_lines_are(&log, hard, 4), "... pulses RTS with DTR off");
	tap_ok(xp.dtr == 0 && xp.rts == 0, "lines end released");

	/* Flushing drops what the unit sent earlier. */
	if (write(m, "stale", 5) != 5)
		tap_diag("write to master failed");
	{
		struct pollfd pfd = { .fd = xp.fd, .events = POLLIN };

		poll(&pfd, 1, 2000);
	}
	is_int(xport_flush_in(&xp), 0, "flush input");
	is_int(xport_read(&xp, buf, sizeof(buf), util_now_ms() + 100),
	    -ETIMEDOUT, "nothing left to read after the flush");
	is_int(xport_set_baud(&xp, 921600), 0, "set 921600 baud on a tty");
	is_int(xport_set_baud(&xp, 123457), -EINVAL,
	    "an odd rate termios cannot name is refused");

	/* Closing releases the lock: the port opens again. */
	xport_close(&xp);
	xport_init(&xp2, -1);
	is_int(xport_open(&xp2, link, &cause), 0, "reopen after close");
	free(cause), cause = NULL;

	/* Unplugging (the master goes away) ends reads with -ENODEV. */
	close(m);
	is_int(xport_read(&xp2, buf, sizeof(buf), util_now_ms() + 2000),
	    -ENODEV, "a hung-up pty reads as -ENODEV");
	xport_close(&xp2);

	/* Things that are no tty at all are refused at open. */
	xport_init(&xp2, -1);
	is_int(xport_open(&xp2, "/dev/null", &cause), -ENOTTY,
	    "/dev/null is refused");
	tap_ok(cause != NULL && strstr(cause, "not a serial port") != NULL,
	    "... with a message: %s", cause ? cause : "(none)");
	free(cause), cause = NULL;
	is_int(xport_open(&xp2, "/nonexistent/ttyACM7", &cause), -ENODEV,
	    "a missing port is -ENODEV at open too");
	free(cause), cause = NULL;

	test_umockdev(argv[0]);

	close(efd);
	unlink(link);
	unlink(file);
	rmdir(tmpl);
	return (tap_done());
}
