/* health: the readiness checks behind GET /readyz.
 *
 * A check is a name and a function that says whether one dependency is usable. Checks must be
 * cheap and must not block: they read state that the daemon's own loops maintain (a flag the
 * consumer sets when its database connection is up), never do I/O on the HTTP thread. The
 * usual check is a health_flag_t: a named atomic flag plus a short detail, registered as a
 * check by health_flag_new() and set by whoever owns the dependency. A flag starts "not ready"
 * (detail "starting") until its owner says otherwise.
 *
 * The registry is process-wide and append-only (at most HEALTH_MAX_CHECKS checks; a daemon
 * registers a handful at startup). Two checks may share a name (two consumer threads each with
 * a "database" flag): the report shows the name once, failing if either fails.
 *
 * The same answer is a metric: the gauge petstore_ready (1 ready, 0 not), registered with the
 * first check and set by a metrics collector (metrics.h) at every scrape of /metrics, so it
 * says what /readyz would answer at that moment, and alerts can watch it.
 *
 * Threading: everything is thread-safe; check functions run under the registry lock, from
 * whichever thread asks for the report. */
#ifndef PETSTORE_HEALTH_H
#define PETSTORE_HEALTH_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

#define HEALTH_MAX_CHECKS 32

typedef struct health_flag health_flag_t;

/* A check function: returns non-zero when healthy; may write a short detail (NUL-terminated,
 * at most n bytes) into detail, which starts as "". */
typedef int (*health_check_fn)(void *arg, char *detail, size_t n);

/* Registers a check (name copied, truncated to 63 bytes; arg borrowed for the process
 * lifetime). Returns 0, or ERR_NOMEM when the registry is full. */
int health_check_add(const char *name, health_check_fn fn, void *arg) PETSTORE_NODISCARD;

/* A new flag, registered as the check `name`; it lives for the whole process (never freed).
 * Starts failing with detail "starting". NULL when out of memory or the registry is full. */
health_flag_t *health_flag_new(const char *name);

/* Sets the flag's state (non-zero: ok) and detail (copied, truncated to 127 bytes; NULL: "").
 * flag may be NULL (then nothing happens). Cheap enough for every loop iteration. */
void health_flag_set(health_flag_t *flag, int ok, const char *detail);

/* The flag's current state: 1 ok, 0 failing (also for NULL). */
int health_flag_ok(const health_flag_t *flag);

/* Runs every check: 1 when every one passes (also when there are none), else 0; what /readyz
 * would answer now. */
int health_ready(void);

/* Runs every check and builds {"status":"ok"|"fail","checks":{name:{"status","detail"}}} into
 * *out (a new reference the caller owns; NULL only when out of memory). Returns 1 when every
 * check passes (also when there are none), else 0. */
int health_ready_json(json_t **out);

#endif
