/*
 * Fault injection (espfleet-sim(1) FAULTS): the --fault grammar, the names
 * of fault kinds, and the helpers that decide whether a fault strikes a
 * command now (rom-error, unplug, reenum, bitflip).  Apart from emu.c
 * because it is test machinery, not the chip; the per-byte and per-reply
 * faults are applied where the bytes are, in emu.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu.h"
#include "proto.h"
#include "util.h"
#include "emu-private.h"

/* Fault kinds, as the --fault grammar spells them. */
static const char *emu_fault_names[EMU_FAULT__MAX] = {
	"drop-reply", "corrupt", "stall", "rom-error", "bitflip", "noise",
	"unplug", "reenum", "slow-flash"
};

/* Does the n-th (1-based) match of a fault fall in its at/count window? */
int
emu_fault_window(const struct emu_fault *f, uint64_t n)
{
	if (n < f->at)
		return (0);
	return (f->count == 0 || n - f->at < f->count);
}

/*
 * The faults that strike a reply to op: dropped, stalled (*stall grows
 * by their milliseconds, in microseconds) or preceded by boot noise.
 */
void
emu_fault_reply(struct emu *e, uint8_t op, int *drop, int *noise,
    uint64_t *stall)
{
	const struct emu_fault	*f;
	size_t			 i;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_DROP_REPLY &&
		    f->kind != EMU_FAULT_STALL && f->kind != EMU_FAULT_NOISE)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (!emu_fault_window(f, ++e->fault_seen[i]))
			continue;
		if (f->kind == EMU_FAULT_DROP_REPLY)
			*drop = 1;
		else if (f->kind == EMU_FAULT_STALL)
			*stall += (uint64_t)f->ms * 1000;
		else
			*noise = 1;
	}
}

/*
 * Corrupt faults on len bytes of one direction (dir_in: the host's bytes)
 * whose 1-based stream positions start at first: bit 0 flips.
 */
void
emu_fault_corrupt(struct emu *e, int dir_in, uint64_t first, uint8_t *p,
    size_t len)
{
	const struct emu_fault	*f;
	size_t			 i, j;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_CORRUPT || f->dir_in != dir_in)
			continue;
		for (j = 0; j < len; j++)
			if (emu_fault_window(f, first + j))
				p[j] ^= 0x01;
	}
}

/* Flip one seeded bit in a range just written (bitflip fault). */
static void
emu_fault_bitflip(struct emu *e, uint32_t addr, size_t len, uint64_t n)
{
	uint64_t	r;

	if (len == 0)
		return;
	r = util_mix64(e->seed ^ util_mix64(n) ^ addr);
	e->flash[(addr + r % len) & e->flash_mask] ^= 1u << ((r >> 32) % 8);
}

/* After a command wrote [addr, addr+len), apply matching bitflip faults. */
void
emu_fault_after_write(struct emu *e, uint8_t op, uint32_t addr, size_t len)
{
	const struct emu_fault	*f;
	size_t			 i;

	if (len == 0)
		return;
	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_BITFLIP)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (emu_fault_window(f, ++e->fault_seen[i]))
			emu_fault_bitflip(e, addr, len, e->fault_seen[i]);
	}
}

/* A command may be turned into a ROM error by a rom-error fault. */
int
emu_fault_rom_error(struct emu *e, uint8_t op)
{
	const struct emu_fault	*f;
	size_t			 i;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_ROM_ERROR)
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (emu_fault_window(f, ++e->fault_seen[i])) {
			emu_fail_raw(e, op, f->code);
			return (1);
		}
	}
	return (0);
}

/*
 * Phase faults that end the command without a reply: unplug (the unit is
 * gone) and reenum (it resets into download mode on a new port).
 */
int
emu_fault_phase(struct emu *e, uint8_t op)
{
	const struct emu_fault	*f;
	size_t			 i;

	for (i = 0; i < e->nfaults; i++) {
		f = &e->faults[i];
		if (f->kind != EMU_FAULT_REENUM &&
		    (f->kind != EMU_FAULT_UNPLUG || f->op < 0))
			continue;
		if (f->op >= 0 && f->op != op)
			continue;
		if (!emu_fault_window(f, ++e->fault_seen[i]))
			continue;
		if (f->kind == EMU_FAULT_UNPLUG)
			emu_unplug(e);
		else {
			emu_boot_reset(e, e->t, EMU_RS_SW_RESET, 1);
			if (e->link != EMU_LINK_USB)
				e->gen++;	/* a new port, even here */
		}
		return (1);
	}
	return (0);
}

/* Name of a fault kind, as the --fault grammar spells it. */
const char *
emu_fault_kind_name(enum emu_fault_kind k)
{
	return (k < EMU_FAULT__MAX ? emu_fault_names[k] : "?");
}

/* A whole unsigned number (decimal or 0x hex); -1 when it is not one. */
static int
emu_fault_parse_u64(const char *s, uint64_t *v)
{
	char			*end;
	unsigned long long	 x;

	if (*s == '\0' || *s == '-' || *s == '+')
		return (-1);
	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return (-1);
	*v = x;
	return (0);
}

/* An opcode by esptool name ("FLASH_DEFL_DATA") or number. */
static int
emu_fault_parse_op(const char *s)
{
	uint64_t	v;
	unsigned	op;

	if (emu_fault_parse_u64(s, &v) == 0)
		return (v <= 0xff ? (int)v : -1);
	for (op = 0; op <= 0xff; op++) {
		if (strcasecmp(s, proto_op_name((uint8_t)op)) == 0 &&
		    strcmp(proto_op_name((uint8_t)op), "UNKNOWN") != 0)
			return ((int)op);
	}
	return (-1);
}

/* Keys each fault kind takes (bit per key, in emu_fault_keys order). */
static const char *emu_fault_keys[] = {
	"unit", "kind", "op", "at", "count", "ms", "code", "dir", "factor"
};
#define EMU_K_UNIT	0x01
#define EMU_K_KIND	0x02
#define EMU_K_OP	0x04
#define EMU_K_AT	0x08
#define EMU_K_COUNT	0x10
#define EMU_K_MS	0x20
#define EMU_K_CODE	0x40
#define EMU_K_DIR	0x80
#define EMU_K_FACTOR	0x100

static const unsigned emu_fault_allowed[EMU_FAULT__MAX] = {
	/* drop-reply */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* corrupt */ EMU_K_UNIT | EMU_K_KIND | EMU_K_AT | EMU_K_COUNT |
	    EMU_K_DIR,
	/* stall */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT | EMU_K_MS,
	/* rom-error */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT | EMU_K_CODE,
	/* bitflip */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* noise */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* unplug */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_DIR,
	/* reenum */ EMU_K_UNIT | EMU_K_KIND | EMU_K_OP | EMU_K_AT |
	    EMU_K_COUNT,
	/* slow-flash */ EMU_K_UNIT | EMU_K_KIND | EMU_K_FACTOR,
};

/*
 * Parse "key=value,..." into a fault.  Defaults: every unit, any op,
 * at=1, count=1, dir=out.  Required: kind; corrupt and unplug need at,
 * stall needs ms, rom-error needs code.
 */
int
emu_fault_parse(const char *spec, struct emu_fault *f, char **cause)
{
	char		*copy, *item, *save = NULL, *eq;
	unsigned	 seen = 0, bit = 0;
	uint64_t	 v;
	size_t		 k;
	int		 kind = -1, rc = -EINVAL;

	memset(f, 0, sizeof(*f));
	f->unit = -1;
	f->op = -1;
	f->at = 1;
	f->count = 1;
	copy = xstrdup(spec);
	for (item = strtok_r(copy, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		if ((eq = strchr(item, '=')) == NULL || eq == item) {
			*cause = xasprintf("--fault '%s': '%s' is not "
			    "key=value", spec, item);
			goto out;
		}
		*eq++ = '\0';
		for (k = 0; k < nitems(emu_fault_keys); k++)
			if (strcmp(item, emu_fault_keys[k]) == 0)
				break;
		if (k == nitems(emu_fault_keys)) {
			*cause = xasprintf("--fault '%s': unknown key '%s' "
			    "(keys: unit, kind, op, at, count, ms, code, dir, "
			    "factor)",
			    spec, item);
			goto out;
		}
		bit = 1u << k;
		if (seen & bit) {
			*cause = xasprintf("--fault '%s': '%s' given twice",
			    spec, item);
			goto out;
		}
		seen |= bit;
		switch (bit) {
		case EMU_K_KIND:
			for (k = 0; k < EMU_FAULT__MAX; k++)
				if (strcmp(eq, emu_fault_names[k]) == 0)
					kind = (int)k;
			if (kind < 0) {
				*cause = xasprintf("--fault '%s': unknown kind "
				    "'%s' (drop-reply, corrupt, stall, "
				    "rom-error, bitflip, noise, unplug, "
				    "reenum, slow-flash)",
				    spec, eq);
				goto out;
			}
			f->kind = (enum emu_fault_kind)kind;
			break;
		case EMU_K_OP:
			if ((f->op = emu_fault_parse_op(eq)) < 0) {
				*cause = xasprintf("--fault '%s': op '%s' is "
				    "neither a command name (FLASH_DEFL_DATA) "
				    "nor a number 0..255", spec, eq);
				goto out;
			}
			break;
		case EMU_K_DIR:
			if (strcmp(eq, "in") != 0 && strcmp(eq, "out") != 0) {
				*cause = xasprintf("--fault '%s': dir must be "
				    "'in' or 'out'", spec);
				goto out;
			}
			f->dir_in = strcmp(eq, "in") == 0;
			break;
		default:
			if (strcmp(eq, "all") == 0 && bit == EMU_K_UNIT)
				break;
			if (emu_fault_parse_u64(eq, &v) != 0 ||
			    (bit == EMU_K_UNIT && v > 65535) ||
			    (bit == EMU_K_MS && (v == 0 || v > 600000)) ||
			    (bit == EMU_K_CODE && (v == 0 || v > 0xff)) ||
			    (bit == EMU_K_FACTOR && (v < 2 || v > 1000))) {
				*cause = xasprintf("--fault '%s': bad value "
				    "'%s' for %s", spec, eq, item);
				goto out;
			}
			if (bit == EMU_K_UNIT)
				f->unit = (int)v;
			else if (bit == EMU_K_AT)
				f->at = v;
			else if (bit == EMU_K_COUNT)
				f->count = v;
			else if (bit == EMU_K_MS)
				f->ms = (uint32_t)v;
			else if (bit == EMU_K_FACTOR)
				f->factor = (uint32_t)v;
			else
				f->code = (uint8_t)v;
			break;
		}
	}
	if (kind < 0) {
		*cause = xasprintf("--fault '%s': kind= is required", spec);
		goto out;
	}
	if (seen & ~emu_fault_allowed[kind]) {
		for (k = 0; k < nitems(emu_fault_keys); k++)
			if (seen & ~emu_fault_allowed[kind] & (1u << k))
				break;
		*cause = xasprintf("--fault '%s': kind=%s takes no %s=", spec,
		    emu_fault_names[kind], emu_fault_keys[k]);
		goto out;
	}
	if ((kind == EMU_FAULT_CORRUPT || kind == EMU_FAULT_UNPLUG) &&
	    (seen & EMU_K_AT) == 0) {
		*cause = xasprintf("--fault '%s': kind=%s needs at=", spec,
		    emu_fault_names[kind]);
		goto out;
	}
	if (kind == EMU_FAULT_SLOW_FLASH && (seen & EMU_K_FACTOR) == 0) {
		*cause = xasprintf("--fault '%s': kind=slow-flash needs "
		    "factor= (2 to 1000)", spec);
		goto out;
	}
	if (kind == EMU_FAULT_UNPLUG && f->op >= 0 && f->at == 0) {
		*cause = xasprintf("--fault '%s': at= counts commands from 1 "
		    "when op= is given", spec);
		goto out;
	}
	if (kind == EMU_FAULT_STALL && (seen & EMU_K_MS) == 0) {
		*cause = xasprintf("--fault '%s': kind=stall needs ms=", spec);
		goto out;
	}
	if (kind == EMU_FAULT_ROM_ERROR && (seen & EMU_K_CODE) == 0) {
		*cause = xasprintf("--fault '%s': kind=rom-error needs code=",
		    spec);
		goto out;
	}
	if (kind != EMU_FAULT_UNPLUG && f->at == 0) {
		*cause = xasprintf("--fault '%s': at= counts from 1", spec);
		goto out;
	}
	rc = 0;
out:
	free(copy);
	return (rc);
}
