/* schedule.h: learning-rate schedules: linear warmup, then cosine, linear,
 * constant or warmup-stable-decay (docs/optim.md "Schedules"). */
#ifndef LLM_OPTIM_SCHEDULE_H
#define LLM_OPTIM_SCHEDULE_H

#include <stdint.h>

#include "config/config.h"

/* Learning-rate factor in [0, 1] for optimizer step `step` (1-based, the step
 * about to be taken) of `total`: warmup steps 1..W ramp step/W, and the last
 * step (step = total) gets min_lr_ratio (1 for constant). Steps outside
 * [1, total] are clamped into it. */
double llm_schedule_factor(const struct llm_schedule_config *s, int64_t step, int64_t total);

#endif
