/* The sender proof the relay relies on (issue 13, point 1): mq_login() is the user of the URL,
 * a message published with user_id = mq_login() is accepted and arrives with it, and the
 * broker refuses one that claims another user (406 PRECONDITION_FAILED, the channel closed:
 * ERR_CONFIG, the handle broken). Needs AMQP_URL like test_mq. */
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

static void test_the_login_is_accepted_as_user_id_and_another_user_is_refused(void **state)
{
    (void)state;
    mq_conn_t *admin = itest_mq_open("itest user_id admin");
    assert_non_null(admin);
    char exchange[80], queue[96];
    itest_mq_name(exchange, sizeof(exchange), "itest.userid.x");
    itest_mq_name(queue, sizeof(queue), "itest.userid.q");
    assert_int_equal(itest_mq_declare_exchange(admin, exchange, "direct"), 0);
    assert_int_equal(itest_mq_declare_queue(admin, queue, NULL), 0);
    assert_int_equal(itest_mq_bind(admin, queue, exchange, "k"), 0);

    /* The URL's user: amqp://USER:password@host... */
    const char *url = itest_mq_url();
    const char *user = strstr(url, "://") + 3;
    size_t user_len = strcspn(user, ":@");
    assert_int_equal(strlen(mq_login(admin)), user_len);
    assert_memory_equal(mq_login(admin), user, user_len);
    assert_string_equal(mq_login(NULL), "");

    mq_conn_t *pub = itest_mq_open("itest user_id publisher");
    assert_non_null(pub);
    err_t e;
    err_clear(&e);
    mq_message_t m = {
        .exchange = exchange, .routing_key = "k", .message_id = "u1", .user_id = mq_login(pub)};
    assert_int_equal(mq_publish_one(pub, &m, 5000, &e), 0);
    uint32_t messages = 0;
    assert_int_equal(mq_check_queue(admin, queue, &messages, NULL, &e), 0);
    assert_int_equal(messages, 1);

    m.message_id = "u2";
    m.user_id = "storefront-impostor";
    assert_int_equal(mq_publish_one(pub, &m, 5000, &e), ERR_CONFIG);
    assert_non_null(strstr(e.msg, "PRECONDITION_FAILED"));
    assert_false(mq_ok(pub));
    mq_close(pub);
    assert_int_equal(mq_check_queue(admin, queue, &messages, NULL, &e), 0);
    assert_int_equal(messages, 1);

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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_login_is_accepted_as_user_id_and_another_user_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
