/* mgmt_queue: is a queue fit to be a work queue (see mgmt_queue.h).
 *
 * A setting may come from the queue's own arguments (x-dead-letter-exchange, x-delivery-limit,
 * x-dead-letter-strategy, x-overflow, set once when the queue is declared) or from the policy
 * in effect (dead-letter-exchange, delivery-limit, dead-letter-strategy, overflow; the
 * management API shows the policy and operator policy merged as
 * `effective_policy_definition`). When both give one, the value the broker uses is decided as
 * RabbitMQ 3.10.8 (the version this project runs) does in rabbit_quorum_queue.erl
 * (ra_machine_config/1 and dead_letter_handler/2, read from the installed broker):
 *   - dead-letter-exchange, dead-letter-routing-key, dead-letter-strategy: the queue argument
 *     wins;
 *   - delivery-limit: the smaller of the two wins;
 *   - overflow: the policy wins.
 * Defaults when neither gives one: no dead-letter exchange, no delivery limit (3.10 redelivers
 * a failing message forever), strategy at-most-once, overflow drop-head. With overflow
 * drop-head RabbitMQ silently falls back from at-least-once to at-most-once dead-lettering
 * (it logs a warning), which is why overflow is checked too. A queue's type is an argument
 * only (x-queue-type; policies cannot change it) and shows as `type` in the API. */
#include "mgmt_queue.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef enum rule { ARG_WINS, POLICY_WINS, SMALLER_WINS } rule_t;

/* Where a setting's value came from. */
typedef struct found {
    const json_t *value; /* borrowed; NULL when neither the arguments nor the policy set it */
    int from_policy;
} found_t;

static const json_t *object_or_null(const json_t *v) { return json_is_object(v) ? v : NULL; }

static found_t lookup(const json_t *q, const char *key, rule_t rule)
{
    char arg_key[64];
    snprintf(arg_key, sizeof(arg_key), "x-%s", key);
    const json_t *args = object_or_null(json_object_get(q, "arguments"));
    const json_t *pol = object_or_null(json_object_get(q, "effective_policy_definition"));
    const json_t *a = args != NULL ? json_object_get(args, arg_key) : NULL;
    const json_t *p = pol != NULL ? json_object_get(pol, key) : NULL;
    found_t f = {NULL, 0};
    if (a != NULL && p != NULL) {
        int policy = rule == POLICY_WINS;
        if (rule == SMALLER_WINS) {
            /* A value that is not a number is the one to report, so it wins. */
            if (!json_is_integer(p))
                policy = 1;
            else if (!json_is_integer(a))
                policy = 0;
            else
                policy = json_integer_value(p) < json_integer_value(a);
        }
        f.value = policy ? p : a;
        f.from_policy = policy;
    } else if (a != NULL) {
        f.value = a;
    } else if (p != NULL) {
        f.value = p;
        f.from_policy = 1;
    }
    return f;
}

/* `policy "p"`, `operator policy "o"`, both, or "no policy". */
static void policies(const json_t *q, char *out, size_t n)
{
    const char *p = json_string_value(json_object_get(q, "policy"));
    const char *o = json_string_value(json_object_get(q, "operator_policy"));
    int has_p = p != NULL && p[0] != '\0';
    int has_o = o != NULL && o[0] != '\0';
    if (has_p && has_o)
        snprintf(out, n, "policy \"%.60s\" with operator policy \"%.60s\"", p, o);
    else if (has_p)
        snprintf(out, n, "policy \"%.60s\"", p);
    else if (has_o)
        snprintf(out, n, "operator policy \"%.60s\"", o);
    else
        snprintf(out, n, "no policy");
}

/* " (from policy \"p\")" or " (from argument x-key)". */
static void origin(const json_t *q, const char *key, const found_t *f, char *out, size_t n)
{
    if (f->from_policy) {
        char pol[160];
        policies(q, pol, sizeof(pol));
        snprintf(out, n, " (from %s)", pol);
    } else {
        snprintf(out, n, " (from argument x-%s)", key);
    }
}

/* The value as short text for a message: a string quoted, anything else as JSON. */
static void show(const json_t *v, char *out, size_t n)
{
    if (json_is_string(v)) {
        snprintf(out, n, "\"%.60s\"", json_string_value(v));
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(out, n, "%.60s", text != NULL ? text : "?");
    free(text);
}

static void add(mgmt_queue_problem_t *out, size_t *count, const char *setting, const char *fmt, ...)
    PETSTORE_PRINTF(4, 5);

static void add(mgmt_queue_problem_t *out, size_t *count, const char *setting, const char *fmt, ...)
{
    mgmt_queue_problem_t *p = &out[*count];
    p->setting = setting;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
    va_end(ap);
    (*count)++;
}

static void not_set(const json_t *q, const char *key, const char *consequence,
                    mgmt_queue_problem_t *out, size_t *count, const char *setting)
{
    char pol[160];
    policies(q, pol, sizeof(pol));
    add(out, count, setting, "not set (no x-%s argument, none in %s)%s", key, pol, consequence);
}

/* A string setting that must equal want. */
static void check_string(const json_t *q, const char *key, rule_t rule, const char *want,
                         const char *consequence, const char *why, mgmt_queue_problem_t *out,
                         size_t *count)
{
    found_t f = lookup(q, key, rule);
    if (f.value == NULL) {
        not_set(q, key, consequence, out, count, key);
        return;
    }
    const char *s = json_string_value(f.value);
    if (s != NULL && strcmp(s, want) == 0)
        return;
    char shown[80], from[200];
    show(f.value, shown, sizeof(shown));
    origin(q, key, &f, from, sizeof(from));
    add(out, count, key, "is %s%s, must be \"%s\"%s", shown, from, want, why);
}

size_t mgmt_queue_check(const json_t *queue, mgmt_queue_problem_t out[MGMT_QUEUE_MAX_PROBLEMS])
{
    size_t count = 0;
    const json_t *q = json_is_object(queue) ? queue : NULL;
    json_t *empty = NULL;
    if (q == NULL) {
        empty = json_object();
        q = empty;
    }

    /* The type: `type` in the API, else the x-queue-type argument, else classic. */
    const char *type = json_string_value(json_object_get(q, "type"));
    if (type == NULL) {
        const json_t *args = object_or_null(json_object_get(q, "arguments"));
        type = json_string_value(json_object_get(args, "x-queue-type"));
    }
    if (type == NULL || strcmp(type, "quorum") != 0)
        add(out, &count, "x-queue-type", "is \"%.40s\", must be \"quorum\"%s",
            type != NULL ? type : "classic",
            " (a queue's type is fixed when it is declared: it must be deleted and declared "
            "again)");

    found_t dlx = lookup(q, "dead-letter-exchange", ARG_WINS);
    if (dlx.value == NULL) {
        not_set(q, "dead-letter-exchange", ": dead letters would be dropped", out, &count,
                "dead-letter-exchange");
    } else if (!json_is_string(dlx.value)) {
        char shown[80], from[200];
        show(dlx.value, shown, sizeof(shown));
        origin(q, "dead-letter-exchange", &dlx, from, sizeof(from));
        add(out, &count, "dead-letter-exchange", "is %s%s, must be an exchange name", shown, from);
    }

    found_t limit = lookup(q, "delivery-limit", SMALLER_WINS);
    if (limit.value == NULL) {
        not_set(q, "delivery-limit", ": a message that keeps failing is redelivered forever", out,
                &count, "delivery-limit");
    } else if (!json_is_integer(limit.value) || json_integer_value(limit.value) < 0) {
        char shown[80], from[200];
        show(limit.value, shown, sizeof(shown));
        origin(q, "delivery-limit", &limit, from, sizeof(from));
        add(out, &count, "delivery-limit", "is %s%s, must be a number of deliveries (0 or more)",
            shown, from);
    }

    check_string(q, "dead-letter-strategy", ARG_WINS, "at-least-once",
                 ": the default at-most-once loses a dead letter the exchange does not take", "",
                 out, &count);
    check_string(q, "overflow", POLICY_WINS, "reject-publish",
                 ": the default drop-head turns at-least-once dead-lettering into at-most-once",
                 " (at-least-once dead-lettering needs it)", out, &count);
    /* RabbitMQ's own dead letters (the delivery limit) leave with this key, and the .dlq twin
     * of queue X is bound to the dead-letter exchange with key X. */
    const char *name = json_string_value(json_object_get(q, "name"));
    check_string(q, "dead-letter-routing-key", ARG_WINS, name ? name : "the queue's name",
                 ": RabbitMQ's own dead letters would keep their routing key and reach no .dlq",
                 " (the key the queue's .dlq is bound with)", out, &count);
    json_decref(empty);
    return count;
}

void mgmt_queue_problems_line(const mgmt_queue_problem_t *p, size_t count, char *out, size_t n)
{
    if (n == 0)
        return;
    out[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < count && used + 1 < n; i++) {
        int k =
            snprintf(out + used, n - used, "%s%s %s", i > 0 ? "; " : "", p[i].setting, p[i].detail);
        if (k < 0)
            break;
        used += (size_t)k < n - used ? (size_t)k : n - used - 1;
    }
}
