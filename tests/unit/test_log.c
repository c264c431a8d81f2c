/* Unit tests of structured logging and its redaction guard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Logs one line through a pipe and returns it parsed. */
static json_t *log_one(log_level_t level, const log_ctx_t *ctx, const char *msg, json_t *fields)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_init("tester", LOG_DEBUG, fds[1]);
    log_write(level, ctx, msg, fields);
    close(fds[1]);
    char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    assert_int_equal(buf[n - 1], '\n');
    assert_null(strchr(buf, '\n') + 1 < buf + n ? strchr(buf, '\n') + 1 : NULL);
    json_error_t je;
    json_t *line = json_loads(buf, 0, &je);
    assert_non_null(line);
    return line;
}

static void test_a_line_carries_the_standard_fields_and_the_context(void **state)
{
    (void)state;
    log_ctx_t ctx = {"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331",
                     "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"};
    json_t *line = log_one(LOG_WARN, &ctx, "order.placed", json_pack("{s:i}", "total_cents", 12500));
    assert_string_equal(json_string_value(json_object_get(line, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(line, "service")), "tester");
    assert_string_equal(json_string_value(json_object_get(line, "message")), "order.placed");
    assert_string_equal(json_string_value(json_object_get(line, "trace_id")), ctx.trace_id);
    assert_string_equal(json_string_value(json_object_get(line, "span_id")), ctx.span_id);
    assert_string_equal(json_string_value(json_object_get(line, "order_id")), ctx.order_id);
    assert_int_equal(json_integer_value(json_object_get(line, "total_cents")), 12500);
    const char *ts = json_string_value(json_object_get(line, "timestamp"));
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    json_decref(line);
}

static void test_secret_keys_are_redacted_at_any_depth(void **state)
{
    (void)state;
    json_t *line = log_one(LOG_INFO, NULL, "m",
                           json_pack("{s:s,s:s,s:{s:s,s:[{s:s}]},s:s,s:s,s:s}", "password", "hunter22",
                                     "Authorization", "Bearer abc", "nested", "api_token", "t0k",
                                     "list", "card_number", "4111111111111111", "card_last4",
                                     "1111", "username", "alice", "card_id",
                                     "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
    assert_string_equal(json_string_value(json_object_get(line, "password")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(line, "Authorization")), "[REDACTED]");
    json_t *nested = json_object_get(line, "nested");
    assert_string_equal(json_string_value(json_object_get(nested, "api_token")), "[REDACTED]");
    json_t *item = json_array_get(json_object_get(nested, "list"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "card_number")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(line, "card_last4")), "1111");
    assert_string_equal(json_string_value(json_object_get(line, "card_id")),
                        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_string_equal(json_string_value(json_object_get(line, "username")), "alice");
    json_decref(line);
}

static void test_card_like_digit_runs_in_free_text_keep_only_the_last_four(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(log_mask_digits("paid with 4111111111111111 today", out, sizeof(out)), 1);
    assert_string_equal(out, "paid with ************1111 today");
    assert_int_equal(log_mask_digits("4111 1111 1111 1111", out, sizeof(out)), 1);
    assert_string_equal(out, "************1111");
    assert_int_equal(log_mask_digits("card 5555-5555-5555-4444.", out, sizeof(out)), 1);
    assert_string_equal(out, "card ************4444.");
    json_t *line = log_one(LOG_INFO, NULL, "m", json_pack("{s:s}", "error", "bad 4000056655665556"));
    assert_string_equal(json_string_value(json_object_get(line, "error")), "bad ************5556");
    json_decref(line);
}

static void test_ids_amounts_and_short_numbers_are_left_alone(void **state)
{
    (void)state;
    const char *keep[] = {
        "total 12500 cents",
        "0190a1b2-c3d4-7e5f-8a9b-426614174000",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "last4 1111",
        "12345678901", /* 11 digits */
        "12345678901234567890", /* 20 digits */
        "abc123456789012345def",
    };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        char out[128];
        assert_int_equal(log_mask_digits(keep[i], out, sizeof(out)), 0);
        assert_string_equal(out, keep[i]);
    }
}

static void test_lines_below_the_minimum_level_are_not_written(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_init("tester", LOG_WARN, fds[1]);
    log_info(NULL, "quiet", json_pack("{s:i}", "n", 1));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_ERROR));
    close(fds[1]);
    char buf[16];
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 0);
    close(fds[0]);
    log_level_t lvl;
    assert_int_equal(log_level_parse("error", &lvl), 0);
    assert_int_equal(lvl, LOG_ERROR);
    assert_int_equal(log_level_parse("loud", &lvl), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_line_carries_the_standard_fields_and_the_context),
        cmocka_unit_test(test_secret_keys_are_redacted_at_any_depth),
        cmocka_unit_test(test_card_like_digit_runs_in_free_text_keep_only_the_last_four),
        cmocka_unit_test(test_ids_amounts_and_short_numbers_are_left_alone),
        cmocka_unit_test(test_lines_below_the_minimum_level_are_not_written),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
