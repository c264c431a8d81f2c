/* relay: the claim/publish/mark cycle described in relay.h.
 *
 * Why this order holds per order without a snapshot fence (issue 13, point 5). Earlier versions
 * claimed only rows of transactions older than pg_snapshot_xmin(pg_current_snapshot()), so a
 * row could never overtake an earlier-numbered row whose transaction had not committed yet.
 * That xmin counts every transaction of the whole server, so a transaction left open in any
 * database (an operator's BEGIN in psql) held every relay, and held-back rows waited for the
 * next poll. The fence is gone; instead:
 *   1. Ids of one order are drawn in commit order. The outbox table's insert trigger
 *      (migration 003) takes pg_advisory_xact_lock(OUTBOX_ORDER_LOCK_NAMESPACE,
 *      hashtext(correlation_id)) before it draws the row's id. A second transaction writing
 *      the same order waits on that lock until the first ends, and PostgreSQL makes a commit
 *      visible before it releases the transaction's locks; so the second draws larger ids and
 *      commits later. Any snapshot therefore sees, of one order, a prefix of its rows in id
 *      order: if it sees a row it sees every smaller-id row of that order. (Rows without a
 *      correlation id take no lock: nothing orders them.) The lock is in the table rather than
 *      in outbox_enqueue so that every writer keeps the promise, an operator's psql included.
 *      The cost is one advisory lock per row; it serialises only writers of one order (which
 *      already serialise on the order's own rows) and of orders whose hashes collide. Two
 *      transactions locking two orders in opposite orders deadlock: PostgreSQL aborts one with
 *      40P01, which db.c maps to ERR_RETRY, and the consumer runs that batch again.
 *   2. One relay per partition at a time (pg_try_advisory_xact_lock on the partition for the
 *      whole cycle), and rows of one order share a partition; the relay claims in id order.
 *   3. A row is not claimed while an earlier unsent row of its order is in backoff or parked
 *      (issue 13, point 4): the claim's `blocked` set, read through the partial index
 *      outbox_failed, which holds only rows that failed at least once and are unsent, so it is
 *      empty and free while publishing succeeds.
 * Hence no transaction of any database holds a relay back, and per-order order holds.
 *
 * When the relay sleeps: only after a claim that came back short of a full batch, until a NOTIFY
 * (the table's trigger sends one per writing transaction) or RELAY_POLL_MS. A notification that
 * arrives during a cycle is queued by libpq and ends the next wait at once (db_wait_notify
 * drains the queue before it polls). A cycle that published a row which had failed before runs
 * the next one at once, since later rows of its order were left out of the claim. The one wait
 * left: a row whose backoff runs out is taken at the next poll, up to RELAY_POLL_MS after its
 * available_at (it was held back for at least a second on purpose).
 *
 * The limit of a pipelined batch: rows are published back to back and the outcomes read
 * afterwards, so when the broker returns (unroutable) or nacks a row, a later row of the same
 * order in the same batch may already be published; it is not taken back. The earlier row is
 * retried after its backoff and arrives after the later one: consumers cope with that (state
 * changes carry a per-order version). A channel-closing failure does stop the later rows: the
 * broker discards everything that follows on a closed channel, they stay unsent, and the
 * failed row then blocks them. In isolation (below) rows go one at a time, and a row that
 * fails stops the later rows of its order for the rest of the batch.
 *
 * One row cannot wedge the relay (issue 13, point 3). A row whose publish makes the broker
 * close the channel (404 missing exchange, 403 access refused, 406 a user_id mismatch) fails
 * the whole mq_publish_batch call. The rows the broker confirmed before that are marked sent
 * and committed anyway; the rest stay unsent. Which of them is to blame is not known (confirms
 * of earlier good rows may not have arrived before the close), so the relay reopens the
 * channel and publishes the next claims one row at a time (isolation): a row whose single
 * publish closes the channel is the culprit and gets attempts+1, the broker's reply text in
 * last_error and a backoff; the channel is reopened and the batch goes on. Isolation ends after
 * a claim that went through without a channel closing. After RELAY_MAX_ATTEMPTS failed
 * attempts (default 10: with the doubling backoff from 1 s that is about 8.5 minutes, long
 * enough to ride out a definitions reload or a deploy that adds an exchange, short enough for
 * an operator to hear of it within the hour) a row is parked: parked_at is set, it is never
 * claimed again until an operator clears it (relay.h), and petstore_outbox_parked and an error
 * log line relay.parked say so. Returned (unroutable) rows count the same way; a row that
 * cannot be encoded is parked at its first attempt (it never will be). A nack is transient (a
 * queue at its length limit rejecting publishes, a node without quorum): nacked rows are
 * retried with the capped backoff for as long as it takes and never parked. Attempts counts
 * every failed try, so a row nacked many times and then returned parks at once.
 *
 * Sharing a database between relays (issue 13, point 11). Each relay holds a session advisory
 * lock on a slot (OUTBOX_SLOT_NAMESPACE, 0..RELAY_SLOTS-1) while its broker connection works,
 * counts the slots held on the database every SLOT_REFRESH_MS (pg_locks), and per cycle takes
 * at most ceil(16 / live) partitions, trying them from rank * ceil(16 / live) on, so two relays
 * take disjoint halves and both publish. A relay that dies or loses its broker releases its
 * slot; the others notice at their next refresh and take more. The partition locks, not the
 * slots, keep one order on one relay: a stale count only shifts load for a second. */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "mq.h"
#include "mq_publish.h"
#include "outbox.h"
#include "svc_worker.h"

#define SQL_TEXT_(x) #x
#define SQL_TEXT(x) SQL_TEXT_(x)

#define RELAY_SLOTS 64
#define SLOT_REFRESH_MS 1000

/* The SQL texts are laid out by hand: clang-format cannot break string literals joined with
 * SQL_TEXT() readably. */

/* The claim: lock up to $3 partitions starting at $2 (wrapping), find the orders held back by a
 * failed row, then take the oldest claimable rows. The CTEs are materialised once, so each
 * partition's lock is attempted at most once, in order, until $3 are held. */
/* clang-format off */
static const db_stmt_t claim_stmt = {
    .name = "relay_claim",
    .sql =
        "WITH held AS MATERIALIZED ("
        "  SELECT ($2::int + g) % " SQL_TEXT(OUTBOX_PARTITIONS) " AS p"
        "  FROM generate_series(0, " SQL_TEXT(OUTBOX_PARTITIONS) " - 1) AS g"
        "  WHERE pg_try_advisory_xact_lock(" SQL_TEXT(OUTBOX_LOCK_NAMESPACE) ","
        "                                  ($2::int + g) % " SQL_TEXT(OUTBOX_PARTITIONS) ")"
        "  LIMIT $3::int), "
        "blocked AS MATERIALIZED ("
        "  SELECT b.correlation_id, min(b.id) AS first_id FROM outbox b"
        "  WHERE b.sent_at IS NULL AND b.attempts > 0 AND b.correlation_id IS NOT NULL"
        "    AND b.partition IN (SELECT p FROM held)"
        "    AND (b.parked_at IS NOT NULL OR b.available_at > now())"
        "  GROUP BY b.correlation_id) "
        "SELECT o.id, o.exchange, o.routing_key, o.message_id, o.type, o.correlation_id,"
        "       o.app_id, o.headers, o.body,"
        "       extract(epoch FROM o.created_at)::bigint AS created_epoch, o.attempts "
        "FROM outbox o "
        "WHERE o.sent_at IS NULL AND o.parked_at IS NULL"
        "  AND o.partition IN (SELECT p FROM held) AND o.available_at <= now()"
        "  AND NOT EXISTS (SELECT 1 FROM blocked k"
        "                  WHERE k.correlation_id = o.correlation_id AND k.first_id < o.id) "
        "ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED",
    .nparams = 3,
};
/* clang-format on */

static const db_stmt_t mark_sent_stmt = {
    .name = "relay_mark_sent",
    .sql = "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 "
           "WHERE id = ANY($1::bigint[])",
    .nparams = 1,
};

static const db_stmt_t mark_failed_stmt = {
    .name = "relay_mark_failed",
    .sql = "UPDATE outbox SET attempts = attempts + 1, last_error = $2,"
           "  available_at = now() + make_interval(secs => $3::int / 1000.0),"
           "  parked_at = CASE WHEN $4::bool THEN now() END "
           "WHERE id = $1",
    .nparams = 4,
};

/* clang-format off */
static const db_stmt_t slot_take_stmt = {
    .name = "relay_slot_take",
    .sql = "SELECT s FROM generate_series(0, " SQL_TEXT(RELAY_SLOTS) " - 1) AS s"
           " WHERE pg_try_advisory_lock(" SQL_TEXT(OUTBOX_SLOT_NAMESPACE) ", s) LIMIT 1",
    .nparams = 0,
};

static const db_stmt_t slot_release_stmt = {
    .name = "relay_slot_release",
    .sql = "SELECT pg_advisory_unlock(" SQL_TEXT(OUTBOX_SLOT_NAMESPACE) ", $1::int)",
    .nparams = 1,
};

/* The live relays of this database: every slot lock held, and whether it is ours. */
static const db_stmt_t slots_stmt = {
    .name = "relay_slots",
    .sql = "SELECT l.objid::int AS slot, l.pid = pg_backend_pid() AS mine "
           "FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
           "WHERE l.locktype = 'advisory' AND l.classid = " SQL_TEXT(OUTBOX_SLOT_NAMESPACE)
           "  AND l.objsubid = 2 AND l.granted AND d.datname = current_database() "
           "ORDER BY l.objid",
    .nparams = 0,
};
/* clang-format on */

/* The claim's transaction settings, made in the claim's round trip.
 * - The claim must walk outbox_unsent in id order and stop at its batch. A burst of inserts
 *   leaves the table's statistics stale until autovacuum analyzes it (up to a minute), and with
 *   a handful of rows expected the planner read the whole unsent backlog in a bitmap scan and
 *   sorted it: 60 to 190 ms per 500-row claim over 50,000 unsent rows, against 4 to 10 ms for
 *   the index walk, just when a relay catches up. The backlog gauges read with the same
 *   settings, through their partial indexes. (Not for the session: a count over the whole table,
 *   with no index to walk, took 180 ms on an empty table with sequential scans off.)
 * - The commit that marks rows sent does not wait for its WAL to reach the disk. If the server
 *   crashes before it does, the mark is lost and the rows are published again: a duplicate,
 *   which every consumer drops by message id, never a loss (the message was confirmed by the
 *   broker before the mark). Under load the relays spent most of their database time waiting
 *   for WAL flushes at this commit (WALSync, WALWrite in pg_stat_activity), and their flushes
 *   were added to every service's. */
static const db_stmt_t tx_settings_stmt = {
    .name = "relay_tx_settings",
    .sql = "SELECT set_config('enable_bitmapscan', 'off', true),"
           "       set_config('enable_seqscan', 'off', true),"
           "       set_config('synchronous_commit', 'off', true)",
    .nparams = 0,
};

static const db_stmt_t sweep_stmt = {
    .name = "relay_sweep",
    .sql = "DELETE FROM outbox WHERE id IN ("
           "  SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1::int)"
           "  ORDER BY sent_at LIMIT 10000)",
    .nparams = 1,
};

/* Read through the partial indexes (with tx_settings_stmt), so its cost follows the backlog, not
 * the sent rows kept for RELAY_RETENTION_S: read as a count over the whole table it was, under
 * load, the relay connection's most frequent statement in pg_stat_activity samples. Parked rows
 * have failed at least once (attempts > 0), hence are in outbox_failed. */
static const db_stmt_t backlog_stmt = {
    .name = "relay_backlog",
    .sql = "SELECT (SELECT count(*) FROM outbox"
           "        WHERE sent_at IS NULL AND parked_at IS NULL) AS backlog,"
           "       (SELECT count(*) FROM outbox"
           "        WHERE sent_at IS NULL AND attempts > 0 AND parked_at IS NOT NULL) AS parked,"
           "       coalesce((SELECT extract(epoch FROM now() - min(created_at)) FROM outbox"
           "                 WHERE sent_at IS NULL AND parked_at IS NULL), 0) AS lag_seconds",
    .nparams = 0,
};

static const double batch_bounds[] = {1, 5, 10, 50, 100, 250, 500, 1000, 2000};

typedef struct relay {
    int batch_size;
    int poll_ms;
    int retention_s;
    int confirm_timeout_ms;
    int max_attempts;
    int exit_after_publish; /* test hook: simulate a crash between publish and mark */
    int exit_after_mark;    /* test hook: simulate a crash between mark and commit */
    int duplicates;         /* test hook: publish every confirmed row a second time */
    int isolate;            /* publish one row at a time: a channel closed on a batch */
    db_conn_t *db;          /* the supervisor's connections, borrowed for one step */
    mq_conn_t *mq;
    db_conn_t *slot_db; /* the connection that holds our slot (compared, never used) */
    int slot;           /* our slot, -1 when none is held */
    int live;           /* relays holding a slot on this database, at the last refresh */
    int rank;           /* how many of them hold a lower slot than ours */
    long next_slots;    /* monotonic ms of the next refresh */
    const char *stage;  /* what the cycle was doing, for relay.cycle_failed */
    metrics_counter_t *m_published;
    metrics_counter_t *m_failed;
    metrics_counter_t *m_parked_total;
    metrics_counter_t *m_swept;
    metrics_histogram_t *m_batch;
    metrics_gauge_t *m_backlog;
    metrics_gauge_t *m_parked;
    metrics_gauge_t *m_lag;
    metrics_gauge_t *m_relays;
    time_t next_sweep;
    time_t next_backlog;
} relay_t;

int relay_retry_delay_ms(int attempts)
{
    long ms = 1000;
    for (int i = 0; i < attempts && ms < 300000; i++)
        ms *= 2;
    return ms < 300000 ? (int)ms : 300000;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000L + ts.tv_nsec / 1000L;
}

/* A row's state while a cycle runs: an outcome of mq_publish.h (0, ERR_UNROUTABLE, ERR_RETRY
 * for a nack, ERR_INVALID), ERR_CONFIG for the row whose own publish closed the channel, or
 * ROW_UNTOUCHED for a row that stays as it was claimed (not published, or its outcome
 * unknown). */
#define ROW_UNTOUCHED 1

/* Rows of one claim, converted for publishing. Strings borrow from the db_result_t. */
typedef struct batch {
    size_t n;
    mq_message_t *msgs;
    json_t **headers;
    int *status;
    const char **ids;
    int *attempts;
    char **why; /* last_error of the rows that closed the channel (owned) */
} batch_t;

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->headers != NULL)
            json_decref(b->headers[i]);
        if (b->why != NULL)
            free(b->why[i]);
    }
    free(b->msgs);
    free(b->headers);
    free(b->status);
    free(b->ids);
    free(b->attempts);
    free(b->why);
    memset(b, 0, sizeof(*b));
}

static const char *nullable(db_result_t *res, int row, int col)
{
    return db_is_null(res, row, col) ? NULL : db_value(res, row, col);
}

/* Column positions of the claim's result, looked up by name once per claim. */
typedef struct claim_cols {
    int id, exchange, routing_key, message_id, type, correlation_id, app_id, headers, body,
        created_epoch, attempts;
} claim_cols_t;

static int claim_cols(const db_result_t *res, claim_cols_t *c, err_t *e)
{
    *c = (claim_cols_t){
        .id = db_col_index(res, "id"),
        .exchange = db_col_index(res, "exchange"),
        .routing_key = db_col_index(res, "routing_key"),
        .message_id = db_col_index(res, "message_id"),
        .type = db_col_index(res, "type"),
        .correlation_id = db_col_index(res, "correlation_id"),
        .app_id = db_col_index(res, "app_id"),
        .headers = db_col_index(res, "headers"),
        .body = db_col_index(res, "body"),
        .created_epoch = db_col_index(res, "created_epoch"),
        .attempts = db_col_index(res, "attempts"),
    };
    const int *all = &c->id;
    for (size_t i = 0; i < sizeof(*c) / sizeof(int); i++)
        if (all[i] < 0)
            return err_set(e, ERR_INTERNAL, "the claim's result lacks a column");
    return 0;
}

/* Every message carries the relay's broker login as user_id: the broker refuses any other
 * value, so consumers can trust it as the sender (issue 13, point 1). */
static int batch_from_rows(db_result_t *res, const claim_cols_t *col, const char *login, batch_t *b,
                           err_t *e)
{
    size_t n = (size_t)db_rows(res);
    b->n = n;
    b->msgs = calloc(n, sizeof(*b->msgs));
    b->headers = calloc(n, sizeof(*b->headers));
    b->status = calloc(n, sizeof(*b->status));
    b->ids = calloc(n, sizeof(*b->ids));
    b->attempts = calloc(n, sizeof(*b->attempts));
    b->why = calloc(n, sizeof(*b->why));
    if (b->msgs == NULL || b->headers == NULL || b->status == NULL || b->ids == NULL ||
        b->attempts == NULL || b->why == NULL)
        return err_set(e, ERR_NOMEM, "out of memory for a batch of %zu", n);
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        json_error_t je;
        b->ids[i] = db_value(res, row, col->id);
        b->attempts[i] = atoi(db_value(res, row, col->attempts));
        b->status[i] = ROW_UNTOUCHED;
        b->headers[i] = json_loads(db_value(res, row, col->headers), 0, &je);
        if (b->headers[i] != NULL && !json_is_object(b->headers[i])) {
            json_decref(b->headers[i]);
            b->headers[i] = NULL;
        }
        const char *body = db_value(res, row, col->body);
        b->msgs[i] = (mq_message_t){
            .exchange = db_value(res, row, col->exchange),
            .routing_key = db_value(res, row, col->routing_key),
            .message_id = db_value(res, row, col->message_id),
            .type = nullable(res, row, col->type),
            .correlation_id = nullable(res, row, col->correlation_id),
            .app_id = nullable(res, row, col->app_id),
            .user_id = login,
            .content_type = "application/json",
            .timestamp = (uint64_t)strtoull(db_value(res, row, col->created_epoch), NULL, 10),
            .headers = b->headers[i],
            .body = body,
            .body_len = strlen(body),
        };
    }
    return 0;
}

/* Builds a PostgreSQL array literal {1,2,3} of the ids whose status is 0. */
static char *confirmed_ids(const batch_t *b, size_t *count)
{
    size_t cap = 2 + b->n * 21, len = 0;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    s[len++] = '{';
    *count = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->status[i] != 0)
            continue;
        int w = snprintf(s + len, cap - len, "%s%s", *count ? "," : "", b->ids[i]);
        if (w < 0 || (size_t)w >= cap - len) {
            free(s);
            return NULL;
        }
        len += (size_t)w;
        (*count)++;
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* Records the failed publish of row i: attempts+1, last_error, a backoff, and parking when the
 * failure is not transient and the row has had its attempts (see the top comment). */
static int mark_failed(relay_t *r, batch_t *b, size_t i, int *parked, err_t *e)
{
    const mq_message_t *m = &b->msgs[i];
    int status = b->status[i];
    int attempts = b->attempts[i] + 1;
    char why[512];
    char delay[16];
    if (status == ERR_CONFIG)
        snprintf(why, sizeof(why), "%s", b->why[i] != NULL ? b->why[i] : "channel closed");
    else
        snprintf(why, sizeof(why), "%s publishing to exchange %s with routing key %s",
                 status == ERR_UNROUTABLE ? "unroutable"
                 : status == ERR_INVALID  ? "not encodable (nested header or oversize property)"
                                          : "nacked by the broker",
                 m->exchange, m->routing_key);
    int park = status == ERR_INVALID || (status != ERR_RETRY && attempts >= r->max_attempts);
    snprintf(delay, sizeof(delay), "%d", relay_retry_delay_ms(b->attempts[i]));
    const char *params[] = {b->ids[i], why, delay, park ? "true" : "false"};
    int rc = db_exec(r->db, &mark_failed_stmt, params, NULL, e);
    if (rc != 0)
        return rc;
    json_t *fields = json_pack("{s:s,s:s,s:s?,s:s?,s:s,s:i}", "outbox_id", b->ids[i], "message_id",
                               m->message_id, "type", m->type, "order_id", m->correlation_id,
                               "error", why, "attempts", attempts);
    if (park) {
        (*parked)++;
        log_error(NULL, "relay.parked", fields);
    } else {
        if (fields != NULL)
            json_object_set_new(fields, "retry_in_ms", json_integer(atoi(delay)));
        log_warn(NULL, "relay.not_published", fields);
    }
    return 0;
}

/* Marks every row of the batch by its status, in the open transaction. */
static int mark_rows(relay_t *r, batch_t *b, size_t *sent, size_t *failed, int *parked, err_t *e)
{
    char *ids = confirmed_ids(b, sent);
    if (ids == NULL)
        return err_set(e, ERR_NOMEM, "out of memory marking rows");
    int rc = 0;
    if (*sent > 0) {
        const char *mark_params[] = {ids};
        rc = db_exec(r->db, &mark_sent_stmt, mark_params, NULL, e);
    }
    free(ids);
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        if (b->status[i] == 0 || b->status[i] == ROW_UNTOUCHED)
            continue;
        (*failed)++;
        rc = mark_failed(r, b, i, parked, e);
    }
    return rc;
}

static int same_order(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Publishes the batch one row at a time. A row whose publish closes the channel is marked
 * ERR_CONFIG with the broker's text, the channel is reopened and the batch goes on; a row that
 * failed in any way holds back the later rows of its order. Returns 0 when every row has an
 * outcome or is held back (*closed counts the rows that closed the channel), or the error that
 * stopped it (the rows not reached stay ROW_UNTOUCHED). */
static int publish_isolated(relay_t *r, batch_t *b, int *closed, err_t *e)
{
    for (size_t i = 0; i < b->n; i++) {
        int held = 0;
        for (size_t j = 0; j < i && !held; j++)
            held = b->status[j] != 0 && b->status[j] != ROW_UNTOUCHED &&
                   same_order(b->msgs[j].correlation_id, b->msgs[i].correlation_id);
        if (held)
            continue;
        err_t pe;
        err_clear(&pe);
        int rc = mq_publish_batch(r->mq, &b->msgs[i], 1, &b->status[i], r->confirm_timeout_ms, &pe);
        if (rc == 0)
            continue;
        if (rc != ERR_CONFIG) {
            b->status[i] = ROW_UNTOUCHED;
            *e = pe;
            return rc;
        }
        b->status[i] = ERR_CONFIG;
        b->why[i] = strdup(pe.msg);
        (*closed)++;
        rc = mq_channel_reopen(r->mq, e);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Publishes the batch pipelined. When the broker closed the channel, the rows it confirmed
 * before keep their 0, the others become ROW_UNTOUCHED (which of them closed it is not known),
 * the relay switches to isolation and reopens the channel; the call still succeeds when the
 * reopen does. */
static int publish_pipelined(relay_t *r, batch_t *b, err_t *e)
{
    err_t pe;
    err_clear(&pe);
    int rc = mq_publish_batch(r->mq, b->msgs, b->n, b->status, r->confirm_timeout_ms, &pe);
    if (rc == 0)
        return 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->status[i] != 0 && b->status[i] != ERR_INVALID)
            b->status[i] = ROW_UNTOUCHED;
    *e = pe;
    if (rc != ERR_CONFIG)
        return rc;
    r->isolate = 1;
    log_warn(NULL, "relay.isolating", json_pack("{s:s,s:i}", "error", pe.msg, "rows", (int)b->n));
    return mq_channel_reopen(r->mq, e);
}

static void fault_exit(const char *what, size_t rows)
{
    log_warn(NULL, "relay.fault_injected",
             json_pack("{s:s,s:i}", "fault", what, "rows", (int)rows));
    _exit(137);
}

/* The duplicate storm of the drills (PETSTORE_FAULT_RELAY_DUPLICATES=1): the rows the broker
 * confirmed are published once more, same message id and all, as a relay that crashed between
 * publish and mark would on its next cycle. The second publish's outcome is only logged: the
 * first one decides how the rows are marked. */
static void publish_again(relay_t *r, batch_t *b)
{
    size_t n = 0;
    mq_message_t *msgs = calloc(b->n, sizeof(*msgs));
    int *status = calloc(b->n, sizeof(*status));
    if (msgs == NULL || status == NULL)
        goto out;
    for (size_t i = 0; i < b->n; i++)
        if (b->status[i] == 0)
            msgs[n++] = b->msgs[i];
    if (n == 0)
        goto out;
    err_t pe;
    err_clear(&pe);
    int rc = mq_publish_batch(r->mq, msgs, n, status, r->confirm_timeout_ms, &pe);
    log_warn(NULL, "relay.fault_injected",
             json_pack("{s:s,s:i,s:s}", "fault", "every confirmed row published twice", "rows",
                       (int)n, "error", rc == 0 ? "" : pe.msg));
out:
    free(msgs);
    free(status);
}

/* One info line per row the broker confirmed, in the message's trace (its traceparent header)
 * and order: the hop between the producer's outbox.enqueued and the consumer's
 * message.received. Written as soon as the confirms are in, before the rows are marked sent (a
 * failed commit republishes them; consumers dedupe), so that its time is the publish's. */
static void log_published(const batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->status[i] != 0)
            continue;
        const mq_message_t *m = &b->msgs[i];
        const char *tp = b->headers[i] != NULL
                             ? json_string_value(json_object_get(b->headers[i], "traceparent"))
                             : NULL;
        trace_ctx_t t;
        int traced = trace_parse(tp, &t) == 0;
        log_ctx_t lc = {traced ? t.trace_id : NULL, traced ? t.span_id : NULL, m->correlation_id};
        log_info(&lc, "relay.published",
                 json_pack("{s:s,s:s?,s:s,s:s,s:s,s:i}", "message_id", m->message_id, "type",
                           m->type, "exchange", m->exchange, "routing_key", m->routing_key,
                           "outbox_id", b->ids[i], "attempts", b->attempts[i]));
    }
}

/* One claim-publish-mark cycle. Returns the number of rows claimed (>= 0; batch_size when more
 * is known to be waiting) or a negative error; rows whose outcome is known are committed even
 * when publishing failed. */
static int relay_cycle(relay_t *r, err_t *e)
{
    db_result_t *res = NULL;
    batch_t b;
    char limit[16], start[16], most[16];
    int rc, prc = 0;
    memset(&b, 0, sizeof(b));
    long t0 = now_us(), t_claim = 0, t_publish = 0, t_mark = 0;

    r->stage = "begin";
    rc = db_begin(r->db, e);
    if (rc != 0)
        return rc;
    int share = (OUTBOX_PARTITIONS + r->live - 1) / r->live;
    snprintf(limit, sizeof(limit), "%d", r->batch_size);
    snprintf(start, sizeof(start), "%d", (r->rank * share) % OUTBOX_PARTITIONS);
    snprintf(most, sizeof(most), "%d", share);
    const char *claim_params[] = {limit, start, most};
    r->stage = "claim";
    const db_batch_item_t claim[] = {{&tx_settings_stmt, NULL, NULL},
                                     {&claim_stmt, claim_params, &res}};
    rc = db_exec_batch(r->db, claim, 2, e);
    if (rc != 0)
        goto fail;
    if (db_rows(res) == 0) {
        db_result_free(res);
        r->stage = "commit";
        return db_commit(r->db, e);
    }
    claim_cols_t col;
    rc = claim_cols(res, &col, e);
    if (rc == 0)
        rc = batch_from_rows(res, &col, mq_login(r->mq), &b, e);
    if (rc != 0)
        goto fail;

    t_claim = now_us();
    r->stage = "publish";
    int closed = 0;
    err_t pe;
    err_clear(&pe);
    int isolated = r->isolate;
    prc = isolated ? publish_isolated(r, &b, &closed, &pe) : publish_pipelined(r, &b, &pe);
    if (isolated && prc == 0 && closed == 0) {
        r->isolate = 0;
        log_info(NULL, "relay.isolation_ended", json_pack("{s:i}", "rows", (int)b.n));
    }
    long t_sent = now_us();
    log_published(&b); /* now, not after the commit: consumers have the messages already */
    if (r->duplicates && prc == 0)
        publish_again(r, &b);
    if (r->exit_after_publish)
        fault_exit("exit after publish, before marking", b.n);

    t_publish = now_us();
    r->stage = "mark";
    size_t sent = 0, failed = 0;
    int parked = 0;
    rc = mark_rows(r, &b, &sent, &failed, &parked, e);
    if (rc != 0)
        goto fail;
    if (r->exit_after_mark)
        fault_exit("exit after marking, before commit", b.n);
    t_mark = now_us();
    r->stage = "commit";
    rc = db_commit(r->db, e);
    if (rc != 0)
        goto out;
    long t_commit = now_us();
    metrics_counter_add(r->m_published, (double)sent);
    metrics_counter_add(r->m_failed, (double)failed);
    metrics_counter_add(r->m_parked_total, (double)parked);
    metrics_histogram_observe(r->m_batch, (double)b.n);
    if (parked > 0)
        r->next_backlog = 0; /* show the parked gauge now */
    log_debug(NULL, "relay.batch",
              json_pack("{s:i,s:i,s:i,s:b,s:f,s:f,s:f,s:f,s:f}", "rows", (int)b.n, "sent",
                        (int)sent, "failed", (int)failed, "isolated", isolated, "claim_ms",
                        (t_claim - t0) / 1000.0, "publish_ms", (t_publish - t_claim) / 1000.0,
                        "mark_ms", (t_mark - t_publish) / 1000.0, "log_ms",
                        (t_publish - t_sent) / 1000.0, "commit_ms", (t_commit - t_mark) / 1000.0));
    if (prc != 0) {
        r->stage = "publish";
        *e = pe;
        rc = prc;
        goto out;
    }
    /* A retried row that went out may release later rows of its order, which this claim left
     * out: report a full batch so that the next cycle runs at once instead of after a poll. */
    rc = (int)b.n;
    for (size_t i = 0; i < b.n; i++)
        if (b.status[i] == 0 && b.attempts[i] > 0 && b.msgs[i].correlation_id != NULL)
            rc = r->batch_size;
    goto out;
fail:
    db_rollback(r->db);
out:
    batch_free(&b);
    db_result_free(res);
    return rc;
}

/* Holds a slot and counts the live relays (see the top comment). A failure here fails the
 * step like any database error. */
static int relay_slots(relay_t *r, err_t *e)
{
    long now = now_ms();
    if (r->slot >= 0 && r->slot_db == r->db && now < r->next_slots)
        return 0;
    r->stage = "slots";
    db_result_t *res = NULL;
    for (int pass = 0; pass < 2; pass++) {
        int rc = db_exec(r->db, &slots_stmt, NULL, &res, e);
        if (rc != 0)
            return rc;
        int slot = db_col_index(res, "slot"), mine = db_col_index(res, "mine");
        int live = db_rows(res), rank = -1;
        for (int i = 0; i < live && slot >= 0 && mine >= 0; i++)
            if (strcmp(db_value(res, i, mine), "t") == 0) {
                rank = i;
                r->slot = atoi(db_value(res, i, slot));
            }
        db_result_free(res);
        res = NULL;
        if (rank >= 0 || pass == 1) {
            r->live = live > 0 ? live : 1;
            r->rank = rank >= 0 ? rank : 0;
            if (rank < 0)
                r->slot = -1; /* every slot taken: share as best we can */
            break;
        }
        rc = db_exec(r->db, &slot_take_stmt, NULL, &res, e);
        if (rc != 0)
            return rc;
        if (db_rows(res) == 0)
            log_warn(NULL, "relay.no_slot", json_pack("{s:i}", "slots", RELAY_SLOTS));
        db_result_free(res);
        res = NULL;
    }
    r->slot_db = r->db;
    r->next_slots = now + SLOT_REFRESH_MS;
    metrics_gauge_set(r->m_relays, (double)r->live);
    return 0;
}

/* Gives the slot back while this relay cannot publish, so the others take its partitions. */
static void relay_release_slot(relay_t *r)
{
    if (r->slot < 0 || r->db == NULL || r->slot_db != r->db || !db_ok(r->db))
        return;
    char slot[16];
    snprintf(slot, sizeof(slot), "%d", r->slot);
    const char *params[] = {slot};
    err_t e;
    err_clear(&e);
    if (db_exec(r->db, &slot_release_stmt, params, NULL, &e) != 0)
        log_err(LOG_WARN, NULL, "relay.slot_release_failed", &e);
    r->slot = -1;
}

static void relay_housekeeping(relay_t *r)
{
    time_t now = time(NULL);
    err_t e;
    err_clear(&e);
    if (now >= r->next_backlog) {
        db_result_t *res = NULL;
        /* With the claim's settings: the counts must go through the partial indexes even when
         * the statistics are stale (a bulk load, a burst), or they read every sent row kept. */
        const db_batch_item_t counts[] = {{&tx_settings_stmt, NULL, NULL},
                                          {&backlog_stmt, NULL, &res}};
        if (db_exec_batch(r->db, counts, 2, &e) == 0 && db_rows(res) == 1) {
            int backlog = db_col_index(res, "backlog"), lag = db_col_index(res, "lag_seconds");
            int parked = db_col_index(res, "parked");
            if (backlog >= 0 && lag >= 0 && parked >= 0) {
                metrics_gauge_set(r->m_backlog, atof(db_value(res, 0, backlog)));
                metrics_gauge_set(r->m_parked, atof(db_value(res, 0, parked)));
                metrics_gauge_set(r->m_lag, atof(db_value(res, 0, lag)));
            }
        }
        db_result_free(res);
        r->next_backlog = now + 5;
    }
    if (now >= r->next_sweep) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", r->retention_s);
        const char *params[] = {secs};
        db_result_t *res = NULL;
        if (db_exec(r->db, &sweep_stmt, params, &res, &e) == 0) {
            long deleted = db_cmd_tuples(res);
            metrics_counter_add(r->m_swept, (double)deleted);
            if (deleted > 0)
                log_info(NULL, "relay.swept", json_pack("{s:i}", "rows", (int)deleted));
            /* A full sweep means more is waiting: come back soon rather than in a minute. */
            r->next_sweep = now + (deleted >= 10000 ? 1 : 60);
        } else {
            log_err(LOG_WARN, NULL, "relay.sweep_failed", &e);
            r->next_sweep = now + 60;
        }
        db_result_free(res);
    }
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, "1") == 0;
}

static void relay_init(relay_t *r, svc_t *svc)
{
    const cfg_t *cfg = svc_cfg(svc);
    memset(r, 0, sizeof(*r));
    r->batch_size = cfg_int(cfg, "RELAY_BATCH_SIZE");
    r->poll_ms = cfg_int(cfg, "RELAY_POLL_MS");
    r->retention_s = cfg_int(cfg, "RELAY_RETENTION_S");
    r->confirm_timeout_ms = cfg_int(cfg, "RELAY_CONFIRM_TIMEOUT_MS");
    r->max_attempts = cfg_int(cfg, "RELAY_MAX_ATTEMPTS");
    r->exit_after_publish = env_flag("PETSTORE_FAULT_RELAY_EXIT_AFTER_PUBLISH");
    r->exit_after_mark = env_flag("PETSTORE_FAULT_RELAY_EXIT_AFTER_MARK");
    r->duplicates = env_flag("PETSTORE_FAULT_RELAY_DUPLICATES");
    r->slot = -1;
    r->live = 1;
    r->m_published = metrics_counter("petstore_outbox_published_total",
                                     "Outbox rows published and confirmed", NULL);
    r->m_failed = metrics_counter("petstore_outbox_publish_failures_total",
                                  "Outbox rows returned, nacked, unencodable or refused", NULL);
    r->m_parked_total =
        metrics_counter("petstore_outbox_parked_total", "Outbox rows parked by this relay", NULL);
    r->m_swept = metrics_counter("petstore_outbox_swept_total",
                                 "Sent outbox rows deleted after the retention period", NULL);
    r->m_batch = metrics_histogram("petstore_outbox_batch_size", "Rows claimed per cycle", NULL,
                                   batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
    r->m_backlog = metrics_gauge("petstore_outbox_backlog", "Unsent, unparked outbox rows", NULL);
    r->m_parked = metrics_gauge("petstore_outbox_parked",
                                "Parked outbox rows: never published until an operator acts", NULL);
    r->m_lag = metrics_gauge("petstore_outbox_lag_seconds",
                             "Age of the oldest unsent, unparked row", NULL);
    r->m_relays =
        metrics_gauge("petstore_outbox_relays", "Relays sharing this database's partitions", NULL);
}

/* A new connection holds no slot (a freed connection's address may come back, so slot_db alone
 * cannot tell). */
static void relay_on_db_open(svc_worker_t *w, void *ctx)
{
    (void)w;
    relay_t *r = ctx;
    r->slot = -1;
    r->slot_db = NULL;
}

static int relay_on_mq_open(svc_worker_t *w, void *ctx, err_t *e)
{
    (void)ctx;
    return mq_confirm_select(svc_worker_mq(w), e);
}

/* One step of the supervisor: the slots, a cycle, then the housekeeping. More than nothing to
 * do when the batch came back full (more is waiting) or the relay just switched to isolation.
 * On a failure with the broker handle broken, the slot is given back (the supervisor then
 * reopens the connection). */
static int relay_step(svc_worker_t *w, void *ctx, err_t *e)
{
    relay_t *r = ctx;
    r->db = svc_worker_db(w);
    r->mq = svc_worker_mq(w);
    int was_isolating = r->isolate;
    int n = relay_slots(r, e);
    if (n == 0)
        n = relay_cycle(r, e);
    if (n < 0) {
        log_warn(
            NULL, "relay.cycle_failed",
            json_pack("{s:s,s:s,s:s}", "stage", r->stage, "code", err_name(n), "error", e->msg));
        if (!mq_ok(r->mq))
            relay_release_slot(r);
        return n;
    }
    relay_housekeeping(r);
    return n >= r->batch_size || (r->isolate && !was_isolating) ? 1 : 0;
}

void *relay_run(void *arg)
{
    svc_t *svc = arg;
    relay_t r;
    relay_init(&r, svc);
    log_info(NULL, "relay.started",
             json_pack("{s:i,s:i,s:i,s:i}", "batch_size", r.batch_size, "poll_ms", r.poll_ms,
                       "retention_s", r.retention_s, "max_attempts", r.max_attempts));
    svc_worker_def_t def = {
        .name = "outbox",
        .needs = SVC_WORKER_DB | SVC_WORKER_MQ,
        .listen = OUTBOX_CHANNEL,
        .idle_ms = r.poll_ms,
        .on_mq_open = relay_on_mq_open,
        .on_db_open = relay_on_db_open,
        .step = relay_step,
    };
    (void)svc_worker_run(svc, &def, &r);
    log_info(NULL, "relay.stopped", NULL);
    return NULL;
}
