/* err: the project's single error vocabulary.
 *
 * Every fallible function returns 0 or a negative ERR_* code and, when the caller passes a
 * non-NULL err_t, fills it with the code, a human-readable message and (for database errors)
 * the SQLSTATE. The code's class tells the caller what to do: ERR_RETRY means "try again
 * later", ERR_INVALID means "this input will never succeed", and so on. err_t is caller-owned
 * and lives on the stack; nothing here allocates. Thread-safe. */
#ifndef PETSTORE_ERR_H
#define PETSTORE_ERR_H

#include <stddef.h>

#define PETSTORE_NODISCARD __attribute__((warn_unused_result))
#define PETSTORE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

enum {
    ERR_OK = 0,
#define X(name, value, text) name = value,
#include "err_codes.def"
#undef X
};

typedef struct err {
    int code;         /* 0 or an ERR_* code */
    char sqlstate[6]; /* PostgreSQL SQLSTATE when the error came from the database, else "" */
    char msg[256];    /* what went wrong, for logs and problem responses; never secrets */
} err_t;

/* Clears e (accepts NULL). */
void err_clear(err_t *e);

/* Sets e's code and formatted message (e may be NULL) and returns code, so that
 * `return err_set(e, ERR_INVALID, "...")` reads naturally. The message is truncated to fit. */
int err_set(err_t *e, int code, const char *fmt, ...) PETSTORE_PRINTF(3, 4);

/* The symbolic name of a code ("ERR_RETRY"); "ERR_OK" for 0, "ERR_UNKNOWN" otherwise. Static. */
const char *err_name(int code);

/* A short description of a code. Static string. */
const char *err_str(int code);

#endif
