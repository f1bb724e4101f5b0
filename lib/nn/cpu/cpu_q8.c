/* cpu_q8.c: linear_rows_q8 (backend.h), the decode matmul over int8 weights:
 * out (N, OC) = x (N, C) @ w (OC, C)^T + bias, w[o,c] = wq[o,c] * scales[o, c/G].
 *
 * Why: a decode step at batch 1 is the time to stream the weights from memory
 * (cpu_gemv.c). Stored as int8 plus one fp32 scale per G weights they take
 * 1 + 4/G bytes per weight (1.125 at G = 32, 1.0625 at G = 64) instead of 4:
 * 3.6x / 3.8x fewer bytes for the same 2 N C OC FLOPs. Activations stay fp32.
 *
 * Summation order (AVX2 + FMA): the scale comes out of the group. Per
 * element out[n,o], 8 lanes j; per group g of G columns (in order):
 *     p_j = fma chain over k = 0 .. G/8-1 of x[n, gG+8k+j] * (float)wq[o, gG+8k+j]
 *           (the first term a plain product);
 *     t_j = fma(p_j, scales[o,g], t_j)                   (t_j starts at 0);
 * then s = ((t0+t4) + (t2+t6)) + ((t1+t5) + (t3+t7)); out = s + bias[o].
 * (float)wq is exact, so a weight costs a widening, a convert and one FMA;
 * the scale one FMA per G weights. The order depends only on C and G: each
 * out[n,o] depends only on x[n,:] and row o, not on N, the other rows, the
 * register blocking or the thread count (the backend.h contract). It is not
 * linear_rows' order on the dequantized weights w' = fl(wq * scale): the
 * results agree with linear_rows(x, w') within float rounding (a few ulps
 * of sum |x w|), no longer bit for bit. The reference path (ctx->ref) is the
 * same math as plain loops: per group one float accumulator over the
 * columns in order, times the scale, added to the row's total, bias last;
 * the scalar fallback (no AVX2) keeps 8 lanes as above with multiply then
 * add. The AVX-512 path (AVX-512F, checked at run time; cpu_avx2_only
 * turns it off for the tests) has 16 lanes: p_j (j < 16) is the chain over
 * k = 0 .. G/16-1 of x[n, gG+16k+j] * (float)wq[o, gG+16k+j], t_j = fma(p_j,
 * scales[o,g], t_j), then m_j = t_j + t_(j+8) and the tree above: 3
 * instructions per 16 weights (widen, convert, FMA) where AVX2 takes 6, so
 * an int8 decode step of the 15M llama2.c shape (weights in the last-level
 * cache: the kernel is bound by its instructions) went from 0.44 to 0.32 ms
 * and of 110M from 3.0 to 2.6 ms (2 threads, best of 2000 / 300 steps).
 * The paths agree within float rounding, not bit for bit; each keeps its
 * own order for any N, row position, blocking and thread count.
 *
 * Cost per 8 weights of one output: one 8-byte load with sign extension to
 * int32 (vpmovsxbd), a convert (vcvtdq2ps), shared by the R rows of x in the
 * register block, then R FMAs; per group and element one more FMA for the
 * scale. (Rebuilding each weight as wq * scale, the order of linear_rows,
 * cost one more vector multiply per 8 weights: in cache 22 against 25 G
 * weights/s on one core, and ~12% of a 110M decode step at 2 threads,
 * bench/q8_bench.c. Most of the gain over that kernel came from the
 * prefetch distance below.)
 *
 * Blocking: outputs in blocks of 4 split over the threads by cpu_parfor_steal
 * (contiguous runs of wq, as linear_rows). At N = 1 one 1x4
 * kernel takes the block's 4 weight rows side by side; at N > 1 the first 4
 * rows of x take them one at a time in address order (Rx1), the other rows
 * find them in L1 (4x1, then 3x2, 2x2 or 1x4). Each element holds a running
 * total and a group partial sum: 2 R O accumulators, at most 12 of the 16
 * registers. The blocking only decides which elements run together, never
 * an element's order. The pass that memory serves prefetches each weight row
 * 8 KB ahead (a 512-byte distance left the kernel waiting on memory: ~1.3x
 * slower at 2 threads). Memory sees wq and scales once per call.
 *
 * linear_rows_q8_multi: up to LLM_ROWS_MAX_SEGS matrices over the same x
 * (a layer's q, k, v; w1, w3) in one thread split (cpu_seg_plan), each
 * block computed as in its own call. An int8 110M step is ~3 ms, so the
 * 36 fork/joins it saves are visible: `llm generate --quantize int8`, 8
 * alternating pairs (2026-11-30 04:01 UTC), 338 against 314 tok/s mean,
 * faster in 7 of 8. */
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
/* Software prefetch distance into wq, in bytes (128 cache lines ahead). */
#define PF_DIST 8192

/* ---- reference --------------------------------------------------------- */

/* Per group one float accumulator over its columns in order (x * (float)q,
 * exact weights), times the group's scale, added to the element's total;
 * bias last. */
static void q8_ref(const struct cpu_ctx *c, float *out, const float *x, const int8_t *wq,
                   const float *scales, const float *bias, int N, int C, int OC, int G)
{
    int NG = C / G;
    CPU_PARFOR(c->threads,
        for (int o = 0; o < OC; o++) {
            const int8_t *wr = wq + (size_t)o * C;
            const float *sr = scales + (size_t)o * NG;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C;
                float acc = 0.0f;
                for (int g = 0; g < NG; g++) {
                    float p = 0.0f;
                    for (int i = g * G; i < (g + 1) * G; i++)
                        p += xr[i] * (float)wr[i];
                    acc += p * sr[g];
                }
                out[(size_t)n * OC + o] = bias ? acc + bias[o] : acc;
            }
        });
}

/* ---- AVX2 + FMA -------------------------------------------------------- */

/* 8 int8 weights as floats (exact). */
AVX2_INLINE __m256 wide8(const int8_t *q)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)q);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

/* R rows (x, stride C) by O outputs (wq, stride C; scales, stride NG):
 * out[r, o] (stride OC) = the order above + bias. R, O and G are constants
 * at each call site, so the loops unroll. pf: prefetch PF_DIST bytes ahead
 * in each weight row (the pass memory serves). */
AVX2_INLINE void kern(int R, int O, int G, float *out, const float *x, const int8_t *wq,
                      const float *sc, const float *bias, int C, int OC, int pf)
{
    int NG = C / G;
    __m256 t[RBLK][OBLK];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            t[r][o] = _mm256_setzero_ps();
    for (int g = 0; g < NG; g++) {
        int i0 = g * G;
        if (pf && (i0 & 63) == 0) /* one prefetch per 64-byte line */
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
#pragma GCC unroll 2
                for (int b = 0; b < G; b += 64)
                    _mm_prefetch((const char *)(wq + (size_t)o * C + i0 + b + PF_DIST),
                                 _MM_HINT_T0);
        __m256 p[RBLK][OBLK];
#pragma GCC unroll 8
        for (int k = 0; k < G; k += 8) {
            __m256 wv[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                wv[o] = wide8(wq + (size_t)o * C + i0 + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)r * C + i0 + k);
#pragma GCC unroll 4
                for (int o = 0; o < O; o++)
                    p[r][o] = k ? _mm256_fmadd_ps(xv, wv[o], p[r][o]) : _mm256_mul_ps(xv, wv[o]);
            }
        }
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            __m256 s = _mm256_broadcast_ss(sc + (size_t)o * NG + g);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                t[r][o] = _mm256_fmadd_ps(p[r][o], s, t[r][o]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float v = cpu_hsum8(t[r][o]);
            out[(size_t)r * OC + o] = bias ? v + bias[o] : v;
        }
}

/* R rows (R a variable 1..4) by one output: kern with R a constant. */
AVX2_INLINE void kern_r1(int R, int G, float *out, const float *x, const int8_t *wq,
                         const float *sc, const float *bias, int C, int OC, int pf)
{
    switch (R) {
    case 4: kern(4, 1, G, out, x, wq, sc, bias, C, OC, pf); break;
    case 3: kern(3, 1, G, out, x, wq, sc, bias, C, OC, pf); break;
    case 2: kern(2, 1, G, out, x, wq, sc, bias, C, OC, pf); break;
    case 1: kern(1, 1, G, out, x, wq, sc, bias, C, OC, pf); break;
    }
}

/* All N rows through the outputs o0 .. o0+O-1 (O <= OBLK); wq, sc and bias
 * point at output o0. N = 1 (decode): one 1x4 kernel, the 4 weight rows
 * side by side, each prefetched PF_DIST bytes ahead (measured ~15% faster
 * at 2 threads than one row at a time: 4 independent outputs hide the FMA
 * latency of the per-group chains). N > 1: the first pass (the one memory
 * serves) takes the first RBLK rows (or all N) through the O weight rows
 * one at a time in address order (Rx1), prefetched likewise; the other
 * rows find the weight rows in L1, 4 at a time one output after the other
 * (4x1), the last 3 or 2 two outputs at a time (3x2, 2x2), a last single
 * row all four (1x4). At most 12 accumulators per kernel. */
AVX2_INLINE void oblock(int G, int O, float *out, const float *x, const int8_t *wq,
                        const float *sc, const float *bias, int N, int C, int OC)
{
    int NG = C / G, R0 = N < RBLK ? N : RBLK, n;
    if (N == 1 && O == OBLK) { /* decode: the 4 weight rows side by side */
        kern(1, 4, G, out, x, wq, sc, bias, C, OC, 1);
        return;
    }
    for (int o = 0; o < O; o++)
        kern_r1(R0, G, out + o, x, wq + (size_t)o * C, sc + (size_t)o * NG,
                bias ? bias + o : NULL, C, OC, 1);
    for (n = R0; n + RBLK <= N; n += RBLK)
        for (int o = 0; o < O; o++)
            kern(4, 1, G, out + (size_t)n * OC + o, x + (size_t)n * C, wq + (size_t)o * C,
                 sc + (size_t)o * NG, bias ? bias + o : NULL, C, OC, 0);
    if (n == N)
        return;
    float *op = out + (size_t)n * OC;
    const float *xp = x + (size_t)n * C;
    if (O == OBLK) {
        const int8_t *wq2 = wq + 2 * (size_t)C;
        const float *sc2 = sc + 2 * (size_t)NG, *b2 = bias ? bias + 2 : NULL;
        switch (N - n) {
        case 3:
            kern(3, 2, G, op, xp, wq, sc, bias, C, OC, 0);
            kern(3, 2, G, op + 2, xp, wq2, sc2, b2, C, OC, 0);
            break;
        case 2:
            kern(2, 2, G, op, xp, wq, sc, bias, C, OC, 0);
            kern(2, 2, G, op + 2, xp, wq2, sc2, b2, C, OC, 0);
            break;
        case 1:
            kern(1, 4, G, op, xp, wq, sc, bias, C, OC, 0);
            break;
        }
        return;
    }
    for (int o = 0; o < O; o++)
        kern_r1(N - n, G, op + o, xp, wq + (size_t)o * C, sc + (size_t)o * NG,
                bias ? bias + o : NULL, C, OC, 0);
}

struct q8_job {
    const float *x;
    int N, C, G;
    struct cpu_seg_plan sp;
};

/* Block b of a q8_job (b increasing, *m from 0): its outputs, weights,
 * scales and bias, O outputs in a row of stride OC. */
struct q8_block {
    float *out;
    const int8_t *wq;
    const float *sc, *bias;
    int O, OC;
};
static inline struct q8_block q8_block_at(const struct q8_job *j, int b, int *m)
{
    int o0, O;
    const struct llm_rows_seg *s = cpu_seg_block(&j->sp, b, m, &o0, &O);
    return (struct q8_block){s->out + o0, s->wq + (size_t)o0 * j->C, s->scales + (size_t)o0 * (j->C / j->G),
                             s->bias ? s->bias + o0 : NULL, O, s->OC};
}

/* Output blocks [b0, b1) of a q8_job. */
AVX2_FN static void q8_blocks(void *arg, int b0, int b1)
{
    const struct q8_job *j = arg;
    for (int b = b0, m = 0; b < b1; b++) {
        struct q8_block k = q8_block_at(j, b, &m);
        /* G as a constant: the column loop of a group fully unrolls */
        if (j->G == 32)
            oblock(32, k.O, k.out, j->x, k.wq, k.sc, k.bias, j->N, j->C, k.OC);
        else
            oblock(64, k.O, k.out, j->x, k.wq, k.sc, k.bias, j->N, j->C, k.OC);
    }
}

/* ---- AVX-512 ------------------------------------------------------------ */

#define AVX512_FN __attribute__((target("avx512f,avx2,fma")))
#define AVX512_INLINE __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline

/* 16 int8 weights as floats (exact). */
AVX512_INLINE __m512 wide16(const int8_t *q)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

/* kern in the 16-lane order of the AVX-512 path (top of the file): per
 * element a group partial p and a running total t, one zmm each. */
AVX512_INLINE void kern512(int R, int O, int G, float *out, const float *x, const int8_t *wq,
                           const float *sc, const float *bias, int C, int OC, int pf)
{
    int NG = C / G;
    __m512 t[RBLK][OBLK];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            t[r][o] = _mm512_setzero_ps();
    for (int g = 0; g < NG; g++) {
        int i0 = g * G;
        if (pf && (i0 & 63) == 0) /* one prefetch per 64-byte line */
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
#pragma GCC unroll 2
                for (int b = 0; b < G; b += 64)
                    _mm_prefetch((const char *)(wq + (size_t)o * C + i0 + b + PF_DIST),
                                 _MM_HINT_T0);
        __m512 p[RBLK][OBLK];
#pragma GCC unroll 4
        for (int k = 0; k < G; k += 16) {
            __m512 wv[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                wv[o] = wide16(wq + (size_t)o * C + i0 + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512 xv = _mm512_loadu_ps(x + (size_t)r * C + i0 + k);
#pragma GCC unroll 4
                for (int o = 0; o < O; o++)
                    p[r][o] = k ? _mm512_fmadd_ps(xv, wv[o], p[r][o]) : _mm512_mul_ps(xv, wv[o]);
            }
        }
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            __m512 s = _mm512_set1_ps(sc[(size_t)o * NG + g]);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                t[r][o] = _mm512_fmadd_ps(p[r][o], s, t[r][o]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float v = cpu_hsum16(t[r][o]);
            out[(size_t)r * OC + o] = bias ? v + bias[o] : v;
        }
}

/* oblock's blocking with kern512 (32 registers: the rows after the
 * streaming pass go two at a time by all four outputs). */
AVX512_INLINE void oblock512(int G, int O, float *out, const float *x, const int8_t *wq,
                             const float *sc, const float *bias, int N, int C, int OC)
{
    int NG = C / G, R0 = N < RBLK ? N : RBLK, n;
    if (N == 1 && O == OBLK) { /* decode: the 4 weight rows side by side */
        kern512(1, 4, G, out, x, wq, sc, bias, C, OC, 1);
        return;
    }
    for (int o = 0; o < O; o++) {
        float *op = out + o;
        const int8_t *wo = wq + (size_t)o * C;
        const float *so = sc + (size_t)o * NG, *bo = bias ? bias + o : NULL;
        switch (R0) {
        case 4: kern512(4, 1, G, op, x, wo, so, bo, C, OC, 1); break;
        case 3: kern512(3, 1, G, op, x, wo, so, bo, C, OC, 1); break;
        case 2: kern512(2, 1, G, op, x, wo, so, bo, C, OC, 1); break;
        default: kern512(1, 1, G, op, x, wo, so, bo, C, OC, 1); break;
        }
    }
    for (n = R0; n < N; n += 2) {
        float *op = out + (size_t)n * OC;
        const float *xp = x + (size_t)n * C;
        int two = N - n >= 2;
        if (O == OBLK) {
            if (two)
                kern512(2, 4, G, op, xp, wq, sc, bias, C, OC, 0);
            else
                kern512(1, 4, G, op, xp, wq, sc, bias, C, OC, 0);
            continue;
        }
        for (int o = 0; o < O; o++) {
            const int8_t *wo = wq + (size_t)o * C;
            const float *so = sc + (size_t)o * NG, *bo = bias ? bias + o : NULL;
            if (two)
                kern512(2, 1, G, op + o, xp, wo, so, bo, C, OC, 0);
            else
                kern512(1, 1, G, op + o, xp, wo, so, bo, C, OC, 0);
        }
    }
}

AVX512_FN static void q8_blocks512(void *arg, int b0, int b1)
{
    const struct q8_job *j = arg;
    for (int b = b0, m = 0; b < b1; b++) {
        struct q8_block k = q8_block_at(j, b, &m);
        if (j->G == 32)
            oblock512(32, k.O, k.out, j->x, k.wq, k.sc, k.bias, j->N, j->C, k.OC);
        else
            oblock512(64, k.O, k.out, j->x, k.wq, k.sc, k.bias, j->N, j->C, k.OC);
    }
}

/* The vector paths: AVX-512 (its own summation order) or AVX2. */
static void q8_vec(int nt, struct q8_job *j)
{
    cpu_parfor_steal(nt, j->sp.first[j->sp.nseg], cpu_steal_chunk((size_t)OBLK * j->C),
                     cpu_has_avx512() ? q8_blocks512 : q8_blocks, j);
}

/* ---- portable fallback (no AVX2 + FMA) ---------------------------------- */

/* The AVX2 order's 8 lanes with multiply then add: per group lane partial
 * sums p[j] over columns gG+8k+j, t[j] += p[j] * scale, then the tree. */
static float dot_lanes_q8(const float *x, const int8_t *wq, const float *sc, int C, int G)
{
    float t[8] = {0};
    for (int i0 = 0; i0 < C; i0 += G) {
        float p[8] = {0};
        for (int k = i0; k < i0 + G; k += 8)
            for (int j = 0; j < 8; j++)
                p[j] += x[k + j] * (float)wq[k + j];
        float s = sc[i0 / G];
        for (int j = 0; j < 8; j++)
            t[j] += p[j] * s;
    }
    return ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
}

static void q8_plain(const struct cpu_ctx *c, float *out, const float *x, const int8_t *wq,
                     const float *scales, const float *bias, int N, int C, int OC, int G)
{
    int NG = C / G;
    int nt = cpu_nthreads(c, (size_t)OC * C);
    /* each weight row once from memory, then from L1 for the N rows */
    CPU_PARFOR(nt,
        for (int o = 0; o < OC; o++)
            for (int n = 0; n < N; n++) {
                float s = dot_lanes_q8(x + (size_t)n * C, wq + (size_t)o * C,
                                       scales + (size_t)o * NG, C, G);
                out[(size_t)n * OC + o] = bias ? s + bias[o] : s;
            });
}

int cpu_linear_rows_q8_multi(void *ctx, const float *x, int N, int C, int G, const struct llm_rows_seg *seg,
                             int nseg)
{
    struct cpu_ctx *c = cpu(ctx);
    struct q8_job j = {x, N, C, G, {0}};
    size_t touched;
    int rc = cpu_seg_plan_init(&j.sp, "linear_rows_q8", seg, nseg, N, C, OBLK, &touched);
    if (rc)
        return rc;
    if (G != 32 && G != 64)
        return llm_err(LLM_EINVAL, "linear_rows_q8: group size %d must be 32 or 64", G);
    if (C % G)
        return llm_err(LLM_EINVAL,
                       "linear_rows_q8: width %d is not a multiple of the group size %d", C, G);
    if (N == 0)
        return 0;
    if (c->ref || !cpu_has_avx2()) {
        for (int m = 0; m < nseg; m++)
            (c->ref ? q8_ref : q8_plain)(c, seg[m].out, x, seg[m].wq, seg[m].scales, seg[m].bias, N, C,
                                         seg[m].OC, G);
    } else {
        /* weights touched decide the threads (the x reuse is cache traffic) */
        q8_vec(cpu_nthreads(c, touched), &j);
    }
    return 0;
}

int cpu_linear_rows_q8(void *ctx, float *out, const float *x, const int8_t *wq, const float *scales,
                       const float *bias, int N, int C, int OC, int G)
{
    struct llm_rows_seg seg = {.bias = bias, .out = out, .OC = OC, .wq = wq, .scales = scales};
    return cpu_linear_rows_q8_multi(ctx, x, N, C, G, &seg, 1);
}
