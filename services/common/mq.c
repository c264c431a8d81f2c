/* mq: the connection handle's lifecycle: open (once, or with backoff until it succeeds), the
 * channels, keepalive and close; and the passive topology checks that run on a side channel.
 * URL parsing is in mq_url.c, header tables in mq_table.c, error mapping in mq_error.c.
 *
 * rabbitmq-c leaves every frame it reads in per-channel memory pools until they are released, so
 * every place that reads frames here (and in mq_publish.c, mq_consume.c) releases them with the
 * amqp_maybe_release_* calls, which do nothing while a frame is half read or still queued; a
 * close from the broker is answered at once (mq_error.c).
 *
 * The handle keeps two channels. The working channel carries publishing or consuming. Passive
 * declares (topology checks) run on a side channel, because a failed passive declare closes its
 * channel: on the side channel that costs nothing but a fresh channel.open next time, while the
 * working channel, its consumer and its confirm sequence stay intact. Channel numbers are never
 * reused within a connection, so a frame that still arrives for an old channel is recognised
 * and dropped. */
#include "mq.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "mq_internal.h"

/* mq_open_retry's backoff: the nominal delay starts here and doubles up to the cap. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_CAP_MS 5000
#define STOP_POLL_MS 100
#define CLOSE_TIMEOUT_MS 2000

int64_t mq__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

amqp_connection_state_t mq__state(mq_conn_t *c) { return c->state; }

amqp_channel_t mq__channel(const mq_conn_t *c) { return c->channel; }

int mq_ok(const mq_conn_t *c) { return c != NULL && c->usable; }

const char *mq_login(const mq_conn_t *c) { return c != NULL ? c->login : ""; }

/* Opens a channel with a number never used before on this connection. */
static int open_channel(mq_conn_t *c, amqp_channel_t *out, err_t *e)
{
    if ((int)c->next_ch > c->channel_max || c->next_ch == 0) {
        mq__break(c);
        return err_set(e, ERR_RETRY, "channel numbers exhausted on this connection; reconnect");
    }
    amqp_channel_t ch = c->next_ch++;
    if (amqp_channel_open(c->state, ch) == NULL)
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), ch, "channel.open", e);
    *out = ch;
    return 0;
}

static int resolve_opt(int from_url, int from_opts, int dflt)
{
    if (from_url >= 0)
        return from_url;
    return from_opts != 0 ? from_opts : dflt;
}

/* amqps://: the broker's certificate must chain to ca_file (or the system's store) and name the
 * URL's host; TLS 1.2 at least. rabbitmq-c owns the SSL_CTX; it is borrowed here to load the
 * system's store, which the library does not do by itself. */
static int tls_setup(amqp_socket_t *sock, const char *ca_file, err_t *e)
{
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    if (amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST) != AMQP_STATUS_OK)
        return err_set(e, ERR_INTERNAL, "cannot require TLS 1.2 for the AMQP connection");
    if (ca_file != NULL && ca_file[0] != '\0') {
        if (amqp_ssl_socket_set_cacert(sock, ca_file) != AMQP_STATUS_OK)
            return err_set(e, ERR_CONFIG,
                           "TLS_CA_FILE %s: cannot read PEM certificates from it (check the path "
                           "and its permissions)",
                           ca_file);
        return 0;
    }
    SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
    if (ctx == NULL || SSL_CTX_set_default_verify_paths(ctx) != 1)
        return err_set(e, ERR_INTERNAL, "cannot load the system's certificate store");
    return 0;
}

/* What to check when a TLS connection fails, appended to the error message. */
static const char *tls_hint(int status)
{
    switch (status) {
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
        return " (the broker's certificate is not signed by TLS_CA_FILE's authorities)";
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
        return " (the broker's certificate does not name the URL's host)";
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
        return " (TLS handshake failed: does this port speak TLS?)";
    default:
        return "";
    }
}

int mq_open(const char *url, const mq_opts_t *opts, mq_conn_t **out, err_t *e)
{
    static const mq_opts_t no_opts;
    mq__url_t u = {0};
    mq_conn_t *c = NULL;
    int rc = mq__url_parse(url, &u, e);
    if (rc != 0)
        return rc;
    if (opts == NULL)
        opts = &no_opts;

    int heartbeat = resolve_opt(u.heartbeat_s, opts->heartbeat_s, MQ_DEFAULT_HEARTBEAT_S);
    if (heartbeat < 0)
        heartbeat = 0; /* opts asked for no heartbeats */
    int frame_max = resolve_opt(u.frame_max, opts->frame_max, MQ_DEFAULT_FRAME_MAX);
    int connect_ms =
        resolve_opt(u.connect_timeout_ms, opts->connect_timeout_ms, MQ_DEFAULT_CONNECT_TIMEOUT_MS);
    int rpc_ms = opts->rpc_timeout_ms > 0 ? opts->rpc_timeout_ms : MQ_DEFAULT_RPC_TIMEOUT_MS;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory opening an AMQP connection");
        goto fail;
    }
    init_amqp_pool(&c->scratch, 4096);
    c->next_ch = 1;
    if (opts->connection_name != NULL && opts->connection_name[0] != '\0')
        snprintf(c->name, sizeof(c->name), "%s", opts->connection_name);
    else
        snprintf(c->name, sizeof(c->name), "%s:%d", u.host, u.port);

    c->state = amqp_new_connection();
    amqp_socket_t *sock = NULL;
    if (c->state != NULL)
        sock = u.tls ? amqp_ssl_socket_new(c->state) : amqp_tcp_socket_new(c->state);
    if (sock == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory opening an AMQP connection");
        goto fail;
    }
    if (u.tls && (rc = tls_setup(sock, opts->ca_file, e)) != 0)
        goto fail;
    struct timeval tv = ms_to_tv(connect_ms);
    int st = amqp_socket_open_noblock(sock, u.host, u.port, &tv);
    if (st != AMQP_STATUS_OK) {
        rc = err_set(e, st == AMQP_STATUS_TIMEOUT ? ERR_TIMEOUT : ERR_RETRY,
                     "cannot connect to %s:%d%s: %s%s", u.host, u.port, u.tls ? " over TLS" : "",
                     amqp_error_string2(st), tls_hint(st));
        goto fail;
    }
    tv = ms_to_tv(rpc_ms);
    if (amqp_set_handshake_timeout(c->state, &tv) != AMQP_STATUS_OK ||
        amqp_set_rpc_timeout(c->state, &tv) != AMQP_STATUS_OK) {
        rc = err_set(e, ERR_INTERNAL, "cannot set AMQP timeouts");
        goto fail;
    }

    /* Capabilities we announce: consumer_cancel_notify makes the broker tell us (basic.cancel)
     * when our queue disappears instead of leaving the consumer silently idle;
     * connection.blocked lets us log resource alarms. */
    amqp_table_entry_t caps[] = {
        {.key = amqp_cstring_bytes("consumer_cancel_notify"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("connection.blocked"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("basic.nack"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("publisher_confirms"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
    };
    amqp_table_entry_t props[3];
    int nprops = 0;
    props[nprops].key = amqp_cstring_bytes("capabilities");
    props[nprops].value.kind = AMQP_FIELD_KIND_TABLE;
    props[nprops].value.value.table.num_entries = (int)(sizeof(caps) / sizeof(caps[0]));
    props[nprops].value.value.table.entries = caps;
    nprops++;
    props[nprops].key = amqp_cstring_bytes("product");
    props[nprops].value.kind = AMQP_FIELD_KIND_UTF8;
    props[nprops].value.value.bytes = amqp_cstring_bytes("petstore");
    nprops++;
    if (opts->connection_name != NULL && opts->connection_name[0] != '\0') {
        props[nprops].key = amqp_cstring_bytes("connection_name");
        props[nprops].value.kind = AMQP_FIELD_KIND_UTF8;
        props[nprops].value.value.bytes = amqp_cstring_bytes(opts->connection_name);
        nprops++;
    }
    amqp_table_t client_props = {.num_entries = nprops, .entries = props};

    amqp_rpc_reply_t r =
        amqp_login_with_properties(c->state, u.vhost, 0, frame_max, heartbeat, &client_props,
                                   AMQP_SASL_METHOD_PLAIN, u.user, u.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char what[160];
        snprintf(what, sizeof(what), "login to %s:%d vhost \"%.40s\" as \"%.40s\"", u.host, u.port,
                 u.vhost, u.user);
        rc = mq__reply_error(c, r, 0, what, e);
        goto fail;
    }
    c->sock_ok = 1;
    snprintf(c->login, sizeof(c->login), "%s", u.user);
    c->channel_max = amqp_get_channel_max(c->state);
    if (c->channel_max <= 0)
        c->channel_max = 65535;
    c->heartbeat_s = amqp_get_heartbeat(c->state);
    if ((rc = open_channel(c, &c->channel, e)) != 0)
        goto fail;
    c->ch_ok = 1;
    c->usable = 1;
    log_info(NULL, "mq.connected",
             json_pack("{s:s,s:s,s:i,s:s,s:i,s:i}", "connection", c->name, "host", u.host, "port",
                       u.port, "vhost", u.vhost, "heartbeat_s", c->heartbeat_s, "frame_max",
                       amqp_get_frame_max(c->state)));
    mq__url_free(&u);
    *out = c;
    return 0;
fail:
    mq__url_free(&u);
    mq_close(c);
    return rc;
}

/* Sleeps ms milliseconds in slices, returning 1 early when should_stop says so. */
static int sleep_unless_stopped(int ms, int (*should_stop)(void))
{
    int64_t until = mq__now_ms() + ms;
    for (;;) {
        if (should_stop != NULL && should_stop())
            return 1;
        int64_t left = until - mq__now_ms();
        if (left <= 0)
            return 0;
        int slice = left < STOP_POLL_MS ? (int)left : STOP_POLL_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int mq_open_retry(const char *url, const mq_opts_t *opts, int (*should_stop)(void), mq_conn_t **out,
                  err_t *e)
{
    mq__url_t u = {0};
    int rc = mq__url_parse(url, &u, e);
    if (rc != 0)
        return rc;
    mq__url_free(&u);

    /* The shared backoff waits between half the nominal delay and all of it, so a herd of
     * restarting daemons does not reconnect in lockstep. */
    daemon_backoff_t backoff;
    daemon_backoff_init(&backoff, BACKOFF_FIRST_MS, BACKOFF_CAP_MS);

    err_t last;
    err_set(&last, ERR_RETRY, "stopped before the broker connection was opened");
    for (int attempt = 1;; attempt++) {
        if (should_stop != NULL && should_stop())
            break;
        err_t le;
        err_clear(&le);
        rc = mq_open(url, opts, out, &le);
        if (rc == 0) {
            if (attempt > 1)
                log_info(NULL, "mq.reconnected",
                         json_pack("{s:s,s:i}", "connection", (*out)->name, "attempts", attempt));
            return 0;
        }
        last = le;
        int wait = daemon_backoff_next_ms(&backoff);
        log_write(rc == ERR_CONFIG ? LOG_ERROR : LOG_WARN, NULL, "mq.connect_failed",
                  json_pack("{s:s?,s:i,s:s,s:s,s:i}", "connection",
                            opts ? opts->connection_name : NULL, "attempt", attempt, "code",
                            err_name(rc), "error", le.msg, "retry_in_ms", wait));
        if (sleep_unless_stopped(wait, should_stop))
            break;
    }
    if (e != NULL)
        *e = last;
    return last.code;
}

void mq_close(mq_conn_t *c)
{
    if (c == NULL)
        return;
    if (c->state != NULL) {
        if (c->sock_ok) {
            struct timeval tv = ms_to_tv(CLOSE_TIMEOUT_MS);
            (void)amqp_set_rpc_timeout(c->state, &tv);
            int ok = 1;
            if (c->ch_ok && c->consumer_tag != NULL) {
                /* Stop the consumer first. Besides being the polite order, it matters for
                 * quorum queues in RabbitMQ 3.10: while a channel has more than 32 commands in
                 * flight its queue client holds acknowledgements back and forgets them when the
                 * channel closes, so the last acks before a close could be lost. basic.cancel
                 * is applied through the queue's log after them, which flushes them first. */
                ok = amqp_basic_cancel(c->state, c->channel, amqp_cstring_bytes(c->consumer_tag)) !=
                         NULL ||
                     amqp_get_rpc_reply(c->state).reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION;
            }
            if (ok && c->ch_ok) {
                amqp_rpc_reply_t r = amqp_channel_close(c->state, c->channel, AMQP_REPLY_SUCCESS);
                ok = r.reply_type == AMQP_RESPONSE_NORMAL ||
                     r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION;
            }
            if (ok)
                (void)amqp_connection_close(c->state, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(c->state);
    }
    empty_amqp_pool(&c->scratch);
    free(c->consumer_tag);
    free(c);
}

int mq_channel_reopen(mq_conn_t *c, err_t *e)
{
    if (c == NULL || !c->sock_ok)
        return err_set(e, ERR_RETRY, "the AMQP connection is closed; reconnect");
    if (c->ch_ok) {
        amqp_rpc_reply_t r = amqp_channel_close(c->state, c->channel, AMQP_REPLY_SUCCESS);
        c->ch_ok = 0;
        c->usable = 0;
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
            return mq__status_error(c, r.library_error, "channel.close", e);
    }
    c->usable = 0;
    free(c->consumer_tag);
    c->consumer_tag = NULL;
    c->published = 0;
    amqp_channel_t ch = 0;
    int rc = open_channel(c, &ch, e);
    if (rc != 0)
        return rc;
    c->channel = ch;
    c->ch_ok = 1;
    if (c->confirms && amqp_confirm_select(c->state, ch) == NULL) {
        c->confirms = 0;
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), ch, "confirm.select", e);
    }
    c->usable = 1;
    amqp_maybe_release_buffers(c->state);
    return 0;
}

/* ---- topology checks --------------------------------------------------------------------- */

static int ensure_side(mq_conn_t *c, err_t *e)
{
    if (c == NULL || !c->sock_ok)
        return err_set(e, ERR_RETRY, "the AMQP connection is closed; reconnect");
    if (c->side != 0)
        return 0;
    amqp_channel_t ch = 0;
    int rc = open_channel(c, &ch, e);
    if (rc == 0)
        c->side = ch;
    return rc;
}

int mq_check_queue(mq_conn_t *c, const char *queue, uint32_t *messages, uint32_t *consumers,
                   err_t *e)
{
    if (queue == NULL || strlen(queue) > 255)
        return err_set(e, ERR_INVALID, "queue name missing or longer than 255 bytes");
    int rc = ensure_side(c, e);
    if (rc != 0)
        return rc;
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(c->state, c->side, amqp_cstring_bytes(queue),
                                                     1, 0, 0, 0, amqp_empty_table);
    if (ok == NULL) {
        char what[300];
        snprintf(what, sizeof(what), "check queue \"%s\"", queue);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->side, what, e);
    }
    if (messages != NULL)
        *messages = ok->message_count;
    if (consumers != NULL)
        *consumers = ok->consumer_count;
    amqp_maybe_release_buffers_on_channel(c->state, c->side);
    return 0;
}

int mq_check_exchange(mq_conn_t *c, const char *exchange, err_t *e)
{
    if (exchange == NULL || strlen(exchange) > 255)
        return err_set(e, ERR_INVALID, "exchange name missing or longer than 255 bytes");
    if (exchange[0] == '\0')
        return c != NULL && c->sock_ok ? 0 : err_set(e, ERR_RETRY, "the AMQP connection is closed");
    int rc = ensure_side(c, e);
    if (rc != 0)
        return rc;
    /* The type is not compared by a passive declare. */
    if (amqp_exchange_declare(c->state, c->side, amqp_cstring_bytes(exchange),
                              amqp_cstring_bytes("direct"), 1, 0, 0, 0, amqp_empty_table) == NULL) {
        char what[300];
        snprintf(what, sizeof(what), "check exchange \"%s\"", exchange);
        return mq__reply_error(c, amqp_get_rpc_reply(c->state), c->side, what, e);
    }
    amqp_maybe_release_buffers_on_channel(c->state, c->side);
    return 0;
}

int mq_keepalive(mq_conn_t *c, err_t *e)
{
    if (!mq_ok(c))
        return err_set(e, ERR_RETRY, "the AMQP connection is broken");
    if (c->heartbeat_s <= 0)
        return 0;
    amqp_frame_t hb;
    memset(&hb, 0, sizeof(hb));
    hb.frame_type = AMQP_FRAME_HEARTBEAT;
    hb.channel = 0;
    int st = amqp_send_frame(c->state, &hb);
    if (st != AMQP_STATUS_OK)
        return mq__status_error(c, st, "heartbeat", e);
    return 0;
}
