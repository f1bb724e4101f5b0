/* test_ppo.c: the pieces of PPO that can be checked exactly: GAE against a
 * hand computation and its gamma/lambda edge cases, advantage whitening, and
 * the clipped value loss with its derivative (finite differences). The task
 * end to end (rollouts, value model, resume) is in tests/cli/align.sh. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "align/ppo.h"
#include "core/rng.h"
#include "testutil.h"

/* cmocka's assert_float_equal compares floats: these are doubles */
#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

/* Three tokens, rewards r = (0.1, -0.2, 1.0), values v = (0.5, 0.3, 0.8),
 * gamma 0.9, lambda 0.5 (gamma lambda = 0.45), V after the end = 0:
 *   delta_2 = 1.0 + 0 - 0.8 = 0.2
 *   delta_1 = -0.2 + 0.9 * 0.8 - 0.3 = 0.22
 *   delta_0 = 0.1 + 0.9 * 0.3 - 0.5 = -0.13
 *   A_2 = 0.2, A_1 = 0.22 + 0.45 * 0.2 = 0.31, A_0 = -0.13 + 0.45 * 0.31 = 0.0095
 *   R = A + V = (0.5095, 0.61, 1.0) */
static void test_gae_by_hand(void **state)
{
    (void)state;
    const double r[] = {0.1, -0.2, 1.0}, v[] = {0.5, 0.3, 0.8};
    double a[3], ret[3];
    llm_ppo_gae(r, v, 3, 0.9, 0.5, a, ret);
    assert_near(a[2], 0.2, 1e-12);
    assert_near(a[1], 0.31, 1e-12);
    assert_near(a[0], 0.0095, 1e-12);
    assert_near(ret[0], 0.5095, 1e-12);
    assert_near(ret[1], 0.61, 1e-12);
    assert_near(ret[2], 1.0, 1e-12);
}

static void test_gae_edges(void **state)
{
    (void)state;
    struct llm_rng g;
    llm_rng_seed(&g, 7);
    enum { N = 9 };
    double r[N], v[N], a[N], ret[N];
    for (int i = 0; i < N; i++)
        r[i] = 2 * llm_rng_double(&g) - 1, v[i] = 2 * llm_rng_double(&g) - 1;
    for (int k = 0; k < 2; k++) {
        double gamma = k ? 0.8 : 1.0;
        /* lambda 0: one-step TD, A_t = r_t + gamma V_{t+1} - V_t */
        llm_ppo_gae(r, v, N, gamma, 0.0, a, ret);
        for (int t = 0; t < N; t++)
            assert_near(a[t], r[t] + gamma * (t + 1 < N ? v[t + 1] : 0) - v[t], 1e-12);
        /* lambda 1: Monte Carlo, R_t = sum_l gamma^l r_{t+l} (the values cancel) */
        llm_ppo_gae(r, v, N, gamma, 1.0, a, ret);
        for (int t = 0; t < N; t++) {
            double mc = 0, w = 1;
            for (int l = t; l < N; l++)
                mc += w * r[l], w *= gamma;
            assert_near(ret[t], mc, 1e-12);
            assert_near(a[t], mc - v[t], 1e-12);
        }
    }
    /* gamma 0: only the immediate reward, for any lambda */
    llm_ppo_gae(r, v, N, 0.0, 0.7, a, ret);
    for (int t = 0; t < N; t++) {
        assert_near(a[t], r[t] - v[t], 1e-12);
        assert_near(ret[t], r[t], 1e-12);
    }
    /* one token: A = r - V */
    llm_ppo_gae(r, v, 1, 1.0, 0.95, a, ret);
    assert_near(a[0], r[0] - v[0], 1e-12);
}

static void test_whiten(void **state)
{
    (void)state;
    double x[] = {1, 2, 3, 4, 10};
    llm_ppo_whiten(x, 5);
    double mean = 0, var = 0;
    for (int i = 0; i < 5; i++)
        mean += x[i];
    mean /= 5;
    for (int i = 0; i < 5; i++)
        var += (x[i] - mean) * (x[i] - mean);
    assert_near(mean, 0.0, 1e-12);
    assert_near(var / 4, 1.0, 1e-6); /* unbiased, as the whitening */
    assert_true(x[0] < x[1] && x[3] < x[4]); /* order kept */
    /* constant input: centred to 0, no division by zero */
    double c[] = {3, 3, 3};
    llm_ppo_whiten(c, 3);
    for (int i = 0; i < 3; i++)
        assert_near(c[i], 0.0, 0);
    double one[] = {5};
    llm_ppo_whiten(one, 1);
    assert_near(one[0], 0.0, 0);
}

static void test_value_loss(void **state)
{
    (void)state;
    double d;
    int c;
    /* inside the range: the plain squared error */
    assert_near(llm_ppo_value_loss(1.1, 1.0, 2.0, 0.2, &d, &c), 0.5 * 0.81, 1e-12);
    assert_near(d, 1.1 - 2.0, 1e-12);
    assert_int_equal(c, 0);
    /* v moved past old + c away from the return: the clipped error is smaller, the plain one binds */
    assert_near(llm_ppo_value_loss(1.5, 1.0, 0.0, 0.2, &d, &c), 0.5 * 2.25, 1e-12);
    assert_int_equal(c, 0);
    assert_near(d, 1.5, 1e-12);
    /* v moved past old + c toward the return (overshooting it): the clipped error binds, no gradient */
    assert_near(llm_ppo_value_loss(1.5, 1.0, 1.45, 0.2, &d, &c), 0.5 * 0.25 * 0.25, 1e-12);
    assert_int_equal(c, 1);
    assert_near(d, 0.0, 0);
    /* finite differences away from the kinks */
    struct llm_rng g;
    llm_rng_seed(&g, 3);
    for (int i = 0; i < 300; i++) {
        double old = 2 * llm_rng_double(&g) - 1, v = old + (llm_rng_double(&g) - 0.5);
        double ret = 3 * llm_rng_double(&g) - 1.5, e = 1e-6, dd;
        int c1, c2;
        llm_ppo_value_loss(v, old, ret, 0.2, &d, &c);
        double lp = llm_ppo_value_loss(v + e, old, ret, 0.2, &dd, &c1);
        double lm = llm_ppo_value_loss(v - e, old, ret, 0.2, &dd, &c2);
        if (c1 == c2 && fabs(fabs(v - old) - 0.2) > 1e-5)
            assert_near(d, (lp - lm) / (2 * e), 1e-5);
        assert_true(llm_ppo_value_loss(v, old, ret, 0.2, &dd, &c1) >= 0.5 * (v - ret) * (v - ret) - 1e-15);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gae_by_hand),
        cmocka_unit_test(test_gae_edges),
        cmocka_unit_test(test_whiten),
        cmocka_unit_test(test_value_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
