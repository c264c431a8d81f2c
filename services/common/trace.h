/* trace: W3C Trace Context (traceparent) parsing and generation.
 *
 * A traceparent "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" enters at the HTTP door
 * (or is created there), is stored with outbox rows, travels in AMQP headers, and every hop
 * logs its trace id and its own span id. Parsing follows W3C Trace Context level 1 strictly:
 *   - the version is two lower-case hex digits and "ff" is invalid;
 *   - version 00 is exactly 55 characters: nothing may follow the flags;
 *   - a later version is read by its first 55 characters, which must be followed by the end of
 *     the string or a '-' (room for fields we do not know yet);
 *   - ids and flags are lower-case hex; an all-zero trace id or span id is invalid.
 * An invalid header is never repaired: the caller starts a new trace instead. We always write
 * version 00. Random ids come from libsodium (initialised once, thread-safely).
 *
 * Threading: every function is thread-safe; a trace_ctx_t is a plain value owned by the caller. */
#ifndef PETSTORE_TRACE_H
#define PETSTORE_TRACE_H

#include <stdint.h>

#include "err.h"

#define TRACEPARENT_LEN 56 /* 55 characters and the NUL */

typedef struct trace_ctx {
    char trace_id[33];
    char span_id[17];
    uint8_t flags;
} trace_ctx_t;

/* Returns 0 and fills out, or ERR_INVALID if header (may be NULL) is not a valid traceparent;
 * out is untouched then. */
int trace_parse(const char *header, trace_ctx_t *out);

/* A new trace with a random trace id and span id (never all zero), flags 01 (sampled). */
void trace_new_root(trace_ctx_t *out);

/* A new span in parent's trace: same trace id and flags, a new span id. */
void trace_child(const trace_ctx_t *parent, trace_ctx_t *out);

/* Writes "00-<trace id>-<span id>-<flags>" (55 characters and a NUL) into out. */
void trace_format(const trace_ctx_t *ctx, char out[TRACEPARENT_LEN]);

/* A child span of header's trace when header is valid, else a new root. header may be NULL. */
void trace_from_header_or_new(const char *header, trace_ctx_t *out);

#endif
