/* minhash.h: MinHash signatures of shingle sets (Broder 1997), the Jaccard
 * similarity they estimate, and the banding of locality-sensitive hashing
 * (Leskovec, Rajaraman & Ullman, Mining of Massive Datasets, ch. 3): how
 * many bands of how many rows, and the key of each band. The index that
 * groups documents by band keys is lib/data/lsh.h. */
#ifndef LLM_DATA_MINHASH_H
#define LLM_DATA_MINHASH_H

#include <stddef.h>
#include <stdint.h>

#define LLM_MINHASH_MAX_PERM 1024

/* num_perm hash functions h_i(x) = ((a_i x + b_i) mod 2^64) >> 32 of 32-bit
 * shingle hashes x, with a_i, b_i uniform 64-bit numbers drawn from the seed:
 * the multiply-add-shift family of Dietzfelbinger (1996), which is
 * 2-independent (strongly universal) from 32-bit keys to 32-bit values.
 * Embedded: init/release. */
struct llm_minhash {
    int num_perm;
    uint64_t *a;    /* (num_perm) multipliers */
    uint64_t *a_hi; /* (num_perm) a >> 32 (the vector path multiplies 32-bit halves) */
    uint64_t *b;    /* (num_perm) offsets */
    uint64_t *b_s;  /* (num_perm) b + 2^63: makes a signed 64-bit compare order unsigned values */
    int simd;       /* the path chosen at init from the CPU: 2 AVX-512, 1 AVX2, 0 plain C */
};

/* num_perm in 1..LLM_MINHASH_MAX_PERM. Returns 0, LLM_EINVAL or LLM_ENOMEM. */
int llm_minhash_init(struct llm_minhash *m, int num_perm, uint64_t seed);
void llm_minhash_release(struct llm_minhash *m);

/* sig[i] = min over the n shingle hashes x of h_i(x), for i < num_perm; all
 * UINT32_MAX when n is 0. The AVX-512, AVX2 and plain paths give the same bits.
 * Thread-safe (m is only read). */
void llm_minhash_sign(const struct llm_minhash *m, const uint32_t *x, size_t n, uint32_t *sig);
/* The plain C path, always (the reference the tests hold the AVX2 path to). */
void llm_minhash_sign_ref(const struct llm_minhash *m, const uint32_t *x, size_t n, uint32_t *sig);

/* The fraction of equal positions of two signatures: an unbiased estimate of
 * the Jaccard similarity |A n B| / |A u B| of their shingle sets, with
 * variance J(1-J)/num_perm. */
double llm_minhash_jaccard(const uint32_t *s1, const uint32_t *s2, int num_perm);

/* The probability that two sets of Jaccard similarity s share at least one
 * band key with `bands` bands of `rows` rows: 1 - (1 - s^rows)^bands. */
double llm_lsh_prob(double s, int bands, int rows);

/* Bands and rows (bands * rows <= num_perm) minimizing
 *   fp_weight * integral_0^t P(s) ds + fn_weight * integral_t^1 (1 - P(s)) ds,
 * the weighted probability mass of false positives and false negatives
 * around threshold t (datasketch's rule; Simpson's rule on 256 intervals). */
void llm_lsh_params(double threshold, int num_perm, double fp_weight, double fn_weight, int *bands,
                    int *rows);

/* The key of band `band` (rows values from sig + band * rows): equal bands
 * give equal keys; different ones collide with probability about 2^-64. */
uint64_t llm_lsh_band_key(const uint32_t *sig, int band, int rows);

#endif
