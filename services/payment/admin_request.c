/* admin_request: the check of a POST /v1/cards body (see admin_request.h). */
#include "admin_request.h"

#include "card.h"

int admin_card_request_check(const json_t *body, const char **field, const char **detail)
{
    const char *number = json_string_value(json_object_get(body, "card_number"));
    const json_t *balance = json_object_get(body, "balance_cents");
    if (number == NULL || card_number_check(number) != 0) {
        *field = "card_number";
        *detail = "card_number must be a string of 12 to 19 digits that passes the Luhn check";
        return ERR_INVALID;
    }
    if (!json_is_integer(balance) || json_integer_value(balance) < 0 ||
        json_integer_value(balance) > ADMIN_MAX_BALANCE) {
        *field = "balance_cents";
        *detail = "balance_cents must be an integer from 0 to 1000000000000";
        return ERR_INVALID;
    }
    return 0;
}
