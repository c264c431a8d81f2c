/* daemon: signals, stopping, and backoff for long-running processes.
 *
 * SIGTERM and SIGINT set a flag and write a byte to a self-pipe: loops check daemon_stopping()
 * or poll daemon_stop_fd(), so the work of stopping happens in the loops, never in the handler.
 * A second signal exits at once (_exit(1)) for an operator who does not want to wait for the
 * drain. SIGPIPE is ignored so a vanished peer is an error return, not a death.
 *
 * Threading: daemon_signals_init() once in main before threads start; the rest is thread-safe. */
#ifndef PETSTORE_DAEMON_H
#define PETSTORE_DAEMON_H

#include "err.h"

/* Installs the handlers and creates the self-pipe. */
int daemon_signals_init(err_t *e) PETSTORE_NODISCARD;

/* True once a stop was requested (by a signal or daemon_request_stop). */
int daemon_stopping(void);

/* A descriptor that becomes readable when stopping (for poll). -1 before daemon_signals_init. */
int daemon_stop_fd(void);

/* Requests a graceful stop from inside the process. Idempotent. */
void daemon_request_stop(void);

/* Sleeps ms milliseconds or until a stop is requested. Returns 1 if stopping, else 0. */
int daemon_sleep_ms(int ms);

/* Exponential backoff with jitter: each delay doubles up to max, then a random 50-100% of it is
 * used, so that many clients do not retry in lockstep. */
typedef struct daemon_backoff {
    int initial_ms;
    int max_ms;
    int current_ms;
} daemon_backoff_t;

void daemon_backoff_init(daemon_backoff_t *b, int initial_ms, int max_ms);
int daemon_backoff_next_ms(daemon_backoff_t *b);
void daemon_backoff_reset(daemon_backoff_t *b);

#endif
