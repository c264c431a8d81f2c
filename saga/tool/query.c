/* query: the saga tool's SQL on the saga database. Reads only, except the audit insert; the
 * steps themselves are written by saga_apply (handlers.c) and saga_store_save (store.c).
 *
 * Results are built as JSON by PostgreSQL (json_build_object), so a column added later cannot
 * shift another, and times come out in one format: RFC 3339 UTC with microseconds, the format
 * of the saga's own messages, which also sorts as text. "Since" is when a saga entered its
 * status: the latest step that changed the status (a retry in place does not). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "handlers.h"
#include "sagatool.h"

#define TS(x) "to_char((" x ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* clang-format off */
static const db_stmt_t list_stmt = {
    .name = "sagatool_list",
    .sql = "SELECT json_build_object("
           "  'order_id', s.order_id, 'status', s.status, 'reason', s.reason,"
           "  'version', s.version, 'pending', s.pending, 'attempts', s.attempts,"
           "  'since', " TS("x.since") ","
           "  'age_ms', (extract(epoch FROM now() - x.since) * 1000)::bigint,"
           "  'deadline', " TS("t.deadline") ","
           "  'timer_failures', t.failures, 'timer_last_error', t.last_error,"
           "  'timer_parked_at', " TS("t.parked_at") ","
           "  'updated_at', " TS("s.updated_at") ")::text "
           "FROM sagas s LEFT JOIN saga_timers t ON t.order_id = s.order_id "
           "CROSS JOIN LATERAL ("
           "  SELECT coalesce(max(st.at), s.created_at) AS since FROM saga_steps st"
           "  WHERE st.order_id = s.order_id AND st.from_status IS DISTINCT FROM st.to_status) x "
           "WHERE ($1::text IS NULL OR s.status = $1::text)"
           "  AND ($1::text IS NOT NULL OR s.status <> ALL ($5::text[]))"
           "  AND ($2::bigint IS NULL OR (s.status <> ALL ($5::text[])"
           "       AND x.since <= now() - make_interval(secs => $2::bigint / 1000.0)))"
           "  AND (NOT $3::boolean OR s.status = 'NEEDS_OPERATOR' OR t.parked_at IS NOT NULL) "
           "ORDER BY x.since, s.order_id LIMIT $4::int",
    .nparams = 5,
};

static const db_stmt_t show_stmt = {
    .name = "sagatool_show",
    .sql = "SELECT json_build_object("
           " 'saga', (SELECT json_build_object("
           "    'order_id', s.order_id, 'user_id', s.user_id, 'status', s.status,"
           "    'reason', s.reason, 'version', s.version, 'pending', s.pending,"
           "    'attempts', s.attempts, 'pet_ids', s.pet_ids, 'total_cents', s.total_cents,"
           "    'card_last4', s.card_last4, 'created_at', " TS("s.created_at") ","
           "    'updated_at', " TS("s.updated_at") ","
           "    'since', (SELECT " TS("coalesce(max(st.at), s.created_at)") " FROM saga_steps st"
           "              WHERE st.order_id = s.order_id"
           "                AND st.from_status IS DISTINCT FROM st.to_status))"
           "    FROM sagas s WHERE s.order_id = $1::uuid),"
           " 'timer', (SELECT json_build_object('deadline', " TS("t.deadline") ","
           "    'in_ms', (extract(epoch FROM t.deadline - now()) * 1000)::bigint,"
           "    'attempt', t.attempt, 'failures', t.failures, 'last_error', t.last_error,"
           "    'parked_at', " TS("t.parked_at") ") FROM saga_timers t WHERE t.order_id = $1::uuid),"
           " 'steps', (SELECT coalesce(json_agg(json_build_object("
           "    'version', st.version, 'event', st.event, 'from', st.from_status,"
           "    'to', st.to_status, 'message_id', st.message_id, 'why', st.why,"
           "    'at', " TS("st.at") ", 'received_at', " TS("i.received_at") ") ORDER BY st.version),"
           "    '[]') FROM saga_steps st LEFT JOIN inbox i"
           "    ON i.message_id = st.message_id AND i.consumer = $2::text"
           "    WHERE st.order_id = $1::uuid),"
           " 'sent', (SELECT coalesce(json_agg(json_build_object("
           "    'id', o.id, 'message_id', o.message_id, 'type', o.type, 'exchange', o.exchange,"
           "    'routing_key', o.routing_key, 'causation_id', o.causation_id,"
           "    'traceparent', o.traceparent, 'created_at', " TS("o.created_at") ","
           "    'sent_at', " TS("o.sent_at") ", 'parked_at', " TS("o.parked_at") ","
           "    'attempts', o.attempts, 'last_error', o.last_error) ORDER BY o.id), '[]')"
           "    FROM outbox o WHERE o.correlation_id = $1::text),"
           " 'actions', (SELECT coalesce(json_agg(json_build_object("
           "    'id', a.id, 'action_id', a.action_id, 'at', " TS("a.at") ","
           "    'operator', a.operator, 'host', a.host, 'verb', a.verb, 'reason', a.reason,"
           "    'dry_run', a.dry_run, 'from', a.from_status, 'to', a.to_status,"
           "    'version', a.version, 'outcome', a.outcome, 'detail', a.detail) ORDER BY a.id),"
           "    '[]') FROM saga_operator_actions a WHERE a.order_id = $1::uuid))::text",
    .nparams = 2,
};

static const db_stmt_t traceparent_stmt = {
    .name = "sagatool_traceparent",
    .sql = "SELECT traceparent FROM outbox WHERE correlation_id = $1::text"
           " AND traceparent IS NOT NULL ORDER BY id LIMIT 1",
    .nparams = 1,
};

static const db_stmt_t action_rows_stmt = {
    .name = "sagatool_action_rows",
    .sql = "SELECT coalesce(json_agg(json_build_object('message_id', message_id, 'type', type,"
           "  'routing_key', routing_key) ORDER BY id), '[]')::text FROM outbox"
           " WHERE causation_id = $1::text",
    .nparams = 1,
};

/* An action's rows are published once none is left unsent: the relay sets sent_at, and its
 * retention deletes only sent rows. A reply is a later step caused by a message that is not
 * an operator's action. */
static const db_stmt_t progress_stmt = {
    .name = "sagatool_progress",
    .sql = "SELECT s.status, s.reason, s.pending, s.attempts, s.version,"
           "  (SELECT count(*) FROM outbox o WHERE o.causation_id = $2::text"
           "     AND o.sent_at IS NULL) AS unsent,"
           "  (SELECT count(*) FROM outbox o WHERE o.causation_id = $2::text"
           "     AND o.sent_at IS NULL AND o.parked_at IS NOT NULL) AS parked,"
           "  EXISTS (SELECT 1 FROM saga_steps st WHERE st.order_id = s.order_id"
           "     AND st.version > $3::int AND st.message_id IS NOT NULL"
           "     AND st.event NOT LIKE 'operator\\_%') AS reply_after,"
           "  (t.order_id IS NOT NULL AND t.parked_at IS NULL) AS timer_armed,"
           "  coalesce(" TS("t.deadline") ", '') AS deadline "
           "FROM sagas s LEFT JOIN saga_timers t ON t.order_id = s.order_id "
           "WHERE s.order_id = $1::uuid",
    .nparams = 3,
};

static const db_stmt_t audit_stmt = {
    .name = "sagatool_audit",
    .sql = "INSERT INTO saga_operator_actions (action_id, operator, host, verb, order_id, reason,"
           "  dry_run, from_status, to_status, version, outcome, detail)"
           " VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6, $7::boolean, $8, $9, $10::int, $11, $12)",
    .nparams = 12,
};
/* clang-format on */

int sagatool_db_open(sagatool_ctx_t *c, err_t *e)
{
    if (c->db != NULL)
        return 0;
    db_opts_t o = {.application_name = "petstore-saga", .connect_timeout_s = 5};
    if (db_open_ex(c->db_url, &o, &c->db, e) != 0) {
        e->code = ERR_RETRY; /* unreachable, refused or not allowed in: cannot connect */
        return e->code;
    }
    return 0;
}

/* The finished statuses as a PostgreSQL array literal, from the order's table. */
static void finished_statuses(char *out, size_t n)
{
    size_t len = (size_t)snprintf(out, n, "{");
    for (int s = 0; s < SAGA_STATUS_COUNT && len < n; s++)
        if (saga_status_terminal((saga_status_t)s))
            len += (size_t)snprintf(out + len, n - len, "%s%s", len > 1 ? "," : "",
                                    saga_status_name((saga_status_t)s));
    if (len < n)
        snprintf(out + len, n - len, "}");
}

/* Runs a statement whose one row and column is JSON text; *out a new reference. */
static int json_rows(sagatool_ctx_t *c, const db_stmt_t *stmt, const char *const *params,
                     json_t **out, err_t *e)
{
    db_result_t *r = NULL;
    if (sagatool_db_open(c, e) != 0 || db_exec(c->db, stmt, params, &r, e) != 0)
        return e->code;
    json_t *arr = json_array();
    for (int i = 0; i < db_rows(r); i++) {
        json_error_t je;
        json_t *j = json_loads(db_value(r, i, 0), 0, &je);
        if (j == NULL) {
            json_decref(arr);
            db_result_free(r);
            return err_set(e, ERR_INTERNAL, "%s answered JSON jansson cannot read: %s", stmt->name,
                           je.text);
        }
        json_array_append_new(arr, j);
    }
    db_result_free(r);
    *out = arr;
    return 0;
}

int sagatool_query_list(sagatool_ctx_t *c, const sagatool_filter_t *f, json_t **out, err_t *e)
{
    char stuck[24], limit[24], finished[128];
    snprintf(stuck, sizeof(stuck), "%lld", f->stuck_for_ms);
    snprintf(limit, sizeof(limit), "%ld", f->limit > 0 ? f->limit : SAGATOOL_DEFAULT_LIMIT);
    finished_statuses(finished, sizeof(finished));
    const char *params[] = {f->state, f->stuck_for_ms >= 0 ? stuck : NULL,
                            f->needs_operator ? "true" : "false", limit, finished};
    return json_rows(c, &list_stmt, params, out, e);
}

int sagatool_query_show(sagatool_ctx_t *c, const char *order_id, json_t **out, err_t *e)
{
    const char *params[] = {order_id, SAGA_APP_ID};
    json_t *rows = NULL;
    if (json_rows(c, &show_stmt, params, &rows, e) != 0)
        return e->code;
    json_t *doc = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    if (doc == NULL || !json_is_object(json_object_get(doc, "saga"))) {
        json_decref(doc);
        return err_set(e, ERR_NOTFOUND, "no saga for order %s", order_id);
    }
    *out = doc;
    return 0;
}

int sagatool_query_traceparent(sagatool_ctx_t *c, const char *order_id, char *out, size_t n,
                               err_t *e)
{
    db_result_t *r = NULL;
    const char *params[] = {order_id};
    out[0] = '\0';
    if (sagatool_db_open(c, e) != 0 || db_exec(c->db, &traceparent_stmt, params, &r, e) != 0)
        return e->code;
    if (db_rows(r) == 1)
        snprintf(out, n, "%s", db_value(r, 0, 0));
    db_result_free(r);
    return 0;
}

int sagatool_query_action_rows(sagatool_ctx_t *c, const char *action_id, json_t **out, err_t *e)
{
    const char *params[] = {action_id};
    json_t *rows = NULL;
    if (json_rows(c, &action_rows_stmt, params, &rows, e) != 0)
        return e->code;
    *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return *out ? 0 : err_set(e, ERR_INTERNAL, "no answer listing the action's messages");
}

int sagatool_query_progress(sagatool_ctx_t *c, const char *order_id, const char *action_id,
                            int version, sagatool_progress_t *p, err_t *e)
{
    db_result_t *r = NULL;
    char v[16];
    snprintf(v, sizeof(v), "%d", version);
    const char *params[] = {order_id, action_id, v};
    memset(p, 0, sizeof(*p));
    if (sagatool_db_open(c, e) != 0 || db_exec(c->db, &progress_stmt, params, &r, e) != 0)
        return e->code;
    int rc = 0;
    if (db_rows(r) != 1) {
        rc = err_set(e, ERR_NOTFOUND, "no saga for order %s", order_id);
    } else if (saga_status_parse(db_value(r, 0, db_col_index(r, "status")), &p->state.status) !=
               0) {
        rc = err_set(e, ERR_INTERNAL, "saga %s has an unknown status", order_id);
    } else {
        int c_reason = db_col_index(r, "reason");
        p->state.reason = SAGA_REASON_NONE;
        if (!db_is_null(r, 0, c_reason) &&
            saga_reason_parse(db_value(r, 0, c_reason), &p->state.reason) != 0)
            p->state.reason = SAGA_REASON_NONE;
        p->state.pending = (unsigned)atoi(db_value(r, 0, db_col_index(r, "pending")));
        p->state.attempts = atoi(db_value(r, 0, db_col_index(r, "attempts")));
        p->version = atoi(db_value(r, 0, db_col_index(r, "version")));
        p->unsent = atoi(db_value(r, 0, db_col_index(r, "unsent")));
        p->parked = atoi(db_value(r, 0, db_col_index(r, "parked")));
        p->reply_after = strcmp(db_value(r, 0, db_col_index(r, "reply_after")), "t") == 0;
        p->timer_armed = strcmp(db_value(r, 0, db_col_index(r, "timer_armed")), "t") == 0;
        snprintf(p->deadline, sizeof(p->deadline), "%s",
                 db_value(r, 0, db_col_index(r, "deadline")));
    }
    db_result_free(r);
    return rc;
}

int sagatool_audit_add(sagatool_ctx_t *c, const sagatool_audit_t *a, err_t *e)
{
    char version[16];
    snprintf(version, sizeof(version), "%d", a->version);
    const char *params[] = {a->action_id,
                            c->operator_name,
                            c->host,
                            a->verb,
                            a->order_id,
                            a->reason,
                            a->dry_run ? "true" : "false",
                            a->from_status,
                            a->to_status,
                            a->version > 0 ? version : NULL,
                            a->outcome,
                            a->detail};
    if (sagatool_db_open(c, e) != 0)
        return e->code;
    return db_exec(c->db, &audit_stmt, params, NULL, e);
}
