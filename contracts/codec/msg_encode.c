/* msg_encode: the producer side of the codec. A service can only put on the wire what a
 * consumer would accept: the payload is validated against its contract and the serialised body
 * is held to the same size cap msg_decode enforces. */
#include <stdlib.h>
#include <string.h>

#include "msg.h"

int msg_encode(msg_type_t type, const json_t *payload, char **out, size_t *len, err_t *e)
{
    char *body = NULL;
    size_t n;
    int rc = msg_validate(type, payload, e);

    if (rc != 0)
        return rc;
    /* Sorted keys make the body a function of the payload's content alone (jansson otherwise
     * keeps insertion order), so retries and tests see identical bytes. */
    body = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (body == NULL)
        return err_set(e, ERR_NOMEM, "cannot serialise the payload");
    n = strlen(body);
    if (n > MSG_MAX_BODY) {
        free(body);
        return err_set(e, ERR_INVALID, "body too large: %zu bytes, the limit is %d", n,
                       MSG_MAX_BODY);
    }
    *out = body;
    if (len != NULL)
        *len = n;
    return 0;
}
