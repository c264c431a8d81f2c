/* outbox: see outbox.h. One statement inserts the row; the table's triggers (migration 003)
 * take the order's lock before the id is drawn and queue the NOTIFY, which is delivered at
 * commit, once per transaction. Enqueueing costs one round trip. */
#include "outbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Several rows in one statement, inserted in the order given (so their ids follow it); the
 * rows travel as one JSON array, the bodies as JSON strings that come back byte for byte. */
static const db_stmt_t enqueue_many_stmt = {
    .name = "outbox_enqueue_many",
    .sql = "INSERT INTO outbox (partition, exchange, routing_key, message_id, type,"
           " correlation_id, causation_id, traceparent, app_id, headers, body)"
           " SELECT r.partition, r.exchange, r.routing_key, r.message_id, r.type,"
           "        r.correlation_id, r.causation_id, r.traceparent, r.app_id,"
           "        coalesce(r.headers, '{}'), r.body"
           " FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (partition smallint, exchange text,"
           "       routing_key text, message_id uuid, type text, correlation_id text,"
           "       causation_id text, traceparent text, app_id text, headers jsonb, body text))"
           "      WITH ORDINALITY AS r(partition, exchange, routing_key, message_id, type,"
           "       correlation_id, causation_id, traceparent, app_id, headers, body, ord)"
           " ORDER BY r.ord",
    .nparams = 1,
    .secret = DB_SECRET(1), /* the bodies: order.placed carries the sealed card */
};

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

/* What is refused before the database. */
static int check_msg(const outbox_msg_t *m, err_t *e)
{
    if (m->exchange == NULL || m->routing_key == NULL || m->message_id == NULL ||
        m->message_id[0] == '\0' || (m->body == NULL && m->body_len > 0))
        return err_set(e, ERR_INVALID, "outbox message without exchange, routing key or id");
    if (m->headers != NULL && !json_is_object(m->headers))
        return err_set(e, ERR_INVALID, "outbox headers must be a JSON object");
    if (m->body != NULL && memchr(m->body, '\0', m->body_len) != NULL)
        return err_set(e, ERR_INVALID, "outbox body holds a NUL byte");
    return 0;
}

static int partition_of(const outbox_msg_t *m)
{
    return outbox_partition(m->correlation_id != NULL && m->correlation_id[0] ? m->correlation_id
                                                                              : m->message_id);
}

int outbox_enqueue(db_conn_t *db, const outbox_msg_t *m, err_t *e)
{
    char partition[8];
    char *headers = NULL;
    char *body = NULL;
    int rc = check_msg(m, e);
    if (rc != 0)
        return rc;
    snprintf(partition, sizeof(partition), "%d", partition_of(m));
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

static json_t *str_or_null(const char *s) { return s != NULL ? json_string(s) : json_null(); }

int outbox_enqueue_many(db_conn_t *db, const outbox_msg_t *msgs, size_t n, err_t *e)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return outbox_enqueue(db, &msgs[0], e);
    for (size_t i = 0; i < n; i++) {
        int rc = check_msg(&msgs[i], e);
        if (rc != 0)
            return rc;
    }
    json_t *rows = json_array();
    for (size_t i = 0; rows != NULL && i < n; i++) {
        const outbox_msg_t *m = &msgs[i];
        json_t *body = json_stringn(m->body != NULL ? m->body : "", m->body_len);
        if (body == NULL) {
            json_decref(rows);
            return err_set(e, ERR_INVALID, "outbox body is not UTF-8");
        }
        json_t *row =
            json_pack("{s:i,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:O?,s:o}", "partition",
                      partition_of(m), "exchange", m->exchange, "routing_key", m->routing_key,
                      "message_id", m->message_id, "type", str_or_null(m->type), "correlation_id",
                      str_or_null(m->correlation_id), "causation_id", str_or_null(m->causation_id),
                      "traceparent", str_or_null(m->traceparent), "app_id", str_or_null(m->app_id),
                      "headers", (json_t *)m->headers, "body", body);
        if (row == NULL || json_array_append_new(rows, row) != 0) {
            json_decref(rows);
            return err_set(e, ERR_NOMEM, "out of memory writing to the outbox");
        }
    }
    char *text = rows != NULL ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    if (text == NULL)
        return err_set(e, ERR_NOMEM, "out of memory writing to the outbox");
    const char *params[] = {text};
    int rc = db_exec(db, &enqueue_many_stmt, params, NULL, e);
    free(text);
    return rc;
}
