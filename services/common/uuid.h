/* uuid: identifiers for orders, messages and users.
 *
 * Version 7 ids (RFC 9562) start with a millisecond timestamp, so ids created one after another
 * sort together and keep B-tree indexes compact; they are monotonic within a process. Version 4
 * ids are purely random. Randomness comes from libsodium. Thread-safe. */
#ifndef PETSTORE_UUID_H
#define PETSTORE_UUID_H

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Writes a new canonical lower-case id into out. */
void uuid_v4(char out[UUID_STR_LEN]);
void uuid_v7(char out[UUID_STR_LEN]);

/* True for the canonical lower-case 8-4-4-4-12 form (any version). */
int uuid_valid(const char *s);

#endif
