/* lg_publish: `petstore-loadgen publish`, the raw confirmed-publish loop the outbox relay is
 * measured against.
 *
 * One connection, one channel in confirm mode. Each round publishes a window of W messages
 * (default 500, the relay's batch) persistent and mandatory, each with a fresh message_id, the
 * given type, content_type application/json and (when given) user_id, then waits for every
 * confirm of the window, and so on until N messages were published. Publishing and waiting go
 * through mq_publish_batch, the very call the relay makes: the difference between the two rates
 * is then what the relay adds (its database cycle), not a different AMQP client. A basic.nack
 * counts in `nacked` and a basic.return (no queue bound) in `returned`; both are errors, and the
 * exit status is still 0 since the report says what happened.
 *
 * A real measure needs a queue behind the routing key: --declare-queue Q declares the durable
 * quorum queue Q when it does not exist yet (publish to exchange "" with routing key Q), --purge
 * empties it at the end and --delete-queue deletes it. Those declarations drive rabbitmq-c on
 * the connection's working channel through mq__state(), as the test helpers of tests/lib do:
 * the runtime has no API for declaring quorum queues, and a benchmark tool is no daemon. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lg_modes.h"
#include "lg_util.h"
#include "mq.h"
#include "mq_internal.h"
#include "mq_publish.h"
#include "uuid.h"

#define LG_PUBLISH_TIMEOUT_MS 60000

typedef struct popts {
    const char *url, *exchange, *routing_key, *type, *user_id, *queue, *json_path;
    long count, size, window;
    int purge, delete_queue;
} popts_t;

static int parse_popts(int argc, char **argv, popts_t *o)
{
    o->size = 300;
    o->window = 500;
    o->type = "bench.raw.v1";
    int have_count = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--purge") == 0) {
            o->purge = 1;
            continue;
        }
        if (strcmp(a, "--delete-queue") == 0) {
            o->delete_queue = 1;
            continue;
        }
        if (v == NULL)
            return lg_usage_error(strncmp(a, "--", 2) == 0 ? "%s needs a value"
                                                           : "publish: unknown argument \"%s\"",
                                  a);
        if (strcmp(a, "--amqp-url") == 0) {
            o->url = v;
        } else if (strcmp(a, "--exchange") == 0) {
            o->exchange = v;
        } else if (strcmp(a, "--routing-key") == 0) {
            o->routing_key = v;
        } else if (strcmp(a, "--type") == 0) {
            o->type = v;
        } else if (strcmp(a, "--user-id") == 0) {
            o->user_id = v;
        } else if (strcmp(a, "--declare-queue") == 0) {
            o->queue = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json_path = v;
        } else if (strcmp(a, "--count") == 0) {
            if (lg_arg_long(a, v, 1, 1000000000L, &o->count) != 0)
                return -1;
            have_count = 1;
        } else if (strcmp(a, "--size") == 0) {
            if (lg_arg_long(a, v, 10, 16L << 20, &o->size) != 0)
                return -1;
        } else if (strcmp(a, "--window") == 0) {
            if (lg_arg_long(a, v, 1, 100000, &o->window) != 0)
                return -1;
        } else {
            return lg_usage_error("publish: unknown argument \"%s\"", a);
        }
        i++;
    }
    if (o->url == NULL || o->exchange == NULL || o->routing_key == NULL || !have_count)
        return lg_usage_error("publish needs --amqp-url, --exchange, --routing-key and --count");
    if ((o->purge || o->delete_queue) && o->queue == NULL)
        return lg_usage_error("--purge and --delete-queue need --declare-queue Q");
    if (strlen(o->routing_key) > 255 || strlen(o->exchange) > 255 || strlen(o->type) > 255)
        return lg_usage_error("--exchange, --routing-key and --type are at most 255 bytes");
    return 0;
}

/* Reports the outcome of the last synchronous call on the working channel. */
static int rpc_check(mq_conn_t *c, const char *what, const char *queue)
{
    err_t e;
    err_clear(&e);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(mq__state(c));
    if (mq__reply_error(c, r, mq__channel(c), what, &e) == 0)
        return 0;
    fprintf(stderr, "petstore-loadgen: %s \"%s\": %s: %s\n", what, queue, err_name(e.code), e.msg);
    return -1;
}

/* Declares queue as a durable quorum queue unless it exists already (any type: a passive
 * declare on the side channel proves it). */
static int declare_queue(mq_conn_t *c, const char *queue)
{
    err_t e;
    err_clear(&e);
    if (mq_check_queue(c, queue, NULL, NULL, &e) == 0)
        return 0;
    if (e.code != ERR_CONFIG) {
        fprintf(stderr, "petstore-loadgen: checking queue \"%s\": %s\n", queue, e.msg);
        return -1;
    }
    amqp_table_entry_t arg = {
        .key = amqp_cstring_bytes("x-queue-type"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("quorum")}};
    amqp_table_t args = {.num_entries = 1, .entries = &arg};
    amqp_queue_declare(mq__state(c), mq__channel(c), amqp_cstring_bytes(queue), 0, 1, 0, 0, args);
    return rpc_check(c, "queue.declare", queue);
}

/* {"pad":"xxx..."}: size bytes of valid JSON (size >= 10). */
static char *make_body(long size)
{
    char *b = malloc((size_t)size + 1);
    if (b == NULL)
        return NULL;
    memcpy(b, "{\"pad\":\"", 8);
    memset(b + 8, 'x', (size_t)size - 10);
    memcpy(b + size - 2, "\"}", 2);
    b[size] = '\0';
    return b;
}

int lg_publish_main(int argc, char **argv)
{
    popts_t o;
    memset(&o, 0, sizeof(o));
    if (parse_popts(argc, argv, &o) != 0)
        return LG_EXIT_USAGE;
    int status = 1;
    mq_conn_t *c = NULL;
    char *body = make_body(o.size);
    mq_message_t *msgs = calloc((size_t)o.window, sizeof(*msgs));
    int *outcome = calloc((size_t)o.window, sizeof(*outcome));
    char(*ids)[UUID_STR_LEN] = calloc((size_t)o.window, UUID_STR_LEN);
    json_t *rep = NULL;
    const char *error = NULL;
    err_t e;
    err_clear(&e);
    if (body == NULL || msgs == NULL || outcome == NULL || ids == NULL) {
        fprintf(stderr, "petstore-loadgen: out of memory\n");
        goto out;
    }
    mq_opts_t mo = {.connection_name = "petstore-loadgen publish"};
    if (mq_open(o.url, &mo, &c, &e) != 0) {
        fprintf(stderr, "petstore-loadgen: cannot connect to the broker: %s: %s\n",
                err_name(e.code), e.msg);
        goto out;
    }
    if (o.queue != NULL && declare_queue(c, o.queue) != 0)
        goto out;
    if (mq_confirm_select(c, &e) != 0) {
        fprintf(stderr, "petstore-loadgen: confirm.select: %s\n", e.msg);
        goto out;
    }
    for (long i = 0; i < o.window; i++) {
        msgs[i].exchange = o.exchange;
        msgs[i].routing_key = o.routing_key;
        msgs[i].message_id = ids[i];
        msgs[i].type = o.type;
        msgs[i].user_id = o.user_id;
        msgs[i].content_type = "application/json";
        msgs[i].app_id = "petstore-loadgen";
        msgs[i].body = body;
        msgs[i].body_len = (size_t)o.size;
    }
    long published = 0, confirmed = 0, nacked = 0, returned = 0, other = 0;
    int64_t t0 = lg_now_us();
    while (published < o.count) {
        long w = o.count - published < o.window ? o.count - published : o.window;
        for (long i = 0; i < w; i++)
            uuid_v4(ids[i]);
        if (mq_publish_batch(c, msgs, (size_t)w, outcome, LG_PUBLISH_TIMEOUT_MS, &e) != 0) {
            fprintf(stderr, "petstore-loadgen: publishing: %s: %s\n", err_name(e.code), e.msg);
            error = e.msg;
            break;
        }
        published += w;
        for (long i = 0; i < w; i++) {
            if (outcome[i] == 0)
                confirmed++;
            else if (outcome[i] == ERR_UNROUTABLE)
                returned++;
            else if (outcome[i] == ERR_RETRY)
                nacked++;
            else
                other++;
        }
    }
    double seconds = (double)(lg_now_us() - t0) / 1e6;
    if (error == NULL && o.queue != NULL && o.purge) {
        amqp_queue_purge(mq__state(c), mq__channel(c), amqp_cstring_bytes(o.queue));
        if (rpc_check(c, "queue.purge", o.queue) != 0)
            error = "the purge failed";
    }
    if (error == NULL && o.queue != NULL && o.delete_queue) {
        amqp_queue_delete(mq__state(c), mq__channel(c), amqp_cstring_bytes(o.queue), 0, 0);
        if (rpc_check(c, "queue.delete", o.queue) != 0)
            error = "the delete failed";
    }
    rep = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "exchange",
                    o.exchange, "routing_key", o.routing_key, "size", (json_int_t)o.size, "window",
                    (json_int_t)o.window, "count", (json_int_t)o.count, "published",
                    (json_int_t)published, "confirmed", (json_int_t)confirmed, "nacked",
                    (json_int_t)nacked, "returned", (json_int_t)returned, "unsent",
                    (json_int_t)other, "seconds", seconds, "msgs_per_s",
                    seconds > 0 ? (double)confirmed / seconds : 0.0);
    if (rep == NULL)
        goto out;
    json_object_set_new(rep, "error", error ? json_string(error) : json_null());
    lg_add_self_usage(rep);
    if (lg_write_report(rep, o.json_path) == 0 && error == NULL)
        status = 0;
out:
    json_decref(rep);
    mq_close(c);
    free(ids);
    free(outcome);
    free(msgs);
    free(body);
    return status;
}
