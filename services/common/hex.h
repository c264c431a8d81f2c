/* hex: bytes as lower-case hexadecimal text, the one encoder of the project.
 *
 * Hashes, tokens, trace ids and uuids are written as lower-case hex everywhere (PostgreSQL's
 * encode(x, 'hex') and decode(x, 'hex') read and write the same form), so one spelling of a value
 * compares equal to itself as a string in logs, SQL parameters and tests.
 *
 * Threading: pure and reentrant. Nothing here allocates. */
#ifndef PETSTORE_HEX_H
#define PETSTORE_HEX_H

#include <stddef.h>

/* The buffer size hex_encode needs for n bytes: two digits a byte and the NUL. */
#define HEX_SIZE(n) (2 * (n) + 1)

/* Writes the len bytes at bin (borrowed; may be NULL only when len is 0) as 2 * len lower-case
 * hexadecimal digits followed by a NUL into out (caller-owned, at least HEX_SIZE(len) bytes).
 * Returns out. */
char *hex_encode(const void *bin, size_t len, char *out);

#endif
