/* health: the readiness checks behind GET /readyz.
 *
 * Checks must be cheap: they read state that the daemon's own loops maintain (a flag the
 * consumer sets when its database connection is up), never do I/O from the HTTP thread.
 * health_flag_new() registers such a flag; it starts "not ready" until its owner says otherwise.
 * Thread-safe. */
#ifndef PETSTORE_HEALTH_H
#define PETSTORE_HEALTH_H

#include <jansson.h>
#include <stddef.h>

typedef struct health_flag health_flag_t;

/* A named flag registered as a check (process lifetime). NULL when out of memory. */
health_flag_t *health_flag_new(const char *name);

/* Sets the flag's state and a short detail text (copied, truncated to 127 bytes). NULL ok. */
void health_flag_set(health_flag_t *flag, int ok, const char *detail);

/* Registers a custom check: fn returns non-zero when healthy and may write a detail. */
int health_check_add(const char *name, int (*fn)(void *arg, char *detail, size_t n), void *arg);

/* Builds {status:"ok"|"fail", checks:{name:{status, detail}}} into *out (new reference) and
 * returns 1 when every check passes, else 0. */
int health_ready_json(json_t **out);

#endif
