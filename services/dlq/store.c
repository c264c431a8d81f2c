/* store: the dead-letter tool's own database (DLQ_DATABASE_URL): the append-only history of its
 * actions and the note of each group. Migrations in migrations/, applied by `dlq --migrate`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_migrate.h"
#include "dlq.h"
#include "dlq_migrations.h"

int dlq_store_open(dlq_ctx_t *c, err_t *e)
{
    if (c->db != NULL)
        return 0;
    db_opts_t o = {.application_name = "dlq", .connect_timeout_s = 5};
    if (db_open_ex(c->db_url, &o, &c->db, e) != 0)
        return dlq_connect_failed(e);
    return 0;
}

int dlq_store_migrate(dlq_ctx_t *c, err_t *e)
{
    if (dlq_store_open(c, e) != 0)
        return -1;
    return db_migrate(c->db, "dlq", dlq_migrations, dlq_n_migrations, e);
}

/* clang-format off */
static const db_stmt_t history_add = {
    .name = "dlq_history_add",
    .sql = "INSERT INTO dlq_history (operator, host, verb, queue, selection, outcome, counts,"
           "                         run, detail)"
           " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8::uuid, $9)",
    .nparams = 9,
};

static const db_stmt_t history_list = {
    .name = "dlq_history_list",
    .sql = "SELECT json_build_object('id', id, 'at', to_char(at AT TIME ZONE 'UTC',"
           "                                                  'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
           "                         'operator', operator, 'host', host, 'verb', verb,"
           "                         'queue', queue, 'selection', selection,"
           "                         'outcome', outcome, 'counts', counts, 'run', run,"
           "                         'detail', detail)::text"
           "  FROM dlq_history ORDER BY id DESC LIMIT $1",
    .nparams = 1,
};

static const db_stmt_t notes_all = {
    .name = "dlq_notes_all",
    .sql = "SELECT fingerprint, status, note, updated_by,"
           "       to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
           "       to_char(resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
           "  FROM dlq_notes",
    .nparams = 0,
};

/* A note's text is kept when only the status changes (empty text). */
static const db_stmt_t note_set = {
    .name = "dlq_note_set",
    .sql = "INSERT INTO dlq_notes AS n (fingerprint, status, note, updated_by, resolved_at)"
           " VALUES ($1, $2, $3, $4, CASE WHEN $2 = 'resolved' THEN now() END)"
           " ON CONFLICT (fingerprint) DO UPDATE"
           "   SET status = EXCLUDED.status,"
           "       note = CASE WHEN EXCLUDED.note = '' THEN n.note ELSE EXCLUDED.note END,"
           "       updated_at = now(), updated_by = EXCLUDED.updated_by,"
           "       resolved_at = CASE WHEN EXCLUDED.status = 'resolved' THEN now()"
           "                          ELSE n.resolved_at END",
    .nparams = 4,
};
/* clang-format on */

int dlq_history_add(dlq_ctx_t *c, const char *verb, const char *queue, const json_t *selection,
                    const char *outcome, const json_t *counts, const char *run, const char *detail,
                    err_t *e)
{
    if (dlq_store_open(c, e) != 0)
        return -1;
    char *sel = selection ? json_dumps(selection, JSON_COMPACT) : NULL;
    char *cnt = counts ? json_dumps(counts, JSON_COMPACT) : NULL;
    const char *params[] = {c->operator_name, c->host, verb, queue, sel, outcome, cnt, run, detail};
    int rc = db_exec(c->db, &history_add, params, NULL, e);
    free(sel);
    free(cnt);
    return rc;
}

int dlq_history_list(dlq_ctx_t *c, long limit, json_t **out, err_t *e)
{
    if (dlq_store_open(c, e) != 0)
        return -1;
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit > 0 ? limit : 1000000L);
    const char *params[] = {lim};
    db_result_t *r = NULL;
    if (db_exec(c->db, &history_list, params, &r, e) != 0)
        return -1;
    json_t *arr = json_array();
    for (int i = 0; i < db_rows(r); i++)
        json_array_append_new(arr, json_loads(db_value(r, i, 0), 0, NULL));
    db_result_free(r);
    *out = arr;
    return 0;
}

int dlq_notes_all(dlq_ctx_t *c, json_t **out, err_t *e)
{
    if (dlq_store_open(c, e) != 0)
        return -1;
    db_result_t *r = NULL;
    if (db_exec(c->db, &notes_all, NULL, &r, e) != 0)
        return -1;
    json_t *obj = json_object();
    for (int i = 0; i < db_rows(r); i++)
        json_object_set_new(obj, db_value(r, i, 0),
                            json_pack("{s:s,s:s,s:s,s:s,s:s?}", "status", db_value(r, i, 1), "note",
                                      db_value(r, i, 2), "updated_by", db_value(r, i, 3),
                                      "updated_at", db_value(r, i, 4), "resolved_at",
                                      db_is_null(r, i, 5) ? NULL : db_value(r, i, 5)));
    db_result_free(r);
    *out = obj;
    return 0;
}

int dlq_note_set(dlq_ctx_t *c, const char *fingerprint, const char *status, const char *text,
                 err_t *e)
{
    if (dlq_store_open(c, e) != 0)
        return -1;
    const char *params[] = {fingerprint, status, text ? text : "", c->operator_name};
    return db_exec(c->db, &note_set, params, NULL, e);
}
