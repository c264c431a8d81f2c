/* fuzz_util: what the fuzz targets share: splitting an input into lines, and failing loudly.
 *
 * A target calls fuzz_fail when a property it checks does not hold: the message goes to stderr
 * and abort() makes libFuzzer save the input as a crash artifact. Rejecting an input is never a
 * failure; only a broken promise of the code under test is. */
#ifndef PETSTORE_FUZZ_UTIL_H
#define PETSTORE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints "fuzz: what" and aborts. */
__attribute__((noreturn)) static inline void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

/* Aborts unless cond holds. */
#define FUZZ_CHECK(cond, what)                                                                     \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(what);                                                                       \
    } while (0)

/* A cursor over the fuzz input. */
typedef struct fuzz_in {
    const uint8_t *p;
    const uint8_t *end;
} fuzz_in_t;

/* The bytes up to the next '\n' (or the end), as a new NUL-terminated string (caller frees);
 * the cursor moves past the '\n'. A NUL byte inside ends the C string early, as it does for
 * the AMQP property strings a delivery carries. *len, when not NULL, gets the bytes taken. */
static inline char *fuzz_line(fuzz_in_t *in, size_t *len)
{
    const uint8_t *nl = memchr(in->p, '\n', (size_t)(in->end - in->p));
    const uint8_t *stop = nl != NULL ? nl : in->end;
    size_t n = (size_t)(stop - in->p);
    char *s = malloc(n + 1);
    if (s == NULL)
        fuzz_fail("out of memory");
    memcpy(s, in->p, n);
    s[n] = '\0';
    in->p = nl != NULL ? nl + 1 : in->end;
    if (len != NULL)
        *len = n;
    return s;
}

/* The rest of the input as a new buffer of exactly that many bytes, no NUL after it, so a read
 * past the end is an AddressSanitizer report (caller frees; never NULL, even when empty). */
static inline char *fuzz_rest(fuzz_in_t *in, size_t *len)
{
    size_t n = (size_t)(in->end - in->p);
    char *s = malloc(n > 0 ? n : 1);
    if (s == NULL)
        fuzz_fail("out of memory");
    if (n > 0)
        memcpy(s, in->p, n);
    in->p = in->end;
    *len = n;
    return s;
}

#endif
