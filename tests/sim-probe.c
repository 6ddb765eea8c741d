/*
 * A small host for tests/sim.sh: talks the ROM protocol to espfleet-sim
 * ttys (or to an in-process sim) with deadlines, and says what it found.
 *
 *   sim-probe sync TTY...        8 golden SYNC replies from every TTY
 *   sim-probe mac TTY            print the MAC read from the eFuse words
 *   sim-probe termios TTY        the pty is raw: no echo, no canon, no opost
 *   sim-probe flash TTY FILE     write 40 KB compressed at 0x8000, check
 *                                the MD5 reply and FILE right after it
 *   sim-probe gone TTY           SYNC until the unit vanishes (unplug)
 *   sim-probe inproc             sim_start() with 2 units in a temp dir,
 *                                BOOT+RST pressed from another thread
 *
 * Exit 0 when everything matched, 1 otherwise (the reason on stderr).
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <zlib.h>

#include "chip.h"
#include "digest.h"
#include "proto.h"
#include "sim.h"
#include "slip.h"
#include "util.h"

#define PROBE_TIMEOUT_MS	5000

/* A reply frame collector over one tty. */
struct probe {
	const char	*path;
	int		 fd;
	struct slip_dec	 dec;
	uint8_t		 buf[1024];
	int		 hangup;
};

/* Print why the probe failed and exit 1. */
static void espf_dead printflike(1, 2)
probe_fail(const char *fmt, ...)
{
	va_list	ap;

	fputs("sim-probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Open a tty like a flasher: raw, non-blocking, stale input dropped. */
static void
probe_open(struct probe *p, const char *path)
{
	memset(p, 0, sizeof(*p));
	p->path = path;
	p->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (p->fd < 0)
		probe_fail("open %s: %s", path, strerror(errno));
	tcflush(p->fd, TCIFLUSH);
	slip_dec_init(&p->dec, p->buf, sizeof(p->buf));
}

/* Write a whole request as one SLIP frame. */
static void
probe_write(struct probe *p, const uint8_t *req, size_t len)
{
	static uint8_t	wire[SLIP_ENCODED_MAX(PROTO_MAX_REQ)];
	size_t		w, off = 0;
	ssize_t		r;
	struct pollfd	pfd;

	w = slip_encode(wire, sizeof(wire), req, len);
	while (off < w) {
		r = write(p->fd, wire + off, w - off);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r < 0 && errno != EAGAIN)
			probe_fail("write %s: %s", p->path, strerror(errno));
		pfd.fd = p->fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, PROBE_TIMEOUT_MS) <= 0)
			probe_fail("write %s: timed out", p->path);
	}
}

/*
 * Read until one frame is complete; returns its length, 0 on timeout.
 * A hangup or EIO marks the tty as gone.
 */
static size_t
probe_frame(struct probe *p, uint8_t *out, size_t cap, int timeout_ms)
{
	uint64_t	deadline = util_now_ms() + (uint64_t)timeout_ms;
	struct pollfd	pfd;
	uint8_t		c;
	ssize_t		r;

	for (;;) {
		r = read(p->fd, &c, 1);
		if (r == 1) {
			if (slip_dec_byte(&p->dec, c) == SLIP_FRAME) {
				if (p->dec.len > cap)
					continue;
				memcpy(out, p->dec.buf, p->dec.len);
				return (p->dec.len);
			}
			continue;
		}
		if (r == 0 || (r < 0 && errno != EAGAIN)) {
			p->hangup = 1;
			return (0);
		}
		pfd.fd = p->fd;
		pfd.events = POLLIN;
		if (util_ms_left(deadline) == 0)
			return (0);
		if (poll(&pfd, 1, util_ms_left(deadline)) < 0)
			return (0);
		if (pfd.revents & (POLLHUP | POLLERR)) {
			p->hangup = 1;
			return (0);
		}
	}
}

/* Send a request and parse its reply; exits on failure. */
static void
probe_cmd(struct probe *p, const uint8_t *req, size_t len,
    struct proto_resp *rs, uint8_t *frame, size_t cap)
{
	size_t	n;

	probe_write(p, req, len);
	n = probe_frame(p, frame, cap, PROBE_TIMEOUT_MS);
	if (n == 0)
		probe_fail("%s: no reply to %s", p->path,
		    proto_op_name(req[1]));
	if (proto_parse_resp(frame, n, 4, rs) != 0 || rs->op != req[1])
		probe_fail("%s: bad reply to %s", p->path,
		    proto_op_name(req[1]));
	if (rs->status != 0)
		probe_fail("%s: %s failed: status %u error 0x%02x", p->path,
		    proto_op_name(req[1]), rs->status, rs->error);
}

/* READ_REG. */
static uint32_t
probe_read_reg(struct probe *p, uint32_t addr)
{
	uint8_t			req[32], frame[64];
	struct proto_resp	rs;
	size_t			n;

	n = proto_build_read_reg(req, sizeof(req), addr);
	probe_cmd(p, req, n, &rs, frame, sizeof(frame));
	return (rs.value);
}

/* SYNC and check the 8 replies byte for byte. */
static void
probe_sync(const char *path)
{
	static const uint8_t want[] = {
		0x01, 0x08, 0x04, 0x00, 0x07, 0x07, 0x12, 0x20,
		0x00, 0x00, 0x00, 0x00
	};
	struct probe	p;
	uint8_t		req[64], frame[64];
	size_t		n;
	int		i;

	probe_open(&p, path);
	n = proto_build_sync(req, sizeof(req));
	probe_write(&p, req, n);
	for (i = 0; i < 8; i++) {
		n = probe_frame(&p, frame, sizeof(frame), PROBE_TIMEOUT_MS);
		if (n != sizeof(want) || memcmp(frame, want, n) != 0)
			probe_fail("%s: SYNC reply %d of 8 %s", path, i + 1,
			    n == 0 ? "missing" : "differs");
	}
	close(p.fd);
}

/* The MAC as esptool reads it. */
static void
probe_mac(const char *path)
{
	const struct chip_info	*c = chip_by_id(CHIP_ESP32S2);
	struct probe		 p;
	uint8_t			 mac[6];
	uint32_t		 m0, m1;
	char			 buf[18];

	probe_open(&p, path);
	if (probe_read_reg(&p, CHIP_MAGIC_REG) != 0x7c6)
		probe_fail("%s: not an ESP32-S2", path);
	m0 = probe_read_reg(&p, c->efuse_mac0);
	m1 = probe_read_reg(&p, c->efuse_mac1);
	chip_mac_from_efuse(c, m0, m1, mac);
	chip_mac_format(mac, buf, sizeof(buf));
	printf("%s\n", buf);
	close(p.fd);
}

/* The slave is raw as set from the master side. */
static void
probe_termios(const char *path)
{
	struct termios	tio;
	int		fd;

	if ((fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK)) < 0)
		probe_fail("open %s: %s", path, strerror(errno));
	if (tcgetattr(fd, &tio) != 0)
		probe_fail("tcgetattr %s: %s", path, strerror(errno));
	if (tio.c_lflag & (ECHO | ICANON | ISIG | IEXTEN))
		probe_fail("%s: echo/canonical mode still on", path);
	if (tio.c_oflag & OPOST)
		probe_fail("%s: output processing still on", path);
	if (tio.c_iflag & (ICRNL | IXON | ISTRIP))
		probe_fail("%s: input processing still on", path);
	close(fd);
	printf("raw\n");
}

/* Write a compressed image and check the flash file after the reply. */
static void
probe_flash(const char *path, const char *file)
{
	struct probe		 p;
	struct proto_resp	 rs;
	uint8_t			 img[40960], *z, req[PROTO_MAX_REQ], frame[128];
	uint8_t			 back[sizeof(img)];
	char			 want[33];
	uLongf			 zlen;
	size_t			 n, pos, bl, i;
	uint32_t		 seq = 0, off = 0x8000;
	FILE			*f;

	for (i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)((i * 7) ^ (i >> 5));
	zlen = compressBound(sizeof(img));
	z = xmalloc(zlen);
	if (compress2(z, &zlen, img, sizeof(img), 9) != Z_OK)
		probe_fail("compress2 failed");

	probe_open(&p, path);
	n = proto_build_spi_attach(req, sizeof(req), 0, 1);
	probe_cmd(&p, req, n, &rs, frame, sizeof(frame));
	n = proto_build_begin(req, sizeof(req), PROTO_FLASH_DEFL_BEGIN,
	    sizeof(img), (uint32_t)((zlen + 0x3ff) / 0x400), 0x400, off, 1);
	probe_cmd(&p, req, n, &rs, frame, sizeof(frame));
	for (pos = 0; pos < zlen; pos += bl) {
		bl = MINIMUM(0x400, zlen - pos);
		n = proto_build_data(req, sizeof(req), PROTO_FLASH_DEFL_DATA,
		    seq++, z + pos, bl);
		probe_cmd(&p, req, n, &rs, frame, sizeof(frame));
	}
	/* The reply to the last block is in: the file must be current. */
	if ((f = fopen(file, "rb")) == NULL)
		probe_fail("open %s: %s", file, strerror(errno));
	if (fseek(f, off, SEEK_SET) != 0 ||
	    fread(back, 1, sizeof(back), f) != sizeof(back))
		probe_fail("%s: short read", file);
	fclose(f);
	if (memcmp(back, img, sizeof(img)) != 0)
		probe_fail("%s does not hold the image after the last reply",
		    file);
	n = proto_build_md5(req, sizeof(req), off, sizeof(img));
	probe_cmd(&p, req, n, &rs, frame, sizeof(frame));
	digest_md5_hex(img, sizeof(img), want);
	if (rs.data_len != 32 || memcmp(rs.data, want, 32) != 0)
		probe_fail("%s: SPI_FLASH_MD5 does not match", path);
	close(p.fd);
	free(z);
	printf("flash ok\n");
}

/* Keep sending SYNC until the tty hangs up or disappears. */
static void
probe_gone(const char *path)
{
	struct probe	p;
	uint8_t		req[64], frame[64];
	uint64_t	deadline = util_now_ms() + 10000;
	size_t		n;
	int		i;

	probe_open(&p, path);
	n = proto_build_sync(req, sizeof(req));
	while (util_ms_left(deadline) > 0) {
		probe_write(&p, req, n);
		for (i = 0; i < 8 && !p.hangup; i++)
			if (probe_frame(&p, frame, sizeof(frame), 500) == 0)
				break;
		if (p.hangup)
			break;
	}
	close(p.fd);
	if (!p.hangup)
		probe_fail("%s: still there after 10 s", path);
	printf("gone\n");
}

/* An in-process sim on its own thread, as espfleet --simulate uses it. */
static void
probe_inproc(void)
{
	struct sim_config	 cfg;
	struct sim_unit_stats	 st;
	struct sim		*s;
	struct stat		 sb;
	char			 dir[] = "/tmp/espf-inproc.XXXXXX", *cause;
	char			*path;
	unsigned		 k;

	if (mkdtemp(dir) == NULL)
		probe_fail("mkdtemp: %s", strerror(errno));
	memset(&cfg, 0, sizeof(cfg));
	cfg.units = 2;
	cfg.dir = dir;
	cfg.chip = CHIP_ESP32S2;
	cfg.flash_size = 256 * 1024;
	cfg.seed = 5;
	if ((s = sim_new(&cfg, &cause)) == NULL)
		probe_fail("sim_new: %s", cause);
	if (sim_start(s, &cause) != 0)
		probe_fail("sim_start: %s", cause);
	for (k = 0; k < 2; k++)
		probe_sync(sim_tty(s, k));
	for (k = 0; k < 2; k++) {
		uint64_t	 deadline = util_now_ms() + 2000;

		/* Snapshots follow the poll round that sent the reply. */
		do {
			sim_unit_stats(s, k, &st);
			if (st.emu.commands >= 1)
				break;
			util_sleep_us(10000);
		} while (util_now_ms() < deadline);
		if (st.emu.commands < 1 || st.state != EMU_ST_DOWNLOAD)
			probe_fail("unit %u: stats show no SYNC", k);
	}
	/* BOOT+RST from this thread: unit 1 comes back on a new pty. */
	sim_press_boot_rst(s, 1);
	{
		uint64_t	 deadline = util_now_ms() + 2000;

		do {
			sim_unit_stats(s, 1, &st);
			if (st.generation == 1)
				break;
			util_sleep_us(10000);
		} while (util_now_ms() < deadline);
		if (st.generation != 1 || st.state != EMU_ST_DOWNLOAD ||
		    st.reason != EMU_RS_HARD_RESET || st.pid != 0x0002)
			probe_fail("unit 1: BOOT+RST did not re-enumerate it");
	}
	probe_sync(sim_tty(s, 1));
	if (sim_join(s) != 0)
		probe_fail("sim_run failed");
	sim_free(s);
	for (k = 0; k < 2; k++) {
		path = xasprintf("%s/tty%u", dir, k);
		if (lstat(path, &sb) == 0)
			probe_fail("%s left behind", path);
		free(path);
		path = xasprintf("%s/flash%u.bin", dir, k);
		if (stat(path, &sb) != 0 || sb.st_size != 256 * 1024)
			probe_fail("%s missing or not 256 KiB", path);
		unlink(path);
		free(path);
	}
	path = xasprintf("%s/stats", dir);
	unlink(path);
	free(path);
	rmdir(dir);
	printf("inproc ok\n");
}

/* Dispatch on the sub-command. */
int
main(int argc, char **argv)
{
	int	i;

	if (argc >= 3 && strcmp(argv[1], "sync") == 0) {
		for (i = 2; i < argc; i++)
			probe_sync(argv[i]);
		printf("sync ok %d\n", argc - 2);
	} else if (argc == 3 && strcmp(argv[1], "mac") == 0)
		probe_mac(argv[2]);
	else if (argc == 3 && strcmp(argv[1], "termios") == 0)
		probe_termios(argv[2]);
	else if (argc == 4 && strcmp(argv[1], "flash") == 0)
		probe_flash(argv[2], argv[3]);
	else if (argc == 3 && strcmp(argv[1], "gone") == 0)
		probe_gone(argv[2]);
	else if (argc == 2 && strcmp(argv[1], "inproc") == 0)
		probe_inproc();
	else {
		fprintf(stderr, "usage: sim-probe sync|mac|termios|flash|gone|"
		    "inproc ...\n");
		return (2);
	}
	return (0);
}
