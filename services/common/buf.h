/* buf: a growable byte buffer for building text (metrics pages, HTTP bodies, SQL literals).
 *
 * A buf_t is a plain struct the owner places anywhere (usually on the stack, initialised with
 * BUF_INIT). data is NULL until the first append and NUL-terminated after every successful one,
 * so it can be used as a C string whenever the appended bytes contain no NUL. len never counts
 * that terminator. A failed append leaves the buffer exactly as it was.
 *
 * Threading: none; a buffer belongs to one thread at a time. */
#ifndef PETSTORE_BUF_H
#define PETSTORE_BUF_H

#include <stddef.h>

#include "err.h"

typedef struct buf {
    char *data; /* owned; NULL until something is appended */
    size_t len; /* bytes used, excluding the terminating NUL */
    size_t cap; /* bytes allocated */
} buf_t;

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Appends n bytes of data (n may be 0). Returns 0 or ERR_NOMEM (buffer unchanged). */
int buf_append(buf_t *b, const void *data, size_t n) PETSTORE_NODISCARD;

/* Appends the C string s. Returns 0 or ERR_NOMEM (buffer unchanged). */
int buf_puts(buf_t *b, const char *s) PETSTORE_NODISCARD;

/* Appends printf-formatted text. Returns 0, ERR_NOMEM or ERR_INTERNAL (bad format); the
 * buffer is unchanged on failure. */
int buf_printf(buf_t *b, const char *fmt, ...) PETSTORE_PRINTF(2, 3) PETSTORE_NODISCARD;

/* Empties the buffer, keeping its memory for reuse. */
void buf_reset(buf_t *b);

/* Frees the memory; the buffer is empty (BUF_INIT) and reusable afterwards. Accepts NULL. */
void buf_free(buf_t *b);

#endif
