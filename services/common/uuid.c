/* uuid: v7 keeps a process-wide (milliseconds, counter) pair under a mutex so that two ids made
 * in the same millisecond still sort in creation order (RFC 9562 method 1: a 12-bit counter in
 * rand_a, seeded randomly each new millisecond with its top bit clear, so at least 2048 ids fit
 * in a millisecond before the counter overflows). On overflow, or when the wall clock steps
 * back, the stored millisecond is advanced instead: the timestamp may run slightly ahead of the
 * clock, but ordering is never broken. */
#include "uuid.h"

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hex.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t v7_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t v7_last_ms;
static uint16_t v7_counter;

static void sodium_start(void)
{
    if (sodium_init() < 0)
        abort();
}

/* The canonical text form: the 16 bytes as hex in groups of 4, 2, 2, 2 and 6 bytes (8-4-4-4-12
 * digits) joined by '-'. Each group's NUL is overwritten by the next dash. */
static void format(const uint8_t b[16], char out[UUID_STR_LEN])
{
    static const size_t groups[] = {4, 2, 2, 2, 6};
    size_t in = 0, o = 0;
    for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        if (g > 0)
            out[o++] = '-';
        hex_encode(b + in, groups[g], out + o);
        in += groups[g];
        o += 2 * groups[g];
    }
}

void uuid_v4(char out[UUID_STR_LEN])
{
    uint8_t b[16];
    pthread_once(&sodium_once, sodium_start);
    randombytes_buf(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    format(b, out);
}

void uuid_v7(char out[UUID_STR_LEN])
{
    uint8_t b[16];
    struct timespec ts;
    pthread_once(&sodium_once, sodium_start);
    randombytes_buf(b, sizeof(b));
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;

    pthread_mutex_lock(&v7_lock);
    if (ms > v7_last_ms) {
        v7_last_ms = ms;
        v7_counter = (uint16_t)(((b[6] << 8) | b[7]) & 0x07ff); /* leave room to count up */
    } else {
        ms = v7_last_ms; /* the clock went back or stood still: stay ordered */
        if (++v7_counter > 0x0fff) {
            v7_counter = 0;
            ms = ++v7_last_ms;
        }
    }
    uint16_t counter = v7_counter;
    pthread_mutex_unlock(&v7_lock);

    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0f));
    b[7] = (uint8_t)(counter & 0xff);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    format(b, out);
}

int uuid_valid(const char *s)
{
    if (s == NULL)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return s[36] == '\0';
}
