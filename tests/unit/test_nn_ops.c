/* test_nn_ops.c: the CPU backend's non-attention ops (lib/nn/cpu/cpu_ops.c)
 * against plain double-precision references written here, with finite-
 * difference checks of every backward pass, on odd sizes, for the optimized
 * (ref=0) and reference (ref=1) paths, each bit-identical on 1 and 2 threads.
 *
 * Tolerances: float results vs double references pass when
 * |got - want| <= ATOL + RTOL |want| with ATOL = 1e-5, RTOL = 1e-4 (fp32 has a
 * 6e-8 unit roundoff; our sums run over at most a few thousand terms). The
 * numerical gradients are central differences in double on the double
 * references (h = 1e-5: truncation ~h^2, cancellation ~1e-16/h, both far
 * below ATOL), so the backend's float gradients are held to the same ATOL/RTOL.
 * Small sizes (N=7, C=13, OC=5, V=11) get the finite differences; "big" sizes
 * (above the backend's one-thread cutoff, across its 64-row blocks) compare
 * against the analytic double backward, itself checked against finite
 * differences at the small sizes. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "nn/backend.h"
#include "nntest.h"

#define ATOL 1e-5
#define RTOL 1e-4
#define FD_H 1e-5


static int32_t *irand(uint64_t seed, size_t n, int hi)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    int32_t *p = keep(calloc(n ? n : 1, sizeof(int32_t)));
    for (size_t i = 0; i < n; i++)
        p[i] = (int32_t)llm_rng_below(&r, (uint64_t)hi);
    return p;
}

static double *todbl(const float *a, size_t n)
{
    double *d = dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = a ? a[i] : 0.0;
    return d;
}

static void check_close_tol(const char *what, const float *got, const double *want, size_t n,
                            double atol, double rtol)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i])))
            fail_msg("%s[%zu]: got %.9g, want %.9g (error %.3g)", what, i, (double)got[i], want[i],
                     err);
    }
}

static void check_close(const char *what, const float *got, const double *want, size_t n)
{
    check_close_tol(what, got, want, n, ATOL, RTOL);
}

/* Double vs double (the analytic references against finite differences). */
static void check_close_d(const char *what, const double *got, const double *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-7 + 1e-6 * fabs(want[i])))
            fail_msg("%s[%zu]: analytic %.12g, numerical %.12g", what, i, got[i], want[i]);
}

static void check_bits(const char *what, const float *a, const float *b, size_t n)
{
    if (n && memcmp(a, b, n * sizeof(float)) != 0)
        for (size_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
                fail_msg("%s[%zu] differs between 1 and 2 threads: %.9g vs %.9g", what, i,
                         (double)a[i], (double)b[i]);
}

/* Central differences: grad[i] += (f(x + h e_i) - f(x - h e_i)) / 2h. */
typedef double (*scalar_fn)(const void *args);

static void numgrad(scalar_fn f, const void *args, double *x, size_t n, double *grad)
{
    for (size_t i = 0; i < n; i++) {
        double save = x[i];
        x[i] = save + FD_H;
        double lp = f(args);
        x[i] = save - FD_H;
        double lm = f(args);
        x[i] = save;
        grad[i] += (lp - lm) / (2 * FD_H);
    }
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Sizes: small ones get finite differences, big ones exercise the threads. */
struct dims {
    int N, C, OC, V;
    int fd;
};
static const struct dims SMALL = {7, 13, 5, 11, 1};

/* ======================================================================== */
/* Embeddings and positions                                                 */

static void ref_embedding(double *out, const int32_t *tok, const double *wte, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            out[(size_t)n * C + i] = wte[(size_t)tok[n] * C + i];
}

struct emb_args {
    const int32_t *tok;
    const double *wte, *R;
    double *out;
    int N, C;
};

static double emb_loss(const void *p)
{
    const struct emb_args *a = p;
    ref_embedding(a->out, a->tok, a->wte, a->N, a->C);
    return dot(a->out, a->R, (size_t)a->N * a->C);
}

static void check_embedding(int N, int C, int V, int fd)
{
    size_t nc = (size_t)N * C, vc = (size_t)V * C;
    float *wte = frand(1, vc, -1, 1), *dout = frand(2, nc, -1, 1), *dw0 = frand(3, vc, -1, 1);
    int32_t *tok = irand(4, N, V);
    tok[N - 1] = tok[0]; /* at least one repeated token */
    double *want = dnew(nc), *wte_d = todbl(wte, vc), *dw = todbl(dw0, vc);
    ref_embedding(want, tok, wte_d, N, C);
    /* dwte[tok[n],:] += dout[n,:] */
    double *dwa = todbl(dw0, vc);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            dwa[(size_t)tok[n] * C + i] += dout[(size_t)n * C + i];
    if (fd) {
        struct emb_args a = {tok, wte_d, todbl(dout, nc), dnew(nc), N, C};
        numgrad(emb_loss, &a, wte_d, vc, dw);
        check_close_d("embedding dwte (analytic)", dwa, dw, vc);
    } else {
        dw = dwa;
    }
    for (int r = 0; r < 2; r++) {
        float *out[2], *dwte[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            out[t] = fnew(nc);
            dwte[t] = fcopy(dw0, vc);
            assert_int_equal(b->ops->embedding_forward(b->ctx, out[t], tok, wte, N, C, V), 0);
            assert_int_equal(b->ops->embedding_backward(b->ctx, dwte[t], dout, tok, N, C), 0);
            check_close("embedding out", out[t], want, nc);
            check_close("embedding dwte", dwte[t], dw, vc);
        }
        check_bits("embedding out", out[0], out[1], nc);
        check_bits("embedding dwte", dwte[0], dwte[1], vc);
    }
    pool_free();
}

static void test_embedding(void **state)
{
    (void)state;
    check_embedding(SMALL.N, SMALL.C, SMALL.V, 1);
    check_embedding(2049, 67, 101, 0);
}

static void test_embedding_bad_token(void **state)
{
    (void)state;
    int C = 13, V = 11;
    float *wte = frand(1, (size_t)V * C, -1, 1), *out = fnew(3 * C);
    int32_t bad[][3] = {{1, 11, 2}, {0, -1, 3}, {5, 6, 1000}};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3 * C; i++)
            out[i] = 7.0f;
        struct llm_backend *b = &be[k % 2][0];
        int rc = b->ops->embedding_forward(b->ctx, out, bad[k], wte, 3, C, V);
        assert_int_equal(rc, LLM_EINVAL);
        assert_non_null(strstr(llm_errmsg(), "outside the vocabulary"));
        for (int i = 0; i < 3 * C; i++) /* nothing written */
            assert_true(out[i] == 7.0f);
    }
    /* backward: a negative id is refused too */
    int32_t neg[1] = {-2};
    assert_int_equal(be[0][0].ops->embedding_backward(be[0][0].ctx, out, out, neg, 1, C),
                     LLM_EINVAL);
    pool_free();
}

/* The position of token t of row b: pos0 + t, or pos0 + pos[b,t] when packed. */
static int position(const int32_t *pos, int b, int t, int T, int pos0)
{
    return pos0 + (pos ? pos[(size_t)b * T + t] : t);
}

static void ref_positions(double *x, const double *wpe, const int32_t *pos, int B, int T, int C,
                          int pos0)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++)
                x[((size_t)b * T + t) * C + i] += wpe[(size_t)position(pos, b, t, T, pos0) * C + i];
}

struct pos_args {
    const double *x, *wpe, *R;
    double *out;
    const int32_t *pos;
    int B, T, C, pos0;
};

static double pos_loss(const void *p)
{
    const struct pos_args *a = p;
    size_t n = (size_t)a->B * a->T * a->C;
    memcpy(a->out, a->x, n * sizeof(double));
    ref_positions(a->out, a->wpe, a->pos, a->B, a->T, a->C, a->pos0);
    return dot(a->out, a->R, n);
}

/* packed: rows hold examples of 1, 2, .. 7 tokens in turn (positions restart). */
static void check_positions(int B, int T, int C, int fd, int packed)
{
    int pos0 = 3, P = pos0 + T + 2;
    size_t n = (size_t)B * T * C, pc = (size_t)P * C;
    float *x = frand(1, n, -1, 1), *wpe = frand(2, pc, -1, 1), *dx = frand(3, n, -1, 1);
    float *dw0 = frand(4, pc, -1, 1);
    int32_t *pos = NULL;
    if (packed) {
        pos = malloc((size_t)B * T * sizeof(int32_t));
        assert_non_null(pos);
        for (int b = 0, len = 1; b < B; b++)
            for (int t = 0, p = 0; t < T; t++, p++) {
                if (p == len)
                    p = 0, len = len % 7 + 1;
                pos[(size_t)b * T + t] = p;
            }
    }
    double *want = todbl(x, n), *wpe_d = todbl(wpe, pc), *dw = todbl(dw0, pc);
    ref_positions(want, wpe_d, pos, B, T, C, pos0);
    double *dwa = todbl(dw0, pc); /* dwpe[position(b,t)] += dx[b,t] */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++)
                dwa[(size_t)position(pos, b, t, T, pos0) * C + i] += dx[((size_t)b * T + t) * C + i];
    if (fd) {
        struct pos_args a = {todbl(x, n), wpe_d, todbl(dx, n), dnew(n), pos, B, T, C, pos0};
        numgrad(pos_loss, &a, wpe_d, pc, dw);
        check_close_d("positions dwpe (analytic)", dwa, dw, pc);
    } else {
        dw = dwa;
    }
    for (int r = 0; r < 2; r++) {
        float *out[2], *dwpe[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            out[t] = fcopy(x, n);
            dwpe[t] = fcopy(dw0, pc);
            assert_int_equal(b->ops->add_positions(b->ctx, out[t], wpe, pos, B, T, C, pos0), 0);
            assert_int_equal(b->ops->add_positions_backward(b->ctx, dwpe[t], dx, pos, B, T, C, pos0),
                             0);
            check_close("positions x", out[t], want, n);
            check_close("positions dwpe", dwpe[t], dw, pc);
        }
        check_bits("positions x", out[0], out[1], n);
        check_bits("positions dwpe", dwpe[0], dwpe[1], pc);
    }
    free(pos);
    pool_free();
}

static void test_positions(void **state)
{
    (void)state;
    check_positions(3, 5, 13, 1, 0);
    check_positions(5, 401, 67, 0, 0);
    check_positions(3, 11, 13, 1, 1);
    check_positions(5, 401, 67, 0, 1);
}

/* ======================================================================== */
/* Norms                                                                    */

/* Double reference; b may be NULL; mean may be NULL (rmsnorm: rms == 1). */
static void ref_layernorm(double *out, double *mean, double *rstd, const double *x,
                          const double *w, const double *b, int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double mu = 0, var = 0;
        for (int i = 0; i < C; i++)
            mu += xr[i];
        mu /= C;
        for (int i = 0; i < C; i++)
            var += (xr[i] - mu) * (xr[i] - mu);
        var /= C;
        double s = 1 / sqrt(var + eps);
        for (int i = 0; i < C; i++)
            out[(size_t)n * C + i] = (xr[i] - mu) * s * w[i] + (b ? b[i] : 0);
        if (mean)
            mean[n] = mu;
        if (rstd)
            rstd[n] = s;
    }
}

static void ref_rmsnorm(double *out, double *rstd, const double *x, const double *w, int N, int C,
                        double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++)
            ss += xr[i] * xr[i];
        double s = 1 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++)
            out[(size_t)n * C + i] = xr[i] * s * w[i];
        if (rstd)
            rstd[n] = s;
    }
}

/* Analytic backward of both norms (rms != 0: rmsnorm, where mu = 0 and the
 * mean(dy) term is absent). xh = (x - mu) s, dy = dout w:
 *   dx = s (dy - mean(dy) - xh mean(dy xh))   [rmsnorm: s (dy - xh mean(dy xh))]
 *   dw += dout xh;  db += dout */
static void ref_norm_backward(double *dx, double *dw, double *db, const double *dout,
                              const double *x, const double *w, int N, int C, double eps, int rms)
{
    double *tmp = malloc((size_t)C * sizeof(double));
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C, *dr = dout + (size_t)n * C;
        double s, mu = 0;
        if (rms)
            ref_rmsnorm(tmp, &s, xr, w, 1, C, eps);
        else
            ref_layernorm(tmp, &mu, &s, xr, w, NULL, 1, C, eps);
        double mdy = 0, mdyxh = 0;
        for (int i = 0; i < C; i++) {
            mdy += dr[i] * w[i] / C;
            mdyxh += dr[i] * w[i] * (xr[i] - mu) * s / C;
        }
        if (rms)
            mdy = 0;
        for (int i = 0; i < C; i++) {
            double xh = (xr[i] - mu) * s;
            dx[(size_t)n * C + i] = s * (dr[i] * w[i] - mdy - xh * mdyxh);
            dw[i] += dr[i] * xh;
            if (db)
                db[i] += dr[i];
        }
    }
    free(tmp);
}

struct norm_args {
    const double *x, *w, *b, *R;
    double *out;
    int N, C, rms;
    double eps;
};

static double norm_loss(const void *p)
{
    const struct norm_args *a = p;
    if (a->rms)
        ref_rmsnorm(a->out, NULL, a->x, a->w, a->N, a->C, a->eps);
    else
        ref_layernorm(a->out, NULL, NULL, a->x, a->w, a->b, a->N, a->C, a->eps);
    return dot(a->out, a->R, (size_t)a->N * a->C);
}

/* rms: rmsnorm, else layernorm (with_bias: b, db non-NULL). */
static void check_norm(int N, int C, int rms, int with_bias, int fd)
{
    size_t nc = (size_t)N * C;
    float eps = 1e-5f;
    float *x = frand(10 + rms, nc, -2, 3), *w = frand(12, C, 0.5f, 1.5f);
    float *bias = with_bias ? frand(13, C, -0.5f, 0.5f) : NULL;
    float *dout = frand(14, nc, -1, 1), *dw0 = frand(15, C, -1, 1), *db0 = frand(16, C, -1, 1);
    double *xd = todbl(x, nc), *wd = todbl(w, C), *bd = bias ? todbl(bias, C) : NULL;
    double *out = dnew(nc), *mean = dnew(N), *rstd = dnew(N);
    if (rms)
        ref_rmsnorm(out, rstd, xd, wd, N, C, eps);
    else
        ref_layernorm(out, mean, rstd, xd, wd, bd, N, C, eps);
    double *dx = dnew(nc), *dw = todbl(dw0, C), *db = todbl(db0, C);
    ref_norm_backward(dx, dw, db, todbl(dout, nc), xd, wd, N, C, eps, rms);
    if (fd) {
        /* the analytic backward against d/d(x, w, b) of sum(out * dout) */
        struct norm_args a = {xd, wd, bd, todbl(dout, nc), dnew(nc), N, C, rms, eps};
        double *gx = dnew(nc), *gw = todbl(dw0, C), *gb = todbl(db0, C);
        numgrad(norm_loss, &a, xd, nc, gx);
        numgrad(norm_loss, &a, wd, C, gw);
        check_close_d("norm dx (analytic)", dx, gx, nc);
        check_close_d("norm dw (analytic)", dw, gw, C);
        if (bd) {
            numgrad(norm_loss, &a, bd, C, gb);
            check_close_d("norm db (analytic)", db, gb, C);
        }
        /* and the backend is held against the numerical gradients */
        dx = gx, dw = gw;
        if (bd)
            db = gb;
    }
    for (int r = 0; r < 2; r++) {
        float *o[2], *m[2], *s[2], *gx[2], *gw[2], *gb[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            o[t] = fnew(nc), m[t] = fnew(N), s[t] = fnew(N), gx[t] = fnew(nc);
            gw[t] = fcopy(dw0, C), gb[t] = fcopy(db0, C);
            for (size_t i = 0; i < nc; i++)
                gx[t][i] = 123.0f; /* dx is written, not accumulated */
            if (rms) {
                assert_int_equal(b->ops->rmsnorm_forward(b->ctx, o[t], s[t], x, w, N, C, eps), 0);
                assert_int_equal(
                    b->ops->rmsnorm_backward(b->ctx, gx[t], gw[t], dout, x, w, s[t], N, C), 0);
            } else {
                assert_int_equal(
                    b->ops->layernorm_forward(b->ctx, o[t], m[t], s[t], x, w, bias, N, C, eps), 0);
                assert_int_equal(b->ops->layernorm_backward(b->ctx, gx[t], gw[t],
                                                            with_bias ? gb[t] : NULL, dout, x, w,
                                                            m[t], s[t], N, C),
                                 0);
                check_close("layernorm mean", m[t], mean, N);
            }
            check_close("norm out", o[t], out, nc);
            check_close("norm rstd", s[t], rstd, N);
            check_close("norm dx", gx[t], dx, nc);
            check_close("norm dw", gw[t], dw, C);
            if (with_bias)
                check_close("norm db", gb[t], db, C);
            else
                check_bits("norm db untouched", gb[t], db0, C);
        }
        check_bits("norm out", o[0], o[1], nc);
        check_bits("norm rstd", s[0], s[1], N);
        check_bits("norm dx", gx[0], gx[1], nc);
        check_bits("norm dw", gw[0], gw[1], C);
        check_bits("norm db", gb[0], gb[1], C);
    }
    pool_free();
}

static void test_layernorm(void **state)
{
    (void)state;
    check_norm(SMALL.N, SMALL.C, 0, 1, 1);
    check_norm(SMALL.N, SMALL.C, 0, 0, 1);
    check_norm(1031, 67, 0, 1, 0); /* 17 row blocks, threaded */
}

static void test_rmsnorm(void **state)
{
    (void)state;
    check_norm(SMALL.N, SMALL.C, 1, 0, 1);
    check_norm(1031, 67, 1, 0, 0);
}

/* ======================================================================== */
/* Matmul                                                                   */

static void ref_matmul(double *out, const double *x, const double *w, const double *bias, int N,
                       int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0;
            for (int i = 0; i < C; i++)
                acc += x[(size_t)n * C + i] * w[(size_t)o * C + i];
            out[(size_t)n * OC + o] = acc;
        }
}

/* dx = dout @ w; dw += dout^T @ x; dbias += column sums of dout */
static void ref_matmul_backward(double *dx, double *dw, double *dbias, const double *dout,
                                const double *x, const double *w, int N, int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) {
            double acc = 0;
            for (int o = 0; o < OC; o++)
                acc += dout[(size_t)n * OC + o] * w[(size_t)o * C + i];
            dx[(size_t)n * C + i] = acc;
        }
    for (int o = 0; o < OC; o++)
        for (int n = 0; n < N; n++) {
            double d = dout[(size_t)n * OC + o];
            for (int i = 0; i < C; i++)
                dw[(size_t)o * C + i] += d * x[(size_t)n * C + i];
            dbias[o] += d;
        }
}

struct mm_args {
    const double *x, *w, *bias, *R;
    double *out;
    int N, C, OC;
};

static double mm_loss(const void *p)
{
    const struct mm_args *a = p;
    ref_matmul(a->out, a->x, a->w, a->bias, a->N, a->C, a->OC);
    return dot(a->out, a->R, (size_t)a->N * a->OC);
}

/* with_bias: forward bias and backward dbias; with_dx: backward computes dx. */
static void check_matmul(int N, int C, int OC, int with_bias, int with_dx, int fd)
{
    size_t nc = (size_t)N * C, oc = (size_t)OC * C, no = (size_t)N * OC;
    float *x = frand(20, nc, -1, 1), *w = frand(21, oc, -1, 1), *bias = frand(22, OC, -1, 1);
    float *dout = frand(23, no, -1, 1), *dw0 = frand(24, oc, -1, 1), *db0 = frand(25, OC, -1, 1);
    double *xd = todbl(x, nc), *wd = todbl(w, oc), *bd = with_bias ? todbl(bias, OC) : NULL;
    double *out = dnew(no), *dx = dnew(nc), *dw = todbl(dw0, oc), *db = todbl(db0, OC);
    ref_matmul(out, xd, wd, bd, N, C, OC);
    ref_matmul_backward(dx, dw, db, todbl(dout, no), xd, wd, N, C, OC);
    if (fd) {
        struct mm_args a = {xd, wd, bd, todbl(dout, no), dnew(no), N, C, OC};
        double *gx = dnew(nc), *gw = todbl(dw0, oc), *gb = todbl(db0, OC);
        numgrad(mm_loss, &a, xd, nc, gx);
        numgrad(mm_loss, &a, wd, oc, gw);
        check_close_d("matmul dx (analytic)", dx, gx, nc);
        check_close_d("matmul dw (analytic)", dw, gw, oc);
        dx = gx, dw = gw;
        if (bd) {
            numgrad(mm_loss, &a, bd, OC, gb);
            check_close_d("matmul dbias (analytic)", db, gb, OC);
            db = gb;
        }
    }
    for (int r = 0; r < 2; r++) {
        float *o[2], *gx[2], *gw[2], *gb[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            o[t] = fnew(no), gx[t] = fnew(nc), gw[t] = fcopy(dw0, oc), gb[t] = fcopy(db0, OC);
            for (size_t i = 0; i < no; i++)
                o[t][i] = 99.0f; /* out is written */
            for (size_t i = 0; i < nc; i++)
                gx[t][i] = 123.0f;
            assert_int_equal(
                b->ops->matmul_forward(b->ctx, o[t], x, w, with_bias ? bias : NULL, N, C, OC), 0);
            assert_int_equal(b->ops->matmul_backward(b->ctx, with_dx ? gx[t] : NULL, gw[t],
                                                     with_bias ? gb[t] : NULL, dout, x, w, N, C,
                                                     OC),
                             0);
            check_close("matmul out", o[t], out, no);
            check_close("matmul dw", gw[t], dw, oc);
            if (with_dx) {
                check_close("matmul dx", gx[t], dx, nc);
            } else {
                for (size_t i = 0; i < nc; i++)
                    assert_true(gx[t][i] == 123.0f);
            }
            if (with_bias)
                check_close("matmul dbias", gb[t], db, OC);
            else
                check_bits("matmul dbias untouched", gb[t], db0, OC);
        }
        check_bits("matmul out", o[0], o[1], no);
        check_bits("matmul dx", gx[0], gx[1], nc);
        check_bits("matmul dw", gw[0], gw[1], oc);
        check_bits("matmul dbias", gb[0], gb[1], OC);
    }
    pool_free();
}

static void test_matmul(void **state)
{
    (void)state;
    check_matmul(SMALL.N, SMALL.C, SMALL.OC, 1, 1, 1);
    check_matmul(SMALL.N, SMALL.C, SMALL.OC, 0, 0, 1); /* bias NULL, dx NULL */
    check_matmul(389, 67, 301, 1, 1, 0);                /* 2x2 GEMM tiles, threaded dbias */
    check_matmul(389, 67, 301, 0, 0, 0);
    check_matmul(1100, 67, 301, 1, 1, 0);               /* one dw tile: split along K = N */
}

/* ======================================================================== */
/* Activations and swiglu (elementwise: numerical derivative per element)   */

static double ref_act(int kind, double x)
{
    switch (kind) {
    case LLM_ACT_RELU:
        return x > 0 ? x : 0;
    case LLM_ACT_GELU:
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    default: /* LLM_ACT_RELU2 */
        return x > 0 ? x * x : 0;
    }
}

static double ref_silu(double g) { return g / (1 + exp(-g)); }

static void check_activation(int kind, size_t n)
{
    float *x = frand(30 + kind, n, -4, 4), *dout = frand(33, n, -1, 1);
    for (size_t i = 0; i < n; i++) /* keep FD steps off the kinks of relu and relu2 */
        if (fabsf(x[i]) < 1e-3f)
            x[i] = 0.5f;
    double *want = dnew(n), *dx = dnew(n);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        want[i] = ref_act(kind, xi);
        dx[i] = dout[i] * (ref_act(kind, xi + FD_H) - ref_act(kind, xi - FD_H)) / (2 * FD_H);
    }
    for (int r = 0; r < 2; r++) {
        float *o[2], *g[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            o[t] = fnew(n), g[t] = fnew(n);
            assert_int_equal(b->ops->activation_forward(b->ctx, kind, o[t], x, n), 0);
            assert_int_equal(b->ops->activation_backward(b->ctx, kind, g[t], dout, x, n), 0);
            check_close("activation out", o[t], want, n);
            check_close("activation dx", g[t], dx, n);
        }
        check_bits("activation out", o[0], o[1], n);
        check_bits("activation dx", g[0], g[1], n);
    }
    pool_free();
}

static void test_activations(void **state)
{
    (void)state;
    int kinds[] = {LLM_ACT_RELU, LLM_ACT_GELU, LLM_ACT_RELU2};
    for (int k = 0; k < 3; k++) {
        check_activation(kinds[k], 1001);
        check_activation(kinds[k], 100003);
    }
    float x = 1, y;
    assert_int_equal(be[0][0].ops->activation_forward(be[0][0].ctx, 99, &y, &x, 1), LLM_EINVAL);
    assert_int_equal(be[1][0].ops->activation_backward(be[1][0].ctx, -1, &y, &x, &x, 1),
                     LLM_EINVAL);
}

static void check_swiglu(size_t n)
{
    float *gate = frand(40, n, -6, 6), *up = frand(41, n, -2, 2), *dout = frand(42, n, -1, 1);
    double *want = dnew(n), *dg = dnew(n), *du = dnew(n);
    for (size_t i = 0; i < n; i++) {
        double g = gate[i], u = up[i];
        want[i] = ref_silu(g) * u;
        /* d/dg and d/du of silu(g) u, numerically */
        dg[i] = dout[i] * u * (ref_silu(g + FD_H) - ref_silu(g - FD_H)) / (2 * FD_H);
        du[i] = dout[i] * (ref_silu(g) * (u + FD_H) - ref_silu(g) * (u - FD_H)) / (2 * FD_H);
    }
    for (int r = 0; r < 2; r++) {
        float *o[2], *gg[2], *gu[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            o[t] = fnew(n), gg[t] = fnew(n), gu[t] = fnew(n);
            assert_int_equal(b->ops->swiglu_forward(b->ctx, o[t], gate, up, n), 0);
            assert_int_equal(b->ops->swiglu_backward(b->ctx, gg[t], gu[t], dout, gate, up, n), 0);
            check_close("swiglu out", o[t], want, n);
            check_close("swiglu dgate", gg[t], dg, n);
            check_close("swiglu dup", gu[t], du, n);
        }
        check_bits("swiglu out", o[0], o[1], n);
        check_bits("swiglu dgate", gg[0], gg[1], n);
        check_bits("swiglu dup", gu[0], gu[1], n);
    }
    pool_free();
}

static void test_swiglu(void **state)
{
    (void)state;
    check_swiglu(1001);
    check_swiglu(100003);
}

/* ======================================================================== */
/* Elementwise helpers                                                      */

static void check_elementwise(size_t n)
{
    float *a = frand(50, n, -1, 1), *bb = frand(51, n, -1, 1);
    float alpha = -0.37f;
    double *sum = dnew(n), *ax = dnew(n), *sc = dnew(n);
    for (size_t i = 0; i < n; i++) {
        sum[i] = (double)a[i] + bb[i];
        ax[i] = (double)a[i] + (double)alpha * bb[i];
        sc[i] = (double)a[i] * alpha;
    }
    for (int r = 0; r < 2; r++) {
        float *s[2], *y[2], *z[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            s[t] = fcopy(a, n), y[t] = fcopy(a, n), z[t] = fcopy(a, n);
            assert_int_equal(b->ops->add(b->ctx, s[t], s[t], bb, n), 0); /* out aliases a */
            assert_int_equal(b->ops->axpy(b->ctx, y[t], alpha, bb, n), 0);
            assert_int_equal(b->ops->scale(b->ctx, z[t], alpha, n), 0);
            check_close("add", s[t], sum, n);
            check_close("axpy", y[t], ax, n);
            check_close("scale", z[t], sc, n);
        }
        check_bits("add", s[0], s[1], n);
        check_bits("axpy", y[0], y[1], n);
        check_bits("scale", z[0], z[1], n);
    }
    pool_free();
}

static void check_scale_rows(int N, int D)
{
    float *x = frand(52, (size_t)N * D, -1, 1), *w = frand(53, (size_t)N, -2, 2);
    double *want = dnew((size_t)N * D);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            want[(size_t)i * D + j] = (double)x[(size_t)i * D + j] * w[i];
    for (int r = 0; r < 2; r++) {
        float *y[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            y[t] = fcopy(x, (size_t)N * D);
            assert_int_equal(b->ops->scale_rows(b->ctx, y[t], w, N, D), 0);
            check_close("scale_rows", y[t], want, (size_t)N * D);
        }
        check_bits("scale_rows", y[0], y[1], (size_t)N * D);
    }
    pool_free();
}

static void test_elementwise(void **state)
{
    (void)state;
    check_elementwise(1001);
    check_elementwise(100003);
    check_scale_rows(37, 129);
    check_scale_rows(1, 100003);
}

/* ======================================================================== */
/* Dropout                                                                  */

static void test_dropout(void **state)
{
    (void)state;
    size_t n = 100000;
    float p = 0.3f, scale = 1.0f / (1.0f - p);
    float *ones = fnew(n), *dout = frand(60, n, -1, 1);
    for (size_t i = 0; i < n; i++)
        ones[i] = 1.0f;
    struct llm_backend *b0 = &be[0][0];

    /* p = 0 is the identity, also in place */
    float *x = frand(61, n, -1, 1), *o = fnew(n);
    assert_int_equal(b0->ops->dropout_forward(b0->ctx, o, x, n, 0.0f, 5), 0);
    check_bits("dropout p=0", o, x, n);
    float *xi = fcopy(x, n);
    assert_int_equal(b0->ops->dropout_forward(b0->ctx, xi, xi, n, 0.0f, 5), 0);
    check_bits("dropout p=0 in place", xi, x, n);

    /* p = 0.3: ~30% zeros, the rest scaled by 1 / (1 - p) */
    float *mask = fnew(n);
    assert_int_equal(b0->ops->dropout_forward(b0->ctx, mask, ones, n, p, 1234), 0);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask[i] == 0.0f)
            zeros++;
        else
            assert_true(mask[i] == scale);
    }
    double frac = (double)zeros / n;
    if (fabs(frac - 0.3) > 0.01)
        fail_msg("dropout p=0.3 zeroed %.4f of the values", frac);

    /* the mask is the documented function of (seed, i): splitmix64 from state
     * seed, output i+1, top 24 bits as u in [0,1), kept when u >= p */
    uint64_t st = 1234;
    for (size_t i = 0; i < 1000; i++) {
        uint64_t h = llm_splitmix64(&st);
        int kept = (float)(h >> 40) * 0x1p-24f >= p;
        assert_int_equal(kept, mask[i] != 0.0f);
    }

    /* same seed, same mask on every backend and thread count; backward uses it */
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            float *m2 = fnew(n), *dx = fnew(n);
            assert_int_equal(b->ops->dropout_forward(b->ctx, m2, ones, n, p, 1234), 0);
            check_bits("dropout mask", m2, mask, n);
            assert_int_equal(b->ops->dropout_backward(b->ctx, dx, dout, n, p, 1234), 0);
            for (size_t i = 0; i < n; i++) {
                float want = mask[i] != 0.0f ? dout[i] * scale : 0.0f;
                if (dx[i] != want)
                    fail_msg("dropout dx[%zu] = %g, want %g", i, (double)dx[i], (double)want);
            }
        }

    /* a different seed gives a different mask (two independent 30% masks
     * disagree on 2 * 0.3 * 0.7 = 42% of the values) */
    float *other = fnew(n);
    assert_int_equal(b0->ops->dropout_forward(b0->ctx, other, ones, n, p, 1235), 0);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += (other[i] == 0.0f) != (mask[i] == 0.0f);
    assert_true(differ > n / 3 && differ < n / 2);

    /* p outside [0, 1) is refused */
    assert_int_equal(b0->ops->dropout_forward(b0->ctx, o, x, n, 1.0f, 1), LLM_EINVAL);
    assert_int_equal(b0->ops->dropout_backward(b0->ctx, o, x, n, -0.1f, 1), LLM_EINVAL);
    pool_free();
}

/* ======================================================================== */
/* Cross-entropy                                                            */

/* losses[n] = logsumexp(l) - l[target] (0 if target < 0), in double. */
static void ref_ce(double *losses, const double *logits, const int32_t *tgt, int N, int V)
{
    for (int n = 0; n < N; n++) {
        const double *l = logits + (size_t)n * V;
        if (tgt[n] < 0) {
            losses[n] = 0;
            continue;
        }
        double m = l[0], s = 0;
        for (int j = 1; j < V; j++)
            m = fmax(m, l[j]);
        for (int j = 0; j < V; j++)
            s += exp(l[j] - m);
        losses[n] = m + log(s) - l[tgt[n]];
    }
}

struct ce_args {
    const double *logits;
    const int32_t *tgt;
    double *losses;
    int N, V;
    double dloss;
};

static double ce_loss(const void *p)
{
    const struct ce_args *a = p;
    ref_ce(a->losses, a->logits, a->tgt, a->N, a->V);
    double s = 0;
    for (int n = 0; n < a->N; n++)
        s += a->losses[n];
    return s * a->dloss;
}

static void check_ce(int N, int V, float lo, float hi, int fd)
{
    size_t nv = (size_t)N * V;
    float *logits = frand(70, nv, lo, hi);
    int32_t *tgt = irand(71, N, V);
    tgt[1] = -1; /* ignored */
    float dloss = 1.0f / (N - 1);
    double *ld = todbl(logits, nv), *loss = dnew(N), *dl = dnew(nv);
    ref_ce(loss, ld, tgt, N, V);
    /* dl = (softmax - onehot) dloss on kept rows, 0 on ignored ones */
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0)
            continue;
        double lse = loss[n] + ld[(size_t)n * V + tgt[n]];
        for (int j = 0; j < V; j++)
            dl[(size_t)n * V + j] = (exp(ld[(size_t)n * V + j] - lse) - (j == tgt[n])) * dloss;
    }
    if (fd) {
        struct ce_args a = {ld, tgt, dnew(N), N, V, dloss};
        double *g = dnew(nv);
        numgrad(ce_loss, &a, ld, nv, g);
        check_close_d("cross_entropy dlogits (analytic)", dl, g, nv);
        dl = g;
    }
    for (int r = 0; r < 2; r++) {
        float *ls[2], *g[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            ls[t] = fnew(N), g[t] = fnew(nv);
            assert_int_equal(
                b->ops->cross_entropy(b->ctx, ls[t], g[t], logits, tgt, N, V, dloss), 0);
            check_close("cross_entropy loss", ls[t], loss, N);
            check_close("cross_entropy dlogits", g[t], dl, nv);
            /* the ignored row: exactly 0 loss and 0 gradient */
            assert_true(ls[t][1] == 0.0f);
            for (int j = 0; j < V; j++)
                assert_true(g[t][(size_t)V + j] == 0.0f);
            /* dlogits aliasing logits, and dlogits NULL, give the same bits */
            float *al = fcopy(logits, nv), *ls2 = fnew(N), *ls3 = fnew(N);
            assert_int_equal(b->ops->cross_entropy(b->ctx, ls2, al, al, tgt, N, V, dloss), 0);
            check_bits("cross_entropy aliased dlogits", al, g[t], nv);
            check_bits("cross_entropy aliased loss", ls2, ls[t], N);
            assert_int_equal(b->ops->cross_entropy(b->ctx, ls3, NULL, logits, tgt, N, V, dloss),
                             0);
            check_bits("cross_entropy loss without dlogits", ls3, ls[t], N);
        }
        check_bits("cross_entropy loss", ls[0], ls[1], N);
        check_bits("cross_entropy dlogits", g[0], g[1], nv);
    }
    pool_free();
}

static void test_cross_entropy(void **state)
{
    (void)state;
    check_ce(SMALL.N, SMALL.V, -3, 3, 1);
    check_ce(257, 101, -3, 3, 0);
}

static void test_cross_entropy_large_logits(void **state)
{
    (void)state;
    int N = 3, V = 11;
    size_t nv = (size_t)N * V;
    /* row 0: all 1e4 (loss log V); rows 1, 2: spread over [-1e4, 1e4] */
    float *logits = frand(80, nv, -1e4f, 1e4f);
    for (int j = 0; j < V; j++)
        logits[j] = 1e4f;
    int32_t tgt[3] = {4, 7, 0};
    double *ld = todbl(logits, nv), *loss = dnew(N);
    ref_ce(loss, ld, tgt, N, V);
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        float *ls = fnew(N), *g = fnew(nv);
        assert_int_equal(b->ops->cross_entropy(b->ctx, ls, g, logits, tgt, N, V, 1.0f), 0);
        for (size_t i = 0; i < nv; i++)
            assert_true(isfinite(g[i]) && g[i] >= -1.0f && g[i] <= 1.0f);
        check_close("large-logit loss", ls, loss, N);
        assert_true(fabs(ls[0] - log(V)) < 1e-5);
        for (int j = 0; j < V; j++)
            assert_true(fabs(g[j] - (1.0 / V - (j == 4))) < 1e-6);
    }
    /* a target outside the vocabulary is refused */
    int32_t bad[3] = {0, 11, 0};
    float ls[3];
    assert_int_equal(be[0][0].ops->cross_entropy(be[0][0].ctx, ls, NULL, logits, bad, N, V, 1.0f),
                     LLM_EINVAL);
    pool_free();
}

/* ======================================================================== */
/* sumsq and AdamW                                                          */

static void test_sumsq(void **state)
{
    (void)state;
    size_t sizes[] = {1, 1001, 100003};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        float *x = frand(90, n, -2, 2);
        double want = 1.5;
        for (size_t i = 0; i < n; i++)
            want += (double)x[i] * x[i];
        double got[2][2];
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                struct llm_backend *b = &be[r][t];
                got[r][t] = 1.5; /* added to, not overwritten */
                assert_int_equal(b->ops->sumsq(b->ctx, &got[r][t], x, n), 0);
                assert_true(fabs(got[r][t] - want) <= 1e-12 * want);
            }
        /* the same block order whatever the threads or path: same bits */
        assert_memory_equal(&got[0][0], &got[0][1], sizeof(double));
        assert_memory_equal(&got[0][0], &got[1][0], sizeof(double));
        assert_memory_equal(&got[0][0], &got[1][1], sizeof(double));
        pool_free();
    }
}

/* One AdamW step in double, the formula of backend.h. */
static void ref_adamw(double *p, const double *g, double *m, double *v, size_t n, double lr,
                      double b1, double b2, double eps, double wd, int t, double gs)
{
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * gs;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
        p[i] -= lr * (mh / (sqrt(vh) + eps) + wd * p[i]);
    }
}

static void check_adamw(size_t n)
{
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p0 = frand(100, n, -1, 1);
    double *pd = todbl(p0, n), *md = dnew(n), *vd = dnew(n);
    float *p[2][2], *m[2][2], *v[2][2];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            p[r][t] = fcopy(p0, n), m[r][t] = fnew(n), v[r][t] = fnew(n);
    for (int step = 1; step <= 5; step++) {
        float *g = frand(200 + step, n, -1, 1);
        ref_adamw(pd, todbl(g, n), md, vd, n, lr, b1, b2, eps, wd, step, gs);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                struct llm_backend *b = &be[r][t];
                assert_int_equal(b->ops->adamw(b->ctx, p[r][t], g, m[r][t], v[r][t], n, lr, b1,
                                               b2, eps, wd, step, gs),
                                 0);
                check_close("adamw p", p[r][t], pd, n);
                check_close("adamw m", m[r][t], md, n);
                check_close("adamw v", v[r][t], vd, n);
            }
        for (int r = 0; r < 2; r++) {
            check_bits("adamw p", p[r][0], p[r][1], n);
            check_bits("adamw m", m[r][0], m[r][1], n);
            check_bits("adamw v", v[r][0], v[r][1], n);
        }
    }
    pool_free();
}

static void test_adamw(void **state)
{
    (void)state;
    check_adamw(1001);
    check_adamw(100003);

    /* Decoupled weight decay: with a zero gradient (and zero moments) the step
     * is exactly p *= 1 - lr wd. Coupled L2 decay would instead feed wd p
     * through the adaptive denominator and move each p by about lr. */
    size_t n = 101;
    float *p = frand(110, n, -1, 1), *p0 = fcopy(p, n), *g = fnew(n), *m = fnew(n), *v = fnew(n);
    struct llm_backend *b = &be[0][0];
    assert_int_equal(b->ops->adamw(b->ctx, p, g, m, v, n, 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f),
                     0);
    for (size_t i = 0; i < n; i++)
        assert_true(fabs(p[i] - p0[i] * (1 - 0.01 * 0.1)) <= 1e-7);
    assert_int_equal(b->ops->adamw(b->ctx, p, g, m, v, n, 0.01f, 0.9f, 0.95f, 1e-8f, 0.1f, 0, 1.0f),
                     LLM_EINVAL);
    pool_free();
}

/* ======================================================================== */
/* Argument checks                                                          */

static void test_bad_dims(void **state)
{
    (void)state;
    float buf[64] = {0}, w[64] = {0};
    for (int r = 0; r < 2; r++) {
        struct llm_backend *b = &be[r][0];
        void *c = b->ctx;
        assert_int_equal(b->ops->matmul_forward(c, buf, buf, w, NULL, 2, 0, 2), LLM_EINVAL);
        assert_int_equal(b->ops->matmul_forward(c, buf, buf, w, NULL, 2, 2, -1), LLM_EINVAL);
        assert_int_equal(b->ops->matmul_backward(c, buf, w, NULL, buf, buf, w, -1, 2, 2),
                         LLM_EINVAL);
        assert_int_equal(b->ops->layernorm_forward(c, buf, buf, buf, buf, w, NULL, 2, 0, 1e-5f),
                         LLM_EINVAL);
        assert_int_equal(b->ops->rmsnorm_forward(c, buf, buf, buf, w, -3, 4, 1e-5f), LLM_EINVAL);
        assert_int_equal(b->ops->cross_entropy(c, buf, NULL, buf, (int32_t *)w, 1, 0, 1.0f),
                         LLM_EINVAL);
        assert_int_equal(b->ops->add_positions(c, buf, w, NULL, 1, 2, 3, -1), LLM_EINVAL);
        /* zero rows: nothing to do, not an error */
        assert_int_equal(b->ops->matmul_forward(c, buf, buf, w, NULL, 0, 4, 4), 0);
        assert_int_equal(b->ops->layernorm_forward(c, buf, buf, buf, buf, w, NULL, 0, 4, 1e-5f), 0);
        assert_int_equal(b->ops->embedding_forward(c, buf, NULL, w, 0, 4, 4), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_bad_token),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_large_logits),
        cmocka_unit_test(test_sumsq),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_bad_dims),
    };
    return cmocka_run_group_tests_name("nn_ops", tests, setup, teardown);
}
