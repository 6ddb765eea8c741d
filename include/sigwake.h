/*
 * SIGINT, SIGTERM and SIGHUP for a poll() loop: the handler only records
 * the signal and writes a byte to a self-pipe whose read end the loop
 * polls.  Main thread only; workers run with every signal blocked.
 */
#ifndef ESPF_SIGWAKE_H
#define ESPF_SIGWAKE_H

/* Install the handlers (and ignore SIGPIPE); 0 or -errno. */
int	sigwake_install(void);
/* Restore the default handlers and close the pipe; harmless if not set. */
void	sigwake_remove(void);
/* The read end to poll for POLLIN; -1 when not installed. */
int	sigwake_fd(void);
/* Empty the pipe; returns the last signal caught, 0 if none. */
int	sigwake_drain(void);
/* The last signal caught, 0 if none. */
int	sigwake_caught(void);

#endif
