/* cfg: configuration from environment variables, described by a table.
 *
 * A daemon lists the variables it reads (name, kind, default, bounds, whether secret, a line of
 * help) and loads them all at once. Every problem is collected, one line per variable
 * ("HTTP_PORT: \"80a\" is not a TCP port (1..65535)", "DATABASE_URL: required but not set"),
 * so an operator sees every bad variable in one run instead of fixing them one restart at a
 * time; cfg_load_or_exit() prints them with each variable's help and exits with 78 (EX_CONFIG).
 * The values of secret variables never appear in messages.
 *
 * Rules: an empty variable counts as unset; an unset variable takes its default, which is
 * validated like a value from the environment (a bad default is reported, not trusted);
 * integers are plain decimal ([-]digits, no spaces, no '+'); a variable listed twice in the
 * table is a problem too.
 *
 * Threading: load once at startup; the cfg_t is read-only afterwards and its getters are
 * thread-safe. */
#ifndef PETSTORE_CFG_H
#define PETSTORE_CFG_H

#include <stddef.h>

#include "err.h"

typedef enum cfg_kind {
    CFG_STRING = 0, /* any text */
    CFG_INT,        /* decimal integer, within min..max when max > min, else any int */
    CFG_PORT,       /* TCP port 1..65535 */
    CFG_BOOL,       /* true/false, 1/0, yes/no, on/off (any case) */
    CFG_MS,         /* a duration in milliseconds: an integer, within min..max when max > min,
                       else 0..INT_MAX */
    CFG_URL_AMQP,   /* amqp://... or amqps://... */
    CFG_CONNINFO,   /* a libpq "key=value ..." string or a postgres:// / postgresql:// URI */
    CFG_ENUM,       /* exactly one of enum_values (case-sensitive) */
} cfg_kind_t;

typedef struct cfg_var {
    const char *name;
    cfg_kind_t kind;
    int required;                   /* unset with no default is a problem */
    const char *default_value;      /* used when unset; NULL: unset stays unset */
    long min, max;                  /* for CFG_INT and CFG_MS, applied when max > min */
    const char *const *enum_values; /* NULL-terminated, for CFG_ENUM */
    int secret;                     /* never echo the value */
    const char *help;               /* one line for the operator; may be NULL */
} cfg_var_t;

typedef struct cfg cfg_t;

/* Reads every variable of vars (copied; the strings it points to are borrowed and must outlive
 * the cfg_t, which static tables do) through getenv_fn, or getenv() when getenv_fn is NULL.
 * Returns 0 and sets *out to a new cfg_t (caller frees with cfg_free). Returns ERR_CONFIG when
 * some value is bad: *out is set anyway so that the caller can read cfg_problems(), and e's
 * message says how many problems there were ("3 configuration problems"). ERR_NOMEM: *out is
 * left alone. */
int cfg_load_from(const cfg_var_t *vars, size_t n, const char *(*getenv_fn)(const char *),
                  cfg_t **out, err_t *e) PETSTORE_NODISCARD;

/* cfg_load_from() with the real environment. */
int cfg_load(const cfg_var_t *vars, size_t n, cfg_t **out, err_t *e) PETSTORE_NODISCARD;

/* Every problem, one per line, each ending in '\n'; "" if none (or cfg is NULL). Borrowed: lives
 * as long as cfg. */
const char *cfg_problems(const cfg_t *cfg);

/* Loads from the environment; on success sets *out (caller frees). On failure prints to stderr
 * "<service>: configuration error: N problems", then each problem and its variable's help,
 * and exits with status 78. */
void cfg_load_or_exit(const char *service, const cfg_var_t *vars, size_t n, cfg_t **out);

/* Getters by name. Asking for a name the table does not have, or a number from a variable that
 * is not CFG_INT, CFG_MS or CFG_PORT, or a boolean from one that is not CFG_BOOL, is a
 * programming error: the process prints the name and aborts.
 * cfg_str returns the text (borrowed, lives as long as cfg) or NULL when unset; it works for
 * every kind. The numeric and boolean getters return 0 for an unset variable. */
const char *cfg_str(const cfg_t *cfg, const char *name);
long cfg_long(const cfg_t *cfg, const char *name);
int cfg_int(const cfg_t *cfg, const char *name);
int cfg_bool(const cfg_t *cfg, const char *name);

/* True if the variable had a value (from the environment or its default). */
int cfg_is_set(const cfg_t *cfg, const char *name);

/* Frees cfg and every string it handed out. Accepts NULL. */
void cfg_free(cfg_t *cfg);

#endif
