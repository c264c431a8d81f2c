/* mq_internal: what the mq*.c files share, and the pure helpers the unit tests call. Not part of
 * the runtime's API: daemons include mq.h, mq_publish.h and mq_consume.h only. Test helpers under
 * tests/lib may use mq__state() to drive rabbitmq-c directly (declaring temporary queues and so
 * on). One file per idea: the handle's lifecycle in mq.c, URL parsing in mq_url.c, header tables
 * in mq_table.c, error mapping in mq_error.c; publishing and consuming build on them. */
#ifndef PETSTORE_MQ_INTERNAL_H
#define PETSTORE_MQ_INTERNAL_H

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h> /* struct timeval, which amqp.h uses but does not declare */
#include <time.h>

#include "err.h"
#include "mq.h"

/* The handle. Invariants: usable implies sock_ok and ch_ok; channel numbers only grow, so a
 * frame for any other channel than `channel` (or `side`) is a leftover of a closed one. */
struct mq_conn {
    amqp_connection_state_t state;
    int sock_ok;            /* the AMQP connection is open: a graceful close is possible */
    int ch_ok;              /* the working channel is open */
    int usable;             /* what mq_ok() reports; cleared by any error */
    amqp_channel_t channel; /* the working channel */
    amqp_channel_t side;    /* the side channel for passive declares; 0 when not open */
    amqp_channel_t next_ch; /* the next channel number to hand out */
    int channel_max;
    int heartbeat_s;     /* negotiated; 0 when off */
    int confirms;        /* the working channel is in confirm mode */
    uint64_t published;  /* publishes on the working channel since confirm.select */
    char *consumer_tag;  /* set while consuming (owned) */
    int blocked;         /* the broker sent connection.blocked and not yet unblocked */
    amqp_pool_t scratch; /* per-message header tables; recycled after each publish */
    char name[96];       /* for logs: connection_name or host:port */
    char login[256];     /* the user name this connection logged in as (mq_login) */
};

/* ---- mq_url.c -------------------------------------------------------------------------- */

/* A parsed amqp:// or amqps:// URL. Strings are owned (mq__url_free). Query values are -1 when
 * absent. */
typedef struct mq__url {
    int tls; /* amqps:// */
    char *user;
    char *password;
    char *host;
    char *vhost;
    int port;
    int heartbeat_s;
    int connect_timeout_ms;
    int frame_max;
} mq__url_t;

/* Parses url (see mq_open). On success fills *out (free with mq__url_free); on failure returns
 * ERR_CONFIG with a message that never contains the password, and *out holds nothing to free. */
int mq__url_parse(const char *url, mq__url_t *out, err_t *e) PETSTORE_NODISCARD;

/* Frees the strings of u (not u itself). Accepts NULL. */
void mq__url_free(mq__url_t *u);

/* ---- mq_table.c ------------------------------------------------------------------------ */

/* Converts a JSON object (NULL: empty table) to an AMQP field table whose entries are allocated
 * in pool and whose strings and keys are BORROWED from obj: obj must outlive the table. Mapping
 * and limits as mq_message_t.headers; keys longer than 255 bytes and nested values are
 * ERR_INVALID. Adds the table's encoded size to *wire_size when wire_size is not NULL. */
int mq__table_from_json(const json_t *obj, amqp_pool_t *pool, amqp_table_t *out, size_t *wire_size,
                        err_t *e) PETSTORE_NODISCARD;

/* Converts an AMQP field table to a new JSON object (caller decrefs), mapping as
 * mq_delivery_t.headers. Fails only with ERR_NOMEM. */
int mq__table_to_json(const amqp_table_t *t, json_t **out, err_t *e) PETSTORE_NODISCARD;

/* ---- mq_error.c ------------------------------------------------------------------------ */

/* The err.h class for an AMQP reply code (channel.close / connection.close). */
int mq__reply_code_class(int reply_code);

/* Maps a failed rabbitmq-c RPC reply about channel ch to an err_t, answers a channel.close or
 * connection.close from the broker with its close-ok, and updates the handle's state: a closed
 * side channel is merely forgotten, anything else makes the handle broken. what names the
 * operation for the message. Returns the code. */
int mq__reply_error(mq_conn_t *c, amqp_rpc_reply_t r, amqp_channel_t ch, const char *what,
                    err_t *e);

/* Same for a negative rabbitmq-c status code from a socket-level call: marks the handle broken
 * (the connection's state is unknown after a failed write or read) and returns ERR_RETRY,
 * ERR_TIMEOUT or ERR_NOMEM. */
int mq__status_error(mq_conn_t *c, int status, const char *what, err_t *e);

/* Handles a frame that is not what the caller waits for but may concern the whole handle:
 * connection.close and channel.close on the working channel (answered, handle broken, returns the
 * mapped error), connection.blocked/unblocked (logged, flag kept), basic.cancel for our consumer
 * (handle broken, ERR_RETRY). Frames of other channels and anything else return 0: ignored. */
int mq__handle_frame(mq_conn_t *c, const amqp_frame_t *f, err_t *e);

/* Marks the handle broken (mq_ok false) without touching the socket. */
void mq__break(mq_conn_t *c);

/* ---- mq.c ------------------------------------------------------------------------------ */

/* The rabbitmq-c connection and the working channel, for tests/lib helpers only. */
amqp_connection_state_t mq__state(mq_conn_t *c);
amqp_channel_t mq__channel(const mq_conn_t *c);

/* Milliseconds of a monotonic clock. */
int64_t mq__now_ms(void);

#endif
