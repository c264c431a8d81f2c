/* fuzz_http_body: the request bodies of the POST routes, under libFuzzer.
 *
 * The input is one request body. It is parsed the way http_read_json_object (services/common/
 * http.c) parses it: json_loadb with JSON_REJECT_DUPLICATES, and only an object goes on (the
 * route answers 400 or 422 otherwise). Every object then goes through every route's check,
 * the very functions the routes call:
 *
 *   POST /v1/users      sf_check_credentials(strict)   services/storefront/validate.c
 *   POST /v1/sessions   sf_check_credentials(lenient)
 *   POST /v1/pets       sf_check_new_pet
 *   POST /v1/orders     sf_check_order_body, then sf_order_fingerprint of an accepted body
 *   POST /v1/cards      admin_card_request_check       services/payment/admin_request.c
 *
 * Properties checked besides memory and undefined-behaviour safety: every problem is a
 * {field, message} pair naming a field of that route; what the strict credential check lets
 * through the lenient one does too; an accepted order's fingerprint is 64 lower-case hex digits
 * and the same for the pets in reverse order and for another card number of the same length and
 * last four digits (the hidden digits never enter it); an accepted card passes the Luhn check
 * and its last four digits are digits. */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_request.h"
#include "card.h"
#include "fuzz_util.h"
#include "storefront.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (card_init() != 0)
        fuzz_fail("card_init failed");
    return 0;
}

/* Every entry of errors is {field, message}, field one of the names given (NULL-terminated). */
static void check_problems(const json_t *errors, const char *const *fields, const char *route)
{
    size_t i;
    const json_t *p;
    json_array_foreach(errors, i, p)
    {
        const char *field = json_string_value(json_object_get(p, "field"));
        const char *message = json_string_value(json_object_get(p, "message"));
        int known = 0;
        for (const char *const *f = fields; field != NULL && *f != NULL; f++)
            known |= strcmp(field, *f) == 0;
        if (!known || message == NULL || message[0] == '\0') {
            fprintf(stderr, "fuzz: %s: malformed problem %zu\n", route, i);
            abort();
        }
    }
}

static void check_credentials(const json_t *body)
{
    static const char *const fields[] = {"username", "password", NULL};
    json_t *strict = json_array(), *lenient = json_array();
    FUZZ_CHECK(strict != NULL && lenient != NULL, "out of memory");
    sf_check_credentials(body, 1, strict);
    sf_check_credentials(body, 0, lenient);
    check_problems(strict, fields, "POST /v1/users");
    check_problems(lenient, fields, "POST /v1/sessions");
    FUZZ_CHECK(json_array_size(lenient) <= json_array_size(strict),
               "the lenient credential check refuses more than the strict one");
    if (json_array_size(strict) == 0) {
        FUZZ_CHECK(sf_username_ok(json_string_value(json_object_get(body, "username"))) &&
                       sf_password_ok(json_string_value(json_object_get(body, "password"))),
                   "POST /v1/users accepted bad credentials");
    }
    json_decref(lenient);
    json_decref(strict);
}

static void check_new_pet(const json_t *body)
{
    static const char *const fields[] = {"name", "species", "price_cents", NULL};
    json_t *errors = json_array();
    FUZZ_CHECK(errors != NULL, "out of memory");
    sf_check_new_pet(body, errors);
    check_problems(errors, fields, "POST /v1/pets");
    if (json_array_size(errors) == 0) {
        const json_t *price = json_object_get(body, "price_cents");
        FUZZ_CHECK(json_is_string(json_object_get(body, "name")) &&
                       json_is_string(json_object_get(body, "species")) && json_is_integer(price) &&
                       json_integer_value(price) >= 0,
                   "POST /v1/pets accepted a bad pet");
    }
    json_decref(errors);
}

static void fingerprint(const json_t *pet_ids, const char *card, char out[SF_FINGERPRINT_HEX])
{
    if (sf_order_fingerprint(pet_ids, card, out) != 0)
        fuzz_fail("sf_order_fingerprint failed on an accepted order");
}

static void check_order(const json_t *body)
{
    static const char *const fields[] = {"card_number", "pet_ids", NULL};
    json_t *errors = json_array();
    FUZZ_CHECK(errors != NULL, "out of memory");
    sf_check_order_body(body, errors);
    check_problems(errors, fields, "POST /v1/orders");
    if (json_array_size(errors) > 0) {
        json_decref(errors);
        return;
    }
    json_decref(errors);

    const char *card = json_string_value(json_object_get(body, "card_number"));
    const json_t *pet_ids = json_object_get(body, "pet_ids");
    FUZZ_CHECK(sf_card_syntax_ok(card), "POST /v1/orders accepted a bad card number");
    char fp[SF_FINGERPRINT_HEX], other[SF_FINGERPRINT_HEX];
    fingerprint(pet_ids, card, fp);
    FUZZ_CHECK(strlen(fp) == SF_FINGERPRINT_HEX - 1 &&
                   strspn(fp, "0123456789abcdef") == SF_FINGERPRINT_HEX - 1,
               "the fingerprint is not 64 lower-case hex digits");

    /* The same pets in reverse order. */
    if (pet_ids != NULL) {
        json_t *reversed = json_array();
        FUZZ_CHECK(reversed != NULL, "out of memory");
        for (size_t i = json_array_size(pet_ids); i > 0; i--)
            FUZZ_CHECK(json_array_append(reversed, json_array_get(pet_ids, i - 1)) == 0,
                       "out of memory");
        fingerprint(reversed, card, other);
        FUZZ_CHECK(strcmp(fp, other) == 0, "the fingerprint depends on the order of the pets");
        json_decref(reversed);
    }

    /* Another number with the same length and last four digits. */
    char twin[32];
    size_t len = strlen(card);
    memset(twin, '0', len - 4);
    memcpy(twin + len - 4, card + len - 4, 5);
    fingerprint(pet_ids, twin, other);
    FUZZ_CHECK(strcmp(fp, other) == 0, "the fingerprint depends on the hidden digits");
}

static void check_card(const json_t *body)
{
    const char *field = NULL, *detail = NULL;
    if (admin_card_request_check(body, &field, &detail) != 0) {
        FUZZ_CHECK(field != NULL && detail != NULL && detail[0] != '\0' &&
                       (strcmp(field, "card_number") == 0 || strcmp(field, "balance_cents") == 0),
                   "POST /v1/cards: malformed problem");
        return;
    }
    const char *number = json_string_value(json_object_get(body, "card_number"));
    const json_t *balance = json_object_get(body, "balance_cents");
    FUZZ_CHECK(number != NULL && card_syntax_ok(number) && card_luhn_ok(number),
               "POST /v1/cards accepted a bad card number");
    FUZZ_CHECK(json_is_integer(balance) && json_integer_value(balance) >= 0 &&
                   json_integer_value(balance) <= ADMIN_MAX_BALANCE,
               "POST /v1/cards accepted a bad balance");
    char last4[5];
    card_last4(number, last4);
    FUZZ_CHECK(strlen(last4) == 4 && strspn(last4, "0123456789") == 4,
               "the last four digits are not four digits");
    static const card_keys_t keys; /* all-zero keys: the hash only has to be computed */
    unsigned char hash[CARD_HASH_BYTES];
    card_hash(&keys, number, hash);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(body)) {
        check_credentials(body);
        check_new_pet(body);
        check_order(body);
        check_card(body);
    }
    json_decref(body);
    return 0;
}
