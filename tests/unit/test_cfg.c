/* Unit tests of the environment configuration loader. The loader reads through a fake getenv,
 * so no test depends on (or changes) the real environment, except the ones that fork. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    {.name = "HTTP_PORT", .kind = CFG_PORT, .required = 1, .help = "health and API port"},
    {.name = "BATCH", .kind = CFG_INT, .default_value = "100", .min = 1, .max = 1000},
    {.name = "POLL_MS", .kind = CFG_MS, .default_value = "250", .min = 10, .max = 60000},
    {.name = "VERBOSE", .kind = CFG_BOOL, .default_value = "false"},
    {.name = "LOG_LEVEL",
     .kind = CFG_ENUM,
     .default_value = "info",
     .enum_values = (const char *const[]){"debug", "info", "warn", "error", NULL}},
    {.name = "NAME", .kind = CFG_STRING},
    {.name = "ANY_INT", .kind = CFG_INT},
    {.name = "ANY_MS", .kind = CFG_MS},
};
#define N_VARS (sizeof(vars) / sizeof(vars[0]))

/* The three required variables, valid, followed by extra entries. */
#define BASE_ENV                                                                                   \
    "DATABASE_URL=host=x dbname=y", "AMQP_URL=amqp://u:p@h:5672/petstore", "HTTP_PORT=8080"

/* Loads env and expects exactly one problem, returned (copied into a static buffer). */
static const char *only_problem(const char *const *env)
{
    static char line[512];
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), ERR_CONFIG);
    assert_string_equal(e.msg, "1 configuration problem");
    snprintf(line, sizeof(line), "%s", cfg_problems(c));
    cfg_free(c);
    return line;
}

static void test_valid_values_and_defaults_are_loaded(void **state)
{
    (void)state;
    static const char *const env[] = {BASE_ENV, "VERBOSE=yes", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), 0);
    assert_string_equal(cfg_str(c, "DATABASE_URL"), "host=x dbname=y");
    assert_int_equal(cfg_int(c, "HTTP_PORT"), 8080);
    assert_int_equal(cfg_long(c, "HTTP_PORT"), 8080);
    assert_int_equal(cfg_int(c, "BATCH"), 100);
    assert_int_equal(cfg_int(c, "POLL_MS"), 250);
    assert_true(cfg_bool(c, "VERBOSE"));
    assert_string_equal(cfg_str(c, "LOG_LEVEL"), "info");
    assert_null(cfg_str(c, "NAME"));
    assert_false(cfg_is_set(c, "NAME"));
    assert_true(cfg_is_set(c, "BATCH"));
    assert_int_equal(cfg_int(c, "ANY_INT"), 0);
    assert_string_equal(cfg_problems(c), "");
    cfg_free(c);
}

static void test_every_kind_accepts_its_valid_spellings(void **state)
{
    (void)state;
    static const char *const env[] = {"DATABASE_URL=postgresql://u@localhost:5433/payment",
                                      "AMQP_URL=amqps://u:p@h/%2Fpetstore",
                                      "HTTP_PORT=65535",
                                      "BATCH=1000",
                                      "POLL_MS=10",
                                      "VERBOSE=OFF",
                                      "LOG_LEVEL=debug",
                                      "NAME=relay 1",
                                      "ANY_INT=-2147483648",
                                      "ANY_MS=0",
                                      NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), 0);
    assert_int_equal(cfg_int(c, "HTTP_PORT"), 65535);
    assert_int_equal(cfg_int(c, "BATCH"), 1000);
    assert_int_equal(cfg_int(c, "POLL_MS"), 10);
    assert_false(cfg_bool(c, "VERBOSE"));
    assert_string_equal(cfg_str(c, "NAME"), "relay 1");
    assert_int_equal(cfg_int(c, "ANY_INT"), -2147483647 - 1);
    assert_int_equal(cfg_int(c, "ANY_MS"), 0);
    cfg_free(c);

    const char *truthy[] = {"true", "TRUE", "1", "yes", "On"};
    for (size_t i = 0; i < sizeof(truthy) / sizeof(truthy[0]); i++) {
        char var[32];
        snprintf(var, sizeof(var), "VERBOSE=%s", truthy[i]);
        const char *const env2[] = {BASE_ENV, var, NULL};
        fake_env = env2;
        assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), 0);
        assert_true(cfg_bool(c, "VERBOSE"));
        cfg_free(c);
    }
    const char *conninfo[] = {"DATABASE_URL=dbname=x", "DATABASE_URL=  host = /tmp port=5433",
                              "DATABASE_URL=postgres://h/db"};
    for (size_t i = 0; i < sizeof(conninfo) / sizeof(conninfo[0]); i++) {
        const char *const env3[] = {conninfo[i], "AMQP_URL=amqp://h", "HTTP_PORT=1", NULL};
        fake_env = env3;
        assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), 0);
        cfg_free(c);
    }
}

static void test_every_problem_is_reported_at_once(void **state)
{
    (void)state;
    static const char *const env[] = {
        "AMQP_URL=http://nope", "HTTP_PORT=80a",  "BATCH=0", "POLL_MS=abc",
        "VERBOSE=maybe",        "LOG_LEVEL=loud", NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(vars, N_VARS, fake_getenv, &c, &e), ERR_CONFIG);
    assert_int_equal(e.code, ERR_CONFIG);
    assert_string_equal(e.msg, "7 configuration problems");
    assert_string_equal(cfg_problems(c),
                        "DATABASE_URL: required but not set\n"
                        "AMQP_URL: is not an amqp:// URL\n"
                        "HTTP_PORT: \"80a\" is not a TCP port (1..65535)\n"
                        "BATCH: \"0\" is out of range 1..1000\n"
                        "POLL_MS: \"abc\" is not an integer\n"
                        "VERBOSE: \"maybe\" is not a boolean (true or false)\n"
                        "LOG_LEVEL: \"loud\" is not one of debug info warn error\n");
    cfg_free(c);
}

static void test_integers_are_plain_decimal_within_their_range(void **state)
{
    (void)state;
    static const struct {
        const char *env;
        const char *problem;
    } cases[] = {
        {"BATCH= 80", "BATCH: \" 80\" is not an integer\n"},
        {"BATCH=+80", "BATCH: \"+80\" is not an integer\n"},
        {"BATCH=80 ", "BATCH: \"80 \" is not an integer\n"},
        {"BATCH=0x10", "BATCH: \"0x10\" is not an integer\n"},
        {"BATCH=-", "BATCH: \"-\" is not an integer\n"},
        {"BATCH=1001", "BATCH: \"1001\" is out of range 1..1000\n"},
        {"ANY_INT=99999999999999999999", "ANY_INT: \"99999999999999999999\" is not an integer\n"},
        {"ANY_INT=3000000000", "ANY_INT: \"3000000000\" is out of range -2147483648..2147483647\n"},
        {"ANY_MS=-5", "ANY_MS: \"-5\" is out of range 0..2147483647\n"},
        {"POLL_MS=1.5", "POLL_MS: \"1.5\" is not an integer\n"},
        {"HTTP_PORT=0", "HTTP_PORT: \"0\" is not a TCP port (1..65535)\n"},
        {"HTTP_PORT=65536", "HTTP_PORT: \"65536\" is not a TCP port (1..65535)\n"},
        {"LOG_LEVEL=INFO", "LOG_LEVEL: \"INFO\" is not one of debug info warn error\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* A later entry wins in fake_getenv only if it comes first: put the case first. */
        const char *const env[] = {cases[i].env, BASE_ENV, NULL};
        assert_string_equal(only_problem(env), cases[i].problem);
    }
}

static void test_connection_settings_that_are_plainly_something_else_are_refused(void **state)
{
    (void)state;
    const char *const env1[] = {"DATABASE_URL=db.example.com", "AMQP_URL=amqp://h", "HTTP_PORT=1",
                                NULL};
    assert_string_equal(only_problem(env1), "DATABASE_URL: is not a libpq connection string "
                                            "(key=value ... or postgresql://...)\n");
    const char *const env2[] = {"DATABASE_URL=amqp://u:p@h/", "AMQP_URL=amqp://h", "HTTP_PORT=1",
                                NULL};
    assert_non_null(strstr(only_problem(env2), "DATABASE_URL: is not a libpq"));
    const char *const env3[] = {"DATABASE_URL=dbname=x", "AMQP_URL=postgresql://h/db",
                                "HTTP_PORT=1", NULL};
    assert_string_equal(only_problem(env3), "AMQP_URL: is not an amqp:// URL\n");
}

static void test_secret_values_never_appear_in_problems(void **state)
{
    (void)state;
    static const char *const ab[] = {"a", "b", NULL};
    static const cfg_var_t secrets[] = {
        {.name = "S_CONN", .kind = CFG_CONNINFO, .secret = 1},
        {.name = "S_AMQP", .kind = CFG_URL_AMQP, .secret = 1},
        {.name = "S_INT", .kind = CFG_INT, .secret = 1},
        {.name = "S_PORT", .kind = CFG_PORT, .secret = 1},
        {.name = "S_BOOL", .kind = CFG_BOOL, .secret = 1},
        {.name = "S_ENUM", .kind = CFG_ENUM, .secret = 1, .enum_values = ab},
    };
    static const char *const env[] = {"S_CONN=pa55word",
                                      "S_AMQP=http://u:pa55word@h/",
                                      "S_INT=pa55word",
                                      "S_PORT=pa55word",
                                      "S_BOOL=pa55word",
                                      "S_ENUM=pa55word",
                                      NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(secrets, 6, fake_getenv, &c, &e), ERR_CONFIG);
    assert_string_equal(e.msg, "6 configuration problems");
    assert_null(strstr(cfg_problems(c), "pa55word"));
    assert_null(strstr(e.msg, "pa55word"));
    assert_non_null(strstr(cfg_problems(c), "S_INT: is not an integer\n"));
    assert_non_null(strstr(cfg_problems(c), "S_ENUM: is not one of a b\n"));
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
    assert_string_equal(cfg_problems(c), "DATABASE_URL: required but not set\n");
    assert_int_equal(cfg_int(c, "BATCH"), 100);
    cfg_free(c);
}

static void test_a_bad_default_or_a_name_listed_twice_is_reported(void **state)
{
    (void)state;
    static const cfg_var_t table[] = {
        {.name = "A", .kind = CFG_INT, .default_value = "ten"},
        {.name = "B", .kind = CFG_STRING, .default_value = "x"},
        {.name = "B", .kind = CFG_INT, .default_value = "1"},
    };
    static const char *const env[] = {NULL};
    fake_env = env;
    cfg_t *c = NULL;
    err_t e;
    assert_int_equal(cfg_load_from(table, 3, fake_getenv, &c, &e), ERR_CONFIG);
    assert_string_equal(cfg_problems(c), "A: \"ten\" is not an integer\n"
                                         "B: is listed twice in the configuration table\n");
    cfg_free(c);
}

static void test_an_empty_table_loads(void **state)
{
    (void)state;
    cfg_t *c = NULL;
    assert_int_equal(cfg_load_from(NULL, 0, fake_getenv, &c, NULL), 0);
    assert_string_equal(cfg_problems(c), "");
    cfg_free(c);
    cfg_free(NULL);
    assert_string_equal(cfg_problems(NULL), "");
}

/* Runs fn in a child with stderr captured; returns the wait status and the captured text. */
static int in_child(void (*fn)(void), char *err, size_t n)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < n && (r = read(fds[0], err + got, n - got - 1)) > 0)
        got += (size_t)r;
    err[got] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void load_broken_environment(void)
{
    unsetenv("DATABASE_URL");
    setenv("AMQP_URL", "amqp://h", 1);
    setenv("HTTP_PORT", "80a", 1);
    unsetenv("BATCH");
    unsetenv("POLL_MS");
    unsetenv("VERBOSE");
    unsetenv("LOG_LEVEL");
    cfg_t *c = NULL;
    cfg_load_or_exit("tester", vars, N_VARS, &c);
}

static void test_load_or_exit_prints_every_problem_with_help_and_exits_78(void **state)
{
    (void)state;
    char err[2048];
    int status = in_child(load_broken_environment, err, sizeof(err));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 78);
    assert_string_equal(err, "tester: configuration error: 2 configuration problems\n"
                             "tester:   DATABASE_URL: required but not set\n"
                             "tester:   HTTP_PORT: \"80a\" is not a TCP port (1..65535)\n"
                             "tester:     (HTTP_PORT: health and API port)\n");
}

static void ask_for_an_unknown_name(void)
{
    static const char *const env[] = {BASE_ENV, NULL};
    fake_env = env;
    cfg_t *c = NULL;
    if (cfg_load_from(vars, N_VARS, fake_getenv, &c, NULL) == 0)
        (void)cfg_str(c, "NOT_IN_TABLE");
}

static void ask_a_string_for_a_number(void)
{
    static const char *const env[] = {BASE_ENV, NULL};
    fake_env = env;
    cfg_t *c = NULL;
    if (cfg_load_from(vars, N_VARS, fake_getenv, &c, NULL) == 0)
        (void)cfg_int(c, "NAME");
}

static void test_asking_for_a_name_or_kind_the_table_lacks_aborts(void **state)
{
    (void)state;
    char err[512];
    int status = in_child(ask_for_an_unknown_name, err, sizeof(err));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(err, "NOT_IN_TABLE is not in the configuration table"));
    status = in_child(ask_a_string_for_a_number, err, sizeof(err));
    assert_true(WIFSIGNALED(status));
    assert_non_null(strstr(err, "NAME is not a number"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_values_and_defaults_are_loaded),
        cmocka_unit_test(test_every_kind_accepts_its_valid_spellings),
        cmocka_unit_test(test_every_problem_is_reported_at_once),
        cmocka_unit_test(test_integers_are_plain_decimal_within_their_range),
        cmocka_unit_test(test_connection_settings_that_are_plainly_something_else_are_refused),
        cmocka_unit_test(test_secret_values_never_appear_in_problems),
        cmocka_unit_test(test_an_empty_variable_counts_as_unset),
        cmocka_unit_test(test_a_bad_default_or_a_name_listed_twice_is_reported),
        cmocka_unit_test(test_an_empty_table_loads),
        cmocka_unit_test(test_load_or_exit_prints_every_problem_with_help_and_exits_78),
        cmocka_unit_test(test_asking_for_a_name_or_kind_the_table_lacks_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
