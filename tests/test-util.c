/*
 * util_sanitize against the escape sequences a hostile or broken device
 * could send, plus the time, sleep, allocation and fatalx helpers.
 */
#include "config.h"

#include <sys/time.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"

/* Sanitize a string literal with a large buffer. */
static const char *
test_san(const char *in, size_t len)
{
	static char	out[1024];

	util_sanitize(out, sizeof(out), in, len);
	return (out);
}

/* True if s holds any byte that is not printable ASCII. */
static int
test_has_raw(const char *s)
{
	const unsigned char	*p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			return (1);
	}
	return (0);
}

/* Escape sequences, controls and invalid UTF-8 become visible text. */
static void
test_sanitize(void)
{
	static const char osc[] = "\x1b]0;pwned\x07";
	static const char csi[] = "\x1b[31mred\x1b[0m ok";
	static const char c1[] = "a\xc2\x9b" "31mb\x9b" "c";
	static const char utf8[] = "Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac "
	    "\xf0\x9f\x98\x80 \xc2\xa0|";
	static const char bad[] = "\xff\xc0\xaf\xe0\x80\x80\xed\xa0\x80"
	    "\xf4\x90\x80\x80\xe2\x82";
	const char	*s;
	char		 out[64];
	size_t		 n;

	s = test_san(osc, sizeof(osc) - 1);
	is_str(s, "\\x1b]0;pwned\\x07", "OSC title sequence is escaped");
	tap_ok(!test_has_raw(s), "no control byte survives OSC");
	s = test_san(csi, sizeof(csi) - 1);
	is_str(s, "\\x1b[31mred\\x1b[0m ok", "ANSI colour CSI is escaped");
	s = test_san(c1, sizeof(c1) - 1);
	is_str(s, "a\\xc2\\x9b31mb\\x9bc",
	    "C1 CSI as UTF-8 (C2 9B) and raw 9B are escaped");
	tap_ok(!test_has_raw(s), "no C1 control survives");
	s = test_san(utf8, sizeof(utf8) - 1);
	is_str(s, utf8, "valid UTF-8 (2, 3, 4 bytes, NBSP) kept as is");
	s = test_san(bad, sizeof(bad) - 1);
	is_str(s, "\\xff\\xc0\\xaf\\xe0\\x80\\x80\\xed\\xa0\\x80"
	    "\\xf4\\x90\\x80\\x80\\xe2\\x82", "invalid byte, overlongs, "
	    "surrogate, > U+10FFFF and truncated sequence escaped");
	s = test_san("a\\b\r\n\x7f\t", 7);
	is_str(s, "a\\\\b\\x0d\\x0a\\x7f\\x09",
	    "backslash doubled; CR LF DEL TAB escaped");
	s = test_san("\xe2\x82\xac", 2);
	is_str(s, "\\xe2\\x82",
	    "sequence cut by len is escaped, not read past");
	s = test_san("x\0y", 3);
	is_str(s, "x\\x00y", "NUL byte escaped, rest kept");

	memset(out, 'Z', sizeof(out));
	n = util_sanitize(out, sizeof(out), "plain", 5);
	tap_ok(n == 5 && strcmp(out, "plain") == 0, "plain text: length 5");
	memset(out, 'Z', sizeof(out));
	n = util_sanitize(out, 0, "plain", 5);
	tap_ok(n == 0 && out[0] == 'Z', "cap 0 writes nothing");
	n = util_sanitize(out, 1, "plain", 5);
	tap_ok(n == 0 && out[0] == '\0', "cap 1 gives an empty string");
	n = util_sanitize(out, 3, "\xe2\x82\xac", 3);
	tap_ok(n == 0 && out[0] == '\0', "3-byte character needs cap 4");
	n = util_sanitize(out, 4, "\xe2\x82\xac", 3);
	tap_ok(n == 3 && strcmp(out, "\xe2\x82\xac") == 0,
	    "3-byte character fits cap 4");
}

/*
 * For every cap, the result must be the longest whole-token prefix of
 * the full result that fits, NUL-terminated, and nothing past cap is
 * touched.  Token boundaries come from sanitizing input prefixes.
 */
static void
test_truncation(void)
{
	static const char	in[] = "ab\x1b[1m\\\xe2\x82\xac\xff" "c\x07";
	char			full[128], pre[128], out[160];
	size_t			bound[sizeof(in)], nb = 0, k, cap, i, want;
	size_t			n, fulllen;
	int			bad = 0;

	fulllen = util_sanitize(full, sizeof(full), in, sizeof(in) - 1);
	for (k = 0; k < sizeof(in); k++) {
		n = util_sanitize(pre, sizeof(pre), in, k);
		if (nb == 0 || bound[nb - 1] != n)
			bound[nb++] = n;
	}
	for (cap = 1; cap <= fulllen + 2; cap++) {
		memset(out, 0xA5, sizeof(out));
		n = util_sanitize(out, cap, in, sizeof(in) - 1);
		want = 0;
		for (i = 0; i < nb; i++) {
			if (bound[i] < cap)
				want = bound[i];
		}
		if (n != want || out[n] != '\0' || strlen(out) != n ||
		    memcmp(out, full, n) != 0) {
			tap_diag("  cap %zu: got %zu \"%s\", want %zu", cap, n,
			    out, want);
			bad++;
		}
		for (i = cap; i < sizeof(out); i++) {
			if ((unsigned char)out[i] != 0xA5) {
				tap_diag("  cap %zu: byte %zu written", cap, i);
				bad++;
				break;
			}
		}
	}
	is_str(full, "ab\\x1b[1m\\\\\xe2\x82\xac\\xffc\\x07",
	    "reference result");
	is_int(bad, 0, "every cap 1..%zu: whole escapes only, no overflow",
	    fulllen + 2);
}

static volatile sig_atomic_t test_alarms;

/* Count SIGALRM deliveries; installed without SA_RESTART. */
static void
test_alarm_cb(int sig)
{
	test_alarms++;
}

/* Monotonic time, deadlines and a sleep that survives signals. */
static void
test_time(void)
{
	struct sigaction	sa;
	struct itimerval	it;
	uint64_t		t0, t1, us0, us1;
	int			left;

	t0 = util_now_ms();
	us0 = util_now_us();
	tap_ok(us0 / 1000 + 1 >= t0 && us0 / 1000 <= t0 + 1,
	    "now_us and now_ms agree");
	is_int(util_ms_left(0), 0, "deadline in the past: 0 left");
	is_int(util_ms_left(t0), 0, "deadline now: 0 left");
	left = util_ms_left(t0 + 10000);
	tap_ok(left > 9000 && left <= 10000, "10 s deadline: %d ms left", left);
	is_int(util_ms_left(t0 + 0x100000000ULL), 0x7fffffff,
	    "far deadline clamps to INT_MAX");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = test_alarm_cb;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sigaction(SIGALRM, &sa, NULL);
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 5000;
	it.it_interval.tv_usec = 5000;
	setitimer(ITIMER_REAL, &it, NULL);
	us0 = util_now_us();
	util_sleep_us(60000);
	us1 = util_now_us();
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	tap_ok(test_alarms >= 1, "signals arrived during the sleep (%d)",
	    (int)test_alarms);
	tap_ok(us1 - us0 >= 60000, "sleep of 60 ms lasted %llu us despite "
	    "signals", (unsigned long long)(us1 - us0));
	t1 = util_now_ms();
	tap_ok(t1 >= t0, "monotonic clock does not go back");
}

/* xasprintf formats, x*alloc return usable memory. */
static void
test_alloc(void)
{
	char	*s, *d;
	int	*v;

	s = xasprintf("%s at 0x%08x: %d%%", "FLASH_DATA", 0x10000u, 42);
	is_str(s, "FLASH_DATA at 0x00010000: 42%", "xasprintf formats");
	d = xstrdup(s);
	tap_ok(d != s && strcmp(d, s) == 0, "xstrdup copies");
	free(d);
	free(s);
	v = xcalloc(16, sizeof(*v));
	tap_ok(v[0] == 0 && v[15] == 0, "xcalloc zeroes");
	v = xrealloc(v, 1024 * sizeof(*v));
	v[1023] = 7;
	tap_ok(v[0] == 0 && v[1023] == 7, "xrealloc keeps contents");
	free(v);
	s = xmalloc(0);
	tap_ok(s != NULL, "xmalloc(0) gives a freeable pointer");
	free(s);
}

/* fatalx prints "espfleet: ..." to stderr and exits 1. */
static void
test_fatalx(void)
{
	char	buf[128];
	pid_t	pid;
	ssize_t	n;
	size_t	got = 0;
	int	fds[2], status = 0;

	if (pipe(fds) != 0) {
		tap_ok(0, "pipe");
		return;
	}
	fflush(stdout);
	if ((pid = fork()) == 0) {
		dup2(fds[1], 2);
		close(fds[0]);
		fatalx("cannot open %s", "/dev/ttyACM7");
	}
	close(fds[1]);
	while (got < sizeof(buf) - 1 &&
	    (n = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 1,
	    "fatalx exits with status 1");
	is_str(buf, "espfleet: cannot open /dev/ttyACM7\n",
	    "fatalx message on stderr");
}

/* Option numbers: decimal, whole, within the range given. */
static void
test_number(void)
{
	static const struct {
		const char	*in;
		long long	 want;
	} cases[] = {
		{ "0", 0 }, { "10", 10 }, { "11", -1 }, { "-1", -1 },
		{ "", -1 }, { "3x", -1 }, { "0x5", -1 }, { " 4", 4 },
		{ "99999999999999999999", -1 },
	};
	size_t	i;

	for (i = 0; i < nitems(cases); i++)
		is_int(util_number(cases[i].in, 0, 10), cases[i].want,
		    "util_number(\"%s\", 0, 10)", cases[i].in);
}

/* splitmix64's published first outputs from a state of 0. */
static void
test_mix64(void)
{
	tap_ok(util_mix64(0) == 0xe220a8397b1dcdafULL,
	    "util_mix64(0) is splitmix64's first output");
	tap_ok(util_mix64(0x9e3779b97f4a7c15ULL) == 0x6e789e6aa1b965f4ULL,
	    "util_mix64 of the next state is its second");
}

/* Run every util test. */
int
main(void)
{
	test_sanitize();
	test_truncation();
	test_time();
	test_alloc();
	test_fatalx();
	test_number();
	test_mix64();
	return (tap_done());
}
