/* cpu_q8.c: linear_rows_q8 (backend.h), the decode matmul over int8 weights:
 * out (N, OC) = x (N, C) @ w (OC, C)^T + bias, w[o,c] = wq[o,c] * scales[o, c/G].
 *
 * Why: a decode step at batch 1 is the time to stream the weights from memory
 * (cpu_gemv.c). Stored as int8 plus one fp32 scale per G weights they take
 * 1 + 4/G bytes per weight (1.125 at G = 32, 1.0625 at G = 64) instead of 4:
 * 3.6x / 3.8x fewer bytes for the same 2 N C OC FLOPs. Activations stay fp32.
 *
 * Summation order: exactly that of linear_rows (cpu_gemv.c) on the
 * dequantized weights w' = (float)wq * scale (the float product, the values
 * llm_dequant_q8 writes). Each weight is rebuilt in a register as that
 * product, then used as linear_rows uses w:
 *     lane j (j < 8) = fma chain over k of x[n, 8k+j] * w'[o, 8k+j];
 *     s = ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7));   out = s + bias[o].
 * (C % G == 0 with G a multiple of 8, so there is no partial lane block.) So
 * on each path this gives the bits of linear_rows(x, w') on the same path,
 * and inherits its contract: each out[n,o] depends only on x[n,:] and row o,
 * not on N, the other rows, the register blocking or the thread count. The
 * reference path (ctx->ref) and the scalar fallback likewise match
 * linear_rows' reference loop and scalar fallback on w'.
 *
 * Cost per 8 weights of one output: one 8-byte load, a sign extension to
 * int32 (vpmovsxbd), a convert (vcvtdq2ps) and a multiply by the group's
 * scale, shared by the R rows of x in the register block, then R FMAs. The
 * scale multiply (instead of scaling a per-group partial sum) is what keeps
 * the order equal to linear_rows'; it costs one vector op per 8 weights,
 * well inside the core's budget at the memory-bound N = 1 (bench/q8_bench.c).
 *
 * Blocking (as cpu_gemv.c): outputs in blocks of 4 split statically over the
 * OpenMP threads (contiguous ranges of wq: each thread streams one run); per
 * block all N rows of x go through 4 (then 3, 2, 1) rows at a time in kernels
 * of R rows x O outputs of 8-lane accumulators (4x2, 3x2, 2x4, 1x4). The 4
 * int8 rows of a block (4 C bytes) stay in L1 across the row blocks, so
 * memory sees wq and scales once per call. */
#include "cpu_impl.h"
#include "core/err.h"

#include <immintrin.h>
#include <stdint.h>

#define AVX2_FN __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

/* Outputs per block: the unit of the thread split and of weight reuse. */
#define OBLK 4
/* Rows of x per register block. */
#define RBLK 4
/* Software prefetch distance into wq, in bytes (8 cache lines ahead). */
#define PF_DIST 512

/* ---- reference --------------------------------------------------------- */

/* One float accumulator per element, i = 0..C-1 in order, bias last; the
 * weight is rebuilt as the float product wq * scale first. */
static void q8_ref(const struct cpu_ctx *c, float *out, const float *x, const int8_t *wq,
                   const float *scales, const float *bias, int N, int C, int OC, int G)
{
    int NG = C / G;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int o = 0; o < OC; o++) {
        const int8_t *wr = wq + (size_t)o * C;
        const float *sr = scales + (size_t)o * NG;
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            float acc = 0.0f;
            for (int i = 0; i < C; i++) {
                float w = (float)wr[i] * sr[i / G];
                acc += xr[i] * w;
            }
            out[(size_t)n * OC + o] = bias ? acc + bias[o] : acc;
        }
    }
}

/* ---- AVX2 + FMA -------------------------------------------------------- */

/* The fixed reduction of the 8 lanes: ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). */
AVX2_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 weights rebuilt: (float)q[0..7] * s. */
AVX2_INLINE __m256 deq8(const int8_t *q, __m256 s)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)q);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s);
}

/* R rows (x, stride C) by O outputs (wq, stride C; scales, stride NG):
 * out[r, o] (stride OC) = the lane sums above + bias. R, O and G are
 * constants at each call site, so the loops unroll into R*O accumulators.
 * pf: prefetch PF_DIST bytes ahead in each weight row (the first pass over
 * a block, which is the one memory serves). */
AVX2_INLINE void kern(int R, int O, int G, float *out, const float *x, const int8_t *wq,
                      const float *sc, const float *bias, int C, int OC, int pf)
{
    int NG = C / G;
    __m256 acc[RBLK][OBLK];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            acc[r][o] = _mm256_setzero_ps();
    for (int g = 0; g < NG; g++) {
        int i0 = g * G;
        __m256 s[OBLK];
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            s[o] = _mm256_broadcast_ss(sc + (size_t)o * NG + g);
            if (pf && (i0 & 63) == 0) /* one prefetch per 64-byte line */
                for (int b = 0; b < G; b += 64)
                    _mm_prefetch((const char *)(wq + (size_t)o * C + i0 + b + PF_DIST),
                                 _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int i = i0; i < i0 + G; i += 8) {
            __m256 wv[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                wv[o] = deq8(wq + (size_t)o * C + i, s[o]);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)r * C + i);
#pragma GCC unroll 4
                for (int o = 0; o < O; o++)
                    acc[r][o] = _mm256_fmadd_ps(xv, wv[o], acc[r][o]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float v = hsum8(acc[r][o]);
            out[(size_t)r * OC + o] = bias ? v + bias[o] : v;
        }
}

/* All N rows through the outputs o0 .. o0+O-1 (O <= OBLK), RBLK rows at a
 * time; wq, sc and bias point at output o0. */
AVX2_INLINE void oblock(int G, int O, float *out, const float *x, const int8_t *wq,
                        const float *sc, const float *bias, int N, int C, int OC)
{
    int NG = C / G, n = 0;
    if (O == OBLK) {
        const int8_t *wq2 = wq + 2 * (size_t)C;
        const float *sc2 = sc + 2 * (size_t)NG, *b2 = bias ? bias + 2 : NULL;
        for (; n + RBLK <= N; n += RBLK) {
            float *op = out + (size_t)n * OC;
            const float *xp = x + (size_t)n * C;
            kern(4, 2, G, op, xp, wq, sc, bias, C, OC, n == 0);
            kern(4, 2, G, op + 2, xp, wq2, sc2, b2, C, OC, n == 0);
        }
        float *op = out + (size_t)n * OC;
        const float *xp = x + (size_t)n * C;
        switch (N - n) {
        case 3:
            kern(3, 2, G, op, xp, wq, sc, bias, C, OC, n == 0);
            kern(3, 2, G, op + 2, xp, wq2, sc2, b2, C, OC, n == 0);
            break;
        case 2:
            kern(2, 4, G, op, xp, wq, sc, bias, C, OC, n == 0);
            break;
        case 1:
            kern(1, 4, G, op, xp, wq, sc, bias, C, OC, n == 0);
            break;
        }
        return;
    }
    /* the last, partial block of outputs: one at a time */
    for (int o = 0; o < O; o++) {
        const int8_t *wo = wq + (size_t)o * C;
        const float *so = sc + (size_t)o * NG, *bo = bias ? bias + o : NULL;
        for (n = 0; n + RBLK <= N; n += RBLK)
            kern(4, 1, G, out + (size_t)n * OC + o, x + (size_t)n * C, wo, so, bo, C, OC, 0);
        for (; n < N; n++)
            kern(1, 1, G, out + (size_t)n * OC + o, x + (size_t)n * C, wo, so, bo, C, OC, 0);
    }
}

AVX2_FN static void q8_avx2(const struct cpu_ctx *c, float *out, const float *x, const int8_t *wq,
                            const float *scales, const float *bias, int N, int C, int OC, int G)
{
    int NG = C / G;
    int nblk = (OC + OBLK - 1) / OBLK;
    /* weights touched decide the threads (the x reuse is cache traffic) */
    int nt = cpu_nthreads(c, (size_t)OC * C);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int b = 0; b < nblk; b++) {
        int o0 = b * OBLK;
        int O = OC - o0 < OBLK ? OC - o0 : OBLK;
        float *op = out + o0;
        const int8_t *wp = wq + (size_t)o0 * C;
        const float *sp = scales + (size_t)o0 * NG, *bp = bias ? bias + o0 : NULL;
        /* G as a constant: the group loop fully unrolls (4 or 8 steps) */
        if (G == 32)
            oblock(32, O, op, x, wp, sp, bp, N, C, OC);
        else
            oblock(64, O, op, x, wp, sp, bp, N, C, OC);
    }
}

/* ---- portable fallback (no AVX2 + FMA) ---------------------------------- */

/* linear_rows' scalar lane split (cpu_gemv.c dot_lanes) on the rebuilt
 * weights: multiply then add, C a multiple of 8. */
static float dot_lanes_q8(const float *x, const int8_t *wq, const float *sc, int C, int G)
{
    float l[8] = {0};
    for (int i = 0; i < C; i += 8) {
        float s = sc[i / G];
        for (int j = 0; j < 8; j++) {
            float w = (float)wq[i + j] * s;
            l[j] += x[i + j] * w;
        }
    }
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static void q8_plain(const struct cpu_ctx *c, float *out, const float *x, const int8_t *wq,
                     const float *scales, const float *bias, int N, int C, int OC, int G)
{
    int NG = C / G;
    int nt = cpu_nthreads(c, (size_t)OC * C);
    /* each weight row once from memory, then from L1 for the N rows */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int o = 0; o < OC; o++)
        for (int n = 0; n < N; n++) {
            float s = dot_lanes_q8(x + (size_t)n * C, wq + (size_t)o * C,
                                   scales + (size_t)o * NG, C, G);
            out[(size_t)n * OC + o] = bias ? s + bias[o] : s;
        }
}

int cpu_linear_rows_q8(void *ctx, float *out, const float *x, const int8_t *wq, const float *scales,
                       const float *bias, int N, int C, int OC, int G)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("linear_rows_q8", N, C);
    if (rc || (rc = cpu_check_dims("linear_rows_q8", N, OC)))
        return rc;
    if (G != 32 && G != 64)
        return llm_err(LLM_EINVAL, "linear_rows_q8: group size %d must be 32 or 64", G);
    if (C % G)
        return llm_err(LLM_EINVAL,
                       "linear_rows_q8: width %d is not a multiple of the group size %d", C, G);
    if (N == 0)
        return 0;
    if (c->ref)
        q8_ref(c, out, x, wq, scales, bias, N, C, OC, G);
    else if (cpu_has_avx2())
        q8_avx2(c, out, x, wq, scales, bias, N, C, OC, G);
    else
        q8_plain(c, out, x, wq, scales, bias, N, C, OC, G);
    return 0;
}
