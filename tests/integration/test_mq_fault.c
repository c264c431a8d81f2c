/* Fault injection of mq_publish: PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT=N makes the Nth publish call
 * of the process fail with ERR_RETRY as if the connection had dropped. A program of its own,
 * because the variable is read once per process. Needs AMQP_URL like test_mq. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest_mq.h"
#include "mq.h"
#include "mq_publish.h"

static void test_the_third_publish_call_fails_and_the_others_publish(void **state)
{
    (void)state;
    mq_conn_t *admin = itest_mq_open("itest mq fault admin");
    assert_non_null(admin);
    char exchange[80], queue[96];
    itest_mq_name(exchange, sizeof(exchange), "itest.mqfault.x");
    itest_mq_name(queue, sizeof(queue), "itest.mqfault.q");
    assert_int_equal(itest_mq_declare_exchange(admin, exchange, "direct"), 0);
    assert_int_equal(itest_mq_declare_queue(admin, queue, NULL), 0);
    assert_int_equal(itest_mq_bind(admin, queue, exchange, "k"), 0);

    mq_conn_t *pub = itest_mq_open("itest mq fault publisher");
    assert_non_null(pub);
    mq_message_t m = {.exchange = exchange, .routing_key = "k", .message_id = "f"};
    mq_message_t batch[3] = {m, m, m};
    int status[3];
    err_t e;
    err_clear(&e);

    assert_int_equal(mq_publish_one(pub, &m, 5000, &e), 0);                         /* call 1 */
    assert_int_equal(mq_publish_batch(pub, batch, 3, status, 5000, &e), 0);         /* call 2 */
    assert_int_equal(mq_publish_batch(pub, batch, 3, status, 5000, &e), ERR_RETRY); /* 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(status[i], ERR_RETRY);
    assert_non_null(strstr(e.msg, "injected"));
    assert_false(mq_ok(pub));
    mq_close(pub);

    pub = itest_mq_open("itest mq fault publisher");
    assert_non_null(pub);
    assert_int_equal(mq_publish_one(pub, &m, 5000, &e), 0); /* call 4 */
    uint32_t messages = 0;
    assert_int_equal(mq_check_queue(pub, queue, &messages, NULL, &e), 0);
    assert_int_equal(messages, 1 + 3 + 1);
    mq_close(pub);

    assert_int_equal(itest_mq_delete_queue(admin, queue), 0);
    assert_int_equal(itest_mq_delete_exchange(admin, exchange), 0);
    mq_close(admin);
}

int main(void)
{
    if (itest_mq_url() == NULL) {
        fprintf(stderr, "AMQP_URL is not set: run under ./petstore test\n");
        return 1;
    }
    setenv("PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT", "3", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_third_publish_call_fails_and_the_others_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
