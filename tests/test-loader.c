/*
 * The loader and the job layer against the ROM emulator, in process: an
 * emulator thread serves one end of a socketpair, the loader talks to the
 * other end through the fd transport.  Covers connect, detection, flash id,
 * a full write with MD5 verify, retries, timeouts, cancellation, the reset
 * after writing, and one whole job.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "chip.h"
#include "demo.h"
#include "digest.h"
#include "emu.h"
#include "image.h"
#include "job.h"
#include "loader.h"
#include "proto.h"
#include "slip.h"
#include "tap.h"
#include "transport.h"
#include "util.h"

/* One emulated unit behind a socketpair, served by its own thread. */
struct rig {
	struct emu	*emu;
	int		 fd;		/* the emulator's end */
	int		 host_fd;	/* the loader's end */
	int		 wake_fd;	/* eventfd: stop or re-plan */
	enum emu_link	 link;
	uint64_t	 gen;		/* emu_generation() the fds belong to */
	int		 next_host_fd;	/* the port after a re-enumeration */
	int		 stop;
	pthread_t	 thread;
	pthread_mutex_t	 mtx;		/* guards emu and the counters */
	struct slip_dec	 dec;		/* host frames, to count opcodes */
	uint8_t		 frame[PROTO_MAX_REQ];
	unsigned	 ops[256];	/* requests seen per opcode */
	unsigned	 begin_len;	/* payload of the last DEFL_BEGIN */
	uint32_t	 begin_size;	/* ... its size and block size */
	uint32_t	 begin_block;
	uint32_t	 mem_block;	/* block size of the last MEM_BEGIN */
	unsigned	 nwr;		/* WRITE_REGs seen (addr, value) */
	uint32_t	 wr[32][2];
	int		 nlines;	/* DTR/RTS changes seen */
	int		 lines[16][2];
};

#define LIFE_FLASH	(4u * 1024 * 1024)

static const uint8_t test_mac[6] = { 0x7c, 0xdf, 0xa1, 0x0e, 0x55, 0x03 };

/* Count the opcodes of the requests the host sent. */
static void
rig_count(struct rig *r, const uint8_t *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (slip_dec_byte(&r->dec, p[i]) != SLIP_FRAME ||
		    r->dec.len < PROTO_HDR_LEN)
			continue;
		r->ops[r->frame[1]]++;
		if (r->frame[1] == PROTO_FLASH_DEFL_BEGIN &&
		    r->dec.len >= PROTO_HDR_LEN + 16) {
			r->begin_len = le16_get(r->frame + 2);
			r->begin_size = le32_get(r->frame + PROTO_HDR_LEN);
			r->begin_block = le32_get(r->frame + PROTO_HDR_LEN + 8);
		}
		if (r->frame[1] == PROTO_MEM_BEGIN &&
		    r->dec.len >= PROTO_HDR_LEN + 16)
			r->mem_block = le32_get(r->frame + PROTO_HDR_LEN + 8);
		if (r->frame[1] == PROTO_WRITE_REG && r->dec.len >=
		    PROTO_HDR_LEN + 8 && r->nwr < nitems(r->wr)) {
			r->wr[r->nwr][0] = le32_get(r->frame + PROTO_HDR_LEN);
			r->wr[r->nwr][1] = le32_get(r->frame + PROTO_HDR_LEN +
			    4);
			r->nwr++;
		}
	}
}

/*
 * The unit's USB port went away and came back: the host's end reads EOF
 * and a new pair waits for the host to reopen.  Called with r->mtx held.
 */
static void
rig_reenumerate(struct rig *r)
{
	int	sv[2];

	r->gen = emu_generation(r->emu);
	if (r->fd != -1)
		close(r->fd);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		fatalx("socketpair: %s", strerror(errno));
	r->fd = sv[0];
	if (r->next_host_fd != -1)
		close(r->next_host_fd);
	r->next_host_fd = sv[1];
}

/* The emulator thread: feed what the host wrote, send what is due. */
static void *
rig_main(void *arg)
{
	struct rig	*r = arg;
	struct pollfd	 pfd[2];
	uint8_t		 buf[4096];
	uint64_t	 due, now, v;
	ssize_t		 n;
	size_t		 out, off;
	int		 timeout;

	for (;;) {
		pthread_mutex_lock(&r->mtx);
		if (r->stop) {
			pthread_mutex_unlock(&r->mtx);
			break;
		}
		now = util_now_us();
		while ((out = emu_drain(r->emu, buf, sizeof(buf), now)) > 0 ||
		    emu_generation(r->emu) != r->gen) {
			if (emu_generation(r->emu) != r->gen)
				rig_reenumerate(r);
			if (out == 0)
				continue;
			pthread_mutex_unlock(&r->mtx);
			/* No port (the host closed it): the bytes are lost. */
			for (off = 0; r->fd != -1 && off < out;
			    off += (size_t)n) {
				n = write(r->fd, buf + off, out - off);
				if (n <= 0) {
					close(r->fd);
					r->fd = -1;
					break;
				}
			}
			pthread_mutex_lock(&r->mtx);
		}
		due = emu_next_due_us(r->emu);
		pthread_mutex_unlock(&r->mtx);
		if (due == UINT64_MAX)
			timeout = -1;
		else if (due <= now)
			timeout = 0;
		else
			timeout = (int)((due - now + 999) / 1000);
		pfd[0].fd = r->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = r->wake_fd;
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, timeout) == -1)
			continue;
		if (pfd[1].revents & POLLIN)
			(void)read(r->wake_fd, &v, sizeof(v));
		if (pfd[0].revents & (POLLIN | POLLHUP)) {
			n = read(r->fd, buf, sizeof(buf));
			if (n <= 0) {
				/* The host closed its end; a new port may come. */
				close(r->fd);
				r->fd = -1;
				continue;
			}
			pthread_mutex_lock(&r->mtx);
			rig_count(r, buf, (size_t)n);
			emu_feed(r->emu, buf, (size_t)n, util_now_us());
			pthread_mutex_unlock(&r->mtx);
		}
	}
	return (NULL);
}

/* Lines hook: the emulator sees DTR/RTS like a real unit would. */
static void
rig_lines_cb(void *arg, int dtr, int rts)
{
	struct rig	*r = arg;
	uint64_t	 one = 1;

	pthread_mutex_lock(&r->mtx);
	emu_set_lines(r->emu, dtr, rts, util_now_us());
	if (r->nlines < 16) {
		r->lines[r->nlines][0] = dtr;
		r->lines[r->nlines][1] = rts;
	}
	r->nlines++;
	pthread_mutex_unlock(&r->mtx);
	(void)write(r->wake_fd, &one, sizeof(one));
}

static struct rig *rig_new_life(enum chip_id, enum emu_link,
    const char *const *, size_t, const struct emu_config *);

/* Start an emulated unit with the given link and fault specs. */
static struct rig *
rig_new_chip(enum chip_id chip, enum emu_link link,
    const char *const *faults, size_t nfaults)
{
	return (rig_new_life(chip, link, faults, nfaults, NULL));
}

/*
 * Start an emulated unit; life (may be NULL) adds the unit-life model:
 * its board, boot and start_app, and a flash buffer.
 */
static struct rig *
rig_new_life(enum chip_id chip, enum emu_link link,
    const char *const *faults, size_t nfaults, const struct emu_config *life)
{
	struct emu_config	 cfg;
	struct emu_fault	 f[8];
	struct rig		*r;
	char			*cause = NULL;
	int			 sv[2];
	size_t			 i;

	memset(&cfg, 0, sizeof(cfg));
	if (life != NULL)
		cfg = *life;
	cfg.stub_model = 1;
	cfg.chip = chip;
	cfg.link = link;
	cfg.profile = EMU_PROFILE_FAST;
	memcpy(cfg.mac, test_mac, sizeof(cfg.mac));
	cfg.seed = 1;
	for (i = 0; i < nfaults && i < nitems(f); i++) {
		if (emu_fault_parse(faults[i], &f[i], &cause) != 0) {
			tap_diag("fault \"%s\": %s", faults[i], cause);
			free(cause);
			return (NULL);
		}
	}
	cfg.faults = f;
	cfg.nfaults = nfaults;
	r = xcalloc(1, sizeof(*r));
	r->link = link;
	if ((r->emu = emu_new(&cfg, &cause)) == NULL) {
		tap_diag("emu_new: %s", cause);
		free(cause);
		free(r);
		return (NULL);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		fatalx("socketpair: %s", strerror(errno));
	r->fd = sv[0];
	r->host_fd = sv[1];
	r->next_host_fd = -1;
	r->gen = emu_generation(r->emu);
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&r->mtx, NULL);
	slip_dec_init(&r->dec, r->frame, sizeof(r->frame));
	pthread_create(&r->thread, NULL, rig_main, r);
	return (r);
}

/* An ESP32-S2 unit. */
static struct rig *
rig_new(enum emu_link link, const char *const *faults, size_t nfaults)
{
	return (rig_new_chip(CHIP_ESP32S2, link, faults, nfaults));
}

/* The emulator's state once pending events up to now have run. */
static enum emu_reason
rig_reason_within(struct rig *r, enum emu_reason want, unsigned ms)
{
	uint64_t	deadline = util_now_ms() + ms;
	enum emu_reason	got;

	for (;;) {
		pthread_mutex_lock(&r->mtx);
		got = emu_reason(r->emu);
		pthread_mutex_unlock(&r->mtx);
		if (got == want || util_ms_left(deadline) == 0)
			return (got);
		util_sleep_us(5000);	/* polling interval */
	}
}

/*
 * Did the lines go RTS asserted, then released, with DTR never asserted?
 * (Repeated writes of the same state, as esptool's usbser.sys workaround do, are
 * allowed.)  Call with r->mtx held.
 */
static int
rig_rts_pulse(const struct rig *r)
{
	int	i, n = MINIMUM(r->nlines, 16), seen_on = 0;

	if (n == 0 || r->nlines > 16)
		return (0);
	for (i = 0; i < n; i++) {
		if (r->lines[i][0] != 0)
			return (0);
		if (r->lines[i][1])
			seen_on = 1;
	}
	return (seen_on && r->lines[0][1] == 1 && r->lines[n - 1][1] == 0);
}

/* Requests with opcode op the emulator has received so far. */
static unsigned
rig_ops(struct rig *r, uint8_t op)
{
	unsigned	n;

	pthread_mutex_lock(&r->mtx);
	n = r->ops[op];
	pthread_mutex_unlock(&r->mtx);
	return (n);
}

/* Payload length of the last FLASH_DEFL_BEGIN the emulator received. */
static unsigned
rig_begin_len(struct rig *r)
{
	unsigned	n;

	pthread_mutex_lock(&r->mtx);
	n = r->begin_len;
	pthread_mutex_unlock(&r->mtx);
	return (n);
}

/* Stop the thread and free the unit (the host end is closed by then). */
static void
rig_free(struct rig *r)
{
	uint64_t	one = 1;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mtx);
	r->stop = 1;
	pthread_mutex_unlock(&r->mtx);
	(void)write(r->wake_fd, &one, sizeof(one));
	pthread_join(r->thread, NULL);
	if (r->fd != -1)
		close(r->fd);
	if (r->host_fd != -1)
		close(r->host_fd);
	if (r->next_host_fd != -1)
		close(r->next_host_fd);
	close(r->wake_fd);
	pthread_mutex_destroy(&r->mtx);
	emu_free(r->emu);
	free(r);
}

/* What the port of a rig is: the S2 ROM's USB port, or a bridge. */
static enum chip_usb_kind
rig_kind(const struct rig *r)
{
	return (r->link == EMU_LINK_UART ? USB_KIND_BRIDGE : USB_KIND_S2_ROM);
}

/* Open the host end of a rig as an fd transport with the lines hook. */
static int
rig_open(struct rig *r, struct xport *xp, int cancel_fd)
{
	char	*cause = NULL;
	int	 error;

	xport_init(xp, cancel_fd);
	error = xport_open_fd(xp, r->host_fd, "emu", 1, &cause);
	if (error != 0) {
		tap_diag("xport_open_fd: %s", cause);
		free(cause);
		return (error);
	}
	r->host_fd = -1;	/* the transport owns it now */
	xport_set_lines_hook(xp, rig_lines_cb, r);
	return (0);
}

/*
 * Job open hook: the job's transport talks to a rig; after a
 * re-enumeration it gets the new port, -ENODEV until there is one.
 */
static int
rig_job_open(void *arg, struct xport *xp, const char *port, char **cause)
{
	struct rig	*r = arg;
	int		 error, fd;

	pthread_mutex_lock(&r->mtx);
	if ((fd = r->host_fd) != -1)
		r->host_fd = -1;
	else if ((fd = r->next_host_fd) != -1)
		r->next_host_fd = -1;
	pthread_mutex_unlock(&r->mtx);
	if (fd == -1)
		return (-ENODEV);
	if ((error = xport_open_fd(xp, fd, port, 1, cause)) != 0)
		return (error);
	xport_set_lines_hook(xp, rig_lines_cb, r);
	return (0);
}

/* Loader reopen hook: the rig's new port, and what it is now. */
static int
rig_reopen(void *arg, struct xport *xp, const char *path,
    enum chip_usb_kind *kind, char **cause)
{
	struct rig	*r = arg;
	uint16_t	 vid, pid;
	int		 error;

	if ((error = rig_job_open(arg, xp, path, cause)) != 0)
		return (error);
	pthread_mutex_lock(&r->mtx);
	if (emu_usb_id(r->emu, &vid, &pid) == 0)
		*kind = chip_usb_classify(vid, pid);
	pthread_mutex_unlock(&r->mtx);
	return (0);
}

/* Baud hook: the line coding reaches the emulated app (1200 bps). */
static void
rig_baud_cb(void *arg, unsigned baud)
{
	struct rig	*r = arg;
	uint64_t	 one = 1;

	pthread_mutex_lock(&r->mtx);
	emu_set_baud_host(r->emu, baud, util_now_us());
	pthread_mutex_unlock(&r->mtx);
	(void)write(r->wake_fd, &one, sizeof(one));
}

/* A region from a buffer: deflated and digested like image.c does. */
static void
region_make(struct loader_region *reg, uint32_t offset, const uint8_t *data,
    size_t len)
{
	uLongf	zlen = compressBound(len);
	uint8_t	*z = xmalloc(zlen);

	if (compress2(z, &zlen, data, len, 9) != Z_OK)
		fatalx("compress2 failed");
	reg->offset = offset;
	reg->data = data;
	reg->len = len;
	reg->zdata = z;
	reg->zlen = zlen;
	digest_md5_hex(data, len, reg->md5hex);
}

/* Test payload: compressible text with some noise, 4-byte multiple. */
static uint8_t *
payload_make(size_t len)
{
	uint8_t		*p = xmalloc(len);
	uint32_t	 x = 12345;
	size_t		 i;

	for (i = 0; i < len; i++) {
		x = x * 1103515245 + 12345;
		p[i] = (i % 7 == 0) ? (uint8_t)(x >> 16) : (uint8_t)("espfleet"
		    [i % 8]);
	}
	return (p);
}

/* Is the flash all 0xFF from a to b? */
static int
flash_erased(const uint8_t *flash, size_t a, size_t b)
{
	for (; a < b; a++) {
		if (flash[a] != 0xff)
			return (0);
	}
	return (1);
}

struct prog_log {
	size_t		 calls;
	size_t		 last_done;
	int		 monotonic;
	int		 cancel_fd;	/* write here after cancel_after calls */
	size_t		 cancel_after;
};

/* Progress callback: check the counts only go up; cancel on request. */
static void
prog_cb(void *arg, enum loader_phase ph, uint32_t addr, size_t done,
    size_t len)
{
	struct prog_log	*pl = arg;
	uint64_t	 one = 1;

	(void)addr;
	(void)len;
	if (ph != LOADER_PH_WRITING)
		return;
	if (done < pl->last_done)
		pl->monotonic = 0;
	pl->last_done = done;
	if (++pl->calls == pl->cancel_after && pl->cancel_fd != -1)
		(void)write(pl->cancel_fd, &one, sizeof(one));
}

/* Connect, detect and attach; 0 when all three work. */
static int
bring_up(struct loader *l)
{
	int	error;

	if ((error = loader_connect(l)) != 0 ||
	    (error = loader_detect(l)) != 0 ||
	    (error = loader_attach(l)) != 0)
		tap_diag("bring-up failed: %s", loader_cause(l));
	return (error);
}

/* Connect, detect, flash id, write, verify, reset: the happy path. */
static void
test_happy(const uint8_t *img, size_t len)
{
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	struct loader_region	 reg;
	struct prog_log		 pl = { 0, 0, 1, -1, 0 };
	const uint8_t		*flash;
	uint8_t			 buf[64];
	char			 mac[18];
	int			 error;

	if ((r = rig_new(EMU_LINK_USB, NULL, 0)) == NULL ||
	    rig_open(r, &xp, -1) != 0) {
		tap_ok(0, "start an emulated ESP32-S2 on USB");
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	is_int(loader_connect(&l), 0, "connect: SYNC answered (%s)",
	    loader_cause(&l));
	is_int(l.status_len, 4, "ROM replies carry 4 status bytes");
	tap_ok(!l.stub, "the ROM, not a stub, answered");
	is_int(rig_ops(r, PROTO_SYNC), 1, "one SYNC was enough");
	/* All 8 replies were read: nothing is left on the wire. */
	tap_ok(l.rx_off == l.rx_len &&
	    xport_read(&xp, buf, sizeof(buf), util_now_ms() + 100) ==
	    -ETIMEDOUT, "all 8 SYNC replies were consumed");

	is_int(loader_detect(&l), 0, "detect (%s)", loader_cause(&l));
	tap_ok(l.chip != NULL && l.chip->id == CHIP_ESP32S2,
	    "the chip is an ESP32-S2 (magic 0x7c6)");
	tap_ok(l.have_mac && memcmp(l.mac, test_mac, 6) == 0,
	    "MAC read from eFuse");
	chip_mac_format(l.mac, mac, sizeof(mac));
	tap_diag("MAC %s, package %s, revision v%d.%d", mac, l.package,
	    l.rev_major, l.rev_minor);
	tap_ok(l.usb_otg, "USB-OTG detected (UARTDEV_BUF_NO == 2)");
	tap_ok(strncmp(l.package, "ESP32-S2", 8) == 0, "package name %s",
	    l.package);

	is_int(loader_attach(&l), 0, "SPI attach and flash id (%s)",
	    loader_cause(&l));
	pthread_mutex_lock(&r->mtx);
	is_int(l.flash_id, emu_jedec(r->emu), "flash id 0x%06x is the "
	    "emulated chip's JEDEC id", l.flash_id);
	is_int(l.flash_size, emu_flash_size(r->emu), "flash size %u bytes",
	    l.flash_size);
	pthread_mutex_unlock(&r->mtx);
	is_int(loader_set_baud(&l, 921600), 0, "--baud on USB-OTG is a no-op");
	is_int(rig_ops(r, PROTO_CHANGE_BAUDRATE), 0,
	    "no CHANGE_BAUDRATE sent on USB-OTG");

	region_make(&reg, 0x0, img, len);
	l.progress = prog_cb;
	l.progress_arg = &pl;
	error = loader_write(&l, &reg);
	is_int(error, 0, "write %zu bytes (%zu compressed) (%s)", len,
	    reg.zlen, loader_cause(&l));
	is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA),
	    (reg.zlen + 0x3ff) / 0x400, "one FLASH_DEFL_DATA per 0x400 "
	    "compressed bytes, no retries");
	tap_ok(pl.monotonic && pl.last_done == len,
	    "progress went up to %zu bytes", pl.last_done);
	is_int(rig_begin_len(r), 20, "FLASH_DEFL_BEGIN to the S2 ROM has 5 words");
	is_int(rig_ops(r, PROTO_FLASH_DEFL_END) + rig_ops(r, PROTO_FLASH_END),
	    0, "no FLASH_END or FLASH_DEFL_END sent");
	is_int(loader_verify(&l, &reg), 0, "MD5 verify (%s)",
	    loader_cause(&l));
	pthread_mutex_lock(&r->mtx);
	flash = emu_flash(r->emu);
	tap_ok(memcmp(flash, img, len) == 0, "the flash holds the image "
	    "byte for byte");
	tap_ok(flash_erased(flash, (len + 0xfff) & ~(size_t)0xfff,
	    emu_flash_size(r->emu)), "the rest of the flash is still 0xFF");
	pthread_mutex_unlock(&r->mtx);

	is_int(loader_finish(&l, LOADER_AFTER_REBOOT), 0,
	    "reboot after writing (%s)", loader_cause(&l));
	is_int(rig_ops(r, PROTO_WRITE_REG) >= 4, 1,
	    "the RTC watchdog was armed with WRITE_REGs");
	is_str(emu_reason_name(rig_reason_within(r, EMU_RS_WDT_RESET, 2000)),
	    emu_reason_name(EMU_RS_WDT_RESET), "the unit left download mode "
	    "through a watchdog reset");
	pthread_mutex_lock(&r->mtx);
	is_int(r->nlines, 0, "no modem-line reset on USB-OTG");
	pthread_mutex_unlock(&r->mtx);
	loader_free(&l);
	xport_close(&xp);
	free((void *)reg.zdata);
	rig_free(r);
}

/* A UART unit: no USB-OTG, baud change allowed, RTS hard reset. */
static void
test_uart(void)
{
	struct rig	*r;
	struct xport	 xp;
	struct loader	 l;

	if ((r = rig_new(EMU_LINK_UART, NULL, 0)) == NULL ||
	    rig_open(r, &xp, -1) != 0) {
		tap_ok(0, "start an emulated ESP32-S2 on a UART");
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	if (bring_up(&l) == 0) {
		tap_ok(!l.usb_otg, "UART link: not USB-OTG");
		is_int(loader_set_baud(&l, 460800), 0, "CHANGE_BAUDRATE to "
		    "460800 (%s)", loader_cause(&l));
		pthread_mutex_lock(&r->mtx);
		is_int(emu_baud(r->emu), 460800, "the unit switched baud");
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_read_reg(&l, CHIP_MAGIC_REG, &(uint32_t){ 0 }),
		    0, "still talking after the switch");
		pthread_mutex_lock(&r->mtx);
		r->nlines = 0;	/* the connect's reset is not this one */
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_finish(&l, LOADER_AFTER_REBOOT), 0,
		    "hard reset over RTS (%s)", loader_cause(&l));
		pthread_mutex_lock(&r->mtx);
		tap_ok(rig_rts_pulse(r), "the unit saw an RTS pulse with DTR "
		    "released (%d changes)", r->nlines);
		tap_ok(emu_reason(r->emu) != EMU_RS_WDT_RESET,
		    "and no watchdog reset on a UART link");
		pthread_mutex_unlock(&r->mtx);
	} else
		tap_ok(0, "bring up a UART unit");
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
}

/* An ESP32 on a UART: 4-word FLASH_DEFL_BEGIN, its own MAC layout. */
static void
test_esp32(const uint8_t *img, size_t len)
{
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	struct loader_region	 reg;

	region_make(&reg, 0x10000, img, len);
	if ((r = rig_new_chip(CHIP_ESP32, EMU_LINK_UART, NULL, 0)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			is_str(l.chip->name, "ESP32", "an ESP32 is detected");
			is_int(l.crystal_mhz, 40, "its crystal from the UART "
			    "divider: 40 MHz");
			tap_ok(l.have_mac && memcmp(l.mac, test_mac, 6) == 0,
			    "its MAC comes from its own eFuse layout");
			is_int(loader_write(&l, &reg), 0, "write to an ESP32 "
			    "(%s)", loader_cause(&l));
			is_int(rig_begin_len(r), 16, "FLASH_DEFL_BEGIN to the ESP32 "
			    "ROM has 4 words");
			is_int(loader_verify(&l, &reg), 0, "and verify (%s)",
			    loader_cause(&l));
		} else
			tap_ok(0, "bring up an ESP32");
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start an emulated ESP32");
	rig_free(r);
	free((void *)reg.zdata);
}

/* Checksum errors from the ROM: retried, and reported when they persist. */
static void
test_retry(const uint8_t *img, size_t len)
{
	static const char *const once[] = {
		"kind=rom-error,op=FLASH_DEFL_DATA,at=3,count=1,code=0x07",
	};
	static const char *const always[] = {
		"kind=rom-error,op=FLASH_DEFL_DATA,at=3,count=3,code=0x07",
	};
	static const char *const lost[] = {
		"kind=drop-reply,op=FLASH_DEFL_DATA,at=5,count=1",
	};
	static const char *const late[] = {
		"kind=stall,ms=3500,op=FLASH_DEFL_DATA,at=2,count=1",
	};
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	struct loader_region	 reg;
	unsigned		 nblocks;
	int			 error;

	region_make(&reg, 0x10000, img, len);
	nblocks = (unsigned)((reg.zlen + 0x3ff) / 0x400);

	if ((r = rig_new(EMU_LINK_USB, once, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			error = loader_write(&l, &reg);
			is_int(error, 0, "one checksum error is retried (%s)",
			    loader_cause(&l));
			is_int(l.retries, 1, "one retry counted");
			is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA), nblocks + 1,
			    "block 3 was sent twice");
			is_int(loader_verify(&l, &reg), 0, "and the flash "
			    "verifies (%s)", loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit with one checksum error");
	rig_free(r);

	if ((r = rig_new(EMU_LINK_USB, always, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			error = loader_write(&l, &reg);
			is_int(error, -EPROTO, "three checksum errors fail the "
			    "write");
			is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA), 2 + 3,
			    "block 3 was tried 3 times, then no more blocks");
			tap_ok(strstr(loader_cause(&l), "FLASH_DEFL_DATA block "
			    "3/") != NULL && strstr(loader_cause(&l),
			    "ROM status 0x07 checksum error") != NULL,
			    "the cause names block, address and ROM code: %s",
			    loader_cause(&l));
			is_int(l.last_error, 0x07, "last ROM error kept");
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit with persistent checksum errors");
	rig_free(r);

	/* The reply to block 5 is lost: the ROM took it (issue 5 1a). */
	if ((r = rig_new(EMU_LINK_USB, lost, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			error = loader_write(&l, &reg);
			is_int(error, 0, "a lost block reply is recovered (%s)",
			    loader_cause(&l));
			is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA), nblocks + 1,
			    "block 5 was sent again once");
			is_int(loader_verify(&l, &reg), 0, "and the flash "
			    "verifies (%s)", loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit that loses a block reply");
	rig_free(r);

	/* Block 2 is answered after its timeout (issue 5 1c). */
	if ((r = rig_new(EMU_LINK_USB, late, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			error = loader_write(&l, &reg);
			is_int(error, 0, "a late block reply is taken (%s)",
			    loader_cause(&l));
			is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA), nblocks,
			    "no block was sent twice");
			is_int(loader_verify(&l, &reg), 0, "and the flash "
			    "verifies (%s)", loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit that stalls a block reply");
	rig_free(r);
	free((void *)reg.zdata);
}

/* Boot text around replies is skipped, and quoted when nothing answers. */
static void
test_noise(void)
{
	static const char *const noise[] = { "kind=noise,op=SYNC,at=1" };
	static const char *const mute[] = {
		"kind=noise,op=SYNC,count=0",
		"kind=drop-reply,op=SYNC,count=0",
	};
	struct rig	*r;
	struct xport	 xp;
	struct loader	 l;

	if ((r = rig_new(EMU_LINK_USB, noise, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		is_int(loader_connect(&l), 0, "boot text before the SYNC "
		    "replies is skipped (%s)", loader_cause(&l));
		tap_ok(l.noise_len > 0, "... and kept (%zu bytes)",
		    l.noise_len);
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a noisy unit");
	rig_free(r);

	if ((r = rig_new(EMU_LINK_USB, mute, 2)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		l.connect_attempts = 1;
		l.trick_ms = 200;
		is_int(loader_connect(&l), -ETIMEDOUT, "a unit that only "
		    "prints text does not connect");
		tap_ok(strstr(loader_cause(&l), "the unit printed "
		    "\"ESP-ROM:esp32s2") != NULL &&
		    strstr(loader_cause(&l), "\\x0d\\x0a") != NULL,
		    "the cause quotes the text, escaped: %s", loader_cause(&l));
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit that prints but never answers");
	rig_free(r);
}

/* A reply that never comes ends the command at its deadline. */
static void
test_timeout(void)
{
	static const char *const drop[] = {
		"kind=drop-reply,op=READ_REG,at=1,count=1",
	};
	struct rig	*r;
	struct xport	 xp;
	struct loader	 l;
	uint32_t	 v;
	uint64_t	 t0, dt;
	int		 error;

	if ((r = rig_new(EMU_LINK_USB, drop, 1)) == NULL ||
	    rig_open(r, &xp, -1) != 0) {
		tap_ok(0, "start a unit that drops a reply");
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	l.default_ms = 400;
	if (loader_connect(&l) == 0) {
		t0 = util_now_ms();
		error = loader_read_reg(&l, CHIP_MAGIC_REG, &v);
		dt = util_now_ms() - t0;
		is_int(error, -ETIMEDOUT, "a dropped reply times out");
		tap_ok(dt >= 400 && dt < 400 + 300,
		    "... at the command's deadline (%llu ms of 400)",
		    (unsigned long long)dt);
		tap_ok(strstr(loader_cause(&l), "READ_REG: no reply from the "
		    "chip within 400 ms") != NULL, "cause: %s",
		    loader_cause(&l));
		is_int(loader_read_reg(&l, CHIP_MAGIC_REG, &v), 0,
		    "the next command works");
		is_int(v, 0x7c6, "... and reads the S2 magic");
	} else
		tap_ok(0, "connect: %s", loader_cause(&l));
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
}

/* A flipped bit in flash fails the MD5; an unwritten region says so. */
static void
test_verify_fail(const uint8_t *img, size_t len)
{
	static const char *const flip[] = { "kind=bitflip,at=1" };
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	struct loader_region	 reg, other;

	region_make(&reg, 0x0, img, len);
	region_make(&other, 0x200000, img, len);
	if ((r = rig_new(EMU_LINK_USB, flip, 1)) != NULL &&
	    rig_open(r, &xp, -1) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		if (bring_up(&l) == 0) {
			is_int(loader_write(&l, &reg), 0, "write (%s)",
			    loader_cause(&l));
			is_int(loader_verify(&l, &reg), -EIO,
			    "a flipped bit fails verification");
			tap_ok(strstr(loader_cause(&l), "MD5 of flash does not "
			    "match the image") != NULL, "cause: %s",
			    loader_cause(&l));
			is_int(loader_verify(&l, &other), -EIO,
			    "a region never written fails verification");
			tap_ok(strstr(loader_cause(&l), "write failed, the "
			    "flash region is empty") != NULL, "cause: %s",
			    loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit with a bit flip");
	rig_free(r);
	free((void *)reg.zdata);
	free((void *)other.zdata);
}

/* Cancelling mid-write returns at once with -ECANCELED. */
static void
test_cancel(const uint8_t *img, size_t len)
{
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	struct loader_region	 reg;
	struct prog_log		 pl = { 0, 0, 1, -1, 5 };
	int			 efd, error;

	region_make(&reg, 0x0, img, len);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pl.cancel_fd = efd;
	if ((r = rig_new(EMU_LINK_USB, NULL, 0)) != NULL &&
	    rig_open(r, &xp, efd) == 0) {
		loader_init(&l, &xp);
		l.port_kind = rig_kind(r);
		l.progress = prog_cb;
		l.progress_arg = &pl;
		if (bring_up(&l) == 0) {
			error = loader_write(&l, &reg);
			is_int(error, -ECANCELED, "cancel during the write");
			is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA), 5,
			    "no block was sent after the cancel");
			tap_ok(strstr(loader_cause(&l), "cancelled") != NULL,
			    "cause: %s", loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
	} else
		tap_ok(0, "start a unit to cancel");
	rig_free(r);
	close(efd);
	free((void *)reg.zdata);
}

/* Index of the first WRITE_REG to addr (-1 none); value into *v. */
static int
rig_wr_find(struct rig *r, uint32_t addr, uint32_t *v)
{
	unsigned	i;
	int		found = -1;

	pthread_mutex_lock(&r->mtx);
	for (i = 0; i < r->nwr; i++) {
		if (r->wr[i][0] == addr) {
			*v = r->wr[i][1];
			found = (int)i;
			break;
		}
	}
	pthread_mutex_unlock(&r->mtx);
	return (found);
}

/*
 * A unit its own app sent into download mode (FORCE_DOWNLOAD_BOOT set):
 * the bit is cleared before the watchdog reset, else it would come back
 * in download mode.
 */
static void
test_force_download(void)
{
	struct rig	*r;
	struct xport	 xp;
	struct loader	 l;
	uint32_t	 v = 0xdead, w = 0;
	int		 iopt, iwdt;

	if ((r = rig_new(EMU_LINK_USB, NULL, 0)) == NULL ||
	    rig_open(r, &xp, -1) != 0) {
		tap_ok(0, "start an emulated ESP32-S2 on USB");
		rig_free(r);
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	if (bring_up(&l) == 0 &&
	    loader_write_reg(&l, 0x3F408128u, 0x1) == 0) {
		pthread_mutex_lock(&r->mtx);
		r->nwr = 0;
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_finish(&l, LOADER_AFTER_REBOOT), 0,
		    "reboot a unit with FORCE_DOWNLOAD_BOOT set (%s)",
		    loader_cause(&l));
		tap_ok(l.force_dl_cleared, "the loader says it cleared it");
		iopt = rig_wr_find(r, 0x3F408128u, &v);
		iwdt = rig_wr_find(r, 0x3F408094u, &w);
		tap_ok(iopt >= 0 && (v & 1) == 0, "RTC_CNTL_OPTION1 written "
		    "with bit 0 clear (0x%x)", v);
		tap_ok(iopt >= 0 && iwdt > iopt && w == 0xD0000102u,
		    "... before the watchdog was armed (writes %d, %d)", iopt,
		    iwdt);
		is_str(emu_reason_name(rig_reason_within(r, EMU_RS_WDT_RESET,
		    2000)), emu_reason_name(EMU_RS_WDT_RESET),
		    "the unit left download mode through a watchdog reset");
	} else
		tap_ok(0, "bring up and set FORCE_DOWNLOAD_BOOT: %s",
		    loader_cause(&l));
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
}

/* A scripted "port": the test writes what the unit says. */
struct fake {
	int	 peer;		/* the unit's end */
	int	 reopened;	/* times the reopen hook ran */
	const char *again;	/* text on the reopened port, or NULL */
	enum chip_usb_kind kind; /* what the reopened port is */
};

/* Open a socketpair as the loader's port; *peer is the unit's end. */
static int
fake_open(struct xport *xp, int cancel_fd, int *peer)
{
	char	*cause = NULL;
	int	 sv[2], error;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return (-errno);
	xport_init(xp, cancel_fd);
	if ((error = xport_open_fd(xp, sv[1], "fake", 1, &cause)) != 0) {
		tap_diag("xport_open_fd: %s", cause);
		free(cause);
		close(sv[0]);
		close(sv[1]);
		return (error);
	}
	*peer = sv[0];
	return (0);
}

/* Reopen hook: a new socketpair, with the scripted text already sent. */
static int
fake_reopen(void *arg, struct xport *xp, const char *path,
    enum chip_usb_kind *kind, char **cause)
{
	struct fake	*f = arg;
	int		 error;

	(void)path;
	(void)cause;
	f->reopened++;
	if (f->peer != -1)
		close(f->peer);
	if ((error = fake_open(xp, xp->cancel_fd, &f->peer)) != 0)
		return (error);
	if (f->again != NULL)
		(void)write(f->peer, f->again, strlen(f->again));
	*kind = f->kind;
	return (0);
}

/*
 * One boot check against scripted text; close_first makes the port vanish
 * first (the reopen hook then serves f->again).  Returns the time taken.
 */
static uint64_t
boot_run(const char *said, const char *esphome, struct fake *f,
    int close_first, unsigned wait_ms, enum loader_boot *res, char *text)
{
	struct loader_boot_opts	 o;
	struct xport		 xp;
	struct loader		 l;
	uint64_t		 t0;

	*res = LOADER_BOOT__MAX;
	text[0] = '\0';
	f->peer = -1;
	if (fake_open(&xp, -1, &f->peer) != 0)
		return (0);
	if (said != NULL)
		(void)write(f->peer, said, strlen(said));
	if (close_first) {
		close(f->peer);
		f->peer = -1;
	}
	loader_init(&l, &xp);
		memset(&o, 0, sizeof(o));
	o.wait_ms = wait_ms;
	o.esphome = esphome;
	o.reopen = fake_reopen;
	o.reopen_arg = f;
	t0 = util_now_ms();
	if (loader_boot_check(&l, &o, res, text) != 0)
		*res = LOADER_BOOT__MAX;
	t0 = util_now_ms() - t0;
	loader_free(&l);
	xport_close(&xp);
	if (f->peer != -1)
		close(f->peer);
	return (t0);
}

/* The boot check: each kind of evidence, said plainly. */
static void
test_boot_check(void)
{
	static const char idf[] =
	    "ESP-ROM:esp32s2-rc4-20191025\r\n"
	    "I (31) cpu_start: Project name:     screek-human-sensor\r\n"
	    "I (32) cpu_start: App version:      1.0.3\r\n";
	struct fake		 f;
	enum loader_boot	 res;
	char			 text[LOADER_BOOT_TEXT], said[512];
	uint64_t		 ms;

	memset(&f, 0, sizeof(f));
	snprintf(said, sizeof(said), "%s[I][app:102]: ESPHome version "
	    "2023.6.3 compiled on Jun 22 2023, 10:00:00\r\n", idf);
	ms = boot_run(said, "2023.6.3", &f, 0, 3000, &res, text);
	is_str(loader_boot_name(res), "match", "ESPHome banner, same version");
	is_str(text, "booted: ESPHome 2023.6.3 (matches image)",
	    "... said plainly");
	tap_ok(ms < 1000, "... settled as soon as the line came (%llu ms)",
	    (unsigned long long)ms);

	snprintf(said, sizeof(said), "[I][app:102]: ESPHome version 2023.5.0 "
	    "compiled on May 1 2023\r\n");
	(void)boot_run(said, "2023.6.3", &f, 0, 3000, &res, text);
	is_str(loader_boot_name(res), "differs", "another ESPHome version");
	is_str(text, "booted, but ESPHome 2023.5.0 differs from the image's "
	    "2023.6.3", "... said plainly");

	(void)boot_run(said, NULL, &f, 0, 3000, &res, text);
	is_str(text, "booted: ESPHome 2023.5.0", "no version in the image: "
	    "the banner alone");

	ms = boot_run(idf, "2023.6.3", &f, 0, 4000, &res, text);
	is_str(loader_boot_name(res), "banner", "an IDF banner only");
	is_str(text, "booted: screek-human-sensor 1.0.3", "... names project "
	    "and version");
	tap_ok(ms < 3000, "... waited only a little for an ESPHome line "
	    "(%llu ms)", (unsigned long long)ms);

	(void)boot_run("ESP-ROM:esp32s2-rc4-20191025\r\ninvalid header: "
	    "0xffffffff\r\ninvalid header: 0xffffffff\r\n", "2023.6.3", &f, 0,
	    3000, &res, text);
	is_str(loader_boot_name(res), "failed", "ROM bad-image message");
	is_str(text, "boot failed: invalid header: 0xffffffff",
	    "... quoted as the last line");

	(void)boot_run("\x1b[31mE (40) boot: No bootable app partitions\x1b"
	    "[0m\r\n", NULL, &f, 0, 3000, &res, text);
	tap_ok(res == LOADER_BOOT_FAILED && strchr(text, '\x1b') == NULL &&
	    strstr(text, "No bootable app") != NULL, "device text is "
	    "sanitized: %s", text);

	ms = boot_run(NULL, "2023.6.3", &f, 0, 300, &res, text);
	is_str(loader_boot_name(res), "silent", "nothing heard");
	is_str(text, "rebooted, app silent on USB", "... said plainly");
	tap_ok(ms >= 300 && ms < 1500, "... after the bounded wait (%llu ms)",
	    (unsigned long long)ms);

	f.reopened = 0;
	f.again = NULL;
	f.kind = USB_KIND_APP_CDC;
	(void)boot_run(NULL, "2023.6.3", &f, 1, 400, &res, text);
	tap_ok(f.reopened == 1, "the vanished port was opened again");
	is_str(text, "booted: app USB port up", "it came back as an app port");

	f.reopened = 0;
	f.kind = USB_KIND_UNKNOWN;
	f.again = "[I][app:102]: ESPHome version 2023.6.3 compiled\r\n";
	(void)boot_run(NULL, "2023.6.3", &f, 1, 2000, &res, text);
	is_str(text, "booted: ESPHome 2023.6.3 (matches image)",
	    "the banner read from the reopened port");
}

/* A unit that loops back into download mode answers SYNC: boot failed. */
static void
test_boot_loop(void)
{
	struct loader_boot_opts	 o;
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	enum loader_boot	 res = LOADER_BOOT_NONE;
	char			 text[LOADER_BOOT_TEXT];
	int			 efd;
	uint64_t		 one = 1, t0;

	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if ((r = rig_new(EMU_LINK_USB, NULL, 0)) == NULL ||
	    rig_open(r, &xp, efd) != 0) {
		tap_ok(0, "start an emulated ESP32-S2 on USB");
		rig_free(r);
		close(efd);
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	memset(&o, 0, sizeof(o));
	o.wait_ms = 200;
	o.esphome = "2023.6.3";
	is_int(loader_boot_check(&l, &o, &res, text), 0, "boot check on a "
	    "unit in download mode");
	is_str(loader_boot_name(res), "failed", "... fails");
	is_str(text, "boot failed: the unit came back in download mode",
	    "... said plainly");
	(void)write(efd, &one, sizeof(one));
	o.wait_ms = 20000;
	t0 = util_now_ms();
	is_int(loader_boot_check(&l, &o, &res, text), -ECANCELED,
	    "the boot check is cancellable");
	tap_ok(util_now_ms() - t0 < 1000, "... at once");
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
	close(efd);
}

/* A unit with the unit-life model and the demo firmware in its flash. */
static struct rig *
life_new(enum emu_board board, enum emu_link link, uint8_t *flash,
    const uint8_t *demo, size_t dlen)
{
	struct emu_config	life;

	memset(&life, 0, sizeof(life));
	memset(flash, 0xff, LIFE_FLASH);
	memcpy(flash, demo, dlen);
	life.flash = flash;
	life.flash_size = LIFE_FLASH;
	life.boot = 1;
	life.start_app = 1;
	life.board = board;
	return (rig_new_life(CHIP_ESP32S2, link, NULL, 0, &life));
}

/*
 * Into download mode from a running app: each board honours one trick
 * (or none); the loader must find it, and say which.
 */
static void
test_into_download(const uint8_t *demo, size_t dlen)
{
	static const struct {
		enum emu_board	 board;
		enum emu_link	 link;
		int		 lines;		/* give the port modem lines */
		const char	*how;		/* NULL: must fail */
		const char	*what;
	} cases[] = {
		{ EMU_BOARD_BRIDGE, EMU_LINK_UART, 1, "tight reset (50 ms)",
		    "bridge board: esptool's first sequence" },
		{ EMU_BOARD_IDF_CDC, EMU_LINK_USB, 1,
		    "the IDF console's RTS edge", "ESP-IDF app on native USB" },
		{ EMU_BOARD_TINYUSB, EMU_LINK_USB, 1,
		    "the Arduino line-state sequence",
		    "Arduino TinyUSB app on native USB" },
		{ EMU_BOARD_TINYUSB, EMU_LINK_USB, 0, "the 1200-bps touch",
		    "Arduino app, port without modem lines" },
		{ EMU_BOARD_PLAIN, EMU_LINK_USB, 1, NULL,
		    "an app that ignores every trick" },
	};
	static uint8_t	 flash[LIFE_FLASH];
	struct rig	*r;
	struct xport	 xp;
	struct loader	 l;
	char		*cause = NULL;
	uint64_t	 t0;
	size_t		 i;
	int		 error;

	for (i = 0; i < nitems(cases); i++) {
		if ((r = life_new(cases[i].board, cases[i].link, flash, demo,
		    dlen)) == NULL) {
			tap_ok(0, "start a unit: %s", cases[i].what);
			continue;
		}
		xport_init(&xp, -1);
		if (rig_job_open(r, &xp, "emu", &cause) != 0) {
			tap_ok(0, "open the unit's port: %s", cause);
			free(cause);
			rig_free(r);
			continue;
		}
		if (!cases[i].lines)
			xport_set_lines_hook(&xp, NULL, NULL);
		loader_init(&l, &xp);
		l.port_kind = cases[i].link == EMU_LINK_USB ?
		    USB_KIND_APP_CDC : USB_KIND_UNKNOWN;
		l.reopen = rig_reopen;
		l.reopen_arg = r;
		l.baud_cb = rig_baud_cb;
		l.baud_arg = r;
		l.trick_ms = 400;
		l.reenum_ms = 2000;
		t0 = util_now_ms();
		error = loader_connect(&l);
		t0 = util_now_ms() - t0;
		if (cases[i].how != NULL) {
			is_int(error, 0, "%s: connects (%s)", cases[i].what,
			    loader_cause(&l));
			is_str(l.how, cases[i].how, "... through %s",
			    cases[i].how);
			is_int(loader_detect(&l), 0, "... and the ROM answers "
			    "(%s)", loader_cause(&l));
		} else {
			is_int(error, -ETIMEDOUT, "%s: no connection",
			    cases[i].what);
			tap_ok(l.need_manual && strstr(loader_cause(&l),
			    "hold BOOT, press RST") != NULL, "... the cause "
			    "says what to do: %s", loader_cause(&l));
			tap_ok(t0 < 10000, "... after a bounded time (%llu "
			    "ms)", (unsigned long long)t0);
			/* The person holds BOOT and presses RST. */
			pthread_mutex_lock(&r->mtx);
			emu_press_boot_rst(r->emu, util_now_us());
			pthread_mutex_unlock(&r->mtx);
			(void)write(r->wake_fd, &(uint64_t){ 1 },
			    sizeof(uint64_t));
			xport_close(&xp);
			xport_init(&xp, -1);
			t0 = util_now_ms() + 3000;
			while ((error = rig_job_open(r, &xp, "emu", &cause)) ==
			    -ENODEV && util_ms_left(t0) > 0)
				util_sleep_us(10000);	/* poll the new port */
			l.xp = &xp;
			l.rx_off = l.rx_len = 0;
			l.port_kind = USB_KIND_S2_ROM;
			is_int(error == 0 ? loader_connect(&l) : error, 0,
			    "... after BOOT+RST the ROM answers (%s)",
			    loader_cause(&l));
		}
		loader_free(&l);
		xport_close(&xp);
		rig_free(r);
	}
}

/*
 * The whole life through a job: app -> download mode (IDF trick) ->
 * written -> FORCE_DOWNLOAD_BOOT cleared, watchdog reset -> "booted".
 */
static void
test_life_job(const uint8_t *demo, size_t dlen)
{
	static uint8_t		 flash[LIFE_FLASH];
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct job_params	 params;
	struct job_progress	 p;
	struct job		*j;
	struct rig		*r;
	char			*cause = NULL;
	uint64_t		 deadline;
	int			 wfd;

	memset(&opts, 0, sizeof(opts));
	if (image_load_buffer(&set, "demo.bin", 0x0, demo, dlen, &opts,
	    &cause) != 0) {
		tap_ok(0, "load the demo image: %s", cause);
		free(cause);
		return;
	}
	/* The unit runs an older build: the demo with one byte changed. */
	if ((r = life_new(EMU_BOARD_IDF_CDC, EMU_LINK_USB, flash, demo,
	    dlen)) == NULL) {
		tap_ok(0, "start an IDF app unit");
		image_free(set);
		return;
	}
	pthread_mutex_lock(&r->mtx);
	emu_flash(r->emu)[dlen - 1] ^= 0x01;
	pthread_mutex_unlock(&r->mtx);
	wfd = job_wake_open();
	memset(&params, 0, sizeof(params));
	params.set = set;
	params.after = LOADER_AFTER_REBOOT;
	params.boot_ms = 3000;
	params.port_kind = USB_KIND_APP_CDC;
	params.open_cb = rig_job_open;
	params.open_arg = r;
	params.baud_cb = rig_baud_cb;
	params.baud_arg = r;
	j = job_new("emu-life", &params, wfd);
	is_int(job_start(j, &cause), 0, "start a job on an app-mode unit");
	deadline = util_now_ms() + 20000;
	while (!job_done(j) && util_ms_left(deadline) > 0)
		util_sleep_us(20000);	/* polling interval */
	job_join(j);
	job_get(j, &p);
	is_str(job_state_name(p.state), "verified", "app -> download mode -> "
	    "written and verified (%s)", p.errmsg);
	is_str(p.how, "the IDF console's RTS edge", "... entered download "
	    "mode by the IDF trick");
	pthread_mutex_lock(&r->mtx);
	tap_ok(memcmp(emu_flash(r->emu), demo, dlen) == 0, "... the unit "
	    "holds the image byte for byte");
	is_int(emu_force_download(r->emu), 0, "... FORCE_DOWNLOAD_BOOT was "
	    "cleared");
	pthread_mutex_unlock(&r->mtx);
	is_str(loader_boot_name(p.boot_result), "banner", "... and it booted "
	    "(%s)", p.boot);
	is_str(p.boot, "booted: " DEMO_PROJECT " " DEMO_VERSION,
	    "... said with the app's own banner");
	job_free(j);
	close(wfd);
	rig_free(r);
	image_free(set);
}

/* GET_SECURITY_INFO decoded, and the units the image cannot boot on. */
static void
test_security(const uint8_t *demo, size_t dlen)
{
	struct loader_security	 sec;
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct image_header	 h;
	uint8_t			 p[12], *img;
	char			 text[128], *cause = NULL;
	size_t			 len, sig, n;
	uint32_t		 at[2] = { 0x1000, 0x10000 };
	int			 i;

	memset(p, 0, sizeof(p));
	is_int(loader_security_parse(p, 11, &sec), -EBADMSG,
	    "a short GET_SECURITY_INFO payload is refused");
	is_int(loader_security_parse(p, sizeof(p), &sec), 0, "12 bytes (S2)");
	loader_security_text(&sec, text, sizeof(text));
	is_str(text, "none", "no flags: \"none\"");
	is_int(loader_security_check(&sec, 2, &cause), 0,
	    "a plain unit takes unsigned images");

	le32_put(p, LOADER_SEC_SECURE_BOOT | LOADER_SEC_HARD_DIS_JTAG);
	p[4] = 0x3;		/* two bits: encryption was turned off again */
	(void)loader_security_parse(p, sizeof(p), &sec);
	loader_security_text(&sec, text, sizeof(text));
	is_str(text, "secure boot, JTAG disabled", "flags in words");
	tap_ok(!loader_security_encrypted(&sec), "crypt count 0x3 (even): "
	    "no flash encryption");
	is_int(loader_security_check(&sec, 1, &cause), -EPERM,
	    "secure boot + an unsigned image: refused");
	tap_ok(cause != NULL && strstr(cause, "secure boot") != NULL &&
	    strstr(cause, "sign") != NULL, "... saying why: %s", cause);
	free(cause);
	cause = NULL;
	is_int(loader_security_check(&sec, 0, &cause), 0,
	    "secure boot + signed images: allowed");

	le32_put(p, 0);
	p[4] = 0x1;
	(void)loader_security_parse(p, sizeof(p), &sec);
	tap_ok(loader_security_encrypted(&sec), "crypt count 0x1 (odd): "
	    "flash encryption on");
	is_int(loader_security_check(&sec, 0, &cause), -EPERM,
	    "flash encryption: refused");
	tap_ok(cause != NULL && strstr(cause, "flash encryption") != NULL,
	    "... saying why: %s", cause);
	free(cause);
	cause = NULL;

	le32_put(p, LOADER_SEC_DOWNLOAD_MODE);
	p[4] = 0;
	(void)loader_security_parse(p, sizeof(p), &sec);
	is_int(loader_security_check(&sec, 0, &cause), -EPERM,
	    "secure download mode: refused");
	tap_ok(cause != NULL && strstr(cause, "secure download mode") != NULL,
	    "... saying why: %s", cause);
	free(cause);
	cause = NULL;

	/* The demo image unsigned, then with signature blocks. */
	memset(&opts, 0, sizeof(opts));
	if (image_load_buffer(&set, "demo.bin", 0x0, demo, dlen, &opts,
	    &cause) != 0) {
		tap_ok(0, "load the demo: %s", cause);
		free(cause);
		return;
	}
	is_int(job_unsigned_images(set), 2, "the demo's bootloader and app "
	    "carry no signature block");
	image_free(set);
	set = NULL;
	len = dlen + 0x2000;
	img = xmalloc(len);
	memset(img, 0xff, len);
	memcpy(img, demo, dlen);
	for (i = 0; i < 2; i++) {
		if (image_parse_header(img + at[i], len - at[i], &h) != 0)
			continue;
		sig = at[i] + ((h.image_len + 0xfff) & ~0xfffu);
		if (sig + 4 <= len)
			memcpy(img + sig, "\xe7\x02\x00\x00", 4);
	}
	if (image_load_buffer(&set, "signed.bin", 0x0, img, len, &opts,
	    &cause) == 0) {
		n = job_unsigned_images(set);
		is_int(n, 0, "with a block after each image: all signed");
		image_free(set);
	} else {
		tap_ok(0, "load the signed demo: %s", cause);
		free(cause);
	}
	free(img);
}

/* The stub file from the esptool-js npm package, or NULL (diag said). */
static int
stub_file(struct loader_stub *st)
{
	const char	*top = getenv("top_srcdir");
	char		 path[1024], *cause = NULL;

	snprintf(path, sizeof(path), "%s/tests/interop/node_modules/"
	    "esptool-js/lib/targets/stub_flasher/esp32s2.json",
	    top != NULL ? top : "..");
	if (access(path, R_OK) != 0) {
		tap_diag("no esptool-js stub at %s (cd tests/interop && npm "
		    "ci): the stub upload cases are skipped", path);
		return (-1);
	}
	if (loader_stub_load(path, st, &cause) != 0) {
		tap_ok(0, "load the esptool-js stub: %s", cause);
		free(cause);
		return (-1);
	}
	return (0);
}

/* Stub JSON files: what is refused, and why. */
static void
test_stub_parse(void)
{
	static const struct {
		const char	*json;
		const char	*why;
	} bad[] = {
		{ "[1, 2]", "not a JSON object" },
		{ "{\"text_start\": 1, \"entry\": 2}", "no \"text\"" },
		{ "{\"text\": \"*&^%\", \"text_start\": 1, \"entry\": 2}",
		    "not base64" },
		{ "{\"text\": \"AAAA\", \"entry\": 2}", "\"text_start\"" },
		{ "{\"text\": \"AAAA\", \"text_start\": 1, \"entry\": 2, "
		    "\"data\": \"AAAA\"}", "\"data_start\"" },
	};
	static const char	 good[] = "{\"text\": \"AQIDBA==\", "
	    "\"text_start\": 1073905664, \"entry\": 1073909924}";
	struct loader_stub	 st;
	char			*cause;
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		cause = NULL;
		tap_ok(loader_stub_parse(bad[i].json, strlen(bad[i].json),
		    "t.json", &st, &cause) == -EINVAL && cause != NULL &&
		    strstr(cause, bad[i].why) != NULL, "stub JSON refused: %s",
		    cause != NULL ? cause : "(no cause)");
		free(cause);
	}
	cause = NULL;
	is_int(loader_stub_parse(good, strlen(good), "t.json", &st, &cause),
	    0, "a minimal stub parses (%s)", cause != NULL ? cause : "");
	tap_ok(st.text_len == 4 && st.text[0] == 1 && st.text[3] == 4 &&
	    st.text_start == 0x40028000u && st.entry == 0x400290A4u &&
	    st.data == NULL, "... decoded: 4 text bytes, no data");
	loader_stub_free(&st);
	free(cause);
}

/*
 * The stub path against the emulator's stub personality: upload, OHAI,
 * then 2 status bytes, larger blocks, exact sizes, FLASH_DEFL_END(1).
 */
static void
test_stub(const uint8_t *img, size_t len, enum emu_link link)
{
	struct loader_stub	 st;
	struct loader_region	 reg;
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	size_t			 mblk, fblk, mem;
	const char		*name = link == EMU_LINK_USB ? "USB-OTG" :
				    "UART";

	if (stub_file(&st) != 0)
		return;
	mblk = link == EMU_LINK_USB ? 0x800 : 0x1800;
	fblk = link == EMU_LINK_USB ? 0x800 : 0x4000;
	mem = (st.text_len + mblk - 1) / mblk + (st.data_len + mblk - 1) /
	    mblk;
	region_make(&reg, 0x10000, img, len);
	if ((r = rig_new(link, NULL, 0)) == NULL || rig_open(r, &xp, -1) != 0) {
		tap_ok(0, "start an emulated unit for the stub");
		rig_free(r);
		loader_stub_free(&st);
		free((void *)reg.zdata);
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = rig_kind(r);
	if (loader_connect(&l) == 0 && loader_detect(&l) == 0) {
		is_int(loader_stub_run(&l, &st), 0, "%s: the stub uploads and "
		    "says OHAI (%s)", name, loader_cause(&l));
		tap_ok(l.stub && l.status_len == 2, "... and answers with 2 "
		    "status bytes");
		is_int(rig_ops(r, PROTO_MEM_DATA), mem, "... %zu MEM_DATA "
		    "blocks", mem);
		pthread_mutex_lock(&r->mtx);
		is_int(r->mem_block, mblk, "... of 0x%zx bytes", mblk);
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_attach(&l), 0, "... attach (%s)",
		    loader_cause(&l));
		is_int(rig_ops(r, PROTO_SPI_ATTACH), 0, "... no SPI_ATTACH "
		    "to a stub");
		is_int(loader_write(&l, &reg), 0, "... write %zu bytes (%s)",
		    len, loader_cause(&l));
		is_int(rig_ops(r, PROTO_FLASH_DEFL_DATA),
		    (reg.zlen + fblk - 1) / fblk, "... in 0x%zx-byte blocks",
		    fblk);
		pthread_mutex_lock(&r->mtx);
		tap_ok(r->begin_size == len && r->begin_block == fblk,
		    "... FLASH_DEFL_BEGIN has the exact size (%u)",
		    r->begin_size);
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_verify(&l, &reg), 0, "... MD5 as 16 raw bytes "
		    "matches (%s)", loader_cause(&l));
		is_int(loader_stub_end(&l), 0, "... FLASH_DEFL_END(1) (%s)",
		    loader_cause(&l));
		is_int(rig_ops(r, PROTO_FLASH_DEFL_END), 1, "... sent once");
		pthread_mutex_lock(&r->mtx);
		tap_ok(memcmp(emu_flash(r->emu) + 0x10000, img, len) == 0,
		    "... the flash holds the image byte for byte");
		pthread_mutex_unlock(&r->mtx);
	} else
		tap_ok(0, "bring up a unit for the stub: %s", loader_cause(&l));
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
	loader_stub_free(&st);
	free((void *)reg.zdata);
}

/*
 * A unit whose flash holds no valid image: after the watchdog reset the
 * ROM complains and falls back into download mode: "boot failed".
 */
static void
test_boot_fail(void)
{
	static uint8_t		 flash[LIFE_FLASH];
	struct emu_config	 life;
	struct loader_boot_opts	 o;
	struct rig		*r;
	struct xport		 xp;
	struct loader		 l;
	enum loader_boot	 res = LOADER_BOOT_NONE;
	char			 text[LOADER_BOOT_TEXT], *cause = NULL;

	memset(&life, 0, sizeof(life));
	memset(flash, 0xff, sizeof(flash));
	life.flash = flash;
	life.flash_size = LIFE_FLASH;
	life.boot = 1;
	if ((r = rig_new_life(CHIP_ESP32S2, EMU_LINK_USB, NULL, 0,
	    &life)) == NULL) {
		tap_ok(0, "start a unit with an empty flash");
		return;
	}
	xport_init(&xp, -1);
	if (rig_job_open(r, &xp, "emu", &cause) != 0) {
		tap_ok(0, "open it: %s", cause);
		free(cause);
		rig_free(r);
		return;
	}
	loader_init(&l, &xp);
	l.port_kind = USB_KIND_S2_ROM;
	l.reopen = rig_reopen;
	l.reopen_arg = r;
	if (bring_up(&l) == 0) {
		is_int(loader_finish(&l, LOADER_AFTER_REBOOT), 0,
		    "watchdog reset of a unit with an empty flash (%s)",
		    loader_cause(&l));
		memset(&o, 0, sizeof(o));
		o.wait_ms = 3000;
		is_int(loader_boot_check(&l, &o, &res, text), 0,
		    "boot check after it");
		is_str(loader_boot_name(res), "failed", "... the boot failed");
		tap_ok(strncmp(text, "boot failed: ", 13) == 0 &&
		    strstr(text, "invalid header") != NULL, "... quoting the "
		    "ROM: %s", text);
	} else
		tap_ok(0, "bring up the unit with an empty flash");
	loader_free(&l);
	xport_close(&xp);
	rig_free(r);
}

/*
 * An app that ignores every trick: the job says "hold BOOT, press RST",
 * waits, and goes on by itself once the person did it.
 */
static void
test_manual_job(const uint8_t *demo, size_t dlen)
{
	static uint8_t		 flash[LIFE_FLASH];
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct job_params	 params;
	struct job_progress	 p;
	struct job		*j;
	struct rig		*r;
	char			*cause = NULL;
	uint64_t		 deadline;
	int			 wfd, asked = 0;

	memset(&opts, 0, sizeof(opts));
	if (image_load_buffer(&set, "demo.bin", 0x0, demo, dlen, &opts,
	    &cause) != 0) {
		tap_ok(0, "load the demo image: %s", cause);
		free(cause);
		return;
	}
	if ((r = life_new(EMU_BOARD_PLAIN, EMU_LINK_USB, flash, demo,
	    dlen)) == NULL) {
		tap_ok(0, "start a unit whose app ignores every trick");
		image_free(set);
		return;
	}
	wfd = job_wake_open();
	memset(&params, 0, sizeof(params));
	params.set = set;
	params.after = LOADER_AFTER_STAY;
	params.port_kind = USB_KIND_APP_CDC;
	params.manual_ms = 10000;
	params.open_cb = rig_job_open;
	params.open_arg = r;
	params.baud_cb = rig_baud_cb;
	params.baud_arg = r;
	j = job_new("emu-plain", &params, wfd);
	is_int(job_start(j, &cause), 0, "start a job on an app that ignores "
	    "every trick");
	deadline = util_now_ms() + 25000;
	while (!job_done(j) && util_ms_left(deadline) > 0) {
		job_get(j, &p);
		if (!asked && p.need_manual) {
			asked = 1;
			tap_ok(strstr(p.note, "hold BOOT, press RST") != NULL &&
			    !job_done(j), "the job asks for BOOT+RST and "
			    "waits: %s", p.note);
			pthread_mutex_lock(&r->mtx);
			emu_press_boot_rst(r->emu, util_now_us());
			pthread_mutex_unlock(&r->mtx);
			(void)write(r->wake_fd, &(uint64_t){ 1 },
			    sizeof(uint64_t));
		}
		util_sleep_us(20000);	/* polling interval */
	}
	job_join(j);
	job_get(j, &p);
	tap_ok(asked, "the job asked for the person");
	is_str(job_state_name(p.state), "verified", "... then went on by "
	    "itself and verified (%s)", p.errmsg);
	is_str(p.how, "BOOT and RST by hand", "... and says how it got in");
	job_free(j);
	close(wfd);
	rig_free(r);
	image_free(set);
}

enum job_case {
	JOB_CASE_OK,		/* writes and verifies */
	JOB_CASE_CANCEL,	/* cancelled while a block stalls */
	JOB_CASE_FAIL,		/* the ROM keeps failing a block */
	JOB_CASE_WRONG_CHIP,	/* an ESP32 gets an ESP32-S2 image */
};

/* A whole job through job.c: snapshot, wake-ups, and the end state. */
static void
test_job(const uint8_t *img, size_t len, enum job_case jc)
{
	static const char *const stall[] = {
		"kind=stall,op=FLASH_DEFL_DATA,at=4,ms=20000",
	};
	static const char *const fail[] = {
		"kind=rom-error,op=FLASH_DEFL_DATA,at=2,count=3,code=0x08",
	};
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct job_params	 params;
	struct job_progress	 p;
	struct job		*j;
	struct rig		*r;
	struct emu_stats	 st;
	struct pollfd		 pfd;
	char			*cause = NULL;
	uint64_t		 deadline, t_cancel = 0;
	unsigned		 wakes = 0;
	int			 wfd;

	memset(&opts, 0, sizeof(opts));
	if (image_load_buffer(&set, "test.bin", 0x0, img, len, &opts,
	    &cause) != 0) {
		tap_ok(0, "load a test image: %s", cause);
		free(cause);
		return;
	}
	if (jc == JOB_CASE_WRONG_CHIP)
		r = rig_new_chip(CHIP_ESP32, EMU_LINK_UART, NULL, 0);
	else if (jc == JOB_CASE_CANCEL)
		r = rig_new(EMU_LINK_USB, stall, 1);
	else if (jc == JOB_CASE_FAIL)
		r = rig_new(EMU_LINK_USB, fail, 1);
	else
		r = rig_new(EMU_LINK_USB, NULL, 0);
	if (r == NULL) {
		tap_ok(0, "start an emulated unit for a job");
		image_free(set);
		return;
	}
	wfd = job_wake_open();
	memset(&params, 0, sizeof(params));
	params.set = set;
	params.after = LOADER_AFTER_REBOOT;
	params.boot_ms = 500;
	params.open_cb = rig_job_open;
	params.open_arg = r;
	j = job_new("emu0", &params, wfd);
	job_get(j, &p);
	is_int(p.state, JOB_ST_QUEUED, "a new job is queued");
	is_int(job_start(j, &cause), 0, "start the worker");
	deadline = util_now_ms() + 15000;
	while (!job_done(j) && util_ms_left(deadline) > 0) {
		pfd.fd = wfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 1000) == 1) {
			job_wake_drain(wfd);
			wakes++;
		}
		job_get(j, &p);
		/* Blocks 1-3 are in, block 4 stalls for 20 s. */
		if (jc == JOB_CASE_CANCEL && t_cancel == 0 &&
		    rig_ops(r, PROTO_FLASH_DEFL_DATA) >= 4 &&
		    p.phase == JOB_PH_WRITING) {
			t_cancel = util_now_ms();
			job_cancel(j);
		}
	}
	job_join(j);
	job_get(j, &p);
	tap_ok(wakes > 0, "the consumer was woken (%u times)", wakes);
	pthread_mutex_lock(&r->mtx);
	emu_stats(r->emu, &st);
	pthread_mutex_unlock(&r->mtx);
	switch (jc) {
	case JOB_CASE_OK:
		is_str(job_state_name(p.state), "verified",
		    "the job ends verified (%s)", p.errmsg);
		is_int(p.bytes_done, set->total_len, "every byte counted");
		tap_ok(strncmp(p.chip, "ESP32-S2", 8) == 0 && p.have_mac &&
		    memcmp(p.mac, test_mac, 6) == 0 && p.usb_otg,
		    "the snapshot names the chip, MAC and USB-OTG");
		tap_ok(p.rate > 0, "a rate was measured (%.0f B/s)", p.rate);
		tap_ok(p.sec.valid && strcmp(p.security, "none") == 0,
		    "GET_SECURITY_INFO decoded: %s", p.security);
		tap_ok(p.crystal_mhz == 40 && p.rev_major >= 0 &&
		    p.flash_id != 0, "crystal %u MHz, revision v%d.%d, flash "
		    "id 0x%06x", p.crystal_mhz, p.rev_major, p.rev_minor,
		    p.flash_id);
		tap_ok(p.boot_result != LOADER_BOOT_NONE &&
		    p.boot_result != LOADER_BOOT_FAILED && p.boot[0] != '\0',
		    "the boot was checked: %s (%s)", p.boot,
		    loader_boot_name(p.boot_result));
		pthread_mutex_lock(&r->mtx);
		tap_ok(memcmp(emu_flash(r->emu), set->regions[0].data,
		    set->regions[0].len) == 0, "the unit holds the image");
		pthread_mutex_unlock(&r->mtx);
		break;
	case JOB_CASE_CANCEL:
		is_str(job_state_name(p.state), "cancelled",
		    "a cancelled job ends cancelled");
		tap_ok(t_cancel != 0 && p.t_end - t_cancel < 1000,
		    "... within a second of the cancel, despite a 20 s stall "
		    "(%llu ms)", (unsigned long long)(p.t_end - t_cancel));
		is_str(job_phase_name(p.phase), "writing",
		    "... and says it was writing");
		tap_ok(p.bytes_done > 0 && p.bytes_done < p.bytes_total &&
		    p.addr == p.bytes_done, "... at %llu of %llu bytes, 0x%x",
		    (unsigned long long)p.bytes_done,
		    (unsigned long long)p.bytes_total, p.addr);
		break;
	case JOB_CASE_FAIL:
		is_str(job_state_name(p.state), "failed",
		    "a unit whose flash fails ends failed");
		tap_ok(strstr(p.errmsg, "FLASH_DEFL_DATA block 2/") != NULL &&
		    strstr(p.errmsg, "ROM status 0x08") != NULL,
		    "... with the reason: %s", p.errmsg);
		break;
	case JOB_CASE_WRONG_CHIP:
		is_str(job_state_name(p.state), "failed",
		    "an ESP32-S2 image is refused by an ESP32 unit");
		is_str(p.chip, "ESP32", "... which was identified");
		tap_ok(p.errmsg[0] != '\0', "... with a reason: %s",
		    p.errmsg);
		is_int(st.flash_erased + st.flash_written, 0,
		    "... before anything was erased or written");
		break;
	}
	job_free(j);
	close(wfd);
	rig_free(r);
	image_free(set);
}

/* Run every loader and job case against fresh emulated units. */
int
main(void)
{
	uint8_t	*img;
	size_t	 len = 300 * 1024;

	signal(SIGPIPE, SIG_IGN);
	img = payload_make(len);
	test_happy(img, len);
	test_uart();
	test_esp32(img, 48 * 1024);
	test_retry(img, 64 * 1024);
	test_timeout();
	test_noise();
	test_verify_fail(img, 32 * 1024);
	test_cancel(img, len);
	test_force_download();
	test_stub_parse();
	test_stub(img, len - 1020, EMU_LINK_USB);
	test_stub(img, 100 * 1024 + 4, EMU_LINK_UART);
	test_boot_check();
	test_boot_loop();
	test_boot_fail();
	{
		uint8_t	*demo;
		size_t	 dlen;

		if (demo_build(&demo, &dlen) != 0)
			tap_ok(0, "build the demo image");
		else {
			test_job(demo, dlen, JOB_CASE_OK);
			test_job(demo, dlen, JOB_CASE_CANCEL);
			test_job(demo, dlen, JOB_CASE_FAIL);
			test_job(demo, dlen, JOB_CASE_WRONG_CHIP);
			test_security(demo, dlen);
			test_into_download(demo, dlen);
			test_life_job(demo, dlen);
			test_manual_job(demo, dlen);
			free(demo);
		}
	}
	free(img);
	return (tap_done());
}
