/* inbox: at-most-once effects for at-least-once delivery.
 *
 * A consumer records (consumer, message_id) in its service database in the same transaction as
 * the message's effects. If the row exists the message was handled before: the caller skips it
 * and acknowledges. Rolled back with the transaction, the record disappears with the effects, so
 * a message is never marked handled without its effects. */
#ifndef PETSTORE_INBOX_H
#define PETSTORE_INBOX_H

#include <stddef.h>

#include "db.h"

/* Inside the caller's transaction: 0 when new, ERR_DUPLICATE when already recorded (no error is
 * raised in the transaction, which stays usable). A concurrent transaction recording the same
 * id makes this call wait for its end (then 0 if it rolled back, ERR_DUPLICATE if it
 * committed). A message_id that is not a uuid is ERR_INVALID. */
int inbox_record(db_conn_t *db, const char *consumer, const char *message_id,
                 err_t *e) PETSTORE_NODISCARD;

/* Records many message ids in one round trip, inside the caller's transaction. fresh (n ints,
 * caller-owned): fresh[i] is set to 1 when ids[i] was new and 0 when it had been recorded before
 * or repeats an earlier id of the same call (ids compare as uuids, whatever their spelling). One
 * id that is not a uuid fails the call with ERR_INVALID. */
int inbox_record_many(db_conn_t *db, const char *consumer, const char *const *ids, size_t n,
                      int *fresh, err_t *e) PETSTORE_NODISCARD;

/* Deletes records older than seconds (a retention far longer than any redelivery window), all
 * in one statement. */
int inbox_purge_older_than(db_conn_t *db, int seconds, long *deleted, err_t *e) PETSTORE_NODISCARD;

/* Deletes at most limit records older than seconds, oldest first, in one short statement (its
 * own transaction when called outside one), skipping rows another purge has locked; *deleted
 * (optional) receives the count, which is below limit once nothing older is left. For a
 * periodic purge that never holds a long transaction: call again while *deleted == limit. */
int inbox_purge_batch(db_conn_t *db, int seconds, int limit, long *deleted,
                      err_t *e) PETSTORE_NODISCARD;

#endif
