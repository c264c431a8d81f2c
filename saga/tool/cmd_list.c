/* petstore-saga list [--state S] [--stuck-for DURATION] [--needs-operator] [--limit N]
 *
 * The sagas that are not finished (or those in --state S), most stuck first: each one's status,
 * reason, version, how long it has been in its status, what it waits for and until when (its
 * timer's deadline), its attempts, and its timer's failures when a timer was set aside or
 * parked. --needs-operator: parked in NEEDS_OPERATOR, or with a parked timer. Changes nothing. */
#include <stdio.h>
#include <string.h>

#include "sagatool.h"

/* Adds "waiting_for" to each saga of list. */
static void add_waits(json_t *list)
{
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        saga_state_t st = {SAGA_PENDING, SAGA_REASON_NONE, 0, 0};
        if (saga_status_parse(json_string_value(json_object_get(s, "status")), &st.status) != 0)
            continue;
        st.pending = (unsigned)json_integer_value(json_object_get(s, "pending"));
        char waiting[128];
        sagatool_waiting_for(&st, waiting, sizeof(waiting));
        json_object_set_new(s, "waiting_for", json_string(waiting));
    }
}

int sagatool_cmd_list(sagatool_ctx_t *c, sagatool_args_t *a)
{
    err_t e;
    err_clear(&e);
    sagatool_filter_t f = {
        .state = a->has_state ? saga_status_name(a->state) : NULL,
        .stuck_for_ms = a->stuck_for_ms,
        .needs_operator = a->needs_operator,
        .limit = a->limit,
    };
    json_t *list = NULL;
    if (sagatool_query_list(c, &f, &list, &e) != 0)
        return sagatool_fail("listing the sagas", &e);
    add_waits(list);
    if (a->json) {
        sagatool_print_json(list);
        json_decref(list);
        return SAGATOOL_EXIT_DONE;
    }
    printf("%-36s  %-14s  %-17s  %4s  %8s  %-40s  %-27s  %3s  %s\n", "order", "status", "reason",
           "ver", "in state", "waiting for", "until", "att", "timer");
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        char age[32], timer[160] = "-";
        sagatool_format_duration(json_integer_value(json_object_get(s, "age_ms")), age,
                                 sizeof(age));
        const char *reason = json_string_value(json_object_get(s, "reason"));
        const char *deadline = json_string_value(json_object_get(s, "deadline"));
        const char *parked = json_string_value(json_object_get(s, "timer_parked_at"));
        long long failures = json_integer_value(json_object_get(s, "timer_failures"));
        if (parked)
            snprintf(timer, sizeof(timer), "PARKED since %s after %lld failures", parked, failures);
        else if (failures > 0)
            snprintf(timer, sizeof(timer), "%lld failures", failures);
        printf("%-36s  %-14s  %-17s  %4lld  %8s  %-40s  %-27s  %3lld  %s\n",
               json_string_value(json_object_get(s, "order_id")),
               json_string_value(json_object_get(s, "status")), reason ? reason : "-",
               (long long)json_integer_value(json_object_get(s, "version")), age,
               json_string_value(json_object_get(s, "waiting_for")), deadline ? deadline : "-",
               (long long)json_integer_value(json_object_get(s, "attempts")), timer);
    }
    if (json_array_size(list) == 0)
        printf("(no saga selected)\n");
    json_decref(list);
    return SAGATOOL_EXIT_DONE;
}
