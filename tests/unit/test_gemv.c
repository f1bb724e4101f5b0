/* test_gemv.c: the CPU backend's linear_rows (lib/nn/cpu/cpu_gemv.c), the
 * decode matmul out (N, OC) = x (N, C) @ w (OC, C)^T + bias, on the reference
 * (ref=1) and optimized (ref=0) paths, 1 and 2 threads:
 *  - against a double-precision oracle written here, on odd sizes (C not a
 *    multiple of 8, OC = 1, N = 1..65, unaligned pointers), bias NULL or not;
 *  - bit-identical on 1 and 2 threads;
 *  - rows independent: the rows of an N = 7 call memcmp-equal to N = 1 calls
 *    of each row, and to N = 3 calls holding the same row at each position;
 *    every N = 1..65 (all register blocks) row-for-row equal to N = 1;
 *  - N = 0 does nothing; C or OC <= 0 or N < 0 is LLM_EINVAL;
 *  - linear_rows_multi (several matrices over the same x in one call) gives
 *    each matrix the bits of its own linear_rows call;
 *  - cpu_parfor_steal (the thread split of linear_rows and linear_rows_q8)
 *    does every index exactly once, for any threads, size and chunk, and a
 *    thread that is done takes the rest of a slow thread's range.
 *
 * Tolerance: a float sum of C products in any fixed order (one chain per
 * lane, a reduction tree, the bias) errs by at most gamma_k sum_i |x_i w_i| +
 * |bias| with k <= C + 2 roundings on any chain and gamma_k = k u / (1 - k u),
 * u = 2^-24 (Higham, Accuracy and Stability, 3.1): a rigorous bound, far
 * below what a wrong index or a lost term would give (such errors are of the
 * size of the terms themselves). */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdatomic.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/log.h"
#include "nn/backend.h"
#include "nn/cpu/cpu_impl.h"
#include "nntest.h"

static int lr(struct llm_backend *b, float *out, const float *x, const float *w,
              const float *bias, int N, int C, int OC)
{
    return b->ops->linear_rows(b->ctx, out, x, w, bias, N, C, OC);
}

/* got against the double oracle, within the bound in the header. */
static void check_oracle(const char *what, const float *got, const float *x, const float *w,
                         const float *bias, int N, int C, int OC)
{
    double u = ldexp(1.0, -24), k = C + 2;
    double gamma = k * u / (1 - k * u);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0, mag = 0;
            for (int i = 0; i < C; i++) {
                double t = (double)x[(size_t)n * C + i] * w[(size_t)o * C + i];
                s += t;
                mag += fabs(t);
            }
            if (bias) {
                s += bias[o];
                mag += fabs(bias[o]);
            }
            double g = got[(size_t)n * OC + o], err = fabs(g - s);
            if (!(err <= gamma * mag))
                fail_msg("%s N=%d C=%d OC=%d: out[%d,%d] = %.9g, want %.9g (error %.3g, bound "
                         "%.3g)",
                         what, N, C, OC, n, o, g, s, err, gamma * mag);
        }
}

static void check_same(const char *what, const float *a, const float *b, size_t n)
{
    if (n && memcmp(a, b, n * sizeof(float)) != 0)
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
                fail_msg("%s: element %zu differs: %.9g vs %.9g", what, i, (double)a[i],
                         (double)b[i]);
}

/* One shape on all four backends, bias NULL and not: the oracle, and the same
 * bits on 1 and 2 threads. off shifts x, w and out by one float (unaligned). */
static void check_shape(int N, int C, int OC, int off, uint64_t seed)
{
    float *xb = frand(seed, (size_t)N * C + 1, -1, 1);
    float *wb = frand(seed + 1, (size_t)OC * C + 1, -1, 1);
    float *bias = frand(seed + 2, OC, -1, 1);
    float *x = xb + off, *w = wb + off;
    for (int r = 0; r < 2; r++)
        for (int hb = 0; hb < 2; hb++) {
            const float *bb = hb ? bias : NULL;
            float *o1 = fnew((size_t)N * OC + 1), *o2 = fnew((size_t)N * OC + 1);
            assert_int_equal(lr(&be[r][0], o1 + off, x, w, bb, N, C, OC), 0);
            assert_int_equal(lr(&be[r][1], o2 + off, x, w, bb, N, C, OC), 0);
            char what[64];
            snprintf(what, sizeof(what), "%s bias=%s", r ? "ref" : "opt", hb ? "yes" : "NULL");
            check_oracle(what, o1 + off, x, w, bb, N, C, OC);
            check_same("1 vs 2 threads", o1 + off, o2 + off, (size_t)N * OC);
        }
    pool_free();
}

static void test_oracle_small(void **state)
{
    (void)state;
    static const int shapes[][3] = {
        {1, 1, 1},   {1, 7, 1},   {1, 8, 1},    {1, 9, 3},   {2, 15, 4},  {3, 16, 5},
        {4, 17, 6},  {5, 31, 7},  {7, 13, 5},   {8, 33, 9},  {9, 64, 1},  {13, 65, 11},
        {1, 288, 1}, {3, 100, 2}, {65, 23, 10}, {64, 40, 4}, {17, 3, 17},
    };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int off = 0; off < 2; off++)
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2], off, 100 + s);
}

/* Most with at least two chunks of cpu_parfor_steal (64 KB of weights
 * each), so 2 threads really split. */
static void test_oracle_threaded(void **state)
{
    (void)state;
    check_shape(1, 288, 288, 0, 7);
    check_shape(1, 301, 97, 1, 8);
    check_shape(5, 300, 101, 0, 9);
    check_shape(7, 768, 130, 1, 10);
    check_shape(64, 129, 257, 0, 11);
    check_shape(1, 2048, 21, 0, 12);
}

/* Every N = 1..65 (all row blocks: 4, 3, 2, 1 and the partial output block)
 * row-for-row equal to N = 1 calls of the same rows; also the oracle. */
static void test_rows_any_n(void **state)
{
    (void)state;
    static const int sizes[][2] = {{29, 7}, {37, 130}, {300, 61}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int C = sizes[s][0], OC = sizes[s][1];
        float *x = frand(20 + s, (size_t)65 * C, -1, 1);
        float *w = frand(30 + s, (size_t)OC * C, -1, 1);
        float *bias = frand(40 + s, OC, -1, 1);
        float *one = fnew((size_t)65 * OC), *out = fnew((size_t)65 * OC);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                struct llm_backend *b = &be[r][t];
                for (int n = 0; n < 65; n++)
                    assert_int_equal(
                        lr(b, one + (size_t)n * OC, x + (size_t)n * C, w, bias, 1, C, OC), 0);
                check_oracle(r ? "ref N=1" : "opt N=1", one, x, w, bias, 65, C, OC);
                for (int N = 1; N <= 65; N++) {
                    assert_int_equal(lr(b, out, x, w, bias, N, C, OC), 0);
                    char what[96];
                    snprintf(what, sizeof(what), "%s threads=%d C=%d OC=%d: N=%d vs N=1",
                             r ? "ref" : "opt", t + 1, C, OC, N);
                    check_same(what, out, one, (size_t)N * OC);
                }
            }
        pool_free();
    }
}

/* The rows of an N = 7 call against N = 1 calls, and against N = 3 calls
 * holding the row at position 0, 1 and 2 among other rows. */
static void test_rows_independent(void **state)
{
    (void)state;
    static const int sizes[][2] = {{37, 67}, {300, 70}, {768, 33}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int C = sizes[s][0], OC = sizes[s][1];
        float *x = frand(50 + s, (size_t)7 * C, -2, 2);
        float *other = frand(60 + s, (size_t)3 * C, -2, 2);
        float *w = frand(70 + s, (size_t)OC * C, -1, 1);
        float *bias = frand(80 + s, OC, -1, 1);
        float *o7 = fnew((size_t)7 * OC), *o1 = fnew(OC), *o3 = fnew((size_t)3 * OC);
        float *x3 = fnew((size_t)3 * C);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++)
                for (int hb = 0; hb < 2; hb++) {
                    struct llm_backend *b = &be[r][t];
                    const float *bb = hb ? bias : NULL;
                    assert_int_equal(lr(b, o7, x, w, bb, 7, C, OC), 0);
                    for (int n = 0; n < 7; n++) {
                        const float *row = x + (size_t)n * C;
                        assert_int_equal(lr(b, o1, row, w, bb, 1, C, OC), 0);
                        check_same("N=7 row vs N=1", o7 + (size_t)n * OC, o1, OC);
                        for (int p = 0; p < 3; p++) {
                            memcpy(x3, other, (size_t)3 * C * sizeof(float));
                            memcpy(x3 + (size_t)p * C, row, (size_t)C * sizeof(float));
                            assert_int_equal(lr(b, o3, x3, w, bb, 3, C, OC), 0);
                            check_same("N=7 row vs N=3 row", o7 + (size_t)n * OC,
                                       o3 + (size_t)p * OC, OC);
                        }
                    }
                }
        pool_free();
    }
}

/* The optimized path agrees with the reference within the bound (both were
 * held to the oracle; this checks them on the decode shapes of a real model). */
static void test_model_shapes(void **state)
{
    (void)state;
    static const int shapes[][3] = {{1, 288, 768}, {1, 768, 288}, {4, 768, 2048},
                                    {1, 2048, 768}, {3, 288, 2000}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        check_shape(shapes[s][0], shapes[s][1], shapes[s][2], 0, 90 + s);
}

static void test_zero_rows_and_bad_dims(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        float out[4] = {42, 42, 42, 42};
        assert_int_equal(lr(b, out, x, w, NULL, 0, 2, 2), 0);
        assert_int_equal(lr(b, out, NULL, NULL, NULL, 0, 2, 2), 0);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
        assert_int_equal(lr(b, out, x, w, NULL, -1, 2, 2), LLM_EINVAL);
        assert_int_equal(lr(b, out, x, w, NULL, 1, 0, 2), LLM_EINVAL);
        assert_int_equal(lr(b, out, x, w, NULL, 1, 2, 0), LLM_EINVAL);
        assert_int_equal(lr(b, out, x, w, NULL, 1, -2, 2), LLM_EINVAL);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
    }
}

/* Infinities and NaN go through (no fast-math shortcuts). */
static void test_nonfinite(void **state)
{
    (void)state;
    int C = 19, OC = 3;
    float *x = frand(1, C, -1, 1), *w = frand(2, (size_t)OC * C, -1, 1), *out = fnew(OC);
    x[17] = INFINITY;                 /* in the masked tail */
    w[(size_t)1 * C + 17] = 0.0f;     /* inf * 0 = NaN for output 1 */
    w[(size_t)2 * C + 17] = -1.0f;    /* -inf for output 2 */
    w[17] = 2.0f;                     /* +inf for output 0 */
    for (int r = 0; r < 2; r++) {
        assert_int_equal(lr(&be[r][0], out, x, w, NULL, 1, C, OC), 0);
        assert_true(isinf(out[0]) && out[0] > 0);
        assert_true(isnan(out[1]));
        assert_true(isinf(out[2]) && out[2] < 0);
    }
    pool_free();
}

/* The AVX-512 kernels against the AVX2 ones, bit for bit (the lane split
 * and reduction are the same: cpu_gemv.c): every register block (N = 1..13,
 * 16, 33), masked tails (C % 16 = 1..15), partial output blocks, unaligned
 * pointers, bias NULL or not, 1 and 2 threads, and non-finite inputs. */
static void test_avx512_same_bits(void **state)
{
    (void)state;
    if (!cpu_has_avx512())
        print_message("note: no AVX-512 on this CPU; both runs take the AVX2 kernels\n");
    static const int Cs[] = {1, 7, 15, 16, 17, 29, 64, 300, 768};
    static const int OCs[] = {1, 3, 5, 61};
    static const int Ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 33};
    for (size_t ci = 0; ci < sizeof(Cs) / sizeof(Cs[0]); ci++)
        for (size_t oi = 0; oi < sizeof(OCs) / sizeof(OCs[0]); oi++) {
            int C = Cs[ci], OC = OCs[oi], off = (int)(ci + oi) % 2;
            uint64_t seed = 100 + 10 * ci + oi;
            float *x = frand(seed, (size_t)33 * C + 1, -2, 2) + off;
            float *w = frand(seed + 1, (size_t)OC * C + 1, -1, 1) + off;
            float *bias = frand(seed + 2, OC, -1, 1);
            if (ci == 3 && oi == 2) { /* inf and NaN through the fast path */
                x[5] = INFINITY;
                w[(size_t)1 * C + 9] = NAN;
            }
            float *a = fnew((size_t)33 * OC), *b = fnew((size_t)33 * OC);
            for (size_t ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++)
                for (int t = 0; t < 2; t++)
                    for (int hb = 0; hb < 2; hb++) {
                        int N = Ns[ni];
                        const float *bb = hb ? bias : NULL;
                        cpu_avx2_only = 1;
                        assert_int_equal(lr(&be[0][t], a, x, w, bb, N, C, OC), 0);
                        cpu_avx2_only = 0;
                        assert_int_equal(lr(&be[0][t], b, x, w, bb, N, C, OC), 0);
                        char what[96];
                        snprintf(what, sizeof(what), "AVX-512 vs AVX2 N=%d C=%d OC=%d threads=%d bias=%d",
                                 N, C, OC, t + 1, hb);
                        check_same(what, b, a, (size_t)N * OC);
                    }
            pool_free();
        }
}

/* linear_rows_multi: every segment's output bit-identical to its own
 * linear_rows call, with segments of ragged sizes (partial output blocks at
 * each boundary, so thread chunks start and end inside segments), bias on
 * some and not others, on the reference, AVX2 and AVX-512 paths, 1 and 2
 * threads (the sizes are above the threading threshold); and its bad
 * arguments. */
static void test_multi(void **state)
{
    (void)state;
    static const int shapes[][5] = {/* C, then up to 4 OCs (0: none) */
                                    {300, 61, 5, 64, 0}, {768, 768, 256, 256, 0}, {29, 3, 1, 7, 600},
                                    {64, 1000, 0, 0, 0}};
    static const int Ns[] = {1, 3, 7};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        int C = shapes[si][0], nseg = 0;
        while (nseg < 4 && shapes[si][1 + nseg])
            nseg++;
        float *x = frand(200 + si, (size_t)7 * C, -1, 1);
        struct llm_rows_seg seg[4];
        float *ref[4];
        for (int m = 0; m < nseg; m++) {
            int OC = shapes[si][1 + m];
            seg[m] = (struct llm_rows_seg){.w = frand(300 + 10 * si + m, (size_t)OC * C, -1, 1),
                                           .bias = m % 2 ? NULL : frand(400 + 10 * si + m, OC, -1, 1),
                                           .out = fnew((size_t)7 * OC), .OC = OC};
            ref[m] = fnew((size_t)7 * OC);
        }
        for (size_t ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++)
            for (int path = 0; path < 3; path++) /* ref, AVX2, the machine's best */
                for (int t = 0; t < 2; t++) {
                    int N = Ns[ni];
                    struct llm_backend *b = &be[path == 0][t];
                    cpu_avx2_only = path == 1;
                    for (int m = 0; m < nseg; m++) {
                        assert_int_equal(lr(b, ref[m], x, seg[m].w, seg[m].bias, N, C, seg[m].OC), 0);
                        memset(seg[m].out, 0xff, (size_t)N * seg[m].OC * sizeof(float));
                    }
                    assert_int_equal(b->ops->linear_rows_multi(b->ctx, x, N, C, seg, nseg), 0);
                    cpu_avx2_only = 0;
                    for (int m = 0; m < nseg; m++) {
                        char what[96];
                        snprintf(what, sizeof(what), "multi vs alone: C=%d segment %d of %d N=%d path %d threads %d",
                                 C, m, nseg, N, path, t + 1);
                        check_same(what, seg[m].out, ref[m], (size_t)N * seg[m].OC);
                    }
                }
        pool_free();
    }
    /* bad arguments: nothing written */
    float xs[4] = {1, 2, 3, 4}, w[8] = {1, 1, 1, 1, 1, 1, 1, 1}, out[4] = {42, 42, 42, 42};
    struct llm_rows_seg s2[5];
    for (int m = 0; m < 5; m++)
        s2[m] = (struct llm_rows_seg){.w = w, .out = out + (m == 1) * 2, .OC = 2};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 1, 2, s2, 0), LLM_EINVAL);
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 1, 2, s2, LLM_ROWS_MAX_SEGS + 1), LLM_EINVAL);
        s2[1].OC = 0;
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 1, 2, s2, 2), LLM_EINVAL);
        s2[1].OC = 2;
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 1, 0, s2, 2), LLM_EINVAL);
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 0, 2, s2, 2), 0);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
        assert_int_equal(b->ops->linear_rows_multi(b->ctx, xs, 1, 2, s2, 2), 0);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 3.0f);
        for (int i = 0; i < 4; i++)
            out[i] = 42;
    }
}

/* ---- cpu_parfor_steal ---- */

struct steal_log {
    _Atomic int *count;   /* calls that covered each index */
    int *by;              /* the thread that did each index */
    _Atomic int done;     /* indices done so far */
    int n, slow;          /* slow: thread 0 holds its first chunk until the rest is done */
    _Atomic int held;
};

static void steal_fn(void *arg, int i0, int i1)
{
    struct steal_log *g = arg;
    int t = omp_get_thread_num();
    assert_true(0 <= i0 && i0 < i1 && i1 <= g->n);
    for (int i = i0; i < i1; i++) {
        atomic_fetch_add(&g->count[i], 1);
        g->by[i] = t;
    }
    int total = atomic_fetch_add(&g->done, i1 - i0) + (i1 - i0);
    if (g->slow && t == 0 && !atomic_exchange(&g->held, 1)) {
        /* the other thread must finish its own range, then take all of ours */
        double t0 = llm_now();
        while (total < g->n && llm_now() - t0 < 30)
            total = atomic_load(&g->done);
        assert_int_equal(total, g->n);
    }
}

static void run_steal(int nt, int n, int chunk, int slow, struct steal_log *g)
{
    g->count = calloc((size_t)n + 1, sizeof(*g->count));
    g->by = calloc((size_t)n + 1, sizeof(int));
    assert_non_null(g->count);
    assert_non_null(g->by);
    g->n = n, g->slow = slow;
    atomic_init(&g->done, 0);
    atomic_init(&g->held, 0);
    cpu_parfor_steal(nt, n, chunk, steal_fn, g);
    for (int i = 0; i < n; i++)
        if (atomic_load(&g->count[i]) != 1)
            fail_msg("nt=%d n=%d chunk=%d: index %d done %d times", nt, n, chunk, i,
                     atomic_load(&g->count[i]));
    assert_int_equal(atomic_load(&g->done), n);
}

static void test_parfor_steal(void **state)
{
    (void)state;
    static const int nts[] = {1, 2, 3, 4, 7}, ns[] = {0, 1, 2, 5, 63, 64, 65, 1000};
    static const int chunks[] = {0, 1, 3, 64, 5000};
    for (size_t a = 0; a < sizeof(nts) / sizeof(*nts); a++)
        for (size_t b = 0; b < sizeof(ns) / sizeof(*ns); b++)
            for (size_t c = 0; c < sizeof(chunks) / sizeof(*chunks); c++) {
                struct steal_log g;
                run_steal(nts[a], ns[b], chunks[c], 0, &g);
                free(g.count);
                free(g.by);
            }
    /* Thread 0 stalls in its first chunk (indices 0, 1) until everything
     * else is done: thread 1 does its own half, then all of thread 0's but
     * that chunk, taken from the back. (Should thread 0 start so late that
     * thread 1 has taken its whole range, thread 0 does nothing at all.) */
    if (omp_get_max_threads() < 2 || omp_get_thread_limit() < 2) {
        print_message("test_parfor_steal: stealing not checked: OpenMP allows one thread here\n");
        return;
    }
    struct steal_log g;
    run_steal(2, 64, 2, 1, &g);
    int k = g.by[0] == 0 ? 2 : 0;
    for (int i = 0; i < 64; i++)
        if (g.by[i] != (i < k ? 0 : 1))
            fail_msg("stalled thread 0: index %d done by thread %d", i, g.by[i]);
    free(g.count);
    free(g.by);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_small),
        cmocka_unit_test(test_oracle_threaded),
        cmocka_unit_test(test_rows_any_n),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_model_shapes),
        cmocka_unit_test(test_zero_rows_and_bad_dims),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_avx512_same_bits),
        cmocka_unit_test(test_multi),
        cmocka_unit_test(test_parfor_steal),
    };
    return cmocka_run_group_tests_name("gemv", tests, setup, teardown);
}
