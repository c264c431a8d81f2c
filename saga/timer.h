/* timer: the saga's durable timers, fired by the orchestrator itself.
 *
 * A saga waiting for a reply has one row in saga_timers with a deadline computed by the
 * database. The timer worker polls every SAGA_TIMER_POLL_MS: in one transaction it claims up to
 * 100 due timers (FOR UPDATE SKIP LOCKED, so several instances share the work and never fire the
 * same timer twice), applies SAGA_EV_TIMEOUT to each saga through saga_apply and commits. A saga
 * whose timeout keeps failing for a reason other than a transient one is postponed by
 * SAGA_RETRY_MAX_MS and logged, so it cannot hold up the others. The worker also refreshes the
 * petstore_saga_needs_operator gauge about once a second.
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
