/* validate: the storefront's pure input checks, and the checks of each POST body built from
 * them. The routes parse a body (http_read_json_object) and hand the object here; nothing in this
 * file does I/O, so the unit tests and the fuzz target tests/fuzz/fuzz_http_body.c call the same
 * code the routes run. */
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

void sf_error(json_t *errors, const char *field, const char *message)
{
    json_array_append_new(errors, json_pack("{s:s,s:s}", "field", field, "message", message));
}

void sf_check_credentials(const json_t *body, int strict, json_t *errors)
{
    const char *user = json_string_value(json_object_get(body, "username"));
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (user == NULL || (strict && !sf_username_ok(user)))
        sf_error(errors, "username", "3 to 32 characters of a-z, 0-9, '_', '.', '-'");
    if (pw == NULL || (strict && !sf_password_ok(pw)))
        sf_error(errors, "password", "a string of 8 to 128 characters");
}

void sf_check_new_pet(const json_t *body, json_t *errors)
{
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *species = json_string_value(json_object_get(body, "species"));
    const json_t *price = json_object_get(body, "price_cents");
    if (name == NULL || strlen(name) < 1 || strlen(name) > 100)
        sf_error(errors, "name", "a string of 1 to 100 characters");
    if (species == NULL || strlen(species) < 1 || strlen(species) > 50)
        sf_error(errors, "species", "a string of 1 to 50 characters");
    if (!json_is_integer(price) || json_integer_value(price) < 0 ||
        json_integer_value(price) > 100000000)
        sf_error(errors, "price_cents", "an integer number of cents from 0 to 100000000");
}

void sf_check_order_body(const json_t *body, json_t *errors)
{
    const char *card = json_string_value(json_object_get(body, "card_number"));
    const json_t *pet_ids = json_object_get(body, "pet_ids");
    char detail[128];
    if (!sf_card_syntax_ok(card))
        sf_error(errors, "card_number", "a string of 12 to 19 digits");
    if (pet_ids != NULL && !sf_pet_ids_ok(pet_ids, detail, sizeof(detail)))
        sf_error(errors, "pet_ids", detail);
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
