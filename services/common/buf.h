/* buf: a growable byte buffer for building text (metrics pages, SQL array literals).
 * Always NUL-terminated after a successful append. Not thread-safe; owner frees. */
#ifndef PETSTORE_BUF_H
#define PETSTORE_BUF_H

#include <stddef.h>

#include "err.h"

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

/* Appends n bytes; ERR_NOMEM on allocation failure (the buffer is unchanged). */
int buf_append(buf_t *b, const void *data, size_t n) PETSTORE_NODISCARD;
int buf_puts(buf_t *b, const char *s) PETSTORE_NODISCARD;
int buf_printf(buf_t *b, const char *fmt, ...) PETSTORE_PRINTF(2, 3) PETSTORE_NODISCARD;

/* Empties the buffer, keeping its memory. */
void buf_reset(buf_t *b);

/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_free(buf_t *b);

#endif
