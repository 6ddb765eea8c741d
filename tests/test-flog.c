/*
 * Unit records: the fields a finished job yields, the JSON they become
 * (parsed back with json-c), the file's mode and directory modes, refusal
 * of a symbolic link and of a FIFO, and that several processes appending
 * records > PIPE_BUF while being killed with SIGKILL never leave a partial
 * or interleaved line.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "flog.h"
#include "image.h"
#include "job.h"
#include "util.h"
#include "tap.h"

#define TEST_CHILDREN	6
#define TEST_FOREIGN	2	/* of them: plain appenders, no flog */
#define TEST_FOREIGN_MAX 100000	/* lines each of those writes at most */
#define TEST_MIN_OURS	120	/* records through flog before the kill */
#define TEST_DEADLINE_MS 30000

static char	test_dir[] = "/tmp/test-flog.XXXXXX";

/* A string member of o, or "" when missing. */
static const char *
test_str(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v))
		return ("");
	return (json_object_get_string(v));
}

/* An integer member of o, or -1 when missing. */
static int64_t
test_int(struct json_object *o, const char *key)
{
	struct json_object	*v;

	if (!json_object_object_get_ex(o, key, &v))
		return (-1);
	return (json_object_get_int64(v));
}

/* A finished job as the consumer would see it. */
static void
test_progress(struct job_progress *p, enum job_state st, const char *msg)
{
	static const uint8_t	mac[6] = { 0x7c, 0xdf, 0xa1, 0x00, 0x11, 0x22 };

	memset(p, 0, sizeof(*p));
	p->state = st;
	p->phase = st == JOB_ST_VERIFIED ? JOB_PH_DONE : JOB_PH_WRITING;
	p->bytes_done = st == JOB_ST_VERIFIED ? 8192 : 4096;
	p->bytes_total = 8192;
	snprintf(p->chip, sizeof(p->chip), "ESP32-S2FNR2");
	memcpy(p->mac, mac, sizeof(mac));
	p->have_mac = 1;
	p->flash_size = 4 << 20;
	p->rev_major = 1;
	p->rev_minor = 0;
	p->flash_id = 0x1640c8;
	p->crystal_mhz = 40;
	p->sec.valid = 1;
	snprintf(p->security, sizeof(p->security), "none");
	p->t_start = 1000;
	p->t_end = 3500;
	snprintf(p->errmsg, sizeof(p->errmsg), "%s", msg);
}

/*
 * Read a record file as "espfleet report" does: the records that parse
 * (a cut record followed by a whole one counts as damaged and gives the
 * whole one), the damaged or unparseable lines, and the first record
 * that is not one the test wrote.
 */
static int
test_check_file(const char *path, int *damaged, int *foreign, int *ours)
{
	FILE			*f;
	struct json_object	*o;
	char			*line = NULL;
	size_t			 cap = 0;
	ssize_t			 n;
	int			 records = 0, d, lineno = 0;

	*damaged = *foreign = *ours = 0;
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	while ((n = getline(&line, &cap, f)) > 0) {
		lineno++;
		if (n == 1 && line[0] == '\n')
			continue;
		o = flog_parse_line(line, (size_t)n, &d);
		*damaged += d;
		if (o == NULL)
			continue;
		records++;
		if (strncmp(test_str(o, "reason"), "child ", 6) != 0 &&
		    *foreign == 0)
			*foreign = lineno;
		if (strstr(test_str(o, "reason"), " record ") != NULL)
			(*ours)++;
		json_object_put(o);
	}
	free(line);
	fclose(f);
	return (records);
}

/* Records flog wrote so far (the test's own marker), 0 if no file. */
static int
test_count_ours(const char *path)
{
	FILE	*f;
	char	*line = NULL;
	size_t	 cap = 0;
	int	 n = 0;

	if ((f = fopen(path, "r")) == NULL)
		return (0);
	while (getline(&line, &cap, f) > 0)
		n += strstr(line, " record ") != NULL;
	free(line);
	fclose(f);
	return (n);
}

/* Count the lines of a file (0 when it is missing). */
static int
test_count_lines(const char *path)
{
	FILE	*f;
	int	 c, n = 0;

	if ((f = fopen(path, "r")) == NULL)
		return (0);
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return (n);
}

/* A child: append big records forever until killed. */
static void espf_dead
test_child(const char *path, int k)
{
	struct flog	*f;
	struct flog_unit u;
	char		*cause = NULL;
	size_t		 i;
	unsigned	 seq;

	if (flog_open(&f, path, &cause) != 0)
		_exit(3);
	memset(&u, 0, sizeof(u));
	flog_now(u.time, sizeof(u.time));
	/* Control bytes: escaped, the record grows past PIPE_BUF. */
	memset(u.image, k + 1, sizeof(u.image) - 1);
	u.nregions = FLOG_MAX_REGIONS;
	for (i = 0; i < u.nregions; i++) {
		u.regions[i].offset = (uint32_t)i << 16;
		u.regions[i].size = 4096;
		memset(u.regions[i].md5, '0' + k, 32);
	}
	for (seq = 0;; seq++) {
		snprintf(u.reason, sizeof(u.reason), "child %d record %u", k,
		    seq);
		if (flog_append_job(f, &u, &cause) != 0)
			_exit(4);
	}
}

/*
 * Another program appending whole lines with O_APPEND and no lock: a
 * record written in more than one write() would be split by its lines.
 */
static void espf_dead
test_foreign(const char *path)
{
	static const char	line[] = "{\"time\":\"x\",\"reason\":\"child "
	    "foreign\"}\n";
	int			fd, n;

	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600)) == -1)
		_exit(3);
	/* Often enough to fall between two writes; bounded in size. */
	for (n = 0; n < TEST_FOREIGN_MAX; n++) {
		if (write(fd, line, sizeof(line) - 1) != sizeof(line) - 1)
			_exit(4);
		util_sleep_us(20);
	}
	for (;;)
		pause();
}

/* Several appenders, killed with SIGKILL: whole lines only. */
static void
test_concurrent(void)
{
	pid_t		 pids[TEST_CHILDREN];
	struct flog_unit u;
	char		*path, *line;
	uint64_t	 deadline;
	int		 i, lines, damaged, foreign, ours, status;
	int		 alive = 1;

	memset(&u, 0, sizeof(u));
	memset(u.image, 1, sizeof(u.image) - 1);
	u.nregions = FLOG_MAX_REGIONS;
	line = flog_unit_json(&u);
	tap_ok(strlen(line) > PIPE_BUF, "a big record (%zu bytes) is longer "
	    "than PIPE_BUF (%d)", strlen(line), PIPE_BUF);
	free(line);

	path = xasprintf("%s/many.jsonl", test_dir);
	for (i = 0; i < TEST_CHILDREN; i++) {
		if ((pids[i] = fork()) == 0) {
			if (i < TEST_FOREIGN)
				test_foreign(path);
			test_child(path, i);
		}
	}
	deadline = util_now_ms() + TEST_DEADLINE_MS;
	while (test_count_ours(path) < TEST_MIN_OURS &&
	    util_ms_left(deadline) > 0) {
		for (i = 0; i < TEST_CHILDREN; i++) {
			if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
				alive = 0;
				pids[i] = -1;
			}
		}
		if (!alive)
			break;
		util_sleep_us(5000);
	}
	for (i = 0; i < TEST_CHILDREN; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], &status, 0);
		}
	}
	tap_ok(alive, "%d appenders (%d of them other programs) ran until "
	    "killed with SIGKILL", TEST_CHILDREN, TEST_FOREIGN);
	lines = test_check_file(path, &damaged, &foreign, &ours);
	tap_ok(ours >= TEST_MIN_OURS - TEST_CHILDREN && lines > ours,
	    "they appended %d records, %d through flog", lines, ours);
	/*
	 * Linux ends a write() early when SIGKILL comes between two pages,
	 * so each killed writer may leave one cut record, never more, and
	 * never one that damages another record.
	 */
	tap_ok(damaged <= TEST_CHILDREN, "at most one cut record per killed "
	    "writer (%d cut, %d killed)", damaged, TEST_CHILDREN);
	tap_ok(foreign == 0, "every record read back is whole (first bad "
	    "line: %d)", foreign);
	free(path);
}

/* Fields and JSON of verified, failed and interrupted jobs. */
static void
test_fields(void)
{
	struct job_progress	 p;
	struct flog_unit	 u;
	struct image_set	*set = NULL;
	struct image_load_opts	 opts;
	struct json_object	*o, *regs, *r;
	uint8_t			 data[8192];
	char			*cause = NULL, *line;

	memset(data, 0x5a, sizeof(data));
	memset(&opts, 0, sizeof(opts));
	if (image_load_buffer(&set, "app.bin", 0x10000, data, sizeof(data),
	    &opts, &cause) != 0) {
		tap_ok(0, "image_load_buffer: %s", cause);
		free(cause);
		return;
	}
	test_progress(&p, JOB_ST_VERIFIED, "");
	flog_unit_from_job(&u, "/dev/ttyACM3", &p, set, 0);
	line = flog_unit_json(&u);
	o = json_tokener_parse(line);
	tap_ok(o != NULL && line[strlen(line) - 1] == '\n' &&
	    strchr(line, '\n') == line + strlen(line) - 1,
	    "a record is one line of valid JSON");
	tap_ok(strlen(test_str(o, "time")) == 20 &&
	    test_str(o, "time")[10] == 'T' && test_str(o, "time")[19] == 'Z',
	    "time is ISO 8601 UTC (%s)", test_str(o, "time"));
	is_str(test_str(o, "result"), "verified", "result verified");
	is_str(test_str(o, "port"), "/dev/ttyACM3", "port");
	is_str(test_str(o, "chip"), "ESP32-S2FNR2", "chip");
	is_str(test_str(o, "mac"), "7c:df:a1:00:11:22", "MAC");
	tap_ok(test_int(o, "flash_size") == 4 << 20, "flash size");
	is_str(test_str(o, "revision"), "v1.0", "revision from the job");
	is_str(test_str(o, "flash_id"), "0x1640c8", "flash JEDEC id");
	tap_ok(test_int(o, "crystal_mhz") == 40, "crystal 40 MHz");
	is_str(test_str(o, "security"), "none", "security flags in words");
	is_str(test_str(o, "loader"), "rom", "written by the ROM loader");
	is_str(test_str(o, "image"), "app.bin", "image name");
	is_str(test_str(o, "image_sha256"), set->regions[0].sha256hex,
	    "image sha256: one file's, as sha256sum prints it");
	tap_ok(json_object_object_get_ex(o, "regions", &regs) &&
	    json_object_array_length(regs) == 1, "one region");
	r = json_object_array_get_idx(regs, 0);
	is_str(test_str(r, "offset"), "0x10000", "region offset");
	tap_ok(test_int(r, "size") == 8192, "region size");
	is_str(test_str(r, "md5"), set->regions[0].md5hex, "region md5");
	is_str(test_str(r, "sha256"), set->regions[0].sha256hex,
	    "region sha256");
	tap_ok(test_int(o, "bytes") == 8192 &&
	    test_int(o, "bytes_total") == 8192, "bytes written and total");
	tap_ok(test_int(o, "compressed_bytes") == (int64_t)set->total_zlen &&
	    set->total_zlen > 0, "compressed bytes");
	tap_ok(json_object_get_double(json_object_object_get(o, "seconds")) ==
	    2.5, "duration 2.5 s");
	tap_ok(!json_object_object_get_ex(o, "reason", NULL),
	    "no reason when verified");
	json_object_put(o);
	free(line);

	test_progress(&p, JOB_ST_FAILED, "region 1/1 at 0x10000: "
	    "FLASH_DEFL_DATA: ROM status 0x07 checksum error\033]0;pwn\007");
	flog_unit_from_job(&u, "/dev/ttyACM3", &p, set, 0);
	snprintf(u.boot, sizeof(u.boot), "booted: ESPHome 2023.6.3");
	snprintf(u.location, sizeof(u.location), "1-1.2");
	snprintf(u.usb_serial, sizeof(u.usb_serial), "AB\033[2J");
	snprintf(u.revision, sizeof(u.revision), "v0.0");
	line = flog_unit_json(&u);
	o = json_tokener_parse(line);
	tap_ok(o != NULL, "failed record parses");
	is_str(test_str(o, "result"), "failed", "result failed");
	tap_ok(strstr(test_str(o, "reason"), "checksum error") != NULL,
	    "reason kept");
	tap_ok(strchr(line, '\033') == NULL && strchr(line, '\007') == NULL &&
	    strstr(test_str(o, "reason"), "\\x1b]0;pwn\\x07") != NULL,
	    "control characters are escaped (%s)", test_str(o, "reason"));
	is_str(test_str(o, "usb_serial"), "AB\\x1b[2J", "USB serial escaped");
	is_str(test_str(o, "rom_status"), "0x07 INVALID_CRC",
	    "ROM status from the failed reply");
	is_str(test_str(o, "boot"), "booted: ESPHome 2023.6.3", "boot check");
	is_str(test_str(o, "location"), "1-1.2", "physical location");
	is_str(test_str(o, "revision"), "v0.0", "revision");
	json_object_put(o);
	free(line);

	test_progress(&p, JOB_ST_CANCELLED, "");
	flog_unit_from_job(&u, "p", &p, set, 1);
	is_str(flog_result_name(u.result), "interrupted",
	    "a job stopped by a signal is interrupted");
	flog_unit_from_job(&u, "p", &p, set, 0);
	is_str(flog_result_name(u.result), "cancelled",
	    "a job stopped by the operator is cancelled");
	image_free(set);
}

/* File and directory modes, two appends, symlink and FIFO refused. */
static void
test_file(void)
{
	struct flog	*f = NULL;
	struct flog_unit u;
	struct stat	 st;
	char		*path, *dir, *link, *fifo, *cause = NULL;
	struct json_object *o;
	const char	*glued;
	int		 error, lines, bad, foreign, fd, ours;
	mode_t		 old;

	old = umask(0);
	dir = xasprintf("%s/state/espfleet", test_dir);
	path = xasprintf("%s/units.jsonl", dir);
	setenv("XDG_STATE_HOME", "relative/ignored", 1);
	setenv("HOME", test_dir, 1);
	error = flog_state_path(&link, "units.jsonl", &cause);
	tap_ok(error == 0 && strcmp(link, test_dir) > 0 &&
	    strstr(link, "/.local/state/espfleet/units.jsonl") != NULL,
	    "a relative XDG_STATE_HOME is ignored: %s", link);
	free(link);
	setenv("XDG_STATE_HOME", test_dir, 1);
	unsetenv("HOME");
	error = flog_state_path(&link, "", &cause);
	tap_ok(error == 0 && strncmp(link, test_dir, strlen(test_dir)) == 0,
	    "XDG_STATE_HOME is used: %s", link);
	free(link);
	link = xasprintf("%s/state", test_dir);
	setenv("XDG_STATE_HOME", link, 1);
	free(link);
	error = flog_open(&f, NULL, &cause);
	tap_ok(error == 0, "default record file opens (%s)",
	    error == 0 ? flog_path(f) : cause);
	tap_ok(error == 0 && strcmp(flog_path(f), path) == 0,
	    "default path is $XDG_STATE_HOME/espfleet/units.jsonl");
	memset(&st, 0, sizeof(st));
	(void)stat(dir, &st);
	tap_ok((st.st_mode & 07777) == 0700,
	    "its directory was created 0700 (%o)", st.st_mode & 07777);
	memset(&st, 0, sizeof(st));
	(void)stat(path, &st);
	tap_ok(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600,
	    "the file was created 0600 under umask 0 (%o)",
	    st.st_mode & 07777);
	memset(&u, 0, sizeof(u));
	snprintf(u.reason, sizeof(u.reason), "child 0");
	u.result = FLOG_FAILED;
	tap_ok(error == 0 && flog_append_job(f, &u, &cause) == 0 &&
	    flog_append_job(f, &u, &cause) == 0, "two records appended");
	flog_close(f);
	lines = test_check_file(path, &bad, &foreign, &ours);
	tap_ok(lines == 2 && bad == 0 && foreign == 0 &&
	    test_count_lines(path) == 2, "the file holds two whole lines");
	umask(old);

	/* A writer killed mid-record left a fragment: start a new line. */
	fd = open(path, O_WRONLY | O_APPEND);
	if (fd == -1 || write(fd, "{\"time\":\"20", 11) != 11)
		tap_diag("cannot plant a fragment: %s", strerror(errno));
	if (fd != -1)
		close(fd);
	cause = NULL;
	error = flog_open(&f, path, &cause);
	tap_ok(error == 0 && flog_append_job(f, &u, &cause) == 0,
	    "append after a cut record");
	flog_close(f);
	lines = test_check_file(path, &bad, &foreign, &ours);
	tap_ok(lines == 3 && bad == 1 && test_count_lines(path) == 4,
	    "the cut record stays alone on its line, the new one is whole "
	    "(%d records, %d damaged)", lines, bad);
	glued = "{\"time\":\"2026-{\"time\":\"x\"}\n";
	o = flog_parse_line(glued, strlen(glued), &bad);
	tap_ok(o != NULL && bad == 1 && strcmp(test_str(o, "time"), "x") == 0,
	    "a cut record glued to a whole one gives the whole one");
	json_object_put(o);
	o = flog_parse_line("garbage\n", strlen("garbage\n"), &bad);
	tap_ok(o == NULL && bad == 1, "garbage gives nothing");

	link = xasprintf("%s/link.jsonl", test_dir);
	if (symlink(path, link) != 0)
		tap_diag("symlink: %s", strerror(errno));
	cause = NULL;
	error = flog_open(&f, link, &cause);
	tap_ok(error == -ELOOP && cause != NULL &&
	    strstr(cause, "symbolic link") != NULL,
	    "a symlinked record file is refused: %s", cause ? cause : "");
	free(cause);
	lines = test_check_file(path, &bad, &foreign, &ours);
	tap_ok(lines == 3, "the link's target is untouched");

	fifo = xasprintf("%s/fifo", test_dir);
	(void)mkfifo(fifo, 0600);
	cause = NULL;
	error = flog_open(&f, fifo, &cause);
	tap_ok(error == -EINVAL && cause != NULL &&
	    strstr(cause, "not a regular file") != NULL,
	    "a FIFO is refused at once: %s", cause ? cause : "");
	free(cause);
	free(fifo);
	free(link);
	free(path);
	free(dir);
}

/* Remove the scratch directory. */
static void
test_cleanup(void)
{
	char	*cmd;

	cmd = xasprintf("rm -rf '%s'", test_dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", test_dir);
	free(cmd);
}

int
main(void)
{
	if (mkdtemp(test_dir) == NULL)
		tap_skip_all("mkdtemp failed");
	signal(SIGPIPE, SIG_IGN);
	test_fields();
	test_file();
	test_concurrent();
	test_cleanup();
	return (tap_done());
}
