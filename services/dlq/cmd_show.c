/* dlq show QUEUE [SEL] [--limit N]: each selected message, its failure, its origin, its trace
 * and its body, with anything card-like masked. Changes nothing. */
#include <stdio.h>
#include <stdlib.h>

#include "dlq.h"

int dlq_cmd_show(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "show";
    dlq_run_t r;
    int status = dlq_run_open(c, a, 0, &r);
    if (status != 0) {
        dlq_run_close(&r);
        return status;
    }
    json_t *list = json_array();
    for (size_t k = 0; k < r.n_selected; k++)
        json_array_append_new(list, dlq_msg_json(&r.w.msgs[r.selected[k]]));
    if (a->json) {
        dlq_print_json(list);
    } else {
        printf("%s: %zu message(s), %zu shown\n", r.queue, r.w.n, r.n_selected);
        size_t i;
        json_t *m;
        json_array_foreach(list, i, m)
        {
            const char *refusal = json_string_value(json_object_get(m, "refusal"));
            printf("\n#%lld %s  %s\n",
                   (long long)json_integer_value(json_object_get(m, "position")),
                   json_string_value(json_object_get(m, "id")),
                   json_string_value(json_object_get(m, "type")));
            printf("  failure   %s %s: %s\n", json_string_value(json_object_get(m, "class")),
                   json_string_value(json_object_get(m, "code")),
                   json_string_value(json_object_get(m, "error")));
            printf("  handler   %s   attempts %lld   group %s\n",
                   json_string_value(json_object_get(m, "handler")),
                   (long long)json_integer_value(json_object_get(m, "attempts")),
                   json_string_value(json_object_get(m, "fingerprint")));
            printf("  from      queue %s, exchange %s, routing key %s\n",
                   json_string_value(json_object_get(m, "original_queue")),
                   json_string_value(json_object_get(m, "exchange")),
                   json_string_value(json_object_get(m, "routing_key")));
            const char *trace = json_string_value(json_object_get(m, "trace_id"));
            printf("  died      first %s, last %s   trace %s   replays %lld\n",
                   json_string_value(json_object_get(m, "first_death")),
                   json_string_value(json_object_get(m, "dead_at")), trace ? trace : "-",
                   (long long)json_integer_value(json_object_get(m, "replay_count")));
            printf("  sender    %s   %s\n", json_string_value(json_object_get(m, "sender")),
                   refusal ? refusal : "replayable");
            printf("  body      %s\n", json_string_value(json_object_get(m, "body")));
        }
    }
    json_decref(list);
    dlq_run_close(&r);
    return DLQ_EXIT_DONE;
}
