/*
 * SLIP framing as the ESP ROM and stub use it: every frame is
 * C0 <escaped bytes> C0.  Pure: no I/O, no allocation, no globals.
 */
#include "config.h"

#include <string.h>

#include "slip.h"

/* Decoder states (struct slip_dec.state). */
#define SLIP_ST_IDLE	0	/* outside a frame: wait for END */
#define SLIP_ST_FRAME	1	/* inside a frame */
#define SLIP_ST_ESC	2	/* inside a frame, after ESC */
#define SLIP_ST_DROP	3	/* frame being discarded until END */

/* Set up a decoder over a caller-owned frame buffer. */
void
slip_dec_init(struct slip_dec *d, uint8_t *buf, size_t cap)
{
	memset(d, 0, sizeof(*d));
	d->buf = buf;
	d->cap = cap;
	d->state = SLIP_ST_IDLE;
}

/* Abandon the frame being assembled and wait for the next END. */
static void
slip_dec_drop(struct slip_dec *d)
{
	d->errors++;
	d->len = 0;
	d->state = SLIP_ST_DROP;
}

/* Append one decoded byte, dropping the frame if it does not fit. */
static void
slip_dec_put(struct slip_dec *d, uint8_t c)
{
	if (d->len >= d->cap) {
		slip_dec_drop(d);
		return;
	}
	d->buf[d->len++] = c;
	d->state = SLIP_ST_FRAME;
}

/* Feed one byte; report a frame when its closing END arrives. */
int
slip_dec_byte(struct slip_dec *d, uint8_t c)
{
	switch (d->state) {
	case SLIP_ST_IDLE:
		if (c == SLIP_END) {
			d->len = 0;
			d->state = SLIP_ST_FRAME;
		} else
			d->noise++;
		break;
	case SLIP_ST_FRAME:
		if (c == SLIP_END) {
			/* C0 C0: empty frame, or end and start back to back. */
			if (d->len == 0)
				break;
			d->state = SLIP_ST_IDLE;
			return (SLIP_FRAME);
		}
		if (c == SLIP_ESC)
			d->state = SLIP_ST_ESC;
		else
			slip_dec_put(d, c);
		break;
	case SLIP_ST_ESC:
		if (c == SLIP_ESC_END)
			slip_dec_put(d, SLIP_END);
		else if (c == SLIP_ESC_ESC)
			slip_dec_put(d, SLIP_ESC);
		else {
			slip_dec_drop(d);
			/* An END right after ESC still closes the bad frame. */
			if (c == SLIP_END)
				d->state = SLIP_ST_IDLE;
		}
		break;
	case SLIP_ST_DROP:
	default:
		if (c == SLIP_END) {
			d->len = 0;
			d->state = SLIP_ST_IDLE;
		}
		break;
	}
	return (SLIP_MORE);
}

/* Encode one frame; 0 when the output buffer cannot hold all of it. */
size_t
slip_encode(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
	size_t	i, o = 0;

	if (cap < 2)
		return (0);
	out[o++] = SLIP_END;
	for (i = 0; i < len; i++) {
		if (in[i] == SLIP_END || in[i] == SLIP_ESC) {
			if (o + 2 > cap - 1)
				return (0);
			out[o++] = SLIP_ESC;
			out[o++] = in[i] == SLIP_END ? SLIP_ESC_END :
			    SLIP_ESC_ESC;
		} else {
			if (o + 1 > cap - 1)
				return (0);
			out[o++] = in[i];
		}
	}
	out[o++] = SLIP_END;
	return (o);
}
