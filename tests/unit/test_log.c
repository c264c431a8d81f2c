/* Unit tests of structured logging and its redaction guard. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
    json_t *line =
        log_one(LOG_WARN, &ctx, "order.placed", json_pack("{s:i}", "total_cents", 12500));
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
    json_t *line =
        log_one(LOG_INFO, NULL, "m",
                json_pack("{s:s,s:s,s:{s:s,s:[{s:s}]},s:s,s:s,s:s}", "password", "hunter22",
                          "Authorization", "Bearer abc", "nested", "api_token", "t0k", "list",
                          "card_number", "4111111111111111", "card_last4", "1111", "username",
                          "alice", "card_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
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
    json_t *line =
        log_one(LOG_INFO, NULL, "m", json_pack("{s:s}", "error", "bad 4000056655665556"));
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
        "12345678901",          /* 11 digits */
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

static void test_the_callers_objects_are_never_modified(void **state)
{
    (void)state;
    json_t *body = json_pack("{s:s,s:s}", "card_number", "4111111111111111", "note",
                             "card 4111 1111 1111 1111");
    json_t *line = log_one(LOG_INFO, NULL, "m", json_pack("{s:O}", "body", body));
    json_t *logged = json_object_get(line, "body");
    assert_string_equal(json_string_value(json_object_get(logged, "card_number")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(logged, "note")),
                        "card ************1111");
    assert_string_equal(json_string_value(json_object_get(body, "card_number")),
                        "4111111111111111");
    assert_string_equal(json_string_value(json_object_get(body, "note")),
                        "card 4111 1111 1111 1111");
    json_decref(line);
    json_decref(body);
}

static void test_secret_keys_are_recognised_in_any_spelling(void **state)
{
    (void)state;
    const char *secret[] = {"PassWord",      "user_passwd", "client-secret",
                            "X-Api-Key",     "cardNumber",  "Card-Number",
                            "card_num",      "CVV",         "cvc2",
                            "card",          "PAN",         "card_pan",
                            "cardPan",       "number",      "Cookie",
                            "refresh_token", "private.key", "authorization_header",
                            "token_count" /* any key naming a token, on purpose */};
    const char *plain[] = {"card_id",  "card_last4", "span_id", "company", "pet_name",
                           "order_id", "cardholder", "panel",   "expand"};
    json_t *fields = json_object();
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        json_object_set_new(fields, secret[i], json_string("s3cr3t"));
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        json_object_set_new(fields, plain[i], json_string("visible"));
    json_t *line = log_one(LOG_INFO, NULL, "m", fields);
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (strcmp(json_string_value(json_object_get(line, secret[i])), "[REDACTED]") != 0)
            fail_msg("key %s was not redacted", secret[i]);
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        const char *v = json_string_value(json_object_get(line, plain[i]));
        if (v == NULL || strcmp(v, "visible") != 0)
            fail_msg("key %s became %s", plain[i], v ? v : "(missing)");
    }
    json_decref(line);
}

static void test_a_secret_key_hides_a_whole_object_or_array(void **state)
{
    (void)state;
    json_t *line = log_one(
        LOG_INFO, NULL, "m",
        json_pack("{s:{s:{s:s},s:[s,s]}}", "auth", "token", "value", "abc", "password", "a", "b"));
    json_t *auth = json_object_get(line, "auth");
    assert_string_equal(json_string_value(json_object_get(auth, "token")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(auth, "password")), "[REDACTED]");
    json_decref(line);
}

static void test_digit_runs_are_masked_inside_arrays_at_any_depth(void **state)
{
    (void)state;
    json_t *line = log_one(LOG_INFO, NULL, "m",
                           json_pack("{s:[s,{s:s},[[s]],i,s]}", "notes", "4111111111111111",
                                     "passwd", "x", "5555 5555 5555 4444", 7, "fine"));
    json_t *notes = json_object_get(line, "notes");
    assert_string_equal(json_string_value(json_array_get(notes, 0)), "************1111");
    assert_string_equal(json_string_value(json_object_get(json_array_get(notes, 1), "passwd")),
                        "[REDACTED]");
    json_t *deep = json_array_get(json_array_get(json_array_get(notes, 2), 0), 0);
    assert_string_equal(json_string_value(deep), "************4444");
    assert_int_equal(json_integer_value(json_array_get(notes, 3)), 7);
    assert_string_equal(json_string_value(json_array_get(notes, 4)), "fine");
    json_decref(line);
}

static void
test_runs_of_twelve_to_nineteen_digits_are_masked_with_any_single_separators(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(log_mask_digits("123456789012", out, sizeof(out)), 1);
    assert_string_equal(out, "********9012");
    assert_int_equal(log_mask_digits("1234567890123456789", out, sizeof(out)), 1);
    assert_string_equal(out, "***************6789");
    assert_int_equal(log_mask_digits("4111-1111 1111-1111/x", out, sizeof(out)), 1);
    assert_string_equal(out, "************1111/x");
    assert_int_equal(log_mask_digits("a 378282246310005, b 6011111111111117", out, sizeof(out)), 1);
    assert_string_equal(out, "a ***********0005, b ************1117");
    /* Double separators break a run into short numbers. */
    assert_int_equal(log_mask_digits("4111  1111  1111  1111", out, sizeof(out)), 0);
    /* A small output buffer truncates but never overflows. */
    assert_int_equal(log_mask_digits("4111111111111111", out, 6), 1);
    assert_string_equal(out, "*****");
}

static void test_numbers_times_and_ids_are_not_taken_for_cards(void **state)
{
    (void)state;
    json_t *line = log_one(
        LOG_INFO, NULL, "m",
        json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "total_cents", (json_int_t)4111111111111111LL, "at",
                  "2024-05-01T12:00:00.123Z", "card_last4", "1111", "phone", "+1 555-123-4567",
                  "pet_id", "01900000-0000-7000-8000-000000000000", "trace",
                  "4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_int_equal(json_integer_value(json_object_get(line, "total_cents")), 4111111111111111LL);
    assert_string_equal(json_string_value(json_object_get(line, "at")), "2024-05-01T12:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(line, "card_last4")), "1111");
    assert_string_equal(json_string_value(json_object_get(line, "phone")), "+1 555-123-4567");
    assert_string_equal(json_string_value(json_object_get(line, "pet_id")),
                        "01900000-0000-7000-8000-000000000000");
    assert_string_equal(json_string_value(json_object_get(line, "trace")),
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    json_decref(line);
}

/* Sealed cards (standard base64), session tokens (base64url) and hashes (hex) are long runs of
 * an encoding's characters: the redactor hides such a run wherever it appears, even when the
 * key says nothing and the run sits inside other text (an SQL parameter, a JSON body). */
static void test_long_encoded_blobs_are_hidden_wherever_they_appear(void **state)
{
    (void)state;
    const char *sealed = "q3Xo0JY6m2P+x1bT0vB4aG9k/Zk8Rr2sYw5nQe1uLh7cVt3pD6fJ0iKk9oMs4aWx"
                         "Pz2Ny8LbE5gUq1HjC7Rd0Tv==";
    const char *token = "Zq9_x-3KfP0aL7mWb2Rt8YvN1cJ5hE4sU6gD0oQiXk";
    const char *hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    char body[256];
    snprintf(body, sizeof(body), "{\"card_sealed\":\"%s\",\"total_cents\":500}", sealed);
    json_t *line = log_one(LOG_DEBUG, NULL, token,
                           json_pack("{s:s,s:[s,s,s]}", "body", body, "params", hash, "x", token));
    char *text = json_dumps(line, JSON_COMPACT);
    assert_null(strstr(text, sealed));
    assert_null(strstr(text, "Zq9_x-3KfP0aL7mWb2Rt8YvN1"));
    assert_null(strstr(text, hash));
    assert_non_null(strstr(json_string_value(json_object_get(line, "body")), "\"total_cents\""));
    assert_string_equal(json_string_value(json_array_get(json_object_get(line, "params"), 1)), "x");
    free(text);
    json_decref(line);
}

/* What looks alike but is not a secret stays readable: ids, trace context, paths, words. */
static void test_ids_traces_paths_and_words_are_not_taken_for_blobs(void **state)
{
    (void)state;
    const char *keep[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "{01900000-0000-7000-8000-000000000000,01900000-0000-7000-8000-000000000001}",
        "/tmp/ph-logging/build/services/storefront/storefront-daemon.log",
        "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
        "inventory.reserve.v1",
        "the_relay_could_not_publish_the_message_and_will_try_again_later",
    };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        json_t *line = log_one(LOG_INFO, NULL, "m", json_pack("{s:s}", "v", keep[i]));
        assert_string_equal(json_string_value(json_object_get(line, "v")), keep[i]);
        json_decref(line);
    }
}

/* Strings are kept without a copy when nothing in them would be masked; the shortcut must agree
 * with the masking itself on the cases next to the line: an upper-case id is no blob, a mixed-case
 * one is (and is hidden even inside a uuid's shape), a card is masked next to an id, a masked
 * digit run makes the text a copy. */
static void test_what_needs_no_masking_is_kept_and_what_does_is_masked_next_to_it(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B"},
        {"0190a1B2-c3D4-7e5F-8a9B-0c1D2e3F4a5B", "[REDACTED]"},
        {"01900000-0000-7000-8000-000000000000 4111111111111111",
         "01900000-0000-7000-8000-000000000000 ************1111"},
        {"order 12345678901 of 12 pets", "order 12345678901 of 12 pets"},
        {"aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3aB", "[REDACTED]"},
        {"aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3a", "aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3a"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *line = log_one(LOG_INFO, NULL, cases[i].in, json_pack("{s:s}", "v", cases[i].in));
        assert_string_equal(json_string_value(json_object_get(line, "v")), cases[i].out);
        assert_string_equal(json_string_value(json_object_get(line, "message")), cases[i].out);
        json_decref(line);
    }
}

static void test_sealed_and_hashed_values_are_redacted_by_key(void **state)
{
    (void)state;
    json_t *line = log_one(LOG_INFO, NULL, "m",
                           json_pack("{s:s,s:s,s:s,s:s}", "card_sealed", "abc", "token_hash", "ab",
                                     "password_hash", "$argon2id$x", "card_id", "c1"));
    assert_string_equal(json_string_value(json_object_get(line, "card_sealed")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(line, "token_hash")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(line, "password_hash")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(line, "card_id")), "c1");
    json_decref(line);
}

static void test_the_message_itself_is_masked(void **state)
{
    (void)state;
    json_t *line = log_one(LOG_ERROR, NULL, "charge failed for 4111111111111111", NULL);
    assert_string_equal(json_string_value(json_object_get(line, "message")),
                        "charge failed for ************1111");
    json_decref(line);
}

static void test_long_strings_are_cut_at_a_character_boundary_and_marked(void **state)
{
    (void)state;
    size_t n = LOG_MAX_STRING + 100;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memset(text, 'x', n); /* not a hex digit: a long hex run would be hidden as a blob */
    /* A two-byte character straddling the cut. */
    text[LOG_MAX_STRING - 1] = (char)0xc3;
    text[LOG_MAX_STRING] = (char)0xa9;
    text[n] = '\0';
    json_t *line = log_one(LOG_INFO, NULL, "m", json_pack("{s:s}", "big", text));
    const char *got = json_string_value(json_object_get(line, "big"));
    assert_non_null(got);
    assert_int_equal(strlen(got), LOG_MAX_STRING - 1 + strlen("...[truncated]"));
    assert_string_equal(got + LOG_MAX_STRING - 1, "...[truncated]");
    json_decref(line);
    free(text);
}

static void test_lines_list_the_standard_fields_first_and_keep_them_from_fields(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_init("tester", LOG_DEBUG, fds[1]);
    log_ctx_t ctx = {"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", NULL};
    log_debug(&ctx, "evt", json_pack("{s:s,s:s,s:i}", "level", "fake", "zeta", "z", "alpha", 1));
    close(fds[1]);
    char buf[1024];
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    const char *order[] = {"{\"timestamp\":",     "\"level\":\"debug\"", "\"service\":\"tester\"",
                           "\"message\":\"evt\"", "\"trace_id\":",       "\"span_id\":",
                           "\"zeta\":",           "\"alpha\":"};
    const char *at = buf;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *p = strstr(at, order[i]);
        if (p == NULL)
            fail_msg("%s missing or out of order in %s", order[i], buf);
        at = p;
    }
    assert_null(strstr(buf, "fake"));
    assert_null(strstr(buf, "order_id"));
    /* 2024-05-01T12:00:00.123Z */
    const char *ts = strstr(buf, "\"timestamp\":\"") + 13;
    assert_true(ts[4] == '-' && ts[7] == '-' && ts[10] == 'T' && ts[13] == ':' && ts[16] == ':' &&
                ts[19] == '.' && ts[23] == 'Z' && ts[24] == '"');
}

/* ---- many threads, one pipe ---- */

#define WRITERS 4
#define LINES_EACH 300

typedef struct drain {
    int fd;
    char *data;
    size_t len;
} drain_t;

static void *drain_pipe(void *arg)
{
    drain_t *d = arg;
    size_t cap = 1 << 20;
    d->data = malloc(cap);
    ssize_t r;
    while (d->data != NULL && d->len + 1 < cap &&
           (r = read(d->fd, d->data + d->len, cap - d->len - 1)) > 0)
        d->len += (size_t)r;
    if (d->data != NULL)
        d->data[d->len] = '\0';
    return NULL;
}

static void *write_lines(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LINES_EACH; i++)
        log_info(NULL, "concurrent",
                 json_pack("{s:i,s:i,s:s}", "writer", id, "i", i, "pad",
                           "................................................................"));
    return NULL;
}

static void test_concurrent_writers_produce_one_valid_json_object_per_line(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_init("tester", LOG_INFO, fds[1]);
    drain_t d = {.fd = fds[0]};
    pthread_t reader, writers[WRITERS];
    assert_int_equal(pthread_create(&reader, NULL, drain_pipe, &d), 0);
    for (int i = 0; i < WRITERS; i++)
        assert_int_equal(pthread_create(&writers[i], NULL, write_lines, (void *)(intptr_t)i), 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(writers[i], NULL);
    close(fds[1]);
    pthread_join(reader, NULL);
    close(fds[0]);
    assert_non_null(d.data);
    int lines = 0, seen[WRITERS] = {0};
    for (char *p = d.data, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        *nl = '\0';
        json_error_t je;
        json_t *line = json_loads(p, 0, &je);
        if (line == NULL)
            fail_msg("line %d is not JSON: %s", lines, je.text);
        int w = (int)json_integer_value(json_object_get(line, "writer"));
        assert_true(w >= 0 && w < WRITERS);
        assert_int_equal(json_integer_value(json_object_get(line, "i")), seen[w]++);
        json_decref(line);
        lines++;
    }
    assert_int_equal(lines, WRITERS * LINES_EACH);
    free(d.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_line_carries_the_standard_fields_and_the_context),
        cmocka_unit_test(test_secret_keys_are_redacted_at_any_depth),
        cmocka_unit_test(test_card_like_digit_runs_in_free_text_keep_only_the_last_four),
        cmocka_unit_test(test_ids_amounts_and_short_numbers_are_left_alone),
        cmocka_unit_test(test_lines_below_the_minimum_level_are_not_written),
        cmocka_unit_test(test_the_callers_objects_are_never_modified),
        cmocka_unit_test(test_secret_keys_are_recognised_in_any_spelling),
        cmocka_unit_test(test_a_secret_key_hides_a_whole_object_or_array),
        cmocka_unit_test(test_digit_runs_are_masked_inside_arrays_at_any_depth),
        cmocka_unit_test(
            test_runs_of_twelve_to_nineteen_digits_are_masked_with_any_single_separators),
        cmocka_unit_test(test_numbers_times_and_ids_are_not_taken_for_cards),
        cmocka_unit_test(test_long_encoded_blobs_are_hidden_wherever_they_appear),
        cmocka_unit_test(test_ids_traces_paths_and_words_are_not_taken_for_blobs),
        cmocka_unit_test(test_sealed_and_hashed_values_are_redacted_by_key),
        cmocka_unit_test(test_the_message_itself_is_masked),
        cmocka_unit_test(test_what_needs_no_masking_is_kept_and_what_does_is_masked_next_to_it),
        cmocka_unit_test(test_long_strings_are_cut_at_a_character_boundary_and_marked),
        cmocka_unit_test(test_lines_list_the_standard_fields_first_and_keep_them_from_fields),
        cmocka_unit_test(test_concurrent_writers_produce_one_valid_json_object_per_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
