/* mgmt: a small HTTP/1.1 GET client for the RabbitMQ management API (see mgmt.h).
 *
 * Why our own client: the daemons need two or three GETs at start and the dead-letter tool a
 * few more; libcurl would be a new dependency for that. The subset we speak is small and
 * checked by tests/unit/test_mgmt.c piece by piece (mgmt_internal.h):
 *   - one TCP connection per request, non-blocking, every wait a poll() bounded by the one
 *     deadline of the whole exchange (connect, send, receive);
 *   - the request says `Connection: close`, but the answer is not trusted to end at EOF: it is
 *     complete when its Content-Length is in, or its last chunk, or (neither given) at EOF;
 *     1xx interim answers are skipped, 204/304 have no body;
 *   - Basic authentication (RFC 7617) with base64 from libsodium; the request buffer, which
 *     holds the encoded password, is wiped as soon as it has been sent;
 *   - error messages name the URL without credentials (they never appear in a URL here) and
 *     say what to do; the classes follow mgmt.h.
 * No TLS: the management listener of this project binds to 127.0.0.1 (or the container
 * network). Limits: MGMT_MAX_HEADER_BYTES of headers, MGMT_MAX_BODY_BYTES of body. */
#include "mgmt.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
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
    if (strncasecmp(base_url, "https://", 8) == 0)
        return err_set(e, ERR_CONFIG, "management URL: https:// is not supported, use http://");
    if (strncasecmp(base_url, "http://", 7) != 0)
        return err_set(e, ERR_CONFIG, "management URL must start with http://");
    for (const char *s = base_url; *s != '\0'; s++)
        if (is_bad_url_byte((unsigned char)*s))
            return err_set(e, ERR_CONFIG, "management URL holds a space or control character");
    if (strpbrk(base_url, "?#") != NULL)
        return err_set(e, ERR_CONFIG, "management URL must not have a query or fragment");

    const char *auth = base_url + 7;
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
        snprintf(u.port, sizeof(u.port), "80");
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

/* Parses the header section at p. Returns 1 (complete: *h filled, *body_at = its length), 0
 * (more bytes needed) or ERR_INTERNAL. */
static int parse_head(const char *p, size_t n, head_t *h, size_t *body_at, err_t *e)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
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
    int rc = err_set(e, ERR_RETRY, "%s: no address to connect to", where);
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0 || set_flags(fd) != 0) {
            rc = err_set(e, ERR_RETRY, "%s: socket: %s", where, strerror(errno));
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
                    rc = err_set(e, ERR_TIMEOUT, "%s: connecting timed out", where);
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
        rc = err_set(e, ERR_RETRY, "%s: cannot connect: %s (is RabbitMQ's management plugin up?)",
                     where, strerror(err));
    }
    freeaddrinfo(ai);
    return rc;
}

static int send_all(int fd, const char *p, size_t n, const char *where, long deadline, err_t *e)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline);
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

/* Reads until the response is complete. */
static int receive(int fd, const char *where, long deadline, mgmt__response_t *resp, err_t *e)
{
    buf_t in = BUF_INIT;
    char chunk[16384];
    int rc = 0;
    for (;;) {
        ssize_t k = recv(fd, chunk, sizeof(chunk), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0) {
                rc = err_set(e, ERR_TIMEOUT, "%s: no complete answer in time", where);
                break;
            }
            if (w > 0)
                continue;
        }
        if (k < 0) {
            rc = err_set(e, ERR_RETRY, "%s: connection lost: %s", where, strerror(errno));
            break;
        }
        if (k > 0 && buf_append(&in, chunk, (size_t)k) != 0) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
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
            rc = err_set(e, p, "%s: %s", where, pe.msg);
            break;
        }
        if (k == 0) {
            rc = err_set(e, ERR_RETRY, "%s: connection closed before a complete answer", where);
            break;
        }
    }
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

int mgmt_get_json(const char *base_url, const char *user, const char *password, const char *path,
                  int timeout_ms, json_t **out, err_t *e)
{
    mgmt__url_t u;
    int rc = mgmt__url_parse(base_url, &u, e);
    if (rc != 0)
        return rc;
    char where[600];
    snprintf(where, sizeof(where), "GET http://%s%s%s:%s%s%s", u.ipv6 ? "[" : "", u.host,
             u.ipv6 ? "]" : "", u.port, u.prefix, path != NULL ? path : "");
    long deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    buf_t req = BUF_INIT;
    mgmt__response_t resp;
    memset(&resp, 0, sizeof(resp));
    int fd = -1;
    rc = mgmt__request(&u, user != NULL ? user : "", password != NULL ? password : "", path, &req,
                       e);
    if (rc == 0)
        rc = connect_to(&u, where, deadline, &fd, e);
    if (rc == 0)
        rc = send_all(fd, req.data, req.len, where, deadline, e);
    if (req.data != NULL)
        sodium_memzero(req.data, req.len);
    buf_free(&req);
    if (rc == 0)
        rc = receive(fd, where, deadline, &resp, e);
    if (fd >= 0)
        close(fd);
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
