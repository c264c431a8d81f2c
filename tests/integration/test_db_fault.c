/* Integration test of the database fault hook (db.h): with PETSTORE_FAULT_DB_EXEC_FAIL_AT=3
 * the third statement of the process fails with ERR_RETRY before reaching the server, and the
 * connection and every other statement are unaffected. Its own executable, because the hook
 * reads the variable once per process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "itest.h"

static const db_stmt_t next_value = {"itest_fault_next", "SELECT $1::int + 1", 1, 0};

static void test_the_third_statement_fails_and_the_others_run(void **state)
{
    (void)state;
    char url[512];
    assert_int_equal(itest_scratch_db("itest_fault", url, sizeof(url)), 0);
    db_conn_t *db = itest_db_open(url);
    assert_non_null(db);
    err_t e;
    err_clear(&e);
    const char *p[] = {"1"};
    assert_int_equal(db_exec(db, &next_value, p, NULL, &e), 0);          /* 1 */
    assert_int_equal(db_exec_sql(db, "SELECT 1", 0, NULL, NULL, &e), 0); /* 2 */
    db_result_t *res = NULL;
    assert_int_equal(db_exec(db, &next_value, p, &res, &e), ERR_RETRY); /* 3 */
    assert_null(res);
    assert_non_null(strstr(e.msg, "injected"));
    assert_true(db_ok(db));
    assert_int_equal(db_exec(db, &next_value, p, &res, &e), 0); /* 4 */
    assert_string_equal(db_value(res, 0, 0), "2");
    db_result_free(res);
    db_batch_item_t items[] = {{&next_value, p, NULL}, {&next_value, p, NULL}};
    assert_int_equal(db_exec_batch(db, items, 2, &e), 0); /* 5, 6 */
    db_close(db);
}

int main(void)
{
    itest_env("PETSTORE_PG_ADMIN_URL");
    setenv("PETSTORE_FAULT_DB_EXEC_FAIL_AT", "3", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_third_statement_fails_and_the_others_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
