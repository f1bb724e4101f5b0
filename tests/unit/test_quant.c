/* test_quant.c: weight quantization (lib/infer/quant.c: Q8 per-group int8,
 * Q4 groups of 32) and the CPU backend's linear_rows_q8 (lib/nn/cpu/cpu_q8.c)
 * on the reference (ref=1) and optimized (ref=0) paths, 1 and 2 threads,
 * the optimized one twice (AVX-512 where the CPU has it, then AVX2):
 *  - quantize/dequantize round trip within the bound; exact known answers
 *    (ties at .5 round away from zero, all-zero groups, the symmetric range
 *    that never uses -128, the Q4 clamp and nibble order); bad arguments;
 *  - linear_rows_q8 against a double oracle on the dequantized weights, G =
 *    32 and 64, OC = 1, N = 1..65, bias NULL or not, unaligned pointers;
 *  - close to linear_rows on llm_dequant_q8's weights, per path, within the
 *    sum of the two orders' error bounds (cpu_q8.c sums per-group partials
 *    and scales them once: no longer linear_rows' bits); 1 and 2 threads
 *    bit-identical; rows independent (N = 7 rows memcmp-equal to N = 1
 *    calls; every N = 1..65 equal to N = 1);
 *  - N = 0 does nothing; bad N, C, OC, G are LLM_EINVAL.
 *
 * Bounds. Q8 round trip: q = round(fl(w / s)), and fl(w / s) is within
 * 127.5 u of w / s (u = 2^-24), so |w - q s| <= s (1/2 + 128 u); the stored
 * product fl(q s) adds <= 127 s u: |w - w'| <= s (1/2 + 256 u). Q4 likewise
 * with |d| (8.5 u + 8 u), or |d| (1 + 17 u) for a clamped weight.
 * Matmul: a float sum of C products in a fixed order errs by at most
 * gamma_k sum_i |x_i w_i| + |bias|, k <= C + 2 roundings on any chain
 * (Higham 3.1), and one more for w' = fl(wq s) against the exact product the
 * oracle uses: k = C + 3.
 * q8 against linear_rows(w'): the bound holds for any summation tree with k
 * the most roundings one term goes through, so |q8 - lr| <= (gamma_kq +
 * gamma_kl) (sum_i |x_i w_i| + |bias|) with the depths of the two orders
 * (cpu_q8.c, cpu_gemv.c; the scale s is exact, w' = fl(wq s) adds one):
 *   optimized: q8 (AVX2 or scalar lanes; AVX-512's 16 lanes have group
 *     chains half as long) kq <= G/8 + C/G + 7 (group chain,
 *     scale, total chain, lane tree, bias), lr kl <= C/16 + 7;
 *   reference: q8 kq <= G + C/G + 2, lr kl <= C + 2;
 * a few ulps of sum |x w| on the optimized path (C = 2048, G = 32: kq = 75,
 * kl = 135) where the oracle's bound allows ~2000. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "infer/quant.h"
#include "nn/backend.h"
#include "nn/cpu/cpu_impl.h"
#include "nntest.h"

static const double U = 0x1p-24;

static int8_t *qnew(size_t n) { return keep(calloc(n ? n : 1, 1)); }

static void check_same(const char *what, const float *a, const float *b, size_t n)
{
    if (n && memcmp(a, b, n * sizeof(float)) != 0)
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
                fail_msg("%s: element %zu differs: %.9g vs %.9g", what, i, (double)a[i],
                         (double)b[i]);
}

/* Weights of mixed magnitudes: uniform, times 10^k per group of 32 (k in
 * -3..2), with a few outliers, so groups get very different scales. */
static float *weights(uint64_t seed, int OC, int C)
{
    float *w = frand(seed, (size_t)OC * C, -1, 1);
    struct llm_rng r;
    llm_rng_seed(&r, seed + 1000);
    for (size_t g = 0; g < (size_t)OC * C / 32; g++) {
        float m = powf(10.0f, (float)((int)(llm_rng_float(&r) * 6) - 3));
        for (int i = 0; i < 32; i++)
            w[g * 32 + i] *= m;
        if (llm_rng_float(&r) < 0.1f)
            w[g * 32 + (int)(llm_rng_float(&r) * 32)] *= 40.0f;
    }
    return w;
}

/* ---- Q8 quantization ---- */

static void test_q8_round_trip(void **state)
{
    (void)state;
    static const int shapes[][3] = {{1, 32, 32}, {3, 64, 32}, {5, 96, 32}, {2, 64, 64},
                                    {7, 256, 64}, {33, 768, 32}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int OC = shapes[s][0], C = shapes[s][1], G = shapes[s][2], NG = C / G;
        float *w = weights(10 + s, OC, C), *back = fnew((size_t)OC * C);
        int8_t *wq = qnew((size_t)OC * C);
        float *sc = fnew((size_t)OC * NG);
        assert_int_equal(llm_quant_q8(w, OC, C, G, wq, sc), 0);
        llm_dequant_q8(wq, sc, OC, C, G, back);
        for (int o = 0; o < OC; o++)
            for (int g = 0; g < NG; g++) {
                double amax = 0;
                int hit = 0;
                for (int i = g * G; i < (g + 1) * G; i++)
                    amax = fmax(amax, fabs(w[(size_t)o * C + i]));
                float scale = sc[(size_t)o * NG + g];
                assert_true(scale == (float)amax / 127.0f);
                for (int i = g * G; i < (g + 1) * G; i++) {
                    size_t k = (size_t)o * C + i;
                    assert_true(wq[k] >= -127 && wq[k] <= 127);
                    hit |= wq[k] == 127 || wq[k] == -127;
                    double err = fabs((double)w[k] - back[k]);
                    if (!(err <= scale * (0.5 + 256 * U)))
                        fail_msg("G=%d w[%d,%d] = %.9g -> %d * %.9g = %.9g: error %.3g > s/2",
                                 G, o, i, (double)w[k], wq[k], (double)scale, (double)back[k],
                                 err);
                    assert_true(back[k] == (float)wq[k] * scale);
                }
                assert_true(hit); /* the largest weight takes the full range */
            }
        pool_free();
    }
}

static void test_q8_known_answers(void **state)
{
    (void)state;
    enum { C = 96, G = 32 };
    float w[C] = {0};
    /* group 0: max 127 -> scale exactly 1; ties go away from zero */
    const float g0[] = {127, 2.5f, -2.5f, 0.5f, -0.5f, 1.49f, -126.6f, 0, 126.5f, -1.5f};
    const int8_t q0[] = {127, 3, -3, 1, -1, 1, -127, 0, 127, -2};
    memcpy(w, g0, sizeof g0);
    /* group 1: all zero -> scale 0, codes 0 */
    /* group 2: max |w| 254 at a negative weight -> scale 2, -127 (never -128) */
    const float g2[] = {-254, 5, -3, 1, 253, -1};
    const int8_t q2[] = {-127, 3, -2, 1, 127, -1}; /* 2.5, -1.5, 0.5, 126.5, -0.5 */
    memcpy(w + 64, g2, sizeof g2);
    int8_t wq[C];
    float sc[3], back[C];
    memset(wq, 99, sizeof wq);
    assert_int_equal(llm_quant_q8(w, 1, C, G, wq, sc), 0);
    assert_true(sc[0] == 1.0f && sc[1] == 0.0f && sc[2] == 2.0f);
    for (size_t i = 0; i < sizeof q0; i++)
        assert_int_equal(wq[i], q0[i]);
    for (int i = 10; i < 64; i++)
        assert_int_equal(wq[i], 0);
    for (size_t i = 0; i < sizeof q2; i++)
        assert_int_equal(wq[64 + i], q2[i]);
    llm_dequant_q8(wq, sc, 1, C, G, back);
    assert_true(back[1] == 3.0f && back[6] == -127.0f && back[64] == -254.0f && back[65] == 6.0f);
    for (int i = 32; i < 64; i++)
        assert_true(back[i] == 0.0f);

    /* G = 64: one group over both halves; one weight sets the scale 0.25 */
    float w64[64] = {0};
    w64[40] = -31.75f; /* -127 * 0.25 */
    w64[3] = 0.125f;   /* 0.5 -> 1 */
    w64[5] = -0.375f;  /* -1.5 -> -2 */
    w64[7] = 0.12f;    /* 0.48 -> 0 */
    w64[63] = 31.7f;   /* 126.8 -> 127 */
    int8_t q64[64];
    float s64;
    assert_int_equal(llm_quant_q8(w64, 1, 64, 64, q64, &s64), 0);
    assert_true(s64 == 0.25f);
    assert_int_equal(q64[40], -127);
    assert_int_equal(q64[3], 1);
    assert_int_equal(q64[5], -2);
    assert_int_equal(q64[7], 0);
    assert_int_equal(q64[63], 127);
}

static void test_q8_errors(void **state)
{
    (void)state;
    float w[128];
    for (int i = 0; i < 128; i++)
        w[i] = (float)i - 60;
    int8_t wq[128];
    float sc[4] = {-7, -7, -7, -7};
    memset(wq, 99, sizeof wq);
    assert_int_equal(llm_quant_q8(w, 1, 128, 16, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 1, 128, 0, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 1, 96, 64, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 1, 48, 32, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 0, 128, 32, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 1, 0, 32, wq, sc), LLM_EINVAL);
    assert_int_equal(llm_quant_q8(w, 1, -32, 32, wq, sc), LLM_EINVAL);
    w[100] = NAN;
    assert_int_equal(llm_quant_q8(w, 1, 128, 32, wq, sc), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "not finite"));
    w[100] = INFINITY;
    assert_int_equal(llm_quant_q8(w, 2, 64, 32, wq, sc), LLM_EINVAL);
    /* nothing written */
    for (int i = 0; i < 128; i++)
        assert_int_equal(wq[i], 99);
    for (int i = 0; i < 4; i++)
        assert_true(sc[i] == -7.0f);
}

/* ---- Q4 quantization ---- */

static void test_q4(void **state)
{
    (void)state;
    /* known answers: group 0 has m = -8 (d = 1); group 1 m = +4 (d = -0.5) */
    float w[64] = {0};
    const float g0[] = {-8, 3.5f, -3.5f, 7.6f, 0.5f, 8, 7.4f, -0.49f};
    const int q0[] = {-8, 4, -4, 7, 1, 7, 7, 0};
    memcpy(w, g0, sizeof g0);
    w[32] = 4, w[33] = 1.25f, w[34] = -4; /* -4 ties with 4: the first wins */
    uint8_t p[32];
    float d[2];
    assert_int_equal(llm_quant_q4(w, 1, 64, p, d), 0);
    assert_true(d[0] == 1.0f && d[1] == -0.5f);
    for (size_t i = 0; i < sizeof q0 / sizeof q0[0]; i++) {
        int nib = i % 2 ? p[i / 2] >> 4 : p[i / 2] & 15; /* even column: low nibble */
        assert_int_equal(nib - 8, q0[i]);
    }
    assert_int_equal(p[16], (-8 + 8) | (-3 + 8) << 4); /* 4 / -0.5 = -8; 1.25 / -0.5 = -2.5 -> -3 */
    assert_int_equal(p[17] & 15, 7 + 8);             /* -4 / -0.5 = 8 clamps to 7 */
    float back[64];
    llm_dequant_q4(p, d, 1, 64, back);
    assert_true(back[0] == -8.0f && back[1] == 4.0f && back[3] == 7.0f && back[32] == 4.0f &&
                back[33] == 1.5f && back[34] == -3.5f);
    for (int i = 8; i < 32; i++)
        assert_true(back[i] == 0.0f);

    /* round trip bound on mixed magnitudes */
    int OC = 9, C = 320, NG = C / 32;
    float *wr = weights(77, OC, C), *br = fnew((size_t)OC * C), *dr = fnew((size_t)OC * NG);
    uint8_t *pr = (uint8_t *)qnew((size_t)OC * C / 2);
    assert_int_equal(llm_quant_q4(wr, OC, C, pr, dr), 0);
    llm_dequant_q4(pr, dr, OC, C, br);
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) {
            size_t k = (size_t)o * C + c;
            double ad = fabs(dr[(size_t)o * NG + c / 32]), err = fabs((double)wr[k] - br[k]);
            int nib = c % 2 ? pr[k / 2] >> 4 : pr[k / 2] & 15;
            double bound = nib == 15 ? ad * (1 + 17 * U) : ad * (0.5 + 17 * U);
            if (!(err <= bound))
                fail_msg("q4 w[%d,%d] = %.9g -> %.9g: error %.3g > %.3g", o, c,
                         (double)wr[k], (double)br[k], err, bound);
        }
    /* errors, nothing written */
    memset(p, 0xAB, sizeof p);
    assert_int_equal(llm_quant_q4(w, 1, 48, p, d), LLM_EINVAL);
    assert_int_equal(llm_quant_q4(w, 0, 64, p, d), LLM_EINVAL);
    w[63] = NAN;
    assert_int_equal(llm_quant_q4(w, 1, 64, p, d), LLM_EINVAL);
    for (int i = 0; i < 32; i++)
        assert_int_equal(p[i], 0xAB);
    pool_free();
}

/* ---- linear_rows_q8 ---- */

static int lq(struct llm_backend *b, float *out, const float *x, const int8_t *wq, const float *sc,
              const float *bias, int N, int C, int OC, int G)
{
    return b->ops->linear_rows_q8(b->ctx, out, x, wq, sc, bias, N, C, OC, G);
}

/* got against the double oracle on the exact products wq * scale. */
static void check_oracle(const char *what, const float *got, const float *x, const int8_t *wq,
                         const float *sc, const float *bias, int N, int C, int OC, int G)
{
    double k = C + 3, gamma = k * U / (1 - k * U);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0, mag = 0;
            for (int i = 0; i < C; i++) {
                double w = (double)wq[(size_t)o * C + i] * sc[(size_t)o * (C / G) + i / G];
                double t = (double)x[(size_t)n * C + i] * w;
                s += t;
                mag += fabs(t);
            }
            if (bias) {
                s += bias[o];
                mag += fabs(bias[o]);
            }
            double g = got[(size_t)n * OC + o], err = fabs(g - s);
            if (!(err <= gamma * mag))
                fail_msg("%s N=%d C=%d OC=%d G=%d: out[%d,%d] = %.9g, want %.9g (error %.3g, "
                         "bound %.3g)",
                         what, N, C, OC, G, n, o, g, s, err, gamma * mag);
        }
}

/* got (q8) against lr (linear_rows on the dequantized weights): within
 * (gamma_kq + gamma_kl) times the magnitude of the exact sum (above). */
static void check_close(const char *what, const float *got, const float *lr, const float *x,
                        const int8_t *wq, const float *sc, const float *bias, int N, int C,
                        int OC, int G, int ref)
{
    double kq = ref ? G + C / G + 2 : G / 8 + C / G + 7, kl = ref ? C + 2 : C / 16 + 7;
    double tol = kq * U / (1 - kq * U) + kl * U / (1 - kl * U);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double mag = bias ? fabs(bias[o]) : 0;
            for (int i = 0; i < C; i++)
                mag += fabs((double)x[(size_t)n * C + i] * wq[(size_t)o * C + i] *
                            sc[(size_t)o * (C / G) + i / G]);
            size_t k = (size_t)n * OC + o;
            double err = fabs((double)got[k] - lr[k]);
            if (!(err <= tol * mag))
                fail_msg("%s N=%d C=%d OC=%d G=%d: out[%d,%d] = %.9g, linear_rows %.9g "
                         "(difference %.3g, bound %.3g)",
                         what, N, C, OC, G, n, o, (double)got[k], (double)lr[k], err, tol * mag);
        }
}

/* Quantized weights of a shape (from weights()), and their dequantization. */
struct qw {
    int8_t *wq;
    float *sc, *deq;
};

static struct qw qweights(uint64_t seed, int OC, int C, int G, int off)
{
    float *w = weights(seed, OC, C);
    struct qw q = {qnew((size_t)OC * C + 1) + off, fnew((size_t)OC * C / G + 1) + off,
                   fnew((size_t)OC * C + 1) + off};
    assert_int_equal(llm_quant_q8(w, OC, C, G, q.wq, q.sc), 0);
    llm_dequant_q8(q.wq, q.sc, OC, C, G, q.deq);
    return q;
}

/* One shape on all four backends, bias NULL and not: the oracle, linear_rows
 * on the dequantized weights (same path, within the bound), 1 vs 2 threads
 * bit-identical. off
 * shifts x, wq, scales and out by one element (unaligned). */
static void check_shape(int N, int C, int OC, int G, int off, uint64_t seed)
{
    float *x = frand(seed, (size_t)N * C + 1, -1, 1) + off;
    float *bias = frand(seed + 2, OC, -1, 1);
    struct qw q = qweights(seed + 1, OC, C, G, off);
    size_t no = (size_t)N * OC;
    float *o1 = fnew(no + 1) + off, *o2 = fnew(no + 1) + off, *of = fnew(no + 1) + off;
    for (int r = 0; r < 2; r++)
        for (int hb = 0; hb < 2; hb++) {
            const float *bb = hb ? bias : NULL;
            struct llm_backend *b1 = &be[r][0], *b2 = &be[r][1];
            assert_int_equal(lq(b1, o1, x, q.wq, q.sc, bb, N, C, OC, G), 0);
            assert_int_equal(lq(b2, o2, x, q.wq, q.sc, bb, N, C, OC, G), 0);
            assert_int_equal(b1->ops->linear_rows(b1->ctx, of, x, q.deq, bb, N, C, OC), 0);
            char what[64];
            snprintf(what, sizeof(what), "%s bias=%s", r ? "ref" : "opt", hb ? "yes" : "NULL");
            check_oracle(what, o1, x, q.wq, q.sc, bb, N, C, OC, G);
            check_same("1 vs 2 threads", o1, o2, no);
            char what2[160];
            snprintf(what2, sizeof(what2), "%s: q8 vs linear_rows on the dequantized weights",
                     what);
            check_close(what2, o1, of, x, q.wq, q.sc, bb, N, C, OC, G, r);
        }
    pool_free();
}

static void test_q8_oracle_small(void **state)
{
    (void)state;
    static const int shapes[][4] = {
        {1, 32, 1, 32},  {1, 64, 1, 64},  {2, 32, 3, 32},  {3, 64, 5, 32}, {4, 96, 6, 32},
        {5, 128, 7, 64}, {7, 64, 5, 64},  {8, 160, 9, 32}, {9, 64, 1, 64}, {13, 96, 11, 32},
        {65, 32, 10, 32}, {64, 128, 4, 64}, {17, 192, 17, 64},
    };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int off = 0; off < 2; off++)
            check_shape(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], off, 100 + s);
}

/* The decode shapes of a real model, and odd ones. The first two and the
 * last two have two or more chunks of cpu_parfor_steal (64 KB of int8
 * weights each), so 2 threads really split them. */
static void test_q8_oracle_threaded(void **state)
{
    (void)state;
    check_shape(5, 320, 450, 32, 1, 15);
    check_shape(7, 768, 200, 64, 0, 16);
    check_shape(1, 288, 288, 32, 0, 7);
    check_shape(1, 320, 97, 64, 1, 8);
    check_shape(5, 288, 101, 32, 0, 9);
    check_shape(7, 768, 130, 64, 1, 10);
    check_shape(64, 128, 257, 32, 0, 11);
    check_shape(1, 2048, 21, 32, 0, 12);
    check_shape(1, 768, 2048, 32, 0, 13);
    check_shape(4, 2048, 768, 64, 0, 14);
}

/* Every N = 1..65 (all row blocks and the partial output block) row-for-row
 * equal to N = 1 calls of the same rows. */
static void test_q8_rows_any_n(void **state)
{
    (void)state;
    static const int sizes[][3] = {{32, 7, 32}, {64, 130, 64}, {320, 61, 32}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int C = sizes[s][0], OC = sizes[s][1], G = sizes[s][2];
        float *x = frand(20 + s, (size_t)65 * C, -1, 1);
        struct qw q = qweights(30 + s, OC, C, G, 0);
        float *bias = frand(40 + s, OC, -1, 1);
        float *one = fnew((size_t)65 * OC), *out = fnew((size_t)65 * OC);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                struct llm_backend *b = &be[r][t];
                for (int n = 0; n < 65; n++)
                    assert_int_equal(lq(b, one + (size_t)n * OC, x + (size_t)n * C, q.wq, q.sc,
                                        bias, 1, C, OC, G),
                                     0);
                check_oracle(r ? "ref N=1" : "opt N=1", one, x, q.wq, q.sc, bias, 65, C, OC, G);
                for (int N = 1; N <= 65; N++) {
                    assert_int_equal(lq(b, out, x, q.wq, q.sc, bias, N, C, OC, G), 0);
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
static void test_q8_rows_independent(void **state)
{
    (void)state;
    static const int sizes[][3] = {{64, 67, 32}, {320, 70, 64}, {768, 33, 32}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int C = sizes[s][0], OC = sizes[s][1], G = sizes[s][2];
        float *x = frand(50 + s, (size_t)7 * C, -2, 2);
        float *other = frand(60 + s, (size_t)3 * C, -2, 2);
        struct qw q = qweights(70 + s, OC, C, G, 0);
        float *bias = frand(80 + s, OC, -1, 1);
        float *o7 = fnew((size_t)7 * OC), *o1 = fnew(OC), *o3 = fnew((size_t)3 * OC);
        float *x3 = fnew((size_t)3 * C);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++)
                for (int hb = 0; hb < 2; hb++) {
                    struct llm_backend *b = &be[r][t];
                    const float *bb = hb ? bias : NULL;
                    assert_int_equal(lq(b, o7, x, q.wq, q.sc, bb, 7, C, OC, G), 0);
                    for (int n = 0; n < 7; n++) {
                        const float *row = x + (size_t)n * C;
                        assert_int_equal(lq(b, o1, row, q.wq, q.sc, bb, 1, C, OC, G), 0);
                        check_same("N=7 row vs N=1", o7 + (size_t)n * OC, o1, OC);
                        for (int p = 0; p < 3; p++) {
                            memcpy(x3, other, (size_t)3 * C * sizeof(float));
                            memcpy(x3 + (size_t)p * C, row, (size_t)C * sizeof(float));
                            assert_int_equal(lq(b, o3, x3, q.wq, q.sc, bb, 3, C, OC, G), 0);
                            check_same("N=7 row vs N=3 row", o7 + (size_t)n * OC,
                                       o3 + (size_t)p * OC, OC);
                        }
                    }
                }
        pool_free();
    }
}

/* An all-zero group (scale 0) contributes exactly 0; infinities go through. */
static void test_q8_zero_groups_nonfinite(void **state)
{
    (void)state;
    int C = 64, OC = 3, G = 32;
    float *w = frand(3, (size_t)OC * C, -1, 1);
    for (int i = 32; i < 64; i++)
        w[i] = 0; /* row 0, group 1 */
    int8_t *wq = qnew((size_t)OC * C);
    float *sc = fnew((size_t)OC * 2), *x = frand(4, C, -1, 1), *out = fnew(OC);
    assert_int_equal(llm_quant_q8(w, OC, C, G, wq, sc), 0);
    assert_true(sc[1] == 0.0f);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(lq(&be[r][0], out, x, wq, sc, NULL, 1, C, OC, G), 0);
        check_oracle(r ? "ref" : "opt", out, x, wq, sc, NULL, 1, C, OC, G);
    }
    x[5] = INFINITY;
    for (int r = 0; r < 2; r++) {
        assert_int_equal(lq(&be[r][0], out, x, wq, sc, NULL, 1, C, OC, G), 0);
        for (int o = 0; o < OC; o++) {
            int q = wq[(size_t)o * C + 5];
            if (q == 0)
                assert_true(isnan(out[o]));
            else
                assert_true(isinf(out[o]) && (out[o] > 0) == (q > 0));
        }
    }
    pool_free();
}

static void test_q8_zero_rows_and_bad_args(void **state)
{
    (void)state;
    float x[64] = {1, 2, 3}, sc[2] = {1, 1};
    int8_t wq[128] = {1, 1, 1};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        float out[4] = {42, 42, 42, 42};
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 0, 64, 2, 64), 0);
        assert_int_equal(lq(b, out, NULL, NULL, NULL, NULL, 0, 32, 2, 32), 0);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, -1, 64, 2, 64), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, 0, 2, 32), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, 64, 0, 32), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, -64, 2, 32), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, 64, 2, 16), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, 64, 2, 0), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 1, 48, 2, 32), LLM_EINVAL);
        assert_int_equal(lq(b, out, x, wq, sc, NULL, 0, 96, 1, 64), LLM_EINVAL);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
    }
}

/* linear_rows_q8_multi: each segment bit for bit its own linear_rows_q8
 * call, for segments of ragged sizes (partial output blocks at every
 * boundary, thread chunks across them; the sizes pass the threading
 * threshold), bias on some, G 32 and 64, N 1, 3, 7, reference and vector
 * paths, 1 and 2 threads; and its bad arguments, with nothing written. */
static void test_q8_multi(void **state)
{
    (void)state;
    static const int shapes[][5] = {/* C, then up to 4 OCs (0: none) */
                                    {320, 61, 5, 64, 0}, {768, 768, 256, 256, 0}, {64, 3, 1, 7, 600}};
    static const int Ns[] = {1, 3, 7};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++)
        for (int G = 32; G <= 64; G += 32) {
            int C = shapes[si][0], nseg = 0;
            while (nseg < 4 && shapes[si][1 + nseg])
                nseg++;
            float *x = frand(500 + si, (size_t)7 * C, -1, 1);
            struct llm_rows_seg seg[4];
            float *alone[4];
            for (int m = 0; m < nseg; m++) {
                int OC = shapes[si][1 + m];
                struct qw q = qweights(600 + 10 * si + m, OC, C, G, 0);
                seg[m] = (struct llm_rows_seg){.bias = m % 2 ? NULL : frand(700 + 10 * si + m, OC, -1, 1),
                                               .out = fnew((size_t)7 * OC), .OC = OC, .wq = q.wq,
                                               .scales = q.sc};
                alone[m] = fnew((size_t)7 * OC);
            }
            for (size_t ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++)
                for (int r = 0; r < 2; r++)
                    for (int t = 0; t < 2; t++) {
                        int N = Ns[ni];
                        struct llm_backend *b = &be[r][t];
                        for (int m = 0; m < nseg; m++) {
                            assert_int_equal(lq(b, alone[m], x, seg[m].wq, seg[m].scales, seg[m].bias, N, C,
                                                seg[m].OC, G), 0);
                            memset(seg[m].out, 0xff, (size_t)N * seg[m].OC * sizeof(float));
                        }
                        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, N, C, G, seg, nseg), 0);
                        for (int m = 0; m < nseg; m++) {
                            char what[112];
                            snprintf(what, sizeof(what),
                                     "q8 multi vs alone: C=%d G=%d segment %d of %d N=%d %s threads %d", C, G,
                                     m, nseg, N, r ? "ref" : "opt", t + 1);
                            check_same(what, seg[m].out, alone[m], (size_t)N * seg[m].OC);
                        }
                    }
            pool_free();
        }
    float x[64] = {1, 2, 3}, sc[4] = {1, 1, 1, 1}, out[4] = {42, 42, 42, 42};
    int8_t wq[128] = {1, 1, 1};
    struct llm_rows_seg s2[5];
    for (int m = 0; m < 5; m++)
        s2[m] = (struct llm_rows_seg){.out = out + (m % 2) * 2, .OC = 1, .wq = wq, .scales = sc};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 1, 64, 32, s2, 0), LLM_EINVAL);
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 1, 64, 32, s2, LLM_ROWS_MAX_SEGS + 1),
                         LLM_EINVAL);
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 1, 64, 16, s2, 2), LLM_EINVAL);
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 1, 48, 32, s2, 2), LLM_EINVAL);
        s2[1].OC = 0;
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 1, 64, 32, s2, 2), LLM_EINVAL);
        s2[1].OC = 1;
        assert_int_equal(b->ops->linear_rows_q8_multi(b->ctx, x, 0, 64, 32, s2, 2), 0);
        for (int i = 0; i < 4; i++)
            assert_true(out[i] == 42.0f);
    }
}

int main(void)
{
    const struct CMUnitTest quant[] = {
        cmocka_unit_test(test_q8_round_trip),
        cmocka_unit_test(test_q8_known_answers),
        cmocka_unit_test(test_q8_errors),
        cmocka_unit_test(test_q4),
    };
    const struct CMUnitTest kernel[] = {
        cmocka_unit_test(test_q8_oracle_small),
        cmocka_unit_test(test_q8_oracle_threaded),
        cmocka_unit_test(test_q8_rows_any_n),
        cmocka_unit_test(test_q8_rows_independent),
        cmocka_unit_test(test_q8_zero_groups_nonfinite),
        cmocka_unit_test(test_q8_zero_rows_and_bad_args),
        cmocka_unit_test(test_q8_multi),
    };
    /* the kernel tests twice: linear_rows_q8's AVX-512 path (where the CPU
     * has it) and its AVX2 path, each held to the same checks */
    if (!cpu_has_avx512())
        printf("note: no AVX-512 on this CPU; both kernel runs take the AVX2 path\n");
    int rc = cmocka_run_group_tests_name("quant", quant, setup, teardown);
    rc |= cmocka_run_group_tests_name("linear_rows_q8 (AVX-512 where present)", kernel, setup, teardown);
    cpu_avx2_only = 1;
    rc |= cmocka_run_group_tests_name("linear_rows_q8 (AVX2)", kernel, setup, teardown);
    return rc;
}
