/* lg_http: incremental HTTP/1.1 response parser; see lg_http.h.
 *
 * A small state machine. Lines (status line, headers, chunk sizes, trailers) are gathered in
 * r->line until their '\n', whatever the read boundaries, so a line split across reads costs
 * nothing special; body bytes are copied straight into the body buffer. Invariant: between two
 * calls every byte the caller handed over is either in r->line, in r->body, or was a delimiter
 * already acted upon. Per RFC 9112 §6.3, Transfer-Encoding chunked overrides Content-Length, and
 * 1xx, 204 and 304 responses have no body. */
#include "lg_http.h"

#include <stdlib.h>
#include <string.h>

enum {
    S_STATUS,
    S_HEADER,
    S_BODY_LEN,
    S_BODY_EOF,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILER,
    S_DONE
};

void lg_http_init(lg_http_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    lg_http_reset(r);
}

void lg_http_reset(lg_http_resp_t *r)
{
    r->status = 0;
    r->content_length = -1;
    r->chunked = 0;
    r->close = 0;
    r->retry_after = -1;
    r->body_len = 0;
    if (r->body != NULL)
        r->body[0] = '\0';
    r->state = S_STATUS;
    r->minor = 1;
    r->keep_alive_hdr = 0;
    r->line_len = 0;
    r->left = 0;
}

void lg_http_free(lg_http_resp_t *r)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = NULL;
    r->body_cap = 0;
    r->body_len = 0;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* Case-insensitive equality of s[0..n) and the lower-case word w. */
static int word_is(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    if (n != wl)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != w[i])
            return 0;
    return 1;
}

/* Does the comma-separated list s[0..n) hold the token w (lower case)? last: only as its last
 * element. */
static int list_has(const char *s, size_t n, const char *w, int last)
{
    size_t i = 0;
    int found = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        int is = word_is(s + a, b - a, w);
        if (last)
            found = is;
        else if (is)
            return 1;
        i = j + 1;
    }
    return found;
}

static int body_append(lg_http_resp_t *r, const char *data, size_t n)
{
    if (r->body_len + n > LG_HTTP_BODY_MAX)
        return LG_HTTP_ERROR;
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (nb == NULL)
            return LG_HTTP_NOMEM;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

/* "HTTP/1.x NNN reason". */
static int parse_status(lg_http_resp_t *r, const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return LG_HTTP_ERROR;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return LG_HTTP_ERROR;
    if (n > 12 && s[12] != ' ')
        return LG_HTTP_ERROR;
    r->minor = s[7] - '0';
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    return 0;
}

static int parse_decimal(const char *s, size_t n, long long max, long long *out)
{
    if (n == 0)
        return LG_HTTP_ERROR;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return LG_HTTP_ERROR;
        if (v > (max - (s[i] - '0')) / 10)
            return LG_HTTP_ERROR;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int parse_header(lg_http_resp_t *r, const char *s, size_t n)
{
    if (s[0] == ' ' || s[0] == '\t')
        return 0; /* obsolete line folding: a continuation of a header we do not need */
    const char *colon = memchr(s, ':', n);
    if (colon == NULL || colon == s)
        return LG_HTTP_ERROR;
    size_t nl = (size_t)(colon - s);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (word_is(s, nl, "content-length")) {
        long long len = 0;
        if (parse_decimal(v, vl, (long long)LG_HTTP_BODY_MAX * 1024, &len) != 0)
            return LG_HTTP_ERROR;
        if (r->content_length >= 0 && r->content_length != len)
            return LG_HTTP_ERROR;
        r->content_length = len;
    } else if (word_is(s, nl, "transfer-encoding")) {
        r->chunked = list_has(v, vl, "chunked", 1);
    } else if (word_is(s, nl, "connection")) {
        if (list_has(v, vl, "close", 0))
            r->close = 1;
        if (list_has(v, vl, "keep-alive", 0))
            r->keep_alive_hdr = 1;
    } else if (word_is(s, nl, "retry-after")) {
        long long secs = 0;
        r->retry_after = parse_decimal(v, vl, 1000000000LL, &secs) == 0 ? (long)secs : -1;
    }
    return 0;
}

/* The headers ended: where does the body end? */
static int headers_done(lg_http_resp_t *r)
{
    if (r->minor == 0 && !r->keep_alive_hdr)
        r->close = 1;
    if (r->status / 100 == 1) {
        /* An interim response: the real one follows on the same connection. */
        int keep = r->close;
        lg_http_reset(r);
        r->close = keep;
        return LG_HTTP_MORE;
    }
    if (r->status == 204 || r->status == 304) {
        r->state = S_DONE;
        return LG_HTTP_DONE;
    }
    if (r->chunked) {
        r->content_length = -1;
        r->state = S_CHUNK_SIZE;
        return LG_HTTP_MORE;
    }
    if (r->content_length >= 0) {
        if (r->content_length > (long long)LG_HTTP_BODY_MAX)
            return LG_HTTP_ERROR;
        r->left = (unsigned long long)r->content_length;
        r->state = r->left ? S_BODY_LEN : S_DONE;
        return r->left ? LG_HTTP_MORE : LG_HTTP_DONE;
    }
    r->close = 1;
    r->state = S_BODY_EOF;
    return LG_HTTP_MORE;
}

/* "HEX[;extensions]". */
static int parse_chunk_size(lg_http_resp_t *r, const char *s, size_t n)
{
    unsigned long long v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int c = lower((unsigned char)s[i]), d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            break;
        if (v > LG_HTTP_BODY_MAX)
            return LG_HTTP_ERROR;
        v = v * 16 + (unsigned)d;
    }
    if (i == 0)
        return LG_HTTP_ERROR;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < n && s[i] != ';')
        return LG_HTTP_ERROR;
    if (r->body_len + v > LG_HTTP_BODY_MAX)
        return LG_HTTP_ERROR;
    r->left = v;
    r->state = v ? S_CHUNK_DATA : S_TRAILER;
    return 0;
}

/* One complete line in r->line (without its CR LF): act on it. */
static int on_line(lg_http_resp_t *r)
{
    const char *s = r->line;
    size_t n = r->line_len;
    r->line_len = 0;
    switch (r->state) {
    case S_STATUS:
        if (n == 0)
            return LG_HTTP_MORE; /* tolerate a stray CR LF before the status line */
        if (parse_status(r, s, n) != 0)
            return LG_HTTP_ERROR;
        r->state = S_HEADER;
        return LG_HTTP_MORE;
    case S_HEADER:
        if (n == 0)
            return headers_done(r);
        return parse_header(r, s, n) == 0 ? LG_HTTP_MORE : LG_HTTP_ERROR;
    case S_CHUNK_SIZE:
        return parse_chunk_size(r, s, n) == 0 ? LG_HTTP_MORE : LG_HTTP_ERROR;
    case S_CHUNK_END:
        if (n != 0)
            return LG_HTTP_ERROR;
        r->state = S_CHUNK_SIZE;
        return LG_HTTP_MORE;
    case S_TRAILER:
        if (n != 0)
            return LG_HTTP_MORE; /* trailer fields are ignored */
        r->state = S_DONE;
        return LG_HTTP_DONE;
    default:
        return LG_HTTP_ERROR;
    }
}

int lg_http_feed(lg_http_resp_t *r, const char *data, size_t n, size_t *used)
{
    size_t i = 0;
    int rc = LG_HTTP_MORE;
    if (r->state == S_DONE) {
        *used = 0;
        return LG_HTTP_DONE;
    }
    while (i < n && rc == LG_HTTP_MORE) {
        switch (r->state) {
        case S_BODY_LEN:
        case S_CHUNK_DATA: {
            size_t take = n - i;
            if ((unsigned long long)take > r->left)
                take = (size_t)r->left;
            rc = body_append(r, data + i, take);
            if (rc != 0)
                break;
            i += take;
            r->left -= take;
            if (r->left == 0) {
                if (r->state == S_BODY_LEN) {
                    r->state = S_DONE;
                    rc = LG_HTTP_DONE;
                } else {
                    r->state = S_CHUNK_END;
                }
            }
            break;
        }
        case S_BODY_EOF:
            rc = body_append(r, data + i, n - i);
            if (rc == 0)
                i = n;
            break;
        default: {
            const char *nl = memchr(data + i, '\n', n - i);
            size_t take = nl ? (size_t)(nl - (data + i)) : n - i;
            if (r->line_len + take >= LG_HTTP_LINE_MAX) {
                rc = LG_HTTP_ERROR;
                break;
            }
            memcpy(r->line + r->line_len, data + i, take);
            r->line_len += take;
            i += take;
            if (nl == NULL)
                break;
            i++; /* the '\n' */
            if (r->line_len > 0 && r->line[r->line_len - 1] == '\r')
                r->line_len--;
            rc = on_line(r);
            break;
        }
        }
    }
    *used = i;
    return rc;
}

int lg_http_eof(lg_http_resp_t *r)
{
    if (r->state == S_BODY_EOF) {
        r->state = S_DONE;
        return LG_HTTP_DONE;
    }
    return r->state == S_DONE ? LG_HTTP_DONE : LG_HTTP_ERROR;
}
