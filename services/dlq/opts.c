/* opts: the dead-letter tool's command line, times and durations. Pure apart from reading a
 * --manifest file. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "duration.h"

static char *keep(dlq_args_t *a, char *s)
{
    if (s != NULL && a->n_owned < DLQ_MAX_IDS)
        a->owned[a->n_owned++] = s;
    return s;
}

static int add_id(dlq_args_t *a, const char *id, err_t *e)
{
    if (a->sel.n_ids >= DLQ_MAX_IDS)
        return err_set(e, ERR_INVALID, "too many ids (at most %d); freeze a selection with plan",
                       DLQ_MAX_IDS);
    if (a->sel.ids == NULL) {
        a->sel.ids = calloc(DLQ_MAX_IDS, sizeof(*a->sel.ids));
        if (a->sel.ids == NULL)
            return err_set(e, ERR_NOMEM, "out of memory");
    }
    a->sel.ids[a->sel.n_ids++] = id;
    return 0;
}

/* --id a,b,c: each part an id. */
static int add_ids(dlq_args_t *a, const char *list, err_t *e)
{
    char *copy = keep(a, strdup(list));
    if (copy == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save))
        if (add_id(a, t, e) != 0)
            return e->code;
    return 0;
}

static int load_manifest(dlq_args_t *a, const char *file, err_t *e)
{
    json_error_t je;
    json_t *m = json_load_file(file, 0, &je);
    if (m == NULL)
        return err_set(e, ERR_INVALID, "--manifest %s: %s (line %d); write one with dlq plan -o",
                       file, je.text, je.line);
    json_t *msgs = json_object_get(m, "messages");
    const char *queue = json_string_value(json_object_get(m, "queue"));
    int rc = 0;
    if (!json_is_array(msgs) || queue == NULL) {
        rc = err_set(e, ERR_INVALID, "--manifest %s: not a dlq manifest (no queue or messages)",
                     file);
    } else {
        a->sel.manifest = keep(a, strdup(queue));
        size_t i;
        json_t *it;
        json_array_foreach(msgs, i, it)
        {
            const char *id = json_string_value(json_object_get(it, "id"));
            if (id == NULL) {
                rc = err_set(e, ERR_INVALID, "--manifest %s: message %zu has no id", file, i);
                break;
            }
            char *copy = keep(a, strdup(id));
            if (copy == NULL || add_id(a, copy, e) != 0) {
                rc = copy == NULL ? err_set(e, ERR_NOMEM, "out of memory") : -1;
                break;
            }
        }
        if (rc == 0 && a->sel.n_ids == 0)
            rc = err_set(e, ERR_INVALID, "--manifest %s selects no message", file);
    }
    json_decref(m);
    return rc;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

int dlq_parse_time(const char *s, time_t now, time_t *out, err_t *e)
{
    int64_t ms;
    if (dlq_parse_time_ms(s, (int64_t)now * 1000, &ms, e) != 0)
        return e->code;
    *out = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    return 0;
}

int dlq_parse_time_ms(const char *s, int64_t now_ms, int64_t *out, err_t *e)
{
    long long ms;
    err_t ignore;
    if (s != NULL && duration_parse_ms(s, &ms, &ignore) == 0) {
        *out = now_ms - ms;
        return 0;
    }
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return err_set(e, ERR_INVALID,
                       "\"%s\" is not a time: write RFC 3339 (2026-12-05T01:00:00Z) or a "
                       "duration ago (30m, 2h, 1d)",
                       s ? s : "");
    const char *p = s + n;
    long millis = 0;
    if (*p == '.') { /* a fraction: its first three digits, as milliseconds */
        p++;
        int digits = 0;
        for (; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                millis = millis * 10 + (*p - '0');
        if (digits == 0)
            return err_set(e, ERR_INVALID, "\"%s\": no digits after the decimal point", s);
        for (; digits < 3; digits++)
            millis *= 10;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
            return err_set(e, ERR_INVALID, "\"%s\": bad UTC offset (write Z or +hh:mm)", s);
        offset = (long)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return err_set(e, ERR_INVALID, "\"%s\": the time needs a zone (Z or +hh:mm)", s);
    }
    if (*p != '\0')
        return err_set(e, ERR_INVALID, "\"%s\": unexpected text after the time", s);
    long long t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400LL + h * 3600LL + mi * 60LL +
                  sec - offset;
    *out = (int64_t)t * 1000 + millis;
    return 0;
}

void dlq_format_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int number(const char *flag, const char *v, double min, double *out, err_t *e)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || d < min || d > 1e9)
        return err_set(e, ERR_INVALID, "%s wants a number >= %g, not \"%s\"", flag, min,
                       v ? v : "");
    *out = d;
    return 0;
}

int dlq_args_parse(int argc, char **argv, int first, dlq_args_t *a, err_t *e)
{
    time_t now = time(NULL);
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        char flag[32] = "";
        if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0') {
            const char *eq = strchr(arg, '=');
            size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
            if (len >= sizeof(flag))
                return err_set(e, ERR_INVALID, "unknown option %s", arg);
            memcpy(flag, arg, len);
            flag[len] = '\0';
            if (eq)
                val = eq + 1;
        } else if (strcmp(arg, "-o") == 0) {
            snprintf(flag, sizeof(flag), "-o");
        } else {
            if (a->n_pos >= 3)
                return err_set(e, ERR_INVALID, "unexpected argument \"%s\"", arg);
            a->pos[a->n_pos++] = arg;
            continue;
        }
        int boolean =
            strcmp(flag, "--all") == 0 || strcmp(flag, "--yes") == 0 || strcmp(flag, "--json") == 0;
        if (boolean) {
            if (val != NULL)
                return err_set(e, ERR_INVALID, "%s takes no value", flag);
        } else if (val == NULL) {
            if (i + 1 >= argc)
                return err_set(e, ERR_INVALID, "%s needs a value", flag);
            val = argv[++i];
        }
        double d;
        if (strcmp(flag, "--all") == 0) {
            a->sel.all = 1;
        } else if (strcmp(flag, "--yes") == 0) {
            a->yes = 1;
        } else if (strcmp(flag, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(flag, "--id") == 0) {
            if (add_ids(a, val, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--group") == 0) {
            a->sel.group = val;
        } else if (strcmp(flag, "--type") == 0) {
            a->sel.type = val;
        } else if (strcmp(flag, "--since") == 0) {
            if (dlq_parse_time(val, now, &a->sel.since, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--until") == 0) {
            if (dlq_parse_time(val, now, &a->sel.until, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--manifest") == 0) {
            if (a->sel.manifest != NULL)
                return err_set(e, ERR_INVALID, "one --manifest at a time");
            if (load_manifest(a, val, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--older-than") == 0) {
            if (duration_parse_ms(val, &a->sel.older_than_ms, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--to") == 0) {
            a->to = val;
        } else if (strcmp(flag, "-o") == 0 || strcmp(flag, "--output") == 0) {
            a->out = val;
        } else if (strcmp(flag, "--status") == 0) {
            if (strcmp(val, "open") != 0 && strcmp(val, "investigating") != 0 &&
                strcmp(val, "resolved") != 0)
                return err_set(e, ERR_INVALID,
                               "--status is open, investigating or resolved, not \"%s\"", val);
            a->status = val;
        } else if (strcmp(flag, "--rate") == 0) {
            if (number(flag, val, 0.001, &a->rate, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--canary") == 0) {
            if (number(flag, val, 1, &d, e) != 0)
                return e->code;
            a->canary = (long)d;
        } else if (strcmp(flag, "--canary-wait") == 0) {
            if (duration_parse_ms(val, &a->canary_wait_ms, e) != 0)
                return e->code;
        } else if (strcmp(flag, "--limit") == 0) {
            if (number(flag, val, 1, &d, e) != 0)
                return e->code;
            a->limit = (long)d;
        } else {
            return err_set(e, ERR_INVALID, "unknown option %s (dlq help lists them)", flag);
        }
    }
    if (a->sel.since && a->sel.until && a->sel.since > a->sel.until)
        return err_set(e, ERR_INVALID, "--since is after --until: nothing could match");
    return 0;
}

void dlq_args_free(dlq_args_t *a)
{
    for (size_t i = 0; i < a->n_owned; i++)
        free(a->owned[i]);
    free(a->sel.ids);
    memset(a, 0, sizeof(*a));
}
