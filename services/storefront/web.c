/* web: helpers every storefront route uses (database, authentication, problem answers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hex.h"
#include "session_cache.h"
#include "storefront.h"

static const db_stmt_t session_user_stmt = {
    .name = "sf_session_user",
    .sql = "SELECT user_id::text AS user_id, extract(epoch FROM expires_at)::bigint AS expires"
           " FROM sessions WHERE token_hash = decode($1, 'hex') AND expires_at > now()",
    .nparams = 1,
    .secret = DB_SECRET(1), /* the token hash */
};

log_ctx_t sf_log_ctx(http_request_t *req)
{
    const trace_ctx_t *t = http_trace(req);
    log_ctx_t ctx = {.trace_id = t->trace_id, .span_id = t->span_id};
    return ctx;
}

void sf_db_error(http_request_t *req, const err_t *e)
{
    log_ctx_t ctx = sf_log_ctx(req);
    if (e->code == ERR_RETRY) {
        log_err(LOG_WARN, &ctx, "storefront.database_unavailable", e);
        http_add_header(req, "Retry-After", "1");
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE,
                          "the storefront database is unavailable; try again", NULL);
        return;
    }
    log_err(LOG_ERROR, &ctx, "storefront.database_error", e);
    http_respond_kind(req, HTTP_PROBLEM_INTERNAL, NULL, NULL);
}

int sf_db(http_request_t *req, db_conn_t **db)
{
    err_t e;
    err_clear(&e);
    if (svc_thread_db(http_app(req), db, &e) == 0)
        return 1;
    sf_db_error(req, &e);
    return 0;
}

static void unauthorized(http_request_t *req, const char *detail)
{
    http_add_header(req, "WWW-Authenticate", "Bearer realm=\"petstore\"");
    http_respond_kind(req, HTTP_PROBLEM_UNAUTHORIZED, detail, NULL);
}

/* The session from this instance's cache (session_cache.h), else from the database. */
int sf_user(http_request_t *req, db_conn_t *db, char *user_id)
{
    const char *token = http_bearer_token(req);
    if (token == NULL) {
        unauthorized(req, "a bearer token is required (POST /v1/sessions)");
        return 0;
    }
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    uint64_t gen = 0;
    if (session_cache_lookup(h, time(NULL), user_id, &gen))
        return 1;
    char hex[2 * sizeof(h) + 1];
    hex_encode(h, sizeof(h), hex);
    const char *params[] = {hex};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &session_user_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    int ok = db_rows(res) == 1;
    if (ok) {
        snprintf(user_id, 37, "%s", db_value(res, 0, db_col_index(res, "user_id")));
        session_cache_store(h, user_id,
                            (time_t)atoll(db_value(res, 0, db_col_index(res, "expires"))), gen);
    }
    db_result_free(res);
    if (!ok)
        unauthorized(req, "the token is unknown or expired");
    return ok;
}

int sf_admin(http_request_t *req)
{
    const storefront_app_t *app = svc_app(http_app(req));
    const char *token = http_bearer_token(req);
    int ok = 0;
    if (token != NULL && app->admin_enabled) {
        unsigned char presented[crypto_generichash_BYTES];
        crypto_generichash(presented, sizeof(presented), (const unsigned char *)token,
                           strlen(token), NULL, 0);
        ok = sodium_memcmp(presented, app->admin_token_hash, sizeof(presented)) == 0;
    }
    if (!ok)
        unauthorized(req, "the admin token is required");
    return ok;
}

void sf_invalid(http_request_t *req, json_t *errors)
{
    const char *first = json_string_value(json_object_get(json_array_get(errors, 0), "field"));
    char detail[160];
    snprintf(detail, sizeof(detail), "invalid field%s: %s%s",
             json_array_size(errors) > 1 ? "s" : "", first ? first : "",
             json_array_size(errors) > 1 ? ", ..." : "");
    http_respond_kind(req, HTTP_PROBLEM_VALIDATION_FAILED, detail,
                      json_pack("{s:o}", "errors", errors));
}
