/* db_listen: see db_listen.h. The notifications themselves are read by libpq with the rest of
 * the input; this file only waits for input and drains libpq's queue. */
#include "db_listen.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int db_listen(db_conn_t *db, const char *channel, err_t *e)
{
    if (!db_ok(db))
        return err_set(e, ERR_RETRY, "database connection is broken");
    char *ident = PQescapeIdentifier(db__pg(db), channel, strlen(channel));
    if (ident == NULL)
        return err_set(e, ERR_INVALID, "bad channel name");
    char sql[160];
    int n = snprintf(sql, sizeof(sql), "LISTEN %s", ident);
    PQfreemem(ident);
    if (n < 0 || (size_t)n >= sizeof(sql))
        return err_set(e, ERR_INVALID, "channel name too long");
    return db_exec_sql(db, sql, 0, NULL, NULL, e);
}

int db_socket(db_conn_t *db) { return db != NULL ? PQsocket(db__pg(db)) : -1; }

typedef struct notice {
    struct notice *next;
    char *channel, *payload;
} notice_t;

/* Reads what arrived and takes every queued notification: handed to fn in arrival order once
 * libpq's queue is empty (so fn may run queries), or freed when fn is NULL. */
static int drain(db_conn_t *db, db_notice_fn fn, void *ctx, int *notified, err_t *e)
{
    PGconn *pg = db__pg(db);
    if (!PQconsumeInput(pg)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%.*s", (int)strcspn(PQerrorMessage(pg), "\n"),
                 PQerrorMessage(pg));
        db__mark_broken(db);
        return err_set(e, ERR_RETRY, "database connection lost while waiting: %s", msg);
    }
    notice_t *head = NULL, **tail = &head;
    PGnotify *n;
    while ((n = PQnotifies(pg)) != NULL) {
        *notified = 1;
        notice_t *copy = fn != NULL ? malloc(sizeof(*copy)) : NULL;
        if (copy != NULL) {
            copy->next = NULL;
            copy->channel = strdup(n->relname);
            copy->payload = strdup(n->extra != NULL ? n->extra : "");
            *tail = copy;
            tail = &copy->next;
        }
        PQfreemem(n);
    }
    while (head != NULL) {
        notice_t *next = head->next;
        if (head->channel != NULL && head->payload != NULL)
            fn(ctx, head->channel, head->payload);
        free(head->channel);
        free(head->payload);
        free(head);
        head = next;
    }
    return 0;
}

int db_wait_notices(db_conn_t *db, int timeout_ms, int stop_fd, db_notice_fn fn, void *ctx,
                    int *notified, err_t *e)
{
    *notified = 0;
    if (!db_ok(db))
        return err_set(e, ERR_RETRY, "database connection is broken");
    /* Notifications may already sit in libpq's queue, read along with an earlier result. */
    int rc = drain(db, fn, ctx, notified, e);
    if (rc != 0 || *notified)
        return rc;
    struct pollfd fds[2] = {{.fd = db_socket(db), .events = POLLIN},
                            {.fd = stop_fd, .events = POLLIN}};
    int n = poll(fds, stop_fd >= 0 ? 2 : 1, timeout_ms < 0 ? -1 : timeout_ms);
    if (n < 0 && errno != EINTR)
        return err_set(e, ERR_INTERNAL, "poll: %s", strerror(errno));
    if (n > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)))
        return drain(db, fn, ctx, notified, e);
    return 0;
}

int db_wait_notify(db_conn_t *db, int timeout_ms, int stop_fd, int *notified, err_t *e)
{
    return db_wait_notices(db, timeout_ms, stop_fd, NULL, NULL, notified, e);
}
