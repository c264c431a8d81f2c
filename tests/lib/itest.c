/* itest: see itest.h. The scratch databases are remembered in a fixed list and dropped by an
 * atexit handler registered on first use; the creating process's pid is recorded so that a
 * forked child's exit() does not drop a database its parent still uses. */
#include "itest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "hex.h"

#define MAX_SCRATCH 32

static char scratch_names[MAX_SCRATCH][64];
static int n_scratch;
static pid_t scratch_owner;

const char *itest_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr,
                "%s is not set: run the integration tests through ./petstore test "
                "(or eval \"$(./petstore env)\" for a running instance)\n",
                name);
        exit(1);
    }
    return v;
}

db_conn_t *itest_db_open(const char *conninfo)
{
    db_conn_t *db = NULL;
    err_t e;
    err_clear(&e);
    db_opts_t opts = {.application_name = "itest"};
    if (db_open_ex(conninfo, &opts, &db, &e) != 0) {
        fprintf(stderr, "itest: cannot connect: %s: %s\n", err_name(e.code), e.msg);
        return NULL;
    }
    return db;
}

static int admin_command(const char *sql)
{
    db_conn_t *db = itest_db_open(itest_env("PETSTORE_PG_ADMIN_URL"));
    if (db == NULL)
        return -1;
    err_t e;
    err_clear(&e);
    int rc = db_exec_script(db, sql, &e);
    if (rc != 0)
        fprintf(stderr, "itest: %s: %s: %s\n", sql, err_name(e.code), e.msg);
    db_close(db);
    return rc == 0 ? 0 : -1;
}

static void drop_scratch(void)
{
    if (getpid() != scratch_owner)
        return;
    for (int i = 0; i < n_scratch; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %.63s WITH (FORCE)", scratch_names[i]);
        (void)admin_command(sql);
    }
    n_scratch = 0;
}

int itest_scratch_db(const char *prefix, char *conninfo_out, size_t n)
{
    const char *admin = itest_env("PETSTORE_PG_ADMIN_URL");
    if (prefix == NULL)
        prefix = "itest";
    size_t plen = strlen(prefix);
    if (plen == 0 || plen > 40 || strspn(prefix, "abcdefghijklmnopqrstuvwxyz0123456789_") != plen) {
        fprintf(stderr, "itest: bad scratch database prefix\n");
        return -1;
    }
    if (n_scratch == MAX_SCRATCH) {
        fprintf(stderr, "itest: too many scratch databases\n");
        return -1;
    }
    unsigned char r[8];
    char hex[2 * sizeof(r) + 1];
    if (sodium_init() < 0) {
        fprintf(stderr, "itest: libsodium failed to initialise\n");
        return -1;
    }
    randombytes_buf(r, sizeof(r));
    hex_encode(r, sizeof(r), hex);
    char *name = scratch_names[n_scratch];
    snprintf(name, sizeof(scratch_names[0]), "%s_%s", prefix, hex);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (admin_command(sql) != 0)
        return -1;
    n_scratch++;
    /* Registered after libpq's first connection: exit handlers run in reverse order, so this
     * one runs before OpenSSL's cleanup handler, which libpq registered, and can still connect. */
    if (scratch_owner == 0) {
        scratch_owner = getpid();
        atexit(drop_scratch);
    }
    /* In key=value form a later keyword wins, so this names the scratch database. */
    int w = snprintf(conninfo_out, n, "%s dbname=%s", admin, name);
    if (w < 0 || (size_t)w >= n) {
        fprintf(stderr, "itest: conninfo buffer too small\n");
        return -1;
    }
    return 0;
}

long itest_db_long(db_conn_t *db, const char *sql)
{
    db_result_t *res = NULL;
    err_t e;
    err_clear(&e);
    long v = LONG_MIN;
    if (db_exec_sql(db, sql, 0, NULL, &res, &e) != 0) {
        fprintf(stderr, "itest: %s: %s: %s\n", sql, err_name(e.code), e.msg);
        return LONG_MIN;
    }
    int64_t x = 0;
    if (db_rows(res) > 0 && db_value_int64(res, 0, 0, &x) == 0)
        v = (long)x;
    else
        fprintf(stderr, "itest: %s: no integer in the first row\n", sql);
    db_result_free(res);
    return v;
}

long itest_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct backend {
    db_conn_t *observer;
    long pid;
} backend_t;

static int backend_gone(void *arg)
{
    backend_t *b = arg;
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %ld", b->pid);
    return itest_db_long(b->observer, sql) == 0;
}

int itest_db_terminate(db_conn_t *db, db_conn_t *observer)
{
    backend_t b = {observer, itest_db_long(db, "SELECT pg_backend_pid()")};
    char sql[96];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)::int", b.pid);
    if (b.pid == LONG_MIN || itest_db_long(observer, sql) != 1) {
        fprintf(stderr, "itest: could not terminate server process %ld\n", b.pid);
        return -1;
    }
    if (!itest_wait_until(backend_gone, &b, 10000)) {
        fprintf(stderr, "itest: server process %ld still there after 10 s\n", b.pid);
        return -1;
    }
    return 0;
}

int itest_wait_until(int (*pred)(void *arg), void *arg, int timeout_ms)
{
    long deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        if (pred(arg))
            return 1;
        if (itest_now_ms() >= deadline)
            return 0;
        struct timespec poll_interval = {0, 5 * 1000000L};
        nanosleep(&poll_interval, NULL);
    }
}
