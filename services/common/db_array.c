/* db_array: see db_array.h. */
#include "db_array.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

json_t *db_array_to_json(const char *text)
{
    json_t *arr = json_array();
    if (arr == NULL || text == NULL || text[0] != '{')
        return arr;
    for (const char *p = text + 1; *p != '\0' && *p != '}';) {
        size_t len = strcspn(p, ",}");
        json_array_append_new(arr, json_stringn(p, len));
        p += len + (p[len] == ',');
    }
    return arr;
}

char *db_array_from_json(const json_t *items)
{
    buf_t b = BUF_INIT;
    int rc = buf_puts(&b, "{");
    for (size_t i = 0; rc == 0 && i < json_array_size(items); i++) {
        const char *s = json_string_value(json_array_get(items, i));
        rc = buf_printf(&b, "%s%s", i ? "," : "", s ? s : "");
    }
    if (rc == 0)
        rc = buf_puts(&b, "}");
    if (rc != 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}
