/* train_impl.h: what train.c (the loop) and train_ckpt.c (checkpoints and
 * resume) share. Private to lib/train. */
#ifndef LLM_TRAIN_IMPL_H
#define LLM_TRAIN_IMPL_H

#include <stdio.h>

#include "train/train.h"

#define TRAIN_PATH_MAX 4096

struct llm_optim;

/* Everything a resumed run needs besides the parameters and the optimizer's
 * tensors: stored in the checkpoint header's "train" object. */
struct train_state {
    int64_t step, tokens, skipped;
    double loss_ema;    /* running mean loss of the spike detector */
    int64_t loss_n;     /* steps in it */
    double noise_g2, noise_s; /* EMAs of the noise-scale estimates */
    int64_t noise_n;
    double best_val;
    double elapsed;     /* wall seconds of the run so far */
    double train_time;  /* of which in steps (throughput) */
};

struct train_history { /* one entry per metrics row, for loss.svg */
    double *step, *loss, *val;
    size_t n, cap;
};

struct train_loop {
    const struct llm_config *cfg;
    const struct llm_train_opts *o;
    const struct llm_train_task *task;
    struct llm_optim *opt;
    int accum;                /* micro-batches per step */
    struct train_state st;
    double last_loss, last_val;
    double flops_per_token, peak;
    int resumed_from;         /* -1 = fresh */
    char metrics_path[TRAIN_PATH_MAX];
    char ckpt_path[TRAIN_PATH_MAX]; /* the last written */
    FILE *metrics;
    struct train_history hist;
};

int train_path(char *dst, const char *dir, const char *name);
int train_metrics_trim(struct train_loop *L, int64_t upto);
void train_history_release(struct train_history *h);

/* train_ckpt.c */
/* Writes ckpt_<step>.llm (and final.llm when final), then prunes old ones. */
int train_checkpoint(struct train_loop *L, struct llm_model *m, int final);
/* Removes the run folder's temp files left by a killed write. */
void train_remove_stale(const char *dir);
/* Restores from `from` (a file or folder), or the newest checkpoint of
 * out_dir when from is NULL (none there: a fresh start). */
int train_resume(struct train_loop *L, struct llm_model *m, const char *from);

#endif
