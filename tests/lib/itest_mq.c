/* itest_mq: declarations through rabbitmq-c for tests; see itest_mq.h. */
#include "itest_mq.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hex.h"
#include "mq_internal.h"

#define CLASSIC_EXPIRES_MS 600000

const char *itest_mq_url(void)
{
    const char *u = getenv("AMQP_URL");
    return u != NULL && *u != '\0' ? u : NULL;
}

void itest_mq_name(char *buf, size_t size, const char *prefix)
{
    unsigned char r[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x =
            (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 32);
        memcpy(r, &x, sizeof(r));
    }
    if (fd >= 0)
        close(fd);
    char hex[HEX_SIZE(sizeof(r))];
    snprintf(buf, size, "%s.%s", prefix, hex_encode(r, sizeof(r), hex));
}

mq_conn_t *itest_mq_open(const char *name)
{
    const char *url = itest_mq_url();
    if (url == NULL) {
        fprintf(stderr, "itest_mq: AMQP_URL is not set\n");
        return NULL;
    }
    mq_opts_t opts = {.connection_name = name};
    mq_conn_t *c = NULL;
    err_t e;
    err_clear(&e);
    if (mq_open(url, &opts, &c, &e) != 0) {
        fprintf(stderr, "itest_mq: cannot connect: %s: %s\n", err_name(e.code), e.msg);
        return NULL;
    }
    return c;
}

static int check(mq_conn_t *c, const char *what, const char *name)
{
    err_t e;
    err_clear(&e);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(mq__state(c));
    if (mq__reply_error(c, r, mq__channel(c), what, &e) == 0)
        return 0;
    fprintf(stderr, "itest_mq: %s \"%s\": %s: %s\n", what, name, err_name(e.code), e.msg);
    return -1;
}

int itest_mq_declare_exchange(mq_conn_t *c, const char *name, const char *type)
{
    amqp_exchange_declare(mq__state(c), mq__channel(c), amqp_cstring_bytes(name),
                          amqp_cstring_bytes(type), 0, 0, 0, 0, amqp_empty_table);
    return check(c, "exchange.declare", name);
}

int itest_mq_declare_queue(mq_conn_t *c, const char *name, const json_t *args)
{
    json_t *a = args ? json_deep_copy(args) : json_object();
    if (a == NULL)
        return -1;
    const char *type = json_string_value(json_object_get(a, "x-queue-type"));
    int quorum = type != NULL && strcmp(type, "quorum") == 0;
    if (!quorum && json_object_get(a, "x-expires") == NULL)
        json_object_set_new(a, "x-expires", json_integer(CLASSIC_EXPIRES_MS));
    amqp_pool_t pool;
    init_amqp_pool(&pool, 1024);
    amqp_table_t table;
    err_t e;
    err_clear(&e);
    int rc = -1;
    if (mq__table_from_json(a, &pool, &table, NULL, &e) != 0) {
        fprintf(stderr, "itest_mq: queue arguments: %s\n", e.msg);
        goto out;
    }
    amqp_queue_declare(mq__state(c), mq__channel(c), amqp_cstring_bytes(name), 0, quorum, 0, 0,
                       table);
    rc = check(c, "queue.declare", name);
out:
    empty_amqp_pool(&pool);
    json_decref(a);
    return rc;
}

int itest_mq_bind(mq_conn_t *c, const char *queue, const char *exchange, const char *key)
{
    amqp_queue_bind(mq__state(c), mq__channel(c), amqp_cstring_bytes(queue),
                    amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_empty_table);
    return check(c, "queue.bind", queue);
}

int itest_mq_delete_queue(mq_conn_t *c, const char *name)
{
    amqp_queue_delete(mq__state(c), mq__channel(c), amqp_cstring_bytes(name), 0, 0);
    return check(c, "queue.delete", name);
}

int itest_mq_delete_exchange(mq_conn_t *c, const char *name)
{
    amqp_exchange_delete(mq__state(c), mq__channel(c), amqp_cstring_bytes(name), 0);
    return check(c, "exchange.delete", name);
}
