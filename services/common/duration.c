/* duration: "1h30m" -> 5400000 (duration.h). */
#include "duration.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The units, longest spelling first so "min" is not read as "m" followed by "in". */
static const struct {
    const char *name;
    long long ms;
} units[] = {
    {"ms", 1}, {"min", 60000}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

int duration_parse_ms(const char *s, long long *out, err_t *e)
{
    if (s == NULL || *s == '\0')
        return err_set(e, ERR_INVALID, "empty duration (write e.g. 30s, 5m, 2h, 1d)");
    long long total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return err_set(e, ERR_INVALID, "\"%s\" is not a duration (write e.g. 30s, 5m, 2h, 1d)",
                           s);
        errno = 0;
        char *end;
        long long n = strtoll(p, &end, 10);
        if (errno != 0 || n > 1000000000LL)
            return err_set(e, ERR_INVALID, "\"%s\": number too large", s);
        long long unit = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t len = strlen(units[i].name);
            if (strncmp(end, units[i].name, len) == 0) {
                unit = units[i].ms;
                end += len;
                break;
            }
        }
        if (unit == 0)
            return err_set(e, ERR_INVALID,
                           "\"%s\": a number needs a unit (ms, s, m, h or d), e.g. 30s", s);
        total += n * unit;
        if (total > DURATION_MAX_MS)
            return err_set(e, ERR_INVALID, "\"%s\": more than a hundred years", s);
        p = end;
    }
    *out = total;
    return 0;
}
