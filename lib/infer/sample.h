/* sample.h: turning next-token logits into a token: repetition penalty,
 * temperature, top-k, top-p and min-p (applied in that order, as HF
 * transformers' generate does), then one inverse-CDF draw from a per-sampler
 * xoshiro stream (core/rng.h). Math, sources and costs: docs/sampling.md.
 *
 * Determinism: every ordering breaks ties by token id (lower id first) and
 * every sum runs in a fixed order in double, so the same logits, history and
 * seed give the same token on every machine. */
#ifndef LLM_INFER_SAMPLE_H
#define LLM_INFER_SAMPLE_H

#include <stdint.h>

#include "core/rng.h"

struct llm_sampler_opts {
    double temperature;        /* 0 = greedy (argmax; ties -> lowest id) */
    int top_k;                 /* 0 = off; ties at the k-th place go to the lower ids (exactly k kept) */
    double top_p;              /* 1 = off; keep the smallest set of most likely tokens with mass >= top_p */
    double min_p;              /* 0 = off; keep tokens with p >= min_p * p_max */
    double repetition_penalty; /* 1 = off; CTRL-style on tokens in the history: logit > 0 ? logit / r : logit * r */
    uint64_t seed;
};

/* Checks ranges (temperature >= 0 finite, top_k >= 0, top_p in (0, 1],
 * min_p in [0, 1), penalty > 0 finite): LLM_EINVAL naming the option
 * ("--top-p: ..."). */
int llm_sampler_check(const struct llm_sampler_opts *o);

/* The distribution the sampler draws from (after penalty, temperature,
 * top-k, top-p, min-p, in that order), written into p (V floats, sums to 1
 * up to float rounding; exactly zero outside the kept set). For temperature
 * 0: one-hot at the argmax of the penalized logits. history (n_hist ids, each
 * in [0, V); repeats count once) is for the penalty. Numerically safe for
 * finite logits of any magnitude (a penalized logit saturates at +-FLT_MAX);
 * -inf logits are allowed and never get mass. Errors (LLM_EINVAL): V < 1,
 * a NaN or +inf logit, all logits -inf, a history id outside [0, V), options
 * that fail llm_sampler_check. Allocates 8 * V bytes of scratch per call
 * (LLM_ENOMEM); llm_sampler_next keeps its scratch between calls. */
int llm_sampler_probs(const struct llm_sampler_opts *o, const float *logits, int V, const int32_t *history,
                      int n_hist, float *p);

/* A sampler: opts + its own RNG stream (xoshiro seeded with opts.seed), so
 * each sequence of a batch draws from its own stream and gets the same tokens
 * as when run alone. p is owned scratch (the last distribution followed by
 * working space for cap tokens), grown on demand; a zeroed struct may be
 * released. */
struct llm_sampler {
    struct llm_sampler_opts o;
    struct llm_rng rng;
    float *p;   /* (cap) the last distribution of llm_sampler_next, then scratch */
    int cap;
};

/* Checks o (llm_sampler_check) and seeds the stream. Allocates nothing. */
int llm_sampler_init(struct llm_sampler *s, const struct llm_sampler_opts *o);
void llm_sampler_release(struct llm_sampler *s);

/* Draws the next token from logits (V): llm_sampler_probs, then the inverse
 * CDF (ids in increasing order) at one uniform from s->rng. Greedy
 * (temperature 0) takes the argmax and draws no uniform. Errors as
 * llm_sampler_probs, plus LLM_ENOMEM growing the scratch. */
int llm_sampler_next(struct llm_sampler *s, const float *logits, int V, const int32_t *history, int n_hist,
                     int32_t *out);

/* One uniform in [0, 1) from the sampler's stream (speculative decoding's
 * accept test uses it). */
double llm_sampler_uniform(struct llm_sampler *s);

/* Draws from an explicit distribution p (V, need not be normalized; finite,
 * non-negative, positive sum): speculative decoding's residual
 * norm(max(0, p - q)). One uniform, inverse CDF in id order; a zero entry is
 * never drawn. LLM_EINVAL otherwise. */
int llm_sampler_draw(struct llm_sampler *s, const float *p, int V, int32_t *out);

#endif
