/* log: structured logging, one JSON object per line on stdout.
 *
 * Every line carries, in this order, timestamp (RFC 3339, UTC, with milliseconds:
 * 2024-05-01T12:00:00.123Z), level, service, message and, when known, trace_id, span_id and
 * order_id, then the event's own fields (a field named like one of those is dropped). A line is
 * built in memory and written with a single write(2) (retried on EINTR and partial writes),
 * without a mutex, so lines from several threads do not interleave (guaranteed for files; for
 * pipes, for lines up to PIPE_BUF bytes: string values are therefore capped at LOG_MAX_STRING).
 *
 * Before anything is written, the fields pass through the redactor, on a private deep copy (the
 * caller's objects are never modified, even when they are shared):
 *   - a value whose key names a secret becomes "[REDACTED]", whatever its type. Keys are
 *     compared case-insensitively with '_', '-', '.' and spaces ignored; secret are keys that
 *     contain password, passwd, secret, token, authorization, cookie, cardnumber, cardnum,
 *     cardno, cvv, cvc, apikey, privatekey, sealed or hash, keys that are exactly card, pan or
 *     number, and keys
 *     with a word "pan" (card_pan). card and pan are matched as whole keys, not substrings, so
 *     card_id, company or span_id stay readable; card_last4 is never redacted;
 *   - any string (at any depth, and the message itself) containing a card-like digit run
 *     (12-19 digits, optionally separated by single spaces or dashes, not part of a longer
 *     alphanumeric word or of a UUID) is masked down to its last four digits:
 *     "4111 1111 1111 1111" becomes "************1111";
 *   - any run of an encoding's characters ([A-Za-z0-9+/=_-]) long enough to be a key, a hash, a
 *     token or a sealed card (40+ hex digits only, or 32+ characters mixing upper case, lower
 *     case and digits: base64 of 24+ random bytes) becomes "[REDACTED]", wherever it sits (inside
 *     an SQL parameter or a JSON body too). Trace ids, traceparents, UUIDs, paths and names do
 *     not qualify (no upper case, or no digits, or too short).
 * Numbers are not masked (they are amounts, counts and times here). There is no way to log a
 * field without redaction.
 *
 * Threading: log_init() once at startup before other threads exist; the log_* functions are
 * thread-safe afterwards. */
#ifndef PETSTORE_LOG_H
#define PETSTORE_LOG_H

#include <jansson.h>

#include "err.h"

#define LOG_MAX_STRING 2048 /* longer string values are cut (at a UTF-8 boundary) and marked */

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Context a line is about. Every member is borrowed and may be NULL. */
typedef struct log_ctx {
    const char *trace_id;
    const char *span_id;
    const char *order_id;
} log_ctx_t;

/* The calling thread's current context, for lines written by code that has none of its own
 * (db.query lines): set by whoever knows what the thread is working on (the consumer loop
 * around a handler), cleared with NULL afterwards. ctx is borrowed and must outlive the
 * setting. log_ctx_current() returns NULL when nothing is set. */
void log_ctx_enter(const log_ctx_t *ctx);
const log_ctx_t *log_ctx_current(void);

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

/* Redacts obj (an object or array) in place, recursively, by the rules above. Exposed for tests
 * and for code that stores or echoes free text supplied by users. obj must not be shared. */
void log_redact(json_t *obj);

/* Masks card-like digit runs in text, writing the result to out (caller's storage,
 * NUL-terminated, truncated to out_size; out_size >= strlen(text) + 1 never truncates).
 * Returns 1 if something was masked, else 0. */
int log_mask_digits(const char *text, char *out, size_t out_size);

#endif
