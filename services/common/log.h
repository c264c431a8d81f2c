/* log: structured logging, one JSON object per line on stdout.
 *
 * Every line carries timestamp, level, service, message and, when known, trace_id, span_id and
 * order_id, plus the event's own fields. A line is written with a single write(2) so lines from
 * several threads never interleave. Before anything is written, the fields pass through
 * log_redact(): keys that name secrets (password, token, card_number, authorization, secret...)
 * are replaced by "[REDACTED]" and any string that contains a card-like digit run (12-19 digits,
 * optionally separated by spaces or dashes) is masked down to its last four digits. There is no
 * way to log a field without redaction.
 *
 * Threading: log_init() once at startup before other threads exist; the log_* functions are
 * thread-safe afterwards. */
#ifndef PETSTORE_LOG_H
#define PETSTORE_LOG_H

#include <jansson.h>

#include "err.h"

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Context a line is about. Every member is borrowed and may be NULL. */
typedef struct log_ctx {
    const char *trace_id;
    const char *span_id;
    const char *order_id;
} log_ctx_t;

/* Sets the service name (copied) and the minimum level. fd is where lines go (1 = stdout). */
void log_init(const char *service, log_level_t min_level, int fd);

/* Parses "debug", "info", "warn" or "error". Returns 0 and sets *out, or ERR_INVALID. */
int log_level_parse(const char *text, log_level_t *out) PETSTORE_NODISCARD;

/* True if a line at this level would be written. */
int log_enabled(log_level_t level);

/* Writes one line. ctx may be NULL. fields is STOLEN (may be NULL) and must be a JSON object;
 * its members are redacted and then added to the line. */
void log_write(log_level_t level, const log_ctx_t *ctx, const char *message, json_t *fields);

#define log_debug(ctx, msg, fields) log_write(LOG_DEBUG, (ctx), (msg), (fields))
#define log_info(ctx, msg, fields) log_write(LOG_INFO, (ctx), (msg), (fields))
#define log_warn(ctx, msg, fields) log_write(LOG_WARN, (ctx), (msg), (fields))
#define log_error(ctx, msg, fields) log_write(LOG_ERROR, (ctx), (msg), (fields))

/* Convenience: logs an err_t at the given level with fields code, error and sqlstate. */
void log_err(log_level_t level, const log_ctx_t *ctx, const char *message, const err_t *e);

/* Redacts obj in place (recursively through objects and arrays). Exposed for tests and for any
 * code that stores free text supplied by users. */
void log_redact(json_t *obj);

/* Masks card-like digit runs in text, writing the result to out (NUL-terminated, truncated to
 * out_size). Returns 1 if something was masked, else 0. */
int log_mask_digits(const char *text, char *out, size_t out_size);

#endif
