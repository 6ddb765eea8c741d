/*
 * The bench controller (espfleet's default command): the main thread's
 * poll() loop over the keyboard, the udev monitor (or the simulated
 * fleet's timeline), the jobs' wake eventfd and the signal self-pipe.
 *
 *	port events  -> registry -> actions -> jobs (one worker each)
 *	job snapshots (on a wake) -> registry -> TUI (throttled frames)
 *	keys -> TUI -> commands -> registry
 *
 * Workers never see the registry or curses; they publish snapshots that
 * this loop copies in.  Signal handlers only set a flag and write a byte.
 */
#include "config.h"

#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench-private.h"
#include "chip.h"
#include "demo.h"
#include "emu.h"
#include "flog.h"
#include "hotplug.h"
#include "image.h"
#include "job.h"
#include "jobfile.h"
#include "registry.h"
#include "sim.h"
#include "sigwake.h"
#include "simfleet.h"
#include "transport.h"
#include "ui.h"
#include "util.h"

#define BENCH_EXIT_USAGE	2
#define BENCH_TOTAL_MAX		1000000	/* --total */

static const struct option bench_options[] = {
	{ "auto", no_argument, NULL, 'a' },
	{ "exit-when-done", no_argument, NULL, 'x' },
	{ "fault", required_argument, NULL, 'F' },
	{ "help", no_argument, NULL, 'h' },
	{ "job", required_argument, NULL, 'J' },
	{ "lock", no_argument, NULL, 'K' },
	{ "log", required_argument, NULL, 'L' },
	{ "match", required_argument, NULL, 'm' },
	{ "no-auto", no_argument, NULL, 'n' },
	{ "no-log", no_argument, NULL, 'N' },
	{ "profile", required_argument, NULL, 'P' },
	{ "retries", required_argument, NULL, 'r' },
	{ "seed", required_argument, NULL, 's' },
	{ "simulate", required_argument, NULL, 'S' },
	{ "total", required_argument, NULL, 't' },
	{ "trace", required_argument, NULL, 'T' },
	{ NULL, 0, NULL, 0 }
};

/* The synopsis of the default command. */
static void
bench_usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet [--auto | --no-auto] [--match VID:PID]... "
	    "[--trace FILE]\n"
	    "                [--log FILE | --no-log] [--retries N] "
	    "(IMAGE | OFFSET FILE... | --job FILE [--lock])\n"
	    "       espfleet --simulate N [--profile fast|realistic] "
	    "[--seed N]\n"
	    "                [--fault SPEC | --fault none] "
	    "[--exit-when-done] [--no-auto]\n"
	    "                [--total N] [--trace FILE] "
	    "[IMAGE | OFFSET FILE...]\n");
}

/* A usage or input problem, said plainly. */
static void printflike(1, 2)
bench_bad(const char *fmt, ...)
{
	va_list	ap;

	fputs("espfleet: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* =============================== Trace ================================ */

/* One trace line: monotonic microseconds, an event, a slot, a detail. */
void
bench_trace(struct bench *b, const char *what, int slot, const char *detail)
{
	if (b->trace == NULL)
		return;
	fprintf(b->trace, "%llu %s %d %s\n",
	    (unsigned long long)util_now_us(), what, slot,
	    detail != NULL ? detail : "-");
}

/* The UI's frames and watched rows, for the trace. */
static void
bench_trace_cb(void *arg, const char *what, int n)
{
	struct bench	*b = arg;

	if (strcmp(what, "shown") == 0)
		bench_trace(b, "shown", n + 1, NULL);
	else
		bench_trace(b, what, n, NULL);
}

/* ============================ Row extras ============================== */

/* The extras of row (grown as rows appear). */
struct bench_row *
bench_row(struct bench *b, int row)
{
	if (row >= b->nrows) {
		b->rows = xrealloc(b->rows, (size_t)(row + 1) *
		    sizeof(*b->rows));
		memset(b->rows + b->nrows, 0, (size_t)(row + 1 - b->nrows) *
		    sizeof(*b->rows));
		b->nrows = row + 1;
	}
	return (&b->rows[row]);
}

/* Fill the details view's extras for a row. */
static void
bench_detail_cb(void *arg, int row, struct ui_detail *d)
{
	struct bench			*b = arg;
	const struct port_info		*pi;
	const struct job_progress	*p;
	struct bench_row		*r;
	int				 k;

	r = bench_row(b, row);
	p = &r->last;
	d->flash_size = p->flash_size;
	d->flash_id = p->flash_id;
	/* A row no job has identified yet has no revision. */
	d->rev_major = p->chip[0] != '\0' ? p->rev_major : -1;
	d->rev_minor = p->chip[0] != '\0' ? p->rev_minor : -1;
	d->crystal_mhz = p->crystal_mhz;
	d->stub = p->stub;
	snprintf(d->security, sizeof(d->security), "%s", p->security);
	snprintf(d->how, sizeof(d->how), "%s", p->how);
	snprintf(d->phase, sizeof(d->phase), "%s", r->phase);
	snprintf(d->note, sizeof(d->note), "%s", p->note);
	snprintf(d->error, sizeof(d->error), "%s", r->error);
	snprintf(d->boot, sizeof(d->boot), "%s", p->boot);
	if (b->sf != NULL && (pi = reg_row_port(b->reg, row)) != NULL &&
	    (k = simfleet_find(b->sf, pi->location)) != -1)
		simfleet_describe(b->sf, k, d->sim, sizeof(d->sim));
}

/* ============================== Warnings ============================== */

/* Log a warning and show it in the message line. */
void printflike(3, 4)
bench_warn(struct bench *b, uint64_t now, const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	reg_log(b->reg, now, "warning: %s", buf);
	ui_message(b->ui, now, "warning: %s", buf);
}

/* Whether a process with this command name runs (from /proc/PID/comm). */
static int
bench_running(const char *comm)
{
	DIR		*d;
	struct dirent	*e;
	FILE		*f;
	char		 path[300], name[64];
	size_t		 len;
	int		 found = 0;

	if ((d = opendir("/proc")) == NULL)
		return (0);
	while (!found && (e = readdir(d)) != NULL) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(name, sizeof(name), f) != NULL) {
			len = strcspn(name, "\n");
			name[len] = '\0';
			found = strcmp(name, comm) == 0;
		}
		fclose(f);
	}
	closedir(d);
	return (found);
}

/* Once at start: what is known to steal serial ports on Linux. */
static void
bench_warn_stealers(struct bench *b, uint64_t now)
{
	if (bench_running("ModemManager"))
		bench_warn(b, now, "ModemManager is running: it probes new "
		    "ttyACM ports and can hold them for seconds; stop it "
		    "(systemctl stop ModemManager) or tag the ports "
		    "ID_MM_DEVICE_IGNORE=1 in a udev rule");
	if (bench_running("brltty"))
		bench_warn(b, now, "brltty is running: it grabs CH340 and "
		    "CP210x USB-serial bridges as braille displays; remove "
		    "it or disable its udev rules");
}

/* A new port: warn if another program has it open or locked. */
static void
bench_check_holder(struct bench *b, int row, const struct port_info *pi,
    uint64_t now)
{
	struct bench_row	*r = bench_row(b, row);
	char			 who[128];
	int			 pid;

	if ((pid = xport_holder(pi->devnode, who, sizeof(who))) == -1 ||
	    pid == (int)getpid())
		return;
	if (strcmp(r->holder, who) == 0)
		return;		/* said once already */
	snprintf(r->holder, sizeof(r->holder), "%s", who);
	bench_warn(b, now, "slot %d: %s is open in another program (%s); "
	    "close it, or flashing fails with \"in use\"", row + 1,
	    pi->devnode, who);
}

/* ============================= Port events ============================ */

/* An add or remove from udev or the simulated fleet. */
static void
bench_port_cb(enum hotplug_action action, const struct port_info *pi,
    void *arg)
{
	struct bench	*b = arg;
	uint64_t	 now = util_now_ms();
	int		 row;

	if (action == HOTPLUG_ADD) {
		(void)reg_port_added(b->reg, pi, now);
		if ((row = reg_find(b->reg, pi->location)) < 0)
			return;
		bench_trace(b, "add", row + 1, pi->kind == USB_KIND_S2_ROM ?
		    "rom" : pi->kind == USB_KIND_APP_CDC ? "app" : "other");
		if (b->trace != NULL)
			ui_watch(b->ui, row, reg_row_gen(b->reg, row));
		if (b->sf == NULL)
			bench_check_holder(b, row, pi, now);
	} else {
		(void)reg_port_removed(b->reg, pi, now);
		if ((row = reg_find(b->reg, pi->location)) >= 0)
			bench_trace(b, "remove", row + 1, NULL);
	}
	ui_poke(b->ui, 1);
}

/* ============================== Commands ============================== */

/* Run a command from a key on its rows. */
static void
bench_command(struct bench *b, enum ui_cmd cmd, uint64_t now)
{
	const struct port_info	*pi;
	char			*cause;
	int			*rows, n, i, ok = 0, error;

	if (cmd == UI_CMD_QUIT) {
		b->quit = 1;
		return;
	}
	if (cmd == UI_CMD_AUTO && b->locked) {
		ui_message(b->ui, now, "locked by the job file: auto-flash "
		    "stays %s (%s)", reg_get_auto(b->reg) ? "armed" :
		    "disarmed", b->jf.path);
		return;
	}
	if (cmd == UI_CMD_AUTO) {
		if (reg_get_auto(b->reg)) {
			reg_set_auto(b->reg, 0, now);
			ui_message(b->ui, now, "auto-flash disarmed");
		} else {
			n = reg_set_auto(b->reg, 1, now);
			ui_message(b->ui, now, "auto-flash armed: units in "
			    "download mode are flashed (%d queued now)", n);
		}
		return;
	}
	n = (int)ui_targets(b->ui, b->reg, cmd, &rows);
	if (n == 0) {
		ui_message(b->ui, now, cmd == UI_CMD_RETRY ?
		    "no failed slot to retry" : "no slot to act on yet");
		free(rows);
		return;
	}
	for (i = 0; i < n; i++) {
		cause = NULL;
		switch (cmd) {
		case UI_CMD_FLASH:
		case UI_CMD_RETRY:
			error = reg_flash(b->reg, rows[i], 0, now, &cause);
			break;
		case UI_CMD_CANCEL:
			error = reg_cancel(b->reg, rows[i], now, &cause);
			break;
		case UI_CMD_BOOT:
			pi = reg_row_port(b->reg, rows[i]);
			error = pi == NULL ? -ENOENT : simfleet_boot(b->sf,
			    pi->location, now, &cause);
			if (error != 0 && cause != NULL) {
				char *msg = xasprintf("slot %d: %s",
				    rows[i] + 1, cause);

				free(cause);
				cause = msg;
			}
			break;
		default:
			error = -EINVAL;
			break;
		}
		if (error < 0 && cause != NULL)
			ui_message(b->ui, now, "%s", cause);
		else if (error >= 0)
			ok++;
		free(cause);
	}
	if (ok > 0 && n > 1)
		ui_message(b->ui, now, "%d of %d slots: done as asked", ok, n);
	free(rows);
}

/* ================================ Loop ================================ */

/* Whether --exit-when-done may end the run now. */
static int
bench_finished(struct bench *b)
{
	struct reg_counts	c;

	if (!b->exit_when_done || b->sf == NULL || b->njobs > 0 ||
	    simfleet_pending(b->sf) > 0)
		return (0);
	reg_get_counts(b->reg, &c);
	return (c.active == 0 && c.waiting == 0 && c.idle == 0 &&
	    c.done + c.failed >= b->sim_units);
}

/* The poll loop; returns the signal that ended it, or 0. */
static int
bench_loop(struct bench *b)
{
	struct pollfd	 pfd[4];
	enum ui_cmd	 cmd;
	uint64_t	 now, next, due;
	int		 timeout, n;

	for (;;) {
		now = util_now_ms();
		next = b->sf != NULL ? simfleet_tick(b->sf, now) : UINT64_MAX;
		bench_job_actions(b, now);
		bench_job_collect(b, now);
		bench_job_actions(b, now);
		if (b->quit || bench_finished(b))
			break;
		due = ui_due(b->ui, b->reg, now);
		if (due <= now) {
			ui_draw(b->ui, b->reg, now);
			due = ui_due(b->ui, b->reg, now);
		}
		next = MINIMUM(next, due);
		if (next == UINT64_MAX)
			timeout = -1;
		else
			timeout = next <= now ? 0 : (int)MINIMUM(next - now,
			    60000);

		pfd[0].fd = STDIN_FILENO;
		pfd[1].fd = sigwake_fd();
		pfd[2].fd = b->wake_fd;
		pfd[3].fd = b->hp != NULL ? hotplug_fd(b->hp) : -1;
		for (n = 0; n < 4; n++) {
			pfd[n].events = POLLIN;
			pfd[n].revents = 0;
		}
		if (poll(pfd, 4, timeout) == -1 && errno != EINTR)
			fatalx("poll: %s", strerror(errno));
		if (pfd[1].revents & POLLIN)
			(void)sigwake_drain();
		if (sigwake_caught())
			return (sigwake_caught());
		now = util_now_ms();
		/*
		 * Keys, and also a resize: ncurses' SIGWINCH handler only sets
		 * a flag (poll returns EINTR) that getch() turns into
		 * KEY_RESIZE, so input is read after every wake-up.
		 */
		while ((cmd = ui_input(b->ui, b->reg, now)) != UI_CMD_NONE)
			bench_command(b, cmd, now);
		if (pfd[0].revents & (POLLHUP | POLLERR))
			return (SIGHUP);	/* the terminal went away */
		if (pfd[2].revents & POLLIN)
			job_wake_drain(b->wake_fd);
		if (pfd[3].revents & POLLIN)
			(void)hotplug_dispatch(b->hp);
	}
	/* The last frame shows how it ended. */
	ui_poke(b->ui, 1);
	ui_draw(b->ui, b->reg, util_now_ms());
	return (0);
}

/* One line per slot after the screen is given back, and the totals. */
static int
bench_summary(struct bench *b)
{
	struct reg_snapshot	s;
	struct reg_counts	c;
	char			t[32];
	int			i;

	reg_get_counts(b->reg, &c);
	for (i = 0; i < reg_count(b->reg); i++) {
		reg_snapshot(b->reg, i, util_now_ms(), &s);
		snprintf(t, sizeof(t), "%.1f s", (double)s.elapsed_ms / 1000.0);
		/* A failure's whole reason: the registry keeps a short one. */
		if (s.state == REG_ST_FAILED && i < b->nrows &&
		    b->rows[i].error[0] != '\0')
			printf("slot %d %s %s: failed: %s%s%s\n", s.slot,
			    s.location, s.has_mac ? s.mac_text : "-",
			    b->rows[i].error, s.t_started != 0 ? ", " : "",
			    s.t_started != 0 ? t : "");
		else
			printf("slot %d %s %s: %s%s%s\n", s.slot, s.location,
			    s.has_mac ? s.mac_text : "-", s.state_text,
			    s.t_started != 0 ? ", " : "",
			    s.t_started != 0 ? t : "");
	}
	printf("%u done, %u failed\n", c.done, c.failed);
	if (c.jobs_done + c.jobs_failed > c.done + c.failed)
		printf("this session: %u verified, %u failed (units unplugged "
		    "since included)\n", c.jobs_done, c.jobs_failed);
	fflush(stdout);
	return (c.failed > 0 ? 1 : 0);
}

/* ============================== Set-up ================================ */

/* "name" for one file, "N files" for a set. */
static char *
bench_image_name(const struct image_set *set, int demo)
{
	const char	*p;

	if (demo)
		return (xstrdup(DEMO_NAME));
	if (set->nregions == 1) {
		p = strrchr(set->regions[0].name, '/');
		return (xstrdup(p != NULL && p[1] != '\0' ? p + 1 :
		    set->regions[0].name));
	}
	return (xasprintf("%zu files", set->nregions));
}

/*
 * Load the job file: its policy settings must not be given again on the
 * command line.  *argv gets the OFFSET FILE pairs for image_load().
 */
static int
bench_load_job(struct bench *b, const char *path, int auto_on, int retries,
    char ***argv, char **cause)
{
	int	error;

	if ((error = jobfile_load(path, &b->jf, cause)) != 0)
		return (error);
	if (b->jf.has_auto && auto_on != -1) {
		*cause = xasprintf("the job file %s fixes \"auto\"; leave out "
		    "--%s", path, auto_on ? "auto" : "no-auto");
		return (-EINVAL);
	}
	if (b->jf.has_retries && retries != -1) {
		*cause = xasprintf("the job file %s fixes \"retries\" (%u); "
		    "leave out --retries", path, b->jf.retries);
		return (-EINVAL);
	}
	if (b->jf.boot_check != NULL && b->jf.has_after &&
	    b->jf.after == LOADER_AFTER_STAY) {
		*cause = xasprintf("the job file %s asks for a boot check with "
		    "\"after\": \"stay\"; a unit that stays in download mode "
		    "never boots: use \"reboot\" or drop \"boot_check\"",
		    path);
		return (-EINVAL);
	}
	(void)jobfile_argv(&b->jf, argv);
	return (0);
}

/*
 * The images as loaded must still be the ones the job file names (a file
 * replaced between the job file's check and image_load is caught here).
 */
static int
bench_job_images(struct bench *b, char **cause)
{
	const struct image_region	*r;
	size_t				 i, k;

	for (i = 0; i < b->jf.nimages; i++) {
		for (k = 0; k < b->set->nregions; k++) {
			r = &b->set->regions[k];
			if (r->offset == b->jf.images[i].offset)
				break;
		}
		if (k == b->set->nregions) {
			*cause = xasprintf("%s: no image was loaded at %s",
			    b->jf.path, b->jf.images[i].offset_text);
			return (-EINVAL);
		}
		if (strcmp(r->sha256hex, b->jf.images[i].sha256) != 0) {
			*cause = xasprintf("%s changed since the job was "
			    "written: sha256 is %s, the job says %s",
			    r->name, r->sha256hex, b->jf.images[i].sha256);
			return (-EBADMSG);
		}
	}
	return (0);
}

/* Start the simulated fleet. */
static int
bench_start_sim(struct bench *b, struct simfleet_config *cfg, char **cause)
{
	if ((b->sf = simfleet_new(cfg, bench_port_cb, b, cause)) == NULL)
		return (-EINVAL);
	return (simfleet_start(b->sf, util_now_ms(), cause));
}

/* Start watching udev. */
static int
bench_start_udev(struct bench *b, char **matches, size_t nmatches,
    char **cause)
{
	size_t	i;
	int	error;

	b->hp = hotplug_new(bench_port_cb, b);
	for (i = 0; i < nmatches; i++) {
		if ((error = hotplug_add_match(b->hp, matches[i], cause)) != 0)
			return (error);
	}
	return (hotplug_start(b->hp, cause));
}

/* espfleet [options] [IMAGE | OFFSET FILE...]. */
int
bench_main(int argc, char **argv)
{
	struct bench		 b;
	struct simfleet_config	 sc;
	struct image_load_opts	 opts;
	struct ui_info		 info;
	struct emu_fault	*faults = NULL;
	char			**matches = NULL, *cause = NULL, *name = NULL;
	char			*mode = NULL, *trace_path = NULL, *more;
	char			*log_path = NULL, *log_warning = NULL;
	char			*job_path = NULL, **job_argv = NULL;
	char			 job_name[128];
	size_t			 nmatches = 0, nfaults = 0;
	long long		 v;
	uint16_t		 vid, pid;
	size_t			 i;
	int			 ch, status = BENCH_EXIT_USAGE, auto_on = -1;
	int			 any_pid, retries = -1;
	int			 sig = 0, sim_only = 0, ui_up = 0, no_log = 0;

	memset(&b, 0, sizeof(b));
	memset(&sc, 0, sizeof(sc));
	b.wake_fd = -1;
	sc.profile = EMU_PROFILE_REALISTIC;
	sc.seed = 1;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "h", bench_options,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			auto_on = 1;
			break;
		case 'n':
			auto_on = 0;
			break;
		case 'J':
			job_path = optarg;
			break;
		case 'K':
			b.locked = 1;
			break;
		case 'L':
			log_path = optarg;
			break;
		case 'N':
			no_log = 1;
			break;
		case 'x':
			b.exit_when_done = sim_only = 1;
			break;
		case 'F':
			sim_only = 1;
			if (strcmp(optarg, "none") == 0) {
				sc.fault = SIMFLEET_FAULT_NONE;
				break;
			}
			faults = xrealloc(faults, (nfaults + 1) *
			    sizeof(*faults));
			if (emu_fault_parse(optarg, &faults[nfaults],
			    &cause) != 0) {
				bench_bad("%s", cause);
				goto usage;
			}
			nfaults++;
			sc.fault = SIMFLEET_FAULT_GIVEN;
			break;
		case 'h':
			bench_usage(stdout);
			status = 0;
			goto out;
		case 'm':
			if (hotplug_parse_vidpid(optarg, &vid, &pid,
			    &any_pid) != 0) {
				bench_bad("--match takes VID:PID in hexadecimal "
				    "(303a:0002, or 303a:* for any product of a "
				    "vendor), not \"%s\"", optarg);
				goto usage;
			}
			matches = xrealloc(matches, (nmatches + 1) *
			    sizeof(*matches));
			matches[nmatches++] = optarg;
			break;
		case 'P':
			sim_only = 1;
			if (strcmp(optarg, "fast") == 0)
				sc.profile = EMU_PROFILE_FAST;
			else if (strcmp(optarg, "realistic") == 0)
				sc.profile = EMU_PROFILE_REALISTIC;
			else {
				bench_bad("--profile takes fast or realistic, "
				    "not \"%s\"", optarg);
				goto usage;
			}
			break;
		case 's':
			if ((v = util_number(optarg, 0, INT64_MAX)) < 0) {
				bench_bad("--seed takes a number, not \"%s\"",
				    optarg);
				goto usage;
			}
			sc.seed = (uint64_t)v;
			sim_only = 1;
			break;
		case 'S':
			if ((v = util_number(optarg, 1, SIM_MAX_UNITS)) < 0) {
				bench_bad("--simulate takes a number of units "
				    "from 1 to %d, not \"%s\"", SIM_MAX_UNITS,
				    optarg);
				goto usage;
			}
			sc.units = (unsigned)v;
			break;
		case 't':
			if ((v = util_number(optarg, 1, BENCH_TOTAL_MAX)) <
			    0) {
				bench_bad("--total takes a number of units from "
				    "1 to %d, not \"%s\"", BENCH_TOTAL_MAX,
				    optarg);
				goto usage;
			}
			sc.total = (unsigned)v;
			sim_only = 1;
			break;
		case 'T':
			trace_path = optarg;
			break;
		case 'r':
			if ((v = util_number(optarg, 0, JOB_RETRIES_MAX)) <
			    0) {
				bench_bad("--retries takes a number of attempts "
				    "after a transient failure, 0 to %d, not "
				    "\"%s\"", JOB_RETRIES_MAX, optarg);
				goto usage;
			}
			retries = (int)v;
			break;
		default:
			bench_bad("unknown option \"%s\"", argv[optind - 1]);
			goto usage;
		}
	}
	argc -= optind;
	argv += optind;
	if (sc.units == 0 && sim_only) {
		bench_bad("--exit-when-done, --fault, --profile, --seed and "
		    "--total only apply to --simulate N");
		goto usage;
	}
	if (sc.total != 0 && sc.total < sc.units) {
		bench_bad("--total %u is fewer units than the %u simulated "
		    "slots: give at least %u", sc.total, sc.units, sc.units);
		goto usage;
	}
	for (i = 0; i < nfaults; i++) {
		if (faults[i].unit >= (int)sc.units) {
			bench_bad("--fault names unit=%d, but the simulated "
			    "units are numbered 0 to %u", faults[i].unit,
			    sc.units - 1);
			goto usage;
		}
	}
	if (b.locked && job_path == NULL) {
		bench_bad("--lock keeps the job of a job file: it needs "
		    "--job FILE");
		goto usage;
	}
	if (job_path != NULL && argc > 0) {
		bench_bad("--job FILE names the images; give no IMAGE or "
		    "OFFSET FILE as well");
		goto usage;
	}
	if (log_path != NULL && no_log) {
		bench_bad("--log and --no-log do not go together");
		goto usage;
	}
	if (sc.units > 0 && nmatches > 0) {
		bench_bad("--match chooses real ports; it does not apply to "
		    "--simulate");
		goto usage;
	}
	if (sc.units == 0 && argc == 0 && job_path == NULL) {
		bench_bad("no firmware given: name a file, or OFFSET FILE "
		    "pairs (e.g. 0x0 factory.bin); or try --simulate 4");
		goto usage;
	}

	setlocale(LC_ALL, "");
	memset(&opts, 0, sizeof(opts));
	if (job_path != NULL) {
		if (bench_load_job(&b, job_path, auto_on, retries, &job_argv,
		    &cause) != 0) {
			bench_bad("%s", cause);
			goto out;
		}
		if (b.jf.chip != NULL)
			opts.chip = chip_by_name(b.jf.chip);
		if (b.jf.has_auto)
			auto_on = b.jf.auto_on;
		if (image_load(&b.set, (int)(b.jf.nimages * 2), job_argv,
		    &opts, &cause) != 0 ||
		    bench_job_images(&b, &cause) != 0) {
			bench_bad("%s", cause);
			goto out;
		}
	} else if (argc > 0) {
		if (image_load(&b.set, argc, argv, &opts, &cause) != 0) {
			bench_bad("%s", cause);
			goto out;
		}
	} else if (demo_load(&b.set, &cause) != 0) {
		bench_bad("cannot build the demo image: %s", cause);
		status = 1;
		goto out;
	}
	if (trace_path != NULL && (b.trace = fopen(trace_path, "we")) ==
	    NULL) {
		bench_bad("cannot write the trace file %s: %s", trace_path,
		    strerror(errno));
		goto out;
	}
	if (b.trace != NULL)
		setvbuf(b.trace, NULL, _IOLBF, 0);
	/* A --log that cannot be used is bad input; the default, a warning. */
	if (!no_log && flog_open(&b.flog, log_path, &cause) != 0) {
		if (log_path != NULL) {
			bench_bad("%s", cause);
			goto out;
		}
		log_warning = xasprintf("no unit records are kept: %s "
		    "(--log PATH or --no-log)", cause);
		free(cause);
		cause = NULL;
	}

	status = 1;
	b.reg = reg_new();
	b.sim_units = sc.units;
	b.params.set = b.set;
	b.params.after = b.jf.has_after ? b.jf.after : LOADER_AFTER_REBOOT;
	/* --retries, else the job file's, else as "espfleet flash". */
	b.params.retries = retries != -1 ? (unsigned)retries :
	    b.jf.has_retries ? b.jf.retries : JOB_RETRIES_DEFAULT;
	if ((b.wake_fd = job_wake_open()) < 0) {
		bench_bad("eventfd: %s", strerror(-b.wake_fd));
		goto out;
	}
	if (sigwake_install() != 0) {
		bench_bad("pipe: %s", strerror(errno));
		goto out;
	}

	name = bench_image_name(b.set, argc == 0 && job_path == NULL);
	if (sc.units > 0)
		mode = xasprintf("%u simulated units, %s profile", sc.units,
		    emu_profile_name(sc.profile));
	else if (nmatches == 0)
		mode = xstrdup("watching every USB serial port");
	else {
		mode = xstrdup("watching");
		for (i = 0; i < nmatches; i++) {
			more = xasprintf("%s %s", mode, matches[i]);
			free(mode);
			mode = more;
		}
	}
	memset(&info, 0, sizeof(info));
	info.image_name = name;
	info.image_size = b.set->total_len;
	info.sha256 = b.set->sha256hex;
	info.simulate = sc.units;
	info.mode = mode;
	if (job_path != NULL) {
		(void)util_sanitize(job_name, sizeof(job_name), b.jf.name[0] !=
		    '\0' ? b.jf.name : "job", strlen(b.jf.name[0] != '\0' ?
		    b.jf.name : "job"));
		info.job_name = job_name;
		info.locked = b.locked;
	}
	b.ui = ui_new(&info);
	ui_set_detail(b.ui, bench_detail_cb, &b);
	if (b.trace != NULL)
		ui_set_trace(b.ui, bench_trace_cb, &b);
	bench_trace(&b, "start", 0, NULL);
	if (ui_start(b.ui, &cause) != 0) {
		bench_bad("%s", cause);
		status = BENCH_EXIT_USAGE;
		goto out;
	}
	ui_up = 1;

	if (log_warning != NULL)
		bench_warn(&b, util_now_ms(), "%s", log_warning);

	/* Auto-flash: on by default when simulating, off on a real bench. */
	if (auto_on == -1)
		auto_on = sc.units > 0;
	if (auto_on)
		reg_set_auto(b.reg, 1, util_now_ms());
	if (sc.units > 0) {
		sc.faults = faults;
		sc.nfaults = nfaults;
		if (bench_start_sim(&b, &sc, &cause) != 0)
			goto fail;
	} else {
		bench_warn_stealers(&b, util_now_ms());
		if (bench_start_udev(&b, matches, nmatches, &cause) != 0)
			goto fail;
	}

	sig = bench_loop(&b);
	b.interrupted = sig != 0 || b.quit;
	bench_job_cancel_all(&b);
	simfleet_free(b.sf);
	b.sf = NULL;
	ui_stop(b.ui);
	ui_up = 0;
	status = bench_summary(&b);
	if (sig != 0) {
		fprintf(stderr, "espfleet: stopped by signal %d; every job was "
		    "cancelled\n", sig);
		status = 128 + sig;
	}
	goto out;

fail:
	ui_stop(b.ui);
	ui_up = 0;
	bench_bad("%s", cause != NULL ? cause : "cannot start");
	status = 1;
	goto out;
usage:
	bench_usage(stderr);
	status = BENCH_EXIT_USAGE;
out:
	if (b.reg != NULL)
		bench_job_cancel_all(&b);
	simfleet_free(b.sf);
	if (ui_up)
		ui_stop(b.ui);
	ui_free(b.ui);
	hotplug_free(b.hp);
	free(b.jobs);
	free(b.rows);
	reg_free(b.reg);
	sigwake_remove();
	if (b.wake_fd >= 0)
		close(b.wake_fd);
	if (b.trace != NULL) {
		bench_trace(&b, "exit", status, NULL);
		fclose(b.trace);
	}
	flog_close(b.flog);
	free(log_warning);
	jobfile_argv_free(job_argv);
	jobfile_free(&b.jf);
	image_free(b.set);
	free(faults);
	free(matches);
	free(name);
	free(mode);
	free(cause);
	return (status);
}
