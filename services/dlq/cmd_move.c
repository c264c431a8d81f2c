/* dlq move QUEUE --to QUEUE SEL
 *
 * Moves the selected messages to another queue (through the default exchange, mandatory, with
 * confirms; each original leaves only after its copy's confirm). A queue that does not exist
 * leaves everything in place. The copy is published by the dlq user, so it records whether the
 * tool could prove the original sender (x-petstore-sender-verified, x-petstore-sender) for a
 * later replay from the new queue; RabbitMQ's own dead letters get the x-petstore-* failure
 * headers their x-death table implies, so they keep their group. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dlq.h"
#include "mq_publish.h"
#include "msg.h"

typedef struct move {
    const char *to;
    char at[32];
    const char *login;
    const char *from;
} move_t;

static int build(void *arg, const dlq_run_t *r, const dlq_msg_t *m, mq_message_t *out,
                 json_t **headers, char *why, size_t n)
{
    (void)r;
    (void)why;
    (void)n;
    const move_t *mv = arg;
    json_t *h = dlq_republish_headers(m->d);
    if (json_object_get(h, "x-petstore-failure-class") == NULL) {
        char dead[32];
        dlq_format_time(m->dead_at, dead, sizeof(dead));
        json_object_set_new(h, "x-petstore-failure-class", json_string(m->klass));
        json_object_set_new(h, "x-petstore-error-code", json_string(m->code));
        json_object_set_new(h, "x-petstore-error", json_string(m->error));
        json_object_set_new(h, "x-petstore-handler", json_string(m->handler));
        json_object_set_new(h, "x-petstore-original-queue", json_string(m->original_queue));
        json_object_set_new(h, "x-petstore-original-exchange", json_string(m->exchange));
        json_object_set_new(h, "x-petstore-original-routing-key", json_string(m->routing_key));
        json_object_set_new(h, "x-petstore-failed-at", json_string(dead));
    }
    json_object_set_new(h, MSG_SENDER_HEADER, json_string(m->sender));
    json_object_set_new(h, "x-petstore-sender-verified", json_boolean(m->refusal[0] == '\0'));
    json_object_set_new(h, "x-petstore-moved-from", json_string(mv->from));
    json_object_set_new(h, "x-petstore-moved-at", json_string(mv->at));
    *out = dlq_copy(m, "", mv->to, mv->login, h);
    *headers = h;
    return 0;
}

int dlq_cmd_move(dlq_ctx_t *c, dlq_args_t *a)
{
    a->verb = "move";
    if (a->to == NULL || a->to[0] == '\0' || strchr(a->to, ':') != NULL)
        return dlq_usage("move: say where with --to QUEUE (a queue name)");
    dlq_run_t r;
    int status = dlq_run_open(c, a, 1, &r);
    if (status != 0) {
        dlq_run_close(&r);
        return status;
    }
    if (strcmp(a->to, r.queue) == 0) {
        dlq_run_close(&r);
        return dlq_usage("move: --to names the queue the messages are in");
    }
    move_t mv = {.to = a->to, .from = r.queue};
    dlq_format_time(time(NULL), mv.at, sizeof(mv.at));
    int64_t started = dlq_now_ms();
    dlq_history_started(c, a, &r);
    dlq_tally_t t = {.selected = r.n_selected};
    err_t e;
    err_clear(&e);
    mq_conn_t *pub = dlq_publisher(c, "dlq move", &status);
    if (pub == NULL) {
        dlq_run_close(&r);
        return status;
    }
    mv.login = mq_login(pub);
    if (mq_check_queue(pub, a->to, NULL, NULL, &e) != 0) {
        snprintf(t.detail, sizeof(t.detail), "--to %s: %s; nothing moved", a->to, e.msg);
    } else {
        dlq_progress_t p;
        dlq_progress_start(&p, "move", r.n_selected);
        (void)dlq_send(c, &r, pub, 0, r.n_selected, a->rate, started, 0, build, &mv, &t, &p, &e);
        dlq_progress_end(&p);
    }
    mq_close(pub);
    status = dlq_finish(c, a, &r, "move", &t, started);
    dlq_run_close(&r);
    return status;
}
