/* itest_mq: RabbitMQ helpers for the C integration tests.
 *
 * Tests build their own throw-away topology so they do not depend on broker-config: names
 * carry a random suffix, classic queues expire on their own (x-expires) if a test dies before
 * its cleanup, and quorum queues (which cannot be exclusive or auto-delete) must be deleted by
 * the test. The helpers drive rabbitmq-c directly on an mq_conn_t's working channel; a failed
 * declaration breaks that handle, as a real channel error would. Every function prints what
 * went wrong to stderr and returns 0 or -1, so a test can assert_int_equal(..., 0). */
#ifndef PETSTORE_ITEST_MQ_H
#define PETSTORE_ITEST_MQ_H

#include <jansson.h>
#include <stddef.h>

#include "mq.h"

/* AMQP_URL from the environment (admin user on vhost petstore), or NULL when unset. */
const char *itest_mq_url(void);

/* Writes "<prefix>.<16 random hex digits>" into buf. */
void itest_mq_name(char *buf, size_t size, const char *prefix);

/* Opens a connection to AMQP_URL named `name` in the management UI; NULL (and a message on
 * stderr) on failure. Close with mq_close. */
mq_conn_t *itest_mq_open(const char *name);

/* Declares a non-durable exchange of the given type ("direct", "topic", "fanout"). */
int itest_mq_declare_exchange(mq_conn_t *c, const char *name, const char *type);

/* Declares a non-exclusive, non-auto-delete queue. args (borrowed, may be NULL) become the
 * declare's arguments, e.g. {"x-queue-type": "quorum"}; a classic queue gets x-expires of
 * ten minutes unless args say otherwise. Quorum queues are declared durable. */
int itest_mq_declare_queue(mq_conn_t *c, const char *name, const json_t *args);

/* Binds queue to exchange with routing key. */
int itest_mq_bind(mq_conn_t *c, const char *queue, const char *exchange, const char *key);

/* Deletes a queue / an exchange (unconditionally). Missing ones count as deleted. */
int itest_mq_delete_queue(mq_conn_t *c, const char *name);
int itest_mq_delete_exchange(mq_conn_t *c, const char *name);

#endif
