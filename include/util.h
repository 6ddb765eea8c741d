/* Small helpers every module may use: allocation that cannot fail,
 * monotonic time, little-endian fields, and escaping of untrusted text. */
#ifndef ESPF_UTIL_H
#define ESPF_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#define MINIMUM(a, b)	((a) < (b) ? (a) : (b))
#define MAXIMUM(a, b)	((a) > (b) ? (a) : (b))
#define printflike(a, b) __attribute__((format(printf, a, b)))
#define espf_unused	__attribute__((unused))
#define espf_dead	__attribute__((noreturn))

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
char	*xstrdup(const char *);
char	*xasprintf(const char *, ...) printflike(1, 2);
char	*xvasprintf(const char *, va_list) printflike(1, 0);
void	 fatalx(const char *, ...) printflike(1, 2) espf_dead;

/* CLOCK_MONOTONIC, for deadlines; never wall time. */
uint64_t util_now_ms(void);
uint64_t util_now_us(void);
/* Milliseconds left until deadline (0 when passed). */
int	 util_ms_left(uint64_t deadline_ms);
/* Sleep that restarts on EINTR; only for modelled or documented delays. */
void	 util_sleep_us(uint64_t us);

/*
 * Copy untrusted text (USB strings, serial output) so that no control
 * character or escape sequence survives: bytes < 0x20, 0x7f and invalid
 * UTF-8 become \xNN; valid UTF-8 is kept.  Always NUL-terminates.
 * Returns the length written (excluding the NUL).
 */
size_t	 util_sanitize(char *dst, size_t cap, const void *src, size_t len);

/* A decimal option argument in [min, max], or -1 if it is not one. */
long long util_number(const char *, long long min, long long max);

/* splitmix64: a 64-bit mix for seeded, repeatable choices (not crypto). */
static inline uint64_t
util_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return (x ^ (x >> 31));
}

static inline void
le16_put(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static inline void
le32_put(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = v >> 24;
}

static inline uint16_t
le16_get(const uint8_t *p)
{
	return ((uint16_t)(p[0] | p[1] << 8));
}

static inline uint32_t
le32_get(const uint8_t *p)
{
	return ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24);
}

#endif
