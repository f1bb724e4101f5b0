/* schedule.c: the learning-rate factor of each step: linear warmup, then
 * cosine (Loshchilov & Hutter 2017, without restarts), linear decay, constant,
 * or warmup-stable-decay (Hu et al. 2024, MiniCPM; 1-sqrt cooldown from
 * Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
 * Training Durations"). */
#include "optim/schedule.h"

#include <math.h>

static double clamp01(double x)
{
    return x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x;
}

double llm_schedule_factor(const struct llm_schedule_config *s, int64_t step, int64_t total)
{
    if (total < 1)
        total = 1;
    if (step < 1)
        step = 1;
    if (step > total)
        step = total;
    int64_t w = s->warmup > 0 ? s->warmup : 0;
    /* warmup: step / W for steps 1..W, so the first step is not wasted at 0 */
    if (step <= w)
        return (double)step / (double)w;
    double lo = clamp01(s->min_lr_ratio);
    /* after warmup: progress p = (step - W) / (total - W) in (0, 1], 1 at the last step */
    double p = (double)(step - w) / (double)(total - w);
    switch (s->name) {
    case LLM_SCHEDULE_CONSTANT:
        return 1.0;
    case LLM_SCHEDULE_LINEAR: /* 1 -> lo linearly */
        return clamp01(1.0 - (1.0 - lo) * p);
    case LLM_SCHEDULE_WSD: {
        /* stable at 1 until the last D = round(decay_fraction * total) steps
         * (never before the warmup ends), then q = fraction of the decay done:
         * linear 1 - (1 - lo) q, or 1-sqrt lo + (1 - lo)(1 - sqrt q) */
        int64_t d = (int64_t)llround(clamp01(s->decay_fraction) * (double)total);
        int64_t start = total - d > w ? total - d : w;
        if (step <= start)
            return 1.0;
        double q = (double)(step - start) / (double)(total - start);
        if (s->cooldown == LLM_COOLDOWN_1_SQRT)
            return clamp01(lo + (1.0 - lo) * (1.0 - sqrt(q)));
        return clamp01(1.0 - (1.0 - lo) * q);
    }
    case LLM_SCHEDULE_COSINE:
    default: /* lo + (1 - lo) (1 + cos(pi p)) / 2 */
        return clamp01(lo + (1.0 - lo) * 0.5 * (1.0 + cos(M_PI * p)));
    }
}
