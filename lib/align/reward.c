/* reward.c: the reward-model task and reward scoring. A micro-batch is B
 * pairs (2B rows: chosen then rejected); with s = sigmoid(-(r_c - r_r)),
 * dloss/dr_c = -s / B and dloss/dr_r = s / B go to the two logits read
 * (llm_model_backward_logits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/reward.h"
#include "core/err.h"
#include "core/log.h"

/* Logits of rows at their reward positions (the last input of each row). */
static int read_rewards(struct llm_model *m, int reward_id, const struct llm_seq *const *rows, int n, int Tb,
                        int64_t *index, double *r)
{
    const int V = m->cfg.vocab_size;
    const float *logits = llm_model_logits(m);
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        index[i] = ((int64_t)i * Tb + (rows[i]->n - 2)) * V + reward_id;
        float v;
        if (!(rc = m->be->ops->download(m->be->ctx, &v, logits + index[i], sizeof(float))))
            r[i] = v;
    }
    return rc ? rc : m->be->ops->sync(m->be->ctx);
}

static int forward_rows(struct llm_model *m, const struct llm_seq *const *rows, int n, int32_t *tok, int32_t *tgt,
                        int training, int *Tb)
{
    llm_align_batch(rows, n, tok, tgt, Tb);
    return llm_model_forward(m, tok, NULL, n, *Tb, training, NULL);
}

int llm_reward_score(struct llm_model *m, int reward_id, const struct llm_seq *const *seqs, int n, int batch,
                     double *out)
{
    int T = m->cfg.context_length, rc = 0;
    int32_t *tok = malloc((size_t)batch * T * sizeof(int32_t)), *tgt = malloc((size_t)batch * T * sizeof(int32_t));
    int64_t *index = malloc((size_t)batch * sizeof(int64_t));
    if (!tok || !tgt || !index)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i += batch) {
        int k = n - i < batch ? n - i : batch, Tb;
        if (!(rc = forward_rows(m, seqs + i, k, tok, tgt, 0, &Tb)))
            rc = read_rewards(m, reward_id, seqs + i, k, Tb, index, out + i);
    }
    free(tok), free(tgt), free(index);
    return rc;
}

static void set_rows(struct llm_reward *t, struct llm_dpo_pair **pairs, int n)
{
    for (int i = 0; i < n; i++)
        t->rows[i] = &pairs[i]->chosen, t->rows[n + i] = &pairs[i]->rejected;
}

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_reward *t = ctx;
    const int B = t->B;
    for (int i = 0; i < B; i++)
        t->pairs[i] = &t->train[llm_align_order_next(&t->order)];
    set_rows(t, t->pairs, B);
    int Tb, rc = forward_rows(m, t->rows, 2 * B, t->tok, t->tgt, 1, &Tb);
    if (!rc)
        rc = read_rewards(m, t->reward_id, t->rows, 2 * B, Tb, t->index, t->r);
    if (rc)
        return rc;
    double sum = 0;
    int64_t real = 0;
    for (int i = 0; i < B; i++) {
        /* Bradley-Terry: -log sigmoid(d), DPO's sigmoid loss at beta 1 */
        double d = t->r[i] - t->r[B + i], dd;
        sum += llm_dpo_loss(LLM_DPO_SIGMOID, 1.0, d, &dd);
        t->grad[i] = (float)(dd / B), t->grad[B + i] = (float)(-dd / B);
        t->stats.accuracy += d > 0, t->stats.margin += d;
        t->stats.chosen += t->r[i], t->stats.rejected += t->r[B + i];
        t->stats.n++;
        real += t->pairs[i]->chosen.n + t->pairs[i]->rejected.n - 2;
    }
    rc = llm_model_backward_logits(m, t->index, t->grad, 2 * B);
    *loss = sum / B;
    *tokens = real;
    return rc;
}

static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_reward *t = ctx;
    double sum = 0, acc = 0;
    int rc = 0;
    for (int i = 0; !rc && i < t->n_val; i += t->B) {
        int n = t->n_val - i < t->B ? t->n_val - i : t->B, Tb;
        for (int k = 0; k < n; k++)
            t->pairs[k] = &t->val[i + k];
        set_rows(t, t->pairs, n);
        if (!(rc = forward_rows(m, t->rows, 2 * n, t->tok, t->tgt, 0, &Tb)))
            rc = read_rewards(m, t->reward_id, t->rows, 2 * n, Tb, t->index, t->r);
        for (int k = 0; !rc && k < n; k++) {
            double d = t->r[k] - t->r[n + k], dd;
            sum += llm_dpo_loss(LLM_DPO_SIGMOID, 1.0, d, &dd);
            acc += d > 0;
        }
    }
    *val_loss = t->n_val ? sum / t->n_val : NAN;
    t->val_accuracy = t->n_val ? acc / t->n_val : NAN;
    return rc;
}

static cJSON *metrics(void *ctx)
{
    struct llm_reward *t = ctx;
    struct llm_reward_stats *s = &t->stats;
    cJSON *o = cJSON_CreateObject();
    if (o && s->n) {
        double n = (double)s->n;
        cJSON_AddNumberToObject(o, "accuracy", s->accuracy / n);
        cJSON_AddNumberToObject(o, "margin", s->margin / n);
        cJSON_AddNumberToObject(o, "rewards/chosen", s->chosen / n);
        cJSON_AddNumberToObject(o, "rewards/rejected", s->rejected / n);
    }
    if (o && isfinite(t->val_accuracy)) {
        cJSON_AddNumberToObject(o, "val_accuracy", t->val_accuracy);
        t->val_accuracy = NAN;
    }
    memset(s, 0, sizeof(*s));
    return o;
}

static cJSON *state(void *ctx) { return llm_align_order_state(&((struct llm_reward *)ctx)->order); }
static int restore(void *ctx, const cJSON *st) { return llm_align_order_restore(&((struct llm_reward *)ctx)->order, st); }

/* Appends the reward token to both responses of every pair (cut to the context first if needed). */
static int append_token(struct llm_dpo_pair *v, int n, int id, int max_len)
{
    for (int i = 0; i < n; i++) {
        struct llm_seq *s[2] = {&v[i].chosen, &v[i].rejected};
        for (int k = 0; k < 2; k++) {
            int at = s[k]->n < max_len ? s[k]->n : max_len - 1;
            int32_t *ids = realloc(s[k]->ids, (size_t)(at + 1) * sizeof(int32_t));
            uint8_t *learn = ids ? realloc(s[k]->learn, (size_t)at + 1) : NULL;
            if (ids)
                s[k]->ids = ids;
            if (!learn)
                return llm_err(LLM_ENOMEM, "out of memory");
            s[k]->learn = learn;
            ids[at] = id, learn[at] = 0;
            s[k]->n = at + 1;
        }
    }
    return 0;
}

int llm_reward_init(struct llm_reward *t, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->B = cfg->train.batch_size;
    t->val_accuracy = NAN;
    const char *tokname = LLM_REWARD_TOKEN;
    int rc = 0;
    if (cfg->sft.packing)
        rc = llm_err(LLM_EINVAL, "sft.packing: only for sft.task lm (a reward model scores one sequence per row)");
    if (!rc && !cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: the preference pairs (JSONL {\"prompt\",\"chosen\",\"rejected\"})");
    if (!rc && !(rc = llm_align_add_specials(b, m, &tokname, 1)))
        cfg->model = m->cfg;
    t->reward_id = rc ? -1 : (int)llm_tok_special_id(b->tok, LLM_REWARD_TOKEN);
    int max_len = cfg->model.context_length + 1;
    if (!rc && !(rc = llm_dpo_read_pairs(cfg->data.train, cfg, b, &t->train, &t->n_train)))
        rc = append_token(t->train, t->n_train, t->reward_id, max_len);
    if (!rc && cfg->data.val[0] && !(rc = llm_dpo_read_pairs(cfg->data.val, cfg, b, &t->val, &t->n_val_all)))
        rc = append_token(t->val, t->n_val_all, t->reward_id, max_len);
    t->n_val = t->n_val_all < cfg->train.eval_batches * t->B ? t->n_val_all : cfg->train.eval_batches * t->B;
    size_t rows = 2 * (size_t)t->B, n = rows * (size_t)cfg->model.context_length;
    if (!rc && (!(t->tok = malloc(n * sizeof(int32_t))) || !(t->tgt = malloc(n * sizeof(int32_t))) ||
                !(t->index = malloc(rows * sizeof(int64_t))) || !(t->grad = malloc(rows * sizeof(float))) ||
                !(t->r = malloc(rows * sizeof(double))) || !(t->rows = calloc(rows, sizeof(*t->rows))) ||
                !(t->pairs = calloc((size_t)t->B, sizeof(*t->pairs)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = llm_align_order_init(&t->order, t->n_train, (uint64_t)cfg->train.seed);
    if (rc) {
        llm_reward_release(t);
        return rc;
    }
    t->task = (struct llm_train_task){
        .ctx = t, .micro_step = micro_step, .evaluate = t->n_val ? evaluate : NULL, .state = state,
        .restore = restore, .metrics = metrics,
    };
    return 0;
}

void llm_reward_release(struct llm_reward *t)
{
    llm_dpo_pairs_free(t->train, t->n_train);
    llm_dpo_pairs_free(t->val, t->n_val_all);
    llm_align_order_release(&t->order);
    free(t->tok), free(t->tgt), free(t->index), free(t->grad), free(t->r), free(t->rows), free(t->pairs);
    memset(t, 0, sizeof(*t));
}
