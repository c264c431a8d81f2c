/* mq: one AMQP 0-9-1 connection to RabbitMQ with one working channel.
 *
 * mq_open() parses an amqp:// or amqps:// URL, connects (over TLS for amqps) with a timeout, logs
 * in with heartbeats and opens channel 1; mq_publish.h and mq_consume.h build on the handle. Every
 * status rabbitmq-c reports is checked and mapped to the err.h vocabulary:
 *   - socket errors, heartbeat timeouts and broker closes such as 320 CONNECTION_FORCED or
 *     541 INTERNAL_ERROR are ERR_RETRY (reconnect with backoff);
 *   - 402 INVALID_PATH, 403 ACCESS_REFUSED, 404 NOT_FOUND, 406 PRECONDITION_FAILED and
 *     530 NOT_ALLOWED are ERR_CONFIG: the topology or the permissions are wrong, and the
 *     message carries the broker's reply text;
 *   - an operation that did not finish in time is ERR_TIMEOUT.
 * After any channel or connection error the handle is marked broken: mq_ok() turns false and the
 * caller closes it and opens a new one (mq_channel_reopen() is a cheaper way back when only the
 * channel died). Deliveries and confirms belong to the channel they came from, so nothing
 * received before a reopen can be acknowledged after it.
 *
 * Threading: a handle belongs to one thread at a time; use one connection per thread. A
 * connection either consumes (mq_consume.h) or publishes with confirms (mq_publish.h), never
 * both, because their frames would interleave: a daemon that dead-letters from its consumer
 * thread opens a second connection for that.
 *
 * Heartbeats are only sent and checked while the library is inside a call that touches the
 * socket. A thread that may stay away from the handle for longer than the heartbeat interval
 * (a long database retry, for example) calls mq_keepalive() now and then. */
#ifndef PETSTORE_MQ_H
#define PETSTORE_MQ_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MQ_DEFAULT_HEARTBEAT_S 30
#define MQ_DEFAULT_FRAME_MAX 131072
#define MQ_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define MQ_DEFAULT_RPC_TIMEOUT_MS 30000

/* Connection options; zero-initialise and set what you need. Every member is optional. */
typedef struct mq_opts {
    int heartbeat_s;             /* 0: MQ_DEFAULT_HEARTBEAT_S; negative: no heartbeats */
    const char *connection_name; /* client property connection_name, shown in the management
                                    UI; borrowed for the duration of mq_open; NULL: none */
    int frame_max;               /* 0: MQ_DEFAULT_FRAME_MAX; the broker may lower it */
    int connect_timeout_ms;      /* TCP connect; 0: MQ_DEFAULT_CONNECT_TIMEOUT_MS */
    int rpc_timeout_ms;          /* login and every synchronous request (declare, qos, consume,
                                    close); 0: MQ_DEFAULT_RPC_TIMEOUT_MS */
    const char *ca_file;         /* amqps://: PEM file of the authorities that may sign the
                                    broker's certificate; NULL or "": the system's store */
} mq_opts_t;

typedef struct mq_conn mq_conn_t;

/* Connects to url, "amqp://user:pass@host:port/vhost" (user, password and vhost are
 * percent-decoded, so vhost "petstore" is written "/petstore" and "/" is "/%2F"; defaults are
 * guest:guest@localhost:5672 and vhost "/"). "amqps://" connects over TLS (default port 5671,
 * TLS 1.2 or later) and verifies the broker's certificate against opts->ca_file and its name
 * against the URL's host; nothing is sent before both hold. The query parameters heartbeat
 * (seconds), connection_timeout (milliseconds) and frame_max are honoured and override opts,
 * since they come from the operator. opts may be NULL. On success *out is a new handle the caller
 * closes with mq_close(). Errors: ERR_CONFIG for a malformed URL, an unreadable CA file, bad
 * credentials or a missing or forbidden vhost; ERR_RETRY when the broker cannot be reached, the
 * connection fails, or the TLS handshake fails (a certificate that does not verify included: the
 * message says so); ERR_TIMEOUT when connect or login takes too long. The password never appears
 * in messages. */
int mq_open(const char *url, const mq_opts_t *opts, mq_conn_t **out, err_t *e) PETSTORE_NODISCARD;

/* Like mq_open, but on failure waits with exponential backoff and jitter (100 ms doubling, capped
 * at about 5 s) and tries again, logging each failure, until it connects or should_stop()
 * (may be NULL) returns non-zero; should_stop is polled at least every 100 ms while waiting.
 * Broker-side refusals (ERR_CONFIG from bad credentials or a missing vhost) are retried too, since
 * the broker's definitions may still be loading; only a malformed URL returns at once (ERR_CONFIG).
 * When stopped, returns the last error (ERR_RETRY if none was seen) and leaves *out alone. */
int mq_open_retry(const char *url, const mq_opts_t *opts, int (*should_stop)(void), mq_conn_t **out,
                  err_t *e) PETSTORE_NODISCARD;

/* Closes the channel and the connection gracefully when they are still open (waiting at most
 * 2 s for each reply), then frees everything. Unacknowledged deliveries return to their queue.
 * Accepts NULL. */
void mq_close(mq_conn_t *c);

/* True while the handle can be used: no connection or channel error has been seen and the
 * broker has not cancelled the consumer. False for NULL. */
int mq_ok(const mq_conn_t *c);

/* The user name the connection logged in as (the user of the URL), e.g. for the user_id
 * property, which RabbitMQ checks against it. Borrowed, valid until mq_close; "" for NULL. */
const char *mq_login(const mq_conn_t *c);

/* Opens a fresh working channel on a connection whose socket is still fine, after a channel
 * error (for example a publish to a missing exchange) made mq_ok() false; closes the old channel
 * first if it is still open. Publisher confirms are switched on again if they were on; a
 * consumer is NOT restarted (call mq_consume_start again) and the delivery tags of the old
 * channel are void. Returns ERR_RETRY when the connection itself is gone (reconnect instead). */
int mq_channel_reopen(mq_conn_t *c, err_t *e) PETSTORE_NODISCARD;

/* Passively declares queue to prove it exists and is accessible; on success stores its ready
 * message count and consumer count in *messages and *consumers (each may be NULL). A missing
 * queue is ERR_CONFIG ("NOT_FOUND - no queue ..."). The check runs on a side channel that is
 * reopened transparently after such a failure, so the handle stays usable (mq_ok() unchanged)
 * even while it consumes or publishes. */
int mq_check_queue(mq_conn_t *c, const char *queue, uint32_t *messages, uint32_t *consumers,
                   err_t *e) PETSTORE_NODISCARD;

/* Passively declares exchange; ERR_CONFIG when it does not exist. The default exchange "" always
 * exists. Same side-channel rule as mq_check_queue. */
int mq_check_exchange(mq_conn_t *c, const char *exchange, err_t *e) PETSTORE_NODISCARD;

/* Sends a heartbeat frame now if heartbeats are on, without reading anything, so an idle thread
 * keeps its connection alive. Returns ERR_RETRY (and marks the handle broken) when the socket
 * is gone. Cheap: one small write. */
int mq_keepalive(mq_conn_t *c, err_t *e) PETSTORE_NODISCARD;

#endif
