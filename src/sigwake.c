/*
 * The signal self-pipe shared by espfleet's two poll loops (the headless
 * flasher and the bench).  Its state is global because a signal handler
 * can reach nothing else.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "sigwake.h"

static volatile sig_atomic_t	sigwake_sig;
static int			sigwake_pipe[2] = { -1, -1 };

/* Async-signal-safe: note the signal and wake the poll loop. */
static void
sigwake_cb(int sig)
{
	int	saved = errno;

	sigwake_sig = sig;
	if (sigwake_pipe[1] != -1)
		(void)write(sigwake_pipe[1], "", 1);
	errno = saved;
}

/* Point SIGINT, SIGTERM, SIGHUP at handler and SIGPIPE at pipe_action. */
static void
sigwake_set(void (*handler)(int), void (*pipe_action)(int))
{
	struct sigaction	sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = handler;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = pipe_action;
	sigaction(SIGPIPE, &sa, NULL);
}

/* Install the handlers (and ignore SIGPIPE); 0 or -errno. */
int
sigwake_install(void)
{
	if (pipe2(sigwake_pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		return (-errno);
	sigwake_sig = 0;
	sigwake_set(sigwake_cb, SIG_IGN);
	return (0);
}

/* Restore the default handlers and close the pipe. */
void
sigwake_remove(void)
{
	if (sigwake_pipe[0] == -1)
		return;
	sigwake_set(SIG_DFL, SIG_DFL);
	close(sigwake_pipe[0]);
	close(sigwake_pipe[1]);
	sigwake_pipe[0] = sigwake_pipe[1] = -1;
}

/* The read end to poll; -1 when not installed. */
int
sigwake_fd(void)
{
	return (sigwake_pipe[0]);
}

/* Empty the pipe; the last signal caught, 0 if none. */
int
sigwake_drain(void)
{
	char	buf[64];

	if (sigwake_pipe[0] != -1)
		while (read(sigwake_pipe[0], buf, sizeof(buf)) > 0)
			;
	return (sigwake_sig);
}

/* The last signal caught, 0 if none. */
int
sigwake_caught(void)
{
	return (sigwake_sig);
}
