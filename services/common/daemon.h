/* daemon: signals, stopping, and backoff for long-running processes.
 *
 * SIGTERM and SIGINT set a flag and write a byte to a self-pipe: loops check daemon_stopping()
 * or poll daemon_stop_fd(), so the work of stopping (drain, commit, ack, close) happens in the
 * loops, never in the handler. A second SIGTERM/SIGINT exits at once with _exit(1), for an
 * operator who does not want to wait for the drain. A stop the process requested itself
 * (daemon_request_stop, e.g. after a fatal error) does not count as that first signal: the
 * operator's first signal still means "drain". SIGPIPE is ignored so a vanished peer is an
 * error return (EPIPE), not a death.
 *
 * Threading: daemon_signals_init() once in main before other threads start (so that they
 * inherit the signal dispositions); everything else is thread-safe. The stop flag is
 * process-wide and never cleared. */
#ifndef PETSTORE_DAEMON_H
#define PETSTORE_DAEMON_H

#include "err.h"

/* Creates the self-pipe (once) and installs the handlers. Returns 0 or ERR_INTERNAL. */
int daemon_signals_init(err_t *e) PETSTORE_NODISCARD;

/* True once a stop was requested (by a signal or daemon_request_stop). */
int daemon_stopping(void);

/* A descriptor (owned by this module: do not read or close it) that becomes and stays readable
 * once stopping, for poll(). -1 before daemon_signals_init. */
int daemon_stop_fd(void);

/* Requests a graceful stop from inside the process. Idempotent; async-signal-safe. */
void daemon_request_stop(void);

/* Sleeps ms milliseconds, or less if a stop is requested meanwhile (also before
 * daemon_signals_init, within about 50 ms). Returns 1 if stopping, else 0. */
int daemon_sleep_ms(int ms);

/* Exponential backoff with jitter: the nominal delay starts at initial_ms and doubles on each
 * call up to max_ms; the delay returned is a random value between half the nominal delay and
 * the whole of it, so that many clients do not retry in lockstep. A plain value the caller
 * owns; not thread-safe (one per retry loop). */
typedef struct daemon_backoff {
    int initial_ms;
    int max_ms;
    int current_ms; /* the nominal delay last returned; 0 before the first call */
} daemon_backoff_t;

/* initial_ms below 1 becomes 1; max_ms below initial_ms becomes initial_ms. */
void daemon_backoff_init(daemon_backoff_t *b, int initial_ms, int max_ms);

/* The next delay in milliseconds (see above). */
int daemon_backoff_next_ms(daemon_backoff_t *b);

/* Back to the initial delay, after a success. */
void daemon_backoff_reset(daemon_backoff_t *b);

#endif
