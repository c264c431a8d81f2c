/* walk: taking a dead-letter queue's messages one by one and giving back what was not settled.
 * See dlq.h for why this never loses a message and keeps the order of those not selected.
 *
 * Acknowledgements and quorum queues. basic.ack has no answer, and RabbitMQ 3.10's quorum queue
 * client (rabbit_fifo_client, inside the broker's channel) holds back the acks of a channel
 * that has 32 or more commands not yet applied by the queue, to send them once the queue
 * catches up; when the channel closes first they are forgotten, and the queue gives those
 * messages back with the rest (rabbitmq-server issue 10327). A run that acknowledges a burst of
 * messages and closes right away (purge, or a replay while the broker is busy) then reports
 * them removed while they come back to the .dlq a moment later. So every DLQ_ACK_SYNC_EVERY
 * acks the walk does one basic.get on the queue: it goes through the queue's log after the
 * acks sent before it, so its answer means they were applied, and the channel never gets near
 * the limit. Such a basic.get may take a message that arrived meanwhile: it is appended to the
 * walk like dlq_walk_more's (not selected; given back at close, after the others). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlq.h"
#include "log.h"

#define DLQ_ACK_SYNC_EVERY 16 /* well under the 32 commands a quorum queue channel holds */

static int grow(dlq_walk_t *w, err_t *e)
{
    if (w->n < w->cap)
        return 0;
    size_t cap = w->cap ? w->cap * 2 : 256;
    dlq_msg_t *msgs = realloc(w->msgs, cap * sizeof(*msgs));
    if (msgs == NULL)
        return err_set(e, ERR_NOMEM, "out of memory holding %zu messages", w->n);
    w->msgs = msgs;
    unsigned char *settled = realloc(w->settled, cap);
    if (settled == NULL)
        return err_set(e, ERR_NOMEM, "out of memory holding %zu messages", w->n);
    w->settled = settled;
    w->cap = cap;
    return 0;
}

/* Takes up to max more messages (0: until the queue has no ready message). */
static int take(dlq_walk_t *w, size_t max, size_t *added, err_t *e)
{
    *added = 0;
    while (max == 0 || *added < max) {
        if (grow(w, e) != 0)
            return -1;
        mq_delivery_t *d = NULL;
        int rc = mq_get(w->conn, w->queue, &d, NULL, e);
        if (rc == ERR_NOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        dlq_msg_t *m = &w->msgs[w->n];
        memset(m, 0, sizeof(*m));
        m->d = d;
        m->position = w->n;
        dlq_msg_parse(m, w->queue);
        w->settled[w->n] = 0;
        w->n++;
        (*added)++;
    }
    return 0;
}

int dlq_walk_open(const char *amqp_url, const char *ca_file, const char *queue, size_t max,
                  dlq_walk_t *w, err_t *e)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->queue, sizeof(w->queue), "%s", queue);
    mq_opts_t o = {.connection_name = "dlq walk", .heartbeat_s = 30, .ca_file = ca_file};
    int rc = mq_open(amqp_url, &o, &w->conn, e);
    if (rc != 0)
        return dlq_connect_failed(e);
    uint32_t depth = 0;
    rc = mq_check_queue(w->conn, queue, &depth, NULL, e);
    if (rc != 0)
        return rc;
    size_t cap = max > 0 && max < DLQ_WALK_MAX ? max : DLQ_WALK_MAX;
    /* Take until the queue has no ready message and says so twice: messages an earlier run (or
     * a consumer) gave back reach a quorum queue a moment after its connection closed, so one
     * empty basic.get, or the count of a passive declare, can come too early. What arrives
     * while the tool takes is part of the run; what arrives later is not. */
    for (int round = 0; round < 50; round++) {
        size_t added = 0;
        rc = take(w, cap - w->n, &added, e);
        if (rc != 0 || w->n >= cap)
            break;
        rc = mq_check_queue(w->conn, queue, &depth, NULL, e);
        if (rc != 0 || (depth == 0 && added == 0 && round > 0))
            break;
        if (depth == 0) {
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 20 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    if (rc == 0 && w->n >= DLQ_WALK_MAX && max == 0)
        fprintf(stderr,
                "dlq: %s holds more than %d messages; this run works on the first %d (run "
                "again for the rest)\n",
                queue, DLQ_WALK_MAX, DLQ_WALK_MAX);
    return rc;
}

int dlq_walk_more(dlq_walk_t *w, size_t *added, err_t *e) { return take(w, 1000, added, e); }

int dlq_walk_ack(dlq_walk_t *w, size_t i, err_t *e)
{
    if (w->settled[i])
        return 0;
    int rc = mq_ack(w->conn, w->msgs[i].d->delivery_tag, 0, e);
    if (rc != 0)
        return rc;
    w->settled[i] = 1;
    if (++w->unsynced < DLQ_ACK_SYNC_EVERY)
        return 0;
    /* The answer of a basic.get on the queue: every ack before it is applied (see above). */
    size_t added = 0;
    rc = take(w, 1, &added, e);
    if (rc == 0)
        w->unsynced = 0;
    return rc;
}

void dlq_walk_keepalive(dlq_walk_t *w)
{
    err_t e;
    if (w->conn != NULL)
        if (mq_keepalive(w->conn, &e) != 0)
            return; /* the next call reports the broken connection */
}

void dlq_walk_close(dlq_walk_t *w)
{
    if (w == NULL)
        return;
    err_t e;
    /* The last acks applied before the channel goes (see above); what it takes goes back too. */
    size_t added = 0;
    if (w->unsynced > 0 && mq_ok(w->conn) && take(w, 1, &added, &e) == 0)
        w->unsynced = 0;
    /* One requeue per message, in the order taken: they go back to the head of the queue in
     * that order, ahead of anything that arrived meanwhile. */
    /* When the connection is gone the broker returns the rest itself. */
    for (size_t i = 0; i < w->n; i++) {
        if (!w->settled[i] && mq_ok(w->conn) &&
            mq_reject(w->conn, w->msgs[i].d->delivery_tag, 1, &e) != 0)
            log_warn(NULL, "dlq.requeue_failed",
                     json_pack("{s:s,s:s}", "queue", w->queue, "error", e.msg));
        mq_delivery_free(w->msgs[i].d);
    }
    mq_close(w->conn); /* anything not requeued above returns when the channel closes */
    free(w->msgs);
    free(w->settled);
    memset(w, 0, sizeof(*w));
}
