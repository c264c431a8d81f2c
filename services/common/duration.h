/* duration: the operators' spelling of a length of time, "30s", "5m", "1h30m", "2d", "250ms".
 *
 * The tools (dlq, petstore-saga) take durations on their command lines (--stuck-for,
 * --older-than, --canary-wait, "2h ago"); they read them here so one spelling means the same
 * thing everywhere. A duration is one or more <digits><unit> terms added up; the units are ms,
 * s, m or min, h and d. A bare number, a sign, a fraction or a space is refused: a duration
 * without its unit is the kind of mistake that purges the wrong week.
 *
 * Threading: pure and reentrant. */
#ifndef PETSTORE_DURATION_H
#define PETSTORE_DURATION_H

#include "err.h"

/* The longest duration accepted: a hundred years, in milliseconds. */
#define DURATION_MAX_MS (100LL * 365 * 86400000)

/* Parses s (borrowed) into milliseconds and sets *out. ERR_INVALID, with the text and what to
 * write instead in e->msg, for anything else (including more than DURATION_MAX_MS). */
int duration_parse_ms(const char *s, long long *out, err_t *e) PETSTORE_NODISCARD;

#endif
