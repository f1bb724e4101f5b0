/* pretrain.c: the pretraining task (pretrain.h): micro-batches from the
 * training loader, evaluation on the first eval_batches batches of the
 * validation loader (rewound each time, so every evaluation sees the same
 * tokens); with a teacher, the distillation objective of distill.h. */
#include "train/pretrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "model/model_io.h"
#include "train/distill.h"

/* The teacher's logits on the batch, then the model's forward and the
 * gradient of the mixed objective from the two (host) sets of logits. The
 * teacher's forward costs about a third of its training step. */
static int distill_step(struct llm_pretrain *p, struct llm_model *m, float *l)
{
    struct llm_backend *be = m->be;
    size_t nv = (size_t)p->B * p->T * (size_t)m->cfg.vocab_size * sizeof(float);
    double ce, kl;
    int rc = llm_model_forward(&p->teacher, p->tokens, NULL, p->B, p->T, 0, NULL);
    if (!rc)
        rc = be->ops->download(be->ctx, p->zt, llm_model_logits(&p->teacher), nv);
    if (!rc)
        rc = llm_model_forward(m, p->tokens, p->targets, p->B, p->T, 1, l);
    if (!rc)
        rc = be->ops->download(be->ctx, p->zs, llm_model_logits(m), nv);
    if (!rc && (rc = llm_distill_grad(p->zs, p->zt, p->targets, p->B * p->T, m->cfg.vocab_size, p->alpha,
                                      p->tau, p->dz, &ce, &kl)) > 0) {
        p->kl_sum += kl, p->n_kl++;
        rc = 0;
    }
    return rc ? rc : llm_model_backward_dlogits(m, p->dz);
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_pretrain *p = ctx;
    float l = 0;
    int rc = llm_loader_next(p->train, p->tokens, p->targets);
    if (!rc && p->have_teacher)
        rc = distill_step(p, m, &l);
    else if (!rc && !(rc = llm_model_forward(m, p->tokens, p->targets, p->B, p->T, 1, &l)))
        rc = llm_model_backward(m);
    *loss = (double)l - m->aux_loss; /* the reported loss is the cross-entropy alone */
    *tokens = (int64_t)p->B * p->T;
    return rc;
}

/* distill_kl: the mean KL(teacher || model) at temperature tau since the
 * previous row (the reported loss stays the data's cross-entropy). */
static cJSON *metrics(void *ctx)
{
    struct llm_pretrain *p = ctx;
    if (!p->n_kl)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddNumberToObject(o, "distill_kl", p->kl_sum / p->n_kl);
    p->kl_sum = 0, p->n_kl = 0;
    return o;
}

static int open_teacher(struct llm_pretrain *p, const struct llm_config *cfg, struct llm_backend *be)
{
    const char *path = cfg->distill.teacher;
    int rc = llm_model_load(&p->teacher, path, be, NULL);
    if (rc)
        return rc;
    p->have_teacher = 1;
    const struct llm_model_config *t = &p->teacher.cfg;
    if (t->vocab_size != cfg->model.vocab_size)
        return llm_err(LLM_EINVAL, "distill.teacher: %s has vocab_size %d, the model %d: distillation needs the "
                       "same vocabulary", path, t->vocab_size, cfg->model.vocab_size);
    if (t->context_length < p->T)
        return llm_err(LLM_EINVAL, "distill.teacher: %s has context_length %d, shorter than the model's %d", path,
                       t->context_length, p->T);
    size_t n = (size_t)p->B * p->T * (size_t)t->vocab_size;
    if (!(p->zs = llm_malloc(n * sizeof(float), "distillation logits")) ||
        !(p->zt = llm_malloc(n * sizeof(float), "distillation logits")) ||
        !(p->dz = llm_malloc(n * sizeof(float), "distillation logits")))
        return LLM_ENOMEM;
    p->alpha = cfg->distill.weight;
    p->tau = cfg->distill.temperature;
    return 0;
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

int llm_pretrain_init(struct llm_pretrain *p, const struct llm_config *cfg, struct llm_backend *be)
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
    if (!rc && cfg->distill.teacher && cfg->distill.teacher[0])
        rc = open_teacher(p, cfg, be);
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
        .metrics = p->have_teacher ? metrics : NULL,
    };
    return 0;
}

void llm_pretrain_release(struct llm_pretrain *p)
{
    llm_loader_free(p->train);
    llm_loader_free(p->val);
    free(p->tokens);
    free(p->targets);
    if (p->have_teacher)
        llm_model_release(&p->teacher);
    free(p->zs), free(p->zt), free(p->dz);
    memset(p, 0, sizeof(*p));
}

double llm_pretrain_unigram_entropy(const struct llm_pretrain *p, int val)
{
    const struct llm_loader *l = val ? p->val : p->train;
    return l ? llm_loader_unigram_entropy(l) : NAN;
}
