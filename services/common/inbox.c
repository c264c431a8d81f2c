/* inbox: see inbox.h. ON CONFLICT DO NOTHING keeps a duplicate from raising an error, so the
 * caller's transaction stays usable after one. */
#include "inbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_array.h"

static const db_stmt_t record_stmt = {
    .name = "inbox_record",
    .sql = "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    .nparams = 2,
};

/* Answers the 1-based positions (first occurrence) of the ids that were new. Ids are compared
 * as uuids, so any spelling PostgreSQL accepts (upper case, braces) matches; rows are inserted in
 * uuid order so that two consumers recording overlapping batches cannot deadlock. */
static const db_stmt_t record_many_stmt = {
    .name = "inbox_record_many",
    .sql = "WITH input AS (SELECT id, min(ord) AS ord"
           "  FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, ord) GROUP BY id),"
           " ins AS (INSERT INTO inbox (consumer, message_id)"
           "  SELECT $1, id FROM input ORDER BY id ON CONFLICT DO NOTHING RETURNING message_id) "
           "SELECT input.ord FROM input JOIN ins ON ins.message_id = input.id",
    .nparams = 2,
};

static const db_stmt_t purge_stmt = {
    .name = "inbox_purge",
    .sql = "DELETE FROM inbox WHERE received_at < now() - make_interval(secs => $1::int)",
    .nparams = 1,
};

static const db_stmt_t purge_batch_stmt = {
    .name = "inbox_purge_batch",
    .sql = "DELETE FROM inbox WHERE (consumer, message_id) IN ("
           "  SELECT consumer, message_id FROM inbox"
           "  WHERE received_at < now() - make_interval(secs => $1::int)"
           "  ORDER BY received_at LIMIT $2::int FOR UPDATE SKIP LOCKED)",
    .nparams = 2,
};

int inbox_record(db_conn_t *db, const char *consumer, const char *message_id, err_t *e)
{
    const char *params[] = {consumer, message_id};
    db_result_t *res = NULL;
    int rc = db_exec(db, &record_stmt, params, &res, e);
    if (rc != 0)
        return rc;
    long inserted = db_cmd_tuples(res);
    db_result_free(res);
    if (inserted != 1)
        return err_set(e, ERR_DUPLICATE, "message %s was already handled by %s", message_id,
                       consumer);
    return 0;
}

int inbox_record_many(db_conn_t *db, const char *consumer, const char *const *ids, size_t n,
                      int *fresh, err_t *e)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        fresh[i] = 0;
        json_array_append_new(arr, json_string(ids[i]));
    }
    char *literal = arr != NULL && json_array_size(arr) == n ? db_array_from_json(arr) : NULL;
    json_decref(arr);
    if (literal == NULL)
        return err_set(e, ERR_NOMEM, "out of memory recording the inbox");
    const char *params[] = {consumer, literal};
    db_result_t *res = NULL;
    int rc = db_exec(db, &record_many_stmt, params, &res, e);
    free(literal);
    if (rc != 0)
        return rc;
    for (int r = 0; r < db_rows(res); r++) {
        int64_t ord = 0;
        if (db_value_int64(res, r, 0, &ord) == 0 && ord >= 1 && (uint64_t)ord <= n)
            fresh[ord - 1] = 1;
    }
    db_result_free(res);
    return 0;
}

int inbox_purge_older_than(db_conn_t *db, int seconds, long *deleted, err_t *e)
{
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", seconds);
    const char *params[] = {secs};
    db_result_t *res = NULL;
    int rc = db_exec(db, &purge_stmt, params, &res, e);
    if (rc == 0 && deleted != NULL)
        *deleted = db_cmd_tuples(res);
    db_result_free(res);
    return rc;
}

int inbox_purge_batch(db_conn_t *db, int seconds, int limit, long *deleted, err_t *e)
{
    char secs[16], max[16];
    snprintf(secs, sizeof(secs), "%d", seconds);
    snprintf(max, sizeof(max), "%d", limit);
    const char *params[] = {secs, max};
    db_result_t *res = NULL;
    int rc = db_exec(db, &purge_batch_stmt, params, &res, e);
    if (rc == 0 && deleted != NULL)
        *deleted = db_cmd_tuples(res);
    db_result_free(res);
    return rc;
}
