/*
 * libFuzzer target for SLIP framing (slip.c).  Wire bytes fed one at a
 * time may only ever yield frames that sit inside the caller's buffer and
 * that re-encode to exactly the wire bytes that carried them; any payload
 * must survive encode then decode unchanged, and a short output buffer or
 * frame buffer must be refused, never overrun.
 *
 * Input: byte 0 picks the decoder's buffer size, the rest is both the wire
 * stream and the round-trip payload.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slip.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Report a broken property and abort, so that libFuzzer keeps the input. */
static void
fuzz_fail(const char *what, size_t at)
{
	fprintf(stderr, "fuzz-slip: %s (input byte %zu)\n", what, at);
	abort();
}

/* malloc that never returns NULL and never gets 0 (a fuzzer cannot OOM). */
static void *
fuzz_alloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		abort();
	return (p);
}

/* Decoder buffer size from the selector: small ones to reach overflow. */
static size_t
fuzz_slip_cap(uint8_t sel)
{
	if (sel < 0x80)
		return (1 + (size_t)(sel % 16));
	return (1 + (size_t)(sel - 0x80) * 64);
}

/*
 * Decode the wire bytes into a heap buffer of exactly cap bytes (so ASan
 * sees a write past it) and check each frame against the wire: it ends at
 * an END byte, fits the buffer and re-encodes to the bytes just consumed.
 */
static void
fuzz_slip_stream(const uint8_t *wire, size_t len, size_t cap)
{
	struct slip_dec	 d;
	uint8_t		*buf, *enc;
	size_t		 i, elen, noise = 0, errors = 0;
	int		 r;

	buf = fuzz_alloc(cap);
	enc = fuzz_alloc(SLIP_ENCODED_MAX(cap));
	slip_dec_init(&d, buf, cap);
	for (i = 0; i < len; i++) {
		r = slip_dec_byte(&d, wire[i]);
		if (d.buf != buf || d.cap != cap || d.len > cap)
			fuzz_fail("decoder state escaped its buffer", i);
		if (d.noise < noise || d.errors < errors)
			fuzz_fail("noise or error counter went down", i);
		if (d.noise > i + 1 || d.errors > i + 1)
			fuzz_fail("counter larger than the bytes fed", i);
		noise = d.noise;
		errors = d.errors;
		if (r == SLIP_MORE)
			continue;
		if (r != SLIP_FRAME)
			fuzz_fail("slip_dec_byte returned an unknown value", i);
		if (wire[i] != SLIP_END)
			fuzz_fail("frame completed on a byte but END", i);
		if (d.len == 0)
			fuzz_fail("empty frame reported", i);
		/* The canonical encoding is what was on the wire. */
		elen = slip_encode(enc, SLIP_ENCODED_MAX(d.len), d.buf, d.len);
		if (elen < d.len + 2 || elen > SLIP_ENCODED_MAX(d.len))
			fuzz_fail("frame does not re-encode", i);
		if (elen > i + 1 || memcmp(wire + i + 1 - elen, enc, elen) != 0)
			fuzz_fail("frame differs from the wire bytes", i);
	}
	free(enc);
	free(buf);
}

/*
 * Encode the payload into a buffer of exactly the worst-case size, check
 * the frame's shape, refuse a buffer one byte short, then decode it back
 * into a buffer of exactly the payload's size (one frame, equal) and into
 * one a byte smaller (no frame, one error).
 */
static void
fuzz_slip_round_trip(const uint8_t *in, size_t n)
{
	struct slip_dec	 d;
	uint8_t		*wire, *shortw, *buf;
	size_t		 wlen, i, max = SLIP_ENCODED_MAX(n), frames = 0;

	wire = fuzz_alloc(max);
	wlen = slip_encode(wire, max, in, n);
	if (wlen < n + 2 || wlen > max)
		fuzz_fail("encoded length out of range", wlen);
	if (wire[0] != SLIP_END || wire[wlen - 1] != SLIP_END)
		fuzz_fail("frame not delimited by END", wlen);
	for (i = 1; i < wlen - 1; i++) {
		if (wire[i] == SLIP_END)
			fuzz_fail("END inside an encoded frame", i);
		if (wire[i] == SLIP_ESC && (i + 1 >= wlen - 1 ||
		    (wire[i + 1] != SLIP_ESC_END &&
		    wire[i + 1] != SLIP_ESC_ESC)))
			fuzz_fail("ESC not followed by ESC_END/ESC_ESC", i);
	}
	shortw = fuzz_alloc(wlen - 1);
	if (slip_encode(shortw, wlen - 1, in, n) != 0)
		fuzz_fail("encode into a short buffer did not return 0", n);
	free(shortw);

	buf = fuzz_alloc(n);
	slip_dec_init(&d, buf, n == 0 ? 1 : n);
	for (i = 0; i < wlen; i++) {
		if (slip_dec_byte(&d, wire[i]) != SLIP_FRAME)
			continue;
		frames++;
		if (i != wlen - 1 || d.len != n || memcmp(d.buf, in, n) != 0)
			fuzz_fail("round trip changed the payload", i);
	}
	if (frames != (n == 0 ? 0 : 1) || d.errors != 0 || d.noise != 0)
		fuzz_fail("round trip: wrong frame, error or noise count", n);
	free(buf);

	if (n > 1) {
		buf = fuzz_alloc(n - 1);
		slip_dec_init(&d, buf, n - 1);
		for (i = 0; i < wlen; i++) {
			if (slip_dec_byte(&d, wire[i]) == SLIP_FRAME)
				fuzz_fail("frame larger than the buffer", i);
		}
		if (d.errors != 1)
			fuzz_fail("overlong frame not counted as an error", n);
		free(buf);
	}
	free(wire);
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return (0);
	fuzz_slip_stream(data + 1, size - 1, fuzz_slip_cap(data[0]));
	fuzz_slip_round_trip(data + 1, size - 1);
	return (0);
}
