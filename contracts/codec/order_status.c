/* order_status: the rows of order_status.def as arrays indexed by the enums of order_status.h.
 * Designated initialisers tie each entry to its constant, so the arrays cannot drift from the
 * enums; the lookups are linear because the lists are a handful of names long. */
#include "order_status.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *name;
    int terminal;
    int cancellable;
} statuses[ORDER_STATUS_COUNT] = {
#define ORDER_STATUS(name, terminal, cancellable) [ORDER_##name] = {#name, terminal, cancellable},
#include "order_status.def"
};

/* Indexed by order_reason_t; ORDER_REASON_NONE has no name. */
static const char *const reasons[ORDER_REASON_COUNT] = {
    [ORDER_REASON_NONE] = NULL,
#define ORDER_REASON(name) [ORDER_REASON_##name] = #name,
#include "order_status.def"
};

const char *order_status_name(order_status_t s)
{
    return (unsigned)s < ORDER_STATUS_COUNT ? statuses[s].name : "UNKNOWN";
}

int order_status_parse(const char *name, order_status_t *out)
{
    for (int i = 0; name != NULL && i < ORDER_STATUS_COUNT; i++) {
        if (strcmp(name, statuses[i].name) == 0) {
            *out = (order_status_t)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

int order_status_is_terminal(order_status_t s)
{
    return (unsigned)s < ORDER_STATUS_COUNT && statuses[s].terminal;
}

int order_status_is_cancellable(order_status_t s)
{
    return (unsigned)s < ORDER_STATUS_COUNT && statuses[s].cancellable;
}

const char *order_reason_name(order_reason_t r)
{
    return (unsigned)r < ORDER_REASON_COUNT ? reasons[r] : NULL;
}

int order_reason_parse(const char *name, order_reason_t *out)
{
    for (int i = ORDER_REASON_NONE + 1; name != NULL && i < ORDER_REASON_COUNT; i++) {
        if (strcmp(name, reasons[i]) == 0) {
            *out = (order_reason_t)i;
            return 0;
        }
    }
    return ERR_INVALID;
}
