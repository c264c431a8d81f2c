/* common: what every verb uses: usage and failure messages with what to do, queue names, JSON
 * output, and the list of dead-letter queues from the management API. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "mgmt.h"
#include "mq_internal.h"

int dlq_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dlq: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  (dlq help lists the verbs and their arguments)\n");
    va_end(ap);
    return DLQ_EXIT_USAGE;
}

int dlq_fail(const char *doing, const err_t *e)
{
    int connect = e->code == ERR_RETRY || e->code == ERR_TIMEOUT;
    fprintf(stderr, "dlq: %s: %s\n", doing, e->msg);
    if (connect)
        fprintf(stderr, "  check that RabbitMQ and PostgreSQL run (./petstore status) and that "
                        "DLQ_AMQP_URL, DLQ_DATABASE_URL and RABBITMQ_MGMT_URL point at them "
                        "(eval \"$(./petstore env)\"), and TLS_CA_FILE at their CA when they "
                        "speak TLS; nothing was changed\n");
    else if (e->code == ERR_CONFIG)
        fprintf(stderr, "  check the queue name (dlq list) and the dlq user's permissions in "
                        "broker-config/definitions.json\n");
    return connect ? DLQ_EXIT_CONNECT : DLQ_EXIT_PARTIAL;
}

int dlq_connect_failed(err_t *e)
{
    e->code = ERR_RETRY;
    return e->code;
}

void dlq_queue_name(const char *arg, char *out, size_t n)
{
    size_t len = strlen(arg);
    if (len > 4 && strcmp(arg + len - 4, ".dlq") == 0)
        snprintf(out, n, "%s", arg);
    else
        snprintf(out, n, "%s.dlq", arg);
}

void dlq_print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

int dlq_list_queues(dlq_ctx_t *c, json_t **out, err_t *e)
{
    mq__url_t u;
    if (mq__url_parse(c->amqp_url, &u, e) != 0)
        return -1;
    char vhost[512], path[700];
    int rc = mgmt_path_segment(u.vhost ? u.vhost : "/", vhost, sizeof(vhost), e);
    if (rc == 0) {
        snprintf(path, sizeof(path), "/api/queues/%s?columns=name,messages", vhost);
        json_t *all = NULL;
        rc = mgmt_get_json(c->mgmt_url, c->ca_file, u.user ? u.user : "",
                           u.password ? u.password : "", path, 10000, &all, e);
        if (rc == ERR_CONFIG || rc == ERR_TIMEOUT)
            rc = dlq_connect_failed(e); /* bad credentials, no management tag, or no answer */
        if (rc == 0) {
            json_t *list = json_array();
            size_t i;
            json_t *q;
            json_array_foreach(all, i, q)
            {
                const char *name = json_string_value(json_object_get(q, "name"));
                size_t len = name ? strlen(name) : 0;
                if (len > 4 && strcmp(name + len - 4, ".dlq") == 0)
                    json_array_append(list, q);
            }
            json_decref(all);
            *out = list;
        }
    }
    mq__url_free(&u);
    return rc;
}
