/* dpo.c: the DPO task. A micro-batch is B pairs: 2B rows, the chosen
 * responses then the rejected ones. With logp = the summed log-probability
 * of a response (= -sum of its tokens' cross-entropy) and h as in dpo.h,
 *   d loss / d CE_t = -dloss/dh  for the chosen response's tokens,
 *                     +dloss/dh  for the rejected one's,
 * which llm_model_backward_ex takes as per-token weights (divided by B: the
 * loss is the mean over pairs, and the loop averages the micro-batches). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/dpo.h"
#include "core/err.h"
#include "core/jsonl.h"
#include "core/log.h"

double llm_dpo_loss(enum llm_dpo_loss kind, double beta, double h, double *dh)
{
    double z = beta * h;
    switch (kind) {
    case LLM_DPO_IPO: { /* Azar et al. 2023, eq. 17: the target margin is 1/(2 beta) */
        double d = h - 1 / (2 * beta);
        *dh = 2 * d;
        return d * d;
    }
    case LLM_DPO_HINGE: /* SLiC (Zhao et al. 2023) */
        *dh = z < 1 ? -beta : 0;
        return z < 1 ? 1 - z : 0;
    default: {
        /* -log sigmoid(z) = softplus(-z), computed without overflow */
        double sp = z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
        *dh = -beta / (1 + exp(z)); /* -beta sigmoid(-z) */
        return sp;
    }
    }
}

/* Summed log-probabilities of the learned tokens of each row of the last forward. */
static void row_logps(const struct llm_model *m, const int32_t *tgt, int rows, int Tb, double *out)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int t = 0; t < Tb; t++)
            if (tgt[(size_t)r * Tb + t] >= 0)
                s -= m->host_losses[(size_t)r * Tb + t];
        out[r] = s;
    }
}

/* Forward of n pairs (2n rows); logps (2n): chosen then rejected. */
static int forward_pairs(struct llm_dpo *d, struct llm_model *m, struct llm_dpo_pair **pairs, int n, int training,
                         double *logps, int *Tb)
{
    for (int i = 0; i < n; i++) {
        d->rows[i] = &pairs[i]->chosen;
        d->rows[n + i] = &pairs[i]->rejected;
    }
    llm_align_batch(d->rows, 2 * n, d->tok, d->tgt, Tb);
    float mean;
    int rc = llm_model_forward(m, d->tok, d->tgt, 2 * n, *Tb, training, &mean);
    if (!rc)
        row_logps(m, d->tgt, 2 * n, *Tb, logps);
    return rc;
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_dpo *d = ctx;
    const int B = d->B;
    const double beta = d->cfg->dpo.beta;
    for (int i = 0; i < B; i++)
        d->pairs[i] = &d->train[llm_align_order_next(&d->order)];
    double *lp = d->lp;
    int Tb;
    int rc = forward_pairs(d, m, d->pairs, B, 1, lp, &Tb);
    if (rc)
        return rc;
    double sum = 0;
    int64_t real = 0;
    for (int i = 0; i < B; i++) {
        const struct llm_dpo_pair *p = d->pairs[i];
        double rw = lp[i] - p->ref_chosen, rl = lp[B + i] - p->ref_rejected, dh;
        sum += llm_dpo_loss(d->cfg->dpo.loss, beta, rw - rl, &dh);
        float wc = (float)(-dh / B), wr = (float)(dh / B);
        for (int t = 0; t < Tb; t++) {
            size_t kc = (size_t)i * Tb + t, kr = (size_t)(B + i) * Tb + t;
            d->w[kc] = d->tgt[kc] >= 0 ? wc : 0.0f;
            d->w[kr] = d->tgt[kr] >= 0 ? wr : 0.0f;
        }
        struct llm_dpo_stats *s = &d->stats;
        s->reward_chosen += beta * rw, s->reward_rejected += beta * rl;
        s->accuracy += rw > rl, s->margin += beta * (rw - rl);
        s->logp_chosen += lp[i], s->logp_rejected += lp[B + i];
        s->n++;
        real += p->chosen.n + p->rejected.n - 2;
    }
    rc = llm_model_backward_ex(m, d->w, NULL);
    *loss = sum / B;
    *tokens = real;
    return rc;
}

static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_dpo *d = ctx;
    double *lp = d->lp, sum = 0, acc = 0;
    int rc = 0;
    for (int i = 0; !rc && i < d->n_val; i += d->B) {
        int n = d->n_val - i < d->B ? d->n_val - i : d->B, Tb;
        for (int k = 0; k < n; k++)
            d->pairs[k] = &d->val[i + k];
        rc = forward_pairs(d, m, d->pairs, n, 0, lp, &Tb);
        for (int k = 0; !rc && k < n; k++) {
            double h = (lp[k] - d->pairs[k]->ref_chosen) - (lp[n + k] - d->pairs[k]->ref_rejected), dh;
            sum += llm_dpo_loss(d->cfg->dpo.loss, d->cfg->dpo.beta, h, &dh);
            acc += h > 0;
        }
    }
    *val_loss = d->n_val ? sum / d->n_val : NAN;
    d->val_accuracy = d->n_val ? acc / d->n_val : NAN;
    return rc;
}

static cJSON *metrics(void *ctx)
{
    struct llm_dpo *d = ctx;
    struct llm_dpo_stats *s = &d->stats;
    cJSON *o = cJSON_CreateObject();
    if (o && s->n) {
        double n = (double)s->n;
        cJSON_AddNumberToObject(o, "rewards/chosen", s->reward_chosen / n);
        cJSON_AddNumberToObject(o, "rewards/rejected", s->reward_rejected / n);
        cJSON_AddNumberToObject(o, "rewards/accuracies", s->accuracy / n);
        cJSON_AddNumberToObject(o, "rewards/margins", s->margin / n);
        cJSON_AddNumberToObject(o, "logps/chosen", s->logp_chosen / n);
        cJSON_AddNumberToObject(o, "logps/rejected", s->logp_rejected / n);
    }
    if (o && isfinite(d->val_accuracy)) {
        cJSON_AddNumberToObject(o, "val_rewards/accuracies", d->val_accuracy);
        d->val_accuracy = NAN;
    }
    memset(s, 0, sizeof(*s));
    return o;
}

static cJSON *state(void *ctx) { return llm_align_order_state(&((struct llm_dpo *)ctx)->order); }
static int restore(void *ctx, const cJSON *st) { return llm_align_order_restore(&((struct llm_dpo *)ctx)->order, st); }

void llm_dpo_pairs_free(struct llm_dpo_pair *v, int n)
{
    for (int i = 0; v && i < n; i++)
        llm_seq_release(&v[i].chosen), llm_seq_release(&v[i].rejected);
    free(v);
}

int llm_dpo_read_pairs(const char *path, const struct llm_config *cfg, struct llm_align_base *b,
                      struct llm_dpo_pair **out, int *n_out)
{
    struct llm_jsonl_records rs;
    int rc = llm_jsonl_read_all(&rs, path, 0);
    if (rc)
        return rc;
    struct llm_dpo_pair *v = rs.n ? calloc((size_t)rs.n, sizeof(*v)) : NULL;
    if (rs.n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no pairs", path);
    else if (!v)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    int max_len = cfg->model.context_length + 1;
    for (int i = 0; !rc && i < rs.n; i++) {
        const cJSON *o = rs.v[i];
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt"), *c = cJSON_GetObjectItemCaseSensitive(o, "chosen");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "rejected");
        if (!cJSON_IsString(p) || !cJSON_IsString(c) || !cJSON_IsString(r))
            rc = llm_err(LLM_EINVAL, "expected {\"prompt\", \"chosen\", \"rejected\"} strings");
        else if (!(rc = llm_align_encode_pair(b, p->valuestring, c->valuestring, cfg->sft.add_eot, max_len,
                                              &v[i].chosen)))
            rc = llm_align_encode_pair(b, p->valuestring, r->valuestring, cfg->sft.add_eot, max_len, &v[i].rejected);
        if (rc)
            rc = llm_err_wrap(rc, "%s:%llu", path, (unsigned long long)rs.line[i]);
    }
    int n = rs.n;
    llm_jsonl_records_release(&rs);
    if (rc) {
        llm_dpo_pairs_free(v, n);
        return rc;
    }
    *out = v, *n_out = n;
    return 0;
}

/* The reference's log-probabilities of every pair, in batches of B. */
static int reference(struct llm_dpo *d, struct llm_model *m, struct llm_dpo_pair *v, int n)
{
    double *lp = d->lp;
    int rc = 0;
    for (int i = 0; !rc && i < n; i += d->B) {
        int k = n - i < d->B ? n - i : d->B, Tb;
        for (int j = 0; j < k; j++)
            d->pairs[j] = &v[i + j];
        rc = forward_pairs(d, m, d->pairs, k, 0, lp, &Tb);
        for (int j = 0; !rc && j < k; j++)
            v[i + j].ref_chosen = lp[j], v[i + j].ref_rejected = lp[k + j];
    }
    return rc;
}

int llm_dpo_init(struct llm_dpo *d, const struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->B = cfg->train.batch_size;
    d->val_accuracy = NAN;
    int rc = 0;
    if (!cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: the preference pairs (JSONL {\"prompt\",\"chosen\",\"rejected\"})");
    if (!rc)
        rc = llm_dpo_read_pairs(cfg->data.train, cfg, b, &d->train, &d->n_train);
    if (!rc && cfg->data.val[0] && !(rc = llm_dpo_read_pairs(cfg->data.val, cfg, b, &d->val, &d->n_val_all)))
        d->n_val = d->n_val_all < cfg->train.eval_batches * d->B ? d->n_val_all : cfg->train.eval_batches * d->B;
    size_t rows = 2 * (size_t)d->B, n = rows * (size_t)(cfg->model.context_length);
    if (!rc && (!(d->tok = malloc(n * sizeof(int32_t))) || !(d->tgt = malloc(n * sizeof(int32_t))) ||
                !(d->w = malloc(n * sizeof(float))) || !(d->lp = malloc(rows * sizeof(double))) || !(d->rows = calloc(rows, sizeof(*d->rows))) ||
                !(d->pairs = calloc((size_t)d->B, sizeof(*d->pairs)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = llm_align_order_init(&d->order, d->n_train, (uint64_t)cfg->train.seed);
    if (!rc)
        rc = reference(d, m, d->train, d->n_train);
    if (!rc)
        rc = reference(d, m, d->val, d->n_val);
    if (rc) {
        llm_dpo_release(d);
        return rc;
    }
    llm_info("dpo: reference log-probabilities of %d pairs computed", d->n_train + d->n_val);
    d->task = (struct llm_train_task){
        .ctx = d, .micro_step = micro_step, .evaluate = d->n_val ? evaluate : NULL, .state = state,
        .restore = restore, .metrics = metrics,
    };
    return 0;
}

void llm_dpo_release(struct llm_dpo *d)
{
    llm_dpo_pairs_free(d->train, d->n_train);
    llm_dpo_pairs_free(d->val, d->n_val_all);
    llm_align_order_release(&d->order);
    free(d->tok), free(d->tgt), free(d->w), free(d->lp), free(d->rows), free(d->pairs);
    memset(d, 0, sizeof(*d));
}
