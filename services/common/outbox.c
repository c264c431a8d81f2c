/* outbox: see outbox.h. One statement inserts the row; the table's triggers (migration 003)
 * take the order's lock before the id is drawn and queue the NOTIFY, which is delivered at
 * commit, once per transaction. Enqueueing costs one round trip. */
#include "outbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const db_stmt_t enqueue_stmt = {
    .name = "outbox_enqueue",
    .sql = "INSERT INTO outbox (partition, exchange, routing_key, message_id, type,"
           " correlation_id, causation_id, traceparent, app_id, headers, body)"
           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)",
    .nparams = 11,
    .secret = DB_SECRET(11), /* the body: order.placed carries the sealed card */
};

int outbox_partition(const char *key)
{
    uint32_t h = 2166136261u; /* FNV-1a, 32 bits: offset basis and prime */
    if (key == NULL)
        return 0;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return (int)(h % OUTBOX_PARTITIONS);
}

int outbox_enqueue(db_conn_t *db, const outbox_msg_t *m, err_t *e)
{
    char partition[8];
    char *headers = NULL;
    char *body = NULL;
    int rc;
    if (m->exchange == NULL || m->routing_key == NULL || m->message_id == NULL ||
        m->message_id[0] == '\0' || (m->body == NULL && m->body_len > 0))
        return err_set(e, ERR_INVALID, "outbox message without exchange, routing key or id");
    if (m->headers != NULL && !json_is_object(m->headers))
        return err_set(e, ERR_INVALID, "outbox headers must be a JSON object");
    if (m->body != NULL && memchr(m->body, '\0', m->body_len) != NULL)
        return err_set(e, ERR_INVALID, "outbox body holds a NUL byte");
    const char *key =
        m->correlation_id != NULL && m->correlation_id[0] ? m->correlation_id : m->message_id;
    snprintf(partition, sizeof(partition), "%d", outbox_partition(key));
    headers = m->headers != NULL ? json_dumps(m->headers, JSON_COMPACT) : strdup("{}");
    body = malloc(m->body_len + 1);
    if (headers == NULL || body == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory writing to the outbox");
        goto out;
    }
    /* Text parameters are NUL-terminated; the caller's body need not be. */
    if (m->body_len > 0)
        memcpy(body, m->body, m->body_len);
    body[m->body_len] = '\0';
    const char *params[] = {
        partition,       m->exchange,    m->routing_key, m->message_id, m->type, m->correlation_id,
        m->causation_id, m->traceparent, m->app_id,      headers,       body};
    rc = db_exec(db, &enqueue_stmt, params, NULL, e);
out:
    free(headers);
    free(body);
    return rc;
}
