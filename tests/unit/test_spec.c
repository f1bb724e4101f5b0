/* test_spec.c: speculative sampling's accept/reject rule (speculative.h):
 * the emitted tokens are distributed as the target's p, whatever the draft's
 * q and however many tokens it chooses to propose (checked by chi-square on
 * a small vocabulary), and greedy rounds emit the target's argmax. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "infer/speculative.h"

enum { V = 4, K = 2 };

/* Target rows p_1, p_2, p_3 and draft rows q_1, q_2: deliberately far apart
 * (the draft prefers what the target does not), so rejections are common. */
static const float P[K + 1][V] = {{0.1f, 0.2f, 0.3f, 0.4f}, {0.5f, 0.25f, 0.15f, 0.1f}, {0.05f, 0.05f, 0.6f, 0.3f}};
static const float Q[K][V] = {{0.4f, 0.3f, 0.2f, 0.1f}, {0.1f, 0.1f, 0.1f, 0.7f}};

static int32_t draw(struct llm_rng *r, const float *q)
{
    double u = llm_rng_double(r), c = 0;
    for (int v = 0; v < V; v++)
        if (u < (c += q[v]))
            return v;
    return V - 1;
}

/* Pearson's statistic of counts against probabilities. */
static double chi2(const long *count, const float *p, long n)
{
    double x = 0;
    for (int v = 0; v < V; v++) {
        double e = p[v] * (double)n;
        x += (count[v] - e) * (count[v] - e) / e;
    }
    return x;
}

enum { ROUNDS = 40000 };

/* What ROUNDS rounds with the rows P and Q emitted: Pearson's statistic of
 * the first emitted tokens against p_1 and of the second (when a round
 * emits two or more) against p_2, with their count, and how many rounds
 * proposed one token. The draft draws x_1 from q_1 and x_2 from q_2, except
 * that with stop_at_zero it proposes x_1 alone when x_1 = 0. */
struct tally {
    double c1, c2;
    long n2, short_rounds;
};

static struct tally run_rounds(uint64_t seed, uint64_t draft_seed, int stop_at_zero)
{
    struct llm_sampler s;
    struct llm_sampler_opts o = {.temperature = 1, .top_p = 1, .repetition_penalty = 1, .seed = seed};
    assert_int_equal(llm_sampler_init(&s, &o), 0);
    struct llm_rng draft;
    llm_rng_seed(&draft, draft_seed);
    long first[V] = {0}, second[V] = {0};
    struct tally t = {0};
    float p[(K + 1) * V], q[K * V], scratch[V];
    memcpy(p, P, sizeof(p));
    memcpy(q, Q, sizeof(q));
    for (long i = 0; i < ROUNDS; i++) {
        int32_t x[K], out[K + 1];
        x[0] = draw(&draft, Q[0]);
        int k = stop_at_zero && x[0] == 0 ? 1 : 2;
        if (k == 2)
            x[1] = draw(&draft, Q[1]);
        t.short_rounds += k == 1;
        int n, a;
        assert_int_equal(llm_spec_round(&s, p, q, x, k, V, scratch, out, &n, &a), 0);
        assert_true(n >= 1 && n <= k + 1 && a <= k && n == (a < k ? a + 1 : k + 1));
        for (int j = 0; j < a; j++)
            assert_int_equal(out[j], x[j]); /* accepted tokens are the draft's */
        first[out[0]]++;
        if (n >= 2)
            second[out[1]]++, t.n2++;
    }
    t.c1 = chi2(first, P[0], ROUNDS);
    t.c2 = chi2(second, P[1], t.n2);
    llm_sampler_release(&s);
    return t;
}

static void test_distribution(void **state)
{
    (void)state;
    struct tally t = run_rounds(11, 5, 0);
    /* 3 degrees of freedom: P(chi2 > 16.27) = 0.001; a wrong rule (e.g. no
     * residual, or accepting with p/q unclipped) is off by thousands here. */
    if (t.c1 > 16.27 || t.c2 > 16.27)
        fail_msg("emitted tokens are not distributed as p: chi2 %.2f (first), %.2f (second, n=%ld)", t.c1, t.c2,
                 t.n2);
    /* the acceptance rate of x_1 is sum_v min(p, q) = 0.1+0.2+0.2+0.1 = 0.6 */
    assert_true(t.n2 > ROUNDS / 2);
}

/* A draft that stops early depending on what it drew: one token when
 * x_1 = 0, else two. (--draft-p-min's rule depends on less: whether x_2 is
 * proposed depends on the distribution x_1 was drawn from.) The first and
 * second emitted tokens must still follow p_1 and p_2: when x_1 is accepted
 * alone, the second token is the bonus, drawn from p_2 itself. */
static void test_stopping(void **state)
{
    (void)state;
    struct tally t = run_rounds(12, 6, 1);
    if (t.c1 > 16.27 || t.c2 > 16.27)
        fail_msg("with a stopping draft, emitted tokens are not distributed as p: chi2 %.2f, %.2f (n=%ld)", t.c1,
                 t.c2, t.n2);
    assert_true(t.short_rounds > ROUNDS / 3 && t.short_rounds < ROUNDS / 2); /* q_1(0) = 0.4 */
}

/* One-hot p and q (greedy on both): the emitted tokens are the target's
 * argmaxes, the draft's accepted while they agree. */
static void test_greedy(void **state)
{
    (void)state;
    struct llm_sampler s;
    struct llm_sampler_opts o = {.temperature = 0, .top_p = 1, .repetition_penalty = 1, .seed = 1};
    assert_int_equal(llm_sampler_init(&s, &o), 0);
    float p[(K + 1) * V] = {0}, q[K * V] = {0}, scratch[V];
    int32_t out[K + 1];
    int n, a;
    /* target argmaxes 2, 1, 3; draft proposes 2, 0 */
    p[0 * V + 2] = p[1 * V + 1] = p[2 * V + 3] = 1;
    q[0 * V + 2] = q[1 * V + 0] = 1;
    int32_t x[K] = {2, 0};
    assert_int_equal(llm_spec_round(&s, p, q, x, K, V, scratch, out, &n, &a), 0);
    assert_int_equal(a, 1);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 1);
    /* all accepted: the bonus token is p_3's argmax */
    int32_t y[K] = {2, 1};
    q[1 * V + 0] = 0, q[1 * V + 1] = 1;
    assert_int_equal(llm_spec_round(&s, p, q, y, K, V, scratch, out, &n, &a), 0);
    assert_int_equal(a, 2);
    assert_int_equal(n, 3);
    assert_int_equal(out[2], 3);
    /* a draft token outside the vocabulary */
    int32_t bad[K] = {7, 0};
    assert_int_equal(llm_spec_round(&s, p, q, bad, K, V, scratch, out, &n, &a), LLM_EINVAL);
    llm_sampler_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_stopping),
        cmocka_unit_test(test_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
