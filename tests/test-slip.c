/* SLIP encoder and incremental decoder against hand-made wire bytes. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slip.h"
#include "tap.h"

/* Feed len bytes; return how many frames came out, last one copied out. */
static int
test_feed(struct slip_dec *d, const uint8_t *p, size_t len, uint8_t *last,
    size_t *lastlen)
{
	size_t	i;
	int	frames = 0;

	for (i = 0; i < len; i++) {
		if (slip_dec_byte(d, p[i]) == SLIP_FRAME) {
			frames++;
			if (last != NULL) {
				memcpy(last, d->buf, d->len);
				*lastlen = d->len;
			}
		}
	}
	return (frames);
}

/* Encoded payloads of every length with C0/DB bytes decode unchanged. */
static void
test_round_trip(void)
{
	uint8_t		 in[600], wire[SLIP_ENCODED_MAX(600)], buf[600];
	uint8_t		 out[600];
	struct slip_dec	 d;
	size_t		 n, wlen, olen = 0, i;
	int		 round, bad = 0, frames;

	srand(12345);
	for (round = 0; round < 500; round++) {
		n = 1 + (size_t)rand() % sizeof(in);
		for (i = 0; i < n; i++) {
			switch (rand() % 4) {
			case 0:
				in[i] = SLIP_END;
				break;
			case 1:
				in[i] = SLIP_ESC;
				break;
			default:
				in[i] = (uint8_t)rand();
				break;
			}
		}
		wlen = slip_encode(wire, sizeof(wire), in, n);
		slip_dec_init(&d, buf, sizeof(buf));
		frames = test_feed(&d, wire, wlen, out, &olen);
		if (wlen == 0 || frames != 1 || olen != n ||
		    memcmp(in, out, n) != 0 || d.errors != 0 || d.noise != 0 ||
		    memchr(wire + 1, SLIP_END, wlen - 2) != NULL) {
			bad++;
			tap_diag("round %d: n %zu wlen %zu frames %d olen %zu",
			    round, n, wlen, frames, olen);
		}
	}
	is_int(bad, 0, "500 random payloads with C0/DB bytes round-trip");
}

/* The encoder's exact output, and its refusal when cap is short. */
static void
test_encode_exact(void)
{
	static const uint8_t	in[] = { 0x01, 0xC0, 0x02, 0xDB, 0x03 };
	static const uint8_t	want[] = { 0xC0, 0x01, 0xDB, 0xDC, 0x02,
				    0xDB, 0xDD, 0x03, 0xC0 };
	static const uint8_t	tail[] = { 0x01, 0xC0 };
	uint8_t			out[32];
	size_t			n;

	n = slip_encode(out, sizeof(out), in, sizeof(in));
	is_int(n, sizeof(want), "encoded length 9");
	is_mem(out, want, sizeof(want),
	    "C0 -> DB DC, DB -> DB DD, framed by C0");
	is_int(slip_encode(out, sizeof(want) - 1, in, sizeof(in)), 0,
	    "one byte short of cap: 0");
	is_int(slip_encode(out, sizeof(want), in, sizeof(in)), sizeof(want),
	    "exact cap fits");
	is_int(slip_encode(out, 7, in, sizeof(in)), 0,
	    "cap ending inside an escape: 0");
	memset(out, 0xA5, sizeof(out));
	is_int(slip_encode(out, 4, tail, sizeof(tail)), 0,
	    "escape as last byte with no room for END: 0");
	tap_ok(out[4] == 0xA5, "nothing written past cap");
	is_int(slip_encode(out, 5, tail, sizeof(tail)), 5,
	    "01 C0 encodes to 5 bytes");
	is_int(slip_encode(out, sizeof(out), in, 0), 2, "empty payload: C0 C0");
	is_int(SLIP_ENCODED_MAX(5), 12, "worst case of 5 bytes is 12");
}

/* Boot-log text before a frame is counted as noise and skipped. */
static void
test_noise(void)
{
	static const char	log[] = "ESP-ROM:esp32s2-rc4-20191025\r\n"
				    "rst:0x1 (POWERON),boot:0x0 "
				    "(DOWNLOAD(USB/UART0/1))\r\nwaiting for "
				    "download\r\n";
	static const uint8_t	frame[] = { 0xC0, 0x01, 0x08, 0xC0 };
	uint8_t			buf[64], out[64];
	struct slip_dec		d;
	size_t			olen = 0;
	int			frames;

	slip_dec_init(&d, buf, sizeof(buf));
	frames = test_feed(&d, (const uint8_t *)log, strlen(log), NULL, NULL);
	frames += test_feed(&d, frame, sizeof(frame), out, &olen);
	is_int(frames, 1, "one frame after boot log");
	is_int(olen, 2, "frame length 2");
	tap_ok(olen == 2 && out[0] == 0x01 && out[1] == 0x08, "frame bytes");
	is_int(d.noise, strlen(log), "every boot-log byte counted as noise");
	is_int(d.errors, 0, "noise is not an error");
}

/* C0 C0 runs: back-to-back frames and empty frames. */
static void
test_end_runs(void)
{
	static const uint8_t	wire[] = { 0xC0, 0xC0, 0xC0, 0x11, 0xC0,
				    0xC0, 0x22, 0x33, 0xC0, 0xC0, 0xC0, 0xC0,
				    0x44, 0xC0 };
	uint8_t			buf[16];
	struct slip_dec		d;
	size_t			i;
	int			r, n = 0, ok = 1;
	static const size_t	want_len[] = { 1, 2, 1 };
	static const uint8_t	want_first[] = { 0x11, 0x22, 0x44 };

	slip_dec_init(&d, buf, sizeof(buf));
	for (i = 0; i < sizeof(wire); i++) {
		r = slip_dec_byte(&d, wire[i]);
		if (r != SLIP_FRAME)
			continue;
		if (n >= 3 || d.len != want_len[n] ||
		    d.buf[0] != want_first[n])
			ok = 0;
		n++;
	}
	is_int(n, 3, "C0 C0 runs give exactly the three non-empty frames");
	tap_ok(ok, "frames have the right contents");
	is_int(d.errors + d.noise, 0, "no errors or noise counted");
}

/* A bad escape drops that frame only; the next one decodes. */
static void
test_bad_escape(void)
{
	static const uint8_t	wire[] = { 0xC0, 0x01, 0xDB, 0x05, 0x02,
				    0xC0, 0xC0, 0x03, 0xDB, 0xDC, 0xC0 };
	static const uint8_t	wire2[] = { 0xC0, 0x07, 0xDB, 0xC0, 0xC0,
				    0x09, 0xC0 };
	uint8_t			buf[16], out[16];
	struct slip_dec		d;
	size_t			olen = 0;
	int			frames;

	slip_dec_init(&d, buf, sizeof(buf));
	frames = test_feed(&d, wire, sizeof(wire), out, &olen);
	is_int(frames, 1, "bad escape: only the following frame comes out");
	tap_ok(olen == 2 && out[0] == 0x03 && out[1] == 0xC0,
	    "following frame decodes (03 C0)");
	is_int(d.errors, 1, "bad escape counted once");

	slip_dec_init(&d, buf, sizeof(buf));
	frames = test_feed(&d, wire2, sizeof(wire2), out, &olen);
	tap_ok(frames == 1 && olen == 1 && out[0] == 0x09,
	    "ESC then END drops the frame, next decodes");
	is_int(d.errors, 1, "ESC END counted once");
}

/* A frame longer than the buffer is dropped and counted; exact fit is not. */
static void
test_overflow(void)
{
	uint8_t		in[9], wire[SLIP_ENCODED_MAX(9)], buf[8], out[8];
	uint8_t		small[] = { 0xC0, 0xAA, 0xC0 };
	struct slip_dec	d;
	size_t		wlen, olen = 0;
	int		frames;

	memset(in, 0x5A, sizeof(in));
	wlen = slip_encode(wire, sizeof(wire), in, sizeof(in));
	slip_dec_init(&d, buf, sizeof(buf));
	frames = test_feed(&d, wire, wlen, NULL, NULL);
	is_int(frames, 0, "9-byte frame into 8-byte buffer: no frame");
	is_int(d.errors, 1, "overflow counted");
	frames = test_feed(&d, small, sizeof(small), out, &olen);
	tap_ok(frames == 1 && olen == 1 && out[0] == 0xAA,
	    "decoder recovers after overflow");

	wlen = slip_encode(wire, sizeof(wire), in, 8);
	slip_dec_init(&d, buf, sizeof(buf));
	frames = test_feed(&d, wire, wlen, NULL, NULL);
	tap_ok(frames == 1 && d.len == 8 && d.errors == 0,
	    "frame of exactly cap bytes is accepted");
}

/* Byte-at-a-time feeding reports SLIP_FRAME only on the closing END. */
static void
test_byte_at_a_time(void)
{
	static const uint8_t	wire[] = { 0xC0, 0x01, 0xDB, 0xDD, 0xC0 };
	static const int	want[] = { SLIP_MORE, SLIP_MORE, SLIP_MORE,
				    SLIP_MORE, SLIP_FRAME };
	uint8_t			buf[8];
	struct slip_dec		d;
	size_t			i;
	int			ok = 1;

	slip_dec_init(&d, buf, sizeof(buf));
	for (i = 0; i < sizeof(wire); i++) {
		if (slip_dec_byte(&d, wire[i]) != want[i])
			ok = 0;
	}
	tap_ok(ok, "MORE x4 then FRAME");
	tap_ok(d.len == 2 && buf[0] == 0x01 && buf[1] == 0xDB,
	    "decoded 01 DB");
}

/* Run every SLIP test. */
int
main(void)
{
	test_round_trip();
	test_encode_exact();
	test_noise();
	test_end_runs();
	test_bad_escape();
	test_overflow();
	test_byte_at_a_time();
	return (tap_done());
}
