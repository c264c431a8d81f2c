/* lg_hist: a latency histogram for the load generator, HDR-style (log-linear buckets).
 *
 * Values are microseconds (any unsigned 64-bit count). Values below 2^LG_HIST_SUB_BITS are
 * counted exactly; above, every power of two [2^m, 2^(m+1)) is cut into 2^LG_HIST_SUB_BITS
 * equal buckets, so a reported value is never more than 1/2^LG_HIST_SUB_BITS (0.4 %) above the
 * true one whatever its magnitude, and memory is fixed (LG_HIST_BUCKETS counters, about 70 KB)
 * however many values are recorded. Values of LG_HIST_MAX_US or more are counted in the last
 * bucket (the exact maximum is kept apart, so `max` stays true).
 *
 * A percentile is the upper edge of the bucket holding the ceil(p/100 * count)-th smallest value
 * (HdrHistogram's "highest equivalent value"), capped at the exact maximum; percentile 0 gives
 * the exact minimum. An empty histogram answers 0.
 *
 * Ownership: a lg_hist_t is a plain struct the caller places anywhere (it is large: allocate
 * it, or make it static); lg_hist_init zeroes it. Threading: none. */
#ifndef PETSTORE_LG_HIST_H
#define PETSTORE_LG_HIST_H

#include <stdint.h>

#define LG_HIST_SUB_BITS 8
#define LG_HIST_SUB (1u << LG_HIST_SUB_BITS)
#define LG_HIST_MAX_BITS 40 /* 2^40 us: about 12.7 days */
#define LG_HIST_MAX_US (UINT64_C(1) << LG_HIST_MAX_BITS)
#define LG_HIST_BUCKETS ((LG_HIST_MAX_BITS - LG_HIST_SUB_BITS + 1) * LG_HIST_SUB)

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t count;
    uint64_t min; /* exact; meaningful when count > 0 */
    uint64_t max; /* exact */
    long double sum;
} lg_hist_t;

/* Empties h. */
void lg_hist_init(lg_hist_t *h);

/* Counts one value (microseconds). */
void lg_hist_record(lg_hist_t *h, uint64_t us);

/* The value at percentile p (0..100), in microseconds; see above. */
uint64_t lg_hist_percentile(const lg_hist_t *h, double p);

/* The mean in microseconds; 0 when empty. */
double lg_hist_mean(const lg_hist_t *h);

/* Bucket arithmetic, exposed for the unit tests: the bucket of a value and the largest value
 * that bucket holds. */
unsigned lg_hist_index(uint64_t us);
uint64_t lg_hist_upper(unsigned index);

#endif
