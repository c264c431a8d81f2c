/* mq_url: parsing of the amqp:// and amqps:// URLs that mq_open accepts (see mq.h for the syntax).
 *
 * The URL comes from the operator's environment and carries the broker password, so every error
 * names the part that is wrong and never quotes its value. User, password, host and vhost are
 * percent-decoded; an encoded NUL is refused, since it would cut the decoded string short. The
 * result is plain data: nothing here talks to the network. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mq_internal.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+len) into a new string. Returns NULL and sets *bad on a malformed
 * escape or an encoded NUL; NULL with *bad == 0 when out of memory. */
static char *decode_part(const char *s, size_t len, int *bad)
{
    *bad = 0;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = len - i >= 3 ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = len - i >= 3 ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || hi * 16 + lo == 0) {
            free(out);
            *bad = 1;
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Decodes one URL part into *dst; what names it in the error message (never its value). */
static int url_part(const char *s, size_t len, char **dst, const char *what, err_t *e)
{
    int bad = 0;
    *dst = decode_part(s, len, &bad);
    if (*dst != NULL)
        return 0;
    if (bad)
        return err_set(e, ERR_CONFIG, "AMQP URL: the %s is not properly percent-encoded", what);
    return err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
}

/* Parses a decimal number in [min, max] from [s, s+len). */
static int parse_num(const char *s, size_t len, long min, long max, long *out)
{
    if (len == 0 || len > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_query(const char *q, mq__url_t *u, err_t *e)
{
    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (eq == NULL)
            return err_set(e, ERR_CONFIG, "AMQP URL: query parameter \"%.*s\" has no value",
                           (int)(len > 64 ? 64 : len), q);
        size_t klen = (size_t)(eq - q);
        const char *v = eq + 1;
        size_t vlen = len - klen - 1;
        long n = 0;
        if (klen == 9 && memcmp(q, "heartbeat", 9) == 0) {
            if (parse_num(v, vlen, 0, 65535, &n) != 0)
                return err_set(e, ERR_CONFIG, "AMQP URL: heartbeat must be 0..65535 seconds");
            u->heartbeat_s = (int)n;
        } else if (klen == 18 && memcmp(q, "connection_timeout", 18) == 0) {
            if (parse_num(v, vlen, 1, 3600000, &n) != 0)
                return err_set(e, ERR_CONFIG,
                               "AMQP URL: connection_timeout must be 1..3600000 milliseconds");
            u->connect_timeout_ms = (int)n;
        } else if (klen == 9 && memcmp(q, "frame_max", 9) == 0) {
            if (parse_num(v, vlen, 4096, INT_MAX, &n) != 0)
                return err_set(e, ERR_CONFIG, "AMQP URL: frame_max must be at least 4096");
            u->frame_max = (int)n;
        } else {
            return err_set(e, ERR_CONFIG,
                           "AMQP URL: unsupported query parameter \"%.*s\" (known: heartbeat, "
                           "connection_timeout, frame_max)",
                           (int)(klen > 64 ? 64 : klen), q);
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

void mq__url_free(mq__url_t *u)
{
    if (u == NULL)
        return;
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->vhost);
    u->user = u->password = u->host = u->vhost = NULL;
}

int mq__url_parse(const char *url, mq__url_t *out, err_t *e)
{
    mq__url_t u = {.port = 5672, .heartbeat_s = -1, .connect_timeout_ms = -1, .frame_max = -1};
    int rc = 0;

    if (url == NULL || *url == '\0')
        return err_set(e, ERR_CONFIG, "AMQP URL is empty");
    if (strncmp(url, "amqps://", 8) == 0) {
        u.tls = 1;
        u.port = 5671;
    } else if (strncmp(url, "amqp://", 7) != 0) {
        return err_set(e, ERR_CONFIG, "AMQP URL must start with amqp:// or amqps://");
    }
    if (strchr(url, '#') != NULL)
        return err_set(e, ERR_CONFIG, "AMQP URL must not contain a fragment ('#')");

    const char *p = url + (u.tls ? 8 : 7);
    size_t auth_len = strcspn(p, "/?");
    const char *path = p + auth_len; /* "" or starts with '/' or '?' */

    /* userinfo ends at the last '@' of the authority. */
    const char *at = NULL;
    for (const char *s = p; s < p + auth_len; s++)
        if (*s == '@')
            at = s;
    const char *hostport = p;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if ((rc = url_part(p, ulen, &u.user, "user name", e)) != 0)
            goto fail;
        if (colon != NULL &&
            (rc = url_part(colon + 1, (size_t)(at - colon - 1), &u.password, "password", e)) != 0)
            goto fail;
        hostport = at + 1;
    }
    size_t hp_len = (size_t)(p + auth_len - hostport);
    const char *host = hostport;
    size_t host_len = hp_len;
    const char *port = NULL;
    size_t port_len = 0;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL) {
            rc = err_set(e, ERR_CONFIG, "AMQP URL: IPv6 host lacks its closing ']'");
            goto fail;
        }
        host = hostport + 1;
        host_len = (size_t)(close - host);
        const char *rest = close + 1;
        size_t rest_len = hp_len - (size_t)(rest - hostport);
        if (rest_len > 0) {
            if (rest[0] != ':') {
                rc = err_set(e, ERR_CONFIG, "AMQP URL: unexpected text after the IPv6 host");
                goto fail;
            }
            port = rest + 1;
            port_len = rest_len - 1;
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        if (colon != NULL) {
            host_len = (size_t)(colon - hostport);
            port = colon + 1;
            port_len = hp_len - host_len - 1;
        }
    }
    if (host_len == 0) {
        u.host = strdup("localhost");
        if (u.host == NULL) {
            rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
            goto fail;
        }
    } else if ((rc = url_part(host, host_len, &u.host, "host", e)) != 0) {
        goto fail;
    }
    if (port != NULL) {
        long n = 0;
        if (parse_num(port, port_len, 1, 65535, &n) != 0) {
            rc = err_set(e, ERR_CONFIG, "AMQP URL: port must be a number in 1..65535");
            goto fail;
        }
        u.port = (int)n;
    }

    /* The path is at most one segment: the percent-encoded vhost. "" and "/" mean "/". */
    size_t path_len = strcspn(path, "?");
    if (path_len <= 1) {
        u.vhost = strdup("/");
        if (u.vhost == NULL) {
            rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
            goto fail;
        }
    } else {
        if (memchr(path + 1, '/', path_len - 1) != NULL) {
            rc = err_set(e, ERR_CONFIG,
                         "AMQP URL: the vhost must be one path segment (write '/' as %%2F)");
            goto fail;
        }
        if ((rc = url_part(path + 1, path_len - 1, &u.vhost, "vhost", e)) != 0)
            goto fail;
    }
    if (path[path_len] == '?' && (rc = parse_query(path + path_len + 1, &u, e)) != 0)
        goto fail;

    if (u.user == NULL && (u.user = strdup("guest")) == NULL) {
        rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
        goto fail;
    }
    if (u.password == NULL && (u.password = strdup("guest")) == NULL) {
        rc = err_set(e, ERR_NOMEM, "AMQP URL: out of memory");
        goto fail;
    }
    *out = u;
    return 0;
fail:
    mq__url_free(&u);
    return rc;
}
