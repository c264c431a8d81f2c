/* lg_hist: log-linear latency histogram; see lg_hist.h.
 *
 * Bucket layout: group 0 holds the values 0 .. SUB-1 one per bucket. For a value v >= SUB with
 * highest set bit m, shift = m - SUB_BITS; v >> shift lies in [SUB, 2*SUB), so the bucket is
 * (shift + 1) * SUB + (v >> shift) - SUB: group shift+1, buckets 2^shift wide. The last group
 * ends at 2^MAX_BITS - 1; larger values are clamped into the last bucket. */
#include "lg_hist.h"

#include <string.h>

static unsigned high_bit(uint64_t v) { return 63u - (unsigned)__builtin_clzll(v); }

unsigned lg_hist_index(uint64_t us)
{
    if (us >= LG_HIST_MAX_US)
        return LG_HIST_BUCKETS - 1;
    if (us < LG_HIST_SUB)
        return (unsigned)us;
    unsigned shift = high_bit(us) - LG_HIST_SUB_BITS;
    return (shift + 1) * LG_HIST_SUB + (unsigned)(us >> shift) - LG_HIST_SUB;
}

uint64_t lg_hist_upper(unsigned index)
{
    if (index < LG_HIST_SUB)
        return index;
    unsigned group = index / LG_HIST_SUB;
    unsigned sub = index % LG_HIST_SUB;
    unsigned shift = group - 1;
    uint64_t low = (uint64_t)(sub + LG_HIST_SUB) << shift;
    return low + (UINT64_C(1) << shift) - 1;
}

void lg_hist_init(lg_hist_t *h) { memset(h, 0, sizeof(*h)); }

void lg_hist_record(lg_hist_t *h, uint64_t us)
{
    h->counts[lg_hist_index(us)]++;
    if (h->count == 0 || us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
    h->count++;
    h->sum += (long double)us;
}

uint64_t lg_hist_percentile(const lg_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p <= 0.0)
        return h->min;
    if (p >= 100.0)
        return h->max;
    /* The rank of the wanted value, 1-based: ceil(p/100 * count), at least 1. The product is
     * rounded down by a hair first, so that 99.9 % of 1000 is rank 999 and not, through binary
     * floating point (999.0000000000001), rank 1000. */
    double exact = p / 100.0 * (double)h->count - 1e-9;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = lg_hist_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

double lg_hist_mean(const lg_hist_t *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}
