/* cpu_kv.c: attention_cached (backend.h), the attention of a few new queries
 * of one sequence over its key/value cache, a ring when a sliding window
 * bounds what a query sees. lib/infer calls it per sequence in prefill and
 * decode.
 *
 * Math, per query t (position p = pos0 + t) and query head h (kv head
 * g = h / (NH / NKV)), keys s in lo(p) .. p, lo(p) = max(0, p - window + 1)
 * (0 without a window), each at ring row s % cap:
 *   x_s = scale q_t . k_s;  m = max_s x_s;  e_s = exp(x_s - m);  l = sum_s e_s
 *   out_t = sum_s e_s v_s / l
 * (exact softmax with the max subtracted: no online rescaling, the scores of
 * one query fit in cap floats).
 *
 * Threads and determinism: OpenMP over (query, kv head) tasks; a task owns
 * the output rows of the G = NH / NKV query heads of its kv head and walks
 * the keys in position order, so every output element is computed by one
 * thread in an order fixed by its own position and window: bit-identical for
 * any thread count and any Tq (a query decoded alone or within a prefill
 * chunk gives the same bits). Grouping the G heads reads each cached key and
 * value row once per group rather than once per head: at decode (Tq = 1)
 * the op streams the whole cache and is memory-bound. With fewer (query, kv
 * head) pairs than threads (MQA or few kv heads at decode) tasks take one
 * query head each instead, which changes no bit.
 *
 * ctx->ref = 1: plain float loops per (query, head) with libm's expf and a
 * division by l, the oracle the default path is tested against. The default
 * path uses AVX2 + FMA dot products and axpys where the CPU has them (plain
 * `omp simd` loops otherwise) and cpu_exp_row for the exponentials. */
#include "cpu_impl.h"
#include "core/err.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma")))

/* Shapes of one call. */
struct kv_shape {
    int Tq, pos0, cap, NH, NKV, HS, window;
    float scale;
};

/* First key position query position p sees. */
static inline int first_key(int p, int window)
{
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* ---- reference path: one (query, head) ---- */
static void kv_ref_head(const struct kv_shape *d, float *out, const float *q, const float *k,
                        const float *v, int t, int h, float *sc /* (cap) */)
{
    int HS = d->HS, g = h / (d->NH / d->NKV), p = d->pos0 + t, lo = first_key(p, d->window);
    size_t ld = (size_t)d->NKV * HS;
    const float *qt = q + ((size_t)t * d->NH + h) * HS;
    float m = -INFINITY;
    for (int s = lo; s <= p; s++) {
        const float *ks = k + (size_t)(s % d->cap) * ld + (size_t)g * HS;
        float x = 0;
        for (int i = 0; i < HS; i++)
            x += qt[i] * ks[i];
        sc[s - lo] = x * d->scale;
        if (sc[s - lo] > m)
            m = sc[s - lo];
    }
    float l = 0;
    for (int s = lo; s <= p; s++) {
        sc[s - lo] = expf(sc[s - lo] - m);
        l += sc[s - lo];
    }
    float *ot = out + ((size_t)t * d->NH + h) * HS;
    for (int i = 0; i < HS; i++) {
        float o = 0;
        for (int s = lo; s <= p; s++)
            o += sc[s - lo] * v[(size_t)(s % d->cap) * ld + (size_t)g * HS + i];
        ot[i] = o / l;
    }
}

/* ---- default path: vector kernels ---- */

/* x . y over n floats: 8 lanes of FMAs, then the lanes and the tail summed
 * in a fixed order (the bits depend only on n and the values). */
AVX2_FN static float dot_avx2(const float *x, const float *y, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

/* y += a x over n floats. */
AVX2_FN static void axpy_avx2(float *restrict y, float a, const float *restrict x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static float dot_plain(const float *x, const float *y, int n)
{
    float a = 0;
#pragma omp simd reduction(+ : a)
    for (int i = 0; i < n; i++)
        a += x[i] * y[i];
    return a;
}

static void axpy_plain(float *restrict y, float a, const float *restrict x, int n)
{
#pragma omp simd
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* One task: query t, query heads h0 .. h0+G-1 (all of one kv head g, or a
 * part). Each head's arithmetic is the same whatever G, so how heads are
 * grouped into tasks never changes a bit. sc: (G, cap) scores, then (G) the
 * inverse sums. */
static void kv_group(const struct kv_shape *d, float *out, const float *q, const float *k,
                     const float *v, int t, int h0, int G, float *sc, int avx2)
{
    int HS = d->HS, g = h0 / (d->NH / d->NKV), cap = d->cap, p = d->pos0 + t;
    int lo = first_key(p, d->window), n = p - lo + 1;
    size_t ld = (size_t)d->NKV * HS;
    const float *qg = q + ((size_t)t * d->NH + h0) * HS; /* (G, HS) */
    float *og = out + ((size_t)t * d->NH + h0) * HS;
    const float *kg = k + (size_t)g * HS, *vg = v + (size_t)g * HS;
    /* scores, walking the ring from slot lo % cap */
    for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *ks = kg + (size_t)slot * ld;
        for (int hh = 0; hh < G; hh++) {
            const float *qh = qg + (size_t)hh * HS;
            sc[(size_t)hh * cap + j] = (avx2 ? dot_avx2(qh, ks, HS) : dot_plain(qh, ks, HS)) * d->scale;
        }
    }
    float *inv = sc + (size_t)G * cap;
    for (int hh = 0; hh < G; hh++) {
        float *sh = sc + (size_t)hh * cap, m = sh[0];
        for (int j = 1; j < n; j++)
            m = sh[j] > m ? sh[j] : m;
        inv[hh] = (float)(1.0 / cpu_exp_row(sh, sh, n, 1.0f, m));
    }
    memset(og, 0, (size_t)G * HS * sizeof(float));
    for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *vs = vg + (size_t)slot * ld;
        for (int hh = 0; hh < G; hh++) {
            float e = sc[(size_t)hh * cap + j];
            if (avx2)
                axpy_avx2(og + (size_t)hh * HS, e, vs, HS);
            else
                axpy_plain(og + (size_t)hh * HS, e, vs, HS);
        }
    }
    for (int hh = 0; hh < G; hh++) {
        float *o = og + (size_t)hh * HS, a = inv[hh];
#pragma omp simd
        for (int i = 0; i < HS; i++)
            o[i] *= a;
    }
}

int cpu_attention_cached(void *ctx, float *out, const float *q, const float *k, const float *v,
                         int Tq, int pos0, int cap, int NH, int NKV, int HS, int window,
                         float scale)
{
    const struct cpu_ctx *c = ctx;
    if (Tq < 0 || pos0 < 0 || cap <= 0 || NH <= 0 || NKV <= 0 || HS <= 0 || NH % NKV || window < 0)
        return llm_err(LLM_EINVAL,
                       "attention_cached: bad shape Tq=%d pos0=%d cap=%d NH=%d NKV=%d HS=%d "
                       "window=%d (NH must be a multiple of NKV)",
                       Tq, pos0, cap, NH, NKV, HS, window);
    if (Tq == 0)
        return 0;
    /* the ring must hold every key a query sees when all Tq rows are written:
     * the whole sequence, or with a window the last window + Tq - 1 positions */
    if ((long)pos0 + Tq > cap && !(window > 0 && (long)window + Tq - 1 <= cap))
        return llm_err(LLM_EINVAL,
                       "attention_cached: a cache of %d rows cannot hold the keys of %d queries at "
                       "positions %d.. (window %d)",
                       cap, Tq, pos0, window);
    struct kv_shape d = {Tq, pos0, cap, NH, NKV, HS, window, scale};
    /* scores of one task: at most min(cap, pos0 + Tq) keys per head */
    int G = NH / NKV, nk = (long)pos0 + Tq < cap ? pos0 + Tq : cap;
    size_t work = (size_t)Tq * NH * (size_t)nk * HS;
    int nt = c->ref ? c->threads : cpu_nthreads(c, work);
    size_t per = c->ref ? (size_t)cap : (size_t)G * cap + G;
    float *ws = llm_malloc((size_t)nt * per * sizeof(float), "attention_cached scores");
    if (!ws)
        return LLM_ENOMEM;
    if (c->ref) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (long th = 0; th < (long)Tq * NH; th++)
            kv_ref_head(&d, out, q, k, v, (int)(th / NH), (int)(th % NH),
                        ws + (size_t)omp_get_thread_num() * per);
    } else {
        int avx2 = cpu_has_avx2();
        /* tasks of a whole kv group (its keys read once), or of one head when
         * there are too few groups to keep the threads busy (MQA decode) */
        int hb = (long)Tq * NKV >= nt ? G : 1, nb = NH / hb;
        /* later queries see more keys: dynamic scheduling balances the tail */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (long tb = 0; tb < (long)Tq * nb; tb++)
            kv_group(&d, out, q, k, v, (int)(tb / nb), (int)(tb % nb) * hb, hb,
                     ws + (size_t)omp_get_thread_num() * per, avx2);
    }
    free(ws);
    return 0;
}
