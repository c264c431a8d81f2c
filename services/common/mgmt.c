/* mgmt: a small HTTP/1.1 GET client for the RabbitMQ management API (see mgmt.h).
 *
 * Why our own client: the daemons need two or three GETs at start and the dead-letter tool a
 * few more; libcurl would be a new dependency for that. The subset we speak is small and
 * checked by tests/unit/test_mgmt.c piece by piece (mgmt_internal.h), and over real TLS by
 * tests/unit/test_mgmt_tls.c:
 *   - one TCP connection per request, non-blocking, every wait a poll() bounded by the one
 *     deadline of the whole exchange (connect, TLS handshake, send, receive);
 *   - https:// with OpenSSL (which librabbitmq links anyway): TLS 1.2 at least, the peer's
 *     certificate verified against the caller's CA file or the system's store, and checked
 *     against the URL's host name (sent as SNI too) or IP address; OpenSSL's reads and writes
 *     go through our own socket BIO, so that they never raise SIGPIPE and every "want read" or
 *     "want write" is a poll() under the same deadline;
 *   - the request says `Connection: close`, but the answer is not trusted to end at EOF: it is
 *     complete when its Content-Length is in, or its last chunk, or (neither given) at EOF (for
 *     TLS, a close_notify: an unannounced close could have cut the answer short);
 *     1xx interim answers are skipped, 204/304 have no body;
 *   - Basic authentication (RFC 7617) with base64 from libsodium; the request buffer, which
 *     holds the encoded password, is wiped as soon as it has been sent;
 *   - error messages name the URL without credentials (they never appear in a URL here) and
 *     say what to do; the classes follow mgmt.h. A TLS-only listener asked in plain http://
 *     either hangs up (ERR_RETRY) or answers with a TLS alert (ERR_INTERNAL); both messages
 *     suggest https://.
 * Limits: MGMT_MAX_HEADER_BYTES of headers, MGMT_MAX_BODY_BYTES of body. */
#include "mgmt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "mgmt_internal.h"

#define CHUNK_LINE_MAX 1024 /* a chunk-size line (with extensions) longer than this is refused */

/* ---- URL ------------------------------------------------------------------------------- */

static int is_bad_url_byte(unsigned char c) { return c <= 0x20 || c >= 0x7f; }

int mgmt__url_parse(const char *base_url, mgmt__url_t *out, err_t *e)
{
    mgmt__url_t u;
    memset(&u, 0, sizeof(u));
    if (base_url == NULL || base_url[0] == '\0')
        return err_set(e, ERR_CONFIG, "management URL is empty");
    size_t scheme_len = 0;
    if (strncasecmp(base_url, "https://", 8) == 0) {
        u.tls = 1;
        scheme_len = 8;
    } else if (strncasecmp(base_url, "http://", 7) == 0) {
        scheme_len = 7;
    } else {
        return err_set(e, ERR_CONFIG, "management URL must start with http:// or https://");
    }
    for (const char *s = base_url; *s != '\0'; s++)
        if (is_bad_url_byte((unsigned char)*s))
            return err_set(e, ERR_CONFIG, "management URL holds a space or control character");
    if (strpbrk(base_url, "?#") != NULL)
        return err_set(e, ERR_CONFIG, "management URL must not have a query or fragment");

    const char *auth = base_url + scheme_len;
    size_t auth_len = strcspn(auth, "/");
    if (memchr(auth, '@', auth_len) != NULL)
        return err_set(e, ERR_CONFIG,
                       "management URL must not hold credentials (they come from AMQP_URL)");
    const char *host = auth;
    size_t host_len = auth_len;
    const char *port = NULL;
    size_t port_len = 0;
    if (auth_len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (close == NULL)
            return err_set(e, ERR_CONFIG, "management URL: IPv6 host lacks its closing ']'");
        host = auth + 1;
        host_len = (size_t)(close - host);
        size_t rest = auth_len - (size_t)(close + 1 - auth);
        if (rest > 0) {
            if (close[1] != ':')
                return err_set(e, ERR_CONFIG, "management URL: unexpected text after ']'");
            port = close + 2;
            port_len = rest - 1;
        }
        u.ipv6 = 1;
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        if (colon != NULL) {
            host_len = (size_t)(colon - auth);
            port = colon + 1;
            port_len = auth_len - host_len - 1;
        }
    }
    if (host_len == 0)
        return err_set(e, ERR_CONFIG, "management URL has no host");
    if (host_len >= sizeof(u.host))
        return err_set(e, ERR_CONFIG, "management URL: host name too long");
    memcpy(u.host, host, host_len);
    if (port == NULL || port_len == 0) {
        snprintf(u.port, sizeof(u.port), "%s", u.tls ? "443" : "80");
    } else {
        long n = 0;
        for (size_t i = 0; i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9' || n > 65535)
                return err_set(e, ERR_CONFIG, "management URL: port must be a number 1..65535");
            n = n * 10 + (port[i] - '0');
        }
        if (n < 1 || n > 65535)
            return err_set(e, ERR_CONFIG, "management URL: port must be a number 1..65535");
        snprintf(u.port, sizeof(u.port), "%ld", n);
    }
    const char *path = auth + auth_len;
    size_t path_len = strlen(path);
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    if (path_len >= sizeof(u.prefix))
        return err_set(e, ERR_CONFIG, "management URL: path too long");
    memcpy(u.prefix, path, path_len);
    *out = u;
    return 0;
}

/* ---- request --------------------------------------------------------------------------- */

int mgmt__request(const mgmt__url_t *u, const char *user, const char *password, const char *path,
                  buf_t *out, err_t *e)
{
    if (path == NULL || path[0] != '/')
        return err_set(e, ERR_INVALID, "management path must start with '/'");
    for (const char *s = path; *s != '\0'; s++)
        if (is_bad_url_byte((unsigned char)*s))
            return err_set(e, ERR_INVALID, "management path holds a space or control character");
    if (strchr(user, ':') != NULL)
        return err_set(e, ERR_INVALID, "a user name with ':' cannot log in with Basic auth");

    size_t ulen = strlen(user), plen = strlen(password);
    size_t clen = ulen + 1 + plen;
    size_t blen = sodium_base64_ENCODED_LEN(clen, sodium_base64_VARIANT_ORIGINAL);
    char *cred = malloc(clen + 1);
    char *b64 = malloc(blen);
    int rc = 0;
    if (cred == NULL || b64 == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(cred, user, ulen);
    cred[ulen] = ':';
    memcpy(cred + ulen + 1, password, plen);
    sodium_bin2base64(b64, blen, (const unsigned char *)cred, clen, sodium_base64_VARIANT_ORIGINAL);
    if (buf_printf(out,
                   "GET %s%s HTTP/1.1\r\n"
                   "Host: %s%s%s:%s\r\n"
                   "Authorization: Basic %s\r\n"
                   "Accept: application/json\r\n"
                   "User-Agent: petstore\r\n"
                   "Connection: close\r\n"
                   "\r\n",
                   u->prefix, path, u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "", u->port,
                   b64) != 0)
        rc = err_set(e, ERR_NOMEM, "out of memory");
out:
    if (cred != NULL)
        sodium_memzero(cred, clen + 1);
    if (b64 != NULL)
        sodium_memzero(b64, blen);
    free(cred);
    free(b64);
    return rc;
}

/* ---- response -------------------------------------------------------------------------- */

/* The line that starts at p (n bytes available): its length without CRLF (or a bare LF) and,
 * in *next, the offset just past its newline. -1 when no newline has arrived yet. */
static long line_at(const char *p, size_t n, size_t *next)
{
    const char *nl = memchr(p, '\n', n);
    if (nl == NULL)
        return -1;
    size_t len = (size_t)(nl - p);
    *next = len + 1;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    return (long)len;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mgmt__chunked_decode(const char *p, size_t n, buf_t *out, size_t *used, err_t *e)
{
    size_t i = 0, total = 0;
    for (;;) {
        size_t next = 0;
        long len = line_at(p + i, n - i, &next);
        if (len < 0) {
            if (n - i > CHUNK_LINE_MAX)
                return err_set(e, ERR_INTERNAL, "chunked body: chunk-size line too long");
            return 0;
        }
        if (len > CHUNK_LINE_MAX)
            return err_set(e, ERR_INTERNAL, "chunked body: chunk-size line too long");
        const char *line = p + i;
        size_t size = 0, k = 0;
        for (; k < (size_t)len && hexdigit(line[k]) >= 0; k++) {
            size = size * 16 + (size_t)hexdigit(line[k]);
            if (size > MGMT_MAX_BODY_BYTES)
                return err_set(e, ERR_INTERNAL, "chunked body larger than %d bytes",
                               MGMT_MAX_BODY_BYTES);
        }
        if (k == 0)
            return err_set(e, ERR_INTERNAL, "chunked body: a chunk does not start with its size");
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k < (size_t)len && line[k] != ';')
            return err_set(e, ERR_INTERNAL, "chunked body: bad chunk-size line");
        i += next;
        if (size == 0) {
            /* The trailer: header lines (ignored) up to an empty line. */
            for (;;) {
                len = line_at(p + i, n - i, &next);
                if (len < 0) {
                    if (n - i > MGMT_MAX_HEADER_BYTES)
                        return err_set(e, ERR_INTERNAL, "chunked body: trailer too long");
                    return 0;
                }
                i += next;
                if (len == 0) {
                    *used = i;
                    return 1;
                }
            }
        }
        total += size;
        if (total > MGMT_MAX_BODY_BYTES)
            return err_set(e, ERR_INTERNAL, "chunked body larger than %d bytes",
                           MGMT_MAX_BODY_BYTES);
        if (n - i < size + 1)
            return 0;
        size_t crlf = 0;
        if (p[i + size] == '\n') {
            crlf = 1;
        } else if (p[i + size] == '\r') {
            if (n - i < size + 2)
                return 0;
            if (p[i + size + 1] != '\n')
                return err_set(e, ERR_INTERNAL, "chunked body: chunk data not ended by CRLF");
            crlf = 2;
        } else {
            return err_set(e, ERR_INTERNAL, "chunked body: chunk data not ended by CRLF");
        }
        if (out != NULL && buf_append(out, p + i, size) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
        i += size + crlf;
    }
}

/* What the header section says about the body. */
typedef struct head {
    int status;
    char reason[64];
    int chunked;
    long content_length; /* -1: none */
} head_t;

static int parse_status_line(const char *line, size_t len, head_t *h, err_t *e)
{
    /* HTTP/1.x SP 3DIGIT [SP reason-phrase] */
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return err_set(e, ERR_INTERNAL, "not an HTTP/1.x answer");
    int status = 0;
    for (size_t k = 9; k < 12; k++) {
        if (line[k] < '0' || line[k] > '9')
            return err_set(e, ERR_INTERNAL, "not an HTTP/1.x answer (bad status code)");
        status = status * 10 + (line[k] - '0');
    }
    if (status < 100 || status > 599 || (len > 12 && line[12] != ' '))
        return err_set(e, ERR_INTERNAL, "not an HTTP/1.x answer (bad status code)");
    h->status = status;
    size_t rlen = len > 13 ? len - 13 : 0;
    if (rlen >= sizeof(h->reason))
        rlen = sizeof(h->reason) - 1;
    if (rlen > 0)
        memcpy(h->reason, line + 13, rlen);
    h->reason[rlen] = '\0';
    return 0;
}

/* The field value of a header line, without leading and trailing spaces and tabs. */
static void trim(const char **v, size_t *n)
{
    while (*n > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*n)--;
    }
    while (*n > 0 && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

static int parse_header(const char *line, size_t len, head_t *h, err_t *e)
{
    const char *colon = memchr(line, ':', len);
    if (line[0] == ' ' || line[0] == '\t')
        return err_set(e, ERR_INTERNAL, "folded header lines are not supported");
    if (colon == NULL || colon == line)
        return err_set(e, ERR_INTERNAL, "malformed header line");
    size_t name_len = (size_t)(colon - line);
    for (size_t k = 0; k < name_len; k++)
        if (line[k] == ' ' || line[k] == '\t')
            return err_set(e, ERR_INTERNAL, "malformed header name");
    const char *v = colon + 1;
    size_t vlen = len - name_len - 1;
    trim(&v, &vlen);
    if (name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        long n = 0;
        if (vlen == 0)
            return err_set(e, ERR_INTERNAL, "empty Content-Length");
        for (size_t k = 0; k < vlen; k++) {
            if (v[k] < '0' || v[k] > '9')
                return err_set(e, ERR_INTERNAL, "bad Content-Length");
            n = n * 10 + (v[k] - '0');
            if (n > MGMT_MAX_BODY_BYTES)
                return err_set(e, ERR_INTERNAL, "body larger than %d bytes", MGMT_MAX_BODY_BYTES);
        }
        if (h->content_length >= 0 && h->content_length != n)
            return err_set(e, ERR_INTERNAL, "two different Content-Length headers");
        h->content_length = n;
    } else if (name_len == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
        /* We send no TE header, so the only coding a server may apply is chunked. */
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
            return err_set(e, ERR_INTERNAL, "unsupported Transfer-Encoding \"%.*s\"",
                           (int)(vlen > 40 ? 40 : vlen), v);
        h->chunked = 1;
    }
    return 0;
}

/* Whether p starts like a TLS record (content type 20..23, protocol major version 3): what a
 * TLS-only listener sends back to a plain HTTP request (an alert) before it hangs up. */
static int looks_like_tls(const char *p, size_t n)
{
    return n >= 2 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 0x03;
}

/* Parses the header section at p. Returns 1 (complete: *h filled, *body_at = its length), 0
 * (more bytes needed) or ERR_INTERNAL. */
static int parse_head(const char *p, size_t n, head_t *h, size_t *body_at, err_t *e)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    if (looks_like_tls(p, n))
        return err_set(e, ERR_INTERNAL,
                       "the server answered in TLS, not plain HTTP: use an https:// URL");
    size_t limit = n < MGMT_MAX_HEADER_BYTES ? n : MGMT_MAX_HEADER_BYTES;
    size_t i = 0, next = 0;
    int first = 1;
    for (;;) {
        long len = line_at(p + i, limit - i, &next);
        if (len < 0) {
            if (n >= MGMT_MAX_HEADER_BYTES)
                return err_set(e, ERR_INTERNAL, "header section larger than %d bytes",
                               MGMT_MAX_HEADER_BYTES);
            /* Fail early on bytes that cannot become an HTTP answer (another protocol). */
            if (first && n >= 5 && memcmp(p, "HTTP/", 5) != 0)
                return err_set(e, ERR_INTERNAL, "not an HTTP/1.x answer");
            return 0;
        }
        int rc = 0;
        if (first)
            rc = parse_status_line(p + i, (size_t)len, h, e);
        else if (len == 0) {
            *body_at = i + next;
            return 1;
        } else
            rc = parse_header(p + i, (size_t)len, h, e);
        if (rc != 0)
            return rc;
        first = 0;
        i += next;
    }
}

void mgmt__response_free(mgmt__response_t *r)
{
    if (r != NULL)
        buf_free(&r->body);
}

int mgmt__response_parse(const char *buf, size_t len, int eof, mgmt__response_t *out, err_t *e)
{
    size_t off = 0;
    head_t h;
    for (;;) {
        size_t body_at = 0;
        int rc = parse_head(buf + off, len - off, &h, &body_at, e);
        if (rc <= 0)
            return rc;
        off += body_at;
        if (h.status >= 200)
            break;
        /* An interim answer (100 Continue, 103 Early Hints) has no body: the real one follows. */
    }
    const char *body = buf + off;
    size_t avail = len - off;
    buf_t b = BUF_INIT;
    if (h.status == 204 || h.status == 304) {
        /* no body */
    } else if (h.chunked) {
        size_t used = 0;
        int rc = mgmt__chunked_decode(body, avail, NULL, &used, e);
        if (rc <= 0)
            return rc;
        rc = mgmt__chunked_decode(body, avail, &b, &used, e);
        if (rc < 0) {
            buf_free(&b);
            return rc;
        }
    } else if (h.content_length >= 0) {
        if (avail < (size_t)h.content_length)
            return 0;
        if (buf_append(&b, body, (size_t)h.content_length) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
    } else {
        if (avail > MGMT_MAX_BODY_BYTES)
            return err_set(e, ERR_INTERNAL, "body larger than %d bytes", MGMT_MAX_BODY_BYTES);
        if (!eof)
            return 0;
        if (buf_append(&b, body, avail) != 0)
            return err_set(e, ERR_NOMEM, "out of memory");
    }
    out->status = h.status;
    memcpy(out->reason, h.reason, sizeof(out->reason));
    out->body = b;
    return 1;
}

/* ---- the exchange ---------------------------------------------------------------------- */

/* Appended to the error when a plain request got no answer at all: a TLS-only listener reads
 * the request as a broken TLS record and hangs up without a word. */
#define PLAIN_TO_TLS_HINT " (if that port speaks TLS only, use an https:// URL)"

/* One exchange's connection: the socket and, for https://, the TLS session over it. The TLS
 * layer reads and writes the socket through sock_bio_* (below), which record the socket's own
 * errno and whether the peer has closed. */
typedef struct conn {
    int fd;
    SSL_CTX *ctx;           /* owned; NULL for http:// */
    SSL *ssl;               /* owned (with its BIO); NULL for http:// */
    BIO_METHOD *bio_method; /* owned; freed after ssl, whose BIO uses it */
    int sys_errno;          /* errno of the socket call that failed last, 0 none */
    int eof;                /* the peer closed its side */
} conn_t;

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits for events on fd until deadline. 1 ready, 0 timed out, -1 poll failed (errno). */
static int wait_fd(int fd, short events, long deadline)
{
    for (;;) {
        long left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Connects to the URL's host and port, trying every address in turn. *out is the socket. */
static int connect_to(const mgmt__url_t *u, const char *where, long deadline, int *out, err_t *e)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &ai);
    if (g == EAI_MEMORY)
        return err_set(e, ERR_NOMEM, "out of memory");
    if (g != 0) /* a name that does not resolve yet (a container starting) may resolve later */
        return err_set(e, ERR_RETRY, "%s: cannot resolve %s: %s", where, u->host, gai_strerror(g));
    /* The last address's failure, reported only when every address has failed. */
    err_t last;
    err_clear(&last);
    int rc = 0;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0 || set_flags(fd) != 0) {
            rc = err_set(&last, ERR_RETRY, "%s: socket: %s", where, strerror(errno));
            if (fd >= 0)
                close(fd);
            continue;
        }
        int err = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS || err == EINTR) {
                int w = wait_fd(fd, POLLOUT, deadline);
                if (w == 0) {
                    close(fd);
                    rc = err_set(&last, ERR_TIMEOUT, "%s: connecting timed out", where);
                    break;
                }
                socklen_t sl = sizeof(err);
                if (w < 0)
                    err = errno;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
                    err = errno;
            }
        }
        if (err == 0) {
            *out = fd;
            freeaddrinfo(ai);
            return 0;
        }
        close(fd);
        rc = err_set(&last, ERR_RETRY,
                     "%s: cannot connect: %s (is RabbitMQ's management plugin up?)", where,
                     strerror(err));
    }
    freeaddrinfo(ai);
    if (rc == 0) /* getaddrinfo succeeded with an empty list */
        return err_set(e, ERR_RETRY, "%s: no address to connect to", where);
    return err_set(e, rc, "%s", last.msg);
}

/* ---- TLS ----------------------------------------------------------------------------------
 *
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when the peer has gone.
 * The daemons ignore SIGPIPE (daemon.c) and so does the dlq tool (interrupt.c), but mgmt.h
 * promises any caller that a request never raises it, so the TLS session does its I/O through
 * the small BIO below: send(MSG_NOSIGNAL) and recv on the non-blocking socket, "retry" on
 * EAGAIN. SSL_ERROR_WANT_READ/WANT_WRITE then come back to us, and we poll for that direction
 * until the exchange's one deadline, as for plain HTTP. */

static int sock_bio_write(BIO *b, const char *p, int n)
{
    conn_t *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t k = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (k >= 0)
        return (int)k;
    c->sys_errno = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_write(b);
    return -1;
}

static int sock_bio_read(BIO *b, char *p, int n)
{
    conn_t *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t k = recv(c->fd, p, (size_t)n, 0);
    if (k > 0)
        return (int)k;
    if (k == 0) {
        c->eof = 1;
        return 0;
    }
    c->sys_errno = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        BIO_set_retry_read(b);
    return -1;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    if (cmd == BIO_CTRL_FLUSH)
        return 1;            /* nothing is buffered here */
    if (cmd == BIO_CTRL_EOF) /* tells OpenSSL a read of 0 was the peer closing */
        return ((conn_t *)BIO_get_data(b))->eof;
    return 0;
}

/* Before each SSL_* call: SSL_get_error reads the thread's error queue, and tls_error the
 * socket's errno, so neither may hold a stale value from an earlier call. */
static void tls_call_begins(conn_t *c)
{
    ERR_clear_error();
    c->sys_errno = 0;
}

/* OpenSSL's reason for the last error in this thread's queue, or fallback. */
static const char *tls_reason(const char *fallback)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r != NULL ? r : fallback;
}

/* The context of one request: TLS 1.2 at least, the peer's certificate verified against ca_file
 * (PEM) or, when NULL or "", the system's store. A context per request costs a parse of the CA
 * file (the system's store: some milliseconds) per request; the daemons make two or three at
 * start and the dlq tool a few per command, so that is cheaper than the shared state (and its
 * reload rules) a cached context would need. */
static int tls_context(const char *ca_file, const char *where, conn_t *c, err_t *e)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        return err_set(e, ERR_NOMEM, "%s: cannot create a TLS context: %s", where,
                       tls_reason("out of memory"));
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1)
        return err_set(e, ERR_INTERNAL, "%s: cannot require TLS 1.2: %s", where,
                       tls_reason("unknown"));
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL && ca_file[0] != '\0') {
        /* Opened here first for a plain reason (OpenSSL would say "system lib"). */
        FILE *f = fopen(ca_file, "r");
        if (f == NULL)
            return err_set(e, ERR_CONFIG, "%s: TLS_CA_FILE %s: cannot open it: %s", where, ca_file,
                           strerror(errno));
        fclose(f);
        if (SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1)
            return err_set(e, ERR_CONFIG,
                           "%s: TLS_CA_FILE %s: cannot read PEM certificates from it: %s (it "
                           "must hold one or more -----BEGIN CERTIFICATE----- blocks)",
                           where, ca_file, tls_reason("unknown"));
    } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        return err_set(e, ERR_CONFIG, "%s: cannot load the system's certificate store: %s", where,
                       tls_reason("unknown"));
    }
    c->bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "petstore mgmt socket");
    if (c->bio_method == NULL || BIO_meth_set_write(c->bio_method, sock_bio_write) != 1 ||
        BIO_meth_set_read(c->bio_method, sock_bio_read) != 1 ||
        BIO_meth_set_ctrl(c->bio_method, sock_bio_ctrl) != 1)
        return err_set(e, ERR_NOMEM, "%s: cannot create a TLS socket BIO", where);
    return 0;
}

/* Whether a verification error means "the chain does not lead to an authority we trust", which
 * TLS_CA_FILE cures, rather than a certificate that is bad in itself (expired, wrong name). */
static int untrusted_chain(long v)
{
    return v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE || v == X509_V_ERR_CERT_UNTRUSTED;
}

/* The error for an SSL_* call that returned r <= 0 and did not ask to wait. handshake: the call
 * was SSL_connect (only then can the certificate have failed). doing says what was under way,
 * worded to follow "connection closed" ("during the TLS handshake", "before a complete
 * answer"). */
static int tls_error(conn_t *c, int r, int handshake, const mgmt__url_t *u, const char *ca_file,
                     const char *where, const char *doing, err_t *e)
{
    int se = SSL_get_error(c->ssl, r);
    long v = SSL_get_verify_result(c->ssl);
    if (handshake && v != X509_V_OK) {
        const char *what = X509_verify_cert_error_string(v);
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return err_set(e, ERR_CONFIG,
                           "%s: certificate verify failed: %s: the broker's certificate does not "
                           "name %s; put a name or address the certificate holds (its "
                           "subjectAltName) in the URL",
                           where, what, u->host);
        if (untrusted_chain(v) && ca_file != NULL && ca_file[0] != '\0')
            return err_set(e, ERR_CONFIG,
                           "%s: certificate verify failed: %s; TLS_CA_FILE (%s) must hold the CA "
                           "that signed the broker's certificate",
                           where, what, ca_file);
        if (untrusted_chain(v))
            return err_set(e, ERR_CONFIG,
                           "%s: certificate verify failed: %s; set TLS_CA_FILE to the CA that "
                           "signed the broker's certificate",
                           where, what);
        return err_set(e, ERR_CONFIG, "%s: certificate verify failed: %s", where, what);
    }
    int unexpected_eof =
        se == SSL_ERROR_SSL && ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_SSL &&
        ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    if (se == SSL_ERROR_ZERO_RETURN || unexpected_eof || (se == SSL_ERROR_SYSCALL && c->eof))
        return err_set(e, ERR_RETRY, "%s: connection closed %s%s", where, doing,
                       handshake ? " (does that port speak TLS?)" : "");
    if (se == SSL_ERROR_SYSCALL)
        return err_set(e, ERR_RETRY, "%s: connection lost %s: %s", where, doing,
                       c->sys_errno != 0 ? strerror(c->sys_errno) : tls_reason("unknown error"));
    if (handshake) /* an alert from the server, or an answer that is not TLS at all */
        return err_set(e, ERR_CONFIG,
                       "%s: TLS handshake failed: %s (does that port speak TLS? a plain HTTP "
                       "listener needs an http:// URL)",
                       where, tls_reason("unknown error"));
    return err_set(e, ERR_RETRY, "%s: TLS error %s: %s", where, doing, tls_reason("unknown error"));
}

/* After an SSL_* call returned r <= 0: waits for the direction OpenSSL asked for and returns 0
 * (call again), or returns the error (ERR_TIMEOUT when the deadline passes first). */
static int tls_wait(conn_t *c, int r, int handshake, const mgmt__url_t *u, const char *ca_file,
                    const char *where, const char *doing, long deadline, err_t *e)
{
    int se = SSL_get_error(c->ssl, r);
    if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE)
        return tls_error(c, r, handshake, u, ca_file, where, doing, e);
    int w = wait_fd(c->fd, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
    if (w == 0)
        return err_set(e, ERR_TIMEOUT, "%s: timed out %s%s", where, doing,
                       handshake ? " (does that port speak TLS?)" : "");
    if (w < 0)
        return err_set(e, ERR_RETRY, "%s: poll: %s", where, strerror(errno));
    return 0;
}

/* Starts TLS on c->fd: SNI for a host name (not for an address), the certificate checked
 * against the URL's host name or address, then the handshake. */
static int tls_handshake(conn_t *c, const mgmt__url_t *u, const char *ca_file, const char *where,
                         long deadline, err_t *e)
{
    c->ssl = SSL_new(c->ctx);
    BIO *bio = c->ssl != NULL ? BIO_new(c->bio_method) : NULL;
    if (bio == NULL)
        return err_set(e, ERR_NOMEM, "%s: cannot create a TLS session", where);
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(c->ssl, bio, bio); /* the session owns the BIO from here */
    unsigned char addr[16];
    int numeric = u->ipv6 || inet_pton(AF_INET, u->host, addr) == 1;
    if (numeric) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), u->host) != 1)
            return err_set(e, ERR_CONFIG, "%s: cannot check a certificate against address %s",
                           where, u->host);
    } else {
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(c->ssl, u->host) != 1 || SSL_set_tlsext_host_name(c->ssl, u->host) != 1)
            return err_set(e, ERR_CONFIG, "%s: cannot check a certificate against host name %s",
                           where, u->host);
    }
    for (;;) {
        tls_call_begins(c);
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int rc = tls_wait(c, r, 1, u, ca_file, where, "during the TLS handshake", deadline, e);
        if (rc != 0)
            return rc;
    }
}

/* Frees what c owns and closes its socket. */
static void conn_close(conn_t *c)
{
    SSL_free(c->ssl);
    BIO_meth_free(c->bio_method);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    /* Leave nothing of ours in this thread's OpenSSL error queue for the next user (mq.c). */
    ERR_clear_error();
}

static int send_all(conn_t *c, const mgmt__url_t *u, const char *p, size_t n, const char *where,
                    long deadline, err_t *e)
{
    while (n > 0 && c->ssl != NULL) {
        tls_call_begins(c);
        int k = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        int rc = tls_wait(c, k, 0, u, NULL, where, "while sending the request", deadline, e);
        if (rc != 0)
            return rc;
    }
    while (n > 0) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(c->fd, POLLOUT, deadline);
            if (w == 0)
                return err_set(e, ERR_TIMEOUT, "%s: sending the request timed out", where);
            if (w > 0)
                continue;
        }
        return err_set(e, ERR_RETRY, "%s: connection lost while sending: %s", where,
                       strerror(errno));
    }
    return 0;
}

/* Reads what has arrived, waiting until something has: 0 with *got > 0 bytes in p, or *got == 0
 * when the peer has closed cleanly; or the error. */
static int read_some(conn_t *c, const mgmt__url_t *u, char *p, size_t n, size_t *got,
                     const char *where, long deadline, err_t *e)
{
    *got = 0;
    while (c->ssl != NULL) {
        tls_call_begins(c);
        int k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (k > 0) {
            *got = (size_t)k;
            return 0;
        }
        if (SSL_get_error(c->ssl, k) == SSL_ERROR_ZERO_RETURN)
            return 0; /* close_notify: the end of the answer */
        /* A close without close_notify is an error here (tls_error): the answer could have been
         * cut short, and one that was complete by its length has been parsed before. */
        int rc = tls_wait(c, k, 0, u, NULL, where, "before a complete answer", deadline, e);
        if (rc == ERR_TIMEOUT)
            return err_set(e, ERR_TIMEOUT, "%s: no complete answer in time", where);
        if (rc != 0)
            return rc;
    }
    for (;;) {
        ssize_t k = recv(c->fd, p, n, 0);
        if (k >= 0) {
            *got = (size_t)k;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return err_set(e, ERR_RETRY, "%s: connection lost: %s", where, strerror(errno));
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w == 0)
            return err_set(e, ERR_TIMEOUT, "%s: no complete answer in time", where);
        if (w < 0)
            return err_set(e, ERR_RETRY, "%s: poll: %s", where, strerror(errno));
    }
}

/* Reads until the response is complete. */
static int receive(conn_t *c, const mgmt__url_t *u, const char *where, long deadline,
                   mgmt__response_t *resp, err_t *e)
{
    buf_t in = BUF_INIT;
    char chunk[16384];
    int rc = 0;
    err_t re;
    err_clear(&re);
    for (;;) {
        size_t k = 0;
        rc = read_some(c, u, chunk, sizeof(chunk), &k, where, deadline, &re);
        if (rc != 0)
            break;
        if (k > 0 && buf_append(&in, chunk, k) != 0) {
            rc = err_set(&re, ERR_NOMEM, "out of memory");
            break;
        }
        err_t pe;
        err_clear(&pe);
        int p = mgmt__response_parse(in.data != NULL ? in.data : "", in.len, k == 0, resp, &pe);
        if (p == 1) {
            rc = 0;
            break;
        }
        if (p < 0) {
            rc = err_set(&re, p, "%s: %s", where, pe.msg);
            break;
        }
        if (k == 0) {
            rc = err_set(&re, ERR_RETRY, "%s: connection closed before a complete answer", where);
            break;
        }
    }
    /* Nothing at all came back to a plain request: perhaps a TLS-only listener. */
    int hint = rc != 0 && rc != ERR_TIMEOUT && !u->tls && in.len == 0;
    if (rc != 0)
        err_set(e, rc, "%s%s", re.msg, hint ? PLAIN_TO_TLS_HINT : "");
    buf_free(&in);
    return rc;
}

/* The error for a status other than 200. */
static int status_error(const mgmt__response_t *r, const char *where, err_t *e)
{
    int s = r->status;
    if (s == 401 || s == 403)
        return err_set(e, ERR_CONFIG,
                       "%s: %d %s: check the user's password, its `management` tag and its "
                       "permissions on the vhost",
                       where, s, r->reason);
    if (s == 404)
        return err_set(e, ERR_NOTFOUND, "%s: 404 %s: no such vhost or object", where, r->reason);
    if (s >= 500)
        return err_set(e, ERR_RETRY, "%s: %d %s: the broker cannot answer now", where, s,
                       r->reason);
    return err_set(e, ERR_INTERNAL, "%s: unexpected answer %d %s (is this the management API?)",
                   where, s, r->reason);
}

int mgmt_get_json(const char *base_url, const char *ca_file, const char *user, const char *password,
                  const char *path, int timeout_ms, json_t **out, err_t *e)
{
    mgmt__url_t u;
    int rc = mgmt__url_parse(base_url, &u, e);
    if (rc != 0)
        return rc;
    char where[600];
    snprintf(where, sizeof(where), "GET %s://%s%s%s:%s%s%s", u.tls ? "https" : "http",
             u.ipv6 ? "[" : "", u.host, u.ipv6 ? "]" : "", u.port, u.prefix,
             path != NULL ? path : "");
    long deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    buf_t req = BUF_INIT;
    mgmt__response_t resp;
    memset(&resp, 0, sizeof(resp));
    conn_t c = {.fd = -1};
    rc = mgmt__request(&u, user != NULL ? user : "", password != NULL ? password : "", path, &req,
                       e);
    if (rc == 0 && u.tls)
        rc = tls_context(ca_file, where, &c, e);
    if (rc == 0)
        rc = connect_to(&u, where, deadline, &c.fd, e);
    if (rc == 0 && u.tls)
        rc = tls_handshake(&c, &u, ca_file, where, deadline, e);
    if (rc == 0)
        rc = send_all(&c, &u, req.data, req.len, where, deadline, e);
    /* OpenSSL encrypts the request in place in its record buffer, so no plain copy of it
     * outlives this wipe. */
    if (req.data != NULL)
        sodium_memzero(req.data, req.len);
    buf_free(&req);
    if (rc == 0)
        rc = receive(&c, &u, where, deadline, &resp, e);
    if (rc == 0 && c.ssl != NULL) {
        /* A polite close_notify, one try: the answer is in, so nothing waits for it. */
        ERR_clear_error();
        (void)SSL_shutdown(c.ssl);
    }
    conn_close(&c);
    if (rc != 0)
        goto out;
    if (resp.status != 200) {
        rc = status_error(&resp, where, e);
        goto out;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(resp.body.data != NULL ? resp.body.data : "", resp.body.len, 0, &jerr);
    if (doc == NULL) {
        rc = err_set(e, ERR_INTERNAL, "%s: the answer is not JSON: %s", where, jerr.text);
        goto out;
    }
    *out = doc;
out:
    mgmt__response_free(&resp);
    return rc;
}

int mgmt_path_segment(const char *s, char *out, size_t n, err_t *e)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '~' || *p == '-';
        size_t need = plain ? 1 : 3;
        if (j + need >= n)
            return err_set(e, ERR_INVALID, "path segment too long for its buffer");
        if (plain) {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = hex[*p >> 4];
            out[j++] = hex[*p & 15];
        }
    }
    if (j >= n)
        return err_set(e, ERR_INVALID, "path segment too long for its buffer");
    out[j] = '\0';
    return 0;
}
