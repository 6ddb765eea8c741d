/* A minimal TAP producer for the C tests (automake's tap-driver reads it). */
#ifndef ESPF_TAP_H
#define ESPF_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_ok(int, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static inline void tap_diag(const char *, ...)
    __attribute__((format(printf, 1, 2)));
static inline void tap_skip_all(const char *) __attribute__((noreturn));

static inline void
tap_plan(int n)
{
	printf("1..%d\n", n);
	fflush(stdout);
}

static inline int
tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return (cond);
}

static inline void
tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Skip the whole test file with a reason. */
static inline void
tap_skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	exit(0);
}

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return (tap_failed ? 1 : 0);
}

#define is_int(a, b, ...) do {						\
	long long _a = (a), _b = (b);					\
	if (!tap_ok(_a == _b, __VA_ARGS__))				\
		tap_diag("  got %lld, want %lld", _a, _b);		\
} while (0)

#define is_str(a, b, ...) do {						\
	const char *_a = (a), *_b = (b);				\
	if (!tap_ok(_a != NULL && _b != NULL && strcmp(_a, _b) == 0,	\
	    __VA_ARGS__))						\
		tap_diag("  got \"%s\", want \"%s\"",			\
		    _a ? _a : "(null)", _b ? _b : "(null)");		\
} while (0)

#define is_mem(a, b, n, ...)						\
	tap_ok(memcmp((a), (b), (n)) == 0, __VA_ARGS__)

#endif
