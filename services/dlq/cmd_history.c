/* dlq history [--limit N]: the audit trail of this tool, newest first. */
#include <stdio.h>

#include "dlq.h"

int dlq_cmd_history(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "history";
    err_t e;
    err_clear(&e);
    json_t *rows = NULL;
    if (dlq_history_list(c, a->limit, &rows, &e) != 0)
        return dlq_fail("reading the history", &e);
    if (a->json) {
        dlq_print_json(rows);
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r)
        {
            char *sel = json_dumps(json_object_get(r, "selection"), JSON_COMPACT);
            char *counts = json_dumps(json_object_get(r, "counts"), JSON_COMPACT);
            const char *queue = json_string_value(json_object_get(r, "queue"));
            const char *detail = json_string_value(json_object_get(r, "detail"));
            printf("%s  %s@%s  %s %s  %s  %s %s%s%s\n", json_string_value(json_object_get(r, "at")),
                   json_string_value(json_object_get(r, "operator")),
                   json_string_value(json_object_get(r, "host")),
                   json_string_value(json_object_get(r, "verb")), queue ? queue : "-",
                   json_string_value(json_object_get(r, "outcome")), sel ? sel : "",
                   counts ? counts : "", detail ? "  " : "", detail ? detail : "");
            free(sel);
            free(counts);
        }
    }
    json_decref(rows);
    return DLQ_EXIT_DONE;
}
