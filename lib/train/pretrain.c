/* pretrain.c: the pretraining task (pretrain.h): micro-batches from the
 * training loader, evaluation on the first eval_batches batches of the
 * validation loader (rewound each time, so every evaluation sees the same
 * tokens). */
#include "train/pretrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_pretrain *p = ctx;
    float l = 0;
    int rc = llm_loader_next(p->train, p->tokens, p->targets);
    if (!rc)
        rc = llm_model_forward(m, p->tokens, p->targets, p->B, p->T, 1, &l);
    if (!rc)
        rc = llm_model_backward(m);
    *loss = (double)l - m->aux_loss; /* the reported loss is the cross-entropy alone */
    *tokens = (int64_t)p->B * p->T;
    return rc;
}

/* Mean over target tokens (not over batches: a batch with fewer targets
 * weighs less), of the cross-entropy alone. */
static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_pretrain *p = ctx;
    double sum = 0;
    int64_t n = 0;
    int rc = 0;
    llm_loader_rewind(p->val);
    for (int b = 0; !rc && b < p->eval_batches; b++) {
        float l;
        rc = llm_loader_next(p->val, p->tokens, p->targets);
        if (!rc)
            rc = llm_model_forward(m, p->tokens, p->targets, p->B, p->T, 0, &l);
        if (!rc && m->n_valid > 0) {
            sum += ((double)l - m->aux_loss) * m->n_valid;
            n += m->n_valid;
        }
    }
    *val_loss = n ? sum / (double)n : NAN;
    return rc;
}

static cJSON *state(void *ctx)
{
    struct llm_pretrain *p = ctx;
    return llm_loader_state(p->train);
}

static int restore(void *ctx, const cJSON *s)
{
    struct llm_pretrain *p = ctx;
    return llm_loader_restore(p->train, s);
}

int llm_pretrain_init(struct llm_pretrain *p, const struct llm_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->B = cfg->train.batch_size;
    p->T = cfg->model.context_length;
    p->eval_batches = cfg->train.eval_batches;
    struct llm_loader_opts o = {
        .B = p->B,
        .T = p->T,
        .order = cfg->data.order,
        .eot = cfg->data.eot,
        .boundaries = cfg->data.boundaries,
        .seed = (uint64_t)cfg->train.seed,
        .vocab_size = (uint32_t)cfg->model.vocab_size,
    };
    int rc = 0;
    if (!cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: no training data (a token shard from `llm tokenize encode "
                     "--format bin`)");
    if (!rc)
        rc = llm_loader_new(&p->train, cfg->data.train, &o);
    if (!rc && cfg->data.val[0]) {
        o.order = LLM_DATA_SEQUENTIAL;
        rc = llm_loader_new(&p->val, cfg->data.val, &o);
    }
    size_t n = (size_t)p->B * p->T;
    if (!rc && (!(p->tokens = llm_malloc(n * sizeof(int32_t), "a batch")) ||
                !(p->targets = llm_malloc(n * sizeof(int32_t), "a batch"))))
        rc = LLM_ENOMEM;
    if (rc) {
        llm_pretrain_release(p);
        return rc;
    }
    p->task = (struct llm_train_task){
        .ctx = p,
        .micro_step = micro_step,
        .evaluate = p->val ? evaluate : NULL,
        .state = state,
        .restore = restore,
    };
    return 0;
}

void llm_pretrain_release(struct llm_pretrain *p)
{
    llm_loader_free(p->train);
    llm_loader_free(p->val);
    free(p->tokens);
    free(p->targets);
    memset(p, 0, sizeof(*p));
}

double llm_pretrain_unigram_entropy(const struct llm_pretrain *p, int val)
{
    const struct llm_loader *l = val ? p->val : p->train;
    return l ? llm_loader_unigram_entropy(l) : NAN;
}
