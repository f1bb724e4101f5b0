/* bloom.h: a Bloom filter (Bloom 1970) of 64-bit hashes for one-pass exact
 * dedup of corpora whose hashes do not fit in memory: sized from the
 * expected count n and false-positive rate p as m = -n ln p / (ln 2)^2 bits
 * and k = (m / n) ln 2 hash functions, derived from one hash by double
 * hashing g_i = h1 + i h2 mod m (Kirsch & Mitzenmacher 2006). */
#ifndef LLM_DATA_BLOOM_H
#define LLM_DATA_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#define LLM_BLOOM_MAX_BITS (1ULL << 43) /* 1 TiB: anything larger is a typo */

/* Embedded: init/release. */
struct llm_bloom {
    uint64_t *bits;    /* (words) the bit array, m bits rounded up to whole words */
    uint64_t m;        /* bits */
    uint64_t words;
    int k;             /* hash functions */
    uint64_t expected; /* n it was sized for */
    double fp_rate;    /* p it was sized for */
    uint64_t added;    /* hashes added that were not (apparently) present */
};

/* expected >= 1, fp_rate in (0, 0.5]. Returns 0, LLM_EINVAL (absurd size) or
 * LLM_ENOMEM (naming the size). The bits are calloc'd, so untouched pages
 * cost no memory until used. */
int llm_bloom_init(struct llm_bloom *b, uint64_t expected, double fp_rate);
void llm_bloom_release(struct llm_bloom *b);

/* Adds h: 1 if all its bits were already set (h was added before, or a false
 * positive), 0 if it is new. */
int llm_bloom_add(struct llm_bloom *b, uint64_t h);
/* 1 if h may have been added, 0 if it surely was not. */
int llm_bloom_has(const struct llm_bloom *b, uint64_t h);

/* The false-positive rate after `added` insertions: (1 - e^(-k added / m))^k. */
double llm_bloom_fp_now(const struct llm_bloom *b);
size_t llm_bloom_bytes(const struct llm_bloom *b);

#endif
