/* distill.c: the distillation loss and its gradient (distill.h). Each row
 * is independent: three softmaxes in double (stable: the max subtracted),
 * then the mixed gradient. Work O(N V), three passes over a row of V. */
#include "train/distill.h"

#include <math.h>

#include "core/err.h"

/* log sum_v exp(z_v / tau) and the max used, in double. */
static double log_sum_exp(const float *z, int V, double tau)
{
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++)
        mx = fmax(mx, z[v] / tau);
    for (int v = 0; v < V; v++)
        s += exp(z[v] / tau - mx);
    return mx + log(s);
}

int llm_distill_grad(const float *zs, const float *zt, const int32_t *targets, int N, int V, double alpha,
                     double tau, float *dz, double *ce, double *kl)
{
    int nv = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= V)
            return llm_err(LLM_EINVAL, "distill: target %d outside the vocabulary of %d", targets[n], V);
        nv += targets[n] >= 0;
    }
    double sce = 0, skl = 0;
    for (int n = 0; n < N; n++) {
        const float *s = zs + (size_t)n * V, *t = zt + (size_t)n * V;
        float *d = dz + (size_t)n * V;
        if (targets[n] < 0) {
            for (int v = 0; v < V; v++)
                d[v] = 0;
            continue;
        }
        /* at tau = 1 (the default) the softened q is softmax(zs) itself */
        double ls1 = log_sum_exp(s, V, 1.0), lst = tau == 1 ? ls1 : log_sum_exp(s, V, tau);
        double ltt = log_sum_exp(t, V, tau);
        sce += ls1 - s[targets[n]];
        for (int v = 0; v < V; v++) {
            double lq = s[v] / tau - lst, lp = t[v] / tau - ltt, p = exp(lp), q = exp(lq);
            skl += p * (lp - lq);
            double g = (1 - alpha) * (tau == 1 ? q : exp(s[v] - ls1)) + alpha * tau * (q - p);
            if (v == targets[n])
                g -= 1 - alpha;
            d[v] = (float)(g / nv);
        }
    }
    *ce = nv ? sce / nv : 0;
    *kl = nv ? skl / nv : 0;
    return nv;
}
