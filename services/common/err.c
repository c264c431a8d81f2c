/* err: names and texts come from err_codes.def so the table is the only place a code is
 * described. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void err_clear(err_t *e)
{
    if (e == NULL)
        return;
    e->code = 0;
    e->sqlstate[0] = '\0';
    e->msg[0] = '\0';
}

int err_set(err_t *e, int code, const char *fmt, ...)
{
    if (e != NULL) {
        va_list ap;
        e->code = code;
        e->sqlstate[0] = '\0';
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *err_name(int code)
{
    switch (code) {
    case ERR_OK:
        return "ERR_OK";
#define X(name, value, text)                                                                       \
    case name:                                                                                     \
        return #name;
#include "err_codes.def"
#undef X
    default:
        return "ERR_UNKNOWN";
    }
}

const char *err_str(int code)
{
    switch (code) {
    case ERR_OK:
        return "ok";
#define X(name, value, text)                                                                       \
    case name:                                                                                     \
        return text;
#include "err_codes.def"
#undef X
    default:
        return "unknown error";
    }
}
