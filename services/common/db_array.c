/* db_array: see db_array.h. The grammar is the subset PostgreSQL's array_out produces for one
 * dimension: elements separated by commas, bare or double-quoted with backslash escapes, and
 * the bare word NULL for SQL NULL. */
#include "db_array.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Reads one quoted element starting after its opening quote; returns the position after the
 * closing quote, or NULL when the text ends first. */
static const char *read_quoted(const char *p, buf_t *b)
{
    for (; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && p[1] != '\0')
            p++;
        if (buf_append(b, p, 1) != 0)
            return NULL;
    }
    return *p == '"' ? p + 1 : NULL;
}

json_t *db_array_to_json(const char *text)
{
    json_t *arr = json_array();
    buf_t b = BUF_INIT;
    if (arr == NULL || text == NULL || text[0] != '{')
        return arr;
    const char *p = text + 1;
    while (*p != '\0' && *p != '}') {
        json_t *item;
        if (*p == '"') {
            buf_reset(&b);
            p = read_quoted(p + 1, &b);
            if (p == NULL)
                break;
            item = json_stringn(b.data != NULL ? b.data : "", b.len);
        } else {
            size_t len = strcspn(p, ",}");
            item = len == 4 && strncmp(p, "NULL", 4) == 0 ? json_null() : json_stringn(p, len);
            p += len;
        }
        json_array_append_new(arr, item);
        if (*p == ',')
            p++;
        else if (*p != '}')
            break;
    }
    buf_free(&b);
    return arr;
}

char *db_array_from_json(const json_t *items)
{
    buf_t b = BUF_INIT;
    int rc = buf_puts(&b, "{");
    for (size_t i = 0; rc == 0 && i < json_array_size(items); i++) {
        const json_t *item = json_array_get(items, i);
        if (i > 0)
            rc = buf_puts(&b, ",");
        if (rc == 0 && json_is_null(item)) {
            rc = buf_puts(&b, "NULL");
            continue;
        }
        const char *s = json_is_string(item) ? json_string_value(item) : "";
        if (rc == 0)
            rc = buf_puts(&b, "\"");
        for (; rc == 0 && *s != '\0'; s++) {
            if (*s == '"' || *s == '\\')
                rc = buf_puts(&b, "\\");
            if (rc == 0)
                rc = buf_append(&b, s, 1);
        }
        if (rc == 0)
            rc = buf_puts(&b, "\"");
    }
    if (rc == 0)
        rc = buf_puts(&b, "}");
    if (rc != 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}
