/* petstore-saga show ORDER: one saga as a timeline. The step log (version, input, from -> to,
 * the message that caused it and when the inbox received it, why), under each step the
 * messages it wrote to the saga's outbox (id, type, routing key, published or not: rows the
 * relay's retention deleted are gone from here), the operator actions of the audit, the timer
 * (deadline, attempts, failures, last error, parked), the trace id(s) of the order, and a last
 * line that says what happens next: "waiting for X until T", "finished: STATUS at T" or
 * "parked: needs an operator since T — try: ...". Changes nothing.
 *
 * A step and the messages it wrote share a transaction, so their times are equal (now() of the
 * transaction); that is how messages are put under their step. */
#include <stdio.h>
#include <string.h>

#include "sagatool.h"
#include "trace.h"

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static const char *opt(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The distinct trace ids of the order's messages (new reference). */
static json_t *trace_ids(const json_t *sent)
{
    json_t *ids = json_array();
    size_t i, k;
    json_t *m, *seen;
    json_array_foreach(sent, i, m)
    {
        trace_ctx_t t;
        if (trace_parse(opt(m, "traceparent"), &t) != 0)
            continue;
        int dup = 0;
        json_array_foreach(ids, k, seen) dup |= strcmp(json_string_value(seen), t.trace_id) == 0;
        if (!dup)
            json_array_append_new(ids, json_string(t.trace_id));
    }
    return ids;
}

/* Fills the view of the last line from the document. */
static int view_of(const json_t *doc, sagatool_view_t *v)
{
    const json_t *saga = json_object_get(doc, "saga");
    const json_t *timer = json_object_get(doc, "timer");
    memset(v, 0, sizeof(*v));
    v->order_id = opt(saga, "order_id");
    if (saga_status_parse(opt(saga, "status"), &v->state.status) != 0)
        return -1;
    v->state.reason = SAGA_REASON_NONE;
    if (opt(saga, "reason") && saga_reason_parse(opt(saga, "reason"), &v->state.reason) != 0)
        v->state.reason = SAGA_REASON_NONE;
    v->state.pending = (unsigned)json_integer_value(json_object_get(saga, "pending"));
    v->state.attempts = (int)json_integer_value(json_object_get(saga, "attempts"));
    v->since = opt(saga, "since");
    if (json_is_object(timer)) {
        v->deadline = opt(timer, "deadline");
        v->timer_parked_at = opt(timer, "parked_at");
    }
    return 0;
}

static void print_sent(const json_t *m)
{
    const char *sent = opt(m, "sent_at");
    const char *parked = opt(m, "parked_at");
    char state[200];
    if (sent)
        snprintf(state, sizeof(state), "published %s", sent);
    else if (parked)
        snprintf(state, sizeof(state), "NOT published: parked by the relay at %s (%s)", parked,
                 str(m, "last_error"));
    else
        snprintf(state, sizeof(state), "not yet published (%lld attempts)",
                 (long long)json_integer_value(json_object_get(m, "attempts")));
    printf("        sent %-34s %s  key %s  %s\n", str(m, "type"), str(m, "message_id"),
           str(m, "routing_key"), state);
}

static void print_text(const json_t *doc, const char *last_line, const char *waiting)
{
    const json_t *saga = json_object_get(doc, "saga");
    const json_t *steps = json_object_get(doc, "steps");
    const json_t *sent = json_object_get(doc, "sent");
    const json_t *actions = json_object_get(doc, "actions");
    const json_t *timer = json_object_get(doc, "timer");
    json_t *traces = json_object_get(doc, "trace_ids");

    printf("order %s\n", str(saga, "order_id"));
    printf("  status %s, reason %s, version %lld, attempts %lld, waiting for %s\n",
           str(saga, "status"), str(saga, "reason"),
           (long long)json_integer_value(json_object_get(saga, "version")),
           (long long)json_integer_value(json_object_get(saga, "attempts")), waiting);
    long long total = json_integer_value(json_object_get(saga, "total_cents"));
    printf("  created %s, %zu pet(s), total %lld.%02lld, card ****%s\n", str(saga, "created_at"),
           json_array_size(json_object_get(saga, "pet_ids")), total / 100, total % 100,
           str(saga, "card_last4"));
    size_t i, k;
    json_t *it;
    if (json_array_size(traces) == 0)
        printf("  trace - (no message of the order left in the outbox)\n");
    else
        printf("  trace %s (the order's)\n", json_string_value(json_array_get(traces, 0)));
    if (json_array_size(traces) > 1) {
        printf("  other traces (steps fired by the saga's timers):");
        json_array_foreach(traces, i, it) if (i > 0) printf(" %s", json_string_value(it));
        printf("\n");
    }

    printf("\nsteps (received: the message that caused the step; sent: what the step wrote)\n");
    size_t n_steps = json_array_size(steps);
    json_array_foreach(steps, i, it)
    {
        const char *from = opt(it, "from");
        printf("  %s  v%-3lld %-20s %14s -> %-14s  %s\n", str(it, "at"),
               (long long)json_integer_value(json_object_get(it, "version")), str(it, "event"),
               from ? from : "-", str(it, "to"), str(it, "why"));
        const char *msg = opt(it, "message_id");
        const json_t *after = i + 1 < n_steps ? json_array_get(steps, i + 1) : NULL;
        if (msg && after && opt(after, "message_id") && strcmp(opt(after, "message_id"), msg) == 0)
            msg = NULL; /* one message, two steps (order.placed creates and starts the saga) */
        if (msg && strncmp(str(it, "event"), "operator_", 9) == 0)
            printf("        operator action %s\n", msg);
        else if (msg)
            printf("        received %s%s%s\n", msg,
                   opt(it, "received_at") ? " at " : " (inbox row purged)",
                   opt(it, "received_at") ? opt(it, "received_at") : "");
        /* The messages of this step: same transaction time, and no later step at that time. */
        const char *at = str(it, "at");
        const json_t *next = i + 1 < n_steps ? json_array_get(steps, i + 1) : NULL;
        if (next && strcmp(str(next, "at"), at) == 0)
            continue;
        json_t *m;
        json_array_foreach(sent, k, m) if (strcmp(str(m, "created_at"), at) == 0) print_sent(m);
    }
    /* Messages no step explains (none, unless written by hand). */
    json_t *m;
    json_array_foreach(sent, k, m)
    {
        int matched = 0;
        json_array_foreach(steps, i, it) matched |=
            strcmp(str(it, "at"), str(m, "created_at")) == 0;
        if (!matched) {
            printf("  %s  (no step)\n", str(m, "created_at"));
            print_sent(m);
        }
    }

    if (json_array_size(actions) > 0) {
        printf("\noperator actions (audit)\n");
        json_array_foreach(actions, i, it)
        {
            const char *from = opt(it, "from"), *to = opt(it, "to");
            printf("  %s  %-10s %-10s %-13s %s%s%s  \"%s\"  %s\n", str(it, "at"),
                   str(it, "operator"), str(it, "verb"), str(it, "outcome"), from ? from : "",
                   to ? " -> " : "", to ? to : "", str(it, "reason"), str(it, "detail"));
        }
    }

    printf("\ntimer\n");
    if (json_is_object(timer)) {
        char in[32];
        sagatool_format_duration(json_integer_value(json_object_get(timer, "in_ms")), in,
                                 sizeof(in));
        long long in_ms = json_integer_value(json_object_get(timer, "in_ms"));
        printf("  deadline %s (%s %s), attempt %lld, failures %lld, last error %s, parked %s\n",
               str(timer, "deadline"), in_ms >= 0 ? "in" : "due for", in,
               (long long)json_integer_value(json_object_get(timer, "attempt")),
               (long long)json_integer_value(json_object_get(timer, "failures")),
               str(timer, "last_error"), str(timer, "parked_at"));
    } else {
        printf("  none\n");
    }
    printf("\n%s\n", last_line);
}

int sagatool_cmd_show(sagatool_ctx_t *c, sagatool_args_t *a)
{
    err_t e;
    err_clear(&e);
    json_t *doc = NULL;
    if (sagatool_query_show(c, a->orders[0], &doc, &e) != 0)
        return sagatool_fail("reading the saga", &e);
    sagatool_view_t v;
    if (view_of(doc, &v) != 0) {
        json_decref(doc);
        err_set(&e, ERR_INTERNAL, "the saga's status is unknown to this tool");
        return sagatool_fail("reading the saga", &e);
    }
    char last[600], waiting[128];
    sagatool_last_line(&v, last, sizeof(last));
    sagatool_waiting_for(&v.state, waiting, sizeof(waiting));
    json_object_set_new(doc, "trace_ids", trace_ids(json_object_get(doc, "sent")));
    json_object_set_new(doc, "waiting_for", json_string(waiting));
    json_object_set_new(doc, "last_line", json_string(last));
    if (a->json)
        sagatool_print_json(doc);
    else
        print_text(doc, last, waiting);
    json_decref(doc);
    return SAGATOOL_EXIT_DONE;
}
