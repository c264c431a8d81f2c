/* inbox: see inbox.h. ON CONFLICT DO NOTHING keeps a duplicate from aborting the transaction. */
#include "inbox.h"

#include <stdio.h>

static const db_stmt_t record_stmt = {
    .name = "inbox_record",
    .sql = "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
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
