/* db_listen: see db_listen.h. */
#include "db_listen.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

int db_listen(db_conn_t *db, const char *channel, err_t *e)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "LISTEN %s", channel);
    return db_exec_sql(db, sql, 0, NULL, NULL, e);
}

int db_socket(db_conn_t *db)
{
    return PQsocket(db__pg(db));
}

static int drain(db_conn_t *db, int *notified, err_t *e)
{
    PGconn *pg = db__pg(db);
    if (!PQconsumeInput(pg)) {
        db__mark_broken(db);
        return err_set(e, ERR_RETRY, "database connection lost while waiting: %.120s",
                       PQerrorMessage(pg));
    }
    PGnotify *n;
    while ((n = PQnotifies(pg)) != NULL) {
        *notified = 1;
        PQfreemem(n);
    }
    return 0;
}

int db_wait_notify(db_conn_t *db, int timeout_ms, int stop_fd, int *notified, err_t *e)
{
    *notified = 0;
    if (!db_ok(db))
        return err_set(e, ERR_RETRY, "database connection is broken");
    int rc = drain(db, notified, e); /* something may have arrived with the last result */
    if (rc != 0 || *notified)
        return rc;
    struct pollfd fds[2] = {{.fd = db_socket(db), .events = POLLIN},
                            {.fd = stop_fd, .events = POLLIN}};
    int n = poll(fds, stop_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        return err_set(e, ERR_INTERNAL, "poll: %s", strerror(errno));
    if (n > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)))
        return drain(db, notified, e);
    return 0;
}
