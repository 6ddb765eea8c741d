/* SLIP framing (RFC 1055 as the ESP ROM uses it): pure, no I/O. */
#ifndef ESPF_SLIP_H
#define ESPF_SLIP_H

#include <stddef.h>
#include <stdint.h>

#define SLIP_END	0xC0
#define SLIP_ESC	0xDB
#define SLIP_ESC_END	0xDC
#define SLIP_ESC_ESC	0xDD
/* Worst-case wire size of a payload of n bytes. */
#define SLIP_ENCODED_MAX(n)	(2 * (size_t)(n) + 2)

/* Incremental decoder; the caller owns the frame buffer. */
struct slip_dec {
	uint8_t	*buf;
	size_t	 cap;
	size_t	 len;		/* bytes of the frame being assembled */
	int	 state;		/* SLIP_ST_* (private) */
	size_t	 noise;		/* bytes seen outside any frame (boot log) */
	size_t	 errors;	/* frames dropped: bad escape or overflow */
};

/* slip_dec_byte() results. */
#define SLIP_MORE	0	/* need more bytes */
#define SLIP_FRAME	1	/* buf[0..len) holds one complete frame */

void	slip_dec_init(struct slip_dec *, uint8_t *buf, size_t cap);
/*
 * Feed one byte.  Returns SLIP_FRAME when a frame is complete (valid
 * until the next call), SLIP_MORE otherwise.  Noise outside frames, bad
 * escapes and overlong frames are counted and dropped; the decoder
 * resynchronises at the next END byte, so it never returns an error.
 */
int	slip_dec_byte(struct slip_dec *, uint8_t);
/* Encode len bytes as one frame; returns the wire length, 0 if cap is short. */
size_t	slip_encode(uint8_t *out, size_t cap, const uint8_t *in, size_t len);

#endif
