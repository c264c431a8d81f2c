/* Integration tests of db and db_migrate against a real PostgreSQL (PETSTORE_PG_ADMIN_URL, a
 * superuser conninfo from ./petstore test). The group works in one scratch database; each test
 * creates the tables it needs under its own names. Where two sessions must interleave, the test
 * waits for the observable state (a backend gone, a lock wait) with a bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_migrate.h"
#include "itest.h"
#include "outbox.h"

static char url[512];

static db_conn_t *open_db(void)
{
    db_conn_t *db = itest_db_open(url);
    assert_non_null(db);
    return db;
}

/* Runs a statement or script that must succeed. */
static void run(db_conn_t *db, const char *sql)
{
    err_t e;
    err_clear(&e);
    int rc = db_exec_script(db, sql, &e);
    if (rc != 0)
        fail_msg("%s: %s: %s", sql, err_name(rc), e.msg);
}

static long value(db_conn_t *db, const char *sql)
{
    long v = itest_db_long(db, sql);
    assert_true(v != LONG_MIN);
    return v;
}

/* ------------------------------------------------------------------ transactions */

static const db_stmt_t insert_kv = {
    .name = "itest_insert_kv",
    .sql = "INSERT INTO kv (k, v) VALUES ($1::int, $2)",
    .nparams = 2,
};

static void test_a_committed_transaction_is_kept_and_a_rolled_back_one_is_not(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "CREATE TABLE kv (k int PRIMARY KEY, v text)");
    assert_false(db_in_tx(db));
    assert_int_equal(db_begin(db, &e), 0);
    assert_true(db_in_tx(db));
    const char *p1[] = {"1", "kept"};
    assert_int_equal(db_exec(db, &insert_kv, p1, NULL, &e), 0);
    assert_int_equal(db_commit(db, &e), 0);
    assert_false(db_in_tx(db));

    assert_int_equal(db_begin(db, &e), 0);
    const char *p2[] = {"2", "forgotten"};
    assert_int_equal(db_exec(db, &insert_kv, p2, NULL, &e), 0);
    db_rollback(db);
    assert_false(db_in_tx(db));
    assert_int_equal(value(db, "SELECT count(*) FROM kv"), 1);
    assert_int_equal(value(db, "SELECT k FROM kv"), 1);

    db_rollback(db); /* outside a transaction: harmless */
    db_rollback(NULL);
    assert_true(db_ok(db));
    db_close(db);
}

static void test_a_savepoint_undoes_part_of_a_transaction(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "CREATE TABLE sp (k int PRIMARY KEY)");
    assert_int_equal(db_begin(db, &e), 0);
    run(db, "INSERT INTO sp VALUES (1)");
    assert_int_equal(db_savepoint(db, "before_two", &e), 0);
    run(db, "INSERT INTO sp VALUES (2)");
    assert_int_equal(db_exec_sql(db, "INSERT INTO sp VALUES (1)", 0, NULL, NULL, &e),
                     ERR_DUPLICATE);
    assert_true(db_in_tx(db)); /* aborted, still a transaction */
    assert_int_equal(db_rollback_to(db, "before_two", &e), 0);
    run(db, "INSERT INTO sp VALUES (3)");
    assert_int_equal(db_savepoint(db, "s2", &e), 0);
    assert_int_equal(db_release(db, "s2", &e), 0);
    assert_int_equal(db_commit(db, &e), 0);
    assert_int_equal(value(db, "SELECT sum(k) FROM sp"), 4);
    assert_int_equal(db_savepoint(db, "Bad-Name;", &e), ERR_INTERNAL);
    db_close(db);
}

static void test_commit_after_an_ignored_error_reports_the_rollback(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "CREATE TABLE ig (k int PRIMARY KEY)");
    run(db, "INSERT INTO ig VALUES (1)");
    assert_int_equal(db_begin(db, &e), 0);
    run(db, "INSERT INTO ig VALUES (2)");
    assert_int_equal(db_exec_sql(db, "INSERT INTO ig VALUES (1)", 0, NULL, NULL, &e),
                     ERR_DUPLICATE);
    assert_int_equal(db_commit(db, &e), ERR_INTERNAL);
    assert_non_null(strstr(e.msg, "rolled back"));
    assert_false(db_in_tx(db));
    assert_int_equal(value(db, "SELECT count(*) FROM ig"), 1);
    db_close(db);
}

/* ------------------------------------------------------------------ prepared statements */

static const db_stmt_t add_one = {
    .name = "itest_add_one",
    .sql = "SELECT $1::int + 1",
    .nparams = 1,
};

static long prepared_count(db_conn_t *db)
{
    return value(db, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'itest_add_one'");
}

static void test_a_statement_is_prepared_once_and_again_after_reconnect(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    db_result_t *res = NULL;
    assert_int_equal(prepared_count(db), 0);
    for (int i = 0; i < 3; i++) {
        char n[8];
        snprintf(n, sizeof(n), "%d", i);
        const char *p[] = {n};
        assert_int_equal(db_exec(db, &add_one, p, &res, &e), 0);
        assert_int_equal(atoi(db_value(res, 0, 0)), i + 1);
        db_result_free(res);
        res = NULL;
    }
    assert_int_equal(prepared_count(db), 1);
    long pid = value(db, "SELECT pg_backend_pid()");

    assert_int_equal(db_reconnect(db, &e), 0);
    assert_true(value(db, "SELECT pg_backend_pid()") != pid);
    assert_int_equal(prepared_count(db), 0); /* a new session */
    const char *p[] = {"41"};
    assert_int_equal(db_exec(db, &add_one, p, &res, &e), 0);
    assert_string_equal(db_value(res, 0, 0), "42");
    db_result_free(res);
    assert_int_equal(prepared_count(db), 1);
    db_close(db);
}

static void test_a_rolled_back_transaction_keeps_its_prepared_statements(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    const char *p[] = {"1"};
    assert_int_equal(db_begin(db, &e), 0);
    assert_int_equal(db_exec(db, &add_one, p, NULL, &e), 0); /* prepared inside */
    db_rollback(db);
    assert_int_equal(db_exec(db, &add_one, p, NULL, &e), 0); /* not prepared twice */
    assert_int_equal(prepared_count(db), 1);
    db_close(db);
}

/* ------------------------------------------------------------------ error mapping */

static void test_a_unique_violation_is_a_duplicate_with_its_sqlstate(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "CREATE TABLE uq (k int PRIMARY KEY, v text)");
    static const db_stmt_t ins = {"itest_uq", "INSERT INTO uq VALUES ($1::int, $2)", 2, 0};
    const char *p[] = {"7", "first"};
    assert_int_equal(db_exec(db, &ins, p, NULL, &e), 0);
    assert_int_equal(db_exec(db, &ins, p, NULL, &e), ERR_DUPLICATE);
    assert_int_equal(e.code, ERR_DUPLICATE);
    assert_string_equal(e.sqlstate, "23505");
    assert_non_null(strstr(e.msg, "uq_pkey"));
    assert_null(strstr(e.msg, "first")); /* no parameter values */
    assert_true(db_ok(db));
    db_close(db);
}

static void test_other_constraint_violations_are_conflicts(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "CREATE TABLE ck (k int PRIMARY KEY CHECK (k > 0), v text NOT NULL)");
    const char *p[] = {"-1", "x"};
    assert_int_equal(db_exec_sql(db, "INSERT INTO ck VALUES ($1::int, $2)", 2, p, NULL, &e),
                     ERR_CONFLICT);
    assert_string_equal(e.sqlstate, "23514");
    const char *q[] = {"1", NULL};
    assert_int_equal(db_exec_sql(db, "INSERT INTO ck VALUES ($1::int, $2)", 2, q, NULL, &e),
                     ERR_CONFLICT);
    assert_string_equal(e.sqlstate, "23502");
    db_close(db);
}

static void test_bad_input_is_invalid_and_its_value_never_reaches_the_message(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    const char *p[] = {"4111111111111111"};
    assert_int_equal(db_exec_sql(db, "SELECT $1::uuid", 1, p, NULL, &e), ERR_INVALID);
    assert_string_equal(e.sqlstate, "22P02");
    assert_non_null(strstr(e.msg, "invalid input syntax for type uuid"));
    assert_null(strstr(e.msg, "4111"));
    assert_int_equal(db_exec_sql(db, "SELECT $1::smallint", 1, p, NULL, &e), ERR_INVALID);
    assert_null(strstr(e.msg, "4111"));
    db_close(db);
}

static void test_a_programming_error_is_internal(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    assert_int_equal(db_exec_sql(db, "SELECT * FROM no_such_table", 0, NULL, NULL, &e),
                     ERR_INTERNAL);
    assert_string_equal(e.sqlstate, "42P01");
    assert_non_null(strstr(e.msg, "no_such_table"));
    db_close(db);
}

static void test_a_serialization_failure_is_retryable(void **state)
{
    (void)state;
    db_conn_t *a = open_db(), *b = open_db();
    err_t e;
    err_clear(&e);
    run(a, "CREATE TABLE ser (k int PRIMARY KEY, n int); INSERT INTO ser VALUES (1, 0)");
    assert_int_equal(db_begin(a, &e), 0);
    run(a, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    assert_int_equal(value(a, "SELECT n FROM ser WHERE k = 1"), 0); /* snapshot taken */
    run(b, "UPDATE ser SET n = n + 1 WHERE k = 1");                 /* commits */
    int rc = db_exec_sql(a, "UPDATE ser SET n = n + 1 WHERE k = 1", 0, NULL, NULL, &e);
    assert_int_equal(rc, ERR_RETRY);
    assert_string_equal(e.sqlstate, "40001");
    assert_true(db_ok(a)); /* the connection is fine; only the transaction failed */
    db_rollback(a);
    assert_int_equal(value(a, "SELECT n FROM ser WHERE k = 1"), 1);
    db_close(a);
    db_close(b);
}

static void test_a_terminated_session_is_retryable_and_reconnect_recovers(void **state)
{
    (void)state;
    db_conn_t *db = open_db(), *admin = open_db();
    err_t e;
    err_clear(&e);
    const char *p[] = {"1"};
    assert_int_equal(db_exec(db, &add_one, p, NULL, &e), 0);
    assert_int_equal(itest_db_terminate(db, admin), 0);

    assert_int_equal(db_exec(db, &add_one, p, NULL, &e), ERR_RETRY);
    assert_false(db_ok(db));
    assert_false(db_in_tx(db));
    assert_int_equal(db_begin(db, &e), ERR_RETRY); /* fails fast while broken */
    assert_int_equal(db_exec_sql(db, "SELECT 1", 0, NULL, NULL, &e), ERR_RETRY);
    db_rollback(db); /* quiet */

    assert_int_equal(db_reconnect(db, &e), 0);
    assert_true(db_ok(db));
    db_result_t *res = NULL;
    assert_int_equal(db_exec(db, &add_one, p, &res, &e), 0);
    assert_string_equal(db_value(res, 0, 0), "2");
    db_result_free(res);
    db_close(db);
    db_close(admin);
}

static int check_fails(void *db) { return !db_check(db); }

static void test_db_check_notices_a_session_closed_while_idle(void **state)
{
    (void)state;
    db_conn_t *db = open_db(), *admin = open_db();
    assert_true(db_check(db));
    assert_int_equal(itest_db_terminate(db, admin), 0);
    /* The process leaves pg_stat_activity a moment before its socket closes. */
    assert_true(itest_wait_until(check_fails, db, 5000));
    assert_false(db_ok(db));
    db_close(db);
    db_close(admin);
}

static void test_open_reports_bad_credentials_as_configuration(void **state)
{
    (void)state;
    char bad[600];
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    snprintf(bad, sizeof(bad), "%s password=wrong-password", url);
    assert_int_equal(db_open(bad, &db, &e), ERR_CONFIG);
    assert_null(db);
    assert_null(strstr(e.msg, "wrong-password"));
    snprintf(bad, sizeof(bad), "%s dbname=itest_no_such_database", url);
    assert_int_equal(db_open(bad, &db, &e), ERR_CONFIG);
    assert_int_equal(db_open("host=127.0.0.1 port=1 connect_timeout=2", &db, &e), ERR_RETRY);
    assert_null(db);
}

static int never_stop(void) { return 0; }

static int stop_now(void) { return 1; }

static void test_open_retry_gives_up_after_its_deadline_or_when_told_to_stop(void **state)
{
    (void)state;
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    long t0 = itest_now_ms();
    assert_int_equal(db_open_retry("host=127.0.0.1 port=1", 700, never_stop, &db, &e), ERR_RETRY);
    long waited = itest_now_ms() - t0;
    assert_true(waited >= 600 && waited < 3000);
    assert_null(db);
    t0 = itest_now_ms();
    assert_int_equal(db_open_retry("host=127.0.0.1 port=1", -1, stop_now, &db, &e), ERR_RETRY);
    assert_true(itest_now_ms() - t0 < 1000);
    assert_int_equal(db_open_retry(url, 1000, NULL, &db, &e), 0);
    db_close(db);
}

static void test_the_application_name_and_encoding_are_set(void **state)
{
    (void)state;
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    db_opts_t opts = {.application_name = "itest-named"};
    assert_int_equal(db_open_ex(url, &opts, &db, &e), 0);
    db_result_t *res = NULL;
    assert_int_equal(db_exec_sql(db,
                                 "SELECT current_setting('application_name'),"
                                 " current_setting('client_encoding')",
                                 0, NULL, &res, &e),
                     0);
    assert_string_equal(db_value(res, 0, 0), "itest-named");
    assert_string_equal(db_value(res, 0, 1), "UTF8");
    db_result_free(res);
    db_close(db);
    db_close(NULL);
}

/* ------------------------------------------------------------------ results */

static void test_results_expose_rows_columns_nulls_and_integers(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    db_result_t *res = NULL;
    assert_int_equal(db_exec_sql(db,
                                 "SELECT 9223372036854775807::bigint AS big, NULL::text AS nothing,"
                                 " 'x' AS word, '99999999999999999999' AS huge",
                                 0, NULL, &res, &e),
                     0);
    assert_int_equal(db_rows(res), 1);
    assert_int_equal(db_cols(res), 4);
    assert_int_equal(db_col_index(res, "nothing"), 1);
    assert_int_equal(db_col_index(res, "absent"), -1);
    int64_t v = 0;
    assert_int_equal(db_value_int64(res, 0, 0, &v), 0);
    assert_true(v == INT64_MAX);
    assert_true(db_is_null(res, 0, 1));
    assert_string_equal(db_value(res, 0, 1), "");
    assert_int_equal(db_value_int64(res, 0, 1, &v), ERR_INVALID);
    assert_int_equal(db_value_int64(res, 0, 2, &v), ERR_INVALID);
    assert_int_equal(db_value_int64(res, 0, 3, &v), ERR_INVALID); /* out of range */
    db_result_free(res);
    db_result_free(NULL);

    run(db, "CREATE TABLE ct (k int)");
    assert_int_equal(
        db_exec_sql(db, "INSERT INTO ct SELECT generate_series(1, 5)", 0, NULL, &res, &e), 0);
    assert_int_equal(db_cmd_tuples(res), 5);
    db_result_free(res);
    db_close(db);
}

/* ------------------------------------------------------------------ batches */

static const db_stmt_t bt_insert = {"itest_bt_insert", "INSERT INTO bt VALUES ($1::int)", 1, 0};
static const db_stmt_t bt_count = {"itest_bt_count", "SELECT count(*) FROM bt", 0, 0};

static void test_a_batch_runs_its_statements_in_order_and_returns_their_results(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "DROP TABLE IF EXISTS bt; CREATE TABLE bt (k int PRIMARY KEY)");
    const char *one[] = {"1"}, *two[] = {"2"};
    db_result_t *count = NULL, *sum = NULL;
    db_batch_item_t items[] = {
        {&bt_insert, one, NULL},
        {&bt_insert, two, NULL},
        {&bt_count, NULL, &count},
        {&add_one, two, &sum},
    };
    assert_int_equal(db_exec_batch(db, items, 4, &e), 0);
    assert_string_equal(db_value(count, 0, 0), "2");
    assert_string_equal(db_value(sum, 0, 0), "3");
    db_result_free(count);
    db_result_free(sum);
    assert_int_equal(value(db, "SELECT count(*) FROM pg_prepared_statements"
                               " WHERE name LIKE 'itest_bt_%'"),
                     2); /* each prepared once, in the same trip */
    assert_int_equal(db_exec_batch(db, items, 0, &e), 0);
    db_close(db);
}

static void test_a_batch_outside_a_transaction_is_all_or_nothing(void **state)
{
    (void)state;
    db_conn_t *db = open_db();
    err_t e;
    err_clear(&e);
    run(db, "DROP TABLE IF EXISTS bt; CREATE TABLE bt (k int PRIMARY KEY);"
            " INSERT INTO bt VALUES (5)");
    const char *one[] = {"1"}, *five[] = {"5"};
    db_result_t *count = NULL;
    db_batch_item_t items[] = {
        {&bt_insert, one, NULL},
        {&bt_insert, five, NULL}, /* duplicate */
        {&bt_count, NULL, &count},
    };
    assert_int_equal(db_exec_batch(db, items, 3, &e), ERR_DUPLICATE);
    assert_string_equal(e.sqlstate, "23505");
    assert_null(count);
    assert_true(db_ok(db));
    assert_false(db_in_tx(db));
    assert_int_equal(value(db, "SELECT count(*) FROM bt"), 1); /* the 1 was rolled back */

    /* Inside a transaction it is part of that transaction. */
    assert_int_equal(db_begin(db, &e), 0);
    db_batch_item_t good[] = {{&bt_insert, one, NULL}, {&bt_count, NULL, &count}};
    assert_int_equal(db_exec_batch(db, good, 2, &e), 0);
    assert_string_equal(db_value(count, 0, 0), "2");
    db_result_free(count);
    assert_true(db_in_tx(db));
    db_rollback(db);
    assert_int_equal(value(db, "SELECT count(*) FROM bt"), 1);
    db_close(db);
}

static void test_a_batch_on_a_lost_session_is_retryable_and_reconnect_recovers(void **state)
{
    (void)state;
    db_conn_t *db = open_db(), *admin = open_db();
    err_t e;
    err_clear(&e);
    const char *p[] = {"1"};
    db_result_t *res = NULL;
    db_batch_item_t items[] = {{&add_one, p, &res}, {&add_one, p, NULL}};
    assert_int_equal(itest_db_terminate(db, admin), 0);
    assert_int_equal(db_exec_batch(db, items, 2, &e), ERR_RETRY);
    assert_null(res);
    assert_false(db_ok(db));
    assert_int_equal(db_reconnect(db, &e), 0);
    assert_int_equal(db_exec_batch(db, items, 2, &e), 0);
    assert_string_equal(db_value(res, 0, 0), "2");
    db_result_free(res);
    assert_int_equal(db_exec(db, &add_one, p, NULL, &e), 0); /* plain calls work after */
    db_close(db);
    db_close(admin);
}

/* ------------------------------------------------------------------ migrations */

static const db_migration_t mig_v1[] = {
    {1, "widgets",
     "CREATE TABLE widgets (id int PRIMARY KEY);\n"
     "INSERT INTO widgets VALUES (1);"},
    {2, "gadgets", "CREATE TABLE gadgets (id int PRIMARY KEY); -- caf\xc3\xa9"},
};

static void test_migrations_apply_once_and_are_recorded(void **state)
{
    (void)state;
    char own[512];
    assert_int_equal(itest_scratch_db("itest_mig", own, sizeof(own)), 0);
    db_conn_t *db = itest_db_open(own);
    assert_non_null(db);
    err_t e;
    err_clear(&e);
    assert_int_equal(db_migrate(db, "itest", mig_v1, 2, &e), 0);
    assert_int_equal(db_migrate(db, "itest", mig_v1, 2, &e), 0); /* again: nothing to do */
    assert_int_equal(value(db, "SELECT count(*) FROM widgets"), 1);
    assert_int_equal(value(db, "SELECT count(*) FROM schema_migrations WHERE component = 'itest'"
                               " AND length(checksum) = 64 AND applied_at <= now()"),
                     2);
    assert_int_equal(value(db, "SELECT count(*) FROM schema_migrations WHERE component = 'itest'"
                               " AND version = 2 AND name = 'gadgets'"),
                     1);
    /* A later binary brings one more: only that one runs. */
    db_migration_t more[3] = {
        mig_v1[0], mig_v1[1], {3, "widgets_two", "INSERT INTO widgets VALUES (2)"}};
    assert_int_equal(db_migrate(db, "itest", more, 3, &e), 0);
    assert_int_equal(value(db, "SELECT count(*) FROM widgets"), 2);
    assert_false(db_in_tx(db));
    db_close(db);
}

static void test_a_changed_migration_is_refused_with_its_name(void **state)
{
    (void)state;
    char own[512];
    assert_int_equal(itest_scratch_db("itest_mig", own, sizeof(own)), 0);
    db_conn_t *db = itest_db_open(own);
    assert_non_null(db);
    err_t e;
    err_clear(&e);
    assert_int_equal(db_migrate(db, "itest", mig_v1, 2, &e), 0);
    db_migration_t edited[2] = {mig_v1[0], {2, "gadgets", "CREATE TABLE gadgets (id bigint);"}};
    assert_int_equal(db_migrate(db, "itest", edited, 2, &e), ERR_CONFIG);
    assert_non_null(strstr(e.msg, "002_gadgets was changed after it was applied"));
    /* Another component's version 2 is independent. */
    db_migration_t other[1] = {{2, "gadgets", "SELECT 1"}};
    assert_int_equal(db_migrate(db, "itest_other", other, 1, &e), 0);
    db_migration_t unordered[2] = {mig_v1[1], mig_v1[0]};
    assert_int_equal(db_migrate(db, "itest", unordered, 2, &e), ERR_CONFIG);
    db_close(db);
}

static void test_a_failing_migration_leaves_nothing_behind(void **state)
{
    (void)state;
    char own[512];
    assert_int_equal(itest_scratch_db("itest_mig", own, sizeof(own)), 0);
    db_conn_t *db = itest_db_open(own);
    assert_non_null(db);
    err_t e;
    err_clear(&e);
    db_migration_t bad[3] = {mig_v1[0],
                             {2, "half", "CREATE TABLE half (id int); SELECT 1/0;"},
                             {3, "never", "CREATE TABLE never (id int);"}};
    assert_int_equal(db_migrate(db, "itest", bad, 3, &e), ERR_INVALID); /* 22012 */
    assert_string_equal(e.sqlstate, "22012");
    assert_non_null(strstr(e.msg, "002_half"));
    assert_int_equal(value(db, "SELECT count(*) FROM schema_migrations"), 1);
    assert_int_equal(
        value(db, "SELECT (to_regclass('half') IS NULL AND to_regclass('never') IS NULL)::int"), 1);
    assert_false(db_in_tx(db));
    assert_int_equal(db_migrate(db, "itest", bad, 3, NULL), ERR_INVALID); /* no err_t: fine */
    db_close(db);
}

typedef struct migrator {
    const char *url;
    int rc;
} migrator_t;

/* Not idempotent on purpose: running it twice would fail (the table exists) or double the row. */
static const db_migration_t race[] = {
    {1, "counter", "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);"},
    {2, "counter_more", "UPDATE counter SET n = n + 1;"},
};

static void *migrate_thread(void *arg)
{
    migrator_t *m = arg;
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    m->rc = db_open(m->url, &db, &e);
    if (m->rc == 0)
        m->rc = db_migrate(db, "itest", race, 2, &e);
    if (m->rc != 0)
        fprintf(stderr, "migrator: %s: %s\n", err_name(m->rc), e.msg);
    db_close(db);
    return NULL;
}

static void test_concurrent_migrators_apply_each_migration_once(void **state)
{
    (void)state;
    char own[512];
    assert_int_equal(itest_scratch_db("itest_mig", own, sizeof(own)), 0);
    enum { N = 4 };
    pthread_t threads[N];
    migrator_t m[N];
    for (int i = 0; i < N; i++) {
        m[i] = (migrator_t){own, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, migrate_thread, &m[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(m[i].rc, 0);
    }
    db_conn_t *db = itest_db_open(own);
    assert_non_null(db);
    assert_int_equal(value(db, "SELECT n FROM counter"), 2);
    assert_int_equal(value(db, "SELECT count(*) FROM schema_migrations"), 2);
    db_close(db);
}

static void test_the_runtime_migrations_create_the_outbox_and_the_inbox(void **state)
{
    (void)state;
    char own[512];
    assert_int_equal(itest_scratch_db("itest_mig", own, sizeof(own)), 0);
    db_conn_t *db = itest_db_open(own);
    assert_non_null(db);
    err_t e;
    err_clear(&e);
    assert_true(runtime_migrations_count >= 2);
    assert_null(runtime_migrations[runtime_migrations_count].sql); /* terminator */
    assert_int_equal(db_migrate_runtime(db, &e), 0);
    assert_int_equal(db_migrate_runtime(db, &e), 0);
    assert_int_equal(
        value(db, "SELECT count(*) FROM schema_migrations WHERE component = 'runtime'"),
        (long)runtime_migrations_count);
    assert_int_equal(value(db, "SELECT count(*) FROM information_schema.columns"
                               " WHERE table_name = 'outbox' AND column_name IN ('id', 'txid',"
                               " 'partition', 'exchange', 'routing_key', 'message_id', 'type',"
                               " 'correlation_id', 'causation_id', 'traceparent', 'app_id',"
                               " 'headers', 'body', 'created_at', 'available_at', 'attempts',"
                               " 'last_error', 'sent_at', 'parked_at')"),
                     19);
    assert_int_equal(value(db, "SELECT count(*) FROM pg_class WHERE relname = 'outbox'"
                               " AND 'fillfactor=80' = ANY(reloptions)"),
                     1);
    /* The relay's claim takes unsent rows in id order from an index on exactly those rows, so
     * that neither the backlog nor the sent rows kept for retention are read (migration 004). */
    assert_int_equal(value(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'outbox'"
                               " AND indexname = 'outbox_unsent' AND indexdef LIKE '%(id) WHERE"
                               " ((sent_at IS NULL) AND (parked_at IS NULL))'"),
                     1);
    assert_int_equal(value(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'outbox'::regclass"
                               " AND tgname IN ('outbox_order_lock', 'outbox_notify')"),
                     2);
    char lock_sql[256]; /* the trigger and outbox.h agree on the lock namespace */
    snprintf(lock_sql, sizeof(lock_sql),
             "SELECT count(*) FROM pg_proc WHERE proname = 'outbox_order_lock'"
             " AND prosrc LIKE '%%pg_advisory_xact_lock(%d, hashtext(NEW.correlation_id))%%'",
             OUTBOX_ORDER_LOCK_NAMESPACE);
    assert_int_equal(value(db, lock_sql), 1);
    assert_int_equal(value(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'inbox'"
                               " AND indexdef LIKE '%(received_at)'"),
                     1);
    db_close(db);
}

static int group_setup(void **state)
{
    (void)state;
    itest_env("PETSTORE_PG_ADMIN_URL");
    return itest_scratch_db("itest_db", url, sizeof(url));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_committed_transaction_is_kept_and_a_rolled_back_one_is_not),
        cmocka_unit_test(test_a_savepoint_undoes_part_of_a_transaction),
        cmocka_unit_test(test_commit_after_an_ignored_error_reports_the_rollback),
        cmocka_unit_test(test_a_statement_is_prepared_once_and_again_after_reconnect),
        cmocka_unit_test(test_a_rolled_back_transaction_keeps_its_prepared_statements),
        cmocka_unit_test(test_a_unique_violation_is_a_duplicate_with_its_sqlstate),
        cmocka_unit_test(test_other_constraint_violations_are_conflicts),
        cmocka_unit_test(test_bad_input_is_invalid_and_its_value_never_reaches_the_message),
        cmocka_unit_test(test_a_programming_error_is_internal),
        cmocka_unit_test(test_a_serialization_failure_is_retryable),
        cmocka_unit_test(test_a_terminated_session_is_retryable_and_reconnect_recovers),
        cmocka_unit_test(test_db_check_notices_a_session_closed_while_idle),
        cmocka_unit_test(test_open_reports_bad_credentials_as_configuration),
        cmocka_unit_test(test_open_retry_gives_up_after_its_deadline_or_when_told_to_stop),
        cmocka_unit_test(test_the_application_name_and_encoding_are_set),
        cmocka_unit_test(test_results_expose_rows_columns_nulls_and_integers),
        cmocka_unit_test(test_a_batch_runs_its_statements_in_order_and_returns_their_results),
        cmocka_unit_test(test_a_batch_outside_a_transaction_is_all_or_nothing),
        cmocka_unit_test(test_a_batch_on_a_lost_session_is_retryable_and_reconnect_recovers),
        cmocka_unit_test(test_migrations_apply_once_and_are_recorded),
        cmocka_unit_test(test_a_changed_migration_is_refused_with_its_name),
        cmocka_unit_test(test_a_failing_migration_leaves_nothing_behind),
        cmocka_unit_test(test_concurrent_migrators_apply_each_migration_once),
        cmocka_unit_test(test_the_runtime_migrations_create_the_outbox_and_the_inbox),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
