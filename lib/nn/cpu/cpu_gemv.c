/* cpu_gemv.c: linear_rows (backend.h), the matmul of decoding:
 * out (N, OC) = x (N, C) @ w (OC, C)^T + bias (OC, or NULL), N small (1..64).
 *
 * Why a kernel of its own: at batch 1 a decode step reads every weight once
 * and does 2 FLOPs per weight (one multiply-add) per row, 0.5 FLOP per byte
 * of fp32 weights: far below what the cores can do, so the time is the time
 * to stream w from memory. Work: 2 N C OC FLOPs; traffic: 4 OC C bytes of w
 * (once, whatever N), plus 4 N (C + OC) bytes of x and out and 4 OC of bias
 * (negligible: x stays in L1/L2). The kernel's job is to read w at the full
 * read bandwidth of the machine, once for all N rows.
 *
 * Summation order (the contract: each out[n,o] bit-identical whatever N, the
 * other rows and the thread count). Every element, on every path below that
 * the machine runs, is
 *     lane j (j < 16) = fma chain over k = 0, 1, ... of x[n, 16k+j] w[o, 16k+j]
 *                       (the last, partial block of C % 16 columns loaded
 *                       with zeros in the missing lanes);
 *     m_j = l_j + l_(j+8) (j < 8);
 *     s = ((m0+m4) + (m2+m6)) + ((m1+m5) + (m3+m7));   out = s + bias[o].
 * 16 lanes (two 8-wide accumulators) rather than 8: one output alone then has
 * two independent FMA chains for the sequential pass below (paired runs at
 * N = 1, 110M shapes: 8 lanes 4-9% slower on one thread, the single chain's
 * FMA latency showing; on two threads within the noise of a shared machine).
 * The cached pass keeps 4x2 register blocks by running the two chains of an
 * element one after the other.
 * The register blocking (how many rows and outputs one kernel call holds) and
 * the split of the outputs over threads never change that order: a given row
 * gets the same bits alone, at any position of a batch, on any thread.
 * Without AVX2 + FMA (checked at run time) a scalar loop follows the same
 * lane split with a separate multiply and add (so the bits differ from the
 * AVX2 path's, but not with N or threads).
 *
 * Optimized path (AVX2 + FMA; AVX-512 below): the outputs are cut in blocks of 4 and the
 * blocks split over the threads by cpu_parfor_steal (cpu_par.c: each thread
 * streams its own contiguous run of w, then takes chunks from the end of a
 * slower thread's). In each block:
 *  - the first 4 rows of x (all N when N <= 6) take the 4 weight rows one at
 *    a time, in address order (kernel R x 1: 2R accumulators, 2 w loads and
 *    2R x loads per 16 columns). This is the pass that reads w from memory,
 *    and a thread reading one sequential stream gets the most out of the
 *    hardware prefetchers: measured 1.5-2x the bandwidth of reading 2 or 4
 *    weight rows side by side (at N = 1 and 4, one thread, 15M shapes).
 *    Successive outputs' FMA chains are independent, so the out-of-order core
 *    overlaps them too. A software prefetch PREFETCH (8 KB) ahead of the
 *    stream: where w sits in the last-level cache (the 10.9M target of
 *    bench/spec_bench.sh, 43 MB; the 15M llama2.c shape) the hardware
 *    prefetchers alone do not keep up once the FMAs of 4 rows are in the
 *    loop. Measured on this VM (AMD EPYC, Zen 5), 2 threads, alternating
 *    runs: 15M decode 718-787 -> 835-965 tok/s; 10.9M verification of 4
 *    rows 0.94 -> 0.87-0.94 ms; 110M (weights in DRAM) unchanged. An older
 *    measurement (256-2048 floats, AVX2 only, another day) had found no gain;
 *  - the remaining rows find the 4 weight rows (16 C bytes, 32 KB at C =
 *    2048) in L1/L2 and go through them in register blocks of 4 rows x 2
 *    outputs (3x2, 2x4, 1x4 for the leftovers), each element's two chains
 *    run one after the other (kern_halves): 8 accumulators, 6 loads per 8
 *    FMAs (the compute-bound side, N = 16..64). x (4 N C bytes, 512 KB at
 *    N = 64, C = 2048) stays in L2.
 * So memory sees w once whatever N.
 *
 * AVX-512 path (AVX-512F, checked at run time; cpu_avx2_only turns it off
 * for the tests): the same passes with one 16-lane zmm accumulator per
 * element instead of two 8-lane halves. Lane j of it is the same FMA chain
 * as lane j of the AVX2 pair and the reduction starts with the same
 * low + high add, so the bits equal the AVX2 path's. Half the FMA and load
 * instructions: 4 rows of the 10.9M target verify in 0.80-0.85 ms against
 * 0.87-0.94 with AVX2 (both with the prefetch; a decode step 0.53-0.57
 * against 0.57-0.59). With 32 registers the cached pass takes 4 x 4
 * blocks directly. Weight rows should start 64-byte aligned (model
 * parameters are: LLM_PARAM_ALIGN): a zmm load across two cache lines costs
 * two, and with unaligned rows this path measured slower than AVX2.
 *
 * linear_rows_multi: several matrices over the same x in one call (a
 * layer's q, k and v; SwiGLU's w1 and w3). Their output blocks are numbered
 * one after another and split over the threads together, so a decode step
 * pays one parallel region, one ramp-up of the prefetchers per thread and
 * one wait for the slower thread per group instead of per matrix. Each
 * block is computed exactly as in its own call (same kernels, same O, the
 * matrix's own OC as the output stride), so the bits are those of separate
 * calls. Measured on the 110M weights (matmuls alone, 2 threads, 300 steps
 * each way, interleaved): the 85 calls of a step 9.42 ms median, the same
 * weights in 37 calls (contiguous matrices with the same C merged) 9.11 ms.
 *
 * ctx->ref = 1: plain loops (one float accumulator per element, i = 0..C-1
 * in order, bias last), threaded over outputs: the oracle of the tests. */
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
/* Rows of x the streaming pass (kern R x 1) takes at most: N <= RSTREAM rows
 * all go through it, so 5 or 6 rows (speculative decoding's verification at
 * K = 4, 5) read w once with no second pass over cached rows (a leftover row
 * alone in kern_halves 1 x 4 cost almost as much as the first four: 10.9M
 * weights at 2 threads, N = 5 1.33 ms against 1.41 before, N = 6 1.47 against
 * 1.62). 2 x 6 accumulators and 2 weight vectors fit the 16 ymm registers,
 * x being an FMA memory operand. */
#define RSTREAM 6
/* Floats ahead of its read position that the streaming pass prefetches
 * (8 KB; see the top of the file). */
#define PREFETCH 2048


/* ---- reference --------------------------------------------------------- */

static void linear_rows_ref(const struct cpu_ctx *c, float *out, const float *x, const float *w,
                            const float *bias, int N, int C, int OC)
{
    CPU_PARFOR(c->threads,
        for (int o = 0; o < OC; o++) {
            const float *wr = w + (size_t)o * C;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C;
                float acc = 0.0f;
                for (int i = 0; i < C; i++)
                    acc += xr[i] * wr[i];
                out[(size_t)n * OC + o] = bias ? acc + bias[o] : acc;
            }
        });
}

/* ---- AVX2 + FMA -------------------------------------------------------- */

/* R rows (x, stride C) by O outputs (w, stride C): out[r, o] (stride OC) =
 * the lane sums above + bias. Each element has two accumulators, lanes 0-7
 * and 8-15 of every 16 columns (two independent FMA chains, so one output
 * alone is not bound by the FMA latency). C16 = C rounded down to 16; t0, t1
 * = the masks of the leftover columns C16 .. C-1 in each half (all zero when
 * none). R, O are constants at each call site, so the loops unroll into
 * 2 R O accumulators (at most 8 of the 16 ymm registers). pf: the streaming
 * pass (O = 1, w read from memory), prefetched PREFETCH floats ahead; not
 * the passes over weight rows already in cache. */
AVX2_INLINE void kern(int R, int O, float *out, const float *x, const float *w,
                      const float *bias, int C, int C16, __m256i t0, __m256i t1, int OC, int pf)
{
    __m256 acc[RSTREAM][OBLK][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            acc[r][o][0] = acc[r][o][1] = _mm256_setzero_ps();
    for (int i = 0; i < C16; i += 16) {
        __m256 wv[OBLK][2];
        if (pf) /* the streaming pass (O = 1) */
            _mm_prefetch((const char *)(w + i + PREFETCH), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            wv[o][0] = _mm256_loadu_ps(w + (size_t)o * C + i);
            wv[o][1] = _mm256_loadu_ps(w + (size_t)o * C + i + 8);
            __asm__("" : "+x"(wv[o][0]), "+x"(wv[o][1])); /* one load each: see kern512 */
        }
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 x0 = _mm256_loadu_ps(x + (size_t)r * C + i);
            __m256 x1 = _mm256_loadu_ps(x + (size_t)r * C + i + 8);
#pragma GCC unroll 4
            for (int o = 0; o < O; o++) {
                acc[r][o][0] = _mm256_fmadd_ps(x0, wv[o][0], acc[r][o][0]);
                acc[r][o][1] = _mm256_fmadd_ps(x1, wv[o][1], acc[r][o][1]);
            }
        }
    }
    if (C16 < C) {
        __m256 wv[OBLK][2];
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            wv[o][0] = _mm256_maskload_ps(w + (size_t)o * C + C16, t0);
            wv[o][1] = _mm256_maskload_ps(w + (size_t)o * C + C16 + 8, t1);
        }
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 x0 = _mm256_maskload_ps(x + (size_t)r * C + C16, t0);
            __m256 x1 = _mm256_maskload_ps(x + (size_t)r * C + C16 + 8, t1);
#pragma GCC unroll 4
            for (int o = 0; o < O; o++) {
                acc[r][o][0] = _mm256_fmadd_ps(x0, wv[o][0], acc[r][o][0]);
                acc[r][o][1] = _mm256_fmadd_ps(x1, wv[o][1], acc[r][o][1]);
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float s = cpu_hsum8(_mm256_add_ps(acc[r][o][0], acc[r][o][1]));
            out[(size_t)r * OC + o] = bias ? s + bias[o] : s;
        }
}

/* The same sums as kern, the two halves one after the other: the chain of
 * lanes 0-7 over all 16-column blocks, then that of lanes 8-15, then m and
 * the reduction as in kern (the same operations on the same values in the
 * same order, so the same bits). Half the accumulators: 4 x 2 blocks fit the
 * registers (6 loads per 8 FMAs, against 8 for kern's 2 x 2). For weight
 * rows already in cache (w read with a 64-byte stride, 32 bytes per pass). */
AVX2_INLINE void kern_halves(int R, int O, float *out, const float *x, const float *w,
                             const float *bias, int C, int C16, __m256i t0, __m256i t1, int OC)
{
    __m256 half[RBLK][OBLK];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256 acc[RBLK][OBLK];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                acc[r][o] = _mm256_setzero_ps();
        for (int i = 8 * h; i < C16; i += 16) {
            __m256 wv[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                wv[o] = _mm256_loadu_ps(w + (size_t)o * C + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)r * C + i);
#pragma GCC unroll 4
                for (int o = 0; o < O; o++)
                    acc[r][o] = _mm256_fmadd_ps(xv, wv[o], acc[r][o]);
            }
        }
        if (C16 < C) {
            __m256i t = h ? t1 : t0;
            __m256 wv[OBLK];
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                wv[o] = _mm256_maskload_ps(w + (size_t)o * C + C16 + 8 * h, t);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_maskload_ps(x + (size_t)r * C + C16 + 8 * h, t);
#pragma GCC unroll 4
                for (int o = 0; o < O; o++)
                    acc[r][o] = _mm256_fmadd_ps(xv, wv[o], acc[r][o]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                half[r][o] = h ? _mm256_add_ps(half[r][o], acc[r][o]) : acc[r][o];
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float s = cpu_hsum8(half[r][o]);
            out[(size_t)r * OC + o] = bias ? s + bias[o] : s;
        }
}

/* All N rows through the outputs o0 .. o0+O-1 (O <= OBLK). The first RBLK
 * rows (all of them when N <= RSTREAM) take the weight rows one at a time, in address order (the pass that
 * reads w from memory: one sequential stream, see the top of the file); the
 * rows after that find the O weight rows in L1/L2 and take them in register
 * blocks of 4 x 2 (kern_halves). */
AVX2_INLINE void oblock_avx2(int O, float *out, const float *x, const float *w,
                             const float *bias, int N, int C, int C16, __m256i t0,
                             __m256i t1, int OC)
{
    int R0 = N <= RSTREAM ? N : RBLK;
    for (int o = 0; o < O; o++) {
        const float *wo = w + (size_t)o * C;
        const float *bo = bias ? bias + o : NULL;
        switch (R0) {
        case 6: kern(6, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        case 5: kern(5, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        case 4: kern(4, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        case 3: kern(3, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        case 2: kern(2, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        default: kern(1, 1, out + o, x, wo, bo, C, C16, t0, t1, OC, 1); break;
        }
    }
    for (int n = R0; n < N; n += RBLK) {
        float *op = out + (size_t)n * OC;
        const float *xp = x + (size_t)n * C;
        int R = N - n < RBLK ? N - n : RBLK;
        if (O == OBLK) {
            const float *w2 = w + 2 * (size_t)C, *b2 = bias ? bias + 2 : NULL;
            switch (R) {
            case 4:
                kern_halves(4, 2, op, xp, w, bias, C, C16, t0, t1, OC);
                kern_halves(4, 2, op + 2, xp, w2, b2, C, C16, t0, t1, OC);
                break;
            case 3:
                kern_halves(3, 2, op, xp, w, bias, C, C16, t0, t1, OC);
                kern_halves(3, 2, op + 2, xp, w2, b2, C, C16, t0, t1, OC);
                break;
            case 2: kern_halves(2, 4, op, xp, w, bias, C, C16, t0, t1, OC); break;
            default: kern_halves(1, 4, op, xp, w, bias, C, C16, t0, t1, OC); break;
            }
            continue;
        }
        /* the last, partial block of outputs: one at a time */
        for (int o = 0; o < O; o++) {
            const float *wo = w + (size_t)o * C;
            const float *bo = bias ? bias + o : NULL;
            for (int r = 0; r < R; r++)
                kern(1, 1, op + (size_t)r * OC + o, xp + (size_t)r * C, wo, bo, C, C16, t0, t1, OC, 0);
        }
    }
}

/* One call's outputs: the segments' blocks (cpu_seg_plan) and their x. */
struct rows_plan {
    const float *x;
    int N, C, C16;
    struct cpu_seg_plan sp;
};

struct rows_job {
    struct rows_plan p;
    __m256i t0, t1;
};

/* Output blocks [b0, b1) of a rows_job. */
AVX2_FN static void rows_blocks(void *arg, int b0, int b1)
{
    const struct rows_job *j = arg;
    const struct rows_plan *p = &j->p;
    for (int b = b0, m = 0, o0, O; b < b1; b++) {
        const struct llm_rows_seg *s = cpu_seg_block(&p->sp, b, &m, &o0, &O);
        oblock_avx2(O, s->out + o0, p->x, s->w + (size_t)o0 * p->C, s->bias ? s->bias + o0 : NULL,
                    p->N, p->C, p->C16, j->t0, j->t1, s->OC);
    }
}

AVX2_FN static void linear_rows_avx2(int nt, const struct rows_plan *p)
{
    static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    int rem = p->C - p->C16;
    struct rows_job j = {*p, _mm256_loadu_si256((const __m256i *)(ones + 8 - (rem < 8 ? rem : 8))),
                         _mm256_loadu_si256((const __m256i *)(ones + 8 - (rem > 8 ? rem - 8 : 0)))};
    cpu_parfor_steal(nt, p->sp.first[p->sp.nseg], cpu_steal_chunk((size_t)OBLK * p->C * sizeof(float)),
                     rows_blocks, &j);
}

/* ---- AVX-512 ------------------------------------------------------------ */

#define AVX512_FN __attribute__((target("avx512f,avx2,fma")))
#define AVX512_INLINE __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline

/* kern with one 16-lane accumulator per element: lane j is the same FMA
 * chain as lane j of the AVX2 pair (columns 16k + j), so the bits are the
 * same. R <= RSTREAM rows by O <= OBLK outputs; tm masks the leftover
 * columns C16 .. C-1 (zeros past C, as the AVX2 masked loads). pf: the
 * streaming pass (O = 1), w prefetched PREFETCH floats ahead. */
AVX512_INLINE void kern512(int R, int O, float *out, const float *x, const float *w,
                           const float *bias, int C, int C16, __mmask16 tm, int OC, int pf)
{
    __m512 acc[RSTREAM][OBLK];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            acc[r][o] = _mm512_setzero_ps();
    for (int i = 0; i < C16; i += 16) {
        __m512 wv[OBLK];
        if (pf)
            _mm_prefetch((const char *)(w + i + PREFETCH), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            wv[o] = _mm512_loadu_ps(w + (size_t)o * C + i);
            /* one load of w into a register: without this barrier gcc folds
             * it into each row's FMA (R loads of w, the rows' x in registers)
             * and 3 rows measured slower than 4 */
            __asm__("" : "+v"(wv[o]));
        }
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)r * C + i);
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                acc[r][o] = _mm512_fmadd_ps(xv, wv[o], acc[r][o]);
        }
    }
    if (C16 < C) {
        __m512 wv[OBLK];
#pragma GCC unroll 4
        for (int o = 0; o < O; o++)
            wv[o] = _mm512_maskz_loadu_ps(tm, w + (size_t)o * C + C16);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(tm, x + (size_t)r * C + C16);
#pragma GCC unroll 4
            for (int o = 0; o < O; o++)
                acc[r][o] = _mm512_fmadd_ps(xv, wv[o], acc[r][o]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int o = 0; o < O; o++) {
            float s = cpu_hsum16(acc[r][o]);
            out[(size_t)r * OC + o] = bias ? s + bias[o] : s;
        }
}

/* oblock_avx2 with kern512: the streaming pass the same (one weight row at a
 * time, all N <= RSTREAM rows, prefetched); the rows after it in blocks of 4
 * rows x 4 outputs (16 of the 32 zmm registers; kern_halves' split was for
 * the 16 ymm of AVX2). */
AVX512_INLINE void oblock_512(int O, float *out, const float *x, const float *w,
                              const float *bias, int N, int C, int C16, __mmask16 tm, int OC)
{
    int R0 = N <= RSTREAM ? N : RBLK;
    for (int o = 0; o < O; o++) {
        const float *wo = w + (size_t)o * C;
        const float *bo = bias ? bias + o : NULL;
        switch (R0) {
        case 6: kern512(6, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        case 5: kern512(5, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        case 4: kern512(4, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        case 3: kern512(3, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        case 2: kern512(2, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        default: kern512(1, 1, out + o, x, wo, bo, C, C16, tm, OC, 1); break;
        }
    }
    for (int n = R0; n < N; n += RBLK) {
        float *op = out + (size_t)n * OC;
        const float *xp = x + (size_t)n * C;
        int R = N - n < RBLK ? N - n : RBLK;
        if (O == OBLK) {
            switch (R) {
            case 4: kern512(4, 4, op, xp, w, bias, C, C16, tm, OC, 0); break;
            case 3: kern512(3, 4, op, xp, w, bias, C, C16, tm, OC, 0); break;
            case 2: kern512(2, 4, op, xp, w, bias, C, C16, tm, OC, 0); break;
            default: kern512(1, 4, op, xp, w, bias, C, C16, tm, OC, 0); break;
            }
            continue;
        }
        for (int o = 0; o < O; o++) /* the last, partial block of outputs */
            for (int r = 0; r < R; r++)
                kern512(1, 1, op + (size_t)r * OC + o, xp + (size_t)r * C, w + (size_t)o * C,
                        bias ? bias + o : NULL, C, C16, tm, OC, 0);
    }
}

struct rows_job512 {
    struct rows_plan p;
    __mmask16 tm;
};

AVX512_FN static void rows_blocks512(void *arg, int b0, int b1)
{
    const struct rows_job512 *j = arg;
    const struct rows_plan *p = &j->p;
    for (int b = b0, m = 0, o0, O; b < b1; b++) {
        const struct llm_rows_seg *s = cpu_seg_block(&p->sp, b, &m, &o0, &O);
        oblock_512(O, s->out + o0, p->x, s->w + (size_t)o0 * p->C, s->bias ? s->bias + o0 : NULL,
                   p->N, p->C, p->C16, j->tm, s->OC);
    }
}

static void linear_rows_512(int nt, const struct rows_plan *p)
{
    struct rows_job512 j = {*p, (__mmask16)((1u << (p->C - p->C16)) - 1)};
    cpu_parfor_steal(nt, p->sp.first[p->sp.nseg], cpu_steal_chunk((size_t)OBLK * p->C * sizeof(float)),
                     rows_blocks512, &j);
}

/* ---- portable fallback (no AVX2 + FMA) ---------------------------------- */

/* The same lane split and reduction tree as the AVX2 path, multiply then add. */
static float dot_lanes(const float *x, const float *w, int C)
{
    float l[16] = {0};
    int i = 0;
    for (; i + 16 <= C; i += 16)
        for (int j = 0; j < 16; j++)
            l[j] += x[i + j] * w[i + j];
    for (int j = 0; i + j < C; j++)
        l[j] += x[i + j] * w[i + j];
    for (int j = 0; j < 8; j++)
        l[j] += l[j + 8];
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static void linear_rows_plain(const struct cpu_ctx *c, float *out, const float *x, const float *w,
                              const float *bias, int N, int C, int OC)
{
    int nt = cpu_nthreads(c, (size_t)OC * C);
    /* each weight row once from memory, then from L1 for the N rows */
    CPU_PARFOR(nt,
        for (int o = 0; o < OC; o++)
            for (int n = 0; n < N; n++) {
                float s = dot_lanes(x + (size_t)n * C, w + (size_t)o * C, C);
                out[(size_t)n * OC + o] = bias ? s + bias[o] : s;
            });
}

int cpu_linear_rows_multi(void *ctx, const float *x, int N, int C, const struct llm_rows_seg *seg,
                          int nseg)
{
    struct cpu_ctx *c = cpu(ctx);
    struct rows_plan p = {x, N, C, C & ~15, {0}};
    size_t touched;
    int rc = cpu_seg_plan_init(&p.sp, "linear_rows", seg, nseg, N, C, OBLK, &touched);
    if (rc || N == 0)
        return rc;
    /* weights touched decide the threads (the x reuse is cache traffic) */
    int nt = cpu_nthreads(c, touched);
    if (c->ref || !cpu_has_avx2()) {
        for (int m = 0; m < nseg; m++)
            (c->ref ? linear_rows_ref : linear_rows_plain)(c, seg[m].out, x, seg[m].w, seg[m].bias, N, C,
                                                           seg[m].OC);
    } else if (cpu_has_avx512()) {
        linear_rows_512(nt, &p);
    } else {
        linear_rows_avx2(nt, &p);
    }
    return 0;
}

int cpu_linear_rows(void *ctx, float *out, const float *x, const float *w, const float *bias, int N,
                    int C, int OC)
{
    struct llm_rows_seg seg = {.w = w, .bias = bias, .out = out, .OC = OC};
    return cpu_linear_rows_multi(ctx, x, N, C, &seg, 1);
}
