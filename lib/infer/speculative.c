/* speculative.c: the accept/reject rule of speculative.h. */
#include "infer/speculative.h"

#include "core/err.h"

int llm_spec_round(struct llm_sampler *s, const float *p, const float *q, const int32_t *x, int K, int V,
                   float *scratch, int32_t *out, int *n_out, int *accepted)
{
    *n_out = *accepted = 0;
    if (K < 0 || V < 1)
        return llm_err(LLM_EINVAL, "speculative round: K = %d, V = %d", K, V);
    for (int i = 0; i < K; i++) {
        const float *pi = p + (size_t)i * V, *qi = q + (size_t)i * V;
        int32_t t = x[i];
        if (t < 0 || t >= V)
            return llm_err(LLM_EINVAL, "speculative round: draft token %d outside [0, %d)", t, V);
        double pt = pi[t], qt = qi[t];
        /* q(x) > 0 since x was drawn from q; accept with min(1, p/q). With
         * p >= q no uniform is drawn, so greedy rounds use no randomness. */
        int ok = pt >= qt || (qt > 0 && llm_sampler_uniform(s) * qt < pt);
        if (ok) {
            out[(*n_out)++] = t;
            (*accepted)++;
            continue;
        }
        /* Rejected: the residual norm(max(0, p - q)) makes the emitted
         * token's distribution exactly p. It has positive mass whenever x
         * was rejected (p(x) < q(x) and both sum to 1). */
        double mass = 0;
        for (int v = 0; v < V; v++) {
            float r = pi[v] - qi[v];
            scratch[v] = r > 0 ? r : 0;
            mass += scratch[v];
        }
        int rc;
        if (mass > 0)
            rc = llm_sampler_draw(s, scratch, V, &out[*n_out]);
        else /* rounding left no residual: p and q agree up to float error */
            rc = llm_sampler_draw(s, pi, V, &out[*n_out]);
        if (rc)
            return rc;
        (*n_out)++;
        return 0;
    }
    int rc = llm_sampler_draw(s, p + (size_t)K * V, V, &out[*n_out]); /* the bonus token */
    if (!rc)
        (*n_out)++;
    return rc;
}
