/* The outbox's per-order lock (migration 003, outbox.h) from the writer's side: a second
 * transaction enqueueing for an order waits until the first one that wrote that order ends, and
 * two transactions that take two orders in opposite orders (two consumer batches, say) end in a
 * deadlock that PostgreSQL breaks by failing one of them with 40P01, which outbox_enqueue
 * reports as ERR_RETRY (transient: the consumer runs that batch again), while the other
 * commits. Needs PETSTORE_PG_ADMIN_URL like test_inbox_outbox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_migrate.h"
#include "itest.h"
#include "outbox.h"
#include "uuid.h"

static char url[512];

typedef struct writer {
    db_conn_t *db;
    const char *order;
    int rc;
    err_t e;
} writer_t;

static int enqueue(db_conn_t *db, const char *order, err_t *e)
{
    char id[40];
    uuid_v7(id);
    outbox_msg_t m = {.exchange = "x",
                      .routing_key = "k",
                      .message_id = id,
                      .correlation_id = order,
                      .body = "{}",
                      .body_len = 2};
    return outbox_enqueue(db, &m, e);
}

static void *enqueue_thread(void *arg)
{
    writer_t *w = arg;
    err_clear(&w->e);
    w->rc = enqueue(w->db, w->order, &w->e);
    return NULL;
}

static int waiting_for_lock(void *arg)
{
    return itest_db_long(arg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                              " AND NOT granted") == 1;
}

static void test_crossed_orders_deadlock_and_one_writer_gets_a_transient_error(void **state)
{
    (void)state;
    db_conn_t *a = itest_db_open(url), *b = itest_db_open(url), *watch = itest_db_open(url);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(watch);
    err_t e;
    err_clear(&e);
    assert_int_equal(db_begin(a, &e), 0);
    assert_int_equal(db_begin(b, &e), 0);
    assert_int_equal(enqueue(a, "order-x", &e), 0);
    assert_int_equal(enqueue(b, "order-y", &e), 0);

    /* a wants order-y: it waits for b. */
    writer_t wa = {.db = a, .order = "order-y"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, enqueue_thread, &wa), 0);
    assert_true(itest_wait_until(waiting_for_lock, watch, 10000));
    /* b wants order-x: a cycle. PostgreSQL breaks it after deadlock_timeout (1 s). */
    err_t eb;
    err_clear(&eb);
    int rb = enqueue(b, "order-x", &eb);
    assert_int_equal(pthread_join(t, NULL), 0);

    assert_true((rb == 0) != (wa.rc == 0)); /* exactly one of them fails */
    const err_t *failed = rb != 0 ? &eb : &wa.e;
    assert_int_equal(failed->code, ERR_RETRY);
    assert_string_equal(failed->sqlstate, "40P01");
    db_rollback(rb != 0 ? b : a);
    assert_int_equal(db_commit(rb != 0 ? a : b, &e), 0);
    assert_int_equal(itest_db_long(watch, "SELECT count(*) FROM outbox"), 2);
    db_close(a);
    db_close(b);
    db_close(watch);
}

int main(void)
{
    itest_env("PETSTORE_PG_ADMIN_URL");
    if (itest_scratch_db("itest_orderlock", url, sizeof(url)) != 0)
        return 1;
    db_conn_t *db = itest_db_open(url);
    err_t e;
    err_clear(&e);
    if (db == NULL || db_migrate_runtime(db, &e) != 0) {
        fprintf(stderr, "cannot migrate the scratch database: %s\n", e.msg);
        return 1;
    }
    db_close(db);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crossed_orders_deadlock_and_one_writer_gets_a_transient_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
