/* fuzz_amqp_headers: an AMQP header table from the wire, as a consumer sees it, under libFuzzer.
 *
 * The input is the encoded field table of a basic.properties frame (AMQP 0-9-1 section 4.2.5.5:
 * a 32-bit length, then name/type/value entries), the bytes any publisher controls. rabbitmq-c's
 * amqp_decode_table reads it, as it does for every delivery; mq__table_to_json
 * (services/common/mq_table.c) makes the JSON object mq_delivery_t.headers holds; the envelope
 * check msg_envelope_from_headers reads it with fixed, valid properties. The table's conversion
 * back (mq__table_from_json, which publishing uses, and which the dead-letter tool's re-publish
 * of a received message relies on) then either refuses it (nested values) or gives a table
 * that rabbitmq-c encodes and decodes back to an equal JSON object.
 *
 * rabbitmq-c itself is not instrumented (it is Debian's library); what is fuzzed is our code
 * around it, with the shapes of table only a decoder produces (every field kind, nesting,
 * non-UTF-8 bytes, duplicate and overlong keys). */
#include <amqp.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz_util.h"
#include "mq_internal.h"
#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MESSAGE_ID "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f90"
#define ORDER_ID "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f91"

/* JSON -> table -> wire -> table -> JSON gives headers back, or the first step refuses. */
static void check_round_trip(const json_t *headers)
{
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t table, decoded;
    size_t wire = 0, offset = 0;
    json_t *again = NULL;
    unsigned char *buf = NULL;
    err_t e;
    err_clear(&e);
    if (mq__table_from_json(headers, &pool, &table, &wire, &e) != 0) {
        FUZZ_CHECK(e.code == ERR_INVALID && e.msg[0] != '\0',
                   "mq__table_from_json failed other than by refusing");
        goto out;
    }
    buf = malloc(wire);
    FUZZ_CHECK(buf != NULL, "out of memory");
    amqp_bytes_t bytes = {.len = wire, .bytes = buf};
    /* wire is the exact encoded size mq__table_from_json promises: anything else is a bug. */
    if (amqp_encode_table(bytes, &table, &offset) != AMQP_STATUS_OK || offset != wire) {
        fprintf(stderr, "fuzz: encoded size %zu, mq__table_from_json said %zu\n", offset, wire);
        abort();
    }
    offset = 0;
    FUZZ_CHECK(amqp_decode_table(bytes, &pool, &decoded, &offset) == AMQP_STATUS_OK,
               "our own table does not decode");
    FUZZ_CHECK(mq__table_to_json(&decoded, &again, &e) == 0, "mq__table_to_json failed");
    FUZZ_CHECK(json_equal(headers, again), "headers changed by a round trip");
out:
    json_decref(again);
    free(buf);
    empty_amqp_pool(&pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t table;
    size_t offset = 0;
    json_t *headers = NULL;
    err_t e;
    err_clear(&e);
    amqp_bytes_t bytes = {.len = size, .bytes = (void *)data};
    if (amqp_decode_table(bytes, &pool, &table, &offset) != AMQP_STATUS_OK)
        goto out;
    if (mq__table_to_json(&table, &headers, &e) != 0)
        fuzz_fail("mq__table_to_json failed on a decoded table");
    FUZZ_CHECK(json_is_object(headers), "mq__table_to_json made a non-object");

    msg_envelope_t env;
    if (msg_envelope_from_headers(headers, MESSAGE_ID, "payment.charge.v1", ORDER_ID, &env, &e) !=
        0)
        FUZZ_CHECK(e.code == ERR_INVALID && e.msg[0] != '\0',
                   "envelope failed other than by refusing");
    check_round_trip(headers);
out:
    json_decref(headers);
    empty_amqp_pool(&pool);
    return 0;
}
