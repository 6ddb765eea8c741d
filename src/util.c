/*
 * Small helpers shared by every module: allocation that cannot fail,
 * monotonic time and deadlines, and escaping of untrusted text.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* Allocate or die: callers never see NULL. */
void *
xmalloc(size_t size)
{
	void	*p;

	if (size == 0)
		size = 1;	/* a valid, freeable pointer even for nothing */
	if ((p = malloc(size)) == NULL)
		fatalx("xmalloc: out of memory allocating %zu bytes", size);
	return (p);
}

/* Allocate a zeroed array or die, checking the multiplication. */
void *
xcalloc(size_t nmemb, size_t size)
{
	void	*p;

	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	if ((p = calloc(nmemb, size)) == NULL)
		fatalx("xcalloc: out of memory allocating %zu x %zu bytes",
		    nmemb, size);
	return (p);
}

/* Resize or die; the old block stays valid only if this returns. */
void *
xrealloc(void *ptr, size_t size)
{
	void	*p;

	if (size == 0)
		size = 1;
	if ((p = realloc(ptr, size)) == NULL)
		fatalx("xrealloc: out of memory allocating %zu bytes", size);
	return (p);
}

/* Duplicate a string or die. */
char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatalx("xstrdup: out of memory");
	return (p);
}

/* Format into a freshly allocated string or die. */
char *
xvasprintf(const char *fmt, va_list ap)
{
	char	*s;

	if (vasprintf(&s, fmt, ap) == -1)
		fatalx("xvasprintf: out of memory");
	return (s);
}

/* Format into a freshly allocated string or die (variadic form). */
char *
xasprintf(const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return (s);
}

/* Print "espfleet: message" to stderr and exit(1); for unrecoverable states. */
void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	fflush(stdout);
	fputs("espfleet: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Read CLOCK_MONOTONIC; it cannot fail on Linux, so a failure is fatal. */
static void
util_monotonic(struct timespec *ts)
{
	if (clock_gettime(CLOCK_MONOTONIC, ts) != 0)
		fatalx("clock_gettime(CLOCK_MONOTONIC): %s", strerror(errno));
}

/* Milliseconds on the monotonic clock, for deadlines. */
uint64_t
util_now_ms(void)
{
	struct timespec	ts;

	util_monotonic(&ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Microseconds on the monotonic clock, for rate measurements. */
uint64_t
util_now_us(void)
{
	struct timespec	ts;

	util_monotonic(&ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

/* Time left until a deadline, clamped to [0, INT_MAX] for poll(). */
int
util_ms_left(uint64_t deadline_ms)
{
	uint64_t	now, left;

	now = util_now_ms();
	if (now >= deadline_ms)
		return (0);
	left = deadline_ms - now;
	if (left > 0x7fffffff)
		return (0x7fffffff);
	return ((int)left);
}

/* Sleep for a modelled delay, finishing the whole interval despite signals. */
void
util_sleep_us(uint64_t us)
{
	struct timespec	ts;
	uint64_t	ns;
	int		error;

	util_monotonic(&ts);
	ns = (uint64_t)ts.tv_nsec + (us % 1000000) * 1000;
	ts.tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	do
		error = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
		    NULL);
	while (error == EINTR);
}

/*
 * Length of the valid UTF-8 sequence at p (at most n bytes), or 0 if it
 * is not one.  Rejects overlongs, surrogates, values above U+10FFFF and
 * the C1 controls U+0080-U+009F, which terminals obey like ESC.
 */
static size_t
util_utf8_len(const uint8_t *p, size_t n)
{
	uint32_t	cp;
	size_t		need, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		need = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		need = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		need = 4;
		cp = p[0] & 0x07;
	} else
		return (0);
	if (n < need)
		return (0);
	for (i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000))
		return (0);
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return (0);
	if (cp >= 0x80 && cp <= 0x9f)
		return (0);
	return (need);
}

/* Escape untrusted bytes so that nothing a terminal would obey survives. */
size_t
util_sanitize(char *dst, size_t cap, const void *src, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	const uint8_t		*p = src;
	size_t			 i = 0, o = 0, n;

	if (cap == 0)
		return (0);
	while (i < len) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
			if (o + 1 >= cap)
				break;
			dst[o++] = (char)p[i++];
		} else if (p[i] == '\\') {
			if (o + 2 >= cap)
				break;
			dst[o++] = '\\';
			dst[o++] = '\\';
			i++;
		} else if ((n = util_utf8_len(p + i, len - i)) != 0) {
			if (o + n >= cap)
				break;
			memcpy(dst + o, p + i, n);
			o += n;
			i += n;
		} else {
			if (o + 4 >= cap)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[p[i] >> 4];
			dst[o++] = hex[p[i] & 0xf];
			i++;
		}
	}
	dst[o] = '\0';
	return (o);
}

/* A decimal option argument in [min, max], or -1 if it is not one. */
long long
util_number(const char *s, long long min, long long max)
{
	char		*end;
	long long	 v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return (-1);
	return (v);
}
