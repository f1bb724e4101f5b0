/* sweep.h: the plan of an IsoFLOP sweep (Hoffmann et al. 2022, approach
 * 2): for every compute budget C and model size, a pretraining run of
 * D = C / 6N tokens, rounded to whole optimizer steps. Sizes are given as
 * d_model x n_layers; the other shape keys follow the base config (head
 * size, d_ff / d_model and the query-per-kv-head ratio are kept). Running
 * the plan is cmd/'s business (child `llm pretrain` processes). */
#ifndef LLM_SCALING_SWEEP_H
#define LLM_SCALING_SWEEP_H

#include <stdint.h>

#include "config/config.h"
#include "scaling/runs.h"

struct llm_scaling_size {
    int d_model, n_layers, n_heads, n_kv_heads, d_ff;
    int64_t params;        /* every tensor */
    double N;              /* the count a fit uses (total or non-embedding) */
};

#define LLM_SCALING_NAME_MAX 64

struct llm_scaling_point {
    double budget;         /* the nominal C of the grid */
    int size;              /* index into the plan's sizes */
    int64_t steps;         /* round(C / 6N / tokens per step) */
    int64_t warmup;        /* min(schedule.warmup, steps / 10) */
    double tokens;         /* D = steps * tokens per step */
    char name[LLM_SCALING_NAME_MAX]; /* the run's folder: "C=1e+13_128x4" */
};

/* Owns sizes and points (malloc'd): llm_scaling_plan_release. */
struct llm_scaling_plan {
    struct llm_scaling_size *sizes;
    int nsizes;
    struct llm_scaling_point *points; /* by budget (ascending), then size (ascending N) */
    int npoints;
    int skipped;                      /* grid points left out (min_steps, tokens per parameter) */
    int64_t tokens_per_step;          /* batch_size * context_length * micro-batches */
};

/* Plans the grid of budgets (FLOPs) x sizes ("CxL,CxL,...", e.g.
 * "64x2,96x3,128x4") on top of the base config. A point whose run would be
 * shorter than min_steps optimizer steps, or whose tokens per parameter D/N
 * fall outside [tpp_min, tpp_max] (0 = no bound; this centers each budget's
 * sizes on its optimum), is left out (counted in skipped).
 * Errors (LLM_EINVAL): a malformed or repeated size, a d_model that is not a
 * multiple of the base head size, a shape the model rejects (the message
 * names the key), a non-positive budget, no point left; LLM_ENOMEM. On error
 * p is released. */
int llm_scaling_plan_init(struct llm_scaling_plan *p, const struct llm_config *base, const double *budgets,
                          int nbudgets, const char *sizes, int64_t min_steps, double tpp_min, double tpp_max,
                          enum llm_scaling_count count);
void llm_scaling_plan_release(struct llm_scaling_plan *p);

/* The "key=value" config overrides of point i (model shape, train.steps,
 * schedule.warmup) into sets[0..n), n returned (at most LLM_SCALING_PLAN_SETS). */
#define LLM_SCALING_PLAN_SETS 8
int llm_scaling_plan_sets(const struct llm_scaling_plan *p, int i, char sets[][64]);

#endif
