/* Unit tests of W3C traceparent handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "trace.h"

static void test_a_valid_traceparent_is_parsed(void **state)
{
    (void)state;
    trace_ctx_t t;
    assert_int_equal(trace_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &t), 0);
    assert_string_equal(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(t.span_id, "b7ad6b7169203331");
    assert_int_equal(t.flags, 1);
    char out[TRACEPARENT_LEN];
    trace_format(&t, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
}

static void test_invalid_traceparents_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "0x-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
        " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
        "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-101",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-g1",
        "00-0af7651916cd43dd8448eb211c8031zc-b7ad6b7169203331-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        trace_ctx_t t;
        memset(&t, 'u', sizeof(t));
        if (trace_parse(bad[i], &t) != ERR_INVALID)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(t.trace_id[0], 'u'); /* untouched on failure */
    }
    trace_ctx_t t;
    assert_int_equal(trace_parse(NULL, &t), ERR_INVALID);
}

static void test_a_future_version_is_read_by_its_first_55_characters(void **state)
{
    (void)state;
    trace_ctx_t t;
    assert_int_equal(
        trace_parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-what", &t), 0);
    assert_int_equal(trace_parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &t), 0);
    assert_int_equal(t.flags, 0);
    assert_int_equal(trace_parse("fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-", &t),
                     0);
    assert_int_equal(t.flags, 3);
    /* We answer in the version we speak. */
    char out[TRACEPARENT_LEN];
    trace_format(&t, out);
    assert_string_equal(out, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03");
}

static void test_unknown_flag_bits_survive_a_round_trip(void **state)
{
    (void)state;
    trace_ctx_t t, child;
    assert_int_equal(trace_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff", &t), 0);
    assert_int_equal(t.flags, 0xff);
    trace_child(&t, &child);
    assert_int_equal(child.flags, 0xff);
    char out[TRACEPARENT_LEN];
    trace_format(&child, out);
    assert_int_equal(strlen(out), 55);
    assert_string_equal(out + 53, "ff");
}

static void test_a_child_span_keeps_the_trace_and_gets_a_new_span(void **state)
{
    (void)state;
    trace_ctx_t root, child, again;
    trace_new_root(&root);
    assert_int_equal(strlen(root.trace_id), 32);
    assert_int_equal(strlen(root.span_id), 16);
    trace_child(&root, &child);
    assert_string_equal(child.trace_id, root.trace_id);
    assert_string_not_equal(child.span_id, root.span_id);
    char text[TRACEPARENT_LEN];
    trace_format(&child, text);
    trace_from_header_or_new(text, &again);
    assert_string_equal(again.trace_id, root.trace_id);
    assert_string_not_equal(again.span_id, root.span_id);
    trace_from_header_or_new("garbage", &again);
    assert_string_not_equal(again.trace_id, root.trace_id);
    trace_from_header_or_new(NULL, &again);
    assert_int_equal(trace_parse(text, &again), 0);
}

static void test_a_new_root_is_sampled_and_parses_back(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        trace_ctx_t root, back;
        trace_new_root(&root);
        assert_int_equal(root.flags, 1);
        char text[TRACEPARENT_LEN];
        trace_format(&root, text);
        assert_int_equal(trace_parse(text, &back), 0);
        assert_string_equal(back.trace_id, root.trace_id);
        assert_string_equal(back.span_id, root.span_id);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_valid_traceparent_is_parsed),
        cmocka_unit_test(test_invalid_traceparents_are_refused),
        cmocka_unit_test(test_a_future_version_is_read_by_its_first_55_characters),
        cmocka_unit_test(test_unknown_flag_bits_survive_a_round_trip),
        cmocka_unit_test(test_a_child_span_keeps_the_trace_and_gets_a_new_span),
        cmocka_unit_test(test_a_new_root_is_sampled_and_parses_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
