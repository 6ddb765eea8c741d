/*
 * runstat [-t] OUT PIDFILE COMMAND [ARG...]: run COMMAND as a child and,
 * when it ends, write one line to OUT:
 *
 *	wall SECONDS user SECONDS sys SECONDS maxrss KB status N
 *
 * with microsecond figures from CLOCK_MONOTONIC and wait4(2)'s rusage
 * (GNU time prints CPU seconds to two decimals only, too coarse for a
 * budget of 0.05 s).  The child's pid goes to PIDFILE (written to a
 * temporary name, then renamed) as soon as it is forked, so that the
 * benchmark can signal the child itself.  Like time(1), runstat ignores
 * SIGINT and SIGQUIT while it waits; the child gets them.  With -t the
 * child's standard output goes through a pipe and runstat copies it to its
 * own, each line prefixed with the seconds since the fork ("12.345678 "),
 * so the benchmark can tell when each event happened.  Exit status:
 * the child's, 128 + the signal that ended it, or 125 when runstat
 * itself failed.  Used by tests/bench/fleet.sh ("make bench").
 */
#include "config.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNSTAT_FAIL	125

/* Seconds on the monotonic clock, with nanoseconds. */
static double
runstat_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/* A timeval as seconds. */
static double
runstat_tv(const struct timeval *tv)
{
	return ((double)tv->tv_sec + (double)tv->tv_usec / 1e6);
}

/*
 * Copy the child's output from fd to standard output until it ends, each
 * line prefixed with the seconds since t0 at the moment it began arriving.
 */
static void
runstat_stamp(int fd, double t0)
{
	char	buf[8192];
	ssize_t	n, i;
	int	bol = 1;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < n; i++) {
			if (bol)
				printf("%.6f ", runstat_now() - t0);
			putchar(buf[i]);
			bol = buf[i] == '\n';
		}
	}
	if (!bol)
		putchar('\n');
	fflush(stdout);
}

/* Write the child's pid to PIDFILE atomically (a reader never sees half). */
static int
runstat_pidfile(const char *path, pid_t pid)
{
	char	*tmp;
	FILE	*f;
	size_t	 len;
	int	 rc = -1;

	len = strlen(path) + 5;
	if ((tmp = malloc(len)) == NULL)
		return (-1);
	snprintf(tmp, len, "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		goto out;
	fprintf(f, "%ld\n", (long)pid);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "runstat: %s: %s\n", path, strerror(errno));
	free(tmp);
	return (rc);
}

/* Run the command, wait for it, and report what it cost. */
int
main(int argc, char **argv)
{
	struct rusage	ru;
	struct sigaction sa, old_int, old_quit;
	double		t0, t1;
	FILE		*f;
	pid_t		pid;
	int		status, rc, stamp = 0, pfd[2] = { -1, -1 };

	if (argc > 1 && strcmp(argv[1], "-t") == 0) {
		stamp = 1;
		argc--;
		argv++;
	}
	if (argc < 4) {
		fprintf(stderr, "usage: runstat [-t] OUT PIDFILE COMMAND "
		    "[ARG...]\n");
		return (2);
	}
	if (stamp && pipe(pfd) == -1) {
		fprintf(stderr, "runstat: pipe: %s\n", strerror(errno));
		return (RUNSTAT_FAIL);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGQUIT, &sa, &old_quit);
	t0 = runstat_now();
	if ((pid = fork()) == -1) {
		fprintf(stderr, "runstat: fork: %s\n", strerror(errno));
		return (RUNSTAT_FAIL);
	}
	if (pid == 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		if (stamp) {
			close(pfd[0]);
			if (dup2(pfd[1], STDOUT_FILENO) == -1)
				_exit(127);
			close(pfd[1]);
		}
		execvp(argv[3], argv + 3);
		fprintf(stderr, "runstat: %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	if (runstat_pidfile(argv[2], pid) != 0)
		kill(pid, SIGTERM);
	if (stamp) {
		close(pfd[1]);
		runstat_stamp(pfd[0], t0);
		close(pfd[0]);
	}
	while (wait4(pid, &status, 0, &ru) == -1) {
		if (errno != EINTR) {
			fprintf(stderr, "runstat: wait4: %s\n",
			    strerror(errno));
			return (RUNSTAT_FAIL);
		}
	}
	t1 = runstat_now();
	if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		rc = 128 + WTERMSIG(status);
	else
		rc = RUNSTAT_FAIL;
	if ((f = fopen(argv[1], "w")) == NULL) {
		fprintf(stderr, "runstat: %s: %s\n", argv[1], strerror(errno));
		return (RUNSTAT_FAIL);
	}
	fprintf(f, "wall %.6f user %.6f sys %.6f maxrss %ld status %d\n",
	    t1 - t0, runstat_tv(&ru.ru_utime), runstat_tv(&ru.ru_stime),
	    ru.ru_maxrss, rc);
	if (fclose(f) != 0) {
		fprintf(stderr, "runstat: %s: %s\n", argv[1], strerror(errno));
		return (RUNSTAT_FAIL);
	}
	return (rc);
}
