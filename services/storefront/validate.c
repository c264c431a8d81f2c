/* validate: the storefront's pure input checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "msg.h"
#include "storefront.h"
#include "uuid.h"

int sf_card_syntax_ok(const char *number)
{
    size_t n = number != NULL ? strlen(number) : 0;
    if (n < 12 || n > 19)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (number[i] < '0' || number[i] > '9')
            return 0;
    return 1;
}

int sf_username_ok(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n < 3 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int sf_password_ok(const char *password)
{
    size_t n = password != NULL ? strlen(password) : 0;
    return n >= 8 && n <= 128;
}

int sf_pet_ids_ok(const json_t *ids, char *detail, size_t n)
{
    if (!json_is_array(ids) || json_array_size(ids) < 1 || json_array_size(ids) > 20) {
        snprintf(detail, n, "must be an array of 1 to 20 pet ids");
        return 0;
    }
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        if (id == NULL || !uuid_valid(id)) {
            snprintf(detail, n, "item %zu is not a pet id (a lower-case UUID)", i);
            return 0;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(id, json_string_value(json_array_get(ids, j))) == 0) {
                snprintf(detail, n, "item %zu repeats item %zu", i, j);
                return 0;
            }
        }
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sf_order_fingerprint(const json_t *pet_ids, const char *card, char out[SF_FINGERPRINT_HEX])
{
    int rc = ERR_NOMEM;
    const char **ids = NULL;
    json_t *asked = NULL, *f = NULL;
    char *text = NULL;
    size_t n = json_array_size(pet_ids);
    if (pet_ids == NULL) {
        asked = json_string("cart");
    } else {
        /* The same pets in another order are the same request. */
        ids = calloc(n > 0 ? n : 1, sizeof(*ids));
        if (ids == NULL)
            goto out;
        for (size_t i = 0; i < n; i++)
            ids[i] = json_string_value(json_array_get(pet_ids, i));
        qsort(ids, n, sizeof(*ids), cmp_str);
        asked = json_array();
        for (size_t i = 0; asked != NULL && i < n; i++)
            if (json_array_append_new(asked, json_string(ids[i])) != 0)
                goto out;
    }
    if (asked == NULL)
        goto out;
    size_t len = strlen(card);
    f = json_pack("{s:O,s:s,s:i}", "pet_ids", asked, "card_last4", card + len - 4, "card_length",
                  (int)len);
    if (f == NULL || (text = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        goto out;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)text, strlen(text));
    hex_encode(h, sizeof(h), out);
    rc = 0;
out:
    free(text);
    json_decref(f);
    json_decref(asked);
    free(ids);
    return rc;
}
