/* act: the write verbs' engine (retry, compensate, resume), from the selection to the report.
 *
 *   1. select: the ORDER ids given, or the sagas the selectors select (as list shows them);
 *      more than one needs --yes (a dry run does not);
 *   2. apply, one saga at a time, paced by --rate: in one transaction load the saga, ask the
 *      machine, and either record a refusal, or apply the operator's input with saga_apply (the
 *      orchestrator's own path) and append the audit row "sent"; a version conflict (the
 *      orchestrator moved the saga meanwhile) rolls back and starts again from the load, so the
 *      machine always decides on the saga as it is. --dry-run asks the machine only, and
 *      records a "dry-run" audit row;
 *   3. confirm: poll every applied saga until its action is confirmed (sagatool.h) or --wait
 *      runs out, and append the second audit row, confirmed or not-confirmed;
 *   4. report: one line per saga (or --json), exit 0 only when every saga was confirmed.
 *
 * The commands the step sends continue the order's trace: their parent is the traceparent of
 * the order's first outbox row, so ./petstore trace finds the operator's step in the order's
 * story. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "sagatool.h"
#include "store.h"
#include "trace.h"
#include "uuid.h"

/* Version conflicts in a row before a saga is reported as failed. */
#define CONFLICT_TRIES 5
#define POLL_MS 200

typedef struct item {
    char order_id[SAGA_UUID_LEN + 1];
    char action_id[SAGA_UUID_LEN + 1];
    const char *outcome; /* the audit's outcome words */
    char from[24], to[24];
    int version;      /* after the step (applied), or as seen (refused, dry-run) */
    json_t *messages; /* what the step wrote or would write: array of type names */
    char why[256];    /* the machine's */
    char detail[512]; /* for the operator */
    int done;
} item_t;

static const char *status_text(saga_status_t s) { return saga_status_name(s); }

/* The message types a step would write: its commands, then the status change. */
static json_t *step_messages(const saga_output_t *out)
{
    json_t *names = json_array();
    for (unsigned bit = 1; bit != 0 && bit <= out->commands; bit <<= 1)
        if (out->commands & bit)
            json_array_append_new(names, json_string(msg_type_info(saga_command_type(bit))->name));
    if (out->status_changed)
        json_array_append_new(names,
                              json_string(msg_type_info(MSG_SAGA_ORDER_STATUS_CHANGED_V1)->name));
    return names;
}

static void audit(sagatool_ctx_t *c, const sagatool_args_t *a, const item_t *it, int version,
                  const char *outcome, const char *detail)
{
    sagatool_audit_t row = {
        .action_id = it->action_id,
        .verb = a->verb,
        .order_id = it->order_id,
        .reason = a->reason,
        .dry_run = a->dry_run,
        .from_status = it->from[0] ? it->from : NULL,
        .to_status = it->to[0] ? it->to : NULL,
        .version = version,
        .outcome = outcome,
        .detail = detail,
    };
    err_t e;
    err_clear(&e);
    if (sagatool_audit_add(c, &row, &e) != 0)
        fprintf(stderr, "petstore-saga: could not append to the audit (%s): %s\n", outcome, e.msg);
}

/* A dry run: what the machine would do to the saga as it is now. Writes the audit row only. */
static void dry_run(sagatool_ctx_t *c, const sagatool_args_t *a, saga_event_t ev, item_t *it)
{
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    err_t e;
    err_clear(&e);
    if (sagatool_db_open(c, &e) != 0 || saga_store_load(c->db, it->order_id, &row, &e) != 0) {
        it->outcome = "failed";
        snprintf(it->detail, sizeof(it->detail), "%s", e.msg);
        return;
    }
    saga_input_t in = {ev, SAGA_REASON_NONE};
    saga_output_t out;
    saga_step(&row.state, &in, &c->app->limits, &out);
    snprintf(it->from, sizeof(it->from), "%s", status_text(row.state.status));
    snprintf(it->why, sizeof(it->why), "%s", out.why);
    it->version = row.version;
    it->outcome = "dry-run";
    if (out.outcome == SAGA_IGNORED) {
        snprintf(it->detail, sizeof(it->detail),
                 "would be refused: %s does not apply to a saga in %s (%s)", a->verb, it->from,
                 out.why);
    } else {
        snprintf(it->to, sizeof(it->to), "%s", status_text(out.next.status));
        it->messages = step_messages(&out);
        char *msgs = json_dumps(it->messages, JSON_COMPACT);
        snprintf(it->detail, sizeof(it->detail), "would go %s -> %s, send %s, %s the timer%s",
                 it->from, it->to, msgs ? msgs : "[]",
                 out.timer == SAGA_TIMER_SET     ? "re-arm"
                 : out.timer == SAGA_TIMER_CLEAR ? "clear"
                                                 : "keep",
                 out.timer == SAGA_TIMER_SET ? " (attempts back to 0)" : "");
        free(msgs);
    }
    it->done = 1;
    audit(c, a, it, it->version, "dry-run", it->detail);
    saga_row_clear(&row);
}

/* One try at applying ev to the saga in one transaction. Returns 0 when the transaction ended
 * (committed: it->outcome says how), ERR_CONFLICT for a version conflict (rolled back: try
 * again), another code after rolling back. */
static int apply_once(sagatool_ctx_t *c, const sagatool_args_t *a, saga_event_t ev, item_t *it,
                      err_t *e)
{
    saga_row_t row;
    memset(&row, 0, sizeof(row));
    json_t *written = NULL;
    int rc = db_begin(c->db, e);
    if (rc != 0)
        return rc;
    rc = saga_store_load(c->db, it->order_id, &row, e);
    if (rc != 0)
        goto out;

    saga_input_t in = {ev, SAGA_REASON_NONE};
    saga_output_t predicted;
    saga_step(&row.state, &in, &c->app->limits, &predicted);
    snprintf(it->from, sizeof(it->from), "%s", status_text(row.state.status));
    snprintf(it->why, sizeof(it->why), "%s", predicted.why);
    if (predicted.outcome == SAGA_IGNORED) {
        it->outcome = "refused";
        it->version = row.version;
        snprintf(it->detail, sizeof(it->detail), "%s does not apply to a saga in %s: %s", a->verb,
                 it->from, predicted.why);
        sagatool_audit_t r = {it->action_id, a->verb, it->order_id, a->reason, 0,
                              it->from,      NULL,    row.version,  "refused", it->detail};
        rc = sagatool_audit_add(c, &r, e);
        goto out;
    }

    char parent_header[TRACEPARENT_LEN + 8];
    trace_ctx_t parent;
    rc = sagatool_query_traceparent(c, it->order_id, parent_header, sizeof(parent_header), e);
    if (rc != 0)
        goto out;
    int traced = trace_parse(parent_header, &parent) == 0;
    char note[400];
    snprintf(note, sizeof(note), "petstore-saga %s by %s: %s", a->verb, c->operator_name,
             a->reason);
    saga_origin_t origin = {
        .source = "operator",
        .message_id = it->action_id,
        .trace = traced ? &parent : NULL,
        .note = note,
    };
    int applied = 0;
    rc = saga_apply(c->db, c->app, &row, &in, &origin, &applied, e);
    if (rc != 0)
        goto out;
    snprintf(it->to, sizeof(it->to), "%s", status_text(row.state.status));
    it->version = row.version;
    rc = sagatool_query_action_rows(c, it->action_id, &written, e);
    if (rc != 0)
        goto out;
    it->messages = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(written, i, m) json_array_append(it->messages, json_object_get(m, "type"));
    it->outcome = "sent";
    snprintf(it->detail, sizeof(it->detail), "%s -> %s, version %d, %zu message(s) written",
             it->from, it->to, it->version, json_array_size(written));
    sagatool_audit_t r = {it->action_id, a->verb, it->order_id, a->reason, 0,
                          it->from,      it->to,  it->version,  "sent",    it->detail};
    rc = sagatool_audit_add(c, &r, e);

out:
    json_decref(written);
    saga_row_clear(&row);
    if (rc == 0)
        rc = db_commit(c->db, e);
    else
        db_rollback(c->db);
    return rc;
}

static void apply(sagatool_ctx_t *c, const sagatool_args_t *a, saga_event_t ev, item_t *it)
{
    err_t e;
    err_clear(&e);
    int rc = sagatool_db_open(c, &e);
    for (int tries = 1; rc == 0 && tries <= CONFLICT_TRIES; tries++) {
        json_decref(it->messages);
        it->messages = NULL;
        rc = apply_once(c, a, ev, it, &e);
        if (!saga_store_stale(rc, &e))
            break;
        if (tries < CONFLICT_TRIES)
            rc = 0;
    }
    if (rc == 0) {
        it->done = strcmp(it->outcome, "sent") != 0;
        return;
    }
    it->outcome = "failed";
    it->done = 1;
    it->to[0] = '\0';
    if (rc == ERR_NOTFOUND)
        snprintf(it->detail, sizeof(it->detail), "no saga for this order (petstore-saga list)");
    else if (saga_store_stale(rc, &e))
        snprintf(it->detail, sizeof(it->detail),
                 "the saga changed %d times while being applied: it is busy; try again",
                 CONFLICT_TRIES);
    else
        snprintf(it->detail, sizeof(it->detail), "nothing was changed: %s", e.msg);
    if (db_ok(c->db))
        audit(c, a, it, 0, "failed", it->detail);
}

/* Polls the applied sagas until each is confirmed or wait_s has passed. */
static void confirm(sagatool_ctx_t *c, const sagatool_args_t *a, saga_event_t ev, item_t *items,
                    size_t n)
{
    int64_t until = sagatool_now_ms() + (int64_t)a->wait_s * 1000;
    sagatool_progress_t *last = calloc(n ? n : 1, sizeof(*last));
    int *read = calloc(n ? n : 1, sizeof(*read));
    for (;;) {
        size_t open = 0;
        for (size_t k = 0; k < n; k++) {
            item_t *it = &items[k];
            if (it->done)
                continue;
            err_t e;
            err_clear(&e);
            if (sagatool_query_progress(c, it->order_id, it->action_id, it->version, &last[k],
                                        &e) != 0) {
                snprintf(it->detail, sizeof(it->detail), "cannot read the saga back: %s", e.msg);
                open++;
                continue;
            }
            read[k] = 1;
            if (sagatool_confirmed(ev, &last[k])) {
                char now[400];
                sagatool_pending_text(&last[k], now, sizeof(now));
                it->outcome = "confirmed";
                snprintf(it->detail, sizeof(it->detail), "%s (version %d)", now, last[k].version);
                it->done = 1;
                audit(c, a, it, last[k].version, "confirmed", it->detail);
            } else {
                open++;
            }
        }
        if (open == 0 || sagatool_now_ms() >= until || interrupt_requested)
            break;
        sagatool_sleep_ms(POLL_MS);
    }
    for (size_t k = 0; k < n; k++) {
        item_t *it = &items[k];
        if (it->done)
            continue;
        char now[400] = "";
        if (read[k])
            sagatool_pending_text(&last[k], now, sizeof(now));
        it->outcome = "not-confirmed";
        char detail[sizeof(it->detail)];
        int len = snprintf(detail, sizeof(detail), "sent, not confirmed within %ds: %s", a->wait_s,
                           read[k] ? now : it->detail);
        if (len < 0 || (size_t)len >= sizeof(detail)) /* cut: the start says it all */
            detail[sizeof(detail) - 1] = '\0';
        memcpy(it->detail, detail, sizeof(detail));
        it->done = 1;
        audit(c, a, it, read[k] ? last[k].version : 0, "not-confirmed", it->detail);
    }
    free(last);
    free(read);
}

/* The sagas to act on: the ids given, or what the selectors select. */
static int select_sagas(sagatool_ctx_t *c, const sagatool_args_t *a, item_t **items, size_t *n,
                        err_t *e)
{
    json_t *list = NULL;
    size_t count = a->n_orders;
    if (count == 0) {
        sagatool_filter_t f = {
            .state = a->has_state ? saga_status_name(a->state) : NULL,
            .stuck_for_ms = a->stuck_for_ms,
            .needs_operator = a->needs_operator,
            .limit = a->limit > 0 ? a->limit : SAGATOOL_MAX_ORDERS,
        };
        if (sagatool_query_list(c, &f, &list, e) != 0)
            return e->code;
        count = json_array_size(list);
    }
    *items = calloc(count ? count : 1, sizeof(**items));
    if (*items == NULL) {
        json_decref(list);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < count; k++) {
        const char *id =
            list ? json_string_value(json_object_get(json_array_get(list, k), "order_id"))
                 : a->orders[k];
        snprintf((*items)[k].order_id, sizeof((*items)[k].order_id), "%s", id ? id : "");
        uuid_v7((*items)[k].action_id);
        (*items)[k].outcome = "selected";
    }
    *n = count;
    json_decref(list);
    return 0;
}

static json_t *item_json(const item_t *it)
{
    return json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:i,s:O?,s:s,s:s}", "order_id", it->order_id,
                     "action_id", it->action_id, "outcome", it->outcome, "from",
                     it->from[0] ? it->from : NULL, "to", it->to[0] ? it->to : NULL, "version",
                     it->version, "messages", it->messages, "why", it->why, "detail", it->detail);
}

int sagatool_act(sagatool_ctx_t *c, sagatool_args_t *a)
{
    saga_event_t ev;
    if (sagatool_verb_event(a->verb, &ev) != 0)
        return sagatool_usage("%s is not a write verb", a->verb);
    err_t e;
    err_clear(&e);
    item_t *items = NULL;
    size_t n = 0;
    if (sagatool_db_open(c, &e) != 0)
        return sagatool_fail("connecting to the saga database", &e);
    if (select_sagas(c, a, &items, &n, &e) != 0)
        return sagatool_fail("selecting the sagas", &e);
    if (n > 1 && !a->yes && !a->dry_run) {
        fprintf(stderr,
                "petstore-saga: %s would act on %zu sagas; nothing was done.\n"
                "  See them with petstore-saga list (same selectors) or --dry-run, then repeat "
                "with --yes.\n",
                a->verb, n);
        free(items);
        return SAGATOOL_EXIT_USAGE;
    }

    int64_t started = sagatool_now_ms();
    size_t applied = 0;
    for (size_t k = 0; k < n && !interrupt_requested; k++) {
        if (a->rate > 0) {
            int64_t at = started + (int64_t)((double)k * 1000.0 / a->rate);
            int64_t wait = at - sagatool_now_ms();
            if (wait > 0)
                sagatool_sleep_ms(wait);
            if (interrupt_requested)
                break;
        }
        if (a->dry_run)
            dry_run(c, a, ev, &items[k]);
        else
            apply(c, a, ev, &items[k]);
        applied++;
    }
    if (!a->dry_run)
        confirm(c, a, ev, items, applied);

    size_t confirmed = 0, bad = 0;
    json_t *results = json_array();
    for (size_t k = 0; k < n; k++) {
        item_t *it = &items[k];
        if (k >= applied) {
            it->outcome = "skipped";
            snprintf(it->detail, sizeof(it->detail), "stopped by a signal before this saga");
        }
        if (strcmp(it->outcome, "confirmed") == 0 || strcmp(it->outcome, "dry-run") == 0)
            confirmed++;
        else
            bad++;
        json_array_append_new(results, item_json(it));
        if (!a->json) {
            printf("%s  %s %s: %s\n", it->order_id, a->verb, it->outcome, it->detail);
        }
    }
    if (a->json) {
        json_t *doc = json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:o}", "verb", a->verb, "reason",
                                a->reason, "operator", c->operator_name, "dry_run", a->dry_run,
                                "selected", (json_int_t)n, "ok", (json_int_t)confirmed, "not_ok",
                                (json_int_t)bad, "results", results);
        sagatool_print_json(doc);
        json_decref(doc);
    } else {
        json_decref(results);
        if (n == 0)
            printf("%s: no saga selected; nothing was done\n", a->verb);
        else if (bad > 0)
            fprintf(stderr,
                    "petstore-saga: %s: %zu of %zu saga(s) not done or not confirmed; see each "
                    "with petstore-saga show ORDER\n",
                    a->verb, bad, n);
    }
    for (size_t k = 0; k < n; k++)
        json_decref(items[k].messages);
    free(items);
    return bad > 0 ? SAGATOOL_EXIT_PARTIAL : SAGATOOL_EXIT_DONE;
}
