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
 * path uses AVX2 + FMA where the CPU has them (plain `omp simd` loops
 * otherwise) and cpu_exp_row for the exponentials: the scores four keys at a
 * time (four FMA chains in flight), the weighted sum of values with its
 * accumulators in registers across the keys. Cost per (query, head) and key:
 * 4 HS FLOPs and 8 HS bytes of cache read (K and V rows), so at decode the
 * op streams the cache; per-key calls and loads/stores of the output row
 * had made it 2x slower than that (0.55-0.63 against 0.29-0.31 ms for 12
 * layers of 12 heads at position 250, 2 threads). */
#include "cpu_impl.h"
#include "core/err.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define AVX2_FN __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

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

/* The end of an AVX2 dot product x . y over n floats whose first i (a
 * multiple of 8) went through the 8-lane FMA chain acc: the lanes summed as
 * ((l0+l1) + (l2+l3)) + ((l4+l5) + (l6+l7)), then the tail products added
 * one by one (the bits depend only on n and the values). */
AVX2_INLINE float dot_finish(__m256 acc, const float *x, const float *y, int i, int n)
{
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

/* The scores of one task: sc[hh, j] = scale q_hh . k_(lo+j) for its G heads
 * and n keys from ring slot lo % cap. Four keys at a time, so four FMA
 * chains are in flight (one dot product of HS = 64 is a chain of 8
 * dependent FMAs: alone it waits on the FMA latency), each key's arithmetic
 * exactly that of one dot product (dot_finish), whatever its neighbours.
 * One call per task, not per key: the per-key call and its horizontal sum
 * used to be most of a decode step's attention time. */
AVX2_FN static void scores_avx2(const float *qg, const float *kg, size_t ld, int cap, int lo, int n, int G,
                                int HS, float scale, float *sc)
{
    int H8 = HS & ~7, slot = lo % cap, j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *ks[4];
        for (int u = 0; u < 4; u++) {
            ks[u] = kg + (size_t)slot * ld;
            slot = slot + 1 == cap ? 0 : slot + 1;
        }
        for (int hh = 0; hh < G; hh++) {
            const float *qh = qg + (size_t)hh * HS;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < H8; i += 8) {
                __m256 qv = _mm256_loadu_ps(qh + i);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(ks[0] + i), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(ks[1] + i), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(ks[2] + i), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(ks[3] + i), a3);
            }
            float *sh = sc + (size_t)hh * cap + j;
            sh[0] = dot_finish(a0, qh, ks[0], H8, HS) * scale;
            sh[1] = dot_finish(a1, qh, ks[1], H8, HS) * scale;
            sh[2] = dot_finish(a2, qh, ks[2], H8, HS) * scale;
            sh[3] = dot_finish(a3, qh, ks[3], H8, HS) * scale;
        }
    }
    for (; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *ks = kg + (size_t)slot * ld;
        for (int hh = 0; hh < G; hh++) {
            const float *qh = qg + (size_t)hh * HS;
            __m256 acc = _mm256_setzero_ps();
            for (int i = 0; i < H8; i += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(ks + i), acc);
            sc[(size_t)hh * cap + j] = dot_finish(acc, qh, ks, H8, HS) * scale;
        }
    }
}

/* o[c0 .. c0+8U-1] = sum over the n keys in order of e_j v_j (one FMA per
 * key and lane, from 0): U accumulators that stay in registers across the
 * keys. U is a constant at each call site. */
AVX2_INLINE void wsum_chunk(int U, float *o, const float *vg, size_t ld, int cap, int lo, int n,
                            const float *e, int c0)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int u = 0; u < U; u++)
        acc[u] = _mm256_setzero_ps();
    for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *vs = vg + (size_t)slot * ld + c0;
        __m256 ev = _mm256_set1_ps(e[j]);
#pragma GCC unroll 8
        for (int u = 0; u < U; u++)
            acc[u] = _mm256_fmadd_ps(ev, _mm256_loadu_ps(vs + 8 * u), acc[u]);
    }
#pragma GCC unroll 8
    for (int u = 0; u < U; u++)
        _mm256_storeu_ps(o + c0 + 8 * u, acc[u]);
}

/* og[hh] = sum_j e[hh, j] v_(lo+j) for the task's G heads (unnormalized):
 * per element the FMA chain over the keys in position order from 0, and for
 * the HS % 8 tail elements a multiply then an add per key. The vector part
 * goes in chunks of 64, 32, 16, 8 floats, each chunk's accumulators held in
 * registers across all keys (not loaded and stored once per key). */
AVX2_FN static void wsum_avx2(const float *vg, size_t ld, int cap, int lo, int n, int G, int HS,
                              const float *sc, float *og)
{
    int H8 = HS & ~7;
    for (int hh = 0; hh < G; hh++) {
        float *o = og + (size_t)hh * HS;
        const float *e = sc + (size_t)hh * cap;
        int c = 0;
        for (; c + 64 <= H8; c += 64)
            wsum_chunk(8, o, vg, ld, cap, lo, n, e, c);
        if (c + 32 <= H8)
            wsum_chunk(4, o, vg, ld, cap, lo, n, e, c), c += 32;
        if (c + 16 <= H8)
            wsum_chunk(2, o, vg, ld, cap, lo, n, e, c), c += 16;
        if (c + 8 <= H8)
            wsum_chunk(1, o, vg, ld, cap, lo, n, e, c), c += 8;
        for (int i = H8; i < HS; i++) {
            float y = 0;
            for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1)
                y += e[j] * vg[(size_t)slot * ld + i];
            o[i] = y;
        }
    }
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
    if (avx2)
        scores_avx2(qg, kg, ld, cap, lo, n, G, HS, d->scale, sc);
    else
        for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
            const float *ks = kg + (size_t)slot * ld;
            for (int hh = 0; hh < G; hh++)
                sc[(size_t)hh * cap + j] = dot_plain(qg + (size_t)hh * HS, ks, HS) * d->scale;
        }
    float *inv = sc + (size_t)G * cap;
    for (int hh = 0; hh < G; hh++) {
        float *sh = sc + (size_t)hh * cap, m = sh[0];
        for (int j = 1; j < n; j++)
            m = sh[j] > m ? sh[j] : m;
        inv[hh] = (float)(1.0 / cpu_exp_row(sh, sh, n, 1.0f, m));
    }
    if (avx2) {
        wsum_avx2(vg, ld, cap, lo, n, G, HS, sc, og);
    } else {
        memset(og, 0, (size_t)G * HS * sizeof(float));
        for (int j = 0, slot = lo % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
            const float *vs = vg + (size_t)slot * ld;
            for (int hh = 0; hh < G; hh++)
                axpy_plain(og + (size_t)hh * HS, sc[(size_t)hh * cap + j], vs, HS);
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
        CPU_PARFOR(nt,
            for (long th = 0; th < (long)Tq * NH; th++)
                kv_ref_head(&d, out, q, k, v, (int)(th / NH), (int)(th % NH),
                            ws + (size_t)omp_get_thread_num() * per););
    } else {
        int avx2 = cpu_has_avx2();
        /* tasks of a whole kv group (its keys read once), or of one head when
         * there are too few groups to keep the threads busy (MQA decode) */
        int hb = (long)Tq * NKV >= nt ? G : 1, nb = NH / hb;
        /* later queries see more keys: dynamic scheduling balances the tail */
        CPU_PARFOR_DYNAMIC(nt,
            for (long tb = 0; tb < (long)Tq * nb; tb++)
                kv_group(&d, out, q, k, v, (int)(tb / nb), (int)(tb % nb) * hb, hb,
                         ws + (size_t)omp_get_thread_num() * per, avx2););
    }
    free(ws);
    return 0;
}
