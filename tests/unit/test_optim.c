/* test_optim.c: the optimizers and schedules (lib/optim) and their backend
 * ops (lib/nn/cpu/cpu_optim.c), against plain double-precision oracles
 * written here, on the four CPU backends (reference and optimized paths, 1
 * and 2 threads; the two thread counts bit-identical).
 *
 * - ops: gemm (every transpose, alpha/beta, padded leading dims, tiles past
 *   256), sgd, momentum, adam_direction, scale_add;
 * - parameter groups: rules and the decay actually applied, default and flags;
 * - SGD, Muon (Newton-Schulz, shape scale, AdamW fallback) and SOAP (a
 *   Jacobi eigensolver here; two-sided and one-sided, across basis refreshes)
 *   over several steps; Muon's update is nearly orthogonal; SOAP with no side
 *   rotated is AdamW bit for bit;
 * - the state: names, order, shapes, and a save/restore round trip that
 *   continues bit-identically; every optimizer lowers a tiny model's loss;
 * - schedules at warmup, midpoint and end.
 *
 * Tolerances: float vs double, |got - want| <= atol + rtol |want|; the
 * optimizer oracles use an absolute bound on parameters that move by lr-sized
 * steps (the float errors are ~1e-6 relative to the step). */
#include "testutil.h"

#include <math.h>

#include "config/config.h"
#include "core/err.h"
#include "core/rng.h"
#include "model/model.h"
#include "nn/backend.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "nntest.h"

static double *todbl(const float *a, size_t n)
{
    double *d = dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
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

static void check_bits(const char *what, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s[%zu] differs: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

static const char *be_name(int r, int t)
{
    static const char *names[2][2] = {{"opt/1", "opt/2"}, {"ref/1", "ref/2"}};
    return names[r][t];
}

/* ---- small double linear algebra for the oracles (row-major) ---- */

/* C (m, n) = op(A) op(B), op(A) (m, k): A stored (m, k), or (k, m) with ta. */
static void dmm(double *C, const double *A, int ta, const double *B, int tb, int m, int n, int k)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int l = 0; l < k; l++)
                s += (ta ? A[(size_t)l * m + i] : A[(size_t)i * k + l]) *
                     (tb ? B[(size_t)j * k + l] : B[(size_t)l * n + j]);
            C[(size_t)i * n + j] = s;
        }
}

static void deye(double *Q, int d)
{
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++)
            Q[(size_t)i * d + j] = i == j;
}

/* Cyclic Jacobi: Q (d, d) columns = eigenvectors of the symmetric S (d, d),
 * in ascending order of eigenvalue (written to w if not NULL). */
static void jacobi_eigh(double *Q, double *w, const double *S, int d)
{
    double *a = dnew((size_t)d * d), *V = dnew((size_t)d * d);
    memcpy(a, S, (size_t)d * d * sizeof(double));
    deye(V, d);
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                tot += a[i * d + j] * a[i * d + j];
                if (i != j)
                    off += a[i * d + j] * a[i * d + j];
            }
        if (off <= 1e-30 * tot)
            break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (apq == 0)
                    continue;
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q of a */
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = V[k * d + p], vkq = V[k * d + q];
                    V[k * d + p] = c * vkp - s * vkq;
                    V[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    /* selection sort of the eigenpairs, ascending */
    int *idx = keep(calloc((size_t)d, sizeof(int)));
    for (int i = 0; i < d; i++)
        idx[i] = i;
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++)
            if (a[idx[j] * d + idx[j]] < a[idx[i] * d + idx[i]]) {
                int tmp = idx[i];
                idx[i] = idx[j];
                idx[j] = tmp;
            }
    for (int j = 0; j < d; j++) {
        if (w)
            w[j] = a[idx[j] * d + idx[j]];
        for (int i = 0; i < d; i++)
            Q[(size_t)i * d + j] = V[(size_t)i * d + idx[j]];
    }
}

/* ======================================================================== */
/* Ops                                                                      */

static void check_gemm(int M, int N, int K, int ta, int tb, float alpha, float beta, int pad)
{
    /* BLAS's rule: a leading dim is at least 1 even for an empty matrix */
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    lda = lda > 0 ? lda : 1, ldb = ldb > 0 ? ldb : 1, ldc = ldc > 0 ? ldc : 1;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = frand(11, na, -1, 1), *B = frand(12, nb, -1, 1), *C0 = frand(13, nc, -1, 1);
    if (beta == 0.0f) /* C is not read */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C0[(size_t)i * ldc + j] = NAN;
    double *want = dnew(nc);
    for (size_t i = 0; i < nc; i++)
        want[i] = C0[i]; /* padding stays */
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            double c0 = beta == 0.0f ? 0.0 : (double)beta * C0[(size_t)i * ldc + j];
            want[(size_t)i * ldc + j] = alpha * s + c0;
        }
    char what[96];
    snprintf(what, sizeof(what), "gemm M=%d N=%d K=%d ta=%d tb=%d alpha=%g beta=%g pad=%d", M, N, K,
             ta, tb, (double)alpha, (double)beta, pad);
    for (int r = 0; r < 2; r++) {
        float *C[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *b = &be[r][t];
            C[t] = fcopy(C0, nc);
            assert_int_equal(b->ops->gemm(b->ctx, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta,
                                          C[t], ldc),
                             0);
            check_close_tol(what, C[t], want, nc, 1e-5 + 3e-7 * K, 1e-5);
        }
        check_bits(what, C[0], C[1], nc);
    }
    pool_free();
}

static void test_gemm(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(7, 5, 3, ta, tb, 1.0f, 0.0f, 0);
            check_gemm(7, 5, 3, ta, tb, -0.7f, 0.3f, 2);
            check_gemm(4, 9, 6, ta, tb, 1.0f, 1.0f, 1);
        }
    check_gemm(3, 4, 0, 0, 0, 1.0f, 0.5f, 0);  /* K = 0: C = beta C */
    check_gemm(3, 4, 0, 1, 1, 2.0f, 0.0f, 1);  /* K = 0, beta = 0: zeros */
    check_gemm(0, 4, 5, 0, 0, 1.0f, 0.0f, 0);  /* nothing to do */
    /* past the 256-wide tiles, on both alpha paths */
    check_gemm(300, 270, 33, 0, 1, 1.0f, 0.5f, 0);
    check_gemm(270, 300, 29, 1, 0, 0.25f, 0.0f, 3);
    /* bad dims */
    float x[4] = {0};
    struct llm_backend *b = &be[0][0];
    assert_int_equal(b->ops->gemm(b->ctx, 0, 0, 2, 2, 2, 1.0f, x, 1, x, 2, 0.0f, x, 2), LLM_EINVAL);
    assert_int_equal(b->ops->gemm(b->ctx, 0, 0, -1, 2, 2, 1.0f, x, 2, x, 2, 0.0f, x, 2), LLM_EINVAL);
    assert_int_equal(b->ops->gemm(b->ctx, 1, 0, 2, 1, 2, 1.0f, x, 2, x, 1, 0.0f, x, 0), LLM_EINVAL);
}

/* Above the one-thread cutoff, so 2 threads really split the loop. */
#define EN 20011

static void test_elementwise_ops(void **state)
{
    (void)state;
    const size_t n = EN;
    float *p0 = frand(1, n, -1, 1), *g = frand(2, n, -1, 1), *b0 = frand(3, n, -1, 1);
    float *m0 = frand(4, n, -0.5f, 0.5f), *v0 = frand(5, n, 0, 0.5f), *x = frand(6, n, -1, 1);
    const float lr = 0.1f, mu = 0.9f, wd = 0.05f, gs = 0.5f;
    const float b1 = 0.9f, b2 = 0.99f, eps = 1e-8f;
    const int T = 3;
    for (int nest = 0; nest < 2; nest++) {
        /* oracles */
        double *wp = dnew(n), *wb = dnew(n), *wu = dnew(n);
        for (size_t i = 0; i < n; i++) {
            double gg = (double)g[i] * gs, bb = (double)mu * b0[i] + gg;
            double u = nest ? gg + (double)mu * bb : bb;
            wb[i] = bb;
            wu[i] = u;
            wp[i] = p0[i] - (double)lr * wd * p0[i] - (double)lr * u;
        }
        for (int r = 0; r < 2; r++) {
            float *P[2], *Bf[2], *U[2], *B2[2];
            for (int t = 0; t < 2; t++) {
                struct llm_backend *be_ = &be[r][t];
                P[t] = fcopy(p0, n), Bf[t] = fcopy(b0, n), U[t] = fnew(n), B2[t] = fcopy(b0, n);
                assert_int_equal(be_->ops->sgd(be_->ctx, P[t], g, Bf[t], n, lr, mu, nest, wd, gs), 0);
                check_close_tol("sgd p", P[t], wp, n, 1e-6, 1e-5);
                check_close_tol("sgd b", Bf[t], wb, n, 1e-6, 1e-5);
                assert_int_equal(be_->ops->momentum(be_->ctx, U[t], B2[t], g, n, mu, nest, gs), 0);
                check_close_tol("momentum u", U[t], wu, n, 1e-6, 1e-5);
                check_close_tol("momentum b", B2[t], wb, n, 1e-6, 1e-5);
            }
            check_bits("sgd p", P[0], P[1], n);
            check_bits("sgd b", Bf[0], Bf[1], n);
            check_bits("momentum u", U[0], U[1], n);
        }
    }
    /* adam_direction and scale_add */
    double bc1 = 1 - pow(b1, T), bc2 = 1 - pow(b2, T);
    double *wm = dnew(n), *wv = dnew(n), *wo = dnew(n), *ws = dnew(n);
    for (size_t i = 0; i < n; i++) {
        double gg = (double)g[i] * gs;
        wm[i] = (double)b1 * m0[i] + (1 - (double)b1) * gg;
        wv[i] = (double)b2 * v0[i] + (1 - (double)b2) * gg * gg;
        wo[i] = (wm[i] / bc1) / (sqrt(wv[i] / bc2) + eps);
        ws[i] = 0.99 * p0[i] - 0.01 * x[i];
    }
    for (int r = 0; r < 2; r++) {
        float *O[2], *M[2], *V[2], *S[2];
        for (int t = 0; t < 2; t++) {
            struct llm_backend *be_ = &be[r][t];
            O[t] = fcopy(g, n), M[t] = fcopy(m0, n), V[t] = fcopy(v0, n), S[t] = fcopy(p0, n);
            /* in place: out aliases g */
            assert_int_equal(be_->ops->adam_direction(be_->ctx, O[t], O[t], M[t], V[t], n, b1, b2,
                                                      eps, T, gs),
                             0);
            check_close_tol("adam_direction out", O[t], wo, n, 1e-5, 1e-5);
            check_close_tol("adam_direction m", M[t], wm, n, 1e-7, 1e-6);
            check_close_tol("adam_direction v", V[t], wv, n, 1e-7, 1e-6);
            assert_int_equal(be_->ops->scale_add(be_->ctx, S[t], 0.99f, x, -0.01f, n), 0);
            check_close_tol("scale_add", S[t], ws, n, 1e-7, 1e-6);
        }
        check_bits("adam_direction", O[0], O[1], n);
        check_bits("adam_direction v", V[0], V[1], n);
        check_bits("scale_add", S[0], S[1], n);
    }
    struct llm_backend *b = &be[0][0];
    float one = 1;
    assert_int_equal(b->ops->adam_direction(b->ctx, &one, &one, &one, &one, 1, b1, b2, eps, 0, 1),
                     LLM_EINVAL);
    assert_int_equal(b->ops->adam_direction(b->ctx, &one, &one, &one, &one, 1, 1.0f, b2, eps, 1, 1),
                     LLM_EINVAL);
    pool_free();
}

/* ======================================================================== */
/* A fake model: a hand-made layout over backend buffers, for oracles        */

struct fspec {
    const char *name;
    int ndim;
    int64_t r, c;
    enum llm_param_kind kind;
};

static void fake_init(struct llm_model *m, struct llm_backend *b, const struct fspec *fs, size_t n,
                      uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->be = b;
    m->layout.p = calloc(n, sizeof(*m->layout.p));
    assert_non_null(m->layout.p);
    m->layout.n = n;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        struct llm_param_spec *s = &m->layout.p[i];
        snprintf(s->name, sizeof(s->name), "%s", fs[i].name);
        s->ndim = fs[i].ndim;
        s->shape[0] = fs[i].r;
        s->shape[1] = fs[i].ndim == 2 ? fs[i].c : 0;
        s->numel = (size_t)fs[i].r * (fs[i].ndim == 2 ? (size_t)fs[i].c : 1);
        s->offset = off;
        s->kind = fs[i].kind;
        s->layer = s->expert = -1;
        off += (s->numel + LLM_PARAM_ALIGN - 1) / LLM_PARAM_ALIGN * LLM_PARAM_ALIGN;
    }
    m->layout.total = off;
    assert_int_equal(b->ops->alloc(b->ctx, (void **)&m->params, off * sizeof(float)), 0);
    assert_int_equal(b->ops->alloc(b->ctx, (void **)&m->grads, off * sizeof(float)), 0);
    frand_fill(m->params, seed, off, -1, 1); /* the CPU backend's memory is host memory */
}

/* Gradients of step `step`: a pure function of (seed, step). */
static void fake_grads(struct llm_model *m, uint64_t seed, int step)
{
    frand_fill(m->grads, seed * 1000 + (uint64_t)step, m->layout.total, -1, 1);
}

static void fake_release(struct llm_model *m)
{
    m->be->ops->free(m->be->ctx, m->params);
    m->be->ops->free(m->be->ctx, m->grads);
    free(m->layout.p);
    memset(m, 0, sizeof(*m));
}

static struct llm_optim_config default_optim(enum llm_optim_name name)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    struct llm_optim_config o = c.optim;
    llm_config_release(&c);
    o.name = name;
    return o;
}

/* A double AdamW step of one tensor (the oracle of the adamw op). */
static void adamw_oracle(double *w, const float *g, double *m, double *v, size_t n, double lr,
                         double b1, double b2, double eps, double wd, int t, double gs)
{
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    for (size_t i = 0; i < n; i++) {
        double gg = g[i] * gs;
        m[i] = b1 * m[i] + (1 - b1) * gg;
        v[i] = b2 * v[i] + (1 - b2) * gg * gg;
        w[i] -= lr * (m[i] / bc1 / (sqrt(v[i] / bc2) + eps) + wd * w[i]);
    }
}

/* ======================================================================== */
/* Parameter groups on a real tiny model                                    */

static void tiny_config(struct llm_model_config *m, int moe)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    *m = c.model;
    llm_config_release(&c);
    m->vocab_size = 13;
    m->context_length = 7;
    m->d_model = 8;
    m->n_layers = 2;
    m->n_heads = 2;
    m->n_kv_heads = 0;
    m->d_ff = 12;
    m->dropout = 0;
    m->init_std = 0.3;
    m->bias = true;
    m->tie_embeddings = false;
    m->position = LLM_POSITION_LEARNED;
    if (moe) {
        m->mlp = LLM_MLP_MOE, m->n_experts = 3, m->top_k = 1, m->aux_loss_coef = 0.01;
    }
}

static int expect_decay(const struct llm_optim_config *c, enum llm_param_kind k)
{
    if (k == LLM_PARAM_MATRIX || k == LLM_PARAM_ROUTER)
        return 1;
    if (k == LLM_PARAM_EMBEDDING || k == LLM_PARAM_POSITION)
        return c->decay_embeddings;
    return c->decay_norms_biases;
}

static void test_adamw_groups(void **state)
{
    (void)state;
    struct llm_model_config mc;
    tiny_config(&mc, 1);
    for (int flags = 0; flags < 4; flags++) {
        struct llm_model m;
        assert_int_equal(llm_model_init(&m, &mc, &be[0][1], 7), 0);
        assert_int_equal(llm_model_zero_grad(&m), 0);
        struct llm_optim_config oc = default_optim(LLM_OPTIM_ADAMW);
        oc.decay_embeddings = flags & 1;
        oc.decay_norms_biases = (flags >> 1) & 1;
        oc.lr = 0.1, oc.weight_decay = 0.5;
        struct llm_optim *o;
        assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
        int seen[6] = {0};
        for (size_t i = 0; i < m.layout.n; i++) {
            const struct llm_param_spec *s = &m.layout.p[i];
            seen[s->kind] = 1;
            const char *want = expect_decay(&oc, s->kind) ? "adamw" : "adamw_nodecay";
            if (strcmp(llm_optim_rule(o, i), want) != 0)
                fail_msg("flags %d: %s: rule %s, want %s", flags, s->name, llm_optim_rule(o, i),
                         want);
        }
        for (int k = 0; k < 6; k++)
            assert_true(seen[k]); /* every kind is in the model */
        assert_string_equal(llm_optim_rule(o, m.layout.n), "");
        /* zero gradients: Adam's term is 0, so only the decay moves a parameter:
         * p = p - lr wd p exactly for the decay group, unchanged otherwise */
        float *before = fcopy(m.params, m.layout.total);
        assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), 0);
        assert_int_equal(llm_optim_t(o), 1);
        for (size_t i = 0; i < m.layout.n; i++) {
            const struct llm_param_spec *s = &m.layout.p[i];
            const float *p0 = before + s->offset, *p1 = m.params + s->offset;
            int dec = expect_decay(&oc, s->kind);
            for (size_t j = 0; j < s->numel; j++) {
                double want = dec ? p0[j] - 0.1f * (0.5f * p0[j]) : p0[j];
                if (!(fabs(p1[j] - want) <= 1e-7 + 1e-6 * fabs(want)))
                    fail_msg("flags %d: %s[%zu] = %g, want %g (decay %d)", flags, s->name, j,
                             (double)p1[j], want, dec);
                if (!dec && memcmp(&p0[j], &p1[j], sizeof(float)) != 0)
                    fail_msg("%s changed without decay", s->name);
            }
        }
        llm_optim_free(o);
        llm_model_release(&m);
        pool_free();
    }
}

static void test_muon_sgd_soap_rules(void **state)
{
    (void)state;
    struct llm_model_config mc;
    tiny_config(&mc, 1);
    struct llm_model m;
    assert_int_equal(llm_model_init(&m, &mc, &be[0][0], 7), 0);
    struct llm_optim_config oc = default_optim(LLM_OPTIM_MUON);
    struct llm_optim *o;
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    int nmuon = 0;
    for (size_t i = 0; i < m.layout.n; i++) {
        const struct llm_param_spec *s = &m.layout.p[i];
        const char *want = s->kind == LLM_PARAM_MATRIX && strcmp(s->name, "lm_head.weight") != 0
                               ? "muon"
                           : expect_decay(&oc, s->kind) ? "adamw"
                                                        : "adamw_nodecay";
        if (strcmp(llm_optim_rule(o, i), want) != 0)
            fail_msg("muon: %s: rule %s, want %s", s->name, llm_optim_rule(o, i), want);
        nmuon += !strcmp(want, "muon");
        if (strstr(s->name, "experts."))
            assert_string_equal(llm_optim_rule(o, i), "muon");
    }
    assert_true(nmuon > 0);
    assert_string_equal(llm_optim_rule(o, llm_param_find(&m.layout, "lm_head.weight")), "adamw");
    assert_string_equal(llm_optim_rule(o, llm_param_find(&m.layout, "layers.0.moe.router.weight")),
                        "adamw");
    assert_string_equal(llm_optim_rule(o, llm_param_find(&m.layout, "tok_emb.weight")),
                        "adamw_nodecay");
    llm_optim_free(o);

    oc = default_optim(LLM_OPTIM_SGD);
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    for (size_t i = 0; i < m.layout.n; i++)
        assert_string_equal(llm_optim_rule(o, i),
                            expect_decay(&oc, m.layout.p[i].kind) ? "sgd" : "sgd_nodecay");
    llm_optim_free(o);

    /* soap: every 2-D tensor (tok_emb undecayed), 1-D ones by AdamW */
    oc = default_optim(LLM_OPTIM_SOAP);
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    for (size_t i = 0; i < m.layout.n; i++) {
        const struct llm_param_spec *s = &m.layout.p[i];
        int dec = expect_decay(&oc, s->kind);
        const char *want = s->ndim == 2 ? (dec ? "soap" : "soap_nodecay")
                                        : (dec ? "adamw" : "adamw_nodecay");
        assert_string_equal(llm_optim_rule(o, i), want);
    }
    llm_optim_free(o);
    llm_model_release(&m);
}

/* ======================================================================== */
/* SGD                                                                      */

static const struct fspec SGD_LAYOUT[] = {
    {"layers.0.attn.wq.weight", 2, 5, 7, LLM_PARAM_MATRIX},
    {"layers.0.attn.wq.bias", 1, 6, 0, LLM_PARAM_BIAS},
    {"tok_emb.weight", 2, 9, 4, LLM_PARAM_EMBEDDING},
};

static void test_sgd_oracle(void **state)
{
    (void)state;
    const size_t np = sizeof(SGD_LAYOUT) / sizeof(SGD_LAYOUT[0]);
    for (int nest = 0; nest < 2; nest++)
        for (int r = 0; r < 2; r++) {
            float *final[2];
            size_t total = 0;
            for (int t = 0; t < 2; t++) {
                struct llm_model m;
                fake_init(&m, &be[r][t], SGD_LAYOUT, np, 5);
                total = m.layout.total;
                struct llm_optim_config oc = default_optim(LLM_OPTIM_SGD);
                oc.lr = 0.1, oc.momentum = 0.9, oc.nesterov = nest, oc.weight_decay = 0.05;
                struct llm_optim *o;
                assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
                double *w = todbl(m.params, m.layout.total), *buf = dnew(m.layout.total);
                const double lrf = 0.5, gs = 0.5;
                for (int step = 1; step <= 3; step++) {
                    fake_grads(&m, 9, step);
                    assert_int_equal(llm_optim_step(o, &m, lrf, (float)gs), 0);
                    for (size_t i = 0; i < np; i++) {
                        const struct llm_param_spec *s = &m.layout.p[i];
                        double wd = s->kind == LLM_PARAM_MATRIX ? 0.05 : 0.0, lr = 0.1 * lrf;
                        for (size_t j = s->offset; j < s->offset + s->numel; j++) {
                            double g = m.grads[j] * gs;
                            buf[j] = 0.9 * buf[j] + g;
                            double u = nest ? g + 0.9 * buf[j] : buf[j];
                            w[j] -= lr * wd * w[j] + lr * u;
                        }
                        check_close_tol(s->name, m.params + s->offset, w + s->offset, s->numel,
                                        1e-6, 1e-5);
                    }
                }
                assert_string_equal(llm_optim_rule(o, 2), "sgd_nodecay");
                final[t] = fcopy(m.params, m.layout.total);
                llm_optim_free(o);
                fake_release(&m);
            }
            check_bits(be_name(r, 1), final[0], final[1], total);
        }
    pool_free();
}

/* ======================================================================== */
/* Muon                                                                     */

#define NS_A 3.4445
#define NS_B (-4.7750)
#define NS_C 2.0315

/* The orthogonalization of Jordan's reference code, in double: X (m, n). */
static void ns_oracle(double *X, int m, int n)
{
    int tall = m > n, r = tall ? n : m, c = tall ? m : n;
    double *Y = dnew((size_t)m * n), *A = dnew((size_t)r * r), *B = dnew((size_t)r * r),
           *AA = dnew((size_t)r * r), *BY = dnew((size_t)m * n);
    if (tall) /* Y = X^T (n, m) */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                Y[(size_t)j * m + i] = X[(size_t)i * n + j];
    else
        memcpy(Y, X, (size_t)m * n * sizeof(double));
    for (int k = 0; k < 5; k++) {
        dmm(A, Y, 0, Y, 1, r, r, c);   /* A = Y Y^T */
        dmm(AA, A, 0, A, 0, r, r, r);
        for (size_t i = 0; i < (size_t)r * r; i++)
            B[i] = NS_B * A[i] + NS_C * AA[i];
        dmm(BY, B, 0, Y, 0, r, c, r);
        for (size_t i = 0; i < (size_t)r * c; i++)
            Y[i] = NS_A * Y[i] + BY[i];
    }
    if (tall)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                X[(size_t)i * n + j] = Y[(size_t)j * m + i];
    else
        memcpy(X, Y, (size_t)m * n * sizeof(double));
}

static const struct fspec MUON_LAYOUT[] = {
    {"layers.0.attn.wq.weight", 2, 6, 10, LLM_PARAM_MATRIX},   /* wide */
    {"layers.0.mlp.w2.weight", 2, 10, 6, LLM_PARAM_MATRIX},    /* tall: scale sqrt(10/6) */
    {"lm_head.weight", 2, 11, 6, LLM_PARAM_MATRIX},            /* AdamW */
    {"final_norm.weight", 1, 6, 0, LLM_PARAM_NORM},            /* AdamW, no decay */
    {"layers.0.moe.router.weight", 2, 3, 6, LLM_PARAM_ROUTER}, /* AdamW */
    {"tok_emb.weight", 2, 11, 6, LLM_PARAM_EMBEDDING},         /* AdamW, no decay */
};

static void test_muon_oracle(void **state)
{
    (void)state;
    const size_t np = sizeof(MUON_LAYOUT) / sizeof(MUON_LAYOUT[0]);
    const double lr = 0.02, alr = 0.005, wd = 0.1, mu = 0.95, gs = 0.5, lrf = 0.8;
    for (int nest = 0; nest < 2; nest++)
        for (int r = 0; r < 2; r++) {
            float *final[2];
            size_t total = 0;
            for (int t = 0; t < 2; t++) {
                struct llm_model m;
                fake_init(&m, &be[r][t], MUON_LAYOUT, np, 21);
                total = m.layout.total;
                struct llm_optim_config oc = default_optim(LLM_OPTIM_MUON);
                oc.lr = lr, oc.adamw_lr = alr, oc.weight_decay = wd, oc.momentum = mu;
                oc.nesterov = nest;
                struct llm_optim *o;
                assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
                const char *rules[] = {"muon", "muon", "adamw", "adamw_nodecay", "adamw",
                                       "adamw_nodecay"};
                for (size_t i = 0; i < np; i++)
                    assert_string_equal(llm_optim_rule(o, i), rules[i]);
                double *w = todbl(m.params, total), *buf = dnew(total), *mm = dnew(total),
                       *vv = dnew(total);
                for (int step = 1; step <= 3; step++) {
                    fake_grads(&m, 23, step);
                    assert_int_equal(llm_optim_step(o, &m, lrf, (float)gs), 0);
                    for (size_t i = 0; i < np; i++) {
                        const struct llm_param_spec *s = &m.layout.p[i];
                        size_t off = s->offset, n = s->numel;
                        double pwd = expect_decay(&oc, s->kind) ? wd : 0.0;
                        if (i >= 2) {
                            adamw_oracle(w + off, m.grads + off, mm + off, vv + off, n, alr * lrf,
                                         0.9, 0.95, 1e-8, pwd, step, gs);
                        } else {
                            int rr = (int)s->shape[0], cc = (int)s->shape[1];
                            double *X = dnew(n), nrm = 0;
                            for (size_t j = 0; j < n; j++) {
                                double g = m.grads[off + j] * gs;
                                buf[off + j] = mu * buf[off + j] + g;
                                X[j] = nest ? g + mu * buf[off + j] : buf[off + j];
                                nrm += X[j] * X[j];
                            }
                            for (size_t j = 0; j < n; j++)
                                X[j] /= sqrt(nrm) + 1e-7;
                            ns_oracle(X, rr, cc);
                            double sc = sqrt(rr > cc ? (double)rr / cc : 1.0);
                            for (size_t j = 0; j < n; j++)
                                w[off + j] = w[off + j] * (1 - lr * lrf * wd) - lr * lrf * sc * X[j];
                        }
                        check_close_tol(s->name, m.params + off, w + off, n, 2e-6, 1e-5);
                    }
                }
                final[t] = fcopy(m.params, total);
                llm_optim_free(o);
                fake_release(&m);
            }
            check_bits(be_name(r, 1), final[0], final[1], total);
        }
    pool_free();
}

/* Muon's update is nearly semi-orthogonal: X X^T (the short side) has its
 * eigenvalues (squared singular values) near 1 (the quintic trades exactness
 * for speed: singular values land roughly in [0.7, 1.2]). */
static void test_muon_orthogonal(void **state)
{
    (void)state;
    static const struct fspec L[] = {{"layers.0.mlp.w1.weight", 2, 40, 16, LLM_PARAM_MATRIX}};
    struct llm_model m;
    fake_init(&m, &be[0][1], L, 1, 31);
    struct llm_optim_config oc = default_optim(LLM_OPTIM_MUON);
    const double lr = 0.01, wd = 0.1;
    oc.lr = lr, oc.weight_decay = wd;
    struct llm_optim *o;
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    fake_grads(&m, 33, 1);
    int rr = 40, cc = 16;
    size_t n = (size_t)rr * cc;
    float *before = fcopy(m.params, n);
    assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), 0);
    /* X = (p (1 - lr wd) - p') / (lr sqrt(rows/cols)), in double */
    double sc = sqrt((double)rr / cc), *X = dnew(n), *G = dnew((size_t)cc * cc);
    for (size_t j = 0; j < n; j++)
        X[j] = ((double)(float)(before[j] * (float)(1 - lr * wd)) - m.params[j]) / (lr * sc);
    dmm(G, X, 1, X, 0, cc, cc, rr); /* X^T X (16, 16) */
    double *ev = dnew(cc), *Q = dnew((size_t)cc * cc);
    jacobi_eigh(Q, ev, G, cc);
    for (int i = 0; i < cc; i++) {
        if (!(G[i * cc + i] > 0.5 && G[i * cc + i] < 1.5))
            fail_msg("muon: (X^T X)[%d,%d] = %g, not near 1", i, i, G[i * cc + i]);
        if (!(ev[i] > 0.3 && ev[i] < 1.7))
            fail_msg("muon: squared singular value %d = %g, not near 1", i, ev[i]);
    }
    llm_optim_free(o);
    fake_release(&m);
    pool_free();
}

/* ======================================================================== */
/* SOAP                                                                     */

/* (5, 5) rotated on both sides; (4, 7) and (7, 4) on their short side only
 * (max_precond_dim 5); a 1-D bias by AdamW. The rotated sides are full rank
 * from the first gradient on, so every eigenvalue is distinct and the bases
 * are unique up to signs (a rank-deficient side would leave a null space
 * whose basis is arbitrary, and Adam's normalization would turn its float
 * noise into steps). */
static const struct fspec SOAP_LAYOUT[] = {
    {"layers.0.attn.wq.weight", 2, 5, 5, LLM_PARAM_MATRIX},
    {"layers.0.mlp.w1.weight", 2, 4, 7, LLM_PARAM_MATRIX},
    {"layers.0.mlp.w2.weight", 2, 7, 4, LLM_PARAM_MATRIX},
    {"layers.0.mlp.w1.bias", 1, 4, 0, LLM_PARAM_BIAS},
};

struct soap_oracle {
    int m, n, left, right;
    double *L, *R, *QL, *QR, *M, *V, *W;
};

static void soap_oracle_init(struct soap_oracle *s, int m, int n, int maxd, const float *w)
{
    s->m = m, s->n = n;
    s->left = m <= maxd, s->right = n <= maxd;
    s->L = dnew((size_t)m * m), s->R = dnew((size_t)n * n);
    s->QL = dnew((size_t)m * m), s->QR = dnew((size_t)n * n);
    deye(s->QL, m), deye(s->QR, n);
    s->M = dnew((size_t)m * n), s->V = dnew((size_t)m * n);
    s->W = todbl(w, (size_t)m * n);
}

/* One step in the paper's order: rotate with the current bases, Adam, update
 * W; then accumulate L, R and refresh the bases when due, carrying M'. */
static void soap_oracle_step(struct soap_oracle *s, const float *grad, double gs, int t, int freq,
                             double lr, double wd, double b1, double b2, double eps)
{
    int m = s->m, n = s->n, d = m > n ? m : n;
    size_t mn = (size_t)m * n;
    double *G = dnew(mn), *T1 = dnew(mn), *Gp = dnew(mn), *GG = dnew((size_t)d * d);
    for (size_t i = 0; i < mn; i++)
        G[i] = grad[i] * gs;
    dmm(T1, s->QL, 1, G, 0, m, n, m);
    dmm(Gp, T1, 0, s->QR, 0, m, n, n);
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    for (size_t i = 0; i < mn; i++) {
        s->M[i] = b1 * s->M[i] + (1 - b1) * Gp[i];
        s->V[i] = b2 * s->V[i] + (1 - b2) * Gp[i] * Gp[i];
        Gp[i] = (s->M[i] / bc1) / (sqrt(s->V[i] / bc2) + eps);
    }
    dmm(T1, s->QL, 0, Gp, 0, m, n, m);
    dmm(Gp, T1, 0, s->QR, 1, m, n, n);
    for (size_t i = 0; i < mn; i++)
        s->W[i] = s->W[i] * (1 - lr * wd) - lr * Gp[i];
    if (s->left) {
        dmm(GG, G, 0, G, 1, m, m, n);
        for (size_t i = 0; i < (size_t)m * m; i++)
            s->L[i] = b2 * s->L[i] + (1 - b2) * GG[i];
    }
    if (s->right) {
        dmm(GG, G, 1, G, 0, n, n, m);
        for (size_t i = 0; i < (size_t)n * n; i++)
            s->R[i] = b2 * s->R[i] + (1 - b2) * GG[i];
    }
    if ((t - 1) % freq == 0) {
        double *QLn = dnew((size_t)m * m), *QRn = dnew((size_t)n * n);
        if (s->left)
            jacobi_eigh(QLn, NULL, s->L, m);
        else
            deye(QLn, m);
        if (s->right)
            jacobi_eigh(QRn, NULL, s->R, n);
        else
            deye(QRn, n);
        /* M' <- QLn^T QLo M' QRo^T QRn */
        dmm(T1, s->QL, 0, s->M, 0, m, n, m);
        dmm(s->M, QLn, 1, T1, 0, m, n, m);
        dmm(T1, s->M, 0, s->QR, 1, m, n, n);
        dmm(s->M, T1, 0, QRn, 0, m, n, n);
        memcpy(s->QL, QLn, (size_t)m * m * sizeof(double));
        memcpy(s->QR, QRn, (size_t)n * n * sizeof(double));
    }
}

/* The optimizer's state tensor named "optim.<param>.<slot>", or NULL. */
static const struct llm_optim_tensor *find_state(const struct llm_optim *o, const char *param,
                                                 const char *slot)
{
    char name[200];
    snprintf(name, sizeof(name), "optim.%s.%s", param, slot);
    for (size_t i = 0; i < llm_optim_tensor_count(o); i++)
        if (!strcmp(llm_optim_tensor(o, i)->name, name))
            return llm_optim_tensor(o, i);
    return NULL;
}

/* Q's columns against the oracle's, up to sign: |q_j . o_j| ~ 1. */
static void check_basis(const char *what, const float *Q, const double *O, int d)
{
    for (int j = 0; j < d; j++) {
        double dot = 0;
        for (int i = 0; i < d; i++)
            dot += Q[(size_t)i * d + j] * O[(size_t)i * d + j];
        if (!(fabs(fabs(dot) - 1) < 1e-4))
            fail_msg("%s: column %d: |q . q_oracle| = %.9g, want 1", what, j, fabs(dot));
    }
}

static void test_soap_oracle(void **state)
{
    (void)state;
    const size_t np = sizeof(SOAP_LAYOUT) / sizeof(SOAP_LAYOUT[0]);
    const double lr = 0.01, wd = 0.1, gs = 0.8, lrf = 0.9, b1 = 0.9, b2 = 0.95, eps = 1e-8;
    const int freq = 2, maxd = 5, steps = 5;
    for (int r = 0; r < 2; r++) {
        float *final[2];
        size_t total = 0;
        for (int t = 0; t < 2; t++) {
            struct llm_model m;
            fake_init(&m, &be[r][t], SOAP_LAYOUT, np, 41);
            total = m.layout.total;
            struct llm_optim_config oc = default_optim(LLM_OPTIM_SOAP);
            oc.lr = lr, oc.weight_decay = wd, oc.betas[0] = b1, oc.betas[1] = b2, oc.eps = eps;
            oc.precondition_frequency = freq, oc.max_precond_dim = maxd;
            struct llm_optim *o;
            assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
            assert_string_equal(llm_optim_rule(o, 0), "soap");
            assert_string_equal(llm_optim_rule(o, 1), "soap");
            assert_string_equal(llm_optim_rule(o, 2), "soap");
            assert_string_equal(llm_optim_rule(o, 3), "adamw_nodecay");
            struct soap_oracle so[3];
            for (int i = 0; i < 3; i++)
                soap_oracle_init(&so[i], (int)m.layout.p[i].shape[0], (int)m.layout.p[i].shape[1],
                                 maxd, m.params + m.layout.p[i].offset);
            const struct llm_param_spec *bs = &m.layout.p[3];
            double *bw = todbl(m.params + bs->offset, bs->numel), *bm = dnew(bs->numel),
                   *bv = dnew(bs->numel);
            for (int step = 1; step <= steps; step++) {
                fake_grads(&m, 43, step);
                assert_int_equal(llm_optim_step(o, &m, lrf, (float)gs), 0);
                for (int i = 0; i < 3; i++) {
                    const struct llm_param_spec *s = &m.layout.p[i];
                    struct soap_oracle *q = &so[i];
                    soap_oracle_step(q, m.grads + s->offset, gs, step, freq, lr * lrf, wd, b1, b2,
                                     eps);
                    char what[160];
                    snprintf(what, sizeof(what), "soap step %d %s", step, s->name);
                    /* the state, sign-invariantly: L, R, V' directly, |M'|, bases by column */
                    const struct llm_optim_tensor *L = find_state(o, s->name, "L"),
                                                  *R = find_state(o, s->name, "R"),
                                                  *QL = find_state(o, s->name, "QL"),
                                                  *QR = find_state(o, s->name, "QR"),
                                                  *V = find_state(o, s->name, "v"),
                                                  *M = find_state(o, s->name, "m");
                    assert_true((L != NULL) == q->left && (QL != NULL) == q->left);
                    assert_true((R != NULL) == q->right && (QR != NULL) == q->right);
                    if (L) {
                        check_close_tol("L", L->data, q->L, L->numel, 1e-6, 1e-5);
                        check_basis("QL", QL->data, q->QL, q->m);
                    }
                    if (R) {
                        check_close_tol("R", R->data, q->R, R->numel, 1e-6, 1e-5);
                        check_basis("QR", QR->data, q->QR, q->n);
                    }
                    check_close_tol("v", V->data, q->V, V->numel, 1e-6, 1e-4);
                    double *absm = dnew(M->numel);
                    float *absf = fnew(M->numel);
                    for (size_t j = 0; j < M->numel; j++)
                        absm[j] = fabs(q->M[j]), absf[j] = fabsf(M->data[j]);
                    check_close_tol("|m|", absf, absm, M->numel, 1e-6, 1e-4);
                    check_close_tol(what, m.params + s->offset, q->W, s->numel, 1e-6, 1e-5);
                }
                adamw_oracle(bw, m.grads + bs->offset, bm, bv, bs->numel, lr * lrf, b1, b2, eps,
                             0.0, step, gs);
                check_close_tol("soap bias", m.params + bs->offset, bw, bs->numel, 1e-6, 1e-5);
            }
            final[t] = fcopy(m.params, total);
            llm_optim_free(o);
            fake_release(&m);
        }
        check_bits(be_name(r, 1), final[0], final[1], total);
    }
    pool_free();
}

/* With max_precond_dim = 1 no side is rotated: SOAP is AdamW, bit for bit. */
static void test_soap_identity_is_adamw(void **state)
{
    (void)state;
    static const struct fspec L[] = {
        {"layers.0.attn.wq.weight", 2, 5, 7, LLM_PARAM_MATRIX},
        {"layers.0.attn.wq.bias", 1, 5, 0, LLM_PARAM_BIAS},
        {"tok_emb.weight", 2, 6, 3, LLM_PARAM_EMBEDDING},
    };
    for (int r = 0; r < 2; r++) {
        struct llm_model ms, ma;
        fake_init(&ms, &be[r][0], L, 3, 51);
        fake_init(&ma, &be[r][0], L, 3, 51);
        struct llm_optim_config os = default_optim(LLM_OPTIM_SOAP), oa = default_optim(LLM_OPTIM_ADAMW);
        os.max_precond_dim = 1;
        struct llm_optim *s, *a;
        assert_int_equal(llm_optim_new(&s, &os, &ms), 0);
        assert_int_equal(llm_optim_new(&a, &oa, &ma), 0);
        assert_int_equal(llm_optim_tensor_count(s), 6);
        for (size_t i = 0; i < 3; i++)
            assert_string_equal(llm_optim_rule(s, i), llm_optim_rule(a, i));
        for (int step = 1; step <= 4; step++) {
            fake_grads(&ms, 53, step);
            fake_grads(&ma, 53, step);
            assert_int_equal(llm_optim_step(s, &ms, 0.7, 0.9f), 0);
            assert_int_equal(llm_optim_step(a, &ma, 0.7, 0.9f), 0);
        }
        check_bits("soap(identity) vs adamw", ms.params, ma.params, ms.layout.total);
        llm_optim_free(s);
        llm_optim_free(a);
        fake_release(&ms);
        fake_release(&ma);
    }
}

/* ======================================================================== */
/* The state: names, order, shapes; save and restore                        */

static const struct fspec STATE_LAYOUT[] = {
    {"tok_emb.weight", 2, 9, 6, LLM_PARAM_EMBEDDING},
    {"layers.0.attn.wq.weight", 2, 6, 6, LLM_PARAM_MATRIX},
    {"layers.0.mlp.w1.weight", 2, 10, 6, LLM_PARAM_MATRIX},
    {"layers.0.mlp.w1.bias", 1, 10, 0, LLM_PARAM_BIAS},
    {"final_norm.weight", 1, 6, 0, LLM_PARAM_NORM},
    {"lm_head.weight", 2, 9, 6, LLM_PARAM_MATRIX},
};
#define STATE_NP (sizeof(STATE_LAYOUT) / sizeof(STATE_LAYOUT[0]))

static struct llm_optim_config state_config(enum llm_optim_name name)
{
    struct llm_optim_config oc = default_optim(name);
    oc.lr = 0.01;
    oc.precondition_frequency = 3;
    oc.max_precond_dim = 8; /* tok_emb, w1 and lm_head rotate only their right side */
    return oc;
}

static void test_state_names(void **state)
{
    (void)state;
    static const char *const want_adamw[] = {
        "tok_emb.weight.m", "tok_emb.weight.v", "layers.0.attn.wq.weight.m",
        "layers.0.attn.wq.weight.v", "layers.0.mlp.w1.weight.m", "layers.0.mlp.w1.weight.v",
        "layers.0.mlp.w1.bias.m", "layers.0.mlp.w1.bias.v", "final_norm.weight.m",
        "final_norm.weight.v", "lm_head.weight.m", "lm_head.weight.v"};
    static const char *const want_sgd[] = {
        "tok_emb.weight.momentum", "layers.0.attn.wq.weight.momentum",
        "layers.0.mlp.w1.weight.momentum", "layers.0.mlp.w1.bias.momentum",
        "final_norm.weight.momentum", "lm_head.weight.momentum"};
    static const char *const want_muon[] = {
        "tok_emb.weight.m", "tok_emb.weight.v", "layers.0.attn.wq.weight.momentum",
        "layers.0.mlp.w1.weight.momentum", "layers.0.mlp.w1.bias.m", "layers.0.mlp.w1.bias.v",
        "final_norm.weight.m", "final_norm.weight.v", "lm_head.weight.m", "lm_head.weight.v"};
    static const char *const want_soap[] = {
        "tok_emb.weight.m", "tok_emb.weight.v", "tok_emb.weight.R", "tok_emb.weight.QR",
        "layers.0.attn.wq.weight.m", "layers.0.attn.wq.weight.v", "layers.0.attn.wq.weight.L",
        "layers.0.attn.wq.weight.R", "layers.0.attn.wq.weight.QL", "layers.0.attn.wq.weight.QR",
        "layers.0.mlp.w1.weight.m", "layers.0.mlp.w1.weight.v", "layers.0.mlp.w1.weight.R",
        "layers.0.mlp.w1.weight.QR", "layers.0.mlp.w1.bias.m", "layers.0.mlp.w1.bias.v",
        "final_norm.weight.m", "final_norm.weight.v", "lm_head.weight.m", "lm_head.weight.v",
        "lm_head.weight.R", "lm_head.weight.QR"};
    struct {
        enum llm_optim_name name;
        const char *const *want;
        size_t n;
    } cases[] = {
        {LLM_OPTIM_ADAMW, want_adamw, sizeof(want_adamw) / sizeof(*want_adamw)},
        {LLM_OPTIM_SGD, want_sgd, sizeof(want_sgd) / sizeof(*want_sgd)},
        {LLM_OPTIM_MUON, want_muon, sizeof(want_muon) / sizeof(*want_muon)},
        {LLM_OPTIM_SOAP, want_soap, sizeof(want_soap) / sizeof(*want_soap)},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct llm_model m;
        fake_init(&m, &be[0][0], STATE_LAYOUT, STATE_NP, 61);
        struct llm_optim_config oc = state_config(cases[c].name);
        struct llm_optim *o;
        assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
        assert_int_equal(llm_optim_tensor_count(o), cases[c].n);
        assert_null(llm_optim_tensor(o, cases[c].n));
        for (size_t i = 0; i < cases[c].n; i++) {
            const struct llm_optim_tensor *T = llm_optim_tensor(o, i);
            char want[200];
            snprintf(want, sizeof(want), "optim.%s", cases[c].want[i]);
            assert_string_equal(T->name, want);
            /* shapes: L/QL (rows, rows), R/QR (cols, cols), others the parameter's */
            const char *slot = strrchr(T->name, '.') + 1;
            const struct llm_param_spec *p = NULL;
            for (size_t k = 0; k < m.layout.n; k++)
                if (!strncmp(T->name + 6, m.layout.p[k].name, strlen(m.layout.p[k].name)) &&
                    T->name[6 + strlen(m.layout.p[k].name)] == '.')
                    p = &m.layout.p[k];
            assert_non_null(p);
            int64_t r0 = p->shape[0], c0 = p->shape[1];
            if (!strcmp(slot, "L") || !strcmp(slot, "QL"))
                assert_true(T->ndim == 2 && T->shape[0] == r0 && T->shape[1] == r0);
            else if (!strcmp(slot, "R") || !strcmp(slot, "QR"))
                assert_true(T->ndim == 2 && T->shape[0] == c0 && T->shape[1] == c0);
            else
                assert_true(T->ndim == p->ndim && T->shape[0] == r0 && T->shape[1] == c0);
            assert_int_equal(T->numel, (size_t)T->shape[0] * (T->ndim == 2 ? T->shape[1] : 1));
            /* zeroed, but SOAP's bases start as the identity */
            int eye = !strcmp(slot, "QL") || !strcmp(slot, "QR");
            for (size_t j = 0; j < T->numel; j++)
                assert_true(T->data[j] == (eye && j / T->shape[0] == j % T->shape[0] ? 1.0f : 0.0f));
        }
        llm_optim_free(o);
        fake_release(&m);
    }
}

/* Steps 1..K, save (download) state, params and t; steps K+1..K+4 recorded.
 * Then a fresh optimizer on the saved params with the state uploaded and t
 * set must give the same bits. SOAP (frequency 3) refreshes at t = 4 and 7,
 * both sides of the save. */
static void roundtrip(struct llm_backend *b, enum llm_optim_name name)
{
    const int K = 4, more = 4;
    struct llm_model m;
    fake_init(&m, b, STATE_LAYOUT, STATE_NP, 71);
    struct llm_optim_config oc = state_config(name);
    struct llm_optim *o;
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    for (int step = 1; step <= K; step++) {
        fake_grads(&m, 73, step);
        assert_int_equal(llm_optim_step(o, &m, 1.0, 0.7f), 0);
    }
    size_t nt = llm_optim_tensor_count(o), total = m.layout.total;
    float **saved = keep(calloc(nt, sizeof(float *)));
    for (size_t i = 0; i < nt; i++) {
        const struct llm_optim_tensor *T = llm_optim_tensor(o, i);
        saved[i] = fnew(T->numel);
        assert_int_equal(b->ops->download(b->ctx, saved[i], T->data, T->numel * sizeof(float)), 0);
    }
    int64_t t_saved = llm_optim_t(o);
    assert_int_equal(t_saved, K);
    float *params_saved = fcopy(m.params, total);
    for (int step = K + 1; step <= K + more; step++) {
        fake_grads(&m, 73, step);
        assert_int_equal(llm_optim_step(o, &m, 0.5, 0.7f), 0);
    }
    float *params_want = fcopy(m.params, total);
    llm_optim_free(o);

    memcpy(m.params, params_saved, total * sizeof(float));
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    assert_int_equal(llm_optim_tensor_count(o), nt);
    for (size_t i = 0; i < nt; i++) {
        const struct llm_optim_tensor *T = llm_optim_tensor(o, i);
        assert_int_equal(b->ops->upload(b->ctx, T->data, saved[i], T->numel * sizeof(float)), 0);
    }
    llm_optim_set_t(o, t_saved);
    for (int step = K + 1; step <= K + more; step++) {
        fake_grads(&m, 73, step);
        assert_int_equal(llm_optim_step(o, &m, 0.5, 0.7f), 0);
    }
    assert_int_equal(llm_optim_t(o), K + more);
    check_bits("params after restore", m.params, params_want, total);
    llm_optim_free(o);
    fake_release(&m);
    pool_free();
}

static void test_state_roundtrip(void **state)
{
    (void)state;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            for (int name = 0; name < 4; name++)
                roundtrip(&be[r][t], (enum llm_optim_name)name);
}

/* ======================================================================== */
/* Every optimizer lowers a tiny model's loss                               */

static void test_loss_decreases(void **state)
{
    (void)state;
    static const struct {
        enum llm_optim_name name;
        double lr;
    } cases[] = {{LLM_OPTIM_ADAMW, 1e-2}, {LLM_OPTIM_SGD, 0.1}, {LLM_OPTIM_MUON, 0.02},
                 {LLM_OPTIM_SOAP, 1e-2}};
    struct llm_model_config mc;
    tiny_config(&mc, 0);
    enum { B = 2, T = 7 };
    int32_t tok[B * T], tgt[B * T];
    struct llm_rng rng;
    llm_rng_seed(&rng, 81);
    for (int i = 0; i < B * T; i++)
        tok[i] = (int32_t)llm_rng_below(&rng, 13), tgt[i] = (int32_t)llm_rng_below(&rng, 13);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        for (int r = 0; r < 2; r++) {
            struct llm_model m;
            assert_int_equal(llm_model_init(&m, &mc, &be[r][1], 83), 0);
            struct llm_optim_config oc = default_optim(cases[c].name);
            oc.lr = cases[c].lr;
            oc.precondition_frequency = 5;
            struct llm_optim *o;
            assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
            float loss0 = 0, loss = 0;
            for (int step = 1; step <= 20; step++) {
                assert_int_equal(llm_model_zero_grad(&m), 0);
                assert_int_equal(llm_model_forward(&m, tok, tgt, B, T, 1, &loss), 0);
                assert_int_equal(llm_model_backward(&m), 0);
                if (step == 1)
                    loss0 = loss;
                assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), 0);
            }
            assert_int_equal(llm_model_forward(&m, tok, tgt, B, T, 0, &loss), 0);
            if (!(loss < 0.8f * loss0))
                fail_msg("optimizer %zu (%s): loss %g -> %g after 20 steps", c, be_name(r, 1),
                         (double)loss0, (double)loss);
            llm_optim_free(o);
            llm_model_release(&m);
        }
}

/* ======================================================================== */
/* Errors                                                                   */

static void test_errors(void **state)
{
    (void)state;
    static const struct fspec L[] = {{"layers.0.attn.wq.weight", 2, 3, 4, LLM_PARAM_MATRIX}};
    struct llm_model m;
    fake_init(&m, &be[0][0], L, 1, 91);
    struct llm_optim *o = (struct llm_optim *)&m; /* must be reset to NULL */
    struct llm_optim_config oc = default_optim(LLM_OPTIM_ADAMW);
    oc.name = (enum llm_optim_name)42;
    assert_int_equal(llm_optim_new(&o, &oc, &m), LLM_EINVAL);
    assert_null(o);
    assert_non_null(strstr(llm_errmsg(), "optim.name"));
    oc = default_optim(LLM_OPTIM_SOAP);
    oc.betas[1] = 1.0;
    assert_int_equal(llm_optim_new(&o, &oc, &m), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "optim.betas"));
    oc = default_optim(LLM_OPTIM_MUON);
    oc.momentum = -0.1;
    assert_int_equal(llm_optim_new(&o, &oc, &m), LLM_EINVAL);
    oc = default_optim(LLM_OPTIM_SOAP);
    oc.precondition_frequency = 0;
    assert_int_equal(llm_optim_new(&o, &oc, &m), LLM_EINVAL);

    oc = default_optim(LLM_OPTIM_ADAMW);
    assert_int_equal(llm_optim_new(&o, &oc, &m), 0);
    assert_int_equal(llm_optim_step(o, &m, 1.5, 1.0f), LLM_EINVAL);
    assert_int_equal(llm_optim_step(o, &m, 1.0, NAN), LLM_EINVAL);
    assert_int_equal(llm_optim_t(o), 0); /* refused steps do not count */
    float *g = m.grads;
    m.grads = NULL;
    assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), LLM_EINVAL);
    m.grads = g;
    m.layout.total += 16;
    assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), LLM_EINVAL);
    m.layout.total -= 16;
    llm_optim_set_t(o, 41);
    assert_int_equal(llm_optim_step(o, &m, 1.0, 1.0f), 0);
    assert_int_equal(llm_optim_t(o), 42);
    llm_optim_free(o);
    llm_optim_free(NULL);
    fake_release(&m);
}

/* ======================================================================== */
/* Schedules                                                                */

static void near(double got, double want, const char *what, int64_t step)
{
    if (!(fabs(got - want) < 1e-12))
        fail_msg("%s at step %lld: %.15g, want %.15g", what, (long long)step, got, want);
}

static void test_schedules(void **state)
{
    (void)state;
    struct llm_schedule_config s = {LLM_SCHEDULE_COSINE, 10, 0.1, 0.2, LLM_COOLDOWN_LINEAR};
    const int64_t total = 110;
    for (int name = 0; name < 4; name++) {
        s.name = (enum llm_schedule_name)name;
        /* warmup: step / W */
        near(llm_schedule_factor(&s, 1, total), 0.1, "warmup", 1);
        near(llm_schedule_factor(&s, 5, total), 0.5, "warmup", 5);
        near(llm_schedule_factor(&s, 10, total), 1.0, "warmup", 10);
        near(llm_schedule_factor(&s, 0, total), 0.1, "clamped", 0);
        for (int cd = 0; cd < 2; cd++) {
            s.cooldown = (enum llm_cooldown)cd;
            for (int64_t k = -3; k <= total + 3; k++) {
                double f = llm_schedule_factor(&s, k, total);
                if (!(f >= 0.0 && f <= 1.0))
                    fail_msg("schedule %d: factor %g at step %lld", name, f, (long long)k);
            }
        }
    }
    /* cosine: midpoint of the decay (step 10 + 50) and end */
    s.name = LLM_SCHEDULE_COSINE;
    near(llm_schedule_factor(&s, 60, total), 0.1 + 0.9 * 0.5, "cosine midpoint", 60);
    near(llm_schedule_factor(&s, 35, total), 0.1 + 0.9 * 0.5 * (1 + cos(M_PI * 0.25)), "cosine", 35);
    near(llm_schedule_factor(&s, total, total), 0.1, "cosine end", total);
    near(llm_schedule_factor(&s, total + 5, total), 0.1, "cosine past the end", total + 5);
    assert_true(llm_schedule_factor(&s, 11, total) < 1.0 &&
                llm_schedule_factor(&s, 11, total) > 0.99);
    s.name = LLM_SCHEDULE_LINEAR;
    near(llm_schedule_factor(&s, 60, total), 0.55, "linear midpoint", 60);
    near(llm_schedule_factor(&s, 85, total), 1 - 0.9 * 0.75, "linear", 85);
    near(llm_schedule_factor(&s, total, total), 0.1, "linear end", total);
    s.name = LLM_SCHEDULE_CONSTANT;
    near(llm_schedule_factor(&s, 60, total), 1.0, "constant", 60);
    near(llm_schedule_factor(&s, total, total), 1.0, "constant end", total);
    /* wsd: decay over the last round(0.2 * 110) = 22 steps, from step 88 */
    s.name = LLM_SCHEDULE_WSD;
    s.cooldown = LLM_COOLDOWN_LINEAR;
    near(llm_schedule_factor(&s, 60, total), 1.0, "wsd stable", 60);
    near(llm_schedule_factor(&s, 88, total), 1.0, "wsd stable", 88);
    near(llm_schedule_factor(&s, 99, total), 0.55, "wsd linear midpoint", 99);
    near(llm_schedule_factor(&s, total, total), 0.1, "wsd linear end", total);
    s.cooldown = LLM_COOLDOWN_1_SQRT;
    near(llm_schedule_factor(&s, 88, total), 1.0, "wsd stable", 88);
    near(llm_schedule_factor(&s, 99, total), 0.1 + 0.9 * (1 - sqrt(0.5)), "wsd 1-sqrt midpoint", 99);
    near(llm_schedule_factor(&s, total, total), 0.1, "wsd 1-sqrt end", total);
    /* no warmup: the first step is already decaying (cosine) */
    s.name = LLM_SCHEDULE_COSINE;
    s.warmup = 0;
    near(llm_schedule_factor(&s, 50, 100), 0.55, "cosine no warmup midpoint", 50);
    near(llm_schedule_factor(&s, 100, 100), 0.1, "cosine no warmup end", 100);
    /* wsd whose decay would start inside the warmup starts after it */
    s.name = LLM_SCHEDULE_WSD;
    s.warmup = 10, s.decay_fraction = 1.0, s.cooldown = LLM_COOLDOWN_LINEAR;
    near(llm_schedule_factor(&s, 10, 20), 1.0, "wsd long decay, warmup end", 10);
    near(llm_schedule_factor(&s, 15, 20), 0.55, "wsd long decay midpoint", 15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_elementwise_ops),
        cmocka_unit_test(test_adamw_groups),
        cmocka_unit_test(test_muon_sgd_soap_rules),
        cmocka_unit_test(test_sgd_oracle),
        cmocka_unit_test(test_muon_oracle),
        cmocka_unit_test(test_muon_orthogonal),
        cmocka_unit_test(test_soap_oracle),
        cmocka_unit_test(test_soap_identity_is_adamw),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_loss_decreases),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
