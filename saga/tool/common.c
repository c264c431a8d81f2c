/* common: what every verb of the saga tool uses: failures and usage errors with what to do,
 * JSON output, the clock and pacing (the signals that stop a write verb are interrupt.h's). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sagatool.h"

int sagatool_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "petstore-saga: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr,
            "\n  (petstore-saga help lists the verbs; petstore-saga VERB --help says more)\n");
    va_end(ap);
    return SAGATOOL_EXIT_USAGE;
}

int sagatool_fail(const char *doing, const err_t *e)
{
    int connect = e->code == ERR_RETRY || e->code == ERR_TIMEOUT;
    fprintf(stderr, "petstore-saga: %s: %s\n", doing, e->msg);
    if (connect)
        fprintf(stderr,
                "  check that PostgreSQL runs (./petstore status) and that SAGA_DATABASE_URL "
                "points at the saga database (eval \"$(./petstore env)\", or run "
                "./petstore saga ...); nothing was changed\n");
    else if (e->code == ERR_NOTFOUND)
        fprintf(stderr, "  check the order id: petstore-saga list shows the sagas\n");
    else
        fprintf(stderr, "  nothing was changed by this step; look at the saga with petstore-saga "
                        "show ORDER and try again\n");
    return connect ? SAGATOOL_EXIT_CONNECT : SAGATOOL_EXIT_PARTIAL;
}

void sagatool_print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

int64_t sagatool_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sagatool_sleep_ms(int64_t ms)
{
    int64_t until = sagatool_now_ms() + ms;
    for (;;) {
        int64_t left = until - sagatool_now_ms();
        if (left <= 0 || interrupt_requested)
            return;
        if (left > 100)
            left = 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}
