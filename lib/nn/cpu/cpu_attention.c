/* cpu_attention.c: the CPU backend's attention ops: causal softmax attention
 * (GQA, sliding window), causal linear attention, and rotary embeddings. */
#include "cpu_impl.h"
#include "core/err.h"

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
 * path processes 4 query rows at a time against each key (one load of a key,
 * value or gradient row serves 4 queries) over tiles of QT queries x KT keys
 * (a key tile stays in cache across the query tile), with vectorized inner
 * loops and, in the forward, an online (streaming) softmax. */

enum {
    MR = 4,  /* query rows of a micro block (dot4 and the 4-row updates) */
    QT = 16, /* query rows of a tile (a multiple of MR) */
    KT = 32, /* keys of a tile */
};

struct attn_shape {
    int B, T, NH, NKV, HS, window;
    float scale;
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

/* First key that query t sees: 0, or t - window + 1 with a sliding window. */
static inline int key_lo(int t, int window)
{
    return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
}

static inline int key_visible(int s, int t, int window)
{
    return s <= t && s >= key_lo(t, window);
}

static int check_shape(const char *op, int B, int T, int NH, int NKV, int HS)
{
    if (B < 0 || T < 0 || NH <= 0 || NKV <= 0 || HS <= 0 || NH % NKV)
        return llm_err(LLM_EINVAL,
                       "%s: bad shape B=%d T=%d NH=%d NKV=%d HS=%d (NH must be a multiple of NKV)",
                       op, B, T, NH, NKV, HS);
    return 0;
}

/* out[r] = x . y[r] for the 4 rows y[0..3], n channels, vectorized over channels. */
static inline void dot4(float out[MR], const float *x, const float *const y[MR], int n)
{
    const float *y0 = y[0], *y1 = y[1], *y2 = y[2], *y3 = y[3];
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (int i = 0; i < n; i++) {
        a0 += x[i] * y0[i];
        a1 += x[i] * y1[i];
        a2 += x[i] * y2[i];
        a3 += x[i] * y3[i];
    }
    out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3;
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
        int lo = key_lo(t, d->window);
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
            for (int s = key_lo(t, d->window); s <= t; s++) {
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
/* Softmax attention, default path: one task is a tile of QT queries of head
 * h. Online softmax per row over key tiles: with the running max m, sum l
 * and accumulator acc = sum_s exp(x_s - m) v_s, a tile with max m' > m first
 * rescales l and acc by exp(m - m'), then adds its own terms. */

static void attn_fwd_tile(const struct attn_shape *d, float *out, float *lse, const float *q,
                          const float *k, const float *v, int b, int h, int t0,
                          float *acc /* (QT, HS) */)
{
    int g = h / (d->NH / d->NKV), HS = d->HS, W = d->window;
    int nr = d->T - t0 < QT ? d->T - t0 : QT; /* rows of this tile */
    const float *qr[QT];
    float m[QT], l[QT];
    for (int r = 0; r < QT; r++) {
        /* rows past the end read row t0 and are masked everywhere */
        qr[r] = q + qrow(d, b, t0 + (r < nr ? r : 0), h);
        m[r] = -INFINITY;
        l[r] = 0;
    }
    memset(acc, 0, (size_t)QT * HS * sizeof(float));
    int klo = key_lo(t0, W), khi = t0 + nr - 1;
    for (int ks = klo; ks <= khi; ks += KT) {
        int ke = ks + KT <= khi + 1 ? ks + KT : khi + 1;
        for (int mb = 0; mb < nr; mb += MR) {
            int tf = t0 + mb, tl = t0 + (mb + MR <= nr ? mb + MR : nr) - 1;
            if (ks > tl || ke - 1 < key_lo(tf, W))
                continue; /* this key tile is masked for all 4 rows */
            float sc[MR][KT], tmax[MR] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
            for (int s = ks; s < ke; s++) {
                float x[MR];
                dot4(x, k + kvrow(d, b, s, g), qr + mb, HS);
                for (int r = 0; r < MR; r++) {
                    int ok = mb + r < nr && key_visible(s, t0 + mb + r, W);
                    sc[r][s - ks] = ok ? x[r] * d->scale : -INFINITY;
                    if (sc[r][s - ks] > tmax[r])
                        tmax[r] = sc[r][s - ks];
                }
            }
            int any = 0;
            for (int r = 0; r < MR; r++) {
                if (tmax[r] == -INFINITY) { /* no visible key here: p = 0 */
                    for (int s = 0; s < ke - ks; s++)
                        sc[r][s] = 0;
                    continue;
                }
                any = 1;
                float *ar = acc + (size_t)(mb + r) * HS;
                if (tmax[r] > m[mb + r]) {
                    float corr = expf(m[mb + r] - tmax[r]); /* 0 when m = -inf */
                    l[mb + r] *= corr;
#pragma omp simd
                    for (int i = 0; i < HS; i++)
                        ar[i] *= corr;
                    m[mb + r] = tmax[r];
                }
                for (int s = 0; s < ke - ks; s++) {
                    sc[r][s] = expf(sc[r][s] - m[mb + r]);
                    l[mb + r] += sc[r][s];
                }
            }
            if (!any)
                continue;
            float *a0 = acc + (size_t)mb * HS, *a1 = a0 + HS, *a2 = a1 + HS, *a3 = a2 + HS;
            for (int s = ks; s < ke; s++) {
                const float *vs = v + kvrow(d, b, s, g);
                float p0 = sc[0][s - ks], p1 = sc[1][s - ks], p2 = sc[2][s - ks],
                      p3 = sc[3][s - ks];
#pragma omp simd
                for (int i = 0; i < HS; i++) {
                    a0[i] += p0 * vs[i];
                    a1[i] += p1 * vs[i];
                    a2[i] += p2 * vs[i];
                    a3[i] += p3 * vs[i];
                }
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + qrow(d, b, t0 + r, h), inv = 1.0f / l[r];
        const float *ar = acc + (size_t)r * HS;
#pragma omp simd
        for (int i = 0; i < HS; i++)
            o[i] = ar[i] * inv;
        lse[lse_at(d, b, h, t0 + r)] = m[r] + logf(l[r]);
    }
}

/* Backward, default path, for kv head g of batch b: the reference's math on
 * tiles of QT queries x KT keys, with p and ds formed for 4 queries per key
 * and one pass over k_s, v_s, dk_s, dv_s serving all 4. */
static void attn_bwd_group(const struct attn_shape *d, float *dq, float *dk, float *dv,
                           const float *dout, const float *q, const float *k, const float *v,
                           const float *out, const float *lse, int b, int g,
                           float *dqacc /* (QT, HS) */)
{
    int G = d->NH / d->NKV, HS = d->HS, W = d->window;
    for (int s = 0; s < d->T; s++) {
        memset(dk + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
        memset(dv + kvrow(d, b, s, g), 0, (size_t)HS * sizeof(float));
    }
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int t0 = 0; t0 < d->T; t0 += QT) {
            int nr = d->T - t0 < QT ? d->T - t0 : QT;
            const float *qr[QT], *dor[QT];
            float lt[QT], D[QT];
            for (int r = 0; r < QT; r++) {
                int t = t0 + (r < nr ? r : 0);
                qr[r] = q + qrow(d, b, t, h);
                dor[r] = dout + qrow(d, b, t, h);
                lt[r] = lse[lse_at(d, b, h, t)];
                D[r] = vdot(dor[r], out + qrow(d, b, t, h), HS);
            }
            memset(dqacc, 0, (size_t)QT * HS * sizeof(float));
            int klo = key_lo(t0, W), khi = t0 + nr - 1;
            for (int ks = klo; ks <= khi; ks += KT) {
                int ke = ks + KT <= khi + 1 ? ks + KT : khi + 1;
                for (int mb = 0; mb < nr; mb += MR) {
                    int tf = t0 + mb, tl = t0 + (mb + MR <= nr ? mb + MR : nr) - 1;
                    if (ks > tl || ke - 1 < key_lo(tf, W))
                        continue;
                    const float *q0 = qr[mb], *q1 = qr[mb + 1], *q2 = qr[mb + 2],
                                *q3 = qr[mb + 3];
                    const float *o0 = dor[mb], *o1 = dor[mb + 1], *o2 = dor[mb + 2],
                                *o3 = dor[mb + 3];
                    float *g0 = dqacc + (size_t)mb * HS, *g1 = g0 + HS, *g2 = g1 + HS,
                          *g3 = g2 + HS;
                    for (int s = ks; s < ke; s++) {
                        const float *kp = k + kvrow(d, b, s, g), *vp = v + kvrow(d, b, s, g);
                        float *dkp = dk + kvrow(d, b, s, g), *dvp = dv + kvrow(d, b, s, g);
                        float x[MR], dp[MR], p[MR], ds[MR];
                        dot4(x, kp, qr + mb, HS);
                        dot4(dp, vp, dor + mb, HS);
                        int any = 0;
                        for (int r = 0; r < MR; r++) {
                            int ok = mb + r < nr && key_visible(s, t0 + mb + r, W);
                            p[r] = ok ? expf(x[r] * d->scale - lt[mb + r]) : 0.0f;
                            ds[r] = ok ? d->scale * p[r] * (dp[r] - D[mb + r]) : 0.0f;
                            any |= ok;
                        }
                        if (!any)
                            continue;
#pragma omp simd
                        for (int i = 0; i < HS; i++) {
                            dvp[i] += p[0] * o0[i] + p[1] * o1[i] + p[2] * o2[i] + p[3] * o3[i];
                            dkp[i] += ds[0] * q0[i] + ds[1] * q1[i] + ds[2] * q2[i] +
                                      ds[3] * q3[i];
                            g0[i] += ds[0] * kp[i];
                            g1[i] += ds[1] * kp[i];
                            g2[i] += ds[2] * kp[i];
                            g3[i] += ds[3] * kp[i];
                        }
                    }
                }
            }
            for (int r = 0; r < nr; r++)
                memcpy(dq + qrow(d, b, t0 + r, h), dqacc + (size_t)r * HS,
                       (size_t)HS * sizeof(float));
        }
    }
}

int cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                          const float *v, int B, int T, int NH, int NKV, int HS, int window,
                          float scale)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("attention_forward", B, T, NH, NKV, HS);
    if (rc)
        return rc;
    if (window < 0)
        return llm_err(LLM_EINVAL, "attention_forward: window %d < 0", window);
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, window, scale};
    int nt = c->threads;
    if (c->ref) {
        float *sc = scratch(nt, (size_t)T, "attention scores");
        if (!sc)
            return LLM_ENOMEM;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int bh = 0; bh < B * NH; bh++)
            attn_fwd_ref_head(&d, out, lse, q, k, v, bh / NH, bh % NH,
                              sc + (size_t)omp_get_thread_num() * T);
        free(sc);
        return 0;
    }
    float *acc = scratch(nt, (size_t)QT * HS, "attention accumulators");
    if (!acc)
        return LLM_ENOMEM;
    int ntile = (T + QT - 1) / QT;
    long ntask = (long)B * NH * ntile;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long task = 0; task < ntask; task++) {
        /* last tiles first: they are the longest (causal), so the tail balances */
        int tile = ntile - 1 - (int)(task % ntile);
        long bh = task / ntile;
        attn_fwd_tile(&d, out, lse, q, k, v, (int)(bh / NH), (int)(bh % NH), tile * QT,
                      acc + (size_t)omp_get_thread_num() * QT * HS);
    }
    free(acc);
    return 0;
}

int cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *out,
                           const float *lse, int B, int T, int NH, int NKV, int HS, int window,
                           float scale)
{
    const struct cpu_ctx *c = ctx;
    int rc = check_shape("attention_backward", B, T, NH, NKV, HS);
    if (rc)
        return rc;
    if (window < 0)
        return llm_err(LLM_EINVAL, "attention_backward: window %d < 0", window);
    if (B == 0 || T == 0)
        return 0;
    struct attn_shape d = {B, T, NH, NKV, HS, window, scale};
    int nt = c->threads;
    if (c->ref) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int bg = 0; bg < B * NKV; bg++)
            attn_bwd_ref_group(&d, dq, dk, dv, dout, q, k, v, out, lse, bg / NKV, bg % NKV);
        return 0;
    }
    float *acc = scratch(nt, (size_t)QT * HS, "attention gradient accumulators");
    if (!acc)
        return LLM_ENOMEM;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int bg = 0; bg < B * NKV; bg++)
        attn_bwd_group(&d, dq, dk, dv, dout, q, k, v, out, lse, bg / NKV, bg % NKV,
                       acc + (size_t)omp_get_thread_num() * QT * HS);
    free(acc);
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
    struct attn_shape d = {B, T, NH, NKV, HS, 0, 1.0f};
    int nt = c->threads;
    size_t n = lin_ws_floats(HS, 0, 0);
    float *ws = scratch(nt, n, "linear attention state");
    if (!ws)
        return LLM_ENOMEM;
    if (c->ref) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int bh = 0; bh < B * NH; bh++)
            lin_fwd_ref_head(&d, out, q, k, v, bh / NH, bh % NH,
                             ws + (size_t)omp_get_thread_num() * n);
    } else {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int bg = 0; bg < B * NKV; bg++)
            lin_fwd_group(&d, out, q, k, v, bg / NKV, bg % NKV,
                          ws + (size_t)omp_get_thread_num() * n);
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
    struct attn_shape d = {B, T, NH, NKV, HS, 0, 1.0f};
    int nt = c->threads;
    size_t n = lin_ws_floats(HS, c->ref ? 1 : NH / NKV, T);
    float *ws = scratch(nt, n, "linear attention gradient state");
    if (!ws)
        return LLM_ENOMEM;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int bg = 0; bg < B * NKV; bg++) {
        float *w = ws + (size_t)omp_get_thread_num() * n;
        if (c->ref)
            lin_bwd_ref_group(&d, dq, dk, dv, dout, q, k, v, bg / NKV, bg % NKV, w);
        else
            lin_bwd_group(&d, dq, dk, dv, dout, q, k, v, bg / NKV, bg % NKV, w);
    }
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Rotary embedding, HF rotate_half layout. With n = rot_dims / 2, channel
 * pairs (x_i, x_{i+n}) for i < n turn by a = (pos0 + t) * theta^(-2i/rot_dims):
 *   x_i' = x_i cos a - x_{i+n} sin a;  x_{i+n}' = x_{i+n} cos a + x_i sin a.
 * Channels >= rot_dims pass through. The rotation is orthogonal, so the
 * backward (its transpose) is the rotation by -a. Angles, cosines and sines
 * are computed in double and rounded once to float. */

enum { ROPE_CHUNK = 64 }; /* frequencies per pass: a stack table of cos/sin */

static int rope(const struct cpu_ctx *c, float *x, int B, int T, int H, int HS, int rot_dims,
                float theta, int pos0, double sign, const char *op)
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
    int n = rot_dims / 2;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int t = 0; t < T; t++) {
        double pos = (double)pos0 + t;
        for (int i0 = 0; i0 < n; i0 += ROPE_CHUNK) {
            int i1 = i0 + ROPE_CHUNK < n ? i0 + ROPE_CHUNK : n;
            float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
            for (int i = i0; i < i1; i++) {
                double a = pos * pow((double)theta, -2.0 * i / rot_dims);
                cs[i - i0] = (float)cos(a);
                sn[i - i0] = (float)(sign * sin(a));
            }
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++) {
                    float *xr = x + (((size_t)b * T + t) * H + h) * HS;
                    for (int i = i0; i < i1; i++) {
                        float x0 = xr[i], x1 = xr[i + n];
                        xr[i] = x0 * cs[i - i0] - x1 * sn[i - i0];
                        xr[i + n] = x1 * cs[i - i0] + x0 * sn[i - i0];
                    }
                }
        }
    }
    return 0;
}

int cpu_rope_forward(void *ctx, float *x, int B, int T, int H, int HS, int rot_dims, float theta,
                     int pos0)
{
    return rope(ctx, x, B, T, H, HS, rot_dims, theta, pos0, 1.0, "rope_forward");
}

int cpu_rope_backward(void *ctx, float *dx, int B, int T, int H, int HS, int rot_dims, float theta,
                      int pos0)
{
    return rope(ctx, dx, B, T, H, HS, rot_dims, theta, pos0, -1.0, "rope_backward");
}
