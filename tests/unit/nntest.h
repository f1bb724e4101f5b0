/* nntest.h: what the backend op tests share: the four CPU backends every op
 * is checked on (reference and optimized paths, 1 and 2 threads), as the
 * cmocka group setup and teardown. Include after testutil.h. */
#ifndef LLM_NNTEST_H
#define LLM_NNTEST_H

#include "nn/backend.h"

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
