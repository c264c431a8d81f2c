/* dlq plan QUEUE [SEL] -o FILE: freezes a selection to a manifest of message ids (used with
 * --manifest, it selects exactly those messages, however the queue changes meanwhile) and
 * prints what a replay would do with each. Changes nothing in the queue. */
#include <stdio.h>
#include <string.h>

#include "dlq.h"

int dlq_cmd_plan(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "plan";
    if (a->out == NULL)
        return dlq_usage("plan: where should the manifest go? (-o FILE)");
    dlq_run_t r;
    int status = dlq_run_open(c, a, 0, &r);
    if (status != 0) {
        dlq_run_close(&r);
        return status;
    }
    char created[32];
    dlq_format_time(r.now, created, sizeof(created));
    json_t *msgs = json_array();
    size_t replayable = 0;
    for (size_t k = 0; k < r.n_selected; k++) {
        const dlq_msg_t *m = &r.w.msgs[r.selected[k]];
        char dest[600], action[300];
        snprintf(dest, sizeof(dest), "%s:%s", m->exchange, m->routing_key);
        if (m->refusal[0])
            snprintf(action, sizeof(action), "refuse: %s", m->refusal);
        else if (m->routing_key[0] == '\0')
            snprintf(action, sizeof(action), "refuse: no original destination (use --to)");
        else
            snprintf(action, sizeof(action), "replay");
        replayable += strcmp(action, "replay") == 0;
        json_array_append_new(msgs, json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", m->id, "type", m->type,
                                              "fingerprint", m->fingerprint, "destination", dest,
                                              "action", action));
    }
    json_t *sel = dlq_sel_json(&a->sel);
    json_t *manifest = json_pack("{s:s,s:s,s:s,s:O,s:O}", "queue", r.queue, "created_at", created,
                                 "run", r.id, "selection", sel, "messages", msgs);
    err_t e;
    err_clear(&e);
    if (json_dump_file(manifest, a->out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        fprintf(stderr, "dlq: cannot write the manifest to %s; choose another -o FILE\n", a->out);
        status = DLQ_EXIT_USAGE;
    } else {
        json_t *counts = json_pack("{s:I,s:I}", "selected", (json_int_t)r.n_selected, "replayable",
                                   (json_int_t)replayable);
        if (dlq_history_add(c, "plan", r.queue, sel, "written", counts, r.id, a->out, &e) != 0)
            fprintf(stderr, "dlq: could not record this in the history: %s\n", e.msg);
        json_decref(counts);
        if (a->json) {
            dlq_print_json(manifest);
        } else {
            size_t i;
            json_t *m;
            json_array_foreach(msgs, i, m)
                printf("%s  %-34s -> %-40s %s\n", json_string_value(json_object_get(m, "id")),
                       json_string_value(json_object_get(m, "type")),
                       json_string_value(json_object_get(m, "destination")),
                       json_string_value(json_object_get(m, "action")));
            printf("plan %s: %zu selected, %zu would be replayed, %zu refused; manifest %s\n"
                   "  replay it with: dlq replay %s --manifest %s\n",
                   r.queue, r.n_selected, replayable, r.n_selected - replayable, a->out, r.queue,
                   a->out);
        }
    }
    json_decref(sel);
    json_decref(msgs);
    json_decref(manifest);
    dlq_run_close(&r);
    return status;
}
