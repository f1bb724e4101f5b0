/* cpu_gemv.c: linear_rows (backend.h), the matmul of decoding. */
#include "cpu_impl.h"
#include "core/err.h"

int cpu_linear_rows(void *ctx, float *out, const float *x, const float *w, const float *bias, int N,
                    int C, int OC)
{
    (void)ctx, (void)out, (void)x, (void)w, (void)bias, (void)N, (void)C, (void)OC;
    return llm_err(LLM_EUNSUPPORTED, "linear_rows: not implemented yet");
}
