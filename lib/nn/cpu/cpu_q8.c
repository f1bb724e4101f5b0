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
 *     lane j (j < 16) = fma chain over k of x[n, 16k+j] * w'[o, 16k+j];
 *     m_j = l_j + l_(j+8) (j < 8);
 *     s = ((m0+m4) + (m2+m6)) + ((m1+m5) + (m3+m7));   out = s + bias[o].
 * (C % G == 0 with G = 32 or 64, so C is a multiple of 16: no partial lane
 * block, and no 16-column block straddles two groups.) So on each path this
 * gives the bits of linear_rows(x, w') on the same path, and inherits its
 * contract: each out[n,o] depends only on x[n,:] and row o, not on N, the
 * other rows, the register blocking or the thread count. The reference path
 * (ctx->ref: one accumulator, i in order, bias last) and the scalar fallback
 * (the same 16 lanes, multiply then add) likewise match linear_rows'
 * reference loop and scalar fallback on w'.
 *
 * Cost per 8 weights of one output: one 8-byte load, a sign extension to
 * int32 (vpmovsxbd), a convert (vcvtdq2ps) and a multiply by the group's
 * scale, shared by the R rows of x in the register block, then R FMAs. The
 * scale multiply (instead of scaling a per-group partial sum) is what keeps
 * the order equal to linear_rows'; it costs one vector op per 8 weights,
 * well inside the core's budget at the memory-bound N = 1 (bench/q8_bench.c).
 *
 * Blocking: outputs in blocks of 4 split statically over the OpenMP threads
 * (contiguous ranges of wq: each thread streams one run); per block all N
 * rows of x go through 4 (then 3, 2, 1) rows at a time in kernels of R rows
 * x O outputs (4x2, 3x2, 2x4, 1x4), each element's two 8-lane chains either
 * side by side (1x4: 8 accumulators) or one after the other (as linear_rows'
 * kern_halves: 8 accumulators for 4x2 and 2x4). The blocking only decides
 * which elements run together, never an element's order. Unlike linear_rows,
 * the first pass reads the 4 int8 rows side by side with software prefetch
 * (the layout q8 was tuned with; the order is the same either way). The 4
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
 * out[r, o] (stride OC) = the lane sums above + bias. Each element has the
 * two chains of linear_rows, lanes 0-7 and 8-15 of every 16 columns (a
 * 16-column block never straddles a group: G is a multiple of 16). H = 2:
 * both chains in one pass over the columns (linear_rows' kern, 2 R O
 * accumulators); H = 1: the chain of lanes 0-7, then that of lanes 8-15
 * (its kern_halves, R O accumulators, for the 4 x 2 blocks; the second pass
 * finds the int8 rows in L1). Either way m = h0 + h1 then hsum8 and bias,
 * the same operations on the same values: the bits of linear_rows. R, O, H
 * and G are constants at each call site, so the loops unroll. pf: prefetch
 * PF_DIST bytes ahead in each weight row in the first pass (the pass memory
 * serves). */
AVX2_INLINE void kern(int R, int O, int H, int G, float *out, const float *x, const int8_t *wq,
                      const float *sc, const float *bias, int C, int OC, int pf)
{
    int NG = C / G;
    __m256 m[RBLK][OBLK];
#pragma GCC unroll 2
    for (int p = 0; p < 2; p += H) { /* p: the first half of this pass */
        __m256 acc[RBLK][OBLK][2];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
#pragma GCC unroll 2
                for (int h = 0; h < H; h++)
                    acc[r][o][h] = _mm256_setzero_ps();
        for (int g = 0; g < NG; g++) {
            int i0 = g * G;
            __m256 s[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++) {
                s[o] = _mm256_broadcast_ss(sc + (size_t)o * NG + g);
                if (pf && p == 0 && (i0 & 63) == 0) /* one prefetch per 64-byte line */
                    for (int b = 0; b < G; b += 64)
                        _mm_prefetch((const char *)(wq + (size_t)o * C + i0 + b + PF_DIST),
                                     _MM_HINT_T0);
            }
#pragma GCC unroll 4
            for (int i = i0; i < i0 + G; i += 16)
#pragma GCC unroll 2
                for (int h = 0; h < H; h++) {
                    int k = i + 8 * (p + h); /* lanes 0-7 or 8-15 of this block */
                    __m256 wv[OBLK];
#pragma GCC unroll 4
                    for (int o = 0; o < O; o++)
                        wv[o] = deq8(wq + (size_t)o * C + k, s[o]);
#pragma GCC unroll 4
                    for (int r = 0; r < R; r++) {
                        __m256 xv = _mm256_loadu_ps(x + (size_t)r * C + k);
#pragma GCC unroll 4
                        for (int o = 0; o < O; o++)
                            acc[r][o][h] = _mm256_fmadd_ps(xv, wv[o], acc[r][o][h]);
                    }
                }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                m[r][o] = H == 2 ? _mm256_add_ps(acc[r][o][0], acc[r][o][1])
                          : p    ? _mm256_add_ps(m[r][o], acc[r][o][0])
                                 : acc[r][o][0];
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float v = hsum8(m[r][o]);
            out[(size_t)r * OC + o] = bias ? v + bias[o] : v;
        }
}

/* All N rows through the outputs o0 .. o0+O-1 (O <= OBLK), RBLK rows at a
 * time; wq, sc and bias point at output o0. At most 8 accumulators per
 * kernel: the 4 x 2 and 3 x 2 blocks run their chains one after the other
 * (H = 1), the rest both at once (H = 2). */
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
            kern(4, 2, 1, G, op, xp, wq, sc, bias, C, OC, n == 0);
            kern(4, 2, 1, G, op + 2, xp, wq2, sc2, b2, C, OC, n == 0);
        }
        float *op = out + (size_t)n * OC;
        const float *xp = x + (size_t)n * C;
        switch (N - n) {
        case 3:
            kern(3, 2, 1, G, op, xp, wq, sc, bias, C, OC, n == 0);
            kern(3, 2, 1, G, op + 2, xp, wq2, sc2, b2, C, OC, n == 0);
            break;
        case 2:
            kern(2, 4, 1, G, op, xp, wq, sc, bias, C, OC, n == 0);
            break;
        case 1:
            kern(1, 4, 2, G, op, xp, wq, sc, bias, C, OC, n == 0);
            break;
        }
        return;
    }
    /* the last, partial block of outputs: one at a time */
    for (int o = 0; o < O; o++) {
        const int8_t *wo = wq + (size_t)o * C;
        const float *so = sc + (size_t)o * NG, *bo = bias ? bias + o : NULL;
        for (n = 0; n + RBLK <= N; n += RBLK)
            kern(4, 1, 2, G, out + (size_t)n * OC + o, x + (size_t)n * C, wo, so, bo, C, OC, 0);
        for (; n < N; n++)
            kern(1, 1, 2, G, out + (size_t)n * OC + o, x + (size_t)n * C, wo, so, bo, C, OC, 0);
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
 * weights: 16 lanes, multiply then add, lanes j and j+8 summed, then the
 * tree. C is a multiple of G, so of 16: no partial block, and each block of
 * 16 lies in one group. */
static float dot_lanes_q8(const float *x, const int8_t *wq, const float *sc, int C, int G)
{
    float l[16] = {0};
    for (int i = 0; i < C; i += 16) {
        float s = sc[i / G];
        for (int j = 0; j < 16; j++) {
            float w = (float)wq[i + j] * s;
            l[j] += x[i + j] * w;
        }
    }
    for (int j = 0; j < 8; j++)
        l[j] += l[j + 8];
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
