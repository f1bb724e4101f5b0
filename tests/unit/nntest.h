/* nntest.h: what the backend op tests share: the four CPU backends every op
 * is checked on (reference and optimized paths, 1 and 2 threads), as the
 * cmocka group setup and teardown. Include after testutil.h. */
#ifndef LLM_NNTEST_H
#define LLM_NNTEST_H

#include "core/rng.h"
#include "nn/backend.h"

/* ---- allocation pool: everything a test allocates, freed by pool_free ---- */

#define POOL_MAX 1024
static void *pool[POOL_MAX];
static int npool;

static inline void *keep(void *p)
{
    assert_non_null(p);
    assert_true(npool < POOL_MAX);
    pool[npool++] = p;
    return p;
}

static inline void pool_free(void)
{
    while (npool > 0)
        free(pool[--npool]);
}

static inline float *fnew(size_t n) { return keep(calloc(n ? n : 1, sizeof(float))); }
static inline double *dnew(size_t n) { return keep(calloc(n ? n : 1, sizeof(double))); }

static inline float *fcopy(const float *a, size_t n)
{
    float *p = fnew(n);
    memcpy(p, a, n * sizeof(float));
    return p;
}

/* p[i] uniform in [lo, hi), seeded; frand: the same into a pooled array. */
static inline void frand_fill(float *p, uint64_t seed, size_t n, float lo, float hi)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * llm_rng_float(&r);
}

static inline float *frand(uint64_t seed, size_t n, float lo, float hi)
{
    float *p = fnew(n);
    frand_fill(p, seed, n, lo, hi);
    return p;
}

/* be[ref][threads - 1] */
static struct llm_backend be[2][2];

static int setup(void **state)
{
    (void)state;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            if (llm_backend_cpu_init(&be[r][t], t + 1, r) != 0)
                return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 2; t++)
            llm_backend_release(&be[r][t]);
    return 0;
}

#endif
