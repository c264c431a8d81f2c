/* uuid: identifiers for orders, messages, users and events.
 *
 * Version 7 ids (RFC 9562) start with a 48-bit Unix millisecond timestamp, so ids created one
 * after another sort together (as text and as PostgreSQL uuid values) and keep B-tree indexes
 * compact. Within one process they are strictly increasing, even across threads and within one
 * millisecond (RFC 9562 §6.2 method 1: a 12-bit counter in rand_a). Version 4 ids are 122
 * random bits. Randomness comes from libsodium's randombytes_buf(); sodium_init() runs once,
 * on first use, under pthread_once.
 *
 * Text form: canonical lower-case 8-4-4-4-12. uuid_valid() accepts ONLY that form: ids are
 * produced by us (lower-case), PostgreSQL prints uuids in lower case, and accepting one
 * spelling means an id compares equal to itself as a string everywhere (cache keys, logs,
 * idempotency records). A caller that wants to be lenient lower-cases first. uuid_valid() is the
 * project's one uuid check: the message codec (contracts/codec) and the HTTP front doors use it.
 *
 * Threading: every function is thread-safe. */
#ifndef PETSTORE_UUID_H
#define PETSTORE_UUID_H

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Writes a new random (version 4) id into out (caller's storage, NUL-terminated). */
void uuid_v4(char out[UUID_STR_LEN]);

/* Writes a new time-ordered (version 7) id into out; each call in this process returns an id
 * greater than the previous call's. */
void uuid_v7(char out[UUID_STR_LEN]);

/* True (1) for the canonical lower-case 8-4-4-4-12 hexadecimal form, any version or variant;
 * 0 otherwise, including for NULL and upper-case hex. */
int uuid_valid(const char *s);

#endif
