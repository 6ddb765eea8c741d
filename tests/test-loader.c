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
	int		 stop;
	pthread_t	 thread;
	pthread_mutex_t	 mtx;		/* guards emu and the counters */
	struct slip_dec	 dec;		/* host frames, to count opcodes */
	uint8_t		 frame[PROTO_MAX_REQ];
	unsigned	 ops[256];	/* requests seen per opcode */
	unsigned	 begin_len;	/* payload of the last DEFL_BEGIN */
	int		 nlines;	/* DTR/RTS changes seen */
	int		 lines[16][2];
};

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
		if (r->frame[1] == PROTO_FLASH_DEFL_BEGIN)
			r->begin_len = le16_get(r->frame + 2);
	}
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
		while ((out = emu_drain(r->emu, buf, sizeof(buf), now)) > 0) {
			pthread_mutex_unlock(&r->mtx);
			for (off = 0; off < out; off += (size_t)n) {
				n = write(r->fd, buf + off, out - off);
				if (n <= 0)
					return (NULL);
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
			if (n <= 0)
				break;
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

/* Start an emulated unit with the given link and fault specs. */
static struct rig *
rig_new_chip(enum chip_id chip, enum emu_link link,
    const char *const *faults, size_t nfaults)
{
	struct emu_config	 cfg;
	struct emu_fault	 f[8];
	struct rig		*r;
	char			*cause = NULL;
	int			 sv[2];
	size_t			 i;

	memset(&cfg, 0, sizeof(cfg));
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
	close(r->fd);
	if (r->host_fd != -1)
		close(r->host_fd);
	close(r->wake_fd);
	pthread_mutex_destroy(&r->mtx);
	emu_free(r->emu);
	free(r);
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

/* Job open hook: the job's transport talks to a rig. */
static int
rig_job_open(void *arg, struct xport *xp, const char *port, char **cause)
{
	struct rig	*r = arg;
	int		 error;

	if ((error = xport_open_fd(xp, r->host_fd, port, 1, cause)) != 0)
		return (error);
	r->host_fd = -1;
	xport_set_lines_hook(xp, rig_lines_cb, r);
	return (0);
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
	if (bring_up(&l) == 0) {
		tap_ok(!l.usb_otg, "UART link: not USB-OTG");
		is_int(loader_set_baud(&l, 460800), 0, "CHANGE_BAUDRATE to "
		    "460800 (%s)", loader_cause(&l));
		pthread_mutex_lock(&r->mtx);
		is_int(emu_baud(r->emu), 460800, "the unit switched baud");
		pthread_mutex_unlock(&r->mtx);
		is_int(loader_read_reg(&l, CHIP_MAGIC_REG, &(uint32_t){ 0 }),
		    0, "still talking after the switch");
		is_int(loader_finish(&l, LOADER_AFTER_REBOOT), 0,
		    "hard reset over RTS (%s)", loader_cause(&l));
		pthread_mutex_lock(&r->mtx);
		tap_ok(r->nlines == 2 && r->lines[0][0] == 0 &&
		    r->lines[0][1] == 1 && r->lines[1][0] == 0 &&
		    r->lines[1][1] == 0, "the unit saw an RTS pulse with DTR "
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
		if (bring_up(&l) == 0) {
			is_str(l.chip->name, "ESP32", "an ESP32 is detected");
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
		l.connect_attempts = 1;
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
			free(demo);
		}
	}
	free(img);
	return (tap_done());
}
