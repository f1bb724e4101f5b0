/* train.h: THE training loop (DESIGN.md "train/"): steps of gradient
 * accumulation, clipping, NaN/spike skipping, the optimizer and its schedule,
 * the gradient noise scale, evaluations, the run folder (config.json,
 * metrics.jsonl, loss.svg, checkpoints, summary.json), resume and graceful
 * stops. What a micro-batch is comes from a task: pretraining (windows of
 * token shards, lib/train/pretrain.c) is one; sft/dpo/grpo plug in others.
 *
 * Determinism: with the same config, backend and thread count, a run of 2N
 * steps and a run of N steps resumed for N more give bit-identical
 * parameters, optimizer state, data position and metrics (every input of a
 * step is in the checkpoint: parameters, optimizer tensors and t, the model's
 * dropout RNG, the task's data position, the spike detector and noise-scale
 * averages). */
#ifndef LLM_TRAIN_TRAIN_H
#define LLM_TRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "model/model.h"

/* What one micro-batch is, for the loop. ctx is the task's own. */
struct llm_train_task {
    void *ctx;
    /* Forward and backward of the next micro-batch: gradients of its mean
     * loss ADDED to m->grads; *loss = that mean loss (the one reported),
     * *tokens = tokens processed (for throughput). */
    int (*micro_step)(void *ctx, struct llm_model *m, double *loss, int64_t *tokens);
    /* Validation loss, mean per target token; NULL = the task has none. */
    int (*evaluate)(void *ctx, struct llm_model *m, double *val_loss);
    /* Data position for checkpoints (a new JSON value; NULL + llm_err on
     * failure) and back (LLM_EFORMAT on a bad value). */
    cJSON *(*state)(void *ctx);
    int (*restore)(void *ctx, const cJSON *state);
    /* Extra fields of a metrics.jsonl row (a new object of numbers, merged
     * into the row; the task averages what it saw since its previous call);
     * NULL (the pointer or the result) = none. */
    cJSON *(*metrics)(void *ctx);
};

/* Micro-batches per optimizer step of c (train.grad_accum, or
 * train.batch_tokens / (batch_size x context_length) when set). A task whose
 * loss is normalized over the whole step (alignment: per token or per
 * sequence of the accumulated batch) needs it: the loop averages the k
 * micro-batch gradients. */
int llm_train_accum(const struct llm_config *c);

/* One metrics.jsonl row (NAN = not measured; in JSON: absent). */
struct llm_train_report {
    int64_t step, steps;     /* optimizer steps done, and planned */
    double loss;             /* mean loss of this step's micro-batches */
    double val_loss;         /* at evaluation steps */
    double lr;               /* of the step (the optimizer's peak lr times the schedule) */
    double grad_norm;        /* global norm of the averaged gradient, before clipping */
    int64_t tokens;          /* processed since the start of the run (resumes included) */
    double tokens_per_s;     /* since the previous row */
    double mfu;              /* tokens_per_s * train FLOPs per token / peak FLOP/s */
    double elapsed_s;        /* training time since the start (resumes included) */
    double noise_scale;      /* B_simple in tokens (McCandlish et al. 2018), smoothed */
    int64_t skipped;         /* steps skipped so far (non-finite or spiking loss) */
};

struct llm_train_summary {
    int64_t step, steps, tokens, skipped;
    double loss, val_loss, best_val_loss; /* NAN when none */
    double elapsed_s, tokens_per_s, mfu, noise_scale, peak_flops;
    int64_t params;
    int resumed_from;     /* step of the checkpoint resumed from; -1 = fresh start */
    int interrupted;      /* the stop flag or stop_after ended the run early (after a checkpoint) */
    int already_done;     /* out_dir held a finished run: nothing was trained */
    char checkpoint[4096]; /* the last checkpoint written or found */
};

struct llm_train_opts {
    const struct llm_config *cfg;   /* the effective config (borrowed) */
    const char *resume;             /* a checkpoint or a run folder; NULL = the latest in out_dir, if any */
    volatile sig_atomic_t *stop;    /* set asynchronously: finish the step, checkpoint, return */
    int64_t stop_after;             /* > 0: return (with a checkpoint) after this many steps of this call */
    const cJSON *extra_header;      /* copied into every checkpoint's header ("tokenizer", ...); may be NULL */
    /* Called after every step (for a progress display); may be NULL. */
    void (*on_step)(void *ctx, const struct llm_train_report *r);
    void *on_step_ctx;
};

/* Trains m (built by the caller with llm_model_init for cfg->model and the
 * config's seed) on task, in the run folder cfg->train.out_dir (created if
 * missing). Resumes from o->resume, or from the newest checkpoint in the
 * folder: parameters, optimizer state and the loop's state are restored and
 * the model config must match. Fills *sum (also written as summary.json).
 * Returns 0 (also when stopped by o->stop or when the run was complete), or a
 * negative LLM_E* code with a message (too many skipped steps is LLM_EINVAL). */
int llm_train_run(struct llm_model *m, const struct llm_train_task *task, const struct llm_train_opts *o,
                  struct llm_train_summary *sum);

/* Warm start: the parameters of the model checkpoint at path into m (just
 * built by llm_model_init for cfg->model); the checkpoint's model config
 * must equal cfg->model (LLM_EINVAL naming the first key that differs).
 * Only the weights: the optimizer and the schedule start afresh. */
int llm_train_init_from(struct llm_model *m, const struct llm_config *cfg, const char *path);

/* The summary as a JSON object (caller deletes; NULL on ENOMEM). */
cJSON *llm_train_summary_json(const struct llm_train_summary *s);

/* Steps of the checkpoint at path (its header's train.step), or -1 with an error. */
int64_t llm_train_ckpt_step(const char *path);

#endif
