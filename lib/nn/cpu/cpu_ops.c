/* cpu_ops.c: the CPU backend's ops other than attention: embeddings, norms,
 * matmul (OpenBLAS), activations, elementwise helpers, dropout, the fused
 * softmax cross-entropy, sum of squares and AdamW (contracts in backend.h).
 *
 * Threads: OpenMP over rows (or elements), num_threads = ctx->threads, with
 * small problems run on one thread. Every result is bit-identical for any
 * thread count: each output element is computed by one thread in a fixed
 * order, and reductions across rows (parameter gradients, sums) are done in an
 * order that depends only on the shapes, never on how rows were split:
 *  - column sums (embedding, positions, matmul dbias) are split over columns,
 *    each column summed over rows 0..N-1 in order by one thread;
 *  - norm weight gradients sum fixed blocks of ROW_BLOCK rows into per-block
 *    partials (in parallel), then add the partials in block order;
 *  - sumsq sums fixed blocks of SUM_BLOCK elements in double, then the block
 *    sums in block order.
 *  - matmul runs OpenBLAS single-threaded on a fixed grid of output tiles,
 *    small products also cut along K into fixed chunks (see cpu_gemm_tiled).
 * ctx->ref = 1 selects the plain loops (triple-loop matmul, threaded only
 * over whole output rows; serial reductions, libm's tanhf / expf): the oracle
 * the optimized paths are tested against. The optimized paths of the
 * activations, norms, cross-entropy, AdamW and column sums use AVX2 + FMA
 * kernels where the CPU has them ("Vector math" below), the plain loops
 * otherwise.
 *
 * Validation: row counts may be 0 (nothing to do); widths must be > 0; token
 * ids and targets are range-checked before anything is written.
 * Beyond backend.h: the norm forwards take mean/rstd NULL (inference, nothing
 * saved), the norm backwards take dx/dw/db NULL (not wanted), and
 * cross_entropy takes losses NULL. */
#include "cpu_impl.h"
#include "core/err.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Rows per block of the norm weight-gradient partial sums. */
#define ROW_BLOCK 64
/* Elements per block of sumsq's double partial sums. */
#define SUM_BLOCK 4096
/* Elements per task of the vectorized elementwise loops (fixed: the split
 * never changes a result, elementwise, but it keeps tasks cache-sized). */
#define EW_BLOCK 4096

/* ------------------------------------------------------------------------ */
/* Vector math (AVX2 + FMA, chosen at run time)                             */
/*
 * The build targets baseline x86-64 (-O2, no -m flags), so these kernels
 * carry their own target attribute and run only where cpu_has_avx2() says
 * the CPU has AVX2 and FMA; elsewhere the plain scalar loops (libm) run. Both
 * are deterministic; they differ from each other in the last bits.
 *
 * exp8: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 with ln 2
 * split in a short high part (exact products n * LN2_HI for |n| <= 128) and
 * a low part, so |r| <= ln2 / 2 + 1 ulp. exp(r) is its Taylor polynomial of
 * degree 7 (truncation < |r|^8 / 8! = 5.2e-9 relative), evaluated by Horner
 * with FMAs; 2^n is built in the exponent bits. Measured against double exp
 * over [-87, 88] (2e8 points): relative error < 1e-7 (worst 7.9e-8). Below -87.33 (where
 * 2^n would go subnormal) the result is 0; above 88.37 it saturates at
 * ~2.4e38 instead of inf; NaN in gives NaN out. About 15 vector ops for 8
 * values, against ~5-15 ns per scalar expf / tanhf call. */
#define AVX2_FN __attribute__((target("avx2,fma")))

/* A feature asked once: cache is -1 until probe has run, then written once
 * with the same value by whichever thread gets there. */
static int cached(int *cache, int (*probe)(void))
{
    int h = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = probe();
        __atomic_store_n(cache, h, __ATOMIC_RELAXED);
    }
    return h;
}

static int probe_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int probe_avx512(void) { return probe_avx2() && __builtin_cpu_supports("avx512f"); }
static int probe_avxvnni(void) { return probe_avx2() && __builtin_cpu_supports("avxvnni"); }

int cpu_avx2_only;

int cpu_has_avx2(void)
{
    static int have = -1;
    return cached(&have, probe_avx2);
}

int cpu_has_avx512(void)
{
    static int have = -1;
    return cached(&have, probe_avx512) && !cpu_avx2_only;
}

int cpu_has_avxvnni(void)
{
    static int have = -1;
    return cached(&have, probe_avxvnni) && !cpu_avx2_only;
}

AVX2_FN static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.37626f);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xin = x;
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);   /* LN2_HI = 355/512 */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);        /* LN2_LO = ln2 - LN2_HI */
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
    return _mm256_or_ps(y, _mm256_and_ps(nan, xin));
}

/* Lanes [0, k) of an 8-lane mask (k in 0..8), for the loads and stores of a tail. */
AVX2_FN static inline __m256i tail_mask(int k)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2_FN static double exp_row_avx2(float *y, const float *x, int n, float a, float b)
{
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (int j = 0; j < n; j += 8) {
        __m256i mask = tail_mask(n - j < 8 ? n - j : 8);
        __m256 v = exp8(_mm256_fmsub_ps(va, _mm256_maskload_ps(x + j, mask), vb));
        v = _mm256_and_ps(v, _mm256_castsi256_ps(mask)); /* lanes past n add 0 */
        if (y)
            _mm256_maskstore_ps(y + j, mask, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    return (t[0] + t[1]) + (t[2] + t[3]);
}

double cpu_exp_row(float *y, const float *x, int n, float a, float b)
{
    if (cpu_has_avx2())
        return exp_row_avx2(y, x, n, a, b);
    double s = 0.0;
    for (int j = 0; j < n; j++) {
        float e = expf(a * x[j] - b);
        if (y)
            y[j] = e;
        s += e;
    }
    return s;
}

/* GELU through the sigmoid: 0.5 (1 + tanh u) = sigmoid(2u), so with
 * u = k (x + 0.044715 x^3), s = 1 / (1 + exp(-2u)):
 *   gelu(x) = x s;  gelu'(x) = s + 2 x s (1 - s) k (1 + 3 * 0.044715 x^2)
 * (1 - tanh^2 u = 4 s (1 - s)). Unlike 0.5 x (1 + tanh u) it does not lose
 * digits to cancellation where tanh u is near -1 (x < -2), so its relative
 * error is exp8's plus a few roundings, < 1e-6. */
AVX2_FN static void gelu_avx2(float *out, const float *x, size_t n, const float *dout)
{
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), a = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f), k = _mm256_set1_ps(0.7978845608028654f);
    const __m256 a3 = _mm256_set1_ps(3.0f * 0.044715f), two = _mm256_set1_ps(2.0f);
    for (size_t i = 0; i < n; i += 8) {
        __m256i mask = tail_mask(n - i < 8 ? (int)(n - i) : 8);
        __m256 v = _mm256_maskload_ps(x + i, mask), v2 = _mm256_mul_ps(v, v);
        /* -2u = -2k x (1 + a x^2) */
        __m256 m2u = _mm256_mul_ps(_mm256_mul_ps(k2, v), _mm256_fmadd_ps(a, v2, one));
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(m2u)));
        __m256 y;
        if (!dout) {
            y = _mm256_mul_ps(v, s);
        } else {
            __m256 du = _mm256_mul_ps(k, _mm256_fmadd_ps(a3, v2, one));     /* du/dx */
            __m256 t = _mm256_mul_ps(_mm256_mul_ps(two, v), _mm256_mul_ps(s, _mm256_sub_ps(one, s)));
            y = _mm256_mul_ps(_mm256_maskload_ps(dout + i, mask), _mm256_fmadd_ps(t, du, s));
        }
        _mm256_maskstore_ps(out + i, mask, y);
    }
}

/* swiglu with sg = sigmoid(g) = 1 / (1 + exp(-g)) (formulas at cpu_swiglu_*). */
AVX2_FN static void swiglu_avx2(float *out, float *dup, const float *gate, const float *up,
                                const float *dout, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (size_t i = 0; i < n; i += 8) {
        __m256i mask = tail_mask(n - i < 8 ? (int)(n - i) : 8);
        __m256 g = _mm256_maskload_ps(gate + i, mask), u = _mm256_maskload_ps(up + i, mask);
        __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, g))));
        if (!dout) {
            _mm256_maskstore_ps(out + i, mask, _mm256_mul_ps(_mm256_mul_ps(g, sg), u));
            continue;
        }
        __m256 d = _mm256_maskload_ps(dout + i, mask);
        /* dgate = d u sg (1 + g (1 - sg)); dup = d g sg */
        __m256 dg = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, u), sg),
                                  _mm256_fmadd_ps(g, _mm256_sub_ps(one, sg), one));
        __m256 du = _mm256_mul_ps(_mm256_mul_ps(d, g), sg);
        _mm256_maskstore_ps(out + i, mask, dg);
        _mm256_maskstore_ps(dup + i, mask, du);
    }
}

/* max_j x[j] (exact in any order). */
AVX2_FN static float max_avx2(const float *x, int n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    float t[8], r = -INFINITY;
    _mm256_storeu_ps(t, m);
    for (int i = 0; i < 8; i++)
        r = t[i] > r ? t[i] : r;
    for (; j < n; j++)
        r = x[j] > r ? x[j] : r;
    return r;
}

/* x[j] *= a */
AVX2_FN static void scale_avx2(float *x, float a, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), va));
    for (; j < n; j++)
        x[j] *= a;
}

/* AdamW, the scalar loop's operations in the same order (no FMA), so the
 * bits equal the scalar path's: IEEE division and square root are exact. */
AVX2_FN static void adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, float lr,
                               float b1, float b2, float eps, float wd, float bc1, float bc2,
                               float grad_scale)
{
    const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), c1 = _mm256_set1_ps(1.0f - b1),
                 c2 = _mm256_set1_ps(1.0f - b2), vbc1 = _mm256_set1_ps(bc1),
                 vbc2 = _mm256_set1_ps(bc2), veps = _mm256_set1_ps(eps), vlr = _mm256_set1_ps(lr),
                 vwd = _mm256_set1_ps(wd), vgs = _mm256_set1_ps(grad_scale);
    for (size_t i = 0; i < n; i += 8) {
        __m256i mask = tail_mask(n - i < 8 ? (int)(n - i) : 8);
        __m256 gs = _mm256_mul_ps(_mm256_maskload_ps(g + i, mask), vgs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_maskload_ps(m + i, mask)),
                                  _mm256_mul_ps(c1, gs));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_maskload_ps(v + i, mask)),
                                  _mm256_mul_ps(_mm256_mul_ps(c2, gs), gs));
        _mm256_maskstore_ps(m + i, mask, mi);
        _mm256_maskstore_ps(v + i, mask, vi);
        __m256 mhat = _mm256_div_ps(mi, vbc1), vhat = _mm256_div_ps(vi, vbc2);
        __m256 pi = _mm256_maskload_ps(p + i, mask);
        __m256 upd = _mm256_add_ps(_mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), veps)),
                                   _mm256_mul_ps(vwd, pi));
        _mm256_maskstore_ps(p + i, mask, _mm256_sub_ps(pi, _mm256_mul_ps(vlr, upd)));
    }
}

/* dst[i] += sum_{n<N} src[n*ld + i] for i < cols (cols <= COLSUM_W), rows in
 * order into an accumulator row in L1, so each element's sum is the scalar
 * order; a task streams COLSUM_W contiguous floats of each row. */
#define COLSUM_W 256
AVX2_FN static void colsum_avx2(float *dst, const float *src, int N, int cols, size_t ld)
{
    float acc[COLSUM_W] __attribute__((aligned(32)));
    memset(acc, 0, sizeof(acc));
    int full = cols & ~7;
    for (int n = 0; n < N; n++) {
        const float *row = src + (size_t)n * ld;
        for (int i = 0; i < full; i += 8)
            _mm256_store_ps(acc + i, _mm256_add_ps(_mm256_load_ps(acc + i), _mm256_loadu_ps(row + i)));
        for (int i = full; i < cols; i++)
            acc[i] += row[i];
    }
    for (int i = 0; i < cols; i++)
        dst[i] += acc[i];
}

/* Norm rows with 8-lane partial sums (the scalar rows sum in one serial
 * chain of dependent adds, ~4 cycles each): the lanes are added in a fixed
 * order, so a row's bits depend only on the row. */
AVX2_FN static inline float hsum8(__m256 v)
{
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

/* layernorm (mean != NULL: b may be NULL) or rmsnorm (mean == NULL) of one row */
AVX2_FN static void norm_fwd_row_avx2(float *o, float *mean, float *rstd, const float *x,
                                      const float *w, const float *b, int C, float eps, int ln)
{
    __m256 acc = _mm256_setzero_ps(), mu = _mm256_setzero_ps();
    float m = 0.0f;
    if (ln) {
        for (int i = 0; i < C; i += 8)
            acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + i, tail_mask(C - i < 8 ? C - i : 8)));
        m = hsum8(acc) / (float)C;
        mu = _mm256_set1_ps(m);
        acc = _mm256_setzero_ps();
    }
    for (int i = 0; i < C; i += 8) { /* sum (x - mu)^2; masked lanes load 0 and add 0 */
        __m256i mask = tail_mask(C - i < 8 ? C - i : 8);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), mu),
                                 _mm256_castsi256_ps(mask));
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float sc = 1.0f / sqrtf(hsum8(acc) / (float)C + eps);
    __m256 vs = _mm256_set1_ps(sc);
    for (int i = 0; i < C; i += 8) {
        __m256i mask = tail_mask(C - i < 8 ? C - i : 8);
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), mu), vs),
                                 _mm256_maskload_ps(w + i, mask));
        if (b)
            y = _mm256_add_ps(y, _mm256_maskload_ps(b + i, mask));
        _mm256_maskstore_ps(o + i, mask, y);
    }
    if (mean)
        *mean = m;
    if (rstd)
        *rstd = sc;
}

/* The backward row of layernorm (ln = 1) or rmsnorm (ln = 0, mu = 0, no pb):
 * layernorm_backward_row's and rmsnorm_backward_row's math. */
AVX2_FN static void norm_bwd_row_avx2(float *dx, float *pw, float *pb, const float *dout,
                                      const float *x, const float *w, float mu, float s, int C,
                                      int ln)
{
    __m256 vmu = _mm256_set1_ps(mu), vs = _mm256_set1_ps(s);
    __m256 sdy = _mm256_setzero_ps(), sdyxh = _mm256_setzero_ps();
    for (int i = 0; i < C; i += 8) {
        __m256i mask = tail_mask(C - i < 8 ? C - i : 8);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vmu), vs);
        __m256 dy = _mm256_mul_ps(_mm256_maskload_ps(dout + i, mask), _mm256_maskload_ps(w + i, mask));
        sdy = _mm256_add_ps(sdy, dy);
        sdyxh = _mm256_fmadd_ps(dy, xh, sdyxh);
    }
    __m256 mdy = _mm256_set1_ps(ln ? hsum8(sdy) / (float)C : 0.0f);
    __m256 mdyxh = _mm256_set1_ps(hsum8(sdyxh) / (float)C);
    for (int i = 0; i < C; i += 8) {
        __m256i mask = tail_mask(C - i < 8 ? C - i : 8);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vmu), vs);
        __m256 d = _mm256_maskload_ps(dout + i, mask);
        if (pw)
            _mm256_maskstore_ps(pw + i, mask, _mm256_fmadd_ps(d, xh, _mm256_maskload_ps(pw + i, mask)));
        if (pb)
            _mm256_maskstore_ps(pb + i, mask, _mm256_add_ps(_mm256_maskload_ps(pb + i, mask), d));
        if (dx) {
            __m256 t = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_maskload_ps(w + i, mask)), mdy);
            _mm256_maskstore_ps(dx + i, mask, _mm256_mul_ps(vs, _mm256_fnmadd_ps(xh, mdyxh, t)));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Column sums shared by the scatter/gather backward passes.                */

/* dst[i] += sum_{n=0..N-1} src[n*ld + i] for i in [0, C), each column summed
 * in row order by one thread (so the bits never depend on the thread count). */
static void colsum_add(const struct cpu_ctx *c, float *dst, const float *src, int N, int C,
                       size_t ld)
{
    if (cpu_has_avx2()) {
        int nch = (C + COLSUM_W - 1) / COLSUM_W;
        CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
            for (int k = 0; k < nch; k++)
                colsum_avx2(dst + COLSUM_W * k, src + COLSUM_W * k, N,
                            C - COLSUM_W * k < COLSUM_W ? C - COLSUM_W * k : COLSUM_W, ld););
        return;
    }
    int nchunks = (C + CPU_COL_CHUNK - 1) / CPU_COL_CHUNK;
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int k = 0; k < nchunks; k++) {
            int i0 = k * CPU_COL_CHUNK, i1 = i0 + CPU_COL_CHUNK < C ? i0 + CPU_COL_CHUNK : C;
            float acc[CPU_COL_CHUNK] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = src + (size_t)n * ld;
                for (int i = i0; i < i1; i++)
                    acc[i - i0] += row[i];
            }
            for (int i = i0; i < i1; i++)
                dst[i] += acc[i - i0];
        });
}

/* ------------------------------------------------------------------------ */
/* Embeddings                                                               */

int cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte, int N,
                          int C, int V)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("embedding", N, C);
    if (rc)
        return rc;
    if (V <= 0)
        return llm_err(LLM_EINVAL, "embedding: vocabulary size %d must be positive", V);
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= V)
            return llm_err(LLM_EINVAL, "token id %d at position %d is outside the vocabulary (%d)",
                           tokens[n], n, V);
    /* out[n,:] = wte[tokens[n],:]  (N, C) <- (V, C) */
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(float)););
    return 0;
}

int cpu_embedding_backward(void *ctx, float *dwte, const float *dout, const int32_t *tokens, int N,
                           int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("embedding backward", N, C);
    if (rc)
        return rc;
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0)
            return llm_err(LLM_EINVAL, "token id %d at position %d is outside the vocabulary",
                           tokens[n], n);
    /* dwte[tokens[n],:] += dout[n,:]. Rows sharing a token collide, so the
     * split is over columns: each column chunk walks rows 0..N-1 in order. */
    int nchunks = (C + CPU_COL_CHUNK - 1) / CPU_COL_CHUNK;
    if (c->ref)
        nchunks = 1;
    int chunk = c->ref ? C : CPU_COL_CHUNK;
    CPU_PARFOR(c->ref ? 1 : cpu_nthreads(c, (size_t)N * C),
        for (int k = 0; k < nchunks; k++) {
            int i0 = k * chunk, i1 = i0 + chunk < C ? i0 + chunk : C;
            for (int n = 0; n < N; n++) {
                float *dst = dwte + (size_t)tokens[n] * C;
                const float *src = dout + (size_t)n * C;
                for (int i = i0; i < i1; i++)
                    dst[i] += src[i];
            }
        });
    return 0;
}

int cpu_check_packed(const char *op, const int32_t *pos, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t p = pos[(size_t)b * T + t];
            if (p != 0 && (t == 0 || p != pos[(size_t)b * T + t - 1] + 1))
                return llm_err(LLM_EINVAL,
                               "%s: packed position %d at row %d, token %d is neither 0 (an example's "
                               "start) nor the previous position + 1",
                               op, (int)p, b, t);
        }
    return 0;
}

/* Positions p(b,t) of add_positions: pos0 + t, or pos0 + pos[b,t] (>= 0). */
static int check_positions(const char *op, const int32_t *pos, int B, int T, int pos0)
{
    if (B < 0 || T < 0 || pos0 < 0)
        return llm_err(LLM_EINVAL, "%s: B %d, T %d and pos0 %d must be >= 0", op, B, T, pos0);
    for (size_t r = 0; pos && r < (size_t)B * T; r++)
        if (pos[r] < 0)
            return llm_err(LLM_EINVAL, "%s: position %d < 0 at row %zu", op, (int)pos[r], r);
    return 0;
}

int cpu_add_positions(void *ctx, float *x, const float *wpe, const int32_t *pos, int B, int T,
                      int C, int pos0)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("add_positions", (long)B * T, C);
    if (rc || (rc = check_positions("add_positions", pos, B, T, pos0)))
        return rc;
    /* x[b,t,:] += wpe[p(b,t),:]  (B, T, C) */
    int rows = B * T;
    CPU_PARFOR(cpu_nthreads(c, (size_t)rows * C),
        for (int r = 0; r < rows; r++) {
            float *xr = x + (size_t)r * C;
            const float *pr = wpe + (size_t)(pos0 + (pos ? pos[r] : r % T)) * C;
            for (int i = 0; i < C; i++)
                xr[i] += pr[i];
        });
    return 0;
}

int cpu_add_positions_backward(void *ctx, float *dwpe, const float *dx, const int32_t *pos, int B,
                               int T, int C, int pos0)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("add_positions backward", (long)B * T, C);
    if (rc || (rc = check_positions("add_positions backward", pos, B, T, pos0)))
        return rc;
    int nt = c->ref ? 1 : cpu_nthreads(c, (size_t)B * T * C);
    if (!pos) {
        /* dwpe[pos0 + t,:] += sum_b dx[b,t,:]: one thread per t, b in order. */
        CPU_PARFOR(nt,
            for (int t = 0; t < T; t++) {
                float *dp = dwpe + (size_t)(pos0 + t) * C;
                for (int b = 0; b < B; b++) {
                    const float *dr = dx + ((size_t)b * T + t) * C;
                    for (int i = 0; i < C; i++)
                        dp[i] += dr[i];
                }
            });
        return 0;
    }
    /* Packed: rows of different t share a position, so threads split the
     * columns instead, and each adds every row in order (the same sums for
     * any thread count). */
#pragma omp parallel num_threads(nt)
    {
        int n = omp_get_num_threads(), id = omp_get_thread_num();
        int i0 = (int)((long)C * id / n), i1 = (int)((long)C * (id + 1) / n);
        for (size_t r = 0; r < (size_t)B * T; r++) {
            float *dp = dwpe + (size_t)(pos0 + pos[r]) * C;
            const float *dr = dx + r * C;
            for (int i = i0; i < i1; i++)
                dp[i] += dr[i];
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Norms                                                                    */

int cpu_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int N, int C, float eps)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("layernorm", N, C);
    if (rc)
        return rc;
    /* Per row (two passes, float): mu = sum x / C; var = sum (x - mu)^2 / C;
     * s = 1 / sqrt(var + eps); out = (x - mu) * s * w + b. mean and rstd (N)
     * are saved for the backward pass unless NULL (inference). */
    if (!c->ref && cpu_has_avx2()) {
        CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
            for (int n = 0; n < N; n++)
                norm_fwd_row_avx2(out + (size_t)n * C, mean ? mean + n : NULL, rstd ? rstd + n : NULL,
                                  x + (size_t)n * C, w, b, C, eps, 1););
        return 0;
    }
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            float *o = out + (size_t)n * C;
            float sum = 0.0f;
            for (int i = 0; i < C; i++)
                sum += xr[i];
            float mu = sum / (float)C;
            float var = 0.0f;
            for (int i = 0; i < C; i++) {
                float d = xr[i] - mu;
                var += d * d;
            }
            var /= (float)C;
            float s = 1.0f / sqrtf(var + eps);
            for (int i = 0; i < C; i++) {
                float y = (xr[i] - mu) * s * w[i];
                o[i] = b ? y + b[i] : y;
            }
            if (mean)
                mean[n] = mu;
            if (rstd)
                rstd[n] = s;
        });
    return 0;
}

/* The per-row part of the layernorm backward pass. With xh = (x - mu) * s
 * and dy = dout * w (elementwise):
 *   dx = s * (dy - mean(dy) - xh * mean(dy * xh))
 * and this row's contributions to the parameter gradients:
 *   dw += dout * xh;  db += dout
 * (accumulated into pw / pb, either may be NULL). */
static void layernorm_backward_row(float *dx, float *pw, float *pb, const float *dout,
                                   const float *x, const float *w, float mu, float s, int C)
{
    float sdy = 0.0f, sdyxh = 0.0f;
    for (int i = 0; i < C; i++) {
        float xh = (x[i] - mu) * s;
        float dy = dout[i] * w[i];
        sdy += dy;
        sdyxh += dy * xh;
    }
    float mdy = sdy / (float)C, mdyxh = sdyxh / (float)C;
    for (int i = 0; i < C; i++) {
        float xh = (x[i] - mu) * s, d = dout[i];
        if (pw)
            pw[i] += d * xh;
        if (pb)
            pb[i] += d;
        if (dx)
            dx[i] = s * (d * w[i] - mdy - xh * mdyxh);
    }
}

/* The per-row part of the rmsnorm backward pass. With xh = x * s and
 * dy = dout * w: dx = s * (dy - xh * mean(dy * xh)); dw += dout * xh. */
static void rmsnorm_backward_row(float *dx, float *pw, const float *dout, const float *x,
                                 const float *w, float s, int C)
{
    float sdyxh = 0.0f;
    for (int i = 0; i < C; i++)
        sdyxh += dout[i] * w[i] * (x[i] * s);
    float mdyxh = sdyxh / (float)C;
    for (int i = 0; i < C; i++) {
        float xh = x[i] * s, d = dout[i];
        if (pw)
            pw[i] += d * xh;
        if (dx)
            dx[i] = s * (d * w[i] - xh * mdyxh);
    }
}

/* Adds block partials part[k*C + i] (k = 0..nblk-1) into dst[i], summing the
 * blocks in order for each column. */
static void add_block_partials(const struct cpu_ctx *c, float *dst, const float *part, int nblk,
                               int C)
{
    colsum_add(c, dst, part, nblk, C, (size_t)C);
}

/* Shared driver of both norm backward passes: rows in fixed blocks of
 * ROW_BLOCK; block k accumulates its rows' dw/db contributions into its own
 * partial rows, then the partials are added in block order. Norm kind:
 * mean != NULL is layernorm, else rmsnorm. */
static int norm_backward(struct cpu_ctx *c, float *dx, float *dw, float *db, const float *dout,
                         const float *x, const float *w, const float *mean, const float *rstd,
                         int N, int C)
{
    if (c->ref) {
        /* Reference: rows in order, parameter gradients accumulated serially. */
        for (int n = 0; n < N; n++) {
            size_t o = (size_t)n * C;
            if (mean)
                layernorm_backward_row(dx ? dx + o : NULL, dw, db, dout + o, x + o, w, mean[n],
                                       rstd[n], C);
            else
                rmsnorm_backward_row(dx ? dx + o : NULL, dw, dout + o, x + o, w, rstd[n], C);
        }
        return 0;
    }
    int nblk = (N + ROW_BLOCK - 1) / ROW_BLOCK;
    int nparts = (dw != NULL) + (db != NULL);
    float *part = NULL;
    if (nparts) {
        part = calloc((size_t)nblk * nparts * C, sizeof(float));
        if (!part)
            return llm_err(LLM_ENOMEM, "out of memory for the norm backward partial sums");
    }
    /* part layout: [nblk, C] for dw, then [nblk, C] for db. */
    float *pw_all = dw ? part : NULL;
    float *pb_all = db ? part + (dw ? (size_t)nblk * C : 0) : NULL;
    int avx2 = cpu_has_avx2();
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int k = 0; k < nblk; k++) {
            float *pw = pw_all ? pw_all + (size_t)k * C : NULL;
            float *pb = pb_all ? pb_all + (size_t)k * C : NULL;
            int n1 = (k + 1) * ROW_BLOCK < N ? (k + 1) * ROW_BLOCK : N;
            for (int n = k * ROW_BLOCK; n < n1; n++) {
                size_t o = (size_t)n * C;
                if (avx2)
                    norm_bwd_row_avx2(dx ? dx + o : NULL, pw, pb, dout + o, x + o, w,
                                      mean ? mean[n] : 0.0f, rstd[n], C, mean != NULL);
                else if (mean)
                    layernorm_backward_row(dx ? dx + o : NULL, pw, pb, dout + o, x + o, w, mean[n],
                                           rstd[n], C);
                else
                    rmsnorm_backward_row(dx ? dx + o : NULL, pw, dout + o, x + o, w, rstd[n], C);
            }
        });
    if (dw)
        add_block_partials(c, dw, pw_all, nblk, C);
    if (db)
        add_block_partials(c, db, pb_all, nblk, C);
    free(part);
    return 0;
}

int cpu_layernorm_backward(void *ctx, float *dx, float *dw, float *db, const float *dout,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int N, int C)
{
    int rc = cpu_check_dims("layernorm backward", N, C);
    if (rc)
        return rc;
    if (N > 0 && (!mean || !rstd))
        return llm_err(LLM_EINVAL, "layernorm backward needs the mean and rstd saved by forward");
    /* dx written (may be NULL); dw, db accumulated (either may be NULL). */
    return norm_backward(cpu(ctx), dx, dw, db, dout, x, w, mean, rstd, N, C);
}

int cpu_rmsnorm_forward(void *ctx, float *out, float *rstd, const float *x, const float *w, int N,
                        int C, float eps)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("rmsnorm", N, C);
    if (rc)
        return rc;
    /* s = 1 / sqrt(sum x^2 / C + eps); out = x * s * w; rstd[n] = s unless NULL. */
    if (!c->ref && cpu_has_avx2()) {
        CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
            for (int n = 0; n < N; n++)
                norm_fwd_row_avx2(out + (size_t)n * C, NULL, rstd ? rstd + n : NULL, x + (size_t)n * C,
                                  w, NULL, C, eps, 0););
        return 0;
    }
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            float *o = out + (size_t)n * C;
            float ss = 0.0f;
            for (int i = 0; i < C; i++)
                ss += xr[i] * xr[i];
            float s = 1.0f / sqrtf(ss / (float)C + eps);
            for (int i = 0; i < C; i++)
                o[i] = xr[i] * s * w[i];
            if (rstd)
                rstd[n] = s;
        });
    return 0;
}

int cpu_rmsnorm_backward(void *ctx, float *dx, float *dw, const float *dout, const float *x,
                         const float *w, const float *rstd, int N, int C)
{
    int rc = cpu_check_dims("rmsnorm backward", N, C);
    if (rc)
        return rc;
    if (N > 0 && !rstd)
        return llm_err(LLM_EINVAL, "rmsnorm backward needs the rstd saved by forward");
    return norm_backward(cpu(ctx), dx, dw, NULL, dout, x, w, NULL, rstd, N, C);
}

/* ------------------------------------------------------------------------ */
/* Matmul: out (N, OC) = x (N, C) @ w (OC, C)^T + bias. 2*N*C*OC FLOPs forward,
 * 4*N*C*OC backward (dx and dw).                                            */

/* OpenBLAS splits a call among its threads in a way that changes which
 * micro-kernel (and so which summation order) each output element gets, so
 * its threaded results differ in the last bits from its one-thread results.
 * We therefore cut every product into a fixed grid of GEMM_TILE x GEMM_TILE
 * output tiles (fixed: it depends only on the shapes), run the tiles on our
 * OpenMP threads, and call OpenBLAS single-threaded on each tile: each tile's
 * bits then depend only on its inputs, never on the thread count. Each tile
 * keeps the whole K dimension, so no sums are split. On 2 cores (N=2048,
 * C=768, OC=3072) it runs as fast as OpenBLAS's own threading, within noise;
 * 256 x 256 tiles keep the packing overhead ~1% and give 96 tiles to share.
 *
 * A product with fewer than GEMM_MIN_TASKS tiles (the weight gradient of a
 * 256 x 256 matrix is one tile, with K = N = 2048 rows) would leave threads
 * idle, so its K dimension is cut too, into ks chunks of at least
 * GEMM_KCHUNK_MIN (ks from the shapes only): each (tile, chunk) product goes
 * to its own partial buffer, and the partials are added in chunk order
 * afterwards, C = (beta C or bias) + P_0 + P_1 + ... Still bit-identical for
 * any thread count; the extra pass reads ks x M x Nc floats, small next to
 * the 2 M Nc K FLOPs (K >= 2 * 256). */
#define GEMM_TILE 256
#define GEMM_MIN_TASKS 8
#define GEMM_KCHUNK_MIN 256

/* OpenBLAS's thread count is process-wide: make sure it is 1 (our tiles run
 * concurrently, each in its own OpenMP thread). */
static void blas_single_thread(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

/* Row-major C (M, Nc) = A' (M, K) @ B' (K, Nc) + beta C, where A' is A
 * (ta: A stored (K, M), lda) and B' is B (tb: B stored (Nc, K), ldb), on the
 * fixed tile grid. bias (Nc, may be NULL): each tile's C rows are first set to
 * bias and beta is taken as 1 (out = x @ w^T + bias in one pass). */
void cpu_gemm_tiled(const struct cpu_ctx *c, int ta, int tb, int M, int Nc, int K,
                       const float *A, int lda, const float *B, int ldb, float beta, float *Cm,
                       int ldc, const float *bias)
{
    int tm = (M + GEMM_TILE - 1) / GEMM_TILE, tn = (Nc + GEMM_TILE - 1) / GEMM_TILE;
    long ntiles = (long)tm * tn;
    int ks = 1;
    if (ntiles < GEMM_MIN_TASKS && K >= 2 * GEMM_KCHUNK_MIN) {
        ks = (int)((GEMM_MIN_TASKS + ntiles - 1) / ntiles);
        if (ks > K / GEMM_KCHUNK_MIN)
            ks = K / GEMM_KCHUNK_MIN;
    }
    float *part = ks > 1 ? malloc((size_t)ks * M * Nc * sizeof(float)) : NULL;
    blas_single_thread();
    if (part) {
        int kc = ((K + ks - 1) / ks + 15) & ~15; /* K per chunk, a multiple of 16 */
        ks = (K + kc - 1) / kc;
        long ntask = ntiles * ks;
        int nt = ntask < c->threads ? (int)ntask : c->threads;
        CPU_PARFOR_DYNAMIC(nt,
            for (long task = 0; task < ntask; task++) {
                long k = task / ks;
                int q = (int)(task % ks), k0 = q * kc, kk = K - k0 < kc ? K - k0 : kc;
                int i0 = (int)(k / tn) * GEMM_TILE, j0 = (int)(k % tn) * GEMM_TILE;
                int mm = M - i0 < GEMM_TILE ? M - i0 : GEMM_TILE;
                int nn = Nc - j0 < GEMM_TILE ? Nc - j0 : GEMM_TILE;
                const float *at = ta ? A + (size_t)k0 * lda + i0 : A + (size_t)i0 * lda + k0;
                const float *bt = tb ? B + (size_t)j0 * ldb + k0 : B + (size_t)k0 * ldb + j0;
                cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                            tb ? CblasTrans : CblasNoTrans, mm, nn, kk, 1.0f, at, lda, bt, ldb, 0.0f,
                            part + (size_t)q * M * Nc + (size_t)i0 * Nc + j0, Nc);
            });
        /* C = (bias | beta C | 0) + P_0 + ... + P_{ks-1}, each element in chunk order */
#pragma omp parallel for num_threads(cpu_nthreads(c, (size_t)M * Nc * ks)) schedule(static)
        for (int i = 0; i < M; i++) {
            float *restrict cr = Cm + (size_t)i * ldc;
            if (bias)
                memcpy(cr, bias, (size_t)Nc * sizeof(float));
            else if (beta == 0.0f)
                memset(cr, 0, (size_t)Nc * sizeof(float));
            else if (beta != 1.0f)
                for (int j = 0; j < Nc; j++)
                    cr[j] *= beta;
            for (int q = 0; q < ks; q++) {
                const float *restrict pr = part + (size_t)q * M * Nc + (size_t)i * Nc;
#pragma omp simd
                for (int j = 0; j < Nc; j++)
                    cr[j] += pr[j];
            }
        }
        free(part);
        return;
    }
    int nt = ntiles < c->threads ? (int)ntiles : c->threads;
    CPU_PARFOR_DYNAMIC(nt,
        for (long k = 0; k < ntiles; k++) {
            int i0 = (int)(k / tn) * GEMM_TILE, j0 = (int)(k % tn) * GEMM_TILE;
            int mm = M - i0 < GEMM_TILE ? M - i0 : GEMM_TILE;
            int nn = Nc - j0 < GEMM_TILE ? Nc - j0 : GEMM_TILE;
            float *ct = Cm + (size_t)i0 * ldc + j0;
            float b = beta;
            if (bias) {
                for (int i = 0; i < mm; i++)
                    memcpy(ct + (size_t)i * ldc, bias + j0, (size_t)nn * sizeof(float));
                b = 1.0f;
            }
            const float *at = ta ? A + i0 : A + (size_t)i0 * lda;
            const float *bt = tb ? B + (size_t)j0 * ldb : B + j0;
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        mm, nn, K, 1.0f, at, lda, bt, ldb, b, ct, ldc);
        });
}

int cpu_matmul_forward(void *ctx, float *out, const float *x, const float *w, const float *bias,
                       int N, int C, int OC)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("matmul", N, C);
    if (rc || (rc = cpu_check_dims("matmul", N, OC)))
        return rc;
    if (N == 0)
        return 0;
    if (c->ref) {
        /* out[n,o] = bias[o] + sum_i x[n,i] w[o,i] */
        CPU_PARFOR(c->threads,
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C;
                for (int o = 0; o < OC; o++) {
                    const float *wr = w + (size_t)o * C;
                    float acc = bias ? bias[o] : 0.0f;
                    for (int i = 0; i < C; i++)
                        acc += xr[i] * wr[i];
                    out[(size_t)n * OC + o] = acc;
                }
            });
        return 0;
    }
    /* out (N, OC) = x (N, C) @ w^T (C, OC) [+ bias] */
    cpu_gemm_tiled(c, 0, 1, N, OC, C, x, C, w, C, 0.0f, out, OC, bias);
    return 0;
}

int cpu_matmul_backward(void *ctx, float *dx, float *dw, float *dbias, const float *dout,
                        const float *x, const float *w, int N, int C, int OC)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("matmul backward", N, C);
    if (rc || (rc = cpu_check_dims("matmul backward", N, OC)))
        return rc;
    if (N == 0)
        return 0;
    if (c->ref) {
        /* dx[n,i] = sum_o dout[n,o] w[o,i] (written) */
        if (dx) {
            CPU_PARFOR(c->threads,
                for (int n = 0; n < N; n++) {
                    const float *dr = dout + (size_t)n * OC;
                    for (int i = 0; i < C; i++) {
                        float acc = 0.0f;
                        for (int o = 0; o < OC; o++)
                            acc += dr[o] * w[(size_t)o * C + i];
                        dx[(size_t)n * C + i] = acc;
                    }
                });
        }
        /* dw[o,i] += sum_n dout[n,o] x[n,i];  dbias[o] += sum_n dout[n,o] */
        CPU_PARFOR(c->threads,
            for (int o = 0; o < OC; o++) {
                if (dw) {
                    for (int i = 0; i < C; i++) {
                        float acc = 0.0f;
                        for (int n = 0; n < N; n++)
                            acc += dout[(size_t)n * OC + o] * x[(size_t)n * C + i];
                        dw[(size_t)o * C + i] += acc;
                    }
                }
                if (dbias) {
                    float acc = 0.0f;
                    for (int n = 0; n < N; n++)
                        acc += dout[(size_t)n * OC + o];
                    dbias[o] += acc;
                }
            });
        return 0;
    }
    /* dx (N, C) = dout (N, OC) @ w (OC, C) */
    if (dx)
        cpu_gemm_tiled(c, 0, 0, N, C, OC, dout, OC, w, C, 0.0f, dx, C, NULL);
    /* dw (OC, C) += dout^T (OC, N) @ x (N, C) */
    if (dw)
        cpu_gemm_tiled(c, 1, 0, OC, C, N, dout, OC, x, C, 1.0f, dw, C, NULL);
    if (dbias)
        colsum_add(c, dbias, dout, N, OC, (size_t)OC);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */

/* GELU, tanh approximation (GPT-2): u = k (x + 0.044715 x^3), k = sqrt(2/pi);
 *   gelu(x) = 0.5 x (1 + tanh u)
 *   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) k (1 + 3 * 0.044715 x^2) */
#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

static inline float gelu(float x)
{
    float u = GELU_K * (x + GELU_A * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static inline float gelu_grad(float x)
{
    float u = GELU_K * (x + GELU_A * x * x * x);
    float th = tanhf(u);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
}

static int bad_kind(int kind)
{
    return llm_err(LLM_EINVAL, "unknown activation kind %d", kind);
}

int cpu_activation_forward(void *ctx, int kind, float *out, const float *x, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    int nt = cpu_nthreads(c, n);
    switch (kind) {
    case LLM_ACT_RELU: /* max(x, 0) */
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                out[i] = x[i] > 0.0f ? x[i] : 0.0f;);
        return 0;
    case LLM_ACT_GELU:
        if (!c->ref && cpu_has_avx2()) {
            size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
            CPU_PARFOR(nt,
                for (size_t k = 0; k < nb; k++)
                    gelu_avx2(out + k * EW_BLOCK, x + k * EW_BLOCK,
                              n - k * EW_BLOCK < EW_BLOCK ? n - k * EW_BLOCK : EW_BLOCK, NULL););
            return 0;
        }
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                out[i] = gelu(x[i]););
        return 0;
    case LLM_ACT_RELU2: /* relu(x)^2 */
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                out[i] = x[i] > 0.0f ? x[i] * x[i] : 0.0f;);
        return 0;
    default:
        return bad_kind(kind);
    }
}

int cpu_activation_backward(void *ctx, int kind, float *dx, const float *dout, const float *x,
                            size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    int nt = cpu_nthreads(c, n);
    switch (kind) {
    case LLM_ACT_RELU: /* relu'(x) = [x > 0] */
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                dx[i] = x[i] > 0.0f ? dout[i] : 0.0f;);
        return 0;
    case LLM_ACT_GELU:
        if (!c->ref && cpu_has_avx2()) {
            size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
            CPU_PARFOR(nt,
                for (size_t k = 0; k < nb; k++)
                    gelu_avx2(dx + k * EW_BLOCK, x + k * EW_BLOCK,
                              n - k * EW_BLOCK < EW_BLOCK ? n - k * EW_BLOCK : EW_BLOCK,
                              dout + k * EW_BLOCK););
            return 0;
        }
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                dx[i] = dout[i] * gelu_grad(x[i]););
        return 0;
    case LLM_ACT_RELU2: /* (relu(x)^2)' = 2 relu(x) */
        CPU_PARFOR(nt,
            for (size_t i = 0; i < n; i++)
                dx[i] = x[i] > 0.0f ? 2.0f * x[i] * dout[i] : 0.0f;);
        return 0;
    default:
        return bad_kind(kind);
    }
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

int cpu_swiglu_forward(void *ctx, float *out, const float *gate, const float *up, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    /* out = silu(g) * u, silu(g) = g * sigmoid(g) */
    if (!c->ref && cpu_has_avx2()) {
        size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
        CPU_PARFOR(cpu_nthreads(c, n),
            for (size_t k = 0; k < nb; k++) {
                size_t o = k * EW_BLOCK;
                swiglu_avx2(out + o, NULL, gate + o, up + o, NULL, n - o < EW_BLOCK ? n - o : EW_BLOCK);
            });
        return 0;
    }
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++)
            out[i] = gate[i] * sigmoid(gate[i]) * up[i];);
    return 0;
}

int cpu_swiglu_backward(void *ctx, float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    /* With sg = sigmoid(g): silu'(g) = sg (1 + g (1 - sg)), so
     *   dgate = dout * u * sg * (1 + g (1 - sg));  dup = dout * g * sg.
     * Both written; dgate and dup may alias dout / gate / up elementwise. */
    if (!c->ref && cpu_has_avx2()) {
        size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
        CPU_PARFOR(cpu_nthreads(c, n),
            for (size_t k = 0; k < nb; k++) {
                size_t o = k * EW_BLOCK;
                swiglu_avx2(dgate + o, dup + o, gate + o, up + o, dout + o,
                            n - o < EW_BLOCK ? n - o : EW_BLOCK);
            });
        return 0;
    }
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], u = up[i], d = dout[i];
            float sg = sigmoid(g);
            dgate[i] = d * u * sg * (1.0f + g * (1.0f - sg));
            dup[i] = d * g * sg;
        });
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Elementwise helpers (outputs may alias inputs)                           */

int cpu_add(void *ctx, float *out, const float *a, const float *b, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++)
            out[i] = a[i] + b[i];);
    return 0;
}

int cpu_axpy(void *ctx, float *y, float alpha, const float *x, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++)
            y[i] += alpha * x[i];);
    return 0;
}

int cpu_scale(void *ctx, float *x, float alpha, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++)
            x[i] *= alpha;);
    return 0;
}

int cpu_scale_rows(void *ctx, float *x, const float *w, int N, int D)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * D),
        for (int i = 0; i < N; i++) {
            float a = w[i];
            float *r = x + (size_t)i * D;
            for (int j = 0; j < D; j++)
                r[j] *= a;
        });
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Dropout. The mask is a pure function of (seed, i), so it needs no storage,
 * does not depend on threads, and another backend can reproduce it exactly:
 *   h_i = splitmix64 output number i + 1 from state `seed`
 *       = mix(seed + (i + 1) * 0x9E3779B97F4A7C15)   (the mix of core/rng.h)
 *   u_i = (h_i >> 40) * 2^-24   (24 random bits, exact in float)
 *   keep_i = u_i >= p;  out_i = keep_i ? x_i / (1 - p) : 0                  */

static inline uint64_t splitmix64_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int dropout(struct cpu_ctx *c, float *out, const float *x, size_t n, float p, uint64_t seed)
{
    if (!(p >= 0.0f && p < 1.0f))
        return llm_err(LLM_EINVAL, "dropout probability %g must be in [0, 1)", (double)p);
    if (p == 0.0f) {
        if (out != x && n)
            memmove(out, x, n * sizeof(float));
        return 0;
    }
    float keep_scale = 1.0f / (1.0f - p);
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++) {
            float u = (float)(splitmix64_at(seed, i) >> 40) * 0x1p-24f;
            out[i] = u >= p ? x[i] * keep_scale : 0.0f;
        });
    return 0;
}

int cpu_dropout_forward(void *ctx, float *out, const float *x, size_t n, float p, uint64_t seed)
{
    return dropout(cpu(ctx), out, x, n, p, seed);
}

/* dx = dout * mask / (1 - p): the same map as forward, with the same mask. */
int cpu_dropout_backward(void *ctx, float *dx, const float *dout, size_t n, float p, uint64_t seed)
{
    return dropout(cpu(ctx), dx, dout, n, p, seed);
}

/* ------------------------------------------------------------------------ */
/* Softmax cross-entropy                                                    */

int cpu_cross_entropy(void *ctx, float *losses, float *dlogits, const float *logits,
                      const int32_t *targets, int N, int V, float dloss)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("cross_entropy", N, V);
    if (rc)
        return rc;
    for (int n = 0; n < N; n++)
        if (targets[n] >= V)
            return llm_err(LLM_EINVAL, "target %d at position %d is outside the vocabulary (%d)",
                           targets[n], n, V);
    /* Per row, with m = max_j l_j (so no exp overflows) and
     * S = sum_j exp(l_j - m) (in double; 1 <= S <= V):
     *   loss = -log softmax(l)[target] = (m - l[target]) + log S
     *   dl_j = (exp(l_j - m) / S - [j == target]) * dloss
     * (m - l[target] first, never m + log S: with logits near 1e4 the float
     * sum would round log S to 1e-3).
     * Ignored rows (target < 0): loss 0, dl 0. dlogits may alias logits: each
     * element is read before it is written, and l[target] before any write. */
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * V),
        for (int n = 0; n < N; n++) {
            const float *l = logits + (size_t)n * V;
            float *dl = dlogits ? dlogits + (size_t)n * V : NULL;
            int tgt = targets[n];
            if (tgt < 0) {
                if (losses)
                    losses[n] = 0.0f;
                if (dl)
                    memset(dl, 0, (size_t)V * sizeof(float));
                continue;
            }
            if (!c->ref && cpu_has_avx2()) {
                /* The same math, vectorized: exp(l_j - m) stored into dl on the
                 * way (a read of l_j before the write of dl_j), then scaled. */
                float m = max_avx2(l, V), lt = l[tgt];
                double sum = cpu_exp_row(dl, l, V, 1.0f, m);
                if (losses)
                    losses[n] = (m - lt) + (float)log(sum);
                if (dl) {
                    scale_avx2(dl, (float)(dloss / sum), V);
                    dl[tgt] -= dloss;
                }
                continue;
            }
            float m = l[0];
            for (int j = 1; j < V; j++)
                m = l[j] > m ? l[j] : m;
            double sum = 0.0;
            for (int j = 0; j < V; j++)
                sum += expf(l[j] - m);
            if (losses)
                losses[n] = (m - l[tgt]) + (float)log(sum);
            if (dl) {
                float k = (float)(dloss / sum);
                for (int j = 0; j < V; j++)
                    dl[j] = expf(l[j] - m) * k;
                dl[tgt] -= dloss;
            }
        });
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reductions and the optimizer                                             */

int cpu_sumsq(void *ctx, double *out, const float *x, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    /* sum_i x_i^2 in double: fixed blocks of SUM_BLOCK elements summed in
     * parallel, then the block sums added in block order. */
    size_t nblk = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    if (nblk == 0)
        return 0;
    double one, *part = nblk == 1 ? &one : malloc(nblk * sizeof(double));
    if (!part)
        return llm_err(LLM_ENOMEM, "out of memory for the sum of squares");
    CPU_PARFOR(c->ref ? 1 : cpu_nthreads(c, n),
        for (size_t k = 0; k < nblk; k++) {
            size_t i1 = (k + 1) * SUM_BLOCK < n ? (k + 1) * SUM_BLOCK : n;
            double s = 0.0;
            for (size_t i = k * SUM_BLOCK; i < i1; i++)
                s += (double)x[i] * x[i];
            part[k] = s;
        });
    double total = 0.0;
    for (size_t k = 0; k < nblk; k++)
        total += part[k];
    *out += total;
    if (part != &one)
        free(part);
    return 0;
}

int cpu_adamw(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
              float b2, float eps, float wd, int t, float grad_scale)
{
    struct cpu_ctx *c = cpu(ctx);
    if (t < 1)
        return llm_err(LLM_EINVAL, "adamw: step %d must be >= 1", t);
    if (!(b1 >= 0.0f && b1 < 1.0f && b2 >= 0.0f && b2 < 1.0f))
        return llm_err(LLM_EINVAL, "adamw: betas (%g, %g) must be in [0, 1)", (double)b1,
                       (double)b2);
    /* Bias corrections 1 - b^t, in double once per call. */
    float bc1 = (float)(1.0 - pow((double)b1, t));
    float bc2 = (float)(1.0 - pow((double)b2, t));
    /* gs = g * grad_scale; m = b1 m + (1 - b1) gs; v = b2 v + (1 - b2) gs^2;
     * p -= lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p)   (decay decoupled:
     * it is not scaled by the adaptive denominator). */
    if (!c->ref && cpu_has_avx2()) {
        size_t nb = (n + EW_BLOCK - 1) / EW_BLOCK;
        CPU_PARFOR(cpu_nthreads(c, n),
            for (size_t k = 0; k < nb; k++) {
                size_t o = k * EW_BLOCK;
                adamw_avx2(p + o, g + o, m + o, v + o, n - o < EW_BLOCK ? n - o : EW_BLOCK, lr, b1, b2,
                           eps, wd, bc1, bc2, grad_scale);
            });
        return 0;
    }
    CPU_PARFOR(cpu_nthreads(c, n),
        for (size_t i = 0; i < n; i++) {
            float gs = g[i] * grad_scale;
            float mi = b1 * m[i] + (1.0f - b1) * gs;
            float vi = b2 * v[i] + (1.0f - b2) * gs * gs;
            m[i] = mi;
            v[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
        });
    return 0;
}
