/* test_nn_attention.c: the CPU backend's softmax attention, linear attention
 * and rotary embeddings against plain double-precision references, finite
 * differences, causality and thread-count determinism. */
#include "testutil.h"

#include <math.h>
#include "core/err.h"
#include "core/rng.h"
#include "nn/backend.h"

/* Tolerances, |got - want| <= ABS + REL |want|, want computed in double.
 * Forward: float32 rounds each operation at 6e-8 relative; an output is an
 * 8-term dot product, a softmax over <= 13 keys and a 13-term weighted sum of
 * values in [-1, 1], so its error is a few 1e-7 (measured: <= 3e-7). 1e-5 +
 * 1e-4 |want| leaves a 30x margin yet any real bug (a wrong mask, head
 * mapping or normalization) moves outputs by 1e-2 or more. */
#define FWD_ABS 1e-5
#define FWD_REL 1e-4
/* Backward vs central differences in double: the finite differences
 * themselves are exact to ~1e-9 (step 1e-4: truncation h^2 f'''/6 ~ 1e-9,
 * cancellation 1e-16 |L| / h ~ 1e-11). A dk or dv entry sums up to
 * T * G = 78 float products of recomputed probabilities, each off by a few
 * ulps, so its error grows to ~1e-6 for terms of order 1 (measured: <= 6e-7
 * over every case here); 2e-5 + 2e-4 |want| keeps a 30x margin for other
 * compilers and flags (FMA contraction) while a dropped term (the D of the
 * softmax backward, phi', a scale) fails by 1e-2 or more. */
#define BWD_ABS 2e-5
#define BWD_REL 2e-4
/* RoPE is 2 products and a sum per channel with cos/sin rounded once from
 * double: error <= ~3 ulps of |x| <= 1, so 1e-6 absolute. */
#define ROPE_ABS 1e-6

#define FD_STEP 1e-4

struct shape {
    int B, T, NH, NKV, HS, window;
    double scale;
    const int32_t *pos; /* (B, T) packed positions, or NULL */
};

static size_t n_q(const struct shape *s) { return (size_t)s->B * s->T * s->NH * s->HS; }
static size_t n_kv(const struct shape *s) { return (size_t)s->B * s->T * s->NKV * s->HS; }
static size_t n_lse(const struct shape *s) { return (size_t)s->B * s->NH * s->T; }

static struct shape test_shape(int NKV, int window)
{
    struct shape s = {2, 13, 6, NKV, 8, window, 1.0 / sqrt(8.0), NULL};
    return s;
}

static void fill_uniform(float *x, size_t n, struct llm_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * llm_rng_float(r);
}

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(n * sizeof(double));
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static float *falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static float *fdup(const float *x, size_t n)
{
    float *p = falloc(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

static void assert_close(const char *what, const float *got, const double *want, size_t n,
                         double abs_tol, double rel_tol)
{
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= abs_tol + rel_tol * fabs(want[i]))) {
            print_error("%s[%zu]: got %.9g, want %.9g (|diff| %.3g)\n", what, i, (double)got[i],
                        want[i], e);
            fail();
        }
    }
}

static void open_backend(struct llm_backend *be, int threads, int ref)
{
    assert_int_equal(llm_backend_cpu_init(be, threads, ref), 0);
}

/* ---- double-precision references ---- */

/* Key u is visible to query t of row b: causal, within the window, and in
 * the same example when packed (u >= the example's start t - pos[b,t]). */
static int visible(const struct shape *s, int b, int u, int t)
{
    int start = s->pos ? t - s->pos[(size_t)b * s->T + t] : 0;
    return u <= t && u >= start && (s->window <= 0 || u > t - s->window);
}

/* Softmax attention of batch b, query heads h0..h1-1: the full T x T masked
 * score matrix P per head, softmax per row, out = P v. P: T*T doubles. */
static void ref_attention(double *out, double *lse, const double *q, const double *k,
                          const double *v, const struct shape *s, int b, int h0, int h1,
                          double *P)
{
    int T = s->T, HS = s->HS, G = s->NH / s->NKV;
    for (int h = h0; h < h1; h++) {
        int g = h / G;
        for (int t = 0; t < T; t++)
            for (int u = 0; u < T; u++) {
                double x = -INFINITY;
                if (visible(s, b, u, t)) {
                    x = 0;
                    for (int i = 0; i < HS; i++)
                        x += q[(((size_t)b * T + t) * s->NH + h) * HS + i] *
                             k[(((size_t)b * T + u) * s->NKV + g) * HS + i];
                    x *= s->scale;
                }
                P[t * T + u] = x;
            }
        for (int t = 0; t < T; t++) {
            double m = -INFINITY, l = 0;
            for (int u = 0; u < T; u++)
                m = fmax(m, P[t * T + u]);
            for (int u = 0; u < T; u++)
                l += exp(P[t * T + u] - m);
            for (int u = 0; u < T; u++)
                P[t * T + u] = exp(P[t * T + u] - m) / l;
            lse[((size_t)b * s->NH + h) * T + t] = m + log(l);
            for (int i = 0; i < HS; i++) {
                double o = 0;
                for (int u = 0; u < T; u++)
                    o += P[t * T + u] * v[(((size_t)b * T + u) * s->NKV + g) * HS + i];
                out[(((size_t)b * T + t) * s->NH + h) * HS + i] = o;
            }
        }
    }
}

static double phi_d(double x) { return x > 0 ? x + 1 : exp(x); }

/* Linear attention of batch b, query heads h0..h1-1, in its quadratic form:
 * out_t = sum_{u<=t} a_tu v_u / sum_{u<=t} a_tu with a_tu = phi(q_t) . phi(k_u). */
static void ref_linear(double *out, double *lse, const double *q, const double *k, const double *v,
                       const struct shape *s, int b, int h0, int h1, double *work)
{
    (void)lse, (void)work;
    int T = s->T, HS = s->HS, G = s->NH / s->NKV;
    for (int h = h0; h < h1; h++)
        for (int t = 0; t < T; t++) {
            double den = 0, num[64] = {0};
            assert_true(HS <= 64);
            for (int u = 0; u <= t; u++) {
                double a = 0;
                for (int i = 0; i < HS; i++)
                    a += phi_d(q[(((size_t)b * T + t) * s->NH + h) * HS + i]) *
                         phi_d(k[(((size_t)b * T + u) * s->NKV + h / G) * HS + i]);
                den += a;
                for (int j = 0; j < HS; j++)
                    num[j] += a * v[(((size_t)b * T + u) * s->NKV + h / G) * HS + j];
            }
            for (int j = 0; j < HS; j++)
                out[(((size_t)b * T + t) * s->NH + h) * HS + j] = num[j] / den;
        }
}

typedef void (*ref_fn)(double *out, double *lse, const double *q, const double *k,
                       const double *v, const struct shape *s, int b, int h0, int h1,
                       double *work);

/* The part of L = sum(out * R) from batch b, heads h0..h1-1, by the reference. */
static double ref_loss(ref_fn f, const struct shape *s, const double *q, const double *k,
                       const double *v, const double *R, int b, int h0, int h1, double *out,
                       double *lse, double *work)
{
    f(out, lse, q, k, v, s, b, h0, h1, work);
    double L = 0;
    for (int t = 0; t < s->T; t++)
        for (size_t i = (((size_t)b * s->T + t) * s->NH + h0) * s->HS;
             i < (((size_t)b * s->T + t) * s->NH + h1) * s->HS; i++)
            L += out[i] * R[i];
    return L;
}

/* Central differences of L = sum(out * R) for every element of x, one of q
 * (H = NH heads, span 1) or k, v (H = NKV, span G). An element of batch b and
 * head hr only moves the outputs of batch b, query heads hr*span ..
 * (hr+1)*span - 1, so only those are recomputed. */
static void fd_grad(double *grad, double *x, int H, int span, ref_fn f, const struct shape *s,
                    double *q, double *k, double *v, const double *R)
{
    double *out = calloc(n_q(s), sizeof(double)), *lse = calloc(n_lse(s), sizeof(double));
    double *work = calloc((size_t)s->T * s->T, sizeof(double));
    assert_true(out && lse && work);
    size_t n = (size_t)s->B * s->T * H * s->HS;
    for (size_t i = 0; i < n; i++) {
        int b = (int)(i / ((size_t)s->T * H * s->HS)), hr = (int)(i / s->HS % H);
        int h0 = hr * span, h1 = h0 + span;
        double x0 = x[i];
        x[i] = x0 + FD_STEP;
        double lp = ref_loss(f, s, q, k, v, R, b, h0, h1, out, lse, work);
        x[i] = x0 - FD_STEP;
        double lm = ref_loss(f, s, q, k, v, R, b, h0, h1, out, lse, work);
        x[i] = x0;
        grad[i] = (lp - lm) / (2 * FD_STEP);
    }
    free(out), free(lse), free(work);
}

/* ---- inputs and backend calls ---- */

struct inputs {
    struct shape s;
    float *q, *k, *v, *dout; /* dout plays R of the finite differences */
};

static struct inputs make_inputs(struct shape s, uint64_t seed)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    struct inputs in = {s, falloc(n_q(&s)), falloc(n_kv(&s)), falloc(n_kv(&s)), falloc(n_q(&s))};
    fill_uniform(in.q, n_q(&s), &r, -1, 1);
    fill_uniform(in.k, n_kv(&s), &r, -1, 1);
    fill_uniform(in.v, n_kv(&s), &r, -1, 1);
    fill_uniform(in.dout, n_q(&s), &r, -1, 1);
    return in;
}

static void free_inputs(struct inputs *in)
{
    free(in->q), free(in->k), free(in->v), free(in->dout);
}

enum kind { SOFTMAX, LINEAR };

/* Outputs of one backend run: forward, then backward of dout. */
struct result {
    float *out, *lse, *dq, *dk, *dv;
};

static struct result run_backend(const struct inputs *in, enum kind kind, int threads, int ref)
{
    const struct shape *s = &in->s;
    struct llm_backend be;
    open_backend(&be, threads, ref);
    struct result r = {falloc(n_q(s)), falloc(n_lse(s)), falloc(n_q(s)), falloc(n_kv(s)),
                       falloc(n_kv(s))};
    /* dq, dk, dv are written (=): start them as garbage to prove it */
    for (size_t i = 0; i < n_q(s); i++)
        r.dq[i] = NAN;
    for (size_t i = 0; i < n_kv(s); i++)
        r.dk[i] = r.dv[i] = 1e30f;
    if (kind == SOFTMAX) {
        assert_int_equal(be.ops->attention_forward(be.ctx, r.out, r.lse, in->q, in->k, in->v,
                                                   s->pos, s->B, s->T, s->NH, s->NKV, s->HS,
                                                   s->window, (float)s->scale),
                         0);
        assert_int_equal(be.ops->attention_backward(be.ctx, r.dq, r.dk, r.dv, in->dout, in->q,
                                                    in->k, in->v, r.out, r.lse, s->pos, s->B, s->T,
                                                    s->NH, s->NKV, s->HS, s->window,
                                                    (float)s->scale),
                         0);
    } else {
        assert_int_equal(be.ops->linear_attention_forward(be.ctx, r.out, in->q, in->k, in->v, s->B,
                                                          s->T, s->NH, s->NKV, s->HS),
                         0);
        assert_int_equal(be.ops->linear_attention_backward(be.ctx, r.dq, r.dk, r.dv, in->dout,
                                                           in->q, in->k, in->v, s->B, s->T, s->NH,
                                                           s->NKV, s->HS),
                         0);
    }
    llm_backend_release(&be);
    return r;
}

static void free_result(struct result *r)
{
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

static void assert_results_identical(const struct result *a, const struct result *b,
                                     const struct shape *s, enum kind kind)
{
    assert_memory_equal(a->out, b->out, n_q(s) * sizeof(float));
    if (kind == SOFTMAX)
        assert_memory_equal(a->lse, b->lse, n_lse(s) * sizeof(float));
    assert_memory_equal(a->dq, b->dq, n_q(s) * sizeof(float));
    assert_memory_equal(a->dk, b->dk, n_kv(s) * sizeof(float));
    assert_memory_equal(a->dv, b->dv, n_kv(s) * sizeof(float));
}

/* For one shape and kind: the forward against the double reference, the
 * backward against finite differences of it, for ref = 0 and 1, and 2
 * threads bit-identical to 1. */
static void check_case(enum kind kind, struct shape s, uint64_t seed)
{
    struct inputs in = make_inputs(s, seed);
    ref_fn f = kind == SOFTMAX ? ref_attention : ref_linear;
    double *q = to_double(in.q, n_q(&s)), *k = to_double(in.k, n_kv(&s));
    double *v = to_double(in.v, n_kv(&s)), *R = to_double(in.dout, n_q(&s));
    double *out = calloc(n_q(&s), sizeof(double)), *lse = calloc(n_lse(&s), sizeof(double));
    double *work = calloc((size_t)s.T * s.T, sizeof(double));
    double *gq = malloc(n_q(&s) * sizeof(double)), *gk = malloc(n_kv(&s) * sizeof(double));
    double *gv = malloc(n_kv(&s) * sizeof(double));
    assert_true(out && lse && work && gq && gk && gv);
    for (int b = 0; b < s.B; b++)
        f(out, lse, q, k, v, &s, b, 0, s.NH, work);
    fd_grad(gq, q, s.NH, 1, f, &s, q, k, v, R);
    fd_grad(gk, k, s.NKV, s.NH / s.NKV, f, &s, q, k, v, R);
    fd_grad(gv, v, s.NKV, s.NH / s.NKV, f, &s, q, k, v, R);
    for (int ref = 0; ref <= 1; ref++) {
        struct result r1 = run_backend(&in, kind, 1, ref);
        assert_close("out", r1.out, out, n_q(&s), FWD_ABS, FWD_REL);
        if (kind == SOFTMAX)
            assert_close("lse", r1.lse, lse, n_lse(&s), FWD_ABS, FWD_REL);
        assert_close("dq", r1.dq, gq, n_q(&s), BWD_ABS, BWD_REL);
        assert_close("dk", r1.dk, gk, n_kv(&s), BWD_ABS, BWD_REL);
        assert_close("dv", r1.dv, gv, n_kv(&s), BWD_ABS, BWD_REL);
        struct result r2 = run_backend(&in, kind, 2, ref);
        assert_results_identical(&r1, &r2, &s, kind);
        free_result(&r1), free_result(&r2);
    }
    free(q), free(k), free(v), free(R), free(out), free(lse), free(work);
    free(gq), free(gk), free(gv);
    free_inputs(&in);
}

/* ---- softmax attention ---- */

static void test_attention_reference_and_gradients(void **state)
{
    (void)state;
    static const int nkv[] = {6, 2, 1}, windows[] = {0, 5};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            check_case(SOFTMAX, test_shape(nkv[i], windows[j]), 100 + 10 * i + j);
}

/* Longer rows than the default path's tiles (16 queries x 32 keys): several
 * key tiles per row (the online softmax rescales), T not a multiple of 4 (a
 * part tile), and window 19 with T = 50, where the query tile 32..47 spans
 * key tiles 14..45 and 46..47, the second unseen by rows 44 and 45 of the
 * 4-row block 44..47 (a row with no visible key in a processed tile).
 * Forward and backward vs the references, on few heads to stay fast. */
static void test_attention_tiles(void **state)
{
    (void)state;
    struct shape s = {1, 50, 2, 1, 5, 0, 0.3, NULL};
    check_case(SOFTMAX, s, 7);
    s.window = 19;
    check_case(SOFTMAX, s, 8);
}

/* Rows longer than the optimized path's tiles (64 queries x 256 keys, sgemm
 * on each): several query and key tiles, a part tile at the end, GQA, with
 * and without a window that cuts through a key tile. Finite differences at
 * this size are too slow, so the optimized path is checked against the plain
 * reference path (itself checked against the double reference above), and 2
 * threads against 1 bit for bit. */
static void test_attention_long_rows(void **state)
{
    (void)state;
    static const int windows[] = {0, 200};
    for (int w = 0; w < 2; w++) {
        struct shape s = {1, 600, 4, 2, 16, windows[w], 0.25, NULL};
        struct inputs in = make_inputs(s, 40 + (uint64_t)w);
        struct result ref = run_backend(&in, SOFTMAX, 1, 1);
        struct result r1 = run_backend(&in, SOFTMAX, 1, 0), r2 = run_backend(&in, SOFTMAX, 2, 0);
        double *d[5];
        const float *rf[5] = {ref.out, ref.lse, ref.dq, ref.dk, ref.dv};
        size_t n[5] = {n_q(&s), n_lse(&s), n_q(&s), n_kv(&s), n_kv(&s)};
        const float *got[5] = {r1.out, r1.lse, r1.dq, r1.dk, r1.dv};
        static const char *const names[5] = {"out", "lse", "dq", "dk", "dv"};
        for (int i = 0; i < 5; i++) {
            d[i] = to_double(rf[i], n[i]);
            assert_close(names[i], got[i], d[i], n[i], 1e-5, 1e-4);
            free(d[i]);
        }
        assert_results_identical(&r1, &r2, &s, SOFTMAX);
        free_result(&ref), free_result(&r1), free_result(&r2);
        free_inputs(&in);
    }
}

/* ---- packed sequences ---- */

/* Two rows of 13 tokens: row 0 packs examples of 5, 1 and 7 tokens, row 1 of
 * 8 and 5 (pos restarts at 0 where an example starts). */
static const int32_t packed13[2 * 13] = {0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 4, 5, 6,
                                         0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4};

/* Packed rows against the double reference, whose mask keeps each query in
 * its example, and finite differences of it; both paths, 2 threads = 1. */
static void test_attention_packed(void **state)
{
    (void)state;
    static const int nkv[] = {6, 2}, windows[] = {0, 3};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            struct shape s = test_shape(nkv[i], windows[j]);
            s.pos = packed13;
            check_case(SOFTMAX, s, 300 + 10 * (uint64_t)i + (uint64_t)j);
        }
}

/* Rows n0 .. n0+n-1 of row b of x (B, T, H, HS) into y (1, n, H, HS). */
static float *slice_rows(const float *x, const struct shape *s, int H, int b, int n0, int n)
{
    size_t row = (size_t)H * s->HS;
    return fdup(x + ((size_t)b * s->T + n0) * row, (size_t)n * row);
}

static void assert_rows_close(const char *what, const float *packed, const float *alone,
                              const struct shape *s, int H, int b, int n0, int n)
{
    size_t row = (size_t)H * s->HS;
    double *want = to_double(alone, (size_t)n * row);
    assert_close(what, packed + ((size_t)b * s->T + n0) * row, want, (size_t)n * row, 1e-5, 1e-4);
    free(want);
}

/* Long packed rows on the default path (several 64 x 256 tiles; examples
 * that start and end inside tiles): every example's outputs and gradients
 * equal those of running it alone, as one sequence; the packed default path
 * also matches the packed reference path, and 2 threads match 1 bit for bit. */
static void test_attention_packed_alone(void **state)
{
    (void)state;
    enum { T = 600, NSEG = 6 };
    static const int seg_b[NSEG] = {0, 0, 0, 0, 1, 1};
    static const int seg_len[NSEG] = {150, 300, 100, 50, 37, 563};
    static const int windows[] = {0, 70};
    int32_t *pos = malloc(2 * T * sizeof(int32_t));
    int seg_t0[NSEG]; /* where each example starts in its row */
    assert_non_null(pos);
    for (int i = 0, n0 = 0; i < NSEG; i++) {
        if (i > 0 && seg_b[i] != seg_b[i - 1])
            n0 = 0;
        seg_t0[i] = n0;
        for (int t = 0; t < seg_len[i]; t++)
            pos[seg_b[i] * T + n0 + t] = t;
        n0 += seg_len[i];
    }
    for (int w = 0; w < 2; w++) {
        struct shape s = {2, T, 4, 2, 16, windows[w], 0.25, pos};
        struct inputs in = make_inputs(s, 60 + (uint64_t)w);
        struct result r1 = run_backend(&in, SOFTMAX, 1, 0), r2 = run_backend(&in, SOFTMAX, 2, 0);
        struct result ref = run_backend(&in, SOFTMAX, 1, 1);
        assert_results_identical(&r1, &r2, &s, SOFTMAX);
        double *d = to_double(ref.dk, n_kv(&s));
        assert_close("packed dk vs reference path", r1.dk, d, n_kv(&s), 1e-5, 1e-4);
        free(d);
        for (int i = 0; i < NSEG; i++) {
            int b = seg_b[i], n = seg_len[i], n0 = seg_t0[i];
            struct shape a = {1, n, s.NH, s.NKV, s.HS, s.window, s.scale, NULL};
            struct inputs one = {a, slice_rows(in.q, &s, s.NH, b, n0, n),
                                 slice_rows(in.k, &s, s.NKV, b, n0, n),
                                 slice_rows(in.v, &s, s.NKV, b, n0, n),
                                 slice_rows(in.dout, &s, s.NH, b, n0, n)};
            struct result alone = run_backend(&one, SOFTMAX, 1, 0);
            assert_rows_close("packed out", r1.out, alone.out, &s, s.NH, b, n0, n);
            assert_rows_close("packed dq", r1.dq, alone.dq, &s, s.NH, b, n0, n);
            assert_rows_close("packed dk", r1.dk, alone.dk, &s, s.NKV, b, n0, n);
            assert_rows_close("packed dv", r1.dv, alone.dv, &s, s.NKV, b, n0, n);
            for (int h = 0; h < s.NH; h++) /* lse (B, NH, T) */
                for (int t = 0; t < n; t++)
                    assert_true(fabsf(r1.lse[((size_t)b * s.NH + h) * T + n0 + t] -
                                      alone.lse[(size_t)h * n + t]) <= 1e-5f);
            free_result(&alone);
            free_inputs(&one);
        }
        free_result(&r1), free_result(&r2), free_result(&ref);
        free_inputs(&in);
    }
    free(pos);
}

/* Scores of several hundred: a softmax without max subtraction overflows. */
static void test_attention_large_scores(void **state)
{
    (void)state;
    struct shape s = test_shape(2, 0);
    s.scale = 40.0;
    struct inputs in = make_inputs(s, 3);
    double *q = to_double(in.q, n_q(&s)), *k = to_double(in.k, n_kv(&s));
    double *v = to_double(in.v, n_kv(&s));
    double *out = calloc(n_q(&s), sizeof(double)), *lse = calloc(n_lse(&s), sizeof(double));
    double *work = calloc((size_t)s.T * s.T, sizeof(double));
    assert_true(out && lse && work);
    for (int b = 0; b < s.B; b++)
        ref_attention(out, lse, q, k, v, &s, b, 0, s.NH, work);
    for (int ref = 0; ref <= 1; ref++) {
        struct result r = run_backend(&in, SOFTMAX, 2, ref);
        /* scores of ~100 carry float rounding ~1e-5 (their ulp is 8e-6), which
         * moves probabilities by ~1e-5 relative: measured out error 5e-6, lse
         * 1.5e-5 at |lse| ~ 100, both within the forward tolerance */
        assert_close("out", r.out, out, n_q(&s), FWD_ABS, FWD_REL);
        assert_close("lse", r.lse, lse, n_lse(&s), FWD_ABS, FWD_REL);
        for (size_t i = 0; i < n_q(&s); i++)
            assert_true(isfinite(r.dq[i]));
        for (size_t i = 0; i < n_kv(&s); i++)
            assert_true(isfinite(r.dk[i]) && isfinite(r.dv[i]));
        free_result(&r);
    }
    free(q), free(k), free(v), free(out), free(lse), free(work);
    free_inputs(&in);
}

/* window = 1 copies v; window >= T is full attention, bit for bit. */
static void test_attention_window_edges(void **state)
{
    (void)state;
    for (int ref = 0; ref <= 1; ref++) {
        struct shape s = test_shape(2, 1);
        struct inputs in = make_inputs(s, 11);
        struct result r = run_backend(&in, SOFTMAX, 2, ref);
        int G = s.NH / s.NKV;
        for (int b = 0; b < s.B; b++)
            for (int t = 0; t < s.T; t++)
                for (int h = 0; h < s.NH; h++)
                    assert_memory_equal(r.out + (((size_t)b * s.T + t) * s.NH + h) * s.HS,
                                        in.v + (((size_t)b * s.T + t) * s.NKV + h / G) * s.HS,
                                        s.HS * sizeof(float));
        free_result(&r);
        in.s.window = 0;
        struct result full = run_backend(&in, SOFTMAX, 1, ref);
        in.s.window = s.T;
        struct result wide = run_backend(&in, SOFTMAX, 1, ref);
        assert_results_identical(&full, &wide, &s, SOFTMAX);
        free_result(&full), free_result(&wide);
        free_inputs(&in);
    }
}

static int rows_equal(const float *a, const float *b, const struct shape *s, int bi, int t)
{
    size_t row = (size_t)s->NH * s->HS, off = ((size_t)bi * s->T + t) * row;
    return memcmp(a + off, b + off, row * sizeof(float)) == 0;
}

static void forward_only(const struct inputs *in, enum kind kind, int ref, float *out, float *lse)
{
    const struct shape *s = &in->s;
    struct llm_backend be;
    open_backend(&be, 2, ref);
    if (kind == SOFTMAX)
        assert_int_equal(be.ops->attention_forward(be.ctx, out, lse, in->q, in->k, in->v, s->pos,
                                                   s->B, s->T, s->NH, s->NKV, s->HS, s->window,
                                                   (float)s->scale),
                         0);
    else
        assert_int_equal(be.ops->linear_attention_forward(be.ctx, out, in->q, in->k, in->v, s->B,
                                                          s->T, s->NH, s->NKV, s->HS),
                         0);
    llm_backend_release(&be);
}

/* Adds 0.5 to row t of batch 0 of x (rows of H heads x HS). */
static void bump_row(float *x, const struct shape *s, int H, int t)
{
    size_t row = (size_t)H * s->HS;
    for (size_t i = 0; i < row; i++)
        x[(size_t)t * row + i] += 0.5f;
}

/* Changing q, k, v at position p leaves every output before p as it was (bit
 * for bit) and changes the output at p; batch 1 never moves. With a sliding
 * window, changing k, v at p also leaves outputs from p + window on as they
 * were, and changes those in p .. p + window - 1. */
static void check_causality(enum kind kind, int window)
{
    struct shape s = test_shape(2, window);
    for (int ref = 0; ref <= 1; ref++) {
        struct inputs in = make_inputs(s, 21);
        float *base = falloc(n_q(&s)), *out = falloc(n_q(&s)), *lse = falloc(n_lse(&s));
        forward_only(&in, kind, ref, base, lse);
        for (int p = 0; p < s.T; p++) {
            struct inputs x = {s, fdup(in.q, n_q(&s)), fdup(in.k, n_kv(&s)),
                               fdup(in.v, n_kv(&s)), fdup(in.dout, n_q(&s))};
            bump_row(x.q, &s, s.NH, p);
            bump_row(x.k, &s, s.NKV, p);
            bump_row(x.v, &s, s.NKV, p);
            forward_only(&x, kind, ref, out, lse);
            for (int t = 0; t < s.T; t++) {
                assert_true(rows_equal(base, out, &s, 1, t));
                if (t < p)
                    assert_true(rows_equal(base, out, &s, 0, t));
                if (t == p)
                    assert_false(rows_equal(base, out, &s, 0, t));
            }
            if (window > 0) {
                memcpy(x.q, in.q, n_q(&s) * sizeof(float)); /* keys and values only */
                forward_only(&x, kind, ref, out, lse);
                for (int t = 0; t < s.T; t++) {
                    if (t < p || t >= p + window)
                        assert_true(rows_equal(base, out, &s, 0, t));
                    else
                        assert_false(rows_equal(base, out, &s, 0, t));
                }
            }
            free_inputs(&x);
        }
        free(base), free(out), free(lse);
        free_inputs(&in);
    }
}

static void test_attention_causality(void **state)
{
    (void)state;
    check_causality(SOFTMAX, 0);
}

static void test_attention_sliding_window(void **state)
{
    (void)state;
    check_causality(SOFTMAX, 5);
}

/* ---- linear attention ---- */

static void test_linear_reference_and_gradients(void **state)
{
    (void)state;
    static const int nkv[] = {6, 2, 1};
    for (int i = 0; i < 3; i++)
        check_case(LINEAR, test_shape(nkv[i], 0), 200 + i);
}

static void test_linear_causality(void **state)
{
    (void)state;
    check_causality(LINEAR, 0);
}

/* ---- rotary embeddings ---- */

/* In double: pairs (i, i + n), n = rot / 2, angle (pos0 + t) theta^(-2i/rot). */
static void ref_rope(double *x, int B, int T, int H, int HS, int rot, double theta, int pos0,
                     double sign)
{
    int n = rot / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                double *xr = x + (((size_t)b * T + t) * H + h) * HS;
                for (int i = 0; i < n; i++) {
                    double a = sign * (pos0 + t) * pow(theta, -2.0 * i / rot);
                    double x0 = xr[i], x1 = xr[i + n];
                    xr[i] = x0 * cos(a) - x1 * sin(a);
                    xr[i + n] = x1 * cos(a) + x0 * sin(a);
                }
            }
}

enum { RB = 2, RT = 13, RH = 3, RHS = 8 };
#define RN ((size_t)RB * RT * RH * RHS)

static float *rope_input(uint64_t seed, size_t n)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    float *x = falloc(n);
    fill_uniform(x, n, &r, -1, 1);
    return x;
}

/* Against the double reference, for full and partial rotation, several pos0
 * and theta, ref 0/1 and 1/2 threads (bit-identical); channels past
 * rot_dims untouched. */
static void test_rope_reference(void **state)
{
    (void)state;
    static const int rots[] = {RHS, 4, 2}, pos0s[] = {0, 7, 40961};
    static const float thetas[] = {10000.0f, 500000.0f};
    float *x = rope_input(31, RN);
    for (int ri = 0; ri < 3; ri++)
        for (int pi = 0; pi < 3; pi++)
            for (int ti = 0; ti < 2; ti++) {
                double *want = to_double(x, RN);
                ref_rope(want, RB, RT, RH, RHS, rots[ri], thetas[ti], pos0s[pi], 1.0);
                float *first = NULL;
                for (int ref = 0; ref <= 1; ref++)
                    for (int threads = 1; threads <= 2; threads++) {
                        struct llm_backend be;
                        open_backend(&be, threads, ref);
                        float *y = fdup(x, RN);
                        assert_int_equal(be.ops->rope_forward(be.ctx, y, NULL, RB, RT, RH, RHS,
                                                              rots[ri], thetas[ti], pos0s[pi]),
                                         0);
                        llm_backend_release(&be);
                        assert_close("rope", y, want, RN, ROPE_ABS, 0);
                        for (size_t r = 0; r < RN / RHS; r++)
                            assert_memory_equal(y + r * RHS + rots[ri], x + r * RHS + rots[ri],
                                                (RHS - rots[ri]) * sizeof(float));
                        if (!first)
                            first = y;
                        else {
                            assert_memory_equal(first, y, RN * sizeof(float));
                            free(y);
                        }
                    }
                free(first);
                free(want);
            }
    free(x);
}

/* Packed positions: each token turns by its own position, bit for bit as
 * that token alone at pos0 = its position (forward and backward). */
static void test_rope_packed(void **state)
{
    (void)state;
    float *x = rope_input(36, RN);
    size_t row = (size_t)RH * RHS;
    for (int dir = 0; dir < 2; dir++)
        for (int ref = 0; ref <= 1; ref++) {
            struct llm_backend be;
            open_backend(&be, 2, ref);
            float *y = fdup(x, RN);
            int rc = dir ? be.ops->rope_backward(be.ctx, y, packed13, RB, RT, RH, RHS, 6, 500.0f, 3)
                         : be.ops->rope_forward(be.ctx, y, packed13, RB, RT, RH, RHS, 6, 500.0f, 3);
            assert_int_equal(rc, 0);
            for (int r = 0; r < RB * RT; r++) {
                float *one = fdup(x + r * row, row);
                int p = 3 + packed13[r];
                rc = dir ? be.ops->rope_backward(be.ctx, one, NULL, 1, 1, RH, RHS, 6, 500.0f, p)
                         : be.ops->rope_forward(be.ctx, one, NULL, 1, 1, RH, RHS, 6, 500.0f, p);
                assert_int_equal(rc, 0);
                assert_memory_equal(one, y + r * row, row * sizeof(float));
                free(one);
            }
            llm_backend_release(&be);
            free(y);
        }
    free(x);
}

/* Forward then backward (the rotation by -angle) gives the input back. */
static void test_rope_inverse(void **state)
{
    (void)state;
    float *x = rope_input(32, RN);
    double *want = to_double(x, RN);
    float *y = fdup(x, RN);
    struct llm_backend be;
    open_backend(&be, 2, 0);
    assert_int_equal(be.ops->rope_forward(be.ctx, y, NULL, RB, RT, RH, RHS, 6, 10000.0f, 123), 0);
    assert_int_equal(be.ops->rope_backward(be.ctx, y, NULL, RB, RT, RH, RHS, 6, 10000.0f, 123), 0);
    llm_backend_release(&be);
    assert_close("rope^-1 rope x", y, want, RN, ROPE_ABS, 0);
    free(x), free(y), free(want);
}

/* Rotating positions P .. P+T-1 of a sequence with pos0 = 0 equals rotating
 * that slice alone with pos0 = P, bit for bit (what a kv cache relies on). */
static void test_rope_offset(void **state)
{
    (void)state;
    enum { P = 9, L = RT + P };
    size_t row = (size_t)RH * RHS;
    float *xl = rope_input(33, (size_t)RB * L * row), *xs = falloc(RN);
    for (int b = 0; b < RB; b++)
        memcpy(xs + (size_t)b * RT * row, xl + ((size_t)b * L + P) * row, RT * row * sizeof(float));
    struct llm_backend be;
    open_backend(&be, 2, 0);
    assert_int_equal(be.ops->rope_forward(be.ctx, xl, NULL, RB, L, RH, RHS, RHS, 10000.0f, 0), 0);
    assert_int_equal(be.ops->rope_forward(be.ctx, xs, NULL, RB, RT, RH, RHS, RHS, 10000.0f, P), 0);
    llm_backend_release(&be);
    for (int b = 0; b < RB; b++)
        assert_memory_equal(xs + (size_t)b * RT * row, xl + ((size_t)b * L + P) * row,
                            RT * row * sizeof(float));
    free(xl), free(xs);
}

/* The optimized path keeps tables of cosines and sines between calls (the
 * last two (theta, rot_dims) pairs, grown as positions come). One backend
 * decoding position by position under three interleaved (theta, rot_dims)
 * pairs (so tables are evicted and rebuilt), forward and backward, packed
 * positions, and positions past the kept tables' limit: every call bit for
 * bit the reference path's, which computes its own per call. */
static void test_rope_kept_tables(void **state)
{
    (void)state;
    static const struct { float theta; int rot; } pairs[] = {{10000.0f, RHS}, {500000.0f, 4}, {1e6f, RHS}};
    size_t row = (size_t)RH * RHS;
    float *x = rope_input(37, RN);
    struct llm_backend be, ref;
    open_backend(&be, 2, 0);
    open_backend(&ref, 1, 1);
    for (int p = 0; p < 300; p++)
        for (int k = 0; k < 3; k++) {
            int pp = k == 2 ? 299 - p : p; /* one pair walks down its table */
            for (int dir = 0; dir < 2; dir++) {
                float *a = fdup(x + (size_t)(pp % RT) * row, row), *b = fdup(a, row);
                int (*f)(void *, float *, const int32_t *, int, int, int, int, int, float, int) =
                    dir ? be.ops->rope_backward : be.ops->rope_forward;
                assert_int_equal(f(be.ctx, a, NULL, 1, 1, RH, RHS, pairs[k].rot, pairs[k].theta, pp), 0);
                f = dir ? ref.ops->rope_backward : ref.ops->rope_forward;
                assert_int_equal(f(ref.ctx, b, NULL, 1, 1, RH, RHS, pairs[k].rot, pairs[k].theta, pp), 0);
                if (memcmp(a, b, row * sizeof(float)))
                    fail_msg("rope position %d theta %g rot %d dir %d: kept table differs from the reference",
                             pp, (double)pairs[k].theta, pairs[k].rot, dir);
                free(a), free(b);
            }
        }
    /* packed positions over a grown table, and positions past its limit */
    static const int pos0s[] = {5, 250, 2000000000};
    for (int i = 0; i < 3; i++) {
        float *a = fdup(x, RN), *b = fdup(x, RN);
        assert_int_equal(be.ops->rope_forward(be.ctx, a, packed13, RB, RT, RH, RHS, 6, 500.0f, pos0s[i]), 0);
        assert_int_equal(ref.ops->rope_forward(ref.ctx, b, packed13, RB, RT, RH, RHS, 6, 500.0f, pos0s[i]), 0);
        assert_memory_equal(a, b, RN * sizeof(float));
        free(a), free(b);
    }
    llm_backend_release(&be);
    llm_backend_release(&ref);
    free(x);
}

/* d(sum(rope(x) * R))/dx by central differences of the double reference
 * against rope_backward(R). The map is linear, so the differences are exact
 * up to rounding (~1e-12). */
static void test_rope_gradient(void **state)
{
    (void)state;
    float *R = rope_input(34, RN), *x = rope_input(35, RN);
    double *xd = to_double(x, RN), *y = malloc(RN * sizeof(double)), *g = malloc(RN * sizeof(double));
    assert_true(y && g);
    for (size_t i = 0; i < RN; i++) {
        double L[2];
        for (int side = 0; side < 2; side++) {
            memcpy(y, xd, RN * sizeof(double));
            y[i] += side ? -FD_STEP : FD_STEP;
            ref_rope(y, RB, RT, RH, RHS, 6, 10000.0, 5, 1.0);
            L[side] = 0;
            for (size_t j = 0; j < RN; j++)
                L[side] += y[j] * R[j];
        }
        g[i] = (L[0] - L[1]) / (2 * FD_STEP);
    }
    for (int ref = 0; ref <= 1; ref++) {
        struct llm_backend be;
        open_backend(&be, 2, ref);
        float *dx = fdup(R, RN);
        assert_int_equal(be.ops->rope_backward(be.ctx, dx, NULL, RB, RT, RH, RHS, 6, 10000.0f, 5), 0);
        llm_backend_release(&be);
        assert_close("rope dx", dx, g, RN, ROPE_ABS, 0);
        free(dx);
    }
    free(R), free(x), free(xd), free(y), free(g);
}

/* ---- bad arguments ---- */

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct llm_backend be;
    open_backend(&be, 1, 0);
    float buf[64] = {0}, lse[8] = {0};
    llm_err_clear();
    /* NH not a multiple of NKV */
    assert_int_equal(be.ops->attention_forward(be.ctx, buf, lse, buf, buf, buf, NULL, 1, 1, 3, 2,
                                               4, 0, 1.0f),
                     LLM_EINVAL);
    assert_true(strlen(llm_errmsg()) > 0);
    assert_int_equal(be.ops->attention_backward(be.ctx, buf, buf, buf, buf, buf, buf, buf, buf,
                                                lse, NULL, 1, 1, 2, 2, 4, -1, 1.0f),
                     LLM_EINVAL);
    assert_int_equal(be.ops->linear_attention_forward(be.ctx, buf, buf, buf, buf, 1, 1, 2, 0, 4),
                     LLM_EINVAL);
    assert_int_equal(be.ops->linear_attention_backward(be.ctx, buf, buf, buf, buf, buf, buf, buf,
                                                       1, 1, 4, 3, 4),
                     LLM_EINVAL);
    /* rot_dims odd, beyond HS, zero */
    assert_int_equal(be.ops->rope_forward(be.ctx, buf, NULL, 1, 2, 2, 8, 5, 10000.0f, 0), LLM_EINVAL);
    assert_int_equal(be.ops->rope_forward(be.ctx, buf, NULL, 1, 2, 2, 8, 10, 10000.0f, 0), LLM_EINVAL);
    assert_int_equal(be.ops->rope_backward(be.ctx, buf, NULL, 1, 2, 2, 8, 0, 10000.0f, 0), LLM_EINVAL);
    llm_err_clear();
    assert_int_equal(be.ops->rope_forward(be.ctx, buf, NULL, 1, 2, 2, 8, 8, -1.0f, 0), LLM_EINVAL);
    assert_true(strstr(llm_errmsg(), "theta") != NULL);
    /* empty batches are fine and touch nothing */
    assert_int_equal(be.ops->attention_forward(be.ctx, NULL, NULL, NULL, NULL, NULL, NULL, 0, 4, 2,
                                               1, 4, 0, 1.0f),
                     0);
    /* packed positions: a row must start at 0 and then go on by 1 or restart */
    static const int32_t bad[3][4] = {{1, 2, 3, 4}, {0, 1, 3, 4}, {0, 1, 0, 0}};
    for (int i = 0; i < 2; i++) {
        llm_err_clear();
        assert_int_equal(be.ops->attention_forward(be.ctx, buf, lse, buf, buf, buf, bad[i], 1, 4,
                                                   1, 1, 4, 0, 1.0f),
                         LLM_EINVAL);
        assert_true(strstr(llm_errmsg(), "packed position") != NULL);
        assert_int_equal(be.ops->attention_backward(be.ctx, buf, buf, buf, buf, buf, buf, buf, buf,
                                                    lse, bad[i], 1, 4, 1, 1, 4, 0, 1.0f),
                         LLM_EINVAL);
    }
    assert_int_equal(be.ops->attention_forward(be.ctx, buf, lse, buf, buf, buf, bad[2], 1, 4, 1, 1,
                                               4, 0, 1.0f),
                     0);
    static const int32_t neg[2] = {0, -1};
    assert_int_equal(be.ops->rope_forward(be.ctx, buf, neg, 1, 2, 1, 8, 8, 10000.0f, 0), LLM_EINVAL);
    llm_backend_release(&be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_reference_and_gradients),
        cmocka_unit_test(test_attention_tiles),
        cmocka_unit_test(test_attention_long_rows),
        cmocka_unit_test(test_attention_packed),
        cmocka_unit_test(test_attention_packed_alone),
        cmocka_unit_test(test_rope_packed),
        cmocka_unit_test(test_attention_large_scores),
        cmocka_unit_test(test_attention_window_edges),
        cmocka_unit_test(test_attention_causality),
        cmocka_unit_test(test_attention_sliding_window),
        cmocka_unit_test(test_linear_reference_and_gradients),
        cmocka_unit_test(test_linear_causality),
        cmocka_unit_test(test_rope_reference),
        cmocka_unit_test(test_rope_inverse),
        cmocka_unit_test(test_rope_offset),
        cmocka_unit_test(test_rope_kept_tables),
        cmocka_unit_test(test_rope_gradient),
        cmocka_unit_test(test_invalid_arguments),
    };
    return cmocka_run_group_tests_name("nn_attention", tests, NULL, NULL);
}
