/* dlq groups [QUEUE]: dead letters grouped by fingerprint (failure class, error code, message
 * type, handler, original queue) with count, first and last seen, one sample error, and the
 * group's note. A group noted resolved that has a message dead-lettered after the resolution
 * (both times to the millisecond) is reopened: its note's status goes back to open and the
 * history says so. Changes nothing in the queues. */
#include <stdio.h>
#include <string.h>

#include "dlq.h"
#include "log.h"

/* Adds the groups of queue to groups (object: key -> group). */
static int collect(dlq_ctx_t *c, const char *queue, json_t *groups, err_t *e)
{
    dlq_walk_t w;
    int rc = dlq_walk_open(c->amqp_url, c->ca_file, queue, 0, &w, e);
    for (size_t i = 0; rc == 0 && i < w.n; i++) {
        const dlq_msg_t *m = &w.msgs[i];
        char key[300];
        snprintf(key, sizeof(key), "%s %s", queue, m->fingerprint);
        json_t *g = json_object_get(groups, key);
        if (g == NULL) {
            char error[512];
            log_mask_digits(m->error, error, sizeof(error));
            char base[256];
            dlq_base_queue(queue, base, sizeof(base));
            g = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "fingerprint",
                          m->fingerprint, "queue", queue, "original_queue",
                          m->original_queue[0] ? m->original_queue : base, "class", m->klass,
                          "code", m->code, "type", m->type, "handler", m->handler, "count",
                          (json_int_t)0, "first", (json_int_t)m->dead_at_ms, "last",
                          (json_int_t)m->dead_at, "sample_error", error);
            json_object_set_new(groups, key, g);
        }
        json_object_set_new(g, "count",
                            json_integer(json_integer_value(json_object_get(g, "count")) + 1));
        if ((json_int_t)m->dead_at_ms < json_integer_value(json_object_get(g, "first")))
            json_object_set_new(g, "first", json_integer((json_int_t)m->dead_at_ms));
        if ((json_int_t)m->dead_at_ms > json_integer_value(json_object_get(g, "last")))
            json_object_set_new(g, "last", json_integer((json_int_t)m->dead_at_ms));
    }
    dlq_walk_close(&w);
    return rc;
}

int dlq_cmd_groups(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "groups";
    err_t e;
    err_clear(&e);
    json_t *queues = NULL;
    if (a->n_pos > 0) {
        char q[256];
        dlq_queue_name(a->pos[0], q, sizeof(q));
        queues = json_pack("[{s:s}]", "name", q);
    } else if (dlq_list_queues(c, &queues, &e) != 0) {
        return dlq_fail("listing the dead-letter queues", &e);
    }
    json_t *groups = json_object();
    size_t i;
    json_t *q;
    int status = DLQ_EXIT_DONE;
    json_array_foreach(queues, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (collect(c, name, groups, &e) != 0) {
            char doing[300];
            snprintf(doing, sizeof(doing), "reading %s", name);
            status = dlq_fail(doing, &e);
            break;
        }
    }
    json_t *notes = NULL;
    if (status == DLQ_EXIT_DONE && dlq_notes_all(c, &notes, &e) != 0)
        status = dlq_fail("reading the notes", &e);
    json_t *out = json_array();
    const char *key;
    json_t *g;
    json_object_foreach(groups, key, g)
    {
        if (status != DLQ_EXIT_DONE)
            break;
        const char *fp = json_string_value(json_object_get(g, "fingerprint"));
        json_t *note = json_object_get(notes, fp);
        const char *st = note ? json_string_value(json_object_get(note, "status")) : "open";
        const char *resolved_at =
            note ? json_string_value(json_object_get(note, "resolved_at")) : NULL;
        int64_t resolved = 0;
        err_t te;
        if (note && strcmp(st, "resolved") == 0 && resolved_at &&
            dlq_parse_time_ms(resolved_at, 0, &resolved, &te) == 0 &&
            json_integer_value(json_object_get(g, "last")) > (json_int_t)resolved) {
            st = "open";
            json_t *sel = json_pack("{s:s}", "group", fp);
            if (dlq_note_set(c, fp, "open", "", &e) != 0 ||
                dlq_history_add(c, "reopen", json_string_value(json_object_get(g, "queue")), sel,
                                "reopened", NULL, NULL,
                                "a message was dead-lettered after the group was resolved",
                                &e) != 0)
                fprintf(stderr, "dlq: could not reopen group %s: %s\n", fp, e.msg);
            json_decref(sel);
        }
        char first[32], last[32];
        dlq_format_time((time_t)(json_integer_value(json_object_get(g, "first")) / 1000), first,
                        sizeof(first));
        dlq_format_time((time_t)(json_integer_value(json_object_get(g, "last")) / 1000), last,
                        sizeof(last));
        json_t *item = json_deep_copy(g);
        json_object_del(item, "first");
        json_object_del(item, "last");
        json_object_set_new(item, "first_seen", json_string(first));
        json_object_set_new(item, "last_seen", json_string(last));
        json_object_set_new(item, "status", json_string(st));
        json_object_set_new(item, "note",
                            note ? json_copy(json_object_get(note, "note")) : json_null());
        json_array_append_new(out, item);
    }
    if (status == DLQ_EXIT_DONE) {
        if (a->json) {
            dlq_print_json(out);
        } else if (json_array_size(out) == 0) {
            printf("no dead letters\n");
        } else {
            json_array_foreach(out, i, g)
            {
                const char *note = json_string_value(json_object_get(g, "note"));
                printf("%s  %s  %lld message(s), %s .. %s  [%s]\n",
                       json_string_value(json_object_get(g, "fingerprint")),
                       json_string_value(json_object_get(g, "queue")),
                       (long long)json_integer_value(json_object_get(g, "count")),
                       json_string_value(json_object_get(g, "first_seen")),
                       json_string_value(json_object_get(g, "last_seen")),
                       json_string_value(json_object_get(g, "status")));
                printf("    %s %s  type %s  handler %s  from %s\n",
                       json_string_value(json_object_get(g, "class")),
                       json_string_value(json_object_get(g, "code")),
                       json_string_value(json_object_get(g, "type")),
                       json_string_value(json_object_get(g, "handler")),
                       json_string_value(json_object_get(g, "original_queue")));
                printf("    e.g. %s\n", json_string_value(json_object_get(g, "sample_error")));
                if (note)
                    printf("    note: %s\n", note);
            }
        }
    }
    json_decref(out);
    json_decref(notes);
    json_decref(groups);
    json_decref(queues);
    return status;
}
