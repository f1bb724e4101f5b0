/* cpu_attention.c: the CPU backend's attention ops: causal softmax attention
 * (GQA, sliding window), causal linear attention, and rotary embeddings. */
#include "cpu_impl.h"
#include "core/err.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Shapes (backend.h): q, out, dq, dout (B, T, NH, HS); k, v, dk, dv (B, T, NKV, HS);
 * lse (B, NH, T). Query head h reads kv head h / G with G = NH / NKV.
 *
 * Threading and determinism: every output row is written by one task, and a
 * task's arithmetic does not depend on which thread runs it or how many there
 * are, so results are bit-identical for any thread count. The softmax forward
 * splits over (b, head, query tile), the linear forward over (b, head) or
 * (b, kv head); backwards split over (b, kv head): a task owns the dk and dv
 * rows of its kv head and loops over its G query heads (their dq rows too).
 *
 * The reference path (ref = 1) is the math in the plainest loops. The default
 * path of softmax attention computes tiles of QT queries x KB keys as small
 * single-thread sgemm calls (scores, P V, and the backward's five products)
 * with the exponentials vectorized (cpu_exp_row), and in the forward an
 * online (streaming) softmax over key blocks; see attn_fwd_gemm. */

enum {
    QT = 64,  /* query rows of a tile (the default path's sgemm calls) */
    KB = 256, /* keys per block of a tile */
};

struct attn_shape {
    int B, T, NH, NKV, HS, window;
    float scale;
    const int32_t *pos; /* (B, T) packed positions, or NULL */
};

static inline size_t qrow(const struct attn_shape *d, int b, int t, int h)
{
    return (((size_t)b * d->T + t) * d->NH + h) * d->HS;
}

static inline size_t kvrow(const struct attn_shape *d, int b, int t, int g)
{
    return (((size_t)b * d->T + t) * d->NKV + g) * d->HS;
}

static inline size_t lse_at(const struct attn_shape *d, int b, int h, int t)
{
    return ((size_t)b * d->NH + h) * d->T + t;
}

/* First key that query t of row b sees: 0, or t - window + 1 with a sliding
 * window, and not before its example's start t - pos[b,t] when packed. Both
 * bounds never decrease with t (cpu_check_packed), so a tile's first row
 * has the tile's lowest bound. */
static inline int key_lo(const struct attn_shape *d, int b, int t)
{
    int lo = d->window > 0 && t - d->window + 1 > 0 ? t - d->window + 1 : 0;
    if (d->pos) {
        int start = t - d->pos[(size_t)b * d->T + t];
        lo = start > lo ? start : lo;
    }
    return lo;
}

static int check_shape(const char *op, int B, int T, int NH, int NKV, int HS)
{
    if (B < 0 || T < 0 || NH <= 0 || NKV <= 0 || HS <= 0 || NH % NKV)
        return llm_err(LLM_EINVAL,
                       "%s: bad shape B=%d T=%d NH=%d NKV=%d HS=%d (NH must be a multiple of NKV)",
                       op, B, T, NH, NKV, HS);
    return 0;
}

static inline float vdot(const float *x, const float *y, int n)
{
    float a = 0;
#pragma omp simd reduction(+ : a)
    for (int i = 0; i < n; i++)
        a += x[i] * y[i];
    return a;
}

/* y += a * x */
static inline void vaxpy(float *restrict y, float a, const float *restrict x, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* Per-thread scratch: nt slices of n floats, or NULL with the error set. */
static float *scratch(int nt, size_t n, const char *what)
{
    return llm_malloc((size_t)nt * n * sizeof(float), what);
}

/* ------------------------------------------------------------------------ */
/* Softmax attention, reference path.
 * For each (b, h, t), keys s in [lo(t), t]:
 *   x_s = scale * q_t . k_s;  m = max_s x_s;  l = sum_s exp(x_s - m)
 *   out_t = sum_s exp(x_s - m) v_s / l;  lse_t = m + log l. */

static void attn_fwd_ref_head(const struct attn_shape *d, float *out, float *lse, const float *q,
                              const float *k, const float *v, int b, int h, float *sc /* (T) */)
{
    int g = h / (d->NH / d->NKV), HS = d->HS;
    for (int t = 0; t < d->T; t++) {
        const float *qt = q + qrow(d, b, t, h);
        int lo = key_lo(d, b, t);
        float m = -INFINITY;
        for (int s = lo; s <= t; s++) {
            const float *ks = k + kvrow(d, b, s, g);
            float x = 0;
            for (int i = 0; i < HS; i++)
                x += qt[i] * ks[i];
            sc[s] = x * d->scale;
            if (sc[s] > m)
                m = sc[s];
        }
        float l = 0;
        for (int s = lo; s <= t; s++) {
            sc[s] = expf(sc[s] - m);
            l += sc[s];
        }
        float *ot = out + qrow(d, b, t, h);
        for (int i = 0; i < HS; i++) {
            float o = 0;
            for (int s = lo; s <= t; s++)
                o += sc[s] * v[kvrow(d, b, s, g) + i];
            ot[i] = o / l;
        }
        lse[lse_at(d, b, h, t)] = m + logf(l);
    }
}

/* Backward, reference path, for kv head g of batch b (all its query heads):
 *   p_ts = exp(scale q_t . k_s - lse_t);  D_t = dout_t . out_t
 *   dv_s += p_ts dout_t;  ds_ts = p_ts (dout_t . v_s - D_t)
 *   dq_t += scale ds_ts k_s;  dk_s += scale ds_ts q_t. */
static void attn_bwd_ref_group(const struct attn_shape *d, float *dq, float *dk, float *dv,
                               const float *dout, const float *q, const float *k, const float *v,
                               const float *out, const float *lse, int b, int g)
{
    int G = d->NH / d->NKV, HS = d->HS;
    for (int s = 0; s < d->T; s++) {
        memset(dk + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
        memset(dv + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
    }
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int t = 0; t < d->T; t++) {
            const float *qt = q + qrow(d, b, t, h), *dot = dout + qrow(d, b, t, h);
            const float *ot = out + qrow(d, b, t, h);
            float *dqt = dq + qrow(d, b, t, h);
            float lt = lse[lse_at(d, b, h, t)];
            float D = 0;
            for (int i = 0; i < HS; i++)
                D += dot[i] * ot[i];
            for (int i = 0; i < HS; i++)
                dqt[i] = 0;
            for (int s = key_lo(d, b, t); s <= t; s++) {
                const float *ks = k + kvrow(d, b, s, g), *vs = v + kvrow(d, b, s, g);
                float *dks = dk + kvrow(d, b, s, g), *dvs = dv + kvrow(d, b, s, g);
                float x = 0, dp = 0;
                for (int i = 0; i < HS; i++) {
                    x += qt[i] * ks[i];
                    dp += dot[i] * vs[i];
                }
                float p = expf(x * d->scale - lt);
                float ds = p * (dp - D);
                for (int i = 0; i < HS; i++) {
                    dvs[i] += p * dot[i];
                    dqt[i] += d->scale * ds * ks[i];
                    dks[i] += d->scale * ds * qt[i];
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Softmax attention, default path, as small matrix products (OpenBLAS, one
 * thread per call) over tiles of QT queries x KB keys of one head:
 *   forward   S = scale Q K^T (QT x KB), P = exp(S - m) (masked), O += P V
 *   backward  S, P recomputed from lse; dP = dO V^T; dS = P (dP - D) scale;
 *             dV += P^T dO;  dQ += dS K;  dK += dS^T Q
 * so nearly all FLOPs (4 HS per (query, key) pair forward, 10 HS backward)
 * run in sgemm kernels, and the exponentials in cpu_exp_row over whole rows.
 * The causal mask and the window are applied to each row of a tile: the
 * part of the tile a row cannot see gets P = 0 (the tile on the diagonal
 * computes about twice the scores it keeps: at T = 256, QT = 64, 24% more
 * pairs than the causal ones, for whole-matrix sgemm calls).
 * Forward: the keys of a query tile are taken KB at a time with an online
 * softmax: with the running row max m, sum l and accumulator O, a key block
 * with a larger max m' first rescales l and O by exp(m - m'). At T <= KB
 * there is one block and no rescaling.
 * Each sgemm call's bits depend only on its operands (one thread, fixed
 * shapes), and every task runs in a fixed order, so results are bit-identical
 * for any thread count. */

/* OpenBLAS's thread count is process-wide; our tasks run on OpenMP threads. */
static void blas_one_thread(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

/* Row r of a tile (query t = t0 + r of row b) sees the keys [ks + lo, ks + hi)
 * of the block [ks, ke), 0 <= lo <= hi <= ke - ks; lo = hi = 0 when none (a
 * packed row's example may start after the block's end). */
static inline void row_keys(const struct attn_shape *d, int b, int t, int ks, int ke, int *lo,
                            int *hi)
{
    int a = key_lo(d, b, t), e = t + 1;
    a = a > ks ? a : ks;
    e = e < ke ? e : ke;
    *lo = e > a ? a - ks : 0;
    *hi = e > a ? e - ks : 0;
}

/* Forward of one tile: queries t0 .. t0+nr-1 of head h. ws: S (QT x KB),
 * acc (QT x HS), m, l (QT). */
static void attn_fwd_gemm(const struct attn_shape *d, float *out, float *lse, const float *q,
                          const float *k, const float *v, int b, int h, int t0, float *ws)
{
    int g = h / (d->NH / d->NKV), HS = d->HS;
    int ldq = d->NH * HS, ldk = d->NKV * HS;
    int nr = d->T - t0 < QT ? d->T - t0 : QT;
    float *S = ws, *acc = S + (size_t)QT * KB, *m = acc + (size_t)QT * HS, *l = m + QT;
    for (int r = 0; r < nr; r++)
        m[r] = -INFINITY, l[r] = 0.0f;
    int klo = key_lo(d, b, t0), khi = t0 + nr; /* keys [klo, khi) */
    int first = 1;
    for (int ks = klo; ks < khi; ks += KB) {
        int ke = ks + KB < khi ? ks + KB : khi, nk = ke - ks;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, HS, d->scale,
                    q + qrow(d, b, t0, h), ldq, k + kvrow(d, b, ks, g), ldk, 0.0f, S, KB);
        for (int r = 0; r < nr; r++) {
            float *sr = S + (size_t)r * KB, *ar = acc + (size_t)r * HS;
            int lo, hi;
            row_keys(d, b, t0 + r, ks, ke, &lo, &hi);
            float mx = -INFINITY;
            for (int j = lo; j < hi; j++)
                mx = sr[j] > mx ? sr[j] : mx;
            if (mx > m[r]) { /* rescale what earlier blocks summed (nothing at first) */
                if (!first) {
                    float corr = expf(m[r] - mx); /* 0 when m = -inf */
                    l[r] *= corr;
                    for (int i = 0; i < HS; i++)
                        ar[i] *= corr;
                }
                m[r] = mx;
            }
            for (int j = 0; j < lo; j++)
                sr[j] = 0.0f;
            if (hi > lo)
                l[r] += (float)cpu_exp_row(sr + lo, sr + lo, hi - lo, 1.0f, m[r]);
            for (int j = hi; j < nk; j++)
                sr[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, HS, nk, 1.0f, S, KB,
                    v + kvrow(d, b, ks, g), ldk, first ? 0.0f : 1.0f, acc, HS);
        first = 0;
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + qrow(d, b, t0 + r, h), inv = 1.0f / l[r];
        const float *ar = acc + (size_t)r * HS;
        for (int i = 0; i < HS; i++)
            o[i] = ar[i] * inv;
        lse[lse_at(d, b, h, t0 + r)] = m[r] + logf(l[r]);
    }
}

/* Backward for kv head g of batch b (all its query heads): owns the dk, dv
 * rows of g and the dq rows of its heads. ws: P (QT x KB), dS (QT x KB),
 * D, lse (QT). */
static void attn_bwd_gemm(const struct attn_shape *d, float *dq, float *dk, float *dv,
                          const float *dout, const float *q, const float *k, const float *v,
                          const float *out, const float *lse, int b, int g, float *ws)
{
    int G = d->NH / d->NKV, HS = d->HS;
    int ldq = d->NH * HS, ldk = d->NKV * HS;
    float *P = ws, *dS = P + (size_t)QT * KB, *D = dS + (size_t)QT * KB, *lt = D + QT;
    for (int s = 0; s < d->T; s++) {
        memset(dk + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
        memset(dv + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
    }
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int t0 = 0; t0 < d->T; t0 += QT) {
            int nr = d->T - t0 < QT ? d->T - t0 : QT;
            const float *qt = q + qrow(d, b, t0, h), *got = dout + qrow(d, b, t0, h);
            float *dqt = dq + qrow(d, b, t0, h);
            for (int r = 0; r < nr; r++) {
                D[r] = vdot(dout + qrow(d, b, t0 + r, h), out + qrow(d, b, t0 + r, h), HS);
                lt[r] = lse[lse_at(d, b, h, t0 + r)];
            }
            int klo = key_lo(d, b, t0), khi = t0 + nr, first = 1;
            for (int ks = klo; ks < khi; ks += KB) {
                int ke = ks + KB < khi ? ks + KB : khi, nk = ke - ks;
                const float *kb = k + kvrow(d, b, ks, g), *vb = v + kvrow(d, b, ks, g);
                /* P = exp(scale Q K^T - lse) where visible; dP = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, HS, d->scale, qt, ldq,
                            kb, ldk, 0.0f, P, KB);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, HS, 1.0f, got, ldq,
                            vb, ldk, 0.0f, dS, KB);
                for (int r = 0; r < nr; r++) {
                    float *pr = P + (size_t)r * KB, *sr = dS + (size_t)r * KB;
                    int lo, hi;
                    row_keys(d, b, t0 + r, ks, ke, &lo, &hi);
                    if (hi > lo)
                        cpu_exp_row(pr + lo, pr + lo, hi - lo, 1.0f, lt[r]);
                    for (int j = 0; j < lo; j++)
                        pr[j] = 0.0f;
                    for (int j = hi; j < nk; j++)
                        pr[j] = 0.0f;
                    /* dS = P (dP - D) scale (0 where P is) */
                    float Dr = D[r], sc = d->scale;
#pragma omp simd
                    for (int j = 0; j < nk; j++)
                        sr[j] = pr[j] * (sr[j] - Dr) * sc;
                }
                /* dV += P^T dO;  dQ (+)= dS K;  dK += dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nr, 1.0f, P, KB, got,
                            ldq, 1.0f, dv + kvrow(d, b, ks, g), ldk);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, HS, nk, 1.0f, dS, KB,
                            kb, ldk, first ? 0.0f : 1.0f, dqt, ldq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nr, 1.0f, dS, KB, qt,
                            ldq, 1.0f, dk + kvrow(d, b, ks, g), ldk);
                first = 0;
            }
        }
    }
}

int cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                          const float *v, const int32_t *pos, int B, int T, int NH, int NKV, int HS,
                          int window, float scale)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("attention_forward", B, T, NH, NKV, HS);
    if (rc || (pos && (rc = cpu_check_packed("attention_forward", pos, B, T))))
        return rc;
    if (window < 0)
        return llm_err(LLM_EINVAL, "attention_forward: window %d < 0", window);
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, window, scale, pos};
    int nt = c->threads;
    if (c->ref) {
        float *sc = scratch(nt, (size_t)T, "attention scores");
        if (!sc)
            return LLM_ENOMEM;
        CPU_PARFOR(nt,
            for (int bh = 0; bh < B * NH; bh++)
                attn_fwd_ref_head(&d, out, lse, q, k, v, bh / NH, bh % NH,
                                  sc + (size_t)omp_get_thread_num() * T););
        free(sc);
        return 0;
    }
    size_t nws = (size_t)QT * KB + (size_t)QT * HS + 2 * QT;
    float *ws = scratch(nt, nws, "attention scores");
    if (!ws)
        return LLM_ENOMEM;
    blas_one_thread();
    int ntile = (T + QT - 1) / QT;
    long ntask = (long)B * NH * ntile;
    CPU_PARFOR_DYNAMIC(nt,
        for (long task = 0; task < ntask; task++) {
            /* last tiles first: they are the longest (causal), so the tail balances */
            int tile = ntile - 1 - (int)(task % ntile);
            long bh = task / ntile;
            attn_fwd_gemm(&d, out, lse, q, k, v, (int)(bh / NH), (int)(bh % NH), tile * QT,
                          ws + (size_t)omp_get_thread_num() * nws);
        });
    free(ws);
    return 0;
}

int cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *out,
                           const float *lse, const int32_t *pos, int B, int T, int NH, int NKV,
                           int HS, int window, float scale)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("attention_backward", B, T, NH, NKV, HS);
    if (rc || (pos && (rc = cpu_check_packed("attention_backward", pos, B, T))))
        return rc;
    if (window < 0)
        return llm_err(LLM_EINVAL, "attention_backward: window %d < 0", window);
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, window, scale, pos};
    int nt = c->threads;
    if (c->ref) {
        CPU_PARFOR_DYNAMIC(nt,
            for (int bg = 0; bg < B * NKV; bg++)
                attn_bwd_ref_group(&d, dq, dk, dv, dout, q, k, v, out, lse, bg / NKV, bg % NKV););
        return 0;
    }
    size_t nws = 2 * (size_t)QT * KB + 2 * QT;
    float *ws = scratch(nt, nws, "attention gradient scores");
    if (!ws)
        return LLM_ENOMEM;
    blas_one_thread();
    CPU_PARFOR_DYNAMIC(nt,
        for (int bg = 0; bg < B * NKV; bg++)
            attn_bwd_gemm(&d, dq, dk, dv, dout, q, k, v, out, lse, bg / NKV, bg % NKV,
                          ws + (size_t)omp_get_thread_num() * nws););
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Linear attention. With phi(x) = elu(x) + 1 (x + 1 for x > 0, else e^x; its
 * derivative 1 for x > 0, else e^x), per query head h and its kv head g:
 *   Q_t = phi(q_t), K_s = phi(k_s)                           (HS)
 *   S_t = sum_{s<=t} K_s v_s^T    (HS x HS, S[i][j])   z_t = sum_{s<=t} K_s
 *   num_t = S_t^T Q_t, i.e. num_t[j] = sum_i Q_t[i] S_t[i][j];  den_t = Q_t . z_t
 *   out_t = num_t / den_t                    (den_t > 0 since phi > 0)
 *
 * Backward, with g_t = dout_t and L = sum_t g_t . out_t:
 *   dnum_t = g_t / den_t;  dden_t = -(g_t . num_t) / den_t^2 = -(g_t . out_t) / den_t
 *   dQ_t[i] = sum_j S_t[i][j] dnum_t[j] + dden_t z_t[i]
 *   dS_t = Q_t dnum_t^T;  dz_t = dden_t Q_t
 * S_t and z_t collect every s <= t, so key s receives the reverse-time sums
 *   R_s = sum_{t>=s} Q_t dnum_t^T (HS x HS),  r_s = sum_{t>=s} dden_t Q_t:
 *   dK_s[i] = sum_j R_s[i][j] v_s[j] + r_s[i];  dv_s[j] = sum_i K_s[i] R_s[i][j]
 * and dq = dQ * phi'(q), dk = dK * phi'(k). With GQA, dK and dv of kv head g
 * sum over its G query heads; since R and r enter linearly, one R and r
 * summed over those heads serve them all.
 * The backward runs two passes: forward in time rebuilding S_t, z_t (giving
 * dq, and den_t, dden_t saved per row, 2 T floats), then backward in time
 * accumulating R and r. Cost O(T HS^2) per head for both. */

static inline float phi(float x) { return x > 0 ? x + 1.0f : expf(x); }
static inline float dphi(float x) { return x > 0 ? 1.0f : expf(x); }

/* Linear attention forward, reference path: per (b, h), plain running sums.
 * ws: S (HS*HS), z (HS), Q (HS), K (HS). */
static void lin_fwd_ref_head(const struct attn_shape *d, float *out, const float *q,
                             const float *k, const float *v, int b, int h, float *ws)
{
    int HS = d->HS, g = h / (d->NH / d->NKV);
    float *S = ws, *z = S + (size_t)HS * HS, *Q = z + HS, *K = Q + HS;
    memset(S, 0, (size_t)HS * HS * sizeof(float));
    memset(z, 0, (size_t)HS * sizeof(float));
    for (int t = 0; t < d->T; t++) {
        const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
        const float *qt = q + qrow(d, b, t, h);
        for (int i = 0; i < HS; i++) {
            K[i] = phi(kt[i]);
            Q[i] = phi(qt[i]);
            z[i] += K[i];
            for (int j = 0; j < HS; j++)
                S[(size_t)i * HS + j] += K[i] * vt[j];
        }
        float den = 0;
        for (int i = 0; i < HS; i++)
            den += Q[i] * z[i];
        float *ot = out + qrow(d, b, t, h);
        for (int j = 0; j < HS; j++) {
            float num = 0;
            for (int i = 0; i < HS; i++)
                num += Q[i] * S[(size_t)i * HS + j];
            ot[j] = num / den;
        }
    }
}

/* Linear attention forward, default path: per (b, g), S and z built once for
 * the G query heads that share them. ws: S (HS*HS), z, Q, K, num (HS each). */
static void lin_fwd_group(const struct attn_shape *d, float *out, const float *q, const float *k,
                          const float *v, int b, int g, float *ws)
{
    int HS = d->HS, G = d->NH / d->NKV;
    float *S = ws, *z = S + (size_t)HS * HS, *Q = z + HS, *K = Q + HS, *num = K + HS;
    memset(S, 0, (size_t)HS * HS * sizeof(float));
    memset(z, 0, (size_t)HS * sizeof(float));
    for (int t = 0; t < d->T; t++) {
        const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
        for (int i = 0; i < HS; i++) {
            K[i] = phi(kt[i]);
            z[i] += K[i];
            vaxpy(S + (size_t)i * HS, K[i], vt, HS);
        }
        for (int h = g * G; h < (g + 1) * G; h++) {
            const float *qt = q + qrow(d, b, t, h);
            for (int i = 0; i < HS; i++)
                Q[i] = phi(qt[i]);
            float den = vdot(Q, z, HS), inv = 1.0f / den;
            memset(num, 0, (size_t)HS * sizeof(float));
            for (int i = 0; i < HS; i++)
                vaxpy(num, Q[i], S + (size_t)i * HS, HS);
            float *ot = out + qrow(d, b, t, h);
            for (int j = 0; j < HS; j++)
                ot[j] = num[j] * inv;
        }
    }
}

/* Linear attention backward, reference path: per (b, g), each query head h
 * in turn, the two passes above with plain loops. dk holds dK (phi space)
 * until the final multiply by phi'(k).
 * ws: S, R (HS*HS each), z, r, Q, K, num, dnum (HS each), den, dden (T each). */
static void lin_bwd_ref_group(const struct attn_shape *d, float *dq, float *dk, float *dv,
                              const float *dout, const float *q, const float *k, const float *v,
                              int b, int g, float *ws)
{
    int HS = d->HS, G = d->NH / d->NKV, T = d->T;
    size_t HH = (size_t)HS * HS;
    float *S = ws, *R = S + HH, *z = R + HH, *r = z + HS, *Q = r + HS, *K = Q + HS;
    float *num = K + HS, *dnum = num + HS, *den = dnum + HS, *dden = den + T;
    for (int t = 0; t < T; t++) {
        memset(dk + kvrow(d, b, t, g), 0, (size_t)HS * sizeof(float));
        memset(dv + kvrow(d, b, t, g), 0, (size_t)HS * sizeof(float));
    }
    for (int h = g * G; h < (g + 1) * G; h++) {
        /* forward in time: S_t, z_t -> out_t, dq_t, den_t, dden_t */
        memset(S, 0, HH * sizeof(float));
        memset(z, 0, (size_t)HS * sizeof(float));
        for (int t = 0; t < T; t++) {
            const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
            const float *qt = q + qrow(d, b, t, h), *gt = dout + qrow(d, b, t, h);
            for (int i = 0; i < HS; i++) {
                K[i] = phi(kt[i]);
                Q[i] = phi(qt[i]);
                z[i] += K[i];
                for (int j = 0; j < HS; j++)
                    S[(size_t)i * HS + j] += K[i] * vt[j];
            }
            den[t] = 0;
            for (int i = 0; i < HS; i++)
                den[t] += Q[i] * z[i];
            float gout = 0; /* g_t . out_t */
            for (int j = 0; j < HS; j++) {
                num[j] = 0;
                for (int i = 0; i < HS; i++)
                    num[j] += Q[i] * S[(size_t)i * HS + j];
                gout += gt[j] * (num[j] / den[t]);
            }
            dden[t] = -gout / den[t];
            float *dqt = dq + qrow(d, b, t, h);
            for (int i = 0; i < HS; i++) {
                float a = 0;
                for (int j = 0; j < HS; j++)
                    a += S[(size_t)i * HS + j] * (gt[j] / den[t]);
                dqt[i] = (a + dden[t] * z[i]) * dphi(qt[i]);
            }
        }
        /* backward in time: R_t, r_t -> dK_t, dv_t */
        memset(R, 0, HH * sizeof(float));
        memset(r, 0, (size_t)HS * sizeof(float));
        for (int t = T - 1; t >= 0; t--) {
            const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
            const float *qt = q + qrow(d, b, t, h), *gt = dout + qrow(d, b, t, h);
            for (int j = 0; j < HS; j++)
                dnum[j] = gt[j] / den[t];
            for (int i = 0; i < HS; i++) {
                Q[i] = phi(qt[i]);
                K[i] = phi(kt[i]);
                r[i] += dden[t] * Q[i];
                for (int j = 0; j < HS; j++)
                    R[(size_t)i * HS + j] += Q[i] * dnum[j];
            }
            float *dkt = dk + kvrow(d, b, t, g), *dvt = dv + kvrow(d, b, t, g);
            for (int i = 0; i < HS; i++) {
                float a = 0;
                for (int j = 0; j < HS; j++)
                    a += R[(size_t)i * HS + j] * vt[j];
                dkt[i] += a + r[i];
            }
            for (int j = 0; j < HS; j++) {
                float a = 0;
                for (int i = 0; i < HS; i++)
                    a += K[i] * R[(size_t)i * HS + j];
                dvt[j] += a;
            }
        }
    }
    for (int t = 0; t < T; t++) {
        const float *kt = k + kvrow(d, b, t, g);
        float *dkt = dk + kvrow(d, b, t, g);
        for (int i = 0; i < HS; i++)
            dkt[i] *= dphi(kt[i]);
    }
}

/* Linear attention backward, default path: per (b, g), S and z rebuilt once
 * for all G query heads, and one R, r summed over them (see above).
 * ws: S, R (HS*HS each), z, r, Q, K, num, dnum (HS each), den, dden (G*T each). */
static void lin_bwd_group(const struct attn_shape *d, float *dq, float *dk, float *dv,
                          const float *dout, const float *q, const float *k, const float *v, int b,
                          int g, float *ws)
{
    int HS = d->HS, G = d->NH / d->NKV, T = d->T;
    size_t HH = (size_t)HS * HS;
    float *S = ws, *R = S + HH, *z = R + HH, *r = z + HS, *Q = r + HS, *K = Q + HS;
    float *num = K + HS, *dnum = num + HS, *den = dnum + HS, *dden = den + (size_t)G * T;
    memset(S, 0, HH * sizeof(float));
    memset(z, 0, (size_t)HS * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
        for (int i = 0; i < HS; i++) {
            K[i] = phi(kt[i]);
            z[i] += K[i];
            vaxpy(S + (size_t)i * HS, K[i], vt, HS);
        }
        for (int hh = 0; hh < G; hh++) {
            int h = g * G + hh;
            const float *qt = q + qrow(d, b, t, h), *gt = dout + qrow(d, b, t, h);
            for (int i = 0; i < HS; i++)
                Q[i] = phi(qt[i]);
            float dn = vdot(Q, z, HS), inv = 1.0f / dn;
            memset(num, 0, (size_t)HS * sizeof(float));
            for (int i = 0; i < HS; i++)
                vaxpy(num, Q[i], S + (size_t)i * HS, HS);
            for (int j = 0; j < HS; j++)
                dnum[j] = gt[j] * inv;
            /* g . out = sum_j g_j num_j / den = dnum . num */
            float dd = -vdot(dnum, num, HS) * inv;
            den[(size_t)hh * T + t] = dn;
            dden[(size_t)hh * T + t] = dd;
            float *dqt = dq + qrow(d, b, t, h);
            for (int i = 0; i < HS; i++)
                dqt[i] = (vdot(S + (size_t)i * HS, dnum, HS) + dd * z[i]) * dphi(qt[i]);
        }
    }
    memset(R, 0, HH * sizeof(float));
    memset(r, 0, (size_t)HS * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        for (int hh = 0; hh < G; hh++) {
            int h = g * G + hh;
            const float *qt = q + qrow(d, b, t, h), *gt = dout + qrow(d, b, t, h);
            float inv = 1.0f / den[(size_t)hh * T + t], dd = dden[(size_t)hh * T + t];
            for (int j = 0; j < HS; j++)
                dnum[j] = gt[j] * inv;
            for (int i = 0; i < HS; i++) {
                float Qi = phi(qt[i]);
                r[i] += dd * Qi;
                vaxpy(R + (size_t)i * HS, Qi, dnum, HS);
            }
        }
        const float *kt = k + kvrow(d, b, t, g), *vt = v + kvrow(d, b, t, g);
        float *dkt = dk + kvrow(d, b, t, g), *dvt = dv + kvrow(d, b, t, g);
        memset(dvt, 0, (size_t)HS * sizeof(float));
        for (int i = 0; i < HS; i++) {
            float dK = vdot(R + (size_t)i * HS, vt, HS) + r[i];
            dkt[i] = dK * dphi(kt[i]);
            vaxpy(dvt, phi(kt[i]), R + (size_t)i * HS, HS);
        }
    }
}

/* Floats of per-thread scratch for the linear attention ops. */
static size_t lin_ws_floats(int HS, int G, int T)
{
    return 2 * (size_t)HS * HS + 6 * (size_t)HS + 2 * (size_t)G * T;
}

int cpu_linear_attention_forward(void *ctx, float *out, const float *q, const float *k,
                                 const float *v, int B, int T, int NH, int NKV, int HS)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("linear_attention_forward", B, T, NH, NKV, HS);
    if (rc)
        return rc;
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, 0, 1.0f, NULL};
    int nt = c->threads;
    size_t n = lin_ws_floats(HS, 0, 0);
    float *ws = scratch(nt, n, "linear attention state");
    if (!ws)
        return LLM_ENOMEM;
    if (c->ref) {
        CPU_PARFOR_DYNAMIC(nt,
            for (int bh = 0; bh < B * NH; bh++)
                lin_fwd_ref_head(&d, out, q, k, v, bh / NH, bh % NH,
                                 ws + (size_t)omp_get_thread_num() * n););
    } else {
        CPU_PARFOR_DYNAMIC(nt,
            for (int bg = 0; bg < B * NKV; bg++)
                lin_fwd_group(&d, out, q, k, v, bg / NKV, bg % NKV,
                              ws + (size_t)omp_get_thread_num() * n););
    }
    free(ws);
    return 0;
}

int cpu_linear_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, int B, int T,
                                  int NH, int NKV, int HS)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("linear_attention_backward", B, T, NH, NKV, HS);
    if (rc)
        return rc;
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, 0, 1.0f, NULL};
    int nt = c->threads;
    size_t n = lin_ws_floats(HS, c->ref ? 1 : NH / NKV, T);
    float *ws = scratch(nt, n, "linear attention gradient state");
    if (!ws)
        return LLM_ENOMEM;
    CPU_PARFOR_DYNAMIC(nt,
        for (int bg = 0; bg < B * NKV; bg++) {
            float *w = ws + (size_t)omp_get_thread_num() * n;
            if (c->ref)
                lin_bwd_ref_group(&d, dq, dk, dv, dout, q, k, v, bg / NKV, bg % NKV, w);
            else
                lin_bwd_group(&d, dq, dk, dv, dout, q, k, v, bg / NKV, bg % NKV, w);
        });
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding, HF rotate_half layout. With n = rot_dims / 2, channel
 * pairs (x_i, x_{i+n}) for i < n turn by a = p * theta^(-2i/rot_dims) at the
 * token's position p (pos0 + t, or pos0 + pos[b,t] when packed):
 *   x_i' = x_i cos a - x_{i+n} sin a;  x_{i+n}' = x_{i+n} cos a + x_i sin a.
 * Channels >= rot_dims pass through. The rotation is orthogonal, so the
 * backward (its transpose) is the rotation by -a (the sines negated, which
 * commutes with rounding them). Angles, cosines and sines are computed in
 * double and rounded once to float: per call for the positions it uses
 * (ctx->ref, the oracle), or once per position into a table the ctx keeps
 * for the last CPU_ROPE_TABLES (theta, rot_dims) pairs, grown as positions
 * come (the same numbers: the angle is the same double product). Decode
 * rotates one position in 2 L calls; computing its n sincos and powers each
 * time was 2.5 us a call (61 us of a 110M step, 0.7%). */

/* Rows lo .. hi-1 of the table of (theta, rot) into out (row p at
 * out + (p - lo) rot: n cosines, n sines). */
static void rope_rows(const struct cpu_ctx *c, float *out, double theta, int rot, int lo, int hi)
{
    int n = rot / 2;
    double freq[n];
    for (int i = 0; i < n; i++)
        freq[i] = pow(theta, -2.0 * i / rot);
    /* a sincos costs some 20 multiply-adds; decode (one row) stays on one thread */
    CPU_PARFOR(cpu_nthreads(c, (size_t)(hi - lo) * n * 20),
        for (int p = lo; p < hi; p++)
            for (int i = 0; i < n; i++) {
                double sa, ca;
                sincos((double)p * freq[i], &sa, &ca);
                out[(size_t)(p - lo) * rot + i] = (float)ca;
                out[(size_t)(p - lo) * rot + n + i] = (float)sa;
            });
}

/* The most a kept table holds. */
#define ROPE_TABLE_BYTES ((size_t)32 << 20)

/* The kept table of (theta, rot) covering positions 0 .. upto-1 (grown or
 * made, replacing the least recently used), or NULL when it would pass
 * ROPE_TABLE_BYTES or memory runs out (the caller then computes its own). */
static const float *rope_table(struct cpu_ctx *c, float theta, int rot, long upto)
{
    size_t row = (size_t)rot * sizeof(float);
    if (upto > (long)(ROPE_TABLE_BYTES / row))
        return NULL;
    struct cpu_rope_table *t = NULL;
    c->rope_calls++;
    for (int i = 0; i < CPU_ROPE_TABLES && !t; i++)
        if (c->rope[i].cs && c->rope[i].theta == theta && c->rope[i].rot == rot)
            t = &c->rope[i];
    if (!t) {
        t = &c->rope[0];
        for (int i = 1; i < CPU_ROPE_TABLES; i++)
            if (c->rope[i].used < t->used)
                t = &c->rope[i];
        free(t->cs);
        *t = (struct cpu_rope_table){theta, rot, 0, NULL, 0};
    }
    t->used = c->rope_calls;
    if (upto > t->npos) {
        /* double the rows (at least 256) so a decode grows it log-many times */
        long want = upto > 2L * t->npos ? upto : 2L * t->npos;
        want = want < 256 ? 256 : want;
        if (want > (long)(ROPE_TABLE_BYTES / row))
            want = upto;
        float *cs = realloc(t->cs, (size_t)want * row);
        if (!cs)
            return NULL;
        rope_rows(c, cs + (size_t)t->npos * rot, theta, rot, t->npos, (int)want);
        t->cs = cs;
        t->npos = (int)want;
    }
    return t->cs;
}

static int rope(struct cpu_ctx *c, float *x, const int32_t *pos, int B, int T, int H, int HS,
                int rot_dims, float theta, int pos0, float sign, const char *op)
{
    if (B < 0 || T < 0 || H <= 0 || HS <= 0)
        return llm_err(LLM_EINVAL, "%s: bad shape B=%d T=%d H=%d HS=%d", op, B, T, H, HS);
    if (rot_dims <= 0 || rot_dims % 2 || rot_dims > HS)
        return llm_err(LLM_EINVAL, "%s: rot_dims %d must be even and in 2..HS=%d", op, rot_dims,
                       HS);
    if (!(theta > 0) || !isfinite(theta))
        return llm_err(LLM_EINVAL, "%s: theta %g must be positive", op, (double)theta);
    if (pos0 < 0)
        return llm_err(LLM_EINVAL, "%s: pos0 %d < 0", op, pos0);
    int n = rot_dims / 2, P = T;
    if (pos) {
        P = 0;
        for (size_t r = 0; r < (size_t)B * T; r++) {
            if (pos[r] < 0 || pos[r] > INT32_MAX - 1 - pos0)
                return llm_err(LLM_EINVAL, "%s: position %d out of range at row %zu", op,
                               (int)pos[r], r);
            P = pos[r] + 1 > P ? pos[r] + 1 : P;
        }
    }
    if (B == 0 || T == 0)
        return 0;
    /* rows for positions pos0 .. pos0 + P - 1: the kept table (from
     * position 0), or this call's own (from pos0) */
    const float *tab = c->ref ? NULL : rope_table(c, theta, rot_dims, (long)pos0 + P);
    float *own = NULL;
    int base = 0;
    if (!tab) {
        if (!(own = llm_malloc((size_t)P * rot_dims * sizeof(float), "rope table")))
            return LLM_ENOMEM;
        rope_rows(c, own, theta, rot_dims, pos0, pos0 + P);
        tab = own, base = pos0;
    }
    long rows = (long)B * T;
    CPU_PARFOR(cpu_nthreads(c, (size_t)rows * H * rot_dims),
        for (long r = 0; r < rows; r++) {
            int p = pos0 - base + (pos ? pos[r] : (int)(r % T));
            const float *cr = tab + (size_t)p * rot_dims, *sr = cr + n;
            for (int h = 0; h < H; h++) {
                float *xr = x + ((size_t)r * H + h) * HS;
                for (int i = 0; i < n; i++) {
                    float x0 = xr[i], x1 = xr[i + n], s = sign * sr[i];
                    xr[i] = x0 * cr[i] - x1 * s;
                    xr[i + n] = x1 * cr[i] + x0 * s;
                }
            }
        });
    free(own);
    return 0;
}

int cpu_rope_forward(void *ctx, float *x, const int32_t *pos, int B, int T, int H, int HS,
                     int rot_dims, float theta, int pos0)
{
    return rope(ctx, x, pos, B, T, H, HS, rot_dims, theta, pos0, 1.0f, "rope_forward");
}

int cpu_rope_backward(void *ctx, float *dx, const int32_t *pos, int B, int T, int H, int HS,
                      int rot_dims, float theta, int pos0)
{
    return rope(ctx, dx, pos, B, T, H, HS, rot_dims, theta, pos0, -1.0f, "rope_backward");
}
