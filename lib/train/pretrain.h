/* pretrain.h: the pretraining task of the training loop (train.h): windows
 * of token shards (data/loader.h) through the model's mean next-token
 * cross-entropy; validation on data.val. */
#ifndef LLM_TRAIN_PRETRAIN_H
#define LLM_TRAIN_PRETRAIN_H

#include "config/config.h"
#include "data/loader.h"
#include "model/model.h"
#include "nn/backend.h"
#include "train/train.h"

struct llm_pretrain {
    struct llm_loader *train, *val; /* val NULL when data.val is "" */
    int B, T, eval_batches;
    int32_t *tokens, *targets;      /* (B, T) host */
    struct llm_train_task task;     /* ctx = this struct */
    /* distillation (distill.teacher set): the teacher, its and the model's
     * logits and the gradient (B*T, V) on the host, the sum of the
     * micro-batches' mean KL since the last metrics row */
    struct llm_model teacher;
    int have_teacher;
    double alpha, tau;
    float *zs, *zt, *dz;
    double kl_sum;
    int n_kl;
};

/* Opens data.train (and data.val) for cfg, and distill.teacher on be when
 * set (its vocabulary must be the model's, its context at least the
 * model's); p need not be initialized. On error p is released. */
int llm_pretrain_init(struct llm_pretrain *p, const struct llm_config *cfg, struct llm_backend *be);
void llm_pretrain_release(struct llm_pretrain *p);

/* Unigram entropy (nats/token) of a loader's shards: the loss of the best
 * model that ignores context, a baseline any trained model must beat. */
double llm_pretrain_unigram_entropy(const struct llm_pretrain *p, int val);

#endif
