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
 * Queries that see more than KV_LONG keys go by blocks of keys instead
 * (below: the cache read row by row, a combine at the end); the rest of
 * this comment is about the others.
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

/* ---- long queries: key blocks, then a combine ----
 * A query that sees more than KV_LONG keys is split into blocks of key
 * positions: the first from its first key lo to the next multiple of
 * KV_BLOCK, then aligned blocks of KV_BLOCK, the last ending at p. The
 * blocks depend only on lo and p, so the bits stay those of the query alone
 * (any Tq, any thread count). A block task walks its keys in order reading
 * each cache row whole (all NH heads: NKV HS contiguous floats, where a
 * per-head walk reads a 4 HS-byte slice of every row, a stride the
 * prefetchers serve badly), and leaves per head its max m_b, the sum l_b of
 * exp(x - m_b) and the unnormalized o_b = sum exp(x - m_b) v. The combine
 * takes the blocks in order: M = max m_b, out = sum o_b e^(m_b - M) / sum
 * l_b e^(m_b - M) (the split softmax of flash-decoding; Dao et al. 2023). */
#define KV_BLOCK 256
/* Below this many keys a query keeps the per-head tasks: its cache is in L2
 * or L3 and those read it as fast. Measured (12 layers x 12 heads, HS 64,
 * decode, per layer, per-head tasks against blocks, 1 / 2 threads):
 * position 150 17 / 18 us against 22 / 37 (blocks lose: one block, one
 * thread), 300 58-61 / 46-47 against 70-97 / 52-62, 350 about even, 400 139 /
 * 74 against 69 / 42, 1000 358-370 / 226-233 against 189-223 / 110-145,
 * 2000 805-821 / 464-509 against 379-489 / 243-248 (the cache read at 50-56
 * GB/s with 2 threads, against 24-27). */
#define KV_LONG 384

/* Keys of query position p: lo .. p; its blocks' count and the b-th block. */
static inline int kv_nblocks(int lo, int p) { return p / KV_BLOCK - lo / KV_BLOCK + 1; }
static inline void kv_block_range(int lo, int p, int b, int *s0, int *s1)
{
    int a = (lo / KV_BLOCK + b) * KV_BLOCK;
    *s0 = a > lo ? a : lo;
    *s1 = a + KV_BLOCK - 1 < p ? a + KV_BLOCK - 1 : p; /* inclusive */
}

/* x . y over n floats: with AVX2 an 8-lane FMA chain and dot_finish. */
AVX2_FN static float dot_avx2(const float *x, const float *y, int n)
{
    int n8 = n & ~7;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n8; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
    return dot_finish(acc, x, y, n8, n);
}

/* y += a x over n floats: AVX2 FMAs, the tail multiply then add. */
AVX2_FN static void axpy_avx2(float *y, float a, const float *x, int n)
{
    int n8 = n & ~7, i = 0;
    __m256 av = _mm256_set1_ps(a);
    for (; i < n8; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* One block task: query t, keys s0 .. s1 (inclusive), all heads. sc: (NH,
 * KV_BLOCK) scores; part: (NH) m, (NH) l, (NH, HS) o. */
static void kv_block(const struct kv_shape *d, const float *q, const float *k, const float *v, int t,
                     int s0, int s1, float *sc, float *part, int avx2)
{
    int NH = d->NH, HS = d->HS, G = NH / d->NKV, cap = d->cap, n = s1 - s0 + 1;
    size_t ld = (size_t)d->NKV * HS;
    const float *qt = q + (size_t)t * NH * HS;
    float *m = part, *l = part + NH, *o = part + 2 * NH;
    for (int j = 0, slot = s0 % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *kr = k + (size_t)slot * ld;
        for (int h = 0; h < NH; h++) {
            const float *qh = qt + (size_t)h * HS, *kh = kr + (size_t)(h / G) * HS;
            sc[(size_t)h * KV_BLOCK + j] = (avx2 ? dot_avx2(qh, kh, HS) : dot_plain(qh, kh, HS)) * d->scale;
        }
    }
    for (int h = 0; h < NH; h++) {
        float *sh = sc + (size_t)h * KV_BLOCK, mh = sh[0];
        for (int j = 1; j < n; j++)
            mh = sh[j] > mh ? sh[j] : mh;
        m[h] = mh;
        l[h] = (float)cpu_exp_row(sh, sh, n, 1.0f, mh);
    }
    memset(o, 0, (size_t)NH * HS * sizeof(float));
    for (int j = 0, slot = s0 % cap; j < n; j++, slot = slot + 1 == cap ? 0 : slot + 1) {
        const float *vr = v + (size_t)slot * ld;
        for (int h = 0; h < NH; h++) {
            float e = sc[(size_t)h * KV_BLOCK + j];
            const float *vh = vr + (size_t)(h / G) * HS;
            if (avx2)
                axpy_avx2(o + (size_t)h * HS, e, vh, HS);
            else
                axpy_plain(o + (size_t)h * HS, e, vh, HS);
        }
    }
}

/* out (NH, HS) of one query from its nb block partials, in block order. */
static void kv_combine(float *out, const float *parts, int nb, int NH, int HS)
{
    size_t pw = (size_t)NH * (HS + 2);
    for (int h = 0; h < NH; h++) {
        float M = parts[h];
        for (int b = 1; b < nb; b++)
            M = parts[b * pw + h] > M ? parts[b * pw + h] : M;
        float *oh = out + (size_t)h * HS;
        double L = 0;
        memset(oh, 0, (size_t)HS * sizeof(float));
        for (int b = 0; b < nb; b++) {
            const float *pb = parts + b * pw;
            float f = expf(pb[h] - M);
            L += (double)pb[NH + h] * f;
            const float *ob = pb + 2 * NH + (size_t)h * HS;
            for (int i = 0; i < HS; i++)
                oh[i] += ob[i] * f;
        }
        float inv = (float)(1.0 / L);
        for (int i = 0; i < HS; i++)
            oh[i] *= inv;
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
        /* long queries: their block tasks first (query t owns tasks first[t]
         * .. first[t+1]-1), then their combine; short ones: their group
         * tasks, as before (sq: the short queries in order) */
        int *first = llm_malloc(((size_t)2 * Tq + 1) * sizeof(int), "attention_cached tasks");
        if (!first) {
            free(ws);
            return LLM_ENOMEM;
        }
        int *sq = first + Tq + 1, nshort = 0;
        first[0] = 0;
        for (int t = 0; t < Tq; t++) {
            int p = pos0 + t, lo = first_key(p, window), lng = p - lo + 1 > KV_LONG;
            first[t + 1] = first[t] + (lng ? kv_nblocks(lo, p) : 0);
            if (!lng)
                sq[nshort++] = t;
        }
        long ntask = first[Tq], nall = ntask + (long)nshort * nb;
        size_t pw = (size_t)NH * (HS + 2);
        float *parts = NULL, *bsc = NULL;
        if (ntask && (!(parts = llm_malloc((size_t)ntask * pw * sizeof(float), "attention_cached partials")) ||
                      !(bsc = llm_malloc((size_t)nt * NH * KV_BLOCK * sizeof(float), "attention_cached scores")))) {
            free(parts), free(first), free(ws);
            return LLM_ENOMEM;
        }
        /* tasks of uneven cost (later queries see more keys, first and last
         * blocks are short): dynamic scheduling balances them */
        CPU_PARFOR_DYNAMIC(nt,
            for (long i = 0; i < nall; i++) {
                int th = omp_get_thread_num();
                if (i < ntask) {
                    int t = 0, s0, s1;
                    while (first[t + 1] <= i)
                        t++;
                    kv_block_range(first_key(pos0 + t, window), pos0 + t, (int)(i - first[t]), &s0, &s1);
                    kv_block(&d, q, k, v, t, s0, s1, bsc + (size_t)th * NH * KV_BLOCK, parts + i * pw, avx2);
                } else {
                    long r = i - ntask;
                    kv_group(&d, out, q, k, v, sq[r / nb], (int)(r % nb) * hb, hb, ws + (size_t)th * per,
                             avx2);
                }
            });
        for (int t = 0; t < Tq; t++)
            if (first[t + 1] > first[t])
                kv_combine(out + (size_t)t * NH * HS, parts + (size_t)first[t] * pw,
                           first[t + 1] - first[t], NH, HS);
        free(parts), free(bsc), free(first);
    }
    free(ws);
    return 0;
}
