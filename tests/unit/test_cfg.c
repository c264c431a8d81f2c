/* Unit tests of the environment configuration loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"

static const char *const *fake_env;

static const char *fake_getenv(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *p = fake_env; *p != NULL; p++)
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=')
            return *p + n + 1;
    return NULL;
}

static const cfg_var_t vars[] = {
    {.name = "DATABASE_URL", .kind = CFG_CONNINFO, .required = 1, .secret = 1},
    {.name = "AMQP_URL", .kind = CFG_URL_AMQP, .required = 1, .secret = 1},
    {.name = "HTTP_PORT", .kind = CFG_PORT, .required = 1},
    {.name = "BATCH", .kind = CFG_INT, .default_value = "100", .min = 1, .max = 1000},
    {.name = "POLL_MS", .kind = CFG_MS, .default_value = "250", .min = 10, .max = 60000},
    {.name = "VERBOSE", .kind = CFG_BOOL, .default_value = "false"},
    {.name = "LOG_LEVEL", .kind = CFG_ENUM, .default_value = "info",
     .enum_values = (const char *const[]){"debug", "info", "warn", "error", NULL}},
    {.name = "NAME", .kind = CFG_STRING},
};
#define N_VARS (sizeof(vars) / sizeof(vars[0]))

static void test_valid_values_and_defaults_are_loaded(void **state)
{
    (void)state;
    static const char *const env[] = {"DATABASE_URL=host=x dbname=y",
                                      "AMQP_URL=amqp://u:p@h:5672/petstore", "HTTP_PORT=8080",
                                      "VERBOSE=yes", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), 0);
    assert_string_equal(cfg_str(c, "DATABASE_URL"), "host=x dbname=y");
    assert_int_equal(cfg_int(c, "HTTP_PORT"), 8080);
    assert_int_equal(cfg_int(c, "BATCH"), 100);
    assert_int_equal(cfg_int(c, "POLL_MS"), 250);
    assert_true(cfg_bool(c, "VERBOSE"));
    assert_string_equal(cfg_str(c, "LOG_LEVEL"), "info");
    assert_null(cfg_str(c, "NAME"));
    assert_string_equal(cfg_problems(c), "");
    cfg_free(c);
}

static void test_every_problem_is_reported_at_once(void **state)
{
    (void)state;
    static const char *const env[] = {"AMQP_URL=http://nope", "HTTP_PORT=80a", "BATCH=0",
                                      "POLL_MS=abc", "VERBOSE=maybe", "LOG_LEVEL=loud", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), ERR_CONFIG);
    assert_string_equal(e.msg, "7 configuration problems");
    const char *p = cfg_problems(c);
    assert_non_null(strstr(p, "DATABASE_URL: required but not set"));
    assert_non_null(strstr(p, "AMQP_URL: is not an amqp:// URL"));
    assert_non_null(strstr(p, "HTTP_PORT: \"80a\" is not a TCP port"));
    assert_non_null(strstr(p, "BATCH: \"0\" is out of range 1..1000"));
    assert_non_null(strstr(p, "POLL_MS: \"abc\" is not an integer"));
    assert_non_null(strstr(p, "VERBOSE: \"maybe\" is not a boolean"));
    assert_non_null(strstr(p, "LOG_LEVEL: \"loud\" is not one of debug info warn error"));
    cfg_free(c);
}

static void test_secret_values_never_appear_in_problems(void **state)
{
    (void)state;
    static const char *const env[] = {"DATABASE_URL=host=x password=s3cr3t",
                                      "AMQP_URL=amqps://user:pa55word@h/", "HTTP_PORT=1", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), ERR_CONFIG);
    assert_null(strstr(cfg_problems(c), "pa55word"));
    assert_non_null(strstr(cfg_problems(c), "AMQP_URL"));
    cfg_free(c);
}

static void test_an_empty_variable_counts_as_unset(void **state)
{
    (void)state;
    static const char *const env[] = {"DATABASE_URL=", "AMQP_URL=amqp://h", "HTTP_PORT=9",
                                      "BATCH=", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), ERR_CONFIG);
    assert_non_null(strstr(cfg_problems(c), "DATABASE_URL: required but not set"));
    assert_int_equal(cfg_int(c, "BATCH"), 100);
    cfg_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_values_and_defaults_are_loaded),
        cmocka_unit_test(test_every_problem_is_reported_at_once),
        cmocka_unit_test(test_secret_values_never_appear_in_problems),
        cmocka_unit_test(test_an_empty_variable_counts_as_unset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
