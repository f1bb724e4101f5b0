/* sft.c: the SFT task. Each micro-batch is B examples, one per row, padded
 * on the right; targets are the response tokens. The loss of a step is
 *   L = sum over the step's k micro-batches and their learned tokens of CE_t / N_step
 * (N_step = learned tokens of the whole step), so every response token
 * weighs the same however the examples fall into micro-batches; the loop
 * averages the k micro-gradients, so each micro-batch backpropagates
 * sum_t CE_t * k / N_step (llm_model_backward_ex). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align/sft.h"
#include "core/err.h"
#include "core/jsonl.h"
#include "core/log.h"

static int micro_step(void *ctx, struct llm_model *m, double *loss, int64_t *tokens)
{
    struct llm_sft *s = ctx;
    if (s->micro == 0) {
        /* the learned tokens of the whole step: peek at its k x B examples */
        int64_t e = s->order.epoch, n = 0;
        int p = s->order.pos;
        for (int i = 0; i < s->accum * s->B; i++) {
            n += s->train[llm_align_order_at(&s->order, e, p)].n_learn;
            if (++p == s->n_train)
                p = 0, e++;
        }
        s->w_scale = (float)((double)s->accum / (double)n);
    }
    for (int r = 0; r < s->B; r++)
        s->rows[r] = &s->train[llm_align_order_next(&s->order)];
    int Tb;
    llm_align_batch(s->rows, s->B, s->tok, s->tgt, &Tb);
    float mean;
    int rc = llm_model_forward(m, s->tok, s->tgt, s->B, Tb, 1, &mean);
    int64_t real = 0;
    for (int r = 0; r < s->B; r++)
        real += s->rows[r]->n - 1;
    for (int i = 0; i < s->B * Tb; i++)
        s->w[i] = s->tgt[i] >= 0 ? s->w_scale : 0.0f;
    if (!rc)
        rc = llm_model_backward_ex(m, s->w, NULL);
    s->micro = (s->micro + 1) % s->accum;
    *loss = mean - m->aux_loss;
    *tokens = real;
    return rc;
}

static int evaluate(void *ctx, struct llm_model *m, double *val_loss)
{
    struct llm_sft *s = ctx;
    double sum = 0;
    int64_t n = 0;
    int rc = 0;
    for (int i = 0; !rc && i < s->n_val; i += s->B) {
        int rows = s->n_val - i < s->B ? s->n_val - i : s->B, Tb;
        for (int r = 0; r < rows; r++)
            s->rows[r] = &s->val[i + r];
        llm_align_batch(s->rows, rows, s->tok, s->tgt, &Tb);
        float mean;
        rc = llm_model_forward(m, s->tok, s->tgt, rows, Tb, 0, &mean);
        for (int k = 0; !rc && k < rows * Tb; k++)
            if (s->tgt[k] >= 0)
                sum += m->host_losses[k], n++;
    }
    *val_loss = n ? sum / (double)n : NAN;
    return rc;
}

static cJSON *state(void *ctx) { return llm_align_order_state(&((struct llm_sft *)ctx)->order); }

static int restore(void *ctx, const cJSON *st)
{
    struct llm_sft *s = ctx;
    s->micro = 0;
    return llm_align_order_restore(&s->order, st);
}

/* Tokenizes the examples of path. */
static int read_examples(const char *path, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m,
                         struct llm_seq **out, int *n_out)
{
    struct llm_jsonl_records rs;
    int rc = llm_jsonl_read_all(&rs, path, 0);
    if (rc)
        return rc;
    if (rs.n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no examples", path);
    /* chat examples need the template's tokens before anything is encoded */
    for (int i = 0; !rc && i < rs.n; i++)
        if (cJSON_GetObjectItemCaseSensitive(rs.v[i], "messages")) {
            if (!(rc = llm_align_add_template_tokens(b, m, cfg->sft.template)))
                cfg->model = m->cfg;
            break;
        }
    struct llm_seq *v = rc ? NULL : calloc((size_t)rs.n, sizeof(*v));
    if (!rc && !v)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    int cut = 0, max_len = cfg->model.context_length + 1;
    for (int i = 0; !rc && i < rs.n; i++) {
        const cJSON *o = rs.v[i], *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt"), *r = cJSON_GetObjectItemCaseSensitive(o, "response");
        if (msgs)
            rc = llm_align_encode_chat(b, cfg->sft.template, msgs, max_len, &v[i]);
        else if (cJSON_IsString(p) && cJSON_IsString(r))
            rc = llm_align_encode_pair(b, p->valuestring, r->valuestring, cfg->sft.add_eot, max_len, &v[i]);
        else
            rc = llm_err(LLM_EINVAL, "expected {\"prompt\": string, \"response\": string} or {\"messages\": [...]}");
        if (rc)
            rc = llm_err_wrap(rc, "%s:%llu", path, (unsigned long long)rs.line[i]);
        else
            cut += v[i].truncated;
    }
    if (!rc && cut)
        llm_warn("%s: %d of %d examples cut to the context length %d", path, cut, rs.n, cfg->model.context_length);
    int n = rs.n;
    llm_jsonl_records_release(&rs);
    if (rc) {
        for (int i = 0; v && i < n; i++)
            llm_seq_release(&v[i]);
        free(v);
        return rc;
    }
    *out = v, *n_out = n;
    return 0;
}

int llm_sft_init(struct llm_sft *s, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m)
{
    memset(s, 0, sizeof(*s));
    s->base = b;
    s->B = cfg->train.batch_size;
    s->T = cfg->model.context_length;
    s->accum = llm_train_accum(cfg);
    int rc = 0;
    if (!cfg->data.train[0])
        rc = llm_err(LLM_EINVAL, "data.train: the SFT examples (JSONL {\"prompt\",\"response\"} or {\"messages\"})");
    if (!rc)
        rc = read_examples(cfg->data.train, cfg, b, m, &s->train, &s->n_train);
    if (!rc && cfg->data.val[0])
        rc = read_examples(cfg->data.val, cfg, b, m, &s->val, &s->n_val_all);
    s->n_val = s->n_val_all;
    if (!rc && cfg->data.val[0] && s->n_val > cfg->train.eval_batches * s->B)
        s->n_val = cfg->train.eval_batches * s->B; /* the first eval_batches x B, as pretraining */
    size_t n = (size_t)s->B * s->T;
    if (!rc)
        rc = llm_align_order_init(&s->order, s->n_train, (uint64_t)cfg->train.seed);
    if (!rc && (!(s->tok = malloc(n * sizeof(int32_t))) || !(s->tgt = malloc(n * sizeof(int32_t))) ||
                !(s->w = malloc(n * sizeof(float))) || !(s->rows = calloc((size_t)s->B, sizeof(*s->rows)))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (rc) {
        llm_sft_release(s);
        return rc;
    }
    s->task = (struct llm_train_task){
        .ctx = s, .micro_step = micro_step, .evaluate = s->n_val ? evaluate : NULL, .state = state,
        .restore = restore,
    };
    return 0;
}

void llm_sft_release(struct llm_sft *s)
{
    for (int i = 0; s->train && i < s->n_train; i++)
        llm_seq_release(&s->train[i]);
    for (int i = 0; s->val && i < s->n_val_all; i++)
        llm_seq_release(&s->val[i]);
    free(s->train), free(s->val);
    llm_align_order_release(&s->order);
    free(s->tok), free(s->tgt), free(s->w), free(s->rows);
    memset(s, 0, sizeof(*s));
}
