/* waiters: long polls on orders (GET /v1/orders/{id}?wait=S&status=X, or &until=terminal).
 *
 * A waiter is a deferred HTTP request in a list guarded by one mutex. It is answered exactly
 * once, by whoever claims it: the consumer on a change (sf_waiters_wake), at its deadline
 * (sf_waiters_expire) or at shutdown (sf_waiters_close_all), or the parking handler itself when
 * the order changed before the waiter was parked. Claiming happens under the lock: the claimer
 * unlinks the waiter and clears its `listed` flag, so a waiter whose flag is clear belongs to
 * someone else. The lock is held only to link, unlink and flag; the database reads and the
 * answers happen outside it.
 *
 * A waiter has two references, the list's (passed to whoever claims it) and the parking
 * handler's (dropped when its own second look is done); the last one frees it. So the handler
 * can always look at its waiter's flag, even after another thread has answered the request. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "order_status.h"
#include "storefront.h"

typedef struct waiter {
    struct waiter *next; /* guarded by lock, like listed and refs */
    int listed;          /* still in the list: nobody has claimed it */
    int refs;
    char order_id[37];
    char user_id[37];
    char leave[24];
    struct timespec deadline;
    http_request_t *req;
} waiter_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static waiter_t *waiters;

/* Drops one reference; the last frees the waiter. */
static void release(waiter_t *w)
{
    pthread_mutex_lock(&lock);
    int last = --w->refs == 0;
    pthread_mutex_unlock(&lock);
    if (last)
        free(w);
}

static int past(const struct timespec *t, const struct timespec *now)
{
    return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

enum take_what { TAKE_ALL, TAKE_CHANGED, TAKE_EXPIRED };

/* Claims and returns the waiters matching: all, those of order_id done at status
 * (sf_waiter_done), or those whose deadline has passed. */
static waiter_t *take(enum take_what what, const char *order_id, const char *status)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    waiter_t *taken = NULL;
    pthread_mutex_lock(&lock);
    for (waiter_t **p = &waiters; *p != NULL;) {
        waiter_t *w = *p;
        int match = what == TAKE_ALL ? 1
                    : what == TAKE_EXPIRED
                        ? past(&w->deadline, &now)
                        : strcmp(w->order_id, order_id) == 0 &&
                              (status == NULL || sf_waiter_done(w->leave, status));
        if (match) {
            *p = w->next;
            w->listed = 0;
            w->next = taken;
            taken = w;
        } else {
            p = &w->next;
        }
    }
    pthread_mutex_unlock(&lock);
    return taken;
}

int sf_waiter_done(const char *leave, const char *status)
{
    if (status == NULL)
        return 0;
    if (strcmp(leave, SF_UNTIL_TERMINAL) != 0)
        return strcmp(leave, status) != 0;
    order_status_t s;
    return order_status_parse(status, &s) == 0 && order_status_is_terminal(s);
}

/* Claims one waiter if nobody has yet; 1 if the caller now owns it. */
static int take_back(waiter_t *w)
{
    int claimed = 0;
    pthread_mutex_lock(&lock);
    if (w->listed) {
        for (waiter_t **p = &waiters; *p != NULL; p = &(*p)->next) {
            if (*p == w) {
                *p = w->next;
                break;
            }
        }
        w->listed = 0;
        claimed = 1;
    }
    pthread_mutex_unlock(&lock);
    return claimed;
}

/* Answers a list of claimed waiters with each order as it is now, and drops the list's
 * references. */
static void answer(waiter_t *list, db_conn_t *db)
{
    while (list != NULL) {
        waiter_t *w = list;
        list = w->next;
        json_t *order = NULL;
        err_t e;
        err_clear(&e);
        if (db != NULL && sf_order_load(db, w->order_id, w->user_id, &order, &e) == 0) {
            http_respond_json(w->req, 200, order);
        } else {
            http_add_header(w->req, "Retry-After", "1");
            http_respond_kind(w->req, HTTP_PROBLEM_UNAVAILABLE,
                              "the order could not be read; poll again", NULL);
        }
        release(w);
    }
}

void sf_waiters_park(http_request_t *req, db_conn_t *db, const char *order_id, const char *user_id,
                     const char *leave, int seconds)
{
    waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        http_respond_kind(req, HTTP_PROBLEM_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    snprintf(w->order_id, sizeof(w->order_id), "%s", order_id);
    snprintf(w->user_id, sizeof(w->user_id), "%s", user_id);
    snprintf(w->leave, sizeof(w->leave), "%s", leave);
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += seconds;
    w->req = req;
    w->listed = 1;
    w->refs = 2; /* the list's and ours */
    http_defer(req);
    pthread_mutex_lock(&lock);
    w->next = waiters;
    waiters = w;
    pthread_mutex_unlock(&lock);

    /* A change applied between the first read and the parking would wake no one: look again.
     * From here on req belongs to whoever claims w. */
    json_t *order = NULL;
    err_t e;
    err_clear(&e);
    if (sf_order_load(db, order_id, user_id, &order, &e) == 0) {
        const char *now = json_string_value(json_object_get(order, "status"));
        if (sf_waiter_done(leave, now) && take_back(w)) {
            http_respond_json(req, 200, order);
            order = NULL;
            release(w); /* the list's reference, which we claimed */
        }
        json_decref(order);
    } /* else the consumer answers at the deadline */
    release(w);
}

void sf_waiters_wake(db_conn_t *db, const char *order_id, const char *status)
{
    if (order_id != NULL)
        answer(take(TAKE_CHANGED, order_id, status), db);
}

void sf_waiters_recheck(db_conn_t *db)
{
    waiter_t *list = take(TAKE_ALL, NULL, NULL);
    while (list != NULL) {
        waiter_t *w = list;
        list = w->next;
        json_t *order = NULL;
        err_t e;
        err_clear(&e);
        if (db != NULL && sf_order_load(db, w->order_id, w->user_id, &order, &e) == 0 &&
            sf_waiter_done(w->leave, json_string_value(json_object_get(order, "status")))) {
            http_respond_json(w->req, 200, order);
            release(w); /* the list's reference, which take() handed over */
            continue;
        }
        json_decref(order);
        pthread_mutex_lock(&lock); /* still waiting: back in the list, still the list's */
        w->listed = 1;
        w->next = waiters;
        waiters = w;
        pthread_mutex_unlock(&lock);
    }
}

void sf_waiters_expire(db_conn_t *db) { answer(take(TAKE_EXPIRED, NULL, NULL), db); }

void sf_waiters_close_all(db_conn_t *db) { answer(take(TAKE_ALL, NULL, NULL), db); }
