/* Integration tests of db's retry on a broken connection (db_opts_t.retry_broken, the rule in
 * db.h) against a real PostgreSQL (PETSTORE_PG_ADMIN_URL). A connection is killed in the two
 * ways a pooled connection dies between requests: without a word (the transport is cut under
 * it, as by a middlebox that forgot it: the test shuts the client's socket down, found by the
 * client port the server reports), or by the server, which sends FATAL 57P01 first
 * (pg_terminate_backend, as a restart does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "db.h"
#include "itest.h"

static char url[512];

static db_conn_t *open_db(int retry)
{
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    db_opts_t opts = {.application_name = "itest_db_retry", .retry_broken = retry};
    if (db_open_ex(url, &opts, &db, &e) != 0)
        fail_msg("open: %s", e.msg);
    return db;
}

static long value(db_conn_t *db, const char *sql)
{
    long v = itest_db_long(db, sql);
    assert_true(v != LONG_MIN);
    return v;
}

static void run(db_conn_t *db, const char *sql)
{
    err_t e;
    err_clear(&e);
    if (db_exec_script(db, sql, &e) != 0)
        fail_msg("%s: %s", sql, e.msg);
}

/* Cuts db's transport without a word from the server: shuts down the socket whose local port
 * is the one the server sees as the client's. */
static void cut_silently(db_conn_t *db)
{
    long port = value(db, "SELECT inet_client_port()");
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET ||
            ntohs(a.sin_port) != port)
            continue;
        assert_int_equal(shutdown(fd, SHUT_RDWR), 0);
        return;
    }
    fail_msg("no socket with local port %ld", port);
}

static const db_stmt_t read_pid = {
    .name = "itest_retry_read_pid",
    .sql = "SELECT pg_backend_pid()::bigint AS pid",
    .nparams = 0,
};

static const db_stmt_t insert_row = {
    .name = "itest_retry_insert",
    .sql = "INSERT INTO retry_rows (tag) VALUES ($1)",
    .nparams = 1,
};

/* Inserts the tagged row unless a row with that tag exists: a second run changes nothing. */
static const db_stmt_t insert_once = {
    .name = "itest_retry_insert_once",
    .sql = "INSERT INTO retry_rows (tag) SELECT $1 WHERE NOT EXISTS"
           " (SELECT FROM retry_rows WHERE tag = $1)",
    .nparams = 1,
};

static long read_pid_value(db_conn_t *db, int expect_rc)
{
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    int rc = db_exec(db, &read_pid, NULL, &res, &e);
    assert_int_equal(rc, expect_rc);
    if (rc != 0)
        return -1;
    int64_t pid = 0;
    assert_int_equal(db_value_int64(res, 0, 0, &pid), 0);
    db_result_free(res);
    return (long)pid;
}

static long rows_tagged(db_conn_t *db, const char *tag)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM retry_rows WHERE tag = '%s'", tag);
    return value(db, sql);
}

static void test_a_prepared_read_on_a_silently_dead_connection_reconnects_and_runs_again(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1);
    long before = read_pid_value(db, 0); /* prepared on the first session */
    cut_silently(db);
    long after = read_pid_value(db, 0); /* prepared again on the new one */
    assert_true(after > 0 && after != before);
    assert_true(db_ok(db));
    db_close(db);
}

static void test_without_the_option_a_dead_connection_is_an_error(void **s)
{
    (void)s;
    db_conn_t *db = open_db(0);
    read_pid_value(db, 0);
    cut_silently(db);
    read_pid_value(db, ERR_RETRY);
    assert_false(db_ok(db));
    db_close(db);
}

static void test_a_write_that_got_no_answer_is_not_run_twice(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1), *check = open_db(0);
    err_t e;
    err_clear(&e);
    cut_silently(db);
    const char *p[] = {"unanswered"};
    assert_int_equal(db_exec(db, &insert_row, p, NULL, &e), ERR_RETRY);
    assert_false(db_ok(db));
    assert_int_equal(rows_tagged(check, "unanswered"), 0);
    db_close(db);
    db_close(check);
}

static void test_a_write_declared_idempotent_is_run_again_on_a_new_connection(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1), *check = open_db(0);
    err_t e;
    err_clear(&e);
    cut_silently(db);
    const char *p[] = {"idempotent"};
    assert_int_equal(db_exec_idempotent(db, &insert_once, p, NULL, &e), 0);
    assert_int_equal(rows_tagged(check, "idempotent"), 1);
    db_close(db);
    db_close(check);
}

static void test_a_read_on_a_connection_the_server_terminated_runs_again(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1), *admin = open_db(0);
    long before = read_pid_value(db, 0);
    assert_int_equal(itest_db_terminate(db, admin), 0);
    long after = read_pid_value(db, 0);
    assert_true(after > 0 && after != before);
    db_close(db);
    db_close(admin);
}

static void test_a_write_on_a_connection_the_server_terminated_is_left_to_the_caller(void **s)
{
    (void)s;
    /* libpq reports a session terminated while idle as a connection error without a SQLSTATE,
     * indistinguishable from a write whose answer was lost: not run again. */
    db_conn_t *db = open_db(1), *admin = open_db(0);
    err_t e;
    err_clear(&e);
    const char *p[] = {"terminated"};
    assert_int_equal(itest_db_terminate(db, admin), 0);
    assert_int_equal(db_exec(db, &insert_row, p, NULL, &e), ERR_RETRY);
    assert_int_equal(rows_tagged(admin, "terminated"), 0);
    db_close(db);
    db_close(admin);
}

static void test_begin_on_a_silently_dead_connection_starts_a_transaction_on_a_new_one(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1), *check = open_db(0);
    err_t e;
    err_clear(&e);
    cut_silently(db);
    assert_int_equal(db_begin(db, &e), 0);
    assert_true(db_in_tx(db));
    const char *p[] = {"after_begin"};
    assert_int_equal(db_exec(db, &insert_row, p, NULL, &e), 0);
    assert_int_equal(db_commit(db, &e), 0);
    assert_int_equal(rows_tagged(check, "after_begin"), 1);
    db_close(db);
    db_close(check);
}

static void test_a_failure_inside_a_transaction_is_never_retried(void **s)
{
    (void)s;
    db_conn_t *db = open_db(1), *check = open_db(0);
    err_t e;
    err_clear(&e);
    assert_int_equal(db_begin(db, &e), 0);
    const char *p[] = {"in_tx"};
    assert_int_equal(db_exec(db, &insert_row, p, NULL, &e), 0);
    cut_silently(db);
    read_pid_value(db, ERR_RETRY); /* a read, but the transaction is gone with the session */
    assert_false(db_ok(db));
    /* Still broken: the rest of the transaction fails fast instead of running on its own. */
    const char *q[] = {"in_tx_after"};
    assert_int_equal(db_exec(db, &insert_row, q, NULL, &e), ERR_RETRY);
    db_rollback(db);
    assert_int_equal(rows_tagged(check, "in_tx"), 0);
    assert_int_equal(rows_tagged(check, "in_tx_after"), 0);
    db_close(db);
    db_close(check);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    itest_env("PETSTORE_PG_ADMIN_URL");
    if (itest_scratch_db("itest_db_retry", url, sizeof(url)) != 0)
        return -1;
    db_conn_t *db = open_db(0);
    run(db, "CREATE TABLE retry_rows (id serial PRIMARY KEY, tag text NOT NULL)");
    db_close(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_prepared_read_on_a_silently_dead_connection_reconnects_and_runs_again),
        cmocka_unit_test(test_without_the_option_a_dead_connection_is_an_error),
        cmocka_unit_test(test_a_write_that_got_no_answer_is_not_run_twice),
        cmocka_unit_test(test_a_write_declared_idempotent_is_run_again_on_a_new_connection),
        cmocka_unit_test(test_a_read_on_a_connection_the_server_terminated_runs_again),
        cmocka_unit_test(test_a_write_on_a_connection_the_server_terminated_is_left_to_the_caller),
        cmocka_unit_test(
            test_begin_on_a_silently_dead_connection_starts_a_transaction_on_a_new_one),
        cmocka_unit_test(test_a_failure_inside_a_transaction_is_never_retried),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
