/* test_rng.c: the generator against published test vectors and its
 * statistical and state-saving properties. */
#include "testutil.h"

#include <math.h>
#include "core/err.h"
#include "core/rng.h"

static void test_splitmix64_vectors(void **state)
{
    (void)state;
    /* Published outputs of splitmix64 for seed 1234567. */
    static const uint64_t want[] = {6457827717110365317ULL, 3203168211198807973ULL,
                                    9817491932198370423ULL, 4593380528125082431ULL,
                                    16408922859458223821ULL};
    uint64_t x = 1234567;
    for (int i = 0; i < 5; i++)
        assert_true(llm_splitmix64(&x) == want[i]);
}

static void test_xoshiro_vectors(void **state)
{
    (void)state;
    /* xoshiro256** from state {1, 2, 3, 4}: the first outputs of the reference. */
    struct llm_rng r = {{1, 2, 3, 4}};
    static const uint64_t want[] = {11520ULL, 0ULL, 1509978240ULL, 1215971899390074240ULL};
    for (int i = 0; i < 4; i++)
        assert_true(llm_rng_u64(&r) == want[i]);
}

static void test_seed_determinism(void **state)
{
    (void)state;
    struct llm_rng a, b, c;
    llm_rng_seed(&a, 42);
    llm_rng_seed(&b, 42);
    llm_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = llm_rng_u64(&a);
        assert_true(x == llm_rng_u64(&b));
        differ += x != llm_rng_u64(&c);
    }
    assert_true(differ > 990);
}

static void test_uniform_ranges_and_moments(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 7);
    const int n = 200000;
    double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
    int counts[10] = {0};
    for (int i = 0; i < n; i++) {
        float f = llm_rng_float(&r);
        double d = llm_rng_double(&r);
        assert_true(f >= 0.0f && f < 1.0f);
        assert_true(d >= 0.0 && d < 1.0);
        sum += d, sum2 += d * d;
        uint64_t k = llm_rng_below(&r, 10);
        assert_true(k < 10);
        counts[k]++;
        double z = llm_rng_normal(&r);
        assert_true(isfinite(z));
        nsum += z, nsum2 += z * z;
    }
    /* Mean 1/2 and variance 1/12 within ~5 standard errors. */
    assert_true(fabs(sum / n - 0.5) < 5 * sqrt(1.0 / 12 / n));
    assert_true(fabs(sum2 / n - sum * sum / n / n - 1.0 / 12) < 0.002);
    assert_true(fabs(nsum / n) < 5 / sqrt(n));
    assert_true(fabs(nsum2 / n - 1.0) < 0.02);
    for (int k = 0; k < 10; k++) /* each bucket ~ n/10 with sd ~ 134 */
        assert_true(abs(counts[k] - n / 10) < 700);
}

static void test_hex_state_roundtrip(void **state)
{
    (void)state;
    struct llm_rng a, b;
    llm_rng_seed(&a, 99);
    for (int i = 0; i < 10; i++)
        llm_rng_u64(&a);
    char hex[65];
    llm_rng_to_hex(&a, hex);
    assert_int_equal(strlen(hex), 64);
    assert_int_equal(llm_rng_from_hex(&b, hex), 0);
    for (int i = 0; i < 100; i++)
        assert_true(llm_rng_u64(&a) == llm_rng_u64(&b));
    assert_int_equal(llm_rng_from_hex(&b, "12"), LLM_EFORMAT);
    char badhex[65];
    memset(badhex, 'g', 64);
    badhex[64] = 0;
    assert_int_equal(llm_rng_from_hex(&b, badhex), LLM_EFORMAT);
    memset(badhex, '0', 64);
    assert_int_equal(llm_rng_from_hex(&b, badhex), LLM_EFORMAT);
}

static void test_jump_gives_new_stream(void **state)
{
    (void)state;
    struct llm_rng a, b;
    llm_rng_seed(&a, 5);
    b = a;
    llm_rng_jump(&b);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += llm_rng_u64(&a) == llm_rng_u64(&b);
    assert_int_equal(same, 0);
    /* The jump is deterministic. */
    struct llm_rng c, d;
    llm_rng_seed(&c, 5);
    llm_rng_seed(&d, 5);
    llm_rng_jump(&c);
    llm_rng_jump(&d);
    assert_memory_equal(c.s, d.s, sizeof(c.s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix64_vectors),
        cmocka_unit_test(test_xoshiro_vectors),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_uniform_ranges_and_moments),
        cmocka_unit_test(test_hex_state_roundtrip),
        cmocka_unit_test(test_jump_gives_new_stream),
    };
    return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
