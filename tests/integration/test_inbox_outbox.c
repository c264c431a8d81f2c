/* Integration tests of inbox, outbox and db_listen against a real PostgreSQL
 * (PETSTORE_PG_ADMIN_URL from ./petstore test), in one scratch database with the runtime
 * migrations applied. "Nothing arrives" is checked with a short bounded wait; "it arrives" with
 * a long bound that returns as soon as it does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "db_listen.h"
#include "db_migrate.h"
#include "inbox.h"
#include "itest.h"
#include "outbox.h"
#include "uuid.h"

static char url[512];

static db_conn_t *open_db(void)
{
    db_conn_t *db = itest_db_open(url);
    assert_non_null(db);
    return db;
}

static long value(db_conn_t *db, const char *sql)
{
    long v = itest_db_long(db, sql);
    assert_true(v != LONG_MIN);
    return v;
}

/* A query with one text parameter whose first value the caller frees. */
static char *text_of(db_conn_t *db, const char *sql, const char *param)
{
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    const char *p[] = {param};
    if (db_exec_sql(db, sql, 1, p, &res, &e) != 0)
        fail_msg("%s: %s", sql, e.msg);
    char *v = db_rows(res) > 0 ? strdup(db_value(res, 0, 0)) : NULL;
    db_result_free(res);
    return v;
}

/* ------------------------------------------------------------------ inbox */

static void test_a_recorded_message_is_a_duplicate_and_the_transaction_stays_usable(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    uuid_v7(id);
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(inbox_record(db, "itest-consumer", id, &e), 0);
    assert_int_equal(inbox_record(db, "itest-consumer", id, &e), ERR_DUPLICATE);
    assert_int_equal(e.code, ERR_DUPLICATE);
    assert_int_equal(inbox_record(db, "itest-other-consumer", id, &e), 0); /* per consumer */
    assert_int_equal(db_commit(db, &e), 0); /* no error was raised inside */

    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(inbox_record(db, "itest-consumer", id, &e), ERR_DUPLICATE);
    db_rollback(db);
    db_close(db);
}

static void test_a_rolled_back_record_is_forgotten(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    uuid_v4(id);
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(inbox_record(db, "itest-consumer", id, &e), 0);
    db_rollback(db);
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(inbox_record(db, "itest-consumer", id, &e), 0);
    assert_int_equal(db_commit(db, &e), 0);
    db_close(db);
}

static void test_a_message_id_that_is_not_a_uuid_is_invalid(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    assert_int_equal(inbox_record(db, "itest-consumer", "not-a-uuid", &e), ERR_INVALID);
    const char *ids[] = {"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "x,y"};
    int fresh[2];
    assert_int_equal(inbox_record_many(db, "itest-consumer", ids, 2, fresh, &e), ERR_INVALID);
    db_close(db);
}

static void test_many_ids_are_recorded_in_one_call_each_counted_once(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char seen[UUID_STR_LEN], a[UUID_STR_LEN], b[UUID_STR_LEN], upper[UUID_STR_LEN];
    uuid_v7(seen);
    uuid_v7(a);
    uuid_v7(b);
    for (size_t i = 0; i < sizeof(upper); i++)
        upper[i] = (char)(a[i] >= 'a' && a[i] <= 'f' ? a[i] - 'a' + 'A' : a[i]);
    assert_int_equal(inbox_record(db, "itest-many", seen, &e), 0);
    assert_int_equal(db_begin(db, &e), 0);
    const char *ids[] = {a, seen, b, a, upper};
    int fresh[5] = {-1, -1, -1, -1, -1};
    assert_int_equal(inbox_record_many(db, "itest-many", ids, 5, fresh, &e), 0);
    assert_int_equal(fresh[0], 1);
    assert_int_equal(fresh[1], 0); /* recorded before */
    assert_int_equal(fresh[2], 1);
    assert_int_equal(fresh[3], 0); /* repeats ids[0] */
    assert_int_equal(fresh[4], 0); /* ids[0] spelled in upper case */
    assert_int_equal(db_commit(db, &e), 0);
    assert_int_equal(value(db, "SELECT count(*) FROM inbox WHERE consumer = 'itest-many'"), 3);
    assert_int_equal(inbox_record_many(db, "itest-many", ids, 0, fresh, &e), 0);
    db_close(db);
}

typedef struct racer {
    const char *id;
    int rc;
} racer_t;

static void *record_in_thread(void *arg)
{
    racer_t *r = arg;
    db_conn_t *db = itest_db_open(url);
    err_t e;
    err_clear(&e);
    r->rc = db == NULL ? ERR_INTERNAL : db_begin(db, &e);
    if (r->rc == 0)
        r->rc = inbox_record(db, "itest-race", r->id, &e);
    if (r->rc == 0 || r->rc == ERR_DUPLICATE) {
        int c = db_commit(db, &e);
        if (c != 0)
            r->rc = c;
    }
    db_close(db);
    return NULL;
}

static int someone_waits_for_a_lock(void *db)
{
    return itest_db_long(db,
                         "SELECT count(*) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND wait_event_type = 'Lock'") > 0;
}

static void test_a_concurrent_record_of_the_same_message_waits_and_is_a_duplicate(void **state)
{
    (void)state;
    db_conn_t *db = open_db(), *observer = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    uuid_v7(id);
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(inbox_record(db, "itest-race", id, &e), 0);
    racer_t r = {id, -100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, record_in_thread, &r), 0);
    assert_true(itest_wait_until(someone_waits_for_a_lock, observer, 10000));
    assert_int_equal(db_commit(db, &e), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc, ERR_DUPLICATE);
    db_close(db);
    db_close(observer);
}

static void test_old_records_are_purged(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char old[UUID_STR_LEN], recent[UUID_STR_LEN];
    uuid_v7(old);
    uuid_v7(recent);
    assert_int_equal(inbox_record(db, "itest-purge", old, &e), 0);
    assert_int_equal(inbox_record(db, "itest-purge", recent, &e), 0);
    const char *p[] = {old};
    assert_int_equal(db_exec_sql(db,
                                 "UPDATE inbox SET received_at = now() - interval '2 days'"
                                 " WHERE message_id = $1::uuid",
                                 1, p, NULL, &e),
                     0);
    long deleted = -1;
    assert_int_equal(inbox_purge_older_than(db, 86400, &deleted, &e), 0);
    assert_true(deleted >= 1);
    assert_int_equal(value(db, "SELECT count(*) FROM inbox WHERE consumer = 'itest-purge'"), 1);
    assert_int_equal(inbox_purge_older_than(db, 86400, NULL, &e), 0);
    db_close(db);
}

/* ------------------------------------------------------------------ outbox */

static outbox_msg_t sample(char *id, const char *order, const json_t *headers, const char *body)
{
    uuid_v7(id);
    outbox_msg_t m = {
        .exchange = "petstore.events",
        .routing_key = "order.placed",
        .message_id = id,
        .type = "order.placed.v1",
        .correlation_id = order,
        .causation_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        .app_id = "itest",
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
    };
    return m;
}

static long rows_with_id(db_conn_t *db, const char *id)
{
    char *n = text_of(db, "SELECT count(*) FROM outbox WHERE message_id = $1::uuid", id);
    long v = atol(n);
    free(n);
    return v;
}

static void test_an_enqueued_message_appears_only_at_commit_with_every_column(void **state)
{
    (void)state;
    db_conn_t *writer = open_db(), *reader = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN], order[UUID_STR_LEN];
    uuid_v7(order);
    json_t *headers = json_pack("{s:s,s:i}", "cloudEvents_source", "itest", "n", 3);
    const char *body = "{\"order_id\":\"x\",\"note\":\"caf\xc3\xa9 \xe2\x82\xac\"}";
    outbox_msg_t m = sample(id, order, headers, body);
    assert_int_equal(db_begin(writer, &e), 0);
    assert_int_equal(outbox_enqueue(writer, &m, &e), 0);
    assert_int_equal(rows_with_id(reader, id), 0); /* not before commit */
    assert_int_equal(db_commit(writer, &e), 0);
    assert_int_equal(rows_with_id(reader, id), 1);

    db_result_t *res = NULL;
    const char *p[] = {id, "{\"cloudEvents_source\":\"itest\",\"n\":3}"};
    assert_int_equal(db_exec_sql(reader,
                                 "SELECT partition, exchange, routing_key, type, correlation_id,"
                                 " causation_id, traceparent, app_id, headers::text, body,"
                                 " attempts, last_error IS NULL, sent_at IS NULL,"
                                 " available_at <= now(), txid::text::bigint > 0,"
                                 " headers = $2::jsonb "
                                 "FROM outbox WHERE message_id = $1::uuid",
                                 2, p, &res, &e),
                     0);
    char partition[8];
    snprintf(partition, sizeof(partition), "%d", outbox_partition(order));
    assert_string_equal(db_value(res, 0, 0), partition);
    assert_string_equal(db_value(res, 0, 1), "petstore.events");
    assert_string_equal(db_value(res, 0, 2), "order.placed");
    assert_string_equal(db_value(res, 0, 3), "order.placed.v1");
    assert_string_equal(db_value(res, 0, 4), order);
    assert_string_equal(db_value(res, 0, 5), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_string_equal(db_value(res, 0, 6), m.traceparent);
    assert_string_equal(db_value(res, 0, 7), "itest");
    assert_string_equal(db_value(res, 0, 9), body);
    assert_string_equal(db_value(res, 0, 10), "0");
    for (int c = 11; c <= 15; c++)
        assert_string_equal(db_value(res, 0, c), "t");
    db_result_free(res);
    json_decref(headers);
    db_close(writer);
    db_close(reader);
}

static void test_a_message_without_correlation_is_partitioned_by_its_id(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    outbox_msg_t m = sample(id, NULL, NULL, "{}");
    m.causation_id = m.traceparent = m.type = m.app_id = NULL;
    assert_int_equal(outbox_enqueue(db, &m, &e), 0); /* autocommit */
    char *got = text_of(db,
                        "SELECT partition || ' ' || headers::text || ' ' ||"
                        " (correlation_id IS NULL AND type IS NULL)::text"
                        " FROM outbox WHERE message_id = $1::uuid",
                        id);
    char want[64];
    snprintf(want, sizeof(want), "%d {} true", outbox_partition(id));
    assert_string_equal(got, want);
    free(got);
    db_close(db);
}

static void test_a_rolled_back_message_never_appears(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    outbox_msg_t m = sample(id, "order-1", NULL, "{}");
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(outbox_enqueue(db, &m, &e), 0);
    db_rollback(db);
    assert_int_equal(rows_with_id(db, id), 0);
    db_close(db);
}

static void test_a_message_id_enqueued_twice_is_a_duplicate(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    outbox_msg_t m = sample(id, "order-2", NULL, "{}");
    assert_int_equal(outbox_enqueue(db, &m, &e), 0);
    assert_int_equal(outbox_enqueue(db, &m, &e), ERR_DUPLICATE);
    assert_string_equal(e.sqlstate, "23505");
    db_close(db);
}

static void test_malformed_messages_are_refused_before_the_database(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char id[UUID_STR_LEN];
    json_t *array = json_array();
    outbox_msg_t m = sample(id, "order-3", array, "{}");
    assert_int_equal(outbox_enqueue(db, &m, &e), ERR_INVALID); /* headers not an object */
    m = sample(id, "order-3", NULL, "{}");
    m.exchange = NULL;
    assert_int_equal(outbox_enqueue(db, &m, &e), ERR_INVALID);
    m = sample(id, "order-3", NULL, "{}");
    m.body_len = 3; /* includes the NUL */
    assert_int_equal(outbox_enqueue(db, &m, &e), ERR_INVALID);
    m = sample(id, "order-3", NULL, "{}");
    m.message_id = "not-a-uuid";
    assert_int_equal(outbox_enqueue(db, &m, &e), ERR_INVALID); /* the database says 22P02 */
    json_decref(array);
    db_close(db);
}

static void test_many_messages_are_enqueued_in_one_call_in_order_exactly_as_written(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char ids[3][UUID_STR_LEN], order[UUID_STR_LEN];
    uuid_v7(order);
    json_t *headers = json_pack("{s:s,s:i}", "cloudEvents_source", "itest", "n", 3);
    /* Bodies published byte for byte: spacing, escapes, a quote and a backslash, UTF-8. */
    const char *bodies[3] = {"{ \"a\" : 1 }", "{\"q\":\"\\\"\\\\ \\u00e9\\n\"}",
                             "{\"note\":\"caf\xc3\xa9 \xe2\x82\xac\"}"};
    outbox_msg_t m[3];
    for (int i = 0; i < 3; i++)
        m[i] = sample(ids[i], order, i == 1 ? headers : NULL, bodies[i]);
    m[2].type = m[2].causation_id = m[2].traceparent = m[2].app_id = NULL;
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(outbox_enqueue_many(db, m, 3, &e), 0);
    assert_int_equal(db_commit(db, &e), 0);

    char partition[8];
    snprintf(partition, sizeof(partition), "%d", outbox_partition(order));
    long previous = 0;
    for (int i = 0; i < 3; i++) {
        db_result_t *res = NULL;
        const char *p[] = {ids[i]};
        assert_int_equal(db_exec_sql(db,
                                     "SELECT id, partition, exchange, routing_key, type,"
                                     " correlation_id, causation_id, traceparent, app_id,"
                                     " headers::text, body FROM outbox WHERE message_id = $1::uuid",
                                     1, p, &res, &e),
                         0);
        assert_int_equal(db_rows(res), 1);
        long id = atol(db_value(res, 0, 0));
        assert_true(id > previous); /* ids in the order given */
        previous = id;
        assert_string_equal(db_value(res, 0, 1), partition);
        assert_string_equal(db_value(res, 0, 2), "petstore.events");
        assert_string_equal(db_value(res, 0, 3), "order.placed");
        assert_string_equal(db_value(res, 0, 5), order);
        if (i < 2) {
            assert_string_equal(db_value(res, 0, 4), "order.placed.v1");
            assert_string_equal(db_value(res, 0, 6), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
            assert_string_equal(db_value(res, 0, 7), m[i].traceparent);
            assert_string_equal(db_value(res, 0, 8), "itest");
        } else {
            for (int c = 4; c <= 8; c += c == 4 ? 2 : 1)
                assert_true(db_is_null(res, 0, c));
        }
        assert_string_equal(db_value(res, 0, 9),
                            i == 1 ? "{\"n\": 3, \"cloudEvents_source\": \"itest\"}" : "{}");
        assert_string_equal(db_value(res, 0, 10), bodies[i]);
        db_result_free(res);
    }
    json_decref(headers);
    db_close(db);
}

static void test_a_many_call_with_a_bad_message_writes_none_of_them(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    char ids[3][UUID_STR_LEN], taken[UUID_STR_LEN];
    json_t *array = json_array();
    outbox_msg_t m[3];
    for (int i = 0; i < 3; i++)
        m[i] = sample(ids[i], "order-4", NULL, "{}");
    m[1].headers = array; /* not an object: refused before the database */
    assert_int_equal(outbox_enqueue_many(db, m, 3, &e), ERR_INVALID);
    outbox_msg_t one = sample(taken, "order-4", NULL, "{}");
    assert_int_equal(outbox_enqueue(db, &one, &e), 0);
    m[1] = one; /* an id already in the table */
    assert_int_equal(outbox_enqueue_many(db, m, 3, &e), ERR_DUPLICATE);
    assert_int_equal(rows_with_id(db, ids[0]), 0);
    assert_int_equal(rows_with_id(db, ids[2]), 0);
    assert_int_equal(outbox_enqueue_many(db, m, 0, &e), 0); /* nothing to write */
    json_decref(array);
    db_close(db);
}

/* ------------------------------------------------------------------ notifications */

static void test_a_listener_is_woken_only_after_the_commit(void **state)
{
    (void)state;
    db_conn_t *writer = open_db(), *listener = open_db();
    err_t e;
    err_clear(&e);
    int notified = -1;
    assert_int_equal(db_listen(listener, OUTBOX_CHANNEL, &e), 0);
    assert_int_equal(db_wait_notify(listener, 0, -1, &notified, &e), 0);
    assert_int_equal(notified, 0);

    char id1[UUID_STR_LEN], id2[UUID_STR_LEN];
    outbox_msg_t m1 = sample(id1, "order-4", NULL, "{}");
    outbox_msg_t m2 = sample(id2, "order-4", NULL, "{}");
    assert_int_equal(db_begin(writer, &e), 0);
    assert_int_equal(outbox_enqueue(writer, &m1, &e), 0);
    assert_int_equal(outbox_enqueue(writer, &m2, &e), 0);
    assert_int_equal(db_wait_notify(listener, 300, -1, &notified, &e), 0);
    assert_int_equal(notified, 0); /* uncommitted: nothing yet */
    assert_int_equal(db_commit(writer, &e), 0);
    long t0 = itest_now_ms();
    do
        assert_int_equal(db_wait_notify(listener, 10000, -1, &notified, &e), 0);
    while (!notified && itest_now_ms() - t0 < 10000);
    assert_int_equal(notified, 1);
    /* Both enqueues of the transaction were folded into that one notification. */
    assert_int_equal(db_wait_notify(listener, 200, -1, &notified, &e), 0);
    assert_int_equal(notified, 0);

    /* A rolled back transaction wakes nobody. */
    char id3[UUID_STR_LEN];
    outbox_msg_t m3 = sample(id3, "order-5", NULL, "{}");
    assert_int_equal(db_begin(writer, &e), 0);
    assert_int_equal(outbox_enqueue(writer, &m3, &e), 0);
    db_rollback(writer);
    assert_int_equal(db_wait_notify(listener, 300, -1, &notified, &e), 0);
    assert_int_equal(notified, 0);
    db_close(writer);
    db_close(listener);
}

static void test_the_stop_fd_ends_a_wait_at_once(void **state)
{
    (void)state;
    db_conn_t *listener = open_db();
    err_t e;
    err_clear(&e);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(db_listen(listener, "itest_quiet", &e), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    int notified = -1;
    long t0 = itest_now_ms();
    assert_int_equal(db_wait_notify(listener, 30000, fds[0], &notified, &e), 0);
    assert_true(itest_now_ms() - t0 < 5000);
    assert_int_equal(notified, 0);
    close(fds[0]);
    close(fds[1]);
    db_close(listener);
}

static int wait_reports_retry(void *db)
{
    int notified = 0;
    return db_wait_notify(db, 100, -1, &notified, NULL) == ERR_RETRY;
}

static void test_a_listener_whose_session_ends_gets_a_retryable_error(void **state)
{
    (void)state;
    db_conn_t *listener = open_db(), *admin = open_db();
    err_t e;
    err_clear(&e);
    assert_int_equal(db_listen(listener, OUTBOX_CHANNEL, &e), 0);
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)::int",
             value(listener, "SELECT pg_backend_pid()"));
    assert_int_equal(value(admin, sql), 1);
    assert_true(itest_wait_until(wait_reports_retry, listener, 10000));
    assert_false(db_ok(listener));
    /* After a reconnect the registration is gone until LISTEN runs again. */
    assert_int_equal(db_reconnect(listener, &e), 0);
    assert_int_equal(value(listener, "SELECT count(*) FROM pg_listening_channels()"), 0);
    assert_int_equal(db_listen(listener, OUTBOX_CHANNEL, &e), 0);
    assert_int_equal(value(listener, "SELECT count(*) FROM pg_listening_channels()"), 1);
    db_close(listener);
    db_close(admin);
}

static int group_setup(void **state)
{
    (void)state;
    itest_env("PETSTORE_PG_ADMIN_URL");
    if (itest_scratch_db("itest_outbox", url, sizeof(url)) != 0)
        return -1;
    db_conn_t *db = itest_db_open(url);
    err_t e;
    err_clear(&e);
    int rc = db != NULL ? db_migrate_runtime(db, &e) : -1;
    if (rc != 0)
        fprintf(stderr, "runtime migrations: %s\n", e.msg);
    db_close(db);
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_recorded_message_is_a_duplicate_and_the_transaction_stays_usable),
        cmocka_unit_test(test_a_rolled_back_record_is_forgotten),
        cmocka_unit_test(test_a_message_id_that_is_not_a_uuid_is_invalid),
        cmocka_unit_test(test_many_ids_are_recorded_in_one_call_each_counted_once),
        cmocka_unit_test(test_a_concurrent_record_of_the_same_message_waits_and_is_a_duplicate),
        cmocka_unit_test(test_old_records_are_purged),
        cmocka_unit_test(test_an_enqueued_message_appears_only_at_commit_with_every_column),
        cmocka_unit_test(test_a_message_without_correlation_is_partitioned_by_its_id),
        cmocka_unit_test(test_a_rolled_back_message_never_appears),
        cmocka_unit_test(test_a_message_id_enqueued_twice_is_a_duplicate),
        cmocka_unit_test(test_malformed_messages_are_refused_before_the_database),
        cmocka_unit_test(test_many_messages_are_enqueued_in_one_call_in_order_exactly_as_written),
        cmocka_unit_test(test_a_many_call_with_a_bad_message_writes_none_of_them),
        cmocka_unit_test(test_a_listener_is_woken_only_after_the_commit),
        cmocka_unit_test(test_the_stop_fd_ends_a_wait_at_once),
        cmocka_unit_test(test_a_listener_whose_session_ends_gets_a_retryable_error),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
