/* test_q8a8.c: the CPU backend's linear_rows_q8a8 and linear_rows_q4a8
 * (lib/nn/cpu/cpu_q8a8.c), int8 (or 4-bit, Q4) weights times int8
 * activations quantized per group (W8A8, W4A8):
 *  - the reference loops, the VNNI kernel and the AVX2 kernel (forced with
 *    cpu_avx2_only) give the same bits, 1 and 2 threads, G = 32 and 64,
 *    bias NULL or not, unaligned pointers, any N (every pass of 2 and 1
 *    rows) and partial output blocks; every int8 weight, -128 included, and
 *    every Q4 byte;
 *  - against an oracle written here from the documented math: x quantized
 *    per group (amax / 127, round to nearest even), exact integer dots,
 *    the scales in double: within a few roundings of the float steps;
 *  - the quantization error against linear_rows_q8 (fp32 activations) is
 *    within its bound: per group |x - qx sx| <= sx / 2 (+ rounding);
 *  - rows independent: an N = 7 call's rows equal N = 1 calls;
 *  - a NaN or infinity in a row makes that row NaN and leaves the others;
 *    an all-zero row gives the bias;
 *  - N = 0 does nothing; bad N, C, OC, G are LLM_EINVAL. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "infer/quant.h"
#include "nn/backend.h"
#include "nn/cpu/cpu_impl.h"
#include "nntest.h"

/* Random int8 weights in [-128, 127] and positive scales of mixed sizes. */
static int8_t *wrand(uint64_t seed, size_t n)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    int8_t *q = keep(calloc(n + 1, 1));
    for (size_t i = 0; i < n; i++)
        q[i] = (int8_t)((int)(llm_rng_float(&r) * 256) - 128);
    return q;
}

static float *srand_scales(uint64_t seed, size_t n)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    float *s = fnew(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = powf(10.0f, -3.0f + 2.0f * llm_rng_float(&r));
    return s;
}

static int q8a8(struct llm_backend *b, float *out, const float *x, const int8_t *wq, const float *sc,
                const float *bias, int N, int C, int OC, int G)
{
    return b->ops->linear_rows_q8a8(b->ctx, out, x, wq, sc, bias, N, C, OC, G);
}

/* G = 4 selects linear_rows_q4a8 (wq then holds packed Q4 bytes, groups of 32). */
static int run_op(struct llm_backend *b, float *out, const float *x, const int8_t *wq, const float *sc,
                  const float *bias, int N, int C, int OC, int G)
{
    return G == 4 ? b->ops->linear_rows_q4a8(b->ctx, out, x, (const uint8_t *)wq, sc, bias, N, C, OC)
                  : q8a8(b, out, x, wq, sc, bias, N, C, OC, G);
}

/* Weight w[o, c] as an integer: the int8 code, or Q4's nibble - 8 (column c
 * of a row in its low nibble for even c). */
static int code(const int8_t *wq, int o, int C, int c, int q4)
{
    if (!q4)
        return wq[(size_t)o * C + c];
    uint8_t b = (uint8_t)wq[(size_t)o * (C / 2) + c / 2];
    return (c % 2 ? b >> 4 : b & 15) - 8;
}

static void check_same(const char *what, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu differs: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

/* The documented math in double: each group's x to int8 (amax / 127, round
 * to nearest even), the exact integer lane dots, times both scales. got must
 * be within k roundings of sum_{g,j} |D_gj sx sw| (k = groups + the lane
 * tree + the scale product + bias). */
static void check_oracle(const char *what, const float *got, const float *x, const int8_t *wq,
                         const float *sc, const float *bias, int N, int C, int OC, int G)
{
    int q4 = G == 4;
    if (q4)
        G = 32;
    int NG = C / G;
    double k = NG + 6, gamma = k * 0x1p-24 / (1 - k * 0x1p-24);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0, mag = 0;
            for (int g = 0; g < NG; g++) {
                const float *xg = x + (size_t)n * C + (size_t)g * G;
                float amax = 0;
                for (int i = 0; i < G; i++)
                    amax = fmaxf(amax, fabsf(xg[i]));
                if (amax < 0x1p-100f)
                    continue;
                float inv = 127.0f / amax, sx = amax / 127.0f;
                long long d[8] = {0}; /* the lanes (Q4: even columns, then odd ones) */
                for (int i = 0; i < G; i++)
                    d[(q4 ? i / 2 + 16 * (i % 2) : i % 32) / 4] +=
                        (long long)nearbyintf(xg[i] * inv) * code(wq, o, C, g * G + i, q4);
                for (int l = 0; l < 8; l++) {
                    double t = (double)d[l] * sx * sc[(size_t)o * NG + g];
                    s += t;
                    mag += fabs(t);
                }
            }
            if (bias)
                s += bias[o], mag += fabs(bias[o]);
            double e = fabs((double)got[(size_t)n * OC + o] - s);
            if (!(e <= gamma * mag + 1e-30))
                fail_msg("%s: out[%d,%d] = %.9g, oracle %.9g (error %.3g, bound %.3g)", what, n, o,
                         (double)got[(size_t)n * OC + o], s, e, gamma * mag);
        }
}

/* One shape: reference, VNNI (where the CPU has it) and AVX2 paths on 1 and
 * 2 threads all give the reference's bits; the oracle; linear_rows_q8 within
 * the activations' rounding. */
static void check_shape(int N, int C, int OC, int G, int off, uint64_t seed)
{
    int q4 = G == 4, GS = q4 ? 32 : G; /* G = 4: Q4 (groups of 32) */
    float *x = frand(seed, (size_t)N * C + 1, -2, 2) + off;
    int8_t *wq = wrand(seed + 1, (size_t)OC * C + 1) + off;
    float *sc = srand_scales(seed + 2, (size_t)OC * C / GS + 1) + off;
    float *bias = frand(seed + 3, OC, -1, 1);
    size_t no = (size_t)N * OC;
    float *ref = fnew(no + 1) + off, *got = fnew(no + 1) + off, *w8 = fnew(no + 1) + off;
    for (int hb = 0; hb < 2; hb++) {
        const float *bb = hb ? bias : NULL;
        assert_int_equal(run_op(&be[1][0], ref, x, wq, sc, bb, N, C, OC, G), 0);
        char what[96];
        snprintf(what, sizeof(what), "N=%d C=%d OC=%d G=%d bias=%d", N, C, OC, G, hb);
        check_oracle(what, ref, x, wq, sc, bb, N, C, OC, G);
        for (int nv = 0; nv < 2; nv++)
            for (int t = 0; t < 2; t++) {
                cpu_avx2_only = nv;
                memset(got, 0xff, no * sizeof(float));
                assert_int_equal(run_op(&be[0][t], got, x, wq, sc, bb, N, C, OC, G), 0);
                char w2[160];
                snprintf(w2, sizeof(w2), "%s: %s, %d thread(s) vs the reference", what,
                         nv ? "AVX2" : "default kernel", t + 1);
                check_same(w2, got, ref, no);
            }
        cpu_avx2_only = 0;
        if (q4)
            continue; /* (no fp32-activation Q4 op to compare with) */
        /* against fp32 activations: per group |sum (x - qx sx) w s| <= (sx / 2) sum |w s|,
         * plus float rounding of both */
        assert_int_equal(be[1][0].ops->linear_rows_q8(be[1][0].ctx, w8, x, wq, sc, bb, N, C, OC, G), 0);
        int NG = C / G;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double bound = 0, mag = 0;
                for (int g = 0; g < NG; g++) {
                    float amax = 0;
                    double sw = 0;
                    for (int i = 0; i < G; i++) {
                        amax = fmaxf(amax, fabsf(x[(size_t)n * C + (size_t)g * G + i]));
                        sw += fabs((double)wq[(size_t)o * C + (size_t)g * G + i]);
                    }
                    bound += amax / 127.0 * 0.5 * sw * sc[(size_t)o * NG + g];
                    mag += amax * sw * sc[(size_t)o * NG + g];
                }
                double e = fabs((double)ref[(size_t)n * OC + o] - w8[(size_t)n * OC + o]);
                if (!(e <= bound * (1 + 1e-3) + 1e-5 * mag))
                    fail_msg("%s: out[%d,%d] %.9g vs fp32 activations %.9g: %.3g beyond %.3g", what, n,
                             o, (double)ref[(size_t)n * OC + o], (double)w8[(size_t)n * OC + o], e, bound);
            }
    }
    pool_free();
}

static void test_paths_and_oracle(void **state)
{
    (void)state;
    static const int shapes[][4] = {
        {1, 32, 1, 32},  {1, 64, 1, 64},   {2, 32, 3, 32},   {3, 64, 5, 32},  {4, 96, 6, 32},
        {5, 128, 7, 64}, {7, 64, 5, 64},   {8, 160, 9, 32},  {9, 64, 1, 64},  {13, 96, 11, 32},
        {1, 384, 96, 32}, {3, 768, 130, 64}, {2, 320, 450, 32}, {1, 2048, 37, 64},
        /* G = 4: Q4 weights (groups of 32) */
        {1, 32, 1, 4},   {2, 64, 3, 4},    {3, 96, 5, 4},    {5, 384, 7, 4},  {1, 768, 130, 4},
        {4, 1024, 300, 4},
    };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int off = 0; off < 2; off++)
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], off, 100 + 10 * s);
}

/* The rows of an N = 7 call against N = 1 calls of each row. */
static void test_rows_independent(void **state)
{
    (void)state;
    int C = 192, OC = 23, G = 32;
    float *x = frand(1, (size_t)7 * C, -3, 3), *o7 = fnew((size_t)7 * OC), *o1 = fnew(OC);
    int8_t *wq = wrand(2, (size_t)OC * C);
    float *sc = srand_scales(3, (size_t)OC * C / G), *bias = frand(4, OC, -1, 1);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            for (int q4 = 0; q4 < 2; q4++) {
                struct llm_backend *b = &be[r][t];
                int g = q4 ? 4 : G;
                assert_int_equal(run_op(b, o7, x, wq, sc, bias, 7, C, OC, g), 0);
                for (int n = 0; n < 7; n++) {
                    assert_int_equal(run_op(b, o1, x + (size_t)n * C, wq, sc, bias, 1, C, OC, g), 0);
                    check_same(q4 ? "Q4: N=7 row vs N=1" : "N=7 row vs N=1", o7 + (size_t)n * OC, o1, OC);
                }
            }
    pool_free();
}

/* A NaN or infinity in a row: that row's outputs NaN, the others as alone;
 * a row of zeros and tiny values (largest |x| < 2^-100): the bias. */
static void test_nonfinite_and_zero(void **state)
{
    (void)state;
    int C = 64, OC = 9, G = 32;
    float *x = frand(5, (size_t)4 * C, -1, 1), *out = fnew((size_t)4 * OC), *one = fnew(OC);
    int8_t *wq = wrand(6, (size_t)OC * C);
    float *sc = srand_scales(7, (size_t)OC * C / G), *bias = frand(8, OC, -1, 1);
    x[0 * C + 40] = INFINITY;
    x[1 * C + 3] = NAN;
    memset(x + 2 * C, 0, (size_t)C * sizeof(float));
    x[2 * C + 5] = 1e-38f, x[2 * C + 40] = -0x1p-110f; /* below 2^-100: a zero group */
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][1];
        assert_int_equal(q8a8(b, out, x, wq, sc, bias, 4, C, OC, G), 0);
        for (int o = 0; o < OC; o++) {
            assert_true(isnan(out[o]));
            assert_true(isnan(out[OC + o]));
            assert_true(out[2 * OC + o] == bias[o]);
        }
        assert_int_equal(q8a8(b, one, x + 3 * C, wq, sc, bias, 1, C, OC, G), 0);
        check_same("row 3 beside non-finite rows vs alone", out + 3 * OC, one, OC);
    }
    pool_free();
}

static void test_zero_rows_and_bad_args(void **state)
{
    (void)state;
    float x[64] = {1, 2, 3}, sc[2] = {1, 1};
    int8_t wq[128] = {1, 1, 1};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        float out[4] = {42, 42, 42, 42};
        assert_int_equal(b->ops->linear_rows_q4a8(b->ctx, out, x, (const uint8_t *)wq, sc, NULL, 0, 64, 2), 0);
        assert_int_equal(b->ops->linear_rows_q4a8(b->ctx, out, x, (const uint8_t *)wq, sc, NULL, 1, 48, 2),
                         LLM_EINVAL);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, 0, 64, 2, 64), 0);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, -1, 64, 2, 64), LLM_EINVAL);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, 1, 0, 2, 32), LLM_EINVAL);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, 1, 64, 0, 32), LLM_EINVAL);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, 1, 64, 2, 16), LLM_EINVAL);
        assert_int_equal(q8a8(b, out, x, wq, sc, NULL, 1, 48, 2, 32), LLM_EINVAL);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
    }
}

int main(void)
{
    if (!__builtin_cpu_supports("avxvnni"))
        printf("# this CPU has no AVX-VNNI: the default kernel is the AVX2 one, checked twice\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_and_oracle),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_nonfinite_and_zero),
        cmocka_unit_test(test_zero_rows_and_bad_args),
    };
    return cmocka_run_group_tests_name("q8a8", tests, setup, teardown);
}
