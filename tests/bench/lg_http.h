/* lg_http: an incremental HTTP/1.1 response parser for the load generator's client.
 *
 * The client sends one request at a time on a keep-alive connection and feeds whatever the
 * socket gives it, in pieces of any size, to lg_http_feed(). The parser reads the status line,
 * the headers it needs (Content-Length, Transfer-Encoding: chunked, Connection, Retry-After)
 * and the body, which it collects in a buffer of its own (de-chunked). It stops at the end of the
 * response and says how many bytes it used, so bytes of a following response stay with the
 * caller. A body delimited by the end of the connection (no length, not chunked) ends with
 * lg_http_eof(). Interim 1xx responses are skipped. Limits: a header line of at most
 * LG_HTTP_LINE_MAX bytes, a body of at most LG_HTTP_BODY_MAX bytes; beyond, an error.
 *
 * Ownership: lg_http_resp_t is a caller-placed struct; lg_http_init() prepares it,
 * lg_http_reset() readies it for the next response on the same connection (the body buffer is
 * kept for reuse) and lg_http_free() releases the body buffer. Threading: none. */
#ifndef PETSTORE_LG_HTTP_H
#define PETSTORE_LG_HTTP_H

#include <stddef.h>

#define LG_HTTP_LINE_MAX 8192
#define LG_HTTP_BODY_MAX (4u << 20)

/* lg_http_feed outcomes. */
enum {
    LG_HTTP_MORE = 0,   /* the response is not complete yet: feed more */
    LG_HTTP_DONE = 1,   /* the response is complete */
    LG_HTTP_ERROR = -1, /* malformed, or over a limit: close the connection */
    LG_HTTP_NOMEM = -2
};

typedef struct lg_http_resp {
    /* The parsed response, valid once lg_http_feed returned LG_HTTP_DONE (status and the header
     * fields as soon as the headers are read). */
    int status;               /* e.g. 202 */
    long long content_length; /* -1 when absent */
    int chunked;              /* Transfer-Encoding ends with chunked */
    int close;                /* the server will close: Connection: close, or HTTP/1.0 without
                                 keep-alive, or a body delimited by the close */
    long retry_after;         /* Retry-After in seconds; -1 when absent or not a number */
    char *body;               /* owned; NUL-terminated (not counted in body_len); may be NULL
                                 when the body is empty */
    size_t body_len;
    /* Parser state. */
    int state;
    int minor; /* HTTP/1.x minor version */
    int keep_alive_hdr;
    size_t body_cap;
    char line[LG_HTTP_LINE_MAX];
    size_t line_len;
    unsigned long long left; /* bytes left of the body or of the current chunk */
} lg_http_resp_t;

/* Prepares r for a first response. */
void lg_http_init(lg_http_resp_t *r);

/* Readies r for the next response on the same connection; keeps the body buffer. */
void lg_http_reset(lg_http_resp_t *r);

/* Frees the body buffer. Accepts NULL. */
void lg_http_free(lg_http_resp_t *r);

/* Parses data[0..n). Sets *used to the bytes consumed (all of them unless the response ended
 * before: the rest belongs to what follows). Returns LG_HTTP_MORE, LG_HTTP_DONE (call
 * lg_http_reset before feeding the next response), LG_HTTP_ERROR or LG_HTTP_NOMEM. */
int lg_http_feed(lg_http_resp_t *r, const char *data, size_t n, size_t *used);

/* The connection reached its end. Returns LG_HTTP_DONE when that completes a response whose body
 * runs until the close, LG_HTTP_ERROR otherwise (the response was cut short, or none began). */
int lg_http_eof(lg_http_resp_t *r);

#endif
