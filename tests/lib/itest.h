/* itest: shared helpers of the C integration tests (tests/integration/test_*.c).
 *
 * The tests run against the real servers of a throw-away instance that `./petstore test`
 * starts and describes in the environment (`./petstore env`). A test that needs a database of
 * its own asks for a scratch one: created through the superuser conninfo in
 * PETSTORE_PG_ADMIN_URL and dropped when the process exits normally (a crashed test leaves an
 * `itest_*` database behind, harmless in a throw-away instance). Waits poll a condition with a
 * bound; nothing here sleeps for a fixed time to "let things settle". Not thread-safe: call
 * from the test's main thread. */
#ifndef PETSTORE_ITEST_H
#define PETSTORE_ITEST_H

#include <stddef.h>

#include "db.h"

/* The value of a required environment variable (borrowed from the environment). When it is
 * missing or empty, prints that the suite must run through ./petstore test and exits 1. */
const char *itest_env(const char *name);

/* Creates a fresh, empty database named "<prefix>_<16 hex digits>" (prefix: [a-z0-9_], at most
 * 40 characters; "itest" when NULL) and writes a libpq conninfo for it, as the superuser, into
 * conninfo_out (n bytes). The database is dropped (WITH (FORCE)) when this process exits
 * normally; child processes never drop it. Returns 0, or -1 with the reason on stderr. */
int itest_scratch_db(const char *prefix, char *conninfo_out, size_t n);

/* Opens a connection to conninfo; NULL (and the reason on stderr) on failure. */
db_conn_t *itest_db_open(const char *conninfo);

/* Runs sql (no parameters) on db and returns the first column of its first row as a long, or
 * LONG_MIN (and the reason on stderr) on failure or no row. For assertions in tests only. */
long itest_db_long(db_conn_t *db, const char *sql);

/* Ends db's server process from the observer's session (pg_terminate_backend: the server sends
 * FATAL 57P01 and closes) and waits up to 10 s until it is gone from pg_stat_activity; db itself
 * does not notice until it next talks to the server. Returns 0, or -1 with the reason on
 * stderr. */
int itest_db_terminate(db_conn_t *db, db_conn_t *observer);

/* Calls pred(arg) until it returns non-zero or timeout_ms passes, polling every few
 * milliseconds. Returns 1 when pred became true, 0 on timeout. */
int itest_wait_until(int (*pred)(void *arg), void *arg, int timeout_ms);

/* Milliseconds on the monotonic clock, for measuring elapsed time in tests. */
long itest_now_ms(void);

#endif
