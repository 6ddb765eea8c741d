/*
 * "espfleet report": read a unit record file (flog.h) and summarize it:
 * totals by result and by day, failure reasons grouped and counted, units
 * flashed more than once by MAC; text or --json.  Every line that is not
 * a record is counted and skipped, never fatal: a log may end in a line
 * cut by a crash, or hold a record cut by a writer killed mid-write.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "flog.h"
#include "report.h"
#include "util.h"

#define REPORT_EXIT_USAGE	2
#define REPORT_NRES		(FLOG_RESULT__MAX + 1)	/* + "other" */

/* A key (day, reason or MAC) and what was counted under it. */
struct report_entry {
	char		*key;
	unsigned	 count;
	unsigned	 res[REPORT_NRES];
};

struct report_table {
	struct report_entry	*e;
	size_t			 n;
};

struct report {
	unsigned		 records;
	unsigned		 res[REPORT_NRES];
	unsigned		 garbage;	/* lines that are no record */
	unsigned		 cut;		/* records cut by a kill */
	unsigned		 truncated;	/* a cut last line */
	struct report_table	 days, reasons, macs;
};

static const struct option report_options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "json", no_argument, NULL, 'J' },
	{ NULL, 0, NULL, 0 }
};

/* The synopsis of the report command. */
static void
report_usage(FILE *f)
{
	fprintf(f, "usage: espfleet report [--json] [LOG]\n");
}

/* The result index of a record's "result" word; "other" if unknown. */
static unsigned
report_result(const char *s)
{
	unsigned	i;

	for (i = 0; i < FLOG_RESULT__MAX; i++) {
		if (strcmp(s, flog_result_name(i)) == 0)
			return (i);
	}
	return (FLOG_RESULT__MAX);
}

/* The name of a result index, "other" for the extra column. */
static const char *
report_result_name(unsigned r)
{
	return (r < FLOG_RESULT__MAX ? flog_result_name(r) : "other");
}

/* Count one record of result r under key (sanitized) in t. */
static void
report_count(struct report_table *t, const char *key, unsigned r)
{
	char	buf[1024];
	size_t	i;

	util_sanitize(buf, sizeof(buf), key, strlen(key));
	for (i = 0; i < t->n; i++) {
		if (strcmp(t->e[i].key, buf) == 0)
			break;
	}
	if (i == t->n) {
		t->e = xrealloc(t->e, (t->n + 1) * sizeof(*t->e));
		memset(&t->e[i], 0, sizeof(t->e[i]));
		t->e[i].key = xstrdup(buf);
		t->n++;
	}
	t->e[i].count++;
	t->e[i].res[r]++;
}

/* Free a table's keys and entries. */
static void
report_table_free(struct report_table *t)
{
	size_t	i;

	for (i = 0; i < t->n; i++)
		free(t->e[i].key);
	free(t->e);
}

/* qsort: by key ascending (days). */
static int
report_by_key(const void *a, const void *b)
{
	const struct report_entry	*x = a, *y = b;

	return (strcmp(x->key, y->key));
}

/* qsort: by count descending, then key (reasons, MACs). */
static int
report_by_count(const void *a, const void *b)
{
	const struct report_entry	*x = a, *y = b;

	if (x->count != y->count)
		return (x->count > y->count ? -1 : 1);
	return (strcmp(x->key, y->key));
}

/* Sort a table (qsort wants a valid pointer even for none). */
static void
report_sort(struct report_table *t, int (*cmp)(const void *, const void *))
{
	if (t->n > 1)
		qsort(t->e, t->n, sizeof(*t->e), cmp);
}

/* A string member of o, or NULL when missing or not a string. */
static const char *
report_str(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return (NULL);
	return (json_object_get_string(v));
}

/*
 * The reason as a group key: digests (runs of 16 or more hex digits, an
 * MD5 or SHA-256) become "...", so that units failing the same way count
 * together although each flash gave its own MD5.
 */
static void
report_reason_key(const char *reason, char *buf, size_t cap)
{
	size_t	i = 0, n, len = 0;

	while (reason[i] != '\0' && len + 4 < cap) {
		for (n = 0; isxdigit((unsigned char)reason[i + n]); n++)
			;
		if (n >= 16) {
			memcpy(buf + len, "...", 3);
			len += 3;
			i += n;
		} else if (n > 0) {
			n = MINIMUM(n, cap - 1 - len);
			memcpy(buf + len, reason + i, n);
			len += n;
			i += n;
		} else
			buf[len++] = reason[i++];
	}
	buf[len] = '\0';
}

/* Take one record into the totals. */
static void
report_add(struct report *rp, struct json_object *o)
{
	const char	*result, *time, *reason, *mac;
	char		 day[11], key[1024];
	unsigned	 r;

	result = report_str(o, "result");
	r = report_result(result != NULL ? result : "");
	rp->records++;
	rp->res[r]++;
	time = report_str(o, "time");
	if (time != NULL && strlen(time) >= 10) {
		memcpy(day, time, 10);
		day[10] = '\0';
	} else
		snprintf(day, sizeof(day), "unknown");
	report_count(&rp->days, day, r);
	if (r == FLOG_FAILED) {
		reason = report_str(o, "reason");
		report_reason_key(reason != NULL ? reason :
		    "(no reason given)", key, sizeof(key));
		report_count(&rp->reasons, key, r);
	}
	if ((mac = report_str(o, "mac")) != NULL)
		report_count(&rp->macs, mac, r);
}

/* Read every line of f; lines that are not records are counted. */
static void
report_read(struct report *rp, FILE *f)
{
	struct json_object	*o;
	char			*line = NULL;
	size_t			 cap = 0;
	ssize_t			 n;
	int			 damaged, last;

	while ((n = getline(&line, &cap, f)) > 0) {
		if (n == 1 && line[0] == '\n')
			continue;
		last = line[n - 1] != '\n';
		o = flog_parse_line(line, (size_t)n, &damaged);
		if (o == NULL) {
			if (last)
				rp->truncated++;
			else
				rp->garbage++;
			continue;
		}
		if (damaged)
			rp->cut++;
		report_add(rp, o);
		json_object_put(o);
	}
	free(line);
}

/* "2 garbage lines, 1 truncated last line" or "" when none. */
static void
report_skipped(const struct report *rp, char *buf, size_t cap)
{
	size_t	len = 0;

	buf[0] = '\0';
	if (rp->garbage > 0)
		len += (size_t)snprintf(buf + len, cap - len, "%u garbage "
		    "line%s", rp->garbage, rp->garbage == 1 ? "" : "s");
	if (rp->cut > 0 && len < cap)
		len += (size_t)snprintf(buf + len, cap - len, "%s%u cut "
		    "record%s", len ? ", " : "", rp->cut,
		    rp->cut == 1 ? "" : "s");
	if (rp->truncated > 0 && len < cap)
		snprintf(buf + len, cap - len, "%s%u truncated last line",
		    len ? ", " : "", rp->truncated);
}

/* The counts of one entry (or the totals) as "verified 2, failed 1". */
static void
report_counts(const unsigned *res, char *buf, size_t cap, int all)
{
	size_t		len = 0;
	unsigned	r;

	buf[0] = '\0';
	for (r = 0; r < REPORT_NRES && len < cap; r++) {
		if (res[r] == 0 && (!all || r == FLOG_RESULT__MAX))
			continue;
		len += (size_t)snprintf(buf + len, cap - len, "%s%s %u",
		    len ? ", " : "", report_result_name(r), res[r]);
	}
}

/* The report as text for a person. */
static void
report_text(const struct report *rp, const char *path)
{
	char	buf[512];
	size_t	i;

	util_sanitize(buf, sizeof(buf), path, strlen(path));
	printf("%s: %u record%s\n", buf, rp->records,
	    rp->records == 1 ? "" : "s");
	report_skipped(rp, buf, sizeof(buf));
	if (buf[0] != '\0')
		printf("skipped: %s (not records)\n", buf);
	report_counts(rp->res, buf, sizeof(buf), 1);
	printf("results: %s\n", buf);
	if (rp->days.n > 0)
		printf("\nby day:\n");
	for (i = 0; i < rp->days.n; i++) {
		report_counts(rp->days.e[i].res, buf, sizeof(buf), 0);
		printf("  %s  %u: %s\n", rp->days.e[i].key,
		    rp->days.e[i].count, buf);
	}
	if (rp->reasons.n > 0)
		printf("\nfailure reasons:\n");
	for (i = 0; i < rp->reasons.n; i++)
		printf("  %5u  %s\n", rp->reasons.e[i].count,
		    rp->reasons.e[i].key);
	for (i = 0; i < rp->macs.n && rp->macs.e[i].count > 1; i++) {
		if (i == 0)
			printf("\nunits flashed more than once (by MAC):\n");
		report_counts(rp->macs.e[i].res, buf, sizeof(buf), 0);
		printf("  %s  %u times: %s\n", rp->macs.e[i].key,
		    rp->macs.e[i].count, buf);
	}
}

/* An object of result counts (all results, "other" only if any). */
static struct json_object *
report_json_counts(const unsigned *res)
{
	struct json_object	*o;
	unsigned		 r;

	o = json_object_new_object();
	for (r = 0; r < REPORT_NRES; r++) {
		if (r == FLOG_RESULT__MAX && res[r] == 0)
			continue;
		json_object_object_add(o, report_result_name(r),
		    json_object_new_int((int)res[r]));
	}
	return (o);
}

/* One array of a table: {key_name: key, count, results}. */
static struct json_object *
report_json_table(const struct report_table *t, const char *key_name,
    unsigned min)
{
	struct json_object	*a, *e;
	size_t			 i;

	a = json_object_new_array();
	for (i = 0; i < t->n; i++) {
		if (t->e[i].count < min)
			continue;
		e = json_object_new_object();
		json_object_object_add(e, key_name,
		    json_object_new_string(t->e[i].key));
		json_object_object_add(e, "count",
		    json_object_new_int((int)t->e[i].count));
		json_object_object_add(e, "results",
		    report_json_counts(t->e[i].res));
		json_object_array_add(a, e);
	}
	return (a);
}

/* The report as one JSON object. */
static void
report_json(const struct report *rp, const char *path)
{
	struct json_object	*o, *s;

	o = json_object_new_object();
	json_object_object_add(o, "log", json_object_new_string(path));
	json_object_object_add(o, "records",
	    json_object_new_int((int)rp->records));
	s = json_object_new_object();
	json_object_object_add(s, "garbage",
	    json_object_new_int((int)rp->garbage));
	json_object_object_add(s, "cut", json_object_new_int((int)rp->cut));
	json_object_object_add(s, "truncated_last_line",
	    json_object_new_int((int)rp->truncated));
	json_object_object_add(o, "skipped", s);
	json_object_object_add(o, "results", report_json_counts(rp->res));
	json_object_object_add(o, "days",
	    report_json_table(&rp->days, "day", 0));
	json_object_object_add(o, "failure_reasons",
	    report_json_table(&rp->reasons, "reason", 0));
	json_object_object_add(o, "repeated_units",
	    report_json_table(&rp->macs, "mac", 2));
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* Open the record file read-only, never through a symbolic link. */
static FILE *
report_open(const char *path)
{
	FILE	*f;
	int	 fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ELOOP)
			fprintf(stderr, "espfleet report: %s is a symbolic "
			    "link; name the record file itself\n", path);
		else if (errno == ENOENT)
			fprintf(stderr, "espfleet report: %s does not exist: "
			    "no unit has been recorded there yet\n", path);
		else
			fprintf(stderr, "espfleet report: cannot open %s: "
			    "%s\n", path, strerror(errno));
		return (NULL);
	}
	(void)fcntl(fd, F_SETFL, 0);
	if ((f = fdopen(fd, "r")) == NULL)
		close(fd);
	return (f);
}

/* espfleet report [--json] [LOG]. */
int
report_main(int argc, char **argv)
{
	struct report	 rp;
	FILE		*f;
	char		*path = NULL, *cause = NULL;
	int		 ch, json = 0, status = 1;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", report_options,
	    NULL)) != -1) {
		switch (ch) {
		case 'h':
			report_usage(stdout);
			return (0);
		case 'J':
			json = 1;
			break;
		default:
			fprintf(stderr, "espfleet report: unknown option "
			    "\"%s\"\n", argv[optind - 1]);
			report_usage(stderr);
			return (REPORT_EXIT_USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc > 1) {
		fprintf(stderr, "espfleet report: give at most one record "
		    "file\n");
		report_usage(stderr);
		return (REPORT_EXIT_USAGE);
	}
	if (argc == 1)
		path = xstrdup(argv[0]);
	else if (flog_state_path(&path, "units.jsonl", &cause) != 0) {
		fprintf(stderr, "espfleet report: %s\n", cause);
		free(cause);
		return (REPORT_EXIT_USAGE);
	}
	if ((f = report_open(path)) == NULL)
		goto out;
	memset(&rp, 0, sizeof(rp));
	report_read(&rp, f);
	if (ferror(f))
		fprintf(stderr, "espfleet report: reading %s: %s\n", path,
		    strerror(errno));
	else {
		report_sort(&rp.days, report_by_key);
		report_sort(&rp.reasons, report_by_count);
		report_sort(&rp.macs, report_by_count);
		if (json)
			report_json(&rp, path);
		else
			report_text(&rp, path);
		status = 0;
	}
	fclose(f);
	report_table_free(&rp.days);
	report_table_free(&rp.reasons);
	report_table_free(&rp.macs);
out:
	free(path);
	return (status);
}
