/* cpu_q8a8.c: linear_rows_q8a8 and linear_rows_q4a8 (backend.h), the decode
 * matmuls over int8 (or 4-bit) weights and int8 activations (W8A8, W4A8):
 * integer dot products per group.
 *
 * Why: linear_rows_q8 (cpu_q8.c) widens every int8 weight to a float for an
 * FMA, 3 instructions per 8 weights and output, so once the weights are 4x
 * smaller the step is bound by that arithmetic, not by memory (an int8 110M
 * decode step at 2 threads runs at ~65% of the bandwidth roofline, a 1.9M
 * speculative draft spends 84% of its step in it). Quantizing the
 * activations too, per group of the weights' size, turns a group into one
 * integer dot product: AVX-VNNI's vpdpbusd multiplies 32 byte pairs and sums
 * them in fours into 8 int32 lanes in one instruction (AVX2 without VNNI:
 * vpmaddubsw then vpmaddwd, the same lanes). llama.cpp's Q8_0 x Q8_0 dot
 * works the same way.
 *
 * Math (every path, bit for bit). Row n of x, group g (columns gG .. gG+G-1):
 *     amax = max |x[n, c]|;  sx[n,g] = amax / 127;
 *     qx[n, c] = nearbyint(x[n, c] * (127 / amax)) in [-127, 127]
 *     (amax < 2^-100, zero included: sx = 0, qx = 0; a NaN or infinity in
 *     the group: sx = NaN, qx = 0, so that row's outputs are NaN);
 *     8 lanes j: D_j = sum of qx[n,c] wq[o,c] over the columns c of the
 *     group with (c - gG) % 32 in 4j .. 4j+3    (exact, int32: vpdpbusd's
 *     lanes);
 *     t_j = fmaf((float)D_j, sx[n,g] * scales[o,g], t_j), g = 0, 1, ...
 *     (t_j from 0; the product of the two scales rounded first);
 *     out[n,o] = ((t0+t4) + (t2+t6)) + ((t1+t5) + (t3+t7)) + bias[o].
 * The D_j are exact whatever the order of their additions, and the float
 * steps are the same on every path, so the reference loops, the AVX2 and the
 * VNNI kernels give the same bits, for any N, row position and thread count.
 * Against linear_rows_q8 the difference is the rounding of x to 8 bits per
 * group (relative error up to 1/254 of the group's largest |x| per element).
 *
 * Kernels: the absolute weights |wq| (vpabsb: 128 fits an unsigned byte) as
 * the unsigned operand and the activations with the weights' signs
 * (vpsignb: |qx| <= 127 fits a signed byte) as the signed one, so every int8
 * weight, -128 included, is exact; pair sums stay within int16 for
 * vpmaddubsw (2 x 128 x 127 < 32767). Per group, output and row: one
 * vpsignb and one vpdpbusd per 32 columns (two dots without VNNI), a
 * convert, the scales' product and one FMA, against 12 instructions per 32
 * weights in linear_rows_q8; outputs in blocks of 4, rows two at a time
 * (8 accumulators), each weight row's |wq| computed once for both; weights
 * prefetched 8 KB ahead in matrices too big to stay in cache. Threads:
 * cpu_parfor_steal over the output blocks, as linear_rows_q8.
 *
 * W4A8 (linear_rows_q4a8): Q4 weights (infer/quant.h: the code q + 8 of
 * column c in the low nibble of byte c/2 for even c, the high one for odd
 * c; G = 32). The unsigned operand is the group's 16 bytes split into their
 * low then their high nibbles (q + 8 in 0..15: even columns, then odd
 * ones), so x's 32 bytes are put in that order once per call: column i of a
 * group goes to byte i/2 + 16 (i % 2), and lane j holds bytes 4j .. 4j+3 of
 * that order. The dot gives sum (q + 8) qx per lane; 8 times the lane sums
 * of qx (a dot with a vector of ones, once per row and group) come off, so
 * D_j = sum q qx exactly; the float steps are W8A8's. vpmaddubsw's pair
 * sums are at most 2 x 15 x 127. */
#include "cpu_impl.h"
#include "core/err.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

/* Outputs per block: the unit of the thread split. */
#define OBLK 4
/* Rows per pass over a block's weights: 2 x 4 accumulators in registers. */
#define RPASS 2
/* Software prefetch distance into each weight row, in bytes (as cpu_q8.c:
 * without it the kernel waits on memory once the weights leave the caches:
 * 110M shapes at 2 threads ran at 0.8x the weight-only kernel). Only for
 * matrices of PF_MIN bytes or more: a small model's weights stay in cache,
 * where the prefetches cost ~5% (the 1.9M draft's step). */
#define PF_DIST 8192
#define PF_MIN (256 * 1024)

/* ---- activations ------------------------------------------------------- */

/* Below this largest |x| a group counts as zero (127 / amax would overflow
 * near 2^-120; such activations add under 2^-100 of any weight's size). */
#define AMAX_MIN 0x1p-100f

/* The group's scale from amax (bad: a NaN or infinity seen), and 127 / amax
 * (0: the group's codes are all 0). */
static inline float group_scale(float amax, int bad, float *inv)
{
    if (bad || amax < AMAX_MIN) {
        *inv = 0.0f;
        return bad ? NAN : 0.0f;
    }
    *inv = 127.0f / amax;
    return amax / 127.0f;
}

/* x (N, C) to qx (N, C) and sx (N, C / G), the math in the header. */
static void quantize_rows(const float *x, int N, int C, int G, int8_t *qx, float *sx)
{
    for (long ng = 0; ng < (long)N * (C / G); ng++) {
        const float *xg = x + ng * G;
        int8_t *qg = qx + ng * G;
        float amax = 0.0f, inv;
        int bad = 0;
        for (int i = 0; i < G; i++) {
            float a = fabsf(xg[i]);
            bad |= !(a <= 3.4028235e38f); /* NaN or infinity */
            amax = a > amax ? a : amax;
        }
        sx[ng] = group_scale(amax, bad, &inv);
        for (int i = 0; i < G; i++) /* inv = 0: x may be NaN, whose conversion is undefined */
            qg[i] = inv == 0.0f ? 0 : (int8_t)nearbyintf(xg[i] * inv);
    }
}

/* The same with AVX2: max |x| is exact in any order, and vcvtps2dq rounds
 * to nearest even as nearbyintf does in the default rounding mode. */
AVX2_FN static void quantize_rows_avx2(const float *x, int N, int C, int G, int8_t *qx, float *sx)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(3.4028235e38f);
    for (long ng = 0; ng < (long)N * (C / G); ng++) {
        const float *xg = x + ng * G;
        __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
        for (int i = 0; i < G; i += 8) {
            __m256 a = _mm256_and_ps(_mm256_loadu_ps(xg + i), absm);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ)); /* !(a <= big) */
            m = _mm256_max_ps(m, a);
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float inv;
        sx[ng] = group_scale(_mm_cvtss_f32(h), _mm256_movemask_ps(bad) != 0, &inv);
        __m256 iv = _mm256_set1_ps(inv);
        for (int i = 0; i < G; i += 32) {
            if (inv == 0.0f) {
                _mm256_storeu_si256((__m256i *)(qx + ng * G + i), _mm256_setzero_si256());
                continue;
            }
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i), iv));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i + 8), iv));
            __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i + 16), iv));
            __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + i + 24), iv));
            /* packs work per 128-bit lane: the permute puts the bytes back in order */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(qx + ng * G + i), p);
        }
    }
}

/* ---- reference --------------------------------------------------------- */

/* Q4: the code of column col of a row (low nibble for even col); its lane
 * is (i / 2 + 16 (i % 2)) / 4 for column i of a group (the W4A8 order in the
 * header). */
static inline int q4_code(const uint8_t *row, size_t col)
{
    uint8_t b = row[col / 2];
    return (col % 2 ? b >> 4 : b & 15) - 8;
}

static void q8a8_ref(const struct cpu_ctx *c, float *out, const int8_t *qx, const float *sx,
                     const uint8_t *wq, const float *scales, const float *bias, int N, int C, int OC,
                     int G, int q4)
{
    int NG = C / G;
    size_t row = q4 ? (size_t)C / 2 : (size_t)C;
    CPU_PARFOR(c->threads,
        for (int o = 0; o < OC; o++)
            for (int n = 0; n < N; n++) {
                float t[8] = {0};
                for (int g = 0; g < NG; g++) {
                    int32_t d[8] = {0};
                    for (int i = 0; i < G; i++) {
                        size_t col = (size_t)g * G + i;
                        int32_t xv = qx[(size_t)n * C + col];
                        if (q4)
                            d[(i / 2 + 16 * (i % 2)) / 4] += xv * q4_code(wq + (size_t)o * row, col);
                        else
                            d[(i % 32) / 4] += xv * (int8_t)wq[(size_t)o * row + col];
                    }
                    float s = sx[(size_t)n * NG + g] * scales[(size_t)o * NG + g];
                    for (int l = 0; l < 8; l++)
                        t[l] = fmaf((float)d[l], s, t[l]);
                }
                float v = ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
                out[(size_t)n * OC + o] = bias ? v + bias[o] : v;
            });
}

/* ---- AVX2 (+ VNNI) ------------------------------------------------------ */

struct q8a8_job {
    float *out;
    const int8_t *qx;  /* (N, C) the quantized activations (Q4: in the codes' order) */
    const uint8_t *wq; /* int8 codes (OC, C), or Q4's packed nibbles (OC, C / 2) */
    const float *sx, *scales, *bias;
    int N, C, OC, G;
    int q4; /* wq is Q4 (G = 32) */
    int pf; /* prefetch the weights (a matrix of PF_MIN bytes or more) */
};

/* acc += |w| . (x signed like w), 32 byte pairs in 8 int32 lanes of 4. */
AVX2_INLINE __m256i dot_avx2(__m256i acc, __m256i wabs, __m256i xs)
{
    __m256i p16 = _mm256_maddubs_epi16(wabs, xs);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* dot_vnni: the same as dot_avx2 in one instruction. */
__attribute__((target("avx2,fma,avxvnni"), always_inline)) static inline __m256i
dot_vnni(__m256i acc, __m256i wabs, __m256i xs)
{
    return _mm256_dpbusd_avx_epi32(acc, wabs, xs);
}

/* The kernel twice (cpu_q8a8_kern.h): with dot_avx2, and with dot_vnni
 * compiled for AVX-VNNI. */
#define Q8A8_TARGET "avx2,fma"
#define Q8A8_DOT dot_avx2
#define Q8A8_PASS pass_avx2
#define Q8A8_BLOCK block_avx2
#define Q8A8_BLOCKS blocks_avx2
#include "cpu_q8a8_kern.h"
#undef Q8A8_TARGET
#undef Q8A8_DOT
#undef Q8A8_PASS
#undef Q8A8_BLOCK
#undef Q8A8_BLOCKS
#define Q8A8_TARGET "avx2,fma,avxvnni"
#define Q8A8_DOT dot_vnni
#define Q8A8_PASS pass_vnni
#define Q8A8_BLOCK block_vnni
#define Q8A8_BLOCKS blocks_vnni
#include "cpu_q8a8_kern.h"

/* Both ops: check, quantize x, run. */
static int rows_a8(struct cpu_ctx *c, const char *op, float *out, const float *x, const uint8_t *wq,
                   const float *scales, const float *bias, int N, int C, int OC, int G, int q4)
{
    int rc = cpu_check_dims(op, N, C);
    if (rc || (rc = cpu_check_dims(op, N, OC)))
        return rc;
    if (G != 32 && G != 64)
        return llm_err(LLM_EINVAL, "%s: group size %d must be 32 or 64", op, G);
    if (C % G)
        return llm_err(LLM_EINVAL, "%s: width %d is not a multiple of the group size %d", op, C, G);
    if (N == 0)
        return 0;
    int8_t *qx = llm_malloc((size_t)N * C, "the quantized activations");
    float *sx = llm_malloc((size_t)N * (C / G) * sizeof(float), "the activations' scales");
    if (!qx || !sx) {
        free(qx), free(sx);
        return LLM_ENOMEM;
    }
    if (c->ref || !cpu_has_avx2()) {
        quantize_rows(x, N, C, G, qx, sx);
        q8a8_ref(c, out, qx, sx, wq, scales, bias, N, C, OC, G, q4);
    } else {
        quantize_rows_avx2(x, N, C, G, qx, sx);
        if (q4) /* the kernel's operand order: each group's even columns, then its odd ones */
            for (size_t g0 = 0; g0 < (size_t)N * C; g0 += 32) {
                int8_t t[32];
                for (int i = 0; i < 32; i++)
                    t[i / 2 + 16 * (i % 2)] = qx[g0 + i];
                memcpy(qx + g0, t, 32);
            }
        size_t bytes = q4 ? (size_t)OC * C / 2 : (size_t)OC * C;
        struct q8a8_job j = {out, qx, wq, sx, scales, bias, N, C, OC, G, q4, bytes >= PF_MIN};
        int nt = cpu_nthreads(c, (size_t)OC * C);
        cpu_parfor_steal(nt, (OC + OBLK - 1) / OBLK, cpu_steal_chunk(OBLK * bytes / OC),
                         cpu_has_avxvnni() ? blocks_vnni : blocks_avx2, &j);
    }
    free(qx), free(sx);
    return 0;
}

int cpu_linear_rows_q8a8(void *ctx, float *out, const float *x, const int8_t *wq,
                         const float *scales, const float *bias, int N, int C, int OC, int G)
{
    return rows_a8(cpu(ctx), "linear_rows_q8a8", out, x, (const uint8_t *)wq, scales, bias, N, C, OC, G, 0);
}

int cpu_linear_rows_q4a8(void *ctx, float *out, const float *x, const uint8_t *wq,
                         const float *scales, const float *bias, int N, int C, int OC)
{
    return rows_a8(cpu(ctx), "linear_rows_q4a8", out, x, wq, scales, bias, N, C, OC, 32, 1);
}
