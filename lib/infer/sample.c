/* sample.c: the sampling pipeline of sample.h: repetition penalty, temperature,
 * top-k (heap selection), top-p (threshold, then a quickselect on cumulative
 * weight), min-p, and the inverse-CDF draw. docs/sampling.md has the derivations. */
#include "infer/sample.h"
#include "core/err.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int llm_sampler_check(const struct llm_sampler_opts *o)
{
    /* Written as !(in range) so that NaN fails every test. */
    if (!(o->temperature >= 0 && isfinite(o->temperature)))
        return llm_err(LLM_EINVAL, "--temperature: must be a finite number >= 0 (0 = greedy), got %g",
                       o->temperature);
    if (o->top_k < 0)
        return llm_err(LLM_EINVAL, "--top-k: must be >= 0 (0 = off), got %d", o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return llm_err(LLM_EINVAL, "--top-p: must be in (0, 1] (1 = off), got %g", o->top_p);
    if (!(o->min_p >= 0 && o->min_p < 1))
        return llm_err(LLM_EINVAL, "--min-p: must be in [0, 1) (0 = off), got %g", o->min_p);
    if (!(o->repetition_penalty > 0 && isfinite(o->repetition_penalty)))
        return llm_err(LLM_EINVAL, "--repetition-penalty: must be a finite number > 0 (1 = off), got %g",
                       o->repetition_penalty);
    return 0;
}

/* ---- ranking: logit descending, then id ascending (a strict total order) ---- */

/* Token a ranks below token b. Equal logits rank by id so that no result
 * depends on the selection or sort algorithm (or on qsort's stability). */
static inline int below(const float *x, int32_t a, int32_t b)
{
    return x[a] < x[b] || (x[a] == x[b] && a > b);
}

/* Restores the heap h (n ids) from slot i down. The heap keeps the
 * lowest-ranked id at the root (every parent ranks below its children). */
static void sift_down(const float *x, int32_t *h, int n, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && below(x, h[c + 1], h[c]))
            c++;
        if (!below(x, h[c], h[i]))
            return;
        int32_t t = h[c];
        h[c] = h[i], h[i] = t, i = c;
    }
}

static void heapify(const float *x, int32_t *h, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(x, h, n, i);
}

/* Heap to best-first order: the root (lowest rank) moves to the end, again
 * and again. Heapsort: O(n log n) worst case, no recursion, no allocation. */
static void heap_to_sorted(const float *x, int32_t *h, int n)
{
    for (int e = n - 1; e > 0; e--) {
        int32_t t = h[0];
        h[0] = h[e], h[e] = t;
        sift_down(x, h, e, 0);
    }
}

static void sort_best_first(const float *x, int32_t *h, int n)
{
    heapify(x, h, n);
    heap_to_sorted(x, h, n);
}

/* The k best ids of x (V), best first, into idx. A size-k heap whose root is
 * the worst id kept so far: each further id either loses to the root (one
 * compare, the usual case once the heap holds plausible tokens) or replaces
 * it (log k). O(V log k) worst case, O(V + k log k log(V/k)) typical; the
 * vocabulary is never sorted. */
static void select_top_k(const float *x, int V, int k, int32_t *idx)
{
    for (int i = 0; i < k; i++)
        idx[i] = i;
    heapify(x, idx, k);
    for (int i = k; i < V; i++)
        if (below(x, idx[0], i)) {
            idx[0] = i;
            sift_down(x, idx, k, 0);
        }
    heap_to_sorted(x, idx, k);
}

/* ---- the distribution ---- */

/* CTRL's penalty (Keskar et al. 2019, eq. 2 divides by theta for all logits;
 * HF's RepetitionPenaltyLogitsProcessor and llama.cpp multiply negative
 * logits instead, so a penalty > 1 always lowers the token): l > 0 ? l / r :
 * l * r, in double, saturated at the float range so that a huge logit with a
 * small r stays finite (-inf stays -inf). */
static float penalize(float l, double r)
{
    double v = l > 0 ? (double)l / r : (double)l * r;
    if (v > FLT_MAX)
        return FLT_MAX;
    if (v < -FLT_MAX && isfinite(l))
        return -FLT_MAX;
    return (float)v;
}

/* Unnormalized probability of a token with (penalized) logit xi:
 * exp((xi - xmax) / T), which is 1 at the argmax and in [0, 1] elsewhere.
 * The difference is taken in double, where it cannot overflow (|xi - xmax| <=
 * 2 FLT_MAX), so logits of any finite size and any T > 0 are safe; -inf gives
 * exp(-inf) = 0. */
static inline double weight(float xi, double xmax, double T)
{
    return exp(((double)xi - xmax) / T);
}

/* The smallest rank-order prefix of idx[0..m) whose weight reaches target,
 * moved to idx[0..n) (in no particular order); returns n. A quickselect on
 * cumulative weight (the weighted-median idea): partition around a pivot by
 * rank; if the ids above it already weigh >= target the prefix ends among
 * them, else they are all in it and the search continues below with what is
 * still needed. O(m) expected (each level sums the weights of one part,
 * which halves on average); the pivot is the median of three by position,
 * and after 2 log2(m) + 8 levels the rest is heapsorted instead, so the
 * worst case is O(m log m). The kept set does not depend on pivots: it is
 * fixed by the rank order, only the rounding of the sums could differ from a
 * sorted cumulative sum, and deterministically so. */
static int top_p_select(const float *x, int32_t *idx, int m, double xmax, double T, double target)
{
    int lo = 0, hi = m, depth = 8;
    for (int n = m; n > 1; n >>= 1)
        depth += 2;
    while (hi - lo > 16 && depth-- > 0) {
        int a = lo, b = lo + (hi - lo) / 2, c = hi - 1, mid;
        if (below(x, idx[a], idx[b]))
            mid = below(x, idx[b], idx[c]) ? b : below(x, idx[a], idx[c]) ? c : a;
        else
            mid = below(x, idx[a], idx[c]) ? a : below(x, idx[b], idx[c]) ? c : b;
        /* Lomuto partition: [ranked above the pivot] [pivot] [below]. */
        const int32_t piv = idx[mid];
        idx[mid] = idx[hi - 1], idx[hi - 1] = piv;
        int at = lo;
        for (int i = lo; i < hi - 1; i++)
            if (below(x, piv, idx[i])) {
                int32_t t = idx[i];
                idx[i] = idx[at], idx[at++] = t;
            }
        idx[hi - 1] = idx[at], idx[at] = piv;
        double above = 0;
        for (int i = lo; i < at; i++)
            above += weight(x[idx[i]], xmax, T);
        if (above >= target) {
            hi = at;
            continue;
        }
        above += weight(x[piv], xmax, T);
        if (above >= target)
            return at + 1;
        target -= above;
        lo = at + 1;
    }
    sort_best_first(x, idx + lo, hi - lo);
    double cum = 0;
    for (int j = lo; j < hi; j++) {
        cum += weight(x[idx[j]], xmax, T);
        if (cum >= target)
            return j + 1;
    }
    return hi; /* rounding kept the sum just below target: keep the part */
}

/* Top-p over the whole vocabulary (no top-k before it): the number of kept
 * ids, written into idx[0..n). S is the total weight.
 *
 * The kept set P is a prefix of the rank order: the smallest one with mass
 * >= top_p * S (HF's TopPLogitsWarper removes a token when the mass of the
 * tokens ranked at or below it is <= 1 - top_p: the same set). Only ids above
 * a threshold t below the weight of P's last token can be in it. That token
 * `l` has mass(P \ l) < top_p S, so the tokens ranked from l on carry more
 * than (1 - top_p) S; they are at most V, each of weight <= w_l, hence
 *     w_l > (1 - top_p) S / V,
 * a threshold that always holds (halved here against rounding). For a
 * trained model's peaked distribution it leaves a few hundred or thousand
 * candidates of 150k; the selection then runs on those. O(V) for the
 * threshold pass plus O(m) expected for the m candidates; no full sort. */
static int top_p_all(const float *x, int V, double xmax, double T, double S, double top_p, int32_t *idx)
{
    const double t = 0.5 * (1 - top_p) * S / V;
    int m = 0;
    for (int i = 0; i < V; i++)
        if (weight(x[i], xmax, T) >= t)
            idx[m++] = i;
    return top_p_select(x, idx, m, xmax, T, top_p * S);
}

/* The pipeline of sample.h into p, with scratch x (V floats) and idx (V ids).
 * *amax = the argmax of the penalized logits (lowest id on ties). */
static int probs(const struct llm_sampler_opts *o, const float *logits, int V, const int32_t *hist, int n_hist,
                 float *p, float *x, int32_t *idx, int32_t *amax)
{
    int rc = llm_sampler_check(o);
    if (rc)
        return rc;
    if (V < 1)
        return llm_err(LLM_EINVAL, "sampling: vocabulary size %d (must be >= 1)", V);
    if (n_hist < 0 || (n_hist > 0 && !hist))
        return llm_err(LLM_EINVAL, "sampling: history of %d ids%s", n_hist, n_hist > 0 ? " but no array" : "");
    for (int i = 0; i < V; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return llm_err(LLM_EINVAL, "sampling: logit %d is %s (the model's output is broken)", i,
                           isnan(logits[i]) ? "NaN" : "+inf");
        x[i] = logits[i];
    }
    /* Penalty from the original logit, so a token repeated in the history is
     * penalized once (as HF's gather/scatter and llama.cpp do). */
    for (int j = 0; j < n_hist; j++) {
        int32_t h = hist[j];
        if (h < 0 || h >= V)
            return llm_err(LLM_EINVAL, "sampling: history id %d at %d is outside the vocabulary [0, %d)", (int)h,
                           j, V);
        if (o->repetition_penalty != 1)
            x[h] = penalize(logits[h], o->repetition_penalty);
    }
    int32_t a = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[a])
            a = i;
    if (x[a] == -INFINITY)
        return llm_err(LLM_EINVAL, "sampling: all %d logits are -inf (nothing can be sampled)", V);
    *amax = a;
    if (o->temperature == 0) {
        memset(p, 0, (size_t)V * sizeof(*p));
        p[a] = 1;
        return 0;
    }

    const double xmax = x[a], T = o->temperature, min_p = o->min_p;
    const int use_k = o->top_k > 0 && o->top_k < V, use_p = o->top_p < 1;
    if (!use_k && !use_p) {
        /* No ranking needed: min-p (Nguyen et al. 2024; HF's MinPLogitsWarper)
         * keeps p_i >= min_p * p_max, i.e. w_i >= min_p since w_max = 1.
         * O(V); p holds the weights (as floats) until normalized, and Z sums
         * exactly those floats so that p sums to 1 up to one rounding each. */
        double Z = 0;
        for (int i = 0; i < V; i++) {
            double w = weight(x[i], xmax, T);
            p[i] = w >= min_p ? (float)w : 0.0f;
            Z += p[i];
        }
        for (int i = 0; i < V; i++)
            p[i] = (float)(p[i] / Z);
        return 0;
    }

    /* Ranked path: idx[0..m) holds the kept ids, a prefix of the rank order. */
    int m;
    if (use_k) {
        /* Top-k (Fan et al. 2018; HF's TopKLogitsWarper), exactly k kept. */
        m = o->top_k;
        select_top_k(x, V, m, idx);
        if (use_p) {
            /* Top-p (Holtzman et al. 2019) on the renormalized top-k set. */
            double S = 0, cum = 0;
            for (int j = 0; j < m; j++)
                S += weight(x[idx[j]], xmax, T);
            for (int j = 0; j < m; j++) {
                cum += weight(x[idx[j]], xmax, T);
                if (cum >= o->top_p * S) {
                    m = j + 1;
                    break;
                }
            }
        }
    } else {
        double S = 0;
        for (int i = 0; i < V; i++)
            S += weight(x[i], xmax, T);
        m = top_p_all(x, V, xmax, T, S, o->top_p, idx);
    }
    /* Min-p after them (HF's order): keep w_i >= min_p; the best (w = 1)
     * always stays since min_p < 1. idx need not be in rank order here. */
    if (min_p > 0) {
        int n = 0;
        for (int j = 0; j < m; j++)
            if (weight(x[idx[j]], xmax, T) >= min_p)
                idx[n++] = idx[j];
        m = n;
    }
    memset(p, 0, (size_t)V * sizeof(*p));
    double Z = 0;
    for (int j = 0; j < m; j++) {
        p[idx[j]] = (float)weight(x[idx[j]], xmax, T);
        Z += p[idx[j]];
    }
    for (int j = 0; j < m; j++)
        p[idx[j]] = (float)(p[idx[j]] / Z);
    return 0;
}

int llm_sampler_probs(const struct llm_sampler_opts *o, const float *logits, int V, const int32_t *history,
                      int n_hist, float *p)
{
    if (V < 1)
        return llm_err(LLM_EINVAL, "sampling: vocabulary size %d (must be >= 1)", V);
    /* One block: x (V floats) then idx (V ids). */
    float *x = llm_malloc((size_t)V * (sizeof(float) + sizeof(int32_t)), "sampling scratch");
    if (!x)
        return LLM_ENOMEM;
    int32_t a;
    int rc = probs(o, logits, V, history, n_hist, p, x, (int32_t *)(x + V), &a);
    free(x);
    return rc;
}

/* ---- the sampler ---- */

int llm_sampler_init(struct llm_sampler *s, const struct llm_sampler_opts *o)
{
    memset(s, 0, sizeof(*s));
    int rc = llm_sampler_check(o);
    if (rc)
        return rc;
    s->o = *o;
    llm_rng_seed(&s->rng, o->seed);
    return 0;
}

void llm_sampler_release(struct llm_sampler *s)
{
    free(s->p);
    s->p = NULL;
    s->cap = 0;
}

/* s->p holds, for cap tokens: p (cap floats), x (cap floats), idx (cap ids). */
static int reserve(struct llm_sampler *s, int V)
{
    if (V <= s->cap)
        return 0;
    float *b = realloc(s->p, (size_t)V * (2 * sizeof(float) + sizeof(int32_t)));
    if (!b)
        return llm_err(LLM_ENOMEM, "out of memory for the sampler (%d tokens)", V);
    s->p = b;
    s->cap = V;
    return 0;
}

/* Inverse CDF in id order: the first id whose cumulative weight exceeds
 * u * total. Only positive entries move the sum, so a zero entry is never
 * returned; total was summed in the same order, so u < 1 normally lands
 * inside, and the last positive id catches a rounding overshoot. */
static int32_t inverse_cdf(const float *p, int V, double total, double u)
{
    double target = u * total, cum = 0;
    int32_t last = 0;
    for (int i = 0; i < V; i++)
        if (p[i] > 0) {
            cum += p[i];
            last = i;
            if (cum > target)
                return i;
        }
    return last;
}

int llm_sampler_next(struct llm_sampler *s, const float *logits, int V, const int32_t *history, int n_hist,
                     int32_t *out)
{
    if (V < 1)
        return llm_err(LLM_EINVAL, "sampling: vocabulary size %d (must be >= 1)", V);
    int rc = reserve(s, V);
    if (rc)
        return rc;
    int32_t a;
    float *p = s->p, *x = s->p + s->cap;
    rc = probs(&s->o, logits, V, history, n_hist, p, x, (int32_t *)(x + s->cap), &a);
    if (rc)
        return rc;
    if (s->o.temperature == 0) {
        *out = a;
        return 0;
    }
    double total = 0;
    for (int i = 0; i < V; i++)
        total += p[i];
    *out = inverse_cdf(p, V, total, llm_rng_double(&s->rng));
    return 0;
}

double llm_sampler_uniform(struct llm_sampler *s) { return llm_rng_double(&s->rng); }

int llm_sampler_draw(struct llm_sampler *s, const float *p, int V, int32_t *out)
{
    if (V < 1)
        return llm_err(LLM_EINVAL, "sampling: distribution of %d entries (must be >= 1)", V);
    double total = 0;
    for (int i = 0; i < V; i++) {
        if (!(p[i] >= 0 && isfinite(p[i])))
            return llm_err(LLM_EINVAL, "sampling: p[%d] = %g is not a finite number >= 0", i, p[i]);
        total += p[i];
    }
    if (!(total > 0))
        return llm_err(LLM_EINVAL, "sampling: the distribution is all zero (%d entries)", V);
    *out = inverse_cdf(p, V, total, llm_rng_double(&s->rng));
    return 0;
}
