/* trace: see trace.h. The parser checks positions rather than splitting on dashes, so that a
 * header with an extra or missing character anywhere is refused instead of shifted. */
#include "trace.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    if (sodium_init() < 0)
        abort();
}

static int lower_hex(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        nonzero |= c != '0';
    }
    return nonzero;
}

static int hex_byte(const char *s)
{
    int v = 0;
    for (int i = 0; i < 2; i++) {
        char c = s[i];
        v = v * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return v;
}

int trace_parse(const char *h, trace_ctx_t *out)
{
    if (h == NULL)
        return ERR_INVALID;
    size_t len = strlen(h);
    if (len < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-')
        return ERR_INVALID;
    if (lower_hex(h, 2) < 0 || strncmp(h, "ff", 2) == 0)
        return ERR_INVALID;
    if (strncmp(h, "00", 2) == 0 ? len != 55 : (len > 55 && h[55] != '-'))
        return ERR_INVALID;
    if (lower_hex(h + 3, 32) != 1 || lower_hex(h + 36, 16) != 1 || lower_hex(h + 53, 2) < 0)
        return ERR_INVALID;
    memcpy(out->trace_id, h + 3, 32);
    out->trace_id[32] = '\0';
    memcpy(out->span_id, h + 36, 16);
    out->span_id[16] = '\0';
    out->flags = (uint8_t)hex_byte(h + 53);
    return 0;
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char b[16];
    pthread_once(&sodium_once, sodium_start);
    do {
        randombytes_buf(b, bytes);
        hex_encode(b, bytes, out);
    } while (lower_hex(out, 2 * bytes) != 1); /* all zero is invalid: draw again */
}

void trace_new_root(trace_ctx_t *out)
{
    random_hex(out->trace_id, 16);
    random_hex(out->span_id, 8);
    out->flags = 1;
}

void trace_child(const trace_ctx_t *parent, trace_ctx_t *out)
{
    trace_ctx_t c;
    memcpy(c.trace_id, parent->trace_id, sizeof(c.trace_id));
    c.flags = parent->flags;
    random_hex(c.span_id, 8);
    *out = c;
}

void trace_format(const trace_ctx_t *ctx, char out[TRACEPARENT_LEN])
{
    snprintf(out, TRACEPARENT_LEN, "00-%.32s-%.16s-%02x", ctx->trace_id, ctx->span_id,
             (unsigned)ctx->flags);
}

void trace_from_header_or_new(const char *header, trace_ctx_t *out)
{
    trace_ctx_t parent;
    if (header != NULL && trace_parse(header, &parent) == 0)
        trace_child(&parent, out);
    else
        trace_new_root(out);
}
