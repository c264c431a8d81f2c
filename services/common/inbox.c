/* inbox: see inbox.h. ON CONFLICT DO NOTHING keeps a duplicate from aborting the transaction. */
#include "inbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_array.h"

static const db_stmt_t record_stmt = {
    .name = "inbox_record",
    .sql = "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    .nparams = 2,
};

static const db_stmt_t record_many_stmt = {
    .name = "inbox_record_many",
    .sql = "INSERT INTO inbox (consumer, message_id)"
           " SELECT $1, id FROM unnest($2::uuid[]) AS id ON CONFLICT DO NOTHING"
           " RETURNING message_id::text",
    .nparams = 2,
};

static const db_stmt_t purge_stmt = {
    .name = "inbox_purge",
    .sql = "DELETE FROM inbox WHERE received_at < now() - make_interval(secs => $1::int)",
    .nparams = 1,
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
    return inserted == 1 ? 0 : ERR_DUPLICATE;
}

int inbox_record_many(db_conn_t *db, const char *consumer, const char *const *ids, size_t n,
                      int *fresh, err_t *e)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        fresh[i] = 0;
        json_array_append_new(arr, json_string(ids[i]));
    }
    char *literal = db_array_from_json(arr);
    json_decref(arr);
    if (literal == NULL)
        return err_set(e, ERR_NOMEM, "out of memory recording the inbox");
    const char *params[] = {consumer, literal};
    db_result_t *res = NULL;
    int rc = db_exec(db, &record_many_stmt, params, &res, e);
    free(literal);
    if (rc != 0)
        return rc;
    /* Each inserted id is claimed by its first occurrence in ids; later repeats stay 0. */
    for (int r = 0; r < db_rows(res); r++) {
        const char *id = db_value(res, r, 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(ids[i], id) == 0) {
                fresh[i] = 1;
                break;
            }
        }
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
