/* cpu_kv.c: attention_cached (backend.h), attention over a key/value cache. */
#include "cpu_impl.h"
#include "core/err.h"

int cpu_attention_cached(void *ctx, float *out, const float *q, const float *k, const float *v,
                         int Tq, int pos0, int cap, int NH, int NKV, int HS, int window,
                         float scale)
{
    (void)ctx, (void)out, (void)q, (void)k, (void)v, (void)Tq, (void)pos0, (void)cap, (void)NH;
    (void)NKV, (void)HS, (void)window, (void)scale;
    return llm_err(LLM_EUNSUPPORTED, "attention_cached: not implemented yet");
}
