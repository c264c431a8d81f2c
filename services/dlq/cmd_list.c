/* dlq list: every dead-letter queue with its depth, the age of its oldest message and its number
 * of groups. Changes nothing. */
#include <stdio.h>
#include <string.h>

#include "dlq.h"

int dlq_cmd_list(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "list";
    err_t e;
    err_clear(&e);
    json_t *queues = NULL;
    if (dlq_list_queues(c, &queues, &e) != 0)
        return dlq_fail("listing the dead-letter queues", &e);
    json_t *out = json_array();
    int status = DLQ_EXIT_DONE;
    size_t i;
    json_t *q;
    time_t now = time(NULL);
    json_array_foreach(queues, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        dlq_walk_t w;
        if (dlq_walk_open(c->amqp_url, c->ca_file, name, 0, &w, &e) != 0) {
            char doing[300];
            snprintf(doing, sizeof(doing), "reading %s", name);
            status = dlq_fail(doing, &e);
            dlq_walk_close(&w);
            break;
        }
        time_t oldest = 0;
        json_t *fps = json_object();
        for (size_t k = 0; k < w.n; k++) {
            if (oldest == 0 || w.msgs[k].dead_at < oldest)
                oldest = w.msgs[k].dead_at;
            json_object_set_new(fps, w.msgs[k].fingerprint, json_true());
        }
        json_array_append_new(
            out,
            json_pack("{s:s,s:I,s:o,s:I}", "queue", name, "depth", (json_int_t)w.n, "oldest_age_s",
                      w.n ? json_integer((json_int_t)(now - oldest)) : json_null(), "groups",
                      (json_int_t)json_object_size(fps)));
        json_decref(fps);
        dlq_walk_close(&w);
    }
    if (status == DLQ_EXIT_DONE) {
        if (a->json) {
            dlq_print_json(out);
        } else {
            printf("%-28s %8s %12s %7s\n", "queue", "depth", "oldest", "groups");
            json_array_foreach(out, i, q)
            {
                json_t *age = json_object_get(q, "oldest_age_s");
                char oldest[32] = "-";
                if (json_is_integer(age)) {
                    long long s = json_integer_value(age);
                    if (s < 120)
                        snprintf(oldest, sizeof(oldest), "%lld s", s);
                    else if (s < 7200)
                        snprintf(oldest, sizeof(oldest), "%lld min", s / 60);
                    else if (s < 172800)
                        snprintf(oldest, sizeof(oldest), "%lld h", s / 3600);
                    else
                        snprintf(oldest, sizeof(oldest), "%lld d", s / 86400);
                }
                printf("%-28s %8lld %12s %7lld\n", json_string_value(json_object_get(q, "queue")),
                       (long long)json_integer_value(json_object_get(q, "depth")), oldest,
                       (long long)json_integer_value(json_object_get(q, "groups")));
            }
        }
    }
    json_decref(out);
    json_decref(queues);
    return status;
}
