/* accounts: sign-up, sign-in and sign-out.
 *
 * Passwords are hashed with Argon2id (crypto_pwhash_str, SF_PWHASH_* limits) and never logged.
 * A session token is 32 random bytes, base64url, shown once; the database keeps only its
 * SHA-256. Sign-in verifies a dummy hash for unknown users so that timing does not reveal which
 * usernames exist. */
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "session_cache.h"
#include "storefront.h"
#include "uuid.h"

static const db_stmt_t create_user_stmt = {
    .name = "sf_create_user",
    .sql = "INSERT INTO users (id, username, password_hash) VALUES ($1::uuid, $2, $3)"
           " ON CONFLICT (username) DO NOTHING RETURNING id",
    .nparams = 3,
    .secret = DB_SECRET(3), /* the password hash */
};

static const db_stmt_t find_user_stmt = {
    .name = "sf_find_user",
    .sql = "SELECT id::text AS id, password_hash FROM users WHERE username = $1",
    .nparams = 1,
};

/* Signing in also drops the user's expired sessions, so the table stays as small as the number
 * of live sessions without a sweeper. */
static const db_stmt_t create_session_stmt = {
    .name = "sf_create_session",
    .sql = "WITH expired AS (DELETE FROM sessions WHERE user_id = $2::uuid AND expires_at <= now())"
           " INSERT INTO sessions (token_hash, user_id, expires_at)"
           " VALUES (decode($1, 'hex'), $2::uuid, now() + make_interval(secs => $3::int))"
           " RETURNING " SF_TIME("expires_at") " AS expires_at",
    .nparams = 3,
    .secret = DB_SECRET(1), /* the token hash */
};

static const db_stmt_t delete_session_stmt = {
    .name = "sf_delete_session",
    .sql = "DELETE FROM sessions WHERE token_hash = decode($1, 'hex')",
    .nparams = 1,
    .secret = DB_SECRET(1), /* the token hash */
};

static void token_hash_hex(const char *token, char hex[2 * crypto_hash_sha256_BYTES + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    hex_encode(h, sizeof(h), hex);
}

/* Reads {username, password}; 0 after answering a problem. Strings borrowed from *body. */
static int credentials(http_request_t *req, json_t **body, const char **user, const char **pw,
                       int validate)
{
    if (http_read_json_object(req, body) != 0)
        return 0;
    *user = json_string_value(json_object_get(*body, "username"));
    *pw = json_string_value(json_object_get(*body, "password"));
    json_t *errors = json_array();
    sf_check_credentials(*body, validate, errors);
    if (json_array_size(errors) > 0) {
        sf_invalid(req, errors);
        json_decref(*body);
        *body = NULL;
        return 0;
    }
    json_decref(errors);
    return 1;
}

int sf_post_users(http_request_t *req, void *svc)
{
    (void)svc;
    json_t *body = NULL;
    const char *user, *pw;
    db_conn_t *db = NULL;
    if (!credentials(req, &body, &user, &pw, 1))
        return 0;
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, pw, strlen(pw), SF_PWHASH_OPSLIMIT, SF_PWHASH_MEMLIMIT) != 0) {
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "out of memory hashing the password",
                          NULL);
        goto out;
    }
    if (!sf_db(req, &db))
        goto out;
    char id[UUID_STR_LEN];
    uuid_v7(id);
    const char *params[] = {id, user, hash};
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (db_exec(db, &create_user_stmt, params, &res, &e) != 0) {
        sf_db_error(req, &e);
        goto out;
    }
    int created = db_rows(res) == 1;
    db_result_free(res);
    if (!created) {
        http_respond_kind(req, HTTP_PROBLEM_USERNAME_TAKEN, "that username is taken", NULL);
        goto out;
    }
    char location[64];
    snprintf(location, sizeof(location), "/v1/users/%s", id);
    http_add_header(req, "Location", location);
    http_respond_json(req, 201, json_pack("{s:s,s:s}", "id", id, "username", user));
out:
    sodium_memzero(hash, sizeof(hash));
    json_decref(body);
    return 0;
}

int sf_post_sessions(http_request_t *req, void *svc)
{
    const storefront_app_t *app = svc_app(svc);
    json_t *body = NULL;
    const char *user, *pw;
    db_conn_t *db = NULL;
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    if (!credentials(req, &body, &user, &pw, 0))
        return 0;
    if (!sf_db(req, &db))
        goto out;
    const char *fp[] = {user};
    if (db_exec(db, &find_user_stmt, fp, &res, &e) != 0) {
        sf_db_error(req, &e);
        goto out;
    }
    int known = db_rows(res) == 1;
    const char *stored =
        known ? db_value(res, 0, db_col_index(res, "password_hash")) : app->dummy_hash;
    int ok = crypto_pwhash_str_verify(stored, pw, strlen(pw)) == 0 && known;
    if (!ok) {
        http_add_header(req, "WWW-Authenticate", "Bearer realm=\"petstore\"");
        http_respond_kind(req, HTTP_PROBLEM_UNAUTHORIZED, "unknown username or wrong password",
                          NULL);
        goto out;
    }
    char user_id[UUID_STR_LEN];
    snprintf(user_id, sizeof(user_id), "%s", db_value(res, 0, db_col_index(res, "id")));
    db_result_free(res);
    res = NULL;

    unsigned char raw[32];
    char token[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    char hex[2 * crypto_hash_sha256_BYTES + 1], ttl[16];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(token, sizeof(token), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    token_hash_hex(token, hex);
    snprintf(ttl, sizeof(ttl), "%d", app->session_ttl_s);
    const char *sp[] = {hex, user_id, ttl};
    if (db_exec(db, &create_session_stmt, sp, &res, &e) != 0) {
        sf_db_error(req, &e);
        sodium_memzero(token, sizeof(token));
        goto out;
    }
    http_respond_json(req, 201,
                      json_pack("{s:s,s:s}", "token", token, "expires_at",
                                db_value(res, 0, db_col_index(res, "expires_at"))));
    sodium_memzero(token, sizeof(token));
    sodium_memzero(raw, sizeof(raw));
out:
    db_result_free(res);
    json_decref(body);
    return 0;
}

int sf_delete_session(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[UUID_STR_LEN];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    token_hash_hex(http_bearer_token(req), hex);
    const char *params[] = {hex};
    err_t e;
    err_clear(&e);
    if (db_exec(db, &delete_session_stmt, params, NULL, &e) != 0) {
        sf_db_error(req, &e);
        return 0;
    }
    /* Every instance forgets it when the deletion's notification arrives; this one at once. */
    unsigned char h[crypto_hash_sha256_BYTES];
    const char *token = http_bearer_token(req);
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    session_cache_forget(h);
    http_respond_empty(req, 204);
    return 0;
}
