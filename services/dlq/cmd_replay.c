/* dlq replay QUEUE SEL [--to EXCHANGE:KEY] [--rate N] [--canary K] [--canary-wait DUR]
 *
 * Publishes each selected message again to its original exchange and routing key (or --to), as
 * the dlq user speaking for its producer (x-petstore-replay-for), with the same message id (the
 * consumers' inboxes drop what they already handled), every header and the trace, plus
 * x-petstore-replay-count, -replayed-at and -replay-run; mandatory and with confirms; the
 * original leaves the .dlq only after its copy's confirm. Refused, and left in place: what the
 * tool cannot prove authentic (message.c) and what has no known destination.
 *
 * --canary K: the first K go alone; then the tool watches every dead-letter queue for
 * --canary-wait (default 5 s). A copy that comes back (its x-petstore-replay-run is this run's)
 * stops the run with the rest untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlq.h"
#include "mq_publish.h"
#include "msg.h"

typedef struct replay {
    const char *to_exchange, *to_key; /* NULL: the original destination */
    char at[32];
    const char *login;
} replay_t;

static int build(void *arg, const dlq_run_t *r, const dlq_msg_t *m, mq_message_t *out,
                 json_t **headers, char *why, size_t n)
{
    const replay_t *rp = arg;
    if (m->refusal[0]) {
        snprintf(why, n, "%s", m->refusal);
        return -1;
    }
    const char *exchange = rp->to_exchange ? rp->to_exchange : m->exchange;
    const char *key = rp->to_key ? rp->to_key : m->routing_key;
    if (rp->to_exchange == NULL && key[0] == '\0') {
        snprintf(why, n, "no original destination recorded; give one with --to EXCHANGE:KEY");
        return -1;
    }
    json_t *h = dlq_republish_headers(m->d);
    char first[32];
    dlq_format_time(m->first_death, first, sizeof(first));
    if (json_object_get(h, "x-petstore-first-failed-at") == NULL)
        json_object_set_new(h, "x-petstore-first-failed-at", json_string(first));
    json_object_set_new(h, "x-petstore-replay-count", json_integer(m->replay_count + 1));
    json_object_set_new(h, "x-petstore-replayed-at", json_string(rp->at));
    json_object_set_new(h, "x-petstore-replay-run", json_string(r->id));
    json_object_set_new(h, MSG_REPLAY_FOR_HEADER, json_string(m->producer));
    *out = dlq_copy(m, exchange, key, rp->login, h);
    *headers = h;
    return 0;
}

/* Whether a dead letter taken during the canary watch is one of this run's copies. */
static int is_ours(const dlq_msg_t *m, const char *run)
{
    const char *v = json_string_value(json_object_get(m->d->headers, "x-petstore-replay-run"));
    return v != NULL && strcmp(v, run) == 0;
}

/* Looks through the other dead-letter queues for this run's copies (taking and returning them). */
static int came_back_elsewhere(dlq_ctx_t *c, const dlq_run_t *r, char *where, size_t n)
{
    json_t *queues = NULL;
    err_t e;
    if (dlq_list_queues(c, &queues, &e) != 0)
        return 0;
    size_t i;
    json_t *q;
    int found = 0;
    json_array_foreach(queues, i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (found || name == NULL || strcmp(name, r->queue) == 0)
            continue;
        dlq_walk_t w;
        if (dlq_walk_open(c->amqp_url, c->ca_file, name, 0, &w, &e) == 0)
            for (size_t k = 0; k < w.n && !found; k++)
                if (is_ours(&w.msgs[k], r->id)) {
                    found = 1;
                    snprintf(where, n, "%s came back to %s (%s: %s)", w.msgs[k].id, name,
                             w.msgs[k].klass, w.msgs[k].error);
                }
        dlq_walk_close(&w);
    }
    json_decref(queues);
    return found;
}

/* Watches for wait_ms whether a copy of this run comes back: among the messages taken after
 * the first `from` (acks take one now and then too, see walk.c). 1 when one did (why in where). */
static int canary_failed(dlq_ctx_t *c, dlq_run_t *r, size_t from, long long wait_ms, char *where,
                         size_t n)
{
    int64_t deadline = dlq_now_ms() + wait_ms;
    for (;;) {
        size_t before = from, added = 0;
        err_t e;
        if (dlq_walk_more(&r->w, &added, &e) == 0)
            for (size_t k = before; k < r->w.n; k++)
                if (is_ours(&r->w.msgs[k], r->id)) {
                    snprintf(where, n, "%s came back to %s (%s: %s)", r->w.msgs[k].id, r->queue,
                             r->w.msgs[k].klass, r->w.msgs[k].error);
                    return 1;
                }
        from = r->w.n;
        if (dlq_now_ms() >= deadline || interrupt_requested)
            break;
        dlq_sleep_until(dlq_now_ms() + 200 < deadline ? dlq_now_ms() + 200 : deadline, &r->w);
    }
    return came_back_elsewhere(c, r, where, n);
}

int dlq_cmd_replay(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "replay";
    replay_t rp = {0};
    char to_exchange[256] = "";
    if (a->to != NULL) {
        const char *colon = strchr(a->to, ':');
        if (colon == NULL || colon[1] == '\0' || (size_t)(colon - a->to) >= sizeof(to_exchange))
            return dlq_usage("replay: --to wants EXCHANGE:KEY (an empty EXCHANGE is the default "
                             "exchange, whose KEY is a queue), not \"%s\"",
                             a->to);
        memcpy(to_exchange, a->to, (size_t)(colon - a->to));
        to_exchange[colon - a->to] = '\0';
        rp.to_exchange = to_exchange;
        rp.to_key = colon + 1;
    }
    dlq_run_t r;
    int status = dlq_run_open(c, a, 1, &r);
    if (status != 0) {
        dlq_run_close(&r);
        return status;
    }
    int64_t started = dlq_now_ms();
    dlq_history_started(c, a, &r);
    dlq_tally_t t = {.selected = r.n_selected, .canary = a->canary > 0 ? "none" : NULL};
    dlq_format_time(time(NULL), rp.at, sizeof(rp.at));

    err_t e;
    err_clear(&e);
    mq_conn_t *pub = dlq_publisher(c, "dlq replay", &status);
    if (pub == NULL) {
        dlq_run_close(&r);
        return status;
    }
    rp.login = mq_login(pub);
    if (rp.to_exchange != NULL && mq_check_exchange(pub, rp.to_exchange, &e) != 0) {
        snprintf(t.detail, sizeof(t.detail), "--to: %s; nothing sent", e.msg);
        t.failed = 0;
        status = dlq_finish(c, a, &r, "replay", &t, started);
        mq_close(pub);
        dlq_run_close(&r);
        return status;
    }
    dlq_progress_t p;
    dlq_progress_start(&p, "replay", r.n_selected);
    size_t first = 0;
    int rc = 0;
    if (a->canary > 0 && r.n_selected > 0) {
        /* The canaries are the first K that can be replayed (refused ones are only counted). */
        size_t k = 0, replayable = 0, taken = r.w.n;
        while (k < r.n_selected && replayable < (size_t)a->canary) {
            const dlq_msg_t *m = &r.w.msgs[r.selected[k++]];
            replayable += m->refusal[0] == '\0' && (rp.to_exchange || m->routing_key[0]);
        }
        rc = dlq_send(c, &r, pub, 0, k, a->rate, started, 0, build, &rp, &t, &p, &e);
        first = k;
        if (rc == 0 && !interrupt_requested) {
            char where[400] = "";
            long long wait = a->canary_wait_ms > 0 ? a->canary_wait_ms : 5000;
            if (t.done == 0) {
                t.canary = "failed";
                if (t.detail[0] == '\0')
                    snprintf(t.detail, sizeof(t.detail), "no canary could be replayed; stopped");
                first = r.n_selected;
            } else if (canary_failed(c, &r, taken, wait, where, sizeof(where))) {
                t.canary = "failed";
                snprintf(t.detail, sizeof(t.detail), "canary failed: %s; the rest is untouched",
                         where);
                first = r.n_selected;
            } else {
                t.canary = "passed";
            }
        }
    }
    if (rc == 0 && first < r.n_selected && !interrupt_requested)
        rc = dlq_send(c, &r, pub, first, r.n_selected, a->rate, started, first, build, &rp, &t, &p,
                      &e);
    dlq_progress_end(&p);
    if (rc != 0 && t.detail[0] == '\0')
        snprintf(t.detail, sizeof(t.detail), "%s", e.msg);
    mq_close(pub);
    status = dlq_finish(c, a, &r, "replay", &t, started);
    dlq_run_close(&r);
    if (rc == ERR_RETRY || rc == ERR_TIMEOUT)
        status = DLQ_EXIT_PARTIAL;
    return status;
}
