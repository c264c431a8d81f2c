/* streams: event streams of orders (GET /v1/orders/{id}/events, Server-Sent Events).
 *
 * A stream first sends the order as it is; a finished order ends it at once. Otherwise it
 * becomes a subscriber in a list guarded by one mutex: each change sends the order's new state
 * (event "status", id = the order's version) to the subscribers of that order, a finished order
 * ends its streams, and a comment every 15 s keeps connections open through proxies and finds
 * clients that have gone.
 *
 * No I/O under the lock. Whoever works on subscribers (a notification, a keep-alive) first
 * detaches them from the list under the lock, so they are its own: it reads the database and
 * sends without the lock, then puts back under the lock those still open and closes the others.
 * Handlers add new subscribers meanwhile without waiting. sf_streams_close_all() marks the list
 * closed, so subscribers being worked on at that moment are closed instead of put back. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "storefront.h"
#include "uuid.h"

typedef struct subscriber {
    struct subscriber *next;
    char order_id[37];
    char user_id[37];
    int last_version; /* the version last sent */
    http_stream_t *stream;
} subscriber_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static subscriber_t *subscribers; /* guarded by lock */
static int closed;                /* guarded by lock: after sf_streams_close_all */

static void close_list(subscriber_t *list)
{
    while (list != NULL) {
        subscriber_t *sub = list;
        list = sub->next;
        http_stream_close(sub->stream);
        free(sub);
    }
}

/* Detaches the subscribers of order_id (all when NULL) and returns them. */
static subscriber_t *detach(const char *order_id)
{
    subscriber_t *taken = NULL;
    pthread_mutex_lock(&lock);
    for (subscriber_t **p = &subscribers; *p != NULL;) {
        subscriber_t *sub = *p;
        if (order_id == NULL || strcmp(sub->order_id, order_id) == 0) {
            *p = sub->next;
            sub->next = taken;
            taken = sub;
        } else {
            p = &sub->next;
        }
    }
    pthread_mutex_unlock(&lock);
    return taken;
}

/* Puts subscribers back in the list, or closes them when the list is closed. */
static void put_back(subscriber_t *list)
{
    if (list == NULL)
        return;
    pthread_mutex_lock(&lock);
    int gone = closed;
    if (!gone) {
        subscriber_t *tail = list;
        while (tail->next != NULL)
            tail = tail->next;
        tail->next = subscribers;
        subscribers = list;
    }
    pthread_mutex_unlock(&lock);
    if (gone)
        close_list(list);
}

/* Writes one SSE event "status" with the order; returns -1 when the client has gone. */
static int send_order(http_stream_t *st, const json_t *order)
{
    char *data = json_dumps(order, JSON_COMPACT);
    if (data == NULL)
        return -1;
    char head[64];
    snprintf(head, sizeof(head), "id: %lld\nevent: status\ndata: ",
             (long long)json_integer_value(json_object_get(order, "version")));
    int rc = http_stream_send(st, head, strlen(head));
    if (rc == 0)
        rc = http_stream_send(st, data, strlen(data));
    if (rc == 0)
        rc = http_stream_send(st, "\n\n", 2);
    free(data);
    return rc;
}

int sf_get_order_events(http_request_t *req, void *svc)
{
    (void)svc;
    db_conn_t *db = NULL;
    char user_id[37];
    if (!sf_db(req, &db) || !sf_user(req, db, user_id))
        return 0;
    const char *id = http_param(req, "id");
    json_t *order = NULL;
    if (!sf_order_load_or_answer(req, db, id, user_id, &order))
        return 0;
    http_stream_t *st = http_stream_start(req, "text/event-stream");
    if (st == NULL) {
        json_decref(order);
        return 0;
    }
    /* The current state first; a finished order ends the stream at once. */
    if (send_order(st, order) != 0 || sf_order_is_finished(order)) {
        json_decref(order);
        http_stream_close(st);
        return 0;
    }
    subscriber_t *sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        json_decref(order);
        http_stream_close(st);
        return 0;
    }
    snprintf(sub->order_id, sizeof(sub->order_id), "%s", id);
    snprintf(sub->user_id, sizeof(sub->user_id), "%s", user_id);
    sub->last_version = (int)json_integer_value(json_object_get(order, "version"));
    sub->stream = st;
    json_decref(order);
    put_back(sub);
    return 0;
}

/* Sends each detached subscriber its order's state when newer than what it has, then puts back
 * those still open and closes the others (gone clients, finished orders). */
static void refresh(db_conn_t *db, subscriber_t *list)
{
    subscriber_t *keep = NULL, *done = NULL;
    while (list != NULL) {
        subscriber_t *sub = list;
        list = sub->next;
        int drop = 0;
        json_t *order = NULL;
        err_t e;
        err_clear(&e);
        if (db != NULL && sf_order_load(db, sub->order_id, sub->user_id, &order, &e) == 0) {
            int version = (int)json_integer_value(json_object_get(order, "version"));
            if (version > sub->last_version) {
                sub->last_version = version;
                drop = send_order(sub->stream, order) != 0;
            }
            drop = drop || sf_order_is_finished(order);
            json_decref(order);
        }
        subscriber_t **to = drop ? &done : &keep;
        sub->next = *to;
        *to = sub;
    }
    put_back(keep);
    close_list(done);
}

void sf_streams_notify(db_conn_t *db, const char *order_id)
{
    if (order_id != NULL)
        refresh(db, detach(order_id));
}

void sf_streams_refresh_all(db_conn_t *db) { refresh(db, detach(NULL)); }

void sf_streams_ping(void)
{
    subscriber_t *keep = NULL, *done = NULL;
    subscriber_t *list = detach(NULL);
    while (list != NULL) {
        subscriber_t *sub = list;
        list = sub->next;
        subscriber_t **to = http_stream_send(sub->stream, ":\n\n", 3) != 0 ? &done : &keep;
        sub->next = *to;
        *to = sub;
    }
    put_back(keep);
    close_list(done);
}

void sf_streams_close_all(void)
{
    pthread_mutex_lock(&lock);
    closed = 1;
    subscriber_t *all = subscribers;
    subscribers = NULL;
    pthread_mutex_unlock(&lock);
    close_list(all);
}
