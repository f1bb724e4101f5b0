/* test_nn_moe.c: the CPU backend's row ops (lib/nn/cpu/cpu_rows.c), those
 * the mixture of experts and MLA are built on: row softmax and its backward,
 * gather_rows, scatter_add_rows, rows_dot and copy_cols, against plain
 * double-precision references written here, with finite-difference checks
 * of every backward (the backward of gather is scatter and back, the gate's
 * is rows_dot, copy_cols is its own), on the optimized and reference paths,
 * bit-identical on 1 and 2 threads, and their argument checks.
 *
 * Tolerances: |got - want| <= ATOL + RTOL |want|, want in double. The ops
 * are a softmax over <= 70 values or a sum of <= 70 float products (or a few
 * repeated-row adds), whose float error is a few ulps of the terms: ATOL
 * 1e-6 and RTOL 1e-5 keep a 10x margin while a dropped term or a wrong row
 * moves results by 1e-2 or more. Finite differences are central, in double,
 * on the double references (h = 1e-5: truncation ~1e-10, cancellation
 * ~1e-11), against the float backward ops at the same ATOL/RTOL. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "nn/backend.h"
#include "nntest.h"

#define ATOL 1e-6
#define RTOL 1e-5
#define FD_H 1e-5


#define CALL(b, op, ...) ((b)->ops->op((b)->ctx, __VA_ARGS__))

static float *frand_owned(uint64_t seed, size_t n, float lo, float hi)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * llm_rng_float(&r);
    return p;
}

/* M indices in [0, N), every row of [0, N) used when M >= N, with repeats */
static int32_t *irand(uint64_t seed, int M, int N)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    int32_t *p = malloc((M ? M : 1) * sizeof(int32_t));
    assert_non_null(p);
    for (int m = 0; m < M; m++)
        p[m] = m < N ? m : (int32_t)llm_rng_below(&r, (uint64_t)N);
    for (int m = M - 1; m > 0; m--) { /* shuffle */
        int j = (int)llm_rng_below(&r, (uint64_t)m + 1);
        int32_t t = p[m];
        p[m] = p[j], p[j] = t;
    }
    return p;
}

static float *fzero(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static void check_close(const char *what, const float *got, const double *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= ATOL + RTOL * fabs(want[i])))
            fail_msg("%s[%zu]: got %.9g, want %.9g (error %.3g)", what, i, (double)got[i], want[i],
                     err);
    }
}

static void check_same(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof(float)))
        fail_msg("%s: results differ between thread counts or paths", what);
}

/* ---- double references ---- */

static void ref_softmax(double *y, const double *x, int N, int C)
{
    for (int n = 0; n < N; n++) {
        double mx = x[n * C], z = 0;
        for (int j = 1; j < C; j++)
            mx = x[n * C + j] > mx ? x[n * C + j] : mx;
        for (int j = 0; j < C; j++)
            z += y[n * C + j] = exp(x[n * C + j] - mx);
        for (int j = 0; j < C; j++)
            y[n * C + j] /= z;
    }
}

/* out (N, C) += scatter of w * y (M, C) by idx */
static void ref_scatter(double *out, const double *y, const int32_t *idx, const double *w, int M,
                        int C)
{
    for (int m = 0; m < M; m++)
        for (int j = 0; j < C; j++)
            out[idx[m] * C + j] += (w ? w[m] : 1.0) * y[m * C + j];
}

static double *dbl(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof(double));
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* ---- softmax ---- */

/* L(x) = sum R * softmax(x), the scalar the finite differences probe */
static double softmax_loss(const double *x, const double *R, int N, int C)
{
    double *y = malloc((size_t)N * C * sizeof(double)), L = 0;
    ref_softmax(y, x, N, C);
    for (int i = 0; i < N * C; i++)
        L += R[i] * y[i];
    free(y);
    return L;
}

static void softmax_case(int N, int C, float scale, int fd)
{
    size_t n = (size_t)N * C;
    float *x = frand_owned(1, n, -scale, scale), *dout = frand_owned(2, n, -1, 1);
    double *xd = dbl(x, n), *Rd = dbl(dout, n), *want = malloc(n * sizeof(double));
    ref_softmax(want, xd, N, C);
    float *res[2][2], *gres[2][2];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            float *y = fzero(n), *dx = fzero(n);
            assert_int_equal(CALL(&be[r][t], softmax_forward, y, x, N, C), 0);
            check_close("softmax", y, want, n);
            assert_int_equal(CALL(&be[r][t], softmax_backward, dx, dout, y, N, C), 0);
            res[r][t] = y, gres[r][t] = dx;
        }
    /* in place: out = x, dx = dout */
    float *xi = malloc(n * sizeof(float)), *gi = malloc(n * sizeof(float));
    memcpy(xi, x, n * sizeof(float));
    memcpy(gi, dout, n * sizeof(float));
    assert_int_equal(CALL(&be[0][1], softmax_forward, xi, xi, N, C), 0);
    assert_int_equal(CALL(&be[0][1], softmax_backward, gi, gi, xi, N, C), 0);
    check_same("softmax in place", xi, res[0][0], n);
    check_same("softmax_backward in place", gi, gres[0][0], n);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            check_same("softmax", res[r][t], res[0][0], n);
            check_same("softmax_backward", gres[r][t], gres[0][0], n);
        }
    /* backward: analytic double (y (dout - sum dout y)), and finite differences */
    double *gw = malloc(n * sizeof(double));
    for (int row = 0; row < N; row++) {
        double s = 0;
        for (int j = 0; j < C; j++)
            s += Rd[row * C + j] * want[row * C + j];
        for (int j = 0; j < C; j++)
            gw[row * C + j] = want[row * C + j] * (Rd[row * C + j] - s);
    }
    check_close("softmax_backward", gres[0][0], gw, n);
    if (fd) {
        for (size_t i = 0; i < n; i++) {
            double x0 = xd[i];
            xd[i] = x0 + FD_H;
            double lp = softmax_loss(xd, Rd, N, C);
            xd[i] = x0 - FD_H;
            double lm = softmax_loss(xd, Rd, N, C);
            xd[i] = x0;
            gw[i] = (lp - lm) / (2 * FD_H);
        }
        check_close("softmax_backward vs finite differences", gres[0][0], gw, n);
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            free(res[r][t]), free(gres[r][t]);
    free(x), free(dout), free(xd), free(Rd), free(want), free(xi), free(gi), free(gw);
}

static void test_softmax(void **state)
{
    (void)state;
    softmax_case(7, 5, 3.0f, 1);
    softmax_case(3, 1, 1.0f, 1);     /* one column: probability 1, gradient 0 */
    softmax_case(300, 70, 5.0f, 0);  /* past the one-thread cutoff */
    /* logits near 1e4 do not overflow */
    float x[3] = {10000.0f, 10000.0f, 9990.0f}, y[3];
    assert_int_equal(CALL(&be[0][0], softmax_forward, y, x, 1, 3), 0);
    assert_true(fabsf(y[0] - 0.5f) < 1e-4f && y[2] > 0 && y[2] < 1e-4f);
}

/* ---- gather, scatter, rows_dot: values and the gradients among them ----
 * gather (out[m] = w[m] x[idx[m]]) and scatter (out[idx[m]] += w[m] y[m]) are
 * each other's transposes, and d/dw of either is rows_dot; the finite
 * differences probe L = <R, op(...)> for a fixed random R. */

struct rows_case {
    int M, N, C;
    float *x, *y, *w, *R_out, *R_in; /* x (N, C), y (M, C), w (M), R_out (N, C), R_in (M, C) */
    int32_t *idx;
};

static struct rows_case rows_case(int M, int N, int C)
{
    struct rows_case k = {M, N, C, frand_owned(3, (size_t)N * C, -1, 1), frand_owned(4, (size_t)M * C, -1, 1),
                          frand_owned(5, (size_t)M, -1, 1), frand_owned(6, (size_t)N * C, -1, 1),
                          frand_owned(7, (size_t)M * C, -1, 1), irand(8, M, N)};
    return k;
}

static void rows_case_free(struct rows_case *k)
{
    free(k->x), free(k->y), free(k->w), free(k->R_out), free(k->R_in), free(k->idx);
}

/* L(y, w) = <R_out, scatter(y, w)> in double */
static double scatter_loss(const struct rows_case *k, const double *y, const double *w)
{
    double *out = calloc((size_t)k->N * k->C, sizeof(double)), L = 0;
    ref_scatter(out, y, k->idx, w, k->M, k->C);
    for (int i = 0; i < k->N * k->C; i++)
        L += k->R_out[i] * out[i];
    free(out);
    return L;
}

/* L(x) = <R_in, gather(x, w)> in double */
static double gather_loss(const struct rows_case *k, const double *x)
{
    double L = 0;
    for (int m = 0; m < k->M; m++)
        for (int j = 0; j < k->C; j++)
            L += k->R_in[m * k->C + j] * k->w[m] * x[k->idx[m] * k->C + j];
    return L;
}

static void rows_values(const struct rows_case *k)
{
    int M = k->M, N = k->N, C = k->C;
    size_t mc = (size_t)M * C, nc = (size_t)N * C;
    double *xd = dbl(k->x, nc), *yd = dbl(k->y, mc), *wd = dbl(k->w, M);
    double *want = calloc(mc > nc ? mc : nc, sizeof(double));
    float *g[2][2], *gw[2][2], *s[2][2], *d[2][2];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            const struct llm_backend *b = &be[r][t];
            float *o = fzero(mc), *ow = fzero(mc), *sc = frand_owned(9, nc, -1, 1), *dot = fzero(M);
            assert_int_equal(CALL(b, gather_rows, o, k->x, k->idx, NULL, M, N, C), 0);
            assert_int_equal(CALL(b, gather_rows, ow, k->x, k->idx, k->w, M, N, C), 0);
            assert_int_equal(CALL(b, scatter_add_rows, sc, k->y, k->idx, k->w, M, N, C), 0);
            assert_int_equal(CALL(b, rows_dot, dot, k->R_out, k->idx, k->y, M, N, C), 0);
            g[r][t] = o, gw[r][t] = ow, s[r][t] = sc, d[r][t] = dot;
        }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            check_same("gather_rows", g[r][t], g[0][0], mc);
            check_same("gather_rows (weighted)", gw[r][t], gw[0][0], mc);
            check_same("scatter_add_rows", s[r][t], s[0][0], nc);
            check_same("rows_dot", d[r][t], d[0][0], M);
        }
    for (int m = 0; m < M; m++) /* an unweighted gather is an exact copy */
        assert_memory_equal(g[0][0] + (size_t)m * C, k->x + (size_t)k->idx[m] * C, C * sizeof(float));
    for (size_t i = 0; i < mc; i++)
        want[i] = wd[i / C] * xd[(size_t)k->idx[i / C] * C + i % C];
    check_close("gather_rows (weighted)", gw[0][0], want, mc);
    float *start = frand_owned(9, nc, -1, 1); /* scatter adds into what was there */
    for (size_t i = 0; i < nc; i++)
        want[i] = start[i];
    ref_scatter(want, yd, k->idx, wd, M, C);
    check_close("scatter_add_rows", s[0][0], want, nc);
    for (int m = 0; m < M; m++) {
        want[m] = 0;
        for (int j = 0; j < C; j++)
            want[m] += (double)k->R_out[(size_t)k->idx[m] * C + j] * yd[(size_t)m * C + j];
    }
    check_close("rows_dot", d[0][0], want, M);
    /* rows_dot without an index: row m of a */
    float *dot = fzero(M);
    assert_int_equal(CALL(&be[0][1], rows_dot, dot, k->R_in, NULL, k->y, M, M, C), 0);
    for (int m = 0; m < M; m++) {
        want[m] = 0;
        for (int j = 0; j < C; j++)
            want[m] += (double)k->R_in[(size_t)m * C + j] * yd[(size_t)m * C + j];
    }
    check_close("rows_dot (no index)", dot, want, M);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            free(g[r][t]), free(gw[r][t]), free(s[r][t]), free(d[r][t]);
    free(xd), free(yd), free(wd), free(want), free(start), free(dot);
}

static void rows_gradients(const struct rows_case *k)
{
    int M = k->M, N = k->N, C = k->C;
    size_t mc = (size_t)M * C, nc = (size_t)N * C;
    const struct llm_backend *b = &be[0][1];
    double *xd = dbl(k->x, nc), *yd = dbl(k->y, mc), *wd = dbl(k->w, M);
    double *num = malloc((mc > nc ? mc : nc) * sizeof(double));
    /* scatter, d/dy: gather of R_out with the weights */
    float *dy = fzero(mc), *dw = fzero(M), *dx = fzero(nc);
    assert_int_equal(CALL(b, gather_rows, dy, k->R_out, k->idx, k->w, M, N, C), 0);
    for (size_t i = 0; i < mc; i++) {
        double v = yd[i];
        yd[i] = v + FD_H;
        double lp = scatter_loss(k, yd, wd);
        yd[i] = v - FD_H;
        double lm = scatter_loss(k, yd, wd);
        yd[i] = v;
        num[i] = (lp - lm) / (2 * FD_H);
    }
    check_close("d scatter / d y (gather_rows)", dy, num, mc);
    /* scatter, d/dw: rows_dot of R_out and y */
    assert_int_equal(CALL(b, rows_dot, dw, k->R_out, k->idx, k->y, M, N, C), 0);
    for (int m = 0; m < M; m++) {
        double v = wd[m];
        wd[m] = v + FD_H;
        double lp = scatter_loss(k, yd, wd);
        wd[m] = v - FD_H;
        double lm = scatter_loss(k, yd, wd);
        wd[m] = v;
        num[m] = (lp - lm) / (2 * FD_H);
    }
    check_close("d scatter / d w (rows_dot)", dw, num, M);
    /* gather, d/dx: scatter of R_in with the weights */
    assert_int_equal(CALL(b, scatter_add_rows, dx, k->R_in, k->idx, k->w, M, N, C), 0);
    for (size_t i = 0; i < nc; i++) {
        double v = xd[i];
        xd[i] = v + FD_H;
        double lp = gather_loss(k, xd);
        xd[i] = v - FD_H;
        double lm = gather_loss(k, xd);
        xd[i] = v;
        num[i] = (lp - lm) / (2 * FD_H);
    }
    check_close("d gather / d x (scatter_add_rows)", dx, num, nc);
    free(xd), free(yd), free(wd), free(num), free(dy), free(dw), free(dx);
}

static void test_gather_scatter(void **state)
{
    (void)state;
    struct rows_case k = rows_case(11, 5, 7); /* every row repeated */
    rows_values(&k);
    rows_gradients(&k);
    rows_case_free(&k);
    k = rows_case(3, 9, 1); /* one column (the router's flat gates); rows unused */
    rows_values(&k);
    rows_gradients(&k);
    rows_case_free(&k);
    k = rows_case(600, 300, 70); /* past the one-thread cutoff, several column chunks */
    rows_values(&k);
    rows_case_free(&k);
    k = rows_case(0, 4, 3); /* nothing to do */
    rows_values(&k);
    rows_case_free(&k);
}

/* Sums into a row repeated many times run in list order, on every path. */
static void test_scatter_order(void **state)
{
    (void)state;
    int M = 4000, C = 40;
    float *y = frand_owned(11, (size_t)M * C, -1, 1), *w = frand_owned(12, M, 0, 2);
    int32_t *idx = calloc(M, sizeof(int32_t)); /* all into row 0 of 2 */
    float *want = fzero(2 * (size_t)C);
    for (int m = 0; m < M; m++) /* the same float operations, in list order */
        for (int j = 0; j < C; j++)
            want[j] += w[m] * y[(size_t)m * C + j];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            float *out = fzero(2 * (size_t)C);
            assert_int_equal(CALL(&be[r][t], scatter_add_rows, out, y, idx, w, M, 2, C), 0);
            check_same("scatter_add_rows in list order", out, want, 2 * (size_t)C);
            free(out);
        }
    free(y), free(w), free(idx), free(want);
}

/* ---- copy_cols ---- */

static void test_copy_cols(void **state)
{
    (void)state;
    int rows = 300, ds = 90, ss = 70, cols = 60;
    float *src = frand_owned(13, (size_t)rows * ss, -1, 1), *base = frand_owned(14, (size_t)rows * ds, -1, 1);
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            float *dst = malloc((size_t)rows * ds * sizeof(float));
            for (int acc = 0; acc < 2; acc++) {
                memcpy(dst, base, (size_t)rows * ds * sizeof(float));
                assert_int_equal(CALL(&be[r][t], copy_cols, dst + 5, ds, src + 3, ss, rows, cols, acc), 0);
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < ds; j++) {
                        int in = j >= 5 && j < 5 + cols;
                        float b0 = base[(size_t)i * ds + j];
                        float s0 = in ? src[(size_t)i * ss + (j - 5) + 3] : 0.0f;
                        float want = !in ? b0 : acc ? b0 + s0 : s0;
                        if (dst[(size_t)i * ds + j] != want)
                            fail_msg("copy_cols (accumulate %d) [%d,%d]: got %g, want %g", acc, i, j,
                                     dst[(size_t)i * ds + j], want);
                    }
            }
            free(dst);
        }
    /* src_stride 0 repeats one row (MLA's shared rope key into every head) */
    float dst[4 * 3];
    assert_int_equal(CALL(&be[0][0], copy_cols, dst, 3, src, 0, 4, 3, 0), 0);
    for (int i = 0; i < 12; i++)
        assert_true(dst[i] == src[i % 3]);
    /* the gradient: <R, copy(s)> = <copy back(R), s>, i.e. the transpose of a
     * copy is the copy the other way; with src_stride 0 the way back sums the
     * repeats (accumulate) */
    float R[4 * 3], back[3] = {0};
    for (int i = 0; i < 12; i++)
        R[i] = (float)(i + 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(CALL(&be[0][0], copy_cols, back, 3, R + 3 * i, 3, 1, 3, 1), 0);
    double lhs = 0, rhs = 0;
    for (int i = 0; i < 12; i++)
        lhs += (double)R[i] * dst[i];
    for (int j = 0; j < 3; j++)
        rhs += (double)back[j] * src[j];
    assert_true(fabs(lhs - rhs) <= 1e-5 * (1 + fabs(lhs)));
    free(src), free(base);
}

/* ---- argument checks: refused with LLM_EINVAL, nothing written ---- */

static void test_bad_args(void **state)
{
    (void)state;
    const struct llm_backend *b = &be[0][0];
    float x[12] = {0}, out[12], y[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int32_t bad[3] = {0, 4, 1}, neg[2] = {0, -1};
    for (int i = 0; i < 12; i++)
        out[i] = 7.0f;
    assert_int_equal(CALL(b, gather_rows, out, x, bad, NULL, 3, 4, 3), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "outside [0, 4)"));
    assert_int_equal(CALL(b, gather_rows, out, x, neg, NULL, 2, 4, 3), LLM_EINVAL);
    assert_int_equal(CALL(b, scatter_add_rows, out, y, bad, NULL, 3, 4, 3), LLM_EINVAL);
    assert_int_equal(CALL(b, rows_dot, out, x, bad, y, 3, 4, 3), LLM_EINVAL);
    assert_int_equal(CALL(b, rows_dot, out, x, NULL, y, 3, 2, 3), LLM_EINVAL); /* N < M */
    for (int i = 0; i < 12; i++)
        assert_true(out[i] == 7.0f);
    assert_int_equal(CALL(b, gather_rows, out, x, bad, NULL, -1, 4, 3), LLM_EINVAL);
    assert_int_equal(CALL(b, scatter_add_rows, out, y, bad, NULL, 1, 4, 0), LLM_EINVAL);
    assert_int_equal(CALL(b, softmax_forward, out, x, 2, 0), LLM_EINVAL);
    assert_int_equal(CALL(b, softmax_backward, out, x, y, -1, 3), LLM_EINVAL);
    assert_int_equal(CALL(b, copy_cols, out, 2, y, 3, 2, 3, 0), LLM_EINVAL); /* dst_stride < cols */
    assert_int_equal(CALL(b, copy_cols, out, 3, y, -1, 2, 3, 0), LLM_EINVAL);
    assert_int_equal(CALL(b, copy_cols, out, 3, y, 3, 2, 0, 0), LLM_EINVAL);
    /* zero rows: nothing to do, success */
    assert_int_equal(CALL(b, gather_rows, out, x, bad, NULL, 0, 4, 3), 0);
    assert_int_equal(CALL(b, softmax_forward, out, x, 0, 3), 0);
    assert_int_equal(CALL(b, copy_cols, out, 3, y, 3, 0, 3, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_scatter_order),
        cmocka_unit_test(test_copy_cols),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests_name("nn_moe", tests, setup, teardown);
}
