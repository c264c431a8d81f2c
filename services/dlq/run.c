/* run: what the verbs that act on a selection share: opening the selection, sending copies with
 * confirms at a rate, and the summary that is printed and recorded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "mq_publish.h"
#include "uuid.h"

int dlq_run_open(dlq_ctx_t *c, dlq_args_t *a, int need_selector, dlq_run_t *r)
{
    memset(r, 0, sizeof(*r));
    r->now = time(NULL);
    uuid_v4(r->id);
    if (a->n_pos < 1)
        return dlq_usage("%s: which queue? (dlq list shows them)", a->verb);
    dlq_queue_name(a->pos[0], r->queue, sizeof(r->queue));
    if (a->sel.manifest != NULL && strcmp(a->sel.manifest, r->queue) != 0)
        return dlq_usage("%s: the manifest is for %s, not %s", a->verb, a->sel.manifest, r->queue);
    if (need_selector && !dlq_sel_given(&a->sel))
        return dlq_usage("%s: select messages with --id, --group, --type, --since/--until or "
                         "--manifest, or say --all",
                         a->verb);
    err_t e;
    err_clear(&e);
    if (dlq_walk_open(c->amqp_url, c->ca_file, r->queue, 0, &r->w, &e) != 0) {
        char doing[300];
        snprintf(doing, sizeof(doing), "reading %s", r->queue);
        return dlq_fail(doing, &e);
    }
    r->selected = calloc(r->w.n ? r->w.n : 1, sizeof(*r->selected));
    if (r->selected == NULL) {
        err_set(&e, ERR_NOMEM, "out of memory");
        return dlq_fail("selecting", &e);
    }
    for (size_t i = 0; i < r->w.n; i++)
        if (dlq_sel_match(&a->sel, &r->w.msgs[i], r->now))
            r->selected[r->n_selected++] = i;
    if (a->limit > 0 && r->n_selected > (size_t)a->limit)
        r->n_selected = (size_t)a->limit;
    return 0;
}

void dlq_run_close(dlq_run_t *r)
{
    dlq_walk_close(&r->w);
    free(r->selected);
    r->selected = NULL;
}

json_t *dlq_republish_headers(const mq_delivery_t *d)
{
    json_t *h = mq_headers_flat(d->headers);
    /* The queue's count of that copy's deliveries, not the new one's. */
    json_object_del(h, "x-delivery-count");
    return h;
}

mq_message_t dlq_copy(const dlq_msg_t *m, const char *exchange, const char *routing_key,
                      const char *login, const json_t *headers)
{
    const mq_delivery_t *d = m->d;
    return (mq_message_t){
        .exchange = exchange,
        .routing_key = routing_key,
        .message_id = d->message_id,
        .correlation_id = d->correlation_id,
        .type = d->type,
        .app_id = d->app_id,
        .user_id = login,
        .content_type = d->content_type,
        .timestamp = d->timestamp,
        .headers = headers,
        .body = d->body,
        .body_len = d->body_len,
    };
}

mq_conn_t *dlq_publisher(dlq_ctx_t *c, const char *name, int *status)
{
    mq_conn_t *pub = NULL;
    err_t e;
    err_clear(&e);
    mq_opts_t o = {.connection_name = name, .ca_file = c->ca_file};
    if (mq_open(c->amqp_url, &o, &pub, &e) != 0 || mq_confirm_select(pub, &e) != 0) {
        dlq_connect_failed(&e);
        *status = dlq_fail("connecting to publish", &e);
        mq_close(pub);
        return NULL;
    }
    return pub;
}

void dlq_history_started(dlq_ctx_t *c, const dlq_args_t *a, const dlq_run_t *r)
{
    json_t *sel = dlq_sel_json(&a->sel);
    if (a->to)
        json_object_set_new(sel, "to", json_string(a->to));
    json_t *counts = json_pack("{s:I}", "selected", (json_int_t)r->n_selected);
    err_t e;
    if (dlq_history_add(c, a->verb, r->queue, sel, "started", counts, r->id, NULL, &e) != 0)
        fprintf(stderr, "dlq: could not record this in the history: %s\n", e.msg);
    json_decref(sel);
    json_decref(counts);
}

int dlq_send(dlq_ctx_t *c, dlq_run_t *r, mq_conn_t *pub, size_t from, size_t to, double rate,
             int64_t started_ms, size_t sent_before, dlq_build_fn build, void *arg, dlq_tally_t *t,
             dlq_progress_t *p, err_t *e)
{
    (void)c;
    enum { BATCH = 50 };
    size_t batch = BATCH;
    if (rate > 0 && rate / 10 < BATCH)
        batch = rate / 10 >= 1 ? (size_t)(rate / 10) : 1;
    mq_message_t msgs[BATCH];
    json_t *headers[BATCH];
    size_t of[BATCH];
    int status[BATCH];
    size_t k = from;
    size_t sent = sent_before;
    while (k < to && !interrupt_requested) {
        size_t n = 0;
        while (k < to && n < batch) {
            const dlq_msg_t *m = &r->w.msgs[r->selected[k]];
            char why[256] = "";
            json_t *h = NULL;
            mq_message_t out;
            memset(&out, 0, sizeof(out));
            if (build(arg, r, m, &out, &h, why, sizeof(why)) != 0) {
                t->refused++;
                if (t->detail[0] == '\0')
                    snprintf(t->detail, sizeof(t->detail), "%s: %s", m->id, why);
                k++;
                continue;
            }
            msgs[n] = out;
            headers[n] = h;
            of[n] = r->selected[k];
            n++;
            k++;
        }
        if (n == 0)
            continue;
        /* The batch goes when its last message may: message i (counted from 0 over the run)
         * never leaves before i / rate seconds, so no second carries more than rate. */
        if (rate > 0)
            dlq_sleep_until(started_ms + (int64_t)((double)(sent + n - 1) * 1000.0 / rate), &r->w);
        int rc = mq_publish_batch(pub, msgs, n, status, 30000, e);
        for (size_t j = 0; j < n; j++) {
            const dlq_msg_t *m = &r->w.msgs[of[j]];
            if (status[j] == 0) {
                err_t ae;
                if (dlq_walk_ack(&r->w, of[j], &ae) != 0 && rc == 0) {
                    *e = ae;
                    rc = ae.code;
                }
                t->done++;
            } else if (status[j] == ERR_UNROUTABLE) {
                t->unroutable++;
                if (t->detail[0] == '\0')
                    snprintf(t->detail, sizeof(t->detail),
                             "%s: no queue is bound to %s with key %s; left in place", m->id,
                             msgs[j].exchange && msgs[j].exchange[0] ? msgs[j].exchange
                                                                     : "the default exchange",
                             msgs[j].routing_key ? msgs[j].routing_key : "");
            } else if (rc == 0) {
                t->failed++;
                if (t->detail[0] == '\0')
                    snprintf(t->detail, sizeof(t->detail), "%s: the broker refused it (%s)", m->id,
                             err_name(status[j]));
            }
            json_decref(headers[j]);
        }
        sent += n;
        dlq_progress_step(p, sent);
        if (rc != 0) {
            if (t->detail[0] == '\0')
                snprintf(t->detail, sizeof(t->detail), "%s", e->msg);
            return rc;
        }
    }
    return 0;
}

int dlq_finish(dlq_ctx_t *c, dlq_args_t *a, dlq_run_t *r, const char *verb, dlq_tally_t *t,
               int64_t started_ms)
{
    double elapsed = (double)(dlq_now_ms() - started_ms) / 1000.0;
    size_t left = t->selected - t->done;
    int complete = left == 0 && !interrupt_requested;
    const char *outcome = complete ? "done" : t->done > 0 ? "partial" : "nothing done";
    json_t *counts =
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "selected", (json_int_t)t->selected, "done",
                  (json_int_t)t->done, "refused", (json_int_t)t->refused, "unroutable",
                  (json_int_t)t->unroutable, "failed", (json_int_t)t->failed, "left",
                  (json_int_t)left, "canary", t->canary ? t->canary : "none");
    json_t *sel = dlq_sel_json(&a->sel);
    if (a->to)
        json_object_set_new(sel, "to", json_string(a->to));
    err_t e;
    err_clear(&e);
    int recorded = dlq_history_add(c, verb, r->queue, sel, outcome, counts, r->id,
                                   t->detail[0] ? t->detail : NULL, &e);
    if (a->json) {
        json_t *j = json_deep_copy(counts);
        json_object_set_new(j, "verb", json_string(verb));
        json_object_set_new(j, "queue", json_string(r->queue));
        json_object_set_new(j, "run", json_string(r->id));
        json_object_set_new(j, "outcome", json_string(complete ? "done" : "partial"));
        json_object_set_new(j, "elapsed_s", json_real(elapsed));
        if (t->detail[0])
            json_object_set_new(j, "detail", json_string(t->detail));
        dlq_print_json(j);
        json_decref(j);
    } else {
        printf("%s %s: %zu selected, %zu %s, %zu refused, %zu unroutable, %zu failed, %zu left "
               "(run %s, %.1f s%s%s)\n",
               verb, r->queue, t->selected, t->done,
               strcmp(verb, "purge") == 0  ? "removed"
               : strcmp(verb, "move") == 0 ? "moved"
                                           : "replayed",
               t->refused, t->unroutable, t->failed, left, r->id, elapsed,
               t->canary && strcmp(t->canary, "none") != 0 ? ", canary " : "",
               t->canary && strcmp(t->canary, "none") != 0 ? t->canary : "");
        if (t->detail[0])
            printf("  first problem: %s\n", t->detail);
        if (left > 0)
            printf("  what was not done is still in %s; dlq show %s lists it\n", r->queue,
                   r->queue);
    }
    if (recorded != 0)
        fprintf(stderr, "dlq: could not record this in the history: %s\n", e.msg);
    json_decref(counts);
    json_decref(sel);
    return complete ? DLQ_EXIT_DONE : DLQ_EXIT_PARTIAL;
}
