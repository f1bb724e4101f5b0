/* minhash.c: MinHash signatures (a plain C path and an AVX2 one chosen at run
 * time, bit-identical), their Jaccard estimate, and the LSH band choice. */
#include "minhash.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "shingle.h"

int llm_minhash_init(struct llm_minhash *m, int num_perm, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    if (num_perm < 1 || num_perm > LLM_MINHASH_MAX_PERM)
        return llm_err(LLM_EINVAL, "%d permutations: expected 1..%d", num_perm, LLM_MINHASH_MAX_PERM);
    size_t n = (size_t)num_perm;
    m->a = malloc(n * sizeof(*m->a));
    m->a_hi = malloc(n * sizeof(*m->a_hi));
    m->b = malloc(n * sizeof(*m->b));
    m->b_s = malloc(n * sizeof(*m->b_s));
    if (!m->a || !m->a_hi || !m->b || !m->b_s) {
        llm_minhash_release(m);
        return llm_err(LLM_ENOMEM, "out of memory for %d permutations", num_perm);
    }
    m->num_perm = num_perm;
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        m->a[i] = llm_rng_u64(&r);
        m->b[i] = llm_rng_u64(&r);
        m->a_hi[i] = m->a[i] >> 32;
        m->b_s[i] = m->b[i] + (1ULL << 63);
    }
    __builtin_cpu_init();
    m->simd = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
    return 0;
}

void llm_minhash_release(struct llm_minhash *m)
{
    free(m->a), free(m->a_hi), free(m->b), free(m->b_s);
    memset(m, 0, sizeof(*m));
}

/* The minimum of a x + b (mod 2^64) over x is what matters: its top 32 bits
 * are the minimum of the top 32 bits, so the shift waits until the end. */
void llm_minhash_sign_ref(const struct llm_minhash *m, const uint32_t *x, size_t n, uint32_t *sig)
{
    for (int i = 0; i < m->num_perm; i++) {
        uint64_t a = m->a[i], b = m->b[i], lo = UINT64_MAX;
        for (size_t j = 0; j < n; j++) {
            uint64_t v = a * x[j] + b;
            lo = v < lo ? v : lo;
        }
        sig[i] = (uint32_t)(lo >> 32);
    }
}

/* Eight hash functions at a time, their running minima in two registers of
 * four 64-bit lanes, over every shingle. AVX2 multiplies only 32x32 -> 64
 * bits, so a x mod 2^64 = a_lo x + ((a_hi x) << 32). It has no unsigned
 * 64-bit compare either: with b + 2^63 in place of b every value has its top
 * bit flipped, and the signed order of flipped values is the unsigned order. */
__attribute__((target("avx2"))) static void sign_avx2(const struct llm_minhash *m, const uint32_t *x,
                                                      size_t n, uint32_t *sig)
{
    int i = 0;
    for (; i + 8 <= m->num_perm; i += 8) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(m->a + i));
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)(m->a + i + 4));
        const __m256i h0 = _mm256_loadu_si256((const __m256i *)(m->a_hi + i));
        const __m256i h1 = _mm256_loadu_si256((const __m256i *)(m->a_hi + i + 4));
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(m->b_s + i));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(m->b_s + i + 4));
        __m256i lo0 = _mm256_set1_epi64x(INT64_MAX), lo1 = lo0;
        for (size_t j = 0; j < n; j++) {
            const __m256i v = _mm256_set1_epi64x((long long)x[j]);
            __m256i p0 = _mm256_add_epi64(_mm256_mul_epu32(a0, v),
                                          _mm256_slli_epi64(_mm256_mul_epu32(h0, v), 32));
            __m256i p1 = _mm256_add_epi64(_mm256_mul_epu32(a1, v),
                                          _mm256_slli_epi64(_mm256_mul_epu32(h1, v), 32));
            p0 = _mm256_add_epi64(p0, b0);
            p1 = _mm256_add_epi64(p1, b1);
            lo0 = _mm256_blendv_epi8(lo0, p0, _mm256_cmpgt_epi64(lo0, p0));
            lo1 = _mm256_blendv_epi8(lo1, p1, _mm256_cmpgt_epi64(lo1, p1));
        }
        uint64_t out[8];
        _mm256_storeu_si256((__m256i *)out, lo0);
        _mm256_storeu_si256((__m256i *)(out + 4), lo1);
        for (int k = 0; k < 8; k++)
            sig[i + k] = (uint32_t)((out[k] ^ (1ULL << 63)) >> 32);
    }
    if (i < m->num_perm) { /* the last num_perm % 8 functions */
        struct llm_minhash rest = *m;
        rest.num_perm = m->num_perm - i;
        rest.a += i, rest.a_hi += i, rest.b += i, rest.b_s += i;
        llm_minhash_sign_ref(&rest, x, n, sig + i);
    }
}

/* The same with AVX-512: eight lanes, and a native unsigned 64-bit minimum
 * (no sign flip needed). */
__attribute__((target("avx512f"))) static void sign_avx512(const struct llm_minhash *m, const uint32_t *x,
                                                           size_t n, uint32_t *sig)
{
    int i = 0;
    for (; i + 16 <= m->num_perm; i += 16) {
        const __m512i a0 = _mm512_loadu_si512(m->a + i), a1 = _mm512_loadu_si512(m->a + i + 8);
        const __m512i h0 = _mm512_loadu_si512(m->a_hi + i), h1 = _mm512_loadu_si512(m->a_hi + i + 8);
        const __m512i b0 = _mm512_loadu_si512(m->b + i), b1 = _mm512_loadu_si512(m->b + i + 8);
        __m512i lo0 = _mm512_set1_epi64(-1), lo1 = lo0;
        for (size_t j = 0; j < n; j++) {
            const __m512i v = _mm512_set1_epi64((long long)x[j]);
            __m512i p0 = _mm512_add_epi64(_mm512_mul_epu32(a0, v), _mm512_slli_epi64(_mm512_mul_epu32(h0, v), 32));
            __m512i p1 = _mm512_add_epi64(_mm512_mul_epu32(a1, v), _mm512_slli_epi64(_mm512_mul_epu32(h1, v), 32));
            lo0 = _mm512_min_epu64(lo0, _mm512_add_epi64(p0, b0));
            lo1 = _mm512_min_epu64(lo1, _mm512_add_epi64(p1, b1));
        }
        uint64_t out[16];
        _mm512_storeu_si512(out, lo0);
        _mm512_storeu_si512(out + 8, lo1);
        for (int k = 0; k < 16; k++)
            sig[i + k] = (uint32_t)(out[k] >> 32);
    }
    if (i < m->num_perm) {
        struct llm_minhash rest = *m;
        rest.num_perm = m->num_perm - i;
        rest.a += i, rest.a_hi += i, rest.b += i, rest.b_s += i;
        sign_avx2(&rest, x, n, sig + i);
    }
}

void llm_minhash_sign(const struct llm_minhash *m, const uint32_t *x, size_t n, uint32_t *sig)
{
    if (m->simd == 2)
        sign_avx512(m, x, n, sig);
    else if (m->simd == 1)
        sign_avx2(m, x, n, sig);
    else
        llm_minhash_sign_ref(m, x, n, sig);
}
double llm_minhash_jaccard(const uint32_t *s1, const uint32_t *s2, int num_perm)
{
    int eq = 0;
    for (int i = 0; i < num_perm; i++)
        eq += s1[i] == s2[i];
    return (double)eq / num_perm;
}

double llm_lsh_prob(double s, int bands, int rows)
{
    return 1.0 - pow(1.0 - pow(s, rows), bands);
}

/* Simpson's rule for the integral of P (or 1 - P) over [lo, hi]. */
static double mass(double lo, double hi, int bands, int rows, int complement)
{
    const int N = 256; /* even */
    double h = (hi - lo) / N, sum = 0;
    for (int i = 0; i <= N; i++) {
        double p = llm_lsh_prob(lo + i * h, bands, rows);
        sum += (i == 0 || i == N ? 1 : i % 2 ? 4 : 2) * (complement ? 1 - p : p);
    }
    return sum * h / 3;
}

void llm_lsh_params(double threshold, int num_perm, double fp_weight, double fn_weight, int *bands,
                    int *rows)
{
    double best = INFINITY;
    *bands = 1, *rows = num_perm;
    for (int b = 1; b <= num_perm; b++)
        for (int r = 1; r <= num_perm / b; r++) {
            double e = fp_weight * mass(0, threshold, b, r, 0) + fn_weight * mass(threshold, 1, b, r, 1);
            if (e < best)
                best = e, *bands = b, *rows = r;
        }
}

uint64_t llm_lsh_band_key(const uint32_t *sig, int band, int rows)
{
    return llm_hash64(sig + (size_t)band * (size_t)rows, (size_t)rows * sizeof(*sig),
                      0x9e3779b97f4a7c15ULL * (uint64_t)(band + 1));
}
