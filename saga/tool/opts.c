/* opts: the saga tool's command line and durations. Pure: no I/O, no clock.
 *
 * Which options a verb takes is a table (verb_opts), so a misplaced option ("show --reason")
 * is a usage error naming the verb rather than silently ignored. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sagatool.h"

#include "duration.h"
#include "uuid.h"

enum {
    O_STATE = 1 << 0,
    O_STUCK = 1 << 1,
    O_NEEDS = 1 << 2,
    O_LIMIT = 1 << 3,
    O_REASON = 1 << 4,
    O_DRY = 1 << 5,
    O_YES = 1 << 6,
    O_RATE = 1 << 7,
    O_WAIT = 1 << 8,
    O_ORDERS = 1 << 9, /* any number of ORDER ids */
    O_ONE = 1 << 10,   /* exactly one ORDER */
};

#define SELECTORS (O_STATE | O_STUCK | O_NEEDS | O_LIMIT)
#define WRITES (SELECTORS | O_REASON | O_DRY | O_YES | O_RATE | O_WAIT | O_ORDERS)

static const struct {
    const char *verb;
    unsigned opts;
} verb_opts[] = {
    {"list", SELECTORS},    {"show", O_ONE},    {"retry", WRITES},
    {"compensate", WRITES}, {"resume", WRITES},
};

static int opts_of(const char *verb, unsigned *out)
{
    for (size_t i = 0; i < sizeof(verb_opts) / sizeof(verb_opts[0]); i++)
        if (strcmp(verb_opts[i].verb, verb) == 0) {
            *out = verb_opts[i].opts;
            return 0;
        }
    return -1;
}

int sagatool_verb_writes(const char *verb)
{
    unsigned o;
    return opts_of(verb, &o) == 0 && (o & O_REASON) != 0;
}

void sagatool_format_duration(long long ms, char *out, size_t n)
{
    if (ms < 0)
        ms = 0;
    if (ms < 1000)
        snprintf(out, n, "%lld ms", ms);
    else if (ms < 120000)
        snprintf(out, n, "%lld s", ms / 1000);
    else if (ms < 7200000)
        snprintf(out, n, "%lld min", ms / 60000);
    else if (ms < 172800000)
        snprintf(out, n, "%lld h", ms / 3600000);
    else
        snprintf(out, n, "%lld d", ms / 86400000);
}

static int number(const char *flag, const char *v, double min, double max, double *out, err_t *e)
{
    char *end = NULL;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || !(d >= min) || d > max)
        return err_set(e, ERR_INVALID, "%s wants a number from %g to %g, not \"%s\"", flag, min,
                       max, v ? v : "");
    *out = d;
    return 0;
}

/* Which O_* bit a flag is, or 0 for an unknown flag. */
static unsigned flag_bit(const char *flag)
{
    static const struct {
        const char *name;
        unsigned bit;
    } flags[] = {
        {"--state", O_STATE}, {"--stuck-for", O_STUCK}, {"--needs-operator", O_NEEDS},
        {"--limit", O_LIMIT}, {"--reason", O_REASON},   {"--dry-run", O_DRY},
        {"--yes", O_YES},     {"--rate", O_RATE},       {"--wait", O_WAIT},
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strcmp(flags[i].name, flag) == 0)
            return flags[i].bit;
    return 0;
}

static int set_option(sagatool_args_t *a, unsigned bit, const char *flag, const char *val, err_t *e)
{
    double d = 0;
    switch (bit) {
    case O_STATE:
        if (saga_status_parse(val, &a->state) != 0)
            return err_set(e, ERR_INVALID,
                           "--state \"%s\" is not a saga status (PENDING, RESERVING, PAYING, "
                           "CONFIRMING, COMPLETED, COMPENSATING, CANCELLED, NEEDS_OPERATOR)",
                           val);
        a->has_state = 1;
        return 0;
    case O_STUCK:
        return duration_parse_ms(val, &a->stuck_for_ms, e);
    case O_NEEDS:
        a->needs_operator = 1;
        return 0;
    case O_LIMIT:
        if (number(flag, val, 1, 1e6, &d, e) != 0)
            return e->code;
        a->limit = (long)d;
        return 0;
    case O_REASON:
        if (val[0] == '\0')
            return err_set(e, ERR_INVALID, "--reason is empty: say why you act (it is audited)");
        a->reason = val;
        return 0;
    case O_DRY:
        a->dry_run = 1;
        return 0;
    case O_YES:
        a->yes = 1;
        return 0;
    case O_RATE:
        return number(flag, val, 0.001, 1e6, &a->rate, e);
    case O_WAIT:
        if (number(flag, val, 0, 3600, &d, e) != 0)
            return e->code;
        a->wait_s = (int)d;
        return 0;
    default:
        return err_set(e, ERR_INTERNAL, "option %s has no setter", flag);
    }
}

int sagatool_args_parse(const char *verb, int argc, char **argv, int first, sagatool_args_t *a,
                        err_t *e)
{
    memset(a, 0, sizeof(*a));
    a->verb = verb;
    a->stuck_for_ms = -1;
    a->wait_s = SAGATOOL_DEFAULT_WAIT_S;
    unsigned allowed;
    if (opts_of(verb, &allowed) != 0)
        return err_set(e, ERR_INVALID, "unknown verb \"%s\"", verb);
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0) {
            a->help = 1;
            return 0;
        }
        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if ((allowed & (O_ORDERS | O_ONE)) == 0)
                return err_set(e, ERR_INVALID, "%s takes no ORDER (\"%s\")", verb, arg);
            if (a->n_orders >= SAGATOOL_MAX_ORDERS)
                return err_set(e, ERR_INVALID, "too many orders (at most %d at once)",
                               SAGATOOL_MAX_ORDERS);
            if (!uuid_valid(arg))
                return err_set(e, ERR_INVALID,
                               "\"%s\" is not an order id (a lower-case uuid; petstore-saga list "
                               "shows them)",
                               arg);
            a->orders[a->n_orders++] = arg;
            continue;
        }
        char flag[32];
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof(flag))
            return err_set(e, ERR_INVALID, "unknown option %s (petstore-saga %s --help)", arg,
                           verb);
        memcpy(flag, arg, len);
        flag[len] = '\0';
        const char *val = eq ? eq + 1 : NULL;
        unsigned bit = flag_bit(flag);
        if (bit == 0)
            return err_set(e, ERR_INVALID, "unknown option %s (petstore-saga %s --help)", flag,
                           verb);
        if ((allowed & bit) == 0)
            return err_set(e, ERR_INVALID, "%s does not take %s (petstore-saga %s --help)", verb,
                           flag, verb);
        int boolean = bit == O_NEEDS || bit == O_DRY || bit == O_YES;
        if (boolean && val != NULL)
            return err_set(e, ERR_INVALID, "%s takes no value", flag);
        if (!boolean && val == NULL) {
            if (i + 1 >= argc)
                return err_set(e, ERR_INVALID, "%s needs a value", flag);
            val = argv[++i];
        }
        if (set_option(a, bit, flag, val, e) != 0)
            return e->code;
    }
    int selectors = a->has_state || a->stuck_for_ms >= 0 || a->needs_operator;
    if ((allowed & O_ONE) && a->n_orders != 1)
        return err_set(e, ERR_INVALID, "%s takes exactly one ORDER", verb);
    if (allowed & O_REASON) {
        if (a->reason == NULL)
            return err_set(e, ERR_INVALID,
                           "%s needs --reason TEXT: say why you act (it goes in the audit)", verb);
        if (a->n_orders == 0 && !selectors)
            return err_set(e, ERR_INVALID,
                           "%s needs ORDER ids or a selection (--state S, --stuck-for D, "
                           "--needs-operator)",
                           verb);
        if (a->n_orders > 0 && (selectors || a->limit > 0))
            return err_set(e, ERR_INVALID,
                           "give ORDER ids or selectors, not both (petstore-saga list shows "
                           "what the selectors select)");
    }
    return 0;
}
