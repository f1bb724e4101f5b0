/* test_sample.c: the sampler (sample.h) against a plain double oracle written
 * here (HF's formulation of each filter), its draws against their
 * distribution, and the UTF-8 stream (utf8stream.h) against the Unicode
 * maximal-subpart rule. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include "core/err.h"
#include "core/rng.h"
#include "core/str.h"
#include "infer/sample.h"
#include "infer/utf8stream.h"

static struct llm_sampler_opts opts(double T, int k, double top_p, double min_p, double r)
{
    struct llm_sampler_opts o = {.temperature = T, .top_k = k, .top_p = top_p, .min_p = min_p,
                                 .repetition_penalty = r, .seed = 1};
    return o;
}

/* ---- the oracle: each step as HF's logits processors state it, in double, O(V^2) ---- */

/* j ranks above i: larger logit, or the same logit and a smaller id. */
static int above(const double *x, int j, int i) { return x[j] > x[i] || (x[j] == x[i] && j < i); }

/* Softmax over the kept tokens into q (zero elsewhere). */
static void softmax_kept(const double *x, const int *keep, int V, double *q)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++)
        if (keep[i] && x[i] > mx)
            mx = x[i];
    for (int i = 0; i < V; i++)
        s += q[i] = keep[i] ? exp(x[i] - mx) : 0;
    for (int i = 0; i < V; i++)
        q[i] /= s;
}

/* q (V) = the distribution; keep (V) = the kept set. */
static void oracle(const struct llm_sampler_opts *o, const float *logits, int V, const int32_t *hist, int nh,
                   double *q, int *keep)
{
    double *x = calloc((size_t)V, sizeof(double));
    int *pen = calloc((size_t)V, sizeof(int)), *order = calloc((size_t)V, sizeof(int));
    for (int i = 0; i < V; i++)
        x[i] = logits[i];
    for (int j = 0; j < nh; j++) /* a repeated id is penalized once */
        pen[hist[j]] = 1;
    for (int i = 0; i < V; i++)
        if (pen[i])
            x[i] = x[i] > 0 ? x[i] / o->repetition_penalty : x[i] * o->repetition_penalty;
    for (int i = 0; i < V; i++)
        keep[i] = 1;
    if (o->temperature == 0) {
        int a = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[a])
                a = i;
        for (int i = 0; i < V; i++)
            keep[i] = i == a, q[i] = i == a;
        goto done;
    }
    for (int i = 0; i < V; i++)
        x[i] /= o->temperature;
    if (o->top_k > 0) { /* keep a token if fewer than k rank above it */
        for (int i = 0; i < V; i++) {
            int n = 0;
            for (int j = 0; j < V; j++)
                n += above(x, j, i);
            keep[i] = n < o->top_k;
        }
    }
    if (o->top_p < 1) {
        /* HF TopPLogitsWarper: ascending order, cumulative probability;
         * remove where cum <= 1 - top_p, the most likely token always stays. */
        softmax_kept(x, keep, V, q);
        for (int i = 0; i < V; i++) { /* order[r] = id of rank r from the bottom */
            int n = 0;
            for (int j = 0; j < V; j++)
                n += above(x, i, j);
            order[n] = i;
        }
        double cum = 0;
        for (int r = 0; r < V - 1; r++) {
            cum += q[order[r]];
            if (cum <= 1 - o->top_p)
                keep[order[r]] = 0;
        }
    }
    if (o->min_p > 0) { /* HF MinPLogitsWarper: remove p < min_p * p_max */
        softmax_kept(x, keep, V, q);
        double pmax = 0;
        for (int i = 0; i < V; i++)
            pmax = q[i] > pmax ? q[i] : pmax;
        for (int i = 0; i < V; i++)
            if (q[i] < o->min_p * pmax)
                keep[i] = 0;
    }
    softmax_kept(x, keep, V, q);
done:
    free(x), free(pen), free(order);
}

/* llm_sampler_probs matches the oracle: same kept set, values within float rounding. */
static void check_against_oracle(const struct llm_sampler_opts *o, const float *logits, int V, const int32_t *hist,
                                 int nh)
{
    float *p = malloc((size_t)V * sizeof(float));
    double *q = calloc((size_t)V, sizeof(double));
    int *keep = calloc((size_t)V, sizeof(int));
    assert_int_equal(llm_sampler_probs(o, logits, V, hist, nh, p), 0);
    oracle(o, logits, V, hist, nh, q, keep);
    double sum = 0;
    for (int i = 0; i < V; i++) {
        if (!keep[i])
            assert_true(p[i] == 0.0f);
        assert_true(fabs(p[i] - q[i]) <= 1e-6 + 1e-5 * q[i]);
        sum += p[i];
    }
    assert_true(fabs(sum - 1) < 1e-5);
    free(p), free(q), free(keep);
}

static void random_logits(float *x, int V, uint64_t seed, double scale)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    for (int i = 0; i < V; i++)
        x[i] = (float)(scale * llm_rng_normal(&r));
}

static void test_probs_each_transform_and_combined(void **state)
{
    (void)state;
    enum { V = 64 };
    float x[V];
    int32_t hist[] = {3, 7, 7, 12, 40, 3, 63, 0};
    const int nh = (int)(sizeof(hist) / sizeof(hist[0]));
    const struct llm_sampler_opts cases[] = {
        opts(1, 0, 1, 0, 1),       /* plain softmax */
        opts(0.7, 0, 1, 0, 1),     /* temperature */
        opts(2.5, 0, 1, 0, 1),
        opts(1, 5, 1, 0, 1),       /* top-k */
        opts(1, 63, 1, 0, 1),
        opts(1, 64, 1, 0, 1),      /* k = V: off */
        opts(1, 0, 0.8, 0, 1),     /* top-p */
        opts(1, 0, 0.3, 0, 1),
        opts(1, 0, 0.999, 0, 1),
        opts(1, 0, 1, 0.1, 1),     /* min-p */
        opts(1, 0, 1, 0.9, 1),
        opts(1, 0, 1, 0, 1.3),     /* penalty */
        opts(1, 0, 1, 0, 0.5),     /* a penalty < 1 favours repeats */
        opts(0, 0, 1, 0, 1.3),     /* greedy after the penalty */
        opts(0.8, 20, 0.9, 0.05, 1.2), /* all of them */
        opts(1.7, 30, 0.6, 0.02, 2.0),
        opts(0.5, 10, 0.95, 0.3, 1.1),
        opts(1.2, 0, 0.7, 0.2, 1.4),   /* top-p over the vocabulary, then min-p */
    };
    for (int seed = 1; seed <= 6; seed++) {
        random_logits(x, V, (uint64_t)seed, seed < 4 ? 2.0 : 5.0);
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            check_against_oracle(&cases[c], x, V, hist, nh);
            check_against_oracle(&cases[c], x, V, NULL, 0);
        }
    }
}

/* Hand-worked cases where applying the filters in another order gives
 * another answer. p = (0.4, 0.3, 0.2, 0.1) at temperature 1. */
static void test_probs_order_matters(void **state)
{
    (void)state;
    const float x[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    float p[4];
    /* Top-k 2 then top-p 0.5: (0.57, 0.43) -> token 0 alone. Top-p first
     * would keep {0, 1} (0.4 < 0.5). */
    struct llm_sampler_opts o = opts(1, 2, 0.5, 0, 1);
    assert_int_equal(llm_sampler_probs(&o, x, 4, NULL, 0, p), 0);
    assert_true(p[0] == 1.0f && p[1] == 0 && p[2] == 0 && p[3] == 0);
    /* Top-p 0.75 then min-p 0.3: top-p keeps {0, 1, 2} (0.4, 0.7, 0.9), min-p
     * (threshold 0.12) keeps them all. Min-p first would drop 3, renormalize
     * to (0.44, 0.33, 0.22), and top-p would then keep {0, 1}. */
    o = opts(1, 0, 0.75, 0.3, 1);
    assert_int_equal(llm_sampler_probs(&o, x, 4, NULL, 0, p), 0);
    assert_true(fabs(p[0] - 0.4 / 0.9) < 1e-6 && fabs(p[1] - 0.3 / 0.9) < 1e-6 && fabs(p[2] - 0.2 / 0.9) < 1e-6);
    assert_true(p[3] == 0);
    /* Temperature before top-p: at T = 3 the distribution flattens to
     * (0.30, 0.27, 0.24, 0.19), so top-p 0.5 needs two tokens, at T = 1 two as
     * well, at T = 0.2 token 0 (0.80) alone. */
    o = opts(0.2, 0, 0.5, 0, 1);
    assert_int_equal(llm_sampler_probs(&o, x, 4, NULL, 0, p), 0);
    assert_true(p[0] == 1.0f && p[1] == 0);
    o = opts(3, 0, 0.5, 0, 1);
    assert_int_equal(llm_sampler_probs(&o, x, 4, NULL, 0, p), 0);
    assert_true(p[0] > 0 && p[1] > 0 && p[2] == 0 && p[3] == 0);
    /* The penalty acts on the raw logits: 2 -> 1 at r = 2, then T = 0.5 -> 2;
     * -1 -> -2 -> -4. */
    const float y[3] = {2, -1, 0};
    const int32_t h[2] = {0, 1};
    o = opts(0.5, 0, 1, 0, 2);
    assert_int_equal(llm_sampler_probs(&o, y, 3, h, 2, p), 0);
    double z = exp(2) + exp(-4) + exp(0);
    assert_true(fabs(p[0] - exp(2) / z) < 1e-6 && fabs(p[1] - exp(-4) / z) < 1e-6);
}

static void test_probs_ties(void **state)
{
    (void)state;
    const float x[5] = {1, 3, 3, 0, 3};
    float p[5];
    struct llm_sampler_opts o = opts(1, 2, 1, 0, 1); /* top-k 2: ids 1, 2 of the three 3s */
    assert_int_equal(llm_sampler_probs(&o, x, 5, NULL, 0, p), 0);
    assert_true(p[1] == 0.5f && p[2] == 0.5f && p[4] == 0 && p[0] == 0 && p[3] == 0);
    o = opts(0, 0, 1, 0, 1); /* greedy: the lowest id */
    assert_int_equal(llm_sampler_probs(&o, x, 5, NULL, 0, p), 0);
    assert_true(p[1] == 1.0f && p[2] == 0 && p[4] == 0);
    const float flat[4] = {3, 3, 3, 3};
    o = opts(1, 0, 0.6, 0, 1); /* top-p: 1/4, 2/4, 3/4 >= 0.6 -> ids 0, 1, 2 */
    assert_int_equal(llm_sampler_probs(&o, flat, 4, NULL, 0, p), 0);
    for (int i = 0; i < 3; i++)
        assert_true(fabsf(p[i] - 1.0f / 3) < 1e-7f);
    assert_true(p[3] == 0);
    o = opts(1, 0, 1, 0.999, 1); /* min-p keeps every tie of the best */
    assert_int_equal(llm_sampler_probs(&o, flat, 4, NULL, 0, p), 0);
    for (int i = 0; i < 4; i++)
        assert_true(p[i] == 0.25f);
    o = opts(1, 3, 0.9, 0.5, 1.5);
    check_against_oracle(&o, x, 5, NULL, 0);
}

static void test_probs_neg_inf_and_huge(void **state)
{
    (void)state;
    float p[4];
    const float x[4] = {-INFINITY, 1, -INFINITY, 0};
    struct llm_sampler_opts all[] = {opts(1, 0, 1, 0, 1), opts(1, 3, 1, 0, 1), opts(1, 0, 0.99, 0, 1),
                                     opts(1, 0, 1, 0.01, 1), opts(1, 4, 0.999, 0.001, 1.5), opts(0, 0, 1, 0, 1)};
    for (size_t c = 0; c < sizeof(all) / sizeof(all[0]); c++) {
        const int32_t h[] = {0, 3};
        assert_int_equal(llm_sampler_probs(&all[c], x, 4, h, 2, p), 0);
        assert_true(p[0] == 0 && p[2] == 0);
        assert_true(fabsf(p[0] + p[1] + p[2] + p[3] - 1) < 1e-6f);
    }
    assert_int_equal(llm_sampler_probs(&all[0], x, 4, NULL, 0, p), 0);
    assert_true(fabs(p[1] - exp(1) / (exp(1) + 1)) < 1e-6);
    /* Differences of 1e30: one-hot, no NaN. */
    const float big[3] = {0, 1e30f, -1e30f};
    for (size_t c = 0; c < sizeof(all) / sizeof(all[0]); c++) {
        assert_int_equal(llm_sampler_probs(&all[c], big, 3, NULL, 0, p), 0);
        assert_true(p[1] == 1.0f && p[0] == 0 && p[2] == 0);
    }
    /* The float extremes at a temperature that brings them back into range:
     * (3e38 - (-3e38)) / 1e38 = 6. */
    const float ext[2] = {3e38f, -3e38f};
    struct llm_sampler_opts o = opts(1e38, 0, 1, 0, 1);
    assert_int_equal(llm_sampler_probs(&o, ext, 2, NULL, 0, p), 0);
    double d = ((double)ext[0] - ext[1]) / 1e38;
    assert_true(fabs(p[0] - 1 / (1 + exp(-d))) < 1e-6);
    /* Tiny temperatures and a penalty that would overflow the float range:
     * 3e38 / 0.01 saturates at FLT_MAX and stays the best. */
    o = opts(1e-30, 0, 0.5, 0, 0.01);
    const int32_t h0[1] = {0};
    assert_int_equal(llm_sampler_probs(&o, ext, 2, h0, 1, p), 0);
    assert_true(p[0] == 1.0f && p[1] == 0);
    const float mx[3] = {FLT_MAX, -FLT_MAX, FLT_MAX};
    o = opts(1, 2, 0.9, 0.5, 1e30); /* penalty 1e30 on -FLT_MAX saturates at -FLT_MAX */
    const int32_t h1[2] = {1, 2};
    assert_int_equal(llm_sampler_probs(&o, mx, 3, h1, 2, p), 0);
    assert_true(p[0] == 1.0f && p[1] == 0 && p[2] == 0);
}

static void test_probs_single_token_and_errors(void **state)
{
    (void)state;
    float p[3];
    const float one[1] = {-5e37f};
    struct llm_sampler_opts all[] = {opts(1, 0, 1, 0, 1), opts(1, 1, 0.1, 0.9, 3), opts(0, 0, 1, 0, 1),
                                     opts(1e-20, 5, 1, 0, 1)};
    const int32_t h[1] = {0};
    for (size_t c = 0; c < sizeof(all) / sizeof(all[0]); c++) {
        p[0] = 7;
        assert_int_equal(llm_sampler_probs(&all[c], one, 1, h, 1, p), 0);
        assert_true(p[0] == 1.0f);
    }
    struct llm_sampler_opts o = opts(1, 0, 1, 0, 1);
    const float nan3[3] = {0, NAN, 1}, inf3[3] = {0, INFINITY, 1}, ninf3[3] = {-INFINITY, -INFINITY, -INFINITY};
    const float ok3[3] = {0, 1, 2};
    assert_int_equal(llm_sampler_probs(&o, nan3, 3, NULL, 0, p), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "NaN"));
    assert_int_equal(llm_sampler_probs(&o, inf3, 3, NULL, 0, p), LLM_EINVAL);
    assert_int_equal(llm_sampler_probs(&o, ninf3, 3, NULL, 0, p), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "-inf"));
    assert_int_equal(llm_sampler_probs(&o, ok3, 0, NULL, 0, p), LLM_EINVAL);
    const int32_t bad1[1] = {3}, bad2[1] = {-1};
    assert_int_equal(llm_sampler_probs(&o, ok3, 3, bad1, 1, p), LLM_EINVAL);
    assert_int_equal(llm_sampler_probs(&o, ok3, 3, bad2, 1, p), LLM_EINVAL);
    assert_int_equal(llm_sampler_probs(&o, ok3, 3, NULL, -1, p), LLM_EINVAL);

    /* Option ranges, each error naming its flag. */
    struct {
        struct llm_sampler_opts o;
        const char *flag;
    } bad[] = {
        {opts(-0.1, 0, 1, 0, 1), "--temperature"}, {opts(NAN, 0, 1, 0, 1), "--temperature"},
        {opts(INFINITY, 0, 1, 0, 1), "--temperature"}, {opts(1, -1, 1, 0, 1), "--top-k"},
        {opts(1, 0, 0, 0, 1), "--top-p"}, {opts(1, 0, 1.01, 0, 1), "--top-p"},
        {opts(1, 0, NAN, 0, 1), "--top-p"}, {opts(1, 0, 1, -0.1, 1), "--min-p"},
        {opts(1, 0, 1, 1, 1), "--min-p"}, {opts(1, 0, 1, 0, 0), "--repetition-penalty"},
        {opts(1, 0, 1, 0, -2), "--repetition-penalty"}, {opts(1, 0, 1, 0, INFINITY), "--repetition-penalty"},
    };
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        assert_int_equal(llm_sampler_check(&bad[c].o), LLM_EINVAL);
        assert_non_null(strstr(llm_errmsg(), bad[c].flag));
        assert_int_equal(llm_sampler_probs(&bad[c].o, ok3, 3, NULL, 0, p), LLM_EINVAL);
        struct llm_sampler s;
        assert_int_equal(llm_sampler_init(&s, &bad[c].o), LLM_EINVAL);
        llm_sampler_release(&s);
    }
    struct llm_sampler_opts good[] = {opts(0, 0, 1, 0, 1), opts(1e9, 100000, 1e-9, 0.999, 1e-3)};
    for (size_t c = 0; c < 2; c++)
        assert_int_equal(llm_sampler_check(&good[c]), 0);
}

/* V = 150k: the thresholded quickselect of top-p and the heap top-k keep
 * what a full sort keeps: for a peaked distribution, a flat one (most of the
 * vocabulary kept), and one where a tail of 150k tied tokens at 1e-5 of the
 * best carries 60% of the mass. */
struct ranked {
    float x;
    int32_t id;
};
static int by_rank(const void *a, const void *b)
{
    const struct ranked *u = a, *v = b;
    if (u->x != v->x)
        return u->x > v->x ? -1 : 1;
    return u->id < v->id ? -1 : 1;
}

static void check_large(const float *x, int V, const struct llm_sampler_opts *o)
{
    float *p = malloc((size_t)V * sizeof(float));
    struct ranked *r = malloc((size_t)V * sizeof(*r));
    assert_int_equal(llm_sampler_probs(o, x, V, NULL, 0, p), 0);
    for (int i = 0; i < V; i++)
        r[i].x = x[i], r[i].id = i;
    qsort(r, (size_t)V, sizeof(*r), by_rank);
    int m = o->top_k > 0 && o->top_k < V ? o->top_k : V;
    double S = 0, cum = 0, Z = 0;
    for (int j = 0; j < m; j++)
        S += exp((r[j].x - (double)r[0].x) / o->temperature);
    int keep = m;
    for (int j = 0; j < m && o->top_p < 1; j++) {
        cum += exp((r[j].x - (double)r[0].x) / o->temperature);
        if (cum >= o->top_p * S) {
            keep = j + 1;
            break;
        }
    }
    for (int j = 0; j < keep; j++)
        Z += exp((r[j].x - (double)r[0].x) / o->temperature);
    int kept = 0;
    for (int i = 0; i < V; i++)
        kept += p[i] > 0;
    assert_int_equal(kept, keep);
    for (int j = 0; j < keep; j++)
        assert_true(fabs(p[r[j].id] - exp((r[j].x - (double)r[0].x) / o->temperature) / Z) < 1e-7);
    free(p), free(r);
}

static void test_probs_large_vocab(void **state)
{
    (void)state;
    enum { V = 150000 };
    float *x = malloc(V * sizeof(float));
    random_logits(x, V, 11, 2.0);
    for (int i = 0; i < 20; i++) /* a few strong candidates above the bulk */
        x[(i * 7919) % V] += 12;
    struct llm_sampler_opts o = opts(1, 0, 0.9, 0, 1);
    check_large(x, V, &o);
    o = opts(0.8, 50, 0.95, 0, 1);
    check_large(x, V, &o);
    o = opts(1, 1000, 1, 0, 1);
    check_large(x, V, &o);
    o = opts(3, 0, 0.99, 0, 1); /* flat: the top-p set holds most of the vocabulary */
    check_large(x, V, &o);
    for (int i = 0; i < V; i++)
        x[i] = logf(1e-5f);
    x[777] = 0;
    o = opts(1, 0, 0.9, 0, 1);
    check_large(x, V, &o);
    free(x);
}

/* ---- drawing ---- */

static void test_greedy_is_argmax(void **state)
{
    (void)state;
    enum { V = 1000 };
    float x[V];
    struct llm_sampler g, k1;
    struct llm_sampler_opts og = opts(0, 0, 1, 0, 1), ok = opts(1, 1, 1, 0, 1);
    assert_int_equal(llm_sampler_init(&g, &og), 0);
    assert_int_equal(llm_sampler_init(&k1, &ok), 0);
    for (int t = 0; t < 50; t++) {
        random_logits(x, V, 100 + (uint64_t)t, 1.0);
        for (int i = 0; i < V; i++) /* coarse values: many ties */
            x[i] = roundf(x[i] * 2);
        int a = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[a])
                a = i;
        int32_t id = -1, id1 = -1;
        assert_int_equal(llm_sampler_next(&g, x, V, NULL, 0, &id), 0);
        assert_int_equal(llm_sampler_next(&k1, x, V, NULL, 0, &id1), 0);
        assert_int_equal(id, a);
        assert_int_equal(id1, a); /* top-k 1 = greedy, ties included */
    }
    llm_sampler_release(&g);
    llm_sampler_release(&k1);
    llm_sampler_release(&g); /* twice is harmless */
}

static void test_seeded_draws_are_deterministic(void **state)
{
    (void)state;
    enum { V = 300, N = 500 };
    float x[V];
    int32_t ha[N], hb[N];
    struct llm_sampler_opts o = opts(0.9, 40, 0.95, 0.01, 1.1);
    struct llm_sampler a, b, c, d;
    o.seed = 42;
    assert_int_equal(llm_sampler_init(&a, &o), 0);
    assert_int_equal(llm_sampler_init(&b, &o), 0);
    assert_int_equal(llm_sampler_init(&d, &o), 0);
    o.seed = 43;
    assert_int_equal(llm_sampler_init(&c, &o), 0);
    int differ = 0;
    for (int t = 0; t < N; t++) {
        random_logits(x, V, (uint64_t)t, 1.5);
        int32_t ta, tb, tc;
        assert_int_equal(llm_sampler_next(&a, x, V, ha, t, &ta), 0);
        /* b runs interleaved with c, as rows of one batch: same as a alone. */
        assert_int_equal(llm_sampler_next(&c, x, V, hb, t, &tc), 0);
        assert_int_equal(llm_sampler_next(&b, x, V, ha, t, &tb), 0);
        assert_int_equal(ta, tb);
        ha[t] = ta, hb[t] = tc;
        differ += ta != tc;
    }
    assert_true(differ > N / 4);
    /* Known answer: seed 42 on these logits draws these tokens on every
     * machine (integer RNG, fixed-order double sums; exp from libm). */
    random_logits(x, V, 0, 1.5);
    static const int32_t want[8] = {17, 150, 280, 299, 299, 299, 297, 299};
    for (int t = 0; t < 8; t++) {
        int32_t id;
        assert_int_equal(llm_sampler_next(&d, x, V, NULL, 0, &id), 0);
        assert_int_equal(id, want[t]);
    }
    llm_sampler_release(&a), llm_sampler_release(&b), llm_sampler_release(&c), llm_sampler_release(&d);
}

/* Pearson's chi-square over V = 5 cells (4 degrees of freedom): the 99.99th
 * percentile is 23.5; a correct sampler fails 30 with probability ~5e-6
 * (and never with this fixed seed), a wrong one by far. */
static double chi_square(const int *count, const double *prob, int V, int n)
{
    double c2 = 0;
    for (int i = 0; i < V; i++) {
        double e = prob[i] * n;
        c2 += (count[i] - e) * (count[i] - e) / e;
    }
    return c2;
}

static void test_draws_match_distribution(void **state)
{
    (void)state;
    enum { V = 5, N = 20000 };
    const double prob[V] = {0.1, 0.2, 0.3, 0.25, 0.15};
    float x[V], w[V];
    for (int i = 0; i < V; i++)
        x[i] = (float)log(prob[i]) + 3, w[i] = (float)(prob[i] * 7); /* unnormalized */
    struct llm_sampler_opts o = opts(1, 0, 1, 0, 1);
    o.seed = 2024;
    struct llm_sampler s;
    assert_int_equal(llm_sampler_init(&s, &o), 0);
    int count[V] = {0}, dcount[V] = {0};
    for (int t = 0; t < N; t++) {
        int32_t id, jd;
        assert_int_equal(llm_sampler_next(&s, x, V, NULL, 0, &id), 0);
        assert_int_equal(llm_sampler_draw(&s, w, V, &jd), 0);
        assert_true(id >= 0 && id < V && jd >= 0 && jd < V);
        count[id]++, dcount[jd]++;
    }
    assert_true(chi_square(count, prob, V, N) < 30);
    assert_true(chi_square(dcount, prob, V, N) < 30);
    /* A wrong distribution fails the same bound by far. */
    const double wrong[V] = {0.2, 0.2, 0.2, 0.2, 0.2};
    assert_true(chi_square(count, wrong, V, N) > 300);
    llm_sampler_release(&s);
}

static void test_filters_exclude_draws(void **state)
{
    (void)state;
    enum { V = 50 };
    float x[V], p[V];
    random_logits(x, V, 5, 1.0);
    const struct llm_sampler_opts cases[] = {opts(1, 0, 0.5, 0, 1), opts(1, 0, 1, 0.3, 1), opts(1.5, 8, 1, 0, 1),
                                             opts(2, 0, 0.7, 0.2, 1)};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct llm_sampler s;
        assert_int_equal(llm_sampler_init(&s, &cases[c]), 0);
        assert_int_equal(llm_sampler_probs(&cases[c], x, V, NULL, 0, p), 0);
        int kept = 0, seen[V] = {0};
        for (int i = 0; i < V; i++)
            kept += p[i] > 0;
        assert_true(kept > 1 && kept < V);
        for (int t = 0; t < 3000; t++) {
            int32_t id;
            assert_int_equal(llm_sampler_next(&s, x, V, NULL, 0, &id), 0);
            assert_true(p[id] > 0);
            seen[id] = 1;
        }
        int nseen = 0;
        for (int i = 0; i < V; i++)
            nseen += seen[i];
        assert_true(nseen >= 2);
        llm_sampler_release(&s);
    }
}

static void test_draw_and_uniform(void **state)
{
    (void)state;
    struct llm_sampler s;
    struct llm_sampler_opts o = opts(1, 0, 1, 0, 1);
    assert_int_equal(llm_sampler_init(&s, &o), 0);
    const float p[5] = {0, 1e-30f, 0, 3, 0};
    int c3 = 0;
    for (int t = 0; t < 2000; t++) {
        int32_t id;
        assert_int_equal(llm_sampler_draw(&s, p, 5, &id), 0);
        assert_true(id == 1 || id == 3); /* zeros never */
        c3 += id == 3;
    }
    assert_true(c3 >= 1999);
    const float one[1] = {0.5f};
    int32_t id = -1;
    assert_int_equal(llm_sampler_draw(&s, one, 1, &id), 0);
    assert_int_equal(id, 0);
    const float neg[2] = {1, -0.5f}, nan2[2] = {1, NAN}, zero[3] = {0, 0, 0}, inf2[2] = {1, INFINITY};
    assert_int_equal(llm_sampler_draw(&s, neg, 2, &id), LLM_EINVAL);
    assert_int_equal(llm_sampler_draw(&s, nan2, 2, &id), LLM_EINVAL);
    assert_int_equal(llm_sampler_draw(&s, inf2, 2, &id), LLM_EINVAL);
    assert_int_equal(llm_sampler_draw(&s, zero, 3, &id), LLM_EINVAL);
    assert_int_equal(llm_sampler_draw(&s, one, 0, &id), LLM_EINVAL);
    double sum = 0;
    for (int t = 0; t < 10000; t++) {
        double u = llm_sampler_uniform(&s);
        assert_true(u >= 0 && u < 1);
        sum += u;
    }
    assert_true(fabs(sum / 10000 - 0.5) < 5 * sqrt(1.0 / 12 / 10000));
    /* The sampler's scratch grows with V and errors leave it usable. */
    float big[3000];
    random_logits(big, 3000, 9, 1.0);
    assert_int_equal(llm_sampler_next(&s, big, 3000, NULL, 0, &id), 0);
    assert_true(id >= 0 && id < 3000);
    const float nan1[1] = {NAN};
    assert_int_equal(llm_sampler_next(&s, nan1, 1, NULL, 0, &id), LLM_EINVAL);
    assert_int_equal(llm_sampler_next(&s, big, 10, NULL, 0, &id), 0);
    assert_true(id >= 0 && id < 10);
    llm_sampler_release(&s);
}

/* ---- UTF-8 stream ---- */

#define FFFD "\xEF\xBF\xBD"

/* Pushes s in pieces cut at the cuts (ascending), then flushes. */
static size_t push_split(const char *s, size_t n, const size_t *cuts, int ncuts, char *out)
{
    struct llm_utf8_stream st = {{0}, 0};
    size_t w = 0, at = 0;
    for (int c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : n;
        size_t got = llm_utf8_stream_push(&st, s + at, end - at, out + w);
        assert_true(got <= 3 * (end - at) + 3);
        assert_true(st.n >= 0 && st.n <= 3);
        w += got, at = end;
    }
    return w + llm_utf8_stream_flush(&st, out + w);
}

/* s gives want unsplit, at every single cut, every pair of cuts, and byte by byte. */
static void check_stream(const char *s, size_t n, const char *want, size_t nwant)
{
    char out[512];
    assert_true(3 * n + 8 <= sizeof(out));
    size_t w = push_split(s, n, NULL, 0, out);
    assert_int_equal(w, nwant);
    assert_memory_equal(out, want, nwant);
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = {i, j};
            w = push_split(s, n, cuts, 2, out);
            assert_int_equal(w, nwant);
            assert_memory_equal(out, want, nwant);
        }
    size_t every[64];
    assert_true(n < 64);
    for (size_t i = 0; i < n; i++)
        every[i] = i;
    w = push_split(s, n, every, (int)n, out);
    assert_int_equal(w, nwant);
    assert_memory_equal(out, want, nwant);
}

#define CHECK(in, want) check_stream(in, sizeof(in) - 1, want, sizeof(want) - 1)

static void test_utf8_valid_at_every_split(void **state)
{
    (void)state;
    /* 1, 2, 3 and 4-byte characters, the edges of each range included. */
    const char *good[] = {
        "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80!",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",               /* 3-byte CJK */
        "\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80", /* U+0080 U+07FF U+0800 U+D7FF U+E000 */
        "\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF\x7F",     /* U+FFFF U+10000 U+10FFFF DEL */
        "", "a",
    };
    for (size_t c = 0; c < sizeof(good) / sizeof(good[0]); c++)
        check_stream(good[c], strlen(good[c]), good[c], strlen(good[c]));
}

/* Known answers from the maximal-subpart rule (Unicode Standard §3.9,
 * "U+FFFD Substitution of Maximal Subparts", with Table 3-7 of well-formed
 * sequences): a maximal subpart is the longest prefix of a well-formed
 * sequence at that offset, or one byte if none; each becomes one U+FFFD. */
static void test_utf8_invalid_known_answers(void **state)
{
    (void)state;
    CHECK("\x80", FFFD);                         /* a lone continuation byte */
    CHECK("\xC0\x80", FFFD FFFD);                /* C0 can never lead; 80 alone */
    CHECK("\xC1\xBF", FFFD FFFD);
    CHECK("\xE0\x80\x80", FFFD FFFD FFFD);       /* overlong 3-byte: E0 needs A0..BF next */
    CHECK("\xF0\x80\x80\x80", FFFD FFFD FFFD FFFD); /* overlong 4-byte: F0 needs 90..BF */
    CHECK("\xED\xA0\x80", FFFD FFFD FFFD);       /* surrogate U+D800: ED needs 80..9F */
    CHECK("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* U+110000: F4 needs 80..8F */
    CHECK("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
    CHECK("\xFF", FFFD);
    CHECK("\xE2\x82", FFFD);                     /* truncated at the end: one subpart */
    CHECK("\xF0\x9F\x98", FFFD);
    CHECK("\xF0\x9F", FFFD);
    CHECK("\xE2\x82\x41", FFFD "A");             /* truncated, then ASCII */
    CHECK("\xF0\x9F\x98\xE2\x82\xAC", FFFD "\xE2\x82\xAC");
    CHECK("\xC3\xC3\xA9", FFFD "\xC3\xA9");
    /* The example of Unicode Table 3-8 (and of the WHATWG tests):
     * 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d. */
    CHECK("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
          "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d");
    /* Flush writes nothing after complete text and one U+FFFD otherwise. */
    struct llm_utf8_stream st = {{0}, 0};
    char out[16];
    assert_int_equal(llm_utf8_stream_push(&st, "ok", 2, out), 2);
    assert_int_equal(llm_utf8_stream_flush(&st, out), 0);
    assert_int_equal(llm_utf8_stream_push(&st, "\xF0\x9F\x98", 3, out), 0);
    assert_int_equal(llm_utf8_stream_flush(&st, out), 3);
    assert_memory_equal(out, FFFD, 3);
    assert_int_equal(llm_utf8_stream_flush(&st, out), 0);
    assert_int_equal(llm_utf8_stream_push(&st, "\xC3", 1, out), 0);
    assert_int_equal(llm_utf8_stream_push(&st, "\xA9", 1, out), 2); /* the stream is reusable */
}

/* An independent statement of the rule: at each offset, the bytes that still
 * fit Table 3-7 form the subpart. */
static size_t oracle_utf8(const unsigned char *s, size_t n, char *out)
{
    size_t w = 0, i = 0;
    while (i < n) {
        unsigned char b = s[i];
        int len = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (len == 0) {
            memcpy(out + w, FFFD, 3), w += 3, i++;
            continue;
        }
        int lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80, hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
        int m = 1;
        while (m < len && i + (size_t)m < n && s[i + m] >= (m == 1 ? lo : 0x80) && s[i + m] <= (m == 1 ? hi : 0xBF))
            m++;
        if (m == len)
            memcpy(out + w, s + i, (size_t)len), w += (size_t)len;
        else
            memcpy(out + w, FFFD, 3), w += 3;
        i += (size_t)m;
    }
    return w;
}

static void test_utf8_random_bytes(void **state)
{
    (void)state;
    /* Bytes drawn mostly from the interesting ones: leads, continuations,
     * range edges, ASCII. */
    static const unsigned char pool[] = {0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                         0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF};
    struct llm_rng r;
    llm_rng_seed(&r, 77);
    for (int t = 0; t < 3000; t++) {
        unsigned char s[32];
        size_t n = (size_t)llm_rng_below(&r, 32);
        for (size_t i = 0; i < n; i++)
            s[i] = llm_rng_below(&r, 4) ? pool[llm_rng_below(&r, sizeof(pool))] : (unsigned char)llm_rng_below(&r, 256);
        char want[128], out[128];
        size_t nw = oracle_utf8(s, n, want);
        size_t cuts[4];
        int nc = (int)llm_rng_below(&r, 5);
        for (int c = 0; c < nc; c++)
            cuts[c] = (size_t)llm_rng_below(&r, n + 1);
        for (int a = 1; a < nc; a++) /* insertion sort */
            for (int b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
                size_t tmp = cuts[b];
                cuts[b] = cuts[b - 1], cuts[b - 1] = tmp;
            }
        size_t w = push_split((const char *)s, n, cuts, nc, out);
        assert_int_equal(w, nw);
        assert_memory_equal(out, want, nw);
        size_t bad;
        assert_true(llm_utf8_valid(out, w, &bad));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probs_each_transform_and_combined),
        cmocka_unit_test(test_probs_order_matters),
        cmocka_unit_test(test_probs_ties),
        cmocka_unit_test(test_probs_neg_inf_and_huge),
        cmocka_unit_test(test_probs_single_token_and_errors),
        cmocka_unit_test(test_probs_large_vocab),
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_seeded_draws_are_deterministic),
        cmocka_unit_test(test_draws_match_distribution),
        cmocka_unit_test(test_filters_exclude_draws),
        cmocka_unit_test(test_draw_and_uniform),
        cmocka_unit_test(test_utf8_valid_at_every_split),
        cmocka_unit_test(test_utf8_invalid_known_answers),
        cmocka_unit_test(test_utf8_random_bytes),
    };
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
