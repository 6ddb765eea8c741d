/*
 * espfleet-sim: N emulated ESP32-S2 (or ESP32) units in ROM download mode
 * on pseudo-terminals, for tests, demos and benchmarks without hardware.
 * The contract (options, the lines on stdout, DIR/ttyK, DIR/flashK.bin,
 * DIR/stats, signals) is in espfleet-sim(1).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chip.h"
#include "emu.h"
#include "sim.h"
#include "util.h"

#define SIM_MAX_FAULTS	64

/* The running simulation, for the signal handlers (main-only global). */
static struct sim	*sim_running;

/* Print the synopsis to f. */
static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: espfleet-sim --units N --dir DIR [--chip esp32s2|esp32]\n"
	    "           [--flash-size 4MB] [--profile fast|realistic]\n"
	    "           [--fault SPEC]... [--seed N] [--boot]\n"
	    "           [--start app|download] [--silent[=K]]...\n"
	    "           [--board [K=]plain|bridge|idf-cdc|tinyusb]...\n");
}

/* Complain about the command line and exit 2. */
static void espf_dead printflike(1, 2)
usage_error(const char *fmt, ...)
{
	va_list	ap;

	fputs("espfleet-sim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	exit(2);
}

/* SIGINT, SIGTERM, SIGHUP: stop serving (async-signal-safe). */
static void
on_stop(int sig)
{
	(void)sig;
	if (sim_running != NULL)
		sim_stop(sim_running);
}

/* SIGUSR1: write DIR/stats and print it to stderr. */
static void
on_stats(int sig)
{
	(void)sig;
	if (sim_running != NULL)
		sim_request_stats(sim_running);
}

/* SIGUSR2: hold BOOT and press RST on every unit (async-signal-safe). */
static void
on_boot_rst(int sig)
{
	unsigned	k;

	(void)sig;
	if (sim_running == NULL)
		return;
	for (k = 0; k < sim_units(sim_running); k++)
		sim_press_boot_rst(sim_running, k);
}

/* A whole decimal number in [lo, hi]; exits 2 otherwise. */
static unsigned long long
parse_num(const char *opt, const char *s, unsigned long long lo,
    unsigned long long hi)
{
	char			*end;
	unsigned long long	 v;

	errno = 0;
	if (*s < '0' || *s > '9')
		usage_error("%s '%s' is not a number", opt, s);
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		usage_error("%s '%s' is not a number from %llu to %llu", opt,
		    s, lo, hi);
	return (v);
}

/* Install a handler with SA_RESTART. */
static void
handle(int sig, void (*fn)(int))
{
	struct sigaction	sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
}

/* Parse the options, set up the units, serve them until a signal. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "units",	required_argument,	NULL, 'n' },
		{ "dir",	required_argument,	NULL, 'd' },
		{ "chip",	required_argument,	NULL, 'c' },
		{ "flash-size",	required_argument,	NULL, 'f' },
		{ "profile",	required_argument,	NULL, 'p' },
		{ "fault",	required_argument,	NULL, 'F' },
		{ "seed",	required_argument,	NULL, 's' },
		{ "boot",	no_argument,		NULL, 'B' },
		{ "start",	required_argument,	NULL, 'S' },
		{ "board",	required_argument,	NULL, 'b' },
		{ "silent",	optional_argument,	NULL, 'q' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ NULL,		0,			NULL, 0 }
	};
	struct emu_fault	 faults[SIM_MAX_FAULTS];
	struct sim_config	 cfg;
	struct sim		*s;
	char			*cause, mac[18];
	uint8_t			 m[6];
	unsigned		 k;
	enum emu_board		 boards[SIM_MAX_UNITS];
	int			 silent[SIM_MAX_UNITS];
	unsigned char		 unit_set[SIM_MAX_UNITS];
	unsigned long long	 which;
	char			*eq;
	int			 ch, rc, have_units = 0, board, per_unit = 0;

	memset(&cfg, 0, sizeof(cfg));
	memset(unit_set, 0, sizeof(unit_set));
	cfg.chip = CHIP_ESP32S2;
	cfg.profile = EMU_PROFILE_FAST;
	cfg.faults = faults;
	cfg.stats_stderr = 1;
	while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			cfg.units = (unsigned)parse_num("--units", optarg, 1,
			    SIM_MAX_UNITS);
			have_units = 1;
			break;
		case 'd':
			cfg.dir = optarg;
			break;
		case 'c':
			if (strcmp(optarg, "esp32s2") == 0)
				cfg.chip = CHIP_ESP32S2;
			else if (strcmp(optarg, "esp32") == 0)
				cfg.chip = CHIP_ESP32;
			else
				usage_error("--chip '%s': the emulator models "
				    "esp32s2 and esp32", optarg);
			break;
		case 'f':
			if (emu_parse_flash_size(optarg, &cfg.flash_size,
			    &cause) != 0)
				usage_error("--flash-size: %s", cause);
			break;
		case 'p':
			if (strcmp(optarg, "fast") == 0)
				cfg.profile = EMU_PROFILE_FAST;
			else if (strcmp(optarg, "realistic") == 0)
				cfg.profile = EMU_PROFILE_REALISTIC;
			else
				usage_error("--profile '%s': use fast or "
				    "realistic", optarg);
			break;
		case 'F':
			if (cfg.nfaults == SIM_MAX_FAULTS)
				usage_error("at most %d --fault options",
				    SIM_MAX_FAULTS);
			if (emu_fault_parse(optarg, &faults[cfg.nfaults],
			    &cause) != 0)
				usage_error("%s", cause);
			cfg.nfaults++;
			break;
		case 's':
			cfg.seed = parse_num("--seed", optarg, 0, UINT64_MAX);
			break;
		case 'B':
			cfg.boot = 1;
			break;
		case 'S':
			if (strcmp(optarg, "app") == 0)
				cfg.start_app = 1;
			else if (strcmp(optarg, "download") == 0)
				cfg.start_app = 0;
			else
				usage_error("--start '%s': use app or download",
				    optarg);
			break;
		case 'b':
			which = SIM_MAX_UNITS;
			if ((eq = strchr(optarg, '=')) != NULL) {
				*eq = '\0';
				which = parse_num("--board K=", optarg, 0,
				    SIM_MAX_UNITS - 1);
				optarg = eq + 1;
			}
			if ((board = emu_board_parse(optarg)) < 0)
				usage_error("--board '%s': use plain, bridge, "
				    "idf-cdc or tinyusb", optarg);
			if (which == SIM_MAX_UNITS)
				cfg.board = (enum emu_board)board;
			else {
				boards[which] = (enum emu_board)board;
				per_unit |= 1;
				unit_set[which] |= 1;
			}
			break;
		case 'q':
			if (optarg == NULL)
				cfg.app_silent = 1;
			else {
				which = parse_num("--silent=", optarg, 0,
				    SIM_MAX_UNITS - 1);
				silent[which] = 1;
				per_unit |= 2;
				unit_set[which] |= 2;
			}
			break;
		case 'h':
			usage(stdout);
			return (0);
		case 'V':
			printf("espfleet-sim %s\n", PACKAGE_VERSION);
			return (0);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (optind != argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!have_units)
		usage_error("--units N is required");
	if (cfg.dir == NULL)
		usage_error("--dir DIR is required");
	if (!cfg.boot && (cfg.start_app || cfg.board != EMU_BOARD_PLAIN ||
	    cfg.app_silent || per_unit))
		usage_error("--start, --board and --silent need --boot");
	for (k = 0; k < SIM_MAX_UNITS; k++) {
		if (unit_set[k] != 0 && k >= cfg.units)
			usage_error("--board or --silent names unit %u, but "
			    "units are numbered 0 to %u", k, cfg.units - 1);
		if (!(unit_set[k] & 1))
			boards[k] = cfg.board;
		if (!(unit_set[k] & 2))
			silent[k] = cfg.app_silent;
	}
	if (per_unit & 1)
		cfg.boards = boards;
	if (per_unit & 2)
		cfg.silent = silent;
	for (k = 0; k < cfg.nfaults; k++) {
		if (faults[k].unit >= (int)cfg.units)
			usage_error("--fault unit=%d: units are numbered 0 to "
			    "%u", faults[k].unit, cfg.units - 1);
	}

	if ((s = sim_new(&cfg, &cause)) == NULL) {
		fprintf(stderr, "espfleet-sim: %s\n", cause);
		free(cause);
		return (1);
	}

	signal(SIGPIPE, SIG_IGN);
	sim_running = s;
	handle(SIGINT, on_stop);
	handle(SIGTERM, on_stop);
	handle(SIGHUP, on_stop);
	handle(SIGUSR1, on_stats);
	handle(SIGUSR2, on_boot_rst);

	for (k = 0; k < sim_units(s); k++) {
		sim_mac(s, k, m);
		chip_mac_format(m, mac, sizeof(mac));
		printf("unit %u %s mac %s\n", k, sim_tty(s, k), mac);
	}
	printf("ready\n");
	fflush(stdout);

	rc = sim_run(s);
	if (rc != 0)
		fprintf(stderr, "espfleet-sim: poll: %s\n", strerror(-rc));
	if (sim_write_stats(s, &cause) != 0) {
		fprintf(stderr, "espfleet-sim: %s\n", cause);
		free(cause);
	}
	sim_running = NULL;
	sim_free(s);
	return (rc == 0 ? 0 : 1);
}
