/* store: the saga's SQL. Every statement is prepared once per connection (db_stmt_t).
 *
 * The save statement is the heart of the saga's consistency. Its UPDATE carries the optimistic
 * check (version = the version loaded); the step insert and the timer upsert or delete read the
 * UPDATE's RETURNING rows, so they happen exactly when the UPDATE matched and never on their
 * own. Under READ COMMITTED a concurrent writer of the same saga (the timer worker, another
 * consumer) makes this UPDATE wait for its commit and then find the version moved on: zero rows,
 * which the caller turns into a retry of its whole transaction. Timers are stored as deadlines
 * computed by the database (now() + interval), so clocks of the daemon's hosts never matter. */
#include "store.h"
#include "uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIME_FORMAT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The columns every reading statement returns. row_from_result finds them by name (saga_cols_t),
 * so their order is free and a statement may return more. */
#define SAGA_COLUMNS                                                                               \
    "s.order_id, s.user_id, s.status, s.reason, s.pending, s.attempts, s.version,"                 \
    " to_json(s.pet_ids)::text AS pet_ids, s.total_cents, s.card_sealed, s.card_last4"

static const db_stmt_t create_stmt = {
    .name = "saga_create",
    .sql = "WITH s AS ("
           "  INSERT INTO sagas (order_id, user_id, status, version, pet_ids, total_cents,"
           "                     card_sealed, card_last4)"
           "  SELECT $1::uuid, $2::uuid, $8::text, 1, array_agg(p.id::uuid ORDER BY p.n),"
           "         $4::bigint, $5::text, $6::text"
           "  FROM json_array_elements_text($3::json) WITH ORDINALITY AS p(id, n)"
           "  ON CONFLICT (order_id) DO NOTHING"
           "  RETURNING order_id) "
           "INSERT INTO saga_steps (order_id, version, event, from_status, to_status, message_id,"
           "                        why) "
           "SELECT order_id, 1, 'created', NULL, $8::text, $7::uuid, 'order placed: saga created'"
           " FROM s",
    .nparams = 8,
    .secret = DB_SECRET(5), /* the sealed card */
};

static const db_stmt_t load_stmt = {
    .name = "saga_load",
    .sql = "SELECT " SAGA_COLUMNS " FROM sagas s WHERE s.order_id = $1::uuid",
    .nparams = 1,
};

static const db_stmt_t save_stmt = {
    .name = "saga_save",
    .sql = "WITH u AS ("
           "  UPDATE sagas SET status = $3::text, reason = $4::text, pending = $5::int,"
           "         attempts = $6::int, version = version + 1, updated_at = now(),"
           "         card_sealed = CASE WHEN $14::boolean THEN NULL ELSE card_sealed END"
           "  WHERE order_id = $1::uuid AND version = $2::int"
           "  RETURNING order_id, version), "
           "step AS ("
           "  INSERT INTO saga_steps (order_id, version, event, from_status, to_status,"
           "                          message_id, why)"
           "  SELECT order_id, version, $7::text, $8::text, $3::text, $9::uuid, $10::text FROM u), "
           "armed AS ("
           "  INSERT INTO saga_timers (order_id, deadline, attempt)"
           "  SELECT order_id, now() + make_interval(secs => $12::int / 1000.0), $6::int FROM u"
           "  WHERE $11::text = 'set'"
           "  ON CONFLICT (order_id) DO UPDATE"
           "  SET deadline = excluded.deadline, attempt = excluded.attempt, failures = 0,"
           "      last_error = NULL, parked_at = NULL), "
           "cleared AS ("
           "  DELETE FROM saga_timers t USING u"
           "  WHERE t.order_id = u.order_id AND $11::text = 'clear') "
           "SELECT version,"
           "  to_char(now() AT TIME ZONE 'UTC', " TIME_FORMAT ") AS now,"
           "  to_char((now() + make_interval(secs => $13::int / 1000.0)) AT TIME ZONE 'UTC',"
           "          " TIME_FORMAT ") AS expires_at "
           "FROM u",
    .nparams = 14,
};

/* Due timers, oldest first, parked ones left out. Locking the saga row too keeps the worker off
 * sagas a consumer is changing right now (skipped, not waited for), and makes a consumer that
 * comes second wait and then see the version moved on. Only the ids are read: a saga whose row
 * cannot be read fails its own load later, not the claim of every timer. */
static const db_stmt_t claim_stmt = {
    .name = "saga_claim_due",
    .sql = "SELECT t.order_id::text AS order_id "
           "FROM saga_timers t JOIN sagas s ON s.order_id = t.order_id "
           "WHERE t.deadline <= now() AND t.parked_at IS NULL "
           "ORDER BY t.deadline LIMIT $1::int "
           "FOR UPDATE OF t, s SKIP LOCKED",
    .nparams = 1,
};

static const db_stmt_t drop_timer_stmt = {
    .name = "saga_drop_timer",
    .sql = "DELETE FROM saga_timers WHERE order_id = $1::uuid",
    .nparams = 1,
};

/* One failed attempt at a timer. In SET, the columns on the right are the values before the
 * update: the first failure waits base_ms, each next one twice as long, up to cap_ms. */
static const db_stmt_t timer_failed_stmt = {
    .name = "saga_timer_failed",
    .sql =
        "UPDATE saga_timers SET failures = failures + 1, last_error = $2::text,"
        "  deadline = CASE WHEN failures + 1 >= $5::int THEN deadline"
        "    ELSE now() + make_interval(secs => least($3::float8 * power(2, least(failures, 30)),"
        "                                          $4::float8) / 1000.0) END,"
        "  parked_at = CASE WHEN failures + 1 >= $5::int THEN now() END "
        "WHERE order_id = $1::uuid "
        "RETURNING failures, (parked_at IS NOT NULL) AS parked",
    .nparams = 5,
};

/* The status is part of the text, not a parameter, because it is the predicate of the partial
 * index sagas_needs_operator (saga/migrations/001_sagas.sql): a generic plan for "status = $1"
 * could not use that index. It is the table's NEEDS_OPERATOR (order_status.def). Parked timers
 * have their partial index too (002). */
static const db_stmt_t count_parked_stmt = {
    .name = "saga_count_parked",
    .sql = "SELECT (SELECT count(*) FROM sagas WHERE status = 'NEEDS_OPERATOR') AS parked,"
           "  (SELECT count(*) FROM saga_timers WHERE parked_at IS NOT NULL) AS timers_parked",
    .nparams = 0,
};

/* The advisory lock of one order's existence: the two-key form, the first key 'saga' in ASCII,
 * so it meets no single-key lock (the migrations') and no other purpose's keys. A hash collision
 * of two orders only makes them wait for each other. */
static const db_stmt_t lock_order_stmt = {
    .name = "saga_lock_order",
    .sql = "SELECT pg_advisory_xact_lock(1935763297, hashtext($1::text))",
    .nparams = 1,
};

static const db_stmt_t note_early_cancel_stmt = {
    .name = "saga_note_early_cancel",
    .sql = "INSERT INTO saga_early_cancels (order_id, user_id, message_id) "
           "VALUES ($1::uuid, $2::uuid, $3::uuid) ON CONFLICT (order_id) DO NOTHING",
    .nparams = 3,
};

static const db_stmt_t take_early_cancel_stmt = {
    .name = "saga_take_early_cancel",
    .sql = "DELETE FROM saga_early_cancels WHERE order_id = $1::uuid "
           "RETURNING user_id::text AS user_id, message_id::text AS message_id",
    .nparams = 1,
};

static int copy_fixed(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        return -1;
    memcpy(dst, src, len + 1);
    return 0;
}

/* Where each of SAGA_COLUMNS is in one result. */
typedef struct saga_cols {
    int order_id, user_id, status, reason, pending, attempts, version, pet_ids, total_cents,
        card_sealed, card_last4;
} saga_cols_t;

/* Finds every column of SAGA_COLUMNS in res by name, once per result. ERR_INTERNAL naming the
 * first one missing: a statement and this list disagree, which no retry would cure. */
static int find_cols(const db_result_t *res, saga_cols_t *c, err_t *e)
{
    const struct {
        const char *name;
        int *at;
    } want[] = {
        {"order_id", &c->order_id},       {"user_id", &c->user_id},
        {"status", &c->status},           {"reason", &c->reason},
        {"pending", &c->pending},         {"attempts", &c->attempts},
        {"version", &c->version},         {"pet_ids", &c->pet_ids},
        {"total_cents", &c->total_cents}, {"card_sealed", &c->card_sealed},
        {"card_last4", &c->card_last4},
    };
    for (size_t i = 0; i < COUNT(want); i++) {
        *want[i].at = db_col_index(res, want[i].name);
        if (*want[i].at < 0)
            return err_set(e, ERR_INTERNAL, "saga query result has no column %s", want[i].name);
    }
    return 0;
}

/* Fills out from row r of a result with the columns c (find_cols). */
static int row_from_result(const db_result_t *res, int r, const saga_cols_t *c, saga_row_t *out,
                           err_t *e)
{
    json_error_t je;
    memset(out, 0, sizeof(*out));
    const char *order_id = db_value(res, r, c->order_id);
    const char *status = db_value(res, r, c->status);
    const char *reason = db_value(res, r, c->reason);
    if (copy_fixed(out->order_id, sizeof(out->order_id), order_id) != 0 ||
        copy_fixed(out->user_id, sizeof(out->user_id), db_value(res, r, c->user_id)) != 0 ||
        copy_fixed(out->card_last4, sizeof(out->card_last4), db_value(res, r, c->card_last4)) != 0)
        return err_set(e, ERR_INTERNAL, "saga %s: malformed ids in the database", order_id);
    if (saga_status_parse(status, &out->state.status) != 0)
        return err_set(e, ERR_INTERNAL, "saga %s: unknown status %s", order_id, status);
    out->state.reason = SAGA_REASON_NONE;
    if (!db_is_null(res, r, c->reason) && saga_reason_parse(reason, &out->state.reason) != 0)
        return err_set(e, ERR_INTERNAL, "saga %s: unknown reason %s", order_id, reason);
    out->state.pending = (unsigned)strtoul(db_value(res, r, c->pending), NULL, 10);
    out->state.attempts = atoi(db_value(res, r, c->attempts));
    out->version = atoi(db_value(res, r, c->version));
    out->total_cents = strtoll(db_value(res, r, c->total_cents), NULL, 10);
    out->pet_ids = json_loads(db_value(res, r, c->pet_ids), 0, &je);
    if (out->pet_ids == NULL || !json_is_array(out->pet_ids)) {
        saga_row_clear(out);
        return err_set(e, ERR_INTERNAL, "saga %s: unreadable pet_ids", order_id);
    }
    if (!db_is_null(res, r, c->card_sealed)) {
        out->card_sealed = strdup(db_value(res, r, c->card_sealed));
        if (out->card_sealed == NULL) {
            saga_row_clear(out);
            return err_set(e, ERR_NOMEM, "out of memory loading saga %s", order_id);
        }
    }
    return 0;
}

int saga_store_create(db_conn_t *db, const saga_row_t *row, const char *message_id, int *created,
                      int *found, saga_early_cancel_t *cancel, err_t *e)
{
    db_result_t *made = NULL, *taken = NULL;
    char total[24];
    char *pets = json_dumps(row->pet_ids, JSON_COMPACT);
    if (pets == NULL)
        return err_set(e, ERR_NOMEM, "out of memory saving saga %s", row->order_id);
    snprintf(total, sizeof(total), "%lld", row->total_cents);
    const char *lock_params[] = {row->order_id};
    const char *create_params[] = {
        row->order_id,    row->user_id,    pets,       total,
        row->card_sealed, row->card_last4, message_id, saga_status_name(SAGA_PENDING)};
    const db_batch_item_t items[] = {
        {&lock_order_stmt, lock_params, NULL},
        {&create_stmt, create_params, &made},
        {&take_early_cancel_stmt, lock_params, &taken},
    };
    int rc = db_exec_batch(db, items, COUNT(items), e);
    if (rc == 0) {
        *created = db_cmd_tuples(made) == 1;
        *found = 0;
        if (db_rows(taken) == 1) {
            int c_user = db_col_index(taken, "user_id");
            int c_msg = db_col_index(taken, "message_id");
            if (c_user < 0 || c_msg < 0 ||
                copy_fixed(cancel->user_id, sizeof(cancel->user_id), db_value(taken, 0, c_user)) !=
                    0 ||
                copy_fixed(cancel->message_id, sizeof(cancel->message_id),
                           db_value(taken, 0, c_msg)) != 0)
                rc = err_set(e, ERR_INTERNAL, "saga %s: unreadable early cancellation",
                             row->order_id);
            else
                *found = 1;
        }
    }
    db_result_free(made);
    db_result_free(taken);
    free(pets);
    return rc;
}

int saga_store_load(db_conn_t *db, const char *order_id, saga_row_t *out, err_t *e)
{
    db_result_t *res = NULL;
    if (!uuid_valid(order_id))
        return err_set(e, ERR_INVALID, "order id is not a uuid");
    const char *params[] = {order_id};
    int rc = db_exec(db, &load_stmt, params, &res, e);
    saga_cols_t cols;
    if (rc == 0 && db_rows(res) == 0)
        rc = err_set(e, ERR_NOTFOUND, "no saga for order %s", order_id);
    if (rc == 0)
        rc = find_cols(res, &cols, e);
    if (rc == 0)
        rc = row_from_result(res, 0, &cols, out, e);
    db_result_free(res);
    return rc;
}

static const char *timer_word(saga_timer_action_t t)
{
    switch (t) {
    case SAGA_TIMER_SET:
        return "set";
    case SAGA_TIMER_CLEAR:
        return "clear";
    case SAGA_TIMER_KEEP:
        break;
    }
    return "keep";
}

int saga_store_save(db_conn_t *db, const saga_save_t *s, saga_saved_t *out, err_t *e)
{
    db_result_t *res = NULL;
    char version[16], pending[16], attempts[16], timer_ms[16], expires_ms[16];
    snprintf(version, sizeof(version), "%d", s->before->version);
    snprintf(pending, sizeof(pending), "%u", s->next->pending);
    snprintf(attempts, sizeof(attempts), "%d", s->next->attempts);
    snprintf(timer_ms, sizeof(timer_ms), "%d", s->timer_ms);
    snprintf(expires_ms, sizeof(expires_ms), "%d", s->expires_ms);
    const char *params[] = {
        s->before->order_id,
        version,
        saga_status_name(s->next->status),
        saga_reason_name(s->next->reason), /* NULL: no reason */
        pending,
        attempts,
        s->event,
        saga_status_name(s->before->state.status),
        s->message_id,
        s->why,
        timer_word(s->timer),
        timer_ms,
        expires_ms,
        saga_status_terminal(s->next->status) ? "true" : "false", /* drop the sealed card */
    };
    int rc = db_exec(db, &save_stmt, params, &res, e);
    if (rc != 0)
        goto out;
    if (db_rows(res) != 1) {
        rc = err_set(e, ERR_CONFLICT, "saga %s changed since version %d", s->before->order_id,
                     s->before->version);
        goto out;
    }
    int c_version = db_col_index(res, "version");
    int c_now = db_col_index(res, "now");
    int c_expires = db_col_index(res, "expires_at");
    if (c_version < 0 || c_now < 0 || c_expires < 0) {
        rc = err_set(e, ERR_INTERNAL, "saga_save answered without version, now or expires_at");
        goto out;
    }
    out->version = atoi(db_value(res, 0, c_version));
    if (copy_fixed(out->now, sizeof(out->now), db_value(res, 0, c_now)) != 0 ||
        copy_fixed(out->expires_at, sizeof(out->expires_at), db_value(res, 0, c_expires)) != 0)
        rc = err_set(e, ERR_INTERNAL, "unexpected time format from the database");
out:
    db_result_free(res);
    return rc;
}

int saga_store_stale(int rc, const err_t *e)
{
    return rc == ERR_CONFLICT && e != NULL && e->sqlstate[0] == '\0';
}

int saga_store_claim_due(db_conn_t *db, int limit, char (**ids)[SAGA_UUID_LEN + 1], size_t *n,
                         err_t *e)
{
    db_result_t *res = NULL;
    char(*out)[SAGA_UUID_LEN + 1] = NULL;
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *params[] = {lim};
    int rc = db_exec(db, &claim_stmt, params, &res, e);
    if (rc != 0)
        goto out;
    size_t total = (size_t)db_rows(res);
    int col = db_col_index(res, "order_id");
    if (total > 0 && col < 0) {
        rc = err_set(e, ERR_INTERNAL, "saga_claim_due answered without order_id");
        goto out;
    }
    if (total > 0) {
        out = calloc(total, sizeof(*out));
        if (out == NULL) {
            rc = err_set(e, ERR_NOMEM, "out of memory claiming %zu timers", total);
            goto out;
        }
    }
    for (size_t i = 0; i < total; i++) {
        if (copy_fixed(out[i], sizeof(out[i]), db_value(res, (int)i, col)) != 0) {
            rc = err_set(e, ERR_INTERNAL, "saga_claim_due answered a malformed order id");
            goto out;
        }
    }
    *ids = out;
    *n = total;
    out = NULL;
out:
    free(out);
    db_result_free(res);
    return rc;
}

int saga_store_drop_timer(db_conn_t *db, const char *order_id, err_t *e)
{
    const char *params[] = {order_id};
    return db_exec(db, &drop_timer_stmt, params, NULL, e);
}

int saga_store_timer_failed(db_conn_t *db, const char *order_id, const char *error, int base_ms,
                            int cap_ms, int max_failures, int *failures, int *parked, err_t *e)
{
    db_result_t *res = NULL;
    char base[16], cap[16], max[16];
    snprintf(base, sizeof(base), "%d", base_ms);
    snprintf(cap, sizeof(cap), "%d", cap_ms);
    snprintf(max, sizeof(max), "%d", max_failures);
    const char *params[] = {order_id, error, base, cap, max};
    int rc = db_exec(db, &timer_failed_stmt, params, &res, e);
    if (rc != 0)
        goto out;
    *failures = 0;
    *parked = 0;
    if (db_rows(res) == 1) {
        int c_failures = db_col_index(res, "failures");
        int c_parked = db_col_index(res, "parked");
        if (c_failures < 0 || c_parked < 0) {
            rc = err_set(e, ERR_INTERNAL, "saga_timer_failed answered without its columns");
            goto out;
        }
        *failures = atoi(db_value(res, 0, c_failures));
        *parked = strcmp(db_value(res, 0, c_parked), "t") == 0;
    }
out:
    db_result_free(res);
    return rc;
}

int saga_store_count_parked(db_conn_t *db, long *sagas, long *timers, err_t *e)
{
    db_result_t *res = NULL;
    int rc = db_exec(db, &count_parked_stmt, NULL, &res, e);
    int c_sagas = rc == 0 ? db_col_index(res, "parked") : -1;
    int c_timers = rc == 0 ? db_col_index(res, "timers_parked") : -1;
    if (rc == 0 && (c_sagas < 0 || c_timers < 0))
        rc = err_set(e, ERR_INTERNAL, "saga_count_parked answered without its counts");
    if (rc == 0) {
        *sagas = strtol(db_value(res, 0, c_sagas), NULL, 10);
        *timers = strtol(db_value(res, 0, c_timers), NULL, 10);
    }
    db_result_free(res);
    return rc;
}

int saga_store_lock_order(db_conn_t *db, const char *order_id, err_t *e)
{
    const char *params[] = {order_id};
    return db_exec(db, &lock_order_stmt, params, NULL, e);
}

int saga_store_note_early_cancel(db_conn_t *db, const char *order_id, const char *user_id,
                                 const char *message_id, int *recorded, err_t *e)
{
    db_result_t *res = NULL;
    const char *params[] = {order_id, user_id, message_id};
    int rc = db_exec(db, &note_early_cancel_stmt, params, &res, e);
    if (rc == 0)
        *recorded = db_cmd_tuples(res) == 1;
    db_result_free(res);
    return rc;
}
