/* msg_decode: the consumer side of the codec: parse a body, then hold it to its contract.
 *
 * Validation walks the type's field table (msg_fields.c) in order and stops at the first
 * violation, reporting it as a JSON path so that a dead-lettered message says exactly what was
 * wrong. Members the table does not know are never looked at: that is what lets a producer add
 * an optional field without a new version. Nothing here allocates except jansson's parse tree. */
#include <stdio.h>
#include <string.h>

#include "msg.h"
#include "msg_fields.h"
#include "uuid.h"

const char *msg__string(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return NULL;
    return s;
}

void msg__printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    if (size == 0)
        return;
    for (; src != NULL && src[i] != '\0' && i + 1 < size; i++)
        dst[i] = (src[i] >= 0x20 && src[i] <= 0x7e) ? src[i] : '?';
    dst[i] = '\0';
}

/* Unicode characters in valid UTF-8 (jansson guarantees validity): every byte that is not a
 * continuation byte starts a code point. Counts what JSON Schema's minLength/maxLength count. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* Reads exactly n decimal digits at s into *out. */
static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

int msg_is_datetime(const char *s)
{
    int year, month, day, hour, minute, second;

    if (s == NULL)
        return 0;
    /* YYYY-MM-DDTHH:MM:SS: fixed positions, checked before any digit is read past a NUL. */
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || s[10] != 'T' || !digits(s + 11, 2, &hour) || s[13] != ':' ||
        !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
        return 0;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 59)
        return 0;
    s += 19;
    if (*s == '.') {
        int n = 0;
        for (s++; *s >= '0' && *s <= '9'; s++)
            n++;
        if (n < 1 || n > 9)
            return 0;
    }
    return s[0] == 'Z' && s[1] == '\0';
}

static int is_digits4(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return s[4] == '\0';
}

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Canonical RFC 4648 base64 with padding: whole quads, '=' only as the last one or two
 * characters, and the bits a padded quad leaves over all zero. libsodium's decoder refuses the
 * non-canonical spellings, so refusing them here keeps "valid message" and "decodable card"
 * the same thing. */
static int is_canonical_base64(const char *s, size_t n)
{
    size_t pad = 0;

    if (n == 0 || n % 4 != 0)
        return 0;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < n - pad; i++)
        if (base64_value(s[i]) < 0)
            return 0;
    if (pad == 1)
        return (base64_value(s[n - 2]) & 0x03) == 0;
    if (pad == 2)
        return (base64_value(s[n - 3]) & 0x0F) == 0;
    return 1;
}

/* "a, b, c" from a NULL-terminated list, truncated to fit. */
static void join_values(const char *const *values, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; values[i] != NULL && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i > 0 ? ", " : "", values[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static int in_values(const char *s, const char *const *values)
{
    for (size_t i = 0; values[i] != NULL; i++)
        if (strcmp(s, values[i]) == 0)
            return 1;
    return 0;
}

static int check_enum(const msg_field_t *f, const json_t *v, err_t *e)
{
    char list[200];
    const char *s = msg__string(v);
    int nullable = f->kind == MSG_FIELD_NULLABLE_ENUM;

    if (nullable && json_is_null(v))
        return 0;
    if (s != NULL && in_values(s, f->values))
        return 0;
    join_values(f->values, list, sizeof(list));
    return err_set(e, ERR_INVALID, "$.%s: expected %sone of %s", f->name,
                   nullable ? "null or " : "", list);
}

static int check_int(const msg_field_t *f, const json_t *v, err_t *e)
{
    if (!json_is_integer(v))
        return err_set(e, ERR_INVALID, "$.%s: expected integer", f->name);
    long long n = (long long)json_integer_value(v);
    if (n >= f->min && n <= f->max)
        return 0;
    if (f->max == MSG_FIELD_NO_MAX)
        return err_set(e, ERR_INVALID, "$.%s: expected integer >= %lld", f->name, f->min);
    return err_set(e, ERR_INVALID, "$.%s: expected integer between %lld and %lld", f->name, f->min,
                   f->max);
}

/* An array of f->min..f->max items; 0 and its size in *n, else the error. */
static int check_array(const msg_field_t *f, const json_t *v, size_t *n, err_t *e)
{
    if (!json_is_array(v))
        return err_set(e, ERR_INVALID, "$.%s: expected array", f->name);
    *n = json_array_size(v);
    if ((long long)*n < f->min || (long long)*n > f->max)
        return err_set(e, ERR_INVALID, "$.%s: expected %lld to %lld items, got %zu", f->name,
                       f->min, f->max, *n);
    return 0;
}

static int check_uuid_array(const msg_field_t *f, const json_t *v, err_t *e)
{
    size_t n = 0;
    int rc = check_array(f, v, &n, e);
    if (rc != 0)
        return rc;
    /* n <= max (20 for every table today), so the quadratic duplicate check stays tiny. */
    for (size_t i = 0; i < n; i++) {
        const char *s = msg__string(json_array_get(v, i));
        if (!uuid_valid(s))
            return err_set(e, ERR_INVALID, "$.%s[%zu]: expected uuid", f->name, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(s, json_string_value(json_array_get(v, j))) == 0)
                return err_set(e, ERR_INVALID, "$.%s[%zu]: duplicate of $.%s[%zu]", f->name, i,
                               f->name, j);
    }
    return 0;
}

static int check_pet_versions(const msg_field_t *f, const json_t *v, err_t *e)
{
    size_t n = 0;
    int rc = check_array(f, v, &n, e);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(v, i);
        if (!json_is_object(item))
            return err_set(e, ERR_INVALID, "$.%s[%zu]: expected object", f->name, i);
        const char *id = msg__string(json_object_get(item, "pet_id"));
        if (!uuid_valid(id))
            return err_set(e, ERR_INVALID, "$.%s[%zu].pet_id: expected uuid", f->name, i);
        const json_t *version = json_object_get(item, "version");
        if (!json_is_integer(version) || json_integer_value(version) < 1)
            return err_set(e, ERR_INVALID, "$.%s[%zu].version: expected an integer from 1", f->name,
                           i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(id, json_string_value(json_object_get(json_array_get(v, j), "pet_id"))) == 0)
                return err_set(e, ERR_INVALID, "$.%s[%zu].pet_id: duplicate of $.%s[%zu]", f->name,
                               i, f->name, j);
    }
    return 0;
}

/* One present member v against its descriptor f. */
static int check_field(const msg_field_t *f, const json_t *v, err_t *e)
{
    const char *s = NULL;

    switch (f->kind) {
    case MSG_FIELD_UUID:
        if (!uuid_valid(msg__string(v)))
            return err_set(e, ERR_INVALID, "$.%s: expected uuid", f->name);
        return 0;
    case MSG_FIELD_STRING: {
        if ((s = msg__string(v)) == NULL)
            return err_set(e, ERR_INVALID, "$.%s: expected string", f->name);
        size_t n = utf8_length(s);
        if ((long long)n < f->min || (long long)n > f->max)
            return err_set(e, ERR_INVALID, "$.%s: expected %lld to %lld characters, got %zu",
                           f->name, f->min, f->max, n);
        return 0;
    }
    case MSG_FIELD_INT:
        return check_int(f, v, e);
    case MSG_FIELD_BOOL:
        if (!json_is_boolean(v))
            return err_set(e, ERR_INVALID, "$.%s: expected boolean", f->name);
        return 0;
    case MSG_FIELD_DATETIME:
        if (!msg_is_datetime(msg__string(v)))
            return err_set(e, ERR_INVALID, "$.%s: expected RFC 3339 UTC date-time", f->name);
        return 0;
    case MSG_FIELD_LAST4:
        if ((s = msg__string(v)) == NULL || !is_digits4(s))
            return err_set(e, ERR_INVALID, "$.%s: expected 4 digits", f->name);
        return 0;
    case MSG_FIELD_BASE64: {
        size_t n = (s = msg__string(v)) != NULL ? strlen(s) : 0;
        if (s == NULL || (long long)n < f->min || (long long)n > f->max ||
            !is_canonical_base64(s, n))
            return err_set(e, ERR_INVALID,
                           "$.%s: expected standard base64 of %lld to %lld "
                           "characters",
                           f->name, f->min, f->max);
        return 0;
    }
    case MSG_FIELD_UUID_ARRAY:
        return check_uuid_array(f, v, e);
    case MSG_FIELD_PET_VERSIONS:
        return check_pet_versions(f, v, e);
    case MSG_FIELD_ENUM:
    case MSG_FIELD_NULLABLE_ENUM:
        return check_enum(f, v, e);
    }
    return err_set(e, ERR_INTERNAL, "$.%s: field kind %d has no check", f->name, (int)f->kind);
}

int msg_validate(msg_type_t type, const json_t *payload, err_t *e)
{
    const msg_type_def_t *def = msg__type_def(type);

    if (def == NULL)
        return err_set(e, ERR_INVALID, "unknown message type %d", (int)type);
    if (!json_is_object(payload))
        return err_set(e, ERR_INVALID, "$: expected object");
    for (size_t i = 0; i < def->n_fields; i++) {
        const msg_field_t *f = &def->fields[i];
        const json_t *v = json_object_get(payload, f->name);
        if (v == NULL) {
            if (f->required)
                return err_set(e, ERR_INVALID, "$.%s: missing required field", f->name);
            continue;
        }
        int rc = check_field(f, v, e);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int msg_decode(msg_type_t type, const char *body, size_t len, json_t **out, err_t *e)
{
    json_error_t je;
    json_t *root = NULL;
    int rc;

    if (msg__type_def(type) == NULL)
        return err_set(e, ERR_INVALID, "unknown message type %d", (int)type);
    if (len > MSG_MAX_BODY)
        return err_set(e, ERR_INVALID, "body too large: %zu bytes, the limit is %d", len,
                       MSG_MAX_BODY);
    if (body == NULL && len > 0)
        return err_set(e, ERR_INVALID, "no body");
    /* JSON_DECODE_ANY so that "42" or "[]" reach the uniform "$: expected object" below rather
     * than a parser message; duplicate keys are refused because two consumers could otherwise
     * read two different values out of one message. */
    root = json_loadb(body != NULL ? body : "", len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        char text[sizeof(je.text)];
        msg__printable(text, sizeof(text), je.text);
        return err_set(e, ERR_INVALID, "malformed JSON at line %d column %d: %s", je.line,
                       je.column, text);
    }
    rc = msg_validate(type, root, e);
    if (rc != 0) {
        json_decref(root);
        return rc;
    }
    *out = root;
    return 0;
}
