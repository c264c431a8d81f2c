/* cfg: configuration from environment variables, described by a table.
 *
 * A daemon lists the variables it reads (name, kind, default, bounds, whether secret) and loads
 * them all at once. Every problem is collected, so an operator sees every bad variable in one
 * run instead of fixing them one restart at a time; cfg_load_or_exit() prints them and exits
 * with 78 (EX_CONFIG). Values of secret variables never appear in messages.
 *
 * Threading: load once at startup; getters are read-only and thread-safe afterwards. */
#ifndef PETSTORE_CFG_H
#define PETSTORE_CFG_H

#include <stddef.h>

#include "err.h"

typedef enum cfg_kind {
    CFG_STRING = 0,
    CFG_INT,      /* decimal integer, within min..max when max > min */
    CFG_PORT,     /* 1..65535 */
    CFG_BOOL,     /* true/false/1/0/yes/no/on/off */
    CFG_MS,       /* a duration in milliseconds (an integer, bounds as CFG_INT) */
    CFG_URL_AMQP, /* amqp://... */
    CFG_CONNINFO, /* a libpq connection string or postgres:// URI */
    CFG_ENUM,     /* one of enum_values */
} cfg_kind_t;

typedef struct cfg_var {
    const char *name;
    cfg_kind_t kind;
    int required;                   /* no default: must be set */
    const char *default_value;      /* used when unset; NULL: unset stays unset */
    long min, max;                  /* for CFG_INT and CFG_MS when max > min */
    const char *const *enum_values; /* NULL-terminated, for CFG_ENUM */
    int secret;                     /* never echo the value */
    const char *help;               /* one line for the operator */
} cfg_var_t;

typedef struct cfg cfg_t;

/* Reads every variable through getenv_fn (getenv when NULL). On success *out is a new cfg_t
 * (caller frees with cfg_free). On failure returns ERR_CONFIG, *out is still set so the caller
 * can read cfg_problems(), and e says how many problems there were. vars is copied. */
int cfg_load_from(const cfg_var_t *vars, size_t n, const char *(*getenv_fn)(const char *),
                  cfg_t **out, err_t *e) PETSTORE_NODISCARD;
int cfg_load(const cfg_var_t *vars, size_t n, cfg_t **out, err_t *e) PETSTORE_NODISCARD;

/* Every problem, one per line ("HTTP_PORT: \"80a\" is not an integer\n"); "" if none. Borrowed. */
const char *cfg_problems(const cfg_t *cfg);

/* Loads or prints every problem to stderr prefixed by the service name and exits 78. */
void cfg_load_or_exit(const char *service, const cfg_var_t *vars, size_t n, cfg_t **out);

/* Getters by name. Asking for a name the table does not have is a programming error: abort().
 * cfg_str returns NULL for an unset optional variable; cfg_int/cfg_bool return 0 then. */
const char *cfg_str(const cfg_t *cfg, const char *name);
long cfg_long(const cfg_t *cfg, const char *name);
int cfg_int(const cfg_t *cfg, const char *name);
int cfg_bool(const cfg_t *cfg, const char *name);

void cfg_free(cfg_t *cfg);

#endif
