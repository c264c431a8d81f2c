/* log: JSON lines with redaction (see log.h).
 *
 * A line is assembled in memory and written with one write(2), so concurrent threads never
 * interleave within a line and no lock is needed: the only shared state is the configuration
 * set once by log_init(). Redaction runs on a deep copy of the caller's fields before anything
 * is serialised, so there is no path from a field to the output that skips it, and a caller
 * that logs an object it still uses (json_pack's "O") does not find its data masked. */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char log_service[64] = "petstore";
static atomic_int log_min = LOG_INFO;
static atomic_int log_fd = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, log_level_t min_level, int fd)
{
    snprintf(log_service, sizeof(log_service), "%s", service ? service : "petstore");
    atomic_store(&log_min, (int)min_level);
    atomic_store(&log_fd, fd);
}

int log_level_parse(const char *text, log_level_t *out)
{
    for (int i = 0; text != NULL && i < 4; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

int log_enabled(log_level_t level) { return (int)level >= atomic_load(&log_min); }

static _Thread_local const log_ctx_t *thread_ctx;

void log_ctx_enter(const log_ctx_t *ctx) { thread_ctx = ctx; }

const log_ctx_t *log_ctx_current(void) { return thread_ctx; }

/* ---- which keys are secret ---- */

/* True if the key has "pan" as a word: words are split at non-alphanumerics and at a
 * lower-to-upper case change (card_pan, cardPan, PAN), so span_id and company do not count. */
static int has_word_pan(const char *key)
{
    size_t i = 0, n = strlen(key);
    while (i < n) {
        while (i < n && !isalnum((unsigned char)key[i]))
            i++;
        size_t start = i++;
        while (i < n && isalnum((unsigned char)key[i]) &&
               !(isupper((unsigned char)key[i]) && islower((unsigned char)key[i - 1])))
            i++;
        if (i - start == 3 && strncasecmp(key + start, "pan", 3) == 0)
            return 1;
    }
    return 0;
}

static int secret_key(const char *key)
{
    static const char *const contains[] = {
        "password", "passwd",     "secret",     "token",  "authorization",
        "cookie",   "cardnumber", "cardnum",    "cardno", "cvv",
        "cvc",      "apikey",     "privatekey", "sealed", "hash",
    };
    static const char *const exact[] = {"card", "pan", "number"};
    if (strcmp(key, "card_last4") == 0)
        return 0;
    /* Normalise: lower case, separators dropped, so Card-Number and card_number agree. */
    char norm[128];
    size_t n = 0;
    for (const char *k = key; *k != '\0' && n + 1 < sizeof(norm); k++)
        if (*k != '_' && *k != '-' && *k != '.' && *k != ' ')
            norm[n++] = (char)tolower((unsigned char)*k);
    norm[n] = '\0';
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(norm, exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof(contains) / sizeof(contains[0]); i++)
        if (strstr(norm, contains[i]) != NULL)
            return 1;
    return has_word_pan(key);
}

/* ---- card-like digit runs ---- */

/* 8-4-4-4-12 hexadecimal: ids are not card numbers even when a group is all digits. */
static int uuid_shaped(const char *s, size_t n)
{
    if (n < 36 || (n > 36 && isalnum((unsigned char)s[36])))
        return 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* log_mask_digits over len bytes; with out NULL it only tells whether something would be
 * masked, at the first such run, writing nothing. */
static int mask_digits(const char *text, size_t len, char *out, size_t out_size)
{
    size_t o = 0;
    int masked = 0;
    for (size_t i = 0; i < len;) {
        int boundary = i == 0 || !isalnum((unsigned char)text[i - 1]);
        if (boundary && uuid_shaped(text + i, len - i)) {
            for (size_t k = 0; out != NULL && k < 36 && o + 1 < out_size; k++)
                out[o++] = text[i + k];
            i += 36;
            continue;
        }
        if (isdigit((unsigned char)text[i]) && boundary) {
            /* Measure a run of digits with single space or dash separators. */
            size_t j = i, digits = 0, last_digit_end = i;
            while (j < len) {
                if (isdigit((unsigned char)text[j])) {
                    digits++;
                    j++;
                    last_digit_end = j;
                } else if ((text[j] == ' ' || text[j] == '-') && j + 1 < len &&
                           isdigit((unsigned char)text[j + 1])) {
                    j++;
                } else {
                    break;
                }
            }
            int end_boundary =
                last_digit_end >= len || !isalnum((unsigned char)text[last_digit_end]);
            if (digits >= 12 && digits <= 19 && end_boundary) {
                if (out == NULL)
                    return 1;
                size_t seen = 0;
                for (size_t k = i; k < last_digit_end && o + 1 < out_size; k++) {
                    if (!isdigit((unsigned char)text[k]))
                        continue;
                    seen++;
                    out[o++] = seen + 4 > digits ? text[k] : '*';
                }
                masked = 1;
                i = last_digit_end;
                continue;
            }
            for (size_t k = i; out != NULL && k < last_digit_end && o + 1 < out_size; k++)
                out[o++] = text[k];
            i = last_digit_end;
            continue;
        }
        if (out != NULL && o + 1 < out_size)
            out[o++] = text[i];
        i++;
    }
    if (out != NULL)
        out[o] = '\0';
    return masked;
}

int log_mask_digits(const char *text, char *out, size_t out_size)
{
    if (out_size == 0)
        return 0;
    return mask_digits(text, strlen(text), out, out_size);
}

/* ---- encoded blobs ---- */

static int blob_char(char c)
{
    return isalnum((unsigned char)c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-';
}

/* A run of an encoding's characters that is long enough to be a key, a hash, a token or a
 * sealed card: at least BLOB_HEX_MIN hexadecimal digits and nothing else (a sha256), or at least
 * BLOB_B64_MIN characters with upper case, lower case and digits (base64 and base64url: with
 * 32 random bytes or more, all three occur with near certainty). Trace ids (32 hex digits),
 * traceparents and UUIDs (hex with dashes, no upper case), paths and identifiers (no digits or
 * no upper case) do not qualify. */
#define BLOB_HEX_MIN 40
#define BLOB_B64_MIN 32

static int is_blob(const char *s, size_t n)
{
    int upper = 0, lower = 0, digit = 0, hex = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        upper |= isupper(c) != 0;
        lower |= islower(c) != 0;
        digit |= isdigit(c) != 0;
        hex &= isxdigit(c) != 0;
    }
    return (hex && n >= BLOB_HEX_MIN) || (n >= BLOB_B64_MIN && upper && lower && digit);
}

/* Replaces each blob in buf (NUL-terminated) by "[REDACTED]", in place: the replacement is
 * shorter than any blob, so writing never overtakes reading. Returns 1 if something changed. */
static int mask_blobs(char *buf)
{
    static const char mark[] = "[REDACTED]";
    size_t r = 0, w = 0;
    int masked = 0;
    while (buf[r] != '\0') {
        if (!blob_char(buf[r])) {
            buf[w++] = buf[r++];
            continue;
        }
        size_t start = r;
        while (blob_char(buf[r]))
            r++;
        if (is_blob(buf + start, r - start)) {
            memcpy(buf + w, mark, sizeof(mark) - 1);
            w += sizeof(mark) - 1;
            masked = 1;
        } else {
            memmove(buf + w, buf + start, r - start);
            w += r - start;
        }
    }
    buf[w] = '\0';
    return masked;
}

/* ---- the redaction walk ---- */

/* A replacement for string s, or NULL to keep it: card-like digits and encoded blobs masked and,
 * when cap is non-zero, the text cut to at most cap bytes at a UTF-8 character boundary and
 * marked. Masking only shortens, so the masked text never needs more room than the input. */
/* 1 when a run of blob characters in text qualifies as a blob (mask_blobs would hide it). */
static int has_blob(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (!blob_char(text[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && blob_char(text[i]))
            i++;
        if (is_blob(text + start, i - start))
            return 1;
    }
    return 0;
}

static json_t *scrub_string(const json_t *s, size_t cap)
{
    const char *text = json_string_value(s);
    size_t n = json_string_length(s);
    if (strlen(text) != n)
        return json_string("[binary]"); /* an embedded NUL: not text we can vouch for */
    /* Most strings (ids, types, routes, names) need nothing: keep them without a copy. When no
     * digit run is masked the digits pass leaves the text as it was, so looking for blobs in the
     * text itself is what mask_blobs would see. */
    if ((cap == 0 || n <= cap) && !mask_digits(text, n, NULL, 0) && !has_blob(text, n))
        return NULL;
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return json_string("[REDACTED]");
    int masked = log_mask_digits(text, buf, n + 1);
    masked |= mask_blobs(buf);
    size_t len = strlen(buf);
    json_t *out = NULL;
    if (cap > 0 && len > cap) {
        len = cap;
        while (len > 0 && ((unsigned char)buf[len] & 0xC0) == 0x80)
            len--; /* never split a multi-byte character */
        buf[len] = '\0';
        out = json_sprintf("%s...[truncated]", buf);
    } else if (masked) {
        out = json_stringn(buf, len);
    }
    free(buf);
    return out;
}

static void scrub(json_t *v, size_t cap)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *value;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, value)
        {
            if (secret_key(key)) {
                json_object_set_new(v, key, json_string("[REDACTED]"));
            } else if (json_is_string(value)) {
                json_t *clean = scrub_string(value, cap);
                if (clean != NULL)
                    json_object_set_new(v, key, clean);
            } else {
                scrub(value, cap);
            }
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *value = json_array_get(v, i);
            if (json_is_string(value)) {
                json_t *clean = scrub_string(value, cap);
                if (clean != NULL)
                    json_array_set_new(v, i, clean);
            } else {
                scrub(value, cap);
            }
        }
    }
}

void log_redact(json_t *obj) { scrub(obj, 0); }

/* ---- writing ---- */

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere to report a failure to log: the line is lost */
        }
        s += w;
        n -= (size_t)w;
    }
}

static void set_ctx(json_t *line, const char *key, const char *value)
{
    if (value != NULL && value[0] != '\0')
        json_object_set_new(line, key, json_string(value));
}

static json_t *masked_message(const char *message)
{
    json_t *m = json_string(message != NULL ? message : "");
    if (m == NULL)
        return json_string("[invalid UTF-8]");
    json_t *clean = scrub_string(m, LOG_MAX_STRING);
    if (clean != NULL) {
        json_decref(m);
        return clean;
    }
    return m;
}

void log_write(log_level_t level, const log_ctx_t *ctx, const char *message, json_t *fields)
{
    if (!log_enabled(level) || (int)level < LOG_DEBUG || level > LOG_ERROR) {
        json_decref(fields);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char stamp[40], base[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp, sizeof(stamp), "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000L) % 1000);

    json_t *line = json_object();
    if (line == NULL) {
        json_decref(fields);
        return;
    }
    json_object_set_new(line, "timestamp", json_string(stamp));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "service", json_string(log_service));
    json_object_set_new(line, "message", masked_message(message));
    if (ctx != NULL) {
        set_ctx(line, "trace_id", ctx->trace_id);
        set_ctx(line, "span_id", ctx->span_id);
        set_ctx(line, "order_id", ctx->order_id);
    }
    /* The caller's fields are never modified (they may be shared): a value goes into the line as
     * it is when it needs no masking, masked, or, for an object or an array, as a scrubbed copy. */
    const char *key;
    json_t *value;
    json_object_foreach(json_is_object(fields) ? fields : NULL, key, value)
    {
        if (json_object_get(line, key) != NULL)
            continue; /* the standard fields win */
        json_t *v;
        if (secret_key(key)) {
            v = json_string("[REDACTED]");
        } else if (json_is_string(value)) {
            v = scrub_string(value, LOG_MAX_STRING);
            if (v == NULL)
                v = json_incref(value);
        } else if (json_is_object(value) || json_is_array(value)) {
            v = json_deep_copy(value);
            scrub(v, LOG_MAX_STRING);
        } else {
            v = json_incref(value);
        }
        json_object_set_new(line, key, v);
    }
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (text == NULL)
        return;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (out == NULL) {
        free(text);
        return;
    }
    out[n] = '\n';
    write_all(atomic_load(&log_fd), out, n + 1);
    free(out);
}

void log_err(log_level_t level, const log_ctx_t *ctx, const char *message, const err_t *e)
{
    if (e == NULL) {
        log_write(level, ctx, message, NULL);
        return;
    }
    json_t *f = json_pack("{s:s,s:s}", "code", err_name(e->code), "error", e->msg);
    if (f != NULL && e->sqlstate[0] != '\0')
        json_object_set_new(f, "sqlstate", json_string(e->sqlstate));
    log_write(level, ctx, message, f);
}
