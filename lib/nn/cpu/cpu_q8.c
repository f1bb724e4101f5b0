/* cpu_q8.c: linear_rows_q8 (backend.h), the decode matmul over int8 weights. */
#include "cpu_impl.h"
#include "core/err.h"

int cpu_linear_rows_q8(void *ctx, float *out, const float *x, const int8_t *wq, const float *scales,
                       const float *bias, int N, int C, int OC, int G)
{
    (void)ctx, (void)out, (void)x, (void)wq, (void)scales, (void)bias, (void)N, (void)C, (void)OC, (void)G;
    return llm_err(LLM_EUNSUPPORTED, "linear_rows_q8: not implemented yet");
}
