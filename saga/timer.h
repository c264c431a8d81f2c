/* timer: the saga's durable timers, fired by the orchestrator itself.
 *
 * A saga waiting for a reply has one row in saga_timers with a deadline computed by the
 * database. The timer worker polls every SAGA_TIMER_POLL_MS: in one transaction it claims up to
 * 100 due timers (FOR UPDATE SKIP LOCKED, so several instances share the work and never fire the
 * same timer twice), applies SAGA_EV_TIMEOUT to each saga through saga_apply and commits.
 *
 * One timer cannot stop the others. Each timer is handled under a savepoint of its own; one
 * that fails (its saga cannot be read, the database refuses its step, the step cannot be
 * built) is rolled back alone and set aside: its failure is counted and its error kept in the
 * row, and it is postponed with a backoff (1 s doubling, capped by SAGA_RETRY_MAX_MS). After
 * TIMER_MAX_FAILURES (5) failures in a row it is parked: never claimed again, logged at error
 * level, counted (petstore_saga_timers_parked_total, gauge petstore_saga_timers_parked) until an
 * operator clears parked_at, or the saga's next step arms a fresh timer. Only a lost database
 * connection fails the whole batch, which nothing was committed of and which the supervisor
 * retries after reconnecting. The worker also refreshes the petstore_saga_needs_operator and
 * petstore_saga_timers_parked gauges about once a second.
 *
 * Threading: saga_timer_run is a thread of its own; its worker supervisor (svc_worker.h) owns
 * its database connection, reconnects it with backoff and holds its readiness flag
 * ("database:timers"). */
#ifndef PETSTORE_SAGA_TIMER_H
#define PETSTORE_SAGA_TIMER_H

/* pthread entry point for svc_def_t.workers: arg is the svc_t, whose app is a saga_app_t.
 * Returns NULL when the process is stopping. */
void *saga_timer_run(void *svc);

#endif
