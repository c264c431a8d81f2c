/* mgmt_internal: the pure pieces of mgmt.c (URL, request text, response parsing), apart from
 * the socket so that the unit tests can feed them every shape of answer. Not part of the
 * runtime's API: callers include mgmt.h. */
#ifndef PETSTORE_MGMT_INTERNAL_H
#define PETSTORE_MGMT_INTERNAL_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

/* The longest header section accepted (status line and headers), and the longest body. */
#define MGMT_MAX_HEADER_BYTES 65536
#define MGMT_MAX_BODY_BYTES (16 * 1024 * 1024)

/* A parsed base URL "http[s]://host[:port][/prefix][/]". */
typedef struct mgmt__url {
    char host[256];   /* as written, without the brackets of an IPv6 literal */
    char port[6];     /* decimal; "80" (http) or "443" (https) when the URL has none */
    char prefix[256]; /* "" or "/prefix" without a trailing slash (a management path_prefix) */
    int ipv6;         /* host is an IPv6 literal (written in brackets) */
    int tls;          /* https:// */
} mgmt__url_t;

/* Parses base_url. Refuses (ERR_CONFIG, a message saying why) anything but http:// or https://
 * with a host, an optional port 1..65535 and an optional path; user info, a query or a fragment
 * are refused too (credentials are passed apart, so they never sit in a URL that gets logged). */
int mgmt__url_parse(const char *base_url, mgmt__url_t *out, err_t *e) PETSTORE_NODISCARD;

/* Appends to out the request for GET u->prefix + path: HTTP/1.1, Host, Basic authorization of
 * user:password, Accept: application/json, Connection: close. The caller wipes out after use (it
 * holds the password, base64-encoded). ERR_INVALID if path does not start with '/' or holds a
 * byte that may not appear in a request line (space, control); ERR_NOMEM. */
int mgmt__request(const mgmt__url_t *u, const char *user, const char *password, const char *path,
                  buf_t *out, err_t *e) PETSTORE_NODISCARD;

/* A complete response. body is owned (buf_free or mgmt__response_free). */
typedef struct mgmt__response {
    int status;      /* 100..599 */
    char reason[64]; /* the reason phrase, truncated; may be "" */
    buf_t body;      /* decoded (de-chunked); data NULL when empty */
} mgmt__response_t;

/* Parses the bytes received so far, buf[0..len), as an HTTP/1.x response to a GET. eof says the
 * peer closed the connection (then a body without Content-Length or chunking ends there).
 * Interim 1xx responses are skipped; 204 and 304 have no body; Transfer-Encoding: chunked wins
 * over Content-Length; bytes past the end of the response are ignored.
 * Returns 1 when the response is complete (*out filled; free with mgmt__response_free), 0 when
 * more bytes are needed (*out untouched), ERR_INTERNAL when the bytes are not a valid response
 * or exceed the limits above (e says what; bytes that start a TLS record, a TLS-only listener
 * answering a plain request, say to use https://), or ERR_NOMEM. */
int mgmt__response_parse(const char *buf, size_t len, int eof, mgmt__response_t *out,
                         err_t *e) PETSTORE_NODISCARD;

/* Frees r's body. Accepts NULL. */
void mgmt__response_free(mgmt__response_t *r);

/* Decodes a chunked body that starts at p, of which n bytes have arrived: chunk-size (hex) with
 * optional extensions, CRLF, data, CRLF, ..., a last chunk of size 0, optional trailer fields,
 * CRLF. With out == NULL it only checks whether the body is complete. Returns 1 when complete
 * (the data appended to out, *used = the bytes the body took including its trailer), 0 when
 * more bytes are needed, ERR_INTERNAL when malformed or larger than MGMT_MAX_BODY_BYTES, or
 * ERR_NOMEM. */
int mgmt__chunked_decode(const char *p, size_t n, buf_t *out, size_t *used,
                         err_t *e) PETSTORE_NODISCARD;

#endif
