/* bloom.c: the Bloom filter of bloom.h. */
#include "bloom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "shingle.h"

int llm_bloom_init(struct llm_bloom *b, uint64_t expected, double fp_rate)
{
    memset(b, 0, sizeof(*b));
    if (expected < 1)
        return llm_err(LLM_EINVAL, "a Bloom filter for %llu items: expected at least 1",
                       (unsigned long long)expected);
    if (!(fp_rate > 0 && fp_rate <= 0.5))
        return llm_err(LLM_EINVAL, "false-positive rate %g: expected a probability in (0, 0.5]", fp_rate);
    double ln2 = log(2.0), m = ceil(-(double)expected * log(fp_rate) / (ln2 * ln2));
    if (m > (double)LLM_BLOOM_MAX_BITS)
        return llm_err(LLM_EINVAL, "a Bloom filter for %llu items at false-positive rate %g needs %.3g GiB: "
                       "more than the %llu GiB allowed", (unsigned long long)expected, fp_rate,
                       m / 8 / (1 << 30), LLM_BLOOM_MAX_BITS / 8 / (1ULL << 30));
    b->words = ((uint64_t)m + 63) / 64;
    b->m = 64 * b->words; /* whole words: m even keeps the odd step non-zero */
    double k = round(m / (double)expected * ln2);
    b->k = k < 1 ? 1 : k > 64 ? 64 : (int)k;
    b->expected = expected, b->fp_rate = fp_rate;
    if (!(b->bits = calloc(b->words, sizeof(*b->bits))))
        return llm_err(LLM_ENOMEM, "out of memory for a Bloom filter of %.1f MiB",
                       (double)b->words * 8 / (1 << 20));
    return 0;
}

void llm_bloom_release(struct llm_bloom *b)
{
    free(b->bits);
    memset(b, 0, sizeof(*b));
}

/* The first of h's k positions, g_0 = h1 mod m, and the step h2 mod m that
 * gives the next ones, g_{i+1} = g_i + h2 mod m. h2 comes from a second mix
 * of h and is odd, and m is a multiple of 64, so the step is never 0. */
static inline uint64_t first_bit(const struct llm_bloom *b, uint64_t h, uint64_t *step)
{
    *step = (llm_hash_mix64(h ^ 0x5bd1e995ULL) | 1) % b->m;
    return h % b->m;
}

static inline uint64_t next_bit(const struct llm_bloom *b, uint64_t g, uint64_t step)
{
    return g + step >= b->m ? g + step - b->m : g + step;
}

int llm_bloom_add(struct llm_bloom *b, uint64_t h)
{
    uint64_t step, g = first_bit(b, h, &step);
    int seen = 1;
    for (int i = 0; i < b->k; i++, g = next_bit(b, g, step)) {
        uint64_t bit = 1ULL << (g & 63);
        if (!(b->bits[g >> 6] & bit)) {
            seen = 0;
            b->bits[g >> 6] |= bit;
        }
    }
    if (!seen)
        b->added++;
    return seen;
}

int llm_bloom_has(const struct llm_bloom *b, uint64_t h)
{
    uint64_t step, g = first_bit(b, h, &step);
    for (int i = 0; i < b->k; i++, g = next_bit(b, g, step))
        if (!(b->bits[g >> 6] & (1ULL << (g & 63))))
            return 0;
    return 1;
}

double llm_bloom_fp_now(const struct llm_bloom *b)
{
    return pow(1.0 - exp(-(double)b->k * (double)b->added / (double)b->m), b->k);
}

size_t llm_bloom_bytes(const struct llm_bloom *b)
{
    return (size_t)b->words * sizeof(*b->bits);
}
