/* trace: W3C Trace Context (traceparent) parsing and generation.
 *
 * A traceparent "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" enters at the HTTP door
 * (or is created there), is stored with outbox rows, travels in AMQP headers, and every hop
 * logs its trace id and its own span id. Parsing follows the W3C rules strictly: lower-case
 * hex, no all-zero ids, version ff is invalid, and a future version is read by its first 55
 * characters. Pure functions; thread-safe. */
#ifndef PETSTORE_TRACE_H
#define PETSTORE_TRACE_H

#include <stdint.h>

#define TRACEPARENT_LEN 56 /* 55 characters and the NUL */

typedef struct trace_ctx {
    char trace_id[33];
    char span_id[17];
    uint8_t flags;
} trace_ctx_t;

/* Returns 0 and fills out, or -1 if header is not a valid traceparent (out untouched). */
int trace_parse(const char *header, trace_ctx_t *out);

/* A new trace with a random trace id and span id, sampled flag set. */
void trace_new_root(trace_ctx_t *out);

/* A new span in parent's trace: same trace id and flags, a new span id. */
void trace_child(const trace_ctx_t *parent, trace_ctx_t *out);

/* Writes "00-trace-span-flags" into out. */
void trace_format(const trace_ctx_t *ctx, char out[TRACEPARENT_LEN]);

/* A child span of header's trace when header is valid, else a new root. header may be NULL. */
void trace_from_header_or_new(const char *header, trace_ctx_t *out);

#endif
